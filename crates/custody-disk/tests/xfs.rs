//! The XFS reader against the kernel's own XFS driver: images made by
//! `mkfs.xfs -p protofile` and images filled through a read-write loop
//! mount, then mounted read-only; every name's inode, path, size, mode,
//! owner, link count and four times (to the nanosecond) from our walk must
//! equal what `lstat`/`statx` give on the mount, and every file's bytes
//! read through our extents must equal the mounted file's. The kernel here
//! reads no v4 XFS, so the v4 image is checked against `xfs_db` and the
//! files mkfs copied in.
//!
//! Needs root (loop devices) and xfsprogs + util-linux + coreutils
//! (`scripts/emulators.sh` installs them).

// Test code: a failure is a panic with its message.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeSet;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use custody_disk::fs::{self, FileSystem, Kind, Time, walk};
use custody_disk::{FileImage, ReadAt};
use proptest::prelude::*;

fn need(tool: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        found,
        "`{tool}` is missing: install the test tools with scripts/emulators.sh \
         (Debian packages xfsprogs, util-linux, mount, coreutils)"
    );
}

fn need_root() {
    let out = Command::new("id").arg("-u").output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "0",
        "the XFS tests mount loop devices and must run as root"
    );
}

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

/// Makes an XFS image of `size` bytes. The fstests variables lift
/// mkfs.xfs's 300 MB floor, so test images stay small.
fn mkfs(img: &Path, size: u64, opts: &[&str], proto: Option<&Path>) {
    need("mkfs.xfs");
    let f = std::fs::File::create(img).unwrap();
    f.set_len(size).unwrap();
    drop(f);
    let mut cmd = Command::new("mkfs.xfs");
    cmd.env("TEST_DIR", "1")
        .env("TEST_DEV", "1")
        .env("QA_CHECK_FS", "1")
        .args(["-q", "-f"])
        .args(opts);
    if let Some(p) = proto {
        cmd.arg("-p").arg(p);
    }
    run(cmd.arg(img));
}

/// A loop device with the image mounted; unmounted and detached when
/// dropped, whether the test passed or not.
struct Mount {
    dev: String,
    dir: tempfile::TempDir,
    mounted: bool,
}

impl Mount {
    fn new(img: &Path, read_only: bool) -> Self {
        need_root();
        need("losetup");
        need("mount");
        let mut l = Command::new("losetup");
        l.args(["--find", "--show"]);
        if read_only {
            l.arg("--read-only");
        }
        let dev = run(l.arg(img)).trim().to_string();
        let mut m = Mount {
            dev,
            dir: tempfile::tempdir().unwrap(),
            mounted: false,
        };
        let opts = if read_only { "ro,norecovery" } else { "rw" };
        let out = Command::new("mount")
            .args(["-t", "xfs", "-o", opts, &m.dev])
            .arg(m.dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "mount {} failed: {}",
            m.dev,
            String::from_utf8_lossy(&out.stderr)
        );
        m.mounted = true;
        m
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if self.mounted {
            let ok = Command::new("umount")
                .arg(self.dir.path())
                .status()
                .is_ok_and(|s| s.success());
            if !ok {
                let _ = Command::new("umount")
                    .arg("-l")
                    .arg(self.dir.path())
                    .status();
            }
        }
        let _ = Command::new("losetup").args(["-d", &self.dev]).status();
    }
}

/// One name as seen by the kernel's driver or by our walk.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Row {
    path: Vec<u8>,
    ino: u64,
    mode: u32,
    uid: u32,
    gid: u32,
    size: u64,
    links: u32,
    atime: (i64, u32),
    mtime: (i64, u32),
    ctime: (i64, u32),
    btime: Option<(i64, u32)>,
}

fn system_time(t: SystemTime) -> (i64, u32) {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => (d.as_secs() as i64, d.subsec_nanos()),
        Err(e) => {
            let d = e.duration();
            if d.subsec_nanos() == 0 {
                (-(d.as_secs() as i64), 0)
            } else {
                (-(d.as_secs() as i64) - 1, 1_000_000_000 - d.subsec_nanos())
            }
        }
    }
}

