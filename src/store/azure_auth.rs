//! How requests to Azure Blob are authorised with `azure_storage_blob` 1.x
//! (Shared Key signing, a SAS, or Entra ID: [`AzureAuth`]), and the client
//! builders that apply one of them ([`container_client`], [`service_client`]).
//! The account key itself is [`super::azure_key`]'s; which credential a
//! location uses, and the clients a store needs, are decided in one place,
//! the Azure Blob store's `AzureClients`.
//!
//! Why this module exists: the 1.x Azure SDK for Rust only authenticates with
//! an Entra ID `TokenCredential`.
//! It has no storage account key credential, yet custody has to talk to
//! storage accounts where only an account key is available and to the Azurite
//! emulator, which the test suite runs against. [`SharedKeyPolicy`] fills that
//! gap: a per-try pipeline policy that stamps `x-ms-date` on every attempt
//! and signs the request with the Blob service's Shared Key scheme.
//!
//! Entra ID (managed identity, workload identity) remains the production path:
//! account keys grant full control of a whole storage account and cannot be
//! scoped or audited per caller. Use this module for the emulator and for the
//! cases where a key is all an investigator has been given.
//!
//! The signing follows Microsoft's "Authorize with Shared Key" reference:
//! the string-to-sign is the verb, eleven standard headers, the canonicalized
//! `x-ms-*` headers and the canonicalized resource, and the signature is
//! HMAC-SHA256 over it keyed with the base64-decoded account key.
//! [`string_to_sign`] is a pure function so that it can be tested on its own.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use azure_core::credentials::TokenCredential;
use azure_core::error::ErrorKind;
use azure_core::http::headers::{HeaderName, Headers};
use azure_core::http::policies::{Policy, PolicyResult};
use azure_core::http::{Context, Method, Request, Url};
use azure_core::time::{OffsetDateTime, to_rfc7231};
use azure_storage_blob::{
    BlobContainerClient, BlobContainerClientOptions, BlobServiceClient, BlobServiceClientOptions,
};

pub use super::azure_key::{AZURITE_ACCOUNT, AZURITE_KEY, SharedKeyCredential, SharedKeyError};
use super::azure_sas::{SasPolicy, SasToken};

const X_MS_DATE: HeaderName = HeaderName::from_static("x-ms-date");
const AUTHORIZATION: HeaderName = HeaderName::from_static("authorization");
const CONTENT_LENGTH: HeaderName = HeaderName::from_static("content-length");

/// The standard headers whose values enter the string-to-sign, in order.
/// `Content-Length` is handled on its own (a zero length signs as empty).
const SIGNED_HEADERS_BEFORE_LENGTH: [&str; 2] = ["content-encoding", "content-language"];
const SIGNED_HEADERS_AFTER_LENGTH: [&str; 8] = [
    "content-md5",
    "content-type",
    "date",
    "if-modified-since",
    "if-match",
    "if-none-match",
    "if-unmodified-since",
    "range",
];

/// The Shared Key string-to-sign of a Blob service request (service version
/// 2015-02-21 or later), for the `account` that owns the resource.
///
/// `headers` must hold every header that will be sent, including
/// `x-ms-date` and `Content-Length` (a missing or zero length signs as an
/// empty line). Canonicalized `x-ms-*` headers are sorted by name, byte-wise,
/// with surrounding whitespace trimmed from their values. The canonicalized
/// resource is `/account` followed by the URL's encoded path (for a
/// path-style emulator URL that path begins with the account again), then one
/// `\nname:value` line per query parameter, names lower-cased and sorted,
/// values URL-decoded and, when repeated, sorted and joined with commas.
pub fn string_to_sign(account: &str, method: Method, url: &Url, headers: &Headers) -> String {
    let header = |name: &'static str| -> &str {
        headers
            .get_optional_str(&HeaderName::from_static(name))
            .unwrap_or("")
    };

    let mut out = String::with_capacity(256);
    out.push_str(method.as_str());
    out.push('\n');
    for name in SIGNED_HEADERS_BEFORE_LENGTH {
        out.push_str(header(name));
        out.push('\n');
    }
    let length = header("content-length");
    if length.trim() != "0" {
        out.push_str(length);
    }
    out.push('\n');
    for name in SIGNED_HEADERS_AFTER_LENGTH {
        out.push_str(header(name));
        out.push('\n');
    }

    let mut ms_headers: Vec<(&str, &str)> = headers
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .filter(|(name, _)| name.starts_with("x-ms-"))
        .collect();
    ms_headers.sort_unstable_by(|a, b| a.0.cmp(b.0));
    for (name, value) in ms_headers {
        out.push_str(name);
        out.push(':');
        out.push_str(value.trim());
        out.push('\n');
    }

    out.push('/');
    out.push_str(account);
    out.push_str(url.path());
    let mut query: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in url.query_pairs() {
        query
            .entry(name.to_lowercase())
            .or_default()
            .push(value.into_owned());
    }
    for (name, mut values) in query {
        values.sort_unstable();
        out.push('\n');
        out.push_str(&name);
        out.push(':');
        out.push_str(&values.join(","));
    }
    out
}

