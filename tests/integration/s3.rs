//! The test rig reaches moto's S3 through the real AWS SDK.

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::primitives::ByteStream;

use crate::common::{emulator, mixed_bytes};

pub fn client(endpoint: &str) -> aws_sdk_s3::Client {
    let conf = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new(
            "testing",
            "testing",
            None,
            None,
            "custody-tests",
        ))
        .force_path_style(true)
        // moto answers unimplemented calls with HTTP 500; retries would only slow the failure.
        .retry_config(aws_sdk_s3::config::retry::RetryConfig::standard().with_max_attempts(1))
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

#[tokio::test]
async fn s3_put_and_get_through_the_sdk() {
    let Some(endpoint) = emulator("CUSTODY_TEST_S3_ENDPOINT") else {
        return;
    };
    let s3 = client(&endpoint);
    let bucket = format!("rig-{}", uuid::Uuid::new_v4().simple());
    s3.create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .expect("create bucket");
    let body = mixed_bytes(3 << 20, 11);
    s3.put_object()
        .bucket(&bucket)
        .key("cases/rig/object")
        .body(ByteStream::from(body.clone()))
        .checksum_algorithm(aws_sdk_s3::types::ChecksumAlgorithm::Sha256)
        .send()
        .await
        .expect("put");
    let got = s3
        .get_object()
        .bucket(&bucket)
        .key("cases/rig/object")
        .send()
        .await
        .expect("get");
    let bytes = got.body.collect().await.expect("body").into_bytes();
    assert_eq!(
        custody::evidence::sha256_hex(&bytes),
        custody::evidence::sha256_hex(&body)
    );
    let missing = s3.get_object().bucket(&bucket).key("nope").send().await;
    assert!(missing.is_err(), "a missing key must be an error");
}

fn chunks(data: &[u8], size: usize) -> custody::store::EvidenceStream {
    let parts: Vec<std::io::Result<bytes::Bytes>> = data
        .chunks(size)
        .map(|c| Ok(bytes::Bytes::copy_from_slice(c)))
        .collect();
    Box::pin(futures::stream::iter(parts))
}

pub async fn bucket(s3: &aws_sdk_s3::Client) -> String {
    let name = format!("ev-{}", uuid::Uuid::new_v4().simple());
    s3.create_bucket()
        .bucket(&name)
        .send()
        .await
        .expect("create bucket");
    name
}

#[tokio::test]
async fn s3_store_streams_multipart_and_never_overwrites() {
    use custody::store::s3::{S3Options, S3Store};
    use custody::store::{EvidenceStore, ObjectKey, StoreError};
    let Some(endpoint) = emulator("CUSTODY_TEST_S3_ENDPOINT") else {
        return;
    };
    let s3 = client(&endpoint);
    let bucket = bucket(&s3).await;
    let opts = S3Options {
        part_size: 5 << 20,
        parts_in_flight: 2,
        ..S3Options::default()
    };
    let store = S3Store::new(s3.clone(), &bucket, "evidence/", opts);
    assert_eq!(store.location(), format!("s3://{bucket}/evidence"));

    let data = mixed_bytes(17 << 20, 21);
    let key = ObjectKey::new("cases/c1/artefacts/a.zst").unwrap();
    let stored = store.put(&key, chunks(&data, 1 << 20)).await.expect("put");
    assert_eq!(stored.size, data.len() as u64);
    assert!(stored.etag.is_some());
    // Four parts went up, and the object is where the prefix says.
    let head = s3
        .head_object()
        .bucket(&bucket)
        .key("evidence/cases/c1/artefacts/a.zst")
        .send()
        .await
        .expect("head");
    assert_eq!(head.content_length, Some(data.len() as i64));
    let back = store.get_bytes(&key).await.expect("get");
    assert_eq!(
        custody::evidence::sha256_hex(&back),
        custody::evidence::sha256_hex(&data)
    );
    assert_eq!(
        &store.get_range(&key, 6 << 20, 10).await.expect("range")[..],
        &data[6 << 20..(6 << 20) + 10]
    );
    assert_eq!(store.size(&key).await.expect("size"), data.len() as u64);

    let small = ObjectKey::new("cases/c1/manifests/a.json").unwrap();
    store
        .put_bytes(&small, bytes::Bytes::from_static(b"{}"))
        .await
        .expect("small put");
    assert_eq!(
        store.list("cases/").await.expect("list"),
        vec![key.clone(), small.clone()]
    );
    let again = store
        .put_bytes(&key, bytes::Bytes::from_static(b"other"))
        .await;
    assert!(
        matches!(again, Err(StoreError::AlreadyExists { .. })),
        "{again:?}"
    );
    let missing = store.get(&ObjectKey::new("cases/none").unwrap()).await;
    assert!(matches!(missing, Err(StoreError::NotFound { .. })));
}

