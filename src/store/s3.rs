//! The S3 evidence store (and S3-compatible stores through `--endpoint-url`).
//!
//! A put streams the pipeline's output as a multipart upload: parts are cut
//! from the stream as it arrives (no temporary file), each carries its own
//! SHA-256 checksum that S3 checks, and at most `parts_in_flight` parts are
//! uploading at once, so memory stays at about `part_size × (parts_in_flight + 1)`.
//! A stream that fails, or a put that is dropped, aborts the upload: nothing
//! is left under the key. Objects smaller than one part go up in a single PUT.
//!
//! With a journal ([`PutMeta::resume`]) an interrupted upload is kept
//! instead: each confirmed part is journalled, and the rerun of the same
//! acquisition reproduces the same bytes, checks each part's SHA-256 against
//! the journal and S3's own list of parts, and sends only what is missing.
//! Requests are retried with backoff (throttling, 5xx, dropped connections)
//! a bounded number of times; access errors are not retried.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::error::DisplayErrorContext;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart, ObjectLockMode,
    ServerSideEncryption,
};
use base64::Engine as _;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use sha2::{Digest as _, Sha256};
use tokio::task::JoinSet;

pub use super::Preflight;
use super::{
    EvidenceReader, EvidenceStore, EvidenceStream, ObjectKey, PutMeta, StoreError, StoredObject,
    journal,
};

/// 8 MiB parts: above S3's 5 MiB minimum, small enough to keep memory low.
pub const DEFAULT_PART_SIZE: usize = 8 << 20;
/// S3 allows at most 10,000 parts per upload.
pub const MAX_PARTS: u64 = 10_000;
/// The largest object S3 stores: 5 TiB.
pub const MAX_OBJECT: u64 = 5 << 40;
const _: () = assert!(DEFAULT_PART_SIZE >= 5 << 20);

/// Object Lock retention applied to every object written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub compliance: bool,
    pub days: u32,
}

#[derive(Debug, Clone)]
pub struct S3Options {
    pub part_size: usize,
    pub parts_in_flight: usize,
    pub retention: Option<Retention>,
    /// SSE-KMS key id or ARN; `None` leaves the bucket's default encryption.
    pub kms_key: Option<String>,
    /// Raw size the caller expects, when known: parts grow so it fits in 10,000 parts.
    pub size_hint: Option<u64>,
    /// Refuse to write unless the bucket is write-once.
    pub require_worm: bool,
    /// Attempts per request, the first included (the SDK's standard retry:
    /// throttling, 5xx and connection errors, exponential backoff with jitter).
    pub max_attempts: u32,
}

impl Default for S3Options {
    fn default() -> Self {
        Self {
            part_size: DEFAULT_PART_SIZE,
            parts_in_flight: 4,
            retention: None,
            kms_key: None,
            size_hint: None,
            require_worm: false,
            max_attempts: 5,
        }
    }
}

/// Parts per size tier when the object's size is not known in advance.
const PARTS_PER_TIER: i32 = 1000;
/// S3's largest part: 5 GiB.
const MAX_PART: usize = 5 << 30;

impl S3Options {
    pub fn from_settings(s: &crate::config::S3Settings) -> Self {
        let retention = (s.object_lock != "off").then_some(Retention {
            compliance: s.object_lock == "compliance",
            days: s.retention_days,
        });
        Self {
            retention,
            kms_key: s.kms_key.clone(),
            require_worm: s.require_worm,
            max_attempts: s.max_attempts.max(1),
            ..Self::default()
        }
    }

