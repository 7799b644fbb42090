//! Job workers: a bounded number of jobs run at once; each job's alert is
//! decided by the playbook and carried out by a [`JobRunner`], and its
//! state is written to the queue before and after, so a restart knows
//! which jobs to run again.
//!
//! A job that could not be recorded (the ledger could not commit, the queue
//! could not take its state) is not failed: failure is final, and nothing
//! about the alert was wrong. It goes back to `queued` and runs again after
//! a pause that doubles from [`RETRY_FIRST`] to [`RETRY_MAX`], and after a
//! restart; what it had already recorded is found in the ledger and not
//! recorded twice.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

use super::playbook::{self, Rule};
use super::server::Shared;
use crate::alert::Alert;
use crate::queue::{Job, JobState};

/// 1 s: a disk freed by deleting a file is usable at once.
pub const RETRY_FIRST: Duration = Duration::from_secs(1);
/// 60 s: a ledger that stays unwritable costs one reopen a minute per job.
pub const RETRY_MAX: Duration = Duration::from_secs(60);
const _: () = assert!(RETRY_FIRST.as_millis() <= RETRY_MAX.as_millis());

/// Why a job did not finish.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JobError {
    /// The job cannot succeed as things stand: it is marked failed, for good.
    #[error("{0}")]
    Failed(String),
    /// What the job did could not be recorded (the ledger could not
    /// commit): it stays queued and runs again.
    #[error("not recorded, to be retried: {0}")]
    Unrecorded(String),
}

/// Carries out a job's decided action.
#[async_trait]
pub trait JobRunner: Send + Sync {
    /// Runs `job`, whose alert is `alert` and whose matching rule is `rule`
    /// (`None`: no rule matched, the alert is only recorded). Returns the
    /// detail recorded with the job's end, or why it did not finish.
    async fn run(
        &self,
        job: &Job,
        alert: &Alert,
        rule: Option<&Rule>,
    ) -> Result<serde_json::Value, JobError>;
}

/// How many times each job has been put back, for its next pause.
struct Retries {
    first: Duration,
    counts: Mutex<HashMap<String, u32>>,
}

impl Retries {
    fn next_pause(&self, id: &str) -> Duration {
        let mut m = self
            .counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = m.entry(id.to_owned()).or_insert(0);
        let pause = backoff(self.first, *n);
        *n = n.saturating_add(1);
        pause
    }

    fn forget(&self, id: &str) {
        self.counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(id);
    }
}

/// The pause before retry `n` (from 0): `first`, doubling, at most [`RETRY_MAX`].
fn backoff(first: Duration, n: u32) -> Duration {
    first
        .saturating_mul(2u32.saturating_pow(n.min(16)))
        .min(RETRY_MAX)
}

/// Runs jobs from `rx` on `shared.config.server.concurrency` workers until
/// `stop` turns true; a job already running is finished first, and so are
/// notifications in flight unless the server was cancelled.
pub async fn run(
    shared: Arc<Shared>,
    runner: Arc<dyn JobRunner>,
    rx: tokio::sync::mpsc::UnboundedReceiver<String>,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    run_retrying_after(shared, runner, rx, stop, RETRY_FIRST).await;
}

