//! Offline verification: of a whole ledger directory, and of an exported
//! case bundle. Both read files only and need nothing but the verifier key.

use std::collections::HashMap;
use std::path::Path;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use base64::Engine as _;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::entry::{Action, Entry};
use super::merkle::{self, CompactRange, leaf_hash};
use super::note::{self, NoteError, SignedCheckpoint};
use super::proof::TlogProof;
use super::{CHECKPOINTS_DIR, LedgerError, LedgerPaths, Meta, rotated_key};
use crate::ids::CaseId;

/// The key that signs checkpoints of `size`: the last key whose first signed size is at most `size`.
pub fn key_for(keys: &[(u64, String)], size: u64) -> &str {
    keys.iter()
        .rev()
        .find(|(from, _)| *from <= size)
        .or(keys.first())
        .map(|(_, k)| k.as_str())
        .unwrap_or_default()
}

/// Opens a checkpoint with the key in force at its size.
pub fn open_with_chain(
    note_bytes: &[u8],
    keys: &[(u64, String)],
    origin: &str,
) -> Result<SignedCheckpoint, NoteError> {
    // The size is only known after parsing; try the chain's keys from the newest.
    let mut last_err = None;
    for (_, k) in keys.iter().rev() {
        match note::open_checkpoint(note_bytes, k, origin) {
            Ok(cp) if key_for(keys, cp.size) == k => return Ok(cp),
            Ok(cp) => {
                last_err = Some(NoteError::BadSignature {
                    reason: format!(
                        "checkpoint of size {} is signed by a key not in force at that size",
                        cp.size
                    ),
                })
            }
            Err(e) => last_err = Some(e),
        }
    }
    Err(last_err.unwrap_or(NoteError::BadSignature {
        reason: "no verifier key".into(),
    }))
}

/// What `verify` found. `problems` empty means the ledger verifies.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Report {
    pub entries: u64,
    pub checkpoints: usize,
    pub latest_size: u64,
    pub latest_root: String,
    pub key_rotations: usize,
    pub problems: Vec<String>,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

fn b64(h: &merkle::Hash) -> String {
    base64::engine::general_purpose::STANDARD.encode(h.0)
}

/// Complete lines (without newlines) and whatever follows the last newline.
pub fn split_lines(data: &[u8]) -> (Vec<&[u8]>, &[u8]) {
    let mut lines = Vec::with_capacity(data.len() / 512);
    let mut start = 0;
    for nl in memchr::memchr_iter(b'\n', data) {
        lines.push(data.get(start..nl).unwrap_or_default());
        start = nl + 1;
    }
    (lines, data.get(start..).unwrap_or_default())
}

/// What one line contributes: its leaf hash and the fields the checks need.
struct Line {
    leaf: merkle::Hash,
    case: Option<String>,
    prev: Option<u64>,
    /// Unix time in nanoseconds.
    time: Option<i128>,
    rotated_to: Option<String>,
    problem: Option<String>,
}

fn read_line(line: &[u8], strict: bool) -> Line {
    let leaf = leaf_hash(line);
    let mut out = Line {
        leaf,
        case: None,
        prev: None,
        time: None,
        rotated_to: None,
        problem: None,
    };
    let parse_time = |t: &str| {
        super::scan::fast_time(t).or_else(|| {
            OffsetDateTime::parse(t, &Rfc3339)
                .ok()
                .map(OffsetDateTime::unix_timestamp_nanos)
        })
    };
    let fast = if strict {
        None
    } else {
        super::scan::scan(line).ok()
    };
    match fast {
        Some(f) if f.action != Some("key_rotated") => {
            out.case = f.case.map(str::to_owned);
            out.prev = f.prev;
            out.time = f.time.and_then(parse_time);
            if f.action.is_none() || out.time.is_none() {
                out.problem = Some("no action, or no RFC 3339 time".into());
            }
        }
        // Key rotations, anything the fast reader does not understand, and --strict: the full parser.
        _ => match Entry::parse(line) {
            Ok(e) => {
                out.prev = e.prev;
                out.time = parse_time(&e.time);
                if out.time.is_none() {
                    out.problem = Some(format!("time {:?} is not RFC 3339", e.time));
                }
                if e.action == Action::KeyRotated {
                    out.rotated_to = rotated_key(e.detail.as_ref());
                    if out.rotated_to.is_none() {
                        out.problem = Some("key rotation names no new verifier key".into());
                    }
                }
                out.case = e.case.map(|c| c.as_str().to_owned());
            }
            Err(err) => out.problem = Some(crate::error_chain(&err)),
        },
    }
    out
}

