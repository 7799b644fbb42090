//! Offline verification: of a whole ledger directory, and of an exported
//! case bundle. Both read files only and need nothing but the verifier key.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use base64::Engine as _;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::entry::{Action, Entry};
use crate::ids::CaseId;
use crate::merkle::{self, CompactRange, leaf_hash};
use crate::note::{self, NoteError, SignedCheckpoint};
use crate::proof::TlogProof;
use crate::{CHECKPOINTS_DIR, LedgerError, LedgerPaths, Meta, Rotation, retired_key, rotated_key};

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
        crate::scan::fast_time(t).or_else(|| {
            OffsetDateTime::parse(t, &Rfc3339)
                .ok()
                .map(OffsetDateTime::unix_timestamp_nanos)
        })
    };
    let fast = if strict {
        None
    } else {
        crate::scan::scan(line).ok()
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
const _: () = assert!(VERIFY_CHUNK > crate::entry::MAX_ENTRY_LEN + 1);

/// Reads the entries file in chunks that end on a newline, reusing buffers
/// handed back through `pool`. Returns the bytes after the last newline.
fn read_chunks(
    path: &Path,
    outs: Vec<SyncSender<Vec<u8>>>,
    pool: Receiver<Vec<u8>>,
) -> Result<usize, LedgerError> {
    let mut next = 0usize;
    use std::io::Read as _;
    let mut f = std::fs::File::open(path).map_err(crate::io("cannot read", path))?;
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
            .map_err(crate::io("cannot read", path))?;
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
    let names = checkpoint_files(paths)?;
    let trusted_size = trusted_checkpoint.and_then(crate::claimed_size);
    if trusted_checkpoint.is_some() && trusted_size.is_none() {
        report
            .problems
            .push("the trusted checkpoint is not a checkpoint".into());
    }
    let mut sizes: Vec<u64> = names.iter().map(|(n, _)| *n).chain(trusted_size).collect();
    sizes.sort_unstable();
    let mut scan = scan_entries(&paths.entries(), strict, sizes)?;
    report.problems.append(&mut scan.problems);
    if scan.trailing > 0 {
        report
            .problems
            .push("the entries file ends with an incomplete line".into());
    }
    report.entries = scan.size;
    report.key_rotations = scan.rotations.len();
    let (chain, newest) = check_checkpoints(&names, initial, &scan, &meta.origin, &mut report)?;
    if let (Some(trusted), Some(size)) = (trusted_checkpoint, trusted_size) {
        check_trusted(trusted, size, &chain, &scan, &meta.origin, &mut report);
    }
    check_latest(paths, newest.as_ref(), scan.size, &mut report);
    Ok(report)
}

/// Each verifier key with the first checkpoint size it signs, oldest first.
type KeyChain = Vec<(u64, String)>;

/// The signed checkpoints of `checkpoints/` (names of 12 digits, the size
/// they claim), in size order.
fn checkpoint_files(paths: &LedgerPaths) -> Result<Vec<(u64, PathBuf)>, LedgerError> {
    let mut names: Vec<(u64, PathBuf)> = std::fs::read_dir(paths.dir.join(CHECKPOINTS_DIR))
        .map_err(crate::io("cannot list", &paths.checkpoints()))?
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
    Ok(names)
}

/// What one pass over the entries file found.
struct Scan {
    /// Entries read.
    size: u64,
    /// The Merkle root at each size asked for that the log reaches.
    roots: HashMap<u64, merkle::Hash>,
    rotations: Vec<Rotation>,
    /// Problems of single entries and of their links, in entry order.
    problems: Vec<String>,
    /// Bytes after the last newline.
    trailing: usize,
}

/// Reads the entries file once, checking every entry and its links, and
/// computing the root at each of `sizes` (sorted) with a compact range:
/// each checkpoint is checked against the same sequence of leaves, so each
/// is a prefix of the next.
fn scan_entries(entries: &Path, strict: bool, sizes: Vec<u64>) -> Result<Scan, LedgerError> {
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
            s.spawn(move || read_lines(&chunk_rx, &lines_tx, &pool_tx, strict));
            chunk_txs.push(chunk_tx);
            line_rxs.push(lines_rx);
        }
        drop(pool_tx);
        let reader = s.spawn(|| read_chunks(entries, chunk_txs, pool_rx));
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
    Ok(Scan {
        size: range.size(),
        roots,
        rotations: links.rotations,
        problems,
        trailing,
    })
}

