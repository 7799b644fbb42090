//! Case operations on a store: acquire an artefact into a case, list cases
//! and artefacts, verify them, export raw bytes.
//!
//! Keys: `cases/<case>/artefacts/<id>.zst` holds the stored object and
//! `cases/<case>/manifests/<id>.json` its [`Artefact`] record. The manifest is
//! written only after the store confirmed the object and both digests are
//! known, so an object without a manifest was never recorded complete.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use bytes::Bytes;

use super::model::{
    ARTEFACT_SCHEMA, Artefact, ArtefactKind, Digest, ManifestError, Source, StoredDigest, Tool,
};
use super::pipeline::{self, PipelineError, PipelineOptions, SourceReader};
use super::seekable::{self, ReadError};
use crate::clock::Clock;
use crate::ids::{ArtefactId, CaseId};
use crate::ledger::entry::{Action, Entry, Place};
use crate::ledger::{LedgerError, Recorder};
use crate::progress::Progress;
use crate::store::{EvidenceStore, ObjectKey, StoreError};

/// Encoding recorded for stored objects.
pub const STORED_FORMAT: &str = "zstd-seekable";

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EvidenceError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("acquisition of {what} failed")]
    Pipeline {
        what: String,
        #[source]
        source: PipelineError,
    },
    #[error("the store received {received} bytes of {key} but the pipeline produced {produced}")]
    SizeMismatch {
        key: ObjectKey,
        received: u64,
        produced: u64,
    },
    #[error("manifest {key} cannot be read")]
    Manifest {
        key: ObjectKey,
        #[source]
        source: ManifestError,
    },
    #[error("case {case} has no artefact {artefact}")]
    NoSuchArtefact { case: CaseId, artefact: ArtefactId },
    #[error("case {case} not found in {location}")]
    NoSuchCase { case: CaseId, location: String },
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error("failed to write {path}")]
    Output {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the bytes of {artefact} read back from the store do not match the recorded digests: {problems}"
    )]
    ExportMismatch {
        artefact: ArtefactId,
        problems: String,
    },
    #[error("the artefact was stored but its ledger entry could not be written")]
    Ledger(#[source] LedgerError),
}

pub fn object_key(case: &CaseId, id: &ArtefactId) -> Result<ObjectKey, StoreError> {
    ObjectKey::new(format!("cases/{case}/artefacts/{id}.zst"))
}

pub fn manifest_key(case: &CaseId, id: &ArtefactId) -> Result<ObjectKey, StoreError> {
    ObjectKey::new(format!("cases/{case}/manifests/{id}.json"))
}

/// Everything an acquisition needs besides its source.
#[derive(Debug, Clone)]
pub struct AcquireContext {
    pub store: Arc<dyn EvidenceStore>,
    pub clock: Arc<dyn Clock>,
    pub progress: Arc<dyn Progress>,
    pub cancel: Arc<AtomicBool>,
    pub pipeline: PipelineOptions,
    /// Where acquisitions and failures are recorded; `None` records nothing.
    pub recorder: Option<Recorder>,
    /// Where journals of interrupted uploads are kept, so that rerunning the
    /// same acquisition resumes it; `None` aborts an interrupted upload.
    pub resume_dir: Option<std::path::PathBuf>,
}

/// The journal an acquisition of `source` into `case` keeps in `dir`: one
/// per store, case, kind and source, so the same command finds it again.
fn resume_spec(
    dir: &std::path::Path,
    ctx: &AcquireContext,
    case: &CaseId,
    kind: ArtefactKind,
    source: &Source,
) -> crate::store::journal::ResumeSpec {
    use sha2::Digest as _;
    let ident = format!(
        "{}\n{case}\n{}\n{}\n{}",
        ctx.store.location(),
        kind.as_str(),
        source.resource,
        source.path.as_deref().unwrap_or_default()
    );
    let name = hex::encode(sha2::Sha256::digest(ident.as_bytes()));
    crate::store::journal::ResumeSpec {
        path: dir.join(format!("{}.jsonl", name.get(..32).unwrap_or(&name))),
        // The stored bytes are reproducible only with the same compressor
        // and framing.
        settings: format!(
            "{} {}; zstd {} level {}; frame {}",
            crate::TOOL_NAME,
            crate::TOOL_VERSION,
            zstd::zstd_safe::version_string(),
            ctx.pipeline.level,
            ctx.pipeline.frame_size
        ),
    }
}

