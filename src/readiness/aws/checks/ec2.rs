//! EC2: running instances require IMDSv2, and each VPC has an isolation
//! security group staged (tagged `custody:isolation=true`, no rules).

use aws_sdk_ec2::types::Filter;

use super::shared::running;
use crate::readiness::Status;
use crate::readiness::aws::context::failed;
use crate::readiness::aws::runner::{At, Findings};

/// `aws.ec2.imdsv2_required`
pub(crate) async fn imdsv2_required(at: At<'_>) -> Findings {
    let instances = running(at.ctx, at.region).await?;
    if instances.is_empty() {
        return Ok(vec![at.finding("-", Status::Pass, "no running instance")]);
    }
    Ok(instances
        .iter()
        .filter_map(|i| Some((i.instance_id()?, i)))
        .map(|(id, i)| {
            let tokens = i
                .metadata_options()
                .and_then(|m| m.http_tokens())
                .map(|t| t.as_str().to_owned())
                .unwrap_or_else(|| "optional".into());
            if tokens == "required" {
                at.finding(id, Status::Pass, "HttpTokens required")
            } else {
                at.finding(
                    id,
                    Status::Fail,
                    format!("HttpTokens {tokens}: IMDSv1 answers"),
                )
            }
        })
        .collect())
}

/// `aws.ec2.isolation_group`
pub(crate) async fn isolation_group(at: At<'_>) -> Findings {
    let ec2 = aws_sdk_ec2::Client::new(&at.ctx.conf(at.region));
    let mut out = Vec::new();
    for id in super::shared::vpc_ids(&ec2).await? {
        let id = id.as_str();
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
                out.push(at.finding(id, Status::Error, failed("ec2:DescribeSecurityGroups", &e)));
                continue;
            }
        };
        let empty = groups
            .iter()
            .find(|g| g.ip_permissions().is_empty() && g.ip_permissions_egress().is_empty());
        out.push(match (empty, groups.first()) {
            (Some(g), _) => at.finding(
                id,
                Status::Pass,
                format!("{} has no rules", g.group_id().unwrap_or("?")),
            ),
            (None, Some(g)) => at.finding(
                id,
                Status::Fail,
                format!(
                    "{} is tagged custody:isolation but has rules",
                    g.group_id().unwrap_or("?")
                ),
            ),
            (None, None) => at.finding(id, Status::Fail, "no group tagged custody:isolation=true"),
        });
    }
    Ok(out)
}
