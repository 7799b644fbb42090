//! Log formats, each read from the original bytes of an artefact.
//!
//! A parser never stops at a bad record: it reports a [`Problem`] with the
//! record's place and goes on, so a truncated or corrupt file still yields
//! every event before and after the damage.
//!
//! - [`aws`]: CloudTrail log files, VPC flow logs (S3 files and CloudWatch
//!   Logs messages), S3 server access logs.
//! - [`microsoft`]: Azure Activity Log, Entra ID sign-in and audit logs,
//!   the Microsoft 365 Unified Audit Log (Purview CSV and JSON lines).
//! - [`sentinel`]: the same Microsoft and AWS records as exported from
//!   Microsoft Sentinel / Log Analytics tables (`SigninLogs`, `AuditLogs`,
//!   `OfficeActivity`, `AzureActivity`, `AWSCloudTrail`), CSV or JSON.
//! - [`k8s`]: Kubernetes API server audit logs (the log backend's Events,
//!   EKS's through CloudWatch Logs).
//! - [`gcp`]: Google Cloud Audit Logs, LogEntry JSON as `gcloud logging
//!   read`, the Logs Explorer or a log sink to Cloud Storage writes it (with
//!   the other logs of the same export).
//! - [`host`]: text logs of the host triage bundle (auth.log, secure, syslog),
//!   RFC 3164 and RFC 5424 lines.
//! - [`yearless`]: the years of timestamps that carry none.
//! - [`journal`]: systemd journal files, in their binary format.
//! - [`utmp`]: `utmp`, `wtmp`, `btmp` and `lastlog`.
//! - [`linux`]: what a responder reads first on a Linux disk besides its
//!   logs: shell histories, crontabs, systemd units and timers,
//!   `authorized_keys`, users, groups, sudoers, package logs, cloud-init.
//! - [`evtx`]: Windows event logs.
//! - [`bodyfile`]: TSK bodyfiles, a file system's timeline (`fs` rows).
//! - [`alert`]: an alert as the webhook server accepted it.

pub mod alert;
pub mod aws;
pub mod bodyfile;
pub mod evtx;
pub mod gcp;
pub mod host;
pub mod journal;
pub mod k8s;
pub mod linux;
pub mod microsoft;
pub mod sentinel;
pub mod utmp;
pub mod yearless;

use std::io::Read;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::{Event, Problem};
/// Kept outside the timeline: the settings read it in every build.
pub use crate::inflate::InflateLimits;

/// Where parsed records go.
///
/// Parsers hand over each record through [`Sink::record`]: the event and
/// the record as the source wrote it ([`Record`]). Its default sets the
/// event's content digest (for events with a record id, by which the
/// timeline tells a duplicate from another record under the same id) and
/// passes the event to [`Sink::event`]; a sink that reads the records
/// themselves (a detection engine reading [`Record::json`]) implements it.
pub trait Sink {
    fn event(&mut self, event: Event);
    fn problem(&mut self, problem: Problem);
    /// One record and its event.
    fn record(&mut self, mut event: Event, raw: Record<'_>) {
        if event.record_id.is_some() && event.content.is_none() {
            event.content = Some(raw.digest());
        }
        self.event(event);
    }
    /// How far compressed input may expand on its way to this sink. It
    /// travels with the sink so that parsers of containers (a host bundle)
    /// hand it on to their members' parsers.
    fn inflate_limits(&self) -> InflateLimits {
        InflateLimits::DEFAULT
    }
}

/// A record as its source wrote it, handed to the sink with its event.
///
/// `bytes` are the record's own bytes in the (decompressed) file: a JSON
/// object of a CloudTrail file, a line, a CSV row (for the Unified Audit
/// Log's CSV, the AuditData cell, which is the record), a binary entry.
/// `json` is the record as JSON wherever the parser read it as such; for
/// exports that reshape a native record (Sentinel's tables) it carries the
/// native record's field names (`eventName`, `userIdentity.arn`) beside the
/// export's own columns. Line, CSV and binary formats pass `None`.
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    pub bytes: &'a [u8],
    pub json: Option<&'a serde_json::Value>,
}

