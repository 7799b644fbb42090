//! Any bytes as an ext4 node volume: device numbers, extended attributes,
//! and the container inventory and writable layers read offline from it,
//! without panicking or running away.
#![no_main]

use std::io::Read as _;
use std::sync::Arc;

use custody::collect::container::offline::Offline;
use custody_disk::fs::{ext4, walk};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(fs) = ext4::open(Arc::new(data.to_vec())) else {
        return;
    };
    let mut ids = Vec::new();
    let _ = walk::walk(fs.as_ref(), &mut |r| ids.push(r.id));
    for id in ids.into_iter().take(256) {
        let _ = fs.rdev(id);
        let _ = fs.xattr(id, b"trusted.overlay.opaque");
    }
    let Some(off) = Offline::detect(Arc::from(fs)) else {
        return;
    };
    let inv = off.inventory();
    for r in inv.containers.iter().take(8) {
        if let Some(mut layer) = off.layer(r) {
            let mut out = Vec::new();
            let _ = layer.by_ref().take(16 << 20).read_to_end(&mut out);
        }
    }
});
