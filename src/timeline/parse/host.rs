//! Host text logs, alone or inside a host triage bundle.
//!
//! Each line is read by its own shape, so a file that changed format
//! (rsyslog reconfigured) reads whole:
//!
//! - RFC 3164, the traditional `Jun  1 08:00:01 HOST PROGRAM[PID]: TEXT`:
//!   no year (chosen per file, see [`super::yearless`]), no zone (UTC
//!   assumed);
//! - RFC 3339 at the start (rsyslog's high-precision format,
//!   `2024-05-30T22:14:03.118204+00:00 HOST PROGRAM[PID]: TEXT`);
//! - RFC 5424 (`<PRI>1 TIMESTAMP HOST APP PROCID MSGID [SD] MSG`, as
//!   rsyslog's `RSYSLOG_SyslogProtocol23Format` writes it), with its
//!   facility, severity, message id and structured data as attributes;
//! - either of the first two behind a `<PRI>`.

use std::cell::Cell;
use std::io::{self, Read};

use super::yearless::{Stamp, Years};
use super::{FileContext, Format, Record, Sink, parse_with, problem, time_us};
use crate::timeline::{Event, Problem};

const HOST: &str = "host";

/// Where the triage bundle keeps copies of the host's files.
const LOG_DIR: &str = "files/var/log/";
/// The text logs read from the bundle, rotated copies included (`auth.log.1`,
/// `secure-20240601`, `syslog.2.gz`).
const LOG_NAMES: [&str; 4] = ["auth.log", "secure", "syslog", "messages"];

/// A syslog text log, one event a line, each line read by its own shape
/// (see the module's documentation). The years of RFC 3164 lines come
/// from `ctx` ([`FileContext::yearless_bound_us`]).
pub fn syslog(bytes: &[u8], ctx: &FileContext, sink: &mut dyn Sink) {
    // First pass: the yearless stamps alone, for their years.
    let stamps = raw_lines(bytes).filter_map(|(_, _, line)| {
        let (_, rest) = pri(&line);
        bsd_stamp(rest).map(|(s, _)| s)
    });
    let mut years = Years::new(ctx, stamps);
    for (i, raw, line) in raw_lines(bytes) {
        let locator = format!("line {}", i + 1);
        if line.is_empty() {
            // A crash or a copy taken mid-write leaves runs of NULs: a gap
            // worth reporting, not a line to drop.
            if raw.contains(&0) {
                sink.problem(problem(locator, "only NUL bytes: the log has a gap here"));
            }
            continue;
        }
        match syslog_line(&line, &mut years) {
            Ok(mut e) => {
                e.locator = locator;
                sink.record(e, Record::bytes(raw));
            }
            Err(why) => sink.problem(problem(locator, why)),
        }
    }
}

/// The file's lines: index, raw bytes, and text trimmed of whitespace and NULs.
fn raw_lines(bytes: &[u8]) -> impl Iterator<Item = (usize, &[u8], std::borrow::Cow<'_, str>)> {
    bytes.split(|&b| b == b'\n').enumerate().map(|(i, raw)| {
        let text = match String::from_utf8_lossy(raw) {
            std::borrow::Cow::Borrowed(t) => std::borrow::Cow::Borrowed(trim(t)),
            std::borrow::Cow::Owned(t) => std::borrow::Cow::Owned(trim(&t).to_owned()),
        };
        (i, raw, text)
    })
}

fn trim(t: &str) -> &str {
    t.trim_matches(|c: char| c.is_whitespace() || c == '\0')
}

