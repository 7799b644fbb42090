//! Loading a case's log artefacts into its timeline, from the bytes the
//! store holds (checked against both digests first).

use std::io::Read;

use super::Problem;
use super::geoip::GeoIp;
use super::parse::{self, Format, InflateLimits, Sink};
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

/// Parses a log bundle (a tar of log files of one format) member by member,
/// each with its own modification time where the bundle kept one.
pub fn parse_bundle(format: Format, bytes: &[u8], ctx: &parse::FileContext, sink: &mut dyn Sink) {
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
        let member_ctx = ctx.member(entry.header().mtime().ok());
        let mut data = Vec::new();
        if let Err(e) = entry.read_to_end(&mut data) {
            sink.problem(Problem {
                member: path,
                locator: format!("byte {}", data.len()),
                message: format!("the member is truncated: {e}"),
            });
            // Whatever was read of it is still parsed.
        }
        parse::parse_with(format, &last, &data, &member_ctx, sink);
    }
}

/// Parsed records handed from the parsing thread to the loader, in order;
/// `End` closes an artefact. Events are nearly all of the traffic, so they
/// are not boxed: that would cost an allocation each.
#[allow(clippy::large_enum_variant)]
enum Parsed {
    Event(super::Event),
    Problem(Problem),
    End,
}

const CHUNK: usize = 4096;
const CHUNKS_IN_FLIGHT: usize = 8;

struct ChannelSink {
    tx: std::sync::mpsc::SyncSender<Vec<Parsed>>,
    buf: Vec<Parsed>,
    limits: InflateLimits,
}

impl ChannelSink {
    fn send(&mut self) {
        if !self.buf.is_empty() {
            let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
            // The loader only stops receiving when it failed; nothing is left to do then.
            let _ = self.tx.send(chunk);
        }
    }
}

impl Sink for ChannelSink {
    fn event(&mut self, event: super::Event) {
        self.buf.push(Parsed::Event(event));
        if self.buf.len() >= CHUNK {
            self.send();
        }
    }
    fn problem(&mut self, problem: Problem) {
        self.buf.push(Parsed::Problem(problem));
    }
    fn inflate_limits(&self) -> InflateLimits {
        self.limits
    }
}

/// One artefact's bytes for the parsing thread.
struct Job {
    bytes: Vec<u8>,
    format: Format,
    bundle: bool,
    /// A file extracted from a disk image: its path (the member its events
    /// name).
    member: String,
    ctx: parse::FileContext,
}

/// What is known of an artefact's file besides its bytes: when it was
/// collected (the end of its collection window) and, where it came off a
/// file system, its modification time. Both bound the time of lines that
/// carry no year.
fn context_of(a: &Artefact) -> parse::FileContext {
    let modified_us = a.derived.as_ref().and_then(|d| d.modified_us);
    let collected_us = parse::to_us(a.finished);
    let year_hint = modified_us
        .and_then(|us| time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(us) * 1000).ok())
        .map_or(a.finished.year(), |t| t.year());
    parse::FileContext {
        year_hint,
        modified_us,
        collected_us: Some(collected_us),
    }
}

/// How a load reads its artefacts.
#[derive(Default)]
pub struct LoadOptions<'a> {
    /// Adds ASN and country to source addresses.
    pub geoip: Option<&'a mut GeoIp>,
    /// How far gzip inside the artefacts may expand.
    pub inflate: InflateLimits,
}

/// Loads one artefact. An artefact already in the timeline is left alone
/// (its report says `already`).
pub async fn ingest(
    store: &dyn EvidenceStore,
    tl: &mut Timeline,
    a: &Artefact,
    format: Format,
    opts: LoadOptions<'_>,
    now: &str,
) -> Result<IngestReport, IngestError> {
    let mut out = ingest_many(store, tl, &[(a, format)], opts, now).await?;
    Ok(out.pop().unwrap_or_default())
}

