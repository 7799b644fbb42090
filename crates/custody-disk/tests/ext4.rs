//! The ext4 reader against The Sleuth Kit, on images made by `mkfs.ext4 -d`
//! and changed with `debugfs`: the bodyfile our walk writes must be the
//! one `fls -r -m /` prints, line for line, deleted names and orphans
//! included, and each allocated file's bytes read through our extents must
//! be what `icat` gives.
//!
//! Tools: e2fsprogs (mkfs.ext4, e2fsck, debugfs) and sleuthkit (fls, icat),
//! installed in CI by `scripts/emulators.sh`.

// Test helpers outside #[test] functions: clippy's test allowances do not
// reach them.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use custody_disk::FileImage;
use custody_disk::fs::{self, Kind, bodyfile, ext4, walk};
use proptest::prelude::*;

fn run(tool: &str, args: &[&str]) -> std::process::Output {
    Command::new(tool).args(args).output().unwrap_or_else(|e| {
        panic!("{tool} could not run ({e}): install e2fsprogs and sleuthkit (scripts/emulators.sh)")
    })
}

/// Runs a tool that must succeed (e2fsck's 1 means "fixed", also success).
fn ok(tool: &str, args: &[&str]) -> Vec<u8> {
    let out = run(tool, args);
    let code = out.status.code().unwrap_or(-1);
    assert!(
        code == 0 || (tool == "e2fsck" && code == 1),
        "{tool} {args:?} failed ({code}): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn debugfs(img: &Path, cmds: &str) {
    let dir = img.parent().unwrap();
    let script = dir.join("cmds");
    std::fs::write(&script, cmds).unwrap();
    let out = run(
        "debugfs",
        &["-w", "-f", script.to_str().unwrap(), img.to_str().unwrap()],
    );
    assert!(
        out.status.success(),
        "debugfs: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    // debugfs reports a failed command on stderr but exits 0.
    for line in err.lines() {
        assert!(
            !line.contains(": ") || line.starts_with("debugfs "),
            "debugfs command failed: {line}\n{err}"
        );
    }
}

/// Deterministic bytes, different per seed.
fn bytes(seed: u32, n: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(12345);
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// The tree every image starts from.
fn make_tree(root: &Path, many: usize) {
    let w = |p: &str, data: &[u8]| {
        let p = root.join(p);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, data).unwrap();
    };
    w("hello.txt", b"hello, world\n");
    w("empty", b"");
    w("tiny", b"x");
    w("docs/readme.md", &bytes(1, 5000));
    w("docs/deep/er/still/file.bin", &bytes(2, 70_000));
    w("docs/exact", b"times set by debugfs\n");
    w("del/keep1", b"keep one\n");
    w("del/gone1", &bytes(3, 3000));
    w("del/killed", &bytes(4, 9000));
    w("del/unlinked", b"still allocated\n");
    w("del/keep2", b"keep two\n");
    w("del2/first", b"first\n");
    w("del2/replace_me", b"its name will be written over\n");
    w("del2/last", b"last\n");
    std::fs::create_dir_all(root.join("del/emptydir")).unwrap();
    for i in 0..40 {
        w(&format!("frag/h{i:02}"), &bytes(100 + i, 8192));
    }
    for i in 0..many {
        // Long names fill leaf blocks, so 1 KiB images get interior nodes.
        // Empty files: with no data blocks between them, the directory's
        // blocks are contiguous. (TSK 4.11 cannot read a directory whose
        // extent tree has several leaf blocks: "No filler entry".)
        w(
            &format!("many/entry-{i:05}-{}", "n".repeat(60 + i % 17)),
            b"",
        );
    }
    std::os::unix::fs::symlink("hello.txt", root.join("fast-link")).unwrap();
    std::os::unix::fs::symlink("x".repeat(200), root.join("slow-link")).unwrap();
    std::os::unix::fs::symlink("docs/deep/er", root.join("docs/dir-link")).unwrap();
}

/// Exact times written into `/docs/exact` (seconds, nanoseconds).
const ATIME: (i64, u32) = (1_600_000_001, 111_111_111);
const MTIME: (i64, u32) = (1_500_000_002, 222_222_222);
const CTIME: (i64, u32) = (1_400_000_003, 333_333_333);
const CRTIME: (i64, u32) = (1_300_000_004, 444_444_444);

struct Image {
    _dir: tempfile::TempDir,
    path: PathBuf,
    /// The inode made into an orphan by hand.
    fabricated_orphan: u64,
}

fn make_image(mkfs: &[&str], size: &str, many: usize) -> Image {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    std::fs::create_dir(&tree).unwrap();
    make_tree(&tree, many);
    let img = dir.path().join("img");
    let mut args = vec!["-q", "-F"];
    args.extend_from_slice(mkfs);
    args.extend_from_slice(&["-d", tree.to_str().unwrap(), img.to_str().unwrap(), size]);
    ok("mkfs.ext4", &args);
    // Index every directory big enough: the many-entry one becomes an htree.
    ok("e2fsck", &["-fyD", img.to_str().unwrap()]);
    let big = dir.path().join("big.bin");
    std::fs::write(&big, bytes(7, 300 * 1024)).unwrap();
    let free = String::from_utf8(ok("debugfs", &["-R", "ffi", img.to_str().unwrap()])).unwrap();
    let free: u64 = free
        .split_whitespace()
        .last()
        .and_then(|w| w.parse().ok())
        .expect("ffi gives a free inode");
    let orphan = free + 3;
    let mut cmds = String::new();
    for (field, (s, ns)) in [
        ("atime", ATIME),
        ("mtime", MTIME),
        ("ctime", CTIME),
        ("crtime", CRTIME),
    ] {
        cmds += &format!("set_inode_field /docs/exact {field} @{s}\n");
        cmds += &format!("set_inode_field /docs/exact {field}_extra {}\n", ns << 2);
    }
    cmds += "set_inode_field /docs/exact uid 1234\nset_inode_field /docs/exact gid 5678\n";
    cmds += "set_inode_field /docs/exact mode 0104755\n";
    // Free every other 8 KiB file, then write a big file into the holes:
    // it comes out in many extents.
    for i in (0..40).step_by(2) {
        cmds += &format!("rm /frag/h{i:02}\n");
    }
    cmds += &format!("write {} /frag/big\n", big.to_str().unwrap());
    // A deleted name in slack, a freed inode a live name still leads to,
    // and a live inode only a deleted name leads to.
    cmds += "rm /del/gone1\nkill_file /del/killed\nunlink /del/unlinked\nrmdir /del/emptydir\n";
    // A deleted name written over by a new one of the same length: its
    // inode is freed and unnamed, an orphan.
    cmds += "rm /del2/replace_me\n";
    cmds += &format!("write {} /del2/replaced_m\n", big.to_str().unwrap());
    // A freed inode made by hand in an unused slot.
    for f in [
        "mode 0100640",
        "links_count 0",
        "size 4321",
        "uid 42",
        "gid 43",
        "atime @1234567890",
        "mtime @1234567891",
        "ctime @1234567892",
        "dtime @1234567893",
    ] {
        cmds += &format!("set_inode_field <{orphan}> {f}\n");
    }
    debugfs(&img, &cmds);
    Image {
        _dir: dir,
        path: img,
        fabricated_orphan: orphan,
    }
}

fn open(path: &Path) -> Box<dyn fs::FileSystem> {
    ext4::open(Arc::new(FileImage::open(path).unwrap())).unwrap()
}

struct Ours {
    lines: BTreeSet<String>,
    records: Vec<walk::Record>,
    problems: Vec<fs::Problem>,
}

fn ours(fs: &dyn fs::FileSystem) -> Ours {
    let mut lines = BTreeSet::new();
    let mut records = Vec::new();
    let problems = walk::walk(fs, &mut |r| {
        lines.extend(bodyfile::lines(&r));
        records.push(r);
    });
    Ours {
        lines,
        records,
        problems,
    }
}

/// `fls -r -m /`, as a set of lines, with the `$OrphanFiles` directory's
/// own line (type `V`, a TSK virtual entry, not a node of the file system)
/// left out. Symlink targets (` -> target`) and reallocated names
/// (`(deleted-realloc)`) are also returned, to be checked against the
/// bytes our extents give and our nodes' `allocated`.
struct Fls {
    lines: BTreeSet<String>,
    links: BTreeMap<String, String>,
    realloc: BTreeSet<String>,
}

fn fls(img: &Path) -> Fls {
    let out = ok("fls", &["-r", "-m", "/", img.to_str().unwrap()]);
    let out = String::from_utf8_lossy(&out);
    let mut f = Fls {
        lines: BTreeSet::new(),
        links: BTreeMap::new(),
        realloc: BTreeSet::new(),
    };
    for line in out.lines() {
        let fields: Vec<&str> = line.split('|').collect();
        assert_eq!(fields.len(), 11, "{line}");
        if fields[3].starts_with("V/") {
            continue;
        }
        // TSK reads an htree's index blocks as if they held names, and
        // finds some in the hash/block pairs. Every name put in /many
        // starts "entry-", and none is deleted: any other is such a
        // phantom, which our reader rightly does not list.
        if fields[1].starts_with("/many/") && !fields[1].starts_with("/many/entry-") {
            continue;
        }
        let name = fields[1];
        if let Some(rest) = name.strip_suffix(" (deleted-realloc)") {
            f.realloc.insert(rest.to_string());
        }
        if let Some(at) = name.find(" -> ")
            && fields[3].as_bytes().get(2) == Some(&b'l')
        {
            let (path, rest) = name.split_at(at);
            let target = rest[4..].trim_end_matches(" (deleted)").to_string();
            f.links.insert(path.to_string(), target);
        }
        f.lines.insert(fields.join("|"));
    }
    f
}

fn read_all(fs: &dyn fs::FileSystem, id: u64) -> Vec<u8> {
    let node = fs.node(id).unwrap();
    let extents = fs.extents(id).unwrap();
    let mut buf = vec![0u8; usize::try_from(node.size).unwrap()];
    let n = fs::read_data(fs.volume().as_ref(), &extents, node.size, 0, &mut buf).unwrap();
    buf.truncate(n);
    buf
}

fn path_str(r: &walk::Record) -> String {
    String::from_utf8_lossy(&r.path).into_owned()
}

/// The whole comparison for one image.
fn check(img: &Image, label: &str) {
    let fs = open(&img.path);
    let mut ours = ours(fs.as_ref());
    let theirs = fls(&img.path);
    if label.starts_with("ext2") || label.starts_with("ext3") {
        // TSK reads the birth time on what it calls ext4 only (extents and
        // the like); mkfs's 256-byte ext2/3 inodes hold one all the same,
        // which we read. Ours is left out for the comparison.
        ours.lines = ours
            .lines
            .iter()
            .map(|l| format!("{}|0", l.rsplit_once('|').unwrap().0))
            .collect();
    }
    // TSK 4.11 names the target of fast and block-mapped symlinks only; for
    // a slow symlink in an extent tree it prints the bare name. Ours names
    // it (checked against the target's bytes below); it is cut where fls
    // has the bare line.
    ours.lines = ours
        .lines
        .iter()
        .map(|l| {
            let f: Vec<&str> = l.split('|').collect();
            match f[1].split_once(" -> ") {
                Some((path, _)) if f[3].starts_with("l/") => {
                    let bare = [&f[..1], &[path], &f[2..]].concat().join("|");
                    if theirs.lines.contains(&bare) {
                        bare
                    } else {
                        l.clone()
                    }
                }
                _ => l.clone(),
            }
        })
        .collect();

    let only_ours: Vec<_> = ours.lines.difference(&theirs.lines).collect();
    let only_theirs: Vec<_> = theirs.lines.difference(&ours.lines).collect();
    assert!(
        only_ours.is_empty() && only_theirs.is_empty(),
        "{label}: bodyfiles differ\nonly ours:\n{}\nonly fls:\n{}",
        only_ours
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join("\n"),
        only_theirs
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join("\n"),
    );

    let by_path: BTreeMap<String, &walk::Record> =
        ours.records.iter().map(|r| (path_str(r), r)).collect();
    // What fls marked as reallocated is what our nodes call allocated.
    for p in &theirs.realloc {
        let r = by_path
            .get(p)
            .unwrap_or_else(|| panic!("{label}: {p} not walked"));
        assert!(r.node.as_ref().unwrap().allocated, "{label}: {p}");
    }
    // Symlink targets fls read are what our extents hold.
    for (p, target) in &theirs.links {
        let r = by_path[p];
        let data = read_all(fs.as_ref(), r.id);
        assert_eq!(&bodyfile::clean_name(&data), target, "{label}: {p}");
    }
    // Every allocated regular file's bytes against icat (all but the bulk
    // of the many-entry directory, of which a sample).
    let mut compared = 0;
    for r in &ours.records {
        let Some(n) = &r.node else { continue };
        let p = path_str(r);
        let sample = !p.starts_with("/many/") || p.contains("-0000");
        if n.kind != Kind::File || !n.allocated || r.deleted || !sample {
            continue;
        }
        let want = ok("icat", &[img.path.to_str().unwrap(), &r.id.to_string()]);
        let got = read_all(fs.as_ref(), r.id);
        assert!(
            got == want,
            "{label}: {p} (inode {}) differs from icat",
            r.id
        );
        compared += 1;
    }
    assert!(compared > 20, "{label}: only {compared} files compared");

    // The cases each image must hold, so that the comparison covers them.
    assert!(by_path["/del/gone1"].deleted, "{label}");
    let killed = by_path["/del/killed"];
    assert!(!killed.deleted && !killed.node.as_ref().unwrap().allocated);
    assert!(killed.node.as_ref().unwrap().times.deleted.is_some());
    assert!(by_path["/del/unlinked"].deleted);
    let orphan = format!("/$OrphanFiles/OrphanFile-{}", img.fabricated_orphan);
    let o = by_path
        .get(&orphan)
        .unwrap_or_else(|| panic!("{label}: no {orphan}"));
    let on = o.node.as_ref().unwrap();
    assert_eq!((on.size, on.uid, on.gid), (4321, 42, 43));
    assert_eq!(on.times.deleted.unwrap().secs, 1_234_567_893);
    assert!(
        ours.records.iter().filter(|r| r.orphan).count() >= 2,
        "{label}: the overwritten name's inode is an orphan too"
    );
    // Exact times, to the nanosecond, against what debugfs wrote.
    let t = by_path["/docs/exact"].node.as_ref().unwrap();
    assert_eq!((t.uid, t.gid, t.mode), (1234, 5678, 0o4755));
    let ns = |x: Option<fs::Time>| x.map(|t| (t.secs, t.nanos));
    assert_eq!(ns(t.times.accessed), Some(ATIME), "{label}");
    assert_eq!(ns(t.times.modified), Some(MTIME), "{label}");
    assert_eq!(ns(t.times.changed), Some(CTIME), "{label}");
    assert_eq!(ns(t.times.born), Some(CRTIME), "{label}");
    // The fragmented file really is in many pieces.
    let big = by_path["/frag/big"];
    let pieces = fs.extents(big.id).unwrap().len();
    assert!(pieces >= 5, "{label}: /frag/big in {pieces} extents");
    // No problems on a clean image, but for the inode-0 names fls lists.
    for p in &ours.problems {
        assert!(p.at == "inode 0", "{label}: {p:?}");
    }
}

#[test]
fn default_ext4_matches_fls() {
    check(&make_image(&[], "32M", 2100), "default");
}

#[test]
fn ext4_without_journal_matches_fls() {
    check(
        &make_image(&["-O", "^has_journal"], "32M", 2100),
        "no journal",
    );
}

#[test]
fn ext4_with_1k_blocks_matches_fls() {
    check(&make_image(&["-b", "1024"], "48M", 2100), "1k blocks");
}

#[test]
fn ext4_with_inline_data_matches_fls() {
    let img = make_image(&["-O", "inline_data"], "32M", 300);
    check(&img, "inline data");
    // Small files are inline there: their one extent lies in an inode.
    let fs = open(&img.path);
    let id = ours(fs.as_ref())
        .records
        .iter()
        .find(|r| r.path == b"/hello.txt")
        .unwrap()
        .id;
    let x = fs.extents(id).unwrap();
    assert_eq!(x.len(), 1);
    assert!(x[0].physical.unwrap() % 1024 != 0, "{x:?}");
}

#[test]
fn ext3_and_ext2_block_maps_match_fls() {
    check(&make_image(&["-t", "ext3"], "32M", 2100), "ext3");
    check(
        &make_image(&["-t", "ext2", "-b", "1024"], "32M", 300),
        "ext2",
    );
}

#[test]
fn wrong_magic_is_a_clear_error() {
    let mut img = std::fs::read(make_image(&[], "8M", 10).path).unwrap();
    img[1024 + 0x38] = 0;
    let err = ext4::open(Arc::new(img)).err().unwrap().to_string();
    assert!(err.contains("magic") && err.contains("byte"), "{err}");
    let err = ext4::open(Arc::new(vec![0u8; 100]))
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("superblock"), "{err}");
}

/// The image's bytes and the fs over them.
fn load(img: &Image) -> Vec<u8> {
    std::fs::read(&img.path).unwrap()
}

fn inode_offset(fs_bytes: &[u8], ino: u64) -> usize {
    // Group 0 only: the tests pick inodes there.
    let bs =
        1024usize << u32::from_le_bytes(fs_bytes[1024 + 0x18..1024 + 0x1C].try_into().unwrap());
    let gdt = if bs == 1024 { 2048 } else { bs };
    let table = u32::from_le_bytes(fs_bytes[gdt + 8..gdt + 12].try_into().unwrap()) as usize;
    let isz = u16::from_le_bytes(fs_bytes[1024 + 0x58..1024 + 0x5A].try_into().unwrap()) as usize;
    table * bs + (ino as usize - 1) * isz
}

#[test]
fn a_directory_that_contains_itself_ends_the_walk_with_a_problem() {
    let img = make_image(&["-O", "^metadata_csum"], "8M", 10);
    let fs = open(&img.path);
    let docs = ours(fs.as_ref())
        .records
        .iter()
        .find(|r| r.path == b"/docs")
        .unwrap()
        .id;
    drop(fs);
    // /docs/deep's entry now names /docs itself.
    debugfs(
        &img.path,
        &format!("unlink /docs/deep\nln <{docs}> /docs/deep\n"),
    );
    let fs = open(&img.path);
    let start = Instant::now();
    let o = ours(fs.as_ref());
    assert!(start.elapsed() < Duration::from_secs(10));
    assert!(
        o.problems.iter().any(|p| p.what.contains("loop")),
        "{:?}",
        o.problems
    );
    assert!(o.records.iter().any(|r| r.path == b"/docs/deep"));
}

#[test]
fn a_cut_image_lists_what_lies_before_the_cut() {
    let img = make_image(&[], "32M", 2100);
    let full = ours(open(&img.path).as_ref());
    let mut bytes = load(&img);
    // Cut inside the first group's inode table's end and what follows.
    let cut = bytes.len() / 3;
    bytes.truncate(cut);
    let fs = ext4::open(Arc::new(bytes)).unwrap();
    let o = ours(fs.as_ref());
    assert!(
        o.problems.iter().any(|p| p.at == format!("byte {cut}")),
        "{:?}",
        &o.problems[..o.problems.len().min(5)]
    );
    assert!(o.records.iter().any(|r| r.path == b"/hello.txt"));
    assert!(o.records.len() > 10 && o.records.len() <= full.records.len());
    // Data past the cut is an error naming its place, not garbage.
    for r in o
        .records
        .iter()
        .filter(|r| r.node.as_ref().is_some_and(|n| n.kind == Kind::File))
    {
        if let Err(e) = fs.extents(r.id) {
            assert!(e.to_string().contains(&format!("inode {}", r.id)), "{e}");
        }
    }
}

#[test]
fn a_directory_cut_in_the_middle_keeps_the_names_before_the_cut() {
    let img = make_image(&[], "32M", 2100);
    let full = ours(open(&img.path).as_ref());
    let many: BTreeSet<Vec<u8>> = full
        .records
        .iter()
        .filter(|r| r.path.starts_with(b"/many/"))
        .map(|r| r.path.clone())
        .collect();
    assert_eq!(many.len(), 2100);
    // debugfs names the directory's blocks; the image is cut half way
    // through them.
    let listed = String::from_utf8(ok(
        "debugfs",
        &["-R", "blocks /many", img.path.to_str().unwrap()],
    ))
    .unwrap();
    let blocks: Vec<u64> = listed
        .split_whitespace()
        .map(|b| b.parse().unwrap())
        .collect();
    assert!(blocks.len() > 20, "{blocks:?}");
    let cut_block = blocks[blocks.len() / 2];
    let mut bytes = load(&img);
    let bs = 1024u64 << u32::from_le_bytes(bytes[1024 + 0x18..1024 + 0x1C].try_into().unwrap());
    let cut = usize::try_from(cut_block * bs).unwrap();
    bytes.truncate(cut);
    let fs = ext4::open(Arc::new(bytes)).unwrap();
    let id = full.records.iter().find(|r| r.path == b"/many").unwrap().id;
    let (entries, problems) = fs.read_dir_partial(id);
    assert!(
        problems.iter().any(|p| p
            .to_string()
            .contains(&format!("directory inode {id} at byte {cut}"))),
        "{problems:?}"
    );
    assert!(
        fs.read_dir(id).is_err(),
        "the whole answer says it is partial"
    );
    let o = ours(fs.as_ref());
    let kept: BTreeSet<Vec<u8>> = o
        .records
        .iter()
        .filter(|r| r.path.starts_with(b"/many/"))
        .map(|r| r.path.clone())
        .collect();
    // The names of the blocks before the cut, and only real ones.
    assert!(kept.len() > 100 && kept.len() < 2100, "{}", kept.len());
    assert!(kept.is_subset(&many));
    assert!(entries.len() >= kept.len());
    assert!(
        o.problems
            .iter()
            .any(|p| p.at == format!("directory inode {id} at byte {cut}")),
        "{:?}",
        &o.problems[..o.problems.len().min(5)]
    );
}

#[test]
fn an_extent_past_the_volume_end_names_its_inode() {
    let img = make_image(&["-O", "^metadata_csum"], "8M", 10);
    let fs = open(&img.path);
    let o = ours(fs.as_ref());
    let r = o
        .records
        .iter()
        .find(|r| r.path == b"/docs/readme.md")
        .unwrap();
    let id = r.id;
    drop(fs);
    let mut bytes = load(&img);
    let at = inode_offset(&bytes, id);
    // i_block: extent header (12 bytes), then the first extent's start_lo.
    bytes[at + 0x28 + 12 + 8..at + 0x28 + 12 + 12].copy_from_slice(&0x00ff_fff0u32.to_le_bytes());
    let fs = ext4::open(Arc::new(bytes)).unwrap();
    let err = fs.extents(id).err().unwrap().to_string();
    assert!(
        err.contains(&format!("inode {id}")) && err.contains("past"),
        "{err}"
    );
    // The walk still lists it.
    assert!(ours(fs.as_ref()).records.iter().any(|r| r.id == id));
}

#[test]
fn a_bad_checksum_is_a_problem_not_an_error() {
    let img = make_image(&[], "8M", 10);
    let mut bytes = load(&img);
    bytes[1024 + 0x1C0] ^= 0xff; // s_last_mounted: harmless, but checksummed
    let fs = ext4::open(Arc::new(bytes)).unwrap();
    let p = fs.problems();
    assert!(p.iter().any(|p| p.what.contains("checksum")), "{p:?}");
    assert!(!ours(fs.as_ref()).records.is_empty());
}

#[test]
fn any_inode_number_is_an_answer_not_a_panic() {
    let img = make_image(&[], "8M", 10);
    let fs = open(&img.path);
    for id in [
        0,
        1,
        3,
        7,
        11,
        12,
        2047,
        2048,
        2049,
        u64::from(u32::MAX),
        u64::MAX,
    ] {
        let _ = fs.node(id);
        let _ = fs.read_dir(id);
        let _ = fs.extents(id);
    }
    assert!(fs.node(0).is_err() && fs.node(u64::MAX).is_err());
}

/// A small real image, made once, for the mutation property.
fn seed_image() -> &'static Vec<u8> {
    static IMG: OnceLock<Vec<u8>> = OnceLock::new();
    IMG.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let tree = dir.path().join("tree");
        std::fs::create_dir(&tree).unwrap();
        std::fs::create_dir_all(tree.join("d/e")).unwrap();
        for i in 0..60 {
            std::fs::write(tree.join(format!("d/f{i}")), bytes(i, 100 * i as usize)).unwrap();
        }
        std::fs::write(tree.join("d/e/big"), bytes(99, 200_000)).unwrap();
        std::os::unix::fs::symlink("d/f1", tree.join("l")).unwrap();
        let img = dir.path().join("img");
        ok(
            "mkfs.ext4",
            &[
                "-q",
                "-F",
                "-b",
                "1024",
                "-N",
                "128",
                "-d",
                tree.to_str().unwrap(),
                img.to_str().unwrap(),
                "1M",
            ],
        );
        debugfs(&img, "rm /d/f3\nrm /d/f10\nkill_file /d/f20\n");
        std::fs::read(img).unwrap()
    })
}

