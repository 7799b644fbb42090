//! Readiness audits: can this account be investigated right now?
//!
//! - [`audit`]: one run: evaluate, score, store, compare.
//! - [`engine`]: the one table from each declared check id to its
//!   evaluation, and the evaluation of a provider's checks.
//! - [`aws`]: the evaluation of each AWS check, one file per service.
//! - [`azure`]: the Azure checks the Blob service answers, on the evidence container.
//! - [`catalogue`]: the checks declared in `readiness_checks/`, built in.
//! - [`history`]: every run and its findings, in an embedded SQLite database.
//! - [`report`]: JSON, CSV, OCSF and self-contained HTML reports.
//! - [`score`]: the run's score, pillar sub-scores and verdict, and the
//!   trend between runs (new, fixed, regressed, unchanged).
//!
//! A check's evaluation yields one [`Finding`] per resource it looked at,
//! each PASS, FAIL, ERROR (the check could not run: always with the reason,
//! never turned into a verdict) or SKIPPED.

pub mod audit;
pub mod aws;
pub mod azure;
pub mod catalogue;
pub mod engine;
pub mod history;
pub mod report;
pub mod score;

use serde::{Deserialize, Serialize};

/// What a check found about one resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Status {
    Pass,
    Fail,
    Error,
    Skipped,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pass => "PASS",
            Self::Fail => "FAIL",
            Self::Error => "ERROR",
            Self::Skipped => "SKIPPED",
        }
    }
}

impl std::str::FromStr for Status {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "PASS" => Ok(Self::Pass),
            "FAIL" => Ok(Self::Fail),
            "ERROR" => Ok(Self::Error),
            "SKIPPED" => Ok(Self::Skipped),
            other => Err(format!("unknown status {other:?}")),
        }
    }
}

/// The stable identity of a finding across runs.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct FindingKey {
    pub check: String,
    pub account: String,
    pub region: String,
    /// A logical name that survives re-creation where possible (a trail's
    /// name, a bucket's name, a VPC id); `-` for account-wide checks.
    pub resource: String,
}

/// One check's verdict on one resource.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    #[serde(flatten)]
    pub key: FindingKey,
    pub status: Status,
    /// What was seen, in words (and for ERROR and SKIPPED, why there is no verdict).
    pub evidence: String,
}

impl Finding {
    pub fn new(
        check: &str,
        account: &str,
        region: &str,
        resource: &str,
        status: Status,
        evidence: impl Into<String>,
    ) -> Self {
        Self {
            key: FindingKey {
                check: check.to_owned(),
                account: account.to_owned(),
                region: region.to_owned(),
                resource: resource.to_owned(),
            },
            status,
            evidence: evidence.into(),
        }
    }
}
