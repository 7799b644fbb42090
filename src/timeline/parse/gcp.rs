//! Google Cloud Logging exports, read for their Cloud Audit Logs: LogEntry
//! records as `gcloud logging read --format=json` prints them and the Logs
//! Explorer downloads them (one JSON array; several arrays one after another,
//! as appended outputs give, are read in turn), or as a log sink writes them
//! to Cloud Storage (one LogEntry a line, in files under
//! `cloudaudit.googleapis.com/activity/YYYY/MM/DD/`). Gzip is undone before.
//!
//! An audit entry (its `protoPayload` a `google.cloud.audit.AuditLog`)
//! becomes one event:
//!
//! - time: `timestamp` (RFC 3339; nanoseconds cut to microseconds).
//! - action: `protoPayload.methodName` (`SetIamPolicy`,
//!   `v1.compute.instances.insert`, `storage.objects.get`).
//! - actor: `authenticationInfo.principalEmail`, else its `principalSubject`,
//!   else the first principal of its `serviceAccountDelegationInfo`.
//! - account: the project, from `resource.labels.project_id` or a `logName`
//!   of `projects/P/logs/…`; for an organisation's, folder's or billing
//!   account's logs, that parent as `logName` writes it (`organizations/123`).
//! - ip: `requestMetadata.callerIp` when it is an address. Google writes
//!   `private` for a call from inside its own network and `gce-internal-ip`
//!   for a VM of another organisation without an external address: those
//!   are kept as the `caller_ip` attribute.
//! - user agent: `requestMetadata.callerSuppliedUserAgent`; target:
//!   `resourceName`; record id: `insertId`.
//! - outcome: `success` when `status` is absent or its code is 0 (proto3
//!   JSON leaves a zero code out: `"status": {}`), else `failure`, with
//!   `status_code`, `status` (the `google.rpc.Code` name,
//!   `PERMISSION_DENIED`) and `status_message`.
//!
//! Attributes, when the entry has them: `service` (`serviceName`), `log`
//! (`activity`, `data_access`, `system_event`, `policy`), `severity`,
//! `resource_type`, `permission_granted` and `permission_denied` (each
//! `authorizationInfo` as `PERMISSION on RESOURCE`; proto3 JSON leaves
//! `"granted": false` out, so one without `granted` is a denial),
//! `service_account_key` (`serviceAccountKeyName`: which key a service
//! account signed in with), `delegation` (the principals of
//! `serviceAccountDelegationInfo` in their order, the original caller
//! first), `principal_subject`, `caller_network`, `policy_delta` (IAM
//! binding changes, `ADD roles/owner user:…`) and `operation` (the
//! long-running operation's id, shared by its first and last entries).
//!
//! Other entries of the same export (a sink of mixed logs: `textPayload`,
//! `jsonPayload`, other `protoPayload` types) are events too, so nothing is
//! lost: the action is the log's id (`run.googleapis.com/stderr`, `syslog`),
//! the message its text (`textPayload`, the `message` of a `jsonPayload`,
//! else the payload as compact JSON), and an `httpRequest` gives the ip
//! (`remoteIp`), user agent, target (`requestUrl`), `http_method` and
//! `http_status`. Their `log` attribute is the log's id.
//!
//! Every event's record is the whole LogEntry as JSON (detection rules read
//! `protoPayload.methodName` and the rest from it). Every text taken from a
//! record is cut to [`FIELD_MAX`] bytes with its control characters
//! escaped, an action to [`NAME_MAX`], lists to [`LIST_MAX`] entries; JSON
//! nesting is bounded by serde_json's recursion limit. A record that cannot
//! be read (not JSON, not an object, nested too deep, without a timestamp)
//! is a problem at its place (`line 12`, `[3]`) and reading goes on: in an
//! array past the record by matching its brackets, unless the file ends
//! inside it.

use serde::de::DeserializeOwned;
use serde_json::Value;

use super::aws::skip_ws;
use super::k8s::clean;
use super::linux::one_line;
use super::{Record, Sink, ip, microsoft, problem, str_at, text_at, time_us};
use crate::timeline::Event;

const SOURCE: &str = "gcp_audit";
/// The `@type` of an audit log's `protoPayload`.
const AUDIT_LOG: &str = "type.googleapis.com/google.cloud.audit.AuditLog";
/// The log ids of Cloud Audit Logs start with this; the rest names the log.
const AUDIT_LOG_ID: &str = "cloudaudit.googleapis.com/";
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// How many bytes of a text field an event keeps.
pub const FIELD_MAX: usize = 4096;
/// How many bytes of a method name or log id the action keeps: Cloud
/// Logging allows log ids of up to 512 characters, method names are shorter.
pub const NAME_MAX: usize = 512;
/// How many entries of a list (permissions, delegations, binding changes)
/// an event keeps.
pub const LIST_MAX: usize = 64;

