//! The `custody` command line: one module per subcommand, each with its
//! `Args` and a `run` that returns an [`Outcome`] or an error.

pub mod acquire;
pub mod cases;
pub mod export;
pub mod progress_bar;
pub mod verify;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::clock::{Clock, SystemClock};
use crate::config::{Config, redact_url};
use crate::evidence::case::AcquireContext;
use crate::progress::{NoProgress, Progress};
use crate::store::EvidenceStore;

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
    /// Machine-readable JSON on stdout.
    #[arg(long, global = true)]
    pub json: bool,
    /// No progress bar, even on a terminal.
    #[arg(long, global = true)]
    pub no_progress: bool,
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
    /// Re-read every artefact of a case and compare both digests.
    Verify(verify::VerifyArgs),
}

/// How a command ended when it did not fail operationally.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    /// Evidence did not match its record: exit code 1.
    VerificationFailed,
}

/// What every command shares once settings are resolved.
#[derive(Debug)]
pub struct Env {
    pub config: Config,
    pub json: bool,
    pub show_progress: bool,
    pub cancel: Arc<AtomicBool>,
    pub clock: Arc<dyn Clock>,
}

impl Env {
    pub fn store(&self) -> anyhow::Result<Arc<dyn EvidenceStore>> {
        let store = crate::store::open(&self.config.store).with_context(|| {
            format!(
                "cannot open the evidence store {}",
                redact_url(&self.config.store)
            )
        })?;
        Ok(Arc::from(store))
    }

    pub fn progress(&self) -> Arc<dyn Progress> {
        if self.show_progress {
            Arc::new(progress_bar::Bar::new())
        } else {
            Arc::new(NoProgress)
        }
    }

    pub fn acquire_context(&self) -> anyhow::Result<AcquireContext> {
        Ok(AcquireContext {
            store: self.store()?,
            clock: self.clock.clone(),
            progress: self.progress(),
            cancel: self.cancel.clone(),
            pipeline: self.config.pipeline.clone(),
        })
    }

    /// Prints a result: JSON with `--json`, otherwise the human text.
    pub fn print<T: serde::Serialize>(
        &self,
        value: &T,
        human: impl FnOnce() -> String,
    ) -> anyhow::Result<()> {
        if self.json {
            println!(
                "{}",
                serde_json::to_string_pretty(value).context("cannot encode the result as JSON")?
            );
        } else {
            print!("{}", human());
        }
        Ok(())
    }
}

pub async fn run(cli: Cli, cancel: Arc<AtomicBool>) -> anyhow::Result<Outcome> {
    let config = Config::load(cli.global.home.clone(), cli.global.store.clone())
        .context("cannot load settings")?;
    tracing::debug!(?config, "settings");
    let env = Env {
        config,
        json: cli.global.json,
        show_progress: !cli.global.no_progress && std::io::stderr().is_terminal(),
        cancel,
        clock: Arc::new(SystemClock),
    };
    match cli.command {
        Command::Acquire(cmd) => acquire::run(&env, cmd).await,
        Command::Cases => cases::run_cases(&env).await,
        Command::Show(args) => cases::run_show(&env, args).await,
        Command::Export(args) => export::run(&env, args).await,
        Command::Verify(args) => verify::run(&env, args).await,
    }
}
