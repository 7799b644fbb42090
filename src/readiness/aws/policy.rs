//! A local reading of IAM and KMS policy documents, for where the service
//! cannot simulate (moto has no SimulatePrincipalPolicy) and where it is
//! exact: Allow and Deny statements on actions, over all resources. A
//! statement with a Condition, NotAction, NotResource or NotPrincipal that
//! could change the answer makes it inexact, and the check reports ERROR
//! rather than guess. `Resource` is only checked for `*`: custody acts on
//! instances and volumes it cannot name in advance.

use serde_json::Value;

/// One statement, as far as the reading needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct Statement {
    pub allow: bool,
    pub actions: Vec<String>,
    /// The statement covers every resource (`Resource: "*"`).
    pub all_resources: bool,
    /// Principals (key policies); empty for identity policies.
    pub principals: Vec<String>,
    /// NotAction instead of Action: it may cover any action.
    pub not_action: bool,
    /// Condition, NotResource or NotPrincipal present: it may or may not apply.
    pub conditional: bool,
}

/// What the statements say about one action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allowed,
    /// Explicitly denied, or allowed by no statement.
    NotAllowed,
    /// A qualified statement could decide it either way.
    Unknown,
}

/// A document as IAM returns it (URL-encoded) or plain JSON.
pub fn parse(document: &str) -> Result<Vec<Statement>, String> {
    let text = if document.trim_start().starts_with('{') {
        document.to_owned()
    } else {
        percent_encoding::percent_decode_str(document)
            .decode_utf8()
            .map_err(|e| format!("the policy is not UTF-8: {e}"))?
            .into_owned()
    };
    let doc: Value =
        serde_json::from_str(&text).map_err(|e| format!("the policy is not JSON: {e}"))?;
    let list = match doc.get("Statement") {
        Some(Value::Array(a)) => a.clone(),
        Some(s @ Value::Object(_)) => vec![s.clone()],
        _ => return Err("the policy has no Statement".into()),
    };
    Ok(list.iter().map(statement).collect())
}

fn strings(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|x| x.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    }
}

fn statement(s: &Value) -> Statement {
    let principals = match s.get("Principal") {
        Some(Value::String(p)) => vec![p.clone()],
        Some(Value::Object(m)) => m
            .iter()
            .flat_map(|(kind, v)| {
                strings(Some(v)).into_iter().map(move |p| {
                    if kind == "AWS" {
                        p
                    } else {
                        format!("{kind}:{p}")
                    }
                })
            })
            .collect(),
        _ => Vec::new(),
    };
    Statement {
        allow: s.get("Effect").and_then(Value::as_str) == Some("Allow"),
        actions: strings(s.get("Action")),
        all_resources: strings(s.get("Resource")).iter().any(|r| r == "*"),
        principals,
        not_action: s.get("NotAction").is_some(),
        conditional: ["Condition", "NotResource", "NotPrincipal"]
            .iter()
            .any(|k| s.get(*k).is_some()),
    }
}

/// IAM action patterns: case-insensitive, `*` and `?` wildcards.
pub fn action_matches(pattern: &str, action: &str) -> bool {
    fn go(p: &[u8], a: &[u8]) -> bool {
        match (p.split_first(), a.split_first()) {
            (None, None) => true,
            (Some((b'*', rest)), _) => {
                go(rest, a) || a.split_first().is_some_and(|(_, at)| go(p, at))
            }
            (Some((pc, prest)), Some((ac, arest))) => {
                (*pc == b'?' || pc.eq_ignore_ascii_case(ac)) && go(prest, arest)
            }
            _ => false,
        }
    }
    go(pattern.as_bytes(), action.as_bytes())
}

