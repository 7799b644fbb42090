//! CloudTrail: a multi-region trail that records management events, is
//! logging and delivering, with log file validation, and a bucket that
//! keeps its files (locked, not public, not expired too soon).

use super::shared::{bucket_locks, trails};
use crate::readiness::Status;
use crate::readiness::aws::context::{failed, s3};
use crate::readiness::aws::runner::{At, Findings, Stop, call_failed};

/// Whether the trail records management events, read and write.
async fn records_management(
    ct: &aws_sdk_cloudtrail::Client,
    arn: &str,
) -> Result<(bool, String), Stop> {
    use aws_sdk_cloudtrail::types::ReadWriteType;
    let sel = ct
        .get_event_selectors()
        .trail_name(arn)
        .send()
        .await
        .map_err(call_failed("cloudtrail:GetEventSelectors"))?;
    let basic = sel.event_selectors();
    let advanced = sel.advanced_event_selectors();
    if basic.is_empty() && advanced.is_empty() {
        // A trail without selectors keeps CloudTrail's default: all management events.
        return Ok((true, "default selectors (all management events)".into()));
    }
    let by_basic = basic.iter().any(|s| {
        s.include_management_events().unwrap_or(true)
            && s.read_write_type().is_none_or(|t| *t == ReadWriteType::All)
    });
    let by_advanced = advanced.iter().any(|a| {
        let fields = a.field_selectors();
        let management = fields
            .iter()
            .any(|f| f.field() == "eventCategory" && f.equals().iter().any(|v| v == "Management"));
        // A readOnly filter keeps only reads or only writes.
        management && !fields.iter().any(|f| f.field() == "readOnly")
    });
    Ok((
        by_basic || by_advanced,
        if by_basic || by_advanced {
            "management events, read and write".into()
        } else {
            "no selector records all management events".into()
        },
    ))
}

/// `aws.cloudtrail.multi_region`
pub(crate) async fn multi_region(at: At<'_>) -> Findings {
    let ctx = at.ctx;
    let list = trails(ctx).await?;
    let ct = aws_sdk_cloudtrail::Client::new(&ctx.conf(&ctx.home));
    let mut seen = Vec::new();
    for t in &list {
        let name = t.name().unwrap_or("?");
        let Some(arn) = t.trail_arn() else { continue };
        if !t.is_multi_region_trail().unwrap_or(false) {
            seen.push(format!("{name}: single-region"));
            continue;
        }
        let logging = ct
            .get_trail_status()
            .name(arn)
            .send()
            .await
            .map_err(call_failed("cloudtrail:GetTrailStatus"))?
            .is_logging()
            .unwrap_or(false);
        let (management, how) = records_management(&ct, arn).await?;
        if logging && management {
            return Ok(vec![at.finding(
                "-",
                Status::Pass,
                format!("trail {name}: multi-region, logging, {how}"),
            )]);
        }
        seen.push(format!(
            "{name}: multi-region, {}, {how}",
            if logging { "logging" } else { "not logging" }
        ));
    }
    let evidence = if seen.is_empty() {
        "no trail".to_owned()
    } else {
        seen.join("; ")
    };
    Ok(vec![at.finding("-", Status::Fail, evidence)])
}

/// The trails, or the FAIL that there is none.
async fn some_trails(at: At<'_>) -> Result<Vec<aws_sdk_cloudtrail::types::Trail>, Stop> {
    let list = trails(at.ctx).await?;
    if list.is_empty() {
        return Err(Stop::Findings(vec![at.finding(
            "-",
            Status::Fail,
            "no trail",
        )]));
    }
    Ok(list)
}

/// `aws.cloudtrail.log_file_validation`
pub(crate) async fn log_file_validation(at: At<'_>) -> Findings {
    let list = some_trails(at).await?;
    Ok(list
        .iter()
        .map(|t| {
            let name = t.name().unwrap_or("?");
            let on = t.log_file_validation_enabled().unwrap_or(false);
            at.in_region(t.home_region().unwrap_or(&at.ctx.home))
                .finding(
                    name,
                    if on { Status::Pass } else { Status::Fail },
                    format!(
                        "trail {name}: log file validation {}",
                        if on { "on" } else { "off" }
                    ),
                )
        })
        .collect())
}

