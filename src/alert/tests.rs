use std::collections::BTreeMap;
use std::net::IpAddr;

use proptest::prelude::*;
use serde_json::{Value, json};
use time::macros::datetime;

use super::*;

fn sample(name: &str) -> Vec<u8> {
    let path = format!("{}/examples/alerts/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn one(source: &str, body: &[u8]) -> Alert {
    let mut alerts = parse(source, body, &Limits::default()).expect("parses");
    assert_eq!(alerts.len(), 1);
    alerts.remove(0)
}

fn err(source: &str, body: &[u8]) -> AlertError {
    parse(source, body, &Limits::default()).expect_err("refused")
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

fn ips(v: &[&str]) -> Vec<IpAddr> {
    v.iter().map(|s| s.parse().expect("ip")).collect()
}

fn tags(v: &[(&str, &str)]) -> BTreeMap<String, String> {
    v.iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

// --- the samples in examples/alerts ---

#[test]
fn sample_guardduty_ssh_bruteforce() {
    let a = one("guardduty", &sample("guardduty-ssh-bruteforce.json"));
    assert_eq!(
        a,
        Alert {
            source: AlertSource::Guardduty,
            id: "a4c8f2e19b7d4e6f8a0b1c2d3e4f5a6b".into(),
            time: datetime!(2026-03-14 09:27:03.512 UTC),
            severity: 8.0,
            severity_label: SeverityLabel::High,
            title:
                "198.51.100.23 is performing SSH brute force attacks against i-0a1b2c3d4e5f67890."
                    .into(),
            finding_type: Some("UnauthorizedAccess:EC2/SSHBruteForce".into()),
            resource_type: Some("Instance".into()),
            account: Some("123456789012".into()),
            region: Some("eu-west-1".into()),
            tags: tags(&[("Name", "web-1"), ("team", "payments")]),
            entities: Entities {
                instances: strings(&["i-0a1b2c3d4e5f67890"]),
                accounts: strings(&["123456789012"]),
                regions: strings(&["eu-west-1"]),
                ips: ips(&["10.0.12.34", "198.51.100.23", "203.0.113.10"]),
                principals: vec![],
                ..Entities::default()
            },
        }
    );
}

#[test]
fn sample_guardduty_low_severity() {
    let a = one("guardduty", &sample("guardduty-low-severity.json"));
    assert_eq!(a.id, "5e7a9c1b3d5f7a9c1e3b5d7f9a1c3e5b");
    assert_eq!(a.time, datetime!(2026-03-14 11:01:44 UTC));
    assert_eq!(a.severity, 2.0);
    assert_eq!(a.severity_label, SeverityLabel::Low);
    assert_eq!(
        a.finding_type.as_deref(),
        Some("Recon:IAMUser/MaliciousIPCaller")
    );
    assert_eq!(a.resource_type.as_deref(), Some("AccessKey"));
    assert!(a.tags.is_empty());
    assert_eq!(
        a.entities,
        Entities {
            instances: vec![],
            accounts: strings(&["123456789012"]),
            regions: strings(&["eu-west-1"]),
            ips: ips(&["192.0.2.77"]),
            principals: strings(&["AIDAEXAMPLEPRINCIPAL1", "ci-deployer"]),
            ..Entities::default()
        }
    );
}

#[test]
fn sample_securityhub_imported_has_two_findings() {
    let alerts = parse(
        "securityhub",
        &sample("securityhub-imported.json"),
        &Limits::default(),
    )
    .expect("parses");
    let [c2, iam] = alerts.as_slice() else {
        panic!("expected two alerts, got {alerts:?}")
    };

    assert_eq!(c2.source, AlertSource::Securityhub);
    assert_eq!(
        c2.id,
        "arn:aws:guardduty:us-east-1:123456789012:detector/7b6a5f4e3d2c1b0a9f8e7d6c5b4a3f2e/finding/c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8"
    );
    assert_eq!(c2.time, datetime!(2026-03-14 12:14:58.904 UTC));
    assert_eq!(c2.severity, 8.0);
    assert_eq!(c2.severity_label, SeverityLabel::High);
    assert_eq!(
        c2.finding_type.as_deref(),
        Some("TTPs/Command and Control/Backdoor:EC2-C&CActivity.B!DNS")
    );
    assert_eq!(c2.resource_type.as_deref(), Some("AwsEc2Instance"));
    assert_eq!(c2.account.as_deref(), Some("123456789012"));
    assert_eq!(c2.region.as_deref(), Some("us-east-1"));
    assert_eq!(
        c2.tags,
        tags(&[("Name", "batch-worker-3"), ("custody:exempt", "false")])
    );
    assert_eq!(
        c2.entities,
        Entities {
            instances: strings(&["i-0123456789abcdef0"]),
            accounts: strings(&["123456789012"]),
            regions: strings(&["us-east-1"]),
            ips: ips(&["10.1.4.25", "54.210.0.99"]),
            principals: vec![],
            ..Entities::default()
        }
    );

    assert_eq!(
        iam.id,
        "arn:aws:securityhub:us-east-1:123456789012:subscription/aws-foundational-security-best-practices/v/1.0.0/IAM.3/finding/8f7e6d5c-4b3a-2918-0f7e-6d5c4b3a2918"
    );
    assert_eq!(iam.severity, 4.0);
    assert_eq!(iam.severity_label, SeverityLabel::Medium);
    assert_eq!(iam.resource_type.as_deref(), Some("AwsIamAccessKey"));
    assert_eq!(
        iam.entities,
        Entities {
            instances: vec![],
            accounts: strings(&["123456789012"]),
            regions: strings(&["us-east-1"]),
            ips: vec![],
            principals: strings(&["AIDAEXAMPLEPRINCIPAL2", "legacy-etl"]),
            ..Entities::default()
        }
    );
}

#[test]
fn sample_generic() {
    let a = one("generic", &sample("generic.json"));
    assert_eq!(
        a,
        Alert {
            source: AlertSource::Generic,
            id: "edr-2026-03-14-000417".into(),
            // Given as +01:00, kept in UTC.
            time: datetime!(2026-03-14 12:45 UTC),
            severity: 9.0,
            severity_label: SeverityLabel::Critical,
            title: "Credential dumping tool executed on build host".into(),
            finding_type: Some("CredentialAccess/LSASSDump".into()),
            resource_type: Some("Instance".into()),
            account: Some("210987654321".into()),
            region: Some("eu-central-1".into()),
            tags: tags(&[("env", "prod"), ("owner", "build-team")]),
            entities: Entities {
                instances: strings(&["i-0fedcba9876543210", "i-1234abcd"]),
                accounts: strings(&["210987654321"]),
                regions: strings(&["eu-central-1"]),
                ips: ips(&["10.20.30.40", "2001:db8::17"]),
                principals: strings(&["arn:aws:iam::210987654321:role/build", "build-agent"]),
                ..Entities::default()
            },
        }
    );
    assert_eq!(
        a.entities.join_keys(),
        strings(&[
            "instance:i-0fedcba9876543210",
            "instance:i-1234abcd",
            "ip:10.20.30.40",
            "ip:2001:db8::17",
            "principal:arn:aws:iam::210987654321:role/build",
            "principal:build-agent",
        ])
    );
}

/// The adapter a sample is for, from its file name.
fn source_of(file: &str) -> &'static str {
    AlertSource::ALL
        .into_iter()
        .map(AlertSource::as_str)
        .find(|s| file.starts_with(s))
        .unwrap_or_else(|| panic!("sample {file} names no known source"))
}

#[test]
fn every_sample_parses_and_round_trips_through_serde() {
    let dir = format!("{}/examples/alerts", env!("CARGO_MANIFEST_DIR"));
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).expect("samples") {
        let path = entry.expect("entry").path();
        let Some(file) = path.file_name().and_then(|f| f.to_str()) else {
            continue;
        };
        if !file.ends_with(".json") {
            continue;
        }
        let body = std::fs::read(&path).expect("read");
        let alerts = parse(source_of(file), &body, &Limits::default())
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        for a in alerts {
            let text = serde_json::to_string(&a).expect("serialise");
            let back: Alert = serde_json::from_str(&text).expect("deserialise");
            assert_eq!(back, a, "{file}");
        }
        seen += 1;
    }
    assert!(seen >= 4, "only {seen} samples in {dir}");
}

#[test]
fn alert_serialises_with_rfc3339_time_and_lowercase_names() {
    let a = one("guardduty", &sample("guardduty-ssh-bruteforce.json"));
    let v = serde_json::to_value(&a).expect("serialise");
    assert_eq!(v["source"], "guardduty");
    assert_eq!(v["time"], "2026-03-14T09:27:03.512Z");
    assert_eq!(v["severity_label"], "high");
    assert_eq!(v["entities"]["ips"][0], "10.0.12.34");
}

// --- other accepted forms ---

fn guardduty_event() -> Value {
    serde_json::from_slice(&sample("guardduty-ssh-bruteforce.json")).expect("json")
}

fn securityhub_event() -> Value {
    serde_json::from_slice(&sample("securityhub-imported.json")).expect("json")
}

fn generic_alert() -> Value {
    serde_json::from_slice(&sample("generic.json")).expect("json")
}

fn body(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).expect("json")
}