/// Whether `statements` let `action` be called on every resource, for a
/// principal that `applies` says a statement covers.
pub fn decide(
    statements: &[Statement],
    action: &str,
    applies: &dyn Fn(&Statement) -> bool,
) -> Decision {
    let relevant: Vec<&Statement> = statements
        .iter()
        .filter(|s| applies(s))
        .filter(|s| s.not_action || s.actions.iter().any(|p| action_matches(p, action)))
        .collect();
    let plain = |s: &&&Statement| !s.not_action && !s.conditional;
    if relevant.iter().filter(plain).any(|s| !s.allow) {
        return Decision::NotAllowed;
    }
    let unknown = relevant.iter().any(|s| s.not_action || s.conditional);
    let allowed = relevant
        .iter()
        .filter(plain)
        .any(|s| s.allow && s.all_resources);
    match (allowed, unknown) {
        (_, true) => Decision::Unknown,
        (true, false) => Decision::Allowed,
        (false, false) => Decision::NotAllowed,
    }
}

/// The actions custody calls as the forensic role.
pub const FORENSIC_ACTIONS: [&str; 24] = [
    "ec2:DescribeInstances",
    "ec2:DescribeVolumes",
    "ec2:DescribeSnapshots",
    "ec2:CreateSnapshot",
    "ec2:CreateTags",
    "ec2:ModifyInstanceAttribute",
    "ec2:CreateSecurityGroup",
    "ec2:RevokeSecurityGroupEgress",
    "ec2:DescribeSecurityGroups",
    "ec2:ModifyNetworkInterfaceAttribute",
    "ec2:DisassociateIamInstanceProfile",
    "ec2:StopInstances",
    "ebs:ListSnapshotBlocks",
    "ebs:ListChangedBlocks",
    "ebs:GetSnapshotBlock",
    "ssm:DescribeInstanceInformation",
    "ssm:SendCommand",
    "ssm:GetCommandInvocation",
    "ssm:CancelCommand",
    "autoscaling:DescribeAutoScalingInstances",
    "autoscaling:DetachInstances",
    "s3:PutObject",
    "s3:PutObjectRetention",
    "s3:GetObject",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_match_with_wildcards_and_any_case() {
        assert!(action_matches("ec2:*", "ec2:CreateSnapshot"));
        assert!(action_matches("EC2:create*", "ec2:CreateSnapshot"));
        assert!(action_matches("*", "ssm:SendCommand"));
        assert!(action_matches("ssm:?endCommand", "ssm:SendCommand"));
        assert!(!action_matches("ec2:Describe*", "ec2:CreateSnapshot"));
        assert!(!action_matches("ec2:CreateSnapshots", "ec2:CreateSnapshot"));
    }

    #[test]
    fn deny_wins_conditions_are_unknown_and_narrow_resources_do_not_count() {
        let doc = r#"{"Statement":[
            {"Effect":"Allow","Action":["ec2:*","ssm:SendCommand"],"Resource":"*"},
            {"Effect":"Deny","Action":"ec2:StopInstances","Resource":"*"},
            {"Effect":"Allow","Action":"s3:PutObject","Resource":"arn:aws:s3:::evidence/*"},
            {"Effect":"Allow","Action":"kms:Decrypt","Resource":"*","Condition":{"Bool":{"aws:MultiFactorAuthPresent":"true"}}}
        ]}"#;
        let s = parse(doc).expect("parse");
        let all = |_: &Statement| true;
        assert_eq!(decide(&s, "ec2:CreateSnapshot", &all), Decision::Allowed);
        assert_eq!(decide(&s, "ec2:StopInstances", &all), Decision::NotAllowed);
        assert_eq!(decide(&s, "ssm:SendCommand", &all), Decision::Allowed);
        assert_eq!(
            decide(&s, "kms:Decrypt", &all),
            Decision::Unknown,
            "only with MFA"
        );
        assert_eq!(
            decide(&s, "s3:PutObject", &all),
            Decision::NotAllowed,
            "one bucket only"
        );
        assert_eq!(decide(&s, "ssm:CancelCommand", &all), Decision::NotAllowed);
        let not_action =
            parse(r#"{"Statement":{"Effect":"Allow","NotAction":"iam:*","Resource":"*"}}"#)
                .expect("parse");
        assert_eq!(
            decide(&not_action, "ec2:CreateSnapshot", &all),
            Decision::Unknown
        );
        let encoded =
            percent_encoding::utf8_percent_encode(doc, percent_encoding::NON_ALPHANUMERIC)
                .to_string();
        assert_eq!(parse(&encoded).expect("encoded"), s);
    }
}
