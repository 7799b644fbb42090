//! Alert adapters: what a detection tool sends, turned into one [`Alert`].
//!
//! Each sender has its own format; an adapter reads it and extracts the
//! entities to act on (instances, accounts, regions, IP addresses, user
//! principals) and to join cases by. Input comes from outside, so nothing
//! here trusts it: every field is type-checked with its path, every entity is
//! validated (an invalid one is an error naming the field, never dropped),
//! and the number of findings and entities is bounded by [`Limits`].
//!
//! | source | what it reads |
//! |---|---|
//! | `guardduty` | an Amazon GuardDuty finding as EventBridge delivers it (`detail-type: "GuardDuty Finding"`), or the bare finding |
//! | `securityhub` | an EventBridge `Security Hub Findings - Imported` event: `detail.findings[]` in ASFF |
//! | `generic` | custody's own alert format, documented in `examples/alerts/README.md` |
//!
//! All three read through `json`: untrusted JSON walked with the path of
//! every value at hand, so a wrong shape is reported where it is
//! (`detail.findings[1].Resources[0].Id`).
//!
//! Severity is normalised to 0.0–10.0 and labelled by the thresholds
//! GuardDuty and ASFF share (see [`SeverityLabel::from_score`]).

mod generic;
mod guardduty;
mod json;
mod securityhub;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Who sent an alert, and so which adapter reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertSource {
    Guardduty,
    Securityhub,
    Generic,
}

impl AlertSource {
    pub const ALL: [AlertSource; 3] = [Self::Guardduty, Self::Securityhub, Self::Generic];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Guardduty => "guardduty",
            Self::Securityhub => "securityhub",
            Self::Generic => "generic",
        }
    }
}

impl fmt::Display for AlertSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AlertSource {
    type Err = AlertError;
    fn from_str(s: &str) -> Result<Self, AlertError> {
        Self::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| AlertError::UnknownSource { name: clip(s) })
    }
}

/// A severity band.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SeverityLabel {
    Low,
    Medium,
    High,
    Critical,
}

impl SeverityLabel {
    /// The band of a 0.0–10.0 score: critical from 9.0, high from 7.0,
    /// medium from 4.0, low below. These are GuardDuty's bands, and ASFF's
    /// (0–100) divided by ten, so both senders label alike.
    pub fn from_score(score: f64) -> Self {
        if score >= 9.0 {
            Self::Critical
        } else if score >= 7.0 {
            Self::High
        } else if score >= 4.0 {
            Self::Medium
        } else {
            Self::Low
        }
    }

    /// The score a bare label stands for: the bottom of its band, as
    /// Security Hub fills `Normalized` from `Label` (LOW 1, MEDIUM 40, ...).
    pub fn floor(self) -> f64 {
        match self {
            Self::Low => 1.0,
            Self::Medium => 4.0,
            Self::High => 7.0,
            Self::Critical => 9.0,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
            Self::Critical => "critical",
        }
    }
}

impl fmt::Display for SeverityLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an alert names: the things to act on and to join cases by. Each list
/// is sorted and free of duplicates; every value has been validated.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Entities {
    /// EC2 instance ids (`i-` and 8 or 17 hex digits).
    pub instances: Vec<String>,
    /// 12-digit AWS account ids.
    pub accounts: Vec<String>,
    /// AWS region names (`us-east-1`).
    pub regions: Vec<String>,
    pub ips: Vec<IpAddr>,
    /// IAM user names and principal ids.
    pub principals: Vec<String>,
    /// Lambda functions: names or ARNs.
    pub functions: Vec<String>,
    /// ECS task ARNs (`arn:aws:ecs:REGION:ACCOUNT:task/CLUSTER/ID`).
    pub tasks: Vec<String>,
    /// EKS cluster names.
    pub clusters: Vec<String>,
    /// EBS snapshots a scanner kept (GuardDuty Malware Protection).
    pub snapshots: Vec<String>,
    /// Container ids a runtime monitor named (GuardDuty Runtime Monitoring's
    /// `containerDetails`): acted on through their node, joined by id.
    pub containers: Vec<String>,
}

