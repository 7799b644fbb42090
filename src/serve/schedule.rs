//! Scheduled readiness audits: each `[[audit]]` of the server's
//! configuration runs on its cron schedule (UTC), is stored in the
//! readiness history like any run, and sends its notification when a
//! critical or high check newly fails or regresses, or when the score drops
//! by more than `score_drop` points since the previous run.
//!
//! ```toml
//! [[audit]]
//! name = "nightly"
//! schedule = "0 3 * * *"        # minute hour day month weekday, UTC
//! notify = "https://hooks.example/readiness"
//! score_drop = 5.0
//! [audit.scope]                 # as `custody readiness run` takes them
//! regions = ["us-east-1", "eu-west-1"]
//! evidence_bucket = "evidence"
//! ```

use std::sync::Arc;

use async_trait::async_trait;
use serde::Deserialize;
use time::OffsetDateTime;

use super::notify::{Notifier, NotifyTarget};
use crate::readiness::Status;
use crate::readiness::audit::{AuditError, AuditOptions, Audited};
use crate::readiness::catalogue::{Catalogue, Severity};
use crate::readiness::score::Change;

const fn five() -> f64 {
    5.0
}

/// One `[[audit]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditSpec {
    pub name: String,
    /// Cron fields (minute hour day-of-month month day-of-week), UTC.
    pub schedule: String,
    #[serde(default)]
    pub notify: Option<String>,
    #[serde(default)]
    pub notify_secret_env: Option<String>,
    /// A score drop of more than this many points is notified.
    #[serde(default = "five")]
    pub score_drop: f64,
    #[serde(default)]
    pub scope: AuditOptions,
}

/// Why an audit cannot be scheduled.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScheduleError {
    #[error("schedule {schedule:?}: {message}")]
    Cron { schedule: String, message: String },
    #[error("notify")]
    Notify(#[source] super::notify::NotifyError),
}

/// An audit ready to schedule.
#[derive(Debug, Clone)]
pub struct Scheduled {
    pub spec: AuditSpec,
    pub cron: croner::Cron,
    pub notify: Option<NotifyTarget>,
}

impl Scheduled {
    /// Checks the schedule and the notification target.
    pub fn new(spec: AuditSpec, secret: Option<Vec<u8>>) -> Result<Self, ScheduleError> {
        let cron: croner::Cron =
            spec.schedule
                .parse()
                .map_err(|e: croner::errors::CronError| ScheduleError::Cron {
                    schedule: spec.schedule.clone(),
                    message: e.to_string(),
                })?;
        let notify = match &spec.notify {
            Some(url) => Some(NotifyTarget::new(url, secret).map_err(ScheduleError::Notify)?),
            None => None,
        };
        Ok(Self { spec, cron, notify })
    }

    /// The first time strictly after `t` the schedule fires.
    pub fn next_after(&self, t: OffsetDateTime) -> Option<OffsetDateTime> {
        let at = chrono::DateTime::from_timestamp(t.unix_timestamp(), t.nanosecond())?;
        let next = self.cron.find_next_occurrence(&at, false).ok()?;
        OffsetDateTime::from_unix_timestamp(next.timestamp()).ok()
    }
}

/// Why a run is worth a notification; empty when it is not.
pub fn alarms(a: &Audited, catalogue: &Catalogue, score_drop: f64) -> Vec<String> {
    let mut out: Vec<String> = a
        .trend
        .iter()
        .filter(|t| matches!(t.change, Change::New | Change::Regressed) && t.status == Status::Fail)
        .filter(|t| {
            catalogue
                .get(&t.key.check)
                .is_some_and(|c| matches!(c.severity, Severity::Critical | Severity::High))
        })
        .map(|t| {
            format!(
                "{} {} on {} {}",
                t.key.check,
                if t.change == Change::New {
                    "fails (new)"
                } else {
                    "regressed"
                },
                t.key.region,
                t.key.resource
            )
        })
        .collect();
    if let (Some(now), Some(before)) = (a.run.score, a.previous.as_ref().and_then(|p| p.score))
        && before - now > score_drop
    {
        out.push(format!("the score dropped from {before:.1} to {now:.1}"));
    }
    out
}

/// Runs one audit.
#[async_trait]
pub trait AuditRunner: Send + Sync {
    async fn run(&self, opts: &AuditOptions) -> Result<Audited, AuditError>;
}

