//! Tests of verification that need the writer: ledgers built with
//! [`Ledger::init`] and appends, then damaged, rotated, crashed or rolled
//! back (moved here from the verifier's module when it became the
//! `custody-ledger` crate, which has no writer).

use std::sync::Arc;

use proptest::prelude::*;

use super::entry::{Action, Actor, Entry, EntryDraft, Reason};
use super::merkle::{self, leaf_hash};
use super::note;
use super::verify::{split_lines, verify_ledger, verify_ledger_since};
use super::{Ledger, LedgerPaths, Meta};
use crate::clock::FixedClock;

fn actor() -> Actor {
    Actor {
        name: "t".into(),
        role: "operator".into(),
        host: "h".into(),
        tool: "custody".into(),
        tool_version: "0".into(),
    }
}

fn draft(case: u8) -> EntryDraft {
    EntryDraft {
        case: Some(format!("c{case}").parse().expect("id")),
        action: Action::Accessed,
        actor: actor(),
        reason: Reason::Manual {
            operator: "t".into(),
            note: None,
        },
        evidence: None,
        place: None,
        detail: None,
    }
}

/// A ledger with the given batches (each a list of case numbers).
fn build(batches: &[Vec<u8>]) -> (tempfile::TempDir, LedgerPaths) {
    let dir = tempfile::tempdir().expect("tmp");
    let paths = LedgerPaths::in_home(dir.path());
    let clock = Arc::new(FixedClock::new(
        time::macros::datetime!(2026-11-28 04:00 UTC),
    ));
    let mut l = Ledger::init(&paths, "custody.test/log", clock.clone(), actor()).expect("init");
    for b in batches {
        clock.advance(time::Duration::seconds(1));
        l.append(b.iter().map(|&c| draft(c)).collect())
            .expect("append");
    }
    (dir, paths)
}

#[derive(Debug, Clone)]
enum Damage {
    FlipEntries {
        at: usize,
        bit: u8,
    },
    FlipCheckpoint {
        at: usize,
        bit: u8,
    },
    DeleteLine(usize),
    DuplicateLine(usize),
    SwapLines(usize, usize),
    Truncate(usize),
    /// A canonical entry appended (without the key) at a line position.
    InjectLine(usize),
    /// A `key_rotated` entry naming the attacker's key, more entries,
    /// and checkpoints signed by that key.
    ForgeRotation(u8),
    /// The log cut back to an earlier checkpoint, with the later
    /// checkpoints removed: self-consistent, only a trusted checkpoint shows it.
    Rollback(usize),
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        (any::<usize>(), 0u8..8).prop_map(|(at, bit)| Damage::FlipEntries { at, bit }),
        (any::<usize>(), 0u8..8).prop_map(|(at, bit)| Damage::FlipCheckpoint { at, bit }),
        any::<usize>().prop_map(Damage::DeleteLine),
        any::<usize>().prop_map(Damage::DuplicateLine),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Damage::SwapLines(a, b)),
        any::<usize>().prop_map(Damage::Truncate),
        any::<usize>().prop_map(Damage::InjectLine),
        (1u8..4).prop_map(Damage::ForgeRotation),
        any::<usize>().prop_map(Damage::Rollback),
    ]
}

/// A canonical entry as the ledger writes it, built without the key.
fn forged_line(
    action: Action,
    case: Option<&str>,
    prev: Option<u64>,
    detail: Option<serde_json::Value>,
) -> Vec<u8> {
    crate::ledger::entry::Entry {
        v: crate::ledger::entry::ENTRY_SCHEMA,
        time: "2026-11-28T05:00:00Z".into(),
        case: case.map(|c| c.parse().expect("id")),
        prev,
        action,
        actor: actor(),
        reason: Reason::Manual {
            operator: "t".into(),
            note: None,
        },
        evidence: None,
        place: None,
        detail,
        nonce: crate::ledger::entry::random_nonce(),
    }
    .to_canonical()
    .expect("canonical")
}

