//! The Azure Blob evidence store: block blobs in a container, under an
//! optional prefix.
//!
//! A put goes through the shared upload engine ([`super::multipart`]): the
//! pipeline's output is staged as blocks of [`BLOCK_SIZE`] cut from the
//! stream as it arrives (no temporary file), each with its own Content-MD5
//! that the service checks, at most [`BLOCKS_IN_FLIGHT`] uploading at once,
//! so memory stays at about `BLOCK_SIZE × (BLOCKS_IN_FLIGHT + 1)`. Only when
//! the stream ended without error is the block list committed, with
//! `If-None-Match: *` so that an object that appeared meanwhile is never
//! overwritten, and with the object's size and SHA-256 as metadata.
//!
//! A stream that fails, or a put that is dropped, commits nothing: the blob
//! never appears. Azure has no call to discard staged blocks; uncommitted
//! blocks are garbage-collected by the service on their own (after about a
//! week), are not listed as blobs, and cannot be read. With a journal
//! ([`PutMeta::resume`]) a rerun within that week stages only the blocks the
//! journal and the service's uncommitted block list do not both confirm.
//! Throttling, 5xx and dropped connections are retried with backoff
//! ([`MAX_ATTEMPTS`] tries: blocks by the engine, other requests by the
//! SDK); 403 and 404 are not.
//!
//! Every Azure client custody uses is built by [`AzureClients`], from a
//! location URL, an endpoint override and the credentials in the environment.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use azure_core::error::ErrorKind;
use azure_core::http::StatusCode;
use azure_storage_blob::models::{
    BlobClientDownloadOptions, BlobClientGetPropertiesResultHeaders,
    BlobContainerClientGetPropertiesResultHeaders, BlobContainerClientListBlobsOptions,
    BlockBlobClientCommitBlockListOptions, BlockBlobClientCommitBlockListResultHeaders,
    BlockBlobClientStageBlockOptions, BlockListType, BlockLookupList,
};
use azure_storage_blob::{
    BlobContainerClient, BlobContainerClientOptions, BlobServiceClient, BlobServiceClientOptions,
};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use md5::{Digest as _, Md5};

use super::Preflight;
use super::azure_auth::{AzureAuth, SharedKeyCredential, container_client, service_client};
use super::azure_sas::SasToken;
use super::{
    EvidenceReader, EvidenceStore, EvidenceStream, ObjectKey, PutMeta, StoreError, StoredObject,
    journal, multipart, redact_url,
};

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
/// The first retry's wait, doubling up to 10 s: for blocks (the engine) and
/// every other request (the SDK) alike.
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
/// What the upload journal's header says of the upload: Azure has no
/// upload id, only blocks staged under a blob's name.
const STAGED: &str = "staged-blocks";

pub use super::settings::AzureSettings;

#[derive(Clone)]
pub struct AzureBlobStore {
    client: Arc<BlobContainerClient>,
    /// The same container for staging blocks: without the SDK's retries
    /// where the engine tries blocks again itself.
    blocks: Arc<BlobContainerClient>,
    account: String,
    container: String,
    prefix: String,
    /// How requests are authorised, for messages.
    auth: &'static str,
    require_worm: bool,
    /// The container's preflight, taken before the first write.
    checked: Arc<tokio::sync::OnceCell<Preflight>>,
    /// The account's blob service, for account-level settings.
    service: Option<Arc<azure_storage_blob::BlobServiceClient>>,
}

/// What a readiness audit reads of an evidence container and its account.
#[derive(Debug, Clone)]
pub struct ContainerFacts {
    /// The anonymous access level, when there is one (`blob`, `container`).
    pub public_access: Option<String>,
    /// `time-based retention policy`, `legal hold`, `version-level
    /// immutability` or `none`; `None` when the endpoint did not say.
    pub immutability: Option<String>,
    /// A loopback endpoint: an emulator, which enforces no immutability.
    pub emulator: bool,
    /// Soft delete's retention in days (`Ok(None)`: off), or why it could not be read.
    pub soft_delete_days: Result<Option<u32>, String>,
}

/// Attempts per request, the first included: 408, 429, 5xx and dropped
/// connections are retried with exponential backoff; 403 and 404 never.
pub const MAX_ATTEMPTS: u32 = 5;