impl<'a> Record<'a> {
    /// A record that is a line, a row or a binary entry.
    pub fn bytes(bytes: &'a [u8]) -> Self {
        Self { bytes, json: None }
    }

    /// A JSON record: its bytes in the file and its parsed value. A record
    /// rebuilt from parts, with no bytes of its own to point at, passes
    /// empty bytes: its value's serialisation is then what is digested.
    pub fn json(bytes: &'a [u8], json: &'a serde_json::Value) -> Self {
        Self {
            bytes,
            json: Some(json),
        }
    }

    /// The content digest: the first 8 bytes of the SHA-256 of `bytes` (of
    /// `json` serialised when there are none), as the timeline stores it.
    /// Byte for byte: the same record pretty-printed is other content.
    pub fn digest(&self) -> i64 {
        use sha2::Digest as _;
        let mut h = sha2::Sha256::new();
        match self.json {
            Some(v) if self.bytes.is_empty() => {
                // Serialising a Value into a hasher cannot fail.
                let _ = serde_json::to_writer(HashWriter(&mut h), v);
            }
            _ => h.update(self.bytes),
        }
        let d = h.finalize();
        d.first_chunk::<8>().map_or(0, |b| i64::from_be_bytes(*b))
    }
}

/// Feeds what is written into a SHA-256.
struct HashWriter<'a>(&'a mut sha2::Sha256);

