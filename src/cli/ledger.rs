//! `custody ledger …`: the custody ledger's commands.

use std::path::PathBuf;

use anyhow::{Context, bail};
use base64::Engine as _;
use clap::Subcommand;

use super::{Env, Outcome};
use crate::evidence::case;
use crate::ids::CaseId;
use crate::ledger::verify::{self, bundle};
use crate::ledger::{Ledger, checkpoint_name, default_origin, read_entries, write_atomic};

#[derive(Debug, Subcommand)]
pub enum LedgerCommand {
    /// Create the ledger and its signing key.
    Init {
        /// Log origin and key name (default: `custody/HOST/RANDOM-ID`).
        #[arg(long)]
        origin: Option<String>,
    },
    /// Print the latest signed checkpoint (a C2SP signed note).
    Checkpoint,
    /// Print a C2SP tlog-proof of entry INDEX against the latest checkpoint.
    Prove { index: u64 },
    /// Print a consistency proof between two checkpointed tree sizes.
    Consistency {
        old_size: u64,
        /// Default: the latest checkpoint's size.
        new_size: Option<u64>,
    },
    /// Verify the whole ledger: every entry, checkpoint, signature and link. Exit 1 on any problem.
    Verify {
        /// The verifier key you trust (default: the one in ledger.json).
        #[arg(long, value_name = "VKEY")]
        key: Option<String>,
        /// A checkpoint you saw earlier (a file, e.g. from `custody ledger
        /// checkpoint`): the log must extend it, so a ledger rolled back to
        /// an older copy or rewritten after a truncation is refused.
        #[arg(long, value_name = "FILE")]
        checkpoint: Option<PathBuf>,
        /// Also check that every entry is canonical JSON of the entry schema (slower).
        #[arg(long)]
        strict: bool,
    },
    /// Write a self-contained bundle of one case's entries, proofs, checkpoint, key and manifests.
    Export {
        #[arg(long)]
        case: CaseId,
        #[arg(short, long, value_name = "DIR")]
        output: PathBuf,
    },
    /// Verify an exported bundle. Exit 1 on any problem.
    VerifyBundle {
        dir: PathBuf,
        /// The verifier key you trust (default: the bundle's verifier.key).
        #[arg(long, value_name = "VKEY")]
        key: Option<String>,
    },
    /// Replace the signing key; the change is an entry signed under the old key.
    RotateKey,
    /// Record an action taken outside custody (a hand-over, a copy to another medium).
    Record {
        #[arg(long)]
        case: CaseId,
        #[arg(long, value_enum)]
        action: ManualAction,
        /// Facts about the action, as a JSON object.
        #[arg(long, value_name = "JSON")]
        detail: Option<String>,
        /// Append this many entries, one commit each, printing each index as it
        /// is acknowledged (for durability testing).
        #[arg(long, default_value_t = 1, hide = true)]
        repeat: u64,
    },
}

/// Actions an operator can record by hand.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ManualAction {
    Copied,
    Accessed,
    Verified,
    Exported,
    Released,
    Failed,
}

impl From<ManualAction> for crate::ledger::entry::Action {
    fn from(a: ManualAction) -> Self {
        use crate::ledger::entry::Action;
        match a {
            ManualAction::Copied => Action::Copied,
            ManualAction::Accessed => Action::Accessed,
            ManualAction::Verified => Action::Verified,
            ManualAction::Exported => Action::Exported,
            ManualAction::Released => Action::Released,
            ManualAction::Failed => Action::Failed,
        }
    }
}

