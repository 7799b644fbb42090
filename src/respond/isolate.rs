//! Reversible isolation of an EC2 instance.
//!
//! The instance's prior state is read and recorded in the ledger before
//! anything changes. Then, each step recorded with the request id AWS
//! returned: termination protection on; shutdown behaviour `stop`; every
//! EBS volume kept on termination; detached from its Auto Scaling group
//! without a replacement; moved to an isolation security group in two steps
//! (a group allowing all traffic first, so tracked connections become
//! untracked, then a group with no rules: AWS documents that swapping groups
//! does not cut tracked connections); optionally its instance profile
//! disassociated; tagged with the case. The instance is described again and
//! each change checked. [`release`] puts back what the recorded prior state
//! says.

use std::collections::BTreeMap;

use aws_sdk_ec2::operation::RequestId;
use aws_sdk_ec2::types::{
    AttributeBooleanValue, AttributeValue, EbsInstanceBlockDeviceSpecification, Filter,
    InstanceAttributeName, InstanceBlockDeviceMappingSpecification, IpPermission, IpRange,
    Ipv6Range, Tag,
};
use serde::{Deserialize, Serialize};

use crate::aws::{ApiError, ApiErrorKind};

/// Names of the isolation security groups custody creates in a VPC.
pub const OPEN_GROUP: &str = "custody-isolation-untrack";
pub const CLOSED_GROUP: &str = "custody-isolation";
/// Tag set on an isolated instance (value: the case).
pub const ISOLATED_TAG: &str = "custody:isolated";

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IsolateError {
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error("instance {0} was not found")]
    NotFound(String),
    #[error("instance {0} is not in a VPC; isolation needs VPC security groups")]
    NoVpc(String),
    #[error("no recorded prior state of {0} in the ledger: it was not isolated by custody here")]
    NoPriorState(String),
}

/// An attached volume and whether it goes with the instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Volume {
    pub device: String,
    pub volume: String,
    pub delete_on_termination: bool,
}

/// A network interface and its security groups.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interface {
    pub id: String,
    pub device_index: i32,
    pub groups: Vec<String>,
}

/// Everything isolation changes, as it was before.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceState {
    pub instance: String,
    pub state: Option<String>,
    pub vpc: Option<String>,
    pub termination_protection: bool,
    pub shutdown_behavior: String,
    pub volumes: Vec<Volume>,
    /// The instance's security groups (those of its primary interface).
    pub groups: Vec<String>,
    pub interfaces: Vec<Interface>,
    pub auto_scaling_group: Option<String>,
    /// Instance profile ARN and its association id.
    pub instance_profile: Option<(String, String)>,
    pub tags: BTreeMap<String, String>,
}

/// AWS clients isolation uses.
#[derive(Debug, Clone)]
pub struct Clients {
    pub ec2: aws_sdk_ec2::Client,
    pub autoscaling: aws_sdk_autoscaling::Client,
}

/// What to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Options {
    pub case: String,
    pub revoke_role: bool,
}

/// One change, with what it sets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum Step {
    TerminationProtection,
    ShutdownBehaviorStop,
    KeepVolumes { devices: Vec<String> },
    DetachFromAutoScaling { group: String },
    AllowAllThenUntracked { group: String },
    NoTraffic { group: String },
    RevokeRole { profile: String },
    Tag { key: String, value: String },
}

impl Step {
    pub fn describe(&self) -> String {
        match self {
            Self::TerminationProtection => "enable termination protection".into(),
            Self::ShutdownBehaviorStop => "set shutdown behaviour to stop".into(),
            Self::KeepVolumes { devices } => {
                format!("keep volumes on termination ({})", devices.join(", "))
            }
            Self::DetachFromAutoScaling { group } => {
                format!("detach from Auto Scaling group {group} without replacement")
            }
            Self::AllowAllThenUntracked { group } => format!(
                "move to {group} (allows all traffic, so tracked connections become untracked)"
            ),
            Self::NoTraffic { group } => format!("move to {group} (no rules: no traffic)"),
            Self::RevokeRole { profile } => format!("disassociate instance profile {profile}"),
            Self::Tag { key, value } => format!("tag {key}={value}"),
        }
    }
}

