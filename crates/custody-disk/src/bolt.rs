//! A read-only reader of bbolt (BoltDB) files, the key-value store in which
//! containerd keeps its metadata (`meta.db`) and its snapshotters their
//! snapshots (`metadata.db`).
//!
//! The file is a B+ tree of fixed-size pages: two meta pages (the valid one
//! with the higher transaction id wins), branch pages of `(key, child page)`
//! and leaf pages of `(key, value)`, where a value flagged as a bucket holds
//! a nested tree (its root page, or for a small bucket the page itself,
//! inline). Every offset, count and page id is checked against the file;
//! a loop of pages or a tree deeper than [`MAX_DEPTH`] is an error, never a
//! hang.

use std::collections::HashSet;

use crate::bytes::{le16, le32, le64};

const MAGIC: u32 = 0xED0C_DAED;
const PAGE_HEADER: usize = 16;
const ELEMENT: usize = 16;
const BRANCH_PAGE: u16 = 0x01;
const LEAF_PAGE: u16 = 0x02;
const BUCKET_LEAF: u32 = 0x01;
/// Offset of the checksum in a meta page's body: it covers the bytes before it.
const META_CHECKSUM_AT: usize = 56;
/// bbolt's trees are a handful of levels deep; this bounds a crafted one.
pub const MAX_DEPTH: usize = 32;

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum BoltError {
    #[error("not a bbolt file: no valid meta page (magic, version 2, checksum)")]
    NotBolt,
    #[error("page {page} lies outside the file ({pages} pages of {page_size} bytes)")]
    PageOutOfRange {
        page: u64,
        pages: u64,
        page_size: usize,
    },
    #[error("page {page}: {why}")]
    BadPage { page: u64, why: String },
    #[error("bucket tree deeper than {MAX_DEPTH} levels, or a page reached twice (page {page})")]
    Loop { page: u64 },
}

/// An open bbolt file, borrowed.
#[derive(Debug, Clone, Copy)]
pub struct Bolt<'a> {
    data: &'a [u8],
    page_size: usize,
    root: u64,
    txid: u64,
}

/// A bucket: its root page, or an inline page held in its parent's value.
#[derive(Debug, Clone, Copy)]
pub struct Bucket<'a> {
    db: Bolt<'a>,
    root: Root<'a>,
}

#[derive(Debug, Clone, Copy)]
enum Root<'a> {
    Page(u64),
    Inline(&'a [u8]),
}

#[derive(Debug, Clone, Copy)]
pub enum Value<'a> {
    Data(&'a [u8]),
    Bucket(Bucket<'a>),
}

impl<'a> Value<'a> {
    pub fn data(self) -> Option<&'a [u8]> {
        match self {
            Value::Data(d) => Some(d),
            Value::Bucket(_) => None,
        }
    }

    pub fn bucket(self) -> Option<Bucket<'a>> {
        match self {
            Value::Bucket(b) => Some(b),
            Value::Data(_) => None,
        }
    }
}

