//! FAT12, FAT16 and FAT32, read as The Sleuth Kit reads them, so that
//! names, numbers and times compare with `fls`:
//!
//! * FAT has no inodes: a node is a 32-byte directory entry, numbered as TSK
//!   numbers it: the root is 2, and the entry in slot `i` of sector `s`
//!   (counted from the first sector after the FATs: the FAT12/16 root
//!   directory, or FAT32's first cluster) is `3 + (s - first) * (sector size
//!   / 32) + i`. An entry named by a long name is numbered by its short
//!   entry's slot.
//! * Deleted entries (first byte 0xE5) are listed with that byte shown as
//!   `_`, as TSK shows them; an entry in a sector of a freed cluster (a
//!   deleted directory) is unallocated whatever its first byte says.
//! * Entries are checked as TSK checks them (valid 8.3 characters, a start
//!   cluster and size the volume can hold, not all zero); the 0x00
//!   end-of-directory mark is not trusted, as TSK does not trust it.
//! * Times are local time with no zone in FAT: they are read as UTC, which
//!   is what `fls -z UTC` prints. Created keeps 10 ms, modified 2 s,
//!   accessed only a date (midnight). FAT keeps no change time.
//! * The permission bits are TSK's: `x` always, `r` unless read-only, `w`
//!   unless hidden.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use super::{Entry, Extent, FileSystem, FsError, Kind, Node, Problem, Time, Times};
use crate::bytes::{le16, le32, slice, u8_at};
use crate::image::ReadAt;

/// The root directory's id, as TSK numbers it.
pub const ROOT: u64 = 2;
/// The first id of a directory entry slot.
const FIRST_SLOT: u64 = 3;
const DENTRY: u64 = 32;
/// A directory holds at most 65536 entries (the specification's limit):
/// a longer chain is a hostile one.
const MAX_DIR_BYTES: u64 = 65536 * DENTRY;
/// A file is at most 4 GiB; with clusters of one 512-byte sector that is
/// this many clusters.
const MAX_FILE_CLUSTERS: u64 = (1 << 32) / 512;
/// Problems kept after opening, at most.
const MAX_PROBLEMS: usize = 10_000;
/// FAT bytes read and kept per cache block, and blocks kept at most.
const FAT_BLOCK: u64 = 64 << 10;
const FAT_BLOCKS_KEPT: usize = 256;
/// Orphans listed at most.
const MAX_ORPHANS: usize = 1 << 20;
/// Bytes of free clusters read at once when looking for orphans.
const ORPHAN_READ: u64 = 1 << 20;

const ATTR_READONLY: u8 = 0x01;
const ATTR_HIDDEN: u8 = 0x02;
const ATTR_VOLUME: u8 = 0x08;
const ATTR_DIRECTORY: u8 = 0x10;
const ATTR_ARCHIVE: u8 = 0x20;
const ATTR_LFN: u8 = 0x0f;
const ATTR_ALL: u8 = 0x3f;
const SLOT_DELETED: u8 = 0xe5;
const LOWER_BASE: u8 = 0x08;
const LOWER_EXT: u8 = 0x10;
const LFN_FIRST: u8 = 0x40;
/// UTF-16 units of a long name kept at most (TSK's buffer holds 512).
const MAX_LFN_UNITS: usize = 512;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bits {
    Fat12,
    Fat16,
    Fat32,
}

/// A FAT file system opened on a volume.
pub struct Fat {
    volume: Arc<dyn ReadAt>,
    bits: Bits,
    /// Bytes per sector, sectors per cluster.
    ssize: u64,
    csize: u64,
    /// The first FAT's first sector.
    fat_sect: u64,
    /// Bytes of one FAT.
    fat_bytes: u64,
    /// The first sector after the FATs (FAT12/16: the root directory).
    first_data_sect: u64,
    /// Where cluster 2 starts.
    first_clust_sect: u64,
    /// FAT32's root directory cluster.
    root_clust: u32,
    /// The highest cluster number the data area holds.
    last_clust: u32,
    clust_cnt: u64,
    total_sects: u64,
    /// The highest slot id.
    last_slot: u64,
    opened: Vec<Problem>,
    /// Problems found after opening (a looping chain read for a file).
    found: Mutex<Vec<Problem>>,
    fat_cache: Mutex<HashMap<u64, Arc<Vec<u8>>>>,
}

/// Opens the FAT file system on `volume`.
pub fn open(volume: Arc<dyn ReadAt>) -> Result<Box<dyn FileSystem>, FsError> {
    Ok(Box::new(Fat::open(volume)?))
}

/// The 32 bytes of a short directory entry, decoded.
#[derive(Debug, Clone)]
struct Dentry {
    raw: [u8; 32],
}

