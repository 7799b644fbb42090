//! The HTML of each page, with maud: every value is escaped as it is
//! written, and log values first have their control characters made
//! visible (`crate::sanitize::term`), so a record holding markup, script or
//! terminal escapes shows as the text it is.

use axum::http::StatusCode;
use maud::{DOCTYPE, Markup, html};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Deserialize;

use super::auth::{CSRF_FIELD, Role, Who};
use super::ledger_view::{ArtefactState, CaseLedger, action_name};
use crate::engine::search::{Sample, SearchResults};
use crate::evidence::case::CaseSummary;
use crate::evidence::model::Artefact;
use crate::ids::CaseId;
use crate::ledger::entry::{Action, Entry};
use crate::queue::Job;
use crate::sanitize::term;
use crate::timeline::annotations::{Annotation, Standing};
use crate::timeline::detections::Stored;
use crate::timeline::store::{Cursor, Facet, Page, Row};

/// The explorer's query string.
#[derive(Debug, Default, Deserialize)]
pub struct ExploreParams {
    #[serde(default)]
    pub q: String,
    #[serde(default)]
    pub offset: usize,
    /// Exact counts however long they take, rather than estimates for a
    /// broad query.
    #[serde(default, deserialize_with = "flag")]
    pub exact: bool,
    /// The rows just after this event (`TIME_US.ID`), as Next links give it.
    #[serde(default)]
    pub after: Option<String>,
    /// The rows just before this event, as Previous links give it.
    #[serde(default)]
    pub before: Option<String>,
}

impl ExploreParams {
    /// Where the rows start: a cursor, else the offset.
    pub fn page(&self) -> Result<Page, String> {
        let cursor = |s: &str| s.parse::<Cursor>();
        match (&self.after, &self.before) {
            (Some(_), Some(_)) => Err("give `after` or `before`, not both".to_owned()),
            (Some(a), None) => Ok(Page::After(cursor(a)?)),
            (None, Some(b)) => Ok(Page::Before(cursor(b)?)),
            (None, None) => Ok(Page::Offset(self.offset)),
        }
    }
}

/// `exact=1` (or `true`, `on`) from a query string.
fn flag<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    let s = String::deserialize(d)?;
    match s.as_str() {
        "1" | "true" | "on" | "yes" => Ok(true),
        "" | "0" | "false" | "off" | "no" => Ok(false),
        _ => Err(serde::de::Error::custom(format!(
            "`exact` is 1 or 0, not `{s}`"
        ))),
    }
}

/// What the explorer shows beside the rows.
#[derive(Debug, Default)]
pub struct Extras {
    pub marks: std::collections::BTreeMap<i64, crate::timeline::annotations::Standing>,
    /// The case's first and last event, and the histogram's bucket width.
    pub span: Option<(i64, i64)>,
    pub width_us: i64,
    /// Saved searches with how many events each matches now.
    pub saved: Vec<(
        crate::timeline::store::SavedSearch,
        Option<crate::engine::search::Counted>,
    )>,
}

/// What the overview shows of a case's timeline.
#[derive(Debug)]
pub struct CaseTimeline {
    pub summary: SearchResults,
    pub detections: Vec<Stored>,
    /// Each artefact loaded into the timeline.
    pub ingested: std::collections::BTreeMap<String, crate::timeline::store::Ingested>,
    /// The case's first and last event, and the histogram's bucket width.
    pub span: Option<(i64, i64)>,
    pub width_us: i64,
}

