//! Tar member names for things custody did not name: host paths and S3 keys.
//!
//! A bundle is exported and unpacked by tools custody does not control, so
//! a member name must be safe for the most naive extractor, and must never
//! make tar-rs refuse the member (which used to end the whole bundle). The
//! source's real name stays in the bundle's `index.json`.
//!
//! [`member_name`] percent-encodes (`%XX`, upper-case hex), and nothing else
//! changes, so every ordinary path and key is its own member name:
//! - `.` and `..` segments (`a/../b` is `a/%2E%2E/b`);
//! - a `/` that would make an empty segment: a leading one, and doubled ones
//!   (`/a//b` is `%2Fa%2F%2Fb`); a single trailing `/` stays;
//! - NUL and other control characters, bytes that are not UTF-8;
//! - `\` and `:`, which Windows extractors read as a separator or a drive;
//! - `%` itself, so the encoding can be undone.
//!
//! Percent-decoding a member name ([`raw_name`]) gives back the original
//! bytes: two different sources never share a member name.

use std::fmt::Write as _;
use std::io::{self, Write};

/// The tar member name for `raw` (a path relative to some directory, or an
/// S3 key), safe to extract anywhere and accepted by tar-rs.
pub fn member_name(raw: &[u8]) -> String {
    let segments: Vec<&[u8]> = raw.split(|&b| b == b'/').collect();
    let mut out = String::with_capacity(raw.len());
    let mut prev_empty: Option<bool> = None;
    let count = segments.len();
    for (i, seg) in segments.into_iter().enumerate() {
        if let Some(prev_empty) = prev_empty {
            // A literal `/` only between two real segments (or as the one
            // trailing `/`): an empty segment is how a key becomes absolute
            // or collapses into another.
            let trailing = i + 1 == count;
            if !prev_empty && (!seg.is_empty() || trailing) {
                out.push('/');
            } else {
                out.push_str("%2F");
            }
        }
        encode_segment(seg, &mut out);
        prev_empty = Some(seg.is_empty());
    }
    out
}

fn encode_segment(seg: &[u8], out: &mut String) {
    if seg == b"." || seg == b".." {
        for _ in seg {
            out.push_str("%2E");
        }
        return;
    }
    for chunk in seg.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c.is_control() || matches!(c, '%' | '\\' | ':') {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    push_byte(b, out);
                }
            } else {
                out.push(c);
            }
        }
        for &b in chunk.invalid() {
            push_byte(b, out);
        }
    }
}

fn push_byte(b: u8, out: &mut String) {
    // Writing to a String cannot fail.
    let _ = write!(out, "%{b:02X}");
}

/// The original bytes of a member name made by [`member_name`].
pub fn raw_name(member: &str) -> Vec<u8> {
    percent_encoding::percent_decode_str(member).collect()
}

/// A name for `index.json` and messages: the name itself when it is UTF-8;
/// otherwise each byte that is not UTF-8 as `\xNN` and `\` as `\\`, with
/// `true` to say it was escaped (so the escape can be undone).
pub fn display_name(raw: &[u8]) -> (String, bool) {
    if let Ok(s) = std::str::from_utf8(raw) {
        return (s.to_owned(), false);
    }
    let mut out = String::with_capacity(raw.len() + 8);
    for chunk in raw.utf8_chunks() {
        out.push_str(&chunk.valid().replace('\\', "\\\\"));
        for &b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02X}");
        }
    }
    (out, true)
}

/// Counts the bytes written through it, so that a member tar refused
/// before writing anything (the bundle is intact: record it, go on) can be
/// told from an output that failed part-way (the bundle is cut: stop).
#[derive(Debug)]
pub struct CountingWriter<W> {
    inner: W,
    written: u64,
}

impl<W: Write> CountingWriter<W> {
    pub fn new(inner: W) -> Self {
        Self { inner, written: 0 }
    }
}

impl<W: Write> Write for CountingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// What became of one member.
#[derive(Debug)]
#[must_use]
pub enum Appended {
    Stored,
    /// Refused before a byte was written: the bundle goes on without it.
    Refused(io::Error),
}

