//! Reading stored objects back: whole (checking both digests on the way) or
//! by raw byte range through the seek table, fetching only the frames that
//! hold the range.

use std::io::{self, BufRead, BufReader, Read, Write};

use sha2::{Digest as _, Sha256};
use tokio_util::io::SyncIoBridge;

use crate::store::{EvidenceStore, ObjectKey, StoreError};

/// Size of the seekable format's footer: frame count, descriptor, magic.
const FOOTER_LEN: u64 = 9;
const SEEKABLE_MAGIC: u32 = 0x8F92_EAB1;
/// Skippable frame header: magic and frame size.
const SKIPPABLE_HEADER_LEN: u64 = 8;
/// 1 GiB: the largest frame custody writes (`frame_size_mib` is at most
/// 1024). A seek table entry claiming more stored bytes than such a frame
/// compresses to is not custody's, and is refused before it is fetched.
const MAX_FRAME_RAW: usize = 1 << 30;
/// 64 KiB: how much of a frame is decoded at a time on its way to the output.
const RANGE_CHUNK: usize = 64 << 10;

/// Digests of an object as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadBack {
    pub raw_size: u64,
    pub raw_sha256: String,
    pub stored_size: u64,
    pub stored_sha256: String,
    /// Set when the stored bytes are not a valid zstd stream; the raw digest
    /// then covers only what decoded before the failure.
    pub decode_error: Option<String>,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{key} is not a valid zstd stream at raw byte {raw_offset}")]
    Decode {
        key: String,
        raw_offset: u64,
        #[source]
        source: io::Error,
    },
    #[error("{key} has no valid seek table: {reason}")]
    SeekTable { key: String, reason: String },
    #[error("range {offset}+{len} is past the end of {key} ({size} raw bytes)")]
    OutOfRange {
        key: String,
        offset: u64,
        len: u64,
        size: u64,
    },
    #[error("failed to write the output")]
    Output(#[source] io::Error),
    #[error("a reader thread failed")]
    Thread,
}

struct HashingReader<R> {
    inner: R,
    hash: Sha256,
    n: u64,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(buf.get(..n).unwrap_or_default());
        self.n += n as u64;
        Ok(n)
    }
}

struct HashingWriter<W> {
    inner: W,
    hash: Sha256,
    n: u64,
    failed: bool,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf).inspect_err(|_| self.failed = true)?;
        self.hash.update(buf.get(..n).unwrap_or_default());
        self.n += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Reads a whole object once: hashes the stored bytes, decompresses them and
/// hashes the raw bytes, writing the raw bytes to `out` as it goes. Stored
/// bytes that do not decode are reported in [`ReadBack::decode_error`], and
/// still read to the end so the stored digest is complete.
pub async fn read_back<W: Write + Send + 'static>(
    store: &dyn EvidenceStore,
    key: &ObjectKey,
    out: W,
) -> Result<(ReadBack, W), ReadError> {
    let reader = store.get(key).await?;
    let key_text = key.to_string();
    let handle = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let bridge = SyncIoBridge::new_with_handle(reader, handle);
        let mut stored = BufReader::with_capacity(
            1 << 20,
            HashingReader {
                inner: bridge,
                hash: Sha256::new(),
                n: 0,
            },
        );
        let mut raw = HashingWriter {
            inner: out,
            hash: Sha256::new(),
            n: 0,
            failed: false,
        };
        let decode_err = |raw: &HashingWriter<W>, source| ReadError::Decode {
            key: key_text.clone(),
            raw_offset: raw.n,
            source,
        };
        let decoded = zstd::stream::read::Decoder::with_buffer(&mut stored)
            .and_then(|mut decoder| io::copy(&mut decoder, &mut raw));
        let decode_error = match decoded {
            Ok(_) => None,
            Err(e) if raw.failed => return Err(ReadError::Output(e)),
            Err(e) => Some(crate::error_chain(&decode_err(&raw, e))),
        };
        // Anything after the last frame (or after a corrupt one) still counts towards the stored digest.
        loop {
            let n = stored.fill_buf().map_err(|e| decode_err(&raw, e))?.len();
            if n == 0 {
                break;
            }
            stored.consume(n);
        }
        raw.flush().map_err(ReadError::Output)?;
        let stored = stored.into_inner();
        Ok((
            ReadBack {
                raw_size: raw.n,
                raw_sha256: hex::encode(raw.hash.finalize()),
                stored_size: stored.n,
                stored_sha256: hex::encode(stored.hash.finalize()),
                decode_error,
            },
            raw.inner,
        ))
    })
    .await
    .map_err(|_| ReadError::Thread)?
}