    /// Size of part `n` (1-based). With a size hint, one size large enough
    /// that the object fits in 10,000 parts. Without one, parts start at
    /// `part_size` and double every 1,000 parts: small objects keep small
    /// parts (and little memory), and 10,000 parts of 8 MiB upwards reach
    /// 8 TiB, past S3's 5 TiB limit.
    pub fn part_size_at(&self, n: i32) -> usize {
        let base = self.part_size.max(5 << 20);
        match self.size_hint {
            Some(size) => {
                let needed = usize::try_from(size.min(MAX_OBJECT).div_ceil(MAX_PARTS - 1))
                    .unwrap_or(MAX_PART);
                base.max(needed).min(MAX_PART)
            }
            None => {
                let tier = u32::try_from((n.max(1) - 1) / PARTS_PER_TIER).unwrap_or(0);
                base.saturating_mul(1usize << tier.min(20)).min(MAX_PART)
            }
        }
    }
}

#[derive(Clone)]
pub struct S3Store {
    client: Client,
    bucket: String,
    prefix: String,
    opts: S3Options,
    /// The bucket's preflight, taken before the first write.
    checked: std::sync::Arc<tokio::sync::OnceCell<Preflight>>,
}

impl fmt::Debug for S3Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Store")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

fn sha256_b64(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(Sha256::digest(b))
}

/// A part as it finished: what CompleteMultipartUpload needs, and whether
/// it went over the wire.
struct SentPart {
    completed: CompletedPart,
    sent: bool,
}

fn completed_part(n: i32, etag: Option<String>, sum: String) -> CompletedPart {
    CompletedPart::builder()
        .part_number(n)
        .set_e_tag(etag)
        .checksum_sha256(sum)
        .build()
}

/// Aborts a multipart upload that was not completed (error or dropped future).
struct AbortGuard {
    client: Client,
    bucket: String,
    key: String,
    upload_id: Option<String>,
}

impl Drop for AbortGuard {
    fn drop(&mut self) {
        let Some(upload_id) = self.upload_id.take() else {
            return;
        };
        let (client, bucket, key) = (self.client.clone(), self.bucket.clone(), self.key.clone());
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                if let Err(e) = client.abort_multipart_upload().bucket(&bucket).key(&key).upload_id(&upload_id).send().await {
                    tracing::warn!(%bucket, %key, error = %DisplayErrorContext(&e), "could not abort an unfinished upload");
                }
            });
        }
    }
}

impl S3Store {
    pub fn new(
        client: Client,
        bucket: impl Into<String>,
        prefix: impl Into<String>,
        opts: S3Options,
    ) -> Self {
        let prefix: String = prefix.into();
        Self {
            client,
            bucket: bucket.into(),
            prefix: prefix.trim_matches('/').to_owned(),
            opts,
            checked: std::sync::Arc::new(tokio::sync::OnceCell::new()),
        }
    }

    /// A store for `s3://bucket/prefix`, with the standard AWS credential chain.
    pub async fn from_url(
        url: &url::Url,
        endpoint: Option<&str>,
        opts: S3Options,
    ) -> Result<Self, StoreError> {
        let bucket = url.host_str().filter(|b| !b.is_empty()).ok_or_else(|| {
            StoreError::InvalidLocation {
                url: url.to_string(),
                reason: "no bucket name".into(),
            }
        })?;
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if let Some(e) = endpoint {
            loader = loader.endpoint_url(e);
        }
        let shared = loader.load().await;
        // Access errors are never retried by the standard mode; throttling
        // (SlowDown, 503) and dropped connections are, with backoff.
        let retry = aws_config::retry::RetryConfig::standard()
            .with_max_attempts(opts.max_attempts.max(1))
            .with_initial_backoff(std::time::Duration::from_millis(200))
            .with_max_backoff(std::time::Duration::from_secs(10));
        let timeouts = aws_config::timeout::TimeoutConfig::builder()
            .connect_timeout(std::time::Duration::from_secs(10))
            .build();
        let mut conf = aws_sdk_s3::config::Builder::from(&shared)
            .retry_config(retry)
            .timeout_config(timeouts);
        if endpoint.is_some() || std::env::var_os("AWS_ENDPOINT_URL").is_some() {
            // Emulators and most S3-compatible stores serve buckets by path.
            conf = conf.force_path_style(true);
        }
        Ok(Self::new(
            Client::from_conf(conf.build()),
            bucket,
            url.path(),
            opts,
        ))
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    fn full_key(&self, key: &ObjectKey) -> String {
        super::prefixed(&self.prefix, key.as_str())
    }

    fn remote(
        &self,
        op: &'static str,
        key: &str,
        e: impl std::error::Error + Send + Sync + 'static,
    ) -> StoreError {
        StoreError::Io {
            op,
            key: key.to_owned(),
            location: self.location(),
            source: io::Error::other(DisplayErrorContext(e).to_string()),
        }
    }

    async fn exists(&self, full: &str) -> Result<bool, StoreError> {
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(full)
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => Ok(false),
            Err(e) => Err(self.remote("check for", full, e)),
        }
    }

