//! Shared access signatures for Azure Blob: using a SAS token given by
//! whoever owns the storage account, and minting an account SAS from an
//! account key.
//!
//! A SAS lets a responder hand out a narrow, expiring credential instead of
//! the account key: read-only for an analyst who verifies a case, create and
//! write only for a collector. The token is a query string whose `sig` is a
//! bearer secret, so it is wrapped in [`Secret`], never printed, and added to
//! each request by [`SasPolicy`] rather than kept in a URL that could end up
//! in a message.
//!
//! The account SAS string-to-sign follows Microsoft's "Create an account SAS"
//! reference for service version 2020-12-06 and later: account name,
//! permissions, services, resource types, start, expiry, IP range, protocol,
//! version and encryption scope, each followed by a newline, signed with
//! HMAC-SHA256 under the account key.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use azure_core::credentials::Secret;
use azure_core::error::ErrorKind;
use azure_core::http::policies::{Policy, PolicyResult};
use azure_core::http::{Context, Request};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::azure_key::SharedKeyCredential;

/// The service version an account SAS minted here is signed for.
pub const SAS_VERSION: &str = "2021-08-06";

/// What was wrong with a SAS token or the request for one. Never carries the
/// token's signature.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SasError {
    #[error("the SAS token is empty")]
    Empty,
    #[error("the SAS token has no {0} parameter; copy the whole token (sv=…&sig=…)")]
    Missing(&'static str),
    #[error("the SAS token expired at {0}")]
    Expired(String),
    #[error("the SAS token's expiry {0:?} is not a valid time")]
    BadExpiry(String),
    #[error(
        "invalid SAS permissions {0:?}: use letters from \"racwdl\" (read, add, create, write, delete, list)"
    )]
    Permissions(String),
    #[error("the SAS lifetime must be between 1 minute and 7 days")]
    Lifetime,
    #[error("failed to sign the SAS for storage account {0:?}")]
    Sign(String),
}

/// A SAS token: the query string after `?`, validated. `Debug` hides it.
#[derive(Clone)]
pub struct SasToken {
    token: Secret,
    expiry: Option<OffsetDateTime>,
    permissions: String,
}

impl fmt::Debug for SasToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SasToken")
            .field("permissions", &self.permissions)
            .field("expiry", &self.expiry)
            .field("token", &"<redacted>")
            .finish()
    }
}

impl SasToken {
    /// Parses a token (with or without a leading `?`) and refuses one that
    /// has no signature or version, or that has already expired at `now`.
    pub fn parse(token: &str, now: OffsetDateTime) -> Result<Self, SasError> {
        let token = token.trim().trim_start_matches('?');
        if token.is_empty() {
            return Err(SasError::Empty);
        }
        let mut sig = false;
        let mut sv = false;
        let mut expiry = None;
        let mut permissions = String::new();
        for (k, v) in url::form_urlencoded::parse(token.as_bytes()) {
            match &*k {
                "sig" => sig = !v.is_empty(),
                "sv" => sv = !v.is_empty(),
                "sp" => permissions = v.into_owned(),
                "se" => {
                    let t = OffsetDateTime::parse(&v, &Rfc3339)
                        .map_err(|_| SasError::BadExpiry(v.clone().into_owned()))?;
                    expiry = Some(t);
                }
                _ => {}
            }
        }
        if !sig {
            return Err(SasError::Missing("sig"));
        }
        if !sv {
            return Err(SasError::Missing("sv"));
        }
        if let Some(e) = expiry
            && e <= now
        {
            return Err(SasError::Expired(e.format(&Rfc3339).unwrap_or_default()));
        }
        Ok(Self {
            token: Secret::new(token.to_owned()),
            expiry,
            permissions,
        })
    }

    /// The token's permissions (`sp`), e.g. `rl`.
    pub fn permissions(&self) -> &str {
        &self.permissions
    }

    pub fn expiry(&self) -> Option<OffsetDateTime> {
        self.expiry
    }

    /// The token itself, for handing to another tool. Never log it.
    pub fn secret(&self) -> &str {
        self.token.secret()
    }
}

/// Mints an account SAS for the Blob service, on containers and objects,
/// with `permissions` (letters of `racwdl`), valid from `now` for `lifetime`,
/// over https only unless `allow_http` (the loopback emulator).
pub fn account_sas(
    cred: &SharedKeyCredential,
    permissions: &str,
    now: OffsetDateTime,
    lifetime: time::Duration,
    allow_http: bool,
) -> Result<SasToken, SasError> {
    // Canonical order, as the service expects the permission letters.
    const ORDER: &str = "rwdlacup";
    if permissions.is_empty() || !permissions.chars().all(|c| "racwdl".contains(c)) {
        return Err(SasError::Permissions(permissions.to_owned()));
    }
    if lifetime < time::Duration::minutes(1) || lifetime > time::Duration::days(7) {
        return Err(SasError::Lifetime);
    }
    let sp: String = ORDER.chars().filter(|c| permissions.contains(*c)).collect();
    let fmt = |t: OffsetDateTime| {
        t.replace_nanosecond(0)
            .ok()
            .and_then(|t| t.format(&Rfc3339).ok())
            .unwrap_or_default()
    };
    // A start a few minutes back tolerates clock skew between hosts.
    let st = fmt(now - time::Duration::minutes(5));
    let se = fmt(now + lifetime);
    let spr = if allow_http { "https,http" } else { "https" };
    let (ss, srt) = ("b", "co");
    let to_sign = format!(
        "{}\n{sp}\n{ss}\n{srt}\n{st}\n{se}\n\n{spr}\n{SAS_VERSION}\n\n",
        cred.account()
    );
    let sig = cred
        .sign(&to_sign)
        .map_err(|_| SasError::Sign(cred.account().to_owned()))?;
    let token = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("sv", SAS_VERSION)
        .append_pair("ss", ss)
        .append_pair("srt", srt)
        .append_pair("sp", &sp)
        .append_pair("st", &st)
        .append_pair("se", &se)
        .append_pair("spr", spr)
        .append_pair("sig", &sig)
        .finish();
    SasToken::parse(&token, now)
}

