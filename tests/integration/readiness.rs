//! `custody readiness run` on moto: one account seeded with good settings,
//! one with bad, each check's verdict read from the run's JSON; calls moto
//! does not implement give ERROR with the reason.
//!
//! Each test works in an account of its own (moto keeps one state per
//! account, chosen by the credentials of an assumed role), so the VPCs and
//! instances of other tests do not show.

use std::collections::BTreeMap;

use aws_sdk_ec2::types::{
    HttpTokensState, InstanceMetadataOptionsRequest, InstanceType, ResourceType, Tag,
    TagSpecification,
};

use crate::common::{Home, emulator, stderr};
use crate::fault_proxy::{Fault, FaultProxy, Rule};

/// Credentials of a role in `account`, and an SDK configuration using them.
async fn account(endpoint: &str, account: &str) -> (aws_config::SdkConfig, [String; 3]) {
    let sts = aws_sdk_sts::Client::new(&crate::common::aws_conf(endpoint));
    let c = sts
        .assume_role()
        .role_arn(format!("arn:aws:iam::{account}:role/auditor"))
        .role_session_name("readiness-test")
        .send()
        .await
        .unwrap();
    let c = c.credentials().unwrap();
    let creds = [
        c.access_key_id().to_owned(),
        c.secret_access_key().to_owned(),
        c.session_token().to_owned(),
    ];
    let conf = aws_config::SdkConfig::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_ec2::config::SharedCredentialsProvider::new(
            aws_sdk_ec2::config::Credentials::new(
                creds[0].clone(),
                creds[1].clone(),
                Some(creds[2].clone()),
                None,
                "tests",
            ),
        ))
        .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(1))
        .build();
    (conf, creds)
}

fn s3(conf: &aws_config::SdkConfig) -> aws_sdk_s3::Client {
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(conf)
            .force_path_style(true)
            .build(),
    )
}

/// Each check's findings: (status, evidence).
type ByCheck = BTreeMap<String, Vec<(String, String)>>;

/// Runs the audit as the account's role; returns the exit code, the JSON
/// and the findings by check.
fn audit(
    home: &Home,
    endpoint: &str,
    creds: &[String; 3],
    args: &[&str],
) -> (Option<i32>, serde_json::Value, ByCheck) {
    let out = home
        .cmd()
        .env("AWS_ACCESS_KEY_ID", &creds[0])
        .env("AWS_SECRET_ACCESS_KEY", &creds[1])
        .env("AWS_SESSION_TOKEN", &creds[2])
        .env("AWS_REGION", "us-east-1")
        .args(["--endpoint-url", endpoint, "--json", "readiness", "run"])
        .args(args)
        .output()
        .unwrap();
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("no JSON: {}", stderr(&out)));
    let mut by = ByCheck::new();
    for f in v["findings"].as_array().unwrap() {
        by.entry(f["check"].as_str().unwrap().to_owned())
            .or_default()
            .push((
                f["status"].as_str().unwrap().to_owned(),
                f["evidence"].as_str().unwrap().to_owned(),
            ));
    }
    (out.status.code(), v, by)
}

/// A bucket with Object Lock (so versioning), and optionally a COMPLIANCE
/// default retention, default encryption and every public access block.
async fn locked_bucket(s3: &aws_sdk_s3::Client, name: &str) {
    use aws_sdk_s3::types::*;
    s3.create_bucket()
        .bucket(name)
        .object_lock_enabled_for_bucket(true)
        .send()
        .await
        .unwrap();
    s3.put_public_access_block()
        .bucket(name)
        .public_access_block_configuration(
            PublicAccessBlockConfiguration::builder()
                .block_public_acls(true)
                .ignore_public_acls(true)
                .block_public_policy(true)
                .restrict_public_buckets(true)
                .build(),
        )
        .send()
        .await
        .unwrap();
    s3.put_object_lock_configuration()
        .bucket(name)
        .object_lock_configuration(
            ObjectLockConfiguration::builder()
                .object_lock_enabled(ObjectLockEnabled::Enabled)
                .rule(
                    ObjectLockRule::builder()
                        .default_retention(
                            DefaultRetention::builder()
                                .mode(ObjectLockRetentionMode::Compliance)
                                .days(365)
                                .build(),
                        )
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap();
    s3.put_bucket_encryption()
        .bucket(name)
        .server_side_encryption_configuration(
            ServerSideEncryptionConfiguration::builder()
                .rules(
                    ServerSideEncryptionRule::builder()
                        .apply_server_side_encryption_by_default(
                            ServerSideEncryptionByDefault::builder()
                                .sse_algorithm(ServerSideEncryption::AwsKms)
                                .build()
                                .unwrap(),
                        )
                        .build(),
                )
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
}

async fn trail(conf: &aws_config::SdkConfig, bucket: &str, good: bool) {
    let ct = aws_sdk_cloudtrail::Client::new(conf);
    ct.create_trail()
        .name("main")
        .s3_bucket_name(bucket)
        .is_multi_region_trail(good)
        .enable_log_file_validation(good)
        .send()
        .await
        .unwrap();
    if good {
        ct.start_logging().name("main").send().await.unwrap();
    }
}

fn trust(principal: &str) -> String {
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{ "Effect": "Allow", "Principal": { "AWS": principal }, "Action": "sts:AssumeRole" }]
    })
    .to_string()
}