/// Appends a forged rotation and `extra` entries, and signs checkpoints
/// over them with the forger's own key, as finding L1 does.
fn forge_rotation(paths: &LedgerPaths, extra: u8) {
    let meta: Meta =
        serde_json::from_slice(&std::fs::read(paths.meta()).expect("meta")).expect("meta");
    let (skey, vkey) = signed_note::generate_key(&mut rand_core::OsRng, &meta.origin);
    let signer = signed_note::StandardSigner::new(&skey).expect("signer");
    let mut data = std::fs::read(paths.entries()).expect("read");
    let n = split_lines(&data).0.len() as u64;
    let detail = serde_json::json!({ "old_verifier_key": meta.initial_verifier_key, "new_verifier_key": vkey });
    let mut lines = vec![forged_line(Action::KeyRotated, None, None, Some(detail))];
    for _ in 0..extra {
        lines.push(forged_line(Action::Accessed, Some("forged"), None, None));
    }
    for l in &lines {
        data.extend_from_slice(l);
        data.push(b'\n');
    }
    std::fs::write(paths.entries(), &data).expect("write");
    let mut tree = merkle::Tree::new();
    for l in split_lines(&data).0 {
        tree.push_leaf_hash(leaf_hash(l)).expect("leaf");
    }
    for size in [n + 1, tree.size()] {
        let note =
            note::sign_checkpoint(&signer, &meta.origin, size, &tree.root(size).expect("root"))
                .expect("sign");
        std::fs::write(
            paths
                .checkpoints()
                .join(crate::ledger::checkpoint_name(size)),
            &note,
        )
        .expect("write");
        std::fs::write(paths.checkpoint(), &note).expect("write");
    }
}

fn apply(paths: &LedgerPaths, d: &Damage) {
    let entries = paths.entries();
    let data = std::fs::read(&entries).expect("read");
    let mut lines: Vec<Vec<u8>> = data.split(|&b| b == b'\n').map(<[u8]>::to_vec).collect();
    lines.pop();
    let n = lines.len();
    let write_lines = |lines: &[Vec<u8>]| {
        let mut out = Vec::new();
        for l in lines {
            out.extend_from_slice(l);
            out.push(b'\n');
        }
        std::fs::write(&entries, out).expect("write");
    };
    match *d {
        Damage::FlipEntries { at, bit } => {
            let mut data = data;
            let i = at % data.len();
            data[i] ^= 1 << bit;
            std::fs::write(&entries, data).expect("write");
        }
        Damage::FlipCheckpoint { at, bit } => {
            let mut names: Vec<_> = std::fs::read_dir(paths.checkpoints())
                .expect("dir")
                .map(|e| e.expect("e").path())
                .collect();
            names.push(paths.checkpoint());
            names.sort();
            let p = &names[at % names.len()];
            let mut b = std::fs::read(p).expect("read");
            let i = (at / names.len()) % b.len();
            b[i] ^= 1 << bit;
            std::fs::write(p, b).expect("write");
        }
        Damage::DeleteLine(i) => {
            lines.remove(i % n);
            write_lines(&lines);
        }
        Damage::DuplicateLine(i) => {
            let l = lines[i % n].clone();
            lines.insert(i % n, l);
            write_lines(&lines);
        }
        Damage::SwapLines(a, b) => {
            let (a, b) = (a % n, b % n);
            let b = if a == b { (b + 1) % n } else { b };
            lines.swap(a, b);
            write_lines(&lines);
        }
        Damage::Truncate(at) => {
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(&entries)
                .expect("open");
            f.set_len((at % data.len()) as u64).expect("truncate");
        }
        Damage::InjectLine(at) => {
            let l = forged_line(Action::Verified, Some("c0"), None, None);
            lines.insert(at % (n + 1), l);
            write_lines(&lines);
        }
        Damage::ForgeRotation(extra) => forge_rotation(paths, extra),
        Damage::Rollback(at) => {
            let mut sizes: Vec<u64> = std::fs::read_dir(paths.checkpoints())
                .expect("dir")
                .filter_map(|e| e.expect("e").file_name().to_str()?.parse().ok())
                .collect();
            sizes.sort_unstable();
            sizes.pop();
            let keep = sizes[at % sizes.len()];
            for e in std::fs::read_dir(paths.checkpoints()).expect("dir") {
                let e = e.expect("e");
                let size: u64 = e
                    .file_name()
                    .to_str()
                    .and_then(|n| n.parse().ok())
                    .expect("size");
                if size > keep {
                    std::fs::remove_file(e.path()).expect("rm");
                }
            }
            let cp = paths
                .checkpoints()
                .join(crate::ledger::checkpoint_name(keep));
            std::fs::copy(cp, paths.checkpoint()).expect("copy");
            lines.truncate(keep as usize);
            write_lines(&lines);
        }
    }
}

fn initial_key(paths: &LedgerPaths) -> String {
    let meta: Meta =
        serde_json::from_slice(&std::fs::read(paths.meta()).expect("meta")).expect("meta");
    meta.initial_verifier_key
}

