//! The XFS reader: v5 (CRC-enabled, mkfs.xfs's default since 2014 and the
//! root file system of Amazon Linux 2 and 2023) and the older v4.
//!
//! What is read: the primary superblock (geometry, features), inodes
//! located by number (AG number, block in the AG, slot in the block),
//! v1/v2/v3 inode cores with legacy or `bigtime` timestamps and 32- or
//! 64-bit (`nrext64`) extent counts, data forks in all three forms (local,
//! extent list, B+tree of extents) and directories in all four (shortform,
//! block, leaf, node: the last two are read through their data blocks,
//! which hold every name; the leaf and free-index blocks only index them).
//!
//! Extended attributes are read in every form an extent list reaches:
//! short form (in the inode, where the few small ones overlayfs sets
//! live), one leaf block, and a node tree of leaves, with values local to
//! a leaf or in remote blocks. An attribute fork so fragmented that it
//! needs an extent B+tree is not read, and says so.
//!
//! Not read: the log (a dirty log is not replayed), checksums (XFS uses
//! CRC32C), the realtime device, and deleted files
//! (XFS clears a freed inode's mode and extent count, so
//! [`FileSystem::orphans`] is empty).
//!
//! All on-disk integers are big-endian. Layouts follow the kernel's
//! `Documentation/filesystems/xfs` and the "XFS Algorithms & Data
//! Structures" book.

use std::collections::HashSet;
use std::sync::Arc;

use super::{Entry, Extent, FileSystem, FsError, Kind, Node, Problem, Time, Times};
use crate::bytes::{be16, be32, be64, slice, u8_at};
use crate::image::ReadAt;

const SB_MAGIC: u32 = 0x5846_5342; // "XFSB"
const INODE_MAGIC: u16 = 0x494e; // "IN"
const BMAP_MAGIC: u32 = 0x424d_4150; // "BMAP", v4 extent-tree block
const BMAP_CRC_MAGIC: u32 = 0x424d_4133; // "BMA3", v5
const DIR2_BLOCK_MAGIC: u32 = 0x5844_3242; // "XD2B"
const DIR3_BLOCK_MAGIC: u32 = 0x5844_4233; // "XDB3"
const DIR2_DATA_MAGIC: u32 = 0x5844_3244; // "XD2D"
const DIR3_DATA_MAGIC: u32 = 0x5844_4433; // "XDD3"
const SYMLINK_MAGIC: u32 = 0x5853_4c4d; // "XSLM", v5 remote symlink block

/// Directory data blocks live below this byte of the directory's fork;
/// leaf blocks start here and free-index blocks at twice it.
const DIR_LEAF_OFFSET: u64 = 1 << 35;
/// The longest symlink target XFS allows.
const SYMLINK_MAX: u64 = 1024;
/// v5 remote symlink blocks start with this header.
const SYMLINK_HDR: u64 = 56;

const FMT_DEV: u8 = 0;
const FMT_LOCAL: u8 = 1;
const FMT_EXTENTS: u8 = 2;
const FMT_BTREE: u8 = 3;

const DIFLAG_REALTIME: u16 = 0x1;
const DIFLAG2_BIGTIME: u64 = 1 << 3;
const DIFLAG2_NREXT64: u64 = 1 << 4;

/// Incompatible v5 features: file type in entries, sparse inode chunks,
/// meta UUID, bigtime, needs repair, nrext64, exchange-range, parent
/// pointers, metadata directory tree. None changes what this reader reads
/// except `ftype`; an unknown one is reported.
const INCOMPAT_FTYPE: u32 = 0x1;
const INCOMPAT_NEEDSREPAIR: u32 = 0x10;
const INCOMPAT_KNOWN: u32 = 0x1ff;

/// A real extent tree of a 64-bit-extent-count file is at most this deep;
/// deeper is a loop or garbage.
const MAX_BTREE_LEVEL: u16 = 14;
/// The most extents one fork may give: a fragmented multi-terabyte file
/// stays under it, and a hostile tree cannot make us allocate without end.
const MAX_EXTENTS: usize = 1 << 21;

/// The superblock's geometry, checked at open.
#[derive(Debug, Clone)]
struct Geometry {
    block_size: u64,
    agblocks: u64,
    agcount: u64,
    agblklog: u32,
    inopblog: u32,
    inode_size: u64,
    dir_block_size: u64,
    root: u64,
    v5: bool,
    ftype: bool,
}

pub struct Xfs {
    volume: Arc<dyn ReadAt>,
    geo: Geometry,
    problems: Vec<Problem>,
}

/// One 128-bit extent record, in file-system blocks.
#[derive(Debug, Clone, Copy)]
struct Rec {
    /// First block in the file.
    off: u64,
    /// First block in the file system (AG number and AG block packed).
    block: u64,
    count: u64,
    /// Allocated but never written: reads as zeros.
    unwritten: bool,
}

impl Rec {
    fn parse(b: &[u8]) -> Self {
        let l0 = be64(b, 0);
        let l1 = be64(b, 8);
        Self {
            unwritten: l0 >> 63 == 1,
            off: (l0 & ((1 << 63) - 1)) >> 9,
            block: ((l0 & 0x1ff) << 43) | (l1 >> 21),
            count: l1 & ((1 << 21) - 1),
        }
    }
}

/// An inode as read: its core's fields and its data fork's bytes.
struct Inode {
    ino: u64,
    /// Its byte in the volume.
    at: u64,
    raw: Vec<u8>,
    mode: u16,
    format: u8,
    flags: u16,
    flags2: u64,
    /// Where the core ends and the data fork starts.
    core: usize,
    /// The data fork's length in the inode.
    dsize: usize,
    size: u64,
    nextents: u64,
}

impl Inode {
    fn kind(&self) -> Kind {
        Kind::from_mode(u32::from(self.mode))
    }

    fn fork(&self) -> &[u8] {
        slice(&self.raw, self.core, self.dsize)
    }