impl std::io::Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        sha2::Digest::update(self.0, buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Collects everything, for tests and small files.
#[derive(Debug, Default)]
pub struct Collect {
    pub events: Vec<Event>,
    pub problems: Vec<Problem>,
    pub limits: InflateLimits,
}

impl Sink for Collect {
    fn event(&mut self, event: Event) {
        self.events.push(event);
    }
    fn problem(&mut self, problem: Problem) {
        self.problems.push(problem);
    }
    fn inflate_limits(&self) -> InflateLimits {
        self.limits
    }
}

/// The formats custody reads. The name is what `--format` takes and what an
/// artefact records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
#[clap(rename_all = "kebab-case")]
pub enum Format {
    /// CloudTrail log files (`{"Records": [...]}`, gzip or not), from a trail's bucket.
    Cloudtrail,
    /// CloudTrail LookupEvents results: one event per line, as collected.
    CloudtrailLookup,
    /// VPC flow logs as delivered to S3: a header line naming the fields, then records.
    VpcFlow,
    /// VPC flow logs from CloudWatch Logs: one JSON line per log event, the
    /// record in its `message` in the default field order.
    VpcFlowCloudwatch,
    /// Any CloudWatch Logs group as custody collects it (a Lambda
    /// function's, an ECS task's `awslogs` streams): one JSON log event per
    /// line, the message as written.
    CloudwatchLogs,
    /// S3 server access logs.
    S3Access,
    /// Kubernetes API server audit log: `audit.k8s.io/v1` Events one per
    /// line (the log backend), or an `EventList`.
    K8sAudit,
    /// EKS audit logs from CloudWatch Logs (`kube-apiserver-audit-*` streams):
    /// one JSON line per log event, the audit Event in its `message`.
    EksAuditCloudwatch,
    /// Azure Activity Log export (JSON array, `{"value": [...]}` or JSON lines).
    AzureActivity,
    /// Entra ID sign-in logs (Graph `signIns` JSON, or the portal's JSON download).
    EntraSignin,
    /// Entra ID audit logs (Graph `directoryAudits` JSON).
    EntraAudit,
    /// Microsoft 365 Unified Audit Log, Purview audit search CSV export, in
    /// either header shape (`RecordId,CreationDate,RecordType,Operation,UserId,AuditData,…`
    /// or the classic `CreationDate,UserIds,Operations,AuditData`); AuditData holds the record as JSON.
    UalCsv,
    /// Microsoft 365 Unified Audit Log as JSON lines (one AuditData record per line).
    UalJsonl,
    /// Microsoft Sentinel / Log Analytics `SigninLogs` rows, exported from
    /// the portal as CSV or JSON: Entra ID sign-ins.
    SentinelSigninlogs,
    /// Sentinel `AuditLogs` rows: Entra ID audit events.
    SentinelAuditlogs,
    /// Sentinel `OfficeActivity` rows: the Microsoft 365 Unified Audit Log.
    SentinelOfficeactivity,
    /// Sentinel `AzureActivity` rows: the Azure Activity Log.
    SentinelAzureactivity,
    /// Sentinel `AWSCloudTrail` rows: CloudTrail events.
    SentinelAwscloudtrail,
    /// Google Cloud Audit Logs: LogEntry JSON as `gcloud logging read
    /// --format=json` or the Logs Explorer writes it (an array), or a log
    /// sink to Cloud Storage (one entry per line).
    GcpAudit,
    /// A host triage bundle: its text logs under `files/var/log/`.
    HostBundle,
    /// One syslog-style text log (auth.log, secure, syslog, messages).
    Syslog,
    /// A systemd journal file (`*.journal`, `*.journal~`).
    Journal,
    /// `utmp` or `wtmp` records (glibc's `struct utmp`).
    Utmp,
    /// `btmp`: failed logins, in the same records.
    Btmp,
    /// `/var/log/lastlog`: one record per uid.
    Lastlog,
    /// A bash or zsh history.
    ShellHistory,
    /// A crontab (`/etc/crontab`, `/etc/cron.d/*`, `/var/spool/cron/...`).
    Crontab,
    /// A systemd unit or timer file.
    SystemdUnit,
    /// An `authorized_keys` file.
    AuthorizedKeys,
    /// `/etc/passwd`.
    Passwd,
    /// `/etc/group`.
    Group,
    /// `/etc/sudoers` or a file of `/etc/sudoers.d`.
    Sudoers,
    /// `/var/log/dpkg.log`.
    Dpkg,
    /// dnf or yum's logs (`dnf.rpm.log`, `dnf.log`, `yum.log`).
    Dnf,
    /// cloud-init's `cloud-init.log` or `cloud-init-output.log`.
    CloudInit,
    /// A Windows event log (`.evtx`).
    Evtx,
    /// A TSK bodyfile: a file system's timeline (`fls -m`, `custody process`).
    Bodyfile,
    /// An alert as the webhook server accepted it (custody's JSON).
    Alert,
}

impl Format {
    /// The `source` field of the events this format yields.
    pub fn source(self) -> &'static str {
        match self {
            Self::Cloudtrail | Self::CloudtrailLookup | Self::SentinelAwscloudtrail => "cloudtrail",
            Self::VpcFlow | Self::VpcFlowCloudwatch => "vpc_flow",
            Self::CloudwatchLogs => "cloudwatch",
            Self::S3Access => "s3_access",
            Self::K8sAudit | Self::EksAuditCloudwatch => "k8s_audit",
            Self::AzureActivity | Self::SentinelAzureactivity => "azure_activity",
            Self::EntraSignin | Self::SentinelSigninlogs => "entra_signin",
            Self::EntraAudit | Self::SentinelAuditlogs => "entra_audit",
            Self::UalCsv | Self::UalJsonl | Self::SentinelOfficeactivity => "m365_ual",
            Self::GcpAudit => "gcp_audit",
            Self::HostBundle | Self::Syslog => "host",
            Self::Journal => "journal",
            Self::Utmp | Self::Btmp | Self::Lastlog => "login",
            Self::ShellHistory => "shell",
            Self::Crontab | Self::SystemdUnit => "persistence",
            Self::AuthorizedKeys | Self::Passwd | Self::Group | Self::Sudoers => "accounts",
            Self::Dpkg | Self::Dnf => "packages",
            Self::CloudInit => "cloud_init",
            Self::Evtx => "evtx",
            Self::Bodyfile => "fs",
            Self::Alert => "alert",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Cloudtrail => "cloudtrail",
            Self::CloudtrailLookup => "cloudtrail-lookup",
            Self::VpcFlow => "vpc-flow",
            Self::VpcFlowCloudwatch => "vpc-flow-cloudwatch",
            Self::CloudwatchLogs => "cloudwatch-logs",
            Self::S3Access => "s3-access",
            Self::K8sAudit => "k8s-audit",
            Self::EksAuditCloudwatch => "eks-audit-cloudwatch",
            Self::AzureActivity => "azure-activity",
            Self::EntraSignin => "entra-signin",
            Self::EntraAudit => "entra-audit",
            Self::UalCsv => "ual-csv",
            Self::UalJsonl => "ual-jsonl",
            Self::SentinelSigninlogs => "sentinel-signinlogs",
            Self::SentinelAuditlogs => "sentinel-auditlogs",
            Self::SentinelOfficeactivity => "sentinel-officeactivity",
            Self::SentinelAzureactivity => "sentinel-azureactivity",
            Self::SentinelAwscloudtrail => "sentinel-awscloudtrail",
            Self::GcpAudit => "gcp-audit",
            Self::HostBundle => "host-bundle",
            Self::Syslog => "syslog",
            Self::Journal => "journal",
            Self::Utmp => "utmp",
            Self::Btmp => "btmp",
            Self::Lastlog => "lastlog",
            Self::ShellHistory => "shell-history",
            Self::Crontab => "crontab",
            Self::SystemdUnit => "systemd-unit",
            Self::AuthorizedKeys => "authorized-keys",
            Self::Passwd => "passwd",
            Self::Group => "group",
            Self::Sudoers => "sudoers",
            Self::Dpkg => "dpkg",
            Self::Dnf => "dnf",
            Self::CloudInit => "cloud-init",
            Self::Evtx => "evtx",
            Self::Bodyfile => "bodyfile",
            Self::Alert => "alert",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        <Self as clap::ValueEnum>::value_variants()
            .iter()
            .copied()
            .find(|f| f.name() == name)
    }
}

/// What a parser may know of a file besides its bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FileContext {
    /// The year that dates lines carrying none (syslog's, yum's) when
    /// neither time below is known: their latest line falls in it.
    pub year_hint: i32,
    /// The file's modification time (µs), where it came off a file system
    /// or out of a bundle: what dates a history that wrote no times, as
    /// "undated", and a bound on every line's time.
    pub modified_us: Option<i64>,
    /// When the evidence was collected (µs): the end of its collection
    /// window. No line can be later.
    pub collected_us: Option<i64>,
}