#[test]
fn guardduty_bare_finding_equals_the_enveloped_one() {
    let event = guardduty_event();
    let bare = one("guardduty", &body(&event["detail"]));
    assert_eq!(bare, one("guardduty", &body(&event)));
}

#[test]
fn guardduty_falls_back_to_created_at_and_the_envelope() {
    let mut event = guardduty_event();
    let detail = event["detail"].as_object_mut().expect("object");
    detail.remove("updatedAt");
    detail.remove("accountId");
    detail.remove("region");
    event["account"] = json!("111122223333");
    let a = one("guardduty", &body(&event));
    assert_eq!(a.time, datetime!(2026-03-14 09:05:12.345 UTC));
    assert_eq!(a.account.as_deref(), Some("111122223333"));
    assert_eq!(a.region.as_deref(), Some("eu-west-1"));
}

#[test]
fn guardduty_port_probes_and_empty_strings() {
    let mut event = guardduty_event();
    event["detail"]["service"]["action"] = json!({
        "portProbeAction": { "portProbeDetails": [
            { "remoteIpDetails": { "ipAddressV4": "198.51.100.1" } },
            { "remoteIpDetails": { "ipAddressV4": "198.51.100.2" } },
            { "remoteIpDetails": { "ipAddressV4": "198.51.100.1" } }
        ]}
    });
    // `""` and null mean "none" and are skipped, not refused.
    event["detail"]["resource"]["instanceDetails"]["networkInterfaces"][0]["publicIp"] = json!("");
    event["detail"]["resource"]["instanceDetails"]["networkInterfaces"][0]["ipv6Addresses"] =
        Value::Null;
    let a = one("guardduty", &body(&event));
    assert_eq!(
        a.entities.ips,
        ips(&["10.0.12.34", "198.51.100.1", "198.51.100.2"])
    );
}

