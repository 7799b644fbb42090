//! [`App`]: what every entry point shares once settings are resolved. The
//! command line builds one from flags, the webhook server hands its own to
//! each job, and tests build one on a temporary home.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, OnceLock};

use crate::aws::AwsOptions;
#[cfg(feature = "aws")]
use crate::aws::{Aws, CredentialsError};
use crate::clock::Clock;
use crate::config::{Config, redact_url};
use crate::evidence::case::AcquireContext;
use crate::ledger::entry::{Actor, Reason};
use crate::ledger::{Ledger, LedgerError, LedgerPaths, Recorder, SharedLedger};
use crate::mirror::{MirrorError, Synced};
use crate::progress::{NoProgress, Progress};
use crate::store::{EvidenceStore, StoreError};

/// Why the context could not give what was asked of it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AppError {
    #[error("cannot open the evidence store {url}")]
    Store {
        url: String,
        #[source]
        source: StoreError,
    },
    #[error("cannot open the ledger at {dir}")]
    OpenLedger {
        dir: PathBuf,
        #[source]
        source: LedgerError,
    },
    #[error("cannot create the ledger at {dir}")]
    CreateLedger {
        dir: PathBuf,
        #[source]
        source: LedgerError,
    },
    #[cfg(feature = "aws")]
    #[error(transparent)]
    Credentials(#[from] CredentialsError),
    #[error("cannot read the ledger's metadata {path}: {message}")]
    Meta { path: PathBuf, message: String },
    #[error("cannot read the ledger's copy in the store")]
    Mirror(#[source] MirrorError),
}

/// Makes the progress display of one piece of work: a bar on a terminal,
/// nothing in the server.
pub type ProgressFactory = Arc<dyn Fn() -> Arc<dyn Progress> + Send + Sync>;

/// The engine's context: settings, clock, cancellation, and the ledger,
/// store and AWS clients, each opened once and shared by every clone.
#[derive(Clone)]
pub struct App {
    pub config: Config,
    pub clock: Arc<dyn Clock>,
    /// Set to stop work at its next frame (Ctrl-C, shutdown).
    pub cancel: Arc<AtomicBool>,
    /// Why the work is done (a ticket, a request), recorded with manual actions.
    pub reason: Option<String>,
    /// Endpoint, region, profile and retries of every AWS client.
    pub aws_options: AwsOptions,
    progress: ProgressFactory,
    ledger: Arc<OnceLock<SharedLedger>>,
    #[cfg(feature = "aws")]
    aws: Arc<tokio::sync::OnceCell<Aws>>,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("config", &self.config)
            .field("reason", &self.reason)
            .field("aws_options", &self.aws_options)
            .finish_non_exhaustive()
    }
}

impl App {
    /// A context with no progress display and the AWS retries of the settings.
    pub fn new(config: Config, clock: Arc<dyn Clock>, cancel: Arc<AtomicBool>) -> Self {
        let aws_options = AwsOptions {
            max_attempts: config.s3.max_attempts,
            ..AwsOptions::default()
        };
        Self {
            config,
            clock,
            cancel,
            reason: None,
            aws_options,
            progress: Arc::new(|| Arc::new(NoProgress)),
            ledger: Arc::new(OnceLock::new()),
            #[cfg(feature = "aws")]
            aws: Arc::new(tokio::sync::OnceCell::new()),
        }
    }

    /// Shows progress with what `factory` makes.
    #[must_use]
    pub fn with_progress(mut self, factory: ProgressFactory) -> Self {
        self.progress = factory;
        self
    }

    pub fn progress(&self) -> Arc<dyn Progress> {
        (self.progress)()
    }

    /// The evidence store of the settings.
    pub async fn store(&self) -> Result<Arc<dyn EvidenceStore>, AppError> {
        let store = crate::store::open(
            &self.config.store,
            &self.aws_options,
            &self.config.s3,
            &self.config.azure,
        )
        .await
        .map_err(|source| AppError::Store {
            url: redact_url(&self.config.store),
            source,
        })?;
        Ok(Arc::from(store))
    }

    /// The AWS client factory, made (and the credentials found) once.
    #[cfg(feature = "aws")]
    pub async fn aws(&self) -> Result<Aws, AppError> {
        let aws = self
            .aws
            .get_or_try_init(|| Aws::new(&self.aws_options))
            .await?;
        Ok(aws.clone())
    }

    pub fn ledger_paths(&self) -> LedgerPaths {
        LedgerPaths::in_home(&self.config.home)
    }

    /// The ledger, opened once; created on first use so the embedded
    /// default works with no set-up step.
    pub fn ledger(&self) -> Result<SharedLedger, AppError> {
        let dir = || self.ledger_paths().dir;
        self.open_ledger().map_err(|(creating, source)| {
            if creating {
                AppError::CreateLedger { dir: dir(), source }
            } else {
                AppError::OpenLedger { dir: dir(), source }
            }
        })
    }

