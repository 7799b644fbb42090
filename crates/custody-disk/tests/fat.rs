//! The FAT reader against The Sleuth Kit, on images made by mkfs.vfat and
//! filled by mtools: the bodyfile lines of our walk equal `fls -r -m /`'s,
//! deleted entries included, and every allocated file's bytes equal
//! `icat`'s. Needs dosfstools, mtools and sleuthkit (scripts/emulators.sh).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use custody_disk::fs::{self, FileSystem, Kind, bodyfile, fat, walk};
use custody_disk::{FileImage, ReadAt};

#[path = "support/tools.rs"]
mod tools;

fn tool(name: &str) {
    tools::require(name, "dosfstools, mtools, sleuthkit");
}

fn run(cmd: &mut Command) -> Vec<u8> {
    let out = cmd
        .env("MTOOLS_SKIP_CHECK", "1")
        .env("TZ", "UTC")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn mtools(cmd: &str, img: &Path, args: &[&str]) {
    run(Command::new(cmd).arg("-i").arg(img).args(args));
}

/// Deterministic bytes, different for each seed.
fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| {
            (i as u32)
                .wrapping_mul(2_654_435_761)
                .rotate_left(seed as u32 % 31) as u8
                ^ seed
        })
        .collect()
}

/// A FAT image made by mkfs.vfat with `mkfs_args`, `kib` KiB long, filled by
/// mtools: long and short names, nested directories, a fragmented file,
/// deleted files and a deleted directory.
fn make(dir: &Path, name: &str, mkfs_args: &[&str], kib: u32, many: usize) -> PathBuf {
    for t in [
        "mkfs.vfat",
        "mcopy",
        "mmd",
        "mdel",
        "mrd",
        "mattrib",
        "fls",
        "icat",
    ] {
        tool(t);
    }
    let img = dir.join(name);
    run(Command::new("mkfs.vfat")
        .args(mkfs_args)
        .args(["-n", "CUSTODY", "-C"])
        .arg(&img)
        .arg(kib.to_string()));
    let file = |n: &str, seed: u8, len: usize| {
        let p = dir.join(n);
        std::fs::write(&p, pattern(seed, len)).unwrap();
        p.to_str().unwrap().to_string()
    };
    let small = file("small", 1, 6);
    let big = file("big", 2, 5000);
    let bigger = file("bigger", 5, 9000);
    let mid = file("mid", 3, 3000);
    let large = file("large", 4, 70_000);
    mtools(
        "mmd",
        &img,
        &[
            "::/Dir1",
            "::/Dir1/Sub",
            "::/Another Long Directory",
            "::/DOS",
        ],
    );
    mtools("mcopy", &img, &[&small, "::/SHORT.TXT"]);
    mtools("mcopy", &img, &[&small, "::/A long file name.txt"]);
    mtools("mcopy", &img, &[&big, "::/Dir1/gap1.bin"]);
    mtools("mcopy", &img, &[&small, "::/Dir1/Sub/deep.txt"]);
    mtools("mcopy", &img, &[&mid, "::/Dir1/frag.bin"]);
    mtools("mcopy", &img, &[&large, "::/DOS/LARGE.BIN"]);
    mtools(
        "mcopy",
        &img,
        &[&big, "::/Another Long Directory/to be deleted long.bin"],
    );
    mtools(
        "mcopy",
        &img,
        &[&small, "::/Another Long Directory/del.txt"],
    );
    // Deleting the first file leaves a gap the next one fills, then runs
    // past: a fragmented file.
    mtools("mdel", &img, &["::/Dir1/gap1.bin"]);
    forget_next_free(&img);
    mtools("mcopy", &img, &[&bigger, "::/Dir1/fragmented file.bin"]);
    mtools(
        "mdel",
        &img,
        &[
            "::/Another Long Directory/to be deleted long.bin",
            "::/Another Long Directory/del.txt",
        ],
    );
    mtools("mattrib", &img, &["+r", "::/SHORT.TXT"]);
    mtools("mattrib", &img, &["+h", "::/DOS/LARGE.BIN"]);
    mtools("mmd", &img, &["::/gone"]);
    mtools("mcopy", &img, &[&small, "::/gone/x.txt"]);
    mtools("mdel", &img, &["::/gone/x.txt"]);
    mtools("mrd", &img, &["::/gone"]);
    // A directory of many long names spans several clusters.
    if many > 0 {
        mtools("mmd", &img, &["::/Many"]);
        let names: Vec<String> = (0..many)
            .map(|i| format!("::/Many/a rather long name number {i}.txt"))
            .collect();
        for n in &names {
            mtools("mcopy", &img, &[&small, n]);
        }
        mtools("mdel", &img, &["::/Many/a rather long name number 3.txt"]);
    }
    img
}