/// The seek table of a stored object, fetched from its tail.
pub async fn seek_table(
    store: &dyn EvidenceStore,
    key: &ObjectKey,
) -> Result<zeekstd::SeekTable, ReadError> {
    let bad = |reason: String| ReadError::SeekTable {
        key: key.to_string(),
        reason,
    };
    let size = store.size(key).await?;
    if size < FOOTER_LEN + SKIPPABLE_HEADER_LEN {
        return Err(bad(format!("object is only {size} bytes")));
    }
    let footer = store.get_range(key, size - FOOTER_LEN, FOOTER_LEN).await?;
    let word = |at: usize| -> u32 {
        let mut b = [0u8; 4];
        if let Some(s) = footer.get(at..at + 4) {
            b.copy_from_slice(s);
        }
        u32::from_le_bytes(b)
    };
    if word(5) != SEEKABLE_MAGIC {
        return Err(bad("the seekable footer magic is missing".into()));
    }
    let frames = u64::from(word(0));
    let descriptor = footer.get(4).copied().unwrap_or(0);
    let entry_len = if descriptor & 0x80 != 0 { 12 } else { 8 };
    let table_len = SKIPPABLE_HEADER_LEN + frames * entry_len + FOOTER_LEN;
    if table_len > size {
        return Err(bad(format!(
            "seek table of {frames} frames is larger than the object"
        )));
    }
    let table = store.get_range(key, size - table_len, table_len).await?;
    let mut cursor = io::Cursor::new(table.to_vec());
    let table = zeekstd::SeekTable::from_seekable(&mut cursor).map_err(|e| bad(e.to_string()))?;
    // The table's compressed total must account for every byte before it.
    if table.size_comp() + table_len != size {
        return Err(bad("frame sizes do not add up to the object's size".into()));
    }
    Ok(table)
}

/// Writes raw bytes `offset..offset+len` of a stored object to `out`,
/// fetching and decompressing only the frames that hold them. A frame is
/// decoded as a stream, only up to the end of the range, and checked
/// against its seek table entry: a tampered object cannot make it hold more
/// than the range in memory, nor silently return fewer bytes.
pub async fn read_range(
    store: &dyn EvidenceStore,
    key: &ObjectKey,
    offset: u64,
    len: u64,
    out: &mut (dyn Write + Send),
) -> Result<u64, ReadError> {
    let table = seek_table(store, key).await?;
    let size = table.size_decomp();
    let end = offset
        .checked_add(len)
        .filter(|&e| e <= size)
        .ok_or(ReadError::OutOfRange {
            key: key.to_string(),
            offset,
            len,
            size,
        })?;
    if len == 0 {
        return Ok(0);
    }
    let table_err = |e: zeekstd::Error| ReadError::SeekTable {
        key: key.to_string(),
        reason: e.to_string(),
    };
    let first = table.frame_index_decomp(offset);
    let last = table.frame_index_decomp(end - 1);
    let mut written = 0u64;
    let max_stored = zstd::zstd_safe::compress_bound(MAX_FRAME_RAW) as u64;
    let mut buf = vec![0u8; RANGE_CHUNK];
    for i in first..=last {
        let c_start = table.frame_start_comp(i).map_err(table_err)?;
        let c_len = table.frame_size_comp(i).map_err(table_err)?;
        let d_start = table.frame_start_decomp(i).map_err(table_err)?;
        let d_len = table.frame_size_decomp(i).map_err(table_err)?;
        if c_len > max_stored {
            return Err(ReadError::SeekTable {
                key: key.to_string(),
                reason: format!(
                    "frame {i} is {c_len} stored bytes, more than a frame custody writes"
                ),
            });
        }
        // This frame's part of the range, in raw bytes from the frame's start.
        let from = offset.saturating_sub(d_start);
        let to = (end - d_start).min(d_len);
        let compressed = store.get_range(key, c_start, c_len).await?;
        let decode_err = |raw_offset, source| ReadError::Decode {
            key: key.to_string(),
            raw_offset,
            source,
        };
        let mut decoder = zstd::stream::read::Decoder::with_buffer(&compressed[..])
            .map_err(|e| decode_err(d_start, e))?;
        let mut at = 0u64;
        while at < to {
            let n = decoder
                .read(&mut buf)
                .map_err(|e| decode_err(d_start + at, e))?;
            if n == 0 {
                return Err(decode_err(
                    d_start + at,
                    io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!(
                            "frame {i} ends after {at} raw bytes; its seek table entry says {d_len}"
                        ),
                    ),
                ));
            }
            let chunk = buf.get(..n).unwrap_or_default();
            let lo = usize::try_from(from.saturating_sub(at)).unwrap_or(n).min(n);
            let hi = usize::try_from(to.saturating_sub(at)).unwrap_or(n).min(n);
            let part = chunk.get(lo..hi).unwrap_or_default();
            out.write_all(part).map_err(ReadError::Output)?;
            written += part.len() as u64;
            at += n as u64;
        }
    }
    Ok(written)
}

