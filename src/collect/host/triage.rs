//! The host triage bundle: a tar stream, written in order of volatility.
//!
//! Layout of the bundle:
//! - `files/<original path>`: raw copies (`/proc/<pid>/cmdline`, `/etc/passwd`, `/var/log/…`).
//!   The path is the member name as [`member_name`](crate::collect::member::member_name)
//!   makes it: ordinary paths are unchanged; `%`, `\`, `:`, control characters
//!   and bytes that are not UTF-8 are percent-encoded.
//! - `volatile/processes.json`, `volatile/sockets.json`, `volatile/users.json`:
//!   parsed summaries of the raw copies, for a quick read.
//! - `index.json` (last): every item with its category, source (the real
//!   path), member, size and SHA-256, or the reason it could not be read.
//!
//! Under a root other than `/` (a mounted image) every path is resolved
//! inside the root ([`rootfs`]). Symbolic links are recorded
//! in `index.json` with their targets, never as link members: an extractor
//! that follows a link member could be made to write outside its directory.
//! Nothing one path does (an odd name, a member tar refuses, an unreadable
//! file) ends the bundle; only a failing output does.

use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use serde::Serialize;
use sha2::{Digest as _, Sha256};

use super::super::SourceEnd;
use super::super::channel::{self, ChannelReader};
use super::super::member::{self, Appended, CountingWriter};
use super::rootfs::{self, HostFs, Kind};

/// Read procfs files whole: their size is not known before reading. None is near this.
const MAX_PROC_FILE: u64 = 64 << 20;
/// How many unreadable items the artefact's notes name; `index.json` names all.
const NOTES_LISTED: usize = 10;

#[derive(Debug, Clone)]
pub struct TriagePlan {
    pub root: PathBuf,
    pub skip_logs: bool,
}

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
    fn new(category: &'static str, source: &Path, status: Status) -> Self {
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

#[derive(Debug, Serialize)]
struct Index<'a> {
    format: &'static str,
    host: String,
    root: String,
    categories: &'static [&'static str],
    items: &'a [Item],
}

/// The categories, most volatile first; the bundle follows this order.
pub const ORDER: &[&str] = &[
    "processes",
    "network",
    "users",
    "kernel_modules",
    "mounts",
    "crontabs",
    "systemd_units",
    "shell_histories",
    "ssh_authorized_keys",
    "accounts",
    "logs",
];

pub fn start(plan: TriagePlan) -> ChannelReader {
    channel::spawn(move |w| Triage::new(plan, w)?.run())
}

/// The member of a host file: `files/` and its path, encoded.
fn bundle_path(abs: &Path) -> String {
    let rel = abs.strip_prefix("/").unwrap_or(abs);
    format!("files/{}", member::member_name(rel.as_os_str().as_bytes()))
}

fn shown(p: &Path) -> String {
    member::display_name(p.as_os_str().as_bytes()).0
}

struct Triage<'w> {
    plan: TriagePlan,
    fs: HostFs,
    tar: tar::Builder<CountingWriter<&'w mut dyn Write>>,
    items: Vec<Item>,
    /// Socket inode → owning pids, from the processes' fd links.
    socket_owners: HashMap<u64, Vec<u32>>,
    /// Links out of the root already recorded (each once).
    crossings: HashSet<PathBuf>,
    /// Paths not read as written (odd homes, links out of the root), for the notes.
    not_as_written: Vec<String>,
}

struct Hashing<R> {
    inner: R,
    hash: Sha256,
    n: u64,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(buf.get(..n).unwrap_or_default());
        self.n += n as u64;
        Ok(n)
    }
}

impl<'w> Triage<'w> {
    fn new(plan: TriagePlan, w: &'w mut dyn Write) -> io::Result<Self> {
        let fs = HostFs::new(&plan.root)?;
        let mut tar = tar::Builder::new(CountingWriter::new(w));
        tar.mode(tar::HeaderMode::Complete);
        tar.follow_symlinks(false);
        Ok(Self {
            plan,
            fs,
            tar,
            items: Vec::new(),
            socket_owners: HashMap::new(),
            crossings: HashSet::new(),
            not_as_written: Vec::new(),
        })
    }

