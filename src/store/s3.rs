//! The S3 evidence store (and S3-compatible stores through `--endpoint-url`).
//!
//! A put goes through the shared upload engine ([`super::multipart`]): the
//! pipeline's output is streamed as a multipart upload, parts cut as it
//! arrives (no temporary file), each with its own SHA-256 checksum that S3
//! checks, at most `parts_in_flight` of them uploading at once, so memory
//! stays at about `part_size × (parts_in_flight + 1)`. A stream that fails,
//! or a put that is dropped, aborts the upload: nothing is left under the
//! key. Objects smaller than one part go up in a single PUT. Every object
//! gets the configured Object Lock retention where the bucket has Object
//! Lock, and SSE-KMS with the configured key.
//!
//! With a journal ([`PutMeta::resume`]) an interrupted upload is kept
//! instead: each confirmed part is journalled, and the rerun of the same
//! acquisition reproduces the same bytes, checks each part's SHA-256 against
//! the journal and its ETag and size against S3's own list of parts, and
//! sends only what is missing. Parts are tried again by the engine, other
//! requests by the SDK, with backoff (throttling, 5xx, dropped connections),
//! a bounded number of times; access errors are not retried.

use std::collections::BTreeMap;
use std::fmt;
use std::io;

use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart, ObjectLockMode,
    ServerSideEncryption,
};
use base64::Engine as _;
use bytes::Bytes;
use sha2::{Digest as _, Sha256};

pub use super::Preflight;
use super::{
    EvidenceReader, EvidenceStore, EvidenceStream, ObjectKey, PutMeta, StoreError, StoredObject,
    journal, multipart,
};

/// 8 MiB parts: above S3's 5 MiB minimum, small enough to keep memory low.
pub const DEFAULT_PART_SIZE: usize = 8 << 20;
/// S3 allows at most 10,000 parts per upload.
pub const MAX_PARTS: u64 = 10_000;
/// The largest object S3 stores: 5 TiB.
pub const MAX_OBJECT: u64 = 5 << 40;
const _: () = assert!(DEFAULT_PART_SIZE >= 5 << 20);
/// The first retry's wait, doubling up to 10 s: for parts (the engine) and
/// every other request (the SDK) alike.
const FIRST_BACKOFF: std::time::Duration = std::time::Duration::from_millis(200);

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
    /// Attempts per request, the first included: throttling, 5xx and
    /// connection errors are retried with exponential backoff and jitter, by
    /// the upload engine for parts and by the SDK's standard retry otherwise.
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

pub use super::settings::S3Settings;

