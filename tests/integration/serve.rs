//! `custody serve` as a process: alerts over HTTP on loopback, the durable
//! queue across a kill -9, bad input refused with nothing queued, and an
//! alert turned into an isolated instance on moto.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;

use crate::common::{Home, aws_conf as conf, emulator};

const SECRET: &str = "gd-test-secret";
const TOKEN: &str = "generic-test-token";
const NOTIFY_SECRET: &str = "notify-test-secret";

pub(crate) type Server = crate::common::Listening;

fn config(home: &Home, extra: &str) -> std::path::PathBuf {
    let path = home.path().join("serve.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[server]
bind = "127.0.0.1:0"
max_entities = 50
{extra}

[[source]]
name = "guardduty"
kind = "guardduty"
auth = "hmac"
secret_env = "TEST_GD_SECRET"

[[source]]
name = "edr"
kind = "generic"
auth = "bearer"
secret_env = "TEST_EDR_TOKEN"

[[rule]]
name = "exempt"
tag = "custody:exempt=approved-by-ir"
action = "record"

[[rule]]
name = "ec2-compromise"
source = "guardduty"
finding_type = "UnauthorizedAccess:EC2/*"
min_severity = 7.0
action = "respond"
memory = false

[[rule]]
name = "edr-record"
source = "edr"
action = "record"
"#
        ),
    )
    .unwrap();
    path
}

pub(crate) fn start(home: &Home, endpoint: Option<&str>) -> Server {
    start_cmd(home, home.cmd(), endpoint)
}

/// [`start`], the server run by `cmd`.
fn start_cmd(home: &Home, mut cmd: std::process::Command, endpoint: Option<&str>) -> Server {
    cmd.env("TEST_GD_SECRET", SECRET)
        .env("TEST_EDR_TOKEN", TOKEN)
        .env("TEST_NOTIFY_SECRET", NOTIFY_SECRET)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .env("RUST_LOG", "info");
    if let Some(e) = endpoint {
        cmd.args(["--endpoint-url", e]);
    }
    crate::common::listening(
        cmd.args(["serve", "--config"])
            .arg(home.path().join("serve.toml")),
    )
}

/// One HTTP/1.1 request; returns the status and the body.
pub(crate) fn http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    // A server may answer before reading all of a too-large body.
    let _ = s.write_all(body);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status in {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

pub(crate) fn signed(body: &[u8], t: i64) -> Vec<(&'static str, String)> {
    vec![
        (
            "X-Custody-Signature",
            custody::serve::auth::sign(SECRET.as_bytes(), t, body),
        ),
        ("Content-Type", "application/json".into()),
    ]
}

pub(crate) fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

pub(crate) fn bearer() -> Vec<(&'static str, String)> {
    vec![("Authorization", format!("Bearer {TOKEN}"))]
}

fn generic(id: &str, instances: &[&str]) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "id": id,
        "time": "2026-11-30T10:00:00Z",
        "severity": 5,
        "title": "test alert",
        "entities": { "instances": instances }
    }))
    .unwrap()
}

