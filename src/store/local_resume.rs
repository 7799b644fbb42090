//! Resumable puts of the local store.
//!
//! A put whose source can take back what it stored (an EBS image: see
//! [`super::PutMeta::keep_partial`]) keeps its partial file when the source
//! fails, the put is dropped (Ctrl-C) or the process is killed. Its journal
//! is the one uploads in parts keep ([`super::journal`]): the header names
//! the partial file, and each part is a checkpoint of it, recorded only
//! after an fdatasync that covers it, so a part never names bytes that are
//! not on disk. The fdatasyncs run beside the writes, not between them.
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
use super::local::{LocalStore, PARTIAL_PREFIX, fsync_dir};
use super::{
    EvidenceStore as _, EvidenceStream, ObjectKey, StoreError, StoredObject, StoredPrefix,
};

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

fn b64(d: impl AsRef<[u8]>) -> String {
    base64::engine::general_purpose::STANDARD.encode(d)
}

/// What an interrupted put of a key left: its partial file and the
/// journal's parts from the first, without gaps.
struct Left {
    path: PathBuf,
    parts: Vec<Part>,
}

fn dir_of(store: &LocalStore, key: &ObjectKey) -> PathBuf {
    store
        .path(key)
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| store.root().to_path_buf())
}

fn left(store: &LocalStore, key: &ObjectKey, spec: &ResumeSpec) -> io::Result<Option<Left>> {
    let Some(j) = journal::read(&spec.path)? else {
        return Ok(None);
    };
    let h = &j.header;
    // The journal names a partial file of this key, in this store, made
    // with these settings; anything else is not this put's.
    if h.location != store.location()
        || h.key != key.as_str()
        || h.settings != spec.settings
        || !h.upload_id.starts_with(PARTIAL_PREFIX)
        || h.upload_id.contains('/')
    {
        return Ok(None);
    }
    let path = dir_of(store, key).join(&h.upload_id);
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

/// Bytes from the file's start whose parts hash as journalled.
fn checked(file: &File, parts: &[Part]) -> u64 {
    let mut at = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    for p in parts {
        let mut h = Sha256::new();
        let mut pos = at;
        let end = at.saturating_add(p.size);
        while pos < end {
            let n = usize::try_from((end - pos).min(buf.len() as u64)).unwrap_or(0);
            let Some(b) = buf.get_mut(..n) else { return at };
            if file.read_exact_at(b, pos).is_err() {
                return at;
            }
            h.update(&*b);
            pos += n as u64;
        }
        if b64(h.finalize()) != p.sha256 {
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
    store: &LocalStore,
    key: &ObjectKey,
    spec: &ResumeSpec,
) -> Result<Option<StoredPrefix>, StoreError> {
    let (s, k, sp) = (store.clone(), key.clone(), spec.clone());
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
    store: &LocalStore,
    key: &ObjectKey,
    mut body: EvidenceStream,
    spec: &ResumeSpec,
) -> Result<StoredObject, StoreError> {
    let final_path = store.path(key);
    let dir = dir_of(store, key);
    if tokio::fs::try_exists(&final_path).await.unwrap_or(false) {
        return Err(StoreError::AlreadyExists {
            key: key.clone(),
            location: store.location(),
        });
    }
    crate::private_fs::create_dir_all(&dir)
        .map_err(|e| store.err("create the directory for", key, e))?;
    let (s, k, sp) = (store.clone(), key.clone(), spec.clone());
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
            Err(e) => return Err(store.err("reopen the partial file of", key, e)),
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
                .map_err(|e| store.err("create a temporary file for", key, e))?;
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
            store.location(),
            key.to_string(),
            upload_id,
            spec.settings.clone(),
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
        part_hash: Sha256::new(),
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
        .map_err(|e| store.err("write", key, io::Error::other(e.to_string())))?;
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
            return Err(store.err(op, key, e));
        }
    };
    match tokio::fs::hard_link(&path, &final_path).await {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            return Err(StoreError::AlreadyExists {
                key: key.clone(),
                location: store.location(),
            });
        }
        Err(e) => return Err(store.err("commit", key, e)),
    }
    tokio::fs::remove_file(&path)
        .await
        .map_err(|e| store.err("clean up after", key, e))?;
    if let Err(e) = journal::remove(&spec.path) {
        tracing::warn!(error = %e, "cannot remove the journal of a finished put");
    }
    fsync_dir(&dir)
        .await
        .map_err(|e| store.err("fsync the directory of", key, e))?;
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
    part_hash: Sha256,
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
        self.part_hash.update(c);
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

    fn close_part(&mut self) {
        let part = Part {
            part: i32::try_from(self.done.len() + 1).unwrap_or(i32::MAX),
            size: self.pos - self.part_start,
            sha256: b64(self.part_hash.finalize_reset()),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{EvidenceStore, PutMeta};

    const MIB: usize = 1 << 20;

    fn data(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    fn meta(dir: &Path) -> PutMeta {
        PutMeta {
            resume: Some(ResumeSpec {
                path: dir.join("uploads/a.jsonl"),
                settings: "zstd 3; frame 1".into(),
            }),
            keep_partial: true,
            ..PutMeta::default()
        }
    }

    /// `bytes` in chunks of one MiB, then `end`.
    fn body(bytes: &[u8], end: Option<io::Error>) -> EvidenceStream {
        let chunks: Vec<io::Result<Bytes>> = bytes
            .chunks(MIB)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .chain(end.map(Err))
            .collect();
        Box::pin(futures::stream::iter(chunks))
    }

    fn partials(root: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                if e.path().is_dir() {
                    stack.push(e.path());
                } else if e.file_name().to_string_lossy().starts_with(PARTIAL_PREFIX) {
                    out.push(e.path());
                }
            }
        }
        out
    }

    async fn prefix_bytes(store: &LocalStore, key: &ObjectKey, m: &PutMeta) -> Vec<u8> {
        let spec = m.resume.as_ref().expect("spec");
        let Some(p) = store.resumed_prefix(key, spec).await.expect("prefix") else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let mut r = p.reader;
        r.read_to_end(&mut out).expect("read");
        assert_eq!(out.len() as u64, p.len);
        out
    }

    #[tokio::test]
    async fn a_failed_source_keeps_its_checkpoints_and_the_rerun_compares_them() {
        let home = tempfile::tempdir().expect("tmp");
        let root = tempfile::tempdir().expect("tmp");
        let store = LocalStore::new(root.path());
        let key = ObjectKey::new("cases/c/artefacts/a.zst").expect("key");
        let m = meta(home.path());
        let all = data(40 * MIB, 7);
        // The source fails after 36 MiB: two 16 MiB checkpoints are journalled.
        let err = store
            .put_with(
                &key,
                body(&all[..36 * MIB], Some(io::Error::other("cut"))),
                &m,
            )
            .await
            .expect_err("the source failed");
        assert!(matches!(err, StoreError::SourceFailed { .. }), "{err}");
        assert_eq!(partials(root.path()).len(), 1, "the partial file is kept");
        assert!(
            store.list("").await.expect("list").is_empty(),
            "nothing under the key"
        );
        let back = prefix_bytes(&store, &key, &m).await;
        assert_eq!(back.len(), 32 * MIB);
        assert!(back == all[..32 * MIB], "the prefix is what was stored");
        use std::os::unix::fs::MetadataExt as _;
        let partial = partials(root.path()).remove(0);
        let inode = std::fs::metadata(&partial).expect("meta").ino();

        // The rerun produces the same bytes: the checkpoints are compared,
        // not written, and the rest is appended to the same file.
        let stored = store
            .put_with(&key, body(&all, None), &m)
            .await
            .expect("put");
        assert_eq!(stored.size, all.len() as u64);
        assert!(store.get_bytes(&key).await.expect("get") == all);
        assert!(
            partials(root.path()).is_empty(),
            "the partial file is committed"
        );
        assert!(
            !home.path().join("uploads/a.jsonl").exists(),
            "the journal is removed"
        );
        assert_eq!(
            std::fs::metadata(store.path(&key)).expect("meta").ino(),
            inode,
            "the object is the interrupted put's file, completed"
        );
    }

    #[tokio::test]
    async fn a_tampered_checkpoint_is_not_given_back_and_is_written_again() {
        let home = tempfile::tempdir().expect("tmp");
        let root = tempfile::tempdir().expect("tmp");
        let store = LocalStore::new(root.path());
        let key = ObjectKey::new("cases/c/artefacts/b.zst").expect("key");
        let m = meta(home.path());
        let all = data(40 * MIB, 9);
        let _ = store
            .put_with(
                &key,
                body(&all[..36 * MIB], Some(io::Error::other("cut"))),
                &m,
            )
            .await
            .expect_err("the source failed");
        let partial = partials(root.path()).remove(0);
        // Someone changes a byte of the second checkpoint.
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&partial)
            .expect("open");
        f.write_all_at(b"X", (20 * MIB) as u64).expect("tamper");
        drop(f);
        let back = prefix_bytes(&store, &key, &m).await;
        assert_eq!(
            back.len(),
            16 * MIB,
            "only the first checkpoint still hashes as journalled"
        );
        // The rerun differs from the file at the tampered byte's chunk: from
        // there the file is cut and written.
        store
            .put_with(&key, body(&all, None), &m)
            .await
            .expect("put");
        assert!(store.get_bytes(&key).await.expect("get") == all);
        assert!(partials(root.path()).is_empty());
    }

    #[tokio::test]
    async fn a_stalled_body_gets_a_checkpoint_of_what_it_sent() {
        let home = tempfile::tempdir().expect("tmp");
        let root = tempfile::tempdir().expect("tmp");
        let store = LocalStore::new(root.path());
        let key = ObjectKey::new("cases/c/artefacts/s.zst").expect("key");
        let m = meta(home.path());
        let sent = data(3 * MIB, 11);
        let stalled = body(&sent, None).chain(futures::stream::pending());
        let put = store.put_with(&key, Box::pin(stalled), &m);
        // The process is stopped while the source hangs (the put is dropped).
        let r = tokio::time::timeout(std::time::Duration::from_millis(1500), put).await;
        assert!(r.is_err(), "the put must still be waiting");
        // The writer records its checkpoint as it winds down.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let mut back = Vec::new();
        while back.len() < sent.len() && std::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            back = prefix_bytes(&store, &key, &m).await;
        }
        assert!(
            back == sent,
            "{} of {} bytes checkpointed",
            back.len(),
            sent.len()
        );
    }

    #[tokio::test]
    async fn a_journal_for_other_settings_or_another_key_is_not_resumed() {
        let home = tempfile::tempdir().expect("tmp");
        let root = tempfile::tempdir().expect("tmp");
        let store = LocalStore::new(root.path());
        let key = ObjectKey::new("cases/c/artefacts/o.zst").expect("key");
        let m = meta(home.path());
        let all = data(20 * MIB, 13);
        let _ = store
            .put_with(&key, body(&all, Some(io::Error::other("cut"))), &m)
            .await
            .expect_err("the source failed");
        assert_eq!(prefix_bytes(&store, &key, &m).await.len(), 16 * MIB);
        let other = ObjectKey::new("cases/c/artefacts/p.zst").expect("key");
        assert!(prefix_bytes(&store, &other, &m).await.is_empty());
        let mut level = meta(home.path());
        if let Some(r) = level.resume.as_mut() {
            r.settings = "zstd 19; frame 1".into();
        }
        assert!(prefix_bytes(&store, &key, &level).await.is_empty());
        // A put with other settings starts afresh and still commits.
        store
            .put_with(&key, body(&all, None), &level)
            .await
            .expect("put");
        assert!(store.get_bytes(&key).await.expect("get") == all);
    }

    #[tokio::test]
    async fn a_full_store_disk_gives_the_space_back() {
        let home = tempfile::tempdir().expect("tmp");
        let root = tempfile::tempdir().expect("tmp");
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=4m", "tmpfs"])
            .arg(root.path())
            .status()
            .is_ok_and(|s| s.success());
        if !mounted {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "this test needs root to mount a 4 MiB tmpfs"
            );
            eprintln!("NOT RUN: cannot mount a tmpfs (needs root)");
            return;
        }
        struct Unmount(PathBuf);
        impl Drop for Unmount {
            fn drop(&mut self) {
                let _ = std::process::Command::new("umount").arg(&self.0).status();
            }
        }
        let _guard = Unmount(root.path().to_path_buf());
        let store = LocalStore::new(root.path());
        let key = ObjectKey::new("cases/c/artefacts/f.zst").expect("key");
        let m = meta(home.path());
        let err = store
            .put_with(&key, body(&data(8 * MIB, 17), None), &m)
            .await
            .expect_err("the disk is full");
        assert!(err.to_string().contains("write"), "{err}");
        let chain = crate::error_chain(&err);
        assert!(chain.contains("No space left on device"), "{chain}");
        assert!(
            partials(root.path()).is_empty(),
            "the partial file is removed"
        );
        assert!(
            !home.path().join("uploads/a.jsonl").exists(),
            "and its journal"
        );
    }
}
