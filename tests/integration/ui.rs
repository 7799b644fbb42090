//! `custody ui` as a process, over HTTP: who may sign in and how, what a
//! state change needs (an investigator, the session's CSRF token), hostile
//! log values shown as text under a strict Content-Security-Policy, and
//! every mark a ledger entry naming the analyst that `ledger verify` covers.

use std::io::{Read, Write};
use std::net::TcpStream;

use sha2::Digest as _;

use crate::common::{Home, stderr};

pub(crate) const PASSWORD: &str = "correct horse battery staple";
pub(crate) const READER_PASSWORD: &str = "reader's own passphrase";
pub(crate) const TOKEN: &str = "automation-token-0123456789";
pub(crate) const READER_TOKEN: &str = "reader-token-9876543210";

/// Values a hostile record carries: markup, script, an attribute break-out
/// and terminal escapes.
pub(crate) const HOSTILE_AGENT: &str =
    "<script>document.title='pwned'</script><img src=x onerror=\"document.title='pwned'\">";
pub(crate) const HOSTILE_USER: &str = "\"><svg onload=alert(1)>\u{1b}]0;pwned\u{7}\u{1b}[2J";

pub(crate) type Workspace = crate::common::Listening;

/// A case `web` holding a CloudTrail file with two ordinary records and
/// one hostile one.
pub(crate) fn seed_case(home: &Home) {
    let records = serde_json::json!({ "Records": [
        record("e1", "2024-06-01T08:00:00Z", "alice", "ConsoleLogin", "198.51.100.7", "Mozilla/5.0"),
        record("e2", "2024-06-01T08:05:00Z", "bob", "CreateUser", "203.0.113.9", "aws-cli/2.15"),
        record("e3", "2024-06-01T08:10:00Z", HOSTILE_USER, "GetObject", "192.0.2.66", HOSTILE_AGENT),
    ]});
    let path = home.path().join("trail.json");
    std::fs::write(&path, serde_json::to_vec(&records).unwrap()).unwrap();
    let out = home.run(&[
        "logs",
        "import",
        "--case",
        "web",
        "--format",
        "cloudtrail",
        path.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
}

fn record(
    id: &str,
    time: &str,
    user: &str,
    name: &str,
    ip: &str,
    agent: &str,
) -> serde_json::Value {
    serde_json::json!({
        "eventVersion": "1.08", "eventID": id, "eventTime": time, "eventName": name,
        "eventSource": "iam.amazonaws.com", "awsRegion": "us-east-1",
        "sourceIPAddress": ip, "userAgent": agent,
        "userIdentity": { "type": "IAMUser", "userName": user,
                          "arn": format!("arn:aws:iam::111122223333:user/{user}") },
    })
}

/// The `[ui]` file: an investigator who signs in with a password (and has
/// a token), a read-only analyst with a password and a token.
pub(crate) fn analysts_config(home: &Home) -> std::path::PathBuf {
    let hash = custody::ui::auth::hash_password(PASSWORD).unwrap();
    let reader_hash = custody::ui::auth::hash_password(READER_PASSWORD).unwrap();
    let digest = |t: &str| hex::encode(sha2::Sha256::digest(t.as_bytes()));
    let path = home.path().join("ui.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[ui]
session_hours = 1

[[ui.analysts]]
name = "ines"
role = "investigator"
password_hash = "{hash}"
token_sha256 = "{}"

[[ui.analysts]]
name = "rory"
role = "read_only"
password_hash = "{reader_hash}"
token_sha256 = "{}"
"#,
            digest(TOKEN),
            digest(READER_TOKEN)
        ),
    )
    .unwrap();
    path
}

pub(crate) fn start(home: &Home, config: Option<&std::path::Path>) -> Workspace {
    let mut cmd = home.cmd();
    cmd.args(["ui", "--listen", "127.0.0.1:0"]);
    if let Some(c) = config {
        cmd.arg("--config").arg(c);
    }
    crate::common::listening(&mut cmd)
}

/// `custody serve` in `home` with a bearer source `edr` and `extra` after it.
fn serve(home: &Home, extra: &str) -> Workspace {
    let config = home.path().join("serve.toml");
    std::fs::write(&config, serve_config("127.0.0.1:0", extra)).unwrap();
    let mut cmd = home.cmd();
    cmd.env("TEST_EDR_TOKEN", "edr-token")
        .args(["serve", "--config"])
        .arg(&config);
    crate::common::listening(&mut cmd)
}

fn serve_config(bind: &str, extra: &str) -> String {
    format!(
        "[server]\nbind = \"{bind}\"\n\n[[source]]\nname = \"edr\"\nkind = \"generic\"\nauth = \"bearer\"\nsecret_env = \"TEST_EDR_TOKEN\"\n\n{extra}"
    )
}

pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: String,
    /// The body as sent (a tar, a download).
    pub(crate) bytes: Vec<u8>,
}

impl Reply {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn cookies(&self) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("set-cookie"))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// `name=value` of a cookie this reply sets.
    pub(crate) fn cookie(&self, name: &str) -> Option<String> {
        self.cookies()
            .into_iter()
            .find(|c| c.starts_with(&format!("{name}=")))
            .and_then(|c| c.split(';').next())
            .map(str::to_owned)
    }
}

/// One HTTP/1.1 request, the whole reply read.
pub(crate) fn http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: &str,
) -> Reply {
    let mut s = TcpStream::connect(addr).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    let typed = headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("content-type"));
    if !body.is_empty() && !typed {
        req.push_str("Content-Type: application/x-www-form-urlencoded\r\n");
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let split = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(out.len(), |i| i + 4);
    let bytes = out.get(split..).unwrap_or_default().to_vec();
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status in {text:?}"));
    let headers = lines
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    Reply {
        status,
        headers,
        body: body.to_owned(),
        bytes,
    }
}

