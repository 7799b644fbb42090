//! A run's score and verdict, and how findings changed between runs.
//!
//! A check's status over its findings: FAIL if any resource fails, else
//! ERROR if any could not be evaluated, else PASS if any passed, else
//! SKIPPED. The score is the severity-weighted share of evaluated checks
//! (PASS or FAIL) that pass, 0 to 100; ERROR and SKIPPED are left out of
//! it, never counted as either. A run is not ready when any critical
//! check fails.
//!
//! Between runs, several runs in one (UTC) day count once, as the latest.
//! Comparing the latest such run with the one before: a finding is
//! **new** when it fails now and was not there before, **regressed** when
//! it fails now and did not before, **fixed** when it passes now and failed
//! before, and **unchanged** otherwise.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;
use time::OffsetDateTime;

use super::catalogue::{Catalogue, Pillar, Severity};
use super::{Finding, FindingKey, Status};

/// One check's outcome in a run.
#[derive(Debug, Clone, Serialize)]
pub struct CheckOutcome {
    pub id: String,
    pub severity: Severity,
    pub pillar: Pillar,
    pub status: Status,
    /// Findings per status.
    pub pass: usize,
    pub fail: usize,
    pub error: usize,
    pub skipped: usize,
}

/// A run's score and verdict.
#[derive(Debug, Clone, Serialize)]
pub struct Score {
    /// `None` when no check could be evaluated.
    pub score: Option<f64>,
    pub pillars: BTreeMap<Pillar, Option<f64>>,
    pub ready: bool,
    /// Critical checks that fail: each makes the run not ready.
    pub failing_critical: Vec<String>,
    pub checks: Vec<CheckOutcome>,
}

/// The status of a check over its findings.
pub fn check_status<'a>(statuses: impl Iterator<Item = &'a Status>) -> Status {
    let mut seen = [false; 4];
    for s in statuses {
        let i = match s {
            Status::Fail => 0,
            Status::Error => 1,
            Status::Pass => 2,
            Status::Skipped => 3,
        };
        if let Some(x) = seen.get_mut(i) {
            *x = true;
        }
    }
    match seen {
        [true, ..] => Status::Fail,
        [_, true, ..] => Status::Error,
        [_, _, true, _] => Status::Pass,
        _ => Status::Skipped,
    }
}

fn weighted(outcomes: &[&CheckOutcome]) -> Option<f64> {
    let (mut pass, mut all) = (0u32, 0u32);
    for o in outcomes {
        let w = o.severity.weight();
        match o.status {
            Status::Pass => {
                pass += w;
                all += w;
            }
            Status::Fail => all += w,
            Status::Error | Status::Skipped => {}
        }
    }
    // One decimal: the score is compared and shown, never summed further.
    (all > 0).then(|| (f64::from(pass) * 1000.0 / f64::from(all)).round() / 10.0)
}

/// Scores `findings` against the checks of `catalogue` that ran.
pub fn score(catalogue: &Catalogue, findings: &[Finding]) -> Score {
    let mut by_check: BTreeMap<&str, Vec<Status>> = BTreeMap::new();
    for f in findings {
        by_check
            .entry(f.key.check.as_str())
            .or_default()
            .push(f.status);
    }
    let checks: Vec<CheckOutcome> = catalogue
        .checks
        .iter()
        .filter_map(|c| {
            let st = by_check.get(c.id.as_str())?;
            let count = |s: Status| st.iter().filter(|x| **x == s).count();
            Some(CheckOutcome {
                id: c.id.clone(),
                severity: c.severity,
                pillar: c.pillar,
                status: check_status(st.iter()),
                pass: count(Status::Pass),
                fail: count(Status::Fail),
                error: count(Status::Error),
                skipped: count(Status::Skipped),
            })
        })
        .collect();
    let all: Vec<&CheckOutcome> = checks.iter().collect();
    let pillars = Pillar::ALL
        .iter()
        .map(|p| {
            let of: Vec<&CheckOutcome> = checks.iter().filter(|c| c.pillar == *p).collect();
            (*p, weighted(&of))
        })
        .collect();
    let failing_critical: Vec<String> = checks
        .iter()
        .filter(|c| c.severity == Severity::Critical && c.status == Status::Fail)
        .map(|c| c.id.clone())
        .collect();
    Score {
        score: weighted(&all),
        pillars,
        ready: failing_critical.is_empty(),
        failing_critical,
        checks,
    }
}

