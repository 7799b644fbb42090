//! Host text logs, alone or inside a host triage bundle.

use std::cell::Cell;
use std::io::{self, Read};

use time::Date;

use super::{Format, Sink, parse_file, problem, time_us, to_us};
use crate::timeline::{Event, Problem};

const HOST: &str = "host";

/// Where the triage bundle keeps copies of the host's files.
const LOG_DIR: &str = "files/var/log/";
/// The text logs read from the bundle, rotated copies included (`auth.log.1`,
/// `secure-20240601`, `syslog.2.gz`).
const LOG_NAMES: [&str; 4] = ["auth.log", "secure", "syslog", "messages"];

/// A syslog-style text log: `TIME HOST PROGRAM[PID]: TEXT`, with the time
/// either RFC 3164 (`Jun  1 08:00:01`, no year: `year_hint`, UTC assumed) or
/// RFC 3339 with fractions (rsyslog's high-precision format).
pub fn syslog(bytes: &[u8], year_hint: i32, sink: &mut dyn Sink) {
    for (i, raw) in bytes.split(|&b| b == b'\n').enumerate() {
        let locator = format!("line {}", i + 1);
        let text = String::from_utf8_lossy(raw);
        // A crash or a copy taken mid-write leaves runs of NULs: a gap worth
        // reporting, not a line to drop.
        let line = text.trim_matches(|c: char| c.is_whitespace() || c == '\0');
        if line.is_empty() {
            if raw.contains(&0) {
                sink.problem(problem(locator, "only NUL bytes: the log has a gap here"));
            }
            continue;
        }
        match syslog_line(line, year_hint) {
            Ok(mut e) => {
                e.locator = locator;
                sink.event(e);
            }
            Err(why) => sink.problem(problem(locator, why)),
        }
    }
}

/// The host triage bundle (a tar): every auth.log, secure, syslog and
/// messages file under `files/var/log/`, gzip-rotated ones included.
pub fn bundle(bytes: &[u8], year_hint: i32, sink: &mut dyn Sink) {
    let consumed = Cell::new(0u64);
    let mut archive = tar::Archive::new(Counting {
        rest: bytes,
        consumed: &consumed,
    });
    let damaged = |member: &str, message: String| Problem {
        member: member.to_owned(),
        locator: format!("byte {}", consumed.get()),
        message,
    };
    let entries = match archive.entries() {
        Ok(entries) => entries,
        Err(e) => {
            sink.problem(damaged("", format!("not a tar archive: {e}")));
            return;
        }
    };
    let mut last = String::new();
    // Where the data of the last member ends: the end-of-archive block follows.
    let mut data_end = 0u64;
    for entry in entries {
        let mut entry = match entry {
            Ok(entry) => entry,
            Err(e) => {
                sink.problem(damaged(
                    &last,
                    format!("the bundle is truncated or damaged after this member ({e}); nothing after it can be read"),
                ));
                return;
            }
        };
        last = entry.path().map_or_else(
            |_| String::from_utf8_lossy(&entry.path_bytes()).into_owned(),
            |p| p.to_string_lossy().into_owned(),
        );
        let size = entry.size();
        data_end = entry
            .raw_file_position()
            .saturating_add(size.div_ceil(512).saturating_mul(512));
        if !entry.header().entry_type().is_file() || !is_host_log(&last) {
            continue;
        }
        let mut data = Vec::new();
        let read = entry.read_to_end(&mut data);
        parse_file(Format::Syslog, &last, &data, year_hint, sink);
        // A member cut short reads as a short member, not as an error.
        if read.is_err() || (data.len() as u64) < size {
            sink.problem(damaged(
                &last,
                format!(
                    "the bundle ends inside this member: {} of {size} bytes; nothing after it can be read",
                    data.len()
                ),
            ));
            return;
        }
    }
    // The tar reader takes a clean end of input for the end of the archive;
    // only the end-of-archive block past the last member's data tells them apart.
    if consumed.get() <= data_end {
        sink.problem(damaged(
            &last,
            "the bundle ends without its end-of-archive block: truncated".into(),
        ));
    }
}

