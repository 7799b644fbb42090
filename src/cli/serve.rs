//! `custody serve`: the alert webhook server (see [`crate::serve`]).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
use async_trait::async_trait;

use super::{Env, Outcome};
use crate::alert::Alert;
use crate::collect::Collector as _;
use crate::ids::CaseId;
use crate::ledger::Recorder;
use crate::ledger::entry::{Action as LedgerAction, Reason};
use crate::respond::order;
use crate::serve::config::ServeConfig;
use crate::serve::playbook::{Action, Rule};
use crate::serve::queue::{Job, Queue};
use crate::serve::server::{Metrics, Readiness, Recording, Shared};
use crate::serve::worker::{JobError, JobRunner};

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// The server's configuration: address, limits, sources, playbook rules.
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// Record what each alert would do, and change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

pub async fn run(env: &Env, args: ServeArgs) -> anyhow::Result<Outcome> {
    let config = ServeConfig::load(&args.config)?;
    // Open the ledger now: a server that cannot record must not accept alerts.
    let ledger = env.ledger()?;
    let queue = Queue::open(
        &env.config.home.join("serve").join("queue.jsonl"),
        env.clock.clone(),
        time::Duration::hours(i64::try_from(config.server.case_window_hours).unwrap_or(24)),
    )?;
    let listener = tokio::net::TcpListener::bind(config.server.bind)
        .await
        .with_context(|| format!("cannot listen on {}", config.server.bind))?;
    let addr = listener
        .local_addr()
        .context("cannot read the listening address")?;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    // Jobs a crash or a shutdown left unfinished run (again) first.
    let unfinished = queue.unfinished();
    for j in &unfinished {
        let _ = tx.send(j.id.clone());
    }
    let staging = config.server.staging.clone();
    let audits = config.audits.clone();
    let shared = Arc::new(Shared {
        config,
        queue,
        metrics: Metrics::default(),
        notifier: crate::serve::notify::Notifier::new(&crate::serve::notify::DEFAULT_BACKOFF)?,
        clock: env.clock.clone(),
        jobs: tx,
        draining: AtomicBool::new(false),
        cancel: env.cancel.clone(),
        recording: Readiness::new(Arc::new(LedgerRecording(ledger))),
    });
    let runner = Arc::new(EnvRunner {
        env: env.clone(),
        dry_run: args.dry_run,
        staging,
    });
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let compaction = tokio::spawn(compact(shared.clone(), stop_rx.clone()));
    let workers = tokio::spawn(crate::serve::worker::run(
        shared.clone(),
        runner,
        rx,
        stop_rx.clone(),
    ));
    let schedules = tokio::spawn(crate::serve::schedule::run(
        audits,
        env.clock.clone(),
        Arc::new(crate::serve::schedule::TokioTimer),
        Arc::new(EnvAudits { env: env.clone() }),
        shared.notifier.clone(),
        stop_rx.clone(),
    ));
    tracing::info!(%addr, resumed = unfinished.len(), "listening");
    // The address on stdout, for whoever started the server (port 0 picks one).
    super::write_stdout(
        format!("{}\n", serde_json::json!({ "listening": addr.to_string() })).as_bytes(),
    )?;
    let draining = shared.clone();
    crate::serve::server::serve(listener, shared.clone(), async move {
        terminated().await;
        tracing::info!("shutting down: no new alerts; running jobs finish");
        draining.draining.store(true, Ordering::SeqCst);
    })
    .await
    .context("the server stopped")?;
    let _ = stop_tx.send(true);
    let _ = workers.await;
    let _ = schedules.await;
    let _ = compaction.await;
    Ok(Outcome::Ok)
}

/// 1 hour: finished jobs are kept for days; an hour late costs nothing.
const COMPACT_EVERY: std::time::Duration = std::time::Duration::from_secs(3600);

/// Drops finished jobs past `retain_finished_hours` now and every
/// [`COMPACT_EVERY`], until `stop`.
async fn compact(shared: Arc<Shared>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let hours = shared.config.server.retain_finished_hours;
    if hours == 0 {
        return;
    }
    let age = time::Duration::hours(i64::try_from(hours).unwrap_or(i64::MAX / 3600));
    loop {
        if let Err(e) = shared.queue.compact(age).await {
            tracing::warn!(error = %e, "cannot compact the queue; it is tried again later");
        }
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            () = tokio::time::sleep(COMPACT_EVERY) => {}
        }
    }
}

/// The ledger's readiness, as the server asks for it.
struct LedgerRecording(crate::ledger::SharedLedger);

impl Recording for LedgerRecording {
    fn ready(&self) -> Result<(), String> {
        self.0.ready().map_err(|e| crate::error_chain(&e))
    }
}

/// The ledger could not write: the job is to run again, not fail.
fn unrecorded(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<crate::ledger::LedgerError>()
            .is_some_and(crate::ledger::LedgerError::is_commit_failure)
    })
}