/// The host triage bundle (a tar): every auth.log, secure, syslog and
/// messages file under `files/var/log/`, gzip-rotated ones included. Each
/// member is dated with its own modification time from the bundle.
pub fn bundle(bytes: &[u8], ctx: &FileContext, sink: &mut dyn Sink) {
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
        let member_ctx = ctx.member(entry.header().mtime().ok());
        let mut data = Vec::new();
        let read = entry.read_to_end(&mut data);
        parse_with(Format::Syslog, &last, &data, &member_ctx, sink);
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

fn syslog_line(line: &str, years: &mut Years) -> Result<Event, String> {
    let (pri, rest) = pri(line);
    if let Some(pri) = pri
        && let Some(after) = rest.strip_prefix("1 ")
    {
        return rfc5424(line, pri, after);
    }
    let (t, rest) = timestamp(rest, years)?;
    let rest = rest.trim_start();
    let (host, rest) = rest.split_once(' ').unwrap_or((rest, ""));
    if host.is_empty() {
        return Err("nothing after the timestamp".into());
    }
    let (program, pid, text) = tag(rest.trim_start());
    let mut e = Event::new(t, HOST, program.unwrap_or("syslog"));
    e.message = line.to_owned();
    e.attributes.push(("host".into(), host.to_owned()));
    if let Some(p) = pri {
        push_pri(&mut e, p);
    }
    if let Some(p) = program {
        e.attributes.push(("program".into(), p.to_owned()));
    }
    if let Some(p) = pid {
        e.attributes.push(("pid".into(), p.to_owned()));
    }
    recognise(&mut e, program, text);
    Ok(e)
}

/// What the programs custody knows say, into actor, action and target.
fn recognise(e: &mut Event, program: Option<&str>, text: &str) {
    match program {
        // OpenSSH 9.8 logs sessions as `sshd-session`.
        Some("sshd" | "sshd-session") => sshd(e, text),
        Some("sudo") => sudo(e, text),
        Some("su") => su(e, text),
        Some("useradd") => useradd(e, text),
        _ => {}
    }
}

/// `<PRI>` at the start of a line (0 to 191), and what follows it.
fn pri(line: &str) -> (Option<u8>, &str) {
    let parsed = line.strip_prefix('<').and_then(|rest| {
        let (digits, after) = rest.split_once('>')?;
        let ok = (1..=3).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit());
        let n: u8 = digits.parse().ok().filter(|&n| ok && n <= 191)?;
        Some((n, after))
    });
    match parsed {
        Some((n, after)) => (Some(n), after),
        None => (None, line),
    }
}

const FACILITIES: [&str; 24] = [
    "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron", "authpriv",
    "ftp", "ntp", "security", "console", "clock", "local0", "local1", "local2", "local3", "local4",
    "local5", "local6", "local7",
];
const SEVERITIES: [&str; 8] = [
    "emerg", "alert", "crit", "err", "warning", "notice", "info", "debug",
];

/// A priority as its facility and severity (RFC 5424, 6.2.1).
fn push_pri(e: &mut Event, pri: u8) {
    let name = |names: &[&str], i: u8| {
        names
            .get(usize::from(i))
            .map_or_else(|| i.to_string(), |n| (*n).to_owned())
    };
    e.attributes
        .push(("facility".into(), name(&FACILITIES, pri / 8)));
    e.attributes
        .push(("severity".into(), name(&SEVERITIES, pri % 8)));
}

