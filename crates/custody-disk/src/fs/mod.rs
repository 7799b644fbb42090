//! The [`FileSystem`] seam: what the walk, the bodyfile, the timeline and
//! the extraction of derived artefacts ask of a file system, and nothing
//! more. A reader sees one volume through [`ReadAt`]; every offset it
//! reports ([`Extent::physical`]) is a byte of that volume, so what is
//! extracted can be re-read from the parent image and re-hashed.
//!
//! Readers: [`ext4`], [`xfs`], [`ntfs`], [`fat`]; [`open`] picks one by the
//! volume's signature. [`walk`] lists every name from the root, then the
//! orphans; [`bodyfile`] writes them as TSK's bodyfile.

pub mod bodyfile;
pub mod ext4;
pub mod fat;
pub mod ntfs;
pub mod walk;
pub mod xfs;

use std::collections::HashSet;
use std::io;
use std::sync::Arc;

use serde::Serialize;

use crate::image::ReadAt;

/// A time as the file system keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Time {
    /// Seconds since the Unix epoch (UTC); negative before 1970.
    pub secs: i64,
    pub nanos: u32,
}

impl Time {
    pub fn new(secs: i64, nanos: u32) -> Self {
        Self { secs, nanos }
    }

    /// Microseconds since the epoch, as the timeline keeps times.
    pub fn micros(self) -> i64 {
        self.secs
            .saturating_mul(1_000_000)
            .saturating_add(i64::from(self.nanos / 1000))
    }
}

/// The times a file system keeps for a node; `None` where it keeps none
/// (FAT has no change time, ext2 no birth time).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Times {
    pub modified: Option<Time>,
    pub accessed: Option<Time>,
    /// Metadata change (ext4, XFS ctime; NTFS's MFT entry modified time).
    pub changed: Option<Time>,
    pub born: Option<Time>,
    /// ext4's deletion time (`i_dtime`), set when an inode was freed.
    pub deleted: Option<Time>,
}

/// What a node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    File,
    Dir,
    Symlink,
    CharDevice,
    BlockDevice,
    Fifo,
    Socket,
    /// A type the file system does not say, or a value no type has.
    Unknown,
}

impl Kind {
    /// The letter TSK's bodyfile and `ls -l` give the type.
    pub fn letter(self) -> char {
        match self {
            Self::File => 'r',
            Self::Dir => 'd',
            Self::Symlink => 'l',
            Self::CharDevice => 'c',
            Self::BlockDevice => 'b',
            Self::Fifo => 'p',
            Self::Socket => 's',
            Self::Unknown => '-',
        }
    }

    /// The type bits of a POSIX `st_mode`.
    pub fn from_mode(mode: u32) -> Self {
        match mode & 0o170000 {
            0o100000 => Self::File,
            0o040000 => Self::Dir,
            0o120000 => Self::Symlink,
            0o020000 => Self::CharDevice,
            0o060000 => Self::BlockDevice,
            0o010000 => Self::Fifo,
            0o140000 => Self::Socket,
            _ => Self::Unknown,
        }
    }
}

/// A file, directory or other node: an inode (ext4, XFS), an MFT record
/// (NTFS), a directory entry (FAT, which has no inodes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Node {
    /// The inode number, MFT record number, or for FAT the address TSK
    /// gives the entry, so paths and numbers compare with `fls`.
    pub id: u64,
    pub kind: Kind,
    /// The permission bits (`st_mode & 0o7777`), or what TSK shows for a
    /// file system that keeps none.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub links: u32,
    /// In use; false for a freed inode or an unallocated MFT record whose
    /// metadata is still readable.
    pub allocated: bool,
    pub times: Times,
    /// NTFS keeps a second set of times in the `$FILE_NAME` attribute,
    /// which tools set less easily than `$STANDARD_INFORMATION`'s.
    pub name_times: Option<Times>,
}

/// One name in a directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The name's bytes as stored (not always UTF-8 on Linux file
    /// systems; NTFS and FAT names are decoded from UTF-16).
    pub name: Vec<u8>,
    pub id: u64,
    /// The type the directory entry gives, where it gives one.
    pub kind: Option<Kind>,
    /// A name found in directory slack or marked deleted: the node it
    /// names may since have been reused.
    pub deleted: bool,
}

