//! Lists of indicators of compromise, matched against every event of a case.
//!
//! A list is plain text (one indicator a line, `#` comments), CSV (a
//! header naming a `value`/`indicator` column and optionally `type`), or a
//! MISP event (`{"Event": {"Attribute": [...], "Object": [{"Attribute": [...]}]}}`).
//! Each indicator keeps the row it came from, so a hit names the list and
//! the row.
//!
//! | kind | from | matches |
//! |---|---|---|
//! | `ip` | an address or CIDR block; MISP `ip-src`, `ip-dst`, `…\|port`, `domain\|ip` | the event's address, and any string of the record that is an address in the block |
//! | `domain` | a host name; MISP `domain`, `hostname`, the host of a `url` | a host name in any string of the record, or one of its subdomains |
//! | `hash` | 32, 40, 64 or 128 hex digits; MISP `md5`, `sha1`, `sha256`, `sha512`, `filename\|…` | the same digest in any string of the record |
//! | `user_agent` | anything else on a plain line; MISP `user-agent` | contained in the event's user agent, ignoring case |

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::path::Path;

use ipnet::IpNet;
use serde::Serialize;
use serde_json::Value;

use super::subject::Subject;

/// A list larger than this is refused: the largest public feeds are a few
/// hundred MiB of CSV, and custody holds a list in memory.
pub const MAX_LIST_BYTES: u64 = 256 << 20;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IocError {
    #[error("cannot read the indicator list {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the indicator list {path} is {size} bytes, more than the {MAX_LIST_BYTES} custody reads"
    )]
    TooLarge { path: String, size: u64 },
    #[error("the indicator list {path} is not readable: {reason}")]
    Format { path: String, reason: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Ip,
    Domain,
    Hash,
    UserAgent,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Self::Ip => "ip",
            Self::Domain => "domain",
            Self::Hash => "hash",
            Self::UserAgent => "user_agent",
        }
    }
}

/// One indicator, with where it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Indicator {
    pub kind: Kind,
    /// As matched: lower case for names and digests, a block for addresses.
    pub value: String,
    /// `line 12`, `row 4`, `Attribute 5f3c…` (MISP's uuid, else its index).
    pub row: String,
}

/// A list as read, with what it could not use.
#[derive(Debug, Clone, Default, Serialize)]
pub struct IocList {
    /// The file's name, as findings name the list.
    pub name: String,
    pub indicators: Vec<Indicator>,
    /// Rows that held no usable indicator, with why (at most [`MAX_SKIPPED_SHOWN`]).
    pub skipped: Vec<String>,
    pub skipped_count: usize,
}

pub const MAX_SKIPPED_SHOWN: usize = 20;

impl IocList {
    pub fn read(path: &Path) -> Result<Self, IocError> {
        let shown = path.display().to_string();
        let size = std::fs::metadata(path)
            .map_err(|source| IocError::Read {
                path: shown.clone(),
                source,
            })?
            .len();
        if size > MAX_LIST_BYTES {
            return Err(IocError::TooLarge { path: shown, size });
        }
        let bytes = std::fs::read(path).map_err(|source| IocError::Read {
            path: shown.clone(),
            source,
        })?;
        let name = path
            .file_name()
            .map_or_else(|| shown.clone(), |n| n.to_string_lossy().into_owned());
        Self::parse(&name, &bytes).map_err(|reason| IocError::Format {
            path: shown,
            reason,
        })
    }

