//! The ext2/ext3/ext4 reader, written here rather than on `ext4-view`:
//! that crate reads live files by path and gives neither inode numbers,
//! all four times, deleted names in directory slack, freed inodes nor where
//! the data lies in the volume, which is what a forensic reader is for.
//!
//! What it reads: the superblock (block sizes 1 KiB to 64 KiB, 32- and
//! 64-bit group descriptors, `meta_bg`, `flex_bg`, 128- and 256-byte
//! inodes with nanosecond times and a birth time), inodes by number,
//! extent trees and ext2/3 block maps, inline data, fast symlinks, linear
//! and htree directories with the names left in their slack, and freed
//! inodes no name leads to. Deleted names and orphans are found as The
//! Sleuth Kit finds them, so that a bodyfile compares with `fls -r -m`.
//! `metadata_csum` mismatches are problems, not errors.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use crc::{Algorithm, Crc};

use super::{Entry, Extent, FileSystem, FsError, Kind, Node, Problem, Time, Times};
use crate::bytes::{le16, le32, slice, u8_at};
use crate::image::ReadAt;

const SB_OFFSET: u64 = 1024;
const SB_SIZE: usize = 1024;
const MAGIC: u16 = 0xEF53;

// Incompatible features.
const INCOMPAT_FILETYPE: u32 = 0x2;
const INCOMPAT_RECOVER: u32 = 0x4;
const INCOMPAT_JOURNAL_DEV: u32 = 0x8;
const INCOMPAT_META_BG: u32 = 0x10;
const INCOMPAT_64BIT: u32 = 0x80;
const INCOMPAT_CSUM_SEED: u32 = 0x2000;
const INCOMPAT_LARGEDIR: u32 = 0x4000;
/// The features this reader knows; a volume with others is read anyway,
/// with a problem saying so.
const INCOMPAT_KNOWN: u32 = 0x1
    | 0x2
    | 0x4
    | 0x10
    | 0x40
    | 0x80
    | 0x100
    | 0x200
    | 0x400
    | 0x1000
    | 0x2000
    | 0x4000
    | 0x8000
    | 0x10000
    | 0x20000;

// Read-only compatible features.
const RO_COMPAT_LARGE_FILE: u32 = 0x2;
const RO_COMPAT_METADATA_CSUM: u32 = 0x400;

// Inode flags.
const FL_INDEX: u32 = 0x1000;
const FL_EXTENTS: u32 = 0x8_0000;
const FL_INLINE_DATA: u32 = 0x1000_0000;

const EXTENT_MAGIC: u16 = 0xF30A;
/// The kernel's limit on an extent tree's depth.
const MAX_EXTENT_DEPTH: u16 = 5;
/// Extent tree and block map blocks read for one file; a real file of a
/// few TiB needs far fewer.
const MAX_MAP_BLOCKS: usize = 1 << 18;
/// Runs kept for one file; more is a hostile map, not a file.
const MAX_RUNS: usize = 1 << 20;
/// Directory bytes read for one directory (a few million names).
const MAX_DIR_BYTES: u64 = 1 << 28;
/// Group descriptors kept in memory (1 Mi groups: 128 TiB at 4 KiB).
const MAX_GROUPS: u64 = 1 << 20;
/// Checksum mismatches listed one by one before a count stands for the rest.
const MAX_LISTED: usize = 32;
/// An inode's `i_block`: 60 bytes at 0x28.
const I_BLOCK: usize = 0x28;
const I_BLOCK_LEN: usize = 60;

/// ext4's CRC-32C: Castagnoli, reflected, with no final inversion, so a
/// checksum can be carried on from a seed.
const CRC32C_RAW: Algorithm<u32> = Algorithm {
    width: 32,
    poly: 0x1EDC_6F41,
    init: 0xFFFF_FFFF,
    refin: true,
    refout: true,
    xorout: 0,
    check: 0x1CF9_6D7C,
    residue: 0,
};
static CRC: Crc<u32> = Crc::<u32>::new(&CRC32C_RAW);

/// CRC-32C carried on from `seed` over `parts`, as ext4 chains it.
fn crc32c(seed: u32, parts: &[&[u8]]) -> u32 {
    // The crate applies its reflection to a custom initial value.
    let mut d = CRC.digest_with_initial(seed.reverse_bits());
    for p in parts {
        d.update(p);
    }
    d.finalize()
}

#[derive(Debug, Clone, Copy)]
struct Group {
    inode_bitmap: u64,
    inode_table: u64,
}

/// An ext2/3/4 file system.
pub struct Ext4 {
    volume: Arc<dyn ReadAt>,
    block_size: u64,
    blocks_count: u64,
    inodes_count: u32,
    inodes_per_group: u32,
    inode_size: u32,
    incompat: u32,
    ro_compat: u32,
    groups: Vec<Option<Group>>,
    problems: Vec<Problem>,
    /// Inode bitmaps read so far, by group (`None`: unreadable).
    bitmaps: Mutex<HashMap<u32, Option<Arc<Vec<u8>>>>>,
}

/// An inode as read, with where it lies in the volume.
struct Inode {
    ino: u64,
    raw: Vec<u8>,
    /// Byte of the volume where the inode starts.
    at: u64,
}

impl Inode {
    fn mode(&self) -> u16 {
        le16(&self.raw, 0)
    }
    fn kind(&self) -> Kind {
        Kind::from_mode(u32::from(self.mode()))
    }
    fn flags(&self) -> u32 {
        le32(&self.raw, 0x20)
    }
    fn links(&self) -> u16 {
        le16(&self.raw, 0x1A)
    }
    fn dtime(&self) -> u32 {
        le32(&self.raw, 0x14)
    }
    fn i_block(&self) -> &[u8] {
        slice(&self.raw, I_BLOCK, I_BLOCK_LEN)
    }
    fn extra_isize(&self) -> usize {
        if self.raw.len() > 128 {
            usize::from(le16(&self.raw, 0x80))
        } else {
            0
        }
    }
    /// Whether the extra field at `off` (past byte 128) is in use.
    fn has_extra(&self, off: usize, len: usize) -> bool {
        let end = 128 + self.extra_isize();
        off + len <= end && end <= self.raw.len()
    }
    fn time(&self, lo_at: usize, extra_at: Option<usize>) -> Option<Time> {
        let lo = le32(&self.raw, lo_at);
        let extra = extra_at
            .filter(|&at| self.has_extra(at, 4))
            .map_or(0, |at| le32(&self.raw, at));
        if lo == 0 && extra == 0 {
            return None;
        }
        // The two low bits of the extra field carry the seconds past 2038;
        // the rest are nanoseconds.
        let secs = i64::from(lo as i32) + (i64::from(extra & 3) << 32);
        Some(Time::new(secs, (extra >> 2).min(999_999_999)))
    }
}

