//! Windows event logs (`.evtx`), read with the `evtx` crate from the bytes
//! in memory.
//!
//! The file is a 4 KiB header then 64 KiB chunks, each holding its own
//! records. The chunks are walked here, one by one, rather than through
//! `EvtxParser`'s own walk: that walk stops silently at a chunk the file
//! ends inside, and its errors do not always say which chunk they are in.
//! A damaged header, chunk or record becomes a problem with its place
//! (`chunk 3 (byte 200704)`, `chunk 3 record 14961`) and the other records
//! are still read; a chunk the file ends inside is read up to the cut.
//!
//! Each record becomes one event: the time is `System/TimeCreated`, the
//! record id `Computer/Channel/EventRecordID` (two logs never collide), the
//! action `evtx.<EventID>` and, for the events a responder looks for first,
//! a name after it (`evtx.4624.logon`).

use std::sync::Arc;

use evtx::err::EvtxError;
use evtx::{EvtxChunkData, ParserSettings};
use serde_json::Value;

use super::{Record, Sink, problem, time_us};
use crate::timeline::Event;

const SOURCE: &str = "evtx";
const FILE_HEADER: usize = 4096;
const CHUNK: usize = 65536;
/// How much of a PowerShell script block an event keeps.
pub const SCRIPT_MAX: usize = 4096;

/// Event data fields kept as attributes, under their own names, when present.
const KEPT: [&str; 24] = [
    "TargetServerName",
    "TaskName",
    "LogonType",
    "CommandLine",
    "ParentImage",
    "ParentProcessName",
    "ParentCommandLine",
    "Hashes",
    "ProcessName",
    "WorkstationName",
    "IpPort",
    "Status",
    "SubStatus",
    "FailureReason",
    "MemberName",
    "MemberSid",
    "ImagePath",
    "ServiceFileName",
    "AccountName",
    "SourceIp",
    "DestinationIp",
    "DestinationPort",
    "Details",
    "Path",
];

pub fn evtx(bytes: &[u8], sink: &mut dyn Sink) {
    let header_ok = bytes.starts_with(b"ElfFile\0");
    let chunk_at = |k: usize| {
        k.checked_mul(CHUNK)
            .and_then(|o| o.checked_add(FILE_HEADER))
            .and_then(|o| bytes.get(o..))
            .is_some_and(|rest| rest.starts_with(b"ElfChnk\0"))
    };
    if !header_ok {
        if !chunk_at(0) {
            sink.problem(problem(
                "byte 0",
                "not an EVTX file: neither its header nor its first chunk has the EVTX signature",
            ));
            return;
        }
        sink.problem(problem(
            "byte 0",
            "the EVTX file header is damaged (no `ElfFile` signature); reading its chunks",
        ));
    }
    let settings = Arc::new(
        ParserSettings::new()
            .indent(false)
            .separate_json_attributes(false)
            .validate_checksums(false),
    );
    let body = bytes.len().saturating_sub(FILE_HEADER);
    let chunks = body.div_ceil(CHUNK);
    for k in 0..chunks {
        let start = FILE_HEADER + k * CHUNK;
        let Some(rest) = bytes.get(start..) else {
            break;
        };
        let data = rest.get(..CHUNK).unwrap_or(rest);
        let place = format!("chunk {k} (byte {start})");
        if data.iter().all(|&b| b == 0) {
            // Windows leaves chunks it has not used yet zeroed.
            continue;
        }
        let mut owned = data.to_vec();
        let valid = owned.len();
        if owned.len() < CHUNK {
            sink.problem(problem(
                place.clone(),
                format!(
                    "the file ends inside this chunk ({} of {CHUNK} bytes): reading its records up to the cut",
                    owned.len()
                ),
            ));
            owned.resize(CHUNK, 0);
        }
        chunk(k, &place, owned, valid, &settings, sink);
    }
}

