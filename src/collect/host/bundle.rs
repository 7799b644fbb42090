//! A tar bundle of files copied from a host, with an index: the machinery
//! of the host triage bundle, shared by the container bundles.
//!
//! Each member is a file read once, hashed on the way, its size fixed when
//! the member starts (a file that shrinks is padded and said to have);
//! whatever cannot be read or stored is an [`Item`] with its reason, and
//! only a failing output ends the bundle. `index.json` comes last.

use std::collections::HashSet;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use serde::Serialize;
use sha2::{Digest as _, Sha256};

use super::super::SourceEnd;
use super::super::member::{self, Appended, CountingWriter};
use super::rootfs::{HostFs, Kind};

/// Read procfs files whole: their size is not known before reading. None is near this.
const MAX_PROC_FILE: u64 = 64 << 20;
/// How many unreadable items the artefact's notes name; `index.json` names all.
const NOTES_LISTED: usize = 10;

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Ok,
    /// Present but could not be read, or could not be stored in the bundle.
    Error,
    /// Looked for and not there.
    Absent,
    /// A symbolic link, recorded with its target and not followed.
    Link,
    /// Recorded, not read: not a regular file (socket, fifo, device), skipped
    /// on request, or a path not read as written (the reason says how it was).
    Skipped,
}

#[derive(Debug, Clone, Serialize)]
pub struct Item {
    pub category: &'static str,
    /// The path on the host. A name that is not UTF-8 has its other bytes
    /// as `\xNN` (and `\` as `\\`), and `source_escaped` says so.
    pub source: String,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub source_escaped: bool,
    pub status: Status,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bundle_path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl Item {
    pub fn new(category: &'static str, source: &Path, status: Status) -> Self {
        let (source, source_escaped) = member::display_name(source.as_os_str().as_bytes());
        Self {
            category,
            source,
            source_escaped,
            status,
            bundle_path: None,
            size: None,
            sha256: None,
            reason: None,
        }
    }
}

/// The member of a host file: `files/` and its path, encoded.
pub fn bundle_path(abs: &Path) -> String {
    let rel = abs.strip_prefix("/").unwrap_or(abs);
    format!("files/{}", member::member_name(rel.as_os_str().as_bytes()))
}

pub fn shown(p: &Path) -> String {
    member::display_name(p.as_os_str().as_bytes()).0
}

pub struct Hashing<R> {
    pub inner: R,
    pub hash: Sha256,
    pub n: u64,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(buf.get(..n).unwrap_or_default());
        self.n += n as u64;
        Ok(n)
    }
}

/// A bundle being written: its tar, and an item for everything looked at.
pub struct Bundle<'w> {
    /// The root every path is read under (`/` on a live host).
    pub root: PathBuf,
    pub fs: HostFs,
    pub tar: tar::Builder<CountingWriter<&'w mut dyn Write>>,
    pub items: Vec<Item>,
    /// Links out of the root already recorded (each once).
    crossings: HashSet<PathBuf>,
    /// Paths not read as written (odd homes, links out of the root), for the notes.
    pub not_as_written: Vec<String>,
}

impl<'w> Bundle<'w> {
    pub fn new(root: &Path, w: &'w mut dyn Write) -> io::Result<Self> {
        let fs = HostFs::new(root)?;
        let mut tar = tar::Builder::new(CountingWriter::new(w));
        tar.mode(tar::HeaderMode::Complete);
        tar.follow_symlinks(false);
        Ok(Self {
            root: root.to_owned(),
            fs,
            tar,
            items: Vec::new(),
            crossings: HashSet::new(),
            not_as_written: Vec::new(),
        })
    }

    /// Records, once each, the links out of the root met since the last call.
    pub fn note_crossings(&mut self, category: &'static str) {
        for c in self.fs.take_crossings() {
            if !self.crossings.insert(c.link.clone()) {
                continue;
            }
            let why = format!(
                "symbolic link to {}, outside the root {} if followed on this machine; paths through it were read inside the root, as the imaged system resolves them",
                shown(&c.target),
                shown(&self.root)
            );
            self.not_as_written
                .push(format!("{}: {why}", shown(&c.link)));
            let mut note = Item::new(category, &c.link, Status::Link);
            note.reason = Some(why);
            self.items.push(note);
        }
    }

    /// Adds an item, after any link out of the root met while reading it.
    pub fn push(&mut self, item: Item) {
        self.note_crossings(item.category);
        self.items.push(item);
    }

