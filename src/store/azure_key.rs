//! The storage account key: a validated account name and base64 key, and
//! the HMAC-SHA256 signature under it.
//!
//! A leaf: both ways of using the key build on it, per-request Shared Key
//! signing (`azure_auth`) and minting an account SAS (`azure_sas`), and it
//! depends on neither, so they do not depend on each other both ways.

use std::fmt;

use azure_core::credentials::Secret;
use azure_core::error::ErrorKind;
use base64::Engine as _;

/// Account name of the Azurite emulator (public, from Microsoft's docs).
pub const AZURITE_ACCOUNT: &str = "devstoreaccount1";

/// Account key of the Azurite emulator. This is the well-known, public
/// development key that every Azurite install accepts; it protects nothing.
pub const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// What was wrong with a shared-key credential or the client built from it.
///
/// No variant ever carries the account key or any part of it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SharedKeyError {
    #[error(
        "storage account name {account:?} is not valid: expected 3 to 24 lowercase letters and digits"
    )]
    InvalidAccount { account: String },
    #[error("the account key for storage account {account:?} is empty")]
    EmptyKey { account: String },
    #[error(
        "the account key for storage account {account:?} has leading or trailing whitespace; \
         copy the key without surrounding spaces or newlines"
    )]
    KeyWhitespace { account: String },
    #[error(
        "the account key for storage account {account:?} is not valid base64 \
         (standard alphabet with padding); check that the whole key was copied"
    )]
    KeyNotBase64 { account: String },
    #[error("invalid blob endpoint {endpoint:?}: {reason}")]
    InvalidEndpoint { endpoint: String, reason: String },
    #[error("invalid container name {container:?}: {reason}")]
    InvalidContainer { container: String, reason: String },
    #[error("failed to build the Azure blob client for {url}")]
    Client {
        url: String,
        #[source]
        source: azure_core::Error,
    },
}

/// A storage account name and its base64 account key.
///
/// The key is validated when the credential is made; `Debug` never shows it.
#[derive(Clone)]
pub struct SharedKeyCredential {
    account: String,
    /// The base64 key exactly as the portal shows it (validated).
    key: Secret,
}

impl SharedKeyCredential {
    /// Validates `account` and the base64 `key`.
    pub fn new(account: impl Into<String>, key: impl Into<String>) -> Result<Self, SharedKeyError> {
        let account = account.into();
        let key = key.into();
        let account_ok = (3..=24).contains(&account.len())
            && account
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        if !account_ok {
            return Err(SharedKeyError::InvalidAccount { account });
        }
        if key.is_empty() {
            return Err(SharedKeyError::EmptyKey { account });
        }
        if key.trim() != key {
            return Err(SharedKeyError::KeyWhitespace { account });
        }
        // The decode error is dropped on purpose: its message names the
        // offending byte, which is a piece of the key.
        match base64::engine::general_purpose::STANDARD.decode(key.as_bytes()) {
            Ok(decoded) if !decoded.is_empty() => {}
            _ => return Err(SharedKeyError::KeyNotBase64 { account }),
        }
        Ok(Self {
            account,
            key: Secret::new(key),
        })
    }

    /// The credential for the Azurite emulator's well-known account.
    pub fn azurite() -> Self {
        Self {
            account: AZURITE_ACCOUNT.to_owned(),
            key: Secret::new(AZURITE_KEY),
        }
    }

    /// The storage account name.
    pub fn account(&self) -> &str {
        &self.account
    }

    /// The base64 HMAC-SHA256 of `string_to_sign` under the account key.
    pub fn sign(&self, string_to_sign: &str) -> azure_core::Result<String> {
        // The key was validated in `new`, so this cannot fail on the key; the
        // inner error is replaced anyway so no key material can reach a log.
        azure_core::hmac::hmac_sha256(string_to_sign, &self.key).map_err(|_| {
            azure_core::Error::with_message(
                ErrorKind::Credential,
                format!(
                    "failed to sign a request for storage account {:?}",
                    self.account
                ),
            )
        })
    }
}

impl fmt::Debug for SharedKeyCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedKeyCredential")
            .field("account", &self.account)
            .field("key", &"<redacted>")
            .finish()
    }
}
