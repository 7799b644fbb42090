//! The upload engine the stores that upload in parts share (S3, Azure Blob).
//!
//! ```text
//!                               ┌─► part 1 ─┐   SHA-256, upload (retried),
//! stream ─► cut into parts ─────┼─► part 2 ─┼─► journal            ─► complete(parts)
//!           (no temporary file) └─► …      ─┘   at most N in flight
//! ```
//!
//! The engine owns everything about an upload that does not depend on the
//! service: cutting the stream into parts of the sizes the backend asks for,
//! keeping at most `parts_in_flight` parts uploading (so memory stays near
//! `part size × (parts_in_flight + 1)`), trying a part again after a
//! transient failure, the journal that lets an interrupted upload resume
//! ([`super::journal`]), and completing or giving the upload up. A
//! [`Backend`] supplies only its calls and what its service guarantees:
//!
//! | call | S3 | Azure Blob |
//! |---|---|---|
//! | `check` | the key is free | preflight (write-once when required), the key is free |
//! | `put_whole` | one PUT for an object smaller than a part | none: one block |
//! | `start` | CreateMultipartUpload with Object Lock retention, KMS, metadata | nothing to start |
//! | `listed` | ListParts | the uncommitted block list |
//! | `upload_part` | UploadPart with its SHA-256, which S3 checks | StageBlock with its MD5, which Azure checks |
//! | `complete` | CompleteMultipartUpload, `If-None-Match: *` | PutBlockList with metadata, `If-None-Match: *` |
//! | `abort` | AbortMultipartUpload | nothing: uncommitted blocks expire on their own |
//!
//! Nothing is committed unless the stream ended without error and every
//! part was confirmed. On any failure, or when the put is dropped (Ctrl-C),
//! the upload is aborted, unless a journal ([`PutMeta::resume`]) keeps it:
//! then the rerun of the same acquisition reproduces the same bytes and
//! sends only the parts that the journal, the service's own listing (same
//! size and tag) and the part's SHA-256 do not all confirm.
//!
//! Parts are numbered from 1. A part is tried `max_attempts` times when the
//! backend calls its failure transient (throttling, 5xx, a dropped
//! connection), never again when not (access denied, a refused checksum);
//! the service clients do not retry part uploads themselves, so tries are
//! never multiplied.

use std::collections::BTreeMap;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use sha2::{Digest as _, Sha256};
use tokio::task::JoinSet;

use super::{EvidenceStream, ObjectKey, PutMeta, StoreError, StoredObject, journal};

/// How a backend wants its uploads run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Most parts one object may have (S3 10,000; Azure 50,000 blocks).
    pub max_parts: u64,
    /// Parts uploading at once.
    pub parts_in_flight: usize,
    /// Tries per part, the first included.
    pub max_attempts: u32,
    /// Wait before the second try; it doubles with each try, up to [`MAX_BACKOFF`].
    pub first_backoff: Duration,
    /// What besides the caller's settings decides where parts are cut
    /// (part sizes): a journalled part is reused only if cut at the same place.
    pub cut: String,
    /// `complete` wants the whole object's SHA-256 (metadata a store can
    /// only write at the end).
    pub object_digest: bool,
}

/// The longest wait between two tries of a part.
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// A part the service lists for an upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub size: u64,
    /// The service's tag for the part (S3's ETag; empty where it has none).
    pub tag: String,
}

/// A part upload that failed, and whether trying it again may help.
#[derive(Debug)]
pub struct PartError {
    pub error: StoreError,
    /// Throttling, a 5xx or a dropped connection: worth another try.
    pub transient: bool,
}

/// The object as the engine sent it, for `complete`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finished {
    pub size: u64,
    /// Hex SHA-256 of the whole object, when the plan asks for it.
    pub sha256: Option<String>,
}

