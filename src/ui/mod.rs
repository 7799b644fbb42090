//! The analysts' workspace: cases, a case's overview, its timeline
//! explored with facets and a histogram, each event with its provenance,
//! and stars, tags and comments that are signed ledger entries naming the
//! analyst. Server-rendered HTML from axum with one small script of our
//! own; every value escaped, no inline script (the Content-Security-Policy
//! forbids it), nothing fetched from elsewhere.
//!
//! - [`auth`]: analysts, sessions, CSRF tokens, roles.
//! - [`pages`]: the HTML of each page.
//! - [`handlers`]: the routes, reading through the engine and recording
//!   analysts' actions in the ledger.
//! - [`evidence`]: the evidence page, ledger entries and their proofs, the
//!   case bundle, and verification on demand; [`evidence_pages`] their HTML.
//! - `download`: an artefact's bytes streamed to the browser, checked
//!   against both digests on the way out.
//! - [`ledger_view`]: what the ledger says of a case (checkpoint, entries,
//!   each artefact's verification state), read without opening it.
//! - [`operations`]: the webhook server's jobs and the readiness audits;
//!   [`operations_pages`] their HTML.
//! - [`oidc`]: sign-in through an OpenID Connect identity provider.

pub mod auth;
mod download;
pub mod evidence;
pub mod evidence_pages;
pub mod handlers;
pub mod ledger_view;
pub mod oidc;
pub mod operations;
pub mod operations_pages;
pub mod pages;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::engine::App;
use auth::{Access, AnalystConf, AnalystError};

/// The `[ui]` table of a configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UiConfig {
    /// Who may sign in; none: loopback only, as the operator.
    #[serde(default)]
    pub analysts: Vec<AnalystConf>,
    /// Hours a session lasts.
    #[serde(default = "default_session_hours")]
    pub session_hours: u64,
    /// Artefacts up to this many MiB are read whole and checked against
    /// both digests before their first byte is sent (a mismatch is an
    /// error page). Larger ones stream, checked on the way out: a mismatch
    /// cuts the transfer short, so the client never holds a complete copy
    /// of altered bytes, and no ledger entry is written.
    #[serde(default = "default_check_first_mib")]
    pub check_first_mib: u64,
    /// Sign-in through an OpenID Connect provider, beside passwords.
    #[serde(default)]
    pub oidc: Option<oidc::OidcConfig>,
}

fn default_session_hours() -> u64 {
    12
}

fn default_check_first_mib() -> u64 {
    64
}

impl Default for UiConfig {
    fn default() -> Self {
        Self {
            analysts: Vec::new(),
            session_hours: default_session_hours(),
            check_first_mib: default_check_first_mib(),
            oidc: None,
        }
    }
}

/// A file holding only a `[ui]` table (for `custody ui --config`).
#[derive(Debug, Deserialize)]
struct UiFile {
    #[serde(default)]
    ui: UiConfig,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UiError {
    #[error("cannot read {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a valid configuration")]
    Parse {
        path: String,
        #[source]
        source: toml::de::Error,
    },
    #[error(transparent)]
    Analyst(#[from] AnalystError),
    #[error(
        "no analyst is configured, so the workspace listens on loopback only; {0} is not a loopback address (configure [[ui.analysts]] to serve others)"
    )]
    NotLoopback(SocketAddr),
    #[error("session_hours must be between 1 and 720")]
    SessionHours,
    #[error(
        "analyst {0:?} signs in through OpenID Connect (oidc_subject or oidc_email) but there is no [ui.oidc] provider"
    )]
    NoProvider(String),
    #[error(transparent)]
    Oidc(#[from] oidc::OidcError),
}

