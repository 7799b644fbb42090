//! Memory acquisition of an EC2 instance through SSM Run Command.
//!
//! The instance must be managed by SSM and online. custody starts a
//! multipart upload on one staging key of the evidence bucket, presigns an
//! UploadPart URL for each part (valid for that key only, expiring after the
//! timeout), and sends [`SCRIPT`] with AWS-RunShellScript: on the host,
//! `avml` streams the LiME image through `split`, each part buffered in
//! `/dev/shm` and PUT to its URL, so the suspect host never holds a
//! credential. custody waits for the command, completes the upload from
//! S3's own list of parts, then reads the staged object back through the
//! normal pipeline, so the artefact is hashed, compressed and recorded like
//! every other.
//!
//! Whatever stops it (not managed, offline, the command failed or timed
//! out, nothing uploaded), the upload is aborted and a signed `not_acquired`
//! entry records the reason: [`MemoryCollector::acquire_memory`] returns a
//! [`MemoryOutcome`] so a response can go on without the memory.

use std::io::{self, Read};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use sha2::{Digest as _, Sha256};

use super::{CollectError, Collected, Collector, SourceEnd, SourceReader};
use crate::aws::{ApiError, ApiErrorKind};
use crate::evidence::case::{AcquireContext, AcquireRequest, acquire};
use crate::evidence::{Artefact, ArtefactKind, Source};
use crate::ids::CaseId;
use crate::ledger::entry::Action;

/// The script the instance runs (POSIX sh); custody puts the values it
/// needs above it.
pub const SCRIPT: &str = include_str!("memory.sh");
/// Longest wait for the command, by default: 30 minutes, enough for most
/// instances' memory at the tens of MB/s a host uploads.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1800);
/// 64 MiB parts: each is held in the host's RAM while it uploads, so small;
/// far above S3's 5 MiB minimum.
pub const DEFAULT_PART_SIZE: u64 = 64 << 20;
/// S3's smallest part (but the last).
pub const MIN_PART_SIZE: u64 = 5 << 20;
/// S3's largest part.
const MAX_PART_SIZE: u64 = 5 << 30;
/// S3 allows at most 10,000 parts per upload.
const MAX_PARTS: u64 = 10_000;
/// Parts grow past [`DEFAULT_PART_SIZE`] to keep at most this many: each
/// part's signature travels in the SendCommand parameters (65 bytes each),
/// and the command must stay small.
const TARGET_PARTS: u64 = 128;
/// How long the presigned URLs outlive the timeout: delivery of the command
/// and clock skew. SigV4 URLs live at most 7 days.
const URL_MARGIN: Duration = Duration::from_secs(600);
const MAX_URL_LIFE: Duration = Duration::from_secs(7 * 24 * 3600);
/// Longest wait between two polls of the command.
const MAX_POLL: Duration = Duration::from_secs(5);
/// Placeholders of the URL template the script fills in.
const PART_MARK: &str = "@PART@";
const SIG_MARK: &str = "@SIG@";
const _: () = assert!(DEFAULT_PART_SIZE >= MIN_PART_SIZE && DEFAULT_PART_SIZE <= MAX_PART_SIZE);

/// Where the host uploads the image: one key under this bucket and prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Staging {
    pub bucket: String,
    pub prefix: String,
}

impl Staging {
    /// `s3://bucket/prefix`.
    pub fn parse(url: &str) -> Result<Self, MemoryError> {
        let bad = |why: &str| MemoryError::Staging {
            url: url.to_owned(),
            reason: why.to_owned(),
        };
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| bad("it is not an s3:// URL"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(bad("no bucket name"));
        }
        Ok(Self {
            bucket: bucket.to_owned(),
            prefix: prefix.trim_matches('/').to_owned(),
        })
    }

    fn key(&self, case: &CaseId, instance: &str) -> String {
        let name = format!(
            "staging/{case}/memory-{instance}-{}.lime",
            uuid::Uuid::new_v4().simple()
        );
        if self.prefix.is_empty() {
            name
        } else {
            format!("{}/{name}", self.prefix)
        }
    }
}

/// An operator-provided avml build in S3, fetched by the host through a
/// presigned GET and checked against its SHA-256 before it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AvmlTool {
    pub bucket: String,
    pub key: String,
    /// Lower-case hex.
    pub sha256: String,
}

