//! Cloud logs, collected as artefacts with their original bytes.
//!
//! - [`S3Logs`]: log files from an S3 bucket (CloudTrail with its digest
//!   files, VPC flow logs, S3 server access logs), as one tar bundle whose
//!   members are the objects under their keys, byte for byte, followed by
//!   `index.json` (key, member, size, ETag, version, last modified,
//!   SHA-256, and for CloudTrail's digest files their S3 user metadata,
//!   where CloudTrail keeps each digest's `signature` and
//!   `signature-algorithm`: the tar holds bodies only, and the trail's
//!   integrity check, `engine::trail`, needs both). A key that is not a
//!   safe path (`..` or `.` segments, a leading or doubled `/`, NUL) is
//!   percent-encoded into its member name ([`member::member_name`]); an
//!   object that cannot be fetched or stored is a note and an `error` in
//!   the index, never the end of the bundle.
//! - [`LookupEvents`]: CloudTrail management events through LookupEvents,
//!   for accounts without a trail bucket: one JSON line per event, as AWS
//!   returned it, at AWS's limit of 2 requests per second per region.
//! - [`CloudWatchLogs`]: log events of a CloudWatch Logs group (flow logs
//!   delivered there), one JSON line per event.

use std::collections::BTreeMap;
use std::io::{self, Write};

use async_trait::async_trait;
use serde::Serialize;
use sha2::{Digest as _, Sha256};
use time::OffsetDateTime;

use super::member::{self, Appended, CountingWriter};
use super::{CollectError, Collected, Collector, SourceEnd, channel};
use crate::evidence::case::{AcquireContext, AcquireRequest, acquire};
use crate::evidence::{ArtefactKind, Source};
use crate::ids::CaseId;
use crate::timeline::parse::Format;

/// LookupEvents: 2 requests per second per account and region (AWS's quota).
pub const LOOKUP_EVENTS_PER_SECOND: u32 = 2;
/// Events per LookupEvents page: the API's maximum.
const LOOKUP_PAGE: i32 = 50;

/// The days (UTC) a window touches, as `YYYY/MM/DD`.
pub fn days(since: OffsetDateTime, until: OffsetDateTime) -> Vec<String> {
    let mut out = Vec::new();
    let mut d = since.date();
    let last = until.date();
    // A window of years is still bounded: one entry per day.
    while d <= last {
        out.push(format!(
            "{:04}/{:02}/{:02}",
            d.year(),
            u8::from(d.month()),
            d.day()
        ));
        match d.next_day() {
            Some(n) => d = n,
            None => break,
        }
    }
    out
}

fn cloud(e: impl std::error::Error + Send + Sync + 'static) -> CollectError {
    CollectError::Cloud(Box::new(e))
}

#[derive(Debug, thiserror::Error)]
#[error("{call} on {resource}: {detail}")]
pub struct LogsApiError {
    pub call: &'static str,
    pub resource: String,
    pub detail: String,
}

fn api_err(
    call: &'static str,
    resource: &str,
    e: &(dyn std::error::Error + 'static),
) -> CollectError {
    cloud(LogsApiError {
        call,
        resource: resource.to_owned(),
        detail: crate::aws::brief(e),
    })
}

/// Lists the common prefixes one level below `prefix`.
async fn subdirs(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    prefix: &str,
) -> Result<Vec<String>, CollectError> {
    let mut out = Vec::new();
    let mut pages = s3
        .list_objects_v2()
        .bucket(bucket)
        .prefix(prefix)
        .delimiter("/")
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page =
            page.map_err(|e| api_err("s3:ListObjectsV2", &format!("s3://{bucket}/{prefix}"), &e))?;
        out.extend(
            page.common_prefixes()
                .iter()
                .filter_map(|p| p.prefix().map(str::to_owned)),
        );
    }
    Ok(out)
}

/// An object to collect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogObject {
    pub key: String,
    pub size: u64,
}

async fn objects(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    prefix: &str,
) -> Result<Vec<LogObject>, CollectError> {
    let mut out = Vec::new();
    let mut pages = s3
        .list_objects_v2()
        .bucket(bucket)
        .prefix(prefix)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page =
            page.map_err(|e| api_err("s3:ListObjectsV2", &format!("s3://{bucket}/{prefix}"), &e))?;
        for o in page.contents() {
            if let Some(k) = o.key() {
                out.push(LogObject {
                    key: k.to_owned(),
                    size: o.size().and_then(|s| u64::try_from(s).ok()).unwrap_or(0),
                });
            }
        }
    }
    Ok(out)
}