    fn place(&self) -> String {
        format!("inode {}", self.ino)
    }
}

/// Opens the xfs file system on `volume`.
pub fn open(volume: Arc<dyn ReadAt>) -> Result<Box<dyn FileSystem>, FsError> {
    Ok(Box::new(Xfs::open(volume)?))
}

fn corrupt(at: impl Into<String>, what: impl Into<String>) -> FsError {
    FsError::corrupt(at, what)
}

fn log2_exact(v: u64) -> Option<u32> {
    v.is_power_of_two().then(|| v.trailing_zeros())
}

impl Xfs {
    pub fn open(volume: Arc<dyn ReadAt>) -> Result<Self, FsError> {
        let sb = volume
            .read_exact_at(0, 512)
            .map_err(|e| FsError::io("superblock at byte 0", e))?;
        let at = "superblock at byte 0";
        let magic = be32(&sb, 0);
        if magic != SB_MAGIC {
            return Err(corrupt(
                at,
                format!("not XFS: the magic is {magic:#010x}, not XFSB"),
            ));
        }
        let mut problems = Vec::new();
        let block_size = u64::from(be32(&sb, 4));
        log2_exact(block_size)
            .filter(|l| (9..=16).contains(l) && u32::from(u8_at(&sb, 120)) == *l)
            .ok_or_else(|| corrupt(at, format!("block size {block_size} is not valid")))?;
        let dblocks = be64(&sb, 8);
        let root = be64(&sb, 56);
        let agblocks = u64::from(be32(&sb, 84));
        let agcount = u64::from(be32(&sb, 88));
        let version = be16(&sb, 100);
        let inode_size = u64::from(be16(&sb, 104));
        let inopblock = u64::from(be16(&sb, 106));
        let inodelog = u32::from(u8_at(&sb, 122));
        let inopblog = u32::from(u8_at(&sb, 123));
        let agblklog = u32::from(u8_at(&sb, 124));
        let dirblklog = u32::from(u8_at(&sb, 192));
        let features2 = be32(&sb, 200);
        let incompat = be32(&sb, 216);
        if log2_exact(inode_size) != Some(inodelog) || !(256..=2048).contains(&inode_size) {
            return Err(corrupt(at, format!("inode size {inode_size} is not valid")));
        }
        if inopblock != block_size / inode_size || log2_exact(inopblock) != Some(inopblog) {
            return Err(corrupt(
                at,
                format!("{inopblock} inodes a block (log {inopblog}) do not fit the sizes"),
            ));
        }
        // agblklog is the log of agblocks rounded up to a power of two.
        if agblocks < 2
            || agblklog > 31
            || agblocks > 1 << agblklog
            || agblocks <= 1 << agblklog >> 1
        {
            return Err(corrupt(
                at,
                format!("{agblocks} blocks an AG (log {agblklog}) are not valid"),
            ));
        }
        if agcount == 0 {
            return Err(corrupt(at, "no allocation groups"));
        }
        let dir_block_size = block_size << dirblklog.min(8);
        if dirblklog > 8 || dir_block_size > 65536 {
            return Err(corrupt(
                at,
                format!("directory block log {dirblklog} is too big"),
            ));
        }
        let (v5, ftype) = match version & 0xf {
            5 => {
                if incompat & !INCOMPAT_KNOWN != 0 {
                    problems.push(Problem {
                        at: at.into(),
                        what: format!(
                            "unknown incompatible features {:#x}: read as if absent",
                            incompat & !INCOMPAT_KNOWN
                        ),
                    });
                }
                if incompat & INCOMPAT_NEEDSREPAIR != 0 {
                    problems.push(Problem {
                        at: at.into(),
                        what: "the file system is marked as needing xfs_repair".into(),
                    });
                }
                (true, incompat & INCOMPAT_FTYPE != 0)
            }
            4 => {
                if version & 0x2000 == 0 {
                    return Err(FsError::Unsupported {
                        at: at.into(),
                        what: "version 1 directories (XFS before 2002)".into(),
                    });
                }
                // v4 keeps ftype in features2, read only when "more bits" is set.
                (false, version & 0x8000 != 0 && features2 & 0x200 != 0)
            }
            v => {
                return Err(FsError::Unsupported {
                    at: at.into(),
                    what: format!("XFS version {v}"),
                });
            }
        };
        if u8_at(&sb, 126) != 0 {
            problems.push(Problem {
                at: at.into(),
                what: "mkfs did not finish (sb_inprogress is set)".into(),
            });
        }
        let want = dblocks.saturating_mul(block_size);
        if volume.size() < want {
            problems.push(Problem {
                at: format!("byte {}", volume.size()),
                what: format!(
                    "the volume is cut short: the file system is {want} bytes, the volume {}",
                    volume.size()
                ),
            });
        }
        let geo = Geometry {
            block_size,
            agblocks,
            agcount,
            agblklog,
            inopblog,
            inode_size,
            dir_block_size,
            root,
            v5,
            ftype,
        };
        let fs = Self {
            volume,
            geo,
            problems,
        };
        // The root must be where the superblock says: a bad number is a
        // bad superblock, worth saying at once.
        fs.inode_at(root)
            .map_err(|_| corrupt(at, format!("the root inode {root} is not valid")))?;
        Ok(fs)
    }

    /// An inode's byte in the volume, from its number: AG number, block in
    /// the AG, slot in the block.
    fn inode_at(&self, ino: u64) -> Result<u64, FsError> {
        let g = &self.geo;
        let bad = || corrupt(format!("inode {ino}"), "no such inode number");
        let agno = ino.checked_shr(g.agblklog + g.inopblog).unwrap_or(0);
        let agbno = (ino >> g.inopblog) & ((1 << g.agblklog) - 1);
        let slot = ino & ((1 << g.inopblog) - 1);
        if agno >= g.agcount || agbno >= g.agblocks {
            return Err(bad());
        }
        agno.checked_mul(g.agblocks)
            .and_then(|b| b.checked_add(agbno))
            .and_then(|b| b.checked_mul(g.block_size))
            .and_then(|b| b.checked_add(slot * g.inode_size))
            .ok_or_else(bad)
    }