/// Memory acquisition of one instance through SSM Run Command.
#[derive(Clone)]
pub struct MemoryCollector {
    pub ssm: aws_sdk_ssm::Client,
    pub ec2: aws_sdk_ec2::Client,
    pub s3: aws_sdk_s3::Client,
    pub instance: String,
    pub staging: Staging,
    /// `None`: `avml` from the host's PATH.
    pub avml: Option<AvmlTool>,
    /// Longest wait for the command to finish.
    pub timeout: Duration,
    /// Bytes per part; `None` sizes parts from the instance type's memory.
    pub part_size: Option<u64>,
    /// First wait between polls of the command (it doubles, up to 5 s).
    pub poll: Duration,
    pub region: Option<String>,
}

impl std::fmt::Debug for MemoryCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryCollector")
            .field("instance", &self.instance)
            .field("staging", &self.staging)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MemoryError {
    #[error("staging location {url} is unusable: {reason}")]
    Staging { url: String, reason: String },
    #[error("{instance} is not managed by SSM (DescribeInstanceInformation does not list it)")]
    NotManaged { instance: String },
    #[error("{instance} is managed by SSM but not online (PingStatus {status})")]
    Offline { instance: String, status: String },
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error(
        "the memory of {instance} ({mib} MiB) does not fit in {MAX_PARTS} parts of {part_size} bytes"
    )]
    TooLarge {
        instance: String,
        mib: u64,
        part_size: u64,
    },
    #[error("SSM command {command} on {instance} ended {status}: {detail}")]
    CommandFailed {
        command: String,
        instance: String,
        status: String,
        detail: String,
    },
    #[error("SSM command {command} on {instance} did not finish within {secs} s; it was cancelled")]
    Timeout {
        command: String,
        instance: String,
        secs: u64,
    },
    #[error("interrupted while SSM command {command} ran on {instance}; it was cancelled")]
    Interrupted { command: String, instance: String },
    #[error("SSM command {command} succeeded but uploaded nothing to {key}")]
    NothingUploaded { command: String, key: String },
    #[error("SSM command {command} uploaded parts {parts:?} to {key}: not a contiguous run from 1")]
    PartsMissing {
        command: String,
        key: String,
        parts: Vec<i32>,
    },
    #[error("the image staged at {key} could not be read into the case")]
    ReadBack {
        key: String,
        #[source]
        source: crate::evidence::case::EvidenceError,
    },
}

/// How a memory acquisition ended: the caller (a response) goes on either way.
#[derive(Debug)]
pub enum MemoryOutcome {
    Acquired {
        artefact: Box<Artefact>,
        command_id: String,
    },
    /// Recorded in the ledger as `not_acquired` with this reason.
    NotAcquired {
        reason: String,
        command_id: Option<String>,
    },
}

/// The parts plan: how many, how large.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartPlan {
    pub part_size: u64,
    pub parts: u64,
}

/// Parts for an instance with `mib` MiB of memory: a quarter more than the
/// memory plus 64 MiB, as the LiME image carries headers and the
/// instance's ranges may not add up to its nominal size.
pub fn plan_parts(mib: u64, part_size: Option<u64>) -> Option<PartPlan> {
    let capacity = mib.saturating_mul(5 << 20) / 4 + (64 << 20);
    let part_size = match part_size {
        Some(p) => p.clamp(MIN_PART_SIZE, MAX_PART_SIZE),
        None => {
            let even = capacity.div_ceil(TARGET_PARTS).div_ceil(1 << 20) << 20;
            even.clamp(DEFAULT_PART_SIZE, MAX_PART_SIZE)
        }
    };
    let parts = capacity.div_ceil(part_size);
    (parts <= MAX_PARTS).then_some(PartPlan { part_size, parts })
}

/// Single-quotes `s` for sh.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The presigned URLs of every part as one template and a signature per
/// part. Each URL is checked to be exactly the template with its part
/// number and signature put in, so the host uses the URLs the SDK made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlTemplate {
    pub template: String,
    pub signatures: Vec<String>,
}

impl UrlTemplate {
    pub fn url(&self, part: usize) -> Option<String> {
        let sig = self.signatures.get(part.checked_sub(1)?)?;
        Some(
            self.template
                .replacen(PART_MARK, &part.to_string(), 1)
                .replacen(SIG_MARK, sig, 1),
        )
    }
}

/// The template and signature of presigned URL `uri` for `part`.
fn templated(uri: &str, part: u64) -> Option<(String, String)> {
    let url = url::Url::parse(uri).ok()?;
    let q = |name: &str| {
        url.query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    };
    let sig = q("X-Amz-Signature")
        .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit()))?;
    if q("partNumber")? != part.to_string() {
        return None;
    }
    let t = uri
        .replacen(
            &format!("X-Amz-Signature={sig}"),
            &format!("X-Amz-Signature={SIG_MARK}"),
            1,
        )
        .replacen(
            &format!("partNumber={part}"),
            &format!("partNumber={PART_MARK}"),
            1,
        );
    let once = |m: &str| t.matches(m).count() == 1;
    let back = t
        .replacen(PART_MARK, &part.to_string(), 1)
        .replacen(SIG_MARK, &sig, 1);
    (once(PART_MARK) && once(SIG_MARK) && back == uri).then_some((t, sig))
}