/// Which logs under `AWSLogs/` of a bucket.
#[derive(Debug, Clone)]
pub struct AwsLogsLayout {
    pub bucket: String,
    /// The prefix the trail or flow log was configured with ("" for none).
    pub prefix: String,
    /// `CloudTrail` (digests under `CloudTrail-Digest` come with it) or `vpcflowlogs`.
    pub service: &'static str,
    /// Accounts to read; empty: every account in the bucket.
    pub accounts: Vec<String>,
    /// Regions to read; empty: every region found.
    pub regions: Vec<String>,
    pub since: OffsetDateTime,
    pub until: OffsetDateTime,
}

/// The objects of an `AWSLogs/<account>/<service>/<region>/YYYY/MM/DD/`
/// layout in a window, listing only the days it touches. Organisation
/// trails add a level (`AWSLogs/o-…/<account>/`), which is followed.
pub async fn aws_logs_objects(
    s3: &aws_sdk_s3::Client,
    l: &AwsLogsLayout,
) -> Result<Vec<LogObject>, CollectError> {
    let base = if l.prefix.is_empty() {
        "AWSLogs/".to_owned()
    } else {
        format!("{}/AWSLogs/", l.prefix.trim_end_matches('/'))
    };
    let mut account_dirs = Vec::new();
    if l.accounts.is_empty() {
        for d in subdirs(s3, &l.bucket, &base).await? {
            let last = d
                .trim_end_matches('/')
                .rsplit('/')
                .next()
                .unwrap_or_default();
            if last.starts_with("o-") {
                account_dirs.extend(subdirs(s3, &l.bucket, &d).await?);
            } else {
                account_dirs.push(d);
            }
        }
    } else {
        account_dirs.extend(l.accounts.iter().map(|a| format!("{base}{a}/")));
    }
    let services: Vec<String> = if l.service == "CloudTrail" {
        vec!["CloudTrail".into(), "CloudTrail-Digest".into()]
    } else {
        vec![l.service.to_owned()]
    };
    let days = days(l.since, l.until);
    let mut out = Vec::new();
    for acct in &account_dirs {
        for service in &services {
            let service_dir = format!("{acct}{service}/");
            let regions = if l.regions.is_empty() {
                subdirs(s3, &l.bucket, &service_dir).await?
            } else {
                l.regions
                    .iter()
                    .map(|r| format!("{service_dir}{r}/"))
                    .collect()
            };
            for region in &regions {
                for day in &days {
                    out.extend(objects(s3, &l.bucket, &format!("{region}{day}/")).await?);
                }
            }
        }
    }
    Ok(out)
}

/// S3 server access log objects under `prefix` for the days of a window:
/// the simple key format (`prefix` + `YYYY-MM-DD-HH-MM-SS-…`) and the
/// date-partitioned one (`…/YYYY/MM/DD/…`).
pub async fn access_log_objects(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    prefix: &str,
    since: OffsetDateTime,
    until: OffsetDateTime,
) -> Result<Vec<LogObject>, CollectError> {
    let days = days(since, until);
    let dashed: Vec<String> = days.iter().map(|d| d.replace('/', "-")).collect();
    let all = objects(s3, bucket, prefix).await?;
    Ok(all
        .into_iter()
        .filter(|o| {
            let name = o.key.rsplit('/').next().unwrap_or_default();
            dashed.iter().any(|d| name.starts_with(d.as_str()))
                || days.iter().any(|d| o.key.contains(&format!("/{d}/")))
        })
        .collect())
}

#[derive(Debug, Serialize)]
struct IndexEntry {
    key: String,
    /// The tar member holding the object: the key, encoded where it must be
    /// (`..` segments, a leading `/`, NUL: see [`member::member_name`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    member: Option<String>,
    size: u64,
    sha256: Option<String>,
    etag: Option<String>,
    version_id: Option<String>,
    last_modified: Option<String>,
    /// A digest file's S3 user metadata (`signature`, `signature-algorithm`,
    /// `backfill-generation-timestamp`), as S3 returned it.
    #[serde(skip_serializing_if = "Option::is_none")]
    metadata: Option<BTreeMap<String, String>>,
    error: Option<String>,
}

