//! The custody ledger: an append-only transparency log of every artefact and
//! every action, in public formats so that verifiers we did not write work on it.
//!
//! The formats and their verification are the `custody-ledger` crate (which
//! auditors build on its own, with its `custody-verify` binary), re-exported
//! here so that every `custody::ledger::…` path keeps working:
//!
//! - [`entry`]: entries as RFC 8785 canonical JSON, one per line.
//! - [`merkle`]: the RFC 6962 / 9162 tree, proofs and their verification.
//! - [`note`]: Ed25519 keys and C2SP signed-note checkpoints.
//! - [`proof`]: C2SP tlog-proof documents.
//! - [`scan`]: a fast reader of an entry's top-level fields.
//! - [`verify`]: whole-log and bundle verification, offline.
//!
//! This module is the one writer ([`Ledger`], shared by a process's tasks as
//! [`SharedLedger`], used through a [`Recorder`]), and:
//!
//!
//! On disk (`<custody home>/ledger/`):
//!
//! ```text
//! entries.jsonl          one canonical JSON entry per line
//! checkpoint             the latest signed checkpoint
//! checkpoints/<size>     every checkpoint ever signed, by tree size (12 digits)
//! ledger.json            origin and the initial verifier key
//! lock                   held by the one writer
//! ```
//! The signing key lives in `<custody home>/keys/ledger.key` (mode 0600).
//!
//! Durability: a batch of entries is appended and fdatasync'd; the new root is
//! recomputed from what was written, checked consistent with the last signed
//! checkpoint, signed, and the checkpoint written atomically (temporary file,
//! fsync, rename, fsync of the directory). Only then is the batch acknowledged.

#[cfg(test)]
mod tests;

pub use custody_ledger::{
    CHECKPOINT_FILE, CHECKPOINTS_DIR, ENTRIES_FILE, LedgerError, LedgerPaths, META_FILE, Meta,
    Rotation, checkpoint_name, claimed_size, retired_key, rotated_key,
};
pub use custody_ledger::{entry, merkle, note, proof, scan, verify};

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::Deserialize;

use crate::clock::{Clock, rfc3339};
use crate::ids::CaseId;
use entry::{Action, Entry, EntryDraft};
use merkle::{Hash, Tree, leaf_hash};
use note::{NoteError, SignedCheckpoint};

const LOCK_FILE: &str = "lock";

/// A new ledger's origin (and key name): this host and a random id, so two
/// ledgers never share one.
pub fn default_origin() -> String {
    let host: String = crate::machine::hostname()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("custody/{host}/{}", id.get(..8).unwrap_or("0"))
}

fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> LedgerError {
    let path = path.to_path_buf();
    move |source| LedgerError::Io { op, path, source }
}

/// Writes `bytes` to `path` atomically: temporary file, fsync, rename, fsync of the directory.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), LedgerError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        uuid::Uuid::new_v4().simple()
    ));
    let mut f = crate::private_fs::options()
        .create_new(true)
        .open(&tmp)
        .map_err(io("cannot create", &tmp))?;
    let written = f.write_all(bytes).and_then(|()| f.sync_all());
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(io("cannot write", &tmp)(e));
    }
    std::fs::rename(&tmp, path).map_err(io("cannot rename into place", path))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("cannot fsync", dir))
}

/// The few fields read from every entry when a ledger opens.
#[derive(Deserialize)]
struct Skim {
    #[serde(default)]
    case: Option<CaseId>,
    action: Action,
    #[serde(default)]
    detail: Option<serde_json::Value>,
}

/// The keys in force, as `(first checkpoint size signed by it, key)`, for
/// the rotations covered by checkpoints up to `size`. A rotation at index
/// `i` takes effect only once the checkpoint of size `i + 1`, signed by the
/// key it retires, covers it: someone without that key cannot name a key of
/// their own. Reads that one checkpoint per rotation.
pub fn key_chain(
    paths: &LedgerPaths,
    meta: &Meta,
    rotations: &[Rotation],
    size: u64,
) -> Result<Vec<(u64, String)>, LedgerError> {
    let mut keys = vec![(0, meta.initial_verifier_key.clone())];
    for r in rotations.iter().filter(|r| r.index < size) {
        let cur = keys.last().map(|(_, k)| k.clone()).unwrap_or_default();
        let uncovered = |why: String| {
            LedgerError::HistoryMismatch(format!(
                "the key rotation at entry {} is not covered by a checkpoint of size {} signed by the key it retires: {why}",
                r.index,
                r.index + 1
            ))
        };
        if r.old.as_ref().is_some_and(|o| *o != cur) {
            return Err(uncovered(
                "it names another key as the one it retires".into(),
            ));
        }
        let path = paths.checkpoints().join(checkpoint_name(r.index + 1));
        let bytes = std::fs::read(&path).map_err(|e| uncovered(e.to_string()))?;
        let cp = note::open_checkpoint(&bytes, &cur, &meta.origin)
            .map_err(|e| uncovered(e.to_string()))?;
        if cp.size != r.index + 1 {
            return Err(uncovered(format!(
                "{} is for size {}",
                path.display(),
                cp.size
            )));
        }
        keys.push((r.index + 2, r.new.clone()));
    }
    Ok(keys)
}

