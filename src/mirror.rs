//! Copies the ledger to a cloud evidence store as it is committed, so the
//! custody trail survives the loss of the machine that wrote it, and checks
//! what it finds there: anyone able to write to the bucket (in an incident,
//! possibly the intruder) can plant objects under the mirror's prefix, so
//! nothing found there is taken as this ledger's without its bytes matching.
//!
//! The store never overwrites, so the mirror is made of immutable objects
//! (under Object Lock where the bucket has it):
//!
//! ```text
//! ledger/<origin>/ledger.json
//! ledger/<origin>/entries/<first>-<end>-<sha256>.jsonl  entries first..end (end exclusive), byte for byte
//! ledger/<origin>/checkpoints/<size>                    every signed checkpoint
//! ledger/<origin>/checkpoints/<size>.<sha256>           the same, when someone else took `<size>`
//! ```
//! A segment's name carries the SHA-256 of its bytes, so a planted name
//! cannot stand for entries it does not hold. Concatenating the segments
//! this ledger wrote, in order, gives the local `entries.jsonl` up to the
//! latest checkpoint. A sync uploads whatever the store lacks, so a missed
//! sync (an outage, a crash) is caught up by the next one; objects that are
//! not byte for byte this ledger's are reported (`Synced::foreign`), and
//! mirroring goes on beside them. [`check`] reads every object back.
//! `ledger/mirrored` (local) lists the objects already matched, so a sync
//! lists the prefix and reads the local file only when there is something new.

use std::collections::BTreeSet;
use std::path::Path;

use bytes::Bytes;
use sha2::Digest as _;

use crate::ledger::{LedgerPaths, checkpoint_name};
use crate::store::{EvidenceStore, ObjectKey, StoreError};

/// Local list of mirror objects known to hold this ledger's bytes.
const MIRRORED_FILE: &str = "mirrored";

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MirrorError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot read {path}")]
    Local {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the latest checkpoint is malformed")]
    Checkpoint,
    #[error(transparent)]
    Ledger(#[from] crate::ledger::LedgerError),
}

/// What a sync uploaded, and what it found that is not this ledger's.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Synced {
    pub entries: u64,
    pub checkpoints: usize,
    /// Keys under the mirror's prefix whose bytes are not this ledger's.
    pub foreign: Vec<String>,
}

/// The mirror's key prefix for a ledger: its origin, with `/` made safe for one key part.
pub fn prefix(origin: &str) -> String {
    let safe: String = origin
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("ledger/{safe}")
}

fn read(path: &Path) -> Result<Vec<u8>, MirrorError> {
    std::fs::read(path).map_err(|source| MirrorError::Local {
        path: path.to_path_buf(),
        source,
    })
}

/// A segment's name: `<first>-<end>-<sha256>.jsonl`, or the older `<first>-<end>.jsonl`.
fn segment_name(name: &str) -> Option<(u64, u64, Option<&str>)> {
    let mut parts = name.strip_suffix(".jsonl")?.splitn(3, '-');
    let first = parts.next()?.parse().ok()?;
    let end = parts.next()?.parse().ok()?;
    Some((first, end, parts.next()))
}

/// The local ledger as the mirror needs it: committed lines and checkpoint names.
struct Local {
    data: Vec<u8>,
    /// Byte offset of each line's start, and one past the last line.
    starts: Vec<usize>,
}

impl Local {
    fn read(paths: &LedgerPaths) -> Result<Self, MirrorError> {
        let data = read(&paths.entries())?;
        let mut starts = vec![0];
        starts.extend(memchr::memchr_iter(b'\n', &data).map(|nl| nl + 1));
        Ok(Self { data, starts })
    }

    /// Entries `first..end`, each with its newline, if the file holds them.
    fn range(&self, first: u64, end: u64) -> Option<&[u8]> {
        let a = *self.starts.get(usize::try_from(first).ok()?)?;
        let b = *self.starts.get(usize::try_from(end).ok()?)?;
        self.data.get(a..b).filter(|_| first < end)
    }
}

