//! `custody cases` and `custody show <case>`.

use anyhow::Context;

use super::{Env, Outcome};
use crate::evidence::Artefact;
use crate::evidence::case;
use crate::ids::CaseId;

#[derive(Debug, clap::Args)]
pub struct ShowArgs {
    pub case: CaseId,
}

pub async fn run_cases(env: &Env) -> anyhow::Result<Outcome> {
    let store = env.store().await?;
    let cases = case::list_cases(store.as_ref())
        .await
        .with_context(|| format!("cannot list the cases in {}", store.location()))?;
    env.print(&cases, || {
        if cases.is_empty() {
            return format!("no cases in {}\n", store.location());
        }
        cases
            .iter()
            .map(|c| {
                format!(
                    "{}\t{} artefacts\t{} raw bytes\t{} stored bytes\n",
                    c.case, c.artefacts, c.raw_bytes, c.stored_bytes
                )
            })
            .collect()
    })?;
    Ok(Outcome::Ok)
}

pub async fn run_show(env: &Env, args: ShowArgs) -> anyhow::Result<Outcome> {
    let store = env.store().await?;
    let list = case::artefacts(store.as_ref(), &args.case)
        .await
        .with_context(|| format!("cannot read case {}", args.case))?;
    let detail = serde_json::json!({ "command": "show", "artefacts": list.len() });
    env.recorder()?
        .record(
            Some(&args.case),
            crate::ledger::entry::Action::Accessed,
            None,
            None,
            Some(detail),
        )
        .context("cannot record the access in the ledger")?;
    env.print(&list, || {
        let mut s = format!("case {} in {}\n", args.case, store.location());
        for a in &list {
            s.push_str(&artefact_line(a));
        }
        s
    })?;
    Ok(Outcome::Ok)
}

/// One artefact, as the human output shows it.
/// An artefact for the terminal: its source path, resource and notes come
/// from the evidence, so their control characters are shown, never sent.
pub fn artefact_line(a: &Artefact) -> String {
    use crate::sanitize::term;
    let mut s = format!(
        "{}  {}  {}{}\n  raw     {} bytes  sha256:{}\n  stored  {} bytes  sha256:{}  {}\n  window  {} .. {}\n",
        a.id,
        a.kind.as_str(),
        term(&a.source.resource),
        a.source
            .path
            .as_deref()
            .map(|p| format!(" {}", term(p)))
            .unwrap_or_default(),
        a.raw.size,
        a.raw.sha256,
        a.stored.size,
        a.stored.sha256,
        a.stored.key,
        crate::clock::rfc3339(a.started),
        crate::clock::rfc3339(a.finished),
    );
    if let Some(c) = &a.source_changed {
        s.push_str(&format!("  WARNING {}\n", term(c)));
    }
    for n in &a.notes {
        s.push_str(&format!("  note    {}\n", term(n)));
    }
    s
}