/// A run of a node's data: `len` bytes from `logical` in the file at
/// `physical` in the volume, or a hole (reads as zeros) when `None`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Extent {
    pub logical: u64,
    pub physical: Option<u64>,
    pub len: u64,
}

/// Why a reader could not answer. `at` says where, in the reader's own
/// words: `inode 12`, `MFT record 40`, `byte 4096`, `directory inode 2 block 7`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FsError {
    #[error("{at}: reading the volume: {source}")]
    Io {
        at: String,
        #[source]
        source: io::Error,
    },
    #[error("{at}: {what}")]
    Corrupt { at: String, what: String },
    #[error("{at}: {what} is not supported")]
    Unsupported { at: String, what: String },
}

impl FsError {
    pub fn corrupt(at: impl Into<String>, what: impl Into<String>) -> Self {
        Self::Corrupt {
            at: at.into(),
            what: what.into(),
        }
    }

    pub fn io(at: impl Into<String>, source: io::Error) -> Self {
        Self::Io {
            at: at.into(),
            source,
        }
    }
}

/// Something wrong found while reading, with its place; reading went on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub at: String,
    pub what: String,
}

impl From<&FsError> for Problem {
    fn from(e: &FsError) -> Self {
        match e {
            FsError::Io { at, source } => Self {
                at: at.clone(),
                what: format!("reading the volume: {source}"),
            },
            FsError::Corrupt { at, what } => Self {
                at: at.clone(),
                what: what.clone(),
            },
            FsError::Unsupported { at, what } => Self {
                at: at.clone(),
                what: format!("{what} is not supported"),
            },
        }
    }
}

/// A file system read from one volume. Calls take node ids the reader
/// gave out, or any number at all: an id an attacker chose gets an error,
/// never a panic.
pub trait FileSystem: Send + Sync {
    /// `ext4`, `xfs`, `ntfs`, `fat`.
    fn kind(&self) -> &'static str;

    /// The root directory's id.
    fn root(&self) -> u64;

    fn node(&self, id: u64) -> Result<Node, FsError>;

    /// The names in a directory, without `.` and `..`, deleted names that
    /// are still readable included (marked).
    fn read_dir(&self, dir: u64) -> Result<Vec<Entry>, FsError>;

    /// [`FileSystem::read_dir`] that keeps what could be read of a
    /// directory whose parts could not all be: the names found, and what
    /// was wrong, each with its place (a directory block past the end of a
    /// cut image loses only its own names). Readers that read a directory
    /// in one piece answer as `read_dir` does.
    fn read_dir_partial(&self, dir: u64) -> (Vec<Entry>, Vec<FsError>) {
        match self.read_dir(dir) {
            Ok(entries) => (entries, Vec::new()),
            Err(e) => (Vec::new(), vec![e]),
        }
    }

    /// Where a file's or symlink's data lies in the volume, in file order,
    /// covering `0..size` (holes as `physical: None`).
    fn extents(&self, id: u64) -> Result<Vec<Extent>, FsError>;

    /// Freed nodes whose metadata is still readable and that no directory
    /// names, in id order (TSK lists them under `/$OrphanFiles`). `named`
    /// holds every id a name leads to, as the walk found them (from the
    /// root, into live directories and into freed ones a deleted name still
    /// leads to): the walk has read every directory once already.
    fn orphans(&self, _named: &HashSet<u64>) -> Result<Vec<u64>, FsError> {
        Ok(Vec::new())
    }

    /// The name an orphan had, where the reader can tell it (FAT keeps the
    /// name in the entry it recovers); otherwise `OrphanFile-ID`, as TSK.
    fn orphan_name(&self, id: u64) -> Option<Vec<u8>> {
        let _ = id;
        None
    }

    /// Problems found so far outside any answer: when the file system was
    /// opened (a bad backup superblock, a log that needs replaying) and,
    /// for readers that keep them, during calls that still answered (a
    /// chain that loops, read up to the loop). The walk asks at its start
    /// and at its end.
    fn problems(&self) -> Vec<Problem> {
        Vec::new()
    }

    /// The volume the file system reads, which extents are offsets into.
    fn volume(&self) -> &Arc<dyn ReadAt>;

    /// The device number `(major, minor)` of a character or block device;
    /// `None` for any other node. An overlay whiteout is a character
    /// device 0/0. Readers that keep no device numbers say so.
    fn rdev(&self, id: u64) -> Result<Option<(u32, u32)>, FsError> {
        Err(FsError::Unsupported {
            at: format!("node {id}"),
            what: format!("device numbers on {}", self.kind()),
        })
    }

