//! IAM: the forensic role exists, only the response account can assume
//! it, and it may call every API custody needs (simulated by IAM where the
//! service can, else read from the role's own policies where that is exact).

use crate::readiness::Status;
use crate::readiness::aws::access::{get_role, identity_statements, required_role, sort_actions};
use crate::readiness::aws::context::failed;
use crate::readiness::aws::policy::{self, FORENSIC_ACTIONS};
use crate::readiness::aws::runner::{At, Findings, Stop};

/// `aws.iam.forensic_role`
pub(crate) async fn forensic_role(at: At<'_>) -> Findings {
    let name = at.ctx.role(at.def);
    match get_role(at.ctx, at.def).await {
        Ok(Some(r)) => Ok(vec![at.finding(
            &name,
            Status::Pass,
            format!("{} exists", r.arn()),
        )]),
        Ok(None) => Ok(vec![at.finding(
            &name,
            Status::Fail,
            format!("no role named {name}"),
        )]),
        Err(e) => Err(Stop::unknown_on(&name, e)),
    }
}

/// The principals allowed to assume a role, from its trust policy (the
/// document IAM returns URL-encoded; some endpoints send it plain).
fn trusted_principals(document: &str) -> Result<Vec<String>, String> {
    let assume = [
        "sts:AssumeRole",
        "sts:AssumeRoleWithWebIdentity",
        "sts:AssumeRoleWithSAML",
    ];
    Ok(policy::parse(document)?
        .into_iter()
        .filter(|s| s.allow)
        .filter(|s| {
            s.actions
                .iter()
                .any(|a| assume.iter().any(|x| policy::action_matches(a, x)))
        })
        .flat_map(|s| {
            if s.principals.is_empty() {
                vec!["(no principal)".to_owned()]
            } else {
                s.principals
            }
        })
        .collect())
}

/// Whether `principal` (from a trust policy's `AWS` list) is in `account`.
fn in_account(principal: &str, account: &str) -> bool {
    principal == account || principal.starts_with(&format!("arn:aws:iam::{account}:"))
}

/// `aws.iam.forensic_role_trust`
pub(crate) async fn forensic_role_trust(at: At<'_>) -> Findings {
    let name = at.ctx.role(at.def);
    let role = required_role(at).await?;
    let response = at
        .ctx
        .scope
        .response_account
        .clone()
        .unwrap_or_else(|| at.ctx.account.clone());
    let principals = trusted_principals(role.assume_role_policy_document().unwrap_or_default())
        .map_err(|e| Stop::unknown_on(&name, e))?;
    let outside: Vec<&String> = principals
        .iter()
        .filter(|p| !in_account(p, &response))
        .collect();
    Ok(vec![if principals.is_empty() {
        at.finding(&name, Status::Fail, "no principal may assume it")
    } else if outside.is_empty() {
        at.finding(
            &name,
            Status::Pass,
            format!("assumable only from account {response}"),
        )
    } else {
        at.finding(
            &name,
            Status::Fail,
            format!(
                "assumable from outside account {response}: {}",
                outside
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
    }])
}

/// `aws.iam.forensic_role_permissions`
pub(crate) async fn forensic_role_permissions(at: At<'_>) -> Findings {
    let name = at.ctx.role(at.def);
    let role = required_role(at).await?;
    let iam = aws_sdk_iam::Client::new(&at.ctx.conf(&at.ctx.home));
    let simulated = iam
        .simulate_principal_policy()
        .policy_source_arn(role.arn())
        .set_action_names(Some(
            FORENSIC_ACTIONS.iter().map(|a| (*a).to_owned()).collect(),
        ))
        .send()
        .await;
    let (status, evidence) = match simulated {
        Ok(sim) => {
            let denied: Vec<&str> = sim
                .evaluation_results()
                .iter()
                .filter(|r| r.eval_decision().as_str() != "allowed")
                .map(|r| r.eval_action_name())
                .collect();
            if denied.is_empty() {
                (
                    Status::Pass,
                    format!(
                        "all {} actions allowed (simulated by IAM)",
                        FORENSIC_ACTIONS.len()
                    ),
                )
            } else {
                (
                    Status::Fail,
                    format!("not allowed (simulated by IAM): {}", denied.join(", ")),
                )
            }
        }
        Err(sim_err) => {
            // The reason the simulation could not be used is part of the evidence.
            let why = failed("iam:SimulatePrincipalPolicy", &sim_err);
            read_locally(at, &name, role.permissions_boundary().is_some(), why).await
        }
    };
    Ok(vec![at.finding(&name, status, evidence)])
}

/// The role's permissions read from its own policies, where IAM could not
/// simulate them (`why`): exact, or ERROR saying what keeps it from being.
async fn read_locally(at: At<'_>, name: &str, boundary: bool, why: String) -> (Status, String) {
    if boundary {
        return (
            Status::Error,
            format!(
                "{why}; a permissions boundary applies, so the role's policies alone do not decide"
            ),
        );
    }
    let statements = match identity_statements(at.ctx, name).await {
        Ok(s) => s,
        Err(e) => return (Status::Error, format!("{why}; {e}")),
    };
    let (_, no, unknown) = sort_actions(&FORENSIC_ACTIONS, |a| {
        policy::decide(&statements, a, &|_| true)
    });
    if !unknown.is_empty() {
        (
            Status::Error,
            format!(
                "{why}; conditions or NotAction in the role's policies keep {} from being decided locally",
                unknown.join(", ")
            ),
        )
    } else if no.is_empty() {
        (
            Status::Pass,
            format!(
                "all {} actions allowed (read from the role's policies, since {why}; service control policies are not seen)",
                FORENSIC_ACTIONS.len()
            ),
        )
    } else {
        (
            Status::Fail,
            format!(
                "not allowed by the role's policies: {} (read locally, since {why})",
                no.join(", ")
            ),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trust_policies_are_read_encoded_or_plain() {
        let plain = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":["arn:aws:iam::111122223333:root","444455556666"],"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"},{"Effect":"Deny","Principal":"*","Action":"sts:AssumeRole"}]}"#;
        let encoded =
            percent_encoding::utf8_percent_encode(plain, percent_encoding::NON_ALPHANUMERIC)
                .to_string();
        for doc in [plain, encoded.as_str()] {
            let p = trusted_principals(doc).expect("parse");
            assert_eq!(
                p,
                vec![
                    "arn:aws:iam::111122223333:root".to_owned(),
                    "444455556666".to_owned(),
                    "Service:ec2.amazonaws.com".to_owned()
                ]
            );
        }
        assert!(in_account(
            "arn:aws:iam::111122223333:role/responder",
            "111122223333"
        ));
        assert!(!in_account(
            "arn:aws:iam::1111222233334:root",
            "111122223333"
        ));
        assert!(!in_account("*", "111122223333"));
        assert!(trusted_principals("not json").is_err());
    }
}
