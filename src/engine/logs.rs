//! Logs into a case: the collectors a [`LogsSource`] names (exported files,
//! and with the `aws` feature the AWS sources), the collection with the
//! original bytes as artefacts, and the loading of what was collected into
//! the case's timeline. The command line builds the requests from its flags.

use std::path::PathBuf;

use super::{App, AppError};
use crate::collect::{Collected, Collector};
use crate::evidence::{Artefact, ArtefactKind};
use crate::ids::CaseId;
use crate::timeline::geoip::{GeoIp, GeoIpError};
use crate::timeline::ingest::{self, IngestError};
use crate::timeline::parse::Format;
use crate::timeline::store::{IngestReport, Timeline, TimelineError, path_for};

#[cfg(feature = "aws")]
pub use self::aws::{AwsLogs, AwsLogsKind, AwsLogsScope};

/// Why logs could not be collected or loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LogsError {
    #[error(transparent)]
    App(#[from] AppError),
    #[error("{} is not a file", .0.display())]
    NotAFile(PathBuf),
    #[error(transparent)]
    GeoIp(#[from] GeoIpError),
    #[error("cannot open the timeline of case {case}")]
    OpenTimeline {
        case: CaseId,
        #[source]
        source: TimelineError,
    },
    #[error("cannot start the timeline of case {case} over")]
    ResetTimeline {
        case: CaseId,
        #[source]
        source: TimelineError,
    },
    #[error(
        "case {case} has no timeline in {}: load its logs with `custody logs import|cloudtrail|lookup|…` or `custody logs index {case}`",
        .home.display()
    )]
    NoTimeline { case: CaseId, home: PathBuf },
    #[error("cannot load artefact {artefact} into the timeline")]
    Load {
        artefact: String,
        #[source]
        source: Box<IngestError>,
    },
    #[error("cannot load case {case} into its timeline")]
    LoadCase {
        case: CaseId,
        #[source]
        source: Box<IngestError>,
    },
    #[error("--since ({since}) must be before --until ({until})")]
    Window { since: String, until: String },
    #[error("no region: give --region or set AWS_REGION")]
    NoRegion,
    #[error("cannot list {what}")]
    Listing {
        what: String,
        #[source]
        source: crate::collect::CollectError,
    },
    #[error("{0}")]
    NoLogs(String),
    #[error(
        "{0}; the evidence is kept: is the format right? Importing the file again with the right --format makes a new artefact of it"
    )]
    Unreadable(String),
    #[error("{} log source(s) could not be collected: {}", .0.len(), .0.join("; "))]
    NotCollected(Vec<String>),
}

/// Where logs come from.
#[derive(Debug, Clone)]
pub enum LogsSource {
    /// Exported files (an M365 audit CSV, Entra JSON, a CloudTrail file...).
    Files { paths: Vec<PathBuf>, format: Format },
    /// A trail bucket, LookupEvents, flow logs or access logs.
    #[cfg(feature = "aws")]
    Aws(AwsLogs),
}

/// Into which case, and how the timeline is loaded.
#[derive(Debug, Clone)]
pub struct LoadRequest {
    pub case: CaseId,
    /// MaxMind-format databases for source addresses.
    pub geoip: Vec<PathBuf>,
    /// Capture only; the timeline is loaded later.
    pub no_index: bool,
}

/// What collecting and loading came to.
#[derive(Debug, serde::Serialize)]
pub struct LogsCollected {
    pub case: CaseId,
    pub artefacts: Vec<Artefact>,
    pub timeline: Vec<IngestReport>,
    /// Sources that could not be collected, each recorded in the ledger.
    #[serde(skip)]
    pub failures: Vec<String>,
}

impl LogsCollected {
    /// The shortfalls of a run, once its report has been shown: sources not
    /// collected, and artefacts that gave problems and not one event (most
    /// likely read as the wrong format; the evidence is kept and recorded).
    pub fn check(&self) -> Result<(), LogsError> {
        let bad: Vec<String> = self
            .timeline
            .iter()
            .filter(|t| !t.already && t.events == 0 && t.duplicates == 0 && t.problems > 0)
            .map(|t| {
                let first = t
                    .problem_samples
                    .first()
                    .map(|p| format!("{}: {}", p.locator, p.message))
                    .unwrap_or_default();
                format!(
                    "{} read as {} gave no event ({first})",
                    t.artefact, t.format
                )
            })
            .collect();
        if !bad.is_empty() {
            return Err(LogsError::Unreadable(bad.join("; ")));
        }
        if !self.failures.is_empty() {
            return Err(LogsError::NotCollected(self.failures.clone()));
        }
        Ok(())
    }
}

