//! Memory acquisition over SSM Run Command against moto, through
//! `custody acquire memory`.
//!
//! moto answers DescribeInstanceInformation with a 500 and never runs a
//! command (every command is `Success` at once, with no output). So:
//! - DescribeInstanceInformation is a narrow stub in the fault proxy (the
//!   instance listed as managed and online, or not listed, or offline);
//!   every other call reaches moto.
//! - Where an instance must upload, the test plays the instance: it takes
//!   the command custody sent (moto's ListCommands returns its parameters),
//!   runs that very script here with a stand-in `avml` that prints a known
//!   pattern, against moto through the presigned URLs; meanwhile the proxy
//!   stubs GetCommandInvocation as `InProgress`, then as `Success` with the
//!   script's real output, as SSM would report it.
//!
//! moto does not check presigned signatures (any URL, even unsigned, can
//! write): the URLs' signed path, method and expiry are checked instead.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::common::{Home, aws_conf as conf, emulator, stderr};
use crate::fault_proxy::{Fault, FaultProxy, Rule};

fn s3(endpoint: &str) -> aws_sdk_s3::Client {
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&conf(endpoint))
            .force_path_style(true)
            .build(),
    )
}

/// A running instance with 1 GiB of memory (t2.micro).
async fn instance(endpoint: &str) -> String {
    let ec2 = aws_sdk_ec2::Client::new(&conf(endpoint));
    let ami = ec2.describe_images().send().await.unwrap().images()[0]
        .image_id()
        .unwrap()
        .to_owned();
    let run = ec2
        .run_instances()
        .image_id(ami)
        .instance_type(aws_sdk_ec2::types::InstanceType::T2Micro)
        .min_count(1)
        .max_count(1)
        .send()
        .await
        .unwrap();
    run.instances()[0].instance_id().unwrap().to_owned()
}

/// Stub of DescribeInstanceInformation (moto: 500): lists `id` with
/// `ping`, or nothing.
fn managed(proxy: &FaultProxy, id: &str, ping: Option<&str>) {
    let list = match ping {
        Some(p) => serde_json::json!([{
            "InstanceId": id, "PingStatus": p, "PlatformType": "Linux",
            "PlatformName": "Amazon Linux", "AgentVersion": "3.3.0.0",
        }]),
        None => serde_json::json!([]),
    };
    proxy.replace(Rule {
        op: "DescribeInstanceInformation",
        path: "",
        pass: 0,
        times: u32::MAX,
        fault: Fault::Json(
            200,
            serde_json::json!({ "InstanceInformationList": list }).to_string(),
        ),
    });
}

/// Stub of GetCommandInvocation: the command as SSM would report it.
fn invocation(proxy: &FaultProxy, status: &str, stdout: &str) {
    proxy.replace(Rule {
        op: "GetCommandInvocation",
        path: "",
        pass: 0,
        times: u32::MAX,
        fault: Fault::Json(
            200,
            serde_json::json!({
                "Status": status, "StatusDetails": status,
                "ResponseCode": if status == "Success" { 0 } else { -1 },
                "StandardOutputContent": stdout, "StandardErrorContent": "",
            })
            .to_string(),
        ),
    });
}

