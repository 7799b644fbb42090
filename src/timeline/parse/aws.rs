//! AWS logs: CloudTrail, VPC flow logs, S3 server access logs.

use serde::de::{DeserializeOwned, IgnoredAny};
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;

use super::{Record, Sink, ip, problem, str_at, text_at, time_us, to_us};
use crate::timeline::Event;

const CLOUDTRAIL: &str = "cloudtrail";
const VPC_FLOW: &str = "vpc_flow";
const S3_ACCESS: &str = "s3_access";
/// The action of a flow log row whose `log-status` is `NODATA`: no traffic
/// to or from the interface in the interval.
pub const FLOW_NODATA: &str = "flow.nodata";
/// The action of a `SKIPDATA` row: flow records of the interval were
/// skipped (capacity, an internal error): a gap in the logging.
pub const FLOW_SKIPDATA: &str = "flow.skipdata";

/// A CloudTrail log file, `{"Records": [...]}`, read one record at a time
/// so that a truncated or damaged file still yields every record before the
/// damage (and after it, when the damaged record's brackets still balance).
pub fn cloudtrail(bytes: &[u8], sink: &mut dyn Sink) {
    let Some(mut pos) = records_array(bytes) else {
        sink.problem(problem(
            "byte 0",
            "not a CloudTrail log file: no top-level Records array",
        ));
        return;
    };
    pos = skip_ws(bytes, pos);
    if bytes.get(pos) == Some(&b']') {
        return;
    }
    let mut i = 0usize;
    loop {
        let start = skip_ws(bytes, pos);
        let locator = format!("Records[{i}]");
        if start >= bytes.len() {
            sink.problem(problem(
                format!("{locator} (byte {start})"),
                "the file ends inside the Records array: truncated",
            ));
            return;
        }
        match next_value::<Value>(bytes, start) {
            Ok((record, end)) => {
                let raw = bytes.get(start..end).unwrap_or_default();
                cloudtrail_record(&record, raw, locator, sink);
                pos = end;
            }
            Err((why, at)) => {
                let here = format!("{locator} (byte {start})");
                let Some(end) = skip_damaged(bytes, start) else {
                    sink.problem(problem(
                        here,
                        format!(
                            "truncated or damaged record ({why} at byte {at}); nothing after it can be read"
                        ),
                    ));
                    return;
                };
                sink.problem(problem(
                    here,
                    format!("damaged record ({why} at byte {at}); skipped to its closing brace"),
                ));
                pos = end;
            }
        }
        i += 1;
        pos = skip_ws(bytes, pos);
        match bytes.get(pos) {
            Some(b',') => pos += 1,
            Some(b']') => return,
            None => {
                sink.problem(problem(
                    format!("Records[{i}] (byte {pos})"),
                    "the file ends inside the Records array: truncated",
                ));
                return;
            }
            Some(&c) => {
                sink.problem(problem(
                    format!("Records[{i}] (byte {pos})"),
                    format!(
                        "expected ',' or ']' after a record, found {:?}; nothing after it can be read",
                        char::from(c)
                    ),
                ));
                return;
            }
        }
    }
}

/// CloudTrail records one per line: LookupEvents' `CloudTrailEvent`, or the
/// whole LookupEvents event holding it.
pub fn cloudtrail_lines(bytes: &[u8], sink: &mut dyn Sink) {
    for (n, line) in lines(bytes) {
        let locator = format!("line {n}");
        let value = match serde_json::from_slice::<Value>(line) {
            Ok(v) => v,
            Err(e) => {
                sink.problem(problem(locator, format!("not a JSON record: {e}")));
                continue;
            }
        };
        match str_at(&value, &["CloudTrailEvent"]) {
            // The record is the string LookupEvents holds.
            Some(inner) => match serde_json::from_str::<Value>(inner) {
                Ok(record) => cloudtrail_record(&record, inner.as_bytes(), locator, sink),
                Err(e) => sink.problem(problem(
                    locator,
                    format!("CloudTrailEvent is not a JSON record: {e}"),
                )),
            },
            None => cloudtrail_record(&value, line, locator, sink),
        }
    }
}

/// The field names of the default (version 2) flow log format, in order.
const FLOW_DEFAULT: [&str; 14] = [
    "version",
    "account-id",
    "interface-id",
    "srcaddr",
    "dstaddr",
    "srcport",
    "dstport",
    "protocol",
    "packets",
    "bytes",
    "start",
    "end",
    "action",
    "log-status",
];

/// A flow log file as delivered to S3: the header line names the fields of
/// the log's format (default or custom), every record is mapped by it.
pub fn vpc_flow(bytes: &[u8], sink: &mut dyn Sink) {
    let mut it = lines(bytes);
    let header: Option<Vec<String>> = it.next().and_then(|(_, line)| {
        let fields: Vec<String> = String::from_utf8_lossy(line)
            .split_whitespace()
            .map(|f| {
                f.trim_start_matches("${")
                    .trim_end_matches('}')
                    .replace('_', "-")
            })
            .collect();
        let named = fields.iter().all(|f| {
            f.bytes().any(|b| b.is_ascii_alphabetic())
                && f.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
        (named && fields.iter().any(|f| f == "start")).then_some(fields)
    });
    let Some(fields) = header else {
        sink.problem(problem(
            "line 1",
            "no header line naming the fields (such as `version account-id interface-id ... start end action log-status`); the records cannot be mapped",
        ));
        return;
    };
    for (n, line) in it {
        let locator = format!("line {n}");
        let text = String::from_utf8_lossy(line);
        let values: Vec<&str> = text.split_whitespace().collect();
        // Flow log files joined end to end repeat their header.
        if values.iter().eq(fields.iter()) {
            continue;
        }
        match flow_record(&fields, &values) {
            Ok(mut e) => {
                e.locator = locator;
                sink.record(e, Record::bytes(line));
            }
            Err(why) => sink.problem(problem(locator, why)),
        }
    }
}

/// Flow log events exported from CloudWatch Logs, one JSON event per line,
/// the record in `message` in the default field order.
pub fn vpc_flow_cloudwatch(bytes: &[u8], sink: &mut dyn Sink) {
    let fields = FLOW_DEFAULT.map(str::to_owned);
    for (n, line) in lines(bytes) {
        let locator = format!("line {n}");
        let value = match serde_json::from_slice::<Value>(line) {
            Ok(v) => v,
            Err(e) => {
                sink.problem(problem(locator, format!("not a JSON log event: {e}")));
                continue;
            }
        };
        let Some(message) = str_at(&value, &["message"]) else {
            sink.problem(problem(locator, "log event without a message"));
            continue;
        };
        let values: Vec<&str> = message.split_whitespace().collect();
        if values.len() != fields.len() {
            // A custom format's gap rows still say what they are.
            if let Some(mut e) = flow_gap_unmapped(&values, &value) {
                e.locator = locator;
                sink.record(e, Record::json(line, &value));
                continue;
            }
            sink.problem(problem(
                locator,
                format!(
                    "{} fields where the default flow log format has {}; a custom format cannot be mapped without its header",
                    values.len(),
                    fields.len()
                ),
            ));
            continue;
        }
        match flow_record(&fields, &values) {
            Ok(mut e) => {
                e.record_id = text_at(&value, &["eventId"]);
                if let Some(stream) = str_at(&value, &["logStreamName"]) {
                    e.attributes.push(("log_stream".into(), stream.to_owned()));
                }
                e.locator = locator;
                sink.record(e, Record::json(line, &value));
            }
            Err(why) => sink.problem(problem(locator, why)),
        }
    }
}

/// Longest message summary kept on an event; the artefact keeps the whole.
const MESSAGE_SUMMARY: usize = 500;

/// Any CloudWatch Logs group's events as custody's collector writes them:
/// the event's time, its stream as the target, its message (cut to
/// 500 characters) as the summary. Lambda's own lines
/// (`START`, `END`, `REPORT RequestId: …`) become `lambda.start`,
/// `lambda.end`, `lambda.report` with the request id; other lines are
/// `log`, with `level` and `request_id` kept when the message is JSON
/// that names them.
pub fn cloudwatch_logs(bytes: &[u8], sink: &mut dyn Sink) {
    for (n, line) in lines(bytes) {
        let locator = format!("line {n}");
        let value = match serde_json::from_slice::<Value>(line) {
            Ok(v) => v,
            Err(e) => {
                sink.problem(problem(locator, format!("not a JSON log event: {e}")));
                continue;
            }
        };
        let Some(ms) = value.get("timestamp").and_then(Value::as_i64) else {
            sink.problem(problem(locator, "log event without a timestamp"));
            continue;
        };
        let message = str_at(&value, &["message"]).unwrap_or_default();
        let first = message.split_whitespace().next().unwrap_or_default();
        let request_id = message
            .split_once("RequestId: ")
            .and_then(|(_, rest)| rest.split_whitespace().next());
        let action = match first {
            "START" if request_id.is_some() => "lambda.start",
            "END" if request_id.is_some() => "lambda.end",
            "REPORT" if request_id.is_some() => "lambda.report",
            _ => "log",
        };
        let mut e = Event::new(ms.saturating_mul(1000), "cloudwatch", action);
        e.target = str_at(&value, &["logStreamName"]).map(str::to_owned);
        e.record_id = text_at(&value, &["eventId"]);
        e.message = message.chars().take(MESSAGE_SUMMARY).collect();
        push(&mut e.attributes, "request_id", request_id);
        if let Ok(inner) = serde_json::from_str::<Value>(message) {
            for (name, keys) in [
                ("level", &["level", "severity", "levelname"][..]),
                (
                    "request_id",
                    &["requestId", "request_id", "AWSRequestId"][..],
                ),
            ] {
                let v = keys.iter().find_map(|k| text_at(&inner, &[k]));
                if e.attribute(name).is_none() {
                    push(&mut e.attributes, name, v);
                }
            }
        }
        e.locator = locator;
        sink.record(e, Record::json(line, &value));
    }
}

/// S3 server access log records, one per line.
pub fn s3_access(bytes: &[u8], sink: &mut dyn Sink) {
    for (n, line) in lines(bytes) {
        let locator = format!("line {n}");
        match s3_record(&String::from_utf8_lossy(line)) {
            Ok(mut e) => {
                e.locator = locator;
                sink.record(e, Record::bytes(line));
            }
            Err(why) => sink.problem(problem(locator, why)),
        }
    }
}

/// Non-blank lines with their 1-based numbers, trimmed.
fn lines(bytes: &[u8]) -> impl Iterator<Item = (usize, &[u8])> {
    bytes
        .split(|&b| b == b'\n')
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim_ascii()))
        .filter(|(_, l)| !l.is_empty())
}