impl fmt::Debug for AzureBlobStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AzureBlobStore")
            .field("account", &self.account)
            .field("container", &self.container)
            .field("prefix", &self.prefix)
            .field("auth", &self.auth)
            .finish_non_exhaustive()
    }
}

/// The block id of block `n` (0-based): fixed width, as Azure requires that
/// every block id of a blob has the same length. The client base64-encodes it.
fn block_id(n: u64) -> Vec<u8> {
    format!("custody-block-{n:012}").into_bytes()
}

/// The block of engine part `part` (parts count from 1, blocks from 0).
fn part_block(part: i32) -> Vec<u8> {
    block_id(u64::try_from(part.saturating_sub(1)).unwrap_or(0))
}

/// The engine part a staged block id names, if custody staged it.
fn block_part(id: &[u8]) -> Option<i32> {
    let n: u64 = std::str::from_utf8(id)
        .ok()?
        .strip_prefix("custody-block-")?
        .parse()
        .ok()?;
    i32::try_from(n).ok()?.checked_add(1)
}

/// An SDK error's message, shortened (it may carry a response body).
fn brief(e: &(dyn std::error::Error + 'static)) -> String {
    let full = redact_sig(&crate::error_chain(e));
    match full.char_indices().nth(240) {
        Some((cut, _)) => format!("{}…", full.get(..cut).unwrap_or_default()),
        None => full,
    }
}

/// Replaces the value of every `sig=` in `s` (a SAS signature that an error
/// message may have quoted in a URL).
fn redact_sig(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("sig=") {
        let (head, tail) = rest.split_at(i + 4);
        out.push_str(head);
        out.push_str("REDACTED");
        let end = tail
            .find(|c: char| c == '&' || c == '"' || c == '\'' || c.is_whitespace() || c == ')')
            .unwrap_or(tail.len());
        rest = tail.get(end..).unwrap_or_default();
    }
    out.push_str(rest);
    out
}

/// Where a location points: the blob service endpoint, account, container
/// and key prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocationParts {
    pub endpoint: String,
    pub account: String,
    pub container: String,
    pub prefix: String,
}

fn parse_location(url: &url::Url, endpoint: Option<&str>) -> Result<LocationParts, String> {
    if url.fragment().is_some() {
        return Err("an Azure location takes no fragment".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("an Azure location takes no user information".into());
    }
    let host = url
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| "no storage account or host".to_owned())?;
    let mut segments: Vec<&str> = url
        .path_segments()
        .map(|s| s.filter(|p| !p.is_empty()).collect())
        .unwrap_or_default();
    let (endpoint, account) = match url.scheme() {
        "az" => {
            if url.port().is_some() {
                return Err("az://account/container takes no port; use --endpoint-url".into());
            }
            let endpoint = endpoint.map_or_else(
                || format!("https://{host}.blob.core.windows.net"),
                |e| e.trim_end_matches('/').to_owned(),
            );
            (endpoint, host.to_owned())
        }
        "https" | "http" => {
            let origin = url.origin().ascii_serialization();
            let path_style = matches!(url.host(), Some(url::Host::Ipv4(_) | url::Host::Ipv6(_)))
                || host.eq_ignore_ascii_case("localhost");
            if path_style {
                // Emulator layout: the account is the first path segment.
                if segments.is_empty() {
                    return Err("no account name in the path (expected /account/container)".into());
                }
                let account = segments.remove(0).to_owned();
                (format!("{origin}/{account}"), account)
            } else {
                let Some((account, rest)) = host.split_once('.') else {
                    return Err("expected a host like ACCOUNT.blob.core.windows.net".into());
                };
                if !rest.starts_with("blob.") {
                    return Err(format!(
                        "{host} is not a blob service endpoint (expected ACCOUNT.blob.…)"
                    ));
                }
                (origin, account.to_owned())
            }
        }
        other => return Err(format!("{other}:// is not an Azure location")),
    };
    let Some(container) = segments.first().map(|c| (*c).to_owned()) else {
        return Err("no container name".into());
    };
    let prefix = segments.get(1..).unwrap_or_default().join("/");
    Ok(LocationParts {
        endpoint,
        account,
        container,
        prefix,
    })
}

/// Environment variable holding a SAS token for [`AzureBlobStore::from_url`].
pub const SAS_VAR: &str = "AZURE_STORAGE_SAS_TOKEN";

