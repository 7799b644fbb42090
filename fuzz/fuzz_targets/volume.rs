//! Any bytes as a disk image: the partition table reader reports, never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = custody_disk::volume::layout(&data.to_vec());
});
