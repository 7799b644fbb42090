//! The timeline's query language: `field:value` terms and free text.
//!
//! `actor:alice@contoso.com action:New-InboxRule ip:203.0.113.0/24 after:2021-06-01 invoice`
//!
//! - Terms on different fields must all hold; several terms on the same
//!   field are alternatives (`action:Send action:SendAs`).
//! - `-` before a term negates it. `*` in a value is a wildcard.
//! - Values with spaces go in double quotes: `ua:"python-requests/2.25"`.
//! - `ip:` takes an address or a CIDR block; `asn:` a number, with or
//!   without `AS`; `after:`/`before:` a date (`2021-06-01`, midnight UTC) or
//!   an RFC 3339 time. `after` includes its instant, `before` excludes it.
//! - Words without a field are searched in each event's summary and attributes.
//! - `rule:`, `level:` and `technique:` select the events `custody detect`
//!   matched: `rule:` a rule's id or title (`rule:"Inbox rule*"`), or an
//!   indicator list's row (`rule:bad.txt*`); `level:high`, or `level:medium+`
//!   for that level and above; `technique:t1114` an ATT&CK tag (sub-techniques
//!   included). Several such terms of one kind are alternatives.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv6Addr};

use ipnet::IpNet;

/// A field a term can name, with the column it reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Field {
    Actor,
    Account,
    Action,
    Outcome,
    Ip,
    Asn,
    Country,
    Org,
    Source,
    Target,
    UserAgent,
    Record,
    Artefact,
}

/// Every field, with the names a query may use for it.
pub const FIELDS: &[(Field, &[&str])] = &[
    (Field::Actor, &["actor", "user"]),
    (Field::Account, &["account", "tenant"]),
    (Field::Action, &["action", "op"]),
    (Field::Outcome, &["outcome"]),
    (Field::Ip, &["ip"]),
    (Field::Asn, &["asn"]),
    (Field::Country, &["country"]),
    (Field::Org, &["org"]),
    (Field::Source, &["source"]),
    (Field::Target, &["target"]),
    (Field::UserAgent, &["ua", "user_agent"]),
    (Field::Record, &["record"]),
    (Field::Artefact, &["artefact"]),
];

impl Field {
    pub fn from_name(name: &str) -> Option<Self> {
        let name = name.to_ascii_lowercase();
        FIELDS
            .iter()
            .find(|(_, names)| names.contains(&name.as_str()))
            .map(|(f, _)| *f)
    }

    pub fn name(self) -> &'static str {
        FIELDS
            .iter()
            .find(|(f, _)| *f == self)
            .and_then(|(_, names)| names.first().copied())
            .unwrap_or("?")
    }

    /// The events column. `ip` is the address as a key (see [`ip_key`]).
    pub fn column(self) -> &'static str {
        match self {
            Self::Actor => "actor",
            Self::Account => "account",
            Self::Action => "action",
            Self::Outcome => "outcome",
            Self::Ip => "ipkey",
            Self::Asn => "asn",
            Self::Country => "country",
            Self::Org => "as_org",
            Self::Source => "source",
            Self::Target => "target",
            Self::UserAgent => "user_agent",
            Self::Record => "record_id",
            Self::Artefact => "artefact",
        }
    }

    /// Whether the column holds a term's id (see [`coded`]) rather than the value.
    pub fn is_coded(self) -> bool {
        !matches!(self, Self::Ip | Self::Asn | Self::Target | Self::Record)
    }

    /// Whether the column is in `details` (the wide, seldom-filtered values)
    /// rather than in `events`.
    pub fn in_details(self) -> bool {
        matches!(self, Self::Target | Self::Record)
    }
}

/// The condition that a coded column holds a term whose value passes
/// `test` (`= ?1 COLLATE NOCASE`, `LIKE ?2 ESCAPE '\'`): values repeat, so
/// they are stored once in `terms` and events hold their ids.
pub fn coded(col: &str, test: &str) -> String {
    format!("{col} IN (SELECT id FROM terms WHERE value {test})")
}

