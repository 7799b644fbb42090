//! The Sleuth Kit's bodyfile (version 3), what `mactime`, Timesketch and
//! Plaso read: `MD5|name|inode|mode|UID|GID|size|atime|mtime|ctime|crtime`,
//! times in whole seconds, 0 where none is kept.

use std::io::{self, Write};

use super::walk::Record;
use super::{Kind, Times};

/// `rwxr-xr-x` with setuid, setgid and sticky as `ls` shows them.
fn perms(mode: u32) -> String {
    let bit = |m: u32, c: char| if mode & m != 0 { c } else { '-' };
    let special = |x: bool, special: u32, lower: char, upper: char| match (mode & special != 0, x) {
        (true, true) => lower,
        (true, false) => upper,
        (false, true) => 'x',
        (false, false) => '-',
    };
    [
        bit(0o400, 'r'),
        bit(0o200, 'w'),
        special(mode & 0o100 != 0, 0o4000, 's', 'S'),
        bit(0o040, 'r'),
        bit(0o020, 'w'),
        special(mode & 0o010 != 0, 0o2000, 's', 'S'),
        bit(0o004, 'r'),
        bit(0o002, 'w'),
        special(mode & 0o001 != 0, 0o1000, 't', 'T'),
    ]
    .iter()
    .collect()
}

/// A name as TSK prints it: control characters as `^`, and `|` too, so
/// that no name can add a field or a line.
pub fn clean_name(name: &[u8]) -> String {
    String::from_utf8_lossy(name)
        .chars()
        .map(|c| if c.is_control() || c == '|' { '^' } else { c })
        .collect()
}

fn secs(t: Option<super::Time>) -> i64 {
    t.map_or(0, |t| t.secs)
}

/// The line (without its newline) for one record, and for an NTFS node the
/// `($FILE_NAME)` line after it.
pub fn lines(r: &Record) -> Vec<String> {
    let name_kind = r.entry_kind.or(r.node.as_ref().map(|n| n.kind));
    let name_letter = name_kind.map_or('-', Kind::letter);
    let mut name = clean_name(&r.path);
    if let Some(target) = &r.link {
        name.push_str(" -> ");
        name.push_str(&clean_name(target));
    }
    // A deleted name whose node is in use again names someone else's file
    // now: TSK's word for it.
    let realloc = !r.orphan && r.node.as_ref().is_some_and(|n| n.allocated);
    let deleted = match (r.deleted, realloc) {
        (false, _) => "",
        (true, false) => " (deleted)",
        (true, true) => " (deleted-realloc)",
    };
    let Some(n) = &r.node else {
        return vec![format!(
            "0|{name}|{}|{name_letter}/----------|0|0|0|0|0|0|0",
            r.id
        )];
    };
    let mode = format!("{name_letter}/{}{}", n.kind.letter(), perms(n.mode));
    let line = |name: &str, t: &Times| {
        format!(
            "0|{name}|{}|{mode}|{}|{}|{}|{}|{}|{}|{}",
            n.id,
            n.uid,
            n.gid,
            n.size,
            secs(t.accessed),
            secs(t.modified),
            secs(t.changed),
            secs(t.born),
        )
    };
    let mut out = vec![line(&format!("{name}{deleted}"), &n.times)];
    if let Some(t) = &n.name_times {
        out.push(line(&format!("{name} ($FILE_NAME){deleted}"), t));
    }
    out
}

/// Writes `records` as a bodyfile.
pub fn write(out: &mut dyn Write, r: &Record) -> io::Result<()> {
    for line in lines(r) {
        out.write_all(line.as_bytes())?;
        out.write_all(b"\n")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::{Node, Time};

    #[test]
    fn permissions_read_as_ls_shows_them() {
        assert_eq!(perms(0o644), "rw-r--r--");
        assert_eq!(perms(0o4755), "rwsr-xr-x");
        assert_eq!(perms(0o2644), "rw-r-Sr--");
        assert_eq!(perms(0o1777), "rwxrwxrwt");
    }

    #[test]
    fn a_hostile_name_cannot_add_a_field_or_a_line() {
        let r = Record {
            path: b"/a|b\nc".to_vec(),
            id: 12,
            entry_kind: Some(Kind::File),
            node: Some(Node {
                id: 12,
                kind: Kind::File,
                mode: 0o644,
                uid: 1,
                gid: 2,
                size: 3,
                links: 1,
                allocated: false,
                times: Times {
                    accessed: Some(Time::new(4, 0)),
                    modified: Some(Time::new(5, 0)),
                    changed: Some(Time::new(6, 0)),
                    born: None,
                    deleted: Some(Time::new(7, 0)),
                },
                name_times: None,
            }),
            deleted: true,
            orphan: false,
            link: None,
        };
        assert_eq!(
            lines(&r),
            ["0|/a^b^c (deleted)|12|r/rrw-r--r--|1|2|3|4|5|6|0"]
        );
    }
}
