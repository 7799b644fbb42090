//! A case verified: every artefact read again from the store and both its
//! digests compared, derived artefacts read again from their parents, the
//! case's ledger entries checked against the signed log and the store, and
//! the outcome recorded in the ledger (`verified`) under the recorder's
//! actor: the operator for `custody verify`, the analyst in the workspace.

use crate::evidence::case::{self, CaseVerification, EvidenceError};
use crate::ids::CaseId;
use crate::ledger::entry::{Action, Entry};
use crate::ledger::merkle::{leaf_hash, verify_inclusion};
use crate::ledger::{LedgerError, Recorder};

use super::app::{App, AppError};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    #[error(transparent)]
    App(#[from] AppError),
    #[error("cannot read the ledger")]
    Ledger(#[source] LedgerError),
    #[error("cannot verify case {case}")]
    Case {
        case: CaseId,
        #[source]
        source: EvidenceError,
    },
    #[error("cannot record the verification in the ledger")]
    Record(#[source] LedgerError),
}

/// A verification and the ledger entry that records it.
#[derive(Debug, Clone)]
pub struct Verified {
    pub verification: CaseVerification,
    pub index: u64,
}

/// Verifies `case` and records the outcome through `recorder`.
pub async fn verify_case(
    app: &App,
    recorder: &Recorder,
    case: &CaseId,
) -> Result<Verified, VerifyError> {
    let store = app.store().await?;
    let entries = recorder.case_entries(case).map_err(VerifyError::Ledger)?;
    // Each of the case's entries must be in the signed log, byte for byte.
    let mut ledger_problems: Vec<String> = recorder.ledger.with(|l| {
        let cp = l.latest_checkpoint().clone();
        entries
            .iter()
            .filter(|(i, bytes, _)| {
                !l.tree().inclusion_proof(*i, cp.size).is_ok_and(|p| {
                    verify_inclusion(*i, cp.size, &leaf_hash(bytes), &p, &cp.root).is_ok()
                })
            })
            .map(|(i, _, _)| format!("ledger entry {i} is not in the signed log as stored"))
            .collect()
    });
    let mut v = match case::verify_case(store.as_ref(), case).await {
        Ok(v) => v,
        // A case the ledger knows but the store has lost entirely fails verification; it is not a typo.
        Err(EvidenceError::NoSuchCase { .. }) if !entries.is_empty() => CaseVerification {
            case: case.clone(),
            location: store.location(),
            checks: Vec::new(),
            unrecorded: Vec::new(),
            ledger_problems: Vec::new(),
        },
        Err(source) => {
            return Err(VerifyError::Case {
                case: case.clone(),
                source,
            });
        }
    };
    let artefacts = case::artefacts(store.as_ref(), case)
        .await
        .unwrap_or_default();
    // Derived artefacts are read again from their parent by extents.
    for c in &mut v.checks {
        if let Some(a) = artefacts
            .iter()
            .find(|a| a.id == c.artefact && a.derived.is_some())
        {
            let found = crate::process::derived::recheck(store.clone(), &artefacts, a).await;
            if !found.is_empty() {
                c.ok = false;
                c.problems
                    .extend(found.into_iter().map(|p| format!("derived: {p}")));
            }
        }
    }
    let plain: Vec<(u64, Entry)> = entries.iter().map(|(i, _, e)| (*i, e.clone())).collect();
    ledger_problems.extend(case::compare_with_ledger(&artefacts, &plain));
    v.ledger_problems.extend(ledger_problems);
    let failed: Vec<String> = v
        .checks
        .iter()
        .filter(|c| !c.ok)
        .map(|c| c.artefact.to_string())
        .collect();
    let detail = serde_json::json!({
        "ok": v.ok(),
        "artefacts": v.checks.len(),
        "failed": failed.len(),
        "failed_artefacts": failed,
        "ledger_problems": v.ledger_problems.len(),
    });
    let receipt = recorder
        .record(Some(case), Action::Verified, None, None, Some(detail))
        .map_err(VerifyError::Record)?;
    Ok(Verified {
        verification: v,
        index: receipt.indexes.first().copied().unwrap_or(0),
    })
}