/// Runs one `append*` call on `tar`. An error after bytes were written is
/// returned as an error: the archive is damaged and cannot go on.
pub fn append<W: Write>(
    tar: &mut tar::Builder<CountingWriter<W>>,
    add: impl FnOnce(&mut tar::Builder<CountingWriter<W>>) -> io::Result<()>,
) -> io::Result<Appended> {
    let before = tar.get_ref().written;
    match add(tar) {
        Ok(()) => Ok(Appended::Stored),
        Err(e) if tar.get_ref().written == before => Ok(Appended::Refused(e)),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ordinary_paths_and_keys_are_their_own_member_names() {
        for k in [
            "AWSLogs/111122223333/CloudTrail/us-east-1/2021/06/01/111122223333_CloudTrail_us-east-1_20210601T0800Z_a1.json.gz",
            "var/log/auth.log.2.gz",
            "etc/systemd/system/getty.target.wants/getty@tty1.service",
            "home/ünïcode/.bash_history",
            "logs/2021-06-01-00-00-00-ABCDEF0123456789",
            "prefix/",
        ] {
            assert_eq!(member_name(k.as_bytes()), k);
        }
    }

    #[test]
    fn p2_dot_segments_leading_slash_and_nul_are_encoded() {
        let cases: [(&[u8], &str); 9] = [
            (b"a/b/../x.json", "a/b/%2E%2E/x.json"),
            (b"../../etc/passwd", "%2E%2E/%2E%2E/etc/passwd"),
            (b"a/./b", "a/%2E/b"),
            (b"/etc/passwd", "%2Fetc/passwd"),
            (b"a//b", "a%2F%2Fb"),
            (b"a\0b", "a%00b"),
            (b"..\\..\\C:\\x", "..%5C..%5CC%3A%5Cx"),
            (b"100%", "100%25"),
            (b"auth\xff.log", "auth%FF.log"),
        ];
        for (raw, want) in cases {
            assert_eq!(member_name(raw), want, "{}", raw.escape_ascii());
            assert_eq!(raw_name(want), raw);
        }
    }

    #[test]
    fn display_names_escape_only_what_is_not_utf8() {
        assert_eq!(
            display_name(b"/var/log/a\\b"),
            ("/var/log/a\\b".into(), false)
        );
        assert_eq!(
            display_name(b"/var/log/a\\b\xff"),
            ("/var/log/a\\\\b\\xFF".into(), true)
        );
    }

    #[test]
    fn p2_a_refused_member_leaves_the_bundle_whole() {
        let mut tar = tar::Builder::new(CountingWriter::new(Vec::new()));
        let mut h = tar::Header::new_gnu();
        h.set_size(1);
        let r = append(&mut tar, |t| {
            t.append_data(&mut h.clone(), "a/../b", &b"x"[..])
        });
        assert!(matches!(r, Ok(Appended::Refused(_))), "{r:?}");
        let r = append(&mut tar, |t| t.append_data(&mut h, "ok", &b"y"[..]));
        assert!(matches!(r, Ok(Appended::Stored)), "{r:?}");
        tar.finish().unwrap();
        let bytes = tar.into_inner().unwrap().inner;
        let mut a = tar::Archive::new(&bytes[..]);
        let names: Vec<String> = a
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        assert_eq!(names, ["ok"]);
    }

    proptest! {
        /// Any source name round-trips, and unpacks inside the directory:
        /// no `..`, `.` or empty segment, no leading `/`, no NUL or `\`.
        #[test]
        fn p2_member_names_are_reversible_and_stay_inside(raw in proptest::collection::vec(
            prop_oneof![Just(b'/'), Just(b'.'), Just(b'%'), Just(b'\\'), Just(0u8), Just(0xffu8), any::<u8>()],
            1..40,
        )) {
            let m = member_name(&raw);
            prop_assert_eq!(raw_name(&m), raw.clone());
            prop_assert!(!m.starts_with('/'));
            prop_assert!(!m.contains('\0') && !m.contains('\\') && !m.contains(':'));
            let body = m.strip_suffix('/').unwrap_or(&m);
            for seg in body.split('/') {
                prop_assert!(!seg.is_empty() && seg != "." && seg != "..", "{m:?}");
            }
            let mut tar = tar::Builder::new(Vec::new());
            let mut h = tar::Header::new_gnu();
            h.set_size(0);
            prop_assert!(tar.append_data(&mut h, &m, io::empty()).is_ok(), "{m:?}");
        }
    }
}
