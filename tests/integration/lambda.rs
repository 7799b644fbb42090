//! Lambda functions against moto, through `custody acquire lambda`,
//! `custody isolate lambda` and `custody release lambda`.
//!
//! moto holds the function, its versions, aliases, policy, URL config,
//! layers and concurrency; every call reaches it, except two narrow stubs:
//! moto's `Code.Location` names a bucket of AWS's that does not exist here,
//! so the fault proxy answers GetFunction with moto's own answer, its
//! location replaced by a presigned URL of a moto S3 object holding the
//! zip, as AWS's would; and moto lacks GetLayerVersionByArn, answered with
//! moto's GetLayerVersion of that version, its location replaced likewise.
//! Flipping one byte of that object proves the `CodeSha256` refusal.

use base64::Engine as _;
use sha2::{Digest as _, Sha256};

use crate::common::{Home, aws_conf as conf, custody_aws, emulator, stderr};
use crate::fault_proxy::{Fault, FaultProxy, Rule};

fn zip(files: &[(&str, &[u8])]) -> Vec<u8> {
    // A stored (uncompressed) zip written by hand: Lambda only hashes it.
    let mut out = Vec::new();
    let mut central = Vec::new();
    for (name, data) in files {
        let crc = crc32fast::hash(data);
        let off = out.len() as u32;
        let local = |sig: u32, buf: &mut Vec<u8>| {
            buf.extend_from_slice(&sig.to_le_bytes());
        };
        local(0x0403_4b50, &mut out);
        out.extend_from_slice(&[20, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        out.extend_from_slice(&crc.to_le_bytes());
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out.extend_from_slice(&(name.len() as u16).to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(data);
        local(0x0201_4b50, &mut central);
        central.extend_from_slice(&[20, 0, 20, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        central.extend_from_slice(&crc.to_le_bytes());
        central.extend_from_slice(&(data.len() as u32).to_le_bytes());
        central.extend_from_slice(&(data.len() as u32).to_le_bytes());
        central.extend_from_slice(&(name.len() as u16).to_le_bytes());
        central.extend_from_slice(&[0; 12]);
        central.extend_from_slice(&off.to_le_bytes());
        central.extend_from_slice(name.as_bytes());
    }
    let cd_off = out.len() as u32;
    out.extend_from_slice(&central);
    out.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(&(files.len() as u16).to_le_bytes());
    out.extend_from_slice(&(files.len() as u16).to_le_bytes());
    out.extend_from_slice(&(central.len() as u32).to_le_bytes());
    out.extend_from_slice(&cd_off.to_le_bytes());
    out.extend_from_slice(&[0, 0]);
    out
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

fn s3(endpoint: &str) -> aws_sdk_s3::Client {
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&conf(endpoint))
            .force_path_style(true)
            .build(),
    )
}

/// Puts `data` in moto's S3 and returns a presigned GET URL of it.
async fn presigned(endpoint: &str, bucket: &str, key: &str, data: &[u8]) -> String {
    let s3 = s3(endpoint);
    let _ = s3.create_bucket().bucket(bucket).send().await;
    s3.put_object()
        .bucket(bucket)
        .key(key)
        .body(data.to_vec().into())
        .send()
        .await
        .unwrap();
    s3.get_object()
        .bucket(bucket)
        .key(key)
        .presigned(
            aws_sdk_s3::presigning::PresigningConfig::expires_in(std::time::Duration::from_secs(
                600,
            ))
            .unwrap(),
        )
        .await
        .unwrap()
        .uri()
        .to_owned()
}

/// moto's own answer to a GET (moto does not check signatures; it routes
/// by the service the credential scope names).
async fn moto_json(endpoint: &str, path_and_query: &str) -> serde_json::Value {
    let body = reqwest::Client::new()
        .get(format!("{endpoint}{path_and_query}"))
        .header(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/lambda/aws4_request, SignedHeaders=host, Signature=00",
        )
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    serde_json::from_str(&body).unwrap_or_else(|_| panic!("moto said {body}"))
}

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

struct Function {
    name: String,
    code: Vec<u8>,
    layer_arn: String,
    layer_code: Vec<u8>,
    secret: String,
}

async fn function(endpoint: &str) -> Function {
    let c = conf(endpoint);
    let iam = aws_sdk_iam::Client::new(&c);
    let lambda = aws_sdk_lambda::Client::new(&c);
    let role = iam
        .create_role()
        .role_name(unique("r"))
        .assume_role_policy_document("{}")
        .send()
        .await
        .unwrap()
        .role
        .unwrap()
        .arn;
    let layer_code = zip(&[("python/util.py", b"X = 1\n")]);
    let layer = lambda
        .publish_layer_version()
        .layer_name(unique("layer"))
        .content(
            aws_sdk_lambda::types::LayerVersionContentInput::builder()
                .zip_file(layer_code.clone().into())
                .build(),
        )
        .send()
        .await
        .unwrap();
    let layer_arn = layer.layer_version_arn().unwrap().to_owned();
    let name = unique("fn");
    let code = zip(&[("index.py", b"def handler(event, context):\n    return 1\n")]);
    let secret = format!("s3cr3t-{}", uuid::Uuid::new_v4().simple());
    lambda
        .create_function()
        .function_name(&name)
        .runtime(aws_sdk_lambda::types::Runtime::Python312)
        .role(role)
        .handler("index.handler")
        .code(
            aws_sdk_lambda::types::FunctionCode::builder()
                .zip_file(code.clone().into())
                .build(),
        )
        .layers(&layer_arn)
        .environment(
            aws_sdk_lambda::types::Environment::builder()
                .variables("DB_PASSWORD", &secret)
                .build(),
        )
        .send()
        .await
        .unwrap();
    lambda
        .publish_version()
        .function_name(&name)
        .send()
        .await
        .unwrap();
    lambda
        .create_alias()
        .function_name(&name)
        .name("live")
        .function_version("1")
        .send()
        .await
        .unwrap();
    lambda
        .add_permission()
        .function_name(&name)
        .statement_id("s3-invoke")
        .action("lambda:InvokeFunction")
        .principal("s3.amazonaws.com")
        .send()
        .await
        .unwrap();
    lambda
        .create_function_url_config()
        .function_name(&name)
        .auth_type(aws_sdk_lambda::types::FunctionUrlAuthType::None)
        .send()
        .await
        .unwrap();
    Function {
        name,
        code,
        layer_arn,
        layer_code,
        secret,
    }
}

/// The labelled stubs: moto's GetFunction answer with its location pointing
/// at a presigned moto S3 object, and GetLayerVersionByArn (which moto
/// lacks) answered with moto's GetLayerVersion of the same version, its
/// location pointing likewise.
async fn stub_locations(proxy: &FaultProxy, endpoint: &str, f: &Function, code: &[u8]) {
    let bucket = "custody-lambda-code";
    let mut got = moto_json(endpoint, &format!("/2015-03-31/functions/{}", f.name)).await;
    got["Code"]["Location"] = presigned(endpoint, bucket, &f.name, code).await.into();
    proxy.rule(Rule {
        op: "Get",
        path: leak(format!("/2015-03-31/functions/{}$", f.name)),
        pass: 0,
        times: u32::MAX,
        fault: Fault::Json(200, got.to_string()),
    });
    // moto lacks GetLayerVersionByArn: its answer is GetLayerVersion's
    // (which moto has) for the same layer version.
    let mut parts = f.layer_arn.rsplit(':');
    let (version, layer_name) = (parts.next().unwrap(), parts.next().unwrap());
    let mut layer = moto_json(
        endpoint,
        &format!("/2018-10-31/layers/{layer_name}/versions/{version}"),
    )
    .await;
    layer["Content"]["Location"] = presigned(
        endpoint,
        bucket,
        &format!("{}-layer", f.name),
        &f.layer_code,
    )
    .await
    .into();
    proxy.rule(Rule {
        op: "Get",
        path: "/2018-10-31/layers$",
        pass: 0,
        times: u32::MAX,
        fault: Fault::Json(200, layer.to_string()),
    });
}

fn export(home: &Home, case: &str, id: &str) -> Vec<u8> {
    let dest = home.path().join(format!("{id}.out"));
    let out = home.run(&["export", case, id, "-o", dest.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    std::fs::read(dest).unwrap()
}

fn b64_sha(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(Sha256::digest(data))
}

#[tokio::test(flavor = "multi_thread")]
async fn lambda_function_configuration_and_code_checked_against_code_sha256() {
    let Some(endpoint) = emulator("CUSTODY_TEST_S3_ENDPOINT") else {
        return;
    };
    let f = function(&endpoint).await;
    // What the function logged: its group goes on the case's timeline.
    let cw = aws_sdk_cloudwatchlogs::Client::new(&conf(&endpoint));
    let group = format!("/aws/lambda/{}", f.name);
    cw.create_log_group()
        .log_group_name(&group)
        .send()
        .await
        .unwrap();
    cw.create_log_stream()
        .log_group_name(&group)
        .log_stream_name("2026/12/03/[$LATEST]0001")
        .send()
        .await
        .unwrap();
    let now_ms = time::OffsetDateTime::now_utc().unix_timestamp() * 1000;
    let lines = [
        "START RequestId: 7d1c-42 Version: $LATEST",
        "exfiltrating to 198.51.100.7",
        "REPORT RequestId: 7d1c-42 Duration: 3.1 ms",
    ];
    let mut put = cw
        .put_log_events()
        .log_group_name(&group)
        .log_stream_name("2026/12/03/[$LATEST]0001");
    for (i, l) in lines.iter().enumerate() {
        put = put.log_events(
            aws_sdk_cloudwatchlogs::types::InputLogEvent::builder()
                .timestamp(now_ms - 60_000 + i as i64)
                .message(*l)
                .build()
                .unwrap(),
        );
    }
    put.send().await.unwrap();
    let (proxy, url) = FaultProxy::start(&endpoint).await;
    stub_locations(&proxy, &endpoint, &f, &f.code).await;
    let home = Home::new();
    let out = tokio::task::spawn_blocking({
        let (home_args, url, name) = (home.cmd(), url.clone(), f.name.clone());
        move || {
            let mut c = home_args;
            c.env("AWS_ACCESS_KEY_ID", "testing")
                .env("AWS_SECRET_ACCESS_KEY", "testing")
                .env("AWS_REGION", "us-east-1")
                .env("RUST_LOG", "debug")
                .args(["--endpoint-url", &url, "--json", "acquire", "lambda"])
                .args(["--function", &name, "--case", "L", "--verify"])
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        !err.contains(&f.secret),
        "an environment variable reached the log"
    );
    assert!(
        !err.contains("X-Amz-Signature"),
        "a presigned URL reached the log"
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let arts = report["artefacts"].as_array().unwrap();
    let kinds: Vec<&str> = arts.iter().map(|a| a["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        ["cloud_resource", "function_code", "file", "function_code"]
    );
    assert_eq!(arts[2]["source"]["log_format"], "cloudwatch-logs");
    let q = home.json(&["timeline", "L", "action:lambda.start"]);
    assert_eq!(q["total"], 1, "{q}");
    assert_eq!(q["rows"][0]["attributes"]["request_id"], "7d1c-42", "{q}");
    assert_eq!(
        arts[1]["raw"]["sha256"],
        hex::encode(Sha256::digest(&f.code))
    );
    assert_eq!(
        arts[3]["raw"]["sha256"],
        hex::encode(Sha256::digest(&f.layer_code))
    );
    assert_eq!(export(&home, "L", arts[1]["id"].as_str().unwrap()), f.code);

    let doc: serde_json::Value =
        serde_json::from_slice(&export(&home, "L", arts[0]["id"].as_str().unwrap())).unwrap();
    let a = &doc["answers"];
    let config = &a["GetFunction"]["Configuration"];
    assert_eq!(
        config["Environment"]["Variables"]["DB_PASSWORD"],
        f.secret.as_str()
    );
    assert_eq!(config["CodeSha256"], b64_sha(&f.code));
    assert_eq!(
        a["GetFunction"]["Code"]["Location"],
        "(presigned URL withheld)"
    );
    assert!(!doc.to_string().contains("X-Amz-Signature"));
    assert!(
        a["GetPolicy"]["Policy"]
            .as_str()
            .unwrap()
            .contains("s3-invoke")
    );
    let versions: Vec<&str> = a["ListVersionsByFunction"]["Versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["Version"].as_str().unwrap())
        .collect();
    assert_eq!(versions, ["$LATEST", "1"]);
    assert_eq!(a["ListAliases"]["Aliases"][0]["Name"], "live");
    assert_eq!(a["GetFunctionUrlConfig"]["AuthType"], "NONE");
    assert!(a["ListEventSourceMappings"]["EventSourceMappings"].is_array());
    assert_eq!(
        a["GetLayerVersionByArn"][0]["LayerVersionArn"],
        f.layer_arn.as_str()
    );
    let v = home.run(&["verify", "L"]);
    assert!(v.status.success(), "{}", stderr(&v));

    // One byte flipped in the object the location names: the code is
    // refused with both digests; the rest is still taken.
    let mut flipped = f.code.clone();
    let at = flipped.len() / 2;
    flipped[at] ^= 0x01;
    presigned(&endpoint, "custody-lambda-code", &f.name, &flipped).await;
    let out = custody_aws(
        &home,
        &url,
        &[
            "--json",
            "acquire",
            "lambda",
            "--function",
            &f.name,
            "--case",
            "M",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&b64_sha(&f.code)) && err.contains(&b64_sha(&flipped)),
        "{err}"
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let kinds: Vec<&str> = report["artefacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["cloud_resource", "file", "function_code"],
        "the logs and the layer's code, not the function's"
    );
    let entries =
        std::fs::read_to_string(custody::ledger::LedgerPaths::in_home(home.path()).entries())
            .unwrap();
    let refusal = entries
        .lines()
        .find(|l| l.contains("not_acquired") && l.contains("code_sha256_downloaded"))
        .expect("the refusal is on the record");
    assert!(refusal.contains(&b64_sha(&flipped)), "{refusal}");
    drop(proxy);

    // A function that is gone.
    let out = custody_aws(
        &home,
        &endpoint,
        &[
            "acquire",
            "lambda",
            "--function",
            "no-such-fn",
            "--case",
            "N",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("does not exist"), "{}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread")]
async fn isolate_lambda_sets_concurrency_zero_and_release_restores_it() {
    let Some(endpoint) = emulator("CUSTODY_TEST_S3_ENDPOINT") else {
        return;
    };
    let lambda = aws_sdk_lambda::Client::new(&conf(&endpoint));
    for prior in [Some(5), None] {
        let f = function(&endpoint).await;
        if let Some(n) = prior {
            lambda
                .put_function_concurrency()
                .function_name(&f.name)
                .reserved_concurrent_executions(n)
                .send()
                .await
                .unwrap();
        }
        let home = Home::new();
        let ep = endpoint.clone();
        let name = f.name.clone();
        let (out, home) = tokio::task::spawn_blocking(move || {
            let o = custody_aws(
                &home,
                &ep,
                &[
                    "--json",
                    "isolate",
                    "lambda",
                    "--function",
                    &name,
                    "--case",
                    "I",
                ],
            );
            (o, home)
        })
        .await
        .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(r["prior"]["reserved_concurrency"], serde_json::json!(prior));
        let now = lambda
            .get_function_concurrency()
            .function_name(&f.name)
            .send()
            .await
            .unwrap();
        assert_eq!(now.reserved_concurrent_executions(), Some(0));
        let ep = endpoint.clone();
        let name = f.name.clone();
        let (out, _home) = tokio::task::spawn_blocking(move || {
            (
                custody_aws(&home, &ep, &["release", "lambda", "--function", &name]),
                home,
            )
        })
        .await
        .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        let now = lambda
            .get_function_concurrency()
            .function_name(&f.name)
            .send()
            .await
            .unwrap();
        assert_eq!(
            now.reserved_concurrent_executions(),
            prior,
            "restored as it was"
        );
    }
    // Release of a function custody never isolated: refused, nothing changed.
    let f = function(&endpoint).await;
    let home = Home::new();
    let out = custody_aws(
        &home,
        &endpoint,
        &["release", "lambda", "--function", &f.name],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("no recorded prior state"),
        "{}",
        stderr(&out)
    );
}

/// The server's config for these tests: GuardDuty findings on Lambda are
/// answered in full; a Malware Protection finding acquires the disk.
fn serve_config(home: &Home) {
    std::fs::write(
        home.path().join("serve.toml"),
        r#"
[server]
bind = "127.0.0.1:0"

[[source]]
name = "guardduty"
kind = "guardduty"
auth = "hmac"
secret_env = "TEST_GD_SECRET"

[[source]]
name = "edr"
kind = "generic"
auth = "bearer"
secret_env = "TEST_EDR_TOKEN"

[[rule]]
name = "lambda"
source = "guardduty"
resource_type = "Lambda"
action = "respond"

[[rule]]
name = "malware"
source = "guardduty"
finding_type = "Execution:EC2/MaliciousFile*"
action = "acquire_disk"
"#,
    )
    .unwrap();
}

fn finding(kind: &str, resource: serde_json::Value) -> Vec<u8> {
    let sample = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("examples/alerts/guardduty-ssh-bruteforce.json"),
    )
    .unwrap();
    let mut v: serde_json::Value = serde_json::from_slice(&sample).unwrap();
    v["detail"]["id"] = uuid::Uuid::new_v4().simple().to_string().into();
    v["detail"]["type"] = kind.into();
    v["detail"]["resource"] = resource;
    v["detail"]["service"]["action"] = serde_json::json!({});
    serde_json::to_vec(&v).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_guardduty_lambda_finding_acquires_and_isolates_the_function_and_a_kept_snapshot_is_read()
{
    use crate::serve::{http, now, signed, start, wait_job};
    let Some(endpoint) = emulator("CUSTODY_TEST_S3_ENDPOINT") else {
        return;
    };
    let f = function(&endpoint).await;
    let (proxy, url) = FaultProxy::start(&endpoint).await;
    stub_locations(&proxy, &endpoint, &f, &f.code).await;
    // A disk Malware Protection scanned and kept.
    let block = crate::common::noise(512 * 1024, 77);
    let kept = crate::common::seed_blocks(&endpoint, 1, &[(5, &block)]).await;
    let arn = format!("arn:aws:lambda:us-east-1:123456789012:function:{}", f.name);
    let home = Home::new();
    serve_config(&home);
    let kept_arn = format!("arn:aws:ec2:us-east-1::snapshot/{kept}");
    let (home, done, kept_done) = tokio::task::spawn_blocking(move || {
        let srv = start(&home, Some(&url));
        let post = |body: Vec<u8>| {
            let (status, b) = http(&srv.addr, "POST", "/v1/alerts/guardduty", &signed(&body, now()), &body);
            assert_eq!(status, 202, "{b}");
            let v: serde_json::Value = serde_json::from_str(&b).unwrap();
            wait_job(&srv.addr, v["accepted"][0]["job"].as_str().unwrap())
        };
        let done = post(finding(
            "Execution:Lambda/MaliciousFile",
            serde_json::json!({ "resourceType": "Lambda", "lambdaDetails": { "functionArn": arn } }),
        ));
        let kept_done = post(finding(
            "Execution:EC2/MaliciousFile",
            serde_json::json!({
                "resourceType": "Instance",
                "instanceDetails": { "instanceId": "i-0123456789abcdef0" },
                "ebsVolumeDetails": { "scannedVolumeDetails": [
                    { "snapshotArn": kept_arn }
                ] }
            }),
        ));
        (home, done, kept_done)
    })
    .await
    .unwrap();
    assert_eq!(done["state"], "done", "{done}");
    let steps = done.to_string();
    assert!(
        steps.contains("acquire arn:aws:lambda") && steps.contains("isolate arn:aws:lambda"),
        "{steps}"
    );
    let lambda = aws_sdk_lambda::Client::new(&conf(&endpoint));
    let c = lambda
        .get_function_concurrency()
        .function_name(&f.name)
        .send()
        .await
        .unwrap();
    assert_eq!(
        c.reserved_concurrent_executions(),
        Some(0),
        "the function is isolated"
    );
    // The kept snapshot is the disk: read as it is, GuardDuty named as its maker,
    // and the instance's disk not snapshotted again.
    assert_eq!(kept_done["state"], "done", "{kept_done}");
    let case = kept_done["case"].as_str().unwrap().to_owned();
    let shown = home.json(&["show", &case]);
    let disk = shown
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["kind"] == "disk_image")
        .unwrap_or_else(|| panic!("{shown:#}"));
    assert_eq!(disk["source"]["resource"], kept.as_str());
    assert!(
        disk["notes"]
            .to_string()
            .contains("GuardDuty Malware Protection"),
        "{disk}"
    );
    let entries =
        std::fs::read_to_string(custody::ledger::LedgerPaths::in_home(home.path()).entries())
            .unwrap();
    assert!(
        !entries.contains("create_snapshot"),
        "no new snapshot was taken"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_image_function_s_manifest_is_checked_against_its_digest() {
    let Some(endpoint) = emulator("CUSTODY_TEST_S3_ENDPOINT") else {
        return;
    };
    let c = conf(&endpoint);
    let ecr = aws_sdk_ecr::Client::new(&c);
    let repo = unique("img");
    ecr.create_repository()
        .repository_name(&repo)
        .send()
        .await
        .unwrap();
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": { "mediaType": "application/vnd.docker.container.image.v1+json", "size": 1469,
                    "digest": format!("sha256:{}", "c".repeat(64)) },
        "layers": [{ "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": 2811478,
                     "digest": format!("sha256:{}", "d".repeat(64)) }]
    })
    .to_string();
    ecr.put_image()
        .repository_name(&repo)
        .image_manifest(&manifest)
        .image_tag("v1")
        .send()
        .await
        .unwrap();
    let digest = format!(
        "sha256:{}",
        hex::encode(Sha256::digest(manifest.as_bytes()))
    );
    let iam = aws_sdk_iam::Client::new(&c);
    let role = iam
        .create_role()
        .role_name(unique("r"))
        .assume_role_policy_document("{}")
        .send()
        .await
        .unwrap()
        .role
        .unwrap()
        .arn;
    let name = unique("imgfn");
    aws_sdk_lambda::Client::new(&c)
        .create_function()
        .function_name(&name)
        .role(role)
        .package_type(aws_sdk_lambda::types::PackageType::Image)
        .code(
            aws_sdk_lambda::types::FunctionCode::builder()
                .image_uri(format!(
                    "123456789012.dkr.ecr.us-east-1.amazonaws.com/{repo}:v1"
                ))
                .build(),
        )
        .send()
        .await
        .unwrap();
    let home = Home::new();
    let (ep, n) = (endpoint.clone(), name.clone());
    let (out, home) = tokio::task::spawn_blocking(move || {
        let o = custody_aws(
            &home,
            &ep,
            &[
                "--json",
                "acquire",
                "lambda",
                "--function",
                &n,
                "--case",
                "I",
            ],
        );
        (o, home)
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let arts = r["artefacts"].as_array().unwrap();
    assert_eq!(arts.len(), 2, "the function and its manifest: {r:#}");
    assert!(
        arts[1]["notes"].to_string().contains(&digest),
        "{}",
        arts[1]
    );
    assert_eq!(
        export(&home, "I", arts[1]["id"].as_str().unwrap()),
        manifest.as_bytes()
    );

    // ECR answering another manifest for that digest: refused, both digests said.
    let (proxy, url) = FaultProxy::start(&endpoint).await;
    let other = manifest.replace("2811478", "2811479");
    proxy.rule(Rule {
        op: "BatchGetImage",
        path: "",
        pass: 0,
        times: u32::MAX,
        fault: Fault::Json(
            200,
            serde_json::json!({ "images": [{ "registryId": "123456789012", "repositoryName": repo,
                "imageId": { "imageDigest": digest }, "imageManifest": other }], "failures": [] })
            .to_string(),
        ),
    });
    let (out, home) = tokio::task::spawn_blocking(move || {
        let o = custody_aws(
            &home,
            &url,
            &[
                "--json",
                "acquire",
                "lambda",
                "--function",
                &name,
                "--case",
                "J",
            ],
        );
        (o, home)
    })
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let other_digest = format!("sha256:{}", hex::encode(Sha256::digest(other.as_bytes())));
    let err = stderr(&out);
    assert!(
        err.contains(&digest) && err.contains(&other_digest),
        "{err}"
    );
    let entries =
        std::fs::read_to_string(custody::ledger::LedgerPaths::in_home(home.path()).entries())
            .unwrap();
    assert!(
        entries
            .lines()
            .any(|l| l.contains("not_acquired") && l.contains(&other_digest)),
        "the refusal is on the record"
    );
}