fn corrupt(at: impl Into<String>, what: impl Into<String>) -> FsError {
    FsError::corrupt(at, what)
}

/// Opens the ext4 file system on `volume`.
pub fn open(volume: Arc<dyn ReadAt>) -> Result<Box<dyn FileSystem>, FsError> {
    Ok(Box::new(Ext4::open(volume)?))
}

impl Ext4 {
    /// Reads the superblock and group descriptors.
    pub fn open(volume: Arc<dyn ReadAt>) -> Result<Self, FsError> {
        let sb = volume
            .read_exact_at(SB_OFFSET, SB_SIZE)
            .map_err(|e| FsError::io(format!("superblock at byte {SB_OFFSET}"), e))?;
        let magic = le16(&sb, 0x38);
        if magic != MAGIC {
            return Err(corrupt(
                "superblock at byte 1024",
                format!(
                    "not an ext2/3/4 file system: magic 0x{magic:04x} at byte 1080, not 0xef53"
                ),
            ));
        }
        let mut problems = Vec::new();
        let log_bs = le32(&sb, 0x18);
        if log_bs > 6 {
            return Err(corrupt(
                "superblock at byte 1024",
                format!(
                    "block size 2^{} is past ext4's 64 KiB",
                    log_bs.saturating_add(10)
                ),
            ));
        }
        let block_size = 1024u64 << log_bs;
        let incompat = le32(&sb, 0x60);
        let ro_compat = le32(&sb, 0x64);
        if incompat & INCOMPAT_JOURNAL_DEV != 0 {
            return Err(FsError::Unsupported {
                at: "superblock at byte 1024".into(),
                what: "an external journal device (it holds no files)".into(),
            });
        }
        let inodes_count = le32(&sb, 0x00);
        let mut blocks_count = u64::from(le32(&sb, 0x04));
        if incompat & INCOMPAT_64BIT != 0 {
            blocks_count |= u64::from(le32(&sb, 0x150)) << 32;
        }
        let first_data_block = u64::from(le32(&sb, 0x14));
        let blocks_per_group = u64::from(le32(&sb, 0x20));
        let inodes_per_group = le32(&sb, 0x28);
        if blocks_per_group == 0 || inodes_per_group == 0 || inodes_count == 0 {
            return Err(corrupt(
                "superblock at byte 1024",
                "no blocks or inodes per group, or no inodes",
            ));
        }
        let inode_size = if le32(&sb, 0x4C) == 0 {
            128
        } else {
            u32::from(le16(&sb, 0x58))
        };
        if inode_size < 128 || !inode_size.is_power_of_two() || u64::from(inode_size) > block_size {
            return Err(corrupt(
                "superblock at byte 1024",
                format!("inode size {inode_size} is not a power of two from 128 to the block size"),
            ));
        }
        if incompat & !INCOMPAT_KNOWN != 0 {
            problems.push(Problem {
                at: "superblock at byte 1024".into(),
                what: format!(
                    "unknown incompatible features 0x{:x}; read as far as understood",
                    incompat & !INCOMPAT_KNOWN
                ),
            });
        }
        if incompat & INCOMPAT_RECOVER != 0 {
            problems.push(Problem {
                at: "superblock at byte 1024".into(),
                what: "the journal needs recovery: recent changes in it are not read".into(),
            });
        }
        let csum = ro_compat & RO_COMPAT_METADATA_CSUM != 0;
        let seed = if incompat & INCOMPAT_CSUM_SEED != 0 {
            le32(&sb, 0x270)
        } else {
            crc32c(!0, &[slice(&sb, 0x68, 16)])
        };
        if csum {
            let want = le32(&sb, 0x3FC);
            let got = crc32c(!0, &[slice(&sb, 0, 0x3FC)]);
            if want != got {
                problems.push(Problem {
                    at: "superblock at byte 1024".into(),
                    what: format!(
                        "checksum 0x{want:08x} does not match its contents (0x{got:08x})"
                    ),
                });
            }
        }
        let vol_size = volume.size();
        let fs_bytes = blocks_count.saturating_mul(block_size);
        if vol_size < fs_bytes {
            problems.push(Problem {
                at: format!("byte {vol_size}"),
                what: format!(
                    "the volume ends here, inside the file system's {fs_bytes} bytes: what lies past it cannot be read"
                ),
            });
        }

        // Group descriptors.
        let desc_size: u64 = if incompat & INCOMPAT_64BIT != 0 {
            let d = u64::from(le16(&sb, 0xFE));
            if (32..=1024).contains(&d) && d.is_power_of_two() {
                d
            } else {
                problems.push(Problem {
                    at: "superblock at byte 1024".into(),
                    what: format!("group descriptor size {d} is not a power of two from 32 to 1024; 64 assumed"),
                });
                64
            }
        } else {
            32
        };
        let by_blocks = blocks_count
            .saturating_sub(first_data_block)
            .div_ceil(blocks_per_group);
        let by_inodes = u64::from(inodes_count).div_ceil(u64::from(inodes_per_group));
        if by_blocks != by_inodes {
            problems.push(Problem {
                at: "superblock at byte 1024".into(),
                what: format!(
                    "{by_blocks} groups by the block count but {by_inodes} by the inode count; the fewer are read"
                ),
            });
        }
        let group_count = by_blocks.min(by_inodes);
        if group_count == 0 || group_count > MAX_GROUPS {
            return Err(corrupt(
                "superblock at byte 1024",
                format!("{group_count} block groups (at most {MAX_GROUPS} are read)"),
            ));
        }
        let per_block = block_size / desc_size;
        let first_meta_bg = if incompat & INCOMPAT_META_BG != 0 {
            u64::from(le32(&sb, 0x104))
        } else {
            u64::MAX
        };
        let mut groups = Vec::new();
        let mut bad_csums = 0usize;
        let mut table_block: Option<(u64, Vec<u8>)> = None;
        let mut cut_reported = false;
        for g in 0..group_count {
            let d = g / per_block;
            let block = if d < first_meta_bg {
                first_data_block + 1 + d
            } else {
                // meta_bg: a descriptor block leads each group of groups.
                let lead = d.saturating_mul(per_block);
                let backup = u64::from(has_super(lead, ro_compat));
                lead.saturating_mul(blocks_per_group)
                    .saturating_add(first_data_block)
                    .saturating_add(backup)
            };
            if table_block.as_ref().is_none_or(|(b, _)| *b != block) {
                let at = block.saturating_mul(block_size);
                let bytes = usize::try_from(block_size).unwrap_or(1024);
                match volume.read_exact_at(at, bytes) {
                    Ok(buf) => table_block = Some((block, buf)),
                    Err(e) => {
                        if !cut_reported {
                            problems.push(Problem {
                                at: format!("group descriptor {g} at byte {at}"),
                                what: format!("unreadable ({e}): its inodes cannot be read"),
                            });
                            cut_reported = true;
                        }
                        table_block = None;
                        groups.push(None);
                        continue;
                    }
                }
            }
            let Some((_, buf)) = &table_block else {
                groups.push(None);
                continue;
            };
            let off = usize::try_from((g % per_block) * desc_size).unwrap_or(0);
            let ds = usize::try_from(desc_size).unwrap_or(32);
            let desc = slice(buf, off, ds);
            let hi = |at: usize| {
                if ds >= 64 {
                    u64::from(le32(desc, at)) << 32
                } else {
                    0
                }
            };
            let group = Group {
                inode_bitmap: u64::from(le32(desc, 0x04)) | hi(0x24),
                inode_table: u64::from(le32(desc, 0x08)) | hi(0x28),
            };
            if csum {
                let want = le16(desc, 0x1E);
                let gle = u32::try_from(g).unwrap_or(0).to_le_bytes();
                let got = crc32c(
                    seed,
                    &[&gle, slice(desc, 0, 0x1E), &[0, 0], slice(desc, 0x20, ds)],
                ) as u16;
                if want != got {
                    bad_csums += 1;
                    if bad_csums <= MAX_LISTED {
                        problems.push(Problem {
                            at: format!("group descriptor {g}"),
                            what: format!(
                                "checksum 0x{want:04x} does not match its contents (0x{got:04x})"
                            ),
                        });
                    }
                }
            }
            groups.push(Some(group));
        }
        if bad_csums > MAX_LISTED {
            problems.push(Problem {
                at: "group descriptors".into(),
                what: format!("{bad_csums} checksum mismatches in all"),
            });
        }
        Ok(Self {
            volume,
            block_size,
            blocks_count,
            inodes_count,
            inodes_per_group,
            inode_size,
            incompat,
            ro_compat,
            groups,
            problems,
            bitmaps: Mutex::new(HashMap::new()),
        })
    }