/// The calls a store that uploads in parts makes to its service. `full` is
/// the object's key in the service (the store's prefix included).
#[async_trait]
pub trait Backend: Clone + Send + Sync + 'static {
    /// The store's URL, without credentials.
    fn location(&self) -> String;

    fn plan(&self) -> Plan;

    /// Size of part `part` (from 1).
    fn part_size(&self, part: i32) -> usize;

    /// Refuses a put before any byte is read: the key is taken, the store
    /// is missing or not as required.
    async fn check(&self, key: &ObjectKey, full: &str) -> Result<(), StoreError>;

    /// Stores an object smaller than one part in one request; `None` where
    /// the service has no such request (it then goes up as one part).
    async fn put_whole(
        &self,
        key: &ObjectKey,
        full: &str,
        body: Bytes,
        meta: &PutMeta,
    ) -> Option<Result<StoredObject, StoreError>>;

    /// Starts an upload; returns its id.
    async fn start(&self, full: &str, meta: &PutMeta) -> Result<String, StoreError>;

    /// The parts the service holds for an unfinished upload, by number.
    async fn listed(
        &self,
        full: &str,
        upload_id: &str,
    ) -> Result<BTreeMap<i32, Listed>, StoreError>;

    /// Uploads one part, once (the engine retries); `sha256` is the base64
    /// SHA-256 of `data`. Returns the service's tag for it.
    async fn upload_part(
        &self,
        full: &str,
        upload_id: &str,
        part: i32,
        data: Bytes,
        sha256: &str,
    ) -> Result<String, PartError>;

    /// Commits the object from `parts`, in order; never over an existing object.
    async fn complete(
        &self,
        key: &ObjectKey,
        full: &str,
        upload_id: &str,
        parts: &[journal::Part],
        object: &Finished,
        meta: &PutMeta,
    ) -> Result<StoredObject, StoreError>;

    /// Discards an unfinished upload; failures are only logged.
    async fn abort(&self, full: &str, upload_id: &str);
}

/// Stores `body` under `key` (`full` in the service) through `backend`.
pub async fn upload<B: Backend>(
    backend: &B,
    key: &ObjectKey,
    full: &str,
    body: EvidenceStream,
    meta: &PutMeta,
) -> Result<StoredObject, StoreError> {
    backend.check(key, full).await?;
    let plan = backend.plan();
    let resume = meta
        .resume
        .as_ref()
        .map(|spec| (spec, format!("{}; {}", spec.settings, plan.cut)));
    let mut resumed = None;
    if let Some((spec, settings)) = &resume {
        resumed = resumable(backend, spec, settings, full).await;
    }
    let first = backend.part_size(1);
    let mut source = Source::new(body, key, plan.object_digest, first);
    source.fill(first).await?;
    if source.ended {
        let whole = source.take(first);
        if let Some(result) = backend.put_whole(key, full, whole.clone(), meta).await {
            if let (Some(r), Some((spec, _))) = (resumed, &resume) {
                // Smaller than one part now: nothing of the earlier upload fits.
                discard(spec, "the object now fits in one request");
                backend.abort(full, &r.upload_id).await;
            }
            return result;
        }
        source.unread(whole);
    }
    let run = Run {
        backend,
        key,
        full,
        meta,
        plan,
    };
    run.multipart(source, resumed, resume).await
}

/// An interrupted upload that can go on.
struct Resumed {
    upload_id: String,
    /// Journalled parts the service still lists with the same size and tag.
    confirmed: BTreeMap<i32, journal::Part>,
}

fn discard(spec: &journal::ResumeSpec, why: &str) {
    tracing::warn!(journal = %spec.path.display(), why, "not resuming an earlier upload");
    remove_journal(spec);
}

/// Removes a journal whose upload completed, or was given up or discarded.
fn remove_journal(spec: &journal::ResumeSpec) {
    if let Err(e) = journal::remove(&spec.path) {
        tracing::warn!(journal = %spec.path.display(), error = %e, "cannot remove an upload journal");
    }
}

/// The upload of `full` that the journal at `spec` describes, if it was
/// made for the same bytes and the service still has it. A journal for
/// other bytes (other settings, store or key) or an upload the service no
/// longer has is discarded, and its upload aborted.
async fn resumable<B: Backend>(
    backend: &B,
    spec: &journal::ResumeSpec,
    settings: &str,
    full: &str,
) -> Option<Resumed> {
    let j = match journal::read(&spec.path) {
        Ok(j) => j?,
        Err(e) => {
            tracing::warn!(journal = %spec.path.display(), error = %e, "cannot read an upload journal; starting over");
            return None;
        }
    };
    let location = backend.location();
    if j.header.location != location || j.header.settings != settings {
        discard(spec, "it was made with other settings or for another store");
        return None;
    }
    if j.header.key != full {
        discard(spec, "it is for another object");
        backend.abort(&j.header.key, &j.header.upload_id).await;
        return None;
    }
    let listed = match backend.listed(full, &j.header.upload_id).await {
        Ok(listed) => listed,
        Err(e) => {
            tracing::warn!(key = %full, error = %crate::error_chain(&e), "the interrupted upload cannot be listed; starting over");
            discard(spec, "its upload cannot be listed");
            backend.abort(full, &j.header.upload_id).await;
            return None;
        }
    };
    let confirmed: BTreeMap<i32, journal::Part> = j
        .parts
        .into_iter()
        .filter(|(n, p)| {
            listed
                .get(n)
                .is_some_and(|l| l.size == p.size && l.tag == p.etag)
        })
        .collect();
    tracing::info!(key = %full, confirmed = confirmed.len(), "resuming an interrupted upload");
    Some(Resumed {
        upload_id: j.header.upload_id,
        confirmed,
    })
}