    /// A file-system block number's byte in the volume.
    fn block_at(&self, fsb: u64) -> Option<u64> {
        let g = &self.geo;
        let agno = fsb >> g.agblklog;
        let agbno = fsb & ((1 << g.agblklog) - 1);
        if agno >= g.agcount || agbno >= g.agblocks {
            return None;
        }
        agno.checked_mul(g.agblocks)?
            .checked_add(agbno)?
            .checked_mul(g.block_size)
    }

    fn read(&self, at: u64, len: u64, place: &str) -> Result<Vec<u8>, FsError> {
        let len = usize::try_from(len).map_err(|_| corrupt(place, "too long to read"))?;
        self.volume
            .read_exact_at(at, len)
            .map_err(|e| FsError::io(format!("{place}, byte {at}"), e))
    }

    fn inode(&self, ino: u64) -> Result<Inode, FsError> {
        let at = self.inode_at(ino)?;
        let place = format!("inode {ino}");
        let raw = self.read(at, self.geo.inode_size, &place)?;
        let magic = be16(&raw, 0);
        if magic != INODE_MAGIC {
            return Err(corrupt(
                place,
                format!("no inode here (magic {magic:#06x}, not IN)"),
            ));
        }
        let version = u8_at(&raw, 4);
        let core = match version {
            1 | 2 if !self.geo.v5 => 100,
            3 if self.geo.v5 => 176,
            v => {
                return Err(corrupt(
                    place,
                    format!("inode version {v} on this file system"),
                ));
            }
        };
        if version == 3 && be64(&raw, 152) != ino {
            return Err(corrupt(
                place,
                format!("the inode says it is inode {}", be64(&raw, 152)),
            ));
        }
        let literal = raw.len().saturating_sub(core);
        let forkoff = usize::from(u8_at(&raw, 82)) * 8;
        if forkoff >= literal {
            return Err(corrupt(
                place,
                format!("the attribute fork starts at {forkoff}, past the inode's end"),
            ));
        }
        let dsize = if forkoff == 0 { literal } else { forkoff };
        let flags2 = if version == 3 { be64(&raw, 120) } else { 0 };
        let nextents = if flags2 & DIFLAG2_NREXT64 != 0 {
            be64(&raw, 24)
        } else {
            u64::from(be32(&raw, 76))
        };
        Ok(Inode {
            ino,
            at,
            mode: be16(&raw, 2),
            format: u8_at(&raw, 5),
            flags: be16(&raw, 90),
            flags2,
            core,
            dsize,
            size: be64(&raw, 56),
            nextents,
            raw,
        })
    }

    fn time(i: &Inode, at: usize) -> Time {
        if i.flags2 & DIFLAG2_BIGTIME != 0 {
            // Nanoseconds since 1901-12-13T20:45:52Z, the legacy format's
            // earliest second, so that both formats meet there.
            let t = be64(&i.raw, at);
            let secs = i64::try_from(t / 1_000_000_000).unwrap_or(i64::MAX) - (1i64 << 31);
            Time::new(secs, u32::try_from(t % 1_000_000_000).unwrap_or(0))
        } else {
            // The seconds are signed: before 1970 is negative.
            Time::new(i64::from(be32(&i.raw, at) as i32), be32(&i.raw, at + 4))
        }
    }

    fn node_of(&self, i: &Inode) -> Node {
        let v3 = i.core == 176;
        let links = if u8_at(&i.raw, 4) == 1 {
            u32::from(be16(&i.raw, 6))
        } else {
            be32(&i.raw, 16)
        };
        Node {
            id: i.ino,
            kind: i.kind(),
            mode: u32::from(i.mode & 0o7777),
            uid: be32(&i.raw, 8),
            gid: be32(&i.raw, 12),
            size: i.size,
            links,
            allocated: i.mode != 0,
            times: Times {
                accessed: Some(Self::time(i, 32)),
                modified: Some(Self::time(i, 40)),
                changed: Some(Self::time(i, 48)),
                born: v3.then(|| Self::time(i, 144)),
                deleted: None,
            },
            name_times: None,
        }
    }

    /// The data fork's extent records, sorted by file offset, checked not
    /// to overlap.
    fn records(&self, i: &Inode) -> Result<Vec<Rec>, FsError> {
        match i.format {
            FMT_EXTENTS => extent_list(i, i.fork(), i.nextents, "extents"),
            FMT_BTREE => sorted_apart(i, self.btree(i)?, "extents"),
            f => Err(corrupt(
                i.place(),
                format!("data fork format {f} holds no extents"),
            )),
        }
    }