fn fnv1a64(b: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &x in b {
        h ^= u64::from(x);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// A meta page body at `at`, when it is a valid one: (page size, root page, txid).
fn meta_at(data: &[u8], at: usize) -> Option<(usize, u64, u64)> {
    let body = data.get(at + PAGE_HEADER..at + PAGE_HEADER + META_CHECKSUM_AT + 8)?;
    if le32(body, 0) != MAGIC || le32(body, 4) != 2 {
        return None;
    }
    let covered = body.get(..META_CHECKSUM_AT)?;
    if fnv1a64(covered) != le64(body, META_CHECKSUM_AT) {
        return None;
    }
    let page_size = usize::try_from(le32(body, 8)).ok()?;
    if !(512..=1 << 20).contains(&page_size) || !page_size.is_power_of_two() {
        return None;
    }
    Some((page_size, le64(body, 16), le64(body, 48)))
}

impl<'a> Bolt<'a> {
    /// Opens `data`, the whole file, at its newest valid meta page.
    pub fn open(data: &'a [u8]) -> Result<Self, BoltError> {
        let first = meta_at(data, 0);
        // The second meta page sits one page in; a damaged first page hides
        // the page size, so try the sizes bbolt is built with.
        let sizes: Vec<usize> = match first {
            Some((ps, _, _)) => vec![ps],
            None => vec![4096, 8192, 16384, 65536],
        };
        let second = sizes
            .iter()
            .find_map(|&ps| meta_at(data, ps).filter(|m| m.0 == ps));
        let (page_size, root, txid) = match (first, second) {
            (Some(a), Some(b)) => {
                if b.2 > a.2 {
                    b
                } else {
                    a
                }
            }
            (Some(a), None) => a,
            (None, Some(b)) => b,
            (None, None) => return Err(BoltError::NotBolt),
        };
        Ok(Self {
            data,
            page_size,
            root,
            txid,
        })
    }

    /// The transaction id of the meta page read: two reads of a live file
    /// that give the same id read the same committed state.
    pub fn txid(&self) -> u64 {
        self.txid
    }

    pub fn root(&self) -> Bucket<'a> {
        Bucket {
            db: *self,
            root: Root::Page(self.root),
        }
    }

    /// The bucket at `path` from the root, if every step is a bucket.
    pub fn bucket(&self, path: &[&[u8]]) -> Result<Option<Bucket<'a>>, BoltError> {
        let mut b = self.root();
        for step in path {
            match b.get(step)? {
                Some(Value::Bucket(next)) => b = next,
                _ => return Ok(None),
            }
        }
        Ok(Some(b))
    }

    /// The bytes of page `id` with its overflow pages.
    fn page(&self, id: u64) -> Result<&'a [u8], BoltError> {
        let pages = (self.data.len() / self.page_size) as u64;
        let out = BoltError::PageOutOfRange {
            page: id,
            pages,
            page_size: self.page_size,
        };
        if id >= pages {
            return Err(out);
        }
        let start = usize::try_from(id).map_err(|_| out.clone())? * self.page_size;
        let head = self
            .data
            .get(start..start + PAGE_HEADER)
            .ok_or(out.clone())?;
        if le64(head, 0) != id {
            return Err(BoltError::BadPage {
                page: id,
                why: format!("its header names page {}", le64(head, 0)),
            });
        }
        let span = (u64::from(le32(head, 12)) + 1).saturating_mul(self.page_size as u64);
        let end = (start as u64).saturating_add(span);
        let end = usize::try_from(end).map_err(|_| out.clone())?;
        self.data.get(start..end).ok_or(out)
    }
}