    /// The value of the extended attribute named `name` in full, as Linux
    /// names it (`trusted.overlay.opaque`, `user.x`, `security.selinux`);
    /// `None` when the node has no attribute of that name. Readers that
    /// read no extended attributes say so.
    fn xattr(&self, id: u64, name: &[u8]) -> Result<Option<Vec<u8>>, FsError> {
        let _ = name;
        Err(FsError::Unsupported {
            at: format!("node {id}"),
            what: format!("extended attributes on {}", self.kind()),
        })
    }
}

/// Linux's `new_decode_dev`/`old_decode_dev`, as ext4 keeps a device
/// number: a 16-bit old number when it is not zero, else the 32-bit new one.
pub fn decode_dev(old: u32, new: u32) -> (u32, u32) {
    if old != 0 {
        ((old >> 8) & 0xff, old & 0xff)
    } else {
        ((new & 0xfff00) >> 8, (new & 0xff) | ((new >> 12) & 0xfff00))
    }
}

/// Reads `buf.len()` bytes of a node's data from `offset` through its
/// extents; holes read as zeros, and nothing is read past `size`.
pub fn read_data(
    volume: &dyn ReadAt,
    extents: &[Extent],
    size: u64,
    offset: u64,
    buf: &mut [u8],
) -> Result<usize, FsError> {
    let end = size.min(offset.saturating_add(buf.len() as u64));
    if offset >= end {
        return Ok(0);
    }
    let want = usize::try_from(end - offset).unwrap_or(usize::MAX);
    let out = buf.get_mut(..want).unwrap_or_default();
    out.fill(0);
    for x in extents {
        let x_end = x.logical.saturating_add(x.len);
        if x_end <= offset || x.logical >= end {
            continue;
        }
        let Some(phys) = x.physical else { continue };
        let from = offset.max(x.logical);
        let to = end.min(x_end);
        let dst_at = usize::try_from(from - offset).unwrap_or(usize::MAX);
        let n = usize::try_from(to - from).unwrap_or(usize::MAX);
        let at = phys.saturating_add(from - x.logical);
        let Some(dst) = out.get_mut(dst_at..dst_at.saturating_add(n)) else {
            continue;
        };
        let got = volume
            .read_at(at, dst)
            .map_err(|e| FsError::io(format!("byte {at}"), e))?;
        if got < n {
            return Err(FsError::corrupt(
                format!("byte {at}"),
                format!("the data runs past the volume's end ({got} of {n} bytes readable)"),
            ));
        }
    }
    Ok(want)
}

/// The file systems [`open`] reads.
pub const READERS: &[&str] = &["ext4", "xfs", "ntfs", "fat"];

/// Opens the file system a volume holds, told by `content` (what
/// [`crate::volume::probe`] found); `None` for content no reader reads.
pub fn open(
    volume: Arc<dyn ReadAt>,
    content: crate::volume::Content,
) -> Option<Result<Box<dyn FileSystem>, FsError>> {
    use crate::volume::Content;
    Some(match content {
        Content::Ext => ext4::open(volume),
        Content::Xfs => xfs::open(volume),
        Content::Ntfs => ntfs::open(volume),
        Content::Fat => fat::open(volume),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_reads_through_extents_with_holes_and_stops_at_the_size() {
        let vol: Vec<u8> = (0..100u8).collect();
        let extents = [
            Extent {
                logical: 0,
                physical: Some(10),
                len: 4,
            },
            Extent {
                logical: 4,
                physical: None,
                len: 4,
            },
            Extent {
                logical: 8,
                physical: Some(50),
                len: 4,
            },
        ];
        let mut buf = [0xffu8; 16];
        let n = read_data(&vol, &extents, 10, 0, &mut buf).unwrap();
        assert_eq!(&buf[..n], &[10, 11, 12, 13, 0, 0, 0, 0, 50, 51]);
        let n = read_data(&vol, &extents, 10, 9, &mut buf).unwrap();
        assert_eq!(&buf[..n], &[51]);
        let past = [Extent {
            logical: 0,
            physical: Some(98),
            len: 4,
        }];
        assert!(read_data(&vol, &past, 4, 0, &mut buf).is_err());
    }
}