/// Whether `key` is one of CloudTrail's digest files, whose signature is
/// in the object's metadata rather than its body.
pub fn is_digest_key(key: &str) -> bool {
    key.contains("/CloudTrail-Digest/")
}

/// Log objects of one bucket as one bundle artefact.
#[derive(Debug, Clone)]
pub struct S3Logs {
    pub s3: aws_sdk_s3::Client,
    pub bucket: String,
    pub objects: Vec<LogObject>,
    pub format: Format,
    pub region: Option<String>,
    pub account: Option<String>,
}

#[async_trait]
impl Collector for S3Logs {
    fn describe(&self) -> String {
        format!(
            "{} logs: {} objects of s3://{}",
            self.format.name(),
            self.objects.len(),
            self.bucket
        )
    }

    async fn collect(
        &self,
        ctx: &AcquireContext,
        case: &CaseId,
    ) -> Result<Collected, CollectError> {
        let handle = tokio::runtime::Handle::current();
        let me = self.clone();
        let total: u64 = self.objects.iter().map(|o| o.size).sum();
        let reader = channel::spawn(move |w| me.bundle(&handle, w));
        let artefact = acquire(
            ctx,
            AcquireRequest {
                case: case.clone(),
                kind: ArtefactKind::LogBundle,
                source: Source {
                    resource: format!("s3://{}", self.bucket),
                    region: self.region.clone(),
                    account: self.account.clone(),
                    log_format: Some(self.format.name().to_owned()),
                    ..Source::default()
                },
                reader: Box::new(reader),
                size_hint: Some(total),
                notes: Vec::new(),
            },
        )
        .await?;
        Ok(Collected {
            artefacts: vec![artefact],
            failures: Vec::new(),
        })
    }
}

impl S3Logs {
    /// Writes the tar: each object as it is stored, then the index. Runs on
    /// the producer thread; each download is driven on the runtime. An
    /// object that cannot be fetched or stored is noted and left out; only a
    /// failing output ends the bundle.
    fn bundle(&self, rt: &tokio::runtime::Handle, w: &mut dyn Write) -> io::Result<SourceEnd> {
        let mut tar = tar::Builder::new(CountingWriter::new(w));
        tar.mode(tar::HeaderMode::Deterministic);
        let mut index = Vec::with_capacity(self.objects.len());
        let mut notes = Vec::new();
        for o in &self.objects {
            let got = rt.block_on(async {
                let out = self
                    .s3
                    .get_object()
                    .bucket(&self.bucket)
                    .key(&o.key)
                    .send()
                    .await
                    .map_err(|e| crate::aws::brief(&e))?;
                let etag = out.e_tag().map(str::to_owned);
                let version = out.version_id().map(str::to_owned);
                let modified = out.last_modified().map(|t| t.to_string());
                let metadata = is_digest_key(&o.key).then(|| {
                    out.metadata()
                        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                        .unwrap_or_default()
                });
                let body = out
                    .body
                    .collect()
                    .await
                    .map_err(|e| e.to_string())?
                    .into_bytes();
                Ok::<_, String>((body, etag, version, modified, metadata))
            });
            // Keys are the bucket writer's choice: `a/../x`, `/x` and NUL
            // are legal in S3 and must not reach (or stop) an extractor.
            let name = member::member_name(o.key.as_bytes());
            let got = match got {
                Ok(obj) => {
                    let mut h = tar::Header::new_gnu();
                    h.set_size(obj.0.len() as u64);
                    h.set_mode(0o644);
                    h.set_entry_type(tar::EntryType::Regular);
                    match member::append(&mut tar, |t| {
                        t.append_data(&mut h, &name, obj.0.as_ref())
                    })? {
                        Appended::Stored => Ok(obj),
                        Appended::Refused(e) => {
                            Err(format!("not stored in the bundle as {name}: {e}"))
                        }
                    }
                }
                Err(e) => Err(e),
            };
            match got {
                Ok((body, etag, version_id, last_modified, metadata)) => {
                    if name != o.key {
                        notes.push(format!(
                            "s3://{}/{} is not a safe path in an archive; stored as {name} (index.json has its key)",
                            self.bucket, o.key
                        ));
                    }
                    index.push(IndexEntry {
                        key: o.key.clone(),
                        member: Some(name),
                        size: body.len() as u64,
                        sha256: Some(hex::encode(Sha256::digest(&body))),
                        etag,
                        version_id,
                        last_modified,
                        metadata,
                        error: None,
                    });
                }
                Err(e) => {
                    tracing::warn!(key = %o.key, error = %e, "log object not collected");
                    notes.push(format!("s3://{}/{} not collected: {e}", self.bucket, o.key));
                    index.push(IndexEntry {
                        key: o.key.clone(),
                        size: o.size,
                        sha256: None,
                        etag: None,
                        version_id: None,
                        last_modified: None,
                        member: None,
                        metadata: None,
                        error: Some(e),
                    });
                }
            }
        }
        let json = serde_json::to_vec_pretty(&serde_json::json!({
            "format": "custody-log-bundle-1",
            "bucket": self.bucket,
            "log_format": self.format.name(),
            "objects": index,
        }))
        .map_err(io::Error::other)?;
        let mut h = tar::Header::new_gnu();
        h.set_size(json.len() as u64);
        h.set_mode(0o644);
        tar.append_data(&mut h, "index.json", json.as_slice())?;
        tar.finish()?;
        Ok(SourceEnd {
            notes,
            ..SourceEnd::default()
        })
    }
}

