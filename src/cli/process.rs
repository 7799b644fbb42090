//! `custody process CASE [ARTEFACT...]`: what is inside the case's disk
//! images, read in place from the store, onto its timeline, every
//! extracted file a derived artefact with its own ledger entry.

use anyhow::Context;

use super::{Env, Outcome};
use crate::engine::process::{ProcessReport, ProcessRequest, process};
use crate::ids::{ArtefactId, CaseId};
use crate::process::scan::Profile;
use crate::sanitize::term;

#[derive(Debug, clap::Args)]
pub struct ProcessArgs {
    pub case: CaseId,
    /// The disk image artefacts to process; by default every disk image of
    /// the case (and every file artefact that holds a file system).
    pub artefacts: Vec<ArtefactId>,
    /// `quick`: the files a responder reads first (logs, journals, login
    /// records, histories, cron and systemd, keys, accounts, packages,
    /// cloud-init, event logs), found by looking only where they can be.
    /// `full`: also every name of every file system, as a bodyfile and as
    /// `fs` rows of the timeline. (`--profile` names the AWS profile, as
    /// everywhere.)
    #[arg(long, value_enum, default_value_t = Profile::Full)]
    pub depth: Profile,
    /// Derive and record, but do not load the timeline.
    #[arg(long)]
    pub no_index: bool,
}

impl ProcessArgs {
    pub fn request(&self) -> ProcessRequest {
        ProcessRequest {
            case: self.case.clone(),
            artefacts: self.artefacts.clone(),
            profile: self.depth,
            no_index: self.no_index,
        }
    }
}

pub async fn run(env: &Env, args: ProcessArgs) -> anyhow::Result<Outcome> {
    let report = process(&env.app, &args.request())
        .await
        .with_context(|| format!("cannot process case {}", args.case))?;
    env.print(&report, || human(&report))?;
    let failed: usize = report.images.iter().map(|i| i.failures.len()).sum();
    if failed > 0 {
        anyhow::bail!("{failed} files could not be derived (listed above)");
    }
    Ok(Outcome::Ok)
}

/// The report for a terminal; every name from the image is escaped.
pub fn human(r: &ProcessReport) -> String {
    let mut s = String::new();
    for i in &r.images {
        s.push_str(&format!("image {} ({:?})\n", i.artefact, i.scan.scheme));
        for v in &i.scan.volumes {
            s.push_str(&format!(
                "  {:<12} {:>14} bytes  {:<12} {}\n",
                term(&v.name),
                v.length,
                v.fs.unwrap_or("-"),
                match &v.note {
                    Some(n) => term(n).into_owned(),
                    None => format!("{} names, {} files derived", v.entries, v.found),
                }
            ));
            for p in &v.problems {
                s.push_str(&format!("    problem: {}\n", term(p)));
            }
        }
        for p in &i.scan.problems {
            s.push_str(&format!("  problem: {}\n", term(p)));
        }
        for d in &i.derived {
            s.push_str(&format!(
                "  derived {} {:<10} {:>10} bytes  {}\n",
                d.artefact,
                d.format.unwrap_or(d.kind),
                d.size,
                term(&d.path)
            ));
        }
        if i.already > 0 {
            s.push_str(&format!(
                "  {} files derived earlier, left alone\n",
                i.already
            ));
        }
        for f in &i.failures {
            s.push_str(&format!("  FAILED  {}\n", term(f)));
        }
    }
    for k in &r.skipped {
        s.push_str(&format!("skipped {}\n", term(k)));
    }
    let events: u64 = r.timeline.iter().map(|t| t.events).sum();
    s.push_str(&format!(
        "case {}: {} images processed ({:?}), {} derived artefacts, {} events loaded\n",
        r.case,
        r.images.len(),
        r.profile,
        r.images.iter().map(|i| i.derived.len()).sum::<usize>(),
        events
    ));
    s
}
