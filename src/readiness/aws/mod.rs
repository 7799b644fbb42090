//! The AWS checks' evaluation: one function per check id, each looking at
//! the audited regions through the AWS SDK and returning a finding per
//! resource. A call that fails (a missing permission, an API the endpoint
//! does not implement) makes the finding ERROR with the call and the
//! service's answer, never a verdict.
//!
//! Dependencies go one way, down this list:
//!
//! - `checks`: one file per service, one function per check id; the table
//!   in [`super::engine`] maps each id to its function.
//! - `access`: the forensic role as the IAM and KMS checks read it: the
//!   role, its identity policies, actions sorted by a decision.
//! - `runner`: what every check shares, written once: where its findings
//!   are made, a failed call turned into ERROR, the run per region.
//! - `context`: what every check reads ([`Ctx`]: the SDK configuration,
//!   the account, the regions, the scope) and [`AwsContextError`], why it
//!   cannot be had.
//! - [`policy`]: a local, exact-or-refused reading of IAM and KMS policy
//!   documents, for where the service cannot simulate.

mod access;
pub(crate) mod checks;
mod context;
pub mod policy;
pub(crate) mod runner;

use std::collections::BTreeMap;

pub use context::{AwsContextError, AwsScope, Ctx};

use super::Finding;

/// Findings per check id, for reports.
pub fn by_check(findings: &[Finding]) -> BTreeMap<&str, Vec<&Finding>> {
    let mut m: BTreeMap<&str, Vec<&Finding>> = BTreeMap::new();
    for f in findings {
        m.entry(f.key.check.as_str()).or_default().push(f);
    }
    m
}
