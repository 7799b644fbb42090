//! The artefact record. It is written as the artefact's manifest once, after
//! both digests are known and the store has confirmed the write; an object
//! without a manifest was never recorded complete.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::ids::{ArtefactId, CaseId};

/// Schema version of [`Artefact`]. Readers refuse manifests from a newer schema.
pub const ARTEFACT_SCHEMA: u32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum ArtefactKind {
    DiskImage,
    MemoryImage,
    LogBundle,
    HostTriage,
    File,
    /// The SHA-256 of every block of a disk image, in order.
    BlockMap,
    /// The blocks of a disk that changed since an earlier snapshot, packed
    /// in index order; its block manifest gives each block's index.
    DiskDelta,
    /// A file read out of a disk image artefact by `custody process`.
    Extracted,
    /// The file-system timeline of a disk image artefact, as a TSK bodyfile.
    Bodyfile,
    /// Every container found on a node, as its runtimes recorded it.
    ContainerInventory,
    /// A container's writable layer: its upper directory and `changes.json`.
    ContainerLayer,
    /// One container's processes, runtime files and logs.
    Container,
    /// A cloud resource as the provider's API described it (a Lambda
    /// function, an ECS task, an image manifest).
    CloudResource,
    /// A function's code or a layer's, checked against the provider's digest.
    FunctionCode,
}

impl ArtefactKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::DiskImage => "disk_image",
            Self::MemoryImage => "memory_image",
            Self::LogBundle => "log_bundle",
            Self::HostTriage => "host_triage",
            Self::File => "file",
            Self::BlockMap => "block_map",
            Self::DiskDelta => "disk_delta",
            Self::Extracted => "extracted",
            Self::Bodyfile => "bodyfile",
            Self::ContainerInventory => "container_inventory",
            Self::ContainerLayer => "container_layer",
            Self::Container => "container",
            Self::CloudResource => "cloud_resource",
            Self::FunctionCode => "function_code",
        }
    }
}

/// Where the bytes came from: defined with the ledger's entries (an entry's
/// `place` is the same record), re-exported here.
pub use custody_ledger::entry::Source;

/// Size and SHA-256 of the raw content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Digest {
    pub size: u64,
    pub sha256: String,
}

/// Size and SHA-256 of the object as stored, and where it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredDigest {
    pub size: u64,
    pub sha256: String,
    /// Encoding of the stored bytes: `zstd-seekable` (independent frames plus a seek table).
    pub format: String,
    /// Raw bytes per zstd frame.
    pub frame_size: u64,
    /// Store URL (never with credentials) and key of the object.
    pub location: String,
    pub key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
}

/// The block manifest of a disk image read block by block: the SHA-256 of
/// every block, in order, is a companion artefact; this is its summary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockMap {
    pub block_size: u64,
    pub blocks: u64,
    /// Blocks read from the source; the others were never written (zeros).
    pub written: u64,
    /// RFC 6962 Merkle root (hex) over the blocks' SHA-256 digests as leaves
    /// (for a delta, over each block's index and digest).
    pub merkle_root: String,
    /// A delta: the snapshot the blocks changed since.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changed_since: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tool {
    pub name: String,
    pub version: String,
}