/// An RFC 5424 message after its `<PRI>1 `: `TIMESTAMP HOSTNAME APP-NAME
/// PROCID MSGID STRUCTURED-DATA [MSG]`, `-` for a value not given.
fn rfc5424(line: &str, pri: u8, rest: &str) -> Result<Event, String> {
    let mut fields = rest.splitn(6, ' ');
    let mut next = |name: &str| {
        fields
            .next()
            .filter(|f| !f.is_empty())
            .ok_or_else(|| format!("an RFC 5424 line without its {name}"))
    };
    let stamp = next("TIMESTAMP")?;
    let host = next("HOSTNAME")?;
    let app = next("APP-NAME")?;
    let procid = next("PROCID")?;
    let msgid = next("MSGID")?;
    let rest = fields.next().unwrap_or_default();
    let nil = |v: &str| (v != "-").then(|| v.to_owned());
    if stamp == "-" {
        return Err("an RFC 5424 line without a time (its TIMESTAMP is `-`)".into());
    }
    let t = time_us(stamp)
        .filter(|_| stamp.contains('T'))
        .ok_or_else(|| format!("the RFC 5424 TIMESTAMP {stamp:?} is not an RFC 3339 time"))?;
    let (sd, msg) = structured_data(rest)?;
    // MSG may open with a UTF-8 byte order mark (MSG-UTF8).
    let msg = msg.strip_prefix('\u{feff}').unwrap_or(msg);
    let app = nil(app);
    let mut e = Event::new(t, HOST, app.as_deref().unwrap_or("syslog"));
    e.message = line.replacen('\u{feff}', "", 1);
    let a = &mut e.attributes;
    if let Some(h) = nil(host) {
        a.push(("host".into(), h));
    }
    push_pri(&mut e, pri);
    let a = &mut e.attributes;
    if let Some(p) = &app {
        a.push(("program".into(), p.clone()));
    }
    if let Some(p) = nil(procid) {
        a.push(("pid".into(), p));
    }
    if let Some(m) = nil(msgid) {
        a.push(("msgid".into(), m));
    }
    if let Some(offset) = utc_offset(stamp) {
        a.push(("utc_offset".into(), offset.to_owned()));
    }
    for (id, params) in sd {
        if params.is_empty() {
            a.push((format!("sd.{id}"), String::new()));
        }
        for (name, value) in params {
            let key = format!("sd.{id}.{name}");
            // A parameter may repeat (RFC 5424, 6.3.3): its values joined.
            match a.iter_mut().find(|(k, _)| *k == key) {
                Some((_, v)) => {
                    v.push_str(", ");
                    v.push_str(&value);
                }
                None => a.push((key, value)),
            }
        }
    }
    recognise(&mut e, app.as_deref(), msg);
    Ok(e)
}

/// The offset of an RFC 3339 time other than UTC: `+02:00`.
fn utc_offset(stamp: &str) -> Option<&str> {
    let at = stamp.len().checked_sub(6)?;
    let offset = stamp.get(at..)?;
    let b = offset.as_bytes();
    (matches!(b.first(), Some(b'+' | b'-'))
        && b.get(3) == Some(&b':')
        && offset != "+00:00"
        && offset != "-00:00")
        .then_some(offset)
}

/// One structured-data element: its SD-ID and its parameters, values unescaped.
type SdElement = (String, Vec<(String, String)>);

/// STRUCTURED-DATA (`-`, or `[id p="v" ...]...`) and the MSG after it.
fn structured_data(rest: &str) -> Result<(Vec<SdElement>, &str), String> {
    if let Some(msg) = rest.strip_prefix('-') {
        return Ok((Vec::new(), msg.strip_prefix(' ').unwrap_or(msg)));
    }
    let mut out = Vec::new();
    let mut s = rest;
    while let Some(inner) = s.strip_prefix('[') {
        let id_end = inner
            .find([' ', ']'])
            .ok_or("structured data whose element is not closed by `]`")?;
        let (id, mut r) = inner.split_at(id_end);
        if id.is_empty() {
            return Err("structured data with an element without an SD-ID".into());
        }
        let mut params = Vec::new();
        loop {
            if let Some(after) = r.strip_prefix(']') {
                s = after;
                break;
            }
            r = r
                .strip_prefix(' ')
                .ok_or_else(|| format!("structured data element [{id}: expected a space or `]`"))?;
            let (name, after) = r.split_once("=\"").ok_or_else(|| {
                format!("structured data element [{id}: a parameter without =\"value\"")
            })?;
            let (value, after) = sd_value(after).ok_or_else(|| {
                format!("structured data element [{id}: the value of {name} is not closed")
            })?;
            params.push((name.to_owned(), value));
            r = after;
        }
        out.push((id.to_owned(), params));
    }
    if out.is_empty() {
        return Err("an RFC 5424 line whose STRUCTURED-DATA is neither `-` nor `[...]`".into());
    }
    Ok((out, s.strip_prefix(' ').unwrap_or(s)))
}

