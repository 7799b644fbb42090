//! The local evidence store: a directory. The embedded default.
//!
//! A put writes to a hidden temporary name in the target directory, fsyncs
//! it, links it to its final name (which fails if that name exists, so
//! nothing is ever overwritten), removes the temporary name and fsyncs the
//! directory. A put that fails or is dropped removes its temporary file.

use std::io;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use tokio::io::AsyncWriteExt;

use super::local_resume::{Files, PARTIAL_PREFIX};
use super::{EvidenceReader, EvidenceStore, EvidenceStream, ObjectKey, StoreError, StoredObject};

#[derive(Debug, Clone)]
pub struct LocalStore {
    root: PathBuf,
}

impl LocalStore {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, key: &ObjectKey) -> PathBuf {
        self.root.join(key.as_str())
    }

    /// The store's directory as its partial files see it.
    fn files(&self) -> Files {
        Files {
            root: self.root.clone(),
            location: self.location(),
        }
    }

    fn err(&self, op: &'static str, key: &ObjectKey, source: io::Error) -> StoreError {
        self.files().err(op, key, source)
    }
}

/// Removes a temporary file unless disarmed: covers errors and dropped futures alike.
struct TempGuard(Option<PathBuf>);

impl Drop for TempGuard {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

#[async_trait]
impl EvidenceStore for LocalStore {
    fn location(&self) -> String {
        url::Url::from_file_path(&self.root)
            .map(|u| u.to_string())
            .unwrap_or_else(|()| self.root.display().to_string())
    }