/// A step as taken.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Taken {
    #[serde(flatten)]
    pub step: Step,
    pub request_ids: Vec<String>,
}

/// Reads the instance's current state.
pub async fn describe(c: &Clients, instance: &str) -> Result<InstanceState, IsolateError> {
    let out = c
        .ec2
        .describe_instances()
        .instance_ids(instance)
        .send()
        .await
        .map_err(|e| match ApiError::sdk("describe", instance, e) {
            // EC2 answers an unknown id with InvalidInstanceID.NotFound, an
            // emulator may answer it with no reservation: one error for both.
            e if e.kind == ApiErrorKind::NotFound => IsolateError::NotFound(instance.to_owned()),
            e => e.into(),
        })?;
    let inst = out
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .find(|i| i.instance_id() == Some(instance))
        .ok_or_else(|| IsolateError::NotFound(instance.to_owned()))?;
    let attr = |name: InstanceAttributeName| {
        c.ec2
            .describe_instance_attribute()
            .instance_id(instance)
            .attribute(name)
            .send()
    };
    let term = attr(InstanceAttributeName::DisableApiTermination)
        .await
        .map_err(|e| ApiError::sdk("read termination protection of", instance, e))?;
    let shutdown = attr(InstanceAttributeName::InstanceInitiatedShutdownBehavior)
        .await
        .map_err(|e| ApiError::sdk("read shutdown behaviour of", instance, e))?;
    let asg = c
        .autoscaling
        .describe_auto_scaling_instances()
        .instance_ids(instance)
        .send()
        .await
        .map_err(|e| ApiError::sdk("read Auto Scaling membership of", instance, e))?;
    let profile = c
        .ec2
        .describe_iam_instance_profile_associations()
        .filters(
            Filter::builder()
                .name("instance-id")
                .values(instance)
                .build(),
        )
        .send()
        .await
        .map_err(|e| ApiError::sdk("read the instance profile of", instance, e))?;
    let mut interfaces: Vec<Interface> = inst
        .network_interfaces()
        .iter()
        .filter_map(|n| {
            Some(Interface {
                id: n.network_interface_id()?.to_owned(),
                device_index: n.attachment().and_then(|a| a.device_index()).unwrap_or(0),
                groups: n
                    .groups()
                    .iter()
                    .filter_map(|g| g.group_id().map(str::to_owned))
                    .collect(),
            })
        })
        .collect();
    interfaces.sort_by_key(|i| i.device_index);
    Ok(InstanceState {
        instance: instance.to_owned(),
        state: inst
            .state()
            .and_then(|s| s.name())
            .map(|n| n.as_str().to_owned()),
        vpc: inst.vpc_id().map(str::to_owned),
        termination_protection: term
            .disable_api_termination()
            .and_then(|v| v.value())
            .unwrap_or(false),
        shutdown_behavior: shutdown
            .instance_initiated_shutdown_behavior()
            .and_then(|v| v.value())
            .unwrap_or("stop")
            .to_owned(),
        volumes: inst
            .block_device_mappings()
            .iter()
            .filter_map(|m| {
                let ebs = m.ebs()?;
                Some(Volume {
                    device: m.device_name()?.to_owned(),
                    volume: ebs.volume_id()?.to_owned(),
                    delete_on_termination: ebs.delete_on_termination().unwrap_or(false),
                })
            })
            .collect(),
        groups: inst
            .security_groups()
            .iter()
            .filter_map(|g| g.group_id().map(str::to_owned))
            .collect(),
        interfaces,
        auto_scaling_group: asg
            .auto_scaling_instances()
            .first()
            .and_then(|a| a.auto_scaling_group_name())
            .map(str::to_owned),
        instance_profile: profile
            .iam_instance_profile_associations()
            .iter()
            .find(|a| {
                a.state()
                    .is_some_and(|s| s.as_str() == "associated" || s.as_str() == "associating")
            })
            .and_then(|a| {
                Some((
                    a.iam_instance_profile()?.arn()?.to_owned(),
                    a.association_id()?.to_owned(),
                ))
            }),
        tags: inst
            .tags()
            .iter()
            .filter_map(|t| Some((t.key()?.to_owned(), t.value()?.to_owned())))
            .collect(),
    })
}

