//! CloudTrail's integrity chain end to end. moto writes no digest files and
//! signs nothing, so each test writes a trail itself into a moto bucket:
//! hourly log files and digest files in CloudTrail's layout
//! (`AWSLogs/<acct>/CloudTrail-Digest/<region>/YYYY/MM/DD/`, gzip, the
//! signature in the object's `signature` metadata), signed with an RSA key
//! it makes with `openssl`. The signing string is built here from AWS's
//! documentation, not with custody's function. `ListPublicKeys` is answered
//! by a labelled stub of the fault proxy; everything else goes to moto.

use std::io::Write;

use serde_json::Value;
use sha2::Digest as _;

use crate::common::{Home, custody_aws, emulator, stderr};
use crate::fault_proxy::{Fault, FaultProxy, Rule};

const ACCT: &str = "111122223333";
const REGION: &str = "us-east-1";
const DAY: &str = "2021/06/01";
/// The fingerprint the digests name and the stub's key has.
const FP: &str = "3a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d";
const SIG_ALG: &str = "SHA256withRSA";

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(bytes))
}

/// The test's own signing key: 2048-bit RSA from `openssl genpkey` in
/// DER (ring signs but cannot make RSA keys).
struct Signer {
    key: ring::signature::RsaKeyPair,
}

impl Signer {
    fn new() -> Self {
        let out = std::process::Command::new("openssl")
            .args([
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
                "-outform",
                "DER",
            ])
            .output()
            .expect("openssl, to make the test's RSA key");
        assert!(out.status.success(), "openssl: {}", stderr(&out));
        Self {
            // OpenSSL 3.0 writes PKCS#1 in DER, others PKCS#8.
            key: ring::signature::RsaKeyPair::from_pkcs8(&out.stdout)
                .or_else(|_| ring::signature::RsaKeyPair::from_der(&out.stdout))
                .unwrap(),
        }
    }

    /// Hex SHA256withRSA (PKCS#1 v1.5) signature of `message`.
    fn sign(&self, message: &str) -> String {
        let mut sig = vec![0; self.key.public().modulus_len()];
        self.key
            .sign(
                &ring::signature::RSA_PKCS1_SHA256,
                &ring::rand::SystemRandom::new(),
                message.as_bytes(),
                &mut sig,
            )
            .unwrap();
        hex::encode(sig)
    }

    /// `ListPublicKeys` as CloudTrail answers it (JSON protocol: the DER
    /// `RSAPublicKey` in base64, times in seconds).
    fn list_public_keys(&self, fingerprint: &str) -> String {
        use base64::Engine as _;
        serde_json::json!({"PublicKeyList": [{
            "Value": base64::engine::general_purpose::STANDARD.encode(self.key.public().as_ref()),
            "ValidityStartTime": 1_622_505_600,
            "ValidityEndTime": 1_625_097_600,
            "Fingerprint": fingerprint,
        }]})
        .to_string()
    }
}

fn s3_client(endpoint: &str) -> aws_sdk_s3::Client {
    let conf = crate::common::aws_conf(endpoint);
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&conf)
            .force_path_style(true)
            .build(),
    )
}

fn digest_key(day: &str, end: &str) -> String {
    format!(
        "AWSLogs/{ACCT}/CloudTrail-Digest/{REGION}/{day}/{ACCT}_CloudTrail-Digest_{REGION}_main_{REGION}_{end}.json.gz"
    )
}

fn log_key(hhmm: &str, n: usize) -> String {
    format!(
        "AWSLogs/{ACCT}/CloudTrail/{REGION}/{DAY}/{ACCT}_CloudTrail_{REGION}_20210601T{hhmm}Z_f{n}.json.gz"
    )
}

fn log_body(n: usize, time: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({"Records": [{
        "eventVersion": "1.08", "eventTime": time, "eventSource": "iam.amazonaws.com",
        "eventName": "CreateUser", "awsRegion": REGION, "sourceIPAddress": "203.0.113.7",
        "userAgent": "aws-cli/2.2.0", "eventID": format!("00000000-0000-0000-0000-{n:012}"),
        "userIdentity": {"type": "IAMUser", "arn": format!("arn:aws:iam::{ACCT}:user/u{n}"), "accountId": ACCT},
        "eventType": "AwsApiCall", "recipientAccountId": ACCT
    }]}))
    .unwrap()
}