#[test]
fn guardduty_critical_band() {
    let mut event = guardduty_event();
    event["detail"]["severity"] = json!(9.5);
    let a = one("guardduty", &body(&event));
    assert_eq!(
        (a.severity, a.severity_label),
        (9.5, SeverityLabel::Critical)
    );
}

#[test]
fn securityhub_severity_label_and_normalized() {
    let cases = [
        (json!({ "Label": "CRITICAL" }), 9.0, SeverityLabel::Critical),
        (json!({ "Label": "INFORMATIONAL" }), 0.0, SeverityLabel::Low),
        (json!({ "Normalized": 55 }), 5.5, SeverityLabel::Medium),
        (
            json!({ "Label": "HIGH", "Normalized": 75 }),
            7.5,
            SeverityLabel::High,
        ),
        // The label wins when the two disagree.
        (
            json!({ "Label": "LOW", "Normalized": 95 }),
            1.0,
            SeverityLabel::Low,
        ),
    ];
    for (sev, score, label) in cases {
        let mut event = securityhub_event();
        event["detail"]["findings"][0]["Severity"] = sev.clone();
        let a = parse("securityhub", &body(&event), &Limits::default()).expect("parses");
        assert_eq!(
            (a[0].severity, a[0].severity_label),
            (score, label),
            "{sev}"
        );
    }
}

#[test]
fn securityhub_bare_instance_id_and_network_source() {
    let mut event = securityhub_event();
    let f = &mut event["detail"]["findings"][0];
    f["Resources"][0]["Id"] = json!("i-0aaaabbbbccccdddd");
    f["Resources"][0]["Details"] = Value::Null;
    f["Network"] = json!({ "SourceIpV4": "192.0.2.9" });
    let a = parse("securityhub", &body(&event), &Limits::default()).expect("parses");
    assert_eq!(a[0].entities.instances, strings(&["i-0aaaabbbbccccdddd"]));
    assert_eq!(a[0].entities.ips, ips(&["192.0.2.9"]));
}

#[test]
fn generic_minimal_and_numeric_severity() {
    let a = one(
        "generic",
        br#"{"id":"x1","time":"2026-01-02T03:04:05Z","severity":6.5,"title":"t"}"#,
    );
    assert_eq!((a.severity, a.severity_label), (6.5, SeverityLabel::Medium));
    assert!(a.entities.is_empty());
    assert_eq!(a.finding_type, None);
}

// --- bad input: each error kind ---

#[test]
fn unknown_source_lists_the_known_ones() {
    let e = err("crowdstrike", b"{}");
    assert!(matches!(e, AlertError::UnknownSource { .. }), "{e}");
    let text = e.to_string();
    assert!(
        text.contains("crowdstrike") && text.contains("guardduty, securityhub, generic"),
        "{text}"
    );
}

#[test]
fn malformed_json_has_line_and_column() {
    for source in ["guardduty", "securityhub", "generic"] {
        let e = err(source, b"{\n  \"id\": \"x\",\n  \"time\" 3\n}");
        let AlertError::MalformedJson {
            line,
            column,
            ref reason,
            ..
        } = e
        else {
            panic!("{e}")
        };
        assert_eq!((line, column), (3, 10), "{e}");
        assert!(!reason.contains("at line"), "{e}");
        assert!(e.to_string().contains("line 3, column 10"), "{e}");
    }
    assert!(matches!(
        err("generic", b""),
        AlertError::MalformedJson { .. }
    ));
    assert!(matches!(
        err("generic", b"\xff\xfe"),
        AlertError::MalformedJson { .. }
    ));
}

