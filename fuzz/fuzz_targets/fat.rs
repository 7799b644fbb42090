//! Any bytes as a FAT volume: open, walk, list orphans and read every file;
//! the reader reports, never panics.
#![no_main]

use std::sync::Arc;

use custody_disk::ReadAt;
use custody_disk::fs::{self, fat, walk};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let vol: Arc<dyn ReadAt> = Arc::new(data.to_vec());
    let Ok(fs) = fat::open(vol) else { return };
    let mut ids = Vec::new();
    let _ = walk::walk(fs.as_ref(), &mut |r| ids.push((r.id, r.node.map_or(0, |n| n.size))));
    for (id, size) in ids.into_iter().take(4096) {
        if let Ok(x) = fs.extents(id) {
            let mut buf = vec![0u8; size.min(1 << 16) as usize];
            let _ = fs::read_data(fs.volume().as_ref(), &x, size, 0, &mut buf);
        }
    }
});
