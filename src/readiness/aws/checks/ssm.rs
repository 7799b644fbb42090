//! Systems Manager: every running instance is managed and online, so
//! memory can be captured through Run Command.

use super::shared::running;
use crate::readiness::Status;
use crate::readiness::aws::context::failed;
use crate::readiness::aws::runner::{At, Findings};

/// `aws.ssm.instances_managed`
pub(crate) async fn instances_managed(at: At<'_>) -> Findings {
    let instances = running(at.ctx, at.region).await?;
    if instances.is_empty() {
        return Ok(vec![at.finding("-", Status::Pass, "no running instance")]);
    }
    let ids = || instances.iter().filter_map(|i| i.instance_id());
    let ssm = aws_sdk_ssm::Client::new(&at.ctx.conf(at.region));
    let mut info = Vec::new();
    let mut pages = ssm.describe_instance_information().into_paginator().send();
    while let Some(page) = pages.next().await {
        match page {
            Ok(p) => info.extend(p.instance_information_list().iter().cloned()),
            Err(e) => {
                // No verdict on any instance: each says why.
                let why = failed("ssm:DescribeInstanceInformation", &e);
                return Ok(ids()
                    .map(|id| at.finding(id, Status::Error, why.clone()))
                    .collect());
            }
        }
    }
    Ok(ids()
        .map(|id| {
            let ping = info
                .iter()
                .find(|x| x.instance_id() == Some(id))
                .and_then(|x| x.ping_status().map(|p| p.as_str().to_owned()));
            match ping.as_deref() {
                Some("Online") => at.finding(id, Status::Pass, "managed, Online"),
                Some(p) => at.finding(id, Status::Fail, format!("managed, {p}")),
                None => at.finding(id, Status::Fail, "not managed by SSM"),
            }
        })
        .collect())
}
