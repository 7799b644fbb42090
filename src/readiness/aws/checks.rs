//! One evaluation per AWS check id. Each returns its findings; a failed
//! call becomes an ERROR finding naming the call and the answer.

use aws_sdk_ec2::types::Filter;

use super::{Ctx, failed};
use crate::readiness::catalogue::CheckDef;
use crate::readiness::{Finding, Status};

/// The evaluation of `def`, or `None` when this build has none.
pub async fn run(ctx: &Ctx, def: &CheckDef) -> Option<Vec<Finding>> {
    Some(match def.id.as_str() {
        "aws.cloudtrail.multi_region" => multi_region(ctx, def).await,
        "aws.cloudtrail.log_file_validation" => log_file_validation(ctx, def).await,
        "aws.cloudtrail.bucket_tamper_resistant" => trail_buckets(ctx, def).await,
        "aws.vpc.flow_logs" => per_region(ctx, def, flow_logs).await,
        "aws.guardduty.enabled" => per_region(ctx, def, guardduty).await,
        "aws.securityhub.enabled" => per_region(ctx, def, securityhub).await,
        "aws.config.recorder" => per_region(ctx, def, config_recorder).await,
        "aws.ssm.instances_managed" => per_region(ctx, def, ssm_managed).await,
        "aws.autoscaling.evidence_preserving" => per_region(ctx, def, asg_preserving).await,
        "aws.ec2.imdsv2_required" => per_region(ctx, def, imdsv2).await,
        "aws.ebs.default_encryption" => per_region(ctx, def, ebs_default_encryption).await,
        "aws.kms.keys_enabled" => per_region(ctx, def, volume_keys_enabled).await,
        "aws.iam.forensic_role" => forensic_role(ctx, def).await,
        "aws.iam.forensic_role_trust" => forensic_role_trust(ctx, def).await,
        "aws.s3.evidence_bucket" => evidence_bucket(ctx, def).await,
        "aws.ec2.isolation_group" => per_region(ctx, def, isolation_group).await,
        "aws.cloudtrail.delivering" => delivering(ctx, def).await,
        "aws.cloudtrail.retention" => retention(ctx, def).await,
        "aws.s3.access_logging" => access_logging(ctx, def).await,
        "aws.ebs.direct_reachable" => per_region(ctx, def, ebs_direct).await,
        "aws.ebs.snapshot_quota" => per_region(ctx, def, snapshot_quota).await,
        "aws.iam.forensic_role_permissions" => super::access::role_permissions(ctx, def).await,
        "aws.kms.volume_keys_usable" => {
            per_region(ctx, def, super::access::volume_keys_usable).await
        }
        _ => return None,
    })
}

type RegionCheck =
    for<'a> fn(&'a Ctx, &'a CheckDef, String) -> futures::future::BoxFuture<'a, Vec<Finding>>;

/// Runs `f` for every audited region, together.
async fn per_region(ctx: &Ctx, def: &CheckDef, f: RegionCheck) -> Vec<Finding> {
    futures::future::join_all(ctx.regions.iter().map(|r| f(ctx, def, r.clone())))
        .await
        .into_iter()
        .flatten()
        .collect()
}

fn s3(ctx: &Ctx, region: &str) -> aws_sdk_s3::Client {
    let mut conf = aws_sdk_s3::config::Builder::from(&ctx.conf(region));
    if std::env::var_os("AWS_ENDPOINT_URL").is_some() || ctx.base.endpoint_url().is_some() {
        // Emulators serve buckets by path.
        conf = conf.force_path_style(true);
    }
    aws_sdk_s3::Client::from_conf(conf.build())
}

pub(crate) fn error(
    ctx: &Ctx,
    def: &CheckDef,
    region: &str,
    resource: &str,
    why: String,
) -> Vec<Finding> {
    vec![ctx.finding(def, region, resource, Status::Error, why)]
}

/// The trails visible from the home region (multi-region trails appear in
/// every region; each is listed once).
async fn trails(ctx: &Ctx) -> Result<Vec<aws_sdk_cloudtrail::types::Trail>, String> {
    let ct = aws_sdk_cloudtrail::Client::new(&ctx.conf(&ctx.home));
    let out = ct
        .describe_trails()
        .include_shadow_trails(false)
        .send()
        .await
        .map_err(|e| failed("cloudtrail:DescribeTrails", &e))?;
    Ok(out.trail_list().to_vec())
}