    fn bs_usize(&self) -> usize {
        usize::try_from(self.block_size).unwrap_or(1024)
    }

    fn group_of(&self, ino: u64) -> Result<(u32, u64), FsError> {
        if ino == 0 || ino > u64::from(self.inodes_count) {
            return Err(corrupt(
                format!("inode {ino}"),
                format!(
                    "no such inode (this file system has 1 to {})",
                    self.inodes_count
                ),
            ));
        }
        let g = (ino - 1) / u64::from(self.inodes_per_group);
        let idx = (ino - 1) % u64::from(self.inodes_per_group);
        Ok((u32::try_from(g).unwrap_or(u32::MAX), idx))
    }

    fn group(&self, g: u32) -> Option<Group> {
        self.groups.get(usize::try_from(g).ok()?).copied().flatten()
    }

    fn inode(&self, ino: u64) -> Result<Inode, FsError> {
        let (g, idx) = self.group_of(ino)?;
        let group = self.group(g).ok_or_else(|| {
            corrupt(
                format!("inode {ino}"),
                format!("group {g}'s descriptor is unreadable"),
            )
        })?;
        let at = group
            .inode_table
            .checked_mul(self.block_size)
            .and_then(|t| t.checked_add(idx * u64::from(self.inode_size)))
            .ok_or_else(|| corrupt(format!("inode {ino}"), "inode table past any volume"))?;
        let raw = self
            .volume
            .read_exact_at(at, usize::try_from(self.inode_size).unwrap_or(128))
            .map_err(|e| FsError::io(format!("inode {ino} at byte {at}"), e))?;
        Ok(Inode { ino, raw, at })
    }

    /// The inode bitmap of group `g`, read once.
    fn bitmap(&self, g: u32) -> Option<Arc<Vec<u8>>> {
        let mut cache = self.bitmaps.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(b) = cache.get(&g) {
            return b.clone();
        }
        let b = self.group(g).and_then(|group| {
            let at = group.inode_bitmap.checked_mul(self.block_size)?;
            self.volume
                .read_exact_at(at, self.bs_usize())
                .ok()
                .map(Arc::new)
        });
        cache.insert(g, b.clone());
        b
    }

    /// In use by the inode bitmap, as TSK decides; by links and deletion
    /// time where the bitmap cannot be read.
    fn allocated(&self, inode: &Inode) -> bool {
        let Ok((g, idx)) = self.group_of(inode.ino) else {
            return false;
        };
        match self.bitmap(g) {
            Some(b) => {
                let i = usize::try_from(idx).unwrap_or(usize::MAX);
                u8_at(&b, i / 8) & (1 << (i % 8)) != 0
            }
            None => inode.links() > 0 && inode.dtime() == 0,
        }
    }

    fn size(&self, inode: &Inode) -> u64 {
        let lo = u64::from(le32(&inode.raw, 0x04));
        let hi = u64::from(le32(&inode.raw, 0x6C));
        // TSK reads the high half for regular files only (it was
        // `i_dir_acl` for directories before `large_dir`).
        match inode.kind() {
            Kind::File if self.ro_compat & RO_COMPAT_LARGE_FILE != 0 || hi != 0 => lo | (hi << 32),
            Kind::Dir if self.incompat & INCOMPAT_LARGEDIR != 0 => lo | (hi << 32),
            _ => lo,
        }
    }