impl Entities {
    pub fn len(&self) -> usize {
        self.instances.len()
            + self.accounts.len()
            + self.regions.len()
            + self.ips.len()
            + self.principals.len()
            + self.functions.len()
            + self.tasks.len()
            + self.clusters.len()
            + self.snapshots.len()
            + self.containers.len()
    }

    /// Whether it names something custody can act on.
    pub fn has_workloads(&self) -> bool {
        !(self.instances.is_empty()
            && self.functions.is_empty()
            && self.tasks.is_empty()
            && self.clusters.is_empty()
            && self.snapshots.is_empty())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Keys alerts sharing an entity join a case by: `instance:i-…`,
    /// `ip:…`, `principal:…`. Accounts and regions are left out: nearly
    /// every alert shares them, so they would fold everything into one case.
    pub fn join_keys(&self) -> Vec<String> {
        let instances = self.instances.iter().map(|i| format!("instance:{i}"));
        let ips = self.ips.iter().map(|i| format!("ip:{i}"));
        let principals = self.principals.iter().map(|p| format!("principal:{p}"));
        let functions = self.functions.iter().map(|f| format!("function:{f}"));
        let tasks = self.tasks.iter().map(|t| format!("task:{t}"));
        let clusters = self.clusters.iter().map(|c| format!("cluster:{c}"));
        let snapshots = self.snapshots.iter().map(|s| format!("snapshot:{s}"));
        let containers = self.containers.iter().map(|c| format!("container:{c}"));
        instances
            .chain(ips)
            .chain(principals)
            .chain(functions)
            .chain(tasks)
            .chain(clusters)
            .chain(snapshots)
            .chain(containers)
            .collect()
    }
}

/// One alert, whatever sent it. Stored in the durable queue, so it
/// round-trips through serde unchanged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub source: AlertSource,
    /// The sender's alert or finding id; with `source`, the de-duplication key.
    pub id: String,
    /// When the sender last saw the activity (UTC).
    #[serde(with = "time::serde::rfc3339")]
    pub time: OffsetDateTime,
    /// 0.0–10.0.
    pub severity: f64,
    pub severity_label: SeverityLabel,
    pub title: String,
    /// GuardDuty `type` (`UnauthorizedAccess:EC2/SSHBruteForce`), ASFF `Types[0]`.
    pub finding_type: Option<String>,
    /// GuardDuty `resource.resourceType` (`Instance`), ASFF `Resources[0].Type`.
    pub resource_type: Option<String>,
    pub account: Option<String>,
    pub region: Option<String>,
    /// The affected resource's tags (`custody:exempt`).
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    #[serde(default)]
    pub entities: Entities,
}

/// Bounds on what one request may ask of custody.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Entities in one alert, all kinds together.
    pub max_entities: usize,
    /// Findings in one request (Security Hub events carry a list).
    pub max_findings: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            // Far above any real finding (GuardDuty names one resource and a
            // handful of addresses) while keeping a hostile list from
            // becoming thousands of jobs or case joins.
            max_entities: 256,
            // Security Hub sends one finding per event; a batching forwarder
            // may send more, but 100 is ASFF's BatchImportFindings limit.
            max_findings: 100,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AlertError {
    #[error("unknown alert source {name:?}; known sources: guardduty, securityhub, generic")]
    UnknownSource { name: String },
    #[error("{adapter} alert is not valid JSON at line {line}, column {column}: {reason}")]
    MalformedJson {
        adapter: AlertSource,
        line: usize,
        column: usize,
        reason: String,
    },
    #[error("{adapter} alert has the wrong shape at {path}: {problem}")]
    WrongShape {
        adapter: AlertSource,
        path: String,
        problem: String,
    },
    #[error(
        "{adapter} alert: expected an EventBridge event with detail-type {expected:?}, got {found:?}"
    )]
    WrongEventType {
        adapter: AlertSource,
        expected: &'static str,
        found: String,
    },
    #[error("{adapter} event carries {count} findings, more than the limit of {limit}")]
    TooManyFindings {
        adapter: AlertSource,
        count: usize,
        limit: usize,
    },
    #[error("{adapter} alert {id:?} names more than {limit} entities (the limit)")]
    TooManyEntities {
        adapter: AlertSource,
        id: String,
        limit: usize,
    },
    #[error("{adapter} alert: {path} {value:?} is not a usable alert id: {reason}")]
    InvalidId {
        adapter: AlertSource,
        path: String,
        value: String,
        reason: &'static str,
    },
    #[error("{adapter} alert: {path} {value:?} is not an RFC 3339 time: {reason}")]
    InvalidTime {
        adapter: AlertSource,
        path: String,
        value: String,
        reason: String,
    },
    #[error("{adapter} alert: {path} {value} is not {expected}")]
    InvalidSeverity {
        adapter: AlertSource,
        path: String,
        value: String,
        expected: &'static str,
    },
    #[error("{adapter} alert: {path} {value:?} is not {expected}")]
    InvalidEntity {
        adapter: AlertSource,
        path: String,
        value: String,
        expected: &'static str,
    },
}