/// One chunk's records; the file ends `valid` bytes into it (it was padded
/// with zeros), and a record that runs past that is a problem, not an event.
fn chunk(
    k: usize,
    place: &str,
    data: Vec<u8>,
    valid: usize,
    settings: &Arc<ParserSettings>,
    sink: &mut dyn Sink,
) {
    let mut chunk_data = match EvtxChunkData::new(data, false) {
        Ok(c) => c,
        Err(e) => {
            sink.problem(problem(
                place,
                format!("not a readable chunk ({}); skipping it", chain(&e)),
            ));
            return;
        }
    };
    if !chunk_data.validate_checksum() {
        sink.problem(problem(
            place,
            "the chunk's checksums do not match its bytes: it was damaged or not flushed; reading what it holds",
        ));
    }
    let mut chunk = match chunk_data.parse(Arc::clone(settings)) {
        Ok(c) => c,
        Err(e) => {
            sink.problem(problem(
                place,
                format!("the chunk cannot be read ({}); skipping it", chain(&e)),
            ));
            return;
        }
    };
    for record in chunk.iter() {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                let locator = match &e {
                    EvtxError::FailedToParseRecord { record_id, .. } => {
                        format!("chunk {k} record {record_id}")
                    }
                    EvtxError::FailedToReadRecordAt { offset, .. } => {
                        format!("chunk {k} byte {offset}")
                    }
                    _ => format!("chunk {k}"),
                };
                sink.problem(problem(
                    locator,
                    format!("the record cannot be read: {}", chain(&e)),
                ));
                continue;
            }
        };
        let id = record.event_record_id;
        let end = record
            .binxml_offset
            .saturating_add(u64::from(record.binxml_size));
        if end > valid as u64 {
            sink.problem(problem(
                format!("chunk {k} record {id}"),
                "the file ends inside this record: not read",
            ));
            continue;
        }
        let header_time = record.timestamp.as_microsecond();
        match record.into_json_value() {
            Ok(r) => {
                let mut e = event(&r.data, id, header_time);
                e.locator = format!("chunk {k} record {id}");
                // The record as rendered: its binary XML has no bytes of
                // its own apart from the chunk's templates.
                sink.record(e, Record::json(&[], &r.data));
            }
            Err(e) => sink.problem(problem(
                format!("chunk {k} record {id}"),
                format!("the record cannot be rendered: {}", chain(&e)),
            )),
        }
    }
}

/// An error and its causes, on one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    // Bounded: a cause chain is a handful deep.
    for _ in 0..8 {
        let Some(c) = cause else { break };
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}

/// A scalar as text: strings as they are, numbers printed, `{"#text": x}` unwrapped.
fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Object(o) => o.get("#text").and_then(scalar),
        Value::Array(a) => {
            let parts: Vec<String> = a.iter().filter_map(scalar).collect();
            (!parts.is_empty()).then(|| parts.join(", "))
        }
        Value::Null => None,
    }
}

fn at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(v, |cur, k| cur.get(k))
}

/// A field's value when it says something: not empty, not `-`.
fn field(data: Option<&Value>, name: &str) -> Option<String> {
    scalar(data?.get(name)?).filter(|s| !s.is_empty() && s != "-")
}

/// The record's fields: its `EventData`, or the one element inside its `UserData`.
fn data_of(event: &Value) -> Option<&Value> {
    if let Some(d) = event.get("EventData").filter(|d| d.is_object()) {
        return Some(d);
    }
    let user = event.get("UserData")?.as_object()?;
    user.iter()
        .find(|(k, _)| !k.starts_with('#'))
        .map(|(_, v)| v)
}

/// The name of an event a responder looks for first, given its provider.
fn name(id: u64, provider: &str) -> Option<&'static str> {
    let sysmon = provider.contains("Sysmon");
    let powershell = provider.contains("PowerShell");
    Some(match id {
        1 if sysmon => "process_created",
        3 if sysmon => "network_connection",
        11 if sysmon => "file_created",
        13 if sysmon => "registry_set",
        1102 if provider.contains("Eventlog") => "log_cleared",
        4103 if powershell => "powershell_pipeline",
        4104 if powershell => "powershell_script_block",
        4624 => "logon",
        4625 => "logon_failed",
        4634 | 4647 => "logoff",
        4648 => "explicit_credential_logon",
        4672 => "admin_logon",
        4688 => "process_created",
        4697 => "service_installed",
        7045 if provider.contains("Service Control Manager") => "service_installed",
        4698 => "scheduled_task_created",
        4720 => "user_created",
        4732 => "group_member_added",
        _ => return None,
    })
}

/// `DOMAIN\user`, or the user alone.
fn account(data: Option<&Value>, user: &str, domain: &str) -> Option<String> {
    let u = field(data, user)?;
    Some(match field(data, domain) {
        Some(d) => format!("{d}\\{u}"),
        None => u,
    })
}