impl Dentry {
    fn new(b: &[u8]) -> Self {
        let mut raw = [0u8; 32];
        let s = slice(b, 0, 32);
        if let Some(to) = raw.get_mut(..s.len()) {
            to.copy_from_slice(s);
        }
        Self { raw }
    }
    fn byte(&self, i: usize) -> u8 {
        u8_at(&self.raw, i)
    }
    fn attr(&self) -> u8 {
        self.byte(11)
    }
    fn is_lfn(&self) -> bool {
        self.attr() & ATTR_LFN == ATTR_LFN
    }
    fn is_volume(&self) -> bool {
        !self.is_lfn() && self.attr() & ATTR_VOLUME != 0
    }
    fn is_dir(&self) -> bool {
        self.attr() & ATTR_DIRECTORY != 0
    }
    fn deleted(&self) -> bool {
        self.byte(0) == SLOT_DELETED
    }
    fn lower(&self) -> u8 {
        self.byte(12)
    }
    fn ctimeten(&self) -> u8 {
        self.byte(13)
    }
    fn ctime(&self) -> u16 {
        le16(&self.raw, 14)
    }
    fn cdate(&self) -> u16 {
        le16(&self.raw, 16)
    }
    fn adate(&self) -> u16 {
        le16(&self.raw, 18)
    }
    fn wtime(&self) -> u16 {
        le16(&self.raw, 22)
    }
    fn wdate(&self) -> u16 {
        le16(&self.raw, 24)
    }
    /// The start cluster with its high half, as stored (TSK reads the high
    /// half on FAT12/16 too).
    fn cluster(&self) -> u32 {
        u32::from(le16(&self.raw, 26)) | (u32::from(le16(&self.raw, 20)) << 16)
    }
    fn size(&self) -> u32 {
        le32(&self.raw, 28)
    }
    /// The short name's checksum, which each of its long-name entries
    /// repeats.
    fn checksum(&self) -> u8 {
        self.raw.iter().take(11).fold(0u8, |sum, &b| {
            ((sum & 1) << 7).wrapping_add(sum >> 1).wrapping_add(b)
        })
    }

    /// The 8.3 name as TSK shows it: padding dropped, a `.` before the
    /// extension, the lower-case flags applied, a deleted entry's first
    /// byte as `_`, bytes past ASCII as `^`.
    fn short_name(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(12);
        let clean = |b: u8| if b > 0x7e { b'^' } else { b };
        for i in 0..8 {
            let b = self.byte(i);
            if b == 0 || b == 0xff || b == 0x20 {
                continue;
            }
            out.push(if i == 0 && b == SLOT_DELETED {
                b'_'
            } else if self.lower() & LOWER_BASE != 0 && b.is_ascii_uppercase() {
                clean(b.to_ascii_lowercase())
            } else {
                clean(b)
            });
        }
        for i in 0..3 {
            let b = self.byte(8 + i);
            if b == 0 || b == 0xff || b == 0x20 {
                continue;
            }
            if i == 0 {
                out.push(b'.');
            }
            out.push(if self.lower() & LOWER_EXT != 0 && b.is_ascii_uppercase() {
                b.to_ascii_lowercase()
            } else {
                clean(b)
            });
        }
        out
    }

    /// A volume label as TSK shows it: all eleven bytes, then a note.
    fn label_name(&self) -> Vec<u8> {
        let mut out: Vec<u8> = (0..11)
            .map(|i| {
                let b = self.byte(i);
                if b >= 0x20 && b != 0xff { b } else { b'^' }
            })
            .collect();
        out.extend_from_slice(b" (Volume Label Entry)");
        out
    }
}

/// A character an 8.3 name may hold.
fn is_83_char(c: u8) -> bool {
    !(c < 0x20
        || c == 0x22
        || (0x2a..=0x2c).contains(&c)
        || c == 0x2e
        || c == 0x2f
        || (0x3a..=0x3f).contains(&c)
        || (0x5b..=0x5d).contains(&c)
        || c == 0x7c)
}

fn is_83_name(d: &Dentry) -> bool {
    let n = |i: usize| d.byte(i);
    let first = n(0);
    if first != 0x05 && first != b'.' && !is_83_char(first) {
        return false;
    }
    if first == 0x20 {
        return false;
    }
    if n(1) == b'.' {
        if first != b'.' {
            return false;
        }
    } else if !is_83_char(n(1)) {
        return false;
    }
    if !(2..11).all(|i| is_83_char(n(i))) {
        return false;
    }
    // Once a space, spaces to the end of the part (volume labels aside).
    if !d.is_volume() {
        let spaced =
            (1..7).any(|i| n(i) == 0x20 && n(i + 1) != 0x20) || (n(9) == 0x20 && n(10) != 0x20);
        if spaced {
            return false;
        }
    }
    true
}

fn is_time(t: u16) -> bool {
    (t & 0x1f) <= 30 && ((t >> 5) & 0x3f) <= 59 && (t >> 11) <= 23
}

fn is_date(d: u16) -> bool {
    let day = d & 0x1f;
    let mon = (d >> 5) & 0x0f;
    (1..=31).contains(&day) && (1..=12).contains(&mon)
}

