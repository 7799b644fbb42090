//! The `custody` command line: one module per subcommand, each with its
//! `Args` and a `run` that returns an [`Outcome`] or an error.
//!
//! # Layout
//!
//! | module | commands or role |
//! |---|---|
//! | [`acquire`] | `acquire file`, `host`; `ebs`, `memory` (feature `aws`) |
//! | [`cases`] | `cases`, `show` |
//! | [`export`] | `export` |
//! | [`verify`] | `verify` |
//! | [`store`] | `store check`; `store sas` (feature `azure`) |
//! | [`ledger`] | `ledger init`, `checkpoint`, `prove`, `consistency`, `verify`, `export`, `verify-bundle`, `rotate-key`, `record` |
//! | [`respond`] | `isolate`, `release`, `respond` (feature `aws`) |
//! | [`serve`] | `serve`: the webhook server and the jobs it runs (feature `serve`) |
//! | [`ui`] | `ui`: the analysts' workspace on the local case store; `ui hash-password` (feature `serve`) |
//! | [`readiness`] | `readiness run`, `history`, `report` (feature `readiness`) |
//! | [`logs`] | `logs import`, `index`; `cloudtrail`, `lookup`, `vpc-flow`, `s3-access` with `aws` too (feature `timeline`) |
//! | [`timeline`] | `timeline`, `pivot`, `findings` (feature `timeline`) |
//! | [`detect`] | `detect`: Sigma rules and indicator lists over a case's timeline (feature `timeline`) |
//! | [`process`] | `process`: disk images read in place into derived artefacts and the timeline (feature `timeline`) |
//! | [`completions`] | `completions SHELL`: shell completion scripts |
//! | [`man`] | `man`: the manual pages |
//! | [`progress_bar`] | the terminal progress bar behind [`crate::progress::Progress`] |
//!
//! `cli` parses flags into the engine's requests ([`crate::engine`]) and
//! prints what comes back; it holds no logic the server would need.
//! Results reach stdout only through [`Env::print`] or [`write_stdout`], so a
//! reader that goes away (`custody timeline CASE | head -1`) ends the
//! command quietly instead of with a panic or an error.
//!
//! A subcommand whose feature is not built does not exist: it is neither
//! parsed nor listed in `--help`.

pub mod acquire;
pub mod cases;
pub mod completions;
#[cfg(feature = "timeline")]
pub mod detect;
pub mod export;
pub mod ledger;
#[cfg(feature = "timeline")]
pub mod logs;
pub mod man;
#[cfg(feature = "timeline")]
pub mod process;
pub mod progress_bar;
#[cfg(feature = "readiness")]
pub mod readiness;
#[cfg(feature = "aws")]
pub mod respond;
#[cfg(feature = "serve")]
pub mod serve;
pub mod store;
#[cfg(feature = "timeline")]
pub mod timeline;
#[cfg(feature = "serve")]
pub mod ui;
pub mod verify;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::App;
use crate::clock::SystemClock;
use crate::config::Config;

#[derive(Debug, Parser)]
#[command(
    name = "custody",
    version,
    about = "Capture evidence from cloud workloads and hosts with a verifiable chain of custody"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, clap::Args)]
