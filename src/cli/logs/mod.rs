//! `custody logs`: collect cloud logs into a case (the original bytes as
//! artefacts) and load them into the case's timeline (feature `timeline`).
//! Exported files come in through `logs import`; [`aws`] reads the AWS
//! sources (feature `aws`).

#[cfg(feature = "aws")]
pub mod aws;

use std::path::PathBuf;

use anyhow::Context;

use super::{Env, Outcome};
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
    #[cfg(feature = "aws")]
    #[command(flatten)]
    Aws(aws::AwsLogsCommand),
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

pub async fn run(env: &Env, cmd: LogsCommand) -> anyhow::Result<Outcome> {
    if let LogsCommand::Index(a) = &cmd {
        return run_index(env, a).await;
    }
    let (ingest_args, collectors) = collectors(env, &cmd).await?;
    collect_and_index(env, ingest_args, &collectors).await
}

/// The collectors a logs command names, with its case and loading options.
#[cfg_attr(not(feature = "aws"), allow(unused_variables))]
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
        #[cfg(feature = "aws")]
        LogsCommand::Aws(cmd) => aws::collectors(env, cmd).await?,
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