/// Days from 1970-01-01 to a proleptic Gregorian date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// A DOS date and time as seconds since the epoch, read as UTC (FAT keeps
/// local time with no zone). Out-of-range fields read as zero and a day
/// past the month's end rolls over, as TSK's conversion does; `None` for no
/// date. Unlike TSK, years past 2037 are kept, not zeroed.
fn dos_time(date: u16, time: u16, tens: u8) -> Option<Time> {
    if date == 0 || !is_date(date) {
        return None;
    }
    let mut sec = i64::from(time & 0x1f) * 2;
    if sec > 60 {
        sec = 0;
    }
    if tens >= 100 {
        sec += 1;
    }
    let min = i64::from((time >> 5) & 0x3f);
    let min = if min > 59 { 0 } else { min };
    let hour = i64::from(time >> 11);
    let hour = if hour > 23 { 0 } else { hour };
    let day = i64::from(date & 0x1f);
    let mon = i64::from((date >> 5) & 0x0f);
    let year = 1980 + i64::from(date >> 9);
    let days = days_from_civil(year, mon, 1) + day - 1;
    let secs = days * 86_400 + hour * 3600 + min * 60 + sec;
    Some(Time::new(secs, u32::from(tens % 100) * 10_000_000))
}

impl Fat {
    /// Reads the boot sector and checks that its fields describe a FAT.
    pub fn open(volume: Arc<dyn ReadAt>) -> Result<Self, FsError> {
        let bs = volume
            .read_exact_at(0, 512)
            .map_err(|e| FsError::io("boot sector (byte 0)", e))?;
        let bad = |what: String| FsError::corrupt("boot sector (byte 0)", what);
        if slice(&bs, 510, 2) != b"\x55\xaa" {
            return Err(bad("no 55 AA signature at byte 510".into()));
        }
        let ssize = u64::from(le16(&bs, 11));
        if !matches!(ssize, 512 | 1024 | 2048 | 4096) {
            return Err(bad(format!("a sector size of {ssize} bytes")));
        }
        let csize = u64::from(u8_at(&bs, 13));
        if csize == 0 || !csize.is_power_of_two() {
            return Err(bad(format!("{csize} sectors per cluster")));
        }
        let reserved = u64::from(le16(&bs, 14));
        if reserved == 0 {
            return Err(bad("no reserved sectors (the boot sector is one)".into()));
        }
        let num_fats = u64::from(u8_at(&bs, 16));
        if num_fats == 0 {
            return Err(bad("no FAT".into()));
        }
        let num_root = u64::from(le16(&bs, 17));
        let total_sects = match le16(&bs, 19) {
            0 => u64::from(le32(&bs, 32)),
            n => u64::from(n),
        };
        let fat16_size = u64::from(le16(&bs, 22));
        let (sect_per_fat, fat32) = if fat16_size == 0 {
            (u64::from(le32(&bs, 36)), true)
        } else {
            (fat16_size, false)
        };
        if sect_per_fat == 0 {
            return Err(bad("a FAT of no sectors".into()));
        }
        let first_data_sect = reserved + num_fats * sect_per_fat;
        let root_sects = (num_root * DENTRY).div_ceil(ssize);
        let first_clust_sect = if fat32 {
            first_data_sect
        } else {
            first_data_sect + root_sects
        };
        if total_sects <= first_clust_sect {
            return Err(bad(format!(
                "{total_sects} sectors in all, but the data area starts at sector {first_clust_sect}"
            )));
        }
        let clust_cnt = (total_sects - first_clust_sect) / csize;
        if clust_cnt == 0 {
            return Err(bad("no whole cluster in the data area".into()));
        }
        let bits = if fat32 {
            Bits::Fat32
        } else if clust_cnt < 4085 {
            Bits::Fat12
        } else {
            Bits::Fat16
        };
        if !fat32 && num_root == 0 {
            return Err(bad("a FAT12/16 root directory of no entries".into()));
        }
        // Clusters the FAT has entries for bound the data area too.
        let fat_bytes = sect_per_fat * ssize;
        let fat_entries = match bits {
            Bits::Fat12 => fat_bytes * 2 / 3,
            Bits::Fat16 => fat_bytes / 2,
            Bits::Fat32 => fat_bytes / 4,
        };
        let max_clust = match bits {
            Bits::Fat12 => 0xff6,
            Bits::Fat16 => 0xfff6,
            Bits::Fat32 => 0x0fff_fff6,
        };
        let last_clust = (clust_cnt + 1)
            .min(fat_entries.saturating_sub(1))
            .min(max_clust);
        let last_clust = u32::try_from(last_clust).unwrap_or(u32::MAX);
        if last_clust < 2 {
            return Err(bad("a FAT too small for any cluster".into()));
        }
        let root_clust = le32(&bs, 44);
        if fat32 && !(2..=last_clust).contains(&root_clust) {
            return Err(bad(format!(
                "the root directory starts at cluster {root_clust}, outside clusters 2 to {last_clust}"
            )));
        }
        let per_sect = ssize / DENTRY;
        let last_slot = (total_sects - first_data_sect) * per_sect + FIRST_SLOT - 1;
        let mut opened = Vec::new();
        let want = total_sects.saturating_mul(ssize);
        if volume.size() < want {
            opened.push(Problem {
                at: format!("byte {}", volume.size()),
                what: format!(
                    "the volume is cut: the boot sector gives {want} bytes, the volume holds {}",
                    volume.size()
                ),
            });
        }
        Ok(Self {
            volume,
            bits,
            ssize,
            csize,
            fat_sect: reserved,
            fat_bytes,
            first_data_sect,
            first_clust_sect,
            root_clust,
            last_clust,
            clust_cnt,
            total_sects,
            last_slot,
            opened,
            found: Mutex::new(Vec::new()),
            fat_cache: Mutex::new(HashMap::new()),
        })
    }