/// The isolation security groups of `vpc`, when they exist.
async fn find_group(c: &Clients, vpc: &str, name: &str) -> Result<Option<String>, IsolateError> {
    let out = c
        .ec2
        .describe_security_groups()
        .filters(Filter::builder().name("vpc-id").values(vpc).build())
        .filters(Filter::builder().name("group-name").values(name).build())
        .send()
        .await
        .map_err(|e| ApiError::sdk("look for security group", name, e))?;
    Ok(out
        .security_groups()
        .first()
        .and_then(|g| g.group_id())
        .map(str::to_owned))
}

/// Creates the isolation group `name` in `vpc`: allowing all traffic both
/// ways when `open`, else with no rules at all.
async fn create_group(
    c: &Clients,
    vpc: &str,
    name: &str,
    open: bool,
) -> Result<String, IsolateError> {
    let out = c
        .ec2
        .create_security_group()
        .group_name(name)
        .vpc_id(vpc)
        .description(if open {
            "custody isolation, first step: all traffic, so tracked connections become untracked"
        } else {
            "custody isolation: no inbound or outbound traffic"
        })
        .send()
        .await
        .map_err(|e| ApiError::sdk("create security group", name, e))?;
    let id = out.group_id().map(str::to_owned).ok_or_else(|| {
        ApiError::other("create security group", name, "no group id in the answer")
    })?;
    let all = IpPermission::builder()
        .ip_protocol("-1")
        .ip_ranges(IpRange::builder().cidr_ip("0.0.0.0/0").build())
        .ipv6_ranges(Ipv6Range::builder().cidr_ipv6("::/0").build())
        .build();
    if open {
        c.ec2
            .authorize_security_group_ingress()
            .group_id(&id)
            .ip_permissions(all)
            .send()
            .await
            .map_err(|e| ApiError::sdk("open security group", &id, e))?;
    } else {
        // A new group allows all outbound traffic: remove that rule.
        let egress = IpPermission::builder()
            .ip_protocol("-1")
            .ip_ranges(IpRange::builder().cidr_ip("0.0.0.0/0").build())
            .build();
        c.ec2
            .revoke_security_group_egress()
            .group_id(&id)
            .ip_permissions(egress)
            .send()
            .await
            .map_err(|e| ApiError::sdk("close security group", &id, e))?;
    }
    Ok(id)
}

/// The steps that isolate an instance in `prior` state. Group ids are
/// those that exist; a group still to be created is named by its name.
pub async fn plan(
    c: &Clients,
    prior: &InstanceState,
    opts: &Options,
) -> Result<Vec<Step>, IsolateError> {
    let vpc = prior
        .vpc
        .as_deref()
        .ok_or_else(|| IsolateError::NoVpc(prior.instance.clone()))?;
    let open = find_group(c, vpc, OPEN_GROUP)
        .await?
        .unwrap_or_else(|| format!("{OPEN_GROUP} (to be created in {vpc})"));
    let closed = find_group(c, vpc, CLOSED_GROUP)
        .await?
        .unwrap_or_else(|| format!("{CLOSED_GROUP} (to be created in {vpc})"));
    let mut steps = vec![Step::TerminationProtection, Step::ShutdownBehaviorStop];
    let devices: Vec<String> = prior
        .volumes
        .iter()
        .filter(|v| v.delete_on_termination)
        .map(|v| v.device.clone())
        .collect();
    if !devices.is_empty() {
        steps.push(Step::KeepVolumes { devices });
    }
    if let Some(g) = &prior.auto_scaling_group {
        steps.push(Step::DetachFromAutoScaling { group: g.clone() });
    }
    steps.push(Step::AllowAllThenUntracked { group: open });
    steps.push(Step::NoTraffic { group: closed });
    if opts.revoke_role
        && let Some((arn, _)) = &prior.instance_profile
    {
        steps.push(Step::RevokeRole {
            profile: arn.clone(),
        });
    }
    steps.push(Step::Tag {
        key: ISOLATED_TAG.to_owned(),
        value: opts.case.clone(),
    });
    Ok(steps)
}

