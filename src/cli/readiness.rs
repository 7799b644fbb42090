//! `custody readiness`: audit whether an account can be investigated now,
//! keep every run, and show how readiness changes.

use anyhow::Context;

use super::{Env, Outcome};
use crate::readiness::audit::AuditOptions;
use crate::readiness::catalogue::Catalogue;
use crate::readiness::history::{History, Run};
use crate::readiness::score::{self, Change};
use crate::readiness::{Finding, Status};
use crate::sanitize::{CsvCells, term};

#[derive(Debug, clap::Subcommand)]
pub enum ReadinessCommand {
    /// Evaluate the checks, store the run, print the findings and the score;
    /// exits 1 when a critical check fails (not ready).
    Run(RunArgs),
    /// Every stored run: time, score, verdict.
    History,
    /// A report of the latest run (or --run) with the history: html (one
    /// self-contained file), json, csv, or ocsf (Compliance Finding records).
    Report(ReportArgs),
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Format {
    Html,
    Json,
    /// A cell that would start a spreadsheet formula (`=`, `+`, `-`, `@`,
    /// tab, CR) gets a leading `'` unless --raw-csv is given.
    Csv,
    Ocsf,
}

#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    #[arg(long, value_enum, default_value = "html")]
    pub format: Format,
    /// The run to report (default: the latest).
    #[arg(long, value_name = "ID")]
    pub run: Option<i64>,
    /// Write to this file (never over an existing one) instead of stdout.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<std::path::PathBuf>,
    /// CSV cells exactly as recorded, for tools that read CSV as data:
    /// resource names and evidence can then start a spreadsheet formula.
    #[arg(long)]
    pub raw_csv: bool,
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The S3 bucket evidence is written to; default: the store's, when it is `s3://`.
    #[arg(long, value_name = "BUCKET")]
    pub evidence_bucket: Option<String>,
    /// The forensic role's name (default custody-forensic).
    #[arg(long, value_name = "NAME")]
    pub role: Option<String>,
    /// The account responders work from (default: the audited account).
    #[arg(long, value_name = "ACCOUNT_ID")]
    pub response_account: Option<String>,
    /// Only these checks (repeat); default: all of the providers'.
    #[arg(long = "check", value_name = "ID")]
    pub checks: Vec<String>,
    /// The Azure evidence container (`az://account/container` with
    /// `--endpoint-url`, or a blob URL): its Azure checks run too.
    #[arg(long, value_name = "URL")]
    pub azure_container: Option<String>,
    /// Leave out the AWS checks (with --azure-container: Azure only).
    #[arg(long)]
    pub no_aws: bool,
    /// Tries per AWS request, the first included.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=10))]
    pub max_attempts: u32,
}

pub async fn run(env: &Env, cmd: ReadinessCommand) -> anyhow::Result<Outcome> {
    match cmd {
        ReadinessCommand::Run(args) => run_audit(env, args).await,
        ReadinessCommand::History => history(env),
        ReadinessCommand::Report(args) => report(env, &args),
    }
}

fn open_history(env: &Env) -> anyhow::Result<History> {
    Ok(History::open(&History::path_in(&env.config.home))?)
}

async fn run_audit(env: &Env, args: RunArgs) -> anyhow::Result<Outcome> {
    // The store's bucket is the evidence bucket unless one is named.
    let evidence_bucket = args.evidence_bucket.clone().or_else(|| {
        env.config
            .store
            .strip_prefix("s3://")
            .and_then(|rest| rest.split('/').next())
            .filter(|b| !b.is_empty())
            .map(str::to_owned)
    });
    let opts = AuditOptions {
        // `--region` (global), repeated for each region in use.
        regions: env.regions.clone(),
        evidence_bucket,
        role: args.role,
        response_account: args.response_account,
        checks: args.checks,
        azure_container: args.azure_container,
        no_aws: args.no_aws,
        max_attempts: args.max_attempts,
    };
    let catalogue = Catalogue::builtin()?;
    let a = crate::readiness::audit::run(
        &opts,
        &env.aws_options,
        env.clock.as_ref(),
        &History::path_in(&env.config.home),
    )
    .await?;
    env.print(
        &serde_json::json!({
            "run": a.run,
            "score": a.score,
            "findings": a.findings,
            "trend": a.trend,
        }),
        || human_run(&catalogue, &a.run, &a.score, &a.findings, &a.trend),
    )?;
    Ok(if a.score.ready {
        Outcome::Ok
    } else {
        Outcome::VerificationFailed
    })
}

