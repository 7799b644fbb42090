//! Evidence: what an artefact is, how its bytes are captured, and the case
//! operations built on a store.
//!
//! - [`model`]: the versioned, serialisable artefact record (the manifest).
//! - [`pipeline`]: reads a source once; SHA-256 of the raw bytes, seekable
//!   zstd compression on other cores, SHA-256 of the stored bytes.
//! - [`pool`]: buffers handed round between the pipeline's threads.
//! - [`seekable`]: reading stored objects back, whole or by byte range.
//! - [`case`]: acquire into a case, list, show, verify and export.

pub mod case;
pub mod model;
pub mod pipeline;
pub mod pool;
pub mod seekable;

pub use model::{Artefact, ArtefactKind, BlockMap, Derivation, Digest, Source, StoredDigest};

/// Lower-case hex SHA-256, the one digest form custody writes anywhere.
pub type Sha256Hex = String;

/// SHA-256 of a byte slice as lower-case hex.
pub fn sha256_hex(bytes: &[u8]) -> Sha256Hex {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(bytes))
}
