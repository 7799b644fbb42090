//! The `EvidenceStore` seam: where artefacts and their manifests live.
//!
//! A store holds objects under slash-separated keys. It never overwrites an
//! object, and it commits an object only when its whole body arrived: a body
//! stream that ends in an error, or a put that is dropped part-way (Ctrl-C),
//! leaves nothing behind under the key.
//!
//! The store knows nothing of what it stores: its input is a stream of bytes
//! ([`EvidenceStream`]) and its settings are its own ([`s3::S3Settings`],
//! [`azure_blob::AzureSettings`]); the configuration re-exports them.
//!
//! | module | what |
//! |---|---|
//! | [`local`] | a directory, the embedded default |
//! | [`local_resume`] | the local store's resumable puts: a partial file kept across an interruption and given back |
//! | [`s3`] | S3 and S3-compatible stores |
//! | [`azure_blob`] | Azure Blob containers, and the one factory of Azure clients ([`azure_blob::AzureClients`]) |
//! | [`multipart`] | the upload engine S3 and Azure Blob share: parts in flight, retries, resume, completion |
//! | [`journal`] | the journal that lets an interrupted upload resume |
//! | [`settings`] | the stores' sections of custody.toml, in every build |
//! | [`azure_auth`] | how Azure requests are authorised: Shared Key signing (the Azure SDK lacks it), SAS, Entra ID; client builders |
//! | [`azure_sas`] | using and minting Azure shared access signatures |
//! | [`azure_key`] | the storage account key credential both of those sign with |
//!
//! Cloud SDK types never cross the trait. `s3` is built with the `aws`
//! feature, the `azure_*` modules with `azure`, `multipart` with either.

#[cfg(feature = "azure")]
pub mod azure_auth;
#[cfg(feature = "azure")]
pub mod azure_blob;
#[cfg(feature = "azure")]
pub mod azure_key;
#[cfg(feature = "azure")]
pub mod azure_sas;
pub mod journal;
pub mod local;
pub mod local_resume;
#[cfg(any(feature = "aws", feature = "azure"))]
pub mod multipart;
#[cfg(feature = "aws")]
pub mod s3;
pub mod settings;

use std::fmt;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use bytes::Bytes;
use futures::Stream;
use tokio::io::AsyncRead;

/// The stored bytes, in order, as the store consumes them. An `Err` item means
/// the source failed: the store must discard what it received.
pub type EvidenceStream = Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send>>;

/// A validated object key: relative, slash-separated, no empty, `.` or `..` parts.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey(String);

