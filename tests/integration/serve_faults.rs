//! `custody serve` while its disk fills and empties: the issue's fault test.
//!
//! The server's home is a small tmpfs; a filler fills it to the last byte,
//! holds it full for a moment, frees it, again and again, while 1,000
//! signed alerts are delivered (each delivered again after a 503, as a
//! sender does). Then the server is killed (-9) and started again. Every
//! alert that got a 202 must end `done`, each must have exactly one
//! `alert_received` entry in the ledger (none ran twice), and `custody
//! ledger verify` must pass.
//!
//! Needs root to mount the tmpfs. CI runs as root; anywhere else the test
//! fails, loudly, rather than pass without having run.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::Home;

const SECRET: &str = "fault-test-secret";
const READ: &str = "fault-test-read";
const ALERTS: usize = 1000;
const SENDERS: usize = 8;
/// 24 MiB: room for the ledger, its checkpoints and the queue of 1,000
/// jobs several times over, small enough to fill in a few milliseconds.
const TMPFS_SIZE: &str = "size=24m";

/// A tmpfs over a directory, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path) -> Self {
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", TMPFS_SIZE, "tmpfs"])
            .arg(dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "cannot mount a tmpfs on {}: {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        Self(dir.to_owned())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

type Server = crate::common::Listening;

fn start(home: &Home, config: &Path, log: &Path) -> Server {
    crate::common::listening_or(
        home.cmd()
            .env("TEST_FAULT_SECRET", SECRET)
            .env("TEST_FAULT_READ", READ)
            .args(["serve", "--config"])
            .arg(config)
            .stderr(std::fs::File::create(log).unwrap()),
        |line| {
            format!(
                "the server did not start: {line:?}\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            )
        },
    )
}

/// One request; the status and body, or why there was none.
fn request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())?;
    s.write_all(body)?;
    let mut out = Vec::new();
    s.read_to_end(&mut out)?;
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no status in {text:?}")))?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

fn alert(i: usize) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "id": format!("fault-{i:04}"),
        "time": "2026-11-30T10:00:00Z",
        "severity": 5,
        "title": "disk fault test",
        "entities": { "ips": [format!("198.51.100.{}", i % 250 + 1)] }
    }))
    .unwrap()
}

