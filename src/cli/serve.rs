//! `custody serve`: loads the configuration, opens the server (ledger and
//! queue), binds, prints the address and runs it until SIGTERM or Ctrl-C.

use std::path::PathBuf;

use anyhow::Context;

use super::{Env, Outcome};
use crate::serve::config::ServeConfig;

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// The server's configuration: address, limits, sources, playbook rules.
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// Record what each alert would do, and change nothing (as `dry_run` in `[server]`).
    #[arg(long)]
    pub dry_run: bool,
}

pub async fn run(env: &Env, args: ServeArgs) -> anyhow::Result<Outcome> {
    let mut config = ServeConfig::load(&args.config)?;
    config.server.dry_run |= args.dry_run;
    // The ledger and the queue open before the address is printed: whoever
    // starts the server takes the address as the sign it can take alerts.
    let bind = config.server.bind;
    let server = crate::serve::Server::open(env.app.clone(), config)?;
    let listener = tokio::net::TcpListener::bind(bind)
        .await
        .with_context(|| format!("cannot listen on {bind}"))?;
    let addr = listener
        .local_addr()
        .context("cannot read the listening address")?;
    // The address on stdout, for whoever started the server (port 0 picks one).
    super::write_stdout(
        format!("{}\n", serde_json::json!({ "listening": addr.to_string() })).as_bytes(),
    )?;
    server.run(listener, terminated()).await?;
    Ok(Outcome::Ok)
}

/// SIGTERM (or Ctrl-C, which the binary also turns into a cancel).
pub(super) async fn terminated() {
    #[cfg(unix)]
    {
        if let Ok(mut term) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