impl ObjectKey {
    pub fn new(key: impl Into<String>) -> Result<Self, StoreError> {
        let key = key.into();
        let ok = !key.is_empty()
            && key.len() <= 1024
            && !key.contains('\\')
            && !key.contains('\0')
            && key
                .split('/')
                .all(|p| !p.is_empty() && p != "." && p != "..");
        if ok {
            Ok(Self(key))
        } else {
            Err(StoreError::InvalidKey { key })
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a store reports about an object it committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredObject {
    pub key: ObjectKey,
    pub size: u64,
    /// Object version, where the store versions objects.
    pub version_id: Option<String>,
    pub etag: Option<String>,
}

/// What a bucket or container offers for evidence, as found before the
/// first write.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Preflight {
    pub location: String,
    pub exists: bool,
    /// A write could be started (and was discarded).
    pub writable: bool,
    /// `Enabled`, `Suspended`, `Off`, or `Unverifiable` where the endpoint
    /// cannot say.
    pub versioning: String,
    /// S3 Object Lock is enabled on the bucket.
    pub object_lock: bool,
    /// Default retention, as `COMPLIANCE 365 days`.
    pub default_retention: Option<String>,
    /// Azure container immutability: `time-based retention policy`,
    /// `legal hold`, `version-level immutability`, `none`, or
    /// `unverifiable` (an emulator, or headers the endpoint did not send).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub immutability: Option<String>,
    /// What is missing or could not be checked, each with its reason.
    pub findings: Vec<String>,
}

impl Preflight {
    /// Write-once: an S3 bucket with versioning and Object Lock, or an Azure
    /// container with a verified immutability policy or legal hold.
    pub fn is_worm(&self) -> bool {
        (self.versioning == "Enabled" && self.object_lock)
            || self
                .immutability
                .as_deref()
                .is_some_and(|i| !matches!(i, "none" | "unverifiable"))
    }
}

/// What a put knows about the object beyond its bytes.
#[derive(Debug, Clone, Default)]
pub struct PutMeta {
    /// Case and artefact ids, written as object metadata where the store has it.
    pub case: Option<String>,
    pub artefact: Option<String>,
    /// Size and hex SHA-256 of the data before compression, filled by the
    /// pipeline before the stream ends (so a store that commits at the end
    /// can record them).
    pub raw_digest: Option<Arc<OnceLock<(u64, String)>>>,
    /// Keep an interrupted upload resumable with this journal (stores that
    /// upload in parts); `None` aborts it instead.
    pub resume: Option<journal::ResumeSpec>,
    /// The source can take back what an interrupted put stored (see
    /// [`EvidenceStore::resumed_prefix`]): a store that can read it back
    /// keeps it, with `resume`'s journal, when the source fails or the put
    /// is dropped. Other sources would only read themselves again.
    pub keep_partial: bool,
    /// The producer's running SHA-256 of the stored bytes at each chunk's
    /// end: a store that checkpoints what it wrote takes its checkpoints'
    /// digests from here rather than hashing every byte a second time.
    pub stored_digests: Option<Arc<PrefixDigests>>,
}

/// SHA-256 of a stream's first bytes at the end of its latest chunks,
/// published by the producer, which hashes the stream anyway, before it
/// sends each chunk. Only the newest are kept: a consumer asks for the end
/// of a chunk it has just received, a few chunks behind the producer.
#[derive(Debug, Default)]
pub struct PrefixDigests {
    ends: std::sync::Mutex<std::collections::VecDeque<(u64, [u8; 32])>>,
}

impl PrefixDigests {
    /// Chunks a consumer may lag behind and still find its digest.
    const KEPT: usize = 64;

    /// The digest of the stream's first `end` bytes.
    pub fn publish(&self, end: u64, digest: [u8; 32]) {
        let mut ends = self.ends.lock().unwrap_or_else(|e| e.into_inner());
        if ends.len() == Self::KEPT {
            ends.pop_front();
        }
        ends.push_back((end, digest));
    }

    /// The digest of the first `end` bytes, if it is still kept; those of
    /// shorter prefixes are dropped.
    pub fn take(&self, end: u64) -> Option<[u8; 32]> {
        let mut ends = self.ends.lock().unwrap_or_else(|e| e.into_inner());
        while ends.front().is_some_and(|(e, _)| *e < end) {
            ends.pop_front();
        }
        ends.front().filter(|(e, _)| *e == end).map(|(_, d)| *d)
    }
}

/// The stored bytes an interrupted put holds, checked against its journal:
/// whole frames from the object's start.
pub struct StoredPrefix {
    pub reader: Box<dyn std::io::Read + Send>,
    /// Stored (compressed) bytes the reader gives.
    pub len: u64,
}

impl fmt::Debug for StoredPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredPrefix")
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

impl PutMeta {
    /// Metadata pairs known before the upload starts.
    pub fn ids(&self) -> Vec<(&'static str, String)> {
        let mut v = Vec::new();
        if let Some(c) = &self.case {
            v.push(("custody-case", c.clone()));
        }
        if let Some(a) = &self.artefact {
            v.push(("custody-artefact", a.clone()));
        }
        v
    }

    /// The raw digest, once the stream has ended.
    pub fn raw(&self) -> Option<(u64, String)> {
        self.raw_digest.as_ref().and_then(|c| c.get().cloned())
    }
}

pub type EvidenceReader = Pin<Box<dyn AsyncRead + Send>>;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("invalid object key {key:?}")]
    InvalidKey { key: String },
    #[error("invalid store location {url:?}: {reason}")]
    InvalidLocation { url: String, reason: String },
    #[error("{location} is not write-once storage and the configuration requires it: {findings}")]
    NotWorm { location: String, findings: String },
    #[error("object {key} already exists in {location}; evidence is never overwritten")]
    AlreadyExists { key: ObjectKey, location: String },
    #[error("object {key} not found in {location}")]
    NotFound { key: ObjectKey, location: String },
    #[error("the data for {key} failed before it was complete; nothing was stored")]
    SourceFailed {
        key: ObjectKey,
        #[source]
        source: io::Error,
    },
    #[error("failed to {op} {key} in {location}")]
    Io {
        op: &'static str,
        key: String,
        location: String,
        #[source]
        source: io::Error,
    },
}