/// The stream being cut into parts.
struct Source<'a> {
    body: EvidenceStream,
    key: &'a ObjectKey,
    buf: BytesMut,
    ended: bool,
    /// Bytes taken so far.
    size: u64,
    digest: Option<Sha256>,
}

impl<'a> Source<'a> {
    fn new(body: EvidenceStream, key: &'a ObjectKey, digest: bool, capacity: usize) -> Self {
        Self {
            body,
            key,
            buf: BytesMut::with_capacity(capacity),
            ended: false,
            size: 0,
            digest: digest.then(Sha256::new),
        }
    }

    /// Reads until `want` bytes are buffered or the stream ended.
    async fn fill(&mut self, want: usize) -> Result<(), StoreError> {
        // One allocation per part: the last part took the buffer's
        // capacity with it, and growing by doubling would copy the part's
        // bytes again at each step.
        self.buf.reserve(want.saturating_sub(self.buf.len()));
        while !self.ended && self.buf.len() < want {
            match self.body.next().await {
                Some(Ok(chunk)) => {
                    if let Some(d) = &mut self.digest {
                        d.update(&chunk);
                    }
                    self.buf.extend_from_slice(&chunk);
                }
                Some(Err(source)) => {
                    return Err(StoreError::SourceFailed {
                        key: self.key.clone(),
                        source,
                    });
                }
                None => self.ended = true,
            }
        }
        Ok(())
    }

    /// The next part: `want` bytes, or what is left at the end.
    fn take(&mut self, want: usize) -> Bytes {
        let part = self.buf.split_to(want.min(self.buf.len())).freeze();
        self.size += part.len() as u64;
        part
    }

    /// Puts back what [`take`](Self::take) gave (a store without whole puts).
    fn unread(&mut self, part: Bytes) {
        self.size -= part.len() as u64;
        self.buf = BytesMut::from(part);
    }

    fn finished(self) -> Finished {
        Finished {
            size: self.size,
            sha256: self.digest.map(|d| hex::encode(d.finalize())),
        }
    }
}

type SharedJournal = Arc<Mutex<journal::Writer>>;

/// Aborts an upload that nothing keeps for a rerun, when it fails or the
/// put is dropped.
struct AbortGuard<B: Backend> {
    backend: B,
    full: String,
    upload_id: Option<String>,
}

impl<B: Backend> Drop for AbortGuard<B> {
    fn drop(&mut self) {
        let Some(upload_id) = self.upload_id.take() else {
            return;
        };
        let (backend, full) = (self.backend.clone(), self.full.clone());
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move { backend.abort(&full, &upload_id).await });
        }
    }
}

/// One put that goes up in parts.
struct Run<'a, B: Backend> {
    backend: &'a B,
    key: &'a ObjectKey,
    full: &'a str,
    meta: &'a PutMeta,
    plan: Plan,
}

/// A finished part task: its receipt and whether it went over the wire.
struct Sent {
    receipt: journal::Part,
    sent: bool,
}