/// An entry about the ledger itself (creation, key rotation), on the actor's own request.
fn ledger_entry(actor: &entry::Actor, action: Action, detail: serde_json::Value) -> EntryDraft {
    EntryDraft {
        case: None,
        action,
        actor: actor.clone(),
        reason: entry::Reason::Manual {
            operator: actor.name.clone(),
            note: None,
        },
        evidence: None,
        place: None,
        detail: Some(detail),
    }
}

/// `pending`: the batch being appended past the last checkpoint, MACed under
/// a key derived from the signing key. Crash recovery commits a tail only
/// when this record vouches for it byte for byte; anything else past the
/// checkpoint was not written by this ledger's key holder and is set aside.
const PENDING_FILE: &str = "pending";
/// Where tails that no pending record vouches for are moved, and recorded.
pub const SET_ASIDE_DIR: &str = "set-aside";

fn pending_mac(mac_key: &[u8; 32], from: u64, size: u64, bytes: &[u8]) -> String {
    use hmac::Mac as _;
    use sha2::Digest as _;
    let digest = hex::encode(sha2::Sha256::digest(bytes));
    let body = format!("v1 {from} {size} {} {digest}", bytes.len());
    let mut mac = match hmac::Hmac::<sha2::Sha256>::new_from_slice(mac_key) {
        Ok(m) => m,
        // HMAC takes keys of any length; this arm is never taken.
        Err(_) => return String::new(),
    };
    mac.update(body.as_bytes());
    format!("{body} {}\n", hex::encode(mac.finalize().into_bytes()))
}

/// Whether `record` vouches for `bytes` appended at offset `from` to a log of `size` entries.
fn pending_vouches(mac_key: &[u8; 32], record: &[u8], from: u64, size: u64, bytes: &[u8]) -> bool {
    use subtle::ConstantTimeEq as _;
    let expected = pending_mac(mac_key, from, size, bytes);
    !bytes.is_empty() && bool::from(expected.as_bytes().ct_eq(record))
}

/// Creates a directory (and its parents) readable by the owner only, each
/// new one fsynced in its parent.
pub(crate) fn create_private_dir(dir: &Path) -> Result<(), LedgerError> {
    crate::private_fs::create_dir_all(dir).map_err(io("cannot create", dir))
}

fn fsync_dir(dir: &Path) -> Result<(), LedgerError> {
    crate::private_fs::fsync_dir(dir).map_err(io("cannot fsync", dir))
}

fn private_file(path: &Path) -> std::io::Result<File> {
    crate::private_fs::options()
        .create(true)
        .truncate(false)
        .open(path)
}

/// An open, locked ledger: the one writer.
pub struct Ledger {
    paths: LedgerPaths,
    meta: Meta,
    /// Held while open; released only to reopen in place.
    lock: Option<File>,
    entries: File,
    pending: File,
    /// Bytes of `entries.jsonl` that hold committed entries.
    committed_len: u64,
    tree: Tree,
    last: SignedCheckpoint,
    key: note::LoadedKey,
    /// Keys in force: `(first checkpoint size signed by it, key)`.
    keys: Vec<(u64, String)>,
    /// Every committed key rotation.
    rotations: Vec<Rotation>,
    case_last: HashMap<CaseId, u64>,
    clock: Arc<dyn Clock>,
    poisoned: bool,
    /// Why the last append failed, until one succeeds.
    last_failure: Option<String>,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger")
            .field("dir", &self.paths.dir)
            .field("origin", &self.meta.origin)
            .field("size", &self.tree.size())
            .finish_non_exhaustive()
    }
}

/// What an acknowledged batch got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// Index of each entry, in the order given.
    pub indexes: Vec<u64>,
    /// The checkpoint that covers them.
    pub checkpoint_size: u64,
}

fn lock(paths: &LedgerPaths) -> Result<File, LedgerError> {
    let p = paths.dir.join(LOCK_FILE);
    let f = private_file(&p).map_err(io("cannot open", &p))?;
    match f.try_lock() {
        Ok(()) => Ok(f),
        Err(std::fs::TryLockError::WouldBlock) => Err(LedgerError::Locked {
            dir: paths.dir.clone(),
        }),
        Err(std::fs::TryLockError::Error(e)) => Err(io("cannot lock", &p)(e)),
    }
}

/// Where a new signing key waits during a rotation.
fn key_new(paths: &LedgerPaths) -> PathBuf {
    paths.key.with_extension("key.new")
}