#[async_trait]
pub trait EvidenceStore: Send + Sync + fmt::Debug {
    /// The store's URL, without credentials; recorded in manifests.
    fn location(&self) -> String;

    /// Stores `body` under `key`. Fails if `key` exists. Commits only when the
    /// stream ended without error.
    async fn put(&self, key: &ObjectKey, body: EvidenceStream) -> Result<StoredObject, StoreError>;

    /// [`put`](Self::put) with what is known about the object: metadata and,
    /// for stores that upload in parts, a journal that keeps an interrupted
    /// upload resumable. Stores without either ignore `meta`.
    async fn put_with(
        &self,
        key: &ObjectKey,
        body: EvidenceStream,
        meta: &PutMeta,
    ) -> Result<StoredObject, StoreError> {
        let _ = meta;
        self.put(key, body).await
    }

    /// What an interrupted put of `key`, made with `resume`'s journal and
    /// [`PutMeta::keep_partial`], already stored and this store can give
    /// back, checked part by part against the journal. `None` when there is
    /// nothing, or when the store cannot read uncommitted data (S3's parts
    /// and Azure's uncommitted blocks cannot be downloaded: those uploads
    /// resume by sending only the missing parts, from a source read again).
    async fn resumed_prefix(
        &self,
        key: &ObjectKey,
        resume: &journal::ResumeSpec,
    ) -> Result<Option<StoredPrefix>, StoreError> {
        let _ = (key, resume);
        Ok(None)
    }

    /// Reads an object from its start.
    async fn get(&self, key: &ObjectKey) -> Result<EvidenceReader, StoreError>;

    /// Reads `len` bytes of an object from `offset` (fewer at its end).
    async fn get_range(&self, key: &ObjectKey, offset: u64, len: u64) -> Result<Bytes, StoreError>;

    /// [`get_range`](Self::get_range) into `buf`, which comes back holding
    /// the bytes: a disk image read in place asks for thousands of ranges,
    /// and a caller that reuses one buffer spares the kernel paging in (and
    /// zeroing) fresh memory for each. Stores that receive a body of their
    /// own copy it in.
    async fn get_range_into(
        &self,
        key: &ObjectKey,
        offset: u64,
        len: u64,
        mut buf: Vec<u8>,
    ) -> Result<Vec<u8>, StoreError> {
        let bytes = self.get_range(key, offset, len).await?;
        buf.clear();
        buf.extend_from_slice(&bytes);
        Ok(buf)
    }

    /// Size of an object in bytes.
    async fn size(&self, key: &ObjectKey) -> Result<u64, StoreError>;

    /// Keys under `prefix` (a key prefix, not necessarily ending in `/`), sorted.
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectKey>, StoreError>;

    /// Stores a small object held in memory.
    async fn put_bytes(&self, key: &ObjectKey, body: Bytes) -> Result<StoredObject, StoreError> {
        let stream = futures::stream::once(async move { Ok::<_, io::Error>(body) });
        self.put(key, Box::pin(stream)).await
    }

    /// Reads a whole small object into memory.
    async fn get_bytes(&self, key: &ObjectKey) -> Result<Vec<u8>, StoreError> {
        use tokio::io::AsyncReadExt;
        let mut r = self.get(key).await?;
        let mut out = Vec::new();
        r.read_to_end(&mut out)
            .await
            .map_err(|source| StoreError::Io {
                op: "read",
                key: key.to_string(),
                location: self.location(),
                source,
            })?;
        Ok(out)
    }
}

/// A URL safe to log: no user info, no query (SAS tokens and presigned
/// signatures live there).
pub fn redact_url(s: &str) -> String {
    match url::Url::parse(s) {
        Ok(mut u) => {
            let _ = u.set_password(None);
            let _ = u.set_username("");
            if u.query().is_some() {
                u.set_query(Some("REDACTED"));
            }
            u.to_string()
        }
        Err(_) => s.split('?').next().unwrap_or_default().to_owned(),
    }
}