fn exercise(bytes: Vec<u8>) {
    let Ok(fs) = ext4::open(Arc::new(bytes)) else {
        return;
    };
    let mut ids = Vec::new();
    let _ = walk::walk(fs.as_ref(), &mut |r| {
        let _ = bodyfile::lines(&r);
        ids.push(r.id);
    });
    for id in ids.into_iter().take(200) {
        if let (Ok(n), Ok(x)) = (fs.node(id), fs.extents(id)) {
            let mut buf = vec![0u8; n.size.min(1 << 20) as usize];
            let _ = fs::read_data(fs.volume().as_ref(), &x, n.size, 0, &mut buf);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn mutated_images_never_panic(
        writes in prop::collection::vec((0usize..96 * 1024, any::<u8>()), 1..48),
        cut in prop::option::of(0usize..1024 * 1024),
    ) {
        let mut img = seed_image().clone();
        // The metadata lives in the first ~100 KiB of this 1 KiB-block image.
        for (at, b) in writes {
            if let Some(x) = img.get_mut(at) {
                *x = b;
            }
        }
        if let Some(cut) = cut {
            img.truncate(cut);
        }
        let start = Instant::now();
        exercise(img);
        prop_assert!(start.elapsed() < Duration::from_secs(5));
    }
}

/// The speed check: `cargo test --release -p custody-disk --test ext4 -- --ignored --nocapture`.
#[test]
#[ignore]
fn speed_against_fls() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    for d in 0..200 {
        let sub = tree.join(format!("dir{d:03}"));
        std::fs::create_dir_all(&sub).unwrap();
        for f in 0..100 {
            std::fs::write(
                sub.join(format!("file{f:03}")),
                bytes(d * 100 + f, 4096 + 37 * f as usize),
            )
            .unwrap();
        }
    }
    let img = dir.path().join("img");
    ok(
        "mkfs.ext4",
        &[
            "-q",
            "-F",
            "-d",
            tree.to_str().unwrap(),
            img.to_str().unwrap(),
            "200M",
        ],
    );
    let t = Instant::now();
    let fls_out = ok("fls", &["-r", "-m", "/", img.to_str().unwrap()]);
    let fls_time = t.elapsed();
    let t = Instant::now();
    let fs = open(&img);
    let mut out = Vec::new();
    let mut n = 0;
    walk::walk(fs.as_ref(), &mut |r| {
        bodyfile::write(&mut out, &r).unwrap();
        n += 1;
    });
    let our_time = t.elapsed();
    println!(
        "{n} names; ours {our_time:?} ({} bytes), fls -r -m / {fls_time:?} ({} bytes)",
        out.len(),
        fls_out.len()
    );
}
