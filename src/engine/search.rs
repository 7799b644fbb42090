//! A search of a case's timeline: the matching rows, their total, facets
//! and a histogram, as `custody timeline` prints them and the workspace
//! (`src/ui`) shows them. One function, so both read the same counts.

use std::sync::mpsc::RecvTimeoutError;
use std::time::Duration;

use serde::Serialize;

use crate::ids::CaseId;
use crate::timeline::query::{self, Field, Query};
use crate::timeline::sample::{Sampled, Stopper};
use crate::timeline::store::{Bucket, Cursor, Facet, Page, Row, Timeline, TimelineError};

/// What to search and what to count.
#[derive(Debug, Clone)]
pub struct SearchRequest {
    pub case: CaseId,
    pub query: Query,
    /// Fields to count the top values of: timeline columns and the
    /// detection facets (`rule`, `technique`).
    pub facets: Vec<String>,
    /// Values per facet.
    pub top: usize,
    /// Bucket width of the histogram, in microseconds.
    pub histogram: Option<i64>,
    pub limit: usize,
    /// Where the rows start: an offset, or just after (or before) an event.
    pub from: Page,
    /// How long the exact counts may take; past it they are estimated
    /// from a sample of the case (see [`crate::timeline::sample`]). `None`:
    /// exact, however long.
    pub budget: Option<Duration>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SearchResults {
    pub case: CaseId,
    pub query: String,
    pub total: u64,
    pub rows: Vec<Row>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub facets: Vec<Facet>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub histogram: Option<Vec<Bucket>>,
    /// The place after the last row (`TIME_US.ID`) when the page is full:
    /// the next page is `after` it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
    /// Which counts are estimates, and from what sample; absent when every
    /// count is exact.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub estimate: Option<Estimate>,
}

/// The counts a search estimated from a sample of the case (each facet
/// says for itself), and the sample.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Estimate {
    pub total: bool,
    pub histogram: bool,
    pub sample: Option<Sample>,
}

/// Events read for the estimate, of how many in the case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Sample {
    pub events: u64,
    pub of: u64,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SearchError {
    #[error("unknown facet `{name}`; facets are {known}")]
    UnknownFacet { name: String, known: String },
    #[error(transparent)]
    Timeline(#[from] TimelineError),
}

/// Every field a facet may count, for messages and pickers.
pub fn facet_names() -> Vec<&'static str> {
    query::FIELDS
        .iter()
        .map(|(f, _)| f.name())
        .chain(crate::timeline::detections::FACETS.iter().copied())
        .collect()
}

/// The facets' fields, split into timeline columns and detection facets.
fn split_facets(names: &[String]) -> Result<(Vec<Field>, Vec<String>), SearchError> {
    let mut fields = Vec::new();
    let mut detections = Vec::new();
    for name in names {
        let lower = name.to_ascii_lowercase();
        if crate::timeline::detections::FACETS.contains(&lower.as_str()) {
            detections.push(lower);
        } else {
            fields.push(
                Field::from_name(name).ok_or_else(|| SearchError::UnknownFacet {
                    name: name.clone(),
                    known: facet_names().join(", "),
                })?,
            );
        }
    }
    Ok((fields, detections))
}

/// Whether every name is a facet.
pub fn check_facets(names: &[String]) -> Result<(), SearchError> {
    split_facets(names).map(|_| ())
}