/// How far past the bound a yearless line may read and still be in the
/// bound's year: such lines are the host's local time read as UTC, and a
/// host's clock runs up to 14 hours ahead of UTC (UTC+14), plus an hour of drift.
const LOCAL_TIME_GRACE_US: i64 = 15 * 3_600_000_000;

impl FileContext {
    /// The latest time a line without a year can read
    /// ([`yearless`]): the earlier of the collection and the modification
    /// time, with 15 hours of grace for a host clock ahead of UTC;
    /// without either, the end of `year_hint`.
    pub fn yearless_bound_us(&self) -> i64 {
        match (self.collected_us, self.modified_us) {
            (Some(c), Some(m)) => c.min(m).saturating_add(LOCAL_TIME_GRACE_US),
            (Some(t), None) | (None, Some(t)) => t.saturating_add(LOCAL_TIME_GRACE_US),
            (None, None) => {
                time::Date::from_calendar_date(self.year_hint, time::Month::December, 31)
                    .ok()
                    .and_then(|d| d.with_hms(23, 59, 59).ok())
                    .map_or(i64::MAX, |t| to_us(t.assume_utc()))
            }
        }
    }

    /// The context of a member of a bundle: its own modification time (from
    /// the bundle's header; 0 means none was kept), the bundle's collection.
    pub fn member(&self, mtime_s: Option<u64>) -> Self {
        Self {
            modified_us: mtime_s
                .filter(|&t| t > 0)
                .and_then(|t| i64::try_from(t).ok())
                .map(|t| t.saturating_mul(1_000_000)),
            ..*self
        }
    }
}

