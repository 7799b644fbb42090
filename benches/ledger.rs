//! Ledger benchmark (not a test): group-commit append rate at batch sizes 1,
//! 64 and 4096; inclusion-proof time at 1,000,000 entries; full `verify` of
//! 1,000,000 entries against SHA-256 of the same bytes alone.
//!
//! cargo bench --bench ledger            (LEDGER_BENCH_ENTRIES=N to change the 1,000,000)
//! Targets on a 2-core machine: >= 20,000 appends/s at large batches,
//! inclusion proof < 1 ms at 1M entries, verify <= 2x SHA-256 of the bytes.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use custody::clock::SystemClock;
use custody::ledger::entry::{Action, Actor, EntryDraft, EvidenceRef, Place, Reason};
use custody::ledger::merkle::{leaf_hash, verify_inclusion};
use custody::ledger::verify::verify_ledger;
use custody::ledger::{Ledger, LedgerPaths};
use sha2::Digest as _;

fn actor() -> Actor {
    Actor {
        name: "bench".into(),
        role: "operator".into(),
        host: "bench-host".into(),
        tool: "custody".into(),
        tool_version: custody::TOOL_VERSION.into(),
    }
}

/// A realistic entry: an acquisition with its evidence reference (about 700 bytes).
fn draft(i: u64) -> EntryDraft {
    EntryDraft {
        case: Some(format!("case-{}", i % 97).parse().unwrap()),
        action: Action::Acquired,
        actor: actor(),
        reason: Reason::Alert {
            source: "guardduty".into(),
            id: format!("finding-{i:012}"),
        },
        evidence: Some(EvidenceRef {
            artefact: format!("a-{i:032x}").parse().unwrap(),
            kind: "disk_image".into(),
            raw_size: 8 << 30,
            raw_sha256: hex::encode(sha2::Sha256::digest(i.to_le_bytes())),
            stored_size: 3 << 30,
            stored_sha256: hex::encode(sha2::Sha256::digest((i + 1).to_le_bytes())),
            location: "s3://evidence-bucket/prefix".into(),
            key: format!("cases/case-{}/artefacts/a-{i:032x}.zst", i % 97),
            version_id: Some("3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY".into()),
            etag: Some("\"9b2cf535f27731c974343645a3985328-64\"".into()),
        }),
        place: Some(Place {
            resource: format!("vol-{i:017x}"),
            region: Some("eu-west-1".into()),
            account: Some("123456789012".into()),
            ..Place::default()
        }),
        detail: None,
    }
}