/// Counts the bytes the tar reader takes, to say where damage is.
struct Counting<'a> {
    rest: &'a [u8],
    consumed: &'a Cell<u64>,
}

impl Read for Counting<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.rest.read(buf)?;
        self.consumed.set(self.consumed.get() + n as u64);
        Ok(n)
    }
}

fn is_host_log(path: &str) -> bool {
    let path = path.strip_prefix("./").unwrap_or(path);
    let Some(rel) = path.strip_prefix(LOG_DIR) else {
        return false;
    };
    let name = rel.rsplit('/').next().unwrap_or(rel);
    LOG_NAMES.iter().any(|n| name.starts_with(n))
}

fn syslog_line(line: &str, year_hint: i32) -> Result<Event, String> {
    let (t, rest) =
        timestamp(line, year_hint).ok_or("no readable timestamp at the start of the line")?;
    let rest = rest.trim_start();
    let (host, rest) = rest.split_once(' ').unwrap_or((rest, ""));
    if host.is_empty() {
        return Err("nothing after the timestamp".into());
    }
    let (program, pid, text) = tag(rest.trim_start());
    let mut e = Event::new(t, HOST, program.unwrap_or("syslog"));
    e.message = line.to_owned();
    e.attributes.push(("host".into(), host.to_owned()));
    if let Some(p) = program {
        e.attributes.push(("program".into(), p.to_owned()));
    }
    if let Some(p) = pid {
        e.attributes.push(("pid".into(), p.to_owned()));
    }
    match program {
        // OpenSSH 9.8 logs sessions as `sshd-session`.
        Some("sshd" | "sshd-session") => sshd(&mut e, text),
        Some("sudo") => sudo(&mut e, text),
        Some("su") => su(&mut e, text),
        Some("useradd") => useradd(&mut e, text),
        _ => {}
    }
    Ok(e)
}

/// The line's time and what follows it.
fn timestamp(line: &str, year_hint: i32) -> Option<(i64, &str)> {
    if line.as_bytes().first()?.is_ascii_digit() {
        let (first, rest) = line.split_once(' ').unwrap_or((line, ""));
        // A date alone is not this format's timestamp.
        if !first.contains('T') {
            return None;
        }
        return Some((time_us(first)?, rest));
    }
    let month = super::month_abbr(line.get(..3)?)?;
    // The day is space-padded: `Jun  1`.
    let rest = line.get(3..)?.strip_prefix(' ')?.trim_start_matches(' ');
    let (day, rest) = rest.split_once(' ')?;
    let (clock, rest) = rest.split_once(' ').unwrap_or((rest, ""));
    let mut hms = clock.split(':').map(str::parse::<u8>);
    let (Some(Ok(h)), Some(Ok(m)), Some(Ok(s)), None) =
        (hms.next(), hms.next(), hms.next(), hms.next())
    else {
        return None;
    };
    let t = Date::from_calendar_date(year_hint, month, day.parse().ok()?)
        .ok()?
        .with_hms(h, m, s)
        .ok()?
        .assume_utc();
    Some((to_us(t), rest))
}

/// `PROGRAM[PID]: TEXT` into its parts; a line without a tag is all text.
fn tag(rest: &str) -> (Option<&str>, Option<&str>, &str) {
    let (tag, text) = match rest.split_once(": ") {
        Some(parts) => parts,
        None => match rest.strip_suffix(':') {
            Some(tag) => (tag, ""),
            None => return (None, None, rest),
        },
    };
    if tag.is_empty() || tag.contains(char::is_whitespace) {
        return (None, None, rest);
    }
    match tag.split_once('[') {
        Some((program, pid)) if !program.is_empty() => (Some(program), pid.strip_suffix(']'), text),
        _ => (Some(tag), None, text),
    }
}

fn set(e: &mut Event, action: &str, outcome: &str) {
    action.clone_into(&mut e.action);
    e.outcome = Some(outcome.to_owned());
}

