//! A fast reader of an entry's top-level fields, for verifying a whole log
//! without a full JSON parse of every line. It walks the object once,
//! skipping nested values, and takes `action`, `case`, `prev` and `time`.
//! Anything it does not understand is an error; the caller then falls back
//! to the full parser, so it can only be faster, never more lenient.

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Fields<'a> {
    pub action: Option<&'a str>,
    pub case: Option<&'a str>,
    pub prev: Option<u64>,
    pub time: Option<&'a str>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("entry is not a JSON object this reader understands (at byte {0})")]
pub struct ScanError(pub usize);

struct Cursor<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn expect(&mut self, c: u8) -> Result<(), ScanError> {
        if self.peek() == Some(c) {
            self.i += 1;
            Ok(())
        } else {
            Err(ScanError(self.i))
        }
    }

    /// The raw bytes of a string (between its quotes) and whether it holds escapes.
    fn raw_string(&mut self) -> Result<(&'a [u8], bool), ScanError> {
        self.expect(b'"')?;
        let start = self.i;
        let rest = self.b.get(start..).unwrap_or_default();
        let (len, escaped) = string_len(rest).ok_or(ScanError(start))?;
        let s = rest.get(..len).ok_or(ScanError(start))?;
        self.i = start + len + 1;
        Ok((s, escaped))
    }

    /// A string value without escapes, as UTF-8.
    fn plain_string(&mut self) -> Result<&'a str, ScanError> {
        let at = self.i;
        match self.raw_string()? {
            (s, false) => std::str::from_utf8(s).map_err(|_| ScanError(at)),
            (_, true) => Err(ScanError(at)),
        }
    }

    fn skip_value(&mut self) -> Result<(), ScanError> {
        let rest = self.b.get(self.i..).unwrap_or_default();
        let n = match rest.first() {
            Some(b'"') => {
                self.raw_string()?;
                return Ok(());
            }
            Some(b'{') | Some(b'[') => nested_len(rest),
            Some(_) => rest
                .iter()
                .position(|&c| matches!(c, b',' | b'}' | b']'))
                .filter(|&n| n > 0),
            None => None,
        };
        self.i += n.ok_or(ScanError(self.i))?;
        Ok(())
    }

    fn number(&mut self) -> Result<u64, ScanError> {
        let start = self.i;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.i += 1;
        }
        let digits = self.b.get(start..self.i).ok_or(ScanError(start))?;
        std::str::from_utf8(digits)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or(ScanError(start))
    }
}

/// Unix nanoseconds of an RFC 3339 UTC time as custody writes it
/// (`YYYY-MM-DDTHH:MM:SS[.f…]Z`); `None` for any other form.
pub fn fast_time(t: &str) -> Option<i128> {
    let b = t.as_bytes();
    let num = |from: usize, len: usize| -> Option<i64> {
        let d = b.get(from..from + len)?;
        d.iter().try_fold(0i64, |acc, &c| {
            c.is_ascii_digit().then(|| acc * 10 + i64::from(c - b'0'))
        })
    };
    if b.get(4) != Some(&b'-')
        || b.get(7) != Some(&b'-')
        || b.get(10) != Some(&b'T')
        || b.get(13) != Some(&b':')
        || b.get(16) != Some(&b':')
        || b.last() != Some(&b'Z')
    {
        return None;
    }
    let (y, mo, d, h, mi, s) = (
        num(0, 4)?,
        num(5, 2)?,
        num(8, 2)?,
        num(11, 2)?,
        num(14, 2)?,
        num(17, 2)?,
    );
    let frac = match b.get(19) {
        Some(b'.') => {
            let digits = b.get(20..b.len() - 1)?;
            if digits.is_empty() || digits.len() > 9 {
                return None;
            }
            let v = num(20, digits.len())?;
            v * 10i64.pow(9 - digits.len() as u32)
        }
        Some(b'Z') if b.len() == 20 => 0,
        _ => return None,
    };
    let month = time::Month::try_from(u8::try_from(mo).ok()?).ok()?;
    let date = time::Date::from_calendar_date(i32::try_from(y).ok()?, month, u8::try_from(d).ok()?)
        .ok()?;
    let tod = time::Time::from_hms(
        u8::try_from(h).ok()?,
        u8::try_from(mi).ok()?,
        u8::try_from(s).ok()?,
    )
    .ok()?;
    Some(date.with_time(tod).assume_utc().unix_timestamp_nanos() + i128::from(frac))
}

