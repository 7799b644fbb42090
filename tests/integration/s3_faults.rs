//! S3 uploads under faults, through a proxy in front of moto that injects
//! them (see `fault_proxy`): the service stopping half-way, throttling, and
//! access errors. Nothing half-written is ever recorded complete.

use crate::common::{Home, emulator, noise, stderr};
use crate::fault_proxy::{Fault, FaultProxy, Rule};
use crate::s3::{bucket, client};

fn run(home: &Home, endpoint: &str, store: &str, args: &[&str]) -> std::process::Output {
    home.cmd()
        .env("RUST_LOG", "custody=info")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .args(["--store", store, "--endpoint-url", endpoint])
        .args(args)
        .output()
        .unwrap()
}

/// The journals of interrupted uploads in `home`, with their part counts.
fn journals(home: &Home) -> Vec<(std::path::PathBuf, usize)> {
    let Ok(rd) = std::fs::read_dir(home.path().join("uploads")) else {
        return Vec::new();
    };
    rd.flatten()
        .map(|e| {
            let text = std::fs::read_to_string(e.path()).unwrap();
            (e.path(), text.lines().count().saturating_sub(1))
        })
        .collect()
}

async fn keys(s3: &aws_sdk_s3::Client, bucket: &str) -> Vec<String> {
    let out = s3.list_objects_v2().bucket(bucket).send().await.unwrap();
    out.contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_owned))
        .collect()
}

async fn open_uploads(s3: &aws_sdk_s3::Client, bucket: &str) -> usize {
    let out = s3
        .list_multipart_uploads()
        .bucket(bucket)
        .send()
        .await
        .unwrap();
    out.uploads().len()
}

#[test]
fn an_upload_cut_half_way_records_nothing_and_resumes_from_confirmed_parts() {
    let Some(endpoint) = emulator("CUSTODY_TEST_S3_ENDPOINT") else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let s3 = client(&endpoint);
    let bucket = rt.block_on(bucket(&s3));
    let (proxy, via) = rt.block_on(FaultProxy::start(&endpoint));
    let home = Home::new();
    let src = home.path().join("disk.img");
    let data = noise(60 << 20, 11);
    std::fs::write(&src, &data).unwrap();
    let store = format!("s3://{bucket}/ev");
    let acquire = [
        "--json",
        "acquire",
        "file",
        src.to_str().unwrap(),
        "--case",
        "cut",
    ];

    // The service goes away after three parts have gone through.
    proxy.rule(Rule {
        op: "UploadPart",
        path: "",
        pass: 3,
        times: 1,
        fault: Fault::Die,
    });
    let out = run(&home, &via, &store, &acquire);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("rerun the same command to resume"),
        "{}",
        stderr(&out)
    );
    // Nothing recorded complete: no artefact object, no manifest.
    let after_cut = rt.block_on(keys(&s3, &bucket));
    assert!(
        !after_cut
            .iter()
            .any(|k| k.contains("/artefacts/") || k.contains("/manifests/")),
        "{after_cut:?}"
    );
    // The upload is kept, with its confirmed parts journalled.
    assert_eq!(rt.block_on(open_uploads(&s3, &bucket)), 1);
    let j = journals(&home);
    assert_eq!(j.len(), 1, "{j:?}");
    let confirmed = j[0].1;
    assert!(confirmed >= 3, "{confirmed} parts journalled");
    // The failure is in the ledger, which still verifies.
    let entries =
        std::fs::read_to_string(home.path().join("ledger").join("entries.jsonl")).unwrap();
    assert!(entries.contains("\"failed\""), "{entries}");
    let out = home.run(&["ledger", "verify"]);
    assert!(out.status.success(), "{}", stderr(&out));

    // The service is back: the same command sends only the missing parts.
    proxy.heal();
    proxy.reset_counts();
    let out = run(&home, &via, &store, &acquire);
    assert!(out.status.success(), "{}", stderr(&out));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let a = &r["artefacts"][0];
    let stored = a["stored"]["size"].as_u64().unwrap();
    let parts = stored.div_ceil(8 << 20) as usize;
    let sent = proxy.count("UploadPart") as usize;
    assert_eq!(
        sent + confirmed,
        parts,
        "{sent} parts sent on the rerun, {confirmed} confirmed before, {parts} in all: {}",
        stderr(&out)
    );
    assert!(a["notes"].to_string().contains("resumed the upload"), "{a}");
    assert_eq!(a["raw"]["sha256"], custody::evidence::sha256_hex(&data));
    assert!(
        journals(&home).is_empty(),
        "the journal is removed when done"
    );
    assert_eq!(rt.block_on(open_uploads(&s3, &bucket)), 0);
    // Read back through moto directly: both digests hold.
    let out = run(&home, &endpoint, &store, &["verify", "cut"]);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        stderr(&out)
    );
}

#[test]
fn throttling_is_retried_and_access_errors_are_not() {
    let Some(endpoint) = emulator("CUSTODY_TEST_S3_ENDPOINT") else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let s3 = client(&endpoint);
    let bucket = rt.block_on(bucket(&s3));
    let (proxy, via) = rt.block_on(FaultProxy::start(&endpoint));
    let home = Home::new();
    let src = home.path().join("disk.img");
    // Three parts: 8 + 8 + 4 MiB.
    std::fs::write(&src, noise(20 << 20, 5)).unwrap();
    let store = format!("s3://{bucket}/ev");

    proxy.rule(Rule {
        op: "UploadPart",
        path: "",
        pass: 1,
        times: 2,
        fault: Fault::Status(503, "SlowDown"),
    });
    let out = run(
        &home,
        &via,
        &store,
        &["acquire", "file", src.to_str().unwrap(), "--case", "slow"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        proxy.count("UploadPart"),
        3 + 2,
        "two throttled parts retried"
    );

    proxy.heal();
    proxy.reset_counts();
    proxy.rule(Rule {
        op: "UploadPart",
        path: "",
        pass: 0,
        times: 1000,
        fault: Fault::Status(403, "AccessDenied"),
    });
    let out = run(
        &home,
        &via,
        &store,
        &["acquire", "file", src.to_str().unwrap(), "--case", "denied"],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("AccessDenied"), "{}", stderr(&out));
    // Each part was tried once at most: with retries there would be 5 tries
    // of each part that was started.
    let tries = proxy.count("UploadPart");
    assert!((1..=3).contains(&tries), "{tries} UploadPart requests");
    let keys = rt.block_on(keys(&s3, &bucket));
    assert!(
        !keys.iter().any(|k| k.contains("cases/denied/")),
        "{keys:?}"
    );
}