/// Where replaced and abandoned signing keys are kept.
fn retired_dir(paths: &LedgerPaths) -> PathBuf {
    paths.key.with_file_name("retired")
}

/// Moves `tail` (lines past the last checkpoint that no pending record
/// vouches for) to `set-aside/`, and returns the detail of the entry that records it.
fn set_aside_tail(paths: &LedgerPaths, tail: &[u8]) -> Result<serde_json::Value, LedgerError> {
    use sha2::Digest as _;
    let dir = paths.dir.join(SET_ASIDE_DIR);
    create_private_dir(&dir)?;
    let digest = hex::encode(sha2::Sha256::digest(tail));
    let name = format!("{}.jsonl", digest);
    write_atomic(&dir.join(&name), tail)?;
    Ok(serde_json::json!({
        "file": format!("{SET_ASIDE_DIR}/{name}"),
        "bytes": tail.len(),
        "sha256": digest,
        "lines": memchr::memchr_iter(b'\n', tail).count(),
        "reason": "lines past the last checkpoint that no pending record of this ledger vouches for",
    }))
}

/// Moves a key file into `retired/` under its key id, never overwriting one there.
fn retire_key(paths: &LedgerPaths, path: &Path, vkey: &str, what: &str) -> Result<(), LedgerError> {
    let retired = retired_dir(paths);
    create_private_dir(&retired)?;
    let id = vkey.split('+').nth(1).unwrap_or("unknown");
    let mut dest = retired.join(format!("{what}-{id}.key"));
    if dest.exists() {
        dest = retired.join(format!("{what}-{id}-{}.key", uuid::Uuid::new_v4().simple()));
    }
    std::fs::rename(path, &dest).map_err(io("cannot retire", path))?;
    fsync_dir(&retired)
}

/// The signing key that answers to `expected`. After a crash inside a key
/// rotation the new key may still be at `ledger.key.new`: it is installed
/// (the old one retired, both directories fsynced) when it is the one the
/// log says is in force. Any other key is refused, never used to sign.
fn key_in_force(paths: &LedgerPaths, expected: &str) -> Result<note::LoadedKey, LedgerError> {
    let current = note::load_key(&paths.key);
    if let Ok(k) = &current
        && k.vkey == expected
    {
        return Ok(k.clone());
    }
    let new_path = key_new(paths);
    if let Ok(k) = note::load_key(&new_path)
        && k.vkey == expected
    {
        if let Ok(old) = &current {
            retire_key(paths, &paths.key, &old.vkey, "ledger")?;
        }
        std::fs::rename(&new_path, &paths.key).map_err(io("cannot install", &paths.key))?;
        fsync_dir(paths.key.parent().unwrap_or(Path::new(".")))?;
        tracing::warn!(key = %expected, "finished a key rotation that a crash interrupted");
        return Ok(k);
    }
    Err(LedgerError::WrongKey {
        path: paths.key.clone(),
        expected: expected.to_owned(),
        found: match current {
            Ok(k) => k.vkey,
            Err(e) => e.to_string(),
        },
    })
}

impl Ledger {
    /// Creates a new ledger with a new signing key, and records its creation.
    pub fn init(
        paths: &LedgerPaths,
        origin: &str,
        clock: Arc<dyn Clock>,
        actor: entry::Actor,
    ) -> Result<Self, LedgerError> {
        if paths.exists() {
            return Err(LedgerError::AlreadyInitialised {
                dir: paths.dir.clone(),
            });
        }
        create_private_dir(&paths.checkpoints())?;
        if let Some(keys) = paths.key.parent() {
            create_private_dir(keys)?;
        }
        let vkey = note::create_key(&paths.key, origin)?;
        fsync_dir(paths.key.parent().unwrap_or(Path::new(".")))?;
        let meta = Meta {
            schema: 1,
            origin: origin.to_owned(),
            initial_verifier_key: vkey.clone(),
        };
        let signer = note::load_signer(&paths.key)?;
        private_file(&paths.entries())
            .and_then(|f| f.set_len(0))
            .map_err(io("cannot create", &paths.entries()))?;
        let empty = note::sign_checkpoint(&signer, origin, 0, &merkle::empty_root())?;
        write_atomic(&paths.checkpoints().join(checkpoint_name(0)), &empty)?;
        write_atomic(&paths.checkpoint(), &empty)?;
        // Metadata last: a ledger half-created by a crash is not mistaken for a real one.
        let meta_bytes = serde_json::to_vec_pretty(&meta)
            .map_err(|_| LedgerError::BadMeta { path: paths.meta() })?;
        write_atomic(&paths.meta(), &meta_bytes)?;
        let mut ledger = Self::open(paths, clock)?;
        let detail = serde_json::json!({ "origin": origin, "verifier_key": vkey });
        ledger.append(vec![ledger_entry(
            &actor,
            Action::LedgerInitialised,
            detail,
        )])?;
        Ok(ledger)
    }