    /// Walks the extent B+tree whose root is in the inode, depth first in
    /// key order, never visiting a block twice.
    fn btree(&self, i: &Inode) -> Result<Vec<Rec>, FsError> {
        let root = i.fork();
        let level = be16(root, 0);
        let numrecs = usize::from(be16(root, 2));
        // The root's key and pointer arrays are sized to the whole fork.
        let maxrecs = root.len().saturating_sub(4) / 16;
        if level == 0 || level > MAX_BTREE_LEVEL || numrecs > maxrecs {
            return Err(corrupt(
                i.place(),
                format!("extent tree root of level {level} with {numrecs} of {maxrecs} pointers"),
            ));
        }
        let mut stack: Vec<(u64, u16)> = (0..numrecs)
            .rev()
            .map(|k| (be64(root, 4 + maxrecs * 8 + k * 8), level - 1))
            .collect();
        let (magic, hdr) = if self.geo.v5 {
            (BMAP_CRC_MAGIC, 72usize)
        } else {
            (BMAP_MAGIC, 24usize)
        };
        let bs = usize::try_from(self.geo.block_size).unwrap_or(0);
        let block_max = (bs.saturating_sub(hdr)) / 16;
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        while let Some((fsb, want_level)) = stack.pop() {
            let place = format!("inode {} extent tree block {fsb}", i.ino);
            if !seen.insert(fsb) {
                return Err(corrupt(place, "the extent tree visits this block twice"));
            }
            let at = self
                .block_at(fsb)
                .ok_or_else(|| corrupt(&place, "no such block"))?;
            let b = self.read(at, self.geo.block_size, &place)?;
            let m = be32(&b, 0);
            let lvl = be16(&b, 4);
            let n = usize::from(be16(&b, 6));
            if m != magic || lvl != want_level || n > block_max {
                return Err(corrupt(
                    place,
                    format!(
                        "not an extent tree block of level {want_level} (magic {m:#010x}, level {lvl}, {n} records)"
                    ),
                ));
            }
            if lvl == 0 {
                if out.len().saturating_add(n) > MAX_EXTENTS {
                    return Err(corrupt(
                        i.place(),
                        format!("more than {MAX_EXTENTS} extents"),
                    ));
                }
                out.extend((0..n).map(|k| Rec::parse(slice(&b, hdr + k * 16, 16))));
            } else {
                if stack.len().saturating_add(seen.len()) > MAX_EXTENTS {
                    return Err(corrupt(i.place(), "the extent tree is too big"));
                }
                let ptrs = hdr + block_max * 8;
                stack.extend((0..n).rev().map(|k| (be64(&b, ptrs + k * 8), lvl - 1)));
            }
        }
        Ok(out)
    }

    /// The byte where a record's blocks start, checked to stay in its AG.
    fn rec_at(&self, i: &Inode, r: &Rec) -> Result<u64, FsError> {
        let agbno = r.block & ((1 << self.geo.agblklog) - 1);
        match self.block_at(r.block) {
            Some(at) if agbno.saturating_add(r.count) <= self.geo.agblocks => Ok(at),
            _ => Err(corrupt(
                i.place(),
                format!(
                    "extent at file block {} points to block {} (+{}), outside the file system",
                    r.off, r.block, r.count
                ),
            )),
        }
    }

    /// Records as byte extents, holes filled, cut to `0..size`; each
    /// checked to lie in the volume.
    fn byte_extents(&self, i: &Inode, recs: &[Rec], size: u64) -> Result<Vec<Extent>, FsError> {
        let bs = self.geo.block_size;
        let mut out = Vec::new();
        let mut pos = 0u64;
        for r in recs {
            let Some(lo) = r.off.checked_mul(bs).filter(|lo| *lo < size) else {
                break;
            };
            let len = r.count.saturating_mul(bs).min(size - lo);
            if len == 0 {
                continue;
            }
            if lo > pos {
                out.push(Extent {
                    logical: pos,
                    physical: None,
                    len: lo - pos,
                });
            }
            let physical = if r.unwritten {
                None
            } else {
                let at = self.rec_at(i, r)?;
                let end = at.saturating_add(len);
                if end > self.volume.size() {
                    return Err(corrupt(
                        i.place(),
                        format!(
                            "extent at file byte {lo} runs to byte {end}, past the volume's end at {}",
                            self.volume.size()
                        ),
                    ));
                }
                Some(at)
            };
            out.push(Extent {
                logical: lo,
                physical,
                len,
            });
            pos = lo + len;
        }
        if pos < size {
            out.push(Extent {
                logical: pos,
                physical: None,
                len: size - pos,
            });
        }
        Ok(out)
    }

    /// A v5 symlink's target outside the inode: each extent (written as
    /// one buffer) starts with a header, so the target is the rest of each
    /// extent, in order.
    fn remote_symlink(&self, i: &Inode, recs: &[Rec]) -> Result<Vec<Extent>, FsError> {
        if i.size > SYMLINK_MAX {
            return Err(corrupt(i.place(), format!("a symlink of {} bytes", i.size)));
        }
        let bs = self.geo.block_size;
        let mut out = Vec::new();
        let mut pos = 0u64;
        for r in recs {
            if pos >= i.size {
                break;
            }
            let at = self.rec_at(i, r)?;
            let place = format!("inode {} symlink block at byte {at}", i.ino);
            let hdr = self.read(at, SYMLINK_HDR, &place)?;
            if be32(&hdr, 0) != SYMLINK_MAGIC {
                return Err(corrupt(place, "no symlink block magic (XSLM)"));
            }
            let room = r.count.saturating_mul(bs).saturating_sub(SYMLINK_HDR);
            let len = room.min(i.size - pos);
            if at.saturating_add(SYMLINK_HDR + len) > self.volume.size() {
                return Err(corrupt(place, "the symlink runs past the volume's end"));
            }
            out.push(Extent {
                logical: pos,
                physical: Some(at.saturating_add(SYMLINK_HDR)),
                len,
            });
            pos += len;
        }
        if pos < i.size {
            return Err(corrupt(
                i.place(),
                format!("the symlink's blocks hold {pos} of its {} bytes", i.size),
            ));
        }
        Ok(out)
    }

    fn sf_dir(&self, i: &Inode) -> Result<Vec<Entry>, FsError> {
        let len = usize::try_from(i.size).unwrap_or(usize::MAX).min(i.dsize);
        let b = slice(i.fork(), 0, len);
        let count = usize::from(u8_at(b, 0));
        let wide = u8_at(b, 1) != 0;
        let ino_len = if wide { 8 } else { 4 };
        let mut at = 2 + ino_len;
        let mut out = Vec::with_capacity(count);
        for k in 0..count {
            let namelen = usize::from(u8_at(b, at));
            let name_at = at + 3;
            let mut p = name_at + namelen;
            let ft = if self.geo.ftype {
                p += 1;
                Some(u8_at(b, p - 1))
            } else {
                None
            };
            let ino = if wide {
                be64(b, p) & ((1 << 56) - 1)
            } else {
                u64::from(be32(b, p))
            };
            p += ino_len;
            if namelen == 0 || p > b.len() {
                return Err(corrupt(
                    format!(
                        "directory inode {} entry {k} at byte {at} of its fork",
                        i.ino
                    ),
                    "a short-form entry runs past the directory's end",
                ));
            }
            out.push(Entry {
                name: slice(b, name_at, namelen).to_vec(),
                id: ino,
                kind: ft.and_then(ftype_kind),
                deleted: false,
            });
            at = p;
        }
        Ok(out)
    }

