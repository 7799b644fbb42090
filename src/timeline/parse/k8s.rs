//! Kubernetes API server audit logs: `audit.k8s.io/v1` Events as the log
//! backend writes them (one a line), an `EventList` (on a line, or as the
//! whole file, pretty-printed), and EKS's audit logs as CloudWatch Logs
//! delivers them (one log event a line, the Event in `message`).
//!
//! One event per request. The apiserver writes an Event at each stage of a
//! request (`RequestReceived`, `ResponseStarted` for long-running ones such as
//! exec and watch, `ResponseComplete`, or `Panic`), all with the same
//! `auditID`. Only `ResponseComplete` and `Panic` become events; the earlier
//! stages of the same request are folded into it, named in its
//! `earlier_stages` attribute. A request is known by its auditID together
//! with its receipt time, verb, URI and user, since a client may choose its
//! own auditID (the `Audit-ID` header) to hide one request behind another.
//! Earlier stages whose request never completes in the file (an exec or
//! watch still open when the log was taken) become one event, from the last
//! stage seen, at the end. An earlier stage after its request's completion
//! is counted in one problem. At most [`PENDING_MAX`] requests wait for
//! their completion at once; past it an earlier stage is its own event.
//!
//! - action: `k8s:VERB RESOURCE[/SUBRESOURCE]` (`k8s:create pods/exec`,
//!   `k8s:list secrets`, `k8s:create serviceaccounts/token`); a non-resource
//!   request names its path (`k8s:get /version`). In queries:
//!   `action:"k8s:create pods/exec"`, `action:*secrets`.
//! - target: `namespace/name`; a cluster-scoped object its name; a
//!   namespaced collection its namespace.
//! - ip: the last of `sourceIPs`, the address the API server saw the
//!   request come from; the ones before it come from `X-Forwarded-For` and
//!   `X-Real-Ip`, which the client chooses, and are kept as
//!   `claimed_source_ips` (all of them in `source_ips`), never as the ip.
//! - record id: `auditID stage stageTimestamp`, the same for the same record
//!   read twice (a node's log and the EKS export), never for two requests.
//!
//! The record itself stays in the artefact, at the event's locator. Every
//! text taken from a record is cut to [`FIELD_MAX`] bytes with its control
//! characters escaped; lists to [`LIST_MAX`] entries; JSON nesting is
//! bounded by serde_json's recursion limit.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, RandomState};

use serde_json::Value;

use super::linux::one_line;
use super::{Record, Sink, ip, problem, str_at, time_us};
use crate::timeline::Event;

const SOURCE: &str = "k8s_audit";

/// How many bytes of a text field an event keeps.
pub const FIELD_MAX: usize = 4096;
/// How many bytes of a resource, verb or path the action keeps.
const NAME_MAX: usize = 256;
/// How many entries of a list (groups, addresses, annotations) an event keeps.
pub const LIST_MAX: usize = 64;
/// How many requests may wait for their completion at once.
pub const PENDING_MAX: usize = 65_536;
/// How many completed requests are remembered to count their late stages.
const DONE_MAX: usize = 1 << 20;
/// The largest pretty-printed document read whole (its JSON tree takes
/// several times its size).
const WHOLE_MAX: usize = 256 << 20;
/// How many names of skipped log streams the problem lists.
const STREAMS_NAMED: usize = 5;

/// The kube-apiserver's log backend: one Event a line (or an EventList).
pub fn k8s_audit(bytes: &[u8], sink: &mut dyn Sink) {
    Reader::new(bytes, Wrap::Bare).run(sink);
}

/// EKS audit logs from CloudWatch Logs: one log event a line, as custody's
/// collector writes them (`timestamp`, `message`, `logStreamName`, ...).
/// Lines of other streams of the cluster's group (`kube-apiserver-*`,
/// `authenticator-*`) are counted in one problem.
pub fn eks_audit_cloudwatch(bytes: &[u8], sink: &mut dyn Sink) {
    Reader::new(bytes, Wrap::CloudWatch).run(sink);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wrap {
    Bare,
    CloudWatch,
}

/// Request stages, in the order a request passes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Stage {
    RequestReceived,
    ResponseStarted,
    /// `ResponseComplete`, `Panic`, or a stage this reader does not know:
    /// each is an event of its own.
    Final,
}

impl Stage {
    fn of(name: Option<&str>) -> Self {
        match name {
            Some("RequestReceived") => Self::RequestReceived,
            Some("ResponseStarted") => Self::ResponseStarted,
            _ => Self::Final,
        }
    }

    fn bit(self) -> u8 {
        match self {
            Self::RequestReceived => 1,
            Self::ResponseStarted => 2,
            Self::Final => 4,
        }
    }
}

/// The early stages `bits` names, in order.
fn stage_names(bits: u8) -> Option<String> {
    let names: Vec<&str> = [
        (Stage::RequestReceived, "RequestReceived"),
        (Stage::ResponseStarted, "ResponseStarted"),
    ]
    .into_iter()
    .filter(|(s, _)| bits & s.bit() != 0)
    .map(|(_, n)| n)
    .collect();
    (!names.is_empty()).then(|| names.join(", "))
}

/// Where a record is, to read it again when its request turns out never to
/// complete: a line's bytes (and its item in an EventList), or an item of the
/// whole-file EventList.
#[derive(Debug, Clone, Copy)]
enum Place {
    Line {
        n: usize,
        start: usize,
        end: usize,
        item: Option<usize>,
    },
    Item(usize),
}

impl Place {
    fn locator(self) -> String {
        match self {
            Self::Line {
                n, item: Some(i), ..
            } => format!("line {n} items[{i}]"),
            Self::Line { n, item: None, .. } => format!("line {n}"),
            Self::Item(i) => format!("items[{i}]"),
        }
    }
}

/// An early stage waiting for its request's completion.
struct Pending {
    /// Order of arrival, so that what never completes comes out in file order.
    seq: usize,
    /// The latest stage seen and where its record is.
    stage: Stage,
    place: Place,
    /// Every early stage seen.
    stages: u8,
}

/// Why a line holds no record.
enum LineError {
    NotJson(String),
    OtherStream(String),
    NoMessage,
    MessageNotJson(String),
}

