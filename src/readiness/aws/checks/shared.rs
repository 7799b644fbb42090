//! Reads that checks of several services share: the trail list (the
//! CloudTrail checks and S3's access logging), a bucket's locks (the trail
//! bucket and the evidence bucket), the running instances (EC2's and SSM's).

use aws_sdk_ec2::types::Filter;

use crate::readiness::aws::context::{Ctx, failed};
use crate::readiness::aws::runner::{Stop, call_failed};

/// The trails visible from the home region (multi-region trails appear in
/// every region; each is listed once).
pub(crate) async fn trails(ctx: &Ctx) -> Result<Vec<aws_sdk_cloudtrail::types::Trail>, Stop> {
    let ct = aws_sdk_cloudtrail::Client::new(&ctx.conf(&ctx.home));
    let out = ct
        .describe_trails()
        .include_shadow_trails(false)
        .send()
        .await
        .map_err(call_failed("cloudtrail:DescribeTrails"))?;
    Ok(out.trail_list().to_vec())
}

/// Versioning, Object Lock and the public access block of one bucket:
/// what holds and what is missing.
pub(crate) async fn bucket_locks(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
) -> Result<(Vec<String>, Vec<String>), String> {
    use aws_sdk_s3::error::ProvideErrorMetadata as _;
    let mut ok = Vec::new();
    let mut missing = Vec::new();
    let v = s3
        .get_bucket_versioning()
        .bucket(bucket)
        .send()
        .await
        .map_err(|e| failed("s3:GetBucketVersioning", &e))?;
    if v.status() == Some(&aws_sdk_s3::types::BucketVersioningStatus::Enabled) {
        ok.push("versioning on".to_owned());
    } else {
        missing.push("versioning is off".to_owned());
    }
    match s3
        .get_object_lock_configuration()
        .bucket(bucket)
        .send()
        .await
    {
        Ok(l) => {
            let on = l
                .object_lock_configuration()
                .and_then(|c| c.object_lock_enabled())
                == Some(&aws_sdk_s3::types::ObjectLockEnabled::Enabled);
            if on {
                ok.push("Object Lock on".to_owned());
            } else {
                missing.push("Object Lock is off".to_owned());
            }
        }
        Err(e) if e.code() == Some("ObjectLockConfigurationNotFoundError") => {
            missing.push("Object Lock is off".to_owned());
        }
        Err(e) => return Err(failed("s3:GetObjectLockConfiguration", &e)),
    }
    match s3.get_public_access_block().bucket(bucket).send().await {
        Ok(p) => {
            let all = p.public_access_block_configuration().is_some_and(|c| {
                c.block_public_acls().unwrap_or(false)
                    && c.ignore_public_acls().unwrap_or(false)
                    && c.block_public_policy().unwrap_or(false)
                    && c.restrict_public_buckets().unwrap_or(false)
            });
            if all {
                ok.push("public access blocked".to_owned());
            } else {
                missing.push("not every Block Public Access setting is on".to_owned());
            }
        }
        Err(e) if e.code() == Some("NoSuchPublicAccessBlockConfiguration") => {
            missing.push("no Block Public Access configuration".to_owned());
        }
        Err(e) => return Err(failed("s3:GetPublicAccessBlock", &e)),
    }
    Ok((ok, missing))
}

/// The running instances of a region.
pub(crate) async fn running(
    ctx: &Ctx,
    region: &str,
) -> Result<Vec<aws_sdk_ec2::types::Instance>, Stop> {
    let ec2 = aws_sdk_ec2::Client::new(&ctx.conf(region));
    let mut out = Vec::new();
    let mut pages = ec2
        .describe_instances()
        .filters(
            Filter::builder()
                .name("instance-state-name")
                .values("running")
                .build(),
        )
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(call_failed("ec2:DescribeInstances"))?;
        for r in page.reservations() {
            out.extend(r.instances().iter().cloned());
        }
    }
    Ok(out)
}

/// The ids of the region's VPCs, as ec2:DescribeVpcs lists them.
pub(crate) async fn vpc_ids(ec2: &aws_sdk_ec2::Client) -> Result<Vec<String>, Stop> {
    Ok(ec2
        .describe_vpcs()
        .send()
        .await
        .map_err(call_failed("ec2:DescribeVpcs"))?
        .vpcs()
        .iter()
        .filter_map(|v| v.vpc_id().map(str::to_owned))
        .collect())
}