fn entries(home: &Home) -> Vec<serde_json::Value> {
    std::fs::read_to_string(home.path().join("ledger/entries.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn with_action<'a>(all: &'a [serde_json::Value], action: &str) -> Vec<&'a serde_json::Value> {
    all.iter().filter(|e| e["action"] == action).collect()
}

/// A custody run in the background; its output goes to files, as debug
/// logs would fill a pipe nobody reads yet.
struct Running {
    child: Child,
    out: std::path::PathBuf,
    err: std::path::PathBuf,
}

impl Running {
    fn wait_with_output(mut self) -> std::io::Result<std::process::Output> {
        let status = self.child.wait()?;
        Ok(std::process::Output {
            status,
            stdout: std::fs::read(&self.out)?,
            stderr: std::fs::read(&self.err)?,
        })
    }
}

/// `custody acquire memory` against `endpoint`, started, not waited for.
/// Debug logs on: presigned URLs must not appear even there.
fn spawn(home: &Home, endpoint: &str, args: &[&str]) -> Running {
    let run = uuid::Uuid::new_v4().simple().to_string();
    let out = home.path().join(format!("{run}.out"));
    let err = home.path().join(format!("{run}.err"));
    let child = home
        .cmd()
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .env("RUST_LOG", "debug")
        .args(["--endpoint-url", endpoint, "--json", "acquire", "memory"])
        .args(args)
        .stdout(Stdio::from(std::fs::File::create(&out).unwrap()))
        .stderr(Stdio::from(std::fs::File::create(&err).unwrap()))
        .spawn()
        .expect("run custody");
    Running { child, out, err }
}

fn assert_no_secrets(out: &std::process::Output) {
    let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(out));
    assert!(
        !all.contains("X-Amz-Signature") && !all.contains("CUSTODY_SIGS"),
        "presigned URLs must never be logged or printed"
    );
}

/// The memory command custody sent to `id` for `case`, as moto keeps it.
/// moto adds every instance of the account to a command sent without
/// Targets (AWS runs it on the listed instance only), so a command is told
/// apart by its comment, which names the case.
async fn sent_command(endpoint: &str, id: &str, case: &str) -> aws_sdk_ssm::types::Command {
    let ssm = aws_sdk_ssm::Client::new(&conf(endpoint));
    let out = ssm.list_commands().instance_id(id).send().await.unwrap();
    let mine: Vec<_> = out
        .commands()
        .iter()
        .filter(|c| c.comment() == Some(&format!("custody case {case}: memory of {id}")))
        .collect();
    assert_eq!(mine.len(), 1, "one command for {id}: {out:?}");
    assert!(mine[0].instance_ids().contains(&id.to_owned()));
    mine[0].clone()
}

/// The script text of a command: AWS-RunShellScript's `commands`, one line each.
fn script_of(cmd: &aws_sdk_ssm::types::Command) -> String {
    let lines = &cmd.parameters().unwrap()["commands"];
    let mut s = lines.join("\n");
    s.push('\n');
    s
}

#[test]
fn memory_of_an_instance_ssm_does_not_manage_or_that_is_offline_is_recorded_not_acquired() {
    let Some(endpoint) = emulator("CUSTODY_TEST_S3_ENDPOINT") else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (proxy, url) = rt.block_on(FaultProxy::start(&endpoint));
    let id = rt.block_on(instance(&endpoint));
    let bucket = rt.block_on(crate::s3::bucket(&s3(&endpoint)));
    let staging = format!("s3://{bucket}/mem");
    let home = Home::new();

    // Stub (moto has no DescribeInstanceInformation): not listed.
    managed(&proxy, &id, None);
    let out = spawn(
        &home,
        &url,
        &["--instance", &id, "--case", "mem1", "--staging", &staging],
    )
    .wait_with_output()
    .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("not managed by SSM"),
        "{}",
        stderr(&out)
    );
    // Stub: listed, but the agent lost its connection.
    managed(&proxy, &id, Some("ConnectionLost"));
    let out = spawn(
        &home,
        &url,
        &["--instance", &id, "--case", "mem1", "--staging", &staging],
    )
    .wait_with_output()
    .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("PingStatus ConnectionLost"),
        "{}",
        stderr(&out)
    );

    let all = entries(&home);
    let not = with_action(&all, "not_acquired");
    assert_eq!(not.len(), 2, "{all:?}");
    assert!(
        not[0]["detail"]["reason"]
            .as_str()
            .unwrap()
            .contains("not managed")
    );
    assert!(
        not[1]["detail"]["reason"]
            .as_str()
            .unwrap()
            .contains("not online")
    );
    assert_eq!(not[0]["place"]["resource"], id.as_str());
    assert_eq!(not[0]["case"], "mem1");
    assert!(with_action(&all, "command_sent").is_empty());
    assert_eq!(
        proxy.count("SendCommand"),
        0,
        "nothing is sent to an unmanaged instance"
    );
    assert_eq!(proxy.count("CreateMultipartUpload"), 0);
    assert!(home.store_files().is_empty(), "{:?}", home.store_files());
    let v = home.run(&["ledger", "verify"]);
    assert!(v.status.success(), "{}", stderr(&v));
}

