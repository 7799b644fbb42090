//! EBS: encryption by default with a customer managed key, the EBS direct
//! APIs reachable, and headroom under the snapshot quota.

use aws_sdk_ec2::types::Filter;

use crate::readiness::Status;
use crate::readiness::aws::context::failed;
use crate::readiness::aws::runner::{At, Findings, Stop, call_failed};

/// `aws.ebs.default_encryption`
pub(crate) async fn default_encryption(at: At<'_>) -> Findings {
    let ec2 = aws_sdk_ec2::Client::new(&at.ctx.conf(at.region));
    let on = ec2
        .get_ebs_encryption_by_default()
        .send()
        .await
        .map_err(call_failed("ec2:GetEbsEncryptionByDefault"))?
        .ebs_encryption_by_default()
        .unwrap_or(false);
    if !on {
        return Ok(vec![at.finding(
            "-",
            Status::Fail,
            "EBS encryption by default is off",
        )]);
    }
    let k = ec2
        .get_ebs_default_kms_key_id()
        .send()
        .await
        .map_err(call_failed("ec2:GetEbsDefaultKmsKeyId"))?;
    let key = k.kms_key_id().unwrap_or("alias/aws/ebs");
    Ok(vec![if key.ends_with("alias/aws/ebs") {
        at.finding(
            "-",
            Status::Fail,
            "on, with the AWS managed key alias/aws/ebs (cannot be shared with the response account)",
        )
    } else {
        at.finding("-", Status::Pass, format!("on, with {key}"))
    }])
}

/// A snapshot id no account holds: EBS direct answers it with "not found"
/// when the API is reachable and allowed.
const PROBE_SNAPSHOT: &str = "snap-0000000000000000f";

/// `aws.ebs.direct_reachable`: the one check whose verdict is the denial
/// itself, so it reads the error's code rather than making it ERROR.
pub(crate) async fn direct_reachable(at: At<'_>) -> Findings {
    use aws_sdk_ebs::error::ProvideErrorMetadata as _;
    let ebs = aws_sdk_ebs::Client::new(&at.ctx.conf(at.region));
    let (status, evidence) = match ebs
        .list_snapshot_blocks()
        .snapshot_id(PROBE_SNAPSHOT)
        .send()
        .await
    {
        Ok(_) => (Status::Pass, "ebs:ListSnapshotBlocks answered".into()),
        Err(e)
            if matches!(
                e.code(),
                Some("ResourceNotFoundException" | "ValidationException")
            ) =>
        {
            (
                Status::Pass,
                format!(
                    "ebs:ListSnapshotBlocks answered ({} for a probe snapshot)",
                    e.code().unwrap_or("")
                ),
            )
        }
        Err(e) if e.code().is_some_and(|c| c.starts_with("AccessDenied")) => {
            (Status::Fail, failed("ebs:ListSnapshotBlocks", &e))
        }
        Err(e) => (Status::Error, failed("ebs:ListSnapshotBlocks", &e)),
    };
    Ok(vec![at.finding("-", status, evidence)])
}

/// Service Quotas' code for the EBS snapshots an account may hold in a region.
const SNAPSHOT_QUOTA: (&str, &str) = ("ebs", "L-309BACF6");

/// The region's snapshot quota: the applied value, else AWS's default.
async fn snapshot_quota_value(sq: &aws_sdk_servicequotas::Client) -> Result<Option<f64>, Stop> {
    let (service, quota) = SNAPSHOT_QUOTA;
    match sq
        .get_service_quota()
        .service_code(service)
        .quota_code(quota)
        .send()
        .await
    {
        Ok(q) => Ok(q.quota().and_then(|q| q.value())),
        Err(applied) => match sq
            .get_aws_default_service_quota()
            .service_code(service)
            .quota_code(quota)
            .send()
            .await
        {
            Ok(q) => Ok(q.quota().and_then(|q| q.value())),
            Err(e) => Err(Stop::unknown(format!(
                "{}; {}",
                failed("servicequotas:GetServiceQuota", &applied),
                failed("servicequotas:GetAWSDefaultServiceQuota", &e)
            ))),
        },
    }
}

/// `aws.ebs.snapshot_quota`
pub(crate) async fn snapshot_quota(at: At<'_>) -> Findings {
    let conf = at.ctx.conf(at.region);
    let sq = aws_sdk_servicequotas::Client::new(&conf);
    let Some(quota) = snapshot_quota_value(&sq).await?.filter(|q| *q > 0.0) else {
        let (service, quota) = SNAPSHOT_QUOTA;
        return Err(Stop::unknown(format!(
            "Service Quotas gave no value for {service} {quota}"
        )));
    };
    let ec2 = aws_sdk_ec2::Client::new(&conf);
    let mut count = 0usize;
    let mut pages = ec2
        .describe_snapshots()
        .filters(
            Filter::builder()
                .name("owner-id")
                .values(&at.ctx.account)
                .build(),
        )
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        count += page
            .map_err(call_failed("ec2:DescribeSnapshots"))?
            .snapshots()
            .len();
    }
    let min_free = at.def.param_u64("min_free_percent").unwrap_or(20) as f64;
    let free = (quota - count as f64) * 100.0 / quota;
    let evidence = format!("{count} snapshots of a quota of {quota:.0} ({free:.1}% free)");
    Ok(vec![at.finding(
        "-",
        if free >= min_free {
            Status::Pass
        } else {
            Status::Fail
        },
        evidence,
    )])
}