/// A stored run as the trend sees it.
#[derive(Debug, Clone)]
pub struct RunFindings {
    pub id: i64,
    pub at: OffsetDateTime,
    pub findings: Vec<Finding>,
}

/// How a finding changed since the previous day's run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    New,
    Fixed,
    Regressed,
    Unchanged,
}

/// A finding of the latest run with its history.
#[derive(Debug, Clone, Serialize)]
pub struct Trend {
    #[serde(flatten)]
    pub key: FindingKey,
    pub status: Status,
    pub change: Change,
    #[serde(with = "time::serde::rfc3339")]
    pub first_seen: OffsetDateTime,
    /// Consecutive days, up to the latest, on which it failed.
    pub failed_in_a_row: u32,
}

/// The latest run of each UTC day, oldest first; `runs` in any order.
pub fn latest_per_day(runs: &[RunFindings]) -> Vec<&RunFindings> {
    let mut by_day: BTreeMap<time::Date, &RunFindings> = BTreeMap::new();
    for r in runs {
        let day = r.at.to_offset(time::UtcOffset::UTC).date();
        let later = by_day.get(&day).is_none_or(|x| (x.at, x.id) < (r.at, r.id));
        if later {
            by_day.insert(day, r);
        }
    }
    by_day.into_values().collect()
}