#[test]
fn a_command_that_uploads_nothing_is_recorded_not_acquired_and_its_upload_aborted() {
    let Some(endpoint) = emulator("CUSTODY_TEST_S3_ENDPOINT") else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (proxy, url) = rt.block_on(FaultProxy::start(&endpoint));
    let id = rt.block_on(instance(&endpoint));
    let s3c = s3(&endpoint);
    let bucket = rt.block_on(crate::s3::bucket(&s3c));
    let home = Home::new();
    managed(&proxy, &id, Some("Online"));

    // moto reports Success at once and runs nothing: the real SendCommand
    // and GetCommandInvocation, no stub.
    let out = spawn(
        &home,
        &url,
        &[
            "--instance",
            &id,
            "--case",
            "mem2",
            "--staging",
            &format!("s3://{bucket}/mem"),
        ],
    )
    .wait_with_output()
    .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_no_secrets(&out);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(report["artefacts"].as_array().unwrap().is_empty());
    let failure = report["failures"][0].as_str().unwrap();
    assert!(
        failure.contains("succeeded but uploaded nothing"),
        "{failure}"
    );

    let cmd = rt.block_on(sent_command(&endpoint, &id, "mem2"));
    assert_eq!(cmd.document_name(), Some("AWS-RunShellScript"));
    let command_id = cmd.command_id().unwrap();
    let all = entries(&home);
    let sent = with_action(&all, "command_sent");
    assert_eq!(sent.len(), 1, "{all:?}");
    assert_eq!(sent[0]["detail"]["command_id"], command_id);
    assert_eq!(sent[0]["detail"]["document"], "AWS-RunShellScript");
    assert!(sent[0]["detail"]["request_id"].is_string(), "{:?}", sent[0]);
    assert!(!sent[0].to_string().contains("X-Amz-Signature"));
    let not = with_action(&all, "not_acquired");
    assert_eq!(not.len(), 1, "{all:?}");
    assert_eq!(not[0]["detail"]["command_id"], command_id);
    assert!(
        not[0]["detail"]["reason"]
            .as_str()
            .unwrap()
            .contains("uploaded nothing")
    );
    // The staging upload was aborted: no upload and no object is left.
    assert_eq!(proxy.count("AbortMultipartUpload"), 1);
    let uploads = rt
        .block_on(s3c.list_multipart_uploads().bucket(&bucket).send())
        .unwrap();
    assert!(uploads.uploads().is_empty(), "{uploads:?}");
    let objects = rt
        .block_on(s3c.list_objects_v2().bucket(&bucket).send())
        .unwrap();
    assert!(objects.contents().is_empty());
    assert!(home.store_files().is_empty());
}

/// A poll of the command still throttled after the SDK's retries does not
/// end the acquisition: the command runs on, and a later poll sees it end.
#[test]
fn a_throttled_poll_of_the_command_is_polled_again() {
    let Some(endpoint) = emulator("CUSTODY_TEST_S3_ENDPOINT") else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (proxy, url) = rt.block_on(FaultProxy::start(&endpoint));
    let id = rt.block_on(instance(&endpoint));
    let bucket = rt.block_on(crate::s3::bucket(&s3(&endpoint)));
    let home = Home::new();
    // One attempt per request: each throttled answer reaches custody.
    std::fs::write(home.path().join("custody.toml"), "[s3]\nmax_attempts = 1\n").unwrap();
    managed(&proxy, &id, Some("Online"));
    proxy.rule(Rule {
        op: "GetCommandInvocation",
        path: "",
        pass: 0,
        times: 2,
        fault: Fault::Json(
            400,
            serde_json::json!({ "__type": "ThrottlingException", "message": "Rate exceeded" })
                .to_string(),
        ),
    });
    // Then moto answers: the command ended at once, uploading nothing.
    let out = spawn(
        &home,
        &url,
        &[
            "--instance",
            &id,
            "--case",
            "mem6",
            "--staging",
            &format!("s3://{bucket}/mem"),
        ],
    )
    .wait_with_output()
    .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let failure = report["failures"][0].as_str().unwrap();
    assert!(
        failure.contains("succeeded but uploaded nothing"),
        "{failure}"
    );
    assert_eq!(proxy.count("GetCommandInvocation"), 3);
}

