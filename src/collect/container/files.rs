//! What the inventory and the layer ask of a file tree, and nothing more:
//! the same logic reads the live host ([`Host`], through `std::fs`) and a
//! node's disk image ([`Image`], through custody-disk's `FileSystem`
//! seam, without mounting or running anything).
//!
//! Paths are absolute paths of the node (`/var/lib/docker/...`): the live
//! host's own, or resolved by name from the image's root. Links are
//! followed where `std::fs` follows them (every component but the last,
//! and the last for [`Files::read`], [`Files::list`] and [`Files::stat`]);
//! in an image they resolve inside it, absolute targets from its root.

use std::collections::HashMap;
use std::ffi::OsString;
use std::io::{self, Read};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};

use custody_disk::fs::{self, FileSystem, Kind};

/// What `lstat`/`stat` gives the layer and the inventory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    pub kind: Kind,
    pub size: u64,
    /// Permission bits (`st_mode & 0o7777`).
    pub mode: u32,
    pub uid: u32,
    /// Seconds since the epoch; 0 where the file system keeps none.
    pub mtime: i64,
    /// `(major, minor)` of a device.
    pub rdev: Option<(u32, u32)>,
    /// Which node it is: `(device, inode)` on the host, `(0, id)` in an image.
    pub id: (u64, u64),
}

impl Stat {
    pub fn is_dir(&self) -> bool {
        self.kind == Kind::Dir
    }
}

/// A file tree the container code reads.
pub trait Files: Send + Sync {
    /// The live host: its state may change between two reads.
    fn live(&self) -> bool;
    /// A file's bytes, following a last link, at most `cap` of them.
    fn read(&self, path: &Path, cap: u64) -> io::Result<Vec<u8>>;
    /// The names in a directory (following a last link), unsorted.
    fn list(&self, dir: &Path) -> io::Result<Vec<OsString>>;
    /// `lstat`: a last link is not followed.
    fn lstat(&self, path: &Path) -> io::Result<Stat>;
    /// `stat`: a last link is followed.
    fn stat(&self, path: &Path) -> io::Result<Stat>;
    fn read_link(&self, path: &Path) -> io::Result<PathBuf>;
    /// An extended attribute of the node itself (a last link is not
    /// followed); `None` when it has none by that name.
    fn xattr(&self, path: &Path, name: &str) -> io::Result<Option<Vec<u8>>>;
    /// A file opened to stream (a last link followed, as `File::open`).
    fn open(&self, path: &Path) -> io::Result<Box<dyn Read + Send>>;
}

/// The live host, through `std::fs` (what the live code always did).
#[derive(Debug, Clone, Copy, Default)]
pub struct Host;

/// glibc's `major`/`minor` of an `st_rdev`.
fn split_dev(d: u64) -> (u32, u32) {
    let major = ((d >> 8) & 0xfff) | ((d >> 32) & !0xfff);
    let minor = (d & 0xff) | ((d >> 12) & !0xff);
    (
        u32::try_from(major).unwrap_or(u32::MAX),
        u32::try_from(minor).unwrap_or(u32::MAX),
    )
}

fn from_std(m: &std::fs::Metadata) -> Stat {
    let ft = m.file_type();
    let kind = if ft.is_symlink() {
        Kind::Symlink
    } else if ft.is_dir() {
        Kind::Dir
    } else if ft.is_file() {
        Kind::File
    } else if ft.is_fifo() {
        Kind::Fifo
    } else if ft.is_socket() {
        Kind::Socket
    } else if ft.is_char_device() {
        Kind::CharDevice
    } else if ft.is_block_device() {
        Kind::BlockDevice
    } else {
        Kind::Unknown
    };
    Stat {
        kind,
        size: m.len(),
        mode: m.mode() & 0o7777,
        uid: m.uid(),
        mtime: m.mtime(),
        rdev: matches!(kind, Kind::CharDevice | Kind::BlockDevice).then(|| split_dev(m.rdev())),
        id: (m.dev(), m.ino()),
    }
}

/// Largest attribute value read on the live host (overlay's are a byte).
const MAX_XATTR: usize = 4096;

impl Files for Host {
    fn live(&self) -> bool {
        true
    }

