//! Who is asking: named analysts with an argon2 password (a session cookie
//! after sign-in) or a bearer token (automation), each read-only or an
//! investigator. Sessions live in memory; their cookie is HttpOnly,
//! SameSite=Strict and Secure, and every state change carries the
//! session's CSRF token. Without analysts the workspace answers on
//! loopback only, as the operator who started it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::PasswordVerifier as _;
use axum::http::HeaderMap;
use rand_core::RngCore as _;
use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

/// The session cookie.
pub const SESSION_COOKIE: &str = "custody_session";
/// The sign-in form's own token, before there is a session.
pub const LOGIN_COOKIE: &str = "custody_login";
/// The form field and header that carry the CSRF token.
pub const CSRF_FIELD: &str = "csrf";
pub const CSRF_HEADER: &str = "x-csrf-token";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Reads everything, changes nothing.
    ReadOnly,
    /// Stars, tags, comments, saves searches, downloads.
    Investigator,
}

/// One analyst as configured.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnalystConf {
    pub name: String,
    pub role: Role,
    /// An argon2 PHC string (`custody ui hash-password` makes one).
    #[serde(default)]
    pub password_hash: Option<String>,
    /// SHA-256 (hex) of the analyst's bearer token.
    #[serde(default)]
    pub token_sha256: Option<String>,
    /// The analyst's subject (`sub`) at the `[ui.oidc]` provider.
    #[serde(default)]
    pub oidc_subject: Option<String>,
    /// The analyst's email at the `[ui.oidc]` provider, taken only when
    /// the provider says it is verified.
    #[serde(default)]
    pub oidc_email: Option<String>,
}

impl std::fmt::Debug for AnalystConf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the hashes.
        f.debug_struct("AnalystConf")
            .field("name", &self.name)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum AnalystError {
    #[error("analyst {0:?}: a name of letters, digits, '.', '_', '-' and '@' is needed")]
    Name(String),
    #[error("analyst {0:?} is configured twice")]
    Twice(String),
    #[error("analyst {0:?}: password_hash is not an argon2 PHC string ({1})")]
    Hash(String, String),
    #[error("analyst {0:?}: token_sha256 must be 64 hex digits")]
    Token(String),
    #[error(
        "analyst {0:?}: no password_hash, token_sha256, oidc_subject or oidc_email, so they could never sign in"
    )]
    NoCredential(String),
    #[error("analysts {0:?} and {1:?} have the same oidc_subject or oidc_email")]
    SameIdentity(String, String),
}

/// Checks every analyst's entry once, at start.
pub fn check_analysts(list: &[AnalystConf]) -> Result<(), AnalystError> {
    let mut seen = std::collections::HashSet::new();
    for a in list {
        if a.name.is_empty()
            || a.name.len() > 128
            || !a
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || ".-_@".contains(c))
        {
            return Err(AnalystError::Name(a.name.clone()));
        }
        if !seen.insert(a.name.as_str()) {
            return Err(AnalystError::Twice(a.name.clone()));
        }
        if let Some(h) = &a.password_hash {
            argon2::PasswordHash::new(h)
                .map_err(|e| AnalystError::Hash(a.name.clone(), e.to_string()))?;
        }
        if let Some(t) = &a.token_sha256
            && (t.len() != 64 || hex::decode(t).is_err())
        {
            return Err(AnalystError::Token(a.name.clone()));
        }
        if a.password_hash.is_none()
            && a.token_sha256.is_none()
            && a.oidc_subject.is_none()
            && a.oidc_email.is_none()
        {
            return Err(AnalystError::NoCredential(a.name.clone()));
        }
    }
    // One identity at the provider is one analyst: never the first of two.
    for (i, a) in list.iter().enumerate() {
        for b in list.iter().skip(i + 1) {
            let same_subject = a.oidc_subject.is_some() && a.oidc_subject == b.oidc_subject;
            let same_email = matches!((&a.oidc_email, &b.oidc_email),
                (Some(x), Some(y)) if x.eq_ignore_ascii_case(y));
            if same_subject || same_email {
                return Err(AnalystError::SameIdentity(a.name.clone(), b.name.clone()));
            }
        }
    }
    Ok(())
}