pub(crate) fn wait_job(addr: &str, job: &str) -> serde_json::Value {
    for _ in 0..300 {
        let (status, body) = http(addr, "GET", &format!("/v1/jobs/{job}"), &bearer(), b"");
        assert_eq!(status, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        if v["state"] == "done" || v["state"] == "failed" {
            return v;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("job {job} did not finish");
}

fn accepted_total(addr: &str) -> u64 {
    let (_, text) = http(addr, "GET", "/metrics", &bearer(), b"");
    text.lines()
        .filter(|l| l.starts_with("custody_alerts_accepted_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[test]
fn bad_requests_get_a_clear_4xx_and_queue_nothing() {
    let home = Home::new();
    config(&home, "");
    let srv = start(&home, None);
    let a = srv.addr.as_str();
    let gd = |body: &[u8]| {
        http(
            a,
            "POST",
            "/v1/alerts/guardduty",
            &signed(body, now()),
            body,
        )
    };
    let cases: Vec<(&str, (u16, String), &str)> = vec![
        ("malformed JSON", gd(b"{not json"), "malformed_json"),
        ("wrong shape", gd(br#"{"hello": "world"}"#), "wrong_shape"),
        (
            "unknown source",
            http(a, "POST", "/v1/alerts/nope", &[], b"{}"),
            "unknown_source",
        ),
        (
            "missing signature",
            http(a, "POST", "/v1/alerts/guardduty", &[], b"{}"),
            "missing_credentials",
        ),
        (
            "wrong signature",
            http(
                a,
                "POST",
                "/v1/alerts/guardduty",
                &signed(b"{\"other\":1}", now()),
                b"{}",
            ),
            "bad_credentials",
        ),
        (
            "stale timestamp",
            http(
                a,
                "POST",
                "/v1/alerts/guardduty",
                &signed(b"{}", now() - 3600),
                b"{}",
            ),
            "stale_timestamp",
        ),
        (
            "body over the limit",
            http(
                a,
                "POST",
                "/v1/alerts/edr",
                &bearer(),
                &vec![b' '; (1 << 20) + 10],
            ),
            "too_large",
        ),
        (
            "too many entities",
            {
                let many: Vec<String> = (0..60).map(|i| format!("i-{i:017x}")).collect();
                let refs: Vec<&str> = many.iter().map(String::as_str).collect();
                http(
                    a,
                    "POST",
                    "/v1/alerts/edr",
                    &bearer(),
                    &generic("many", &refs),
                )
            },
            "too_many_entities",
        ),
        (
            "wrong bearer token",
            http(
                a,
                "POST",
                "/v1/alerts/edr",
                &[("Authorization", "Bearer nope".into())],
                &generic("x", &[]),
            ),
            "bad_credentials",
        ),
    ];
    for (what, (status, body), reason) in &cases {
        assert!((400..500).contains(status), "{what}: {status} {body}");
        let v: serde_json::Value =
            serde_json::from_str(body).unwrap_or_else(|_| panic!("{what}: {body}"));
        assert_eq!(v["reason"], *reason, "{what}: {body}");
        assert!(!v["error"].as_str().unwrap().is_empty());
        assert!(
            !body.contains(SECRET) && !body.contains(TOKEN),
            "{what}: {body}"
        );
    }
    // A thousand bad requests in a row: still healthy, nothing queued.
    for i in 0..1000 {
        let body = format!("{{\"broken\": {i}");
        let (status, _) = gd(body.as_bytes());
        assert_eq!(status, 400);
    }
    assert_eq!(http(a, "GET", "/healthz", &[], b"").0, 200);
    assert_eq!(http(a, "GET", "/readyz", &[], b"").0, 200);
    assert_eq!(accepted_total(a), 0);
    let queue = std::fs::read_to_string(home.path().join("serve/queue.jsonl")).unwrap_or_default();
    assert!(queue.is_empty(), "{queue}");
    let (_, metrics) = http(a, "GET", "/metrics", &bearer(), b"");
    assert!(
        metrics.contains(
            "custody_alerts_rejected_total{source=\"guardduty\",reason=\"malformed_json\"} 1001"
        ),
        "{metrics}"
    );
}

#[test]
fn duplicates_are_one_job_and_a_kill_after_202_loses_nothing() {
    let home = Home::new();
    config(&home, "");
    let srv = start(&home, None);
    let body = generic("dup-1", &["i-0123456789abcdef0"]);
    let (s1, b1) = http(&srv.addr, "POST", "/v1/alerts/edr", &bearer(), &body);
    let (s2, b2) = http(&srv.addr, "POST", "/v1/alerts/edr", &bearer(), &body);
    assert_eq!((s1, s2), (202, 202), "{b1} {b2}");
    let (v1, v2): (serde_json::Value, serde_json::Value) = (
        serde_json::from_str(&b1).unwrap(),
        serde_json::from_str(&b2).unwrap(),
    );
    assert_eq!(v1["accepted"][0]["job"], v2["accepted"][0]["job"]);
    assert_eq!(v2["accepted"][0]["duplicate"], true);
    let job = v1["accepted"][0]["job"].as_str().unwrap().to_owned();
    let done = wait_job(&srv.addr, &job);
    assert_eq!(done["state"], "done", "{done}");

    // kill -9 right after the 202 of a new alert, then restart.
    let body = generic("crash-1", &["i-0123456789abcdef1"]);
    let (status, b) = http(&srv.addr, "POST", "/v1/alerts/edr", &bearer(), &body);
    assert_eq!(status, 202, "{b}");
    let mut srv = srv;
    srv.child.kill().unwrap();
    srv.child.wait().unwrap();
    drop(srv);
    let job: serde_json::Value = serde_json::from_str(&b).unwrap();
    let job = job["accepted"][0]["job"].as_str().unwrap().to_owned();
    let srv = start(&home, None);
    let done = wait_job(&srv.addr, &job);
    assert_eq!(done["state"], "done", "{done}");
    // Delivered again after the restart: the same job, not a new one.
    let (_, again) = http(&srv.addr, "POST", "/v1/alerts/edr", &bearer(), &body);
    assert!(
        again.contains(&job) && again.contains("\"duplicate\":true"),
        "{again}"
    );
    // Exactly once in the ledger, with the alert as the reason.
    let entries = std::fs::read_to_string(home.path().join("ledger/entries.jsonl")).unwrap();
    let received: Vec<&str> = entries
        .lines()
        .filter(|l| l.contains("\"alert_received\"") && l.contains(&job))
        .collect();
    assert_eq!(received.len(), 1, "{entries}");
    assert!(received[0].contains("\"crash-1\""), "{}", received[0]);
    // The case view shows it.
    let case = done["case"].as_str().unwrap();
    let (status, view) = http(
        &srv.addr,
        "GET",
        &format!("/v1/cases/{case}"),
        &bearer(),
        b"",
    );
    assert_eq!(status, 200, "{view}");
    assert!(view.contains(&job));
}

#[test]
fn a_guardduty_finding_isolates_its_instance_and_acquires_its_disk_and_a_missing_instance_fails_clearly()
 {
    let Some(endpoint) = emulator("CUSTODY_TEST_S3_ENDPOINT") else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let ec2 = aws_sdk_ec2::Client::new(&conf(&endpoint));
    let ami = rt.block_on(crate::common::any_image(&ec2));
    // Its disk: a 1 GiB volume with two blocks written.
    let blocks: Vec<Vec<u8>> = (0..2)
        .map(|i| crate::common::noise(512 * 1024, 60 + i))
        .collect();
    let seeded: Vec<(usize, &[u8])> = blocks
        .iter()
        .enumerate()
        .map(|(i, b)| (i * 700 + 3, b.as_slice()))
        .collect();
    let mut image = vec![0u8; 1 << 30];
    for (i, b) in &seeded {
        image[i * 512 * 1024..(i + 1) * 512 * 1024].copy_from_slice(b);
    }
    let seed = rt.block_on(crate::common::seed_blocks(&endpoint, 1, &seeded));
    let (_vpc, app, id) = rt.block_on(crate::common::instance_in_own_vpc(
        &ec2,
        &ami,
        79,
        Some(&seed),
    ));
    let home = Home::new();
    config(&home, "");
    let srv = start(&home, Some(&endpoint));
    let sample = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("examples/alerts/guardduty-ssh-bruteforce.json"),
    )
    .unwrap();
    let body = sample.replace("i-0a1b2c3d4e5f67890", &id);
    let (status, b) = http(
        &srv.addr,
        "POST",
        "/v1/alerts/guardduty",
        &signed(body.as_bytes(), now()),
        body.as_bytes(),
    );
    assert_eq!(status, 202, "{b}");
    let v: serde_json::Value = serde_json::from_str(&b).unwrap();
    let job = v["accepted"][0]["job"].as_str().unwrap();
    let done = wait_job(&srv.addr, job);
    assert_eq!(done["state"], "done", "{done}");
    // Isolated: its own group is gone from it.
    let out = rt
        .block_on(ec2.describe_instances().instance_ids(&id).send())
        .unwrap();
    let groups: Vec<String> = out.reservations()[0].instances()[0]
        .security_groups()
        .iter()
        .filter_map(|g| g.group_id().map(str::to_owned))
        .collect();
    assert!(!groups.contains(&app), "{groups:?}");
    let entries = std::fs::read_to_string(home.path().join("ledger/entries.jsonl")).unwrap();
    let isolated: Vec<&str> = entries
        .lines()
        .filter(|l| l.contains("\"isolated\""))
        .collect();
    assert!(!isolated.is_empty());
    assert!(
        isolated.iter().all(|l| l.contains("\"kind\":\"alert\"")),
        "{isolated:?}"
    );
    // Memory was left out by the rule, and the ledger says so.
    assert!(
        entries.lines().any(|l| l.contains("\"not_acquired\"")
            && l.contains("left out by playbook rule ec2-compromise")),
        "{entries}"
    );
    // Its disk is in the store, bit for bit, and the case verifies.
    let result = &done["steps"].as_array().unwrap().last().unwrap()["detail"]["results"][0];
    let artefacts = result["artefacts"].as_array().unwrap();
    assert!(!artefacts.is_empty(), "{done}");
    let case = done["case"].as_str().unwrap();
    let sha = custody::evidence::sha256_hex(&image);
    let acquired: Vec<&str> = entries
        .lines()
        .filter(|l| l.contains("\"acquired\"") && l.contains(&sha))
        .collect();
    assert_eq!(acquired.len(), 1, "{entries}");
    assert!(
        acquired[0].contains("\"kind\":\"alert\""),
        "{}",
        acquired[0]
    );
    let case = case.to_owned();

    // A finding naming an instance that does not exist: the job fails with
    // the reason, recorded.
    let body = sample
        .replace("i-0a1b2c3d4e5f67890", "i-0000000000000dead")
        .replace(
            "a4c8f2e19b7d4e6f8a0b1c2d3e4f5a6b",
            "b4c8f2e19b7d4e6f8a0b1c2d3e4f5a6b",
        );
    let (status, b) = http(
        &srv.addr,
        "POST",
        "/v1/alerts/guardduty",
        &signed(body.as_bytes(), now()),
        body.as_bytes(),
    );
    assert_eq!(status, 202, "{b}");
    let v: serde_json::Value = serde_json::from_str(&b).unwrap();
    let job = v["accepted"][0]["job"].as_str().unwrap();
    let done = wait_job(&srv.addr, job);
    assert_eq!(done["state"], "failed", "{done}");
    let text = done.to_string();
    assert!(text.contains("i-0000000000000dead"), "{text}");
    let entries = std::fs::read_to_string(home.path().join("ledger/entries.jsonl")).unwrap();
    assert!(
        entries
            .lines()
            .any(|l| l.contains("\"failed\"") && l.contains("i-0000000000000dead")),
        "{entries}"
    );
    // The server holds the ledger; once it is stopped, the case verifies
    // against the store.
    drop(srv);
    let out = home.run(&["verify", &case]);
    assert!(out.status.success(), "{}", crate::common::stderr(&out));
}

/// A webhook receiver on loopback: answers every request with the status
/// `answer` holds at the time, and passes on each request's headers and body.
struct Receiver {
    addr: String,
    answer: std::sync::Arc<std::sync::atomic::AtomicU16>,
    got: std::sync::mpsc::Receiver<(String, Vec<u8>)>,
}

impl Receiver {
    fn start(status: u16) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let answer = std::sync::Arc::new(std::sync::atomic::AtomicU16::new(status));
        let (tx, got) = std::sync::mpsc::channel();
        let a = answer.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let mut r = BufReader::new(conn);
                let mut head = String::new();
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    head.push_str(&line);
                }
                let len = head
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse::<usize>().ok())?
                    })
                    .unwrap_or(0);
                let mut body = vec![0; len];
                let _ = r.read_exact(&mut body);
                let status = a.load(std::sync::atomic::Ordering::SeqCst);
                let _ = r.get_mut().write_all(
                    format!(
                        "HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    )
                    .as_bytes(),
                );
                if tx.send((head, body)).is_err() {
                    break;
                }
            }
        });
        Self { addr, answer, got }
    }

    /// The next request's headers, raw body and parsed body.
    fn next(&self) -> (String, Vec<u8>, serde_json::Value) {
        let (head, body) = self
            .got
            .recv_timeout(std::time::Duration::from_secs(30))
            .expect("no notification arrived");
        let v = serde_json::from_slice(&body).unwrap();
        (head, body, v)
    }
}

