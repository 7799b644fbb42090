//! The AWS checks' evaluation: one function per check id, each looking at
//! the audited regions through the AWS SDK and returning a finding per
//! resource. A call that fails (a missing permission, an API the endpoint
//! does not implement) makes the finding ERROR with the call and the
//! service's answer, never a verdict.
//!
//! - `checks`: one evaluation per AWS check id.
//! - `access`: the forensic role's effective permissions and its use of KMS
//!   keys, simulated by IAM where the service can.
//! - [`policy`]: a local, exact-or-refused reading of IAM and KMS policy
//!   documents, for where the service cannot simulate.

mod access;
mod checks;
pub mod policy;

use std::collections::BTreeMap;

use aws_config::SdkConfig;

use super::catalogue::{Catalogue, CheckDef, Provider};
use super::{Finding, Status};

/// What to audit.
#[derive(Debug, Clone, Default)]
pub struct AwsScope {
    /// Regions in use; empty: the configured region.
    pub regions: Vec<String>,
    /// The bucket custody writes evidence to, when it is in S3.
    pub evidence_bucket: Option<String>,
    /// The forensic role's name; empty: the catalogue's default.
    pub forensic_role: Option<String>,
    /// The account responders work from; default: the audited account.
    pub response_account: Option<String>,
}

/// What every check reads: the SDK configuration, the account and the scope.
pub struct Ctx {
    base: SdkConfig,
    pub account: String,
    /// The caller's ARN.
    pub identity: String,
    pub regions: Vec<String>,
    /// Where account-wide services (IAM, the trail list) are asked.
    pub home: String,
    pub scope: AwsScope,
    /// When the run started, from the clock seam: "recent" is measured from it.
    pub now: time::OffsetDateTime,
}

impl std::fmt::Debug for Ctx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctx")
            .field("account", &self.account)
            .field("regions", &self.regions)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    #[error("no AWS region: give --region or set AWS_REGION")]
    NoRegion,
    #[error("cannot tell which account the credentials belong to (sts:GetCallerIdentity): {0}")]
    Identity(String),
}

/// One line for a failed call: the call and what the service said.
pub(crate) fn failed(call: &str, e: &(dyn std::error::Error + 'static)) -> String {
    format!("{call} failed: {}", crate::aws::brief(e))
}

impl Ctx {
    /// Resolves the account and identity behind `base`'s credentials.
    pub async fn new(
        base: SdkConfig,
        scope: AwsScope,
        now: time::OffsetDateTime,
    ) -> Result<Self, AuditError> {
        let home = base
            .region()
            .map(ToString::to_string)
            .or_else(|| scope.regions.first().cloned())
            .ok_or(AuditError::NoRegion)?;
        let regions = if scope.regions.is_empty() {
            vec![home.clone()]
        } else {
            scope.regions.clone()
        };
        let me = aws_sdk_sts::Client::new(&base)
            .get_caller_identity()
            .send()
            .await
            .map_err(|e| AuditError::Identity(crate::aws::brief(&e)))?;
        Ok(Self {
            account: me.account().unwrap_or_default().to_owned(),
            identity: me.arn().unwrap_or_default().to_owned(),
            base,
            regions,
            home,
            scope,
            now,
        })
    }

    /// The configuration for `region`.
    pub(crate) fn conf(&self, region: &str) -> SdkConfig {
        self.base
            .to_builder()
            .region(aws_config::Region::new(region.to_owned()))
            .build()
    }

    pub(crate) fn finding(
        &self,
        def: &CheckDef,
        region: &str,
        resource: &str,
        status: Status,
        evidence: impl Into<String>,
    ) -> Finding {
        Finding::new(&def.id, &self.account, region, resource, status, evidence)
    }

    /// The forensic role's name: the scope's, else the check's parameter.
    pub(crate) fn role(&self, def: &CheckDef) -> String {
        self.scope
            .forensic_role
            .clone()
            .or_else(|| def.param_str("role").map(str::to_owned))
            .unwrap_or_else(|| "custody-forensic".to_owned())
    }
}

/// Evaluates every AWS check of `catalogue` (or those in `only`), in
/// catalogue order.
pub async fn evaluate(ctx: &Ctx, catalogue: &Catalogue, only: &[String]) -> Vec<Finding> {
    let defs: Vec<&CheckDef> = catalogue
        .checks
        .iter()
        .filter(|c| c.provider == Provider::Aws)
        .filter(|c| only.is_empty() || only.iter().any(|o| o == &c.id))
        .collect();
    // Checks are independent: run them together, keep catalogue order.
    let results = futures::future::join_all(defs.iter().map(|d| evaluate_one(ctx, d))).await;
    let mut out = Vec::new();
    for (def, findings) in defs.iter().zip(results) {
        if findings.is_empty() {
            out.push(ctx.finding(
                def,
                &ctx.home,
                "-",
                Status::Skipped,
                "nothing to evaluate in the audited regions",
            ));
        }
        out.extend(findings);
    }
    out
}

async fn evaluate_one(ctx: &Ctx, def: &CheckDef) -> Vec<Finding> {
    if let Some(why) = &def.not_evaluable_here {
        return vec![ctx.finding(def, &ctx.home, "-", Status::Skipped, why.clone())];
    }
    match checks::run(ctx, def).await {
        Some(f) => f,
        None => vec![ctx.finding(
            def,
            &ctx.home,
            "-",
            Status::Skipped,
            "this version of custody does not evaluate this check yet",
        )],
    }
}

/// Findings per check id, for reports.
pub fn by_check(findings: &[Finding]) -> BTreeMap<&str, Vec<&Finding>> {
    let mut m: BTreeMap<&str, Vec<&Finding>> = BTreeMap::new();
    for f in findings {
        m.entry(f.key.check.as_str()).or_default().push(f);
    }
    m
}