    pub fn record(
        &mut self,
        category: &'static str,
        source: &Path,
        status: Status,
        reason: Option<String>,
    ) {
        let mut item = Item::new(category, source, status);
        item.reason = reason;
        self.push(item);
    }

    /// Records a member tar would not take (the bundle goes on without it).
    pub fn refused(&mut self, category: &'static str, source: &Path, member: &str, e: &io::Error) {
        self.record(
            category,
            source,
            Status::Error,
            Some(format!("not stored in the bundle as {member}: {e}")),
        );
    }

    pub fn header(size: u64, mtime: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_size(size);
        h.set_mode(0o444);
        h.set_mtime(mtime);
        h.set_entry_type(tar::EntryType::Regular);
        h
    }

    /// Adds bytes held in memory (parsed summaries, procfs reads).
    pub fn add_bytes(
        &mut self,
        category: &'static str,
        source: &Path,
        bundle_path: &str,
        data: &[u8],
    ) -> io::Result<()> {
        let mut h = Self::header(data.len() as u64, 0);
        match member::append(&mut self.tar, |t| t.append_data(&mut h, bundle_path, data))? {
            Appended::Stored => {}
            Appended::Refused(e) => {
                self.refused(category, source, bundle_path, &e);
                return Ok(());
            }
        }
        let mut item = Item::new(category, source, Status::Ok);
        item.bundle_path = Some(bundle_path.to_owned());
        item.size = Some(data.len() as u64);
        item.sha256 = Some(crate::evidence::sha256_hex(data));
        self.push(item);
        Ok(())
    }

    /// Copies one host file (absolute path as seen on the host) into `files/`.
    /// Errors reading the file, or a member tar refuses, are recorded; only
    /// errors writing the bundle propagate.
    pub fn copy(&mut self, category: &'static str, abs: &Path) -> io::Result<()> {
        self.copy_as(category, abs, bundle_path(abs))
    }