/// Waits: tokio's timer in the server, virtual time in tests (where the
/// wait moves the test's clock instead).
pub trait Timer: Send + Sync {
    fn sleep(&self, d: std::time::Duration) -> futures::future::BoxFuture<'static, ()>;
}

/// The runtime's timer.
#[derive(Debug, Clone, Copy, Default)]
pub struct TokioTimer;

impl Timer for TokioTimer {
    fn sleep(&self, d: std::time::Duration) -> futures::future::BoxFuture<'static, ()> {
        Box::pin(tokio::time::sleep(d))
    }
}

/// Runs every schedule until `stop` turns true.
pub async fn run(
    audits: Vec<Scheduled>,
    clock: Arc<dyn crate::clock::Clock>,
    timer: Arc<dyn Timer>,
    runner: Arc<dyn AuditRunner>,
    notifier: Notifier,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut tasks = tokio::task::JoinSet::new();
    for audit in audits {
        let (clock, timer, runner, notifier, mut stop) = (
            clock.clone(),
            timer.clone(),
            runner.clone(),
            notifier.clone(),
            stop.clone(),
        );
        tasks.spawn(async move {
            loop {
                let now = clock.now();
                let Some(next) = audit.next_after(now) else {
                    tracing::warn!(audit = %audit.spec.name, "the schedule never fires again");
                    return;
                };
                let wait = std::time::Duration::try_from(next - now).unwrap_or_default();
                tokio::select! {
                    _ = stop.wait_for(|s| *s) => return,
                    () = timer.sleep(wait) => {}
                }
                one(&audit, clock.as_ref(), runner.as_ref(), &notifier).await;
            }
        });
    }
    while tasks.join_next().await.is_some() {}
}

