//! The Azure Blob evidence store: block blobs in a container, under an
//! optional prefix.
//!
//! A put streams the pipeline's output as staged blocks: blocks of
//! [`BLOCK_SIZE`] are cut from the stream as it arrives (no temporary file),
//! each carries its own Content-MD5 that the service checks, and at most
//! [`BLOCKS_IN_FLIGHT`] blocks are uploading at once, so memory stays at about
//! `BLOCK_SIZE × (BLOCKS_IN_FLIGHT + 1)`. Only when the stream ended without
//! error is the block list committed, with `If-None-Match: *` so that an
//! object that appeared meanwhile is never overwritten.
//!
//! A stream that fails, or a put that is dropped, commits nothing: the blob
//! never appears. Azure has no call to discard staged blocks; uncommitted
//! blocks are garbage-collected by the service on their own (after about a
//! week), are not listed, and cannot be read.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::sync::Arc;

use async_trait::async_trait;
use azure_core::error::ErrorKind;
use azure_core::http::StatusCode;
use azure_storage_blob::BlobContainerClient;
use azure_storage_blob::models::{
    BlobClientDownloadOptions, BlobClientGetPropertiesResultHeaders,
    BlobContainerClientListBlobsOptions, BlockBlobClientCommitBlockListOptions,
    BlockBlobClientCommitBlockListResultHeaders, BlockBlobClientStageBlockOptions, BlockLookupList,
};
use bytes::{Bytes, BytesMut};
use futures::{StreamExt, TryStreamExt};
use md5::{Digest as _, Md5};
use tokio::task::JoinSet;

use super::azure_auth::{SharedKeyCredential, blob_container_client};
use super::s3::Preflight;
use super::{EvidenceReader, EvidenceStore, EvidenceStream, ObjectKey, StoreError, StoredObject};

/// 4 MiB blocks: small enough to keep memory low, and each one is checked
/// with its own Content-MD5.
pub const BLOCK_SIZE: usize = 4 << 20;
/// Blocks uploading at once.
pub const BLOCKS_IN_FLIGHT: usize = 4;
/// Azure allows at most 50,000 committed blocks per blob (so about 195 GiB
/// with 4 MiB blocks).
pub const MAX_BLOCKS: u64 = 50_000;
/// Environment variable holding the storage account key for [`AzureBlobStore::from_url`].
pub const KEY_VAR: &str = "AZURE_STORAGE_KEY";

#[derive(Clone)]
pub struct AzureBlobStore {
    client: Arc<BlobContainerClient>,
    account: String,
    container: String,
    prefix: String,
}

impl fmt::Debug for AzureBlobStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AzureBlobStore")
            .field("account", &self.account)
            .field("container", &self.container)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// The block id of block `n` (0-based): fixed width, as Azure requires that
/// every block id of a blob has the same length. The client base64-encodes it.
fn block_id(n: u64) -> Vec<u8> {
    format!("custody-block-{n:012}").into_bytes()
}

