//! `custody logs`: collect cloud logs into a case (the original bytes as
//! artefacts) and load them into the case's timeline.

use std::path::PathBuf;

use anyhow::Context;
use time::OffsetDateTime;

use super::{Env, Outcome};
use crate::collect::logs::{AwsLogsLayout, CloudWatchLogs, LookupEvents, S3Logs};
use crate::collect::{Collected, Collector};
use crate::evidence::ArtefactKind;
use crate::ids::CaseId;
use crate::sanitize::term;
use crate::timeline::geoip::GeoIp;
use crate::timeline::ingest;
use crate::timeline::parse::Format;
use crate::timeline::store::{IngestReport, Timeline, path_for};

#[derive(Debug, clap::Subcommand)]
pub enum LogsCommand {
    /// Import exported log files (M365 audit CSV, Entra JSON, a CloudTrail
    /// file...): each becomes an artefact, then timeline events.
    Import(ImportArgs),
    /// A trail's log files (and digest files) from its S3 bucket, for a window.
    Cloudtrail(CloudtrailArgs),
    /// CloudTrail management events through LookupEvents (no trail bucket needed; last 90 days).
    Lookup(LookupArgs),
    /// VPC flow logs from their S3 destination or a CloudWatch Logs group.
    VpcFlow(VpcFlowArgs),
    /// S3 server access logs from their target bucket.
    S3Access(S3AccessArgs),
    /// Load the case's log artefacts (and host triage bundles) that are not
    /// in its timeline yet; --rebuild starts the timeline over.
    Index(IndexArgs),
}

#[derive(Debug, clap::Args)]
pub struct Ingest {
    /// Case to add the logs to.
    #[arg(long, value_name = "ID")]
    pub case: CaseId,
    /// MaxMind-format database(s) for source IP ASN and country (GeoLite2-ASN, GeoLite2-Country).
    #[arg(long = "geoip", value_name = "FILE")]
    pub geoip: Vec<PathBuf>,
    /// Capture only; load the timeline later with `custody logs index`.
    #[arg(long)]
    pub no_index: bool,
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
pub struct ImportArgs {
    /// The exported files.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// What they are.
    #[arg(long, value_enum)]
    pub format: Format,
    #[command(flatten)]
    pub ingest: Ingest,
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
    /// `regions`: the global `--region`s, the regions read from the bucket
    /// (all when none).
    fn layout(
        &self,
        regions: &[String],
        bucket: &str,
        service: &'static str,
        since: OffsetDateTime,
        until: OffsetDateTime,
    ) -> AwsLogsLayout {
        AwsLogsLayout {
            bucket: bucket.to_owned(),
            prefix: self.prefix.clone(),
            service,
            accounts: self.accounts.clone(),
            regions: regions.to_vec(),
            since,
            until,
        }
    }