    /// Reads a list's bytes, telling the shape by its first character and
    /// its header.
    pub fn parse(name: &str, bytes: &[u8]) -> Result<Self, String> {
        let text = std::str::from_utf8(bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes))
            .map_err(|e| format!("not UTF-8 text ({e})"))?;
        let mut list = Self {
            name: name.to_owned(),
            ..Self::default()
        };
        let trimmed = text.trim_start();
        if trimmed.starts_with('{') {
            list.misp(trimmed)?;
        } else if looks_like_csv(text) {
            list.csv(text)?;
        } else {
            for (i, line) in text.lines().enumerate() {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                list.add(None, line, format!("line {}", i + 1));
            }
        }
        if list.indicators.is_empty() {
            return Err(match list.skipped.first() {
                Some(first) => format!("no usable indicator (first refused: {first})"),
                None => "no indicators in it".into(),
            });
        }
        Ok(list)
    }

    fn skip(&mut self, why: String) {
        self.skipped_count += 1;
        if self.skipped.len() < MAX_SKIPPED_SHOWN {
            self.skipped.push(why);
        }
    }

    /// One value, of a type named by the list (MISP's or a CSV's) or inferred.
    fn add(&mut self, ty: Option<&str>, value: &str, row: String) {
        let value = value.trim();
        if value.is_empty() {
            return;
        }
        let ty = ty.map(|t| t.trim().to_ascii_lowercase());
        let kind_value = match ty.as_deref() {
            None | Some("") => infer(value),
            Some(t) => typed(t, value),
        };
        match kind_value {
            Ok(Some((kind, value))) => self.indicators.push(Indicator { kind, value, row }),
            Ok(None) => {}
            Err(why) => self.skip(format!("{row}: {why}")),
        }
    }

    fn csv(&mut self, text: &str) -> Result<(), String> {
        let mut r = csv::ReaderBuilder::new()
            .flexible(true)
            .from_reader(text.as_bytes());
        let headers = r.headers().map_err(|e| format!("CSV header: {e}"))?.clone();
        let col = |names: &[&str]| {
            headers
                .iter()
                .position(|h| names.iter().any(|n| h.trim().eq_ignore_ascii_case(n)))
        };
        let value = col(&["value", "indicator", "ioc", "observable"]).ok_or_else(|| {
            format!(
                "the CSV header ({}) names no value, indicator, ioc or observable column",
                headers.iter().collect::<Vec<_>>().join(",")
            )
        })?;
        let ty = col(&["type", "kind", "indicator_type"]);
        for (i, rec) in r.records().enumerate() {
            let row = format!("row {}", i + 2);
            match rec {
                Ok(rec) => {
                    let v = rec.get(value).unwrap_or_default().to_owned();
                    let t = ty.and_then(|t| rec.get(t)).map(str::to_owned);
                    self.add(t.as_deref(), &v, row);
                }
                Err(e) => self.skip(format!("{row}: {e}")),
            }
        }
        Ok(())
    }

    fn misp(&mut self, text: &str) -> Result<(), String> {
        let v: Value = serde_json::from_str(text).map_err(|e| format!("JSON: {e}"))?;
        let event = v.get("Event").unwrap_or(&v);
        let Some(attrs) = event.get("Attribute") else {
            return Err("a JSON list must be a MISP event: no Event.Attribute".into());
        };
        let mut all: Vec<(String, &Value)> = Vec::new();
        for (i, a) in attrs.as_array().into_iter().flatten().enumerate() {
            all.push((format!("Attribute[{i}]"), a));
        }
        for (o, obj) in event
            .get("Object")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            for (i, a) in obj
                .get("Attribute")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .enumerate()
            {
                all.push((format!("Object[{o}].Attribute[{i}]"), a));
            }
        }
        for (place, a) in all {
            let row = match a.get("uuid").and_then(Value::as_str) {
                Some(u) => format!("{place} {u}"),
                None => place,
            };
            let (Some(ty), Some(value)) = (
                a.get("type").and_then(Value::as_str),
                a.get("value").and_then(Value::as_str),
            ) else {
                self.skip(format!("{row}: no type or value"));
                continue;
            };
            self.add(Some(ty), value, row);
        }
        Ok(())
    }
}

fn looks_like_csv(text: &str) -> bool {
    let first = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .unwrap_or_default()
        .to_ascii_lowercase();
    first.contains(',')
        && ["value", "indicator", "ioc", "observable", "type"]
            .iter()
            .any(|h| first.split(',').any(|c| c.trim().trim_matches('"') == *h))
}

/// An indicator from a line with no type.
fn infer(value: &str) -> Result<Option<(Kind, String)>, String> {
    if let Some(net) = net(value) {
        return Ok(Some((Kind::Ip, net.to_string())));
    }
    if is_hash(value) {
        return Ok(Some((Kind::Hash, value.to_ascii_lowercase())));
    }
    if let Some(d) = domain(value) {
        return Ok(Some((Kind::Domain, d)));
    }
    Ok(Some((Kind::UserAgent, value.to_owned())))
}