/// A PARAM-VALUE up to its closing quote, with `\"`, `\\` and `\]`
/// unescaped (a backslash before any other character stays, as RFC 5424
/// 6.3.3 says), and what follows the quote.
fn sd_value(s: &str) -> Option<(String, &str)> {
    let mut out = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((out, s.get(i + 1..)?)),
            '\\' => match chars.next() {
                Some((_, e @ ('"' | '\\' | ']'))) => out.push(e),
                Some((_, other)) => {
                    out.push('\\');
                    out.push(other);
                }
                None => return None,
            },
            _ => out.push(c),
        }
    }
    None
}

/// The line's time and what follows it.
fn timestamp<'a>(line: &'a str, years: &mut Years) -> Result<(i64, &'a str), String> {
    const NONE: &str = "no readable timestamp at the start of the line";
    if line.as_bytes().first().is_some_and(u8::is_ascii_digit) {
        let (first, rest) = line.split_once(' ').unwrap_or((line, ""));
        // A date alone is not this format's timestamp.
        if !first.contains('T') {
            return Err(NONE.into());
        }
        return Ok((time_us(first).ok_or(NONE)?, rest));
    }
    let (stamp, rest) = bsd_stamp(line).ok_or(NONE)?;
    let t = years
        .date(stamp)
        .map_err(|year| format!("February 29 in {year}, a year without one"))?;
    Ok((t, rest))
}