/// CloudTrail management events of one region through LookupEvents.
#[derive(Debug, Clone)]
pub struct LookupEvents {
    pub cloudtrail: aws_sdk_cloudtrail::Client,
    pub region: String,
    /// Budget key part: the account or endpoint the calls go to.
    pub scope: String,
    pub since: OffsetDateTime,
    pub until: OffsetDateTime,
    /// Only the events naming this resource (an instance id).
    pub resource: Option<String>,
}

impl LookupEvents {
    /// Every event of the window, one CloudTrail record (JSON) per line.
    pub async fn fetch(&self) -> Result<(Vec<u8>, u64), CollectError> {
        let budget = crate::aws::rate::budget(
            &format!("cloudtrail-lookup:{}:{}", self.scope, self.region),
            LOOKUP_EVENTS_PER_SECOND,
        );
        let to_dt = |t: OffsetDateTime| {
            aws_sdk_cloudtrail::primitives::DateTime::from_secs(t.unix_timestamp())
        };
        let attributes = match &self.resource {
            Some(r) => Some(vec![
                aws_sdk_cloudtrail::types::LookupAttribute::builder()
                    .attribute_key(aws_sdk_cloudtrail::types::LookupAttributeKey::ResourceName)
                    .attribute_value(r)
                    .build()
                    .map_err(|e| CollectError::Cloud(Box::new(e)))?,
            ]),
            None => None,
        };
        let mut out = Vec::new();
        let mut n = 0u64;
        let mut token: Option<String> = None;
        loop {
            crate::aws::rate::acquire(std::slice::from_ref(&budget)).await;
            let page = self
                .cloudtrail
                .lookup_events()
                .start_time(to_dt(self.since))
                .end_time(to_dt(self.until))
                .max_results(LOOKUP_PAGE)
                .set_lookup_attributes(attributes.clone())
                .set_next_token(token.clone())
                .send()
                .await
                .map_err(|e| api_err("cloudtrail:LookupEvents", &self.region, &e))?;
            for e in page.events() {
                if let Some(raw) = e.cloud_trail_event() {
                    // One line per event: the record exactly as AWS returned it, minus newlines.
                    out.extend(raw.replace('\n', " ").as_bytes());
                    out.push(b'\n');
                    n += 1;
                }
            }
            token = page
                .next_token()
                .map(str::to_owned)
                .filter(|t| !t.is_empty());
            if token.is_none() {
                break;
            }
        }
        Ok((out, n))
    }
}

#[async_trait]
impl Collector for LookupEvents {
    fn describe(&self) -> String {
        format!("cloudtrail LookupEvents in {}", self.region)
    }