pub struct GlobalArgs {
    /// Custody home: config (custody.toml), keys, local ledger, default local store.
    #[arg(long, env = "CUSTODY_HOME", global = true, value_name = "DIR")]
    pub home: Option<PathBuf>,
    /// Evidence store URL (file:///path or a path). Default: HOME/evidence, under the custody home.
    #[arg(
        long,
        env = "CUSTODY_STORE",
        global = true,
        value_name = "URL",
        hide_env_values = true
    )]
    pub store: Option<String>,
    /// Endpoint for S3-compatible stores and emulators, as the AWS CLI names it.
    #[arg(long, env = "AWS_ENDPOINT_URL", global = true, value_name = "URL")]
    pub endpoint_url: Option<String>,
    /// AWS region, as the AWS CLI names it (default: AWS_REGION, the
    /// profile, instance metadata). Repeat it where a command reads several
    /// regions (`readiness run`, `logs lookup`; `logs cloudtrail|vpc-flow`
    /// read those regions from the bucket).
    #[arg(long = "region", global = true, value_name = "REGION")]
    pub regions: Vec<String>,
    /// AWS named profile (~/.aws/config), as the AWS CLI names it. Default: AWS_PROFILE.
    #[arg(long, global = true, value_name = "NAME")]
    pub profile: Option<String>,
    /// Machine-readable JSON on stdout.
    #[arg(long, global = true)]
    pub json: bool,
    /// No progress bar, even on a terminal.
    #[arg(long, global = true)]
    pub no_progress: bool,
    /// Why this is being done, recorded in the ledger with each action (a ticket, a request).
    #[arg(long, global = true, value_name = "TEXT")]
    pub reason: Option<String>,
    /// More log detail on stderr (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Capture evidence into a case.
    #[command(subcommand)]
    Acquire(acquire::AcquireCommand),
    /// List the cases in the store.
    Cases,
    /// Show a case's artefacts with their digests.
    Show(cases::ShowArgs),
    /// Write an artefact's raw bytes to a file, checking its digests.
    Export(export::ExportArgs),
    /// Re-read every artefact of a case and compare both digests and the ledger.
    Verify(verify::VerifyArgs),
    /// Evidence stores: check one before relying on it.
    #[command(subcommand)]
    Store(store::StoreCommand),
    /// The custody ledger: init, checkpoint, prove, consistency, verify, export.
    #[command(subcommand)]
    Ledger(ledger::LedgerCommand),
    /// Isolate an EC2 instance, reversibly, recording its prior state first.
    #[cfg(feature = "aws")]
    Isolate(respond::IsolateArgs),
    /// Put an isolated instance back to the state recorded before isolation.
    #[cfg(feature = "aws")]
    Release(respond::ReleaseArgs),
    /// Respond on an EC2 instance: protect, memory, network isolation, disk,
    /// in the order of volatility, every step in the ledger.
    #[cfg(feature = "aws")]
    Respond(respond::RespondArgs),
    /// The alert webhook server: alerts in, isolation and collection out.
    #[cfg(feature = "serve")]
    Serve(serve::ServeArgs),
    /// The analysts' workspace in a browser, on this machine's cases:
    /// overview, timeline explorer, stars, tags and comments in the ledger.
    #[cfg(feature = "serve")]
    Ui(ui::UiArgs),
    /// Readiness audits: can this account be investigated now, and the trend.
    #[cfg(feature = "readiness")]
    #[command(subcommand)]
    Readiness(readiness::ReadinessCommand),
    /// Cloud and SaaS logs: collect them into a case, load its timeline.
    #[cfg(feature = "timeline")]
    #[command(subcommand)]
    Logs(logs::LogsCommand),
    /// What is inside a case's disk images, read in place: the files a
    /// responder reads first and every name of every file system, onto the
    /// timeline, each extracted file a derived artefact in the ledger.
    #[cfg(feature = "timeline")]
    Process(process::ProcessArgs),
    /// Search a case's timeline: field terms and free text, facets,
    /// histogram, saved searches; table, JSON, CSV or Timesketch output.
    #[cfg(feature = "timeline")]
    Timeline(timeline::TimelineArgs),
    /// Every account seen from a source, or every source seen for an account.
    #[cfg(feature = "timeline")]
    Pivot(timeline::PivotArgs),
    /// Findings computed on the timeline (shared new sources, new-ASN sign-ins
    /// followed by inbox rules or mail bursts, legacy sign-ins after a lockout).
    #[cfg(feature = "timeline")]
    Findings(timeline::FindingsArgs),
    /// Evaluate Sigma rules (custody's own, and --rules DIR) and indicator
    /// lists (--iocs FILE) over every event of a case; matches become findings.
    #[cfg(feature = "timeline")]
    Detect(detect::DetectArgs),
    /// Print the shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(completions::CompletionsArgs),
    /// Print the manual page, or write one per subcommand with -o.
    Man(man::ManArgs),
}

/// How a command ended when it did not fail operationally.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    /// Evidence did not match its record: exit code 1.
    VerificationFailed,
}

/// What every command shares once settings are resolved: the engine's
/// [`App`] and how results are printed.
#[derive(Debug, Clone)]
pub struct Env {
    pub app: App,
    pub json: bool,
    /// Every `--region` given, for the commands that read several.
    pub regions: Vec<String>,
}

impl std::ops::Deref for Env {
    type Target = App;
    fn deref(&self) -> &App {
        &self.app
    }
}

impl Env {
    /// Prints a result: JSON with `--json`, otherwise the human text.
    pub fn print<T: serde::Serialize>(
        &self,
        value: &T,
        human: impl FnOnce() -> String,
    ) -> anyhow::Result<()> {
        if self.json {
            let mut text =
                serde_json::to_string_pretty(value).context("cannot encode the result as JSON")?;
            text.push('\n');
            write_stdout(text.as_bytes())
        } else {
            write_stdout(human().as_bytes())
        }
    }
}

/// Writes `bytes` to stdout and flushes them. A reader that has gone away
/// (`custody timeline CASE | head -1`, `custody ledger checkpoint | true`)
/// is not a failure: the work is done, only nobody reads its report. So a
/// closed pipe is a quiet success and the command keeps its own outcome (a
/// verification failure is still exit 1). Other write errors (a full disk
/// under `> file`) are errors.
pub fn write_stdout(bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if is_closed_pipe(&e) => Ok(()),
        r => r.context("cannot write to standard output"),
    }
}

/// Whether a write failed because its reader has gone away (`EPIPE`: Rust
/// ignores `SIGPIPE`, so the write returns this instead of ending the process).
pub fn is_closed_pipe(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::BrokenPipe
}