/// The collectors `source` names; `regions` are the `--region`s given.
#[cfg_attr(not(feature = "aws"), allow(unused_variables))]
pub async fn collectors(
    app: &App,
    source: &LogsSource,
    regions: &[String],
) -> Result<Vec<Box<dyn Collector>>, LogsError> {
    match source {
        LogsSource::Files { paths, format } => {
            if let Some(p) = paths.iter().find(|p| !p.is_file()) {
                return Err(LogsError::NotAFile(p.clone()));
            }
            Ok(paths
                .iter()
                .map(|f| {
                    Box::new(crate::collect::file::FileCollector {
                        path: f.clone(),
                        kind: ArtefactKind::File,
                        log_format: Some(format.name().to_owned()),
                    }) as Box<dyn Collector>
                })
                .collect())
        }
        #[cfg(feature = "aws")]
        LogsSource::Aws(a) => aws::collectors(app, a, regions).await,
    }
}

fn open_geoip(paths: &[PathBuf]) -> Result<Option<GeoIp>, LogsError> {
    if paths.is_empty() {
        return Ok(None);
    }
    Ok(Some(GeoIp::open(paths)?))
}

/// The timeline of `case`, created when it has none.
pub fn open_timeline(app: &App, case: &CaseId) -> Result<Timeline, LogsError> {
    Timeline::open(&path_for(&app.config.home, case)).map_err(|source| LogsError::OpenTimeline {
        case: case.clone(),
        source,
    })
}

/// The timeline of a case for searching: one that was never loaded is an
/// error naming how to load it, not an empty result.
pub fn existing_timeline(app: &App, case: &CaseId) -> Result<Timeline, LogsError> {
    if !path_for(&app.config.home, case).exists() {
        return Err(LogsError::NoTimeline {
            case: case.clone(),
            home: app.config.home.clone(),
        });
    }
    open_timeline(app, case)
}

/// Collects into the case, then loads what was collected into its timeline.
pub async fn collect_and_load(
    app: &App,
    load: &LoadRequest,
    collectors: &[Box<dyn Collector>],
) -> Result<LogsCollected, LogsError> {
    collect_and_load_recorded(app, app.recorder()?, load, collectors).await
}

/// [`collect_and_load`], recording with `rec`.
pub async fn collect_and_load_recorded(
    app: &App,
    rec: crate::ledger::Recorder,
    load: &LoadRequest,
    collectors: &[Box<dyn Collector>],
) -> Result<LogsCollected, LogsError> {
    let case = load.case.clone();
    let mut geoip = open_geoip(&load.geoip)?;
    let ctx = app.acquire_context(rec).await?;
    let mut artefacts = Vec::new();
    let mut failures = Vec::new();
    for c in collectors {
        tracing::info!(%case, what = %c.describe(), "collecting logs");
        match c.collect(&ctx, &case).await {
            Ok(Collected {
                artefacts: a,
                failures: f,
            }) => {
                artefacts.extend(a);
                failures.extend(f);
            }
            Err(e) => failures.push(format!("{}: {}", c.describe(), crate::error_chain(&e))),
        }
    }
    let mut timeline = Vec::new();
    if !load.no_index && !artefacts.is_empty() {
        let mut tl = open_timeline(app, &case)?;
        let now = crate::clock::rfc3339(app.clock.now());
        // A bulk run, as `logs index` makes it.
        timeline = load_blocking(
            &case,
            ingest::ingest_bulk(
                ctx.store.as_ref(),
                &mut tl,
                &artefacts,
                ingest::LoadOptions {
                    geoip: geoip.as_mut(),
                    inflate: app.config.inflate,
                },
                &now,
            ),
        )?;
    }
    Ok(LogsCollected {
        case,
        artefacts,
        timeline,
        failures,
    })
}

