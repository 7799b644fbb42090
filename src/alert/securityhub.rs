//! AWS Security Hub findings, as EventBridge delivers them: a `Security Hub
//! Findings - Imported` event whose `detail.findings` holds findings in the
//! AWS Security Finding Format (ASFF).

use std::collections::BTreeMap;

use super::json::Node;
use super::{
    Alert, AlertError, AlertSource, EntitySet, Kind, Limits, SeverityLabel, alert_id,
    first_present, rfc3339, scope, score,
};

const DETAIL_TYPE: &str = "Security Hub Findings - Imported";
const ADAPTER: AlertSource = AlertSource::Securityhub;
const INSTANCE_ARN: &str =
    "an EC2 instance ARN (arn:PARTITION:ec2:REGION:ACCOUNT:instance/i-…) or instance id";
const LABELS: &str = "one of INFORMATIONAL, LOW, MEDIUM, HIGH, CRITICAL";

pub(super) fn parse(root: &Node<'_>, limits: &Limits) -> Result<Vec<Alert>, AlertError> {
    let detail_type = root.req_str("detail-type")?;
    if detail_type != DETAIL_TYPE {
        return Err(AlertError::WrongEventType {
            adapter: ADAPTER,
            expected: DETAIL_TYPE,
            found: super::clip(detail_type),
        });
    }
    let findings = root.req("detail")?.req("findings")?;
    // Counted before any is read, so an oversized batch costs nothing more.
    let count = findings.len().unwrap_or_default();
    if count > limits.max_findings {
        return Err(AlertError::TooManyFindings {
            adapter: ADAPTER,
            count,
            limit: limits.max_findings,
        });
    }
    let findings = findings.items()?;
    if findings.is_empty() {
        return Err(root
            .req("detail")?
            .req("findings")?
            .wrong_shape("no findings"));
    }
    findings.iter().map(|f| finding(root, f, limits)).collect()
}

