//! What every AWS check reads: the SDK configuration, the audited account
//! and regions, and the scope; the error when that cannot be established;
//! and the one-line form of a failed call that every ERROR finding uses.

use aws_config::SdkConfig;

use crate::readiness::catalogue::CheckDef;
use crate::readiness::{Finding, Status};

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

/// Why the AWS audit cannot start: no region to ask, or no account behind
/// the credentials. (A run that fails has its own error, `audit::AuditError`.)
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AwsContextError {
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
    ) -> Result<Self, AwsContextError> {
        let home = base
            .region()
            .map(ToString::to_string)
            .or_else(|| scope.regions.first().cloned())
            .ok_or(AwsContextError::NoRegion)?;
        let regions = if scope.regions.is_empty() {
            vec![home.clone()]
        } else {
            scope.regions.clone()
        };
        let me = aws_sdk_sts::Client::new(&base)
            .get_caller_identity()
            .send()
            .await
            .map_err(|e| AwsContextError::Identity(crate::aws::brief(&e)))?;
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

    /// A context with no credentials behind it, for tests of what runs a check.
    #[cfg(test)]
    pub(crate) fn for_tests(regions: &[&str], home: &str) -> Self {
        Self {
            base: SdkConfig::builder().build(),
            account: "111122223333".into(),
            identity: "arn:aws:iam::111122223333:role/auditor".into(),
            regions: regions.iter().map(|r| (*r).to_owned()).collect(),
            home: home.into(),
            scope: AwsScope::default(),
            now: time::OffsetDateTime::UNIX_EPOCH,
        }
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

/// The S3 client for `region`.
pub(crate) fn s3(ctx: &Ctx, region: &str) -> aws_sdk_s3::Client {
    let mut conf = aws_sdk_s3::config::Builder::from(&ctx.conf(region));
    if std::env::var_os("AWS_ENDPOINT_URL").is_some() || ctx.base.endpoint_url().is_some() {
        // Emulators serve buckets by path.
        conf = conf.force_path_style(true);
    }
    aws_sdk_s3::Client::from_conf(conf.build())
}