/// LogEntry records: a JSON array (or arrays one after another), or JSON
/// lines.
pub fn gcp_audit(bytes: &[u8], sink: &mut dyn Sink) {
    let bytes = bytes.strip_prefix(BOM).unwrap_or(bytes);
    let start = skip_ws(bytes, 0);
    if bytes.get(start) == Some(&b'[') {
        walk_arrays(bytes, start, sink);
    } else {
        microsoft::json_values(bytes, sink, &entry);
    }
}

// ---------------------------------------------------------------------------
// Containers

/// Arrays of records one after another, each walked record by record. The
/// first array's records are `[i]`, a later one's `array N [i]`.
fn walk_arrays(bytes: &[u8], mut pos: usize, sink: &mut dyn Sink) {
    let mut n = 1;
    while bytes.get(pos) == Some(&b'[') {
        let prefix = if n == 1 {
            String::new()
        } else {
            format!("array {n} ")
        };
        let Some(end) = walk_array(bytes, pos, &prefix, sink) else {
            return;
        };
        pos = skip_ws(bytes, end);
        n += 1;
    }
    if pos < bytes.len() {
        sink.problem(problem(
            format!("byte {pos}"),
            "unexpected data after the JSON array, not read",
        ));
    }
}

/// Walks the array opening at `open`. A record that cannot be read is
/// reported and stepped over by matching its brackets. The position after
/// the `]`, or None when the array cannot be read to its end (reported).
fn walk_array(bytes: &[u8], open: usize, prefix: &str, sink: &mut dyn Sink) -> Option<usize> {
    let mut pos = skip_ws(bytes, open + 1);
    if bytes.get(pos) == Some(&b']') {
        return Some(pos + 1);
    }
    let mut i = 0usize;
    loop {
        let locator = format!("{prefix}[{i}]");
        match read::<Value>(bytes, pos) {
            Ok((v, after)) => {
                entry(&v, bytes.get(pos..after).unwrap_or_default(), locator, sink);
                pos = skip_ws(bytes, after);
            }
            Err(e) => match skip_bracketed(bytes, pos) {
                Some(after) => {
                    sink.problem(problem(
                        locator,
                        format!("unreadable record ({e}); skipped"),
                    ));
                    pos = skip_ws(bytes, after);
                }
                None => {
                    let why = if e.is_eof() {
                        "the file ends inside it (truncated?)"
                    } else {
                        "the array cannot be read past it"
                    };
                    sink.problem(problem(locator, format!("unreadable record ({e}); {why}")));
                    return None;
                }
            },
        }
        i += 1;
        match bytes.get(pos) {
            Some(b',') => pos = skip_ws(bytes, pos + 1),
            Some(b']') => return Some(pos + 1),
            Some(_) => {
                sink.problem(problem(
                    format!("byte {pos}"),
                    format!(
                        "expected ',' or ']' after {prefix}[{}]; the array cannot be read past it",
                        i - 1
                    ),
                ));
                return None;
            }
            None => {
                sink.problem(problem(
                    format!("{prefix}[{i}]"),
                    "the array ends without ']' (truncated?)",
                ));
                return None;
            }
        }
    }
}

/// The end of the object or array opening at `start`, found by matching
/// brackets outside strings (no recursion, whatever the depth); None when
/// no object or array opens there or the file ends first.
fn skip_bracketed(bytes: &[u8], start: usize) -> Option<usize> {
    if !matches!(bytes.get(start), Some(b'{' | b'[')) {
        return None;
    }
    super::aws::skip_damaged(bytes, start)
}

/// One JSON value starting at `pos`, and the position just after it.
fn read<T: DeserializeOwned>(bytes: &[u8], pos: usize) -> Result<(T, usize), serde_json::Error> {
    let rest = bytes.get(pos..).unwrap_or_default();
    let mut values = serde_json::Deserializer::from_slice(rest).into_iter::<T>();
    match values.next() {
        Some(Ok(v)) => Ok((v, pos + values.byte_offset())),
        Some(Err(e)) => Err(e),
        None => Err(serde::de::Error::custom("no JSON value")),
    }
}

// ---------------------------------------------------------------------------
// Mapping

/// One record: its event to the sink with the whole LogEntry, or a problem.
fn entry(v: &Value, raw: &[u8], locator: String, sink: &mut dyn Sink) {
    if !v.is_object() {
        sink.problem(problem(
            locator,
            "not a LogEntry: the record is not a JSON object",
        ));
        return;
    }
    match log_entry(v) {
        Ok(mut e) => {
            e.locator = locator;
            sink.record(e, Record::json(raw, v));
        }
        Err(why) => sink.problem(problem(locator, why)),
    }
}