fn form(pairs: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

/// The first `value` of a hidden input named `name` in a page.
pub(crate) fn hidden(page: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let at = page
        .find(&marker)
        .unwrap_or_else(|| panic!("no {name} in {page}"))
        + marker.len();
    page[at..].split('"').next().unwrap().to_owned()
}

/// Signs in; the session cookie (`name=value`).
pub(crate) fn sign_in(addr: &str, name: &str, password: &str) -> String {
    let page = http(addr, "GET", "/login", &[], "");
    assert_eq!(page.status, 200, "{}", page.body);
    let login = page.cookie("custody_login").expect("the form's cookie");
    let token = hidden(&page.body, "csrf");
    let r = http(
        addr,
        "POST",
        "/login",
        &[("Cookie", login)],
        &form(&[("name", name), ("password", password), ("csrf", &token)]),
    );
    assert_eq!(r.status, 303, "{}", r.body);
    r.cookie("custody_session").expect("a session")
}

/// The events of case `web` as the API gives them, by CloudTrail event id.
fn event_ids(addr: &str, auth: &[(&str, String)]) -> std::collections::BTreeMap<String, i64> {
    let r = http(addr, "GET", "/api/cases/web/search?q=", auth, "");
    assert_eq!(r.status, 200, "{}", r.body);
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    v["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["record_id"].as_str().unwrap().to_owned(),
                r["id"].as_i64().unwrap(),
            )
        })
        .collect()
}

