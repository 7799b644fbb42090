//! `custody serve`: alerts in, isolation and collection out, nothing lost.
//! [`run`] is the whole server on a listener, with an [`App`] as its
//! context ([`Server::open`] then [`Server::run`]); the command line only
//! loads the configuration, opens the server, binds and prints the address.
//!
//! - [`config`]: the server's configuration file: listener, limits, alert
//!   sources with their adapter and authentication, playbook rules.
//! - [`server`]: the HTTP side: alert intake, job and case views, health
//!   and metrics.
//! - [`auth`]: HMAC signatures with a replay window, or bearer tokens.
//! - [`conn`]: connection limits and deadlines, so unauthenticated
//!   connections cannot crowd out alerts.
//! - [`crate::queue`]: the durable, de-duplicating job queue alerts are written to
//!   before they are acknowledged.
//! - [`playbook`]: which action an alert gets; the first matching rule decides.
//! - [`worker`]: a bounded number of jobs at once, each carried out by a
//!   [`worker::JobRunner`] with its state in the queue before and after.
//! - [`runner`]: the job runner: alerts and rules into the engine's requests.
//! - [`notify`]: signed webhook POSTs when a job finishes or fails.
//! - [`schedule`]: readiness audits on cron schedules, notified on regression.

pub mod auth;
pub mod config;
pub mod conn;
pub mod notify;
pub mod playbook;
pub mod runner;
pub mod schedule;
pub mod server;
pub mod worker;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::engine::App;
use crate::queue::{self, Queue};
use config::ServeConfig;
use server::{Metrics, Readiness, Shared};

/// Why the server could not start or stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    #[error(transparent)]
    App(#[from] crate::engine::AppError),
    #[error("cannot open the job queue")]
    Queue(#[from] queue::QueueError),
    #[error("cannot set up notifications")]
    Notify(#[source] notify::NotifyError),
    #[error("cannot read the listening address")]
    Address(#[source] std::io::Error),
    #[error("the server stopped")]
    Stopped(#[source] std::io::Error),
    #[error("cannot set up the workspace")]
    Ui(#[source] crate::ui::UiError),
}

/// Serves `config` on `listener` until `shutdown` completes, then lets the
/// running jobs finish: [`Server::open`], then [`Server::run`].
pub async fn run(
    app: App,
    config: ServeConfig,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    Server::open(app, config)?.run(listener, shutdown).await
}

/// A server whose ledger and queue are open: what can fail before an alert
/// is taken has been tried.
pub struct Server {
    app: App,
    config: ServeConfig,
    queue: Queue,
}

impl Server {
    /// Opens the ledger and the job queue. A server that cannot record must
    /// not accept alerts, so whoever starts it learns that before it listens.
    pub fn open(app: App, config: ServeConfig) -> Result<Self, ServeError> {
        app.ledger()?;
        let queue = Queue::open(
            &Queue::path_in(&app.config.home),
            app.clock.clone(),
            time::Duration::hours(i64::try_from(config.server.case_window_hours).unwrap_or(24)),
        )?;
        Ok(Self { app, config, queue })
    }

    /// Serves on `listener` until `shutdown` completes. Jobs a crash or a
    /// shutdown left unfinished run (again) first.
    pub async fn run(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServeError> {
        let Self { app, config, queue } = self;
        let addr = listener.local_addr().map_err(ServeError::Address)?;
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let unfinished = queue.unfinished();
        for j in &unfinished {
            let _ = tx.send(j.id.clone());
        }
        let runner = Arc::new(runner::AppRunner {
            app: app.clone(),
            dry_run: config.server.dry_run,
            staging: config.server.staging.clone(),
        });
        let audits = config.audits.clone();
        let ui = config
            .ui
            .as_ref()
            .map(|c| crate::ui::Ui::new(app.clone(), c))
            .transpose()
            .map_err(ServeError::Ui)?;
        let shared = Arc::new(Shared {
            config,
            queue,
            metrics: Metrics::default(),
            notifier: notify::Notifier::new(&notify::DEFAULT_BACKOFF)
                .map_err(ServeError::Notify)?,
            clock: app.clock.clone(),
            jobs: tx,
            draining: AtomicBool::new(false),
            cancel: app.cancel.clone(),
            recording: Readiness::new(Arc::new(runner::LedgerRecording(app.clone()))),
            ui,
        });
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let compaction = tokio::spawn(compact(shared.clone(), stop_rx.clone()));
        let workers = tokio::spawn(worker::run(shared.clone(), runner, rx, stop_rx.clone()));
        let schedules = tokio::spawn(schedule::run(
            audits,
            app.clock.clone(),
            Arc::new(schedule::TokioTimer),
            Arc::new(runner::AppAudits(app.clone())),
            shared.notifier.clone(),
            stop_rx,
        ));
        tracing::info!(%addr, resumed = unfinished.len(), "listening");
        let draining = shared.clone();
        let served = server::serve(listener, shared.clone(), async move {
            shutdown.await;
            tracing::info!("shutting down: no new alerts; running jobs finish");
            draining.draining.store(true, Ordering::SeqCst);
        })
        .await;
        let _ = stop_tx.send(true);
        let _ = workers.await;
        let _ = schedules.await;
        let _ = compaction.await;
        served.map_err(ServeError::Stopped)
    }
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
