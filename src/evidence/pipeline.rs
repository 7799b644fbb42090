//! The streaming pipeline: one pass over a source, in order.
//!
//! ```text
//!            ┌──────────► hasher ──────────────────► SHA-256(raw)
//! reader ────┤
//!            └─► frame i ─► worker (i mod N) ─► writer ─► store
//!                           zstd, one frame each    │     SHA-256(stored), seek table
//! ```
//!
//! The reader cuts the source into frames of a fixed raw size. Each frame is
//! shared (not copied) between the hasher thread and one of N compression
//! workers, picked round robin, so the writer restores order simply by reading
//! the workers' outputs round robin too. Every hand-over is a bounded channel,
//! so a slow store stalls the reader instead of filling memory.
//!
//! The stored object is the zstd seekable format: independent frames followed
//! by a skippable frame holding the seek table. Plain `zstd -d` gives back the
//! raw bytes; [`super::seekable`] decompresses any byte range.

use std::io::{self, Read};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread;

use bytes::Bytes;
use sha2::{Digest as _, Sha256};

use crate::progress::Progress;
use crate::store::PrefixDigests;

/// 2 MiB of raw bytes per zstd frame: large enough that a frame boundary
/// costs well under 1% of ratio at level 1 (whose window is 512 KiB), small
/// enough that reading a range decompresses little beyond it.
pub const DEFAULT_FRAME_SIZE: usize = 2 << 20;
/// zstd level 1: the fastest standard level; evidence capture is a race.
pub const DEFAULT_LEVEL: i32 = 1;
/// Frames queued for each compression worker and for the hasher.
const QUEUE_DEPTH: usize = 1;
/// Compressed frames queued for the store.
const STORE_QUEUE_DEPTH: usize = 1;
/// The seekable format's per-frame limit (zstd contrib/seekable_format).
const MAX_FRAME_SIZE: usize = 1 << 30;
const _: () = assert!(DEFAULT_FRAME_SIZE <= MAX_FRAME_SIZE);

#[derive(Debug, Clone)]
pub struct PipelineOptions {
    pub frame_size: usize,
    pub level: i32,
    /// Compression threads; hashing has its own.
    pub workers: usize,
}

impl Default for PipelineOptions {
    fn default() -> Self {
        let cores = thread::available_parallelism().map_or(2, |n| n.get());
        Self {
            frame_size: DEFAULT_FRAME_SIZE,
            level: DEFAULT_LEVEL,
            workers: cores.clamp(1, 8),
        }
    }
}

impl PipelineOptions {
    /// Upper bound of frame buffers alive at once, raw and compressed together.
    ///
    /// Raw frames: one being read, `QUEUE_DEPTH` queued and one being
    /// compressed per worker, the hasher's queue and current frame. Compressed
    /// frames: one per worker waiting for the writer, the writer's current one
    /// and the store queue. A compressed frame is at most `compress_bound`
    /// (raw size plus a little), so each counts as one raw frame here.
    pub fn max_frames_in_flight(&self) -> usize {
        let raw = 1 + self.workers * (QUEUE_DEPTH + 1) + (QUEUE_DEPTH + 1);
        let compressed = self.workers + 1 + STORE_QUEUE_DEPTH;
        raw + compressed
    }

    /// The pipeline's memory bound in bytes; it does not depend on the input size.
    pub fn memory_bound(&self) -> usize {
        self.max_frames_in_flight() * zstd::zstd_safe::compress_bound(self.frame_size)
    }
}

/// What a source says once it has been read to the end.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceEnd {
    /// Set when the source changed while it was being read (a growing log, a live disk).
    pub changed: Option<String>,
    /// Items inside the source that could not be read, with the reason.
    pub notes: Vec<String>,
    /// A block device read block by block: its block manifest.
    pub block_map: Option<crate::evidence::BlockMap>,
}

/// A source read once, start to end.
pub trait SourceReader: Read + Send {
    /// Called once after the last byte was read.
    fn finish(&mut self) -> io::Result<SourceEnd> {
        Ok(SourceEnd::default())
    }

    /// Whether this reader takes back what an interrupted attempt of the
    /// same acquisition stored ([`resume_from`](Self::resume_from)): the
    /// store then keeps a partial object for the rerun. A reader that can
    /// read its source again as cheaply says no.
    fn resumes_from_store(&self) -> bool {
        false
    }