/// A trail written into a bucket: three hourly digests of 2021-06-01 (the
/// first chained to a digest of the day before), two log files each, and
/// a log file delivered after the last digest.
struct Trail {
    bucket: String,
    digests: Vec<String>,
    /// Each digest's body as stored (gzip) and signature (hex).
    digest_bodies: Vec<(Vec<u8>, String)>,
    logs: Vec<String>,
    /// The uncompressed content of each log file.
    contents: Vec<Vec<u8>>,
}

async fn seed(s3: &aws_sdk_s3::Client, signer: &Signer, bucket: &str) -> Trail {
    s3.create_bucket().bucket(bucket).send().await.unwrap();
    let mut t = Trail {
        bucket: bucket.to_owned(),
        digests: Vec::new(),
        digest_bodies: Vec::new(),
        logs: Vec::new(),
        contents: Vec::new(),
    };
    // The chain's previous link lies the day before, outside the window.
    let mut previous: (String, String, String) = (
        digest_key("2021/05/31", "20210531T230000Z"),
        "ab".repeat(256),
        "cd".repeat(32),
    );
    for h in 0..3usize {
        let mut listed = Vec::new();
        for (i, minute) in [10, 40].into_iter().enumerate() {
            let n = h * 2 + i;
            let key = log_key(&format!("{h:02}{minute}"), n);
            let body = log_body(n, &format!("2021-06-01T{h:02}:{:02}:00Z", minute - 5));
            put(s3, bucket, &key, gz(&body), None).await;
            listed.push(serde_json::json!({
                "s3Bucket": bucket, "s3Object": key, "hashValue": sha256(&body),
                "hashAlgorithm": "SHA-256",
                "newestEventTime": format!("2021-06-01T{h:02}:{:02}:00Z", minute - 5),
                "oldestEventTime": format!("2021-06-01T{h:02}:{:02}:00Z", minute - 5),
            }));
            t.logs.push(key);
            t.contents.push(body);
        }
        let start = format!("2021-06-01T{h:02}:00:00Z");
        let end = format!("2021-06-01T{:02}:00:00Z", h + 1);
        let key = digest_key(DAY, &format!("20210601T{:02}0000Z", h + 1));
        let doc = serde_json::json!({
            "awsAccountId": ACCT, "digestStartTime": start, "digestEndTime": end,
            "digestS3Bucket": bucket, "digestS3Object": key,
            "digestPublicKeyFingerprint": FP, "digestSignatureAlgorithm": SIG_ALG,
            "newestEventTime": end, "oldestEventTime": start,
            "previousDigestS3Bucket": bucket, "previousDigestS3Object": previous.0,
            "previousDigestHashValue": previous.2, "previousDigestHashAlgorithm": "SHA-256",
            "previousDigestSignature": previous.1,
            "logFiles": listed,
        });
        let content = serde_json::to_vec_pretty(&doc).unwrap();
        // As AWS documents it: end time, S3 path, hex SHA-256 of the
        // digest's uncompressed content, previous signature; newlines between.
        let to_sign = format!(
            "{end}\n{bucket}/{key}\n{}\n{}",
            sha256(&content),
            previous.1
        );
        let signature = signer.sign(&to_sign);
        let body = gz(&content);
        put(s3, bucket, &key, body.clone(), Some(&signature)).await;
        previous = (key.clone(), signature.clone(), sha256(&content));
        t.digests.push(key);
        t.digest_bodies.push((body, signature));
    }
    let late = log_key("0330", 99);
    let body = log_body(99, "2021-06-01T03:25:00Z");
    put(s3, bucket, &late, gz(&body), None).await;
    t.logs.push(late);
    t.contents.push(body);
    t
}

async fn put(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    body: Vec<u8>,
    signature: Option<&str>,
) {
    let mut req = s3.put_object().bucket(bucket).key(key).body(body.into());
    if let Some(sig) = signature {
        req = req
            .metadata("signature", sig)
            .metadata("signature-algorithm", SIG_ALG);
    }
    req.send().await.unwrap();
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
        .chars()
        .take(40)
        .collect()
}

