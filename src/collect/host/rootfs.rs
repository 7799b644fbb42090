//! The file system host triage reads: the live host's, or a mounted image's
//! beneath its root.
//!
//! On the live host (root `/`) paths go to the kernel as they are: procfs's
//! magic links (`/proc/PID/exe`, `/proc/PID/fd/N`) must be followed by the
//! kernel, and there is nothing outside `/` to reach.
//!
//! Under another root the image is attacker-controlled: a link such as
//! `home/u -> /root` or `var/log -> ../../../../var/log`, followed by the
//! kernel, would read the analyst's own files. So each path is walked one
//! component at a time from a descriptor of the root, with `O_NOFOLLOW`, and
//! every symbolic link on the way is resolved by custody as the imaged
//! system itself would: an absolute target starts again at the root, and
//! `..` stops at the root as it stops at `/`. Nothing outside the root is
//! ever opened. A link whose target would leave the root if followed on this
//! machine is remembered ([`HostFs::take_crossings`]) so triage can say so.
//! The last component is opened with `O_NOFOLLOW` after the walk, and only a
//! regular file is opened for reading (a device node in an image would be
//! this machine's device).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Component, Path, PathBuf};

use rustix::fs::{AtFlags, Dir, FileType, Mode, OFlags};

/// Links followed in one path before giving up: Linux's own limit (`MAXSYMLINKS`).
const MAX_LINKS: usize = 40;

/// Flags to step into a directory. `O_PATH` needs only search permission
/// (as the kernel's own walk does) and never opens the object itself.
#[cfg(any(target_os = "linux", target_os = "android"))]
const STEP: OFlags = OFlags::PATH
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);
#[cfg(not(any(target_os = "linux", target_os = "android")))]
const STEP: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    Socket,
    Fifo,
    Device,
}

/// What triage needs of `lstat`/`stat`, from either side.
#[derive(Debug, Clone, Copy)]
pub struct Meta {
    pub kind: Kind,
    pub len: u64,
    pub mtime: i64,
    pub dev: u64,
    pub ino: u64,
}

impl Meta {
    pub fn is_dir(&self) -> bool {
        self.kind == Kind::Dir
    }

    fn from_std(m: &std::fs::Metadata) -> Self {
        let ft = m.file_type();
        let kind = if ft.is_symlink() {
            Kind::Symlink
        } else if ft.is_dir() {
            Kind::Dir
        } else if ft.is_file() {
            Kind::File
        } else if ft.is_socket() {
            Kind::Socket
        } else if ft.is_fifo() {
            Kind::Fifo
        } else {
            Kind::Device
        };
        Self {
            kind,
            len: m.len(),
            mtime: m.mtime(),
            dev: m.dev(),
            ino: m.ino(),
        }
    }

    fn from_stat(s: &rustix::fs::Stat) -> Self {
        let kind = match FileType::from_raw_mode(s.st_mode) {
            FileType::RegularFile => Kind::File,
            FileType::Directory => Kind::Dir,
            FileType::Symlink => Kind::Symlink,
            FileType::Socket => Kind::Socket,
            FileType::Fifo => Kind::Fifo,
            _ => Kind::Device,
        };
        Self {
            kind,
            len: u64::try_from(s.st_size).unwrap_or(0),
            mtime: s.st_mtime,
            // The widths of st_dev and st_ino differ between platforms.
            #[allow(clippy::useless_conversion)]
            dev: u64::from(s.st_dev),
            #[allow(clippy::useless_conversion)]
            ino: u64::from(s.st_ino),
        }
    }
}

/// A symbolic link met inside the image whose target, followed on this
/// machine, would lead outside the root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Crossing {
    /// The link, as a path of the imaged system.
    pub link: PathBuf,
    pub target: PathBuf,
}

#[derive(Debug)]
pub struct HostFs {
    root: PathBuf,
    /// The root's descriptor; `None` on the live host.
    image: Option<OwnedFd>,
    crossings: RefCell<Vec<Crossing>>,
}

/// Where a walk ended.
enum Leaf {
    /// A directory (the root itself, or one the walk stepped into).
    Dir(OwnedFd),
    /// A name in a directory, not yet opened.
    Entry { dir: OwnedFd, name: OsString },
}