/// An argon2id PHC string for `password`, with a fresh salt.
pub fn hash_password(password: &str) -> Result<String, String> {
    use argon2::password_hash::{PasswordHasher as _, SaltString};
    let salt = SaltString::generate(&mut rand_core::OsRng);
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// Who a request is from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Who {
    pub analyst: String,
    pub role: Role,
    /// The session's CSRF token; `None` for a bearer token, which no
    /// browser sends by itself.
    pub csrf: Option<String>,
    /// Signed in by name and password (false: a token, or the operator
    /// of a workspace without analysts).
    pub signed_in: bool,
}

/// Sessions held at once, at most.
const MAX_SESSIONS: usize = 10_000;

#[derive(Debug, Clone)]
struct Session {
    who: Who,
    expires: Instant,
}

/// The analysts, and the sessions of those signed in.
#[derive(Debug)]
pub struct Access {
    analysts: Vec<AnalystConf>,
    /// With no analyst configured: the operator, an investigator, on loopback.
    local: Option<String>,
    sessions: Mutex<HashMap<String, Session>>,
    lifetime: Duration,
}

/// 32 random bytes, hex.
pub fn token() -> String {
    let mut b = [0u8; 32];
    rand_core::OsRng.fill_bytes(&mut b);
    hex::encode(b)
}

/// A cookie's value from the request's `Cookie` headers.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(cookie::Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == name)
        .map(|c| c.value().to_owned())
}

/// A `Set-Cookie` value: HttpOnly, SameSite=Strict, Secure, the whole site.
pub fn set_cookie(name: &str, value: &str, max_age: Option<Duration>) -> String {
    let mut c = cookie::Cookie::build((name, value))
        .http_only(true)
        .same_site(cookie::SameSite::Strict)
        .secure(true)
        .path("/");
    if let Some(age) = max_age {
        c = c.max_age(cookie::time::Duration::seconds(
            i64::try_from(age.as_secs()).unwrap_or(i64::MAX),
        ));
    }
    c.build().to_string()
}

/// Constant-time equality of two tokens.
pub fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

impl Access {
    pub fn new(analysts: Vec<AnalystConf>, operator: &str, lifetime: Duration) -> Self {
        let local = analysts.is_empty().then(|| operator.to_owned());
        Self {
            analysts,
            local,
            sessions: Mutex::new(HashMap::new()),
            lifetime,
        }
    }

    /// Whether anyone may sign in (false: the operator, on loopback).
    pub fn has_analysts(&self) -> bool {
        self.local.is_none()
    }

    /// The session or bearer token the request carries, if valid.
    pub fn who(&self, headers: &HeaderMap) -> Option<Who> {
        if let Some(token) = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
        {
            return self.by_token(token.trim());
        }
        let id = cookie(headers, SESSION_COOKIE)?;
        let mut sessions = self.sessions.lock().ok()?;
        let now = Instant::now();
        sessions.retain(|_, s| s.expires > now);
        sessions.get(&id).map(|s| s.who.clone())
    }

    fn by_token(&self, token: &str) -> Option<Who> {
        let digest = hex::encode(Sha256::digest(token.as_bytes()));
        // Every analyst is compared, so the time taken names none of them.
        let mut found = None;
        for a in &self.analysts {
            if let Some(t) = &a.token_sha256
                && same(&t.to_ascii_lowercase(), &digest)
            {
                found = Some(Who {
                    analyst: a.name.clone(),
                    role: a.role,
                    csrf: None,
                    signed_in: false,
                });
            }
        }
        found
    }