/// FAT32 keeps a hint of the next free cluster in its FSINFO sector, which
/// mtools follows past the gap a deleted file left: unknown (all ones), it
/// searches from the start and fills the gap.
fn forget_next_free(img: &Path) {
    let mut raw = std::fs::read(img).unwrap();
    if u16::from_le_bytes([raw[22], raw[23]]) != 0 {
        return;
    }
    let fsinfo = u16::from_le_bytes([raw[48], raw[49]]) as usize * 512;
    assert_eq!(&raw[fsinfo..fsinfo + 4], b"RRaA");
    raw[fsinfo + 492..fsinfo + 496].copy_from_slice(&[0xff; 4]);
    std::fs::write(img, raw).unwrap();
}

fn fls_lines(img: &Path) -> BTreeSet<String> {
    let out = run(Command::new("fls")
        .args(["-r", "-m", "/", "-z", "UTC"])
        .arg(img));
    String::from_utf8(out)
        .unwrap()
        .lines()
        // TSK's virtual files ($MBR, $FAT1, $FAT2) and its $OrphanFiles
        // directory (types v and V) are not directory entries: left out.
        .filter(|l| {
            let mode = l.split('|').nth(3).unwrap_or("");
            !(mode.starts_with("v/") || mode.starts_with("V/"))
        })
        .map(orphan_key)
        .collect()
}

/// TSK names a FAT orphan `/$OrphanFiles/<its short name>` with no name
/// type (`-/r`); the walk names it `/$OrphanFiles/OrphanFile-<id>` and gives
/// the node's type. Orphan lines are compared without the name and the
/// name's type letter; every other field must be equal.
fn orphan_key(line: &str) -> String {
    let f: Vec<&str> = line.split('|').collect();
    if f.len() < 4 || !f[1].starts_with("/$OrphanFiles/") {
        return line.to_string();
    }
    let mut out: Vec<String> = f.iter().map(|s| s.to_string()).collect();
    out[1] = "/$OrphanFiles/? (deleted)".into();
    out[3] = format!("?{}", &f[3][1..]);
    out.join("|")
}

fn our_lines(fs: &dyn FileSystem) -> (BTreeSet<String>, Vec<walk::Record>, Vec<fs::Problem>) {
    let mut lines = BTreeSet::new();
    let mut records = Vec::new();
    let problems = walk::walk(fs, &mut |r| {
        for l in bodyfile::lines(&r) {
            lines.insert(orphan_key(&l));
        }
        records.push(r);
    });
    (lines, records, problems)
}

fn open(img: &Path) -> Box<dyn FileSystem> {
    let vol: Arc<dyn ReadAt> = Arc::new(FileImage::open(img).unwrap());
    fat::open(vol).unwrap()
}

fn read_all(fs: &dyn FileSystem, id: u64, size: u64) -> Vec<u8> {
    let extents = fs.extents(id).unwrap();
    let mut buf = vec![0u8; size as usize];
    let n = fs::read_data(fs.volume().as_ref(), &extents, size, 0, &mut buf).unwrap();
    buf.truncate(n);
    buf
}

