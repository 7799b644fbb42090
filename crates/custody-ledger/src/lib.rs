//! The custody ledger as files: entries, the Merkle tree over them, signed
//! checkpoints, proofs, and their offline verification, for a whole ledger
//! directory and for an exported case bundle.
//!
//! This crate is what an auditor needs to check custody's records without
//! custody: its dependencies are hashing, signing and serialisation only. It
//! is not the writer (appending, group commit, crash recovery and key
//! rotation live in `custody::ledger`, which re-exports these modules), and it
//! does no I/O beyond reading files (no network, no async runtime, no
//! database). The binary `custody-verify` is a thin wrapper around [`verify`].
//!
//! # Layout
//!
//! | module | role |
//! |---|---|
//! | [`ids`] | validated case and artefact identifiers (safe as path and key parts) |
//! | [`entry`] | entries as RFC 8785 canonical JSON, one per line |
//! | [`merkle`] | the RFC 6962 / 9162 tree, proofs and their verification |
//! | [`note`] | Ed25519 keys and C2SP signed-note checkpoints |
//! | [`proof`] | C2SP tlog-proof documents |
//! | [`scan`] | a fast reader of an entry's top-level fields, for whole-log verification |
//! | [`verify`] | whole-log and bundle verification, offline |
//! | [`private_fs`] | owner-only directories, fsynced in their parents (also what `custody::private_fs` uses) |
//!
//! A ledger directory on disk:
//!
//! ```text
//! entries.jsonl          one canonical JSON entry per line
//! checkpoint             the latest signed checkpoint
//! checkpoints/<size>     every checkpoint ever signed, by tree size (12 digits)
//! ledger.json            origin and the initial verifier key
//! ```

pub mod entry;
pub mod ids;
pub mod merkle;
pub mod note;
pub mod proof;
pub mod scan;
pub mod verify;

pub mod private_fs;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use entry::EntryError;
use merkle::ProofError;
use note::NoteError;

/// The entries file of a ledger directory.
pub const ENTRIES_FILE: &str = "entries.jsonl";
/// The latest signed checkpoint.
pub const CHECKPOINT_FILE: &str = "checkpoint";
/// Every checkpoint ever signed, named by [`checkpoint_name`].
pub const CHECKPOINTS_DIR: &str = "checkpoints";
/// The ledger's metadata ([`Meta`]).
pub const META_FILE: &str = "ledger.json";

/// What can go wrong reading, verifying or writing a ledger. The writer's
/// variants (a lock held, a commit that failed) are used by `custody::ledger`.
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
    #[error("the group commit holding this entry failed: {message}")]
    GroupCommit {
        message: String,
        /// The ledger could not write (retry later), rather than refused.
        commit_failure: bool,
    },
    #[error(
        "the signing key at {path} ({found}) is not the key the log says is in force ({expected})"
    )]
    WrongKey {
        path: PathBuf,
        expected: String,
        found: String,
    },
}

impl LedgerError {
    /// The ledger could not write (a full disk, an I/O error, a commit left
    /// half done): the same append may succeed later. Anything else (a
    /// refusal to sign, a damaged history, a wrong key) will not.
    pub fn is_commit_failure(&self) -> bool {
        match self {
            Self::Io { .. } | Self::Poisoned => true,
            Self::GroupCommit { commit_failure, .. } => *commit_failure,
            _ => false,
        }
    }
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
    /// The signing key (only the writer reads it).
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

/// Name of a checkpoint in `checkpoints/`.
pub fn checkpoint_name(size: u64) -> String {
    format!("{size:012}")
}

/// The size a checkpoint note claims, read before its signature is checked
/// (the key that must have signed it depends on the size).
pub fn claimed_size(note: &[u8]) -> Option<u64> {
    std::str::from_utf8(note).ok()?.lines().nth(1)?.parse().ok()
}

/// The verifier key a `key_rotated` entry names.
pub fn rotated_key(detail: Option<&serde_json::Value>) -> Option<String> {
    detail?.get("new_verifier_key")?.as_str().map(str::to_owned)
}

/// The verifier key a `key_rotated` entry retires.
pub fn retired_key(detail: Option<&serde_json::Value>) -> Option<String> {
    detail?.get("old_verifier_key")?.as_str().map(str::to_owned)
}

/// A `key_rotated` entry: its index and the keys it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotation {
    pub index: u64,
    pub old: Option<String>,
    pub new: String,
}

/// An error and its causes on one line: `outer: cause: root cause`.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let text = s.to_string();
        // `#[error(transparent)]` wrappers repeat their source's text.
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cur = s.source();
    }
    out
}

fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> LedgerError {
    let path = path.to_path_buf();
    move |source| LedgerError::Io { op, path, source }
}
