//! The forensic role's effective permissions and its use of KMS keys:
//! simulated by IAM where the service can, else read locally from the
//! role's policies where that is exact (see [`super::policy`]).

use super::checks::{error, get_role, required_role, volume_keys};
use super::policy::{self, Decision, FORENSIC_ACTIONS, Statement};
use super::{Ctx, failed};
use crate::readiness::catalogue::CheckDef;
use crate::readiness::{Finding, Status};

/// Every statement of the role's identity policies (attached and inline).
async fn identity_statements(ctx: &Ctx, role: &str) -> Result<Vec<Statement>, String> {
    let iam = aws_sdk_iam::Client::new(&ctx.conf(&ctx.home));
    let mut out = Vec::new();
    let attached = iam
        .list_attached_role_policies()
        .role_name(role)
        .send()
        .await
        .map_err(|e| failed("iam:ListAttachedRolePolicies", &e))?;
    for p in attached.attached_policies() {
        let Some(arn) = p.policy_arn() else { continue };
        let meta = iam
            .get_policy()
            .policy_arn(arn)
            .send()
            .await
            .map_err(|e| failed("iam:GetPolicy", &e))?;
        let version = meta
            .policy()
            .and_then(|p| p.default_version_id())
            .ok_or_else(|| format!("policy {arn} has no default version"))?;
        let doc = iam
            .get_policy_version()
            .policy_arn(arn)
            .version_id(version)
            .send()
            .await
            .map_err(|e| failed("iam:GetPolicyVersion", &e))?;
        let text = doc
            .policy_version()
            .and_then(|v| v.document())
            .ok_or_else(|| format!("policy {arn} has no document"))?;
        out.extend(policy::parse(text).map_err(|e| format!("policy {arn}: {e}"))?);
    }
    let inline = iam
        .list_role_policies()
        .role_name(role)
        .send()
        .await
        .map_err(|e| failed("iam:ListRolePolicies", &e))?;
    for name in inline.policy_names() {
        let doc = iam
            .get_role_policy()
            .role_name(role)
            .policy_name(name)
            .send()
            .await
            .map_err(|e| failed("iam:GetRolePolicy", &e))?;
        out.extend(
            policy::parse(doc.policy_document())
                .map_err(|e| format!("inline policy {name}: {e}"))?,
        );
    }
    Ok(out)
}

/// Sorts `actions` by what `decide` says: (allowed, not allowed, unknown).
fn sort_actions<'a>(
    actions: &[&'a str],
    decide: impl Fn(&str) -> Decision,
) -> (Vec<&'a str>, Vec<&'a str>, Vec<&'a str>) {
    let (mut yes, mut no, mut unknown) = (Vec::new(), Vec::new(), Vec::new());
    for a in actions {
        match decide(a) {
            Decision::Allowed => yes.push(*a),
            Decision::NotAllowed => no.push(*a),
            Decision::Unknown => unknown.push(*a),
        }
    }
    (yes, no, unknown)
}

pub(crate) async fn role_permissions(ctx: &Ctx, def: &CheckDef) -> Vec<Finding> {
    let name = ctx.role(def);
    let role = match required_role(ctx, def).await {
        Ok(r) => r,
        Err(findings) => return findings,
    };
    let f = |status, evidence: String| vec![ctx.finding(def, "global", &name, status, evidence)];
    let iam = aws_sdk_iam::Client::new(&ctx.conf(&ctx.home));
    let simulated = iam
        .simulate_principal_policy()
        .policy_source_arn(role.arn())
        .set_action_names(Some(
            FORENSIC_ACTIONS.iter().map(|a| (*a).to_owned()).collect(),
        ))
        .send()
        .await;
    match simulated {
        Ok(sim) => {
            let denied: Vec<&str> = sim
                .evaluation_results()
                .iter()
                .filter(|r| r.eval_decision().as_str() != "allowed")
                .map(|r| r.eval_action_name())
                .collect();
            if denied.is_empty() {
                f(
                    Status::Pass,
                    format!(
                        "all {} actions allowed (simulated by IAM)",
                        FORENSIC_ACTIONS.len()
                    ),
                )
            } else {
                f(
                    Status::Fail,
                    format!("not allowed (simulated by IAM): {}", denied.join(", ")),
                )
            }
        }
        Err(sim_err) => {
            // The reason the simulation could not be used is part of the evidence.
            let why = failed("iam:SimulatePrincipalPolicy", &sim_err);
            if role.permissions_boundary().is_some() {
                return f(
                    Status::Error,
                    format!(
                        "{why}; a permissions boundary applies, so the role's policies alone do not decide"
                    ),
                );
            }
            let statements = match identity_statements(ctx, &name).await {
                Ok(s) => s,
                Err(e) => return f(Status::Error, format!("{why}; {e}")),
            };
            let (_, no, unknown) = sort_actions(&FORENSIC_ACTIONS, |a| {
                policy::decide(&statements, a, &|_| true)
            });
            if !unknown.is_empty() {
                f(
                    Status::Error,
                    format!(
                        "{why}; conditions or NotAction in the role's policies keep {} from being decided locally",
                        unknown.join(", ")
                    ),
                )
            } else if no.is_empty() {
                f(
                    Status::Pass,
                    format!(
                        "all {} actions allowed (read from the role's policies, since {why}; service control policies are not seen)",
                        FORENSIC_ACTIONS.len()
                    ),
                )
            } else {
                f(
                    Status::Fail,
                    format!(
                        "not allowed by the role's policies: {} (read locally, since {why})",
                        no.join(", ")
                    ),
                )
            }
        }
    }
}

