#![no_main]
//! Any bytes as an exported case bundle: `verify_bundle` (what `custody
//! ledger verify-bundle` and `custody-verify bundle` run) must answer with
//! a report or an error, never panic. The input is split on `\0` into the
//! bundle's files: `case`, `checkpoint`, `verifier.key`, then pairs of an
//! entry and its tlog-proof, then at most one key rotation and its proof.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use custody_ledger::verify::{bundle, verify_bundle};
use libfuzzer_sys::fuzz_target;

/// A directory of its own per input, under the system's temporary directory.
fn scratch() -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    std::env::temp_dir().join(format!(
        "custody-fuzz-bundle-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ))
}

fuzz_target!(|data: &[u8]| {
    let dir = scratch();
    let mut parts = data.split(|&b| b == 0);
    let write = |rel: &str, bytes: &[u8]| {
        let p = dir.join(rel);
        if let Some(parent) = p.parent() {
            let _ = std::fs::create_dir_all(parent);
        }
        let _ = std::fs::write(p, bytes);
    };
    for name in [bundle::CASE, bundle::CHECKPOINT, bundle::VERIFIER_KEY] {
        write(name, parts.next().unwrap_or_default());
    }
    let rest: Vec<&[u8]> = parts.collect();
    let (pairs, rotation) = rest.split_at(rest.len() - rest.len() % 2);
    for (i, pair) in pairs.chunks(2).enumerate() {
        if let [entry, proof] = pair {
            write(&format!("{}/{i}.json", bundle::ENTRIES), entry);
            write(&format!("{}/{i}.tlog-proof", bundle::PROOFS), proof);
        }
    }
    if let [r] = rotation {
        write(&format!("{}/0.json", bundle::ROTATIONS), r);
        write(&format!("{}/0.tlog-proof", bundle::ROTATIONS), r);
    }
    let _ = verify_bundle(&dir, None);
    let _ = verify_bundle(&dir, Some(std::str::from_utf8(data).unwrap_or("x+1+AA")));
    let _ = std::fs::remove_dir_all(&dir);
});