/// The artefact id of the interrupted upload a journal describes, when it
/// is for `case`.
fn resumed_id(spec: &crate::store::journal::ResumeSpec, case: &CaseId) -> Option<ArtefactId> {
    let j = crate::store::journal::read(&spec.path).ok().flatten()?;
    let name = j.header.key.rsplit('/').next()?.strip_suffix(".zst")?;
    let id: ArtefactId = name.parse().ok()?;
    let expected = object_key(case, &id).ok()?;
    let key = j.header.key.as_str();
    (key == expected.as_str() || key.ends_with(&format!("/{expected}"))).then_some(id)
}

/// One source to capture as one artefact.
pub struct AcquireRequest {
    pub case: CaseId,
    pub kind: ArtefactKind,
    pub source: Source,
    pub reader: Box<dyn SourceReader>,
    /// Expected raw size, for progress only.
    pub size_hint: Option<u64>,
    pub notes: Vec<String>,
}

impl std::fmt::Debug for AcquireRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AcquireRequest")
            .field("case", &self.case)
            .field("kind", &self.kind)
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

/// Reads the source once through the pipeline into the store, then records
/// the artefact's manifest and its ledger entry. If any step fails, no
/// manifest is written and the ledger gets a signed failure entry instead.
pub async fn acquire(ctx: &AcquireContext, req: AcquireRequest) -> Result<Artefact, EvidenceError> {
    acquire_with(ctx, req, None, None).await
}

/// [`acquire`] for an artefact derived from another: its manifest keeps the
/// derivation and its ledger entry is `derived`, naming the parent, the
/// path, the inode and the extents (inline when few, always by digest).
pub async fn acquire_derived(
    ctx: &AcquireContext,
    req: AcquireRequest,
    derivation: super::model::Derivation,
) -> Result<Artefact, EvidenceError> {
    acquire_with(ctx, req, Some(derivation), None).await
}

/// [`acquire_derived`] under an id chosen beforehand: a bodyfile whose rows
/// are loaded into the timeline while it is written names its artefact
/// before the artefact is stored.
pub async fn acquire_derived_as(
    ctx: &AcquireContext,
    req: AcquireRequest,
    derivation: super::model::Derivation,
    id: ArtefactId,
) -> Result<Artefact, EvidenceError> {
    acquire_with(ctx, req, Some(derivation), Some(id)).await
}

/// Extents named inline in a `derived` entry at most; the entry's size is
/// bounded, and its extents digest binds the rest (kept in the manifest).
const INLINE_EXTENTS: usize = 64;

async fn acquire_with(
    ctx: &AcquireContext,
    req: AcquireRequest,
    derivation: Option<super::model::Derivation>,
    id: Option<ArtefactId>,
) -> Result<Artefact, EvidenceError> {
    let case = req.case.clone();
    let place = req.source.clone();
    let result = acquire_unrecorded(ctx, req, derivation, id).await;
    let Some(rec) = &ctx.recorder else {
        return result;
    };
    match &result {
        Ok(a) if a.derived.is_some() => {
            let d = a.derived.as_ref();
            let detail = d.map(|d| {
                serde_json::json!({
                    "parent": d.parent,
                    "parent_sha256": d.parent_sha256,
                    "volume": d.volume,
                    "fs": d.fs,
                    "path": d.path,
                    "inode": d.inode,
                    "extents_count": d.extents.len(),
                    "extents_sha256": d.extents_sha256(),
                    "extents": (d.extents.len() <= INLINE_EXTENTS).then_some(&d.extents),
                })
            });
            rec.record(
                Some(&case),
                Action::Derived,
                Some(a.evidence_ref()),
                Some(place),
                detail,
            )
            .map_err(EvidenceError::Ledger)?;
        }
        Ok(a) => {
            let detail = (!a.notes.is_empty()
                || a.source_changed.is_some()
                || a.block_map.is_some())
            .then(|| {
                serde_json::json!({
                    "notes": a.notes.len(),
                    "source_changed": a.source_changed,
                    "block_map": a.block_map,
                })
            });
            rec.record(
                Some(&case),
                Action::Acquired,
                Some(a.evidence_ref()),
                Some(place),
                detail,
            )
            .map_err(EvidenceError::Ledger)?;
        }
        Err(e) => {
            let detail = serde_json::json!({ "error": crate::error_chain(e) });
            if let Err(le) =
                rec.record(Some(&case), Action::Failed, None, Some(place), Some(detail))
            {
                tracing::error!(error = %crate::error_chain(&le), "cannot record the failed acquisition in the ledger");
            }
        }
    }
    result
}