fn log_entry(v: &Value) -> Result<Event, String> {
    let Some(stamp) = str_at(v, &["timestamp"]) else {
        return Err(if v.get("entries").is_some() {
            "a Logging API entries.list page, not a LogEntry: save its `entries` as a JSON array"
                .to_owned()
        } else {
            "a LogEntry without a timestamp; skipped".to_owned()
        });
    };
    let time = time_us(stamp).ok_or_else(|| {
        format!(
            "timestamp \"{}\" is not an RFC 3339 time; skipped",
            clean(stamp, NAME_MAX)
        )
    })?;
    let log = LogName::parse(str_at(v, &["logName"]));
    let audit = v.get("protoPayload").filter(|p| {
        str_at(p, &["@type"]) == Some(AUDIT_LOG) || str_at(p, &["methodName"]).is_some()
    });
    let mut e = match audit {
        Some(p) => audit_event(time, p, &log),
        None => other_event(time, v, &log),
    };
    e.account = str_at(v, &["resource", "labels", "project_id"])
        .or(log.project)
        .or(log.parent)
        .map(|a| clean(a, FIELD_MAX));
    e.record_id = str_at(v, &["insertId"]).map(|id| clean(id, FIELD_MAX));
    // What every entry has comes first, in one order; the operation last.
    let mut a = Vec::new();
    let service = audit.and_then(|p| str_at(p, &["serviceName"]));
    push(&mut a, "service", service.map(|s| clean(s, NAME_MAX)));
    push(&mut a, "log", log.kind().map(|k| clean(&k, FIELD_MAX)));
    push(
        &mut a,
        "severity",
        text_at(v, &["severity"]).map(|s| clean(&s, NAME_MAX)),
    );
    push(
        &mut a,
        "resource_type",
        str_at(v, &["resource", "type"]).map(|t| clean(t, NAME_MAX)),
    );
    a.append(&mut e.attributes);
    push(
        &mut a,
        "operation",
        str_at(v, &["operation", "id"]).map(|s| clean(s, FIELD_MAX)),
    );
    e.attributes = a;
    Ok(e)
}

/// `logName`: `PARENT/logs/LOG_ID`, the id URL-encoded.
#[derive(Debug, Default)]
struct LogName<'a> {
    /// `projects/P`, `organizations/O`, `folders/F`, `billingAccounts/B`.
    parent: Option<&'a str>,
    /// P of `projects/P`.
    project: Option<&'a str>,
    /// The log id, decoded: `cloudaudit.googleapis.com/activity`.
    id: Option<String>,
}

impl<'a> LogName<'a> {
    fn parse(name: Option<&'a str>) -> Self {
        let Some(name) = name else {
            return Self::default();
        };
        // Cloud Logging drops a leading slash on ingestion; a copy may not have.
        let name = name.strip_prefix('/').unwrap_or(name);
        let Some((parent, id)) = name.split_once("/logs/") else {
            return Self::default();
        };
        let project = parent
            .strip_prefix("projects/")
            .filter(|p| !p.is_empty() && !p.contains('/'));
        Self {
            parent: Some(parent).filter(|p| !p.is_empty()),
            project,
            id: Some(
                percent_encoding::percent_decode_str(id)
                    .decode_utf8_lossy()
                    .into_owned(),
            )
            .filter(|id| !id.is_empty()),
        }
    }

    /// An audit log's kind (`activity`, `data_access`, `system_event`,
    /// `policy`); another log's id.
    fn kind(&self) -> Option<String> {
        let id = self.id.as_deref()?;
        Some(id.strip_prefix(AUDIT_LOG_ID).unwrap_or(id).to_owned())
    }

    /// The action of an entry that names no method: the log's id.
    fn action(&self) -> String {
        self.id
            .as_deref()
            .map_or_else(|| "(no logName)".to_owned(), |id| clean(id, NAME_MAX))
    }
}

/// An audit entry, from its `protoPayload`.
fn audit_event(time: i64, p: &Value, log: &LogName<'_>) -> Event {
    let action = str_at(p, &["methodName"]).map_or_else(|| log.action(), |m| clean(m, NAME_MAX));
    let mut e = Event::new(time, SOURCE, action);
    let auth = p.get("authenticationInfo").unwrap_or(&Value::Null);
    let delegation = delegation(auth.get("serviceAccountDelegationInfo"));
    let subject = str_at(auth, &["principalSubject"]).map(|s| clean(s, FIELD_MAX));
    e.actor = str_at(auth, &["principalEmail"])
        .map(|s| clean(s, FIELD_MAX))
        .or_else(|| subject.clone())
        .or_else(|| delegation.first().cloned());
    let meta = p.get("requestMetadata").unwrap_or(&Value::Null);
    let caller_ip = str_at(meta, &["callerIp"]);
    e.ip = caller_ip.and_then(ip).map(|a| a.to_canonical());
    e.user_agent = str_at(meta, &["callerSuppliedUserAgent"]).map(|s| clean(s, FIELD_MAX));
    e.target = str_at(p, &["resourceName"]).map(|s| clean(s, FIELD_MAX));
    let status = Status::of(p.get("status"));
    e.outcome = Some(if status.failed { "failure" } else { "success" }.to_owned());

    let (granted, denied) = authorizations(p.get("authorizationInfo"));
    let a = &mut e.attributes;
    if e.ip.is_none() {
        push(a, "caller_ip", caller_ip.map(|s| clean(s, NAME_MAX)));
    }
    push(
        a,
        "caller_network",
        str_at(meta, &["callerNetwork"]).map(|s| clean(s, FIELD_MAX)),
    );
    if status.failed {
        push(a, "status_code", status.code.clone());
        push(a, "status", status.name.map(str::to_owned));
    }
    push(a, "status_message", status.message.clone());
    push(a, "permission_granted", granted);
    push(a, "permission_denied", denied);
    push(
        a,
        "service_account_key",
        str_at(auth, &["serviceAccountKeyName"]).map(|s| clean(s, FIELD_MAX)),
    );
    push(a, "delegation", list(delegation.clone()));
    if subject != e.actor {
        push(a, "principal_subject", subject);
    }
    push(a, "policy_delta", policy_delta(p));

    // `alice@example.com SetIamPolicy on projects/p from 203.0.113.7: success`
    let mut m = e.actor.as_deref().unwrap_or("(unknown)").to_owned();
    if let Some(first) = delegation.first() {
        m.push_str(&format!(" (delegated by {first})"));
    }
    m.push_str(&format!(" {}", e.action));
    if let Some(t) = &e.target {
        m.push_str(&format!(" on {t}"));
    }
    match (e.ip, caller_ip) {
        (Some(addr), _) => m.push_str(&format!(" from {addr}")),
        (None, Some(text)) => m.push_str(&format!(" from {text}")),
        (None, None) => {}
    }
    m.push_str(if status.failed {
        ": failure"
    } else {
        ": success"
    });
    if status.failed {
        let why = status
            .name
            .map(str::to_owned)
            .or_else(|| status.code.clone());
        if let Some(why) = why {
            m.push_str(&format!(" ({why})"));
        }
    }
    e.message = one_line(&m);
    e
}