/// Runs a load of `case`'s timeline to its end on this thread: the
/// timeline's SQLite connection stays on it.
fn load_blocking(
    case: &CaseId,
    load: impl std::future::Future<Output = Result<Vec<IngestReport>, IngestError>>,
) -> Result<Vec<IngestReport>, LogsError> {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(load)).map_err(
        |source| LogsError::LoadCase {
            case: case.clone(),
            source: Box::new(source),
        },
    )
}

/// Loads the case's log artefacts not in its timeline yet; `rebuild`
/// starts the timeline over (saved searches stay).
pub async fn index_case(
    app: &App,
    case: &CaseId,
    geoip: &[PathBuf],
    rebuild: bool,
) -> Result<LogsCollected, LogsError> {
    let store = app.store().await?;
    let mut geoip = open_geoip(geoip)?;
    let mut tl = if rebuild {
        Timeline::reset(&path_for(&app.config.home, case)).map_err(|source| {
            LogsError::ResetTimeline {
                case: case.clone(),
                source,
            }
        })?
    } else {
        open_timeline(app, case)?
    };
    let now = crate::clock::rfc3339(app.clock.now());
    let reports = load_blocking(
        case,
        ingest::ingest_case(
            store.as_ref(),
            &mut tl,
            case,
            ingest::LoadOptions {
                geoip: geoip.as_mut(),
                inflate: app.config.inflate,
            },
            &now,
        ),
    )?;
    Ok(LogsCollected {
        case: case.clone(),
        artefacts: Vec::new(),
        timeline: reports,
        failures: Vec::new(),
    })
}

#[cfg(feature = "aws")]
mod aws {
    //! The AWS log sources: a trail's bucket, LookupEvents, flow logs (S3
    //! or CloudWatch Logs) and S3 access logs, each listed for a window.

    use time::OffsetDateTime;

    use super::{App, LogsError};
    use crate::collect::Collector;
    use crate::collect::logs::{AwsLogsLayout, CloudWatchLogs, LookupEvents, S3Logs};
    use crate::timeline::parse::Format;

    /// An AWS source and its window (`until` `None`: now).
    #[derive(Debug, Clone)]
    pub struct AwsLogs {
        pub kind: AwsLogsKind,
        pub since: OffsetDateTime,
        pub until: Option<OffsetDateTime>,
    }

    /// Where in an `AWSLogs/` layout to look.
    #[derive(Debug, Clone, Default)]
    pub struct AwsLogsScope {
        /// The S3 key prefix the logs were configured with.
        pub prefix: String,
        /// Accounts to read; empty: every account in the bucket.
        pub accounts: Vec<String>,
    }

    impl AwsLogsScope {
        /// The account, when exactly one was asked for.
        fn account(&self) -> Option<String> {
            (self.accounts.len() == 1).then(|| self.accounts.concat())
        }
    }

    #[derive(Debug, Clone)]
    pub enum AwsLogsKind {
        /// A trail's log files (and digest files) from its bucket.
        Cloudtrail { bucket: String, scope: AwsLogsScope },
        /// Management events through LookupEvents, per region.
        Lookup,
        /// Flow logs from their S3 destination.
        VpcFlowBucket { bucket: String, scope: AwsLogsScope },
        /// Flow logs from a CloudWatch Logs group.
        VpcFlowGroup { group: String },
        /// Any CloudWatch Logs group (an EKS cluster's audit streams, a
        /// function's or a task's logs), read as `format`.
        Group {
            group: String,
            stream_prefix: Option<String>,
            format: Format,
        },
        /// S3 server access logs from their target bucket.
        S3Access { bucket: String, prefix: String },
    }

    fn layout(
        scope: &AwsLogsScope,
        regions: &[String],
        bucket: &str,
        service: &'static str,
        (since, until): (OffsetDateTime, OffsetDateTime),
    ) -> AwsLogsLayout {
        AwsLogsLayout {
            bucket: bucket.to_owned(),
            prefix: scope.prefix.clone(),
            service,
            accounts: scope.accounts.clone(),
            regions: regions.to_vec(),
            since,
            until,
        }
    }