impl AlertError {
    /// A short, stable name for the kind of error: a metrics label.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::UnknownSource { .. } => "unknown_source",
            Self::MalformedJson { .. } => "malformed_json",
            Self::WrongShape { .. } => "wrong_shape",
            Self::WrongEventType { .. } => "wrong_event_type",
            Self::TooManyFindings { .. } => "too_many_findings",
            Self::TooManyEntities { .. } => "too_many_entities",
            Self::InvalidId { .. } => "invalid_id",
            Self::InvalidTime { .. } => "invalid_time",
            Self::InvalidSeverity { .. } => "invalid_severity",
            Self::InvalidEntity { .. } => "invalid_entity",
        }
    }
}

/// Reads one request body from `source` into its alerts (a Security Hub
/// event can carry several findings, so a list; never empty on success).
pub fn parse(source: &str, body: &[u8], limits: &Limits) -> Result<Vec<Alert>, AlertError> {
    let adapter: AlertSource = source.parse()?;
    let doc: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| malformed(adapter, &e))?;
    let root = json::Node::root(adapter, &doc);
    match adapter {
        AlertSource::Guardduty => guardduty::parse(&root, limits).map(|a| vec![a]),
        AlertSource::Securityhub => securityhub::parse(&root, limits),
        AlertSource::Generic => generic::parse(&root, limits).map(|a| vec![a]),
    }
}

fn malformed(adapter: AlertSource, e: &serde_json::Error) -> AlertError {
    let text = e.to_string();
    // serde_json appends the position; it has its own fields here.
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    let reason = text.strip_suffix(&suffix).unwrap_or(&text).to_owned();
    AlertError::MalformedJson {
        adapter,
        line: e.line(),
        column: e.column(),
        reason,
    }
}

/// Longest piece of a rejected value echoed in an error: enough to
/// recognise it, never the whole of a hostile megabyte.
const MAX_ECHO: usize = 80;

fn clip(s: &str) -> String {
    match s.char_indices().nth(MAX_ECHO) {
        Some((cut, _)) => s.get(..cut).map_or_else(String::new, |h| format!("{h}…")),
        None => s.to_owned(),
    }
}

/// Longest alert id: ASFF ids are ARNs of up to 512 characters.
const MAX_ID_LEN: usize = 512;

fn alert_id(node: &json::Node<'_>) -> Result<String, AlertError> {
    let id = node.as_str()?;
    let reason = if id.trim().is_empty() {
        Some("it is empty")
    } else if id.len() > MAX_ID_LEN {
        Some("it is longer than 512 bytes")
    } else if id.chars().any(char::is_control) {
        Some("it contains control characters")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(AlertError::InvalidId {
            adapter: node.adapter(),
            path: node.path(),
            value: clip(id),
            reason,
        }),
        None => Ok(id.to_owned()),
    }
}

/// An RFC 3339 time, in UTC.
fn rfc3339(node: &json::Node<'_>) -> Result<OffsetDateTime, AlertError> {
    let text = node.as_str()?;
    let bad = |reason: String| AlertError::InvalidTime {
        adapter: node.adapter(),
        path: node.path(),
        value: clip(text),
        reason,
    };
    let t = OffsetDateTime::parse(text, &Rfc3339).map_err(|e| bad(e.to_string()))?;
    let utc = t
        .checked_to_offset(time::UtcOffset::UTC)
        .ok_or_else(|| bad("it is out of range in UTC".into()))?;
    // The queue stores it as RFC 3339 again: refuse what cannot be written
    // back (a year pushed outside 0000–9999 by the offset).
    utc.format(&Rfc3339)
        .map_err(|_| bad("it is out of range in UTC".into()))?;
    Ok(utc)
}

