//! The LVM2 reader against LVM's own tools, as root: a file on a loop
//! device made a PV by `pvcreate`, a VG, two LVs, the first extended so it
//! has two segments. This machine (and CI's) has no device-mapper, so the
//! LVs are never activated (`--driverloaded n`, `-an`): the segment map is
//! compared with what `lvs --segments` and `pvs` report (the same
//! start/length/offset a `dmsetup table` line gives), and the LVs' bytes
//! are written at the places LVM reports. Needs lvm2, util-linux (losetup)
//! and e2fsprogs (scripts/emulators.sh).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::process::Command;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use custody_disk::lvm::{self, LvmError};
use custody_disk::volume::{self, Content};
use custody_disk::{FileImage, ReadAt};

#[path = "support/lvm.rs"]
mod support;

use support::{Mapped, Pv, lvm, mapping, run, tool, write_lv};

/// A PV with VG `vg` holding LV `a` (2 MiB, then extended to 4 MiB after
/// `b` was made: two segments) and LV `b` (3 MiB), extents of 1 MiB.
fn make(vg: &str) -> Pv {
    tool("mkfs.ext4");
    let pv = Pv::new(vg, 32);
    pv.lvcreate("a", "2M");
    pv.lvcreate("b", "3M");
    lvm(&["lvextend", "-L", "4M", &format!("{vg}/a")]);
    pv
}

fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| ((i / 512) as u8).wrapping_mul(31) ^ (i as u8) ^ seed)
        .collect()
}

fn image(pv: &Pv) -> Arc<dyn ReadAt> {
    Arc::new(FileImage::open(&pv.file).unwrap())
}

#[test]
fn linear_volumes_read_as_lvm_maps_them() {
    let pv = make("custody_lvm_linear");
    let map = mapping(&pv);
    assert_eq!(map.iter().filter(|m| m.lv == "a").count(), 2, "{map:?}");
    let a = pattern(7, 4 << 20);
    write_lv(&pv, &map, "a", &a);
    // An ext4 file system made in a file, then written as LV b's bytes.
    let ext = pv.dir.path().join("ext.img");
    std::fs::File::create(&ext)
        .unwrap()
        .set_len(3 << 20)
        .unwrap();
    run(Command::new("mkfs.ext4").args(["-q", "-F"]).arg(&ext));
    let b = std::fs::read(&ext).unwrap();
    write_lv(&pv, &map, "b", &b);

    let img = image(&pv);
    let vg = lvm::read(img.clone()).unwrap();
    assert_eq!(vg.name, "custody_lvm_linear");
    assert!(vg.problems.is_empty(), "{:?}", vg.problems);
    let mut ours: Vec<Mapped> = vg
        .logical_volumes
        .iter()
        .flat_map(|lv| {
            lv.segments.iter().map(|s| Mapped {
                lv: lv.name.clone(),
                start: s.offset / 512,
                len: s.len / 512,
                pv_offset: s.pv_offset.unwrap() / 512,
            })
        })
        .collect();
    ours.sort();
    assert_eq!(ours, map);
    let lv = |n: &str| vg.logical_volumes.iter().find(|l| l.name == n).unwrap();
    let a_vol = lv("a").open(img.clone()).unwrap();
    assert_eq!(a_vol.size(), 4 << 20);
    assert_eq!(a_vol.read_exact_at(0, 4 << 20).unwrap(), a);
    let b_vol = lv("b").open(img).unwrap();
    assert_eq!(b_vol.size(), 3 << 20);
    assert_eq!(b_vol.read_exact_at(0, 3 << 20).unwrap(), b);
    assert_eq!(volume::probe(b_vol.as_ref(), 0).unwrap(), Content::Ext);
}

/// The committed metadata text, found in the raw PV by its first line: the
/// area keeps older versions before it, and has not wrapped yet.
fn text_at(raw: &[u8], vg: &str) -> usize {
    let head = format!("{vg} {{\nid = ");
    raw.windows(head.len())
        .rposition(|w| w == head.as_bytes())
        .unwrap()
}

