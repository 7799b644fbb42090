//! [`Aws`], the one factory of AWS clients, and the settings it gives
//! every client: the standard credential chain, the endpoint, retries and
//! timeouts.

use std::time::Duration;

use aws_config::SdkConfig;

use super::AwsOptions;

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
    if let Some(r) = &opts.region {
        loader = loader.region(aws_config::Region::new(r.clone()));
    }
    if let Some(p) = &opts.profile {
        loader = loader.profile_name(p);
    }
    loader.load().await
}

/// No credentials anywhere in the chain, in one line: what was tried and
/// how to give some.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CredentialsError {
    #[error(
        "no AWS credentials: tried the environment (AWS_ACCESS_KEY_ID), the profile ({profile}: ~/.aws/credentials and ~/.aws/config, SSO included), web identity, and the ECS and EC2 instance roles; give a profile with --profile NAME (after `aws configure` or `aws sso login`) or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
    )]
    NotFound { profile: String },
    #[error("the AWS credentials of {source_name} could not be loaded: {message}")]
    Unusable {
        source_name: String,
        message: String,
    },
}

/// The one factory of AWS clients. Cheap to clone; every client it makes
/// shares its settings.
#[derive(Debug, Clone)]
pub struct Aws {
    conf: SdkConfig,
    /// Emulators and most S3-compatible stores serve buckets by path.
    path_style: bool,
}

impl Aws {
    /// Loads the shared settings and checks, once, that the credential chain
    /// yields credentials, so a missing one is one clear line instead of an
    /// SDK error on the first request.
    pub async fn new(opts: &AwsOptions) -> Result<Self, CredentialsError> {
        let aws = Self::unchecked(opts).await;
        aws.check_credentials(opts).await?;
        Ok(aws)
    }

    /// The factory without the credential check (tests of the settings).
    pub async fn unchecked(opts: &AwsOptions) -> Self {
        Self {
            conf: sdk_config(opts).await,
            path_style: opts.endpoint.is_some() || std::env::var_os("AWS_ENDPOINT_URL").is_some(),
        }
    }

    async fn check_credentials(&self, opts: &AwsOptions) -> Result<(), CredentialsError> {
        use aws_credential_types::provider::ProvideCredentials as _;
        use aws_credential_types::provider::error::CredentialsError as Sdk;
        let profile = opts
            .profile
            .clone()
            .or_else(|| std::env::var("AWS_PROFILE").ok())
            .unwrap_or_else(|| "default".to_owned());
        let Some(provider) = self.conf.credentials_provider() else {
            return Err(CredentialsError::NotFound { profile });
        };
        match provider.provide_credentials().await {
            Ok(_) => Ok(()),
            Err(Sdk::CredentialsNotLoaded(_)) => Err(CredentialsError::NotFound { profile }),
            Err(e) => Err(CredentialsError::Unusable {
                source_name: format!("profile {profile} or the environment"),
                message: brief(&e),
            }),
        }
    }

    /// The region the clients use, when the chain found one.
    pub fn region(&self) -> Option<String> {
        self.conf.region().map(ToString::to_string)
    }

    /// The same settings in another region (readiness checks, CloudTrail
    /// lookups per region).
    pub fn in_region(&self, region: &str) -> Self {
        Self {
            conf: self
                .conf
                .to_builder()
                .region(aws_config::Region::new(region.to_owned()))
                .build(),
            path_style: self.path_style,
        }
    }

    /// The shared settings, for the SDK clients this factory has no method for.
    pub fn sdk_config(&self) -> &SdkConfig {
        &self.conf
    }

    pub fn ec2(&self) -> aws_sdk_ec2::Client {
        aws_sdk_ec2::Client::new(&self.conf)
    }

    pub fn ebs(&self) -> aws_sdk_ebs::Client {
        aws_sdk_ebs::Client::new(&self.conf)
    }

    pub fn ssm(&self) -> aws_sdk_ssm::Client {
        aws_sdk_ssm::Client::new(&self.conf)
    }

    pub fn autoscaling(&self) -> aws_sdk_autoscaling::Client {
        aws_sdk_autoscaling::Client::new(&self.conf)
    }

    pub fn cloudtrail(&self) -> aws_sdk_cloudtrail::Client {
        aws_sdk_cloudtrail::Client::new(&self.conf)
    }

    pub fn cloudwatch_logs(&self) -> aws_sdk_cloudwatchlogs::Client {
        aws_sdk_cloudwatchlogs::Client::new(&self.conf)
    }

    pub fn lambda(&self) -> aws_sdk_lambda::Client {
        aws_sdk_lambda::Client::new(&self.conf)
    }

    pub fn ecr(&self) -> aws_sdk_ecr::Client {
        aws_sdk_ecr::Client::new(&self.conf)
    }

    pub fn ecs(&self) -> aws_sdk_ecs::Client {
        aws_sdk_ecs::Client::new(&self.conf)
    }

    /// S3 with no checksum beyond what a request requires: presigned URLs
    /// must not carry one (the instance's curl could not match it), and
    /// log reads need none.
    pub fn s3(&self) -> aws_sdk_s3::Client {
        let b = aws_sdk_s3::config::Builder::from(&self.conf)
            .request_checksum_calculation(
                aws_sdk_s3::config::RequestChecksumCalculation::WhenRequired,
            )
            .force_path_style(self.path_style);
        aws_sdk_s3::Client::from_conf(b.build())
    }

    /// S3 for the evidence store: no per-attempt timeout, since one part of
    /// a large upload may take longer than any fixed bound on a slow link;
    /// the store bounds its own waits.
    pub fn s3_store(&self, max_attempts: u32) -> aws_sdk_s3::Client {
        let retry = aws_config::retry::RetryConfig::standard()
            .with_max_attempts(max_attempts.max(1))
            .with_initial_backoff(Duration::from_millis(200))
            .with_max_backoff(Duration::from_secs(10));
        let timeouts = aws_config::timeout::TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(10))
            .build();
        let b = aws_sdk_s3::config::Builder::from(&self.conf)
            .retry_config(retry)
            .timeout_config(timeouts)
            .force_path_style(self.path_style);
        aws_sdk_s3::Client::from_conf(b.build())
    }
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