    fn block_dir(&self, i: &Inode) -> Result<Vec<Entry>, FsError> {
        let recs = self.records(i)?;
        let bs = self.geo.block_size;
        let dbs = self.geo.dir_block_size;
        let per = dbs / bs;
        // The mapping in bytes, uncut: leaf blocks lie past the size.
        let mut map = Vec::with_capacity(recs.len());
        let mut dir_blocks: Vec<u64> = Vec::new();
        let cap = self.volume.size() / dbs + 1;
        for r in &recs {
            if r.unwritten || r.count == 0 {
                continue;
            }
            let lo = r.off.saturating_mul(bs);
            if lo >= DIR_LEAF_OFFSET {
                break;
            }
            map.push(Extent {
                logical: lo,
                physical: Some(self.rec_at(i, r)?),
                len: r.count.saturating_mul(bs),
            });
            let first = r.off / per;
            let last = (r.off + r.count - 1) / per;
            let from = dir_blocks.last().map_or(first, |l| first.max(l + 1));
            if (dir_blocks.len() as u64).saturating_add(last.saturating_sub(from)) > cap {
                return Err(corrupt(
                    i.place(),
                    "the directory claims more blocks than the volume holds",
                ));
            }
            dir_blocks.extend(from..=last);
        }
        let mut out = Vec::new();
        for db in dir_blocks {
            let lo = db * dbs;
            let place = format!("directory inode {} block {}", i.ino, db * per);
            let mut b = vec![0u8; usize::try_from(dbs).unwrap_or(0)];
            let from = map.partition_point(|x| x.logical + x.len <= lo);
            let map_part = map.get(from..).unwrap_or_default();
            let end = map_part.iter().position(|x| x.logical >= lo + dbs);
            let map_part = map_part
                .get(..end.unwrap_or(map_part.len()))
                .unwrap_or_default();
            let shifted: Vec<Extent> = map_part
                .iter()
                .map(|x| Extent {
                    logical: x.logical.saturating_sub(lo),
                    physical: x.physical.map(|p| p + lo.saturating_sub(x.logical)),
                    len: x.len - lo.saturating_sub(x.logical),
                })
                .collect();
            super::read_data(self.volume.as_ref(), &shifted, dbs, 0, &mut b).map_err(|e| {
                let p = Problem::from(&e);
                corrupt(&place, p.what)
            })?;
            self.data_block(&b, &place, &mut out)?;
        }
        Ok(out)
    }

    /// The names in one directory data block (or the single block of a
    /// block-form directory), `.` and `..` left out.
    fn data_block(&self, b: &[u8], place: &str, out: &mut Vec<Entry>) -> Result<(), FsError> {
        let magic = be32(b, 0);
        let hdr = if self.geo.v5 { 64 } else { 16 };
        let end = match magic {
            DIR2_BLOCK_MAGIC | DIR3_BLOCK_MAGIC => {
                // A block-form directory keeps its hash leaf and a tail
                // (leaf count, stale count) at the block's end.
                let count = u64::from(be32(b, b.len().saturating_sub(8)));
                let leaf = count.saturating_mul(8).saturating_add(8);
                usize::try_from(leaf)
                    .ok()
                    .and_then(|l| b.len().checked_sub(l))
                    .filter(|e| *e >= hdr)
                    .ok_or_else(|| {
                        corrupt(
                            place,
                            format!("a hash leaf of {count} entries overfills the block"),
                        )
                    })?
            }
            DIR2_DATA_MAGIC | DIR3_DATA_MAGIC => b.len(),
            m => {
                return Err(corrupt(
                    place,
                    format!("not a directory data block (magic {m:#010x})"),
                ));
            }
        };
        if (magic == DIR3_BLOCK_MAGIC || magic == DIR3_DATA_MAGIC) != self.geo.v5 {
            return Err(corrupt(place, "a directory block of the other XFS version"));
        }
        let mut at = hdr;
        while at < end {
            if be16(b, at) == 0xffff {
                // Free space: its length, a multiple of 8.
                let len = usize::from(be16(b, at + 2));
                if len < 8 || len % 8 != 0 || at + len > end {
                    return Err(corrupt(
                        format!("{place}, entry at byte {at}"),
                        format!("free space of {len} bytes"),
                    ));
                }
                at += len;
                continue;
            }
            let ino = be64(b, at);
            let namelen = usize::from(u8_at(b, at + 8));
            let extra = usize::from(self.geo.ftype);
            // inode, name length, name, file type, tag; 8-byte aligned.
            let len = (8 + 1 + namelen + extra + 2).div_ceil(8) * 8;
            if namelen == 0 || at + len > end {
                return Err(corrupt(
                    format!("{place}, entry at byte {at}"),
                    format!("an entry of {len} bytes runs past the entries' end at {end}"),
                ));
            }
            let name = slice(b, at + 9, namelen);
            if name != b"." && name != b".." {
                out.push(Entry {
                    name: name.to_vec(),
                    id: ino,
                    kind: if self.geo.ftype {
                        ftype_kind(u8_at(b, at + 9 + namelen))
                    } else {
                        None
                    },
                    deleted: false,
                });
            }
            at += len;
        }
        Ok(())
    }
}

/// The type a directory entry gives (`XFS_DIR3_FT_*`).
/// Attribute namespaces of a short-form entry's flags.
const ATTR_ROOT: u8 = 0x2;
const ATTR_SECURE: u8 = 0x4;
/// Flags that are a namespace (parent pointers included, never matched).
const ATTR_NAMESPACES: u8 = 0x2 | 0x4 | 0x8;