fn choose_auth(account: &str, query: Option<&str>) -> Result<AzureAuth, String> {
    let now = time::OffsetDateTime::now_utc();
    if let Some(q) = query.filter(|q| !q.is_empty()) {
        return SasToken::parse(q, now)
            .map(AzureAuth::Sas)
            .map_err(|e| format!("the SAS token in the URL: {e}"));
    }
    if let Ok(key) = std::env::var(KEY_VAR)
        && !key.is_empty()
    {
        // SharedKeyError never carries the key.
        return SharedKeyCredential::new(account, key)
            .map(AzureAuth::SharedKey)
            .map_err(|e| format!("{KEY_VAR}: {e}"));
    }
    if let Ok(sas) = std::env::var(SAS_VAR)
        && !sas.is_empty()
    {
        return SasToken::parse(&sas, now)
            .map(AzureAuth::Sas)
            .map_err(|e| format!("{SAS_VAR}: {e}"));
    }
    let entra = if std::env::var_os("AZURE_FEDERATED_TOKEN_FILE").is_some() {
        azure_identity::WorkloadIdentityCredential::new(None)
            .map(|c| c as std::sync::Arc<dyn azure_core::credentials::TokenCredential>)
    } else {
        azure_identity::ManagedIdentityCredential::new(None)
            .map(|c| c as std::sync::Arc<dyn azure_core::credentials::TokenCredential>)
    };
    entra.map(AzureAuth::Entra).map_err(|e| {
        format!(
            "no credentials: set {KEY_VAR} (account key) or {SAS_VAR}, or run where an Entra ID \
             managed or workload identity is available ({})",
            brief(&e)
        )
    })
}

/// A loopback endpoint: the emulator, which enforces neither immutability
/// nor versioning.
fn is_emulator(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

fn error_code(e: &azure_core::Error) -> Option<&str> {
    match e.kind() {
        ErrorKind::HttpResponse { error_code, .. } => error_code.as_deref(),
        _ => None,
    }
}

/// Whether another try of a failed request may succeed: 408, 429, 5xx, or
/// a dropped connection. 403 and 404 never.
fn transient(e: &azure_core::Error) -> bool {
    matches!(e.kind(), ErrorKind::Io | ErrorKind::Connection)
        || matches!(
            e.http_status(),
            Some(
                StatusCode::RequestTimeout
                    | StatusCode::TooManyRequests
                    | StatusCode::InternalServerError
                    | StatusCode::BadGateway
                    | StatusCode::ServiceUnavailable
                    | StatusCode::GatewayTimeout
            )
        )
}

/// The clients for one Azure Blob location: the one place custody builds
/// them, for the store and for anything else that reads the container or
/// its account (readiness audits).
pub struct AzureClients {
    /// Endpoint, account, container and key prefix.
    pub location: LocationParts,
    /// How every request is authorised.
    pub auth: AzureAuth,
    /// The container; the SDK retries its requests ([`MAX_ATTEMPTS`] tries).
    pub container: BlobContainerClient,
    /// The same container without the SDK's retries, for staging blocks,
    /// which the upload engine tries again itself.
    pub blocks: BlobContainerClient,
    /// The account's blob service, for account-level settings.
    pub service: BlobServiceClient,
}

impl fmt::Debug for AzureClients {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AzureClients")
            .field("location", &self.location)
            .field("auth", &self.auth)
            .finish_non_exhaustive()
    }
}