/// Records a failure that happened before an acquisition could start.
pub fn record_failure(ctx: &AcquireContext, case: &CaseId, place: Option<Place>, what: &str) {
    if let Some(rec) = &ctx.recorder
        && let Err(e) = rec.record(
            Some(case),
            Action::Failed,
            None,
            place,
            Some(serde_json::json!({ "error": what })),
        )
    {
        tracing::error!(error = %crate::error_chain(&e), "cannot record a failure in the ledger");
    }
}

async fn acquire_unrecorded(
    ctx: &AcquireContext,
    req: AcquireRequest,
    derived: Option<super::model::Derivation>,
    chosen: Option<ArtefactId>,
) -> Result<Artefact, EvidenceError> {
    let resume = ctx
        .resume_dir
        .as_deref()
        .map(|dir| resume_spec(dir, ctx, &req.case, req.kind, &req.source));
    let earlier = resume.as_ref().and_then(|r| resumed_id(r, &req.case));
    let mut notes = req.notes;
    if let Some(id) = &earlier {
        tracing::info!(artefact = %id, "an earlier attempt of this acquisition was interrupted; resuming its upload");
        notes.push(format!(
            "resumed the upload of an earlier, interrupted attempt ({id})"
        ));
    }
    let resuming = earlier.is_some();
    let id = earlier.or(chosen).unwrap_or_else(ArtefactId::generate);
    let key = object_key(&req.case, &id)?;
    let what = if req.source.path.is_some() {
        format!(
            "{} ({})",
            req.source.resource,
            req.source.path.as_deref().unwrap_or_default()
        )
    } else {
        req.source.resource.clone()
    };
    let mut reader = req.reader;
    let keep_partial = reader.resumes_from_store();
    if keep_partial
        && resuming
        && let Some(spec) = &resume
    {
        match ctx.store.resumed_prefix(&key, spec).await {
            Ok(Some(prefix)) => match zstd::stream::read::Decoder::new(prefix.reader) {
                Ok(decoder) => {
                    tracing::info!(artefact = %id, stored = prefix.len, "resuming from what the interrupted attempt stored");
                    reader.resume_from(Box::new(decoder));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot decode what the interrupted attempt stored")
                }
            },
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error = %crate::error_chain(&e), "cannot read what the interrupted attempt stored")
            }
        }
    }
    let started = ctx.clock.now();
    ctx.progress.start(&what, req.size_hint);
    let (stream, running) = pipeline::start(
        reader,
        &ctx.pipeline,
        ctx.progress.clone(),
        ctx.cancel.clone(),
    );
    let meta = crate::store::PutMeta {
        case: Some(req.case.to_string()),
        artefact: Some(id.to_string()),
        raw_digest: Some(running.raw_digest()),
        resume,
        keep_partial,
        stored_digests: Some(running.stored_digests()),
    };
    let put = ctx.store.put_with(&key, stream, &meta).await;
    let finished = running.finish().await;
    // Report the side that failed first: a store that failed (a full disk)
    // makes the pipeline say only "store gone"; a source that failed makes
    // the store say only "source failed".
    let (stored, out) = match (put, finished) {
        (Ok(stored), Ok(out)) => (stored, out),
        (Err(e), _) if !matches!(e, StoreError::SourceFailed { .. }) => return Err(e.into()),
        (_, Err(source)) => {
            return Err(EvidenceError::Pipeline {
                what: what.clone(),
                source,
            });
        }
        (Err(e), Ok(_)) => return Err(e.into()),
    };
    ctx.progress.finish();
    if stored.size != out.stored_size {
        return Err(EvidenceError::SizeMismatch {
            key,
            received: stored.size,
            produced: out.stored_size,
        });
    }
    let finished = ctx.clock.now();
    let artefact = Artefact {
        schema: ARTEFACT_SCHEMA,
        id: id.clone(),
        case: req.case.clone(),
        kind: req.kind,
        source: req.source,
        started,
        finished,
        raw: Digest {
            size: out.raw_size,
            sha256: out.raw_sha256,
        },
        stored: StoredDigest {
            size: out.stored_size,
            sha256: out.stored_sha256,
            format: STORED_FORMAT.to_owned(),
            frame_size: ctx.pipeline.frame_size as u64,
            location: ctx.store.location(),
            key: key.to_string(),
            version_id: stored.version_id,
            etag: stored.etag,
        },
        source_changed: out.source_end.changed,
        notes: notes.into_iter().chain(out.source_end.notes).collect(),
        block_map: out.source_end.block_map,
        derived,
        tool: Tool::this(),
    };
    ctx.store
        .put_bytes(
            &manifest_key(&req.case, &id)?,
            Bytes::from(artefact.to_json()),
        )
        .await?;
    tracing::info!(case = %req.case, artefact = %id, raw = artefact.raw.size, stored = artefact.stored.size, "artefact recorded");
    Ok(artefact)
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CaseSummary {
    pub case: CaseId,
    pub artefacts: usize,
    pub raw_bytes: u64,
    pub stored_bytes: u64,
}