/// `aws.cloudtrail.delivering`
pub(crate) async fn delivering(at: At<'_>) -> Findings {
    let ctx = at.ctx;
    let list = some_trails(at).await?;
    let ct = aws_sdk_cloudtrail::Client::new(&ctx.conf(&ctx.home));
    let mut out = Vec::new();
    for t in &list {
        let name = t.name().unwrap_or("?");
        let Some(arn) = t.trail_arn() else { continue };
        let here = at.in_region(t.home_region().unwrap_or(&ctx.home));
        let st = match ct.get_trail_status().name(arn).send().await {
            Ok(s) => s,
            Err(e) => {
                out.push(here.finding(
                    name,
                    Status::Error,
                    failed("cloudtrail:GetTrailStatus", &e),
                ));
                continue;
            }
        };
        let last = st
            .latest_delivery_time()
            .and_then(|t| time::OffsetDateTime::from_unix_timestamp(t.secs()).ok());
        out.push(
            match (st.latest_delivery_error().filter(|e| !e.is_empty()), last) {
                (Some(err), _) => {
                    here.finding(name, Status::Fail, format!("delivery error: {err}"))
                }
                (None, None) => here.finding(name, Status::Fail, "no log file delivered yet"),
                (None, Some(when)) if ctx.now - when > time::Duration::days(1) => here.finding(
                    name,
                    Status::Fail,
                    format!("last delivery {} ago", humantime(ctx.now - when)),
                ),
                (None, Some(when)) => here.finding(
                    name,
                    Status::Pass,
                    format!("last delivery {} ago, no error", humantime(ctx.now - when)),
                ),
            },
        );
    }
    Ok(out)
}

fn humantime(d: time::Duration) -> String {
    let m = d.whole_minutes().max(0);
    if m < 120 {
        format!("{m} min")
    } else if m < 48 * 60 {
        format!("{} h", m / 60)
    } else {
        format!("{} days", m / 1440)
    }
}

/// The buckets the trails deliver to, each once; or the FAIL that there is
/// none to look at.
async fn trail_buckets(at: At<'_>) -> Result<Vec<String>, Stop> {
    let list = trails(at.ctx).await?;
    let mut buckets: Vec<String> = list
        .iter()
        .filter_map(|t| t.s3_bucket_name().map(str::to_owned))
        .collect();
    buckets.sort_unstable();
    buckets.dedup();
    if buckets.is_empty() {
        return Err(Stop::Findings(vec![at.finding(
            "-",
            Status::Fail,
            "no trail delivers to a bucket",
        )]));
    }
    Ok(buckets)
}

/// `aws.cloudtrail.bucket_tamper_resistant`
pub(crate) async fn bucket_tamper_resistant(at: At<'_>) -> Findings {
    let buckets = trail_buckets(at).await?;
    let client = s3(at.ctx, &at.ctx.home);
    let mut out = Vec::new();
    for b in &buckets {
        out.push(match bucket_locks(&client, b).await {
            Ok((ok, missing)) if missing.is_empty() => at.finding(b, Status::Pass, ok.join(", ")),
            Ok((_, missing)) => at.finding(b, Status::Fail, missing.join(", ")),
            Err(e) => at.finding(b, Status::Error, e),
        });
    }
    Ok(out)
}

/// The lifecycle rules of `bucket` that expire objects (or their old
/// versions) sooner than `min` days, in words.
async fn short_expiry(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    min: i32,
) -> Result<Vec<String>, String> {
    use aws_sdk_s3::error::ProvideErrorMetadata as _;
    let rules = match client
        .get_bucket_lifecycle_configuration()
        .bucket(bucket)
        .send()
        .await
    {
        Ok(l) => l.rules().to_vec(),
        Err(e) if e.code() == Some("NoSuchLifecycleConfiguration") => Vec::new(),
        Err(e) => return Err(failed("s3:GetBucketLifecycleConfiguration", &e)),
    };
    Ok(rules
        .iter()
        .filter(|r| r.status() == &aws_sdk_s3::types::ExpirationStatus::Enabled)
        .filter_map(|r| {
            let current = r.expiration().and_then(|e| e.days()).filter(|d| *d < min);
            let older = r
                .noncurrent_version_expiration()
                .and_then(|e| e.noncurrent_days())
                .filter(|d| *d < min);
            current
                .map(|d| {
                    format!(
                        "rule {} expires objects after {d} days",
                        r.id().unwrap_or("?")
                    )
                })
                .or_else(|| {
                    older.map(|d| {
                        format!(
                            "rule {} expires old versions after {d} days",
                            r.id().unwrap_or("?")
                        )
                    })
                })
        })
        .collect())
}

/// `aws.cloudtrail.retention`
pub(crate) async fn retention(at: At<'_>) -> Findings {
    let min = i32::try_from(at.def.param_u64("min_days").unwrap_or(365)).unwrap_or(i32::MAX);
    let buckets = trail_buckets(at).await?;
    let client = s3(at.ctx, &at.ctx.home);
    let mut out = Vec::new();
    for b in &buckets {
        out.push(match short_expiry(&client, b, min).await {
            Err(e) => at.finding(b, Status::Error, e),
            Ok(short) if short.is_empty() => at.finding(
                b,
                Status::Pass,
                format!("no lifecycle rule expires log files sooner than {min} days"),
            ),
            Ok(short) => at.finding(b, Status::Fail, short.join("; ")),
        });
    }
    Ok(out)
}
