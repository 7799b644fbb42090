//! Shared helpers: the custody binary in a throw-away home, emulator endpoints.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

/// The endpoint in `var`, or `None` outside CI (with a message). In CI a
/// missing emulator is a failure: a skipped test there would hide it.
pub fn emulator(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Some(v),
        _ => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "{var} is not set: in CI the tests must run through scripts/test, which starts the emulators"
            );
            eprintln!("NOT RUN: {var} is not set; run scripts/test to start the emulators");
            None
        }
    }
}

/// A custody home and local store in a temporary directory.
pub struct Home {
    pub dir: tempfile::TempDir,
}

impl Home {
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn store_dir(&self) -> PathBuf {
        self.path().join("evidence")
    }

    pub fn cmd(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_custody"));
        c.env("CUSTODY_HOME", self.path())
            .env_remove("CUSTODY_STORE")
            .env("RUST_LOG", "warn")
            .arg("--no-progress");
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().expect("run custody")
    }

    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let out = self.run(&all);
        assert!(
            out.status.success(),
            "custody {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("JSON on stdout")
    }

    /// Every file under the store, relative to it.
    pub fn store_files(&self) -> Vec<String> {
        let mut out = Vec::new();
        let root = self.store_dir();
        let mut stack = vec![root.clone()];
        while let Some(d) = stack.pop() {
            let Ok(rd) = std::fs::read_dir(&d) else {
                continue;
            };
            for e in rd.flatten() {
                if e.file_type().unwrap().is_dir() {
                    stack.push(e.path());
                } else {
                    out.push(e.path().strip_prefix(&root).unwrap().display().to_string());
                }
            }
        }
        out.sort();
        out
    }
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Deterministic bytes that compress like real data: text runs and noise.
pub fn mixed_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(len);
    let mut x = seed | 1;
    let mut i = 0u64;
    while v.len() < len {
        if i.is_multiple_of(3) {
            for _ in 0..512 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                v.push(x as u8);
            }
        } else {
            v.extend_from_slice(
                format!("{i:08} evidence line with some repeated words in it\n").as_bytes(),
            );
        }
        i += 1;
    }
    v.truncate(len);
    v
}

/// Incompressible bytes (xorshift), so a stored size and part count are known.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// An SDK configuration for the moto endpoint (test credentials, one try).
pub fn aws_conf(endpoint: &str) -> aws_config::SdkConfig {
    aws_config::SdkConfig::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_ec2::config::SharedCredentialsProvider::new(
            aws_sdk_ec2::config::Credentials::new("testing", "testing", None, None, "tests"),
        ))
        .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(1))
        .build()
}

/// Runs custody against the AWS emulator at `endpoint`.
pub fn custody_aws(home: &Home, endpoint: &str, args: &[&str]) -> Output {
    home.cmd()
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .args(["--endpoint-url", endpoint])
        .args(args)
        .output()
        .expect("run custody")
}

