//! What every AWS client custody makes shares: the standard credential chain,
//! an optional endpoint (emulators, compatible services), bounded retries
//! with backoff that never retry access errors, per-attempt timeouts, and
//! the process-wide rate budgets of [`rate`]; and [`error`], the one error
//! of a failed call, classified by the service's error code.
//!
//! SDK types stay inside this module and the collectors that use it.

pub mod error;
pub mod rate;

pub use error::{ApiError, ApiErrorKind};

use std::time::Duration;

use aws_config::SdkConfig;

/// Settings for the AWS clients of one command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsOptions {
    /// Endpoint for every service (an emulator); `None` uses AWS's.
    pub endpoint: Option<String>,
    /// Tries per request, the first included.
    pub max_attempts: u32,
    /// Longest wait for one attempt of one request.
    pub attempt_timeout: Duration,
}

impl Default for AwsOptions {
    fn default() -> Self {
        Self {
            endpoint: None,
            max_attempts: 5,
            attempt_timeout: Duration::from_secs(60),
        }
    }
}

/// The shared SDK configuration: credentials and region from the standard
/// chain (environment, profiles, instance role), retries with exponential
/// backoff and jitter for throttling, 5xx and connection errors (the SDK's
/// standard mode does not retry access errors), and timeouts.
pub async fn sdk_config(opts: &AwsOptions) -> SdkConfig {
    let retry = aws_config::retry::RetryConfig::standard()
        .with_max_attempts(opts.max_attempts.max(1))
        .with_initial_backoff(Duration::from_millis(200))
        .with_max_backoff(Duration::from_secs(10));
    let timeouts = aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(10))
        .operation_attempt_timeout(opts.attempt_timeout)
        .build();
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .retry_config(retry)
        .timeout_config(timeouts);
    if let Some(e) = &opts.endpoint {
        loader = loader.endpoint_url(e);
    }
    loader.load().await
}

/// An SDK error in one line with its cause chain (service code and message
/// included), shortened: it may carry a response body.
pub fn brief(e: &(dyn std::error::Error + 'static)) -> String {
    let s = crate::error_chain(e);
    match s.char_indices().nth(300) {
        Some((cut, _)) => format!("{}…", s.get(..cut).unwrap_or_default()),
        None => s,
    }
}