fn shape_path(e: &AlertError) -> &str {
    match e {
        AlertError::WrongShape { path, .. } => path,
        other => panic!("expected a shape error, got {other}"),
    }
}

#[test]
fn wrong_shape_names_the_field_path() {
    let mut event = guardduty_event();
    event["detail"]["resource"]["instanceDetails"]["instanceId"] = json!(42);
    let e = err("guardduty", &body(&event));
    assert_eq!(shape_path(&e), "detail.resource.instanceDetails.instanceId");
    assert!(
        e.to_string().contains("expected a string, found a number"),
        "{e}"
    );

    let mut event = guardduty_event();
    event["detail"].as_object_mut().expect("obj").remove("id");
    let e = err("guardduty", &body(&event));
    assert_eq!(shape_path(&e), "detail.id");
    assert!(e.to_string().contains("missing"), "{e}");

    let mut event = securityhub_event();
    event["detail"]["findings"][1]["Resources"][0]["Tags"] = json!(["a"]);
    let e = err("securityhub", &body(&event));
    assert_eq!(shape_path(&e), "detail.findings[1].Resources[0].Tags");

    let e = err("guardduty", b"[1, 2]");
    assert_eq!(shape_path(&e), "the top level");
    let e = err(
        "securityhub",
        br#"{"detail-type":"Security Hub Findings - Imported","detail":{}}"#,
    );
    assert_eq!(shape_path(&e), "detail.findings");
    let e = err(
        "securityhub",
        br#"{"detail-type":"Security Hub Findings - Imported","detail":{"findings":[]}}"#,
    );
    assert_eq!(shape_path(&e), "detail.findings");
}

#[test]
fn generic_refuses_unknown_fields() {
    let mut alert = generic_alert();
    alert["entites"] = json!({});
    let e = err("generic", &body(&alert));
    assert_eq!(shape_path(&e), "entites");
    assert!(e.to_string().contains("unknown field"), "{e}");

    let mut alert = generic_alert();
    alert["entities"]["instance"] = json!([]);
    let e = err("generic", &body(&alert));
    assert_eq!(shape_path(&e), "entities.instance");
}

#[test]
fn wrong_event_type_is_refused() {
    let mut event = guardduty_event();
    event["detail-type"] = json!("GuardDuty Runtime Protection Healthy");
    let e = err("guardduty", &body(&event));
    assert!(matches!(e, AlertError::WrongEventType { .. }), "{e}");
    assert!(
        e.to_string()
            .contains("\"GuardDuty Finding\", got \"GuardDuty Runtime Protection Healthy\""),
        "{e}"
    );

    // A Security Hub event posted to the GuardDuty endpoint, and back.
    let e = err("guardduty", &sample("securityhub-imported.json"));
    assert!(matches!(e, AlertError::WrongEventType { .. }), "{e}");
    let e = err("securityhub", &sample("guardduty-ssh-bruteforce.json"));
    assert!(matches!(e, AlertError::WrongEventType { .. }), "{e}");
}

#[test]
fn too_many_entities_is_refused() {
    let mut alert = generic_alert();
    let many: Vec<String> = (0..300)
        .map(|i| format!("10.0.{}.{}", i / 256, i % 256))
        .collect();
    alert["entities"]["ips"] = json!(many);
    let e = err("generic", &body(&alert));
    assert!(
        matches!(e, AlertError::TooManyEntities { limit: 256, .. }),
        "{e}"
    );
    // Duplicates are one entity each.
    alert["entities"]["ips"] = json!(vec!["10.0.0.1"; 1000]);
    assert_eq!(
        one("generic", &body(&alert)).entities.ips,
        ips(&["10.0.0.1"])
    );
    // And the limit is the caller's.
    let limits = Limits {
        max_entities: 3,
        ..Limits::default()
    };
    let e = parse(
        "guardduty",
        &sample("guardduty-ssh-bruteforce.json"),
        &limits,
    )
    .expect_err("refused");
    assert!(
        matches!(e, AlertError::TooManyEntities { limit: 3, .. }),
        "{e}"
    );
}

#[test]
fn too_many_findings_is_refused() {
    let mut event = securityhub_event();
    let f = event["detail"]["findings"][0].clone();
    event["detail"]["findings"] = json!(vec![f; 101]);
    let e = err("securityhub", &body(&event));
    assert!(
        matches!(
            e,
            AlertError::TooManyFindings {
                count: 101,
                limit: 100,
                ..
            }
        ),
        "{e}"
    );
}