pub(super) fn sshd(e: &mut Event, text: &str) {
    // rsyslog folds repeats: `message repeated 2 times: [ Failed password ...]`.
    let text = match text.strip_prefix("message repeated ") {
        Some(rest) => match rest.split_once(" times: [ ") {
            Some((n, inner)) => {
                e.attributes.push(("repeated".into(), n.to_owned()));
                inner.strip_suffix(']').unwrap_or(inner).trim_end()
            }
            None => text,
        },
        None => text,
    };
    if let Some(rest) = text.strip_prefix("Accepted ")
        && let Some((method, rest)) = rest.split_once(" for ")
        && let Some(from) = login_from(rest)
    {
        set(e, "sshd.accepted", "success");
        e.attributes.push(("method".into(), method.to_owned()));
        from.apply(e);
    } else if let Some(rest) = text.strip_prefix("Failed ")
        && let Some((method, rest)) = rest.split_once(" for ")
    {
        let (invalid, rest) = match rest.strip_prefix("invalid user ") {
            Some(r) => (true, r),
            None => (false, rest),
        };
        if let Some(from) = login_from(rest) {
            set(e, "sshd.failed", "failure");
            e.attributes.push(("method".into(), method.to_owned()));
            if invalid {
                e.attributes.push(("invalid_user".into(), "true".into()));
            }
            from.apply(e);
        }
    } else if let Some(rest) = text.strip_prefix("Invalid user ")
        && let Some(from) = login_from(rest)
    {
        set(e, "sshd.invalid_user", "failure");
        from.apply(e);
    }
}

/// `USER from ADDR [port N] ...`, what sshd's login lines end with.
struct LoginFrom<'a> {
    user: &'a str,
    addr: &'a str,
    port: Option<&'a str>,
}

impl LoginFrom<'_> {
    fn apply(&self, e: &mut Event) {
        e.actor = (!self.user.is_empty()).then(|| self.user.to_owned());
        e.ip = super::ip(self.addr);
        if e.ip.is_none() {
            // A host name, when sshd resolves (UseDNS yes).
            e.attributes
                .push(("remote_host".into(), self.addr.to_owned()));
        }
        if let Some(p) = self.port {
            e.attributes.push(("port".into(), p.to_owned()));
        }
    }
}

fn login_from(rest: &str) -> Option<LoginFrom<'_>> {
    // From the right: user names tried by scanners can hold anything, " from " included.
    let (user, tail) = rest.rsplit_once(" from ").or_else(|| {
        // An empty user name leaves no space before `from`.
        rest.strip_prefix("from ").map(|tail| ("", tail))
    })?;
    let mut words = tail.split_whitespace();
    let addr = words.next()?;
    let port = match words.next() {
        Some("port") => words.next(),
        _ => None,
    };
    Some(LoginFrom { user, addr, port })
}

/// `USER : [REASON ;] TTY=.. ; PWD=.. ; USER=.. ; COMMAND=..`
pub(super) fn sudo(e: &mut Event, text: &str) {
    let Some((user, rest)) = text.trim_start().split_once(" : ") else {
        return;
    };
    // The command is last and may itself hold ` ; `.
    let Some((fields, command)) = rest.split_once("COMMAND=") else {
        return;
    };
    let user = user.trim();
    if user.is_empty() || user.contains(char::is_whitespace) {
        return;
    }
    let mut run_as = None;
    let mut reason = None;
    for part in fields.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        if let Some(v) = part.strip_prefix("USER=") {
            run_as = Some(v);
        } else if let Some(v) = part.strip_prefix("TTY=") {
            e.attributes.push(("tty".into(), v.to_owned()));
        } else if let Some(v) = part.strip_prefix("PWD=") {
            e.attributes.push(("pwd".into(), v.to_owned()));
        } else if !part.contains('=') {
            // `3 incorrect password attempts`, `user NOT in sudoers`, `command not allowed`.
            reason = Some(part);
        }
    }
    set(
        e,
        "sudo",
        if reason.is_some() {
            "failure"
        } else {
            "success"
        },
    );
    e.actor = Some(user.to_owned());
    e.target = Some(command.trim().to_owned());
    if let Some(r) = run_as {
        e.attributes.push(("run_as".into(), r.to_owned()));
    }
    if let Some(r) = reason {
        e.attributes.push(("reason".into(), r.to_owned()));
    }
}

