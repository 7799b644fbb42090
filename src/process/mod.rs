//! Processing disk images in place, from the stored evidence (issue "Depth
//! of data"; being built). So far:
//!
//! | module | role |
//! |---|---|
//! | [`image`] | `ReadAt`: random access to a raw image file or to a stored artefact through its seek table, with a bounded frame cache |
//! | [`volume`] | the image's volumes: GPT, MBR and its extended partitions, or none; what each holds by its signature (ext, XFS, NTFS, FAT, LUKS, BitLocker, LVM2, swap) |

pub mod image;
pub use custody_disk::volume;