/// Whether the trail records management events, read and write.
async fn records_management(
    ct: &aws_sdk_cloudtrail::Client,
    arn: &str,
) -> Result<(bool, String), String> {
    use aws_sdk_cloudtrail::types::ReadWriteType;
    let sel = ct
        .get_event_selectors()
        .trail_name(arn)
        .send()
        .await
        .map_err(|e| failed("cloudtrail:GetEventSelectors", &e))?;
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

async fn multi_region(ctx: &Ctx, def: &CheckDef) -> Vec<Finding> {
    let list = match trails(ctx).await {
        Ok(l) => l,
        Err(e) => return error(ctx, def, &ctx.home, "-", e),
    };
    let ct = aws_sdk_cloudtrail::Client::new(&ctx.conf(&ctx.home));
    let mut seen = Vec::new();
    for t in &list {
        let name = t.name().unwrap_or("?");
        let Some(arn) = t.trail_arn() else { continue };
        if !t.is_multi_region_trail().unwrap_or(false) {
            seen.push(format!("{name}: single-region"));
            continue;
        }
        let logging = match ct.get_trail_status().name(arn).send().await {
            Ok(s) => s.is_logging().unwrap_or(false),
            Err(e) => {
                return error(
                    ctx,
                    def,
                    &ctx.home,
                    "-",
                    failed("cloudtrail:GetTrailStatus", &e),
                );
            }
        };
        let (management, how) = match records_management(&ct, arn).await {
            Ok(x) => x,
            Err(e) => return error(ctx, def, &ctx.home, "-", e),
        };
        if logging && management {
            return vec![ctx.finding(
                def,
                &ctx.home,
                "-",
                Status::Pass,
                format!("trail {name}: multi-region, logging, {how}"),
            )];
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
    vec![ctx.finding(def, &ctx.home, "-", Status::Fail, evidence)]
}

async fn log_file_validation(ctx: &Ctx, def: &CheckDef) -> Vec<Finding> {
    let list = match trails(ctx).await {
        Ok(l) => l,
        Err(e) => return error(ctx, def, &ctx.home, "-", e),
    };
    if list.is_empty() {
        return vec![ctx.finding(def, &ctx.home, "-", Status::Fail, "no trail")];
    }
    list.iter()
        .map(|t| {
            let name = t.name().unwrap_or("?");
            let on = t.log_file_validation_enabled().unwrap_or(false);
            ctx.finding(
                def,
                t.home_region().unwrap_or(&ctx.home),
                name,
                if on { Status::Pass } else { Status::Fail },
                format!(
                    "trail {name}: log file validation {}",
                    if on { "on" } else { "off" }
                ),
            )
        })
        .collect()
}

/// Versioning, Object Lock and the public access block of one bucket:
/// what holds and what is missing.
async fn bucket_locks(
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

/// The buckets the trails deliver to, each once; or the finding that says
/// why there is none to look at.
async fn trail_buckets_of(ctx: &Ctx, def: &CheckDef) -> Result<Vec<String>, Vec<Finding>> {
    let list = trails(ctx)
        .await
        .map_err(|e| error(ctx, def, &ctx.home, "-", e))?;
    let mut buckets: Vec<String> = list
        .iter()
        .filter_map(|t| t.s3_bucket_name().map(str::to_owned))
        .collect();
    buckets.sort_unstable();
    buckets.dedup();
    if buckets.is_empty() {
        return Err(vec![ctx.finding(
            def,
            &ctx.home,
            "-",
            Status::Fail,
            "no trail delivers to a bucket",
        )]);
    }
    Ok(buckets)
}

/// The KMS keys of the region's encrypted volumes, each once; or the
/// finding that says why there is none to look at.
pub(crate) async fn volume_keys(
    ctx: &Ctx,
    def: &CheckDef,
    region: &str,
) -> Result<Vec<String>, Vec<Finding>> {
    let ec2 = aws_sdk_ec2::Client::new(&ctx.conf(region));
    let mut keys: Vec<String> = Vec::new();
    let mut pages = ec2.describe_volumes().into_paginator().send();
    while let Some(page) = pages.next().await {
        let p =
            page.map_err(|e| error(ctx, def, region, "-", failed("ec2:DescribeVolumes", &e)))?;
        keys.extend(
            p.volumes()
                .iter()
                .filter(|v| v.encrypted().unwrap_or(false))
                .filter_map(|v| v.kms_key_id().map(str::to_owned)),
        );
    }
    keys.sort_unstable();
    keys.dedup();
    if keys.is_empty() {
        return Err(vec![ctx.finding(
            def,
            region,
            "-",
            Status::Pass,
            "no volume is encrypted with a KMS key",
        )]);
    }
    Ok(keys)
}

async fn trail_buckets(ctx: &Ctx, def: &CheckDef) -> Vec<Finding> {
    let buckets = match trail_buckets_of(ctx, def).await {
        Ok(b) => b,
        Err(findings) => return findings,
    };
    let client = s3(ctx, &ctx.home);
    let mut out = Vec::new();
    for b in &buckets {
        out.push(match bucket_locks(&client, b).await {
            Ok((ok, missing)) if missing.is_empty() => {
                ctx.finding(def, &ctx.home, b, Status::Pass, ok.join(", "))
            }
            Ok((_, missing)) => ctx.finding(def, &ctx.home, b, Status::Fail, missing.join(", ")),
            Err(e) => ctx.finding(def, &ctx.home, b, Status::Error, e),
        });
    }
    out
}

async fn evidence_bucket(ctx: &Ctx, def: &CheckDef) -> Vec<Finding> {
    use aws_sdk_s3::error::ProvideErrorMetadata as _;
    let Some(bucket) = ctx.scope.evidence_bucket.clone() else {
        return vec![ctx.finding(
            def,
            &ctx.home,
            "-",
            Status::Skipped,
            "no evidence bucket given (--evidence-bucket, or an s3:// store)",
        )];
    };
    let client = s3(ctx, &ctx.home);
    let (mut ok, mut missing) = match bucket_locks(&client, &bucket).await {
        Ok(x) => x,
        Err(e) => return error(ctx, def, &ctx.home, &bucket, e),
    };
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
            return error(
                ctx,
                def,
                &ctx.home,
                &bucket,
                failed("s3:GetObjectLockConfiguration", &e),
            );
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
            return error(
                ctx,
                def,
                &ctx.home,
                &bucket,
                failed("s3:GetBucketEncryption", &e),
            );
        }
    }
    if missing.is_empty() {
        vec![ctx.finding(def, &ctx.home, &bucket, Status::Pass, ok.join(", "))]
    } else {
        vec![ctx.finding(def, &ctx.home, &bucket, Status::Fail, missing.join(", "))]
    }
}

fn flow_logs<'a>(
    ctx: &'a Ctx,
    def: &'a CheckDef,
    region: String,
) -> futures::future::BoxFuture<'a, Vec<Finding>> {
    Box::pin(async move {
        let ec2 = aws_sdk_ec2::Client::new(&ctx.conf(&region));
        let vpcs = match ec2.describe_vpcs().send().await {
            Ok(v) => v.vpcs().to_vec(),
            Err(e) => return error(ctx, def, &region, "-", failed("ec2:DescribeVpcs", &e)),
        };
        let mut out = Vec::new();
        for v in vpcs {
            let Some(id) = v.vpc_id() else { continue };
            let logs = match ec2
                .describe_flow_logs()
                .filter(Filter::builder().name("resource-id").values(id).build())
                .send()
                .await
            {
                Ok(l) => l.flow_logs().to_vec(),
                Err(e) => {
                    out.push(ctx.finding(
                        def,
                        &region,
                        id,
                        Status::Error,
                        failed("ec2:DescribeFlowLogs", &e),
                    ));
                    continue;
                }
            };
            let all = logs.iter().any(|l| {
                l.traffic_type() == Some(&aws_sdk_ec2::types::TrafficType::All)
                    && l.flow_log_status().is_none_or(|s| s == "ACTIVE")
            });
            let evidence = if all {
                "a flow log captures all traffic".to_owned()
            } else if logs.is_empty() {
                "no flow log".to_owned()
            } else {
                format!(
                    "flow logs capture only {}",
                    logs.iter()
                        .filter_map(|l| l.traffic_type().map(|t| t.as_str().to_owned()))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            };
            out.push(ctx.finding(
                def,
                &region,
                id,
                if all { Status::Pass } else { Status::Fail },
                evidence,
            ));
        }
        out
    })
}

fn guardduty<'a>(
    ctx: &'a Ctx,
    def: &'a CheckDef,
    region: String,
) -> futures::future::BoxFuture<'a, Vec<Finding>> {
    Box::pin(async move {
        let gd = aws_sdk_guardduty::Client::new(&ctx.conf(&region));
        let ids = match gd.list_detectors().send().await {
            Ok(d) => d.detector_ids().to_vec(),
            Err(e) => {
                return error(
                    ctx,
                    def,
                    &region,
                    "-",
                    failed("guardduty:ListDetectors", &e),
                );
            }
        };
        for id in &ids {
            match gd.get_detector().detector_id(id).send().await {
                Ok(d) if d.status() == Some(&aws_sdk_guardduty::types::DetectorStatus::Enabled) => {
                    return vec![ctx.finding(
                        def,
                        &region,
                        "-",
                        Status::Pass,
                        format!("detector {id} enabled"),
                    )];
                }
                Ok(_) => {}
                Err(e) => {
                    return error(ctx, def, &region, "-", failed("guardduty:GetDetector", &e));
                }
            }
        }
        let evidence = if ids.is_empty() {
            "no detector".to_owned()
        } else {
            format!("detectors {} are disabled", ids.join(", "))
        };
        vec![ctx.finding(def, &region, "-", Status::Fail, evidence)]
    })
}

