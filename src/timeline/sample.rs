//! Counts of a broad query estimated from a sample of the case, so a page
//! over ten million events answers in a fraction of a second: facets, a
//! histogram and a total read from [`SAMPLE_EVENTS`] events in
//! [`STRIPES`] runs of consecutive ids spread evenly over the case, then
//! scaled by how many events the case holds. Events are stored in load
//! order, so the runs cover every artefact and the whole span of time.
//! Each estimate says so; exact counts stay one request away.

use std::collections::{BTreeMap, HashMap};

use rusqlite::params_from_iter;
use rusqlite::types::ValueRef;

use super::query::{Field, Query, ip_from_key, show_time};
use super::store::{Bucket, Facet, FacetValue, Timeline, TimelineError, fold_case, top_values};

/// Events a sample reads at most.
pub const SAMPLE_EVENTS: i64 = 65_536;
/// Runs of consecutive events in a sample.
pub const STRIPES: i64 = 256;

/// What a sample of the case found under a query.
#[derive(Debug, Clone)]
pub struct Sampled {
    /// Events read, and how many of them the query matched.
    pub scanned: u64,
    pub matched: u64,
    /// Events in the case.
    pub population: u64,
    pub facets: Vec<Facet>,
    pub histogram: Option<Vec<Bucket>>,
}

impl Sampled {
    /// Whether the sample read the whole case, so its counts are exact.
    pub fn is_whole(&self) -> bool {
        self.scanned >= self.population
    }

    /// `n` events of the sample, as events of the case.
    pub fn scale(&self, n: u64) -> u64 {
        if self.scanned == 0 || self.is_whole() {
            return n;
        }
        let v = u128::from(n) * u128::from(self.population) / u128::from(self.scanned);
        u64::try_from(v).unwrap_or(u64::MAX)
    }

    /// The estimated number of matching events in the case.
    pub fn total(&self) -> u64 {
        self.scale(self.matched)
    }
}

/// A grouping key as read: term ids, address keys, numbers or text.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    None,
    Int(i64),
    Bytes(Vec<u8>),
}

impl Key {
    fn read(v: ValueRef<'_>) -> Self {
        match v {
            ValueRef::Integer(n) => Self::Int(n),
            ValueRef::Text(b) | ValueRef::Blob(b) => Self::Bytes(b.to_vec()),
            ValueRef::Null | ValueRef::Real(_) => Self::None,
        }
    }
}