async fn one(
    audit: &Scheduled,
    clock: &dyn crate::clock::Clock,
    runner: &dyn AuditRunner,
    notifier: &Notifier,
) {
    let name = &audit.spec.name;
    let a = match runner.run(&audit.spec.scope).await {
        Ok(a) => a,
        Err(e) => {
            let error = crate::error_chain(&e);
            tracing::warn!(audit = %name, %error, "scheduled readiness audit failed");
            return;
        }
    };
    tracing::info!(audit = %name, run = a.run.id, score = ?a.run.score, ready = a.run.ready, "scheduled readiness audit");
    let Ok(catalogue) = Catalogue::builtin() else {
        return;
    };
    let reasons = alarms(&a, &catalogue, audit.spec.score_drop);
    let Some(target) = &audit.notify else {
        return;
    };
    if reasons.is_empty() {
        return;
    }
    let notice = super::notify::Notice {
        event: "readiness.regressed".into(),
        job: format!("readiness-run-{}", a.run.id),
        state: if a.run.ready { "ready" } else { "not_ready" }.into(),
        source: "readiness".into(),
        alert_id: name.clone(),
        case: String::new(),
        rule: name.clone(),
        at: clock.now(),
        detail: serde_json::json!({
            "run": a.run.id,
            "score": a.run.score,
            "previous_score": a.previous.as_ref().and_then(|p| p.score),
            "ready": a.run.ready,
            "reasons": reasons,
        }),
    };
    match notifier.send(target, &notice, clock).await {
        Ok((status, attempts)) => {
            tracing::info!(audit = %name, host = %target.host(), status, attempts, "readiness notification delivered");
        }
        Err((error, attempts)) => {
            tracing::warn!(audit = %name, %error, attempts, "readiness notification given up");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use time::macros::datetime;

    use super::*;
    use crate::readiness::history::{Run, Scope};
    use crate::readiness::score::{Score, Trend};
    use crate::readiness::{Finding, FindingKey};

    /// Virtual time: a wait moves the clock at once; a wait past `end`
    /// never returns and tells the test the time is up.
    #[derive(Debug)]
    struct Virtual {
        now: Mutex<OffsetDateTime>,
        end: OffsetDateTime,
        up: Arc<tokio::sync::Notify>,
    }

    impl crate::clock::Clock for Virtual {
        fn now(&self) -> OffsetDateTime {
            *self
                .now
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        }
    }

    impl Timer for Virtual {
        fn sleep(&self, d: std::time::Duration) -> futures::future::BoxFuture<'static, ()> {
            let mut now = self
                .now
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if *now + d > self.end {
                self.up.notify_one();
                return Box::pin(std::future::pending());
            }
            *now += d;
            Box::pin(tokio::task::yield_now())
        }
    }

    fn run_at(id: i64, at: OffsetDateTime, score: Option<f64>) -> Run {
        Run {
            id,
            started: at,
            finished: at,
            tool_version: "0".into(),
            catalogue_version: "sha256:0".into(),
            scope: Scope::default(),
            identity: String::new(),
            score,
            ready: true,
            pillars: serde_json::json!({}),
        }
    }

    fn audited(run: Run, previous: Option<Run>, trend: Vec<Trend>) -> Audited {
        Audited {
            score: Score {
                score: run.score,
                pillars: Default::default(),
                ready: true,
                failing_critical: Vec::new(),
                checks: Vec::new(),
            },
            run,
            findings: Vec::<Finding>::new(),
            trend,
            previous,
        }
    }

    struct Counting {
        clock: Arc<dyn crate::clock::Clock>,
        at: Mutex<Vec<OffsetDateTime>>,
    }

    #[async_trait]
    impl AuditRunner for Counting {
        async fn run(&self, _: &AuditOptions) -> Result<Audited, AuditError> {
            let now = self.clock.now();
            let mut at = self.at.lock().expect("lock");
            at.push(now);
            Ok(audited(
                run_at(at.len() as i64, now, Some(90.0)),
                None,
                Vec::new(),
            ))
        }
    }

    #[tokio::test]
    async fn audits_run_on_their_schedule_in_virtual_time() {
        let up = Arc::new(tokio::sync::Notify::new());
        // Three days and a bit: 03:00 on the 1st, 2nd and 3rd, not the 4th.
        let time = Arc::new(Virtual {
            now: Mutex::new(datetime!(2026-11-01 02:30 UTC)),
            end: datetime!(2026-11-04 02:00 UTC),
            up: up.clone(),
        });
        let clock: Arc<dyn crate::clock::Clock> = time.clone();
        let spec: AuditSpec = toml::from_str(
            "name = \"nightly\"\nschedule = \"0 3 * * *\"\n[scope]\nregions = [\"us-east-1\"]\n",
        )
        .expect("spec");
        assert_eq!(spec.scope.regions, vec!["us-east-1".to_owned()]);
        let audit = Scheduled::new(spec, None).expect("schedule");
        let runner = Arc::new(Counting {
            clock: clock.clone(),
            at: Mutex::new(Vec::new()),
        });
        let (stop_tx, stop) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(run(
            vec![audit],
            clock.clone(),
            time.clone(),
            runner.clone(),
            Notifier::new(&[]).expect("notifier"),
            stop,
        ));
        up.notified().await;
        let _ = stop_tx.send(true);
        task.await.expect("scheduler");
        let at = runner.at.lock().expect("lock").clone();
        assert_eq!(
            at.iter()
                .map(|t| (t.day(), t.hour(), t.minute()))
                .collect::<Vec<_>>(),
            vec![(1, 3, 0), (2, 3, 0), (3, 3, 0)]
        );
    }

    #[test]
    fn bad_schedules_are_named() {
        let spec: AuditSpec =
            toml::from_str("name = \"x\"\nschedule = \"61 * * * *\"").expect("spec");
        let e = Scheduled::new(spec, None).expect_err("minute 61");
        assert!(e.to_string().contains("61 * * * *"), "{e}");
        let typo = toml::from_str::<AuditSpec>(
            "name = \"x\"\nschedule = \"0 3 * * *\"\n[scope]\nregion = [\"a\"]",
        );
        assert!(typo.is_err(), "an unknown scope key is refused");
    }

    #[test]
    fn regressions_of_critical_or_high_checks_and_score_drops_alarm() {
        let c = Catalogue::builtin().expect("catalogue");
        let t = |check: &str, change, status| Trend {
            key: FindingKey {
                check: check.into(),
                account: "1".into(),
                region: "us-east-1".into(),
                resource: "-".into(),
            },
            status,
            change,
            first_seen: datetime!(2026-11-01 00:00 UTC),
            failed_in_a_row: 1,
        };
        let quiet = audited(
            run_at(2, datetime!(2026-11-02 03:00 UTC), Some(80.0)),
            Some(run_at(1, datetime!(2026-11-01 03:00 UTC), Some(83.0))),
            vec![
                t("aws.securityhub.enabled", Change::Regressed, Status::Fail),
                t("aws.vpc.flow_logs", Change::Fixed, Status::Pass),
                t("aws.iam.forensic_role", Change::Unchanged, Status::Fail),
            ],
        );
        assert!(
            alarms(&quiet, &c, 5.0).is_empty(),
            "a medium regression and a 3-point drop"
        );
        let loud = audited(
            run_at(2, datetime!(2026-11-02 03:00 UTC), Some(70.0)),
            Some(run_at(1, datetime!(2026-11-01 03:00 UTC), Some(83.0))),
            vec![
                t("aws.vpc.flow_logs", Change::Regressed, Status::Fail),
                t("aws.s3.evidence_bucket", Change::New, Status::Fail),
            ],
        );
        let a = alarms(&loud, &c, 5.0);
        assert_eq!(a.len(), 3, "{a:?}");
        assert!(
            a.iter().any(|r| r.contains("dropped from 83.0 to 70.0")),
            "{a:?}"
        );
    }

    struct Fixed(Audited);

    #[async_trait]
    impl AuditRunner for Fixed {
        async fn run(&self, _: &AuditOptions) -> Result<Audited, AuditError> {
            Ok(self.0.clone())
        }
    }

    /// A receiver that answers 200 and hands over each request's body.
    async fn receiver() -> (String, tokio::sync::mpsc::UnboundedReceiver<String>) {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = l.local_addr().expect("addr").to_string();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((mut c, _)) = l.accept().await {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                // Headers, then Content-Length bytes of body.
                let body = loop {
                    let Ok(n) = c.read(&mut chunk).await else {
                        break String::new();
                    };
                    if n == 0 {
                        break String::new();
                    }
                    buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
                    let text = String::from_utf8_lossy(&buf).into_owned();
                    if let Some((head, body)) = text.split_once("\r\n\r\n") {
                        let len = head
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().to_owned())
                            })
                            .and_then(|v| v.parse::<usize>().ok())
                            .unwrap_or(0);
                        if body.len() >= len {
                            break body.to_owned();
                        }
                    }
                };
                let _ = c
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    .await;
                let _ = tx.send(body);
            }
        });
        (addr, rx)
    }

    #[tokio::test]
    async fn a_regression_sends_the_audits_notification_and_a_quiet_run_does_not() {
        let (addr, mut got) = receiver().await;
        let spec: AuditSpec = toml::from_str(&format!(
            "name = \"nightly\"\nschedule = \"0 3 * * *\"\nnotify = \"http://{addr}/hook\"\n"
        ))
        .expect("spec");
        let audit = Scheduled::new(spec, Some(b"s3cret".to_vec())).expect("schedule");
        let clock = crate::clock::FixedClock::new(datetime!(2026-11-02 03:00 UTC));
        let notifier = Notifier::new(&[]).expect("notifier");
        let key = FindingKey {
            check: "aws.s3.evidence_bucket".into(),
            account: "1".into(),
            region: "us-east-1".into(),
            resource: "evidence".into(),
        };
        let trend = |change| Trend {
            key: key.clone(),
            status: Status::Fail,
            change,
            first_seen: datetime!(2026-11-01 03:00 UTC),
            failed_in_a_row: 1,
        };
        let before = Some(run_at(1, datetime!(2026-11-01 03:00 UTC), Some(90.0)));
        let quiet = Fixed(audited(
            run_at(2, datetime!(2026-11-02 03:00 UTC), Some(89.0)),
            before.clone(),
            vec![trend(Change::Unchanged)],
        ));
        one(&audit, &clock, &quiet, &notifier).await;
        let loud = Fixed(audited(
            run_at(3, datetime!(2026-11-02 03:00 UTC), Some(89.0)),
            before,
            vec![trend(Change::Regressed)],
        ));
        one(&audit, &clock, &loud, &notifier).await;
        let body = got.recv().await.expect("a notification");
        let v: serde_json::Value = serde_json::from_str(&body).expect("json");
        assert_eq!(v["event"], "readiness.regressed");
        assert_eq!(v["detail"]["run"], 3, "the quiet run sent nothing: {v}");
        assert!(
            v["detail"]["reasons"]
                .to_string()
                .contains("aws.s3.evidence_bucket regressed"),
            "{v}"
        );
        assert!(got.try_recv().is_err(), "one notification");
    }
}