fn securityhub<'a>(
    ctx: &'a Ctx,
    def: &'a CheckDef,
    region: String,
) -> futures::future::BoxFuture<'a, Vec<Finding>> {
    Box::pin(async move {
        use aws_sdk_securityhub::error::ProvideErrorMetadata as _;
        let sh = aws_sdk_securityhub::Client::new(&ctx.conf(&region));
        match sh.describe_hub().send().await {
            Ok(h) => vec![ctx.finding(
                def,
                &region,
                "-",
                Status::Pass,
                format!("enabled ({})", h.hub_arn().unwrap_or("hub")),
            )],
            // What the service answers for an account that is not subscribed.
            Err(e)
                if matches!(
                    e.code(),
                    Some("InvalidAccessException" | "ResourceNotFoundException")
                ) =>
            {
                vec![ctx.finding(def, &region, "-", Status::Fail, "not enabled")]
            }
            Err(e) => error(
                ctx,
                def,
                &region,
                "-",
                failed("securityhub:DescribeHub", &e),
            ),
        }
    })
}

fn config_recorder<'a>(
    ctx: &'a Ctx,
    def: &'a CheckDef,
    region: String,
) -> futures::future::BoxFuture<'a, Vec<Finding>> {
    Box::pin(async move {
        let cfg = aws_sdk_config::Client::new(&ctx.conf(&region));
        let recorders = match cfg.describe_configuration_recorders().send().await {
            Ok(r) => r.configuration_recorders().to_vec(),
            Err(e) => {
                return error(
                    ctx,
                    def,
                    &region,
                    "-",
                    failed("config:DescribeConfigurationRecorders", &e),
                );
            }
        };
        let status = match cfg.describe_configuration_recorder_status().send().await {
            Ok(s) => s.configuration_recorders_status().to_vec(),
            Err(e) => {
                return error(
                    ctx,
                    def,
                    &region,
                    "-",
                    failed("config:DescribeConfigurationRecorderStatus", &e),
                );
            }
        };
        let mut seen = Vec::new();
        for r in &recorders {
            let name = r.name().unwrap_or("default");
            let all = r.recording_group().is_some_and(|g| g.all_supported());
            let recording = status
                .iter()
                .any(|s| s.name() == Some(name) && s.recording());
            if all && recording {
                return vec![ctx.finding(
                    def,
                    &region,
                    "-",
                    Status::Pass,
                    format!("recorder {name} records all supported resources"),
                )];
            }
            seen.push(format!(
                "recorder {name}: {}, {}",
                if all {
                    "all resources"
                } else {
                    "some resource types only"
                },
                if recording { "recording" } else { "stopped" }
            ));
        }
        let evidence = if seen.is_empty() {
            "no configuration recorder".to_owned()
        } else {
            seen.join("; ")
        };
        vec![ctx.finding(def, &region, "-", Status::Fail, evidence)]
    })
}

