//! Device numbers and extended attributes through the `FileSystem` seam,
//! against the directory an image was made from: `mkfs.ext4 -d` copies
//! device nodes and every extended attribute (`trusted.` included, as
//! root), and an XFS image is filled through a read-write loop mount. The
//! oracle is `lstat`'s `st_rdev` and `getfattr -d -m -` on the source.
//!
//! Needs root (trusted attributes, device nodes, loop mounts), e2fsprogs,
//! xfsprogs, attr (getfattr, setfattr), util-linux, mount, coreutils
//! (`scripts/emulators.sh`).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[path = "support/tools.rs"]
mod tools;

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use custody_disk::fs::{self, FileSystem, Kind};
use custody_disk::{FileImage, ReadAt};
use proptest::prelude::*;

const PACKAGES: &str = "e2fsprogs, xfsprogs, attr, util-linux, mount, coreutils";

fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e} (scripts/emulators.sh installs it)"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn need_root() {
    let out = Command::new("id").arg("-u").output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "0",
        "these tests make device nodes and trusted attributes: run them as root"
    );
}

/// The names made in `dir`: overlay's opaque directory, whiteouts and
/// other devices, attributes small (in the inode) and large (ext4's
/// attribute block).
fn populate(dir: &Path) {
    for t in ["setfattr", "getfattr", "mknod"] {
        tools::require(t, PACKAGES);
    }
    std::fs::create_dir(dir.join("opq")).unwrap();
    std::fs::create_dir(dir.join("plain")).unwrap();
    std::fs::write(dir.join("opq/kept"), b"k").unwrap();
    std::fs::write(dir.join("big"), b"b").unwrap();
    let set = |name: &str, value: &str, path: &str| {
        run(Command::new("setfattr")
            .args(["-n", name, "-v", value])
            .arg(dir.join(path)));
    };
    set("trusted.overlay.opaque", "y", "opq");
    set("user.note", "hello", "opq");
    set("user.large", &"x".repeat(1500), "big");
    set("security.tag", "0x00ff10", "big");
    set("trusted.overlay.origin", "0x00fb2100", "big");
    for (name, kind, major, minor) in [
        ("wh", "c", 0, 0),
        ("null", "c", 1, 3),
        ("wide", "c", 300, 70000),
        ("disk", "b", 8, 1),
    ] {
        run(Command::new("mknod").arg(dir.join(name)).args([
            kind,
            &major.to_string(),
            &minor.to_string(),
        ]));
    }
}

/// Every attribute `getfattr` lists for `path`, with its value.
fn getfattr(path: &Path) -> BTreeMap<String, Vec<u8>> {
    let out = run(Command::new("getfattr")
        .args(["-h", "-d", "-m", "-", "-e", "hex", "--absolute-names"])
        .arg(path));
    out.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| {
            let hex = v.trim_start_matches("0x");
            let bytes = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                .collect();
            (k.to_owned(), bytes)
        })
        .collect()
}

/// glibc's `major`/`minor` of an `st_rdev`.
fn split_dev(d: u64) -> (u32, u32) {
    (
        (((d >> 8) & 0xfff) | ((d >> 32) & !0xfff)) as u32,
        ((d & 0xff) | ((d >> 12) & !0xff)) as u32,
    )
}

fn lookup(f: &dyn FileSystem, name: &str) -> u64 {
    let mut id = f.root();
    for part in name.split('/') {
        id = f
            .read_dir(id)
            .unwrap()
            .into_iter()
            .find(|e| e.name == part.as_bytes())
            .unwrap_or_else(|| panic!("{name} not in the image"))
            .id;
    }
    id
}