fn notify_config(home: &Home, url: &str) {
    std::fs::write(
        home.path().join("serve.toml"),
        format!(
            r#"
[server]
bind = "127.0.0.1:0"

[[source]]
name = "edr"
kind = "generic"
auth = "bearer"
secret_env = "TEST_EDR_TOKEN"

[[rule]]
name = "edr-notify"
source = "edr"
action = "record"
notify = "{url}"
notify_secret_env = "TEST_NOTIFY_SECRET"
"#
        ),
    )
    .unwrap();
}

fn post_job(addr: &str, id: &str) -> String {
    let (status, b) = http(addr, "POST", "/v1/alerts/edr", &bearer(), &generic(id, &[]));
    assert_eq!(status, 202, "{b}");
    let v: serde_json::Value = serde_json::from_str(&b).unwrap();
    v["accepted"][0]["job"].as_str().unwrap().to_owned()
}

/// Waits until the job view shows its notification handled; returns that step.
fn wait_notified(addr: &str, job: &str) -> serde_json::Value {
    for _ in 0..300 {
        let (_, body) = http(addr, "GET", &format!("/v1/jobs/{job}"), &bearer(), b"");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        if v["notified"] == true {
            assert!(
                !body.contains("secret-path"),
                "the URL's path is shown: {body}"
            );
            return v["steps"]
                .as_array()
                .unwrap()
                .iter()
                .find(|s| s.get("notified").is_some())
                .cloned()
                .unwrap();
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("job {job}'s notification was never recorded");
}

#[test]
fn finished_jobs_notify_signed_retrying_5xx_and_surviving_a_crash() {
    let rx = Receiver::start(503);
    let home = Home::new();
    notify_config(&home, &format!("http://{}/hooks/T0/secret-path", rx.addr));
    let srv = start(&home, None);
    let job = post_job(&srv.addr, "notify-1");
    // 503 first: retried after a pause, then delivered.
    let (_, _, first) = rx.next();
    rx.answer.store(200, std::sync::atomic::Ordering::SeqCst);
    let (head, body, notice) = rx.next();
    assert_eq!(first, notice);
    assert_eq!(notice["event"], "job.done", "{notice}");
    assert_eq!(notice["job"], job.as_str());
    assert_eq!(notice["alert_id"], "notify-1");
    assert_eq!(notice["rule"], "edr-notify");
    assert_eq!(notice["detail"]["action"], "record", "{notice}");
    // Signed over the exact body, as alerts are.
    let sig = head
        .lines()
        .find_map(|l| l.strip_prefix("x-custody-signature: "))
        .unwrap_or_else(|| panic!("unsigned: {head}"));
    let t: i64 = sig
        .strip_prefix("t=")
        .and_then(|r| r.split(',').next())
        .unwrap()
        .parse()
        .unwrap();
    let resigned = custody::serve::auth::sign(NOTIFY_SECRET.as_bytes(), t, &body);
    assert_eq!(sig, resigned);
    let step = wait_notified(&srv.addr, &job);
    assert_eq!(step["notified"], true, "{step}");
    assert_eq!(step["detail"]["attempts"], 2, "{step}");
    assert_eq!(step["detail"]["status"], 200, "{step}");

    // A refusal other than 429/5xx is final: one attempt, given up.
    rx.answer.store(410, std::sync::atomic::Ordering::SeqCst);
    let gone = post_job(&srv.addr, "notify-2");
    let _ = rx.next();
    let step = wait_notified(&srv.addr, &gone);
    assert_eq!(step["notified"], false, "{step}");
    assert_eq!(step["detail"]["attempts"], 1, "{step}");
    assert!(
        step["detail"]["error"].as_str().unwrap().contains("410"),
        "{step}"
    );
    let (_, metrics) = http(&srv.addr, "GET", "/metrics", &bearer(), b"");
    assert!(
        metrics.contains("custody_notifications_total{outcome=\"delivered\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("custody_notifications_total{outcome=\"given_up\"} 1"),
        "{metrics}"
    );

    // A crash while a delivery is being retried: the restart sends it.
    rx.answer.store(503, std::sync::atomic::Ordering::SeqCst);
    let cut = post_job(&srv.addr, "notify-3");
    let _ = rx.next();
    let mut srv = srv;
    srv.child.kill().unwrap();
    srv.child.wait().unwrap();
    drop(srv);
    rx.answer.store(200, std::sync::atomic::Ordering::SeqCst);
    let srv = start(&home, None);
    let (_, _, again) = rx.next();
    assert_eq!(again["job"], cut.as_str(), "{again}");
    let step = wait_notified(&srv.addr, &cut);
    assert_eq!(step["notified"], true, "{step}");
    // The two settled before the crash are not sent again.
    assert!(
        rx.got
            .recv_timeout(std::time::Duration::from_secs(2))
            .is_err()
    );
}

/// The end-to-end example of docs/server.md, run as a user would, against the
/// emulator the tests already started.
#[test]
fn the_end_to_end_example_runs_in_one_go() {
    let Some(endpoint) = emulator("CUSTODY_TEST_S3_ENDPOINT") else {
        return;
    };
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/serve-end-to-end.sh");
    let out = std::process::Command::new("bash")
        .arg(&script)
        .env("CUSTODY_BIN", env!("CARGO_BIN_EXE_custody"))
        .env("CUSTODY_TEST_S3_ENDPOINT", &endpoint)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    for shown in [
        "HTTP 202",
        "its own group",
        // The image, its block map, the auth.log derived from it, its
        // bodyfile, and the alert the job kept.
        "5 artefacts, 5 verified, 0 failed, 0 ledger problems",
        "read back from the acquired image: the attacker was here",
        "the acquired image is the volume, bit for bit",
        ": verified",
    ] {
        assert!(text.contains(shown), "{shown:?} not shown:\n{text}");
    }
    // The disk, processed in place: the login its auth.log holds is a row of
    // the case's timeline, and so is the alert that started the case.
    let row = |words: &[&str]| text.lines().any(|l| words.iter().all(|w| l.contains(w)));
    assert!(
        row(&[
            " host ",
            "sshd.accepted",
            "198.51.100.23",
            "/var/log/auth.log"
        ]),
        "the login is not on the timeline:\n{text}"
    );
    assert!(
        row(&[" alert ", "UnauthorizedAccess:EC2/SSHBruteForce"]),
        "the alert is not on the timeline:\n{text}"
    );
}

#[test]
fn w2_half_sent_connections_cannot_take_the_servers_descriptors() {
    let home = Home::new();
    config(&home, "");
    // 128 open files, as the probe gives it: the connection limit must fit
    // under that with room for the queue and the ledger.
    let mut cmd = std::process::Command::new("sh");
    cmd.args(["-c", "ulimit -n 128 && exec \"$0\" \"$@\""])
        .arg(env!("CARGO_BIN_EXE_custody"))
        .env("CUSTODY_HOME", home.path())
        .env_remove("CUSTODY_STORE")
        .arg("--no-progress");
    let srv = start_cmd(&home, cmd, None);
    let held: Vec<TcpStream> = (0..300)
        .map(|_| {
            let mut s = TcpStream::connect(&srv.addr).unwrap();
            s.write_all(b"POST /v1/alerts/guardduty HTTP/1.1\r\nHost: x\r\n")
                .unwrap();
            s
        })
        .collect();
    let sample = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("examples/alerts/guardduty-ssh-bruteforce.json"),
    )
    .unwrap();
    for round in 0..3 {
        let started = std::time::Instant::now();
        let (status, body) = http(
            &srv.addr,
            "POST",
            "/v1/alerts/guardduty",
            &signed(&sample, now()),
            &sample,
        );
        let took = started.elapsed();
        assert_eq!(status, 202, "round {round}: {body}");
        assert!(
            took < std::time::Duration::from_secs(1),
            "round {round}: the signed alert took {took:?}"
        );
    }
    drop(held);
    let job: serde_json::Value = serde_json::from_str(
        &http(
            &srv.addr,
            "POST",
            "/v1/alerts/edr",
            &bearer(),
            &generic("after-flood", &[]),
        )
        .1,
    )
    .unwrap();
    let done = wait_job(&srv.addr, job["accepted"][0]["job"].as_str().unwrap());
    assert_eq!(done["state"], "done", "{done}");
}

#[test]
fn w1_views_need_credentials_and_w3_a_404_names_no_source() {
    let home = Home::new();
    config(&home, "");
    let srv = start(&home, None);
    let job = post_job_edr(&srv.addr, "w1-1");
    for path in [format!("/v1/jobs/{job}"), "/metrics".to_owned()] {
        let (status, body) = http(&srv.addr, "GET", &path, &[], b"");
        assert_eq!(status, 401, "{path}: {body}");
        assert!(!body.contains("w1-1"), "{body}");
        let (status, body) = http(&srv.addr, "GET", &path, &bearer(), b"");
        assert_eq!(status, 200, "{path}: {body}");
    }
    let (status, body) = http(&srv.addr, "POST", "/v1/alerts/nope", &[], b"{}");
    assert_eq!(status, 404, "{body}");
    assert!(
        !body.contains("guardduty") && !body.contains("edr"),
        "{body}"
    );
}

fn post_job_edr(addr: &str, id: &str) -> String {
    let (status, b) = http(addr, "POST", "/v1/alerts/edr", &bearer(), &generic(id, &[]));
    assert_eq!(status, 202, "{b}");
    let v: serde_json::Value = serde_json::from_str(&b).unwrap();
    v["accepted"][0]["job"].as_str().unwrap().to_owned()
}
