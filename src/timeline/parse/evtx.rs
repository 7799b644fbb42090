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

use evtx::{EvtxChunkData, ParserSettings};
use serde_json::Value;

use super::{Sink, problem, time_us};
use crate::timeline::Event;

const SOURCE: &str = "evtx";
const FILE_HEADER: usize = 4096;
const CHUNK: usize = 65536;
/// How much of a PowerShell script block an event keeps.
pub const SCRIPT_MAX: usize = 4096;

/// Event data fields kept as attributes, under their own names, when present.
const KEPT: [&str; 22] = [
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
        chunk(k, &place, owned, &settings, sink);
    }
}

/// One chunk's records.
fn chunk(
    k: usize,
    place: &str,
    data: Vec<u8>,
    settings: &Arc<ParserSettings>,
    sink: &mut dyn Sink,
) {
    let mut chunk_data = match EvtxChunkData::new(data, false) {
        Ok(c) => c,
        Err(e) => {
            sink.problem(problem(
                place,
                format!("not a readable chunk ({e}); skipping it"),
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
                format!("the chunk cannot be read ({e}); skipping it"),
            ));
            return;
        }
    };
    for record in chunk.iter() {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                sink.problem(problem(
                    format!("chunk {k}"),
                    format!("a record cannot be read: {e}"),
                ));
                continue;
            }
        };
        let id = record.event_record_id;
        let header_time = record.timestamp.as_microsecond();
        match record.into_json_value() {
            Ok(r) => {
                let mut e = event(&r.data, id, header_time);
                e.locator = format!("chunk {k} record {id}");
                sink.event(e);
            }
            Err(e) => sink.problem(problem(
                format!("chunk {k} record {id}"),
                format!("the record cannot be rendered: {e}"),
            )),
        }
    }
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
    e.record_id = Some(format!("{computer}/{channel}/{record_id}"));
    let data = data_of(ev);

    // Account management names the account acted on as its target.
    let object_event = matches!(id_num, Some(4720 | 4722..=4738 | 4756));
    let subject = account(data, "SubjectUserName", "SubjectDomainName");
    let targeted = account(data, "TargetUserName", "TargetDomainName");
    e.actor = if object_event {
        subject.clone()
    } else {
        targeted.clone().or(subject).or_else(|| field(data, "User"))
    };
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

    let mut summary = format!("{event_id}");
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