/// The names of the local checkpoints (`checkpoints/<12 digits>`), in order.
fn local_checkpoints(paths: &LedgerPaths) -> Result<Vec<String>, MirrorError> {
    let mut names: Vec<String> = std::fs::read_dir(paths.checkpoints())
        .map_err(|source| MirrorError::Local {
            path: paths.checkpoints(),
            source,
        })?
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.len() == 12 && n.bytes().all(|b| b.is_ascii_digit()))
        .collect();
    names.sort();
    Ok(names)
}

/// How many entries from the first the segments `first..end` cover without a gap.
fn contiguous(mut ranges: Vec<(u64, u64)>) -> u64 {
    ranges.sort_unstable();
    let mut covered = 0u64;
    for (first, end) in ranges {
        if first <= covered && end > covered {
            covered = end;
        }
    }
    covered
}

fn sha_hex(bytes: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(bytes))
}

/// Uploads what the store lacks of the committed ledger, and reports what
/// it finds under the prefix that is not this ledger's.
pub async fn sync(
    paths: &LedgerPaths,
    origin: &str,
    store: &dyn EvidenceStore,
) -> Result<Synced, MirrorError> {
    let base = prefix(origin);
    let key = |rest: &str| ObjectKey::new(format!("{base}/{rest}"));
    let mut synced = Synced::default();
    let known_path = paths.dir.join(MIRRORED_FILE);
    let mut known: BTreeSet<String> = std::fs::read_to_string(&known_path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect();
    let before = known.len();
    let listed: BTreeSet<String> = store
        .list(&format!("{base}/"))
        .await?
        .iter()
        .filter_map(|k| {
            k.as_str()
                .strip_prefix(&format!("{base}/"))
                .map(str::to_owned)
        })
        .collect();
    let mut local: Option<Local> = None;
    macro_rules! local {
        () => {{
            if local.is_none() {
                local = Some(Local::read(paths)?);
            }
            local.as_ref().ok_or(MirrorError::Checkpoint)?
        }};
    }

    let meta = read(&paths.meta())?;
    if !known.contains(crate::ledger::META_FILE) {
        if put_checked(store, &key(crate::ledger::META_FILE)?, &meta).await? {
            known.insert(crate::ledger::META_FILE.to_owned());
        } else {
            synced
                .foreign
                .push(format!("{base}/{}", crate::ledger::META_FILE));
        }
    }

    // Only entries covered by the latest checkpoint: anything after it is not yet committed.
    let latest = read(&paths.checkpoint())?;
    let size = crate::ledger::claimed_size(&latest).ok_or(MirrorError::Checkpoint)?;
    let mut ranges = Vec::new();
    for name in listed.iter().filter_map(|n| n.strip_prefix("entries/")) {
        let rel = format!("entries/{name}");
        let Some((first, end, sha)) = segment_name(name) else {
            synced.foreign.push(format!("{base}/{rel}"));
            continue;
        };
        let ours = known.contains(&rel)
            || match sha {
                Some(sha) => local!()
                    .range(first, end)
                    .is_some_and(|b| sha_hex(b) == sha),
                // An older, unhashed name: its bytes must be read.
                None => match local!().range(first, end) {
                    Some(b) => store.get_bytes(&key(&rel)?).await? == b,
                    None => false,
                },
            };
        if ours {
            known.insert(rel);
            ranges.push((first, end));
        } else {
            synced.foreign.push(format!("{base}/{rel}"));
        }
    }
    // The contiguous prefix already mirrored, from this ledger's own segments only.
    let mirrored = contiguous(ranges);
    if size > mirrored {
        let segment = local!()
            .range(mirrored, size)
            .ok_or(MirrorError::Checkpoint)?
            .to_vec();
        let rel = format!(
            "entries/{}-{}-{}.jsonl",
            checkpoint_name(mirrored),
            checkpoint_name(size),
            sha_hex(&segment)
        );
        if put_checked(store, &key(&rel)?, &segment).await? {
            known.insert(rel);
            synced.entries = size - mirrored;
        } else {
            synced.foreign.push(format!("{base}/{rel}"));
        }
    }

    let names = local_checkpoints(paths)?;
    for name in names {
        let rel = format!("checkpoints/{name}");
        if known.contains(&rel) {
            continue;
        }
        let bytes = read(&paths.checkpoints().join(&name))?;
        let alt = format!("{rel}.{}", sha_hex(&bytes));
        if known.contains(&alt) {
            // Ours is mirrored beside an object someone else put under the plain name.
            synced.foreign.push(format!("{base}/{rel}"));
            continue;
        }
        if put_checked(store, &key(&rel)?, &bytes).await? {
            known.insert(rel);
        } else {
            synced.foreign.push(format!("{base}/{rel}"));
            if put_checked(store, &key(&alt)?, &bytes).await? {
                known.insert(alt);
            }
        }
        synced.checkpoints += 1;
    }
    // Anything else under the prefix is not this ledger's.
    synced.foreign.extend(
        listed
            .iter()
            .filter(|n| !known.contains(*n))
            .map(|n| format!("{base}/{n}")),
    );
    synced.foreign.sort();
    synced.foreign.dedup();
    if known.len() != before {
        let text: String = known.iter().map(|k| format!("{k}\n")).collect();
        crate::ledger::write_atomic(&known_path, text.as_bytes())?;
    }
    Ok(synced)
}

/// Reads every object under the mirror's prefix back and compares it with
/// the local ledger; returns each difference (an object that is not this
/// ledger's, entries or checkpoints the mirror lacks). For `store check`
/// and `ledger verify`, where a full read is wanted.
pub async fn check(
    paths: &LedgerPaths,
    origin: &str,
    store: &dyn EvidenceStore,
) -> Result<Vec<String>, MirrorError> {
    let base = prefix(origin);
    let local = Local::read(paths)?;
    let mut problems = Vec::new();
    let mut ranges = Vec::new();
    let mut checkpoints = BTreeSet::new();
    for k in store.list(&format!("{base}/")).await? {
        let Some(rel) = k.as_str().strip_prefix(&format!("{base}/")) else {
            continue;
        };
        let bytes = store.get_bytes(&k).await?;
        let ours = if rel == crate::ledger::META_FILE {
            bytes == read(&paths.meta())?
        } else if let Some(name) = rel.strip_prefix("entries/") {
            match segment_name(name) {
                Some((first, end, _)) if local.range(first, end) == Some(&bytes[..]) => {
                    ranges.push((first, end));
                    true
                }
                _ => false,
            }
        } else if let Some(name) = rel.strip_prefix("checkpoints/") {
            let size = name.split('.').next().unwrap_or_default();
            let same = size.len() == 12
                && std::fs::read(paths.checkpoints().join(size)).is_ok_and(|b| b == bytes);
            if same {
                checkpoints.insert(size.to_owned());
            }
            same
        } else {
            false
        };
        if !ours {
            problems.push(format!(
                "{} under the ledger mirror is not byte for byte this ledger's",
                k.as_str()
            ));
        }
    }
    let mirrored = contiguous(ranges);
    let size =
        crate::ledger::claimed_size(&read(&paths.checkpoint())?).ok_or(MirrorError::Checkpoint)?;
    if mirrored < size {
        problems.push(format!(
            "the mirror holds this ledger's entries up to {mirrored} of {size}"
        ));
    }
    let missing = local_checkpoints(paths)?
        .iter()
        .filter(|n| !checkpoints.contains(*n))
        .count();
    if missing > 0 {
        problems.push(format!(
            "the mirror lacks {missing} of this ledger's checkpoints"
        ));
    }
    Ok(problems)
}

/// Puts an object; one already there (an earlier, interrupted sync) counts
/// only if its bytes are these. Returns whether the store holds these bytes.
async fn put_checked(
    store: &dyn EvidenceStore,
    key: &ObjectKey,
    bytes: &[u8],
) -> Result<bool, StoreError> {
    match store.put_bytes(key, Bytes::copy_from_slice(bytes)).await {
        Ok(_) => Ok(true),
        Err(StoreError::AlreadyExists { .. }) => Ok(store.get_bytes(key).await? == bytes),
        Err(e) => Err(e),
    }
}