/// The `n` extent records a fork holds in the inode, sorted, checked
/// not to overlap.
fn extent_list(i: &Inode, fork: &[u8], n: u64, what: &str) -> Result<Vec<Rec>, FsError> {
    let fits = (fork.len() / 16) as u64;
    if n > fits {
        return Err(corrupt(
            i.place(),
            format!("{n} {what} in a fork that holds {fits}"),
        ));
    }
    let recs = fork
        .chunks_exact(16)
        .take(usize::try_from(n).unwrap_or(0))
        .map(Rec::parse)
        .collect();
    sorted_apart(i, recs, what)
}

/// `recs` sorted by file offset, refused when two overlap.
fn sorted_apart(i: &Inode, mut recs: Vec<Rec>, what: &str) -> Result<Vec<Rec>, FsError> {
    recs.sort_by_key(|r| r.off);
    let mut end = 0u64;
    for r in &recs {
        if r.off < end {
            return Err(corrupt(
                i.place(),
                format!("{what} overlap at file block {}", r.off),
            ));
        }
        end = r.off.saturating_add(r.count);
    }
    Ok(recs)
}

/// Attribute leaf and node blocks' magic numbers (`xfs_da_blkinfo.magic`), v4 and v5.
const ATTR_LEAF_MAGIC: u16 = 0xfbee;
const ATTR3_LEAF_MAGIC: u16 = 0x3bee;
const DA_NODE_MAGIC: u16 = 0xfebe;
const DA3_NODE_MAGIC: u16 = 0x3ebe;
/// A v5 remote attribute value block: "XARM", then a 56-byte header.
const ATTR3_RMT_MAGIC: u32 = 0x5841_524d;
const ATTR3_RMT_HDR: usize = 56;
/// A leaf entry's value is in the leaf; otherwise in remote blocks.
const ATTR_LOCAL: u8 = 0x1;
/// Being set or removed when the system stopped: not an attribute.
const ATTR_INCOMPLETE: u8 = 0x80;
/// The largest value Linux lets an attribute have.
const ATTR_VALUE_MAX: u64 = 64 << 10;
/// Attribute blocks one look-up visits at most: a hostile sibling chain
/// ends here.
const MAX_ATTR_BLOCKS: usize = 1 << 16;

/// Where a v4 or v5 attribute block's fields are: the leaf and node
/// headers follow a 12-byte (v4) or 56-byte (v5) block header.
struct AttrLayout {
    leaf_magic: u16,
    node_magic: u16,
    /// The entry count, in both leaf and node headers.
    count: usize,
    leaf_hdr: usize,
    node_hdr: usize,
}

impl AttrLayout {
    fn new(v5: bool) -> Self {
        if v5 {
            Self {
                leaf_magic: ATTR3_LEAF_MAGIC,
                node_magic: DA3_NODE_MAGIC,
                count: 56,
                leaf_hdr: 80,
                node_hdr: 64,
            }
        } else {
            Self {
                leaf_magic: ATTR_LEAF_MAGIC,
                node_magic: DA_NODE_MAGIC,
                count: 12,
                leaf_hdr: 32,
                node_hdr: 16,
            }
        }
    }
}

impl Xfs {
    /// The attribute fork's extent list (in the inode), sorted, checked
    /// not to overlap.
    fn attr_records(&self, i: &Inode, fork: &[u8]) -> Result<Vec<Rec>, FsError> {
        extent_list(i, fork, attr_extents(i), "attribute extents")
    }

    /// Block `lblk` of the attribute fork.
    fn attr_block(&self, i: &Inode, recs: &[Rec], lblk: u64) -> Result<Vec<u8>, FsError> {
        let place = format!("inode {} attribute block {lblk}", i.ino);
        let r = recs
            .iter()
            .find(|r| lblk >= r.off && lblk - r.off < r.count)
            .ok_or_else(|| corrupt(&place, "in no extent of the attribute fork"))?;
        if r.unwritten {
            return Err(corrupt(&place, "in an unwritten extent"));
        }
        let at = (lblk - r.off)
            .checked_mul(self.geo.block_size)
            .and_then(|o| self.rec_at(i, r).ok()?.checked_add(o))
            .ok_or_else(|| corrupt(&place, "outside the file system"))?;
        self.read(at, self.geo.block_size, &place)
    }

    /// An attribute in leaf or node form: down the first path of a node
    /// tree to its first leaf, then along the leaves' sibling links.
    fn attr_tree(
        &self,
        i: &Inode,
        fork: &[u8],
        ns: u8,
        want: &[u8],
    ) -> Result<Option<Vec<u8>>, FsError> {
        let recs = self.attr_records(i, fork)?;
        let lay = AttrLayout::new(self.geo.v5);
        let mut lblk = 0u64;
        let mut seen = HashSet::new();
        let mut depth = 0u16;
        loop {
            let place = format!("inode {} attribute block {lblk}", i.ino);
            if !seen.insert(lblk) || seen.len() > MAX_ATTR_BLOCKS {
                return Err(corrupt(place, "the attribute tree visits this block twice"));
            }
            let b = self.attr_block(i, &recs, lblk)?;
            let magic = be16(&b, 8);
            let count = usize::from(be16(&b, lay.count));
            if magic == lay.node_magic {
                depth += 1;
                if depth > MAX_BTREE_LEVEL || count == 0 {
                    return Err(corrupt(
                        place,
                        format!("a node of {count} entries at depth {depth}"),
                    ));
                }
                // Entry 0: hash (4 bytes), then the block below it.
                lblk = u64::from(be32(&b, lay.node_hdr + 4));
                continue;
            }
            if magic != lay.leaf_magic {
                return Err(corrupt(
                    place,
                    format!("not an attribute leaf or node (magic {magic:#06x})"),
                ));
            }
            if let Some(v) = self.attr_leaf(i, &recs, &b, &lay, ns, want, &place)? {
                return Ok(Some(v));
            }
            match be32(&b, 0) {
                0 => return Ok(None),
                forw => lblk = u64::from(forw),
            }
        }
    }