fn check_against_tsk(img: &Path, label: &str) {
    let fs = open(img);
    let theirs = fls_lines(img);
    let (ours, records, problems) = our_lines(fs.as_ref());
    assert!(problems.is_empty(), "{label}: {problems:?}");
    let only_theirs: Vec<_> = theirs.difference(&ours).collect();
    let only_ours: Vec<_> = ours.difference(&theirs).collect();
    assert!(
        only_theirs.is_empty() && only_ours.is_empty(),
        "{label}: fls only: {only_theirs:#?}\nours only: {only_ours:#?}"
    );
    assert!(theirs.iter().any(|l| l.contains("(deleted)")), "{label}");
    assert!(theirs.iter().any(|l| l.contains("Volume Label")), "{label}");
    let mut files = 0;
    let mut fragmented = 0;
    for r in &records {
        let node = r.node.as_ref().unwrap();
        if node.kind != Kind::File || !node.allocated || r.path.ends_with(b"(Volume Label Entry)") {
            continue;
        }
        let ours = read_all(fs.as_ref(), r.id, node.size);
        let theirs = run(Command::new("icat").arg(img).arg(r.id.to_string()));
        assert_eq!(
            ours,
            theirs,
            "{label}: {} (entry {}) differs from icat",
            String::from_utf8_lossy(&r.path),
            r.id
        );
        files += 1;
        if fs.extents(r.id).unwrap().len() > 1 {
            fragmented += 1;
        }
    }
    assert!(files >= 5, "{label}: only {files} files compared");
    // Deleted files whose clusters are still free are recovered as TSK
    // recovers them: contiguous from the first cluster, skipping clusters
    // in use.
    let mut recovered = 0;
    for r in &records {
        let node = r.node.as_ref().unwrap();
        let extents = fs.extents(r.id).unwrap();
        if node.kind != Kind::File
            || node.allocated
            || node.size == 0
            || extents.iter().any(|x| x.physical.is_none())
        {
            continue;
        }
        let ours = read_all(fs.as_ref(), r.id, node.size);
        let theirs = run(Command::new("icat").arg(img).arg(r.id.to_string()));
        assert_eq!(
            ours, theirs,
            "{label}: deleted entry {} differs from icat",
            r.id
        );
        recovered += 1;
    }
    assert!(recovered >= 1, "{label}: no deleted file was compared");
    assert!(fragmented >= 1, "{label}: no fragmented file was compared");
}

#[test]
fn fat12_matches_fls_and_icat() {
    let dir = tempfile::tempdir().unwrap();
    let img = make(dir.path(), "f12.img", &[], 1440, 0);
    check_against_tsk(&img, "FAT12");
}

#[test]
fn fat16_matches_fls_and_icat() {
    let dir = tempfile::tempdir().unwrap();
    let img = make(dir.path(), "f16.img", &["-F", "16"], 20 * 1024, 40);
    check_against_tsk(&img, "FAT16");
}

#[test]
fn fat32_matches_fls_and_icat() {
    let dir = tempfile::tempdir().unwrap();
    let img = make(
        dir.path(),
        "f32.img",
        &["-F", "32", "-s", "1"],
        40 * 1024,
        40,
    );
    check_against_tsk(&img, "FAT32");
}

/// The boot sector's layout, read here independently of the reader.
struct Bpb {
    ssize: u64,
    csize: u64,
    fat_at: u64,
    first_clust_sect: u64,
    fat_bits: u32,
}

fn bpb(b: &[u8]) -> Bpb {
    let u16_at = |i: usize| u64::from(u16::from_le_bytes([b[i], b[i + 1]]));
    let ssize = u16_at(11);
    let csize = u64::from(b[13]);
    let reserved = u16_at(14);
    let fats = u64::from(b[16]);
    let root = u16_at(17);
    let fat16 = u16_at(22);
    let (spf, bits) = if fat16 == 0 {
        (
            u64::from(u32::from_le_bytes(b[36..40].try_into().unwrap())),
            32,
        )
    } else {
        (fat16, 16)
    };
    let first = reserved + fats * spf + (root * 32).div_ceil(ssize);
    Bpb {
        ssize,
        csize,
        fat_at: reserved * ssize,
        first_clust_sect: first,
        fat_bits: bits,
    }
}

fn cluster_of(b: &Bpb, phys: u64) -> u64 {
    (phys / b.ssize - b.first_clust_sect) / b.csize + 2
}

fn find<'a>(records: &'a [walk::Record], path: &str) -> &'a walk::Record {
    records
        .iter()
        .find(|r| r.path == path.as_bytes())
        .unwrap_or_else(|| panic!("{path} not walked"))
}

