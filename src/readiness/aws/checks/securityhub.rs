//! Security Hub: enabled in every audited region.

use crate::readiness::Status;
use crate::readiness::aws::context::failed;
use crate::readiness::aws::runner::{At, Findings, Stop};

/// `aws.securityhub.enabled`
pub(crate) async fn enabled(at: At<'_>) -> Findings {
    use aws_sdk_securityhub::error::ProvideErrorMetadata as _;
    let sh = aws_sdk_securityhub::Client::new(&at.ctx.conf(at.region));
    match sh.describe_hub().send().await {
        Ok(h) => Ok(vec![at.finding(
            "-",
            Status::Pass,
            format!("enabled ({})", h.hub_arn().unwrap_or("hub")),
        )]),
        // What the service answers for an account that is not subscribed.
        Err(e)
            if matches!(
                e.code(),
                Some("InvalidAccessException" | "ResourceNotFoundException")
            ) =>
        {
            Ok(vec![at.finding("-", Status::Fail, "not enabled")])
        }
        Err(e) => Err(Stop::unknown(failed("securityhub:DescribeHub", &e))),
    }
}