/// `custody logs cloudtrail` of the whole day into `case`, through the
/// proxy: exit code and JSON.
fn collect(home: &Home, via: &str, bucket: &str, case: &str) -> (Option<i32>, Value, String) {
    let out = custody_aws(
        home,
        via,
        &[
            "--json",
            "logs",
            "cloudtrail",
            "--bucket",
            bucket,
            "--account",
            ACCT,
            "--region",
            REGION,
            "--since",
            "2021-06-01",
            "--until",
            "2021-06-01T23:59:59Z",
            "--case",
            case,
        ],
    );
    let json = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {} / {}",
            String::from_utf8_lossy(&out.stdout),
            stderr(&out)
        )
    });
    (out.status.code(), json, stderr(&out))
}

/// The one verification of a `logs cloudtrail` run.
fn verification(r: &Value) -> &Value {
    assert_eq!(r["integrity"]["status"], "verified", "{:#}", r["integrity"]);
    &r["integrity"]["verifications"][0]
}

fn log_file<'v>(v: &'v Value, key: &str) -> &'v Value {
    v["report"]["log_files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["key"] == key)
        .unwrap_or_else(|| panic!("{key} not in {:#}", v["report"]["log_files"]))
}

fn digest<'v>(v: &'v Value, key: &str) -> &'v Value {
    v["report"]["digests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["key"] == key)
        .unwrap_or_else(|| panic!("{key} not in {:#}", v["report"]["digests"]))
}

/// The statuses of the log files that are problems, in key order.
fn problem_statuses(v: &Value) -> Vec<String> {
    v["report"]["log_files"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["status"] == "altered" || l["status"] == "missing")
        .map(|l| l["status"].as_str().unwrap().to_owned())
        .collect()
}

/// A proxy to moto that answers ListPublicKeys with `signer`'s key under `fingerprint`.
fn stub_keys(proxy: &FaultProxy, signer: &Signer, fingerprint: &str) {
    // STUB: moto does not implement CloudTrail ListPublicKeys (nor writes
    // digests). Only that operation is answered here, with the test's key.
    proxy.replace(Rule {
        op: "ListPublicKeys",
        path: "",
        pass: 0,
        times: 1000,
        fault: Fault::Json(200, signer.list_public_keys(fingerprint)),
    });
}

struct Setup {
    rt: tokio::runtime::Runtime,
    s3: aws_sdk_s3::Client,
    proxy: FaultProxy,
    via: String,
    signer: Signer,
}

fn setup() -> Option<Setup> {
    let endpoint = emulator("CUSTODY_TEST_S3_ENDPOINT")?;
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (proxy, via) = rt.block_on(FaultProxy::start(&endpoint));
    let signer = Signer::new();
    stub_keys(&proxy, &signer, FP);
    Some(Setup {
        s3: s3_client(&endpoint),
        rt,
        proxy,
        via,
        signer,
    })
}