impl HostFs {
    /// The file system under `root`: the live host's when it is `/`.
    pub fn new(root: &Path) -> io::Result<Self> {
        let live = std::fs::canonicalize(root)
            .map(|r| r == Path::new("/"))
            .unwrap_or(false);
        let image = if live {
            None
        } else {
            Some(
                rustix::fs::open(
                    root,
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|e| {
                    io::Error::new(
                        io::Error::from(e).kind(),
                        format!("cannot open the root {}: {e}", root.display()),
                    )
                })?,
            )
        };
        Ok(Self {
            root: root.to_owned(),
            image,
            crossings: RefCell::new(Vec::new()),
        })
    }

    /// The path on this machine for a live-host path.
    fn live(&self, abs: &Path) -> PathBuf {
        self.root.join(abs.strip_prefix("/").unwrap_or(abs))
    }

    /// Links met since the last call whose targets lead outside the root.
    pub fn take_crossings(&self) -> Vec<Crossing> {
        std::mem::take(&mut *self.crossings.borrow_mut())
    }

    /// `lstat`: the last component is not followed.
    pub fn symlink_metadata(&self, abs: &Path) -> io::Result<Meta> {
        match &self.image {
            None => std::fs::symlink_metadata(self.live(abs)).map(|m| Meta::from_std(&m)),
            Some(root) => leaf_meta(&self.walk(root, abs, false)?),
        }
    }

    /// `stat`: a last component that is a link is followed (inside the root).
    pub fn metadata(&self, abs: &Path) -> io::Result<Meta> {
        match &self.image {
            None => std::fs::metadata(self.live(abs)).map(|m| Meta::from_std(&m)),
            Some(root) => leaf_meta(&self.walk(root, abs, true)?),
        }
    }

    pub fn read_link(&self, abs: &Path) -> io::Result<PathBuf> {
        match &self.image {
            None => std::fs::read_link(self.live(abs)),
            Some(root) => match self.walk(root, abs, false)? {
                Leaf::Entry { dir, name } => Ok(read_link_at(&dir, &name)?),
                Leaf::Dir(_) => Err(io::Error::from(rustix::io::Errno::INVAL)),
            },
        }
    }