    fn to_node(&self, inode: &Inode) -> Node {
        let raw = &inode.raw;
        let allocated = self.allocated(inode);
        let deleted = match inode.dtime() {
            // An allocated inode's dtime links the orphan list: not a time.
            0 => None,
            _ if allocated => None,
            d => Some(Time::new(i64::from(d as i32), 0)),
        };
        Node {
            id: inode.ino,
            kind: inode.kind(),
            mode: u32::from(inode.mode()) & 0o7777,
            uid: u32::from(le16(raw, 0x02)) | (u32::from(le16(raw, 0x78)) << 16),
            gid: u32::from(le16(raw, 0x18)) | (u32::from(le16(raw, 0x7A)) << 16),
            size: self.size(inode),
            links: u32::from(inode.links()),
            allocated,
            times: Times {
                accessed: inode.time(0x08, Some(0x8C)),
                changed: inode.time(0x0C, Some(0x84)),
                modified: inode.time(0x10, Some(0x88)),
                born: if inode.has_extra(0x90, 4) {
                    inode.time(0x90, Some(0x94))
                } else {
                    None
                },
                deleted,
            },
            name_times: None,
        }
    }

    /// Where the inode's data lies, in file order, covering `0..size`.
    fn data_extents(&self, inode: &Inode) -> Result<Vec<Extent>, FsError> {
        self.extents_of(inode, true)
    }

    /// A node's extents; `within_volume` refuses one that runs past the
    /// volume's end (an image cut short), which a directory's reading
    /// takes instead, to keep the blocks before the cut.
    fn extents_of(&self, inode: &Inode, within_volume: bool) -> Result<Vec<Extent>, FsError> {
        let size = self.size(inode);
        let kind = inode.kind();
        let flags = inode.flags();
        let ino = inode.ino;
        if matches!(
            kind,
            Kind::CharDevice | Kind::BlockDevice | Kind::Fifo | Kind::Socket
        ) || size == 0
        {
            return Ok(Vec::new());
        }
        if flags & FL_INLINE_DATA != 0 {
            return self.inline_extents(inode, size);
        }
        if kind == Kind::Symlink && flags & FL_EXTENTS == 0 && size < I_BLOCK_LEN as u64 {
            // A fast symlink: the target is the inode's i_block.
            return Ok(vec![Extent {
                logical: 0,
                physical: Some(inode.at + I_BLOCK as u64),
                len: size,
            }]);
        }
        let blocks = size.div_ceil(self.block_size);
        let mut runs: Vec<(u64, u64, Option<u64>)> = Vec::new(); // (logical block, count, physical block)
        if flags & FL_EXTENTS != 0 {
            let mut budget = MAX_MAP_BLOCKS;
            self.extent_node(ino, inode.i_block(), None, &mut runs, &mut budget)?;
        } else {
            self.block_map(inode, blocks, &mut runs)?;
        }
        runs.sort_by_key(|r| r.0);
        // To byte extents, holes filled, clipped to the size.
        let end_block = blocks;
        let mut out: Vec<Extent> = Vec::new();
        let mut next = 0u64; // next logical block not yet covered
        for (lblk, count, pblk) in runs {
            if lblk >= end_block {
                break;
            }
            let start = lblk.max(next);
            let skip = start - lblk;
            if skip >= count {
                continue; // wholly overlapped by an earlier run
            }
            let count = (count - skip).min(end_block - start);
            if start > next {
                push_run(&mut out, next, start - next, None, self.block_size);
            }
            if let Some(p) = pblk {
                let p = p + skip;
                if p.saturating_add(count) > self.blocks_count {
                    return Err(corrupt(
                        format!("inode {ino}"),
                        format!(
                            "logical block {start} maps to block {p}, past the file system's {} blocks",
                            self.blocks_count
                        ),
                    ));
                }
                let end_byte = p.saturating_add(count).saturating_mul(self.block_size);
                if within_volume && end_byte > self.volume.size() {
                    return Err(corrupt(
                        format!("inode {ino}"),
                        format!(
                            "logical block {start} maps to block {p}, past the volume's end at byte {}",
                            self.volume.size()
                        ),
                    ));
                }
                push_run(&mut out, start, count, Some(p), self.block_size);
            } else {
                push_run(&mut out, start, count, None, self.block_size);
            }
            next = start + count;
            if out.len() > MAX_RUNS {
                return Err(corrupt(
                    format!("inode {ino}"),
                    format!("more than {MAX_RUNS} runs of data"),
                ));
            }
        }
        if next < end_block {
            push_run(&mut out, next, end_block - next, None, self.block_size);
        }
        // Clip the last extent to the size.
        if let Some(last) = out.last_mut() {
            let end = last.logical + last.len;
            if end > size {
                last.len -= end - size;
            }
        }
        Ok(out)
    }