#[derive(Debug, Clone, PartialEq)]
enum Value {
    Text(String),
    Pattern(String),
    Net(IpNet),
    Number(i64),
}

#[derive(Debug, Clone, PartialEq)]
enum Term {
    Field {
        field: Field,
        value: Value,
        negated: bool,
    },
    Words {
        text: String,
        negated: bool,
    },
    After(i64),
    Before(i64),
    /// Events a stored detection rests on.
    Detected {
        kind: Detected,
        value: String,
        negated: bool,
    },
}

/// What a detection term names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Detected {
    Rule,
    Level,
    Technique,
}

impl Detected {
    fn from_name(name: &str) -> Option<Self> {
        match name {
            "rule" => Some(Self::Rule),
            "level" => Some(Self::Level),
            "technique" => Some(Self::Technique),
            _ => None,
        }
    }

    /// The condition on `detections d` for one value, adding its parameters.
    fn condition(
        self,
        term: &str,
        value: &str,
        params: &mut Vec<rusqlite::types::Value>,
    ) -> Result<String, QueryError> {
        use rusqlite::types::Value as V;
        match self {
            Self::Rule => {
                params.push(V::Text(value.to_owned()));
                params.push(V::Text(like_pattern(value)));
                let n = params.len();
                Ok(format!(
                    "(d.rule = ?{} OR d.title LIKE ?{n} ESCAPE '\\' OR d.rule LIKE ?{n} ESCAPE '\\')",
                    n - 1
                ))
            }
            Self::Level => {
                let (name, above) = match value.strip_suffix('+') {
                    Some(v) => (v, true),
                    None => (value, false),
                };
                let rank = LEVELS
                    .iter()
                    .position(|l| l.eq_ignore_ascii_case(name))
                    .ok_or_else(|| {
                        err(
                            term,
                            format!(
                                "expected a level ({}), optionally with + for it and above",
                                LEVELS.join(", ")
                            ),
                        )
                    })?;
                let levels: Vec<&str> = LEVELS
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| *i == rank || (above && *i > rank))
                    .map(|(_, l)| *l)
                    .collect();
                let mut marks = Vec::new();
                for l in levels {
                    params.push(V::Text(l.to_owned()));
                    marks.push(format!("?{}", params.len()));
                }
                Ok(format!("d.level IN ({})", marks.join(", ")))
            }
            Self::Technique => {
                let t = value.to_ascii_lowercase();
                let t = t.strip_prefix("attack.").unwrap_or(&t).to_owned();
                params.push(V::Text(format!("attack.{t}")));
                params.push(V::Text(format!("attack.{t}.%")));
                let n = params.len();
                Ok(format!(
                    "EXISTS (SELECT 1 FROM json_each(d.tags) WHERE lower(json_each.value) = ?{} OR lower(json_each.value) LIKE ?{n})",
                    n - 1
                ))
            }
        }
    }
}

/// Sigma's levels, lowest first: `level:` terms and sorting use this order.
pub const LEVELS: &[&str] = &["informational", "low", "medium", "high", "critical"];

/// A level's place in [`LEVELS`] (an unknown one counts as medium, Sigma's default).
pub fn level_rank(level: &str) -> usize {
    LEVELS
        .iter()
        .position(|l| l.eq_ignore_ascii_case(level))
        .unwrap_or(2)
}

/// A parsed query.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Query {
    terms: Vec<Term>,
    /// The text it was parsed from, as saved searches keep it.
    pub text: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("in the query, at `{term}`: {reason}")]
pub struct QueryError {
    pub term: String,
    pub reason: String,
}

fn err(term: &str, reason: impl Into<String>) -> QueryError {
    QueryError {
        term: term.to_owned(),
        reason: reason.into(),
    }
}