/// An instance of `ami` in a VPC of its own (10.`octet`.0.0/16), launched
/// with a group of its own; returns the VPC, the group and the instance.
/// A VPC of its own: the isolation groups other tests create elsewhere do
/// not show there. moto shows no groups in the instance view of an instance
/// launched without one (AWS shows the default group).
pub async fn instance_in_own_vpc(
    ec2: &aws_sdk_ec2::Client,
    ami: &str,
    octet: u8,
    disk: Option<&str>,
) -> (String, String, String) {
    let vpc = ec2
        .create_vpc()
        .cidr_block(format!("10.{octet}.0.0/16"))
        .send()
        .await
        .unwrap()
        .vpc()
        .unwrap()
        .vpc_id()
        .unwrap()
        .to_owned();
    let subnet = ec2
        .create_subnet()
        .vpc_id(&vpc)
        .cidr_block(format!("10.{octet}.1.0/24"))
        .send()
        .await
        .unwrap()
        .subnet()
        .unwrap()
        .subnet_id()
        .unwrap()
        .to_owned();
    let app = ec2
        .create_security_group()
        .group_name(format!("app-{}", uuid::Uuid::new_v4().simple()))
        .description("the workload's own group")
        .vpc_id(&vpc)
        .send()
        .await
        .unwrap()
        .group_id()
        .unwrap()
        .to_owned();
    let mut run = ec2.run_instances();
    if let Some(snapshot) = disk {
        // Its only volume, made from the snapshot (no default root volume).
        run = run.block_device_mappings(
            aws_sdk_ec2::types::BlockDeviceMapping::builder()
                .device_name("/dev/xvda")
                .ebs(
                    aws_sdk_ec2::types::EbsBlockDevice::builder()
                        .snapshot_id(snapshot)
                        .delete_on_termination(true)
                        .build(),
                )
                .build(),
        );
    }
    let run = run
        .subnet_id(&subnet)
        .security_group_ids(&app)
        .image_id(ami)
        .instance_type(aws_sdk_ec2::types::InstanceType::T2Micro)
        .min_count(1)
        .max_count(1)
        .send()
        .await
        .unwrap();
    let id = run.instances()[0].instance_id().unwrap().to_owned();
    (vpc, app, id)
}

/// An image moto offers.
pub async fn any_image(ec2: &aws_sdk_ec2::Client) -> String {
    let out = ec2.describe_images().send().await.unwrap();
    out.images()
        .iter()
        .find_map(|i| i.image_id())
        .expect("moto has images")
        .to_owned()
}

/// Seeds a snapshot of a `gib` GiB volume with `blocks` (index, bytes),
/// put in the order given.
pub async fn seed_blocks(endpoint: &str, gib: i64, blocks: &[(usize, &[u8])]) -> String {
    let ebs = aws_sdk_ebs::Client::new(&aws_conf(endpoint));
    let snap = ebs
        .start_snapshot()
        .volume_size(gib)
        .description("custody test seed")
        .send()
        .await
        .expect("start snapshot");
    let id = snap.snapshot_id().unwrap().to_owned();
    for (i, block) in blocks {
        let sum = {
            use base64::Engine as _;
            use sha2::Digest as _;
            base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(block))
        };
        ebs.put_snapshot_block()
            .snapshot_id(&id)
            .block_index(i32::try_from(*i).unwrap())
            .block_data(aws_sdk_ebs::primitives::ByteStream::from(block.to_vec()))
            .data_length(i32::try_from(block.len()).unwrap())
            .checksum(sum)
            .checksum_algorithm(aws_sdk_ebs::types::ChecksumAlgorithm::ChecksumAlgorithmSha256)
            .send()
            .await
            .expect("put block");
    }
    ebs.complete_snapshot()
        .snapshot_id(&id)
        .changed_blocks_count(i32::try_from(blocks.len()).unwrap())
        .send()
        .await
        .expect("complete snapshot");
    id
}

/// A server (`custody serve`, `custody ui`) at the address it printed; killed when dropped.
pub struct Listening {
    pub child: Child,
    pub addr: String,
}

impl Drop for Listening {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `cmd`, a server that prints `{"listening": ADDR}` as its first
/// line, with its stderr discarded.
pub fn listening(cmd: &mut Command) -> Listening {
    listening_or(cmd.stderr(Stdio::null()), |line| format!("{line:?}"))
}

/// [`listening`], with `cmd`'s stderr as the caller set it; `explain`
/// turns a first line that is not the address into the panic message.
pub fn listening_or(cmd: &mut Command, explain: impl FnOnce(&str) -> String) -> Listening {
    let child = cmd.stdout(Stdio::piped()).spawn().unwrap();
    // Built first, so that a server that does not start is killed as well.
    let mut server = Listening {
        child,
        addr: String::new(),
    };
    let mut line = String::new();
    BufReader::new(server.child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let v: serde_json::Value =
        serde_json::from_str(&line).unwrap_or_else(|_| panic!("{}", explain(&line)));
    server.addr = v["listening"].as_str().unwrap().to_owned();
    server
}