    fn read(&self, path: &Path, cap: u64) -> io::Result<Vec<u8>> {
        let mut data = Vec::new();
        std::fs::File::open(path)?
            .take(cap)
            .read_to_end(&mut data)?;
        Ok(data)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<OsString>> {
        Ok(std::fs::read_dir(dir)?
            .filter_map(|e| e.ok().map(|e| e.file_name()))
            .collect())
    }

    fn lstat(&self, path: &Path) -> io::Result<Stat> {
        std::fs::symlink_metadata(path).map(|m| from_std(&m))
    }

    fn stat(&self, path: &Path) -> io::Result<Stat> {
        std::fs::metadata(path).map(|m| from_std(&m))
    }

    fn read_link(&self, path: &Path) -> io::Result<PathBuf> {
        std::fs::read_link(path)
    }

    fn xattr(&self, path: &Path, name: &str) -> io::Result<Option<Vec<u8>>> {
        let mut buf = vec![0u8; MAX_XATTR];
        match rustix::fs::lgetxattr(path, name, &mut buf) {
            Ok(n) => {
                buf.truncate(n);
                Ok(Some(buf))
            }
            Err(rustix::io::Errno::NODATA) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    fn open(&self, path: &Path) -> io::Result<Box<dyn Read + Send>> {
        Ok(Box::new(std::fs::File::open(path)?))
    }
}

/// Links followed in one path at most (Linux's `MAXSYMLINKS`).
const MAX_LINKS: usize = 40;
/// Components walked for one path at most, links' included.
const MAX_STEPS: usize = 4096;
/// The longest link target read.
const MAX_TARGET: u64 = 4096;
/// Directory listings kept; the cache is emptied when it holds more.
const MAX_CACHED_DIRS: usize = 4096;

/// A node's file system read from its disk image.
pub struct Image {
    fs: Arc<dyn FileSystem>,
    /// Listings by directory id: a path is resolved name by name, and the
    /// runtimes' directories are looked in again and again.
    dirs: Mutex<HashMap<u64, Arc<Vec<fs::Entry>>>>,
}

fn fs_err(e: &fs::FsError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{}: not in the image", path.display()),
    )
}

impl Image {
    pub fn new(fs: Arc<dyn FileSystem>) -> Self {
        Self {
            fs,
            dirs: Mutex::new(HashMap::new()),
        }
    }

    pub fn file_system(&self) -> &Arc<dyn FileSystem> {
        &self.fs
    }

    fn entries(&self, dir: u64) -> io::Result<Arc<Vec<fs::Entry>>> {
        let mut cache = self.dirs.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = cache.get(&dir) {
            return Ok(e.clone());
        }
        let live: Vec<fs::Entry> = self
            .fs
            .read_dir(dir)
            .map_err(|e| fs_err(&e))?
            .into_iter()
            .filter(|e| !e.deleted)
            .collect();
        let live = Arc::new(live);
        if cache.len() >= MAX_CACHED_DIRS {
            cache.clear();
        }
        cache.insert(dir, live.clone());
        Ok(live)
    }

    /// A link's target, read through its extents.
    fn target(&self, id: u64) -> io::Result<Vec<u8>> {
        let node = self.fs.node(id).map_err(|e| fs_err(&e))?;
        if node.size > MAX_TARGET {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("inode {id}: a link target of {} bytes", node.size),
            ));
        }
        let extents = self.fs.extents(id).map_err(|e| fs_err(&e))?;
        let mut buf = vec![0u8; usize::try_from(node.size).unwrap_or(0)];
        let n = fs::read_data(self.fs.volume().as_ref(), &extents, node.size, 0, &mut buf)
            .map_err(|e| fs_err(&e))?;
        buf.truncate(n);
        Ok(buf)
    }

