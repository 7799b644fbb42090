//! The detector end to end on records custody parses: custody's own rules
//! on a business email compromise with no GeoIP and no baseline, SigmaHQ's
//! rules (read from ../shared, never copied) on CloudTrail, indicator lists.

use std::path::PathBuf;

use serde_json::json;

use super::ioc::IocList;
use super::rules::RuleSet;
use super::*;
use crate::timeline::parse::{Collect, FileContext, Format, parse_with};

/// Parses `bytes` twice: once to give every event a row (its index), as a
/// load would, then through the detector.
fn detect(
    format: Format,
    bytes: &[u8],
    rules: &RuleSet,
    lists: Vec<IocList>,
) -> (Vec<NewDetection>, Vec<Event>) {
    let ctx = FileContext::default();
    let mut loaded = Collect::default();
    parse_with(format, "", bytes, &ctx, &mut loaded);
    assert!(loaded.problems.is_empty(), "{:?}", loaded.problems);
    let rows: RowMap = loaded
        .events
        .iter()
        .enumerate()
        .map(|(i, e)| {
            (
                (e.member.clone(), e.locator.clone()),
                i64::try_from(i).expect("row"),
            )
        })
        .collect();
    let det = Detector::new(rules, lists);
    let mut scan = det.scan(&rows, InflateLimits::DEFAULT);
    parse_with(format, "", bytes, &ctx, &mut scan);
    assert_eq!(scan.out.records, loaded.events.len() as u64);
    (det.finish(scan.out), loaded.events)
}

fn ual(time: &str, user: &str, ip: &str, op: &str, params: serde_json::Value) -> String {
    json!({
        "CreationTime": time, "Id": uuid::Uuid::new_v4().to_string(), "Operation": op,
        "OrganizationId": "0b5e7c8a-0000-4000-8000-000000000001", "RecordType": 1,
        "ResultStatus": "True", "UserKey": user, "UserType": 0, "Version": 1,
        "Workload": "Exchange", "ClientIP": format!("{ip}:51234"), "UserId": user,
        "ObjectId": format!("{user}\\rule"), "Parameters": params,
    })
    .to_string()
}

/// A small tenant's audit export shaped like the real one in the issue: one
/// account, from one foreign address, creates 38 inbox rules hiding a
/// partner's mail, then mails 25 contacts within the hour; around it, the
/// others' ordinary work, including inbox rules of their own that file
/// newsletters away.
fn bec_export() -> String {
    let mut lines = Vec::new();
    let users = ["ann", "ben", "cat", "dan", "eve", "fay"];
    for i in 0..150 {
        let u = users[i % users.len()];
        let op = ["MailItemsAccessed", "FileAccessed", "UserLoggedIn", "Send"][i % 4];
        lines.push(ual(
            &format!("2024-03-04T{:02}:{:02}:00", 8 + i / 60, i % 60),
            &format!("{u}@contoso.com"),
            "192.0.2.10",
            op,
            json!([]),
        ));
    }
    for (i, u) in users.iter().enumerate() {
        lines.push(ual(
            &format!("2024-03-04T11:0{i}:00"),
            &format!("{u}@contoso.com"),
            "192.0.2.10",
            "New-InboxRule",
            json!([{"Name": "Name", "Value": "News"}, {"Name": "MoveToFolder", "Value": "Newsletters"},
                   {"Name": "From", "Value": "news@shop.example"}]),
        ));
    }
    for i in 0..38 {
        lines.push(ual(
            &format!("2024-03-04T12:{:02}:30", i),
            "victim@contoso.com",
            "203.0.113.77",
            "New-InboxRule",
            json!([{"Name": "Name", "Value": format!("..{i}")},
                   {"Name": "From", "Value": format!("ap{i}@partner.example")},
                   {"Name": "MoveToFolder", "Value": "Conversation History"},
                   {"Name": "MarkAsRead", "Value": "True"},
                   {"Name": "StopProcessingRules", "Value": "True"}]),
        ));
    }
    for i in 0..25 {
        lines.push(ual(
            &format!("2024-03-04T13:{:02}:10", i * 2),
            "victim@contoso.com",
            "203.0.113.77",
            "Send",
            json!([]),
        ));
    }
    lines.push(ual(
        "2024-03-04T14:00:00",
        "eve@contoso.com",
        "192.0.2.10",
        "Set-Mailbox",
        json!([{"Name": "Identity", "Value": "eve@contoso.com"},
               {"Name": "ForwardingSmtpAddress", "Value": "smtp:eve.private@example.org"}]),
    ));
    lines.join("\n")
}

fn titled<'a>(found: &'a [NewDetection], title: &str) -> Vec<&'a NewDetection> {
    found.iter().filter(|d| d.title == title).collect()
}