/// The text sent as AWS-RunShellScript `commands`: the values, then the script.
pub fn command_text(plan: PartPlan, urls: &UrlTemplate, avml: Option<(&str, &str)>) -> String {
    let mut s = String::from("#!/bin/sh\n");
    s.push_str(&format!("CUSTODY_PART_SIZE={}\n", plan.part_size));
    s.push_str(&format!("CUSTODY_PARTS={}\n", urls.signatures.len()));
    s.push_str(&format!("CUSTODY_URL={}\n", sh_quote(&urls.template)));
    s.push_str(&format!(
        "CUSTODY_SIGS={}\n",
        sh_quote(&urls.signatures.join(" "))
    ));
    if let Some((url, sha)) = avml {
        s.push_str(&format!("CUSTODY_AVML_URL={}\n", sh_quote(url)));
        s.push_str(&format!("CUSTODY_AVML_SHA256={}\n", sh_quote(sha)));
    }
    // Without the script's own shebang line, and without its comment-only
    // lines: SSM limits the size of a command.
    for line in SCRIPT.lines() {
        let t = line.trim_start();
        if t.starts_with('#') && !t.starts_with("# shellcheck") {
            continue;
        }
        s.push_str(line);
        s.push('\n');
    }
    s
}

/// The staged upload: abort it unless it was completed.
struct Upload {
    bucket: String,
    key: String,
    id: String,
}

impl MemoryCollector {
    fn place(&self) -> Source {
        Source {
            resource: self.instance.clone(),
            region: self.region.clone(),
            path: Some("memory".to_owned()),
            ..Source::default()
        }
    }

    /// Captures the instance's memory into `case`, or records why not.
    pub async fn acquire_memory(&self, ctx: &AcquireContext, case: &CaseId) -> MemoryOutcome {
        let mut state = RunState::default();
        match self.run(ctx, case, &mut state).await {
            Ok(artefact) => MemoryOutcome::Acquired {
                artefact: Box::new(artefact),
                command_id: state.command_id.unwrap_or_default(),
            },
            Err(e) => {
                let reason = crate::error_chain(&e);
                tracing::warn!(instance = %self.instance, %reason, "memory not acquired");
                if let Some(rec) = &ctx.recorder {
                    let detail = serde_json::json!({
                        "what": "memory",
                        "reason": reason,
                        "command_id": state.command_id,
                        "staging_key": state.key.as_ref().map(|k| format!("s3://{}/{k}", self.staging.bucket)),
                        "request_ids": state.request_ids,
                    });
                    if let Err(le) = rec.record(
                        Some(case),
                        Action::NotAcquired,
                        None,
                        Some(self.place()),
                        Some(detail),
                    ) {
                        tracing::error!(error = %crate::error_chain(&le), "cannot record that memory was not acquired");
                    }
                }
                MemoryOutcome::NotAcquired {
                    reason,
                    command_id: state.command_id,
                }
            }
        }
    }

    async fn run(
        &self,
        ctx: &AcquireContext,
        case: &CaseId,
        state: &mut RunState,
    ) -> Result<Artefact, MemoryError> {
        self.check_managed(state).await?;
        let mib = self.memory_mib().await?;
        let plan = plan_parts(mib, self.part_size).ok_or_else(|| MemoryError::TooLarge {
            instance: self.instance.clone(),
            mib,
            part_size: self.part_size.unwrap_or(MAX_PART_SIZE),
        })?;
        let key = self.staging.key(case, &self.instance);
        state.key = Some(key.clone());
        let created = self
            .s3
            .create_multipart_upload()
            .bucket(&self.staging.bucket)
            .key(&key)
            .send()
            .await
            .map_err(|e| ApiError::sdk("start the staging upload of", &key, e))?;
        state.request_id("CreateMultipartUpload", s3_request_id(&created));
        let upload = Upload {
            bucket: self.staging.bucket.clone(),
            key: key.clone(),
            id: created.upload_id().unwrap_or_default().to_owned(),
        };
        let result = self.staged(ctx, case, plan, &upload, state).await;
        if result.is_err() && !state.completed {
            // Parts sent so far are dropped: nothing is left half-uploaded.
            match self
                .s3
                .abort_multipart_upload()
                .bucket(&upload.bucket)
                .key(&upload.key)
                .upload_id(&upload.id)
                .send()
                .await
            {
                Ok(out) => state.request_id("AbortMultipartUpload", s3_request_id(&out)),
                Err(e) => {
                    tracing::warn!(key = %upload.key, error = %crate::aws::brief(&e), "could not abort the staging upload")
                }
            }
        }
        result
    }

