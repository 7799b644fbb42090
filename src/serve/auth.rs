//! Authentication of alert deliveries: an HMAC-SHA256 signature of the body
//! with a timestamp (replays outside a window are refused), or a bearer
//! token for senders that cannot sign. Every comparison is constant-time and
//! no secret, token or signature is ever logged or echoed in an error.
//!
//! The signature header, `X-Custody-Signature: t=UNIX_SECONDS,v1=HEX`, is
//! the HMAC-SHA256 under the source's secret of `UNIX_SECONDS`, a `.`, and
//! the raw body, so a captured request cannot be replayed later or with
//! another body. Several `v1=` values may be given during a secret rotation.

use hmac::{Hmac, Mac};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

pub const SIGNATURE_HEADER: &str = "x-custody-signature";

/// How a source authenticates.
#[derive(Clone)]
pub enum Auth {
    Hmac { secret: Vec<u8> },
    Bearer { token: String },
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret.
        f.write_str(match self {
            Self::Hmac { .. } => "Auth::Hmac",
            Self::Bearer { .. } => "Auth::Bearer",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    #[error("missing {0} header")]
    Missing(&'static str),
    #[error("malformed {0} header: expected {1}")]
    Malformed(&'static str, &'static str),
    #[error("stale or future timestamp: {age} s from now, outside the {window} s window")]
    Stale { age: i64, window: u64 },
    #[error("signature does not match the body")]
    BadSignature,
    #[error("bearer token does not match")]
    BadToken,
}

/// What can be checked before the body is read: for a bearer source, the
/// whole check; for an HMAC source, that the signature header is there,
/// well formed, and its timestamp inside the window. A request that fails
/// here is refused without reading (or buffering) its body.
pub fn precheck(
    auth: &Auth,
    signature: Option<&str>,
    authorization: Option<&str>,
    now: i64,
    window_secs: u64,
) -> Result<(), AuthError> {
    match auth {
        Auth::Bearer { .. } => check(auth, signature, authorization, b"", now, window_secs),
        Auth::Hmac { .. } => {
            let (t, _) = parse_signature(signature)?;
            fresh(t, now, window_secs)
        }
    }
}

const FORM: &str = "t=UNIX_SECONDS,v1=HEX";

/// The timestamp and the candidate signatures of an `X-Custody-Signature` header.
fn parse_signature(signature: Option<&str>) -> Result<(i64, Vec<Vec<u8>>), AuthError> {
    let header = signature.ok_or(AuthError::Missing("X-Custody-Signature"))?;
    let mut t = None;
    let mut sigs = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => {
                t = Some(
                    v.parse::<i64>()
                        .map_err(|_| AuthError::Malformed("X-Custody-Signature", FORM))?,
                );
            }
            Some(("v1", v)) => sigs.push(
                hex::decode(v).map_err(|_| AuthError::Malformed("X-Custody-Signature", FORM))?,
            ),
            _ => return Err(AuthError::Malformed("X-Custody-Signature", FORM)),
        }
    }
    let t = t.ok_or(AuthError::Malformed("X-Custody-Signature", FORM))?;
    if sigs.is_empty() {
        return Err(AuthError::Malformed("X-Custody-Signature", FORM));
    }
    Ok((t, sigs))
}

fn fresh(t: i64, now: i64, window_secs: u64) -> Result<(), AuthError> {
    let age = now.saturating_sub(t);
    if age.unsigned_abs() > window_secs {
        return Err(AuthError::Stale {
            age,
            window: window_secs,
        });
    }
    Ok(())
}

/// Checks a delivery. `signature` is the `X-Custody-Signature` header,
/// `authorization` the `Authorization` header, `now` in Unix seconds.
pub fn check(
    auth: &Auth,
    signature: Option<&str>,
    authorization: Option<&str>,
    body: &[u8],
    now: i64,
    window_secs: u64,
) -> Result<(), AuthError> {
    match auth {
        Auth::Bearer { token } => {
            let presented = authorization
                .ok_or(AuthError::Missing("Authorization"))?
                .strip_prefix("Bearer ")
                .ok_or(AuthError::Malformed("Authorization", "Bearer TOKEN"))?;
            // Digests first, so the comparison is constant-time even when the lengths differ.
            let (a, b) = (
                Sha256::digest(presented.trim().as_bytes()),
                Sha256::digest(token.as_bytes()),
            );
            if bool::from(a.ct_eq(&b)) {
                Ok(())
            } else {
                Err(AuthError::BadToken)
            }
        }
        Auth::Hmac { secret } => {
            let (t, sigs) = parse_signature(signature)?;
            fresh(t, now, window_secs)?;
            let mut mac =
                Hmac::<Sha256>::new_from_slice(secret).map_err(|_| AuthError::BadSignature)?;
            mac.update(t.to_string().as_bytes());
            mac.update(b".");
            mac.update(body);
            let expected = mac.finalize().into_bytes();
            // Constant-time per candidate; which candidate matched is not secret.
            if sigs
                .iter()
                .any(|s| s.len() == expected.len() && bool::from(s.as_slice().ct_eq(&expected)))
            {
                Ok(())
            } else {
                Err(AuthError::BadSignature)
            }
        }
    }
}

/// The signature header for `body` at time `t`: what a sender computes.
pub fn sign(secret: &[u8], t: i64, body: &[u8]) -> String {
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(m) => m,
        // HMAC takes keys of any length; this branch cannot be reached.
        Err(_) => return String::new(),
    };
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_790_000_000;

