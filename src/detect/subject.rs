//! One record as the rules see it: its original fields first, custody's
//! normalised ones beside them.
//!
//! A rule's field is looked up, in order:
//! 1. `custody.<name>`: the normalised event (`custody.actor`,
//!    `custody.ip`, `custody.action`, `custody.target`, `custody.outcome`,
//!    `custody.user_agent`, `custody.account`, `custody.source`,
//!    `custody.message`), one of its attributes by name, or a value custody
//!    derives (`custody.external_recipients`).
//! 2. The names other tools give the same value ([`aliases`]): SigmaHQ's
//!    Azure rules name Sentinel's columns (`ResultType`, `OperationName`)
//!    where the exports custody reads carry Graph's (`status.errorCode`,
//!    `activityDisplayName`).
//! 3. The original record, by dotted path: exact key first, then the same
//!    key in another case; through arrays (any element); through
//!    `{Name, Value}` lists (`Parameters.MoveToFolder` is the `Value` of the
//!    `Parameters` element named `MoveToFolder`). An object a rule compares
//!    as a whole is its JSON text, so `requestParameters|contains` works.
//!
//! Records that are lines rather than JSON (syslog, journal) answer
//! keywords from the line and fields from the normalised event.

use std::borrow::Cow;

use rsigma_eval::{Event as SigmaEvent, EventValue};
use serde_json::Value;

use crate::timeline::Event;

/// A record and its event, ready for the rules.
pub struct Subject<'a> {
    pub event: &'a Event,
    pub json: Option<&'a Value>,
    /// The record's text where it is not JSON (a line).
    pub line: Option<&'a str>,
}

/// Names some rules use, per custody source, for a path in the records
/// custody reads; tried before the record's own paths, first found wins.
pub fn aliases(source: &str, field: &str) -> &'static [&'static str] {
    let f = field.to_ascii_lowercase();
    match (source, f.as_str()) {
        ("m365_ual", "eventsource") => &["Workload"],
        ("m365_ual", "eventname") => &["Operation"],
        ("m365_ual", "status") => &["ResultStatus"],
        ("entra_signin", "resulttype") => &["status.errorCode", "ResultType"],
        ("entra_signin", "resultdescription") => &["status.failureReason", "ResultDescription"],
        ("entra_signin", "status") => &["status.errorCode", "Status"],
        ("entra_audit", "operationname" | "properties.message") => {
            &["activityDisplayName", "OperationName"]
        }
        ("entra_audit", "status" | "properties.result") => &["result", "Result"],
        ("entra_audit", "properties.targetresources") => &["targetResources", "TargetResources"],
        ("entra_audit", "loggedbyservice") => &["loggedByService"],
        ("azure_activity", "operationname" | "operationnamevalue") => {
            &["operationName.value", "operationName", "OperationNameValue"]
        }
        ("azure_activity", "resourceprovidervalue") => &[
            "resourceProviderName.value",
            "resourceProviderName",
            "ResourceProviderValue",
        ],
        ("azure_activity", "categoryvalue") => &["category.value", "category", "CategoryValue"],
        ("azure_activity", "activitystatusvalue") => {
            &["status.value", "status", "ActivityStatusValue"]
        }
        ("azure_activity", "resourceid") => &["resourceId", "ResourceId"],
        // Elastic's names for the audit log's fields, which SigmaHQ's GCP rules use.
        ("gcp_audit", "gcp.audit.method_name") => &["protoPayload.methodName"],
        ("gcp_audit", "gcp.audit.service_name") => &["protoPayload.serviceName"],
        ("gcp_audit", "gcp.audit.resource_name") => &["protoPayload.resourceName"],
        ("gcp_audit", "gcp.audit.authentication_info.principal_email") => {
            &["protoPayload.authenticationInfo.principalEmail"]
        }
        _ => &[],
    }
}

