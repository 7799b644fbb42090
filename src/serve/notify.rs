//! Outbound notifications: when a job whose rule has `notify` finishes or
//! fails, a JSON summary is POSTed to the rule's URL, signed the way alerts
//! are (`X-Custody-Signature: t=…,v1=…`) when the rule names a secret.
//!
//! A delivery is retried on connection errors, timeouts, 429 and 5xx, with
//! growing pauses; any other answer is final. Its outcome is written to the
//! queue, so a restart sends again what a crash cut off, and a receiver that
//! refused is not asked again. Webhook URLs often carry a token in their
//! path, so only the host ever reaches logs, errors and the job view.

use std::time::Duration;

use time::OffsetDateTime;

/// Pauses before each retry of a notification.
pub const DEFAULT_BACKOFF: [Duration; 4] = [
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(4),
    Duration::from_secs(8),
];
/// One request's limit, answer included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NotifyError {
    #[error("not a usable notification URL: {0}")]
    BadUrl(String),
    #[error("{host} answered {status}")]
    Refused { host: String, status: u16 },
    #[error("{host} could not be reached: {message}")]
    Unreachable { host: String, message: String },
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
}

/// Where a rule's notifications go, and the secret they are signed with.
#[derive(Clone)]
pub struct NotifyTarget {
    url: reqwest::Url,
    secret: Option<Vec<u8>>,
}

impl std::fmt::Debug for NotifyTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NotifyTarget")
            .field("host", &self.host())
            .field("signed", &self.secret.is_some())
            .finish()
    }
}

impl NotifyTarget {
    /// An `http` or `https` URL with a host.
    pub fn new(url: &str, secret: Option<Vec<u8>>) -> Result<Self, NotifyError> {
        // The parser's message can quote the URL; name only what is wrong.
        let url = reqwest::Url::parse(url)
            .map_err(|e| NotifyError::BadUrl(format!("it does not parse ({e})")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(NotifyError::BadUrl(format!(
                "the scheme is {}, not http or https",
                url.scheme()
            )));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(NotifyError::BadUrl("it has no host".into()));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(NotifyError::BadUrl(
                "it carries credentials; use notify_secret_env to sign instead".into(),
            ));
        }
        Ok(Self { url, secret })
    }

    /// The host and port: all of the URL that is shown anywhere.
    pub fn host(&self) -> String {
        match (self.url.host_str(), self.url.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_owned(),
            (None, _) => String::new(),
        }
    }
}

/// What a notification says.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Notice {
    /// `job.done` or `job.failed`.
    pub event: String,
    pub job: String,
    pub state: String,
    pub source: String,
    pub alert_id: String,
    pub case: String,
    pub rule: String,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// The job's final detail: what it did, or why it failed.
    pub detail: serde_json::Value,
}

/// Sends notifications.
#[derive(Debug, Clone)]
pub struct Notifier {
    client: reqwest::Client,
    backoff: Vec<Duration>,
}

impl Notifier {
    pub fn new(backoff: &[Duration]) -> Result<Self, NotifyError> {
        let client = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            // A redirect could carry the summary to a host nobody configured.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("custody/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| NotifyError::Client(e.to_string()))?;
        Ok(Self {
            client,
            backoff: backoff.to_vec(),
        })
    }

    /// POSTs `notice` to `target`, retrying what may pass; returns the
    /// final status and the number of attempts.
    pub async fn send(
        &self,
        target: &NotifyTarget,
        notice: &Notice,
        clock: &dyn crate::clock::Clock,
    ) -> Result<(u16, usize), (NotifyError, usize)> {
        let body = serde_json::to_vec(notice)
            .map_err(|e| (NotifyError::Client(format!("cannot encode: {e}")), 0))?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut req = self
                .client
                .post(target.url.clone())
                .header("Content-Type", "application/json")
                .header("X-Custody-Event", notice.event.as_str())
                .body(body.clone());
            if let Some(secret) = &target.secret {
                req = req.header(
                    "X-Custody-Signature",
                    super::auth::sign(secret, clock.now().unix_timestamp(), &body),
                );
            }
            let (error, retry) = match req.send().await {
                Ok(resp) if resp.status().is_success() => {
                    return Ok((resp.status().as_u16(), attempt));
                }
                Ok(resp) => {
                    let status = resp.status();
                    (
                        NotifyError::Refused {
                            host: target.host(),
                            status: status.as_u16(),
                        },
                        status.is_server_error()
                            || status == reqwest::StatusCode::TOO_MANY_REQUESTS,
                    )
                }
                // reqwest's errors name the URL; keep only the kind.
                Err(e) => (
                    NotifyError::Unreachable {
                        host: target.host(),
                        message: describe(&e),
                    },
                    true,
                ),
            };
            match self.backoff.get(attempt - 1) {
                Some(pause) if retry => {
                    tracing::warn!(host = %target.host(), job = %notice.job, %error, "notification not delivered; retrying");
                    tokio::time::sleep(*pause).await;
                }
                _ => return Err((error, attempt)),
            }
        }
    }
}

fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        "connection failed".into()
    } else {
        "the request failed".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_and_only_the_host_is_shown() {
        let t =
            NotifyTarget::new("https://hooks.example:8443/T000/secret-token", None).expect("url");
        assert_eq!(t.host(), "hooks.example:8443");
        assert!(!format!("{t:?}").contains("secret-token"));
        for (bad, why) in [
            ("not a url", "does not parse"),
            ("ftp://h/x", "scheme is ftp"),
            ("https://user:pw@h/x", "credentials"),
            ("file:///etc/passwd", "scheme is file"),
        ] {
            let e = NotifyTarget::new(bad, None).expect_err(bad).to_string();
            assert!(e.contains(why), "{bad}: {e}");
            assert!(!e.contains("pw@"), "{e}");
        }
    }
}