/// A per-try policy that adds the SAS query parameters to each request.
#[derive(Debug, Clone)]
pub struct SasPolicy {
    token: Arc<SasToken>,
}

impl SasPolicy {
    pub fn new(token: SasToken) -> Self {
        Self {
            token: Arc::new(token),
        }
    }

    /// Appends the token's parameters unless a retry already carries them.
    pub fn apply(&self, request: &mut Request) {
        let url = request.url_mut();
        if url.query_pairs().any(|(k, _)| k == "sig") {
            return;
        }
        let pairs: Vec<(String, String)> =
            url::form_urlencoded::parse(self.token.secret().as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
        let mut q = url.query_pairs_mut();
        for (k, v) in &pairs {
            q.append_pair(k, v);
        }
    }
}

#[async_trait]
impl Policy for SasPolicy {
    async fn send(
        &self,
        ctx: &Context,
        request: &mut Request,
        next: &[Arc<dyn Policy>],
    ) -> PolicyResult {
        self.apply(request);
        let Some((first, rest)) = next.split_first() else {
            return Err(azure_core::Error::with_message(
                ErrorKind::Other,
                "SasPolicy must not be the last policy in the pipeline",
            ));
        };
        first.send(ctx, request, rest).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use azure_core::http::{Method, Url};

    fn now() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap()
    }

    #[test]
    fn minted_token_has_the_documented_fields_and_a_known_signature() {
        let cred = SharedKeyCredential::azurite();
        let t = account_sas(&cred, "lr", now(), time::Duration::hours(1), true).unwrap();
        let pairs: std::collections::BTreeMap<String, String> =
            url::form_urlencoded::parse(t.secret().as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
        assert_eq!(pairs["sp"], "rl", "permissions in canonical order");
        assert_eq!(pairs["st"], "2023-11-14T22:08:20Z");
        assert_eq!(pairs["se"], "2023-11-14T23:13:20Z");
        assert_eq!(pairs["spr"], "https,http");
        assert_eq!(pairs["ss"], "b");
        assert_eq!(pairs["srt"], "co");
        // The signature over the string-to-sign written out by hand.
        let expected = cred
            .sign(
                "devstoreaccount1\nrl\nb\nco\n2023-11-14T22:08:20Z\n2023-11-14T23:13:20Z\n\nhttps,http\n2021-08-06\n\n",
            )
            .unwrap();
        assert_eq!(pairs["sig"], expected);
        assert_eq!(t.permissions(), "rl");
        assert!(!format!("{t:?}").contains(&expected));
    }

    #[test]
    fn bad_requests_and_tokens_are_named() {
        let cred = SharedKeyCredential::azurite();
        let hour = time::Duration::hours(1);
        assert!(matches!(
            account_sas(&cred, "rx", now(), hour, false),
            Err(SasError::Permissions(_))
        ));
        assert!(matches!(
            account_sas(&cred, "r", now(), time::Duration::days(30), false),
            Err(SasError::Lifetime)
        ));
        assert!(matches!(SasToken::parse("", now()), Err(SasError::Empty)));
        assert!(matches!(
            SasToken::parse("sv=2021-08-06&sp=r", now()),
            Err(SasError::Missing("sig"))
        ));
        let expired = SasToken::parse("sv=2021-08-06&se=2020-01-01T00:00:00Z&sig=abc", now())
            .unwrap_err()
            .to_string();
        assert!(expired.contains("expired"), "{expired}");
        assert!(!expired.contains("abc"), "{expired}");
        assert!(SasToken::parse("?sv=2021-08-06&sig=abc%3D", now()).is_ok());
    }

    #[test]
    fn the_policy_appends_the_token_once() {
        let t = SasToken::parse("sv=2021-08-06&sp=r&sig=a%2Bb%3D", now()).unwrap();
        let p = SasPolicy::new(t);
        let mut req = Request::new(
            Url::parse("https://a.blob.core.windows.net/c/b?comp=block").unwrap(),
            Method::Put,
        );
        p.apply(&mut req);
        p.apply(&mut req);
        let q = req.url().query().unwrap().to_owned();
        assert_eq!(q, "comp=block&sv=2021-08-06&sp=r&sig=a%2Bb%3D");
    }
}