    /// Offered once, before the first read: the raw bytes an interrupted
    /// attempt stored, decoded from the store's checked frames (a prefix of
    /// what this reader would produce). The reader gives them in place of
    /// reading its source again, checking them as far as it can, and reads
    /// the rest from its source.
    fn resume_from(&mut self, prefix: Box<dyn Read + Send>) {
        let _ = prefix;
    }
}

impl SourceReader for io::Cursor<Vec<u8>> {}
impl SourceReader for io::Empty {}
impl SourceReader for std::fs::File {}

/// What the pipeline computed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipelineOutput {
    pub raw_size: u64,
    pub raw_sha256: String,
    pub stored_size: u64,
    pub stored_sha256: String,
    pub frames: u32,
    pub source_end: SourceEnd,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PipelineError {
    #[error("failed to read the source at byte {offset}")]
    Read {
        offset: u64,
        #[source]
        source: io::Error,
    },
    #[error("acquisition interrupted at byte {offset}")]
    Interrupted { offset: u64 },
    #[error("failed to compress frame {frame}")]
    Compress {
        frame: u64,
        #[source]
        source: io::Error,
    },
    #[error("the store stopped taking data")]
    StoreGone,
    #[error("the source is too large for the seek table ({frames} frames)")]
    TooManyFrames { frames: u64 },
    #[error("a pipeline thread failed: {0}")]
    Thread(&'static str),
}

/// The stored bytes, as the store consumes them: the store's input type.
pub use crate::store::EvidenceStream;

/// The end of a running pipeline: after the store consumed the stream, `finish` gives the digests.
#[derive(Debug)]
pub struct Running {
    result: tokio::sync::oneshot::Receiver<Result<PipelineOutput, PipelineError>>,
    raw_digest: Arc<std::sync::OnceLock<(u64, String)>>,
    stored_digests: Arc<PrefixDigests>,
}

impl Running {
    /// Size and hex SHA-256 of the source, set before the stream's last
    /// chunk is sent: a store that commits at the end can record them.
    pub fn raw_digest(&self) -> Arc<std::sync::OnceLock<(u64, String)>> {
        self.raw_digest.clone()
    }

    /// The SHA-256 of the stored bytes so far, published at the end of
    /// each chunk before it is sent.
    pub fn stored_digests(&self) -> Arc<PrefixDigests> {
        self.stored_digests.clone()
    }

    /// Waits for every stage to end. Call after the store has consumed the stream.
    pub async fn finish(self) -> Result<PipelineOutput, PipelineError> {
        self.result
            .await
            .map_err(|_| PipelineError::Thread("writer"))?
    }
}

struct Frame {
    index: u64,
    raw: Bytes,
}

/// Starts the pipeline on its own threads and returns the stored bytes as a
/// stream for the store. `cancel` stops it at the next frame.
pub fn start(
    source: Box<dyn SourceReader>,
    opts: &PipelineOptions,
    progress: Arc<dyn Progress>,
    cancel: Arc<AtomicBool>,
) -> (EvidenceStream, Running) {
    let opts = PipelineOptions {
        frame_size: opts.frame_size.clamp(4096, MAX_FRAME_SIZE),
        level: opts.level,
        workers: opts.workers.max(1),
    };
    let (store_tx, store_rx) = tokio::sync::mpsc::channel::<io::Result<Bytes>>(STORE_QUEUE_DEPTH);
    let (result_tx, result_rx) = tokio::sync::oneshot::channel();

    let (hash_tx, hash_rx) = sync_channel::<Bytes>(QUEUE_DEPTH);
    let mut work_txs = Vec::with_capacity(opts.workers);
    let mut done_rxs = Vec::with_capacity(opts.workers);
    let mut workers = Vec::with_capacity(opts.workers);
    // Every frame buffer comes from these and goes back to them, so the
    // memory held is what the queues bound (see `max_frames_in_flight`).
    let raw_pool = super::pool::BufPool::new(opts.frame_size, opts.max_frames_in_flight());
    let compressed_pool = super::pool::BufPool::new(
        zstd::zstd_safe::compress_bound(opts.frame_size),
        opts.workers + 1 + STORE_QUEUE_DEPTH + 1,
    );
    for _ in 0..opts.workers {
        let (work_tx, work_rx) = sync_channel::<Frame>(QUEUE_DEPTH);
        // A rendezvous: a finished frame waits in its worker, not in a queue as well.
        let (done_tx, done_rx) = sync_channel::<Result<(u32, Bytes), PipelineError>>(0);
        let level = opts.level;
        let pool = compressed_pool.clone();
        workers.push(thread::spawn(move || {
            compress_worker(level, &pool, work_rx, done_tx)
        }));
        work_txs.push(work_tx);
        done_rxs.push(done_rx);
    }
    let hasher = thread::spawn(move || {
        let mut h = Sha256::new();
        let mut n = 0u64;
        for chunk in hash_rx {
            h.update(&chunk);
            n += chunk.len() as u64;
        }
        (n, hex::encode(h.finalize()))
    });
    let frame_size = opts.frame_size;
    let reader = thread::spawn(move || {
        read_frames(
            source, frame_size, &raw_pool, hash_tx, work_txs, progress, cancel,
        )
    });

    let raw_digest = Arc::new(std::sync::OnceLock::new());
    let digest_cell = raw_digest.clone();
    let stored_digests = Arc::new(PrefixDigests::default());
    let prefixes = stored_digests.clone();
    thread::spawn(move || {
        let digests = Digests {
            raw: &digest_cell,
            stored: &prefixes,
        };
        let out = write_frames(done_rxs, &store_tx, reader, hasher, workers, &digests);
        if let Err(e) = &out {
            // Tell the store to discard what it has: the source did not end cleanly.
            let _ = store_tx.blocking_send(Err(io::Error::other(e.to_string())));
        }
        let _ = result_tx.send(out);
    });

    let stream = futures::stream::unfold(store_rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    (
        Box::pin(stream),
        Running {
            result: result_rx,
            raw_digest,
            stored_digests,
        },
    )
}

type ReadResult = Result<SourceEnd, PipelineError>;

fn read_frames(
    mut source: Box<dyn SourceReader>,
    frame_size: usize,
    pool: &super::pool::BufPool,
    hash_tx: SyncSender<Bytes>,
    work_txs: Vec<SyncSender<Frame>>,
    progress: Arc<dyn Progress>,
    cancel: Arc<AtomicBool>,
) -> ReadResult {
    let mut offset = 0u64;
    let mut index = 0u64;
    loop {
        if cancel.load(Ordering::Relaxed) {
            return Err(PipelineError::Interrupted { offset });
        }
        // A pooled buffer keeps its bytes: filled by `read`, not zeroed first.
        let mut buf = pool.take_filled(frame_size);
        let mut n = 0;
        while n < frame_size {
            let rest = buf.get_mut(n..).unwrap_or_default();
            match source.read(rest) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(PipelineError::Read {
                        offset: offset + n as u64,
                        source,
                    });
                }
            }
        }
        buf.truncate(n);
        // An empty source still gets one (empty) frame so the object is a valid zstd stream.
        if n == 0 && index > 0 {
            break;
        }
        let raw = pool.freeze(buf);
        hash_tx
            .send(raw.clone())
            .map_err(|_| PipelineError::Thread("hasher"))?;
        let slot = usize::try_from(index % work_txs.len() as u64).unwrap_or(0);
        let tx = work_txs.get(slot).ok_or(PipelineError::Thread("worker"))?;
        if tx.send(Frame { index, raw }).is_err() {
            // The worker (or the writer behind it) stopped; the writer reports why.
            return Err(PipelineError::StoreGone);
        }
        offset += n as u64;
        index += 1;
        progress.advance(n as u64);
        if n < frame_size {
            break;
        }
    }
    source
        .finish()
        .map_err(|source| PipelineError::Read { offset, source })
}