impl AzureClients {
    /// The clients for `az://account/container/prefix` or a blob endpoint URL
    /// (`https://account.blob.core.windows.net/container/prefix`, or for a
    /// loopback emulator the path-style
    /// `http://127.0.0.1:PORT/account/container/prefix`), optionally with a
    /// SAS token as its query.
    ///
    /// `endpoint` overrides the blob service URL of an `az://` location (for
    /// Azurite `http://127.0.0.1:PORT/devstoreaccount1`); without it,
    /// `https://<account>.blob.core.windows.net`.
    ///
    /// Credentials, first found wins: a SAS token in the URL; the account key
    /// in `AZURE_STORAGE_KEY`; a SAS token in `AZURE_STORAGE_SAS_TOKEN`; else
    /// Entra ID: workload identity where `AZURE_FEDERATED_TOKEN_FILE` is set,
    /// managed identity otherwise. No request is made.
    pub fn from_url(url: &url::Url, endpoint: Option<&str>) -> Result<Self, StoreError> {
        let invalid = |reason: String| StoreError::InvalidLocation {
            url: redact_url(url.as_str()),
            reason,
        };
        let location = parse_location(url, endpoint).map_err(invalid)?;
        let auth = choose_auth(&location.account, url.query()).map_err(invalid)?;
        let retrying = azure_core::http::RetryOptions::exponential(
            azure_core::http::ExponentialRetryOptions {
                initial_delay: azure_core::time::Duration::try_from(FIRST_BACKOFF)
                    .unwrap_or_default(),
                max_retries: MAX_ATTEMPTS - 1,
                max_total_elapsed: azure_core::time::Duration::seconds(120),
                max_delay: azure_core::time::Duration::try_from(multipart::MAX_BACKOFF)
                    .unwrap_or_default(),
            },
        );
        let container = |retry| {
            let mut options = BlobContainerClientOptions::default();
            options.client_options.retry = retry;
            container_client(
                &location.endpoint,
                &location.container,
                auth.clone(),
                options,
            )
            .map_err(|e| invalid(e.to_string()))
        };
        let blocks = container(azure_core::http::RetryOptions::none())?;
        let mut service_options = BlobServiceClientOptions::default();
        service_options.client_options.retry = retrying.clone();
        let service = service_client(&location.endpoint, auth.clone(), service_options)
            .map_err(|e| invalid(e.to_string()))?;
        Ok(Self {
            container: container(retrying)?,
            blocks,
            service,
            location,
            auth,
        })
    }
}

impl AzureBlobStore {
    /// A store on `client`'s container; `account` and `container` only name
    /// it in [`EvidenceStore::location`]. Blocks are staged through `client`
    /// too, under its own retry options.
    pub fn new(
        client: BlobContainerClient,
        account: impl Into<String>,
        container: impl Into<String>,
        prefix: impl Into<String>,
    ) -> Self {
        let prefix: String = prefix.into();
        let client = Arc::new(client);
        Self {
            blocks: client.clone(),
            client,
            account: account.into(),
            container: container.into(),
            prefix: prefix.trim_matches('/').to_owned(),
            auth: "caller-supplied client",
            require_worm: false,
            checked: Arc::new(tokio::sync::OnceCell::new()),
            service: None,
        }
    }

    /// A store on the clients [`AzureClients::from_url`] built.
    pub fn from_clients(clients: AzureClients, require_worm: bool) -> Self {
        let LocationParts {
            account,
            container,
            prefix,
            ..
        } = clients.location;
        let mut store = Self::new(clients.container, account, container, prefix);
        store.blocks = Arc::new(clients.blocks);
        store.service = Some(Arc::new(clients.service));
        store.auth = clients.auth.describe();
        store.require_worm = require_worm;
        store
    }

    /// A store for an Azure location: [`AzureClients::from_url`] says which
    /// locations and credentials.
    pub async fn from_url(
        url: &url::Url,
        endpoint: Option<&str>,
        require_worm: bool,
    ) -> Result<Self, StoreError> {
        Ok(Self::from_clients(
            AzureClients::from_url(url, endpoint)?,
            require_worm,
        ))
    }

    pub fn account(&self) -> &str {
        &self.account
    }

    pub fn container(&self) -> &str {
        &self.container
    }