    async fn check_managed(&self, state: &mut RunState) -> Result<(), MemoryError> {
        use aws_sdk_ssm::types::InstanceInformationStringFilter;
        let out = self
            .ssm
            .describe_instance_information()
            .filters(
                InstanceInformationStringFilter::builder()
                    .key("InstanceIds")
                    .values(&self.instance)
                    .build()
                    .map_err(|e| {
                        ApiError::other("describe", &self.instance, crate::aws::brief(&e))
                    })?,
            )
            .send()
            .await
            .map_err(|e| ApiError::sdk("check whether SSM manages", &self.instance, e))?;
        state.request_id("DescribeInstanceInformation", ssm_request_id(&out));
        let info = out
            .instance_information_list()
            .iter()
            .find(|i| i.instance_id() == Some(self.instance.as_str()))
            .ok_or_else(|| MemoryError::NotManaged {
                instance: self.instance.clone(),
            })?;
        match info.ping_status().map(|s| s.as_str()) {
            Some("Online") => Ok(()),
            other => Err(MemoryError::Offline {
                instance: self.instance.clone(),
                status: other.unwrap_or("unknown").to_owned(),
            }),
        }
    }

    async fn memory_mib(&self) -> Result<u64, MemoryError> {
        let out = self
            .ec2
            .describe_instances()
            .instance_ids(&self.instance)
            .send()
            .await
            .map_err(|e| ApiError::sdk("describe", &self.instance, e))?;
        let itype = out
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .find_map(|i| i.instance_type().cloned())
            .ok_or_else(|| {
                ApiError::other("describe", &self.instance, "no instance type in the answer")
            })?;
        let types = self
            .ec2
            .describe_instance_types()
            .instance_types(itype.clone())
            .send()
            .await
            .map_err(|e| ApiError::sdk("describe instance type", itype.as_str(), e))?;
        types
            .instance_types()
            .iter()
            .find_map(|t| t.memory_info().and_then(|m| m.size_in_mib()))
            .and_then(|m| u64::try_from(m).ok())
            .ok_or_else(|| {
                ApiError::other(
                    "describe instance type",
                    itype.as_str(),
                    "no memory size in the answer",
                )
                .into()
            })
    }

    /// Presigns an UploadPart URL of the staging key for every part.
    async fn presign_parts(
        &self,
        plan: PartPlan,
        upload: &Upload,
    ) -> Result<UrlTemplate, MemoryError> {
        use aws_sdk_s3::presigning::PresigningConfig;
        let life = (self.timeout + URL_MARGIN).min(MAX_URL_LIFE);
        // One signing time for all: then only the part number and the
        // signature differ between the URLs.
        let config = PresigningConfig::builder()
            .start_time(SystemTime::now())
            .expires_in(life)
            .build()
            .map_err(|e| ApiError::other("presign parts of", &upload.key, crate::aws::brief(&e)))?;
        let mut template: Option<String> = None;
        let mut signatures = Vec::with_capacity(usize::try_from(plan.parts).unwrap_or(0));
        for part in 1..=plan.parts {
            let n = i32::try_from(part).map_err(|e| {
                ApiError::other("presign parts of", &upload.key, crate::aws::brief(&e))
            })?;
            let req = self
                .s3
                .upload_part()
                .bucket(&upload.bucket)
                .key(&upload.key)
                .upload_id(&upload.id)
                .part_number(n)
                .presigned(config.clone())
                .await
                .map_err(|e| ApiError::sdk("presign parts of", &upload.key, e))?;
            let unusable = |why: &str| ApiError::other("presign parts of", &upload.key, why);
            // curl sends no headers but Host and Content-Length.
            if req.headers().next().is_some() {
                return Err(unusable(
                    "the presigned request needs headers a plain PUT does not send",
                )
                .into());
            }
            let (t, sig) = templated(req.uri(), part)
                .ok_or_else(|| unusable("the presigned URL is not in the expected form"))?;
            match &template {
                Some(first) if *first != t => {
                    return Err(unusable(
                        "the presigned URLs differ in more than part number and signature",
                    )
                    .into());
                }
                Some(_) => {}
                None => template = Some(t),
            }
            signatures.push(sig);
        }
        Ok(UrlTemplate {
            template: template.unwrap_or_default(),
            signatures,
        })
    }