/// The latest day's findings, each compared with the day before and with
/// its history. Empty when there is no run.
pub fn trend(runs: &[RunFindings]) -> Vec<Trend> {
    let days = latest_per_day(runs);
    let Some((latest, earlier)) = days.split_last() else {
        return Vec::new();
    };
    let index: Vec<HashMap<&FindingKey, Status>> = days
        .iter()
        .map(|r| r.findings.iter().map(|f| (&f.key, f.status)).collect())
        .collect();
    let previous = index.len().checked_sub(2).and_then(|i| index.get(i));
    latest
        .findings
        .iter()
        .map(|f| {
            let before = previous.and_then(|p| p.get(&f.key)).copied();
            let change = match (before, f.status) {
                (None, Status::Fail) => Change::New,
                (Some(Status::Fail), Status::Pass) => Change::Fixed,
                (Some(b), Status::Fail) if b != Status::Fail => Change::Regressed,
                _ => Change::Unchanged,
            };
            let first_seen = earlier
                .iter()
                .zip(&index)
                .find(|(_, idx)| idx.contains_key(&f.key))
                .map_or(latest.at, |(r, _)| r.at);
            let failed_in_a_row = u32::try_from(
                index
                    .iter()
                    .rev()
                    .take_while(|idx| idx.get(&f.key) == Some(&Status::Fail))
                    .count(),
            )
            .unwrap_or(u32::MAX);
            Trend {
                key: f.key.clone(),
                status: f.status,
                change,
                first_seen,
                failed_in_a_row,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    fn f(check: &str, resource: &str, status: Status) -> Finding {
        Finding::new(check, "123456789012", "us-east-1", resource, status, "")
    }

    #[test]
    fn the_score_weighs_by_severity_and_leaves_out_what_could_not_run() {
        let c = Catalogue::builtin().expect("catalogue");
        // critical PASS (10), high FAIL (5), medium PASS (2), an ERROR and a SKIPPED.
        let findings = vec![
            f("aws.cloudtrail.multi_region", "main", Status::Pass),
            f("aws.vpc.flow_logs", "vpc-1", Status::Pass),
            f("aws.vpc.flow_logs", "vpc-2", Status::Fail),
            f("aws.securityhub.enabled", "-", Status::Pass),
            f("aws.ssm.instances_managed", "i-1", Status::Error),
            f("azure.defender.plans", "-", Status::Skipped),
        ];
        let s = score(&c, &findings);
        assert_eq!(s.score, Some(70.6), "12 of 17");
        assert!(s.ready);
        assert_eq!(
            s.pillars.get(&Pillar::Logging).copied().flatten(),
            Some(66.7)
        );
        assert_eq!(
            s.pillars.get(&Pillar::Detection).copied().flatten(),
            Some(100.0)
        );
        assert_eq!(
            s.pillars.get(&Pillar::LiveResponse).copied().flatten(),
            None
        );
        let ssm = s
            .checks
            .iter()
            .find(|x| x.id == "aws.ssm.instances_managed");
        assert_eq!(ssm.map(|x| x.status), Some(Status::Error));

        // A failing critical check: not ready, whatever the score.
        let mut bad = findings.clone();
        bad.push(f("aws.s3.evidence_bucket", "evidence", Status::Fail));
        let s = score(&c, &bad);
        assert!(!s.ready);
        assert_eq!(
            s.failing_critical,
            vec!["aws.s3.evidence_bucket".to_owned()]
        );

        // Nothing evaluated: no score, not zero.
        let s = score(&c, &[f("aws.ssm.instances_managed", "i-1", Status::Error)]);
        assert_eq!(s.score, None);
    }

    #[test]
    fn trends_compare_the_latest_run_of_each_day() {
        let run = |id, at, findings| RunFindings { id, at, findings };
        let runs = vec![
            run(
                1,
                datetime!(2026-11-01 09:00 UTC),
                vec![
                    f("aws.vpc.flow_logs", "vpc-1", Status::Fail),
                    f("aws.vpc.flow_logs", "vpc-2", Status::Pass),
                    f("aws.ec2.imdsv2_required", "i-1", Status::Fail),
                ],
            ),
            run(
                2,
                datetime!(2026-11-02 08:00 UTC),
                vec![
                    f("aws.vpc.flow_logs", "vpc-1", Status::Fail),
                    f("aws.vpc.flow_logs", "vpc-2", Status::Pass),
                    f("aws.ec2.imdsv2_required", "i-1", Status::Pass),
                ],
            ),
            // Later the same day: it replaces run 2 for the day.
            run(
                3,
                datetime!(2026-11-02 17:00 UTC),
                vec![
                    f("aws.vpc.flow_logs", "vpc-1", Status::Fail),
                    f("aws.vpc.flow_logs", "vpc-2", Status::Pass),
                    f("aws.ec2.imdsv2_required", "i-1", Status::Fail),
                ],
            ),
            run(
                4,
                datetime!(2026-11-03 10:00 UTC),
                vec![
                    f("aws.vpc.flow_logs", "vpc-1", Status::Fail),
                    f("aws.vpc.flow_logs", "vpc-2", Status::Fail),
                    f("aws.ec2.imdsv2_required", "i-1", Status::Pass),
                    f("aws.vpc.flow_logs", "vpc-3", Status::Fail),
                    f("aws.ssm.instances_managed", "i-1", Status::Error),
                ],
            ),
        ];
        let days = latest_per_day(&runs);
        assert_eq!(days.iter().map(|r| r.id).collect::<Vec<_>>(), vec![1, 3, 4]);
        let t = trend(&runs);
        let get = |check: &str, resource: &str| {
            t.iter()
                .find(|x| x.key.check == check && x.key.resource == resource)
                .cloned()
                .expect("trend")
        };
        let v1 = get("aws.vpc.flow_logs", "vpc-1");
        assert_eq!((v1.change, v1.failed_in_a_row), (Change::Unchanged, 3));
        assert_eq!(v1.first_seen, datetime!(2026-11-01 09:00 UTC));
        let v2 = get("aws.vpc.flow_logs", "vpc-2");
        assert_eq!((v2.change, v2.failed_in_a_row), (Change::Regressed, 1));
        let v3 = get("aws.vpc.flow_logs", "vpc-3");
        assert_eq!((v3.change, v3.failed_in_a_row), (Change::New, 1));
        assert_eq!(v3.first_seen, datetime!(2026-11-03 10:00 UTC));
        // Fixed against the same day's latest run (FAIL), not its earlier PASS.
        let i1 = get("aws.ec2.imdsv2_required", "i-1");
        assert_eq!((i1.change, i1.failed_in_a_row), (Change::Fixed, 0));
        let e = get("aws.ssm.instances_managed", "i-1");
        assert_eq!(
            e.change,
            Change::Unchanged,
            "an ERROR is neither new nor fixed"
        );
        assert!(trend(&[]).is_empty());
    }
}
