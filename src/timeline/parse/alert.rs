//! An alert as the webhook server accepted it (custody's normalised form,
//! kept in the case when a job processes images), so that the alert that
//! started a case stands on its timeline beside what the images hold.

use super::{Record, Sink, ip, problem, str_at, time_us};
use crate::timeline::Event;

pub fn alert(bytes: &[u8], sink: &mut dyn Sink) {
    let v: serde_json::Value = match serde_json::from_slice(bytes) {
        Ok(v) => v,
        Err(e) => {
            sink.problem(problem(
                "byte 0",
                format!("not an alert as custody keeps it: {e}"),
            ));
            return;
        }
    };
    let Some(t) = str_at(&v, &["time"]).and_then(time_us) else {
        sink.problem(problem("time", "the alert has no readable time"));
        return;
    };
    let list = |k: &str| -> Vec<String> {
        v.pointer(&format!("/entities/{k}"))
            .and_then(|x| x.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    let action = str_at(&v, &["finding_type"]).unwrap_or("alert");
    let mut e = Event::new(t, "alert", action);
    e.account = str_at(&v, &["account"]).map(str::to_owned);
    e.outcome = str_at(&v, &["severity_label"]).map(str::to_owned);
    e.record_id = str_at(&v, &["id"]).map(str::to_owned);
    let instances = list("instances");
    e.target = (!instances.is_empty()).then(|| instances.join(","));
    e.ip = list("ips").first().and_then(|s| ip(s));
    e.actor = list("principals").first().cloned();
    e.message = str_at(&v, &["title"]).unwrap_or_default().to_owned();
    for (k, path) in [
        ("alert_source", "source"),
        ("resource_type", "resource_type"),
        ("region", "region"),
    ] {
        if let Some(x) = str_at(&v, &[path]) {
            e.attributes.push((k.into(), x.to_owned()));
        }
    }
    if let Some(s) = v.get("severity").and_then(serde_json::Value::as_f64) {
        e.attributes.push(("severity".into(), s.to_string()));
    }
    e.locator = "alert".into();
    sink.record(e, Record::json(bytes, &v));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timeline::parse::Collect;

    #[test]
    fn an_alert_is_one_event_naming_its_instances() {
        let a = br#"{"source":"guardduty","id":"f-1","time":"2026-12-01T10:00:00Z","severity":8.0,
            "severity_label":"high","title":"SSH brute force against i-0abc","finding_type":"UnauthorizedAccess:EC2/SSHBruteForce",
            "resource_type":"Instance","account":"123456789012","region":"eu-west-1",
            "entities":{"instances":["i-0123456789abcdef0"],"accounts":[],"regions":[],"ips":["198.51.100.23"],"principals":[]}}"#;
        let mut c = Collect::default();
        alert(a, &mut c);
        assert!(c.problems.is_empty(), "{:?}", c.problems);
        let e = &c.events[0];
        assert_eq!(e.action, "UnauthorizedAccess:EC2/SSHBruteForce");
        assert_eq!(e.target.as_deref(), Some("i-0123456789abcdef0"));
        assert_eq!(
            e.ip.map(|i| i.to_string()).as_deref(),
            Some("198.51.100.23")
        );
        assert_eq!(e.attribute("severity"), Some("8"));
        let mut c = Collect::default();
        alert(b"{\"time\": 5", &mut c);
        assert_eq!(c.problems.len(), 1);
    }
}