/// The running instances of a region.
async fn running(ctx: &Ctx, region: &str) -> Result<Vec<aws_sdk_ec2::types::Instance>, String> {
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
        let page = page.map_err(|e| failed("ec2:DescribeInstances", &e))?;
        for r in page.reservations() {
            out.extend(r.instances().iter().cloned());
        }
    }
    Ok(out)
}

fn ssm_managed<'a>(
    ctx: &'a Ctx,
    def: &'a CheckDef,
    region: String,
) -> futures::future::BoxFuture<'a, Vec<Finding>> {
    Box::pin(async move {
        let instances = match running(ctx, &region).await {
            Ok(i) => i,
            Err(e) => return error(ctx, def, &region, "-", e),
        };
        if instances.is_empty() {
            return vec![ctx.finding(def, &region, "-", Status::Pass, "no running instance")];
        }
        let ssm = aws_sdk_ssm::Client::new(&ctx.conf(&region));
        let mut info = Vec::new();
        let mut pages = ssm.describe_instance_information().into_paginator().send();
        while let Some(page) = pages.next().await {
            match page {
                Ok(p) => info.extend(p.instance_information_list().iter().cloned()),
                Err(e) => {
                    let why = failed("ssm:DescribeInstanceInformation", &e);
                    return instances
                        .iter()
                        .filter_map(|i| i.instance_id())
                        .map(|id| ctx.finding(def, &region, id, Status::Error, why.clone()))
                        .collect();
                }
            }
        }
        instances
            .iter()
            .filter_map(|i| i.instance_id())
            .map(|id| {
                let ping = info
                    .iter()
                    .find(|x| x.instance_id() == Some(id))
                    .and_then(|x| x.ping_status().map(|p| p.as_str().to_owned()));
                match ping.as_deref() {
                    Some("Online") => {
                        ctx.finding(def, &region, id, Status::Pass, "managed, Online")
                    }
                    Some(p) => ctx.finding(def, &region, id, Status::Fail, format!("managed, {p}")),
                    None => ctx.finding(def, &region, id, Status::Fail, "not managed by SSM"),
                }
            })
            .collect()
    })
}

fn imdsv2<'a>(
    ctx: &'a Ctx,
    def: &'a CheckDef,
    region: String,
) -> futures::future::BoxFuture<'a, Vec<Finding>> {
    Box::pin(async move {
        let instances = match running(ctx, &region).await {
            Ok(i) => i,
            Err(e) => return error(ctx, def, &region, "-", e),
        };
        if instances.is_empty() {
            return vec![ctx.finding(def, &region, "-", Status::Pass, "no running instance")];
        }
        instances
            .iter()
            .filter_map(|i| Some((i.instance_id()?, i)))
            .map(|(id, i)| {
                let tokens = i
                    .metadata_options()
                    .and_then(|m| m.http_tokens())
                    .map(|t| t.as_str().to_owned())
                    .unwrap_or_else(|| "optional".into());
                if tokens == "required" {
                    ctx.finding(def, &region, id, Status::Pass, "HttpTokens required")
                } else {
                    ctx.finding(
                        def,
                        &region,
                        id,
                        Status::Fail,
                        format!("HttpTokens {tokens}: IMDSv1 answers"),
                    )
                }
            })
            .collect()
    })
}