    async fn collect(
        &self,
        ctx: &AcquireContext,
        case: &CaseId,
    ) -> Result<Collected, CollectError> {
        let (bytes, n) = self.fetch().await?;
        lines_artefact(
            ctx,
            case,
            bytes,
            Source {
                resource: format!("cloudtrail:LookupEvents:{}", self.region),
                region: Some(self.region.clone()),
                log_format: Some(Format::CloudtrailLookup.name().to_owned()),
                ..Source::default()
            },
            format!(
                "{n} events from LookupEvents between {} and {}",
                self.since, self.until
            ),
        )
        .await
    }
}

/// Log events of a CloudWatch Logs group in a window: all its streams,
/// the streams named, or those whose names start with a prefix.
#[derive(Debug, Clone)]
pub struct CloudWatchLogs {
    pub logs: aws_sdk_cloudwatchlogs::Client,
    pub group: String,
    pub region: Option<String>,
    pub format: Format,
    pub since: OffsetDateTime,
    pub until: OffsetDateTime,
    /// Only these streams (an ECS task's `awslogs` streams).
    pub streams: Vec<String>,
    /// Only streams named so (`kube-apiserver-audit` of an EKS cluster).
    pub stream_prefix: Option<String>,
}

/// FilterLogEvents takes at most this many stream names at once.
const STREAMS_PER_CALL: usize = 100;

#[async_trait]
impl Collector for CloudWatchLogs {
    fn describe(&self) -> String {
        format!("CloudWatch Logs group {}", self.group)
    }

    async fn collect(
        &self,
        ctx: &AcquireContext,
        case: &CaseId,
    ) -> Result<Collected, CollectError> {
        let ms = |t: OffsetDateTime| {
            i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
        };
        let mut out = Vec::new();
        let mut n = 0u64;
        let chunks: Vec<Option<&[String]>> = if self.streams.is_empty() {
            vec![None]
        } else {
            self.streams.chunks(STREAMS_PER_CALL).map(Some).collect()
        };
        for streams in chunks {
            let mut pages = self
                .logs
                .filter_log_events()
                .log_group_name(&self.group)
                .start_time(ms(self.since))
                .end_time(ms(self.until))
                .set_log_stream_names(streams.map(<[String]>::to_vec))
                .set_log_stream_name_prefix(self.stream_prefix.clone())
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                let page = page.map_err(|e| api_err("logs:FilterLogEvents", &self.group, &e))?;
                for e in page.events() {
                    let line = serde_json::json!({
                        "timestamp": e.timestamp(),
                        "message": e.message(),
                        "ingestionTime": e.ingestion_time(),
                        "logStreamName": e.log_stream_name(),
                        "eventId": e.event_id(),
                    });
                    out.extend(line.to_string().as_bytes());
                    out.push(b'\n');
                    n += 1;
                }
            }
        }
        lines_artefact(
            ctx,
            case,
            out,
            Source {
                resource: format!("logs:{}", self.group),
                region: self.region.clone(),
                log_format: Some(self.format.name().to_owned()),
                ..Source::default()
            },
            format!("{n} log events between {} and {}", self.since, self.until),
        )
        .await
    }
}

async fn lines_artefact(
    ctx: &AcquireContext,
    case: &CaseId,
    bytes: Vec<u8>,
    source: Source,
    note: String,
) -> Result<Collected, CollectError> {
    let size = bytes.len() as u64;
    let reader = channel::spawn(move |w| {
        w.write_all(&bytes)?;
        Ok(SourceEnd::default())
    });
    let artefact = acquire(
        ctx,
        AcquireRequest {
            case: case.clone(),
            kind: ArtefactKind::File,
            source,
            reader: Box::new(reader),
            size_hint: Some(size),
            notes: vec![note],
        },
    )
    .await?;
    Ok(Collected {
        artefacts: vec![artefact],
        failures: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_lists_each_day_it_touches() {
        let t = |s: &str| {
            OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).expect("t")
        };
        assert_eq!(
            days(t("2021-05-31T23:00:00Z"), t("2021-06-02T00:00:00Z")),
            ["2021/05/31", "2021/06/01", "2021/06/02"]
        );
        assert_eq!(
            days(t("2021-06-02T00:00:00Z"), t("2021-06-01T00:00:00Z")),
            Vec::<String>::new()
        );
    }
}