/// Runs `req` on `tl`: exactly, or within `req.budget`.
pub fn search(tl: &Timeline, req: &SearchRequest) -> Result<SearchResults, SearchError> {
    let (fields, detection_facets) = split_facets(&req.facets)?;
    let q = &req.query;
    // A sample first, when there is a budget: it tells a broad query (whose
    // exact counts scan most of the case) from a narrow one, and stands in
    // for whatever the budget cuts short.
    let started = std::time::Instant::now();
    let sampled = match req.budget {
        Some(_) => Some(tl.sample(q, &fields, &detection_facets, req.top, req.histogram)?),
        None => None,
    };
    let sample_ms = started.elapsed().as_millis();
    let budget = match (&sampled, req.budget) {
        (Some(s), Some(b)) if s.total() >= BROAD => Some(b.min(BROAD_BUDGET)),
        (_, b) => b,
    };
    // The page's rows in time order: walking the time index and testing
    // each event reads about (offset + limit) / share events, a few
    // milliseconds per hundred thousand. An index on one of the query's
    // terms can cost far more: SQLite picks one without knowing how many
    // events it holds (an address's 300,000 to find 30,000 of one action
    // there), then sorts them all. So walk unless the walk is long; with
    // no match in the sample the share is unknown, and the planner decides.
    let walk_time = sampled.as_ref().is_some_and(|s| {
        let m = u128::from(s.total());
        // From a cursor the walk starts at its place on the index.
        let skip = match req.from {
            Page::Offset(o) => o,
            Page::After(_) | Page::Before(_) => 0,
        };
        let want = u128::try_from(skip.saturating_add(req.limit)).unwrap_or(u128::MAX);
        !s.is_whole() && m > 0 && want.saturating_mul(u128::from(s.population)) / m <= LONGEST_WALK
    });
    let exact = exact_parts(tl, req, &fields, &detection_facets, budget, walk_time)?;
    tracing::debug!(
        query = %q.text,
        sample_ms,
        exact_ms = started.elapsed().as_millis() - sample_ms,
        budget_ms = budget.map(|b| b.as_millis()),
        stopped = exact.facets.iter().filter(|f| f.is_none()).count()
            + usize::from(exact.total.is_none())
            + usize::from(exact.histogram.is_none()),
        "search"
    );
    let sample_of = |s: &Sampled| Sample {
        events: s.scanned,
        of: s.population,
    };
    let mut estimate = Estimate::default();
    let mut facets = Vec::with_capacity(exact.facets.len());
    for (i, f) in exact.facets.into_iter().enumerate() {
        if let Some(f) = f {
            facets.push(f);
            continue;
        }
        // Only a budget stops a facet, and a budget comes with a sample.
        let (s, f) = sampled
            .as_ref()
            .and_then(|s| s.facets.get(i).map(|f| (s, f)))
            .ok_or(SearchError::Timeline(TimelineError::Panicked))?;
        if f.estimated {
            estimate.sample = Some(sample_of(s));
        }
        facets.push(f.clone());
    }
    // Fewer rows than asked from the start: they are all of them.
    let whole_page = req.from == Page::Offset(0) && exact.rows.len() < req.limit;
    let total = match (exact.total, &sampled) {
        (Some(n), _) => n,
        (None, _) if whole_page => exact.rows.len() as u64,
        (None, Some(s)) => {
            if !s.is_whole() {
                estimate.total = true;
                estimate.sample = Some(sample_of(s));
            }
            s.total()
        }
        (None, None) => tl.count(q)?,
    };
    let histogram = match (exact.histogram, &sampled) {
        (Some(h), _) => h,
        (None, Some(s)) => {
            if !s.is_whole() && s.histogram.is_some() {
                estimate.histogram = true;
                estimate.sample = Some(sample_of(s));
            }
            s.histogram.clone()
        }
        (None, None) => None,
    };
    let next = exact
        .rows
        .last()
        .filter(|_| req.limit > 0 && exact.rows.len() >= req.limit)
        .map(|r| Cursor::of(r).to_string());
    Ok(SearchResults {
        case: req.case.clone(),
        query: q.text.clone(),
        total,
        next,
        rows: exact.rows,
        facets,
        histogram,
        estimate: estimate.sample.is_some().then_some(estimate),
    })
}

/// A query the sample says keeps this many events or more is broad: its
/// exact counts get only [`BROAD_BUDGET`], enough for what the timeline
/// keeps counted (the facets of the whole case) and no scan.
const BROAD: u64 = 50_000;
const BROAD_BUDGET: Duration = Duration::from_millis(30);

/// Events a page's rows may walk along the time index (see `search`).
const LONGEST_WALK: u128 = 1_000_000;

/// What the exact queries returned; `None` where the budget stopped one.
struct Exact {
    rows: Vec<Row>,
    total: Option<u64>,
    facets: Vec<Option<Facet>>,
    histogram: Option<Option<Vec<Bucket>>>,
}

