//! Processing disk images in place, from the stored evidence: what is on
//! them, on the case's timeline, with custody of every derived byte.
//!
//! | module | role |
//! |---|---|
//! | [`image`] | [`image::StoredImage`]: a stored artefact read in place through its seek table, with a bounded frame cache |
//! | [`volume`] | (from `custody-disk`) the image's volumes and what each holds |
//! | [`catalogue`] | the files a responder reads first, by path, and their formats |
//! | [`scan`] | one image: volumes, file systems, catalogue files, the bodyfile (feature `timeline`) |
//! | [`derived`] | a derived file's bytes read from its parent by extents, and re-checked |
//!
//! The readers themselves (volumes, LVM, ext4, XFS, NTFS, FAT) are the
//! `custody-disk` crate's: they parse attacker-controlled bytes and build
//! and fuzz alone.

#[cfg(feature = "timeline")]
pub mod catalogue;
pub mod derived;
pub mod image;
#[cfg(feature = "timeline")]
pub mod scan;
pub use custody_disk::volume;
