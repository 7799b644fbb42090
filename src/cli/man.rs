//! `custody man [-o DIR]`: the manual pages, rendered from the same `clap`
//! definition that parses the arguments.
//!
//! Without `-o`, `custody.1` goes to stdout (`custody man | man -l -`).
//! With `-o DIR`, `custody.1` and one page per subcommand, nested ones
//! included (`custody-acquire.1`, `custody-acquire-ebs.1`, ...), are
//! written into `DIR`, for a `man1` directory of `MANPATH`. The pages are
//! world-readable; a `DIR` custody has to create is owner-only, as every
//! directory it creates.

use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::CommandFactory as _;

use super::{Cli, Outcome};

/// Man pages are read by everyone: unlike evidence (0600 under the
/// process umask of `main`), a page is installed world-readable.
const PAGE_MODE: u32 = 0o644;

#[derive(Debug, clap::Args)]
pub struct ManArgs {
    /// Write custody.1 and a page per subcommand into DIR instead of
    /// printing custody.1.
    #[arg(short, long, value_name = "DIR")]
    pub output: Option<PathBuf>,
}

/// Needs no settings, store or ledger: it works before `custody.toml` exists.
pub fn run(args: &ManArgs) -> anyhow::Result<Outcome> {
    let mut cmd = Cli::command().disable_help_subcommand(true);
    // Built once, so every subcommand knows its full display name
    // (`custody-acquire-ebs`), which names its page.
    cmd.build();
    match &args.output {
        None => super::write_stdout(&render(&cmd)?)?,
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            let written = write_pages(&cmd, dir)?;
            tracing::info!(pages = written, dir = %dir.display(), "wrote the man pages");
        }
    }
    Ok(Outcome::Ok)
}

/// One page as roff.
fn render(cmd: &clap::Command) -> anyhow::Result<Vec<u8>> {
    let man = clap_mangen::Man::new(cmd.clone());
    let mut page = Vec::new();
    man.render(&mut page)
        .with_context(|| format!("cannot render the man page of {}", man.get_filename()))?;
    Ok(page)
}

/// Writes the page of `cmd` and of every visible subcommand below it;
/// returns how many pages were written.
fn write_pages(cmd: &clap::Command, dir: &Path) -> anyhow::Result<usize> {
    let path = dir.join(clap_mangen::Man::new(cmd.clone()).get_filename());
    let page = render(cmd)?;
    let mut f = std::fs::File::create(&path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    f.write_all(&page)
        .and_then(|()| f.set_permissions(std::fs::Permissions::from_mode(PAGE_MODE)))
        .with_context(|| format!("cannot write {}", path.display()))?;
    let mut written = 1;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        written += write_pages(sub, dir)?;
    }
    Ok(written)
}