    /// Opens an existing ledger for writing. Recovers from a crash: a torn
    /// last line is cut off; complete entries past the last checkpoint are
    /// committed when the pending record (MACed under the signing key)
    /// vouches for them, and otherwise moved to `set-aside/` and recorded in
    /// a signed entry; signed history that does not match its checkpoint is
    /// an error.
    pub fn open(paths: &LedgerPaths, clock: Arc<dyn Clock>) -> Result<Self, LedgerError> {
        if !paths.exists() {
            return Err(LedgerError::NotInitialised {
                dir: paths.dir.clone(),
            });
        }
        let lock = lock(paths)?;
        let meta: Meta = std::fs::read(paths.meta())
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or(LedgerError::BadMeta { path: paths.meta() })?;
        let mut entries = OpenOptions::new()
            .read(true)
            .append(true)
            .open(paths.entries())
            .map_err(io("cannot open", &paths.entries()))?;
        let mut data = Vec::new();
        entries
            .seek(SeekFrom::Start(0))
            .map_err(io("cannot read", &paths.entries()))?;
        entries
            .read_to_end(&mut data)
            .map_err(io("cannot read", &paths.entries()))?;
        let pending_path = paths.dir.join(PENDING_FILE);
        let pending = private_file(&pending_path).map_err(io("cannot open", &pending_path))?;
        let latest =
            std::fs::read(paths.checkpoint()).map_err(io("cannot read", &paths.checkpoint()))?;
        let signed = claimed_size(&latest).ok_or(NoteError::Malformed)?;
        let (lines, _) = verify::split_lines(&data);
        if signed > lines.len() as u64 {
            return Err(LedgerError::HistoryMismatch(format!(
                "the checkpoint covers {signed} entries but only {} are intact in {}",
                lines.len(),
                paths.entries().display()
            )));
        }

        let mut tree = Tree::new();
        let mut case_last = HashMap::new();
        let mut rotations = Vec::new();
        let mut offset = 0u64;
        let read_line = |tree: &mut Tree,
                         case_last: &mut HashMap<CaseId, u64>,
                         rotations: &mut Vec<Rotation>,
                         line: &[u8]|
         -> Result<bool, LedgerError> {
            let index = tree.size();
            let Ok(skim) = serde_json::from_slice::<Skim>(line) else {
                return Ok(false);
            };
            tree.push_leaf_hash(leaf_hash(line))?;
            if let Some(c) = skim.case {
                case_last.insert(c, index);
            }
            if skim.action == Action::KeyRotated
                && let Some(new) = rotated_key(skim.detail.as_ref())
            {
                let old = retired_key(skim.detail.as_ref());
                rotations.push(Rotation { index, old, new });
            }
            Ok(true)
        };
        for (i, line) in lines.iter().take(signed as usize).enumerate() {
            if !read_line(&mut tree, &mut case_last, &mut rotations, line)? {
                return Err(LedgerError::HistoryMismatch(format!(
                    "signed entry {i} of {} is not an entry",
                    paths.entries().display()
                )));
            }
            offset += line.len() as u64 + 1;
        }
        let keys = key_chain(paths, &meta, &rotations, signed)?;
        let last = verify::open_with_chain(&latest, &keys, &meta.origin)?;
        if tree.root(last.size)? != last.root {
            return Err(LedgerError::HistoryMismatch(format!(
                "the first {} entries do not hash to the signed root",
                last.size
            )));
        }
        let key = key_in_force(paths, verify::key_for(&keys, last.size + 1))?;

        // Past the checkpoint: complete lines this ledger wrote and vouched
        // for are kept (and committed below); anything else is not ours.
        let tail = data.get(offset as usize..).unwrap_or_default();
        let complete = memchr::memrchr(b'\n', tail).map_or(0, |nl| nl + 1);
        let ours = tail.get(..complete).unwrap_or_default();
        let mut record = Vec::new();
        let _ = (&pending).read_to_end(&mut record);
        let vouched = pending_vouches(&key.mac_key, &record, offset, last.size, ours);
        let mut set_aside = None;
        let mut valid_len = offset;
        if vouched {
            for line in verify::split_lines(ours).0 {
                if !read_line(&mut tree, &mut case_last, &mut rotations, line)? {
                    break;
                }
                valid_len += line.len() as u64 + 1;
            }
        }
        if valid_len < data.len() as u64 {
            let cut = tail
                .get((valid_len - offset) as usize..)
                .unwrap_or_default();
            if valid_len - offset < ours.len() as u64 || !vouched && !ours.is_empty() {
                set_aside = Some(set_aside_tail(paths, cut)?);
            } else {
                tracing::warn!(cut = cut.len(), "cutting a torn tail off the ledger");
            }
            entries
                .set_len(valid_len)
                .map_err(io("cannot truncate", &paths.entries()))?;
            entries
                .sync_data()
                .map_err(io("cannot fsync", &paths.entries()))?;
        }
        let mut ledger = Self {
            paths: paths.clone(),
            meta,
            lock: Some(lock),
            entries,
            pending,
            committed_len: valid_len,
            tree,
            last,
            key,
            keys,
            rotations,
            case_last,
            clock,
            poisoned: false,
            last_failure: None,
        };
        if ledger.tree.size() > ledger.last.size {
            // Entries this ledger wrote before a crash, never acknowledged: commit them now.
            tracing::warn!(
                entries = ledger.tree.size() - ledger.last.size,
                "committing entries left unsigned by a crash"
            );
            ledger.commit()?;
        }
        if let Some(detail) = set_aside {
            tracing::warn!(%detail, "set aside lines past the last checkpoint that this ledger did not write");
            let actor = entry::Actor {
                name: "custody".into(),
                role: "ledger".into(),
                host: crate::machine::hostname(),
                tool: crate::TOOL_NAME.to_owned(),
                tool_version: crate::TOOL_VERSION.to_owned(),
            };
            ledger.append(vec![ledger_entry(&actor, Action::TailSetAside, detail)])?;
        }
        Ok(ledger)
    }

