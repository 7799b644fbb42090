//! Any bytes as an NTFS volume: the reader opens, walks, lists orphans
//! and maps every file's data, and reports what is wrong, never panics.
#![no_main]

use std::sync::Arc;

use custody_disk::ReadAt;
use custody_disk::fs::{ntfs, walk};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let volume: Arc<dyn ReadAt> = Arc::new(data.to_vec());
    let Ok(fs) = ntfs::open(volume) else { return };
    let mut ids = Vec::new();
    let _ = walk::walk(fs.as_ref(), &mut |r| ids.push(r.id));
    for id in ids.into_iter().take(256) {
        let _ = fs.extents(id);
    }
});
