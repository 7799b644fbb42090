//! The Azure checks the Blob service can answer, on the evidence container
//! (`custody readiness run --azure-container URL`); the rest of the Azure
//! catalogue needs Azure Resource Manager and reports SKIPPED with why.

use super::catalogue::{Catalogue, CheckDef, Provider};
use super::{Finding, Status};
use crate::store::azure_blob::AzureBlobStore;

/// Evaluates the Azure checks of `catalogue` (or those in `only`) against
/// `store`, the evidence container, when one is given.
pub async fn evaluate(
    store: Option<&AzureBlobStore>,
    catalogue: &Catalogue,
    only: &[String],
) -> Vec<Finding> {
    let defs: Vec<&CheckDef> = catalogue
        .checks
        .iter()
        .filter(|c| c.provider == Provider::Azure)
        .filter(|c| only.is_empty() || only.iter().any(|o| o == &c.id))
        .collect();
    let account = store.map_or("-", AzureBlobStore::account).to_owned();
    let container = store.map_or("-", AzureBlobStore::container).to_owned();
    let facts = match store {
        Some(s) => Some(s.facts().await.map_err(|e| crate::error_chain(&e))),
        None => None,
    };
    defs.iter()
        .map(|def| {
            let f = |status, evidence: String| {
                Finding::new(&def.id, &account, "-", &container, status, evidence)
            };
            if let Some(why) = &def.not_evaluable_here {
                return f(Status::Skipped, why.clone());
            }
            let facts = match &facts {
                None => return f(Status::Skipped, "no evidence container given (--azure-container)".into()),
                Some(Err(e)) => return f(Status::Error, e.clone()),
                Some(Ok(x)) => x,
            };
            match def.id.as_str() {
                "azure.blob.evidence_private" => match &facts.public_access {
                    None => f(Status::Pass, "no anonymous access".into()),
                    Some(level) => f(Status::Fail, format!("anonymous read access at the {level} level")),
                },
                "azure.blob.evidence_immutable" => match (facts.immutability.as_deref(), facts.emulator) {
                    (_, true) => f(
                        Status::Error,
                        "this emulator endpoint neither reports nor enforces immutability policies or legal holds".into(),
                    ),
                    (None, false) => f(
                        Status::Error,
                        "the service did not report the container's immutability policy or legal hold".into(),
                    ),
                    (Some("none"), false) => f(Status::Fail, "no immutability policy or legal hold".into()),
                    (Some(kind), false) => f(Status::Pass, kind.to_owned()),
                },
                "azure.blob.soft_delete" => {
                    let min = def.param_u64("min_days").unwrap_or(30);
                    match &facts.soft_delete_days {
                        Ok(Some(d)) if u64::from(*d) >= min => f(Status::Pass, format!("soft delete keeps blobs {d} days")),
                        Ok(Some(d)) => f(Status::Fail, format!("soft delete keeps blobs only {d} days (at least {min})")),
                        Ok(None) => f(Status::Fail, "soft delete is off".into()),
                        Err(e) => f(Status::Error, e.clone()),
                    }
                }
                _ => f(
                    Status::Skipped,
                    "this version of custody does not evaluate this check yet".into(),
                ),
            }
        })
        .collect()
}
