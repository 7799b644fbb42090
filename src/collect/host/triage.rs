//! The host triage bundle: a tar stream, written in order of volatility.
//!
//! Layout of the bundle:
//! - `files/<original path>`: raw copies (`/proc/<pid>/cmdline`, `/etc/passwd`, `/var/log/…`).
//! - `volatile/processes.json`, `volatile/sockets.json`, `volatile/users.json`:
//!   parsed summaries of the raw copies, for a quick read.
//! - `index.json` (last): every item with its category, source, size and
//!   SHA-256, or the reason it could not be read.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use serde::Serialize;
use sha2::{Digest as _, Sha256};

use super::super::SourceEnd;
use super::super::channel::{self, ChannelReader};

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
    /// Present but could not be read.
    Error,
    /// Looked for and not there.
    Absent,
    /// A symbolic link, recorded with its target and not followed.
    Link,
    /// Not a regular file (socket, fifo, device): recorded, not read.
    Skipped,
}

#[derive(Debug, Clone, Serialize)]
pub struct Item {
    pub category: &'static str,
    pub source: String,
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
    channel::spawn(move |w| Triage::new(plan, w).run())
}

struct Triage<'w> {
    plan: TriagePlan,
    tar: tar::Builder<&'w mut dyn Write>,
    items: Vec<Item>,
    /// Socket inode → owning pids, from the processes' fd links.
    socket_owners: HashMap<u64, Vec<u32>>,
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
    fn new(plan: TriagePlan, w: &'w mut dyn Write) -> Self {
        let mut tar = tar::Builder::new(w);
        tar.mode(tar::HeaderMode::Complete);
        tar.follow_symlinks(false);
        Self {
            plan,
            tar,
            items: Vec::new(),
            socket_owners: HashMap::new(),
        }
    }

    fn host_path(&self, abs: &str) -> PathBuf {
        self.plan.root.join(abs.trim_start_matches('/'))
    }

    fn record(
        &mut self,
        category: &'static str,
        source: &str,
        status: Status,
        reason: Option<String>,
    ) {
        self.items.push(Item {
            category,
            source: source.to_owned(),
            status,
            bundle_path: None,
            size: None,
            sha256: None,
            reason,
        });
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
        source: &str,
        bundle_path: &str,
        data: &[u8],
    ) -> io::Result<()> {
        let mut h = Self::header(data.len() as u64, 0);
        self.tar.append_data(&mut h, bundle_path, data)?;
        self.items.push(Item {
            category,
            source: source.to_owned(),
            status: Status::Ok,
            bundle_path: Some(bundle_path.to_owned()),
            size: Some(data.len() as u64),
            sha256: Some(crate::evidence::sha256_hex(data)),
            reason: None,
        });
        Ok(())
    }

    /// Copies one host file (absolute path as seen on the host) into `files/`.
    /// Errors reading the file are recorded; only errors writing the bundle propagate.
    fn copy(&mut self, category: &'static str, abs: &str) -> io::Result<()> {
        let path = self.host_path(abs);
        let meta = match std::fs::symlink_metadata(&path) {
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
        let bundle_path = format!("files/{}", abs.trim_start_matches('/'));
        let ft = meta.file_type();
        if ft.is_symlink() {
            let target = std::fs::read_link(&path)
                .map(|t| t.display().to_string())
                .unwrap_or_default();
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_size(0);
            h.set_mode(0o777);
            self.tar.append_link(&mut h, &bundle_path, &target)?;
            self.items.push(Item {
                category,
                source: abs.to_owned(),
                status: Status::Link,
                bundle_path: Some(bundle_path),
                size: None,
                sha256: None,
                reason: Some(format!("symbolic link to {target}")),
            });
            return Ok(());
        }
        if !ft.is_file() {
            let what = if ft.is_dir() {
                "a directory"
            } else if ft.is_socket() {
                "a socket"
            } else if ft.is_fifo() {
                "a fifo"
            } else {
                "a device"
            };
            self.record(
                category,
                abs,
                Status::Skipped,
                Some(format!("{what}, not a regular file")),
            );
            return Ok(());
        }
        let mut file = match File::open(&path) {
            Ok(f) => f,
            Err(e) => {
                self.record(category, abs, Status::Error, Some(e.to_string()));
                return Ok(());
            }
        };
        let mtime = u64::try_from(meta.mtime()).unwrap_or(0);
        // procfs and sysfs report size 0 (or a page) for files with content: read them whole.
        if meta.len() == 0 || abs.starts_with("/proc/") {
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
        let len = meta.len();
        let mut src = Hashing {
            inner: LenientReader {
                inner: file,
                failed: None,
            },
            hash: Sha256::new(),
            n: 0,
        };
        let mut h = Self::header(len, mtime);
        self.tar.append_data(
            &mut h,
            &bundle_path,
            (&mut src).take(len).chain(io::repeat(0)).take(len),
        )?;
        let reason = src
            .inner
            .failed
            .take()
            .map(|e| format!("read failed after {} bytes ({e}); the rest is zeros", src.n));
        let short = (reason.is_none() && src.n < len)
            .then(|| format!("shrank to {} bytes while read; padded with zeros", src.n));
        let note = reason.or(short);
        self.items.push(Item {
            category,
            source: abs.to_owned(),
            status: if note.is_some() {
                Status::Error
            } else {
                Status::Ok
            },
            bundle_path: Some(bundle_path),
            size: Some(src.n),
            sha256: Some(hex::encode(src.hash.finalize())),
            reason: note,
        });
        Ok(())
    }

    /// Copies every file below a directory, sorted, without following links.
    fn copy_tree(
        &mut self,
        category: &'static str,
        abs_dir: &str,
        max_depth: usize,
    ) -> io::Result<()> {
        let dir = self.host_path(abs_dir);
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.record(category, abs_dir, Status::Absent, None);
                return Ok(());
            }
            Err(e) => {
                self.record(category, abs_dir, Status::Error, Some(e.to_string()));
                return Ok(());
            }
        };
        let mut names: Vec<String> = entries
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        for name in names {
            let abs = format!("{}/{name}", abs_dir.trim_end_matches('/'));
            let is_dir = std::fs::symlink_metadata(self.host_path(&abs))
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
        self.copy("kernel_modules", "/proc/modules")?;
        for f in ["/proc/mounts", "/proc/self/mountinfo"] {
            self.copy("mounts", f)?;
        }
        self.copy("crontabs", "/etc/crontab")?;
        for d in [
            "/etc/cron.d",
            "/etc/cron.hourly",
            "/etc/cron.daily",
            "/etc/cron.weekly",
            "/etc/cron.monthly",
            "/var/spool/cron",
        ] {
            self.copy_tree("crontabs", d, 3)?;
        }
        for d in [
            "/etc/systemd/system",
            "/run/systemd/system",
            "/lib/systemd/system",
            "/usr/lib/systemd/system",
        ] {
            self.copy_tree("systemd_units", d, 3)?;
        }
        let homes = self.homes();
        for home in &homes {
            self.histories(home)?;
        }
        for home in &homes {
            for f in ["authorized_keys", "authorized_keys2"] {
                self.copy(
                    "ssh_authorized_keys",
                    &format!("{}/.ssh/{f}", home.trim_end_matches('/')),
                )?;
            }
        }
        for f in [
            "/etc/passwd",
            "/etc/group",
            "/etc/sudoers",
            "/etc/ssh/sshd_config",
        ] {
            self.copy("accounts", f)?;
        }
        if self.plan.skip_logs {
            self.record(
                "logs",
                "/var/log",
                Status::Skipped,
                Some("skipped on request (--skip-logs)".into()),
            );
        } else {
            self.copy_tree("logs", "/var/log", 8)?;
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
            root: self.plan.root.display().to_string(),
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
        Ok(SourceEnd {
            changed: None,
            notes,
            ..SourceEnd::default()
        })
    }

    /// Home directories from the host's /etc/passwd, plus /root.
    fn homes(&self) -> Vec<String> {
        let mut homes = vec!["/root".to_owned()];
        if let Ok(text) = std::fs::read_to_string(self.host_path("/etc/passwd")) {
            for line in text.lines() {
                if let Some(home) = line.split(':').nth(5)
                    && home.starts_with('/')
                    && home != "/"
                    && !homes.iter().any(|h| h == home)
                {
                    homes.push(home.to_owned());
                }
            }
        }
        homes
    }

    fn histories(&mut self, home: &str) -> io::Result<()> {
        let Ok(entries) = std::fs::read_dir(self.host_path(home)) else {
            return Ok(());
        };
        let mut names: Vec<String> = entries
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with("_history") || n == ".history" || n == ".lesshst")
            .collect();
        names.sort();
        for n in names {
            self.copy(
                "shell_histories",
                &format!("{}/{n}", home.trim_end_matches('/')),
            )?;
        }
        Ok(())
    }

    fn pids(&self) -> Vec<u32> {
        let mut pids: Vec<u32> = std::fs::read_dir(self.host_path("/proc"))
            .map(|it| {
                it.filter_map(Result::ok)
                    .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse().ok()))
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
            let base = format!("/proc/{pid}");
            for f in ["cmdline", "status", "environ", "maps"] {
                self.copy("processes", &format!("{base}/{f}"))?;
            }
            let p = self.host_path(&base);
            let cmdline = std::fs::read(p.join("cmdline"))
                .map(|b| {
                    b.split(|&c| c == 0)
                        .filter(|s| !s.is_empty())
                        .map(|s| String::from_utf8_lossy(s).into_owned())
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default();
            let status = std::fs::read_to_string(p.join("status")).unwrap_or_default();
            let field = |name: &str| {
                status.lines().find_map(|l| {
                    l.strip_prefix(name)
                        .map(|v| v.split_whitespace().next().unwrap_or("").to_owned())
                })
            };
            let exe = std::fs::read_link(p.join("exe")).map(|t| t.display().to_string());
            let mut errors = Vec::new();
            // Hash through /proc/PID/exe: it opens the running image even when its file was deleted.
            let exe_sha256 = match std::fs::metadata(p.join("exe")) {
                Ok(m) => match exe_hashes.get(&(m.dev(), m.ino())) {
                    Some(h) => Some(h.clone()),
                    None => match hash_file(&p.join("exe")) {
                        Ok(h) => {
                            exe_hashes.insert((m.dev(), m.ino()), h.clone());
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
            match std::fs::read_dir(p.join("fd")) {
                Ok(fds) => {
                    for fd in fds.filter_map(Result::ok) {
                        if let Ok(t) = std::fs::read_link(fd.path()) {
                            let t = t.display().to_string();
                            if let Some(inode) = t
                                .strip_prefix("socket:[")
                                .and_then(|s| s.strip_suffix(']'))
                                .and_then(|s| s.parse().ok())
                            {
                                self.socket_owners.entry(inode).or_default().push(pid);
                            }
                            open_files.push(serde_json::json!({ "fd": fd.file_name().to_string_lossy(), "target": t }));
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
                "cwd": std::fs::read_link(p.join("cwd")).ok().map(|t| t.display().to_string()),
                "open_files": open_files,
                "errors": errors,
            }));
        }
        let json = serde_json::to_vec_pretty(&summaries).map_err(io::Error::other)?;
        self.add_bytes("processes", "/proc", "volatile/processes.json", &json)
    }

    fn network(&mut self) -> io::Result<()> {
        let mut sockets = Vec::new();
        for proto in [
            "tcp", "tcp6", "udp", "udp6", "raw", "raw6", "unix", "packet",
        ] {
            let abs = format!("/proc/net/{proto}");
            self.copy("network", &abs)?;
            if matches!(proto, "tcp" | "tcp6" | "udp" | "udp6") {
                let text = std::fs::read_to_string(self.host_path(&abs)).unwrap_or_default();
                for s in parse_inet_sockets(proto, &text) {
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
        self.add_bytes("network", "/proc/net", "volatile/sockets.json", &json)
    }

    fn users(&mut self) -> io::Result<()> {
        let utmp = if self.host_path("/run/utmp").exists() {
            "/run/utmp"
        } else {
            "/var/run/utmp"
        };
        for f in [utmp, "/var/log/wtmp", "/var/log/btmp", "/var/log/lastlog"] {
            self.copy("users", f)?;
        }
        let sessions = std::fs::read(self.host_path(utmp))
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

fn hash_file(p: &Path) -> io::Result<String> {
    let mut f = File::open(p)?;
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
