//! Exports of Microsoft Sentinel / Log Analytics tables: the same records
//! custody reads natively, reshaped into a table's columns
//! (the Azure Monitor Logs table reference names them).
//!
//! | `--format` | table | read as |
//! |---|---|---|
//! | `sentinel-signinlogs` | `SigninLogs` | an Entra ID sign-in (Graph `signIn`) |
//! | `sentinel-auditlogs` | `AuditLogs` | an Entra ID audit event (Graph `directoryAudit`) |
//! | `sentinel-officeactivity` | `OfficeActivity` | a Unified Audit Log record (AuditData) |
//! | `sentinel-azureactivity` | `AzureActivity` | an Azure Activity Log event |
//! | `sentinel-awscloudtrail` | `AWSCloudTrail` | a CloudTrail record |
//!
//! Each row is first rebuilt as the native record, with the native field
//! names (`UserPrincipalName` as `userPrincipalName`, `EventName` as
//! `eventName`, `UserIdentityArn` as `userIdentity.arn`, `OfficeId` as
//! `Id`...), beside the row's own columns; the native parser's mapping
//! then makes the event, so that an `OfficeActivity` export gives the same
//! actions, targets and attributes (inbox rules, forwarding) as the Unified
//! Audit Log, and the findings read both alike. The rebuilt record is what
//! the sink receives as the record's JSON ([`super::Record::json`]), so a
//! rule written against CloudTrail's `eventName` matches an `AWSCloudTrail`
//! row.
//!
//! The portal exports CSV: columns named as the table names them (a time
//! column's name may carry its zone, `TimeGenerated [UTC]`), times written
//! `12/3/2026, 2:02:11.123 PM` or in ISO 8601, and the `dynamic` columns
//! (`LocationDetails`, `InitiatedBy`, `Parameters`, `RequestParameters`...)
//! as JSON in a cell. Query results saved as JSON (an array of row
//! objects, `{"value": [...]}` or JSON lines) are read too. A header, or a
//! JSON row, without the table's columns is refused with the columns it
//! lacks, and the right `--format` when it is another known table's.

use serde_json::{Map, Value};
use time::format_description::well_known::Rfc3339;
use time::{Date, Month, OffsetDateTime, Time};

use super::microsoft::{self, csv_rows};
use super::{Record, Sink, aws, problem, time_us, to_us};
use crate::timeline::Event;

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// `SigninLogs`: Entra ID sign-ins.
pub fn signin_logs(bytes: &[u8], sink: &mut dyn Sink) {
    read(bytes, &SIGNIN_LOGS, sink);
}

/// `AuditLogs`: Entra ID audit events.
pub fn audit_logs(bytes: &[u8], sink: &mut dyn Sink) {
    read(bytes, &AUDIT_LOGS, sink);
}

/// `OfficeActivity`: the Microsoft 365 Unified Audit Log.
pub fn office_activity(bytes: &[u8], sink: &mut dyn Sink) {
    read(bytes, &OFFICE_ACTIVITY, sink);
}

/// `AzureActivity`: the Azure Activity Log.
pub fn azure_activity(bytes: &[u8], sink: &mut dyn Sink) {
    read(bytes, &AZURE_ACTIVITY, sink);
}

/// `AWSCloudTrail`: CloudTrail events.
pub fn aws_cloudtrail(bytes: &[u8], sink: &mut dyn Sink) {
    read(bytes, &AWS_CLOUDTRAIL, sink);
}

/// One table: what its rows must have, and how a row becomes the native record.
struct Table {
    name: &'static str,
    format: &'static str,
    /// Columns a row of the table has; each a list of alternatives.
    required: &'static [&'static [&'static str]],
    /// The native record's fields, from the row.
    native: fn(&Row, &mut Map<String, Value>) -> Result<(), String>,
    /// The native record to an event.
    event: Native,
}

enum Native {
    /// A Microsoft mapping: the event, its summary made as the native
    /// parser makes it.
    Microsoft(fn(&Value) -> Result<Event, String>),
    /// CloudTrail's record reader, which sends the event itself.
    CloudTrail,
}

const SIGNIN_LOGS: Table = Table {
    name: "SigninLogs",
    format: "sentinel-signinlogs",
    required: &[
        &["TimeGenerated", "CreatedDateTime"],
        &["UserPrincipalName"],
        &["ResultType"],
        &["AppDisplayName"],
    ],
    native: signin_native,
    event: Native::Microsoft(microsoft::signin_event),
};

const AUDIT_LOGS: Table = Table {
    name: "AuditLogs",
    format: "sentinel-auditlogs",
    required: &[
        &["TimeGenerated", "ActivityDateTime"],
        &["OperationName", "ActivityDisplayName"],
        &["InitiatedBy"],
        &["TargetResources"],
    ],
    native: audit_native,
    event: Native::Microsoft(microsoft::audit_event),
};

const OFFICE_ACTIVITY: Table = Table {
    name: "OfficeActivity",
    format: "sentinel-officeactivity",
    required: &[
        &["TimeGenerated"],
        &["Operation"],
        &["UserId"],
        &["OfficeWorkload"],
    ],
    native: office_native,
    event: Native::Microsoft(microsoft::audit_data_event),
};

const AZURE_ACTIVITY: Table = Table {
    name: "AzureActivity",
    format: "sentinel-azureactivity",
    required: &[
        &["TimeGenerated"],
        &["OperationNameValue"],
        &["Caller"],
        &["ActivityStatusValue"],
    ],
    native: activity_native,
    event: Native::Microsoft(microsoft::activity_event),
};

const AWS_CLOUDTRAIL: Table = Table {
    name: "AWSCloudTrail",
    format: "sentinel-awscloudtrail",
    required: &[
        &["TimeGenerated"],
        &["EventName"],
        &["EventSource"],
        &["UserIdentityArn", "UserIdentityType"],
    ],
    native: cloudtrail_native,
    event: Native::CloudTrail,
};

const TABLES: [&Table; 5] = [
    &SIGNIN_LOGS,
    &AUDIT_LOGS,
    &OFFICE_ACTIVITY,
    &AZURE_ACTIVITY,
    &AWS_CLOUDTRAIL,
];

/// A CSV export or a JSON one, by its first byte.
fn read(bytes: &[u8], table: &Table, sink: &mut dyn Sink) {
    let bytes = bytes.strip_prefix(BOM).unwrap_or(bytes);
    match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        None => {}
        Some(b'[' | b'{') => read_json(bytes, table, sink),
        Some(_) => read_csv(bytes, table, sink),
    }
}