/// Length of a string's body (up to its closing quote) and whether it has escapes.
fn string_len(b: &[u8]) -> Option<(usize, bool)> {
    let mut escaped = false;
    let mut skip = false;
    for (k, &c) in b.iter().enumerate() {
        if skip {
            skip = false;
        } else if c == b'\\' {
            escaped = true;
            skip = true;
        } else if c == b'"' {
            return Some((k, escaped));
        }
    }
    None
}

/// Length of an object or array starting at `b[0]`, through its closing bracket.
fn nested_len(b: &[u8]) -> Option<usize> {
    let mut depth = 0usize;
    let (mut in_string, mut skip) = (false, false);
    for (k, &c) in b.iter().enumerate() {
        if in_string {
            if skip {
                skip = false;
            } else if c == b'\\' {
                skip = true;
            } else if c == b'"' {
                in_string = false;
            }
            continue;
        }
        match c {
            b'"' => in_string = true,
            b'{' | b'[' => depth += 1,
            b'}' | b']' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(k + 1);
                }
            }
            _ => {}
        }
    }
    None
}

/// The fields of a canonical custody entry found by their places in it,
/// without walking it: keys are sorted, `v` is last, and a JSON string cannot
/// hold an unescaped quote, so `},"case":"` or `,"prev":` can only be
/// structure. `None` when the line does not have the expected shape; the
/// caller then walks it.
fn by_position(line: &[u8]) -> Option<Fields<'_>> {
    use std::sync::LazyLock;

    use memchr::memmem::{Finder, FinderRev};
    // Built once: constructing a searcher costs more than searching one entry.
    static REASON: LazyLock<FinderRev<'static>> =
        LazyLock::new(|| FinderRev::new(b",\"reason\":{"));
    static CASE: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"},\"case\":\""));
    static DETAIL: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b",\"detail\":"));
    let rest = line.strip_prefix(b"{\"action\":\"")?;
    let action = rest.get(..memchr::memchr(b'"', rest)?)?;
    // `time` is the last key before `v`: its value ends the line.
    let body = line.strip_suffix(b"\",\"v\":1}")?;
    let q = memchr::memrchr(b'"', body)?;
    let t = q.checked_sub(8)?;
    if body.get(t..=q)? != b",\"time\":\"" {
        return None;
    }
    let time = body.get(q + 1..)?;
    // `reason` is the last object before `time`; `prev`, when present, sits just before it.
    let r = REASON.rfind(body.get(..t)?)?;
    let before = body.get(..r)?;
    let digits = before
        .iter()
        .rev()
        .take_while(|c| c.is_ascii_digit())
        .count();
    let prev = if digits > 0
        && before
            .get(..before.len() - digits)?
            .ends_with(b",\"prev\":")
    {
        Some(
            std::str::from_utf8(before.get(before.len() - digits..)?)
                .ok()?
                .parse()
                .ok()?,
        )
    } else {
        None
    };
    // `case` follows the `actor` object; inside `detail` (which comes later) it would follow `detail`.
    let case = match CASE.find(line) {
        Some(c) if DETAIL.find(line).is_none_or(|d| c < d) => {
            let v = line.get(c + 10..)?;
            let v = v.get(..memchr::memchr(b'"', v)?)?;
            if v.contains(&b'\\') {
                return None;
            }
            Some(std::str::from_utf8(v).ok()?)
        }
        _ => None,
    };
    Some(Fields {
        action: Some(std::str::from_utf8(action).ok()?),
        case,
        prev,
        time: Some(std::str::from_utf8(time).ok()?),
    })
}

pub fn scan(line: &[u8]) -> Result<Fields<'_>, ScanError> {
    if let Some(f) = by_position(line) {
        return Ok(f);
    }
    walk(line)
}