/// L1: a rotation to a key of the forger's own, with checkpoints signed
/// by it, is refused by a verifier pinned to the initial key, and the
/// ledger refuses to open (and sign) on top of it.
#[test]
fn l1_forged_rotation_is_refused() {
    let (_dir, paths) = build(&[vec![0], vec![1, 2]]);
    let initial = initial_key(&paths);
    forge_rotation(&paths, 2);
    for strict in [false, true] {
        let r = verify_ledger(&paths, Some(&initial), strict).expect("verify");
        assert!(!r.ok(), "the forged rotation verified (strict {strict})");
    }
    let clock = Arc::new(FixedClock::new(
        time::macros::datetime!(2026-11-28 06:00 UTC),
    ));
    let err = Ledger::open(&paths, clock).expect_err("opened over a forged rotation");
    assert!(
        err.to_string().contains("not covered by a checkpoint"),
        "{err}"
    );
}

/// A real rotation verifies against the initial key, and the new key signs after it.
#[test]
fn a_rotation_covered_by_the_old_key_verifies_from_the_initial_key() {
    let (_dir, paths) = build(&[vec![0]]);
    let initial = initial_key(&paths);
    let clock = Arc::new(FixedClock::new(
        time::macros::datetime!(2026-11-28 06:00 UTC),
    ));
    let mut l = Ledger::open(&paths, clock.clone()).expect("open");
    let new = l.rotate_key(actor()).expect("rotate");
    l.append(vec![draft(1)]).expect("append");
    drop(l);
    let r = verify_ledger(&paths, Some(&initial), true).expect("verify");
    assert!(r.ok(), "{:?}", r.problems);
    assert_eq!(r.key_rotations, 1);
    let l = Ledger::open(&paths, clock).expect("reopen");
    assert_eq!(l.verifier_key(), new);
}

/// L3: a crash between the rotation's commit and the key files' renames
/// (ledger.key still the old key, the new one at ledger.key.new) is
/// finished on open; custody never signs with the retired key.
#[test]
fn l3_a_crash_inside_rotate_key_is_finished_on_open() {
    let (dir, paths) = build(&[vec![0]]);
    let clock = Arc::new(FixedClock::new(
        time::macros::datetime!(2026-11-28 06:00 UTC),
    ));
    let mut l = Ledger::open(&paths, clock.clone()).expect("open");
    let new = l.rotate_key(actor()).expect("rotate");
    drop(l);
    let keys = dir.path().join("keys");
    let retired: Vec<_> = std::fs::read_dir(keys.join("retired"))
        .expect("retired")
        .map(|e| e.expect("e").path())
        .collect();
    std::fs::rename(keys.join("ledger.key"), keys.join("ledger.key.new")).expect("mv");
    std::fs::rename(&retired[0], keys.join("ledger.key")).expect("mv");
    let mut l = Ledger::open(&paths, clock.clone()).expect("open after the crash");
    assert_eq!(l.verifier_key(), new);
    l.append(vec![draft(2)]).expect("append");
    drop(l);
    let r = verify_ledger(&paths, Some(&initial_key(&paths)), true).expect("verify");
    assert!(r.ok(), "{:?}", r.problems);
    // A key at ledger.key.new that the log never named is kept aside, not deleted.
    let stray = note::create_key(&keys.join("ledger.key.new"), "custody.test/log").expect("key");
    let mut l = Ledger::open(&paths, clock).expect("open");
    l.rotate_key(actor()).expect("rotate");
    let kept = std::fs::read_dir(keys.join("retired"))
        .expect("retired")
        .filter(|e| {
            let p = e.as_ref().expect("e").path();
            note::load_key(&p).is_ok_and(|k| k.vkey == stray)
        })
        .count();
    assert_eq!(kept, 1, "the stray key was not kept in retired/");
}