fn compress_worker(
    level: i32,
    pool: &super::pool::BufPool,
    rx: Receiver<Frame>,
    tx: SyncSender<Result<(u32, Bytes), PipelineError>>,
) {
    let mut compressor = match zstd::bulk::Compressor::new(level) {
        Ok(c) => c,
        Err(source) => {
            let _ = tx.send(Err(PipelineError::Compress { frame: 0, source }));
            return;
        }
    };
    // Per-frame XXH64 so `zstd -t` checks every frame on its own.
    let _ = compressor.include_checksum(true);
    // A frame of zeros (a disk's never-written span) compresses the same
    // every time: compressed once, then reused.
    let mut zeros: Option<(usize, Bytes)> = None;
    for frame in rx {
        if is_zeros(&frame.raw) {
            let len = frame.raw.len();
            let cached = match &zeros {
                Some((l, b)) if *l == len => Some(b.clone()),
                _ => compressor.compress(&frame.raw).ok().map(Bytes::from),
            };
            if let Some(b) = cached {
                zeros = Some((len, b.clone()));
                if tx.send(Ok((len as u32, b))).is_err() {
                    return;
                }
                continue;
            }
        }
        // Into a pooled buffer of the frame's bound: it always fits.
        let mut buf = pool.take();
        buf.reserve(zstd::zstd_safe::compress_bound(frame.raw.len()));
        let out = compressor
            .compress_to_buffer(frame.raw.as_ref(), &mut buf)
            .map(|_| (frame.raw.len() as u32, pool.freeze(buf)))
            .map_err(|source| PipelineError::Compress {
                frame: frame.index,
                source,
            });
        let failed = out.is_err();
        if tx.send(out).is_err() || failed {
            return;
        }
    }
}