/// What the kernel says of every name under `root`: `lstat`, and `statx`
/// for the birth time.
fn kernel_rows(root: &Path) -> BTreeSet<Row> {
    let mut out = BTreeSet::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(dir) = todo.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            let rel = Path::new("/").join(p.strip_prefix(root).unwrap());
            out.insert(Row {
                path: rel.as_os_str().as_bytes().to_vec(),
                ino: m.ino(),
                mode: m.mode(),
                uid: m.uid(),
                gid: m.gid(),
                size: m.size(),
                links: m.nlink() as u32,
                atime: (m.atime(), m.atime_nsec() as u32),
                mtime: (m.mtime(), m.mtime_nsec() as u32),
                ctime: (m.ctime(), m.ctime_nsec() as u32),
                btime: m.created().ok().map(system_time),
            });
            if m.is_dir() {
                todo.push(p);
            }
        }
    }
    out
}

fn type_bits(k: Kind) -> u32 {
    match k {
        Kind::File => 0o100000,
        Kind::Dir => 0o040000,
        Kind::Symlink => 0o120000,
        Kind::CharDevice => 0o020000,
        Kind::BlockDevice => 0o060000,
        Kind::Fifo => 0o010000,
        Kind::Socket => 0o140000,
        Kind::Unknown => 0,
    }
}

fn pair(t: Option<Time>) -> (i64, u32) {
    let t = t.expect("a time XFS keeps");
    (t.secs, t.nanos)
}

fn open(img: &Path) -> Box<dyn FileSystem> {
    let vol: Arc<dyn ReadAt> = Arc::new(FileImage::open(img).unwrap());
    fs::xfs::open(vol).unwrap()
}

/// Our walk's rows, and the walk's problems.
fn our_rows(fs: &dyn FileSystem) -> (BTreeSet<Row>, Vec<fs::walk::Record>, Vec<fs::Problem>) {
    let mut records = Vec::new();
    let problems = walk::walk(fs, &mut |r| records.push(r));
    let mut rows = BTreeSet::new();
    for r in &records {
        let n = r
            .node
            .as_ref()
            .unwrap_or_else(|| panic!("no node for {:?}: {problems:?}", r.path));
        // The entry's type and the inode's must agree.
        if let Some(k) = r.entry_kind {
            assert_eq!(k, n.kind, "{:?}", String::from_utf8_lossy(&r.path));
        }
        rows.insert(Row {
            path: r.path.clone(),
            ino: n.id,
            mode: type_bits(n.kind) | n.mode,
            uid: n.uid,
            gid: n.gid,
            size: n.size,
            links: n.links,
            atime: pair(n.times.accessed),
            mtime: pair(n.times.modified),
            ctime: pair(n.times.changed),
            btime: n.times.born.map(|t| (t.secs, t.nanos)),
        });
    }
    (rows, records, problems)
}

fn assert_same(ours: &BTreeSet<Row>, kernel: &BTreeSet<Row>) {
    let only_ours: Vec<_> = ours.difference(kernel).take(5).collect();
    let only_kernel: Vec<_> = kernel.difference(ours).take(5).collect();
    assert!(
        only_ours.is_empty() && only_kernel.is_empty(),
        "{} rows ours, {} the kernel's;\nonly ours: {only_ours:#?}\nonly the kernel's: {only_kernel:#?}",
        ours.len(),
        kernel.len()
    );
}

/// Reads a node's data through our extents, checking they cover its size.
fn our_bytes(fs: &dyn FileSystem, id: u64, size: u64) -> Vec<u8> {
    let extents = fs.extents(id).unwrap();
    let mut at = 0;
    for x in &extents {
        assert_eq!(x.logical, at, "inode {id}: extents out of order or gapped");
        at += x.len;
    }
    assert_eq!(at, size, "inode {id}: extents do not cover the size");
    let mut buf = vec![0u8; size as usize];
    let n = fs::read_data(fs.volume().as_ref(), &extents, size, 0, &mut buf).unwrap();
    assert_eq!(n as u64, size);
    buf
}

/// Every file's and symlink's bytes through our extents equal the mount's.
fn assert_same_bytes(fs: &dyn FileSystem, records: &[fs::walk::Record], mnt: &Path) -> usize {
    let mut checked = 0;
    for r in records {
        let n = r.node.as_ref().unwrap();
        let rel = std::ffi::OsStr::from_bytes(&r.path[1..]);
        let p = mnt.join(rel);
        let want = match n.kind {
            Kind::File => std::fs::read(&p).unwrap(),
            Kind::Symlink => std::fs::read_link(&p)
                .unwrap()
                .as_os_str()
                .as_bytes()
                .to_vec(),
            _ => continue,
        };
        let got = our_bytes(fs, n.id, n.size);
        assert!(got == want, "{}: the bytes differ", p.display());
        checked += 1;
    }
    checked
}