    /// Reopens the ledger in place after a failed commit (the state on disk
    /// recovered, as after a crash). The failed batch was answered with an
    /// error, so it is cut back rather than committed later behind its
    /// callers' backs, unless a checkpoint covering it did reach the disk.
    fn reopen(&mut self) -> Result<(), LedgerError> {
        let on_disk = std::fs::read(self.paths.checkpoint())
            .ok()
            .and_then(|n| claimed_size(&n));
        if on_disk.is_some_and(|s| s <= self.last.size) {
            for size in self.last.size + 1..=self.tree.size() {
                let _ = std::fs::remove_file(self.paths.checkpoints().join(checkpoint_name(size)));
            }
            self.entries
                .set_len(self.committed_len)
                .and_then(|()| self.entries.sync_data())
                .map_err(io("cannot truncate", &self.paths.entries()))?;
        }
        self.lock = None;
        match Self::open(&self.paths, self.clock.clone()) {
            Ok(fresh) => {
                *self = fresh;
                Ok(())
            }
            Err(e) => {
                self.lock = lock(&self.paths).ok();
                Err(e)
            }
        }
    }

    /// Whether the ledger can commit now: a poisoned ledger is reopened, and
    /// after a failed append the disk is probed with a small synced write.
    pub fn ready(&mut self) -> Result<(), LedgerError> {
        if self.poisoned {
            self.reopen()?;
        }
        if self.last_failure.is_some() {
            let probe = self.paths.checkpoints().join(".ready-probe");
            write_atomic(&probe, &[0u8; 4096])?;
            let _ = std::fs::remove_file(&probe);
            self.last_failure = None;
        }
        Ok(())
    }

    /// Why the last append failed, until an append or [`Ledger::ready`] succeeds.
    pub fn last_failure(&self) -> Option<&str> {
        self.last_failure.as_deref()
    }

    pub fn size(&self) -> u64 {
        self.tree.size()
    }

    pub fn origin(&self) -> &str {
        &self.meta.origin
    }

    pub fn meta(&self) -> &Meta {
        &self.meta
    }

    pub fn paths(&self) -> &LedgerPaths {
        &self.paths
    }

    pub fn verifier_key(&self) -> &str {
        &self.key.vkey
    }

    pub fn latest_checkpoint(&self) -> &SignedCheckpoint {
        &self.last
    }

    pub fn tree(&self) -> &Tree {
        &self.tree
    }

    /// Appends a batch of entries as one group commit and returns once they
    /// are durable and covered by a signed checkpoint. A ledger poisoned by
    /// an earlier failure is reopened first.
    pub fn append(&mut self, drafts: Vec<EntryDraft>) -> Result<Receipt, LedgerError> {
        if self.poisoned {
            self.reopen()?;
        }
        let result = self.append_batch(drafts);
        self.last_failure = result.as_ref().err().map(|e| crate::error_chain(e));
        result
    }