/// Every name of `src` read through `f`: the same device numbers and the
/// same attributes, each by name, and none that is not there.
fn compare(f: &dyn FileSystem, src: &Path) {
    let names = [
        "opq", "opq/kept", "plain", "big", "wh", "null", "wide", "disk",
    ];
    for name in names {
        let id = lookup(f, name);
        let meta = std::fs::symlink_metadata(src.join(name)).unwrap();
        let node = f.node(id).unwrap();
        let want = matches!(node.kind, Kind::CharDevice | Kind::BlockDevice)
            .then(|| split_dev(meta.rdev()));
        assert_eq!(f.rdev(id).unwrap(), want, "{name}");
        let attrs = getfattr(&src.join(name));
        for (k, v) in &attrs {
            if k.starts_with("system.") {
                continue;
            }
            assert_eq!(
                f.xattr(id, k.as_bytes()).unwrap().as_ref(),
                Some(v),
                "{name} {k}"
            );
        }
        for absent in ["trusted.overlay.opaque", "user.nothing", "security.none"] {
            if !attrs.contains_key(absent) {
                assert_eq!(f.xattr(id, absent.as_bytes()).unwrap(), None, "{name}");
            }
        }
    }
    assert_eq!(f.rdev(lookup(f, "wh")).unwrap(), Some((0, 0)));
    assert_eq!(f.rdev(lookup(f, "wide")).unwrap(), Some((300, 70000)));
    let opq = lookup(f, "opq");
    assert_eq!(
        f.xattr(opq, b"trusted.overlay.opaque").unwrap().as_deref(),
        Some(&b"y"[..])
    );
}

fn ext4_image(dir: &Path) -> std::path::PathBuf {
    tools::require("mkfs.ext4", PACKAGES);
    let src = dir.join("src");
    std::fs::create_dir(&src).unwrap();
    populate(&src);
    let img = dir.join("ext4.img");
    run(Command::new("mkfs.ext4")
        .args(["-q", "-F", "-b", "4096", "-I", "256", "-d"])
        .arg(&src)
        .arg(&img)
        .arg("4M"));
    img
}

#[test]
fn ext4_devices_and_attributes_match_the_source_directory() {
    need_root();
    let dir = tempfile::tempdir().unwrap();
    let img = ext4_image(dir.path());
    // mkfs.ext4 -d copied the trusted attribute (debugfs says so too).
    let ea = run(Command::new("debugfs")
        .args(["-R", "ea_list /opq"])
        .arg(&img));
    assert!(ea.contains("trusted.overlay.opaque"), "{ea}");
    let vol: Arc<dyn ReadAt> = Arc::new(FileImage::open(&img).unwrap());
    let f = fs::ext4::open(vol).unwrap();
    compare(f.as_ref(), &dir.path().join("src"));
    // The 1500-byte value cannot be in a 256-byte inode: it came from the
    // attribute block.
    assert_eq!(
        f.xattr(lookup(f.as_ref(), "big"), b"user.large")
            .unwrap()
            .unwrap()
            .len(),
        1500
    );
}

/// A loop device with the image mounted read-write; unmounted and
/// detached when dropped.
struct Mount {
    dev: String,
    dir: tempfile::TempDir,
}

impl Mount {
    fn new(img: &Path) -> Self {
        for t in ["losetup", "mount", "umount"] {
            tools::require(t, PACKAGES);
        }
        let dev = run(Command::new("losetup").args(["--find", "--show"]).arg(img))
            .trim()
            .to_owned();
        let m = Mount {
            dev,
            dir: tempfile::tempdir().unwrap(),
        };
        run(Command::new("mount")
            .args(["-t", "xfs", &m.dev])
            .arg(m.dir.path()));
        m
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
        let _ = Command::new("losetup").args(["-d", &self.dev]).status();
    }
}

/// An empty v5 XFS image of `size` bytes with 512-byte inodes, made by
/// mkfs.xfs at `img`.
fn xfs_image(img: &Path, size: u64) {
    tools::require("mkfs.xfs", PACKAGES);
    std::fs::File::create(img).unwrap().set_len(size).unwrap();
    run(Command::new("mkfs.xfs")
        .env("TEST_DIR", "1")
        .env("TEST_DEV", "1")
        .env("QA_CHECK_FS", "1")
        .args(["-q", "-f", "-i", "size=512"])
        .arg(img));
}