// ---------------------------------------------------------------- rows

/// A row's columns, by name: CSV cells as text, JSON values as they are.
struct Row {
    cols: Vec<Column>,
}

struct Column {
    name: String,
    value: Value,
    /// Seconds the column's times are ahead of UTC (its header's zone).
    offset_s: i64,
}

impl Row {
    /// A column's value, empty and null read as absent; names compare
    /// regardless of case.
    fn get(&self, name: &str) -> Option<&Column> {
        self.cols
            .iter()
            .find(|c| c.name.eq_ignore_ascii_case(name))
            .filter(|c| match &c.value {
                Value::Null => false,
                Value::String(s) => !s.trim().is_empty(),
                _ => true,
            })
    }

    fn has(&self, name: &str) -> bool {
        self.cols.iter().any(|c| c.name.eq_ignore_ascii_case(name))
    }

    /// A scalar as text (numbers and booleans printed, JSON compact).
    fn text(&self, name: &str) -> Option<String> {
        match &self.get(name)?.value {
            Value::String(s) => Some(s.trim().to_owned()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            other => Some(other.to_string()),
        }
    }

    fn string(&self, name: &str) -> Option<Value> {
        self.text(name).map(Value::String)
    }

    /// The first of `names` that has a value, as text.
    fn first(&self, names: &[&str]) -> Option<String> {
        names.iter().find_map(|n| self.text(n))
    }

    /// A `dynamic` column: JSON kept in a cell (or a JSON export's value).
    /// Text that is not JSON stays text.
    fn json(&self, name: &str) -> Option<Value> {
        let v = &self.get(name)?.value;
        Some(match v {
            Value::String(s) => dynamic(s),
            other => other.clone(),
        })
    }

    fn bool(&self, name: &str) -> Option<Value> {
        match &self.get(name)?.value {
            Value::Bool(b) => Some(Value::Bool(*b)),
            Value::String(s) if s.trim().eq_ignore_ascii_case("true") => Some(Value::Bool(true)),
            Value::String(s) if s.trim().eq_ignore_ascii_case("false") => Some(Value::Bool(false)),
            _ => None,
        }
    }

    /// A time column as RFC 3339 (UTC), for the native record; Err names
    /// the column and the text that is not a time.
    fn time(&self, names: &[&str]) -> Result<Option<Value>, String> {
        let Some(col) = names.iter().find_map(|n| self.get(n)) else {
            return Ok(None);
        };
        let text = match &col.value {
            Value::String(s) => s.trim().to_owned(),
            other => other.to_string(),
        };
        let us = export_time(&text, col.offset_s)
            .ok_or_else(|| format!("{} {text:?} is not a time", col.name))?;
        Ok(Some(Value::String(rfc3339(us))))
    }
}

/// Text that holds a JSON object or array, parsed; other text as it is.
fn dynamic(s: &str) -> Value {
    let t = s.trim();
    if (t.starts_with('{') || t.starts_with('['))
        && let Ok(v) = serde_json::from_str::<Value>(t)
    {
        return v;
    }
    Value::String(s.to_owned())
}

fn rfc3339(us: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(us) * 1000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

/// A time as exports write it: ISO 8601 / RFC 3339 (no zone: UTC), or the
/// portal's `12/3/2026, 2:02:11.123 PM` (month first), in a column whose
/// times are `offset_s` ahead of UTC.
fn export_time(text: &str, offset_s: i64) -> Option<i64> {
    if let Some(us) = time_us(text) {
        // An explicit zone in the text wins over the column's.
        return Some(us);
    }
    portal_time(text).map(|local| local - offset_s * 1_000_000)
}

/// `M/D/YYYY, h:mm:ss[.fff] AM|PM` (also without the comma, or on a
/// 24-hour clock without AM/PM), read as UTC.
fn portal_time(text: &str) -> Option<i64> {
    let t = text.trim();
    let (date, rest) = t.split_once([',', ' '])?;
    let rest = rest.trim_start_matches([',', ' ']);
    let mut d = date.split('/').map(str::parse::<u16>);
    let (Some(Ok(month)), Some(Ok(day)), Some(Ok(year)), None) =
        (d.next(), d.next(), d.next(), d.next())
    else {
        return None;
    };
    let (clock, meridiem) = match rest.rsplit_once(' ') {
        Some((c, m)) if m.eq_ignore_ascii_case("AM") || m.eq_ignore_ascii_case("PM") => {
            (c.trim(), Some(m.to_ascii_uppercase()))
        }
        _ => (rest, None),
    };
    let (hms, fraction) = clock.split_once('.').unwrap_or((clock, ""));
    let mut parts = hms.split(':').map(str::parse::<u8>);
    let (Some(Ok(mut h)), Some(Ok(m)), Some(Ok(s)), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    match meridiem.as_deref() {
        Some(_) if !(1..=12).contains(&h) => return None,
        Some("AM") if h == 12 => h = 0,
        Some("PM") if h != 12 => h += 12,
        _ => {}
    }
    if fraction.len() > 9 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let nanos: u32 = format!("{fraction:0<9}").parse().ok()?;
    let date = Date::from_calendar_date(
        i32::from(year),
        Month::try_from(u8::try_from(month).ok()?).ok()?,
        u8::try_from(day).ok()?,
    )
    .ok()?;
    let time = Time::from_hms_nano(h, m, s, nanos).ok()?;
    Some(to_us(date.with_time(time).assume_utc()))
}

/// A header's column name, and the zone its times are in when the name
/// carries one (`TimeGenerated [UTC]`, `TimeGenerated [UTC+02:00]`). None
/// for a zone that names no offset (`[Local Time]`).
fn column_name(header: &str) -> (String, Option<i64>) {
    let h = header.trim();
    let Some((name, zone)) = h.strip_suffix(']').and_then(|rest| rest.rsplit_once(" [")) else {
        return (h.to_owned(), Some(0));
    };
    let offset = zone.strip_prefix("UTC").and_then(|rest| {
        if rest.is_empty() {
            return Some(0);
        }
        let sign = match rest.as_bytes().first()? {
            b'+' => 1,
            b'-' => -1,
            _ => return None,
        };
        let (h, m) = rest
            .get(1..)?
            .split_once(':')
            .unwrap_or((rest.get(1..)?, "0"));
        Some(sign * (h.parse::<i64>().ok()? * 3600 + m.parse::<i64>().ok()? * 60))
    });
    (name.trim().to_owned(), offset)
}

/// The columns of `table` a row or header lacks, each named with its alternatives.
fn missing(table: &Table, has: &dyn Fn(&str) -> bool) -> Vec<String> {
    table
        .required
        .iter()
        .filter(|alts| !alts.iter().any(|a| has(a)))
        .map(|alts| alts.join(" or "))
        .collect()
}

/// Why a header (or JSON row) is not one of `table`'s: the table it is,
/// when another known one fits, else the columns it lacks.
fn not_this_table(table: &Table, has: &dyn Fn(&str) -> bool) -> Option<String> {
    let lacks = missing(table, has);
    if lacks.is_empty() {
        return None;
    }
    if let Some(other) = TABLES
        .iter()
        .find(|t| t.name != table.name && missing(t, has).is_empty())
    {
        return Some(format!(
            "these are {} rows, not {}: import them with --format {}",
            other.name, table.name, other.format
        ));
    }
    Some(format!(
        "not a Sentinel {} export: no {} column{}",
        table.name,
        lacks.join(", no "),
        if lacks.len() > 1 { "s" } else { "" }
    ))
}

// ---------------------------------------------------------------- readers

fn read_csv(bytes: &[u8], table: &Table, sink: &mut dyn Sink) {
    let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(bytes);
    let headers = match reader.byte_headers() {
        Ok(h) => h.clone(),
        Err(e) => {
            sink.problem(problem("line 1", format!("unreadable CSV header: {e}")));
            return;
        }
    };
    let mut names = Vec::with_capacity(headers.len());
    for h in &headers {
        let header = String::from_utf8_lossy(h);
        let (name, offset) = column_name(&header);
        if offset.is_none() {
            sink.problem(problem(
                "line 1",
                format!(
                    "the column {header:?} names no UTC offset: its times are read as UTC \
                     (export with the portal's time zone set to UTC)"
                ),
            ));
        }
        names.push((name, offset.unwrap_or(0)));
    }
    let has = |n: &str| names.iter().any(|(h, _)| h.eq_ignore_ascii_case(n));
    if let Some(why) = not_this_table(table, &has) {
        sink.problem(problem("line 1", why));
        return;
    }
    csv_rows(
        &mut reader,
        bytes,
        headers.len(),
        sink,
        |record, raw, locator, sink| {
            let row = Row {
                cols: names
                    .iter()
                    .zip(record.iter())
                    .map(|((name, offset_s), cell)| Column {
                        name: name.clone(),
                        value: Value::String(String::from_utf8_lossy(cell).into_owned()),
                        offset_s: *offset_s,
                    })
                    .collect(),
            };
            emit(table, &row, raw, locator, sink);
        },
    );
}

fn read_json(bytes: &[u8], table: &Table, sink: &mut dyn Sink) {
    microsoft::json_values(bytes, sink, &|v, raw, locator, sink| {
        let Some(obj) = v.as_object() else {
            sink.problem(problem(locator, "the row is not a JSON object"));
            return;
        };
        let row = Row {
            cols: obj
                .iter()
                .map(|(k, v)| Column {
                    name: k.clone(),
                    value: v.clone(),
                    offset_s: 0,
                })
                .collect(),
        };
        if let Some(why) = not_this_table(table, &|n| row.has(n)) {
            sink.problem(problem(locator, why));
            return;
        }
        emit(table, &row, raw, locator, sink);
    });
}

/// One row: its native record (the row's columns, then the native fields)
/// and its event, or a problem.
fn emit(table: &Table, row: &Row, raw: &[u8], locator: String, sink: &mut dyn Sink) {
    if let Some(kind) = row.text("Type")
        && !kind.eq_ignore_ascii_case(table.name)
    {
        let hint = TABLES
            .iter()
            .find(|t| t.name.eq_ignore_ascii_case(&kind))
            .map(|t| format!(": import it with --format {}", t.format))
            .unwrap_or_default();
        sink.problem(problem(
            locator,
            format!("a row of table {kind:?}, not {}{hint}", table.name),
        ));
        return;
    }
    let mut record = Map::new();
    for c in &row.cols {
        let v = match &c.value {
            Value::String(s) => dynamic(s),
            other => other.clone(),
        };
        record.insert(c.name.clone(), v);
    }
    if let Err(why) = (table.native)(row, &mut record) {
        sink.problem(problem(locator, why));
        return;
    }
    let record = Value::Object(record);
    match table.event {
        Native::Microsoft(map) => match map(&record) {
            Ok(mut e) => {
                e.message = microsoft::summary(&e);
                e.locator = locator;
                sink.record(e, Record::json(raw, &record));
            }
            Err(why) => sink.problem(problem(locator, why)),
        },
        Native::CloudTrail => aws::cloudtrail_record(&record, raw, locator, sink),
    }
}

fn set(m: &mut Map<String, Value>, key: &str, v: Option<Value>) {
    if let Some(v) = v {
        m.insert(key.to_owned(), v);
    }
}

/// A JSON object of the fields that have a value, or None when none has.
fn object(fields: Vec<(&str, Option<Value>)>) -> Option<Value> {
    let m: Map<String, Value> = fields
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k.to_owned(), v)))
        .collect();
    (!m.is_empty()).then_some(Value::Object(m))
}