    fn append_batch(&mut self, drafts: Vec<EntryDraft>) -> Result<Receipt, LedgerError> {
        if drafts.is_empty() {
            return Ok(Receipt {
                indexes: Vec::new(),
                checkpoint_size: self.last.size,
            });
        }
        // A rotation must be covered by a checkpoint of its own (size index + 1).
        if drafts.len() > 1 && drafts.iter().any(|d| d.action == Action::KeyRotated) {
            return Err(LedgerError::RefuseToSign(
                "a key rotation is committed on its own".into(),
            ));
        }
        let start = self.tree.size();
        let mut buf = Vec::with_capacity(drafts.len() * 512);
        let mut leaves = Vec::with_capacity(drafts.len());
        let mut case_last = HashMap::new();
        let mut rotation = None;
        for (i, d) in drafts.into_iter().enumerate() {
            let index = start + i as u64;
            let prev = d
                .case
                .as_ref()
                .and_then(|c| case_last.get(c).or_else(|| self.case_last.get(c)).copied());
            let e = Entry {
                v: entry::ENTRY_SCHEMA,
                time: rfc3339(self.clock.now()),
                case: d.case,
                prev,
                action: d.action,
                actor: d.actor,
                reason: d.reason,
                evidence: d.evidence,
                place: d.place,
                detail: d.detail,
                nonce: entry::random_nonce(),
            };
            let bytes = e.to_canonical()?;
            leaves.push(leaf_hash(&bytes));
            buf.extend_from_slice(&bytes);
            buf.push(b'\n');
            if e.action == Action::KeyRotated
                && let Some(new) = rotated_key(e.detail.as_ref())
            {
                let old = retired_key(e.detail.as_ref());
                rotation = Some(Rotation { index, old, new });
            }
            if let Some(c) = e.case {
                case_last.insert(c, index);
            }
        }
        // From here a failure leaves memory and disk out of step: poison until reopened.
        self.poisoned = true;
        let path = self.paths.entries();
        let pending_path = self.paths.dir.join(PENDING_FILE);
        // The record that lets crash recovery tell this batch from lines appended by others.
        let record = pending_mac(&self.key.mac_key, self.committed_len, self.last.size, &buf);
        self.pending
            .set_len(0)
            .and_then(|()| self.pending.write_all_at(record.as_bytes(), 0))
            .map_err(io("cannot write", &pending_path))?;
        self.entries
            .write_all(&buf)
            .map_err(io("cannot append to", &path))?;
        self.entries
            .sync_data()
            .map_err(io("cannot fdatasync", &path))?;
        // `pending` is not synced: it only lets recovery keep a batch that was
        // never acknowledged (acknowledgement waits for the checkpoint). After
        // a process crash the page cache still holds it; after a power cut in
        // this window the batch may be set aside instead, which loses nothing
        // anyone was told was recorded, and saves an fsync per commit.
        // Recompute the new leaves from what is on disk, not from memory.
        let mut back = vec![0u8; buf.len()];
        self.entries
            .read_exact_at(&mut back, self.committed_len)
            .map_err(io("cannot read back", &path))?;
        for (line, expected) in back.split(|&b| b == b'\n').zip(&leaves) {
            let h = leaf_hash(line);
            if h != *expected {
                return Err(LedgerError::RefuseToSign(
                    "an appended entry reads back differently from what was written".into(),
                ));
            }
            self.tree.push_leaf_hash(h)?;
        }
        self.rotations.extend(rotation);
        self.commit()?;
        self.committed_len += buf.len() as u64;
        self.case_last.extend(case_last);
        self.poisoned = false;
        Ok(Receipt {
            indexes: (start..self.tree.size()).collect(),
            checkpoint_size: self.last.size,
        })
    }

    /// Signs a checkpoint for the whole tree, after checking it extends the
    /// last one; a rotation it covers then puts the new key in force.
    fn commit(&mut self) -> Result<(), LedgerError> {
        let size = self.tree.size();
        if size <= self.last.size {
            return Err(LedgerError::RefuseToSign(format!(
                "tree size {size} does not grow past {}",
                self.last.size
            )));
        }
        if self.tree.root(self.last.size)? != self.last.root {
            return Err(LedgerError::RefuseToSign(
                "stored entries no longer hash to the last signed root".into(),
            ));
        }
        if self.key.vkey != verify::key_for(&self.keys, size) {
            return Err(LedgerError::RefuseToSign(format!(
                "the loaded key {} is not the one in force at size {size}",
                self.key.vkey
            )));
        }
        let root = self.tree.root(size)?;
        if self.last.size > 0 {
            let p = self.tree.consistency_proof(self.last.size, size)?;
            merkle::verify_consistency(self.last.size, size, &p, &self.last.root, &root).map_err(
                |e| {
                    LedgerError::RefuseToSign(format!(
                        "new tree is not consistent with the last checkpoint: {e}"
                    ))
                },
            )?;
        }
        let note = note::sign_checkpoint(&self.key.signer, &self.meta.origin, size, &root)?;
        write_atomic(&self.paths.checkpoints().join(checkpoint_name(size)), &note)?;
        write_atomic(&self.paths.checkpoint(), &note)?;
        self.last = SignedCheckpoint {
            origin: self.meta.origin.clone(),
            size,
            root,
            note,
        };
        if let Some(r) = self.rotations.last().filter(|r| r.index + 1 == size) {
            self.keys.push((size + 1, r.new.clone()));
            let new = r.new.clone();
            self.key = key_in_force(&self.paths, &new)?;
        }
        Ok(())
    }

