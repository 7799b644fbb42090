//! `custody ledger …`: the custody ledger's commands.

use std::path::PathBuf;

use anyhow::{Context, bail};
use base64::Engine as _;
use clap::Subcommand;

use super::{Env, Outcome};
use crate::ids::CaseId;
use crate::ledger::verify;
use crate::ledger::{Ledger, checkpoint_name, default_origin};

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

async fn export(env: &Env, case_id: &CaseId, out: &std::path::Path) -> anyhow::Result<()> {
    let recorder = env.recorder()?;
    let made =
        crate::engine::bundle::export(env, &recorder, case_id, out, &out.display().to_string())
            .await
            .with_context(|| format!("cannot export case {case_id} to {}", out.display()))?;
    let (entries, manifests) = (made.entries, made.manifests);
    let report = serde_json::json!({ "case": case_id, "dir": out, "entries": entries, "manifests": manifests });
    env.print(&report, || {
        format!(
            "bundle of case {case_id}: {} entries, {manifests} manifests in {}\n",
            entries,
            out.display()
        )
    })
}
