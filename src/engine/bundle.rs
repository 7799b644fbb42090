//! A case's bundle: its ledger entries byte for byte, an inclusion proof of
//! each, the checkpoint, the verifier key and its rotations, and the
//! artefacts' manifests, everything a third party needs to check the
//! case's custody offline (`custody ledger verify-bundle`, or the steps in
//! the bundle's README with tools of their own). `custody ledger export`
//! writes it to a directory; the workspace sends it as a tar.

use std::path::{Path, PathBuf};

use crate::ids::CaseId;
use crate::ledger::verify::bundle;
use crate::ledger::{
    LedgerError, Recorder, checkpoint_name, create_private_dir, read_entries, write_atomic,
};

use super::app::{App, AppError};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BundleError {
    #[error("{} exists and is not empty", .0.display())]
    NotEmpty(PathBuf),
    #[error("the ledger has no entries for case {0}")]
    NoEntries(CaseId),
    #[error("cannot read the ledger")]
    Read(#[source] LedgerError),
    #[error("cannot record the export in the ledger")]
    Record(#[source] LedgerError),
    #[error("cannot read {}", path.display())]
    Checkpoint {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the rotation at entry {0} is missing")]
    MissingRotation(u64),
    #[error("cannot write the bundle")]
    Write(#[source] LedgerError),
    #[error(transparent)]
    App(#[from] AppError),
}

/// What a bundle holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bundle {
    pub entries: usize,
    pub manifests: usize,
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), BundleError> {
    write_atomic(path, bytes).map_err(BundleError::Write)
}

pub const BUNDLE_README: &str = "\
A custody case bundle. Everything here can be checked without custody:

case                       the case this bundle is of
checkpoint                 the log's signed checkpoint (C2SP signed-note over a C2SP tlog-checkpoint body)
verifier.key               the log's initial note verifier key, the trust anchor:
                           <name>+<hex key id>+<base64(0x01 || Ed25519 public key)>
rotations/<index>.json     each key rotation of the log (its new_verifier_key), byte for byte
rotations/<index>.tlog-proof  its inclusion proof against the checkpoint of size index + 1,
                           which the key it retires signed
key-history.txt            every verifier key the log has used, oldest first (informative)
entries/<index>.json       each of the case's log entries, byte for byte (RFC 8785 canonical JSON, no newline)
proofs/<index>.tlog-proof  a C2SP tlog-proof of that entry: index, RFC 9162 inclusion proof, checkpoint
manifests/<artefact>.json  the artefact records the entries refer to

To verify, pin the initial verifier key you obtained from the log's operator (not this copy's):
1. Key chain: start with the initial key. For each rotation in index order, its proof's checkpoint
   must be of size index + 1 and signed by the current key (c2sp.org/signed-note), the rotation
   entry must be included in it (SHA-256(0x00 || entry bytes), RFC 9162 section 2.1.3.2) and name
   the current key as old_verifier_key; its new_verifier_key then signs checkpoints of size
   index + 2 and above. A key named by a rotation that no such checkpoint covers is not trusted.
2. Each checkpoint (the bundle's and every proof's) must be signed by the key in force at its size.
3. Each entry must be included in its proof's checkpoint, and be of the case named in `case`.
4. Within the case, \"prev\" is the index of the case's previous entry: the first entry has no
   prev, each later one names the one before it, so an entry missing at the start or in between
   shows. The last entry is the signed record of this export (action exported), whose detail
   counts the case's entries before it, so entries cut from the end show too.
Each artefact's stored object has the SHA-256 in its manifest (stored.sha256) and decompresses
with zstd -d to bytes whose SHA-256 is raw.sha256.
";

/// Writes the bundle of `case_id` into `out` (absent or empty), after
/// recording the export (`exported`, its detail naming `destination`)
/// through `recorder`.
pub async fn export(
    app: &App,
    recorder: &Recorder,
    case_id: &CaseId,
    out: &Path,
    destination: &str,
) -> Result<Bundle, BundleError> {
    if out.exists()
        && std::fs::read_dir(out)
            .map(|mut d| d.next().is_some())
            .unwrap_or(true)
    {
        return Err(BundleError::NotEmpty(out.to_owned()));
    }
    let before = recorder.case_entries(case_id).map_err(BundleError::Read)?;
    if before.is_empty() {
        return Err(BundleError::NoEntries(case_id.clone()));
    }
    // The export's own signed record comes first and ends the bundle: it
    // counts the entries before it, so a verifier sees entries cut from the end.
    recorder
        .record(
            Some(case_id),
            crate::ledger::entry::Action::Exported,
            None,
            None,
            Some(serde_json::json!({ "bundle": destination, "entries": before.len() })),
        )
        .map_err(BundleError::Record)?;
    let entries = recorder.case_entries(case_id).map_err(BundleError::Read)?;
    for d in [
        bundle::ENTRIES,
        bundle::PROOFS,
        bundle::MANIFESTS,
        bundle::ROTATIONS,
    ] {
        create_private_dir(&out.join(d)).map_err(BundleError::Write)?;
    }
    let (checkpoint, initial, history, proofs, rotations) =
        recorder.ledger.with(|l| -> Result<_, BundleError> {
            let proofs = entries
                .iter()
                .map(|(i, _, _)| l.prove(*i))
                .collect::<Result<Vec<_>, _>>()
                .map_err(BundleError::Read)?;
            let mut history = vec![l.meta().initial_verifier_key.clone()];
            let lines = read_entries(&l.paths().entries()).map_err(BundleError::Read)?;
            let mut rotations = Vec::new();
            for r in l.rotations() {
                history.push(r.new.clone());
                let size = r.index + 1;
                let cp_path = l.paths().checkpoints().join(checkpoint_name(size));
                let note = std::fs::read(&cp_path).map_err(|source| BundleError::Checkpoint {
                    path: cp_path.clone(),
                    source,
                })?;
                let proof = crate::ledger::proof::TlogProof {
                    index: r.index,
                    hashes: l
                        .tree()
                        .inclusion_proof(r.index, size)
                        .map_err(|e| BundleError::Read(e.into()))?,
                    checkpoint: note,
                    extra: None,
                };
                let line = usize::try_from(r.index)
                    .ok()
                    .and_then(|i| lines.get(i))
                    .ok_or(BundleError::MissingRotation(r.index))?;
                rotations.push((r.index, line.clone(), proof));
            }
            Ok((
                l.latest_checkpoint().note.clone(),
                l.meta().initial_verifier_key.clone(),
                history,
                proofs,
                rotations,
            ))
        })?;
    write(&out.join(bundle::CASE), format!("{case_id}\n").as_bytes())?;
    write(&out.join(bundle::CHECKPOINT), &checkpoint)?;
    write(
        &out.join(bundle::VERIFIER_KEY),
        format!("{initial}\n").as_bytes(),
    )?;
    write(
        &out.join(bundle::KEY_HISTORY),
        (history.join("\n") + "\n").as_bytes(),
    )?;
    write(&out.join(bundle::README), BUNDLE_README.as_bytes())?;
    for (i, bytes, p) in &rotations {
        write(&out.join(format!("{}/{i}.json", bundle::ROTATIONS)), bytes)?;
        write(
            &out.join(format!("{}/{i}.tlog-proof", bundle::ROTATIONS)),
            &p.to_bytes(),
        )?;
    }
    for ((i, bytes, _), p) in entries.iter().zip(&proofs) {
        write(&out.join(format!("{}/{i}.json", bundle::ENTRIES)), bytes)?;
        write(
            &out.join(format!("{}/{i}.tlog-proof", bundle::PROOFS)),
            &p.to_bytes(),
        )?;
    }
    let store = app.store().await?;
    let mut manifests = 0;
    if let Ok(list) = crate::evidence::case::artefacts(store.as_ref(), case_id).await {
        for a in list {
            write(
                &out.join(format!("{}/{}.json", bundle::MANIFESTS, a.id)),
                &a.to_json(),
            )?;
            manifests += 1;
        }
    }
    Ok(Bundle {
        entries: entries.len(),
        manifests,
    })
}
