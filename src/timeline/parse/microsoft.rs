//! Microsoft logs: Azure Activity Log, Entra ID sign-in and audit logs, the
//! Microsoft 365 Unified Audit Log.
//!
//! The JSON exports come as a JSON array, a Graph/REST page
//! (`{"value": [...]}`) or JSON lines. Arrays and pages are walked record by
//! record, so a truncated download still yields every record before the cut.

use std::net::IpAddr;

use serde::de::{DeserializeOwned, IgnoredAny};
use serde_json::Value;

use super::{Sink, problem, str_at, text_at, time_us};
use crate::timeline::Event;

const BOM: &[u8] = b"\xEF\xBB\xBF";
const UPN_CLAIM: &str = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn";
const NAME_CLAIM: &str = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name";

/// Azure Activity Log export: the REST/portal shape (`eventTimestamp`,
/// localizable `operationName`) and the diagnostic-settings shape written to
/// storage or Event Hubs (`time`, plain `operationName`, `resultType`).
pub fn azure_activity(bytes: &[u8], sink: &mut dyn Sink) {
    json_records(bytes, sink, &activity_event);
}

/// Entra ID sign-ins: Graph `signIns` (v1.0 and beta) or the portal's JSON download.
pub fn entra_signin(bytes: &[u8], sink: &mut dyn Sink) {
    json_records(bytes, sink, &signin_event);
}

/// Entra ID audit logs: Graph `directoryAudits`.
pub fn entra_audit(bytes: &[u8], sink: &mut dyn Sink) {
    json_records(bytes, sink, &audit_event);
}

/// The Unified Audit Log as exported by a Purview audit search, in either
/// header shape; columns are found by name. Every row is kept, duplicates
/// included: the timeline store drops repeated record ids across files.
pub fn ual_csv(bytes: &[u8], sink: &mut dyn Sink) {
    let bytes = bytes.strip_prefix(BOM).unwrap_or(bytes);
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .from_reader(bytes);
    let headers = match reader.byte_headers() {
        Ok(h) => h.clone(),
        Err(e) => {
            sink.problem(problem("line 1", format!("unreadable CSV header: {e}")));
            return;
        }
    };
    let column = |names: &[&str]| {
        headers.iter().position(|h| {
            let h = String::from_utf8_lossy(h);
            names.iter().any(|n| h.trim().eq_ignore_ascii_case(n))
        })
    };
    let Some(audit_data) = column(&["AuditData"]) else {
        sink.problem(problem(
            "line 1",
            "no AuditData column: not a Purview audit log export",
        ));
        return;
    };
    let creation_date = column(&["CreationDate"]);
    let user = column(&["UserIds", "UserId"]);
    let operation = column(&["Operations", "Operation"]);
    let record_id = column(&["RecordId"]);
    let record_type = column(&["RecordType"]);

    let mut record = csv::ByteRecord::new();
    let mut row = 0u64;
    loop {
        match reader.read_byte_record(&mut record) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => {
                // Reading from memory only fails on malformed input the
                // reader cannot step past; report where it stopped.
                sink.problem(problem(format!("row {}", row + 1), format!("unreadable CSV: {e}")));
                break;
            }
        }
        row += 1;
        let line = record.position().map_or(0, csv::Position::line);
        let locator = format!("row {row} (line {line})");
        if record.len() != headers.len() {
            sink.problem(problem(
                locator,
                format!(
                    "{} fields where the header has {}: the row is cut or malformed",
                    record.len(),
                    headers.len()
                ),
            ));
            continue;
        }
        let field = |i: Option<usize>| {
            i.and_then(|i| record.get(i))
                .map(|f| String::from_utf8_lossy(f).trim().to_owned())
                .filter(|f| !f.is_empty())
        };
        let Some(text) = field(Some(audit_data)) else {
            sink.problem(problem(locator, "AuditData is empty"));
            continue;
        };
        let data = match parse_audit_data(&text) {
            Ok(v) => v,
            Err(e) => {
                sink.problem(problem(locator, format!("AuditData is not valid JSON: {e}")));
                continue;
            }
        };
        let columns = UalColumns {
            creation_date: field(creation_date),
            user: field(user),
            operation: field(operation),
            record_id: field(record_id),
            record_type: field(record_type),
        };
        emit(&data, locator, sink, &|v| ual_event(v, &columns));
    }
}

