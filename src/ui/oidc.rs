//! Sign-in through an OpenID Connect identity provider: the authorization
//! code flow with PKCE (RFC 7636), a `state` bound to the browser by a
//! cookie, and a `nonce` bound to the ID token. The ID token is checked
//! with `jsonwebtoken` against the provider's published keys (asymmetric
//! algorithms only), for its issuer, audience, expiry and nonce. Only a
//! configured analyst gets in: by the token's subject, or by its email when
//! the provider says the email is verified. The provider decides who the
//! person is; custody still decides who is an analyst and in which role.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde::Deserialize;
use sha2::{Digest as _, Sha256};

use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

use super::auth::{self, AnalystConf, SESSION_COOKIE, Who, token};
use super::handlers::{Shared, error, page};
use super::pages;

/// The `[ui.oidc]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcConfig {
    /// The provider's issuer URL: its discovery document is at
    /// `ISSUER/.well-known/openid-configuration`.
    pub issuer: String,
    pub client_id: String,
    /// The environment variable holding the client secret (none: a public
    /// client, PKCE only). Never written in the file itself.
    #[serde(default)]
    pub client_secret_env: Option<String>,
    /// Where the provider sends the browser back: this workspace's
    /// `/login/oidc/callback`, as registered with the provider.
    pub redirect_url: String,
    /// The button's words (`Sign in with …`).
    #[serde(default = "default_label")]
    pub label: String,
}

fn default_label() -> String {
    "the identity provider".to_owned()
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OidcError {
    #[error(
        "[ui.oidc] {field} must be an https URL (http only on a loopback address), not {url:?}"
    )]
    Url { field: &'static str, url: String },
    #[error("[ui.oidc] client_secret_env names {0}, which is not set")]
    NoSecret(String),
    #[error(
        "no analyst has an oidc_subject or oidc_email, so nobody could sign in through [ui.oidc]"
    )]
    NoAnalyst,
    #[error("the identity provider at {url}: {message}")]
    Provider { url: String, message: String },
    #[error("the sign-in came back without its start here (an expired, reused or forged state)")]
    State,
    #[error("the identity provider refused: {0}")]
    Refused(String),
    #[error("the ID token is not valid: {0}")]
    Token(String),
    #[error(
        "{0} is not an analyst of this workspace (no analyst has this oidc_subject, or this oidc_email verified)"
    )]
    NotAnalyst(String),
}

/// Checks `[ui.oidc]` at start: URLs, the secret's variable, someone to admit.
pub fn check(c: &OidcConfig, analysts: &[AnalystConf]) -> Result<(), OidcError> {
    for (field, url) in [("issuer", &c.issuer), ("redirect_url", &c.redirect_url)] {
        if !safe_url(url) {
            return Err(OidcError::Url {
                field,
                url: url.clone(),
            });
        }
    }
    if let Some(var) = &c.client_secret_env
        && std::env::var_os(var).is_none()
    {
        return Err(OidcError::NoSecret(var.clone()));
    }
    if !analysts
        .iter()
        .any(|a| a.oidc_subject.is_some() || a.oidc_email.is_some())
    {
        return Err(OidcError::NoAnalyst);
    }
    Ok(())
}

/// https, or http to a loopback address (a provider on the same machine).
fn safe_url(url: &str) -> bool {
    let Ok(u) = url::Url::parse(url) else {
        return false;
    };
    match u.scheme() {
        "https" => u.host().is_some(),
        "http" => match u.host() {
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            Some(url::Host::Domain(d)) => d == "localhost",
            None => false,
        },
        _ => false,
    }
}

/// What the provider's discovery document says.
#[derive(Debug, Clone, Deserialize)]
struct Discovery {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    jwks_uri: String,
}

/// The ID token algorithms taken: signatures only the provider can make.
const ASYMMETRIC: &[&str] = &[
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
];

/// Why a token failed its checks, in words.
fn token_error(e: &jsonwebtoken::errors::Error) -> String {
    use jsonwebtoken::errors::ErrorKind as K;
    match e.kind() {
        K::InvalidSignature => "its signature is not the provider's".into(),
        K::ExpiredSignature => "it has expired".into(),
        K::ImmatureSignature => "it is not valid yet".into(),
        K::InvalidIssuer => "its issuer is not the provider's".into(),
        K::InvalidAudience => "its audience is not this workspace's client_id".into(),
        K::MissingRequiredClaim(c) => format!("it has no {c} claim"),
        _ => e.to_string(),
    }
}

/// A sign-in under way: what the callback must match.
#[derive(Debug)]
struct Pending {
    nonce: String,
    verifier: String,
    started: Instant,
}