/// Cases in the store with their recorded artefacts (cases holding only
/// unrecorded objects are listed with zero artefacts).
pub async fn list_cases(store: &dyn EvidenceStore) -> Result<Vec<CaseSummary>, EvidenceError> {
    let mut cases: BTreeMap<CaseId, CaseSummary> = BTreeMap::new();
    for key in store.list("cases/").await? {
        let mut parts = key.as_str().split('/').skip(1);
        let Some(Ok(case)) = parts.next().map(str::parse::<CaseId>) else {
            continue;
        };
        let entry = cases.entry(case.clone()).or_insert(CaseSummary {
            case,
            artefacts: 0,
            raw_bytes: 0,
            stored_bytes: 0,
        });
        if parts.next() == Some("manifests") {
            let a = read_manifest(store, &key).await?;
            entry.artefacts += 1;
            entry.raw_bytes += a.raw.size;
            entry.stored_bytes += a.stored.size;
        }
    }
    Ok(cases.into_values().collect())
}

async fn read_manifest(
    store: &dyn EvidenceStore,
    key: &ObjectKey,
) -> Result<Artefact, EvidenceError> {
    let bytes = store.get_bytes(key).await?;
    Artefact::from_json(&bytes).map_err(|source| EvidenceError::Manifest {
        key: key.clone(),
        source,
    })
}

/// A case's recorded artefacts, in acquisition order.
pub async fn artefacts(
    store: &dyn EvidenceStore,
    case: &CaseId,
) -> Result<Vec<Artefact>, EvidenceError> {
    let keys = store.list(&format!("cases/{case}/")).await?;
    if keys.is_empty() {
        return Err(EvidenceError::NoSuchCase {
            case: case.clone(),
            location: store.location(),
        });
    }
    let mut out = Vec::new();
    for key in keys
        .iter()
        .filter(|k| k.as_str().starts_with(&format!("cases/{case}/manifests/")))
    {
        out.push(read_manifest(store, key).await?);
    }
    out.sort_by(|a, b| a.started.cmp(&b.started).then_with(|| a.id.cmp(&b.id)));
    Ok(out)
}

