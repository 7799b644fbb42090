//! Any bytes as an ext2/3/4 volume: the reader opens, walks, lists orphans
//! and maps every file's data without panicking or running away.
#![no_main]

use std::sync::Arc;

use custody_disk::fs::{bodyfile, ext4, read_data, walk};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(fs) = ext4::open(Arc::new(data.to_vec())) else {
        return;
    };
    let mut ids = Vec::new();
    let _ = walk::walk(fs.as_ref(), &mut |r| {
        let _ = bodyfile::lines(&r);
        ids.push(r.id);
    });
    for id in ids.into_iter().take(256) {
        if let (Ok(node), Ok(extents)) = (fs.node(id), fs.extents(id)) {
            let mut buf = vec![0u8; node.size.min(1 << 16) as usize];
            let _ = read_data(fs.volume().as_ref(), &extents, node.size, 0, &mut buf);
        }
    }
});