impl Subject<'_> {
    fn custody_field(&self, name: &str) -> Option<EventValue<'_>> {
        let e = self.event;
        fn s(v: &Option<String>) -> Option<EventValue<'_>> {
            v.as_deref().map(|v| EventValue::Str(Cow::Borrowed(v)))
        }
        match name {
            "actor" => s(&e.actor),
            "account" => s(&e.account),
            "action" => Some(EventValue::Str(Cow::Borrowed(e.action.as_str()))),
            "outcome" => s(&e.outcome),
            "ip" => e.ip.map(|ip| EventValue::Str(Cow::Owned(ip.to_string()))),
            "user_agent" => s(&e.user_agent),
            "target" => s(&e.target),
            "source" => Some(EventValue::Str(Cow::Borrowed(e.source))),
            "message" => Some(EventValue::Str(Cow::Borrowed(e.message.as_str()))),
            "record_id" => s(&e.record_id),
            "external_recipients" => {
                let list = external_recipients(self.json?);
                (!list.is_empty()).then(|| {
                    EventValue::Array(
                        list.into_iter()
                            .map(|a| EventValue::Str(Cow::Owned(a)))
                            .collect(),
                    )
                })
            }
            other => e
                .attribute(other)
                .map(|v| EventValue::Str(Cow::Borrowed(v))),
        }
    }
}

impl SigmaEvent for Subject<'_> {
    fn get_field(&self, path: &str) -> Option<EventValue<'_>> {
        if let Some(name) = path.strip_prefix("custody.") {
            return self.custody_field(name);
        }
        let Some(json) = self.json else {
            // A line has no fields of its own: the normalised ones answer.
            return self.custody_field(path);
        };
        for alias in aliases(self.event.source, path) {
            if let Some(v) = lookup(json, alias) {
                return Some(v);
            }
        }
        // Some GCP rules name the LogEntry as a Pub/Sub message's `data`.
        if self.event.source == "gcp_audit"
            && let Some(inner) = path.strip_prefix("data.")
            && let Some(v) = lookup(json, inner)
        {
            return Some(v);
        }
        lookup(json, path)
    }

    fn any_string_value(&self, pred: &dyn Fn(&str) -> bool) -> bool {
        let mut found = false;
        self.visit_string_values(&mut |s| found = found || pred(s));
        found
    }

    fn all_string_values(&self) -> Vec<Cow<'_, str>> {
        let mut out = Vec::new();
        match self.json {
            Some(v) => strings(v, &mut |s| out.push(Cow::Borrowed(s))),
            None => {
                if let Some(l) = self.line {
                    out.push(Cow::Borrowed(l));
                }
                out.push(Cow::Borrowed(self.event.message.as_str()));
            }
        }
        out
    }

    fn visit_string_values(&self, visit: &mut dyn FnMut(&str)) {
        match self.json {
            Some(v) => strings(v, visit),
            None => {
                if let Some(l) = self.line {
                    visit(l);
                }
                visit(&self.event.message);
            }
        }
    }

    fn to_json(&self) -> Value {
        match self.json {
            Some(v) => v.clone(),
            None => serde_json::json!({
                "message": self.event.message,
                "line": self.line,
            }),
        }
    }
}

fn strings<'v>(v: &'v Value, visit: &mut dyn FnMut(&'v str)) {
    match v {
        Value::String(s) => visit(s),
        Value::Array(a) => a.iter().for_each(|v| strings(v, visit)),
        Value::Object(m) => m.values().for_each(|v| strings(v, visit)),
        _ => {}
    }
}

/// Deepest nesting a path walks; records deeper than this are not searched
/// further (a hostile record cannot make a lookup recurse without bound).
const MAX_DEPTH: usize = 32;

/// A dotted path in a record (see the module's notes), or `None` when absent.
pub fn lookup<'v>(root: &'v Value, path: &str) -> Option<EventValue<'v>> {
    let segments: Vec<&str> = path.split('.').collect();
    let mut found = Vec::new();
    walk(root, &segments, 0, &mut found);
    match found.len() {
        0 => {
            // A key that itself holds dots (`properties.message` as one key).
            let v = key(root.as_object()?, path)?;
            Some(value_of(v))
        }
        1 => found.pop().map(value_of),
        _ => Some(EventValue::Array(found.into_iter().map(value_of).collect())),
    }
}

