//! Any bytes as an XFS volume: opened, walked, every node's data read
//! through its extents; the reader reports, never panics.
#![no_main]

use std::sync::Arc;

use custody_disk::fs;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(xfs) = fs::xfs::open(Arc::new(data.to_vec())) else {
        return;
    };
    let mut nodes = Vec::new();
    let _ = fs::walk::walk(xfs.as_ref(), &mut |r| {
        if let Some(n) = r.node {
            nodes.push((n.id, n.size));
        }
    });
    let mut buf = vec![0u8; 4096];
    for (id, size) in nodes {
        if let Ok(x) = xfs.extents(id) {
            let _ = fs::read_data(xfs.volume().as_ref(), &x, size, 0, &mut buf);
        }
    }
});