/// A stand-in `avml` on PATH that writes `pattern` where it is told.
fn fake_avml(dir: &std::path::Path, pattern: &std::path::Path) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let avml = bin.join("avml");
    std::fs::write(
        &avml,
        format!("#!/bin/sh\ncat '{}' >\"$1\"\n", pattern.display()),
    )
    .unwrap();
    std::fs::set_permissions(&avml, std::fs::Permissions::from_mode(0o755)).unwrap();
    bin
}

/// Runs the script as the instance would (`sh`, as AWS-RunShellScript does).
fn run_as_instance(
    script: &str,
    bin: &std::path::Path,
    dir: &std::path::Path,
) -> std::process::Output {
    let file = dir.join("_script.sh");
    std::fs::write(&file, script).unwrap();
    Command::new("sh")
        .arg(&file)
        .env(
            "PATH",
            format!("{}:{}", bin.display(), std::env::var("PATH").unwrap()),
        )
        .output()
        .unwrap()
}

#[test]
fn the_instance_uploads_through_presigned_urls_and_custody_records_the_image() {
    let Some(endpoint) = emulator("CUSTODY_TEST_S3_ENDPOINT") else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (proxy, url) = rt.block_on(FaultProxy::start(&endpoint));
    let id = rt.block_on(instance(&endpoint));
    let s3c = s3(&endpoint);
    let bucket = rt.block_on(crate::s3::bucket(&s3c));
    let home = Home::new();
    // 12 MiB and a bit, in 5 MiB parts: three parts, the last short.
    let pattern = crate::common::noise((12 << 20) + 4097, 77);
    let pattern_file = home.path().join("pattern.lime");
    std::fs::write(&pattern_file, &pattern).unwrap();
    let bin = fake_avml(home.path(), &pattern_file);
    managed(&proxy, &id, Some("Online"));
    invocation(&proxy, "InProgress", "");

    let child = spawn(
        &home,
        &url,
        &[
            "--instance",
            &id,
            "--case",
            "mem3",
            "--staging",
            &format!("s3://{bucket}/mem"),
            "--part-mib",
            "5",
            "--timeout",
            "300",
            "--verify",
        ],
    );
    // Wait for the command, then play the instance.
    let start = std::time::Instant::now();
    while proxy.count("SendCommand") == 0 {
        assert!(start.elapsed() < Duration::from_secs(60), "no SendCommand");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(300));
    let cmd = rt.block_on(sent_command(&endpoint, &id, "mem3"));
    assert_eq!(cmd.document_name(), Some("AWS-RunShellScript"));
    let script = script_of(&cmd);

    // The URLs: one template, a signature per part; each writes one part
    // of the staging key only, by PUT, and expires after the timeout.
    let value = |name: &str| {
        script
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}=")))
            .unwrap()
            .trim_matches('\'')
            .to_owned()
    };
    let template = url::Url::parse(&value("CUSTODY_URL")).unwrap();
    let sigs = value("CUSTODY_SIGS");
    assert!(
        sigs.split(' ').count() > 3,
        "1 GiB and headroom in 5 MiB parts"
    );
    assert!(
        template
            .path()
            .starts_with(&format!("/{bucket}/mem/staging/mem3/memory-{id}-")),
        "{}",
        template.path()
    );
    let q: std::collections::HashMap<_, _> = template.query_pairs().into_owned().collect();
    assert_eq!(q["partNumber"], "@PART@");
    assert_eq!(q["X-Amz-Signature"], "@SIG@");
    assert_eq!(q["X-Amz-SignedHeaders"], "host");
    assert!(q.contains_key("uploadId"));
    let expires: u64 = q["X-Amz-Expires"].parse().unwrap();
    assert!((300..=300 + 600).contains(&expires), "{expires}");
    assert!(
        !q.keys().any(|k| k.to_lowercase().contains("checksum")),
        "{q:?}"
    );

    let ran = run_as_instance(&script, &bin, home.path());
    assert!(ran.status.success(), "the script failed: {}", stderr(&ran));
    let stdout = String::from_utf8(ran.stdout).unwrap();
    let sha = custody::evidence::sha256_hex(&pattern);
    assert_eq!(
        stdout.trim(),
        format!("custody-memory: parts=3 sha256={sha}")
    );
    assert_eq!(proxy.count("UploadPart"), 3);
    // SSM reports the command's end and output (moto never ran it).
    invocation(&proxy, "Success", &stdout);

    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_no_secrets(&out);
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let art = &r["artefacts"][0];
    assert_eq!(art["kind"], "memory_image");
    assert_eq!(art["source"]["resource"], id.as_str());
    assert_eq!(art["raw"]["size"], pattern.len() as u64);
    assert_eq!(art["raw"]["sha256"], sha.as_str());
    assert!(r["verified"][0]["ok"] == true, "{r}");
    let notes = art["notes"].to_string();
    let command_id = cmd.command_id().unwrap();
    assert!(notes.contains(command_id), "{notes}");
    assert!(
        notes.contains("matches the SHA-256 the instance computed"),
        "{notes}"
    );
    assert!(
        notes.contains(&format!("s3://{bucket}/mem/staging/mem3/")),
        "{notes}"
    );

    let all = entries(&home);
    assert_eq!(
        with_action(&all, "command_sent")[0]["detail"]["command_id"],
        command_id
    );
    let acquired = with_action(&all, "acquired");
    assert_eq!(acquired.len(), 1, "{all:?}");
    assert_eq!(acquired[0]["evidence"]["raw_sha256"], sha.as_str());
    assert!(with_action(&all, "not_acquired").is_empty());
    // The staged object is complete and holds the image.
    let key = template
        .path()
        .trim_start_matches(&format!("/{bucket}/"))
        .to_owned();
    let got = rt
        .block_on(async {
            s3c.get_object()
                .bucket(&bucket)
                .key(&key)
                .send()
                .await
                .unwrap()
                .body
                .collect()
                .await
        })
        .unwrap()
        .into_bytes();
    assert_eq!(custody::evidence::sha256_hex(&got), sha);
}

