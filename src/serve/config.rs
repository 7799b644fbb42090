//! The server's configuration file (`custody serve --config FILE`): where
//! it listens, its limits, each alert source with its adapter and
//! authentication, and the playbook rules.
//!
//! ```toml
//! [server]
//! bind = "127.0.0.1:8080"
//! read_token_env = "CUSTODY_READ_TOKEN"  # reads jobs, cases and /metrics
//! header_timeout_secs = 10      # a whole request head within this, or closed
//! body_timeout_secs = 30        # a whole body within this, or 408
//! max_connections = 512         # at the limit, the oldest unauthenticated one is closed
//! max_connections_per_ip = 64
//! retain_finished_hours = 168   # finished jobs leave the queue after this; 0 keeps them
//! dry_run = false               # record what each alert would do, change nothing
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
pub enum ServeConfigError {
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
/// 10 s: a sender has its request line and headers out in one round trip;
/// a connection that has not finished them by then is holding a slot.
const fn default_header_timeout() -> u64 {
    10
}
/// 30 s: a 1 MiB alert at 300 kbit/s, a slow link's worst.
const fn default_body_timeout() -> u64 {
    30
}
/// 512: far above the concurrent deliveries of any alert source, and well
/// under the usual 1024 open files of a service.
const fn default_max_connections() -> usize {
    512
}
/// 64: one sender (or a NAT in front of many) rarely holds more at once.
const fn default_max_connections_per_ip() -> usize {
    64
}
/// 7 days: long after any sender would deliver the same alert again.
const fn default_retain_finished() -> u64 {
    168
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
    /// The environment variable holding the token (`Authorization: Bearer`)
    /// that reads jobs, cases and metrics; any source's credential does too.
    #[serde(default)]
    pub read_token_env: Option<String>,
    /// A file holding that token instead.
    #[serde(default)]
    pub read_token_file: Option<PathBuf>,
    /// A connection that has not sent a whole request head this many seconds
    /// after it opened (or after its last answer) is closed.
    #[serde(default = "default_header_timeout")]
    pub header_timeout_secs: u64,
    /// A request body not received whole in this many seconds is refused (408).
    #[serde(default = "default_body_timeout")]
    pub body_timeout_secs: u64,
    /// Connections open at once. At the limit, a new connection closes the
    /// oldest one that has not yet authenticated a request.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// The same, for the connections from one address.
    #[serde(default = "default_max_connections_per_ip")]
    pub max_connections_per_ip: usize,
    /// Finished jobs are dropped from the queue (and its file) this many
    /// hours after they ended; 0 keeps them for ever.
    #[serde(default = "default_retain_finished")]
    pub retain_finished_hours: u64,
    /// Record what each alert would do and change nothing (also `--dry-run`).
    #[serde(default)]
    pub dry_run: bool,
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
            read_token_env: None,
            read_token_file: None,
            header_timeout_secs: default_header_timeout(),
            body_timeout_secs: default_body_timeout(),
            max_connections: default_max_connections(),
            max_connections_per_ip: default_max_connections_per_ip(),
            retain_finished_hours: default_retain_finished(),
            dry_run: false,
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
    /// The analysts' workspace, served beside the API.
    #[serde(default)]
    ui: Option<crate::ui::UiConfig>,
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
    /// The token that reads jobs, cases and metrics (always `Auth::Bearer`).
    pub read_token: Option<Auth>,
    /// Where each rule that has `notify` sends its notifications, by rule name.
    pub notify: BTreeMap<String, NotifyTarget>,
    /// Readiness audits on schedules.
    pub audits: Vec<super::schedule::Scheduled>,
    /// The analysts' workspace (`[ui]`), served on the same address.
    pub ui: Option<crate::ui::UiConfig>,
}

impl ServeConfig {
    pub fn load(path: &Path) -> Result<Self, ServeConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ServeConfigError::Read {
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
    ) -> Result<Self, ServeConfigError> {
        let bad = |message: String| ServeConfigError::Invalid {
            path: path.to_owned(),
            message,
        };
        let file: File = toml::from_str(text).map_err(|e| bad(toml_message(&e, text)))?;
        let read_token = secret(
            "server",
            "read_token",
            file.server.read_token_env.as_deref(),
            file.server.read_token_file.as_deref(),
            env,
        )
        .map_err(bad)?
        .map(|token| Auth::Bearer { token });
        let sources = sources(file.sources, env).map_err(bad)?;
        check_server(&file.server, &sources).map_err(bad)?;
        let notify = notify_targets(&file.rules, &sources, env).map_err(bad)?;
        let audits = audits(file.audits, env).map_err(bad)?;
        if let Some(ui) = &file.ui {
            ui.check()
                .and_then(|()| ui.check_bind(file.server.bind))
                .map_err(|e| bad(format!("[ui]: {e}")))?;
        }
        Ok(Self {
            server: file.server,
            sources,
            rules: file.rules,
            read_token,
            notify,
            audits,
            ui: file.ui,
        })
    }

