//! Detections kept in the timeline: what `custody detect` found, by rule
//! and by indicator, each with its rows, beside the events they rest on.
//!
//! ```sql
//! detections(id, kind, rule, title, level, tags, actors, detail, first, last, at)
//! detection_rows(detection, event)             -- event = events.id
//! detect_runs(at, rules, lists, records)       -- one row per run
//! ```
//! `tags` and `actors` are JSON arrays, `detail` a JSON object. The tables
//! are made when a timeline is opened without them; a rebuilt timeline
//! starts empty (its rows are new), and a run replaces what an earlier run
//! of the same rules or lists stored.

use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use super::store::{Timeline, TimelineError};

/// A stored detection, as `custody findings` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stored {
    pub id: i64,
    pub kind: String,
    pub rule: String,
    pub title: String,
    pub level: String,
    pub tags: Vec<String>,
    pub actors: Vec<String>,
    pub detail: serde_json::Value,
    /// First and last event time (µs).
    pub first_us: Option<i64>,
    pub last_us: Option<i64>,
    pub at: String,
    pub rows: Vec<i64>,
}

/// One artefact the timeline holds, for a scan to read again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loaded {
    pub artefact: String,
    pub format: String,
    /// Its rows are ids from here up to the next artefact's first.
    pub first_id: i64,
    pub end_id: i64,
}

/// Facets over detections: events counted by rule title, by ATT&CK technique.
pub const FACETS: &[&str] = &["rule", "technique"];

pub use super::query::{LEVELS, level_rank};

/// A record's place in its artefact: member and locator, as the timeline keeps them.
pub type Place = (String, String);

/// Timeline rows of one artefact by place.
pub type RowMap = std::collections::HashMap<Place, i64>;

/// One finding to store: a rule's matches by one actor, a correlation's
/// firing, an indicator's hits, a break in CloudTrail's integrity chain.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NewDetection {
    /// `sigma`, `ioc` or `trail`.
    pub kind: &'static str,
    /// The rule's id (its title where it has none), `list:row` for an
    /// indicator, `artefact:problem:key` for the trail.
    pub rule: String,
    pub title: String,
    /// Sigma's levels: informational, low, medium, high, critical.
    pub level: String,
    /// The rule's tags (`attack.t1114.003`).
    pub tags: Vec<String>,
    /// The accounts the rows name as actors.
    pub actors: Vec<String>,
    /// What the rule or indicator was, where it came from, what matched.
    pub detail: serde_json::Value,
    /// Timeline rows, in time order.
    pub rows: Vec<i64>,
}

impl Timeline {
    fn has_detections(&self) -> Result<bool, TimelineError> {
        Ok(self
            .conn
            .query_row(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'detections'",
                [],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }

    /// The artefacts whose loads finished, with the range of their rows.
    pub fn loaded_artefacts(&self) -> Result<Vec<Loaded>, TimelineError> {
        let mut stmt = self.conn.prepare(
            "SELECT artefact, format, first_id FROM ingested
             WHERE state IN ('done', 'loaded') ORDER BY first_id",
        )?;
        let mut out: Vec<Loaded> = stmt
            .query_map([], |r| {
                Ok(Loaded {
                    artefact: r.get(0)?,
                    format: r.get(1)?,
                    first_id: r.get(2)?,
                    end_id: i64::MAX,
                })
            })?
            .collect::<Result<_, _>>()?;
        let firsts: Vec<i64> = out.iter().map(|l| l.first_id).collect();
        for (l, next) in out.iter_mut().zip(firsts.iter().skip(1)) {
            l.end_id = *next;
        }
        Ok(out)
    }

    /// Rows of one artefact by place (member, locator).
    pub fn rows_by_place(&self, l: &Loaded) -> Result<RowMap, TimelineError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT events.id, (SELECT value FROM terms WHERE terms.id = details.member), details.locator
             FROM events JOIN details ON details.id = events.id
             WHERE events.id >= ?1 AND events.id < ?2
               AND events.artefact = (SELECT id FROM terms WHERE value = ?3)",
        )?;
        let mut out = RowMap::default();
        let mut rows = stmt.query(params![l.first_id, l.end_id, l.artefact])?;
        while let Some(r) = rows.next()? {
            let member: Option<String> = r.get(1)?;
            out.insert((member.unwrap_or_default(), r.get(2)?), r.get(0)?);
        }
        Ok(out)
    }

