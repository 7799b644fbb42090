//! VPC: every VPC has a flow log capturing all traffic.

use aws_sdk_ec2::types::Filter;

use crate::readiness::Status;
use crate::readiness::aws::context::failed;
use crate::readiness::aws::runner::{At, Findings};

/// `aws.vpc.flow_logs`
pub(crate) async fn flow_logs(at: At<'_>) -> Findings {
    let ec2 = aws_sdk_ec2::Client::new(&at.ctx.conf(at.region));
    let mut out = Vec::new();
    for id in super::shared::vpc_ids(&ec2).await? {
        let id = id.as_str();
        let logs = match ec2
            .describe_flow_logs()
            .filter(Filter::builder().name("resource-id").values(id).build())
            .send()
            .await
        {
            Ok(l) => l.flow_logs().to_vec(),
            Err(e) => {
                out.push(at.finding(id, Status::Error, failed("ec2:DescribeFlowLogs", &e)));
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
        out.push(at.finding(id, if all { Status::Pass } else { Status::Fail }, evidence));
    }
    Ok(out)
}