pub(super) fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// A job's rows: its alert and its steps, for a page or the overview.
pub(super) fn job_table(jobs: &[&Job]) -> Markup {
    html! {
        table.jobs {
            thead { tr {
                th scope="col" { "Received" } th scope="col" { "Job" } th scope="col" { "Source" }
                th scope="col" { "Alert" } th scope="col" { "Case" } th scope="col" { "State" } th scope="col" { "Steps" }
            } }
            tbody {
                @for j in jobs {
                    tr {
                        td.mono { (rfc3339(j.received)) }
                        td.mono { (term(&j.id)) }
                        td { (term(&j.source)) }
                        td.mono { (term(&j.alert_id)) }
                        td { a href=(format!("/cases/{}", j.case)) { (j.case) } }
                        td { (j.state.as_str()) }
                        td {
                            details {
                                summary { (j.steps.len()) " steps" }
                                ol.steps {
                                    @for s in &j.steps { li.mono { (term(&s.to_string())) } }
                                }
                                p { "The alert:" }
                                pre.record { (crate::sanitize::term_lines(&serde_json::to_string_pretty(&j.alert).unwrap_or_default())) }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Everything the overview shows.
#[derive(Debug)]
pub struct Overview {
    pub artefacts: Vec<Artefact>,
    pub timeline: Option<CaseTimeline>,
    pub ledger: CaseLedger,
    /// The webhook server's jobs for the case, oldest first.
    pub jobs: Vec<crate::queue::Job>,
}

pub(super) fn layout(title: &str, who: Option<&Who>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · custody" }
                link rel="stylesheet" href="/assets/app.css";
                script src="/assets/app.js" defer {}
            }
            body {
                header.top {
                    a.brand href="/" { "custody" }
                    nav aria-label="main" { a href="/" { "Cases" } " " a href="/jobs" { "Jobs" } " " a href="/readiness" { "Readiness" } }
                    @if let Some(w) = who {
                        span.who { (w.analyst) " (" (role_name(w.role)) ")" }
                        @if let (Some(t), true) = (&w.csrf, w.signed_in) {
                            form.inline method="post" action="/logout" {
                                input type="hidden" name=(CSRF_FIELD) value=(t);
                                button type="submit" { "Sign out" }
                            }
                        }
                    }
                }
                main id="main" { (body) }
            }
        }
    }
}

fn role_name(r: Role) -> &'static str {
    match r {
        Role::ReadOnly => "read-only",
        Role::Investigator => "investigator",
    }
}

/// The sign-in page; `provider` names the `[ui.oidc]` provider when there is one.
pub fn login(token: &str, failed: Option<&str>, provider: Option<&str>) -> Markup {
    layout(
        "Sign in",
        None,
        html! {
            h1 { "Sign in" }
            @if let Some(f) = failed { p.error role="alert" { (term(f)) } }
            @if let Some(p) = provider {
                p { a.button href="/login/oidc" { "Sign in with " (p) } }
            }
            form.login method="post" action="/login" {
                input type="hidden" name=(CSRF_FIELD) value=(token);
                label for="name" { "Name" }
                input id="name" name="name" autocomplete="username" required;
                label for="password" { "Password" }
                input id="password" name="password" type="password" autocomplete="current-password" required;
                button type="submit" { "Sign in" }
            }
        },
    )
}

/// After a sign-in at the identity provider: on to the cases. A page, not
/// a redirect, so the browser's next request starts here and carries the
/// same-site session cookie that a redirect chain begun at the provider
/// would leave behind.
pub fn signed_in(analyst: &str) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta http-equiv="refresh" content="0;url=/";
                title { "Signed in · custody" }
                link rel="stylesheet" href="/assets/app.css";
            }
            body {
                main id="main" {
                    h1 { "Signed in" }
                    p { "Signed in as " (analyst) ". " a href="/" { "Go to the cases" } }
                }
            }
        }
    }
}

pub fn error(who: Option<&Who>, status: StatusCode, message: &str) -> Markup {
    layout(
        "Error",
        who,
        html! {
            h1 { (status.as_u16()) " " (status.canonical_reason().unwrap_or("")) }
            p.error role="alert" { (term(message)) }
        },
    )
}

/// Where an artefact came from, in one line.
pub(super) fn source_text(s: &crate::ledger::entry::Source) -> String {
    let mut out = s.resource.clone();
    for v in [&s.host, &s.path, &s.region, &s.account, &s.log_format]
        .into_iter()
        .flatten()
    {
        out.push_str(" · ");
        out.push_str(v);
    }
    out
}

pub(super) fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS.get(u).copied().unwrap_or("B"))
    }
}

pub fn cases(
    who: &Who,
    list: &[CaseSummary],
    activity: &std::collections::BTreeMap<String, (String, Option<bool>)>,
    jobs: &std::collections::BTreeMap<String, usize>,
) -> Markup {
    layout(
        "Cases",
        Some(who),
        html! {
            h1 { "Cases" }
            @if list.is_empty() {
                p { "No case yet: acquire evidence or import logs into one." }
            } @else {
                table.cases {
                    thead { tr {
                        th scope="col" { "Case" } th scope="col" { "Artefacts" } th scope="col" { "Raw" } th scope="col" { "Stored" }
                        th scope="col" { "Jobs" } th scope="col" { "Last activity" } th scope="col" { "Last verification" }
                    } }
                    tbody {
                        @for c in list {
                            @let seen = activity.get(&c.case.to_string());
                            tr {
                                td { a href=(format!("/cases/{}", c.case)) { (c.case) } }
                                td.num { (c.artefacts) }
                                td.num { (bytes(c.raw_bytes)) }
                                td.num { (bytes(c.stored_bytes)) }
                                td.num { (jobs.get(&c.case.to_string()).copied().unwrap_or(0)) }
                                td.mono { (seen.map_or("", |s| s.0.as_str())) }
                                td { @match seen.and_then(|s| s.1) {
                                    Some(true) => { span.verified { "in order" } },
                                    Some(false) => { strong.error { "problems found" } },
                                    None => { span.muted { "never" } },
                                } }
                            }
                        }
                    }
                }
            }
        },
    )
}