/// One line reader: hashes and reads the lines of each chunk it is handed,
/// and hands the chunk's buffer back to the pool.
fn read_lines(
    chunks: &Receiver<Vec<u8>>,
    lines_tx: &SyncSender<Vec<Line>>,
    pool: &SyncSender<Vec<u8>>,
    strict: bool,
) {
    for chunk in chunks {
        let lines: Vec<Line> = split_lines(&chunk)
            .0
            .iter()
            .map(|l| read_line(l, strict))
            .collect();
        let _ = pool.try_send(chunk);
        if lines_tx.send(lines).is_err() {
            break;
        }
    }
}

/// Checks the checkpoints in size order, each opened with the key in force;
/// a rotation at index i puts its key in force only once the checkpoint of
/// size i + 1, signed by the key it retires, covers it. Returns the key
/// chain and the newest checkpoint that opened and lies within the log.
fn check_checkpoints(
    names: &[(u64, PathBuf)],
    initial: String,
    scan: &Scan,
    origin: &str,
    report: &mut Report,
) -> Result<(KeyChain, Option<SignedCheckpoint>), LedgerError> {
    let mut chain: KeyChain = vec![(0u64, initial)];
    let mut pending = scan.rotations.iter().peekable();
    let mut prev: Option<SignedCheckpoint> = None;
    for (named, path) in names {
        let bytes = std::fs::read(path).map_err(crate::io("cannot read", path))?;
        let cur = chain.last().map(|(_, k)| k.clone()).unwrap_or_default();
        let cp = match note::open_checkpoint(&bytes, &cur, origin) {
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
        if !check_checkpoint(&cp, *named, path, scan, report) {
            continue;
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
    Ok((chain, prev))
}

/// Checks a signed checkpoint against its file name and the entries' root
/// at its size; false when it covers more entries than the log holds.
fn check_checkpoint(
    cp: &SignedCheckpoint,
    named: u64,
    path: &Path,
    scan: &Scan,
    report: &mut Report,
) -> bool {
    if cp.size != named {
        report.problems.push(format!(
            "checkpoint {} is for size {}",
            path.display(),
            cp.size
        ));
    }
    match scan.roots.get(&cp.size) {
        Some(root) if *root == cp.root => true,
        Some(_) => {
            report.problems.push(format!(
                "checkpoint of size {}: the entries do not hash to its root",
                cp.size
            ));
            true
        }
        None => {
            report.problems.push(format!(
                "checkpoint of size {} covers more entries than the log holds ({})",
                cp.size, scan.size
            ));
            false
        }
    }
}

/// Checks that the log extends `trusted`, a checkpoint of `size` the
/// verifier saw earlier: neither rolled back nor rewritten.
fn check_trusted(
    trusted: &[u8],
    size: u64,
    chain: &[(u64, String)],
    scan: &Scan,
    origin: &str,
    report: &mut Report,
) {
    let key = key_for(chain, size);
    match note::open_checkpoint(trusted, key, origin) {
        Err(e) => report.problems.push(format!(
            "the trusted checkpoint of size {size} is not signed by the key in force at that size: {e}"
        )),
        Ok(t) => match scan.roots.get(&t.size) {
            None => report.problems.push(format!(
                "the log holds {} entries, fewer than the {} of the trusted checkpoint: it was rolled back",
                scan.size, t.size
            )),
            Some(root) if *root != t.root => report.problems.push(format!(
                "the log's first {} entries do not hash to the trusted checkpoint's root: the log was rewritten (a fork)",
                t.size
            )),
            Some(_) => {}
        },
    }
}

/// Checks that the latest checkpoint is `newest`, the newest of
/// `checkpoints/`, and that it covers all `entries`.
fn check_latest(
    paths: &LedgerPaths,
    newest: Option<&SignedCheckpoint>,
    entries: u64,
    report: &mut Report,
) {
    match std::fs::read(paths.checkpoint()) {
        Ok(latest) => match newest {
            Some(p) if p.note == latest => {
                report.latest_size = p.size;
                report.latest_root = b64(&p.root);
                if entries > p.size {
                    report.problems.push(format!(
                        "{} entries after entry {} are not covered by any signed checkpoint",
                        entries - p.size,
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
        Err(e) => return Err(crate::io("cannot list", dir)(e)),
    };
    indexes.sort_unstable();
    Ok(indexes)
}

/// Verifies an exported case bundle against `trusted_key` (the log's initial
/// verifier key), or, without one, the bundle's own `verifier.key` (and says
/// so in the report's warnings: a wholly forged bundle is self-consistent).
pub fn verify_bundle(dir: &Path, trusted_key: Option<&str>) -> Result<Report, LedgerError> {
    let key_text = String::from_utf8(read_in(dir, bundle::VERIFIER_KEY)?).unwrap_or_default();
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
    let chain = bundle_key_chain(dir, key, &origin, &mut report)?;
    report.key_rotations = chain.len() - 1;

    let checkpoint = read_in(dir, bundle::CHECKPOINT)?;
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
    let signed = Signed {
        chain: &chain,
        origin: &origin,
    };
    for &i in &indexes {
        check_bundle_entry(dir, i, case.as_ref(), &mut last, &signed, &mut report)?;
    }
    check_export_record(last.as_ref(), indexes.len(), &mut report);
    Ok(report)
}

/// The bytes of the bundle's file `name`.
fn read_in(dir: &Path, name: &str) -> Result<Vec<u8>, LedgerError> {
    std::fs::read(dir.join(name)).map_err(crate::io("cannot read", &dir.join(name)))
}

/// The key chain of a bundle, from `key`: each rotation covered by a
/// checkpoint of its own size + 1 signed by the key it retires.
fn bundle_key_chain(
    dir: &Path,
    key: String,
    origin: &str,
    report: &mut Report,
) -> Result<KeyChain, LedgerError> {
    let mut chain: KeyChain = vec![(0, key)];
    for i in bundle_items(&dir.join(bundle::ROTATIONS))? {
        let cur = chain.last().map(|(_, k)| k.clone()).unwrap_or_default();
        let bytes = read_in(dir, &format!("{}/{i}.json", bundle::ROTATIONS))?;
        match rotated_to(dir, i, &bytes, &cur, origin) {
            Ok(new) => chain.push((i + 2, new)),
            Err(why) => report
                .problems
                .push(format!("key rotation at entry {i}: {why}")),
        }
    }
    Ok(chain)
}

/// The key the rotation at entry `i` (its line `bytes`) puts in force after
/// `cur`, or why it does not.
fn rotated_to(dir: &Path, i: u64, bytes: &[u8], cur: &str, origin: &str) -> Result<String, String> {
    let e = Entry::parse(bytes).map_err(|e| crate::error_chain(&e))?;
    if e.action != Action::KeyRotated {
        return Err("it is not a key rotation".into());
    }
    if retired_key(e.detail.as_ref()).as_deref() != Some(cur) {
        return Err("it does not retire the key in force".into());
    }
    let new = rotated_key(e.detail.as_ref()).ok_or("it names no new key")?;
    let proof = read_in(dir, &format!("{}/{i}.tlog-proof", bundle::ROTATIONS))
        .map_err(|e| e.to_string())
        .and_then(|b| TlogProof::parse(&b).map_err(|e| e.to_string()))?;
    let cp = note::open_checkpoint(&proof.checkpoint, cur, origin)
        .map_err(|e| format!("its checkpoint is not signed by the key it retires: {e}"))?;
    if proof.index != i || cp.size != i + 1 {
        return Err(format!(
            "its proof is of entry {} in a checkpoint of size {}, not of entry {i} in one of size {}",
            proof.index,
            cp.size,
            i + 1
        ));
    }
    merkle::verify_inclusion(i, cp.size, &leaf_hash(bytes), &proof.hashes, &cp.root)
        .map_err(|e| format!("it is not in its checkpoint: {e}"))?;
    Ok(new)
}

/// The keys a bundle's checkpoints are opened with.
struct Signed<'a> {
    chain: &'a [(u64, String)],
    origin: &'a str,
}

/// Checks entry `i` of a bundle: of the bundle's case, linked to `last`
/// (the bundle's previous entry, which it becomes), and proved in the
/// signed log.
fn check_bundle_entry(
    dir: &Path,
    i: u64,
    case: Option<&CaseId>,
    last: &mut Option<(u64, Entry)>,
    signed: &Signed<'_>,
    report: &mut Report,
) -> Result<(), LedgerError> {
    let bytes = read_in(dir, &format!("{}/{i}.json", bundle::ENTRIES))?;
    let e = match Entry::parse(&bytes) {
        Ok(e) => e,
        Err(err) => {
            report
                .problems
                .push(format!("entry {i}: {}", crate::error_chain(&err)));
            return Ok(());
        }
    };
    report.entries += 1;
    if e.case.as_ref() != case {
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
    *last = Some((i, e));
    if let Err(why) = check_bundle_proof(dir, i, &bytes, signed, report) {
        report.problems.push(why);
    }
    Ok(())
}

/// Checks the inclusion proof of entry `i` (its line `bytes`); Err with the
/// problem that stopped the check.
fn check_bundle_proof(
    dir: &Path,
    i: u64,
    bytes: &[u8],
    signed: &Signed<'_>,
    report: &mut Report,
) -> Result<(), String> {
    let proof = match read_in(dir, &format!("{}/{i}.tlog-proof", bundle::PROOFS))
        .map(|b| TlogProof::parse(&b))
    {
        Ok(Ok(p)) => p,
        Ok(Err(e)) => return Err(format!("proof of entry {i}: {e}")),
        Err(e) => return Err(format!("proof of entry {i}: {e}")),
    };
    if proof.index != i {
        report
            .problems
            .push(format!("proof of entry {i} is for index {}", proof.index));
    }
    let pcp = open_with_chain(&proof.checkpoint, signed.chain, signed.origin)
        .map_err(|e| format!("proof of entry {i}: its checkpoint: {e}"))?;
    merkle::verify_inclusion(i, pcp.size, &leaf_hash(bytes), &proof.hashes, &pcp.root)
        .map_err(|e| format!("entry {i} is not in the signed log: {e}"))
}

/// The bundle ends with the signed record of its export, which counts the
/// entries before it: checks that `last` is that record and that it counts
/// the other `entries - 1`.
fn check_export_record(last: Option<&(u64, Entry)>, entries: usize, report: &mut Report) {
    let counted = last
        .filter(|(_, e)| e.action == Action::Exported)
        .and_then(|(_, e)| e.detail.as_ref()?.get("entries")?.as_u64());
    match counted {
        Some(n) if n + 1 == entries as u64 => {}
        Some(n) => report.problems.push(format!(
            "the export record counts {n} entries of the case before it, but the bundle holds {}",
            entries.saturating_sub(1)
        )),
        None => report.problems.push(
            "the bundle does not end with the signed record of its export: entries may have been cut from its end".into(),
        ),
    }
}

#[cfg(test)]
mod tests {
    //! Verification without the writer: keys, checkpoints and a bundle made
    //! by hand from the formats (custody's `src/ledger/tests.rs` damages
    //! ledgers written by the real writer).

    use super::*;
    use crate::entry::{Actor, Reason};
    use crate::merkle::Tree;

    const ORIGIN: &str = "custody.test/log";

    fn key() -> (signed_note::StandardSigner, String) {
        let (skey, vkey) = signed_note::generate_key(&mut rand_core::OsRng, ORIGIN);
        (
            signed_note::StandardSigner::new(&skey).expect("signer"),
            vkey,
        )
    }

    fn entry(case: &str, prev: Option<u64>, action: Action, detail: serde_json::Value) -> Vec<u8> {
        Entry {
            v: crate::entry::ENTRY_SCHEMA,
            time: "2026-11-28T04:00:00Z".into(),
            case: Some(case.parse().expect("id")),
            prev,
            action,
            actor: Actor {
                name: "t".into(),
                role: "operator".into(),
                host: "h".into(),
                tool: "custody".into(),
                tool_version: "0".into(),
            },
            reason: Reason::Manual {
                operator: "t".into(),
                note: None,
            },
            evidence: None,
            place: None,
            detail: Some(detail),
            nonce: crate::entry::random_nonce(),
        }
        .to_canonical()
        .expect("canonical")
    }

    #[test]
    fn key_for_picks_the_last_key_in_force_at_a_size() {
        let keys = vec![
            (0, "a".to_owned()),
            (5, "b".to_owned()),
            (9, "c".to_owned()),
        ];
        for (size, k) in [(0, "a"), (4, "a"), (5, "b"), (8, "b"), (9, "c"), (100, "c")] {
            assert_eq!(key_for(&keys, size), k, "size {size}");
        }
        assert_eq!(key_for(&[], 3), "");
    }

    #[test]
    fn a_checkpoint_signed_by_a_key_not_in_force_at_its_size_is_refused() {
        let ((old_signer, old), (new_signer, new)) = (key(), key());
        let chain = vec![(0, old.clone()), (3, new.clone())];
        let root = leaf_hash(b"x");
        for (signer, size, ok) in [
            (&old_signer, 2, true),
            (&new_signer, 3, true),
            (&new_signer, 2, false),
            (&old_signer, 3, false),
        ] {
            let cp = note::sign_checkpoint(signer, ORIGIN, size, &root).expect("sign");
            assert_eq!(
                open_with_chain(&cp, &chain, ORIGIN).is_ok(),
                ok,
                "size {size}"
            );
        }
    }

    #[test]
    fn split_lines_keeps_what_follows_the_last_newline_apart() {
        assert_eq!(
            split_lines(b"a\n\nbc\nd"),
            (vec![&b"a"[..], b"", b"bc"], &b"d"[..])
        );
        assert_eq!(split_lines(b""), (vec![], &b""[..]));
    }

    /// A bundle of one case's two entries (the second the export's record),
    /// signed by hand, verifies; each tampering a verifier must catch is refused.
    #[test]
    fn a_bundle_made_from_the_formats_verifies_and_tampering_is_refused() {
        let (signer, vkey) = key();
        let lines = [
            entry("c1", None, Action::Copied, serde_json::json!({})),
            entry("c2", None, Action::Copied, serde_json::json!({})),
            entry(
                "c1",
                Some(0),
                Action::Exported,
                serde_json::json!({"entries": 1}),
            ),
        ];
        let mut tree = Tree::new();
        for l in &lines {
            tree.push_leaf_hash(leaf_hash(l)).expect("leaf");
        }
        let size = tree.size();
        let cp = note::sign_checkpoint(&signer, ORIGIN, size, &tree.root(size).expect("root"))
            .expect("sign");
        let dir = tempfile::tempdir().expect("tmp");
        let write = |rel: &str, bytes: &[u8]| {
            let p = dir.path().join(rel);
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            std::fs::write(p, bytes).expect("write");
        };
        write(bundle::CASE, b"c1\n");
        write(bundle::CHECKPOINT, &cp);
        write(bundle::VERIFIER_KEY, format!("{vkey}\n").as_bytes());
        for i in [0u64, 2] {
            let line = lines.get(i as usize).expect("line");
            let proof = TlogProof {
                index: i,
                hashes: tree.inclusion_proof(i, size).expect("proof"),
                checkpoint: cp.clone(),
                extra: None,
            };
            write(&format!("{}/{i}.json", bundle::ENTRIES), line);
            write(
                &format!("{}/{i}.tlog-proof", bundle::PROOFS),
                &proof.to_bytes(),
            );
        }
        let r = verify_bundle(dir.path(), Some(&vkey)).expect("verify");
        assert!(r.ok() && r.warnings.is_empty(), "{:?}", r.problems);
        assert_eq!((r.entries, r.latest_size), (2, 3));
        let r = verify_bundle(dir.path(), None).expect("verify");
        assert!(r.ok() && !r.warnings.is_empty(), "unpinned: {:?}", r);

        let refused = |why: &str| {
            let r = verify_bundle(dir.path(), Some(&vkey)).expect("verify");
            assert!(
                r.problems.iter().any(|p| p.contains(why)),
                "{why}: {:?}",
                r.problems
            );
        };
        let (_, other) = key();
        let r = verify_bundle(dir.path(), Some(&other)).expect("verify");
        assert!(!r.ok(), "a foreign key verified it");
        let first = dir.path().join(format!("{}/0.json", bundle::ENTRIES));
        let original = std::fs::read(&first).expect("read");
        let edited = String::from_utf8(original.clone())
            .expect("utf8")
            .replacen("copied", "accessed", 1);
        std::fs::write(&first, edited).expect("write");
        refused("is not in the signed log");
        std::fs::remove_file(&first).expect("rm");
        refused("earlier entries are missing");
        std::fs::write(&first, &original).expect("write");
        let last = dir.path().join(format!("{}/2.json", bundle::ENTRIES));
        std::fs::remove_file(&last).expect("rm");
        refused("does not end with the signed record of its export");
    }
}
