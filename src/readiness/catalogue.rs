//! The check catalogue: the declarations in `readiness_checks/*.toml`,
//! built into the binary so a run records exactly which catalogue it used
//! (its version is the SHA-256 of the files).

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// The files of `readiness_checks/`, by provider.
const FILES: [(Provider, &str, &str); 2] = [
    (
        Provider::Aws,
        "aws.toml",
        include_str!("../../readiness_checks/aws.toml"),
    ),
    (
        Provider::Azure,
        "azure.toml",
        include_str!("../../readiness_checks/azure.toml"),
    ),
];

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CatalogueError {
    #[error("readiness_checks/{file} is not valid: {message}")]
    Invalid { file: String, message: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Provider {
    Aws,
    Azure,
}

impl Provider {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Aws => "aws",
            Self::Azure => "azure",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Critical,
    High,
    Medium,
    Low,
}

impl Severity {
    /// The weight of a check of this severity in the score.
    pub fn weight(self) -> u32 {
        match self {
            Self::Critical => 10,
            Self::High => 5,
            Self::Medium => 2,
            Self::Low => 1,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Critical => "critical",
            Self::High => "high",
            Self::Medium => "medium",
            Self::Low => "low",
        }
    }
}

/// What part of an investigation a check protects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pillar {
    Logging,
    Detection,
    LiveResponse,
    Acquisition,
    Access,
}

impl Pillar {
    pub const ALL: [Pillar; 5] = [
        Self::Logging,
        Self::Detection,
        Self::LiveResponse,
        Self::Acquisition,
        Self::Access,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Logging => "logging",
            Self::Detection => "detection",
            Self::LiveResponse => "live_response",
            Self::Acquisition => "acquisition",
            Self::Access => "access",
        }
    }
}

/// One declared check.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckDef {
    pub id: String,
    pub title: String,
    pub severity: Severity,
    pub pillar: Pillar,
    /// Why it matters for an investigation.
    pub why: String,
    pub remediation: String,
    pub references: Vec<String>,
    /// Every API call the evaluation makes.
    pub api_calls: Vec<String>,
    /// Thresholds and names the evaluation reads (a role name, a minimum).
    #[serde(default)]
    pub parameters: toml::Table,
    /// Set when no emulator or service reachable here can evaluate it: the
    /// check reports SKIPPED with this reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_evaluable_here: Option<String>,
    /// Filled from the file the check is declared in.
    #[serde(default = "no_provider", skip_deserializing)]
    pub provider: Provider,
}

fn no_provider() -> Provider {
    Provider::Aws
}

impl CheckDef {
    pub fn param_u64(&self, name: &str) -> Option<u64> {
        self.parameters
            .get(name)
            .and_then(toml::Value::as_integer)
            .and_then(|v| u64::try_from(v).ok())
    }

    pub fn param_str(&self, name: &str) -> Option<&str> {
        self.parameters.get(name).and_then(toml::Value::as_str)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    check: Vec<CheckDef>,
}

/// Every declared check, in file order, and the catalogue's version.
#[derive(Debug, Clone)]
pub struct Catalogue {
    pub checks: Vec<CheckDef>,
    /// `sha256:` of the catalogue files, in order.
    pub version: String,
}

impl Catalogue {
    /// The catalogue built into this binary.
    pub fn builtin() -> Result<Self, CatalogueError> {
        Self::parse(FILES.iter().map(|(p, name, text)| (*p, *name, *text)))
    }

    fn parse<'a>(
        files: impl Iterator<Item = (Provider, &'a str, &'a str)>,
    ) -> Result<Self, CatalogueError> {
        let mut checks: Vec<CheckDef> = Vec::new();
        let mut hash = Sha256::new();
        for (provider, name, text) in files {
            let bad = |message: String| CatalogueError::Invalid {
                file: name.to_owned(),
                message,
            };
            hash.update(text.as_bytes());
            let file: File = toml::from_str(text).map_err(|e| bad(e.to_string()))?;
            for mut c in file.check {
                let prefix = format!("{}.", provider.as_str());
                if !c.id.starts_with(&prefix)
                    || !c
                        .id
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._".contains(&b))
                {
                    return Err(bad(format!(
                        "check id {:?}: use {prefix}service.name in a-z, 0-9, . and _",
                        c.id
                    )));
                }
                if checks.iter().any(|x| x.id == c.id) {
                    return Err(bad(format!("check {} is declared twice", c.id)));
                }
                if c.api_calls.is_empty() || c.references.is_empty() {
                    return Err(bad(format!(
                        "check {} needs its api_calls and references",
                        c.id
                    )));
                }
                c.provider = provider;
                checks.push(c);
            }
        }
        Ok(Self {
            checks,
            version: format!("sha256:{}", hex::encode(hash.finalize())),
        })
    }

    pub fn get(&self, id: &str) -> Option<&CheckDef> {
        self.checks.iter().find(|c| c.id == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builtin_catalogue_parses_and_the_readme_lists_every_check() {
        let c = Catalogue::builtin().expect("catalogue");
        assert!(c.checks.len() >= 30, "{}", c.checks.len());
        let readme = include_str!("../../readiness_checks/README.md");
        for check in &c.checks {
            assert!(
                readme.contains(&format!("`{}`", check.id)),
                "readiness_checks/README.md does not list {}",
                check.id
            );
        }
    }

    #[test]
    fn mistakes_are_named() {
        let ok = "[[check]]\nid = \"aws.x.y\"\ntitle = \"t\"\nseverity = \"high\"\npillar = \"logging\"\nwhy = \"w\"\nremediation = \"r\"\nreferences = [\"u\"]\napi_calls = [\"a:B\"]\n";
        let cases = [
            (ok.replace("aws.x.y", "azure.x.y"), "use aws.service.name"),
            (ok.replace("high", "urgent"), "urgent"),
            (ok.replace("[\"a:B\"]", "[]"), "needs its api_calls"),
            (format!("{ok}{ok}"), "declared twice"),
            (ok.replace("title", "titel"), "titel"),
        ];
        for (text, want) in cases {
            let e = Catalogue::parse([(Provider::Aws, "aws.toml", text.as_str())].into_iter())
                .expect_err(&text)
                .to_string();
            assert!(e.contains(want), "{text}: {e}");
        }
    }
}