fn human_run(
    catalogue: &Catalogue,
    run: &Run,
    s: &score::Score,
    findings: &[Finding],
    trend: &[score::Trend],
) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "readiness run {} of account {} ({}), catalogue {}",
        run.id,
        term(&run.scope.accounts.join(",")),
        term(&run.scope.regions.join(",")),
        run.catalogue_version
            .get(..19)
            .unwrap_or(&run.catalogue_version)
    );
    for c in &s.checks {
        let title = catalogue.get(&c.id).map_or("", |d| d.title.as_str());
        let _ = writeln!(
            out,
            "{:<8} {:<9} {:<40} {title}",
            c.status.as_str(),
            c.severity.as_str(),
            c.id
        );
        for f in findings.iter().filter(|f| f.key.check == c.id) {
            if matches!(f.status, Status::Fail | Status::Error) || c.status == Status::Skipped {
                let _ = writeln!(
                    out,
                    "         {:<7} {} {}: {}",
                    f.status.as_str(),
                    term(&f.key.region),
                    term(&f.key.resource),
                    term(&f.evidence)
                );
            }
        }
    }
    let changed: Vec<&score::Trend> = trend
        .iter()
        .filter(|t| t.change != Change::Unchanged)
        .collect();
    for t in changed {
        let _ = writeln!(
            out,
            "{:?}: {} {} {} ({} days failing in a row)",
            t.change,
            t.key.check,
            term(&t.key.region),
            term(&t.key.resource),
            t.failed_in_a_row
        );
    }
    let pct = |v: Option<f64>| v.map_or("n/a".to_owned(), |x| format!("{x:.1}"));
    let _ = writeln!(
        out,
        "score {} ({})",
        pct(s.score),
        s.pillars
            .iter()
            .map(|(p, v)| format!("{} {}", p.as_str(), pct(*v)))
            .collect::<Vec<_>>()
            .join(", ")
    );
    if s.ready {
        let _ = writeln!(out, "verdict: ready");
    } else {
        let _ = writeln!(
            out,
            "verdict: NOT READY (failing critical: {})",
            s.failing_critical.join(", ")
        );
    }
    out
}

fn history(env: &Env) -> anyhow::Result<Outcome> {
    let h = open_history(env)?;
    let runs = h.runs()?;
    env.print(&runs, || {
        use std::fmt::Write as _;
        let mut out = String::new();
        for r in &runs {
            let _ = writeln!(
                out,
                "{:>5}  {}  {:>6}  {}  {}",
                r.id,
                r.started,
                r.score.map_or("n/a".to_owned(), |x| format!("{x:.1}")),
                if r.ready { "ready" } else { "NOT READY" },
                term(&r.scope.regions.join(","))
            );
        }
        out
    })?;
    Ok(Outcome::Ok)
}

fn report(env: &Env, args: &ReportArgs) -> anyhow::Result<Outcome> {
    use crate::readiness::report;
    let catalogue = Catalogue::builtin()?;
    let h = open_history(env)?;
    let runs = h.runs()?;
    let run = match args.run {
        Some(id) => runs.iter().find(|r| r.id == id).cloned().with_context(|| {
            format!("no readiness run {id}; `custody readiness history` lists them")
        })?,
        None => runs
            .last()
            .cloned()
            .context("no readiness run yet; run `custody readiness run` first")?,
    };
    // The history up to the reported run: a report of an old run does not
    // know what came after it.
    let history: Vec<_> = h
        .all()?
        .into_iter()
        .filter(|r| r.at <= run.started)
        .collect();
    let data = report::ReportData {
        catalogue: &catalogue,
        runs: runs
            .iter()
            .filter(|r| r.started <= run.started)
            .cloned()
            .collect(),
        findings: h.findings(run.id)?,
        trend: score::trend(&history),
        history,
        run,
    };
    let text = match args.format {
        Format::Html => report::html(&data),
        Format::Json => serde_json::to_string_pretty(&report::json(&data))?,
        Format::Csv => {
            let cells = if args.raw_csv {
                CsvCells::Raw
            } else {
                CsvCells::Neutralised
            };
            report::csv(&data, cells).map_err(|e| anyhow::anyhow!("cannot write the CSV: {e}"))?
        }
        Format::Ocsf => serde_json::to_string_pretty(&report::ocsf(&data))?,
    };
    match &args.output {
        None => super::write_stdout(text.as_bytes())?,
        Some(path) => {
            use std::io::Write as _;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(path)
                .with_context(|| {
                    format!(
                        "cannot create {} (an existing file is never overwritten)",
                        path.display()
                    )
                })?;
            f.write_all(text.as_bytes())
                .and_then(|()| f.sync_all())
                .with_context(|| format!("cannot write {}", path.display()))?;
            tracing::info!(path = %path.display(), "report written");
        }
    }
    Ok(Outcome::Ok)
}