/// Checks across entries, fed in order: `prev` links, monotonic times, key rotations.
#[derive(Default)]
struct Links {
    case_last: HashMap<String, u64>,
    last_time: Option<i128>,
    keys: Vec<(u64, String)>,
    next: u64,
}

impl Links {
    fn check(&mut self, l: &Line, problems: &mut Vec<String>) {
        let i = self.next;
        self.next += 1;
        if let Some(p) = &l.problem {
            problems.push(format!("entry {i}: {p}"));
        }
        match l.case.as_deref() {
            Some(case) => {
                let expected = match self.case_last.get_mut(case) {
                    Some(last) => Some(std::mem::replace(last, i)),
                    None => {
                        self.case_last.insert(case.to_owned(), i);
                        None
                    }
                };
                if l.prev != expected {
                    problems.push(format!(
                        "entry {i}: prev is {:?} but case {case}'s previous entry is {expected:?}",
                        l.prev
                    ));
                }
            }
            None if l.prev.is_some() => {
                problems.push(format!("entry {i}: prev set on an entry without a case"))
            }
            None => {}
        }
        if let Some(t) = l.time {
            if self.last_time.is_some_and(|last| t < last) {
                problems.push(format!(
                    "entry {i}: its time is earlier than the entry before it"
                ));
            }
            self.last_time = Some(t);
        }
        if let Some(k) = &l.rotated_to {
            self.keys.push((i + 2, k.clone()));
        }
    }
}

/// Bytes read from the entries file at a time; lines are processed a chunk at once.
const VERIFY_CHUNK: usize = 16 << 20;
const _: () = assert!(VERIFY_CHUNK > super::entry::MAX_ENTRY_LEN + 1);

/// Reads the entries file in chunks that end on a newline, reusing buffers
/// handed back through `pool`. Returns the bytes after the last newline.
fn read_chunks(
    path: &Path,
    outs: Vec<SyncSender<Vec<u8>>>,
    pool: Receiver<Vec<u8>>,
) -> Result<usize, LedgerError> {
    let mut next = 0usize;
    use std::io::Read as _;
    let mut f = std::fs::File::open(path).map_err(super::io("cannot read", path))?;
    let mut carry: Vec<u8> = Vec::new();
    loop {
        let mut buf = pool
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(VERIFY_CHUNK));
        buf.clear();
        buf.extend_from_slice(&carry);
        let room = (VERIFY_CHUNK - buf.len().min(VERIFY_CHUNK)) as u64;
        // read_to_end into spare capacity: no zeroing of a buffer about to be overwritten.
        let n = (&mut f)
            .take(room)
            .read_to_end(&mut buf)
            .map_err(super::io("cannot read", path))?;
        match memchr::memrchr(b'\n', &buf) {
            Some(last) => {
                carry = buf.get(last + 1..).unwrap_or_default().to_vec();
                buf.truncate(last + 1);
                // Chunks go round robin to the line readers; the checks take them back in the same order.
                let Some(out) = outs.get(next % outs.len().max(1)) else {
                    return Ok(0);
                };
                next += 1;
                if out.send(buf).is_err() {
                    return Ok(0);
                }
            }
            // No newline in a whole chunk: far past the entry size limit; stop here.
            None if buf.len() >= VERIFY_CHUNK => return Ok(buf.len()),
            None => carry = buf,
        }
        if n == 0 {
            return Ok(carry.len());
        }
    }
}

