//! `custody verify <case>`: exit 1 when any artefact does not match its record.

use anyhow::Context;

use super::{Env, Outcome};
use crate::evidence::case;
use crate::ids::CaseId;

#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    pub case: CaseId,
}

pub async fn run(env: &Env, args: VerifyArgs) -> anyhow::Result<Outcome> {
    let store = env.store()?;
    let v = case::verify_case(store.as_ref(), &args.case)
        .await
        .with_context(|| format!("cannot verify case {}", args.case))?;
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
        let failed = v.checks.iter().filter(|c| !c.ok).count();
        s.push_str(&format!(
            "case {}: {} artefacts, {} verified, {} failed\n",
            v.case,
            v.checks.len(),
            v.checks.len() - failed,
            failed
        ));
        s
    })?;
    Ok(if v.ok() {
        Outcome::Ok
    } else {
        Outcome::VerificationFailed
    })
}