/// An indicator of a named type (MISP's names, or `ip`, `domain`, `hash`, `user_agent`).
fn typed(ty: &str, value: &str) -> Result<Option<(Kind, String)>, String> {
    // Composite MISP types (`filename|sha256`, `ip-dst|port`, `domain|ip`)
    // hold two values: the one that is an indicator here is taken.
    let (head, tail) = value.split_once('|').unwrap_or((value, ""));
    let ip = |v: &str| {
        net(v)
            .map(|n| Some((Kind::Ip, n.to_string())))
            .ok_or_else(|| format!("{v:?} is not an address or CIDR block"))
    };
    let hash = |v: &str| {
        if is_hash(v) {
            Ok(Some((Kind::Hash, v.to_ascii_lowercase())))
        } else {
            Err(format!("{v:?} is not a hex digest"))
        }
    };
    let dom = |v: &str| {
        domain(v)
            .map(|d| Some((Kind::Domain, d)))
            .ok_or_else(|| format!("{v:?} is not a host name"))
    };
    match ty {
        "ip" | "ip-src" | "ip-dst" | "ipv4" | "ipv6" | "cidr" | "ipv4-addr" | "ipv6-addr" => {
            ip(value)
        }
        "ip-src|port" | "ip-dst|port" => ip(head),
        "domain|ip" => ip(tail),
        "domain" | "hostname" | "fqdn" | "domain-name" => dom(value),
        "url" | "uri" | "link" => {
            let host = url::Url::parse(value)
                .ok()
                .and_then(|u| u.host_str().map(str::to_owned))
                .ok_or_else(|| format!("{value:?} is not a URL with a host"))?;
            match net(host.trim_matches(['[', ']'])) {
                Some(n) => Ok(Some((Kind::Ip, n.to_string()))),
                None => dom(&host),
            }
        }
        "md5" | "sha1" | "sha256" | "sha512" | "hash" | "file-hash" => hash(value),
        t if t.starts_with("filename|") => hash(tail),
        "user-agent" | "user_agent" | "useragent" | "ua" => {
            Ok(Some((Kind::UserAgent, value.to_owned())))
        }
        // A list's other types (email addresses, mutexes, YARA rules...) are
        // not in logs custody reads; they are counted, not errors.
        other => Err(format!("type {other} is not matched against logs")),
    }
}

fn net(v: &str) -> Option<IpNet> {
    let v = v.trim();
    v.parse::<IpNet>()
        .ok()
        .or_else(|| v.parse::<IpAddr>().ok().map(IpNet::from))
}

fn is_hash(v: &str) -> bool {
    matches!(v.len(), 32 | 40 | 64 | 128) && v.bytes().all(|b| b.is_ascii_hexdigit())
}

fn domain(v: &str) -> Option<String> {
    let d = v.trim().trim_end_matches('.').to_ascii_lowercase();
    let ok = d.contains('.')
        && d.len() <= 253
        && d.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
        && d.rsplit('.')
            .next()
            .is_some_and(|tld| tld.bytes().any(|b| b.is_ascii_alphabetic()));
    ok.then_some(d)
}

/// Every list's indicators, indexed for matching.
#[derive(Debug, Default)]
pub struct Matcher {
    lists: Vec<IocList>,
    nets: Vec<(IpNet, usize, usize)>,
    domains: HashMap<String, Vec<(usize, usize)>>,
    hashes: HashMap<String, Vec<(usize, usize)>>,
    agents: Vec<(String, usize, usize)>,
}

/// One indicator's hit on one event: (list, indicator) indexes.
pub type Hit = (usize, usize);