    async fn put(
        &self,
        key: &ObjectKey,
        mut body: EvidenceStream,
    ) -> Result<StoredObject, StoreError> {
        let final_path = self.path(key);
        let dir = final_path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| self.root.clone());
        if tokio::fs::try_exists(&final_path).await.unwrap_or(false) {
            return Err(StoreError::AlreadyExists {
                key: key.clone(),
                location: self.location(),
            });
        }
        crate::private_fs::create_dir_all(&dir)
            .map_err(|e| self.err("create the directory for", key, e))?;
        let name = final_path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = dir.join(format!(
            "{PARTIAL_PREFIX}{name}.{}",
            uuid::Uuid::new_v4().simple()
        ));
        let mut guard = TempGuard(Some(tmp.clone()));
        let mut file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .await
            .map_err(|e| self.err("create a temporary file for", key, e))?;
        let mut size = 0u64;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|source| StoreError::SourceFailed {
                key: key.clone(),
                source,
            })?;
            file.write_all(&chunk)
                .await
                .map_err(|e| self.err("write", key, e))?;
            size += chunk.len() as u64;
        }
        file.flush().await.map_err(|e| self.err("write", key, e))?;
        file.sync_all()
            .await
            .map_err(|e| self.err("fsync", key, e))?;
        drop(file);
        let files = self.files();
        files.link(key, &tmp, &final_path).await?;
        drop(guard.0.take());
        files.unlink_partial(key, &tmp, &dir).await?;
        Ok(StoredObject {
            key: key.clone(),
            size,
            version_id: None,
            etag: None,
        })
    }

    async fn put_with(
        &self,
        key: &ObjectKey,
        body: EvidenceStream,
        meta: &super::PutMeta,
    ) -> Result<StoredObject, StoreError> {
        match &meta.resume {
            Some(spec) if meta.keep_partial => {
                super::local_resume::put(
                    &self.files(),
                    key,
                    body,
                    spec,
                    meta.stored_digests.clone(),
                )
                .await
            }
            _ => self.put(key, body).await,
        }
    }

    async fn resumed_prefix(
        &self,
        key: &ObjectKey,
        resume: &super::journal::ResumeSpec,
    ) -> Result<Option<super::StoredPrefix>, StoreError> {
        super::local_resume::prefix(&self.files(), key, resume).await
    }

    async fn get(&self, key: &ObjectKey) -> Result<EvidenceReader, StoreError> {
        let f = tokio::fs::File::open(self.path(key))
            .await
            .map_err(|e| self.err("open", key, e))?;
        Ok(Box::pin(f))
    }

    async fn get_range(&self, key: &ObjectKey, offset: u64, len: u64) -> Result<Bytes, StoreError> {
        self.get_range_into(key, offset, len, Vec::new())
            .await
            .map(Bytes::from)
    }

    async fn get_range_into(
        &self,
        key: &ObjectKey,
        offset: u64,
        len: u64,
        buf: Vec<u8>,
    ) -> Result<Vec<u8>, StoreError> {
        // One blocking read straight into the buffer: a disk image read in
        // place asks for thousands of ranges, and tokio's file reads hop
        // threads and copy through a buffer of their own for each.
        let path = self.path(key);
        let read = tokio::task::spawn_blocking(move || {
            use std::io::{Read, Seek};
            let mut buf = buf;
            buf.clear();
            let mut f = std::fs::File::open(&path).map_err(|e| ("open", e))?;
            f.seek(io::SeekFrom::Start(offset))
                .map_err(|e| ("seek in", e))?;
            buf.reserve(usize::try_from(len.min(64 << 20)).unwrap_or(0));
            f.take(len).read_to_end(&mut buf).map_err(|e| ("read", e))?;
            Ok::<_, (&'static str, io::Error)>(buf)
        })
        .await
        .map_err(|e| self.err("read", key, io::Error::other(e.to_string())))?;
        read.map_err(|(op, e)| self.err(op, key, e))
    }

    async fn size(&self, key: &ObjectKey) -> Result<u64, StoreError> {
        let m = tokio::fs::metadata(self.path(key))
            .await
            .map_err(|e| self.err("open", key, e))?;
        Ok(m.len())
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectKey>, StoreError> {
        let root = self.root.clone();
        let prefix = prefix.to_owned();
        let location = self.location();
        let keys = tokio::task::spawn_blocking(move || walk(&root, &prefix))
            .await
            .map_err(|e| io::Error::other(e.to_string()))
            .and_then(|r| r)
            .map_err(|source| StoreError::Io {
                op: "list",
                key: String::new(),
                location,
                source,
            })?;
        Ok(keys)
    }
}

/// Keys under `prefix`, walking only the directories that can hold them.
fn walk(root: &Path, prefix: &str) -> io::Result<Vec<ObjectKey>> {
    let start_rel = prefix.rsplit_once('/').map_or("", |(dir, _)| dir);
    let mut out = Vec::new();
    let mut stack = vec![root.join(start_rel)];
    while let Some(dir) = stack.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with(PARTIAL_PREFIX) {
                continue;
            }
            let path = entry.path();
            if entry.file_type()?.is_dir() {
                stack.push(path);
            } else if let Ok(rel) = path.strip_prefix(root) {
                let rel = rel
                    .to_string_lossy()
                    .replace(std::path::MAIN_SEPARATOR, "/");
                if rel.starts_with(prefix)
                    && let Ok(k) = ObjectKey::new(rel)
                {
                    out.push(k);
                }
            }
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> ObjectKey {
        ObjectKey::new(s).expect("key")
    }

    #[tokio::test]
    async fn put_get_list_and_no_overwrite() {
        let dir = tempfile::tempdir().expect("tmp");
        let store = LocalStore::new(dir.path());
        let k = key("cases/c1/artefacts/a.zst");
        let o = store
            .put_bytes(&k, Bytes::from_static(b"hello"))
            .await
            .expect("put");
        assert_eq!(o.size, 5);
        assert_eq!(store.get_bytes(&k).await.expect("get"), b"hello");
        assert_eq!(&store.get_range(&k, 1, 3).await.expect("range")[..], b"ell");
        assert_eq!(&store.get_range(&k, 3, 99).await.expect("range")[..], b"lo");
        // A reused buffer comes back holding only the range, in the same
        // memory when it had room.
        let buf = Vec::from(*b"left over from before");
        let before = buf.as_ptr();
        let got = store.get_range_into(&k, 1, 3, buf).await.expect("range");
        assert_eq!((got.as_slice(), got.as_ptr()), (&b"ell"[..], before));
        let got = store.get_range_into(&k, 3, 99, got).await.expect("range");
        assert_eq!(got, b"lo");
        let err = store
            .put_bytes(&k, Bytes::from_static(b"other"))
            .await
            .expect_err("overwrite");
        assert!(matches!(err, StoreError::AlreadyExists { .. }), "{err}");
        assert_eq!(store.get_bytes(&k).await.expect("get"), b"hello");
        store
            .put_bytes(&key("cases/c2/x"), Bytes::new())
            .await
            .expect("put");
        let all = store.list("cases/").await.expect("list");
        assert_eq!(
            all,
            vec![key("cases/c1/artefacts/a.zst"), key("cases/c2/x")]
        );
        assert_eq!(store.list("cases/c1/").await.expect("list").len(), 1);
        assert!(store.list("nothing/").await.expect("list").is_empty());
        let missing = store.get(&key("cases/none")).await.err().expect("missing");
        assert!(matches!(missing, StoreError::NotFound { .. }));
    }

    #[tokio::test]
    async fn a_failed_body_leaves_nothing() {
        let dir = tempfile::tempdir().expect("tmp");
        let store = LocalStore::new(dir.path());
        let k = key("cases/c1/artefacts/a.zst");
        let body = futures::stream::iter(vec![
            Ok(Bytes::from_static(b"part")),
            Err(io::Error::other("source died")),
        ]);
        let err = store.put(&k, Box::pin(body)).await.expect_err("must fail");
        assert!(matches!(err, StoreError::SourceFailed { .. }), "{err}");
        assert!(store.list("").await.expect("list").is_empty());
        let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("cases/c1/artefacts"))
            .expect("dir")
            .collect();
        assert!(
            leftovers.is_empty(),
            "temporary file left behind: {leftovers:?}"
        );
    }

    #[tokio::test]
    async fn a_dropped_put_leaves_nothing() {
        let dir = tempfile::tempdir().expect("tmp");
        let store = LocalStore::new(dir.path());
        let k = key("cases/c1/a");
        // A body that yields once, then never ends: the put is cancelled mid-way.
        let body = futures::stream::once(async { Ok(Bytes::from_static(b"part")) })
            .chain(futures::stream::pending());
        let put = store.put(&k, Box::pin(body));
        let r = tokio::time::timeout(std::time::Duration::from_millis(200), put).await;
        assert!(r.is_err(), "put must still be running");
        let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("cases/c1"))
            .expect("dir")
            .collect();
        assert!(
            leftovers.is_empty(),
            "temporary file left behind: {leftovers:?}"
        );
    }
}