    fn note(&self, at: String, what: String) {
        if let Ok(mut found) = self.found.lock() {
            let p = Problem { at, what };
            if found.len() < MAX_PROBLEMS && !found.contains(&p) {
                found.push(p);
            }
        }
    }

    fn cluster_bytes(&self) -> u64 {
        self.csize * self.ssize
    }

    /// The byte where cluster `c` starts.
    fn cluster_at(&self, c: u32) -> u64 {
        (self.first_clust_sect + (u64::from(c).saturating_sub(2)) * self.csize) * self.ssize
    }

    fn mask(&self) -> u32 {
        match self.bits {
            Bits::Fat12 => 0xfff,
            Bits::Fat16 => 0xffff,
            Bits::Fat32 => 0x0fff_ffff,
        }
    }

    fn is_eof(&self, v: u32) -> bool {
        v >= (0x0fff_fff8 & self.mask()) && v <= 0x0fff_ffff
    }

    /// One byte of the first FAT, through a cache of FAT blocks.
    fn fat_byte(&self, off: u64) -> Result<u8, FsError> {
        let at = |o: u64| format!("FAT byte {o}");
        if off >= self.fat_bytes {
            return Err(FsError::corrupt(at(off), "past the FAT's end"));
        }
        let block = off / FAT_BLOCK;
        let cached = self
            .fat_cache
            .lock()
            .ok()
            .and_then(|c| c.get(&block).cloned());
        let data = match cached {
            Some(d) => d,
            None => {
                let start = self.fat_sect * self.ssize + block * FAT_BLOCK;
                let len = FAT_BLOCK.min(self.fat_bytes - block * FAT_BLOCK);
                let mut buf = vec![0u8; usize::try_from(len).unwrap_or(0)];
                let n = self
                    .volume
                    .read_at(start, &mut buf)
                    .map_err(|e| FsError::io(at(off), e))?;
                buf.truncate(n);
                let d = Arc::new(buf);
                if let Ok(mut c) = self.fat_cache.lock() {
                    if c.len() >= FAT_BLOCKS_KEPT {
                        c.clear();
                    }
                    c.insert(block, d.clone());
                }
                d
            }
        };
        let i = usize::try_from(off % FAT_BLOCK).unwrap_or(usize::MAX);
        data.get(i).copied().ok_or_else(|| {
            FsError::corrupt(
                at(off),
                "the volume ends inside the FAT (a cut image)".to_string(),
            )
        })
    }

    /// The FAT's entry for cluster `c`.
    fn fat_entry(&self, c: u32) -> Result<u32, FsError> {
        let c64 = u64::from(c);
        Ok(match self.bits {
            Bits::Fat12 => {
                let off = c64 + c64 / 2;
                let v = u16::from(self.fat_byte(off)?) | (u16::from(self.fat_byte(off + 1)?) << 8);
                u32::from(if c & 1 == 1 { v >> 4 } else { v & 0xfff })
            }
            Bits::Fat16 => {
                let off = c64 * 2;
                u32::from(self.fat_byte(off)?) | (u32::from(self.fat_byte(off + 1)?) << 8)
            }
            Bits::Fat32 => {
                let off = c64 * 4;
                let mut v = 0u32;
                for i in 0..4 {
                    v |= u32::from(self.fat_byte(off + i)?) << (8 * i);
                }
                v & 0x0fff_ffff
            }
        })
    }

    /// Whether cluster `c` is in use; a FAT that cannot be read says no.
    fn cluster_allocated(&self, c: u32) -> bool {
        (2..=self.last_clust).contains(&c) && self.fat_entry(c).is_ok_and(|v| v != 0)
    }

    /// Whether a sector holds live data: the FAT12/16 root directory and
    /// the areas before the clusters always; a cluster's sector if the
    /// cluster is in use.
    fn sector_allocated(&self, sect: u64) -> bool {
        if sect < self.first_clust_sect {
            return true;
        }
        let c = 2 + (sect - self.first_clust_sect) / self.csize;
        u32::try_from(c).is_ok_and(|c| self.cluster_allocated(c))
    }