/// `protoPayload.status`, a `google.rpc.Status`.
struct Status {
    failed: bool,
    /// The code as written, when it is not 0.
    code: Option<String>,
    name: Option<&'static str>,
    message: Option<String>,
}

impl Status {
    fn of(status: Option<&Value>) -> Self {
        let message = status
            .and_then(|s| str_at(s, &["message"]))
            .map(|s| clean(s, FIELD_MAX));
        let code = match status.and_then(|s| s.get("code")) {
            None | Some(Value::Null) => Some(0),
            Some(Value::Number(n)) => n.as_i64(),
            Some(Value::String(s)) => s.trim().parse().ok().or_else(|| code_of_name(s.trim())),
            Some(_) => None,
        };
        match code {
            Some(0) => Self {
                failed: false,
                code: None,
                name: None,
                message,
            },
            Some(n) => Self {
                failed: true,
                code: Some(n.to_string()),
                name: code_name(n),
                message,
            },
            // A code that is not one is not 0.
            None => Self {
                failed: true,
                code: status
                    .and_then(|s| s.get("code"))
                    .map(|c| clean(&c.to_string(), NAME_MAX)),
                name: None,
                message,
            },
        }
    }
}

/// The canonical error codes of `google.rpc.Code`.
const CODES: [&str; 17] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

fn code_name(code: i64) -> Option<&'static str> {
    usize::try_from(code)
        .ok()
        .and_then(|i| CODES.get(i))
        .copied()
}

fn code_of_name(name: &str) -> Option<i64> {
    CODES
        .iter()
        .position(|c| *c == name)
        .and_then(|i| i64::try_from(i).ok())
}

/// The principals of `serviceAccountDelegationInfo`, in order, at most
/// [`LIST_MAX`] of them.
fn delegation(info: Option<&Value>) -> Vec<String> {
    let all = info
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    all.iter()
        .filter_map(|d| {
            str_at(d, &["firstPartyPrincipal", "principalEmail"])
                .or_else(|| str_at(d, &["principalSubject"]))
                .map(|s| clean(s, FIELD_MAX))
                .or_else(|| {
                    d.get("thirdPartyPrincipal")
                        .map(|t| clean(&format!("third party {t}"), FIELD_MAX))
                })
        })
        .take(LIST_MAX)
        .collect()
}

/// `authorizationInfo`, as the permissions granted and those denied.
fn authorizations(info: Option<&Value>) -> (Option<String>, Option<String>) {
    let all = info
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    let mut granted = Vec::new();
    let mut denied = Vec::new();
    for a in all {
        let permission = str_at(a, &["permission"]);
        let resource = str_at(a, &["resource"]);
        let item = match (permission, resource) {
            (Some(p), Some(r)) => format!("{p} on {r}"),
            (Some(p), None) => p.to_owned(),
            (None, _) => continue,
        };
        let item = clean(&item, FIELD_MAX);
        let to = if a.get("granted").and_then(Value::as_bool) == Some(true) {
            &mut granted
        } else {
            &mut denied
        };
        // A service repeats the same check; one of each is enough.
        if !to.contains(&item) {
            to.push(item);
        }
    }
    (list(granted), list(denied))
}

/// The IAM binding changes of a `SetIamPolicy`, `ACTION ROLE MEMBER`.
fn policy_delta(p: &Value) -> Option<String> {
    let deltas = ["serviceData", "metadata"].iter().find_map(|k| {
        p.get(k)?
            .get("policyDelta")?
            .get("bindingDeltas")?
            .as_array()
    })?;
    let items = deltas
        .iter()
        .filter_map(|d| {
            let part = |k: &str| str_at(d, &[k]).unwrap_or("?");
            (d.is_object()).then(|| {
                clean(
                    &format!("{} {} {}", part("action"), part("role"), part("member")),
                    FIELD_MAX,
                )
            })
        })
        .collect();
    list(items)
}

