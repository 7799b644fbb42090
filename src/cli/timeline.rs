//! `custody timeline`, `custody pivot`, `custody findings`: the case's
//! timeline searched, pivoted and reasoned over.

use std::io::Write;

use anyhow::Context;

use super::{Env, Outcome};
use crate::engine::search::{self, SearchError, SearchRequest, SearchResults};
use crate::ids::CaseId;
use crate::sanitize::{CsvCells, term};
use crate::timeline::findings::{self, Finding};
use crate::timeline::query::{self, Query};
use crate::timeline::store::{Row, Seen, Timeline};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Table,
    Json,
    /// A cell that would start a spreadsheet formula (`=`, `+`, `-`, `@`,
    /// tab, CR) gets a leading `'` unless --raw-csv is given.
    Csv,
    /// JSON lines Timesketch imports: message, datetime, timestamp_desc and the other fields.
    Timesketch,
}

#[derive(Debug, clap::Args)]
pub struct TimelineArgs {
    pub case: CaseId,
    /// The query: `field:value` terms and free text (see docs/logs-and-timeline.md);
    /// `-field:value` negates a term (after `--` when it comes first).
    #[arg(value_name = "QUERY")]
    pub query: Vec<String>,
    /// Counts of the top values of these fields (actor,ip,asn,action,...).
    #[arg(long, value_delimiter = ',', value_name = "FIELDS")]
    pub facets: Vec<String>,
    /// Values per facet.
    #[arg(long, default_value_t = 10, value_name = "N")]
    pub top: usize,
    /// Event counts per time bucket (15m, 1h, 1d).
    #[arg(long, value_name = "WIDTH", value_parser = parse_bucket)]
    pub histogram: Option<i64>,
    /// Rows shown (0 for none); exports (csv, timesketch) are never cut.
    #[arg(long, default_value_t = 100, value_name = "N")]
    pub limit: usize,
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub offset: usize,
    #[arg(long, value_enum, default_value = "table")]
    pub format: Output,
    /// CSV cells exactly as recorded, for tools that read CSV as data: a
    /// cell starting with `=`, `+`, `-`, `@`, tab or CR is then a formula to
    /// a spreadsheet (log values are chosen by whoever made the logs).
    #[arg(long)]
    pub raw_csv: bool,
    /// Save the query and facets under this name in the case.
    #[arg(long, value_name = "NAME")]
    pub save: Option<String>,
    /// Run a saved search (further query terms narrow it).
    #[arg(long, value_name = "NAME")]
    pub saved: Option<String>,
    /// List the case's saved searches.
    #[arg(long, conflicts_with_all = ["save", "saved"])]
    pub searches: bool,
}

fn parse_bucket(s: &str) -> Result<i64, String> {
    query::bucket_us(s).ok_or_else(|| format!("`{s}` is not a bucket width like 15m, 1h or 1d"))
}

