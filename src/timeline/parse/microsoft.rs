//! Microsoft logs: Azure Activity Log, Entra ID sign-in and audit logs, the
//! Microsoft 365 Unified Audit Log.
//!
//! The JSON exports come as a JSON array, a Graph/REST page
//! (`{"value": [...]}`) or JSON lines. Arrays and pages are walked record by
//! record, so a truncated download still yields every record before the cut.

use std::net::IpAddr;

use serde::de::{DeserializeOwned, IgnoredAny};
use serde_json::Value;

use super::{Record, Sink, problem, str_at, text_at, time_us};
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
    let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(bytes);
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

    csv_rows(
        &mut reader,
        bytes,
        headers.len(),
        sink,
        |record, _raw, locator, sink| {
            let field = |i: Option<usize>| {
                i.and_then(|i| record.get(i))
                    .map(|f| String::from_utf8_lossy(f).trim().to_owned())
                    .filter(|f| !f.is_empty())
            };
            let Some(text) = field(Some(audit_data)) else {
                sink.problem(problem(locator, "AuditData is empty"));
                return;
            };
            let data = match parse_audit_data(&text) {
                Ok(v) => v,
                Err(e) => {
                    sink.problem(problem(
                        locator,
                        format!("AuditData is not valid JSON: {e}"),
                    ));
                    return;
                }
            };
            let columns = UalColumns {
                creation_date: field(creation_date),
                user: field(user),
                operation: field(operation),
                record_id: field(record_id),
                record_type: field(record_type),
            };
            // AuditData is the record; the other columns repeat parts of it.
            emit(&data, text.as_bytes(), locator, sink, &|v| {
                ual_event(v, &columns)
            });
        },
    );
}

/// Each data row of a CSV export read from memory, with its raw bytes and
/// its place (`row N (line L)`), to `each`. A row whose field count is not
/// the header's, and CSV the reader cannot step past, are problems.
pub(super) fn csv_rows(
    reader: &mut csv::Reader<&[u8]>,
    bytes: &[u8],
    width: usize,
    sink: &mut dyn Sink,
    mut each: impl FnMut(&csv::ByteRecord, &[u8], String, &mut dyn Sink),
) {
    let mut record = csv::ByteRecord::new();
    let mut row = 0u64;
    let mut lines = LineCounter::default();
    loop {
        match reader.read_byte_record(&mut record) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => {
                // Reading from memory only fails on malformed input the
                // reader cannot step past; report where it stopped.
                sink.problem(problem(
                    format!("row {}", row + 1),
                    format!("unreadable CSV: {e}"),
                ));
                break;
            }
        }
        row += 1;
        // The reader's own line number lags by one after a CRLF (it counts
        // the `\n` as the start of the next record): count from the offset.
        let start =
            usize::try_from(record.position().map_or(0, csv::Position::byte)).unwrap_or(usize::MAX);
        let end = usize::try_from(reader.position().byte()).unwrap_or(usize::MAX);
        let raw = bytes.get(start..end).unwrap_or_default().trim_ascii_end();
        let locator = format!("row {row} (line {})", lines.line_of(bytes, start));
        if record.len() != width {
            sink.problem(problem(
                locator,
                format!(
                    "{} fields where the header has {width}: the row is cut or malformed",
                    record.len(),
                ),
            ));
            continue;
        }
        each(&record, raw, locator, sink);
    }
}

/// Line numbers of ascending byte offsets, counted incrementally.
#[derive(Default)]
pub(super) struct LineCounter {
    counted: usize,
    newlines: usize,
}

impl LineCounter {
    /// The 1-based line of the first byte at or after `pos` that is not a
    /// line break (a record's position may point at the break before it).
    pub(super) fn line_of(&mut self, bytes: &[u8], mut pos: usize) -> usize {
        while matches!(bytes.get(pos), Some(b'\r' | b'\n')) {
            pos += 1;
        }
        let pos = pos.min(bytes.len()).max(self.counted);
        self.newlines += bytes
            .get(self.counted..pos)
            .map_or(0, |s| memchr::memchr_iter(b'\n', s).count());
        self.counted = pos;
        self.newlines + 1
    }
}

/// The Unified Audit Log as JSON lines (one AuditData record a line), or a
/// JSON array of such records.
pub fn ual_jsonl(bytes: &[u8], sink: &mut dyn Sink) {
    json_records(bytes, sink, &ual_record);
}

/// An AuditData record, or a search result that wraps one (what
/// `Search-UnifiedAuditLog | ConvertTo-Json` writes: AuditData as a string
/// beside CreationDate, UserIds, Operations), whose outer fields then stand
/// in for the CSV columns.
pub(super) fn ual_record(v: &Value) -> Result<Event, String> {
    let Some(wrapped) = v.get("AuditData") else {
        return ual_event(v, &UalColumns::default());
    };
    let parsed;
    let inner = match wrapped {
        Value::String(text) => {
            parsed =
                parse_audit_data(text).map_err(|e| format!("AuditData is not valid JSON: {e}"))?;
            &parsed
        }
        other => other,
    };
    if !inner.is_object() {
        return Err("AuditData is not a JSON object".to_owned());
    }
    let outer = |keys: &[&str]| keys.iter().find_map(|k| text_at(v, &[k]));
    let columns = UalColumns {
        creation_date: outer(&["CreationDate"]),
        user: outer(&["UserIds", "UserId"]),
        operation: outer(&["Operations", "Operation"]),
        record_id: outer(&["RecordId", "Identity"]),
        record_type: outer(&["RecordType"]),
    };
    ual_event(inner, &columns)
}

// ---------------------------------------------------------------------------
// JSON containers