/// Splits on spaces outside double quotes; quotes are removed.
fn tokens(text: &str) -> Result<Vec<String>, QueryError> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut any = false;
    for c in text.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                any = true;
            }
            c if c.is_whitespace() && !quoted => {
                if any {
                    out.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            c => {
                cur.push(c);
                any = true;
            }
        }
    }
    if quoted {
        return Err(err(text, "a double quote is not closed"));
    }
    if any {
        out.push(cur);
    }
    Ok(out)
}

/// A date (midnight UTC) or an RFC 3339 time, in microseconds.
pub fn instant(text: &str) -> Option<i64> {
    if let Some(us) = super::parse::time_us(text) {
        return Some(us);
    }
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    let date = time::Date::parse(text, &fmt).ok()?;
    Some(super::parse::to_us(date.midnight().assume_utc()))
}

impl Query {
    pub fn parse(text: &str) -> Result<Self, QueryError> {
        let mut terms = Vec::new();
        for token in tokens(text)? {
            let (negated, body) = match token.strip_prefix('-') {
                Some(rest) if !rest.is_empty() => (true, rest),
                _ => (false, token.as_str()),
            };
            let Some((name, value)) = body.split_once(':').filter(|(n, _)| {
                // `2001:db8::1` or a time is a word, not a field.
                n.chars().all(|c| c.is_ascii_alphabetic() || c == '_') && !n.is_empty()
            }) else {
                terms.push(Term::Words {
                    text: body.to_owned(),
                    negated,
                });
                continue;
            };
            if value.is_empty() {
                return Err(err(&token, format!("`{name}:` needs a value")));
            }
            let lname = name.to_ascii_lowercase();
            if lname == "after" || lname == "before" {
                if negated {
                    return Err(err(
                        &token,
                        format!("`{lname}:` cannot be negated; use the other one"),
                    ));
                }
                let us = instant(value).ok_or_else(|| {
                    err(
                        &token,
                        "expected a date (2021-06-01) or an RFC 3339 time (2021-06-01T08:00:00Z)",
                    )
                })?;
                terms.push(if lname == "after" {
                    Term::After(us)
                } else {
                    Term::Before(us)
                });
                continue;
            }
            if let Some(kind) = Detected::from_name(&lname) {
                // Checked now, so that a bad level is named before any search.
                kind.condition(&token, value, &mut Vec::new())?;
                terms.push(Term::Detected {
                    kind,
                    value: value.to_owned(),
                    negated,
                });
                continue;
            }
            let field = Field::from_name(name).ok_or_else(|| {
                let known: Vec<&str> = FIELDS.iter().flat_map(|(_, n)| n.iter().copied()).collect();
                err(
                    &token,
                    format!(
                        "unknown field `{name}`; fields are {}, rule, level, technique, after, before",
                        known.join(", ")
                    ),
                )
            })?;
            let value = match field {
                Field::Ip => Value::Net(net(value).ok_or_else(|| {
                    err(
                        &token,
                        "expected an IP address or a CIDR block (203.0.113.0/24)",
                    )
                })?),
                Field::Asn => {
                    let digits = value.trim_start_matches(['A', 'S', 'a', 's']);
                    Value::Number(
                        digits
                            .parse()
                            .map_err(|_| err(&token, "expected an AS number (64500 or AS64500)"))?,
                    )
                }
                _ if value.contains('*') => Value::Pattern(value.to_owned()),
                _ => Value::Text(value.to_owned()),
            };
            terms.push(Term::Field {
                field,
                value,
                negated,
            });
        }
        Ok(Self {
            terms,
            text: text.trim().to_owned(),
        })
    }

    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    /// Whether the query bounds time at most, so its facets read whole
    /// stretches of the indexes in order rather than picking events out.
    pub fn is_time_range(&self) -> bool {
        self.terms
            .iter()
            .all(|t| matches!(t, Term::After(_) | Term::Before(_)))
    }

    /// The SQL condition over `events` (never empty: `1` matches all) and its parameters.
    pub fn to_sql(&self) -> (String, Vec<rusqlite::types::Value>) {
        self.sql(None)
    }

