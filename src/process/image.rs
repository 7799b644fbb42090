//! A stored artefact read in place as a disk image: [`StoredImage`]
//! implements [`ReadAt`] through the artefact's seek table, from whichever
//! store holds it (local, S3 ranged GETs, Azure ranged reads), decompressing
//! only the frames a read touches and keeping at most [`CACHED_FRAMES`] of
//! them, so memory is bounded whatever the image's size and nothing is
//! decompressed to a temporary copy.

use std::collections::VecDeque;
use std::io;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex};

pub use custody_disk::image::{FileImage, ReadAt, Window};

use crate::evidence::seekable::{ReadError, read_frame_into, seek_table};
use crate::store::{EvidenceStore, ObjectKey};

/// Decoded frames kept at once: 32 frames of custody's default 2 MiB is
/// 64 MiB, room for an ext4 volume's inode tables (4 MiB a group, in
/// groups of 16 together) and the directories the walk reads next.
pub const CACHED_FRAMES: usize = 32;

/// Threads that decode frames a reader said it will need
/// ([`ReadAt::will_need`]) while it works on others.
const DECODERS: usize = 2;

/// Hinted frames waiting for a decoder or being decoded at most; more
/// hints are dropped (a hint is only a hint, and stale ones decode what is
/// no longer wanted). Each holds a place in the cache.
const HINTS: usize = 16;

/// A stored artefact's raw bytes, read in place.
pub struct StoredImage {
    shared: Arc<Shared>,
    /// Frames to decode ahead, each with its claimed slot; closing it ends
    /// the decoders.
    hints: Option<Sender<Job>>,
}

/// A hinted frame for a decoder thread, its slot already in the cache so
/// a reader that wants it waits rather than decoding it twice.
struct Job {
    i: u32,
    slot: Arc<Slot>,
    spare: Vec<u8>,
    shared: Arc<Shared>,
}

impl Job {
    fn run(mut self) {
        let spare = std::mem::take(&mut self.spare);
        // An error is left for the reader that needs the frame to meet and
        // report: it decodes a failed frame again.
        let _ = self.shared.decode(self.i, &self.slot, spare);
    }
}

impl Drop for Job {
    /// A job dropped undone (its decoder gone) must not leave readers
    /// waiting: its slot fails, and whoever wants the frame decodes it.
    fn drop(&mut self) {
        let mut state = self.slot.state.lock().unwrap_or_else(|p| p.into_inner());
        if matches!(*state, State::Decoding) {
            *state = State::Failed;
            self.slot.done.notify_all();
        }
        drop(state);
        self.shared.hinted.fetch_sub(1, Ordering::AcqRel);
    }
}

struct Shared {
    store: Arc<dyn EvidenceStore>,
    key: ObjectKey,
    table: zeekstd::SeekTable,
    runtime: tokio::runtime::Handle,
    /// Most recently used last.
    cache: Mutex<VecDeque<(u32, Arc<Slot>)>>,
    /// Hinted frames not decoded yet.
    hinted: AtomicUsize,
    /// Frames decoded and their raw bytes, for the debug log: what reading
    /// in place cost.
    decoded: AtomicUsize,
    decoded_bytes: AtomicU64,
}

/// One frame in the cache: being decoded by one thread while others that
/// want it wait, then ready.
#[derive(Default)]
struct Slot {
    state: Mutex<State>,
    done: Condvar,
}

#[derive(Default)]
enum State {
    #[default]
    Decoding,
    Ready(Arc<Vec<u8>>),
    /// The decoding failed; whoever wants the frame next decodes it again
    /// and reports why.
    Failed,
}

impl std::fmt::Debug for StoredImage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredImage")
            .field("key", &self.shared.key)
            .field("size", &self.shared.table.size_decomp())
            .finish_non_exhaustive()
    }
}

impl StoredImage {
    /// Reads the object's seek table. Reads happen on blocking threads (the
    /// readers are synchronous) and reach the store through `runtime`.
    pub async fn open(store: Arc<dyn EvidenceStore>, key: ObjectKey) -> Result<Self, ReadError> {
        let table = seek_table(store.as_ref(), &key).await?;
        let shared = Arc::new(Shared {
            store,
            key,
            table,
            runtime: tokio::runtime::Handle::current(),
            cache: Mutex::new(VecDeque::with_capacity(CACHED_FRAMES)),
            hinted: AtomicUsize::new(0),
            decoded: AtomicUsize::new(0),
            decoded_bytes: AtomicU64::new(0),
        });
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let mut hints = Some(tx);
        for n in 0..DECODERS {
            let rx = rx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("custody-frames-{n}"))
                .spawn(move || decode_ahead(&rx));
            if spawned.is_err() {
                // Without a decoder, hints are not taken: reads decode
                // what they need themselves.
                hints = None;
                break;
            }
        }
        Ok(Self { shared, hints })
    }
}