/// `pam_unix(su:session): session opened for user root(uid=0) by alice(uid=1000)`
pub(super) fn su(e: &mut Event, text: &str) {
    let Some((_, rest)) = text.split_once("session opened for user ") else {
        return;
    };
    let (to, by) = rest.split_once(" by ").unwrap_or((rest, ""));
    // Names carry `(uid=N)` on newer PAM.
    let name = |s: &str| {
        let s = s.trim();
        let s = s.split_once('(').map_or(s, |(n, _)| n);
        (!s.is_empty()).then(|| s.to_owned())
    };
    set(e, "su.session_opened", "success");
    e.target = name(to);
    e.actor = name(by);
}

/// `new user: name=X, UID=N, GID=N, home=..., shell=..., from=...`
pub(super) fn useradd(e: &mut Event, text: &str) {
    let Some(rest) = text.strip_prefix("new user: ") else {
        return;
    };
    let mut name = None;
    for (k, v) in rest.split(", ").filter_map(|kv| kv.split_once('=')) {
        match k {
            "name" => name = Some(v),
            "UID" => e.attributes.push(("uid".into(), v.to_owned())),
            "shell" => e.attributes.push(("shell".into(), v.to_owned())),
            _ => {}
        }
    }
    let Some(name) = name else {
        return;
    };
    set(e, "useradd", "success");
    e.target = Some(name.to_owned());
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use flate2::{Compression, write::GzEncoder};

    use super::*;
    use crate::timeline::parse::Collect;

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!(
            "{}/tests/fixtures/logs/host/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn us(rfc3339: &str) -> i64 {
        time_us(rfc3339).unwrap()
    }

    fn attrs(e: &Event) -> Vec<(&str, &str)> {
        e.attributes
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }

    fn parse(bytes: &[u8]) -> Collect {
        let mut c = Collect::default();
        syslog(bytes, 2024, &mut c);
        c
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut gz = GzEncoder::new(Vec::new(), Compression::default());
        gz.write_all(bytes).unwrap();
        gz.finish().unwrap()
    }

    #[test]
    fn auth_log_recognised_lines() {
        let bytes = fixture("auth.log");
        let c = parse(&bytes);
        assert_eq!(c.problems, vec![]);
        assert_eq!(c.events.len(), 16);
        let actions: Vec<&str> = c.events.iter().map(|e| e.action.as_str()).collect();
        assert_eq!(
            actions,
            [
                "CRON",
                "sshd.invalid_user",
                "sshd.failed",
                "sshd.failed",
                "sshd.accepted",
                "sshd",
                "systemd-logind",
                "sudo",
                "sudo",
                "su",
                "su.session_opened",
                "useradd",
                "useradd",
                "sshd.accepted",
                "sudo",
                "sshd",
            ]
        );
        let lines: Vec<&str> = std::str::from_utf8(&bytes).unwrap().lines().collect();
        for (i, e) in c.events.iter().enumerate() {
            assert_eq!(e.source, "host");
            assert_eq!(e.locator, format!("line {}", i + 1));
            assert_eq!(e.message, lines[i].trim());
            assert_eq!(e.member, "");
            assert_eq!(e.attribute("host"), Some("web01"));
        }

        let cron = &c.events[0];
        assert_eq!(cron.time_us, us("2024-06-01T08:00:01Z"));
        assert_eq!(cron.outcome, None);
        assert_eq!(cron.actor, None);
        assert_eq!(
            attrs(cron),
            [("host", "web01"), ("program", "CRON"), ("pid", "2101")]
        );

        let invalid = &c.events[1];
        assert_eq!(invalid.time_us, us("2024-06-01T08:02:13Z"));
        assert_eq!(invalid.outcome.as_deref(), Some("failure"));
        assert_eq!(invalid.actor.as_deref(), Some("admin"));
        assert_eq!(invalid.ip, "203.0.113.12".parse().ok());
        assert_eq!(invalid.attribute("port"), Some("51522"));

        let failed = &c.events[2];
        assert_eq!(failed.actor.as_deref(), Some("admin"));
        assert_eq!(
            attrs(failed),
            [
                ("host", "web01"),
                ("program", "sshd"),
                ("pid", "2188"),
                ("method", "password"),
                ("invalid_user", "true"),
                ("port", "51522"),
            ]
        );
        let root = &c.events[3];
        assert_eq!(root.actor.as_deref(), Some("root"));
        assert_eq!(root.attribute("invalid_user"), None);

        let accepted = &c.events[4];
        assert_eq!(accepted.time_us, us("2024-06-01T08:03:02Z"));
        assert_eq!(accepted.outcome.as_deref(), Some("success"));
        assert_eq!(accepted.actor.as_deref(), Some("alice"));
        assert_eq!(accepted.ip, "198.51.100.23".parse().ok());
        assert_eq!(accepted.attribute("method"), Some("publickey"));
        assert_eq!(accepted.attribute("port"), Some("40022"));

        let sudo = &c.events[7];
        assert_eq!(sudo.actor.as_deref(), Some("alice"));
        assert_eq!(sudo.outcome.as_deref(), Some("success"));
        assert_eq!(sudo.target.as_deref(), Some("/usr/bin/cat /etc/shadow"));
        assert_eq!(
            attrs(sudo),
            [
                ("host", "web01"),
                ("program", "sudo"),
                ("tty", "pts/0"),
                ("pwd", "/home/alice"),
                ("run_as", "root"),
            ]
        );
        // sudo's own PAM line is kept under the program's name.
        assert_eq!(c.events[8].actor, None);
        assert_eq!(c.events[8].target, None);

        let su = &c.events[10];
        assert_eq!(su.actor.as_deref(), Some("alice"));
        assert_eq!(su.target.as_deref(), Some("root"));
        assert_eq!(su.outcome.as_deref(), Some("success"));
        assert_eq!(su.attribute("pid"), Some("2260"));

        assert_eq!(c.events[11].target, None);
        let useradd = &c.events[12];
        assert_eq!(useradd.target.as_deref(), Some("svc-backup"));
        assert_eq!(useradd.attribute("uid"), Some("1001"));
        assert_eq!(useradd.attribute("shell"), Some("/bin/bash"));

        let backdoor = &c.events[13];
        assert_eq!(backdoor.actor.as_deref(), Some("svc-backup"));
        assert_eq!(backdoor.ip, "203.0.113.50".parse().ok());
        assert_eq!(backdoor.attribute("method"), Some("password"));

        let denied = &c.events[14];
        assert_eq!(denied.actor.as_deref(), Some("bob"));
        assert_eq!(denied.outcome.as_deref(), Some("failure"));
        assert_eq!(denied.target.as_deref(), Some("/bin/bash"));
        assert_eq!(
            denied.attribute("reason"),
            Some("3 incorrect password attempts")
        );

        assert_eq!(c.events[15].time_us, us("2024-06-12T23:59:59Z"));
        assert_eq!(c.events[15].ip, None);
    }

    #[test]
    fn iso_timestamps() {
        let c = parse(&fixture("auth-iso.log"));
        assert_eq!(c.problems, vec![]);
        assert_eq!(c.events.len(), 5);
        let failed = &c.events[0];
        assert_eq!(failed.time_us, us("2024-05-30T22:14:03.118204Z"));
        assert_eq!(failed.action, "sshd.failed");
        assert_eq!(failed.actor.as_deref(), Some("oracle"));
        assert_eq!(failed.ip, "192.0.2.77".parse().ok());
        assert_eq!(c.events[1].action, "sshd");
        assert_eq!(c.events[2].action, "sshd.accepted");
        assert_eq!(
            c.events[3].target.as_deref(),
            Some("/usr/bin/apt-get install -y nmap")
        );
        // The offset is honoured: 01:00 at +02:00 is 23:00 UTC the day before.
        assert_eq!(c.events[4].time_us, us("2024-05-30T23:00:00.090931Z"));
        // The year comes from the line, never from the hint.
        let mut other = Collect::default();
        syslog(&fixture("auth-iso.log"), 1999, &mut other);
        assert_eq!(other.events, c.events);
    }

    #[test]
    fn bad_lines_are_problems_and_parsing_goes_on() {
        let text = String::from_utf8(fixture("auth.log")).unwrap();
        let mut lines: Vec<&str> = text.lines().collect();
        lines.insert(
            2,
            "Jun 31 08:02:14 web01 sshd[2188]: a day June does not have",
        );
        lines.insert(3, "");
        lines.insert(4, "\0\0\0\0\0\0");
        lines.insert(5, "kernel: [  12.345678] no timestamp");
        let c = parse(lines.join("\n").as_bytes());
        assert_eq!(c.events.len(), 16);
        assert_eq!(c.events[1].locator, "line 2");
        assert_eq!(c.events[2].locator, "line 7");
        assert_eq!(c.events[2].action, "sshd.failed");
        assert_eq!(
            c.problems,
            vec![
                problem("line 3", "no readable timestamp at the start of the line"),
                problem("line 5", "only NUL bytes: the log has a gap here"),
                problem("line 6", "no readable timestamp at the start of the line"),
            ]
        );
    }

    #[test]
    fn sshd_edge_cases() {
        let c = parse(
            b"Jun  1 09:00:00 web01 sshd[1]: message repeated 3 times: [ Failed password for root from 203.0.113.12 port 4242 ssh2]\n\
              Jun  1 09:00:01 web01 sshd[2]: Invalid user  from 203.0.113.12 port 4243\n\
              Jun  1 09:00:02 web01 sshd[3]: Failed password for invalid user a from b from 203.0.113.12 port 4244 ssh2\n\
              Jun  1 09:00:03 web01 sshd-session[4]: Accepted publickey for alice from 2001:db8::7 port 50000 ssh2: ED25519 SHA256:x\n\
              Jun  1 09:00:04 web01 last message repeated 2 times\n",
        );
        assert_eq!(c.problems, vec![]);
        let e = &c.events;
        assert_eq!(e[0].action, "sshd.failed");
        assert_eq!(e[0].actor.as_deref(), Some("root"));
        assert_eq!(e[0].attribute("repeated"), Some("3"));
        assert_eq!(e[1].action, "sshd.invalid_user");
        assert_eq!(e[1].actor, None);
        assert_eq!(e[1].ip, "203.0.113.12".parse().ok());
        assert_eq!(e[2].actor.as_deref(), Some("a from b"));
        assert_eq!(e[3].action, "sshd.accepted");
        assert_eq!(e[3].ip, "2001:db8::7".parse().ok());
        assert_eq!(e[4].action, "syslog");
        assert_eq!(attrs(&e[4]), [("host", "web01")]);
    }

    fn tar_of(members: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, data) in members {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o444);
            h.set_entry_type(tar::EntryType::Regular);
            b.append_data(&mut h, path, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn bundle_reads_logs_with_member_names() {
        let auth = fixture("auth.log");
        let rotated = gzip(&fixture("auth-iso.log"));
        let tar = tar_of(&[
            ("volatile/processes.json", b"[]"),
            ("files/etc/passwd", b"root:x:0:0:root:/root:/bin/bash\n"),
            ("files/var/log/auth.log", &auth),
            ("files/var/log/auth.log.2.gz", &rotated),
            (
                "files/var/log/dpkg.log",
                b"2024-06-01 08:00:00 status installed nmap\n",
            ),
            ("index.json", b"{}"),
        ]);
        let mut c = Collect::default();
        bundle(&tar, 2024, &mut c);
        assert_eq!(c.problems, vec![]);
        assert_eq!(c.events.len(), 16 + 5);
        assert!(
            c.events[..16]
                .iter()
                .all(|e| e.member == "files/var/log/auth.log")
        );
        assert!(
            c.events[16..]
                .iter()
                .all(|e| e.member == "files/var/log/auth.log.2.gz")
        );
        assert_eq!(c.events[1].action, "sshd.invalid_user");
        assert_eq!(c.events[1].locator, "line 2");
        assert_eq!(c.events[1].time_us, us("2024-06-01T08:02:13Z"));
        assert_eq!(c.events[18].action, "sshd.accepted");
        assert_eq!(c.events[18].locator, "line 3");
        assert_eq!(c.events[18].actor.as_deref(), Some("alice"));
    }

    #[test]
    fn bundle_truncated() {
        let auth = fixture("auth.log");
        let rotated = gzip(&fixture("auth-iso.log"));
        let tar = tar_of(&[
            ("files/var/log/auth.log.2.gz", &rotated),
            ("files/var/log/auth.log", &auth),
            ("files/etc/shadow", b"root:*:19000:0:99999:7:::\n"),
        ]);
        // Cut inside auth.log's data, after its line 5 (512 bytes of header first).
        let start = 512 + rotated.len().div_ceil(512) * 512 + 512;
        let line6 = start
            + auth
                .iter()
                .enumerate()
                .filter(|&(_, &b)| b == b'\n')
                .nth(4)
                .unwrap()
                .0
            + 1;
        let mut c = Collect::default();
        bundle(&tar[..line6], 2024, &mut c);
        assert_eq!(c.events.len(), 5 + 5);
        assert_eq!(c.events[9].member, "files/var/log/auth.log");
        assert_eq!(c.events[9].action, "sshd.accepted");
        assert_eq!(
            c.problems,
            vec![Problem {
                member: "files/var/log/auth.log".into(),
                locator: format!("byte {line6}"),
                message: format!(
                    "the bundle ends inside this member: {} of {} bytes; nothing after it can be read",
                    line6 - start,
                    auth.len()
                ),
            }]
        );

        // Cut inside the header of the member after auth.log.
        let shadow = start + auth.len().div_ceil(512) * 512;
        let mut c = Collect::default();
        bundle(&tar[..shadow + 100], 2024, &mut c);
        assert_eq!(c.events.len(), 5 + 16);
        assert_eq!(c.problems.len(), 1);
        assert_eq!(c.problems[0].member, "files/var/log/auth.log");
        assert_eq!(c.problems[0].locator, format!("byte {}", shadow + 100));

        // Cut cleanly between members: no end-of-archive block.
        let mut c = Collect::default();
        bundle(&tar[..shadow], 2024, &mut c);
        assert_eq!(c.events.len(), 5 + 16);
        assert_eq!(
            c.problems,
            vec![Problem {
                member: "files/var/log/auth.log".into(),
                locator: format!("byte {shadow}"),
                message: "the bundle ends without its end-of-archive block: truncated".into(),
            }]
        );

        // Not a tar at all.
        let mut c = Collect::default();
        bundle(b"", 2024, &mut c);
        assert_eq!(c.events, vec![]);
        assert_eq!(c.problems.len(), 1);
        assert_eq!(c.problems[0].locator, "byte 0");
        assert_eq!(c.problems[0].member, "");
    }

    #[test]
    fn bundle_member_selection() {
        for (path, wanted) in [
            ("files/var/log/auth.log", true),
            ("files/var/log/auth.log.1", true),
            ("files/var/log/secure-20240601", true),
            ("files/var/log/messages.2.gz", true),
            ("files/var/log/syslog", true),
            ("./files/var/log/syslog.1", true),
            ("files/var/log/kern.log", false),
            ("files/var/log/apt/history.log", false),
            ("files/etc/syslog.conf", false),
            ("files/var/logs/auth.log", false),
        ] {
            assert_eq!(is_host_log(path), wanted, "{path}");
        }
    }
}