/// `key` under `prefix` (a prefix without slashes at its ends, or empty).
#[cfg(any(feature = "aws", feature = "azure"))]
fn prefixed(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_owned()
    } else {
        format!("{prefix}/{key}")
    }
}

/// Opens the store named by `url`: `file:///path` or a plain path (the
/// local store), `s3://bucket/prefix`, or an Azure container
/// (`az://account/container/prefix` or its blob endpoint URL); `aws` is
/// the endpoint, region and profile of S3 (its endpoint also points `az://`
/// at an emulator or a compatible service).
#[cfg_attr(not(all(feature = "aws", feature = "azure")), allow(unused_variables))]
pub async fn open(
    url: &str,
    aws: &crate::aws::AwsOptions,
    s3: &settings::S3Settings,
    azure: &settings::AzureSettings,
) -> Result<Box<dyn EvidenceStore>, StoreError> {
    let invalid = |reason: &str| StoreError::InvalidLocation {
        url: redact_url(url),
        reason: reason.to_owned(),
    };
    if let Some((scheme, _)) = url.split_once("://") {
        let parsed = url::Url::parse(url).map_err(|e| invalid(&e.to_string()))?;
        return match scheme {
            "file" => {
                let path = parsed
                    .to_file_path()
                    .map_err(|()| invalid("a file URL needs an absolute local path"))?;
                Ok(Box::new(local::LocalStore::new(path)))
            }
            #[cfg(feature = "aws")]
            "s3" => Ok(Box::new(
                s3::S3Store::from_url(&parsed, aws, s3::S3Options::from_settings(s3)).await?,
            )),
            #[cfg(not(feature = "aws"))]
            "s3" => Err(invalid("this custody was built without the `aws` feature")),
            #[cfg(feature = "azure")]
            "az" | "https" | "http" => Ok(Box::new(
                azure_blob::AzureBlobStore::from_url(
                    &parsed,
                    aws.endpoint.as_deref(),
                    azure.require_worm,
                )
                .await?,
            )),
            #[cfg(not(feature = "azure"))]
            "az" | "https" | "http" => Err(invalid(
                "this custody was built without the `azure` feature",
            )),
            _ => Err(invalid(
                "unknown scheme; expected file://, s3://, az:// or an Azure blob endpoint URL",
            )),
        };
    }
    if url.is_empty() {
        return Err(invalid("it is empty"));
    }
    let path = std::path::absolute(url).map_err(|e| invalid(&e.to_string()))?;
    Ok(Box::new(local::LocalStore::new(path)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_refuse_traversal() {
        for bad in [
            "",
            "/abs",
            "a//b",
            "a/../b",
            "..",
            "a/./b",
            "a\\b",
            "trailing/",
        ] {
            assert!(ObjectKey::new(bad).is_err(), "{bad:?}");
        }
        assert!(ObjectKey::new("cases/c1/artefacts/a.zst").is_ok());
    }

    #[tokio::test]
    async fn open_understands_locations() {
        let local = open(
            "file:///tmp/x",
            &crate::aws::AwsOptions::default(),
            &Default::default(),
            &Default::default(),
        )
        .await
        .expect("file url");
        assert!(local.location().starts_with("file:///tmp/x"));
        assert!(
            open(
                "relative/dir",
                &crate::aws::AwsOptions::default(),
                &Default::default(),
                &Default::default()
            )
            .await
            .is_ok()
        );
        // An Azure location with an expired SAS is refused without echoing it.
        let Err(err) = open(
            "az://acct/container?sv=2021-08-06&se=2020-01-01T00:00:00Z&sig=SECRET",
            &crate::aws::AwsOptions::default(),
            &Default::default(),
            &Default::default(),
        )
        .await
        else {
            panic!("an expired SAS must be refused")
        };
        assert!(
            err.to_string().contains("az://acct/container") && !err.to_string().contains("SECRET"),
            "{err}"
        );
        assert!(
            open(
                "gopher://x",
                &crate::aws::AwsOptions::default(),
                &Default::default(),
                &Default::default()
            )
            .await
            .is_err()
        );
        assert!(
            open(
                "file://host/x",
                &crate::aws::AwsOptions::default(),
                &Default::default(),
                &Default::default()
            )
            .await
            .is_err()
        );
    }
}