fn finding(envelope: &Node<'_>, f: &Node<'_>, limits: &Limits) -> Result<Alert, AlertError> {
    f.object()?;
    let id = alert_id(&f.req("Id")?)?;
    let time = rfc3339(&f.req_either("UpdatedAt", "CreatedAt")?)?;
    let severity = severity(&f.req("Severity")?)?;
    let title = f.req_str("Title")?.to_owned();
    let finding_type = match f.get("Types")? {
        Some(types) => match types.items()?.first() {
            Some(t) => Some(t.as_str()?.to_owned()).filter(|t| !t.is_empty()),
            None => None,
        },
        None => None,
    };

    let mut entities = EntitySet::new(ADAPTER, &id, limits);
    let account = scope(
        &mut entities,
        Kind::Account,
        first_present([f.get("AwsAccountId")?, envelope.get("account")?])?,
    )?;
    let region = scope(
        &mut entities,
        Kind::Region,
        first_present([f.get("Region")?, envelope.get("region")?])?,
    )?;

    let mut resource_type = None;
    let mut tags = BTreeMap::new();
    let resources = match f.get("Resources")? {
        Some(r) => r.items()?,
        None => Vec::new(),
    };
    for r in &resources {
        let kind = r.opt_str("Type")?;
        if resource_type.is_none() {
            resource_type = kind.map(str::to_owned);
        }
        entities.add(Kind::Region, r.get("Region")?)?;
        if let Some(map) = r.get("Tags")? {
            for (k, v) in map.members()? {
                let v = v.as_str()?;
                // With several resources the first to name a key keeps it.
                tags.entry(k.to_owned()).or_insert_with(|| v.to_owned());
            }
        }
        match kind {
            Some("AwsEc2Instance") => {
                if let Some(id) = r.get("Id")? {
                    ec2_instance(&mut entities, &id)?;
                }
                if let Some(d) = r.at(&["Details", "AwsEc2Instance"])? {
                    entities.add_all(Kind::Ip, d.get("IpV4Addresses")?)?;
                    entities.add_all(Kind::Ip, d.get("IpV6Addresses")?)?;
                }
            }
            Some("AwsIamAccessKey") => {
                if let Some(d) = r.at(&["Details", "AwsIamAccessKey"])? {
                    entities.add(Kind::Principal, d.get("PrincipalName")?)?;
                    entities.add(Kind::Principal, d.get("UserName")?)?;
                    entities.add(Kind::Principal, d.get("PrincipalId")?)?;
                }
            }
            Some("AwsIamUser") => {
                if let Some(d) = r.at(&["Details", "AwsIamUser"])? {
                    entities.add(Kind::Principal, d.get("UserName")?)?;
                }
            }
            Some("AwsLambdaFunction") => entities.add(Kind::Function, r.get("Id")?)?,
            Some("AwsEcsTask") => {
                if let Some(id) = r.get("Id")?
                    && super::is_task_arn(id.as_str()?)
                {
                    entities.add(Kind::Task, Some(id))?;
                }
            }
            // ASFF's container resource (from GuardDuty Runtime Monitoring
            // and container scanners): its Id is the runtime's container id.
            Some("Container") => {
                if let Some(id) = r.get("Id")? {
                    let v = id.as_str()?;
                    let last = v.rsplit('/').next().unwrap_or(v);
                    entities.container(&r.path(), last)?;
                }
            }
            Some("AwsEksCluster") => {
                let name = match r.at(&["Details", "AwsEksCluster", "Name"])? {
                    Some(n) => Some(n.as_str()?.to_owned()),
                    None => match r.get("Id")? {
                        Some(id) => id.as_str()?.rsplit('/').next().map(str::to_owned),
                        None => None,
                    },
                };
                if let Some(n) = name {
                    entities.cluster(&r.path(), &n)?;
                }
            }
            _ => {}
        }
    }

    if let Some(net) = f.get("Network")? {
        entities.add(Kind::Ip, net.get("SourceIpV4")?)?;
        entities.add(Kind::Ip, net.get("SourceIpV6")?)?;
    }
    if let Some(action) = f.get("Action")? {
        for name in ["NetworkConnectionAction", "AwsApiCallAction"] {
            if let Some(remote) = action.at(&[name, "RemoteIpDetails"])? {
                entities.add(Kind::Ip, remote.get("IpAddressV4")?)?;
            }
        }
        if let Some(probes) = action.at(&["PortProbeAction", "PortProbeDetails"])? {
            for probe in probes.items()? {
                entities.add(Kind::Ip, probe.at(&["RemoteIpDetails", "IpAddressV4"])?)?;
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

/// ASFF prefers `Label`; `Normalized` (0–100) refines the score when it
/// agrees with the label's band. A bare label scores the bottom of its band,
/// as Security Hub itself fills `Normalized` in.
fn severity(sev: &Node<'_>) -> Result<f64, AlertError> {
    let label = match sev.get("Label")? {
        Some(node) => Some(asff_label(&node)?),
        None => None,
    };
    let normalized = match sev.get("Normalized")? {
        Some(node) => Some(score(
            &node,
            100.0,
            "an ASFF normalized severity (0 to 100)",
        )?),
        None => None,
    };
    match (label, normalized) {
        (Some((band, _)), Some(n)) if SeverityLabel::from_score(n) == band => Ok(n),
        (Some((_, floor)), _) => Ok(floor),
        (None, Some(n)) => Ok(n),
        (None, None) => Err(sev.wrong_shape("neither Label nor Normalized is present")),
    }
}

fn asff_label(node: &Node<'_>) -> Result<(SeverityLabel, f64), AlertError> {
    match node.as_str()? {
        // custody has no band below low; informational scores 0.
        "INFORMATIONAL" => Ok((SeverityLabel::Low, 0.0)),
        "LOW" => Ok((SeverityLabel::Low, SeverityLabel::Low.floor())),
        "MEDIUM" => Ok((SeverityLabel::Medium, SeverityLabel::Medium.floor())),
        "HIGH" => Ok((SeverityLabel::High, SeverityLabel::High.floor())),
        "CRITICAL" => Ok((SeverityLabel::Critical, SeverityLabel::Critical.floor())),
        other => Err(AlertError::InvalidSeverity {
            adapter: ADAPTER,
            path: node.path(),
            value: format!("{:?}", super::clip(other)),
            expected: LABELS,
        }),
    }
}

/// An `AwsEc2Instance` resource id: the instance's ARN (which also names its
/// account and region), or, from some integrations, the bare instance id.
fn ec2_instance(entities: &mut EntitySet, node: &Node<'_>) -> Result<(), AlertError> {
    let id = node.as_str()?;
    let path = node.path();
    if !id.starts_with("arn:") {
        return entities.instance(&path, id);
    }
    let parts: Vec<&str> = id.splitn(6, ':').collect();
    match parts.as_slice() {
        ["arn", _partition, "ec2", region, account, resource] => {
            let instance = resource
                .strip_prefix("instance/")
                .ok_or_else(|| entities.invalid(&path, id, INSTANCE_ARN))?;
            entities.instance(&path, instance)?;
            if !region.is_empty() {
                entities.region(&path, region)?;
            }
            if !account.is_empty() {
                entities.account(&path, account)?;
            }
            Ok(())
        }
        _ => Err(entities.invalid(&path, id, INSTANCE_ARN)),
    }
}