/// Moves the instance (all its interfaces) to `group`.
async fn move_to(
    c: &Clients,
    prior: &InstanceState,
    group: &str,
) -> Result<Vec<String>, IsolateError> {
    let mut ids = Vec::new();
    // The instance-level call sets the primary interface's groups.
    let out = c
        .ec2
        .modify_instance_attribute()
        .instance_id(&prior.instance)
        .groups(group)
        .send()
        .await
        .map_err(|e| ApiError::sdk("change the security groups of", &prior.instance, e))?;
    ids.extend(out.request_id().map(str::to_owned));
    for i in prior.interfaces.iter().filter(|i| i.device_index != 0) {
        let out = c
            .ec2
            .modify_network_interface_attribute()
            .network_interface_id(&i.id)
            .groups(group)
            .send()
            .await
            .map_err(|e| ApiError::sdk("change the security groups of", &i.id, e))?;
        ids.extend(out.request_id().map(str::to_owned));
    }
    Ok(ids)
}

/// Takes one step; returns the request ids.
pub async fn take(
    c: &Clients,
    prior: &InstanceState,
    step: &Step,
) -> Result<(Step, Vec<String>), IsolateError> {
    let id = &prior.instance;
    let mut step = step.clone();
    let rid = |o: Option<&str>| o.map(str::to_owned).into_iter().collect::<Vec<_>>();
    let ids = match &mut step {
        Step::TerminationProtection => {
            let out = c
                .ec2
                .modify_instance_attribute()
                .instance_id(id)
                .disable_api_termination(AttributeBooleanValue::builder().value(true).build())
                .send()
                .await
                .map_err(|e| ApiError::sdk("enable termination protection of", id, e))?;
            rid(out.request_id())
        }
        Step::ShutdownBehaviorStop => {
            let out = c
                .ec2
                .modify_instance_attribute()
                .instance_id(id)
                .instance_initiated_shutdown_behavior(
                    AttributeValue::builder().value("stop").build(),
                )
                .send()
                .await
                .map_err(|e| ApiError::sdk("set the shutdown behaviour of", id, e))?;
            rid(out.request_id())
        }
        Step::KeepVolumes { devices } => {
            let out = c
                .ec2
                .modify_instance_attribute()
                .instance_id(id)
                .set_block_device_mappings(Some(
                    devices
                        .iter()
                        .map(|d| keep_on_termination(d, false))
                        .collect(),
                ))
                .send()
                .await
                .map_err(|e| ApiError::sdk("keep the volumes of", id, e))?;
            rid(out.request_id())
        }
        Step::DetachFromAutoScaling { group } => {
            let out = c
                .autoscaling
                .detach_instances()
                .auto_scaling_group_name(group.as_str())
                .instance_ids(id)
                .should_decrement_desired_capacity(true)
                .send()
                .await
                .map_err(|e| ApiError::sdk("detach from its Auto Scaling group", id, e))?;
            rid(aws_sdk_autoscaling::operation::RequestId::request_id(&out))
        }
        Step::AllowAllThenUntracked { .. } | Step::NoTraffic { .. } => {
            let open = matches!(step, Step::AllowAllThenUntracked { .. });
            let vpc = prior
                .vpc
                .as_deref()
                .ok_or_else(|| IsolateError::NoVpc(id.clone()))?;
            let name = if open { OPEN_GROUP } else { CLOSED_GROUP };
            let gid = match find_group(c, vpc, name).await? {
                Some(g) => g,
                None => match create_group(c, vpc, name, open).await {
                    Ok(g) => g,
                    // Another isolation in this VPC created it meanwhile.
                    Err(e) => find_group(c, vpc, name).await?.ok_or(e)?,
                },
            };
            let ids = move_to(c, prior, &gid).await?;
            step = if open {
                Step::AllowAllThenUntracked { group: gid }
            } else {
                Step::NoTraffic { group: gid }
            };
            ids
        }
        Step::RevokeRole { .. } => match &prior.instance_profile {
            Some((_, assoc)) => {
                let out = c
                    .ec2
                    .disassociate_iam_instance_profile()
                    .association_id(assoc)
                    .send()
                    .await
                    .map_err(|e| ApiError::sdk("disassociate the instance profile of", id, e))?;
                rid(out.request_id())
            }
            None => Vec::new(),
        },
        Step::Tag { key, value } => {
            let out = c
                .ec2
                .create_tags()
                .resources(id)
                .tags(
                    Tag::builder()
                        .key(key.as_str())
                        .value(value.as_str())
                        .build(),
                )
                .send()
                .await
                .map_err(|e| ApiError::sdk("tag", id, e))?;
            rid(out.request_id())
        }
    };
    Ok((step, ids))
}

