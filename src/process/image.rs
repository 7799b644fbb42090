//! A stored artefact read in place as a disk image: [`StoredImage`]
//! implements [`ReadAt`] through the artefact's seek table, from whichever
//! store holds it (local, S3 ranged GETs, Azure ranged reads), decompressing
//! only the frames a read touches and keeping at most [`CACHED_FRAMES`] of
//! them, so memory is bounded whatever the image's size and nothing is
//! decompressed to a temporary copy.

use std::collections::VecDeque;
use std::io;
use std::sync::{Arc, Mutex};

pub use custody_disk::image::{FileImage, ReadAt, Window};

use crate::evidence::seekable::{ReadError, read_frame_into, seek_table};
use crate::store::{EvidenceStore, ObjectKey};

/// Decoded frames kept at once: 16 frames of custody's default 2 MiB is
/// 32 MiB, enough for a file system's metadata to stay warm.
pub const CACHED_FRAMES: usize = 16;

/// A stored artefact's raw bytes, read in place.
pub struct StoredImage {
    store: Arc<dyn EvidenceStore>,
    key: ObjectKey,
    table: zeekstd::SeekTable,
    runtime: tokio::runtime::Handle,
    /// Most recently used last.
    cache: Mutex<VecDeque<(u32, Arc<Vec<u8>>)>>,
}

impl std::fmt::Debug for StoredImage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredImage")
            .field("key", &self.key)
            .field("size", &self.table.size_decomp())
            .finish_non_exhaustive()
    }
}

impl StoredImage {
    /// Reads the object's seek table. Reads happen on blocking threads (the
    /// readers are synchronous) and reach the store through `runtime`.
    pub async fn open(store: Arc<dyn EvidenceStore>, key: ObjectKey) -> Result<Self, ReadError> {
        let table = seek_table(store.as_ref(), &key).await?;
        Ok(Self {
            store,
            key,
            table,
            runtime: tokio::runtime::Handle::current(),
            cache: Mutex::new(VecDeque::with_capacity(CACHED_FRAMES)),
        })
    }

    fn frame(&self, i: u32) -> io::Result<Arc<Vec<u8>>> {
        {
            let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(pos) = cache.iter().position(|(n, _)| *n == i)
                && let Some(hit) = cache.remove(pos)
            {
                let frame = hit.1.clone();
                cache.push_back(hit);
                return Ok(frame);
            }
        }
        // The least recently used frame's memory is decoded into, when no
        // reader holds it any more.
        let spare = {
            let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            if cache.len() >= CACHED_FRAMES {
                cache.pop_front().and_then(|(_, f)| Arc::try_unwrap(f).ok())
            } else {
                None
            }
        };
        let mut buf = spare.unwrap_or_default();
        self.runtime
            .block_on(read_frame_into(
                self.store.as_ref(),
                &self.key,
                &self.table,
                i,
                &mut buf,
            ))
            .map_err(|e| io::Error::other(crate::error_chain(&e)))?;
        let frame = Arc::new(buf);
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= CACHED_FRAMES {
            cache.pop_front();
        }
        cache.push_back((i, frame.clone()));
        Ok(frame)
    }
}

impl ReadAt for StoredImage {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        let size = self.table.size_decomp();
        let mut done = 0usize;
        while done < buf.len() && offset + (done as u64) < size {
            let at = offset + done as u64;
            let i = self.table.frame_index_decomp(at);
            let start = self
                .table
                .frame_start_decomp(i)
                .map_err(|e| io::Error::other(e.to_string()))?;
            let frame = self.frame(i)?;
            let from = usize::try_from(at - start).unwrap_or(usize::MAX);
            let Some(part) = frame.get(from..) else {
                return Err(io::Error::other(format!(
                    "frame {i} of {} does not hold raw byte {at}",
                    self.key
                )));
            };
            let n = part.len().min(buf.len() - done);
            match (buf.get_mut(done..done + n), part.get(..n)) {
                (Some(to), Some(from)) if n > 0 => to.copy_from_slice(from),
                _ => break,
            }
            done += n;
        }
        Ok(done)
    }

    fn size(&self) -> u64 {
        self.table.size_decomp()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;

    use super::*;
    use crate::evidence::pipeline::{self, PipelineOptions};
    use crate::store::local::LocalStore;

    fn data(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 + i / 4096) as u8).collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stored_image_reads_any_range_as_the_raw_bytes_with_a_bounded_cache() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn EvidenceStore> = Arc::new(LocalStore::new(dir.path()));
        let raw = data(300_000);
        let key = ObjectKey::new("cases/p/artefacts/img.zst").unwrap();
        let (stream, running) = pipeline::start(
            Box::new(io::Cursor::new(raw.clone())),
            &PipelineOptions {
                frame_size: 4096,
                level: 1,
                workers: 2,
            },
            crate::progress::none(),
            Arc::new(AtomicBool::new(false)),
        );
        store.put(&key, stream).await.unwrap();
        running.finish().await.unwrap();
        let img = Arc::new(StoredImage::open(store, key).await.unwrap());
        assert_eq!(img.size(), raw.len() as u64);
        let reader = img.clone();
        let raw2 = raw.clone();
        tokio::task::spawn_blocking(move || {
            // Across frame edges, at the end, past the end, and far apart so
            // the cache turns over.
            for (off, len) in [
                (0u64, 10usize),
                (4090, 20),
                (299_990, 100),
                (123_456, 50_000),
                (8192, 4096),
                (300_000, 5),
            ] {
                let mut buf = vec![0u8; len];
                let n = reader.read_at(off, &mut buf).unwrap();
                let end = (off as usize + len).min(raw2.len());
                let want = raw2.get(off as usize..end).unwrap_or_default();
                assert_eq!(&buf[..n], want, "{off}+{len}");
            }
            assert!(
                reader.read_exact_at(299_999, 2).is_err(),
                "a cut read is an error"
            );
            let cached = reader.cache.lock().unwrap().len();
            assert!(cached <= CACHED_FRAMES, "{cached} frames cached");
        })
        .await
        .unwrap();
    }
}