#[cfg(test)]
mod resume_tests {
    use std::io::Read as _;
    use std::os::unix::fs::FileExt as _;
    use std::sync::Arc;

    use super::*;
    use crate::store::journal::ResumeSpec;
    use crate::store::{PrefixDigests, PutMeta};

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

    /// A store, a key and a resume journal in temporary directories.
    struct Fixture {
        home: tempfile::TempDir,
        root: tempfile::TempDir,
        store: LocalStore,
        key: ObjectKey,
        m: PutMeta,
    }

    impl Fixture {
        fn new(name: &str) -> Self {
            let home = tempfile::tempdir().expect("tmp");
            let root = tempfile::tempdir().expect("tmp");
            let store = LocalStore::new(root.path());
            let key = ObjectKey::new(format!("cases/c/artefacts/{name}.zst")).expect("key");
            let m = meta(home.path());
            Self {
                home,
                root,
                store,
                key,
                m,
            }
        }

        /// A put whose source fails after `bytes`.
        async fn cut(&self, bytes: &[u8]) -> StoreError {
            self.store
                .put_with(
                    &self.key,
                    body(bytes, Some(io::Error::other("cut"))),
                    &self.m,
                )
                .await
                .expect_err("the source failed")
        }
    }

    #[tokio::test]
    async fn a_failed_source_keeps_its_checkpoints_and_the_rerun_compares_them() {
        let f = Fixture::new("a");
        let all = data(40 * MIB, 7);
        // The source fails after 36 MiB: two 16 MiB checkpoints are journalled.
        let err = f.cut(&all[..36 * MIB]).await;
        let Fixture {
            home,
            root,
            store,
            key,
            m,
        } = &f;
        assert!(matches!(err, StoreError::SourceFailed { .. }), "{err}");
        assert_eq!(partials(root.path()).len(), 1, "the partial file is kept");
        assert!(
            store.list("").await.expect("list").is_empty(),
            "nothing under the key"
        );
        let back = prefix_bytes(store, key, m).await;
        assert_eq!(back.len(), 32 * MIB);
        assert!(back == all[..32 * MIB], "the prefix is what was stored");
        use std::os::unix::fs::MetadataExt as _;
        let partial = partials(root.path()).remove(0);
        let inode = std::fs::metadata(&partial).expect("meta").ino();

        // The rerun produces the same bytes: the checkpoints are compared,
        // not written, and the rest is appended to the same file.
        let stored = store.put_with(key, body(&all, None), m).await.expect("put");
        assert_eq!(stored.size, all.len() as u64);
        assert!(store.get_bytes(key).await.expect("get") == all);
        assert!(
            partials(root.path()).is_empty(),
            "the partial file is committed"
        );
        assert!(
            !home.path().join("uploads/a.jsonl").exists(),
            "the journal is removed"
        );
        assert_eq!(
            std::fs::metadata(store.path(key)).expect("meta").ino(),
            inode,
            "the object is the interrupted put's file, completed"
        );
    }