fn push(attrs: &mut Vec<(String, String)>, name: &str, value: Option<impl Into<String>>) {
    if let Some(v) = value {
        attrs.push((name.to_owned(), v.into()));
    }
}

// ---- CloudTrail ----

pub(super) fn skip_ws(bytes: &[u8], mut pos: usize) -> usize {
    while bytes.get(pos).is_some_and(|b| b.is_ascii_whitespace()) {
        pos += 1;
    }
    pos
}

/// One JSON value starting at `at`: the value and the offset just after it,
/// or why it could not be read and the offset where that was found.
fn next_value<T: DeserializeOwned>(bytes: &[u8], at: usize) -> Result<(T, usize), (String, usize)> {
    let rest = bytes.get(at..).unwrap_or_default();
    let mut stream = serde_json::Deserializer::from_slice(rest).into_iter::<T>();
    match stream.next() {
        Some(Ok(v)) => Ok((v, at + stream.byte_offset())),
        Some(Err(e)) => {
            let text = e.to_string();
            // serde_json places errors by line and column of the slice; the
            // caller reports an offset in the file instead.
            let why = text
                .rsplit_once(" at line ")
                .map_or(text.as_str(), |(w, _)| w)
                .to_owned();
            // At the end of the input serde_json points at the last byte; the
            // damage is where the bytes stop.
            let at = if e.is_eof() {
                bytes.len()
            } else {
                at + offset_of(rest, e.line(), e.column())
            };
            Err((why, at))
        }
        None => Err(("end of file".into(), bytes.len())),
    }
}

/// The byte offset of a 1-based line and column.
fn offset_of(bytes: &[u8], line: usize, column: usize) -> usize {
    let line_start = if line <= 1 {
        0
    } else {
        bytes
            .iter()
            .enumerate()
            .filter(|&(_, &b)| b == b'\n')
            .nth(line - 2)
            .map_or(bytes.len(), |(i, _)| i + 1)
    };
    (line_start + column.saturating_sub(1)).min(bytes.len())
}

/// The offset just inside the top-level `Records` array, if there is one.
fn records_array(bytes: &[u8]) -> Option<usize> {
    let bytes_no_bom = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let bom = bytes.len() - bytes_no_bom.len();
    let mut pos = skip_ws(bytes, bom);
    if bytes.get(pos) != Some(&b'{') {
        return None;
    }
    pos += 1;
    loop {
        pos = skip_ws(bytes, pos);
        match bytes.get(pos)? {
            b'}' => return None,
            b',' => {
                pos += 1;
                continue;
            }
            _ => {}
        }
        let (key, end) = next_value::<String>(bytes, pos).ok()?;
        pos = skip_ws(bytes, end);
        if bytes.get(pos) != Some(&b':') {
            return None;
        }
        pos = skip_ws(bytes, pos + 1);
        if key == "Records" {
            return (bytes.get(pos) == Some(&b'[')).then_some(pos + 1);
        }
        let (_, end) = next_value::<IgnoredAny>(bytes, pos).ok()?;
        pos = end;
    }
}

/// The end of a damaged object or array starting at `start`, found by
/// matching brackets outside strings; None when the file ends first.
pub(super) fn skip_damaged(bytes: &[u8], start: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for (k, &b) in bytes.get(start..)?.iter().enumerate() {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => depth += 1,
            b'}' | b']' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(start + k + 1);
                }
            }
            _ => {}
        }
    }
    None
}

/// One CloudTrail record (the same in log files and LookupEvents) to an
/// event; `raw` is the record's bytes.
pub(super) fn cloudtrail_record(r: &Value, raw: &[u8], locator: String, sink: &mut dyn Sink) {
    let insight = str_at(r, &["eventCategory"]) == Some("Insight")
        || str_at(r, &["eventType"]) == Some("AwsCloudTrailInsight");
    if insight {
        match insight_record(r) {
            Ok(mut e) => {
                e.locator = locator;
                sink.record(e, Record::json(raw, r));
            }
            Err(why) => sink.problem(problem(locator, why)),
        }
        return;
    }
    let Some(name) = str_at(r, &["eventName"]) else {
        sink.problem(problem(locator, "record without an eventName; skipped"));
        return;
    };
    let Some(when) = str_at(r, &["eventTime"]) else {
        sink.problem(problem(locator, "record without an eventTime; skipped"));
        return;
    };
    let Some(t) = time_us(when) else {
        sink.problem(problem(
            locator,
            format!("eventTime {when:?} is not a time; skipped"),
        ));
        return;
    };
    let who = |k: &str| str_at(r, &["userIdentity", k]);
    let mut e = Event::new(t, CLOUDTRAIL, name);
    e.account = str_at(r, &["recipientAccountId"])
        .or_else(|| who("accountId"))
        .map(str::to_owned);
    // AWSService identities name only the service that acted.
    e.actor = who("arn")
        .or_else(|| who("userName"))
        .or_else(|| who("principalId"))
        .or_else(|| who("invokedBy"))
        .map(str::to_owned);
    let error_code = str_at(r, &["errorCode"]);
    // A failed console sign-in carries no errorCode, only its response.
    let failed = error_code.is_some()
        || (name == "ConsoleLogin"
            && str_at(r, &["responseElements", "ConsoleLogin"]) == Some("Failure"));
    let outcome = if failed { "failure" } else { "success" };
    e.outcome = Some(outcome.to_owned());
    let source = str_at(r, &["sourceIPAddress"]);
    e.ip = source.and_then(ip);
    e.user_agent = str_at(r, &["userAgent"]).map(str::to_owned);
    e.target = cloudtrail_target(r);
    e.record_id = str_at(r, &["eventID"]).map(str::to_owned);
    let event_source = str_at(r, &["eventSource"]);
    let a = &mut e.attributes;
    push(a, "event_source", event_source);
    push(a, "region", str_at(r, &["awsRegion"]));
    if e.ip.is_none() {
        push(a, "source_service", source);
    }
    push(a, "error_code", error_code);
    push(a, "error_message", str_at(r, &["errorMessage"]));
    push(a, "identity_type", who("type"));
    push(a, "access_key_id", who("accessKeyId"));
    push(
        a,
        "mfa_used",
        text_at(r, &["additionalEventData", "MFAUsed"]),
    );
    push(a, "event_type", str_at(r, &["eventType"]));
    push(a, "read_only", text_at(r, &["readOnly"]));
    let mut message = format!("{} {name}", e.actor.as_deref().unwrap_or("(unknown)"));
    if let Some(s) = event_source {
        message.push_str(&format!(" ({s})"));
    }
    if let Some(s) = source {
        message.push_str(&format!(" from {s}"));
    }
    message.push_str(&format!(": {outcome}"));
    if let Some(code) = error_code {
        message.push_str(&format!(" ({code})"));
    }
    e.message = message;
    e.locator = locator;
    sink.record(e, Record::json(raw, r));
}