    async fn presign_avml(&self) -> Result<Option<(String, String)>, MemoryError> {
        use aws_sdk_s3::presigning::PresigningConfig;
        let Some(tool) = &self.avml else {
            return Ok(None);
        };
        let config = PresigningConfig::expires_in((self.timeout + URL_MARGIN).min(MAX_URL_LIFE))
            .map_err(|e| ApiError::other("presign", &tool.key, crate::aws::brief(&e)))?;
        let req = self
            .s3
            .get_object()
            .bucket(&tool.bucket)
            .key(&tool.key)
            .presigned(config)
            .await
            .map_err(|e| ApiError::sdk("presign", &tool.key, e))?;
        Ok(Some((req.uri().to_owned(), tool.sha256.to_lowercase())))
    }

    /// Everything after the staging upload started; the caller aborts it on error.
    async fn staged(
        &self,
        ctx: &AcquireContext,
        case: &CaseId,
        plan: PartPlan,
        upload: &Upload,
        state: &mut RunState,
    ) -> Result<Artefact, MemoryError> {
        let urls = self.presign_parts(plan, upload).await?;
        let avml = self.presign_avml().await?;
        let text = command_text(
            plan,
            &urls,
            avml.as_ref().map(|(u, s)| (u.as_str(), s.as_str())),
        );
        let secs = self.timeout.as_secs().max(1);
        // The parameters hold presigned URLs: they are never logged.
        let sent = self
            .ssm
            .send_command()
            .instance_ids(&self.instance)
            .document_name("AWS-RunShellScript")
            .comment(
                format!("custody case {case}: memory of {}", self.instance)
                    .chars()
                    .take(100)
                    .collect::<String>(),
            )
            .parameters("commands", text.lines().map(str::to_owned).collect())
            .parameters("executionTimeout", vec![secs.to_string()])
            .timeout_seconds(i32::try_from(secs.clamp(30, 2_592_000)).unwrap_or(600))
            .send()
            .await
            .map_err(|e| ApiError::sdk("send the memory command to", &self.instance, e))?;
        let request_id = ssm_request_id(&sent);
        state.request_id("SendCommand", request_id.clone());
        let command = sent
            .command()
            .and_then(|c| c.command_id())
            .map(str::to_owned)
            .ok_or_else(|| {
                ApiError::other(
                    "send the memory command to",
                    &self.instance,
                    "no command id in the answer",
                )
            })?;
        state.command_id = Some(command.clone());
        tracing::info!(instance = %self.instance, %command, parts = plan.parts, part_size = plan.part_size, "memory command sent");
        if let Some(rec) = &ctx.recorder {
            let detail = serde_json::json!({
                "what": "memory",
                "document": "AWS-RunShellScript",
                "command_id": command,
                "request_id": request_id,
                "staging_key": format!("s3://{}/{}", upload.bucket, upload.key),
                "parts": plan.parts,
                "part_size": plan.part_size,
                "timeout_secs": secs,
                "avml": self.avml.as_ref().map_or_else(
                    || "avml on the instance's PATH".to_owned(),
                    |t| format!("s3://{}/{} sha256 {}", t.bucket, t.key, t.sha256),
                ),
                "script_sha256": crate::evidence::sha256_hex(SCRIPT.as_bytes()),
            });
            if let Err(e) = rec.record(
                Some(case),
                Action::CommandSent,
                None,
                Some(self.place()),
                Some(detail),
            ) {
                tracing::error!(error = %crate::error_chain(&e), "cannot record the memory command in the ledger");
            }
        }
        let stdout = self.wait(ctx, &command).await?;
        let host_sha = host_digest(&stdout);
        let staged = self.complete(&command, upload, state).await?;
        state.completed = true;
        let mut notes = vec![
            format!(
                "memory of {} captured by avml through SSM command {command} (AWS-RunShellScript), \
                 uploaded by the instance in {} parts to s3://{}/{} through presigned URLs valid for that key only",
                self.instance, staged.parts, upload.bucket, upload.key
            ),
            format!(
                "staged object: {} bytes, ETag {}, version {}",
                staged.size,
                staged.etag.as_deref().unwrap_or("unknown"),
                staged
                    .version
                    .as_deref()
                    .unwrap_or("none (bucket not versioned)")
            ),
            format!(
                "AWS request ids: {}",
                state
                    .request_ids
                    .iter()
                    .map(|(op, id)| format!("{op} {id}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ];
        if let Some(sha) = &host_sha {
            notes.push(format!(
                "SHA-256 of the image as the instance streamed it: {sha}"
            ));
        } else {
            notes.push("the instance reported no SHA-256 of the image".to_owned());
        }
        let body = self
            .s3
            .get_object()
            .bucket(&upload.bucket)
            .key(&upload.key)
            .set_version_id(staged.version.clone())
            .send()
            .await
            .map_err(|e| ApiError::sdk("read back", &upload.key, e))?;
        let reader = StagedReader {
            inner: tokio_util::io::SyncIoBridge::new(Box::pin(body.body.into_async_read())),
            expected: staged.size,
            read: 0,
            host_sha: host_sha.clone(),
            hasher: Sha256::new(),
        };
        let artefact = acquire(
            ctx,
            AcquireRequest {
                case: case.clone(),
                kind: ArtefactKind::MemoryImage,
                source: Source {
                    path: Some(format!("s3://{}/{}", upload.bucket, upload.key)),
                    ..self.place()
                },
                reader: Box::new(reader),
                size_hint: Some(staged.size),
                notes,
            },
        )
        .await
        .map_err(|source| MemoryError::ReadBack {
            key: format!("s3://{}/{}", upload.bucket, upload.key),
            source,
        })?;
        Ok(artefact)
    }

    /// Polls the command until it ends or the timeout; its standard output.
    async fn wait(&self, ctx: &AcquireContext, command: &str) -> Result<String, MemoryError> {
        let start = std::time::Instant::now();
        let mut delay = self.poll.max(Duration::from_millis(50));
        loop {
            if ctx.cancel.load(std::sync::atomic::Ordering::SeqCst) {
                self.cancel(command).await;
                return Err(MemoryError::Interrupted {
                    command: command.to_owned(),
                    instance: self.instance.clone(),
                });
            }
            match self
                .ssm
                .get_command_invocation()
                .command_id(command)
                .instance_id(&self.instance)
                .send()
                .await
            {
                Ok(out) => {
                    let status = out.status().map_or("unknown", |s| s.as_str()).to_owned();
                    match status.as_str() {
                        "Success" => {
                            return Ok(out
                                .standard_output_content()
                                .unwrap_or_default()
                                .to_owned());
                        }
                        "Pending" | "InProgress" | "Delayed" => {}
                        _ => {
                            let err = out.standard_error_content().unwrap_or_default().trim();
                            let tail: String = {
                                let chars: Vec<char> = err.chars().collect();
                                chars.iter().skip(chars.len().saturating_sub(500)).collect()
                            };
                            return Err(MemoryError::CommandFailed {
                                command: command.to_owned(),
                                instance: self.instance.clone(),
                                detail: format!(
                                    "{}; exit code {}{}",
                                    out.status_details().unwrap_or(&status),
                                    out.response_code(),
                                    if tail.is_empty() {
                                        String::new()
                                    } else {
                                        format!("; stderr: {tail}")
                                    }
                                ),
                                status,
                            });
                        }
                    }
                }
                // Right after SendCommand the invocation may not exist yet.
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|s| s.is_invocation_does_not_exist()) => {}
                Err(e) => {
                    let e = ApiError::sdk("follow the memory command on", &self.instance, e);
                    // The command runs on whether it is watched or not: a
                    // poll still throttled after the SDK's retries is tried
                    // again at the next poll, until the timeout.
                    if e.kind != ApiErrorKind::Throttled {
                        return Err(e.into());
                    }
                    tracing::warn!(instance = %self.instance, %command, error = %e, "polling the memory command is throttled; polling on");
                }
            }
            if start.elapsed() >= self.timeout {
                self.cancel(command).await;
                return Err(MemoryError::Timeout {
                    command: command.to_owned(),
                    instance: self.instance.clone(),
                    secs: self.timeout.as_secs(),
                });
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(MAX_POLL);
        }
    }

    async fn cancel(&self, command: &str) {
        if let Err(e) = self
            .ssm
            .cancel_command()
            .command_id(command)
            .instance_ids(&self.instance)
            .send()
            .await
        {
            tracing::warn!(%command, error = %crate::aws::brief(&e), "could not cancel the memory command");
        }
    }

    /// Completes the staging upload from S3's own list of parts.
    async fn complete(
        &self,
        command: &str,
        upload: &Upload,
        state: &mut RunState,
    ) -> Result<StagedObject, MemoryError> {
        use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
        let mut parts: Vec<(i32, Option<String>, u64)> = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let out = self
                .s3
                .list_parts()
                .bucket(&upload.bucket)
                .key(&upload.key)
                .upload_id(&upload.id)
                .set_part_number_marker(marker.take())
                .send()
                .await
                .map_err(|e| ApiError::sdk("list the staged parts of", &upload.key, e))?;
            state.request_id("ListParts", s3_request_id(&out));
            for p in out.parts() {
                let size = p.size().and_then(|s| u64::try_from(s).ok()).unwrap_or(0);
                parts.push((
                    p.part_number().unwrap_or(0),
                    p.e_tag().map(str::to_owned),
                    size,
                ));
            }
            match out.next_part_number_marker() {
                Some(m) if out.is_truncated() == Some(true) => marker = Some(m.to_owned()),
                _ => break,
            }
        }
        parts.sort_by_key(|p| p.0);
        let size: u64 = parts.iter().map(|p| p.2).sum();
        if parts.is_empty() || size == 0 {
            return Err(MemoryError::NothingUploaded {
                command: command.to_owned(),
                key: format!("s3://{}/{}", upload.bucket, upload.key),
            });
        }
        let contiguous = parts
            .iter()
            .enumerate()
            .all(|(i, p)| usize::try_from(p.0).ok() == Some(i + 1));
        if !contiguous {
            return Err(MemoryError::PartsMissing {
                command: command.to_owned(),
                key: format!("s3://{}/{}", upload.bucket, upload.key),
                parts: parts.iter().map(|p| p.0).collect(),
            });
        }
        let completed = CompletedMultipartUpload::builder()
            .set_parts(Some(
                parts
                    .iter()
                    .map(|(n, etag, _)| {
                        CompletedPart::builder()
                            .part_number(*n)
                            .set_e_tag(etag.clone())
                            .build()
                    })
                    .collect(),
            ))
            .build();
        let out = self
            .s3
            .complete_multipart_upload()
            .bucket(&upload.bucket)
            .key(&upload.key)
            .upload_id(&upload.id)
            .multipart_upload(completed)
            .send()
            .await
            .map_err(|e| ApiError::sdk("complete the staging upload of", &upload.key, e))?;
        state.request_id("CompleteMultipartUpload", s3_request_id(&out));
        Ok(StagedObject {
            size,
            parts: parts.len(),
            etag: out.e_tag().map(str::to_owned),
            version: out.version_id().map(str::to_owned),
        })
    }
}

/// What one run learnt, for the ledger whatever the outcome.
#[derive(Debug, Default)]
struct RunState {
    command_id: Option<String>,
    key: Option<String>,
    request_ids: Vec<(&'static str, String)>,
    completed: bool,
}

impl RunState {
    fn request_id(&mut self, op: &'static str, id: Option<String>) {
        if let Some(id) = id {
            self.request_ids.push((op, id));
        }
    }
}

fn s3_request_id<T: aws_sdk_s3::operation::RequestId>(out: &T) -> Option<String> {
    out.request_id().map(str::to_owned)
}

fn ssm_request_id<T: aws_sdk_ssm::operation::RequestId>(out: &T) -> Option<String> {
    out.request_id().map(str::to_owned)
}

/// The image's SHA-256 from the script's last line, `custody-memory: parts=N sha256=HEX`.
fn host_digest(stdout: &str) -> Option<String> {
    stdout
        .lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix("custody-memory: "))
        .and_then(|l| l.split_whitespace().find_map(|w| w.strip_prefix("sha256=")))
        .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(str::to_lowercase)
}

#[derive(Debug)]
struct StagedObject {
    size: u64,
    parts: usize,
    etag: Option<String>,
    version: Option<String>,
}

/// The staged object as the pipeline's source: checks that every byte S3
/// listed arrived, and compares the instance's digest at the end.
struct StagedReader<R> {
    inner: R,
    expected: u64,
    read: u64,
    host_sha: Option<String>,
    hasher: Sha256,
}

impl<R: Read> Read for StagedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        self.hasher.update(buf.get(..n).unwrap_or_default());
        Ok(n)
    }
}

impl<R: Read + Send> SourceReader for StagedReader<R> {
    fn finish(&mut self) -> io::Result<SourceEnd> {
        if self.read != self.expected {
            return Err(io::Error::other(format!(
                "{} bytes read back of the {} staged",
                self.read, self.expected
            )));
        }
        let read = hex::encode(std::mem::take(&mut self.hasher).finalize());
        match &self.host_sha {
            Some(host) if *host != read => Err(io::Error::other(format!(
                "the staged image's SHA-256 {read} is not the {host} the instance computed while streaming it"
            ))),
            Some(_) => Ok(SourceEnd {
                notes: vec![
                    "the staged image matches the SHA-256 the instance computed".to_owned(),
                ],
                ..SourceEnd::default()
            }),
            None => Ok(SourceEnd::default()),
        }
    }
}

impl From<MemoryError> for CollectError {
    fn from(e: MemoryError) -> Self {
        CollectError::Cloud(Box::new(e))
    }
}

#[async_trait]
impl Collector for MemoryCollector {
    fn describe(&self) -> String {
        format!("memory of {}", self.instance)
    }