impl Matcher {
    pub fn new(lists: Vec<IocList>) -> Self {
        let mut m = Self::default();
        for (li, list) in lists.iter().enumerate() {
            for (ii, ind) in list.indicators.iter().enumerate() {
                match ind.kind {
                    Kind::Ip => {
                        if let Ok(n) = ind.value.parse() {
                            m.nets.push((n, li, ii));
                        }
                    }
                    Kind::Domain => m
                        .domains
                        .entry(ind.value.clone())
                        .or_default()
                        .push((li, ii)),
                    Kind::Hash => m
                        .hashes
                        .entry(ind.value.clone())
                        .or_default()
                        .push((li, ii)),
                    Kind::UserAgent => m.agents.push((ind.value.to_ascii_lowercase(), li, ii)),
                }
            }
        }
        m.lists = lists;
        m
    }

    pub fn is_empty(&self) -> bool {
        self.lists.iter().all(|l| l.indicators.is_empty())
    }

    pub fn lists(&self) -> &[IocList] {
        &self.lists
    }

    pub fn indicator(&self, (li, ii): Hit) -> Option<(&IocList, &Indicator)> {
        let l = self.lists.get(li)?;
        Some((l, l.indicators.get(ii)?))
    }

    /// The indicators one record hits, each once.
    pub fn hits(&self, s: &Subject<'_>) -> Vec<Hit> {
        let mut out: HashSet<Hit> = HashSet::new();
        let mut ips: Vec<IpAddr> = s.event.ip.into_iter().collect();
        let check_text = |text: &str, out: &mut HashSet<Hit>, ips: &mut Vec<IpAddr>| {
            if !self.nets.is_empty()
                && let Ok(ip) = text.trim().parse::<IpAddr>()
            {
                ips.push(ip);
            }
            if self.domains.is_empty() && self.hashes.is_empty() {
                return;
            }
            for token in text
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_'))
            {
                if token.len() < 4 {
                    continue;
                }
                let token = token.trim_matches('.').to_ascii_lowercase();
                if let Some(h) = self.hashes.get(&token) {
                    out.extend(h);
                }
                // The name and each parent: `a.b.evil.example` hits `evil.example`.
                let mut rest = token.as_str();
                loop {
                    if let Some(h) = self.domains.get(rest) {
                        out.extend(h);
                    }
                    match rest.split_once('.') {
                        Some((_, parent)) if parent.contains('.') => rest = parent,
                        _ => break,
                    }
                }
            }
        };
        match s.json {
            Some(v) => visit(v, &mut |t| check_text(t, &mut out, &mut ips)),
            None => {
                if let Some(l) = s.line {
                    for word in l.split_whitespace() {
                        check_text(
                            word.trim_matches(|c: char| !c.is_ascii_alphanumeric() && c != ':'),
                            &mut out,
                            &mut ips,
                        );
                    }
                    check_text(l, &mut out, &mut ips);
                }
            }
        }
        for (_, v) in &s.event.attributes {
            check_text(v, &mut out, &mut ips);
        }
        if let Some(t) = &s.event.target {
            check_text(t, &mut out, &mut ips);
        }
        for ip in ips {
            for (n, li, ii) in &self.nets {
                if n.contains(&ip) {
                    out.insert((*li, *ii));
                }
            }
        }
        if let Some(ua) = &s.event.user_agent {
            let ua = ua.to_ascii_lowercase();
            for (needle, li, ii) in &self.agents {
                if ua.contains(needle.as_str()) {
                    out.insert((*li, *ii));
                }
            }
        }
        let mut hits: Vec<Hit> = out.into_iter().collect();
        hits.sort_unstable();
        hits
    }
}

