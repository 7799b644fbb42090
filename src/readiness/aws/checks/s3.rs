//! S3: the evidence bucket is write-once (versioned, Object Lock
//! COMPLIANCE with a default retention, encrypted, not public), and the
//! buckets holding evidence or logs record who reads them.

use super::shared::{bucket_locks, trails};
use crate::readiness::Status;
use crate::readiness::aws::context::{failed, s3};
use crate::readiness::aws::runner::{At, Findings, Stop};

/// `aws.s3.evidence_bucket`
pub(crate) async fn evidence_bucket(at: At<'_>) -> Findings {
    use aws_sdk_s3::error::ProvideErrorMetadata as _;
    let Some(bucket) = at.ctx.scope.evidence_bucket.clone() else {
        return Ok(vec![at.finding(
            "-",
            Status::Skipped,
            "no evidence bucket given (--evidence-bucket, or an s3:// store)",
        )]);
    };
    let client = s3(at.ctx, &at.ctx.home);
    let (mut ok, mut missing) = bucket_locks(&client, &bucket)
        .await
        .map_err(|e| Stop::unknown_on(&bucket, e))?;
    match client
        .get_object_lock_configuration()
        .bucket(&bucket)
        .send()
        .await
    {
        Ok(l) => {
            let retention = l
                .object_lock_configuration()
                .and_then(|c| c.rule())
                .and_then(|r| r.default_retention());
            match retention {
                Some(r)
                    if r.mode()
                        == Some(&aws_sdk_s3::types::ObjectLockRetentionMode::Compliance) =>
                {
                    ok.push(format!(
                        "COMPLIANCE default retention of {}",
                        r.years()
                            .map(|y| format!("{y} years"))
                            .or_else(|| r.days().map(|d| format!("{d} days")))
                            .unwrap_or_else(|| "?".into())
                    ));
                }
                Some(_) => missing.push("the default retention is not in COMPLIANCE mode".into()),
                None => missing.push("no default retention".into()),
            }
        }
        // Already reported as Object Lock off.
        Err(e) if e.code() == Some("ObjectLockConfigurationNotFoundError") => {}
        Err(e) => {
            return Err(Stop::unknown_on(
                &bucket,
                failed("s3:GetObjectLockConfiguration", &e),
            ));
        }
    }
    match client.get_bucket_encryption().bucket(&bucket).send().await {
        Ok(e)
            if e.server_side_encryption_configuration()
                .is_some_and(|c| !c.rules().is_empty()) =>
        {
            ok.push("default encryption on".into());
        }
        Ok(_) => missing.push("no default encryption".into()),
        Err(e) if e.code() == Some("ServerSideEncryptionConfigurationNotFoundError") => {
            missing.push("no default encryption".into());
        }
        Err(e) => {
            return Err(Stop::unknown_on(
                &bucket,
                failed("s3:GetBucketEncryption", &e),
            ));
        }
    }
    Ok(vec![if missing.is_empty() {
        at.finding(&bucket, Status::Pass, ok.join(", "))
    } else {
        at.finding(&bucket, Status::Fail, missing.join(", "))
    }])
}

/// `aws.s3.access_logging`
pub(crate) async fn access_logging(at: At<'_>) -> Findings {
    let list = trails(at.ctx).await?;
    let mut buckets: Vec<String> = list
        .iter()
        .filter_map(|t| t.s3_bucket_name().map(str::to_owned))
        .chain(at.ctx.scope.evidence_bucket.clone())
        .collect();
    buckets.sort_unstable();
    buckets.dedup();
    if buckets.is_empty() {
        return Ok(vec![at.finding(
            "-",
            Status::Skipped,
            "no trail bucket and no evidence bucket",
        )]);
    }
    let client = s3(at.ctx, &at.ctx.home);
    let mut out = Vec::new();
    for b in &buckets {
        out.push(match client.get_bucket_logging().bucket(b).send().await {
            Ok(l) => match l.logging_enabled() {
                Some(on) => at.finding(
                    b,
                    Status::Pass,
                    format!("access logs go to {}", on.target_bucket()),
                ),
                None => at.finding(b, Status::Fail, "server access logging is off"),
            },
            Err(e) => at.finding(b, Status::Error, failed("s3:GetBucketLogging", &e)),
        });
    }
    Ok(out)
}