    fn full_key(&self, key: &ObjectKey) -> String {
        super::prefixed(&self.prefix, key.as_str())
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

    /// The container's access level and immutability, and the account's
    /// soft delete, for a readiness audit. Fails when the container cannot
    /// be read.
    pub async fn facts(&self) -> Result<ContainerFacts, StoreError> {
        let props = self
            .client
            .get_properties(None)
            .await
            .map_err(|e| self.remote("GetContainerProperties", &self.container, &e))?;
        let flag = |r: azure_core::Result<Option<bool>>| r.ok().flatten();
        let immutability = match (
            flag(props.has_immutability_policy()),
            flag(props.has_legal_hold()),
            flag(props.is_immutable_storage_with_versioning_enabled()),
        ) {
            (Some(true), _, _) => Some("time-based retention policy"),
            (_, Some(true), _) => Some("legal hold"),
            (_, _, Some(true)) => Some("version-level immutability"),
            (None, None, None) => None,
            _ => Some("none"),
        };
        let soft_delete_days = match &self.service {
            None => Err("no blob service client for this store".to_owned()),
            Some(svc) => match svc.get_properties(None).await {
                Ok(r) => r
                    .into_model()
                    .map(|p| {
                        p.delete_retention_policy
                            .filter(|d| d.enabled == Some(true))
                            .map(|d| d.days.and_then(|x| u32::try_from(x).ok()).unwrap_or(0))
                    })
                    .map_err(|e| format!("GetServiceProperties: {}", brief(&e))),
                Err(e) => Err(format!("GetServiceProperties failed: {}", brief(&e))),
            },
        };
        Ok(ContainerFacts {
            public_access: props.access().ok().flatten().map(|a| a.to_string()),
            immutability: immutability.map(str::to_owned),
            emulator: is_emulator(self.client.url()),
            soft_delete_days,
        })
    }

    /// Checks the container: exists, writable, public access, immutability
    /// and versioning where the endpoint shows them. Writes nothing that
    /// stays: the write probe stages one block that is never committed (the
    /// service discards it on its own).
    ///
    /// An emulator (a loopback endpoint) does not enforce immutability,
    /// legal hold or versioning, so they are reported as unverifiable there,
    /// never as present.
    pub async fn preflight(&self) -> Preflight {
        let mut p = Preflight {
            location: self.location(),
            versioning: "Unverifiable".into(),
            immutability: Some("unverifiable".into()),
            ..Preflight::default()
        };
        let emulator = is_emulator(self.client.url());
        match self.client.get_properties(None).await {
            Ok(props) => {
                p.exists = true;
                if matches!(props.access(), Ok(Some(_))) {
                    p.findings.push(format!(
                        "container {} allows anonymous public read access",
                        self.container
                    ));
                }
                let flag = |r: azure_core::Result<Option<bool>>| r.ok().flatten();
                let policy = flag(props.has_immutability_policy());
                let hold = flag(props.has_legal_hold());
                let versioned = flag(props.is_immutable_storage_with_versioning_enabled());
                if !emulator {
                    p.immutability = Some(
                        match (policy, hold, versioned) {
                            (Some(true), _, _) => "time-based retention policy",
                            (_, Some(true), _) => "legal hold",
                            (_, _, Some(true)) => "version-level immutability",
                            (None, None, None) => "unverifiable",
                            _ => "none",
                        }
                        .into(),
                    );
                }
            }
            Err(e) => {
                p.findings.push(format!(
                    "container {} cannot be reached ({}): {}",
                    self.container,
                    self.auth,
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
        match Self::stage(&self.client, &probe, &block_id(0), data).await {
            // The staged block is never committed: no blob appears, and the
            // service discards uncommitted blocks on its own.
            Ok(()) => p.writable = true,
            Err(e) => p.findings.push(format!(
                "cannot write to {} ({}): {}",
                self.location(),
                self.auth,
                brief(&e)
            )),
        }
        match p.immutability.as_deref() {
            Some("unverifiable") => p.findings.push(if emulator {
                "immutability (time-based retention policy, legal hold) is unverifiable on this \
                 emulator endpoint, which does not enforce it: the container is not taken as \
                 write-once"
                    .into()
            } else {
                "immutability is unverifiable: the service did not report the container's \
                 immutability policy or legal hold"
                    .into()
            }),
            Some("none") => p.findings.push(format!(
                "container {} has no immutability policy or legal hold: evidence can be \
                 overwritten or deleted",
                self.container
            )),
            _ => {}
        }
        p.findings.push(
            "blob versioning is an account setting this check cannot read: an overwritten or \
             deleted blob may not be recoverable"
                .into(),
        );
        p
    }

    /// Runs the preflight once, before the first write; refuses to write to
    /// a missing container, or to one not verified write-once when that is
    /// required.
    async fn check_before_write(&self) -> Result<(), StoreError> {
        let p = self
            .checked
            .get_or_init(|| async {
                let p = self.preflight().await;
                // Once per store, not once per object.
                if p.exists && !p.is_worm() && !self.require_worm {
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
        if !p.is_worm() && self.require_worm {
            return Err(StoreError::NotWorm {
                location: self.location(),
                findings: p.findings.join("; "),
            });
        }
        Ok(())
    }

    /// Stages one block with its Content-MD5.
    async fn stage(
        client: &BlobContainerClient,
        full: &str,
        id: &[u8],
        data: Bytes,
    ) -> Result<(), azure_core::Error> {
        let md5 = Md5::digest(&data).to_vec();
        client
            .blob_client(full)
            .block_blob_client()
            .stage_block(
                id,
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

/// Azure Blob's calls for the upload engine: parts are blocks.
#[async_trait]
impl multipart::Backend for AzureBlobStore {
    fn location(&self) -> String {
        EvidenceStore::location(self)
    }

    fn plan(&self) -> multipart::Plan {
        multipart::Plan {
            max_parts: MAX_BLOCKS,
            parts_in_flight: BLOCKS_IN_FLIGHT,
            max_attempts: MAX_ATTEMPTS,
            first_backoff: FIRST_BACKOFF,
            // Journals numbered their blocks from 0 before the engine
            // numbered parts from 1: "from 1" keeps those from being misread.
            cut: format!("azure blocks {BLOCK_SIZE} from 1"),
            object_digest: true,
        }
    }

    fn part_size(&self, _part: i32) -> usize {
        BLOCK_SIZE
    }

    async fn check(&self, key: &ObjectKey, full: &str) -> Result<(), StoreError> {
        self.check_before_write().await?;
        match self.client.blob_client(full).exists().await {
            Ok(false) => Ok(()),
            Ok(true) => Err(StoreError::AlreadyExists {
                key: key.clone(),
                location: EvidenceStore::location(self),
            }),
            Err(e) => Err(self.remote("check for", full, &e)),
        }
    }

    async fn put_whole(
        &self,
        _key: &ObjectKey,
        _full: &str,
        _body: Bytes,
        _meta: &PutMeta,
    ) -> Option<Result<StoredObject, StoreError>> {
        // A small object is one block and a block list: the metadata is
        // written at the commit all the same.
        None
    }

    async fn start(&self, _full: &str, _meta: &PutMeta) -> Result<String, StoreError> {
        Ok(STAGED.to_owned())
    }

    async fn listed(
        &self,
        full: &str,
        _upload_id: &str,
    ) -> Result<BTreeMap<i32, multipart::Listed>, StoreError> {
        let list = self
            .client
            .blob_client(full)
            .block_blob_client()
            .get_block_list(BlockListType::Uncommitted, None)
            .await
            .and_then(|r| r.into_model())
            .map_err(|e| self.remote("list the staged blocks of", full, &e))?;
        Ok(list
            .uncommitted_blocks
            .unwrap_or_default()
            .into_iter()
            .filter_map(|b| {
                let part = block_part(b.name.as_deref()?)?;
                let size = u64::try_from(b.size?).ok()?;
                let tag = String::new();
                Some((part, multipart::Listed { size, tag }))
            })
            .collect())
    }

    async fn upload_part(
        &self,
        full: &str,
        _upload_id: &str,
        part: i32,
        data: Bytes,
        _sha256: &str,
    ) -> Result<String, multipart::PartError> {
        Self::stage(&self.blocks, full, &part_block(part), data)
            .await
            .map_err(|e| multipart::PartError {
                transient: transient(&e),
                error: self.remote("upload a block of", full, &e),
            })?;
        // A block has no tag: its id is derived from its number.
        Ok(String::new())
    }

    async fn complete(
        &self,
        key: &ObjectKey,
        full: &str,
        _upload_id: &str,
        parts: &[journal::Part],
        object: &multipart::Finished,
        meta: &PutMeta,
    ) -> Result<StoredObject, StoreError> {
        let list = BlockLookupList {
            latest: Some(parts.iter().map(|p| part_block(p.part)).collect()),
            ..Default::default()
        };
        let list = list
            .try_into()
            .map_err(|e: azure_core::Error| self.remote("upload", full, &e))?;
        // Metadata names must be C# identifiers: underscores, not hyphens.
        let mut metadata = HashMap::from([
            ("custody_key".to_owned(), key.to_string()),
            ("custody_size".to_owned(), object.size.to_string()),
            (
                "custody_stored_sha256".to_owned(),
                object.sha256.clone().unwrap_or_default(),
            ),
        ]);
        for (k, v) in meta.ids() {
            metadata.insert(k.replace('-', "_"), v);
        }
        if let Some((raw_size, raw_sha)) = meta.raw() {
            metadata.insert("custody_raw_size".to_owned(), raw_size.to_string());
            metadata.insert("custody_raw_sha256".to_owned(), raw_sha);
        }
        let out = self
            .client
            .blob_client(full)
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
                    location: EvidenceStore::location(self),
                });
            }
            Err(e) => return Err(self.remote("commit", full, &e)),
        };
        Ok(StoredObject {
            key: key.clone(),
            size: object.size,
            version_id: out.version_id().ok().flatten(),
            etag: out.etag().ok().flatten().map(|e| e.to_string()),
        })
    }

    async fn abort(&self, _full: &str, _upload_id: &str) {
        // Azure has no call to discard staged blocks: uncommitted blocks are
        // never listed or readable, and the service drops them in a week.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_ids_have_a_fixed_width() {
        assert_eq!(block_id(0).len(), block_id(MAX_BLOCKS).len());
        assert_ne!(block_id(1), block_id(2));
    }

    fn parts(url: &str, endpoint: Option<&str>) -> Result<LocationParts, String> {
        parse_location(&url::Url::parse(url).unwrap(), endpoint)
    }

    #[test]
    fn locations_name_account_container_and_prefix() {
        let p = parts("az://acct1/evidence/cases/2026", None).unwrap();
        assert_eq!(p.endpoint, "https://acct1.blob.core.windows.net");
        assert_eq!(
            (p.account.as_str(), p.container.as_str()),
            ("acct1", "evidence")
        );
        assert_eq!(p.prefix, "cases/2026");
        let p = parts(
            "az://devstoreaccount1/evidence",
            Some("http://127.0.0.1:10000/devstoreaccount1/"),
        )
        .unwrap();
        assert_eq!(p.endpoint, "http://127.0.0.1:10000/devstoreaccount1");
        assert_eq!(p.prefix, "");
        let p = parts(
            "https://acct1.blob.core.windows.net/evidence/x?sv=1&sig=2",
            None,
        )
        .unwrap();
        assert_eq!(p.endpoint, "https://acct1.blob.core.windows.net");
        assert_eq!(
            (p.account.as_str(), p.container.as_str(), p.prefix.as_str()),
            ("acct1", "evidence", "x")
        );
        let p = parts("http://127.0.0.1:10000/devstoreaccount1/evidence/a/b", None).unwrap();
        assert_eq!(p.endpoint, "http://127.0.0.1:10000/devstoreaccount1");
        assert_eq!(
            (p.account.as_str(), p.container.as_str(), p.prefix.as_str()),
            ("devstoreaccount1", "evidence", "a/b")
        );
        for bad in [
            "az://acct1",
            "az://acct1:99/c",
            "https://example.com/c",
            "http://127.0.0.1:10000/",
            "az://u:p@acct1/c",
        ] {
            assert!(parts(bad, None).is_err(), "{bad}");
        }
    }

    #[test]
    fn signatures_are_redacted_from_messages() {
        assert_eq!(
            redact_sig("GET https://a/c?sv=1&sig=abc%3D&sp=r failed; sig=xyz"),
            "GET https://a/c?sv=1&sig=REDACTED&sp=r failed; sig=REDACTED"
        );
        assert_eq!(redact_sig("no secret here"), "no secret here");
    }

    #[tokio::test]
    async fn from_url_refuses_bad_credentials_and_never_prints_them() {
        // No network: each case fails while the client is being built.
        let bad = url::Url::parse("az://acct1/evidence?sv=2021-08-06&sp=r&sig=SECRET").unwrap();
        // An expired SAS in the URL is refused by name, without the signature.
        let expired =
            url::Url::parse("az://acct1/evidence?sv=2021-08-06&se=2020-01-01T00:00:00Z&sig=SECRET")
                .unwrap();
        let err = AzureBlobStore::from_url(&expired, None, false)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("expired"), "{err}");
        assert!(!err.to_string().contains("SECRET"), "{err}");
        // A good SAS over plain http to a non-loopback host is refused.
        let err = AzureBlobStore::from_url(&bad, Some("http://example.com/acct1"), false)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("loopback"), "{err}");
        assert!(!err.to_string().contains("SECRET"), "{err}");
        let none = url::Url::parse("az://acct1").unwrap();
        assert!(AzureBlobStore::from_url(&none, None, false).await.is_err());
    }
}