struct Reader<'a> {
    bytes: &'a [u8],
    wrap: Wrap,
    /// Keys requests; seeded per run so that no log can aim at a collision.
    hasher: RandomState,
    done: HashSet<u64>,
    pending: HashMap<u64, Pending>,
    seq: usize,
    /// Early stages after their request's completion: (count, first place).
    late: (usize, String),
    /// Early stages made events at once because [`PENDING_MAX`] requests waited.
    overflow: (usize, String),
    /// Log events of other streams: count, first line, a few names.
    other: (usize, usize, Vec<String>),
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8], wrap: Wrap) -> Self {
        let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
        Self {
            bytes,
            wrap,
            hasher: RandomState::new(),
            done: HashSet::new(),
            pending: HashMap::new(),
            seq: 0,
            late: (0, String::new()),
            overflow: (0, String::new()),
            other: (0, 0, Vec::new()),
        }
    }

    fn run(mut self, sink: &mut dyn Sink) {
        let doc = if self.wrap == Wrap::Bare {
            self.whole_document(sink)
        } else {
            None
        };
        match &doc {
            Some(Ok(v)) => self.records(v, None, None, sink),
            Some(Err(())) => return,
            None => {
                for (n, start, end) in line_ranges(self.bytes) {
                    let line = self.bytes.get(start..end).unwrap_or_default().trim_ascii();
                    if line.is_empty() {
                        continue;
                    }
                    let (value, stream) = match self.unwrap_line(line) {
                        Ok(v) => v,
                        Err(e) => {
                            self.line_error(n, e, sink);
                            continue;
                        }
                    };
                    let place = Place::Line {
                        n,
                        start,
                        end,
                        item: None,
                    };
                    self.records(&value, Some(place), stream.as_deref(), sink);
                }
            }
        }
        let doc = doc.and_then(Result::ok);
        self.finish(doc.as_ref(), sink);
    }

    /// A file that is one pretty-printed JSON document (an EventList, or an
    /// Event) rather than lines: None when its first line is a whole value
    /// (or not JSON at all), so that it is read line by line.
    fn whole_document(&self, sink: &mut dyn Sink) -> Option<Result<Value, ()>> {
        let mut lines = self
            .bytes
            .split(|&b| b == b'\n')
            .map(<[u8]>::trim_ascii)
            .filter(|l| !l.is_empty());
        let first = lines.next()?;
        if !first.starts_with(b"{") {
            return None;
        }
        match serde_json::from_slice::<Value>(first) {
            Err(e) if e.is_eof() => {}
            _ => return None,
        }
        if self.bytes.len() > WHOLE_MAX {
            sink.problem(problem(
                "line 1",
                format!(
                    "one JSON document of {} bytes, past the {} MiB read at once; as lines (`jq -c '.items[]'`) it can be read",
                    self.bytes.len(),
                    WHOLE_MAX >> 20
                ),
            ));
            return Some(Err(()));
        }
        match serde_json::from_slice::<Value>(self.bytes) {
            Ok(v) => Some(Ok(v)),
            // Lines whose first is cut: read them line by line.
            Err(_)
                if lines.next().is_some_and(|l| {
                    serde_json::from_slice::<Value>(l).is_ok_and(|v| v.is_object())
                }) =>
            {
                None
            }
            Err(e) => {
                sink.problem(problem(
                    format!("line {}", e.line()),
                    format!(
                        "a JSON document that is damaged or cut ({e}); nothing in it can be read"
                    ),
                ));
                Some(Err(()))
            }
        }
    }

    /// The bytes of the record at `place`: its line (for EKS, the log
    /// event holding it), when the line holds it alone; else none.
    fn raw(&self, place: Place) -> &'a [u8] {
        match place {
            Place::Line {
                start,
                end,
                item: None,
                ..
            } => self.bytes.get(start..end).unwrap_or_default().trim_ascii(),
            _ => &[],
        }
    }

    /// A line's record (an Event or an EventList) and its log stream.
    fn unwrap_line(&self, line: &[u8]) -> Result<(Value, Option<String>), LineError> {
        let value =
            serde_json::from_slice::<Value>(line).map_err(|e| LineError::NotJson(e.to_string()))?;
        if self.wrap == Wrap::Bare {
            return Ok((value, None));
        }
        let stream = str_at(&value, &["logStreamName"]).map(|s| clean(s, NAME_MAX));
        if let Some(s) = &stream
            && !s.starts_with("kube-apiserver-audit")
        {
            return Err(LineError::OtherStream(s.clone()));
        }
        let message = str_at(&value, &["message"]).ok_or(LineError::NoMessage)?;
        let record = serde_json::from_str::<Value>(message)
            .map_err(|e| LineError::MessageNotJson(e.to_string()))?;
        Ok((record, stream))
    }

    fn line_error(&mut self, n: usize, e: LineError, sink: &mut dyn Sink) {
        let locator = format!("line {n}");
        let message = match e {
            LineError::NotJson(why) if self.wrap == Wrap::Bare => {
                format!("not a JSON audit Event: {why}")
            }
            LineError::NotJson(why) => format!("not a JSON log event: {why}"),
            LineError::OtherStream(name) => {
                let (count, first, names) = &mut self.other;
                if *count == 0 {
                    *first = n;
                }
                *count += 1;
                if names.len() < STREAMS_NAMED && !names.contains(&name) {
                    names.push(name);
                }
                return;
            }
            LineError::NoMessage => "log event without a message".to_owned(),
            LineError::MessageNotJson(why) => {
                format!("the log event's message is not a JSON audit Event: {why}")
            }
        };
        sink.problem(problem(locator, message));
    }

    /// An Event, or each item of an EventList.
    fn records(
        &mut self,
        v: &Value,
        place: Option<Place>,
        stream: Option<&str>,
        sink: &mut dyn Sink,
    ) {
        if str_at(v, &["kind"]) != Some("EventList") {
            // The whole-file document that is a single Event: its line 1.
            let place = place.unwrap_or(Place::Line {
                n: 1,
                start: 0,
                end: self.bytes.len(),
                item: None,
            });
            self.record(v, place, stream, sink);
            return;
        }
        let items = v.get("items").and_then(Value::as_array);
        let Some(items) = items else {
            let at = place.map_or_else(|| "line 1".to_owned(), Place::locator);
            sink.problem(problem(at, "an EventList without an items array"));
            return;
        };
        for (i, item) in items.iter().enumerate() {
            let at = match place {
                Some(Place::Line { n, start, end, .. }) => Place::Line {
                    n,
                    start,
                    end,
                    item: Some(i),
                },
                _ => Place::Item(i),
            };
            self.record(item, at, stream, sink);
        }
    }

    fn record(&mut self, r: &Value, place: Place, stream: Option<&str>, sink: &mut dyn Sink) {
        let Some(t) = check(r) else {
            let why = match (str_at(r, &["kind"]), str_at(r, &["apiVersion"])) {
                (Some("Event"), Some(API_V1 | API_V1BETA1)) => {
                    "an audit Event without a stageTimestamp or requestReceivedTimestamp that reads as a time; skipped".to_owned()
                }
                (kind, version) => format!(
                    "not an audit Event: kind {}, apiVersion {}; skipped",
                    kind.map_or_else(|| "(none)".to_owned(), |k| format!("{:?}", clean(k, NAME_MAX))),
                    version.map_or_else(
                        || "(none)".to_owned(),
                        |k| format!("{:?}", clean(k, NAME_MAX))
                    ),
                ),
            };
            sink.problem(problem(place.locator(), why));
            return;
        };
        let stage = Stage::of(str_at(r, &["stage"]));
        let key = self.hasher.hash_one((
            str_at(r, &["auditID"]),
            str_at(r, &["requestReceivedTimestamp"]),
            str_at(r, &["verb"]),
            str_at(r, &["requestURI"]),
            str_at(r, &["user", "username"]),
        ));
        if stage == Stage::Final {
            let earlier = self.pending.remove(&key).map_or(0, |p| p.stages);
            let e = event(r, t, earlier, place.locator(), stream);
            emit(e, self.raw(place), r, sink);
            if self.done.len() < DONE_MAX {
                self.done.insert(key);
            }
            return;
        }
        if self.done.contains(&key) {
            count(&mut self.late, place);
            return;
        }
        if let Some(p) = self.pending.get_mut(&key) {
            p.stages |= stage.bit();
            if stage >= p.stage {
                p.stage = stage;
                p.place = place;
            }
            return;
        }
        if self.pending.len() >= PENDING_MAX {
            count(&mut self.overflow, place);
            let e = event(r, t, 0, place.locator(), stream);
            emit(e, self.raw(place), r, sink);
            return;
        }
        self.seq += 1;
        self.pending.insert(
            key,
            Pending {
                seq: self.seq,
                stage,
                place,
                stages: stage.bit(),
            },
        );
    }

    /// The requests that never completed, from their last stage, and the counts.
    fn finish(mut self, doc: Option<&Value>, sink: &mut dyn Sink) {
        let mut open: Vec<Pending> = std::mem::take(&mut self.pending).into_values().collect();
        open.sort_by_key(|p| p.seq);
        for p in open {
            let (record, stream) = match p.place {
                Place::Item(i) => {
                    let item = doc.and_then(|d| d.get("items")?.get(i));
                    (item.cloned(), None)
                }
                Place::Line {
                    start, end, item, ..
                } => {
                    let line = self.bytes.get(start..end).unwrap_or_default().trim_ascii();
                    match self.unwrap_line(line) {
                        Ok((v, stream)) => {
                            let v = match item {
                                Some(i) => v.get("items").and_then(|a| a.get(i)).cloned(),
                                None => Some(v),
                            };
                            (v, stream)
                        }
                        Err(_) => (None, None),
                    }
                }
            };
            // Read once already, so these hold; a record that no longer
            // reads is left out rather than guessed.
            if let Some(r) = record
                && let Some(t) = check(&r)
            {
                let earlier = p.stages & !p.stage.bit();
                let e = event(&r, t, earlier, p.place.locator(), stream.as_deref());
                emit(e, self.raw(p.place), &r, sink);
            }
        }
        let (n, first) = &self.late;
        if *n > 0 {
            sink.problem(problem(
                first.clone(),
                format!(
                    "{n} RequestReceived or ResponseStarted records came after their request's completion (out of order); counted, not repeated"
                ),
            ));
        }
        let (n, first) = &self.overflow;
        if *n > 0 {
            sink.problem(problem(
                first.clone(),
                format!(
                    "more than {PENDING_MAX} requests waited for their completion at once: {n} earlier-stage records are events of their own"
                ),
            ));
        }
        let (n, first, names) = &self.other;
        if *n > 0 {
            sink.problem(problem(
                format!("line {first}"),
                format!(
                    "skipped {n} log event(s) of streams that are not kube-apiserver audit streams ({})",
                    names.join(", ")
                ),
            ));
        }
    }
}