impl UiConfig {
    pub fn load(path: &Path) -> Result<Self, UiError> {
        let text = std::fs::read_to_string(path).map_err(|source| UiError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let file: UiFile = toml::from_str(&text).map_err(|source| UiError::Parse {
            path: path.display().to_string(),
            source,
        })?;
        file.ui.check()?;
        Ok(file.ui)
    }

    pub fn check(&self) -> Result<(), UiError> {
        auth::check_analysts(&self.analysts)?;
        if !(1..=720).contains(&self.session_hours) {
            return Err(UiError::SessionHours);
        }
        match &self.oidc {
            Some(o) => oidc::check(o, &self.analysts)?,
            None => {
                // Someone configured to sign in only through a provider
                // that is not there could never get in: say so at start.
                if let Some(a) = self.analysts.iter().find(|a| {
                    (a.oidc_subject.is_some() || a.oidc_email.is_some())
                        && a.password_hash.is_none()
                        && a.token_sha256.is_none()
                }) {
                    return Err(UiError::NoProvider(a.name.clone()));
                }
            }
        }
        Ok(())
    }

    /// Refuses a non-loopback address when nobody can sign in.
    pub fn check_bind(&self, addr: SocketAddr) -> Result<(), UiError> {
        if self.analysts.is_empty() && !addr.ip().is_loopback() {
            return Err(UiError::NotLoopback(addr));
        }
        Ok(())
    }
}

/// What every handler shares.
#[derive(Debug)]
pub struct Ui {
    pub app: App,
    pub access: Access,
    /// Whether the ledger is opened for each action and closed after it
    /// (`custody ui`, beside other commands), rather than held (the server).
    per_action: bool,
    /// One action's ledger at a time, when opened per action.
    recording: std::sync::Mutex<()>,
    /// Bytes up to which a download is checked whole before it is sent.
    pub check_first: u64,
    /// The identity provider, when `[ui.oidc]` names one.
    pub oidc: Option<oidc::Oidc>,
}

impl Ui {
    /// The workspace of a server, which holds the ledger open.
    pub fn new(app: App, config: &UiConfig) -> Result<Arc<Self>, UiError> {
        Self::build(app, config, false)
    }

    /// The workspace on its own (`custody ui`): the ledger is opened for
    /// each action and closed after it, so other commands can write it.
    pub fn standalone(app: App, config: &UiConfig) -> Result<Arc<Self>, UiError> {
        Self::build(app, config, true)
    }

    fn build(app: App, config: &UiConfig, per_action: bool) -> Result<Arc<Self>, UiError> {
        let operator = app.config.operator.clone();
        let oidc = config.oidc.clone().map(oidc::Oidc::new).transpose()?;
        Ok(Arc::new(Self {
            app,
            access: Access::new(
                config.analysts.clone(),
                &operator,
                Duration::from_secs(config.session_hours.saturating_mul(3600)),
            ),
            per_action,
            recording: std::sync::Mutex::new(()),
            check_first: config.check_first_mib.saturating_mul(1 << 20),
            oidc,
        }))
    }

    /// Records one analyst's action in the ledger; blocking.
    pub fn record(
        &self,
        analyst: &str,
        case: &crate::ids::CaseId,
        action: crate::ledger::entry::Action,
        evidence: Option<crate::ledger::entry::EvidenceRef>,
        detail: serde_json::Value,
    ) -> Result<u64, String> {
        self.with_recorder(analyst, |_, recorder| {
            let receipt = recorder
                .record(Some(case), action, evidence, None, Some(detail))
                .map_err(|e| error_chain(&e))?;
            Ok(receipt.indexes.first().copied().unwrap_or(0))
        })
    }

    /// Runs `f` with a recorder naming `analyst` (and the app it came
    /// from); blocking. In `custody ui` the ledger is opened for `f` alone
    /// and closed after, one action at a time.
    pub fn with_recorder<T>(
        &self,
        analyst: &str,
        f: impl FnOnce(&App, &crate::ledger::Recorder) -> Result<T, String>,
    ) -> Result<T, String> {
        let _one = if self.per_action {
            Some(
                self.recording
                    .lock()
                    .map_err(|_| "the ledger's lock was poisoned".to_owned())?,
            )
        } else {
            None
        };
        let app = if self.per_action {
            self.app.detached()
        } else {
            self.app.clone()
        };
        let recorder = app.analyst_recorder(analyst).map_err(|e| error_chain(&e))?;
        f(&app, &recorder)
    }
}

/// An error and its causes, in one line, for a page or a log.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// The workspace's routes.
pub fn router(ui: Arc<Ui>) -> axum::Router {
    handlers::routes()
        .merge(oidc::routes())
        .merge(evidence::routes())
        .merge(operations::routes())
        .layer(axum::middleware::from_fn(handlers::security_headers))
        .with_state(ui)
}

/// Serves the workspace on `listener` until `shutdown` completes.
pub async fn serve(
    ui: Arc<Ui>,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(ui))
        .with_graceful_shutdown(shutdown)
        .await
}
