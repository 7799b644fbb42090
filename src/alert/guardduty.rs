//! Amazon GuardDuty findings, as EventBridge delivers them (`detail-type:
//! "GuardDuty Finding"`, the finding in `detail`) or bare, as some
//! forwarders pass them on without the envelope.

use std::collections::BTreeMap;

use super::json::Node;
use super::{
    Alert, AlertError, AlertSource, EntitySet, Kind, Limits, SeverityLabel, alert_id,
    first_present, rfc3339, scope, score,
};

const DETAIL_TYPE: &str = "GuardDuty Finding";
const ADAPTER: AlertSource = AlertSource::Guardduty;

/// Actions whose `remoteIpDetails` name the other end of the activity.
const REMOTE_IP_ACTIONS: [&str; 4] = [
    "networkConnectionAction",
    "awsApiCallAction",
    "kubernetesApiCallAction",
    "rdsLoginAttemptAction",
];

pub(super) fn parse(root: &Node<'_>, limits: &Limits) -> Result<Alert, AlertError> {
    let top = root.object()?;
    let (finding, envelope) = if top.contains_key("detail-type") || top.contains_key("detail") {
        let detail_type = root.req_str("detail-type")?;
        if detail_type != DETAIL_TYPE {
            return Err(AlertError::WrongEventType {
                adapter: ADAPTER,
                expected: DETAIL_TYPE,
                found: super::clip(detail_type),
            });
        }
        (root.req("detail")?, Some(root))
    } else {
        (root.clone(), None)
    };
    finding.object()?;
    let from_envelope = |key: &str| match envelope {
        Some(e) => e.get(key),
        None => Ok(None),
    };

    let id = alert_id(&finding.req("id")?)?;
    // updatedAt moves with each new occurrence of the activity; createdAt
    // is the first one.
    let time = rfc3339(&finding.req_either("updatedAt", "createdAt")?)?;
    let severity = score(
        &finding.req("severity")?,
        10.0,
        "a GuardDuty severity (0 to 10)",
    )?;
    let title = finding.req_str("title")?.to_owned();
    let finding_type = finding.opt_str("type")?.map(str::to_owned);

    let mut entities = EntitySet::new(ADAPTER, &id, limits);
    let account = scope(
        &mut entities,
        Kind::Account,
        first_present([finding.get("accountId")?, from_envelope("account")?])?,
    )?;
    let region = scope(
        &mut entities,
        Kind::Region,
        first_present([finding.get("region")?, from_envelope("region")?])?,
    )?;

    let mut resource_type = None;
    let mut tags = BTreeMap::new();
    if let Some(resource) = finding.get("resource")? {
        resource_type = resource.opt_str("resourceType")?.map(str::to_owned);
        if let Some(instance) = resource.get("instanceDetails")? {
            entities.add(Kind::Instance, instance.get("instanceId")?)?;
            if let Some(list) = instance.get("tags")? {
                for tag in list.items()? {
                    let key = tag.req_str("key")?;
                    let value = tag.opt_str("value")?.unwrap_or_default();
                    tags.insert(key.to_owned(), value.to_owned());
                }
            }
            if let Some(nics) = instance.get("networkInterfaces")? {
                for nic in nics.items()? {
                    entities.add(Kind::Ip, nic.get("privateIpAddress")?)?;
                    entities.add(Kind::Ip, nic.get("publicIp")?)?;
                    if let Some(private) = nic.get("privateIpAddresses")? {
                        for p in private.items()? {
                            entities.add(Kind::Ip, p.get("privateIpAddress")?)?;
                        }
                    }
                    entities.add_all(Kind::Ip, nic.get("ipv6Addresses")?)?;
                }
            }
        }
        if let Some(key) = resource.get("accessKeyDetails")? {
            entities.add(Kind::Principal, key.get("userName")?)?;
            entities.add(Kind::Principal, key.get("principalId")?)?;
        }
        if let Some(l) = resource.get("lambdaDetails")? {
            entities.add(
                Kind::Function,
                first_present([l.get("functionArn")?, l.get("functionName")?])?,
            )?;
        }
        if let Some(ecs) = resource.get("ecsClusterDetails")? {
            // Only the long ARN form names the task's cluster; the short
            // one (retired by AWS in 2021) cannot be acted on and is left out.
            if let Some(task) = ecs.at(&["taskDetails", "arn"])?
                && super::is_task_arn(task.as_str()?)
            {
                entities.add(Kind::Task, Some(task))?;
            }
        }
        if let Some(eks) = resource.get("eksClusterDetails")? {
            entities.add(Kind::Cluster, eks.get("name")?)?;
        }
        // Runtime Monitoring names the container (on EKS, ECS or EC2); its
        // node comes in `instanceDetails`, read above.
        if let Some(c) = resource.get("containerDetails")? {
            entities.add(Kind::Container, c.get("id")?)?;
        }
        // Malware Protection names the snapshots it scanned; a kept one is
        // the disk at scan time, to acquire instead of taking another.
        if let Some(vols) = resource.at(&["ebsVolumeDetails", "scannedVolumeDetails"])? {
            for v in vols.items()? {
                entities.add(Kind::Snapshot, v.get("snapshotArn")?)?;
            }
        }
    }

    // An attack sequence: every resource and actor it involves.
    if let Some(seq) = finding.at(&["service", "detection", "sequence"])? {
        if let Some(resources) = seq.get("resources")? {
            for r in resources.items()? {
                let uid = r.get("uid")?;
                let last =
                    |n: &Option<super::json::Node<'_>>| -> Result<Option<String>, AlertError> {
                        Ok(match n {
                            Some(n) => n.as_str()?.rsplit('/').next().map(str::to_owned),
                            None => None,
                        })
                    };
                match r.opt_str("resourceType")? {
                    Some("EC2_INSTANCE") => {
                        if let Some(id) = last(&uid)? {
                            entities.instance(&r.path(), &id)?;
                        }
                    }
                    Some("EKS_CLUSTER") => {
                        entities.add(Kind::Cluster, first_present([r.get("name")?])?)?;
                    }
                    Some("ACCESS_KEY") => entities.add(Kind::Principal, r.get("name")?)?,
                    Some("CONTAINER") => {
                        if let Some(id) = last(&uid)? {
                            entities.container(&r.path(), &id)?;
                        }
                    }
                    _ => {}
                }
            }
        }
        if let Some(actors) = seq.get("actors")? {
            for a in actors.items()? {
                if let Some(user) = a.get("user")? {
                    entities.add(Kind::Principal, user.get("name")?)?;
                }
            }
        }
    }

    if let Some(action) = finding.at(&["service", "action"])? {
        for name in REMOTE_IP_ACTIONS {
            if let Some(remote) = action.at(&[name, "remoteIpDetails"])? {
                remote_ip(&mut entities, &remote)?;
            }
        }
        if let Some(probes) = action.at(&["portProbeAction", "portProbeDetails"])? {
            for probe in probes.items()? {
                if let Some(remote) = probe.get("remoteIpDetails")? {
                    remote_ip(&mut entities, &remote)?;
                }
            }
        }
    }

    Ok(Alert {
        source: ADAPTER,
        id,
        time,
        severity,
        severity_label: SeverityLabel::from_score(severity),
        title,
        finding_type,
        resource_type,
        account,
        region,
        tags,
        entities: entities.finish(),
    })
}

fn remote_ip(entities: &mut EntitySet, remote: &Node<'_>) -> Result<(), AlertError> {
    entities.add(Kind::Ip, remote.get("ipAddressV4")?)?;
    entities.add(Kind::Ip, remote.get("ipAddressV6")?)
}