#[test]
fn an_image_that_does_not_match_the_instances_digest_is_not_acquired() {
    let Some(endpoint) = emulator("CUSTODY_TEST_S3_ENDPOINT") else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (proxy, url) = rt.block_on(FaultProxy::start(&endpoint));
    let id = rt.block_on(instance(&endpoint));
    let bucket = rt.block_on(crate::s3::bucket(&s3(&endpoint)));
    let home = Home::new();
    let pattern_file = home.path().join("pattern.lime");
    std::fs::write(&pattern_file, crate::common::noise(1 << 20, 5)).unwrap();
    let bin = fake_avml(home.path(), &pattern_file);
    managed(&proxy, &id, Some("Online"));
    invocation(&proxy, "InProgress", "");
    let child = spawn(
        &home,
        &url,
        &[
            "--instance",
            &id,
            "--case",
            "mem4",
            "--staging",
            &format!("s3://{bucket}/m"),
            "--part-mib",
            "5",
        ],
    );
    while proxy.count("SendCommand") == 0 {
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(300));
    let script = script_of(&rt.block_on(sent_command(&endpoint, &id, "mem4")));
    let ran = run_as_instance(&script, &bin, home.path());
    assert!(ran.status.success(), "{}", stderr(&ran));
    // What the instance would report had the bytes changed on the way.
    invocation(
        &proxy,
        "Success",
        &format!("custody-memory: parts=1 sha256={}\n", "0".repeat(64)),
    );
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let all = entries(&home);
    let not = with_action(&all, "not_acquired");
    assert_eq!(not.len(), 1, "{all:?}");
    let reason = not[0]["detail"]["reason"].as_str().unwrap();
    assert!(reason.contains("is not the 0000"), "{reason}");
    assert!(with_action(&all, "acquired").is_empty());
}