pub fn explorer_href(case: &CaseId, q: &str, offset: usize) -> String {
    let mut s = format!(
        "/cases/{case}/timeline?q={}",
        utf8_percent_encode(q, NON_ALPHANUMERIC)
    );
    if offset > 0 {
        s.push_str(&format!("&offset={offset}"));
    }
    s
}

/// An exact URL of the explorer: counts made however long they take.
fn exact_href(case: &CaseId, q: &str, offset: usize) -> String {
    format!("{}&exact=1", explorer_href(case, q, offset))
}

/// A count, an estimate marked as one and rounded to three significant
/// digits, since more would claim a precision the sample does not have.
/// With its sample, the estimate carries its margin: about 2/√k of it for
/// k matching events seen (95%, were the sample's events drawn one by one;
/// runs of consecutive events can only widen it).
fn shown_count(n: u64, estimated: bool, sample: Option<Sample>) -> Markup {
    if !estimated {
        return html! { (n) };
    }
    let digits = n.checked_ilog10().unwrap_or(0);
    let unit = 10u64.pow(digits.saturating_sub(2));
    let rounded = (n + unit / 2) / unit * unit;
    let seen = sample
        .filter(|s| s.of > 0)
        .map(|s| n as f64 * s.events as f64 / s.of as f64);
    let (title, margin) = match (seen, sample) {
        (Some(k), _) if k >= 1.0 => {
            let m = (2.0 / k.sqrt() * 100.0).round();
            (
                format!("estimated from {k:.0} matching events of a sample; about ±{m}% (95%)"),
                (m >= 10.0).then_some(m),
            )
        }
        (_, Some(s)) if s.events > 0 => (
            format!(
                "no matching event in a sample of {}: fewer than about {} in the case (95%)",
                s.events,
                3 * s.of / s.events
            ),
            None,
        ),
        _ => ("estimated from a sample of the case".to_owned(), None),
    };
    html! {
        abbr title=(title) { "≈" (rounded) @if let Some(m) = margin { " ±" (m) "%" } }
    }
}

/// `field:"value"`, when the query language can say it (no quote inside).
fn term_for(field: &str, value: &str) -> Option<String> {
    (!value.contains('"') && !value.is_empty()).then(|| format!("{field}:\"{value}\""))
}

fn with_term(q: &str, t: &str) -> String {
    if q.trim().is_empty() {
        t.to_owned()
    } else {
        format!("{} {t}", q.trim())
    }
}

fn facet_list(case: &CaseId, q: &str, f: &Facet, sample: Option<Sample>) -> Markup {
    html! {
        section.facet aria-label=(format!("facet {}", f.field)) {
            h3 { (f.field) @if f.estimated { " " span.muted { "(estimated)" } } }
            ul {
                @for v in &f.values {
                    li {
                        @match v.value.as_deref().and_then(|val| term_for(&f.field, val).map(|t| (val, t))) {
                            Some((val, t)) => {
                                a.facet-value href=(explorer_href(case, &with_term(q, &t), 0))
                                    data-exclude=(explorer_href(case, &with_term(q, &format!("-{t}")), 0))
                                    title="click to keep, alt-click to exclude" {
                                    (term(val))
                                }
                            }
                            None => { span.muted { (v.value.as_deref().map_or("(none)".into(), term)) } }
                        }
                        " " span.count { (shown_count(v.count, f.estimated, sample)) }
                    }
                }
            }
        }
    }
}