fn count(c: &mut (usize, String), place: Place) {
    if c.0 == 0 {
        c.1 = place.locator();
    }
    c.0 += 1;
}

/// Lines with their 1-based numbers and byte ranges (without the `\n`).
fn line_ranges(bytes: &[u8]) -> impl Iterator<Item = (usize, usize, usize)> + '_ {
    let mut start = 0usize;
    bytes.split(|&b| b == b'\n').enumerate().map(move |(i, l)| {
        let s = start;
        start = s + l.len() + 1;
        (i + 1, s, s + l.len())
    })
}

const API_V1: &str = "audit.k8s.io/v1";
/// Removed in Kubernetes 1.24, still in older clusters' logs: the same fields.
const API_V1BETA1: &str = "audit.k8s.io/v1beta1";

/// The record's time, when it is an audit Event that has one.
fn check(r: &Value) -> Option<i64> {
    if str_at(r, &["kind"]) != Some("Event")
        || !matches!(str_at(r, &["apiVersion"]), Some(API_V1 | API_V1BETA1))
    {
        return None;
    }
    str_at(r, &["stageTimestamp"])
        .and_then(time_us)
        .or_else(|| str_at(r, &["requestReceivedTimestamp"]).and_then(time_us))
}

/// `s` with control characters escaped, cut to about `max` bytes.
pub(super) fn clean(s: &str, max: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max));
    for (i, c) in s.char_indices() {
        if out.len() >= max {
            out.push_str(&format!("… ({} more bytes)", s.len() - i));
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// The strings of a JSON array, cleaned, at most [`LIST_MAX`] of them.
fn strings(v: Option<&Value>) -> Vec<String> {
    let all = v.and_then(Value::as_array).map_or(&[][..], Vec::as_slice);
    let mut out: Vec<String> = all
        .iter()
        .filter_map(Value::as_str)
        .take(LIST_MAX)
        .map(|s| clean(s, FIELD_MAX))
        .collect();
    if all.len() > LIST_MAX {
        out.push(format!("… ({} more)", all.len() - LIST_MAX));
    }
    out
}

/// An object's members by key (whatever order serde_json keeps them in), at
/// most [`LIST_MAX`] of them.
fn sorted(v: Option<&Value>) -> Vec<(&String, &Value)> {
    let mut members: Vec<(&String, &Value)> = v
        .and_then(Value::as_object)
        .map(|o| o.iter().collect())
        .unwrap_or_default();
    members.sort_by(|a, b| a.0.cmp(b.0));
    members.truncate(LIST_MAX);
    members
}

fn push(a: &mut Vec<(String, String)>, name: &str, value: Option<String>) {
    if let Some(v) = value.filter(|v| !v.is_empty()) {
        a.push((name.to_owned(), v));
    }
}

/// One audit Event as a timeline event. `earlier` are the early stages
/// folded into it.
/// Sends an event with its record. Its content is the audit Event's value,
/// not the line's bytes: the same Event read from the API server's log and
/// through CloudWatch Logs (wrapped in a log event) is one record.
fn emit(mut e: Event, raw: &[u8], r: &Value, sink: &mut dyn Sink) {
    if e.record_id.is_some() {
        e.content = Some(Record::json(&[], r).digest());
    }
    sink.record(e, Record::json(raw, r));
}

fn event(r: &Value, t: i64, earlier: u8, locator: String, stream: Option<&str>) -> Event {
    let s = |path: &[&str], max: usize| str_at(r, path).map(|v| clean(v, max));
    let obj = |k: &str| str_at(r, &["objectRef", k]).map(|v| clean(v, NAME_MAX));
    let verb = s(&["verb"], NAME_MAX);
    let uri = s(&["requestURI"], FIELD_MAX);
    let resource = obj("resource");
    let subresource = obj("subresource");
    let what = match (&resource, &subresource) {
        (Some(r), Some(sub)) => format!("{r}/{sub}"),
        (Some(r), None) => r.clone(),
        // A non-resource request (`/version`, `/healthz`): its path.
        (None, _) => str_at(r, &["requestURI"])
            .map(|u| u.split('?').next().unwrap_or(u))
            .map_or_else(|| "(unknown)".to_owned(), |p| clean(p, NAME_MAX)),
    };
    let verb_word = verb.as_deref().unwrap_or("(unknown)");
    let mut e = Event::new(t, SOURCE, format!("k8s:{verb_word} {what}"));
    e.actor = s(&["user", "username"], FIELD_MAX);
    e.target = match (obj("namespace"), str_at(r, &["objectRef", "name"])) {
        (Some(ns), Some(name)) => Some(format!("{ns}/{}", clean(name, FIELD_MAX))),
        (Some(ns), None) => Some(ns),
        (None, Some(name)) => Some(clean(name, FIELD_MAX)),
        (None, None) => None,
    };
    let ips = strings(r.get("sourceIPs"));
    // Only the last is not the client's to set: a forged X-Forwarded-For
    // must not pin a request on someone else's address.
    e.ip = ips.last().and_then(|a| ip(a));
    e.user_agent = s(&["userAgent"], FIELD_MAX);
    let code = r.pointer("/responseStatus/code").and_then(Value::as_i64);
    let stage = str_at(r, &["stage"]);
    e.outcome = match code {
        Some(c) if c >= 400 => Some("failure".to_owned()),
        Some(_) => Some("success".to_owned()),
        None if stage == Some("Panic") => Some("failure".to_owned()),
        None => None,
    };
    let audit_id = s(&["auditID"], NAME_MAX);
    e.record_id = audit_id.as_ref().map(|id| {
        format!(
            "{id} {} {}",
            clean(stage.unwrap_or("-"), NAME_MAX),
            clean(str_at(r, &["stageTimestamp"]).unwrap_or("-"), NAME_MAX)
        )
    });
    let impersonated = s(&["impersonatedUser", "username"], FIELD_MAX);

    let a = &mut e.attributes;
    push(a, "audit_id", audit_id);
    push(a, "stage", stage.map(|v| clean(v, NAME_MAX)));
    push(a, "earlier_stages", stage_names(earlier));
    push(a, "level", s(&["level"], NAME_MAX));
    push(
        a,
        "groups",
        Some(strings(r.pointer("/user/groups")).join(", ")),
    );
    push(a, "user_uid", s(&["user", "uid"], FIELD_MAX));
    for (k, v) in sorted(r.pointer("/user/extra")) {
        let name = format!("extra.{}", clean(k, NAME_MAX));
        push(a, &name, Some(strings(Some(v)).join(", ")));
    }
    if impersonated.is_some() || r.get("impersonatedUser").is_some_and(Value::is_object) {
        a.push(("impersonated".into(), "true".into()));
        push(a, "impersonated_user", impersonated.clone());
        push(
            a,
            "impersonated_groups",
            Some(strings(r.pointer("/impersonatedUser/groups")).join(", ")),
        );
    }
    push(a, "source_ips", Some(ips.join(", ")));
    if let Some((_, claimed)) = ips.split_last()
        && !claimed.is_empty()
    {
        push(a, "claimed_source_ips", Some(claimed.join(", ")));
    }
    push(a, "api_group", obj("apiGroup"));
    push(a, "api_version", obj("apiVersion"));
    push(a, "response_code", code.map(|c| c.to_string()));
    push(
        a,
        "response_status",
        s(&["responseStatus", "status"], NAME_MAX),
    );
    push(
        a,
        "response_reason",
        s(&["responseStatus", "reason"], NAME_MAX),
    );
    push(
        a,
        "response_message",
        s(&["responseStatus", "message"], FIELD_MAX),
    );
    push(a, "request_uri", uri);
    for (k, v) in sorted(r.get("annotations")) {
        push(
            a,
            &clean(k, NAME_MAX),
            v.as_str().map(|v| clean(v, FIELD_MAX)),
        );
    }
    push(a, "log_stream", stream.map(str::to_owned));

    let mut m = e.actor.clone().unwrap_or_else(|| "(unknown)".to_owned());
    if let Some(who) = &impersonated {
        // A word free text finds: the attribute names are not indexed.
        m.push_str(&format!(" impersonating {who}"));
    }
    m.push_str(&format!(" {verb_word} {what}"));
    if let Some(t) = &e.target {
        m.push_str(&format!(" {t}"));
    }
    if let Some((last, claimed)) = ips.split_last() {
        m.push_str(&format!(" from {last}"));
        if !claimed.is_empty() {
            m.push_str(&format!(" (forwarded for {})", claimed.join(", ")));
        }
    }
    match code {
        Some(c) => m.push_str(&format!(": {c}")),
        None => m.push_str(": no response"),
    }
    if let Some(reason) = e.attribute("response_reason") {
        m.push_str(&format!(" {reason}"));
    }
    if let Some(st) = stage.filter(|_| Stage::of(stage) != Stage::Final) {
        m.push_str(&format!(" (not completed in this log: last stage {st})"));
    }
    e.message = one_line(&m);
    e.locator = locator;
    e
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::timeline::parse::{Collect, Format, parse_file};
    use crate::timeline::query::Query;
    use crate::timeline::store::Timeline;

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!(
            "{}/tests/fixtures/logs/k8s/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn run(f: fn(&[u8], &mut dyn Sink), bytes: &[u8]) -> Collect {
        let mut c = Collect::default();
        f(bytes, &mut c);
        c
    }

    const ADMIN: &str = "kubernetes-admin";
    const ADMIN_IP: &str = "203.0.113.50";
    const READER: &str = "system:serviceaccount:kube-system:metrics-reader";
    const KUBECTL: &str = "kubectl/v1.29.3 (linux/amd64) kubernetes/6813625";
    const BY_MASTERS: &str = "RBAC: allowed by ClusterRoleBinding \"cluster-admin\" of ClusterRole \"cluster-admin\" to Group \"system:masters\"";
    const BY_READER: &str = "RBAC: allowed by ClusterRoleBinding \"metrics-reader\" of ClusterRole \"secret-reader\" to ServiceAccount \"metrics-reader/kube-system\"";
    const EXEC_URI: &str = "/api/v1/namespaces/default/pods/web-7d4b9c/exec?command=sh&command=-c&command=id&container=web&stdin=true&stdout=true&tty=true";
    const CRB_URI: &str = "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings?fieldManager=kubectl-create&fieldValidation=Strict";

    /// The expected event, field by field.
    struct Want<'a> {
        time: &'a str,
        action: &'a str,
        actor: &'a str,
        target: Option<&'a str>,
        ip: &'a str,
        ua: &'a str,
        outcome: Option<&'a str>,
        record_id: &'a str,
        message: &'a str,
        attrs: &'a [(&'a str, &'a str)],
        locator: &'a str,
    }

    impl Want<'_> {
        fn event(&self) -> Event {
            let mut e = Event::new(time_us(self.time).unwrap(), SOURCE, self.action);
            e.actor = Some(self.actor.to_owned());
            e.target = self.target.map(str::to_owned);
            e.ip = Some(self.ip.parse().unwrap());
            e.user_agent = Some(self.ua.to_owned());
            e.outcome = self.outcome.map(str::to_owned);
            e.record_id = Some(self.record_id.to_owned());
            e.message = self.message.to_owned();
            e.attributes = self
                .attrs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
            e.locator = self.locator.to_owned();
            e
        }
    }

    const ADMIN_WHO: [(&str, &str); 5] = [
        ("level", "Metadata"),
        ("groups", "system:masters, system:authenticated"),
        (
            "user_uid",
            "aws-iam-authenticator:111122223333:AIDAEXAMPLEADMIN",
        ),
        ("extra.accessKeyId", "AKIAIOSFODNN7EXAMPLE"),
        ("extra.arn", "arn:aws:iam::111122223333:user/ops-admin"),
    ];
    const READER_WHO: [(&str, &str); 3] = [
        ("level", "Metadata"),
        (
            "groups",
            "system:serviceaccounts, system:serviceaccounts:kube-system, system:authenticated",
        ),
        ("user_uid", "6b3c1d2e-0f4a-4b5c-9d8e-7f6a5b4c3d2e"),
    ];

    fn attrs<'a>(parts: &[&[(&'a str, &'a str)]]) -> Vec<(&'a str, &'a str)> {
        parts.iter().flat_map(|p| p.iter().copied()).collect()
    }

    /// The events of `audit.jsonl`, in the order the parser yields them:
    /// each request when it completes, the never-completed watch last.
    fn want_events() -> Vec<Event> {
        let secrets_list = attrs(&[
            &[
                ("audit_id", "5ec7e700-2222-4a1b-8c3d-9e8f7a6b5c4d"),
                ("stage", "ResponseComplete"),
            ],
            &READER_WHO,
            &[
                ("source_ips", "198.51.100.23"),
                ("api_version", "v1"),
                ("response_code", "200"),
                (
                    "request_uri",
                    "/api/v1/namespaces/kube-system/secrets?limit=500",
                ),
                ("authorization.k8s.io/decision", "allow"),
                ("authorization.k8s.io/reason", BY_READER),
            ],
        ]);
        let exec = attrs(&[
            &[
                ("audit_id", "e1d5c3a0-1111-4e7f-9c2b-0a1b2c3d4e5f"),
                ("stage", "ResponseComplete"),
                ("earlier_stages", "ResponseStarted"),
            ],
            &ADMIN_WHO,
            &[
                ("source_ips", ADMIN_IP),
                ("api_version", "v1"),
                ("response_code", "101"),
                ("request_uri", EXEC_URI),
                ("authorization.k8s.io/decision", "allow"),
                ("authorization.k8s.io/reason", BY_MASTERS),
            ],
        ]);
        let forbidden = [
            ("audit_id", "f0bdd3e0-3333-4c5d-8e9f-0a1b2c3d4e5f"),
            ("stage", "ResponseComplete"),
            ("level", "Metadata"),
            ("groups", "developers, system:authenticated"),
            ("source_ips", "203.0.113.77, 10.0.1.17"),
            ("claimed_source_ips", "203.0.113.77"),
            ("api_version", "v1"),
            ("response_code", "403"),
            ("response_status", "Failure"),
            ("response_reason", "Forbidden"),
            (
                "response_message",
                "secrets \"db-creds\" is forbidden: User \"jane\" cannot get resource \"secrets\" in API group \"\" in the namespace \"payments\"",
            ),
            (
                "request_uri",
                "/api/v1/namespaces/payments/secrets/db-creds",
            ),
            ("authorization.k8s.io/decision", "forbid"),
        ];
        let impersonated = [
            ("audit_id", "1a2b3c4d-4444-4e5f-8a9b-0c1d2e3f4a5b"),
            ("stage", "ResponseComplete"),
            ("level", "Metadata"),
            ("groups", "system:authenticated"),
            ("impersonated", "true"),
            ("impersonated_user", "system:admin"),
            ("impersonated_groups", "system:masters"),
            ("source_ips", "192.0.2.10"),
            ("api_version", "v1"),
            ("response_code", "200"),
            (
                "request_uri",
                "/api/v1/namespaces/kube-system/configmaps/aws-auth?fieldManager=kubectl-edit",
            ),
            ("authorization.k8s.io/decision", "allow"),
            ("authorization.k8s.io/reason", BY_MASTERS),
        ];
        let crb = attrs(&[
            &[
                ("audit_id", "c7b0a1d2-6666-4f3e-9d8c-1b2a3c4d5e6f"),
                ("stage", "ResponseComplete"),
                ("earlier_stages", "RequestReceived"),
            ],
            &ADMIN_WHO,
            &[
                ("source_ips", ADMIN_IP),
                ("api_group", "rbac.authorization.k8s.io"),
                ("api_version", "v1"),
                ("response_code", "201"),
                ("request_uri", CRB_URI),
                ("authorization.k8s.io/decision", "allow"),
                ("authorization.k8s.io/reason", BY_MASTERS),
            ],
        ]);
        let token = attrs(&[
            &[
                ("audit_id", "70c3e000-7777-4a5b-9c8d-2e3f4a5b6c7d"),
                ("stage", "ResponseComplete"),
            ],
            &ADMIN_WHO,
            &[
                ("source_ips", ADMIN_IP),
                ("api_version", "v1"),
                ("response_code", "201"),
                (
                    "request_uri",
                    "/api/v1/namespaces/kube-system/serviceaccounts/metrics-reader/token",
                ),
                ("authorization.k8s.io/decision", "allow"),
                ("authorization.k8s.io/reason", BY_MASTERS),
            ],
        ]);
        let version = [
            ("audit_id", "a0a0a0a0-8888-4b1c-8d2e-3f4a5b6c7d8e"),
            ("stage", "ResponseComplete"),
            ("level", "Metadata"),
            ("groups", "system:unauthenticated"),
            ("source_ips", "198.51.100.99"),
            ("response_code", "200"),
            ("request_uri", "/version?timeout=32s"),
            ("authorization.k8s.io/decision", "allow"),
            (
                "authorization.k8s.io/reason",
                "RBAC: allowed by ClusterRoleBinding \"system:public-info-viewer\" of ClusterRole \"system:public-info-viewer\" to Group \"system:unauthenticated\"",
            ),
        ];
        let watch = attrs(&[
            &[
                ("audit_id", "3a7c0000-aaaa-4b5c-8d9e-0f1a2b3c4d5e"),
                ("stage", "ResponseStarted"),
                ("earlier_stages", "RequestReceived"),
            ],
            &READER_WHO,
            &[
                ("source_ips", "198.51.100.23"),
                ("api_version", "v1"),
                ("response_code", "200"),
                (
                    "request_uri",
                    "/api/v1/namespaces/kube-system/secrets?watch=true",
                ),
                ("authorization.k8s.io/decision", "allow"),
                ("authorization.k8s.io/reason", BY_READER),
            ],
        ]);
        let success = Some("success");
        [
            Want {
                time: "2024-06-01T08:01:00.012345Z",
                action: "k8s:list secrets",
                actor: READER,
                target: Some("kube-system"),
                ip: "198.51.100.23",
                ua: "curl/8.5.0\\u{1b}]0;pwned\\u{7}",
                outcome: success,
                record_id: "5ec7e700-2222-4a1b-8c3d-9e8f7a6b5c4d ResponseComplete 2024-06-01T08:01:00.012345Z",
                message: "system:serviceaccount:kube-system:metrics-reader list secrets kube-system from 198.51.100.23: 200",
                attrs: &secrets_list,
                locator: "line 2",
            },
            Want {
                time: "2024-06-01T08:02:30.5Z",
                action: "k8s:create pods/exec",
                actor: ADMIN,
                target: Some("default/web-7d4b9c"),
                ip: ADMIN_IP,
                ua: KUBECTL,
                outcome: success,
                record_id: "e1d5c3a0-1111-4e7f-9c2b-0a1b2c3d4e5f ResponseComplete 2024-06-01T08:02:30.500000Z",
                message: "kubernetes-admin create pods/exec default/web-7d4b9c from 203.0.113.50: 101",
                attrs: &exec,
                locator: "line 3",
            },
            Want {
                time: "2024-06-01T08:03:00.004Z",
                action: "k8s:get secrets",
                actor: "jane",
                target: Some("payments/db-creds"),
                ip: "10.0.1.17",
                ua: KUBECTL,
                outcome: Some("failure"),
                record_id: "f0bdd3e0-3333-4c5d-8e9f-0a1b2c3d4e5f ResponseComplete 2024-06-01T08:03:00.004000Z",
                message: "jane get secrets payments/db-creds from 10.0.1.17 (forwarded for 203.0.113.77): 403 Forbidden",
                attrs: &forbidden,
                locator: "line 4",
            },
            Want {
                time: "2024-06-01T08:04:00.02Z",
                action: "k8s:patch configmaps",
                actor: "alice",
                target: Some("kube-system/aws-auth"),
                ip: "192.0.2.10",
                ua: KUBECTL,
                outcome: success,
                record_id: "1a2b3c4d-4444-4e5f-8a9b-0c1d2e3f4a5b ResponseComplete 2024-06-01T08:04:00.020000Z",
                message: "alice impersonating system:admin patch configmaps kube-system/aws-auth from 192.0.2.10: 200",
                attrs: &impersonated,
                locator: "line 5",
            },
            Want {
                time: "2024-06-01T08:05:00.031Z",
                action: "k8s:create clusterrolebindings",
                actor: ADMIN,
                target: Some("backdoor-admin"),
                ip: ADMIN_IP,
                ua: KUBECTL,
                outcome: success,
                record_id: "c7b0a1d2-6666-4f3e-9d8c-1b2a3c4d5e6f ResponseComplete 2024-06-01T08:05:00.031000Z",
                message: "kubernetes-admin create clusterrolebindings backdoor-admin from 203.0.113.50: 201",
                attrs: &crb,
                locator: "line 7",
            },
            Want {
                time: "2024-06-01T08:06:00.008Z",
                action: "k8s:create serviceaccounts/token",
                actor: ADMIN,
                target: Some("kube-system/metrics-reader"),
                ip: ADMIN_IP,
                ua: KUBECTL,
                outcome: success,
                record_id: "70c3e000-7777-4a5b-9c8d-2e3f4a5b6c7d ResponseComplete 2024-06-01T08:06:00.008000Z",
                message: "kubernetes-admin create serviceaccounts/token kube-system/metrics-reader from 203.0.113.50: 201",
                attrs: &token,
                locator: "line 10",
            },
            Want {
                time: "2024-06-01T08:07:00.001Z",
                action: "k8s:get /version",
                actor: "system:anonymous",
                target: None,
                ip: "198.51.100.99",
                ua: "Go-http-client/1.1",
                outcome: success,
                record_id: "a0a0a0a0-8888-4b1c-8d2e-3f4a5b6c7d8e ResponseComplete 2024-06-01T08:07:00.001000Z",
                message: "system:anonymous get /version from 198.51.100.99: 200",
                attrs: &version,
                locator: "line 12",
            },
            Want {
                time: "2024-06-01T08:08:00.002Z",
                action: "k8s:watch secrets",
                actor: READER,
                target: Some("kube-system"),
                ip: "198.51.100.23",
                ua: "curl/8.5.0",
                outcome: success,
                record_id: "3a7c0000-aaaa-4b5c-8d9e-0f1a2b3c4d5e ResponseStarted 2024-06-01T08:08:00.002000Z",
                message: "system:serviceaccount:kube-system:metrics-reader watch secrets kube-system from 198.51.100.23: 200 (not completed in this log: last stage ResponseStarted)",
                attrs: &watch,
                locator: "line 14",
            },
        ]
        .iter()
        .map(Want::event)
        .collect()
    }

    fn assert_events(got: &[Event], want: &[Event]) {
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!(g.content.is_some(), "event {i} has a content digest");
            let g = Event {
                content: None,
                ..g.clone()
            };
            assert_eq!(&g, w, "event {i}");
        }
        assert_eq!(got.len(), want.len());
    }

    /// Line 2 of the fixture with a new auditID and a 1 MiB user agent.
    fn huge_line() -> String {
        let text = String::from_utf8(fixture("audit.jsonl")).unwrap();
        let mut v: Value = serde_json::from_str(text.lines().nth(1).unwrap()).unwrap();
        v["auditID"] = "b16b16b1-0000-4000-8000-000000000000".into();
        v["userAgent"] = "A".repeat(1 << 20).into();
        v.to_string()
    }

    /// An Event whose request object nests far past serde_json's limit.
    fn deep_line() -> String {
        format!(
            r#"{{"kind":"Event","apiVersion":"audit.k8s.io/v1","stage":"ResponseComplete","requestObject":{}{}}}"#,
            "[".repeat(100_000),
            "]".repeat(100_000)
        )
    }

    #[test]
    fn k8s_audit_maps_every_request_once() {
        let mut bytes = fixture("audit.jsonl");
        bytes.extend(format!("{}\n{}\n", huge_line(), deep_line()).as_bytes());
        let c = run(k8s_audit, &bytes);

        let mut want = want_events();
        // The huge line, read as line 15 before the open watch comes out.
        let mut huge = want[0].clone();
        let cut = format!(
            "{}… ({} more bytes)",
            "A".repeat(FIELD_MAX),
            (1 << 20) - FIELD_MAX
        );
        huge.user_agent = Some(cut);
        huge.attributes[0].1 = "b16b16b1-0000-4000-8000-000000000000".into();
        huge.record_id = Some(
            "b16b16b1-0000-4000-8000-000000000000 ResponseComplete 2024-06-01T08:01:00.012345Z"
                .into(),
        );
        huge.locator = "line 15".into();
        want.insert(7, huge);
        assert_events(&c.events, &want);

        let problems: Vec<(&str, &str)> = c
            .problems
            .iter()
            .map(|p| (p.locator.as_str(), p.message.as_str()))
            .collect();
        assert_eq!(problems.len(), 4, "{problems:#?}");
        assert_eq!(problems[0].0, "line 8");
        assert!(
            problems[0]
                .1
                .starts_with("not a JSON audit Event: expected")
        );
        assert_eq!(
            problems[1],
            (
                "line 9",
                "an audit Event without a stageTimestamp or requestReceivedTimestamp that reads as a time; skipped"
            )
        );
        assert_eq!(
            problems[2],
            (
                "line 11",
                "not an audit Event: kind \"Policy\", apiVersion \"audit.k8s.io/v1\"; skipped"
            )
        );
        assert_eq!(problems[3].0, "line 16");
        assert!(
            problems[3]
                .1
                .starts_with("not a JSON audit Event: recursion limit exceeded"),
            "{}",
            problems[3].1
        );
    }

    const STREAM_A: &str = "kube-apiserver-audit-4f1c0a9e8b7d6c5e4f3a2b1c0d9e8f7a";
    const STREAM_B: &str = "kube-apiserver-audit-9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d";

    #[test]
    fn eks_cloudwatch_yields_the_same_events_and_skips_other_streams() {
        let c = run(eks_audit_cloudwatch, &fixture("eks-audit-cloudwatch.jsonl"));
        // Audit line k is CloudWatch line k, or k + 1 past the authenticator's
        // line 5; the streams alternate from line to line.
        let want: Vec<Event> = want_events()
            .into_iter()
            .map(|mut e| {
                let k: usize = e.locator.trim_start_matches("line ").parse().unwrap();
                e.locator = format!("line {}", if k <= 4 { k } else { k + 1 });
                let stream = if k % 2 == 1 { STREAM_A } else { STREAM_B };
                e.attributes.push(("log_stream".into(), stream.into()));
                e
            })
            .collect();
        assert_events(&c.events, &want);

        let problems: Vec<(&str, &str)> = c
            .problems
            .iter()
            .map(|p| (p.locator.as_str(), p.message.as_str()))
            .collect();
        assert_eq!(problems.len(), 4, "{problems:#?}");
        assert_eq!(problems[0].0, "line 9");
        assert!(
            problems[0]
                .1
                .starts_with("the log event's message is not a JSON audit Event: expected")
        );
        assert_eq!(problems[1].0, "line 10");
        assert!(
            problems[1]
                .1
                .starts_with("an audit Event without a stageTimestamp")
        );
        assert_eq!(problems[2].0, "line 12");
        assert!(
            problems[2]
                .1
                .starts_with("not an audit Event: kind \"Policy\"")
        );
        assert_eq!(
            problems[3],
            (
                "line 5",
                "skipped 1 log event(s) of streams that are not kube-apiserver audit streams (authenticator-4f1c0a9e8b7d6c5e4f3a2b1c0d9e8f7a)"
            )
        );

        // A log event without a stream name is read; bad wrappers are problems.
        let text = String::from_utf8(fixture("eks-audit-cloudwatch.jsonl")).unwrap();
        let line2: Value = serde_json::from_str(text.lines().nth(1).unwrap()).unwrap();
        let bare = serde_json::json!({"timestamp": 1, "message": line2["message"]});
        let lines = format!("{bare}\n{{\"timestamp\":1}}\nnot json\n");
        let c = run(eks_audit_cloudwatch, lines.as_bytes());
        assert_eq!(c.events.len(), 1);
        assert_eq!(c.events[0].action, "k8s:list secrets");
        assert_eq!(c.events[0].attribute("log_stream"), None);
        let places: Vec<(&str, &str)> = c
            .problems
            .iter()
            .map(|p| (p.locator.as_str(), p.message.get(..26).unwrap_or("")))
            .collect();
        assert_eq!(
            places,
            [
                ("line 2", "log event without a messag"),
                ("line 3", "not a JSON log event: expe")
            ]
        );
    }

    #[test]
    fn event_lists_whole_file_and_on_a_line() {
        let want = want_events();
        let c = run(k8s_audit, &fixture("audit-eventlist.json"));
        assert_eq!(c.problems, vec![]);
        let mut list = want[0].clone();
        list.locator = "items[0]".into();
        let mut crb = want[4].clone();
        crb.locator = "items[1]".into();
        // Alone, its RequestReceived is not in the list.
        crb.attributes.retain(|(k, _)| k != "earlier_stages");
        assert_events(&c.events, &[list, crb]);

        // On a line, next to a plain Event; the watch's two stages in the
        // list never complete, so the last one is read again at the end.
        let text = String::from_utf8(fixture("audit.jsonl")).unwrap();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or(Value::Null))
            .collect();
        let batch = serde_json::json!({
            "kind": "EventList", "apiVersion": "audit.k8s.io/v1",
            "items": [lines[12], lines[1], lines[13]],
        });
        let bytes = format!("{}\n{batch}\n", lines[3]);
        let c = run(k8s_audit, bytes.as_bytes());
        assert_eq!(c.problems, vec![]);
        let mut forbidden = want[2].clone();
        forbidden.locator = "line 1".into();
        let mut list = want[0].clone();
        list.locator = "line 2 items[1]".into();
        let mut watch = want[7].clone();
        watch.locator = "line 2 items[2]".into();
        assert_events(&c.events, &[forbidden, list, watch]);

        // Lines whose first is cut are still lines.
        let mut cut = b"{\"kind\":\"Event\",\n".to_vec();
        cut.extend(fixture("audit.jsonl"));
        let c = run(k8s_audit, &cut);
        assert_eq!(c.events.len(), want.len());
        assert_eq!(c.events[0].locator, "line 3");
        assert_eq!(c.problems.len(), 4);
        assert_eq!(c.problems[0].locator, "line 1");

        let c = run(k8s_audit, b"{\"kind\": \"EventList\",\n \"items\": [\n");
        assert_eq!(c.events, vec![]);
        assert_eq!(c.problems.len(), 1);
        assert_eq!(c.problems[0].locator, "line 3");
        assert!(
            c.problems[0]
                .message
                .starts_with("a JSON document that is damaged or cut")
        );
    }

    fn audit_event(id: &str, stage: &str, received: &str, at: &str) -> Value {
        serde_json::json!({
            "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata",
            "auditID": id, "stage": stage, "verb": "get",
            "requestURI": "/api/v1/namespaces/default/pods/x",
            "user": {"username": "bob"}, "sourceIPs": ["192.0.2.1"],
            "objectRef": {"resource": "pods", "namespace": "default", "name": "x", "apiVersion": "v1"},
            "requestReceivedTimestamp": received, "stageTimestamp": at,
        })
    }

    #[test]
    fn stages_fold_by_request_not_by_audit_id_alone() {
        let t0 = "2024-06-01T09:00:00.000001Z";
        let t1 = "2024-06-01T09:00:01.000001Z";
        let t2 = "2024-06-01T09:00:02.000001Z";
        let lines = [
            // A request that completes.
            audit_event("same", "RequestReceived", t0, t0),
            audit_event("same", "ResponseComplete", t0, t1),
            // Another with the client's choice of the same auditID: not hidden.
            audit_event("same", "RequestReceived", t2, t2),
            // A stage after its request's completion: counted once.
            audit_event("same", "RequestReceived", t0, t0),
        ];
        let text: Vec<String> = lines.iter().map(Value::to_string).collect();
        let c = run(k8s_audit, text.join("\n").as_bytes());
        let got: Vec<(&str, Option<&str>, Option<&str>)> = c
            .events
            .iter()
            .map(|e| {
                (
                    e.locator.as_str(),
                    e.attribute("stage"),
                    e.attribute("earlier_stages"),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("line 2", Some("ResponseComplete"), Some("RequestReceived")),
                ("line 3", Some("RequestReceived"), None)
            ]
        );
        assert_eq!(c.events[1].outcome, None);
        assert_eq!(c.events[1].time_us, time_us(t2).unwrap());
        assert!(c.events[1].message.ends_with(
            "from 192.0.2.1: no response (not completed in this log: last stage RequestReceived)"
        ));
        assert_eq!(c.problems.len(), 1);
        assert_eq!(c.problems[0].locator, "line 4");
        assert!(
            c.problems[0]
                .message
                .starts_with("1 RequestReceived or ResponseStarted")
        );

        // A panic is a failure even without a response; v1beta1 reads; other
        // versions do not; the received time stands in for a missing stage time.
        let mut panic = audit_event("p", "Panic", t0, t1);
        panic["apiVersion"] = "audit.k8s.io/v1beta1".into();
        let mut v2 = audit_event("v", "ResponseComplete", t0, t1);
        v2["apiVersion"] = "audit.k8s.io/v2".into();
        let mut untimed = audit_event("u", "ResponseComplete", t0, t1);
        untimed.as_object_mut().unwrap().remove("stageTimestamp");
        let text = format!("{panic}\n{v2}\n{untimed}\n");
        let c = run(k8s_audit, text.as_bytes());
        assert_eq!(c.events.len(), 2);
        assert_eq!(c.events[0].outcome.as_deref(), Some("failure"));
        assert_eq!(c.events[0].attribute("stage"), Some("Panic"));
        assert_eq!(c.events[1].time_us, time_us(t0).unwrap());
        assert_eq!(
            c.events[1].record_id.as_deref(),
            Some("u ResponseComplete -")
        );
        assert_eq!(c.problems.len(), 1);
        assert_eq!(
            c.problems[0].message,
            "not an audit Event: kind \"Event\", apiVersion \"audit.k8s.io/v2\"; skipped"
        );
    }

    #[test]
    fn hostile_text_is_escaped_and_cut() {
        let mut e = audit_event(
            "h",
            "ResponseComplete",
            "2024-06-01T09:00:00Z",
            "2024-06-01T09:00:00Z",
        );
        e["user"]["username"] = "eve\u{1b}[2J\n".into();
        e["objectRef"]["resource"] = "x".repeat(1000).into();
        e["user"]["groups"] = (0..200).map(|i| format!("g{i}")).collect::<Vec<_>>().into();
        let c = run(k8s_audit, e.to_string().as_bytes());
        let ev = &c.events[0];
        assert_eq!(ev.actor.as_deref(), Some("eve\\u{1b}[2J\\n"));
        assert_eq!(
            ev.action,
            format!("k8s:get {}… (744 more bytes)", "x".repeat(NAME_MAX))
        );
        let groups = ev.attribute("groups").unwrap();
        assert!(groups.starts_with("g0, g1, "));
        assert!(groups.ends_with(", g63, … (136 more)"), "{groups}");
        assert!(!ev.message.contains('\u{1b}'));
    }

    #[test]
    fn searching_by_action_finds_the_exec_and_the_secret_reads() {
        let dir = tempfile::tempdir().unwrap();
        let mut tl = Timeline::open(&dir.path().join("t.sqlite")).unwrap();
        let mut l = tl.loader("a1", Format::K8sAudit.name(), None).unwrap();
        parse_file(Format::K8sAudit, "", &fixture("audit.jsonl"), 2024, &mut l);
        let r = l.finish("now").unwrap();
        assert_eq!((r.events, r.problems), (8, 3));
        // The same records through CloudWatch are the same records.
        let mut l = tl
            .loader("a2", Format::EksAuditCloudwatch.name(), None)
            .unwrap();
        let cw = fixture("eks-audit-cloudwatch.jsonl");
        parse_file(Format::EksAuditCloudwatch, "", &cw, 2024, &mut l);
        let r = l.finish("now").unwrap();
        assert_eq!((r.events, r.duplicates), (0, 8));

        let found = |q: &str| -> Vec<(String, String)> {
            tl.rows(&Query::parse(q).unwrap(), 100, 0)
                .unwrap()
                .into_iter()
                .map(|r| (r.action, r.locator))
                .collect()
        };
        let row = |a: &str, l: &str| (a.to_owned(), l.to_owned());
        assert_eq!(
            found(r#"action:"k8s:create pods/exec""#),
            [row("k8s:create pods/exec", "line 3")]
        );
        assert_eq!(
            found("action:*pods/exec"),
            [row("k8s:create pods/exec", "line 3")]
        );
        let reads = [
            row("k8s:list secrets", "line 2"),
            row("k8s:get secrets", "line 4"),
            row("k8s:watch secrets", "line 14"),
        ];
        assert_eq!(
            found(
                r#"action:"k8s:get secrets" action:"k8s:list secrets" action:"k8s:watch secrets""#
            ),
            reads
        );
        assert_eq!(found("action:*secrets"), reads);
        assert_eq!(
            found(r#"action:"K8S:CREATE clusterrolebindings""#),
            [row("k8s:create clusterrolebindings", "line 7")]
        );
        assert_eq!(
            found("action:*serviceaccounts/token"),
            [row("k8s:create serviceaccounts/token", "line 10")]
        );
        assert_eq!(
            found("source:k8s_audit outcome:failure"),
            [row("k8s:get secrets", "line 4")]
        );
        assert_eq!(
            found("impersonating"),
            [row("k8s:patch configmaps", "line 5")]
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]
        #[test]
        fn mutated_logs_never_panic(
            which in 0usize..3,
            cut in 0usize..4000,
            edits in prop::collection::vec((any::<usize>(), any::<u8>()), 1..40),
        ) {
            let (name, format) = [
                ("audit.jsonl", Format::K8sAudit),
                ("audit-eventlist.json", Format::K8sAudit),
                ("eks-audit-cloudwatch.jsonl", Format::EksAuditCloudwatch),
            ][which];
            let mut b = fixture(name);
            let len = b.len();
            for (at, v) in edits {
                b[at % len] = v;
            }
            b.truncate(len - cut.min(len));
            let started = std::time::Instant::now();
            let mut c = Collect::default();
            parse_file(format, "", &b, 2024, &mut c);
            prop_assert!(started.elapsed() < std::time::Duration::from_secs(1));
        }
    }
}