#[test]
fn a_textbook_bec_export_gives_findings_without_geoip_or_baseline() {
    let export = bec_export();
    let (found, events) = detect(
        Format::UalJsonl,
        export.as_bytes(),
        &RuleSet::builtin(),
        Vec::new(),
    );
    assert_eq!(events.len(), 220);
    let hides = titled(&found, "Inbox rule hides mail from its owner");
    assert_eq!(hides.len(), 1, "{found:#?}");
    let hides = hides[0];
    assert_eq!(hides.actors, vec!["victim@contoso.com"]);
    assert_eq!(
        hides.rows.len(),
        38,
        "the newsletter rules are not among them"
    );
    assert_eq!(hides.level, "high");
    assert!(hides.tags.iter().any(|t| t == "attack.t1564.008"));
    for r in &hides.rows {
        let e = &events[usize::try_from(*r).expect("row")];
        assert_eq!(
            (e.action.as_str(), e.actor.as_deref()),
            ("New-InboxRule", Some("victim@contoso.com"))
        );
    }

    let burst = titled(&found, "Burst of outbound mail from one account");
    assert_eq!(burst.len(), 1, "{found:#?}");
    assert_eq!(burst[0].actors, vec!["victim@contoso.com"]);
    assert!(burst[0].rows.len() >= 20, "{:?}", burst[0].rows);
    assert!(burst[0].rows.iter().all(
        |r| events[usize::try_from(*r).expect("row")].actor.as_deref()
            == Some("victim@contoso.com")
    ));
    // The mails counted are not findings one by one.
    assert!(titled(&found, "Mail sent from a mailbox").is_empty());

    let fwd = titled(
        &found,
        "Mailbox forwarding to an address outside the organisation",
    );
    assert_eq!(fwd.len(), 1, "{found:#?}");
    assert_eq!(fwd[0].actors, vec!["eve@contoso.com"]);
    // Nothing else fires on ordinary work.
    assert_eq!(found.len(), 3, "{found:#?}");
}

fn shared() -> PathBuf {
    // The workplace's ../shared beside the checkout; CUSTODY_SHARED where it is elsewhere.
    std::env::var_os("CUSTODY_SHARED").map_or_else(
        || {
            PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets it"))
                .join("../shared")
        },
        PathBuf::from,
    )
}

fn trail(records: &[serde_json::Value]) -> Vec<u8> {
    json!({ "Records": records }).to_string().into_bytes()
}

fn ct(name: &str, source: &str, extra: serde_json::Value) -> serde_json::Value {
    let mut r = json!({
        "eventVersion": "1.08", "eventTime": "2024-03-04T12:00:00Z", "eventSource": source,
        "eventName": name, "awsRegion": "us-east-1", "sourceIPAddress": "203.0.113.5",
        "userAgent": "aws-cli/2.15", "eventID": uuid::Uuid::new_v4().to_string(),
        "eventType": "AwsApiCall", "recipientAccountId": "111122223333",
        "userIdentity": {"type": "IAMUser", "arn": "arn:aws:iam::111122223333:user/mallory",
                         "accountId": "111122223333", "userName": "mallory"},
    });
    if let (Some(m), Some(extra)) = (r.as_object_mut(), extra.as_object()) {
        m.extend(extra.clone());
    }
    r
}

#[test]
fn sigmahq_cloudtrail_rules_fire_on_what_they_describe_and_nothing_else() {
    let mut set = RuleSet::default();
    set.add_path(&shared().join("sigma/rules/cloud/aws/cloudtrail"))
        .expect("../shared/sigma is part of the workplace");
    set.settle();
    assert!(
        set.rules.len() >= 50,
        "{} rules, set aside {:#?}",
        set.rules.len(),
        set.set_aside
    );
    let bytes = trail(&[
        ct(
            "StopLogging",
            "cloudtrail.amazonaws.com",
            json!({"requestParameters": {"name": "main"}}),
        ),
        // An object compared whole: `requestParameters|contains: Suspended`.
        ct(
            "PutBucketVersioning",
            "s3.amazonaws.com",
            json!({"requestParameters": {"bucketName": "b", "VersioningConfiguration": {"Status": "Suspended"}}}),
        ),
        ct("DescribeInstances", "ec2.amazonaws.com", json!({})),
        ct(
            "GetObject",
            "s3.amazonaws.com",
            json!({"requestParameters": {"bucketName": "b", "key": "k"}}),
        ),
    ]);
    let (found, _) = detect(Format::Cloudtrail, &bytes, &set, Vec::new());
    let titles: Vec<(&str, Vec<i64>)> = found
        .iter()
        .map(|d| (d.title.as_str(), d.rows.clone()))
        .collect();
    assert!(
        titles
            .iter()
            .any(|(t, rows)| t.contains("CloudTrail") && rows == &vec![0]),
        "StopLogging: {titles:#?}"
    );
    assert!(
        titles
            .iter()
            .any(|(t, rows)| t.contains("Versioning") && rows == &vec![1]),
        "PutBucketVersioning Suspended: {titles:#?}"
    );
    assert!(
        found
            .iter()
            .all(|d| !d.rows.contains(&2) && !d.rows.contains(&3)),
        "ordinary reads match nothing: {titles:#?}"
    );
}