pub async fn artefact(
    store: &dyn EvidenceStore,
    case: &CaseId,
    id: &ArtefactId,
) -> Result<Artefact, EvidenceError> {
    match read_manifest(store, &manifest_key(case, id)?).await {
        Err(EvidenceError::Store(StoreError::NotFound { .. })) => {
            Err(EvidenceError::NoSuchArtefact {
                case: case.clone(),
                artefact: id.clone(),
            })
        }
        other => other,
    }
}

/// The outcome of re-reading one artefact.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ArtefactCheck {
    pub artefact: ArtefactId,
    pub key: String,
    pub ok: bool,
    /// Each mismatch or read failure, named.
    pub problems: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CaseVerification {
    pub case: CaseId,
    pub location: String,
    pub checks: Vec<ArtefactCheck>,
    /// Objects under the case with no manifest: never recorded complete.
    pub unrecorded: Vec<String>,
    /// Disagreements between the store and the ledger (empty when no ledger was given).
    pub ledger_problems: Vec<String>,
}

impl CaseVerification {
    pub fn ok(&self) -> bool {
        self.checks.iter().all(|c| c.ok) && self.ledger_problems.is_empty()
    }
}

/// Compares a case's manifests with its ledger entries: every artefact must
/// have an `acquired` entry with the same digests and location, and every
/// `acquired` entry must still have its artefact.
pub fn compare_with_ledger(artefacts: &[Artefact], entries: &[(u64, Entry)]) -> Vec<String> {
    let mut problems = Vec::new();
    let acquired: Vec<(u64, &crate::ledger::entry::EvidenceRef)> = entries
        .iter()
        .filter(|(_, e)| matches!(e.action, Action::Acquired | Action::Derived))
        .filter_map(|(i, e)| e.evidence.as_ref().map(|ev| (*i, ev)))
        .collect();
    for a in artefacts {
        match acquired.iter().find(|(_, ev)| ev.artefact == a.id) {
            None => problems.push(format!(
                "artefact {} has no acquisition entry in the ledger",
                a.id
            )),
            Some((i, ev)) => {
                if **ev != a.evidence_ref() {
                    problems.push(format!(
                        "artefact {}'s manifest differs from ledger entry {i}",
                        a.id
                    ));
                }
                if let Some(p) = derivation_mismatch(a, entries, *i) {
                    problems.push(p);
                }
            }
        }
    }
    for (i, ev) in &acquired {
        if !artefacts.iter().any(|a| a.id == ev.artefact) {
            problems.push(format!(
                "ledger entry {i} records artefact {}, which is missing from the store",
                ev.artefact
            ));
        }
    }
    problems
}

/// Where a derived artefact's manifest says other than its signed
/// `derived` entry: the parent, path, inode or extents (by digest).
fn derivation_mismatch(a: &Artefact, entries: &[(u64, Entry)], index: u64) -> Option<String> {
    let entry = entries.iter().find(|(i, _)| *i == index).map(|(_, e)| e)?;
    let signed = match (entry.action, &a.derived) {
        (Action::Derived, Some(d)) => d,
        (Action::Derived, None) => {
            return Some(format!(
                "artefact {}'s manifest lost the derivation ledger entry {index} records",
                a.id
            ));
        }
        (_, Some(_)) => {
            return Some(format!(
                "artefact {} claims to be derived, but ledger entry {index} records an acquisition",
                a.id
            ));
        }
        (_, None) => return None,
    };
    let detail = entry.detail.as_ref();
    let field = |k: &str| detail.and_then(|d| d.get(k)).cloned().unwrap_or_default();
    let same = field("parent") == serde_json::json!(signed.parent)
        && field("path") == serde_json::json!(signed.path)
        && field("inode") == serde_json::json!(signed.inode)
        && field("extents_sha256") == serde_json::json!(signed.extents_sha256());
    (!same).then(|| {
        format!(
            "artefact {}'s derivation (parent, path, inode or extents) differs from ledger entry {index}",
            a.id
        )
    })
}