/// The Unified Audit Log as JSON lines (one AuditData record a line), or a
/// JSON array of such records.
pub fn ual_jsonl(bytes: &[u8], sink: &mut dyn Sink) {
    let none = UalColumns::default();
    json_records(bytes, sink, &|v| ual_event(v, &none));
}

// ---------------------------------------------------------------------------
// JSON containers

type Mapper<'a> = &'a dyn Fn(&Value) -> Result<Event, String>;

/// Reads records from a JSON array, `{"value": [...]}` pages or JSON lines,
/// chosen by the first byte and, for `{`, by whether it opens a page.
fn json_records(bytes: &[u8], sink: &mut dyn Sink, map: Mapper<'_>) {
    let bytes = bytes.strip_prefix(BOM).unwrap_or(bytes);
    let start = skip_ws(bytes, 0);
    match bytes.get(start) {
        None => {}
        Some(b'[') => {
            if let Some(end) = walk_array(bytes, start, "", sink, map) {
                trailing(bytes, end, sink);
            }
        }
        Some(b'{') if page_array(bytes, start).is_some() => walk_pages(bytes, start, sink, map),
        Some(_) => walk_lines(bytes, sink, map),
    }
}

/// The records of one or more `{"value": [...]}` pages, one after another
/// (as a collector appending pages writes them). Later pages are located as
/// `page N value[i]` so that no two records share a locator.
fn walk_pages(bytes: &[u8], mut pos: usize, sink: &mut dyn Sink, map: Mapper<'_>) {
    let mut page = 1;
    while let Some(array) = page_array(bytes, pos) {
        let prefix = if page == 1 {
            "value".to_owned()
        } else {
            format!("page {page} value")
        };
        let Some(after_array) = walk_array(bytes, array, &prefix, sink, map) else {
            return;
        };
        // The rest of the page (`@odata.nextLink`, ...) carries no records.
        match close_object(bytes, after_array) {
            Ok(end) => pos = skip_ws(bytes, end),
            Err(e) => {
                sink.problem(problem(
                    format!("byte {after_array}"),
                    format!("the page is damaged after its records: {e}"),
                ));
                return;
            }
        }
        if bytes.get(pos) != Some(&b'{') {
            break;
        }
        page += 1;
    }
    trailing(bytes, pos, sink);
}

/// Where the `value` array of the page opening at `open` starts, if it is a
/// page. Read key by key so a page cut inside its array is still recognised.
fn page_array(bytes: &[u8], open: usize) -> Option<usize> {
    if bytes.get(open) != Some(&b'{') {
        return None;
    }
    let mut pos = skip_ws(bytes, open + 1);
    loop {
        if bytes.get(pos) != Some(&b'"') {
            return None;
        }
        let (key, after) = read::<String>(bytes, pos).ok()?;
        pos = skip_ws(bytes, after);
        if bytes.get(pos) != Some(&b':') {
            return None;
        }
        pos = skip_ws(bytes, pos + 1);
        if key == "value" && bytes.get(pos) == Some(&b'[') {
            return Some(pos);
        }
        let (_, after) = read::<IgnoredAny>(bytes, pos).ok()?;
        pos = skip_ws(bytes, after);
        if bytes.get(pos) != Some(&b',') {
            return None;
        }
        pos = skip_ws(bytes, pos + 1);
    }
}

/// Skips the remaining members of an object up to its `}`; the position after it.
fn close_object(bytes: &[u8], mut pos: usize) -> Result<usize, String> {
    loop {
        pos = skip_ws(bytes, pos);
        match bytes.get(pos) {
            Some(b'}') => return Ok(pos + 1),
            Some(b',') => {
                let (_, after) = read::<String>(bytes, skip_ws(bytes, pos + 1)).map_err(|e| e.to_string())?;
                pos = skip_ws(bytes, after);
                if bytes.get(pos) != Some(&b':') {
                    return Err("expected ':' after a key".to_owned());
                }
                let (_, after) = read::<IgnoredAny>(bytes, skip_ws(bytes, pos + 1)).map_err(|e| e.to_string())?;
                pos = after;
            }
            Some(_) => return Err("expected ',' or '}'".to_owned()),
            None => return Err("the object ends without '}' (truncated?)".to_owned()),
        }
    }
}