    /// `bytes` in chunks of one MiB, each preceded by the SHA-256 of the
    /// prefix it ends, published as the pipeline publishes it; then `end`.
    fn publishing(
        bytes: &[u8],
        end: Option<io::Error>,
        digests: Arc<PrefixDigests>,
    ) -> EvidenceStream {
        use sha2::Digest as _;
        let mut h = sha2::Sha256::new();
        let mut at = 0u64;
        let chunks: Vec<Bytes> = bytes.chunks(MIB).map(Bytes::copy_from_slice).collect();
        let s = futures::stream::iter(chunks)
            .map(move |c| {
                h.update(&c);
                at += c.len() as u64;
                digests.publish(at, h.clone().finalize().into());
                Ok(c)
            })
            .chain(futures::stream::iter(end.map(Err)));
        Box::pin(s)
    }

    #[tokio::test]
    async fn checkpoints_hold_prefix_digests_from_the_producer_or_from_the_file() {
        use base64::Engine as _;
        use sha2::Digest as _;
        let all = data(40 * MIB, 17);
        let prefix = |n: usize| {
            base64::engine::general_purpose::STANDARD
                .encode(sha2::Sha256::digest(all.get(..n * MIB).expect("in range")))
        };
        // Published: taken as they are. Not published (a producer far
        // ahead of the writer): the writer hashes the file back, once.
        for publish in [true, false] {
            let f = Fixture::new(if publish { "pub" } else { "nopub" });
            let digests = Arc::new(PrefixDigests::default());
            let mut m = f.m.clone();
            m.stored_digests = Some(digests.clone());
            let cut = Some(io::Error::other("cut"));
            let sent = all.get(..36 * MIB).expect("in range");
            let b = if publish {
                publishing(sent, cut, digests)
            } else {
                body(sent, cut)
            };
            f.store
                .put_with(&f.key, b, &m)
                .await
                .expect_err("the source failed");
            let journal = crate::store::journal::read(&f.home.path().join("uploads/a.jsonl"))
                .expect("read")
                .expect("a journal");
            let parts: Vec<_> = journal
                .parts
                .values()
                .map(|p| (p.size, p.sha256.clone()))
                .collect();
            assert_eq!(
                parts,
                [(16 * MIB as u64, prefix(16)), (16 * MIB as u64, prefix(32))],
                "published: {publish}"
            );
            assert_eq!(prefix_bytes(&f.store, &f.key, &m).await.len(), 32 * MIB);
            let again = Arc::new(PrefixDigests::default());
            m.stored_digests = Some(again.clone());
            f.store
                .put_with(&f.key, publishing(&all, None, again), &m)
                .await
                .expect("put");
            assert!(f.store.get_bytes(&f.key).await.expect("get") == all);
        }
    }

