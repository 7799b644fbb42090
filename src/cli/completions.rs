//! `custody completions SHELL`: the shell completion script on stdout.
//!
//! ```text
//! custody completions bash > ~/.local/share/bash-completion/completions/custody
//! custody completions zsh  > "${fpath[1]}/_custody"
//! custody completions fish > ~/.config/fish/completions/custody.fish
//! ```
//!
//! The script is generated from the same `clap` definition that parses the
//! arguments, so it cannot fall behind a new flag.

use clap::CommandFactory as _;
use clap_complete::Shell;

use super::{Cli, Outcome};

#[derive(Debug, clap::Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: Shell,
}

/// Needs no settings, store or ledger: it works before `custody.toml` exists.
pub fn run(args: &CompletionsArgs) -> anyhow::Result<Outcome> {
    let mut cmd = Cli::command();
    let name = cmd.get_name().to_owned();
    // Rendered whole first: clap_complete panics on a failed write, and a
    // closed pipe (`custody completions bash | head`) is no failure here.
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, name, &mut script);
    super::write_stdout(&script)?;
    Ok(Outcome::Ok)
}
