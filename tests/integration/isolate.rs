//! Isolation and release of EC2 instances on moto, with and without an Auto
//! Scaling group, through the custody command.
//!
//! moto keeps an instance's security groups right in the instance view
//! (`DescribeInstances` → `SecurityGroups`) but leaves the old group on the
//! interface when `ModifyInstanceAttribute(Groups)` swaps them (AWS replaces
//! both): the groups are checked through the instance view.

use aws_sdk_ec2::types::InstanceAttributeName;

use crate::common::{Home, aws_conf as conf, custody_aws as custody, emulator, stderr};

/// What isolation changes, as the API shows it now.
#[derive(Debug, PartialEq, Eq)]
struct Seen {
    termination_protection: bool,
    shutdown: String,
    delete_on_termination: Vec<bool>,
    groups: Vec<String>,
    isolated_tag: Option<String>,
}

async fn seen(ec2: &aws_sdk_ec2::Client, id: &str) -> Seen {
    let out = ec2
        .describe_instances()
        .instance_ids(id)
        .send()
        .await
        .unwrap();
    let i = out.reservations()[0].instances()[0].clone();
    let attr = |a| {
        ec2.describe_instance_attribute()
            .instance_id(id)
            .attribute(a)
            .send()
    };
    let term = attr(InstanceAttributeName::DisableApiTermination)
        .await
        .unwrap();
    let shut = attr(InstanceAttributeName::InstanceInitiatedShutdownBehavior)
        .await
        .unwrap();
    let mut groups: Vec<String> = i
        .security_groups()
        .iter()
        .filter_map(|g| g.group_id().map(str::to_owned))
        .collect();
    groups.sort();
    Seen {
        termination_protection: term
            .disable_api_termination()
            .and_then(|v| v.value())
            .unwrap_or(false),
        shutdown: shut
            .instance_initiated_shutdown_behavior()
            .and_then(|v| v.value())
            .unwrap_or_default()
            .to_owned(),
        delete_on_termination: i
            .block_device_mappings()
            .iter()
            .map(|m| {
                m.ebs()
                    .and_then(|e| e.delete_on_termination())
                    .unwrap_or(false)
            })
            .collect(),
        groups,
        isolated_tag: i
            .tags()
            .iter()
            .find(|t| t.key() == Some("custody:isolated"))
            .and_then(|t| t.value())
            .map(str::to_owned),
    }
}

async fn group_id(
    ec2: &aws_sdk_ec2::Client,
    vpc: &str,
    name: &str,
) -> Option<(String, usize, usize)> {
    let out = ec2
        .describe_security_groups()
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("vpc-id")
                .values(vpc)
                .build(),
        )
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("group-name")
                .values(name)
                .build(),
        )
        .send()
        .await
        .unwrap();
    out.security_groups().first().map(|g| {
        (
            g.group_id().unwrap().to_owned(),
            g.ip_permissions().len(),
            g.ip_permissions_egress().len(),
        )
    })
}