    /// Opens a file to read. Under an image root only a regular file is
    /// opened, and a last component that is a link is followed (inside the
    /// root) only when `follow` is set.
    pub fn open(&self, abs: &Path, follow: bool) -> io::Result<File> {
        let Some(root) = &self.image else {
            return File::open(self.live(abs));
        };
        let (dir, name) = match self.walk(root, abs, follow)? {
            Leaf::Entry { dir, name } => (dir, name),
            Leaf::Dir(_) => return Err(io::Error::from(rustix::io::Errno::ISDIR)),
        };
        let seen = Meta::from_stat(&rustix::fs::statat(
            &dir,
            name.as_os_str(),
            AtFlags::SYMLINK_NOFOLLOW,
        )?);
        if seen.kind != Kind::File {
            return Err(not_regular(seen.kind));
        }
        // NONBLOCK: should a fifo take the file's place in between, opening
        // it must not hang; the check below then refuses it.
        let fd = rustix::fs::openat(
            &dir,
            name.as_os_str(),
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let now = Meta::from_stat(&rustix::fs::fstat(&fd)?);
        if now.kind != Kind::File || (now.dev, now.ino) != (seen.dev, seen.ino) {
            return Err(io::Error::other("replaced while it was opened"));
        }
        Ok(File::from(fd))
    }

    /// The whole content of a file (following a last link inside the root).
    pub fn read(&self, abs: &Path) -> io::Result<Vec<u8>> {
        let mut data = Vec::new();
        self.open(abs, true)?.read_to_end(&mut data)?;
        Ok(data)
    }

    /// The names in a directory (following links inside the root), without
    /// `.` and `..`, as the file system holds them.
    pub fn read_dir(&self, abs: &Path) -> io::Result<Vec<OsString>> {
        let Some(root) = &self.image else {
            return std::fs::read_dir(self.live(abs))?
                .map(|e| e.map(|e| e.file_name()))
                .collect();
        };
        // The walk stops at a name only when it is not a directory.
        let Leaf::Dir(dir) = self.walk(root, abs, true)? else {
            return Err(io::Error::from(rustix::io::Errno::NOTDIR));
        };
        let listing = rustix::fs::openat(
            &dir,
            ".",
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let mut names = Vec::new();
        for entry in Dir::new(listing)? {
            let name = entry?.file_name().to_bytes().to_vec();
            if name != b"." && name != b".." {
                names.push(OsString::from_vec(name));
            }
        }
        Ok(names)
    }

    /// Walks `abs` beneath `root`, resolving every link on the way (and the
    /// last one too when `follow`) inside the root.
    fn walk(&self, root: &OwnedFd, abs: &Path, follow: bool) -> io::Result<Leaf> {
        let mut pending: VecDeque<OsString> = parts(abs);
        // The directories stepped into below the root, with their names.
        let mut stack: Vec<(OwnedFd, OsString)> = Vec::new();
        let mut links = 0;
        while let Some(name) = pending.pop_front() {
            if name == ".." {
                // The root's parent is the root, as `/..` is `/`.
                stack.pop();
                continue;
            }
            let dir = match stack.last() {
                Some((fd, _)) => fd,
                None => root,
            };
            if pending.is_empty() && !follow {
                return Ok(Leaf::Entry {
                    dir: dir.try_clone()?,
                    name,
                });
            }
            let step = match rustix::fs::openat(dir, name.as_os_str(), STEP, Mode::empty()) {
                Ok(fd) => fd,
                Err(e) => {
                    let target = match read_link_at(dir, &name) {
                        Ok(t) => t,
                        // Not a link: a file at the end, or a real error.
                        Err(_) if pending.is_empty() && e == rustix::io::Errno::NOTDIR => {
                            return Ok(Leaf::Entry {
                                dir: dir.try_clone()?,
                                name,
                            });
                        }
                        Err(_) => return Err(e.into()),
                    };
                    links += 1;
                    if links > MAX_LINKS {
                        return Err(io::Error::from(rustix::io::Errno::LOOP));
                    }
                    let here: PathBuf = std::iter::once(OsStr::new("/"))
                        .chain(stack.iter().map(|(_, n)| n.as_os_str()))
                        .collect();
                    if leaves_root(stack.len(), &target) {
                        self.crossings.borrow_mut().push(Crossing {
                            link: here.join(&name),
                            target: target.clone(),
                        });
                    }
                    if target.has_root() {
                        stack.clear();
                    }
                    for p in parts(&target).into_iter().rev() {
                        pending.push_front(p);
                    }
                    continue;
                }
            };
            stack.push((step, name));
        }
        match stack.pop() {
            Some((fd, _)) => Ok(Leaf::Dir(fd)),
            None => Ok(Leaf::Dir(root.try_clone()?)),
        }
    }
}

fn leaf_meta(leaf: &Leaf) -> io::Result<Meta> {
    let s = match leaf {
        Leaf::Dir(fd) => rustix::fs::fstat(fd)?,
        Leaf::Entry { dir, name } => {
            rustix::fs::statat(dir, name.as_os_str(), AtFlags::SYMLINK_NOFOLLOW)?
        }
    };
    Ok(Meta::from_stat(&s))
}

fn read_link_at(dir: &OwnedFd, name: &OsStr) -> rustix::io::Result<PathBuf> {
    let t = rustix::fs::readlinkat(dir, name, Vec::new())?;
    Ok(PathBuf::from(OsString::from_vec(t.into_bytes())))
}

fn not_regular(kind: Kind) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("not a regular file ({kind:?})").to_lowercase(),
    )
}

/// The names of a path to walk: `..` kept (the walk resolves it), `.`, `/`
/// and empty segments dropped.
fn parts(p: &Path) -> VecDeque<OsString> {
    p.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_owned()),
            Component::ParentDir => Some(OsString::from("..")),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
        })
        .collect()
}

