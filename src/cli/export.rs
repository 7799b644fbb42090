//! `custody export <case> <artefact> -o FILE`.

use std::path::PathBuf;

use anyhow::Context;

use super::{Env, Outcome};
use crate::evidence::case::{self, EvidenceError};
use crate::ids::{ArtefactId, CaseId};

#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    pub case: CaseId,
    pub artefact: ArtefactId,
    /// Where to write the raw bytes; must not exist.
    #[arg(short, long, value_name = "FILE")]
    pub output: PathBuf,
    /// Only raw bytes from this offset (uses the seek table; digests are not
    /// checked for a partial export).
    #[arg(long, requires = "length")]
    pub offset: Option<u64>,
    /// Number of raw bytes to export from --offset.
    #[arg(long, requires = "offset")]
    pub length: Option<u64>,
}

#[derive(Debug, serde::Serialize)]
struct Report {
    case: CaseId,
    artefact: ArtefactId,
    output: String,
    bytes: u64,
    sha256: Option<String>,
    verified: bool,
}

pub async fn run(env: &Env, args: ExportArgs) -> anyhow::Result<Outcome> {
    let store = env.store().await?;
    let a = case::artefact(store.as_ref(), &args.case, &args.artefact)
        .await
        .context("cannot export")?;
    if args.output.exists() {
        anyhow::bail!(
            "{} already exists; export never overwrites",
            args.output.display()
        );
    }
    let report = if let (Some(offset), Some(length)) = (args.offset, args.length) {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&args.output)
            .with_context(|| format!("cannot create {}", args.output.display()))?;
        let n = case::export_range(store.as_ref(), &a, offset, length, &mut file).await;
        let n = match n {
            Ok(n) => n,
            Err(e) => {
                let _ = std::fs::remove_file(&args.output);
                return Err(e)
                    .context(format!("cannot export bytes {offset}+{length} of {}", a.id));
            }
        };
        Report {
            case: a.case.clone(),
            artefact: a.id.clone(),
            output: args.output.display().to_string(),
            bytes: n,
            sha256: None,
            verified: false,
        }
    } else {
        match case::export(store.as_ref(), &a, &args.output).await {
            Ok(()) => {}
            Err(e @ EvidenceError::ExportMismatch { .. }) => {
                eprintln!("error: {e}");
                return Ok(Outcome::VerificationFailed);
            }
            Err(e) => return Err(e).with_context(|| format!("cannot export {}", a.id)),
        }
        Report {
            case: a.case.clone(),
            artefact: a.id.clone(),
            output: args.output.display().to_string(),
            bytes: a.raw.size,
            sha256: Some(a.raw.sha256.clone()),
            verified: true,
        }
    };
    let detail = serde_json::json!({ "output": report.output, "bytes": report.bytes, "verified": report.verified });
    env.recorder()?
        .record(
            Some(&report.case),
            crate::ledger::entry::Action::Exported,
            Some(crate::ledger::evidence_ref(&a)),
            None,
            Some(detail),
        )
        .context("cannot record the export in the ledger")?;
    env.print(&report, || {
        let check = if report.verified {
            format!(
                " sha256:{} verified",
                report.sha256.as_deref().unwrap_or_default()
            )
        } else {
            String::new()
        };
        format!(
            "wrote {} bytes of {} to {}{}\n",
            report.bytes, report.artefact, report.output, check
        )
    })?;
    Ok(Outcome::Ok)
}