    /// Rotates the signing key: an entry naming the new verifier key is
    /// committed alone under the old key, which signs the checkpoint that
    /// covers it; the new key signs from the next checkpoint on. Crash-safe:
    /// the new key is written (and its directory fsynced) before the entry,
    /// and [`Ledger::open`] finishes an interrupted installation.
    pub fn rotate_key(&mut self, actor: entry::Actor) -> Result<String, LedgerError> {
        if self.poisoned {
            self.reopen()?;
        }
        let new_path = key_new(&self.paths);
        if let Ok(stale) = note::load_key(&new_path) {
            // Left by an attempt whose entry was never committed (open would
            // have installed it otherwise): kept, never deleted.
            retire_key(&self.paths, &new_path, &stale.vkey, "abandoned")?;
        } else if new_path.exists() {
            retire_key(&self.paths, &new_path, "unreadable+unknown", "abandoned")?;
        }
        let new_vkey = note::create_key(&new_path, &self.meta.origin)?;
        fsync_dir(self.paths.key.parent().unwrap_or(Path::new(".")))?;
        let detail =
            serde_json::json!({ "old_verifier_key": self.key.vkey, "new_verifier_key": new_vkey });
        self.append(vec![ledger_entry(&actor, Action::KeyRotated, detail)])?;
        if self.key.vkey != new_vkey {
            return Err(LedgerError::RefuseToSign(
                "the rotation was committed but the new key is not in force".into(),
            ));
        }
        Ok(new_vkey)
    }

    /// Keys in force: `(first checkpoint size signed by it, key)`.
    pub fn key_history(&self) -> &[(u64, String)] {
        &self.keys
    }

    /// Every committed key rotation, oldest first.
    pub fn rotations(&self) -> &[Rotation] {
        &self.rotations
    }

    /// A tlog-proof of entry `index` against the latest checkpoint.
    pub fn prove(&self, index: u64) -> Result<proof::TlogProof, LedgerError> {
        let hashes = self.tree.inclusion_proof(index, self.last.size)?;
        Ok(proof::TlogProof {
            index,
            hashes,
            checkpoint: self.last.note.clone(),
            extra: None,
        })
    }

    /// Root hash of the tree of `size` entries.
    pub fn root(&self, size: u64) -> Result<Hash, LedgerError> {
        Ok(self.tree.root(size)?)
    }
}

/// Every complete line of an entries file (without its newline).
pub fn read_entries(path: &Path) -> Result<Vec<Vec<u8>>, LedgerError> {
    let data = std::fs::read(path).map_err(io("cannot read", path))?;
    // The text after the last newline is not a complete line.
    Ok(verify::split_lines(&data)
        .0
        .into_iter()
        .map(<[u8]>::to_vec)
        .collect())
}

/// A ledger shared by the tasks of one process. Appends that arrive while
/// a commit is in progress are committed together by the next one (group
/// commit), so concurrent jobs share fsyncs and checkpoints instead of
/// queueing for one each.
#[derive(Debug, Clone)]
pub struct SharedLedger(Arc<SharedInner>);

#[derive(Debug)]
struct SharedInner {
    ledger: Mutex<Ledger>,
    pending: Mutex<Vec<Waiting>>,
}

/// Where a committer leaves a waiting append's answer.
type Slot = Arc<Mutex<Option<Result<Receipt, LedgerError>>>>;

#[derive(Debug)]
struct Waiting {
    drafts: Vec<EntryDraft>,
    slot: Slot,
}

fn locked<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic mid-commit poisons the Ledger itself (its own flag), which
    // is what guards the state on disk; the mutex's poison adds nothing.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Runs `f`, which blocks on fsync, without stalling the async workers:
/// on a multi-threaded runtime the worker hands its other tasks on first.
fn off_the_runtime<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

impl SharedLedger {
    pub fn new(l: Ledger) -> Self {
        Self(Arc::new(SharedInner {
            ledger: Mutex::new(l),
            pending: Mutex::new(Vec::new()),
        }))
    }

    /// Appends `drafts` as one unit, durable and signed on return, and
    /// possibly in the same commit as other tasks' appends.
    pub fn append(&self, drafts: Vec<EntryDraft>) -> Result<Receipt, LedgerError> {
        off_the_runtime(|| {
            let slot: Slot = Arc::new(Mutex::new(None));
            locked(&self.0.pending).push(Waiting {
                drafts,
                slot: slot.clone(),
            });
            let mut ledger = locked(&self.0.ledger);
            // Answers are left while the ledger is held, so a filled slot
            // is seen here; an empty one means ours is still pending.
            if let Some(answer) = locked(&slot).take() {
                return answer;
            }
            let batch = std::mem::take(&mut *locked(&self.0.pending));
            commit_batch(&mut ledger, batch, &slot)
        })
    }