/// A CloudTrail Insights event: the start or the end of unusual activity
/// on one API (`insightDetails`), measured against its baseline. It has no
/// top-level `eventName` and no identity: the action is
/// `Insight:<insightType>`, the target the API (`source:name`), and the
/// state, the averages per minute and the identities, user agents and
/// error codes CloudTrail attributes the activity to are attributes.
fn insight_record(r: &Value) -> Result<Event, String> {
    let when = str_at(r, &["eventTime"]).ok_or("Insights event without an eventTime; skipped")?;
    let t = time_us(when).ok_or_else(|| format!("eventTime {when:?} is not a time; skipped"))?;
    let d = |path: &[&str]| {
        let mut full = vec!["insightDetails"];
        full.extend_from_slice(path);
        text_at(r, &full)
    };
    let kind = d(&["insightType"]).unwrap_or_else(|| "(unknown)".to_owned());
    let mut e = Event::new(t, CLOUDTRAIL, format!("Insight:{kind}"));
    e.account = str_at(r, &["recipientAccountId"]).map(str::to_owned);
    e.record_id = str_at(r, &["eventID"]).map(str::to_owned);
    let source = d(&["eventSource"]);
    let name = d(&["eventName"]);
    e.target = match (&source, &name) {
        (Some(s), Some(n)) => Some(format!("{s}:{n}")),
        (None, Some(n)) => Some(n.clone()),
        (Some(s), None) => Some(s.clone()),
        (None, None) => None,
    };
    let state = d(&["state"]);
    let stat = |which: &str| d(&["insightContext", "statistics", which, "average"]);
    let (baseline, observed) = (stat("baseline"), stat("insight"));
    let error_code = d(&["errorCode"]);
    let a = &mut e.attributes;
    push(a, "insight_state", state.clone());
    push(a, "insight_type", Some(kind.clone()));
    push(a, "event_source", source);
    push(a, "event_name", name);
    push(a, "error_code", error_code.clone());
    push(a, "baseline_average", baseline.clone());
    push(a, "insight_average", observed.clone());
    push(
        a,
        "insight_duration_minutes",
        d(&["insightContext", "statistics", "insightDuration"]),
    );
    push(
        a,
        "baseline_duration_minutes",
        d(&["insightContext", "statistics", "baselineDuration"]),
    );
    push(a, "shared_event_id", str_at(r, &["sharedEventID"]));
    push(a, "region", str_at(r, &["awsRegion"]));
    push(a, "event_type", str_at(r, &["eventType"]));
    // Who and what CloudTrail attributes the unusual activity to: the
    // values of each attribution, most active first.
    for attribution in r
        .pointer("/insightDetails/insightContext/attributions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let Some(what) = str_at(attribution, &["attribute"]) else {
            continue;
        };
        let values: Vec<String> = attribution
            .get("insight")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|v| text_at(v, &["value"]))
            .collect();
        if !values.is_empty() {
            a.push((format!("attributed_{}", snake(what)), values.join(", ")));
        }
    }
    let mut message = format!(
        "CloudTrail Insights: {kind} {} on {}",
        state
            .as_deref()
            .unwrap_or("(no state)")
            .to_ascii_lowercase(),
        e.target.as_deref().unwrap_or("(unknown API)")
    );
    if let Some(code) = &error_code {
        message.push_str(&format!(" ({code})"));
    }
    if let (Some(b), Some(i)) = (&baseline, &observed) {
        message.push_str(&format!(": {i} per minute against a baseline of {b}"));
    }
    e.message = message;
    Ok(e)
}

