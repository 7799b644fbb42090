//! The HTML of the jobs and readiness pages. Alerts are attacker-controlled
//! like logs: every value is escaped and its control characters shown.

use maud::{Markup, html};

use super::auth::Who;
use super::pages::{job_table, layout, rfc3339};
use crate::queue::Job;
use crate::sanitize::term;

/// Jobs a page lists at most, newest first.
pub const JOBS_SHOWN: usize = 500;

pub fn jobs(who: &Who, all: &[Job]) -> Markup {
    let shown: Vec<&Job> = all.iter().rev().take(JOBS_SHOWN).collect();
    layout(
        "Jobs",
        Some(who),
        html! {
            h1 { "Jobs" }
            p {
                "Each alert the webhook server accepted, and each step of its job, from the server's queue. "
                @if all.len() > JOBS_SHOWN { "The newest " (JOBS_SHOWN) " of " (all.len()) "." }
            }
            @if all.is_empty() {
                p { "No job: no alert has reached custody serve under this home." }
            } @else {
                (job_table(&shown))
            }
        },
    )
}

/// What the readiness page shows.
#[cfg(feature = "readiness")]
#[derive(Debug)]
pub struct Readiness {
    pub runs: Vec<crate::readiness::history::Run>,
    /// The latest run of each day, oldest first: the score over time.
    pub days: Vec<crate::readiness::history::Run>,
    /// The latest day's findings against the day before.
    pub trend: Vec<crate::readiness::score::Trend>,
    /// The latest run's findings.
    pub latest: Vec<crate::readiness::history::StoredFinding>,
}

#[cfg(feature = "readiness")]
pub fn readiness(who: &Who, r: Option<&Readiness>) -> Markup {
    use crate::readiness::Status;
    use crate::readiness::score::Change;
    let change = |c: Change| match c {
        Change::New => "new",
        Change::Fixed => "fixed",
        Change::Regressed => "regressed",
        Change::Unchanged => "unchanged",
    };
    let score = |s: Option<f64>| s.map_or("-".to_owned(), |s| format!("{s:.1}"));
    layout(
        "Readiness",
        Some(who),
        html! {
            h1 { "Readiness" }
            @match r {
                None => { p { "No readiness run yet (custody readiness run, or a schedule of custody serve)." } }
                Some(r) => {
                    h2 { "Score over time" }
                    p.muted { "The latest run of each day." }
                    table.trend {
                        thead { tr { th scope="col" { "Day" } th scope="col" { "Score" } th scope="col" { "Ready" } th scope="col" { span.visually-hidden { "Bar" } } } }
                        tbody {
                            @for d in &r.days {
                                tr {
                                    td.mono { (rfc3339(d.started).get(..10).unwrap_or("")) }
                                    td.num { (score(d.score)) }
                                    td { @if d.ready { "ready" } @else { strong.error { "not ready" } } }
                                    td { meter min="0" max="100" value=(d.score.unwrap_or(0.0)) aria-label=(format!("score {}", score(d.score))) {} }
                                }
                            }
                        }
                    }
                    h2 { "What changed since the day before" }
                    @let changed: Vec<_> = r.trend.iter().filter(|t| t.change != Change::Unchanged).collect();
                    @if changed.is_empty() {
                        p { "Nothing." }
                    } @else {
                        table.changes {
                            thead { tr {
                                th scope="col" { "Check" } th scope="col" { "Account" } th scope="col" { "Region" }
                                th scope="col" { "Resource" } th scope="col" { "Now" } th scope="col" { "Change" } th scope="col" { "Failing days in a row" }
                            } }
                            tbody {
                                @for t in changed {
                                    tr {
                                        td.mono { (term(&t.key.check)) } td.mono { (term(&t.key.account)) }
                                        td { (term(&t.key.region)) } td.mono { (term(&t.key.resource)) }
                                        td { (t.status.as_str()) } td { (change(t.change)) } td.num { (t.failed_in_a_row) }
                                    }
                                }
                            }
                        }
                    }
                    h2 { "Findings of the latest run" }
                    @let failing: Vec<_> = r.latest.iter().filter(|f| f.finding.status != Status::Pass).collect();
                    @if failing.is_empty() {
                        p.verified { "Every check passed." }
                    } @else {
                        table.findings {
                            thead { tr {
                                th scope="col" { "Status" } th scope="col" { "Check" } th scope="col" { "Account" }
                                th scope="col" { "Region" } th scope="col" { "Resource" } th scope="col" { "Evidence" } th scope="col" { "Remediation" }
                            } }
                            tbody {
                                @for f in failing {
                                    tr {
                                        td { (f.finding.status.as_str()) } td.mono { (term(&f.finding.key.check)) }
                                        td.mono { (term(&f.finding.key.account)) } td { (term(&f.finding.key.region)) }
                                        td.mono { (term(&f.finding.key.resource)) } td { (term(&f.finding.evidence)) }
                                        td { (term(&f.remediation)) }
                                    }
                                }
                            }
                        }
                    }
                    h2 { "Runs" }
                    table.runs {
                        thead { tr {
                            th scope="col" { "Run" } th scope="col" { "Started" } th scope="col" { "As" }
                            th scope="col" { "Accounts" } th scope="col" { "Regions" } th scope="col" { "Score" } th scope="col" { "Ready" }
                        } }
                        tbody {
                            @for run in r.runs.iter().rev() {
                                tr {
                                    td.num { (run.id) } td.mono { (rfc3339(run.started)) } td.mono { (term(&run.identity)) }
                                    td.mono { (term(&run.scope.accounts.join(", "))) } td { (term(&run.scope.regions.join(", "))) }
                                    td.num { (score(run.score)) } td { @if run.ready { "ready" } @else { "not ready" } }
                                }
                            }
                        }
                    }
                }
            }
        },
    )
}