    /// The node a path names; a last link followed when `follow` is set.
    fn resolve(&self, path: &Path, follow: bool) -> io::Result<u64> {
        // Components still to walk, last first; each with whether a link
        // there is followed.
        let mut todo: Vec<(OsString, bool)> = Vec::new();
        let push = |todo: &mut Vec<(OsString, bool)>, p: &Path, last_follows: bool| {
            let parts: Vec<OsString> = p
                .components()
                .filter_map(|c| match c {
                    Component::Normal(n) => Some(n.to_owned()),
                    Component::ParentDir => Some("..".into()),
                    _ => None,
                })
                .collect();
            let n = parts.len();
            for (i, part) in parts.into_iter().enumerate().rev() {
                todo.push((part, i + 1 < n || last_follows));
            }
        };
        push(&mut todo, path, follow);
        let mut stack = vec![self.fs.root()];
        let (mut links, mut steps) = (0usize, 0usize);
        while let Some((name, follows)) = todo.pop() {
            steps += 1;
            if steps > MAX_STEPS {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}: more than {MAX_STEPS} steps to resolve", path.display()),
                ));
            }
            let cur = stack.last().copied().unwrap_or(self.fs.root());
            if name == ".." {
                if stack.len() > 1 {
                    stack.pop();
                }
                continue;
            }
            let entries = self.entries(cur)?;
            let Some(e) = entries.iter().find(|e| e.name == name.as_bytes()) else {
                return Err(not_found(path));
            };
            let kind = match e.kind {
                Some(k) => k,
                None => self.fs.node(e.id).map_err(|x| fs_err(&x))?.kind,
            };
            if kind == Kind::Symlink && follows {
                links += 1;
                if links > MAX_LINKS {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("{}: more than {MAX_LINKS} links", path.display()),
                    ));
                }
                let target = PathBuf::from(OsString::from_vec(self.target(e.id)?));
                if target.is_absolute() {
                    stack.truncate(1);
                }
                push(&mut todo, &target, true);
                continue;
            }
            stack.push(e.id);
        }
        Ok(stack.last().copied().unwrap_or(self.fs.root()))
    }

    fn stat_of(&self, id: u64) -> io::Result<Stat> {
        let node = self.fs.node(id).map_err(|e| fs_err(&e))?;
        let rdev = if matches!(node.kind, Kind::CharDevice | Kind::BlockDevice) {
            self.fs.rdev(id).map_err(|e| fs_err(&e))?
        } else {
            None
        };
        Ok(Stat {
            kind: node.kind,
            size: node.size,
            mode: node.mode,
            uid: node.uid,
            mtime: node.times.modified.map_or(0, |t| t.secs),
            rdev,
            id: (0, id),
        })
    }

    /// A regular file's node, size and extents.
    fn file(&self, path: &Path) -> io::Result<(u64, Vec<fs::Extent>)> {
        let id = self.resolve(path, true)?;
        let node = self.fs.node(id).map_err(|e| fs_err(&e))?;
        if node.kind != Kind::File {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{}: not a regular file ({:?})", path.display(), node.kind),
            ));
        }
        let extents = self.fs.extents(id).map_err(|e| fs_err(&e))?;
        Ok((node.size, extents))
    }
}

/// A file's bytes read from the image through its extents.
struct ExtentReader {
    fs: Arc<dyn FileSystem>,
    extents: Vec<fs::Extent>,
    size: u64,
    pos: u64,
}

impl Read for ExtentReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = buf.len().min(1 << 20);
        let n = fs::read_data(
            self.fs.volume().as_ref(),
            &self.extents,
            self.size,
            self.pos,
            buf.get_mut(..want).unwrap_or_default(),
        )
        .map_err(|e| fs_err(&e))?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl Files for Image {
    fn live(&self) -> bool {
        false
    }

    fn read(&self, path: &Path, cap: u64) -> io::Result<Vec<u8>> {
        let mut data = Vec::new();
        self.open(path)?.take(cap).read_to_end(&mut data)?;
        Ok(data)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<OsString>> {
        let id = self.resolve(dir, true)?;
        Ok(self
            .entries(id)?
            .iter()
            .map(|e| OsString::from_vec(e.name.clone()))
            .collect())
    }

    fn lstat(&self, path: &Path) -> io::Result<Stat> {
        self.stat_of(self.resolve(path, false)?)
    }

    fn stat(&self, path: &Path) -> io::Result<Stat> {
        self.stat_of(self.resolve(path, true)?)
    }

    fn read_link(&self, path: &Path) -> io::Result<PathBuf> {
        let id = self.resolve(path, false)?;
        if self.fs.node(id).map_err(|e| fs_err(&e))?.kind != Kind::Symlink {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{}: not a symbolic link", path.display()),
            ));
        }
        Ok(PathBuf::from(OsString::from_vec(self.target(id)?)))
    }

    fn xattr(&self, path: &Path, name: &str) -> io::Result<Option<Vec<u8>>> {
        let id = self.resolve(path, false)?;
        self.fs.xattr(id, name.as_bytes()).map_err(|e| fs_err(&e))
    }

    fn open(&self, path: &Path) -> io::Result<Box<dyn Read + Send>> {
        let (size, extents) = self.file(path)?;
        Ok(Box::new(ExtentReader {
            fs: self.fs.clone(),
            extents,
            size,
            pos: 0,
        }))
    }
}