/// Deterministic noise for file contents.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Source files and a protofile naming files, directories (short-form,
/// block, leaf), symlinks, devices, a FIFO, setuid/setgid bits and owners.
/// mkfs.xfs 6.1 writes symlink blocks outside the inode without their
/// checksum, which the kernel then refuses: those go in with `remote`
/// (v4, no checksums) only; the mounted images have them on v5.
fn protofile(dir: &Path, remote: bool) -> PathBuf {
    let src = dir.join("src");
    std::fs::create_dir_all(&src).unwrap();
    let files = [
        ("empty", 0usize),
        ("small", 100),
        ("medium", 100_000),
        ("big", 3_000_000),
    ];
    for (i, (name, len)) in files.iter().enumerate() {
        std::fs::write(src.join(name), noise(*len, i as u64 + 7)).unwrap();
    }
    let s = |n: &str| src.join(n).display().to_string();
    let mut p = String::from("/dev/null\n0 0\nd--755 0 0\n");
    p += &format!("empty ---644 0 0 {}\n", s("empty"));
    p += &format!("small ---600 1000 1000 {}\n", s("small"));
    p += &format!("medium -u-755 0 0 {}\n", s("medium"));
    p += &format!("big --g640 4000000000 7 {}\n", s("big"));
    p += "short l--777 0 0 small\n";
    if remote {
        p += &format!("remote l--777 0 0 {}\n", "r".repeat(600));
        p += &format!("longest l--777 0 0 {}\n", "L/".repeat(500));
    }
    p += "tty c--620 0 5 4 1\n";
    p += "disk b--660 0 6 8 0\n";
    p += "pipe p--644 3 4\n";
    p += "d d--750 1 2\n";
    p += &format!(" loopme ---600 1 2 {}\n", s("small"));
    p += " inner d--700 0 0\n";
    p += &format!("  deep ---644 0 0 {}\n", s("medium"));
    p += "  $\n";
    p += " $\n";
    // 40 names fill one directory block; 400 need a leaf block.
    for (dir, count) in [("block", 40), ("leaf", 400)] {
        p += &format!("{dir} d--755 0 0\n");
        for k in 0..count {
            p += &format!(" name-of-entry-{k:04} ---644 0 0 {}\n", s("small"));
        }
        p += " $\n";
    }
    p += "$\n";
    let path = dir.join("proto");
    std::fs::write(&path, p).unwrap();
    path
}

/// A proto image of one mkfs variant, mounted read-only and compared.
fn proto_case(opts: &[&str]) {
    need_root();
    let tmp = tempfile::tempdir().unwrap();
    let proto = protofile(tmp.path(), false);
    let img = tmp.path().join("x.img");
    mkfs(&img, 32 << 20, opts, Some(&proto));
    let fs = open(&img);
    let (ours, records, problems) = our_rows(fs.as_ref());
    assert!(problems.is_empty(), "{problems:?}");
    let m = Mount::new(&img, true);
    let kernel = kernel_rows(m.path());
    assert!(kernel.len() > 450, "{}", kernel.len());
    assert_same(&ours, &kernel);
    let n = assert_same_bytes(fs.as_ref(), &records, m.path());
    assert!(n > 440, "{n}");
}

#[test]
fn proto_image_v5_default_matches_the_kernel() {
    proto_case(&[]);
}

#[test]
fn proto_image_legacy_times_1k_inodes_matches_the_kernel() {
    proto_case(&["-m", "bigtime=0", "-i", "size=1024"]);
}

#[test]
fn proto_image_1k_blocks_8k_dir_blocks_nrext64_matches_the_kernel() {
    proto_case(&["-b", "size=1024", "-n", "size=8192", "-i", "nrext64=1"]);
}

fn xfs_db(img: &Path, cmds: &[&str]) -> String {
    need("xfs_db");
    let mut c = Command::new("xfs_db");
    c.arg("-r");
    for x in cmds {
        c.args(["-c", x]);
    }
    run(c.arg(img))
}