/// A month by its English three-letter name, as syslog and yum write it.
pub fn month_abbr(name: &str) -> Option<time::Month> {
    use time::Month;
    Some(match name {
        "Jan" => Month::January,
        "Feb" => Month::February,
        "Mar" => Month::March,
        "Apr" => Month::April,
        "May" => Month::May,
        "Jun" => Month::June,
        "Jul" => Month::July,
        "Aug" => Month::August,
        "Sep" => Month::September,
        "Oct" => Month::October,
        "Nov" => Month::November,
        "Dec" => Month::December,
        _ => return None,
    })
}

/// Parses one file of `format`. `member` names it within its artefact ("" for
/// an artefact that is the file itself); gzip is undone first when present,
/// within the sink's [`InflateLimits`]. `year_hint` dates syslog lines,
/// which carry no year, when nothing else is known of the file
/// ([`FileContext`]).
pub fn parse_file(format: Format, member: &str, bytes: &[u8], year_hint: i32, sink: &mut dyn Sink) {
    let ctx = FileContext {
        year_hint,
        ..FileContext::default()
    };
    parse_with(format, member, bytes, &ctx, sink);
}

/// [`parse_file`], with what is known of the file.
pub fn parse_with(
    format: Format,
    member: &str,
    bytes: &[u8],
    ctx: &FileContext,
    sink: &mut dyn Sink,
) {
    let owned;
    let bytes = if is_gzip(bytes) {
        owned = gunzip(member, bytes, sink);
        owned.as_slice()
    } else {
        bytes
    };
    let mut tagged = Tagged { member, sink };
    match format {
        Format::Cloudtrail => aws::cloudtrail(bytes, &mut tagged),
        Format::CloudtrailLookup => aws::cloudtrail_lines(bytes, &mut tagged),
        Format::VpcFlow => aws::vpc_flow(bytes, &mut tagged),
        Format::VpcFlowCloudwatch => aws::vpc_flow_cloudwatch(bytes, &mut tagged),
        Format::CloudwatchLogs => aws::cloudwatch_logs(bytes, &mut tagged),
        Format::S3Access => aws::s3_access(bytes, &mut tagged),
        Format::K8sAudit => k8s::k8s_audit(bytes, &mut tagged),
        Format::EksAuditCloudwatch => k8s::eks_audit_cloudwatch(bytes, &mut tagged),
        Format::AzureActivity => microsoft::azure_activity(bytes, &mut tagged),
        Format::EntraSignin => microsoft::entra_signin(bytes, &mut tagged),
        Format::EntraAudit => microsoft::entra_audit(bytes, &mut tagged),
        Format::UalCsv => microsoft::ual_csv(bytes, &mut tagged),
        Format::UalJsonl => microsoft::ual_jsonl(bytes, &mut tagged),
        Format::SentinelSigninlogs => sentinel::signin_logs(bytes, &mut tagged),
        Format::SentinelAuditlogs => sentinel::audit_logs(bytes, &mut tagged),
        Format::SentinelOfficeactivity => sentinel::office_activity(bytes, &mut tagged),
        Format::SentinelAzureactivity => sentinel::azure_activity(bytes, &mut tagged),
        Format::SentinelAwscloudtrail => sentinel::aws_cloudtrail(bytes, &mut tagged),
        Format::GcpAudit => gcp::gcp_audit(bytes, &mut tagged),
        Format::Syslog => host::syslog(bytes, ctx, &mut tagged),
        Format::HostBundle => host::bundle(bytes, ctx, sink),
        Format::Journal => journal::journal(bytes, &mut tagged),
        Format::Utmp => utmp::utmp(bytes, &mut tagged),
        Format::Btmp => utmp::btmp(bytes, &mut tagged),
        Format::Lastlog => utmp::lastlog(bytes, ctx, &mut tagged),
        Format::ShellHistory => linux::shell_history_named(member, bytes, ctx, &mut tagged),
        Format::Crontab => linux::crontab_named(member, bytes, ctx, &mut tagged),
        Format::SystemdUnit => linux::systemd_unit_named(member, bytes, ctx, &mut tagged),
        Format::AuthorizedKeys => linux::authorized_keys_named(member, bytes, ctx, &mut tagged),
        Format::Passwd => linux::passwd(bytes, ctx, &mut tagged),
        Format::Group => linux::group(bytes, ctx, &mut tagged),
        Format::Sudoers => linux::sudoers(bytes, ctx, &mut tagged),
        Format::Dpkg => linux::dpkg(bytes, &mut tagged),
        Format::Dnf => linux::dnf(bytes, ctx, &mut tagged),
        Format::CloudInit => linux::cloud_init_named(member, bytes, ctx, &mut tagged),
        Format::Evtx => evtx::evtx(bytes, &mut tagged),
        Format::Bodyfile => bodyfile::bodyfile(bytes, &mut tagged),
        Format::Alert => alert::alert(bytes, &mut tagged),
    }
}

