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
use super::{CHECKPOINTS_DIR, LedgerError, LedgerPaths, Meta, Rotation, retired_key, rotated_key};
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
    /// What the verification could not vouch for, without being a failure
    /// (no trusted key pinned).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
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
    rotated_from: Option<String>,
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
        rotated_from: None,
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
                    out.rotated_from = retired_key(e.detail.as_ref());
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
    rotations: Vec<Rotation>,
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
            self.rotations.push(Rotation {
                index: i,
                old: l.rotated_from.clone(),
                new: k.clone(),
            });
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
    verify_ledger_since(paths, trusted_key, strict, None)
}

/// [`verify_ledger`], and also that the log extends `trusted_checkpoint`, a
/// checkpoint the verifier saw earlier (RFC 9162 consistency, checked by
/// recomputing the root at its size from the entries): a ledger restored
/// from an older copy, or rewritten after a truncation, is refused.
pub fn verify_ledger_since(
    paths: &LedgerPaths,
    trusted_key: Option<&str>,
    strict: bool,
    trusted_checkpoint: Option<&[u8]>,
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
    let trusted_size = trusted_checkpoint.and_then(super::claimed_size);
    if trusted_checkpoint.is_some() && trusted_size.is_none() {
        report
            .problems
            .push("the trusted checkpoint is not a checkpoint".into());
    }
    let mut sizes: Vec<u64> = names.iter().map(|(n, _)| *n).chain(trusted_size).collect();
    sizes.sort_unstable();
    // Roots at every checkpointed size, computed in one pass over the entries
    // with a compact range: each checkpoint is checked against the same
    // sequence of leaves, so each is a prefix of the next.
    let mut wanted = sizes.into_iter().peekable();
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
    let rotations = links.rotations;
    report.entries = range.size();
    report.key_rotations = rotations.len();

    // Checkpoints in size order, each opened with the key in force; a
    // rotation at index i puts its key in force only once the checkpoint of
    // size i + 1, signed by the key it retires, covers it.
    let mut chain: Vec<(u64, String)> = vec![(0u64, initial)];
    let mut pending = rotations.iter().peekable();
    let mut prev: Option<SignedCheckpoint> = None;
    for (named, path) in &names {
        let bytes = std::fs::read(path).map_err(super::io("cannot read", path))?;
        let cur = chain.last().map(|(_, k)| k.clone()).unwrap_or_default();
        let cp = match note::open_checkpoint(&bytes, &cur, &meta.origin) {
            Ok(cp) => cp,
            Err(e) => {
                report.problems.push(format!(
                    "checkpoint {}: not signed by the key in force ({e})",
                    path.display()
                ));
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
        while let Some(r) = pending.next_if(|r| r.index < cp.size) {
            if r.index + 1 != cp.size {
                report.problems.push(format!(
                    "the key rotation at entry {} is not covered by a checkpoint of size {} signed by the key it retires",
                    r.index,
                    r.index + 1
                ));
            } else if r.old.as_ref().is_some_and(|o| *o != cur) {
                report.problems.push(format!(
                    "the key rotation at entry {} names another key than the one in force as the key it retires",
                    r.index
                ));
            } else {
                chain.push((cp.size + 1, r.new.clone()));
            }
        }
        prev = Some(cp);
    }
    if let (Some(trusted), Some(size)) = (trusted_checkpoint, trusted_size) {
        let key = key_for(&chain, size);
        match note::open_checkpoint(trusted, key, &meta.origin) {
            Err(e) => report.problems.push(format!(
                "the trusted checkpoint of size {size} is not signed by the key in force at that size: {e}"
            )),
            Ok(t) => match roots.get(&t.size) {
                None => report.problems.push(format!(
                    "the log holds {} entries, fewer than the {} of the trusted checkpoint: it was rolled back",
                    range.size(),
                    t.size
                )),
                Some(root) if *root != t.root => report.problems.push(format!(
                    "the log's first {} entries do not hash to the trusted checkpoint's root: the log was rewritten (a fork)",
                    t.size
                )),
                Some(_) => {}
            },
        }
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
    pub const CASE: &str = "case";
    pub const ROTATIONS: &str = "rotations";
    pub const CHECKPOINT: &str = "checkpoint";
    pub const VERIFIER_KEY: &str = "verifier.key";
    pub const KEY_HISTORY: &str = "key-history.txt";
    pub const ENTRIES: &str = "entries";
    pub const PROOFS: &str = "proofs";
    pub const MANIFESTS: &str = "manifests";
    pub const README: &str = "README.txt";
}

/// Reads `<dir>/<index>.json` and `<dir>/<index>.tlog-proof` pairs, by index.
fn bundle_items(dir: &Path) -> Result<Vec<u64>, LedgerError> {
    let mut indexes: Vec<u64> = match std::fs::read_dir(dir) {
        Ok(d) => d
            .filter_map(Result::ok)
            .filter_map(|e| {
                e.file_name()
                    .to_string_lossy()
                    .strip_suffix(".json")
                    .and_then(|n| n.parse().ok())
            })
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(super::io("cannot list", dir)(e)),
    };
    indexes.sort_unstable();
    Ok(indexes)
}

/// Verifies an exported case bundle against `trusted_key` (the log's initial
/// verifier key), or, without one, the bundle's own `verifier.key` (and says
/// so in the report's warnings: a wholly forged bundle is self-consistent).
pub fn verify_bundle(dir: &Path, trusted_key: Option<&str>) -> Result<Report, LedgerError> {
    let read = |name: &str| {
        std::fs::read(dir.join(name)).map_err(super::io("cannot read", &dir.join(name)))
    };
    let key_text = String::from_utf8(read(bundle::VERIFIER_KEY)?).unwrap_or_default();
    let mut report = Report::default();
    let key = match trusted_key {
        Some(k) => k.to_owned(),
        None => {
            report.warnings.push(
                "no --key given: checked against the bundle's own verifier.key, which proves nothing about who signed it; pin the log's initial key"
                    .into(),
            );
            key_text.trim().to_owned()
        }
    };
    let origin = note::key_name(&key).to_owned();
    let case: Option<CaseId> = std::fs::read_to_string(dir.join(bundle::CASE))
        .ok()
        .and_then(|c| c.trim().parse().ok());
    if case.is_none() {
        report
            .problems
            .push("the bundle does not name its case (file `case`)".into());
    }

    // The key chain: each rotation covered by a checkpoint of its own size + 1
    // signed by the key it retires.
    let mut chain: Vec<(u64, String)> = vec![(0, key.clone())];
    let rotations_dir = dir.join(bundle::ROTATIONS);
    for i in bundle_items(&rotations_dir)? {
        let cur = chain.last().map(|(_, k)| k.clone()).unwrap_or_default();
        let bytes = read(&format!("{}/{i}.json", bundle::ROTATIONS))?;
        let checked = (|| -> Result<String, String> {
            let e = Entry::parse(&bytes).map_err(|e| crate::error_chain(&e))?;
            if e.action != Action::KeyRotated {
                return Err("it is not a key rotation".into());
            }
            if retired_key(e.detail.as_ref()).as_deref() != Some(cur.as_str()) {
                return Err("it does not retire the key in force".into());
            }
            let new = rotated_key(e.detail.as_ref()).ok_or("it names no new key")?;
            let proof = read(&format!("{}/{i}.tlog-proof", bundle::ROTATIONS))
                .map_err(|e| e.to_string())
                .and_then(|b| TlogProof::parse(&b).map_err(|e| e.to_string()))?;
            let cp = note::open_checkpoint(&proof.checkpoint, &cur, &origin)
                .map_err(|e| format!("its checkpoint is not signed by the key it retires: {e}"))?;
            if proof.index != i || cp.size != i + 1 {
                return Err(format!(
                    "its proof is of entry {} in a checkpoint of size {}, not of entry {i} in one of size {}",
                    proof.index,
                    cp.size,
                    i + 1
                ));
            }
            merkle::verify_inclusion(i, cp.size, &leaf_hash(&bytes), &proof.hashes, &cp.root)
                .map_err(|e| format!("it is not in its checkpoint: {e}"))?;
            Ok(new)
        })();
        match checked {
            Ok(new) => chain.push((i + 2, new)),
            Err(why) => report
                .problems
                .push(format!("key rotation at entry {i}: {why}")),
        }
    }
    report.key_rotations = chain.len() - 1;

    let checkpoint = read(bundle::CHECKPOINT)?;
    let cp = match open_with_chain(&checkpoint, &chain, &origin) {
        Ok(cp) => cp,
        Err(e) => {
            report.problems.push(format!("checkpoint: {e}"));
            return Ok(report);
        }
    };
    report.latest_size = cp.size;
    report.latest_root = b64(&cp.root);
    report.checkpoints = 1;
    let indexes = bundle_items(&dir.join(bundle::ENTRIES))?;
    let mut last: Option<(u64, Entry)> = None;
    for &i in &indexes {
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
        if e.case != case {
            report.problems.push(format!(
                "entry {i} is of case {:?}, not of the bundle's case",
                e.case.as_ref().map(CaseId::as_str)
            ));
        }
        let expected = last.as_ref().map(|(l, _)| *l);
        if e.prev != expected {
            report.problems.push(match expected {
                None => format!(
                    "entry {i}: prev is {:?}, but it is the bundle's first entry of the case: the case's earlier entries are missing",
                    e.prev
                ),
                Some(l) => format!(
                    "entry {i}: prev is {:?}, but the bundle's previous entry of the case is {l}: an entry is missing",
                    e.prev
                ),
            });
        }
        last = Some((i, e));
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
        let pcp = match open_with_chain(&proof.checkpoint, &chain, &origin) {
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
    // The bundle ends with the signed record of its export, which counts the entries before it.
    let counted = last
        .as_ref()
        .filter(|(_, e)| e.action == Action::Exported)
        .and_then(|(_, e)| e.detail.as_ref()?.get("entries")?.as_u64());
    match counted {
        Some(n) if n + 1 == indexes.len() as u64 => {}
        Some(n) => report.problems.push(format!(
            "the export record counts {n} entries of the case before it, but the bundle holds {}",
            indexes.len().saturating_sub(1)
        )),
        None => report.problems.push(
            "the bundle does not end with the signed record of its export: entries may have been cut from its end".into(),
        ),
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
        let stray =
            note::create_key(&keys.join("ledger.key.new"), "custody.test/log").expect("key");
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
            let mut l =
                Ledger::open(&paths, clock.clone()).unwrap_or_else(|e| panic!("{step}: {e}"));
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
}
