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

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use serde::Serialize;
use sha2::{Digest as _, Sha256};

use super::super::SourceEnd;
use super::super::channel::{self, ChannelReader};
use super::bundle::{Bundle, Item, Status, shown};
use super::rootfs::{self, HostFs};

#[derive(Debug, Clone)]
pub struct TriagePlan {
    pub root: PathBuf,
    pub skip_logs: bool,
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

struct Triage<'w> {
    plan: TriagePlan,
    b: Bundle<'w>,
    /// Socket inode → owning pids, from the processes' fd links.
    socket_owners: HashMap<u64, Vec<u32>>,
}

impl<'w> Triage<'w> {
    fn new(plan: TriagePlan, w: &'w mut dyn Write) -> io::Result<Self> {
        Ok(Self {
            b: Bundle::new(&plan.root, w)?,
            plan,
            socket_owners: HashMap::new(),
        })
    }

    fn run(mut self) -> io::Result<SourceEnd> {
        self.processes()?;
        self.network()?;
        self.users()?;
        self.b.copy("kernel_modules", Path::new("/proc/modules"))?;
        for f in ["/proc/mounts", "/proc/self/mountinfo"] {
            self.b.copy("mounts", Path::new(f))?;
        }
        self.b.copy("crontabs", Path::new("/etc/crontab"))?;
        for d in [
            "/etc/cron.d",
            "/etc/cron.hourly",
            "/etc/cron.daily",
            "/etc/cron.weekly",
            "/etc/cron.monthly",
            "/var/spool/cron",
        ] {
            self.b.copy_tree("crontabs", Path::new(d), 3)?;
        }
        for d in [
            "/etc/systemd/system",
            "/run/systemd/system",
            "/lib/systemd/system",
            "/usr/lib/systemd/system",
        ] {
            self.b.copy_tree("systemd_units", Path::new(d), 3)?;
        }
        let homes = self.homes();
        for home in &homes {
            self.histories(home)?;
        }
        for home in &homes {
            for f in ["authorized_keys", "authorized_keys2"] {
                self.b
                    .copy("ssh_authorized_keys", &home.join(".ssh").join(f))?;
            }
        }
        for f in [
            "/etc/passwd",
            "/etc/group",
            "/etc/sudoers",
            "/etc/ssh/sshd_config",
        ] {
            self.b.copy("accounts", Path::new(f))?;
        }
        if self.plan.skip_logs {
            self.b.record(
                "logs",
                Path::new("/var/log"),
                Status::Skipped,
                Some("skipped on request (--skip-logs)".into()),
            );
        } else {
            self.b.copy_tree("logs", Path::new("/var/log"), 8)?;
        }
        self.finish()
    }

    fn finish(self) -> io::Result<SourceEnd> {
        let root = shown(&self.plan.root);
        self.b.finish("triage items", |items| {
            serde_json::to_vec_pretty(&Index {
                format: "custody-host-triage/1",
                host: super::super::hostname(),
                root,
                categories: ORDER,
                items,
            })
        })
    }

    /// Home directories from the host's /etc/passwd, plus /root. A home
    /// that is not a plain absolute path (`/x/../root`, `/home//u/.`) is
    /// resolved lexically and recorded; a relative one is ignored.
    fn homes(&mut self) -> Vec<PathBuf> {
        let mut homes = vec![PathBuf::from("/root")];
        let passwd = self.b.fs.read(Path::new("/etc/passwd")).unwrap_or_default();
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
                self.b
                    .not_as_written
                    .push(format!("{}: {why}", shown(Path::new(raw))));
                self.b.record(
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
        let names = self.b.fs.read_dir(home);
        self.b.note_crossings("shell_histories");
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
            self.b.copy("shell_histories", &home.join(n))?;
        }
        Ok(())
    }

    fn pids(&self) -> Vec<u32> {
        let mut pids: Vec<u32> = self
            .b
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
                self.b.copy("processes", &base.join(f))?;
            }
            let cmdline = self
                .b
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
                .b
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
            let exe = self.b.fs.read_link(&exe_path).map(|t| shown(&t));
            let mut errors = Vec::new();
            // Hash through /proc/PID/exe: it opens the running image even when its file was deleted.
            let exe_sha256 = match self.b.fs.metadata(&exe_path) {
                Ok(m) => match exe_hashes.get(&(m.dev, m.ino)) {
                    Some(h) => Some(h.clone()),
                    None => match hash_file(&self.b.fs, &exe_path) {
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
            match self.b.fs.read_dir(&fd_dir) {
                Ok(fds) => {
                    for fd in fds {
                        if let Ok(t) = self.b.fs.read_link(&fd_dir.join(&fd)) {
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
                self.b
                    .record("processes", &base, Status::Error, Some(e.clone()));
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
                "cwd": self.b.fs.read_link(&base.join("cwd")).ok().map(|t| shown(&t)),
                "open_files": open_files,
                "errors": errors,
            }));
        }
        let json = serde_json::to_vec_pretty(&summaries).map_err(io::Error::other)?;
        self.b.add_bytes(
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
            self.b.copy("network", &abs)?;
            if matches!(proto, "tcp" | "tcp6" | "udp" | "udp6") {
                let text = self.b.fs.read(&abs).unwrap_or_default();
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
        self.b.add_bytes(
            "network",
            Path::new("/proc/net"),
            "volatile/sockets.json",
            &json,
        )
    }

    fn users(&mut self) -> io::Result<()> {
        let utmp = if self.b.fs.metadata(Path::new("/run/utmp")).is_ok() {
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
            self.b.copy("users", f)?;
        }
        let sessions = self
            .b
            .fs
            .read(utmp)
            .map(|b| parse_utmp(&b))
            .unwrap_or_default();
        let json = serde_json::to_vec_pretty(&sessions).map_err(io::Error::other)?;
        self.b
            .add_bytes("users", utmp, "volatile/users.json", &json)
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