fn compare(
    problems: &mut Vec<String>,
    what: &str,
    recorded: &Digest,
    found_size: u64,
    found_sha: &str,
) {
    if recorded.size != found_size {
        problems.push(format!(
            "{what} size is {found_size}, recorded {}",
            recorded.size
        ));
    }
    if recorded.sha256 != found_sha {
        problems.push(format!(
            "{what} SHA-256 is {found_sha}, recorded {}",
            recorded.sha256
        ));
    }
}

/// Re-reads one artefact's stored object and compares both digests.
pub async fn check_artefact(store: &dyn EvidenceStore, a: &Artefact) -> ArtefactCheck {
    let mut problems = Vec::new();
    match ObjectKey::new(a.stored.key.clone()) {
        Err(e) => problems.push(e.to_string()),
        Ok(key) if key != object_key(&a.case, &a.id).unwrap_or_else(|_| key.clone()) => {
            problems.push(format!(
                "manifest points at {key}, not at this artefact's own key"
            ));
        }
        Ok(key) => match seekable::read_back(store, &key, std::io::sink()).await {
            Ok((got, _)) => problems = mismatches(a, &got),
            Err(e) => problems.push(crate::error_chain(&e)),
        },
    }
    ArtefactCheck {
        artefact: a.id.clone(),
        key: a.stored.key.clone(),
        ok: problems.is_empty(),
        problems,
    }
}

/// Every way `got` differs from what `a` recorded.
fn mismatches(a: &Artefact, got: &seekable::ReadBack) -> Vec<String> {
    let mut problems = Vec::new();
    compare(
        &mut problems,
        "stored",
        &stored_digest(a),
        got.stored_size,
        &got.stored_sha256,
    );
    if let Some(e) = &got.decode_error {
        problems.push(e.clone());
    }
    compare(&mut problems, "raw", &a.raw, got.raw_size, &got.raw_sha256);
    problems
}

fn stored_digest(a: &Artefact) -> Digest {
    Digest {
        size: a.stored.size,
        sha256: a.stored.sha256.clone(),
    }
}

/// Re-reads every recorded artefact of a case and compares both digests.
pub async fn verify_case(
    store: &dyn EvidenceStore,
    case: &CaseId,
) -> Result<CaseVerification, EvidenceError> {
    let list = artefacts(store, case).await?;
    let mut checks = Vec::with_capacity(list.len());
    for a in &list {
        checks.push(check_artefact(store, a).await);
    }
    let recorded: Vec<&str> = list.iter().map(|a| a.stored.key.as_str()).collect();
    let unrecorded = store
        .list(&format!("cases/{case}/artefacts/"))
        .await?
        .into_iter()
        .map(|k| k.to_string())
        .filter(|k| !recorded.contains(&k.as_str()))
        .collect();
    Ok(CaseVerification {
        case: case.clone(),
        location: store.location(),
        checks,
        unrecorded,
        ledger_problems: Vec::new(),
    })
}

/// Writes an artefact's raw bytes to `out`, checking both digests. The file
/// appears under its name only if they match; otherwise nothing is left.
pub async fn export(
    store: &dyn EvidenceStore,
    a: &Artefact,
    out: &Path,
) -> Result<(), EvidenceError> {
    let key = object_key(&a.case, &a.id)?;
    let dir = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let out_err = |source| EvidenceError::Output {
        path: out.to_path_buf(),
        source,
    };
    let tmp = tempfile::Builder::new()
        .prefix(".custody-export-")
        .tempfile_in(dir)
        .map_err(out_err)?;
    let (file, tmp_path) = tmp.into_parts();
    let writer = std::io::BufWriter::with_capacity(1 << 20, file);
    let (got, writer) = seekable::read_back(store, &key, writer).await?;
    let file = writer.into_inner().map_err(|e| out_err(e.into_error()))?;
    file.sync_all().map_err(out_err)?;
    let problems = mismatches(a, &got);
    if !problems.is_empty() {
        // `tmp_path` removes the partial file when dropped.
        return Err(EvidenceError::ExportMismatch {
            artefact: a.id.clone(),
            problems: problems.join("; "),
        });
    }
    tmp_path
        .persist_noclobber(out)
        .map_err(|e| out_err(e.error))?;
    Ok(())
}