/// Verifies a ledger directory: every leaf, every checkpoint's signature and
/// root, consistency between all checkpoints, `prev` links, monotonic times.
/// `trusted_key` is the verifier key the caller trusts; without it the one in
/// `ledger.json` is used (and the report says so only through that file).
/// `strict` also checks that every entry is canonical JSON of the entry
/// schema (a full parse of each line; slower).
pub fn verify_ledger(
    paths: &LedgerPaths,
    trusted_key: Option<&str>,
    strict: bool,
) -> Result<Report, LedgerError> {
    let meta: Meta = std::fs::read(paths.meta())
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or(LedgerError::BadMeta { path: paths.meta() })?;
    let mut report = Report::default();
    let initial = trusted_key.unwrap_or(&meta.initial_verifier_key).to_owned();
    if initial != meta.initial_verifier_key {
        report
            .problems
            .push("ledger.json names a different initial verifier key than the trusted one".into());
    }
    let mut names: Vec<(u64, std::path::PathBuf)> =
        std::fs::read_dir(paths.dir.join(CHECKPOINTS_DIR))
            .map_err(super::io("cannot list", &paths.checkpoints()))?
            .filter_map(Result::ok)
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                name.parse::<u64>()
                    .ok()
                    .filter(|_| name.len() == 12)
                    .map(|n| (n, e.path()))
            })
            .collect();
    names.sort();
    // Roots at every checkpointed size, computed in one pass over the entries
    // with a compact range: each checkpoint is checked against the same
    // sequence of leaves, so each is a prefix of the next.
    let mut wanted = names.iter().map(|(n, _)| *n).peekable();
    let mut roots: HashMap<u64, merkle::Hash> = HashMap::new();
    let mut range = CompactRange::default();
    let mut links = Links::default();
    let mut problems = Vec::new();
    let mut record = |range: &CompactRange, roots: &mut HashMap<u64, merkle::Hash>| {
        while wanted.next_if(|&w| w < range.size()).is_some() {}
        if wanted.next_if_eq(&range.size()).is_some() {
            roots.insert(range.size(), range.root());
        }
    };
    record(&range, &mut roots);
    // Three stages overlap: reading the file, hashing and reading each line
    // (on all cores), and the in-order checks here.
    let entries_path = paths.entries();
    let trailing = std::thread::scope(|s| -> Result<usize, LedgerError> {
        let workers = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .clamp(1, 8);
        let (pool_tx, pool_rx) = sync_channel::<Vec<u8>>(workers + 1);
        let mut chunk_txs = Vec::with_capacity(workers);
        let mut line_rxs = Vec::with_capacity(workers);
        for _ in 0..workers {
            let (chunk_tx, chunk_rx) = sync_channel::<Vec<u8>>(1);
            let (lines_tx, lines_rx) = sync_channel::<Vec<Line>>(1);
            let pool_tx = pool_tx.clone();
            s.spawn(move || {
                for chunk in chunk_rx {
                    let lines: Vec<Line> = split_lines(&chunk)
                        .0
                        .iter()
                        .map(|l| read_line(l, strict))
                        .collect();
                    let _ = pool_tx.try_send(chunk);
                    if lines_tx.send(lines).is_err() {
                        break;
                    }
                }
            });
            chunk_txs.push(chunk_tx);
            line_rxs.push(lines_rx);
        }
        drop(pool_tx);
        let reader = s.spawn(|| read_chunks(&entries_path, chunk_txs, pool_rx));
        'chunks: for i in 0.. {
            let Some(rx) = line_rxs.get(i % workers) else {
                break;
            };
            let Ok(batch) = rx.recv() else { break 'chunks };
            for l in batch {
                range.push(l.leaf);
                links.check(&l, &mut problems);
                record(&range, &mut roots);
            }
        }
        reader.join().map_err(|_| LedgerError::Poisoned)?
    })?;
    report.problems.extend(problems);
    if trailing > 0 {
        report
            .problems
            .push("the entries file ends with an incomplete line".into());
    }
    let rotations = links.keys;
    report.entries = range.size();
    report.key_rotations = rotations.len();
    let mut chain = vec![(0u64, initial)];
    chain.extend(rotations);

    let mut prev: Option<SignedCheckpoint> = None;
    for (named, path) in &names {
        let bytes = std::fs::read(path).map_err(super::io("cannot read", path))?;
        let cp = match open_with_chain(&bytes, &chain, &meta.origin) {
            Ok(cp) => cp,
            Err(e) => {
                report
                    .problems
                    .push(format!("checkpoint {}: {e}", path.display()));
                continue;
            }
        };
        report.checkpoints += 1;
        if cp.size != *named {
            report.problems.push(format!(
                "checkpoint {} is for size {}",
                path.display(),
                cp.size
            ));
        }
        match roots.get(&cp.size) {
            Some(root) if *root == cp.root => {}
            Some(_) => report.problems.push(format!(
                "checkpoint of size {}: the entries do not hash to its root",
                cp.size
            )),
            None => {
                report.problems.push(format!(
                    "checkpoint of size {} covers more entries than the log holds ({})",
                    cp.size,
                    range.size()
                ));
                continue;
            }
        }
        if prev.as_ref().is_some_and(|p| p.size >= cp.size) {
            report.problems.push(format!(
                "checkpoint of size {} does not grow the log",
                cp.size
            ));
        }
        prev = Some(cp);
    }
    match std::fs::read(paths.checkpoint()) {
        Ok(latest) => match &prev {
            Some(p) if p.note == latest => {
                report.latest_size = p.size;
                report.latest_root = b64(&p.root);
                if range.size() > p.size {
                    report.problems.push(format!(
                        "{} entries after entry {} are not covered by any signed checkpoint",
                        range.size() - p.size,
                        p.size
                    ));
                }
            }
            _ => report
                .problems
                .push("the latest checkpoint is not the newest in checkpoints/".into()),
        },
        Err(e) => report
            .problems
            .push(format!("cannot read the latest checkpoint: {e}")),
    }
    Ok(report)
}