/// A per-try pipeline policy that signs each attempt with Shared Key.
///
/// Add it to `ClientOptions::per_try_policies` (or use
/// [`blob_container_client`]). Running per try means every retry gets a fresh
/// `x-ms-date` and signature.
#[derive(Debug, Clone)]
pub struct SharedKeyPolicy {
    credential: Arc<SharedKeyCredential>,
}

impl SharedKeyPolicy {
    pub fn new(credential: SharedKeyCredential) -> Self {
        Self {
            credential: Arc::new(credential),
        }
    }

    /// Sets `x-ms-date` (from `now`) and `Authorization` on `request`.
    ///
    /// When the body's length is known and not zero and no `Content-Length`
    /// header is set, the header is added, so that the length that was
    /// signed is the one sent (otherwise a streamed body would go out
    /// chunked, without a length).
    pub fn sign_request(
        &self,
        request: &mut Request,
        now: OffsetDateTime,
    ) -> azure_core::Result<()> {
        request.insert_header(X_MS_DATE, to_rfc7231(&now));
        let has_length = request
            .headers()
            .get_optional_str(&CONTENT_LENGTH)
            .is_some();
        if let Some(len) = request.body().len().filter(|len| *len > 0 && !has_length) {
            request.insert_header(CONTENT_LENGTH, len.to_string());
        }
        request.headers_mut().remove(AUTHORIZATION);
        let to_sign = string_to_sign(
            self.credential.account(),
            request.method(),
            request.url(),
            request.headers(),
        );
        let signature = self.credential.sign(&to_sign)?;
        request.insert_header(
            AUTHORIZATION,
            format!("SharedKey {}:{signature}", self.credential.account()),
        );
        Ok(())
    }
}

#[async_trait]
impl Policy for SharedKeyPolicy {
    async fn send(
        &self,
        ctx: &Context,
        request: &mut Request,
        next: &[Arc<dyn Policy>],
    ) -> PolicyResult {
        self.sign_request(request, OffsetDateTime::now_utc())?;
        let Some((first, rest)) = next.split_first() else {
            return Err(azure_core::Error::with_message(
                ErrorKind::Other,
                "SharedKeyPolicy must not be the last policy in the pipeline",
            ));
        };
        first.send(ctx, request, rest).await
    }
}

/// A container client for `endpoint` (the blob service URL, e.g.
/// `https://acct.blob.core.windows.net` or, for Azurite,
/// `http://127.0.0.1:10000/devstoreaccount1`) that signs with `cred`.
///
/// Plain `http` is accepted only for loopback hosts (the emulator).
pub fn blob_container_client(
    endpoint: &str,
    container: &str,
    cred: SharedKeyCredential,
) -> Result<BlobContainerClient, SharedKeyError> {
    blob_container_client_with_options(endpoint, container, cred, Default::default())
}

/// [`blob_container_client`] with caller-supplied options (retries, a test
/// transport, an API version); the signing policy is appended to
/// `options.client_options.per_try_policies`.
pub fn blob_container_client_with_options(
    endpoint: &str,
    container: &str,
    cred: SharedKeyCredential,
    options: BlobContainerClientOptions,
) -> Result<BlobContainerClient, SharedKeyError> {
    container_client(endpoint, container, AzureAuth::SharedKey(cred), options)
}