    /// Never fails: memory that cannot be taken is a failure in the result
    /// (and a `not_acquired` entry), so the caller goes on.
    async fn collect(
        &self,
        ctx: &AcquireContext,
        case: &CaseId,
    ) -> Result<Collected, CollectError> {
        Ok(match self.acquire_memory(ctx, case).await {
            MemoryOutcome::Acquired { artefact, .. } => Collected {
                artefacts: vec![*artefact],
                failures: Vec::new(),
            },
            MemoryOutcome::NotAcquired { reason, .. } => Collected {
                artefacts: Vec::new(),
                failures: vec![format!("memory of {}: {reason}", self.instance)],
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_cover_the_memory_with_headroom_and_stay_few() {
        let p = plan_parts(1024, None).expect("plan");
        assert_eq!(p.part_size, DEFAULT_PART_SIZE);
        assert!(p.parts * p.part_size >= 1280 << 20, "{p:?}");
        // 256 GiB: parts grow so their signatures stay few.
        let p = plan_parts(256 << 10, None).expect("plan");
        assert!(
            p.parts <= TARGET_PARTS && p.part_size <= MAX_PART_SIZE,
            "{p:?}"
        );
        assert!(p.parts * p.part_size > 256 << 30, "{p:?}");
        // Past 5 GiB parts, more parts.
        let p = plan_parts(4 << 20, None).expect("plan");
        assert!(
            p.part_size == MAX_PART_SIZE && p.parts * p.part_size > 4 << 40,
            "{p:?}"
        );
        // Over 5 GiB with small parts: multipart, within S3's 10,000.
        let p = plan_parts(8 << 10, Some(MIN_PART_SIZE)).expect("plan");
        assert!(p.parts > 1000 && p.parts <= MAX_PARTS, "{p:?}");
        assert!(plan_parts(64 << 20, Some(MIN_PART_SIZE)).is_none());
    }

    #[test]
    fn a_url_becomes_a_template_only_when_it_round_trips() {
        let uri = "https://b.s3.amazonaws.com/k?x-id=UploadPart&partNumber=12&uploadId=u\
                   &X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Signature=0a1b";
        let (t, sig) = templated(uri, 12).expect("template");
        assert_eq!(sig, "0a1b");
        assert!(
            t.contains("partNumber=@PART@") && t.contains("X-Amz-Signature=@SIG@"),
            "{t}"
        );
        let u = UrlTemplate {
            template: t,
            signatures: vec!["x".into(); 11]
                .into_iter()
                .chain(["0a1b".into()])
                .collect(),
        };
        assert_eq!(u.url(12).as_deref(), Some(uri));
        assert!(u.url(13).is_none() && u.url(0).is_none());
        assert!(templated(uri, 1).is_none(), "wrong part number");
        assert!(
            templated("https://b/k?partNumber=1", 1).is_none(),
            "no signature"
        );
    }

    #[test]
    fn the_command_carries_values_then_the_script_without_comments() {
        let urls = UrlTemplate {
            template: "http://h/b/k?partNumber=@PART@&X-Amz-Signature=@SIG@&q='x".into(),
            signatures: vec!["aa".into(), "bb".into()],
        };
        let plan = PartPlan {
            part_size: MIN_PART_SIZE,
            parts: 2,
        };
        let text = command_text(plan, &urls, Some(("http://h/tool", "AB")));
        assert!(text.contains("CUSTODY_PARTS=2\n"), "{text}");
        assert!(
            text.contains(
                r"CUSTODY_URL='http://h/b/k?partNumber=@PART@&X-Amz-Signature=@SIG@&q='\''x'"
            ),
            "{text}"
        );
        assert!(text.contains("CUSTODY_SIGS='aa bb'\n"));
        assert!(text.contains("CUSTODY_AVML_SHA256='AB'\n"), "{text}");
        assert!(
            !text.contains("# Stop at the first error"),
            "comments are left out"
        );
        assert!(text.contains("set -eu\n"));
    }

    #[test]
    fn the_host_digest_is_read_from_the_last_line() {
        let sha = "a".repeat(64);
        assert_eq!(
            host_digest(&format!("noise\ncustody-memory: parts=3 sha256={sha}\n")),
            Some(sha)
        );
        assert_eq!(host_digest(""), None);
        assert_eq!(host_digest("custody-memory: parts=3 sha256=xyz"), None);
    }

    #[test]
    fn staging_urls_parse() {
        assert_eq!(
            Staging::parse("s3://bucket/a/b/").expect("url"),
            Staging {
                bucket: "bucket".into(),
                prefix: "a/b".into()
            }
        );
        assert!(Staging::parse("file:///x").is_err());
        assert!(Staging::parse("s3:///x").is_err());
    }
}
