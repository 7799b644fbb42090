//! An EKS cluster's Kubernetes audit log through `custody logs eks-audit`,
//! against moto's CloudWatch Logs: the `kube-apiserver-audit` streams of
//! `/aws/eks/CLUSTER/cluster` onto the case's timeline, the cluster's other
//! streams (the authenticator's) left out.

use crate::common::{Home, aws_conf, custody_aws, emulator, stderr};

/// One request as the API server audits it.
struct Req<'a> {
    id: &'a str,
    verb: &'a str,
    resource: &'a str,
    sub: Option<&'a str>,
    ns: &'a str,
    user: &'a str,
    ip: &'a str,
}

fn audit(r: &Req<'_>, t: &str) -> String {
    let mut object = serde_json::json!({ "resource": r.resource, "namespace": r.ns, "name": "web-1", "apiVersion": "v1" });
    if let Some(s) = r.sub {
        object["subresource"] = s.into();
    }
    serde_json::json!({
        "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata",
        "auditID": r.id, "stage": "ResponseComplete",
        "requestURI": format!("/api/v1/namespaces/{}/{}", r.ns, r.resource),
        "verb": r.verb, "user": { "username": r.user, "groups": ["system:authenticated"] },
        "sourceIPs": [r.ip], "userAgent": "kubectl/v1.29.0", "objectRef": object,
        "responseStatus": { "code": 200 },
        "requestReceivedTimestamp": t, "stageTimestamp": t,
    })
    .to_string()
}

#[test]
fn eks_audit_streams_onto_the_timeline_with_exec_and_secret_reads_searchable() {
    let Some(endpoint) = emulator("CUSTODY_TEST_S3_ENDPOINT") else {
        return;
    };
    let cluster = format!("prod-{}", uuid::Uuid::new_v4().simple());
    let group = format!("/aws/eks/{cluster}/cluster");
    let now = time::OffsetDateTime::now_utc();
    let now_ms = now.unix_timestamp() * 1000;
    let t = |ago: i64| {
        (now - time::Duration::seconds(ago))
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let logs = aws_sdk_cloudwatchlogs::Client::new(&aws_conf(&endpoint));
        logs.create_log_group()
            .log_group_name(&group)
            .send()
            .await
            .unwrap();
        let ev = |m: String, at: i64| {
            aws_sdk_cloudwatchlogs::types::InputLogEvent::builder()
                .message(m)
                .timestamp(at)
                .build()
                .unwrap()
        };
        for (stream, events) in [
            (
                "kube-apiserver-audit-0a1b2c",
                vec![
                    ev(
                        audit(
                            &Req {
                                id: "a1",
                                verb: "create",
                                resource: "pods",
                                sub: Some("exec"),
                                ns: "default",
                                user: "alice",
                                ip: "203.0.113.50",
                            },
                            &t(120),
                        ),
                        now_ms - 120_000,
                    ),
                    ev(
                        audit(
                            &Req {
                                id: "a2",
                                verb: "list",
                                resource: "secrets",
                                sub: None,
                                ns: "kube-system",
                                user: "system:serviceaccount:ci:deployer",
                                ip: "198.51.100.23",
                            },
                            &t(60),
                        ),
                        now_ms - 60_000,
                    ),
                ],
            ),
            (
                "authenticator-0a1b2c",
                vec![ev(
                    "time=\"2026-12-03\" level=info msg=\"access granted\"".into(),
                    now_ms - 30_000,
                )],
            ),
        ] {
            logs.create_log_stream()
                .log_group_name(&group)
                .log_stream_name(stream)
                .send()
                .await
                .unwrap();
            logs.put_log_events()
                .log_group_name(&group)
                .log_stream_name(stream)
                .set_log_events(Some(events))
                .send()
                .await
                .unwrap();
        }
    });
    let home = Home::new();
    let since = crate::timeline_time(now_ms - 3_600_000);
    let out = custody_aws(
        &home,
        &endpoint,
        &[
            "--json",
            "logs",
            "eks-audit",
            "--cluster",
            &cluster,
            "--since",
            &since,
            "--case",
            "k",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        r["artefacts"][0]["source"]["log_format"],
        "eks-audit-cloudwatch"
    );
    assert_eq!(
        r["artefacts"][0]["source"]["resource"],
        format!("logs:{group}")
    );
    assert_eq!(
        r["timeline"][0]["events"], 2,
        "only the audit streams: {r:#}"
    );
    let exec = home.json(&["timeline", "k", "action:*pods/exec"]);
    assert_eq!(exec["total"], 1, "{exec}");
    assert_eq!(exec["rows"][0]["actor"], "alice");
    assert_eq!(exec["rows"][0]["ip"], "203.0.113.50");
    assert_eq!(exec["rows"][0]["target"], "default/web-1");
    let secrets = home.json(&["timeline", "k", "action:*secrets"]);
    assert_eq!(secrets["total"], 1, "{secrets}");
    assert_eq!(secrets["rows"][0]["ip"], "198.51.100.23");
    // A cluster without audit logging: a clear error, nothing recorded as loaded.
    let out = custody_aws(
        &home,
        &endpoint,
        &[
            "logs",
            "eks-audit",
            "--cluster",
            "no-such-cluster",
            "--since",
            &since,
            "--case",
            "k2",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("/aws/eks/no-such-cluster/cluster"),
        "{}",
        stderr(&out)
    );
}