impl Timeline {
    /// The `WITH` clause defining `sample`: the sampled events (all of
    /// them in a case no bigger than a sample). `MATERIALIZED` and the
    /// `CROSS JOIN` keep SQLite reading the runs by id, rather than
    /// walking an index the query's terms offer over the whole case.
    fn sample_with(&self, size: i64) -> Result<String, TimelineError> {
        let (lo, hi): (Option<i64>, Option<i64>) = self
            .conn
            // Each its own subquery, so each is one step down the
            // table rather than a scan of it (see `Timeline::span`).
            .query_row(
                "SELECT (SELECT min(id) FROM events), (SELECT max(id) FROM events)",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
        let (lo, hi) = (lo.unwrap_or(1), hi.unwrap_or(0));
        let span = hi.saturating_sub(lo).saturating_add(1);
        let stripes = STRIPES.min(size).max(1);
        let (stripes, width, step) = if span <= size {
            (1, span.max(1), span.max(1))
        } else {
            (stripes, (size / stripes).max(1), span / stripes)
        };
        // Integers only, computed here: nothing from the query.
        Ok(format!(
            "WITH RECURSIVE stripes(lo, hi) AS (SELECT {lo}, {hi} UNION ALL SELECT lo + {step}, hi + {step} FROM stripes LIMIT {stripes}),
             sample AS MATERIALIZED (SELECT events.* FROM stripes CROSS JOIN events
               ON events.id BETWEEN stripes.lo AND stripes.hi)",
            hi = lo + width - 1
        ))
    }

    /// Reads a sample of the case under `q`: the events matched, the top
    /// `top` values of each of `fields` and of each detection facet, and
    /// the histogram in buckets of `bucket_us`, every count scaled to the
    /// case.
    pub fn sample(
        &self,
        q: &Query,
        fields: &[Field],
        detection_facets: &[String],
        top: usize,
        bucket_us: Option<i64>,
    ) -> Result<Sampled, TimelineError> {
        self.sample_sized(SAMPLE_EVENTS, q, fields, detection_facets, top, bucket_us)
    }

    fn sample_sized(
        &self,
        size: i64,
        q: &Query,
        fields: &[Field],
        detection_facets: &[String],
        top: usize,
        bucket_us: Option<i64>,
    ) -> Result<Sampled, TimelineError> {
        let with = self.sample_with(size)?;
        let population = self.count(&Query::default())?;
        let (cond, params) = q.to_sql_within("stripes");
        let cols: Vec<String> = fields
            .iter()
            .map(|f| {
                if f.in_details() {
                    format!(
                        "(SELECT {c} FROM details WHERE details.id = events.id)",
                        c = f.column()
                    )
                } else {
                    format!("events.{}", f.column())
                }
            })
            .collect();
        let extra = if cols.is_empty() {
            String::new()
        } else {
            format!(", {}", cols.join(", "))
        };
        // The condition is a column, so the sample is read once: every row
        // counts as read, the matching ones are counted too.
        let sql =
            format!("{with} SELECT ({cond}) AS hit, events.time{extra} FROM sample AS events");
        let mut stmt = self.conn.prepare(&sql)?;
        let mut rows = stmt.query(params_from_iter(params))?;
        let (mut scanned, mut matched) = (0u64, 0u64);
        let mut groups: Vec<HashMap<Key, u64>> = vec![HashMap::new(); fields.len()];
        let mut buckets: BTreeMap<i64, u64> = BTreeMap::new();
        while let Some(r) = rows.next()? {
            scanned += 1;
            if r.get::<_, Option<i64>>(0)?.unwrap_or(0) == 0 {
                continue;
            }
            matched += 1;
            if let Some(b) = bucket_us {
                let b = b.max(1);
                let t: i64 = r.get(1)?;
                *buckets.entry(t / b * b).or_default() += 1;
            }
            for (i, g) in groups.iter_mut().enumerate() {
                *g.entry(Key::read(r.get_ref(i + 2)?)).or_default() += 1;
            }
        }
        drop(rows);
        drop(stmt);
        let mut s = Sampled {
            scanned,
            matched,
            population,
            facets: Vec::new(),
            histogram: None,
        };
        let estimated = !s.is_whole();
        for (field, g) in fields.iter().zip(groups) {
            let named = self.name_keys(*field, g)?;
            let values: Vec<(Option<String>, u64)> = if field.is_coded() {
                fold_case(named, |n| *n, |a, b| *a += b)
            } else {
                named
            };
            let values = values
                .into_iter()
                .map(|(value, n)| FacetValue {
                    value,
                    count: s.scale(n),
                })
                .collect();
            s.facets.push(Facet {
                field: field.name().to_owned(),
                values: top_values(values, top),
                total: None,
                estimated,
            });
        }
        for by in detection_facets {
            let mut f = self.detection_facet_in(
                &with,
                "sample AS events",
                q.to_sql_within("stripes"),
                by,
                top,
            )?;
            for v in &mut f.values {
                v.count = s.scale(v.count);
            }
            f.estimated = estimated;
            s.facets.push(f);
        }
        s.histogram = bucket_us.map(|_| {
            buckets
                .into_iter()
                .map(|(start, n)| Bucket {
                    start: show_time(start),
                    count: s.scale(n),
                })
                .collect()
        });
        Ok(s)
    }

    /// Group keys as the values a facet shows.
    fn name_keys(
        &self,
        field: Field,
        groups: HashMap<Key, u64>,
    ) -> Result<Vec<(Option<String>, u64)>, TimelineError> {
        let mut term = self
            .conn
            .prepare_cached("SELECT value FROM terms WHERE id = ?1")?;
        let mut out = Vec::with_capacity(groups.len());
        for (key, n) in groups {
            let value = match (field, key) {
                (_, Key::None) => None,
                (Field::Ip, Key::Bytes(k)) => ip_from_key(&k).map(|ip| ip.to_string()),
                (Field::Asn, Key::Int(a)) => Some(format!("AS{a}")),
                (f, Key::Int(id)) if f.is_coded() => {
                    term.query_row([id], |r| r.get::<_, String>(0)).ok()
                }
                (_, Key::Int(v)) => Some(v.to_string()),
                (_, Key::Bytes(b)) => Some(String::from_utf8_lossy(&b).into_owned()),
            };
            out.push((value, n));
        }
        Ok(out)
    }
}

/// Stops a timeline query in progress from another thread (a search past
/// its time budget); harmless once the query is over.
pub struct Stopper(rusqlite::InterruptHandle);

impl Stopper {
    pub fn stop(&self) {
        self.0.interrupt();
    }
}

impl Timeline {
    pub fn stopper(&self) -> Stopper {
        Stopper(self.conn.get_interrupt_handle())
    }
}

impl TimelineError {
    /// Whether a [`Stopper`] ended the query.
    pub fn is_interrupted(&self) -> bool {
        matches!(self, Self::Sql(rusqlite::Error::SqliteFailure(e, _))
            if e.code == rusqlite::ErrorCode::OperationInterrupted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timeline::Event;
    use crate::timeline::parse::Sink;

    const T0: i64 = 1_622_505_600_000_000; // 2021-06-01T00:00:00Z
    const MINUTE: i64 = 60_000_000;

    /// 20,000 events over 20,000 minutes: `GetObject` 60%, `PutObject`
    /// 30%, `DeleteObject` 10%, interleaved as a real trail is; actors in
    /// two spellings of one name, so the estimate folds case as the exact
    /// facet does.
    fn case(dir: &std::path::Path) -> Timeline {
        let mut tl = Timeline::open(&dir.join("t.sqlite")).expect("open");
        let mut l = tl.loader("a1", "cloudtrail", None).expect("loader");
        for i in 0..20_000i64 {
            let action = match i % 10 {
                0..=5 => "GetObject",
                6..=8 => "PutObject",
                _ => "DeleteObject",
            };
            let mut e = Event::new(T0 + i * MINUTE, "cloudtrail", action);
            e.actor = Some(if i % 4 == 0 { "ALICE" } else { "alice" }.to_owned());
            e.outcome = Some(if i % 50 == 0 { "failure" } else { "success" }.to_owned());
            e.record_id = Some(i.to_string());
            e.message = format!("{action} {i}");
            e.locator = format!("record {i}");
            l.event(e);
        }
        l.finish("2026-12-01T00:00:00Z").expect("finish");
        tl
    }

    fn near(estimate: u64, exact: u64, within: f64) -> bool {
        (estimate as f64 - exact as f64).abs() <= exact as f64 * within
    }

    #[test]
    fn a_sample_estimates_facets_the_total_and_the_histogram_of_the_case() {
        let dir = tempfile::tempdir().expect("tempdir");
        let tl = case(dir.path());
        let q = Query::parse("outcome:success").expect("query");
        let s = tl
            .sample_sized(
                2_048,
                &q,
                &[Field::Action, Field::Actor],
                &[],
                10,
                Some(1_440 * MINUTE),
            )
            .expect("sample");
        assert_eq!(s.population, 20_000);
        assert!((2_000..=2_048).contains(&s.scanned), "{s:?}");
        assert!(!s.is_whole());
        let exact = tl.count(&q).expect("count");
        assert!(
            near(s.total(), exact, 0.05),
            "{} against {exact}",
            s.total()
        );
        let action = &s.facets[0];
        assert!(action.estimated);
        let exact_action = tl.facet(&q, Field::Action, 10).expect("facet");
        for v in &exact_action.values {
            let e = action
                .values
                .iter()
                .find(|e| e.value == v.value)
                .unwrap_or_else(|| panic!("{:?} missing from {action:?}", v.value));
            assert!(near(e.count, v.count, 0.10), "{e:?} against {v:?}");
        }
        // Two spellings, one value, as the exact facet shows it.
        assert_eq!(s.facets[1].values.len(), 1, "{:?}", s.facets[1]);
        assert_eq!(s.facets[1].values[0].value.as_deref(), Some("alice"));
        let days = s.histogram.as_ref().expect("histogram");
        assert_eq!(days.len(), 14, "20,000 minutes is 14 days: {days:?}");
        let exact_days = tl.histogram(&q, 1_440 * MINUTE).expect("histogram");
        for (e, x) in days.iter().zip(&exact_days).take(13) {
            assert_eq!(e.start, x.start);
            assert!(near(e.count, x.count, 0.35), "{e:?} against {x:?}");
        }
    }

    #[test]
    fn a_sample_of_a_case_no_bigger_than_it_is_the_exact_count() {
        let dir = tempfile::tempdir().expect("tempdir");
        let tl = case(dir.path());
        let q = Query::parse("-action:GetObject").expect("query");
        let s = tl
            .sample_sized(20_000, &q, &[Field::Action], &[], 10, None)
            .expect("sample");
        assert!(s.is_whole());
        assert!(!s.facets[0].estimated);
        assert_eq!(s.total(), tl.count(&q).expect("count"));
        assert_eq!(
            s.facets[0].values,
            tl.facet(&q, Field::Action, 10).expect("facet").values
        );
    }

    #[test]
    fn a_sample_reads_only_its_runs_whatever_index_the_query_offers() {
        let dir = tempfile::tempdir().expect("tempdir");
        let tl = case(dir.path());
        // `action` has an index: the sample must still be the runs of ids.
        let q = Query::parse("action:DeleteObject").expect("query");
        let s = tl
            .sample_sized(1_024, &q, &[], &[], 10, None)
            .expect("sample");
        assert!(s.scanned <= 1_024, "{s:?}");
        assert!(near(s.total(), 2_000, 0.15), "{s:?}");
        let sql = format!(
            "EXPLAIN QUERY PLAN {} SELECT count(*) FROM sample AS events WHERE {}",
            tl.sample_with(1_024).expect("with"),
            q.to_sql().0
        );
        let mut stmt = tl.conn.prepare(&sql).expect("plan");
        let plan = stmt
            .query_map(params_from_iter(q.to_sql().1), |r| r.get::<_, String>(3))
            .expect("plan")
            .collect::<Result<Vec<_>, _>>()
            .expect("plan")
            .join("; ");
        assert!(plan.contains("INTEGER PRIMARY KEY"), "{plan}");
        assert!(!plan.contains("events_action"), "{plan}");
    }

    #[test]
    fn rows_read_along_the_time_index_are_the_rows() {
        let dir = tempfile::tempdir().expect("tempdir");
        let tl = case(dir.path());
        for text in [
            "",
            "action:PutObject",
            "-action:GetObject",
            "outcome:failure",
            "PutObject",
        ] {
            let q = Query::parse(text).expect("query");
            for (limit, offset) in [(100, 0), (50, 1_000), (10, 19_990)] {
                assert_eq!(
                    tl.rows_walking_time(&q, limit, offset).expect("walk"),
                    tl.rows(&q, limit, offset).expect("rows"),
                    "{text} {limit} {offset}"
                );
            }
        }
    }

    #[test]
    fn pages_from_a_place_are_the_rows_after_or_before_it() {
        use crate::timeline::store::{Cursor, Page};
        let dir = tempfile::tempdir().expect("tempdir");
        let tl = case(dir.path());
        for text in ["", "action:PutObject", "-action:GetObject", "PutObject"] {
            let q = Query::parse(text).expect("query");
            let all = tl.rows(&q, 100_000, 0).expect("rows");
            for walk in [false, true] {
                for k in [0usize, 37, 1_000, all.len() - 2] {
                    let after = tl
                        .page(&q, 50, &Page::After(Cursor::of(&all[k])), walk)
                        .expect("after");
                    let want = &all[k + 1..(k + 51).min(all.len())];
                    assert_eq!(after, want, "{text} after {k}");
                    let before = tl
                        .page(&q, 50, &Page::Before(Cursor::of(&all[k + 1])), walk)
                        .expect("before");
                    assert_eq!(
                        before,
                        &all[(k + 1).saturating_sub(50)..=k],
                        "{text} before {k}"
                    );
                }
            }
        }
        // Events of one instant are ordered by id, so none is skipped or repeated.
        let q = Query::default();
        let same: Vec<_> = tl.rows(&q, 3, 0).expect("rows");
        assert_eq!(
            tl.page(
                &q,
                2,
                &Page::After(Cursor {
                    time_us: same[0].time_us,
                    id: same[0].id - 1
                }),
                false
            )
            .expect("page"),
            same[..2]
        );
        assert!("12.x".parse::<Cursor>().unwrap_err().contains("TIME_US.ID"));
        assert!("12".parse::<Cursor>().is_err());
    }

    #[test]
    fn full_text_terms_in_a_sample_look_only_within_its_runs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let tl = case(dir.path());
        for text in ["DeleteObject", "-PutObject", "GetObject outcome:failure"] {
            let q = Query::parse(text).expect("query");
            let s = tl
                .sample_sized(2_048, &q, &[Field::Action], &[], 10, None)
                .expect("sample");
            let exact = tl.count(&q).expect("count");
            assert!(
                near(s.total(), exact, 0.15),
                "{text}: {} against {exact}",
                s.total()
            );
        }
    }

    #[test]
    fn a_stopper_ends_a_query_in_progress() {
        let dir = tempfile::tempdir().expect("tempdir");
        let tl = Timeline::open(&dir.path().join("t.sqlite")).expect("open");
        let stopper = tl.stopper();
        let err = std::thread::scope(|scope| {
            scope.spawn(|| {
                std::thread::sleep(std::time::Duration::from_millis(100));
                stopper.stop();
            });
            // Minutes of work unless stopped.
            tl.conn
                .query_row(
                    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n LIMIT 10000000000)
                     SELECT count(*) FROM n",
                    [],
                    |r| r.get::<_, i64>(0),
                )
                .map_err(TimelineError::from)
                .expect_err("stopped")
        });
        assert!(err.is_interrupted(), "{err:?}");
        assert!(!TimelineError::Panicked.is_interrupted());
    }
}
