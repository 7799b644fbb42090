//! `custody logs`: collect cloud logs into a case (the original bytes as
//! artefacts) and load them into the case's timeline (feature `timeline`).
//! Exported files come in through `logs import`; [`aws`] reads the AWS
//! sources (feature `aws`).

#[cfg(feature = "aws")]
pub mod aws;

use std::path::PathBuf;

use super::{Env, Outcome};
use crate::engine::logs::{self, LoadRequest, LogsCollected, LogsSource};
use crate::ids::CaseId;
use crate::sanitize::term;
use crate::timeline::parse::Format;

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

impl Ingest {
    fn load(&self) -> LoadRequest {
        LoadRequest {
            case: self.case.clone(),
            geoip: self.geoip.clone(),
            no_index: self.no_index,
        }
    }
}

pub async fn run(env: &Env, cmd: LogsCommand) -> anyhow::Result<Outcome> {
    let (source, ingest) = match cmd {
        LogsCommand::Index(a) => {
            let report = logs::index_case(env, &a.case, &a.geoip, a.rebuild).await?;
            env.print(&report, || human(&report))?;
            report.check()?;
            return Ok(Outcome::Ok);
        }
        LogsCommand::Import(a) => (
            LogsSource::Files {
                paths: a.files,
                format: a.format,
            },
            a.ingest,
        ),
        #[cfg(feature = "aws")]
        LogsCommand::Aws(cmd) => return aws::run(env, cmd).await,
    };
    let collectors = logs::collectors(env, &source, &env.regions).await?;
    let report = logs::collect_and_load(env, &ingest.load(), &collectors).await?;
    env.print(&report, || human(&report))?;
    report.check()?;
    Ok(Outcome::Ok)
}

/// Purview's audit search exports stop at this many rows: an export of
/// exactly this size is probably cut.
const PURVIEW_EXPORT_LIMITS: &[u64] = &[50_000, 100_000];

fn human(r: &LogsCollected) -> String {
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
            "timeline: {} events from {} ({}), {} duplicate records (same id, same content) dropped, {} problems; {} to {}\n",
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
        // Flow log gaps, same id with other content: outside text, escaped.
        for n in t.notes() {
            s.push_str(&format!("  {}\n", term(&n)));
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
