//! `custody export <case> <artefact> -o FILE`.

use std::path::{Path, PathBuf};

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
        let n = export_range(store.as_ref(), &a, offset, length, &args.output)
            .await
            .with_context(|| format!("cannot export bytes {offset}+{length} of {}", a.id))?;
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
            Some(a.evidence_ref()),
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

/// Writes a range the way a whole export is written: into a temporary file
/// beside `out` (0600, as `tempfile` creates it), synced, then given its
/// name only if no file has it. A failure or a crash never leaves a partial
/// file under the final name; the temporary one is removed when dropped.
async fn export_range(
    store: &dyn crate::store::EvidenceStore,
    a: &crate::evidence::Artefact,
    offset: u64,
    length: u64,
    out: &Path,
) -> anyhow::Result<u64> {
    let dir = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = tempfile::Builder::new()
        .prefix(".custody-export-")
        .tempfile_in(dir)
        .with_context(|| format!("cannot create a temporary file in {}", dir.display()))?;
    let mut w = std::io::BufWriter::with_capacity(1 << 20, tmp);
    let n = case::export_range(store, a, offset, length, &mut w).await?;
    let tmp = w
        .into_inner()
        .map_err(|e| e.into_error())
        .and_then(|tmp| tmp.as_file().sync_all().map(|()| tmp))
        .with_context(|| format!("cannot write {}", out.display()))?;
    tmp.persist_noclobber(out)
        .map_err(|e| e.error)
        .with_context(|| {
            format!(
                "cannot create {} (an existing file is never overwritten)",
                out.display()
            )
        })?;
    Ok(n)
}