fn ebs_default_encryption<'a>(
    ctx: &'a Ctx,
    def: &'a CheckDef,
    region: String,
) -> futures::future::BoxFuture<'a, Vec<Finding>> {
    Box::pin(async move {
        let ec2 = aws_sdk_ec2::Client::new(&ctx.conf(&region));
        let on = match ec2.get_ebs_encryption_by_default().send().await {
            Ok(o) => o.ebs_encryption_by_default().unwrap_or(false),
            Err(e) => {
                return error(
                    ctx,
                    def,
                    &region,
                    "-",
                    failed("ec2:GetEbsEncryptionByDefault", &e),
                );
            }
        };
        if !on {
            return vec![ctx.finding(
                def,
                &region,
                "-",
                Status::Fail,
                "EBS encryption by default is off",
            )];
        }
        match ec2.get_ebs_default_kms_key_id().send().await {
            Ok(k) => {
                let key = k.kms_key_id().unwrap_or("alias/aws/ebs");
                if key.ends_with("alias/aws/ebs") {
                    vec![ctx.finding(
                        def,
                        &region,
                        "-",
                        Status::Fail,
                        "on, with the AWS managed key alias/aws/ebs (cannot be shared with the response account)",
                    )]
                } else {
                    vec![ctx.finding(def, &region, "-", Status::Pass, format!("on, with {key}"))]
                }
            }
            Err(e) => error(
                ctx,
                def,
                &region,
                "-",
                failed("ec2:GetEbsDefaultKmsKeyId", &e),
            ),
        }
    })
}

fn volume_keys_enabled<'a>(
    ctx: &'a Ctx,
    def: &'a CheckDef,
    region: String,
) -> futures::future::BoxFuture<'a, Vec<Finding>> {
    Box::pin(async move {
        let keys = match volume_keys(ctx, def, &region).await {
            Ok(k) => k,
            Err(findings) => return findings,
        };
        let kms = aws_sdk_kms::Client::new(&ctx.conf(&region));
        let mut out = Vec::new();
        for key in keys {
            out.push(match kms.describe_key().key_id(&key).send().await {
                Ok(d) => {
                    let state = d
                        .key_metadata()
                        .and_then(|m| m.key_state())
                        .map(|s| s.as_str().to_owned())
                        .unwrap_or_else(|| "unknown".into());
                    if state == "Enabled" {
                        ctx.finding(def, &region, &key, Status::Pass, "Enabled")
                    } else {
                        ctx.finding(
                            def,
                            &region,
                            &key,
                            Status::Fail,
                            format!("{state}: volumes under it cannot be read"),
                        )
                    }
                }
                Err(e) => ctx.finding(
                    def,
                    &region,
                    &key,
                    Status::Error,
                    failed("kms:DescribeKey", &e),
                ),
            });
        }
        out
    })
}

pub(crate) async fn get_role(
    ctx: &Ctx,
    def: &CheckDef,
) -> Result<Option<aws_sdk_iam::types::Role>, String> {
    let iam = aws_sdk_iam::Client::new(&ctx.conf(&ctx.home));
    match iam.get_role().role_name(ctx.role(def)).send().await {
        Ok(r) => Ok(r.role().cloned()),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_no_such_entity_exception()) =>
        {
            Ok(None)
        }
        Err(e) => Err(failed("iam:GetRole", &e)),
    }
}

/// The forensic role, or the finding that says it is missing (FAIL) or
/// could not be read (ERROR): for the checks that look inside it.
pub(crate) async fn required_role(
    ctx: &Ctx,
    def: &CheckDef,
) -> Result<aws_sdk_iam::types::Role, Vec<Finding>> {
    let name = ctx.role(def);
    match get_role(ctx, def).await {
        Ok(Some(r)) => Ok(r),
        Ok(None) => Err(vec![ctx.finding(
            def,
            "global",
            &name,
            Status::Fail,
            format!("no role named {name}"),
        )]),
        Err(e) => Err(error(ctx, def, "global", &name, e)),
    }
}

async fn forensic_role(ctx: &Ctx, def: &CheckDef) -> Vec<Finding> {
    let name = ctx.role(def);
    match get_role(ctx, def).await {
        Ok(Some(r)) => vec![ctx.finding(
            def,
            "global",
            &name,
            Status::Pass,
            format!("{} exists", r.arn()),
        )],
        Ok(None) => vec![ctx.finding(
            def,
            "global",
            &name,
            Status::Fail,
            format!("no role named {name}"),
        )],
        Err(e) => error(ctx, def, "global", &name, e),
    }
}

/// The principals allowed to assume a role, from its trust policy (the
/// document IAM returns URL-encoded; some endpoints send it plain).
pub(crate) fn trusted_principals(document: &str) -> Result<Vec<String>, String> {
    let assume = [
        "sts:AssumeRole",
        "sts:AssumeRoleWithWebIdentity",
        "sts:AssumeRoleWithSAML",
    ];
    Ok(super::policy::parse(document)?
        .into_iter()
        .filter(|s| s.allow)
        .filter(|s| {
            s.actions
                .iter()
                .any(|a| assume.iter().any(|x| super::policy::action_matches(a, x)))
        })
        .flat_map(|s| {
            if s.principals.is_empty() {
                vec!["(no principal)".to_owned()]
            } else {
                s.principals
            }
        })
        .collect())
}

