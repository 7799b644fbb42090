//! TSK bodyfiles (version 3, what `fls -m`, custody's `process` and other
//! tools write): one `fs` event per distinct time of each entry, its action
//! saying which of the times it is in mactime's notation (`m.c.` is
//! modified and changed at once), its target the path.

use super::{Record, Sink, problem};
use crate::timeline::Event;

/// The fields after the name: inode, mode, uid, gid, size and four times.
const TAIL: usize = 9;

pub fn bodyfile(bytes: &[u8], sink: &mut dyn Sink) {
    bodyfile_from(bytes, 1, sink);
}

/// Part of a bodyfile whose first line is line `first` of the whole, cut
/// after a newline (the last part may end without one): the rows of a
/// bodyfile loaded as it is written carry the same locators as rows of the
/// whole file. Returns the number of lines the part ends (its newlines).
pub fn bodyfile_from(bytes: &[u8], first: usize, sink: &mut dyn Sink) -> usize {
    for (n, raw) in bytes.split(|&b| b == b'\n').enumerate() {
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        if raw.is_empty() {
            continue;
        }
        let at = format!("line {}", first + n);
        let line = String::from_utf8_lossy(raw);
        match entry(&line) {
            Ok(events) => {
                for mut e in events {
                    e.locator.clone_from(&at);
                    sink.record(e, Record::bytes(raw));
                }
            }
            Err(what) => sink.problem(problem(at, what)),
        }
    }
    bytes.iter().filter(|&&b| b == b'\n').count()
}

/// The events of one line. The name is what lies between the first field
/// and the last nine, so a `|` inside a name (which TSK does not escape)
/// stays in the name.
fn entry(line: &str) -> Result<Vec<Event>, String> {
    let fields: Vec<&str> = line.split('|').collect();
    if fields.len() < TAIL + 2 {
        return Err(format!(
            "not a bodyfile line: {} fields where at least 11 are needed",
            fields.len()
        ));
    }
    let name_end = fields.len() - TAIL;
    let name = fields.get(1..name_end).unwrap_or_default().join("|");
    let tail = fields.get(name_end..).unwrap_or_default();
    let field = |i: usize| tail.get(i).copied().unwrap_or_default();
    let number = |i: usize, what: &str| -> Result<i64, String> {
        let f = field(i).trim();
        // Times may carry a fraction (newer TSK); the timeline keeps µs.
        let whole = f.split('.').next().unwrap_or_default();
        whole
            .parse::<i64>()
            .map_err(|_| format!("the {what} field `{f}` is not a number"))
    };
    let times = [
        ('m', number(6, "mtime")?),
        ('a', number(5, "atime")?),
        ('c', number(7, "ctime")?),
        ('b', number(8, "crtime")?),
    ];
    let (path, deleted) = match name.strip_suffix(" (deleted)") {
        Some(p) => (p.to_owned(), true),
        None => (name.clone(), false),
    };
    let (path, file_name_times) = match path.strip_suffix(" ($FILE_NAME)") {
        Some(p) => (p.to_owned(), true),
        None => (path, false),
    };
    let inode = field(0);
    let mode = field(1);
    let size = field(4);
    let mut seen: Vec<i64> = Vec::with_capacity(4);
    let mut out = Vec::new();
    for (_, t) in times {
        if t == 0 || seen.contains(&t) {
            continue;
        }
        seen.push(t);
        let macb: String = times
            .iter()
            .map(|&(c, v)| if v == t { c } else { '.' })
            .collect();
        let mut e = Event::new(t.saturating_mul(1_000_000), "fs", macb.clone());
        e.target = Some(path.clone());
        e.message = format!("{macb} {path} ({size} bytes, inode {inode}, {mode})");
        if deleted {
            e.outcome = Some("deleted".into());
        }
        // Fields after the name: inode, mode, uid, gid, size, times.
        e.attributes = vec![
            ("inode".into(), inode.to_owned()),
            ("size".into(), size.to_owned()),
            ("mode".into(), mode.to_owned()),
            ("uid".into(), field(2).to_owned()),
        ];
        if file_name_times {
            e.attributes.push(("times".into(), "$FILE_NAME".into()));
        }
        out.push(e);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timeline::parse::Collect;

    #[test]
    fn one_event_per_distinct_time_with_macb_and_deleted_marked() {
        let text = b"0|/etc/passwd|12|r/rrw-r--r--|0|0|1500|100|200|200|50\n\
0|/tmp/a|b (deleted)|13|r/rrw-------|1000|1000|7|300|300|300|300\n\
0|/x ($FILE_NAME)|40|r/rr-xr-xr-x|0|0|1|0|400|0|0\n\
garbage\n";
        let mut c = Collect::default();
        bodyfile(text, &mut c);
        let got: Vec<(i64, &str, &str, Option<&str>)> = c
            .events
            .iter()
            .map(|e| {
                (
                    e.time_us / 1_000_000,
                    e.action.as_str(),
                    e.target.as_deref().unwrap_or(""),
                    e.outcome.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                (200, "m.c.", "/etc/passwd", None),
                (100, ".a..", "/etc/passwd", None),
                (50, "...b", "/etc/passwd", None),
                (300, "macb", "/tmp/a|b", Some("deleted")),
                (400, "m...", "/x", None),
            ]
        );
        assert_eq!(c.events[0].attribute("inode"), Some("12"));
        assert_eq!(c.events[0].attribute("size"), Some("1500"));
        assert_eq!(c.events[3].attribute("uid"), Some("1000"));
        assert_eq!(c.events[4].attribute("times"), Some("$FILE_NAME"));
        assert_eq!(c.problems.len(), 1);
        assert_eq!(c.problems[0].locator, "line 4");
    }
}