/// Raw bytes of frame `i` of a stored object, whole: what a reader that
/// seeks around an image (a file system) keeps in its cache. The frame is
/// checked against its seek table entry, as [`read_range`] checks it.
pub async fn read_frame(
    store: &dyn EvidenceStore,
    key: &ObjectKey,
    table: &zeekstd::SeekTable,
    i: u32,
) -> Result<Vec<u8>, ReadError> {
    let mut raw = Vec::new();
    read_frame_into(store, key, table, i, &mut raw).await?;
    Ok(raw)
}

thread_local! {
    /// One decoding context per thread, reused for every frame it reads.
    static DECODER: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { std::cell::RefCell::new(None) };
    /// One buffer per thread for a frame's stored bytes (see
    /// [`read_frame_into`]).
    static COMPRESSED: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}

/// Decodes one whole frame into `raw`'s spare room with this thread's
/// context.
fn decode_frame(compressed: &[u8], raw: &mut Vec<u8>) -> io::Result<usize> {
    DECODER.with(|cell| {
        let Ok(mut slot) = cell.try_borrow_mut() else {
            return zstd::bulk::Decompressor::new()?.decompress_to_buffer(compressed, raw);
        };
        let d = match slot.as_mut() {
            Some(d) => d,
            None => slot.insert(zstd::bulk::Decompressor::new()?),
        };
        d.decompress_to_buffer(compressed, raw)
    })
}