async fn seed_good(conf: &aws_config::SdkConfig, account_id: &str) {
    let s3c = s3(conf);
    locked_bucket(&s3c, &format!("trail-{account_id}")).await;
    locked_bucket(&s3c, &format!("evidence-{account_id}")).await;
    trail(conf, &format!("trail-{account_id}"), true).await;
    let ec2 = aws_sdk_ec2::Client::new(conf);
    let vpc = ec2
        .create_vpc()
        .cidr_block("10.60.0.0/16")
        .send()
        .await
        .unwrap();
    let vpc = vpc.vpc().unwrap().vpc_id().unwrap().to_owned();
    let subnet = ec2
        .create_subnet()
        .vpc_id(&vpc)
        .cidr_block("10.60.1.0/24")
        .send()
        .await
        .unwrap();
    let subnet = subnet.subnet().unwrap().subnet_id().unwrap().to_owned();
    // Every VPC (the default one too): all-traffic flow logs and an empty
    // isolation group.
    let vpcs = ec2.describe_vpcs().send().await.unwrap();
    for v in vpcs.vpcs() {
        let id = v.vpc_id().unwrap();
        ec2.create_flow_logs()
            .resource_ids(id)
            .resource_type(aws_sdk_ec2::types::FlowLogsResourceType::Vpc)
            .traffic_type(aws_sdk_ec2::types::TrafficType::All)
            .log_destination_type(aws_sdk_ec2::types::LogDestinationType::S3)
            .log_destination(format!("arn:aws:s3:::trail-{account_id}"))
            .send()
            .await
            .unwrap();
        let g = ec2
            .create_security_group()
            .group_name("custody-isolation")
            .description("no traffic")
            .vpc_id(id)
            .tag_specifications(
                TagSpecification::builder()
                    .resource_type(ResourceType::SecurityGroup)
                    .tags(
                        Tag::builder()
                            .key("custody:isolation")
                            .value("true")
                            .build(),
                    )
                    .build(),
            )
            .send()
            .await
            .unwrap();
        let gid = g.group_id().unwrap();
        let d = ec2
            .describe_security_groups()
            .group_ids(gid)
            .send()
            .await
            .unwrap();
        let egress = d.security_groups()[0].ip_permissions_egress().to_vec();
        if !egress.is_empty() {
            ec2.revoke_security_group_egress()
                .group_id(gid)
                .set_ip_permissions(Some(egress))
                .send()
                .await
                .unwrap();
        }
    }
    // An instance requiring IMDSv2, and a volume under an enabled key.
    let ami = crate::common::any_image(&ec2).await;
    ec2.run_instances()
        .image_id(ami)
        .instance_type(InstanceType::T3Micro)
        .subnet_id(&subnet)
        .min_count(1)
        .max_count(1)
        .metadata_options(
            InstanceMetadataOptionsRequest::builder()
                .http_tokens(HttpTokensState::Required)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let kms = aws_sdk_kms::Client::new(conf);
    let key = kms.create_key().send().await.unwrap();
    let key = key.key_metadata().unwrap().arn().unwrap().to_owned();
    ec2.create_volume()
        .availability_zone("us-east-1a")
        .size(1)
        .encrypted(true)
        .kms_key_id(&key)
        .send()
        .await
        .unwrap();
    ec2.enable_ebs_encryption_by_default().send().await.unwrap();
    aws_sdk_guardduty::Client::new(conf)
        .create_detector()
        .enable(true)
        .send()
        .await
        .unwrap();
    aws_sdk_securityhub::Client::new(conf)
        .enable_security_hub()
        .send()
        .await
        .unwrap();
    let cfg = aws_sdk_config::Client::new(conf);
    cfg.put_configuration_recorder()
        .configuration_recorder(
            aws_sdk_config::types::ConfigurationRecorder::builder()
                .name("default")
                .role_arn(format!("arn:aws:iam::{account_id}:role/config"))
                .recording_group(
                    aws_sdk_config::types::RecordingGroup::builder()
                        .all_supported(true)
                        .include_global_resource_types(true)
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap();
    cfg.put_delivery_channel()
        .delivery_channel(
            aws_sdk_config::types::DeliveryChannel::builder()
                .name("default")
                .s3_bucket_name(format!("trail-{account_id}"))
                .build(),
        )
        .send()
        .await
        .unwrap();
    cfg.start_configuration_recorder()
        .configuration_recorder_name("default")
        .send()
        .await
        .unwrap();
    aws_sdk_iam::Client::new(conf)
        .create_role()
        .role_name("custody-forensic")
        .assume_role_policy_document(trust(&format!("arn:aws:iam::{account_id}:root")))
        .send()
        .await
        .unwrap();
    // Access logs of the trail and evidence buckets.
    let logs = format!("logs-{account_id}");
    s3c.create_bucket().bucket(&logs).send().await.unwrap();
    s3c.put_bucket_acl()
        .bucket(&logs)
        .acl(aws_sdk_s3::types::BucketCannedAcl::from(
            "log-delivery-write",
        ))
        .send()
        .await
        .unwrap();
    for b in [
        format!("trail-{account_id}"),
        format!("evidence-{account_id}"),
    ] {
        s3c.put_bucket_logging()
            .bucket(&b)
            .bucket_logging_status(
                aws_sdk_s3::types::BucketLoggingStatus::builder()
                    .logging_enabled(
                        aws_sdk_s3::types::LoggingEnabled::builder()
                            .target_bucket(&logs)
                            .target_prefix(format!("{b}/"))
                            .build()
                            .unwrap(),
                    )
                    .build(),
            )
            .send()
            .await
            .unwrap();
    }
    // The forensic role may do everything custody does, and use KMS keys
    // (whose default policies hand the decision to IAM).
    let mut actions: Vec<&str> = custody::readiness::aws::policy::FORENSIC_ACTIONS.to_vec();
    actions.extend(["kms:Decrypt", "kms:CreateGrant", "kms:DescribeKey"]);
    aws_sdk_iam::Client::new(conf)
        .put_role_policy()
        .role_name("custody-forensic")
        .policy_name("forensics")
        .policy_document(
            serde_json::json!({
                "Version": "2012-10-17",
                "Statement": [{ "Effect": "Allow", "Action": actions, "Resource": "*" }]
            })
            .to_string(),
        )
        .send()
        .await
        .unwrap();
    // A group whose instances a termination hook holds.
    let asg = aws_sdk_autoscaling::Client::new(conf);
    asg.create_launch_configuration()
        .launch_configuration_name("web")
        .image_id(crate::common::any_image(&ec2).await)
        .instance_type("t3.micro")
        .send()
        .await
        .unwrap();
    asg.create_auto_scaling_group()
        .auto_scaling_group_name("web")
        .launch_configuration_name("web")
        .min_size(0)
        .max_size(2)
        .desired_capacity(0)
        .vpc_zone_identifier(&subnet)
        .send()
        .await
        .unwrap();
    asg.put_lifecycle_hook()
        .auto_scaling_group_name("web")
        .lifecycle_hook_name("hold-for-capture")
        .lifecycle_transition("autoscaling:EC2_INSTANCE_TERMINATING")
        .heartbeat_timeout(3600)
        .send()
        .await
        .unwrap();
}

async fn seed_bad(conf: &aws_config::SdkConfig, account_id: &str) {
    let s3c = s3(conf);
    s3c.create_bucket()
        .bucket(format!("trail-{account_id}"))
        .send()
        .await
        .unwrap();
    s3c.create_bucket()
        .bucket(format!("evidence-{account_id}"))
        .send()
        .await
        .unwrap();
    trail(conf, &format!("trail-{account_id}"), false).await;
    // Log files expire after 90 days.
    s3c.put_bucket_lifecycle_configuration()
        .bucket(format!("trail-{account_id}"))
        .lifecycle_configuration(
            aws_sdk_s3::types::BucketLifecycleConfiguration::builder()
                .rules(
                    aws_sdk_s3::types::LifecycleRule::builder()
                        .id("expire-90")
                        .status(aws_sdk_s3::types::ExpirationStatus::Enabled)
                        .filter(
                            aws_sdk_s3::types::LifecycleRuleFilter::builder()
                                .prefix("")
                                .build(),
                        )
                        .expiration(
                            aws_sdk_s3::types::LifecycleExpiration::builder()
                                .days(90)
                                .build(),
                        )
                        .build()
                        .unwrap(),
                )
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let ec2 = aws_sdk_ec2::Client::new(conf);
    let ami = crate::common::any_image(&ec2).await;
    ec2.run_instances()
        .image_id(ami)
        .instance_type(InstanceType::T3Micro)
        .min_count(1)
        .max_count(1)
        .send()
        .await
        .unwrap();
    let kms = aws_sdk_kms::Client::new(conf);
    let key = kms.create_key().send().await.unwrap();
    let key = key.key_metadata().unwrap().key_id().to_owned();
    ec2.create_volume()
        .availability_zone("us-east-1a")
        .size(1)
        .encrypted(true)
        .kms_key_id(&key)
        .send()
        .await
        .unwrap();
    ec2.create_snapshot()
        .volume_id(
            ec2.create_volume()
                .availability_zone("us-east-1a")
                .size(1)
                .send()
                .await
                .unwrap()
                .volume_id()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    kms.schedule_key_deletion()
        .key_id(&key)
        .pending_window_in_days(7)
        .send()
        .await
        .unwrap();
    aws_sdk_guardduty::Client::new(conf)
        .create_detector()
        .enable(false)
        .send()
        .await
        .unwrap();
    aws_sdk_iam::Client::new(conf)
        .create_role()
        .role_name("custody-forensic")
        .assume_role_policy_document(trust("*"))
        .send()
        .await
        .unwrap();
    let asg = aws_sdk_autoscaling::Client::new(conf);
    asg.create_launch_configuration()
        .launch_configuration_name("web")
        .image_id(crate::common::any_image(&ec2).await)
        .instance_type("t3.micro")
        .send()
        .await
        .unwrap();
    asg.create_auto_scaling_group()
        .auto_scaling_group_name("web")
        .launch_configuration_name("web")
        .min_size(1)
        .max_size(1)
        .desired_capacity(1)
        .availability_zones("us-east-1a")
        .send()
        .await
        .unwrap();
}

fn status(by: &ByCheck, check: &str) -> Vec<String> {
    let mut s: Vec<String> = by
        .get(check)
        .unwrap_or_else(|| panic!("{check} did not run: {by:?}"))
        .iter()
        .map(|(s, _)| s.clone())
        .collect();
    s.sort();
    s.dedup();
    s
}

fn evidence(by: &ByCheck, check: &str) -> String {
    by.get(check)
        .map(|f| {
            f.iter()
                .map(|(_, e)| e.as_str())
                .collect::<Vec<_>>()
                .join("; ")
        })
        .unwrap_or_default()
}

#[test]
fn each_check_passes_on_a_good_account_and_fails_on_a_bad_one() {
    let Some(endpoint) = emulator("CUSTODY_TEST_S3_ENDPOINT") else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    // Fresh accounts on every run, so a reused emulator holds nothing of theirs.
    let n = uuid::Uuid::new_v4().as_u128() % 10_000_000_000;
    let (good_id, bad_id) = (format!("31{n:010}"), format!("32{n:010}"));
    let (good_id, bad_id) = (good_id.as_str(), bad_id.as_str());
    let (good, good_creds) = rt.block_on(account(&endpoint, good_id));
    let (bad, bad_creds) = rt.block_on(account(&endpoint, bad_id));
    rt.block_on(seed_good(&good, good_id));
    rt.block_on(seed_bad(&bad, bad_id));

    // STUB: moto's Service Quotas knows only the vpc service; the proxy
    // answers GetServiceQuota for the EBS snapshot quota as AWS would.
    let quota = |value: f64| {
        Rule {
        op: "GetServiceQuota",
        path: "",
        pass: 0,
        times: 100,
        fault: Fault::Json(
            200,
            serde_json::json!({ "Quota": { "ServiceCode": "ebs", "QuotaCode": "L-309BACF6", "Value": value } })
                .to_string(),
        ),
    }
    };
    let (good_proxy, good_via) = rt.block_on(FaultProxy::start(&endpoint));
    good_proxy.rule(quota(100_000.0));
    let (bad_proxy, bad_via) = rt.block_on(FaultProxy::start(&endpoint));
    // One snapshot against a quota of one: no headroom.
    bad_proxy.rule(quota(1.0));
    // STUB: an SCP or endpoint policy blocking EBS direct, as AWS answers it.
    bad_proxy.rule(Rule {
        op: "ListSnapshotBlocks",
        path: "",
        pass: 0,
        times: 100,
        fault: Fault::Status(403, "AccessDeniedException"),
    });
    let home = Home::new();
    let (code, run, g) = audit(
        &home,
        &good_via,
        &good_creds,
        &["--evidence-bucket", &format!("evidence-{good_id}")],
    );
    let bhome = Home::new();
    let (bcode, _, b) = audit(
        &bhome,
        &bad_via,
        &bad_creds,
        &["--evidence-bucket", &format!("evidence-{bad_id}")],
    );

    // Checks with a verdict on both sides.
    for check in [
        "aws.cloudtrail.multi_region",
        "aws.cloudtrail.log_file_validation",
        "aws.cloudtrail.bucket_tamper_resistant",
        "aws.vpc.flow_logs",
        "aws.guardduty.enabled",
        "aws.securityhub.enabled",
        "aws.config.recorder",
        "aws.autoscaling.evidence_preserving",
        "aws.ec2.imdsv2_required",
        "aws.kms.keys_enabled",
        "aws.iam.forensic_role_trust",
        "aws.s3.evidence_bucket",
        "aws.ec2.isolation_group",
        "aws.cloudtrail.delivering",
        "aws.cloudtrail.retention",
        "aws.s3.access_logging",
        "aws.iam.forensic_role_permissions",
        "aws.kms.volume_keys_usable",
        "aws.ebs.direct_reachable",
        "aws.ebs.snapshot_quota",
    ] {
        assert_eq!(
            status(&g, check),
            ["PASS"],
            "{check} on the good account: {}",
            evidence(&g, check)
        );
        assert_eq!(
            status(&b, check),
            ["FAIL"],
            "{check} on the bad account: {}",
            evidence(&b, check)
        );
    }
    assert_eq!(status(&g, "aws.iam.forensic_role"), ["PASS"]);
    assert_eq!(status(&b, "aws.ebs.default_encryption"), ["FAIL"]);
    // What moto does not implement is ERROR with the call named, never a verdict.
    assert_eq!(status(&g, "aws.ebs.default_encryption"), ["ERROR"]);
    assert!(
        evidence(&g, "aws.ebs.default_encryption").contains("ec2:GetEbsDefaultKmsKeyId failed")
    );
    assert_eq!(status(&g, "aws.ssm.instances_managed"), ["ERROR"]);
    assert!(
        evidence(&g, "aws.ssm.instances_managed")
            .contains("ssm:DescribeInstanceInformation failed")
    );
    // moto cannot simulate: the role's own policies were read.
    assert!(
        evidence(&g, "aws.iam.forensic_role_permissions").contains("read from the role's policies"),
        "{}",
        evidence(&g, "aws.iam.forensic_role_permissions")
    );
    // Every declared AWS check ran: none is left without an evaluation.
    assert!(
        g.values()
            .flatten()
            .all(|(_, e)| !e.contains("does not evaluate")),
        "{g:?}"
    );
    // Evidence names what is wrong.
    assert!(evidence(&b, "aws.cloudtrail.retention").contains("after 90 days"));
    assert!(evidence(&b, "aws.iam.forensic_role_permissions").contains("ec2:CreateSnapshot"));
    assert!(evidence(&b, "aws.s3.evidence_bucket").contains("Object Lock is off"));
    assert!(evidence(&b, "aws.iam.forensic_role_trust").contains("*"));
    assert!(evidence(&b, "aws.kms.keys_enabled").contains("PendingDeletion"));

    // The verdicts and the exit codes: the bad account fails critical checks.
    assert_eq!(code, Some(0), "{run}");
    assert_eq!(run["score"]["ready"], true);
    assert_eq!(bcode, Some(1));
    let score = run["score"]["score"].as_f64().unwrap();
    assert!(score > 90.0, "{score}");
    assert_eq!(run["run"]["scope"]["accounts"][0], good_id);
    assert!(
        run["run"]["catalogue_version"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );

    // A permission the audit identity lacks: ERROR with the call and the
    // answer, never a verdict. STUB: moto does not enforce IAM; the proxy
    // answers as AWS does for a denied call.
    let (denied_proxy, denied_via) = rt.block_on(FaultProxy::start(&endpoint));
    denied_proxy.rule(Rule {
        op: "DescribeConfigurationRecorders",
        path: "",
        pass: 0,
        times: 100,
        fault: Fault::Json(
            400,
            r#"{"__type":"AccessDeniedException","message":"not authorized to perform config:DescribeConfigurationRecorders"}"#.into(),
        ),
    });
    let (_, _, d) = audit(
        &home,
        &denied_via,
        &good_creds,
        &["--check", "aws.config.recorder"],
    );
    assert_eq!(status(&d, "aws.config.recorder"), ["ERROR"]);
    let why = evidence(&d, "aws.config.recorder");
    assert!(
        why.contains("config:DescribeConfigurationRecorders failed")
            && why.contains("AccessDenied"),
        "{why}"
    );

    // The forensic role missing: FAIL (and the run not ready).
    let (code, _, m) = audit(
        &home,
        &endpoint,
        &good_creds,
        &["--role", "no-such-role", "--check", "aws.iam.forensic_role"],
    );
    assert_eq!(status(&m, "aws.iam.forensic_role"), ["FAIL"]);
    assert_eq!(code, Some(1));

    // Both runs are in the history.
    let out = home
        .cmd()
        .args(["--json", "readiness", "history"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let runs: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(runs.as_array().unwrap().len(), 3);

    // An unknown check id is refused, naming it.
    let out = home
        .cmd()
        .args(["readiness", "run", "--check", "aws.nope"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("aws.nope"), "{}", stderr(&out));
}

#[test]
fn the_evidence_container_checks_run_on_azurite() {
    use custody::store::azure_auth::{AZURITE_KEY, SharedKeyCredential, blob_container_client};
    let Some(endpoint) = emulator("CUSTODY_TEST_AZURE_BLOB_ENDPOINT") else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let private = crate::azure::unique_container("ready-private");
    let public = crate::azure::unique_container("ready-public");
    for (name, access) in [
        (&private, None),
        (
            &public,
            Some(azure_storage_blob::models::PublicAccessType::Blob),
        ),
    ] {
        let admin = blob_container_client(&endpoint, name, SharedKeyCredential::azurite()).unwrap();
        let options = azure_storage_blob::models::BlobContainerClientCreateOptions {
            access,
            ..Default::default()
        };
        rt.block_on(admin.create(Some(options))).unwrap();
    }
    let run = |container: &str| {
        let home = Home::new();
        let out = home
            .cmd()
            .env("AZURE_STORAGE_KEY", AZURITE_KEY)
            .args([
                "--json",
                "readiness",
                "run",
                "--no-aws",
                "--azure-container",
            ])
            .arg(format!("{endpoint}/{container}"))
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|_| panic!("no JSON: {}", stderr(&out)));
        let mut by = ByCheck::new();
        for f in v["findings"].as_array().unwrap() {
            by.entry(f["check"].as_str().unwrap().to_owned())
                .or_default()
                .push((
                    f["status"].as_str().unwrap().to_owned(),
                    f["evidence"].as_str().unwrap().to_owned(),
                ));
        }
        (out.status.code(), by)
    };
    let (_, p) = run(&private);
    assert_eq!(status(&p, "azure.blob.evidence_private"), ["PASS"]);
    // Azurite neither reports nor enforces immutability: ERROR, never a verdict.
    assert_eq!(status(&p, "azure.blob.evidence_immutable"), ["ERROR"]);
    assert!(evidence(&p, "azure.blob.evidence_immutable").contains("emulator"));
    // Soft delete is off on a fresh Azurite account.
    assert_eq!(
        status(&p, "azure.blob.soft_delete"),
        ["FAIL"],
        "{}",
        evidence(&p, "azure.blob.soft_delete")
    );
    // What needs Azure Resource Manager is SKIPPED with the reason.
    for check in [
        "azure.monitor.activity_log_export",
        "azure.defender.plans",
        "azure.blob.versioning",
    ] {
        assert_eq!(status(&p, check), ["SKIPPED"]);
        assert!(
            evidence(&p, check).contains("Resource Manager"),
            "{}",
            evidence(&p, check)
        );
    }
    let (code, b) = run(&public);
    assert_eq!(status(&b, "azure.blob.evidence_private"), ["FAIL"]);
    assert!(evidence(&b, "azure.blob.evidence_private").contains("blob"));
    // A critical check fails: not ready.
    assert_eq!(code, Some(1));
}

/// Debian's Chromium, or `None` (after saying why) outside CI.
fn chromium() -> Option<std::path::PathBuf> {
    for p in ["/usr/bin/chromium", "/usr/bin/chromium-browser"] {
        if std::path::Path::new(p).exists() {
            return Some(p.into());
        }
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "chromium is missing: scripts/test installs it (Debian package chromium)"
    );
    eprintln!("NOT RUN: chromium is not installed; scripts/test installs it");
    None
}

/// A history of three days (the second with two runs), written through the
/// library, then reported in every format; the HTML is rendered by a real
/// headless Chromium with the network off.
#[test]
fn reports_in_every_format_and_the_html_renders_in_chromium() {
    use custody::readiness::history::{History, Run, Scope, StoredFinding};
    use custody::readiness::{Finding, Status};
    let home = Home::new();
    let mut h = History::open(&History::path_in(home.path())).unwrap();
    let day = |d: u8, hour: u8| {
        time::macros::datetime!(2026-11-01 00:00 UTC)
            + time::Duration::days(i64::from(d))
            + time::Duration::hours(i64::from(hour))
    };
    let f = |check: &str, resource: &str, status: Status| StoredFinding {
        finding: Finding::new(
            check,
            "123456789012",
            "us-east-1",
            resource,
            status,
            format!("{resource} <seen>"),
        ),
        remediation: "fix it".into(),
    };
    let runs = [
        (
            day(0, 9),
            Some(40.0),
            false,
            vec![
                f("aws.vpc.flow_logs", "vpc-1", Status::Fail),
                f("aws.iam.forensic_role", "custody-forensic", Status::Fail),
            ],
        ),
        (
            day(1, 9),
            Some(50.0),
            false,
            vec![
                f("aws.vpc.flow_logs", "vpc-1", Status::Pass),
                f("aws.iam.forensic_role", "custody-forensic", Status::Fail),
            ],
        ),
        (
            day(1, 17),
            Some(60.0),
            false,
            vec![
                f("aws.vpc.flow_logs", "vpc-1", Status::Fail),
                f("aws.iam.forensic_role", "custody-forensic", Status::Fail),
            ],
        ),
        (
            day(2, 9),
            Some(95.0),
            true,
            vec![
                f("aws.vpc.flow_logs", "vpc-1", Status::Pass),
                f("aws.iam.forensic_role", "custody-forensic", Status::Pass),
                f("aws.ssm.instances_managed", "i-1", Status::Error),
            ],
        ),
    ];
    for (at, score, ready, findings) in runs {
        let run = Run {
            id: 0,
            started: at,
            finished: at + time::Duration::seconds(2),
            tool_version: "0.1.0".into(),
            catalogue_version: "sha256:test".into(),
            scope: Scope {
                providers: vec!["aws".into()],
                accounts: vec!["123456789012".into()],
                regions: vec!["us-east-1".into()],
            },
            identity: "arn:aws:iam::123456789012:user/auditor".into(),
            score,
            ready,
            pillars: serde_json::json!({ "logging": score, "access": score }),
        };
        h.record(&run, &findings).unwrap();
    }
    drop(h);

    let report = |format: &str| {
        let out = home.run(&["readiness", "report", "--format", format]);
        assert!(out.status.success(), "{}", stderr(&out));
        String::from_utf8(out.stdout).unwrap()
    };
    // JSON: the latest run, its findings and the trend against the day before.
    let j: serde_json::Value = serde_json::from_str(&report("json")).unwrap();
    assert_eq!(j["runs"].as_array().unwrap().len(), 4);
    let change = |check: &str| {
        j["trend"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["check"] == check)
            .unwrap()["change"]
            .clone()
    };
    assert_eq!(
        change("aws.vpc.flow_logs"),
        "fixed",
        "against the second day's latest run"
    );
    assert_eq!(change("aws.iam.forensic_role"), "fixed");
    // CSV: a header and a row per finding, quoted where needed.
    let csv = report("csv");
    let mut r = csv::Reader::from_reader(csv.as_bytes());
    let rows: Vec<csv::StringRecord> = r.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 3);
    assert!(
        rows.iter()
            .any(|row| row.get(9) == Some("ERROR")
                && row.get(2) == Some("aws.ssm.instances_managed"))
    );
    // OCSF: Compliance Finding records with the status mapped.
    let o: serde_json::Value = serde_json::from_str(&report("ocsf")).unwrap();
    let recs = o.as_array().unwrap();
    assert_eq!(recs.len(), 3);
    assert!(
        recs.iter()
            .all(|x| x["class_uid"] == 2003 && x["type_uid"] == 200301)
    );
    let ssm = recs
        .iter()
        .find(|x| x["compliance"]["control"] == "aws.ssm.instances_managed")
        .unwrap();
    assert_eq!(
        ssm["compliance"]["status_id"], 2,
        "ERROR is a Warning: no result"
    );
    assert_eq!(ssm["severity_id"], 4);
    // An older run is reported as it was.
    let out = home.run(&[
        "--json",
        "readiness",
        "report",
        "--format",
        "json",
        "--run",
        "1",
    ]);
    let old: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(old["runs"].as_array().unwrap().len(), 1);
    let out = home.run(&["readiness", "report", "--run", "99"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("no readiness run 99"),
        "{}",
        stderr(&out)
    );

    // HTML: one file, escaped, rendered by Chromium.
    let page = home.path().join("report.html");
    let out = home.run(&[
        "readiness",
        "report",
        "--format",
        "html",
        "-o",
        page.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(
        html.contains("vpc-1 &lt;seen&gt;") && !html.contains("<seen>"),
        "evidence is escaped"
    );
    for outside in ["<script", "src=\"http", "href=\"http", "@import"] {
        assert!(!html.contains(outside), "the page loads nothing: {outside}");
    }
    let again = home.run(&[
        "readiness",
        "report",
        "--format",
        "html",
        "-o",
        page.to_str().unwrap(),
    ]);
    assert_eq!(again.status.code(), Some(2), "never overwrites");
    let Some(chrome) = chromium() else {
        return;
    };
    let profile = home.path().join("chrome-profile");
    let chrome_cmd = |extra: &[&str]| {
        std::process::Command::new(&chrome)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            // No network at all: the page must stand on its own.
            .args(["--proxy-server=127.0.0.1:9", "--window-size=1200,1000"])
            .args(extra)
            .arg(format!("file://{}", page.display()))
            .output()
            .unwrap()
    };
    let dom = chrome_cmd(&["--dump-dom"]);
    let dom = String::from_utf8_lossy(&dom.stdout).into_owned();
    assert!(dom.contains("id=\"score-chart\""), "{dom}");
    // Three days, three points (the second day counts once, its latest run).
    let points = dom
        .split("<polyline")
        .nth(1)
        .and_then(|p| p.split("points=\"").nth(1))
        .and_then(|p| p.split('"').next())
        .unwrap();
    assert_eq!(points.split_whitespace().count(), 3, "{points}");
    // Two failing checks on each of the first two days.
    assert_eq!(dom.matches("class=\"cell FAIL\"").count(), 4, "{dom}");
    assert!(dom.contains("READY"));
    let shot = home.path().join("report.png");
    let out = chrome_cmd(&[&format!("--screenshot={}", shot.display())]);
    let png = std::fs::read(&shot)
        .unwrap_or_else(|_| panic!("no screenshot: {}", String::from_utf8_lossy(&out.stderr)));
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "{} bytes",
        png.len()
    );
    if let Ok(dir) = std::env::var("CUSTODY_KEEP_SCREENSHOT") {
        std::fs::copy(
            &shot,
            std::path::Path::new(&dir).join("readiness-report.png"),
        )
        .unwrap();
    }
}

/// An Azurite of this test's own (soft delete is an account setting: turning
/// it on in the shared emulator would change other tests' deletes).
struct OwnAzurite {
    child: std::process::Child,
    endpoint: String,
}

impl Drop for OwnAzurite {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn own_azurite() -> OwnAzurite {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let main = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("node_modules/azurite/dist/src/blob/main.js");
    let child = std::process::Command::new("node")
        .arg(&main)
        .args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string()])
        .args([
            "--inMemoryPersistence",
            "--disableTelemetry",
            "--skipApiVersionCheck",
            "--silent",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", main.display()));
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    OwnAzurite {
        child,
        endpoint: format!("http://127.0.0.1:{port}/devstoreaccount1"),
    }
}

#[test]
fn soft_delete_passes_once_the_account_keeps_deleted_blobs() {
    use custody::store::azure_auth::{AZURITE_KEY, SharedKeyCredential, blob_container_client};
    // The shared emulator's presence says the rig is there (and fails in CI without it).
    if emulator("CUSTODY_TEST_AZURE_BLOB_ENDPOINT").is_none() {
        return;
    }
    let az = own_azurite();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let container = crate::azure::unique_container("ready-soft");
    let admin =
        blob_container_client(&az.endpoint, &container, SharedKeyCredential::azurite()).unwrap();
    rt.block_on(admin.create(None)).unwrap();
    let service = custody::store::azure_auth::service_client(
        &az.endpoint,
        custody::store::azure_auth::AzureAuth::SharedKey(SharedKeyCredential::azurite()),
        Default::default(),
    )
    .unwrap();
    let audit = |days: i32| {
        let props = azure_storage_blob::models::BlobServiceProperties {
            delete_retention_policy: Some(azure_storage_blob::models::RetentionPolicy {
                enabled: Some(true),
                days: Some(days),
                ..Default::default()
            }),
            ..Default::default()
        };
        rt.block_on(service.set_properties(props.try_into().unwrap(), None))
            .unwrap();
        let home = Home::new();
        let out = home
            .cmd()
            .env("AZURE_STORAGE_KEY", AZURITE_KEY)
            .args([
                "--json",
                "readiness",
                "run",
                "--no-aws",
                "--check",
                "azure.blob.soft_delete",
                "--azure-container",
            ])
            .arg(format!("{}/{container}", az.endpoint))
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|_| panic!("no JSON: {}", stderr(&out)));
        let f = &v["findings"][0];
        (
            f["status"].as_str().unwrap().to_owned(),
            f["evidence"].as_str().unwrap().to_owned(),
        )
    };
    let (status, evidence) = audit(30);
    assert_eq!(status, "PASS", "{evidence}");
    assert!(evidence.contains("30 days"), "{evidence}");
    let (status, evidence) = audit(7);
    assert_eq!(status, "FAIL", "{evidence}");
    assert!(evidence.contains("only 7 days"), "{evidence}");
}