fn entity_error(e: &AlertError) -> (&str, &str) {
    match e {
        AlertError::InvalidEntity { path, value, .. } => (path, value),
        other => panic!("expected an entity error, got {other}"),
    }
}

#[test]
fn bad_instance_ids_are_refused_naming_the_field() {
    for bad in [
        "i-123",
        "i-0A1B2C3D",
        "i-0a1b2c3d4e5f6789",
        "vol-0a1b2c3d",
        "i-0a1b2c3g",
    ] {
        let mut event = guardduty_event();
        event["detail"]["resource"]["instanceDetails"]["instanceId"] = json!(bad);
        let e = err("guardduty", &body(&event));
        assert_eq!(
            entity_error(&e),
            ("detail.resource.instanceDetails.instanceId", bad),
            "{e}"
        );
        assert!(e.to_string().contains("EC2 instance id"), "{e}");
    }

    let mut event = securityhub_event();
    event["detail"]["findings"][0]["Resources"][0]["Id"] =
        json!("arn:aws:ec2:us-east-1:123456789012:volume/vol-0123456789abcdef0");
    let e = err("securityhub", &body(&event));
    assert_eq!(entity_error(&e).0, "detail.findings[0].Resources[0].Id");

    let mut alert = generic_alert();
    alert["entities"]["instances"] = json!(["i-0fedcba9876543210", "web-1"]);
    let e = err("generic", &body(&alert));
    assert_eq!(entity_error(&e), ("entities.instances[1]", "web-1"));
}

#[test]
fn bad_accounts_regions_ips_and_principals_are_refused() {
    let cases = [
        ("accounts", json!(["12345678901"]), "entities.accounts[0]"),
        ("regions", json!(["US-EAST-1"]), "entities.regions[0]"),
        ("ips", json!(["10.0.0.256"]), "entities.ips[0]"),
        ("principals", json!(["a\u{0}b"]), "entities.principals[0]"),
    ];
    for (field, value, path) in cases {
        let mut alert = generic_alert();
        alert["entities"][field] = value;
        let e = err("generic", &body(&alert));
        assert_eq!(entity_error(&e).0, path, "{e}");
    }
    let mut event = guardduty_event();
    event["detail"]["accountId"] = json!("not-an-account");
    let e = err("guardduty", &body(&event));
    assert_eq!(entity_error(&e).0, "detail.accountId");
}

#[test]
fn bad_times_are_refused() {
    for bad in [
        "yesterday",
        "2026-03-14 09:27:03",
        "2026-13-01T00:00:00Z",
        "0000-01-01T00:00:00+01:00",
    ] {
        let mut event = guardduty_event();
        event["detail"]["updatedAt"] = json!(bad);
        let e = err("guardduty", &body(&event));
        let AlertError::InvalidTime {
            ref path,
            ref value,
            ..
        } = e
        else {
            panic!("{bad}: {e}")
        };
        assert_eq!((path.as_str(), value.as_str()), ("detail.updatedAt", bad));
    }
    let mut event = guardduty_event();
    let detail = event["detail"].as_object_mut().expect("obj");
    detail.remove("updatedAt");
    detail.remove("createdAt");
    let e = err("guardduty", &body(&event));
    assert_eq!(shape_path(&e), "detail.updatedAt");
    assert!(e.to_string().contains("so is createdAt"), "{e}");
}

#[test]
fn bad_severities_and_ids_are_refused() {
    let mut event = guardduty_event();
    event["detail"]["severity"] = json!(11);
    assert!(matches!(
        err("guardduty", &body(&event)),
        AlertError::InvalidSeverity { .. }
    ));
    let mut event = securityhub_event();
    event["detail"]["findings"][0]["Severity"] = json!({ "Label": "SEVERE" });
    assert!(matches!(
        err("securityhub", &body(&event)),
        AlertError::InvalidSeverity { .. }
    ));
    event["detail"]["findings"][0]["Severity"] = json!({});
    assert_eq!(
        shape_path(&err("securityhub", &body(&event))),
        "detail.findings[0].Severity"
    );
    let mut alert = generic_alert();
    alert["severity"] = json!(-1);
    assert!(matches!(
        err("generic", &body(&alert)),
        AlertError::InvalidSeverity { .. }
    ));

    for bad in [json!(""), json!("a\nb"), json!("x".repeat(513))] {
        let mut alert = generic_alert();
        alert["id"] = bad;
        let e = err("generic", &body(&alert));
        assert!(matches!(e, AlertError::InvalidId { .. }), "{e}");
        // A hostile value is echoed only in part.
        assert!(e.to_string().len() < 300, "{e}");
    }
}

#[test]
fn reasons_are_distinct_metric_labels() {
    let e = err("nope", b"");
    assert_eq!(e.reason(), "unknown_source");
    assert_eq!(err("generic", b"{").reason(), "malformed_json");
}

// --- validators ---

