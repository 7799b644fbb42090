//! Resumable puts of the local store.
//!
//! A put whose source can take back what it stored (an EBS image: see
//! [`super::PutMeta::keep_partial`]) keeps its partial file when the source
//! fails, the put is dropped (Ctrl-C) or the process is killed. Its journal
//! is the one uploads in parts keep ([`super::journal`]): the header names
//! the partial file, and each part is a checkpoint of it, recorded only
//! after an fdatasync that covers it, so a part never names bytes that are
//! not on disk. The fdatasyncs run beside the writes, not between them.
//! A checkpoint holds the SHA-256 of the file's first bytes up to it, which
//! the pipeline publishes as it hashes the stored bytes for the artefact's
//! digest ([`super::PutMeta::stored_digests`]): the bytes are hashed once.
//!
//! The rerun gives the source the prefix whose parts still hash as
//! journalled (`EvidenceStore::resumed_prefix`), and the source reads its
//! first bytes from there instead of from the cloud. The put then compares the bytes the pipeline
//! produces again with the file instead of writing them, and from the first
//! difference (or the end of the checked parts) truncates and appends. A
//! failure of the store's own disk (a full disk) removes the file and its
//! journal: the space goes back to the responder.

use std::fs::File;
use std::io::{self, Read as _};
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender};

use base64::Engine as _;
use bytes::Bytes;
use futures::StreamExt as _;
use sha2::{Digest as _, Sha256};

use super::journal::{self, Header, Part, ResumeSpec};
use super::{EvidenceStream, ObjectKey, PrefixDigests, StoreError, StoredObject, StoredPrefix};

/// Marks the journals whose parts hold prefix digests: a journal of an
/// earlier version (a digest per part) is another put's, not resumed.
const CHECKPOINT_FORMAT: &str = "checkpoints: SHA-256 of the prefix";

fn settings(spec: &ResumeSpec) -> String {
    format!("{}; {CHECKPOINT_FORMAT}", spec.settings)
}

/// Stored bytes between two checkpoints: at most this much is written
/// again after a crash.
const CHECKPOINT: u64 = 16 << 20;
/// A body idle this long gets a checkpoint of what it sent: a source that
/// stalls (a hung service) and is then killed loses nothing it delivered.
const IDLE: std::time::Duration = std::time::Duration::from_millis(500);

/// What the async side hands the blocking writer.
enum Msg {
    Chunk(Bytes),
    /// The body has been idle: checkpoint what it sent.
    Idle,
    /// The body ended without error.
    End,
}

/// Prefix of in-progress files; `list` never shows them.
pub(super) const PARTIAL_PREFIX: &str = ".partial-";

/// The local store's directory, as its partial files are named, committed
/// and reported.
#[derive(Debug, Clone)]
pub(super) struct Files {
    pub root: PathBuf,
    /// The store's location, for errors and journals.
    pub location: String,
}

impl Files {
    pub(super) fn path(&self, key: &ObjectKey) -> PathBuf {
        self.root.join(key.as_str())
    }

    fn dir_of(&self, key: &ObjectKey) -> PathBuf {
        self.path(key)
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| self.root.clone())
    }

    pub(super) fn err(&self, op: &'static str, key: &ObjectKey, source: io::Error) -> StoreError {
        if source.kind() == io::ErrorKind::NotFound && op == "open" {
            return StoreError::NotFound {
                key: key.clone(),
                location: self.location.clone(),
            };
        }
        StoreError::Io {
            op,
            key: key.to_string(),
            location: self.location.clone(),
            source,
        }
    }

    /// Gives a written, fsynced partial file its final name. link(2)
    /// refuses an existing target: the no-overwrite rule holds even against
    /// a concurrent writer of the same key.
    pub(super) async fn link(
        &self,
        key: &ObjectKey,
        partial: &Path,
        final_path: &Path,
    ) -> Result<(), StoreError> {
        match tokio::fs::hard_link(partial, final_path).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(StoreError::AlreadyExists {
                key: key.clone(),
                location: self.location.clone(),
            }),
            Err(e) => Err(self.err("commit", key, e)),
        }
    }

    /// Removes the partial name of a committed object and makes both names'
    /// changes durable.
    pub(super) async fn unlink_partial(
        &self,
        key: &ObjectKey,
        partial: &Path,
        dir: &Path,
    ) -> Result<(), StoreError> {
        tokio::fs::remove_file(partial)
            .await
            .map_err(|e| self.err("clean up after", key, e))?;
        let sync = async { tokio::fs::File::open(dir).await?.sync_all().await };
        sync.await
            .map_err(|e| self.err("fsync the directory of", key, e))
    }
}

fn b64(d: impl AsRef<[u8]>) -> String {
    base64::engine::general_purpose::STANDARD.encode(d)
}

