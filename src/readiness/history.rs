//! Every readiness run, kept in an embedded SQLite database
//! (`HOME/readiness/history.sqlite`): when it ran, with which tool and
//! catalogue versions, over what scope and as whom, its score, and per check
//! and resource the status, evidence and remediation. Anyone can query it
//! with the `sqlite3` shell; the schema is below.
//!
//! ```sql
//! runs(id, started, finished, tool_version, catalogue_version, scope, identity, score, ready, pillars)
//! findings(run, check_id, account, region, resource, status, evidence, remediation)
//! ```
//! Times are RFC 3339 UTC; `scope` and `pillars` are JSON. A run is written
//! in one transaction, so a crash leaves it whole or absent.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, params};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::score::RunFindings;
use super::{Finding, FindingKey, Status};

const SCHEMA_VERSION: i64 = 1;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HistoryError {
    #[error("cannot open the readiness history {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("cannot create {path}")]
    Dir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the readiness history {path} has schema version {found}; this custody reads {SCHEMA_VERSION}"
    )]
    Schema { path: PathBuf, found: i64 },
    #[error("the readiness history: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("the readiness history holds an unreadable value: {0}")]
    Bad(String),
    #[error("the run has two findings for {0:?}")]
    Duplicate(FindingKey),
}

/// What a run covered.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Scope {
    pub providers: Vec<String>,
    pub accounts: Vec<String>,
    pub regions: Vec<String>,
}

/// A run, as stored.
#[derive(Debug, Clone, Serialize)]
pub struct Run {
    pub id: i64,
    #[serde(with = "time::serde::rfc3339")]
    pub started: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub finished: OffsetDateTime,
    pub tool_version: String,
    pub catalogue_version: String,
    pub scope: Scope,
    /// Who ran it (an ARN, an account key's name).
    pub identity: String,
    pub score: Option<f64>,
    pub ready: bool,
    pub pillars: serde_json::Value,
}

/// A finding with the remediation shown for it.
#[derive(Debug, Clone, Serialize)]
pub struct StoredFinding {
    #[serde(flatten)]
    pub finding: Finding,
    pub remediation: String,
}

pub struct History {
    conn: Connection,
}

impl std::fmt::Debug for History {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("History").finish_non_exhaustive()
    }
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn parse_time(s: &str) -> Result<OffsetDateTime, HistoryError> {
    OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map_err(|e| HistoryError::Bad(format!("time {s:?}: {e}")))
}

impl History {
    /// The history under a custody home.
    pub fn path_in(home: &Path) -> PathBuf {
        home.join("readiness").join("history.sqlite")
    }

