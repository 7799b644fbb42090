//! One error for an AWS call that failed, whichever collector or response
//! made it: what was asked ([`ApiError::op`]), of what
//! ([`ApiError::resource`]), the SDK's answer in one shortened line, and
//! what kind of failure the service's error code says it was, so a caller
//! can act on a denial or a missing resource without reading the text.
//!
//! The SDK has already retried what it could when one of these is made:
//! throttling, 5xx and lost connections with backoff, never a denial (see
//! [`super::sdk_config`]). A [`ApiErrorKind::Throttled`] error therefore
//! means the retries ran out.

use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};

/// What kind of failure an AWS error code names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiErrorKind {
    /// The service refused the rate of calls.
    Throttled,
    /// The credentials are refused, expired, or lack a permission.
    Denied,
    /// The resource named does not exist (or not in this account or region).
    NotFound,
    /// Anything else: a bad request, a 5xx, a lost connection, a timeout,
    /// an answer custody cannot use.
    Other,
}

/// Codes the services use for throttling. EC2 says `RequestLimitExceeded`,
/// S3 `SlowDown`, the JSON services `ThrottlingException`; a few others
/// have their own.
const THROTTLED: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottled",
    "RequestThrottledException",
    "RequestLimitExceeded",
    "TooManyRequestsException",
    "SlowDown",
    "EC2ThrottledException",
    "BandwidthLimitExceeded",
    "ProvisionedThroughputExceededException",
    "PriorRequestNotComplete",
];

/// Codes for refused, unknown or expired credentials and missing permissions.
/// Codes starting `AccessDenied` (S3, IAM, the JSON services) count too.
const DENIED: &[&str] = &[
    "UnauthorizedOperation",
    "UnauthorizedAccess",
    "UnauthorizedException",
    "UnrecognizedClientException",
    "InvalidClientTokenId",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "AuthFailure",
    "ExpiredToken",
    "ExpiredTokenException",
    "RequestExpired",
    "MissingAuthenticationToken",
    "IncompleteSignature",
    "OptInRequired",
];

impl ApiErrorKind {
    /// The kind an AWS error code names. Not-found codes have many shapes
    /// (`InvalidInstanceID.NotFound`, `ResourceNotFoundException`,
    /// `NoSuchKey`), so they are recognised by their parts.
    pub fn of_code(code: &str) -> Self {
        if THROTTLED.contains(&code) {
            Self::Throttled
        } else if code.starts_with("AccessDenied") || DENIED.contains(&code) {
            Self::Denied
        } else if code.contains("NotFound") || code.starts_with("NoSuch") {
            Self::NotFound
        } else {
            Self::Other
        }
    }
}

/// An AWS call that failed: `cannot {op} {resource}: {message}`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot {op} {resource}: {message}")]
pub struct ApiError {
    /// What was asked, as a verb phrase: "describe", "read a block of".
    pub op: &'static str,
    /// The instance, volume, snapshot, key or group it was asked of.
    pub resource: String,
    pub kind: ApiErrorKind,
    /// The SDK's error and its causes on one shortened line (a service
    /// error may carry a whole response body), or what was wrong with the
    /// answer.
    pub message: String,
}

impl ApiError {
    /// An SDK call that failed, classified by the service's error code. A
    /// failure with no code (a timeout, a lost connection, a request that
    /// could not be built) is [`ApiErrorKind::Other`].
    pub fn sdk<E, R>(op: &'static str, resource: &str, e: SdkError<E, R>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug + 'static,
    {
        Self {
            op,
            resource: resource.to_owned(),
            kind: e.code().map_or(ApiErrorKind::Other, ApiErrorKind::of_code),
            message: super::brief(&e),
        }
    }

    /// A failure that is not the service's: an answer without a field
    /// custody needs, a request that could not be prepared.
    pub fn other(op: &'static str, resource: &str, message: impl Into<String>) -> Self {
        Self {
            op,
            resource: resource.to_owned(),
            kind: ApiErrorKind::Other,
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_ec2::error::ErrorMetadata;
    use aws_sdk_ec2::operation::describe_instances::DescribeInstancesError;
    use aws_sdk_s3::config::http::HttpResponse;
    use aws_sdk_s3::primitives::SdkBody;

    #[test]
    fn codes_are_classified() {
        use ApiErrorKind::*;
        for (code, kind) in [
            ("Throttling", Throttled),
            ("ThrottlingException", Throttled),
            ("RequestLimitExceeded", Throttled),
            ("TooManyRequestsException", Throttled),
            ("SlowDown", Throttled),
            ("RequestThrottled", Throttled),
            ("AccessDenied", Denied),
            ("AccessDeniedException", Denied),
            ("UnauthorizedOperation", Denied),
            ("UnrecognizedClientException", Denied),
            ("InvalidClientTokenId", Denied),
            ("AuthFailure", Denied),
            ("ExpiredToken", Denied),
            ("InvalidInstanceID.NotFound", NotFound),
            ("InvalidSnapshot.NotFound", NotFound),
            ("InvalidVolume.NotFound", NotFound),
            ("ResourceNotFoundException", NotFound),
            ("NoSuchKey", NotFound),
            ("NoSuchBucket", NotFound),
            ("InvalidInstanceID.Malformed", Other),
            ("ValidationException", Other),
            ("InternalError", Other),
            ("", Other),
        ] {
            assert_eq!(ApiErrorKind::of_code(code), kind, "{code}");
        }
    }

    /// A service error as the EC2 client returns it, with this code.
    fn service_error(code: &str) -> SdkError<DescribeInstancesError, HttpResponse> {
        let meta = ErrorMetadata::builder()
            .code(code)
            .message("from the service")
            .build();
        let status = 400.try_into().expect("a status");
        SdkError::service_error(
            DescribeInstancesError::generic(meta),
            HttpResponse::new(status, SdkBody::empty()),
        )
    }

    #[test]
    fn sdk_errors_are_classified_by_their_code_and_keep_it_in_the_message() {
        for (code, kind) in [
            ("RequestLimitExceeded", ApiErrorKind::Throttled),
            ("UnauthorizedOperation", ApiErrorKind::Denied),
            ("InvalidInstanceID.NotFound", ApiErrorKind::NotFound),
            ("InvalidParameterValue", ApiErrorKind::Other),
        ] {
            let e = ApiError::sdk("describe", "i-0abc", service_error(code));
            assert_eq!(e.kind, kind, "{code}");
            let text = e.to_string();
            assert!(text.starts_with("cannot describe i-0abc: "), "{text}");
            assert!(text.contains(code), "{text}");
        }
    }

    #[test]
    fn sdk_errors_without_a_code_are_other() {
        let e = ApiError::sdk(
            "describe",
            "i-0abc",
            SdkError::<DescribeInstancesError, HttpResponse>::timeout_error("too slow"),
        );
        assert_eq!(e.kind, ApiErrorKind::Other);
        let e = ApiError::other("snapshot", "vol-1", "no snapshot id in the answer");
        assert_eq!(e.kind, ApiErrorKind::Other);
        assert_eq!(
            e.to_string(),
            "cannot snapshot vol-1: no snapshot id in the answer"
        );
    }

    #[test]
    fn a_long_sdk_message_is_shortened() {
        let long = "x".repeat(2000);
        let e = ApiError::sdk("describe", "i-0abc", service_error(&long));
        assert!(e.message.chars().count() <= 301, "{}", e.message.len());
    }
}