#[tokio::test]
async fn s3_store_aborts_an_upload_whose_source_fails() {
    use custody::store::s3::{S3Options, S3Store};
    use custody::store::{EvidenceStore, ObjectKey, StoreError};
    let Some(endpoint) = emulator("CUSTODY_TEST_S3_ENDPOINT") else {
        return;
    };
    let s3 = client(&endpoint);
    let bucket = bucket(&s3).await;
    let store = S3Store::new(
        s3.clone(),
        &bucket,
        "",
        S3Options {
            part_size: 5 << 20,
            ..S3Options::default()
        },
    );
    let data = mixed_bytes(12 << 20, 3);
    let body = futures::StreamExt::chain(
        chunks(&data, 1 << 20),
        futures::stream::once(async { Err(std::io::Error::other("disk died")) }),
    );
    let key = ObjectKey::new("cases/c/artefacts/x.zst").unwrap();
    let err = store
        .put(&key, Box::pin(body))
        .await
        .expect_err("must fail");
    assert!(matches!(err, StoreError::SourceFailed { .. }), "{err}");
    // Nothing under the key, and the multipart upload is gone (aborted in the background).
    assert!(matches!(
        store.size(&key).await,
        Err(StoreError::NotFound { .. })
    ));
    let mut open = usize::MAX;
    for _ in 0..50 {
        let list = s3
            .list_multipart_uploads()
            .bucket(&bucket)
            .send()
            .await
            .expect("list uploads");
        open = list.uploads.unwrap_or_default().len();
        if open == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(open, 0, "the failed upload was not aborted");
}

#[test]
fn acquire_into_s3_then_verify_and_export() {
    let Some(endpoint) = emulator("CUSTODY_TEST_S3_ENDPOINT") else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let bucket = rt.block_on(async { bucket(&client(&endpoint)).await });
    let home = crate::common::Home::new();
    let src = home.path().join("disk.img");
    let data = mixed_bytes(9 << 20, 5);
    std::fs::write(&src, &data).unwrap();
    let store = format!("s3://{bucket}/custody");
    let run = |args: &[&str]| {
        home.cmd()
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", "us-east-1")
            .args(["--store", &store, "--endpoint-url", &endpoint])
            .args(args)
            .output()
            .unwrap()
    };
    let out = run(&[
        "--json",
        "acquire",
        "file",
        src.to_str().unwrap(),
        "--case",
        "s3case",
        "--verify",
    ]);
    assert!(out.status.success(), "{}", crate::common::stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let a = &report["artefacts"][0];
    assert_eq!(a["stored"]["location"], store.as_str());
    assert!(a["stored"]["etag"].is_string(), "{a}");
    assert_eq!(report["verified"][0]["ok"], true);
    let out = run(&["verify", "s3case"]);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        crate::common::stderr(&out)
    );
    let dest = home.path().join("back.img");
    let out = run(&[
        "export",
        "s3case",
        a["id"].as_str().unwrap(),
        "-o",
        dest.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", crate::common::stderr(&out));
    assert_eq!(std::fs::read(&dest).unwrap(), data);
}

use crate::common::custody_aws as custody_s3;

#[test]
fn preflight_reports_a_bucket_without_versioning_or_object_lock() {
    let Some(endpoint) = emulator("CUSTODY_TEST_S3_ENDPOINT") else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let bucket = rt.block_on(async { bucket(&client(&endpoint)).await });
    let home = crate::common::Home::new();
    let url = format!("s3://{bucket}/x");
    let out = custody_s3(&home, &endpoint, &["--json", "store", "check", &url]);
    assert!(out.status.success(), "{}", crate::common::stderr(&out));
    let p: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(p["exists"], true);
    assert_eq!(p["writable"], true);
    assert_eq!(p["versioning"], "Off");
    assert_eq!(p["object_lock"], false);
    let findings = p["findings"].to_string();
    assert!(
        findings.contains("versioning is Off") && findings.contains("Object Lock is off"),
        "{findings}"
    );
    // The write probe leaves nothing behind.
    let left = rt.block_on(async {
        client(&endpoint)
            .list_multipart_uploads()
            .bucket(&bucket)
            .send()
            .await
            .unwrap()
    });
    assert!(left.uploads.unwrap_or_default().is_empty());
    let out = custody_s3(
        &home,
        &endpoint,
        &["store", "check", &url, "--require-worm"],
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        crate::common::stderr(&out)
    );
    assert!(crate::common::stderr(&out).contains("not write-once"));
    let out = custody_s3(
        &home,
        &endpoint,
        &["store", "check", "s3://no-such-bucket-custody/x"],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        crate::common::stderr(&out).contains("no-such-bucket-custody"),
        "{}",
        crate::common::stderr(&out)
    );
}

#[test]
fn preflight_reports_versioning_without_object_lock_and_a_bucket_it_cannot_write() {
    use aws_sdk_s3::types::{BucketVersioningStatus, VersioningConfiguration};
    let Some(endpoint) = emulator("CUSTODY_TEST_S3_ENDPOINT") else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let s3 = client(&endpoint);
    let bucket = rt.block_on(bucket(&s3));
    rt.block_on(async {
        s3.put_bucket_versioning()
            .bucket(&bucket)
            .versioning_configuration(
                VersioningConfiguration::builder()
                    .status(BucketVersioningStatus::Enabled)
                    .build(),
            )
            .send()
            .await
            .unwrap();
    });
    let home = crate::common::Home::new();
    let url = format!("s3://{bucket}/x");
    let out = custody_s3(&home, &endpoint, &["--json", "store", "check", &url]);
    assert!(out.status.success(), "{}", crate::common::stderr(&out));
    let p: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(p["versioning"], "Enabled");
    assert_eq!(p["object_lock"], false);
    assert!(
        p["findings"].to_string().contains("Object Lock is off"),
        "{p}"
    );
    let out = custody_s3(
        &home,
        &endpoint,
        &["store", "check", &url, "--require-worm"],
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        crate::common::stderr(&out)
    );

    // A bucket this identity may not write to. AWS authorises
    // CreateMultipartUpload (the preflight's write probe) as s3:PutObject, so
    // a policy denying PutObject refuses it; moto applies bucket policies to
    // PutObject only. STUB: the proxy answers that one call with AWS's
    // AccessDenied; every other call reaches moto.
    let (proxy, via) = rt.block_on(crate::fault_proxy::FaultProxy::start(&endpoint));
    proxy.rule(crate::fault_proxy::Rule {
        op: "CreateMultipartUpload",
        path: "",
        pass: 0,
        times: 1000,
        fault: crate::fault_proxy::Fault::Status(403, "AccessDenied"),
    });
    let out = custody_s3(&home, &via, &["--json", "store", "check", &url]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        crate::common::stderr(&out)
    );
    let p: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(p["exists"], true);
    assert_eq!(p["writable"], false, "{p}");
    assert!(
        p["findings"].to_string().contains("cannot write")
            && p["findings"].to_string().contains("AccessDenied"),
        "{p}"
    );
    assert!(
        crate::common::stderr(&out).contains("cannot take evidence"),
        "{}",
        crate::common::stderr(&out)
    );
    assert_eq!(
        proxy.count("CreateMultipartUpload"),
        1,
        "access errors are not retried"
    );
}

#[test]
fn object_lock_bucket_is_worm_and_refuses_deleting_evidence() {
    use aws_sdk_s3::types::{
        DefaultRetention, ObjectLockConfiguration, ObjectLockEnabled, ObjectLockRetentionMode,
        ObjectLockRule,
    };
    use custody::store::s3::{Retention, S3Options, S3Store};
    use custody::store::{EvidenceStore, ObjectKey};
    let Some(endpoint) = emulator("CUSTODY_TEST_S3_ENDPOINT") else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let s3 = client(&endpoint);
    let bucket = format!("worm-{}", uuid::Uuid::new_v4().simple());
    rt.block_on(async {
        s3.create_bucket()
            .bucket(&bucket)
            .object_lock_enabled_for_bucket(true)
            .send()
            .await
            .expect("create");
        let rule = ObjectLockRule::builder()
            .default_retention(
                DefaultRetention::builder()
                    .mode(ObjectLockRetentionMode::Compliance)
                    .days(1)
                    .build(),
            )
            .build();
        s3.put_object_lock_configuration()
            .bucket(&bucket)
            .object_lock_configuration(
                ObjectLockConfiguration::builder()
                    .object_lock_enabled(ObjectLockEnabled::Enabled)
                    .rule(rule)
                    .build(),
            )
            .send()
            .await
            .expect("lock configuration");
    });
    let home = crate::common::Home::new();
    let out = custody_s3(
        &home,
        &endpoint,
        &[
            "--json",
            "store",
            "check",
            &format!("s3://{bucket}"),
            "--require-worm",
        ],
    );
    assert!(out.status.success(), "{}", crate::common::stderr(&out));
    let p: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(p["versioning"], "Enabled");
    assert_eq!(p["object_lock"], true);
    assert_eq!(p["default_retention"], "COMPLIANCE 1 days");

    // Evidence written with COMPLIANCE retention: its version cannot be deleted.
    let store = S3Store::new(
        s3.clone(),
        &bucket,
        "",
        S3Options {
            retention: Some(Retention {
                compliance: true,
                days: 1,
            }),
            ..S3Options::default()
        },
    );
    let key = ObjectKey::new("cases/w/artefacts/a.zst").unwrap();
    rt.block_on(async {
        let stored = store
            .put_bytes(&key, bytes::Bytes::from_static(b"evidence"))
            .await
            .expect("put");
        let version = stored
            .version_id
            .expect("a versioned bucket returns a version id");
        let head = s3
            .head_object()
            .bucket(&bucket)
            .key(key.as_str())
            .send()
            .await
            .unwrap();
        assert_eq!(
            head.object_lock_mode
                .map(|m| m.as_str().to_owned())
                .as_deref(),
            Some("COMPLIANCE")
        );
        let deleted = s3
            .delete_object()
            .bucket(&bucket)
            .key(key.as_str())
            .version_id(&version)
            .send()
            .await;
        assert!(
            deleted.is_err(),
            "a COMPLIANCE-locked version must not be deletable"
        );
        assert_eq!(store.get_bytes(&key).await.unwrap(), b"evidence");
    });
}

#[test]
fn a_store_required_to_be_worm_refuses_a_plain_bucket() {
    let Some(endpoint) = emulator("CUSTODY_TEST_S3_ENDPOINT") else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let bucket = rt.block_on(async { bucket(&client(&endpoint)).await });
    let home = crate::common::Home::new();
    std::fs::write(
        home.path().join("custody.toml"),
        "[s3]\nrequire_worm = true\n",
    )
    .unwrap();
    let src = home.path().join("f.bin");
    std::fs::write(&src, b"evidence").unwrap();
    let out = custody_s3(
        &home,
        &endpoint,
        &[
            "--store",
            &format!("s3://{bucket}"),
            "acquire",
            "file",
            src.to_str().unwrap(),
            "--case",
            "w",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        crate::common::stderr(&out).contains("not write-once storage"),
        "{}",
        crate::common::stderr(&out)
    );
    let listed = rt.block_on(async {
        client(&endpoint)
            .list_objects_v2()
            .bucket(&bucket)
            .send()
            .await
            .unwrap()
    });
    assert!(
        listed.contents.unwrap_or_default().is_empty(),
        "nothing may be written"
    );
    // The refusal is itself in the ledger.
    let entries = custody::ledger::read_entries(
        &custody::ledger::LedgerPaths::in_home(home.path()).entries(),
    )
    .unwrap();
    let last = custody::ledger::entry::Entry::parse(entries.last().unwrap()).unwrap();
    assert_eq!(last.action, custody::ledger::entry::Action::Failed);
}

/// The round trip: 256 MiB through the pipeline into S3 and back, both digests checked.
#[test]
fn a_256_mib_artefact_round_trips_through_s3() {
    let Some(endpoint) = emulator("CUSTODY_TEST_S3_ENDPOINT") else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let bucket = rt.block_on(async { bucket(&client(&endpoint)).await });
    let home = crate::common::Home::new();
    let src = home.path().join("big.img");
    let data = mixed_bytes(256 << 20, 9);
    std::fs::write(&src, &data).unwrap();
    let store = format!("s3://{bucket}/big");
    let out = custody_s3(
        &home,
        &endpoint,
        &[
            "--json",
            "--store",
            &store,
            "acquire",
            "file",
            src.to_str().unwrap(),
            "--case",
            "big",
            "--verify",
        ],
    );
    assert!(out.status.success(), "{}", crate::common::stderr(&out));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["verified"][0]["ok"], true);
    assert_eq!(
        r["artefacts"][0]["raw"]["sha256"],
        custody::evidence::sha256_hex(&data)
    );
    let dest = home.path().join("back.img");
    let id = r["artefacts"][0]["id"].as_str().unwrap();
    let out = custody_s3(
        &home,
        &endpoint,
        &[
            "--store",
            &store,
            "export",
            "big",
            id,
            "-o",
            dest.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", crate::common::stderr(&out));
    assert_eq!(
        custody::evidence::sha256_hex(&std::fs::read(&dest).unwrap()),
        custody::evidence::sha256_hex(&data)
    );
}

#[test]
fn the_ledger_mirror_in_s3_matches_the_local_ledger_byte_for_byte() {
    let Some(endpoint) = emulator("CUSTODY_TEST_S3_ENDPOINT") else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let s3 = client(&endpoint);
    let bucket = rt.block_on(async { bucket(&s3).await });
    let home = crate::common::Home::new();
    let src = home.path().join("f.bin");
    std::fs::write(&src, b"evidence").unwrap();
    let store = format!("s3://{bucket}/ev");
    for case in ["m1", "m2"] {
        let out = custody_s3(
            &home,
            &endpoint,
            &[
                "--store",
                &store,
                "acquire",
                "file",
                src.to_str().unwrap(),
                "--case",
                case,
            ],
        );
        assert!(out.status.success(), "{}", crate::common::stderr(&out));
    }
    let out = custody_s3(&home, &endpoint, &["--store", &store, "verify", "m1"]);
    assert!(out.status.success(), "{}", crate::common::stderr(&out));

    let paths = custody::ledger::LedgerPaths::in_home(home.path());
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(paths.meta()).unwrap()).unwrap();
    let prefix = format!(
        "ev/{}",
        custody::mirror::prefix(meta["origin"].as_str().unwrap())
    );
    let (segments, checkpoints) = rt.block_on(async {
        let list = |p: String| {
            let s3 = s3.clone();
            let bucket = bucket.clone();
            async move {
                let out = s3
                    .list_objects_v2()
                    .bucket(&bucket)
                    .prefix(p)
                    .send()
                    .await
                    .unwrap();
                let mut keys: Vec<String> = out
                    .contents
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|o| o.key)
                    .collect();
                keys.sort();
                keys
            }
        };
        (
            list(format!("{prefix}/entries/")).await,
            list(format!("{prefix}/checkpoints/")).await,
        )
    });
    let get = |k: &str| {
        rt.block_on(async {
            s3.get_object()
                .bucket(&bucket)
                .key(k)
                .send()
                .await
                .unwrap()
                .body
                .collect()
                .await
                .unwrap()
                .into_bytes()
                .to_vec()
        })
    };
    let mirrored: Vec<u8> = segments.iter().flat_map(|k| get(k)).collect();
    assert!(segments.len() >= 3, "one segment per command: {segments:?}");
    assert_eq!(
        mirrored,
        std::fs::read(paths.entries()).unwrap(),
        "entries differ"
    );
    let local: Vec<_> = std::fs::read_dir(paths.checkpoints())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(checkpoints.len(), local.len());
    for p in local {
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        assert_eq!(
            get(&format!("{prefix}/checkpoints/{name}")),
            std::fs::read(&p).unwrap(),
            "checkpoint {name} differs"
        );
    }
}

/// L5: an object planted under the ledger's prefix (a segment claiming every
/// entry) neither stops the mirror nor passes for the ledger's: each
/// command warns, the new entries are mirrored beside it, and `store check`
/// and `ledger verify` fail.
#[test]
fn l5_a_planted_mirror_object_is_reported_and_mirroring_goes_on() {
    let Some(endpoint) = emulator("CUSTODY_TEST_S3_ENDPOINT") else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let s3 = client(&endpoint);
    let bucket = rt.block_on(async { bucket(&s3).await });
    let home = crate::common::Home::new();
    let src = home.path().join("f.bin");
    std::fs::write(&src, b"evidence").unwrap();
    let store = format!("s3://{bucket}/ev");
    let acquire = |case: &str| {
        let args = [
            "--store",
            &store,
            "acquire",
            "file",
            src.to_str().unwrap(),
            "--case",
            case,
        ];
        custody_s3(&home, &endpoint, &args)
    };
    assert!(acquire("a").status.success());
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(home.path().join("ledger/ledger.json")).unwrap())
            .unwrap();
    let prefix = format!(
        "ev/{}",
        custody::mirror::prefix(meta["origin"].as_str().unwrap())
    );
    let planted = format!("{prefix}/entries/000000000000-999999999999.jsonl");
    rt.block_on(async {
        s3.put_object()
            .bucket(&bucket)
            .key(&planted)
            .body(ByteStream::from_static(b""))
            .send()
            .await
            .unwrap();
    });
    let out = acquire("b");
    assert!(out.status.success(), "{}", crate::common::stderr(&out));
    assert!(
        crate::common::stderr(&out).contains("not byte for byte this ledger's"),
        "{}",
        crate::common::stderr(&out)
    );
    // The new entries reached the mirror: its own segments still add up to the ledger.
    let keys: Vec<String> = rt.block_on(async {
        s3.list_objects_v2()
            .bucket(&bucket)
            .prefix(format!("{prefix}/entries/"))
            .send()
            .await
            .unwrap()
            .contents
            .unwrap_or_default()
            .into_iter()
            .filter_map(|o| o.key)
            .filter(|k| *k != planted)
            .collect()
    });
    let mut ours: Vec<(u64, u64)> = keys
        .iter()
        .filter_map(|k| {
            let name = k.rsplit('/').next()?;
            let mut p = name.split('-');
            Some((p.next()?.parse().ok()?, p.next()?.parse().ok()?))
        })
        .collect();
    ours.sort();
    let local = std::fs::read_to_string(home.path().join("ledger/entries.jsonl"))
        .unwrap()
        .lines()
        .count() as u64;
    assert_eq!(ours.last().map(|r| r.1), Some(local), "{keys:?}");
    for args in [
        vec!["--store", &store, "store", "check"],
        vec!["--store", &store, "ledger", "verify"],
    ] {
        let out = custody_s3(&home, &endpoint, &args);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            crate::common::stderr(&out)
        );
    }
}