#[test]
fn a_signed_trail_verifies_after_collection_and_again_offline() {
    let Some(st) = setup() else { return };
    let t = st
        .rt
        .block_on(seed(&st.s3, &st.signer, &unique("trail-ok")));
    let home = Home::new();
    let (code, r, err) = collect(&home, &st.via, &t.bucket, "intact");
    assert_eq!(code, Some(0), "{err}");
    assert!(st.proxy.count("ListPublicKeys") >= 1);
    let v = verification(&r);
    let s = &v["report"]["summary"];
    assert_eq!(s["digests"], 3, "{s:#}");
    assert_eq!(s["signatures_valid"], 3, "{:#}", v["report"]["digests"]);
    assert_eq!(s["valid"], 6, "{:#}", v["report"]["log_files"]);
    assert_eq!(s["uncovered"], 1, "the file after the last digest");
    assert_eq!(s["problems"], 0);
    assert_eq!(
        digest(v, &t.digests[0])["link"]["status"],
        "first_in_window"
    );
    assert_eq!(digest(v, &t.digests[2])["link"]["status"], "ok");
    assert_eq!(log_file(v, &t.logs[6])["status"], "uncovered");
    assert_eq!(r["timeline"][0]["events"], 7, "the logs still load");
    // The report and the keys are a derived artefact of the bundle, in the ledger.
    let bundle = r["artefacts"][0]["id"].as_str().unwrap().to_owned();
    let stored = v["stored"]["id"].as_str().unwrap().to_owned();
    assert_eq!(v["stored"]["derived"]["parent"], bundle.as_str());
    assert_eq!(v["stored"]["source"]["path"], "cloudtrail-integrity.json");
    let verify = home.run(&["verify", "intact"]);
    assert!(verify.status.success(), "{}", stderr(&verify));
    // Exported, the stored report holds the keys in the CLI's shape, and
    // checks the bundle again with no AWS at all.
    let file = home.path().join("integrity.json");
    let exp = home.run(&[
        "export",
        "intact",
        &stored,
        "--output",
        file.to_str().unwrap(),
    ]);
    assert!(exp.status.success(), "{}", stderr(&exp));
    let doc: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(doc["public_keys"]["PublicKeyList"][0]["Fingerprint"], FP);
    assert_eq!(doc["bundle"], bundle.as_str());
    let calls = st.proxy.count("ListPublicKeys");
    let offline = home.run(&[
        "--json",
        "logs",
        "verify-trail",
        "--case",
        "intact",
        "--artefact",
        &bundle,
        "--public-keys",
        file.to_str().unwrap(),
    ]);
    assert_eq!(offline.status.code(), Some(0), "{}", stderr(&offline));
    let o: Value = serde_json::from_slice(&offline.stdout).unwrap();
    assert_eq!(o["intact"], true);
    assert!(
        o["verifications"][0]["keys"]["origin"]
            .as_str()
            .unwrap()
            .starts_with("file "),
        "{o:#}"
    );
    assert_eq!(st.proxy.count("ListPublicKeys"), calls, "no call offline");
    // The table names each digest.
    let table = custody_aws(
        &home,
        &st.via,
        &["logs", "verify-trail", "--case", "intact"],
    );
    assert_eq!(table.status.code(), Some(0), "{}", stderr(&table));
    let text = String::from_utf8(table.stdout).unwrap();
    assert!(text.contains("first in window"), "{text}");
    assert!(
        text.contains("intact: no log file altered or missing"),
        "{text}"
    );
}

#[test]
fn an_altered_and_a_deleted_log_file_are_named_with_both_hashes() {
    let Some(st) = setup() else { return };
    let t = st
        .rt
        .block_on(seed(&st.s3, &st.signer, &unique("trail-alt")));
    let forged = log_body(0, "2021-06-01T00:05:00Z")
        .iter()
        .map(|&b| if b == b'7' { b'8' } else { b })
        .collect::<Vec<u8>>();
    st.rt.block_on(async {
        put(&st.s3, &t.bucket, &t.logs[0], gz(&forged), None).await;
        st.s3
            .delete_object()
            .bucket(&t.bucket)
            .key(&t.logs[3])
            .send()
            .await
            .unwrap();
    });
    let home = Home::new();
    let (code, r, err) = collect(&home, &st.via, &t.bucket, "altered");
    assert_eq!(code, Some(1), "{err}");
    let v = verification(&r);
    let altered = log_file(v, &t.logs[0]);
    assert_eq!(altered["status"], "altered", "{altered:#}");
    let (want, found) = (sha256(&t.contents[0]), sha256(&forged));
    assert_eq!(altered["expected_sha256"], want.as_str());
    assert_eq!(altered["actual_sha256"], found.as_str());
    let reason = altered["reason"].as_str().unwrap();
    assert!(
        reason.contains(&want) && reason.contains(&found) && reason.contains(&t.digests[0]),
        "{reason}"
    );
    assert_eq!(log_file(v, &t.logs[3])["status"], "missing");
    assert_eq!(problem_statuses(v), ["altered", "missing"]);
    assert_eq!(v["report"]["summary"]["problems"], 2);
    assert_eq!(v["report"]["summary"]["signatures_valid"], 3);
    // verify-trail says the same, in a table naming both hashes.
    let again = custody_aws(
        &home,
        &st.via,
        &["logs", "verify-trail", "--case", "altered"],
    );
    assert_eq!(again.status.code(), Some(1), "{}", stderr(&again));
    let text = String::from_utf8(again.stdout).unwrap();
    assert!(text.contains("altered") && text.contains(&found), "{text}");
    assert!(text.contains("missing"), "{text}");
    // Both are findings of the case, the altered file's resting on its events.
    let f = home.json(&["findings", "altered"]);
    let trail: Vec<&serde_json::Value> = f["detections"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["kind"] == "trail")
        .collect();
    let mut titles: Vec<&str> = trail.iter().map(|d| d["title"].as_str().unwrap()).collect();
    titles.sort_unstable();
    assert_eq!(
        titles,
        [
            format!("CloudTrail log file altered: {}", t.logs[0]),
            format!("CloudTrail log file deleted: {}", t.logs[3]),
        ],
        "{f:#}"
    );
    assert!(trail.iter().all(|d| d["level"] == "high"));
    let altered_events = trail
        .iter()
        .find(|d| d["title"].as_str().unwrap().contains("altered"))
        .map(|d| d["events"].as_array().unwrap().len());
    assert!(altered_events > Some(0), "{trail:#?}");
    // Checking again replaces them rather than adding more.
    custody_aws(
        &home,
        &st.via,
        &["logs", "verify-trail", "--case", "altered"],
    );
    let again = home.json(&["findings", "altered"]);
    assert_eq!(
        again["detections"].as_array().unwrap().len(),
        2,
        "{again:#}"
    );
}