impl<B: Backend> Run<'_, B> {
    fn journal_error(&self, e: io::Error) -> StoreError {
        journal::write_error(&self.backend.location(), self.full, e)
    }

    /// `e`, said to be resumable where a journal keeps the upload.
    fn interrupted(
        &self,
        e: StoreError,
        resume: Option<&(&journal::ResumeSpec, String)>,
    ) -> StoreError {
        if let Some((spec, _)) = resume {
            tracing::warn!(key = %self.full, journal = %spec.path.display(), "upload interrupted; the parts sent so far are kept: rerun the same command to resume");
        }
        e
    }

    async fn multipart(
        &self,
        mut source: Source<'_>,
        resumed: Option<Resumed>,
        resume: Option<(&journal::ResumeSpec, String)>,
    ) -> Result<StoredObject, StoreError> {
        let mut guard = AbortGuard {
            backend: self.backend.clone(),
            full: self.full.to_owned(),
            upload_id: None,
        };
        let (upload_id, confirmed, journal) = match resumed {
            Some(r) => {
                let journal = match &resume {
                    Some((spec, _)) => Some(
                        journal::Writer::append_to(&spec.path)
                            .map_err(|e| self.journal_error(e))?,
                    ),
                    None => None,
                };
                (r.upload_id, r.confirmed, journal)
            }
            None => {
                let upload_id = self.backend.start(self.full, self.meta).await?;
                // Until the journal is on disk, a failure aborts the upload.
                guard.upload_id = Some(upload_id.clone());
                let journal = match &resume {
                    Some((spec, settings)) => {
                        let header = journal::Header::new(
                            self.backend.location(),
                            self.full.to_owned(),
                            upload_id.clone(),
                            settings.clone(),
                        );
                        let w = journal::Writer::create(&spec.path, &header)
                            .map_err(|e| self.journal_error(e))?;
                        // From here the journal keeps the upload for a rerun.
                        guard.upload_id = None;
                        Some(w)
                    }
                    None => None,
                };
                (upload_id, BTreeMap::new(), journal)
            }
        };
        let parts = Parts {
            backend: self.backend.clone(),
            full: Arc::from(self.full),
            upload_id: Arc::from(upload_id.as_str()),
            journal: journal.map(|j| Arc::new(Mutex::new(j))),
            max_attempts: self.plan.max_attempts.max(1),
            first_backoff: self.plan.first_backoff,
        };
        let receipts = match self.send_all(&mut source, &parts, &confirmed).await {
            Ok(receipts) => receipts,
            Err(Failed::GiveUp(e)) => {
                // Resuming cannot help: the upload and its journal go.
                guard.upload_id = Some(upload_id);
                if let Some((spec, _)) = &resume {
                    remove_journal(spec);
                }
                return Err(e);
            }
            Err(Failed::Interrupted(e)) => return Err(self.interrupted(e, resume.as_ref())),
        };
        let object = source.finished();
        let stored = self
            .backend
            .complete(
                self.key, self.full, &upload_id, &receipts, &object, self.meta,
            )
            .await
            .map_err(|e| self.interrupted(e, resume.as_ref()))?;
        guard.upload_id = None;
        if let Some((spec, _)) = &resume {
            remove_journal(spec);
        }
        Ok(stored)
    }

    /// Cuts the stream into parts and sends them, at most `parts_in_flight`
    /// at once; returns every part's receipt, in order.
    async fn send_all(
        &self,
        source: &mut Source<'_>,
        parts: &Parts<B>,
        confirmed: &BTreeMap<i32, journal::Part>,
    ) -> Result<Vec<journal::Part>, Failed> {
        let mut inflight: JoinSet<Result<Sent, StoreError>> = JoinSet::new();
        let mut receipts = Vec::new();
        let mut reused = 0usize;
        let mut joined = |r: Result<Result<Sent, StoreError>, tokio::task::JoinError>| {
            let sent = r.map_err(|e| StoreError::Io {
                op: "upload a part of",
                key: self.full.to_owned(),
                location: self.backend.location(),
                source: io::Error::other(e.to_string()),
            })??;
            reused += usize::from(!sent.sent);
            receipts.push(sent.receipt);
            Ok::<_, StoreError>(())
        };
        let mut number = 0i32;
        loop {
            let next = number.saturating_add(1);
            let want = self.backend.part_size(next);
            source.fill(want).await?;
            if source.buf.is_empty() {
                break;
            }
            if u64::try_from(next).unwrap_or(u64::MAX) > self.plan.max_parts {
                return Err(Failed::GiveUp(self.too_large()));
            }
            while inflight.len() >= self.plan.parts_in_flight.max(1) {
                if let Some(r) = inflight.join_next().await {
                    joined(r)?;
                }
            }
            number = next;
            let data = source.take(want);
            inflight.spawn(
                parts
                    .clone()
                    .send(number, data, confirmed.get(&number).cloned()),
            );
        }
        while let Some(r) = inflight.join_next().await {
            joined(r)?;
        }
        if reused > 0 {
            tracing::info!(key = %self.full, reused, sent = receipts.len() - reused, "resumed an interrupted upload");
        }
        receipts.sort_by_key(|p| p.part);
        Ok(receipts)
    }

    fn too_large(&self) -> StoreError {
        StoreError::Io {
            op: "upload",
            key: self.full.to_owned(),
            location: self.backend.location(),
            source: io::Error::other(format!(
                "the object needs more than {} parts, the most this store takes for one object",
                self.plan.max_parts
            )),
        }
    }
}

/// Why the parts could not all be sent.
enum Failed {
    /// A rerun may finish the upload.
    Interrupted(StoreError),
    /// No rerun can: the object is too large for the store.
    GiveUp(StoreError),
}

impl From<StoreError> for Failed {
    fn from(e: StoreError) -> Self {
        Self::Interrupted(e)
    }
}

/// What each part task needs, shared by all of them.
struct Parts<B: Backend> {
    backend: B,
    full: Arc<str>,
    upload_id: Arc<str>,
    journal: Option<SharedJournal>,
    max_attempts: u32,
    first_backoff: Duration,
}