/// What an interrupted put of a key left: its partial file and the
/// journal's parts from the first, without gaps.
struct Left {
    path: PathBuf,
    parts: Vec<Part>,
}

fn left(files: &Files, key: &ObjectKey, spec: &ResumeSpec) -> io::Result<Option<Left>> {
    let Some(j) = journal::read(&spec.path)? else {
        return Ok(None);
    };
    let h = &j.header;
    // The journal names a partial file of this key, in this store, made
    // with these settings; anything else is not this put's.
    if h.location != files.location
        || h.key != key.as_str()
        || h.settings != settings(spec)
        || !h.upload_id.starts_with(PARTIAL_PREFIX)
        || h.upload_id.contains('/')
    {
        return Ok(None);
    }
    let path = files.dir_of(key).join(&h.upload_id);
    match std::fs::symlink_metadata(&path) {
        Ok(m) if m.file_type().is_file() => {}
        _ => return Ok(None),
    }
    let parts = j
        .parts
        .into_values()
        .zip(1..)
        .take_while(|(p, n)| p.part == *n)
        .map(|(p, _)| p)
        .collect();
    Ok(Some(Left { path, parts }))
}

/// Feeds the file's bytes from `from` to `to` to `h`, read through `buf`.
fn hash_range(file: &File, h: &mut Sha256, buf: &mut [u8], from: u64, to: u64) -> io::Result<()> {
    let mut pos = from;
    while pos < to {
        let n = usize::try_from((to - pos).min(buf.len() as u64)).unwrap_or(buf.len());
        let b = buf.get_mut(..n).unwrap_or_default();
        file.read_exact_at(b, pos)?;
        h.update(&*b);
        pos += n as u64;
    }
    Ok(())
}

/// Bytes from the file's start up to the last checkpoint whose prefix
/// hashes as journalled.
fn checked(file: &File, parts: &[Part]) -> u64 {
    let mut at = 0u64;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    for p in parts {
        let end = at.saturating_add(p.size);
        if hash_range(file, &mut h, &mut buf, at, end).is_err() {
            return at;
        }
        if b64(h.clone().finalize()) != p.sha256 {
            tracing::warn!(
                part = p.part,
                "a part of an interrupted put does not hash as journalled; it and what follows are read again from the source"
            );
            return at;
        }
        at = end;
    }
    at
}

/// The checked prefix an interrupted put of `key` left, as a reader.
pub(super) async fn prefix(
    files: &Files,
    key: &ObjectKey,
    spec: &ResumeSpec,
) -> Result<Option<StoredPrefix>, StoreError> {
    let (s, k, sp) = (files.clone(), key.clone(), spec.clone());
    let found = tokio::task::spawn_blocking(move || {
        let Some(l) = left(&s, &k, &sp)? else {
            return Ok(None);
        };
        let file = File::open(&l.path)?;
        let len = checked(&file, &l.parts);
        Ok::<_, io::Error>((len > 0).then(|| StoredPrefix {
            reader: Box::new(file.take(len)),
            len,
        }))
    })
    .await
    .map_err(|e| io::Error::other(e.to_string()))
    .and_then(|r| r);
    match found {
        Ok(p) => Ok(p),
        Err(e) => {
            // A resume that cannot be read costs the source a full read, never the put.
            tracing::warn!(%key, error = %e, "cannot read what an interrupted put stored; reading the source again");
            Ok(None)
        }
    }
}