#[test]
fn a_looping_chain_is_read_up_to_the_loop_and_named() {
    let dir = tempfile::tempdir().unwrap();
    let img = make(dir.path(), "loop.img", &["-F", "16"], 20 * 1024, 0);
    let fs = open(&img);
    let (_, records, _) = our_lines(fs.as_ref());
    let large = find(&records, "/DOS/LARGE.BIN");
    let extents = fs.extents(large.id).unwrap();
    let mut raw = std::fs::read(&img).unwrap();
    let b = bpb(&raw);
    assert_eq!(b.fat_bits, 16);
    let first = cluster_of(&b, extents[0].physical.unwrap());
    let cb = b.ssize * b.csize;
    // The file's third cluster points back at its first.
    let third = first + 2;
    assert!(extents[0].len >= 3 * cb, "{extents:?}");
    let at = (b.fat_at + third * 2) as usize;
    raw[at..at + 2].copy_from_slice(&(first as u16).to_le_bytes());
    let bad = dir.path().join("looped.img");
    std::fs::write(&bad, &raw).unwrap();
    let fs = open(&bad);
    let size = fs.node(large.id).unwrap().size;
    let got = read_all(fs.as_ref(), large.id, size);
    let want = pattern(4, 70_000);
    let read = (3 * cb) as usize;
    assert_eq!(got[..read], want[..read], "read up to the loop");
    assert!(got[read..].iter().all(|&x| x == 0), "nothing past the loop");
    let problems = fs.problems();
    assert!(
        problems.iter().any(
            |p| p.what.contains(&format!("loops back to cluster {first}"))
                && p.at.contains(&large.id.to_string())
        ),
        "{problems:?}"
    );
}

#[test]
fn a_directory_pointing_at_its_parent_ends_the_walk_with_a_problem() {
    let dir = tempfile::tempdir().unwrap();
    let img = make(dir.path(), "dirloop.img", &["-F", "16"], 20 * 1024, 0);
    let fs = open(&img);
    let (_, records, _) = our_lines(fs.as_ref());
    let dir1 = find(&records, "/Dir1");
    let sub = find(&records, "/Dir1/Sub");
    let dir1_cluster = cluster_of(&bpb(&std::fs::read(&img).unwrap()), {
        fs.extents(dir1.id).unwrap()[0].physical.unwrap()
    });
    // Sub's entry lies in Dir1's cluster: point its start cluster at Dir1.
    let mut raw = std::fs::read(&img).unwrap();
    let b = bpb(&raw);
    let dir1_at = (b.first_clust_sect + (dir1_cluster - 2) * b.csize) * b.ssize;
    let sub_at = (0..b.ssize * b.csize)
        .step_by(32)
        .map(|o| (dir1_at + o) as usize)
        .find(|&o| &raw[o..o + 11] == b"SUB        ")
        .unwrap();
    raw[sub_at + 26..sub_at + 28].copy_from_slice(&(dir1_cluster as u16).to_le_bytes());
    let bad = dir.path().join("bad.img");
    std::fs::write(&bad, &raw).unwrap();
    let fs = open(&bad);
    let start = Instant::now();
    let (_, records, problems) = our_lines(fs.as_ref());
    assert!(start.elapsed() < Duration::from_secs(10));
    assert!(
        problems
            .iter()
            .any(|p| p.what.contains("directory loop") && p.at.contains(&sub.id.to_string())),
        "{problems:?}"
    );
    assert!(records.iter().any(|r| r.path == b"/Dir1/Sub/Sub"));
    assert!(
        !records
            .iter()
            .any(|r| r.path.starts_with(b"/Dir1/Sub/Sub/"))
    );
}

#[test]
fn a_corrupt_boot_sector_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let img = make(dir.path(), "boot.img", &[], 1440, 0);
    let mut raw = std::fs::read(&img).unwrap();
    raw[11] = 0;
    raw[12] = 0;
    let vol: Arc<dyn ReadAt> = Arc::new(raw.clone());
    let e = fat::open(vol).err().unwrap().to_string();
    assert!(
        e.contains("boot sector") && e.contains("sector size of 0"),
        "{e}"
    );
    raw[11..13].copy_from_slice(&512u16.to_le_bytes());
    raw[13] = 3;
    let vol: Arc<dyn ReadAt> = Arc::new(raw);
    let e = fat::open(vol).err().unwrap().to_string();
    assert!(e.contains("3 sectors per cluster"), "{e}");
}

