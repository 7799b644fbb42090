//! What every AWS client custody makes shares: the standard credential chain,
//! an optional endpoint (emulators, compatible services), bounded retries
//! with backoff that never retry access errors, per-attempt timeouts, and
//! the process-wide rate budgets of [`rate`]; and [`error`], the one error
//! of a failed call, classified by the service's error code.
//!
//! [`Aws`] is the one factory of AWS clients: region, profile, endpoint,
//! path-style addressing, retries and timeouts are decided once, here, for
//! every command, the server and the S3 store. SDK types stay inside this
//! module, the collectors and the stores that use them; nothing under
//! `cli/` names one.
//!
//! [`AwsOptions`] is plain data and exists in every build: the flags that
//! fill it are global, and `--endpoint-url` also points the Azure store at
//! an emulator. Everything else needs feature `aws`.
//!
//! | module | role |
//! |---|---|
//! | `client` | [`Aws`], the client factory, and the credential check (feature `aws`) |
//! | [`error`] | the one error of a failed AWS call (feature `aws`) |
//! | [`rate`] | process-wide API rate budgets (feature `aws`) |
//! | [`raw`] | an answer's body as the service sent it, kept as evidence (feature `aws`) |

#[cfg(feature = "aws")]
mod client;
#[cfg(feature = "aws")]
pub mod error;
#[cfg(feature = "aws")]
pub mod rate;
#[cfg(feature = "aws")]
pub mod raw;

#[cfg(feature = "aws")]
pub use client::{Aws, CredentialsError, brief, sdk_config};
#[cfg(feature = "aws")]
pub use error::{ApiError, ApiErrorKind};

use std::time::Duration;

/// Settings for the AWS clients of one command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsOptions {
    /// Endpoint for every service (an emulator); `None` uses AWS's.
    pub endpoint: Option<String>,
    /// Region, as `--region` names it; `None` leaves it to the chain
    /// (`AWS_REGION`, the profile, instance metadata).
    pub region: Option<String>,
    /// Named profile, as `--profile` names it; `None` leaves it to `AWS_PROFILE`.
    pub profile: Option<String>,
    /// Tries per request, the first included.
    pub max_attempts: u32,
    /// Longest wait for one attempt of one request.
    pub attempt_timeout: Duration,
}

impl Default for AwsOptions {
    fn default() -> Self {
        Self {
            endpoint: None,
            region: None,
            profile: None,
            max_attempts: 5,
            attempt_timeout: Duration::from_secs(60),
        }
    }
}
