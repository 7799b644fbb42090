//! Playbooks: which action an alert gets, by source, severity, finding
//! type, resource type and tags. Rules are tried in order; the first that
//! matches decides. An alert no rule matches is recorded and nothing else.

use serde::{Deserialize, Serialize};

use crate::alert::Alert;

/// What a job does for each instance an alert names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// The whole response: protect, memory, isolate, disk, logs.
    Respond,
    /// Isolation only.
    Isolate,
    /// A snapshot of every volume, read through EBS direct.
    AcquireDisk,
    /// The alert is recorded in the ledger; nothing is changed.
    Record,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Respond => "respond",
            Self::Isolate => "isolate",
            Self::AcquireDisk => "acquire_disk",
            Self::Record => "record",
        }
    }
}

/// One rule. Every condition given must hold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub name: String,
    /// The source name (the `{source}` of `/v1/alerts/{source}`).
    #[serde(default)]
    pub source: Option<String>,
    /// A finding type, with `*` matching any run of characters
    /// (`UnauthorizedAccess:EC2/*`).
    #[serde(default)]
    pub finding_type: Option<String>,
    #[serde(default)]
    pub min_severity: Option<f64>,
    #[serde(default)]
    pub max_severity: Option<f64>,
    #[serde(default)]
    pub resource_type: Option<String>,
    /// A tag the affected resource carries: `key=value`, or a bare `key`,
    /// which matches the key with any value (`custody:exempt = "false"`
    /// too). Tags come from the alert, so whoever may tag the resource
    /// decides; an exemption should name a value only the responders' role
    /// can set.
    #[serde(default)]
    pub tag: Option<String>,
    pub action: Action,
    /// Record what would be done, and do nothing.
    #[serde(default)]
    pub dry_run: bool,
    /// Also disassociate the instance profile when isolating.
    #[serde(default)]
    pub revoke_role: bool,
    /// `respond` captures memory (default); false leaves it out, for
    /// fleets without the SSM agent, and the job is complete without it.
    #[serde(default = "yes")]
    pub memory: bool,
    /// Process the disk images taken (`quick` or `full`, as `custody
    /// process --depth`), so the job ends with what they hold on the
    /// case's timeline. Default: not processed.
    #[serde(default)]
    pub process: Option<crate::process::scan::Profile>,
    /// POSTed a JSON summary when the job finishes or fails.
    #[serde(default)]
    pub notify: Option<String>,
    /// The environment variable holding the secret notifications are
    /// signed with (`X-Custody-Signature`, as alerts are).
    #[serde(default)]
    pub notify_secret_env: Option<String>,
}

const fn yes() -> bool {
    true
}

/// `*` matches any run of characters; everything else literally.
pub fn glob(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(rest) = text.strip_prefix(first) else {
        return false;
    };
    let rest_parts: Vec<&str> = parts.collect();
    let Some((last, mids)) = rest_parts.split_last() else {
        // No `*`: the whole text.
        return rest.is_empty();
    };
    let Some(mut rest) = rest.strip_suffix(last) else {
        return false;
    };
    for mid in mids {
        match rest.find(mid) {
            Some(i) => rest = rest.get(i + mid.len()..).unwrap_or_default(),
            None => return false,
        }
    }
    true
}

impl Rule {
    pub fn matches(&self, source: &str, alert: &Alert) -> bool {
        // `key=value` wants that value exactly; a bare key only its presence.
        let tag_ok = self.tag.as_deref().is_none_or(|t| match t.split_once('=') {
            Some((k, v)) => alert.tags.get(k).is_some_and(|x| x == v),
            None => alert.tags.contains_key(t),
        });
        self.source.as_deref().is_none_or(|s| s == source)
            && self
                .finding_type
                .as_deref()
                .is_none_or(|p| alert.finding_type.as_deref().is_some_and(|t| glob(p, t)))
            && self.min_severity.is_none_or(|m| alert.severity >= m)
            && self.max_severity.is_none_or(|m| alert.severity <= m)
            && self.resource_type.as_deref().is_none_or(|r| {
                alert
                    .resource_type
                    .as_deref()
                    .is_some_and(|t| t.eq_ignore_ascii_case(r))
            })
            && tag_ok
    }
}