/// [`run`], the first retry after `first` (short in tests).
async fn run_retrying_after(
    shared: Arc<Shared>,
    runner: Arc<dyn JobRunner>,
    rx: tokio::sync::mpsc::UnboundedReceiver<String>,
    stop: tokio::sync::watch::Receiver<bool>,
    first: Duration,
) {
    let notices = tokio_util::task::TaskTracker::new();
    // Notifications a crash cut off are sent first.
    for job in shared.queue.unnotified() {
        notices.spawn(notify(shared.clone(), job.id));
    }
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    let retries = Arc::new(Retries {
        first,
        counts: Mutex::default(),
    });
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..shared.config.server.concurrency.max(1) {
        let (shared, runner, rx, mut stop, notices, retries) = (
            shared.clone(),
            runner.clone(),
            rx.clone(),
            stop.clone(),
            notices.clone(),
            retries.clone(),
        );
        workers.spawn(async move {
            loop {
                let next = tokio::select! {
                    _ = stop.wait_for(|s| *s) => None,
                    id = async { rx.lock().await.recv().await } => id,
                };
                let Some(id) = next else { break };
                match run_one(&shared, runner.as_ref(), &id, &stop, first).await {
                    Ran::Ended => {
                        retries.forget(&id);
                        notices.spawn(notify(shared.clone(), id));
                    }
                    Ran::Left => retries.forget(&id),
                    Ran::Again => {
                        let pause = retries.next_pause(&id);
                        let (jobs, mut stop) = (shared.jobs.clone(), stop.clone());
                        // Not awaited: the worker takes the next job meanwhile.
                        tokio::spawn(async move {
                            tokio::select! {
                                _ = stop.wait_for(|s| *s) => {}
                                () = tokio::time::sleep(pause) => {
                                    let _ = jobs.send(id);
                                }
                            }
                        });
                    }
                }
            }
        });
    }
    while workers.join_next().await.is_some() {}
    notices.close();
    if !shared.cancel.load(std::sync::atomic::Ordering::SeqCst) {
        notices.wait().await;
    }
}

/// Sends `id`'s notification if the rule that decided it has one, and
/// records the outcome in the queue.
async fn notify(shared: Arc<Shared>, id: String) {
    let Some(job) = shared.queue.job(&id) else {
        return;
    };
    // The rule recorded when the job started, not today's decision.
    let step = |state: &str| {
        job.steps
            .iter()
            .rev()
            .find(|s| s.get("state").and_then(|v| v.as_str()) == Some(state))
            .and_then(|s| s.get("detail").cloned())
    };
    let Some(rule) =
        step("running").and_then(|d| d.get("rule").and_then(|r| r.as_str()).map(str::to_owned))
    else {
        return;
    };
    let Some(target) = shared.config.notify.get(&rule) else {
        return;
    };
    let notice = super::notify::Notice {
        event: format!("job.{}", job.state.as_str()),
        job: job.id.clone(),
        state: job.state.as_str().to_owned(),
        source: job.source.clone(),
        alert_id: job.alert_id.clone(),
        case: job.case.to_string(),
        rule,
        at: shared.clock.now(),
        detail: step(job.state.as_str()).unwrap_or_default(),
    };
    let sent = shared
        .notifier
        .send(target, &notice, shared.clock.as_ref())
        .await;
    let (delivered, detail) = match sent {
        Ok((status, attempts)) => {
            tracing::info!(job = %id, host = %target.host(), status, attempts, "notification delivered");
            (
                true,
                serde_json::json!({ "host": target.host(), "status": status, "attempts": attempts }),
            )
        }
        Err((error, attempts)) => {
            tracing::warn!(job = %id, %error, attempts, "notification given up");
            (
                false,
                serde_json::json!({ "host": target.host(), "error": error.to_string(), "attempts": attempts }),
            )
        }
    };
    shared.metrics.notified(delivered);
    if let Err(e) = shared.queue.set_notified(&id, delivered, detail).await {
        tracing::error!(job = %id, error = %e, "cannot record the notification; a restart sends it again");
    }
}

/// What became of a job a worker took.
#[derive(Debug, PartialEq, Eq)]
enum Ran {
    /// Done or failed, on disk.
    Ended,
    /// Not run, or left as it is on disk for a restart.
    Left,
    /// To run again after a pause.
    Again,
}

