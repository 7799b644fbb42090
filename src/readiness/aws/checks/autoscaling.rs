//! Auto Scaling: an instance in a group cannot be terminated before it is
//! captured (a termination lifecycle hook, or scale-in protection).

use crate::readiness::Status;
use crate::readiness::aws::context::failed;
use crate::readiness::aws::runner::{At, Findings, call_failed};

/// `aws.autoscaling.evidence_preserving`
pub(crate) async fn evidence_preserving(at: At<'_>) -> Findings {
    let asg = aws_sdk_autoscaling::Client::new(&at.ctx.conf(at.region));
    let groups = asg
        .describe_auto_scaling_groups()
        .send()
        .await
        .map_err(call_failed("autoscaling:DescribeAutoScalingGroups"))?
        .auto_scaling_groups()
        .to_vec();
    if groups.is_empty() {
        return Ok(vec![at.finding("-", Status::Pass, "no Auto Scaling group")]);
    }
    let mut out = Vec::new();
    for g in groups {
        let name = g.auto_scaling_group_name().unwrap_or("?").to_owned();
        let hooks = match asg
            .describe_lifecycle_hooks()
            .auto_scaling_group_name(&name)
            .send()
            .await
        {
            Ok(h) => h.lifecycle_hooks().to_vec(),
            Err(e) => {
                out.push(at.finding(
                    &name,
                    Status::Error,
                    failed("autoscaling:DescribeLifecycleHooks", &e),
                ));
                continue;
            }
        };
        let hook = hooks
            .iter()
            .find(|h| h.lifecycle_transition() == Some("autoscaling:EC2_INSTANCE_TERMINATING"));
        let unprotected: Vec<&str> = g
            .instances()
            .iter()
            .filter(|i| !i.protected_from_scale_in().unwrap_or(false))
            .filter_map(|i| i.instance_id())
            .collect();
        out.push(match hook {
            Some(h) => at.finding(
                &name,
                Status::Pass,
                format!(
                    "termination lifecycle hook {}",
                    h.lifecycle_hook_name().unwrap_or("?")
                ),
            ),
            None if unprotected.is_empty() => at.finding(
                &name,
                Status::Pass,
                "every instance is protected from scale-in",
            ),
            None => at.finding(
                &name,
                Status::Fail,
                format!(
                    "no termination lifecycle hook, and {} not protected from scale-in",
                    unprotected.join(", ")
                ),
            ),
        });
    }
    Ok(out)
}