/// `field = value` lines of xfs_db's `print`.
fn db_field(out: &str, field: &str) -> String {
    out.lines()
        .find_map(|l| l.strip_prefix(&format!("{field} = ")))
        .unwrap_or_else(|| panic!("no {field} in {out}"))
        .trim()
        .to_string()
}

/// This kernel reads no v4 XFS: the oracle is xfs_db (names, inode
/// numbers, types, modes, owners, sizes) and the files mkfs copied in.
#[test]
fn proto_image_v4_matches_xfs_db_and_the_sources() {
    let tmp = tempfile::tempdir().unwrap();
    let proto = protofile(tmp.path(), true);
    let img = tmp.path().join("v4.img");
    mkfs(&img, 32 << 20, &["-m", "crc=0"], Some(&proto));
    let fs = open(&img);
    let (_, records, problems) = our_rows(fs.as_ref());
    assert!(problems.is_empty(), "{problems:?}");
    let ours: BTreeSet<(String, u64, u32, u32, u32, u64)> = records
        .iter()
        .map(|r| {
            let n = r.node.as_ref().unwrap();
            let p = String::from_utf8(r.path.clone()).unwrap();
            (p, n.id, type_bits(n.kind) | n.mode, n.uid, n.gid, n.size)
        })
        .collect();
    let mut db = BTreeSet::new();
    let mut todo = vec![String::new()];
    while let Some(dir) = todo.pop() {
        let ls = xfs_db(&img, &[&format!("ls {}/", dir)]);
        for l in ls.lines().skip(1) {
            let f: Vec<&str> = l.split_whitespace().collect();
            let (ino, kind, name) = (f[1], f[2], f[5]);
            if name == "." || name == ".." {
                continue;
            }
            let path = format!("{dir}/{name}");
            let p = xfs_db(
                &img,
                &[
                    &format!("path {path}"),
                    "print core.mode core.uid core.gid core.size",
                ],
            );
            db.insert((
                path.clone(),
                ino.parse().unwrap(),
                u32::from_str_radix(&db_field(&p, "core.mode"), 8).unwrap(),
                db_field(&p, "core.uid").parse().unwrap(),
                db_field(&p, "core.gid").parse().unwrap(),
                db_field(&p, "core.size").parse().unwrap(),
            ));
            if kind == "directory" {
                todo.push(path);
            }
        }
    }
    assert_eq!(ours, db);
    // The data mkfs copied in, and the symlink targets the protofile gave.
    for r in &records {
        let n = r.node.as_ref().unwrap();
        let path = String::from_utf8(r.path.clone()).unwrap();
        let name = path.rsplit('/').next().unwrap();
        let want = match (n.kind, name) {
            (Kind::File, "empty" | "small" | "medium" | "big") => {
                std::fs::read(tmp.path().join("src").join(name)).unwrap()
            }
            (Kind::File, "deep") => std::fs::read(tmp.path().join("src/medium")).unwrap(),
            (Kind::File, _) => std::fs::read(tmp.path().join("src/small")).unwrap(),
            (Kind::Symlink, "short") => b"small".to_vec(),
            (Kind::Symlink, "remote") => "r".repeat(600).into_bytes(),
            (Kind::Symlink, "longest") => "L/".repeat(500).into_bytes(),
            _ => continue,
        };
        assert!(our_bytes(fs.as_ref(), n.id, n.size) == want, "{path}");
    }
}

fn sh(script: &str) {
    need("touch");
    need("fallocate");
    run(Command::new("sh").args(["-ec", script]));
}