fn key<'v>(map: &'v serde_json::Map<String, Value>, k: &str) -> Option<&'v Value> {
    map.get(k).or_else(|| {
        map.iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(k))
            .map(|(_, v)| v)
    })
}

fn walk<'v>(v: &'v Value, path: &[&str], depth: usize, out: &mut Vec<&'v Value>) {
    if depth > MAX_DEPTH {
        return;
    }
    let Some((first, rest)) = path.split_first() else {
        out.push(v);
        return;
    };
    match v {
        Value::Object(m) => {
            if let Some(next) = key(m, first) {
                walk(next, rest, depth + 1, out);
            }
        }
        Value::Array(items) => {
            let before = out.len();
            for item in items {
                walk(item, path, depth + 1, out);
            }
            if out.len() == before {
                // `{Name, Value}` lists: the element named `first`.
                for item in items {
                    let Some(m) = item.as_object() else { continue };
                    let named = key(m, "Name")
                        .and_then(Value::as_str)
                        .is_some_and(|n| n.eq_ignore_ascii_case(first));
                    if !named {
                        continue;
                    }
                    if rest.is_empty() {
                        if let Some(value) = key(m, "Value") {
                            out.push(value);
                        }
                    } else {
                        walk(item, rest, depth + 1, out);
                    }
                }
            }
        }
        _ => {}
    }
}

fn value_of(v: &Value) -> EventValue<'_> {
    match v {
        // A rule comparing a whole object compares its text.
        Value::Object(_) => EventValue::Str(Cow::Owned(v.to_string())),
        Value::Array(items) => EventValue::Array(items.iter().map(value_of).collect()),
        other => EventValue::from(other),
    }
}

/// Parameters of an inbox rule, mailbox or transport rule that send mail on.
const FORWARDING: &[&str] = &[
    "ForwardTo",
    "RedirectTo",
    "ForwardAsAttachmentTo",
    "ForwardingSmtpAddress",
    "ForwardingAddress",
    "RedirectMessageTo",
    "BlindCopyTo",
    "CopyTo",
];