    #[test]
    fn prefix_digests_keep_the_newest_and_drop_what_was_passed() {
        let d = PrefixDigests::default();
        for end in 1..=100u64 {
            d.publish(end * 10, [end as u8; 32]);
        }
        assert_eq!(d.take(30), None, "only the newest 64 are kept");
        assert_eq!(d.take(370), Some([37; 32]));
        assert_eq!(d.take(365), None, "a passed end is gone");
        assert_eq!(d.take(1000), Some([100; 32]));
        assert_eq!(d.take(1001), None);
    }

    #[tokio::test]
    async fn a_tampered_checkpoint_is_not_given_back_and_is_written_again() {
        let f = Fixture::new("b");
        let all = data(40 * MIB, 9);
        f.cut(&all[..36 * MIB]).await;
        let Fixture {
            root,
            store,
            key,
            m,
            ..
        } = &f;
        let partial = partials(root.path()).remove(0);
        // Someone changes a byte of the second checkpoint.
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&partial)
            .expect("open");
        f.write_all_at(b"X", (20 * MIB) as u64).expect("tamper");
        drop(f);
        let back = prefix_bytes(store, key, m).await;
        assert_eq!(
            back.len(),
            16 * MIB,
            "only the first checkpoint still hashes as journalled"
        );
        // The rerun differs from the file at the tampered byte's chunk: from
        // there the file is cut and written.
        store.put_with(key, body(&all, None), m).await.expect("put");
        assert!(store.get_bytes(key).await.expect("get") == all);
        assert!(partials(root.path()).is_empty());
    }

    #[tokio::test]
    async fn a_stalled_body_gets_a_checkpoint_of_what_it_sent() {
        let Fixture { store, key, m, .. } = &Fixture::new("s");
        let sent = data(3 * MIB, 11);
        let stalled = body(&sent, None).chain(futures::stream::pending());
        let put = store.put_with(key, Box::pin(stalled), m);
        // The process is stopped while the source hangs (the put is dropped).
        let r = tokio::time::timeout(std::time::Duration::from_millis(1500), put).await;
        assert!(r.is_err(), "the put must still be waiting");
        // The writer records its checkpoint as it winds down.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let mut back = Vec::new();
        while back.len() < sent.len() && std::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            back = prefix_bytes(store, key, m).await;
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
        let f = Fixture::new("o");
        let all = data(20 * MIB, 13);
        f.cut(&all).await;
        let Fixture {
            home,
            store,
            key,
            m,
            ..
        } = &f;
        assert_eq!(prefix_bytes(store, key, m).await.len(), 16 * MIB);
        let other = ObjectKey::new("cases/c/artefacts/p.zst").expect("key");
        assert!(prefix_bytes(store, &other, m).await.is_empty());
        let mut level = meta(home.path());
        if let Some(r) = level.resume.as_mut() {
            r.settings = "zstd 19; frame 1".into();
        }
        assert!(prefix_bytes(store, key, &level).await.is_empty());
        // A put with other settings starts afresh and still commits.
        store
            .put_with(key, body(&all, None), &level)
            .await
            .expect("put");
        assert!(store.get_bytes(key).await.expect("get") == all);
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