/// A resumable put of `key`.
pub(super) async fn put(
    files: &Files,
    key: &ObjectKey,
    mut body: EvidenceStream,
    spec: &ResumeSpec,
    digests: Option<Arc<PrefixDigests>>,
) -> Result<StoredObject, StoreError> {
    let final_path = files.path(key);
    let dir = files.dir_of(key);
    if tokio::fs::try_exists(&final_path).await.unwrap_or(false) {
        return Err(StoreError::AlreadyExists {
            key: key.clone(),
            location: files.location.clone(),
        });
    }
    crate::private_fs::create_dir_all(&dir)
        .map_err(|e| files.err("create the directory for", key, e))?;
    let (s, k, sp) = (files.clone(), key.clone(), spec.clone());
    let earlier = tokio::task::spawn_blocking(move || left(&s, &k, &sp))
        .await
        .map_err(|e| io::Error::other(e.to_string()))
        .and_then(|r| r)
        .unwrap_or_else(|e| {
            tracing::warn!(error = %e, "cannot read the journal of an interrupted put; starting afresh");
            None
        });
    let (path, file, old) = match earlier {
        Some(l) => match crate::private_fs::options().open(&l.path) {
            Ok(f) => (l.path, f, l.parts),
            Err(e) => return Err(files.err("reopen the partial file of", key, e)),
        },
        None => {
            let name = final_path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let path = dir.join(format!(
                "{PARTIAL_PREFIX}{name}.{}",
                uuid::Uuid::new_v4().simple()
            ));
            let f = crate::private_fs::options()
                .create_new(true)
                .open(&path)
                .map_err(|e| files.err("create a temporary file for", key, e))?;
            (path, f, Vec::new())
        }
    };
    let upload_id = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let writer = Writer {
        file: Arc::new(file),
        journal: spec.path.clone(),
        header: Header::new(
            files.location.clone(),
            key.to_string(),
            upload_id,
            settings(spec),
        ),
        old_ends: old
            .iter()
            .scan(0u64, |end, p| {
                *end += p.size;
                Some(*end)
            })
            .collect(),
        diverged: old.is_empty(),
        pos: 0,
        part_start: 0,
        // Without the producer's digests the writer hashes what it is given.
        own_hash: digests.is_none().then(Sha256::new),
        digests,
        done: Vec::new(),
        checkpoints: None,
        scratch: Vec::new(),
    };
    // A new file gets its journal before its first byte.
    let mut writer = writer;
    if writer.diverged {
        writer.start_journal();
    }
    // One frame queued: the pipeline's own store queue is the buffer.
    let (tx, rx) = tokio::sync::mpsc::channel::<Msg>(1);
    let task = tokio::task::spawn_blocking(move || writer.run(rx));
    let mut source_err = None;
    let mut idle_sent = false;
    loop {
        let msg = match tokio::time::timeout(IDLE, body.next()).await {
            Err(_) if idle_sent => continue,
            Err(_) => {
                idle_sent = true;
                Msg::Idle
            }
            Ok(Some(Ok(chunk))) => {
                idle_sent = false;
                Msg::Chunk(chunk)
            }
            Ok(Some(Err(e))) => {
                source_err = Some(e);
                break;
            }
            Ok(None) => Msg::End,
        };
        let end = matches!(msg, Msg::End);
        if tx.send(msg).await.is_err() || end {
            break;
        }
    }
    drop(tx);
    let written = task
        .await
        .map_err(|e| files.err("write", key, io::Error::other(e.to_string())))?;
    if let Some(source) = source_err {
        // Kept, with its journal, for the rerun.
        tracing::info!(%key, "the source failed; what was stored is kept so that rerunning the same acquisition resumes it");
        return Err(StoreError::SourceFailed {
            key: key.clone(),
            source,
        });
    }
    let size = match written {
        Ok(Some(size)) => size,
        Ok(None) => {
            return Err(StoreError::SourceFailed {
                key: key.clone(),
                source: io::Error::other("the body ended without its end"),
            });
        }
        Err((op, e)) => {
            // The store's own disk failed: give the space back.
            let _ = std::fs::remove_file(&path);
            let _ = journal::remove(&spec.path);
            return Err(files.err(op, key, e));
        }
    };
    files.link(key, &path, &final_path).await?;
    files.unlink_partial(key, &path, &dir).await?;
    // Last: a crash before this leaves a journal naming no file, which is
    // no resume.
    if let Err(e) = journal::remove(&spec.path) {
        tracing::warn!(error = %e, "cannot remove the journal of a finished put");
    }
    Ok(StoredObject {
        key: key.clone(),
        size,
        version_id: None,
        etag: None,
    })
}

/// The blocking side of a resumable put.
struct Writer {
    file: Arc<File>,
    journal: PathBuf,
    header: Header,
    /// Where each journalled part of an earlier attempt ends: up to the
    /// last, the bytes are compared, not written, and parts close where
    /// the earlier ones did.
    old_ends: Vec<u64>,
    /// Writing (the bytes differ from the earlier attempt's, or go past them).
    diverged: bool,
    pos: u64,
    part_start: u64,
    /// The SHA-256 of the bytes so far, when the writer hashes them itself.
    own_hash: Option<Sha256>,
    /// The producer's prefix digests, when it publishes them.
    digests: Option<Arc<PrefixDigests>>,
    /// Parts completed so far, in order.
    done: Vec<Part>,
    checkpoints: Option<(SyncSender<Part>, std::thread::JoinHandle<()>)>,
    scratch: Vec<u8>,
}