impl<B: Backend> Clone for Parts<B> {
    fn clone(&self) -> Self {
        Self {
            backend: self.backend.clone(),
            full: self.full.clone(),
            upload_id: self.upload_id.clone(),
            journal: self.journal.clone(),
            max_attempts: self.max_attempts,
            first_backoff: self.first_backoff,
        }
    }
}

impl<B: Backend> Parts<B> {
    /// Sends part `n` unless `earlier` shows the service holds these same
    /// bytes already, and journals it.
    async fn send(
        self,
        n: i32,
        data: Bytes,
        earlier: Option<journal::Part>,
    ) -> Result<Sent, StoreError> {
        let sha256 = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(&data));
        let size = data.len() as u64;
        if let Some(p) = earlier.filter(|p| p.sha256 == sha256 && p.size == size) {
            // Confirmed by the service before the interruption, and the
            // bytes produced now are the same: not sent again.
            return Ok(Sent {
                receipt: p,
                sent: false,
            });
        }
        let mut tries = 1;
        let tag = loop {
            match self
                .backend
                .upload_part(&self.full, &self.upload_id, n, data.clone(), &sha256)
                .await
            {
                Ok(tag) => break tag,
                Err(e) if e.transient && tries < self.max_attempts => {
                    tracing::debug!(key = %self.full, part = n, tries, error = %crate::error_chain(&e.error), "trying a part again");
                    tokio::time::sleep(backoff(self.first_backoff, tries)).await;
                    tries += 1;
                }
                Err(e) => return Err(e.error),
            }
        };
        let receipt = journal::Part {
            part: n,
            size,
            sha256,
            etag: tag,
        };
        if let Some(j) = &self.journal {
            let location = self.backend.location();
            j.lock()
                .map_err(|_| {
                    journal::write_error(
                        &location,
                        &self.full,
                        io::Error::other("journal lock poisoned"),
                    )
                })?
                .record(&receipt)
                .map_err(|e| journal::write_error(&location, &self.full, e))?;
        }
        Ok(Sent {
            receipt,
            sent: true,
        })
    }
}