/// Sign-ins may take this long at the provider.
const PENDING_FOR: Duration = Duration::from_secs(600);
/// Sign-ins under way at once, at most (the oldest go first).
const MAX_PENDING: usize = 10_000;
/// How long the provider's keys are trusted before they are fetched again.
const KEYS_FOR: Duration = Duration::from_secs(600);

#[derive(Debug)]
pub struct Oidc {
    config: OidcConfig,
    secret: Option<String>,
    http: reqwest::Client,
    discovery: tokio::sync::OnceCell<Discovery>,
    keys: Mutex<Option<(jsonwebtoken::jwk::JwkSet, Instant)>>,
    pending: Mutex<HashMap<String, Pending>>,
}

/// The cookie binding a sign-in's `state` to the browser that started it.
/// `SameSite=Lax`, unlike the session's: it must come back on the
/// provider's top-level redirect to the callback.
pub const STATE_COOKIE: &str = "custody_oidc";

#[derive(Deserialize)]
struct TokenReply {
    id_token: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Claims {
    sub: String,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    email_verified: Option<bool>,
    #[serde(default)]
    nonce: Option<String>,
}

impl Oidc {
    pub fn new(config: OidcConfig) -> Result<Self, OidcError> {
        let secret = match &config.client_secret_env {
            Some(var) => Some(std::env::var(var).map_err(|_| OidcError::NoSecret(var.clone()))?),
            None => None,
        };
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            // The provider's answers are followed by hand, never redirected elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| OidcError::Provider {
                url: config.issuer.clone(),
                message: e.to_string(),
            })?;
        Ok(Self {
            config,
            secret,
            http,
            discovery: tokio::sync::OnceCell::new(),
            keys: Mutex::new(None),
            pending: Mutex::new(HashMap::new()),
        })
    }

    pub fn label(&self) -> &str {
        &self.config.label
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, url: &str) -> Result<T, OidcError> {
        let provider = |message: String| OidcError::Provider {
            url: url.to_owned(),
            message,
        };
        let r = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| provider(super::error_chain(&e)))?;
        if !r.status().is_success() {
            return Err(provider(format!("answered {}", r.status())));
        }
        r.json().await.map_err(|e| provider(e.to_string()))
    }

    async fn discovery(&self) -> Result<&Discovery, OidcError> {
        self.discovery
            .get_or_try_init(|| async {
                let url = format!(
                    "{}/.well-known/openid-configuration",
                    self.config.issuer.trim_end_matches('/')
                );
                let d: Discovery = self.get_json(&url).await?;
                // The document must be the issuer's own, and point only at safe URLs.
                if d.issuer.trim_end_matches('/') != self.config.issuer.trim_end_matches('/') {
                    return Err(OidcError::Provider {
                        url,
                        message: format!("its issuer is {:?}, not the one configured", d.issuer),
                    });
                }
                for u in [&d.authorization_endpoint, &d.token_endpoint, &d.jwks_uri] {
                    if !safe_url(u) {
                        return Err(OidcError::Provider {
                            url,
                            message: format!("{u:?} is not an https URL"),
                        });
                    }
                }
                Ok(d)
            })
            .await
    }

    /// Starts a sign-in: the provider's URL to send the browser to, and the
    /// `state` for the browser's cookie.
    pub async fn start(&self) -> Result<(String, String), OidcError> {
        let d = self.discovery().await?;
        let (state, nonce, verifier) = (token(), token(), token());
        let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(Sha256::digest(verifier.as_bytes()));
        if let Ok(mut p) = self.pending.lock() {
            p.retain(|_, s| s.started.elapsed() < PENDING_FOR);
            if p.len() >= MAX_PENDING
                && let Some(oldest) = p
                    .iter()
                    .min_by_key(|(_, s)| s.started)
                    .map(|(k, _)| k.clone())
            {
                p.remove(&oldest);
            }
            p.insert(
                state.clone(),
                Pending {
                    nonce: nonce.clone(),
                    verifier,
                    started: Instant::now(),
                },
            );
        }
        let mut url =
            url::Url::parse(&d.authorization_endpoint).map_err(|e| OidcError::Provider {
                url: d.authorization_endpoint.clone(),
                message: e.to_string(),
            })?;
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.config.client_id)
            .append_pair("redirect_uri", &self.config.redirect_url)
            .append_pair("scope", "openid email")
            .append_pair("state", &state)
            .append_pair("nonce", &nonce)
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256");
        Ok((url.into(), state))
    }

    /// Finishes a sign-in from the callback's `state` and `code` and the
    /// browser's state cookie: the analyst it admits.
    pub async fn finish(
        &self,
        state: &str,
        cookie: Option<&str>,
        code: &str,
        analysts: &[AnalystConf],
    ) -> Result<Who, OidcError> {
        // The state must be one this browser started, once, recently.
        if !cookie.is_some_and(|c| super::auth::same(c, state)) {
            return Err(OidcError::State);
        }
        let pending = self
            .pending
            .lock()
            .ok()
            .and_then(|mut p| p.remove(state))
            .filter(|p| p.started.elapsed() < PENDING_FOR)
            .ok_or(OidcError::State)?;
        let d = self.discovery().await?;
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", self.config.redirect_url.as_str()),
            ("client_id", self.config.client_id.as_str()),
            ("code_verifier", pending.verifier.as_str()),
        ];
        if let Some(s) = &self.secret {
            form.push(("client_secret", s));
        }
        let provider = |message: String| OidcError::Provider {
            url: d.token_endpoint.clone(),
            message,
        };
        let reply: TokenReply = self
            .http
            .post(&d.token_endpoint)
            .form(&form)
            .send()
            .await
            .map_err(|e| provider(super::error_chain(&e)))?
            .json()
            .await
            .map_err(|e| provider(e.to_string()))?;
        let id_token = match (reply.id_token, reply.error) {
            (Some(t), _) => t,
            (None, Some(e)) => {
                return Err(OidcError::Refused(format!(
                    "{e}{}",
                    reply
                        .error_description
                        .map(|d| format!(": {d}"))
                        .unwrap_or_default()
                )));
            }
            (None, None) => return Err(provider("no id_token in its answer".into())),
        };
        let claims = self.verify(d, &id_token).await?;
        if !claims
            .nonce
            .as_deref()
            .is_some_and(|n| super::auth::same(n, &pending.nonce))
        {
            return Err(OidcError::Token("its nonce is not this sign-in's".into()));
        }
        let by_subject = analysts
            .iter()
            .find(|a| a.oidc_subject.as_deref() == Some(claims.sub.as_str()));
        let by_email = || {
            let email = claims
                .email
                .as_deref()
                .filter(|_| claims.email_verified == Some(true))?;
            analysts.iter().find(|a| {
                a.oidc_email
                    .as_deref()
                    .is_some_and(|e| e.eq_ignore_ascii_case(email))
            })
        };
        let a = by_subject.or_else(by_email).ok_or_else(|| {
            OidcError::NotAnalyst(claims.email.clone().unwrap_or_else(|| claims.sub.clone()))
        })?;
        Ok(Who {
            analyst: a.name.clone(),
            role: a.role,
            csrf: Some(token()),
            signed_in: true,
        })
    }

    /// The ID token's claims, once its signature, issuer, audience and
    /// times hold.
    async fn verify(&self, d: &Discovery, id_token: &str) -> Result<Claims, OidcError> {
        let bad = |m: String| OidcError::Token(m);
        // Asymmetric only, read before anything else: a shared-secret
        // algorithm would let anyone who knows the client secret mint
        // tokens, and `none` signs nothing.
        let alg = id_token
            .split('.')
            .next()
            .and_then(|h| {
                base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(h)
                    .ok()
            })
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .and_then(|v| v.get("alg").and_then(|a| a.as_str()).map(str::to_owned));
        if !alg.as_deref().is_some_and(|a| ASYMMETRIC.contains(&a)) {
            return Err(bad(format!(
                "its algorithm {} is not accepted (one of {} is)",
                alg.as_deref().unwrap_or("(none named)"),
                ASYMMETRIC.join(", ")
            )));
        }
        let header = jsonwebtoken::decode_header(id_token).map_err(|e| bad(token_error(&e)))?;
        let key = match self.key(d, header.kid.as_deref(), false).await? {
            Some(k) => k,
            // A key rotated at the provider since the last fetch.
            None => self
                .key(d, header.kid.as_deref(), true)
                .await?
                .ok_or_else(|| bad(format!("no published key has kid {:?}", header.kid)))?,
        };
        let mut v = jsonwebtoken::Validation::new(header.alg);
        v.set_issuer(&[d.issuer.as_str()]);
        v.set_audience(&[self.config.client_id.as_str()]);
        v.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
        v.leeway = 60;
        jsonwebtoken::decode::<Claims>(id_token, &key, &v)
            .map(|t| t.claims)
            .map_err(|e| bad(token_error(&e)))
    }

    /// The provider's key `kid` (the only one, when the token names none).
    async fn key(
        &self,
        d: &Discovery,
        kid: Option<&str>,
        refresh: bool,
    ) -> Result<Option<jsonwebtoken::DecodingKey>, OidcError> {
        let cached = self
            .keys
            .lock()
            .ok()
            .and_then(|k| k.clone())
            .filter(|(_, at)| !refresh && at.elapsed() < KEYS_FOR)
            .map(|(set, _)| set);
        let set = match cached {
            Some(s) => s,
            None => {
                let s: jsonwebtoken::jwk::JwkSet = self.get_json(&d.jwks_uri).await?;
                if let Ok(mut k) = self.keys.lock() {
                    *k = Some((s.clone(), Instant::now()));
                }
                s
            }
        };
        let jwk = match kid {
            Some(kid) => set.find(kid),
            None if set.keys.len() == 1 => set.keys.first(),
            None => None,
        };
        jwk.map(|j| {
            jsonwebtoken::DecodingKey::from_jwk(j)
                .map_err(|e| OidcError::Token(format!("the provider's key: {e}")))
        })
        .transpose()
    }
}