/// How requests to a storage account are authorised.
#[derive(Clone)]
pub enum AzureAuth {
    /// The account key, signed per request by [`SharedKeyPolicy`].
    SharedKey(SharedKeyCredential),
    /// A SAS token, added per request by [`SasPolicy`].
    Sas(SasToken),
    /// An Entra ID identity (managed or workload identity): bearer tokens,
    /// https only.
    Entra(Arc<dyn TokenCredential>),
}

impl fmt::Debug for AzureAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.describe())
    }
}

impl AzureAuth {
    /// A name for messages; never the secret.
    pub fn describe(&self) -> &'static str {
        match self {
            Self::SharedKey(_) => "shared key",
            Self::Sas(_) => "SAS token",
            Self::Entra(_) => "Entra ID",
        }
    }
}

/// Adds `auth`'s policy to `options`, or returns the Entra ID credential
/// the client takes itself. Entra ID is only sent over https.
fn authorise(
    url: &Url,
    endpoint: &str,
    auth: AzureAuth,
    options: &mut azure_core::http::ClientOptions,
) -> Result<Option<Arc<dyn TokenCredential>>, SharedKeyError> {
    Ok(match auth {
        AzureAuth::SharedKey(cred) => {
            options
                .per_try_policies
                .push(Arc::new(SharedKeyPolicy::new(cred)));
            None
        }
        AzureAuth::Sas(sas) => {
            options.per_try_policies.push(Arc::new(SasPolicy::new(sas)));
            None
        }
        AzureAuth::Entra(cred) => {
            if url.scheme() != "https" {
                return Err(SharedKeyError::InvalidEndpoint {
                    endpoint: endpoint.to_owned(),
                    reason: "Entra ID tokens are only sent over https; use a shared key or a SAS \
                             token for a plain-http emulator"
                        .to_owned(),
                });
            }
            Some(cred)
        }
    })
}

/// A container client for `endpoint` and `container` authorised by `auth`.
/// Plain `http` is accepted only for loopback hosts (the emulator), and
/// Entra ID only over https.
pub fn container_client(
    endpoint: &str,
    container: &str,
    auth: AzureAuth,
    mut options: BlobContainerClientOptions,
) -> Result<BlobContainerClient, SharedKeyError> {
    validate_container(container)?;
    let mut url = service_url(endpoint)?;
    url.path_segments_mut()
        .map_err(|()| SharedKeyError::InvalidEndpoint {
            endpoint: endpoint.to_owned(),
            reason: "it cannot be a base URL".to_owned(),
        })?
        .pop_if_empty()
        .push(container);
    let token = authorise(&url, endpoint, auth, &mut options.client_options)?;
    BlobContainerClient::new(url.clone(), token, Some(options)).map_err(|source| {
        SharedKeyError::Client {
            url: url.to_string(),
            source,
        }
    })
}

/// A client for the blob service (account-level settings) at `endpoint`,
/// authorised by `auth` as [`container_client`] is.
pub fn service_client(
    endpoint: &str,
    auth: AzureAuth,
    mut options: BlobServiceClientOptions,
) -> Result<BlobServiceClient, SharedKeyError> {
    let url = service_url(endpoint)?;
    let token = authorise(&url, endpoint, auth, &mut options.client_options)?;
    BlobServiceClient::new(url.clone(), token, Some(options)).map_err(|source| {
        SharedKeyError::Client {
            url: url.to_string(),
            source,
        }
    })
}

