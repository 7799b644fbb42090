//! custody's own alert format, for senders with no adapter of their own.
//! Documented field by field in `examples/alerts/README.md`. Unknown fields
//! are refused so that a misspelt one (`entites`) is caught, not ignored.

use std::collections::BTreeMap;

use super::json::Node;
use super::{
    Alert, AlertError, AlertSource, EntitySet, Kind, Limits, SeverityLabel, alert_id, rfc3339,
    scope, score,
};

const ADAPTER: AlertSource = AlertSource::Generic;
const FIELDS: [&str; 10] = [
    "id",
    "time",
    "severity",
    "title",
    "type",
    "resource_type",
    "account",
    "region",
    "tags",
    "entities",
];
const ENTITY_FIELDS: [&str; 5] = ["instances", "accounts", "regions", "ips", "principals"];
const SEVERITY: &str = "a severity: a number from 0 to 10, or low, medium, high or critical";

pub(super) fn parse(root: &Node<'_>, limits: &Limits) -> Result<Alert, AlertError> {
    root.deny_unknown(&FIELDS)?;
    let id = alert_id(&root.req("id")?)?;
    let time = rfc3339(&root.req("time")?)?;
    let severity = severity(&root.req("severity")?)?;
    let title = root.req_str("title")?.to_owned();
    let finding_type = root.opt_str("type")?.map(str::to_owned);
    let resource_type = root.opt_str("resource_type")?.map(str::to_owned);

    let mut entities = EntitySet::new(ADAPTER, &id, limits);
    let account = scope(
        &mut entities,
        Kind::Account,
        non_empty(root.get("account")?)?,
    )?;
    let region = scope(&mut entities, Kind::Region, non_empty(root.get("region")?)?)?;

    let mut tags = BTreeMap::new();
    if let Some(map) = root.get("tags")? {
        for (k, v) in map.members()? {
            tags.insert(k.to_owned(), v.as_str()?.to_owned());
        }
    }

    if let Some(e) = root.get("entities")? {
        e.deny_unknown(&ENTITY_FIELDS)?;
        entities.add_all(Kind::Instance, e.get("instances")?)?;
        entities.add_all(Kind::Account, e.get("accounts")?)?;
        entities.add_all(Kind::Region, e.get("regions")?)?;
        entities.add_all(Kind::Ip, e.get("ips")?)?;
        entities.add_all(Kind::Principal, e.get("principals")?)?;
    }

    Ok(Alert {
        source: ADAPTER,
        id,
        time,
        severity,
        severity_label: SeverityLabel::from_score(severity),
        title,
        finding_type,
        resource_type,
        account,
        region,
        tags,
        entities: entities.finish(),
    })
}

fn non_empty<'a>(node: Option<Node<'a>>) -> Result<Option<Node<'a>>, AlertError> {
    super::first_present([node])
}

/// A number on custody's 0–10 scale, or a label standing for the bottom of
/// its band.
fn severity(node: &Node<'_>) -> Result<f64, AlertError> {
    if !node.is_string() {
        return score(node, 10.0, SEVERITY);
    }
    let text = node.as_str()?;
    let label = match text.to_ascii_lowercase().as_str() {
        "low" => SeverityLabel::Low,
        "medium" => SeverityLabel::Medium,
        "high" => SeverityLabel::High,
        "critical" => SeverityLabel::Critical,
        _ => {
            return Err(AlertError::InvalidSeverity {
                adapter: ADAPTER,
                path: node.path(),
                value: format!("{:?}", super::clip(text)),
                expected: SEVERITY,
            });
        }
    };
    Ok(label.floor())
}