#[test]
fn validators() {
    assert!(is_instance_id("i-1234abcd"));
    assert!(is_instance_id("i-0123456789abcdef0"));
    assert!(!is_instance_id("i-1234abc"));
    assert!(!is_instance_id("i-"));
    assert!(!is_instance_id("I-1234abcd"));
    assert!(is_account_id("000000000000"));
    assert!(!is_account_id("１２３４５６７８９０１２"));
    for ok in [
        "us-east-1",
        "us-gov-west-1",
        "ap-southeast-5",
        "cn-north-1",
        "eu-central-2",
    ] {
        assert!(is_region(ok), "{ok}");
    }
    for bad in [
        "us-east",
        "us--east-1",
        "useast1",
        "us-east-123",
        "-us-east-1",
        "u-east-1",
    ] {
        assert!(!is_region(bad), "{bad}");
    }
    assert!(!is_principal("   "));
    assert!(is_principal("alice"));
    assert_eq!(clip(&"é".repeat(200)).chars().count(), MAX_ECHO + 1);
}

// --- nothing panics ---

fn check(source: &str, body: &[u8]) -> Result<(), TestCaseError> {
    let limits = Limits::default();
    if let Ok(alerts) = parse(source, body, &limits) {
        prop_assert!(!alerts.is_empty());
        prop_assert!(alerts.len() <= limits.max_findings);
        for a in alerts {
            prop_assert!((0.0..=10.0).contains(&a.severity));
            prop_assert_eq!(a.severity_label, SeverityLabel::from_score(a.severity));
            prop_assert!(a.entities.len() <= limits.max_entities);
            prop_assert!(a.entities.instances.iter().all(|i| is_instance_id(i)));
            prop_assert!(a.entities.ips.windows(2).all(|w| w[0] < w[1]));
            let text = serde_json::to_string(&a).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let back: Alert =
                serde_json::from_str(&text).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(back, a);
        }
    }
    Ok(())
}

fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        (-20.0f64..120.0).prop_map(Value::from),
        // Strings near what the adapters look for, and arbitrary ones.
        prop_oneof![
            Just("i-0123456789abcdef0"),
            Just("123456789012"),
            Just("us-east-1"),
            Just("10.0.0.1"),
            Just("2026-03-14T09:27:03Z"),
            Just("GuardDuty Finding"),
            Just("Security Hub Findings - Imported"),
            Just("AwsEc2Instance"),
            Just("HIGH"),
            Just(""),
        ]
        .prop_map(Value::from),
        ".{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(5, 64, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            proptest::collection::btree_map(key(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Keys the adapters read, so random documents reach deep into them.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        proptest::sample::select(vec![
            "detail-type",
            "detail",
            "findings",
            "id",
            "Id",
            "time",
            "severity",
            "Severity",
            "Label",
            "Normalized",
            "title",
            "Title",
            "updatedAt",
            "UpdatedAt",
            "resource",
            "Resources",
            "Type",
            "instanceDetails",
            "instanceId",
            "tags",
            "Tags",
            "entities",
            "instances",
            "ips",
            "accountId",
            "AwsAccountId",
            "region",
            "Region",
        ])
        .prop_map(str::to_owned),
        "[a-z]{1,6}",
    ]
}