/// Whether every byte is zero, a word at a time.
fn is_zeros(b: &[u8]) -> bool {
    let (words, rest) = b.as_chunks::<16>();
    words.iter().all(|w| u128::from_ne_bytes(*w) == 0) && rest.iter().all(|&x| x == 0)
}

/// What the writer publishes for the store while the stream is still running.
struct Digests<'a> {
    raw: &'a std::sync::OnceLock<(u64, String)>,
    stored: &'a PrefixDigests,
}

fn write_frames(
    done_rxs: Vec<Receiver<Result<(u32, Bytes), PipelineError>>>,
    store_tx: &tokio::sync::mpsc::Sender<io::Result<Bytes>>,
    reader: thread::JoinHandle<ReadResult>,
    hasher: thread::JoinHandle<(u64, String)>,
    workers: Vec<thread::JoinHandle<()>>,
    digests: &Digests<'_>,
) -> Result<PipelineOutput, PipelineError> {
    let mut table = zeekstd::SeekTable::new();
    let mut stored = Sha256::new();
    let mut stored_size = 0u64;
    let mut frames = 0u64;
    let mut send = |bytes: Bytes| -> Result<(), PipelineError> {
        stored.update(&bytes);
        stored_size += bytes.len() as u64;
        digests
            .stored
            .publish(stored_size, stored.clone().finalize().into());
        store_tx
            .blocking_send(Ok(bytes))
            .map_err(|_| PipelineError::StoreGone)
    };
    let mut write_err = None;
    'frames: loop {
        for rx in &done_rxs {
            match rx.recv() {
                Ok(Ok((raw_len, compressed))) => {
                    let c_len = u32::try_from(compressed.len())
                        .map_err(|_| PipelineError::TooManyFrames { frames })?;
                    if table.log_frame(c_len, raw_len).is_err() {
                        write_err = Some(PipelineError::TooManyFrames { frames });
                        break 'frames;
                    }
                    frames += 1;
                    if let Err(e) = send(compressed) {
                        write_err = Some(e);
                        break 'frames;
                    }
                }
                Ok(Err(e)) => {
                    write_err = Some(e);
                    break 'frames;
                }
                // The reader finished (or failed) and this worker drained.
                Err(_) => break 'frames,
            }
        }
    }
    // Dropping the receivers unblocks any worker still sending, and through it the reader.
    drop(done_rxs);
    let read = reader.join().map_err(|_| PipelineError::Thread("reader"))?;
    for w in workers {
        w.join().map_err(|_| PipelineError::Thread("worker"))?;
    }
    let (raw_size, raw_sha256) = hasher.join().map_err(|_| PipelineError::Thread("hasher"))?;
    if let Some(e) = write_err {
        return Err(e);
    }
    let source_end = read?;
    let _ = digests.raw.set((raw_size, raw_sha256.clone()));

    let mut ser = table.into_serializer();
    let mut tail = vec![0u8; ser.encoded_len()];
    let n = ser.write_into(&mut tail);
    tail.truncate(n);
    send(Bytes::from(tail))?;

    Ok(PipelineOutput {
        raw_size,
        raw_sha256,
        stored_size,
        stored_sha256: hex::encode(stored.finalize()),
        frames: u32::try_from(frames).unwrap_or(u32::MAX),
        source_end,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    async fn run(data: Vec<u8>, opts: PipelineOptions) -> (Vec<u8>, PipelineOutput) {
        let (mut stream, running) = start(
            Box::new(io::Cursor::new(data)),
            &opts,
            crate::progress::none(),
            Arc::new(AtomicBool::new(false)),
        );
        let mut stored = Vec::new();
        while let Some(chunk) = stream.next().await {
            stored.extend_from_slice(&chunk.expect("chunk"));
        }
        let out = running.finish().await.expect("pipeline");
        (stored, out)
    }

    fn sample(len: usize) -> Vec<u8> {
        // Compressible but not trivial: text-like runs with a counter.
        let mut v = Vec::with_capacity(len);
        let mut i = 0u64;
        while v.len() < len {
            v.extend_from_slice(
                format!("line {i} of evidence {}\n", i * 7919 % 104_729).as_bytes(),
            );
            i += 1;
        }
        v.truncate(len);
        v
    }

    #[tokio::test]
    async fn round_trips_through_plain_zstd() {
        for (len, frame, workers) in [
            (0, 4096, 2),
            (1, 4096, 1),
            (4096, 4096, 2),
            (100_000, 4096, 3),
            (1 << 20, 65536, 2),
        ] {
            let data = sample(len);
            let (stored, out) = run(
                data.clone(),
                PipelineOptions {
                    frame_size: frame,
                    level: 1,
                    workers,
                },
            )
            .await;
            assert_eq!(out.raw_size, len as u64);
            assert_eq!(out.raw_sha256, super::super::sha256_hex(&data));
            assert_eq!(out.stored_size, stored.len() as u64);
            assert_eq!(out.stored_sha256, super::super::sha256_hex(&stored));
            // Any zstd decoder gives the raw bytes back; the seek table is a skippable frame.
            let back = zstd::decode_all(&stored[..]).expect("decode");
            assert_eq!(back, data, "len {len}");
            let expected_frames = if len == 0 { 1 } else { len.div_ceil(frame) };
            assert_eq!(out.frames as usize, expected_frames);
        }
    }

    #[test]
    fn memory_bound_does_not_depend_on_input() {
        let o = PipelineOptions {
            frame_size: DEFAULT_FRAME_SIZE,
            level: 1,
            workers: 2,
        };
        // 2 workers at 2 MiB frames: stays under 64 MiB whatever the input size.
        assert!(o.memory_bound() < 64 << 20, "{}", o.memory_bound());
        assert_eq!(o.max_frames_in_flight(), 1 + 4 + 2 + 2 + 1 + 1);
    }

    struct Failing {
        left: usize,
    }
    impl Read for Failing {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.left == 0 {
                return Err(io::Error::other("device error"));
            }
            let n = buf.len().min(self.left);
            buf[..n].fill(7);
            self.left -= n;
            Ok(n)
        }
    }
    impl SourceReader for Failing {}

    #[tokio::test]
    async fn a_read_error_poisons_the_stream() {
        let (mut stream, running) = start(
            Box::new(Failing { left: 10_000 }),
            &PipelineOptions {
                frame_size: 4096,
                level: 1,
                workers: 2,
            },
            crate::progress::none(),
            Arc::new(AtomicBool::new(false)),
        );
        let mut saw_err = false;
        while let Some(chunk) = stream.next().await {
            if chunk.is_err() {
                saw_err = true;
            }
        }
        assert!(saw_err, "the store must be told to discard");
        let err = running.finish().await.expect_err("must fail");
        assert!(
            matches!(err, PipelineError::Read { offset: 10_000, .. }),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn cancel_stops_at_the_next_frame() {
        let cancel = Arc::new(AtomicBool::new(true));
        let (mut stream, running) = start(
            Box::new(io::Cursor::new(sample(100_000))),
            &PipelineOptions {
                frame_size: 4096,
                level: 1,
                workers: 2,
            },
            crate::progress::none(),
            cancel,
        );
        while stream.next().await.is_some() {}
        let err = running.finish().await.expect_err("cancelled");
        assert!(
            matches!(err, PipelineError::Interrupted { offset: 0 }),
            "{err:?}"
        );
    }
}
