//! `custody detect` through the binary: rules and lists over an imported
//! export, the findings they make, the timeline's `rule:`, `level:` and
//! `technique:` terms and facets, re-runs, and bad input.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::common::Home;

fn run(home: &Home, args: &[&str]) -> (i32, Value, String) {
    let out = home
        .cmd()
        .arg("--json")
        .args(args)
        .output()
        .expect("custody");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let v = serde_json::from_str(&stdout).unwrap_or(Value::Null);
    (
        out.status.code().unwrap_or(-1),
        v,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ok(home: &Home, args: &[&str]) -> Value {
    let (code, v, err) = run(home, args);
    assert_eq!(code, 0, "custody {args:?}: {err}");
    v
}

/// An audit export: two people at work, one of them forwarding mail to a
/// partner inside the tenant, and an intruder in a third mailbox hiding a
/// supplier's mail from 203.0.113.77.
fn export(dir: &Path) -> PathBuf {
    let mut lines = Vec::new();
    let mut add = |t: String, user: &str, ip: &str, op: &str, params: Value| {
        lines.push(
            json!({
                "CreationTime": t, "Id": format!("{:08}-0000-4000-8000-000000000000", lines.len()),
                "Operation": op, "RecordType": 1, "ResultStatus": "True", "UserId": user,
                "Workload": "Exchange", "ClientIP": ip, "ObjectId": user, "Parameters": params,
            })
            .to_string(),
        );
    };
    for i in 0..40 {
        let who = if i % 2 == 0 {
            "ann@contoso.com"
        } else {
            "ben@contoso.com"
        };
        add(
            format!("2024-05-06T09:{i:02}:00"),
            who,
            "192.0.2.10",
            "MailItemsAccessed",
            json!([]),
        );
    }
    add(
        "2024-05-06T10:00:00".into(),
        "ben@contoso.com",
        "192.0.2.10",
        "New-InboxRule",
        json!([{"Name": "ForwardTo", "Value": "ann@contoso.com"}]),
    );
    for i in 0..12 {
        add(
            format!("2024-05-06T11:{i:02}:00"),
            "cfo@contoso.com",
            "203.0.113.77",
            "New-InboxRule",
            json!([{"Name": "From", "Value": "billing@supplier.example"},
                   {"Name": "MoveToFolder", "Value": "RSS Feeds"}, {"Name": "MarkAsRead", "Value": "True"}]),
        );
    }
    let path = dir.join("audit.jsonl");
    std::fs::write(&path, lines.join("\n")).expect("write");
    path
}

fn total(v: &Value) -> u64 {
    v["total"]
        .as_u64()
        .unwrap_or_else(|| panic!("no total: {v}"))
}

#[test]
fn detections_become_findings_searchable_by_rule_level_and_technique() {
    let home = Home::new();
    let file = export(home.path());
    ok(
        &home,
        &[
            "logs",
            "import",
            "--case",
            "bec",
            "--format",
            "ual-jsonl",
            file.to_str().expect("path"),
        ],
    );
    let list = home.path().join("bad.txt");
    std::fs::write(&list, "# intruder\n203.0.113.77\n").expect("list");

    let r = ok(
        &home,
        &["detect", "bec", "--iocs", list.to_str().expect("path")],
    );
    assert_eq!(r["records"], 53, "{r}");
    let dets = r["detections"].as_array().expect("detections");
    let titles: Vec<&str> = dets.iter().filter_map(|d| d["title"].as_str()).collect();
    assert_eq!(
        dets.len(),
        2,
        "the internal forward is not outside the organisation: {titles:?}"
    );
    let hides = dets
        .iter()
        .find(|d| d["title"] == "Inbox rule hides mail from its owner")
        .unwrap_or_else(|| panic!("{titles:?}"));
    assert_eq!(hides["actors"], json!(["cfo@contoso.com"]));
    assert_eq!(hides["rows"].as_array().map(Vec::len), Some(12));
    let ioc = dets.iter().find(|d| d["kind"] == "ioc").expect("ioc");
    assert_eq!(ioc["rule"], "bad.txt:line 2");
    assert_eq!(ioc["rows"], hides["rows"]);

    // Findings list them with their events, and the timeline searches them.
    let f = ok(&home, &["findings", "bec"]);
    let fd = f["detections"].as_array().expect("detections");
    assert_eq!(fd.len(), 2, "{f}");
    assert!(
        fd.iter()
            .all(|d| d["events"].as_array().map(Vec::len) == Some(12))
    );
    assert_eq!(f["stale"], false);
    assert_eq!(
        total(&ok(
            &home,
            &["timeline", "bec", "rule:\"Inbox rule hides*\""]
        )),
        12
    );
    assert_eq!(
        total(&ok(
            &home,
            &[
                "timeline",
                "bec",
                "rule:d5fb784d-e371-4c6f-9689-1835ee9a4544"
            ]
        )),
        12
    );
    assert_eq!(
        total(&ok(&home, &["timeline", "bec", "technique:t1564"])),
        12
    );
    assert_eq!(total(&ok(&home, &["timeline", "bec", "level:high+"])), 12);
    assert_eq!(total(&ok(&home, &["timeline", "bec", "level:critical"])), 0);
    assert_eq!(total(&ok(&home, &["timeline", "bec", "--", "-rule:*"])), 41);
    let faceted = ok(
        &home,
        &["timeline", "bec", "--facets", "rule,technique,actor"],
    );
    let facet = |name: &str| {
        faceted["facets"]
            .as_array()
            .and_then(|fs| fs.iter().find(|f| f["field"] == name))
            .map(|f| f["values"].clone())
            .unwrap_or_else(|| panic!("no {name} facet: {faceted}"))
    };
    assert_eq!(
        facet("rule"),
        json!([
            {"value": "Inbox rule hides mail from its owner", "count": 12},
            {"value": "ip 203.0.113.77/32 from bad.txt (line 2)", "count": 12},
        ])
    );
    assert_eq!(
        facet("technique"),
        json!([{"value": "attack.t1564.008", "count": 12}])
    );

    // A second run replaces the first: nothing doubles.
    ok(
        &home,
        &["detect", "bec", "--iocs", list.to_str().expect("path")],
    );
    assert_eq!(
        ok(&home, &["findings", "bec"])["detections"]
            .as_array()
            .map(Vec::len),
        Some(2)
    );
    assert_eq!(total(&ok(&home, &["timeline", "bec", "rule:*"])), 12);

    // Logs loaded after the run make its findings stale, and say so.
    let more = home.path().join("more.jsonl");
    std::fs::write(
        &more,
        json!({"CreationTime": "2024-05-07T09:00:00", "Id": "late-1", "Operation": "Send",
               "RecordType": 2, "UserId": "ann@contoso.com", "Workload": "Exchange"})
        .to_string(),
    )
    .expect("write");
    ok(
        &home,
        &[
            "logs",
            "import",
            "--case",
            "bec",
            "--format",
            "ual-jsonl",
            more.to_str().expect("path"),
        ],
    );
    assert_eq!(ok(&home, &["findings", "bec"])["stale"], true);
}

#[test]
fn bad_rules_lists_and_terms_are_refused_or_set_aside_with_the_reason() {
    let home = Home::new();
    let file = export(home.path());
    ok(
        &home,
        &[
            "logs",
            "import",
            "--case",
            "bec",
            "--format",
            "ual-jsonl",
            file.to_str().expect("path"),
        ],
    );

    let (code, _, err) = run(&home, &["detect", "bec", "--rules", "/nonexistent/rules"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("cannot read the rules at /nonexistent/rules"),
        "{err}"
    );

    let empty = home.path().join("empty.txt");
    std::fs::write(&empty, "# nothing\n").expect("write");
    let (code, _, err) = run(
        &home,
        &["detect", "bec", "--iocs", empty.to_str().expect("path")],
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("empty.txt") && err.contains("no indicators"),
        "{err}"
    );

    let (code, _, err) = run(&home, &["detect", "nocase"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("custody logs"),
        "names how to load a timeline: {err}"
    );

    let (code, _, err) = run(&home, &["timeline", "bec", "level:urgent"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("expected a level"), "{err}");

    // Hostile rule files are set aside one by one; the good rule still runs.
    let rules = home.path().join("rules");
    std::fs::create_dir_all(rules.join("deep/er")).expect("dir");
    std::fs::write(rules.join("binary.yml"), [0xff, 0xfe, 0x00, 0x41]).expect("write");
    std::fs::write(rules.join("huge.yml"), vec![b'#'; 2 << 20]).expect("write");
    std::fs::write(
        rules.join("deep/er/badre.yml"),
        "title: bad regex\nlogsource: {product: m365, service: audit}\ndetection:\n  s:\n    Operation|re: '(unclosed'\n  condition: s\n",
    )
    .expect("write");
    std::fs::write(
        rules.join("aggregation.yml"),
        "title: v1 count\nlogsource: {product: m365, service: audit}\ndetection:\n  s:\n    Operation: Send\n  timeframe: 1h\n  condition: s | count() by UserId > 20\n",
    )
    .expect("write");
    std::fs::write(
        rules.join("good.yml"),
        "title: Any inbox rule\nid: 3c1f5a6e-0000-4000-8000-00000000c0de\nlevel: low\nlogsource: {product: m365, service: audit}\ndetection:\n  s:\n    Operation: New-InboxRule\n  condition: s\n",
    )
    .expect("write");
    let r = ok(
        &home,
        &[
            "detect",
            "bec",
            "--no-builtin",
            "--rules",
            rules.to_str().expect("path"),
        ],
    );
    let aside = r["set_aside"].as_array().expect("set aside");
    let reason = |file: &str| {
        aside
            .iter()
            .find(|s| s["file"].as_str().is_some_and(|f| f.ends_with(file)))
            .map(|s| {
                (
                    s["kind"].as_str().unwrap_or("").to_owned(),
                    s["reason"].as_str().unwrap_or("").to_owned(),
                )
            })
            .unwrap_or_else(|| panic!("{file} not set aside: {r}"))
    };
    assert_eq!(reason("binary.yml").0, "unreadable");
    assert!(reason("binary.yml").1.contains("UTF-8"));
    assert!(reason("huge.yml").1.contains("larger than"));
    assert_eq!(reason("badre.yml").0, "unsupported");
    let (kind, why) = reason("aggregation.yml");
    assert_eq!(kind, "unsupported");
    assert!(why.contains("correlation"), "{why}");
    assert_eq!(aside.len(), 4, "{r}");
    let dets = r["detections"].as_array().expect("detections");
    assert_eq!(dets.len(), 2, "one per actor: {r}");
    assert!(
        dets.iter()
            .all(|d| d["title"] == "Any inbox rule" && d["level"] == "low")
    );

    // --check says the same without a case.
    let c = ok(
        &home,
        &[
            "detect",
            "--check",
            "--no-builtin",
            "--rules",
            rules.to_str().expect("path"),
        ],
    );
    assert_eq!(
        (c["evaluable"].as_u64(), c["set_aside"].as_u64()),
        (Some(1), Some(4)),
        "{c}"
    );
}

/// custody's own rules on the Microsoft 365 example, first without a GeoIP
/// database (the findings on new networks cannot fire then), then with one: every
/// compromised mailbox is named by the rule that fits what was done to it,
/// none of the thousand ordinary users is, and the GeoIP findings then
/// corroborate the inbox rules.
#[test]
fn custodys_rules_find_the_m365_incident_without_geoip_and_are_corroborated_with_it() {
    let home = Home::new();
    let data = home.path().join("m365");
    crate::timeline::generate(&data);
    for (format, file) in [
        ("ual-csv", "ual.csv"),
        ("entra-signin", "entra-signins.json"),
    ] {
        ok(
            &home,
            &[
                "logs",
                "import",
                "--format",
                format,
                "--case",
                "m365",
                data.join(file).to_str().expect("path"),
            ],
        );
    }
    // Without GeoIP the findings that need a network's history cannot fire.
    let computed = ok(&home, &["findings", "m365"]);
    let kinds: Vec<&str> = computed["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter_map(|f| f["kind"].as_str())
        .collect();
    assert!(
        !kinds.contains(&"new_asn_then_rule") && !kinds.contains(&"mail_burst"),
        "{kinds:?}"
    );
    let r = ok(&home, &["detect", "m365"]);
    let by_title = |r: &Value| {
        let mut m: std::collections::BTreeMap<String, std::collections::BTreeSet<String>> =
            Default::default();
        for d in r["detections"].as_array().expect("detections") {
            let e = m
                .entry(d["title"].as_str().expect("title").to_owned())
                .or_default();
            for a in d["actors"].as_array().expect("actors") {
                e.insert(
                    a.as_str()
                        .expect("actor")
                        .trim_end_matches("@contoso.com")
                        .to_owned(),
                );
            }
        }
        m
    };
    let got = by_title(&r);
    let want = |names: &[&str]| {
        names
            .iter()
            .map(|n| (*n).to_owned())
            .collect::<std::collections::BTreeSet<_>>()
    };
    assert_eq!(
        got.get("Inbox rule hides mail from its owner"),
        Some(&want(&["alice", "bob", "carol"])),
        "{got:#?}"
    );
    assert_eq!(
        got.get("Inbox rule forwards or redirects mail outside the organisation"),
        Some(&want(&["dave"])),
        "{got:#?}"
    );
    assert_eq!(
        got.get("Mailbox forwarding to an address outside the organisation"),
        Some(&want(&["erin"])),
        "{got:#?}"
    );
    assert_eq!(
        got.get("Burst of outbound mail from one account"),
        Some(&want(&["alice", "carol"])),
        "{got:#?}"
    );
    assert_eq!(
        got.get("Sign-in over a legacy protocol"),
        Some(&want(&["dave", "erin"])),
        "{got:#?}"
    );
    assert_eq!(
        got.len(),
        5,
        "nothing else fires on a thousand ordinary users: {got:#?}"
    );

    // With GeoIP the computed findings return, and rest on the same rule rows.
    let geoip = data.join("geoip.mmdb");
    ok(
        &home,
        &[
            "logs",
            "index",
            "m365",
            "--rebuild",
            "--geoip",
            geoip.to_str().expect("path"),
        ],
    );
    assert_eq!(
        ok(&home, &["findings", "m365"])["detections"],
        json!([]),
        "a rebuild drops the old rows' detections"
    );
    ok(&home, &["detect", "m365"]);
    let f = ok(&home, &["findings", "m365"]);
    let hides: Vec<&Value> = f["detections"]
        .as_array()
        .expect("detections")
        .iter()
        .filter(|d| d["title"] == "Inbox rule hides mail from its owner")
        .collect();
    assert_eq!(hides.len(), 3, "{f:#}");
    assert!(
        hides.iter().all(|d| d["corroborated_by"]
            .as_array()
            .is_some_and(|c| c.contains(&json!("new_asn_then_rule")))),
        "{hides:#?}"
    );
}