/// The region of the AWS clients: the one `--region` given. Commands that
/// read several regions take them all; the log bucket commands read
/// `--region` as the regions in the bucket and `readiness run` as the
/// regions to audit, so their clients keep the chain's region (the bucket's
/// or the account's home may be another).
fn client_region(command: &Command, regions: &[String]) -> anyhow::Result<Option<String>> {
    #[cfg(all(feature = "timeline", feature = "aws"))]
    use logs::aws::AwsLogsCommand as AwsLogs;
    match command {
        #[cfg(all(feature = "timeline", feature = "aws"))]
        Command::Logs(logs::LogsCommand::Aws(AwsLogs::Cloudtrail(_) | AwsLogs::VpcFlow(_))) => {
            Ok(None)
        }
        #[cfg(all(feature = "timeline", feature = "aws"))]
        Command::Logs(logs::LogsCommand::Aws(AwsLogs::Lookup(_))) => Ok(regions.first().cloned()),
        #[cfg(feature = "readiness")]
        Command::Readiness(_) => Ok(regions.first().cloned()),
        _ => match regions {
            [] => Ok(None),
            [one] => Ok(Some(one.clone())),
            many => anyhow::bail!(
                "--region is given {} times; this command acts in one region",
                many.len()
            ),
        },
    }
}

pub async fn run(cli: Cli, cancel: Arc<AtomicBool>) -> anyhow::Result<Outcome> {
    // These describe the command line itself: no settings, store or ledger.
    match &cli.command {
        Command::Completions(args) => return completions::run(args),
        Command::Man(args) => return man::run(args),
        _ => {}
    }
    let config = Config::load(cli.global.home.clone(), cli.global.store.clone())
        .context("cannot load settings")?;
    tracing::debug!(?config, "settings");
    let show_progress = !cli.global.no_progress && std::io::stderr().is_terminal();
    let mut app = App::new(config, Arc::new(SystemClock), cancel);
    app.reason = cli.global.reason.clone();
    app.aws_options.endpoint = cli.global.endpoint_url.clone();
    app.aws_options.region = client_region(&cli.command, &cli.global.regions)?;
    app.aws_options.profile = cli.global.profile.clone();
    if show_progress {
        app = app.with_progress(Arc::new(|| Arc::new(progress_bar::Bar::new())));
    }
    let env = Env {
        app,
        json: cli.global.json,
        regions: cli.global.regions.clone(),
    };
    let outcome = match cli.command {
        Command::Acquire(cmd) => acquire::run(&env, cmd).await,
        Command::Cases => cases::run_cases(&env).await,
        Command::Show(args) => cases::run_show(&env, args).await,
        Command::Export(args) => export::run(&env, args).await,
        Command::Verify(args) => verify::run(&env, args).await,
        Command::Ledger(cmd) => ledger::run(&env, cmd).await,
        Command::Store(cmd) => store::run(&env, cmd).await,
        #[cfg(feature = "aws")]
        Command::Isolate(args) => respond::run_isolate(&env, args).await,
        #[cfg(feature = "aws")]
        Command::Release(args) => respond::run_release(&env, args).await,
        #[cfg(feature = "aws")]
        Command::Respond(args) => respond::run_respond(&env, args).await,
        #[cfg(feature = "serve")]
        Command::Serve(args) => serve::run(&env, args).await,
        #[cfg(feature = "serve")]
        Command::Ui(args) => ui::run(&env, args).await,
        #[cfg(feature = "readiness")]
        Command::Readiness(cmd) => readiness::run(&env, cmd).await,
        #[cfg(feature = "timeline")]
        Command::Logs(cmd) => logs::run(&env, cmd).await,
        #[cfg(feature = "timeline")]
        Command::Timeline(args) => timeline::run_timeline(&env, args).await,
        #[cfg(feature = "timeline")]
        Command::Pivot(args) => timeline::run_pivot(&env, args).await,
        #[cfg(feature = "timeline")]
        Command::Findings(args) => timeline::run_findings(&env, args).await,
        #[cfg(feature = "timeline")]
        Command::Detect(args) => detect::run(&env, args).await,
        #[cfg(feature = "timeline")]
        Command::Process(args) => process::run(&env, args).await,
        Command::Completions(args) => completions::run(&args),
        Command::Man(args) => man::run(&args),
    };
    // A cloud store keeps a copy of the ledger: catch it up with what this command committed.
    if env.store_is_cloud() && env.ledger_opened() {
        match env.mirror_ledger().await {
            Err(e) => {
                let why = crate::error_chain(&e);
                tracing::warn!(error = %why, "the ledger could not be mirrored to the store; the next command retries");
                eprintln!("warning: the ledger could not be mirrored to the store: {why}");
            }
            Ok(s) if !s.foreign.is_empty() => {
                tracing::warn!(
                    objects = s.foreign.len(),
                    "objects under the ledger mirror are not this ledger's"
                );
                eprintln!(
                    "warning: {} object(s) under the ledger mirror are not byte for byte this ledger's (someone else wrote them; custody mirrors beside them): {}",
                    s.foreign.len(),
                    s.foreign.join(", ")
                );
            }
            Ok(_) => {}
        }
    }
    outcome
}