/// Parses and checks a blob service endpoint.
fn service_url(endpoint: &str) -> Result<Url, SharedKeyError> {
    let invalid = |reason: &str| SharedKeyError::InvalidEndpoint {
        endpoint: endpoint.to_owned(),
        reason: reason.to_owned(),
    };
    let url = Url::parse(endpoint).map_err(|e| invalid(&e.to_string()))?;
    if url.cannot_be_a_base() {
        return Err(invalid("it is not a base URL"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid(
            "it must not carry a query or fragment (a SAS token is not a shared key)",
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid("it must not carry user information"));
    }
    match url.scheme() {
        "https" => {}
        "http" if is_loopback(&url) => {}
        "http" => {
            return Err(invalid(
                "plain http is only accepted for a loopback emulator; use https",
            ));
        }
        _ => return Err(invalid("expected an http or https URL")),
    }
    Ok(url)
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// Azure container naming rules: 3 to 63 lowercase letters, digits and
/// single hyphens, starting and ending with a letter or digit; or one of the
/// service's special containers.
fn validate_container(container: &str) -> Result<(), SharedKeyError> {
    if matches!(container, "$root" | "$logs" | "$web") {
        return Ok(());
    }
    let invalid = |reason: &str| SharedKeyError::InvalidContainer {
        container: container.to_owned(),
        reason: reason.to_owned(),
    };
    if !(3..=63).contains(&container.len()) {
        return Err(invalid("it must be 3 to 63 characters long"));
    }
    if !container
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(invalid(
            "only lowercase letters, digits and hyphens are allowed",
        ));
    }
    if container.starts_with('-') || container.ends_with('-') || container.contains("--") {
        return Err(invalid(
            "hyphens must be single and may not start or end the name",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use azure_core::http::{AsyncRawResponse, StatusCode, Transport};
    use std::sync::Mutex;

    /// 2023-11-14T22:13:20Z.
    fn fixed_now() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap()
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> Headers {
        let mut h = Headers::new();
        for (k, v) in pairs {
            h.insert(*k, *v);
        }
        h
    }

    fn put_block_request() -> (Url, Headers) {
        // blockid "AAAA+/8=" percent-encoded, as the SDK's query builder sends it.
        let url = Url::parse(
            "http://127.0.0.1:10000/devstoreaccount1/evidence/case%201/disk.img?comp=block&blockid=AAAA%2B%2F8%3D",
        )
        .unwrap();
        let h = headers(&[
            ("content-length", "5"),
            ("content-md5", "XUFAKrxLKna5cZ2REBfFkg=="),
            ("content-type", "application/octet-stream"),
            ("x-ms-version", "2026-04-06"),
            ("x-ms-date", "Tue, 14 Nov 2023 22:13:20 GMT"),
            (
                "x-ms-client-request-id",
                "0f8fad5b-d9cb-469f-a165-70867728950e",
            ),
            ("user-agent", "azsdk-rust-storage_blob/1.1.0"),
            ("accept", "application/xml"),
        ]);
        (url, h)
    }

    /// The string-to-sign written out by hand from Microsoft's layout: verb,
    /// Content-Encoding, Content-Language, Content-Length, Content-MD5,
    /// Content-Type, Date, If-Modified-Since, If-Match, If-None-Match,
    /// If-Unmodified-Since, Range, then sorted x-ms-* headers, then the
    /// canonical resource with decoded, sorted query parameters.
    const PUT_BLOCK_STRING_TO_SIGN: &str = "PUT\n\n\n5\nXUFAKrxLKna5cZ2REBfFkg==\napplication/octet-stream\n\n\n\n\n\n\n\
x-ms-client-request-id:0f8fad5b-d9cb-469f-a165-70867728950e\n\
x-ms-date:Tue, 14 Nov 2023 22:13:20 GMT\n\
x-ms-version:2026-04-06\n\
/devstoreaccount1/devstoreaccount1/evidence/case%201/disk.img\n\
blockid:AAAA+/8=\n\
comp:block";

    /// Derived independently of this crate with Python's standard library:
    /// `base64.b64encode(hmac.new(base64.b64decode(AZURITE_KEY),
    /// PUT_BLOCK_STRING_TO_SIGN.encode(), hashlib.sha256).digest())`.
    const PUT_BLOCK_SIGNATURE: &str = "O/+CxW/uTFZI+v/ckuUCXME1HTWGXa542Xt3VPbZO/o=";

    /// Same derivation for the `GET ...?restype=container` request below.
    const GET_CONTAINER_SIGNATURE: &str = "bhD7Z8CInedPcdXAEYl5HuVsGIabk5OpI0C3GPsijXk=";

    #[test]
    fn string_to_sign_matches_the_documented_layout() {
        let (url, h) = put_block_request();
        let sts = string_to_sign(AZURITE_ACCOUNT, Method::Put, &url, &h);
        assert_eq!(sts, PUT_BLOCK_STRING_TO_SIGN);
    }

    #[test]
    fn known_answer_signature() {
        let cred = SharedKeyCredential::new(AZURITE_ACCOUNT, AZURITE_KEY).unwrap();
        assert_eq!(
            cred.sign(PUT_BLOCK_STRING_TO_SIGN).unwrap(),
            PUT_BLOCK_SIGNATURE
        );
    }

    #[test]
    fn zero_content_length_signs_as_empty_and_missing_headers_as_empty_lines() {
        let url = Url::parse("http://127.0.0.1:10000/devstoreaccount1/evidence?restype=container")
            .unwrap();
        let h = headers(&[
            ("content-length", "0"),
            ("x-ms-version", "2026-04-06"),
            ("x-ms-date", "Tue, 14 Nov 2023 22:13:20 GMT"),
        ]);
        let sts = string_to_sign(AZURITE_ACCOUNT, Method::Get, &url, &h);
        assert_eq!(
            sts,
            "GET\n\n\n\n\n\n\n\n\n\n\n\n\
x-ms-date:Tue, 14 Nov 2023 22:13:20 GMT\nx-ms-version:2026-04-06\n\
/devstoreaccount1/devstoreaccount1/evidence\nrestype:container"
        );
        let cred = SharedKeyCredential::azurite();
        assert_eq!(cred.sign(&sts).unwrap(), GET_CONTAINER_SIGNATURE);
    }

    #[test]
    fn query_parameters_are_lowercased_sorted_decoded_and_grouped() {
        let url = Url::parse(
            "https://acct.blob.core.windows.net/c?Restype=container&comp=list&include=snapshots&include=metadata&prefix=a+b%2Fc",
        )
        .unwrap();
        let sts = string_to_sign("acct", Method::Get, &url, &Headers::new());
        let resource = sts.split_once("/acct").unwrap().1;
        assert_eq!(
            resource,
            "/c\ncomp:list\ninclude:metadata,snapshots\nprefix:a b/c\nrestype:container"
        );
    }

    #[test]
    fn canonical_headers_are_sorted_bytewise_and_trimmed() {
        let url = Url::parse("https://acct.blob.core.windows.net/").unwrap();
        let h = headers(&[
            ("x-ms-meta-b", "  two "),
            ("x-ms-meta-a", "one"),
            ("x-ms-blob-type", "BlockBlob"),
            ("x-ms-blob-content-type", "text/plain"),
            ("range", "bytes=0-9"),
            ("if-none-match", "*"),
        ]);
        let sts = string_to_sign("acct", Method::Put, &url, &h);
        let lines: Vec<&str> = sts.split('\n').collect();
        assert_eq!(lines[9], "*", "If-None-Match");
        assert_eq!(lines[11], "bytes=0-9", "Range");
        assert_eq!(
            &lines[12..],
            [
                "x-ms-blob-content-type:text/plain",
                "x-ms-blob-type:BlockBlob",
                "x-ms-meta-a:one",
                "x-ms-meta-b:two",
                "/acct/",
            ]
        );
    }

    #[test]
    fn sign_request_sets_date_length_and_authorization() {
        let (url, _) = put_block_request();
        let mut request = Request::new(url, Method::Put);
        for (k, v) in put_block_request().1.iter() {
            if k.as_str() != "x-ms-date" && k.as_str() != "content-length" {
                request.insert_header(k.clone(), v.clone());
            }
        }
        request.set_body(azure_core::Bytes::from_static(b"hello"));
        request.insert_header("authorization", "stale");
        let policy = SharedKeyPolicy::new(SharedKeyCredential::azurite());
        policy.sign_request(&mut request, fixed_now()).unwrap();

        let h = request.headers();
        assert_eq!(
            h.get_optional_str(&X_MS_DATE),
            Some("Tue, 14 Nov 2023 22:13:20 GMT")
        );
        assert_eq!(h.get_optional_str(&CONTENT_LENGTH), Some("5"));
        assert_eq!(
            h.get_optional_str(&AUTHORIZATION).unwrap(),
            format!("SharedKey devstoreaccount1:{PUT_BLOCK_SIGNATURE}")
        );
    }

    #[test]
    fn credential_validation_names_the_problem_and_hides_the_key() {
        let secretish = "c2VjcmV0LWtleS1tYXRlcmlhbA=="; // base64 of "secret-key-material"
        let ok = SharedKeyCredential::new("acct123", secretish).unwrap();
        let debug = format!("{ok:?}");
        assert!(
            debug.contains("acct123") && debug.contains("redacted"),
            "{debug}"
        );
        assert!(!debug.contains(secretish), "{debug}");

        let cases: [(&str, String, &str); 6] = [
            ("Acct", secretish.to_owned(), "account name"),
            ("ab", secretish.to_owned(), "account name"),
            ("acct", String::new(), "is empty"),
            ("acct", format!("{secretish}\n"), "whitespace"),
            ("acct", "c2VjcmV0!!!".to_owned(), "not valid base64"),
            (
                "acct",
                "c2VjcmV0LWtleS1tYXRlcmlhbA".to_owned(),
                "not valid base64",
            ),
        ];
        for (account, key, expect) in cases {
            let err = SharedKeyCredential::new(account, key.clone()).unwrap_err();
            let msg = err.to_string();
            assert!(msg.contains(expect), "{account:?}: {msg}");
            assert!(!msg.contains("c2VjcmV0"), "key leaked: {msg}");
            assert!(
                !format!("{err:?}").contains("c2VjcmV0"),
                "key leaked: {err:?}"
            );
        }
    }

    #[test]
    fn endpoints_and_containers_are_checked() {
        let cred = SharedKeyCredential::azurite;
        let client = blob_container_client(
            "http://127.0.0.1:10000/devstoreaccount1/",
            "evidence",
            cred(),
        )
        .unwrap();
        assert_eq!(
            client.url().as_str(),
            "http://127.0.0.1:10000/devstoreaccount1/evidence"
        );
        let client =
            blob_container_client("https://acct.blob.core.windows.net", "ev-1", cred()).unwrap();
        assert_eq!(
            client.url().as_str(),
            "https://acct.blob.core.windows.net/ev-1"
        );

        for bad in [
            "http://acct.blob.core.windows.net",
            "ftp://127.0.0.1/x",
            "https://acct.blob.core.windows.net/?sv=2020&sig=x",
            "not a url",
        ] {
            let err = blob_container_client(bad, "evidence", cred())
                .err()
                .unwrap();
            assert!(
                matches!(err, SharedKeyError::InvalidEndpoint { .. }),
                "{bad}: {err}"
            );
        }
        for bad in ["ab", "Evidence", "-ev", "ev-", "e--v", "e/v", "e.v"] {
            let err = blob_container_client("https://a.example", bad, cred())
                .err()
                .unwrap();
            assert!(
                matches!(err, SharedKeyError::InvalidContainer { .. }),
                "{bad}: {err}"
            );
        }
    }

    /// A transport that records the headers of each request and answers 201.
    #[derive(Debug, Default)]
    struct Recorder(Mutex<Vec<Headers>>);

    #[async_trait]
    impl Policy for Recorder {
        async fn send(
            &self,
            _ctx: &Context,
            request: &mut Request,
            _next: &[Arc<dyn Policy>],
        ) -> PolicyResult {
            self.0.lock().unwrap().push(request.headers().clone());
            Ok(AsyncRawResponse::from_bytes(
                StatusCode::Created,
                Headers::new(),
                azure_core::Bytes::new(),
            ))
        }
    }

    #[tokio::test]
    async fn the_client_pipeline_runs_the_policy() {
        let recorder = Arc::new(Recorder::default());
        let mut options = BlobContainerClientOptions::default();
        options.client_options.transport = Some(Transport::with_policy(recorder.clone()));
        let client = blob_container_client_with_options(
            "http://127.0.0.1:1/devstoreaccount1",
            "evidence",
            SharedKeyCredential::azurite(),
            options,
        )
        .unwrap();
        client.create(None).await.unwrap();

        let seen = recorder.0.lock().unwrap();
        let h = seen.first().unwrap();
        let auth = h.get_optional_str(&AUTHORIZATION).unwrap();
        assert!(auth.starts_with("SharedKey devstoreaccount1:"), "{auth}");
        let date = h.get_optional_str(&X_MS_DATE).unwrap();
        assert!(date.ends_with(" GMT"), "{date}");

        // Re-derive the signature from what went out.
        let url =
            Url::parse("http://127.0.0.1:1/devstoreaccount1/evidence?restype=container").unwrap();
        let mut unsigned = h.clone();
        unsigned.remove(AUTHORIZATION);
        let sts = string_to_sign(AZURITE_ACCOUNT, Method::Put, &url, &unsigned);
        let expected = SharedKeyCredential::azurite().sign(&sts).unwrap();
        assert_eq!(auth, format!("SharedKey devstoreaccount1:{expected}"));
    }
}
