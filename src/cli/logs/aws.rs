//! `custody logs cloudtrail|lookup|vpc-flow|s3-access`: the AWS log
//! sources, listed for a window and collected with their original bytes.

use anyhow::Context;
use time::OffsetDateTime;

use super::Ingest;
use crate::cli::Env;
use crate::collect::Collector;
use crate::collect::logs::{AwsLogsLayout, CloudWatchLogs, LookupEvents, S3Logs};
use crate::timeline::parse::Format;

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
    /// `regions`: the global `--region`s, the regions read from the bucket
    /// (all when none).
    fn layout(
        &self,
        regions: &[String],
        bucket: &str,
        service: &'static str,
        since: OffsetDateTime,
        until: OffsetDateTime,
    ) -> AwsLogsLayout {
        AwsLogsLayout {
            bucket: bucket.to_owned(),
            prefix: self.prefix.clone(),
            service,
            accounts: self.accounts.clone(),
            regions: regions.to_vec(),
            since,
            until,
        }
    }

    /// The account, when exactly one was asked for.
    fn account(&self) -> Option<String> {
        (self.accounts.len() == 1).then(|| self.accounts.concat())
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

fn window(env: &Env, w: &Window) -> anyhow::Result<(OffsetDateTime, OffsetDateTime)> {
    let until = w.until.unwrap_or_else(|| env.clock.now());
    anyhow::ensure!(
        w.since < until,
        "--since ({}) must be before --until ({})",
        crate::clock::rfc3339(w.since),
        crate::clock::rfc3339(until)
    );
    Ok((w.since, until))
}

/// The collectors an AWS source names, with its case and loading options.
pub(super) async fn collectors<'a>(
    env: &Env,
    cmd: &'a AwsLogsCommand,
) -> anyhow::Result<(&'a Ingest, Vec<Box<dyn Collector>>)> {
    Ok(match cmd {
        AwsLogsCommand::Cloudtrail(a) => {
            let (since, until) = window(env, &a.window)?;
            let aws = env.aws().await?;
            let s3 = aws.s3();
            let layout = a
                .scope
                .layout(&env.regions, &a.bucket, "CloudTrail", since, until);
            let objects = crate::collect::logs::aws_logs_objects(&s3, &layout)
                .await
                .with_context(|| format!("cannot list the trail's logs in s3://{}", a.bucket))?;
            anyhow::ensure!(
                !objects.is_empty(),
                "no CloudTrail log files in s3://{}/{}AWSLogs/ for {} to {}",
                a.bucket,
                if a.scope.prefix.is_empty() {
                    String::new()
                } else {
                    format!("{}/", a.scope.prefix.trim_end_matches('/'))
                },
                crate::clock::rfc3339(since),
                crate::clock::rfc3339(until)
            );
            let c: Box<dyn Collector> = Box::new(S3Logs {
                s3,
                bucket: a.bucket.clone(),
                objects,
                format: Format::Cloudtrail,
                region: aws.region(),
                account: a.scope.account(),
            });
            (&a.ingest, vec![c])
        }
        AwsLogsCommand::Lookup(a) => {
            let (since, until) = window(env, &a.window)?;
            let aws = env.aws().await?;
            let regions = if env.regions.is_empty() {
                vec![
                    aws.region()
                        .context("no region: give --region or set AWS_REGION")?,
                ]
            } else {
                env.regions.clone()
            };
            let scope = env
                .aws_options
                .endpoint
                .clone()
                .unwrap_or_else(|| "aws".into());
            let c = regions
                .into_iter()
                .map(|region| {
                    Box::new(LookupEvents {
                        cloudtrail: aws.in_region(&region).cloudtrail(),
                        region,
                        scope: scope.clone(),
                        since,
                        until,
                    }) as Box<dyn Collector>
                })
                .collect();
            (&a.ingest, c)
        }
        AwsLogsCommand::VpcFlow(a) => {
            let (since, until) = window(env, &a.window)?;
            let aws = env.aws().await?;
            let c: Box<dyn Collector> = if let Some(group) = &a.log_group {
                Box::new(CloudWatchLogs {
                    logs: aws.cloudwatch_logs(),
                    group: group.clone(),
                    region: aws.region(),
                    format: Format::VpcFlowCloudwatch,
                    since,
                    until,
                })
            } else {
                let bucket = a.bucket.clone().unwrap_or_default();
                let s3 = aws.s3();
                let layout = a
                    .scope
                    .layout(&env.regions, &bucket, "vpcflowlogs", since, until);
                let objects = crate::collect::logs::aws_logs_objects(&s3, &layout)
                    .await
                    .with_context(|| format!("cannot list the flow logs in s3://{bucket}"))?;
                anyhow::ensure!(
                    !objects.is_empty(),
                    "no flow log files in s3://{bucket} for the window"
                );
                Box::new(S3Logs {
                    s3,
                    bucket,
                    objects,
                    format: Format::VpcFlow,
                    region: aws.region(),
                    account: a.scope.account(),
                })
            };
            (&a.ingest, vec![c])
        }
        AwsLogsCommand::S3Access(a) => {
            let (since, until) = window(env, &a.window)?;
            let aws = env.aws().await?;
            let s3 = aws.s3();
            let objects =
                crate::collect::logs::access_log_objects(&s3, &a.bucket, &a.prefix, since, until)
                    .await
                    .with_context(|| format!("cannot list the access logs in s3://{}", a.bucket))?;
            anyhow::ensure!(
                !objects.is_empty(),
                "no access log files under s3://{}/{} for the window",
                a.bucket,
                a.prefix
            );
            let c: Box<dyn Collector> = Box::new(S3Logs {
                s3,
                bucket: a.bucket.clone(),
                objects,
                format: Format::S3Access,
                region: aws.region(),
                account: None,
            });
            (&a.ingest, vec![c])
        }
    })
}