    /// The account, when exactly one was asked for.
    fn account(&self) -> Option<String> {
        (self.accounts.len() == 1).then(|| self.accounts.concat())
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

#[derive(Debug, clap::Args)]
pub struct IndexArgs {
    pub case: CaseId,
    #[arg(long = "geoip", value_name = "FILE")]
    pub geoip: Vec<PathBuf>,
    /// Empty the timeline first and load every log artefact again (saved searches stay).
    #[arg(long)]
    pub rebuild: bool,
}

#[derive(Debug, serde::Serialize)]
struct Report {
    case: CaseId,
    artefacts: Vec<crate::evidence::Artefact>,
    timeline: Vec<IngestReport>,
}

fn window(env: &Env, w: &Window) -> anyhow::Result<(OffsetDateTime, OffsetDateTime)> {
    let until = w.until.unwrap_or_else(|| env.clock.now());
    anyhow::ensure!(
        w.since < until,
        "--since ({}) must be before --until ({})",
        crate::clock::rfc3339(w.since),
        crate::clock::rfc3339(until)
    );
    Ok((w.since, until))
}

pub async fn run(env: &Env, cmd: LogsCommand) -> anyhow::Result<Outcome> {
    if let LogsCommand::Index(a) = &cmd {
        return run_index(env, a).await;
    }
    let (ingest_args, collectors) = collectors(env, &cmd).await?;
    collect_and_index(env, ingest_args, &collectors).await
}

/// The collectors a logs command names, with its case and loading options.
async fn collectors<'a>(
    env: &Env,
    cmd: &'a LogsCommand,
) -> anyhow::Result<(&'a Ingest, Vec<Box<dyn Collector>>)> {
    Ok(match cmd {
        LogsCommand::Index(_) => {
            anyhow::bail!("`logs index` collects nothing; it loads what the case holds")
        }
        LogsCommand::Import(a) => {
            for f in &a.files {
                anyhow::ensure!(f.is_file(), "{} is not a file", f.display());
            }
            let c = a
                .files
                .iter()
                .map(|f| {
                    Box::new(crate::collect::file::FileCollector {
                        path: f.clone(),
                        kind: ArtefactKind::File,
                        log_format: Some(a.format.name().to_owned()),
                    }) as Box<dyn Collector>
                })
                .collect();
            (&a.ingest, c)
        }
        LogsCommand::Cloudtrail(a) => {
            let (since, until) = window(env, &a.window)?;
            let aws = env.aws().await?;
            let s3 = aws.s3();
            let layout = a
                .scope
                .layout(&env.regions, &a.bucket, "CloudTrail", since, until);
            let objects = crate::collect::logs::aws_logs_objects(&s3, &layout)
                .await
                .with_context(|| format!("cannot list the trail's logs in s3://{}", a.bucket))?;
            anyhow::ensure!(
                !objects.is_empty(),
                "no CloudTrail log files in s3://{}/{}AWSLogs/ for {} to {}",
                a.bucket,
                if a.scope.prefix.is_empty() {
                    String::new()
                } else {
                    format!("{}/", a.scope.prefix.trim_end_matches('/'))
                },
                crate::clock::rfc3339(since),
                crate::clock::rfc3339(until)
            );
            let c: Box<dyn Collector> = Box::new(S3Logs {
                s3,
                bucket: a.bucket.clone(),
                objects,
                format: Format::Cloudtrail,
                region: aws.region(),
                account: a.scope.account(),
            });
            (&a.ingest, vec![c])
        }
        LogsCommand::Lookup(a) => {
            let (since, until) = window(env, &a.window)?;
            let aws = env.aws().await?;
            let regions = if env.regions.is_empty() {
                vec![
                    aws.region()
                        .context("no region: give --region or set AWS_REGION")?,
                ]
            } else {
                env.regions.clone()
            };
            let scope = env
                .aws_options
                .endpoint
                .clone()
                .unwrap_or_else(|| "aws".into());
            let c = regions
                .into_iter()
                .map(|region| {
                    Box::new(LookupEvents {
                        cloudtrail: aws.in_region(&region).cloudtrail(),
                        region,
                        scope: scope.clone(),
                        since,
                        until,
                    }) as Box<dyn Collector>
                })
                .collect();
            (&a.ingest, c)
        }
        LogsCommand::VpcFlow(a) => {
            let (since, until) = window(env, &a.window)?;
            let aws = env.aws().await?;
            let c: Box<dyn Collector> = if let Some(group) = &a.log_group {
                Box::new(CloudWatchLogs {
                    logs: aws.cloudwatch_logs(),
                    group: group.clone(),
                    region: aws.region(),
                    format: Format::VpcFlowCloudwatch,
                    since,
                    until,
                })
            } else {
                let bucket = a.bucket.clone().unwrap_or_default();
                let s3 = aws.s3();
                let layout = a
                    .scope
                    .layout(&env.regions, &bucket, "vpcflowlogs", since, until);
                let objects = crate::collect::logs::aws_logs_objects(&s3, &layout)
                    .await
                    .with_context(|| format!("cannot list the flow logs in s3://{bucket}"))?;
                anyhow::ensure!(
                    !objects.is_empty(),
                    "no flow log files in s3://{bucket} for the window"
                );
                Box::new(S3Logs {
                    s3,
                    bucket,
                    objects,
                    format: Format::VpcFlow,
                    region: aws.region(),
                    account: a.scope.account(),
                })
            };
            (&a.ingest, vec![c])
        }
        LogsCommand::S3Access(a) => {
            let (since, until) = window(env, &a.window)?;
            let aws = env.aws().await?;
            let s3 = aws.s3();
            let objects =
                crate::collect::logs::access_log_objects(&s3, &a.bucket, &a.prefix, since, until)
                    .await
                    .with_context(|| format!("cannot list the access logs in s3://{}", a.bucket))?;
            anyhow::ensure!(
                !objects.is_empty(),
                "no access log files under s3://{}/{} for the window",
                a.bucket,
                a.prefix
            );
            let c: Box<dyn Collector> = Box::new(S3Logs {
                s3,
                bucket: a.bucket.clone(),
                objects,
                format: Format::S3Access,
                region: aws.region(),
                account: None,
            });
            (&a.ingest, vec![c])
        }
    })
}

/// Collects into the case, then loads what was collected into its timeline.
async fn collect_and_index(
    env: &Env,
    ingest_args: &Ingest,
    collectors: &[Box<dyn Collector>],
) -> anyhow::Result<Outcome> {
    let case = ingest_args.case.clone();
    let mut geoip = open_geoip(&ingest_args.geoip)?;
    let ctx = env.acquire_context(env.recorder()?).await?;
    let mut artefacts = Vec::new();
    let mut failures = Vec::new();
    for c in collectors {
        tracing::info!(%case, what = %c.describe(), "collecting logs");
        match c.collect(&ctx, &case).await {
            Ok(Collected {
                artefacts: a,
                failures: f,
            }) => {
                artefacts.extend(a);
                failures.extend(f);
            }
            Err(e) => failures.push(format!("{}: {}", c.describe(), crate::error_chain(&e))),
        }
    }
    let mut timeline = Vec::new();
    if !ingest_args.no_index && !artefacts.is_empty() {
        let mut tl = open_timeline(env, &case)?;
        let now = crate::clock::rfc3339(env.clock.now());
        for a in &artefacts {
            let Some(format) = ingest::format_of(a) else {
                continue;
            };
            let r = tokio::task::block_in_place(|| {
                tokio::runtime::Handle::current().block_on(ingest::ingest(
                    ctx.store.as_ref(),
                    &mut tl,
                    a,
                    format,
                    ingest::LoadOptions {
                        geoip: geoip.as_mut(),
                        inflate: env.config.inflate,
                    },
                    &now,
                ))
            })
            .with_context(|| format!("cannot load artefact {} into the timeline", a.id))?;
            timeline.push(r);
        }
        tl.end_bulk().context("cannot index the timeline")?;
    }
    let report = Report {
        case,
        artefacts,
        timeline,
    };
    env.print(&report, || human(&report))?;
    unreadable(&report.timeline)?;
    anyhow::ensure!(
        failures.is_empty(),
        "{} log source(s) could not be collected: {}",
        failures.len(),
        failures.join("; ")
    );
    Ok(Outcome::Ok)
}

fn open_geoip(paths: &[PathBuf]) -> anyhow::Result<Option<GeoIp>> {
    if paths.is_empty() {
        return Ok(None);
    }
    Ok(Some(GeoIp::open(paths)?))
}

pub(crate) fn open_timeline(env: &Env, case: &CaseId) -> anyhow::Result<Timeline> {
    let path = path_for(&env.config.home, case);
    Timeline::open(&path).with_context(|| format!("cannot open the timeline of case {case}"))
}

/// The timeline of a case for searching: one that was never loaded is an
/// error naming how to load it, not an empty result.
pub(crate) fn existing_timeline(env: &Env, case: &CaseId) -> anyhow::Result<Timeline> {
    let path = path_for(&env.config.home, case);
    anyhow::ensure!(
        path.exists(),
        "case {case} has no timeline in {}: load its logs with `custody logs import|cloudtrail|lookup|…` or `custody logs index {case}`",
        env.config.home.display()
    );
    open_timeline(env, case)
}

async fn run_index(env: &Env, a: &IndexArgs) -> anyhow::Result<Outcome> {
    let store = env.store().await?;
    let mut geoip = open_geoip(&a.geoip)?;
    let mut tl = if a.rebuild {
        let path = path_for(&env.config.home, &a.case);
        Timeline::reset(&path)
            .with_context(|| format!("cannot start the timeline of case {} over", a.case))?
    } else {
        open_timeline(env, &a.case)?
    };
    let now = crate::clock::rfc3339(env.clock.now());
    let reports = tokio::task::block_in_place(|| {
        tokio::runtime::Handle::current().block_on(ingest::ingest_case(
            store.as_ref(),
            &mut tl,
            &a.case,
            ingest::LoadOptions {
                geoip: geoip.as_mut(),
                inflate: env.config.inflate,
            },
            &now,
        ))
    })
    .with_context(|| format!("cannot load case {} into its timeline", a.case))?;
    let report = Report {
        case: a.case.clone(),
        artefacts: Vec::new(),
        timeline: reports,
    };
    env.print(&report, || human(&report))?;
    unreadable(&report.timeline)?;
    Ok(Outcome::Ok)
}

/// An artefact that gave problems and not one event was most likely read as
/// the wrong format: an error, though the evidence is kept and recorded.
fn unreadable(reports: &[IngestReport]) -> anyhow::Result<()> {
    let bad: Vec<String> = reports
        .iter()
        .filter(|t| !t.already && t.events == 0 && t.duplicates == 0 && t.problems > 0)
        .map(|t| {
            let first = t
                .problem_samples
                .first()
                .map(|p| format!("{}: {}", p.locator, p.message))
                .unwrap_or_default();
            format!(
                "{} read as {} gave no event ({first})",
                t.artefact, t.format
            )
        })
        .collect();
    anyhow::ensure!(
        bad.is_empty(),
        "{}; the evidence is kept: is the format right? Importing the file again with the right --format makes a new artefact of it",
        bad.join("; ")
    );
    Ok(())
}

/// Purview's audit search exports stop at this many rows: an export of
/// exactly this size is probably cut.
const PURVIEW_EXPORT_LIMITS: &[u64] = &[50_000, 100_000];

fn human(r: &Report) -> String {
    let mut s = format!("case {}\n", r.case);
    for a in &r.artefacts {
        s.push_str(&super::cases::artefact_line(a));
    }
    for t in &r.timeline {
        if t.already {
            s.push_str(&format!(
                "{} ({}) is already in the timeline\n",
                t.artefact, t.format
            ));
            continue;
        }
        s.push_str(&format!(
            "timeline: {} events from {} ({}), {} duplicate record ids dropped, {} problems; {} to {}\n",
            t.events,
            t.artefact,
            t.format,
            t.duplicates,
            t.problems,
            term(t.first.as_deref().unwrap_or("-")),
            term(t.last.as_deref().unwrap_or("-")),
        ));
        for p in &t.problem_samples {
            let member = if p.member.is_empty() {
                String::new()
            } else {
                format!("{} ", term(&p.member))
            };
            // Member names, locators and messages quote the logs.
            s.push_str(&format!(
                "  problem at {member}{}: {}\n",
                term(&p.locator),
                term(&p.message)
            ));
        }
        if t.problems > t.problem_samples.len() as u64 {
            s.push_str(&format!("  … {} problems in all\n", t.problems));
        }
        let rows = t.events + t.duplicates;
        if t.format.starts_with("ual") {
            s.push_str("  events per hour (UTC):\n");
            for (h, n) in &t.per_hour {
                s.push_str(&format!("    {h}  {n}\n"));
            }
            if !t.empty_hours.is_empty() {
                s.push_str(&format!(
                    "  {} hours without any record between the first and the last: {}{}\n",
                    t.empty_hours.len(),
                    t.empty_hours
                        .iter()
                        .take(24)
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", "),
                    if t.empty_hours.len() > 24 {
                        ", …"
                    } else {
                        ""
                    }
                ));
            }
            if PURVIEW_EXPORT_LIMITS.contains(&rows) {
                s.push_str(&format!(
                    "  warning: the export holds exactly {rows} records, a Purview export limit: it is probably cut; split the search by time\n"
                ));
            }
        }
    }
    s
}