pub fn routes() -> axum::Router<Shared> {
    axum::Router::new()
        .route("/login/oidc", get(begin))
        .route("/login/oidc/callback", get(callback))
}

/// The state cookie: HttpOnly, Secure, `SameSite=Lax`, gone after the
/// sign-in (or `max_age` zero to clear it).
fn state_cookie(value: &str, max_age: Duration) -> Option<HeaderValue> {
    let c = cookie::Cookie::build((STATE_COOKIE, value))
        .http_only(true)
        .same_site(cookie::SameSite::Lax)
        .secure(true)
        .path("/login/oidc")
        .max_age(cookie::time::Duration::seconds(
            i64::try_from(max_age.as_secs()).unwrap_or(i64::MAX),
        ));
    HeaderValue::from_str(&c.build().to_string()).ok()
}

fn no_provider() -> Response {
    error(
        StatusCode::NOT_FOUND,
        None,
        "no identity provider is configured ([ui.oidc])",
    )
}

async fn begin(State(ui): State<Shared>) -> Response {
    let Some(oidc) = &ui.oidc else {
        return no_provider();
    };
    match oidc.start().await {
        Ok((url, state)) => {
            let mut res = Redirect::to(&url).into_response();
            if let Some(c) = state_cookie(&state, PENDING_FOR) {
                res.headers_mut().append(header::SET_COOKIE, c);
            }
            res
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot start a sign-in at the identity provider");
            error(StatusCode::BAD_GATEWAY, None, &e.to_string())
        }
    }
}

