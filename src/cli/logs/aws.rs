//! `custody logs cloudtrail|lookup|vpc-flow|s3-access|cloudwatch|eks-audit`: the AWS log
//! sources, listed for a window and collected with their original bytes;
//! `custody logs verify-trail`: CloudTrail's own integrity chain checked on
//! a collected trail bundle ([`crate::engine::trail`]), which `logs
//! cloudtrail` also runs after collecting when it can fetch the keys.

use std::path::PathBuf;

use anyhow::Context as _;
use time::OffsetDateTime;

use super::{Env, Ingest, Outcome};
use crate::engine::logs::{self, AwsLogs, AwsLogsKind, LogsCollected, LogsSource};
use crate::engine::trail::{
    self, ChainLink, KeySource, LogStatus, SignatureCheck, TrailError, TrailVerification,
    VerifyTrailRequest,
};
use crate::ids::{ArtefactId, CaseId};
use crate::sanitize::term;

#[derive(Debug, clap::Subcommand)]
pub enum AwsLogsCommand {
    /// A trail's log files (and digest files) from its S3 bucket, for a window.
    Cloudtrail(CloudtrailArgs),
    /// CloudTrail management events through LookupEvents (no trail bucket needed; last 90 days).
    Lookup(LookupArgs),
    /// VPC flow logs from their S3 destination or a CloudWatch Logs group.
    VpcFlow(VpcFlowArgs),
    /// S3 server access logs from their target bucket.
    S3Access(S3AccessArgs),
    /// Any CloudWatch Logs group (a function's, a task's), for a window.
    Cloudwatch(CloudwatchArgs),
    /// An EKS cluster's Kubernetes API audit log: the `kube-apiserver-audit`
    /// streams of `/aws/eks/CLUSTER/cluster` (control plane logging must
    /// have the audit log type on).
    EksAudit(EksAuditArgs),
    /// Check CloudTrail's own integrity chain on a case's trail bundle: each
    /// digest's signature, the links between digests, each log file's hash.
    /// Exit 1 when anything is altered, missing, invalid or broken.
    VerifyTrail(VerifyTrailArgs),
}

#[derive(Debug, clap::Args)]
pub struct VerifyTrailArgs {
    /// The case.
    #[arg(long, value_name = "ID")]
    pub case: CaseId,
    /// The CloudTrail bundle to check (default: every CloudTrail bundle of the case).
    #[arg(long, value_name = "ID")]
    pub artefact: Option<ArtefactId>,
    /// CloudTrail's public keys as `aws cloudtrail list-public-keys` prints
    /// them (or a stored integrity report), instead of asking ListPublicKeys:
    /// for checking offline.
    #[arg(long, value_name = "FILE")]
    pub public_keys: Option<PathBuf>,
    /// Start of the window the bundle was collected for (default: the days
    /// its objects span): a digest or log file named for a day inside it
    /// must be in the bundle.
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub since: Option<OffsetDateTime>,
    /// End of that window (default: now).
    #[arg(long, value_name = "TIME", value_parser = parse_time, requires = "since")]
    pub until: Option<OffsetDateTime>,
}

#[derive(Debug, clap::Args)]
pub struct EksAuditArgs {
    /// The cluster's name.
    #[arg(long, value_name = "NAME")]
    pub cluster: String,
    #[command(flatten)]
    pub window: Window,
    #[command(flatten)]
    pub ingest: Ingest,
}

#[derive(Debug, clap::Args)]
pub struct CloudwatchArgs {
    /// The log group.
    #[arg(long, value_name = "GROUP")]
    pub log_group: String,
    /// Only streams whose names start with this.
    #[arg(long, value_name = "PREFIX")]
    pub stream_prefix: Option<String>,
    /// How to read the messages (default: each message as written).
    #[arg(long, value_enum, default_value = "cloudwatch-logs")]
    pub format: crate::timeline::parse::Format,
    #[command(flatten)]
    pub window: Window,
    #[command(flatten)]
    pub ingest: Ingest,
}

#[derive(Debug, clap::Args)]
pub struct Window {
    /// Start of the window: a date (midnight UTC) or an RFC 3339 time.
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub since: OffsetDateTime,
    /// End of the window (default: now).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub until: Option<OffsetDateTime>,
}

fn parse_time(s: &str) -> Result<OffsetDateTime, String> {
    crate::timeline::query::instant(s)
        .and_then(|us| OffsetDateTime::from_unix_timestamp_nanos(i128::from(us) * 1000).ok())
        .ok_or_else(|| {
            format!("`{s}` is not a date (2021-06-01) or an RFC 3339 time (2021-06-01T08:00:00Z)")
        })
}

