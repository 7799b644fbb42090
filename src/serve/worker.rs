//! Job workers: a bounded number of jobs run at once; each job's alert is
//! decided by the playbook and carried out by a [`JobRunner`], and its
//! state is written to the queue before and after, so a restart knows
//! which jobs to run again.

use std::sync::Arc;

use async_trait::async_trait;

use super::playbook::{self, Rule};
use super::queue::{Job, JobState};
use super::server::Shared;
use crate::alert::Alert;

/// Carries out a job's decided action.
#[async_trait]
pub trait JobRunner: Send + Sync {
    /// Runs `job`, whose alert is `alert` and whose matching rule is `rule`
    /// (`None`: no rule matched, the alert is only recorded). Returns the
    /// detail recorded with the job's end, or why it failed.
    async fn run(
        &self,
        job: &Job,
        alert: &Alert,
        rule: Option<&Rule>,
    ) -> Result<serde_json::Value, String>;
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
    let notices = tokio_util::task::TaskTracker::new();
    // Notifications a crash cut off are sent first.
    for job in shared.queue.unnotified() {
        notices.spawn(notify(shared.clone(), job.id));
    }
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..shared.config.server.concurrency.max(1) {
        let (shared, runner, rx, mut stop, notices) = (
            shared.clone(),
            runner.clone(),
            rx.clone(),
            stop.clone(),
            notices.clone(),
        );
        workers.spawn(async move {
            loop {
                let next = tokio::select! {
                    _ = stop.wait_for(|s| *s) => None,
                    id = async { rx.lock().await.recv().await } => id,
                };
                let Some(id) = next else { break };
                if run_one(&shared, runner.as_ref(), &id).await {
                    notices.spawn(notify(shared.clone(), id));
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

/// Runs one job; true when it reached an end (done or failed) on disk.
async fn run_one(shared: &Shared, runner: &dyn JobRunner, id: &str) -> bool {
    let Some(job) = shared.queue.job(id) else {
        return false;
    };
    if job.state.finished() {
        return false;
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
            return false;
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
        tracing::error!(job = id, error = %e, "cannot mark the job running; it stays queued");
        return false;
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
            return false;
        }
        Err(error) => {
            tracing::warn!(job = id, %error, "job failed");
            (JobState::Failed, serde_json::json!({ "error": error }))
        }
    };
    if let Err(e) = shared.queue.set_state(id, state, Some(detail)).await {
        // It stays running on disk and runs again after a restart.
        tracing::error!(job = id, error = %e, "cannot record the job's end");
        return false;
    }
    true
}