/// Delivers alert `i` until it gets a 202 (after a 503, a connection
/// error or a reset, again after a pause, as a sender does); returns its
/// job and how many times it was refused.
fn deliver(addr: &str, i: usize, until: Instant) -> (String, usize) {
    let mut refused = 0;
    let body = alert(i);
    let mut last = String::new();
    while Instant::now() < until {
        let t = time::OffsetDateTime::now_utc().unix_timestamp();
        let sig = custody::serve::auth::sign(SECRET.as_bytes(), t, &body);
        match request(
            addr,
            "POST",
            "/v1/alerts/edr",
            &[("X-Custody-Signature", sig)],
            &body,
        ) {
            Ok((202, b)) => {
                let v: serde_json::Value = serde_json::from_str(&b).unwrap();
                return (
                    v["accepted"][0]["job"].as_str().unwrap().to_owned(),
                    refused,
                );
            }
            Ok((503, b)) => last = b,
            Ok((status, b)) => panic!("alert {i}: {status} {b}"),
            Err(e) => last = e.to_string(),
        }
        refused += 1;
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("alert {i} never got a 202; last: {last}");
}

/// Fills the file system under `dir` to the last byte, holds it full,
/// frees it, until `stop`; returns how many times it filled it.
fn fill_and_empty(dir: &Path, stop: &AtomicBool) -> usize {
    let filler = dir.join("filler");
    let mut cycles = 0;
    let big = vec![0x5a_u8; 1 << 20];
    while !stop.load(Ordering::SeqCst) {
        if let Ok(mut f) = std::fs::File::create(&filler) {
            // Big writes, then small ones for the last pages.
            while f.write_all(&big).is_ok() {}
            while f.write_all(&big[..4096]).is_ok() {}
            let _ = f.write_all(&big[..1]);
            cycles += 1;
        }
        std::thread::sleep(Duration::from_millis(60));
        let _ = std::fs::remove_file(&filler);
        std::thread::sleep(Duration::from_millis(90));
    }
    let _ = std::fs::remove_file(&filler);
    cycles
}

/// Jobs per state, from `/metrics`.
fn job_counts(addr: &str) -> BTreeMap<String, u64> {
    let (status, text) = request(
        addr,
        "GET",
        "/metrics",
        &[("Authorization", format!("Bearer {READ}"))],
        b"",
    )
    .unwrap();
    assert_eq!(status, 200, "{text}");
    text.lines()
        .filter_map(|l| l.strip_prefix("custody_jobs{state=\""))
        .filter_map(|l| {
            let (state, n) = l.split_once("\"} ")?;
            Some((state.to_owned(), n.trim().parse().ok()?))
        })
        .collect()
}

#[test]
fn serve_takes_1000_alerts_while_its_disk_fills_and_empties_and_loses_none() {
    let uid = std::process::Command::new("id").arg("-u").output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&uid.stdout).trim(),
        "0",
        "this test mounts a tmpfs and must run as root (CI does); it is not skipped"
    );
    let home = Home::new();
    let _tmpfs = Tmpfs::mount(home.path());
    let outside = tempfile::tempdir().unwrap();
    let config = outside.path().join("serve.toml");
    std::fs::write(
        &config,
        r#"
[server]
bind = "127.0.0.1:0"
read_token_env = "TEST_FAULT_READ"

[[source]]
name = "edr"
kind = "generic"
auth = "hmac"
secret_env = "TEST_FAULT_SECRET"
"#,
    )
    .unwrap();
    let log = outside.path().join("serve.log");
    let srv = start(&home, &config, &log);

    let stop = Arc::new(AtomicBool::new(false));
    let filler = {
        let (dir, stop) = (home.path().to_owned(), stop.clone());
        std::thread::spawn(move || fill_and_empty(&dir, &stop))
    };
    let started = Instant::now();
    let until = started + Duration::from_secs(150);
    let jobs = Arc::new(Mutex::new(BTreeSet::new()));
    let refused = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let senders: Vec<_> = (0..SENDERS)
        .map(|k| {
            let (addr, jobs, refused) = (srv.addr.clone(), jobs.clone(), refused.clone());
            std::thread::spawn(move || {
                for i in (k..ALERTS).step_by(SENDERS) {
                    let (job, n) = deliver(&addr, i, until);
                    jobs.lock().unwrap().insert(job);
                    refused.fetch_add(n, Ordering::SeqCst);
                }
            })
        })
        .collect();
    let mut sent_ok = true;
    for s in senders {
        sent_ok &= s.join().is_ok();
    }
    stop.store(true, Ordering::SeqCst);
    let cycles = filler.join().unwrap();
    let sending = started.elapsed();
    let mut srv = srv;
    assert!(
        srv.child.try_wait().unwrap().is_none(),
        "the server stopped while the disk filled:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    assert!(sent_ok, "a sender failed (see above)");
    assert!(cycles >= 3, "the disk filled only {cycles} times");
    // The full disk was felt: deliveries refused, and jobs put back.
    let refused = refused.load(Ordering::SeqCst);
    let logged = std::fs::read_to_string(&log).unwrap_or_default();
    let put_back = logged.matches("it runs again").count();
    assert!(
        refused > 0,
        "no delivery was refused: the disk never filled in time"
    );
    let jobs = jobs.lock().unwrap().clone();
    assert_eq!(jobs.len(), ALERTS, "each alert is one job");

    // kill -9, then start again on the same home: every acknowledged job ends done.
    srv.child.kill().unwrap();
    srv.child.wait().unwrap();
    drop(srv);
    let srv = start(&home, &config, &log);
    let deadline = Instant::now() + Duration::from_secs(120);
    let counts = loop {
        let counts = job_counts(&srv.addr);
        if counts.get("done").copied().unwrap_or(0) + counts.get("failed").copied().unwrap_or(0)
            >= jobs.len() as u64
            || Instant::now() > deadline
        {
            break counts;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(
        counts.get("done").copied().unwrap_or(0),
        jobs.len() as u64,
        "jobs by state after the restart: {counts:?}\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    // SIGTERM: the server lets go of the ledger.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(srv.child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let mut srv = srv;
    srv.child.wait().unwrap();
    drop(srv);

    // Each acknowledged job recorded its alert exactly once, and nothing else did.
    let entries = std::fs::read_to_string(home.path().join("ledger/entries.jsonl")).unwrap();
    let mut received: BTreeMap<String, usize> = BTreeMap::new();
    for line in entries.lines() {
        let e: serde_json::Value = serde_json::from_str(line).unwrap();
        if e["action"] == "alert_received" {
            let job = e["detail"]["job"].as_str().unwrap().to_owned();
            *received.entry(job).or_default() += 1;
        }
    }
    let twice: Vec<_> = received.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "recorded more than once: {twice:?}");
    let recorded: BTreeSet<String> = received.into_keys().collect();
    assert_eq!(
        recorded, jobs,
        "every acknowledged alert recorded, no other"
    );
    let out = home.run(&["ledger", "verify"]);
    assert!(
        out.status.success(),
        "ledger verify: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!(
        "{ALERTS} alerts in {sending:?} while the disk filled {cycles} times ({refused} deliveries \
         refused with 503, {put_back} jobs put back); all done once after a restart"
    );
}