/// L3: a crash at each step of a rotation (new key written; entry
/// appended but its checkpoint not; old key retired but the new one not
/// yet installed) opens, signs with the key the log says is in force, and verifies.
#[test]
fn l3_rotate_key_survives_a_crash_at_every_step() {
    let clock = Arc::new(FixedClock::new(
        time::macros::datetime!(2026-11-28 06:00 UTC),
    ));
    for step in ["key written", "entry unsigned", "old key retired"] {
        let (dir, paths) = build(&[vec![0]]);
        let keys = dir.path().join("keys");
        let before = std::fs::read(paths.checkpoint()).expect("checkpoint");
        let size = crate::ledger::claimed_size(&before).expect("size");
        let old_key = std::fs::read(keys.join("ledger.key")).expect("key");
        let mut l = Ledger::open(&paths, clock.clone()).expect("open");
        let new = l.rotate_key(actor()).expect("rotate");
        drop(l);
        let new_key = std::fs::read(keys.join("ledger.key")).expect("key");
        std::fs::remove_dir_all(keys.join("retired")).expect("rm");
        let put = |name: &str, bytes: &[u8]| {
            let p = keys.join(name);
            let _ = std::fs::remove_file(&p);
            std::fs::write(&p, bytes).expect("write");
            std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o600))
                .expect("chmod");
        };
        let expected = match step {
            "key written" => {
                // The entry never reached the log: the old key stays in force.
                let data = std::fs::read(paths.entries()).expect("entries");
                let lines = split_lines(&data).0;
                let keep: usize = lines.iter().take(size as usize).map(|l| l.len() + 1).sum();
                std::fs::write(paths.entries(), &data[..keep]).expect("cut");
                std::fs::remove_file(
                    paths
                        .checkpoints()
                        .join(crate::ledger::checkpoint_name(size + 1)),
                )
                .expect("rm");
                std::fs::write(paths.checkpoint(), &before).expect("restore");
                put("ledger.key", &old_key);
                put("ledger.key.new", &new_key);
                initial_key(&paths)
            }
            "entry unsigned" => {
                std::fs::remove_file(
                    paths
                        .checkpoints()
                        .join(crate::ledger::checkpoint_name(size + 1)),
                )
                .expect("rm");
                std::fs::write(paths.checkpoint(), &before).expect("restore");
                put("ledger.key", &old_key);
                put("ledger.key.new", &new_key);
                new.clone()
            }
            _ => {
                std::fs::remove_file(keys.join("ledger.key")).expect("rm");
                put("ledger.key.new", &new_key);
                new.clone()
            }
        };
        let mut l = Ledger::open(&paths, clock.clone()).unwrap_or_else(|e| panic!("{step}: {e}"));
        assert_eq!(l.verifier_key(), expected, "{step}");
        l.append(vec![draft(3)])
            .unwrap_or_else(|e| panic!("{step}: {e}"));
        drop(l);
        let r = verify_ledger(&paths, Some(&initial_key(&paths)), true).expect("verify");
        assert!(r.ok(), "{step}: {:?}", r.problems);
    }
}

/// L4: a line appended by someone without the key is never signed on
/// the next open: it is set aside, and a signed entry records its digest.
#[test]
fn l4_a_line_appended_without_the_key_is_set_aside() {
    let (_dir, paths) = build(&[vec![0]]);
    let forged = forged_line(Action::Verified, Some("c0"), Some(1), None);
    let mut data = std::fs::read(paths.entries()).expect("read");
    data.extend_from_slice(&forged);
    data.push(b'\n');
    std::fs::write(paths.entries(), &data).expect("write");
    let clock = Arc::new(FixedClock::new(
        time::macros::datetime!(2026-11-28 06:00 UTC),
    ));
    let l = Ledger::open(&paths, clock).expect("open");
    drop(l);
    let lines = crate::ledger::read_entries(&paths.entries()).expect("entries");
    assert!(!lines.contains(&forged), "the forged line was signed in");
    let last = Entry::parse(lines.last().expect("last")).expect("entry");
    assert_eq!(last.action, Action::TailSetAside);
    let file = last
        .detail
        .as_ref()
        .and_then(|d| d["file"].as_str())
        .expect("file");
    let mut set_aside = forged.clone();
    set_aside.push(b'\n');
    assert_eq!(
        std::fs::read(paths.dir.join(file)).expect("set aside"),
        set_aside
    );
    let r = verify_ledger(&paths, Some(&initial_key(&paths)), true).expect("verify");
    assert!(r.ok(), "{:?}", r.problems);
}