/// The event of one rendered record.
fn event(v: &Value, record_id: u64, header_time: i64) -> Event {
    let ev = v.get("Event").unwrap_or(v);
    let sys = ev.get("System");
    let text = |path: &[&str]| sys.and_then(|s| at(s, path)).and_then(scalar);
    let event_id = text(&["EventID"]).unwrap_or_default();
    let channel = text(&["Channel"]).unwrap_or_default();
    let computer = text(&["Computer"]).unwrap_or_default();
    let provider = text(&["Provider", "#attributes", "Name"]).unwrap_or_default();
    let time = text(&["TimeCreated", "#attributes", "SystemTime"])
        .and_then(|t| time_us(&t))
        .unwrap_or(header_time);
    let id_num: Option<u64> = event_id.parse().ok();
    let named = id_num.and_then(|id| name(id, &provider));
    let action = match named {
        Some(n) => format!("evtx.{event_id}.{n}"),
        None => format!("evtx.{event_id}"),
    };
    let mut e = Event::new(time, SOURCE, action);
    // The record's own header numbers it within this file; the event's
    // EventRecordID is the log's number, which an exported log keeps.
    let number = text(&["EventRecordID"]).unwrap_or_else(|| record_id.to_string());
    e.record_id = Some(format!("{computer}/{channel}/{number}"));
    let data = data_of(ev);

    // Account management names the account acted on as its target.
    let object_event = matches!(id_num, Some(4720 | 4722..=4738 | 4756));
    let subject = account(data, "SubjectUserName", "SubjectDomainName");
    let targeted = account(data, "TargetUserName", "TargetDomainName");
    e.actor = if object_event {
        subject.clone()
    } else {
        targeted
            .clone()
            .or_else(|| subject.clone())
            .or_else(|| field(data, "User"))
    };
    // The other of the two accounts, when both are named and differ: the
    // credentials a 4648 used, who had a 4624's logon made.
    let (other_key, other) = if e.actor == targeted {
        ("SubjectUser", subject)
    } else {
        ("TargetUser", targeted.clone())
    };
    let other = other
        .filter(|o| !object_event && e.actor.as_deref() != Some(o.as_str()))
        .map(|o| (other_key, o));
    e.outcome = match id_num {
        Some(4624) => Some("success".into()),
        Some(4625) => Some("failure".into()),
        _ => None,
    };
    e.ip = field(data, "IpAddress").and_then(|a| super::ip(&a));
    if e.ip.is_none() && provider.contains("Sysmon") {
        // The far side of a connection Sysmon saw.
        let remote = if field(data, "Initiated").as_deref() == Some("true") {
            "DestinationIp"
        } else {
            "SourceIp"
        };
        e.ip = field(data, remote).and_then(|a| super::ip(&a));
    }
    e.target = if object_event {
        targeted
    } else {
        [
            "TargetFilename",
            "TargetObject",
            "ServiceName",
            "NewProcessName",
            "Image",
        ]
        .iter()
        .find_map(|k| field(data, k))
    };

    for (k, v) in [
        ("Channel", &channel),
        ("EventID", &event_id),
        ("Computer", &computer),
        ("Provider", &provider),
    ] {
        if !v.is_empty() {
            e.attributes.push((k.to_owned(), v.clone()));
        }
    }
    for k in KEPT {
        if let Some(v) = field(data, k) {
            e.attributes.push((k.to_owned(), v));
        }
    }
    if let Some((k, v)) = other {
        e.attributes.push((k.to_owned(), v));
    }
    if let Some(script) = field(data, "ScriptBlockText") {
        let mut end = SCRIPT_MAX.min(script.len());
        while !script.is_char_boundary(end) {
            end = end.saturating_sub(1);
        }
        let mut kept = script.get(..end).unwrap_or_default().to_owned();
        if end < script.len() {
            kept.push('…');
            e.attributes
                .push(("ScriptBlockLength".into(), script.len().to_string()));
        }
        e.attributes.push(("ScriptBlockText".into(), kept));
    }

    let mut summary = event_id.clone();
    if let Some(n) = named {
        summary.push(' ');
        summary.push_str(n);
    }
    if let Some(a) = &e.actor {
        summary.push_str(&format!(" by {a}"));
    }
    if let Some(t) = &e.target {
        summary.push_str(&format!(" on {t}"));
    }
    if let Some(ip) = e.ip {
        summary.push_str(&format!(" from {ip}"));
    }
    summary.push_str(&format!(" [{computer} {channel}]"));
    e.message = super::linux::one_line(&summary);
    e
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use proptest::prelude::*;

    use super::*;
    use crate::timeline::parse::{Collect, Format, parse_file};

    fn samples_dir() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/evtx-samples")
    }

    /// Every sample, with its JSON rendering's events.
    fn samples() -> Vec<(String, Vec<u8>, Vec<Value>)> {
        let dir = samples_dir();
        let mut out = Vec::new();
        let entries = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e} (the EVTX samples of ../shared)", dir.display()));
        for entry in entries {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|x| x == "evtx") {
                let json = std::fs::read_to_string(path.with_extension("json")).unwrap();
                // The renderings are JSON documents one after another.
                let events: Vec<Value> = serde_json::Deserializer::from_str(&json)
                    .into_iter::<Value>()
                    .map(Result::unwrap)
                    .collect();
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                out.push((name, std::fs::read(&path).unwrap(), events));
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        assert!(out.len() >= 6, "{} samples", out.len());
        out
    }

    fn parse(bytes: &[u8]) -> Collect {
        let mut c = Collect::default();
        parse_file(Format::Evtx, "", bytes, 2024, &mut c);
        c
    }

    fn json_text(v: Option<&Value>) -> Option<String> {
        match v? {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Object(o) => json_text(o.get("#text")),
            _ => None,
        }
    }

    #[test]
    fn every_sample_event_is_read_as_its_json_says() {
        let mut compared = 0;
        for (name, bytes, want) in samples() {
            let c = parse(&bytes);
            assert!(c.problems.is_empty(), "{name}: {:?}", c.problems);
            assert!(!want.is_empty(), "{name}");
            for w in &want {
                let sys = &w["Event"]["System"];
                let rid = sys["EventRecordID"].as_u64().unwrap();
                let channel = sys["Channel"].as_str().unwrap();
                let computer = sys["Computer"].as_str().unwrap();
                let record_id = format!("{computer}/{channel}/{rid}");
                let got = c
                    .events
                    .iter()
                    .find(|e| e.record_id.as_deref() == Some(&record_id))
                    .unwrap_or_else(|| panic!("{name}: no event {record_id}"));
                let when = sys["TimeCreated"]["#attributes"]["SystemTime"]
                    .as_str()
                    .unwrap();
                assert_eq!(got.time_us, time_us(when).unwrap(), "{name} {rid}");
                let id = json_text(sys.get("EventID")).unwrap();
                assert_eq!(got.attribute("EventID"), Some(id.as_str()), "{name} {rid}");
                assert!(
                    got.action.starts_with(&format!("evtx.{id}")),
                    "{}",
                    got.action
                );
                assert_eq!(got.attribute("Channel"), Some(channel));
                assert_eq!(got.attribute("Computer"), Some(computer));
                assert_eq!(
                    got.attribute("Provider"),
                    sys["Provider"]["#attributes"]["Name"].as_str()
                );
                assert_eq!(got.source, "evtx");
                // The fields mapped from the event data.
                let ev = &w["Event"];
                let data = ev.get("EventData").filter(|d| d.is_object()).or_else(|| {
                    ev.get("UserData")
                        .and_then(Value::as_object)
                        .and_then(|o| o.iter().find(|(k, _)| !k.starts_with('#')))
                        .map(|(_, v)| v)
                });
                let d = |k: &str| {
                    json_text(data.and_then(|d| d.get(k))).filter(|s| !s.is_empty() && s != "-")
                };
                for k in KEPT {
                    assert_eq!(
                        got.attribute(k).map(str::to_owned),
                        d(k),
                        "{name} {rid} {k}"
                    );
                }
                for k in [
                    "TargetFilename",
                    "TargetObject",
                    "ServiceName",
                    "NewProcessName",
                    "Image",
                ] {
                    if let Some(v) = d(k) {
                        assert_eq!(got.target.as_deref(), Some(v.as_str()), "{name} {rid}");
                        break;
                    }
                }
                let user = |u: &str, dom: &str| {
                    d(u).map(|u| d(dom).map_or(u.clone(), |dom| format!("{dom}\\{u}")))
                };
                let actor = user("TargetUserName", "TargetDomainName")
                    .or_else(|| user("SubjectUserName", "SubjectDomainName"))
                    .or_else(|| d("User"));
                assert_eq!(got.actor, actor, "{name} {rid}");
                if let Some(ip) = d("IpAddress").and_then(|a| a.parse().ok()) {
                    assert_eq!(got.ip, Some(ip));
                }
                assert!(
                    got.locator.starts_with("chunk 0 record "),
                    "{}",
                    got.locator
                );
                compared += 1;
            }
        }
        assert!(compared >= 10, "{compared} events compared");
    }

    #[test]
    fn named_events() {
        let (_, bytes, _) = samples()
            .into_iter()
            .find(|s| s.0.starts_with("win_security_explicit"))
            .unwrap();
        let c = parse(&bytes);
        let e = c
            .events
            .iter()
            .find(|e| e.attribute("EventID") == Some("4648"))
            .unwrap();
        assert_eq!(e.action, "evtx.4648.explicit_credential_logon");
        assert_eq!(e.actor.as_deref(), Some("swachchhanda\\testuser"));
        assert_eq!(
            e.attribute("ProcessName"),
            Some("C:\\Users\\xodih\\OneDrive\\Desktop\\LegacyHive.exe")
        );
        assert_eq!(e.ip, None, "`-` is no address");
        assert_eq!(e.attribute("SubjectUser"), Some("SWACHCHHANDA\\xodih"));
        assert_eq!(e.attribute("TargetServerName"), Some("localhost"));
        let (_, bytes, _) = samples()
            .into_iter()
            .find(|s| s.0.starts_with("file_event_win_anydesk"))
            .unwrap();
        let c = parse(&bytes);
        let e = c
            .events
            .iter()
            .find(|e| {
                e.record_id
                    .as_deref()
                    .is_some_and(|r| r.ends_with("/14961"))
            })
            .unwrap();
        assert_eq!(e.action, "evtx.11.file_created");
        assert_eq!(e.actor.as_deref(), Some("ATTACKRANGE\\Administrator"));
        assert!(
            e.message
                .starts_with("11 file_created by ATTACKRANGE\\Administrator on C:\\Users"),
            "{}",
            e.message
        );
    }

    /// The sample with the most records.
    fn biggest() -> (Vec<u8>, usize) {
        samples()
            .into_iter()
            .map(|(_, b, _)| {
                let n = parse(&b).events.len();
                (b, n)
            })
            .max_by_key(|(_, n)| *n)
            .unwrap()
    }

    /// Offsets of the first chunk's live records: their `**\0\0` signature
    /// before the chunk's free space (stale records lie past it).
    fn record_offsets(bytes: &[u8]) -> Vec<usize> {
        let free = u32::from_le_bytes(
            bytes[FILE_HEADER + 48..FILE_HEADER + 52]
                .try_into()
                .unwrap(),
        ) as usize;
        let chunk = &bytes[FILE_HEADER..FILE_HEADER + CHUNK];
        (512..free - 4)
            .filter(|&i| &chunk[i..i + 4] == b"\x2a\x2a\x00\x00")
            .map(|i| FILE_HEADER + i)
            .collect()
    }

    #[test]
    fn a_damaged_record_is_a_problem_and_the_others_are_read() {
        let (bytes, n) = biggest();
        assert!(n >= 3, "{n} records");
        let offsets = record_offsets(&bytes);
        // Overwrite the middle record's body (past its header).
        let mid = offsets[offsets.len() / 2];
        let mut damaged = bytes.clone();
        for b in &mut damaged[mid + 24..mid + 200] {
            *b = 0xA5;
        }
        let c = parse(&damaged);
        let hit = offsets.len() / 2 + 1; // records are numbered from 1
        let damaged_locator = format!("chunk 0 record {hit}");
        assert!(
            c.problems
                .iter()
                .any(|p| p.locator == damaged_locator && p.message.contains("cannot be")),
            "{:?}",
            c.problems
        );
        assert!(
            c.problems.iter().any(|p| p.message.contains("checksums")),
            "{:?}",
            c.problems
        );
        let read: Vec<_> = c.events.iter().map(|e| e.locator.clone()).collect();
        let others: Vec<_> = (1..=n)
            .filter(|&r| r != hit)
            .map(|r| format!("chunk 0 record {r}"))
            .collect();
        assert_eq!(read, others);

        // Cut in the middle of the last record: the ones before it are read.
        let last = *offsets.last().unwrap();
        let cut = &bytes[..last + 40];
        let c = parse(cut);
        assert_eq!(c.events.len(), n - 1, "{:?}", c.problems);
        assert!(
            c.problems
                .iter()
                .any(|p| p.locator == format!("chunk 0 record {n}")),
            "{:?}",
            c.problems
        );
        assert!(
            c.problems
                .iter()
                .any(|p| p.locator == "chunk 0 (byte 4096)" && p.message.contains("ends inside")),
            "{:?}",
            c.problems
        );
    }

    #[test]
    fn a_damaged_chunk_is_a_problem_and_the_next_chunk_is_read() {
        // Two real chunks in one file: the header of one sample, then the
        // chunks of two.
        let all = samples();
        let (a, b) = (&all[0].1, &all[1].1);
        let (na, nb) = (parse(a).events.len(), parse(b).events.len());
        let mut two = a[..FILE_HEADER + CHUNK].to_vec();
        two.extend_from_slice(&b[FILE_HEADER..FILE_HEADER + CHUNK]);
        let c = parse(&two);
        assert_eq!(c.events.len(), na + nb, "{:?}", c.problems);

        // The first chunk's header overwritten: a problem, the second read.
        let mut broken = two.clone();
        for x in &mut broken[FILE_HEADER..FILE_HEADER + 16] {
            *x = 0x5A;
        }
        let c = parse(&broken);
        assert_eq!(c.events.len(), nb);
        assert!(c.events.iter().all(|e| e.locator.starts_with("chunk 1 ")));
        assert_eq!(c.problems.len(), 1, "{:?}", c.problems);
        assert_eq!(c.problems[0].locator, "chunk 0 (byte 4096)");

        // Bytes of the first chunk's records overwritten: its checksum says so.
        let mut smudged = two.clone();
        let first = record_offsets(&two)[0];
        for x in &mut smudged[first + 24..first + 64] {
            *x = 0;
        }
        let c = parse(&smudged);
        assert!(
            c.problems.iter().any(|p| p.message.contains("checksums")),
            "{:?}",
            c.problems
        );
        assert!(
            c.events
                .iter()
                .filter(|e| e.locator.starts_with("chunk 1 "))
                .count()
                == nb
        );

        // The file header lost: still read.
        let mut headless = two.clone();
        headless[..8].copy_from_slice(b"XXXXXXXX");
        let c = parse(&headless);
        assert_eq!(c.events.len(), na + nb);
        assert_eq!(c.problems[0].locator, "byte 0");

        let c = parse(b"not an event log at all");
        assert!(c.events.is_empty());
        assert_eq!(c.problems.len(), 1);
    }

    fn record(id: u64, provider: &str, data: Value) -> Value {
        serde_json::json!({"Event": {
            "System": {
                "Provider": {"#attributes": {"Name": provider}},
                "EventID": id,
                "TimeCreated": {"#attributes": {"SystemTime": "2024-01-02T03:04:05.123456Z"}},
                "EventRecordID": 77,
                "Channel": "Security",
                "Computer": "dc01.example.test",
            },
            "EventData": data,
        }})
    }

    /// The mapping of the events no sample holds, from renderings written
    /// after Microsoft's documentation of each event's fields.
    #[test]
    fn mapping_of_the_events_a_responder_looks_for() {
        let sec = "Microsoft-Windows-Security-Auditing";
        let e = event(
            &record(
                4625,
                sec,
                serde_json::json!({
                    "SubjectUserName": "-", "TargetUserName": "admin", "TargetDomainName": "CORP",
                    "LogonType": 3, "IpAddress": "203.0.113.8", "IpPort": "51000", "Status": "0xc000006d",
                }),
            ),
            1,
            0,
        );
        assert_eq!(e.action, "evtx.4625.logon_failed");
        assert_eq!(e.outcome.as_deref(), Some("failure"));
        assert_eq!(e.actor.as_deref(), Some("CORP\\admin"));
        assert_eq!(e.ip, "203.0.113.8".parse().ok());
        assert_eq!(e.attribute("LogonType"), Some("3"));
        assert_eq!(
            e.record_id.as_deref(),
            Some("dc01.example.test/Security/77")
        );
        assert_eq!(e.time_us, time_us("2024-01-02T03:04:05.123456Z").unwrap());

        let e = event(
            &record(
                4732,
                sec,
                serde_json::json!({
                    "SubjectUserName": "mallory", "SubjectDomainName": "CORP",
                    "TargetUserName": "Administrators", "TargetDomainName": "Builtin",
                    "MemberName": "-", "MemberSid": "S-1-5-21-1-2-3-1105",
                }),
            ),
            1,
            0,
        );
        assert_eq!(e.action, "evtx.4732.group_member_added");
        assert_eq!(e.actor.as_deref(), Some("CORP\\mallory"));
        assert_eq!(e.target.as_deref(), Some("Builtin\\Administrators"));
        assert_eq!(e.attribute("MemberSid"), Some("S-1-5-21-1-2-3-1105"));

        let script = "Write-Host 'é';".repeat(1000);
        let e = event(
            &record(
                4104,
                "Microsoft-Windows-PowerShell",
                serde_json::json!({
                    "MessageNumber": 1, "ScriptBlockText": script, "Path": "C:\\x.ps1",
                }),
            ),
            1,
            0,
        );
        assert_eq!(e.action, "evtx.4104.powershell_script_block");
        let kept = e.attribute("ScriptBlockText").unwrap();
        assert!(kept.len() <= SCRIPT_MAX + '…'.len_utf8() && kept.ends_with('…'));
        assert_eq!(
            e.attribute("ScriptBlockLength"),
            Some(script.len().to_string().as_str())
        );

        let e = event(
            &record(
                7045,
                "Service Control Manager",
                serde_json::json!({
                    "ServiceName": "updsvc", "ImagePath": "C:\\Windows\\Temp\\u.exe", "AccountName": "LocalSystem",
                }),
            ),
            1,
            0,
        );
        assert_eq!(e.action, "evtx.7045.service_installed");
        assert_eq!(e.target.as_deref(), Some("updsvc"));
        assert_eq!(e.attribute("ImagePath"), Some("C:\\Windows\\Temp\\u.exe"));

        let e = event(
            &record(
                3,
                "Microsoft-Windows-Sysmon",
                serde_json::json!({
                    "Image": "C:\\a.exe", "User": "CORP\\bob", "Initiated": "true",
                    "SourceIp": "10.0.0.5", "DestinationIp": "198.51.100.4", "DestinationPort": 443,
                }),
            ),
            1,
            0,
        );
        assert_eq!(e.action, "evtx.3.network_connection");
        assert_eq!(e.ip, "198.51.100.4".parse().ok());
        assert_eq!(e.actor.as_deref(), Some("CORP\\bob"));
        // Event 3 of another provider is not Sysmon's.
        assert_eq!(
            event(&record(3, "Other", serde_json::json!({})), 1, 0).action,
            "evtx.3"
        );
        // EventID with qualifiers, as the System log writes it.
        let mut v = record(7045, "Service Control Manager", serde_json::json!({}));
        v["Event"]["System"]["EventID"] =
            serde_json::json!({"#attributes": {"Qualifiers": 16384}, "#text": 7045});
        assert_eq!(event(&v, 1, 0).attribute("EventID"), Some("7045"));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        /// A real log with random bytes overwritten in its chunk header and
        /// records, then cut: the reader returns, quickly, never panics.
        #[test]
        fn mutated_evtx_never_panics(
            which in 0usize..6,
            edits in proptest::collection::vec((0usize..CHUNK, any::<u8>()), 1..32),
            cut in 0usize..(FILE_HEADER + CHUNK + 1),
        ) {
            let all = samples();
            let mut bytes = all[which % all.len()].1.clone();
            for (at, b) in edits {
                // Mostly the chunk header and the first records, where the
                // structure is; else anywhere in the chunk.
                let i = FILE_HEADER + if at % 4 == 0 { at } else { at % 8192 };
                bytes[i] = b;
            }
            bytes.truncate(cut.max(1));
            let start = std::time::Instant::now();
            let _ = parse(&bytes);
            prop_assert!(start.elapsed() < std::time::Duration::from_secs(5));
        }
    }
}