/// Walks the array opening at `open` element by element. The position after
/// its `]`, or None when it is damaged (reported at the damaged record:
/// nothing after it can be located reliably).
fn walk_array(
    bytes: &[u8],
    open: usize,
    prefix: &str,
    sink: &mut dyn Sink,
    map: Mapper<'_>,
) -> Option<usize> {
    let mut pos = skip_ws(bytes, open + 1);
    if bytes.get(pos) == Some(&b']') {
        return Some(pos + 1);
    }
    let mut i = 0usize;
    loop {
        match read::<Value>(bytes, pos) {
            Ok((v, after)) => {
                emit(&v, format!("{prefix}[{i}]"), sink, map);
                pos = skip_ws(bytes, after);
            }
            Err(e) => {
                sink.problem(problem(
                    format!("{prefix}[{i}]"),
                    format!("unreadable record ({e}); the array cannot be read past it"),
                ));
                return None;
            }
        }
        i += 1;
        match bytes.get(pos) {
            Some(b',') => pos = skip_ws(bytes, pos + 1),
            Some(b']') => return Some(pos + 1),
            found => {
                let what = if found.is_some() {
                    "expected ',' or ']' after the record before"
                } else {
                    "the array ends without ']' (truncated?)"
                };
                sink.problem(problem(format!("{prefix}[{i}]"), what));
                return None;
            }
        }
    }
}

/// JSON lines: each line one record. A bad line is reported and skipped; a
/// value spread over several lines (pretty-printed) is read whole.
fn walk_lines(bytes: &[u8], sink: &mut dyn Sink, map: Mapper<'_>) {
    let mut pos = 0;
    let mut line = 1;
    let mut counted = 0;
    loop {
        pos = skip_ws(bytes, pos);
        if pos >= bytes.len() {
            return;
        }
        line += bytes
            .get(counted..pos)
            .map_or(0, |s| memchr::memchr_iter(b'\n', s).count());
        counted = pos;
        let locator = format!("line {line}");
        let line_end = bytes
            .get(pos..)
            .and_then(|rest| memchr::memchr(b'\n', rest))
            .map_or(bytes.len(), |n| pos + n);
        let this_line = bytes.get(..line_end).unwrap_or_default();
        let parsed = match read::<Value>(this_line, pos) {
            Err(e) if e.is_eof() => read::<Value>(bytes, pos).map_err(|_| e),
            other => other,
        };
        match parsed {
            Ok((v, after)) => {
                emit(&v, locator, sink, map);
                pos = after;
            }
            Err(e) => {
                sink.problem(problem(locator, format!("unreadable record: {e}")));
                pos = line_end + 1;
            }
        }
    }
}

fn trailing(bytes: &[u8], end: usize, sink: &mut dyn Sink) {
    let pos = skip_ws(bytes, end);
    if pos < bytes.len() {
        sink.problem(problem(
            format!("byte {pos}"),
            "unexpected data after the JSON document, not read",
        ));
    }
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

fn skip_ws(bytes: &[u8], mut pos: usize) -> usize {
    while bytes.get(pos).is_some_and(u8::is_ascii_whitespace) {
        pos += 1;
    }
    pos
}

/// Sends the record's event, or a problem, located at `locator`.
fn emit(v: &Value, locator: String, sink: &mut dyn Sink, map: Mapper<'_>) {
    if !v.is_object() {
        sink.problem(problem(locator, "the record is not a JSON object"));
        return;
    }
    match map(v) {
        Ok(mut event) => {
            event.message = summary(&event);
            event.locator = locator;
            sink.event(event);
        }
        Err(e) => sink.problem(problem(locator, e)),
    }
}

// ---------------------------------------------------------------------------
// Shared mapping

/// `alice@contoso.com New-InboxRule from 203.0.113.10: success`
fn summary(e: &Event) -> String {
    let mut s = String::new();
    if let Some(actor) = &e.actor {
        s.push_str(actor);
        s.push(' ');
    }
    s.push_str(&e.action);
    if let Some(ip) = e.ip {
        s.push_str(&format!(" from {ip}"));
    }
    if let Some(outcome) = &e.outcome {
        s.push_str(&format!(": {outcome}"));
    }
    s
}

/// `success` / `failure` where the source's word means that, else the word lowercased.
fn outcome(raw: &str) -> Option<String> {
    let word = raw.trim().to_ascii_lowercase();
    match word.as_str() {
        "" => None,
        "succeeded" | "success" | "true" => Some("success".to_owned()),
        "failed" | "failure" | "false" => Some("failure".to_owned()),
        _ => Some(word),
    }
}

fn required_time(v: &Value, keys: &[&str]) -> Result<i64, String> {
    let Some(text) = keys.iter().find_map(|k| str_at(v, &[k])) else {
        return Err(format!("the record has no {}", keys.join(" or ")));
    };
    time_us(text).ok_or_else(|| format!("unreadable time {text:?}"))
}

/// An address as the logs write it (ports stripped); IPv4-mapped IPv6 as
/// IPv4 so one address pivots as one.
fn address(text: Option<&str>) -> Option<IpAddr> {
    text.and_then(super::ip).map(|ip| ip.to_canonical())
}

fn push(attributes: &mut Vec<(String, String)>, name: &str, value: Option<String>) {
    if let Some(value) = value.filter(|v| !v.is_empty()) {
        attributes.push((name.to_owned(), value));
    }
}

/// A REST localizable string (`{"value", "localizedValue"}`) or a plain string.
fn localized(v: &Value, key: &str) -> Option<String> {
    match v.get(key)? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        obj @ Value::Object(_) => str_at(obj, &["value"])
            .or_else(|| str_at(obj, &["localizedValue"]))
            .map(str::to_owned),
        _ => None,
    }
}

