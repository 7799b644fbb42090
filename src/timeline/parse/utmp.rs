//! Login records: `utmp`, `wtmp`, `btmp` (glibc's `struct utmp` on 64-bit
//! Linux, 384 bytes) and `lastlog` (292 bytes per uid).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use custody_disk::bytes::{le16, le32, slice};

use super::{FileContext, Record, Sink, problem};
use crate::timeline::Event;

const SOURCE: &str = "login";

/// `sizeof(struct utmp)` with glibc on x86_64 and aarch64 (32-bit times).
pub const UTMP_SIZE: usize = 384;
/// `sizeof(struct lastlog)`: a 32-bit time, the line and the host.
pub const LASTLOG_SIZE: usize = 292;

const EMPTY: u16 = 0;
const RUN_LVL: u16 = 1;
const BOOT_TIME: u16 = 2;
const NEW_TIME: u16 = 3;
const OLD_TIME: u16 = 4;
const INIT_PROCESS: u16 = 5;
const LOGIN_PROCESS: u16 = 6;
const USER_PROCESS: u16 = 7;
const DEAD_PROCESS: u16 = 8;
const ACCOUNTING: u16 = 9;

/// `utmp`, `wtmp` or `btmp`. Which one is told by the records alone (the
/// parser is not handed the file's name): a file whose records are all
/// login attempts, with at least one naming a user rather than getty's
/// `LOGIN`, is `btmp`, where login and sshd log failures as `LOGIN_PROCESS`.
pub fn utmp(bytes: &[u8], sink: &mut dyn Sink) {
    records(bytes, looks_like_btmp(bytes), sink);
}

/// `btmp`, known to be one: every record is a failed login.
pub fn btmp(bytes: &[u8], sink: &mut dyn Sink) {
    records(bytes, true, sink);
}

fn looks_like_btmp(bytes: &[u8]) -> bool {
    let mut named_attempt = false;
    for r in bytes.chunks_exact(UTMP_SIZE) {
        match le16(r, 0) {
            EMPTY => {}
            LOGIN_PROCESS => {
                let user = text(slice(r, 44, 32));
                named_attempt |= !user.is_empty() && user != "LOGIN";
            }
            USER_PROCESS => {}
            _ => return false,
        }
    }
    named_attempt
}

fn records(bytes: &[u8], failed: bool, sink: &mut dyn Sink) {
    let whole = bytes.len() / UTMP_SIZE * UTMP_SIZE;
    for (i, r) in bytes.chunks_exact(UTMP_SIZE).enumerate() {
        let at = i * UTMP_SIZE;
        let locator = format!("record at byte {at}");
        match record(r, failed) {
            Ok(Some(mut e)) => {
                e.locator = locator;
                sink.record(e, Record::bytes(r));
            }
            Ok(None) => {}
            Err(why) => sink.problem(problem(locator, why)),
        }
    }
    if bytes.len() > whole {
        sink.problem(problem(
            format!("record at byte {whole}"),
            format!(
                "the file ends {} bytes into this record of {UTMP_SIZE}: cut short",
                bytes.len() - whole
            ),
        ));
    }
}