#[test]
fn xfs_devices_and_attributes_match_the_mounted_tree() {
    need_root();
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("xfs.img");
    xfs_image(&img, 64 << 20);
    // The oracle is read from the kernel's mount, then the image is
    // read unmounted.
    let copy = dir.path().join("oracle");
    {
        let m = Mount::new(&img);
        populate(m.dir.path());
        run(Command::new("cp").arg("-a").arg(m.dir.path()).arg(&copy));
    }
    let vol: Arc<dyn ReadAt> = Arc::new(FileImage::open(&img).unwrap());
    let f = fs::xfs::open(vol).unwrap();
    // user.large (1500 bytes) leaves short form: XFS keeps `big`'s
    // attributes in a leaf block.
    let names = ["opq", "plain", "big", "wh", "null", "wide", "disk"];
    for name in names {
        let id = lookup(f.as_ref(), name);
        let meta = std::fs::symlink_metadata(copy.join(name)).unwrap();
        let node = f.node(id).unwrap();
        let want = matches!(node.kind, Kind::CharDevice | Kind::BlockDevice)
            .then(|| split_dev(meta.rdev()));
        assert_eq!(f.rdev(id).unwrap(), want, "{name}");
        for (k, v) in getfattr(&copy.join(name)) {
            assert_eq!(f.xattr(id, k.as_bytes()).unwrap(), Some(v), "{name} {k}");
        }
    }
    let opq = lookup(f.as_ref(), "opq");
    assert_eq!(
        f.xattr(opq, b"trusted.overlay.opaque").unwrap().as_deref(),
        Some(&b"y"[..])
    );
    assert_eq!(f.xattr(opq, b"user.nothing").unwrap(), None);
    assert_eq!(
        f.rdev(lookup(f.as_ref(), "wide")).unwrap(),
        Some((300, 70000))
    );
}

/// Attributes past one leaf block: a file with enough of them for a node
/// tree of leaves, and values too large for a leaf (remote blocks), read
/// unmounted against `getfattr` on the mount. v5 only: this kernel mounts
/// no v4 XFS, and no other tool here writes attributes into one.
#[test]
fn xfs_node_trees_and_remote_values_match_the_mounted_tree() {
    need_root();
    let label = "v5";
    {
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("xfs.img");
        xfs_image(&img, 300 << 20);
        let oracle: BTreeMap<String, BTreeMap<String, Vec<u8>>>;
        {
            let m = Mount::new(&img);
            let root = m.dir.path();
            for name in ["many", "remote", "both"] {
                std::fs::write(root.join(name), name).unwrap();
            }
            // 400 attributes of 40-byte values: more than a 4 KiB leaf holds.
            let mut batch = String::from("# file: many\n");
            for k in 0..400 {
                batch.push_str(&format!(
                    "user.attr{k:04}=\"{}\"\n",
                    format!("{k:04}").repeat(10)
                ));
            }
            batch.push_str("trusted.overlay.opaque=\"y\"\n\n");
            // One value in remote blocks (v5: 4040 bytes a block, so three).
            batch.push_str("# file: remote\n");
            batch.push_str(&format!("user.blob=0x{}\n", "ab01".repeat(5000)));
            batch.push_str("security.small=\"s\"\n\n");
            // Remote values inside a node tree.
            batch.push_str("# file: both\n");
            for k in 0..150 {
                batch.push_str(&format!("user.n{k}=\"{}\"\n", "v".repeat(60)));
            }
            batch.push_str(&format!("user.z-remote=0x{}\n", "5a".repeat(9000)));
            std::fs::write(dir.path().join("batch"), batch).unwrap();
            run(Command::new("setfattr")
                .current_dir(root)
                .arg(format!("--restore={}", dir.path().join("batch").display())));
            oracle = ["many", "remote", "both"]
                .into_iter()
                .map(|n| (n.to_owned(), getfattr(&root.join(n))))
                .collect();
        }
        // The forms the kernel chose: node trees for the many, a leaf
        // pointing at remote blocks for the blob.
        assert_eq!(oracle["many"].len(), 401, "{label}");
        for (name, magic) in [("many", "0x3ebe"), ("both", "0x3ebe"), ("remote", "0x3bee")] {
            let out = run(Command::new("xfs_db")
                .args(["-r", "-c", &format!("path /{name}"), "-c", "ablock 0"])
                .args(["-c", "print hdr.info.hdr.magic"])
                .arg(&img));
            assert!(out.contains(magic), "{label} {name}: {out}");
        }
        let vol: Arc<dyn ReadAt> = Arc::new(FileImage::open(&img).unwrap());
        let f = fs::xfs::open(vol).unwrap();
        for (name, attrs) in &oracle {
            let id = lookup(f.as_ref(), name);
            for (k, v) in attrs {
                assert_eq!(
                    f.xattr(id, k.as_bytes()).unwrap().as_ref(),
                    Some(v),
                    "{label} {name} {k}"
                );
            }
            for absent in ["user.attr9999", "trusted.none", "security.blob"] {
                assert_eq!(
                    f.xattr(id, absent.as_bytes()).unwrap(),
                    None,
                    "{label} {name}"
                );
            }
        }
        assert_eq!(
            f.xattr(lookup(f.as_ref(), "remote"), b"user.blob")
                .unwrap()
                .map(|v| v.len()),
            Some(10_000),
            "{label}"
        );
    }
}