/// Whether `principal` (from a trust policy's `AWS` list) is in `account`.
fn in_account(principal: &str, account: &str) -> bool {
    principal == account || principal.starts_with(&format!("arn:aws:iam::{account}:"))
}

async fn forensic_role_trust(ctx: &Ctx, def: &CheckDef) -> Vec<Finding> {
    let name = ctx.role(def);
    let role = match required_role(ctx, def).await {
        Ok(r) => r,
        Err(findings) => return findings,
    };
    let response = ctx
        .scope
        .response_account
        .clone()
        .unwrap_or_else(|| ctx.account.clone());
    let principals =
        match trusted_principals(role.assume_role_policy_document().unwrap_or_default()) {
            Ok(p) => p,
            Err(e) => return error(ctx, def, "global", &name, e),
        };
    let outside: Vec<&String> = principals
        .iter()
        .filter(|p| !in_account(p, &response))
        .collect();
    if principals.is_empty() {
        vec![ctx.finding(
            def,
            "global",
            &name,
            Status::Fail,
            "no principal may assume it",
        )]
    } else if outside.is_empty() {
        vec![ctx.finding(
            def,
            "global",
            &name,
            Status::Pass,
            format!("assumable only from account {response}"),
        )]
    } else {
        vec![ctx.finding(
            def,
            "global",
            &name,
            Status::Fail,
            format!(
                "assumable from outside account {response}: {}",
                outside.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
            ),
        )]
    }
}

fn isolation_group<'a>(
    ctx: &'a Ctx,
    def: &'a CheckDef,
    region: String,
) -> futures::future::BoxFuture<'a, Vec<Finding>> {
    Box::pin(async move {
        let ec2 = aws_sdk_ec2::Client::new(&ctx.conf(&region));
        let vpcs = match ec2.describe_vpcs().send().await {
            Ok(v) => v.vpcs().to_vec(),
            Err(e) => return error(ctx, def, &region, "-", failed("ec2:DescribeVpcs", &e)),
        };
        let mut out = Vec::new();
        for v in vpcs {
            let Some(id) = v.vpc_id() else { continue };
            let groups = match ec2
                .describe_security_groups()
                .filters(Filter::builder().name("vpc-id").values(id).build())
                .filters(
                    Filter::builder()
                        .name("tag:custody:isolation")
                        .values("true")
                        .build(),
                )
                .send()
                .await
            {
                Ok(g) => g.security_groups().to_vec(),
                Err(e) => {
                    out.push(ctx.finding(
                        def,
                        &region,
                        id,
                        Status::Error,
                        failed("ec2:DescribeSecurityGroups", &e),
                    ));
                    continue;
                }
            };
            let empty = groups
                .iter()
                .find(|g| g.ip_permissions().is_empty() && g.ip_permissions_egress().is_empty());
            out.push(match (empty, groups.first()) {
                (Some(g), _) => ctx.finding(
                    def,
                    &region,
                    id,
                    Status::Pass,
                    format!("{} has no rules", g.group_id().unwrap_or("?")),
                ),
                (None, Some(g)) => ctx.finding(
                    def,
                    &region,
                    id,
                    Status::Fail,
                    format!(
                        "{} is tagged custody:isolation but has rules",
                        g.group_id().unwrap_or("?")
                    ),
                ),
                (None, None) => ctx.finding(
                    def,
                    &region,
                    id,
                    Status::Fail,
                    "no group tagged custody:isolation=true",
                ),
            });
        }
        out
    })
}

fn asg_preserving<'a>(
    ctx: &'a Ctx,
    def: &'a CheckDef,
    region: String,
) -> futures::future::BoxFuture<'a, Vec<Finding>> {
    Box::pin(async move {
        let asg = aws_sdk_autoscaling::Client::new(&ctx.conf(&region));
        let groups = match asg.describe_auto_scaling_groups().send().await {
            Ok(g) => g.auto_scaling_groups().to_vec(),
            Err(e) => {
                return error(
                    ctx,
                    def,
                    &region,
                    "-",
                    failed("autoscaling:DescribeAutoScalingGroups", &e),
                );
            }
        };
        if groups.is_empty() {
            return vec![ctx.finding(def, &region, "-", Status::Pass, "no Auto Scaling group")];
        }
        let mut out = Vec::new();
        for g in groups {
            let name = g.auto_scaling_group_name().unwrap_or("?").to_owned();
            let hooks = match asg
                .describe_lifecycle_hooks()
                .auto_scaling_group_name(&name)
                .send()
                .await
            {
                Ok(h) => h.lifecycle_hooks().to_vec(),
                Err(e) => {
                    out.push(ctx.finding(
                        def,
                        &region,
                        &name,
                        Status::Error,
                        failed("autoscaling:DescribeLifecycleHooks", &e),
                    ));
                    continue;
                }
            };
            let hook = hooks
                .iter()
                .find(|h| h.lifecycle_transition() == Some("autoscaling:EC2_INSTANCE_TERMINATING"));
            let unprotected: Vec<&str> = g
                .instances()
                .iter()
                .filter(|i| !i.protected_from_scale_in().unwrap_or(false))
                .filter_map(|i| i.instance_id())
                .collect();
            out.push(match hook {
                Some(h) => ctx.finding(
                    def,
                    &region,
                    &name,
                    Status::Pass,
                    format!(
                        "termination lifecycle hook {}",
                        h.lifecycle_hook_name().unwrap_or("?")
                    ),
                ),
                None if unprotected.is_empty() => ctx.finding(
                    def,
                    &region,
                    &name,
                    Status::Pass,
                    "every instance is protected from scale-in",
                ),
                None => ctx.finding(
                    def,
                    &region,
                    &name,
                    Status::Fail,
                    format!(
                        "no termination lifecycle hook, and {} not protected from scale-in",
                        unprotected.join(", ")
                    ),
                ),
            });
        }
        out
    })
}

