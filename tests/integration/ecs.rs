//! ECS tasks against moto, through `custody acquire ecs`, `custody isolate
//! ecs` and `custody release ecs`.
//!
//! moto runs Fargate tasks with their network interfaces and security
//! groups, task definitions, EC2 and CloudWatch Logs; every call reaches it
//! through the fault proxy, except two narrow stubs of calls moto lacks,
//! labelled below: GetTaskProtection and UpdateTaskProtection.

use crate::common::{Home, aws_conf as conf, emulator, stderr};
use crate::fault_proxy::{Fault, FaultProxy, Rule};

struct Task {
    cluster: String,
    arn: String,
    group: String,
    subnet: String,
    log_group: String,
}

async fn fargate_task(endpoint: &str) -> Task {
    let c = conf(endpoint);
    let ec2 = aws_sdk_ec2::Client::new(&c);
    let ecs = aws_sdk_ecs::Client::new(&c);
    let u = uuid::Uuid::new_v4().simple().to_string();
    let vpc = ec2
        .create_vpc()
        .cidr_block("10.77.0.0/16")
        .send()
        .await
        .unwrap();
    let vpc = vpc.vpc().unwrap().vpc_id().unwrap().to_owned();
    let subnet = ec2
        .create_subnet()
        .vpc_id(&vpc)
        .cidr_block("10.77.1.0/24")
        .send()
        .await
        .unwrap();
    let subnet = subnet.subnet().unwrap().subnet_id().unwrap().to_owned();
    let group = ec2
        .create_security_group()
        .group_name(format!("task-{u}"))
        .description("the task's own group")
        .vpc_id(&vpc)
        .send()
        .await
        .unwrap()
        .group_id()
        .unwrap()
        .to_owned();
    ec2.authorize_security_group_ingress()
        .group_id(&group)
        .ip_permissions(
            aws_sdk_ec2::types::IpPermission::builder()
                .ip_protocol("tcp")
                .from_port(443)
                .to_port(443)
                .ip_ranges(
                    aws_sdk_ec2::types::IpRange::builder()
                        .cidr_ip("0.0.0.0/0")
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap();
    let cluster = format!("c-{u}");
    ecs.create_cluster()
        .cluster_name(&cluster)
        .send()
        .await
        .unwrap();
    let log_group = format!("/ecs/web-{u}");
    let family = format!("web-{u}");
    ecs.register_task_definition()
        .family(&family)
        .network_mode(aws_sdk_ecs::types::NetworkMode::Awsvpc)
        .requires_compatibilities(aws_sdk_ecs::types::Compatibility::Fargate)
        .cpu("256")
        .memory("512")
        .container_definitions(
            aws_sdk_ecs::types::ContainerDefinition::builder()
                .name("app")
                .image(format!("nginx@sha256:{}", "a".repeat(64)))
                .memory(256)
                .cpu(128)
                .log_configuration(
                    aws_sdk_ecs::types::LogConfiguration::builder()
                        .log_driver(aws_sdk_ecs::types::LogDriver::Awslogs)
                        .options("awslogs-group", &log_group)
                        .options("awslogs-region", "us-east-1")
                        .options("awslogs-stream-prefix", "web")
                        .build()
                        .unwrap(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap();
    let run = ecs
        .run_task()
        .cluster(&cluster)
        .task_definition(&family)
        .launch_type(aws_sdk_ecs::types::LaunchType::Fargate)
        .network_configuration(
            aws_sdk_ecs::types::NetworkConfiguration::builder()
                .awsvpc_configuration(
                    aws_sdk_ecs::types::AwsVpcConfiguration::builder()
                        .subnets(&subnet)
                        .security_groups(&group)
                        .build()
                        .unwrap(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap();
    let arn = run.tasks()[0].task_arn().unwrap().to_owned();
    // What the container logged, in its awslogs stream.
    let id = arn.rsplit('/').next().unwrap();
    let cw = aws_sdk_cloudwatchlogs::Client::new(&c);
    let stream = format!("web/app/{id}");
    cw.create_log_group()
        .log_group_name(&log_group)
        .send()
        .await
        .unwrap();
    cw.create_log_stream()
        .log_group_name(&log_group)
        .log_stream_name(&stream)
        .send()
        .await
        .unwrap();
    cw.put_log_events()
        .log_group_name(&log_group)
        .log_stream_name(&stream)
        .log_events(
            aws_sdk_cloudwatchlogs::types::InputLogEvent::builder()
                .timestamp(time::OffsetDateTime::now_utc().unix_timestamp() * 1000)
                .message("GET /admin 200 from 203.0.113.66")
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    Task {
        cluster,
        arn,
        group,
        subnet,
        log_group,
    }
}

/// The labelled stubs of the calls moto lacks: GetTaskProtection answers
/// `protection` in turn (the task as AWS would report it at each read),
/// UpdateTaskProtection says it was done.
fn protection_stubs(proxy: &FaultProxy, task: &str, protection: &[bool]) {
    for on in protection {
        proxy.rule(Rule {
            op: "GetTaskProtection",
            path: "",
            pass: 0,
            times: 1,
            fault: Fault::Json(
                200,
                serde_json::json!({
                    "protectedTasks": [{ "taskArn": task, "protectionEnabled": on }],
                    "failures": [],
                })
                .to_string(),
            ),
        });
    }
    proxy.rule(Rule {
        op: "UpdateTaskProtection",
        path: "",
        pass: 0,
        times: u32::MAX,
        fault: Fault::Json(
            200,
            serde_json::json!({
                "protectedTasks": [{ "taskArn": task, "protectionEnabled": true }],
                "failures": [],
            })
            .to_string(),
        ),
    });
}

async fn rules(endpoint: &str, group: &str) -> (usize, usize, String) {
    let ec2 = aws_sdk_ec2::Client::new(&conf(endpoint));
    let g = ec2
        .describe_security_groups()
        .group_ids(group)
        .send()
        .await
        .unwrap();
    let g = &g.security_groups()[0];
    (
        g.ip_permissions().len(),
        g.ip_permissions_egress().len(),
        format!("{:?}", g.ip_permissions()),
    )
}

fn run(home: &Home, url: &str, args: &[&str]) -> std::process::Output {
    home.cmd()
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .args(["--endpoint-url", url])
        .args(args)
        .output()
        .unwrap()
}

/// [`run`] off the runtime's threads, which serve the fault proxy.
async fn run_off(home: Home, url: &str, args: &[&str]) -> (std::process::Output, Home) {
    let url = url.to_owned();
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        (run(&home, &url, &a), home)
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn ecs_task_acquired_protected_isolated_in_place_and_released() {
    let Some(endpoint) = emulator("CUSTODY_TEST_S3_ENDPOINT") else {
        return;
    };
    let t = fargate_task(&endpoint).await;
    let (proxy, url) = FaultProxy::start(&endpoint).await;
    protection_stubs(&proxy, &t.arn, &[false, true, true, false]);
    let before = rules(&endpoint, &t.group).await;
    assert_eq!((before.0, before.1), (1, 1), "443 in, everything out");

    let home = Home::new();
    let (out, home) = run_off(
        home,
        &url,
        &[
            "--json",
            "acquire",
            "ecs",
            "--cluster",
            &t.cluster,
            "--task",
            &t.arn,
            "--case",
            "E",
        ],
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let arts = r["artefacts"].as_array().unwrap();
    let kinds: Vec<&str> = arts.iter().map(|a| a["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["cloud_resource", "file"]);
    assert_eq!(
        arts[1]["source"]["resource"],
        format!("logs:{}", t.log_group)
    );
    let dest = home.path().join("task.json");
    let o = home.run(&[
        "export",
        "E",
        arts[0]["id"].as_str().unwrap(),
        "-o",
        dest.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&dest).unwrap()).unwrap();
    assert_eq!(doc["task"], t.arn.as_str());
    assert_eq!(doc["containers"][0]["name"], "app");
    assert_eq!(doc["network_interfaces"][0]["groups"][0], t.group.as_str());
    assert!(doc["answers"]["DescribeTaskDefinition"]["taskDefinition"].is_object());
    let q = home.json(&["timeline", "E", "203.0.113.66"]);
    assert_eq!(q["total"], 1, "the task's log line is on the timeline: {q}");

    // Isolation: protection on, the task's own group rewritten to nothing.
    let (out, home) = run_off(
        home,
        &url,
        &[
            "--json",
            "isolate",
            "ecs",
            "--cluster",
            &t.cluster,
            "--task",
            &t.arn,
            "--case",
            "E",
        ],
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["prior"]["protected"], false);
    assert_eq!(r["taken"][0][0], "scale-in protection on");
    assert_eq!(proxy.count("UpdateTaskProtection"), 1);
    let isolated = rules(&endpoint, &t.group).await;
    assert_eq!(
        (isolated.0, isolated.1),
        (0, 0),
        "no rule left: {}",
        isolated.2
    );

    // Release: the recorded rules and protection back.
    let (out, home) = run_off(
        home,
        &url,
        &[
            "--json",
            "release",
            "ecs",
            "--cluster",
            &t.cluster,
            "--task",
            &t.arn,
        ],
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let after = rules(&endpoint, &t.group).await;
    assert_eq!((after.0, after.1), (1, 1), "{}", after.2);
    assert_eq!(after.2, before.2, "the 443 rule as it was");
    assert_eq!(
        proxy.count("UpdateTaskProtection"),
        2,
        "protection put back off"
    );
    let v = home.run(&["verify", "E"]);
    assert!(v.status.success(), "{}", stderr(&v));

    // A group shared with another interface: refused, nothing rewritten.
    let ec2 = aws_sdk_ec2::Client::new(&conf(&endpoint));
    ec2.create_network_interface()
        .subnet_id(&t.subnet)
        .groups(&t.group)
        .send()
        .await
        .unwrap();
    proxy.heal();
    protection_stubs(&proxy, &t.arn, &[false, true]);
    let (out, _home) = run_off(
        home,
        &url,
        &[
            "isolate",
            "ecs",
            "--cluster",
            &t.cluster,
            "--task",
            &t.arn,
            "--case",
            "F",
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("also attached to 1 other network interface"),
        "{}",
        stderr(&out)
    );
    let kept = rules(&endpoint, &t.group).await;
    assert_eq!(kept.2, before.2, "the shared group is untouched");

    // A task that stopped: still described (AWS keeps it about an hour)
    // and said to be stopped; there is no network left to isolate.
    let ecs = aws_sdk_ecs::Client::new(&conf(&endpoint));
    ecs.stop_task()
        .cluster(&t.cluster)
        .task(&t.arn)
        .reason("scaled in")
        .send()
        .await
        .unwrap();
    proxy.heal();
    protection_stubs(&proxy, &t.arn, &[false, false]);
    let home = Home::new();
    let (out, home) = run_off(
        home,
        &url,
        &[
            "--json",
            "acquire",
            "ecs",
            "--cluster",
            &t.cluster,
            "--task",
            &t.arn,
            "--case",
            "S",
        ],
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        r["artefacts"][0]["notes"]
            .to_string()
            .contains("had stopped"),
        "{}",
        r["artefacts"][0]
    );
    let _ = home;

    // A task that is not there.
    let home = Home::new();
    let out = run(
        &home,
        &url,
        &[
            "acquire",
            "ecs",
            "--cluster",
            &t.cluster,
            "--task",
            "0123456789abcdef",
            "--case",
            "G",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("is not in cluster"),
        "{}",
        stderr(&out)
    );
}

/// A task of the EC2 launch type, on a container instance registered from
/// a moto EC2 instance: the acquisition names the node, so it can be taken
/// through the EC2 path.
#[tokio::test(flavor = "multi_thread")]
async fn an_ec2_launch_type_task_names_its_node() {
    let Some(endpoint) = emulator("CUSTODY_TEST_S3_ENDPOINT") else {
        return;
    };
    let c = conf(&endpoint);
    let ec2 = aws_sdk_ec2::Client::new(&c);
    let ecs = aws_sdk_ecs::Client::new(&c);
    let node = ec2
        .run_instances()
        .image_id(crate::common::any_image(&ec2).await)
        .instance_type(aws_sdk_ec2::types::InstanceType::T2Micro)
        .min_count(1)
        .max_count(1)
        .send()
        .await
        .unwrap()
        .instances()[0]
        .instance_id()
        .unwrap()
        .to_owned();
    let u = uuid::Uuid::new_v4().simple().to_string();
    let cluster = format!("ec2-{u}");
    ecs.create_cluster()
        .cluster_name(&cluster)
        .send()
        .await
        .unwrap();
    // The ECS agent registers a node with its instance identity document.
    let identity = serde_json::json!({
        "instanceId": node, "region": "us-east-1", "accountId": "123456789012",
        "instanceType": "t2.micro", "imageId": "ami-x", "privateIp": "10.0.0.5"
    });
    ecs.register_container_instance()
        .cluster(&cluster)
        .instance_identity_document(identity.to_string())
        .send()
        .await
        .unwrap();
    let family = format!("batch-{u}");
    ecs.register_task_definition()
        .family(&family)
        .network_mode(aws_sdk_ecs::types::NetworkMode::Bridge)
        .requires_compatibilities(aws_sdk_ecs::types::Compatibility::Ec2)
        .container_definitions(
            aws_sdk_ecs::types::ContainerDefinition::builder()
                .name("worker")
                .image(format!("worker@sha256:{}", "b".repeat(64)))
                .memory(128)
                .cpu(64)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let run = ecs
        .run_task()
        .cluster(&cluster)
        .task_definition(&family)
        .launch_type(aws_sdk_ecs::types::LaunchType::Ec2)
        .send()
        .await
        .unwrap();
    let arn = run.tasks()[0].task_arn().unwrap().to_owned();

    let home = Home::new();
    let (out, home) = run_off(
        home,
        &endpoint,
        &[
            "--json",
            "acquire",
            "ecs",
            "--cluster",
            &cluster,
            "--task",
            &arn,
            "--case",
            "N",
        ],
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let art = &r["artefacts"][0];
    assert_eq!(art["kind"], "cloud_resource");
    assert!(
        art["notes"].as_array().unwrap().iter().any(|n| n
            .as_str()
            .unwrap()
            .contains(&format!("acquire ebs --instance {node}"))),
        "the node is named: {art}"
    );
    let dest = home.path().join("task.json");
    let o = home.run(&[
        "export",
        "N",
        art["id"].as_str().unwrap(),
        "-o",
        dest.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&dest).unwrap()).unwrap();
    assert_eq!(doc["launch_type"], "EC2");
    assert_eq!(doc["ec2_instance"], node.as_str());
    assert!(doc["answers"]["DescribeContainerInstances"].is_object());
    assert!(
        doc["network_interfaces"]
            .as_array()
            .is_none_or(|n| n.is_empty())
    );
}