/// A score on a 0..=`max` scale, returned on 0.0–10.0.
fn score(node: &json::Node<'_>, max: f64, expected: &'static str) -> Result<f64, AlertError> {
    let n = node.as_f64()?;
    if n.is_finite() && (0.0..=max).contains(&n) {
        Ok(n * 10.0 / max)
    } else {
        Err(AlertError::InvalidSeverity {
            adapter: node.adapter(),
            path: node.path(),
            value: n.to_string(),
            expected,
        })
    }
}

/// Collects entities, validating each as it comes and stopping as soon as
/// the limit is passed, so a hostile list costs no more than the limit.
struct EntitySet {
    adapter: AlertSource,
    id: String,
    limit: usize,
    instances: BTreeSet<String>,
    accounts: BTreeSet<String>,
    regions: BTreeSet<String>,
    ips: BTreeSet<IpAddr>,
    principals: BTreeSet<String>,
    functions: BTreeSet<String>,
    tasks: BTreeSet<String>,
    clusters: BTreeSet<String>,
    snapshots: BTreeSet<String>,
    containers: BTreeSet<String>,
}

impl EntitySet {
    fn new(adapter: AlertSource, id: &str, limits: &Limits) -> Self {
        Self {
            adapter,
            id: id.to_owned(),
            limit: limits.max_entities,
            instances: BTreeSet::new(),
            accounts: BTreeSet::new(),
            regions: BTreeSet::new(),
            ips: BTreeSet::new(),
            principals: BTreeSet::new(),
            functions: BTreeSet::new(),
            tasks: BTreeSet::new(),
            clusters: BTreeSet::new(),
            snapshots: BTreeSet::new(),
            containers: BTreeSet::new(),
        }
    }

    fn count(&self) -> usize {
        self.instances.len()
            + self.accounts.len()
            + self.regions.len()
            + self.ips.len()
            + self.principals.len()
            + self.functions.len()
            + self.tasks.len()
            + self.clusters.len()
            + self.snapshots.len()
            + self.containers.len()
    }

    /// A workload entity, checked by `valid`.
    fn workload(
        &mut self,
        path: &str,
        v: &str,
        valid: fn(&str) -> bool,
        expected: &'static str,
        pick: fn(&mut Self) -> &mut BTreeSet<String>,
    ) -> Result<(), AlertError> {
        if !valid(v) {
            return Err(self.invalid(path, v, expected));
        }
        pick(self).insert(v.to_owned());
        self.check_limit()
    }

    fn check_limit(&self) -> Result<(), AlertError> {
        if self.count() > self.limit {
            return Err(AlertError::TooManyEntities {
                adapter: self.adapter,
                id: clip(&self.id),
                limit: self.limit,
            });
        }
        Ok(())
    }

    fn invalid(&self, path: &str, value: &str, expected: &'static str) -> AlertError {
        AlertError::InvalidEntity {
            adapter: self.adapter,
            path: path.to_owned(),
            value: clip(value),
            expected,
        }
    }

    fn instance(&mut self, path: &str, v: &str) -> Result<(), AlertError> {
        if !is_instance_id(v) {
            return Err(self.invalid(path, v, INSTANCE_ID));
        }
        self.instances.insert(v.to_owned());
        self.check_limit()
    }

    fn account(&mut self, path: &str, v: &str) -> Result<(), AlertError> {
        if !is_account_id(v) {
            return Err(self.invalid(path, v, ACCOUNT_ID));
        }
        self.accounts.insert(v.to_owned());
        self.check_limit()
    }

    fn region(&mut self, path: &str, v: &str) -> Result<(), AlertError> {
        if !is_region(v) {
            return Err(self.invalid(path, v, REGION));
        }
        self.regions.insert(v.to_owned());
        self.check_limit()
    }

    fn ip(&mut self, path: &str, v: &str) -> Result<(), AlertError> {
        let ip: IpAddr = v.parse().map_err(|_| self.invalid(path, v, IP))?;
        self.ips.insert(ip);
        self.check_limit()
    }

