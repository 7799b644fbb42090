//! Shared helpers: the custody binary in a throw-away home, emulator endpoints.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

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
