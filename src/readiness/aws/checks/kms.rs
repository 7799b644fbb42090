//! KMS: the keys of encrypted volumes are enabled, and the forensic role
//! may use each (decrypt, describe, create a grant), read from the key
//! policy, the key's grants and the role's own policies.

use crate::readiness::aws::access::{get_role, identity_statements, sort_actions};
use crate::readiness::aws::context::{Ctx, failed};
use crate::readiness::aws::policy::{self, Decision, Statement};
use crate::readiness::aws::runner::{At, Findings, Stop, call_failed};
use crate::readiness::{Finding, Status};

/// The KMS keys of the region's encrypted volumes, each once; or the PASS
/// that there is none to look at.
async fn volume_keys(at: At<'_>) -> Result<Vec<String>, Stop> {
    let ec2 = aws_sdk_ec2::Client::new(&at.ctx.conf(at.region));
    let mut keys: Vec<String> = Vec::new();
    let mut pages = ec2.describe_volumes().into_paginator().send();
    while let Some(page) = pages.next().await {
        let p = page.map_err(call_failed("ec2:DescribeVolumes"))?;
        keys.extend(
            p.volumes()
                .iter()
                .filter(|v| v.encrypted().unwrap_or(false))
                .filter_map(|v| v.kms_key_id().map(str::to_owned)),
        );
    }
    keys.sort_unstable();
    keys.dedup();
    if keys.is_empty() {
        return Err(Stop::Findings(vec![at.finding(
            "-",
            Status::Pass,
            "no volume is encrypted with a KMS key",
        )]));
    }
    Ok(keys)
}

/// `aws.kms.keys_enabled`
pub(crate) async fn keys_enabled(at: At<'_>) -> Findings {
    let keys = volume_keys(at).await?;
    let kms = aws_sdk_kms::Client::new(&at.ctx.conf(at.region));
    let mut out = Vec::new();
    for key in keys {
        out.push(match kms.describe_key().key_id(&key).send().await {
            Ok(d) => {
                let state = d
                    .key_metadata()
                    .and_then(|m| m.key_state())
                    .map(|s| s.as_str().to_owned())
                    .unwrap_or_else(|| "unknown".into());
                if state == "Enabled" {
                    at.finding(&key, Status::Pass, "Enabled")
                } else {
                    at.finding(
                        &key,
                        Status::Fail,
                        format!("{state}: volumes under it cannot be read"),
                    )
                }
            }
            Err(e) => at.finding(&key, Status::Error, failed("kms:DescribeKey", &e)),
        });
    }
    Ok(out)
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

/// What one key lets the role do with it.
struct KeyAccess<'a> {
    role_arn: &'a str,
    account: &'a str,
    grants: Vec<aws_sdk_kms::types::GrantListEntry>,
    key_policy: Vec<Statement>,
    /// The role's identity policies, for where the key policy defers to IAM.
    identity: &'a Result<Vec<Statement>, String>,
}

impl KeyAccess<'_> {
    /// A grant to the role, else the key policy naming the role, else the
    /// key policy deferring to IAM (the account root) and the role's policies.
    fn decide(&self, action: &str) -> Decision {
        let granted = self.grants.iter().any(|g| {
            g.grantee_principal() == Some(self.role_arn)
                && g.operations()
                    .iter()
                    .any(|o| format!("kms:{}", o.as_str()) == action)
        });
        if granted {
            return Decision::Allowed;
        }
        let direct = policy::decide(&self.key_policy, action, &|s| {
            key_principal(s, self.role_arn, self.account).0
        });
        if direct == Decision::Allowed {
            return Decision::Allowed;
        }
        let via_root = policy::decide(&self.key_policy, action, &|s| {
            key_principal(s, self.role_arn, self.account).1
        });
        match (via_root, self.identity) {
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
    }
}

/// The key's policy and grants, as they bear on `role_arn`; or why they
/// cannot be read.
async fn key_access<'a>(
    kms: &aws_sdk_kms::Client,
    key: &str,
    ctx: &'a Ctx,
    role_arn: &'a str,
    identity: &'a Result<Vec<Statement>, String>,
) -> Result<KeyAccess<'a>, String> {
    let doc = kms
        .get_key_policy()
        .key_id(key)
        .policy_name("default")
        .send()
        .await
        .map_err(|e| failed("kms:GetKeyPolicy", &e))?
        .policy()
        .unwrap_or_default()
        .to_owned();
    let key_policy = policy::parse(&doc).map_err(|e| format!("key policy: {e}"))?;
    let grants = kms
        .list_grants()
        .key_id(key)
        .send()
        .await
        .map_err(|e| failed("kms:ListGrants", &e))?
        .grants()
        .to_vec();
    Ok(KeyAccess {
        role_arn,
        account: &ctx.account,
        grants,
        key_policy,
        identity,
    })
}

/// `aws.kms.volume_keys_usable`
pub(crate) async fn volume_keys_usable(at: At<'_>) -> Findings {
    let ctx = at.ctx;
    let keys = volume_keys(at).await?;
    let name = ctx.role(at.def);
    let role = match get_role(ctx, at.def).await.map_err(Stop::unknown)? {
        Some(r) => r,
        None => {
            return Ok(keys
                .iter()
                .map(|k| at.finding(k, Status::Fail, format!("no role named {name}")))
                .collect());
        }
    };
    let identity = identity_statements(ctx, &name).await;
    let kms = aws_sdk_kms::Client::new(&ctx.conf(at.region));
    let mut out = Vec::new();
    for key in &keys {
        let access = match key_access(&kms, key, ctx, role.arn(), &identity).await {
            Ok(a) => a,
            Err(why) => {
                out.push(at.finding(key, Status::Error, why));
                continue;
            }
        };
        out.push(key_verdict(at, key, &name, &access));
    }
    Ok(out)
}

/// The finding for one key: every action allowed, some not, or some that
/// cannot be decided here.
fn key_verdict(at: At<'_>, key: &str, role: &str, access: &KeyAccess<'_>) -> Finding {
    let (_, no, unknown) = sort_actions(&KEY_ACTIONS, |a| access.decide(a));
    if !unknown.is_empty() {
        let because = access
            .identity
            .as_ref()
            .err()
            .map(|e| format!(": {e}"))
            .unwrap_or_default();
        at.finding(
            key,
            Status::Error,
            format!(
                "{} cannot be decided locally (conditions, NotAction, or the role's policies unreadable){because}",
                unknown.join(", "),
            ),
        )
    } else if no.is_empty() {
        at.finding(
            key,
            Status::Pass,
            format!("{role} may {}", KEY_ACTIONS.join(", ")),
        )
    } else {
        at.finding(
            key,
            Status::Fail,
            format!("{role} may not {}", no.join(", ")),
        )
    }
}