/// Files of an exported case bundle.
pub mod bundle {
    pub const CHECKPOINT: &str = "checkpoint";
    pub const VERIFIER_KEY: &str = "verifier.key";
    pub const KEY_HISTORY: &str = "key-history.txt";
    pub const ENTRIES: &str = "entries";
    pub const PROOFS: &str = "proofs";
    pub const MANIFESTS: &str = "manifests";
    pub const README: &str = "README.txt";
}

/// Verifies an exported case bundle with the verifier key in it (or `trusted_key`).
pub fn verify_bundle(dir: &Path, trusted_key: Option<&str>) -> Result<Report, LedgerError> {
    let read = |name: &str| {
        std::fs::read(dir.join(name)).map_err(super::io("cannot read", &dir.join(name)))
    };
    let key_text = String::from_utf8(read(bundle::VERIFIER_KEY)?).unwrap_or_default();
    let key = trusted_key
        .map(str::to_owned)
        .unwrap_or_else(|| key_text.trim().to_owned());
    let mut report = Report::default();
    let origin = note::key_name(&key).to_owned();
    let checkpoint = read(bundle::CHECKPOINT)?;
    let cp = match note::open_checkpoint(&checkpoint, &key, &origin) {
        Ok(cp) => cp,
        Err(e) => {
            report.problems.push(format!("checkpoint: {e}"));
            return Ok(report);
        }
    };
    report.latest_size = cp.size;
    report.latest_root = b64(&cp.root);
    report.checkpoints = 1;
    let mut indexes: Vec<u64> = std::fs::read_dir(dir.join(bundle::ENTRIES))
        .map_err(super::io("cannot list", &dir.join(bundle::ENTRIES)))?
        .filter_map(Result::ok)
        .filter_map(|e| {
            e.file_name()
                .to_string_lossy()
                .strip_suffix(".json")
                .and_then(|n| n.parse().ok())
        })
        .collect();
    indexes.sort_unstable();
    let mut case_last: HashMap<CaseId, u64> = HashMap::new();
    for i in indexes {
        let bytes = read(&format!("{}/{i}.json", bundle::ENTRIES))?;
        let e = match Entry::parse(&bytes) {
            Ok(e) => e,
            Err(err) => {
                report
                    .problems
                    .push(format!("entry {i}: {}", crate::error_chain(&err)));
                continue;
            }
        };
        report.entries += 1;
        if let Some(c) = &e.case
            && let Some(last) = case_last.insert(c.clone(), i)
            && e.prev != Some(last)
        {
            report.problems.push(format!("entry {i}: prev is {:?}, but the bundle's previous entry of case {c} is {last}: an entry is missing", e.prev));
        }
        let proof = match read(&format!("{}/{i}.tlog-proof", bundle::PROOFS))
            .map(|b| TlogProof::parse(&b))
        {
            Ok(Ok(p)) => p,
            Ok(Err(e)) => {
                report.problems.push(format!("proof of entry {i}: {e}"));
                continue;
            }
            Err(e) => {
                report.problems.push(format!("proof of entry {i}: {e}"));
                continue;
            }
        };
        if proof.index != i {
            report
                .problems
                .push(format!("proof of entry {i} is for index {}", proof.index));
        }
        let pcp = match note::open_checkpoint(&proof.checkpoint, &key, &origin) {
            Ok(c) => c,
            Err(e) => {
                report
                    .problems
                    .push(format!("proof of entry {i}: its checkpoint: {e}"));
                continue;
            }
        };
        if let Err(e) =
            merkle::verify_inclusion(i, pcp.size, &leaf_hash(&bytes), &proof.hashes, &pcp.root)
        {
            report
                .problems
                .push(format!("entry {i} is not in the signed log: {e}"));
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use proptest::prelude::*;

    use super::*;
    use crate::clock::FixedClock;
    use crate::ledger::Ledger;
    use crate::ledger::entry::{Actor, EntryDraft, Reason};

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
        FlipEntries { at: usize, bit: u8 },
        FlipCheckpoint { at: usize, bit: u8 },
        DeleteLine(usize),
        DuplicateLine(usize),
        SwapLines(usize, usize),
        Truncate(usize),
    }

    fn damage() -> impl Strategy<Value = Damage> {
        prop_oneof![
            (any::<usize>(), 0u8..8).prop_map(|(at, bit)| Damage::FlipEntries { at, bit }),
            (any::<usize>(), 0u8..8).prop_map(|(at, bit)| Damage::FlipCheckpoint { at, bit }),
            any::<usize>().prop_map(Damage::DeleteLine),
            any::<usize>().prop_map(Damage::DuplicateLine),
            (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Damage::SwapLines(a, b)),
            any::<usize>().prop_map(Damage::Truncate),
        ]
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
        }
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

        /// Any single changed byte, deleted, duplicated or swapped line, or truncation is detected.
        #[test]
        fn any_damage_is_detected(batches in proptest::collection::vec(proptest::collection::vec(0u8..3, 1..4), 1..5), d in damage()) {
            let (_dir, paths) = build(&batches);
            apply(&paths, &d);
            let detected = verify_ledger(&paths, None, false).map(|r| !r.ok()).unwrap_or(true);
            prop_assert!(detected, "undetected: {:?}", d);
        }
    }
}