type Mapper<'a> = &'a dyn Fn(&Value) -> Result<Event, String>;

/// What is done with each JSON value read: the value, its bytes, its
/// locator, the sink.
pub(super) type Handler<'a> = &'a dyn Fn(&Value, &[u8], String, &mut dyn Sink);

/// Reads records from a JSON array, `{"value": [...]}` pages or JSON lines,
/// chosen by the first byte and, for `{`, by whether it opens a page.
fn json_records(bytes: &[u8], sink: &mut dyn Sink, map: Mapper<'_>) {
    json_values(bytes, sink, &|v, raw, locator, sink| {
        emit(v, raw, locator, sink, map);
    });
}

/// The values of a JSON array, `{"value": [...]}` pages or JSON lines, each
/// handed to `handle` with its bytes and locator.
pub(super) fn json_values(bytes: &[u8], sink: &mut dyn Sink, map: Handler<'_>) {
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
fn walk_pages(bytes: &[u8], mut pos: usize, sink: &mut dyn Sink, map: Handler<'_>) {
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
                let (_, after) =
                    read::<String>(bytes, skip_ws(bytes, pos + 1)).map_err(|e| e.to_string())?;
                pos = skip_ws(bytes, after);
                if bytes.get(pos) != Some(&b':') {
                    return Err("expected ':' after a key".to_owned());
                }
                let (_, after) = read::<IgnoredAny>(bytes, skip_ws(bytes, pos + 1))
                    .map_err(|e| e.to_string())?;
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
    map: Handler<'_>,
) -> Option<usize> {
    let mut pos = skip_ws(bytes, open + 1);
    if bytes.get(pos) == Some(&b']') {
        return Some(pos + 1);
    }
    let mut i = 0usize;
    loop {
        match read::<Value>(bytes, pos) {
            Ok((v, after)) => {
                let raw = bytes.get(pos..after).unwrap_or_default();
                map(&v, raw, format!("{prefix}[{i}]"), sink);
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
fn walk_lines(bytes: &[u8], sink: &mut dyn Sink, map: Handler<'_>) {
    let mut pos = 0;
    let mut lines = LineCounter::default();
    loop {
        pos = skip_ws(bytes, pos);
        if pos >= bytes.len() {
            return;
        }
        let locator = format!("line {}", lines.line_of(bytes, pos));
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
                let raw = bytes.get(pos..after).unwrap_or_default();
                map(&v, raw, locator, sink);
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

/// Sends the record's event, or a problem, located at `locator`; `raw` is
/// the record's bytes.
fn emit(v: &Value, raw: &[u8], locator: String, sink: &mut dyn Sink, map: Mapper<'_>) {
    if !v.is_object() {
        sink.problem(problem(locator, "the record is not a JSON object"));
        return;
    }
    match map(v) {
        Ok(mut event) => {
            event.message = summary(&event);
            event.locator = locator;
            sink.record(event, Record::json(raw, v));
        }
        Err(e) => sink.problem(problem(locator, e)),
    }
}

// ---------------------------------------------------------------------------
// Shared mapping

/// `alice@contoso.com New-InboxRule from 203.0.113.10: success`
pub(super) fn summary(e: &Event) -> String {
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

pub(super) fn activity_event(v: &Value) -> Result<Event, String> {
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
    push(
        &mut e.attributes,
        "correlation_id",
        correlation.map(str::to_owned),
    );
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

pub(super) fn signin_event(v: &Value) -> Result<Event, String> {
    let time = required_time(v, &["createdDateTime"])?;
    let mut e = Event::new(time, "entra_signin", "SignIn");
    e.account = str_at(v, &["tenantId"])
        .or_else(|| str_at(v, &["homeTenantId"]))
        .map(str::to_owned);
    e.actor = str_at(v, &["userPrincipalName"])
        .or_else(|| str_at(v, &["userDisplayName"]))
        .map(str::to_owned);
    let error_code = text_at(v, &["status", "errorCode"]);
    e.outcome = error_code
        .as_deref()
        .map(|code| if code == "0" { "success" } else { "failure" }.to_owned());
    e.ip = address(str_at(v, &["ipAddress"]));
    e.user_agent = str_at(v, &["userAgent"]).map(str::to_owned);
    let app = str_at(v, &["appDisplayName"]);
    e.target = str_at(v, &["resourceDisplayName"])
        .or(app)
        .map(str::to_owned);
    e.record_id = str_at(v, &["id"]).map(str::to_owned);
    let a = &mut e.attributes;
    push(a, "app", app.map(str::to_owned));
    push(a, "client_app", text_at(v, &["clientAppUsed"]));
    push(a, "error_code", error_code);
    push(
        a,
        "failure_reason",
        text_at(v, &["status", "failureReason"]),
    );
    push(a, "country", text_at(v, &["location", "countryOrRegion"]));
    push(a, "city", text_at(v, &["location", "city"]));
    push(a, "asn", text_at(v, &["autonomousSystemNumber"]));
    push(
        a,
        "conditional_access",
        text_at(v, &["conditionalAccessStatus"]),
    );
    push(a, "interactive", text_at(v, &["isInteractive"]));
    Ok(e)
}

pub(super) fn audit_event(v: &Value) -> Result<Event, String> {
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

/// An AuditData record alone (no export columns around it).
pub(super) fn audit_data_event(v: &Value) -> Result<Event, String> {
    ual_event(v, &UalColumns::default())
}

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
        .filter(|(n, v)| {
            !v.is_empty()
                && FORWARDING_PARAMETERS
                    .iter()
                    .any(|f| n.eq_ignore_ascii_case(f))
        })
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
    push(
        a,
        "record_type",
        text_at(v, &["RecordType"]).or_else(|| columns.record_type.clone()),
    );
    push(a, "user_type", text_at(v, &["UserType"]));
    push(
        a,
        "result_status_detail",
        name_value(v, "ExtendedProperties", "ResultStatusDetail"),
    );
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
pub(super) fn parse_audit_data(text: &str) -> Result<Value, serde_json::Error> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timeline::parse::Collect;

    macro_rules! fixture {
        ($name:literal) => {
            std::fs::read(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/fixtures/logs/microsoft/",
                $name
            ))
            .unwrap()
        };
    }

    const ORG: &str = "4b1d2c3e-5f60-4a7b-8c9d-0e1f2a3b4c5d";
    const SUB: &str = "7a1c2b3d-4e5f-4a6b-9c8d-1e2f3a4b5c6d";
    const EXO: &str = "00000002-0000-0ff1-ce00-000000000000";
    const UA_CHROME: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/122.0.0.0 Safari/537.36";

    fn run(parse: fn(&[u8], &mut dyn Sink), bytes: &[u8]) -> Collect {
        let mut out = Collect::default();
        parse(bytes, &mut out);
        out
    }

    fn attrs(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn ip(text: &str) -> Option<IpAddr> {
        Some(text.parse().unwrap())
    }

    fn some(text: &str) -> Option<String> {
        Some(text.to_owned())
    }

    /// An event without its content digest, to compare with one written out.
    fn bare(e: &Event) -> Event {
        Event {
            content: None,
            ..e.clone()
        }
    }

    fn locators(c: &Collect) -> Vec<&str> {
        c.events.iter().map(|e| e.locator.as_str()).collect()
    }

    #[test]
    fn outcomes_are_normalised() {
        for (raw, want) in [
            ("Succeeded", Some("success")),
            ("Success", Some("success")),
            ("True", Some("success")),
            ("success", Some("success")),
            ("Failed", Some("failure")),
            ("Failure", Some("failure")),
            ("False", Some("failure")),
            ("PartiallySucceeded", Some("partiallysucceeded")),
            ("Started", Some("started")),
            ("Accept", Some("accept")),
            ("", None),
        ] {
            assert_eq!(outcome(raw).as_deref(), want, "{raw}");
        }
    }

    #[test]
    fn activity_log_rest_page() {
        let c = run(azure_activity, &fixture!("azure_activity_rest.json"));
        assert_eq!(c.problems, vec![]);
        assert_eq!(c.events.len(), 3);
        let role = format!(
            "/subscriptions/{SUB}/resourceGroups/prod-rg/providers/Microsoft.Authorization/roleAssignments/2b3c4d5e-6f70-4812-9a3b-4c5d6e7f8091"
        );
        let start = Event {
            time_us: 1_709_592_001_123_456,
            source: "azure_activity",
            account: some(SUB),
            actor: some("alice@contoso.com"),
            action: "Microsoft.Authorization/roleAssignments/write".to_owned(),
            outcome: some("started"),
            ip: ip("203.0.113.10"),
            user_agent: None,
            target: Some(role.clone()),
            record_id: some("4d5e6f70-8192-4a3b-9c4d-5e6f70819202"),
            content: None,
            message: "alice@contoso.com Microsoft.Authorization/roleAssignments/write from 203.0.113.10: started".to_owned(),
            attributes: attrs(&[
                ("category", "Administrative"),
                ("level", "Informational"),
                ("correlation_id", "0a9b8c7d-6e5f-4a3b-9c2d-1e0f9a8b7c6d"),
            ]),
            member: String::new(),
            locator: "value[0]".to_owned(),
        };
        assert_eq!(bare(&c.events[0]), start);

        let end = &c.events[1];
        assert_eq!(end.time_us, 1_709_592_003_500_000);
        assert_eq!(end.outcome.as_deref(), Some("success"));
        assert_eq!(
            end.record_id.as_deref(),
            Some("5e6f7081-92a3-4b4c-8d5e-6f708192a3b4")
        );
        assert_eq!(end.attribute("sub_status"), Some("Created"));
        assert_eq!(end.target, Some(role));
        assert_eq!(end.locator, "value[1]");

        // A service principal: caller is its application id.
        let delete = &c.events[2];
        assert_eq!(delete.time_us, 1_709_592_450_000_000);
        assert_eq!(
            delete.actor.as_deref(),
            Some("5a4b3c2d-1e0f-4a9b-8c7d-6e5f4a3b2c1d")
        );
        assert_eq!(delete.action, "Microsoft.Compute/virtualMachines/delete");
        assert_eq!(delete.outcome.as_deref(), Some("failure"));
        assert_eq!(delete.ip, ip("198.51.100.200"));
        assert_eq!(
            delete.attributes,
            attrs(&[
                ("category", "Administrative"),
                ("level", "Error"),
                ("correlation_id", "1b0a9c8d-7e6f-4b5a-8d3c-2b1a0f9e8d7c"),
                ("sub_status", "Conflict"),
            ])
        );
        assert_eq!(
            delete.message,
            "5a4b3c2d-1e0f-4a9b-8c7d-6e5f4a3b2c1d Microsoft.Compute/virtualMachines/delete from 198.51.100.200: failure"
        );
    }

    #[test]
    fn activity_log_diagnostic_settings_lines() {
        let c = run(azure_activity, &fixture!("azure_activity_diagnostic.jsonl"));
        assert_eq!(c.problems, vec![]);
        assert_eq!(locators(&c), ["line 1", "line 2", "line 3"]);
        let storage = format!(
            "/SUBSCRIPTIONS/{}/RESOURCEGROUPS/PROD-RG/PROVIDERS/MICROSOFT.STORAGE/STORAGEACCOUNTS/CONTOSOFINANCE",
            SUB.to_ascii_uppercase()
        );
        let list_keys = Event {
            time_us: 1_709_592_310_345_678,
            source: "azure_activity",
            // Only in the resource id, upper case there.
            account: some(SUB),
            // From the upn claim under identity.
            actor: some("alice@contoso.com"),
            action: "MICROSOFT.STORAGE/STORAGEACCOUNTS/LISTKEYS/ACTION".to_owned(),
            outcome: some("success"),
            ip: ip("203.0.113.10"),
            user_agent: None,
            target: Some(storage),
            record_id: some(
                "2c1b0a9d-8e7f-4c6b-9a5d-4c3b2a1f0e9d|MICROSOFT.STORAGE/STORAGEACCOUNTS/LISTKEYS/ACTION|Success|2024-03-04T22:45:10.3456789Z",
            ),
            content: None,
            message: "alice@contoso.com MICROSOFT.STORAGE/STORAGEACCOUNTS/LISTKEYS/ACTION from 203.0.113.10: success".to_owned(),
            attributes: attrs(&[
                ("category", "Administrative"),
                ("level", "Information"),
                ("correlation_id", "2c1b0a9d-8e7f-4c6b-9a5d-4c3b2a1f0e9d"),
                ("sub_status", "Succeeded.OK"),
            ]),
            member: String::new(),
            locator: "line 1".to_owned(),
        };
        assert_eq!(bare(&c.events[0]), list_keys);

        let (start, failed) = (&c.events[1], &c.events[2]);
        // No upn or name claim: the application id claim names the principal.
        assert_eq!(
            start.actor.as_deref(),
            Some("5a4b3c2d-1e0f-4a9b-8c7d-6e5f4a3b2c1d")
        );
        assert_eq!(start.outcome.as_deref(), Some("start"));
        assert_eq!(start.attribute("sub_status"), Some("Started."));
        assert_eq!(start.time_us, 1_709_592_362_000_000);
        assert_eq!(failed.outcome.as_deref(), Some("failure"));
        assert_eq!(failed.attribute("level"), Some("Error"));
        assert_eq!(failed.time_us, 1_709_592_364_700_000);
        // One operation's start and end must not collapse into one record id.
        assert_ne!(start.record_id, failed.record_id);
        assert_eq!(start.account, failed.account);
    }

    #[test]
    fn entra_signins_page() {
        let c = run(entra_signin, &fixture!("entra_signins.json"));
        assert_eq!(c.problems, vec![]);
        assert_eq!(
            locators(&c),
            ["value[0]", "value[1]", "value[2]", "value[3]"]
        );
        let ok = Event {
            time_us: 1_709_589_821_000_000,
            source: "entra_signin",
            account: some(ORG),
            actor: some("alice@contoso.com"),
            action: "SignIn".to_owned(),
            outcome: some("success"),
            ip: ip("203.0.113.10"),
            user_agent: some(UA_CHROME),
            target: some("Office 365 Exchange Online"),
            record_id: some("b1a2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d"),
            content: None,
            message: "alice@contoso.com SignIn from 203.0.113.10: success".to_owned(),
            attributes: attrs(&[
                ("app", "Office 365 Exchange Online"),
                ("client_app", "Browser"),
                ("error_code", "0"),
                ("country", "NL"),
                ("city", "Rotterdam"),
                ("asn", "64500"),
                ("conditional_access", "notApplied"),
                ("interactive", "true"),
            ]),
            member: String::new(),
            locator: "value[0]".to_owned(),
        };
        assert_eq!(bare(&c.events[0]), ok);

        let bad = &c.events[1];
        assert_eq!(bad.time_us, 1_709_589_423_000_000);
        assert_eq!(bad.outcome.as_deref(), Some("failure"));
        assert_eq!(bad.ip, ip("198.51.100.77"));
        assert_eq!(bad.user_agent.as_deref(), Some("python-requests/2.31.0"));
        assert_eq!(
            bad.target.as_deref(),
            Some("Windows Azure Active Directory")
        );
        assert_eq!(
            bad.attributes,
            attrs(&[
                ("app", "Azure Active Directory PowerShell"),
                ("client_app", "Mobile Apps and Desktop clients"),
                ("error_code", "50126"),
                ("failure_reason", "The user name or password is wrong."),
                ("country", "US"),
                ("city", "Springfield"),
                ("asn", "64501"),
                ("conditional_access", "notApplied"),
                ("interactive", "false"),
            ])
        );
        assert_eq!(
            bad.message,
            "alice@contoso.com SignIn from 198.51.100.77: failure"
        );

        let locked = &c.events[2];
        assert_eq!(locked.actor.as_deref(), Some("carol@contoso.com"));
        assert_eq!(locked.outcome.as_deref(), Some("failure"));
        assert_eq!(locked.attribute("error_code"), Some("50053"));
        assert_eq!(
            locked.attribute("failure_reason"),
            Some("The account is locked after too many failed sign-ins.")
        );
        assert_eq!(locked.time_us, 1_709_589_490_000_000);

        // Legacy IMAP: no resource, so the app is the target; no user agent.
        let imap = &c.events[3];
        assert_eq!(imap.actor.as_deref(), Some("dave@contoso.com"));
        assert_eq!(imap.user_agent, None);
        assert_eq!(imap.target.as_deref(), Some("Office 365 Exchange Online"));
        assert_eq!(
            imap.attributes,
            attrs(&[
                ("app", "Office 365 Exchange Online"),
                ("client_app", "IMAP4"),
                ("error_code", "53003"),
                ("failure_reason", "Conditional Access blocked the sign-in."),
                ("country", "US"),
                ("asn", "64502"),
                ("conditional_access", "failure"),
                ("interactive", "false"),
            ])
        );
    }

    #[test]
    fn truncated_portal_array_keeps_the_records_before_the_cut() {
        let c = run(
            entra_signin,
            &fixture!("entra_signins_portal_truncated.json"),
        );
        assert_eq!(locators(&c), ["[0]", "[1]"]);
        assert_eq!(
            c.events[0].record_id.as_deref(),
            Some("c2b3d4e5-f6a7-4b8c-9d0e-1f2a3b4c5d6e")
        );
        assert_eq!(
            c.events[1].record_id.as_deref(),
            Some("d3c4e5f6-a7b8-4c9d-8e0f-2a3b4c5d6e7f")
        );
        assert_eq!(c.problems.len(), 1);
        assert_eq!(c.problems[0].locator, "[2]");
    }

    #[test]
    fn truncated_page_keeps_the_records_before_the_cut() {
        let whole = fixture!("entra_signins.json");
        let text = String::from_utf8(whole).unwrap();
        // Cut inside the fourth record.
        let cut = text.find("e4d5f6a7-b8c9-4d0e-9f1a-3b4c5d6e7f80").unwrap() + 10;
        let c = run(entra_signin, &text.as_bytes()[..cut]);
        assert_eq!(locators(&c), ["value[0]", "value[1]", "value[2]"]);
        assert_eq!(c.problems.len(), 1);
        assert_eq!(c.problems[0].locator, "value[3]");

        // Cut right after a record's comma: the next record is the damaged one.
        let cut = text.find("\"id\": \"e4d5f6a7").unwrap();
        let c = run(entra_signin, &text.as_bytes()[..cut]);
        assert_eq!(c.events.len(), 3);
        assert_eq!(c.problems.len(), 1);
        assert_eq!(c.problems[0].locator, "value[3]");
    }

    #[test]
    fn entra_audit_page() {
        let c = run(entra_audit, &fixture!("entra_audit.json"));
        assert_eq!(c.problems, vec![]);
        assert_eq!(c.events.len(), 3);
        let add_role = Event {
            time_us: 1_709_591_472_447_123,
            source: "entra_audit",
            account: None,
            actor: some("alice@contoso.com"),
            action: "Add member to role".to_owned(),
            outcome: some("success"),
            ip: ip("203.0.113.10"),
            user_agent: some(UA_CHROME),
            target: some("mallory.ops@contoso.com, Global Administrator"),
            record_id: some("Directory_5c4b3a29-1807-4f6e-9d5c-4b3a29180706_QX3VB_41926553"),
            content: None,
            message: "alice@contoso.com Add member to role from 203.0.113.10: success".to_owned(),
            attributes: attrs(&[
                ("category", "RoleManagement"),
                ("logged_by", "Core Directory"),
                ("operation_type", "Assign"),
            ]),
            member: String::new(),
            locator: "value[0]".to_owned(),
        };
        assert_eq!(bare(&c.events[0]), add_role);

        let by_app = &c.events[1];
        assert_eq!(by_app.actor.as_deref(), Some("Provisioning Automation"));
        assert_eq!(by_app.ip, None);
        assert_eq!(by_app.target.as_deref(), Some("Payroll Connector"));
        assert_eq!(by_app.time_us, 1_709_591_805_100_000);
        assert_eq!(
            by_app.message,
            "Provisioning Automation Add service principal credentials: success"
        );

        let reset = &c.events[2];
        assert_eq!(reset.outcome.as_deref(), Some("failure"));
        assert_eq!(reset.ip, ip("198.51.100.78"));
        assert_eq!(reset.user_agent, None);
        assert_eq!(reset.target.as_deref(), Some("carol@contoso.com"));
        assert_eq!(
            reset.attributes,
            attrs(&[
                ("category", "UserManagement"),
                ("logged_by", "Self-service Password Management"),
                ("operation_type", "Update"),
                ("result_reason", "The user could not verify their identity."),
            ])
        );
    }

    #[test]
    fn ual_purview_csv_every_record_type() {
        let bytes = fixture!("ual_purview.csv");
        assert!(bytes.starts_with(BOM));
        let c = run(ual_csv, &bytes);
        assert_eq!(c.problems, vec![]);
        // The Send row spans two lines (a line break inside its subject).
        assert_eq!(
            locators(&c),
            [
                "row 1 (line 2)",
                "row 2 (line 3)",
                "row 3 (line 4)",
                "row 4 (line 5)",
                "row 5 (line 6)",
                "row 6 (line 8)",
                "row 7 (line 9)",
                "row 8 (line 10)",
            ]
        );
        let actions: Vec<&str> = c.events.iter().map(|e| e.action.as_str()).collect();
        assert_eq!(
            actions,
            [
                "UserLoginFailed",
                "UserLoggedIn",
                "New-InboxRule",
                "Set-Mailbox",
                "Send",
                "MailItemsAccessed",
                "TeamsSessionStarted",
                "FileAccessed",
            ]
        );
        assert!(
            c.events
                .iter()
                .all(|e| e.source == "m365_ual" && e.account.as_deref() == Some(ORG))
        );

        let failed = &c.events[0];
        assert_eq!(failed.time_us, 1_709_589_423_000_000);
        assert_eq!(failed.outcome.as_deref(), Some("failure"));
        assert_eq!(failed.ip, ip("198.51.100.77"));
        assert_eq!(failed.user_agent.as_deref(), Some("python-requests/2.31.0"));
        assert_eq!(failed.target.as_deref(), Some(EXO));
        assert_eq!(
            failed.attributes,
            attrs(&[
                ("workload", "AzureActiveDirectory"),
                ("record_type", "15"),
                ("user_type", "0"),
                ("logon_error", "InvalidUserNameOrPassword"),
                ("error_number", "50126"),
                ("client_app", "OrgIdWsTrust2:process"),
            ])
        );

        let logged_in = &c.events[1];
        assert_eq!(logged_in.outcome.as_deref(), Some("success"));
        assert_eq!(logged_in.user_agent.as_deref(), Some(UA_CHROME));
        assert_eq!(logged_in.attribute("result_status_detail"), Some("Success"));
        assert_eq!(logged_in.attribute("error_number"), Some("0"));
        assert_eq!(
            logged_in.record_id.as_deref(),
            Some("0d9c8b7a-6f5e-4d3c-2b1a-09f8e7d6c5b4")
        );

        let rule = Event {
            time_us: 1_709_590_269_000_000,
            source: "m365_ual",
            account: some(ORG),
            actor: some("alice@contoso.com"),
            action: "New-InboxRule".to_owned(),
            outcome: some("success"),
            // Written `203.0.113.10:52144`.
            ip: ip("203.0.113.10"),
            user_agent: None,
            target: some("alice@contoso.com\\Archive sync"),
            record_id: some("3b6f0a1e-2c4d-4e8f-9a0b-1c2d3e4f5a6b"),
            content: None,
            message: "alice@contoso.com New-InboxRule from 203.0.113.10: success".to_owned(),
            attributes: attrs(&[
                ("workload", "Exchange"),
                ("record_type", "1"),
                ("user_type", "0"),
                (
                    "parameters",
                    "AlwaysDeleteOutlookRulesBlob=False; Force=False; Name=Archive sync; SubjectOrBodyContainsWords=invoice;payment;wire; ForwardTo=archive-box@example.net; MarkAsRead=True; StopProcessingRules=True",
                ),
                ("forward_to", "archive-box@example.net"),
                ("rule_name", "Archive sync"),
            ]),
            member: String::new(),
            locator: "row 3 (line 4)".to_owned(),
        };
        assert_eq!(bare(&c.events[2]), rule);

        let forwarding = &c.events[3];
        assert_eq!(forwarding.target.as_deref(), Some("Alice Example"));
        assert_eq!(
            forwarding.attribute("forward_to"),
            Some("smtp:archive-box@example.net")
        );
        assert_eq!(forwarding.attribute("rule_name"), None);
        assert_eq!(
            forwarding.attribute("parameters"),
            Some(
                "Identity=alice@contoso.com; ForwardingSmtpAddress=smtp:archive-box@example.net; DeliverToMailboxAndForward=True"
            )
        );

        // Mailbox audit: ClientIPAddress, ClientInfoString, no ObjectId.
        let send = &c.events[4];
        let subject = "Updated wire instructions\n(action required)";
        assert_eq!(send.time_us, 1_709_590_830_000_000);
        assert_eq!(send.outcome.as_deref(), Some("success"));
        assert_eq!(send.ip, ip("203.0.113.10"));
        assert_eq!(
            send.user_agent.as_deref(),
            Some("Client=OWA;Action=ViaProxy")
        );
        assert_eq!(send.target.as_deref(), Some(subject));
        assert_eq!(
            send.attributes,
            attrs(&[
                ("workload", "Exchange"),
                ("record_type", "2"),
                ("user_type", "0"),
                ("subject", subject),
            ])
        );

        let accessed = &c.events[5];
        assert_eq!(
            accessed.record_id.as_deref(),
            Some("5d4c3b2a-1908-4f7e-a6d5-c4b3a2918070")
        );
        assert_eq!(
            accessed.user_agent.as_deref(),
            Some("Client=REST;Client=RESTSystem;;")
        );
        assert_eq!(accessed.target.as_deref(), Some("alice@contoso.com"));
        assert_eq!(accessed.attribute("record_type"), Some("50"));

        let teams = &c.events[6];
        assert_eq!(teams.time_us, 1_709_625_730_000_000);
        assert_eq!(teams.actor.as_deref(), Some("bob@contoso.com"));
        assert_eq!(teams.ip, ip("2001:db8:12::40"));
        assert_eq!(teams.outcome, None);
        assert_eq!(teams.target, None);
        assert_eq!(
            teams.message,
            "bob@contoso.com TeamsSessionStarted from 2001:db8:12::40"
        );

        let file = &c.events[7];
        assert_eq!(file.time_us, 1_709_631_678_000_000);
        assert_eq!(
            file.target.as_deref(),
            Some(
                "https://contoso.sharepoint.com/sites/Finance/Shared Documents/Vendors/Bank details 2024.xlsx"
            )
        );
        assert_eq!(
            file.user_agent,
            Some(format!("{UA_CHROME} Edg/122.0.2365.66"))
        );
        assert_eq!(
            file.attributes,
            attrs(&[
                ("workload", "SharePoint"),
                ("record_type", "6"),
                ("user_type", "0")
            ])
        );
        assert_eq!(
            file.message,
            "alice@contoso.com FileAccessed from 203.0.113.10"
        );
    }

    #[test]
    fn ual_classic_csv_keeps_duplicates() {
        let c = run(ual_csv, &fixture!("ual_classic.csv"));
        assert_eq!(c.problems, vec![]);
        assert_eq!(
            locators(&c),
            [
                "row 1 (line 2)",
                "row 2 (line 3)",
                "row 3 (line 4)",
                "row 4 (line 5)"
            ]
        );
        let locked = &c.events[0];
        assert_eq!(locked.actor.as_deref(), Some("carol@contoso.com"));
        assert_eq!(locked.time_us, 1_709_589_490_000_000);
        assert_eq!(locked.attribute("logon_error"), Some("IdsLocked"));
        assert_eq!(locked.attribute("error_number"), Some("50053"));
        assert_eq!(c.events[1].action, "UserLoggedIn");
        // The same record twice: both kept, same record id.
        let (a, b) = (&c.events[2], &c.events[3]);
        assert_eq!(
            a.record_id.as_deref(),
            Some("3b6f0a1e-2c4d-4e8f-9a0b-1c2d3e4f5a6b")
        );
        assert_eq!(a.record_id, b.record_id);
        // The same AuditData: the same content, so the store drops one.
        assert!(a.content.is_some());
        assert_eq!(a.content, b.content);
        assert_ne!(a.content, c.events[1].content);
        assert_eq!(a.attribute("forward_to"), Some("archive-box@example.net"));
        assert_eq!(
            Event {
                locator: String::new(),
                ..a.clone()
            },
            Event {
                locator: String::new(),
                ..b.clone()
            }
        );
    }

    #[test]
    fn ual_corrupt_row_is_a_problem_and_the_rest_parse() {
        let c = run(ual_csv, &fixture!("ual_corrupt_row.csv"));
        assert_eq!(c.problems.len(), 1);
        assert_eq!(c.problems[0].locator, "row 2 (line 3)");
        assert!(
            c.problems[0]
                .message
                .starts_with("AuditData is not valid JSON")
        );
        assert_eq!(
            locators(&c),
            ["row 1 (line 2)", "row 3 (line 4)", "row 4 (line 5)"]
        );
        let actions: Vec<&str> = c.events.iter().map(|e| e.action.as_str()).collect();
        assert_eq!(
            actions,
            ["UserLoggedIn", "TeamsSessionStarted", "FileAccessed"]
        );
    }

    #[test]
    fn ual_csv_rows_with_the_wrong_field_count() {
        let audit = r#""{""CreationTime"":""2024-03-04T22:03:41"",""Id"":""x1"",""Operation"":""UserLoggedIn"",""UserId"":""alice@contoso.com""}""#;
        let text = format!(
            "CreationDate,UserIds,Operations,AuditData\n2024-03-04T22:03:41Z,alice@contoso.com,{audit}\n2024-03-04T22:03:41Z,alice@contoso.com\n2024-03-04T22:03:41Z,alice@contoso.com,UserLoggedIn,{audit}\n"
        );
        let c = run(ual_csv, text.as_bytes());
        assert_eq!(c.problems.len(), 2);
        assert_eq!(c.problems[0].locator, "row 1 (line 2)");
        assert_eq!(c.problems[1].locator, "row 2 (line 3)");
        assert_eq!(locators(&c), ["row 3 (line 4)"]);
        assert_eq!(c.events[0].record_id.as_deref(), Some("x1"));

        // No AuditData column: not this format.
        let c = run(ual_csv, b"a,b\n1,2\n");
        assert_eq!(c.events, vec![]);
        assert_eq!(c.problems.len(), 1);
    }

    #[test]
    fn ual_csv_falls_back_to_the_columns() {
        let text = "RecordId,CreationDate,RecordType,Operation,UserId,AuditData\n\
            r-77,2024-03-04T22:03:41.0000000Z,ExchangeAdmin,Set-Mailbox,alice@contoso.com,\"{\"\"ClientIP\"\":\"\"203.0.113.10\"\"}\"\n";
        let c = run(ual_csv, text.as_bytes());
        assert_eq!(c.problems, vec![]);
        let e = &c.events[0];
        assert_eq!(e.time_us, 1_709_589_821_000_000);
        assert_eq!(e.action, "Set-Mailbox");
        assert_eq!(e.actor.as_deref(), Some("alice@contoso.com"));
        assert_eq!(e.record_id.as_deref(), Some("r-77"));
        assert_eq!(e.attributes, attrs(&[("record_type", "ExchangeAdmin")]));
    }

    #[test]
    fn ual_json_lines() {
        let bytes = fixture!("ual.jsonl");
        let c = run(ual_jsonl, &bytes);
        assert_eq!(c.problems.len(), 1);
        assert_eq!(c.problems[0].locator, "line 3");
        assert_eq!(locators(&c), ["line 1", "line 2", "line 5"]);

        let redirect = &c.events[0];
        assert_eq!(redirect.action, "Set-InboxRule");
        assert_eq!(redirect.time_us, 1_709_590_360_000_000);
        // Written `[2001:db8:ffff::7]:41952`.
        assert_eq!(redirect.ip, ip("2001:db8:ffff::7"));
        assert_eq!(
            redirect.attribute("forward_to"),
            Some("archive-box@example.net, backup-box@example.org")
        );
        assert_eq!(redirect.attribute("rule_name"), Some("Archive sync"));
        assert_eq!(
            redirect.attribute("parameters"),
            Some(
                "Identity=alice@contoso.com\\Archive sync; Name=Archive sync; RedirectTo=archive-box@example.net; ForwardAsAttachmentTo=backup-box@example.org"
            )
        );

        // No ObjectId: the cmdlet's Identity is the target.
        let set_mailbox = &c.events[1];
        assert_eq!(set_mailbox.time_us, 1_709_590_520_000_000);
        assert_eq!(set_mailbox.outcome.as_deref(), Some("failure"));
        assert_eq!(set_mailbox.target.as_deref(), Some("bob@contoso.com"));
        assert_eq!(
            set_mailbox.attribute("forward_to"),
            Some("archive-box@example.net")
        );
        assert_eq!(
            set_mailbox.message,
            "alice@contoso.com Set-Mailbox from 203.0.113.10: failure"
        );

        assert_eq!(c.events[2].action, "UserLoginFailed");
        assert_eq!(
            c.events[2].record_id.as_deref(),
            Some("6f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0")
        );

        // The same records as a JSON array.
        let text = String::from_utf8(bytes).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let array = format!("[{},\n{},\n{}]", lines[0], lines[1], lines[4]);
        let from_array = run(ual_jsonl, array.as_bytes());
        assert_eq!(from_array.problems, vec![]);
        assert_eq!(locators(&from_array), ["[0]", "[1]", "[2]"]);
        for (a, b) in from_array.events.iter().zip(&c.events) {
            assert_eq!(
                Event {
                    locator: String::new(),
                    ..a.clone()
                },
                Event {
                    locator: String::new(),
                    ..b.clone()
                }
            );
        }
    }

    #[test]
    fn ual_json_search_results_wrapping_audit_data() {
        let text = concat!(
            r#"{"RecordType":"ExchangeAdmin","CreationDate":"/Date(1709590269000)/","UserIds":"alice@contoso.com","#,
            r#""Operations":"New-InboxRule","Identity":"3b6f0a1e-2c4d-4e8f-9a0b-1c2d3e4f5a6b","#,
            r#""AuditData":"{\"CreationTime\":\"2024-03-04T22:11:09\",\"ClientIP\":\"203.0.113.10:52144\",\"ResultStatus\":\"True\"}"}"#,
            "\n",
            r#"{"CreationDate":"2024-03-04T22:11:09Z","AuditData":"{broken"}"#,
            "\n",
        );
        let c = run(ual_jsonl, text.as_bytes());
        assert_eq!(c.problems.len(), 1);
        assert_eq!(c.problems[0].locator, "line 2");
        let e = &c.events[0];
        assert_eq!(e.time_us, 1_709_590_269_000_000);
        assert_eq!(e.actor.as_deref(), Some("alice@contoso.com"));
        assert_eq!(e.action, "New-InboxRule");
        assert_eq!(
            e.record_id.as_deref(),
            Some("3b6f0a1e-2c4d-4e8f-9a0b-1c2d3e4f5a6b")
        );
        assert_eq!(e.attributes, attrs(&[("record_type", "ExchangeAdmin")]));
        assert_eq!(
            e.message,
            "alice@contoso.com New-InboxRule from 203.0.113.10: success"
        );
    }

    #[test]
    fn records_without_time_or_not_objects_are_problems() {
        let text = "\u{feff}{\"createdDateTime\":\"2024-03-04T22:03:41Z\",\"id\":\"a\"}\n\
            [1,2]\n\
            {\"id\":\"no time\"}\n\
            {\"createdDateTime\":\"not a time\"}\n\
            {\"createdDateTime\":\"2024-03-04T22:03:41Z\",\"id\":\"b\"}\n";
        let c = run(entra_signin, text.as_bytes());
        assert_eq!(locators(&c), ["line 1", "line 5"]);
        let problems: Vec<&str> = c.problems.iter().map(|p| p.locator.as_str()).collect();
        assert_eq!(problems, ["line 2", "line 3", "line 4"]);
        assert_eq!(c.problems[1].message, "the record has no createdDateTime");

        let c = run(entra_audit, br#"{"value": [{"id": "x"}, "text", {"activityDateTime": "2024-03-04T22:03:41Z", "activityDisplayName": "Update user"}]}"#);
        assert_eq!(locators(&c), ["value[2]"]);
        let problems: Vec<&str> = c.problems.iter().map(|p| p.locator.as_str()).collect();
        assert_eq!(problems, ["value[0]", "value[1]"]);
    }

    #[test]
    fn containers_pages_and_trailing_data() {
        let record = r#"{"createdDateTime":"2024-03-04T22:03:41Z"}"#;
        // Pages appended one after another; keys before and after `value`.
        let text = format!(
            "{{\"@odata.context\":\"x\",\"value\":[{record}],\"@odata.nextLink\":\"y\"}}\n{{\"value\":[{record},{record}]}}\n"
        );
        let c = run(entra_signin, text.as_bytes());
        assert_eq!(c.problems, vec![]);
        assert_eq!(
            locators(&c),
            ["value[0]", "page 2 value[0]", "page 2 value[1]"]
        );

        // An empty page and an empty array are no records and no problem.
        for empty in ["{\"value\": []}", "[ ]", "", "  \n"] {
            let c = run(entra_signin, empty.as_bytes());
            assert_eq!((c.events.len(), c.problems.len()), (0, 0), "{empty:?}");
        }

        let text = format!("[{record}] trailing");
        let c = run(entra_signin, text.as_bytes());
        assert_eq!(c.events.len(), 1);
        assert_eq!(c.problems.len(), 1);
        assert_eq!(c.problems[0].locator, format!("byte {}", record.len() + 3));

        // A record pretty-printed over several lines in a JSON lines file.
        let text = format!("{{\n  \"createdDateTime\": \"2024-03-04T22:03:41Z\"\n}}\n{record}\n");
        let c = run(entra_signin, text.as_bytes());
        assert_eq!(c.problems, vec![]);
        assert_eq!(locators(&c), ["line 1", "line 4"]);
    }

    #[test]
    fn subscription_from_resource_id() {
        assert_eq!(
            subscription_of("/SUBSCRIPTIONS/ABC/RESOURCEGROUPS/RG").as_deref(),
            Some("ABC")
        );
        assert_eq!(subscription_of("/providers/Microsoft.aadiam"), None);
    }
}