    /// One node of an extent tree: `buf` starts with its header.
    fn extent_node(
        &self,
        ino: u64,
        buf: &[u8],
        want_depth: Option<u16>,
        runs: &mut Vec<(u64, u64, Option<u64>)>,
        budget: &mut usize,
    ) -> Result<(), FsError> {
        let at = || format!("inode {ino}");
        if le16(buf, 0) != EXTENT_MAGIC {
            return Err(corrupt(
                at(),
                "an extent tree node without its magic 0xf30a",
            ));
        }
        let entries = usize::from(le16(buf, 2));
        let depth = le16(buf, 6);
        if depth > MAX_EXTENT_DEPTH || want_depth.is_some_and(|d| d != depth) {
            return Err(corrupt(
                at(),
                format!("an extent tree node of depth {depth} where {want_depth:?} was due"),
            ));
        }
        if 12 + entries * 12 > buf.len() {
            return Err(corrupt(
                at(),
                format!("an extent tree node claims {entries} entries, more than fit"),
            ));
        }
        for i in 0..entries {
            let e = slice(buf, 12 + i * 12, 12);
            let lblk = u64::from(le32(e, 0));
            if depth == 0 {
                let raw_len = le16(e, 4);
                // Past 32768 the extent is allocated but unwritten: zeros.
                let (len, written) = if raw_len > 32768 {
                    (raw_len - 32768, false)
                } else {
                    (raw_len, true)
                };
                let start = (u64::from(le16(e, 6)) << 32) | u64::from(le32(e, 8));
                runs.push((lblk, u64::from(len), written.then_some(start)));
                if runs.len() > MAX_RUNS {
                    return Err(corrupt(at(), format!("more than {MAX_RUNS} extents")));
                }
            } else {
                let child = u64::from(le32(e, 4)) | (u64::from(le16(e, 8)) << 32);
                if *budget == 0 {
                    return Err(corrupt(
                        at(),
                        format!("an extent tree of more than {MAX_MAP_BLOCKS} blocks"),
                    ));
                }
                *budget -= 1;
                if child >= self.blocks_count {
                    return Err(corrupt(
                        at(),
                        format!(
                            "an extent tree index points to block {child}, past the file system's end"
                        ),
                    ));
                }
                let child_buf = self
                    .volume
                    .read_exact_at(child * self.block_size, self.bs_usize())
                    .map_err(|e| FsError::io(format!("inode {ino} extent block {child}"), e))?;
                // Depth strictly falls, so a cycle cannot recur forever.
                self.extent_node(ino, &child_buf, Some(depth - 1), runs, budget)?;
            }
        }
        Ok(())
    }

