//! Buffers handed round, not allocated anew.
//!
//! An acquisition moves every byte through buffers of a few fixed sizes (a
//! block of a disk read, a raw frame, a compressed frame), each made on one
//! thread and dropped on another. Fresh for each, they cost a page fault per
//! 4 KiB, and the allocator keeps what the other threads freed for a while,
//! so the process holds several times the buffers actually alive. A pool
//! keeps the buffers once they are dropped and hands them out again: the
//! memory stays what the pipeline bounds, and is touched once.

use std::sync::{Arc, Mutex};

use bytes::Bytes;

/// Buffers of one size, shared by the threads of one acquisition.
#[derive(Clone, Debug)]
pub struct BufPool {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    free: Mutex<Vec<Vec<u8>>>,
    /// Each buffer's room.
    size: usize,
    /// Free buffers kept at most: what is dropped beyond goes back to the allocator.
    keep: usize,
}

impl BufPool {
    /// A pool of buffers with room for `size` bytes, keeping up to `keep` free ones.
    pub fn new(size: usize, keep: usize) -> Self {
        Self {
            inner: Arc::new(Inner {
                free: Mutex::new(Vec::new()),
                size,
                keep,
            }),
        }
    }

    /// An empty buffer with room for the pool's size: a returned one when
    /// there is one.
    pub fn take(&self) -> Vec<u8> {
        let mut v = self.reused_or_new(self.inner.size);
        v.clear();
        v
    }

    /// A kept buffer as it was given back, or a new one of `capacity`.
    fn reused_or_new(&self, capacity: usize) -> Vec<u8> {
        let reused = self.inner.free.lock().ok().and_then(|mut f| f.pop());
        reused.unwrap_or_else(|| Vec::with_capacity(capacity))
    }

    /// A buffer of `len` bytes to be overwritten: a reused one keeps the
    /// bytes it held (only a shortfall is zeroed), so filling it costs no
    /// pass of zeroing. Whoever fills it truncates it to what was written.
    pub fn take_filled(&self, len: usize) -> Vec<u8> {
        let mut v = self.reused_or_new(self.inner.size.max(len));
        v.resize(len, 0);
        v
    }

    /// `buf` as [`Bytes`] that give the buffer back to the pool when the
    /// last of them (clones and slices included) is dropped.
    pub fn freeze(&self, buf: Vec<u8>) -> Bytes {
        Bytes::from_owner(Pooled {
            buf,
            pool: self.clone(),
        })
    }

    fn give_back(&self, buf: Vec<u8>) {
        if buf.capacity() < self.inner.size {
            return;
        }
        if let Ok(mut f) = self.inner.free.lock()
            && f.len() < self.inner.keep
        {
            f.push(buf);
        }
    }

    /// Free buffers held now.
    #[cfg(test)]
    fn free(&self) -> usize {
        self.inner.free.lock().map(|f| f.len()).unwrap_or(0)
    }
}

struct Pooled {
    buf: Vec<u8>,
    pool: BufPool,
}

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        self.pool.give_back(std::mem::take(&mut self.buf));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_buffer_comes_back_when_its_last_slice_is_dropped() {
        let pool = BufPool::new(16, 2);
        let mut v = pool.take();
        assert!(v.is_empty() && v.capacity() >= 16);
        v.extend_from_slice(b"abcdefgh");
        let at = v.as_ptr();
        let bytes = pool.freeze(v);
        let mut head = bytes.clone();
        let tail = head.split_off(4);
        drop(bytes);
        assert_eq!((&head[..], &tail[..]), (&b"abcd"[..], &b"efgh"[..]));
        drop(head);
        assert_eq!(pool.free(), 0, "a slice still holds it");
        drop(tail);
        assert_eq!(pool.free(), 1);
        let again = pool.take();
        assert!(again.is_empty(), "handed out empty");
        assert_eq!(again.as_ptr(), at, "the same memory");
    }

    #[test]
    fn a_filled_buffer_is_reused_at_the_asked_length() {
        let pool = BufPool::new(16, 2);
        let fresh = pool.take_filled(12);
        assert_eq!(fresh, vec![0u8; 12], "a new buffer is zeroed");
        let at = fresh.as_ptr();
        let mut v = fresh;
        v.copy_from_slice(b"abcdefghijkl");
        drop(pool.freeze(v));
        let shorter = pool.take_filled(4);
        assert_eq!((&shorter[..], shorter.as_ptr()), (&b"abcd"[..], at));
        drop(pool.freeze(shorter));
        // Longer than what it last held: the old bytes, then zeros.
        let longer = pool.take_filled(6);
        assert_eq!(&longer[..], b"abcd\0\0");
    }

    #[test]
    fn at_most_keep_buffers_are_kept_and_small_ones_never() {
        let pool = BufPool::new(8, 1);
        let a = pool.freeze(pool.take());
        let b = pool.freeze(pool.take());
        drop((a, b));
        assert_eq!(pool.free(), 1);
        let small = pool.freeze(Vec::with_capacity(2));
        drop(small);
        assert_eq!(pool.free(), 1);
    }
}