/// Undoes gzip (every member of a multi-member stream), reading at most the
/// sink's budget for `bytes`. A damaged or truncated stream, or one that
/// expands past the budget, still yields what precedes the fault, with a
/// problem saying so.
fn gunzip(member: &str, bytes: &[u8], sink: &mut dyn Sink) -> Vec<u8> {
    let limits = sink.inflate_limits();
    let budget = limits.budget(bytes.len() as u64);
    // A gzip member ends with its raw size mod 2^32 (RFC 1952's ISIZE): for
    // the usual one-member file the output is then allocated once, instead
    // of grown by copying, which holds the old and the new buffer at once.
    // A false or partial size (several members) only changes this first
    // allocation, never the budget.
    let trailer = bytes
        .last_chunk::<4>()
        .map_or(0, |b| u32::from_le_bytes(*b));
    let mut out = Vec::new();
    let first = u64::from(trailer).min(budget.saturating_add(1));
    let _ = out.try_reserve_exact(usize::try_from(first).unwrap_or(0));
    // One byte past the budget tells "exactly the budget" from "more".
    let read = flate2::read::MultiGzDecoder::new(bytes)
        .take(budget.saturating_add(1))
        .read_to_end(&mut out);
    if let Err(e) = read {
        sink.problem(Problem {
            member: member.to_owned(),
            locator: format!("gzip byte {}", bytes.len()),
            message: format!(
                "the gzip stream is damaged or truncated ({e}); reading what precedes it"
            ),
        });
    } else if out.len() as u64 > budget {
        out.truncate(usize::try_from(budget).unwrap_or(usize::MAX));
        sink.problem(Problem {
            member: member.to_owned(),
            locator: format!("decompressed byte {budget}"),
            message: format!(
                "the gzip stream expands past {budget} bytes, the limit for its {} compressed bytes \
                 (decompress.max_ratio {}:1 past {} MiB, at most decompress.max_mib {} MiB in custody.toml); \
                 reading only what precedes the limit",
                bytes.len(),
                limits.max_ratio,
                InflateLimits::FLOOR >> 20,
                limits.max_bytes >> 20,
            ),
        });
    }
    out
}

/// Stamps the member name on everything a single-file parser yields.
struct Tagged<'a> {
    member: &'a str,
    sink: &'a mut dyn Sink,
}