// ---------------------------------------------------------------------------
// Azure Activity Log

fn activity_event(v: &Value) -> Result<Event, String> {
    let time = required_time(v, &["eventTimestamp", "time"])?;
    let operation = localized(v, "operationName").unwrap_or_default();
    let mut e = Event::new(time, "azure_activity", operation.clone());
    let resource = str_at(v, &["resourceId"]);
    e.account = str_at(v, &["subscriptionId"])
        .map(str::to_owned)
        .or_else(|| resource.and_then(subscription_of))
        .map(|s| s.to_ascii_lowercase());
    // REST carries `claims` at the top, the diagnostic shape under `identity`.
    let claims = v.get("claims").or_else(|| v.pointer("/identity/claims"));
    let claim = |name: &str| claims.and_then(|c| str_at(c, &[name]));
    e.actor = str_at(v, &["caller"])
        .or_else(|| claim(UPN_CLAIM))
        .or_else(|| claim(NAME_CLAIM))
        .or_else(|| claim("appid"))
        .map(str::to_owned);
    let status = localized(v, "status").or_else(|| localized(v, "resultType"));
    e.outcome = status.as_deref().and_then(outcome);
    e.ip = address(
        str_at(v, &["httpRequest", "clientIpAddress"]).or_else(|| str_at(v, &["callerIpAddress"])),
    );
    e.target = resource.map(str::to_owned);
    let correlation = str_at(v, &["correlationId"]);
    // Without an eventDataId (the diagnostic shape), the start and the end of
    // one operation share correlation id and operation: the result and the
    // time keep them apart so the store does not drop one as a duplicate.
    e.record_id = str_at(v, &["eventDataId"]).map(str::to_owned).or_else(|| {
        correlation.map(|c| {
            let time = str_at(v, &["time"]).unwrap_or_default();
            let status = status.as_deref().unwrap_or_default();
            format!("{c}|{operation}|{status}|{time}")
        })
    });
    let sub_status = localized(v, "subStatus").or_else(|| localized(v, "resultSignature"));
    push(&mut e.attributes, "category", localized(v, "category"));
    push(&mut e.attributes, "level", localized(v, "level"));
    push(&mut e.attributes, "correlation_id", correlation.map(str::to_owned));
    push(&mut e.attributes, "sub_status", sub_status);
    Ok(e)
}

/// The subscription id in `/subscriptions/<id>/...`, any case.
fn subscription_of(resource: &str) -> Option<String> {
    let mut parts = resource.split('/');
    parts.find(|p| p.eq_ignore_ascii_case("subscriptions"))?;
    parts.next().filter(|id| !id.is_empty()).map(str::to_owned)
}

// ---------------------------------------------------------------------------
// Entra ID