/// SIGTERM (or Ctrl-C, which the binary also turns into a cancel).
async fn terminated() {
    #[cfg(unix)]
    {
        if let Ok(mut term) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// Runs scheduled readiness audits as `custody readiness run` does.
struct EnvAudits {
    env: Env,
}

#[async_trait]
impl crate::serve::schedule::AuditRunner for EnvAudits {
    async fn run(
        &self,
        opts: &crate::readiness::audit::AuditOptions,
    ) -> Result<crate::readiness::audit::Audited, String> {
        crate::readiness::audit::run(
            opts,
            self.env.endpoint_url.as_deref(),
            self.env.clock.as_ref(),
            &crate::readiness::history::History::path_in(&self.env.config.home),
        )
        .await
        .map_err(|e| crate::error_chain(&e))
    }
}

/// Carries out jobs with the same code the commands use, recording every
/// step with the alert as its reason.
struct EnvRunner {
    env: Env,
    dry_run: bool,
    staging: Option<String>,
}

#[async_trait]
impl JobRunner for EnvRunner {
    async fn run(
        &self,
        job: &Job,
        alert: &Alert,
        rule: Option<&Rule>,
    ) -> Result<serde_json::Value, JobError> {
        // A ledger a failed commit left unusable is reopened (its tail
        // recovered) before anything is looked up in it; while that fails,
        // for whatever reason, the job waits rather than fails.
        let ready = self
            .env
            .ledger()
            .and_then(|l| l.ready().map_err(anyhow::Error::from));
        if let Err(e) = ready {
            return Err(JobError::Unrecorded(crate::error_chain(e.as_ref())));
        }
        self.run_job(job, alert, rule).await.map_err(|e| {
            let why = crate::error_chain(e.as_ref());
            if unrecorded(&e) {
                JobError::Unrecorded(why)
            } else {
                JobError::Failed(why)
            }
        })
    }
}

impl EnvRunner {
    fn recorder(&self, job: &Job, alert: &Alert) -> anyhow::Result<Recorder> {
        let mut actor = self.env.actor();
        actor.role = "webhook".to_owned();
        Ok(Recorder {
            ledger: self.env.ledger()?,
            actor,
            reason: Reason::Alert {
                source: job.source.clone(),
                id: alert.id.clone(),
            },
        })
    }

    async fn run_job(
        &self,
        job: &Job,
        alert: &Alert,
        rule: Option<&Rule>,
    ) -> anyhow::Result<serde_json::Value> {
        let rec = self.recorder(job, alert)?;
        let action = rule.map_or(Action::Record, |r| r.action);
        let dry_run = self.dry_run || rule.is_some_and(|r| r.dry_run);
        let instances = &alert.entities.instances;
        // A job that had started before (cut off by a crash, or put back
        // because the ledger could not record) may have recorded its alert.
        // Only then is the ledger searched.
        let resumed = job
            .steps
            .iter()
            .any(|s| s.get("state").and_then(|v| v.as_str()) == Some("running"));
        let seen = resumed
            && rec.case_entries(&job.case)?.into_iter().any(|(_, _, e)| {
                e.action == LedgerAction::AlertReceived
                    && e.detail
                        .as_ref()
                        .and_then(|d| d.get("job"))
                        .and_then(|j| j.as_str())
                        == Some(job.id.as_str())
            });
        if !seen {
            rec.record(
                Some(&job.case),
                LedgerAction::AlertReceived,
                None,
                None,
                Some(serde_json::json!({
                    "job": job.id,
                    "title": alert.title,
                    "finding_type": alert.finding_type,
                    "severity": alert.severity,
                    "entities": alert.entities,
                    "rule": rule.map(|r| r.name.clone()),
                    "action": action.as_str(),
                    "dry_run": dry_run,
                })),
            )?;
        }
        let mut detail = serde_json::Map::new();
        detail.insert("action".into(), action.as_str().into());
        detail.insert("dry_run".into(), dry_run.into());
        detail.insert("instances".into(), serde_json::json!(instances));
        if action == Action::Record || dry_run {
            return Ok(detail.into());
        }
        if instances.is_empty() {
            detail.insert(
                "note".into(),
                "the alert names no instance to act on: recorded only".into(),
            );
            return Ok(detail.into());
        }
        let mut ctx = self.env.acquire_context().await?;
        ctx.recorder = Some(rec.clone());
        let mut results = Vec::new();
        let mut failures = Vec::new();
        let mut bytes = 0u64;
        for instance in instances {
            let r = self
                .act(&rec, &ctx, &job.case, instance, action, rule)
                .await;
            match r {
                Ok((summary, b)) => {
                    bytes += b;
                    results.push(summary);
                }
                // The ledger could not record: the whole job runs again.
                Err(e) if unrecorded(&e) => return Err(e),
                Err(e) => {
                    let why = crate::error_chain(e.as_ref());
                    rec.record(
                        Some(&job.case),
                        LedgerAction::Failed,
                        None,
                        Some(crate::evidence::Source {
                            resource: instance.clone(),
                            ..Default::default()
                        }),
                        Some(serde_json::json!({ "job": job.id, "action": action.as_str(), "error": why })),
                    )?;
                    failures.push(format!("{instance}: {why}"));
                }
            }
        }
        detail.insert("results".into(), serde_json::Value::Array(results));
        detail.insert("bytes".into(), bytes.into());
        if failures.is_empty() {
            Ok(detail.into())
        } else {
            anyhow::bail!("{}", failures.join("; "))
        }
    }

    /// One action on one instance; returns its summary and the raw bytes acquired.
    async fn act(
        &self,
        rec: &Recorder,
        ctx: &crate::evidence::case::AcquireContext,
        case: &CaseId,
        instance: &str,
        action: Action,
        rule: Option<&Rule>,
    ) -> anyhow::Result<(serde_json::Value, u64)> {
        let args = super::respond::RespondArgs {
            instance: instance.to_owned(),
            case: Some(case.clone()),
            revoke_role: rule.is_some_and(|r| r.revoke_role),
            dry_run: false,
            no_memory: action != Action::Respond || rule.is_some_and(|r| !r.memory),
            memory: super::acquire::MemoryOptions {
                staging: self.staging.clone(),
                avml: None,
                avml_sha256: None,
            },
            memory_timeout: crate::collect::memory::DEFAULT_TIMEOUT.as_secs(),
            window: crate::collect::ebs::DEFAULT_WINDOW as u16,
            snapshot_timeout: 3600,
            then: None,
        };
        let mut p = super::respond::prepare(&self.env, &args, case).await?;
        if action == Action::Respond
            && let Some(r) = rule.filter(|r| !r.memory)
        {
            p.memory = Err(format!(
                "left out by playbook rule {} (memory = false)",
                r.name
            ));
        }
        match action {
            Action::AcquireDisk => {
                let collected = p.disk.collect(ctx, case).await?;
                let bytes = collected.artefacts.iter().map(|a| a.raw.size).sum();
                let ids: Vec<String> = collected
                    .artefacts
                    .iter()
                    .map(|a| a.id.to_string())
                    .collect();
                if !collected.failures.is_empty() {
                    anyhow::bail!("{}", collected.failures.join("; "));
                }
                Ok((
                    serde_json::json!({ "instance": instance, "artefacts": ids }),
                    bytes,
                ))
            }
            Action::Respond | Action::Isolate => {
                // Resumed after a crash: the state recorded first is the prior one.
                let recorded = rec
                    .resource_entries(LedgerAction::StateRecorded, instance)?
                    .into_iter()
                    .filter(|(_, e)| e.case.as_ref() == Some(case))
                    .find_map(|(_, e)| {
                        e.detail
                            .and_then(|d| d.get("prior").cloned())
                            .and_then(|v| serde_json::from_value(v).ok())
                    });
                let prior_recorded = recorded.is_some();
                let prior = recorded.unwrap_or(p.prior);
                let (protect, network) = if prior_recorded {
                    let steps = crate::respond::isolate::plan(
                        &p.clients,
                        &prior,
                        &crate::respond::isolate::Options {
                            case: case.to_string(),
                            revoke_role: args.revoke_role,
                        },
                    )
                    .await?;
                    order::split(steps)
                } else {
                    (p.protect, p.network)
                };
                let responder = order::Responder {
                    clients: &p.clients,
                    recorder: rec,
                    ctx,
                    memory: p.memory.as_ref().map_err(Clone::clone),
                    disk: &p.disk,
                    region: p.region.clone(),
                    prior_recorded,
                };
                let skip_disk = action == Action::Isolate;
                let report = if skip_disk {
                    responder
                        .isolate_only(instance, case, &prior, &protect, &network)
                        .await?
                } else {
                    responder
                        .run(instance, case, &prior, &protect, &network, None)
                        .await?
                };
                let bytes = report.artefacts.iter().map(|a| a.raw.size).sum();
                let incomplete: Vec<String> = report
                    .phases
                    .iter()
                    .filter(|ph| ph.incomplete() && !(args.no_memory && ph.phase == "memory"))
                    .map(|ph| format!("{} {}", ph.phase, ph.status))
                    .collect();
                let summary = serde_json::json!({
                    "instance": instance,
                    "phases": report.phases,
                    "artefacts": report.artefacts.iter().map(|a| a.id.to_string()).collect::<Vec<_>>(),
                    "not_holding": report.not_holding,
                });
                if !incomplete.is_empty() || !report.not_holding.is_empty() {
                    anyhow::bail!(
                        "the response on {instance} is incomplete ({})",
                        incomplete.join(", ")
                    );
                }
                Ok((summary, bytes))
            }
            Action::Record => Ok((serde_json::json!({ "instance": instance }), 0)),
        }
    }
}