    fn hmac() -> Auth {
        Auth::Hmac {
            secret: b"s3cret".to_vec(),
        }
    }

    #[test]
    fn a_signed_body_passes_and_any_change_fails() {
        let body = br#"{"id":"a"}"#;
        let sig = sign(b"s3cret", NOW, body);
        assert_eq!(check(&hmac(), Some(&sig), None, body, NOW, 300), Ok(()));
        assert_eq!(
            check(&hmac(), Some(&sig), None, br#"{"id":"b"}"#, NOW, 300),
            Err(AuthError::BadSignature)
        );
        let other = sign(b"other", NOW, body);
        assert_eq!(
            check(&hmac(), Some(&other), None, body, NOW, 300),
            Err(AuthError::BadSignature)
        );
        // A rotation: the old and the new signature side by side.
        let both = format!(
            "{other},v1={}",
            sig.rsplit("v1=").next().unwrap_or_default()
        );
        assert_eq!(check(&hmac(), Some(&both), None, body, NOW, 300), Ok(()));
    }

    #[test]
    fn replays_outside_the_window_are_refused() {
        let body = b"{}";
        let old = sign(b"s3cret", NOW - 301, body);
        assert!(matches!(
            check(&hmac(), Some(&old), None, body, NOW, 300),
            Err(AuthError::Stale { age: 301, .. })
        ));
        let future = sign(b"s3cret", NOW + 400, body);
        assert!(matches!(
            check(&hmac(), Some(&future), None, body, NOW, 300),
            Err(AuthError::Stale { .. })
        ));
    }

    #[test]
    fn missing_and_malformed_headers_are_named() {
        assert_eq!(
            check(&hmac(), None, None, b"{}", NOW, 300),
            Err(AuthError::Missing("X-Custody-Signature"))
        );
        for bad in ["v1=00", "t=abc,v1=00", "t=1", "t=1,v1=zz", "x=1"] {
            assert!(
                matches!(
                    check(&hmac(), Some(bad), None, b"{}", NOW, 300),
                    Err(AuthError::Malformed(..))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn w2_precheck_refuses_before_the_body_what_the_headers_alone_refuse() {
        // No header, a malformed one, or a stale timestamp: refused without a body.
        assert_eq!(
            precheck(&hmac(), None, None, NOW, 300),
            Err(AuthError::Missing("X-Custody-Signature"))
        );
        assert!(matches!(
            precheck(&hmac(), Some("t=1"), None, NOW, 300),
            Err(AuthError::Malformed(..))
        ));
        let stale = sign(b"s3cret", NOW - 301, b"{}");
        assert!(matches!(
            precheck(&hmac(), Some(&stale), None, NOW, 300),
            Err(AuthError::Stale { .. })
        ));
        // A fresh header passes; the body is checked once read.
        let fresh = sign(b"s3cret", NOW, b"{}");
        assert_eq!(precheck(&hmac(), Some(&fresh), None, NOW, 300), Ok(()));
        let bearer = Auth::Bearer {
            token: "tok".into(),
        };
        assert_eq!(
            precheck(&bearer, None, Some("Bearer nope"), NOW, 300),
            Err(AuthError::BadToken)
        );
        assert_eq!(
            precheck(&bearer, None, Some("Bearer tok"), NOW, 300),
            Ok(())
        );
    }

    #[test]
    fn bearer_tokens_are_compared_whole() {
        let auth = Auth::Bearer {
            token: "tok-123".into(),
        };
        assert_eq!(
            check(&auth, None, Some("Bearer tok-123"), b"", NOW, 0),
            Ok(())
        );
        for bad in ["Bearer tok-12", "Bearer tok-1234", "Bearer "] {
            assert_eq!(
                check(&auth, None, Some(bad), b"", NOW, 0),
                Err(AuthError::BadToken),
                "{bad}"
            );
        }
        assert_eq!(
            check(&auth, None, Some("Basic abc"), b"", NOW, 0),
            Err(AuthError::Malformed("Authorization", "Bearer TOKEN"))
        );
        assert_eq!(
            check(&auth, None, None, b"", NOW, 0),
            Err(AuthError::Missing("Authorization"))
        );
        // Errors never carry the secret.
        assert!(!format!("{auth:?}").contains("tok-123"));
    }
}