fn main() {
    let n: u64 = std::env::var("LEDGER_BENCH_ENTRIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    // On the project's disk, not a tmpfs: fdatasync has to cost what it costs.
    let base = std::env::current_dir().unwrap().join("bench-work");
    std::fs::create_dir_all(&base).unwrap();
    let clock = Arc::new(SystemClock);
    println!(
        "== custody ledger benchmark ({} cores)",
        std::thread::available_parallelism().map_or(0, |c| c.get())
    );

    println!(
        "\n-- group commit: appends per second (each batch: write, fdatasync, sign, atomic checkpoint)"
    );
    for (batch, commits) in [(1usize, 200usize), (64, 100), (4096, 20)] {
        let dir = tempfile::tempdir_in(&base).unwrap();
        let paths = LedgerPaths::in_home(dir.path());
        let mut l = Ledger::init(&paths, "custody.bench/ledger", clock.clone(), actor()).unwrap();
        let drafts: Vec<Vec<EntryDraft>> = (0..commits)
            .map(|c| (0..batch).map(|i| draft((c * batch + i) as u64)).collect())
            .collect();
        let t = Instant::now();
        for d in drafts {
            l.append(d).unwrap();
        }
        let secs = t.elapsed().as_secs_f64();
        let total = (batch * commits) as f64;
        println!(
            "batch {batch:>5}: {:>9.0} appends/s  ({commits} commits of {batch}, {:.2} ms per commit)",
            total / secs,
            secs * 1000.0 / commits as f64
        );
    }

    println!("\n-- {n} entries: building the ledger (batches of 4096)");
    let dir = tempfile::tempdir_in(&base).unwrap();
    let paths = LedgerPaths::in_home(dir.path());
    let mut l = Ledger::init(&paths, "custody.bench/ledger", clock.clone(), actor()).unwrap();
    let t = Instant::now();
    let mut i = 1u64;
    while i < n {
        let k = 4096.min(n - i);
        l.append((0..k).map(|j| draft(i + j)).collect()).unwrap();
        i += k;
    }
    let bytes = std::fs::metadata(paths.entries()).unwrap().len();
    println!(
        "built in {:.1} s: {} entries, {:.1} MiB",
        t.elapsed().as_secs_f64(),
        l.size(),
        bytes as f64 / (1 << 20) as f64
    );

    println!("\n-- inclusion proofs at {} entries", l.size());
    let size = l.latest_checkpoint().size;
    let root = l.latest_checkpoint().root;
    let samples = 10_000u64;
    let mut gen_time = Duration::ZERO;
    let mut ver_time = Duration::ZERO;
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    for _ in 0..samples {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let index = x % size;
        let t = Instant::now();
        let p = l.tree().inclusion_proof(index, size).unwrap();
        gen_time += t.elapsed();
        let leaf = l.tree().leaf(index).unwrap();
        let t = Instant::now();
        verify_inclusion(index, size, &leaf, &p, &root).unwrap();
        ver_time += t.elapsed();
    }
    let t = Instant::now();
    let tlog = l.prove(size / 2).unwrap().to_bytes();
    let doc_time = t.elapsed();
    println!(
        "proof generation {:.1} us, verification {:.1} us (mean of {samples}); a whole tlog-proof document {:.1} us ({} bytes)   target < 1 ms",
        gen_time.as_secs_f64() * 1e6 / samples as f64,
        ver_time.as_secs_f64() * 1e6 / samples as f64,
        doc_time.as_secs_f64() * 1e6,
        tlog.len()
    );
    drop(l);

    println!("\n-- full verify of {n} entries against SHA-256 of the same bytes");
    let data = std::fs::read(paths.entries()).unwrap();
    let t = Instant::now();
    let digest = sha2::Sha256::digest(&data);
    let sha_time = t.elapsed();
    std::hint::black_box(digest);
    // The same, reading the file as `sha256sum` does (1 MiB at a time, from the page cache).
    let t = Instant::now();
    let mut h = sha2::Sha256::new();
    std::io::copy(
        &mut std::io::BufReader::with_capacity(
            1 << 20,
            std::fs::File::open(paths.entries()).unwrap(),
        ),
        &mut h,
    )
    .unwrap();
    std::hint::black_box(h.finalize());
    let sha_file_time = t.elapsed();
    let t = Instant::now();
    let report = verify_ledger(&paths, None, false).unwrap();
    let verify_time = t.elapsed();
    assert!(report.ok(), "{:?}", report.problems);
    let leaf_t = Instant::now();
    for line in custody::ledger::verify::split_lines(&data).0 {
        std::hint::black_box(leaf_hash(line));
    }
    let leaf_time = leaf_t.elapsed();
    println!(
        "sha256 of the bytes in memory {:.3} s ({:.0} MiB/s); sha256 reading the file {:.3} s; leaf hashes alone {:.3} s",
        sha_time.as_secs_f64(),
        data.len() as f64 / (1 << 20) as f64 / sha_time.as_secs_f64(),
        sha_file_time.as_secs_f64(),
        leaf_time.as_secs_f64(),
    );
    println!(
        "custody ledger verify {:.3} s ({} entries, {} checkpoints, reading the file): {:.2}x sha256 in memory, {:.2}x sha256 reading the file   target <= 2x",
        verify_time.as_secs_f64(),
        report.entries,
        report.checkpoints,
        verify_time.as_secs_f64() / sha_time.as_secs_f64(),
        verify_time.as_secs_f64() / sha_file_time.as_secs_f64()
    );
}