#[derive(Deserialize)]
struct CallbackParams {
    state: Option<String>,
    code: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

async fn callback(
    State(ui): State<Shared>,
    headers: HeaderMap,
    Query(q): Query<CallbackParams>,
) -> Response {
    let Some(oidc) = &ui.oidc else {
        return no_provider();
    };
    let outcome = match (q.error, q.state, q.code) {
        (Some(e), _, _) => Err(OidcError::Refused(match q.error_description {
            Some(d) => format!("{e}: {d}"),
            None => e,
        })),
        (None, Some(state), Some(code)) => {
            let cookie = auth::cookie(&headers, STATE_COOKIE);
            oidc.finish(&state, cookie.as_deref(), &code, ui.access.analysts())
                .await
        }
        _ => Err(OidcError::State),
    };
    let mut res = match outcome {
        Ok(who) => {
            let analyst = who.analyst.clone();
            let id = ui.access.open(who);
            tracing::info!(analyst = %analyst, "analyst signed in through the identity provider");
            page(
                pages::signed_in(&analyst),
                Some(auth::set_cookie(
                    SESSION_COOKIE,
                    &id,
                    Some(ui.access.lifetime()),
                )),
            )
        }
        Err(e) => {
            tracing::warn!(error = %e, "a sign-in through the identity provider failed");
            let status = match e {
                OidcError::Provider { .. } => StatusCode::BAD_GATEWAY,
                _ => StatusCode::FORBIDDEN,
            };
            error(status, None, &format!("Not signed in: {e}"))
        }
    };
    // A state is good for one sign-in, whatever its outcome.
    if let Some(c) = state_cookie("", Duration::ZERO) {
        res.headers_mut().append(header::SET_COOKIE, c);
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_https_or_loopback_http_urls_are_taken() {
        assert!(safe_url("https://idp.example.org/realms/x"));
        assert!(safe_url("http://127.0.0.1:8080/"));
        assert!(safe_url("http://[::1]:8080/"));
        assert!(safe_url("http://localhost:9000"));
        assert!(!safe_url("http://idp.example.org/"));
        assert!(!safe_url("http://10.0.0.1/"));
        assert!(!safe_url("javascript:alert(1)"));
        assert!(!safe_url("not a url"));
    }
}