/// An RFC 3164 timestamp (`Jun  1 08:00:01`, the day space-padded) and
/// what follows it.
fn bsd_stamp(line: &str) -> Option<(Stamp, &str)> {
    let month = super::month_abbr(line.get(..3)?)?;
    let rest = line.get(3..)?.strip_prefix(' ')?.trim_start_matches(' ');
    let (day, rest) = rest.split_once(' ')?;
    let (clock, rest) = rest.split_once(' ').unwrap_or((rest, ""));
    let mut hms = clock.split(':').map(str::parse::<u8>);
    let (Some(Ok(h)), Some(Ok(m)), Some(Ok(s)), None) =
        (hms.next(), hms.next(), hms.next(), hms.next())
    else {
        return None;
    };
    Some((Stamp::new(month, day.parse().ok()?, h, m, s)?, rest))
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

    fn hint(year: i32) -> FileContext {
        FileContext {
            year_hint: year,
            ..FileContext::default()
        }
    }

    fn parse(bytes: &[u8]) -> Collect {
        let mut c = Collect::default();
        syslog(bytes, &hint(2024), &mut c);
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
        syslog(&fixture("auth-iso.log"), &hint(1999), &mut other);
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
        bundle(&tar, &hint(2024), &mut c);
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
        bundle(&tar[..line6], &hint(2024), &mut c);
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
        bundle(&tar[..shadow + 100], &hint(2024), &mut c);
        assert_eq!(c.events.len(), 5 + 16);
        assert_eq!(c.problems.len(), 1);
        assert_eq!(c.problems[0].member, "files/var/log/auth.log");
        assert_eq!(c.problems[0].locator, format!("byte {}", shadow + 100));

        // Cut cleanly between members: no end-of-archive block.
        let mut c = Collect::default();
        bundle(&tar[..shadow], &hint(2024), &mut c);
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
        bundle(b"", &hint(2024), &mut c);
        assert_eq!(c.events, vec![]);
        assert_eq!(c.problems.len(), 1);
        assert_eq!(c.problems[0].locator, "byte 0");
        assert_eq!(c.problems[0].member, "");
    }

    #[test]
    fn rfc5424_lines_with_nil_values_structured_data_and_a_bom() {
        let bytes = fixture("syslog-rfc5424.log");
        let c = parse(&bytes);
        assert_eq!(
            c.problems,
            vec![problem(
                "line 5",
                "an RFC 5424 line without a time (its TIMESTAMP is `-`)"
            )]
        );
        assert_eq!(c.events.len(), 6);
        let invalid = &c.events[0];
        assert_eq!(invalid.time_us, us("2024-06-01T08:02:13.251122Z"));
        assert_eq!(invalid.action, "sshd.invalid_user");
        assert_eq!(invalid.actor.as_deref(), Some("admin"));
        assert_eq!(invalid.ip, "203.0.113.12".parse().ok());
        assert_eq!(
            attrs(invalid),
            [
                ("host", "web01"),
                ("facility", "auth"),
                ("severity", "info"),
                ("program", "sshd"),
                ("pid", "2188"),
                ("port", "51522"),
            ]
        );
        // The zone and the fraction are the line's own.
        let accepted = &c.events[1];
        assert_eq!(accepted.time_us, us("2024-06-01T06:03:02.000512Z"));
        assert_eq!(accepted.action, "sshd.accepted");
        assert_eq!(accepted.attribute("facility"), Some("authpriv"));
        assert_eq!(accepted.attribute("utc_offset"), Some("+02:00"));
        assert_eq!(accepted.attribute("sd.timeQuality.tzKnown"), Some("1"));
        assert_eq!(
            accepted.attribute("sd.timeQuality.syncAccuracy"),
            Some("125000")
        );
        // The BOM before MSG is not part of the text sudo's line is read from.
        let sudo = &c.events[2];
        assert_eq!(sudo.action, "sudo");
        assert_eq!(sudo.actor.as_deref(), Some("alice"));
        assert_eq!(sudo.target.as_deref(), Some("/usr/bin/id"));
        assert_eq!(sudo.attribute("severity"), Some("notice"));
        assert_eq!(sudo.attribute("sd.origin.ip"), Some("10.0.1.25"));
        assert_eq!(sudo.attribute("sd.meta.sequenceId"), Some("7"));
        assert!(!sudo.message.contains('\u{feff}'));
        // Nil host, app and pid; escapes in a parameter value undone.
        let app = &c.events[3];
        assert_eq!(app.time_us, us("2024-06-01T08:06:00.1Z"));
        assert_eq!(app.action, "syslog");
        assert_eq!(app.attribute("host"), None);
        assert_eq!(app.attribute("pid"), None);
        assert_eq!(app.attribute("msgid"), Some("ID47"));
        assert_eq!(app.attribute("facility"), Some("local4"));
        assert_eq!(
            app.attribute("sd.exampleSDID@32473.note"),
            Some(r#"a "quoted" value, a ] bracket, a \ backslash"#)
        );
        assert_eq!(app.attribute("sd.exampleSDID@32473.iut"), Some("3"));
        // No structured data and no MSG.
        let su = &c.events[4];
        assert_eq!(su.locator, "line 6");
        assert_eq!(su.action, "su");
        assert_eq!(su.attribute("severity"), Some("crit"));
        // RFC 3164 behind a PRI, detected on its own line.
        let cron = &c.events[5];
        assert_eq!(cron.time_us, us("2024-06-01T08:08:00Z"));
        assert_eq!(cron.action, "CRON");
        assert_eq!(cron.attribute("facility"), Some("user"));
        assert_eq!(cron.attribute("pid"), Some("2300"));
    }

    #[test]
    fn rfc5424_damage_is_a_problem_naming_it() {
        let c = parse(
            b"<13>1 2024-06-01T08:00:00Z h app - - [x a=\"open\n\
              <13>1 2024-06-01T08:00:00Z h app - - [x a] text\n\
              <13>1 yesterday h app - - - text\n\
              <13>1 2024-06-01T08:00:00Z h app\n\
              <13>1 2024-06-01T08:00:00Z h app - - oops text\n\
              <13>1 2024-06-01T08:00:00Z h app - - - fine\n",
        );
        let why: Vec<(&str, &str)> = c
            .problems
            .iter()
            .map(|p| (p.locator.as_str(), p.message.as_str()))
            .collect();
        assert_eq!(
            why,
            [
                (
                    "line 1",
                    "structured data element [x: the value of a is not closed"
                ),
                (
                    "line 2",
                    "structured data element [x: a parameter without =\"value\""
                ),
                (
                    "line 3",
                    "the RFC 5424 TIMESTAMP \"yesterday\" is not an RFC 3339 time"
                ),
                ("line 4", "an RFC 5424 line without its PROCID"),
                (
                    "line 5",
                    "an RFC 5424 line whose STRUCTURED-DATA is neither `-` nor `[...]`"
                ),
            ]
        );
        assert_eq!(c.events.len(), 1);
        assert_eq!(c.events[0].locator, "line 6");
    }

    fn collected(at: &str) -> FileContext {
        FileContext {
            year_hint: 1999,
            modified_us: None,
            collected_us: Some(us(at)),
        }
    }

    fn times(c: &Collect) -> Vec<i64> {
        c.events.iter().map(|e| e.time_us).collect()
    }

    #[test]
    fn a_december_log_collected_next_december_is_dated_this_december() {
        let log = b"Dec 10 08:00:00 web01 sshd[1]: Accepted publickey for alice from 198.51.100.23 port 1 ssh2\n\
                    Dec 28 23:00:00 web01 sshd[2]: Accepted publickey for alice from 198.51.100.23 port 2 ssh2\n";
        let mut c = Collect::default();
        syslog(log, &collected("2026-12-02T09:00:00Z"), &mut c);
        assert_eq!(c.problems, vec![]);
        assert_eq!(
            times(&c),
            [us("2025-12-10T08:00:00Z"), us("2025-12-28T23:00:00Z")]
        );
        // The file's modification time, earlier than the collection, bounds it too.
        let ctx = FileContext {
            modified_us: Some(us("2025-01-01T00:00:00Z")),
            ..collected("2026-12-30T00:00:00Z")
        };
        let mut c = Collect::default();
        syslog(log, &ctx, &mut c);
        assert_eq!(times(&c)[0], us("2024-12-10T08:00:00Z"));
    }

    #[test]
    fn a_log_across_new_year_gets_two_years_and_small_steps_back_none() {
        let log = b"Dec 30 23:59:58 web01 CRON[1]: a\n\
                    Dec 30 23:59:59 web01 CRON[1]: b\n\
                    Dec 30 23:59:57 web01 CRON[1]: written out of order\n\
                    Dec 31 12:00:00 web01 CRON[1]: c\n\
                    Jan  1 00:00:01 web01 CRON[1]: d\n\
                    Jan  2 06:00:00 web01 CRON[1]: e\n";
        let mut c = Collect::default();
        syslog(log, &collected("2026-01-05T00:00:00Z"), &mut c);
        assert_eq!(c.problems, vec![]);
        assert_eq!(
            times(&c),
            [
                us("2025-12-30T23:59:58Z"),
                us("2025-12-30T23:59:59Z"),
                us("2025-12-30T23:59:57Z"),
                us("2025-12-31T12:00:00Z"),
                us("2026-01-01T00:00:01Z"),
                us("2026-01-02T06:00:00Z"),
            ]
        );
    }

    #[test]
    fn bundle_members_are_dated_by_their_own_modification_time() {
        let log: &[u8] = b"Dec 31 10:00:00 web01 CRON[1]: a\nJan  2 10:00:00 web01 CRON[1]: b\n";
        let mut b = tar::Builder::new(Vec::new());
        for (path, mtime) in [
            ("files/var/log/syslog.2", 1_735_900_000u64), // 2025-01-03
            ("files/var/log/syslog", 0),                  // none kept
        ] {
            let mut h = tar::Header::new_gnu();
            h.set_size(log.len() as u64);
            h.set_mode(0o444);
            h.set_mtime(mtime);
            h.set_entry_type(tar::EntryType::Regular);
            b.append_data(&mut h, path, log).unwrap();
        }
        let tar = b.into_inner().unwrap();
        let mut c = Collect::default();
        bundle(&tar, &collected("2026-06-01T00:00:00Z"), &mut c);
        assert_eq!(c.problems, vec![]);
        assert_eq!(
            times(&c),
            [
                us("2024-12-31T10:00:00Z"),
                us("2025-01-02T10:00:00Z"),
                // Without a modification time, the collection bounds it.
                us("2025-12-31T10:00:00Z"),
                us("2026-01-02T10:00:00Z"),
            ]
        );
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