/// Crash recovery still commits what this ledger wrote: a batch whose
/// checkpoint never reached the disk is vouched for by its pending record.
#[test]
fn l4_a_batch_written_before_a_crash_is_still_committed() {
    let (_dir, paths) = build(&[vec![0]]);
    let before = std::fs::read(paths.checkpoint()).expect("checkpoint");
    let size = crate::ledger::claimed_size(&before).expect("size");
    let clock = Arc::new(FixedClock::new(
        time::macros::datetime!(2026-11-28 06:00 UTC),
    ));
    let mut l = Ledger::open(&paths, clock.clone()).expect("open");
    l.append(vec![draft(1), draft(2)]).expect("append");
    drop(l);
    // The crash: the batch's checkpoint never written.
    std::fs::remove_file(
        paths
            .checkpoints()
            .join(crate::ledger::checkpoint_name(size + 2)),
    )
    .expect("rm");
    std::fs::write(paths.checkpoint(), &before).expect("restore");
    let l = Ledger::open(&paths, clock).expect("open");
    assert_eq!(l.size(), size + 2, "the batch was not recovered");
    drop(l);
    let r = verify_ledger(&paths, None, true).expect("verify");
    assert!(r.ok(), "{:?}", r.problems);
}

/// Q2: after a failed commit the ledger reopens in place; the failed
/// batch (answered with an error) is not committed behind its callers' backs.
#[test]
fn q2_a_poisoned_ledger_reopens_and_drops_the_failed_batch() {
    let (_dir, paths) = build(&[vec![0]]);
    let clock = Arc::new(FixedClock::new(
        time::macros::datetime!(2026-11-28 06:00 UTC),
    ));
    let mut l = Ledger::open(&paths, clock).expect("open");
    let size = l.size();
    // The checkpoint cannot be written: its name is taken by a directory.
    let blocker = paths
        .checkpoints()
        .join(crate::ledger::checkpoint_name(size + 1));
    std::fs::create_dir(&blocker).expect("mkdir");
    let err = l
        .append(vec![draft(1)])
        .expect_err("the commit should fail");
    assert!(err.is_commit_failure(), "{err}");
    assert!(l.last_failure().is_some());
    std::fs::remove_dir(&blocker).expect("rmdir");
    l.ready().expect("ready once the disk is writable");
    assert_eq!(l.size(), size, "the failed batch was committed");
    let r = l.append(vec![draft(2)]).expect("append after the failure");
    assert_eq!(r.indexes, vec![size]);
    drop(l);
    let r = verify_ledger(&paths, None, true).expect("verify");
    assert!(r.ok(), "{:?}", r.problems);
}

/// Rollback and fork: a ledger cut back to an older checkpoint verifies
/// on its own, but not against a checkpoint the verifier trusted earlier.
#[test]
fn a_rolled_back_or_forked_ledger_fails_against_a_trusted_checkpoint() {
    let (_dir, paths) = build(&[vec![0], vec![1], vec![2]]);
    let trusted = std::fs::read(paths.checkpoint()).expect("checkpoint");
    let ok = verify_ledger_since(&paths, None, false, Some(&trusted)).expect("verify");
    assert!(ok.ok(), "{:?}", ok.problems);
    apply(&paths, &Damage::Rollback(1));
    let alone = verify_ledger(&paths, None, false).expect("verify");
    assert!(
        alone.ok(),
        "the rollback itself is self-consistent: {:?}",
        alone.problems
    );
    let r = verify_ledger_since(&paths, None, false, Some(&trusted)).expect("verify");
    assert!(
        r.problems.iter().any(|p| p.contains("rolled back")),
        "{:?}",
        r.problems
    );
    // A fork: new entries after the rollback, signed by the real key.
    let clock = Arc::new(FixedClock::new(
        time::macros::datetime!(2026-11-28 07:00 UTC),
    ));
    let mut l = Ledger::open(&paths, clock).expect("open");
    for c in 0..4 {
        l.append(vec![draft(c)]).expect("append");
    }
    drop(l);
    let r = verify_ledger_since(&paths, None, false, Some(&trusted)).expect("verify");
    assert!(
        r.problems.iter().any(|p| p.contains("fork")),
        "{:?}",
        r.problems
    );
}