fn keep_on_termination(device: &str, delete: bool) -> InstanceBlockDeviceMappingSpecification {
    InstanceBlockDeviceMappingSpecification::builder()
        .device_name(device)
        .ebs(
            EbsInstanceBlockDeviceSpecification::builder()
                .delete_on_termination(delete)
                .build(),
        )
        .build()
}

/// Which changes of `steps` do not hold in `now`, each with what was seen.
pub fn check(now: &InstanceState, steps: &[Step]) -> Vec<String> {
    let mut bad = Vec::new();
    for s in steps {
        let problem = match s {
            Step::TerminationProtection => {
                (!now.termination_protection).then(|| "termination protection is off".to_owned())
            }
            Step::ShutdownBehaviorStop => (now.shutdown_behavior != "stop")
                .then(|| format!("shutdown behaviour is {}", now.shutdown_behavior)),
            Step::KeepVolumes { devices } => {
                let left: Vec<&str> = now
                    .volumes
                    .iter()
                    .filter(|v| devices.contains(&v.device) && v.delete_on_termination)
                    .map(|v| v.device.as_str())
                    .collect();
                (!left.is_empty())
                    .then(|| format!("still deleted on termination: {}", left.join(", ")))
            }
            Step::DetachFromAutoScaling { group } => now
                .auto_scaling_group
                .as_ref()
                .map(|g| format!("still in Auto Scaling group {g} (was {group})")),
            Step::AllowAllThenUntracked { .. } => None,
            Step::NoTraffic { group } => (now.groups != [group.clone()])
                .then(|| format!("security groups are {:?}, not [{group}]", now.groups)),
            Step::RevokeRole { .. } => now
                .instance_profile
                .as_ref()
                .map(|(arn, _)| format!("instance profile {arn} is still associated")),
            Step::Tag { key, value } => (now.tags.get(key) != Some(value))
                .then(|| format!("tag {key} is {:?}", now.tags.get(key))),
        };
        if let Some(p) = problem {
            bad.push(format!("{}: {p}", s.describe()));
        }
    }
    bad
}