fn entries(home: &Home) -> Vec<serde_json::Value> {
    std::fs::read_to_string(home.path().join("ledger/entries.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn isolation_changes_verifies_and_release_restores_the_recorded_state() {
    let Some(endpoint) = emulator("CUSTODY_TEST_S3_ENDPOINT") else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let ec2 = aws_sdk_ec2::Client::new(&conf(&endpoint));
    let ami = rt.block_on(crate::common::any_image(&ec2));
    let (vpc, app, id) = rt.block_on(crate::common::instance_in_own_vpc(&ec2, &ami, 77, None));
    let before = rt.block_on(seen(&ec2, &id));
    assert!(!before.termination_protection);
    assert_eq!(before.groups, vec![app]);
    let home = Home::new();

    // A dry run prints the plan and changes nothing.
    let out = custody(
        &home,
        &endpoint,
        &[
            "--json",
            "isolate",
            "--instance",
            &id,
            "--case",
            "iso1",
            "--dry-run",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        plan["plan"].to_string().contains("termination protection"),
        "{plan}"
    );
    assert_eq!(
        rt.block_on(seen(&ec2, &id)),
        before,
        "a dry run changes nothing"
    );
    assert!(
        rt.block_on(group_id(&ec2, &vpc, "custody-isolation"))
            .is_none()
    );
    assert!(
        !home.path().join("ledger/entries.jsonl").exists()
            || !entries(&home)
                .iter()
                .any(|e| e["action"] == "state_recorded")
    );

    let out = custody(
        &home,
        &endpoint,
        &["--json", "isolate", "--instance", &id, "--case", "iso1"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["not_holding"].as_array().unwrap().len(), 0, "{r}");
    let (closed, ingress, egress) = rt
        .block_on(group_id(&ec2, &vpc, "custody-isolation"))
        .unwrap();
    assert_eq!(
        (ingress, egress),
        (0, 0),
        "the isolation group has no rules"
    );
    let (_, open_ingress, _) = rt
        .block_on(group_id(&ec2, &vpc, "custody-isolation-untrack"))
        .unwrap();
    assert_eq!(open_ingress, 1, "the first group allows all traffic in");
    let now = rt.block_on(seen(&ec2, &id));
    assert!(now.termination_protection);
    assert_eq!(now.shutdown, "stop");
    assert!(now.delete_on_termination.iter().all(|d| !d), "{now:?}");
    assert_eq!(now.groups, vec![closed.clone()]);
    assert_eq!(now.isolated_tag.as_deref(), Some("iso1"));
    // Termination protection holds.
    let term = rt.block_on(ec2.terminate_instances().instance_ids(&id).send());
    assert!(term.is_err(), "an isolated instance cannot be terminated");

    // The ledger: prior state first, each step with its request ids, the check.
    let e = entries(&home);
    let actions: Vec<&str> = e.iter().filter_map(|e| e["action"].as_str()).collect();
    let first = actions.iter().position(|a| *a == "state_recorded").unwrap();
    let steps = actions.iter().filter(|a| **a == "isolated").count();
    assert!(actions.iter().position(|a| *a == "isolated").unwrap() > first);
    assert!(steps >= 6, "{actions:?}");
    assert_eq!(actions.last(), Some(&"isolation_checked"));
    assert!(
        e.iter()
            .filter(|e| e["action"] == "isolated")
            .all(|e| !e["detail"]["request_ids"].as_array().unwrap().is_empty())
    );

    let out = custody(&home, &endpoint, &["--json", "release", "--instance", &id]);
    assert!(out.status.success(), "{}", stderr(&out));
    let after = rt.block_on(seen(&ec2, &id));
    assert_eq!(after, before, "release restores the recorded state");
    assert_eq!(
        entries(&home).last().unwrap()["action"],
        "released",
        "the release is recorded"
    );
    let out = home.run(&["ledger", "verify"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn an_instance_in_an_auto_scaling_group_is_detached_without_replacement_and_reattached() {
    let Some(endpoint) = emulator("CUSTODY_TEST_S3_ENDPOINT") else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let c = conf(&endpoint);
    let ec2 = aws_sdk_ec2::Client::new(&c);
    let asg = aws_sdk_autoscaling::Client::new(&c);
    let ami = rt.block_on(crate::common::any_image(&ec2));
    let name = format!("web-{}", uuid::Uuid::new_v4().simple());
    let subnet = rt
        .block_on(ec2.describe_subnets().send())
        .unwrap()
        .subnets()[0]
        .subnet_id()
        .unwrap()
        .to_owned();
    rt.block_on(
        ec2.create_launch_template()
            .launch_template_name(&name)
            .launch_template_data(
                aws_sdk_ec2::types::RequestLaunchTemplateData::builder()
                    .image_id(ami)
                    .instance_type(aws_sdk_ec2::types::InstanceType::T2Micro)
                    .build(),
            )
            .send(),
    )
    .unwrap();
    rt.block_on(
        asg.create_auto_scaling_group()
            .auto_scaling_group_name(&name)
            .launch_template(
                aws_sdk_autoscaling::types::LaunchTemplateSpecification::builder()
                    .launch_template_name(&name)
                    .build(),
            )
            .min_size(0)
            .max_size(2)
            .desired_capacity(1)
            .vpc_zone_identifier(subnet)
            .send(),
    )
    .unwrap();
    let group = |asg: &aws_sdk_autoscaling::Client| {
        let asg = asg.clone();
        let name = name.clone();
        async move {
            asg.describe_auto_scaling_groups()
                .auto_scaling_group_names(name)
                .send()
                .await
                .unwrap()
                .auto_scaling_groups()[0]
                .clone()
        }
    };
    let g = rt.block_on(group(&asg));
    let id = g.instances()[0].instance_id().unwrap().to_owned();
    let home = Home::new();
    let out = custody(
        &home,
        &endpoint,
        &["--json", "isolate", "--instance", &id, "--case", "asg1"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(r["plan"].to_string().contains(&name), "{r}");
    assert_eq!(r["not_holding"].as_array().unwrap().len(), 0, "{r}");
    let g = rt.block_on(group(&asg));
    assert!(
        !g.instances().iter().any(|i| i.instance_id() == Some(&id)),
        "detached"
    );
    assert_eq!(
        g.desired_capacity(),
        Some(0),
        "no replacement was asked for"
    );

    let out = custody(&home, &endpoint, &["--json", "release", "--instance", &id]);
    assert!(out.status.success(), "{}", stderr(&out));
    let g = rt.block_on(group(&asg));
    assert!(
        g.instances().iter().any(|i| i.instance_id() == Some(&id)),
        "reattached on release"
    );
}

#[test]
fn release_without_a_recorded_state_and_an_unknown_instance_are_refused() {
    let Some(endpoint) = emulator("CUSTODY_TEST_S3_ENDPOINT") else {
        return;
    };
    let home = Home::new();
    let out = custody(
        &home,
        &endpoint,
        &["release", "--instance", "i-0123456789abcdef0"],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("no recorded prior state"),
        "{}",
        stderr(&out)
    );
    let out = custody(
        &home,
        &endpoint,
        &["isolate", "--instance", "i-0123456789abcdef0"],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    // EC2's InvalidInstanceID.NotFound is told as custody's own not-found.
    assert!(
        stderr(&out).contains("instance i-0123456789abcdef0 was not found"),
        "{}",
        stderr(&out)
    );
}

/// Creates an instance profile in moto's IAM (through boto3, which moto
/// installs; custody itself needs no IAM client) and associates it.
fn associate_profile(endpoint: &str, instance: &str) -> String {
    let script = format!(
        r#"
import boto3, uuid
kw = dict(endpoint_url="{endpoint}", region_name="us-east-1",
          aws_access_key_id="testing", aws_secret_access_key="testing")
iam = boto3.client("iam", **kw)
name = "web-" + uuid.uuid4().hex
iam.create_role(RoleName=name, AssumeRolePolicyDocument="{{}}")
p = iam.create_instance_profile(InstanceProfileName=name)["InstanceProfile"]
iam.add_role_to_instance_profile(InstanceProfileName=name, RoleName=name)
boto3.client("ec2", **kw).associate_iam_instance_profile(
    IamInstanceProfile={{"Arn": p["Arn"]}}, InstanceId="{instance}")
print(p["Arn"])
"#
    );
    let python = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    let out = std::process::Command::new(python)
        .args(["-c", &script])
        .output()
        .expect("the emulators' Python (scripts/test installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

async fn profile_of(ec2: &aws_sdk_ec2::Client, instance: &str) -> Option<String> {
    let out = ec2
        .describe_iam_instance_profile_associations()
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("instance-id")
                .values(instance)
                .build(),
        )
        .send()
        .await
        .unwrap();
    out.iam_instance_profile_associations()
        .iter()
        .find(|a| a.state().is_some_and(|s| s.as_str() == "associated"))
        .and_then(|a| a.iam_instance_profile())
        .and_then(|p| p.arn())
        .map(str::to_owned)
}

#[test]
fn revoke_role_disassociates_the_instance_profile_and_release_restores_it() {
    let Some(endpoint) = emulator("CUSTODY_TEST_S3_ENDPOINT") else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let ec2 = aws_sdk_ec2::Client::new(&conf(&endpoint));
    let ami = rt.block_on(crate::common::any_image(&ec2));
    let run = rt
        .block_on(
            ec2.run_instances()
                .image_id(ami)
                .instance_type(aws_sdk_ec2::types::InstanceType::T2Micro)
                .min_count(1)
                .max_count(1)
                .send(),
        )
        .unwrap();
    let id = run.instances()[0].instance_id().unwrap().to_owned();
    let arn = associate_profile(&endpoint, &id);
    assert_eq!(
        rt.block_on(profile_of(&ec2, &id)).as_deref(),
        Some(arn.as_str())
    );
    let home = Home::new();
    let out = custody(
        &home,
        &endpoint,
        &[
            "--json",
            "isolate",
            "--instance",
            &id,
            "--case",
            "role1",
            "--revoke-role",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(r["plan"].to_string().contains(&arn), "{r}");
    assert_eq!(
        rt.block_on(profile_of(&ec2, &id)),
        None,
        "the role is revoked"
    );
    let out = custody(&home, &endpoint, &["release", "--instance", &id]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        rt.block_on(profile_of(&ec2, &id)).as_deref(),
        Some(arn.as_str()),
        "release associates the profile again"
    );
}