    /// Opens (or creates) the database at `path`.
    pub fn open(path: &Path) -> Result<Self, HistoryError> {
        if let Some(dir) = path.parent() {
            crate::private_fs::create_dir_all(dir).map_err(|source| HistoryError::Dir {
                path: dir.to_owned(),
                source,
            })?;
        }
        let open_err = |source| HistoryError::Open {
            path: path.to_owned(),
            source,
        };
        let conn = Connection::open(path).map_err(open_err)?;
        // A stored run survives a power cut once `record` returns.
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;",
        )
        .map_err(open_err)?;
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(open_err)?;
        match version {
            0 => {
                conn.execute_batch(&format!(
                    "BEGIN;
                     CREATE TABLE runs (
                       id INTEGER PRIMARY KEY,
                       started TEXT NOT NULL, finished TEXT NOT NULL,
                       tool_version TEXT NOT NULL, catalogue_version TEXT NOT NULL,
                       scope TEXT NOT NULL, identity TEXT NOT NULL,
                       score REAL, ready INTEGER NOT NULL, pillars TEXT NOT NULL);
                     CREATE TABLE findings (
                       run INTEGER NOT NULL REFERENCES runs(id),
                       check_id TEXT NOT NULL, account TEXT NOT NULL,
                       region TEXT NOT NULL, resource TEXT NOT NULL,
                       status TEXT NOT NULL CHECK (status IN ('PASS','FAIL','ERROR','SKIPPED')),
                       evidence TEXT NOT NULL, remediation TEXT NOT NULL,
                       PRIMARY KEY (run, check_id, account, region, resource));
                     PRAGMA user_version = {SCHEMA_VERSION};
                     COMMIT;"
                ))
                .map_err(open_err)?;
            }
            SCHEMA_VERSION => {}
            found => {
                return Err(HistoryError::Schema {
                    path: path.to_owned(),
                    found,
                });
            }
        }
        Ok(Self { conn })
    }

    /// Stores a run and its findings; returns the run's id.
    pub fn record(&mut self, run: &Run, findings: &[StoredFinding]) -> Result<i64, HistoryError> {
        let mut seen = std::collections::HashSet::new();
        for f in findings {
            if !seen.insert(&f.finding.key) {
                return Err(HistoryError::Duplicate(f.finding.key.clone()));
            }
        }
        let tx = self.conn.transaction()?;
        tx.execute(
            "INSERT INTO runs (started, finished, tool_version, catalogue_version, scope, identity, score, ready, pillars)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![
                rfc3339(run.started),
                rfc3339(run.finished),
                run.tool_version,
                run.catalogue_version,
                serde_json::to_string(&run.scope).map_err(|e| HistoryError::Bad(e.to_string()))?,
                run.identity,
                run.score,
                run.ready,
                run.pillars.to_string(),
            ],
        )?;
        let id = tx.last_insert_rowid();
        {
            let mut ins = tx.prepare(
                "INSERT INTO findings (run, check_id, account, region, resource, status, evidence, remediation)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?;
            for f in findings {
                let k = &f.finding.key;
                ins.execute(params![
                    id,
                    k.check,
                    k.account,
                    k.region,
                    k.resource,
                    f.finding.status.as_str(),
                    f.finding.evidence,
                    f.remediation,
                ])?;
            }
        }
        tx.commit()?;
        Ok(id)
    }

    /// Every run, oldest first.
    pub fn runs(&self) -> Result<Vec<Run>, HistoryError> {
        let mut q = self.conn.prepare(
            "SELECT id, started, finished, tool_version, catalogue_version, scope, identity, score, ready, pillars
             FROM runs ORDER BY started, id",
        )?;
        let rows = q.query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, String>(5)?,
                r.get::<_, String>(6)?,
                r.get::<_, Option<f64>>(7)?,
                r.get::<_, bool>(8)?,
                r.get::<_, String>(9)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (id, started, finished, tool, cat, scope, identity, score, ready, pillars) = row?;
            out.push(Run {
                id,
                started: parse_time(&started)?,
                finished: parse_time(&finished)?,
                tool_version: tool,
                catalogue_version: cat,
                scope: serde_json::from_str(&scope)
                    .map_err(|e| HistoryError::Bad(format!("scope of run {id}: {e}")))?,
                identity,
                score,
                ready,
                pillars: serde_json::from_str(&pillars)
                    .map_err(|e| HistoryError::Bad(format!("pillars of run {id}: {e}")))?,
            });
        }
        Ok(out)
    }

    /// The findings of run `id`, in check and resource order.
    pub fn findings(&self, id: i64) -> Result<Vec<StoredFinding>, HistoryError> {
        let mut q = self.conn.prepare(
            "SELECT check_id, account, region, resource, status, evidence, remediation
             FROM findings WHERE run = ?1 ORDER BY check_id, account, region, resource",
        )?;
        let rows = q.query_map([id], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, String>(5)?,
                r.get::<_, String>(6)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (check, account, region, resource, status, evidence, remediation) = row?;
            let status: Status = status.parse().map_err(HistoryError::Bad)?;
            out.push(StoredFinding {
                finding: Finding::new(&check, &account, &region, &resource, status, evidence),
                remediation,
            });
        }
        Ok(out)
    }

    /// Every run with its findings, for the trend.
    pub fn all(&self) -> Result<Vec<RunFindings>, HistoryError> {
        self.runs()?
            .into_iter()
            .map(|r| {
                Ok(RunFindings {
                    id: r.id,
                    at: r.started,
                    findings: self
                        .findings(r.id)?
                        .into_iter()
                        .map(|f| f.finding)
                        .collect(),
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    fn run(at: OffsetDateTime, score: Option<f64>) -> Run {
        Run {
            id: 0,
            started: at,
            finished: at + time::Duration::seconds(3),
            tool_version: "0.1.0".into(),
            catalogue_version: "sha256:00".into(),
            scope: Scope {
                providers: vec!["aws".into()],
                accounts: vec!["123456789012".into()],
                regions: vec!["us-east-1".into()],
            },
            identity: "arn:aws:iam::123456789012:user/auditor".into(),
            score,
            ready: true,
            pillars: serde_json::json!({ "logging": 50.0 }),
        }
    }

    fn finding(resource: &str, status: Status) -> StoredFinding {
        StoredFinding {
            finding: Finding::new(
                "aws.vpc.flow_logs",
                "123456789012",
                "us-east-1",
                resource,
                status,
                format!("{resource}: seen"),
            ),
            remediation: "create a flow log".into(),
        }
    }

    #[test]
    fn runs_round_trip_and_survive_reopening() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = History::path_in(dir.path());
        let mut h = History::open(&path).expect("open");
        let a = h
            .record(
                &run(datetime!(2026-11-01 10:00 UTC), Some(50.0)),
                &[
                    finding("vpc-1", Status::Pass),
                    finding("vpc-2", Status::Fail),
                ],
            )
            .expect("record");
        let b = h
            .record(
                &run(datetime!(2026-11-02 10:00 UTC), None),
                &[finding("vpc-1", Status::Error)],
            )
            .expect("record");
        drop(h);
        let h = History::open(&path).expect("reopen");
        let runs = h.runs().expect("runs");
        assert_eq!(runs.iter().map(|r| r.id).collect::<Vec<_>>(), vec![a, b]);
        assert_eq!(runs.first().and_then(|r| r.score), Some(50.0));
        assert_eq!(runs.get(1).and_then(|r| r.score), None);
        assert_eq!(
            runs.first().map(|r| r.scope.regions.clone()),
            Some(vec!["us-east-1".to_owned()])
        );
        let f = h.findings(a).expect("findings");
        assert_eq!(f.len(), 2);
        assert_eq!(f.get(1).map(|x| x.finding.status), Some(Status::Fail));
        assert_eq!(
            f.get(1).map(|x| x.finding.evidence.as_str()),
            Some("vpc-2: seen")
        );
        let all = h.all().expect("all");
        assert_eq!(all.len(), 2);
    }

    #[test]
    fn a_duplicate_finding_or_a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = History::path_in(dir.path());
        let mut h = History::open(&path).expect("open");
        let e = h
            .record(
                &run(datetime!(2026-11-01 10:00 UTC), None),
                &[
                    finding("vpc-1", Status::Pass),
                    finding("vpc-1", Status::Fail),
                ],
            )
            .expect_err("duplicate");
        assert!(e.to_string().contains("two findings"), "{e}");
        assert!(h.runs().expect("runs").is_empty(), "nothing half-written");
        h.conn
            .execute_batch("PRAGMA user_version = 7")
            .expect("bump");
        drop(h);
        let e = History::open(&path).expect_err("newer schema").to_string();
        assert!(e.contains("schema version 7"), "{e}");
    }
}
