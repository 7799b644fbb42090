//! One event's original record, read again from the evidence: the
//! artefact its row names is read back from the store with both digests
//! checked (so showing the record re-verifies its source), parsed as the
//! timeline loaded it, and the record at the row's member and position
//! handed back byte for byte.

use super::App;
use super::logs::{LogsError, existing_timeline};
use crate::evidence::case;
use crate::ids::CaseId;
use crate::timeline::parse::{Format, Record, Sink};
use crate::timeline::store::{Row, TimelineError};
use crate::timeline::{Event, Problem, ingest};

/// An event's record as its source wrote it, and the digests it was read under.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RawRecord {
    pub artefact: String,
    pub member: String,
    pub locator: String,
    /// The record's bytes (a JSON object, a line, a CSV row...), as text
    /// where they are UTF-8.
    pub text: String,
    /// Whether the bytes are not UTF-8 (then `text` is a lossy rendering).
    pub binary: bool,
    /// The record again as indented JSON, where the parser read it as JSON.
    pub json: Option<String>,
    /// Both digests of the artefact, checked as it was read.
    pub raw_sha256: String,
    pub stored_sha256: String,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    #[error(transparent)]
    Logs(#[from] LogsError),
    #[error("the timeline of case {case}")]
    Timeline {
        case: CaseId,
        #[source]
        source: TimelineError,
    },
    #[error("the timeline names artefact {artefact}, which case {case} does not hold")]
    Missing { case: CaseId, artefact: String },
    #[error("artefact {artefact} is not in the timeline, or its format is not known")]
    NotLoaded { artefact: String },
    #[error("cannot read artefact {artefact} of case {case}")]
    Read {
        case: CaseId,
        artefact: String,
        #[source]
        source: Box<case::EvidenceError>,
    },
}

/// Catches the one record at a member and position.
struct Catch<'a> {
    member: &'a str,
    locator: &'a str,
    found: Option<(Vec<u8>, Option<String>)>,
}

impl Sink for Catch<'_> {
    fn event(&mut self, event: Event) {
        let message = event.message.clone();
        self.record(event, Record::bytes(message.as_bytes()));
    }
    fn problem(&mut self, _: Problem) {}
    fn record(&mut self, event: Event, raw: Record<'_>) {
        if self.found.is_none() && event.member == self.member && event.locator == self.locator {
            let json = raw.json.and_then(|v| serde_json::to_string_pretty(v).ok());
            self.found = Some((raw.bytes.to_vec(), json));
        }
    }
}

/// The original record of `row`, or `None` when its artefact no longer
/// holds a record there.
pub async fn raw_record(
    app: &App,
    case_id: &CaseId,
    row: &Row,
) -> Result<Option<RawRecord>, RecordError> {
    let format = {
        let tl = existing_timeline(app, case_id)?;
        tl.loaded_artefacts()
            .map_err(|source| RecordError::Timeline {
                case: case_id.clone(),
                source,
            })?
            .into_iter()
            .find(|l| l.artefact == row.artefact)
            .and_then(|l| Format::from_name(&l.format))
            .ok_or_else(|| RecordError::NotLoaded {
                artefact: row.artefact.clone(),
            })?
    };
    let store = app.store().await.map_err(LogsError::from)?;
    let read_err = |source| RecordError::Read {
        case: case_id.clone(),
        artefact: row.artefact.clone(),
        source: Box::new(source),
    };
    let artefacts = case::artefacts(store.as_ref(), case_id)
        .await
        .map_err(read_err)?;
    let a = artefacts
        .into_iter()
        .find(|a| a.id.to_string() == row.artefact)
        .ok_or_else(|| RecordError::Missing {
            case: case_id.clone(),
            artefact: row.artefact.clone(),
        })?;
    let bytes = case::read_verified(store.as_ref(), &a)
        .await
        .map_err(read_err)?;
    let (member, locator) = (row.member.clone(), row.locator.clone());
    let found = tokio::task::spawn_blocking(move || {
        let mut catch = Catch {
            member: &member,
            locator: &locator,
            found: None,
        };
        ingest::parse_artefact(&a, format, &bytes, &mut catch);
        catch.found.map(|f| (f, a))
    })
    .await
    .ok()
    .flatten();
    Ok(found.map(|((bytes, json), a)| {
        let text = String::from_utf8_lossy(&bytes).into_owned();
        RawRecord {
            artefact: row.artefact.clone(),
            member: row.member.clone(),
            locator: row.locator.clone(),
            binary: std::str::from_utf8(&bytes).is_err(),
            text,
            json,
            raw_sha256: a.raw.sha256,
            stored_sha256: a.stored.sha256,
        }
    }))
}
