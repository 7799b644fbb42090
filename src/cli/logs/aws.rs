//! `custody logs cloudtrail|lookup|vpc-flow|s3-access|cloudwatch|eks-audit`: the AWS log
//! sources, listed for a window and collected with their original bytes.

use time::OffsetDateTime;

use super::Ingest;
use crate::engine::logs::{self, AwsLogs, AwsLogsKind};

#[derive(Debug, clap::Subcommand)]
pub enum AwsLogsCommand {
    /// A trail's log files (and digest files) from its S3 bucket, for a window.
    Cloudtrail(CloudtrailArgs),
    /// CloudTrail management events through LookupEvents (no trail bucket needed; last 90 days).
    Lookup(LookupArgs),
    /// VPC flow logs from their S3 destination or a CloudWatch Logs group.
    VpcFlow(VpcFlowArgs),
    /// S3 server access logs from their target bucket.
    S3Access(S3AccessArgs),
    /// Any CloudWatch Logs group (a function's, a task's), for a window.
    Cloudwatch(CloudwatchArgs),
    /// An EKS cluster's Kubernetes API audit log: the `kube-apiserver-audit`
    /// streams of `/aws/eks/CLUSTER/cluster` (control plane logging must
    /// have the audit log type on).
    EksAudit(EksAuditArgs),
}

#[derive(Debug, clap::Args)]
pub struct EksAuditArgs {
    /// The cluster's name.
    #[arg(long, value_name = "NAME")]
    pub cluster: String,
    #[command(flatten)]
    pub window: Window,
    #[command(flatten)]
    pub ingest: Ingest,
}

#[derive(Debug, clap::Args)]
pub struct CloudwatchArgs {
    /// The log group.
    #[arg(long, value_name = "GROUP")]
    pub log_group: String,
    /// Only streams whose names start with this.
    #[arg(long, value_name = "PREFIX")]
    pub stream_prefix: Option<String>,
    /// How to read the messages (default: each message as written).
    #[arg(long, value_enum, default_value = "cloudwatch-logs")]
    pub format: crate::timeline::parse::Format,
    #[command(flatten)]
    pub window: Window,
    #[command(flatten)]
    pub ingest: Ingest,
}

#[derive(Debug, clap::Args)]
pub struct Window {
    /// Start of the window: a date (midnight UTC) or an RFC 3339 time.
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub since: OffsetDateTime,
    /// End of the window (default: now).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub until: Option<OffsetDateTime>,
}

fn parse_time(s: &str) -> Result<OffsetDateTime, String> {
    crate::timeline::query::instant(s)
        .and_then(|us| OffsetDateTime::from_unix_timestamp_nanos(i128::from(us) * 1000).ok())
        .ok_or_else(|| {
            format!("`{s}` is not a date (2021-06-01) or an RFC 3339 time (2021-06-01T08:00:00Z)")
        })
}

#[derive(Debug, clap::Args)]
pub struct CloudtrailArgs {
    /// The trail's bucket.
    #[arg(long, value_name = "BUCKET")]
    pub bucket: String,
    #[command(flatten)]
    pub scope: AwsLogsScope,
    #[command(flatten)]
    pub window: Window,
    #[command(flatten)]
    pub ingest: Ingest,
}

/// Where in an `AWSLogs/` layout to look.
#[derive(Debug, clap::Args)]
pub struct AwsLogsScope {
    /// The S3 key prefix the logs were configured with, if any.
    #[arg(long, default_value = "", value_name = "PREFIX")]
    pub prefix: String,
    /// Accounts to read (repeat); default: every account in the bucket.
    #[arg(long = "account", value_name = "ID")]
    pub accounts: Vec<String>,
}

impl AwsLogsScope {
    fn request(&self) -> logs::AwsLogsScope {
        logs::AwsLogsScope {
            prefix: self.prefix.clone(),
            accounts: self.accounts.clone(),
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct LookupArgs {
    #[command(flatten)]
    pub window: Window,
    #[command(flatten)]
    pub ingest: Ingest,
}

#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("from").required(true).args(["bucket", "log_group"])))]
pub struct VpcFlowArgs {
    /// The flow logs' S3 destination bucket.
    #[arg(long, value_name = "BUCKET")]
    pub bucket: Option<String>,
    /// Or the CloudWatch Logs group the flow logs go to.
    #[arg(long, value_name = "GROUP")]
    pub log_group: Option<String>,
    #[command(flatten)]
    pub scope: AwsLogsScope,
    #[command(flatten)]
    pub window: Window,
    #[command(flatten)]
    pub ingest: Ingest,
}

#[derive(Debug, clap::Args)]
pub struct S3AccessArgs {
    /// The bucket the access logs are delivered to.
    #[arg(long, value_name = "BUCKET")]
    pub bucket: String,
    /// The target prefix the logs are written under.
    #[arg(long, default_value = "", value_name = "PREFIX")]
    pub prefix: String,
    #[command(flatten)]
    pub window: Window,
    #[command(flatten)]
    pub ingest: Ingest,
}

impl AwsLogsCommand {
    /// The engine's request, and the case and loading options.
    pub(super) fn request(self) -> (AwsLogs, Ingest) {
        let (kind, window, ingest) = match self {
            Self::Cloudtrail(a) => (
                AwsLogsKind::Cloudtrail {
                    scope: a.scope.request(),
                    bucket: a.bucket,
                },
                a.window,
                a.ingest,
            ),
            Self::Lookup(a) => (AwsLogsKind::Lookup, a.window, a.ingest),
            Self::VpcFlow(a) => (
                match a.log_group {
                    Some(group) => AwsLogsKind::VpcFlowGroup { group },
                    // clap requires --bucket or --log-group.
                    None => AwsLogsKind::VpcFlowBucket {
                        bucket: a.bucket.unwrap_or_default(),
                        scope: a.scope.request(),
                    },
                },
                a.window,
                a.ingest,
            ),
            Self::S3Access(a) => (
                AwsLogsKind::S3Access {
                    bucket: a.bucket,
                    prefix: a.prefix,
                },
                a.window,
                a.ingest,
            ),
            Self::EksAudit(a) => (
                AwsLogsKind::Group {
                    group: format!("/aws/eks/{}/cluster", a.cluster),
                    stream_prefix: Some("kube-apiserver-audit".into()),
                    format: crate::timeline::parse::Format::EksAuditCloudwatch,
                },
                a.window,
                a.ingest,
            ),
            Self::Cloudwatch(a) => (
                AwsLogsKind::Group {
                    group: a.log_group,
                    stream_prefix: a.stream_prefix,
                    format: a.format,
                },
                a.window,
                a.ingest,
            ),
        };
        let logs = AwsLogs {
            kind,
            since: window.since,
            until: window.until,
        };
        (logs, ingest)
    }
}