    fn container(&mut self, path: &str, v: &str) -> Result<(), AlertError> {
        self.workload(path, v, is_container_id, CONTAINER, |s| &mut s.containers)
    }

    fn cluster(&mut self, path: &str, v: &str) -> Result<(), AlertError> {
        self.workload(path, v, is_cluster_name, CLUSTER, |s| &mut s.clusters)
    }

    fn principal(&mut self, path: &str, v: &str) -> Result<(), AlertError> {
        if !is_principal(v) {
            return Err(self.invalid(path, v, PRINCIPAL));
        }
        self.principals.insert(v.to_owned());
        self.check_limit()
    }

    /// `kind` at `node` when present; an empty string counts as absent
    /// (senders write `""` for "none"), anything else must be valid.
    fn add(&mut self, kind: Kind, node: Option<json::Node<'_>>) -> Result<(), AlertError> {
        let Some(node) = node else { return Ok(()) };
        let v = node.as_str()?;
        if v.is_empty() {
            return Ok(());
        }
        let path = node.path();
        match kind {
            Kind::Instance => self.instance(&path, v),
            Kind::Account => self.account(&path, v),
            Kind::Region => self.region(&path, v),
            Kind::Ip => self.ip(&path, v),
            Kind::Principal => self.principal(&path, v),
            Kind::Function => self.workload(&path, v, is_function, FUNCTION, |s| &mut s.functions),
            Kind::Task => self.workload(&path, v, is_task_arn, TASK, |s| &mut s.tasks),
            Kind::Cluster => self.workload(&path, v, is_cluster_name, CLUSTER, |s| &mut s.clusters),
            Kind::Snapshot => {
                // A snapshot ARN (`…:snapshot/snap-…`) names its id last.
                let id = v.rsplit('/').next().unwrap_or(v);
                self.workload(&path, id, is_snapshot_id, SNAPSHOT, |s| &mut s.snapshots)
            }
            Kind::Container => {
                self.workload(&path, v, is_container_id, CONTAINER, |s| &mut s.containers)
            }
        }
    }

    /// Every string of an optional array at `node`.
    fn add_all(&mut self, kind: Kind, node: Option<json::Node<'_>>) -> Result<(), AlertError> {
        let Some(node) = node else { return Ok(()) };
        for item in node.items()? {
            self.add(kind, Some(item))?;
        }
        Ok(())
    }

