//! Loading a case's log artefacts into its timeline, from the bytes the
//! store holds (checked against both digests first).

use std::io::Read;

use super::Problem;
use super::geoip::GeoIp;
use super::parse::{self, Format, Sink};
use super::store::{IngestReport, Timeline, TimelineError};
use crate::evidence::case::{self, EvidenceError};
use crate::evidence::{Artefact, ArtefactKind};
use crate::store::EvidenceStore;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IngestError {
    #[error(transparent)]
    Timeline(#[from] TimelineError),
    #[error("cannot read artefact {artefact}")]
    Read {
        artefact: String,
        #[source]
        source: EvidenceError,
    },
}

/// The format a timeline reads an artefact as, if it holds logs.
pub fn format_of(a: &Artefact) -> Option<Format> {
    if a.kind == ArtefactKind::HostTriage {
        return Some(Format::HostBundle);
    }
    a.source.log_format.as_deref().and_then(Format::from_name)
}

/// Members of a log bundle that are not logs: its index and CloudTrail's
/// digest files (kept as evidence, not events).
fn is_log_member(path: &str) -> bool {
    !(path == "index.json" || path.contains("/CloudTrail-Digest/") || path.ends_with('/'))
}

/// Parses a log bundle (a tar of log files of one format) member by member.
pub fn parse_bundle(format: Format, bytes: &[u8], year_hint: i32, sink: &mut dyn Sink) {
    let mut archive = tar::Archive::new(bytes);
    let entries = match archive.entries() {
        Ok(e) => e,
        Err(e) => {
            sink.problem(Problem {
                member: String::new(),
                locator: "byte 0".into(),
                message: format!("not a readable tar bundle: {e}"),
            });
            return;
        }
    };
    let mut last = String::new();
    for entry in entries {
        let mut entry = match entry {
            Ok(e) => e,
            Err(e) => {
                sink.problem(Problem {
                    member: last.clone(),
                    locator: "after this member".into(),
                    message: format!("the bundle is damaged or truncated here: {e}"),
                });
                return;
            }
        };
        let path = entry
            .path()
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        last.clone_from(&path);
        if !is_log_member(&path) {
            continue;
        }
        let mut data = Vec::new();
        if let Err(e) = entry.read_to_end(&mut data) {
            sink.problem(Problem {
                member: path,
                locator: format!("byte {}", data.len()),
                message: format!("the member is truncated: {e}"),
            });
            // Whatever was read of it is still parsed.
        }
        parse::parse_file(format, &last, &data, year_hint, sink);
    }
}

/// Loads one artefact. An artefact already in the timeline is left alone
/// (its report says `already`).
pub async fn ingest(
    store: &dyn EvidenceStore,
    tl: &mut Timeline,
    a: &Artefact,
    format: Format,
    geoip: Option<&mut GeoIp>,
    now: &str,
) -> Result<IngestReport, IngestError> {
    let id = a.id.to_string();
    if tl.is_ingested(&id)? {
        return Ok(IngestReport {
            artefact: id,
            format: format.name().to_owned(),
            already: true,
            ..IngestReport::default()
        });
    }
    let bytes = case::read_verified(store, a)
        .await
        .map_err(|source| IngestError::Read {
            artefact: id.clone(),
            source,
        })?;
    let year = a.started.year();
    let mut loader = tl.loader(&id, format.name(), geoip);
    if a.kind == ArtefactKind::LogBundle {
        parse_bundle(format, &bytes, year, &mut loader);
    } else {
        parse::parse_file(format, "", &bytes, year, &mut loader);
    }
    Ok(loader.finish(now)?)
}

/// Loads every log artefact of a case that is not in the timeline yet.
pub async fn ingest_case(
    store: &dyn EvidenceStore,
    tl: &mut Timeline,
    case_id: &crate::ids::CaseId,
    mut geoip: Option<&mut GeoIp>,
    now: &str,
) -> Result<Vec<IngestReport>, IngestError> {
    let artefacts = case::artefacts(store, case_id)
        .await
        .map_err(|source| IngestError::Read {
            artefact: format!("(the list of case {case_id})"),
            source,
        })?;
    let mut out = Vec::new();
    for a in &artefacts {
        if let Some(format) = format_of(a) {
            out.push(ingest(store, tl, a, format, geoip.as_deref_mut(), now).await?);
        }
    }
    Ok(out)
}