/// The rows, and the total, facets and histogram each on a connection of
/// its own (side by side, a core each), stopped at `budget`. The rows are
/// never stopped: they are what the page is for, and in time order they
/// come off the index.
fn exact_parts(
    tl: &Timeline,
    req: &SearchRequest,
    fields: &[Field],
    detection_facets: &[String],
    budget: Option<Duration>,
    walk_time: bool,
) -> Result<Exact, SearchError> {
    let q = &req.query;
    let in_order = q.is_time_range();
    // A facet of a coded field counts every matching event, so the total
    // comes with it rather than from one more scan.
    let counted = fields.iter().any(|f| f.is_coded());
    let reader = || tl.reader(in_order);
    let field_readers = fields
        .iter()
        .map(|_| reader())
        .collect::<Result<Vec<_>, _>>()?;
    let detection_readers = detection_facets
        .iter()
        .map(|_| reader())
        .collect::<Result<Vec<_>, _>>()?;
    let count_reader = (!counted).then(reader).transpose()?;
    let histogram_reader = req.histogram.map(|_| reader()).transpose()?;
    let stoppers: Vec<Stopper> = field_readers
        .iter()
        .chain(&detection_readers)
        .chain(&count_reader)
        .chain(&histogram_reader)
        .map(Timeline::stopper)
        .collect();
    let (done, finished) = std::sync::mpsc::channel::<()>();
    let (rows, total, facets, histogram) = std::thread::scope(|scope| {
        if let Some(b) = budget {
            scope.spawn(move || {
                if finished.recv_timeout(b) == Err(RecvTimeoutError::Timeout) {
                    for s in &stoppers {
                        s.stop();
                    }
                }
            });
        }
        let mut handles = Vec::new();
        for (f, r) in fields.iter().zip(field_readers) {
            handles.push(scope.spawn(move || r.facet(q, *f, req.top)));
        }
        for (by, r) in detection_facets.iter().zip(detection_readers) {
            handles.push(scope.spawn(move || r.detection_facet(q, by, req.top)));
        }
        let total = count_reader.map(|r| scope.spawn(move || r.count(q)));
        let histogram = histogram_reader
            .zip(req.histogram)
            .map(|(r, b)| scope.spawn(move || r.histogram(q, b)));
        let rows = tl.page(q, req.limit, &req.from, walk_time);
        let facets: Vec<_> = handles.into_iter().map(joined).collect();
        let total = total.map(joined);
        let histogram = histogram.map(joined);
        drop(done);
        (rows, total, facets, histogram)
    });
    let kept = budget.is_some();
    let facets = facets
        .into_iter()
        .map(|f| stopped(f, kept))
        .collect::<Result<Vec<_>, _>>()?;
    let total = match total {
        Some(t) => stopped(t, kept)?,
        None => facets.iter().flatten().find_map(|f| f.total),
    };
    let histogram = match histogram {
        Some(h) => stopped(h, kept)?.map(Some),
        None => Some(None),
    };
    Ok(Exact {
        rows: rows?,
        total,
        facets,
        histogram,
    })
}

fn joined<T>(
    h: std::thread::ScopedJoinHandle<'_, Result<T, TimelineError>>,
) -> Result<T, TimelineError> {
    h.join().unwrap_or(Err(TimelineError::Panicked))
}

/// A result, or `None` for a query its budget stopped.
fn stopped<T>(r: Result<T, TimelineError>, budgeted: bool) -> Result<Option<T>, TimelineError> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if budgeted && e.is_interrupted() => Ok(None),
        Err(e) => Err(e),
    }
}

/// How many events `q` matches: exactly, or estimated from a sample when
/// `budget` runs out first.
pub fn count_within(tl: &Timeline, q: &Query, budget: Duration) -> Result<Counted, TimelineError> {
    let r = tl.reader(q.is_time_range())?;
    let stopper = r.stopper();
    let (done, finished) = std::sync::mpsc::channel::<()>();
    let n = std::thread::scope(|scope| {
        scope.spawn(move || {
            if finished.recv_timeout(budget) == Err(RecvTimeoutError::Timeout) {
                stopper.stop();
            }
        });
        let n = r.count(q);
        drop(done);
        n
    });
    match n {
        Ok(n) => Ok(Counted {
            events: n,
            estimated: false,
        }),
        Err(e) if e.is_interrupted() => {
            let s = tl.sample(q, &[], &[], 0, None)?;
            Ok(Counted {
                events: s.total(),
                estimated: !s.is_whole(),
            })
        }
        Err(e) => Err(e),
    }
}

/// A count of events, and whether it is an estimate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Counted {
    pub events: u64,
    pub estimated: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timeline::Event;
    use crate::timeline::parse::Sink;

    #[test]
    fn within_a_budget_a_case_no_bigger_than_a_sample_is_counted_exactly() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut tl = Timeline::open(&dir.path().join("t.sqlite")).expect("open");
        let mut l = tl.loader("a1", "cloudtrail", None).expect("loader");
        for i in 0..3_000i64 {
            let action = ["GetObject", "PutObject", "ListBuckets"][(i % 3) as usize];
            let mut e = Event::new(1_622_505_600_000_000 + i * 60_000_000, "cloudtrail", action);
            e.actor = Some(format!("user{}", i % 7));
            e.record_id = Some(i.to_string());
            e.message = format!("{action} {i}");
            e.locator = format!("record {i}");
            l.event(e);
        }
        l.finish("2026-12-01T00:00:00Z").expect("finish");
        for text in ["", "-action:GetObject", "actor:user3", "PutObject"] {
            let req = |budget| SearchRequest {
                case: "c".parse().expect("case"),
                query: Query::parse(text).expect("query"),
                facets: ["action", "actor", "outcome"].map(String::from).to_vec(),
                top: 10,
                histogram: Some(3_600_000_000),
                limit: 20,
                from: Page::Offset(40),
                budget,
            };
            let exact = search(&tl, &req(None)).expect("exact");
            let bounded = search(&tl, &req(Some(Duration::from_millis(250)))).expect("bounded");
            assert_eq!(bounded.estimate, None, "{text}");
            assert_eq!(bounded.total, exact.total, "{text}");
            assert_eq!(bounded.rows, exact.rows, "{text}");
            assert_eq!(bounded.facets, exact.facets, "{text}");
            assert_eq!(bounded.histogram, exact.histogram, "{text}");
        }
    }
}