/// Fills a mounted image with what protofiles cannot make: directories in
/// leaf and node form, a file of thousands of extents (an extent B+tree
/// two levels deep), unwritten extents, a sparse file, exact times before
/// 1970 and after 2038, UTF-8 names.
fn populate(root: &Path) -> Vec<(String, u64)> {
    use std::os::unix::fs::FileExt;
    let mut counts = Vec::new();
    for (dir, n) in [
        ("sf", 5u64),
        ("blk", 60),
        ("leafdir", 500),
        ("nodedir", 6000),
    ] {
        std::fs::create_dir(root.join(dir)).unwrap();
        for k in 0..n {
            std::fs::write(
                root.join(dir).join(format!("file-number-{k:05}")),
                k.to_string(),
            )
            .unwrap();
        }
        counts.push((dir.to_string(), n));
    }
    // Every other 4 KiB block written: each written block an extent.
    let frag = std::fs::File::create(root.join("frag")).unwrap();
    for k in 0..6000u64 {
        frag.write_at(&noise(4096, k + 1), k * 8192).unwrap();
    }
    frag.sync_all().unwrap();
    drop(frag);
    let r = root.display();
    sh(&format!(
        "cd {r}
         fallocate -l 1048576 unwritten
         printf middle | dd of=unwritten bs=1 seek=500000 conv=notrunc status=none
         printf end | dd of=sparse bs=1 seek=1073741824 status=none
         mkdir -p 'caf\u{e9}/\u{65e5}\u{672c}' && printf x > 'caf\u{e9}/\u{65e5}\u{672c}/\u{2603}'
         printf old > old && touch -d '1960-05-06 07:08:09.123456789 UTC' old
         printf future > future && touch -d '2100-01-02 03:04:05.987654321 UTC' future
         touch -a -d '1901-12-14 00:00:00 UTC' future
         ln -s future link && touch -h -d '2000-01-01 00:00:00.5 UTC' link
         ln -s {long600} remote && ln -s {long1000} longest
         printf s > suid && chmod 4755 suid && chown 4000000000:12345 suid
         mkdir sticky && chmod 1777 sticky
         mkfifo fifo && mknod chr c 1 3 && ln suid hardlink",
        long600 = "r".repeat(600),
        long1000 = "L/".repeat(500),
    ));
    counts
}

/// What xfs_db says of an inode.
fn db_inode(img: &Path, ino: u64, fields: &str) -> String {
    xfs_db(img, &[&format!("inode {ino}"), &format!("print {fields}")])
}

fn db_bmap_offsets(img: &Path, ino: u64) -> Vec<u64> {
    xfs_db(img, &[&format!("inode {ino}"), "bmap"])
        .lines()
        .filter_map(|l| l.strip_prefix("data offset "))
        .map(|l| l.split_whitespace().next().unwrap().parse().unwrap())
        .collect()
}

#[test]
fn mounted_image_matches_the_kernel() {
    mounted_case(&["-d", "agcount=4"], 12);
}

/// 1 KiB blocks: symlinks over two blocks, directory blocks of 8 blocks.
#[test]
fn mounted_image_1k_blocks_matches_the_kernel() {
    mounted_case(&["-b", "size=1024", "-n", "size=8192"], 10);
}

fn mounted_case(opts: &[&str], blocklog: u32) {
    need_root();
    let tmp = tempfile::tempdir().unwrap();
    let img = tmp.path().join("rw.img");
    mkfs(&img, 160 << 20, opts, None);
    let counts = {
        let m = Mount::new(&img, false);
        populate(m.path())
    };
    let fs = open(&img);
    let (ours, records, problems) = our_rows(fs.as_ref());
    assert!(problems.is_empty(), "{problems:?}");
    let ino = |p: &str| {
        records
            .iter()
            .find(|r| r.path == p.as_bytes())
            .unwrap_or_else(|| panic!("no {p}"))
            .id
    };
    // The fixture is what it claims, by xfs_db: forms of each directory,
    // and an extent tree under the fragmented file two levels deep.
    let frag = db_inode(
        &img,
        ino("/frag"),
        "core.format core.nextents u3.bmbt.level",
    );
    assert!(db_field(&frag, "core.format").starts_with("3 "), "{frag}");
    assert!(
        db_field(&frag, "u3.bmbt.level").parse::<u32>().unwrap() >= 2,
        "{frag}"
    );
    let sf = db_inode(&img, ino("/sf"), "core.format");
    assert!(db_field(&sf, "core.format").starts_with("1 "), "{sf}");
    let leaf_at = 1u64 << 35 >> blocklog;
    let blk = db_bmap_offsets(&img, ino("/blk"));
    assert_eq!(blk, [0], "block form: one block");
    let remote = db_inode(&img, ino("/longest"), "core.format");
    assert!(
        db_field(&remote, "core.format").starts_with("2 "),
        "{remote}"
    );
    let leaf = db_bmap_offsets(&img, ino("/leafdir"));
    assert!(
        leaf.contains(&leaf_at) && leaf.iter().all(|o| *o < 2 * leaf_at),
        "{leaf:?}"
    );
    let node = db_bmap_offsets(&img, ino("/nodedir"));
    assert!(
        node.iter().any(|o| *o >= 2 * leaf_at),
        "node form: free index {node:?}"
    );
    // Times set to the nanosecond, checked against the numbers themselves.
    let future = fs.node(ino("/future")).unwrap();
    assert_eq!(
        future.times.modified,
        Some(Time::new(4_102_542_245, 987_654_321))
    );
    assert_eq!(future.times.accessed, Some(Time::new(-2_147_472_000, 0)));
    let old = fs.node(ino("/old")).unwrap();
    assert_eq!(
        old.times.modified,
        Some(Time::new(-304_707_111, 123_456_789))
    );

    let m = Mount::new(&img, true);
    let kernel = kernel_rows(m.path());
    assert_same(&ours, &kernel);
    for (dir, n) in counts {
        let listed = records
            .iter()
            .filter(|r| r.path.starts_with(format!("/{dir}/").as_bytes()))
            .count() as u64;
        assert_eq!(listed, n, "{dir}");
    }
    assert!(assert_same_bytes(fs.as_ref(), &records, m.path()) > 6500);
    // The unwritten extents read as holes.
    let u = fs.extents(ino("/unwritten")).unwrap();
    assert!(
        u.iter().any(|x| x.physical.is_none() && x.len >= 4096),
        "{u:?}"
    );
}