fn ext4_bytes() -> &'static [u8] {
    static IMG: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    IMG.get_or_init(|| {
        need_root();
        let dir = tempfile::tempdir().unwrap();
        std::fs::read(ext4_image(dir.path())).unwrap()
    })
}

/// A v5 XFS image whose `many` file holds a node tree of attribute leaves
/// and whose `remote` file holds a value in remote blocks.
fn xfs_attr_bytes() -> &'static [u8] {
    static IMG: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    IMG.get_or_init(|| {
        need_root();
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("xfs.img");
        xfs_image(&img, 300 << 20);
        {
            let m = Mount::new(&img);
            let root = m.dir.path();
            std::fs::write(root.join("many"), b"m").unwrap();
            std::fs::write(root.join("remote"), b"r").unwrap();
            let mut batch = String::from("# file: many\n");
            for k in 0..300 {
                batch.push_str(&format!("user.a{k}=\"{}\"\n", "v".repeat(40)));
            }
            batch.push_str(&format!(
                "\n# file: remote\nuser.blob=0x{}\n",
                "ab".repeat(9000)
            ));
            std::fs::write(dir.path().join("batch"), batch).unwrap();
            run(Command::new("setfattr")
                .current_dir(root)
                .arg(format!("--restore={}", dir.path().join("batch").display())));
        }
        std::fs::read(&img).unwrap()
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Damaged XFS attribute leaves, nodes and remote blocks (the image's
    /// metadata sits in its first megabytes): answers or errors, never a
    /// panic, quickly.
    #[test]
    fn p2_damaged_xfs_attribute_trees_give_errors_not_panics(
        writes in proptest::collection::vec((0usize..(8 << 20), any::<u8>()), 1..64),
    ) {
        let mut img = xfs_attr_bytes().to_vec();
        let len = img.len();
        for (at, b) in writes {
            img[at % len] = b;
        }
        let start = Instant::now();
        let vol: Arc<dyn ReadAt> = Arc::new(img);
        if let Ok(f) = fs::xfs::open(vol) {
            let root = f.root();
            for e in f.read_dir(root).unwrap_or_default() {
                for k in ["user.a0", "user.a299", "user.blob", "user.none"] {
                    let _ = f.xattr(e.id, k.as_bytes());
                }
            }
        }
        prop_assert!(start.elapsed() < Duration::from_secs(5));
    }

    /// Damaged inodes and attribute blocks: answers or errors, never a
    /// panic, quickly.
    #[test]
    fn p2_damaged_images_give_errors_not_panics(
        writes in proptest::collection::vec((0usize..(1 << 20), any::<u8>()), 1..64),
        cut in (64usize << 10)..(4 << 20),
    ) {
        let mut img = ext4_bytes().to_vec();
        for (at, b) in writes {
            // Mostly the metadata at the start: inode tables, attribute blocks.
            let at = at % (img.len() / 8).max(1);
            img[at] = b;
        }
        img.truncate(cut);
        let start = Instant::now();
        let vol: Arc<dyn ReadAt> = Arc::new(img);
        if let Ok(f) = fs::ext4::open(vol) {
            for id in 1..64 {
                let _ = f.rdev(id);
                for n in ["trusted.overlay.opaque", "user.large", "security.tag", "bogus"] {
                    let _ = f.xattr(id, n.as_bytes());
                }
            }
        }
        prop_assert!(start.elapsed() < Duration::from_secs(5));
    }
}