impl Drop for StoredImage {
    fn drop(&mut self) {
        tracing::debug!(
            key = %self.shared.key,
            frames = self.shared.table.num_frames(),
            decoded = self.shared.decoded.load(Ordering::Relaxed),
            decoded_mib = self.shared.decoded_bytes.load(Ordering::Relaxed) >> 20,
            "image read in place"
        );
    }
}

/// A decoder thread: takes hinted frames until the image is dropped.
fn decode_ahead(rx: &Mutex<Receiver<Job>>) {
    loop {
        let next = rx.lock().unwrap_or_else(|p| p.into_inner()).recv();
        let Ok(job) = next else { return };
        job.run();
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<(u32, Arc<Slot>)>> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new slot for frame `i` when none is cached (the caller decodes
    /// into it), with the memory of the frame it evicts where no reader
    /// holds that any more; `None` when `i` is cached or being decoded.
    fn claim(&self, i: u32) -> Option<(Arc<Slot>, Vec<u8>)> {
        let mut cache = self.lock();
        if cache.iter().any(|(n, _)| *n == i) {
            return None;
        }
        let mut spare = Vec::new();
        if cache.len() >= CACHED_FRAMES
            && let Some((_, old)) = cache.pop_front()
            && let Ok(old) = Arc::try_unwrap(old)
            && let State::Ready(frame) = old.state.into_inner().unwrap_or_else(|p| p.into_inner())
            && let Ok(buf) = Arc::try_unwrap(frame)
        {
            spare = buf;
        }
        let slot = Arc::new(Slot::default());
        cache.push_back((i, slot.clone()));
        Some((slot, spare))
    }

    /// Decodes frame `i` into `slot`, waking whoever waits for it.
    fn decode(&self, i: u32, slot: &Slot, mut buf: Vec<u8>) -> io::Result<Arc<Vec<u8>>> {
        let read = self.runtime.block_on(read_frame_into(
            self.store.as_ref(),
            &self.key,
            &self.table,
            i,
            &mut buf,
        ));
        let (state, result) = match read {
            Ok(()) => {
                self.decoded.fetch_add(1, Ordering::Relaxed);
                self.decoded_bytes
                    .fetch_add(buf.len() as u64, Ordering::Relaxed);
                let frame = Arc::new(buf);
                (State::Ready(frame.clone()), Ok(frame))
            }
            Err(e) => (State::Failed, Err(io::Error::other(crate::error_chain(&e)))),
        };
        *slot.state.lock().unwrap_or_else(|p| p.into_inner()) = state;
        slot.done.notify_all();
        result
    }

    fn frame(&self, i: u32) -> io::Result<Arc<Vec<u8>>> {
        loop {
            let cached = {
                let mut cache = self.lock();
                cache.iter().position(|(n, _)| *n == i).and_then(|pos| {
                    let hit = cache.remove(pos)?;
                    let slot = hit.1.clone();
                    cache.push_back(hit);
                    Some(slot)
                })
            };
            let Some(slot) = cached else {
                let Some((slot, spare)) = self.claim(i) else {
                    // Another thread claimed it between the two locks.
                    continue;
                };
                return self.decode(i, &slot, spare);
            };
            let mut state = slot.state.lock().unwrap_or_else(|p| p.into_inner());
            while matches!(*state, State::Decoding) {
                state = slot.done.wait(state).unwrap_or_else(|p| p.into_inner());
            }
            if let State::Ready(frame) = &*state {
                return Ok(frame.clone());
            }
            drop(state);
            // A failed frame is decoded again by this reader, which reports
            // the error when it fails again.
            let mut cache = self.lock();
            if let Some(pos) = cache
                .iter()
                .position(|(n, s)| *n == i && Arc::ptr_eq(s, &slot))
            {
                cache.remove(pos);
            }
            drop(cache);
            let Some((slot, spare)) = self.claim(i) else {
                continue;
            };
            return self.decode(i, &slot, spare);
        }
    }
}

impl ReadAt for StoredImage {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        let table = &self.shared.table;
        let size = table.size_decomp();
        let mut done = 0usize;
        while done < buf.len() && offset + (done as u64) < size {
            let at = offset + done as u64;
            let i = table.frame_index_decomp(at);
            let start = table
                .frame_start_decomp(i)
                .map_err(|e| io::Error::other(e.to_string()))?;
            let frame = self.shared.frame(i)?;
            let from = usize::try_from(at - start).unwrap_or(usize::MAX);
            let Some(part) = frame.get(from..) else {
                return Err(io::Error::other(format!(
                    "frame {i} of {} does not hold raw byte {at}",
                    self.shared.key
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
        self.shared.table.size_decomp()
    }

    fn will_need(&self, offset: u64, len: u64) {
        let Some(hints) = &self.hints else { return };
        let table = &self.shared.table;
        if offset >= table.size_decomp() || len == 0 {
            return;
        }
        let end = offset.saturating_add(len - 1).min(table.size_decomp() - 1);
        let (first, last) = (
            table.frame_index_decomp(offset),
            table.frame_index_decomp(end),
        );
        for i in first..=last {
            if self.shared.hinted.load(Ordering::Acquire) >= HINTS {
                return;
            }
            let Some((slot, spare)) = self.shared.claim(i) else {
                continue;
            };
            self.shared.hinted.fetch_add(1, Ordering::AcqRel);
            let job = Job {
                i,
                slot,
                spare,
                shared: self.shared.clone(),
            };
            // Decoders gone: the job comes back and is dropped, failing its
            // slot for a reader to decode.
            if let Err(back) = hints.send(job) {
                drop(back.0);
                return;
            }
        }
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

    /// An image of `raw` in a local store, in 4 KiB frames.
    async fn stored(dir: &std::path::Path, raw: &[u8]) -> (Arc<dyn EvidenceStore>, ObjectKey) {
        let store: Arc<dyn EvidenceStore> = Arc::new(LocalStore::new(dir));
        let key = ObjectKey::new("cases/p/artefacts/img.zst").unwrap();
        let (stream, running) = pipeline::start(
            Box::new(io::Cursor::new(raw.to_vec())),
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
        (store, key)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn hinted_frames_decode_ahead_and_read_as_the_raw_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let raw = data(400_000);
        let (store, key) = stored(dir.path(), &raw).await;
        let img = Arc::new(StoredImage::open(store, key).await.unwrap());
        let reader = img.clone();
        tokio::task::spawn_blocking(move || {
            // Hints far past what the decoders take at once, then reads in
            // an order of their own, twice over: every byte is the raw one.
            for round in 0..2 {
                reader.will_need(0, raw.len() as u64);
                reader.will_need(350_000, 1_000_000);
                reader.will_need(u64::MAX - 5, 10);
                for off in (0..raw.len()).step_by(4096).rev() {
                    let mut buf = vec![0u8; 5000];
                    let n = reader.read_at(off as u64, &mut buf).unwrap();
                    let want = &raw[off..(off + 5000).min(raw.len())];
                    assert_eq!(&buf[..n], want, "round {round} at {off}");
                }
                let cached = reader.shared.lock().len();
                assert!(cached <= CACHED_FRAMES, "{cached} frames cached");
            }
        })
        .await
        .unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_frame_a_decoder_could_not_read_is_an_error_for_the_reader() {
        let dir = tempfile::tempdir().unwrap();
        let raw = data(100_000);
        let (store, key) = stored(dir.path(), &raw).await;
        let img = Arc::new(StoredImage::open(store, key).await.unwrap());
        // The object goes away after the seek table was read: the decoders
        // fail on what they were hinted, and each read says why.
        std::fs::remove_file(dir.path().join("cases/p/artefacts/img.zst")).unwrap();
        let reader = img.clone();
        tokio::task::spawn_blocking(move || {
            reader.will_need(0, 100_000);
            std::thread::sleep(std::time::Duration::from_millis(50));
            for off in [0u64, 50_000, 99_999] {
                let err = reader.read_exact_at(off, 1).unwrap_err();
                assert!(err.to_string().contains("img.zst"), "{err}");
            }
        })
        .await
        .unwrap();
        // Dropping the image ends its decoders; nothing waits on them.
        drop(img);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stored_image_reads_any_range_as_the_raw_bytes_with_a_bounded_cache() {
        let dir = tempfile::tempdir().unwrap();
        let raw = data(300_000);
        let (store, key) = stored(dir.path(), &raw).await;
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
            let cached = reader.shared.cache.lock().unwrap().len();
            assert!(cached <= CACHED_FRAMES, "{cached} frames cached");
        })
        .await
        .unwrap();
    }
}
