//! The server's HTTP contract, in process: `custody::serve::run` on port 0
//! with an `App` on a temporary home, the real queue, job runner and
//! ledger behind it. What a sender and a reader may rely on: an accepted
//! alert is a job that ends recorded in the ledger, a repeated alert is the
//! same job, a refused one leaves nothing behind, a dry run changes nothing.
//! Crash durability stays with the process tests (`serve.rs`).

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use custody::App;
use custody::ledger::entry::Action;
use custody::serve::config::ServeConfig;

use crate::common::Home;
use crate::serve::http;

const TOKEN: &str = "contract-token";

struct Running {
    addr: String,
    app: App,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    done: tokio::task::JoinHandle<Result<(), custody::serve::ServeError>>,
    home: Home,
}

impl Running {
    /// Asks the server to stop and waits for it, running jobs included;
    /// the home stays for the caller to read.
    async fn stop(mut self) -> Home {
        let _ = self.stop.take().map(|s| s.send(()));
        self.done
            .await
            .expect("join")
            .expect("the server ends cleanly");
        self.home
    }
}

async fn start(rules: &str) -> Running {
    let home = Home::new();
    let text = format!(
        "[server]\nbind = \"127.0.0.1:0\"\n\n\
         [[source]]\nname = \"edr\"\nkind = \"generic\"\nauth = \"bearer\"\nsecret_env = \"TOKEN\"\n\n{rules}"
    );
    let config = ServeConfig::parse(&text, std::path::Path::new("serve.toml"), &|k: &str| {
        (k == "TOKEN").then(|| TOKEN.to_owned())
    })
    .expect("config");
    let settings =
        custody::config::Config::load(Some(home.path().to_owned()), None).expect("settings");
    let app = App::new(
        settings,
        Arc::new(custody::clock::SystemClock),
        Arc::new(AtomicBool::new(false)),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let done = tokio::spawn(custody::serve::run(
        app.clone(),
        config,
        listener,
        async move {
            let _ = stopped.await;
        },
    ));
    Running {
        addr,
        app,
        stop: Some(stop),
        done,
        home,
    }
}

type Headers = Vec<(&'static str, String)>;

fn bearer() -> Headers {
    vec![("Authorization", format!("Bearer {TOKEN}"))]
}

fn alert(id: &str, instances: &[&str]) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "id": id,
        "time": "2026-11-30T10:00:00Z",
        "severity": 8,
        "title": "contract alert",
        "entities": { "instances": instances }
    }))
    .unwrap()
}

async fn request(
    addr: &str,
    method: &'static str,
    path: String,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
) -> (u16, serde_json::Value) {
    let addr = addr.to_owned();
    let (status, text) =
        tokio::task::spawn_blocking(move || http(&addr, method, &path, &headers, &body))
            .await
            .expect("join");
    let v = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
    (status, v)
}

async fn finished(addr: &str, job: &str) -> serde_json::Value {
    for _ in 0..300 {
        let (status, v) = request(addr, "GET", format!("/v1/jobs/{job}"), bearer(), vec![]).await;
        assert_eq!(status, 200, "{v}");
        if v["state"] == "done" || v["state"] == "failed" {
            return v;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("job {job} did not finish");
}

/// The ledger entries recording alert jobs, by job id.
fn recorded_jobs(app: &App) -> Vec<String> {
    std::fs::read_to_string(app.ledger_paths().entries())
        .expect("entries")
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["action"] == serde_json::json!(Action::AlertReceived))
        .filter_map(|e| e["detail"]["job"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_accepted_alert_is_a_job_recorded_in_the_ledger_and_a_repeat_is_the_same_job() {
    let srv = start("[[rule]]\nname = \"rec\"\nsource = \"edr\"\naction = \"record\"\n").await;
    let (status, v) = request(
        &srv.addr,
        "POST",
        "/v1/alerts/edr".into(),
        bearer(),
        alert("a-1", &[]),
    )
    .await;
    assert_eq!(status, 202, "{v}");
    let job = v["accepted"][0]["job"].as_str().expect("job").to_owned();
    assert_eq!(v["accepted"][0]["duplicate"], false, "{v}");
    let done = finished(&srv.addr, &job).await;
    assert_eq!(done["state"], "done", "{done}");
    let (status, again) = request(
        &srv.addr,
        "POST",
        "/v1/alerts/edr".into(),
        bearer(),
        alert("a-1", &[]),
    )
    .await;
    assert_eq!(status, 202, "{again}");
    assert_eq!(again["accepted"][0]["job"], job.as_str(), "{again}");
    assert_eq!(again["accepted"][0]["duplicate"], true, "{again}");
    assert_eq!(recorded_jobs(&srv.app), vec![job.clone()], "recorded once");
    let app = srv.app.clone();
    let _home = srv.stop().await;
    // The ledger the server wrote verifies.
    let report = custody::ledger::verify::verify_ledger(&app.ledger_paths(), None, true)
        .expect("the ledger reads");
    assert!(report.ok(), "{:?}", report.problems);
    assert!(report.entries >= 2, "the init and the alert");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_alerts_leave_nothing_behind() {
    let srv = start("").await;
    let wrong = vec![("Authorization", "Bearer not-the-token".to_owned())];
    let cases: [(Headers, &str, Vec<u8>, u16); 4] = [
        (wrong, "/v1/alerts/edr", alert("a-2", &[]), 401),
        (bearer(), "/v1/alerts/nope", alert("a-3", &[]), 404),
        (bearer(), "/v1/alerts/edr", b"{not json".to_vec(), 400),
        (
            bearer(),
            "/v1/alerts/edr",
            alert("a-4", &["i-NOT-AN-ID"]),
            422,
        ),
    ];
    for (headers, path, body, want) in cases {
        let (status, v) = request(&srv.addr, "POST", path.into(), headers, body).await;
        assert_eq!(status, want, "{path}: {v}");
        assert!(v["error"].is_string() && v["reason"].is_string(), "{v}");
    }
    assert!(recorded_jobs(&srv.app).is_empty());
    let (status, _) = request(&srv.addr, "GET", "/v1/jobs/job-x".into(), vec![], vec![]).await;
    assert_eq!(status, 401, "views need a credential");
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_rule_records_the_plan_and_touches_no_cloud() {
    // No AWS endpoint is configured: acting would fail; a dry run must not act.
    let srv =
        start("[[rule]]\nname = \"iso\"\nsource = \"edr\"\naction = \"isolate\"\ndry_run = true\n")
            .await;
    let (status, v) = request(
        &srv.addr,
        "POST",
        "/v1/alerts/edr".into(),
        bearer(),
        alert("a-5", &["i-0123456789abcdef0"]),
    )
    .await;
    assert_eq!(status, 202, "{v}");
    let job = v["accepted"][0]["job"].as_str().expect("job").to_owned();
    let done = finished(&srv.addr, &job).await;
    assert_eq!(done["state"], "done", "{done}");
    let detail = done.to_string();
    assert!(
        detail.contains("\"dry_run\":true") && detail.contains("isolate"),
        "{detail}"
    );
    assert_eq!(recorded_jobs(&srv.app), vec![job]);
    srv.stop().await;
}