    /// The caller's settings plus the part sizes: a part is reused only if
    /// it is cut at the same place.
    fn journal_settings(&self, spec: &journal::ResumeSpec) -> String {
        format!(
            "{}; s3 parts {} hint {:?}",
            spec.settings, self.opts.part_size, self.opts.size_hint
        )
    }

    fn journal_error(&self, full: &str, e: io::Error) -> StoreError {
        journal::write_error(&self.location(), full, e)
    }

    /// Starts a multipart upload with the object's retention, encryption
    /// and metadata.
    async fn create_upload(&self, full: &str, meta: &PutMeta) -> Result<String, StoreError> {
        let mut req = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(full)
            .checksum_algorithm(ChecksumAlgorithm::Sha256);
        for (k, v) in meta.ids() {
            req = req.metadata(k, v);
        }
        if let Some(r) = self.retention().await? {
            req = req
                .object_lock_mode(lock_mode(r))
                .object_lock_retain_until_date(retain_until(r));
        }
        if let Some(k) = &self.opts.kms_key {
            req = req
                .server_side_encryption(ServerSideEncryption::AwsKms)
                .ssekms_key_id(k);
        }
        let created = req
            .send()
            .await
            .map_err(|e| self.remote("start the upload of", full, e))?;
        created.upload_id.ok_or_else(|| {
            self.remote(
                "start the upload of",
                full,
                io::Error::other("no upload id"),
            )
        })
    }

    /// The upload id and confirmed parts of an interrupted upload of `full`,
    /// from its journal, each part checked against what S3 lists. A journal
    /// for other bytes (other settings, store or key) or an upload S3 no
    /// longer has is discarded, and its upload aborted.
    async fn resumable(
        &self,
        spec: &journal::ResumeSpec,
        full: &str,
    ) -> Option<(String, BTreeMap<i32, journal::Part>)> {
        let j = match journal::read(&spec.path) {
            Ok(Some(j)) => j,
            Ok(None) => return None,
            Err(e) => {
                tracing::warn!(journal = %spec.path.display(), error = %e, "cannot read an upload journal; starting over");
                return None;
            }
        };
        let discard = |why: &str| {
            tracing::warn!(journal = %spec.path.display(), why, "not resuming an earlier upload");
            let _ = journal::remove(&spec.path);
        };
        if j.header.location != self.location() || j.header.settings != self.journal_settings(spec)
        {
            discard("it was made with other settings or for another store");
            return None;
        }
        if j.header.key != full {
            discard("it is for another object");
            if j.header.location == self.location() {
                self.abort_quietly(&j.header.key, &j.header.upload_id).await;
            }
            return None;
        }
        let mut listed = BTreeMap::new();
        let mut marker: Option<String> = None;
        loop {
            let out = self
                .client
                .list_parts()
                .bucket(&self.bucket)
                .key(full)
                .upload_id(&j.header.upload_id)
                .set_part_number_marker(marker.clone())
                .send()
                .await;
            let out = match out {
                Ok(out) => out,
                Err(e) => {
                    tracing::warn!(key = %full, error = %DisplayErrorContext(&e), "the interrupted upload cannot be listed; starting over");
                    let _ = journal::remove(&spec.path);
                    self.abort_quietly(full, &j.header.upload_id).await;
                    return None;
                }
            };
            for p in out.parts() {
                if let (Some(n), Some(etag)) = (p.part_number, p.e_tag.as_deref()) {
                    listed.insert(n, (etag.to_owned(), p.size.unwrap_or(-1)));
                }
            }
            marker = out.next_part_number_marker.clone();
            if out.is_truncated != Some(true) || marker.is_none() {
                break;
            }
        }
        let confirmed: BTreeMap<i32, journal::Part> = j
            .parts
            .into_iter()
            .filter(|(n, p)| {
                listed.get(n).is_some_and(|(etag, size)| {
                    *etag == p.etag && u64::try_from(*size).ok() == Some(p.size)
                })
            })
            .collect();
        tracing::info!(key = %full, confirmed = confirmed.len(), "resuming an interrupted upload");
        Some((j.header.upload_id, confirmed))
    }

