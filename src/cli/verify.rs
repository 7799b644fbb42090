//! `custody verify <case>`: re-reads every artefact, compares both digests,
//! and checks the store against the ledger. Exit 1 on any mismatch.

use anyhow::Context;

use super::{Env, Outcome};
use crate::evidence::case::{self, CaseVerification, EvidenceError};
use crate::ids::CaseId;
use crate::ledger::entry::{Action, Entry};
use crate::ledger::merkle::{leaf_hash, verify_inclusion};

#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    pub case: CaseId,
}

pub async fn run(env: &Env, args: VerifyArgs) -> anyhow::Result<Outcome> {
    let store = env.store().await?;
    let recorder = env.recorder()?;
    let entries = recorder
        .case_entries(&args.case)
        .context("cannot read the ledger")?;
    // Each of the case's entries must be in the signed log, byte for byte.
    let mut ledger_problems: Vec<String> = recorder.ledger.with(|l| {
        let cp = l.latest_checkpoint().clone();
        entries
            .iter()
            .filter(|(i, bytes, _)| {
                !l.tree().inclusion_proof(*i, cp.size).is_ok_and(|p| {
                    verify_inclusion(*i, cp.size, &leaf_hash(bytes), &p, &cp.root).is_ok()
                })
            })
            .map(|(i, _, _)| format!("ledger entry {i} is not in the signed log as stored"))
            .collect()
    });
    let mut v = match case::verify_case(store.as_ref(), &args.case).await {
        Ok(v) => v,
        // A case the ledger knows but the store has lost entirely fails verification; it is not a typo.
        Err(EvidenceError::NoSuchCase { .. }) if !entries.is_empty() => CaseVerification {
            case: args.case.clone(),
            location: store.location(),
            checks: Vec::new(),
            unrecorded: Vec::new(),
            ledger_problems: Vec::new(),
        },
        Err(e) => return Err(e).with_context(|| format!("cannot verify case {}", args.case)),
    };
    let artefacts = case::artefacts(store.as_ref(), &args.case)
        .await
        .unwrap_or_default();
    // Derived artefacts are read again from their parent by extents.
    for c in &mut v.checks {
        if let Some(a) = artefacts
            .iter()
            .find(|a| a.id == c.artefact && a.derived.is_some())
        {
            let found = crate::process::derived::recheck(store.clone(), &artefacts, a).await;
            if !found.is_empty() {
                c.ok = false;
                c.problems
                    .extend(found.into_iter().map(|p| format!("derived: {p}")));
            }
        }
    }
    let plain: Vec<(u64, Entry)> = entries.iter().map(|(i, _, e)| (*i, e.clone())).collect();
    ledger_problems.extend(case::compare_with_ledger(&artefacts, &plain));
    v.ledger_problems.extend(ledger_problems);
    let failed = v.checks.iter().filter(|c| !c.ok).count();
    let detail = serde_json::json!({
        "ok": v.ok(),
        "artefacts": v.checks.len(),
        "failed": failed,
        "ledger_problems": v.ledger_problems.len(),
    });
    recorder
        .record(Some(&args.case), Action::Verified, None, None, Some(detail))
        .context("cannot record the verification in the ledger")?;
    env.print(&v, || {
        let mut s = String::new();
        for c in &v.checks {
            if c.ok {
                s.push_str(&format!("OK      {}\n", c.artefact));
            } else {
                s.push_str(&format!(
                    "FAILED  {}: {}\n",
                    c.artefact,
                    c.problems.join("; ")
                ));
            }
        }
        for p in &v.ledger_problems {
            s.push_str(&format!("FAILED  ledger: {p}\n"));
        }
        for u in &v.unrecorded {
            s.push_str(&format!(
                "NOTE    {u} has no manifest: it was never recorded complete\n"
            ));
        }
        s.push_str(&format!(
            "case {}: {} artefacts, {} verified, {} failed, {} ledger problems\n",
            v.case,
            v.checks.len(),
            v.checks.len() - failed,
            failed,
            v.ledger_problems.len()
        ));
        s
    })?;
    Ok(if v.ok() {
        Outcome::Ok
    } else {
        Outcome::VerificationFailed
    })
}