/// `userIdentityArn` as `user_identity_arn`.
fn snake(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    for c in name.chars() {
        if c.is_ascii_uppercase() {
            if !out.is_empty() {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// What a record acted on: its resources' ARNs, else what its request names.
fn cloudtrail_target(r: &Value) -> Option<String> {
    let arns: Vec<&str> = r
        .get("resources")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|res| str_at(res, &["ARN"]).or_else(|| str_at(res, &["arn"])))
        .collect();
    if !arns.is_empty() {
        return Some(arns.join(", "));
    }
    let param = |k: &str| str_at(r, &["requestParameters", k]);
    if let Some(bucket) = param("bucketName") {
        return Some(match param("key") {
            Some(key) => format!("{bucket}/{key}"),
            None => bucket.to_owned(),
        });
    }
    ["instanceId", "roleArn", "userName"]
        .into_iter()
        .find_map(param)
        .map(str::to_owned)
}

// ---- VPC flow logs ----

/// One flow record by its field names, Err for a record that cannot be
/// read. A record that says no traffic was logged (`log-status` `NODATA`
/// or `SKIPDATA`) is an event of its own: [`FLOW_NODATA`], [`FLOW_SKIPDATA`].
fn flow_record(fields: &[String], values: &[&str]) -> Result<Event, String> {
    if values.len() != fields.len() {
        return Err(format!(
            "{} fields where the header names {}",
            values.len(),
            fields.len()
        ));
    }
    let get = |name: &str| {
        fields
            .iter()
            .position(|f| f == name)
            .and_then(|i| values.get(i))
            .copied()
            .filter(|v| *v != "-")
    };
    if let Some(status @ ("NODATA" | "SKIPDATA")) = get("log-status") {
        let start = get("start").unwrap_or("-");
        let Ok(start) = start.parse::<i64>() else {
            return Err(format!("start {start:?} is not a Unix time"));
        };
        let end = get("end").and_then(|s| s.parse::<i64>().ok());
        let mut e = flow_gap(status, start, end, get("interface-id"));
        e.account = get("account-id").map(str::to_owned);
        for name in ["vpc-id", "subnet-id", "instance-id"] {
            push(&mut e.attributes, &name.replace('-', "_"), get(name));
        }
        return Ok(e);
    }
    let start = get("start").unwrap_or("-");
    let Ok(start) = start.parse::<i64>() else {
        return Err(format!("start {start:?} is not a Unix time"));
    };
    let mut e = Event::new(start.saturating_mul(1_000_000), VPC_FLOW, "flow");
    e.account = get("account-id").map(str::to_owned);
    let action = get("action");
    e.outcome = action.map(str::to_lowercase);
    let src = get("srcaddr");
    e.ip = src.and_then(ip);
    let protocol = get("protocol").map(protocol_name);
    let dst_port = get("dstport");
    let src_port = get("srcport");
    let dst = get("dstaddr");
    e.target = dst.map(|d| {
        let mut t = endpoint(d, dst_port);
        if let Some(p) = &protocol {
            t.push('/');
            t.push_str(p);
        }
        t
    });
    let end = get("end")
        .and_then(|s| s.parse::<i64>().ok())
        .and_then(|s| OffsetDateTime::from_unix_timestamp(s).ok())
        .and_then(|t| t.format(&Rfc3339).ok());
    let interface = get("interface-id");
    let packets = get("packets");
    let bytes = get("bytes");
    let a = &mut e.attributes;
    push(a, "interface_id", interface);
    push(a, "src_port", src_port);
    push(a, "dst_ip", dst);
    push(a, "dst_port", dst_port);
    push(a, "protocol", protocol.clone());
    push(a, "packets", packets);
    push(a, "bytes", bytes);
    push(a, "end", end);
    // Custom formats: where the flow is, and the true addresses behind a NAT or load balancer.
    for name in [
        "vpc-id",
        "subnet-id",
        "instance-id",
        "flow-direction",
        "pkt-srcaddr",
        "pkt-dstaddr",
        "tcp-flags",
    ] {
        push(a, &name.replace('-', "_"), get(name));
    }
    let mut message = format!(
        "{} -> {} {}",
        endpoint(src.unwrap_or("-"), src_port),
        e.target.as_deref().unwrap_or("-"),
        action.unwrap_or("-")
    );
    let details: Vec<String> = [
        interface.map(str::to_owned),
        packets.map(|p| format!("{p} packets")),
        bytes.map(|b| format!("{b} bytes")),
    ]
    .into_iter()
    .flatten()
    .collect();
    if !details.is_empty() {
        message.push_str(&format!(" ({})", details.join(", ")));
    }
    e.message = message;
    Ok(e)
}

/// A `NODATA` or `SKIPDATA` row: the interval with no flow records, and why.
fn flow_gap(status: &str, start: i64, end: Option<i64>, interface: Option<&str>) -> Event {
    let action = if status == "NODATA" {
        FLOW_NODATA
    } else {
        FLOW_SKIPDATA
    };
    let mut e = Event::new(start.saturating_mul(1_000_000), VPC_FLOW, action);
    let end = end
        .and_then(|s| OffsetDateTime::from_unix_timestamp(s).ok())
        .and_then(|t| t.format(&Rfc3339).ok());
    let a = &mut e.attributes;
    push(a, "log_status", Some(status));
    push(a, "interface_id", interface);
    push(a, "end", end.clone());
    let what = if status == "NODATA" {
        "no traffic recorded"
    } else {
        "flow records skipped: a gap in the flow log"
    };
    e.message = format!(
        "{} {status}: {what} until {}",
        interface.unwrap_or("-"),
        end.as_deref().unwrap_or("-")
    );
    e
}

/// A CloudWatch Logs flow record in a custom format, which cannot be mapped
/// without the format: still a gap row when a field says `NODATA` or
/// `SKIPDATA`. Its interface is the field that names one, its account the
/// 12-digit field, its interval the two Unix times (the other fields of
/// such rows are `-`); without them, the log event's time.
fn flow_gap_unmapped(values: &[&str], event: &Value) -> Option<Event> {
    let status = values
        .iter()
        .copied()
        .find(|v| matches!(*v, "NODATA" | "SKIPDATA"))?;
    let numbers = |len: usize| {
        values
            .iter()
            .filter(move |v| v.len() == len && v.bytes().all(|b| b.is_ascii_digit()))
            .copied()
    };
    let times: Vec<i64> = numbers(10).filter_map(|v| v.parse().ok()).collect();
    let start = match times.iter().min() {
        Some(&s) => s,
        None => event.get("timestamp").and_then(Value::as_i64)? / 1000,
    };
    let end = times.iter().max().copied().filter(|&e| e != start);
    let interface = values.iter().copied().find(|v| v.starts_with("eni-"));
    let mut e = flow_gap(status, start, end, interface);
    e.account = numbers(12).next().map(str::to_owned);
    e.record_id = text_at(event, &["eventId"]);
    push(
        &mut e.attributes,
        "log_stream",
        str_at(event, &["logStreamName"]),
    );
    push(
        &mut e.attributes,
        "format",
        Some("custom, not mapped: interval and interface read from the values"),
    );
    Some(e)
}

/// `addr:port`, with an IPv6 address bracketed; `addr` alone without a port.
fn endpoint(addr: &str, port: Option<&str>) -> String {
    match port {
        Some(p) if addr.contains(':') => format!("[{addr}]:{p}"),
        Some(p) => format!("{addr}:{p}"),
        None => addr.to_owned(),
    }
}

/// IANA protocol numbers flow logs carry, named where common.
fn protocol_name(number: &str) -> String {
    match number {
        "1" => "icmp",
        "6" => "tcp",
        "17" => "udp",
        "58" => "icmpv6",
        other => other,
    }
    .to_owned()
}

// ---- S3 server access logs ----

/// Fields of an access log record, by position.
mod s3 {
    pub const BUCKET_OWNER: usize = 0;
    pub const BUCKET: usize = 1;
    pub const TIME: usize = 2;
    pub const REMOTE_IP: usize = 3;
    pub const REQUESTER: usize = 4;
    pub const REQUEST_ID: usize = 5;
    pub const OPERATION: usize = 6;
    pub const KEY: usize = 7;
    pub const REQUEST_URI: usize = 8;
    pub const HTTP_STATUS: usize = 9;
    pub const ERROR_CODE: usize = 10;
    pub const BYTES_SENT: usize = 11;
    pub const USER_AGENT: usize = 16;
    pub const AUTH_TYPE: usize = 21;
    pub const TLS_VERSION: usize = 23;
}

fn s3_record(line: &str) -> Result<Event, String> {
    let f = s3_tokens(line)?;
    // Old logs stop early; the fields up to the status are always there.
    if f.len() <= s3::HTTP_STATUS {
        return Err(format!(
            "{} fields; an access log record has at least {}",
            f.len(),
            s3::HTTP_STATUS + 1
        ));
    }
    let get = |i: usize| f.get(i).copied().filter(|v| *v != "-" && !v.is_empty());
    let when = get(s3::TIME).unwrap_or("-");
    let t = OffsetDateTime::parse(
        when,
        format_description!(
            "[day]/[month repr:short]/[year]:[hour]:[minute]:[second] [offset_hour sign:mandatory][offset_minute]"
        ),
    )
    .map_err(|e| format!("time [{when}] cannot be read: {e}"))?;
    let operation = get(s3::OPERATION).ok_or("record without an operation")?;
    let status = match get(s3::HTTP_STATUS) {
        None => None,
        Some(s) => Some(
            s.parse::<u16>()
                .map_err(|_| format!("HTTP status {s:?} is not a number"))?,
        ),
    };
    let mut e = Event::new(to_us(t), S3_ACCESS, operation);
    e.actor = get(s3::REQUESTER).map(str::to_owned);
    e.outcome = status.map(|s| if s < 400 { "success" } else { "failure" }.to_owned());
    let remote = get(s3::REMOTE_IP);
    e.ip = remote.and_then(ip);
    e.user_agent = get(s3::USER_AGENT).map(str::to_owned);
    e.target = get(s3::BUCKET).map(|b| match get(s3::KEY) {
        Some(k) => format!("{b}/{k}"),
        None => b.to_owned(),
    });
    e.record_id = get(s3::REQUEST_ID).map(str::to_owned);
    let error_code = get(s3::ERROR_CODE);
    let a = &mut e.attributes;
    push(a, "http_status", get(s3::HTTP_STATUS));
    push(a, "error_code", error_code);
    push(a, "bytes_sent", get(s3::BYTES_SENT));
    push(a, "request_uri", get(s3::REQUEST_URI));
    push(a, "bucket_owner", get(s3::BUCKET_OWNER));
    push(a, "auth_type", get(s3::AUTH_TYPE));
    push(a, "tls_version", get(s3::TLS_VERSION));
    let mut message = format!(
        "{} {operation} {}",
        e.actor.as_deref().unwrap_or("(anonymous)"),
        e.target.as_deref().unwrap_or("-")
    );
    if let Some(r) = remote {
        message.push_str(&format!(" from {r}"));
    }
    message.push_str(&format!(": {}", get(s3::HTTP_STATUS).unwrap_or("-")));
    if let Some(code) = error_code {
        message.push_str(&format!(" {code}"));
    }
    e.message = message;
    Ok(e)
}

/// Space-separated fields, where `"quoted strings"` and `[bracketed times]`
/// are one field each, without their quotes or brackets.
fn s3_tokens(line: &str) -> Result<Vec<&str>, String> {
    let mut out = Vec::new();
    let mut rest = line;
    loop {
        rest = rest.trim_start_matches(' ');
        if rest.is_empty() {
            return Ok(out);
        }
        let (token, after) = if let Some(inner) = rest.strip_prefix('"') {
            let end = closing_quote(inner).ok_or("a quoted field is not closed")?;
            (inner.get(..end), inner.get(end + 1..))
        } else if let Some(inner) = rest.strip_prefix('[') {
            let end = inner.find(']').ok_or("a [bracketed] field is not closed")?;
            (inner.get(..end), inner.get(end + 1..))
        } else {
            let end = rest.find(' ').unwrap_or(rest.len());
            (rest.get(..end), rest.get(end..))
        };
        let (Some(token), Some(after)) = (token, after) else {
            return Err("a field cannot be split".into());
        };
        if !(after.is_empty() || after.starts_with(' ')) {
            return Err(format!("no space after the field {token:?}"));
        }
        out.push(token);
        rest = after;
    }
}

/// The closing quote of a quoted field: a `"` not escaped by a backslash and
/// followed by a space or the end of the line, so that a stray quote inside a
/// user agent does not end it.
fn closing_quote(inner: &str) -> Option<usize> {
    let b = inner.as_bytes();
    let mut escaped = false;
    for (i, &c) in b.iter().enumerate() {
        if escaped {
            escaped = false;
        } else if c == b'\\' {
            escaped = true;
        } else if c == b'"' && b.get(i + 1).is_none_or(|&n| n == b' ') {
            return Some(i);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timeline::parse::{Collect, Format, parse_file};

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!(
            "{}/tests/fixtures/logs/aws/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn run(f: fn(&[u8], &mut dyn Sink), bytes: &[u8]) -> Collect {
        let mut c = Collect::default();
        f(bytes, &mut c);
        c
    }

    fn attrs(e: &Event) -> Vec<(&str, &str)> {
        e.attributes
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }

    fn us(rfc3339: &str) -> i64 {
        time_us(rfc3339).unwrap()
    }

    /// Byte offset of the start of 0-based line `n`.
    fn line_start(bytes: &[u8], n: usize) -> usize {
        if n == 0 {
            return 0;
        }
        bytes
            .iter()
            .enumerate()
            .filter(|&(_, &b)| b == b'\n')
            .nth(n - 1)
            .unwrap()
            .0
            + 1
    }

    #[test]
    fn cloudtrail_maps_every_record_type() {
        let c = run(cloudtrail, &fixture("cloudtrail.json"));
        assert_eq!(c.events.len(), 6);
        assert_eq!(c.problems.len(), 1);
        let p = &c.problems[0];
        assert_eq!(p.locator, "Records[5]");
        assert_eq!(p.message, "record without an eventTime; skipped");

        let ok = &c.events[0];
        assert_eq!(ok.time_us, us("2024-06-01T08:00:12Z"));
        assert_eq!(ok.source, "cloudtrail");
        assert_eq!(ok.account.as_deref(), Some("111122223333"));
        assert_eq!(
            ok.actor.as_deref(),
            Some("arn:aws:iam::111122223333:user/alice")
        );
        assert_eq!(ok.action, "ConsoleLogin");
        assert_eq!(ok.outcome.as_deref(), Some("success"));
        assert_eq!(ok.ip, "203.0.113.7".parse().ok());
        assert!(
            ok.user_agent
                .as_deref()
                .unwrap()
                .starts_with("Mozilla/5.0 (Windows NT 10.0")
        );
        assert_eq!(ok.target, None);
        assert_eq!(
            ok.record_id.as_deref(),
            Some("5b3c1f9e-0d2a-4c61-9f38-2a7e4d1c0a01")
        );
        assert_eq!(ok.locator, "Records[0]");
        assert_eq!(ok.member, "");
        assert_eq!(
            attrs(ok),
            vec![
                ("event_source", "signin.amazonaws.com"),
                ("region", "us-east-1"),
                ("identity_type", "IAMUser"),
                ("mfa_used", "Yes"),
                ("event_type", "AwsConsoleSignIn"),
                ("read_only", "false"),
            ]
        );
        assert_eq!(
            ok.message,
            "arn:aws:iam::111122223333:user/alice ConsoleLogin (signin.amazonaws.com) from 203.0.113.7: success"
        );

        let failed = &c.events[1];
        assert_eq!(failed.action, "ConsoleLogin");
        assert_eq!(failed.outcome.as_deref(), Some("failure"));
        assert_eq!(failed.ip, "198.51.100.23".parse().ok());
        assert_eq!(
            failed.attribute("error_message"),
            Some("Failed authentication")
        );
        assert_eq!(failed.attribute("error_code"), None);
        assert_eq!(failed.attribute("mfa_used"), Some("No"));
        assert_eq!(
            failed.message,
            "arn:aws:iam::111122223333:user/bob ConsoleLogin (signin.amazonaws.com) from 198.51.100.23: failure"
        );

        let assume = &c.events[2];
        assert_eq!(assume.action, "AssumeRole");
        assert_eq!(assume.actor.as_deref(), Some("ec2.amazonaws.com"));
        assert_eq!(assume.outcome.as_deref(), Some("success"));
        assert_eq!(assume.ip, None);
        assert_eq!(
            assume.target.as_deref(),
            Some("arn:aws:iam::111122223333:role/WebServerRole")
        );
        assert_eq!(
            attrs(assume),
            vec![
                ("event_source", "sts.amazonaws.com"),
                ("region", "us-east-1"),
                ("source_service", "ec2.amazonaws.com"),
                ("identity_type", "AWSService"),
                ("event_type", "AwsApiCall"),
                ("read_only", "true"),
            ]
        );
        assert_eq!(
            assume.message,
            "ec2.amazonaws.com AssumeRole (sts.amazonaws.com) from ec2.amazonaws.com: success"
        );

        let get = &c.events[3];
        assert_eq!(get.action, "GetObject");
        assert_eq!(
            get.actor.as_deref(),
            Some("arn:aws:sts::111122223333:assumed-role/WebServerRole/i-0123456789abcdef0")
        );
        assert_eq!(get.ip, "192.0.2.44".parse().ok());
        assert_eq!(
            get.target.as_deref(),
            Some(
                "arn:aws:s3:::example-finance-reports/2024/q1/payroll.csv, arn:aws:s3:::example-finance-reports"
            )
        );
        assert_eq!(get.attribute("identity_type"), Some("AssumedRole"));
        assert_eq!(get.attribute("access_key_id"), Some("ASIAEXAMPLESESSION01"));
        assert_eq!(get.attribute("read_only"), Some("true"));
        assert_eq!(get.locator, "Records[3]");

        let denied = &c.events[4];
        assert_eq!(denied.action, "CreateUser");
        assert_eq!(denied.outcome.as_deref(), Some("failure"));
        assert_eq!(denied.ip, "203.0.113.50".parse().ok());
        assert_eq!(denied.target.as_deref(), Some("svc-backup"));
        assert_eq!(denied.attribute("error_code"), Some("AccessDenied"));
        assert!(
            denied
                .attribute("error_message")
                .unwrap()
                .starts_with("User: arn:aws:sts::111122223333:assumed-role/WebServerRole")
        );
        assert_eq!(
            denied.message,
            "arn:aws:sts::111122223333:assumed-role/WebServerRole/i-0123456789abcdef0 CreateUser (iam.amazonaws.com) from 203.0.113.50: failure (AccessDenied)"
        );

        let console = &c.events[5];
        assert_eq!(console.action, "GetConsoleOutput");
        assert_eq!(console.target.as_deref(), Some("i-0fedcba9876543210"));
        assert_eq!(console.user_agent.as_deref(), Some("AWS Internal"));
        assert_eq!(console.locator, "Records[6]");
    }

    #[test]
    fn cloudtrail_insights_events_are_read_beside_management_events() {
        let c = run(cloudtrail, &fixture("cloudtrail-insights.json"));
        assert_eq!(c.problems, vec![]);
        let actions: Vec<&str> = c.events.iter().map(|e| e.action.as_str()).collect();
        assert_eq!(
            actions,
            [
                "Insight:ApiCallRateInsight",
                "Insight:ApiCallRateInsight",
                "Insight:ApiErrorRateInsight",
                "CreateAccessKey"
            ]
        );
        let start = &c.events[0];
        assert_eq!(start.time_us, us("2024-06-01T09:14:00Z"));
        assert_eq!(start.source, "cloudtrail");
        assert_eq!(start.account.as_deref(), Some("111122223333"));
        assert_eq!((start.actor.as_deref(), start.ip), (None, None));
        assert_eq!(
            start.target.as_deref(),
            Some("iam.amazonaws.com:CreateAccessKey")
        );
        assert_eq!(
            start.record_id.as_deref(),
            Some("9a1b2c3d-4e5f-4a6b-8c7d-0e1f2a3b4c01")
        );
        assert_eq!(
            attrs(start),
            vec![
                ("insight_state", "Start"),
                ("insight_type", "ApiCallRateInsight"),
                ("event_source", "iam.amazonaws.com"),
                ("event_name", "CreateAccessKey"),
                ("baseline_average", "0.0042"),
                ("insight_average", "4.0"),
                ("baseline_duration_minutes", "10080"),
                ("shared_event_id", "5f4e3d2c-1b0a-4f9e-8d7c-6b5a4f3e2d10"),
                ("region", "us-east-1"),
                ("event_type", "AwsCloudTrailInsight"),
                (
                    "attributed_user_identity_arn",
                    "arn:aws:sts::111122223333:assumed-role/WebServerRole/i-0123456789abcdef0"
                ),
                ("attributed_user_agent", "aws-cli/2.15.30"),
                ("attributed_error_code", "null"),
            ]
        );
        assert_eq!(
            start.message,
            "CloudTrail Insights: ApiCallRateInsight start on iam.amazonaws.com:CreateAccessKey: 4.0 per minute against a baseline of 0.0042"
        );
        let end = &c.events[1];
        assert_eq!(end.attribute("insight_state"), Some("End"));
        assert_eq!(end.attribute("insight_average"), Some("2.5"));
        assert_eq!(end.attribute("insight_duration_minutes"), Some("7"));
        // Start and end are two records of one insight.
        assert_ne!(start.record_id, end.record_id);
        assert_eq!(
            start.attribute("shared_event_id"),
            end.attribute("shared_event_id")
        );
        let errors = &c.events[2];
        assert_eq!(errors.target.as_deref(), Some("s3.amazonaws.com:GetObject"));
        assert_eq!(errors.attribute("error_code"), Some("AccessDenied"));
        assert!(
            errors.message.contains("(AccessDenied)"),
            "{}",
            errors.message
        );
        // A management event beside them is read as before.
        let key = &c.events[3];
        assert_eq!(
            key.actor.as_deref(),
            Some("arn:aws:iam::111122223333:user/alice")
        );
        assert_eq!(key.target.as_deref(), Some("bob"));
        assert_eq!(key.outcome.as_deref(), Some("success"));
        assert_eq!(key.attribute("insight_state"), None);
        // An Insights event without its time is still a problem, not an event.
        let c = run(
            cloudtrail,
            br#"{"Records":[{"eventCategory":"Insight","insightDetails":{"state":"Start"}}]}"#,
        );
        assert_eq!(c.events, vec![]);
        assert_eq!(
            c.problems,
            vec![problem(
                "Records[0]",
                "Insights event without an eventTime; skipped"
            )]
        );
    }

    #[test]
    fn vpc_flow_cloudwatch_gap_rows_of_a_custom_format() {
        // A custom format (no header in CloudWatch): its NODATA row is
        // still a gap, its interval and interface read from the values.
        let line = r#"{"logStreamName":"eni-0a1b2c3d4e5f60718-all","timestamp":1717229365000,"message":"5 vpc-0aa11bb22cc33dd44 eni-0a1b2c3d4e5f60718 111122223333 - - - - - 1717229360 1717229420 - SKIPDATA","eventId":"e-9"}"#;
        let c = run(vpc_flow_cloudwatch, line.as_bytes());
        assert_eq!(c.problems, vec![]);
        let e = &c.events[0];
        assert_eq!(e.action, FLOW_SKIPDATA);
        assert_eq!(e.time_us, us("2024-06-01T08:09:20Z"));
        assert_eq!(e.account.as_deref(), Some("111122223333"));
        assert_eq!(e.record_id.as_deref(), Some("e-9"));
        assert_eq!(e.attribute("end"), Some("2024-06-01T08:10:20Z"));
        assert_eq!(e.attribute("interface_id"), Some("eni-0a1b2c3d4e5f60718"));
        // Without any Unix time, the log event's.
        let line = r#"{"timestamp":1717229365000,"message":"5 - - NODATA"}"#;
        let c = run(vpc_flow_cloudwatch, line.as_bytes());
        assert_eq!(c.events[0].action, FLOW_NODATA);
        assert_eq!(c.events[0].time_us, us("2024-06-01T08:09:25Z"));
    }

    #[test]
    fn cloudtrail_identity_fallbacks() {
        let c = run(
            cloudtrail,
            br#"{"Records":[{"eventTime":"2024-06-01T10:00:00Z","eventName":"GetCallerIdentity","userIdentity":{"type":"Root","principalId":"111122223333","accountId":"111122223333"},"sourceIPAddress":"AWS Internal"}]}"#,
        );
        assert_eq!(c.problems, vec![]);
        assert_eq!(c.events.len(), 1);
        let e = &c.events[0];
        assert_eq!(e.account.as_deref(), Some("111122223333"));
        assert_eq!(e.actor.as_deref(), Some("111122223333"));
        assert_eq!(e.ip, None);
        assert_eq!(e.attribute("source_service"), Some("AWS Internal"));
        assert_eq!(
            e.message,
            "111122223333 GetCallerIdentity from AWS Internal: success"
        );
    }

    #[test]
    fn cloudtrail_truncated_keeps_the_records_before_the_cut() {
        let bytes = fixture("cloudtrail.json");
        let record3 = line_start(&bytes, 4);
        // Cut in the middle of Records[3].
        let cut = &bytes[..record3 + 200];
        let c = run(cloudtrail, cut);
        assert_eq!(c.events.len(), 3);
        assert_eq!(
            c.events
                .iter()
                .map(|e| e.action.as_str())
                .collect::<Vec<_>>(),
            ["ConsoleLogin", "ConsoleLogin", "AssumeRole"]
        );
        assert_eq!(c.problems.len(), 1);
        assert_eq!(
            c.problems[0].locator,
            format!("Records[3] (byte {record3})")
        );
        assert_eq!(
            c.problems[0].message,
            format!(
                "truncated or damaged record (EOF while parsing a string at byte {}); nothing after it can be read",
                record3 + 200
            )
        );

        // Cut just after a record's comma: the array never closes.
        let record4 = line_start(&bytes, 5);
        let c = run(cloudtrail, &bytes[..record4]);
        assert_eq!(c.events.len(), 4);
        assert_eq!(c.problems.len(), 1);
        assert_eq!(
            c.problems[0].locator,
            format!("Records[4] (byte {record4})")
        );
    }

    #[test]
    fn cloudtrail_truncated_gzip_through_parse_file() {
        use flate2::{Compression, write::GzEncoder};
        use std::io::Write;
        let bytes = fixture("cloudtrail.json");
        let mut gz = GzEncoder::new(Vec::new(), Compression::default());
        gz.write_all(&bytes).unwrap();
        let gz = gz.finish().unwrap();
        let mut c = Collect::default();
        parse_file(
            Format::Cloudtrail,
            "AWSLogs/x.json.gz",
            &gz[..gz.len() / 2],
            2024,
            &mut c,
        );
        // Whatever the decoder recovers ends inside record k (on line k + 1).
        let mut prefix = Vec::new();
        let _ = std::io::Read::read_to_end(
            &mut flate2::read::MultiGzDecoder::new(&gz[..gz.len() / 2]),
            &mut prefix,
        );
        let k = (0..7)
            .find(|&k| line_start(&bytes, k + 2) > prefix.len())
            .unwrap();
        assert!(k < 5, "the cut should fall before Records[5]: {k}");
        assert_eq!(c.events.len(), k);
        assert!(c.events.iter().all(|e| e.member == "AWSLogs/x.json.gz"));
        assert_eq!(c.problems.len(), 2);
        assert_eq!(c.problems[0].member, "AWSLogs/x.json.gz");
        assert_eq!(c.problems[0].locator, format!("gzip byte {}", gz.len() / 2));
        assert_eq!(c.problems[1].member, "AWSLogs/x.json.gz");
        assert_eq!(
            c.problems[1].locator,
            format!("Records[{k}] (byte {})", line_start(&bytes, k + 1))
        );
    }

    #[test]
    fn cloudtrail_damaged_record_in_the_middle_is_skipped() {
        let text = String::from_utf8(fixture("cloudtrail.json")).unwrap();
        // A stray byte where a value belongs: the brackets still balance.
        let damaged = text.replacen(
            r#""readOnly":true,"resources""#,
            r#""readOnly":tru#,"resources""#,
            1,
        );
        assert_ne!(damaged, text);
        let record2 = line_start(damaged.as_bytes(), 3);
        let c = run(cloudtrail, damaged.as_bytes());
        assert_eq!(c.events.len(), 5);
        assert_eq!(
            c.events
                .iter()
                .map(|e| e.locator.as_str())
                .collect::<Vec<_>>(),
            [
                "Records[0]",
                "Records[1]",
                "Records[3]",
                "Records[4]",
                "Records[6]"
            ]
        );
        assert_eq!(c.problems.len(), 2);
        assert_eq!(
            c.problems[0].locator,
            format!("Records[2] (byte {record2})")
        );
        let hash = damaged.find("tru#").unwrap() + 3;
        assert_eq!(
            c.problems[0].message,
            format!("damaged record (expected ident at byte {hash}); skipped to its closing brace")
        );
        assert_eq!(c.problems[1].locator, "Records[5]");
    }

    #[test]
    fn cloudtrail_pretty_printed_and_cut() {
        let value: Value = serde_json::from_slice(&fixture("cloudtrail.json")).unwrap();
        let pretty = serde_json::to_string_pretty(&value).unwrap();
        let c = run(cloudtrail, pretty.as_bytes());
        let flat = run(cloudtrail, &fixture("cloudtrail.json"));
        // The same records, but not byte for byte: other content.
        let bare = |events: &[Event]| -> Vec<Event> {
            events
                .iter()
                .map(|e| Event {
                    content: None,
                    ..e.clone()
                })
                .collect()
        };
        assert_eq!(bare(&c.events), bare(&flat.events));
        assert!(
            c.events
                .iter()
                .zip(&flat.events)
                .all(|(a, b)| a.content.is_some() && a.content != b.content)
        );
        assert_eq!(c.problems, flat.problems);
        // A damaged byte many lines into a record is placed by its file offset.
        let at = pretty.find(r#": "GetObject""#).unwrap();
        let damaged = format!("{}={}", &pretty[..at], &pretty[at + 1..]);
        let record3 = pretty[..at].rfind("\n    {").unwrap() + 5;
        let c = run(cloudtrail, damaged.as_bytes());
        assert_eq!(c.events.len(), 5);
        assert_eq!(c.problems.len(), 2);
        assert_eq!(
            c.problems[0].locator,
            format!("Records[3] (byte {record3})")
        );
        assert_eq!(
            c.problems[0].message,
            format!("damaged record (expected `:` at byte {at}); skipped to its closing brace")
        );
    }

    #[test]
    fn cloudtrail_rejects_what_is_not_a_log_file() {
        for bytes in [
            &b""[..],
            b"hello",
            br#"{"Digest":"x","logFiles":[]}"#,
            br#"[{"eventName":"x"}]"#,
        ] {
            let c = run(cloudtrail, bytes);
            assert_eq!(c.events, vec![]);
            assert_eq!(c.problems.len(), 1);
            assert_eq!(c.problems[0].locator, "byte 0");
        }
        // Other keys before Records are passed over; an empty array is fine.
        let c = run(cloudtrail, br#"{"version":{"a":[1,2]}, "Records" : [ ]}"#);
        assert_eq!((c.events.len(), c.problems.len()), (0, 0));
    }

    #[test]
    fn cloudtrail_lines_maps_and_survives_a_bad_line() {
        let c = run(cloudtrail_lines, &fixture("cloudtrail-lookup.jsonl"));
        assert_eq!(c.problems, vec![]);
        assert_eq!(c.events.len(), 3);
        let stop = &c.events[0];
        assert_eq!(stop.action, "StopLogging");
        assert_eq!(stop.locator, "line 1");
        assert_eq!(stop.target, None);
        assert_eq!(
            stop.attribute("access_key_id"),
            Some("AKIAEXAMPLEALICE0001")
        );
        assert_eq!(stop.ip, "203.0.113.50".parse().ok());
        let policy = &c.events[1];
        assert_eq!(policy.action, "PutBucketPolicy");
        assert_eq!(policy.target.as_deref(), Some("example-finance-reports"));
        assert_eq!(policy.locator, "line 2");
        // Line 3 is blank.
        let key = &c.events[2];
        assert_eq!(key.action, "CreateAccessKey");
        assert_eq!(key.target.as_deref(), Some("bob"));
        assert_eq!(key.locator, "line 4");
        assert_eq!(
            key.record_id.as_deref(),
            Some("0c1d2e3f-4a5b-4c6d-8e7f-a0b1c2d3e403")
        );

        let text = String::from_utf8(fixture("cloudtrail-lookup.jsonl")).unwrap();
        let mut lines: Vec<&str> = text.lines().collect();
        lines.insert(
            1,
            r#"{"eventVersion":"1.09","eventTime":"2024-06-01T09:12:"#,
        );
        lines.insert(2, r#"{"eventVersion":"1.09","eventName":"Nothing"}"#);
        let c = run(cloudtrail_lines, lines.join("\n").as_bytes());
        assert_eq!(c.events.len(), 3);
        assert_eq!(
            c.events
                .iter()
                .map(|e| e.locator.as_str())
                .collect::<Vec<_>>(),
            ["line 1", "line 4", "line 6"]
        );
        assert_eq!(c.problems.len(), 2);
        assert_eq!(c.problems[0].locator, "line 2");
        assert!(c.problems[0].message.starts_with("not a JSON record: EOF"));
        assert_eq!(c.problems[1].locator, "line 3");
        assert_eq!(
            c.problems[1].message,
            "record without an eventTime; skipped"
        );
    }

    #[test]
    fn cloudtrail_lines_reads_whole_lookup_events() {
        let inner = r#"{"eventTime":"2024-06-01T09:00:00Z","eventName":"DeleteTrail","eventID":"e1","userIdentity":{"arn":"arn:aws:iam::111122223333:user/alice"}}"#;
        let line = serde_json::json!({"EventId": "e1", "EventName": "DeleteTrail", "CloudTrailEvent": inner});
        let c = run(cloudtrail_lines, line.to_string().as_bytes());
        assert_eq!(c.problems, vec![]);
        assert_eq!(c.events.len(), 1);
        assert_eq!(c.events[0].action, "DeleteTrail");
        assert_eq!(c.events[0].record_id.as_deref(), Some("e1"));
    }

    #[test]
    fn vpc_flow_default_format() {
        let c = run(vpc_flow, &fixture("vpc-flow.log"));
        assert_eq!(c.problems, vec![]);
        // NODATA (line 4) and SKIPDATA (line 8) are gaps, kept as events.
        assert_eq!(
            c.events
                .iter()
                .map(|e| (e.locator.as_str(), e.action.as_str()))
                .collect::<Vec<_>>(),
            [
                ("line 2", "flow"),
                ("line 3", "flow"),
                ("line 4", FLOW_NODATA),
                ("line 5", "flow"),
                ("line 6", "flow"),
                ("line 7", "flow"),
                ("line 8", FLOW_SKIPDATA),
            ]
        );
        let reject = &c.events[0];
        assert_eq!(reject.time_us, us("2024-06-01T08:04:00Z"));
        assert_eq!(reject.source, "vpc_flow");
        assert_eq!(reject.account.as_deref(), Some("111122223333"));
        assert_eq!(reject.action, "flow");
        assert_eq!(reject.outcome.as_deref(), Some("reject"));
        assert_eq!(reject.ip, "203.0.113.12".parse().ok());
        assert_eq!(reject.target.as_deref(), Some("10.0.1.25:22/tcp"));
        assert_eq!(reject.actor, None);
        assert_eq!(
            attrs(reject),
            vec![
                ("interface_id", "eni-0a1b2c3d4e5f60718"),
                ("src_port", "51522"),
                ("dst_ip", "10.0.1.25"),
                ("dst_port", "22"),
                ("protocol", "tcp"),
                ("packets", "3"),
                ("bytes", "180"),
                ("end", "2024-06-01T08:05:00Z"),
            ]
        );
        assert_eq!(
            reject.message,
            "203.0.113.12:51522 -> 10.0.1.25:22/tcp REJECT (eni-0a1b2c3d4e5f60718, 3 packets, 180 bytes)"
        );
        assert_eq!(c.events[1].outcome.as_deref(), Some("accept"));
        let nodata = &c.events[2];
        assert_eq!(nodata.time_us, us("2024-06-01T08:05:00Z"));
        assert_eq!(nodata.account.as_deref(), Some("111122223333"));
        assert_eq!((nodata.ip, nodata.outcome.as_deref()), (None, None));
        assert_eq!(
            attrs(nodata),
            vec![
                ("log_status", "NODATA"),
                ("interface_id", "eni-0a1b2c3d4e5f60718"),
                ("end", "2024-06-01T08:06:00Z"),
            ]
        );
        assert_eq!(
            nodata.message,
            "eni-0a1b2c3d4e5f60718 NODATA: no traffic recorded until 2024-06-01T08:06:00Z"
        );
        let skipped = &c.events[6];
        assert_eq!(skipped.time_us, us("2024-06-01T08:06:00Z"));
        assert_eq!(skipped.attribute("log_status"), Some("SKIPDATA"));
        assert_eq!(
            skipped.attribute("interface_id"),
            Some("eni-0f9e8d7c6b5a49382")
        );
        assert!(skipped.message.contains("a gap in the flow log"));
        assert_eq!(c.events[3].target.as_deref(), Some("10.0.1.25:0/icmp"));
        assert_eq!(c.events[4].target.as_deref(), Some("198.51.100.53:53/udp"));
        let v6 = &c.events[5];
        assert_eq!(v6.ip, "2001:db8:1::25".parse().ok());
        assert_eq!(v6.target.as_deref(), Some("[2001:db8:ffff::9]:443/tcp"));
    }

    #[test]
    fn vpc_flow_custom_format_by_header() {
        let c = run(vpc_flow, &fixture("vpc-flow-custom.log"));
        assert_eq!(c.problems, vec![]);
        assert_eq!(c.events.len(), 3);
        let out = &c.events[0];
        assert_eq!(out.time_us, us("2024-06-01T08:08:20Z"));
        assert_eq!(out.outcome.as_deref(), Some("accept"));
        assert_eq!(out.ip, "10.0.1.25".parse().ok());
        assert_eq!(out.target.as_deref(), Some("198.51.100.80:443/tcp"));
        assert_eq!(
            attrs(out),
            vec![
                ("interface_id", "eni-0a1b2c3d4e5f60718"),
                ("src_port", "40314"),
                ("dst_ip", "198.51.100.80"),
                ("dst_port", "443"),
                ("protocol", "tcp"),
                ("packets", "14"),
                ("bytes", "5120"),
                ("end", "2024-06-01T08:09:20Z"),
                ("vpc_id", "vpc-0aa11bb22cc33dd44"),
                ("subnet_id", "subnet-0123abcd4567ef890"),
                ("instance_id", "i-0123456789abcdef0"),
                ("flow_direction", "egress"),
                ("pkt_srcaddr", "10.0.1.25"),
                ("pkt_dstaddr", "198.51.100.80"),
                ("tcp_flags", "19"),
            ]
        );
        let inbound = &c.events[1];
        assert_eq!(inbound.outcome.as_deref(), Some("reject"));
        assert_eq!(inbound.attribute("instance_id"), None);
        assert_eq!(inbound.attribute("flow_direction"), Some("ingress"));
        assert_eq!(inbound.attribute("pkt_srcaddr"), Some("203.0.113.12"));
        assert_eq!(inbound.locator, "line 3");
        // A custom format's NODATA row, its fields found by the header.
        let nodata = &c.events[2];
        assert_eq!(nodata.action, FLOW_NODATA);
        assert_eq!(nodata.locator, "line 4");
        assert_eq!(nodata.time_us, us("2024-06-01T08:09:20Z"));
        assert_eq!(
            attrs(nodata),
            vec![
                ("log_status", "NODATA"),
                ("interface_id", "eni-0a1b2c3d4e5f60718"),
                ("end", "2024-06-01T08:10:20Z"),
                ("vpc_id", "vpc-0aa11bb22cc33dd44"),
                ("subnet_id", "subnet-0123abcd4567ef890"),
                ("instance_id", "i-0123456789abcdef0"),
            ]
        );
    }

    #[test]
    fn vpc_flow_bad_lines_and_missing_header() {
        let text = String::from_utf8(fixture("vpc-flow.log")).unwrap();
        let mut lines: Vec<&str> = text.lines().collect();
        lines.insert(
            2,
            "2 111122223333 eni-0a1b2c3d4e5f60718 203.0.113.12 10.0.1.25 51522",
        );
        lines.insert(3, "2 111122223333 eni-0a1b2c3d4e5f60718 203.0.113.12 10.0.1.25 51522 22 6 3 180 soon 1717229100 REJECT OK");
        let c = run(vpc_flow, lines.join("\n").as_bytes());
        assert_eq!(c.events.len(), 7);
        assert_eq!(c.events[1].locator, "line 5");
        assert_eq!(c.problems.len(), 2);
        assert_eq!(c.problems[0].locator, "line 3");
        assert_eq!(c.problems[0].message, "6 fields where the header names 14");
        assert_eq!(c.problems[1].locator, "line 4");
        assert_eq!(c.problems[1].message, "start \"soon\" is not a Unix time");

        // A second file's header, where files were joined, is passed over.
        let joined = format!("{text}{text}");
        let c = run(vpc_flow, joined.as_bytes());
        assert_eq!(c.problems, vec![]);
        assert_eq!(c.events.len(), 14);

        // Without its header line nothing can be mapped: one problem.
        let headless = lines[1..].join("\n");
        let c = run(vpc_flow, headless.as_bytes());
        assert_eq!(c.events, vec![]);
        assert_eq!(c.problems.len(), 1);
        assert_eq!(c.problems[0].locator, "line 1");
    }

    #[test]
    fn vpc_flow_truncated_file() {
        let bytes = fixture("vpc-flow.log");
        let cut = &bytes[..line_start(&bytes, 2) + 60];
        let c = run(vpc_flow, cut);
        assert_eq!(c.events.len(), 1);
        assert_eq!(c.problems.len(), 1);
        assert_eq!(c.problems[0].locator, "line 3");
    }

    #[test]
    fn cloudwatch_logs_lambda_lines_json_messages_and_bad_lines() {
        let lines = [
            r#"{"timestamp":1700000000123,"message":"START RequestId: 8f5e-11 Version: $LATEST\n","logStreamName":"2023/11/14/[$LATEST]abc","eventId":"e1"}"#,
            r#"{"timestamp":1700000000200,"message":"{\"level\":\"ERROR\",\"requestId\":\"8f5e-11\",\"msg\":\"denied\"}","logStreamName":"s"}"#,
            r#"{"timestamp":1700000000300,"message":"REPORT RequestId: 8f5e-11 Duration: 2.1 ms","logStreamName":"s"}"#,
            "not json",
            r#"{"message":"no time"}"#,
        ]
        .join("\n");
        let c = run(cloudwatch_logs, lines.as_bytes());
        assert_eq!(c.events.len(), 3);
        let (a, b, r) = (&c.events[0], &c.events[1], &c.events[2]);
        assert_eq!(
            (a.action.as_str(), a.time_us),
            ("lambda.start", 1_700_000_000_123_000)
        );
        assert_eq!(a.attribute("request_id"), Some("8f5e-11"));
        assert_eq!(a.target.as_deref(), Some("2023/11/14/[$LATEST]abc"));
        assert_eq!(a.record_id.as_deref(), Some("e1"));
        assert_eq!(b.action, "log");
        assert_eq!(b.attribute("level"), Some("ERROR"));
        assert_eq!(b.attribute("request_id"), Some("8f5e-11"));
        assert_eq!(r.action, "lambda.report");
        let places: Vec<&str> = c.problems.iter().map(|p| p.locator.as_str()).collect();
        assert_eq!(places, ["line 4", "line 5"]);
        // A huge message keeps a bounded summary.
        let big = format!(r#"{{"timestamp":1,"message":"{}"}}"#, "x".repeat(100_000));
        let c = run(cloudwatch_logs, big.as_bytes());
        assert_eq!(c.events[0].message.len(), MESSAGE_SUMMARY);
    }

    #[test]
    fn vpc_flow_cloudwatch_export() {
        let c = run(vpc_flow_cloudwatch, &fixture("vpc-flow-cloudwatch.jsonl"));
        assert_eq!(c.problems, vec![]);
        assert_eq!(c.events.len(), 4);
        let e = &c.events[0];
        assert_eq!(e.time_us, us("2024-06-01T08:04:00Z"));
        assert_eq!(e.outcome.as_deref(), Some("reject"));
        assert_eq!(e.ip, "203.0.113.12".parse().ok());
        assert_eq!(e.target.as_deref(), Some("10.0.1.25:22/tcp"));
        assert_eq!(
            e.record_id.as_deref(),
            Some("38301247593200583517460181432856719218716327450329481216")
        );
        assert_eq!(e.attribute("log_stream"), Some("eni-0a1b2c3d4e5f60718-all"));
        assert_eq!(e.attribute("end"), Some("2024-06-01T08:05:00Z"));
        assert_eq!(e.locator, "line 1");
        let nodata = &c.events[2];
        assert_eq!(nodata.action, FLOW_NODATA);
        assert_eq!(nodata.time_us, us("2024-06-01T08:05:00Z"));
        assert_eq!(
            nodata.record_id.as_deref(),
            Some("38301248931247185932055710437016930471950213698461696000")
        );
        assert_eq!(
            nodata.attribute("log_stream"),
            Some("eni-0a1b2c3d4e5f60718-all")
        );
        assert_eq!(c.events[3].locator, "line 4");
        assert_eq!(c.events[3].target.as_deref(), Some("198.51.100.53:53/udp"));

        let text = String::from_utf8(fixture("vpc-flow-cloudwatch.jsonl")).unwrap();
        let mut lines: Vec<&str> = text.lines().collect();
        lines.insert(1, r#"{"timestamp":1717229045000,"message":"2 111122223333 eni-0a1b2c3d4e5f60718 10.0.1.25"#);
        lines.insert(
            2,
            r#"{"timestamp":1717229045000,"message":"5 vpc-0aa11bb22cc33dd44 egress"}"#,
        );
        let c = run(vpc_flow_cloudwatch, lines.join("\n").as_bytes());
        assert_eq!(c.events.len(), 4);
        assert_eq!(c.events[1].locator, "line 4");
        assert_eq!(c.problems.len(), 2);
        assert_eq!(c.problems[0].locator, "line 2");
        assert_eq!(c.problems[1].locator, "line 3");
        assert!(
            c.problems[1]
                .message
                .starts_with("3 fields where the default flow log format has 14")
        );
    }

    #[test]
    fn s3_access_maps_fields() {
        let c = run(s3_access, &fixture("s3-access.log"));
        assert_eq!(c.problems, vec![]);
        assert_eq!(c.events.len(), 5);
        let owner = "9f2b7c1d4e5a6b8c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b3c";
        let role = "arn:aws:sts::111122223333:assumed-role/WebServerRole/i-0123456789abcdef0";

        let list = &c.events[0];
        assert_eq!(list.time_us, us("2024-06-01T08:16:02Z"));
        assert_eq!(list.source, "s3_access");
        assert_eq!(list.action, "REST.GET.BUCKET");
        assert_eq!(list.actor.as_deref(), Some(role));
        assert_eq!(list.target.as_deref(), Some("example-finance-reports"));
        assert_eq!(list.outcome.as_deref(), Some("success"));

        let get = &c.events[1];
        assert_eq!(get.action, "REST.GET.OBJECT");
        assert_eq!(get.ip, "192.0.2.44".parse().ok());
        assert_eq!(
            get.target.as_deref(),
            Some("example-finance-reports/2024/q1/payroll.csv")
        );
        assert_eq!(get.record_id.as_deref(), Some("8Q2EXAMPLE4ZT1K"));
        assert_eq!(
            get.user_agent.as_deref(),
            Some(
                "aws-cli/2.15.30 md/awscrt#0.19.19 ua/2.0 os/linux#6.1.0 md/arch#x86_64 lang/python#3.11.8 md/command#s3.cp"
            )
        );
        assert_eq!(get.account, None);
        assert_eq!(
            attrs(get),
            vec![
                ("http_status", "200"),
                ("bytes_sent", "48213"),
                ("request_uri", "GET /2024/q1/payroll.csv HTTP/1.1"),
                ("bucket_owner", owner),
                ("auth_type", "AuthHeader"),
                ("tls_version", "TLSv1.3"),
            ]
        );
        assert_eq!(
            get.message,
            format!(
                "{role} REST.GET.OBJECT example-finance-reports/2024/q1/payroll.csv from 192.0.2.44: 200"
            )
        );
        assert_eq!(get.locator, "line 2");

        let denied = &c.events[2];
        assert_eq!(denied.actor, None);
        assert_eq!(denied.outcome.as_deref(), Some("failure"));
        assert_eq!(denied.ip, "198.51.100.77".parse().ok());
        assert_eq!(
            denied.user_agent.as_deref(),
            Some(
                "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15"
            )
        );
        assert_eq!(
            attrs(denied),
            vec![
                ("http_status", "403"),
                ("error_code", "AccessDenied"),
                ("bytes_sent", "243"),
                ("request_uri", "GET /backups/db-2024-05-31.sql.gz HTTP/1.1"),
                ("bucket_owner", owner),
                ("tls_version", "TLSv1.3"),
            ]
        );
        assert_eq!(
            denied.message,
            "(anonymous) REST.GET.OBJECT example-finance-reports/backups/db-2024-05-31.sql.gz from 198.51.100.77: 403 AccessDenied"
        );

        let put = &c.events[3];
        assert_eq!(put.action, "REST.PUT.OBJECT");
        assert_eq!(
            put.target.as_deref(),
            Some("example-finance-reports/reports/Q2%20summary.xlsx")
        );
        assert_eq!(put.attribute("bytes_sent"), None);
        assert_eq!(put.attribute("tls_version"), Some("TLSv1.2"));

        // An old record with fewer trailing fields.
        let old = &c.events[4];
        assert_eq!(old.time_us, us("2016-03-14T21:45:12Z"));
        assert_eq!(old.user_agent.as_deref(), Some("S3Console/0.4"));
        assert_eq!(
            old.target.as_deref(),
            Some("example-static-site/index.html")
        );
        assert_eq!(old.attribute("auth_type"), None);
    }

    #[test]
    fn s3_access_bad_lines_and_truncation() {
        let text = String::from_utf8(fixture("s3-access.log")).unwrap();
        let mut lines: Vec<&str> = text.lines().collect();
        lines.insert(1, "garbage in the middle");
        lines.insert(
            2,
            r#"owner bucket [yesterday] 192.0.2.1 - ID REST.GET.OBJECT k "GET /k HTTP/1.1" 200"#,
        );
        lines.insert(3, r#"owner bucket [01/Jun/2024:08:00:00 +0000] 192.0.2.1 - ID REST.GET.OBJECT k "GET /k HTTP/1.1 200"#);
        let c = run(s3_access, lines.join("\n").as_bytes());
        assert_eq!(c.events.len(), 5);
        assert_eq!(c.events[1].locator, "line 5");
        assert_eq!(
            c.problems
                .iter()
                .map(|p| p.locator.as_str())
                .collect::<Vec<_>>(),
            ["line 2", "line 3", "line 4"]
        );
        assert_eq!(
            c.problems[0].message,
            "4 fields; an access log record has at least 10"
        );
        assert!(
            c.problems[1]
                .message
                .starts_with("time [yesterday] cannot be read")
        );
        assert_eq!(c.problems[2].message, "a quoted field is not closed");

        // Cut inside the user agent of the last line.
        let bytes = text.as_bytes();
        let last = line_start(bytes, 4);
        let agent = last + text[last..].find("\"S3Console").unwrap();
        let c = run(s3_access, &bytes[..agent + 5]);
        assert_eq!(c.events.len(), 4);
        assert_eq!(c.problems.len(), 1);
        assert_eq!(c.problems[0].locator, "line 5");
    }

    #[test]
    fn s3_tokens_quotes_and_brackets() {
        assert_eq!(
            s3_tokens(r#"a [01/Jun/2024:08:00:00 +0000] "x y" "say \"hi\" now" "a"b" -"#).unwrap(),
            vec![
                "a",
                "01/Jun/2024:08:00:00 +0000",
                "x y",
                r#"say \"hi\" now"#,
                r#"a"b"#,
                "-"
            ]
        );
        assert!(s3_tokens(r#"a "b"c d"#).is_err());
    }
}