/// [`read_frame`] into `raw`, reusing its memory: a reader that walks a
/// disk image decodes hundreds of frames, and a fresh buffer for each costs
/// more in page faults than the decoding.
pub async fn read_frame_into(
    store: &dyn EvidenceStore,
    key: &ObjectKey,
    table: &zeekstd::SeekTable,
    i: u32,
    raw: &mut Vec<u8>,
) -> Result<(), ReadError> {
    let table_err = |e: zeekstd::Error| ReadError::SeekTable {
        key: key.to_string(),
        reason: e.to_string(),
    };
    let c_start = table.frame_start_comp(i).map_err(table_err)?;
    let c_len = table.frame_size_comp(i).map_err(table_err)?;
    let d_start = table.frame_start_decomp(i).map_err(table_err)?;
    let d_len = table.frame_size_decomp(i).map_err(table_err)?;
    let max_stored = zstd::zstd_safe::compress_bound(MAX_FRAME_RAW) as u64;
    let raw_len = usize::try_from(d_len)
        .ok()
        .filter(|&n| n <= MAX_FRAME_RAW && c_len <= max_stored)
        .ok_or_else(|| ReadError::SeekTable {
            key: key.to_string(),
            reason: format!("frame {i} is larger than a frame custody writes"),
        })?;
    // This thread's buffer for stored bytes, lent to the store and given
    // back: the memory stays paged in from one frame to the next.
    let lent = COMPRESSED.with(std::cell::Cell::take);
    let compressed = store.get_range_into(key, c_start, c_len, lent).await?;
    let decode_err = |source| ReadError::Decode {
        key: key.to_string(),
        raw_offset: d_start,
        source,
    };
    raw.clear();
    raw.reserve(raw_len + 1);
    // One call into the buffer (no window copy, no new context per frame);
    // room for a byte more than the entry says catches a frame that holds
    // more.
    let decoded = decode_frame(&compressed, raw);
    COMPRESSED.with(|c| c.set(compressed));
    decoded.map_err(decode_err)?;
    if raw.len() != raw_len {
        return Err(decode_err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "frame {i} holds {} raw bytes; its seek table entry says {d_len}",
                raw.len()
            ),
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;

    use proptest::prelude::*;

    use super::*;
    use crate::evidence::pipeline::{self, PipelineOptions};
    use crate::store::local::LocalStore;

    /// Runs the pipeline into a local store and returns the object's key.
    async fn store_through_pipeline(
        store: &LocalStore,
        data: Vec<u8>,
        frame_size: usize,
    ) -> ObjectKey {
        let key = ObjectKey::new("cases/p/artefacts/x.zst").expect("key");
        let (stream, running) = pipeline::start(
            Box::new(io::Cursor::new(data)),
            &PipelineOptions {
                frame_size,
                level: 1,
                workers: 2,
            },
            crate::progress::none(),
            Arc::new(AtomicBool::new(false)),
        );
        store.put(&key, stream).await.expect("put");
        running.finish().await.expect("pipeline");
        key
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// Any input, any frame size, any range: the range read through the
        /// seek table equals the same slice of the input, and a whole read-back
        /// reproduces the input's digest.
        #[test]
        fn any_range_reads_back_exactly(
            data in proptest::collection::vec(any::<u8>(), 0..40_000),
            frame_size in 4096usize..20_000,
            a in any::<u64>(),
            b in any::<u64>(),
        ) {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("rt");
            rt.block_on(async {
                let dir = tempfile::tempdir().expect("tmp");
                let store = LocalStore::new(dir.path());
                let key = store_through_pipeline(&store, data.clone(), frame_size).await;
                let len = data.len() as u64;
                let (start, end) = if len == 0 { (0, 0) } else { let (x, y) = (a % (len + 1), b % (len + 1)); (x.min(y), x.max(y)) };
                let mut out = Vec::new();
                let n = read_range(&store, &key, start, end - start, &mut out).await.expect("range");
                prop_assert_eq!(n, end - start);
                prop_assert_eq!(&out[..], &data[start as usize..end as usize]);
                let (got, _) = read_back(&store, &key, io::sink()).await.expect("read back");
                prop_assert_eq!(got.raw_sha256, crate::evidence::sha256_hex(&data));
                prop_assert!(got.decode_error.is_none());
                let past = read_range(&store, &key, len, 1, &mut Vec::new()).await;
                let out_of_range = matches!(past, Err(ReadError::OutOfRange { .. }));
                prop_assert!(out_of_range, "reading past the end must fail");
                Ok(())
            })?;
        }
    }

    #[tokio::test]
    async fn a_corrupt_seek_table_is_refused() {
        let dir = tempfile::tempdir().expect("tmp");
        let store = LocalStore::new(dir.path());
        let key = store_through_pipeline(&store, vec![5u8; 50_000], 8192).await;
        let path = dir.path().join(key.as_str());
        let mut bytes = std::fs::read(&path).expect("read");
        let n = bytes.len();
        bytes[n - 1] ^= 0xff; // the footer magic
        std::fs::write(&path, &bytes).expect("write");
        let err = seek_table(&store, &key).await.expect_err("corrupt");
        assert!(err.to_string().contains("no valid seek table"), "{err}");
    }

    /// A seekable object built by hand: `frames` are (raw bytes, the raw
    /// size its seek table entry claims).
    fn write_object(store_dir: &std::path::Path, frames: &[(&[u8], u32)]) -> ObjectKey {
        let key = ObjectKey::new("cases/p/artefacts/tampered.zst").expect("key");
        let mut table = zeekstd::SeekTable::new();
        let mut bytes = Vec::new();
        for (raw, claimed) in frames {
            let frame = zstd::encode_all(*raw, 1).expect("encode");
            table
                .log_frame(u32::try_from(frame.len()).expect("small"), *claimed)
                .expect("log frame");
            bytes.extend_from_slice(&frame);
        }
        let mut ser = table.into_serializer();
        let mut tail = vec![0u8; ser.encoded_len()];
        let n = ser.write_into(&mut tail);
        bytes.extend_from_slice(&tail[..n]);
        let path = store_dir.join(key.as_str());
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(&path, &bytes).expect("write");
        key
    }

    #[tokio::test]
    async fn range_export_refuses_a_frame_shorter_than_its_seek_table_entry() {
        let dir = tempfile::tempdir().expect("tmp");
        let store = LocalStore::new(dir.path());
        let key = write_object(dir.path(), &[(b"ten bytes!", 1000)]);
        let mut out = Vec::new();
        let err = read_range(&store, &key, 0, 1000, &mut out)
            .await
            .expect_err("the frame holds 10 of the 1000 bytes its entry claims");
        assert!(
            matches!(err, ReadError::Decode { raw_offset: 10, .. }),
            "{err:?}"
        );
        assert!(
            crate::error_chain(&err).contains("seek table entry says 1000"),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn range_export_decodes_a_frame_only_up_to_the_range() {
        // 64 MiB of zeros in one frame of a few KiB: a range of its first
        // bytes is served without inflating the rest.
        let dir = tempfile::tempdir().expect("tmp");
        let store = LocalStore::new(dir.path());
        let zeros = vec![0u8; 64 << 20];
        let key = write_object(dir.path(), &[(b"head", 4), (&zeros, 64 << 20)]);
        let mut out = Vec::new();
        let n = read_range(&store, &key, 2, 6, &mut out)
            .await
            .expect("range");
        assert_eq!(n, 6);
        assert_eq!(out, b"ad\0\0\0\0");
    }
}