    /// Stores a run's detections in one transaction, replacing those an
    /// earlier run stored for the same rules (`kind`, `rule`) and for
    /// every rule or list in `replaced`.
    /// `run` (rules, lists, records) marks a run of `custody detect`; the
    /// trail's check stores its findings without one.
    pub fn store_detections(
        &mut self,
        found: &[NewDetection],
        replaced: &[(&str, String)],
        at: &str,
        run: Option<(usize, usize, u64)>,
    ) -> Result<(), TimelineError> {
        let tx = self.conn.transaction()?;
        {
            let mut del = tx.prepare(
                "DELETE FROM detection_rows WHERE detection IN
                   (SELECT id FROM detections WHERE kind = ?1 AND rule = ?2)",
            )?;
            let mut del2 = tx.prepare("DELETE FROM detections WHERE kind = ?1 AND rule = ?2")?;
            for (kind, rule) in replaced {
                del.execute(params![kind, rule])?;
                del2.execute(params![kind, rule])?;
            }
            let mut add = tx.prepare(
                "INSERT INTO detections(kind, rule, title, level, tags, actors, detail, first, last, at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7,
                   (SELECT min(time) FROM events WHERE id IN (SELECT value FROM json_each(?8))),
                   (SELECT max(time) FROM events WHERE id IN (SELECT value FROM json_each(?8))),
                   ?9)",
            )?;
            let mut add_row = tx.prepare(
                "INSERT OR IGNORE INTO detection_rows(detection, event) VALUES (?1, ?2)",
            )?;
            for d in found {
                let rows = serde_json::to_string(&d.rows).unwrap_or_else(|_| "[]".into());
                add.execute(params![
                    d.kind,
                    d.rule,
                    d.title,
                    d.level,
                    serde_json::to_string(&d.tags).unwrap_or_else(|_| "[]".into()),
                    serde_json::to_string(&d.actors).unwrap_or_else(|_| "[]".into()),
                    d.detail.to_string(),
                    rows,
                    at,
                ])?;
                let id = tx.last_insert_rowid();
                for r in &d.rows {
                    add_row.execute(params![id, r])?;
                }
            }
            if let Some(run) = run {
                tx.execute(
                    "INSERT INTO detect_runs(at, rules, lists, records) VALUES (?1, ?2, ?3, ?4)",
                    params![
                        at,
                        i64::try_from(run.0).unwrap_or(i64::MAX),
                        i64::try_from(run.1).unwrap_or(i64::MAX),
                        i64::try_from(run.2).unwrap_or(i64::MAX)
                    ],
                )?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// The rules of stored detections of `kind` whose rule starts with `prefix`.
    pub fn detection_rules_under(
        &self,
        kind: &str,
        prefix: &str,
    ) -> Result<Vec<String>, TimelineError> {
        let mut stmt = self.conn.prepare(
            "SELECT rule FROM detections WHERE kind = ?1 AND substr(rule, 1, length(?2)) = ?2",
        )?;
        let out = stmt
            .query_map(params![kind, prefix], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        Ok(out)
    }

    /// The rows loaded from one member (a log file's key) of an artefact.
    pub fn rows_of_member(&self, artefact: &str, member: &str) -> Result<Vec<i64>, TimelineError> {
        let mut stmt = self.conn.prepare(
            "SELECT events.id FROM events JOIN details ON details.id = events.id
             WHERE events.artefact = (SELECT id FROM terms WHERE value = ?1)
               AND details.member = (SELECT id FROM terms WHERE value = ?2)
             ORDER BY events.time, events.id",
        )?;
        let out = stmt
            .query_map(params![artefact, member], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        Ok(out)
    }

    /// Every stored detection, highest level first, then by time.
    pub fn detections(&self) -> Result<Vec<Stored>, TimelineError> {
        if !self.has_detections()? {
            return Ok(Vec::new());
        }
        let mut stmt = self.conn.prepare(
            "SELECT id, kind, rule, title, level, tags, actors, detail, first, last, at,
               (SELECT json_group_array(event) FROM
                  (SELECT event FROM detection_rows JOIN events ON events.id = detection_rows.event
                   WHERE detection = detections.id ORDER BY events.time, events.id))
             FROM detections",
        )?;
        let json = |s: String| serde_json::from_str(&s).unwrap_or(serde_json::Value::Null);
        let mut out: Vec<Stored> = stmt
            .query_map([], |r| {
                Ok(Stored {
                    id: r.get(0)?,
                    kind: r.get(1)?,
                    rule: r.get(2)?,
                    title: r.get(3)?,
                    level: r.get(4)?,
                    tags: serde_json::from_str(&r.get::<_, String>(5)?).unwrap_or_default(),
                    actors: serde_json::from_str(&r.get::<_, String>(6)?).unwrap_or_default(),
                    detail: json(r.get(7)?),
                    first_us: r.get(8)?,
                    last_us: r.get(9)?,
                    at: r.get(10)?,
                    rows: serde_json::from_str(&r.get::<_, String>(11)?).unwrap_or_default(),
                })
            })?
            .collect::<Result<_, _>>()?;
        out.sort_by(|a, b| {
            level_rank(&b.level)
                .cmp(&level_rank(&a.level))
                .then(a.first_us.cmp(&b.first_us))
                .then(a.id.cmp(&b.id))
        });
        Ok(out)
    }

    /// Events under `q` counted by the title of the rule (or indicator)
    /// that matched them (`rule`), or by ATT&CK technique (`technique`).
    pub fn detection_facet(
        &self,
        q: &super::query::Query,
        by: &str,
        top: usize,
    ) -> Result<super::store::Facet, TimelineError> {
        self.detection_facet_in("", "events", q.to_sql(), by, top)
    }

    /// [`Self::detection_facet`] over `events`, a table or a view `with`
    /// defines (a sample: see [`super::sample`]), under the query's
    /// condition and parameters.
    pub(super) fn detection_facet_in(
        &self,
        with: &str,
        events: &str,
        (cond, mut params): (String, Vec<rusqlite::types::Value>),
        by: &str,
        top: usize,
    ) -> Result<super::store::Facet, TimelineError> {
        let key = if by == "technique" {
            "lower(j.value)"
        } else {
            "d.title"
        };
        let tags = if by == "technique" {
            ", json_each(d.tags) j"
        } else {
            ""
        };
        let only = if by == "technique" {
            "AND lower(j.value) GLOB 'attack.t[0-9]*'"
        } else {
            ""
        };
        params.push(rusqlite::types::Value::Integer(
            i64::try_from(top).unwrap_or(i64::MAX),
        ));
        let sql = format!(
            "{with} SELECT {key}, count(DISTINCT r.event) FROM detection_rows r
               JOIN detections d ON d.id = r.detection{tags}
             WHERE r.event IN (SELECT id FROM {events} WHERE {cond}) {only}
             GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT ?{}",
            params.len()
        );
        let mut stmt = self.conn.prepare(&sql)?;
        let values = stmt
            .query_map(rusqlite::params_from_iter(params), |r| {
                Ok(super::store::FacetValue {
                    value: r.get(0)?,
                    count: u64::try_from(r.get::<_, i64>(1)?).unwrap_or(0),
                })
            })?
            .collect::<Result<_, _>>()?;
        Ok(super::store::Facet {
            field: by.to_owned(),
            values,
            total: None,
            estimated: false,
        })
    }

    /// When detect last ran, and whether artefacts were loaded since.
    pub fn detect_state(&self) -> Result<Option<(String, bool)>, TimelineError> {
        if !self.has_detections()? {
            return Ok(None);
        }
        let last: Option<String> = self
            .conn
            .query_row("SELECT max(at) FROM detect_runs", [], |r| r.get(0))
            .optional()?
            .flatten();
        let Some(last) = last else { return Ok(None) };
        let newer: bool = self.conn.query_row(
            "SELECT EXISTS(SELECT 1 FROM ingested WHERE at > ?1)",
            [&last],
            |r| r.get(0),
        )?;
        Ok(Some((last, newer)))
    }
}