#[derive(Debug, clap::Args)]
pub struct CloudtrailArgs {
    /// The trail's bucket.
    #[arg(long, value_name = "BUCKET")]
    pub bucket: String,
    #[command(flatten)]
    pub scope: AwsLogsScope,
    #[command(flatten)]
    pub window: Window,
    #[command(flatten)]
    pub ingest: Ingest,
}

/// Where in an `AWSLogs/` layout to look.
#[derive(Debug, clap::Args)]
pub struct AwsLogsScope {
    /// The S3 key prefix the logs were configured with, if any.
    #[arg(long, default_value = "", value_name = "PREFIX")]
    pub prefix: String,
    /// Accounts to read (repeat); default: every account in the bucket.
    #[arg(long = "account", value_name = "ID")]
    pub accounts: Vec<String>,
}

impl AwsLogsScope {
    fn request(&self) -> logs::AwsLogsScope {
        logs::AwsLogsScope {
            prefix: self.prefix.clone(),
            accounts: self.accounts.clone(),
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct LookupArgs {
    #[command(flatten)]
    pub window: Window,
    #[command(flatten)]
    pub ingest: Ingest,
}

#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("from").required(true).args(["bucket", "log_group"])))]
pub struct VpcFlowArgs {
    /// The flow logs' S3 destination bucket.
    #[arg(long, value_name = "BUCKET")]
    pub bucket: Option<String>,
    /// Or the CloudWatch Logs group the flow logs go to.
    #[arg(long, value_name = "GROUP")]
    pub log_group: Option<String>,
    #[command(flatten)]
    pub scope: AwsLogsScope,
    #[command(flatten)]
    pub window: Window,
    #[command(flatten)]
    pub ingest: Ingest,
}

#[derive(Debug, clap::Args)]
pub struct S3AccessArgs {
    /// The bucket the access logs are delivered to.
    #[arg(long, value_name = "BUCKET")]
    pub bucket: String,
    /// The target prefix the logs are written under.
    #[arg(long, default_value = "", value_name = "PREFIX")]
    pub prefix: String,
    #[command(flatten)]
    pub window: Window,
    #[command(flatten)]
    pub ingest: Ingest,
}

impl AwsLogsCommand {
    /// The engine's request, and the case and loading options; `None` for
    /// `verify-trail`, which collects nothing.
    fn request(self) -> Option<(AwsLogs, Ingest)> {
        let (kind, window, ingest) = match self {
            Self::VerifyTrail(_) => return None,
            Self::Cloudtrail(a) => (
                AwsLogsKind::Cloudtrail {
                    scope: a.scope.request(),
                    bucket: a.bucket,
                },
                a.window,
                a.ingest,
            ),
            Self::Lookup(a) => (AwsLogsKind::Lookup, a.window, a.ingest),
            Self::VpcFlow(a) => (
                match a.log_group {
                    Some(group) => AwsLogsKind::VpcFlowGroup { group },
                    // clap requires --bucket or --log-group.
                    None => AwsLogsKind::VpcFlowBucket {
                        bucket: a.bucket.unwrap_or_default(),
                        scope: a.scope.request(),
                    },
                },
                a.window,
                a.ingest,
            ),
            Self::S3Access(a) => (
                AwsLogsKind::S3Access {
                    bucket: a.bucket,
                    prefix: a.prefix,
                },
                a.window,
                a.ingest,
            ),
            Self::EksAudit(a) => (
                AwsLogsKind::Group {
                    group: format!("/aws/eks/{}/cluster", a.cluster),
                    stream_prefix: Some("kube-apiserver-audit".into()),
                    format: crate::timeline::parse::Format::EksAuditCloudwatch,
                },
                a.window,
                a.ingest,
            ),
            Self::Cloudwatch(a) => (
                AwsLogsKind::Group {
                    group: a.log_group,
                    stream_prefix: a.stream_prefix,
                    format: a.format,
                },
                a.window,
                a.ingest,
            ),
        };
        let logs = AwsLogs {
            kind,
            since: window.since,
            until: window.until,
        };
        Some((logs, ingest))
    }
}

/// Runs an AWS log command: a collection into the case and its timeline
/// (for a trail, then its integrity check), or `verify-trail`.
pub(super) async fn run(env: &Env, cmd: AwsLogsCommand) -> anyhow::Result<Outcome> {
    let (logs, ingest) = match cmd {
        AwsLogsCommand::VerifyTrail(a) => return verify_trail(env, a).await,
        other => other.request().context("not a log collection")?,
    };
    let trail = matches!(logs.kind, AwsLogsKind::Cloudtrail { .. });
    let window = (logs.since, logs.until.unwrap_or_else(|| env.clock.now()));
    let collectors = logs::collectors(env, &LogsSource::Aws(logs), &env.regions).await?;
    let collected = logs::collect_and_load(env, &ingest.load(), &collectors).await?;
    if !trail {
        env.print(&collected, || super::human(&collected))?;
        collected.check()?;
        return Ok(Outcome::Ok);
    }
    let integrity = integrity_after_collection(env, &collected, window).await;
    let out = TrailCollected {
        collected: &collected,
        integrity: &integrity,
    };
    env.print(&out, || {
        let mut s = super::human(&collected);
        s.push_str(&integrity.human());
        s
    })?;
    collected.check()?;
    Ok(if integrity.failed() {
        Outcome::VerificationFailed
    } else {
        Outcome::Ok
    })
}

/// What `logs cloudtrail` prints: the collection, then the trail's integrity.
#[derive(serde::Serialize)]
struct TrailCollected<'a> {
    #[serde(flatten)]
    collected: &'a LogsCollected,
    integrity: &'a Integrity,
}

/// Whether the integrity chain of what was just collected was checked.
#[derive(Debug, serde::Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
enum Integrity {
    Verified {
        verifications: Vec<TrailVerification>,
    },
    NotVerified {
        reason: String,
        /// How to check it later, when that can help.
        #[serde(skip_serializing_if = "Option::is_none")]
        later: Option<String>,
    },
}

impl Integrity {
    fn failed(&self) -> bool {
        match self {
            Self::Verified { verifications } => verifications.iter().any(|v| !v.report.is_intact()),
            Self::NotVerified { .. } => false,
        }
    }

    fn human(&self) -> String {
        match self {
            Self::Verified { verifications } => verifications.iter().map(human_trail).collect(),
            Self::NotVerified { reason, later } => {
                let mut s = format!("CloudTrail integrity not verified: {}\n", term(reason));
                if let Some(l) = later {
                    s.push_str(&format!("  to verify it later: {}\n", term(l)));
                }
                s
            }
        }
    }
}

/// After `logs cloudtrail`: the collected bundle's integrity, with keys
/// from ListPublicKeys; what stopped it, and how to do it later, if not.
async fn integrity_after_collection(
    env: &Env,
    collected: &LogsCollected,
    window: (OffsetDateTime, OffsetDateTime),
) -> Integrity {
    let bundles: Vec<_> = collected
        .artefacts
        .iter()
        .filter(|a| trail::is_trail_bundle(a))
        .cloned()
        .collect();
    let Some(first) = bundles.first() else {
        return Integrity::NotVerified {
            reason: "no trail bundle was collected".into(),
            later: None,
        };
    };
    let later = format!(
        "custody logs verify-trail --case {} --artefact {} [--public-keys FILE]",
        collected.case, first.id
    );
    let keys = KeySource::ListPublicKeys {
        regions: Vec::new(),
    };
    match trail::verify_bundles(env, &collected.case, &bundles, &keys, Some(window)).await {
        Ok(verifications) => Integrity::Verified { verifications },
        Err(e @ TrailError::NoDigests { .. }) => Integrity::NotVerified {
            reason: crate::error_chain(&e),
            later: None,
        },
        Err(e) => Integrity::NotVerified {
            reason: crate::error_chain(&e),
            later: Some(later),
        },
    }
}

#[derive(serde::Serialize)]
struct VerifyTrailOutput<'a> {
    case: &'a CaseId,
    /// Whether every bundle is intact (nothing altered, missing, invalid or broken).
    intact: bool,
    verifications: &'a [TrailVerification],
}

async fn verify_trail(env: &Env, a: VerifyTrailArgs) -> anyhow::Result<Outcome> {
    let keys = match a.public_keys {
        Some(path) => KeySource::File(path),
        None => KeySource::ListPublicKeys {
            regions: env.regions.clone(),
        },
    };
    let window = a
        .since
        .map(|since| (since, a.until.unwrap_or_else(|| env.clock.now())));
    let req = VerifyTrailRequest {
        case: a.case.clone(),
        artefact: a.artefact,
        keys,
        window,
    };
    let done = trail::verify_trail(env, &req)
        .await
        .with_context(|| format!("cannot verify the CloudTrail integrity of case {}", a.case))?;
    let intact = done.iter().all(|v| v.report.is_intact());
    let out = VerifyTrailOutput {
        case: &a.case,
        intact,
        verifications: &done,
    };
    env.print(&out, || done.iter().map(human_trail).collect())?;
    Ok(if intact {
        Outcome::Ok
    } else {
        Outcome::VerificationFailed
    })
}

/// Digests shown row by row at most (two days of one region's hourly
/// digests); past it, only those with something to say.
const DIGEST_ROWS: usize = 48;

fn signature_word(s: &SignatureCheck) -> &'static str {
    match s {
        SignatureCheck::Valid { .. } => "valid",
        SignatureCheck::Invalid { .. } => "INVALID",
        SignatureCheck::UnknownKey { .. } => "UNKNOWN KEY",
        SignatureCheck::NotChecked { .. } => "NOT CHECKED",
    }
}