#[test]
fn a_cut_image_gives_problems_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let img = make(dir.path(), "cut.img", &["-F", "16"], 20 * 1024, 0);
    let raw = std::fs::read(&img).unwrap();
    let b = bpb(&raw);
    // Cut inside the data area, after the first directories.
    let cut = ((b.first_clust_sect + 4 * b.csize) * b.ssize) as usize;
    let vol: Arc<dyn ReadAt> = Arc::new(raw[..cut].to_vec());
    let fs = fat::open(vol).unwrap();
    let (_, records, problems) = our_lines(fs.as_ref());
    assert!(
        problems
            .iter()
            .any(|p| p.what.contains("the volume is cut")),
        "{problems:?}"
    );
    assert!(!records.is_empty());
    for r in &records {
        if let (Some(n), Ok(x)) = (&r.node, fs.extents(r.id)) {
            let mut buf = vec![0u8; n.size.min(1 << 20) as usize];
            let _ = fs::read_data(fs.volume().as_ref(), &x, n.size, 0, &mut buf);
        }
    }
}

#[test]
fn a_long_name_whose_checksum_is_not_its_short_entrys_falls_back_to_the_short_name() {
    let dir = tempfile::tempdir().unwrap();
    let img = make(dir.path(), "lfn.img", &[], 1440, 0);
    let mut raw = std::fs::read(&img).unwrap();
    let b = bpb(&raw);
    // FAT12's root directory lies just before the clusters.
    let root_at = (b.first_clust_sect * b.ssize) as usize - 224 * 32;
    let short = (0..224)
        .map(|i| root_at + i * 32)
        .find(|&o| &raw[o..o + 8] == b"ALONGF~1")
        .unwrap();
    // Both long-name slots before it get a checksum of another name.
    for slot in [short - 32, short - 64] {
        assert_eq!(raw[slot + 11], 0x0f);
        raw[slot + 13] = raw[slot + 13].wrapping_add(1);
    }
    let vol: Arc<dyn ReadAt> = Arc::new(raw);
    let fs = fat::open(vol).unwrap();
    let (_, records, _) = our_lines(fs.as_ref());
    assert!(records.iter().any(|r| r.path == b"/ALONGF~1.TXT"));
    assert!(!records.iter().any(|r| r.path.starts_with(b"/A long")));
}

mod mutated {
    use super::*;
    use proptest::prelude::*;

    fn image() -> &'static Vec<u8> {
        static IMG: OnceLock<Vec<u8>> = OnceLock::new();
        IMG.get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let img = make(dir.path(), "p.img", &[], 1440, 0);
            std::fs::read(img).unwrap()
        })
    }

    /// Opens, walks, and reads every file of an image: only that it
    /// returns, in time, is checked.
    fn exercise(raw: Vec<u8>) {
        let start = Instant::now();
        let vol: Arc<dyn ReadAt> = Arc::new(raw);
        if let Ok(fs) = fat::open(vol) {
            let (_, records, _) = our_lines(fs.as_ref());
            for r in records.iter().take(2000) {
                let _ = fs.node(r.id);
                if let Ok(x) = fs.extents(r.id) {
                    let size = r.node.as_ref().map_or(0, |n| n.size.min(1 << 20));
                    let mut buf = vec![0u8; size as usize];
                    let _ = fs::read_data(fs.volume().as_ref(), &x, size, 0, &mut buf);
                }
            }
            for id in [0, 1, 2, 3, u64::MAX, 40_000] {
                let _ = fs.node(id);
                let _ = fs.read_dir(id);
                let _ = fs.extents(id);
            }
        }
        assert!(start.elapsed() < Duration::from_secs(5));
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        #[test]
        fn mutated_metadata_never_panics(
            writes in prop::collection::vec((0usize..40_000, any::<u8>()), 1..64),
            cut in prop::option::of(0usize..1_474_560),
        ) {
            let mut raw = image().clone();
            // The boot sector, the FATs, the root directory and the first
            // clusters (directories) lie in the first 40 KB.
            for (at, b) in writes {
                raw[at] = b;
            }
            if let Some(cut) = cut {
                raw.truncate(cut);
            }
            exercise(raw);
        }
    }
}