    pub fn source(&self, name: &str) -> Option<&Source> {
        self.sources.iter().find(|s| s.name == name)
    }
}

/// The sources, each with its name checked and its secret read.
fn sources(
    files: Vec<SourceFile>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<Source>, String> {
    let mut sources: Vec<Source> = Vec::new();
    for s in files {
        let name_ok = !s.name.is_empty()
            && s.name.len() <= 64
            && s.name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if !name_ok {
            return Err(format!(
                "source name {:?}: use 1 to 64 of a-z, 0-9, - and _",
                s.name
            ));
        }
        if sources.iter().any(|x| x.name == s.name) {
            return Err(format!("source {} is given twice", s.name));
        }
        let kind: AlertSource = s
            .kind
            .parse()
            .map_err(|e| format!("source {}: {e}", s.name))?;
        let secret = secret(
            &format!("source {}", s.name),
            "secret",
            s.secret_env.as_deref(),
            s.secret_file.as_deref(),
            env,
        )?;
        let auth = match (s.auth, secret) {
            (AuthKind::None, None) => None,
            (AuthKind::None, Some(_)) => {
                return Err(format!(
                    "source {}: a secret is given but auth is \"none\"",
                    s.name
                ));
            }
            (_, None) => {
                return Err(format!(
                    "source {}: auth {:?} needs secret_env or secret_file",
                    s.name, s.auth
                ));
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
        return Err("no [[source]]: nothing could post alerts".into());
    }
    Ok(sources)
}

/// The listener's settings that make no sense, or are unsafe.
fn check_server(server: &ServerConf, sources: &[Source]) -> Result<(), String> {
    // An open listener with no authentication would let anyone isolate instances.
    if !server.bind.ip().is_loopback()
        && let Some(s) = sources.iter().find(|s| s.auth.is_none())
    {
        return Err(format!(
            "bind {} is not a loopback address, and source {} has no authentication: \
             refusing to start",
            server.bind, s.name
        ));
    }
    if server.concurrency == 0 {
        return Err("server.concurrency must be at least 1".into());
    }
    for (key, v) in [
        ("header_timeout_secs", server.header_timeout_secs),
        ("body_timeout_secs", server.body_timeout_secs),
        ("max_connections", server.max_connections as u64),
        (
            "max_connections_per_ip",
            server.max_connections_per_ip as u64,
        ),
    ] {
        if v == 0 {
            return Err(format!("server.{key} must be at least 1"));
        }
    }
    let retain = server.retain_finished_hours;
    if retain != 0 && retain < server.case_window_hours {
        // A compacted job's entities no longer join new alerts to its case.
        return Err(format!(
            "server.retain_finished_hours ({retain}) must be 0 or at least \
             case_window_hours ({})",
            server.case_window_hours
        ));
    }
    Ok(())
}

/// The secret named by `var` (a `*_secret_env`), which must be set.
fn env_secret(
    what: &str,
    var: Option<&String>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<Vec<u8>>, String> {
    let Some(var) = var else { return Ok(None) };
    env(var)
        .filter(|v| !v.is_empty())
        .map(|v| Some(v.into_bytes()))
        .ok_or_else(|| format!("{what}: the environment variable {var} is not set"))
}

/// Each rule's notification target, by rule name; every rule's source must exist.
fn notify_targets(
    rules: &[Rule],
    sources: &[Source],
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<BTreeMap<String, NotifyTarget>, String> {
    let mut notify = BTreeMap::new();
    for r in rules {
        if let Some(src) = &r.source
            && !sources.iter().any(|s| &s.name == src)
        {
            return Err(format!("rule {}: no source named {src}", r.name));
        }
        match (&r.notify, &r.notify_secret_env) {
            (None, None) => {}
            (None, Some(_)) => {
                return Err(format!("rule {}: notify_secret_env without notify", r.name));
            }
            (Some(url), var) => {
                let secret = env_secret(&format!("rule {}", r.name), var.as_ref(), env)?;
                let target = NotifyTarget::new(url, secret)
                    .map_err(|e| format!("rule {}: notify: {e}", r.name))?;
                notify.insert(r.name.clone(), target);
            }
        }
    }
    Ok(notify)
}

/// The scheduled audits, each name once.
fn audits(
    specs: Vec<super::schedule::AuditSpec>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<super::schedule::Scheduled>, String> {
    let mut audits: Vec<super::schedule::Scheduled> = Vec::new();
    for a in specs {
        if audits.iter().any(|x| x.spec.name == a.name) {
            return Err(format!("audit {} is given twice", a.name));
        }
        let secret = env_secret(
            &format!("audit {}", a.name),
            a.notify_secret_env.as_ref(),
            env,
        )?;
        let name = a.name.clone();
        audits.push(
            super::schedule::Scheduled::new(a, secret)
                .map_err(|e| format!("audit {name}: {}", crate::error_chain(&e)))?,
        );
    }
    Ok(audits)
}

/// A secret from `{what}_env` (an environment variable) or `{what}_file`;
/// `None` when neither is given. Errors name the variable or file, never
/// the value.
fn secret(
    owner: &str,
    what: &str,
    var: Option<&str>,
    file: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<String>, String> {
    match (var, file) {
        (Some(var), None) => env(var)
            .filter(|v| !v.is_empty())
            .map(Some)
            .ok_or_else(|| format!("{owner}: the environment variable {var} is not set")),
        (None, Some(f)) => std::fs::read_to_string(f)
            .map(|v| v.trim().to_owned())
            .ok()
            .filter(|v| !v.is_empty())
            .map(Some)
            .ok_or_else(|| format!("{owner}: cannot read a {what} from {}", f.display())),
        (None, None) => Ok(None),
        (Some(_), Some(_)) => Err(format!("{owner}: give {what}_env or {what}_file, not both")),
    }
}

/// A TOML error as its message and position, never its Display, which
/// quotes the offending line (a webhook URL with its token, say). Quoted
/// values inside the message (serde's "invalid type: string \"…\"") are
/// left out for the same reason.
fn toml_message(e: &toml::de::Error, text: &str) -> String {
    let mut message = String::new();
    let mut quoted = false;
    for c in e.message().chars() {
        match (c, quoted) {
            ('"', false) => {
                quoted = true;
                message.push_str("\"…");
            }
            ('"', true) => {
                quoted = false;
                message.push('"');
            }
            (c, false) => message.push(c),
            (_, true) => {}
        }
    }
    match e.span() {
        Some(span) => {
            let before = text.get(..span.start).unwrap_or_default();
            let line = before.matches('\n').count() + 1;
            let column = before
                .rsplit('\n')
                .next()
                .unwrap_or_default()
                .chars()
                .count()
                + 1;
            format!("line {line}, column {column}: {message}")
        }
        None => message,
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
    fn the_workspace_is_configured_and_checked_with_the_server() {
        let gd = "[[source]]\nname = \"gd\"\nkind = \"guardduty\"\nauth = \"hmac\"\nsecret_env = \"SECRET\"\n";
        let c = parse(&format!("[server]\nbind = \"127.0.0.1:9000\"\n{gd}[ui]\n")).expect("parses");
        assert!(c.ui.is_some_and(|u| u.analysts.is_empty()));
        assert!(
            parse(&format!("[server]\nbind = \"127.0.0.1:9000\"\n{gd}"))
                .expect("parses")
                .ui
                .is_none()
        );
        // Nobody could sign in, and the address is not loopback: refused.
        let e = parse(&format!("[server]\nbind = \"0.0.0.0:9000\"\n{gd}[ui]\n")).unwrap_err();
        assert!(e.contains("[ui]") && e.contains("loopback only"), "{e}");
        let e = parse(&format!(
            "[server]\nbind = \"0.0.0.0:9000\"\n{gd}[ui]\n[[ui.analysts]]\nname = \"a\"\nrole = \"investigator\"\npassword_hash = \"plain\"\n"
        ))
        .unwrap_err();
        assert!(
            e.contains("password_hash is not an argon2 PHC string"),
            "{e}"
        );
        let e = parse(&format!(
            "[server]\nbind = \"127.0.0.1:9000\"\n{gd}[ui]\nsession_hours = 0\n"
        ))
        .unwrap_err();
        assert!(e.contains("session_hours"), "{e}");
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

    #[test]
    fn w4_config_errors_never_echo_a_secret_or_a_url() {
        let token = "SECRET-WEBHOOK-TOKEN";
        for text in [
            // An unknown key next to the URL: toml's Display quotes the line.
            format!(
                "[[source]]\nname = \"a\"\nkind = \"generic\"\nauth = \"none\"\n\
                 [[rule]]\nname = \"r\"\naction = \"record\"\n\
                 notify_url = \"https://hooks.example/services/T0/B0/{token}?token={token}\""
            ),
            // A value of the wrong type: serde's message quotes the value.
            format!("[server]\nmax_body = \"https://hooks.example/?token={token}\""),
            format!("[server]\nbind = \"{token}\""),
            // A broken line: the parser's message.
            format!("[[rule]]\nnotify = \"https://hooks.example/{token}"),
        ] {
            let err = parse(&text).expect_err(&text);
            assert!(!err.contains(token), "{err}");
            assert!(!err.contains("hooks.example"), "{err}");
            assert!(err.contains("line "), "where it is: {err}");
        }
        let err = parse("[server]\nbind = 5").expect_err("bad bind");
        assert!(err.contains("line 2, column 8"), "{err}");
    }

    #[test]
    fn w1_a_read_token_comes_from_the_environment_or_a_file() {
        let base = "[[source]]\nname = \"a\"\nkind = \"generic\"\nauth = \"none\"\n";
        let c = parse(&format!("[server]\nread_token_env = \"SECRET\"\n{base}")).expect("env");
        assert!(matches!(&c.read_token, Some(Auth::Bearer { token }) if token == "s3cret"));
        assert!(!format!("{c:?}").contains("s3cret"), "Debug redacts it");
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("read-token");
        std::fs::write(&file, "from-a-file\n").expect("write");
        let c = parse(&format!(
            "[server]\nread_token_file = {:?}\n{base}",
            file.display().to_string()
        ))
        .expect("file");
        assert!(matches!(&c.read_token, Some(Auth::Bearer { token }) if token == "from-a-file"));
        assert!(parse(base).expect("none").read_token.is_none());
        let err =
            parse(&format!("[server]\nread_token_env = \"UNSET\"\n{base}")).expect_err("unset");
        assert!(
            err.contains("server: the environment variable UNSET is not set"),
            "{err}"
        );
    }

    #[test]
    fn connection_limits_and_retention_are_checked() {
        let base = "[[source]]\nname = \"a\"\nkind = \"generic\"\nauth = \"none\"\n";
        let c = parse(base).expect("defaults");
        assert_eq!(
            (
                c.server.header_timeout_secs,
                c.server.body_timeout_secs,
                c.server.max_connections,
                c.server.max_connections_per_ip,
                c.server.retain_finished_hours,
            ),
            (10, 30, 512, 64, 168)
        );
        for (server, want) in [
            ("max_connections = 0", "max_connections must be at least 1"),
            (
                "header_timeout_secs = 0",
                "header_timeout_secs must be at least 1",
            ),
            (
                "retain_finished_hours = 2\ncase_window_hours = 24",
                "must be 0 or at least case_window_hours (24)",
            ),
        ] {
            let err = parse(&format!("[server]\n{server}\n{base}")).expect_err(server);
            assert!(err.contains(want), "{server}: {err}");
        }
        parse(&format!("[server]\nretain_finished_hours = 0\n{base}")).expect("0 keeps all");
    }
}
