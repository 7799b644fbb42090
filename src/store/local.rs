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

use super::{EvidenceReader, EvidenceStore, EvidenceStream, ObjectKey, StoreError, StoredObject};

/// Prefix of in-progress files; `list` never shows them.
pub(super) const PARTIAL_PREFIX: &str = ".partial-";

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

    pub(super) fn path(&self, key: &ObjectKey) -> PathBuf {
        self.root.join(key.as_str())
    }

    pub(super) fn err(&self, op: &'static str, key: &ObjectKey, source: io::Error) -> StoreError {
        if source.kind() == io::ErrorKind::NotFound && op == "open" {
            return StoreError::NotFound {
                key: key.clone(),
                location: self.location(),
            };
        }
        StoreError::Io {
            op,
            key: key.to_string(),
            location: self.location(),
            source,
        }
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

pub(super) async fn fsync_dir(dir: &Path) -> io::Result<()> {
    tokio::fs::File::open(dir).await?.sync_all().await
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
        // link(2) refuses an existing target: the no-overwrite rule holds even
        // against a concurrent writer of the same key.
        match tokio::fs::hard_link(&tmp, &final_path).await {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(StoreError::AlreadyExists {
                    key: key.clone(),
                    location: self.location(),
                });
            }
            Err(e) => return Err(self.err("commit", key, e)),
        }
        drop(guard.0.take());
        tokio::fs::remove_file(&tmp)
            .await
            .map_err(|e| self.err("clean up after", key, e))?;
        fsync_dir(&dir)
            .await
            .map_err(|e| self.err("fsync the directory of", key, e))?;
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
                super::local_resume::put(self, key, body, spec).await
            }
            _ => self.put(key, body).await,
        }
    }

    async fn resumed_prefix(
        &self,
        key: &ObjectKey,
        resume: &super::journal::ResumeSpec,
    ) -> Result<Option<super::StoredPrefix>, StoreError> {
        super::local_resume::prefix(self, key, resume).await
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