/// Appends waiting while a commit runs are committed together by the
/// next one: one checkpoint for all, each keeping its own entries in order.
#[test]
fn waiting_appends_share_one_commit() {
    let (_dir, paths) = build(&[vec![0]]);
    let clock = Arc::new(FixedClock::new(
        time::macros::datetime!(2026-11-28 05:00 UTC),
    ));
    let shared = crate::ledger::SharedLedger::new(Ledger::open(&paths, clock).expect("open"));
    let before = shared.with(|l| l.size());
    const WRITERS: u8 = 8;
    let receipts = std::thread::scope(|s| {
        // Hold the ledger as a running commit would.
        let held = shared.0.ledger.lock().expect("lock");
        let handles: Vec<_> = (0..WRITERS)
            .map(|i| {
                let shared = shared.clone();
                s.spawn(move || shared.append(vec![draft(i), draft(i)]))
            })
            .collect();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while shared.0.pending.lock().expect("lock").len() < usize::from(WRITERS) {
            assert!(
                std::time::Instant::now() < deadline,
                "the appends never queued"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        drop(held);
        handles
            .into_iter()
            .map(|h| h.join().expect("join").expect("append"))
            .collect::<Vec<_>>()
    });
    let after = before + 2 * u64::from(WRITERS);
    let mut all: Vec<u64> = Vec::new();
    for r in &receipts {
        assert_eq!(
            r.checkpoint_size, after,
            "one checkpoint covers every waiting append"
        );
        assert_eq!(r.indexes.len(), 2);
        assert_eq!(
            r.indexes[1],
            r.indexes[0] + 1,
            "an append's entries stay together"
        );
        all.extend(&r.indexes);
    }
    all.sort_unstable();
    assert_eq!(all, (before..after).collect::<Vec<_>>());
    let report = verify_ledger(&paths, None, true).expect("verify");
    assert!(report.ok(), "{:?}", report.problems);
    // The two of init, the first batch's, and the one shared commit's.
    assert_eq!(report.checkpoints, 4);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(40))]

    /// Any sequence of appends and checkpoints verifies.
    #[test]
    fn any_history_verifies(batches in proptest::collection::vec(proptest::collection::vec(0u8..3, 1..5), 0..6)) {
        let (_dir, paths) = build(&batches);
        let r = verify_ledger(&paths, None, false).expect("verify");
        let strict = verify_ledger(&paths, None, true).expect("verify");
        prop_assert!(strict.ok(), "{:?}", strict.problems);
        prop_assert!(r.ok(), "{:?}", r.problems);
        let total: usize = batches.iter().map(Vec::len).sum();
        prop_assert_eq!(r.entries, total as u64 + 1);
        prop_assert_eq!(r.checkpoints, batches.len() + 2);
    }

    /// Any changed byte, deleted, duplicated, swapped or injected line,
    /// truncation, forged rotation or rollback is refused by a verifier
    /// pinned to the initial key and a checkpoint it trusted earlier;
    /// everything but a rollback is refused with the key alone.
    #[test]
    fn any_damage_is_detected(batches in proptest::collection::vec(proptest::collection::vec(0u8..3, 1..4), 1..5), rotate in any::<bool>(), d in damage()) {
        let (_dir, paths) = build(&batches);
        if rotate {
            let clock = Arc::new(FixedClock::new(time::macros::datetime!(2026-11-28 05:00 UTC)));
            let mut l = Ledger::open(&paths, clock).expect("open");
            l.rotate_key(actor()).expect("rotate");
            l.append(vec![draft(0)]).expect("append");
        }
        let initial = initial_key(&paths);
        let trusted = std::fs::read(paths.checkpoint()).expect("checkpoint");
        let original = std::fs::read(paths.entries()).expect("entries");
        apply(&paths, &d);
        let pinned = verify_ledger_since(&paths, Some(&initial), false, Some(&trusted))
            .map(|r| !r.ok())
            .unwrap_or(true);
        prop_assert!(pinned, "undetected with a trusted checkpoint: {:?}", d);
        if !matches!(d, Damage::Rollback(_)) {
            let detected = verify_ledger(&paths, Some(&initial), false).map(|r| !r.ok()).unwrap_or(true);
            prop_assert!(detected, "undetected: {:?}", d);
        }
        // Opening to write never signs what was injected or forged, and
        // never launders damage: it refuses, or sets what follows the
        // signed entries aside, or leaves the damage for verification to find.
        let clock = Arc::new(FixedClock::new(time::macros::datetime!(2026-11-28 09:00 UTC)));
        if !matches!(d, Damage::Rollback(_)) && let Ok(l) = Ledger::open(&paths, clock) {
            drop(l);
            let r = verify_ledger(&paths, Some(&initial), true).expect("verify");
            if r.ok() {
                let now = std::fs::read(paths.entries()).expect("read");
                prop_assert!(now.starts_with(&original), "the signed entries changed: {:?}", d);
                for line in split_lines(&now[original.len()..]).0 {
                    let e = Entry::parse(line).expect("entry");
                    prop_assert_eq!(e.action, Action::TailSetAside, "a line was signed in: {:?}", d);
                }
            }
        }
    }
}