    /// The cluster chain from `start`, `max` clusters at most. A chain that
    /// loops, leaves the data area, or reaches a free or bad cluster ends
    /// there, with a problem naming the cluster.
    fn chain(&self, start: u32, max: u64, whose: &str) -> (Vec<u32>, Option<Problem>) {
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        let mut c = start;
        let problem = |what: String| {
            Some(Problem {
                at: whose.to_string(),
                what,
            })
        };
        let max = max.min(self.clust_cnt);
        loop {
            if out.len() as u64 >= max {
                return (out, None);
            }
            if !(2..=self.last_clust).contains(&c) {
                return (
                    out,
                    problem(format!(
                        "the cluster chain reaches cluster {c}, outside clusters 2 to {}",
                        self.last_clust
                    )),
                );
            }
            if !seen.insert(c) {
                return (
                    out,
                    problem(format!(
                        "the FAT chain loops back to cluster {c}: read up to the loop"
                    )),
                );
            }
            out.push(c);
            if out.len() as u64 >= max {
                return (out, None);
            }
            let next = match self.fat_entry(c) {
                Ok(n) => n,
                Err(e) => {
                    return (
                        out,
                        problem(format!("the FAT entry of cluster {c} cannot be read: {e}")),
                    );
                }
            };
            if self.is_eof(next) {
                return (out, None);
            }
            if next == 0 {
                return (
                    out,
                    problem(format!(
                        "the chain reaches free cluster 0 after cluster {c}"
                    )),
                );
            }
            c = next;
        }
    }

    /// Contiguous runs of clusters as extents covering `size` bytes; what
    /// the clusters do not cover is a hole.
    fn cluster_extents(&self, clusters: &[u32], size: u64) -> Vec<Extent> {
        let cb = self.cluster_bytes();
        let mut out: Vec<Extent> = Vec::new();
        let mut logical = 0u64;
        for &c in clusters {
            if logical >= size {
                break;
            }
            let len = cb.min(size - logical);
            let phys = self.cluster_at(c);
            match out.last_mut() {
                Some(last)
                    if last.physical.map(|p| p + last.len) == Some(phys) && last.len % cb == 0 =>
                {
                    last.len += len;
                }
                _ => out.push(Extent {
                    logical,
                    physical: Some(phys),
                    len,
                }),
            }
            logical += len;
        }
        if logical < size {
            out.push(Extent {
                logical,
                physical: None,
                len: size - logical,
            });
        }
        out
    }

    /// The slot id's sector and byte offset in the volume.
    fn slot_place(&self, id: u64) -> Result<(u64, u64), FsError> {
        if id < FIRST_SLOT || id > self.last_slot {
            return Err(FsError::corrupt(
                format!("entry {id}"),
                format!(
                    "no directory entry has this number (entries are {FIRST_SLOT} to {})",
                    self.last_slot
                ),
            ));
        }
        let per = self.ssize / DENTRY;
        let sect = (id - FIRST_SLOT) / per + self.first_data_sect;
        let off = sect * self.ssize + (id - FIRST_SLOT) % per * DENTRY;
        Ok((sect, off))
    }

    fn dentry(&self, id: u64) -> Result<(Dentry, bool), FsError> {
        let (sect, off) = self.slot_place(id)?;
        let b = self
            .volume
            .read_exact_at(off, DENTRY as usize)
            .map_err(|e| FsError::io(format!("entry {id} (byte {off})"), e))?;
        Ok((Dentry::new(&b), self.sector_allocated(sect)))
    }

    /// TSK's size for a directory: its chain's clusters if allocated; if
    /// not, one cluster when its first cluster is free, else none.
    fn dir_size(&self, d: &Dentry, allocated: bool, id: u64) -> u64 {
        let start = d.cluster() & self.mask();
        if allocated {
            let (chain, problem) = self.chain(
                start,
                MAX_DIR_BYTES / self.cluster_bytes() + 1,
                &format!("directory entry {id}"),
            );
            if let Some(p) = problem {
                self.note(p.at, p.what);
            }
            chain.len() as u64 * self.cluster_bytes()
        } else if self.cluster_allocated(start) {
            0
        } else {
            self.cluster_bytes()
        }
    }

    fn root_node(&self) -> Node {
        let size = match self.bits {
            Bits::Fat32 => {
                let (c, _) = self.chain(
                    self.root_clust,
                    MAX_DIR_BYTES / self.cluster_bytes() + 1,
                    "root directory",
                );
                c.len() as u64 * self.cluster_bytes()
            }
            _ => (self.first_clust_sect - self.first_data_sect) * self.ssize,
        };
        Node {
            id: ROOT,
            kind: Kind::Dir,
            mode: 0o777,
            uid: 0,
            gid: 0,
            size,
            links: 1,
            allocated: true,
            times: Times::default(),
            name_times: None,
        }
    }

