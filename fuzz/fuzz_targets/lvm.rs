//! Any bytes as an LVM2 physical volume: label, metadata area and text
//! metadata are parsed, each logical volume opened and read at its end;
//! the reader reports, never panics.
#![no_main]

use std::sync::Arc;

use custody_disk::{ReadAt, lvm};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let pv: Arc<dyn ReadAt> = Arc::new(data.to_vec());
    let _ = lvm::parse(data);
    if let Ok(vg) = lvm::read(pv.clone()) {
        for lv in &vg.logical_volumes {
            if let Ok(v) = lv.open(pv.clone()) {
                let mut buf = [0u8; 4096];
                let _ = v.read_at(v.size().saturating_sub(100), &mut buf);
            }
        }
    }
});