/// A number where the text is one (error codes), else the text.
fn number_or_text(text: Option<String>) -> Option<Value> {
    text.map(|t| match t.parse::<i64>() {
        Ok(n) => Value::from(n),
        Err(_) => Value::String(t),
    })
}

// ---------------------------------------------------------------- tables

/// `SigninLogs` to a Graph `signIn`.
fn signin_native(r: &Row, m: &mut Map<String, Value>) -> Result<(), String> {
    set(
        m,
        "createdDateTime",
        r.time(&["CreatedDateTime", "TimeGenerated"])?,
    );
    for (key, col) in [
        ("id", "Id"),
        ("userPrincipalName", "UserPrincipalName"),
        ("userDisplayName", "UserDisplayName"),
        ("userId", "UserId"),
        ("ipAddress", "IPAddress"),
        ("appDisplayName", "AppDisplayName"),
        ("appId", "AppId"),
        ("clientAppUsed", "ClientAppUsed"),
        ("resourceDisplayName", "ResourceDisplayName"),
        ("userAgent", "UserAgent"),
        ("tenantId", "AADTenantId"),
        ("homeTenantId", "HomeTenantId"),
        ("resourceTenantId", "ResourceTenantId"),
        ("autonomousSystemNumber", "AutonomousSystemNumber"),
        ("conditionalAccessStatus", "ConditionalAccessStatus"),
        ("correlationId", "CorrelationId"),
        ("riskLevelDuringSignIn", "RiskLevelDuringSignIn"),
        ("riskState", "RiskState"),
        ("userType", "UserType"),
    ] {
        set(m, key, r.string(col));
    }
    set(m, "isInteractive", r.bool("IsInteractive"));
    set(m, "deviceDetail", r.json("DeviceDetail"));
    // Status holds errorCode and failureReason; ResultType and
    // ResultDescription say the same where it is missing.
    let mut status = match r.json("Status") {
        Some(Value::Object(o)) => o,
        _ => Map::new(),
    };
    if !status.contains_key("errorCode") {
        set(
            &mut status,
            "errorCode",
            number_or_text(r.text("ResultType")),
        );
    }
    if !status.contains_key("failureReason") {
        set(&mut status, "failureReason", r.string("ResultDescription"));
    }
    if !status.is_empty() {
        m.insert("status".into(), Value::Object(status));
    }
    let location = match r.json("LocationDetails") {
        Some(Value::Object(o)) => Some(Value::Object(o)),
        _ => object(vec![("countryOrRegion", r.string("Location"))]),
    };
    set(m, "location", location);
    Ok(())
}

