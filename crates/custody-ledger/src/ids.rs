//! Case and artefact identifiers.
//!
//! Both become parts of file paths and object keys, so they are validated once,
//! on construction: anything that could climb out of a directory (`..`, path
//! separators) or confuse a shell or an object store is refused.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Longest identifier accepted: well under every store's key-part limit.
pub const MAX_ID_LEN: usize = 128;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdError {
    #[error("invalid {what} id {value:?}: {reason}")]
    Invalid {
        what: &'static str,
        value: String,
        reason: &'static str,
    },
}

fn validate(what: &'static str, value: &str) -> Result<(), IdError> {
    let fail = |reason| {
        Err(IdError::Invalid {
            what,
            value: value.to_owned(),
            reason,
        })
    };
    if value.is_empty() {
        return fail("it is empty");
    }
    if value.len() > MAX_ID_LEN {
        return fail("it is longer than 128 characters");
    }
    if value.contains('/') || value.contains('\\') {
        return fail("it contains a path separator");
    }
    if value.contains("..") {
        return fail("it contains '..'");
    }
    if value.starts_with('.') || value.starts_with('-') {
        return fail("it starts with '.' or '-'");
    }
    if !value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return fail("only ASCII letters, digits, '-', '_' and '.' are allowed");
    }
    Ok(())
}

macro_rules! id_type {
    ($name:ident, $what:literal) => {
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                validate($what, s)?;
                Ok(Self(s.to_owned()))
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(s: String) -> Result<Self, IdError> {
                validate($what, &s)?;
                Ok(Self(s))
            }
        }

        // Deserialising validates too: a tampered manifest cannot smuggle a path in.
        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::try_from(s).map_err(serde::de::Error::custom)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

id_type!(CaseId, "case");
id_type!(ArtefactId, "artefact");

impl CaseId {
    /// A new case id: the UTC date and a random suffix, e.g. `case-20261128-3f9a1c2e`.
    pub fn generate(now: time::OffsetDateTime) -> Self {
        let suffix = uuid::Uuid::new_v4().simple().to_string();
        Self(format!(
            "case-{:04}{:02}{:02}-{}",
            now.year(),
            u8::from(now.month()),
            now.day(),
            suffix.get(..8).unwrap_or("0")
        ))
    }
}

impl ArtefactId {
    /// A new artefact id. UUIDv7 sorts by creation time, so a listing of a
    /// case's artefacts reads in acquisition order.
    pub fn generate() -> Self {
        Self(format!("a-{}", uuid::Uuid::now_v7().simple()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_ids() {
        for ok in ["case-1", "IR_2026.11.28", "a", "x.y-z_0"] {
            assert!(ok.parse::<CaseId>().is_ok(), "{ok}");
        }
    }

    #[test]
    fn refuses_path_tricks() {
        for bad in [
            "", "..", "../etc", "a/b", "a\\b", ".hidden", "-rf", "a..b", "sp ace", "é", "x\n",
        ] {
            let err = bad.parse::<CaseId>().expect_err(bad);
            assert!(err.to_string().contains("invalid case id"), "{err}");
        }
        let long = "a".repeat(MAX_ID_LEN + 1);
        assert!(long.parse::<ArtefactId>().is_err());
    }

    #[test]
    fn generated_ids_are_valid() {
        let now = time::macros::datetime!(2026-11-28 04:00 UTC);
        let c = CaseId::generate(now);
        assert!(c.as_str().starts_with("case-20261128-"));
        assert!(c.as_str().parse::<CaseId>().is_ok());
        let a = ArtefactId::generate();
        assert!(a.as_str().parse::<ArtefactId>().is_ok());
    }

    #[test]
    fn deserialising_validates() {
        let r: Result<CaseId, _> = serde_json::from_str("\"../../etc\"");
        assert!(r.is_err());
    }
}
