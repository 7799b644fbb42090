//! The Azure checks the Blob service can answer, on the evidence container
//! (`custody readiness run --azure-container URL`): each judges the
//! container's facts, read once per run by the engine. The rest of the
//! Azure catalogue needs Azure Resource Manager, is declared
//! `not_evaluable_here`, and reports SKIPPED with why.

use super::Status;
use super::catalogue::CheckDef;
use crate::store::azure_blob::ContainerFacts;

/// An Azure check's evaluation: its verdict on the container, with the evidence.
pub(crate) type AzureCheck = fn(&ContainerFacts, &CheckDef) -> (Status, String);

/// `azure.blob.evidence_private`
pub(crate) fn evidence_private(facts: &ContainerFacts, _: &CheckDef) -> (Status, String) {
    match &facts.public_access {
        None => (Status::Pass, "no anonymous access".into()),
        Some(level) => (
            Status::Fail,
            format!("anonymous read access at the {level} level"),
        ),
    }
}

/// `azure.blob.evidence_immutable`
pub(crate) fn evidence_immutable(facts: &ContainerFacts, _: &CheckDef) -> (Status, String) {
    match (facts.immutability.as_deref(), facts.emulator) {
        (_, true) => (
            Status::Error,
            "this emulator endpoint neither reports nor enforces immutability policies or legal holds".into(),
        ),
        (None, false) => (
            Status::Error,
            "the service did not report the container's immutability policy or legal hold".into(),
        ),
        (Some("none"), false) => (Status::Fail, "no immutability policy or legal hold".into()),
        (Some(kind), false) => (Status::Pass, kind.to_owned()),
    }
}

/// `azure.blob.soft_delete`
pub(crate) fn soft_delete(facts: &ContainerFacts, def: &CheckDef) -> (Status, String) {
    let min = def.param_u64("min_days").unwrap_or(30);
    match &facts.soft_delete_days {
        Ok(Some(d)) if u64::from(*d) >= min => {
            (Status::Pass, format!("soft delete keeps blobs {d} days"))
        }
        Ok(Some(d)) => (
            Status::Fail,
            format!("soft delete keeps blobs only {d} days (at least {min})"),
        ),
        Ok(None) => (Status::Fail, "soft delete is off".into()),
        Err(e) => (Status::Error, e.clone()),
    }
}