    /// An attribute among a leaf block's entries.
    #[allow(clippy::too_many_arguments)]
    fn attr_leaf(
        &self,
        i: &Inode,
        recs: &[Rec],
        b: &[u8],
        lay: &AttrLayout,
        ns: u8,
        want: &[u8],
        place: &str,
    ) -> Result<Option<Vec<u8>>, FsError> {
        let count = usize::from(be16(b, lay.count));
        if lay.leaf_hdr + count * 8 > b.len() {
            return Err(corrupt(
                place,
                format!("{count} entries do not fit the block"),
            ));
        }
        for k in 0..count {
            let e = lay.leaf_hdr + k * 8;
            let at = usize::from(be16(b, e + 4));
            let flags = u8_at(b, e + 6);
            if flags & ATTR_INCOMPLETE != 0 || flags & ATTR_NAMESPACES != ns {
                continue;
            }
            let bad = |what: &str| corrupt(place, format!("entry {k} at byte {at}: {what}"));
            if flags & ATTR_LOCAL != 0 {
                // valuelen (2), namelen (1), name, value.
                let valuelen = usize::from(be16(b, at));
                let namelen = usize::from(u8_at(b, at + 2));
                if at + 3 + namelen + valuelen > b.len() {
                    return Err(bad("runs past the block"));
                }
                if slice(b, at + 3, namelen) == want {
                    return Ok(Some(slice(b, at + 3 + namelen, valuelen).to_vec()));
                }
            } else {
                // valueblk (4), valuelen (4), namelen (1), name.
                let namelen = usize::from(u8_at(b, at + 8));
                if at + 9 + namelen > b.len() {
                    return Err(bad("runs past the block"));
                }
                if slice(b, at + 9, namelen) == want {
                    let (blk, len) = (u64::from(be32(b, at)), u64::from(be32(b, at + 4)));
                    return self.attr_remote(i, recs, blk, len).map(Some);
                }
            }
        }
        Ok(None)
    }

    /// A value kept in its own blocks: raw (v4), or each block with a
    /// header giving the value's offset and bytes in it (v5).
    fn attr_remote(&self, i: &Inode, recs: &[Rec], blk: u64, len: u64) -> Result<Vec<u8>, FsError> {
        let place = format!("inode {} remote attribute value at block {blk}", i.ino);
        if len > ATTR_VALUE_MAX {
            return Err(corrupt(place, format!("a value of {len} bytes")));
        }
        let len = usize::try_from(len).unwrap_or(0);
        let bs = usize::try_from(self.geo.block_size).unwrap_or(0);
        let mut out = Vec::with_capacity(len);
        let mut lblk = blk;
        while out.len() < len {
            let b = self.attr_block(i, recs, lblk)?;
            if self.geo.v5 {
                let (magic, off, bytes) = (be32(&b, 0), be32(&b, 4), be32(&b, 8));
                let bytes = usize::try_from(bytes).unwrap_or(usize::MAX);
                if magic != ATTR3_RMT_MAGIC
                    || usize::try_from(off).ok() != Some(out.len())
                    || bytes == 0
                    || bytes > bs.saturating_sub(ATTR3_RMT_HDR)
                {
                    return Err(corrupt(
                        place,
                        format!(
                            "block {lblk} is not the value's part at byte {} (magic {magic:#010x}, offset {off}, {bytes} bytes)",
                            out.len()
                        ),
                    ));
                }
                let take = bytes.min(len - out.len());
                out.extend_from_slice(slice(&b, ATTR3_RMT_HDR, take));
            } else {
                let take = bs.min(len - out.len());
                out.extend_from_slice(slice(&b, 0, take));
            }
            lblk += 1;
        }
        Ok(out)
    }
}

/// The attribute fork's extent count: `di_anextents`, or with `nrext64`
/// the 32 bits where the data fork's count was.
fn attr_extents(i: &Inode) -> u64 {
    if i.flags2 & DIFLAG2_NREXT64 != 0 {
        u64::from(be32(&i.raw, 76))
    } else {
        u64::from(be16(&i.raw, 80))
    }
}

/// An attribute in a short-form attribute fork: a 4-byte header (total
/// size, count), then `namelen, valuelen, flags, name, value` per entry.
fn sf_attr(fork: &[u8], ns: u8, want: &[u8], place: &str) -> Result<Option<Vec<u8>>, FsError> {
    let total = usize::from(be16(fork, 0)).min(fork.len());
    let count = u8_at(fork, 2);
    let mut at = 4usize;
    for n in 0..count {
        let namelen = usize::from(u8_at(fork, at));
        let valuelen = usize::from(u8_at(fork, at + 1));
        let flags = u8_at(fork, at + 2);
        let end = at + 3 + namelen + valuelen;
        if end > total {
            return Err(corrupt(
                format!("{place} attribute fork"),
                format!("entry {n} at byte {at} runs past the fork's {total} bytes"),
            ));
        }
        let name = slice(fork, at + 3, namelen);
        if flags & ATTR_NAMESPACES == ns && name == want {
            return Ok(Some(slice(fork, at + 3 + namelen, valuelen).to_vec()));
        }
        at = end;
    }
    Ok(None)
}

fn ftype_kind(t: u8) -> Option<Kind> {
    Some(match t {
        0 => return None,
        1 => Kind::File,
        2 => Kind::Dir,
        3 => Kind::CharDevice,
        4 => Kind::BlockDevice,
        5 => Kind::Fifo,
        6 => Kind::Socket,
        7 => Kind::Symlink,
        _ => Kind::Unknown,
    })
}

