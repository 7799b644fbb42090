//! The custody ledger through the binary: what commands record, export
//! bundles, tampering, one writer, and crashes at random moments.

use std::io::{BufRead, BufReader};
use std::process::{Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use custody::ledger::entry::Entry;
use custody::ledger::verify::verify_ledger;
use custody::ledger::{LedgerPaths, read_entries};

use crate::common::{Home, mixed_bytes, stderr};

fn entries(home: &Home) -> Vec<Entry> {
    read_entries(&LedgerPaths::in_home(home.path()).entries())
        .unwrap()
        .iter()
        .map(|l| Entry::parse(l).unwrap())
        .collect()
}

fn actions(home: &Home) -> Vec<String> {
    entries(home)
        .iter()
        .map(|e| {
            serde_json::to_value(e.action)
                .unwrap()
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect()
}

#[test]
fn every_evidence_command_is_recorded_and_the_ledger_verifies() {
    let home = Home::new();
    let src = home.path().join("disk.img");
    std::fs::write(&src, mixed_bytes(200_000, 4)).unwrap();
    let r = home.json(&[
        "--reason",
        "INC-42",
        "acquire",
        "file",
        src.to_str().unwrap(),
        "--case",
        "L",
    ]);
    let id = r["artefacts"][0]["id"].as_str().unwrap().to_owned();
    let out = home.run(&["acquire", "file", "/nonexistent/x.img", "--case", "L"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(home.run(&["verify", "L"]).status.success());
    assert!(home.run(&["show", "L"]).status.success());
    let dest = home.path().join("out.img");
    assert!(
        home.run(&["export", "L", &id, "-o", dest.to_str().unwrap()])
            .status
            .success()
    );

    assert_eq!(
        actions(&home),
        [
            "ledger_initialised",
            "acquired",
            "failed",
            "verified",
            "accessed",
            "exported"
        ]
    );
    let e = entries(&home);
    // Per-case links: each entry of case L points at the one before it.
    assert_eq!(e[1].prev, None);
    assert_eq!(e[2].prev, Some(1));
    assert_eq!(e[5].prev, Some(4));
    let ev = e[1].evidence.as_ref().unwrap();
    assert_eq!(ev.artefact.as_str(), id);
    assert_eq!(ev.raw_sha256, r["artefacts"][0]["raw"]["sha256"]);
    assert!(
        serde_json::to_string(&e[1].reason)
            .unwrap()
            .contains("INC-42")
    );
    assert!(
        e[2].detail.as_ref().unwrap()["error"]
            .as_str()
            .unwrap()
            .contains("/nonexistent/x.img")
    );

    let out = home.run(&["ledger", "verify"]);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        stderr(&out)
    );
    let cp = home.run(&["ledger", "checkpoint"]);
    let text = String::from_utf8_lossy(&cp.stdout);
    assert!(
        text.starts_with("custody/")
            && text.contains("\n6\n")
            && text.contains("\n\u{2014} custody/"),
        "{text}"
    );
    let proof = home.run(&["ledger", "prove", "1"]);
    assert!(
        String::from_utf8_lossy(&proof.stdout).starts_with("c2sp.org/tlog-proof@v1\nindex 1\n")
    );
    let cons = home.json(&["ledger", "consistency", "1"]);
    assert_eq!(cons["new_size"], 6);
}

#[test]
fn a_case_bundle_verifies_offline_and_catches_tampering() {
    let home = Home::new();
    let src = home.path().join("f.bin");
    std::fs::write(&src, b"evidence").unwrap();
    for _ in 0..3 {
        home.json(&["acquire", "file", src.to_str().unwrap(), "--case", "B"]);
        home.json(&["acquire", "file", src.to_str().unwrap(), "--case", "other"]);
    }
    let dir = home.path().join("bundle");
    let out = home.run(&[
        "ledger",
        "export",
        "--case",
        "B",
        "-o",
        dir.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    // The case's three entries and the export's own record.
    assert_eq!(std::fs::read_dir(dir.join("entries")).unwrap().count(), 4);
    assert_eq!(std::fs::read_dir(dir.join("manifests")).unwrap().count(), 3);
    let ok = home.run(&["ledger", "verify-bundle", dir.to_str().unwrap()]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stdout)
    );

    // Dropping the middle entry of the case breaks the next one's prev link.
    let idx = bundle_indexes(&dir);
    let copy = home.path().join("bundle-missing");
    copy_dir(&dir, &copy);
    std::fs::remove_file(copy.join(format!("entries/{}.json", idx[1]))).unwrap();
    let out = home.run(&["ledger", "verify-bundle", copy.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("an entry is missing"));

    // One changed byte in an entry: its inclusion proof fails.
    let copy = home.path().join("bundle-edited");
    copy_dir(&dir, &copy);
    let p = copy.join(format!("entries/{}.json", idx[0]));
    let text = std::fs::read_to_string(&p)
        .unwrap()
        .replacen("acquired", "accessed", 1);
    std::fs::write(&p, text).unwrap();
    let out = home.run(&["ledger", "verify-bundle", copy.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("not in the signed log"));

    // A different trusted key refuses the whole bundle.
    let other = Home::new();
    other.json(&["ledger", "init"]);
    let vkey = std::fs::read_to_string(other.path().join("ledger/ledger.json")).unwrap();
    let vkey: serde_json::Value = serde_json::from_str(&vkey).unwrap();
    let out = home.run(&[
        "ledger",
        "verify-bundle",
        dir.to_str().unwrap(),
        "--key",
        vkey["initial_verifier_key"].as_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
}

/// The entry indexes of a bundle, in order.
fn bundle_indexes(dir: &std::path::Path) -> Vec<u64> {
    let mut idx: Vec<u64> = std::fs::read_dir(dir.join("entries"))
        .unwrap()
        .map(|e| {
            e.unwrap()
                .file_name()
                .to_string_lossy()
                .trim_end_matches(".json")
                .parse()
                .unwrap()
        })
        .collect();
    idx.sort();
    idx
}

/// L2: a bundle from which the case's first entries, or its last ones, were
/// removed, or into which another case's entry was put, fails; so does one
/// whose entries were reordered.
#[test]
fn l2_a_bundle_missing_its_first_or_last_entries_fails() {
    let home = Home::new();
    for what in ["copied", "accessed", "verified"] {
        home.json(&["ledger", "record", "--case", "c1", "--action", what]);
        home.json(&["ledger", "record", "--case", "c2", "--action", what]);
    }
    let dir = home.path().join("bundle");
    let out = home.run(&[
        "ledger",
        "export",
        "--case",
        "c1",
        "-o",
        dir.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let idx = bundle_indexes(&dir);
    let refused = |name: &str, edit: &dyn Fn(&std::path::Path), why: &str| {
        let copy = home.path().join(name);
        copy_dir(&dir, &copy);
        edit(&copy);
        let out = home.run(&["ledger", "verify-bundle", copy.to_str().unwrap()]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(1), "{name}: {text}");
        assert!(text.contains(why), "{name}: {text}");
    };
    let remove = |i: u64| {
        move |d: &std::path::Path| {
            std::fs::remove_file(d.join(format!("entries/{i}.json"))).unwrap();
            std::fs::remove_file(d.join(format!("proofs/{i}.tlog-proof"))).unwrap();
        }
    };
    refused("first", &remove(idx[0]), "earlier entries are missing");
    let last = *idx.last().unwrap();
    refused(
        "last",
        &remove(last),
        "does not end with the signed record of its export",
    );
    refused(
        "last-two",
        &|d: &std::path::Path| {
            remove(idx[idx.len() - 2])(d);
            remove(last)(d);
        },
        "does not end with the signed record of its export",
    );
    // Another case's entry, with its real proof, put into the bundle.
    let other = home.path().join("bundle-c2");
    let out = home.run(&[
        "ledger",
        "export",
        "--case",
        "c2",
        "-o",
        other.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let foreign = bundle_indexes(&other)[0];
    refused(
        "foreign",
        &|d: &std::path::Path| {
            for (sub, ext) in [("entries", "json"), ("proofs", "tlog-proof")] {
                std::fs::copy(
                    other.join(format!("{sub}/{foreign}.{ext}")),
                    d.join(format!("{sub}/{foreign}.{ext}")),
                )
                .unwrap();
            }
        },
        "not of the bundle's case",
    );
    // Two entries swapped (file names kept): their proofs no longer match.
    refused(
        "swapped",
        &|d: &std::path::Path| {
            let (a, b) = (
                d.join(format!("entries/{}.json", idx[0])),
                d.join(format!("entries/{}.json", idx[1])),
            );
            let (ta, tb) = (std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
            std::fs::write(&a, tb).unwrap();
            std::fs::write(&b, ta).unwrap();
        },
        "not in the signed log",
    );
    // Without a pinned key the report says so.
    let out = home.run(&["ledger", "verify-bundle", dir.to_str().unwrap()]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("WARNING no --key given"));
}

/// L1, in bundles: after a key rotation a bundle verifies from the initial
/// key (the rotation's own checkpoint, signed by the old key, travels with
/// it); a rotation rewritten to name another key is refused.
#[test]
fn l1_a_bundle_after_a_rotation_verifies_from_the_initial_key() {
    let home = Home::new();
    home.json(&["ledger", "record", "--case", "r", "--action", "copied"]);
    home.json(&["ledger", "rotate-key"]);
    home.json(&["ledger", "record", "--case", "r", "--action", "accessed"]);
    let initial = initial_key(&home);
    let dir = home.path().join("bundle");
    let out = home.run(&[
        "ledger",
        "export",
        "--case",
        "r",
        "-o",
        dir.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = home.run(&[
        "ledger",
        "verify-bundle",
        dir.to_str().unwrap(),
        "--key",
        &initial,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = home.run(&["ledger", "verify", "--key", &initial, "--strict"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // The rotation entry rewritten to name a key of someone else's.
    let copy = home.path().join("forged");
    copy_dir(&dir, &copy);
    let rotation = std::fs::read_dir(copy.join("rotations"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "json"))
        .unwrap();
    let other = Home::new();
    other.json(&["ledger", "init"]);
    let theirs: serde_json::Value =
        serde_json::from_slice(&std::fs::read(other.path().join("ledger/ledger.json")).unwrap())
            .unwrap();
    let mut e: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&rotation).unwrap()).unwrap();
    e["detail"]["new_verifier_key"] = theirs["initial_verifier_key"].clone();
    std::fs::write(&rotation, serde_json::to_vec(&e).unwrap()).unwrap();
    let out = home.run(&[
        "ledger",
        "verify-bundle",
        copy.to_str().unwrap(),
        "--key",
        &initial,
    ]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("key rotation at entry"));
}

/// Rollback: `ledger verify --checkpoint` refuses a ledger cut back to an
/// older copy, which verifies on its own.
#[test]
fn a_ledger_restored_from_an_older_copy_fails_against_a_saved_checkpoint() {
    let home = Home::new();
    home.json(&["ledger", "record", "--case", "c", "--action", "copied"]);
    let old = home.path().join("old-ledger");
    copy_dir(&home.path().join("ledger"), &old);
    home.json(&["ledger", "record", "--case", "c", "--action", "accessed"]);
    let saved = home.path().join("seen.checkpoint");
    std::fs::write(&saved, home.run(&["ledger", "checkpoint"]).stdout).unwrap();
    let out = home.run(&["ledger", "verify", "--checkpoint", saved.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    std::fs::remove_dir_all(home.path().join("ledger")).unwrap();
    copy_dir(&old, &home.path().join("ledger"));
    let out = home.run(&["ledger", "verify"]);
    assert!(out.status.success(), "the older copy is self-consistent");
    let out = home.run(&["ledger", "verify", "--checkpoint", saved.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("rolled back"));
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

#[test]
fn a_deleted_manifest_or_object_fails_case_verification() {
    let home = Home::new();
    let src = home.path().join("f.bin");
    std::fs::write(&src, b"evidence").unwrap();
    let r = home.json(&["acquire", "file", src.to_str().unwrap(), "--case", "D"]);
    home.json(&["acquire", "file", src.to_str().unwrap(), "--case", "D"]);
    let id = r["artefacts"][0]["id"].as_str().unwrap();
    std::fs::remove_file(
        home.store_dir()
            .join(format!("cases/D/manifests/{id}.json")),
    )
    .unwrap();
    let out = home.run(&["verify", "D"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!(
            "records artefact {id}, which is missing from the store"
        )),
        "{text}"
    );
    // The whole case gone from the store: still a verification failure, not "no such case".
    std::fs::remove_dir_all(home.store_dir().join("cases/D")).unwrap();
    let out = home.run(&["verify", "D"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
}

#[test]
fn tampering_with_the_ledger_file_fails_ledger_verify() {
    let home = Home::new();
    let src = home.path().join("f.bin");
    std::fs::write(&src, b"evidence").unwrap();
    home.json(&["acquire", "file", src.to_str().unwrap(), "--case", "T"]);
    let path = LedgerPaths::in_home(home.path()).entries();
    let original = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, original.replacen("\"acquired\"", "\"accessed\"", 1)).unwrap();
    let out = home.run(&["ledger", "verify"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("do not hash to its root"));
    // Opening it for writing refuses too: signed history does not match.
    let out = home.run(&["acquire", "file", src.to_str().unwrap(), "--case", "T"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("signed history does not match"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_second_writer_is_refused() {
    let home = Home::new();
    home.json(&["ledger", "init"]);
    let clock = Arc::new(custody::clock::SystemClock);
    let held = custody::ledger::Ledger::open(&LedgerPaths::in_home(home.path()), clock).unwrap();
    let out = home.run(&["ledger", "record", "--case", "w", "--action", "accessed"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("in use by another process"),
        "{}",
        stderr(&out)
    );
    drop(held);
    let out = home.run(&["ledger", "record", "--case", "w", "--action", "accessed"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn a_key_file_others_can_read_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let home = Home::new();
    home.json(&["ledger", "init"]);
    let key = LedgerPaths::in_home(home.path()).key;
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).unwrap();
    let out = home.run(&["ledger", "record", "--case", "k", "--action", "accessed"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("chmod 600"), "{}", stderr(&out));
}

#[test]
fn rotated_keys_chain_and_verify() {
    let home = Home::new();
    home.json(&["ledger", "init"]);
    for _ in 0..2 {
        home.json(&["ledger", "record", "--case", "r", "--action", "accessed"]);
        home.json(&["ledger", "rotate-key"]);
    }
    home.json(&["ledger", "record", "--case", "r", "--action", "accessed"]);
    let out = home.run(&["--json", "ledger", "verify"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["key_rotations"], 2);
    // The bundle carries the current key and verifies with it.
    let dir = home.path().join("b");
    assert!(
        home.run(&[
            "ledger",
            "export",
            "--case",
            "r",
            "-o",
            dir.to_str().unwrap()
        ])
        .status
        .success()
    );
    assert!(
        home.run(&["ledger", "verify-bundle", dir.to_str().unwrap()])
            .status
            .success()
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("key-history.txt"))
            .unwrap()
            .lines()
            .count(),
        3
    );
}

/// Kill -9 at random moments while a child appends; every acknowledged entry survives.
#[test]
fn kill_9_never_loses_an_acknowledged_entry() {
    let home = Home::new();
    home.json(&["ledger", "init"]);
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    eprintln!("kill -9 loop seed {seed}");
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for round in 0..8 {
        let mut child = home
            .cmd()
            .args([
                "ledger", "record", "--case", "crash", "--action", "accessed", "--repeat",
                "1000000",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let acked = Arc::new(Mutex::new(Vec::<u64>::new()));
        let reader = {
            let acked = acked.clone();
            let out = child.stdout.take().unwrap();
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    if let Some(i) = line
                        .strip_prefix("acknowledged ")
                        .and_then(|r| r.split(' ').next())
                    {
                        acked.lock().unwrap().push(i.parse().unwrap());
                    }
                }
            })
        };
        std::thread::sleep(Duration::from_millis(30 + next() % 300));
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        child.wait().unwrap();
        reader.join().unwrap();
        let acked = acked.lock().unwrap().clone();
        // Reopening recovers (cuts a torn line, commits intact unsigned entries) and verifies.
        let paths = LedgerPaths::in_home(home.path());
        let l =
            custody::ledger::Ledger::open(&paths, Arc::new(custody::clock::SystemClock)).unwrap();
        let size = l.size();
        drop(l);
        let report = verify_ledger(&paths, None, false).unwrap();
        assert!(report.ok(), "round {round}: {:?}", report.problems);
        if let Some(&max) = acked.iter().max() {
            assert!(
                size > max,
                "round {round}: acknowledged entry {max} lost (size {size})"
            );
        }
        eprintln!(
            "round {round}: {} acknowledged, ledger size {size}",
            acked.len()
        );
    }
}

/// A verifier we did not build into custody: examples/verify_bundle.py, from
/// the public specifications with Python's hashlib and `cryptography`'s Ed25519.
#[test]
fn an_independent_verifier_accepts_the_bundle_and_catches_an_edit() {
    let python = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    if !python.exists() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{} is missing: scripts/test installs it",
            python.display()
        );
        eprintln!("NOT RUN: {} is missing; run scripts/test", python.display());
        return;
    }
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/verify_bundle.py");
    let home = Home::new();
    let src = home.path().join("f.bin");
    std::fs::write(&src, b"evidence").unwrap();
    for i in 0..3 {
        home.json(&["acquire", "file", src.to_str().unwrap(), "--case", "P"]);
        home.json(&["ledger", "record", "--case", "Q", "--action", "copied"]);
        if i == 1 {
            // The key chain from the initial key is followed too.
            home.json(&["ledger", "rotate-key"]);
        }
    }
    let initial = initial_key(&home);
    let dir = home.path().join("bundle");
    assert!(
        home.run(&[
            "ledger",
            "export",
            "--case",
            "P",
            "-o",
            dir.to_str().unwrap()
        ])
        .status
        .success()
    );
    let out = std::process::Command::new(&python)
        .arg(&script)
        .arg(&dir)
        .arg(&initial)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        stderr(&out)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("4 entries checked, verified"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    let entry = std::fs::read_dir(dir.join("entries"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let text = std::fs::read_to_string(&entry)
        .unwrap()
        .replacen("\"operator\"", "\"0perator\"", 1);
    std::fs::write(&entry, text).unwrap();
    let out = std::process::Command::new(&python)
        .arg(&script)
        .arg(&dir)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("is not included in the signed log"));
}

/// The `custody-verify` binary of the `custody-ledger` crate, beside the
/// test binary in the target directory (`CARGO_BIN_EXE_*` names only this
/// package's binaries). scripts/test builds it first; a missing or stale one
/// fails the test rather than checking old code.
fn custody_verify() -> std::process::Command {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(|d| d.parent()).unwrap();
    let bin = dir.join("custody-verify");
    let built = std::fs::metadata(&bin).and_then(|m| m.modified()).unwrap_or_else(|e| {
        panic!(
            "custody-verify is not built at {} ({e}): run `cargo build -p custody-ledger --bins` first (scripts/test does)",
            bin.display()
        )
    });
    let crate_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("crates/custody-ledger");
    let mut stack = vec![crate_dir.join("src"), crate_dir.join("Cargo.toml")];
    while let Some(p) = stack.pop() {
        let meta = std::fs::metadata(&p).unwrap();
        if meta.is_dir() {
            stack.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        } else {
            assert!(
                meta.modified().unwrap() <= built,
                "{} is newer than {}: run `cargo build -p custody-ledger --bins` again",
                p.display(),
                bin.display()
            );
        }
    }
    std::process::Command::new(bin)
}

/// Runs `custody ledger verify-bundle` and `custody-verify bundle` on the
/// same bundle with the same key, asserts they agree, and returns the exit code.
fn both_verify_bundle(home: &Home, dir: &std::path::Path, key: Option<&str>) -> Option<i32> {
    let mut args = vec![dir.to_str().unwrap()];
    if let Some(k) = key {
        args.extend(["--key", k]);
    }
    let mut custody_args = vec!["ledger", "verify-bundle"];
    custody_args.extend(&args);
    let theirs = home.run(&custody_args);
    let ours = custody_verify().arg("bundle").args(&args).output().unwrap();
    agree(&dir.display().to_string(), &theirs, &ours)
}

/// Asserts that custody and custody-verify gave the same exit code and the
/// same report, line for line, on `what`; returns the exit code.
fn agree(what: &str, theirs: &Output, ours: &Output) -> Option<i32> {
    assert_eq!(
        theirs.status.code(),
        ours.status.code(),
        "custody and custody-verify disagree on {what}:\n{}{}\n---\n{}{}",
        String::from_utf8_lossy(&theirs.stdout),
        stderr(theirs),
        String::from_utf8_lossy(&ours.stdout),
        stderr(ours)
    );
    assert_eq!(
        String::from_utf8_lossy(&theirs.stdout),
        String::from_utf8_lossy(&ours.stdout)
    );
    ours.status.code()
}

fn initial_key(home: &Home) -> String {
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(home.path().join("ledger/ledger.json")).unwrap())
            .unwrap();
    meta["initial_verifier_key"].as_str().unwrap().to_owned()
}

/// Issue 19: `custody-verify bundle` verifies a bundle exported by `custody
/// ledger export`, and refuses exactly the tampering `custody ledger
/// verify-bundle` refuses: both run on every copy, with the same exit code.
#[test]
fn custody_verify_refuses_the_bundle_tampering_verify_bundle_refuses() {
    let home = Home::new();
    let src = home.path().join("f.bin");
    std::fs::write(&src, mixed_bytes(300_000, 19)).unwrap();
    home.json(&["acquire", "file", src.to_str().unwrap(), "--case", "V"]);
    home.json(&["ledger", "record", "--case", "other", "--action", "copied"]);
    home.json(&["ledger", "rotate-key"]);
    home.json(&["acquire", "file", src.to_str().unwrap(), "--case", "V"]);
    home.json(&["ledger", "record", "--case", "V", "--action", "accessed"]);
    let initial = initial_key(&home);
    let dir = home.path().join("bundle");
    let out = home.run(&[
        "ledger",
        "export",
        "--case",
        "V",
        "-o",
        dir.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(both_verify_bundle(&home, &dir, Some(&initial)), Some(0));
    // Without a pinned key both pass and both warn.
    assert_eq!(both_verify_bundle(&home, &dir, None), Some(0));

    let idx = bundle_indexes(&dir);
    let tampered = |name: &str, edit: &dyn Fn(&std::path::Path)| {
        let copy = home.path().join(name);
        copy_dir(&dir, &copy);
        edit(&copy);
        copy
    };
    let remove = |i: u64| {
        move |d: &std::path::Path| {
            std::fs::remove_file(d.join(format!("entries/{i}.json"))).unwrap();
            std::fs::remove_file(d.join(format!("proofs/{i}.tlog-proof"))).unwrap();
        }
    };
    let first = tampered("first", &remove(idx[0]));
    let last = tampered("last", &remove(*idx.last().unwrap()));
    let edited = tampered("edited", &|d: &std::path::Path| {
        let p = d.join(format!("entries/{}.json", idx[0]));
        let text = std::fs::read_to_string(&p)
            .unwrap()
            .replacen("acquired", "accessed", 1);
        std::fs::write(&p, text).unwrap();
    });
    let other = Home::new();
    other.json(&["ledger", "init"]);
    let foreign_key = initial_key(&other);
    let forged = tampered("forged-rotation", &|d: &std::path::Path| {
        let rotation = std::fs::read_dir(d.join("rotations"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|e| e == "json"))
            .unwrap();
        let mut e: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&rotation).unwrap()).unwrap();
        e["detail"]["new_verifier_key"] = serde_json::Value::String(foreign_key.clone());
        std::fs::write(&rotation, serde_json::to_vec(&e).unwrap()).unwrap();
    });
    for (what, copy, key) in [
        ("a removed first entry", &first, initial.as_str()),
        ("a removed last entry", &last, &initial),
        ("an edited entry", &edited, &initial),
        ("a foreign key", &dir, &foreign_key),
        ("a forged rotation", &forged, &initial),
    ] {
        assert_eq!(
            both_verify_bundle(&home, copy, Some(key)),
            Some(1),
            "{what} was not refused"
        );
    }
    // Not a bundle at all: an operational error for both.
    assert_eq!(
        both_verify_bundle(&home, &home.path().join("no-such-bundle"), Some(&initial)),
        Some(2)
    );

    // With the store: each artefact's stored object is checked against the signed entries.
    let store = home.store_dir();
    let with_store = |dir: &std::path::Path| {
        custody_verify()
            .args([
                "bundle",
                dir.to_str().unwrap(),
                "--key",
                &initial,
                "--store",
            ])
            .arg(&store)
            .output()
            .unwrap()
    };
    let out = with_store(&dir);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}{}", stderr(&out));
    assert!(text.contains("artefacts: 2 match, 0 do not"), "{text}");
    let objects: Vec<_> = std::fs::read_dir(store.join("cases/V/artefacts"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "zst"))
        .collect();
    assert_eq!(objects.len(), 2);
    let mut bytes = std::fs::read(&objects[0]).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    std::fs::write(&objects[0], &bytes).unwrap();
    let out = with_store(&dir);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("artefacts: 1 match, 1 do not"), "{text}");
    assert!(text.contains("but the signed entries record"), "{text}");
    std::fs::remove_file(&objects[0]).unwrap();
    let out = with_store(&dir);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("cannot read"));
    // A manifest whose digests differ from the signed entries' is refused before the store is read.
    let manifest = std::fs::read_dir(dir.join("manifests"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .next()
        .unwrap();
    let mut m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&manifest).unwrap()).unwrap();
    m["stored"]["sha256"] = serde_json::Value::String("00".repeat(32));
    std::fs::write(&manifest, serde_json::to_vec(&m).unwrap()).unwrap();
    let out = with_store(&dir);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("differ from those its signed entries record")
    );
}

/// Issue 19: `custody-verify ledger` checks a ledger directory as `custody
/// ledger verify` does: the same exit code on an intact ledger, a tampered
/// entry, a foreign key, and a rollback against a saved checkpoint.
#[test]
fn custody_verify_checks_a_ledger_directory_as_ledger_verify_does() {
    let home = Home::new();
    for case in ["a", "b", "a"] {
        home.json(&["ledger", "record", "--case", case, "--action", "copied"]);
    }
    home.json(&["ledger", "rotate-key"]);
    home.json(&["ledger", "record", "--case", "a", "--action", "accessed"]);
    let initial = initial_key(&home);
    let ledger = home.path().join("ledger");
    let old = home.path().join("old-ledger");
    copy_dir(&ledger, &old);
    home.json(&["ledger", "record", "--case", "b", "--action", "verified"]);
    let saved = home.path().join("seen.checkpoint");
    std::fs::write(&saved, home.run(&["ledger", "checkpoint"]).stdout).unwrap();
    let other = Home::new();
    other.json(&["ledger", "init"]);
    let foreign = initial_key(&other);

    let both = |extra: &[&str]| {
        let mut args = vec!["ledger", "verify"];
        args.extend(extra);
        let theirs = home.run(&args);
        let ours = custody_verify()
            .arg("ledger")
            .arg(&ledger)
            .args(extra)
            .output()
            .unwrap();
        agree(&format!("{extra:?}"), &theirs, &ours)
    };
    let cp = saved.to_str().unwrap();
    assert_eq!(both(&[]), Some(0));
    assert_eq!(
        both(&["--key", &initial, "--strict", "--checkpoint", cp]),
        Some(0)
    );
    assert_eq!(both(&["--key", &foreign]), Some(1));
    // Rolled back to the older copy: self-consistent, refused against the saved checkpoint.
    std::fs::remove_dir_all(&ledger).unwrap();
    copy_dir(&old, &ledger);
    assert_eq!(both(&["--key", &initial]), Some(0));
    assert_eq!(both(&["--key", &initial, "--checkpoint", cp]), Some(1));
    // One entry edited.
    let path = LedgerPaths::in_home(home.path()).entries();
    let original = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, original.replacen("\"copied\"", "\"accessed\"", 1)).unwrap();
    assert_eq!(both(&["--key", &initial]), Some(1));
    assert_eq!(both(&["--key", &initial, "--strict"]), Some(1));
    // No ledger there: an operational error for both.
    std::fs::remove_dir_all(&ledger).unwrap();
    assert_eq!(
        custody_verify()
            .arg("ledger")
            .arg(&ledger)
            .output()
            .unwrap()
            .status
            .code(),
        Some(2)
    );
}