#[test]
fn the_memory_script_parses_and_passes_shellcheck() {
    use custody::collect::memory::{MIN_PART_SIZE, PartPlan, UrlTemplate, command_text};
    let urls = UrlTemplate {
        template: "http://127.0.0.1:1/b/k?partNumber=@PART@&uploadId=u&X-Amz-Signature=@SIG@"
            .into(),
        signatures: vec!["ab".into(), "cd".into()],
    };
    let plan = PartPlan {
        part_size: MIN_PART_SIZE,
        parts: 2,
    };
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in [
        ("plain.sh", command_text(plan, &urls, None)),
        (
            "avml.sh",
            command_text(plan, &urls, Some(("http://127.0.0.1:1/t", "00"))),
        ),
        ("source.sh", custody::collect::memory::SCRIPT.to_owned()),
    ] {
        let f = dir.path().join(name);
        std::fs::write(&f, &text).unwrap();
        for shell in ["bash", "dash", "sh"] {
            let Ok(out) = Command::new(shell).arg("-n").arg(&f).output() else {
                continue;
            };
            assert!(out.status.success(), "{shell} -n {name}: {}", stderr(&out));
        }
        match Command::new("shellcheck")
            .args(["-s", "sh"])
            .arg(&f)
            .output()
        {
            Ok(out) => assert!(
                out.status.success(),
                "shellcheck {name}: {}",
                String::from_utf8_lossy(&out.stdout)
            ),
            // scripts/test installs it; under CI its absence is a failure.
            Err(_) if std::env::var_os("CI").is_some() => {
                panic!("shellcheck is not installed (scripts/test installs it)")
            }
            Err(_) => eprintln!("NOT RUN: shellcheck is not installed"),
        }
    }
}

#[test]
fn a_command_that_runs_past_the_timeout_is_cancelled_and_recorded_not_acquired() {
    let Some(endpoint) = emulator("CUSTODY_TEST_S3_ENDPOINT") else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (proxy, url) = rt.block_on(FaultProxy::start(&endpoint));
    let id = rt.block_on(instance(&endpoint));
    let s3c = s3(&endpoint);
    let bucket = rt.block_on(crate::s3::bucket(&s3c));
    let home = Home::new();
    managed(&proxy, &id, Some("Online"));
    // Stub: the command never ends (moto ends every command at once).
    invocation(&proxy, "InProgress", "");
    // Stub: moto has no CancelCommand; SSM answers it with an empty object.
    proxy.replace(Rule {
        op: "CancelCommand",
        path: "",
        pass: 0,
        times: u32::MAX,
        fault: Fault::Json(200, "{}".into()),
    });
    let out = spawn(
        &home,
        &url,
        &[
            "--instance",
            &id,
            "--case",
            "mem5",
            "--staging",
            &format!("s3://{bucket}/mem"),
            "--timeout",
            "30",
        ],
    )
    .wait_with_output()
    .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_no_secrets(&out);
    let all = entries(&home);
    let not = with_action(&all, "not_acquired");
    assert_eq!(not.len(), 1, "{all:?}");
    let reason = not[0]["detail"]["reason"].as_str().unwrap();
    assert!(
        reason.contains("did not finish within 30 s") && reason.contains("cancelled"),
        "{reason}"
    );
    // The command was cancelled through SSM and the staging upload aborted.
    let cmd = rt.block_on(sent_command(&endpoint, &id, "mem5"));
    assert_eq!(not[0]["detail"]["command_id"], cmd.command_id().unwrap());
    assert_eq!(proxy.count("CancelCommand"), 1);
    assert_eq!(proxy.count("AbortMultipartUpload"), 1);
    let uploads = rt
        .block_on(s3c.list_multipart_uploads().bucket(&bucket).send())
        .unwrap();
    assert!(uploads.uploads().is_empty(), "{uploads:?}");
    assert!(home.store_files().is_empty());
}