    async fn abort_quietly(&self, full: &str, upload_id: &str) {
        if let Err(e) = self
            .client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(full)
            .upload_id(upload_id)
            .send()
            .await
        {
            tracing::warn!(key = %full, error = %DisplayErrorContext(&e), "could not abort an earlier upload");
        }
    }

    async fn put_single(
        &self,
        key: &ObjectKey,
        full: &str,
        body: Bytes,
        meta: &PutMeta,
    ) -> Result<StoredObject, StoreError> {
        let size = body.len() as u64;
        let mut req = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(full)
            .checksum_algorithm(ChecksumAlgorithm::Sha256)
            .checksum_sha256(sha256_b64(&body))
            .metadata("custody-stored-sha256", hex::encode(Sha256::digest(&body)))
            .if_none_match("*")
            .body(ByteStream::from(body));
        for (k, v) in meta.ids() {
            req = req.metadata(k, v);
        }
        if let Some((size, sha)) = meta.raw() {
            req = req
                .metadata("custody-raw-size", size.to_string())
                .metadata("custody-raw-sha256", sha);
        }
        if let Some(r) = self.retention().await? {
            req = req
                .object_lock_mode(lock_mode(r))
                .object_lock_retain_until_date(retain_until(r));
        }
        if let Some(k) = &self.opts.kms_key {
            req = req
                .server_side_encryption(ServerSideEncryption::AwsKms)
                .ssekms_key_id(k);
        }
        let out = req
            .send()
            .await
            .map_err(|e| self.remote("upload", full, e))?;
        Ok(StoredObject {
            key: key.clone(),
            size,
            version_id: out.version_id,
            etag: out.e_tag,
        })
    }
}

impl S3Store {
    /// The retention to put on a new object: the configured one where the
    /// bucket has Object Lock, none where it does not (S3 refuses lock
    /// headers there). Runs the preflight once, before the first write, and
    /// refuses to write when write-once storage is required but missing.
    async fn retention(&self) -> Result<Option<Retention>, StoreError> {
        let p = self
            .checked
            .get_or_init(|| async {
                let p = self.preflight().await;
                // Once per store, not once per object.
                if p.exists && !p.is_worm() && !self.opts.require_worm {
                    tracing::warn!(store = %self.location(), findings = %p.findings.join("; "), "evidence store is not write-once");
                }
                p
            })
            .await;
        if !p.exists {
            return Err(StoreError::InvalidLocation {
                url: self.location(),
                reason: p.findings.join("; "),
            });
        }
        if !p.is_worm() && self.opts.require_worm {
            return Err(StoreError::NotWorm {
                location: self.location(),
                findings: p.findings.join("; "),
            });
        }
        Ok(if p.object_lock {
            self.opts.retention
        } else {
            None
        })
    }

