//! Copies the ledger to a cloud evidence store as it is committed, so the
//! custody trail survives the loss of the machine that wrote it.
//!
//! The store never overwrites, so the mirror is made of immutable objects
//! (under Object Lock where the bucket has it):
//!
//! ```text
//! ledger/<origin>/ledger.json
//! ledger/<origin>/entries/<first>-<end>.jsonl   entries first..end (end exclusive), byte for byte
//! ledger/<origin>/checkpoints/<size>             every signed checkpoint
//! ```
//! Concatenating the entry segments in order gives the local `entries.jsonl`
//! up to the latest checkpoint. A sync uploads whatever the store lacks, so a
//! missed sync (an outage, a crash) is caught up by the next one.

use std::path::Path;

use bytes::Bytes;

use super::{LedgerPaths, checkpoint_name};
use crate::store::{EvidenceStore, ObjectKey, StoreError};

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
}

/// What a sync uploaded.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Synced {
    pub entries: u64,
    pub checkpoints: usize,
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

/// Parses `<first>-<end>.jsonl`.
fn segment_range(name: &str) -> Option<(u64, u64)> {
    let (a, b) = name.strip_suffix(".jsonl")?.split_once('-')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// Uploads what the store lacks of the committed ledger.
pub async fn sync(
    paths: &LedgerPaths,
    origin: &str,
    store: &dyn EvidenceStore,
) -> Result<Synced, MirrorError> {
    let base = prefix(origin);
    let key = |rest: String| ObjectKey::new(format!("{base}/{rest}"));
    let mut synced = Synced::default();

    let meta_key = key(super::META_FILE.to_owned())?;
    if store.list(meta_key.as_str()).await?.is_empty() {
        put_once(store, &meta_key, read(&paths.meta())?).await?;
    }

    // Only entries covered by the latest checkpoint: anything after it is not yet committed.
    let latest = read(&paths.checkpoint())?;
    let size: u64 = std::str::from_utf8(&latest)
        .ok()
        .and_then(|t| t.lines().nth(1))
        .and_then(|l| l.parse().ok())
        .ok_or(MirrorError::Checkpoint)?;
    let mut ranges: Vec<(u64, u64)> = store
        .list(&format!("{base}/entries/"))
        .await?
        .iter()
        .filter_map(|k| k.as_str().rsplit('/').next().and_then(segment_range))
        .collect();
    ranges.sort_unstable();
    // The contiguous prefix already mirrored.
    let mut mirrored = 0u64;
    for (first, end) in ranges {
        if first <= mirrored && end > mirrored {
            mirrored = end;
        }
    }
    if size > mirrored {
        let data = read(&paths.entries())?;
        let (lines, _) = super::verify::split_lines(&data);
        let mut segment = Vec::new();
        for line in lines
            .iter()
            .take(usize::try_from(size).unwrap_or(usize::MAX))
            .skip(usize::try_from(mirrored).unwrap_or(usize::MAX))
        {
            segment.extend_from_slice(line);
            segment.push(b'\n');
        }
        put_once(
            store,
            &key(format!(
                "entries/{}-{}.jsonl",
                checkpoint_name(mirrored),
                checkpoint_name(size)
            ))?,
            segment,
        )
        .await?;
        synced.entries = size - mirrored;
    }

    let have: Vec<String> = store
        .list(&format!("{base}/checkpoints/"))
        .await?
        .iter()
        .filter_map(|k| k.as_str().rsplit('/').next().map(str::to_owned))
        .collect();
    let mut local: Vec<String> = std::fs::read_dir(paths.checkpoints())
        .map_err(|source| MirrorError::Local {
            path: paths.checkpoints(),
            source,
        })?
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.len() == 12 && n.bytes().all(|b| b.is_ascii_digit()))
        .filter(|n| !have.contains(n))
        .collect();
    local.sort();
    for name in local {
        put_once(
            store,
            &key(format!("checkpoints/{name}"))?,
            read(&paths.checkpoints().join(&name))?,
        )
        .await?;
        synced.checkpoints += 1;
    }
    Ok(synced)
}

/// Puts an object; one already there from an earlier, interrupted sync is fine.
async fn put_once(
    store: &dyn EvidenceStore,
    key: &ObjectKey,
    bytes: Vec<u8>,
) -> Result<(), StoreError> {
    match store.put_bytes(key, Bytes::from(bytes)).await {
        Ok(_) | Err(StoreError::AlreadyExists { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}