/// The superblock fields a test needs to find an inode's bytes.
fn inode_byte(img: &[u8], ino: u64) -> usize {
    let be32 = |at: usize| u32::from_be_bytes(img[at..at + 4].try_into().unwrap()) as u64;
    let bs = be32(4);
    let agblocks = be32(84);
    let isize = u16::from_be_bytes([img[104], img[105]]) as u64;
    let inopblog = img[123] as u64;
    let agblklog = img[124] as u64;
    let agno = ino >> (agblklog + inopblog);
    let agbno = (ino >> inopblog) & ((1 << agblklog) - 1);
    let slot = ino & ((1 << inopblog) - 1);
    ((agno * agblocks + agbno) * bs + slot * isize) as usize
}

/// The inode number xfs_db gives a path.
fn db_ino(img: &Path, dir: &str, name: &str) -> u64 {
    xfs_db(img, &[&format!("ls {dir}")])
        .lines()
        .find(|l| l.split_whitespace().nth(5) == Some(name))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or_else(|| panic!("no {dir}/{name}"))
        .parse()
        .unwrap()
}

fn small_image(tmp: &Path) -> PathBuf {
    let proto = protofile(tmp, false);
    let img = tmp.join("small.img");
    mkfs(&img, 16 << 20, &[], Some(&proto));
    img
}

#[test]
fn wrong_magic_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let img = small_image(tmp.path());
    let mut bytes = std::fs::read(&img).unwrap();
    bytes[0] = b'Y';
    let e = fs::xfs::open(Arc::new(bytes)).err().unwrap().to_string();
    assert!(e.contains("not XFS") && e.contains("byte 0"), "{e}");
    let e = fs::xfs::open(Arc::new(Vec::<u8>::new()))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("superblock"), "{e}");
}

#[test]
fn a_directory_naming_itself_is_a_walk_problem_and_the_walk_ends() {
    let tmp = tempfile::tempdir().unwrap();
    let img = small_image(tmp.path());
    let d = db_ino(&img, "/", "d");
    let target = db_ino(&img, "/d", "loopme");
    let mut bytes = std::fs::read(&img).unwrap();
    // In /d's short-form entries: name, file type, then the 4-byte inode.
    let at = inode_byte(&bytes, d);
    let inode = &bytes[at..at + 512];
    let name = inode.windows(6).position(|w| w == b"loopme").unwrap();
    let ino_at = at + name + 6 + 1;
    assert_eq!(&bytes[ino_at..ino_at + 4], &(target as u32).to_be_bytes());
    bytes[ino_at..ino_at + 4].copy_from_slice(&(d as u32).to_be_bytes());
    // ...and the entry's type to a directory, as a careful forger would.
    bytes[ino_at - 1] = 2;
    let fs = fs::xfs::open(Arc::new(bytes)).unwrap();
    let mut n = 0;
    let problems = walk::walk(fs.as_ref(), &mut |_| n += 1);
    assert!(
        problems
            .iter()
            .any(|p| p.what.contains("loop") && p.at.contains(&d.to_string())),
        "{problems:?}"
    );
    assert!(n > 400 && n < 1000, "{n}");
}

