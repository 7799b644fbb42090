//! GuardDuty: an enabled detector in every audited region.

use crate::readiness::Status;
use crate::readiness::aws::runner::{At, Findings, call_failed};

/// `aws.guardduty.enabled`
pub(crate) async fn enabled(at: At<'_>) -> Findings {
    let gd = aws_sdk_guardduty::Client::new(&at.ctx.conf(at.region));
    let ids = gd
        .list_detectors()
        .send()
        .await
        .map_err(call_failed("guardduty:ListDetectors"))?
        .detector_ids()
        .to_vec();
    for id in &ids {
        let d = gd
            .get_detector()
            .detector_id(id)
            .send()
            .await
            .map_err(call_failed("guardduty:GetDetector"))?;
        if d.status() == Some(&aws_sdk_guardduty::types::DetectorStatus::Enabled) {
            return Ok(vec![at.finding(
                "-",
                Status::Pass,
                format!("detector {id} enabled"),
            )]);
        }
    }
    let evidence = if ids.is_empty() {
        "no detector".to_owned()
    } else {
        format!("detectors {} are disabled", ids.join(", "))
    };
    Ok(vec![at.finding("-", Status::Fail, evidence)])
}