#[test]
fn indicator_hits_name_the_list_and_the_row() {
    let list =
        IocList::parse("bec.txt", b"# attacker\n203.0.113.77\nshop.example\n").expect("list");
    let export = bec_export();
    let (found, events) = detect(
        Format::UalJsonl,
        export.as_bytes(),
        &RuleSet::default(),
        vec![list],
    );
    let ip = found
        .iter()
        .find(|d| d.rule == "bec.txt:line 2")
        .unwrap_or_else(|| panic!("{found:#?}"));
    assert_eq!(ip.kind, "ioc");
    assert_eq!(ip.rows.len(), 63, "38 rules and 25 mails from the address");
    assert!(
        ip.rows
            .iter()
            .all(|r| events[usize::try_from(*r).expect("row")].ip
                == Some("203.0.113.77".parse().expect("ip")))
    );
    let dom = found
        .iter()
        .find(|d| d.rule == "bec.txt:line 3")
        .unwrap_or_else(|| panic!("{found:#?}"));
    assert_eq!(
        dom.rows.len(),
        6,
        "the newsletter rules name news@shop.example"
    );
}

#[test]
fn a_record_the_timeline_dropped_adds_nothing() {
    let bytes = trail(&[ct("StopLogging", "cloudtrail.amazonaws.com", json!({}))]);
    let mut set = RuleSet::default();
    set.add_path(
        &shared().join("sigma/rules/cloud/aws/cloudtrail/aws_cloudtrail_disable_logging.yml"),
    )
    .expect("rule");
    set.settle();
    let det = Detector::new(&set, Vec::new());
    let rows = RowMap::default();
    let mut scan = det.scan(&rows, InflateLimits::DEFAULT);
    parse_with(
        Format::Cloudtrail,
        "",
        &bytes,
        &FileContext::default(),
        &mut scan,
    );
    assert_eq!((scan.out.records, scan.out.unplaced), (1, 1));
    assert!(det.finish(scan.out).is_empty());
}

/// Rules in one file: two detection rules and the correlations over them.
fn add(set: &mut RuleSet, text: &str) {
    let dir = tempfile::tempdir().expect("dir");
    let f = dir.path().join("r.yml");
    std::fs::write(&f, text).expect("write");
    set.add_path(&f).expect("rules");
}

#[test]
fn value_count_and_temporal_correlations_fire_per_group_in_time_order() {
    let mut set = RuleSet::default();
    add(
        &mut set,
        "title: rule made\nname: made\nlogsource: {product: m365, service: audit}\ndetection:\n  s:\n    Operation: New-InboxRule\n  condition: s\n---\n\
         title: mail sent\nname: sent\nlogsource: {product: m365, service: audit}\ndetection:\n  s:\n    Operation: Send\n  condition: s\n---\n\
         title: Rule then mail\nid: 9d2b8c1e-0000-4000-8000-0000000000aa\ncorrelation:\n  type: temporal_ordered\n  rules: [made, sent]\n  group-by: [UserId]\n  timespan: 1h\n  generate: true\n---\n\
         title: Many addresses\nid: 9d2b8c1e-0000-4000-8000-0000000000bb\ncorrelation:\n  type: value_count\n  rules: [sent]\n  group-by: [UserId]\n  timespan: 1h\n  condition:\n    gte: 3\n    field: ClientIP\n",
    );
    set.settle();
    assert!(set.set_aside.is_empty(), "{:#?}", set.set_aside);
    let mut lines = Vec::new();
    // victim: a rule, then mail from three addresses within the hour.
    lines.push(ual(
        "2024-03-04T10:00:00",
        "victim@contoso.com",
        "203.0.113.1",
        "New-InboxRule",
        json!([]),
    ));
    for (i, ip) in ["203.0.113.1", "203.0.113.2", "203.0.113.3"]
        .iter()
        .enumerate()
    {
        lines.push(ual(
            &format!("2024-03-04T10:1{i}:00"),
            "victim@contoso.com",
            ip,
            "Send",
            json!([]),
        ));
    }
    // other: mail first, the rule two hours later; one address only.
    lines.push(ual(
        "2024-03-04T10:00:00",
        "other@contoso.com",
        "192.0.2.1",
        "Send",
        json!([]),
    ));
    lines.push(ual(
        "2024-03-04T12:00:00",
        "other@contoso.com",
        "192.0.2.1",
        "New-InboxRule",
        json!([]),
    ));
    let (found, _) = detect(
        Format::UalJsonl,
        lines.join("\n").as_bytes(),
        &set,
        Vec::new(),
    );
    let fired: Vec<(&str, &Vec<String>, usize)> = found
        .iter()
        .filter(|d| d.detail.get("correlation").is_some())
        .map(|d| (d.title.as_str(), &d.actors, d.rows.len()))
        .collect();
    let victim = vec!["victim@contoso.com".to_owned()];
    assert!(
        fired.contains(&("Many addresses", &victim, 3)),
        "{fired:#?}"
    );
    assert!(
        fired
            .iter()
            .any(|(t, a, _)| *t == "Rule then mail" && **a == victim),
        "{fired:#?}"
    );
    assert!(
        fired.iter().all(|(_, a, _)| **a == victim),
        "other's order and addresses do not fire: {fired:#?}"
    );
    // `generate: true` keeps the counted rule's own matches as findings.
    assert!(found.iter().any(|d| d.title == "rule made"));
}
