//! The one engine behind every entry point. The command line builds typed
//! requests from its flags, the webhook server from alerts and playbook
//! rules; both validate them into plans (pure, in [`request`]) and act
//! through the same functions, with an [`App`] as their context. Nothing
//! here knows of flags, HTTP or terminals.
//!
//! | module | role |
//! |---|---|
//! | [`app`] | [`App`]: settings, clock, cancellation, ledger, store and AWS clients |
//! | [`bundle`] | a case's bundle of ledger entries, proofs, checkpoint, keys and manifests, for offline verification |
//! | [`request`] | typed requests and their validation into plans |
//! | [`acquire`] | collectors from requests, and acquisitions into a case |
//! | [`detect`] | Sigma rules and indicator lists over a case's timeline, the detections stored beside its events (feature `timeline`) |
//! | [`logs`] | logs into a case and its timeline: exported files, and the AWS sources (feature `timeline`) |
//! | [`process`] | disk images of a case, read in place, into derived artefacts and its timeline (feature `timeline`) |
//! | [`record`] | one event's original record read again from the store, both digests checked (feature `timeline`) |
//! | [`search`] | a case's timeline searched: rows, total, facets, histogram, for the command line and the workspace (feature `timeline`) |
//! | [`trail`] | CloudTrail's integrity chain (digest signatures, links, log file hashes) checked on a case's trail bundles, the report stored as a derived artefact (feature `timeline`) |
//! | [`response`] | respond, isolate and release on an EC2 instance (feature `aws`) |
//! | [`verify`] | a case verified (artefacts, derived artefacts, ledger entries) and the outcome recorded |
//! | [`workload`] | isolate and release a Lambda function or an ECS task (feature `aws`) |

pub mod acquire;
pub mod app;
pub mod bundle;
#[cfg(feature = "timeline")]
pub mod detect;
#[cfg(feature = "timeline")]
pub mod logs;
#[cfg(feature = "timeline")]
pub mod process;
#[cfg(feature = "timeline")]
pub mod record;
pub mod request;
#[cfg(feature = "aws")]
pub mod response;
#[cfg(feature = "timeline")]
pub mod search;
#[cfg(feature = "timeline")]
pub mod trail;
pub mod verify;
#[cfg(feature = "aws")]
pub mod workload;

pub use app::{App, AppError};

use crate::collect::CollectError;
use crate::ids::CaseId;
use crate::ledger::LedgerError;
#[cfg(feature = "aws")]
use crate::respond::{isolate::IsolateError, order::RespondError};

/// Why the engine could not carry out a request.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    #[error(transparent)]
    App(#[from] AppError),
    #[error("the request is refused: {0}")]
    Plan(#[from] request::PlanError),
    #[cfg(feature = "aws")]
    #[error("cannot {doing} {instance}")]
    Instance {
        doing: &'static str,
        instance: String,
        #[source]
        source: IsolateError,
    },
    #[cfg(feature = "aws")]
    #[error(transparent)]
    Isolate(#[from] IsolateError),
    #[cfg(feature = "aws")]
    #[error(transparent)]
    Respond(#[from] RespondError),
    #[error("cannot record in the ledger")]
    Ledger(#[from] LedgerError),
    #[cfg(feature = "timeline")]
    #[error(transparent)]
    Process(#[from] process::ProcessError),
    #[error("{what} into case {case} failed")]
    Collect {
        what: String,
        case: CaseId,
        #[source]
        source: Box<CollectError>,
    },
    #[cfg(feature = "aws")]
    #[error(transparent)]
    Api(#[from] crate::aws::ApiError),
    /// A workload that cannot be acted on as asked (a task not found, stopped).
    #[error("{0}")]
    Workload(String),
    #[error("ledger entry {index} does not hold a readable prior state")]
    PriorUnreadable {
        index: u64,
        #[source]
        source: serde_json::Error,
    },
}

impl EngineError {
    /// Whether the ledger could not record: the work is to be tried again
    /// once it can, not reported as failed.
    pub fn unrecorded(&self) -> bool {
        unrecorded(self)
    }
}

/// Whether `e` or one of its causes is a ledger commit that failed.
pub fn unrecorded(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(c) = cur {
        if c.downcast_ref::<LedgerError>()
            .is_some_and(LedgerError::is_commit_failure)
        {
            return true;
        }
        cur = c.source();
    }
    false
}

/// The last prior state recorded (`state_recorded`) for `resource`: the
/// entry's index, the entry, and the state as `T`. Release restores from it.
#[cfg(feature = "aws")]
pub(crate) fn last_prior<T: serde::de::DeserializeOwned>(
    rec: &crate::ledger::Recorder,
    resource: &str,
) -> Result<(u64, crate::ledger::entry::Entry, T), EngineError> {
    let none = || crate::respond::isolate::IsolateError::NoPriorState(resource.to_owned());
    let (index, entry) = rec
        .resource_entries(crate::ledger::entry::Action::StateRecorded, resource)?
        .pop()
        .ok_or_else(none)?;
    let prior: T = entry
        .detail
        .as_ref()
        .and_then(|d| d.get("prior"))
        .cloned()
        .map(serde_json::from_value)
        .transpose()
        .map_err(|source| EngineError::PriorUnreadable { index, source })?
        .ok_or_else(none)?;
    Ok((index, entry, prior))
}
