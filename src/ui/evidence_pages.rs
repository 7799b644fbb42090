//! The HTML of the evidence page and of a verification's outcome. As in
//! [`super::pages`], every value is escaped as it is written.

use maud::{Markup, html};

use super::auth::{CSRF_FIELD, Who};
use super::ledger_view::{CaseLedger, action_name};
use super::pages::{bytes, entry_what, layout, source_text};
use crate::engine::verify::Verified;
use crate::evidence::model::Artefact;
use crate::ids::CaseId;
use crate::sanitize::term;

pub fn evidence(who: &Who, case: &CaseId, artefacts: &[Artefact], l: &CaseLedger) -> Markup {
    // Derived artefacts are listed under their parent.
    let roots = artefacts.iter().filter(|a| {
        a.derived
            .as_ref()
            .is_none_or(|d| !artefacts.iter().any(|p| p.id == d.parent))
    });
    layout(
        &format!("Evidence of {case}"),
        Some(who),
        html! {
            h1 { "Evidence of " a href=(format!("/cases/{case}")) { (case) } }
            section aria-label="bundle" {
                h2 { "Bundle" }
                p {
                    "The case's ledger entries byte for byte, an inclusion proof of each, the signed checkpoint, "
                    "the verifier key and its rotations, and every manifest: everything a third party needs to check "
                    "this case's custody offline (" span.mono { "custody ledger verify-bundle" } ", or the steps in "
                    "its README with tools of their own). The export is itself a ledger entry naming you."
                }
                form.inline method="post" action=(format!("/cases/{case}/bundle")) {
                    @if let Some(t) = &who.csrf { input type="hidden" name=(CSRF_FIELD) value=(t); }
                    button type="submit" { "Export the bundle (tar)" }
                }
            }
            h2 { "Artefacts and their manifests" }
            @if artefacts.is_empty() { p { "No artefact recorded." } }
            ul.manifests {
                @for a in roots { (manifest(a, artefacts)) }
            }
            h2 { "Ledger entries of this case" }
            @if let Some(p) = &l.problem { p.error role="alert" { "The ledger cannot be read: " (term(p)) } }
            @if let Some(cp) = &l.checkpoint {
                details {
                    summary { "Latest signed checkpoint (" (cp.size) " entries)" }
                    pre.record { (term(&cp.note)) }
                }
            }
            @if l.entries.is_empty() {
                p { "None." }
            } @else {
                table.entries {
                    thead { tr {
                        th scope="col" { "Entry" } th scope="col" { "When" } th scope="col" { "Action" }
                        th scope="col" { "Actor" } th scope="col" { "What" } th scope="col" { "Proof" }
                    } }
                    tbody {
                        @for (i, e) in &l.entries {
                            tr id=(format!("entry-{i}")) {
                                td.num { a href=(format!("/cases/{case}/ledger/{i}")) title="the entry, byte for byte" { (i) } }
                                td.mono { (e.time) }
                                td { (action_name(e.action)) }
                                td { (term(&e.actor.name)) " (" (term(&e.actor.role)) ")" }
                                td { (entry_what(case, e)) }
                                td { a href=(format!("/cases/{case}/ledger/{i}/proof")) download=(format!("{i}.tlog-proof")) { "tlog-proof" } }
                            }
                        }
                    }
                }
            }
        },
    )
}

fn manifest(a: &Artefact, all: &[Artefact]) -> Markup {
    let children = all
        .iter()
        .filter(|c| c.derived.as_ref().is_some_and(|d| d.parent == a.id));
    html! {
        li {
            details {
                summary {
                    span.mono { (a.id) } " " (format!("{:?}", a.kind)) ", " (bytes(a.raw.size)) ", "
                    (term(&source_text(&a.source)))
                }
                pre.record { (term(&String::from_utf8_lossy(&a.to_json()))) }
            }
            @let children: Vec<_> = children.collect();
            @if !children.is_empty() {
                ul.derived aria-label=(format!("derived from {}", a.id)) {
                    @for c in children { (manifest(c, all)) }
                }
            }
        }
    }
}

pub fn verification(who: &Who, case: &CaseId, v: &Verified) -> Markup {
    let r = &v.verification;
    let failed = r.checks.iter().filter(|c| !c.ok).count();
    layout(
        &format!("Verification of {case}"),
        Some(who),
        html! {
            h1 { "Verification of " a href=(format!("/cases/{case}")) { (case) } }
            @if r.ok() {
                p.verified role="status" {
                    "Every artefact was read again from the store and matched both its digests; every ledger entry of the case is in the signed log and agrees with the store."
                }
            } @else {
                p.error role="alert" { "Problems found: " (failed) " artefacts failed, " (r.ledger_problems.len()) " ledger problems." }
            }
            p { "Recorded as ledger entry " a href=(format!("/cases/{case}/evidence#entry-{}", v.index)) { (v.index) } ", naming " (term(&who.analyst)) "." }
            table.checks {
                thead { tr { th scope="col" { "Artefact" } th scope="col" { "Result" } } }
                tbody {
                    @for c in &r.checks {
                        tr {
                            td.mono { (c.artefact) }
                            td {
                                @if c.ok { span.verified { "both digests match" } }
                                @else { strong.error { "FAILED: " } (term(&c.problems.join("; "))) }
                            }
                        }
                    }
                }
            }
            @for p in &r.ledger_problems { p.error { "Ledger: " (term(p)) } }
            @for u in &r.unrecorded { p.muted { (term(u)) " has no manifest: it was never recorded complete." } }
        },
    )
}