    /// Checks a name and password; a new session id on success.
    pub fn sign_in(&self, name: &str, password: &str) -> Option<String> {
        let argon = argon2::Argon2::default();
        let analyst = self.analysts.iter().find(|a| a.name == name);
        let hash = analyst.and_then(|a| a.password_hash.as_deref());
        let ok = match hash.map(argon2::PasswordHash::new) {
            Some(Ok(h)) => argon.verify_password(password.as_bytes(), &h).is_ok(),
            _ => {
                // An unknown name costs what a known one does.
                let _ = hash_password(password);
                false
            }
        };
        let a = analyst.filter(|_| ok)?;
        Some(self.open(Who {
            analyst: a.name.clone(),
            role: a.role,
            csrf: Some(token()),
            signed_in: true,
        }))
    }

    /// A session for the operator when no analyst is configured.
    pub fn local_session(&self) -> Option<(String, Who)> {
        let name = self.local.clone()?;
        let who = Who {
            analyst: name,
            role: Role::Investigator,
            csrf: Some(token()),
            signed_in: false,
        };
        Some((self.open(who.clone()), who))
    }

    /// A new session for `who`; its id for the cookie.
    pub fn open(&self, who: Who) -> String {
        let id = token();
        if let Ok(mut s) = self.sessions.lock() {
            // Sign-ins cannot grow memory without bound: past the cap the
            // expired go, then the session closest to its end.
            if s.len() >= MAX_SESSIONS {
                let now = Instant::now();
                s.retain(|_, x| x.expires > now);
            }
            if s.len() >= MAX_SESSIONS
                && let Some(oldest) = s
                    .iter()
                    .min_by_key(|(_, x)| x.expires)
                    .map(|(k, _)| k.clone())
            {
                s.remove(&oldest);
            }
            s.insert(
                id.clone(),
                Session {
                    who,
                    expires: Instant::now() + self.lifetime,
                },
            );
        }
        id
    }

    pub fn sign_out(&self, headers: &HeaderMap) {
        if let (Some(id), Ok(mut s)) = (cookie(headers, SESSION_COOKIE), self.sessions.lock()) {
            s.remove(&id);
        }
    }

    /// The analysts as configured (a provider's sign-ins are matched to them).
    pub fn analysts(&self) -> &[AnalystConf] {
        &self.analysts
    }