/// What release changes back, from the recorded prior state; each with its request ids.
pub async fn release(
    c: &Clients,
    prior: &InstanceState,
) -> Result<Vec<(String, Vec<String>)>, IsolateError> {
    let id = &prior.instance;
    let now = describe(c, id).await?;
    let mut done = Vec::new();
    let rid = |o: Option<&str>| o.map(str::to_owned).into_iter().collect::<Vec<_>>();
    // Groups first: the instance talks again only once it is otherwise as it was.
    let groups = if prior.groups.is_empty() {
        prior
            .interfaces
            .iter()
            .find(|i| i.device_index == 0)
            .map(|i| i.groups.clone())
            .unwrap_or_default()
    } else {
        prior.groups.clone()
    };
    if !groups.is_empty() && now.groups != groups {
        let out = c
            .ec2
            .modify_instance_attribute()
            .instance_id(id)
            .set_groups(Some(groups.clone()))
            .send()
            .await
            .map_err(|e| ApiError::sdk("restore the security groups of", id, e))?;
        done.push((format!("security groups {groups:?}"), rid(out.request_id())));
        for i in prior.interfaces.iter().filter(|i| i.device_index != 0) {
            let out = c
                .ec2
                .modify_network_interface_attribute()
                .network_interface_id(&i.id)
                .set_groups(Some(i.groups.clone()))
                .send()
                .await
                .map_err(|e| ApiError::sdk("restore the security groups of", &i.id, e))?;
            done.push((
                format!("security groups of {} {:?}", i.id, i.groups),
                rid(out.request_id()),
            ));
        }
    }
    if let Some((arn, _)) = &prior.instance_profile
        && now.instance_profile.is_none()
    {
        let out = c
            .ec2
            .associate_iam_instance_profile()
            .instance_id(id)
            .iam_instance_profile(
                aws_sdk_ec2::types::IamInstanceProfileSpecification::builder()
                    .arn(arn)
                    .build(),
            )
            .send()
            .await
            .map_err(|e| ApiError::sdk("restore the instance profile of", id, e))?;
        done.push((format!("instance profile {arn}"), rid(out.request_id())));
    }
    if let Some(g) = &prior.auto_scaling_group
        && now.auto_scaling_group.is_none()
    {
        let out = c
            .autoscaling
            .attach_instances()
            .auto_scaling_group_name(g)
            .instance_ids(id)
            .send()
            .await
            .map_err(|e| ApiError::sdk("reattach to its Auto Scaling group", id, e))?;
        done.push((
            format!("Auto Scaling group {g}"),
            rid(aws_sdk_autoscaling::operation::RequestId::request_id(&out)),
        ));
    }
    let devices: Vec<InstanceBlockDeviceMappingSpecification> = prior
        .volumes
        .iter()
        .filter(|v| {
            now.volumes
                .iter()
                .any(|n| n.device == v.device && n.delete_on_termination != v.delete_on_termination)
        })
        .map(|v| keep_on_termination(&v.device, v.delete_on_termination))
        .collect();
    if !devices.is_empty() {
        let out = c
            .ec2
            .modify_instance_attribute()
            .instance_id(id)
            .set_block_device_mappings(Some(devices))
            .send()
            .await
            .map_err(|e| ApiError::sdk("restore the volumes' delete-on-termination of", id, e))?;
        done.push(("delete on termination".into(), rid(out.request_id())));
    }
    if now.shutdown_behavior != prior.shutdown_behavior {
        let out = c
            .ec2
            .modify_instance_attribute()
            .instance_id(id)
            .instance_initiated_shutdown_behavior(
                AttributeValue::builder()
                    .value(prior.shutdown_behavior.as_str())
                    .build(),
            )
            .send()
            .await
            .map_err(|e| ApiError::sdk("restore the shutdown behaviour of", id, e))?;
        done.push((
            format!("shutdown behaviour {}", prior.shutdown_behavior),
            rid(out.request_id()),
        ));
    }
    if now.termination_protection != prior.termination_protection {
        let out = c
            .ec2
            .modify_instance_attribute()
            .instance_id(id)
            .disable_api_termination(
                AttributeBooleanValue::builder()
                    .value(prior.termination_protection)
                    .build(),
            )
            .send()
            .await
            .map_err(|e| ApiError::sdk("restore termination protection of", id, e))?;
        done.push((
            format!("termination protection {}", prior.termination_protection),
            rid(out.request_id()),
        ));
    }
    if !prior.tags.contains_key(ISOLATED_TAG) && now.tags.contains_key(ISOLATED_TAG) {
        let out = c
            .ec2
            .delete_tags()
            .resources(id)
            .tags(Tag::builder().key(ISOLATED_TAG).build())
            .send()
            .await
            .map_err(|e| ApiError::sdk("untag", id, e))?;
        done.push((format!("tag {ISOLATED_TAG} removed"), rid(out.request_id())));
    }
    Ok(done)
}

/// Where `now` differs from `prior` in what isolation changes.
pub fn differences(prior: &InstanceState, now: &InstanceState) -> Vec<String> {
    let mut d = Vec::new();
    if prior.termination_protection != now.termination_protection {
        d.push("termination protection".to_owned());
    }
    if prior.shutdown_behavior != now.shutdown_behavior {
        d.push("shutdown behaviour".to_owned());
    }
    if prior.volumes != now.volumes {
        d.push("volumes' delete on termination".to_owned());
    }
    let groups = |s: &InstanceState| {
        let mut g = s.groups.clone();
        g.sort();
        g
    };
    if !prior.groups.is_empty() && groups(prior) != groups(now) {
        d.push(format!(
            "security groups {:?} (were {:?})",
            now.groups, prior.groups
        ));
    }
    if prior.auto_scaling_group != now.auto_scaling_group {
        d.push("Auto Scaling group".to_owned());
    }
    if prior.instance_profile.as_ref().map(|p| &p.0) != now.instance_profile.as_ref().map(|p| &p.0)
    {
        d.push("instance profile".to_owned());
    }
    if prior.tags.get(ISOLATED_TAG) != now.tags.get(ISOLATED_TAG) {
        d.push(format!("tag {ISOLATED_TAG}"));
    }
    d
}
