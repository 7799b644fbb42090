//! Reading disk images in place. Every byte read is attacker-controlled: a
//! reader reports what is wrong with its place and goes on with what it can
//! still read; nothing here panics on any input.
//!
//! | module | role |
//! |---|---|
//! | [`bolt`] | bbolt files (containerd's metadata), read only |
//! | [`bytes`] | fields of on-disk structures read without panicking |
//! | [`containerd`] | containerd's containers, images and overlay snapshots from its bbolt files |
//! | [`image`] | [`ReadAt`]: random access to an image, a file, or a window of either (a volume) |
//! | [`volume`] | the image's volumes: GPT, MBR and its extended partitions, or none; what each holds by its signature |
//! | [`lvm`] | LVM2 physical volumes and their linear logical volumes |
//! | [`fs`] | the [`fs::FileSystem`] seam and its readers (ext4, XFS, NTFS, FAT), the walk from the root, and TSK's bodyfile |

pub mod bolt;
pub mod bytes;
pub mod containerd;
pub mod fs;
pub mod image;
pub mod lvm;
pub mod volume;

pub use image::{FileImage, ReadAt, Window};