/// The rule that decides for `alert`, if any.
pub fn decide<'a>(rules: &'a [Rule], source: &str, alert: &Alert) -> Option<&'a Rule> {
    rules.iter().find(|r| r.matches(source, alert))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob(
            "UnauthorizedAccess:EC2/*",
            "UnauthorizedAccess:EC2/SSHBruteForce"
        ));
        assert!(!glob(
            "UnauthorizedAccess:EC2/*",
            "Recon:EC2/PortProbeUnprotectedPort"
        ));
        assert!(glob("*", ""));
        assert!(glob("a*b*c", "a-x-b-y-c"));
        assert!(!glob("a*b*c", "a-x-c-y-b"));
        assert!(glob("exact", "exact") && !glob("exact", "exactly"));
        assert!(!glob("ab*ba", "aba"), "the ends must not overlap");
    }

    fn alert(kind: &str, severity: f64, tags: &[(&str, &str)]) -> Alert {
        let mut a: Alert = serde_json::from_value(serde_json::json!({
            "source": "guardduty", "id": "x", "time": "2026-11-30T00:00:00Z",
            "severity": severity, "severity_label": "high", "title": "t",
            "finding_type": kind, "resource_type": "Instance",
            "account": null, "region": null, "tags": {},
            "entities": {"instances": [], "accounts": [], "regions": [], "ips": [], "principals": []}
        }))
        .expect("alert");
        for (k, v) in tags {
            a.tags.insert((*k).into(), (*v).into());
        }
        a
    }

    #[test]
    fn the_first_matching_rule_decides() {
        let rules: Vec<Rule> = toml::from_str::<toml::Table>(
            r#"
            [[rule]]
            name = "exempt"
            tag = "custody:exempt"
            action = "record"
            [[rule]]
            name = "ec2-compromise"
            source = "guardduty"
            finding_type = "UnauthorizedAccess:EC2/*"
            min_severity = 7.0
            action = "respond"
            [[rule]]
            name = "ec2-low"
            source = "guardduty"
            resource_type = "instance"
            action = "acquire_disk"
            "#,
        )
        .expect("toml")
        .get("rule")
        .cloned()
        .expect("rules")
        .try_into()
        .expect("rules parse");
        let d = |a: &Alert| decide(&rules, "guardduty", a).map(|r| r.name.as_str());
        assert_eq!(
            d(&alert("UnauthorizedAccess:EC2/SSHBruteForce", 8.0, &[])),
            Some("ec2-compromise")
        );
        assert_eq!(
            d(&alert("UnauthorizedAccess:EC2/SSHBruteForce", 5.0, &[])),
            Some("ec2-low")
        );
        assert_eq!(
            d(&alert(
                "UnauthorizedAccess:EC2/SSHBruteForce",
                8.0,
                &[("custody:exempt", "")]
            )),
            Some("exempt")
        );
        assert_eq!(
            decide(&rules, "generic", &alert("Other", 9.0, &[])).map(|r| r.name.as_str()),
            None
        );
    }

    fn rules(text: &str) -> Vec<Rule> {
        toml::from_str::<toml::Table>(text)
            .expect("toml")
            .get("rule")
            .cloned()
            .expect("rules")
            .try_into()
            .expect("rules parse")
    }

    #[test]
    fn a_tag_rule_without_a_value_matches_only_the_keys_presence() {
        let bare =
            rules("[[rule]]\nname = \"bare\"\ntag = \"custody:exempt\"\naction = \"record\"");
        let valued = rules(
            "[[rule]]\nname = \"valued\"\ntag = \"custody:exempt=approved-by-ir\"\naction = \"record\"",
        );
        let kind = "UnauthorizedAccess:EC2/SSHBruteForce";
        for value in ["", "false", "no", "approved-by-ir"] {
            let a = alert(kind, 8.0, &[("custody:exempt", value)]);
            assert!(decide(&bare, "guardduty", &a).is_some(), "{value:?}");
            assert_eq!(
                decide(&valued, "guardduty", &a).is_some(),
                value == "approved-by-ir",
                "{value:?}"
            );
        }
        for rules in [&bare, &valued] {
            let untagged = alert(kind, 8.0, &[("custody:exempt-not", "approved-by-ir")]);
            assert!(decide(rules, "guardduty", &untagged).is_none());
        }
    }

    #[test]
    fn the_examples_exemption_needs_the_value_only_responders_set() {
        // The documented and the examples' rule, against the Security Hub
        // sample whose instance carries `custody:exempt = "false"`.
        let example = rules(
            "[[rule]]\nname = \"exempt\"\ntag = \"custody:exempt=approved-by-ir\"\naction = \"record\"\n\
             [[rule]]\nname = \"respond\"\nmin_severity = 7.0\naction = \"respond\"",
        );
        let sample = std::fs::read(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("examples/alerts/securityhub-imported.json"),
        )
        .expect("sample");
        let alerts = crate::alert::parse("securityhub", &sample, &crate::alert::Limits::default())
            .expect("parses");
        let a = alerts.first().expect("one finding");
        assert_eq!(
            a.tags.get("custody:exempt").map(String::as_str),
            Some("false")
        );
        assert_eq!(
            decide(&example, "securityhub", a).map(|r| r.name.as_str()),
            Some("respond"),
            "an instance tagged custody:exempt=false is not exempt"
        );
    }
}