impl S3Options {
    pub fn from_settings(s: &S3Settings) -> Self {
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
        aws: &crate::aws::AwsOptions,
        opts: S3Options,
    ) -> Result<Self, StoreError> {
        let bucket = url.host_str().filter(|b| !b.is_empty()).ok_or_else(|| {
            StoreError::InvalidLocation {
                url: url.to_string(),
                reason: "no bucket name".into(),
            }
        })?;
        // The one factory's settings; its store client leaves out the
        // per-attempt timeout, which a large part on a slow link could pass.
        let client = crate::aws::Aws::unchecked(aws)
            .await
            .s3_store(opts.max_attempts);
        Ok(Self::new(client, bucket, url.path(), opts))
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

    /// Aborts a multipart upload; a failure is only logged.
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
            tracing::warn!(key = %full, error = %DisplayErrorContext(&e), "could not abort an unfinished upload");
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
/// Whether another try of a failed request may succeed: throttling, a 5xx,
/// a timeout or a dropped connection. Access and client errors never.
fn transient<E: ProvideErrorMetadata>(e: &SdkError<E, HttpResponse>) -> bool {
    match e {
        SdkError::TimeoutError(_) | SdkError::ResponseError(_) => true,
        SdkError::DispatchFailure(d) => d.is_io() || d.is_timeout(),
        SdkError::ServiceError(s) => {
            matches!(s.raw().status().as_u16(), 429 | 500 | 502 | 503 | 504)
                || matches!(
                    s.err().code(),
                    Some(
                        "SlowDown"
                            | "RequestTimeout"
                            | "Throttling"
                            | "ThrottlingException"
                            | "RequestLimitExceeded"
                            | "TooManyRequestsException"
                    )
                )
        }
        _ => false,
    }
}

/// S3's calls for the upload engine.
#[async_trait]
impl multipart::Backend for S3Store {
    fn location(&self) -> String {
        EvidenceStore::location(self)
    }

    fn plan(&self) -> multipart::Plan {
        multipart::Plan {
            max_parts: MAX_PARTS,
            parts_in_flight: self.opts.parts_in_flight.max(1),
            max_attempts: self.opts.max_attempts.max(1),
            first_backoff: FIRST_BACKOFF,
            cut: format!(
                "s3 parts {} hint {:?}",
                self.opts.part_size, self.opts.size_hint
            ),
            object_digest: false,
        }
    }

    fn part_size(&self, part: i32) -> usize {
        self.opts.part_size_at(part)
    }

    async fn check(&self, key: &ObjectKey, full: &str) -> Result<(), StoreError> {
        if self.exists(full).await? {
            return Err(StoreError::AlreadyExists {
                key: key.clone(),
                location: EvidenceStore::location(self),
            });
        }
        Ok(())
    }

    async fn put_whole(
        &self,
        key: &ObjectKey,
        full: &str,
        body: Bytes,
        meta: &PutMeta,
    ) -> Option<Result<StoredObject, StoreError>> {
        Some(self.put_single(key, full, body, meta).await)
    }

    async fn start(&self, full: &str, meta: &PutMeta) -> Result<String, StoreError> {
        self.create_upload(full, meta).await
    }

    async fn listed(
        &self,
        full: &str,
        upload_id: &str,
    ) -> Result<BTreeMap<i32, multipart::Listed>, StoreError> {
        let mut listed = BTreeMap::new();
        let mut marker: Option<String> = None;
        loop {
            let out = self
                .client
                .list_parts()
                .bucket(&self.bucket)
                .key(full)
                .upload_id(upload_id)
                .set_part_number_marker(marker.clone())
                .send()
                .await
                .map_err(|e| self.remote("list the parts of", full, e))?;
            for p in out.parts() {
                if let (Some(n), Some(tag), Some(size)) =
                    (p.part_number, p.e_tag.as_deref(), p.size)
                    && let Ok(size) = u64::try_from(size)
                {
                    let tag = tag.to_owned();
                    listed.insert(n, multipart::Listed { size, tag });
                }
            }
            marker = out.next_part_number_marker.clone();
            if out.is_truncated != Some(true) || marker.is_none() {
                return Ok(listed);
            }
        }
    }

    async fn upload_part(
        &self,
        full: &str,
        upload_id: &str,
        part: i32,
        data: Bytes,
        sha256: &str,
    ) -> Result<String, multipart::PartError> {
        // The engine tries a part again itself: the SDK's retries are off
        // here so that tries are not multiplied.
        let once = aws_sdk_s3::config::Builder::default().retry_config(RetryConfig::disabled());
        let out = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(full)
            .upload_id(upload_id)
            .part_number(part)
            .checksum_sha256(sha256)
            .body(ByteStream::from(data))
            .customize()
            .config_override(once)
            .send()
            .await
            .map_err(|e| multipart::PartError {
                transient: transient(&e),
                error: self.remote("upload a part of", full, e),
            })?;
        Ok(out.e_tag.unwrap_or_default())
    }

    async fn complete(
        &self,
        key: &ObjectKey,
        full: &str,
        upload_id: &str,
        parts: &[journal::Part],
        object: &multipart::Finished,
        _meta: &PutMeta,
    ) -> Result<StoredObject, StoreError> {
        let parts = parts
            .iter()
            .map(|p| {
                CompletedPart::builder()
                    .part_number(p.part)
                    .e_tag(&p.etag)
                    .checksum_sha256(&p.sha256)
                    .build()
            })
            .collect();
        let out = self
            .client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(full)
            .upload_id(upload_id)
            .if_none_match("*")
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| self.remote("complete the upload of", full, e))?;
        Ok(StoredObject {
            key: key.clone(),
            size: object.size,
            version_id: out.version_id,
            etag: out.e_tag,
        })
    }

    async fn abort(&self, full: &str, upload_id: &str) {
        self.abort_quietly(full, upload_id).await;
    }
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
        body: EvidenceStream,
        meta: &PutMeta,
    ) -> Result<StoredObject, StoreError> {
        multipart::upload(self, key, &self.full_key(key), body, meta).await
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