impl FileSystem for Xfs {
    fn kind(&self) -> &'static str {
        "xfs"
    }

    fn root(&self) -> u64 {
        self.geo.root
    }

    fn node(&self, id: u64) -> Result<Node, FsError> {
        Ok(self.node_of(&self.inode(id)?))
    }

    fn read_dir(&self, dir: u64) -> Result<Vec<Entry>, FsError> {
        let i = self.inode(dir)?;
        if i.kind() != Kind::Dir {
            return Err(corrupt(i.place(), "not a directory"));
        }
        match i.format {
            FMT_LOCAL => self.sf_dir(&i),
            FMT_EXTENTS | FMT_BTREE => self.block_dir(&i),
            f => Err(corrupt(
                i.place(),
                format!("a directory in data fork format {f}"),
            )),
        }
    }

    fn extents(&self, id: u64) -> Result<Vec<Extent>, FsError> {
        let i = self.inode(id)?;
        if i.flags & DIFLAG_REALTIME != 0 && i.kind() == Kind::File {
            return Err(FsError::Unsupported {
                at: i.place(),
                what: "data on the realtime device".into(),
            });
        }
        match i.format {
            FMT_DEV => Ok(if i.size == 0 {
                Vec::new()
            } else {
                vec![Extent {
                    logical: 0,
                    physical: None,
                    len: i.size,
                }]
            }),
            FMT_LOCAL => {
                if i.size > i.dsize as u64 {
                    return Err(corrupt(
                        i.place(),
                        format!("{} bytes kept in a fork of {}", i.size, i.dsize),
                    ));
                }
                Ok(if i.size == 0 {
                    Vec::new()
                } else {
                    vec![Extent {
                        logical: 0,
                        physical: Some(i.at.saturating_add(i.core as u64)),
                        len: i.size,
                    }]
                })
            }
            _ => {
                let recs = self.records(&i)?;
                if i.kind() == Kind::Symlink && self.geo.v5 {
                    self.remote_symlink(&i, &recs)
                } else {
                    self.byte_extents(&i, &recs, i.size)
                }
            }
        }
    }

    fn problems(&self) -> Vec<Problem> {
        self.problems.clone()
    }

    fn rdev(&self, id: u64) -> Result<Option<(u32, u32)>, FsError> {
        let i = self.inode(id)?;
        if !matches!(i.kind(), Kind::CharDevice | Kind::BlockDevice) {
            return Ok(None);
        }
        if i.format != FMT_DEV {
            return Err(corrupt(
                i.place(),
                format!("a device in data fork format {}", i.format),
            ));
        }
        // XFS keeps Linux's `sysv` encoding: 14 bits of major, 18 of minor.
        let dev = be32(i.fork(), 0);
        Ok(Some((dev >> 18, dev & 0x3_ffff)))
    }

    fn xattr(&self, id: u64, name: &[u8]) -> Result<Option<Vec<u8>>, FsError> {
        let i = self.inode(id)?;
        let (ns, want) = if let Some(n) = name.strip_prefix(b"user.") {
            (0u8, n)
        } else if let Some(n) = name.strip_prefix(b"trusted.") {
            (ATTR_ROOT, n)
        } else if let Some(n) = name.strip_prefix(b"security.") {
            (ATTR_SECURE, n)
        } else {
            return Err(FsError::Unsupported {
                at: i.place(),
                what: format!("attribute {:?}", String::from_utf8_lossy(name)),
            });
        };
        let forkoff = usize::from(u8_at(&i.raw, 82)) * 8;
        if forkoff == 0 {
            return Ok(None);
        }
        let fork = i.raw.get(i.core + forkoff..).unwrap_or_default();
        match u8_at(&i.raw, 83) {
            FMT_LOCAL => sf_attr(fork, ns, want, &i.place()),
            // An empty extent list: the fork was made, its last attribute removed.
            FMT_EXTENTS if attr_extents(&i) == 0 => Ok(None),
            FMT_EXTENTS => self.attr_tree(&i, fork, ns, want),
            f => Err(FsError::Unsupported {
                at: i.place(),
                what: format!(
                    "an attribute fork in format {f} (an extent B+tree of attribute blocks)"
                ),
            }),
        }
    }

    fn volume(&self) -> &Arc<dyn ReadAt> {
        &self.volume
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_extent_record_unpacks_its_four_fields() {
        // Packed by hand: unwritten flag at bit 127, file block in bits
        // 73-126, file-system block in 21-72, count in 0-20.
        let (off, block, count) = (5u128, (3u128 << 40) | 300, 7u128);
        let v = (1u128 << 127) | (off << 73) | (block << 21) | count;
        let r = Rec::parse(&v.to_be_bytes());
        assert!(r.unwritten);
        assert_eq!((r.off, r.block, r.count), (5, (3 << 40) | 300, 7));
    }

    #[test]
    fn bigtime_and_legacy_times_meet_at_the_old_epoch() {
        let mut raw = vec![0u8; 512];
        let i = |raw: Vec<u8>, flags2| Inode {
            ino: 1,
            at: 0,
            raw,
            mode: 0,
            format: 0,
            flags: 0,
            flags2,
            core: 176,
            dsize: 0,
            size: 0,
            nextents: 0,
        };
        // Legacy: signed seconds. 0x80000000 is 1901-12-13T20:45:52Z.
        raw[32..36].copy_from_slice(&0x8000_0000u32.to_be_bytes());
        raw[36..40].copy_from_slice(&5u32.to_be_bytes());
        assert_eq!(Xfs::time(&i(raw.clone(), 0), 32), Time::new(-(1 << 31), 5));
        // Bigtime: 0 is that same second.
        raw[32..40].copy_from_slice(&0u64.to_be_bytes());
        assert_eq!(
            Xfs::time(&i(raw.clone(), DIFLAG2_BIGTIME), 32),
            Time::new(-(1 << 31), 0)
        );
        let t = ((1u64 << 31) + 10) * 1_000_000_000 + 7;
        raw[32..40].copy_from_slice(&t.to_be_bytes());
        assert_eq!(Xfs::time(&i(raw, DIFLAG2_BIGTIME), 32), Time::new(10, 7));
    }
}