    /// An ext2/3 block map: 12 direct pointers, then single, double and
    /// triple indirect blocks.
    fn block_map(
        &self,
        inode: &Inode,
        blocks: u64,
        runs: &mut Vec<(u64, u64, Option<u64>)>,
    ) -> Result<(), FsError> {
        let ib = inode.i_block();
        let per = self.block_size / 4;
        let mut budget = MAX_MAP_BLOCKS;
        for i in 0..12u64 {
            if i >= blocks {
                return Ok(());
            }
            let p = u64::from(le32(ib, usize::try_from(i * 4).unwrap_or(0)));
            add_block(runs, i, p);
        }
        let mut logical = 12u64;
        for (level, slot) in [(1u32, 12usize), (2, 13), (3, 14)] {
            let span = per.saturating_pow(level);
            if logical >= blocks {
                break;
            }
            let p = u64::from(le32(ib, slot * 4));
            self.indirect(inode.ino, p, level, logical, blocks, runs, &mut budget)?;
            logical = logical.saturating_add(span);
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn indirect(
        &self,
        ino: u64,
        block: u64,
        level: u32,
        logical: u64,
        blocks: u64,
        runs: &mut Vec<(u64, u64, Option<u64>)>,
        budget: &mut usize,
    ) -> Result<(), FsError> {
        if block == 0 || logical >= blocks {
            return Ok(()); // a hole
        }
        if block >= self.blocks_count {
            return Err(corrupt(
                format!("inode {ino}"),
                format!("an indirect block pointer to block {block}, past the file system's end"),
            ));
        }
        if *budget == 0 {
            return Err(corrupt(
                format!("inode {ino}"),
                format!("a block map of more than {MAX_MAP_BLOCKS} indirect blocks"),
            ));
        }
        *budget -= 1;
        let buf = self
            .volume
            .read_exact_at(block * self.block_size, self.bs_usize())
            .map_err(|e| FsError::io(format!("inode {ino} indirect block {block}"), e))?;
        let per = self.block_size / 4;
        let span = per.saturating_pow(level - 1);
        for i in 0..per {
            let l = logical.saturating_add(i.saturating_mul(span));
            if l >= blocks {
                break;
            }
            let p = u64::from(le32(&buf, usize::try_from(i * 4).unwrap_or(0)));
            if level == 1 {
                add_block(runs, l, p);
                if runs.len() > MAX_RUNS {
                    return Err(corrupt(
                        format!("inode {ino}"),
                        format!("more than {MAX_RUNS} runs"),
                    ));
                }
            } else {
                self.indirect(ino, p, level - 1, l, blocks, runs, budget)?;
            }
        }
        Ok(())
    }

    /// Inline data: the 60 bytes of `i_block`, then the `system.data`
    /// extended attribute's value in the inode's extra space.
    fn inline_extents(&self, inode: &Inode, size: u64) -> Result<Vec<Extent>, FsError> {
        let mut out = vec![Extent {
            logical: 0,
            physical: Some(inode.at + I_BLOCK as u64),
            len: size.min(I_BLOCK_LEN as u64),
        }];
        if size <= I_BLOCK_LEN as u64 {
            return Ok(out);
        }
        let (off, len) = self.inline_xattr(inode).ok_or_else(|| {
            corrupt(
                format!("inode {}", inode.ino),
                format!("inline data of {size} bytes without its system.data attribute"),
            )
        })?;
        let rest = size - I_BLOCK_LEN as u64;
        if (len as u64) < rest {
            return Err(corrupt(
                format!("inode {}", inode.ino),
                format!(
                    "inline data of {size} bytes but only {} stored",
                    I_BLOCK_LEN + len
                ),
            ));
        }
        out.push(Extent {
            logical: I_BLOCK_LEN as u64,
            physical: Some(inode.at + off as u64),
            len: rest,
        });
        Ok(out)
    }

    /// The `system.data` attribute's value in the inode body: its offset
    /// in the inode and its length.
    fn inline_xattr(&self, inode: &Inode) -> Option<(usize, usize)> {
        let raw = &inode.raw;
        let base = 128 + inode.extra_isize();
        if le32(raw, base) != 0xEA02_0000 {
            return None;
        }
        let first = base + 4;
        let mut at = first;
        // Each entry is at least 16 bytes; the inode bounds the loop.
        while at + 16 <= raw.len() {
            let name_len = usize::from(u8_at(raw, at));
            let index = u8_at(raw, at + 1);
            if name_len == 0 && index == 0 && le32(raw, at) == 0 {
                return None;
            }
            let value_offs = usize::from(le16(raw, at + 2));
            let value_inum = le32(raw, at + 4);
            let value_size = usize::try_from(le32(raw, at + 8)).ok()?;
            let name = slice(raw, at + 16, name_len);
            if index == 7 && name == b"data" && value_inum == 0 {
                let off = first + value_offs;
                if off + value_size <= raw.len() {
                    return Some((off, value_size));
                }
                return None;
            }
            at += (16 + name_len + 3) & !3;
        }
        None
    }

    /// The bytes of a directory, block by block (inline: two regions).
    /// A directory's blocks by logical number. A run of blocks that cannot
    /// be read is read block by block: what can be read is kept, and what
    /// cannot is a problem naming the directory and the byte.
    fn dir_regions(
        &self,
        inode: &Inode,
        problems: &mut Vec<FsError>,
    ) -> Result<Vec<(u64, Vec<u8>)>, FsError> {
        let ino = inode.ino;
        if inode.flags() & FL_INLINE_DATA != 0 {
            // The first four bytes of i_block name the parent; entries follow,
            // and go on in the system.data attribute.
            let mut regions = vec![(0, slice(inode.i_block(), 4, I_BLOCK_LEN - 4).to_vec())];
            if let Some((off, len)) = self.inline_xattr(inode) {
                regions.push((1, slice(&inode.raw, off, len).to_vec()));
            }
            return Ok(regions);
        }
        let extents = self.extents_of(inode, false)?;
        let total: u64 = extents
            .iter()
            .filter(|x| x.physical.is_some())
            .map(|x| x.len)
            .sum();
        if total > MAX_DIR_BYTES {
            return Err(corrupt(
                format!("directory inode {ino}"),
                format!("{total} bytes of entries, more than the {MAX_DIR_BYTES} read"),
            ));
        }
        let mut out = Vec::new();
        for x in extents {
            let Some(p) = x.physical else { continue };
            // Whole blocks, as TSK reads them, slack past the size included.
            let len = x.len.div_ceil(self.block_size) * self.block_size;
            let first = x.logical / self.block_size;
            match self
                .volume
                .read_exact_at(p, usize::try_from(len).unwrap_or(0))
            {
                Ok(buf) => {
                    for (i, chunk) in buf.chunks(self.bs_usize()).enumerate() {
                        out.push((first + i as u64, chunk.to_vec()));
                    }
                }
                Err(_) => {
                    // The blocks up to the first that fails; past it (an
                    // image cut short) the run is one problem, not one a
                    // block.
                    for i in 0..len / self.block_size {
                        let at = p + i * self.block_size;
                        match self.volume.read_exact_at(at, self.bs_usize()) {
                            Ok(block) => out.push((first + i, block)),
                            Err(e) => {
                                problems.push(FsError::io(
                                    format!("directory inode {ino} at byte {at}"),
                                    e,
                                ));
                                break;
                            }
                        }
                    }
                }
            }
        }
        Ok(out)
    }

    /// The logical blocks of an htree directory that hold its index, not
    /// names: the root (block 0, whose `.` and `..` are all it names) and
    /// the interior nodes below it.
    fn htree_index_blocks(&self, blocks: &[(u64, Vec<u8>)]) -> Option<HashSet<u64>> {
        let (_, root) = blocks.iter().find(|(l, _)| *l == 0)?;
        // dx_root: "." (12 bytes), ".." (rec_len to the block's end), then
        // its info: reserved, hash version, info length 8, levels, flags.
        if u8_at(root, 0x1D) != 8 || le32(root, 0x18) != 0 {
            return None;
        }
        let levels = u8_at(root, 0x1E);
        if levels > 3 {
            return None;
        }
        let mut index = HashSet::from([0u64]);
        let by_logical: HashMap<u64, &Vec<u8>> = blocks.iter().map(|(l, b)| (*l, b)).collect();
        // (node bytes, offset of its count/limit header, levels below it)
        let mut todo: Vec<(&[u8], usize, u8)> = vec![(root.as_slice(), 0x20, levels)];
        while let Some((node, at, below)) = todo.pop() {
            if below == 0 {
                continue;
            }
            let limit = usize::from(le16(node, at));
            let count = usize::from(le16(node, at + 2)).min(limit);
            for i in 0..count {
                // Entry 0's block sits in the header; the rest follow it.
                let child = u64::from(le32(node, at + 4 + i * 8));
                if index.contains(&child) {
                    continue; // a loop in the index
                }
                if let Some(b) = by_logical.get(&child) {
                    index.insert(child);
                    todo.push((b.as_slice(), 8, below - 1));
                }
            }
        }
        Some(index)
    }
}

/// Whether group `g` holds a superblock backup.
fn has_super(g: u64, ro_compat: u32) -> bool {
    if ro_compat & 0x1 == 0 || g <= 1 {
        return true;
    }
    [3u64, 5, 7].iter().any(|&b| {
        let mut x = g;
        while x > 1 && x.is_multiple_of(b) {
            x /= b;
        }
        x == 1
    })
}

fn add_block(runs: &mut Vec<(u64, u64, Option<u64>)>, logical: u64, p: u64) {
    let phys = (p != 0).then_some(p);
    if let Some(last) = runs.last_mut() {
        let contiguous = match (last.2, phys) {
            (Some(a), Some(b)) => a + last.1 == b,
            (None, None) => true,
            _ => false,
        };
        if contiguous && last.0 + last.1 == logical {
            last.1 += 1;
            return;
        }
    }
    runs.push((logical, 1, phys));
}

fn push_run(out: &mut Vec<Extent>, lblk: u64, count: u64, pblk: Option<u64>, bs: u64) {
    let logical = lblk.saturating_mul(bs);
    let len = count.saturating_mul(bs);
    let physical = pblk.map(|p| p.saturating_mul(bs));
    if let Some(last) = out.last_mut() {
        let joins = match (last.physical, physical) {
            (Some(a), Some(b)) => a.saturating_add(last.len) == b,
            (None, None) => true,
            _ => false,
        };
        if joins && last.logical.saturating_add(last.len) == logical {
            last.len = last.len.saturating_add(len);
            return;
        }
    }
    out.push(Extent {
        logical,
        physical,
        len,
    });
}

/// `EXT2FS_DIRSIZ`: the bytes an entry with a name of `n` bytes needs.
fn dirsiz(n: usize) -> usize {
    (n + 8 + 3) & !3
}

fn entry_kind(t: u8) -> Kind {
    match t {
        1 => Kind::File,
        2 => Kind::Dir,
        3 => Kind::CharDevice,
        4 => Kind::BlockDevice,
        5 => Kind::Fifo,
        6 => Kind::Socket,
        7 => Kind::Symlink,
        _ => Kind::Unknown,
    }
}

impl Ext4 {
    /// The entries of one directory block, those in its slack included,
    /// found as TSK's `ext2fs_dent_parse_block` finds them: an entry is
    /// taken where its fields are plausible, and one that lies in the
    /// space a live entry's record length covers past its name is deleted.
    fn parse_block(&self, buf: &[u8], dir_freed: bool, out: &mut Vec<Entry>) {
        let filetype = self.incompat & INCOMPAT_FILETYPE != 0;
        let len = buf.len();
        let last_inum = u64::from(self.inodes_count) + 1;
        let mut idx = 0usize;
        // Bytes of slack still to search after a live entry.
        let mut dellen = 0usize;
        // Every step moves idx forward by at least 4, so this ends.
        while idx + dirsiz(1) <= len {
            let inode = u64::from(le32(buf, idx));
            let rec_len = usize::from(le16(buf, idx + 4));
            let (name_len, kind) = if filetype {
                (
                    usize::from(u8_at(buf, idx + 6)),
                    Some(entry_kind(u8_at(buf, idx + 7))),
                )
            } else {
                (usize::from(le16(buf, idx + 6)), Some(Kind::Unknown))
            };
            let min = dirsiz(name_len);
            if inode > last_inum
                || name_len == 0
                || name_len > 255
                || rec_len < min
                || rec_len % 4 != 0
                || idx + rec_len > len
                || (dellen > 0 && dellen < min)
            {
                idx += 4;
                dellen = dellen.saturating_sub(4);
                continue;
            }
            let deleted = dellen > 0 || inode == 0 || dir_freed;
            if dellen > 0 {
                dellen -= min;
            }
            let name = slice(buf, idx + 8, name_len).to_vec();
            if name != b"." && name != b".." {
                out.push(Entry {
                    name,
                    id: inode,
                    kind,
                    deleted,
                });
            }
            let step = if dellen == 0 {
                if rec_len - min >= dirsiz(1) {
                    dellen = rec_len - min;
                    min
                } else {
                    rec_len
                }
            } else {
                min
            };
            idx += step;
        }
    }
}

impl Ext4 {
    /// A directory's names; blocks that cannot be read are left in
    /// `problems` (see [`Ext4::dir_regions`]).
    fn dir_entries(&self, dir: u64, problems: &mut Vec<FsError>) -> Result<Vec<Entry>, FsError> {
        let inode = self.inode(dir)?;
        if inode.kind() != Kind::Dir {
            return Err(corrupt(format!("inode {dir}"), "not a directory"));
        }
        // Every name in a freed directory is deleted, as TSK marks them.
        let freed = !self.allocated(&inode);
        let blocks = self.dir_regions(&inode, problems)?;
        let index = if inode.flags() & FL_INDEX != 0 && inode.flags() & FL_INLINE_DATA == 0 {
            self.htree_index_blocks(&blocks)
        } else {
            None
        };
        let mut out = Vec::new();
        for (logical, buf) in &blocks {
            match &index {
                Some(ix) if *logical == 0 => {
                    // The root names only "." and "..", which are not listed.
                }
                Some(ix) if ix.contains(logical) => {}
                _ => self.parse_block(buf, freed, &mut out),
            }
        }
        Ok(out)
    }
}

/// The magic of an inode's in-body attribute area and of an xattr block.
const XATTR_MAGIC: u32 = 0xEA02_0000;
/// An xattr block's header before its first entry.
const XATTR_BLOCK_HEADER: usize = 32;

/// The index ext4 stores for a full attribute name's prefix, and the rest
/// of the name (`trusted.overlay.opaque` is index 4, `overlay.opaque`).
fn xattr_index(name: &[u8]) -> Option<(u8, &[u8])> {
    const EXACT: [(&[u8], u8); 3] = [
        (b"system.posix_acl_access", 2),
        (b"system.posix_acl_default", 3),
        (b"system.richacl", 8),
    ];
    const PREFIX: [(&[u8], u8); 4] = [
        (b"user.", 1),
        (b"trusted.", 4),
        (b"security.", 6),
        (b"system.", 7),
    ];
    if let Some((_, i)) = EXACT.iter().find(|(n, _)| *n == name) {
        return Some((*i, b""));
    }
    PREFIX
        .iter()
        .find_map(|(p, i)| name.strip_prefix(*p).map(|rest| (*i, rest)))
}

/// Finds `(index, name)` among the entries of an attribute area: entries
/// from `first` to `end` of `buf`, values at `value_base` plus their
/// offset. `at` names the area in errors.
fn xattr_find(
    buf: &[u8],
    first: usize,
    value_base: usize,
    want: (u8, &[u8]),
    at: &str,
) -> Result<Option<Vec<u8>>, FsError> {
    let mut e = first;
    // Each entry is at least 16 bytes: the area's length bounds the loop.
    while e.saturating_add(16) <= buf.len() {
        if le32(buf, e) == 0 {
            return Ok(None);
        }
        let name_len = usize::from(u8_at(buf, e));
        let index = u8_at(buf, e + 1);
        let value_offs = usize::from(le16(buf, e + 2));
        let value_inum = le32(buf, e + 4);
        let value_size = usize::try_from(le32(buf, e + 8)).unwrap_or(usize::MAX);
        let name = buf.get(e + 16..e + 16 + name_len).ok_or_else(|| {
            corrupt(
                format!("{at}, entry at byte {e}"),
                "its name runs past the area",
            )
        })?;
        if index == want.0 && name == want.1 {
            if value_inum != 0 {
                return Err(FsError::Unsupported {
                    at: format!("{at}, entry at byte {e}"),
                    what: format!("a value kept in inode {value_inum} (ea_inode)"),
                });
            }
            let from = value_base.saturating_add(value_offs);
            return buf
                .get(from..from.saturating_add(value_size))
                .map(|v| Some(v.to_vec()))
                .ok_or_else(|| {
                    corrupt(
                        format!("{at}, entry at byte {e}"),
                        format!("its value of {value_size} bytes at {from} runs past the area"),
                    )
                });
        }
        e += (16 + name_len + 3) & !3;
    }
    Ok(None)
}

impl Ext4 {
    /// The attribute `want` of an inode: in its body after the extra
    /// fields, then in its attribute block.
    fn xattr_of(&self, inode: &Inode, want: (u8, &[u8])) -> Result<Option<Vec<u8>>, FsError> {
        let ino = inode.ino;
        let base = 128 + inode.extra_isize();
        if inode.raw.len() > 128
            && base + 4 <= inode.raw.len()
            && le32(&inode.raw, base) == XATTR_MAGIC
        {
            let at = format!("inode {ino} attributes");
            if let Some(v) = xattr_find(&inode.raw, base + 4, base + 4, want, &at)? {
                return Ok(Some(v));
            }
        }
        let hi = if self.incompat & INCOMPAT_64BIT != 0 {
            u64::from(le16(&inode.raw, 0x76))
        } else {
            0
        };
        let block = u64::from(le32(&inode.raw, 0x68)) | (hi << 32);
        if block == 0 {
            return Ok(None);
        }
        let at = format!("inode {ino} attribute block {block}");
        if block >= self.blocks_count {
            return Err(corrupt(at, "past the file system's end"));
        }
        let buf = self
            .volume
            .read_exact_at(block * self.block_size, self.bs_usize())
            .map_err(|e| FsError::io(at.clone(), e))?;
        if le32(&buf, 0) != XATTR_MAGIC {
            return Err(corrupt(
                at,
                format!("magic {:#010x}, not an attribute block", le32(&buf, 0)),
            ));
        }
        xattr_find(&buf, XATTR_BLOCK_HEADER, 0, want, &at)
    }
}

impl FileSystem for Ext4 {
    fn kind(&self) -> &'static str {
        "ext4"
    }

    fn root(&self) -> u64 {
        2
    }

    fn node(&self, id: u64) -> Result<Node, FsError> {
        let inode = self.inode(id)?;
        Ok(self.to_node(&inode))
    }

    fn read_dir(&self, dir: u64) -> Result<Vec<Entry>, FsError> {
        let (entries, mut problems) = self.read_dir_partial(dir);
        match problems.pop() {
            Some(e) => Err(e),
            None => Ok(entries),
        }
    }

    fn read_dir_partial(&self, dir: u64) -> (Vec<Entry>, Vec<FsError>) {
        let mut problems = Vec::new();
        match self.dir_entries(dir, &mut problems) {
            Ok(entries) => (entries, problems),
            Err(e) => {
                problems.push(e);
                (Vec::new(), problems)
            }
        }
    }

    fn extents(&self, id: u64) -> Result<Vec<Extent>, FsError> {
        let inode = self.inode(id)?;
        self.data_extents(&inode)
    }

    fn orphans(&self, named: &HashSet<u64>) -> Result<Vec<u64>, FsError> {
        let isz = u64::from(self.inode_size);
        let mut orphans = Vec::new();
        let mut orphan_dirs = Vec::new();
        for (g, group) in self.groups.iter().enumerate() {
            let Some(group) = group else { continue };
            let g32 = u32::try_from(g).unwrap_or(u32::MAX);
            // Every inode of every group is looked at, as TSK does: an
            // uninitialised table or its unused tail may still hold one.
            let count = u64::from(self.inodes_per_group);
            let Some(bitmap) = self.bitmap(g32) else {
                continue;
            };
            let base = g as u64 * u64::from(self.inodes_per_group);
            let Some(table) = group.inode_table.checked_mul(self.block_size) else {
                continue;
            };
            // The table in chunks of up to 1 MiB.
            let per_chunk = (1u64 << 20) / isz;
            let mut i = 0u64;
            while i < count {
                let n = per_chunk.min(count - i);
                let Ok(buf) = self
                    .volume
                    .read_exact_at(table + i * isz, usize::try_from(n * isz).unwrap_or(0))
                else {
                    break;
                };
                for j in 0..n {
                    let idx = i + j;
                    let bit = usize::try_from(idx).unwrap_or(usize::MAX);
                    if u8_at(&bitmap, bit / 8) & (1 << (bit % 8)) != 0 {
                        continue;
                    }
                    let raw = slice(&buf, usize::try_from(j * isz).unwrap_or(0), 128);
                    // TSK's "used": a change time was ever set.
                    if le32(raw, 0x0C) == 0 {
                        continue;
                    }
                    let ino = base + idx + 1;
                    if ino > u64::from(self.inodes_count) || named.contains(&ino) {
                        continue;
                    }
                    orphans.push(ino);
                    if Kind::from_mode(u32::from(le16(raw, 0))) == Kind::Dir {
                        orphan_dirs.push(ino);
                    }
                }
                i += n;
            }
        }
        // What a freed, unnamed directory still names is reached through
        // it, not listed again (as TSK does).
        let mut under: HashSet<u64> = HashSet::new();
        let mut todo = orphan_dirs.clone();
        let mut seen: HashSet<u64> = orphan_dirs.iter().copied().collect();
        while let Some(dir) = todo.pop() {
            let Ok(entries) = self.read_dir(dir) else {
                continue;
            };
            for e in entries {
                under.insert(e.id);
                if seen.insert(e.id)
                    && self
                        .inode(e.id)
                        .is_ok_and(|i| i.kind() == Kind::Dir && !self.allocated(&i))
                {
                    todo.push(e.id);
                }
            }
        }
        orphans.retain(|i| !under.contains(i));
        Ok(orphans)
    }

    fn problems(&self) -> Vec<Problem> {
        self.problems.clone()
    }

    fn volume(&self) -> &Arc<dyn ReadAt> {
        &self.volume
    }

    fn rdev(&self, id: u64) -> Result<Option<(u32, u32)>, FsError> {
        let inode = self.inode(id)?;
        if !matches!(inode.kind(), Kind::CharDevice | Kind::BlockDevice) {
            return Ok(None);
        }
        let b = inode.i_block();
        Ok(Some(super::decode_dev(le32(b, 0), le32(b, 4))))
    }

    fn xattr(&self, id: u64, name: &[u8]) -> Result<Option<Vec<u8>>, FsError> {
        let Some(want) = xattr_index(name) else {
            return Ok(None);
        };
        let inode = self.inode(id)?;
        self.xattr_of(&inode, want)
    }
}