/// Walks the top-level object, skipping nested values.
fn walk(line: &[u8]) -> Result<Fields<'_>, ScanError> {
    let mut c = Cursor { b: line, i: 0 };
    let mut f = Fields::default();
    c.expect(b'{')?;
    if c.peek() == Some(b'}') {
        c.i += 1;
    } else {
        loop {
            let (key, _) = c.raw_string()?;
            c.expect(b':')?;
            match key {
                b"action" => f.action = Some(c.plain_string()?),
                b"case" => f.case = Some(c.plain_string()?),
                b"time" => f.time = Some(c.plain_string()?),
                b"prev" => f.prev = Some(c.number()?),
                _ => c.skip_value()?,
            }
            match c.peek() {
                Some(b',') => c.i += 1,
                Some(b'}') => {
                    c.i += 1;
                    break;
                }
                _ => return Err(ScanError(c.i)),
            }
        }
    }
    if c.i != line.len() {
        return Err(ScanError(c.i));
    }
    Ok(f)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn fast_time_matches_the_full_parser() {
        use time::format_description::well_known::Rfc3339;
        for t in [
            "2026-11-28T04:00:00Z",
            "2026-11-28T04:00:00.5Z",
            "2024-02-29T23:59:59.123456789Z",
            "1999-01-01T00:00:00.000001Z",
        ] {
            let full = time::OffsetDateTime::parse(t, &Rfc3339)
                .expect("parse")
                .unix_timestamp_nanos();
            assert_eq!(fast_time(t), Some(full), "{t}");
        }
        for bad in [
            "2026-11-28 04:00:00Z",
            "2026-11-28T04:00:00+01:00",
            "2026-02-30T00:00:00Z",
            "2026-11-28T04:00:00.Z",
            "x",
        ] {
            assert_eq!(fast_time(bad), None, "{bad}");
        }
    }

    #[test]
    fn reads_top_level_fields_only() {
        let line = br#"{"action":"acquired","actor":{"case":"nested","prev":9},"case":"c1","detail":{"a":["}",{"x":"\"]"}]},"prev":12,"time":"2026-11-28T04:00:00Z","v":1}"#;
        let f = scan(line).expect("scan");
        assert_eq!(
            f,
            Fields {
                action: Some("acquired"),
                case: Some("c1"),
                prev: Some(12),
                time: Some("2026-11-28T04:00:00Z")
            }
        );
        for bad in [
            &b"{"[..],
            b"{\"a\":}",
            b"{\"a\":1",
            b"{\"a\":1}x",
            b"[1]",
            b"{\"prev\":\"x\"}",
        ] {
            assert!(scan(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    proptest! {
        /// On any entry the full parser accepts, the scan agrees with it.
        #[test]
        fn agrees_with_the_full_parser(
            case in "[a-z0-9]{1,12}",
            has_case in any::<bool>(),
            prev in proptest::option::of(0u64..1_000_000),
            note in ".{0,40}",
        ) {
            let e = crate::entry::Entry {
                v: 1,
                time: "2026-11-28T04:00:00Z".into(),
                case: has_case.then(|| case.parse().expect("id")),
                prev: if has_case { prev } else { None },
                action: crate::entry::Action::Copied,
                actor: crate::entry::Actor { name: note.clone(), role: "r".into(), host: "h".into(), tool: "t".into(), tool_version: "0".into() },
                reason: crate::entry::Reason::Manual { operator: "o".into(), note: Some(note.clone()) },
                evidence: None,
                place: None,
                // A detail that mimics every top-level key, nested.
                detail: Some(serde_json::json!({
                    "case": note, "prev": [1, {"}": "]"}],
                    "x": {"a": {"b": 1}, "case": "decoy", "m": 1, "prev": 7, "reason": {"a": 1}, "time": "decoy"},
                    "z": {"y": 1},
                })),
                nonce: "00".into(),
            };
            let bytes = e.to_canonical().expect("encode");
            let f = scan(&bytes).expect("scan");
            prop_assert_eq!(by_position(&bytes), Some(f.clone()), "the positional reader must agree with the walk");
            prop_assert_eq!(walk(&bytes).expect("walk"), f.clone());
            prop_assert_eq!(f.case, has_case.then_some(case.as_str()));
            prop_assert_eq!(f.prev, if has_case { prev } else { None });
            prop_assert_eq!(f.action, Some("copied"));
            prop_assert_eq!(f.time, Some("2026-11-28T04:00:00Z"));
        }
    }
}
