//! AWS Config: a recorder of all supported resources, recording, in every
//! audited region.

use crate::readiness::Status;
use crate::readiness::aws::runner::{At, Findings, call_failed};

/// `aws.config.recorder`
pub(crate) async fn recorder(at: At<'_>) -> Findings {
    let cfg = aws_sdk_config::Client::new(&at.ctx.conf(at.region));
    let recorders = cfg
        .describe_configuration_recorders()
        .send()
        .await
        .map_err(call_failed("config:DescribeConfigurationRecorders"))?
        .configuration_recorders()
        .to_vec();
    let status = cfg
        .describe_configuration_recorder_status()
        .send()
        .await
        .map_err(call_failed("config:DescribeConfigurationRecorderStatus"))?
        .configuration_recorders_status()
        .to_vec();
    let mut seen = Vec::new();
    for r in &recorders {
        let name = r.name().unwrap_or("default");
        let all = r.recording_group().is_some_and(|g| g.all_supported());
        let recording = status
            .iter()
            .any(|s| s.name() == Some(name) && s.recording());
        if all && recording {
            return Ok(vec![at.finding(
                "-",
                Status::Pass,
                format!("recorder {name} records all supported resources"),
            )]);
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
    Ok(vec![at.finding("-", Status::Fail, evidence)])
}
