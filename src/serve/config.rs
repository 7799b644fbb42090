//! The server's configuration file (`custody serve --config FILE`): where
//! it listens, its limits, each alert source with its adapter and
//! authentication, and the playbook rules.
//!
//! ```toml
//! [server]
//! bind = "127.0.0.1:8080"
//!
//! [[source]]
//! name = "guardduty"            # POST /v1/alerts/guardduty
//! kind = "guardduty"            # guardduty | securityhub | generic
//! auth = "hmac"                 # hmac | bearer | none (loopback only)
//! secret_env = "CUSTODY_SECRET_GUARDDUTY"
//!
//! [[rule]]
//! name = "ec2-compromise"
//! source = "guardduty"
//! finding_type = "UnauthorizedAccess:EC2/*"
//! min_severity = 7.0
//! action = "respond"
//! ```

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::auth::Auth;
use super::notify::NotifyTarget;
use super::playbook::Rule;
use crate::alert::AlertSource;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("cannot read the server configuration {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the server configuration {path} is not valid: {message}")]
    Invalid { path: PathBuf, message: String },
}

fn defaults_bind() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}
const fn default_max_body() -> usize {
    1 << 20
}
const fn default_window() -> u64 {
    300
}
const fn default_concurrency() -> usize {
    4
}
const fn default_case_window() -> u64 {
    24
}
const fn default_max_entities() -> usize {
    256
}
const fn default_max_findings() -> usize {
    100
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConf {
    #[serde(default = "defaults_bind")]
    pub bind: SocketAddr,
    /// Largest request body accepted, in bytes.
    #[serde(default = "default_max_body")]
    pub max_body: usize,
    /// Signed timestamps further than this from now are refused, in seconds.
    #[serde(default = "default_window")]
    pub replay_window_secs: u64,
    /// Jobs run at once.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Alerts sharing an entity within this many hours join one case.
    #[serde(default = "default_case_window")]
    pub case_window_hours: u64,
    #[serde(default = "default_max_entities")]
    pub max_entities: usize,
    #[serde(default = "default_max_findings")]
    pub max_findings: usize,
    /// Where instances upload memory images (`s3://bucket/prefix`); without
    /// it, and with a store not in S3, responses record memory as not acquired.
    #[serde(default)]
    pub staging: Option<String>,
}

impl Default for ServerConf {
    fn default() -> Self {
        Self {
            bind: defaults_bind(),
            max_body: default_max_body(),
            replay_window_secs: default_window(),
            concurrency: default_concurrency(),
            case_window_hours: default_case_window(),
            max_entities: default_max_entities(),
            max_findings: default_max_findings(),
            staging: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthKind {
    Hmac,
    Bearer,
    None,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct SourceFile {
    name: String,
    kind: String,
    auth: AuthKind,
    #[serde(default)]
    secret_env: Option<String>,
    #[serde(default)]
    secret_file: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    server: ServerConf,
    #[serde(default, rename = "source")]
    sources: Vec<SourceFile>,
    #[serde(default, rename = "rule")]
    rules: Vec<Rule>,
    #[serde(default, rename = "audit")]
    audits: Vec<super::schedule::AuditSpec>,
}

/// A configured source.
#[derive(Debug, Clone)]
pub struct Source {
    pub name: String,
    pub kind: AlertSource,
    /// `None`: unauthenticated, allowed on a loopback address only.
    pub auth: Option<Auth>,
}

/// The whole configuration, checked.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub server: ServerConf,
    pub sources: Vec<Source>,
    pub rules: Vec<Rule>,
    /// Where each rule that has `notify` sends its notifications, by rule name.
    pub notify: BTreeMap<String, NotifyTarget>,
    /// Readiness audits on schedules.
    pub audits: Vec<super::schedule::Scheduled>,
}

impl ServeConfig {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path, &|k| std::env::var(k).ok())
    }

    /// Parses and checks `text`; `env` resolves `secret_env` names.
    pub fn parse(
        text: &str,
        path: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let bad = |message: String| ConfigError::Invalid {
            path: path.to_owned(),
            message,
        };
        let file: File = toml::from_str(text).map_err(|e| bad(e.to_string()))?;
        let mut sources = Vec::new();
        for s in file.sources {
            let name_ok = !s.name.is_empty()
                && s.name.len() <= 64
                && s.name.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_'
                });
            if !name_ok {
                return Err(bad(format!(
                    "source name {:?}: use 1 to 64 of a-z, 0-9, - and _",
                    s.name
                )));
            }
            if sources.iter().any(|x: &Source| x.name == s.name) {
                return Err(bad(format!("source {} is given twice", s.name)));
            }
            let kind: AlertSource = s
                .kind
                .parse()
                .map_err(|e| bad(format!("source {}: {e}", s.name)))?;
            let secret = match (&s.secret_env, &s.secret_file) {
                (Some(var), None) => Some(env(var).filter(|v| !v.is_empty()).ok_or_else(|| {
                    bad(format!(
                        "source {}: the environment variable {var} is not set",
                        s.name
                    ))
                })?),
                (None, Some(f)) => Some(
                    std::fs::read_to_string(f)
                        .map(|v| v.trim().to_owned())
                        .ok()
                        .filter(|v| !v.is_empty())
                        .ok_or_else(|| {
                            bad(format!(
                                "source {}: cannot read a secret from {}",
                                s.name,
                                f.display()
                            ))
                        })?,
                ),
                (None, None) => None,
                (Some(_), Some(_)) => {
                    return Err(bad(format!(
                        "source {}: give secret_env or secret_file, not both",
                        s.name
                    )));
                }
            };
            let auth = match (s.auth, secret) {
                (AuthKind::None, None) => None,
                (AuthKind::None, Some(_)) => {
                    return Err(bad(format!(
                        "source {}: a secret is given but auth is \"none\"",
                        s.name
                    )));
                }
                (_, None) => {
                    return Err(bad(format!(
                        "source {}: auth {:?} needs secret_env or secret_file",
                        s.name, s.auth
                    )));
                }
                (AuthKind::Hmac, Some(secret)) => Some(Auth::Hmac {
                    secret: secret.into_bytes(),
                }),
                (AuthKind::Bearer, Some(token)) => Some(Auth::Bearer { token }),
            };
            sources.push(Source {
                name: s.name,
                kind,
                auth,
            });
        }
        if sources.is_empty() {
            return Err(bad("no [[source]]: nothing could post alerts".into()));
        }
        // An open listener with no authentication would let anyone isolate instances.
        if !file.server.bind.ip().is_loopback()
            && let Some(s) = sources.iter().find(|s| s.auth.is_none())
        {
            return Err(bad(format!(
                "bind {} is not a loopback address, and source {} has no authentication: \
                 refusing to start",
                file.server.bind, s.name
            )));
        }
        let mut notify = BTreeMap::new();
        for r in &file.rules {
            if let Some(src) = &r.source
                && !sources.iter().any(|s| &s.name == src)
            {
                return Err(bad(format!("rule {}: no source named {src}", r.name)));
            }
            match (&r.notify, &r.notify_secret_env) {
                (None, None) => {}
                (None, Some(_)) => {
                    return Err(bad(format!(
                        "rule {}: notify_secret_env without notify",
                        r.name
                    )));
                }
                (Some(url), var) => {
                    let secret = match var {
                        None => None,
                        Some(var) => Some(
                            env(var)
                                .filter(|v| !v.is_empty())
                                .ok_or_else(|| {
                                    bad(format!(
                                        "rule {}: the environment variable {var} is not set",
                                        r.name
                                    ))
                                })?
                                .into_bytes(),
                        ),
                    };
                    let target = NotifyTarget::new(url, secret)
                        .map_err(|e| bad(format!("rule {}: notify: {e}", r.name)))?;
                    notify.insert(r.name.clone(), target);
                }
            }
        }
        let mut audits = Vec::new();
        for a in file.audits {
            if audits
                .iter()
                .any(|x: &super::schedule::Scheduled| x.spec.name == a.name)
            {
                return Err(bad(format!("audit {} is given twice", a.name)));
            }
            let secret = match &a.notify_secret_env {
                None => None,
                Some(var) => Some(
                    env(var)
                        .filter(|v| !v.is_empty())
                        .ok_or_else(|| {
                            bad(format!(
                                "audit {}: the environment variable {var} is not set",
                                a.name
                            ))
                        })?
                        .into_bytes(),
                ),
            };
            let name = a.name.clone();
            audits.push(
                super::schedule::Scheduled::new(a, secret)
                    .map_err(|e| bad(format!("audit {name}: {e}")))?,
            );
        }
        if file.server.concurrency == 0 {
            return Err(bad("server.concurrency must be at least 1".into()));
        }
        Ok(Self {
            server: file.server,
            sources,
            rules: file.rules,
            notify,
            audits,
        })
    }

    pub fn source(&self, name: &str) -> Option<&Source> {
        self.sources.iter().find(|s| s.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ServeConfig, String> {
        let env = |k: &str| (k == "SECRET").then(|| "s3cret".to_owned());
        ServeConfig::parse(text, Path::new("serve.toml"), &env).map_err(|e| e.to_string())
    }

    #[test]
    fn a_full_file_parses() {
        let c = parse(
            r#"
            [server]
            bind = "127.0.0.1:9000"
            [[source]]
            name = "gd"
            kind = "guardduty"
            auth = "hmac"
            secret_env = "SECRET"
            [[rule]]
            name = "r"
            source = "gd"
            action = "respond"
            "#,
        )
        .expect("parses");
        assert_eq!(c.server.bind.port(), 9000);
        assert!(matches!(
            c.source("gd").and_then(|s| s.auth.clone()),
            Some(Auth::Hmac { .. })
        ));
    }

    #[test]
    fn mistakes_are_named() {
        let cases = [
            (
                "[[source]]\nname = \"a\"\nkind = \"nope\"\nauth = \"none\"",
                "nope",
            ),
            (
                "[[source]]\nname = \"a\"\nkind = \"generic\"\nauth = \"hmac\"",
                "needs secret_env",
            ),
            (
                "[[source]]\nname = \"a\"\nkind = \"generic\"\nauth = \"hmac\"\nsecret_env = \"UNSET\"",
                "UNSET is not set",
            ),
            (
                "[server]\nbind = \"0.0.0.0:80\"\n[[source]]\nname = \"a\"\nkind = \"generic\"\nauth = \"none\"",
                "refusing to start",
            ),
            (
                "[[source]]\nname = \"A B\"\nkind = \"generic\"\nauth = \"none\"",
                "source name",
            ),
            (
                "[[source]]\nname = \"a\"\nkind = \"generic\"\nauth = \"none\"\n[[rule]]\nname = \"r\"\nsource = \"b\"\naction = \"record\"",
                "no source named b",
            ),
            (
                "[[source]]\nname = \"a\"\nkind = \"generic\"\nauth = \"none\"\ntypo = 1",
                "typo",
            ),
            ("", "no [[source]]"),
            (
                "[[source]]\nname = \"a\"\nkind = \"generic\"\nauth = \"none\"\n[[rule]]\nname = \"r\"\naction = \"record\"\nnotify = \"ftp://h/x\"",
                "rule r: notify: not a usable notification URL: the scheme is ftp",
            ),
            (
                "[[source]]\nname = \"a\"\nkind = \"generic\"\nauth = \"none\"\n[[rule]]\nname = \"r\"\naction = \"record\"\nnotify = \"https://h/x\"\nnotify_secret_env = \"UNSET\"",
                "rule r: the environment variable UNSET is not set",
            ),
            (
                "[[source]]\nname = \"a\"\nkind = \"generic\"\nauth = \"none\"\n[[rule]]\nname = \"r\"\naction = \"record\"\nnotify_secret_env = \"SECRET\"",
                "notify_secret_env without notify",
            ),
            (
                "[[source]]\nname = \"a\"\nkind = \"generic\"\nauth = \"none\"\n[[audit]]\nname = \"n\"\nschedule = \"every day\"",
                "audit n: schedule \"every day\"",
            ),
        ];
        for (text, want) in cases {
            let err = parse(text).expect_err(text);
            assert!(err.contains(want), "{text}: {err}");
        }
    }
}