    /// Checks the bucket: exists, writable, versioning and Object Lock state.
    /// Writes nothing that stays: the write probe is an aborted multipart upload.
    pub async fn preflight(&self) -> Preflight {
        let mut p = Preflight {
            location: self.location(),
            versioning: "Off".into(),
            ..Preflight::default()
        };
        match self.client.head_bucket().bucket(&self.bucket).send().await {
            Ok(_) => p.exists = true,
            Err(e) => {
                p.findings.push(format!(
                    "bucket {} cannot be reached: {}",
                    self.bucket,
                    brief(&e)
                ));
                return p;
            }
        }
        let versioning = self
            .client
            .get_bucket_versioning()
            .bucket(&self.bucket)
            .send()
            .await;
        match &versioning {
            Ok(v) => p.versioning = v.status().map_or("Off".into(), |s| s.as_str().to_owned()),
            Err(e) => {
                p.versioning = "Unknown".into();
                p.findings
                    .push(format!("versioning could not be read: {}", brief(e)));
            }
        }
        match self
            .client
            .get_object_lock_configuration()
            .bucket(&self.bucket)
            .send()
            .await
        {
            Ok(o) => {
                let conf = o.object_lock_configuration();
                p.object_lock = conf
                    .and_then(|c| c.object_lock_enabled())
                    .is_some_and(|e| e.as_str() == "Enabled");
                p.default_retention = conf
                    .and_then(|c| c.rule())
                    .and_then(|r| r.default_retention())
                    .map(|d| {
                        let mode = d.mode().map_or("?", |m| m.as_str());
                        match (d.days(), d.years()) {
                            (Some(days), _) => format!("{mode} {days} days"),
                            (_, Some(years)) => format!("{mode} {years} years"),
                            _ => mode.to_owned(),
                        }
                    });
            }
            // No configuration at all is the common answer for a bucket without Object Lock.
            Err(e)
                if DisplayErrorContext(&e)
                    .to_string()
                    .contains("ObjectLockConfigurationNotFound") => {}
            Err(e) => p.findings.push(format!(
                "Object Lock state could not be read: {}",
                brief(&e)
            )),
        }
        // S3 only allows Object Lock on a versioned bucket, and versioning cannot be suspended under it.
        if p.object_lock && p.versioning == "Unknown" {
            p.versioning = "Enabled".into();
            p.findings
                .push("versioning taken as Enabled: Object Lock requires it".into());
        }
        let probe = self.full_key(&ObjectKey(format!(
            ".custody-preflight/{}",
            uuid::Uuid::new_v4().simple()
        )));
        match self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(&probe)
            .send()
            .await
        {
            Ok(out) => {
                p.writable = true;
                if let Some(id) = out.upload_id {
                    let _ = self
                        .client
                        .abort_multipart_upload()
                        .bucket(&self.bucket)
                        .key(&probe)
                        .upload_id(id)
                        .send()
                        .await;
                }
            }
            Err(e) => p.findings.push(format!(
                "cannot write to {}: {}",
                self.location(),
                brief(&e)
            )),
        }
        if p.versioning != "Enabled" && p.versioning != "Unknown" {
            p.findings.push(format!(
                "versioning is {}: an overwritten or deleted object cannot be recovered",
                p.versioning
            ));
        }
        if !p.object_lock {
            p.findings.push(
                "Object Lock is off: evidence can be deleted by anyone with delete rights".into(),
            );
        } else if p.default_retention.is_none() && self.opts.retention.is_none() {
            p.findings.push("Object Lock has no default retention and none is configured: objects are not locked".into());
        }
        p
    }
}