#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("by").required(true).args(["ip", "asn", "account"])))]
pub struct PivotArgs {
    pub case: CaseId,
    /// Every account seen from this address or CIDR block.
    #[arg(long, value_name = "IP")]
    pub ip: Option<String>,
    /// Every account seen from this ASN (64500 or AS64500).
    #[arg(long, value_name = "ASN")]
    pub asn: Option<String>,
    /// Every source address (with its ASN) seen for this account.
    #[arg(long, value_name = "UPN")]
    pub account: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct FindingsArgs {
    pub case: CaseId,
    /// Hours within which a new-ASN sign-in and an inbox rule or forwarding go together.
    #[arg(long, default_value_t = 24, value_name = "HOURS")]
    pub rule_within: i64,
    /// Sent mails within an hour that make a burst.
    #[arg(long, default_value_t = 20, value_name = "N")]
    pub burst: usize,
}

pub async fn run_timeline(env: &Env, a: TimelineArgs) -> anyhow::Result<Outcome> {
    let tl = crate::engine::logs::existing_timeline(env, &a.case)?;
    if a.searches {
        return list_searches(env, &tl);
    }
    let mut text = a.query.join(" ");
    let mut facet_names = a.facets.clone();
    if let Some(name) = &a.saved {
        let s = tl.saved_search(name)?;
        text = format!("{} {text}", s.query).trim().to_owned();
        if facet_names.is_empty() {
            facet_names = s.facets;
        }
    }
    let q = Query::parse(&text)?;
    if let Some(name) = &a.save {
        anyhow::ensure!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)),
            "--save: a name of letters, digits, '-', '_' and '.'"
        );
        search::check_facets(&facet_names).map_err(facets_flag)?;
        tl.save_search(
            name,
            &q.text,
            &facet_names,
            &crate::clock::rfc3339(env.clock.now()),
        )?;
        eprintln!("saved search `{name}`: {}", q.text);
    }
    match a.format {
        Output::Csv => return export_csv(&tl, &q, a.raw_csv),
        Output::Timesketch => return export_timesketch(&tl, &q),
        Output::Table | Output::Json => {}
    }
    let res = search::search(
        &tl,
        &SearchRequest {
            case: a.case,
            query: q,
            facets: facet_names,
            top: a.top,
            histogram: a.histogram,
            limit: a.limit,
            from: crate::timeline::store::Page::Offset(a.offset),
            budget: None,
        },
    )
    .map_err(facets_flag)?;
    if a.format == Output::Json || env.json {
        super::write_stdout(format!("{}\n", serde_json::to_string_pretty(&res)?).as_bytes())?;
    } else {
        super::write_stdout(human(&res).as_bytes())?;
    }
    Ok(Outcome::Ok)
}

/// The saved searches of the case's timeline.
fn list_searches(env: &Env, tl: &Timeline) -> anyhow::Result<Outcome> {
    let list = tl.saved_searches()?;
    env.print(&list, || {
        list.iter()
            .map(|s| {
                format!(
                    "{}\t{}\tfacets: {}\t(saved {})\n",
                    term(&s.name),
                    term(&s.query),
                    term(&s.facets.join(",")),
                    term(&s.saved)
                )
            })
            .collect()
    })?;
    Ok(Outcome::Ok)
}

/// The fields `--facets` names, each one known.
/// A search error, with an unknown facet named as the flag's.
fn facets_flag(e: SearchError) -> anyhow::Error {
    match e {
        SearchError::UnknownFacet { name, known } => {
            anyhow::anyhow!("--facets: unknown field `{name}`; fields are {known}")
        }
        e => e.into(),
    }
}

/// Every matching event as CSV on stdout.
fn export_csv(tl: &Timeline, q: &Query, raw_csv: bool) -> anyhow::Result<Outcome> {
    let cells = if raw_csv {
        CsvCells::Raw
    } else {
        CsvCells::Neutralised
    };
    let mut w = csv::Writer::from_writer(std::io::stdout().lock());
    w.write_record(CSV_HEADER)?;
    // A write error is kept and reported as one, not as a database error.
    let mut werr = None;
    tl.each(q, |r| {
        if werr.is_none()
            && let Err(e) = w.write_record(csv_record(&r, cells))
        {
            werr = Some(e);
        }
        Ok(())
    })?;
    // A reader that went away (`| head`) ends the export quietly.
    let flushed = match werr {
        Some(e) => Err(e),
        None => w.flush().map_err(csv::Error::from),
    };
    match flushed {
        Err(e) if !matches!(e.kind(), csv::ErrorKind::Io(io) if super::is_closed_pipe(io)) => {
            Err(e).context("cannot write the export")
        }
        _ => Ok(Outcome::Ok),
    }
}

/// Every matching event as Timesketch JSON lines on stdout.
fn export_timesketch(tl: &Timeline, q: &Query) -> anyhow::Result<Outcome> {
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut werr = None;
    tl.each(q, |r| {
        if werr.is_none()
            && let Err(e) = writeln!(out, "{}", timesketch(&r))
        {
            werr = Some(e);
        }
        Ok(())
    })?;
    // A reader that went away (`| head`) ends the export quietly.
    match werr.map_or_else(|| out.flush(), Err) {
        Err(e) if !super::is_closed_pipe(&e) => Err(e).context("cannot write the export"),
        _ => Ok(Outcome::Ok),
    }
}

const CSV_HEADER: &[&str] = &[
    "time",
    "source",
    "account",
    "actor",
    "action",
    "outcome",
    "ip",
    "asn",
    "as_org",
    "country",
    "user_agent",
    "target",
    "record_id",
    "message",
    "attributes",
    "artefact",
    "member",
    "locator",
];