type Failed = (&'static str, io::Error);

impl Writer {
    /// Writes what arrives; `Ok(Some(size))` once the end marker came and
    /// the file is durable, `Ok(None)` when the body was abandoned.
    fn run(mut self, mut rx: tokio::sync::mpsc::Receiver<Msg>) -> Result<Option<u64>, Failed> {
        let r = loop {
            match rx.blocking_recv() {
                Some(Msg::Chunk(chunk)) => {
                    if let Err(e) = self.chunk(&chunk) {
                        break Err(e);
                    }
                }
                Some(Msg::Idle) => {
                    if self.diverged && self.pos > self.part_start {
                        self.close_part();
                    }
                }
                Some(Msg::End) => break self.finish().map(Some),
                None => break Ok(None),
            }
        };
        // The checkpoints already sent are recorded before the put returns.
        if let Some((tx, thread)) = self.checkpoints.take() {
            drop(tx);
            let _ = thread.join();
        }
        r
    }

    fn chunk(&mut self, c: &[u8]) -> Result<(), Failed> {
        let len = c.len() as u64;
        if !self.diverged {
            let old_end = self.old_ends.last().copied().unwrap_or(0);
            let same = self.pos + len <= old_end && {
                self.scratch.resize(c.len(), 0);
                self.file.read_exact_at(&mut self.scratch, self.pos).is_ok() && self.scratch == c
            };
            if !same {
                // From here on the file is written: what follows is cut.
                self.file
                    .set_len(self.pos)
                    .map_err(|e| ("truncate the partial file of", e))?;
                self.diverged = true;
                self.start_journal();
            }
        }
        if self.diverged {
            self.file
                .write_all_at(c, self.pos)
                .map_err(|e| ("write", e))?;
        }
        if let Some(h) = &mut self.own_hash {
            h.update(c);
        }
        self.pos += len;
        let close = if self.diverged {
            self.pos - self.part_start >= CHECKPOINT
        } else {
            self.old_ends.get(self.done.len()) == Some(&self.pos)
        };
        if close {
            self.close_part();
        }
        Ok(())
    }

    /// The SHA-256 of the first `pos` bytes. `None` only when the
    /// producer's digest is gone and the file cannot be read back: that
    /// checkpoint then never checks, and a rerun resumes before it.
    fn prefix_digest(&mut self) -> Option<[u8; 32]> {
        if let Some(h) = &self.own_hash {
            return Some(h.clone().finalize().into());
        }
        if let Some(d) = self.digests.as_ref().and_then(|d| d.take(self.pos)) {
            return Some(d);
        }
        // The producer ran too far ahead of this writer: hash what the file
        // holds, once, and every byte after it as it comes.
        tracing::warn!(
            at = self.pos,
            "the stored bytes' digest is no longer published at this checkpoint; hashing the partial file instead"
        );
        let mut h = Sha256::new();
        match hash_range(&self.file, &mut h, &mut vec![0u8; 1 << 20], 0, self.pos) {
            Ok(()) => {
                let d = h.clone().finalize().into();
                self.own_hash = Some(h);
                Some(d)
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the partial file back: this checkpoint will not resume");
                None
            }
        }
    }

    fn close_part(&mut self) {
        let sha256 = self.prefix_digest().map(b64).unwrap_or_default();
        let part = Part {
            part: i32::try_from(self.done.len() + 1).unwrap_or(i32::MAX),
            size: self.pos - self.part_start,
            sha256,
            etag: String::new(),
        };
        // A part closed while still comparing is the earlier attempt's,
        // already journalled.
        if self.diverged
            && let Some((tx, _)) = &self.checkpoints
            && tx.send(part.clone()).is_err()
        {
            self.checkpoints = None;
        }
        self.done.push(part);
        self.part_start = self.pos;
    }

    /// A journal naming this file and the parts completed so far, and the
    /// thread that records each new part after an fdatasync. Without a
    /// journal the put goes on, but cannot be resumed.
    fn start_journal(&mut self) {
        let started = journal::Writer::create(&self.journal, &self.header).and_then(|mut w| {
            for p in &self.done {
                w.record(p)?;
            }
            Ok(w)
        });
        match started {
            Ok(w) => {
                let (tx, rx) = std::sync::mpsc::sync_channel(4);
                let file = self.file.clone();
                let thread = std::thread::spawn(move || record_checkpoints(&file, w, &rx));
                self.checkpoints = Some((tx, thread));
            }
            Err(e) => {
                tracing::warn!(path = %self.journal.display(), error = %e, "cannot write the journal of a resumable put: this acquisition goes on, but cannot be resumed");
            }
        }
    }

    fn finish(&mut self) -> Result<u64, Failed> {
        if !self.diverged {
            // Everything matched: whatever an earlier attempt wrote past
            // it is not part of the object.
            self.file
                .set_len(self.pos)
                .map_err(|e| ("truncate the partial file of", e))?;
        }
        self.file.sync_all().map_err(|e| ("fsync", e))?;
        Ok(self.pos)
    }
}

fn record_checkpoints(file: &File, mut journal: journal::Writer, rx: &Receiver<Part>) {
    for part in rx {
        if let Err(e) = file.sync_data().and_then(|()| journal.record(&part)) {
            tracing::warn!(error = %e, "cannot record a checkpoint of a resumable put: it resumes from the last one recorded");
            return;
        }
    }
}