/// An SDK error's message, shortened (it may carry a response body).
fn brief(e: &(dyn std::error::Error + 'static)) -> String {
    let full = crate::error_chain(e);
    match full.char_indices().nth(240) {
        Some((cut, _)) => format!("{}…", full.get(..cut).unwrap_or_default()),
        None => full,
    }
}

fn error_code(e: &azure_core::Error) -> Option<&str> {
    match e.kind() {
        ErrorKind::HttpResponse { error_code, .. } => error_code.as_deref(),
        _ => None,
    }
}

impl AzureBlobStore {
    /// A store on `client`'s container; `account` and `container` only name
    /// it in [`EvidenceStore::location`].
    pub fn new(
        client: BlobContainerClient,
        account: impl Into<String>,
        container: impl Into<String>,
        prefix: impl Into<String>,
    ) -> Self {
        let prefix: String = prefix.into();
        Self {
            client: Arc::new(client),
            account: account.into(),
            container: container.into(),
            prefix: prefix.trim_matches('/').to_owned(),
        }
    }

    /// A store for `az://account/container/prefix`, signed with the account
    /// key from `AZURE_STORAGE_KEY`. `endpoint` is the blob service URL (for
    /// Azurite `http://127.0.0.1:PORT/devstoreaccount1`); without it,
    /// `https://<account>.blob.core.windows.net`.
    pub async fn from_url(url: &url::Url, endpoint: Option<&str>) -> Result<Self, StoreError> {
        let invalid = |reason: String| StoreError::InvalidLocation {
            url: crate::config::redact_url(url.as_str()),
            reason,
        };
        if url.scheme() != "az" {
            return Err(invalid("expected az://account/container[/prefix]".into()));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(invalid(
                "an az:// location takes no query or fragment (a SAS token is not accepted here)"
                    .into(),
            ));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(invalid(
                "an az:// location takes no user information".into(),
            ));
        }
        let account = url
            .host_str()
            .filter(|a| !a.is_empty())
            .ok_or_else(|| invalid("no storage account name".into()))?;
        let path = url.path().trim_start_matches('/');
        let (container, prefix) = path.split_once('/').unwrap_or((path, ""));
        if container.is_empty() {
            return Err(invalid("no container name".into()));
        }
        let key = match std::env::var(KEY_VAR) {
            Ok(k) if !k.is_empty() => k,
            _ => {
                return Err(invalid(format!(
                    "no account key: set {KEY_VAR} to the key of storage account {account:?}"
                )));
            }
        };
        // SharedKeyError never carries the key.
        let cred = SharedKeyCredential::new(account, key)
            .map_err(|e| invalid(format!("{KEY_VAR}: {e}")))?;
        let endpoint = endpoint.map_or_else(
            || format!("https://{account}.blob.core.windows.net"),
            str::to_owned,
        );
        let client = blob_container_client(&endpoint, container, cred)
            .map_err(|e| invalid(e.to_string()))?;
        Ok(Self::new(client, account, container, prefix))
    }

    pub fn account(&self) -> &str {
        &self.account
    }

    pub fn container(&self) -> &str {
        &self.container
    }

    fn full_key(&self, key: &ObjectKey) -> String {
        if self.prefix.is_empty() {
            key.to_string()
        } else {
            format!("{}/{key}", self.prefix)
        }
    }

    fn remote(&self, op: &'static str, key: &str, e: &azure_core::Error) -> StoreError {
        StoreError::Io {
            op,
            key: key.to_owned(),
            location: self.location(),
            source: io::Error::other(brief(e)),
        }
    }

    /// A 404 becomes `NotFound`, anything else `Io`.
    fn read_error(&self, op: &'static str, key: &ObjectKey, e: &azure_core::Error) -> StoreError {
        if e.http_status() == Some(StatusCode::NotFound) {
            StoreError::NotFound {
                key: key.clone(),
                location: self.location(),
            }
        } else {
            self.remote(op, &self.full_key(key), e)
        }
    }

    /// Checks the container: exists, writable; reports what cannot be
    /// verified. Writes nothing that stays: the write probe stages one block
    /// that is never committed (the service discards it on its own).
    pub async fn preflight(&self) -> Preflight {
        let mut p = Preflight {
            location: self.location(),
            versioning: "Unknown".into(),
            object_lock: false,
            ..Preflight::default()
        };
        match self.client.get_properties(None).await {
            Ok(_) => p.exists = true,
            Err(e) => {
                p.findings.push(format!(
                    "container {} cannot be reached: {}",
                    self.container,
                    brief(&e)
                ));
                return p;
            }
        }
        let probe = self.full_key(&ObjectKey(format!(
            ".custody-preflight/{}",
            uuid::Uuid::new_v4().simple()
        )));
        let data = Bytes::from_static(b"custody preflight write probe");
        let md5 = Md5::digest(&data).to_vec();
        match self
            .client
            .blob_client(&probe)
            .block_blob_client()
            .stage_block(
                &block_id(0),
                data.len() as u64,
                data.into(),
                Some(BlockBlobClientStageBlockOptions {
                    transactional_content_md5: Some(md5),
                    ..Default::default()
                }),
            )
            .await
        {
            // The staged block is never committed: no blob appears, and the
            // service discards uncommitted blocks on its own.
            Ok(_) => p.writable = true,
            Err(e) => p.findings.push(format!(
                "cannot write to {}: {}",
                self.location(),
                brief(&e)
            )),
        }
        p.findings.push(
            "immutability (time-based retention policy, legal hold) is unverifiable on this \
             endpoint: it is not checked, so the container is not taken as write-once"
                .into(),
        );
        p.findings.push(
            "blob versioning is unverifiable on this endpoint: an overwritten or deleted blob \
             may not be recoverable"
                .into(),
        );
        p
    }

    /// Stages one block with its Content-MD5.
    async fn stage(
        client: Arc<BlobContainerClient>,
        full: String,
        n: u64,
        data: Bytes,
    ) -> Result<(), azure_core::Error> {
        let md5 = Md5::digest(&data).to_vec();
        client
            .blob_client(&full)
            .block_blob_client()
            .stage_block(
                &block_id(n),
                data.len() as u64,
                data.into(),
                Some(BlockBlobClientStageBlockOptions {
                    transactional_content_md5: Some(md5),
                    ..Default::default()
                }),
            )
            .await
            .map(|_| ())
    }
}

#[async_trait]
impl EvidenceStore for AzureBlobStore {
    fn location(&self) -> String {
        if self.prefix.is_empty() {
            format!("az://{}/{}", self.account, self.container)
        } else {
            format!("az://{}/{}/{}", self.account, self.container, self.prefix)
        }
    }

    async fn put(
        &self,
        key: &ObjectKey,
        mut body: EvidenceStream,
    ) -> Result<StoredObject, StoreError> {
        let full = self.full_key(key);
        let blob = self.client.blob_client(&full);
        match blob.exists().await {
            Ok(false) => {}
            Ok(true) => {
                return Err(StoreError::AlreadyExists {
                    key: key.clone(),
                    location: self.location(),
                });
            }
            Err(e) => return Err(self.remote("check for", &full, &e)),
        }

        // On any early return below (source error, failed block), the staged
        // blocks are simply left uncommitted: the blob never appears, and
        // Azure garbage-collects uncommitted blocks on its own.
        let mut inflight: JoinSet<Result<(), azure_core::Error>> = JoinSet::new();
        let mut buf = BytesMut::with_capacity(BLOCK_SIZE);
        let mut size = 0u64;
        let mut blocks = 0u64;
        let mut ended = false;
        while !ended {
            match body.next().await {
                Some(Ok(chunk)) => buf.extend_from_slice(&chunk),
                Some(Err(source)) => {
                    inflight.abort_all();
                    return Err(StoreError::SourceFailed {
                        key: key.clone(),
                        source,
                    });
                }
                None => ended = true,
            }
            while buf.len() >= BLOCK_SIZE || (ended && !buf.is_empty()) {
                let cut = buf.len().min(BLOCK_SIZE);
                let data = buf.split_to(cut).freeze();
                if blocks >= MAX_BLOCKS {
                    inflight.abort_all();
                    return Err(self.remote(
                        "upload",
                        &full,
                        &azure_core::Error::with_message(
                            ErrorKind::Other,
                            format!(
                                "the object is larger than {MAX_BLOCKS} blocks of {BLOCK_SIZE} bytes, Azure's limit for a block blob"
                            ),
                        ),
                    ));
                }
                while inflight.len() >= BLOCKS_IN_FLIGHT {
                    if let Some(r) = inflight.join_next().await {
                        self.joined(r, &full)?;
                    }
                }
                size += data.len() as u64;
                inflight.spawn(Self::stage(self.client.clone(), full.clone(), blocks, data));
                blocks += 1;
            }
        }
        while let Some(r) = inflight.join_next().await {
            self.joined(r, &full)?;
        }

        let list = BlockLookupList {
            latest: Some((0..blocks).map(block_id).collect()),
            ..Default::default()
        };
        let list = list
            .try_into()
            .map_err(|e: azure_core::Error| self.remote("upload", &full, &e))?;
        let metadata = HashMap::from([
            ("custody_key".to_owned(), key.to_string()),
            ("custody_size".to_owned(), size.to_string()),
        ]);
        let out = blob
            .block_blob_client()
            .commit_block_list(
                list,
                Some(BlockBlobClientCommitBlockListOptions {
                    if_none_match: Some("*".into()),
                    metadata: Some(metadata),
                    blob_content_type: Some("application/octet-stream".into()),
                    ..Default::default()
                }),
            )
            .await;
        let out = match out {
            Ok(out) => out,
            Err(e)
                if e.http_status() == Some(StatusCode::Conflict)
                    || error_code(&e) == Some("BlobAlreadyExists")
                    || e.http_status() == Some(StatusCode::PreconditionFailed) =>
            {
                return Err(StoreError::AlreadyExists {
                    key: key.clone(),
                    location: self.location(),
                });
            }
            Err(e) => return Err(self.remote("commit", &full, &e)),
        };
        Ok(StoredObject {
            key: key.clone(),
            size,
            version_id: out.version_id().ok().flatten(),
            etag: out.etag().ok().flatten().map(|e| e.to_string()),
        })
    }

    async fn get(&self, key: &ObjectKey) -> Result<EvidenceReader, StoreError> {
        let full = self.full_key(key);
        let out = self
            .client
            .blob_client(&full)
            .download(None)
            .await
            .map_err(|e| self.read_error("read", key, &e))?;
        let stream = out.body.map_err(|e| io::Error::other(brief(&e)));
        Ok(Box::pin(tokio_util::io::StreamReader::new(stream)))
    }

    async fn get_range(&self, key: &ObjectKey, offset: u64, len: u64) -> Result<Bytes, StoreError> {
        if len == 0 {
            return Ok(Bytes::new());
        }
        let full = self.full_key(key);
        let end = offset.saturating_add(len);
        let out = self
            .client
            .blob_client(&full)
            .download(Some(BlobClientDownloadOptions {
                range: Some((offset..end).into()),
                ..Default::default()
            }))
            .await;
        let out = match out {
            Ok(out) => out,
            // The range starts at or past the end of the object.
            Err(e) if e.http_status() == Some(StatusCode::RequestedRangeNotSatisfiable) => {
                return Ok(Bytes::new());
            }
            Err(e) => return Err(self.read_error("read", key, &e)),
        };
        out.body
            .collect()
            .await
            .map_err(|e| self.remote("read", &full, &e))
    }

    async fn size(&self, key: &ObjectKey) -> Result<u64, StoreError> {
        let full = self.full_key(key);
        let props = self
            .client
            .blob_client(&full)
            .get_properties(None)
            .await
            .map_err(|e| self.read_error("read the size of", key, &e))?;
        props
            .content_length()
            .map_err(|e| self.remote("read the size of", &full, &e))?
            .ok_or_else(|| {
                self.remote(
                    "read the size of",
                    &full,
                    &azure_core::Error::with_message(ErrorKind::Other, "no Content-Length"),
                )
            })
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectKey>, StoreError> {
        let full_prefix = if self.prefix.is_empty() {
            prefix.to_owned()
        } else {
            format!("{}/{prefix}", self.prefix)
        };
        let mut items = self
            .client
            .list_blobs(Some(BlobContainerClientListBlobsOptions {
                prefix: (!full_prefix.is_empty()).then(|| full_prefix.clone()),
                ..Default::default()
            }))
            .map_err(|e| self.remote("list", &full_prefix, &e))?;
        let strip = format!("{}/", self.prefix);
        let mut out = Vec::new();
        while let Some(item) = items.next().await {
            let item = item.map_err(|e| self.remote("list", &full_prefix, &e))?;
            let Some(name) = item.name else { continue };
            let rel = if self.prefix.is_empty() {
                name.as_str()
            } else {
                name.strip_prefix(&strip).unwrap_or_default()
            };
            if let Ok(key) = ObjectKey::new(rel) {
                out.push(key);
            }
        }
        out.sort();
        Ok(out)
    }
}

impl AzureBlobStore {
    fn joined(
        &self,
        r: Result<Result<(), azure_core::Error>, tokio::task::JoinError>,
        full: &str,
    ) -> Result<(), StoreError> {
        match r {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(self.remote("upload a block of", full, &e)),
            Err(e) => Err(StoreError::Io {
                op: "upload a block of",
                key: full.to_owned(),
                location: self.location(),
                source: io::Error::other(e.to_string()),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_ids_have_a_fixed_width() {
        assert_eq!(block_id(0).len(), block_id(MAX_BLOCKS).len());
        assert_ne!(block_id(1), block_id(2));
    }

    #[tokio::test]
    async fn from_url_needs_a_key_and_never_prints_it() {
        // Only the missing-key path and parsing; no network.
        let url = url::Url::parse("az://acct1/evidence/cases").unwrap();
        // The missing-key case is only checked when the variable is unset here.
        let had = std::env::var(KEY_VAR).ok();
        if had.is_none() {
            let err = AzureBlobStore::from_url(&url, None).await.unwrap_err();
            assert!(err.to_string().contains(KEY_VAR), "{err}");
        }
        let bad = url::Url::parse("az://acct1/evidence?sig=SECRET").unwrap();
        let err = AzureBlobStore::from_url(&bad, None).await.unwrap_err();
        assert!(!err.to_string().contains("SECRET"), "{err}");
        let none = url::Url::parse("az://acct1").unwrap();
        assert!(AzureBlobStore::from_url(&none, None).await.is_err());
    }
}