/// One CSV row. Every text column goes through `cells`, custody's own
/// values too (the locator, the member: an S3 key is the attacker's choice);
/// only the ASN, a number custody parsed, is written as it is.
fn csv_record(r: &Row, cells: CsvCells) -> Vec<String> {
    let t = |v: &str| cells.text(v).into_owned();
    let o = |v: &Option<String>| t(v.as_deref().unwrap_or_default());
    vec![
        t(&r.time),
        t(&r.source),
        o(&r.account),
        o(&r.actor),
        t(&r.action),
        o(&r.outcome),
        o(&r.ip),
        r.asn.map(|n| n.to_string()).unwrap_or_default(),
        o(&r.as_org),
        o(&r.country),
        o(&r.user_agent),
        o(&r.target),
        o(&r.record_id),
        t(&r.message),
        if r.attributes.is_empty() {
            String::new()
        } else {
            t(&serde_json::to_string(&r.attributes).unwrap_or_default())
        },
        t(&r.artefact),
        t(&r.member),
        t(&r.locator),
    ]
}

/// One Timesketch JSONL event: its three required fields, then the rest as
/// attributes (the record's own attributes prefixed `attr_`, so they never
/// shadow the schema's).
pub fn timesketch(r: &Row) -> serde_json::Value {
    let mut m = serde_json::Map::new();
    let message = if r.message.is_empty() {
        r.action.clone()
    } else {
        r.message.clone()
    };
    m.insert("message".into(), message.into());
    m.insert("datetime".into(), r.time.clone().into());
    m.insert(
        "timestamp_desc".into(),
        format!("{} event time", r.source).into(),
    );
    let mut put = |k: &str, v: Option<String>| {
        if let Some(v) = v {
            m.insert(k.into(), v.into());
        }
    };
    put("source", Some(r.source.clone()));
    put("account", r.account.clone());
    put("actor", r.actor.clone());
    put("action", Some(r.action.clone()));
    put("outcome", r.outcome.clone());
    put("ip", r.ip.clone());
    put("asn", r.asn.map(|n| format!("AS{n}")));
    put("as_org", r.as_org.clone());
    put("country", r.country.clone());
    put("user_agent", r.user_agent.clone());
    put("target", r.target.clone());
    put("record_id", r.record_id.clone());
    put("artefact", Some(r.artefact.clone()));
    put("member", Some(r.member.clone()).filter(|s| !s.is_empty()));
    put("locator", Some(r.locator.clone()));
    for (k, v) in &r.attributes {
        m.insert(format!("attr_{k}"), v.clone().into());
    }
    serde_json::Value::Object(m)
}

/// One event on one line of a terminal: every value escaped ([`term`]).
fn row_line(r: &Row) -> String {
    let asn = r.asn.map(|n| format!(" AS{n}")).unwrap_or_default();
    format!(
        "{}  {:<14} {:<28} {:<22} {:<8} {}{}  {}  [{} {}{}]\n",
        term(&r.time),
        term(&r.source),
        term(r.actor.as_deref().unwrap_or("-")),
        term(&r.action),
        term(r.outcome.as_deref().unwrap_or("-")),
        term(r.ip.as_deref().unwrap_or("-")),
        asn,
        term(r.target.as_deref().unwrap_or("")),
        term(&r.artefact),
        if r.member.is_empty() {
            String::new()
        } else {
            format!("{} ", term(&r.member))
        },
        term(&r.locator),
    )
}

fn human(res: &SearchResults) -> String {
    let mut s = format!("{} events match `{}`\n", res.total, term(&res.query));
    for r in &res.rows {
        s.push_str(&row_line(r));
    }
    if (res.rows.len() as u64) < res.total && !res.rows.is_empty() {
        s.push_str(&format!("… {} shown (--limit, --offset)\n", res.rows.len()));
    }
    for f in &res.facets {
        s.push_str(&format!("\n{}:\n", f.field));
        for v in &f.values {
            s.push_str(&format!(
                "  {:>8}  {}\n",
                v.count,
                term(v.value.as_deref().unwrap_or("(none)"))
            ));
        }
    }
    if let Some(h) = &res.histogram {
        s.push_str("\nhistogram:\n");
        let max = h.iter().map(|b| b.count).max().unwrap_or(1).max(1);
        for b in h {
            let bar = "#".repeat(usize::try_from(b.count * 50 / max).unwrap_or(50).max(1));
            s.push_str(&format!("  {}  {:>8}  {bar}\n", b.start, b.count));
        }
    }
    s
}