pub fn overview(who: &Who, case: &CaseId, o: &Overview) -> Markup {
    let derived_from: std::collections::BTreeMap<String, usize> = o
        .artefacts
        .iter()
        .filter_map(|a| a.derived.as_ref())
        .fold(Default::default(), |mut m, d| {
            *m.entry(d.parent.to_string()).or_default() += 1;
            m
        });
    layout(
        &format!("Case {case}"),
        Some(who),
        html! {
            h1 { "Case " (case) }
            nav.case aria-label="case" {
                a href=(explorer_href(case, "", 0)) { "Explore the timeline" }
                " · " a href=(format!("/cases/{case}/evidence")) { "Evidence and ledger" }
            }
            (custody_section(who, case, &o.ledger))
            h2 { "Artefacts" }
            @if o.artefacts.is_empty() {
                p { "No artefact recorded." }
            } @else {
                table.artefacts {
                    thead { tr {
                        th scope="col" { "Artefact" } th scope="col" { "Kind" } th scope="col" { "Source" }
                        th scope="col" { "Raw size" } th scope="col" { "Raw SHA-256" }
                        th scope="col" { "Stored size" } th scope="col" { "Stored SHA-256" }
                        th scope="col" { "Verification" } th scope="col" { "Processing" }
                        th scope="col" { span.visually-hidden { "Download" } }
                    } }
                    tbody {
                        @for a in &o.artefacts {
                            tr {
                                td.mono { (a.id) }
                                td { (format!("{:?}", a.kind)) }
                                td { (term(&source_text(&a.source))) }
                                td.num { (bytes(a.raw.size)) }
                                td.mono.hash { (a.raw.sha256) }
                                td.num { (bytes(a.stored.size)) }
                                td.mono.hash { (a.stored.sha256) }
                                td { (artefact_state(&o.ledger.artefact_state(&a.id))) }
                                td { (processing(a, &derived_from, o.timeline.as_ref())) }
                                td {
                                    form.inline method="post" action=(format!("/cases/{case}/artefacts/{}/download", a.id)) {
                                        @if let Some(t) = &who.csrf { input type="hidden" name=(CSRF_FIELD) value=(t); }
                                        button type="submit" aria-label=(format!("download {}", a.id)) { "Download" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            @match &o.timeline {
                None => { p { "This case has no timeline yet (custody logs import or logs index makes one)." } }
                Some(t) => {
                    h2 { "Timeline" }
                    p { (t.summary.total) " events." }
                    (histogram(case, "", &t.summary, &Extras { span: t.span, width_us: t.width_us, ..Extras::default() }))
                    h2 { "Findings" }
                    @if t.detections.is_empty() {
                        p { "No detection stored (custody detect makes them)." }
                    } @else {
                        table.findings {
                            thead { tr { th scope="col" { "Level" } th scope="col" { "Rule" } th scope="col" { "Actors" } th scope="col" { "Events" } } }
                            tbody {
                                @for d in &t.detections {
                                    tr {
                                        td { (d.level) }
                                        td { a href=(explorer_href(case, &format!("rule:\"{}\"", d.rule.replace('"', "")), 0)) { (term(&d.title)) } }
                                        td { (term(&d.actors.join(", "))) }
                                        td.num { (d.rows.len()) }
                                    }
                                }
                            }
                        }
                    }
                    div.facets {
                        @for f in &t.summary.facets { (facet_list(case, "", f, t.summary.estimate.as_ref().and_then(|e| e.sample))) }
                    }
                }
            }
            @if !o.jobs.is_empty() {
                h2 { "Jobs" }
                (job_table(&o.jobs.iter().rev().collect::<Vec<_>>()))
            }
            h2 { "Analysts' actions" }
            @let mine: Vec<_> = o.ledger.analysts().take(50).collect();
            @if mine.is_empty() {
                p { "None yet." }
            } @else {
                table.actions {
                    thead { tr { th scope="col" { "When" } th scope="col" { "Analyst" } th scope="col" { "Action" } th scope="col" { "What" } th scope="col" { "Ledger entry" } } }
                    tbody {
                        @for (i, e) in mine {
                            tr {
                                td.mono { (e.time) }
                                td { (term(&e.actor.name)) }
                                td { (action_name(e.action)) }
                                td { (entry_what(case, e)) }
                                td.num { a href=(format!("/cases/{case}/evidence#entry-{i}")) { (i) } }
                            }
                        }
                    }
                }
            }
        },
    )
}

/// The ledger's health for a case: the latest checkpoint, the case's last
/// verification, and (for an investigator) a verification now.
fn custody_section(who: &Who, case: &CaseId, l: &CaseLedger) -> Markup {
    html! {
        section.custody aria-label="custody" {
            h2 { "Custody" }
            @if let Some(p) = &l.problem { p.error role="alert" { "The ledger cannot be read: " (term(p)) } }
            @match &l.checkpoint {
                Some(cp) => p {
                    "Latest signed checkpoint: " (cp.size) " entries, root " span.mono.hash { (cp.root) }
                    " (log " span.mono { (term(&cp.origin)) } ")."
                },
                None => p { "No ledger yet." },
            }
            @match l.last_verification() {
                Some((i, e)) => {
                    @let ok = l.last_verification_ok() == Some(true);
                    p class=(if ok { "verified" } else { "error" }) {
                        "Last verified " span.mono { (e.time) } " by " (term(&e.actor.name)) ": "
                        @if ok { "every artefact and ledger entry in order" } @else { strong { "problems found" } }
                        @if let Some(d) = &e.detail {
                            " (" (d.get("artefacts").and_then(serde_json::Value::as_u64).unwrap_or(0)) " artefacts, "
                            (d.get("failed").and_then(serde_json::Value::as_u64).unwrap_or(0)) " failed, "
                            (d.get("ledger_problems").and_then(serde_json::Value::as_u64).unwrap_or(0)) " ledger problems)"
                        }
                        "; ledger entry " a href=(format!("/cases/{case}/evidence#entry-{i}")) { (i) } "."
                    }
                }
                None => { p { "Never verified (custody verify " (case) ", or Verify now)." } }
            }
            @if who.role == Role::Investigator {
                form.inline method="post" action=(format!("/cases/{case}/verify")) {
                    @if let Some(t) = &who.csrf { input type="hidden" name=(CSRF_FIELD) value=(t); }
                    button type="submit" { "Verify now" }
                    " " span.muted { "reads every artefact again from the store; the result is a ledger entry naming you" }
                }
            }
        }
    }
}

fn artefact_state(s: &ArtefactState) -> Markup {
    match s {
        ArtefactState::Verified { at, .. } => {
            html! { span.verified title=(format!("both digests matched on {at}")) { "verified" } }
        }
        ArtefactState::Failed { at, .. } => {
            html! { strong.error title=(format!("found wrong on {at}")) { "FAILED" } }
        }
        ArtefactState::Unknown { at, .. } => {
            html! { span.muted title=(format!("the verification of {at} failed without naming artefacts")) { "see custody verify" } }
        }
        ArtefactState::NotVerified => html! { span.muted { "not verified since acquired" } },
    }
}

/// Where an artefact stands in processing: derived from a parent, the
/// parent of derived artefacts, and its load into the timeline.
fn processing(
    a: &Artefact,
    derived_from: &std::collections::BTreeMap<String, usize>,
    tl: Option<&CaseTimeline>,
) -> Markup {
    let loaded = tl.and_then(|t| t.ingested.get(&a.id.to_string()));
    html! {
        @if let Some(d) = &a.derived {
            "derived from " span.mono { (d.parent) } " (" (term(&d.volume)) ", " (term(&d.fs))
            @if let Some(p) = &d.path { " " span.mono { (term(p)) } } ")"
            br;
        }
        @if let Some(n) = derived_from.get(&a.id.to_string()) { (n) " derived artefacts" br; }
        @match loaded {
            Some(i) if i.state == "done" => { "in the timeline: " (i.events) " events"
                @if i.problems > 0 { ", " (i.problems) " problems" } }
            Some(i) => { span.error { "timeline load cut short (" (term(&i.state)) ")" } }
            None => {}
        }
    }
}

/// An entry's detail, in a few words.
pub(super) fn entry_what(case: &CaseId, e: &Entry) -> Markup {
    let d = e.detail.as_ref();
    let s = |k: &str| {
        d.and_then(|d| d.get(k))
            .and_then(serde_json::Value::as_str)
            .unwrap_or("")
    };
    let event = d
        .and_then(|d| d.get("event"))
        .and_then(serde_json::Value::as_i64);
    html! {
        @match e.action {
            Action::Annotated => {
                (s("mark")) @if !s("value").is_empty() { ": " (term(s("value"))) }
                @if let Some(id) = event { " on " a href=(format!("/cases/{case}/events/{id}")) { "event " (id) } }
            }
            Action::SearchSaved => { "saved search " (term(s("name"))) ": " span.mono { (term(s("query"))) } }
            Action::Verified => { @if d.and_then(|d| d.get("ok")).and_then(serde_json::Value::as_bool) == Some(true) { "verification: in order" } @else { "verification: problems found" } }
            _ => {
                @if let Some(r) = &e.evidence { "artefact " span.mono { (r.artefact) } " " }
                @if let Some(id) = event { a href=(format!("/cases/{case}/events/{id}")) { "event " (id) } " " }
                @if !s("via").is_empty() { "(" (term(s("via"))) ")" }
                @if !s("bundle").is_empty() { "bundle (" (term(s("bundle"))) ")" }
            }
        }
    }
}

fn search_form(case: &CaseId, q: &str) -> Markup {
    html! {
        form.search method="get" action=(format!("/cases/{case}/timeline")) role="search" {
            label for="q" { "Query" }
            input id="q" name="q" value=(q) size="80" placeholder="actor:alice action:New-InboxRule after:2021-06-01";
            button type="submit" { "Search" }
        }
    }
}

pub fn explorer_error(who: &Who, case: &CaseId, p: &ExploreParams, message: &str) -> Markup {
    layout(
        &format!("Timeline of {case}"),
        Some(who),
        html! {
            h1 { "Timeline of " a href=(format!("/cases/{case}")) { (case) } }
            (search_form(case, &p.q))
            p.error role="alert" { (term(message)) }
        },
    )
}

fn cell(v: Option<&str>) -> Markup {
    html! { @if let Some(v) = v { (term(v)) } }
}

/// The histogram as SVG bars, each a link to its bucket; `app.js` turns a
/// drag across it into a time window (the data attributes say how).
fn histogram(case: &CaseId, q: &str, res: &SearchResults, x: &Extras) -> Markup {
    let (Some(buckets), Some((first, last))) = (&res.histogram, x.span) else {
        return html! {};
    };
    let w = x.width_us.max(1);
    let origin = first.div_euclid(w) * w;
    let slots = usize::try_from((last.div_euclid(w) * w - origin) / w + 1)
        .unwrap_or(1)
        .clamp(1, 400);
    let top = buckets.iter().map(|b| b.count).max().unwrap_or(0).max(1);
    const WIDTH: f64 = 800.0;
    const HEIGHT: f64 = 80.0;
    let bar = WIDTH / slots as f64;
    html! {
        figure.histogram {
            svg id="histogram" role="group" aria-label="events over time; drag to pick a time window"
                viewBox=(format!("0 0 {WIDTH} {HEIGHT}")) width="800" height="80"
                data-origin=(origin) data-width=(w) data-slots=(slots)
                data-href=(explorer_href(case, q, 0)) data-q=(q) {
                @for b in buckets {
                    @if let Some(start) = crate::timeline::query::instant(&b.start) {
                        @let i = ((start - origin) / w) as f64;
                        @let h = (b.count as f64 / top as f64 * (HEIGHT - 2.0)).max(1.0);
                        @let window = format!(
                            "after:{} before:{}",
                            crate::timeline::query::show_time(start),
                            crate::timeline::query::show_time(start + w)
                        );
                        a href=(explorer_href(case, &with_term(q, &window), 0)) aria-label=(format!("{}: {} events", b.start, b.count)) {
                            rect x=(format!("{:.2}", i * bar)) y=(format!("{:.2}", HEIGHT - h))
                                width=(format!("{:.2}", (bar - 1.0).max(1.0))) height=(format!("{h:.2}")) {
                                title { (b.start) ": " (b.count) }
                            }
                        }
                    }
                }
            }
            figcaption.muted {
                (crate::timeline::query::show_time(origin)) " to "
                (crate::timeline::query::show_time(origin + w * slots as i64)) ", "
                (w / 60_000_000) " minutes a bar"
                @if res.estimate.as_ref().is_some_and(|e| e.histogram) { "; bars estimated from a sample" }
            }
        }
    }
}

fn saved_list(who: &Who, case: &CaseId, q: &str, x: &Extras) -> Markup {
    html! {
        section.saved aria-label="saved searches" {
            h3 { "Saved searches" }
            @if x.saved.is_empty() { p.muted { "None yet." } }
            ul {
                @for (s, n) in &x.saved {
                    li {
                        a href=(explorer_href(case, &s.query, 0)) title=(s.query) { (s.name) }
                        " " span.count { @match n { Some(n) => { (shown_count(n.events, n.estimated, None)) }, None => { "?" } } }
                    }
                }
            }
            @if who.role == Role::Investigator {
                form.save method="post" action=(format!("/cases/{case}/searches")) {
                    @if let Some(t) = &who.csrf { input type="hidden" name=(CSRF_FIELD) value=(t); }
                    input type="hidden" name="q" value=(q);
                    label for="save-name" { "Save this search as" }
                    input id="save-name" name="name" maxlength="64" pattern="[A-Za-z0-9._-]+" required;
                    button type="submit" { "Save" }
                }
            }
        }
    }
}

pub fn explorer(
    who: &Who,
    case: &CaseId,
    p: &ExploreParams,
    res: &SearchResults,
    x: &Extras,
    page_rows: usize,
) -> Markup {
    let marks = &x.marks;
    let sample = res.estimate.as_ref().and_then(|e| e.sample);
    let from = p.page().unwrap_or(Page::Offset(0));
    // Links keep the query, and an exact count exact.
    let href = |page: &str| {
        let base = if p.exact {
            exact_href(case, &p.q, 0)
        } else {
            explorer_href(case, &p.q, 0)
        };
        format!("{base}{page}")
    };
    let full = res.rows.len() >= page_rows;
    // Rows after the last (there are when this page is full, or when it
    // came back from a later one), and before the first.
    let next = res
        .rows
        .last()
        .filter(|_| full || matches!(from, Page::Before(_)))
        .map(|r| href(&format!("&after={}", Cursor::of(r))));
    let prev = res
        .rows
        .first()
        .filter(|_| match from {
            Page::Offset(o) => o > 0,
            Page::After(_) => true,
            Page::Before(_) => full,
        })
        .map(|r| href(&format!("&before={}", Cursor::of(r))));
    layout(
        &format!("Timeline of {case}"),
        Some(who),
        html! {
            h1 { "Timeline of " a href=(format!("/cases/{case}")) { (case) } }
            (search_form(case, &p.q))
            (histogram(case, &p.q, res, x))
            div.explorer {
                aside.facets aria-label="facets" {
                    (saved_list(who, case, &p.q, x))
                    @for f in &res.facets { (facet_list(case, &p.q, f, sample)) }
                }
                section.results aria-label="results" {
                    p.total { span id="total" { (shown_count(res.total, res.estimate.as_ref().is_some_and(|e| e.total), sample)) } " events"
                        @match (from, res.rows.first(), res.rows.last()) {
                            (Page::Offset(o), Some(_), _) => { ", " (o + 1) "–" (o + res.rows.len()) " shown" }
                            (_, Some(a), Some(b)) => { ", " (res.rows.len()) " shown, " (a.time) " to " (b.time) }
                            _ => {}
                        } }
                    @if let Some(sample) = res.estimate.as_ref().and_then(|e| e.sample) {
                        p.estimate {
                            "Counts marked ≈ are estimated from " (sample.events) " of the case's " (sample.of)
                            " events, read in runs spread over the whole case: this query keeps too many events to count them all at once. "
                            a href=(match from {
                                Page::Offset(o) => exact_href(case, &p.q, o),
                                Page::After(c) => format!("{}&after={c}", exact_href(case, &p.q, 0)),
                                Page::Before(c) => format!("{}&before={c}", exact_href(case, &p.q, 0)),
                            }) { "Count exactly" }
                            " (may take a while)."
                        }
                    }
                    table.rows {
                        thead { tr {
                            th scope="col" { span.visually-hidden { "Starred" } }
                            th scope="col" { "Time" } th scope="col" { "Source" } th scope="col" { "Actor" }
                            th scope="col" { "Action" } th scope="col" { "Outcome" } th scope="col" { "Address" }
                            th scope="col" { "Message" }
                        } }
                        tbody {
                            @for r in &res.rows {
                                @let m = marks.get(&r.id);
                                tr data-event=(r.id) {
                                    td { @if m.is_some_and(|m| m.starred) { span.star title="starred" { "★" } } }
                                    td.mono { a href=(format!("/cases/{case}/events/{}", r.id)) { (r.time) } }
                                    td { (r.source) }
                                    td { (cell(r.actor.as_deref())) }
                                    td { (term(&r.action)) }
                                    td { (cell(r.outcome.as_deref())) }
                                    td.mono { (cell(r.ip.as_deref())) }
                                    td.message {
                                        (term(&r.message))
                                        @if let Some(m) = m { @for t in &m.tags { " " span.tag { (term(t)) } } }
                                    }
                                }
                            }
                        }
                    }
                    nav.pages aria-label="pages" {
                        @if from != Page::Offset(0) { a rel="first" href=(href("")) { "First" } " " }
                        @if let Some(h) = &prev { a rel="prev" href=(h) { "Previous" } }
                        @if let Some(h) = &next { " " a rel="next" href=(h) { "Next" } }
                    }
                }
            }
        },
    )
}

pub fn raw_record(
    who: &Who,
    case: &CaseId,
    id: i64,
    r: &crate::engine::record::RawRecord,
) -> Markup {
    layout(
        &format!("Record of event {id}"),
        Some(who),
        html! {
            h1 { "Record of " a href=(format!("/cases/{case}/events/{id}")) { "event " (id) } }
            p.verified {
                "Read again from the store; both digests of artefact " span.mono { (r.artefact) } " checked: raw SHA-256 "
                span.mono.hash { (r.raw_sha256) } ", stored SHA-256 " span.mono.hash { (r.stored_sha256) } "."
            }
            dl.fields {
                dt { "member" } dd.mono { (term(&r.member)) }
                dt { "position" } dd.mono { (term(&r.locator)) }
            }
            @if r.binary { p.muted { "The record is not UTF-8; shown with replacement characters." } }
            h2 { "As written" }
            pre.record id="record" { (crate::sanitize::term_lines(&r.text)) }
            @if let Some(j) = &r.json {
                h2 { "As JSON, indented" }
                pre.record { (crate::sanitize::term_lines(j)) }
            }
        },
    )
}

fn mark_form(case: &CaseId, id: i64, csrf: Option<&str>, body: Markup) -> Markup {
    html! {
        form.mark method="post" action=(format!("/cases/{case}/events/{id}/marks")) {
            @if let Some(t) = csrf { input type="hidden" name=(CSRF_FIELD) value=(t); }
            (body)
        }
    }
}

pub fn event(
    who: &Who,
    case: &CaseId,
    r: &Row,
    marks: &[Annotation],
    standing: &Standing,
) -> Markup {
    let fields: [(&str, Option<String>); 12] = [
        ("time", Some(r.time.clone())),
        ("source", Some(r.source.clone())),
        ("account", r.account.clone()),
        ("actor", r.actor.clone()),
        ("action", Some(r.action.clone())),
        ("outcome", r.outcome.clone()),
        ("ip", r.ip.clone()),
        ("asn", r.asn.map(|a| format!("AS{a}"))),
        ("as_org", r.as_org.clone()),
        ("country", r.country.clone()),
        ("user_agent", r.user_agent.clone()),
        ("target", r.target.clone()),
    ];
    let csrf = who.csrf.as_deref();
    layout(
        &format!("Event {}", r.id),
        Some(who),
        html! {
            h1 { "Event " (r.id) " of " a href=(format!("/cases/{case}")) { (case) }
                @if standing.starred { " " span.star title="starred" { "★" } } }
            p.message { (term(&r.message)) }
            @if !standing.tags.is_empty() {
                p { "Tags: " @for t in &standing.tags { span.tag { (term(t)) } " " } }
            }
            h2 { "Fields" }
            dl.fields {
                @for (name, value) in &fields {
                    @if let Some(v) = value {
                        dt { (name) }
                        dd {
                            @match term_for(name, v) {
                                Some(t) if matches!(*name, "actor" | "ip" | "account") => {
                                    a href=(explorer_href(case, &t, 0)) title="pivot" { (term(v)) }
                                }
                                _ => { (term(v)) }
                            }
                        }
                    }
                }
            }
            @if !r.attributes.is_empty() {
                h2 { "Attributes" }
                dl.fields {
                    @for (k, v) in &r.attributes { dt { (term(k)) } dd { (term(v)) } }
                }
            }
            h2 { "Provenance" }
            p { a id="raw" href=(format!("/cases/{case}/events/{}/raw", r.id)) { "Re-verify: the original record, read again from the store with both digests of its artefact checked" } }
            dl.fields {
                dt { "artefact" } dd.mono { (r.artefact) }
                dt { "member" } dd.mono { (term(&r.member)) }
                dt { "position" } dd.mono { (term(&r.locator)) }
                @if let Some(id) = &r.record_id { dt { "record id" } dd.mono { (term(id)) } }
            }
            h2 { "Analysts' marks" }
            @if marks.is_empty() { p { "None yet." } } @else {
                ul.marks {
                    @for m in marks {
                        li {
                            span.mono { (m.at) } " " strong { (m.analyst) } " " (m.kind)
                            @if !m.value.is_empty() { ": " span.value { (term(&m.value)) } }
                            " " span.muted { "(ledger entry " (m.ledger) ")" }
                        }
                    }
                }
            }
            @if who.role == Role::Investigator {
                div.actions {
                    (mark_form(case, r.id, csrf, html! {
                        input type="hidden" name="kind" value=(if standing.starred { "unstar" } else { "star" });
                        button id="star" type="submit" { (if standing.starred { "Unstar" } else { "Star" }) }
                    }))
                    (mark_form(case, r.id, csrf, html! {
                        input type="hidden" name="kind" value="tag";
                        label for="tag" { "Tag" }
                        input id="tag" name="value" maxlength="64" required;
                        button type="submit" { "Add tag" }
                    }))
                    (mark_form(case, r.id, csrf, html! {
                        input type="hidden" name="kind" value="comment";
                        label for="comment" { "Comment" }
                        textarea id="comment" name="value" rows="3" maxlength="4000" required {}
                        button type="submit" { "Comment" }
                    }))
                }
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_estimate_shows_as_one_with_three_significant_digits() {
        let shown = |n, e| shown_count(n, e, None).into_string();
        assert_eq!(shown(9_712_345, false), "9712345");
        let est = shown(9_712_345, true);
        assert!(est.contains(">≈9710000<"), "{est}");
        assert!(est.contains("estimated from a sample"), "{est}");
        assert!(shown(9_716_000, true).contains(">≈9720000<"));
        assert!(shown(999_600, true).contains(">≈1000000<"));
        assert!(shown(42, true).contains(">≈42<"));
        assert!(shown(0, true).contains(">≈0<"));
        // With its sample: the margin, inline once it is wide.
        let sample = Some(Sample {
            events: 65_536,
            of: 10_000_000,
        });
        let wide = shown_count(30_000, true, sample).into_string();
        assert!(
            wide.contains("≈30000 ±") && wide.contains("%") && wide.contains("(95%)"),
            "{wide}"
        );
        let narrow = shown_count(5_000_000, true, sample).into_string();
        assert!(
            narrow.contains(">≈5000000<") && narrow.contains("about ±1%"),
            "{narrow}"
        );
        let none = shown_count(0, true, sample).into_string();
        assert!(none.contains("fewer than about 457"), "{none}");
    }

    #[test]
    fn exact_takes_only_a_yes_or_a_no() {
        let parse = |q: &str| {
            let uri: axum::http::Uri = format!("/t?{q}").parse().expect("uri");
            axum::extract::Query::<ExploreParams>::try_from_uri(&uri).map(|p| p.0.exact)
        };
        assert_eq!(parse("q=x&exact=1").ok(), Some(true));
        assert_eq!(parse("q=x&exact=0").ok(), Some(false));
        assert_eq!(parse("q=x").ok(), Some(false));
        let err = parse("q=x&exact=maybe").expect_err("refused").body_text();
        assert!(err.contains("`exact` is 1 or 0, not `maybe`"), "{err}");
    }
}