fn record(r: &[u8], failed: bool) -> Result<Option<Event>, String> {
    let kind = le16(r, 0);
    if kind == EMPTY {
        return Ok(None);
    }
    let pid = le32(r, 4) as i32;
    let line = text(slice(r, 8, 32));
    let id = text(slice(r, 40, 4));
    let user = text(slice(r, 44, 32));
    let host = text(slice(r, 76, 256));
    let exit = le16(r, 334) as i16;
    let session = le32(r, 336) as i32;
    let sec = le32(r, 340) as i32;
    let usec = le32(r, 344) as i32;
    let time_us = i64::from(sec) * 1_000_000 + i64::from(usec);
    let (action, outcome) = match kind {
        USER_PROCESS | LOGIN_PROCESS if failed => ("login", Some("failure")),
        USER_PROCESS => ("login", Some("success")),
        DEAD_PROCESS => ("logout", None),
        BOOT_TIME => ("boot", None),
        // The low byte of the pid is the new runlevel; systemd and
        // sysvinit name a shutdown record `shutdown`, or it goes to 0 or 6.
        RUN_LVL if user == "shutdown" || matches!(pid & 0xff, 0x30 | 0x36) => ("shutdown", None),
        RUN_LVL => ("runlevel", None),
        NEW_TIME => ("clock_new_time", None),
        OLD_TIME => ("clock_old_time", None),
        INIT_PROCESS => ("init_process", None),
        LOGIN_PROCESS => ("login_process", None),
        ACCOUNTING => ("accounting", None),
        other => return Err(format!("unknown record type {other}")),
    };
    let mut e = Event::new(time_us, SOURCE, action);
    e.outcome = outcome.map(str::to_owned);
    e.ip = address(slice(r, 348, 16)).or_else(|| super::ip(&host));
    // Boot and runlevel records name no person: their user field is
    // `reboot`, `runlevel` or `shutdown`, and their host the kernel release.
    let system = matches!(kind, RUN_LVL | BOOT_TIME | NEW_TIME | OLD_TIME);
    if !system && !user.is_empty() {
        e.actor = Some(user.clone());
    }
    if !line.is_empty() {
        e.target = Some(line.clone());
    }
    e.attributes.push(("pid".into(), pid.to_string()));
    if !host.is_empty() {
        let name = if system { "kernel" } else { "host" };
        e.attributes.push((name.into(), host.clone()));
    }
    if !id.is_empty() {
        e.attributes.push(("id".into(), id));
    }
    if session != 0 {
        e.attributes.push(("session".into(), session.to_string()));
    }
    if kind == RUN_LVL
        && let Some(level) = char::from_u32((pid & 0xff) as u32).filter(char::is_ascii_graphic)
    {
        e.attributes.push(("runlevel".into(), level.to_string()));
    }
    if kind == DEAD_PROCESS && exit != 0 {
        e.attributes.push(("exit".into(), exit.to_string()));
    }
    let from = if host.is_empty() {
        String::new()
    } else {
        format!(" from {host}")
    };
    e.message = match action {
        "login" if failed => format!("failed login as {user} on {line}{from}"),
        "login" => format!("{user} logged in on {line}{from}"),
        "logout" => format!("logout on {line}"),
        "boot" => format!("system boot ({host})"),
        "shutdown" | "runlevel" => format!("{user} {}", pid & 0xff),
        other => format!("{other} {user} {line}{from}"),
    }
    .trim()
    .to_owned();
    Ok(Some(e))
}

/// `ut_addr_v6`: IPv4 in the first word, the rest zero; else IPv6; all zero is none.
fn address(b: &[u8]) -> Option<IpAddr> {
    let octets: [u8; 16] = b.try_into().ok()?;
    if octets == [0; 16] {
        return None;
    }
    if octets
        .get(4..)
        .is_some_and(|rest| rest.iter().all(|&x| x == 0))
    {
        let [a, b, c, d, ..] = octets;
        return Some(IpAddr::V4(Ipv4Addr::new(a, b, c, d)));
    }
    Some(IpAddr::V6(Ipv6Addr::from(octets)))
}

/// A fixed-size C string: up to its first NUL.
fn text(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(b.get(..end).unwrap_or_default())
        .trim()
        .to_owned()
}

