//! `custody ui`: the analysts' workspace on this machine's case store, and
//! `custody ui hash-password` for the `[ui]` configuration.

use std::io::Read as _;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;

use super::{Env, Outcome};
use crate::ui::{Ui, UiConfig};

#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct UiArgs {
    #[command(subcommand)]
    pub command: Option<UiCommand>,
    /// Where to listen; without analysts in --config, loopback only.
    #[arg(long, default_value = "127.0.0.1:8480", value_name = "ADDR")]
    pub listen: SocketAddr,
    /// A file with a `[ui]` table: analysts (argon2 password hashes, bearer
    /// token digests, roles) and the session length.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, clap::Subcommand)]
pub enum UiCommand {
    /// An argon2id hash of the password on stdin, for `password_hash`.
    HashPassword,
}

pub async fn run(env: &Env, args: UiArgs) -> anyhow::Result<Outcome> {
    if let Some(UiCommand::HashPassword) = args.command {
        let mut password = String::new();
        std::io::stdin()
            .read_to_string(&mut password)
            .context("cannot read the password from stdin")?;
        let password = password.trim_end_matches(['\r', '\n']);
        anyhow::ensure!(!password.is_empty(), "an empty password on stdin");
        let hash = crate::ui::auth::hash_password(password)
            .map_err(|e| anyhow::anyhow!("cannot hash the password: {e}"))?;
        super::write_stdout(format!("{hash}\n").as_bytes())?;
        return Ok(Outcome::Ok);
    }
    let config = match &args.config {
        Some(p) => UiConfig::load(p)?,
        None => UiConfig::default(),
    };
    config.check_bind(args.listen)?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener
        .local_addr()
        .context("cannot read the listening address")?;
    // The address on stdout, for whoever started it (port 0 picks one).
    super::write_stdout(
        format!(
            "{}\n",
            serde_json::json!({ "listening": addr.to_string(), "url": format!("http://{addr}/") })
        )
        .as_bytes(),
    )?;
    let ui = Ui::standalone(env.app.clone(), &config).context("cannot set up the workspace")?;
    crate::ui::serve(ui, listener, super::serve::terminated())
        .await
        .context("the workspace stopped")?;
    Ok(Outcome::Ok)
}