    /// Where a node's data lies; deleted files are recovered as TSK
    /// recovers them.
    fn data(&self, id: u64) -> Result<Vec<Extent>, FsError> {
        if id == ROOT {
            return Ok(match self.bits {
                Bits::Fat32 => {
                    let (c, p) = self.chain(
                        self.root_clust,
                        MAX_DIR_BYTES / self.cluster_bytes() + 1,
                        "root directory",
                    );
                    if let Some(p) = p {
                        self.note(p.at, p.what);
                    }
                    let size = c.len() as u64 * self.cluster_bytes();
                    self.cluster_extents(&c, size)
                }
                _ => vec![Extent {
                    logical: 0,
                    physical: Some(self.first_data_sect * self.ssize),
                    len: (self.first_clust_sect - self.first_data_sect) * self.ssize,
                }],
            });
        }
        let (d, sect_alloc) = self.dentry(id)?;
        if d.is_lfn() {
            return Err(FsError::corrupt(
                format!("entry {id}"),
                "a long-name slot, which has no data",
            ));
        }
        let allocated = sect_alloc && !d.deleted();
        let start = d.cluster() & self.mask();
        let size = if d.is_dir() {
            self.dir_size(&d, allocated, id)
        } else {
            u64::from(d.size())
        };
        if size == 0 {
            return Ok(Vec::new());
        }
        let cb = self.cluster_bytes();
        let whose = format!("entry {id}");
        if allocated {
            let want = if d.is_dir() {
                size / cb
            } else {
                size.div_ceil(cb).min(MAX_FILE_CLUSTERS)
            };
            let (c, p) = self.chain(start, want, &whose);
            if let Some(p) = p {
                self.note(p.at, p.what);
            }
            return Ok(self.cluster_extents(&c, size));
        }
        // A deleted entry's chain is freed: like TSK, assume its clusters
        // follow one another from its first cluster, skipping those in
        // use now. A first cluster in use again holds someone else's data:
        // the whole file is then a hole (TSK reads that cluster anyway).
        if !(2..=self.last_clust).contains(&start) || self.cluster_allocated(start) {
            return Ok(vec![Extent {
                logical: 0,
                physical: None,
                len: size,
            }]);
        }
        let want = size.div_ceil(cb).min(MAX_FILE_CLUSTERS);
        let mut clusters = Vec::new();
        let mut c = start;
        while (clusters.len() as u64) < want && c <= self.last_clust {
            if !self.cluster_allocated(c) {
                clusters.push(c);
            }
            c = c.saturating_add(1);
            if c == u32::MAX {
                break;
            }
        }
        Ok(self.cluster_extents(&clusters, size))
    }

    /// The names in a directory's bytes: runs of whole sectors, each with
    /// the sector it starts at.
    fn parse_dir(&self, runs: &[(u64, Vec<u8>)]) -> Vec<Entry> {
        let per = self.ssize / DENTRY;
        let mut out = Vec::new();
        let mut lfn: Vec<u16> = Vec::new();
        let mut lfn_chk: u8 = 0;
        let mut lfn_full = false;
        for (first_sect, bytes) in runs {
            for (si, sector) in bytes
                .chunks(usize::try_from(self.ssize).unwrap_or(512))
                .enumerate()
            {
                let sect = first_sect + si as u64;
                if sect < self.first_data_sect {
                    continue;
                }
                let base = (sect - self.first_data_sect) * per + FIRST_SLOT;
                let sect_alloc = self.sector_allocated(sect);
                let mut seen = 0;
                let mut invalid = 0;
                let mut corrupt_dir = false;
                for (i, raw) in sector.chunks_exact(DENTRY as usize).enumerate() {
                    let d = Dentry::new(raw);
                    seen += 1;
                    if !self.is_dentry(&d, sect_alloc && !corrupt_dir) {
                        invalid += 1;
                        // Four bad entries in a row at the start: this is
                        // not a directory's sector; check the rest fully.
                        if seen == 4 && invalid == 4 {
                            corrupt_dir = true;
                        }
                        continue;
                    }
                    let id = base + i as u64;
                    if d.is_lfn() {
                        let seq = d.byte(0);
                        let chk = d.byte(13);
                        if (seq & LFN_FIRST != 0 && seq != SLOT_DELETED) || chk != lfn_chk {
                            lfn.clear();
                            lfn_full = false;
                            lfn_chk = chk;
                        }
                        if !lfn_full {
                            let units: Vec<u16> =
                                [1usize, 3, 5, 7, 9, 14, 16, 18, 20, 22, 24, 28, 30]
                                    .iter()
                                    .map(|&o| le16(raw, o))
                                    .collect();
                            let mut joined = units;
                            joined.extend_from_slice(&lfn);
                            lfn = joined;
                            if lfn.len() >= MAX_LFN_UNITS {
                                lfn.truncate(MAX_LFN_UNITS);
                                lfn_full = true;
                            }
                        }
                        continue;
                    }
                    let name = if d.is_volume() {
                        d.label_name()
                    } else {
                        let long = if lfn.is_empty() {
                            None
                        } else {
                            // The long name belongs to this entry if its
                            // checksum is this short name's. A deleted
                            // entry's first byte is overwritten, so its
                            // checksum cannot be checked: TSK takes the long
                            // name then, and so do we.
                            let ok = d.deleted() || d.checksum() == lfn_chk;
                            let units: Vec<u16> =
                                lfn.iter().copied().take_while(|&u| u != 0).collect();
                            lfn.clear();
                            lfn_full = false;
                            (ok && !units.is_empty())
                                .then(|| String::from_utf16_lossy(&units).into_bytes())
                        };
                        long.unwrap_or_else(|| d.short_name())
                    };
                    if name == b"." || name == b".." {
                        continue;
                    }
                    let allocated = sect_alloc && !d.deleted();
                    out.push(Entry {
                        name,
                        id,
                        kind: Some(if d.is_dir() { Kind::Dir } else { Kind::File }),
                        deleted: !allocated,
                    });
                }
            }
        }
        out
    }