#[test]
fn a_cut_image_reads_what_is_before_the_cut_and_says_where_it_stops() {
    let tmp = tempfile::tempdir().unwrap();
    let img = small_image(tmp.path());
    let full = std::fs::read(&img).unwrap();
    // Cut just after the root's chunk of 64 inodes: the root's names and
    // their inodes are before the cut, their data and /d (in AG 1) after.
    let root = u64::from_be_bytes(full[56..64].try_into().unwrap());
    let cut = inode_byte(&full, root) + 64 * 512;
    let fs = fs::xfs::open(Arc::new(full[..cut].to_vec())).unwrap();
    let opened = fs.problems();
    assert!(
        opened.iter().any(|p| p.what.contains("cut short")),
        "{opened:?}"
    );
    let mut records = Vec::new();
    let problems = walk::walk(fs.as_ref(), &mut |r| records.push(r));
    let names: BTreeSet<String> = records
        .iter()
        .filter(|r| r.node.is_some())
        .map(|r| String::from_utf8_lossy(&r.path).into_owned())
        .collect();
    for p in ["/small", "/big", "/short", "/tty", "/pipe", "/d"] {
        assert!(names.contains(p), "{p} not read: {names:?}");
    }
    // Short-form /d's inode is in AG 1, past the cut; so are the leaf blocks.
    assert!(
        problems
            .iter()
            .any(|p| p.at.starts_with("inode ") || p.at.starts_with("directory inode")),
        "{problems:?}"
    );
    // A file's inode is read, its data past the cut is an error naming it.
    let big = records.iter().find(|r| r.path == b"/big").unwrap().id;
    let e = fs.extents(big).err().unwrap().to_string();
    assert!(
        e.contains(&format!("inode {big}")) && e.contains("past the volume's end"),
        "{e}"
    );
    // An inline symlink is in its inode: still read.
    let short = records.iter().find(|r| r.path == b"/short").unwrap().id;
    assert_eq!(our_bytes(fs.as_ref(), short, 5), b"small");
}

#[test]
fn numbers_no_inode_has_are_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let img = small_image(tmp.path());
    let fs = open(&img);
    for id in [0, 1, u64::MAX, 1 << 40, fs.root() + 1] {
        let _ = fs.node(id);
        assert!(fs.read_dir(id).is_err() || id == fs.root());
        let _ = fs.extents(id);
    }
    assert!(
        fs.node(u64::MAX)
            .err()
            .unwrap()
            .to_string()
            .contains("inode")
    );
}

/// Walks a possibly hostile image the way the bodyfile and extraction do.
fn exercise(bytes: Vec<u8>) {
    let Ok(fs) = fs::xfs::open(Arc::new(bytes)) else {
        return;
    };
    let mut ids = Vec::new();
    let _ = walk::walk(fs.as_ref(), &mut |r| {
        if let Some(n) = r.node {
            ids.push((n.id, n.size));
        }
    });
    let mut buf = vec![0u8; 65536];
    for (id, size) in ids {
        if let Ok(x) = fs.extents(id) {
            let _ = fs::read_data(fs.volume().as_ref(), &x, size, 0, &mut buf);
        }
    }
}

fn fuzz_seed() -> &'static Vec<u8> {
    static SEED: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    SEED.get_or_init(|| {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::read(small_image(tmp.path())).unwrap()
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    /// Random bytes over the metadata (superblock, AG headers, the first
    /// inode chunk, directory blocks), and random cuts: no panic, and
    /// each image done quickly.
    #[test]
    fn mutated_images_never_panic(
        edits in prop::collection::vec((0usize..(640 << 10), any::<u8>()), 1..64),
        cut in prop::option::of(0usize..(16 << 20)),
    ) {
        let mut bytes = fuzz_seed().clone();
        for (at, b) in edits {
            // Half the edits land in the root's inode chunk (bytes 64-96 KiB).
            let at = if at % 2 == 0 { (64 << 10) + at % (32 << 10) } else { at };
            if let Some(x) = bytes.get_mut(at) {
                *x = b;
            }
        }
        if let Some(c) = cut {
            bytes.truncate(c);
        }
        let t = Instant::now();
        exercise(bytes);
        prop_assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    }
}