/// `AuditLogs` to a Graph `directoryAudit`.
fn audit_native(r: &Row, m: &mut Map<String, Value>) -> Result<(), String> {
    set(
        m,
        "activityDateTime",
        r.time(&["ActivityDateTime", "TimeGenerated"])?,
    );
    set(
        m,
        "activityDisplayName",
        r.first(&["ActivityDisplayName", "OperationName"])
            .map(Value::String),
    );
    for (key, col) in [
        ("id", "Id"),
        ("category", "Category"),
        ("correlationId", "CorrelationId"),
        ("resultReason", "ResultReason"),
        ("loggedByService", "LoggedByService"),
        ("operationType", "AADOperationType"),
        ("tenantId", "AADTenantId"),
    ] {
        set(m, key, r.string(col));
    }
    set(
        m,
        "result",
        r.first(&["Result", "ResultType"]).map(Value::String),
    );
    for (key, col) in [
        ("initiatedBy", "InitiatedBy"),
        ("targetResources", "TargetResources"),
        ("additionalDetails", "AdditionalDetails"),
    ] {
        set(m, key, r.json(col));
    }
    Ok(())
}

/// `OfficeActivity` to an AuditData record. Most columns already carry
/// AuditData's names; the others are renamed, and the JSON kept in cells
/// (`Parameters`, `ExtendedProperties`, `Item`) parsed.
fn office_native(r: &Row, m: &mut Map<String, Value>) -> Result<(), String> {
    set(m, "CreationTime", r.time(&["TimeGenerated"])?);
    for (key, cols) in [
        ("Id", &["OfficeId", "SourceRecordId"][..]),
        ("Workload", &["OfficeWorkload"][..]),
        ("ObjectId", &["OfficeObjectId"][..]),
        ("ClientIPAddress", &["Client_IPAddress"][..]),
        ("OrganizationId", &["OrganizationId", "OfficeTenantId"][..]),
    ] {
        set(m, key, r.first(cols).map(Value::String));
    }
    for key in ["Parameters", "ExtendedProperties", "ModifiedProperties"] {
        set(m, key, r.json(key));
    }
    let item = match r.json("Item") {
        Some(v @ Value::Object(_)) => Some(v),
        _ => object(vec![("Subject", r.string("ItemName"))]),
    };
    set(m, "Item", item);
    Ok(())
}