impl Sink for Tagged<'_> {
    fn event(&mut self, mut event: Event) {
        self.member.clone_into(&mut event.member);
        self.sink.event(event);
    }
    fn record(&mut self, mut event: Event, raw: Record<'_>) {
        self.member.clone_into(&mut event.member);
        self.sink.record(event, raw);
    }
    fn problem(&mut self, mut problem: Problem) {
        self.member.clone_into(&mut problem.member);
        self.sink.problem(problem);
    }
    fn inflate_limits(&self) -> InflateLimits {
        self.sink.inflate_limits()
    }
}

pub fn is_gzip(bytes: &[u8]) -> bool {
    bytes.starts_with(&[0x1f, 0x8b])
}

/// A problem at `locator` of the current file (the member is stamped on later).
pub fn problem(locator: impl Into<String>, message: impl Into<String>) -> Problem {
    Problem {
        member: String::new(),
        locator: locator.into(),
        message: message.into(),
    }
}

/// RFC 3339 time to microseconds since the epoch. Also takes what the
/// sources write instead: no offset (taken as UTC, as Microsoft's exports
/// mean it), a space for the `T`, and fractions of any length.
pub fn time_us(text: &str) -> Option<i64> {
    let t = text.trim();
    let parsed = OffsetDateTime::parse(t, &Rfc3339).ok().or_else(|| {
        let mut s = t.replacen(' ', "T", 1);
        let has_offset = s.ends_with('Z')
            || s.get(19..)
                .is_some_and(|rest| rest.contains('+') || rest.contains('-'));
        if !has_offset {
            s.push('Z');
        }
        OffsetDateTime::parse(&s, &Rfc3339).ok()
    })?;
    Some(to_us(parsed))
}

pub fn to_us(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1000).unwrap_or(i64::MAX)
}

/// An IP address from what logs write: plain, `[v6]:port`, `v4:port`.
/// Anything else (`AWS Internal`, a service name) is not an address.
pub fn ip(text: &str) -> Option<IpAddr> {
    let t = text.trim();
    if let Ok(ip) = t.parse() {
        return Some(ip);
    }
    if let Ok(sock) = t.parse::<std::net::SocketAddr>() {
        return Some(sock.ip());
    }
    None
}

/// A JSON string field at a path of object keys, when present and not empty.
pub fn str_at<'a>(v: &'a serde_json::Value, path: &[&str]) -> Option<&'a str> {
    let mut cur = v;
    for k in path {
        cur = cur.get(k)?;
    }
    cur.as_str().filter(|s| !s.is_empty())
}