    /// TSK's test of whether 32 bytes are a directory entry: the basic one
    /// in a sector in use, the full one (valid times, flags) elsewhere.
    fn is_dentry(&self, d: &Dentry, basic: bool) -> bool {
        if d.is_lfn() {
            let seq = d.byte(0);
            return seq <= (LFN_FIRST | 0x0f) || seq == SLOT_DELETED;
        }
        if !basic {
            if d.lower() & !(LOWER_BASE | LOWER_EXT) != 0 || d.attr() & !ATTR_ALL != 0 {
                return false;
            }
            if d.attr() & ATTR_VOLUME != 0
                && d.attr() & (ATTR_DIRECTORY | ATTR_READONLY | ATTR_ARCHIVE) != 0
            {
                return false;
            }
            let date_ok = |date: u16| date == 0 || (is_date(date) && (date >> 9) + 80 <= 137);
            if (d.ctime() != 0 && !is_time(d.ctime()))
                || (d.wtime() != 0 && !is_time(d.wtime()))
                || !date_ok(d.cdate())
                || d.ctimeten() > 200
                || !date_ok(d.adate())
                || !date_ok(d.wdate())
            {
                return false;
            }
        }
        let clust = d.cluster();
        if clust > self.last_clust && !self.is_eof(clust) {
            return false;
        }
        let data_bytes = self.clust_cnt * self.cluster_bytes();
        if u64::from(d.size()) > data_bytes || (d.size() > 0 && clust == 0) {
            return false;
        }
        if !is_83_name(d) {
            return false;
        }
        !(d.ctime() == 0
            && d.wtime() == 0
            && d.cdate() == 0
            && d.adate() == 0
            && d.wdate() == 0
            && clust == 0
            && d.size() == 0)
    }

    /// The ids a walk from the root names, deleted names in deleted
    /// directories included, as TSK collects them before looking for
    /// orphans. Directories already read are not read again.
    /// Reads a node's data through its extents, in runs of sectors.
    fn read_runs(&self, extents: &[Extent], whose: &str) -> Vec<(u64, Vec<u8>)> {
        let mut out = Vec::new();
        for x in extents {
            let Some(phys) = x.physical else { continue };
            let mut buf = vec![0u8; usize::try_from(x.len).unwrap_or(0)];
            match self.volume.read_at(phys, &mut buf) {
                Ok(n) => {
                    if n < buf.len() {
                        self.note(
                            format!("{whose} (byte {})", phys + n as u64),
                            "the volume ends inside the directory (a cut image)".into(),
                        );
                    }
                    buf.truncate(n);
                }
                Err(e) => {
                    self.note(format!("{whose} (byte {phys})"), format!("reading: {e}"));
                    continue;
                }
            }
            out.push((phys / self.ssize, buf));
        }
        out
    }
}