    fn finish(self) -> Entities {
        Entities {
            instances: self.instances.into_iter().collect(),
            accounts: self.accounts.into_iter().collect(),
            regions: self.regions.into_iter().collect(),
            ips: self.ips.into_iter().collect(),
            principals: self.principals.into_iter().collect(),
            functions: self.functions.into_iter().collect(),
            tasks: self.tasks.into_iter().collect(),
            clusters: self.clusters.into_iter().collect(),
            snapshots: self.snapshots.into_iter().collect(),
            containers: self.containers.into_iter().collect(),
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Instance,
    Account,
    Region,
    Ip,
    Principal,
    Function,
    Task,
    Cluster,
    Snapshot,
    Container,
}

const INSTANCE_ID: &str = "an EC2 instance id (i- and 8 or 17 lowercase hex digits)";
const ACCOUNT_ID: &str = "an AWS account id (12 digits)";
const REGION: &str = "an AWS region name (like us-east-1)";
const IP: &str = "an IPv4 or IPv6 address";
const PRINCIPAL: &str = "a principal name (1 to 512 characters, no control characters)";
const FUNCTION: &str = "a Lambda function name (1 to 64 of A-Z a-z 0-9 - _) or ARN";
const TASK: &str = "an ECS task ARN (arn:aws:ecs:REGION:ACCOUNT:task/CLUSTER/ID)";
const CLUSTER: &str = "a cluster name (1 to 100 of A-Z a-z 0-9 - _, a letter or digit first)";
const SNAPSHOT: &str = "an EBS snapshot id (snap- and 8 or 17 lowercase hex digits) or ARN";
const CONTAINER: &str = "a container id (1 to 128 of A-Z a-z 0-9 - _ ., a letter or digit first)";

fn is_name(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// `arn:PARTITION:SERVICE:REGION:ACCOUNT:REST` with a known partition,
/// region and account: the rest.
fn arn_rest<'a>(s: &'a str, service: &str) -> Option<&'a str> {
    let mut p = s.splitn(6, ':');
    let (arn, partition, svc, region, account, rest) = (
        p.next()?,
        p.next()?,
        p.next()?,
        p.next()?,
        p.next()?,
        p.next()?,
    );
    (arn == "arn"
        && partition.starts_with("aws")
        && svc == service
        && is_region(region)
        && is_account_id(account))
    .then_some(rest)
}

/// A Lambda function's name, or its ARN (a version or alias after it too).
pub fn is_function(s: &str) -> bool {
    match arn_rest(s, "lambda") {
        Some(rest) => rest.strip_prefix("function:").is_some_and(|f| {
            let mut parts = f.splitn(2, ':');
            parts.next().is_some_and(|n| is_name(n, 64))
                && parts
                    .next()
                    .is_none_or(|q| is_name(q.trim_start_matches('$'), 128))
        }),
        None => is_name(s, 64),
    }
}

/// An ECS task ARN of the long form, which names its cluster.
pub fn is_task_arn(s: &str) -> bool {
    arn_rest(s, "ecs")
        .and_then(|r| r.strip_prefix("task/"))
        .and_then(|r| r.split_once('/'))
        .is_some_and(|(cluster, id)| is_name(cluster, 255) && is_name(id, 64))
}

/// The cluster of a long-form ECS task ARN.
pub fn task_cluster(arn: &str) -> Option<&str> {
    arn_rest(arn, "ecs")?
        .strip_prefix("task/")?
        .split_once('/')
        .map(|(c, _)| c)
}

fn is_cluster_name(s: &str) -> bool {
    is_name(s, 100) && s.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
}

/// A runtime's container id: Docker's and containerd's 64 hex digits,
/// ECS's `TASKID-NUMBER`, or another runtime's token of the same alphabet.
fn is_container_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn is_snapshot_id(s: &str) -> bool {
    s.strip_prefix("snap-").is_some_and(|hex| {
        matches!(hex.len(), 8 | 17)
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// `i-` and 8 or 17 lowercase hex digits: an EC2 instance id's shape, for
/// alerts and for the engine's requests alike.
pub fn is_instance_id(s: &str) -> bool {
    s.strip_prefix("i-").is_some_and(|hex| {
        matches!(hex.len(), 8 | 17)
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

fn is_account_id(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

/// `us-east-1`, `us-gov-west-1`, `ap-southeast-5`: a two-letter area, one or
/// more lowercase words, a number.
fn is_region(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    match parts.as_slice() {
        [area, words @ .., number] if !words.is_empty() => {
            area.len() == 2
                && area.bytes().all(|b| b.is_ascii_lowercase())
                && words
                    .iter()
                    .all(|w| !w.is_empty() && w.bytes().all(|b| b.is_ascii_lowercase()))
                && (1..=2).contains(&number.len())
                && number.bytes().all(|b| b.is_ascii_digit())
        }
        _ => false,
    }
}

/// Longest principal: IAM principal ids with a role session name stay well
/// under this; anything longer is not a principal.
const MAX_PRINCIPAL_LEN: usize = 512;

fn is_principal(s: &str) -> bool {
    !s.trim().is_empty() && s.len() <= MAX_PRINCIPAL_LEN && !s.chars().any(char::is_control)
}

/// The first of `nodes` that holds a non-empty string (a sender's own field
/// before the envelope's, say); a value of the wrong type is an error.
fn first_present<'a>(
    nodes: impl IntoIterator<Item = Option<json::Node<'a>>>,
) -> Result<Option<json::Node<'a>>, AlertError> {
    for node in nodes.into_iter().flatten() {
        if !node.as_str()?.is_empty() {
            return Ok(Some(node));
        }
    }
    Ok(None)
}

/// The account or region an alert is about: recorded on the alert and among
/// its entities, validated as one.
fn scope(
    entities: &mut EntitySet,
    kind: Kind,
    node: Option<json::Node<'_>>,
) -> Result<Option<String>, AlertError> {
    let Some(node) = node else { return Ok(None) };
    entities.add(kind, Some(node.clone()))?;
    Ok(Some(node.as_str()?.to_owned()))
}