    pub fn lifetime(&self) -> Duration {
        self.lifetime
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn analyst(name: &str, role: Role, password: Option<&str>, token: Option<&str>) -> AnalystConf {
        AnalystConf {
            name: name.into(),
            role,
            password_hash: password.map(|p| hash_password(p).unwrap()),
            token_sha256: token.map(|t| hex::encode(Sha256::digest(t.as_bytes()))),
            oidc_subject: None,
            oidc_email: None,
        }
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn a_password_signs_in_and_a_wrong_one_or_name_does_not() {
        let access = Access::new(
            vec![analyst(
                "ana",
                Role::Investigator,
                Some("s3cret pass"),
                None,
            )],
            "op",
            Duration::from_secs(60),
        );
        assert!(access.sign_in("ana", "wrong").is_none());
        assert!(access.sign_in("bob", "s3cret pass").is_none());
        let id = access.sign_in("ana", "s3cret pass").expect("signed in");
        let who = access
            .who(&headers(&[(
                "cookie",
                &format!("a=b; {SESSION_COOKIE}={id}"),
            )]))
            .expect("session");
        assert_eq!(who.analyst, "ana");
        assert_eq!(who.role, Role::Investigator);
        assert!(who.csrf.is_some());
        assert!(
            access
                .who(&headers(&[("cookie", &format!("{SESSION_COOKIE}=x{id}"))]))
                .is_none()
        );
        access.sign_out(&headers(&[("cookie", &format!("{SESSION_COOKIE}={id}"))]));
        assert!(
            access
                .who(&headers(&[("cookie", &format!("{SESSION_COOKIE}={id}"))]))
                .is_none()
        );
    }

    #[test]
    fn a_bearer_token_names_its_analyst_without_a_csrf_token() {
        let access = Access::new(
            vec![
                analyst("reader", Role::ReadOnly, None, Some("tok-1")),
                analyst("inv", Role::Investigator, Some("p"), Some("tok-2")),
            ],
            "op",
            Duration::from_secs(60),
        );
        let who = access
            .who(&headers(&[("authorization", "Bearer tok-1")]))
            .unwrap();
        assert_eq!(
            (who.analyst.as_str(), who.role, who.csrf, who.signed_in),
            ("reader", Role::ReadOnly, None, false)
        );
        assert!(
            access
                .who(&headers(&[("authorization", "Bearer tok-3")]))
                .is_none()
        );
        assert!(access.has_analysts());
        assert!(access.local_session().is_none());
    }

    #[test]
    fn an_expired_session_is_gone() {
        let access = Access::new(
            vec![analyst("ana", Role::ReadOnly, Some("p"), None)],
            "op",
            Duration::from_millis(1),
        );
        let id = access.sign_in("ana", "p").unwrap();
        std::thread::sleep(Duration::from_millis(5));
        assert!(
            access
                .who(&headers(&[("cookie", &format!("{SESSION_COOKIE}={id}"))]))
                .is_none()
        );
    }

    #[test]
    fn bad_analyst_entries_are_named() {
        let ok = analyst("ana", Role::ReadOnly, None, Some("t"));
        assert_eq!(check_analysts(std::slice::from_ref(&ok)), Ok(()));
        let mut bad = ok.clone();
        bad.name = "<script>".into();
        assert_eq!(
            check_analysts(&[bad]),
            Err(AnalystError::Name("<script>".into()))
        );
        assert_eq!(
            check_analysts(&[ok.clone(), ok.clone()]),
            Err(AnalystError::Twice("ana".into()))
        );
        let mut bad = ok.clone();
        bad.password_hash = Some("plaintext".into());
        assert!(matches!(
            check_analysts(&[bad]),
            Err(AnalystError::Hash(..))
        ));
        let mut bad = ok.clone();
        bad.token_sha256 = Some("abc".into());
        assert_eq!(
            check_analysts(&[bad]),
            Err(AnalystError::Token("ana".into()))
        );
        let mut bad = ok.clone();
        bad.token_sha256 = None;
        assert_eq!(
            check_analysts(&[bad]),
            Err(AnalystError::NoCredential("ana".into()))
        );
        // An identity at the provider alone is a credential; one shared is not.
        let mut a = ok.clone();
        a.token_sha256 = None;
        a.oidc_email = Some("Ana@Example.org".into());
        assert_eq!(check_analysts(std::slice::from_ref(&a)), Ok(()));
        let mut b = ok;
        b.name = "bob".into();
        b.oidc_email = Some("ana@example.org".into());
        assert_eq!(
            check_analysts(&[a, b]),
            Err(AnalystError::SameIdentity("ana".into(), "bob".into()))
        );
    }

    #[test]
    fn sessions_are_capped_and_the_oldest_goes_first() {
        let access = Access::new(
            vec![analyst("ana", Role::ReadOnly, None, Some("t"))],
            "op",
            Duration::from_secs(60),
        );
        let who = Who {
            analyst: "ana".into(),
            role: Role::ReadOnly,
            csrf: Some(token()),
            signed_in: true,
        };
        let first = access.open(who.clone());
        let second = access.open(who.clone());
        for _ in 2..MAX_SESSIONS {
            access.open(who.clone());
        }
        let with = |id: &str| headers(&[("cookie", &format!("{SESSION_COOKIE}={id}"))]);
        assert!(access.who(&with(&first)).is_some());
        let newest = access.open(who);
        assert!(access.who(&with(&first)).is_none(), "the oldest went");
        assert!(access.who(&with(&second)).is_some());
        assert!(access.who(&with(&newest)).is_some());
        assert_eq!(access.sessions.lock().unwrap().len(), MAX_SESSIONS);
    }
}