fn signin_event(v: &Value) -> Result<Event, String> {
    let time = required_time(v, &["createdDateTime"])?;
    let mut e = Event::new(time, "entra_signin", "SignIn");
    e.account = str_at(v, &["tenantId"])
        .or_else(|| str_at(v, &["homeTenantId"]))
        .map(str::to_owned);
    e.actor = str_at(v, &["userPrincipalName"])
        .or_else(|| str_at(v, &["userDisplayName"]))
        .map(str::to_owned);
    let error_code = text_at(v, &["status", "errorCode"]);
    e.outcome = error_code.as_deref().map(|code| {
        if code == "0" { "success" } else { "failure" }.to_owned()
    });
    e.ip = address(str_at(v, &["ipAddress"]));
    e.user_agent = str_at(v, &["userAgent"]).map(str::to_owned);
    let app = str_at(v, &["appDisplayName"]);
    e.target = str_at(v, &["resourceDisplayName"]).or(app).map(str::to_owned);
    e.record_id = str_at(v, &["id"]).map(str::to_owned);
    let a = &mut e.attributes;
    push(a, "app", app.map(str::to_owned));
    push(a, "client_app", text_at(v, &["clientAppUsed"]));
    push(a, "error_code", error_code);
    push(a, "failure_reason", text_at(v, &["status", "failureReason"]));
    push(a, "country", text_at(v, &["location", "countryOrRegion"]));
    push(a, "city", text_at(v, &["location", "city"]));
    push(a, "asn", text_at(v, &["autonomousSystemNumber"]));
    push(a, "conditional_access", text_at(v, &["conditionalAccessStatus"]));
    push(a, "interactive", text_at(v, &["isInteractive"]));
    Ok(e)
}

fn audit_event(v: &Value) -> Result<Event, String> {
    let time = required_time(v, &["activityDateTime"])?;
    let action = str_at(v, &["activityDisplayName"]).unwrap_or_default();
    let mut e = Event::new(time, "entra_audit", action);
    e.account = str_at(v, &["tenantId"]).map(str::to_owned);
    e.actor = str_at(v, &["initiatedBy", "user", "userPrincipalName"])
        .or_else(|| str_at(v, &["initiatedBy", "app", "displayName"]))
        .or_else(|| str_at(v, &["initiatedBy", "app", "servicePrincipalName"]))
        .map(str::to_owned);
    e.outcome = str_at(v, &["result"]).and_then(outcome);
    e.ip = address(str_at(v, &["initiatedBy", "user", "ipAddress"]));
    e.user_agent = v
        .get("additionalDetails")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|d| str_at(d, &["key"]).is_some_and(|k| k.eq_ignore_ascii_case("User-Agent")))
        .and_then(|d| str_at(d, &["value"]))
        .map(str::to_owned);
    // A user target's UPN names it uniquely; other targets only have a display name.
    let targets: Vec<&str> = v
        .get("targetResources")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|t| str_at(t, &["userPrincipalName"]).or_else(|| str_at(t, &["displayName"])))
        .collect();
    e.target = (!targets.is_empty()).then(|| targets.join(", "));
    e.record_id = str_at(v, &["id"]).map(str::to_owned);
    let a = &mut e.attributes;
    push(a, "category", text_at(v, &["category"]));
    push(a, "logged_by", text_at(v, &["loggedByService"]));
    push(a, "operation_type", text_at(v, &["operationType"]));
    push(a, "result_reason", text_at(v, &["resultReason"]));
    Ok(e)
}

// ---------------------------------------------------------------------------
// Unified Audit Log

/// What a CSV row says outside AuditData, used where AuditData is silent.
#[derive(Default)]
struct UalColumns {
    creation_date: Option<String>,
    user: Option<String>,
    operation: Option<String>,
    record_id: Option<String>,
    record_type: Option<String>,
}

/// Parameters flattened into one attribute, and the ones that matter on their own.
const FORWARDING_PARAMETERS: [&str; 5] = [
    "ForwardTo",
    "ForwardAsAttachmentTo",
    "RedirectTo",
    "ForwardingSmtpAddress",
    "ForwardingAddress",
];