/// The wait after try `tries` (from 1): `first` doubling, at most
/// [`MAX_BACKOFF`], somewhere in its upper half so that parts which failed
/// together do not all come back together.
fn backoff(first: Duration, tries: u32) -> Duration {
    use rand_core::RngCore as _;
    let full = first
        .saturating_mul(1u32 << tries.saturating_sub(1).min(16))
        .min(MAX_BACKOFF);
    let jitter = f64::from(rand_core::OsRng.next_u32()) / f64::from(u32::MAX);
    full / 2 + (full / 2).mul_f64(jitter)
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet};

    use super::*;

    /// Parts of 16 bytes, two in flight, three tries: small enough to see
    /// every part.
    const PART: usize = 16;

    #[derive(Debug, Default)]
    struct State {
        /// Upload id → the parts the fake holds for it.
        uploads: HashMap<String, BTreeMap<i32, (Bytes, String)>>,
        objects: HashMap<String, Bytes>,
        /// Every part upload received, by part number, tries included.
        tries: Vec<i32>,
        aborted: Vec<String>,
        /// Part → failures still to give, and whether they are transient.
        failing: HashMap<i32, (u32, bool)>,
        /// Parts whose bytes change on the way, so their digest no longer holds.
        corrupt: HashSet<i32>,
        started: u32,
        in_flight: usize,
        most_in_flight: usize,
    }

    /// An in-memory service that checks each part's SHA-256 as S3 does.
    #[derive(Debug, Clone, Default)]
    struct Fake {
        state: Arc<Mutex<State>>,
        /// Objects smaller than a part go up in one request.
        whole: bool,
    }

    impl Fake {
        fn state(&self) -> std::sync::MutexGuard<'_, State> {
            self.state.lock().unwrap()
        }

        fn error(&self, what: &str) -> StoreError {
            StoreError::Io {
                op: "upload",
                key: "k".into(),
                location: "fake://".into(),
                source: io::Error::other(what.to_owned()),
            }
        }
    }

    fn sha256_b64(b: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(Sha256::digest(b))
    }

    #[async_trait]
    impl Backend for Fake {
        fn location(&self) -> String {
            "fake://".into()
        }

        fn plan(&self) -> Plan {
            Plan {
                max_parts: 100,
                parts_in_flight: 2,
                max_attempts: 3,
                first_backoff: Duration::from_millis(1),
                cut: format!("fake parts {PART}"),
                object_digest: true,
            }
        }

        fn part_size(&self, _part: i32) -> usize {
            PART
        }

        async fn check(&self, key: &ObjectKey, full: &str) -> Result<(), StoreError> {
            if self.state().objects.contains_key(full) {
                return Err(StoreError::AlreadyExists {
                    key: key.clone(),
                    location: self.location(),
                });
            }
            Ok(())
        }

        async fn put_whole(
            &self,
            key: &ObjectKey,
            full: &str,
            body: Bytes,
            _meta: &PutMeta,
        ) -> Option<Result<StoredObject, StoreError>> {
            if !self.whole {
                return None;
            }
            let size = body.len() as u64;
            self.state().objects.insert(full.to_owned(), body);
            Some(Ok(StoredObject {
                key: key.clone(),
                size,
                version_id: None,
                etag: None,
            }))
        }

        async fn start(&self, _full: &str, _meta: &PutMeta) -> Result<String, StoreError> {
            let mut st = self.state();
            st.started += 1;
            let id = format!("upload-{}", st.started);
            st.uploads.insert(id.clone(), BTreeMap::new());
            Ok(id)
        }

        async fn listed(
            &self,
            _full: &str,
            upload_id: &str,
        ) -> Result<BTreeMap<i32, Listed>, StoreError> {
            let st = self.state();
            let parts = st
                .uploads
                .get(upload_id)
                .ok_or_else(|| self.error("no such upload"))?;
            Ok(parts
                .iter()
                .map(|(n, (data, tag))| {
                    let size = data.len() as u64;
                    (
                        *n,
                        Listed {
                            size,
                            tag: tag.clone(),
                        },
                    )
                })
                .collect())
        }

        async fn upload_part(
            &self,
            _full: &str,
            upload_id: &str,
            part: i32,
            data: Bytes,
            sha256: &str,
        ) -> Result<String, PartError> {
            {
                let mut st = self.state();
                st.tries.push(part);
                st.in_flight += 1;
                st.most_in_flight = st.most_in_flight.max(st.in_flight);
            }
            // Let the other parts in flight start before this one ends.
            tokio::task::yield_now().await;
            let mut st = self.state();
            st.in_flight -= 1;
            if let Some((left, transient)) = st.failing.get_mut(&part)
                && *left > 0
            {
                *left -= 1;
                let transient = *transient;
                return Err(PartError {
                    error: self.error("injected failure"),
                    transient,
                });
            }
            let data = if st.corrupt.contains(&part) {
                let mut v = data.to_vec();
                v[0] ^= 1;
                Bytes::from(v)
            } else {
                data
            };
            if sha256_b64(&data) != sha256 {
                return Err(PartError {
                    error: self.error("the part's SHA-256 does not match its bytes"),
                    transient: false,
                });
            }
            let tag = format!("tag-{}", &sha256[..8]);
            let parts = st.uploads.get_mut(upload_id).ok_or_else(|| PartError {
                error: self.error("no such upload"),
                transient: false,
            })?;
            parts.insert(part, (data, tag.clone()));
            Ok(tag)
        }

        async fn complete(
            &self,
            key: &ObjectKey,
            full: &str,
            upload_id: &str,
            parts: &[journal::Part],
            object: &Finished,
            _meta: &PutMeta,
        ) -> Result<StoredObject, StoreError> {
            let mut st = self.state();
            let held = st
                .uploads
                .remove(upload_id)
                .ok_or_else(|| self.error("no such upload"))?;
            let mut body = Vec::new();
            for p in parts {
                let (data, tag) = held
                    .get(&p.part)
                    .ok_or_else(|| self.error("a part is missing"))?;
                assert_eq!(*tag, p.etag, "part {}", p.part);
                body.extend_from_slice(data);
            }
            assert_eq!(body.len() as u64, object.size);
            assert_eq!(
                object.sha256.as_deref(),
                Some(hex::encode(Sha256::digest(&body)).as_str())
            );
            st.objects.insert(full.to_owned(), Bytes::from(body));
            Ok(StoredObject {
                key: key.clone(),
                size: object.size,
                version_id: None,
                etag: None,
            })
        }

        async fn abort(&self, _full: &str, upload_id: &str) {
            let mut st = self.state();
            st.uploads.remove(upload_id);
            st.aborted.push(upload_id.to_owned());
        }
    }

    fn data(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect()
    }

    /// `data` as a stream of 7-byte chunks, so parts never line up with chunks.
    fn stream(data: &[u8]) -> EvidenceStream {
        let chunks: Vec<io::Result<Bytes>> = data
            .chunks(7)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        Box::pin(futures::stream::iter(chunks))
    }

    fn key() -> ObjectKey {
        ObjectKey::new("cases/c1/artefacts/a").unwrap()
    }

    fn journalled(dir: &tempfile::TempDir) -> PutMeta {
        PutMeta {
            resume: Some(journal::ResumeSpec {
                path: dir.path().join("uploads/a.jsonl"),
                settings: "zstd 1".into(),
            }),
            ..PutMeta::default()
        }
    }

    async fn put(
        fake: &Fake,
        body: EvidenceStream,
        meta: &PutMeta,
    ) -> Result<StoredObject, StoreError> {
        upload(fake, &key(), "p/a", body, meta).await
    }

    #[tokio::test]
    async fn parts_are_cut_in_order_bounded_in_flight_and_committed() {
        let fake = Fake::default();
        let bytes = data(100, 1);
        let stored = put(&fake, stream(&bytes), &PutMeta::default())
            .await
            .unwrap();
        assert_eq!(stored.size, 100);
        {
            let st = fake.state();
            assert_eq!(st.objects["p/a"], bytes);
            // 16 × 6 + 4: seven parts, each sent once, never more than two at once.
            let mut tries = st.tries.clone();
            tries.sort_unstable();
            assert_eq!(tries, (1..=7).collect::<Vec<_>>());
            assert_eq!(st.most_in_flight, 2);
            assert!(st.uploads.is_empty() && st.aborted.is_empty());
        }
        // Never over an existing object.
        let again = put(&fake, stream(&bytes), &PutMeta::default()).await;
        assert!(
            matches!(again, Err(StoreError::AlreadyExists { .. })),
            "{again:?}"
        );
    }

    #[tokio::test]
    async fn a_small_object_goes_up_whole_where_the_store_can() {
        let fake = Fake {
            whole: true,
            ..Fake::default()
        };
        put(&fake, stream(&data(10, 2)), &PutMeta::default())
            .await
            .unwrap();
        assert!(fake.state().tries.is_empty());
        assert_eq!(fake.state().objects["p/a"], data(10, 2));
        // Without a whole put it is one part; an empty object none.
        let fake = Fake::default();
        put(&fake, stream(&data(10, 2)), &PutMeta::default())
            .await
            .unwrap();
        assert_eq!(fake.state().tries, [1]);
        let fake = Fake::default();
        put(&fake, stream(&[]), &PutMeta::default()).await.unwrap();
        assert!(fake.state().tries.is_empty());
        assert_eq!(fake.state().objects["p/a"].len(), 0);
    }

    #[tokio::test]
    async fn a_transient_failure_is_tried_again_and_a_permanent_one_is_not() {
        let fake = Fake::default();
        fake.state().failing.insert(3, (2, true));
        let bytes = data(64, 3);
        put(&fake, stream(&bytes), &PutMeta::default())
            .await
            .unwrap();
        assert_eq!(fake.state().tries.iter().filter(|p| **p == 3).count(), 3);
        assert_eq!(fake.state().objects["p/a"], bytes);

        // Three transient failures exhaust the three tries.
        let fake = Fake::default();
        fake.state().failing.insert(2, (3, true));
        assert!(
            put(&fake, stream(&bytes), &PutMeta::default())
                .await
                .is_err()
        );
        assert_eq!(fake.state().tries.iter().filter(|p| **p == 2).count(), 3);

        // Access denied: one try, the upload aborted, nothing committed.
        let fake = Fake::default();
        fake.state().failing.insert(2, (1, false));
        let err = put(&fake, stream(&bytes), &PutMeta::default())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("upload"), "{err}");
        tokio::task::yield_now().await;
        let st = fake.state();
        assert_eq!(st.tries.iter().filter(|p| **p == 2).count(), 1);
        assert!(st.objects.is_empty());
        assert_eq!(st.aborted, ["upload-1"]);
    }

    #[tokio::test]
    async fn the_store_refuses_a_part_whose_digest_differs() {
        let fake = Fake::default();
        fake.state().corrupt.insert(2);
        let err = put(&fake, stream(&data(64, 4)), &PutMeta::default())
            .await
            .unwrap_err();
        assert!(crate::error_chain(&err).contains("SHA-256"), "{err}");
        tokio::task::yield_now().await;
        let st = fake.state();
        // Refused, not tried again, and nothing committed.
        assert_eq!(st.tries.iter().filter(|p| **p == 2).count(), 1);
        assert!(st.objects.is_empty());
        assert_eq!(st.aborted, ["upload-1"]);
    }

    /// Lines after the journal's header: the parts it confirms.
    fn journal_parts(meta: &PutMeta) -> usize {
        let path = &meta.resume.as_ref().unwrap().path;
        std::fs::read_to_string(path).map_or(0, |t| t.lines().count().saturating_sub(1))
    }

    #[tokio::test]
    async fn a_process_lost_mid_upload_resumes_from_the_journal() {
        let dir = tempfile::tempdir().unwrap();
        let meta = journalled(&dir);
        let fake = Fake::default();
        let bytes = data(100, 5);
        // Three parts arrive, then the source stalls and the process is lost.
        let head = futures::stream::iter(vec![Ok(Bytes::copy_from_slice(&bytes[..48]))]);
        let stalled: EvidenceStream = Box::pin(head.chain(futures::stream::pending()));
        let task = {
            let (fake, meta) = (fake.clone(), meta.clone());
            tokio::spawn(async move { put(&fake, stalled, &meta).await })
        };
        for _ in 0..1000 {
            if journal_parts(&meta) == 3 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert_eq!(journal_parts(&meta), 3);
        task.abort();
        assert!(task.await.unwrap_err().is_cancelled());
        tokio::task::yield_now().await;
        // The journal keeps the upload: nothing aborted.
        assert!(fake.state().aborted.is_empty());
        fake.state().tries.clear();

        // The rerun sends only parts 4 to 7.
        let stored = put(&fake, stream(&bytes), &meta).await.unwrap();
        assert_eq!(stored.size, 100);
        let st = fake.state();
        let mut tries = st.tries.clone();
        tries.sort_unstable();
        assert_eq!(tries, [4, 5, 6, 7]);
        assert_eq!(st.objects["p/a"], bytes);
        assert_eq!(st.started, 1, "the same upload went on");
        assert!(
            !meta.resume.as_ref().unwrap().path.exists(),
            "the journal is removed when done"
        );
    }

    #[tokio::test]
    async fn a_journalled_part_is_reused_only_if_the_store_and_the_bytes_agree() {
        let dir = tempfile::tempdir().unwrap();
        let meta = journalled(&dir);
        let fake = Fake::default();
        let first = data(80, 6);
        // The upload fails at part 5 for good: parts 1 to 4 are journalled.
        fake.state().failing.insert(5, (1, false));
        assert!(put(&fake, stream(&first), &meta).await.is_err());
        assert!(journal_parts(&meta) >= 4);
        assert!(
            fake.state().aborted.is_empty(),
            "the journal keeps the upload"
        );
        fake.state().tries.clear();
        // The store lost part 2, and part 3's bytes come out different now.
        fake.state().uploads.get_mut("upload-1").unwrap().remove(&2);
        let mut second = first.clone();
        second[40] ^= 0xff;
        put(&fake, stream(&second), &meta).await.unwrap();
        let st = fake.state();
        let mut tries = st.tries.clone();
        tries.sort_unstable();
        assert_eq!(tries, [2, 3, 5]);
        assert_eq!(st.objects["p/a"], second);
    }

    #[tokio::test]
    async fn a_journal_for_other_settings_is_not_resumed() {
        let dir = tempfile::tempdir().unwrap();
        let meta = journalled(&dir);
        let fake = Fake::default();
        fake.state().failing.insert(3, (1, false));
        let bytes = data(64, 7);
        assert!(put(&fake, stream(&bytes), &meta).await.is_err());
        fake.state().tries.clear();
        let mut other = meta.clone();
        other.resume.as_mut().unwrap().settings = "zstd 19".into();
        put(&fake, stream(&bytes), &other).await.unwrap();
        let st = fake.state();
        assert_eq!(st.tries.len(), 4, "every part sent again");
        assert_eq!(st.started, 2);
    }

    #[tokio::test]
    async fn an_object_past_the_part_limit_is_given_up() {
        let dir = tempfile::tempdir().unwrap();
        let meta = journalled(&dir);
        let fake = Fake::default();
        // 100 parts of 16 bytes at most.
        let err = put(&fake, stream(&data(16 * 100 + 1, 8)), &meta)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("upload"), "{err}");
        assert!(
            crate::error_chain(&err).contains("more than 100 parts"),
            "{err}"
        );
        tokio::task::yield_now().await;
        assert_eq!(fake.state().aborted, ["upload-1"]);
        assert!(!meta.resume.as_ref().unwrap().path.exists());
    }

    #[test]
    fn backoff_doubles_within_its_bounds() {
        let first = Duration::from_millis(200);
        for tries in 1..30 {
            let full = first
                .saturating_mul(1 << (tries - 1).min(16))
                .min(MAX_BACKOFF);
            let b = backoff(first, tries);
            assert!(b >= full / 2 && b <= full, "{tries}: {b:?}");
        }
        assert!(backoff(first, 1) <= first);
        assert!(backoff(first, 30) >= MAX_BACKOFF / 2);
    }
}