impl Tool {
    pub fn this() -> Self {
        Self {
            name: crate::TOOL_NAME.to_owned(),
            version: crate::TOOL_VERSION.to_owned(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Artefact {
    pub schema: u32,
    pub id: ArtefactId,
    pub case: CaseId,
    pub kind: ArtefactKind,
    pub source: Source,
    /// Collection window: first byte requested to last byte confirmed by the store.
    #[serde(with = "time::serde::rfc3339")]
    pub started: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub finished: OffsetDateTime,
    pub raw: Digest,
    pub stored: StoredDigest,
    /// Set when the source's size or modification time changed while it was
    /// read: the bytes are what was read, not a point-in-time copy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_changed: Option<String>,
    /// What could not be read and why (a triage item, a memory region). Nothing is dropped silently.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// Block manifest summary, for images read block by block.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_map: Option<BlockMap>,
    /// For an artefact derived from another (a file extracted from a disk
    /// image): where in the parent its bytes are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub derived: Option<Derivation>,
    pub tool: Tool,
}

/// Where a derived artefact's bytes lie in its parent's raw bytes, so that
/// they can be read again from the parent and re-hashed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Derivation {
    pub parent: crate::ids::ArtefactId,
    /// The parent's raw SHA-256 when this was derived.
    pub parent_sha256: String,
    /// The volume: `p2` (a partition), `whole` (no table), `vg0/root` (LVM).
    pub volume: String,
    /// The file system (`ext4`, `xfs`, `ntfs`, `fat`), or `custody` for
    /// what custody wrote from the parent (a bodyfile).
    pub fs: String,
    /// The file's path in its file system.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Its inode (or MFT record).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inode: Option<u64>,
    /// Its modification time (µs), which dates what the file does not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modified_us: Option<i64>,
    /// `[file offset, parent offset, length]` runs covering the file in
    /// order; a hole (zeros) has parent offset `null`. Empty for what
    /// custody wrote.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extents: Vec<(u64, Option<u64>, u64)>,
}

impl Derivation {
    /// SHA-256 of the extents list as canonical JSON: the ledger entry
    /// names it, so a long list is bound without being copied.
    pub fn extents_sha256(&self) -> String {
        use sha2::Digest as _;
        let json = serde_json::to_vec(&self.extents).unwrap_or_default();
        hex::encode(sha2::Sha256::digest(&json))
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ManifestError {
    #[error("manifest is not valid JSON of an artefact")]
    Parse(#[source] serde_json::Error),
    #[error("manifest schema {found} is newer than this build understands ({ARTEFACT_SCHEMA})")]
    Schema { found: u32 },
}

impl Artefact {
    /// A ledger entry's reference to this artefact, from its manifest.
    pub fn evidence_ref(&self) -> crate::ledger::entry::EvidenceRef {
        crate::ledger::entry::EvidenceRef {
            artefact: self.id.clone(),
            kind: self.kind.as_str().to_owned(),
            raw_size: self.raw.size,
            raw_sha256: self.raw.sha256.clone(),
            stored_size: self.stored.size,
            stored_sha256: self.stored.sha256.clone(),
            location: self.stored.location.clone(),
            key: self.stored.key.clone(),
            version_id: self.stored.version_id.clone(),
            etag: self.stored.etag.clone(),
        }
    }

    pub fn to_json(&self) -> Vec<u8> {
        // Serialising plain data into memory cannot fail.
        serde_json::to_vec_pretty(self).unwrap_or_default()
    }

    pub fn from_json(bytes: &[u8]) -> Result<Self, ManifestError> {
        let a: Artefact = serde_json::from_slice(bytes).map_err(ManifestError::Parse)?;
        if a.schema > ARTEFACT_SCHEMA {
            return Err(ManifestError::Schema { found: a.schema });
        }
        Ok(a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Artefact {
        let t = time::macros::datetime!(2026-11-28 04:00 UTC);
        Artefact {
            schema: ARTEFACT_SCHEMA,
            id: ArtefactId::generate(),
            case: "case-1".parse().unwrap_or_else(|_| unreachable!()),
            kind: ArtefactKind::DiskImage,
            source: Source {
                resource: "vol-0abc".into(),
                ..Source::default()
            },
            started: t,
            finished: t,
            raw: Digest {
                size: 1,
                sha256: "00".into(),
            },
            stored: StoredDigest {
                size: 2,
                sha256: "11".into(),
                format: "zstd-seekable".into(),
                frame_size: 2,
                location: "file:///x".into(),
                key: "k".into(),
                version_id: None,
                etag: None,
            },
            source_changed: None,
            notes: vec![],
            block_map: None,
            derived: None,
            tool: Tool::this(),
        }
    }

    #[test]
    fn manifest_round_trips() {
        let a = sample();
        let back = Artefact::from_json(&a.to_json()).expect("parse");
        assert_eq!(a, back);
        let text = String::from_utf8(a.to_json()).expect("utf8");
        assert!(text.contains("\"kind\": \"disk_image\""), "{text}");
        assert!(text.contains("2026-11-28T04:00:00Z"), "{text}");
    }

    #[test]
    fn newer_schema_is_refused() {
        let mut a = sample();
        a.schema = ARTEFACT_SCHEMA + 1;
        let err = Artefact::from_json(&a.to_json()).expect_err("newer");
        assert!(matches!(err, ManifestError::Schema { .. }));
    }
}