    /// Records, once each, the links out of the root met since the last call.
    fn note_crossings(&mut self, category: &'static str) {
        for c in self.fs.take_crossings() {
            if !self.crossings.insert(c.link.clone()) {
                continue;
            }
            let why = format!(
                "symbolic link to {}, outside the root {} if followed on this machine; paths through it were read inside the root, as the imaged system resolves them",
                shown(&c.target),
                shown(&self.plan.root)
            );
            self.not_as_written
                .push(format!("{}: {why}", shown(&c.link)));
            let mut note = Item::new(category, &c.link, Status::Link);
            note.reason = Some(why);
            self.items.push(note);
        }
    }

    /// Adds an item, after any link out of the root met while reading it.
    fn push(&mut self, item: Item) {
        self.note_crossings(item.category);
        self.items.push(item);
    }

    fn record(
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
    fn refused(&mut self, category: &'static str, source: &Path, member: &str, e: &io::Error) {
        self.record(
            category,
            source,
            Status::Error,
            Some(format!("not stored in the bundle as {member}: {e}")),
        );
    }

    fn header(size: u64, mtime: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_size(size);
        h.set_mode(0o444);
        h.set_mtime(mtime);
        h.set_entry_type(tar::EntryType::Regular);
        h
    }

    /// Adds bytes held in memory (parsed summaries, procfs reads).
    fn add_bytes(
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
    fn copy(&mut self, category: &'static str, abs: &Path) -> io::Result<()> {
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
        let bundle_path = bundle_path(abs);
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
        let len = meta.len;
        let mut src = Hashing {
            inner: LenientReader {
                inner: file,
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
    fn copy_tree(
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

    fn run(mut self) -> io::Result<SourceEnd> {
        self.processes()?;
        self.network()?;
        self.users()?;
        self.copy("kernel_modules", Path::new("/proc/modules"))?;
        for f in ["/proc/mounts", "/proc/self/mountinfo"] {
            self.copy("mounts", Path::new(f))?;
        }
        self.copy("crontabs", Path::new("/etc/crontab"))?;
        for d in [
            "/etc/cron.d",
            "/etc/cron.hourly",
            "/etc/cron.daily",
            "/etc/cron.weekly",
            "/etc/cron.monthly",
            "/var/spool/cron",
        ] {
            self.copy_tree("crontabs", Path::new(d), 3)?;
        }
        for d in [
            "/etc/systemd/system",
            "/run/systemd/system",
            "/lib/systemd/system",
            "/usr/lib/systemd/system",
        ] {
            self.copy_tree("systemd_units", Path::new(d), 3)?;
        }
        let homes = self.homes();
        for home in &homes {
            self.histories(home)?;
        }
        for home in &homes {
            for f in ["authorized_keys", "authorized_keys2"] {
                self.copy("ssh_authorized_keys", &home.join(".ssh").join(f))?;
            }
        }
        for f in [
            "/etc/passwd",
            "/etc/group",
            "/etc/sudoers",
            "/etc/ssh/sshd_config",
        ] {
            self.copy("accounts", Path::new(f))?;
        }
        if self.plan.skip_logs {
            self.record(
                "logs",
                Path::new("/var/log"),
                Status::Skipped,
                Some("skipped on request (--skip-logs)".into()),
            );
        } else {
            self.copy_tree("logs", Path::new("/var/log"), 8)?;
        }
        self.finish()
    }

    fn finish(mut self) -> io::Result<SourceEnd> {
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
        let index = Index {
            format: "custody-host-triage/1",
            host: super::super::hostname(),
            root: shown(&self.plan.root),
            categories: ORDER,
            items: &self.items,
        };
        let json = serde_json::to_vec_pretty(&index).map_err(io::Error::other)?;
        let mut h = Self::header(json.len() as u64, 0);
        self.tar.append_data(&mut h, "index.json", &json[..])?;
        self.tar.finish()?;
        let mut notes = Vec::new();
        if !failed.is_empty() {
            notes.push(format!("{} triage items could not be read completely; index.json in the bundle lists each with its reason", failed.len()));
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

    /// Home directories from the host's /etc/passwd, plus /root. A home
    /// that is not a plain absolute path (`/x/../root`, `/home//u/.`) is
    /// resolved lexically and recorded; a relative one is ignored.
    fn homes(&mut self) -> Vec<PathBuf> {
        let mut homes = vec![PathBuf::from("/root")];
        let passwd = self.fs.read(Path::new("/etc/passwd")).unwrap_or_default();
        for line in passwd.split(|&b| b == b'\n') {
            let mut fields = line.split(|&b| b == b':');
            let user = String::from_utf8_lossy(fields.next().unwrap_or_default()).into_owned();
            let Some(raw) = fields.nth(4) else {
                continue;
            };
            let raw = OsStr::from_bytes(raw);
            let Some(home) = rootfs::lexical(raw) else {
                continue;
            };
            let plain = raw.as_bytes();
            let plain = match plain.iter().rposition(|&b| b != b'/') {
                Some(end) => plain.get(..=end).unwrap_or(plain),
                None => b"/",
            };
            if home.as_os_str().as_bytes() != plain {
                let why = if home == Path::new("/") {
                    format!(
                        "home directory of {user} in /etc/passwd has `.`, `..` or empty segments; it comes to /, which is not read as a home"
                    )
                } else {
                    format!(
                        "home directory of {user} in /etc/passwd has `.`, `..` or empty segments; read as {}",
                        shown(&home)
                    )
                };
                self.not_as_written
                    .push(format!("{}: {why}", shown(Path::new(raw))));
                self.record(
                    "shell_histories",
                    Path::new(raw),
                    Status::Skipped,
                    Some(why),
                );
            }
            if home != Path::new("/") && !homes.contains(&home) {
                homes.push(home);
            }
        }
        homes
    }

    fn histories(&mut self, home: &Path) -> io::Result<()> {
        let names = self.fs.read_dir(home);
        self.note_crossings("shell_histories");
        let Ok(names) = names else {
            return Ok(());
        };
        let mut names: Vec<OsString> = names
            .into_iter()
            .filter(|n| {
                let n = n.as_bytes();
                n.ends_with(b"_history") || n == b".history" || n == b".lesshst"
            })
            .collect();
        names.sort();
        for n in names {
            self.copy("shell_histories", &home.join(n))?;
        }
        Ok(())
    }

    fn pids(&self) -> Vec<u32> {
        let mut pids: Vec<u32> = self
            .fs
            .read_dir(Path::new("/proc"))
            .map(|names| {
                names
                    .iter()
                    .filter_map(|n| n.to_str().and_then(|s| s.parse().ok()))
                    .collect()
            })
            .unwrap_or_default();
        pids.sort_unstable();
        pids
    }

    fn processes(&mut self) -> io::Result<()> {
        let mut summaries = Vec::new();
        let mut exe_hashes: HashMap<(u64, u64), String> = HashMap::new();
        for pid in self.pids() {
            let base = PathBuf::from(format!("/proc/{pid}"));
            for f in ["cmdline", "status", "environ", "maps"] {
                self.copy("processes", &base.join(f))?;
            }
            let cmdline = self
                .fs
                .read(&base.join("cmdline"))
                .map(|b| {
                    b.split(|&c| c == 0)
                        .filter(|s| !s.is_empty())
                        .map(|s| String::from_utf8_lossy(s).into_owned())
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default();
            let status = self
                .fs
                .read(&base.join("status"))
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default();
            let field = |name: &str| {
                status.lines().find_map(|l| {
                    l.strip_prefix(name)
                        .map(|v| v.split_whitespace().next().unwrap_or("").to_owned())
                })
            };
            let exe_path = base.join("exe");
            let exe = self.fs.read_link(&exe_path).map(|t| shown(&t));
            let mut errors = Vec::new();
            // Hash through /proc/PID/exe: it opens the running image even when its file was deleted.
            let exe_sha256 = match self.fs.metadata(&exe_path) {
                Ok(m) => match exe_hashes.get(&(m.dev, m.ino)) {
                    Some(h) => Some(h.clone()),
                    None => match hash_file(&self.fs, &exe_path) {
                        Ok(h) => {
                            exe_hashes.insert((m.dev, m.ino), h.clone());
                            Some(h)
                        }
                        Err(e) => {
                            errors.push(format!("exe: {e}"));
                            None
                        }
                    },
                },
                Err(e) => {
                    // Kernel threads have no executable; that is not a failure.
                    if !cmdline.is_empty() {
                        errors.push(format!("exe: {e}"));
                    }
                    None
                }
            };
            let mut open_files = Vec::new();
            let fd_dir = base.join("fd");
            match self.fs.read_dir(&fd_dir) {
                Ok(fds) => {
                    for fd in fds {
                        if let Ok(t) = self.fs.read_link(&fd_dir.join(&fd)) {
                            let t = shown(&t);
                            if let Some(inode) = t
                                .strip_prefix("socket:[")
                                .and_then(|s| s.strip_suffix(']'))
                                .and_then(|s| s.parse().ok())
                            {
                                self.socket_owners.entry(inode).or_default().push(pid);
                            }
                            open_files.push(
                                serde_json::json!({ "fd": fd.to_string_lossy(), "target": t }),
                            );
                        }
                    }
                }
                Err(e) => errors.push(format!("fd: {e}")),
            }
            for e in &errors {
                self.record("processes", &base, Status::Error, Some(e.clone()));
            }
            summaries.push(serde_json::json!({
                "pid": pid,
                "ppid": field("PPid:").and_then(|v| v.parse::<u32>().ok()),
                "uid": field("Uid:"),
                "name": field("Name:"),
                "cmdline": cmdline,
                "exe": exe.as_ref().ok(),
                "exe_deleted": exe.as_ref().map(|e| e.ends_with(" (deleted)")).unwrap_or(false),
                "exe_sha256": exe_sha256,
                "cwd": self.fs.read_link(&base.join("cwd")).ok().map(|t| shown(&t)),
                "open_files": open_files,
                "errors": errors,
            }));
        }
        let json = serde_json::to_vec_pretty(&summaries).map_err(io::Error::other)?;
        self.add_bytes(
            "processes",
            Path::new("/proc"),
            "volatile/processes.json",
            &json,
        )
    }

    fn network(&mut self) -> io::Result<()> {
        let mut sockets = Vec::new();
        for proto in [
            "tcp", "tcp6", "udp", "udp6", "raw", "raw6", "unix", "packet",
        ] {
            let abs = PathBuf::from(format!("/proc/net/{proto}"));
            self.copy("network", &abs)?;
            if matches!(proto, "tcp" | "tcp6" | "udp" | "udp6") {
                let text = self.fs.read(&abs).unwrap_or_default();
                for s in parse_inet_sockets(proto, &String::from_utf8_lossy(&text)) {
                    let pids = self
                        .socket_owners
                        .get(&s.inode)
                        .cloned()
                        .unwrap_or_default();
                    sockets.push(serde_json::json!({
                        "proto": proto, "local": s.local, "remote": s.remote,
                        "state": s.state, "uid": s.uid, "inode": s.inode, "pids": pids,
                    }));
                }
            }
        }
        let json = serde_json::to_vec_pretty(&sockets).map_err(io::Error::other)?;
        self.add_bytes(
            "network",
            Path::new("/proc/net"),
            "volatile/sockets.json",
            &json,
        )
    }

    fn users(&mut self) -> io::Result<()> {
        let utmp = if self.fs.metadata(Path::new("/run/utmp")).is_ok() {
            Path::new("/run/utmp")
        } else {
            Path::new("/var/run/utmp")
        };
        for f in [
            utmp,
            Path::new("/var/log/wtmp"),
            Path::new("/var/log/btmp"),
            Path::new("/var/log/lastlog"),
        ] {
            self.copy("users", f)?;
        }
        let sessions = self
            .fs
            .read(utmp)
            .map(|b| parse_utmp(&b))
            .unwrap_or_default();
        let json = serde_json::to_vec_pretty(&sessions).map_err(io::Error::other)?;
        self.add_bytes("users", utmp, "volatile/users.json", &json)
    }
}

/// Reads failures are remembered, then reported as end of data, so one bad
/// sector does not abort the whole bundle.
struct LenientReader<R> {
    inner: R,
    failed: Option<io::Error>,
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

fn hash_file(fs: &HostFs, p: &Path) -> io::Result<String> {
    let mut f = fs.open(p, true)?;
    let mut h = Sha256::new();
    io::copy(&mut f, &mut h)?;
    Ok(hex::encode(h.finalize()))
}

#[derive(Debug, PartialEq, Eq)]
pub struct InetSocket {
    pub local: String,
    pub remote: String,
    pub state: &'static str,
    pub uid: u32,
    pub inode: u64,
}

/// TCP states as numbered in the kernel's `include/net/tcp_states.h`.
fn tcp_state(code: u8) -> &'static str {
    match code {
        1 => "ESTABLISHED",
        2 => "SYN_SENT",
        3 => "SYN_RECV",
        4 => "FIN_WAIT1",
        5 => "FIN_WAIT2",
        6 => "TIME_WAIT",
        7 => "CLOSE",
        8 => "CLOSE_WAIT",
        9 => "LAST_ACK",
        10 => "LISTEN",
        11 => "CLOSING",
        _ => "UNKNOWN",
    }
}

/// `0100007F:0035` (IPv4, host byte order in 32-bit words) → `127.0.0.1:53`.
fn decode_addr(s: &str) -> Option<String> {
    let (addr, port) = s.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let bytes = hex::decode(addr).ok()?;
    // Each 32-bit word is in the kernel's (little-endian) byte order.
    let mut fixed = Vec::with_capacity(bytes.len());
    for w in bytes.chunks(4) {
        fixed.extend(w.iter().rev());
    }
    let ip: std::net::IpAddr = match fixed.len() {
        4 => std::net::Ipv4Addr::new(
            *fixed.first()?,
            *fixed.get(1)?,
            *fixed.get(2)?,
            *fixed.get(3)?,
        )
        .into(),
        16 => {
            let mut a = [0u8; 16];
            a.copy_from_slice(&fixed);
            std::net::Ipv6Addr::from(a).into()
        }
        _ => return None,
    };
    Some(std::net::SocketAddr::new(ip, port).to_string())
}

pub fn parse_inet_sockets(proto: &str, text: &str) -> Vec<InetSocket> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let state = u8::from_str_radix(f.get(3)?, 16).ok()?;
            Some(InetSocket {
                local: decode_addr(f.get(1)?)?,
                remote: decode_addr(f.get(2)?)?,
                state: if proto.starts_with("udp") && state == 7 {
                    "UNCONN"
                } else {
                    tcp_state(state)
                },
                uid: f.get(7)?.parse().ok()?,
                inode: f.get(9)?.parse().ok()?,
            })
        })
        .collect()
}

/// Sessions from a glibc `struct utmp` file (384-byte records on Linux).
pub fn parse_utmp(b: &[u8]) -> Vec<serde_json::Value> {
    const RECORD: usize = 384;
    const USER_PROCESS: i32 = 7;
    let text = |r: &[u8], from: usize, len: usize| {
        let s = r.get(from..from + len).unwrap_or_default();
        let end = s.iter().position(|&c| c == 0).unwrap_or(s.len());
        String::from_utf8_lossy(s.get(..end).unwrap_or_default()).into_owned()
    };
    let int = |r: &[u8], at: usize| {
        let mut w = [0u8; 4];
        if let Some(s) = r.get(at..at + 4) {
            w.copy_from_slice(s);
        }
        i32::from_le_bytes(w)
    };
    b.chunks_exact(RECORD)
        .filter(|r| int(r, 0) == USER_PROCESS)
        .map(|r| {
            serde_json::json!({
                "pid": int(r, 4),
                "line": text(r, 8, 32),
                "user": text(r, 44, 32),
                "host": text(r, 76, 256),
                "time": int(r, 340),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_proc_net_addresses() {
        assert_eq!(
            decode_addr("0100007F:0035").as_deref(),
            Some("127.0.0.1:53")
        );
        assert_eq!(
            decode_addr("00000000000000000000000001000000:01BB").as_deref(),
            Some("[::1]:443")
        );
        let text = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 4242 1 0000000000000000 100 0 0 10 0\n";
        let s = parse_inet_sockets("tcp", text);
        assert_eq!(
            s,
            vec![InetSocket {
                local: "127.0.0.1:8080".into(),
                remote: "0.0.0.0:0".into(),
                state: "LISTEN",
                uid: 1000,
                inode: 4242
            }]
        );
    }

    #[test]
    fn parses_utmp_user_sessions() {
        let mut rec = vec![0u8; 384];
        rec[0..4].copy_from_slice(&7i32.to_le_bytes());
        rec[4..8].copy_from_slice(&4321i32.to_le_bytes());
        rec[8..13].copy_from_slice(b"pts/0");
        rec[44..49].copy_from_slice(b"alice");
        rec[76..87].copy_from_slice(b"203.0.113.9");
        let mut other = vec![0u8; 384];
        other[0..4].copy_from_slice(&8i32.to_le_bytes());
        rec.extend(other);
        let s = parse_utmp(&rec);
        assert_eq!(s.len(), 1);
        assert_eq!(s[0]["user"], "alice");
        assert_eq!(s[0]["host"], "203.0.113.9");
        assert_eq!(s[0]["line"], "pts/0");
    }
}