/// Loads artefacts in order. One thread parses while this one loads, and
/// the next artefact is read and parsed while the current one is loaded:
/// parsing and loading take about the same time, so both cores stay busy.
pub async fn ingest_many(
    store: &dyn EvidenceStore,
    tl: &mut Timeline,
    items: &[(&Artefact, Format)],
    opts: LoadOptions<'_>,
    now: &str,
) -> Result<Vec<IngestReport>, IngestError> {
    let LoadOptions {
        mut geoip,
        inflate: limits,
    } = opts;
    let mut todo = Vec::new();
    let mut reports = Vec::with_capacity(items.len());
    for (i, (a, format)) in items.iter().enumerate() {
        let id = a.id.to_string();
        if tl.is_ingested(&id)? {
            reports.push(Some(IngestReport {
                artefact: id,
                format: format.name().to_owned(),
                already: true,
                ..IngestReport::default()
            }));
        } else {
            reports.push(None);
            todo.push(i);
        }
    }
    let (job_tx, job_rx) = std::sync::mpsc::sync_channel::<Job>(1);
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<Parsed>>(CHUNKS_IN_FLIGHT);
    let parser = std::thread::spawn(move || {
        let mut sink = ChannelSink {
            tx,
            buf: Vec::with_capacity(CHUNK),
            limits,
        };
        for job in job_rx {
            if job.bundle {
                parse_bundle(job.format, &job.bytes, &job.ctx, &mut sink);
            } else {
                parse::parse_with(job.format, &job.member, &job.bytes, &job.ctx, &mut sink);
            }
            sink.buf.push(Parsed::End);
            sink.send();
        }
    });
    let read = |i: usize| {
        let (a, format) = items
            .get(i)
            .copied()
            .map_or((None, Format::Syslog), |(a, f)| (Some(a), f));
        async move {
            let Some(a) = a else { return Ok(None) };
            let bytes =
                case::read_verified(store, a)
                    .await
                    .map_err(|source| IngestError::Read {
                        artefact: a.id.to_string(),
                        source,
                    })?;
            Ok::<_, IngestError>(Some(Job {
                bytes,
                format,
                bundle: a.kind == ArtefactKind::LogBundle,
                member: a
                    .derived
                    .as_ref()
                    .and_then(|d| d.path.clone())
                    .unwrap_or_default(),
                ctx: context_of(a),
            }))
        }
    };
    let result: Result<(), IngestError> = async {
        let mut sent = 0;
        // Keep one artefact ahead of the loader.
        while sent < todo.len().min(2) {
            if let Some(job) = read(todo.get(sent).copied().unwrap_or(usize::MAX)).await? {
                let _ = job_tx.send(job);
            }
            sent += 1;
        }
        for (n, &i) in todo.iter().enumerate() {
            let Some((a, format)) = items.get(i).copied() else {
                continue;
            };
            let mut loader = tl.loader(&a.id.to_string(), format.name(), geoip.as_deref_mut())?;
            'artefact: for chunk in rx.iter() {
                for item in chunk {
                    match item {
                        Parsed::Event(e) => loader.event(e),
                        Parsed::Problem(p) => loader.problem(p),
                        Parsed::End => break 'artefact,
                    }
                }
            }
            if let Some(slot) = reports.get_mut(i) {
                *slot = Some(loader.finish(now)?);
            }
            if sent < todo.len() && sent <= n + 2 {
                if let Some(job) = read(todo.get(sent).copied().unwrap_or(usize::MAX)).await? {
                    let _ = job_tx.send(job);
                }
                sent += 1;
            }
        }
        Ok(())
    }
    .await;
    drop(job_tx);
    // The parser ends when its jobs do; after a failure it may be blocked
    // sending, so the receiver goes first.
    drop(rx);
    let _ = parser.join();
    result?;
    Ok(reports.into_iter().flatten().collect())
}

/// Loads every log artefact of a case that is not in the timeline yet.
pub async fn ingest_case(
    store: &dyn EvidenceStore,
    tl: &mut Timeline,
    case_id: &crate::ids::CaseId,
    opts: LoadOptions<'_>,
    now: &str,
) -> Result<Vec<IngestReport>, IngestError> {
    let artefacts = case::artefacts(store, case_id)
        .await
        .map_err(|source| IngestError::Read {
            artefact: format!("(the list of case {case_id})"),
            source,
        })?;
    ingest_bulk(store, tl, &artefacts, opts, now).await
}

/// Loads the log artefacts among `artefacts` (the others are passed over)
/// as one bulk run: parsing beside loading, the indexes built once at the end.
pub async fn ingest_bulk(
    store: &dyn EvidenceStore,
    tl: &mut Timeline,
    artefacts: &[Artefact],
    opts: LoadOptions<'_>,
    now: &str,
) -> Result<Vec<IngestReport>, IngestError> {
    let items: Vec<(&Artefact, Format)> = artefacts
        .iter()
        .filter_map(|a| format_of(a).map(|f| (a, f)))
        .collect();
    tl.begin_bulk()?;
    let out = ingest_many(store, tl, &items, opts, now).await?;
    tl.end_bulk()?;
    Ok(out)
}

/// Parses one artefact's verified bytes as a load does (a bundle member by
/// member, a file extracted from a disk image under its path), handing
/// every record to `sink`: how `custody detect` reads a case again.
pub fn parse_artefact(a: &Artefact, format: Format, bytes: &[u8], sink: &mut dyn Sink) {
    let ctx = context_of(a);
    if a.kind == ArtefactKind::LogBundle {
        parse_bundle(format, bytes, &ctx, sink);
    } else {
        let member = a
            .derived
            .as_ref()
            .and_then(|d| d.path.clone())
            .unwrap_or_default();
        parse::parse_with(format, &member, bytes, &ctx, sink);
    }
}