#[derive(Debug, serde::Serialize)]
struct Pivot {
    case: CaseId,
    by: String,
    value: String,
    /// Accounts seen from the source (--ip, --asn), or sources seen for the account.
    seen: Vec<Seen>,
    /// For --account: the same by ASN.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    asns: Vec<Seen>,
}

pub async fn run_pivot(env: &Env, a: PivotArgs) -> anyhow::Result<Outcome> {
    let tl = crate::engine::logs::existing_timeline(env, &a.case)?;
    let (by, value, seen, asns) = if let Some(ip) = &a.ip {
        let q = Query::parse(&format!("ip:{ip}")).context("--ip")?;
        let (cond, params) = q.to_sql();
        (
            "ip",
            ip.clone(),
            tl.accounts_where(&cond, params)?,
            Vec::new(),
        )
    } else if let Some(asn) = &a.asn {
        let q = Query::parse(&format!("asn:{asn}")).context("--asn")?;
        let (cond, params) = q.to_sql();
        (
            "asn",
            asn.clone(),
            tl.accounts_where(&cond, params)?,
            Vec::new(),
        )
    } else {
        let account = a.account.clone().unwrap_or_default();
        let sources = tl.sources_of(&account)?;
        let asns = by_asn(&sources);
        ("account", account, sources, asns)
    };
    let p = Pivot {
        case: a.case,
        by: by.to_owned(),
        value,
        seen,
        asns,
    };
    env.print(&p, || {
        let mut s = match p.by.as_str() {
            "account" => format!("sources seen for {}: {}\n", term(&p.value), p.seen.len()),
            _ => format!(
                "accounts seen from {} {}: {}\n",
                p.by,
                term(&p.value),
                p.seen.len()
            ),
        };
        for v in &p.seen {
            let asn = v
                .asn
                .map(|n| format!(" AS{n} {}", term(v.as_org.as_deref().unwrap_or(""))))
                .unwrap_or_default();
            s.push_str(&format!(
                "  {}{asn}  first {}  last {}  ({} events)\n",
                term(&v.value),
                term(&v.first),
                term(&v.last),
                v.events
            ));
        }
        if !p.asns.is_empty() {
            s.push_str("by ASN:\n");
            for v in &p.asns {
                s.push_str(&format!(
                    "  {}  first {}  last {}  ({} events)\n",
                    term(&v.value),
                    term(&v.first),
                    term(&v.last),
                    v.events
                ));
            }
        }
        s
    })?;
    Ok(Outcome::Ok)
}

fn by_asn(sources: &[Seen]) -> Vec<Seen> {
    let mut m: std::collections::BTreeMap<i64, Seen> = std::collections::BTreeMap::new();
    for s in sources {
        let Some(asn) = s.asn else { continue };
        let e = m.entry(asn).or_insert_with(|| Seen {
            value: format!("AS{asn}"),
            first: s.first.clone(),
            last: s.last.clone(),
            events: 0,
            asn: Some(asn),
            as_org: s.as_org.clone(),
            country: s.country.clone(),
        });
        // The times are fixed-width RFC 3339 UTC, so text order is time order.
        if s.first < e.first {
            e.first.clone_from(&s.first);
        }
        if s.last > e.last {
            e.last.clone_from(&s.last);
        }
        e.events += s.events;
    }
    m.into_values().collect()
}

const FINDING_ROWS_SHOWN: usize = 12;

#[derive(Debug, serde::Serialize)]
struct Findings {
    case: CaseId,
    findings: Vec<FindingOut>,
    /// What `custody detect` stored: rule and indicator matches.
    detections: Vec<DetectionOut>,
    /// When detect last ran; `stale` when logs were loaded after it.
    #[serde(skip_serializing_if = "Option::is_none")]
    detect_ran: Option<String>,
    stale: bool,
}