    /// [`Self::to_sql`] for events within the id ranges of the table
    /// `ranges` (columns `lo`, `hi`): full-text terms look only there, so a
    /// sample does not read a common word's every match.
    pub fn to_sql_within(&self, ranges: &str) -> (String, Vec<rusqlite::types::Value>) {
        self.sql(Some(ranges))
    }

    fn sql(&self, ranges: Option<&str>) -> (String, Vec<rusqlite::types::Value>) {
        use rusqlite::types::Value as V;
        let fts = |n: usize| match ranges {
            None => format!("SELECT rowid FROM events_fts WHERE events_fts MATCH ?{n}"),
            Some(t) => format!(
                "SELECT events_fts.rowid FROM {t} CROSS JOIN events_fts WHERE events_fts MATCH ?{n} \
                 AND events_fts.rowid BETWEEN {t}.lo AND {t}.hi"
            ),
        };
        let mut params: Vec<V> = Vec::new();
        let mut ands: Vec<String> = Vec::new();
        let mut groups: Vec<(Field, Vec<String>)> = Vec::new();
        let mut words: Vec<String> = Vec::new();
        let mut unwords: Vec<String> = Vec::new();
        let mut detected: Vec<(Detected, Vec<String>)> = Vec::new();
        for term in &self.terms {
            match term {
                Term::Detected {
                    kind,
                    value,
                    negated,
                } => {
                    // Checked when parsed: a condition here cannot fail.
                    let Ok(cond) = kind.condition(value, value, &mut params) else {
                        continue;
                    };
                    if *negated {
                        ands.push(format!("id NOT IN ({})", detected_events(&cond)));
                    } else if let Some((_, alts)) = detected.iter_mut().find(|(k, _)| k == kind) {
                        alts.push(cond);
                    } else {
                        detected.push((*kind, vec![cond]));
                    }
                }
                Term::After(us) => {
                    params.push(V::Integer(*us));
                    ands.push(format!("time >= ?{}", params.len()));
                }
                Term::Before(us) => {
                    params.push(V::Integer(*us));
                    ands.push(format!("time < ?{}", params.len()));
                }
                Term::Words { text, negated } => {
                    let quoted = format!("\"{}\"", text.replace('"', "\"\""));
                    if *negated {
                        unwords.push(quoted);
                    } else {
                        words.push(quoted);
                    }
                }
                Term::Field {
                    field,
                    value,
                    negated,
                } => {
                    let col = field.column();
                    let cond = match value {
                        Value::Text(t) => {
                            params.push(V::Text(t.clone()));
                            let n = params.len();
                            if field.is_coded() {
                                coded(col, &format!("= ?{n} COLLATE NOCASE"))
                            } else {
                                format!("{col} = ?{n}")
                            }
                        }
                        Value::Pattern(p) => {
                            params.push(V::Text(like_pattern(p)));
                            let n = params.len();
                            if field.is_coded() {
                                coded(col, &format!("LIKE ?{n} ESCAPE '\\'"))
                            } else {
                                format!("{col} LIKE ?{n} ESCAPE '\\'")
                            }
                        }
                        Value::Number(n) => {
                            params.push(V::Integer(*n));
                            format!("{col} = ?{}", params.len())
                        }
                        Value::Net(n) => {
                            let (lo, hi) = net_range(n);
                            params.push(V::Blob(lo.to_vec()));
                            params.push(V::Blob(hi.to_vec()));
                            format!("ipkey BETWEEN ?{} AND ?{}", params.len() - 1, params.len())
                        }
                    };
                    let cond = if field.in_details() {
                        format!("id IN (SELECT id FROM details WHERE {cond})")
                    } else {
                        cond
                    };
                    if *negated && field.in_details() {
                        ands.push(format!("NOT ({cond})"));
                    } else if *negated {
                        ands.push(format!("({col} IS NULL OR NOT ({cond}))"));
                    } else if let Some((_, alts)) = groups.iter_mut().find(|(f, _)| f == field) {
                        alts.push(cond);
                    } else {
                        groups.push((*field, vec![cond]));
                    }
                }
            }
        }
        for (_, alts) in groups {
            ands.push(format!("({})", alts.join(" OR ")));
        }
        for (_, alts) in detected {
            ands.push(format!(
                "id IN ({})",
                detected_events(&format!("({})", alts.join(" OR ")))
            ));
        }
        if !words.is_empty() {
            params.push(V::Text(words.join(" AND ")));
            ands.push(format!("id IN ({})", fts(params.len())));
        }
        if !unwords.is_empty() {
            params.push(V::Text(unwords.join(" OR ")));
            ands.push(format!("id NOT IN ({})", fts(params.len())));
        }
        if ands.is_empty() {
            return ("1".to_owned(), params);
        }
        (ands.join(" AND "), params)
    }
}

