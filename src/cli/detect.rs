//! `custody detect`: Sigma rules and indicator lists over a case's
//! timeline; `--check` only reads the rules and says which it can evaluate.

use std::path::PathBuf;

use super::{Env, Outcome};
use crate::detect::rules::SetAside;
use crate::engine::detect::{self, DetectReport, DetectRequest};
use crate::ids::CaseId;
use crate::sanitize::term;

#[derive(Debug, clap::Args)]
pub struct DetectArgs {
    /// The case whose timeline is searched (not needed with --check).
    #[arg(required_unless_present = "check")]
    pub case: Option<CaseId>,
    /// Sigma rule files, or directories of them (read recursively: `.yml`, `.yaml`).
    #[arg(long = "rules", value_name = "PATH")]
    pub rules: Vec<PathBuf>,
    /// Indicator lists: plain text, CSV or a MISP event (JSON).
    #[arg(long = "iocs", value_name = "FILE")]
    pub iocs: Vec<PathBuf>,
    /// Leave out custody's own rules (`detection_rules/`).
    #[arg(long)]
    pub no_builtin: bool,
    /// Read the rules only: how many custody evaluates, which it sets aside and why.
    #[arg(long, conflicts_with = "iocs")]
    pub check: bool,
}

impl DetectArgs {
    fn request(&self, case: CaseId) -> DetectRequest {
        DetectRequest {
            case,
            rules: self.rules.clone(),
            builtin: !self.no_builtin,
            iocs: self.iocs.clone(),
        }
    }
}

#[derive(Debug, serde::Serialize)]
struct Check {
    files: usize,
    evaluable: usize,
    correlations: usize,
    set_aside: usize,
    /// (kind, reason) → how many rules.
    reasons: Vec<Reason>,
    rules_set_aside: Vec<SetAside>,
}

#[derive(Debug, serde::Serialize)]
struct Reason {
    kind: &'static str,
    reason: String,
    rules: usize,
}

pub async fn run(env: &Env, a: DetectArgs) -> anyhow::Result<Outcome> {
    let Some(case) = a.case.clone().filter(|_| !a.check) else {
        return check(env, &a);
    };
    let report = detect::detect(env, &a.request(case)).await?;
    env.print(&report, || human(&report))?;
    Ok(Outcome::Ok)
}

fn check(env: &Env, a: &DetectArgs) -> anyhow::Result<Outcome> {
    let (set, _) = detect::read_rules(&a.rules, !a.no_builtin, &[])?;
    let reasons = set
        .reasons()
        .into_iter()
        .map(|((kind, reason), rules)| Reason {
            kind,
            reason,
            rules,
        })
        .collect();
    let out = Check {
        files: set.files,
        evaluable: set.rules.len() + set.correlations.len(),
        correlations: set.correlations.len(),
        set_aside: set.set_aside.len(),
        reasons,
        rules_set_aside: set.set_aside,
    };
    env.print(&out, || {
        let mut s = format!(
            "{} rule files: {} rules evaluable ({} correlations), {} set aside\n",
            out.files, out.evaluable, out.correlations, out.set_aside
        );
        for r in &out.reasons {
            s.push_str(&format!(
                "  {:>5}  {:<12} {}\n",
                r.rules,
                r.kind,
                term(&r.reason)
            ));
        }
        s
    })?;
    Ok(Outcome::Ok)
}

fn human(r: &DetectReport) -> String {
    let mut s = format!(
        "case {}: {} rules evaluated ({} correlations) from {} files, {} set aside; {} indicator lists\n\
         {} artefacts read again, {} records evaluated\n",
        r.case,
        r.rules_evaluated,
        r.correlations,
        r.rule_files,
        r.set_aside.len(),
        r.lists.len(),
        r.artefacts,
        r.records,
    );
    for l in &r.lists {
        s.push_str(&format!(
            "  list {}: {} indicators, {} rows not used\n",
            term(&l.name),
            l.indicators,
            l.skipped
        ));
        for why in &l.skipped_shown {
            s.push_str(&format!("    {}\n", term(why)));
        }
    }
    s.push_str(&format!("\n{} detections\n", r.detections.len()));
    for d in &r.detections {
        let span = match (d.rows.first(), d.rows.last()) {
            (Some(_), Some(_)) => format!("{} events", d.rows.len()),
            _ => String::new(),
        };
        s.push_str(&format!(
            "  {:<13} {}  [{}]  {}\n",
            d.level,
            term(&d.title),
            term(&d.actors.join(", ")),
            span
        ));
    }
    if !r.set_aside.is_empty() {
        s.push_str("\nset aside:\n");
        for a in &r.set_aside {
            s.push_str(&format!(
                "  {:<12} {}{}: {}\n",
                a.kind,
                term(&a.file),
                a.title
                    .as_deref()
                    .map(|t| format!(" ({})", term(t)))
                    .unwrap_or_default(),
                term(&a.reason)
            ));
        }
    }
    if r.unplaced > 0 {
        s.push_str(&format!(
            "\n{} matching records are duplicates the timeline holds once; their matches are on the kept rows\n",
            r.unplaced
        ));
    }
    s.push_str("\n`custody findings CASE` lists them with their events; `custody timeline CASE rule:ID` searches them.\n");
    s
}
