//! The custody ledger: an append-only transparency log of every artefact and
//! every action, in public formats so that verifiers we did not write work on it.
//!
//! - [`entry`]: entries as RFC 8785 canonical JSON, one per line.
//! - [`merkle`]: the RFC 6962 / 9162 tree, proofs and their verification.
//! - [`note`]: Ed25519 keys and C2SP signed-note checkpoints.
//! - [`proof`]: C2SP tlog-proof documents.
//! - [`verify`]: whole-log and bundle verification, offline.
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

pub mod entry;
pub mod merkle;
pub mod mirror;
pub mod note;
pub mod proof;
pub mod scan;
pub mod verify;

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use signed_note::StandardSigner;

use crate::clock::{Clock, rfc3339};
use crate::ids::CaseId;
use entry::{Action, Entry, EntryDraft, EntryError};
use merkle::{Hash, ProofError, Tree, leaf_hash};
use note::{NoteError, SignedCheckpoint};

pub const ENTRIES_FILE: &str = "entries.jsonl";
pub const CHECKPOINT_FILE: &str = "checkpoint";
pub const CHECKPOINTS_DIR: &str = "checkpoints";
pub const META_FILE: &str = "ledger.json";
const LOCK_FILE: &str = "lock";

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LedgerError {
    #[error("no ledger at {dir}; run `custody ledger init`")]
    NotInitialised { dir: PathBuf },
    #[error("a ledger already exists at {dir}")]
    AlreadyInitialised { dir: PathBuf },
    #[error("the ledger at {dir} is in use by another process; one writer at a time")]
    Locked { dir: PathBuf },
    #[error("{op} {path}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Key(#[from] NoteError),
    #[error("entry {index} is invalid")]
    BadEntry {
        index: u64,
        #[source]
        source: EntryError,
    },
    #[error(transparent)]
    Entry(#[from] EntryError),
    #[error(transparent)]
    Proof(#[from] ProofError),
    #[error("signed history does not match its checkpoint: {0}")]
    HistoryMismatch(String),
    #[error("refusing to sign: {0}")]
    RefuseToSign(String),
    #[error("{path} is not valid ledger metadata")]
    BadMeta { path: PathBuf },
    #[error("the ledger failed part-way through a commit and must be reopened")]
    Poisoned,
    #[error("the group commit holding this entry failed: {0}")]
    GroupCommit(String),
}

/// `ledger.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    pub schema: u32,
    /// The checkpoints' origin line and the signing key's name.
    pub origin: String,
    /// Verifier key at creation; rotations are entries in the log.
    pub initial_verifier_key: String,
}

/// Where a ledger lives.
#[derive(Debug, Clone)]
pub struct LedgerPaths {
    pub dir: PathBuf,
    pub key: PathBuf,
}

impl LedgerPaths {
    /// The standard layout under a custody home.
    pub fn in_home(home: &Path) -> Self {
        Self {
            dir: home.join("ledger"),
            key: home.join("keys").join("ledger.key"),
        }
    }

    pub fn entries(&self) -> PathBuf {
        self.dir.join(ENTRIES_FILE)
    }

    pub fn checkpoint(&self) -> PathBuf {
        self.dir.join(CHECKPOINT_FILE)
    }

    pub fn checkpoints(&self) -> PathBuf {
        self.dir.join(CHECKPOINTS_DIR)
    }

    pub fn meta(&self) -> PathBuf {
        self.dir.join(META_FILE)
    }

    pub fn exists(&self) -> bool {
        self.meta().exists()
    }
}

/// A new ledger's origin (and key name): this host and a random id, so two
/// ledgers never share one.
pub fn default_origin() -> String {
    let host: String = crate::collect::hostname()
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

/// Name of a checkpoint in `checkpoints/`.
pub fn checkpoint_name(size: u64) -> String {
    format!("{size:012}")
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
    let mut f = File::create(&tmp).map_err(io("cannot create", &tmp))?;
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

/// The verifier key a `key_rotated` entry names.
pub fn rotated_key(detail: Option<&serde_json::Value>) -> Option<String> {
    detail?.get("new_verifier_key")?.as_str().map(str::to_owned)
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

/// An open, locked ledger: the one writer.
pub struct Ledger {
    paths: LedgerPaths,
    meta: Meta,
    _lock: File,
    entries: File,
    /// Bytes of `entries.jsonl` that hold committed entries.
    committed_len: u64,
    tree: Tree,
    last: SignedCheckpoint,
    signer: StandardSigner,
    vkey: String,
    case_last: HashMap<CaseId, u64>,
    clock: Arc<dyn Clock>,
    poisoned: bool,
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
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&p)
        .map_err(io("cannot open", &p))?;
    match f.try_lock() {
        Ok(()) => Ok(f),
        Err(std::fs::TryLockError::WouldBlock) => Err(LedgerError::Locked {
            dir: paths.dir.clone(),
        }),
        Err(std::fs::TryLockError::Error(e)) => Err(io("cannot lock", &p)(e)),
    }
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
        std::fs::create_dir_all(paths.checkpoints())
            .map_err(io("cannot create", &paths.checkpoints()))?;
        let vkey = note::create_key(&paths.key, origin)?;
        let meta = Meta {
            schema: 1,
            origin: origin.to_owned(),
            initial_verifier_key: vkey.clone(),
        };
        let signer = note::load_signer(&paths.key)?;
        File::create(paths.entries()).map_err(io("cannot create", &paths.entries()))?;
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
    /// last line is cut off and complete entries past the last checkpoint are
    /// committed; signed history that does not match its checkpoint is an error.
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

        let mut tree = Tree::new();
        let mut case_last = HashMap::new();
        let mut vkey = meta.initial_verifier_key.clone();
        // Keys in force for each checkpoint size: (first size signed by it, key).
        let mut keys: Vec<(u64, String)> = vec![(0, vkey.clone())];
        let mut offset = 0usize;
        let mut valid_len = 0usize;
        let mut torn = false;
        while offset < data.len() {
            let Some(nl) = data
                .get(offset..)
                .and_then(|d| d.iter().position(|&b| b == b'\n'))
            else {
                torn = true;
                break;
            };
            let line = data.get(offset..offset + nl).unwrap_or_default();
            let index = tree.size();
            let Ok(skim) = serde_json::from_slice::<Skim>(line) else {
                torn = true;
                break;
            };
            tree.push_leaf_hash(leaf_hash(line))?;
            if let Some(c) = skim.case {
                case_last.insert(c, index);
            }
            if skim.action == Action::KeyRotated
                && let Some(k) = rotated_key(skim.detail.as_ref())
            {
                keys.push((index + 2, k.clone()));
                vkey = k;
            }
            offset += nl + 1;
            valid_len = offset;
        }
        let latest =
            std::fs::read(paths.checkpoint()).map_err(io("cannot read", &paths.checkpoint()))?;
        let last = verify::open_with_chain(&latest, &keys, &meta.origin)?;
        if last.size > tree.size() {
            return Err(LedgerError::HistoryMismatch(format!(
                "the checkpoint covers {} entries but only {} are intact in {}",
                last.size,
                tree.size(),
                paths.entries().display()
            )));
        }
        if tree.root(last.size)? != last.root {
            return Err(LedgerError::HistoryMismatch(format!(
                "the first {} entries do not hash to the signed root",
                last.size
            )));
        }
        if torn || valid_len < data.len() {
            tracing::warn!(
                cut = data.len() - valid_len,
                "cutting a torn tail off the ledger"
            );
            entries
                .set_len(valid_len as u64)
                .map_err(io("cannot truncate", &paths.entries()))?;
            entries
                .sync_data()
                .map_err(io("cannot fsync", &paths.entries()))?;
        }
        let signer = note::load_signer(&paths.key)?;
        let mut ledger = Self {
            paths: paths.clone(),
            meta,
            _lock: lock,
            entries,
            committed_len: valid_len as u64,
            tree,
            last,
            signer,
            vkey,
            case_last,
            clock,
            poisoned: false,
        };
        if ledger.tree.size() > ledger.last.size {
            // Intact entries written before a crash, never acknowledged: commit them now.
            tracing::warn!(
                entries = ledger.tree.size() - ledger.last.size,
                "committing entries left unsigned by a crash"
            );
            ledger.commit()?;
        }
        Ok(ledger)
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
        &self.vkey
    }

    pub fn latest_checkpoint(&self) -> &SignedCheckpoint {
        &self.last
    }

    pub fn tree(&self) -> &Tree {
        &self.tree
    }

    /// Appends a batch of entries as one group commit and returns once they
    /// are durable and covered by a signed checkpoint.
    pub fn append(&mut self, drafts: Vec<EntryDraft>) -> Result<Receipt, LedgerError> {
        if self.poisoned {
            return Err(LedgerError::Poisoned);
        }
        if drafts.is_empty() {
            return Ok(Receipt {
                indexes: Vec::new(),
                checkpoint_size: self.last.size,
            });
        }
        let start = self.tree.size();
        let mut buf = Vec::with_capacity(drafts.len() * 512);
        let mut leaves = Vec::with_capacity(drafts.len());
        let mut case_last = HashMap::new();
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
            if let Some(c) = e.case {
                case_last.insert(c, index);
            }
        }
        // From here a failure leaves memory and disk out of step: poison until reopened.
        self.poisoned = true;
        let path = self.paths.entries();
        self.entries
            .write_all(&buf)
            .map_err(io("cannot append to", &path))?;
        self.entries
            .sync_data()
            .map_err(io("cannot fdatasync", &path))?;
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
        self.commit()?;
        self.committed_len += buf.len() as u64;
        self.case_last.extend(case_last);
        self.poisoned = false;
        Ok(Receipt {
            indexes: (start..self.tree.size()).collect(),
            checkpoint_size: self.last.size,
        })
    }

    /// Signs a checkpoint for the whole tree, after checking it extends the last one.
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
        let note = note::sign_checkpoint(&self.signer, &self.meta.origin, size, &root)?;
        write_atomic(&self.paths.checkpoints().join(checkpoint_name(size)), &note)?;
        write_atomic(&self.paths.checkpoint(), &note)?;
        self.last = SignedCheckpoint {
            origin: self.meta.origin.clone(),
            size,
            root,
            note,
        };
        Ok(())
    }

    /// Rotates the signing key: an entry naming the new verifier key is
    /// committed under the old key, then the new key signs from the next checkpoint on.
    pub fn rotate_key(&mut self, actor: entry::Actor) -> Result<String, LedgerError> {
        let new_path = self.paths.key.with_extension("key.new");
        let _ = std::fs::remove_file(&new_path);
        let new_vkey = note::create_key(&new_path, &self.meta.origin)?;
        let new_signer = note::load_signer(&new_path)?;
        let detail =
            serde_json::json!({ "old_verifier_key": self.vkey, "new_verifier_key": new_vkey });
        self.append(vec![ledger_entry(&actor, Action::KeyRotated, detail)])?;
        let retired = self.paths.key.with_file_name("retired");
        std::fs::create_dir_all(&retired).map_err(io("cannot create", &retired))?;
        let old_id = self.vkey.split('+').nth(1).unwrap_or("old").to_owned();
        let old_dest = retired.join(format!("ledger-{old_id}.key"));
        std::fs::rename(&self.paths.key, &old_dest)
            .map_err(io("cannot retire", &self.paths.key))?;
        std::fs::rename(&new_path, &self.paths.key)
            .map_err(io("cannot install", &self.paths.key))?;
        self.signer = new_signer;
        self.vkey = new_vkey.clone();
        Ok(new_vkey)
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
            Err(e) => Err(LedgerError::GroupCommit(e.to_string())),
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
        (Ok(_), None) => Err(LedgerError::GroupCommit(
            "the committed batch did not hold this append".into(),
        )),
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
        let path = self.ledger.with(|l| l.paths.entries());
        let mut out = Vec::new();
        for (i, line) in read_entries(&path)?.into_iter().enumerate() {
            let index = i as u64;
            // The positional reader skips other cases' entries cheaply; ours get the full parse.
            if scan::scan(&line).is_ok_and(|f| f.case.is_some_and(|c| c != case.as_str())) {
                continue;
            }
            let e =
                Entry::parse(&line).map_err(|source| LedgerError::BadEntry { index, source })?;
            if e.case.as_ref() == Some(case) {
                out.push((index, line, e));
            }
        }
        Ok(out)
    }
}

/// An entry's reference to an artefact, from its manifest.
pub fn evidence_ref(a: &crate::evidence::Artefact) -> entry::EvidenceRef {
    entry::EvidenceRef {
        artefact: a.id.clone(),
        kind: a.kind.as_str().to_owned(),
        raw_size: a.raw.size,
        raw_sha256: a.raw.sha256.clone(),
        stored_size: a.stored.size,
        stored_sha256: a.stored.sha256.clone(),
        location: a.stored.location.clone(),
        key: a.stored.key.clone(),
        version_id: a.stored.version_id.clone(),
        etag: a.stored.etag.clone(),
    }
}
