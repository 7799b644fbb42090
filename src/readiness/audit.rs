//! One readiness run: evaluate the checks in scope, score them, store the
//! run in the history and compute the trend. Used by `custody readiness
//! run` and by the server's scheduled audits.

use std::path::Path;

use serde::Deserialize;

use super::Finding;
use super::aws::{AwsScope, Ctx};
use super::catalogue::{Catalogue, CatalogueError, Provider};
use super::history::{History, HistoryError, Run, Scope, StoredFinding};
use super::score::{self, Score, Trend};

const fn three() -> u32 {
    3
}

/// What to audit.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditOptions {
    /// Regions in use; empty: the configured region.
    #[serde(default)]
    pub regions: Vec<String>,
    #[serde(default)]
    pub evidence_bucket: Option<String>,
    /// The forensic role's name (default custody-forensic).
    #[serde(default)]
    pub role: Option<String>,
    #[serde(default)]
    pub response_account: Option<String>,
    /// Only these checks; empty: all of the providers'.
    #[serde(default)]
    pub checks: Vec<String>,
    /// The Azure evidence container, whose checks then run too.
    #[serde(default)]
    pub azure_container: Option<String>,
    #[serde(default)]
    pub no_aws: bool,
    /// Tries per AWS request.
    #[serde(default = "three")]
    pub max_attempts: u32,
}

impl Default for AuditOptions {
    fn default() -> Self {
        Self {
            regions: Vec::new(),
            evidence_bucket: None,
            role: None,
            response_account: None,
            checks: Vec::new(),
            azure_container: None,
            no_aws: false,
            max_attempts: three(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    #[error(transparent)]
    Catalogue(#[from] CatalogueError),
    #[error("no readiness check {0:?}; the checks are listed in readiness_checks/README.md")]
    UnknownCheck(String),
    #[error("nothing to audit: AWS left out and no Azure container given")]
    Nothing,
    #[error(transparent)]
    Credentials(#[from] crate::aws::CredentialsError),
    #[error("cannot start the AWS audit")]
    Aws(#[source] super::aws::AwsContextError),
    #[error("the Azure container {url}: {message}")]
    Azure { url: String, message: String },
    #[error(transparent)]
    History(#[from] HistoryError),
    #[error("cannot encode the pillar scores: {0}")]
    Encode(String),
}

/// A stored run with its findings, score and trend.
#[derive(Debug, Clone)]
pub struct Audited {
    pub run: Run,
    pub findings: Vec<Finding>,
    pub score: Score,
    pub trend: Vec<Trend>,
    /// The run before this one, if any: what a regression is measured against.
    pub previous: Option<Run>,
}

/// Runs the audit of `opts`, stores it in the history at `history`.
/// `aws` carries the endpoint, region and profile of every AWS client.
pub async fn run(
    opts: &AuditOptions,
    aws: &crate::aws::AwsOptions,
    clock: &dyn crate::clock::Clock,
    history: &Path,
) -> Result<Audited, AuditError> {
    let catalogue = Catalogue::builtin()?;
    if let Some(id) = opts.checks.iter().find(|id| catalogue.get(id).is_none()) {
        return Err(AuditError::UnknownCheck(id.clone()));
    }
    let started = clock.now();
    let mut findings = Vec::new();
    let mut scope = Scope::default();
    let mut identity = Vec::new();
    if !opts.no_aws {
        let factory = crate::aws::Aws::new(&crate::aws::AwsOptions {
            max_attempts: opts.max_attempts.max(1),
            ..aws.clone()
        })
        .await?;
        let conf = factory.sdk_config().clone();
        let aws_scope = AwsScope {
            regions: opts.regions.clone(),
            evidence_bucket: opts.evidence_bucket.clone(),
            forensic_role: opts.role.clone(),
            response_account: opts.response_account.clone(),
        };
        let ctx = Ctx::new(conf, aws_scope, started)
            .await
            .map_err(AuditError::Aws)?;
        tracing::info!(account = %ctx.account, regions = ?ctx.regions, "readiness audit (AWS)");
        findings.extend(super::engine::evaluate_aws(&ctx, &catalogue, &opts.checks).await);
        scope.providers.push(Provider::Aws.as_str().to_owned());
        scope.accounts.push(ctx.account.clone());
        scope.regions.clone_from(&ctx.regions);
        identity.push(ctx.identity.clone());
    }
    if let Some(url) = &opts.azure_container {
        let shown = crate::config::redact_url(url);
        let azure_err = |message: String| AuditError::Azure {
            url: shown.clone(),
            message,
        };
        let parsed = url::Url::parse(url).map_err(|e| azure_err(format!("not a URL ({e})")))?;
        let store = crate::store::azure_blob::AzureBlobStore::from_url(
            &parsed,
            aws.endpoint.as_deref(),
            false,
        )
        .await
        .map_err(|e| azure_err(crate::error_chain(&e)))?;
        tracing::info!(
            account = store.account(),
            container = store.container(),
            "readiness audit (Azure)"
        );
        findings
            .extend(super::engine::evaluate_azure(Some(&store), &catalogue, &opts.checks).await);
        scope.providers.push(Provider::Azure.as_str().to_owned());
        scope.accounts.push(store.account().to_owned());
        identity.push(format!("azure:{}", store.account()));
    }
    if findings.is_empty() {
        return Err(AuditError::Nothing);
    }
    let finished = clock.now();
    let s = score::score(&catalogue, &findings);
    let stored: Vec<StoredFinding> = findings
        .iter()
        .map(|f| StoredFinding {
            finding: f.clone(),
            remediation: catalogue
                .get(&f.key.check)
                .map(|c| c.remediation.clone())
                .unwrap_or_default(),
        })
        .collect();
    let pillars =
        serde_json::to_value(&s.pillars).map_err(|e| AuditError::Encode(e.to_string()))?;
    let mut run = Run {
        id: 0,
        started,
        finished,
        tool_version: crate::TOOL_VERSION.to_owned(),
        catalogue_version: catalogue.version.clone(),
        scope,
        identity: identity.join(", "),
        score: s.score,
        ready: s.ready,
        pillars,
    };
    let mut h = History::open(history)?;
    let previous = h.runs()?.pop();
    run.id = h.record(&run, &stored)?;
    let trend = score::trend(&h.all()?);
    Ok(Audited {
        run,
        findings,
        score: s,
        trend,
        previous,
    })
}