/// The events of the detections `d` for which `cond` holds.
fn detected_events(cond: &str) -> String {
    format!(
        "SELECT event FROM detection_rows JOIN detections d ON d.id = detection_rows.detection WHERE {cond}"
    )
}

fn like_pattern(p: &str) -> String {
    let mut out = String::with_capacity(p.len());
    for c in p.chars() {
        match c {
            '*' => out.push('%'),
            '%' | '_' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

fn net(text: &str) -> Option<IpNet> {
    if let Ok(n) = text.parse::<IpNet>() {
        return Some(n.trunc());
    }
    let ip: IpAddr = text.parse().ok()?;
    Some(IpNet::from(ip))
}

/// The 16-byte key an address is indexed by: IPv4 as IPv4-mapped IPv6, so
/// one BLOB column orders and ranges both families.
pub fn ip_key(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

fn net_range(n: &IpNet) -> ([u8; 16], [u8; 16]) {
    (ip_key(n.network()), ip_key(n.broadcast()))
}

/// For display: `::ffff:a.b.c.d` keys back to IPv4.
pub fn ip_from_key(key: &[u8]) -> Option<IpAddr> {
    let octets: [u8; 16] = key.try_into().ok()?;
    let v6 = Ipv6Addr::from(octets);
    Some(v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4))
}

/// A bucket width for histograms: `15m`, `1h`, `1d`.
pub fn bucket_us(text: &str) -> Option<i64> {
    let t = text.trim();
    let (num, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit())?);
    let n: i64 = num.parse().ok().filter(|n| *n > 0)?;
    let unit_us = match unit {
        "s" => 1_000_000,
        "m" => 60_000_000,
        "h" => 3_600_000_000,
        "d" => 86_400_000_000,
        _ => return None,
    };
    n.checked_mul(unit_us)
}

/// `2021-06-01T08:00:00Z` (with microseconds only when there are some).
pub fn show_time(us: i64) -> String {
    let Ok(t) = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(us) * 1000) else {
        return us.to_string();
    };
    let mut out = String::new();
    let _ = write!(
        out,
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    if t.microsecond() != 0 {
        let _ = write!(out, ".{:06}", t.microsecond());
    }
    out.push('Z');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_issue_example_parses_into_fields_and_a_range() {
        let q = Query::parse(
            "actor:alice@contoso.com action:New-InboxRule ip:203.0.113.0/24 after:2021-06-01",
        )
        .expect("parse");
        let (sql, params) = q.to_sql();
        assert_eq!(
            sql,
            "time >= ?5 AND (actor IN (SELECT id FROM terms WHERE value = ?1 COLLATE NOCASE)) \
             AND (action IN (SELECT id FROM terms WHERE value = ?2 COLLATE NOCASE)) \
             AND (ipkey BETWEEN ?3 AND ?4)"
        );
        assert_eq!(params.len(), 5);
        assert_eq!(
            params[4],
            rusqlite::types::Value::Integer(1_622_505_600_000_000)
        );
        let lo = ip_key("203.0.113.0".parse().expect("ip"));
        let hi = ip_key("203.0.113.255".parse().expect("ip"));
        assert_eq!(params[2], rusqlite::types::Value::Blob(lo.to_vec()));
        assert_eq!(params[3], rusqlite::types::Value::Blob(hi.to_vec()));
    }

    #[test]
    fn same_field_is_or_negation_and_words_go_to_full_text() {
        let q = Query::parse(
            r#"action:Send action:SendAs -outcome:success "q2 invoice" -spam asn:AS64510"#,
        )
        .expect("parse");
        let (sql, _) = q.to_sql();
        assert_eq!(
            sql,
            "(outcome IS NULL OR NOT (outcome IN (SELECT id FROM terms WHERE value = ?3 COLLATE NOCASE))) \
             AND (action IN (SELECT id FROM terms WHERE value = ?1 COLLATE NOCASE) \
             OR action IN (SELECT id FROM terms WHERE value = ?2 COLLATE NOCASE)) AND (asn = ?4) \
             AND id IN (SELECT rowid FROM events_fts WHERE events_fts MATCH ?5) \
             AND id NOT IN (SELECT rowid FROM events_fts WHERE events_fts MATCH ?6)"
        );
    }

    #[test]
    fn only_time_bounds_read_in_order() {
        let q = |s: &str| Query::parse(s).expect("parse");
        assert!(q("").is_time_range());
        assert!(q("after:2021-06-01 before:2021-06-02").is_time_range());
        assert!(!q("after:2021-06-01 action:Send").is_time_range());
        assert!(!q("invoice").is_time_range());
    }

    #[test]
    fn wildcards_become_escaped_like_patterns() {
        assert_eq!(like_pattern("*Inbox_Rule*"), "%Inbox\\_Rule%");
        let (sql, _) = Query::parse("action:*InboxRule").expect("parse").to_sql();
        assert_eq!(
            sql,
            "(action IN (SELECT id FROM terms WHERE value LIKE ?1 ESCAPE '\\'))"
        );
    }

    #[test]
    fn bad_terms_name_what_is_wrong() {
        let e = Query::parse("actr:alice").expect_err("unknown field");
        assert_eq!(e.term, "actr:alice");
        assert!(e.reason.contains("unknown field `actr`"), "{e}");
        assert!(
            Query::parse("ip:300.1.1.1")
                .expect_err("ip")
                .reason
                .contains("CIDR")
        );
        assert!(
            Query::parse("after:yesterday")
                .expect_err("time")
                .reason
                .contains("RFC 3339")
        );
        assert!(
            Query::parse("asn:big")
                .expect_err("asn")
                .reason
                .contains("AS number")
        );
        assert!(
            Query::parse("action:")
                .expect_err("empty")
                .reason
                .contains("needs a value")
        );
        assert!(
            Query::parse("\"open")
                .expect_err("quote")
                .reason
                .contains("not closed")
        );
    }

    #[test]
    fn addresses_and_times_alone_are_words() {
        let q = Query::parse("2001:db8::1 12:30").expect("parse");
        assert_eq!(q.terms.len(), 2);
        assert!(q.terms.iter().all(|t| matches!(t, Term::Words { .. })));
    }

    #[test]
    fn keys_order_both_families_and_come_back() {
        let v4: IpAddr = "203.0.113.7".parse().expect("ip");
        assert_eq!(ip_from_key(&ip_key(v4)), Some(v4));
        let v6: IpAddr = "2001:db8::1".parse().expect("ip");
        assert_eq!(ip_from_key(&ip_key(v6)), Some(v6));
        assert!(ip_key("10.0.0.1".parse().expect("ip")) < ip_key("10.0.0.2".parse().expect("ip")));
    }

    #[test]
    fn buckets_and_times_print() {
        assert_eq!(bucket_us("15m"), Some(900_000_000));
        assert_eq!(bucket_us("1d"), Some(86_400_000_000));
        assert_eq!(bucket_us("0h"), None);
        assert_eq!(bucket_us("1w"), None);
        assert_eq!(show_time(1_622_534_400_000_000), "2021-06-01T08:00:00Z");
        assert_eq!(
            show_time(1_622_534_400_000_001),
            "2021-06-01T08:00:00.000001Z"
        );
    }
}