/// A list as one attribute: at most [`LIST_MAX`] entries, then how many more.
fn list(mut items: Vec<String>) -> Option<String> {
    if items.len() > LIST_MAX {
        let more = items.len() - LIST_MAX;
        items.truncate(LIST_MAX);
        items.push(format!("… ({more} more)"));
    }
    (!items.is_empty()).then(|| items.join(", "))
}

/// An entry that is not an audit log: `textPayload`, `jsonPayload`, another
/// `protoPayload`.
fn other_event(time: i64, v: &Value, log: &LogName<'_>) -> Event {
    let mut e = Event::new(time, SOURCE, log.action());
    let http = v.get("httpRequest").unwrap_or(&Value::Null);
    let remote = str_at(http, &["remoteIp"]);
    e.ip = remote.and_then(ip).map(|a| a.to_canonical());
    e.user_agent = str_at(http, &["userAgent"]).map(|s| clean(s, FIELD_MAX));
    e.target = str_at(http, &["requestUrl"]).map(|s| clean(s, FIELD_MAX));
    let payload_type = str_at(v, &["protoPayload", "@type"]);
    let a = &mut e.attributes;
    push(
        a,
        "http_method",
        str_at(http, &["requestMethod"]).map(|s| clean(s, NAME_MAX)),
    );
    push(
        a,
        "http_status",
        text_at(http, &["status"]).map(|s| clean(&s, NAME_MAX)),
    );
    if e.ip.is_none() {
        push(a, "remote_ip", remote.map(|s| clean(s, NAME_MAX)));
    }
    push(a, "payload_type", payload_type.map(|s| clean(s, NAME_MAX)));
    let text = str_at(v, &["textPayload"])
        .map(str::to_owned)
        .or_else(|| {
            let json = v.get("jsonPayload")?;
            ["message", "msg"]
                .iter()
                .find_map(|k| str_at(json, &[k]))
                .map(str::to_owned)
                .or_else(|| Some(json.to_string()))
        })
        .or_else(|| v.get("protoPayload").map(Value::to_string));
    e.message = one_line(text.as_deref().unwrap_or(&e.action));
    e
}