#[derive(Debug, serde::Serialize)]
struct DetectionOut {
    #[serde(flatten)]
    detection: crate::timeline::detections::Stored,
    /// Computed findings that rest on some of the same events (a new-ASN
    /// sign-in before this inbox rule, with a GeoIP database given).
    corroborated_by: Vec<&'static str>,
    events: Vec<Row>,
}

#[derive(Debug, serde::Serialize)]
struct FindingOut {
    #[serde(flatten)]
    finding: Finding,
    events: Vec<Row>,
}

pub async fn run_findings(env: &Env, a: FindingsArgs) -> anyhow::Result<Outcome> {
    let tl = crate::engine::logs::existing_timeline(env, &a.case)?;
    let opts = findings::Options {
        rule_within_h: a.rule_within,
        burst_count: a.burst,
        ..findings::Options::default()
    };
    let list = findings::compute(&tl, &opts)?;
    let mut detections = Vec::new();
    for d in tl.detections()? {
        let rows: std::collections::HashSet<i64> = d.rows.iter().copied().collect();
        let corroborated_by = list
            .iter()
            .filter(|f| f.rows.iter().any(|r| rows.contains(r)))
            .map(|f| f.kind)
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let events = tl.rows_by_id(&d.rows)?;
        detections.push(DetectionOut {
            detection: d,
            corroborated_by,
            events,
        });
    }
    let (detect_ran, stale) = match tl.detect_state()? {
        Some((at, newer)) => (Some(at), newer),
        None => (None, false),
    };
    let mut out = Vec::with_capacity(list.len());
    for f in list {
        let events = tl.rows_by_id(&f.rows)?;
        out.push(FindingOut { finding: f, events });
    }
    let res = Findings {
        case: a.case,
        findings: out,
        detections,
        detect_ran,
        stale,
    };
    env.print(&res, || {
        let mut s = format!(
            "{} findings, {} detections\n",
            res.findings.len(),
            res.detections.len()
        );
        match &res.detect_ran {
            None => s.push_str(
                "(no rules or indicator lists evaluated yet: `custody detect CASE` runs custody's own rules; --rules DIR adds Sigma rules, --iocs FILE lists)\n",
            ),
            Some(at) if res.stale => s.push_str(&format!(
                "(detect last ran {at}; logs were loaded since: run `custody detect` again to cover them)\n"
            )),
            Some(_) => {}
        }
        for f in &res.findings {
            s.push_str(&format!(
                "\n{}: {}\n",
                f.finding.kind,
                term(&f.finding.summary)
            ));
            // The JSON has every row; a terminal gets the first ones.
            for r in f.events.iter().take(FINDING_ROWS_SHOWN) {
                s.push_str("  ");
                s.push_str(&row_line(r));
            }
            if f.events.len() > FINDING_ROWS_SHOWN {
                s.push_str(&format!(
                    "  … {} rows in all (--json lists them)\n",
                    f.events.len()
                ));
            }
        }
        for d in &res.detections {
            let det = &d.detection;
            let techniques: Vec<&str> = det
                .tags
                .iter()
                .filter_map(|t| t.strip_prefix("attack.t"))
                .collect();
            s.push_str(&format!(
                "\n{} {}: {}{}{}  ({} events; rule:{})\n",
                det.kind,
                det.level,
                term(&det.title),
                if det.actors.is_empty() {
                    String::new()
                } else {
                    format!(" [{}]", term(&det.actors.join(", ")))
                },
                if techniques.is_empty() {
                    String::new()
                } else {
                    format!(" T{}", techniques.join(" T").to_uppercase())
                },
                det.rows.len(),
                term(&det.rule),
            ));
            if !d.corroborated_by.is_empty() {
                s.push_str(&format!("  corroborated by: {}\n", d.corroborated_by.join(", ")));
            }
            for r in d.events.iter().take(FINDING_ROWS_SHOWN) {
                s.push_str("  ");
                s.push_str(&row_line(r));
            }
            if d.events.len() > FINDING_ROWS_SHOWN {
                s.push_str(&format!(
                    "  … {} rows in all (--json lists them)\n",
                    d.events.len()
                ));
            }
        }
        s
    })?;
    Ok(Outcome::Ok)
}