fn link_word(l: &ChainLink) -> &'static str {
    match l {
        ChainLink::Ok { .. } => "ok",
        ChainLink::Start { note: None } => "start",
        ChainLink::Start { note: Some(_) } => "restart",
        ChainLink::FirstInWindow { .. } => "first in window",
        ChainLink::PreviousMissing { .. } => "PREVIOUS MISSING",
        ChainLink::Broken { .. } => "BROKEN",
        ChainLink::NotChecked { .. } => "not checked",
    }
}

/// One bundle's verification as a table and the problems.
fn human_trail(v: &TrailVerification) -> String {
    let r = &v.report;
    let s = &r.summary;
    let mut out = format!(
        "CloudTrail integrity of {} ({})\n  keys: {} ({})\n  days: {} to {} (from the {})\n",
        v.artefact,
        term(&format!("s3://{}", r.bucket.as_deref().unwrap_or("?"))),
        term(&v.keys.origin),
        if v.keys.fingerprints.is_empty() {
            "none".to_owned()
        } else {
            term(&v.keys.fingerprints.join(", ")).into_owned()
        },
        r.window.first_day.as_deref().unwrap_or("?"),
        r.window.last_day.as_deref().unwrap_or("?"),
        if r.window.from == "collection" {
            "collection window"
        } else {
            "bundle's objects"
        },
    );
    let clean = |d: &&trail::DigestCheck| {
        matches!(d.signature, SignatureCheck::Valid { .. })
            && matches!(
                d.link,
                ChainLink::Ok { .. }
                    | ChainLink::Start { note: None }
                    | ChainLink::FirstInWindow { .. }
            )
    };
    let shown: Vec<&trail::DigestCheck> = if r.digests.len() <= DIGEST_ROWS {
        r.digests.iter().collect()
    } else {
        r.digests.iter().filter(|d| !clean(d)).collect()
    };
    out.push_str(&format!(
        "  {:<22} {:<12} {:<17} {:>5}  digest\n",
        "end", "signature", "link", "files"
    ));
    for d in &shown {
        out.push_str(&format!(
            "  {:<22} {:<12} {:<17} {:>5}  {}\n",
            term(d.end.as_deref().unwrap_or("?")),
            signature_word(&d.signature),
            link_word(&d.link),
            d.log_files,
            term(&d.key)
        ));
    }
    if shown.len() < r.digests.len() {
        out.push_str(&format!(
            "  … and {} more digests, each valid and linked (--json lists them all)\n",
            r.digests.len() - shown.len()
        ));
    }
    out.push_str(&format!(
        "  digests: {} ({} valid, {} invalid, {} unknown key, {} not checked), {} links ok, {} broken, {} missing\n",
        s.digests,
        s.signatures_valid,
        s.signatures_invalid,
        s.signatures_unknown_key,
        s.signatures_not_checked,
        s.links_ok,
        s.links_broken,
        s.gaps
    ));
    out.push_str(&format!(
        "  log files: {} ({} valid, {} altered, {} missing, {} uncovered, {} unchecked, {} outside the window)\n",
        s.log_files, s.valid, s.altered, s.missing, s.uncovered, s.unchecked, s.not_collected
    ));
    let uncovered: Vec<&trail::LogFileCheck> = r
        .log_files
        .iter()
        .filter(|l| l.status == LogStatus::Uncovered)
        .collect();
    for l in uncovered.iter().take(5) {
        out.push_str(&format!("    uncovered  {}\n", term(&l.reason)));
    }
    if uncovered.len() > 5 {
        out.push_str(&format!("    … {} uncovered in all\n", uncovered.len()));
    }
    let problems = v.report.problems();
    if problems.is_empty() {
        out.push_str("  intact: no log file altered or missing, every digest signed and linked\n");
    } else {
        out.push_str(&format!("  {} PROBLEMS\n", problems.len()));
        let mut per_kind: std::collections::BTreeMap<trail::TrailProblemKind, usize> =
            std::collections::BTreeMap::new();
        for p in &problems {
            let n = per_kind.entry(p.kind).or_default();
            *n += 1;
            if *n <= trail::SHOWN_PER_KIND {
                let kind = serde_json::to_value(p.kind)
                    .ok()
                    .and_then(|k| k.as_str().map(str::to_owned))
                    .unwrap_or_default();
                out.push_str(&format!("    {kind:<14} {}\n", term(&p.message)));
            }
        }
        for (kind, n) in per_kind {
            if n > trail::SHOWN_PER_KIND {
                out.push_str(&format!(
                    "    … {n} problems of kind {kind:?} in all (--json lists them)\n"
                ));
            }
        }
    }
    out.push_str(&format!(
        "  report and keys stored as artefact {} (derived from {})\n",
        v.stored.id, v.artefact
    ));
    out
}