/// A JSON scalar at a path, as text (strings as they are, numbers and booleans printed).
pub fn text_at(v: &serde_json::Value, path: &[&str]) -> Option<String> {
    let mut cur = v;
    for k in path {
        cur = cur.get(k)?;
    }
    match cur {
        serde_json::Value::String(s) if !s.is_empty() => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_from_every_source_shape() {
        let want = 1_622_534_400_000_000; // 2021-06-01T08:00:00Z
        for t in [
            "2021-06-01T08:00:00Z",
            "2021-06-01T08:00:00.000Z",
            "2021-06-01T08:00:00",
            "2021-06-01 08:00:00",
            "2021-06-01T10:00:00+02:00",
        ] {
            assert_eq!(time_us(t), Some(want), "{t}");
        }
        assert_eq!(
            time_us("2021-06-01T08:00:00.1234567Z"),
            Some(want + 123_456)
        );
        assert_eq!(time_us("yesterday"), None);
    }

    #[test]
    fn addresses_with_and_without_ports() {
        assert_eq!(ip("203.0.113.7"), "203.0.113.7".parse().ok());
        assert_eq!(ip("203.0.113.7:5123"), "203.0.113.7".parse().ok());
        assert_eq!(ip("[2001:db8::1]:443"), "2001:db8::1".parse().ok());
        assert_eq!(ip("AWS Internal"), None);
        assert_eq!(ip("s3.amazonaws.com"), None);
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        use std::io::Write as _;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(bytes).unwrap();
        gz.finish().unwrap()
    }

    const LINE: &[u8] =
        b"Jun  1 08:02:13 web01 sshd[2188]: Invalid user admin from 203.0.113.12 port 51522\n";

    #[test]
    fn p1_gzip_expands_only_to_its_limit_and_the_member_is_named() {
        // 2 MiB of log lines, read with a 1 MiB limit: the first MiB is
        // parsed, the rest is a problem naming the member and the limit.
        let log = LINE.repeat((2 << 20) / LINE.len());
        let mut c = Collect {
            limits: InflateLimits {
                max_bytes: 1 << 20,
                max_ratio: 100,
            },
            ..Collect::default()
        };
        parse_file(
            Format::Syslog,
            "files/var/log/auth.log.2.gz",
            &gzip(&log),
            2024,
            &mut c,
        );
        let whole_lines = (1 << 20) / LINE.len();
        // The line the limit cuts may still read as an event.
        assert!(
            (whole_lines..=whole_lines + 1).contains(&c.events.len()),
            "{} events",
            c.events.len()
        );
        let limit = c
            .problems
            .iter()
            .find(|p| p.message.contains("expands past"))
            .expect("a problem for the limit");
        assert_eq!(limit.member, "files/var/log/auth.log.2.gz");
        assert_eq!(limit.locator, format!("decompressed byte {}", 1 << 20));
        assert!(
            limit.message.contains("decompress.max_mib"),
            "{}",
            limit.message
        );
    }

    #[test]
    fn p1_a_gzip_bomb_is_cut_at_its_ratio_and_the_next_member_is_read() {
        // 80 MiB of NULs gzip to about 80 KiB: past the 64 MiB floor the
        // 100:1 ratio holds it to 64 MiB; the bundle's next log still loads.
        let bomb = gzip(&vec![0u8; 80 << 20]);
        let mut tar = tar::Builder::new(Vec::new());
        for (path, data) in [
            ("files/var/log/auth.log.2.gz", bomb.as_slice()),
            ("files/var/log/auth.log", LINE),
        ] {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o444);
            h.set_entry_type(tar::EntryType::Regular);
            tar.append_data(&mut h, path, data).unwrap();
        }
        let tar = tar.into_inner().unwrap();
        let mut c = Collect::default();
        parse_file(Format::HostBundle, "", &tar, 2024, &mut c);
        let limit = c
            .problems
            .iter()
            .find(|p| p.message.contains("expands past"))
            .expect("a problem for the ratio");
        assert_eq!(limit.member, "files/var/log/auth.log.2.gz");
        assert_eq!(
            limit.locator,
            format!("decompressed byte {}", InflateLimits::FLOOR)
        );
        assert_eq!(c.events.len(), 1, "{:?}", c.problems);
        assert_eq!(c.events[0].member, "files/var/log/auth.log");
    }

    #[test]
    fn p1_budgets() {
        let l = InflateLimits::DEFAULT;
        assert_eq!(
            l.budget(1000),
            InflateLimits::FLOOR,
            "small files: the floor"
        );
        assert_eq!(l.budget(2 << 20), 200 << 20, "2 MiB: 100 times");
        assert_eq!(l.budget(1 << 40), 1 << 30, "never past max_bytes");
        let small = InflateLimits {
            max_bytes: 1 << 20,
            max_ratio: 100,
        };
        assert_eq!(small.budget(10), 1 << 20, "max_bytes under the floor wins");
    }

    #[test]
    fn every_format_has_a_round_trip_name() {
        for f in <Format as clap::ValueEnum>::value_variants() {
            assert_eq!(Format::from_name(f.name()), Some(*f));
        }
    }
}