/// An SDK error's message without the raw response it may carry.
fn brief(e: &(dyn std::error::Error + 'static)) -> String {
    let full = crate::error_chain(e);
    match full.char_indices().nth(240) {
        Some((cut, _)) => format!("{}…", full.get(..cut).unwrap_or_default()),
        None => full,
    }
}

fn lock_mode(r: Retention) -> ObjectLockMode {
    if r.compliance {
        ObjectLockMode::Compliance
    } else {
        ObjectLockMode::Governance
    }
}

fn retain_until(r: Retention) -> aws_sdk_s3::primitives::DateTime {
    let until = time::OffsetDateTime::now_utc() + time::Duration::days(i64::from(r.days));
    aws_sdk_s3::primitives::DateTime::from_secs(until.unix_timestamp())
}

#[async_trait]
impl EvidenceStore for S3Store {
    fn location(&self) -> String {
        if self.prefix.is_empty() {
            format!("s3://{}", self.bucket)
        } else {
            format!("s3://{}/{}", self.bucket, self.prefix)
        }
    }

    async fn put(&self, key: &ObjectKey, body: EvidenceStream) -> Result<StoredObject, StoreError> {
        self.put_with(key, body, &PutMeta::default()).await
    }

    async fn put_with(
        &self,
        key: &ObjectKey,
        mut body: EvidenceStream,
        meta: &PutMeta,
    ) -> Result<StoredObject, StoreError> {
        let full = self.full_key(key);
        let resumed = match &meta.resume {
            Some(spec) => self.resumable(spec, &full).await,
            None => None,
        };
        if self.exists(&full).await? {
            return Err(StoreError::AlreadyExists {
                key: key.clone(),
                location: self.location(),
            });
        }
        let part_size = self.opts.part_size_at(1);
        let mut buf = BytesMut::with_capacity(part_size);
        // Fill the first part before deciding: a small object is one PUT.
        let mut ended = false;
        while buf.len() < part_size {
            match body.next().await {
                Some(Ok(chunk)) => buf.extend_from_slice(&chunk),
                Some(Err(source)) => {
                    return Err(StoreError::SourceFailed {
                        key: key.clone(),
                        source,
                    });
                }
                None => {
                    ended = true;
                    break;
                }
            }
        }
        if ended && resumed.is_none() {
            return self.put_single(key, &full, buf.freeze(), meta).await;
        }
        let mut guard = AbortGuard {
            client: self.client.clone(),
            bucket: self.bucket.clone(),
            key: full.clone(),
            upload_id: None,
        };
        let (upload_id, confirmed, journal) = match resumed {
            Some((upload_id, confirmed)) => {
                let journal = match &meta.resume {
                    Some(spec) => Some(
                        journal::Writer::append_to(&spec.path)
                            .map_err(|e| self.journal_error(&full, e))?,
                    ),
                    None => None,
                };
                (upload_id, confirmed, journal)
            }
            None => {
                let upload_id = self.create_upload(&full, meta).await?;
                // Until the journal is on disk, a failure aborts the upload.
                guard.upload_id = Some(upload_id.clone());
                let journal = match &meta.resume {
                    Some(spec) => {
                        let header = journal::Header::new(
                            self.location(),
                            full.clone(),
                            upload_id.clone(),
                            self.journal_settings(spec),
                        );
                        let w = journal::Writer::create(&spec.path, &header)
                            .map_err(|e| self.journal_error(&full, e))?;
                        // From here the journal keeps the upload for a rerun.
                        guard.upload_id = None;
                        Some(w)
                    }
                    None => None,
                };
                (upload_id, BTreeMap::new(), journal)
            }
        };

        // Shared with the part tasks: each part is journalled as soon as S3
        // confirms it, whatever order the parts finish in.
        let journal = journal.map(|j| Arc::new(std::sync::Mutex::new(j)));
        let mut inflight: JoinSet<Result<SentPart, StoreError>> = JoinSet::new();
        let mut done: Vec<CompletedPart> = Vec::new();
        let mut reused = 0usize;
        let mut size = 0u64;
        let mut number = 0i32;
        let mut send_part = |part: Bytes, inflight: &mut JoinSet<Result<SentPart, StoreError>>| {
            number += 1;
            size += part.len() as u64;
            let (client, bucket, full, upload_id, this) = (
                self.client.clone(),
                self.bucket.clone(),
                full.clone(),
                upload_id.clone(),
                self.clone(),
            );
            let n = number;
            let earlier = confirmed.get(&n).cloned();
            let journal = journal.clone();
            inflight.spawn(async move {
                let sum = sha256_b64(&part);
                let len = part.len() as u64;
                if let Some(p) = earlier.filter(|p| p.sha256 == sum && p.size == len) {
                    // Confirmed by the store before the interruption, and the
                    // bytes produced now are the same: not sent again.
                    return Ok(SentPart {
                        completed: completed_part(n, Some(p.etag), sum),
                        sent: false,
                    });
                }
                let out = client
                    .upload_part()
                    .bucket(&bucket)
                    .key(&full)
                    .upload_id(&upload_id)
                    .part_number(n)
                    .checksum_sha256(&sum)
                    .body(ByteStream::from(part))
                    .send()
                    .await
                    .map_err(|e| this.remote("upload a part of", &full, e))?;
                let etag = out.e_tag.unwrap_or_default();
                let record = journal::Part {
                    part: n,
                    size: len,
                    sha256: sum.clone(),
                    etag: etag.clone(),
                };
                if let Some(j) = &journal {
                    j.lock()
                        .map_err(|_| {
                            this.journal_error(&full, io::Error::other("journal lock poisoned"))
                        })?
                        .record(&record)
                        .map_err(|e| this.journal_error(&full, e))?;
                }
                Ok(SentPart {
                    completed: completed_part(n, Some(etag), sum),
                    sent: true,
                })
            });
        };
        let mut joined = |r: Result<Result<SentPart, StoreError>, tokio::task::JoinError>,
                          done: &mut Vec<CompletedPart>|
         -> Result<(), StoreError> {
            let part = r.map_err(|e| self.remote("upload a part of", &full, e))??;
            if !part.sent {
                reused += 1;
            }
            done.push(part.completed);
            Ok(())
        };
        let result: Result<(), StoreError> = async {
            send_part(buf.split().freeze(), &mut inflight);
            loop {
                match body.next().await {
                    Some(Ok(chunk)) => {
                        buf.extend_from_slice(&chunk);
                        loop {
                            let target = self.opts.part_size_at(
                                i32::try_from(inflight.len() + done.len() + 1).unwrap_or(i32::MAX),
                            );
                            if buf.len() < target {
                                break;
                            }
                            while inflight.len() >= self.opts.parts_in_flight.max(1) {
                                if let Some(r) = inflight.join_next().await {
                                    joined(r, &mut done)?;
                                }
                            }
                            send_part(buf.split_to(target).freeze(), &mut inflight);
                        }
                    }
                    Some(Err(source)) => {
                        return Err(StoreError::SourceFailed {
                            key: key.clone(),
                            source,
                        });
                    }
                    None => break,
                }
            }
            if !buf.is_empty() {
                send_part(buf.split().freeze(), &mut inflight);
            }
            while let Some(r) = inflight.join_next().await {
                joined(r, &mut done)?;
            }
            Ok(())
        }
        .await;
        if let Err(e) = result {
            // The guard aborts the upload on the way out, unless a journal
            // keeps it for a rerun.
            if let Some(spec) = &meta.resume {
                tracing::warn!(key = %full, journal = %spec.path.display(), "upload interrupted; the parts sent so far are kept: rerun the same command to resume");
            }
            return Err(e);
        }
        if reused > 0 {
            tracing::info!(key = %full, reused, sent = done.len() - reused, "resumed an interrupted upload");
        }
        if number as u64 > MAX_PARTS {
            guard.upload_id = Some(upload_id.clone());
            return Err(self.remote(
                "upload",
                &full,
                io::Error::other(format!("{number} parts exceed S3's limit of 10,000")),
            ));
        }
        done.sort_by_key(|p| p.part_number);
        let out = self
            .client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(&full)
            .upload_id(&upload_id)
            .if_none_match("*")
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(done))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| self.remote("complete the upload of", &full, e))?;
        guard.upload_id = None;
        if let Some(spec) = &meta.resume
            && let Err(e) = journal::remove(&spec.path)
        {
            tracing::warn!(journal = %spec.path.display(), error = %e, "cannot remove a finished upload's journal");
        }
        Ok(StoredObject {
            key: key.clone(),
            size,
            version_id: out.version_id,
            etag: out.e_tag,
        })
    }

    async fn get(&self, key: &ObjectKey) -> Result<EvidenceReader, StoreError> {
        let full = self.full_key(key);
        match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(&full)
            .send()
            .await
        {
            Ok(out) => Ok(Box::pin(out.body.into_async_read())),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => {
                Err(StoreError::NotFound {
                    key: key.clone(),
                    location: self.location(),
                })
            }
            Err(e) => Err(self.remote("read", &full, e)),
        }
    }

    async fn get_range(&self, key: &ObjectKey, offset: u64, len: u64) -> Result<Bytes, StoreError> {
        if len == 0 {
            return Ok(Bytes::new());
        }
        let full = self.full_key(key);
        let out = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(&full)
            .range(format!("bytes={offset}-{}", offset + len - 1))
            .send()
            .await
            .map_err(|e| self.remote("read", &full, e))?;
        let bytes = out
            .body
            .collect()
            .await
            .map_err(|e| self.remote("read", &full, e))?;
        Ok(bytes.into_bytes())
    }

    async fn size(&self, key: &ObjectKey) -> Result<u64, StoreError> {
        let full = self.full_key(key);
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(&full)
            .send()
            .await
        {
            Ok(out) => Ok(u64::try_from(out.content_length.unwrap_or(0)).unwrap_or(0)),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => {
                Err(StoreError::NotFound {
                    key: key.clone(),
                    location: self.location(),
                })
            }
            Err(e) => Err(self.remote("read the size of", &full, e)),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectKey>, StoreError> {
        let full_prefix = if self.prefix.is_empty() {
            prefix.to_owned()
        } else {
            format!("{}/{prefix}", self.prefix)
        };
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(&full_prefix)
            .into_paginator()
            .send();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| self.remote("list", &full_prefix, e))?;
            for o in page.contents.unwrap_or_default() {
                let Some(k) = o.key else { continue };
                let rel = if self.prefix.is_empty() {
                    k.as_str()
                } else {
                    k.strip_prefix(&format!("{}/", self.prefix))
                        .unwrap_or_default()
                };
                if let Ok(key) = ObjectKey::new(rel) {
                    out.push(key);
                }
            }
        }
        out.sort();
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_grow_so_5_tib_fits_in_10000() {
        let o = S3Options::default();
        assert_eq!(o.part_size_at(1), DEFAULT_PART_SIZE);
        assert_eq!(o.part_size_at(1000), DEFAULT_PART_SIZE);
        assert_eq!(o.part_size_at(1001), 2 * DEFAULT_PART_SIZE);
        let total: u64 = (1..=MAX_PARTS as i32)
            .map(|n| o.part_size_at(n) as u64)
            .sum();
        assert!(total >= MAX_OBJECT, "{total}");
        let hinted = S3Options {
            size_hint: Some(200 << 30),
            ..S3Options::default()
        };
        assert!(hinted.part_size_at(1) as u64 * (MAX_PARTS - 1) >= 200 << 30);
        let small = S3Options {
            size_hint: Some(0),
            part_size: 1,
            ..S3Options::default()
        };
        assert_eq!(small.part_size_at(1), 5 << 20);
    }
}