fn ual_event(v: &Value, columns: &UalColumns) -> Result<Event, String> {
    let time_text = str_at(v, &["CreationTime"])
        .or(columns.creation_date.as_deref())
        .ok_or("the record has no CreationTime")?;
    let time = time_us(time_text).ok_or_else(|| format!("unreadable time {time_text:?}"))?;
    let action = str_at(v, &["Operation"])
        .or(columns.operation.as_deref())
        .unwrap_or_default();
    let mut e = Event::new(time, "m365_ual", action);
    e.account = str_at(v, &["OrganizationId"]).map(str::to_owned);
    e.actor = str_at(v, &["UserId"])
        .map(str::to_owned)
        .or_else(|| columns.user.clone());
    e.outcome = str_at(v, &["ResultStatus"]).and_then(outcome);
    e.ip = ["ClientIP", "ClientIPAddress", "ActorIpAddress"]
        .iter()
        .find_map(|k| address(str_at(v, &[k])));
    e.user_agent = name_value(v, "ExtendedProperties", "UserAgent")
        .or_else(|| text_at(v, &["UserAgent"]))
        .or_else(|| text_at(v, &["ClientInfoString"]));
    let subject = text_at(v, &["Item", "Subject"]);
    // Mailbox audit records have no ObjectId: the item's subject, the cmdlet's
    // Identity or the mailbox owner is then what was acted on.
    e.target = text_at(v, &["ObjectId"])
        .or_else(|| subject.clone())
        .or_else(|| name_value(v, "Parameters", "Identity"))
        .or_else(|| text_at(v, &["MailboxOwnerUPN"]));
    e.record_id = str_at(v, &["Id"])
        .map(str::to_owned)
        .or_else(|| columns.record_id.clone());

    let parameters: Vec<(String, String)> = v
        .get("Parameters")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|p| {
            let name = str_at(p, &["Name"])?;
            Some((name.to_owned(), text_at(p, &["Value"]).unwrap_or_default()))
        })
        .collect();
    let flattened = parameters
        .iter()
        .map(|(n, v)| format!("{n}={v}"))
        .collect::<Vec<_>>()
        .join("; ");
    let forward_to = parameters
        .iter()
        .filter(|(n, v)| !v.is_empty() && FORWARDING_PARAMETERS.iter().any(|f| n.eq_ignore_ascii_case(f)))
        .map(|(_, v)| v.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    let rule_name = if ["New-InboxRule", "Set-InboxRule"]
        .iter()
        .any(|op| e.action.eq_ignore_ascii_case(op))
    {
        parameters
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("Name"))
            .map(|(_, v)| v.clone())
    } else {
        None
    };
    let recipients = match v.get("Recipients") {
        Some(Value::Array(list)) => Some(
            list.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(", "),
        ),
        Some(Value::String(s)) => Some(s.clone()),
        _ => None,
    };
    let client_app = text_at(v, &["ClientAppUsed"])
        .or_else(|| name_value(v, "ExtendedProperties", "ClientAppUsed"))
        .or_else(|| name_value(v, "ExtendedProperties", "RequestType"));

    let a = &mut e.attributes;
    push(a, "workload", text_at(v, &["Workload"]));
    push(a, "record_type", text_at(v, &["RecordType"]).or_else(|| columns.record_type.clone()));
    push(a, "user_type", text_at(v, &["UserType"]));
    push(a, "result_status_detail", name_value(v, "ExtendedProperties", "ResultStatusDetail"));
    push(a, "logon_error", text_at(v, &["LogonError"]));
    push(a, "error_number", text_at(v, &["ErrorNumber"]));
    push(a, "client_app", client_app);
    push(a, "parameters", Some(flattened));
    push(a, "forward_to", Some(forward_to));
    push(a, "rule_name", rule_name);
    push(a, "subject", subject);
    push(a, "recipients", recipients);
    Ok(e)
}

/// The `Value` of the entry named `name` in a `[{"Name", "Value"}]` list.
fn name_value(v: &Value, list: &str, name: &str) -> Option<String> {
    v.get(list)?
        .as_array()?
        .iter()
        .find(|p| str_at(p, &["Name"]).is_some_and(|n| n.eq_ignore_ascii_case(name)))
        .and_then(|p| text_at(p, &["Value"]))
}

/// AuditData as JSON. Some exports carry raw line breaks inside its strings,
/// which JSON forbids although the record is otherwise whole: those are
/// escaped and the record read again.
fn parse_audit_data(text: &str) -> Result<Value, serde_json::Error> {
    serde_json::from_str(text).or_else(|e| {
        escape_controls_in_strings(text)
            .and_then(|fixed| serde_json::from_str(&fixed).ok())
            .ok_or(e)
    })
}

/// `text` with control characters inside JSON strings escaped; None if there were none.
fn escape_controls_in_strings(text: &str) -> Option<String> {
    let mut out = String::with_capacity(text.len() + 16);
    let (mut in_string, mut escaped, mut changed) = (false, false, false);
    for c in text.chars() {
        if in_string {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            } else if u32::from(c) < 0x20 {
                changed = true;
                match c {
                    '\n' => out.push_str("\\n"),
                    '\r' => out.push_str("\\r"),
                    '\t' => out.push_str("\\t"),
                    _ => out.push_str(&format!("\\u{:04x}", u32::from(c))),
                }
                continue;
            }
        } else if c == '"' {
            in_string = true;
        }
        out.push(c);
    }
    changed.then_some(out)
}