    pub fn with<T>(&self, f: impl FnOnce(&mut Ledger) -> T) -> T {
        off_the_runtime(|| f(&mut locked(&self.0.ledger)))
    }

    /// Whether the ledger can commit now (see [`Ledger::ready`]): reopens a
    /// poisoned ledger, and probes the disk after a failed append.
    pub fn ready(&self) -> Result<(), LedgerError> {
        self.with(Ledger::ready)
    }
}

/// Commits every waiting append as one batch, leaves each waiter its share
/// of the receipt (or why the commit failed), and returns `own`'s.
fn commit_batch(
    ledger: &mut Ledger,
    batch: Vec<Waiting>,
    own: &Slot,
) -> Result<Receipt, LedgerError> {
    let counts: Vec<usize> = batch.iter().map(|w| w.drafts.len()).collect();
    let mut slots = Vec::with_capacity(batch.len());
    let mut drafts = Vec::with_capacity(counts.iter().sum());
    for w in batch {
        drafts.extend(w.drafts);
        slots.push(w.slot);
    }
    let result = ledger.append(drafts);
    let mut mine = None;
    let mut next = 0;
    for (slot, n) in slots.iter().zip(counts) {
        let answer = match &result {
            Ok(r) => Ok(Receipt {
                indexes: r.indexes.iter().skip(next).take(n).copied().collect(),
                checkpoint_size: r.checkpoint_size,
            }),
            Err(e) => Err(LedgerError::GroupCommit {
                message: e.to_string(),
                commit_failure: e.is_commit_failure(),
            }),
        };
        next += n;
        if Arc::ptr_eq(slot, own) {
            mine = Some(answer);
        } else {
            *locked(slot) = Some(answer);
        }
    }
    match (result, mine) {
        (Err(e), _) => Err(e),
        (Ok(_), Some(answer)) => answer,
        // Unreachable: the caller's append is in every batch it commits.
        (Ok(_), None) => Err(LedgerError::GroupCommit {
            message: "the committed batch did not hold this append".into(),
            commit_failure: false,
        }),
    }
}

/// Records actions on behalf of one actor and reason: what collectors and
/// commands hold to append their entries.
#[derive(Debug, Clone)]
pub struct Recorder {
    pub ledger: SharedLedger,
    pub actor: entry::Actor,
    pub reason: entry::Reason,
}

impl Recorder {
    pub fn record(
        &self,
        case: Option<&CaseId>,
        action: Action,
        evidence: Option<entry::EvidenceRef>,
        place: Option<entry::Place>,
        detail: Option<serde_json::Value>,
    ) -> Result<Receipt, LedgerError> {
        self.ledger.append(vec![EntryDraft {
            case: case.cloned(),
            action,
            actor: self.actor.clone(),
            reason: self.reason.clone(),
            evidence,
            place,
            detail,
        }])
    }

    /// The entries with `action` about `resource` (their place), each with
    /// its index, oldest first.
    pub fn resource_entries(
        &self,
        action: Action,
        resource: &str,
    ) -> Result<Vec<(u64, Entry)>, LedgerError> {
        let path = self.ledger.with(|l| l.paths.entries());
        let mut out = Vec::new();
        for (i, line) in read_entries(&path)?.into_iter().enumerate() {
            let index = i as u64;
            let e =
                Entry::parse(&line).map_err(|source| LedgerError::BadEntry { index, source })?;
            if e.action == action && e.place.as_ref().is_some_and(|p| p.resource == resource) {
                out.push((index, e));
            }
        }
        Ok(out)
    }

    /// The entries of one case, each with its index, read from the ledger's file.
    pub fn case_entries(&self, case: &CaseId) -> Result<Vec<(u64, Vec<u8>, Entry)>, LedgerError> {
        case_entries_in(&self.ledger.with(|l| l.paths.entries()), case)
    }
}

/// The entries of `case` in the entries file at `path`, with their index
/// and bytes, read without opening the ledger (no lock taken: a reader
/// beside the process that writes it sees every complete line).
pub fn case_entries_in(
    path: &Path,
    case: &CaseId,
) -> Result<Vec<(u64, Vec<u8>, Entry)>, LedgerError> {
    let mut out = Vec::new();
    for (i, line) in read_entries(path)?.into_iter().enumerate() {
        let index = i as u64;
        // The positional reader skips other cases' entries cheaply; ours get the full parse.
        if scan::scan(&line).is_ok_and(|f| f.case.is_some_and(|c| c != case.as_str())) {
            continue;
        }
        let e = Entry::parse(&line).map_err(|source| LedgerError::BadEntry { index, source })?;
        if e.case.as_ref() == Some(case) {
            out.push((index, line, e));
        }
    }
    Ok(out)
}