fn ledger_entries(home: &Home) -> Vec<serde_json::Value> {
    let dir = home.path().join("ledger");
    let text = std::fs::read_to_string(dir.join("entries.jsonl"))
        .unwrap_or_else(|e| panic!("the ledger's entries in {}: {e}", dir.display()));
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn sign_in_is_needed_and_its_form_cannot_be_forged() {
    let home = Home::new();
    seed_case(&home);
    let config = analysts_config(&home);
    let ws = start(&home, Some(&config));
    let a = ws.addr.as_str();

    // No session: the pages send to the sign-in form, the API refuses.
    let r = http(a, "GET", "/cases/web", &[], "");
    assert_eq!((r.status, r.header("location")), (303, Some("/login")));
    assert_eq!(http(a, "GET", "/api/cases/web/search", &[], "").status, 401);

    // A sign-in posted without the form's own cookie (from another site) is refused.
    let page = http(a, "GET", "/login", &[], "");
    let token = hidden(&page.body, "csrf");
    let forged = http(
        a,
        "POST",
        "/login",
        &[],
        &form(&[("name", "ines"), ("password", PASSWORD), ("csrf", &token)]),
    );
    assert_eq!(forged.status, 403, "{}", forged.body);
    assert!(forged.cookie("custody_session").is_none());

    // A wrong password, or a name nobody has, gets no session and the same words.
    let login = page.cookie("custody_login").unwrap();
    for (name, pw) in [("ines", "wrong"), ("nobody", PASSWORD)] {
        let r = http(
            a,
            "POST",
            "/login",
            &[("Cookie", login.clone())],
            &form(&[("name", name), ("password", pw), ("csrf", &token)]),
        );
        assert_eq!(r.status, 401, "{name}");
        assert!(r.body.contains("The name or the password is wrong."));
        assert!(r.cookie("custody_session").is_none());
    }

    // The right one: a session cookie only scripts cannot read, never sent cross-site.
    let r = http(
        a,
        "POST",
        "/login",
        &[("Cookie", login)],
        &form(&[("name", "ines"), ("password", PASSWORD), ("csrf", &token)]),
    );
    assert_eq!(r.status, 303);
    let set = r
        .cookies()
        .into_iter()
        .find(|c| c.starts_with("custody_session="))
        .unwrap()
        .to_owned();
    for attr in ["HttpOnly", "SameSite=Strict", "Secure", "Path=/"] {
        assert!(set.contains(attr), "{attr} missing from {set}");
    }
    let session = r.cookie("custody_session").unwrap();
    let page = http(a, "GET", "/cases/web", &[("Cookie", session.clone())], "");
    assert_eq!(page.status, 200);
    assert!(page.body.contains("ines (investigator)"));

    // Signing out ends the session (with its CSRF token only).
    let csrf = hidden(&page.body, "csrf");
    let out = http(
        a,
        "POST",
        "/logout",
        &[("Cookie", session.clone())],
        &form(&[("csrf", &csrf)]),
    );
    assert_eq!(out.status, 303);
    assert_eq!(
        http(a, "GET", "/cases/web", &[("Cookie", session)], "").status,
        303
    );
}

#[test]
fn hostile_values_are_text_under_a_strict_policy() {
    let home = Home::new();
    seed_case(&home);
    let config = analysts_config(&home);
    let ws = start(&home, Some(&config));
    let a = ws.addr.as_str();
    let session = sign_in(a, "rory", READER_PASSWORD);
    let ids = event_ids(a, &[("Cookie", session.clone())]);
    for path in [
        "/cases/web".to_owned(),
        "/cases/web/timeline?q=".to_owned(),
        "/cases/web/timeline?q=action%3AGetObject".to_owned(),
        format!("/cases/web/events/{}", ids["e3"]),
    ] {
        let r = http(a, "GET", &path, &[("Cookie", session.clone())], "");
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        let csp = r.header("content-security-policy").unwrap_or_default();
        assert!(
            csp.contains("script-src 'self'")
                && csp.contains("default-src 'none'")
                && !csp.contains("unsafe-inline"),
            "{csp}"
        );
        assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
        for bad in [
            "<script>document",
            "<img src=x",
            "<svg onload",
            "\u{1b}",
            "\u{7}",
        ] {
            assert!(!r.body.contains(bad), "{path} carries {bad:?} unescaped");
        }
        // The only script is the workspace's own file.
        assert_eq!(r.body.matches("<script").count(), 1, "{path}");
        assert!(
            r.body
                .contains("<script src=\"/assets/app.js\" defer></script>")
        );
    }
    let event = http(
        a,
        "GET",
        &format!("/cases/web/events/{}", ids["e3"]),
        &[("Cookie", session.clone())],
        "",
    );
    assert!(
        event.body.contains("&lt;script&gt;document.title="),
        "the agent is shown as text"
    );
    assert!(
        event.body.contains("\\u{1b}]0;pwned\\u{7}"),
        "terminal escapes are shown, not sent"
    );

    // The original record, read again from the evidence: escaped too, and
    // a view of evidence the ledger names the (read-only) analyst for.
    let raw = http(
        a,
        "GET",
        &format!("/cases/web/events/{}/raw", ids["e3"]),
        &[("Cookie", session)],
        "",
    );
    assert_eq!(raw.status, 200, "{}", raw.body);
    assert!(raw.body.contains("both digests of artefact"));
    assert!(
        raw.body.contains("&quot;eventID&quot;:&quot;e3&quot;"),
        "the record as written: {}",
        raw.body
    );
    for bad in ["<script>document", "<img src=x", "<svg onload", "\u{1b}"] {
        assert!(
            !raw.body.contains(bad),
            "the record view carries {bad:?} unescaped"
        );
    }
    let viewed: Vec<_> = ledger_entries(&home)
        .into_iter()
        .filter(|e| e["action"] == "accessed")
        .collect();
    assert_eq!(viewed.len(), 1);
    assert_eq!(viewed[0]["actor"]["name"], "rory");
    assert_eq!(viewed[0]["detail"]["event"], ids["e3"]);
}

#[test]
fn marks_need_an_investigator_and_the_token_and_each_is_a_verified_ledger_entry() {
    let home = Home::new();
    seed_case(&home);
    let config = analysts_config(&home);
    let ws = start(&home, Some(&config));
    let a = ws.addr.as_str();
    let session = sign_in(a, "ines", PASSWORD);
    let ids = event_ids(a, &[("Cookie", session.clone())]);
    let e1 = ids["e1"];
    let marks = format!("/cases/web/events/{e1}/marks");
    let page = http(
        a,
        "GET",
        &format!("/cases/web/events/{e1}"),
        &[("Cookie", session.clone())],
        "",
    );
    let csrf = hidden(&page.body, "csrf");
    let before = ledger_entries(&home).len();

    // Without the session's token, or with another: refused, nothing recorded.
    for sent in ["", "0000"] {
        let r = http(
            a,
            "POST",
            &marks,
            &[("Cookie", session.clone())],
            &form(&[("kind", "star"), ("csrf", sent)]),
        );
        assert_eq!(r.status, 403, "{}", r.body);
        assert!(r.body.contains("CSRF"));
    }
    // A read-only analyst, by session or by token: refused.
    let reader = sign_in(a, "rory", READER_PASSWORD);
    let reader_page = http(
        a,
        "GET",
        &format!("/cases/web/events/{e1}"),
        &[("Cookie", reader.clone())],
        "",
    );
    assert!(
        !reader_page.body.contains("action=\"/cases/web/events"),
        "no forms for a reader"
    );
    let reader_csrf = hidden(&reader_page.body, "csrf");
    let r = http(
        a,
        "POST",
        &marks,
        &[("Cookie", reader)],
        &form(&[("kind", "star"), ("csrf", &reader_csrf)]),
    );
    assert_eq!(r.status, 403);
    assert!(r.body.contains("read-only"));
    let r = http(
        a,
        "POST",
        &marks,
        &[("Authorization", format!("Bearer {READER_TOKEN}"))],
        &form(&[("kind", "star")]),
    );
    assert_eq!(r.status, 403);
    // Bad marks: named.
    let r = http(
        a,
        "POST",
        &marks,
        &[("Cookie", session.clone())],
        &form(&[("kind", "tag"), ("value", ""), ("csrf", &csrf)]),
    );
    assert_eq!(r.status, 400);
    assert!(r.body.contains("empty tag"));
    assert_eq!(
        ledger_entries(&home).len(),
        before,
        "nothing refused was recorded"
    );

    // Star, tag and comment from the browser session; a comment by token.
    for (kind, value) in [
        ("star", ""),
        ("tag", "initial-access"),
        ("comment", "first sign-in from 198.51.100.7"),
    ] {
        let r = http(
            a,
            "POST",
            &marks,
            &[("Cookie", session.clone())],
            &form(&[("kind", kind), ("value", value), ("csrf", &csrf)]),
        );
        assert_eq!(r.status, 303, "{kind}: {}", r.body);
    }
    let r = http(
        a,
        "POST",
        &marks,
        &[("Authorization", format!("Bearer {TOKEN}"))],
        &form(&[("kind", "comment"), ("value", "by automation")]),
    );
    assert_eq!(r.status, 303, "{}", r.body);

    let entries = ledger_entries(&home);
    let annotated: Vec<_> = entries
        .iter()
        .filter(|e| e["action"] == "annotated")
        .collect();
    assert_eq!(annotated.len(), 4, "{entries:#?}");
    for e in &annotated {
        assert_eq!(e["actor"]["name"], "ines");
        assert_eq!(e["actor"]["role"], "analyst");
        assert_eq!(e["case"], "web");
        assert_eq!(e["detail"]["event"], e1);
        assert_eq!(e["detail"]["record_id"], "e1");
    }
    let kinds: Vec<_> = annotated
        .iter()
        .map(|e| e["detail"]["mark"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["star", "tag", "comment", "comment"]);

    // The page shows them, each naming its entry; the explorer shows the star and tag.
    let page = http(
        a,
        "GET",
        &format!("/cases/web/events/{e1}"),
        &[("Cookie", session.clone())],
        "",
    );
    assert!(page.body.contains("initial-access") && page.body.contains("by automation"));
    assert!(page.body.contains("Unstar"));
    let list = http(
        a,
        "GET",
        "/cases/web/timeline?q=",
        &[("Cookie", session.clone())],
        "",
    );
    assert!(
        list.body.contains("title=\"starred\"")
            && list
                .body
                .contains("<span class=\"tag\">initial-access</span>")
    );
    let overview = http(a, "GET", "/cases/web", &[("Cookie", session)], "");
    assert!(
        overview.body.contains("Analysts' actions")
            && overview.body.contains("comment: by automation")
    );

    drop(ws);
    let verify = home.run(&["ledger", "verify"]);
    assert!(verify.status.success(), "{}", stderr(&verify));
}

#[test]
fn without_analysts_it_answers_on_loopback_only_as_the_operator() {
    let home = Home::new();
    seed_case(&home);
    let out = home.run(&["ui", "--listen", "0.0.0.0:0"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("loopback only"), "{}", stderr(&out));

    let ws = start(&home, None);
    let first = http(&ws.addr, "GET", "/", &[], "");
    assert_eq!(first.status, 200);
    let session = first
        .cookie("custody_session")
        .expect("the operator's session");
    assert!(!first.body.contains("Sign out"));
    let ids = event_ids(&ws.addr, &[("Cookie", session.clone())]);
    let page = http(
        &ws.addr,
        "GET",
        &format!("/cases/web/events/{}", ids["e2"]),
        &[("Cookie", session.clone())],
        "",
    );
    let csrf = hidden(&page.body, "csrf");
    let r = http(
        &ws.addr,
        "POST",
        &format!("/cases/web/events/{}/marks", ids["e2"]),
        &[("Cookie", session.clone())],
        &form(&[("kind", "star"), ("csrf", &csrf)]),
    );
    assert_eq!(r.status, 303, "{}", r.body);
    // The workspace holds no writer's lock between actions: another
    // command records beside it, and the next action still records.
    let file = home.path().join("note.txt");
    std::fs::write(&file, "beside the workspace").unwrap();
    let out = home.run(&["acquire", "file", file.to_str().unwrap(), "--case", "web"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let r = http(
        &ws.addr,
        "POST",
        &format!("/cases/web/events/{}/marks", ids["e2"]),
        &[("Cookie", session.clone())],
        &form(&[("kind", "unstar"), ("csrf", &csrf)]),
    );
    assert_eq!(r.status, 303, "{}", r.body);
    let kinds: Vec<String> = ledger_entries(&home)
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_owned())
        .collect();
    let tail: Vec<&str> = kinds.iter().rev().take(3).map(String::as_str).collect();
    assert_eq!(tail[0], "annotated", "{kinds:?}");
    assert!(
        tail.contains(&"stored") || tail.contains(&"acquired"),
        "{kinds:?}"
    );

    // A bad configuration is named before anything listens.
    let bad = home.path().join("bad.toml");
    std::fs::write(&bad, "[ui]\n[[ui.analysts]]\nname = \"x\"\nrole = \"investigator\"\npassword_hash = \"hunter2\"\n").unwrap();
    let out = home.run(&["ui", "--config", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("password_hash is not an argon2 PHC string"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn saved_searches_and_downloads_are_ledger_entries_and_a_tampered_artefact_is_refused() {
    let home = Home::new();
    seed_case(&home);
    let config = analysts_config(&home);
    let ws = start(&home, Some(&config));
    let a = ws.addr.as_str();
    let session = sign_in(a, "ines", PASSWORD);
    let cookie = || vec![("Cookie", session.clone())];

    // The explorer: a histogram of the case, each bar a link to its window.
    let page = http(
        a,
        "GET",
        "/cases/web/timeline?q=action%3AConsoleLogin",
        &cookie(),
        "",
    );
    assert_eq!(page.status, 200);
    assert!(page.body.contains("<svg id=\"histogram\""), "{}", page.body);
    assert_eq!(
        page.body.matches("<rect").count(),
        1,
        "one bucket holds the one sign-in"
    );
    let csrf = hidden(&page.body, "csrf");

    // Saving a search: refused without the token or with a bad name, then kept.
    let save = |body: String| http(a, "POST", "/cases/web/searches", &cookie(), &body);
    assert_eq!(
        save(form(&[("name", "logins"), ("q", "action:ConsoleLogin")])).status,
        403
    );
    let bad = save(form(&[("name", "no spaces"), ("q", "x"), ("csrf", &csrf)]));
    assert_eq!(bad.status, 400);
    assert!(
        bad.body.contains("a search&#39;s name") || bad.body.contains("a search's name"),
        "{}",
        bad.body
    );
    let r = save(form(&[
        ("name", "logins"),
        ("q", "action:ConsoleLogin"),
        ("csrf", &csrf),
    ]));
    assert_eq!(r.status, 303, "{}", r.body);
    let page = http(a, "GET", "/cases/web/timeline?q=", &cookie(), "");
    assert!(
        page.body
            .contains(">logins</a> <span class=\"count\">1</span>"),
        "{}",
        page.body
    );

    // Downloading the artefact: the bytes imported, their digest in a header, an entry.
    let overview = http(a, "GET", "/cases/web", &cookie(), "");
    let id = overview
        .body
        .split("/artefacts/")
        .nth(1)
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    let path = format!("/cases/web/artefacts/{id}/download");
    assert_eq!(
        http(a, "POST", &path, &cookie(), &form(&[("csrf", "")])).status,
        403,
        "no token"
    );
    let r = http(a, "POST", &path, &cookie(), &form(&[("csrf", &csrf)]));
    assert_eq!(r.status, 200, "{}", r.body);
    let original = std::fs::read(home.path().join("trail.json")).unwrap();
    assert_eq!(r.body.as_bytes(), &original[..]);
    assert_eq!(
        r.header("x-custody-raw-sha256"),
        Some(hex::encode(sha2::Sha256::digest(&original)).as_str())
    );

    let entries = ledger_entries(&home);
    let saved: Vec<_> = entries
        .iter()
        .filter(|e| e["action"] == "search_saved")
        .collect();
    assert_eq!(saved.len(), 1);
    assert_eq!(
        (
            saved[0]["actor"]["name"].as_str(),
            saved[0]["detail"]["query"].as_str()
        ),
        (Some("ines"), Some("action:ConsoleLogin"))
    );
    let exported: Vec<_> = entries
        .iter()
        .filter(|e| e["action"] == "exported")
        .collect();
    assert_eq!(exported.len(), 1);
    assert_eq!(exported[0]["actor"]["name"], "ines");
    assert_eq!(exported[0]["evidence"]["artefact"], id.as_str());

    // The stored object altered: the download is refused, nothing recorded.
    let stored = walk(&home.store_dir())
        .into_iter()
        .find(|p| p.to_string_lossy().contains(&id) && !p.to_string_lossy().contains("manifest"))
        .expect("the stored object");
    let mut bytes = std::fs::read(&stored).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&stored, bytes).unwrap();
    let r = http(a, "POST", &path, &cookie(), &form(&[("csrf", &csrf)]));
    assert_eq!(r.status, 500);
    assert!(
        r.body.to_lowercase().contains("sha-256") || r.body.contains("digest"),
        "{}",
        r.body
    );
    let after = ledger_entries(&home);
    assert_eq!(
        after.iter().filter(|e| e["action"] == "exported").count(),
        1,
        "no entry for a refused download"
    );
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn the_webhook_server_serves_the_workspace_with_ui_in_its_configuration() {
    let home = Home::new();
    seed_case(&home);
    // The analysts of the workspace's own file, as the server's [ui] table.
    let ui_table = std::fs::read_to_string(analysts_config(&home)).unwrap();
    let ws = serve(
        &home,
        &format!("[[rule]]\nname = \"record\"\nsource = \"edr\"\naction = \"record\"\n{ui_table}"),
    );
    let a = ws.addr.as_str();
    // The API is where it was; the pages beside it, signed in as configured.
    assert_eq!(http(a, "GET", "/healthz", &[], "").status, 200);
    let r = http(a, "GET", "/v1/nothing", &[], "");
    assert_eq!(r.status, 404);
    let r = http(a, "GET", "/cases/web", &[], "");
    assert_eq!((r.status, r.header("location")), (303, Some("/login")));
    let session = sign_in(a, "ines", PASSWORD);
    let page = http(a, "GET", "/cases/web", &[("Cookie", session)], "");
    assert_eq!(page.status, 200);
    assert!(page.body.contains("ines (investigator)"));
    assert!(
        page.header("content-security-policy")
            .is_some_and(|c| c.contains("script-src 'self'"))
    );
    drop(ws);

    // A server on every address whose [ui] names nobody is refused at start.
    let config = home.path().join("serve.toml");
    std::fs::write(&config, serve_config("0.0.0.0:0", "[ui]\n")).unwrap();
    let out = home
        .cmd()
        .env("TEST_EDR_TOKEN", "edr-token")
        .args(["serve", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("loopback only"), "{}", stderr(&out));
}

#[test]
fn the_json_api_answers_tokens_and_its_openapi_names_every_route() {
    let home = Home::new();
    seed_case(&home);
    let config = analysts_config(&home);
    let ws = start(&home, Some(&config));
    let a = ws.addr.as_str();
    let bearer = vec![("Authorization", format!("Bearer {READER_TOKEN}"))];
    let r = http(a, "GET", "/api/cases", &bearer, "");
    assert_eq!(r.status, 200, "{}", r.body);
    let cases: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(cases[0]["case"], "web");
    assert_eq!(cases[0]["artefacts"], 1);
    let wrong = vec![("Authorization", "Bearer not-a-token".to_owned())];
    assert_eq!(http(a, "GET", "/api/cases", &wrong, "").status, 401);
    let r = http(
        a,
        "GET",
        "/api/cases/web/search?q=level%3Abogus",
        &bearer,
        "",
    );
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(
        r.body.contains("bogus"),
        "the error names the bad value: {}",
        r.body
    );

    let spec = http(a, "GET", "/api/openapi.json", &[], "");
    assert_eq!(spec.status, 200);
    let spec: serde_json::Value = serde_json::from_str(&spec.body).unwrap();
    let paths = spec["paths"].as_object().unwrap();
    assert!(paths.len() >= 6);
    let session = sign_in(a, "ines", PASSWORD);
    for (path, ops) in paths {
        let concrete = path.replace("{case}", "web").replace("{id}", "1");
        for method in ops.as_object().unwrap().keys() {
            let method = method.to_uppercase();
            let r = http(
                a,
                &method,
                &concrete,
                &[("Cookie", session.clone())],
                if method == "POST" { "csrf=" } else { "" },
            );
            // Documented routes exist: refused for want of a token, maybe, but there.
            assert!(
                r.status != 404 && r.status != 405,
                "{method} {path}: {}",
                r.status
            );
        }
    }
}

#[test]
fn a_mark_while_another_process_holds_the_ledger_fails_saying_so_and_nothing_is_kept() {
    let home = Home::new();
    seed_case(&home);
    let ws = start(&home, None);
    let first = http(&ws.addr, "GET", "/", &[], "");
    let session = first.cookie("custody_session").unwrap();
    let ids = event_ids(&ws.addr, &[("Cookie", session.clone())]);
    let page = http(
        &ws.addr,
        "GET",
        &format!("/cases/web/events/{}", ids["e1"]),
        &[("Cookie", session.clone())],
        "",
    );
    let csrf = hidden(&page.body, "csrf");
    // The webhook server in the same home holds the ledger while it runs.
    let server = serve(&home, "");
    let before = ledger_entries(&home).len();
    let r = http(
        &ws.addr,
        "POST",
        &format!("/cases/web/events/{}/marks", ids["e1"]),
        &[("Cookie", session.clone())],
        &form(&[
            ("kind", "comment"),
            ("value", "while the server runs"),
            ("csrf", &csrf),
        ]),
    );
    drop(server);
    assert_eq!(r.status, 500, "{}", r.body);
    assert!(r.body.contains("in use by another process"), "{}", r.body);
    assert_eq!(ledger_entries(&home).len(), before);
    let page = http(
        &ws.addr,
        "GET",
        &format!("/cases/web/events/{}", ids["e1"]),
        &[("Cookie", session)],
        "",
    );
    assert!(
        !page.body.contains("while the server runs"),
        "a mark the ledger lacks is not shown"
    );
}

/// The ledger entries of `home`, byte for byte.
fn ledger_lines(home: &Home) -> Vec<Vec<u8>> {
    std::fs::read(home.path().join("ledger").join("entries.jsonl"))
        .unwrap()
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(<[u8]>::to_vec)
        .collect()
}

#[test]
fn entries_proofs_the_bundle_and_verification_are_checkable_and_on_the_record() {
    use base64::Engine as _;
    let home = Home::new();
    seed_case(&home);
    let config = analysts_config(&home);
    let ws = start(&home, Some(&config));
    let a = ws.addr.as_str();
    let ines = vec![("Cookie", sign_in(a, "ines", PASSWORD))];
    let rory = vec![("Cookie", sign_in(a, "rory", READER_PASSWORD))];

    // Every entry of the case, each with its bytes and an inclusion proof.
    let page = http(a, "GET", "/cases/web/evidence", &ines, "");
    assert_eq!(page.status, 200, "{}", page.body);
    let csrf = hidden(&page.body, "csrf");
    let lines = ledger_lines(&home);
    let of_case: Vec<u64> = ledger_entries(&home)
        .iter()
        .enumerate()
        .filter(|(_, e)| e["case"] == "web")
        .map(|(i, _)| i as u64)
        .collect();
    assert!(!of_case.is_empty());
    for i in &of_case {
        assert!(
            page.body.contains(&format!("id=\"entry-{i}\"")),
            "entry {i}"
        );
    }
    let i = of_case[0];
    let entry = http(a, "GET", &format!("/cases/web/ledger/{i}"), &rory, "");
    assert_eq!(entry.status, 200);
    assert_eq!(entry.bytes, lines[i as usize], "the entry byte for byte");
    let proof = http(a, "GET", &format!("/cases/web/ledger/{i}/proof"), &rory, "");
    assert_eq!(proof.status, 200, "{}", proof.body);
    let p = custody::ledger::proof::TlogProof::parse(&proof.bytes).expect("a tlog-proof");
    assert_eq!(p.index, i);
    let note = String::from_utf8(p.checkpoint.clone()).unwrap();
    let mut body = note.lines().skip(1);
    let size: u64 = body.next().unwrap().parse().unwrap();
    let root: [u8; 32] = base64::engine::general_purpose::STANDARD
        .decode(body.next().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    custody::ledger::merkle::verify_inclusion(
        i,
        size,
        &custody::ledger::merkle::leaf_hash(&lines[i as usize]),
        &p.hashes,
        &custody::ledger::merkle::Hash(root),
    )
    .expect("the entry is included under the proof's checkpoint");
    // Another case's entry is not served under this one.
    let other = http(
        a,
        "GET",
        &format!("/cases/elsewhere/ledger/{i}/proof"),
        &rory,
        "",
    );
    assert_eq!(other.status, 404);
    assert!(
        other.body.contains("not an entry of case elsewhere"),
        "{}",
        other.body
    );

    // The bundle: a copy any analyst may take, with the token; checkable offline.
    assert_eq!(
        http(
            a,
            "POST",
            "/cases/web/bundle",
            &rory,
            &form(&[("csrf", "")])
        )
        .status,
        403
    );
    let rory_csrf = hidden(
        &http(a, "GET", "/cases/web/evidence", &rory, "").body,
        "csrf",
    );
    let tar = http(
        a,
        "POST",
        "/cases/web/bundle",
        &rory,
        &form(&[("csrf", &rory_csrf)]),
    );
    assert_eq!(tar.status, 200, "{}", tar.body);
    assert_eq!(tar.header("content-type"), Some("application/x-tar"));
    let out = tempfile::tempdir().unwrap();
    tar::Archive::new(&tar.bytes[..])
        .unpack(out.path())
        .unwrap();
    let bundle = out.path().join("web-bundle");
    let check = home.run(&["ledger", "verify-bundle", bundle.to_str().unwrap()]);
    assert!(check.status.success(), "{}", stderr(&check));
    let exported = ledger_entries(&home)
        .into_iter()
        .rfind(|e| e["action"] == "exported")
        .expect("the export's entry");
    assert_eq!(exported["actor"]["name"], "rory");
    assert_eq!(exported["detail"]["bundle"], "workspace download by rory");

    // Verifying now: an investigator's, with the token; the outcome an entry.
    assert_eq!(
        http(
            a,
            "POST",
            "/cases/web/verify",
            &rory,
            &form(&[("csrf", &rory_csrf)])
        )
        .status,
        403,
        "a read-only analyst"
    );
    assert_eq!(
        http(
            a,
            "POST",
            "/cases/web/verify",
            &ines,
            &form(&[("csrf", "")])
        )
        .status,
        403,
        "no token"
    );
    let done = http(
        a,
        "POST",
        "/cases/web/verify",
        &ines,
        &form(&[("csrf", &csrf)]),
    );
    assert_eq!(done.status, 200, "{}", done.body);
    assert!(
        done.body.contains("matched both its digests"),
        "{}",
        done.body
    );
    let v = ledger_entries(&home).into_iter().last().unwrap();
    assert_eq!(
        (v["action"].as_str(), v["actor"]["name"].as_str()),
        (Some("verified"), Some("ines"))
    );
    assert_eq!(v["detail"]["ok"], true);
    let overview = http(a, "GET", "/cases/web", &ines, "");
    assert!(
        overview.body.contains("Latest signed checkpoint"),
        "{}",
        overview.body
    );
    assert!(
        overview
            .body
            .contains("every artefact and ledger entry in order")
    );
    assert!(
        overview.body.contains(">verified</span>"),
        "{}",
        overview.body
    );
    assert!(
        overview.body.contains("in the timeline: 3 events"),
        "{}",
        overview.body
    );

    // The stored object altered: the verification says which, and so does the overview.
    let id = exported_artefact(&overview.body);
    let stored = walk(&home.store_dir())
        .into_iter()
        .find(|p| p.to_string_lossy().contains(&id) && !p.to_string_lossy().contains("manifest"))
        .expect("the stored object");
    let mut bytes = std::fs::read(&stored).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&stored, bytes).unwrap();
    let done = http(
        a,
        "POST",
        "/cases/web/verify",
        &ines,
        &form(&[("csrf", &csrf)]),
    );
    assert_eq!(done.status, 200, "{}", done.body);
    assert!(
        done.body.contains("Problems found: 1 artefacts failed"),
        "{}",
        done.body
    );
    let v = ledger_entries(&home).into_iter().last().unwrap();
    assert_eq!(v["detail"]["ok"], false);
    assert_eq!(v["detail"]["failed_artefacts"], serde_json::json!([id]));
    let overview = http(a, "GET", "/cases/web", &ines, "");
    assert!(
        overview.body.contains(">FAILED</strong>"),
        "{}",
        overview.body
    );
    assert!(overview.body.contains("problems found"));
    drop(ws);
    let verify = home.run(&["ledger", "verify"]);
    assert!(verify.status.success(), "{}", stderr(&verify));
}

/// The first artefact id an overview offers for download.
fn exported_artefact(overview: &str) -> String {
    overview
        .split("/artefacts/")
        .nth(1)
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_owned()
}

#[test]
fn jobs_and_readiness_show_what_the_server_and_the_audits_keep() {
    use custody::readiness::history::{History, Run, Scope, StoredFinding};
    use custody::readiness::{Finding, Status};
    let home = Home::new();
    seed_case(&home);
    let ui_table = std::fs::read_to_string(analysts_config(&home)).unwrap();
    let ws = serve(
        &home,
        &format!("[[rule]]\nname = \"record\"\nsource = \"edr\"\naction = \"record\"\n{ui_table}"),
    );
    let a = ws.addr.as_str();
    let session = vec![("Cookie", sign_in(a, "rory", READER_PASSWORD))];
    let empty = http(a, "GET", "/jobs", &session, "");
    assert_eq!(empty.status, 200);
    assert!(empty.body.contains("No job"), "{}", empty.body);

    // An alert whose title is hostile: its job, steps and alert, as text.
    let alert = serde_json::json!({
        "id": "alert-7", "time": "2026-11-30T10:00:00Z", "severity": 5,
        "title": HOSTILE_AGENT, "entities": { "instances": ["i-0123456789abcdef0"] }
    });
    let r = http(
        a,
        "POST",
        "/v1/alerts/edr",
        &[
            ("Authorization", "Bearer edr-token".to_owned()),
            ("Content-Type", "application/json".to_owned()),
        ],
        &alert.to_string(),
    );
    assert_eq!(r.status, 202, "{}", r.body);
    let accepted: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    let (job, case) = (
        accepted["accepted"][0]["job"].as_str().unwrap().to_owned(),
        accepted["accepted"][0]["case"].as_str().unwrap().to_owned(),
    );
    let mut page = http(a, "GET", "/jobs", &session, "");
    for _ in 0..100 {
        if page.body.contains("<td>done</td>") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        page = http(a, "GET", "/jobs", &session, "");
    }
    assert!(page.body.contains(&job), "{}", page.body);
    assert!(page.body.contains("alert-7"));
    assert!(page.body.contains("<td>done</td>"), "{}", page.body);
    assert!(!page.body.contains("<script>document"), "the alert is text");
    assert!(
        page.body.contains("&lt;script&gt;document.title"),
        "{}",
        page.body
    );
    let overview = http(a, "GET", &format!("/cases/{case}"), &session, "");
    assert_eq!(overview.status, 200, "{}", overview.body);
    assert!(overview.body.contains("<h2>Jobs</h2>") && overview.body.contains(&job));
    let cases = http(a, "GET", "/", &session, "");
    assert!(
        cases
            .body
            .contains(&format!("<a href=\"/cases/{case}\">{case}</a>")),
        "a case only a job knows is listed: {}",
        cases.body
    );
    let none = http(a, "GET", "/cases/no-such-case", &session, "");
    assert_eq!(none.status, 404);
    assert!(none.body.contains("no case no-such-case"), "{}", none.body);

    // Readiness: nothing yet, then two days of runs as the audit stores them.
    let r = http(a, "GET", "/readiness", &session, "");
    assert!(r.body.contains("No readiness run yet"), "{}", r.body);
    let mut h = History::open(&History::path_in(home.path())).unwrap();
    let day = |d: u8| {
        time::OffsetDateTime::new_utc(
            time::Date::from_calendar_date(2026, time::Month::November, d).unwrap(),
            time::Time::MIDNIGHT,
        )
    };
    let run = |d: u8, score: f64| Run {
        id: 0,
        started: day(d),
        finished: day(d),
        tool_version: "test".into(),
        catalogue_version: "1".into(),
        scope: Scope {
            providers: vec!["aws".into()],
            accounts: vec!["123456789012".into()],
            regions: vec!["eu-west-1".into()],
        },
        identity: "arn:aws:iam::123456789012:role/audit".into(),
        score: Some(score),
        ready: score >= 80.0,
        pillars: serde_json::json!({}),
    };
    let finding = |status, evidence: &str| StoredFinding {
        finding: Finding::new(
            "cloudtrail.enabled",
            "123456789012",
            "eu-west-1",
            "main",
            status,
            evidence,
        ),
        remediation: "Turn the trail back on".into(),
    };
    h.record(&run(1, 90.0), &[finding(Status::Pass, "logging")])
        .unwrap();
    h.record(&run(2, 60.0), &[finding(Status::Fail, HOSTILE_USER)])
        .unwrap();
    let r = http(a, "GET", "/readiness", &session, "");
    assert_eq!(r.status, 200);
    assert!(
        r.body.contains("2026-11-01") && r.body.contains("2026-11-02"),
        "{}",
        r.body
    );
    assert!(
        r.body.contains(">90.0<") && r.body.contains(">60.0<"),
        "{}",
        r.body
    );
    assert!(r.body.contains("<td>regressed</td>"), "{}", r.body);
    assert!(r.body.contains("Turn the trail back on"));
    assert!(!r.body.contains("<svg onload"), "the evidence is text");
    assert!(
        !r.body.contains('\u{1b}'),
        "terminal escapes are shown, not sent"
    );
}

#[test]
fn a_large_download_streams_checked_and_an_altered_one_is_cut_short_unrecorded() {
    let home = Home::new();
    // Every download streams here: none is held whole first.
    let config = analysts_config(&home);
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace(
            "session_hours = 1",
            "session_hours = 1\ncheck_first_mib = 0",
        ),
    )
    .unwrap();
    let src = home.path().join("image.bin");
    let original = crate::common::mixed_bytes(5 << 20, 9);
    std::fs::write(&src, &original).unwrap();
    let report = home.json(&["acquire", "file", src.to_str().unwrap(), "--case", "big"]);
    let a = &report["artefacts"][0];
    let id = a["id"].as_str().unwrap().to_owned();
    let stored = home.store_dir().join(a["stored"]["key"].as_str().unwrap());
    let ws = start(&home, Some(&config));
    let addr = ws.addr.as_str();
    let session = vec![("Cookie", sign_in(addr, "rory", READER_PASSWORD))];
    let csrf = hidden(&http(addr, "GET", "/cases/big", &session, "").body, "csrf");
    let path = format!("/cases/big/artefacts/{id}/download");
    let exported = |home: &Home| {
        ledger_entries(home)
            .iter()
            .filter(|e| e["action"] == "exported")
            .count()
    };

    let r = http(addr, "POST", &path, &session, &form(&[("csrf", &csrf)]));
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-length"),
        Some((5u64 << 20).to_string().as_str())
    );
    assert!(
        r.bytes == original,
        "the bytes acquired, {} of {}",
        r.bytes.len(),
        original.len()
    );
    let entry = ledger_entries(&home).into_iter().last().unwrap();
    assert_eq!(
        (entry["action"].as_str(), entry["actor"]["name"].as_str()),
        (Some("exported"), Some("rory"))
    );
    assert_eq!(entry["detail"]["streamed"], true);

    // One byte of the stored object flipped near its end: most of the
    // bytes may leave before the check fails, the transfer never completes.
    let mut bytes = std::fs::read(&stored).unwrap();
    let at = bytes.len() - 64;
    bytes[at] ^= 0x01;
    std::fs::write(&stored, bytes).unwrap();
    let r = http(addr, "POST", &path, &session, &form(&[("csrf", &csrf)]));
    assert_eq!(
        r.status, 200,
        "the headers left before the check could fail"
    );
    assert!(
        r.bytes.len() < original.len(),
        "cut short: {} of {} bytes",
        r.bytes.len(),
        original.len()
    );
    assert_eq!(exported(&home), 1, "no entry for a download cut short");
    drop(ws);
    let verify = home.run(&["ledger", "verify"]);
    assert!(verify.status.success(), "{}", stderr(&verify));
}