impl<'a> Bucket<'a> {
    /// The value of `key`, if present.
    pub fn get(&self, key: &[u8]) -> Result<Option<Value<'a>>, BoltError> {
        Ok(self
            .entries()?
            .into_iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v))
    }

    /// The data value of `key`; `None` when absent or a bucket.
    pub fn data(&self, key: &[u8]) -> Result<Option<&'a [u8]>, BoltError> {
        Ok(self.get(key)?.and_then(Value::data))
    }

    /// Every key and value, in key order.
    pub fn entries(&self) -> Result<Vec<(&'a [u8], Value<'a>)>, BoltError> {
        let mut out = Vec::new();
        match self.root {
            Root::Inline(page) => self.leaf(u64::MAX, page, &mut out)?,
            Root::Page(id) => {
                let mut seen = HashSet::new();
                self.walk(id, 0, &mut seen, &mut out)?;
            }
        }
        Ok(out)
    }

    fn walk(
        &self,
        id: u64,
        depth: usize,
        seen: &mut HashSet<u64>,
        out: &mut Vec<(&'a [u8], Value<'a>)>,
    ) -> Result<(), BoltError> {
        if depth > MAX_DEPTH || !seen.insert(id) {
            return Err(BoltError::Loop { page: id });
        }
        let page = self.db.page(id)?;
        let flags = le16(page, 8);
        if flags & LEAF_PAGE != 0 {
            return self.leaf(id, page, out);
        }
        if flags & BRANCH_PAGE == 0 {
            return Err(BoltError::BadPage {
                page: id,
                why: format!("flags {flags:#x}: neither a branch nor a leaf"),
            });
        }
        for i in 0..usize::from(le16(page, 10)) {
            let at = PAGE_HEADER + i * ELEMENT;
            if at + ELEMENT > page.len() {
                return Err(BoltError::BadPage {
                    page: id,
                    why: format!("branch element {i} lies past the page"),
                });
            }
            self.walk(le64(page, at + 8), depth + 1, seen, out)?;
        }
        Ok(())
    }

    fn leaf(
        &self,
        id: u64,
        page: &'a [u8],
        out: &mut Vec<(&'a [u8], Value<'a>)>,
    ) -> Result<(), BoltError> {
        let bad = |why: String| BoltError::BadPage { page: id, why };
        if le16(page, 8) & LEAF_PAGE == 0 {
            return Err(bad(format!("flags {:#x}: not a leaf", le16(page, 8))));
        }
        for i in 0..usize::from(le16(page, 10)) {
            let at = PAGE_HEADER + i * ELEMENT;
            if at + ELEMENT > page.len() {
                return Err(bad(format!("leaf element {i} lies past the page")));
            }
            let flags = le32(page, at);
            let key_at = at + le32(page, at + 4) as usize;
            let ksize = le32(page, at + 8) as usize;
            let vsize = le32(page, at + 12) as usize;
            let key = page
                .get(key_at..key_at.saturating_add(ksize))
                .ok_or_else(|| bad(format!("key {i} lies past the page")))?;
            let v_at = key_at + ksize;
            let value = page
                .get(v_at..v_at.saturating_add(vsize))
                .ok_or_else(|| bad(format!("value {i} lies past the page")))?;
            let value = if flags & BUCKET_LEAF != 0 {
                if value.len() < 16 {
                    return Err(bad(format!("bucket {i} has a {vsize}-byte header")));
                }
                let root = le64(value, 0);
                let root = if root == 0 {
                    Root::Inline(value.get(16..).unwrap_or_default())
                } else {
                    Root::Page(root)
                };
                Value::Bucket(Bucket { db: self.db, root })
            } else {
                Value::Data(value)
            };
            out.push((key, value));
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::expect_used)]

    use super::*;

    /// A leaf page's body: elements then keys and values.
    fn leaf_body(items: &[(&[u8], u32, Vec<u8>)]) -> Vec<u8> {
        let mut elems = Vec::new();
        let mut tail = Vec::new();
        let n = items.len();
        for (i, (k, flags, v)) in items.iter().enumerate() {
            let pos = (n - i) * ELEMENT + tail.len();
            elems.extend_from_slice(&flags.to_le_bytes());
            elems.extend_from_slice(&(pos as u32).to_le_bytes());
            elems.extend_from_slice(&(k.len() as u32).to_le_bytes());
            elems.extend_from_slice(&(v.len() as u32).to_le_bytes());
            tail.extend_from_slice(k);
            tail.extend_from_slice(v);
        }
        elems.extend_from_slice(&tail);
        elems
    }

    fn header(id: u64, flags: u16, count: u16) -> Vec<u8> {
        let mut h = id.to_le_bytes().to_vec();
        h.extend_from_slice(&flags.to_le_bytes());
        h.extend_from_slice(&count.to_le_bytes());
        h.extend_from_slice(&0u32.to_le_bytes());
        h
    }

    fn meta(id: u64, page_size: u32, root: u64, txid: u64) -> Vec<u8> {
        let mut body = Vec::new();
        body.extend_from_slice(&MAGIC.to_le_bytes());
        body.extend_from_slice(&2u32.to_le_bytes());
        body.extend_from_slice(&page_size.to_le_bytes());
        body.extend_from_slice(&0u32.to_le_bytes());
        body.extend_from_slice(&root.to_le_bytes());
        body.extend_from_slice(&0u64.to_le_bytes()); // sequence
        body.extend_from_slice(&2u64.to_le_bytes()); // freelist
        body.extend_from_slice(&8u64.to_le_bytes()); // high water
        body.extend_from_slice(&txid.to_le_bytes());
        let sum = fnv1a64(&body);
        body.extend_from_slice(&sum.to_le_bytes());
        let mut p = header(id, 0x04, 0);
        p.extend_from_slice(&body);
        p
    }

    /// A bbolt file of 4 KiB pages: metas 0 and 1 (txid 1 and 2, root page
    /// 3), and `pages` from page 3 on, each padded.
    pub(crate) fn file(pages: &[Vec<u8>], root_of_newest: u64) -> Vec<u8> {
        let ps = 4096usize;
        let mut out = Vec::new();
        for (id, txid, root) in [(0u64, 1u64, 3u64), (1, 2, root_of_newest)] {
            let mut m = meta(id, ps as u32, root, txid);
            m.resize(ps, 0);
            out.extend_from_slice(&m);
        }
        let mut free = header(2, 0x10, 0);
        free.resize(ps, 0);
        out.extend_from_slice(&free);
        for p in pages {
            let mut p = p.clone();
            p.resize(ps, 0);
            out.extend_from_slice(&p);
        }
        out
    }

    pub(crate) fn leaf(id: u64, items: &[(&[u8], u32, Vec<u8>)]) -> Vec<u8> {
        let mut p = header(id, LEAF_PAGE, items.len() as u16);
        p.extend_from_slice(&leaf_body(items));
        p
    }

    /// An inline bucket's value: the 16-byte header (root 0) and its page.
    pub(crate) fn inline(items: &[(&[u8], u32, Vec<u8>)]) -> Vec<u8> {
        let mut v = vec![0u8; 16];
        v.extend_from_slice(&leaf(0, items));
        v
    }

    fn paged(root: u64) -> Vec<u8> {
        let mut v = root.to_le_bytes().to_vec();
        v.extend_from_slice(&[0u8; 8]);
        v
    }

    #[test]
    fn nested_inline_and_paged_buckets_through_a_branch() {
        let inner = inline(&[(b"k", 0, b"v".to_vec())]);
        // Page 3: a branch over leaves 4 and 5; page 6: a paged bucket.
        let mut branch = header(3, BRANCH_PAGE, 2);
        for (i, child) in [4u64, 5].into_iter().enumerate() {
            let pos = (2 - i) * ELEMENT + i;
            branch.extend_from_slice(&(pos as u32).to_le_bytes());
            branch.extend_from_slice(&1u32.to_le_bytes());
            branch.extend_from_slice(&child.to_le_bytes());
        }
        branch.extend_from_slice(b"ab");
        let l4 = leaf(4, &[(b"a", BUCKET_LEAF, inner), (b"a2", 0, b"x".to_vec())]);
        let l5 = leaf(5, &[(b"b", BUCKET_LEAF, paged(6))]);
        let l6 = leaf(6, &[(b"deep", 0, b"yes".to_vec())]);
        let data = file(&[branch, l4, l5, l6], 3);
        let db = Bolt::open(&data).unwrap();
        assert_eq!(db.txid(), 2);
        let keys: Vec<&[u8]> = db.root().entries().unwrap().iter().map(|e| e.0).collect();
        assert_eq!(keys, [&b"a"[..], b"a2", b"b"]);
        let a = db.bucket(&[b"a"]).unwrap().unwrap();
        assert_eq!(a.data(b"k").unwrap(), Some(&b"v"[..]));
        let b = db.bucket(&[b"b"]).unwrap().unwrap();
        assert_eq!(b.data(b"deep").unwrap(), Some(&b"yes"[..]));
        assert!(
            db.bucket(&[b"a2"]).unwrap().is_none(),
            "a value is not a bucket"
        );
    }

    #[test]
    fn p2_hostile_files_are_errors_never_hangs_or_panics() {
        assert_eq!(Bolt::open(b"short").unwrap_err(), BoltError::NotBolt);
        // A bucket whose root is itself: a loop.
        let l3 = leaf(3, &[(b"self", BUCKET_LEAF, paged(3))]);
        let data = file(&[l3], 3);
        let db = Bolt::open(&data).unwrap();
        let b = db.bucket(&[b"self"]).unwrap().unwrap();
        // The nested bucket's own walk sees page 3 once; a bucket inside it
        // pointing back is found level by level, so bound the descent.
        let mut cur = b;
        for _ in 0..3 {
            cur = cur.get(b"self").unwrap().unwrap().bucket().unwrap();
        }
        // A page past the end, and an element past its page.
        let l3 = leaf(3, &[(b"far", BUCKET_LEAF, paged(999))]);
        let data = file(&[l3], 3);
        let db = Bolt::open(&data).unwrap();
        let far = db.bucket(&[b"far"]).unwrap().unwrap();
        assert!(matches!(
            far.entries(),
            Err(BoltError::PageOutOfRange { page: 999, .. })
        ));
        let mut l3 = leaf(3, &[(b"k", 0, b"v".to_vec())]);
        l3[10] = 0xff; // count 255: elements run past the page
        l3[11] = 0x0f;
        let data = file(&[l3], 3);
        let err = Bolt::open(&data).unwrap().root().entries().unwrap_err();
        assert!(matches!(err, BoltError::BadPage { page: 3, .. }), "{err}");
        // A branch that names itself.
        let mut branch = header(3, BRANCH_PAGE, 1);
        branch.extend_from_slice(&16u32.to_le_bytes());
        branch.extend_from_slice(&0u32.to_le_bytes());
        branch.extend_from_slice(&3u64.to_le_bytes());
        let data = file(&[branch], 3);
        let err = Bolt::open(&data).unwrap().root().entries().unwrap_err();
        assert_eq!(err, BoltError::Loop { page: 3 });
    }

    #[test]
    fn a_damaged_newest_meta_falls_back_to_the_other() {
        let l3 = leaf(3, &[(b"old", 0, b"1".to_vec())]);
        let l4 = leaf(4, &[(b"new", 0, b"2".to_vec())]);
        let mut data = file(&[l3, l4], 4);
        assert!(
            Bolt::open(&data)
                .unwrap()
                .root()
                .data(b"new")
                .unwrap()
                .is_some()
        );
        data[4096 + PAGE_HEADER + 20] ^= 1; // meta 1's root, under its checksum
        let db = Bolt::open(&data).unwrap();
        assert_eq!(db.txid(), 1);
        assert_eq!(db.root().data(b"old").unwrap(), Some(&b"1"[..]));
    }
}
