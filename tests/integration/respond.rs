//! `custody respond` on a moto instance: the phases run in the order of
//! volatility, each step is in the ledger, and the instance is never
//! stopped or terminated when a capture failed.
//!
//! On moto, memory is not acquired (DescribeInstanceInformation answers
//! 500, and SSM never runs commands): that is recorded as such, the
//! response goes on past it, and the disk is acquired (through the test
//! launcher's reading of CreateSnapshot snapshots).

use crate::common::{Home, aws_conf as conf, custody_aws as custody, emulator, stderr};

fn actions(home: &Home) -> Vec<(String, Option<String>)> {
    std::fs::read_to_string(home.path().join("ledger/entries.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let e: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                e["action"].as_str().unwrap().to_owned(),
                e["detail"]["phase"].as_str().map(str::to_owned),
            )
        })
        .collect()
}

#[test]
fn respond_runs_in_the_order_of_volatility_and_never_terminates_after_a_failed_capture() {
    let Some(endpoint) = emulator("CUSTODY_TEST_S3_ENDPOINT") else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let ec2 = aws_sdk_ec2::Client::new(&conf(&endpoint));
    let ami = rt.block_on(crate::common::any_image(&ec2));
    // Its disk: a 1 GiB volume with three blocks written.
    let blocks: Vec<Vec<u8>> = (0..3)
        .map(|i| crate::common::noise(512 * 1024, 40 + i))
        .collect();
    let seeded: Vec<(usize, &[u8])> = blocks
        .iter()
        .enumerate()
        .map(|(i, b)| (i * 500, b.as_slice()))
        .collect();
    let seed = rt.block_on(crate::common::seed_blocks(&endpoint, 1, &seeded));
    let (_vpc, app, id) = rt.block_on(crate::common::instance_in_own_vpc(
        &ec2,
        &ami,
        78,
        Some(&seed),
    ));
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&conf(&endpoint))
            .force_path_style(true)
            .build(),
    );
    let bucket = format!("respond-{}", uuid::Uuid::new_v4().simple());
    rt.block_on(s3.create_bucket().bucket(&bucket).send())
        .unwrap();
    let staging = format!("s3://{bucket}/memory");
    // What the logs phase reads: a trail's file naming the instance, and
    // the flow log of its interface in CloudWatch Logs.
    let now = time::OffsetDateTime::now_utc();
    let trail_bucket = format!("trail-{}", uuid::Uuid::new_v4().simple());
    let eni = rt
        .block_on(ec2.describe_instances().instance_ids(&id).send())
        .unwrap()
        .reservations()[0]
        .instances()[0]
        .network_interfaces()[0]
        .network_interface_id()
        .unwrap()
        .to_owned();
    rt.block_on(async {
        s3.create_bucket().bucket(&trail_bucket).send().await.unwrap();
        let t = now - time::Duration::hours(1);
        let record = serde_json::json!({ "Records": [{
            "eventVersion": "1.08", "eventTime": t.format(&time::format_description::well_known::Rfc3339).unwrap(),
            "eventSource": "ec2.amazonaws.com", "eventName": "ModifyInstanceAttribute",
            "awsRegion": "us-east-1", "sourceIPAddress": "198.51.100.99",
            "userIdentity": { "type": "IAMUser", "arn": "arn:aws:iam::123456789012:user/mallory", "accountId": "123456789012" },
            "requestParameters": { "instanceId": id }, "eventID": uuid::Uuid::new_v4().to_string(),
            "eventType": "AwsApiCall", "recipientAccountId": "123456789012"
        }]});
        let key = format!(
            "AWSLogs/123456789012/CloudTrail/us-east-1/{:04}/{:02}/{:02}/123456789012_CloudTrail_us-east-1_{}_a1.json",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.unix_timestamp()
        );
        s3.put_object()
            .bucket(&trail_bucket)
            .key(key)
            .body(record.to_string().into_bytes().into())
            .send()
            .await
            .unwrap();
        aws_sdk_cloudtrail::Client::new(&conf(&endpoint))
            .create_trail()
            .name(format!("all-{}", uuid::Uuid::new_v4().simple()))
            .s3_bucket_name(&trail_bucket)
            .is_multi_region_trail(true)
            .send()
            .await
            .unwrap();
        let group = format!("/flow/{}", uuid::Uuid::new_v4().simple());
        let logs = aws_sdk_cloudwatchlogs::Client::new(&conf(&endpoint));
        logs.create_log_group().log_group_name(&group).send().await.unwrap();
        ec2.create_flow_logs()
            .resource_ids(&eni)
            .resource_type(aws_sdk_ec2::types::FlowLogsResourceType::NetworkInterface)
            .traffic_type(aws_sdk_ec2::types::TrafficType::All)
            .log_group_name(&group)
            .deliver_logs_permission_arn("arn:aws:iam::123456789012:role/flow-logs")
            .send()
            .await
            .unwrap();
        let stream = format!("{eni}-all");
        logs.create_log_stream().log_group_name(&group).log_stream_name(&stream).send().await.unwrap();
        let secs = now.unix_timestamp() - 600;
        logs.put_log_events()
            .log_group_name(&group)
            .log_stream_name(&stream)
            .log_events(
                aws_sdk_cloudwatchlogs::types::InputLogEvent::builder()
                    .timestamp(secs * 1000)
                    .message(format!("2 123456789012 {eni} 203.0.113.77 10.78.1.5 51544 22 6 10 840 {} {} ACCEPT OK", secs - 60, secs))
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .unwrap();
    });
    let home = Home::new();

    // The plan, in order, and nothing changed.
    let out = custody(
        &home,
        &endpoint,
        &[
            "--json",
            "respond",
            "--instance",
            &id,
            "--case",
            "r1",
            "--staging",
            &staging,
            "--dry-run",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let phases: Vec<&str> = plan["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["phase"].as_str().unwrap())
        .collect();
    assert_eq!(phases, ["protect", "memory", "isolate", "disk", "logs"]);
    assert!(!home.path().join("ledger/entries.jsonl").exists() || actions(&home).is_empty());
    let groups = |ec2: &aws_sdk_ec2::Client| {
        let out = rt
            .block_on(ec2.describe_instances().instance_ids(&id).send())
            .unwrap();
        let i = out.reservations()[0].instances()[0].clone();
        (
            i.security_groups()
                .iter()
                .filter_map(|g| g.group_id().map(str::to_owned))
                .collect::<Vec<_>>(),
            i.state()
                .and_then(|s| s.name())
                .map(|n| n.as_str().to_owned()),
        )
    };
    assert_eq!(
        groups(&ec2).0,
        vec![app.clone()],
        "a dry run changes nothing"
    );

    // The response: memory fails on moto, so terminate is refused.
    let out = custody(
        &home,
        &endpoint,
        &[
            "--json",
            "--reason",
            "GuardDuty finding 7",
            "respond",
            "--instance",
            &id,
            "--case",
            "r1",
            "--staging",
            &staging,
            "--memory-timeout",
            "30",
            "--then",
            "terminate",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("incomplete"), "{}", stderr(&out));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["then"], "terminate");
    assert_eq!(r["then_done"], false);
    let status = |phase: &str| {
        r["phases"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["phase"] == phase)
            .map(|p| p["status"].as_str().unwrap().to_owned())
    };
    assert_eq!(status("protect").as_deref(), Some("done"), "{r}");
    assert_eq!(status("memory").as_deref(), Some("not_acquired"), "{r}");
    assert_eq!(status("isolate").as_deref(), Some("done"), "{r}");
    assert_eq!(status("disk").as_deref(), Some("done"), "{r}");
    let disk: Vec<&serde_json::Value> = r["artefacts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["kind"] == "disk_image")
        .collect();
    assert_eq!(disk.len(), 1, "{r}");
    assert_eq!(disk[0]["block_map"]["written"], 3, "{r}");
    assert_eq!(status("logs").as_deref(), Some("done"), "{r}");
    let formats: Vec<&str> = r["artefacts"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a["source"]["log_format"].as_str())
        .collect();
    assert!(
        formats.contains(&"cloudtrail") && formats.contains(&"vpc-flow-cloudwatch"),
        "{formats:?}"
    );
    for ip in ["198.51.100.99", "203.0.113.77"] {
        let q = home.json(&["timeline", "r1", &format!("ip:{ip}")]);
        assert_eq!(q["total"], 1, "{ip} on the case's timeline: {q}");
    }

    // The instance is isolated and still running.
    let (now_groups, state) = groups(&ec2);
    assert!(!now_groups.contains(&app), "{now_groups:?}");
    assert_eq!(state.as_deref(), Some("running"));

    // The ledger holds every step, in the order of volatility.
    let acts = actions(&home);
    let order: Vec<String> = acts
        .iter()
        .map(|(a, phase)| match phase {
            Some(p) => format!("{a}:{p}"),
            None => a.clone(),
        })
        .collect();
    let pos = |name: &str| {
        order
            .iter()
            .position(|a| a == name)
            .unwrap_or_else(|| panic!("{name} not in {order:?}"))
    };
    let last = |name: &str| order.iter().rposition(|a| a == name).unwrap();
    assert_eq!(order[0], "ledger_initialised");
    assert_eq!(pos("state_recorded"), 1, "the prior state first: {order:?}");
    assert!(last("isolated:protect") < pos("not_acquired"), "{order:?}");
    assert!(pos("not_acquired") < pos("isolated:isolate"), "{order:?}");
    assert!(
        last("isolated:isolate") < pos("isolation_checked"),
        "{order:?}"
    );
    assert!(
        pos("isolation_checked") < pos("snapshot_created"),
        "{order:?}"
    );
    assert!(pos("snapshot_created") < pos("acquired"), "{order:?}");
    assert!(!order.iter().any(|a| a == "failed"), "{order:?}");
    assert_eq!(order.last().map(String::as_str), Some("responded"));
    assert!(!order.iter().any(|a| a == "power_changed"), "{order:?}");
    // Each isolation step carries the request id AWS returned.
    let entries = std::fs::read_to_string(home.path().join("ledger/entries.jsonl")).unwrap();
    for line in entries.lines() {
        let e: serde_json::Value = serde_json::from_str(line).unwrap();
        if e["action"] == "isolated" {
            assert!(
                !e["detail"]["request_ids"].as_array().unwrap().is_empty(),
                "{e}"
            );
        }
        if e["action"] == "snapshot_created" {
            assert!(e["detail"]["request_id"].is_string(), "{e}");
        }
    }
    let out = home.run(&["ledger", "verify"]);
    assert!(out.status.success(), "{}", stderr(&out));

    // An unknown instance is refused before anything is recorded.
    let other = Home::new();
    let out = custody(
        &other,
        &endpoint,
        &[
            "respond",
            "--instance",
            "i-0000000000000dead",
            "--no-memory",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("i-0000000000000dead"),
        "{}",
        stderr(&out)
    );
}