/// Whether a key policy statement names `role` (directly or as `*`), or the
/// account root, which hands the decision to IAM.
fn key_principal(s: &Statement, role_arn: &str, account: &str) -> (bool, bool) {
    let direct = s.principals.iter().any(|p| p == role_arn || p == "*");
    let root = s
        .principals
        .iter()
        .any(|p| p == account || *p == format!("arn:aws:iam::{account}:root"));
    (direct, root)
}

const KEY_ACTIONS: [&str; 3] = ["kms:Decrypt", "kms:CreateGrant", "kms:DescribeKey"];

pub(crate) fn volume_keys_usable<'a>(
    ctx: &'a Ctx,
    def: &'a CheckDef,
    region: String,
) -> futures::future::BoxFuture<'a, Vec<Finding>> {
    Box::pin(async move {
        let keys = match volume_keys(ctx, def, &region).await {
            Ok(k) => k,
            Err(findings) => return findings,
        };
        let name = ctx.role(def);
        let role = match get_role(ctx, def).await {
            Ok(Some(r)) => r,
            Ok(None) => {
                return keys
                    .iter()
                    .map(|k| {
                        ctx.finding(
                            def,
                            &region,
                            k,
                            Status::Fail,
                            format!("no role named {name}"),
                        )
                    })
                    .collect();
            }
            Err(e) => return error(ctx, def, &region, "-", e),
        };
        let identity = identity_statements(ctx, &name).await;
        let kms = aws_sdk_kms::Client::new(&ctx.conf(&region));
        let mut out = Vec::new();
        for key in &keys {
            let doc = match kms
                .get_key_policy()
                .key_id(key)
                .policy_name("default")
                .send()
                .await
            {
                Ok(p) => p.policy().unwrap_or_default().to_owned(),
                Err(e) => {
                    out.push(ctx.finding(
                        def,
                        &region,
                        key,
                        Status::Error,
                        failed("kms:GetKeyPolicy", &e),
                    ));
                    continue;
                }
            };
            let key_policy = match policy::parse(&doc) {
                Ok(s) => s,
                Err(e) => {
                    out.push(ctx.finding(
                        def,
                        &region,
                        key,
                        Status::Error,
                        format!("key policy: {e}"),
                    ));
                    continue;
                }
            };
            let grants = match kms.list_grants().key_id(key).send().await {
                Ok(g) => g.grants().to_vec(),
                Err(e) => {
                    out.push(ctx.finding(
                        def,
                        &region,
                        key,
                        Status::Error,
                        failed("kms:ListGrants", &e),
                    ));
                    continue;
                }
            };
            let role_arn = role.arn();
            let mut problems = Vec::new();
            let decide = |action: &str| -> Decision {
                let granted = grants.iter().any(|g| {
                    g.grantee_principal() == Some(role_arn)
                        && g.operations()
                            .iter()
                            .any(|o| format!("kms:{}", o.as_str()) == action)
                });
                if granted {
                    return Decision::Allowed;
                }
                let direct = policy::decide(&key_policy, action, &|s| {
                    key_principal(s, role_arn, &ctx.account).0
                });
                if direct == Decision::Allowed {
                    return Decision::Allowed;
                }
                let via_root = policy::decide(&key_policy, action, &|s| {
                    key_principal(s, role_arn, &ctx.account).1
                });
                match (via_root, &identity) {
                    (Decision::Allowed, Ok(st)) => policy::decide(st, action, &|_| true),
                    (Decision::Allowed, Err(_)) => Decision::Unknown,
                    (other, _) => {
                        if direct == Decision::Unknown {
                            Decision::Unknown
                        } else {
                            other
                        }
                    }
                }
            };
            let (_, no, unknown) = sort_actions(&KEY_ACTIONS, decide);
            if let Err(e) = &identity
                && !unknown.is_empty()
            {
                problems.push(e.clone());
            }
            out.push(if !unknown.is_empty() {
                ctx.finding(
                    def,
                    &region,
                    key,
                    Status::Error,
                    format!(
                        "{} cannot be decided locally (conditions, NotAction, or the role's policies unreadable){}",
                        unknown.join(", "),
                        problems.first().map(|p| format!(": {p}")).unwrap_or_default()
                    ),
                )
            } else if no.is_empty() {
                ctx.finding(def, &region, key, Status::Pass, format!("{name} may {}", KEY_ACTIONS.join(", ")))
            } else {
                ctx.finding(def, &region, key, Status::Fail, format!("{name} may not {}", no.join(", ")))
            });
        }
        out
    })
}