/// Runs one job.
async fn run_one(
    shared: &Shared,
    runner: &dyn JobRunner,
    id: &str,
    stop: &tokio::sync::watch::Receiver<bool>,
    first: Duration,
) -> Ran {
    let Some(job) = shared.queue.job(id) else {
        return Ran::Left;
    };
    if job.state.finished() {
        return Ran::Left;
    }
    let alert: Alert = match serde_json::from_value(job.alert.clone()) {
        Ok(a) => a,
        Err(e) => {
            let _ = shared
                .queue
                .set_state(
                    id,
                    JobState::Failed,
                    Some(serde_json::json!({ "error": format!("the queued alert is unreadable: {e}") })),
                )
                .await;
            return Ran::Left;
        }
    };
    let rule = playbook::decide(&shared.config.rules, &job.source, &alert);
    let decided = serde_json::json!({
        "rule": rule.map(|r| r.name.clone()),
        "action": rule.map_or("record", |r| r.action.as_str()),
        "dry_run": rule.is_some_and(|r| r.dry_run),
    });
    if let Err(e) = shared
        .queue
        .set_state(id, JobState::Running, Some(decided))
        .await
    {
        tracing::error!(job = id, error = %e, "cannot mark the job running; it stays queued and is tried again");
        return Ran::Again;
    }
    tracing::info!(job = id, alert = %alert.id, rule = ?rule.map(|r| &r.name), "job started");
    let (state, detail) = match runner.run(&job, &alert, rule).await {
        Ok(detail) => {
            if let Some(b) = detail.get("bytes").and_then(serde_json::Value::as_u64) {
                shared.metrics.bytes_acquired.inc_by(b);
            }
            (JobState::Done, detail)
        }
        Err(error) if shared.cancel.load(std::sync::atomic::Ordering::SeqCst) => {
            tracing::warn!(job = id, %error, "job interrupted; it runs again after a restart");
            return Ran::Left;
        }
        Err(JobError::Unrecorded(why)) => {
            tracing::warn!(job = id, error = %why, "the job could not be recorded; it runs again");
            // New alerts wait (503) until the ledger can record again.
            shared.recording.failed(&why);
            // Best effort: if the queue cannot take it either, the job is
            // still unfinished on disk, which is all a restart needs.
            let _ = shared
                .queue
                .set_state(
                    id,
                    JobState::Queued,
                    Some(serde_json::json!({ "retry": why })),
                )
                .await;
            return Ran::Again;
        }
        Err(JobError::Failed(error)) => {
            tracing::warn!(job = id, %error, "job failed");
            (JobState::Failed, serde_json::json!({ "error": error }))
        }
    };
    // The work is done: only its end is retried, never the work.
    let mut pause = first;
    let mut stop = stop.clone();
    loop {
        match shared
            .queue
            .set_state(id, state, Some(detail.clone()))
            .await
        {
            Ok(()) => return Ran::Ended,
            Err(e) => {
                tracing::error!(job = id, error = %e, "cannot record the job's end; trying again");
            }
        }
        tokio::select! {
            // It stays running on disk; after a restart it runs again and
            // finds in the ledger what it already recorded.
            _ = stop.wait_for(|s| *s) => return Ran::Left,
            () = tokio::time::sleep(pause) => {}
        }
        pause = pause.saturating_mul(2).min(RETRY_MAX);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    use super::*;
    use crate::queue::{Queue, Submit};
    use crate::serve::config::ServeConfig;
    use crate::serve::server::{AlwaysRecording, Metrics, Readiness};

    /// Fails the first `unrecorded` runs as a ledger that cannot commit
    /// would, then succeeds; or fails for good when `fails`.
    struct Flaky {
        unrecorded: usize,
        fails: bool,
        runs: AtomicUsize,
    }

    #[async_trait]
    impl JobRunner for Flaky {
        async fn run(
            &self,
            _: &Job,
            _: &Alert,
            _: Option<&Rule>,
        ) -> Result<serde_json::Value, JobError> {
            let n = self.runs.fetch_add(1, Ordering::SeqCst);
            if n < self.unrecorded {
                Err(JobError::Unrecorded("No space left on device".into()))
            } else if self.fails {
                Err(JobError::Failed("no such instance".into()))
            } else {
                Ok(serde_json::json!({ "action": "record" }))
            }
        }
    }

    async fn run_with(runner: Flaky) -> (Job, usize) {
        let dir = tempfile::tempdir().expect("tempdir");
        let clock: Arc<dyn crate::clock::Clock> = Arc::new(crate::clock::SystemClock);
        let queue = Queue::open(
            &dir.path().join("queue.jsonl"),
            clock.clone(),
            time::Duration::hours(1),
        )
        .expect("queue");
        let body = br#"{"id":"a","time":"2026-11-30T10:00:00Z","severity":5,"title":"t"}"#;
        let alert = crate::alert::parse("generic", body, &crate::alert::Limits::default())
            .expect("alert")
            .remove(0);
        let job = queue
            .enqueue(Submit {
                source: "edr".into(),
                alert_id: alert.id.clone(),
                entities: Vec::new(),
                alert: serde_json::to_value(&alert).expect("value"),
            })
            .await
            .expect("enqueue")
            .job;
        let config = ServeConfig::parse(
            "[[source]]\nname = \"edr\"\nkind = \"generic\"\nauth = \"none\"",
            std::path::Path::new("serve.toml"),
            &|_| None,
        )
        .expect("config");
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            config,
            queue: queue.clone(),
            metrics: Metrics::default(),
            notifier: crate::serve::notify::Notifier::new(&[]).expect("notifier"),
            clock,
            jobs: tx.clone(),
            draining: AtomicBool::new(false),
            cancel: Arc::new(AtomicBool::new(false)),
            recording: Readiness::new(Arc::new(AlwaysRecording)),
            ui: None,
        });
        tx.send(job.clone()).expect("send");
        let runner = Arc::new(runner);
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let workers = tokio::spawn(run_retrying_after(
            shared.clone(),
            runner.clone(),
            rx,
            stop_rx,
            Duration::from_millis(10),
        ));
        for _ in 0..1000 {
            if queue.job(&job).is_some_and(|j| j.state.finished()) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let _ = stop_tx.send(true);
        workers.await.expect("workers");
        let j = queue.job(&job).expect("job");
        drop(queue);
        // The file agrees with memory.
        let reopened = Queue::open(
            &dir.path().join("queue.jsonl"),
            Arc::new(crate::clock::SystemClock),
            time::Duration::hours(1),
        )
        .expect("reopen");
        assert_eq!(reopened.job(&job).expect("job").state, j.state);
        (j, runner.runs.load(Ordering::SeqCst))
    }

    fn states(j: &Job) -> Vec<String> {
        j.steps
            .iter()
            .filter_map(|s| s.get("state").and_then(|v| v.as_str()).map(str::to_owned))
            .collect()
    }

    #[tokio::test]
    async fn q2_a_job_the_ledger_could_not_record_runs_again_and_is_never_failed() {
        let (j, runs) = run_with(Flaky {
            unrecorded: 3,
            fails: false,
            runs: AtomicUsize::new(0),
        })
        .await;
        assert_eq!(j.state, JobState::Done, "{:?}", j.steps);
        assert_eq!(runs, 4);
        assert_eq!(
            states(&j),
            [
                "running", "queued", "running", "queued", "running", "queued", "running", "done"
            ]
        );
        let retry = j
            .steps
            .iter()
            .find(|s| s.get("state").and_then(|v| v.as_str()) == Some("queued"))
            .and_then(|s| s.pointer("/detail/retry"))
            .and_then(|v| v.as_str())
            .unwrap_or_default();
        assert!(retry.contains("No space left"), "{:?}", j.steps);
    }

    #[tokio::test]
    async fn a_job_that_cannot_succeed_fails_once() {
        let (j, runs) = run_with(Flaky {
            unrecorded: 0,
            fails: true,
            runs: AtomicUsize::new(0),
        })
        .await;
        assert_eq!((j.state, runs), (JobState::Failed, 1));
        assert_eq!(states(&j), ["running", "failed"]);
    }

    #[test]
    fn retries_back_off_to_a_ceiling() {
        let pauses: Vec<u64> = (0..9).map(|n| backoff(RETRY_FIRST, n).as_secs()).collect();
        assert_eq!(pauses, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(backoff(RETRY_FIRST, u32::MAX), RETRY_MAX);
    }
}