fn push(a: &mut Vec<(String, String)>, name: &str, value: Option<String>) {
    if let Some(v) = value.filter(|v| !v.is_empty()) {
        a.push((name.to_owned(), v));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timeline::parse::{Collect, Format, parse_file};

    const PROJECT: &str = "custody-demo-412345";

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!(
            "{}/tests/fixtures/logs/gcp/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn run(bytes: &[u8]) -> Collect {
        let mut c = Collect::default();
        gcp_audit(bytes, &mut c);
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

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        use std::io::Write as _;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(bytes).unwrap();
        gz.finish().unwrap()
    }

    /// The events without their places and digests, to compare containers.
    fn placeless(events: &[Event]) -> Vec<Event> {
        events
            .iter()
            .map(|e| Event {
                member: String::new(),
                locator: String::new(),
                content: None,
                ..e.clone()
            })
            .collect()
    }

    fn problems(c: &Collect) -> Vec<(&str, &str)> {
        c.problems
            .iter()
            .map(|p| (p.locator.as_str(), p.message.as_str()))
            .collect()
    }

    #[test]
    fn registered_as_gcp_audit() {
        assert_eq!(Format::from_name("gcp-audit"), Some(Format::GcpAudit));
        assert_eq!(Format::GcpAudit.name(), "gcp-audit");
        assert_eq!(Format::GcpAudit.source(), "gcp_audit");
    }

    #[test]
    fn set_iam_policy_by_a_user() {
        let c = run(&fixture("gcloud-read.json"));
        assert_eq!(problems(&c), []);
        let e = &c.events[0];
        assert_eq!(e.time_us, us("2024-06-01T08:00:00.987654Z"), "ns cut to µs");
        assert_eq!(e.source, "gcp_audit");
        assert_eq!(e.account.as_deref(), Some(PROJECT));
        assert_eq!(e.actor.as_deref(), Some("alice@example.com"));
        assert_eq!(e.action, "SetIamPolicy");
        assert_eq!(e.outcome.as_deref(), Some("success"));
        assert_eq!(e.ip, "203.0.113.7".parse().ok());
        assert!(e.user_agent.as_deref().unwrap().starts_with(
            "google-cloud-sdk gcloud/470.0.0 command/gcloud.projects.add-iam-policy-binding"
        ));
        assert_eq!(e.target.as_deref(), Some("projects/custody-demo-412345"));
        assert_eq!(e.record_id.as_deref(), Some("-q3k7vde2b1c"));
        assert!(e.content.is_some(), "the record went through Sink::record");
        assert_eq!(e.locator, "[0]");
        assert_eq!(e.member, "");
        assert_eq!(
            attrs(e),
            [
                ("service", "cloudresourcemanager.googleapis.com"),
                ("log", "activity"),
                ("severity", "NOTICE"),
                ("resource_type", "project"),
                (
                    "permission_granted",
                    "resourcemanager.projects.setIamPolicy on projects/custody-demo-412345"
                ),
                ("policy_delta", "ADD roles/owner user:mallory@example.net"),
            ]
        );
        assert_eq!(
            e.message,
            "alice@example.com SetIamPolicy on projects/custody-demo-412345 from 203.0.113.7: success"
        );
    }

    #[test]
    fn instance_insert_by_an_impersonated_service_account() {
        let c = run(&fixture("gcloud-read.json"));
        let e = &c.events[1];
        let sa = format!("deployer@{PROJECT}.iam.gserviceaccount.com");
        assert_eq!(e.time_us, us("2024-06-01T08:05:00.101234Z"));
        assert_eq!(e.actor.as_deref(), Some(sa.as_str()));
        assert_eq!(e.action, "v1.compute.instances.insert");
        assert_eq!(e.outcome.as_deref(), Some("success"), "no status at all");
        assert_eq!(e.ip, "198.51.100.23".parse().ok());
        assert_eq!(
            e.target.as_deref(),
            Some("projects/custody-demo-412345/zones/europe-west1-b/instances/miner-01")
        );
        assert_eq!(e.account.as_deref(), Some(PROJECT));
        assert_eq!(e.attribute("delegation"), Some("bob@example.com"));
        assert_eq!(e.attribute("log"), Some("activity"));
        assert_eq!(e.attribute("resource_type"), Some("gce_instance"));
        assert_eq!(
            e.attribute("principal_subject"),
            Some(format!("serviceAccount:{sa}").as_str())
        );
        assert_eq!(
            e.attribute("permission_granted"),
            Some(
                "compute.instances.create on projects/custody-demo-412345/zones/europe-west1-b/instances/miner-01, \
                 compute.disks.create on projects/custody-demo-412345/zones/europe-west1-b/disks/miner-01"
            )
        );
        assert_eq!(
            e.attribute("operation"),
            Some("operation-1717229100123-61a0c3e4d5f6a-7b8c9d0e-1f2a3b4c")
        );
        assert_eq!(e.attribute("permission_denied"), None);
        assert_eq!(
            e.message,
            format!(
                "{sa} (delegated by bob@example.com) v1.compute.instances.insert on \
                 projects/custody-demo-412345/zones/europe-west1-b/instances/miner-01 from 198.51.100.23: success"
            )
        );
    }

    #[test]
    fn data_access_from_a_private_caller_keeps_the_word() {
        let c = run(&fixture("gcloud-read.json"));
        let e = &c.events[2];
        assert_eq!(e.action, "storage.objects.get");
        assert_eq!(e.ip, None, "\"private\" is no address");
        assert_eq!(e.attribute("caller_ip"), Some("private"));
        assert_eq!(e.attribute("log"), Some("data_access"));
        assert_eq!(e.attribute("service"), Some("storage.googleapis.com"));
        assert_eq!(e.attribute("severity"), Some("INFO"));
        assert_eq!(
            e.target.as_deref(),
            Some("projects/_/buckets/custody-demo-exports/objects/customers.csv")
        );
        assert!(
            e.message.ends_with(" from private: success"),
            "{}",
            e.message
        );
    }

    #[test]
    fn permission_denied_is_a_failure_with_its_code_and_key() {
        let c = run(&fixture("gcloud-read.json"));
        let e = &c.events[3];
        assert_eq!(e.action, "google.iam.admin.v1.CreateServiceAccountKey");
        assert_eq!(e.outcome.as_deref(), Some("failure"));
        assert_eq!(e.ip, "192.0.2.44".parse().ok());
        assert_eq!(
            e.user_agent.as_deref(),
            Some("python-requests/2.31.0,gzip(gfe)")
        );
        assert_eq!(e.attribute("status_code"), Some("7"));
        assert_eq!(e.attribute("status"), Some("PERMISSION_DENIED"));
        assert_eq!(
            e.attribute("status_message"),
            Some(
                "Permission 'iam.serviceAccountKeys.create' denied on resource (or it may not exist)."
            )
        );
        assert_eq!(
            e.attribute("permission_denied"),
            Some(
                "iam.serviceAccountKeys.create on projects/-/serviceAccounts/104857600000000000001"
            ),
            "proto3 JSON leaves `granted: false` out"
        );
        assert_eq!(e.attribute("permission_granted"), None);
        assert_eq!(
            e.attribute("service_account_key"),
            Some(
                "//iam.googleapis.com/projects/custody-demo-412345/serviceAccounts/ci-runner@custody-demo-412345.iam.gserviceaccount.com/keys/3f0c9b1a7e5d2c4b6a8f0e1d3c5b7a9f2e4d6c8b"
            )
        );
        assert_eq!(
            e.attribute("principal_subject"),
            Some("serviceAccount:ci-runner@custody-demo-412345.iam.gserviceaccount.com")
        );
        assert_eq!(e.attribute("severity"), Some("ERROR"));
        assert!(
            e.message
                .ends_with(" from 192.0.2.44: failure (PERMISSION_DENIED)"),
            "{}",
            e.message
        );
    }

    #[test]
    fn a_system_event_with_a_status_message_but_no_code_succeeded() {
        let c = run(&fixture("gcloud-read.json"));
        let e = &c.events[4];
        assert_eq!(e.action, "compute.instances.preempted");
        assert_eq!(e.actor.as_deref(), Some("system@google.com"));
        assert_eq!(e.outcome.as_deref(), Some("success"));
        assert_eq!(e.ip, None);
        assert_eq!(e.user_agent, None);
        assert_eq!(
            attrs(e),
            [
                ("service", "compute.googleapis.com"),
                ("log", "system_event"),
                ("severity", "INFO"),
                ("resource_type", "gce_instance"),
                ("status_message", "Instance was preempted."),
                (
                    "operation",
                    "systemevent-1717232400000-61a0d0e2a1b3c-4d5e6f70-81920a3b"
                ),
            ]
        );
    }

    #[test]
    fn entries_of_other_logs_are_kept() {
        let c = run(&fixture("gcloud-read.json"));
        assert_eq!(c.events.len(), 7);
        let text = &c.events[5];
        assert_eq!(text.action, "run.googleapis.com/stderr");
        assert_eq!(text.time_us, us("2024-06-01T09:05:12.123456Z"));
        assert_eq!(text.account.as_deref(), Some(PROJECT));
        assert_eq!(text.actor, None);
        assert_eq!(text.outcome, None);
        assert_eq!(text.record_id.as_deref(), Some("665b1e2a0004f1c2a7c3d1e8"));
        assert_eq!(
            text.message,
            "Traceback (most recent call last):\\n  File \"/app/main.py\", line 42, in handler\\nKeyError: 'customer_id'"
        );
        assert_eq!(
            attrs(text),
            [
                ("log", "run.googleapis.com/stderr"),
                ("severity", "ERROR"),
                ("resource_type", "cloud_run_revision"),
            ]
        );
        let json = &c.events[6];
        assert_eq!(json.action, "stdout");
        assert_eq!(json.message, "login throttled for user mallory");
        assert_eq!(json.time_us, us("2024-06-01T09:05:59.999999Z"));
        assert_eq!(json.attribute("resource_type"), Some("k8s_container"));
    }

    #[test]
    fn sink_lines_and_gzip_give_the_same_events_as_the_array() {
        let array = run(&fixture("gcloud-read.json"));
        let sink = fixture("sink-mixed.json");
        let lines = run(&sink);
        assert_eq!(problems(&lines), []);
        assert_eq!(placeless(&lines.events), placeless(&array.events));
        let places: Vec<&str> = lines.events.iter().map(|e| e.locator.as_str()).collect();
        assert_eq!(
            places,
            [
                "line 1", "line 2", "line 3", "line 4", "line 5", "line 6", "line 7"
            ]
        );
        // Compact and pretty copies of one record are other content.
        assert_ne!(lines.events[0].content, array.events[0].content);

        let member = "cloudaudit.googleapis.com/activity/2024/06/01/08:00:00_08:59:59_S0.json.gz";
        let mut gz = Collect::default();
        parse_file(Format::GcpAudit, member, &gzip(&sink), 2024, &mut gz);
        assert_eq!(problems(&gz), []);
        assert_eq!(gz.events.len(), 7);
        assert!(gz.events.iter().all(|e| e.member == member));
        assert_eq!(placeless(&gz.events), placeless(&lines.events));
        assert_eq!(gz.events[3].locator, "line 4");
        assert_eq!(gz.events[3].content, lines.events[3].content);
    }

    /// Line `n` (1-based) of the sink fixture.
    fn sink_line(n: usize) -> String {
        String::from_utf8(fixture("sink-mixed.json"))
            .unwrap()
            .lines()
            .nth(n - 1)
            .unwrap()
            .to_owned()
    }

    /// A record nested far past serde_json's limit.
    fn deep() -> String {
        format!(
            r#"{{"timestamp":"2024-06-01T10:00:00Z","jsonPayload":{}{}}}"#,
            "[".repeat(100_000),
            "]".repeat(100_000)
        )
    }

    /// Line 1 with a new insertId and a 1 MiB user agent.
    fn huge() -> String {
        let mut v: Value = serde_json::from_str(&sink_line(1)).unwrap();
        v["insertId"] = "huge-1".into();
        v["protoPayload"]["requestMetadata"]["callerSuppliedUserAgent"] =
            "A".repeat(1 << 20).into();
        v.to_string()
    }

    #[test]
    fn damaged_lines_are_problems_and_reading_goes_on() {
        let cut = &sink_line(2)[..200];
        let text = [
            sink_line(1),
            cut.to_owned(),
            sink_line(3),
            r#""just text""#.to_owned(),
            r#"{"insertId":"no-time","logName":"projects/p/logs/syslog","textPayload":"x"}"#
                .to_owned(),
            r#"{"insertId":"bad-time","timestamp":"yesterday","textPayload":"x"}"#.to_owned(),
            deep(),
            huge(),
            sink_line(4),
        ]
        .join("\n");
        let c = run(text.as_bytes());
        let got = problems(&c);
        assert_eq!(got.len(), 5, "{got:#?}");
        assert_eq!(got[0].0, "line 2");
        assert!(
            got[0].1.starts_with("unreadable record: EOF"),
            "{}",
            got[0].1
        );
        assert_eq!(
            got[1],
            ("line 4", "not a LogEntry: the record is not a JSON object")
        );
        assert_eq!(
            got[2],
            ("line 5", "a LogEntry without a timestamp; skipped")
        );
        assert_eq!(
            got[3],
            (
                "line 6",
                "timestamp \"yesterday\" is not an RFC 3339 time; skipped"
            )
        );
        assert_eq!(got[4].0, "line 7");
        assert!(
            got[4].1.contains("recursion limit exceeded"),
            "{}",
            got[4].1
        );

        let places: Vec<&str> = c.events.iter().map(|e| e.locator.as_str()).collect();
        assert_eq!(places, ["line 1", "line 3", "line 8", "line 9"]);
        let huge = &c.events[2];
        assert_eq!(huge.record_id.as_deref(), Some("huge-1"));
        assert_eq!(
            huge.user_agent.as_deref(),
            Some(
                format!(
                    "{}… ({} more bytes)",
                    "A".repeat(FIELD_MAX),
                    (1 << 20) - FIELD_MAX
                )
                .as_str()
            )
        );
        assert!(huge.message.chars().count() <= crate::timeline::parse::linux::MESSAGE_MAX + 1);
        assert_eq!(
            c.events[3].action,
            "google.iam.admin.v1.CreateServiceAccountKey"
        );
    }

    #[test]
    fn a_damaged_array_is_read_past_a_bad_record_and_up_to_its_cut() {
        let text = format!(
            "[\n{},\n{},\n42,\n{{\"timestamp\": \"2024-06-01T10:00:00Z\", \"bad\": tru }},\n{},\n{}",
            sink_line(1),
            deep(),
            sink_line(3),
            &sink_line(4)[..300],
        );
        let c = run(text.as_bytes());
        let got = problems(&c);
        assert_eq!(got.len(), 4, "{got:#?}");
        assert_eq!(got[0].0, "[1]");
        assert!(
            got[0].1.contains("recursion limit exceeded") && got[0].1.ends_with("; skipped"),
            "{}",
            got[0].1
        );
        assert_eq!(
            got[1],
            ("[2]", "not a LogEntry: the record is not a JSON object")
        );
        assert_eq!(got[2].0, "[3]");
        assert!(got[2].1.ends_with("; skipped"), "{}", got[2].1);
        assert_eq!(got[3].0, "[5]");
        assert!(
            got[3].1.ends_with("the file ends inside it (truncated?)"),
            "{}",
            got[3].1
        );
        let places: Vec<&str> = c.events.iter().map(|e| e.locator.as_str()).collect();
        assert_eq!(places, ["[0]", "[4]"]);
        assert_eq!(c.events[1].action, "storage.objects.get");
    }

    #[test]
    fn appended_arrays_and_organisation_logs() {
        let org = r#"{"insertId":"o1","logName":"organizations/123456789012/logs/cloudaudit.googleapis.com%2Fpolicy","protoPayload":{"@type":"type.googleapis.com/google.cloud.audit.AuditLog","authenticationInfo":{"principalSubject":"principal://iam.googleapis.com/locations/global/workforcePools/contractors/subject/eve"},"methodName":"google.storage.v1.Storage.GetObject","requestMetadata":{"callerIp":"gce-internal-ip"},"serviceName":"storage.googleapis.com","status":{"code":"PERMISSION_DENIED","message":"Request is prohibited by organization's policy."}},"resource":{"type":"audited_resource"},"severity":"ERROR","timestamp":"2024-06-01T11:00:00Z"}"#;
        let text = format!("[{}]\n[\n{org}\n]\n", sink_line(1));
        let c = run(text.as_bytes());
        assert_eq!(problems(&c), []);
        assert_eq!(c.events.len(), 2);
        let e = &c.events[1];
        assert_eq!(e.locator, "array 2 [0]");
        assert_eq!(e.account.as_deref(), Some("organizations/123456789012"));
        assert_eq!(
            e.actor.as_deref(),
            Some(
                "principal://iam.googleapis.com/locations/global/workforcePools/contractors/subject/eve"
            )
        );
        assert_eq!(e.attribute("principal_subject"), None, "it is the actor");
        assert_eq!(e.attribute("log"), Some("policy"));
        assert_eq!(e.attribute("caller_ip"), Some("gce-internal-ip"));
        assert_eq!(e.outcome.as_deref(), Some("failure"));
        assert_eq!(e.attribute("status_code"), Some("7"));
        assert_eq!(e.attribute("status"), Some("PERMISSION_DENIED"));
    }
}