#[test]
fn a_log_file_planted_inside_a_digests_hour_is_named() {
    let Some(st) = setup() else { return };
    let t = st
        .rt
        .block_on(seed(&st.s3, &st.signer, &unique("trail-plant")));
    // Named for 01:20, inside the 01:00-02:00 digest, which does not list it.
    let planted = log_key("0120", 50);
    st.rt.block_on(put(
        &st.s3,
        &t.bucket,
        &planted,
        gz(&log_body(50, "2021-06-01T01:15:00Z")),
        None,
    ));
    let home = Home::new();
    let (code, r, err) = collect(&home, &st.via, &t.bucket, "planted");
    assert_eq!(code, Some(1), "{err}");
    let v = verification(&r);
    let p = log_file(v, &planted);
    assert_eq!(p["status"], "unlisted", "{p:#}");
    assert_eq!(p["digest"], t.digests[1].as_str());
    assert!(
        p["reason"].as_str().unwrap().contains("does not list it"),
        "{p:#}"
    );
    // Newer than the last digest is only uncovered: no digest speaks for it yet.
    assert_eq!(log_file(v, t.logs.last().unwrap())["status"], "uncovered");
    assert_eq!(v["report"]["summary"]["problems"], 1);
    let f = home.json(&["findings", "planted"]);
    assert!(
        f["detections"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["kind"] == "trail" && d["title"].as_str().unwrap().contains(&planted)),
        "{f:#}"
    );
}

#[test]
fn a_flipped_signature_is_invalid_and_breaks_the_next_link() {
    let Some(st) = setup() else { return };
    let t = st
        .rt
        .block_on(seed(&st.s3, &st.signer, &unique("trail-sig")));
    let (body, sig) = &t.digest_bodies[1];
    let flipped: String = sig
        .chars()
        .enumerate()
        .map(|(i, c)| {
            if i == 20 {
                if c == '0' { '1' } else { '0' }
            } else {
                c
            }
        })
        .collect();
    st.rt.block_on(put(
        &st.s3,
        &t.bucket,
        &t.digests[1],
        body.clone(),
        Some(&flipped),
    ));
    let home = Home::new();
    let (code, r, err) = collect(&home, &st.via, &t.bucket, "flipped");
    assert_eq!(code, Some(1), "{err}");
    let v = verification(&r);
    assert_eq!(digest(v, &t.digests[1])["signature"]["status"], "invalid");
    assert_eq!(digest(v, &t.digests[0])["signature"]["status"], "valid");
    let next = digest(v, &t.digests[2]);
    assert_eq!(next["signature"]["status"], "valid");
    assert_eq!(next["link"]["status"], "broken", "{next:#}");
    // The flipped digest's files match, but nothing vouches for them.
    assert_eq!(log_file(v, &t.logs[2])["status"], "unchecked");
    assert_eq!(log_file(v, &t.logs[0])["status"], "valid");
}

