//! Every conformance case in tests/fixtures/merkle, including every case that must fail.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use custody::ledger::merkle::{self, Hash};
use serde_json::Value;

fn fixtures(kind: &str) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/merkle")
        .join(kind);
    let mut out = Vec::new();
    let mut stack = vec![root];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else if e.path().extension().is_some_and(|x| x == "json") {
                out.push(e.path());
            }
        }
    }
    out.sort();
    assert!(!out.is_empty(), "no {kind} vectors");
    out
}

/// A hash field; `None` when it is not a 32-byte hash (such cases must fail).
fn hash(v: &Value) -> Option<Hash> {
    let s = v.as_str()?;
    let b = base64::engine::general_purpose::STANDARD.decode(s).ok()?;
    Some(Hash(b.try_into().ok()?))
}

/// A root field. Roots are only ever compared, so a root that is not a
/// 32-byte hash stands in as a digest of its bytes: equal strings stay equal,
/// and no computed root can match it.
fn root(v: &Value) -> Option<Hash> {
    hash(v).or_else(|| {
        use sha2::Digest as _;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(v.as_str()?)
            .ok()?;
        Some(Hash(
            sha2::Sha256::new_with_prefix(b"not-a-hash:")
                .chain_update(bytes)
                .finalize()
                .into(),
        ))
    })
}

fn proof(v: &Value) -> Option<Vec<Hash>> {
    match v {
        Value::Null => Some(Vec::new()),
        Value::Array(a) => a.iter().map(hash).collect(),
        _ => None,
    }
}

fn n(v: &Value, k: &str) -> u64 {
    v[k].as_u64().unwrap_or_else(|| panic!("{k} missing"))
}

fn run(kind: &str, check: impl Fn(&Value) -> Option<Result<(), merkle::ProofError>>) -> usize {
    let mut count = 0;
    for path in fixtures(kind) {
        let v: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let want_err = v["wantErr"].as_bool().unwrap();
        // `None`: a malformed hash, which no verifier may accept.
        let ok = matches!(check(&v), Some(Ok(())));
        assert_eq!(ok, !want_err, "{}: {}", path.display(), v["desc"]);
        count += 1;
    }
    count
}

#[test]
fn inclusion_vectors() {
    let n = run("inclusion", |v| {
        Some(merkle::verify_inclusion(
            n(v, "leafIdx"),
            n(v, "treeSize"),
            &hash(&v["leafHash"])?,
            &proof(&v["proof"])?,
            &root(&v["root"])?,
        ))
    });
    assert!(n >= 80, "{n}");
}

#[test]
fn consistency_vectors() {
    let n = run("consistency", |v| {
        Some(merkle::verify_consistency(
            n(v, "size1"),
            n(v, "size2"),
            &proof(&v["proof"])?,
            &root(&v["root1"])?,
            &root(&v["root2"])?,
        ))
    });
    assert!(n >= 90, "{n}");
}

#[test]
fn subtree_inclusion_vectors() {
    let n = run("subtreeinclusion", |v| {
        Some(merkle::verify_subtree_inclusion(
            n(v, "leafIdx"),
            n(v, "start"),
            n(v, "end"),
            &hash(&v["leafHash"])?,
            &proof(&v["proof"])?,
            &root(&v["root"])?,
        ))
    });
    assert!(n >= 190, "{n}");
}

#[test]
fn subtree_consistency_vectors() {
    let n = run("subtreeconsistency", |v| {
        Some(merkle::verify_subtree_consistency(
            n(v, "start"),
            n(v, "end"),
            n(v, "size"),
            &proof(&v["proof"])?,
            &root(&v["root1"])?,
            &root(&v["root2"])?,
        ))
    });
    assert!(n >= 110, "{n}");
}