async fn delivering(ctx: &Ctx, def: &CheckDef) -> Vec<Finding> {
    let list = match trails(ctx).await {
        Ok(l) => l,
        Err(e) => return error(ctx, def, &ctx.home, "-", e),
    };
    if list.is_empty() {
        return vec![ctx.finding(def, &ctx.home, "-", Status::Fail, "no trail")];
    }
    let ct = aws_sdk_cloudtrail::Client::new(&ctx.conf(&ctx.home));
    let mut out = Vec::new();
    for t in &list {
        let name = t.name().unwrap_or("?");
        let Some(arn) = t.trail_arn() else { continue };
        let region = t.home_region().unwrap_or(&ctx.home);
        let st = match ct.get_trail_status().name(arn).send().await {
            Ok(s) => s,
            Err(e) => {
                out.push(ctx.finding(
                    def,
                    region,
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
                (Some(err), _) => ctx.finding(
                    def,
                    region,
                    name,
                    Status::Fail,
                    format!("delivery error: {err}"),
                ),
                (None, None) => {
                    ctx.finding(def, region, name, Status::Fail, "no log file delivered yet")
                }
                (None, Some(at)) if ctx.now - at > time::Duration::days(1) => ctx.finding(
                    def,
                    region,
                    name,
                    Status::Fail,
                    format!("last delivery {} ago", humantime(ctx.now - at)),
                ),
                (None, Some(at)) => ctx.finding(
                    def,
                    region,
                    name,
                    Status::Pass,
                    format!("last delivery {} ago, no error", humantime(ctx.now - at)),
                ),
            },
        );
    }
    out
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

async fn retention(ctx: &Ctx, def: &CheckDef) -> Vec<Finding> {
    use aws_sdk_s3::error::ProvideErrorMetadata as _;
    let min = i32::try_from(def.param_u64("min_days").unwrap_or(365)).unwrap_or(i32::MAX);
    let buckets = match trail_buckets_of(ctx, def).await {
        Ok(b) => b,
        Err(findings) => return findings,
    };
    let client = s3(ctx, &ctx.home);
    let mut out = Vec::new();
    for b in &buckets {
        let rules = match client
            .get_bucket_lifecycle_configuration()
            .bucket(b)
            .send()
            .await
        {
            Ok(l) => l.rules().to_vec(),
            Err(e) if e.code() == Some("NoSuchLifecycleConfiguration") => Vec::new(),
            Err(e) => {
                out.push(ctx.finding(
                    def,
                    &ctx.home,
                    b,
                    Status::Error,
                    failed("s3:GetBucketLifecycleConfiguration", &e),
                ));
                continue;
            }
        };
        let short: Vec<String> = rules
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
            .collect();
        out.push(if short.is_empty() {
            ctx.finding(
                def,
                &ctx.home,
                b,
                Status::Pass,
                format!("no lifecycle rule expires log files sooner than {min} days"),
            )
        } else {
            ctx.finding(def, &ctx.home, b, Status::Fail, short.join("; "))
        });
    }
    out
}

async fn access_logging(ctx: &Ctx, def: &CheckDef) -> Vec<Finding> {
    let list = match trails(ctx).await {
        Ok(l) => l,
        Err(e) => return error(ctx, def, &ctx.home, "-", e),
    };
    let mut buckets: Vec<String> = list
        .iter()
        .filter_map(|t| t.s3_bucket_name().map(str::to_owned))
        .chain(ctx.scope.evidence_bucket.clone())
        .collect();
    buckets.sort_unstable();
    buckets.dedup();
    if buckets.is_empty() {
        return vec![ctx.finding(
            def,
            &ctx.home,
            "-",
            Status::Skipped,
            "no trail bucket and no evidence bucket",
        )];
    }
    let client = s3(ctx, &ctx.home);
    let mut out = Vec::new();
    for b in &buckets {
        out.push(match client.get_bucket_logging().bucket(b).send().await {
            Ok(l) => match l.logging_enabled() {
                Some(on) => ctx.finding(
                    def,
                    &ctx.home,
                    b,
                    Status::Pass,
                    format!("access logs go to {}", on.target_bucket()),
                ),
                None => ctx.finding(
                    def,
                    &ctx.home,
                    b,
                    Status::Fail,
                    "server access logging is off",
                ),
            },
            Err(e) => ctx.finding(
                def,
                &ctx.home,
                b,
                Status::Error,
                failed("s3:GetBucketLogging", &e),
            ),
        });
    }
    out
}

/// A snapshot id no account holds: EBS direct answers it with "not found"
/// when the API is reachable and allowed.
const PROBE_SNAPSHOT: &str = "snap-0000000000000000f";

fn ebs_direct<'a>(
    ctx: &'a Ctx,
    def: &'a CheckDef,
    region: String,
) -> futures::future::BoxFuture<'a, Vec<Finding>> {
    Box::pin(async move {
        use aws_sdk_ebs::error::ProvideErrorMetadata as _;
        let ebs = aws_sdk_ebs::Client::new(&ctx.conf(&region));
        let f = |status, evidence: String| vec![ctx.finding(def, &region, "-", status, evidence)];
        match ebs
            .list_snapshot_blocks()
            .snapshot_id(PROBE_SNAPSHOT)
            .send()
            .await
        {
            Ok(_) => f(Status::Pass, "ebs:ListSnapshotBlocks answered".into()),
            Err(e)
                if matches!(
                    e.code(),
                    Some("ResourceNotFoundException" | "ValidationException")
                ) =>
            {
                f(
                    Status::Pass,
                    format!(
                        "ebs:ListSnapshotBlocks answered ({} for a probe snapshot)",
                        e.code().unwrap_or("")
                    ),
                )
            }
            Err(e) if e.code().is_some_and(|c| c.starts_with("AccessDenied")) => {
                f(Status::Fail, failed("ebs:ListSnapshotBlocks", &e))
            }
            Err(e) => f(Status::Error, failed("ebs:ListSnapshotBlocks", &e)),
        }
    })
}

fn snapshot_quota<'a>(
    ctx: &'a Ctx,
    def: &'a CheckDef,
    region: String,
) -> futures::future::BoxFuture<'a, Vec<Finding>> {
    Box::pin(async move {
        let conf = ctx.conf(&region);
        let sq = aws_sdk_servicequotas::Client::new(&conf);
        let quota = match sq
            .get_service_quota()
            .service_code("ebs")
            .quota_code("L-309BACF6")
            .send()
            .await
        {
            Ok(q) => q.quota().and_then(|q| q.value()),
            Err(applied) => match sq
                .get_aws_default_service_quota()
                .service_code("ebs")
                .quota_code("L-309BACF6")
                .send()
                .await
            {
                Ok(q) => q.quota().and_then(|q| q.value()),
                Err(e) => {
                    return error(
                        ctx,
                        def,
                        &region,
                        "-",
                        format!(
                            "{}; {}",
                            failed("servicequotas:GetServiceQuota", &applied),
                            failed("servicequotas:GetAWSDefaultServiceQuota", &e)
                        ),
                    );
                }
            },
        };
        let Some(quota) = quota.filter(|q| *q > 0.0) else {
            return error(
                ctx,
                def,
                &region,
                "-",
                "Service Quotas gave no value for ebs L-309BACF6".into(),
            );
        };
        let ec2 = aws_sdk_ec2::Client::new(&conf);
        let mut count = 0usize;
        let mut pages = ec2
            .describe_snapshots()
            .filters(
                Filter::builder()
                    .name("owner-id")
                    .values(&ctx.account)
                    .build(),
            )
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            match page {
                Ok(p) => count += p.snapshots().len(),
                Err(e) => {
                    return error(ctx, def, &region, "-", failed("ec2:DescribeSnapshots", &e));
                }
            }
        }
        let min_free = def.param_u64("min_free_percent").unwrap_or(20) as f64;
        let free = (quota - count as f64) * 100.0 / quota;
        let evidence = format!("{count} snapshots of a quota of {quota:.0} ({free:.1}% free)");
        vec![ctx.finding(
            def,
            &region,
            "-",
            if free >= min_free {
                Status::Pass
            } else {
                Status::Fail
            },
            evidence,
        )]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trust_policies_are_read_encoded_or_plain() {
        let plain = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":["arn:aws:iam::111122223333:root","444455556666"],"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"},{"Effect":"Deny","Principal":"*","Action":"sts:AssumeRole"}]}"#;
        let encoded =
            percent_encoding::utf8_percent_encode(plain, percent_encoding::NON_ALPHANUMERIC)
                .to_string();
        for doc in [plain, encoded.as_str()] {
            let p = trusted_principals(doc).expect("parse");
            assert_eq!(
                p,
                vec![
                    "arn:aws:iam::111122223333:root".to_owned(),
                    "444455556666".to_owned(),
                    "Service:ec2.amazonaws.com".to_owned()
                ]
            );
        }
        assert!(in_account(
            "arn:aws:iam::111122223333:role/responder",
            "111122223333"
        ));
        assert!(!in_account(
            "arn:aws:iam::1111222233334:root",
            "111122223333"
        ));
        assert!(!in_account("*", "111122223333"));
        assert!(trusted_principals("not json").is_err());
    }
}