fn replace_in(raw: &mut [u8], from: usize, old: &str, new: &str) -> usize {
    assert_eq!(old.len(), new.len());
    let at = from
        + raw[from..]
            .windows(old.len())
            .position(|w| w == old.as_bytes())
            .unwrap();
    raw[at..at + old.len()].copy_from_slice(new.as_bytes());
    at
}

#[test]
fn bad_metadata_is_named_by_its_line_and_a_bad_checksum_is_reported() {
    let pv = make("custody_lvm_bad");
    let raw = std::fs::read(&pv.file).unwrap();
    let start = text_at(&raw, &pv.vg);

    // A changed value: the text still parses, its checksum fails.
    let mut changed = raw.clone();
    replace_in(
        &mut changed,
        start,
        "format = \"lvm2\"",
        "format = \"lvm3\"",
    );
    let vg = lvm::read(Arc::new(changed)).unwrap();
    assert!(
        vg.problems
            .iter()
            .any(|p| p.what.contains("fails its checksum")),
        "{:?}",
        vg.problems
    );

    // A garbled line: an error naming it.
    let mut garbled = raw.clone();
    let at = replace_in(&mut garbled, start, "segment_count = ", "segment_count ! ");
    let line = 1 + raw[start..at].iter().filter(|&&b| b == b'\n').count();
    match lvm::read(Arc::new(garbled)) {
        Err(LvmError::Syntax { line: l, .. }) => assert_eq!(l, line),
        other => panic!("{other:?}"),
    }

    // A segment said to lie on another PV: not readable, never guessed.
    let mut elsewhere = raw.clone();
    replace_in(&mut elsewhere, start, "\"pv0\", 2", "\"pv1\", 2");
    let img: Arc<dyn ReadAt> = Arc::new(elsewhere);
    let vg = lvm::read(img.clone()).unwrap();
    let b = vg.logical_volumes.iter().find(|l| l.name == "b").unwrap();
    let e = b.open(img).err().unwrap().to_string();
    assert!(e.contains("another physical volume"), "{e}");

    // No label at all.
    let mut none = raw;
    none[512..520].copy_from_slice(b"NOTALABL");
    assert!(matches!(lvm::read(Arc::new(none)), Err(LvmError::NoLabel)));
}

mod mutated {
    use super::*;
    use proptest::prelude::*;

    fn pv_bytes() -> &'static (Vec<u8>, usize) {
        static RAW: OnceLock<(Vec<u8>, usize)> = OnceLock::new();
        RAW.get_or_init(|| {
            let pv = make("custody_lvm_prop");
            let raw = std::fs::read(&pv.file).unwrap();
            let start = text_at(&raw, &pv.vg);
            // Only the first MiB holds the label and metadata.
            (raw[..1 << 20].to_vec(), start)
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

        #[test]
        fn mutated_labels_and_metadata_never_panic(
            label in prop::collection::vec((0usize..1024, any::<u8>()), 0..8),
            header in prop::collection::vec((4096usize..4160, any::<u8>()), 0..8),
            text in prop::collection::vec((0usize..2048, any::<u8>()), 0..16),
            cut in prop::option::of(0usize..(1 << 20)),
        ) {
            let (raw, start) = pv_bytes();
            let mut raw = raw.clone();
            for (at, b) in label.into_iter().chain(header) {
                raw[at] = b;
            }
            for (at, b) in text {
                raw[start + at] = b;
            }
            if let Some(cut) = cut {
                raw.truncate(cut);
            }
            let t = Instant::now();
            let img: Arc<dyn ReadAt> = Arc::new(raw);
            if let Ok(vg) = lvm::read(img.clone()) {
                for lv in &vg.logical_volumes {
                    if let Ok(v) = lv.open(img.clone()) {
                        let mut buf = vec![0u8; 4096];
                        let _ = v.read_at(v.size().saturating_sub(100), &mut buf);
                    }
                }
            }
            prop_assert!(t.elapsed() < Duration::from_secs(2));
        }
    }
}