fn visit<'v>(v: &'v Value, f: &mut dyn FnMut(&'v str)) {
    match v {
        Value::String(s) => f(s),
        Value::Array(a) => a.iter().for_each(|v| visit(v, f)),
        Value::Object(m) => m.values().for_each(|v| visit(v, f)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timeline::Event;
    use serde_json::json;

    fn kinds(l: &IocList) -> Vec<(Kind, &str, &str)> {
        l.indicators
            .iter()
            .map(|i| (i.kind, i.value.as_str(), i.row.as_str()))
            .collect()
    }

    #[test]
    fn plain_text_lines_are_typed_by_their_shape() {
        let l = IocList::parse(
            "bad.txt",
            b"# from the report\n203.0.113.10\n198.51.100.0/24\nEvil.Example.\n\
              e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\npython-requests/2.25.1\n",
        )
        .expect("list");
        assert_eq!(
            kinds(&l),
            vec![
                (Kind::Ip, "203.0.113.10/32", "line 2"),
                (Kind::Ip, "198.51.100.0/24", "line 3"),
                (Kind::Domain, "evil.example", "line 4"),
                (
                    Kind::Hash,
                    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
                    "line 5"
                ),
                (Kind::UserAgent, "python-requests/2.25.1", "line 6"),
            ]
        );
    }

    #[test]
    fn csv_and_misp_lists_keep_their_rows_and_say_what_they_skip() {
        let c = IocList::parse(
            "x.csv",
            b"type,value,comment\nip,203.0.113.10,c2\nip,not-an-ip,typo\ndomain,evil.example,\n",
        )
        .expect("csv");
        assert_eq!(
            kinds(&c),
            vec![
                (Kind::Ip, "203.0.113.10/32", "row 2"),
                (Kind::Domain, "evil.example", "row 4")
            ]
        );
        assert_eq!(c.skipped_count, 1);
        assert!(
            c.skipped[0].contains("row 3") && c.skipped[0].contains("not-an-ip"),
            "{:?}",
            c.skipped
        );

        let misp = json!({"Event": {"info": "BEC", "Attribute": [
            {"type": "ip-src", "value": "203.0.113.10", "uuid": "5f3c0000-0000-4000-8000-000000000001"},
            {"type": "url", "value": "https://login.evil.example/x"},
            {"type": "filename|sha256", "value": "a.exe|e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
            {"type": "mutex", "value": "Global\\x"}
        ], "Object": [{"name": "ip-port", "Attribute": [{"type": "ip-dst|port", "value": "198.51.100.20|443"}]}]}});
        let m = IocList::parse("event.json", misp.to_string().as_bytes()).expect("misp");
        assert_eq!(
            kinds(&m),
            vec![
                (
                    Kind::Ip,
                    "203.0.113.10/32",
                    "Attribute[0] 5f3c0000-0000-4000-8000-000000000001"
                ),
                (Kind::Domain, "login.evil.example", "Attribute[1]"),
                (
                    Kind::Hash,
                    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
                    "Attribute[2]"
                ),
                (Kind::Ip, "198.51.100.20/32", "Object[0].Attribute[0]"),
            ]
        );
        assert_eq!(m.skipped_count, 1);
    }

    #[test]
    fn unusable_lists_are_refused_with_the_reason() {
        assert!(
            IocList::parse("e", b"")
                .expect_err("empty")
                .contains("no indicators")
        );
        assert!(
            IocList::parse("j", b"{\"Event\": {}}")
                .expect_err("no attrs")
                .contains("Event.Attribute")
        );
        assert!(
            IocList::parse("c", b"type,comment\nip,x\n")
                .expect_err("no value col")
                .contains("names no value")
        );
        assert!(
            IocList::parse("b", b"\xff\xfe")
                .expect_err("binary")
                .contains("UTF-8")
        );
    }

    #[test]
    fn records_hit_by_address_block_subdomain_digest_and_agent() {
        let list = IocList::parse(
            "l",
            b"198.51.100.0/24\nevil.example\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\npython-requests\n",
        )
        .expect("list");
        let m = Matcher::new(vec![list]);
        let mut e = Event::new(0, "cloudtrail", "GetObject");
        e.ip = Some("198.51.100.20".parse().expect("ip"));
        e.user_agent = Some("Python-Requests/2.25".into());
        let r = json!({"requestParameters": {"host": "cdn.login.evil.example", "note": "sha e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"}});
        let s = Subject {
            event: &e,
            json: Some(&r),
            line: None,
        };
        assert_eq!(m.hits(&s), vec![(0, 0), (0, 1), (0, 2), (0, 3)]);
        let mut quiet = Event::new(0, "cloudtrail", "GetObject");
        quiet.ip = Some("203.0.113.1".parse().expect("ip"));
        let r = json!({"host": "notevil.example", "x": "evil.example.com"});
        let s = Subject {
            event: &quiet,
            json: Some(&r),
            line: None,
        };
        assert!(m.hits(&s).is_empty(), "{:?}", m.hits(&s));
    }
}