impl FileSystem for Fat {
    fn kind(&self) -> &'static str {
        "fat"
    }

    fn root(&self) -> u64 {
        ROOT
    }

    fn node(&self, id: u64) -> Result<Node, FsError> {
        if id == ROOT {
            return Ok(self.root_node());
        }
        let (d, sect_alloc) = self.dentry(id)?;
        if d.is_lfn() {
            return Err(FsError::corrupt(
                format!("entry {id}"),
                "a long-name slot, not a file's entry",
            ));
        }
        let allocated = sect_alloc && !d.deleted();
        let ro = d.attr() & ATTR_READONLY != 0;
        let hidden = d.attr() & ATTR_HIDDEN != 0;
        let mode = 0o111 | if ro { 0 } else { 0o444 } | if hidden { 0 } else { 0o222 };
        let kind = if d.is_dir() { Kind::Dir } else { Kind::File };
        let size = if d.is_dir() {
            self.dir_size(&d, allocated, id)
        } else {
            u64::from(d.size())
        };
        let wdate = d.wdate();
        let adate = d.adate();
        let cdate = d.cdate();
        Ok(Node {
            id,
            kind,
            mode,
            uid: 0,
            gid: 0,
            size,
            links: u32::from(!d.deleted()),
            allocated,
            times: Times {
                modified: is_date(wdate)
                    .then(|| dos_time(wdate, d.wtime(), 0))
                    .flatten(),
                accessed: is_date(adate).then(|| dos_time(adate, 0, 0)).flatten(),
                changed: None,
                born: is_date(cdate)
                    .then(|| dos_time(cdate, d.ctime(), d.ctimeten()))
                    .flatten(),
                deleted: None,
            },
            name_times: None,
        })
    }

    fn read_dir(&self, dir: u64) -> Result<Vec<Entry>, FsError> {
        let whose = if dir == ROOT {
            "root directory".to_string()
        } else {
            format!("directory entry {dir}")
        };
        if dir != ROOT {
            let (d, _) = self.dentry(dir)?;
            if d.is_lfn() || !d.is_dir() {
                return Err(FsError::corrupt(whose, "not a directory"));
            }
        }
        let extents = self.data(dir)?;
        let runs = self.read_runs(&extents, &whose);
        Ok(self.parse_dir(&runs))
    }

    /// A chain that loops or breaks gives the extents up to there, the
    /// rest a hole; the problem is kept and [`FileSystem::problems`] lists
    /// it from then on.
    fn extents(&self, id: u64) -> Result<Vec<Extent>, FsError> {
        self.data(id)
    }

    /// Deleted entries no name leads to, found as TSK finds them: in the
    /// sectors of free clusters whose first slot reads as an entry (TSK's
    /// full test), the entries that are neither long-name slots nor `.` and
    /// `..`. Entries left in a file's slack are not looked for, as TSK does
    /// not look for them.
    fn orphans(&self, named: &HashSet<u64>) -> Result<Vec<u64>, FsError> {
        let per = self.ssize / DENTRY;
        let ssize = usize::try_from(self.ssize).unwrap_or(512);
        let mut out = Vec::new();
        let mut c = 2u32;
        while c <= self.last_clust {
            if self.cluster_allocated(c) {
                c += 1;
                continue;
            }
            // A run of free clusters, read at once.
            let first = c;
            let most = (ORPHAN_READ / self.cluster_bytes()).max(1);
            while c <= self.last_clust && u64::from(c - first) < most && !self.cluster_allocated(c)
            {
                c += 1;
            }
            let at = self.cluster_at(first);
            let len = u64::from(c - first) * self.cluster_bytes();
            let mut buf = vec![0u8; usize::try_from(len).unwrap_or(0)];
            let n = match self.volume.read_at(at, &mut buf) {
                Ok(n) => n,
                Err(e) => {
                    self.note(
                        format!("cluster {first} (byte {at})"),
                        format!("reading: {e}"),
                    );
                    continue;
                }
            };
            buf.truncate(n);
            let first_sect = at / self.ssize;
            for (si, sector) in buf.chunks(ssize).enumerate() {
                if !self.is_dentry(&Dentry::new(sector), false) {
                    continue;
                }
                let sect = first_sect + si as u64;
                let base = (sect - self.first_data_sect) * per + FIRST_SLOT;
                for (i, raw) in sector.chunks_exact(DENTRY as usize).enumerate() {
                    let d = Dentry::new(raw);
                    let id = base + i as u64;
                    if !self.is_dentry(&d, false)
                        || d.is_lfn()
                        || (d.is_dir() && d.byte(0) == b'.')
                        || named.contains(&id)
                    {
                        continue;
                    }
                    out.push(id);
                    if out.len() >= MAX_ORPHANS {
                        self.note(
                            "orphan search".into(),
                            format!(
                                "more than {MAX_ORPHANS} orphan entries: the rest are not listed"
                            ),
                        );
                        return Ok(out);
                    }
                }
            }
        }
        Ok(out)
    }

    /// Problems found when opening, then those found reading since.
    fn problems(&self) -> Vec<Problem> {
        let mut out = self.opened.clone();
        if let Ok(found) = self.found.lock() {
            out.extend(found.iter().cloned());
        }
        out
    }

    fn volume(&self) -> &Arc<dyn ReadAt> {
        &self.volume
    }
}

impl Fat {
    /// The number of sectors the boot sector gives.
    pub fn sectors(&self) -> u64 {
        self.total_sects
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dos_times_read_as_utc() {
        // 2021-03-04 05:06:08, 1.5 s of tens.
        let date = ((2021 - 1980) << 9) | (3 << 5) | 4;
        let time = (5 << 11) | (6 << 5) | 4;
        let t = dos_time(date, time, 150).unwrap();
        assert_eq!(t.secs, 1_614_834_369);
        assert_eq!(t.nanos, 500_000_000);
        assert_eq!(dos_time(0, time, 0), None);
    }

    #[test]
    fn short_names_read_as_tsk_shows_them() {
        let mut raw = [0u8; 32];
        raw[..11].copy_from_slice(b"\xe5EADME  TXT");
        raw[12] = LOWER_BASE | LOWER_EXT;
        assert_eq!(Dentry::new(&raw).short_name(), b"_eadme.txt");
    }

    #[test]
    fn a_garbage_boot_sector_is_an_error() {
        let v: Arc<dyn ReadAt> = Arc::new(vec![0u8; 4096]);
        let e = Fat::open(v).err().unwrap();
        assert!(e.to_string().contains("boot sector"), "{e}");
    }
}