pub async fn run(env: &Env, cmd: LedgerCommand) -> anyhow::Result<Outcome> {
    match cmd {
        LedgerCommand::Init { origin } => {
            let paths = env.ledger_paths();
            let origin = origin.unwrap_or_else(default_origin);
            let l = Ledger::init(&paths, &origin, env.clock.clone(), env.actor("operator"))
                .with_context(|| format!("cannot create the ledger at {}", paths.dir.display()))?;
            let out = serde_json::json!({ "dir": paths.dir, "origin": origin, "verifier_key": l.verifier_key(), "key_file": paths.key });
            env.print(&out, || {
                format!(
                    "ledger created at {}\norigin        {origin}\nverifier key  {}\n",
                    paths.dir.display(),
                    l.verifier_key()
                )
            })?;
        }
        LedgerCommand::Checkpoint => {
            let note = env.ledger()?.with(|l| l.latest_checkpoint().note.clone());
            let text = String::from_utf8_lossy(&note).into_owned();
            env.print(&serde_json::json!({ "checkpoint": text }), || text.clone())?;
        }
        LedgerCommand::Prove { index } => {
            let p = env
                .ledger()?
                .with(|l| l.prove(index))
                .with_context(|| format!("cannot prove entry {index}"))?;
            let text = String::from_utf8_lossy(&p.to_bytes()).into_owned();
            env.print(&serde_json::json!({ "tlog_proof": text }), || text.clone())?;
        }
        LedgerCommand::Consistency { old_size, new_size } => {
            let ledger = env.ledger()?;
            let (new, proof, r1, r2) = ledger.with(|l| -> anyhow::Result<_> {
                let new = new_size.unwrap_or(l.latest_checkpoint().size);
                let checkpoints = l.paths().checkpoints();
                for size in [old_size, new] {
                    if !checkpoints.join(checkpoint_name(size)).exists() {
                        bail!("no checkpoint was signed at tree size {size}");
                    }
                }
                let proof = l.tree().consistency_proof(old_size, new)?;
                Ok((new, proof, l.root(old_size)?, l.root(new)?))
            })?;
            let b64 = |h: &crate::ledger::merkle::Hash| {
                base64::engine::general_purpose::STANDARD.encode(h.0)
            };
            let hashes: Vec<String> = proof.iter().map(b64).collect();
            let out = serde_json::json!({ "old_size": old_size, "new_size": new, "old_root": b64(&r1), "new_root": b64(&r2), "proof": hashes });
            env.print(&out, || {
                let mut s = format!("old {old_size} {}\nnew {new} {}\n", b64(&r1), b64(&r2));
                for h in &hashes {
                    s.push_str(h);
                    s.push('\n');
                }
                s
            })?;
        }
        LedgerCommand::Verify {
            key,
            checkpoint,
            strict,
        } => {
            let paths = env.ledger_paths();
            let trusted = checkpoint
                .map(|p| {
                    std::fs::read(&p).with_context(|| {
                        format!("cannot read the trusted checkpoint {}", p.display())
                    })
                })
                .transpose()?;
            let mut report =
                verify::verify_ledger_since(&paths, key.as_deref(), strict, trusted.as_deref())
                    .with_context(|| {
                        format!("cannot read the ledger at {}", paths.dir.display())
                    })?;
            if env.store_is_cloud() {
                for m in env.check_mirror().await? {
                    report.problems.push(format!("ledger mirror: {m}"));
                }
            }
            print_report(env, &report, "ledger")?;
            if !report.ok() {
                return Ok(Outcome::VerificationFailed);
            }
        }
        LedgerCommand::VerifyBundle { dir, key } => {
            let report = verify::verify_bundle(&dir, key.as_deref())
                .with_context(|| format!("cannot read the bundle at {}", dir.display()))?;
            print_report(env, &report, "bundle")?;
            if !report.ok() {
                return Ok(Outcome::VerificationFailed);
            }
        }
        LedgerCommand::Export { case, output } => export(env, &case, &output).await?,
        LedgerCommand::Record {
            case,
            action,
            detail,
            repeat,
        } => {
            let detail = detail
                .map(|d| serde_json::from_str::<serde_json::Value>(&d))
                .transpose()
                .context("--detail is not valid JSON")?;
            if detail.as_ref().is_some_and(|d| !d.is_object()) {
                bail!("--detail must be a JSON object");
            }
            let recorder = env.recorder()?;
            let mut indexes = Vec::new();
            let mut checkpoint = 0;
            for _ in 0..repeat {
                let r = recorder
                    .record(Some(&case), action.into(), None, None, detail.clone())
                    .context("cannot append to the ledger")?;
                checkpoint = r.checkpoint_size;
                if !env.json {
                    // One line per acknowledged entry, flushed as it happens.
                    let lines: String = r
                        .indexes
                        .iter()
                        .map(|i| format!("acknowledged {i} checkpoint {checkpoint}\n"))
                        .collect();
                    super::write_stdout(lines.as_bytes())?;
                }
                indexes.extend(r.indexes);
            }
            if env.json {
                env.print(
                    &serde_json::json!({ "indexes": indexes, "checkpoint_size": checkpoint }),
                    String::new,
                )?;
            }
        }
        LedgerCommand::RotateKey => {
            let actor = env.actor("operator");
            let vkey = env
                .ledger()?
                .with(|l| l.rotate_key(actor))
                .context("cannot rotate the ledger key")?;
            env.print(&serde_json::json!({ "verifier_key": vkey }), || {
                format!("new verifier key {vkey}\n")
            })?;
        }
    }
    Ok(Outcome::Ok)
}