/// An artefact's raw bytes in memory, checked against both digests: what
/// is parsed is exactly what was recorded.
pub async fn read_verified(
    store: &dyn EvidenceStore,
    a: &Artefact,
) -> Result<Vec<u8>, EvidenceError> {
    let key = object_key(&a.case, &a.id)?;
    let capacity = usize::try_from(a.raw.size).unwrap_or(0).min(1 << 30);
    // A tampered object could decode to far more than was recorded: stop
    // one byte past the recorded size (which the digest check then refuses)
    // rather than hold it all.
    let out = Bounded {
        buf: Vec::with_capacity(capacity),
        limit: a.raw.size.saturating_add(1),
    };
    let (got, Bounded { buf: bytes, .. }) = seekable::read_back(store, &key, out).await?;
    let problems = mismatches(a, &got);
    if !problems.is_empty() {
        return Err(EvidenceError::ExportMismatch {
            artefact: a.id.clone(),
            problems: problems.join("; "),
        });
    }
    Ok(bytes)
}

/// An artefact's raw bytes written to `out` as they decode, then both
/// digests checked: `out` holds the artefact only if this returns `Ok`.
/// For a consumer that cannot wait for the whole (a download of a disk
/// image) and can still refuse what it got when the check fails.
pub async fn stream_verified<W: Write + Send + 'static>(
    store: &dyn EvidenceStore,
    a: &Artefact,
    out: W,
) -> Result<W, EvidenceError> {
    let key = object_key(&a.case, &a.id)?;
    // As in `read_verified`: a tampered object may decode to far more.
    let limited = Limited {
        inner: out,
        left: a.raw.size.saturating_add(1),
    };
    let (got, Limited { inner, .. }) = seekable::read_back(store, &key, limited).await?;
    let problems = mismatches(a, &got);
    if !problems.is_empty() {
        return Err(EvidenceError::ExportMismatch {
            artefact: a.id.clone(),
            problems: problems.join("; "),
        });
    }
    Ok(inner)
}

/// A writer that passes on at most `left` bytes and then refuses more.
struct Limited<W> {
    inner: W,
    left: u64,
}

impl<W: Write> Write for Limited<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.left == 0 {
            return Err(std::io::Error::other("more bytes than the artefact holds"));
        }
        let n = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.inner.write(buf.get(..n).unwrap_or(buf))?;
        self.left -= n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// A buffer that takes at most `limit` bytes and then refuses more.
struct Bounded {
    buf: Vec<u8>,
    limit: u64,
}

impl Write for Bounded {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let room = self.limit.saturating_sub(self.buf.len() as u64);
        if room == 0 && !data.is_empty() {
            return Err(std::io::Error::other(
                "the stored object decodes to more bytes than its manifest records",
            ));
        }
        let n = data.len().min(usize::try_from(room).unwrap_or(usize::MAX));
        self.buf
            .extend_from_slice(data.get(..n).unwrap_or_default());
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Writes raw bytes `offset..offset+len` of an artefact to `out`.
pub async fn export_range(
    store: &dyn EvidenceStore,
    a: &Artefact,
    offset: u64,
    len: u64,
    out: &mut (dyn Write + Send),
) -> Result<u64, EvidenceError> {
    let key = object_key(&a.case, &a.id)?;
    Ok(seekable::read_range(store, &key, offset, len, out).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stored object that decodes to more than its manifest records is cut
    /// one byte past the recorded size, never held whole.
    #[test]
    fn a_decoded_object_is_held_only_to_its_recorded_size() {
        let mut b = Bounded {
            buf: Vec::new(),
            limit: 5,
        };
        assert_eq!(b.write(b"abc").expect("write"), 3);
        assert_eq!(b.write(b"defgh").expect("write"), 2);
        let err = b.write(b"i").expect_err("past the limit");
        assert!(err.to_string().contains("more bytes than its manifest"));
        assert_eq!(b.buf, b"abcde");
    }
}