/// Replaces the value at a random place in `v` with `new`.
fn graft(v: &mut Value, choice: usize, new: Value) {
    let child = match v {
        Value::Object(m) => {
            let n = m.len() + 1;
            m.values_mut().nth(choice % n).map(|c| (c, choice / n))
        }
        Value::Array(a) => {
            let n = a.len() + 1;
            a.get_mut(choice % n).map(|c| (c, choice / n))
        }
        _ => None,
    };
    match child {
        Some((c, rest)) => graft(c, rest, new),
        None => *v = new,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic(
        source in proptest::sample::select(vec!["guardduty", "securityhub", "generic", "x"]),
        bytes in proptest::collection::vec(any::<u8>(), 0..512),
    ) {
        check(source, &bytes)?;
    }

    #[test]
    fn arbitrary_json_never_panics(
        source in proptest::sample::select(vec!["guardduty", "securityhub", "generic"]),
        v in any_json(),
    ) {
        check(source, &body(&v))?;
    }

    /// The samples with one value anywhere replaced: deep paths are reached
    /// far more often than from random documents.
    #[test]
    fn mutated_samples_never_panic(
        which in 0usize..4,
        choice in any::<usize>(),
        new in any_json(),
    ) {
        let (source, mut doc) = match which {
            0 => ("guardduty", guardduty_event()),
            1 => ("guardduty", serde_json::from_slice(&sample("guardduty-low-severity.json")).expect("json")),
            2 => ("securityhub", securityhub_event()),
            _ => ("generic", generic_alert()),
        };
        graft(&mut doc, choice, new);
        check(source, &body(&doc))?;
    }
}

// --- workloads that are not instances ---

/// The sample GuardDuty event with its resource replaced.
fn guardduty_with(resource_type: &str, resource: Value) -> Value {
    let mut event = guardduty_event();
    let mut r = resource;
    r["resourceType"] = json!(resource_type);
    event["detail"]["resource"] = r;
    event["detail"]["service"]["action"] = json!({});
    event
}

#[test]
fn guardduty_lambda_ecs_eks_and_malware_scan_resources_become_entities() {
    let lambda = one(
        "guardduty",
        &body(&guardduty_with(
            "Lambda",
            json!({ "lambdaDetails": {
                "functionArn": "arn:aws:lambda:eu-west-1:123456789012:function:payments-api",
                "functionName": "payments-api" } }),
        )),
    );
    assert_eq!(lambda.resource_type.as_deref(), Some("Lambda"));
    assert_eq!(
        lambda.entities.functions,
        strings(&["arn:aws:lambda:eu-west-1:123456789012:function:payments-api"])
    );
    assert!(lambda.entities.has_workloads());
    let task = "arn:aws:ecs:eu-west-1:123456789012:task/prod/0a1b2c3d4e5f60718293a4b5c6d7e8f9";
    let ecs = one(
        "guardduty",
        &body(&guardduty_with(
            "ECSCluster",
            json!({ "ecsClusterDetails": { "name": "prod", "taskDetails": { "arn": task } } }),
        )),
    );
    assert_eq!(ecs.entities.tasks, strings(&[task]));
    assert_eq!(crate::alert::task_cluster(task), Some("prod"));
    let eks = one(
        "guardduty",
        &body(&guardduty_with(
            "EKSCluster",
            json!({ "eksClusterDetails": { "name": "prod-eks" } }),
        )),
    );
    assert_eq!(eks.entities.clusters, strings(&["prod-eks"]));
    assert!(
        eks.entities
            .join_keys()
            .contains(&"cluster:prod-eks".to_owned())
    );
    let scan = one(
        "guardduty",
        &body(&guardduty_with(
            "Instance",
            json!({
                "instanceDetails": { "instanceId": "i-0123456789abcdef0" },
                "ebsVolumeDetails": { "scannedVolumeDetails": [
                    { "volumeArn": "arn:aws:ec2:eu-west-1:123456789012:volume/vol-0123456789abcdef0",
                      "snapshotArn": "arn:aws:ec2:eu-west-1::snapshot/snap-0fedcba9876543210" }
                ] }
            }),
        )),
    );
    assert_eq!(
        scan.entities.snapshots,
        strings(&["snap-0fedcba9876543210"])
    );
    assert_eq!(scan.entities.instances, strings(&["i-0123456789abcdef0"]));
}

#[test]
fn guardduty_attack_sequence_names_every_resource_and_actor() {
    let mut event = guardduty_with("AttackSequence", json!({}));
    event["detail"]["type"] = json!("AttackSequence:EKS/CompromisedCluster");
    event["detail"]["service"]["detection"] = json!({ "sequence": {
        "uid": "seq-1", "description": "a cluster taken over",
        "signals": [{ "uid": "s1", "type": "FINDING", "name": "x" }],
        "resources": [
            { "uid": "arn:aws:ec2:eu-west-1:123456789012:instance/i-0aaaaaaaaaaaaaaa1", "resourceType": "EC2_INSTANCE" },
            { "uid": "arn:aws:eks:eu-west-1:123456789012:cluster/prod-eks", "name": "prod-eks", "resourceType": "EKS_CLUSTER" },
            { "uid": "AKIAEXAMPLE", "name": "AKIAEXAMPLE", "resourceType": "ACCESS_KEY" },
            { "uid": "arn:aws:s3:::loot", "resourceType": "S3_BUCKET" }
        ],
        "actors": [{ "id": "a1", "user": { "name": "mallory", "uid": "AIDAEXAMPLE" } }]
    }});
    let a = one("guardduty", &body(&event));
    assert_eq!(a.entities.instances, strings(&["i-0aaaaaaaaaaaaaaa1"]));
    assert_eq!(a.entities.clusters, strings(&["prod-eks"]));
    assert_eq!(a.entities.principals, strings(&["AKIAEXAMPLE", "mallory"]));
}

#[test]
fn guardduty_runtime_monitoring_names_the_container_and_its_node() {
    let id = "6b1d6c3f0a2e4b5c8d9e0f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e";
    let event = guardduty_with(
        "Container",
        json!({
            "instanceDetails": { "instanceId": "i-0123456789abcdef0" },
            "eksClusterDetails": { "name": "prod-eks" },
            "kubernetesDetails": { "kubernetesWorkloadDetails": {
                "name": "web", "type": "deployments", "namespace": "shop" } },
            "containerDetails": { "containerRuntime": "containerd", "id": id,
                "name": "web", "image": "shop/web:1.2",
                "securityContext": { "privileged": true } }
        }),
    );
    let a = one("guardduty", &body(&event));
    assert_eq!(a.entities.containers, strings(&[id]));
    assert_eq!(a.entities.instances, strings(&["i-0123456789abcdef0"]));
    assert_eq!(a.entities.clusters, strings(&["prod-eks"]));
    assert!(a.entities.join_keys().contains(&format!("container:{id}")));
    // An attack sequence's container resource joins by its id too.
    let mut seq = guardduty_with("AttackSequence", json!({}));
    seq["detail"]["service"]["detection"] = json!({ "sequence": {
        "uid": "seq-2", "description": "x", "signals": [],
        "resources": [{ "uid": format!("arn:aws:eks:eu-west-1:123456789012:container/{id}"),
                        "resourceType": "CONTAINER" }] } });
    assert_eq!(
        one("guardduty", &body(&seq)).entities.containers,
        strings(&[id])
    );
    // Attacker-shaped ids are refused, naming the field.
    let bad = guardduty_with(
        "Container",
        json!({ "containerDetails": { "id": "../../etc;id" } }),
    );
    let e = err("guardduty", &body(&bad));
    assert!(e.to_string().contains("containerDetails.id"), "{e}");
}

/// The sample Security Hub event, its first finding alone, naming `resources`.
fn securityhub_with(resources: Value) -> Value {
    let mut event = securityhub_event();
    let findings = event["detail"]["findings"]
        .as_array_mut()
        .expect("findings");
    findings.truncate(1);
    findings[0]["Resources"] = resources;
    event
}

#[test]
fn securityhub_container_resource_becomes_an_entity() {
    let event = securityhub_with(json!([
        { "Type": "Container", "Id": "ecs-task-0a1b2c3d-1",
          "Details": { "Container": { "Name": "web", "ImageName": "shop/web:1.2" } } }
    ]));
    let a = one("securityhub", &body(&event));
    assert_eq!(a.entities.containers, strings(&["ecs-task-0a1b2c3d-1"]));
    let bad = securityhub_with(json!([{ "Type": "Container", "Id": "-rf /" }]));
    assert!(
        err("securityhub", &body(&bad))
            .to_string()
            .contains("Resources")
    );
}

#[test]
fn p2_workload_entities_of_the_wrong_shape_are_refused_by_path() {
    let bad = guardduty_with(
        "Lambda",
        json!({ "lambdaDetails": { "functionArn": "arn:aws:lambda:eu-west-1:123456789012:function:../../x" } }),
    );
    let e = err("guardduty", &body(&bad));
    assert!(
        e.to_string()
            .contains("detail.resource.lambdaDetails.functionArn"),
        "{e}"
    );
    let bad = guardduty_with(
        "EKSCluster",
        json!({ "eksClusterDetails": { "name": "-x;rm" } }),
    );
    assert!(
        err("guardduty", &body(&bad))
            .to_string()
            .contains("eksClusterDetails.name")
    );
    let bad = guardduty_with(
        "Instance",
        json!({ "ebsVolumeDetails": { "scannedVolumeDetails": [{ "snapshotArn": "snap-XYZ" }] } }),
    );
    assert!(
        err("guardduty", &body(&bad))
            .to_string()
            .contains("snapshotArn")
    );
    // A short-form task ARN names no cluster: nothing to act on, no error.
    let short = guardduty_with(
        "ECSCluster",
        json!({ "ecsClusterDetails": { "taskDetails": { "arn": "arn:aws:ecs:eu-west-1:123456789012:task/0a1b2c" } } }),
    );
    assert!(one("guardduty", &body(&short)).entities.tasks.is_empty());
}

#[test]
fn securityhub_lambda_ecs_and_eks_resources_become_entities() {
    let event = securityhub_with(json!([
        { "Type": "AwsLambdaFunction", "Id": "arn:aws:lambda:eu-west-1:123456789012:function:etl" },
        { "Type": "AwsEcsTask", "Id": "arn:aws:ecs:eu-west-1:123456789012:task/prod/abc123" },
        { "Type": "AwsEksCluster", "Id": "arn:aws:eks:eu-west-1:123456789012:cluster/prod-eks" }
    ]));
    let a = one("securityhub", &body(&event));
    assert_eq!(a.resource_type.as_deref(), Some("AwsLambdaFunction"));
    assert_eq!(
        a.entities.functions,
        strings(&["arn:aws:lambda:eu-west-1:123456789012:function:etl"])
    );
    assert_eq!(
        a.entities.tasks,
        strings(&["arn:aws:ecs:eu-west-1:123456789012:task/prod/abc123"])
    );
    assert_eq!(a.entities.clusters, strings(&["prod-eks"]));
}