    /// The collectors of `a`; `regions` are the regions read from a bucket,
    /// or asked through LookupEvents (default: the clients' region).
    pub(super) async fn collectors(
        app: &App,
        a: &AwsLogs,
        regions: &[String],
    ) -> Result<Vec<Box<dyn Collector>>, LogsError> {
        let until = a.until.unwrap_or_else(|| app.clock.now());
        if a.since >= until {
            return Err(LogsError::Window {
                since: crate::clock::rfc3339(a.since),
                until: crate::clock::rfc3339(until),
            });
        }
        let window = (a.since, until);
        let aws = app.aws().await?;
        let s3_logs = |bucket: &str, objects, format, account| -> Box<dyn Collector> {
            Box::new(S3Logs {
                s3: aws.s3(),
                bucket: bucket.to_owned(),
                objects,
                format,
                region: aws.region(),
                account,
            })
        };
        let listing = |what: String| move |source| LogsError::Listing { what, source };
        Ok(match &a.kind {
            AwsLogsKind::Cloudtrail { bucket, scope } => {
                let layout = layout(scope, regions, bucket, "CloudTrail", window);
                let objects = crate::collect::logs::aws_logs_objects(&aws.s3(), &layout)
                    .await
                    .map_err(listing(format!("the trail's logs in s3://{bucket}")))?;
                if objects.is_empty() {
                    let prefix = if scope.prefix.is_empty() {
                        String::new()
                    } else {
                        format!("{}/", scope.prefix.trim_end_matches('/'))
                    };
                    return Err(LogsError::NoLogs(format!(
                        "no CloudTrail log files in s3://{bucket}/{prefix}AWSLogs/ for {} to {}",
                        crate::clock::rfc3339(window.0),
                        crate::clock::rfc3339(window.1)
                    )));
                }
                vec![s3_logs(
                    bucket,
                    objects,
                    Format::Cloudtrail,
                    scope.account(),
                )]
            }
            AwsLogsKind::Lookup => {
                let regions = if regions.is_empty() {
                    vec![aws.region().ok_or(LogsError::NoRegion)?]
                } else {
                    regions.to_vec()
                };
                let scope = app
                    .aws_options
                    .endpoint
                    .clone()
                    .unwrap_or_else(|| "aws".into());
                regions
                    .into_iter()
                    .map(|region| {
                        Box::new(LookupEvents {
                            cloudtrail: aws.in_region(&region).cloudtrail(),
                            region,
                            scope: scope.clone(),
                            since: window.0,
                            until: window.1,
                            resource: None,
                        }) as Box<dyn Collector>
                    })
                    .collect()
            }
            AwsLogsKind::VpcFlowGroup { group } => vec![Box::new(CloudWatchLogs {
                logs: aws.cloudwatch_logs(),
                group: group.clone(),
                region: aws.region(),
                format: Format::VpcFlowCloudwatch,
                since: window.0,
                until: window.1,
                streams: Vec::new(),
                stream_prefix: None,
            })],
            AwsLogsKind::Group {
                group,
                stream_prefix,
                format,
            } => vec![Box::new(CloudWatchLogs {
                logs: aws.cloudwatch_logs(),
                group: group.clone(),
                region: aws.region(),
                format: *format,
                since: window.0,
                until: window.1,
                streams: Vec::new(),
                stream_prefix: stream_prefix.clone(),
            })],
            AwsLogsKind::VpcFlowBucket { bucket, scope } => {
                let layout = layout(scope, regions, bucket, "vpcflowlogs", window);
                let objects = crate::collect::logs::aws_logs_objects(&aws.s3(), &layout)
                    .await
                    .map_err(listing(format!("the flow logs in s3://{bucket}")))?;
                if objects.is_empty() {
                    return Err(LogsError::NoLogs(format!(
                        "no flow log files in s3://{bucket} for the window"
                    )));
                }
                vec![s3_logs(bucket, objects, Format::VpcFlow, scope.account())]
            }
            AwsLogsKind::S3Access { bucket, prefix } => {
                let objects = crate::collect::logs::access_log_objects(
                    &aws.s3(),
                    bucket,
                    prefix,
                    window.0,
                    window.1,
                )
                .await
                .map_err(listing(format!("the access logs in s3://{bucket}")))?;
                if objects.is_empty() {
                    return Err(LogsError::NoLogs(format!(
                        "no access log files under s3://{bucket}/{prefix} for the window"
                    )));
                }
                vec![s3_logs(bucket, objects, Format::S3Access, None)]
            }
        })
    }
}