/// `AzureActivity` to an Activity Log event (the REST shape: localizable
/// strings as `{value, localizedValue}`).
fn activity_native(r: &Row, m: &mut Map<String, Value>) -> Result<(), String> {
    set(m, "eventTimestamp", r.time(&["TimeGenerated"])?);
    let localizable = |value: &str, localized: &str| {
        object(vec![
            ("value", r.string(value)),
            ("localizedValue", r.string(localized)),
        ])
    };
    set(
        m,
        "operationName",
        localizable("OperationNameValue", "OperationName"),
    );
    set(
        m,
        "status",
        localizable("ActivityStatusValue", "ActivityStatus"),
    );
    set(
        m,
        "subStatus",
        localizable("ActivitySubstatusValue", "ActivitySubstatus"),
    );
    set(m, "category", localizable("CategoryValue", "Category"));
    set(
        m,
        "resourceProviderName",
        localizable("ResourceProviderValue", "ResourceProvider"),
    );
    for (key, cols) in [
        ("caller", &["Caller"][..]),
        ("callerIpAddress", &["CallerIpAddress"][..]),
        ("eventDataId", &["EventDataId"][..]),
        ("correlationId", &["CorrelationId"][..]),
        ("operationId", &["OperationId"][..]),
        ("subscriptionId", &["SubscriptionId"][..]),
        ("resourceGroupName", &["ResourceGroup"][..]),
        ("resourceId", &["ResourceId", "_ResourceId"][..]),
        ("level", &["Level"][..]),
    ] {
        set(m, key, r.first(cols).map(Value::String));
    }
    for (key, cols) in [
        ("claims", &["Claims_d", "Claims"][..]),
        ("authorization", &["Authorization_d", "Authorization"][..]),
        ("properties", &["Properties_d", "Properties"][..]),
        ("httpRequest", &["HTTPRequest"][..]),
    ] {
        set(m, key, cols.iter().find_map(|c| r.json(c)));
    }
    Ok(())
}