/// The addresses a Unified Audit Log record forwards mail to whose domain
/// is neither the actor's (`UserId`) nor the mailbox's (`ObjectId`).
pub fn external_recipients(record: &Value) -> Vec<String> {
    let domain = |s: &str| {
        s.split('\\')
            .next()
            .and_then(|a| a.rsplit_once('@'))
            .map(|(_, d)| d.trim().to_ascii_lowercase())
    };
    let obj = record.as_object();
    let own: Vec<String> = ["UserId", "ObjectId", "MailboxOwnerUPN"]
        .iter()
        .filter_map(|k| obj.and_then(|m| key(m, k)).and_then(Value::as_str))
        .filter_map(domain)
        .collect();
    let mut out = Vec::new();
    for name in FORWARDING {
        let mut found = Vec::new();
        walk(record, &["Parameters", name], 0, &mut found);
        for v in found {
            let Some(text) = v.as_str() else { continue };
            for part in text.split([';', ',']) {
                let addr = part
                    .trim()
                    .trim_start_matches(['[', '"', '<'])
                    .trim_end_matches([']', '"', '>']);
                let addr = addr
                    .get(..5)
                    .filter(|p| p.eq_ignore_ascii_case("smtp:"))
                    .map_or(addr, |_| addr.get(5..).unwrap_or_default());
                let Some(d) = domain(addr) else { continue };
                if !d.is_empty() && !own.contains(&d) && !out.iter().any(|a: &String| a == addr) {
                    out.push(addr.to_owned());
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(source: &'static str) -> Event {
        let mut e = Event::new(0, source, "New-InboxRule");
        e.actor = Some("alice@contoso.com".into());
        e.attributes.push(("client_app".into(), "IMAP4".into()));
        e
    }

    #[test]
    fn paths_walk_objects_arrays_name_value_lists_and_case() {
        let r = json!({
            "Operation": "New-InboxRule",
            "userIdentity": {"arn": "arn:aws:iam::1:user/x", "sessionContext": {"attributes": {"mfa": "false"}}},
            "Parameters": [{"Name": "MoveToFolder", "Value": "RSS Feeds"}, {"Name": "MarkAsRead", "Value": "True"}],
            "resources": [{"ARN": "a"}, {"ARN": "b"}],
            "requestParameters": {"status": "Suspended"},
            "properties.message": "dotted key",
        });
        let e = event("m365_ual");
        let s = Subject {
            event: &e,
            json: Some(&r),
            line: None,
        };
        let str_of = |p: &str| {
            s.get_field(p)
                .and_then(|v| v.as_str().map(|c| c.into_owned()))
        };
        assert_eq!(
            str_of("userIdentity.arn").as_deref(),
            Some("arn:aws:iam::1:user/x")
        );
        assert_eq!(
            str_of("useridentity.sessionContext.attributes.mfa").as_deref(),
            Some("false")
        );
        assert_eq!(
            str_of("Parameters.MoveToFolder").as_deref(),
            Some("RSS Feeds")
        );
        assert_eq!(str_of("properties.message").as_deref(), Some("dotted key"));
        assert_eq!(
            str_of("requestParameters").as_deref(),
            Some(r#"{"status":"Suspended"}"#)
        );
        assert!(matches!(s.get_field("resources.ARN"), Some(EventValue::Array(a)) if a.len() == 2));
        assert!(s.get_field("Parameters.DeleteMessage").is_none());
        assert!(s.get_field("nothing.here").is_none());
        // Aliases: the m365 rules' eventName is the record's Operation.
        assert_eq!(str_of("eventName").as_deref(), Some("New-InboxRule"));
        // The normalised event and its attributes.
        assert_eq!(
            str_of("custody.actor").as_deref(),
            Some("alice@contoso.com")
        );
        assert_eq!(str_of("custody.client_app").as_deref(), Some("IMAP4"));
    }

    #[test]
    fn lines_answer_keywords_and_normalised_fields() {
        let e = event("host");
        let s = Subject {
            event: &e,
            json: None,
            line: Some("sshd[1]: Accepted password for root"),
        };
        assert!(s.any_string_value(&|t| t.contains("Accepted password")));
        assert!(!s.any_string_value(&|t| t.contains("absent")));
        assert_eq!(
            s.get_field("actor")
                .and_then(|v| v.as_str().map(|c| c.into_owned()))
                .as_deref(),
            Some("alice@contoso.com")
        );
    }

    #[test]
    fn external_recipients_are_those_outside_the_actors_and_mailboxs_domains() {
        let r = json!({
            "UserId": "dave@contoso.com",
            "ObjectId": "dave@contoso.com\\fwd",
            "Parameters": [
                {"Name": "ForwardTo", "Value": "dave.backup@example.net; colleague@contoso.com"},
                {"Name": "RedirectTo", "Value": "[\"x@CONTOSO.com\"]"},
                {"Name": "ForwardingSmtpAddress", "Value": "smtp:erin.archive@example.org"},
                {"Name": "ForwardingAddress", "Value": "Erin Contact"}
            ]
        });
        assert_eq!(
            external_recipients(&r),
            vec!["dave.backup@example.net", "erin.archive@example.org"]
        );
        assert!(external_recipients(&json!({"UserId": "a@b.c", "Parameters": []})).is_empty());
    }

    #[test]
    fn a_deep_hostile_record_does_not_recurse_without_bound() {
        let mut v = json!("leaf");
        for _ in 0..200 {
            v = json!([v]);
        }
        let e = event("cloudtrail");
        let s = Subject {
            event: &e,
            json: Some(&v),
            line: None,
        };
        assert!(s.get_field("a.b.c").is_none());
        assert!(s.any_string_value(&|t| t == "leaf"));
    }
}