fn print_report(env: &Env, r: &verify::Report, what: &str) -> anyhow::Result<()> {
    env.print(r, || {
        let mut s = String::new();
        for p in &r.problems {
            s.push_str(&format!("FAILED  {p}\n"));
        }
        for w in &r.warnings {
            s.push_str(&format!("WARNING {w}\n"));
        }
        s.push_str(&format!(
            "{what}: {} entries, {} checkpoints, latest size {} root {}: {}\n",
            r.entries,
            r.checkpoints,
            r.latest_size,
            r.latest_root,
            if r.ok() { "verified" } else { "NOT verified" }
        ));
        s
    })
}

const BUNDLE_README: &str = "\
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

async fn export(env: &Env, case_id: &CaseId, out: &std::path::Path) -> anyhow::Result<()> {
    if out.exists()
        && std::fs::read_dir(out)
            .map(|mut d| d.next().is_some())
            .unwrap_or(true)
    {
        bail!("{} exists and is not empty", out.display());
    }
    let recorder = env.recorder()?;
    let before = recorder
        .case_entries(case_id)
        .context("cannot read the ledger")?;
    if before.is_empty() {
        bail!("the ledger has no entries for case {case_id}");
    }
    // The export's own signed record comes first and ends the bundle: it
    // counts the entries before it, so a verifier sees entries cut from the end.
    recorder
        .record(
            Some(case_id),
            crate::ledger::entry::Action::Exported,
            None,
            None,
            Some(serde_json::json!({ "bundle": out, "entries": before.len() })),
        )
        .context("cannot record the export in the ledger")?;
    let entries = recorder
        .case_entries(case_id)
        .context("cannot read the ledger")?;
    for d in [
        bundle::ENTRIES,
        bundle::PROOFS,
        bundle::MANIFESTS,
        bundle::ROTATIONS,
    ] {
        crate::ledger::create_private_dir(&out.join(d))
            .with_context(|| format!("cannot create {}", out.join(d).display()))?;
    }
    let (checkpoint, initial, history, proofs, rotations) =
        recorder.ledger.with(|l| -> anyhow::Result<_> {
            let proofs = entries
                .iter()
                .map(|(i, _, _)| l.prove(*i))
                .collect::<Result<Vec<_>, _>>()?;
            let mut history = vec![l.meta().initial_verifier_key.clone()];
            let lines = read_entries(&l.paths().entries())?;
            let mut rotations = Vec::new();
            for r in l.rotations() {
                history.push(r.new.clone());
                let size = r.index + 1;
                let cp_path = l.paths().checkpoints().join(checkpoint_name(size));
                let note = std::fs::read(&cp_path)
                    .with_context(|| format!("cannot read {}", cp_path.display()))?;
                let proof = crate::ledger::proof::TlogProof {
                    index: r.index,
                    hashes: l.tree().inclusion_proof(r.index, size)?,
                    checkpoint: note,
                    extra: None,
                };
                let line = usize::try_from(r.index)
                    .ok()
                    .and_then(|i| lines.get(i))
                    .with_context(|| format!("the rotation at entry {} is missing", r.index))?;
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
    write_atomic(&out.join(bundle::CASE), format!("{case_id}\n").as_bytes())?;
    write_atomic(&out.join(bundle::CHECKPOINT), &checkpoint)?;
    write_atomic(
        &out.join(bundle::VERIFIER_KEY),
        format!("{initial}\n").as_bytes(),
    )?;
    write_atomic(
        &out.join(bundle::KEY_HISTORY),
        (history.join("\n") + "\n").as_bytes(),
    )?;
    write_atomic(&out.join(bundle::README), BUNDLE_README.as_bytes())?;
    for (i, bytes, p) in &rotations {
        write_atomic(&out.join(format!("{}/{i}.json", bundle::ROTATIONS)), bytes)?;
        write_atomic(
            &out.join(format!("{}/{i}.tlog-proof", bundle::ROTATIONS)),
            &p.to_bytes(),
        )?;
    }
    for ((i, bytes, _), p) in entries.iter().zip(&proofs) {
        write_atomic(&out.join(format!("{}/{i}.json", bundle::ENTRIES)), bytes)?;
        write_atomic(
            &out.join(format!("{}/{i}.tlog-proof", bundle::PROOFS)),
            &p.to_bytes(),
        )?;
    }
    let store = env.store().await?;
    let mut manifests = 0;
    if let Ok(list) = case::artefacts(store.as_ref(), case_id).await {
        for a in list {
            write_atomic(
                &out.join(format!("{}/{}.json", bundle::MANIFESTS, a.id)),
                &a.to_json(),
            )?;
            manifests += 1;
        }
    }
    let report = serde_json::json!({ "case": case_id, "dir": out, "entries": entries.len(), "manifests": manifests });
    env.print(&report, || {
        format!(
            "bundle of case {case_id}: {} entries, {manifests} manifests in {}\n",
            entries.len(),
            out.display()
        )
    })
}