/// `AWSCloudTrail` to a CloudTrail record: the identity and session
/// columns folded back into `userIdentity`, the JSON cells parsed.
fn cloudtrail_native(r: &Row, m: &mut Map<String, Value>) -> Result<(), String> {
    set(m, "eventTime", r.time(&["TimeGenerated"])?);
    for (key, cols) in [
        ("eventVersion", &["EventVersion"][..]),
        ("eventSource", &["EventSource"][..]),
        ("eventName", &["EventName"][..]),
        ("awsRegion", &["AWSRegion"][..]),
        ("sourceIPAddress", &["SourceIpAddress"][..]),
        ("userAgent", &["UserAgent"][..]),
        ("errorCode", &["ErrorCode"][..]),
        ("errorMessage", &["ErrorMessage"][..]),
        ("requestID", &["AwsRequestId_", "AwsRequestId"][..]),
        ("eventID", &["AwsEventId"][..]),
        ("eventType", &["EventTypeName"][..]),
        ("apiVersion", &["APIVersion"][..]),
        ("recipientAccountId", &["RecipientAccountId"][..]),
        ("sharedEventID", &["SharedEventId"][..]),
        ("vpcEndpointId", &["VpcEndpointId"][..]),
        ("eventCategory", &["Category"][..]),
    ] {
        set(m, key, r.first(cols).map(Value::String));
    }
    for (key, col) in [
        ("requestParameters", "RequestParameters"),
        ("responseElements", "ResponseElements"),
        ("additionalEventData", "AdditionalEventData"),
        ("resources", "Resources"),
        ("serviceEventDetails", "ServiceEventDetails"),
    ] {
        set(m, key, r.json(col));
    }
    set(m, "readOnly", r.bool("ReadOnly"));
    set(m, "managementEvent", r.bool("ManagementEvent"));
    let issuer = object(vec![
        ("type", r.string("SessionIssuerType")),
        ("principalId", r.string("SessionIssuerPrincipalId")),
        ("arn", r.string("SessionIssuerArn")),
        ("accountId", r.string("SessionIssuerAccountId")),
        ("userName", r.string("SessionIssuerUserName")),
    ]);
    let attributes = object(vec![
        ("creationDate", r.time(&["SessionCreationDate"])?),
        (
            "mfaAuthenticated",
            r.bool("SessionMfaAuthenticated")
                .map(|b| Value::String(b.to_string())),
        ),
    ]);
    let session = object(vec![("sessionIssuer", issuer), ("attributes", attributes)]);
    let identity = object(vec![
        ("type", r.string("UserIdentityType")),
        ("principalId", r.string("UserIdentityPrincipalid")),
        ("arn", r.string("UserIdentityArn")),
        ("accountId", r.string("UserIdentityAccountId")),
        ("accessKeyId", r.string("UserIdentityAccessKeyId")),
        ("userName", r.string("UserIdentityUserName")),
        ("invokedBy", r.string("UserIdentityInvokedBy")),
        ("sessionContext", session),
    ]);
    set(m, "userIdentity", identity);
    let tls = object(vec![
        ("tlsVersion", r.string("TlsVersion")),
        ("cipherSuite", r.string("CipherSuite")),
        (
            "clientProvidedHostHeader",
            r.string("ClientProvidedHostHeader"),
        ),
    ]);
    set(m, "tlsDetails", tls);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timeline::Problem;
    use crate::timeline::parse::{Collect, Format, parse_file};

    fn fixture(dir: &str, name: &str) -> Vec<u8> {
        let path = format!(
            "{}/tests/fixtures/logs/{dir}/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    /// Events and the JSON each record was handed over with.
    #[derive(Default)]
    struct Records {
        events: Vec<Event>,
        json: Vec<Option<Value>>,
        problems: Vec<Problem>,
    }

    impl Sink for Records {
        fn event(&mut self, event: Event) {
            self.events.push(event);
            self.json.push(None);
        }
        fn record(&mut self, mut event: Event, raw: Record<'_>) {
            assert!(!raw.bytes.is_empty(), "a row has bytes");
            event.content = Some(raw.digest());
            self.events.push(event);
            self.json.push(raw.json.cloned());
        }
        fn problem(&mut self, problem: Problem) {
            self.problems.push(problem);
        }
    }

    fn run(format: Format, bytes: &[u8]) -> Records {
        let mut r = Records::default();
        parse_file(format, "", bytes, 2024, &mut r);
        r
    }

    /// The native parser's events (its fixtures' damaged records left out).
    fn native(format: Format, bytes: &[u8]) -> Vec<Event> {
        let mut c = Collect::default();
        parse_file(format, "", bytes, 2024, &mut c);
        c.events
    }

    /// What the two shapes share: everything but where the record is and its bytes.
    fn normalised(e: &Event) -> Event {
        Event {
            content: None,
            locator: String::new(),
            ..e.clone()
        }
    }

    fn locators(r: &Records) -> Vec<&str> {
        r.events.iter().map(|e| e.locator.as_str()).collect()
    }

    #[test]
    fn signin_logs_from_the_portal_read_as_graph_sign_ins() {
        let r = run(
            Format::SentinelSigninlogs,
            &fixture("microsoft", "sentinel_signinlogs.csv"),
        );
        assert_eq!(
            r.problems,
            vec![problem(
                "row 3 (line 4)",
                "a row of table \"AADNonInteractiveUserSignInLogs\", not SigninLogs"
            )]
        );
        assert_eq!(
            locators(&r),
            ["row 1 (line 2)", "row 2 (line 3)", "row 4 (line 5)"]
        );
        // The same two sign-ins as the Graph export: the same event.
        let graph = native(
            Format::EntraSignin,
            &fixture("microsoft", "entra_signins.json"),
        );
        assert_eq!(normalised(&r.events[0]), normalised(&graph[0]));
        assert_eq!(normalised(&r.events[1]), normalised(&graph[1]));
        assert_eq!(r.events[0].source, "entra_signin");
        assert_eq!(r.events[1].attribute("error_code"), Some("50126"));
        // 12:00:00.5 AM is just past midnight.
        assert_eq!(
            r.events[2].time_us,
            time_us("2024-03-05T00:00:00.5Z").unwrap()
        );
        // The record handed on carries Graph's names beside the columns.
        let json = r.json[0].as_ref().unwrap();
        assert_eq!(json["userPrincipalName"], "alice@contoso.com");
        assert_eq!(json["UserPrincipalName"], "alice@contoso.com");
        assert_eq!(json["status"]["errorCode"], 0);
        assert_eq!(json["location"]["city"], "Rotterdam");
        assert_eq!(json["LocationDetails"]["city"], "Rotterdam");
        assert_eq!(json["createdDateTime"], "2024-03-04T22:03:41Z");
        assert!(r.events.iter().all(|e| e.content.is_some()));
    }

    #[test]
    fn office_activity_reads_as_the_unified_audit_log() {
        let r = run(
            Format::SentinelOfficeactivity,
            &fixture("microsoft", "sentinel_officeactivity.csv"),
        );
        assert_eq!(r.problems, vec![]);
        let ual = native(Format::UalJsonl, &fixture("microsoft", "ual.jsonl"));
        // Sentinel names the record type and the user type where AuditData
        // numbers them; everything else is the same.
        let without_types = |e: &Event| {
            let mut e = normalised(e);
            e.attributes
                .retain(|(k, _)| k != "record_type" && k != "user_type");
            e
        };
        assert_eq!(without_types(&r.events[0]), without_types(&ual[0]));
        assert_eq!(without_types(&r.events[1]), without_types(&ual[1]));
        let rule = &r.events[0];
        assert_eq!(rule.source, "m365_ual");
        assert_eq!(rule.action, "Set-InboxRule");
        assert_eq!(rule.ip, "2001:db8:ffff::7".parse().ok());
        assert_eq!(
            rule.attribute("forward_to"),
            Some("archive-box@example.net, backup-box@example.org")
        );
        assert_eq!(rule.attribute("rule_name"), Some("Archive sync"));
        assert_eq!(rule.attribute("record_type"), Some("ExchangeAdmin"));
        assert_eq!(
            rule.record_id.as_deref(),
            Some("2e3f4a5b-6c7d-4e8f-9a0b-c1d2e3f4a5b6")
        );
        // A sign-in is one for the findings as in the UAL.
        let login = &r.events[2];
        assert_eq!(login.action, "UserLoggedIn");
        assert_eq!(login.outcome.as_deref(), Some("success"));
        assert_eq!(login.attribute("workload"), Some("AzureActiveDirectory"));
        let json = r.json[0].as_ref().unwrap();
        assert_eq!(json["Parameters"][2]["Name"], "RedirectTo");
        assert_eq!(json["Id"], "2e3f4a5b-6c7d-4e8f-9a0b-c1d2e3f4a5b6");
        assert_eq!(json["OfficeId"], "2e3f4a5b-6c7d-4e8f-9a0b-c1d2e3f4a5b6");
        assert_eq!(json["Workload"], "Exchange");
    }

    #[test]
    fn audit_logs_from_a_json_array_read_as_directory_audits() {
        let r = run(
            Format::SentinelAuditlogs,
            &fixture("microsoft", "sentinel_auditlogs.json"),
        );
        assert_eq!(
            r.problems,
            vec![problem(
                "[2]",
                "these are SigninLogs rows, not AuditLogs: import them with --format sentinel-signinlogs"
            )]
        );
        let graph = native(
            Format::EntraAudit,
            &fixture("microsoft", "entra_audit.json"),
        );
        // The same audit event, its initiator and targets as objects; the
        // table names the tenant, which Graph's record leaves out.
        assert_eq!(
            r.events[0].account.as_deref(),
            Some("4b1d2c3e-5f60-4a7b-8c9d-0e1f2a3b4c5d")
        );
        let no_tenant = Event {
            account: None,
            ..normalised(&r.events[0])
        };
        assert_eq!(no_tenant, normalised(&graph[0]));
        // Initiator and targets as JSON text in the row.
        let reset = &r.events[1];
        assert_eq!(reset.actor.as_deref(), Some("carol@contoso.com"));
        assert_eq!(reset.ip, "198.51.100.78".parse().ok());
        assert_eq!(reset.outcome.as_deref(), Some("failure"));
        assert_eq!(reset.target.as_deref(), Some("carol@contoso.com"));
        assert_eq!(
            reset.attribute("result_reason"),
            Some("The user could not verify their identity.")
        );
        let json = r.json[1].as_ref().unwrap();
        assert_eq!(
            json["initiatedBy"]["user"]["userPrincipalName"],
            "carol@contoso.com"
        );
        assert_eq!(json["activityDisplayName"], "Reset password (self-service)");
    }

    #[test]
    fn azure_activity_lines_read_as_activity_log_events() {
        let r = run(
            Format::SentinelAzureactivity,
            &fixture("microsoft", "sentinel_azureactivity.jsonl"),
        );
        assert_eq!(
            r.problems,
            vec![problem(
                "line 3",
                "TimeGenerated \"not a time\" is not a time"
            )]
        );
        let keys = &r.events[0];
        assert_eq!(keys.source, "azure_activity");
        assert_eq!(
            keys.time_us,
            time_us("2024-03-04T22:45:10.345678Z").unwrap()
        );
        assert_eq!(
            keys.action,
            "MICROSOFT.STORAGE/STORAGEACCOUNTS/LISTKEYS/ACTION"
        );
        assert_eq!(keys.actor.as_deref(), Some("alice@contoso.com"));
        assert_eq!(keys.outcome.as_deref(), Some("success"));
        assert_eq!(keys.ip, "203.0.113.10".parse().ok());
        assert_eq!(
            keys.account.as_deref(),
            Some("7a1c2b3d-4e5f-4a6b-9c8d-1e2f3a4b5c6d")
        );
        assert_eq!(
            keys.record_id.as_deref(),
            Some("6e7f8091-a2b3-4c4d-9e5f-60718293a4b5")
        );
        assert_eq!(
            keys.attributes,
            [
                ("category", "Administrative"),
                ("level", "Informational"),
                ("correlation_id", "2c1b0a9d-8e7f-4c6b-9a5d-4c3b2a1f0e9d"),
                ("sub_status", "OK"),
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
        );
        let delete = &r.events[1];
        assert_eq!(delete.time_us, time_us("2024-03-04T22:47:30Z").unwrap());
        assert_eq!(delete.outcome.as_deref(), Some("failure"));
        assert_eq!(delete.ip, "198.51.100.200".parse().ok());
        assert_eq!(delete.action, "MICROSOFT.COMPUTE/VIRTUALMACHINES/DELETE");
        let json = r.json[0].as_ref().unwrap();
        assert_eq!(
            json["operationName"]["value"],
            "MICROSOFT.STORAGE/STORAGEACCOUNTS/LISTKEYS/ACTION"
        );
        assert_eq!(json["httpRequest"]["method"], "POST");
    }

    #[test]
    fn aws_cloudtrail_rows_read_as_cloudtrail_records() {
        let r = run(
            Format::SentinelAwscloudtrail,
            &fixture("microsoft", "sentinel_awscloudtrail.csv"),
        );
        assert_eq!(r.problems, vec![]);
        let trail = native(Format::Cloudtrail, &{
            // The fixture's Records[5] has no eventTime: leave it out.
            let text = String::from_utf8(fixture("aws", "cloudtrail.json")).unwrap();
            let v: Value = serde_json::from_str(&text).unwrap();
            let records: Vec<&Value> = v["Records"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|r| r.get("eventTime").is_some())
                .collect();
            serde_json::json!({ "Records": records })
                .to_string()
                .into_bytes()
        });
        assert_eq!(normalised(&r.events[0]), normalised(&trail[0]));
        assert_eq!(normalised(&r.events[1]), normalised(&trail[4]));
        // A rule on CloudTrail's names matches the row.
        let json = r.json[1].as_ref().unwrap();
        assert_eq!(json["eventName"], "CreateUser");
        assert_eq!(json["EventName"], "CreateUser");
        assert_eq!(
            json["userIdentity"]["arn"],
            "arn:aws:sts::111122223333:assumed-role/WebServerRole/i-0123456789abcdef0"
        );
        assert_eq!(
            json["userIdentity"]["sessionContext"]["sessionIssuer"]["userName"],
            "WebServerRole"
        );
        assert_eq!(
            json["userIdentity"]["sessionContext"]["attributes"]["creationDate"],
            "2024-06-01T08:05:00Z"
        );
        assert_eq!(json["requestParameters"]["userName"], "svc-backup");
        assert_eq!(json["readOnly"], false);
    }

    #[test]
    fn a_header_of_no_known_table_names_the_columns_it_lacks() {
        for format in [
            Format::SentinelSigninlogs,
            Format::SentinelAuditlogs,
            Format::SentinelOfficeactivity,
            Format::SentinelAzureactivity,
            Format::SentinelAwscloudtrail,
        ] {
            let r = run(
                format,
                b"TimeGenerated [UTC],Computer,EventID\n\"3/4/2024, 10:03:41.000 PM\",web01,4624\n",
            );
            assert_eq!(r.events, vec![], "{format:?}");
            assert_eq!(r.problems.len(), 1, "{format:?}");
            assert_eq!(r.problems[0].locator, "line 1");
            assert!(
                r.problems[0].message.starts_with("not a Sentinel "),
                "{}",
                r.problems[0].message
            );
        }
        let r = run(
            Format::SentinelSigninlogs,
            b"TimeGenerated,UserPrincipalName\n",
        );
        assert_eq!(
            r.problems[0].message,
            "not a Sentinel SigninLogs export: no ResultType, no AppDisplayName columns"
        );
        // Another table's header: the format that reads it.
        let r = run(
            Format::SentinelSigninlogs,
            &fixture("microsoft", "sentinel_awscloudtrail.csv"),
        );
        assert_eq!(
            r.problems,
            vec![problem(
                "line 1",
                "these are AWSCloudTrail rows, not SigninLogs: import them with --format sentinel-awscloudtrail"
            )]
        );
    }

    #[test]
    fn bad_rows_are_problems_and_the_rest_load() {
        let text = String::from_utf8(fixture("microsoft", "sentinel_awscloudtrail.csv")).unwrap();
        let mut lines: Vec<&str> = text.lines().collect();
        // A row cut short, and one whose time cannot be read.
        lines.insert(2, "0f1e2d3c,,\"6/1/2024, 8:10:00.000 AM\",1.09");
        let unreadable = lines[1].replacen("6/1/2024, 8:00:12.000 AM", "13/45/2024, 8:00:12 AM", 1);
        lines.insert(3, &unreadable);
        let r = run(Format::SentinelAwscloudtrail, lines.join("\n").as_bytes());
        assert_eq!(locators(&r), ["row 1 (line 2)", "row 4 (line 5)"]);
        let places: Vec<&str> = r.problems.iter().map(|p| p.locator.as_str()).collect();
        assert_eq!(places, ["row 2 (line 3)", "row 3 (line 4)"]);
        assert!(
            r.problems[0]
                .message
                .starts_with("4 fields where the header has")
        );
        assert_eq!(
            r.problems[1].message,
            "TimeGenerated \"13/45/2024, 8:00:12 AM\" is not a time"
        );
    }

    #[test]
    fn export_times() {
        let t = |s: &str| portal_time(s).map(rfc3339);
        assert_eq!(
            t("12/3/2026, 2:02:11.123 PM").as_deref(),
            Some("2026-12-03T14:02:11.123Z")
        );
        assert_eq!(
            t("12/3/2026, 12:02:11 AM").as_deref(),
            Some("2026-12-03T00:02:11Z")
        );
        assert_eq!(
            t("12/3/2026, 12:02:11 PM").as_deref(),
            Some("2026-12-03T12:02:11Z")
        );
        assert_eq!(
            t("12/3/2026 14:02:11").as_deref(),
            Some("2026-12-03T14:02:11Z")
        );
        assert_eq!(t("12/3/2026, 13:02:11 PM"), None);
        assert_eq!(t("3/12/2026"), None);
        assert_eq!(t("yesterday"), None);
        // A column whose header names its zone.
        assert_eq!(
            column_name("TimeGenerated [UTC]"),
            ("TimeGenerated".into(), Some(0))
        );
        assert_eq!(
            column_name("TimeGenerated [UTC+02:00]"),
            ("TimeGenerated".into(), Some(7200))
        );
        assert_eq!(column_name("TimeGenerated [Local Time]").1, None);
        assert_eq!(
            export_time("12/3/2026, 2:02:11.000 PM", 7200)
                .map(rfc3339)
                .as_deref(),
            Some("2026-12-03T12:02:11Z")
        );
        assert_eq!(
            export_time("2026-12-03T14:02:11+01:00", 7200)
                .map(rfc3339)
                .as_deref(),
            Some("2026-12-03T13:02:11Z")
        );
    }
}
