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
/// `stop` turns true; a job already running is finished first.
pub async fn run(
    shared: Arc<Shared>,
    runner: Arc<dyn JobRunner>,
    rx: tokio::sync::mpsc::UnboundedReceiver<String>,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..shared.config.server.concurrency.max(1) {
        let (shared, runner, rx, mut stop) =
            (shared.clone(), runner.clone(), rx.clone(), stop.clone());
        workers.spawn(async move {
            loop {
                let next = tokio::select! {
                    _ = stop.wait_for(|s| *s) => None,
                    id = async { rx.lock().await.recv().await } => id,
                };
                let Some(id) = next else { break };
                run_one(&shared, runner.as_ref(), &id).await;
            }
        });
    }
    while workers.join_next().await.is_some() {}
}

async fn run_one(shared: &Shared, runner: &dyn JobRunner, id: &str) {
    let Some(job) = shared.queue.job(id) else {
        return;
    };
    if job.state.finished() {
        return;
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
            return;
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
        return;
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
            return;
        }
        Err(error) => {
            tracing::warn!(job = id, %error, "job failed");
            (JobState::Failed, serde_json::json!({ "error": error }))
        }
    };
    if let Err(e) = shared.queue.set_state(id, state, Some(detail)).await {
        // It stays running on disk and runs again after a restart.
        tracing::error!(job = id, error = %e, "cannot record the job's end");
    }
}