/// Whether `target`, followed literally from a directory `depth` levels
/// below the root, would leave it.
fn leaves_root(depth: usize, target: &Path) -> bool {
    if target.has_root() {
        return true;
    }
    let mut depth = depth;
    for c in target.components() {
        match c {
            Component::ParentDir if depth == 0 => return true,
            Component::ParentDir => depth -= 1,
            Component::Normal(_) => depth += 1,
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    false
}

/// A home directory from `/etc/passwd`, resolved lexically: `.` and empty
/// segments dropped, `..` taken back (stopping at `/`). `None` unless it is
/// absolute.
pub fn lexical(raw: &OsStr) -> Option<PathBuf> {
    if !raw.as_bytes().starts_with(b"/") {
        return None;
    }
    let mut out = PathBuf::from("/");
    for c in Path::new(raw).components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn image() -> (tempfile::TempDir, PathBuf) {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("image");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::create_dir_all(t.path().join("outside")).unwrap();
        std::fs::write(t.path().join("outside/secret"), "ANALYST").unwrap();
        (t, root)
    }

    #[test]
    fn h1_links_are_resolved_inside_the_root() {
        let (t, root) = image();
        std::fs::create_dir_all(root.join("usr/lib")).unwrap();
        std::fs::write(root.join("usr/lib/unit"), "IMAGE").unwrap();
        std::fs::create_dir_all(root.join(t.path().join("outside").strip_prefix("/").unwrap()))
            .unwrap();
        std::fs::write(
            root.join(t.path().join("outside/secret").strip_prefix("/").unwrap()),
            "IMAGE-COPY",
        )
        .unwrap();
        // Absolute, relative climbing above the root, and a plain relative link.
        symlink(t.path().join("outside"), root.join("abs")).unwrap();
        symlink("../../../../../../..", root.join("etc/up")).unwrap();
        symlink("usr/lib", root.join("lib")).unwrap();
        let fs = HostFs::new(&root).unwrap();
        let secret = Path::new("/abs/secret");
        assert_eq!(fs.read(secret).unwrap(), b"IMAGE-COPY");
        let through_up = Path::new("/etc/up").join(t.path().strip_prefix("/").unwrap());
        assert_eq!(
            fs.read(&through_up.join("outside/secret")).unwrap(),
            b"IMAGE-COPY"
        );
        assert_eq!(fs.read(Path::new("/lib/unit")).unwrap(), b"IMAGE");
        let crossed = fs.take_crossings();
        assert_eq!(
            crossed.iter().map(|c| c.link.clone()).collect::<Vec<_>>(),
            [PathBuf::from("/abs"), PathBuf::from("/etc/up")]
        );
        // Without the copy inside, the outside file is simply not there.
        std::fs::remove_file(root.join(t.path().join("outside/secret").strip_prefix("/").unwrap()))
            .unwrap();
        let e = fs.read(secret).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound, "{e}");
        assert_eq!(
            fs.read_dir(Path::new("/abs")).unwrap(),
            Vec::<OsString>::new()
        );
    }

    #[test]
    fn h1_the_last_link_is_not_followed_and_devices_are_not_read() {
        let (t, root) = image();
        symlink(t.path().join("outside/secret"), root.join("etc/passwd")).unwrap();
        let fs = HostFs::new(&root).unwrap();
        let p = Path::new("/etc/passwd");
        assert_eq!(fs.symlink_metadata(p).unwrap().kind, Kind::Symlink);
        assert_eq!(fs.read_link(p).unwrap(), t.path().join("outside/secret"));
        assert!(fs.open(p, false).is_err());
        assert_eq!(
            fs.read(p).unwrap_err().kind(),
            io::ErrorKind::NotFound,
            "followed inside the root, where it does not exist"
        );
        // A link to this machine's /dev/zero is the image's dev/zero: absent here.
        symlink("/dev/zero", root.join("etc/zero")).unwrap();
        let e = fs.read(Path::new("/etc/zero")).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound, "{e}");
        // A fifo is refused, not opened and waited on.
        nix::unistd::mkfifo(&root.join("etc/fifo"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        let e = fs.read(Path::new("/etc/fifo")).unwrap_err();
        assert!(e.to_string().contains("not a regular file"), "{e}");
    }

    #[test]
    fn h3_names_are_listed_as_the_file_system_holds_them() {
        let (_t, root) = image();
        let name = OsStr::from_bytes(b"auth\xff.log");
        std::fs::write(root.join("etc").join(name), "x").unwrap();
        let fs = HostFs::new(&root).unwrap();
        assert_eq!(fs.read_dir(Path::new("/etc")).unwrap(), [name.to_owned()]);
        assert_eq!(fs.read(&Path::new("/etc").join(name)).unwrap(), b"x");
    }

    #[test]
    fn h2_homes_are_resolved_lexically() {
        let l = |s: &str| lexical(OsStr::new(s));
        assert_eq!(l("/x/../root"), Some("/root".into()));
        assert_eq!(l("/../../.."), Some("/".into()));
        assert_eq!(l("/home//u/./"), Some("/home/u".into()));
        assert_eq!(l("home/u"), None);
    }
}
