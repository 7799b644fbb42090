//! `custody verify <case>`: re-reads every artefact, compares both digests,
//! and checks the store against the ledger. Exit 1 on any mismatch.

use super::{Env, Outcome};
use crate::ids::CaseId;

#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    pub case: CaseId,
}

pub async fn run(env: &Env, args: VerifyArgs) -> anyhow::Result<Outcome> {
    let recorder = env.recorder()?;
    let v = crate::engine::verify::verify_case(env, &recorder, &args.case)
        .await?
        .verification;
    let failed = v.checks.iter().filter(|c| !c.ok).count();
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