    /// This context with a ledger of its own, opened on first use and
    /// closed (its writer's lock released) when the last clone is dropped:
    /// for a long-running process that records now and then beside other
    /// commands (the workspace on a local store).
    #[must_use]
    pub fn detached(&self) -> Self {
        let mut app = self.clone();
        app.ledger = Arc::new(OnceLock::new());
        app
    }

    /// [`App::ledger`], with whether it was being created when it failed.
    fn open_ledger(&self) -> Result<SharedLedger, (bool, LedgerError)> {
        if let Some(l) = self.ledger.get() {
            return Ok(l.clone());
        }
        let paths = self.ledger_paths();
        let ledger = if paths.exists() {
            Ledger::open(&paths, self.clock.clone()).map_err(|e| (false, e))?
        } else {
            let origin = crate::ledger::default_origin();
            tracing::info!(dir = %paths.dir.display(), %origin, "creating the custody ledger");
            Ledger::init(&paths, &origin, self.clock.clone(), self.actor("operator"))
                .map_err(|e| (true, e))?
        };
        Ok(self
            .ledger
            .get_or_init(|| SharedLedger::new(ledger))
            .clone())
    }

    /// Opens the ledger if need be and asks whether it can record now; a
    /// ledger a failed commit left unusable is reopened (its tail recovered).
    pub fn ledger_ready(&self) -> Result<(), LedgerError> {
        self.open_ledger().map_err(|(_, e)| e)?.ready()
    }

    /// Whether the ledger has been opened by this context (and so may have
    /// something new to mirror).
    pub fn ledger_opened(&self) -> bool {
        self.ledger.get().is_some()
    }

    /// Whether the configured store is a cloud one, which keeps a copy of the ledger.
    pub fn store_is_cloud(&self) -> bool {
        self.config.store.contains("://") && !self.config.store.starts_with("file:")
    }

    /// Reads the ledger's copy in the cloud store back and names every
    /// object that is not byte for byte the local ledger's, and what it lacks.
    /// The ledger is not opened: a damaged one is still compared.
    pub async fn check_mirror(&self) -> Result<Vec<String>, AppError> {
        let store = self.store().await?;
        let paths = self.ledger_paths();
        let meta = std::fs::read(paths.meta())
            .map_err(|e| e.to_string())
            .and_then(|b| {
                serde_json::from_slice::<crate::ledger::Meta>(&b).map_err(|e| e.to_string())
            })
            .map_err(|message| AppError::Meta {
                path: paths.meta(),
                message,
            })?;
        crate::mirror::check(&paths, &meta.origin, store.as_ref())
            .await
            .map_err(AppError::Mirror)
    }

    /// Copies what the store lacks of the committed ledger to the store.
    pub async fn mirror_ledger(&self) -> Result<Synced, AppError> {
        let store = self.store().await?;
        let origin = self.ledger()?.with(|l| l.origin().to_owned());
        crate::mirror::sync(&self.ledger_paths(), &origin, store.as_ref())
            .await
            .map_err(AppError::Mirror)
    }

    /// Who acts, in the role of `role` (`operator`, `webhook`, `scheduler`).
    pub fn actor(&self, role: &str) -> Actor {
        Actor {
            name: self.config.operator.clone(),
            role: role.to_owned(),
            host: crate::machine::hostname(),
            tool: crate::TOOL_NAME.to_owned(),
            tool_version: crate::TOOL_VERSION.to_owned(),
        }
    }

    /// Records actions the operator asked for, with `--reason` as the note.
    pub fn recorder(&self) -> Result<Recorder, AppError> {
        self.recorder_for(
            "operator",
            Reason::Manual {
                operator: self.config.operator.clone(),
                note: self.reason.clone(),
            },
        )
    }

    /// Records actions taken in `role` for `reason` (an alert, a schedule).
    pub fn recorder_for(&self, role: &str, reason: Reason) -> Result<Recorder, AppError> {
        Ok(Recorder {
            ledger: self.ledger()?,
            actor: self.actor(role),
            reason,
        })
    }

    /// Records what a named analyst did in the workspace: the analyst is
    /// the actor (role `analyst`) and the reason.
    pub fn analyst_recorder(&self, analyst: &str) -> Result<Recorder, AppError> {
        let mut actor = self.actor("analyst");
        actor.name = analyst.to_owned();
        Ok(Recorder {
            ledger: self.ledger()?,
            actor,
            reason: Reason::Manual {
                operator: analyst.to_owned(),
                note: None,
            },
        })
    }

    /// What a collector needs, recording with `recorder`.
    pub async fn acquire_context(&self, recorder: Recorder) -> Result<AcquireContext, AppError> {
        Ok(AcquireContext {
            store: self.store().await?,
            clock: self.clock.clone(),
            progress: self.progress(),
            cancel: self.cancel.clone(),
            pipeline: self.config.pipeline.clone(),
            recorder: Some(recorder),
            resume_dir: Some(self.config.home.join("uploads")),
        })
    }
}
