//! What every AWS check shares, written once, so a check's file holds only
//! what it asks and how it judges the answers:
//!
//! - [`At`]: the check at one place (the home region, an audited region,
//!   or `global` for IAM), which every finding it makes names.
//! - [`Stop`]: how a check ends early: with its findings already (nothing
//!   to look at), or with no verdict because a call failed. A call's
//!   failure (a missing permission, AccessDenied included, or an API the
//!   endpoint does not implement) becomes one ERROR finding naming the call
//!   and the service's answer, never a verdict; only a check whose verdict
//!   *is* the denial (EBS direct) reads the error's code itself.
//! - [`AwsCheck`]: a check's evaluation and where it runs ([`Place`]):
//!   once from the home region, once for the account-wide IAM (findings in
//!   region `global`), or in every audited region together.

use futures::future::BoxFuture;

use super::context::{Ctx, failed};
use crate::readiness::catalogue::CheckDef;
use crate::readiness::{Finding, Status};

/// The region IAM's findings name: IAM is one service for the whole account.
const GLOBAL: &str = "global";

/// One check evaluated at one place.
#[derive(Debug, Clone, Copy)]
pub(crate) struct At<'a> {
    pub ctx: &'a Ctx,
    pub def: &'a CheckDef,
    /// The region its findings name (`global` for IAM).
    pub region: &'a str,
}

impl<'a> At<'a> {
    /// The same check, its findings naming `region` (a trail's home region).
    pub(crate) fn in_region<'b>(self, region: &'b str) -> At<'b>
    where
        'a: 'b,
    {
        At { region, ..self }
    }

    /// A finding of this check here, about `resource` (`-`: the place as a whole).
    pub(crate) fn finding(
        &self,
        resource: &str,
        status: Status,
        evidence: impl Into<String>,
    ) -> Finding {
        self.ctx
            .finding(self.def, self.region, resource, status, evidence)
    }
}

/// How a check ends before it has looked at every resource.
#[derive(Debug)]
pub(crate) enum Stop {
    /// Its findings, known early (no trail, no key to look at).
    Findings(Vec<Finding>),
    /// No verdict about `resource` (`-`: the place): why, in words.
    Unknown { resource: String, why: String },
}

impl Stop {
    /// No verdict for the whole place.
    pub(crate) fn unknown(why: String) -> Self {
        Self::unknown_on("-", why)
    }

    /// No verdict about `resource`.
    pub(crate) fn unknown_on(resource: &str, why: String) -> Self {
        Self::Unknown {
            resource: resource.to_owned(),
            why,
        }
    }
}

/// For `map_err` on an SDK call: `call` failed, so the place has no verdict.
pub(crate) fn call_failed<E: std::error::Error + 'static>(
    call: &'static str,
) -> impl FnOnce(E) -> Stop {
    move |e| Stop::unknown(failed(call, &e))
}

/// What a check's evaluation returns: its findings, or how it stopped.
pub(crate) type Findings = Result<Vec<Finding>, Stop>;

/// A check's evaluation at one place (an `async fn(At) -> Findings`, boxed
/// so that every check fits one table).
pub(crate) type Evaluate = for<'a> fn(At<'a>) -> BoxFuture<'a, Findings>;

/// Where a check is asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Place {
    /// Once, from the home region (the trail list, the evidence bucket).
    Home,
    /// Once, of IAM, an account-wide service; its findings name `global`.
    Global,
    /// In every audited region, together.
    Regional,
}

/// An AWS check's row in the table: its evaluation and where it runs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AwsCheck {
    pub place: Place,
    pub evaluate: Evaluate,
}

impl AwsCheck {
    /// The check's findings at each of its places, in region order.
    pub(crate) async fn run(&self, ctx: &Ctx, def: &CheckDef) -> Vec<Finding> {
        let regions: Vec<&str> = match self.place {
            Place::Home => vec![ctx.home.as_str()],
            Place::Global => vec![GLOBAL],
            Place::Regional => ctx.regions.iter().map(String::as_str).collect(),
        };
        let evaluate = self.evaluate;
        let runs = regions.into_iter().map(|region| async move {
            let at = At { ctx, def, region };
            match evaluate(at).await {
                Ok(findings) | Err(Stop::Findings(findings)) => findings,
                Err(Stop::Unknown { resource, why }) => {
                    vec![at.finding(&resource, Status::Error, why)]
                }
            }
        });
        futures::future::join_all(runs)
            .await
            .into_iter()
            .flatten()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::readiness::catalogue::Catalogue;

    /// What each finding says: (region, resource, status, evidence).
    fn seen(findings: &[Finding]) -> Vec<(&str, &str, Status, &str)> {
        findings
            .iter()
            .map(|f| {
                (
                    f.key.region.as_str(),
                    f.key.resource.as_str(),
                    f.status,
                    f.evidence.as_str(),
                )
            })
            .collect()
    }

    #[tokio::test]
    async fn each_place_runs_once_and_a_stop_becomes_its_findings_or_one_error() {
        let catalogue = Catalogue::builtin().expect("the built-in catalogue");
        let def = catalogue.get("aws.vpc.flow_logs").expect("declared");
        let ctx = Ctx::for_tests(&["eu-west-1", "us-east-1", "ap-south-1"], "us-east-1");
        // One region fails a call, one stops with its verdict, one finishes.
        let evaluate: Evaluate = |at| {
            Box::pin(async move {
                match at.region {
                    "eu-west-1" => Err(Stop::unknown_on(
                        "vpc-1",
                        "ec2:DescribeFlowLogs failed: AccessDenied".into(),
                    )),
                    "us-east-1" => Err(Stop::Findings(vec![at.finding(
                        "-",
                        Status::Pass,
                        "no VPC",
                    )])),
                    _ => Ok(vec![at.finding("vpc-2", Status::Fail, "no flow log")]),
                }
            })
        };
        let regional = AwsCheck {
            place: Place::Regional,
            evaluate,
        };
        assert_eq!(
            seen(&regional.run(&ctx, def).await),
            [
                (
                    "eu-west-1",
                    "vpc-1",
                    Status::Error,
                    "ec2:DescribeFlowLogs failed: AccessDenied"
                ),
                ("us-east-1", "-", Status::Pass, "no VPC"),
                ("ap-south-1", "vpc-2", Status::Fail, "no flow log"),
            ]
        );
        let home = AwsCheck {
            place: Place::Home,
            evaluate,
        };
        assert_eq!(
            seen(&home.run(&ctx, def).await),
            [("us-east-1", "-", Status::Pass, "no VPC")]
        );
        let global = AwsCheck {
            place: Place::Global,
            evaluate,
        };
        assert_eq!(
            seen(&global.run(&ctx, def).await),
            [("global", "vpc-2", Status::Fail, "no flow log")]
        );
    }
}
