//! The forensic role, as the IAM and KMS checks both read it: the role
//! itself, the statements of its identity policies (attached and inline,
//! for where IAM cannot simulate and [`super::policy`] reads them locally),
//! and a list of actions sorted by what a decision says of each.

use super::context::{Ctx, failed};
use super::policy::{self, Decision, Statement};
use super::runner::{At, Stop};
use crate::readiness::Status;
use crate::readiness::catalogue::CheckDef;

/// The forensic role, `None` when there is no role of that name.
pub(crate) async fn get_role(
    ctx: &Ctx,
    def: &CheckDef,
) -> Result<Option<aws_sdk_iam::types::Role>, String> {
    let iam = aws_sdk_iam::Client::new(&ctx.conf(&ctx.home));
    match iam.get_role().role_name(ctx.role(def)).send().await {
        Ok(r) => Ok(r.role().cloned()),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_no_such_entity_exception()) =>
        {
            Ok(None)
        }
        Err(e) => Err(failed("iam:GetRole", &e)),
    }
}

/// The forensic role, or the finding that says it is missing (FAIL) or
/// could not be read (ERROR): for the IAM checks that look inside it.
pub(crate) async fn required_role(at: At<'_>) -> Result<aws_sdk_iam::types::Role, Stop> {
    let name = at.ctx.role(at.def);
    match get_role(at.ctx, at.def).await {
        Ok(Some(r)) => Ok(r),
        Ok(None) => Err(Stop::Findings(vec![at.finding(
            &name,
            Status::Fail,
            format!("no role named {name}"),
        )])),
        Err(e) => Err(Stop::unknown_on(&name, e)),
    }
}

/// Every statement of the role's identity policies (attached and inline).
pub(crate) async fn identity_statements(ctx: &Ctx, role: &str) -> Result<Vec<Statement>, String> {
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
pub(crate) fn sort_actions<'a>(
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
