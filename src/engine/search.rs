//! A search of a case's timeline: the matching rows, their total, facets
//! and a histogram, as `custody timeline` prints them and the workspace
//! (`src/ui`) shows them. One function, so both read the same counts.

use serde::Serialize;

use crate::ids::CaseId;
use crate::timeline::query::{self, Field, Query};
use crate::timeline::store::{Bucket, Facet, Row, Timeline, TimelineError};

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
    pub offset: usize,
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

/// Runs `req` on `tl`.
pub fn search(tl: &Timeline, req: &SearchRequest) -> Result<SearchResults, SearchError> {
    let (fields, detection_facets) = split_facets(&req.facets)?;
    let q = &req.query;
    // Each facet is a scan of its own: they run side by side, one
    // connection each, while this one lists. A facet of a coded field
    // counts every matching event, so the total comes with it rather than
    // from one more scan.
    let counted = fields.iter().any(|f| f.is_coded());
    let (total, rows, facets) = std::thread::scope(|scope| {
        let handles: Vec<_> = fields
            .iter()
            .map(|f| {
                let reader = tl.reader(q.is_time_range());
                scope.spawn(move || reader.and_then(|r| r.facet(q, *f, req.top)))
            })
            .collect();
        let total = (!counted).then(|| tl.count(q)).transpose();
        let rows = tl.rows(q, req.limit, req.offset);
        let facets: Vec<_> = handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err(TimelineError::Panicked)))
            .collect();
        (total, rows, facets)
    });
    let rows = rows?;
    let mut facets = facets.into_iter().collect::<Result<Vec<_>, _>>()?;
    for f in &detection_facets {
        facets.push(tl.detection_facet(q, f, req.top)?);
    }
    let total = match total?.or_else(|| facets.iter().find_map(|f| f.total)) {
        Some(n) => n,
        None => tl.count(q)?,
    };
    let histogram = req.histogram.map(|b| tl.histogram(q, b)).transpose()?;
    Ok(SearchResults {
        case: req.case.clone(),
        query: q.text.clone(),
        total,
        rows,
        facets,
        histogram,
    })
}