#[test]
fn a_digest_removed_from_the_middle_is_a_gap() {
    let Some(st) = setup() else { return };
    let t = st
        .rt
        .block_on(seed(&st.s3, &st.signer, &unique("trail-gap")));
    st.rt.block_on(async {
        st.s3
            .delete_object()
            .bucket(&t.bucket)
            .key(&t.digests[1])
            .send()
            .await
            .unwrap();
    });
    let home = Home::new();
    let (code, r, err) = collect(&home, &st.via, &t.bucket, "gap");
    assert_eq!(code, Some(1), "{err}");
    let v = verification(&r);
    let gaps = v["report"]["gaps"].as_array().unwrap();
    assert_eq!(gaps.len(), 1, "{gaps:#?}");
    assert_eq!(gaps[0]["missing"], t.digests[1].as_str());
    assert_eq!(gaps[0]["named_by"], t.digests[2].as_str());
    assert_eq!(
        digest(v, &t.digests[2])["link"]["status"],
        "previous_missing"
    );
    // The files only the deleted digest listed are vouched for by nothing.
    assert_eq!(log_file(v, &t.logs[2])["status"], "uncovered");
    assert_eq!(log_file(v, &t.logs[3])["status"], "uncovered");
    let text = custody_aws(&home, &st.via, &["logs", "verify-trail", "--case", "gap"]);
    assert_eq!(text.status.code(), Some(1));
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(
        text.contains("PREVIOUS MISSING") && text.contains("gap"),
        "{text}"
    );
}

#[test]
fn keys_of_another_fingerprint_no_keys_and_no_digests_are_said_plainly() {
    let Some(st) = setup() else { return };
    let t = st
        .rt
        .block_on(seed(&st.s3, &st.signer, &unique("trail-key")));
    let home = Home::new();
    let (code, _, err) = collect(&home, &st.via, &t.bucket, "keys");
    assert_eq!(code, Some(0), "{err}");
    // ListPublicKeys now answers a key of another fingerprint.
    stub_keys(&st.proxy, &st.signer, "ffffffffffffffffffffffffffffffff");
    let out = custody_aws(
        &home,
        &st.via,
        &["--json", "logs", "verify-trail", "--case", "keys"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let o: Value = serde_json::from_slice(&out.stdout).unwrap();
    let v = &o["verifications"][0];
    assert_eq!(v["report"]["summary"]["signatures_unknown_key"], 3, "{v:#}");
    assert_eq!(
        digest(v, &t.digests[0])["signature"],
        serde_json::json!({"status": "unknown_key", "fingerprint": FP})
    );
    assert_eq!(v["report"]["summary"]["valid"], 0);

    // Keys that cannot be fetched: the logs are collected, and custody says
    // how to verify them later.
    st.proxy.replace(Rule {
        op: "ListPublicKeys",
        path: "",
        pass: 0,
        times: 1000,
        fault: Fault::Json(
            400,
            r#"{"__type":"AccessDeniedException","message":"stub: not allowed"}"#.into(),
        ),
    });
    let out = custody_aws(
        &home,
        &st.via,
        &[
            "logs",
            "cloudtrail",
            "--bucket",
            &t.bucket,
            "--account",
            ACCT,
            "--region",
            REGION,
            "--since",
            "2021-06-01",
            "--until",
            "2021-06-01T23:59:59Z",
            "--case",
            "nokeys",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("CloudTrail integrity not verified"), "{text}");
    assert!(
        text.contains("custody logs verify-trail --case nokeys --artefact"),
        "{text}"
    );
    let denied = custody_aws(
        &home,
        &st.via,
        &["logs", "verify-trail", "--case", "nokeys"],
    );
    assert_eq!(denied.status.code(), Some(2));
    assert!(
        stderr(&denied).contains("ListPublicKeys"),
        "{}",
        stderr(&denied)
    );

    // A bundle without a single digest is an error, not "valid".
    let bare = unique("trail-bare");
    st.rt.block_on(async {
        st.s3.create_bucket().bucket(&bare).send().await.unwrap();
        put(
            &st.s3,
            &bare,
            &log_key("0010", 0),
            gz(&log_body(0, "2021-06-01T00:05:00Z")),
            None,
        )
        .await;
    });
    stub_keys(&st.proxy, &st.signer, FP);
    let (code, r, err) = collect(&home, &st.via, &bare, "bare");
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(r["integrity"]["status"], "not_verified");
    assert!(
        r["integrity"]["reason"]
            .as_str()
            .unwrap()
            .contains("no CloudTrail digest file"),
        "{:#}",
        r["integrity"]
    );
    let none = custody_aws(&home, &st.via, &["logs", "verify-trail", "--case", "bare"]);
    assert_eq!(none.status.code(), Some(2));
    assert!(
        stderr(&none).contains("holds no CloudTrail digest file"),
        "{}",
        stderr(&none)
    );
}