/// `/var/log/lastlog`: the record at index N is uid N's last login. The
/// file is sparse (a high uid puts its record far out), so runs of zeros
/// are skipped at memory speed. A record with a line or host but no time is
/// dated by the file's modification time where known, and marked undated.
pub fn lastlog(bytes: &[u8], ctx: &FileContext, sink: &mut dyn Sink) {
    let whole = bytes.len() / LASTLOG_SIZE * LASTLOG_SIZE;
    let mut at = 0usize;
    while at < whole {
        // The next non-zero byte names the next record worth reading.
        let Some(next) = bytes
            .get(at..whole)
            .and_then(|rest| rest.iter().position(|&b| b != 0))
        else {
            break;
        };
        let uid = (at + next) / LASTLOG_SIZE;
        let start = uid * LASTLOG_SIZE;
        let r = slice(bytes, start, LASTLOG_SIZE);
        at = start + LASTLOG_SIZE;
        let locator = format!("uid {uid} at byte {start}");
        let time = le32(r, 0) as i32;
        let line = text(slice(r, 4, 32));
        let host = text(slice(r, 36, 256));
        let time_us = if time != 0 {
            i64::from(time) * 1_000_000
        } else if line.is_empty() && host.is_empty() {
            // Only bytes past the strings' NULs: nothing recorded.
            continue;
        } else if let Some(m) = ctx.modified_us {
            m
        } else {
            sink.problem(problem(
                locator,
                format!("a last login on {line:?} from {host:?} without a time"),
            ));
            continue;
        };
        let mut e = Event::new(time_us, SOURCE, "lastlog");
        e.actor = Some(format!("uid {uid}"));
        e.target = (!line.is_empty()).then(|| line.clone());
        e.ip = super::ip(&host);
        if !host.is_empty() {
            e.attributes.push(("host".into(), host.clone()));
        }
        if time == 0 {
            e.attributes.push(("undated".into(), "true".into()));
        }
        let from = if host.is_empty() {
            String::new()
        } else {
            format!(" from {host}")
        };
        e.message = format!("last login of uid {uid} on {line}{from}")
            .trim()
            .to_owned();
        e.locator = locator;
        sink.record(e, Record::bytes(r));
    }
    if bytes.len() > whole {
        sink.problem(problem(
            format!("byte {whole}"),
            format!(
                "the file ends {} bytes into a record of {LASTLOG_SIZE}: cut short",
                bytes.len() - whole
            ),
        ));
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;
    use std::path::Path;
    use std::process::{Command, Stdio};

    use proptest::prelude::*;

    use super::*;
    use crate::timeline::parse::{Collect, Format, parse_file, parse_with, time_us};

    /// utmpdump's text, one record a line: type, pid, id, user, line, host, addr, time.
    const WTMP: &str = "\
[2] [00000] [~~  ] [reboot  ] [~           ] [6.1.0-18-amd64      ] [0.0.0.0        ] [2024-06-01T07:59:00,000000+00:00]
[1] [00053] [~~  ] [runlevel] [~           ] [6.1.0-18-amd64      ] [0.0.0.0        ] [2024-06-01T07:59:05,000000+00:00]
[5] [00001] [si  ] [        ] [si          ] [                    ] [0.0.0.0        ] [2024-06-01T07:59:05,500000+00:00]
[6] [00612] [tty1] [LOGIN   ] [tty1        ] [                    ] [0.0.0.0        ] [2024-06-01T07:59:06,500000+00:00]
[7] [01234] [ts/0] [alice   ] [pts/0       ] [203.0.113.5         ] [203.0.113.5    ] [2024-06-01T08:00:00,123456+00:00]
[7] [01300] [ts/1] [bob     ] [pts/1       ] [2001:db8::7         ] [2001:db8::7    ] [2024-06-01T08:01:00,000001+00:00]
[7] [01301] [ts/2] [carol   ] [pts/2       ] [198.51.100.9        ] [0.0.0.0        ] [2024-06-01T08:02:00,000000+00:00]
[7] [01302] [ts/3] [dave    ] [pts/3       ] [bastion.example.com ] [0.0.0.0        ] [2024-06-01T08:03:00,000000+00:00]
[8] [01234] [ts/0] [        ] [pts/0       ] [                    ] [0.0.0.0        ] [2024-06-01T09:00:00,000000+00:00]
[0] [00000] [    ] [        ] [            ] [                    ] [0.0.0.0        ] [1970-01-01T00:00:00,000000+00:00]
[1] [00048] [~~  ] [shutdown] [~~          ] [6.1.0-18-amd64      ] [0.0.0.0        ] [2024-06-01T10:00:00,000000+00:00]
";

    const BTMP: &str = "\
[6] [02001] [    ] [root    ] [ssh:notty   ] [203.0.113.12        ] [203.0.113.12   ] [2024-06-01T08:02:13,000000+00:00]
[6] [02002] [    ] [admin   ] [ssh:notty   ] [203.0.113.12        ] [203.0.113.12   ] [2024-06-01T08:02:14,000000+00:00]
[6] [02003] [1   ] [alice   ] [tty1        ] [                    ] [0.0.0.0        ] [2024-06-01T08:05:00,000000+00:00]
";

    fn tool(cmd: &mut Command, package: &str) -> std::process::Output {
        let out = cmd.env("TZ", "UTC").output().unwrap_or_else(|e| {
            panic!("{cmd:?} is needed (Debian package {package}; scripts/emulators.sh installs it): {e}")
        });
        assert!(
            out.status.success(),
            "{cmd:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// The binary file utmpdump makes of its text.
    fn undump(text: &str, dir: &Path, name: &str) -> Vec<u8> {
        let path = dir.join(name);
        let mut child = Command::new("utmpdump")
            .arg("-r")
            .arg("-o")
            .arg(&path)
            .stdin(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("utmpdump is needed (Debian package util-linux; scripts/emulators.sh): {e}")
            });
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        assert!(child.wait().unwrap().success());
        std::fs::read(path).unwrap()
    }

    /// utmpdump's reading of a binary file, field by field.
    fn dump(path: &Path) -> Vec<Vec<String>> {
        let out = tool(Command::new("utmpdump").arg(path), "util-linux");
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| {
                l.trim_start_matches('[')
                    .trim_end_matches(']')
                    .split("] [")
                    .map(|f| f.trim().to_owned())
                    .collect()
            })
            .collect()
    }

    fn parse(bytes: &[u8]) -> Collect {
        let mut c = Collect::default();
        parse_file(Format::Utmp, "", bytes, 2024, &mut c);
        c
    }

    /// Each event against utmpdump's fields of the same record.
    fn compare(events: &[Event], dumped: &[Vec<String>], failed: bool) {
        let records: Vec<(usize, &Vec<String>)> = dumped
            .iter()
            .enumerate()
            .filter(|(_, d)| d[0] != "0")
            .collect();
        assert_eq!(events.len(), records.len());
        for (e, (i, d)) in events.iter().zip(records) {
            let [kind, pid, id, user, line, host, addr, time] = &d[..] else {
                panic!("{d:?}")
            };
            assert_eq!(e.locator, format!("record at byte {}", i * UTMP_SIZE));
            assert_eq!(
                e.time_us,
                time_us(&time.replace(',', ".")).unwrap(),
                "{d:?}"
            );
            assert_eq!(
                e.attribute("pid"),
                Some(pid.trim_start_matches('0'))
                    .filter(|p| !p.is_empty())
                    .or(Some("0"))
            );
            assert_eq!(
                e.attribute("id"),
                Some(id.as_str()).filter(|s| !s.is_empty())
            );
            assert_eq!(
                e.target.as_deref(),
                Some(line.as_str()).filter(|s| !s.is_empty())
            );
            let system = ["1", "2"].contains(&kind.as_str());
            let host_attr = if system { "kernel" } else { "host" };
            assert_eq!(
                e.attribute(host_attr),
                Some(host.as_str()).filter(|s| !s.is_empty())
            );
            let want_ip = if addr == "0.0.0.0" {
                host.parse().ok()
            } else {
                addr.parse().ok()
            };
            assert_eq!(e.ip, want_ip, "{d:?}");
            if !system {
                assert_eq!(
                    e.actor.as_deref(),
                    Some(user.as_str()).filter(|s| !s.is_empty())
                );
            }
            let (action, outcome) = match (kind.as_str(), user.as_str()) {
                ("6" | "7", _) if failed => ("login", Some("failure")),
                ("7", _) => ("login", Some("success")),
                ("8", _) => ("logout", None),
                ("2", _) => ("boot", None),
                ("1", "shutdown") => ("shutdown", None),
                ("1", _) => ("runlevel", None),
                ("5", _) => ("init_process", None),
                ("6", _) => ("login_process", None),
                other => panic!("{other:?}"),
            };
            assert_eq!(
                (e.action.as_str(), e.outcome.as_deref()),
                (action, outcome),
                "{d:?}"
            );
            assert_eq!(e.source, "login");
        }
    }

    #[test]
    fn wtmp_matches_utmpdump_and_last() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = undump(WTMP, dir.path(), "wtmp");
        assert_eq!(bytes.len(), 11 * UTMP_SIZE);
        let c = parse(&bytes);
        assert_eq!(c.problems, vec![]);
        let dumped = dump(&dir.path().join("wtmp"));
        assert_eq!(dumped.len(), 11);
        compare(&c.events, &dumped, false);
        assert_eq!(c.events[1].attribute("runlevel"), Some("5"));
        assert_eq!(c.events[9].action, "shutdown");
        // last(1) pairs each login with its logout: the same sessions.
        let out = tool(
            Command::new("last")
                .arg("-f")
                .arg(dir.path().join("wtmp"))
                .args(["-w", "--time-format", "iso"]),
            "util-linux",
        );
        let last = String::from_utf8(out.stdout).unwrap();
        for e in c.events.iter().filter(|e| e.action == "login") {
            let user = e.actor.as_deref().unwrap();
            let line = e.target.as_deref().unwrap();
            assert!(
                last.lines()
                    .any(|l| l.split_whitespace().take(2).eq([user, line])),
                "{user} {line} not in\n{last}"
            );
        }
        assert!(last.contains("system boot"));
    }

    #[test]
    fn btmp_records_are_failed_logins() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = undump(BTMP, dir.path(), "btmp");
        let c = parse(&bytes);
        assert_eq!(c.problems, vec![]);
        compare(&c.events, &dump(&dir.path().join("btmp")), true);
        assert_eq!(c.events[0].actor.as_deref(), Some("root"));
        assert_eq!(c.events[0].ip, "203.0.113.12".parse().ok());
        // lastb reads the same attempts.
        let out = tool(
            Command::new("lastb")
                .arg("-f")
                .arg(dir.path().join("btmp"))
                .arg("-w"),
            "util-linux",
        );
        let lastb = String::from_utf8(out.stdout).unwrap();
        for user in ["root", "admin", "alice"] {
            assert!(lastb.lines().any(|l| l.starts_with(user)), "{lastb}");
        }
        // The same records told apart from a wtmp only by the caller.
        let mut told = Collect::default();
        btmp(&bytes, &mut told);
        assert_eq!(told.events, c.events);
        // A wtmp's getty records (user LOGIN) are not failures.
        let getty = undump(WTMP.lines().nth(3).unwrap(), dir.path(), "getty");
        assert_eq!(parse(&getty).events[0].action, "login_process");
    }

    #[test]
    fn a_partial_record_is_a_problem_after_every_whole_one() {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = undump(WTMP, dir.path(), "wtmp");
        let whole = parse(&bytes).events;
        bytes.truncate(bytes.len() - 100);
        let c = parse(&bytes);
        assert_eq!(c.events[..], whole[..whole.len() - 1]);
        assert_eq!(
            c.problems,
            vec![problem(
                format!("record at byte {}", 10 * UTMP_SIZE),
                format!(
                    "the file ends {} bytes into this record of 384: cut short",
                    UTMP_SIZE - 100
                )
            )]
        );
        // An unknown type is a problem, and the records after it are read.
        let mut bytes = undump(WTMP, dir.path(), "wtmp");
        bytes[UTMP_SIZE] = 42;
        let c = parse(&bytes);
        assert_eq!(c.events.len(), whole.len() - 1);
        assert_eq!(
            c.problems,
            vec![problem("record at byte 384", "unknown record type 42")]
        );
    }

    fn lastlog_record(time: i32, line: &str, host: &str) -> Vec<u8> {
        let mut r = vec![0u8; LASTLOG_SIZE];
        r[..4].copy_from_slice(&time.to_le_bytes());
        r[4..4 + line.len()].copy_from_slice(line.as_bytes());
        r[36..36 + host.len()].copy_from_slice(host.as_bytes());
        r
    }

    #[test]
    fn lastlog_matches_the_lastlog_tool() {
        let users = [
            (0u32, None),
            (1000, Some((1_717_228_800, "pts/0", "203.0.113.5"))),
            (1001, None),
            (
                150_000,
                Some((1_717_232_400, "pts/1", "bastion.example.com")),
            ),
        ];
        let mut file = vec![0u8; (150_001) * LASTLOG_SIZE];
        for (uid, rec) in users {
            if let Some((t, line, host)) = rec {
                let at = uid as usize * LASTLOG_SIZE;
                file[at..at + LASTLOG_SIZE].copy_from_slice(&lastlog_record(t, line, host));
            }
        }
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("etc")).unwrap();
        std::fs::create_dir_all(root.path().join("var/log")).unwrap();
        let passwd: String = users
            .iter()
            .map(|(uid, _)| format!("u{uid}:x:{uid}:{uid}::/:/bin/sh\n"))
            .collect();
        std::fs::write(root.path().join("etc/passwd"), passwd).unwrap();
        std::fs::write(root.path().join("var/log/lastlog"), &file).unwrap();
        let out = tool(Command::new("lastlog").arg("-R").arg(root.path()), "login");
        let text = String::from_utf8(out.stdout).unwrap();

        let started = std::time::Instant::now();
        let mut c = Collect::default();
        parse_file(Format::Lastlog, "", &file, 2024, &mut c);
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        assert_eq!(c.problems, vec![]);
        let format = time::macros::format_description!(
            "[weekday repr:short] [month repr:short] [day padding:space] [hour]:[minute]:[second] +0000 [year]"
        );
        let logged: Vec<&str> = text
            .lines()
            .skip(1)
            .filter(|l| !l.contains("**Never logged in**"))
            .collect();
        assert_eq!(c.events.len(), logged.len());
        for (e, l) in c.events.iter().zip(logged) {
            let uid: u32 = e
                .actor
                .as_deref()
                .unwrap()
                .strip_prefix("uid ")
                .unwrap()
                .parse()
                .unwrap();
            let when = time::OffsetDateTime::from_unix_timestamp(e.time_us / 1_000_000)
                .unwrap()
                .format(format)
                .unwrap();
            let want = format!(
                "u{uid} {} {} {when}",
                e.target.as_deref().unwrap(),
                e.attribute("host").unwrap()
            );
            assert_eq!(
                l.split_whitespace().collect::<Vec<_>>().join(" "),
                want.split_whitespace().collect::<Vec<_>>().join(" ")
            );
            assert_eq!(e.action, "lastlog");
            assert_eq!(
                e.locator,
                format!("uid {uid} at byte {}", uid as usize * LASTLOG_SIZE)
            );
        }
        assert_eq!(c.events[0].ip, "203.0.113.5".parse().ok());
        assert_eq!(c.events[1].ip, None);
    }

    #[test]
    fn lastlog_undated_and_partial_records() {
        let mut file = lastlog_record(0, "tty1", "");
        file.extend(lastlog_record(1_717_228_800, "", ""));
        file.extend([1, 2, 3]);
        let mut c = Collect::default();
        lastlog(&file, &FileContext::default(), &mut c);
        assert_eq!(c.events.len(), 1);
        assert_eq!(c.events[0].actor.as_deref(), Some("uid 1"));
        assert_eq!(c.problems.len(), 2);
        assert_eq!(c.problems[0].locator, "uid 0 at byte 0");
        assert_eq!(c.problems[1].locator, format!("byte {}", 2 * LASTLOG_SIZE));
        let ctx = FileContext {
            year_hint: 2024,
            modified_us: Some(42),
            collected_us: None,
        };
        let mut c = Collect::default();
        parse_with(Format::Lastlog, "", &file, &ctx, &mut c);
        assert_eq!(c.events.len(), 2);
        assert_eq!(c.events[0].time_us, 42);
        assert_eq!(c.events[0].attribute("undated"), Some("true"));
    }

    fn wtmp_file() -> &'static [u8] {
        static FILE: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
        FILE.get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let mut b = undump(WTMP, dir.path(), "wtmp");
            b.extend(undump(BTMP, dir.path(), "btmp"));
            b
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]
        #[test]
        fn mutated_files_never_panic(
            cut in 0usize..800,
            edits in prop::collection::vec((any::<usize>(), any::<u8>()), 1..40),
        ) {
            let mut b = wtmp_file().to_vec();
            let len = b.len();
            for (at, v) in edits {
                b[at % len] = v;
            }
            b.truncate(len - cut.min(len));
            let started = std::time::Instant::now();
            let mut c = Collect::default();
            parse_file(Format::Utmp, "", &b, 2024, &mut c);
            parse_file(Format::Lastlog, "", &b, 2024, &mut c);
            prop_assert!(started.elapsed() < std::time::Duration::from_secs(1));
        }
    }
}