    /// Copies one host file into the member `bundle_path`, as [`Self::copy`] does.
    pub fn copy_as(
        &mut self,
        category: &'static str,
        abs: &Path,
        bundle_path: String,
    ) -> io::Result<()> {
        let meta = match self.fs.symlink_metadata(abs) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.record(category, abs, Status::Absent, None);
                return Ok(());
            }
            Err(e) => {
                self.record(category, abs, Status::Error, Some(e.to_string()));
                return Ok(());
            }
        };
        let what = match meta.kind {
            Kind::File => None,
            Kind::Symlink => {
                let target = self
                    .fs
                    .read_link(abs)
                    .map(|t| shown(&t))
                    .unwrap_or_default();
                self.record(
                    category,
                    abs,
                    Status::Link,
                    Some(format!("symbolic link to {target}")),
                );
                return Ok(());
            }
            Kind::Dir => Some("a directory"),
            Kind::Socket => Some("a socket"),
            Kind::Fifo => Some("a fifo"),
            Kind::Device => Some("a device"),
        };
        if let Some(what) = what {
            self.record(
                category,
                abs,
                Status::Skipped,
                Some(format!("{what}, not a regular file")),
            );
            return Ok(());
        }
        let mut file = match self.fs.open(abs, false) {
            Ok(f) => f,
            Err(e) => {
                self.record(category, abs, Status::Error, Some(e.to_string()));
                return Ok(());
            }
        };
        let mtime = u64::try_from(meta.mtime).unwrap_or(0);
        // procfs and sysfs report size 0 (or a page) for files with content: read them whole.
        if meta.len == 0 || abs.starts_with("/proc") {
            let mut data = Vec::new();
            match (&mut file).take(MAX_PROC_FILE).read_to_end(&mut data) {
                Ok(_) => return self.add_bytes(category, abs, &bundle_path, &data),
                Err(e) => {
                    self.record(category, abs, Status::Error, Some(e.to_string()));
                    return Ok(());
                }
            }
        }
        // tar needs the size up front: read exactly the size seen at open, and
        // say so if the file shrank (zeros pad it) or could not be read through.
        self.append_sized(category, abs, bundle_path, file, meta.len, mtime)
    }

    /// Appends `len` bytes of `reader` as the member `bundle_path`: tar
    /// needs the size up front, so a source that ends early (a file that
    /// shrank) or fails is padded with zeros and its item says so. Only
    /// errors writing the bundle propagate.
    pub fn append_sized(
        &mut self,
        category: &'static str,
        abs: &Path,
        bundle_path: String,
        reader: impl Read,
        len: u64,
        mtime: u64,
    ) -> io::Result<()> {
        let mut src = Hashing {
            inner: LenientReader {
                inner: reader,
                failed: None,
            },
            hash: Sha256::new(),
            n: 0,
        };
        let mut h = Self::header(len, mtime);
        let appended = member::append(&mut self.tar, |t| {
            t.append_data(
                &mut h,
                &bundle_path,
                (&mut src).take(len).chain(io::repeat(0)).take(len),
            )
        })?;
        if let Appended::Refused(e) = appended {
            self.refused(category, abs, &bundle_path, &e);
            return Ok(());
        }
        let reason = src
            .inner
            .failed
            .take()
            .map(|e| format!("read failed after {} bytes ({e}); the rest is zeros", src.n));
        let short = (reason.is_none() && src.n < len)
            .then(|| format!("shrank to {} bytes while read; padded with zeros", src.n));
        let note = reason.or(short);
        let mut item = Item::new(
            category,
            abs,
            if note.is_some() {
                Status::Error
            } else {
                Status::Ok
            },
        );
        item.bundle_path = Some(bundle_path);
        item.size = Some(src.n);
        item.sha256 = Some(hex::encode(src.hash.finalize()));
        item.reason = note;
        self.push(item);
        Ok(())
    }

    /// Copies every file below a directory, sorted, without following links.
    pub fn copy_tree(
        &mut self,
        category: &'static str,
        abs_dir: &Path,
        max_depth: usize,
    ) -> io::Result<()> {
        let mut names = match self.fs.read_dir(abs_dir) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.record(category, abs_dir, Status::Absent, None);
                return Ok(());
            }
            Err(e) => {
                self.record(category, abs_dir, Status::Error, Some(e.to_string()));
                return Ok(());
            }
        };
        names.sort();
        for name in names {
            let abs = abs_dir.join(name);
            let is_dir = self
                .fs
                .symlink_metadata(&abs)
                .map(|m| m.is_dir())
                .unwrap_or(false);
            if is_dir && max_depth > 0 {
                self.copy_tree(category, &abs, max_depth - 1)?;
            } else {
                self.copy(category, &abs)?;
            }
        }
        Ok(())
    }

    /// Appends `index.json` (the JSON `index` makes of the items) and ends
    /// the tar; the notes name what could not be read. `what` names the
    /// items in the notes ("triage items").
    pub fn finish(
        mut self,
        what: &str,
        index: impl FnOnce(&[Item]) -> serde_json::Result<Vec<u8>>,
    ) -> io::Result<SourceEnd> {
        let failed: Vec<String> = self
            .items
            .iter()
            .filter(|i| i.status == Status::Error)
            .map(|i| {
                format!(
                    "{}: {}",
                    i.source,
                    i.reason.as_deref().unwrap_or("unreadable")
                )
            })
            .collect();
        let json = index(&self.items).map_err(io::Error::other)?;
        let mut h = Self::header(json.len() as u64, 0);
        self.tar.append_data(&mut h, "index.json", &json[..])?;
        self.tar.finish()?;
        let mut notes = Vec::new();
        if !failed.is_empty() {
            notes.push(format!("{} {what} could not be read completely; index.json in the bundle lists each with its reason", failed.len()));
            notes.extend(failed.into_iter().take(NOTES_LISTED));
        }
        if !self.not_as_written.is_empty() {
            notes.push(format!(
                "{} paths were not read as written; index.json in the bundle says how each was read",
                self.not_as_written.len()
            ));
            notes.extend(self.not_as_written.drain(..).take(NOTES_LISTED));
        }
        Ok(SourceEnd {
            changed: None,
            notes,
            ..SourceEnd::default()
        })
    }
}

/// Reads failures are remembered, then reported as end of data, so one bad
/// sector does not abort the whole bundle.
pub struct LenientReader<R> {
    pub inner: R,
    pub failed: Option<io::Error>,
}

impl<R: Read> Read for LenientReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.failed.is_some() {
            return Ok(0);
        }
        match self.inner.read(buf) {
            Ok(n) => Ok(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(0),
            Err(e) => {
                self.failed = Some(e);
                Ok(0)
            }
        }
    }
}
