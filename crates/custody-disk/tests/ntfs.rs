//! The NTFS reader against The Sleuth Kit, on images made by ntfs-3g's
//! own tools: `mkntfs -F -Q` on a file, populated through an ntfs-3g FUSE
//! mount (directories, resident and fragmented files, a sparse file, a
//! named stream, a hard link, a DOS name, a compressed file, deleted files
//! and directories).
//!
//! Oracle: the set of lines `fls -r -m /` prints equals the set our walk
//! and bodyfile writer print, after these normalisations (each a limit of
//! the FileSystem seam, not of the reader):
//! - TSK's inode field `N-TYPE-ID` names an attribute; ours is `N`.
//! - TSK prints the `$FILE_NAME` attribute's own size on the
//!   `($FILE_NAME)` line; the seam's Node has one size, so that field is
//!   not compared on those lines, and TSK writes ` ($FILE_NAME) (deleted)`
//!   where our writer writes ` (deleted) ($FILE_NAME)`.
//! - TSK names an orphan `/$OrphanFiles/<its $FILE_NAME>`; the walk names
//!   it `/$OrphanFiles/OrphanFile-<record>`, and gives it the node's type
//!   letter where TSK prints `-` for the name's type.
//!
//! Excluded: TSK's virtual `/$OrphanFiles` directory line; what TSK lists
//! inside an orphaned directory (`/$OrphanFiles/dir/name`), since the walk
//! lists orphans flat and does not enter them; TSK's lines for
//! named streams (`name:stream`, one per named `$DATA` or non-`$I30`
//! index), which the seam has no place for; and our bare lines for the
//! four system files that have only named streams and so no bare TSK
//! line (`$Secure`, `$Extend/$ObjId`, `$Extend/$Quota`, `$Extend/$Reparse`).
//!
//! Data: every regular file's bytes through `fs::read_data` over our
//! extents equal `icat IMAGE RECORD`.

// Test helpers outside #[test] functions may fail loudly too.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use custody_disk::fs::{self, FileSystem, FsError, Kind, bodyfile, ntfs, walk};
use custody_disk::{FileImage, ReadAt};

fn need(tool: &str) {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "{tool} is missing: install the test tools with scripts/emulators.sh \
         (Debian packages ntfs-3g, sleuthkit, attr, fuse3)"
    );
}

fn run(cmd: &mut Command) -> Vec<u8> {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// An ntfs-3g FUSE mount, unmounted when dropped (a failed test too).
struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// Makes an NTFS image of `mib` MiB and fills it through a mount.
fn make_image(dir: &Path, name: &str, mib: u64, fill: impl FnOnce(&Path)) -> PathBuf {
    for t in ["mkntfs", "ntfs-3g", "fls", "icat", "setfattr"] {
        need(t);
    }
    assert!(
        Path::new("/dev/fuse").exists(),
        "/dev/fuse is missing: ntfs-3g needs FUSE (scripts/emulators.sh)"
    );
    let img = dir.join(name);
    let f = std::fs::File::create(&img).unwrap();
    f.set_len(mib << 20).unwrap();
    drop(f);
    run(Command::new("mkntfs").args(["-F", "-Q", "-q"]).arg(&img));
    let mnt = dir.join(format!("{name}.mnt"));
    std::fs::create_dir_all(&mnt).unwrap();
    run(Command::new("ntfs-3g")
        .args(["-o", "compression,streams_interface=xattr"])
        .arg(&img)
        .arg(&mnt));
    let guard = Mount(mnt.clone());
    fill(&mnt);
    drop(guard);
    img
}

fn setfattr(path: &Path, name: &str, value: &str) {
    run(Command::new("setfattr")
        .args(["-n", name, "-v", value])
        .arg(path));
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The test image: a bit of everything a reader meets.
fn populate(m: &Path) {
    let w = |p: &str, data: &[u8]| std::fs::write(m.join(p), data).unwrap();
    for d in ["dir1/sub/deeper", "dir2", "gone/inner", "Ünïcode dir"] {
        std::fs::create_dir_all(m.join(d)).unwrap();
    }
    w("dir1/small.txt", b"hello\n");
    w("dir1/empty", b"");
    // A resident value long enough to cross the record's first 512-byte
    // stride end, where the fixup swapped two bytes on disk.
    let resident: Vec<u8> = (0..600u32).map(|i| (i * 7 % 251) as u8).collect();
    w("dir1/resident600.bin", &resident);
    w("dir1/sub/deeper/leaf.txt", b"deep leaf");
    w("Ünïcode dir/fïlé ✓.txt", "unicode".as_bytes());
    // Two files written in turns, so that their clusters interleave.
    {
        use std::io::Write;
        let mut a = std::fs::File::create(m.join("dir2/frag_a.bin")).unwrap();
        let mut b = std::fs::File::create(m.join("dir2/frag_b.bin")).unwrap();
        for i in 0..64u32 {
            let chunk: Vec<u8> = (0..16384u32).map(|j| ((i * 31 + j) % 253) as u8).collect();
            a.write_all(&chunk).unwrap();
            a.sync_all().unwrap();
            b.write_all(&chunk[..8192]).unwrap();
            b.sync_all().unwrap();
        }
    }
    // Sparse: data at the start and 3 MiB on.
    {
        use std::io::{Seek, SeekFrom, Write};
        let mut s = std::fs::File::create(m.join("sparse.bin")).unwrap();
        s.write_all(b"start").unwrap();
        s.seek(SeekFrom::Start(3 << 20)).unwrap();
        s.write_all(b"end of the sparse file").unwrap();
    }
    // A named stream, a hard link, a DOS short name.
    w("ads.txt", b"main stream");
    setfattr(&m.join("ads.txt"), "user.secret", "hidden stream");
    std::fs::hard_link(m.join("ads.txt"), m.join("dir2/hardlink.txt")).unwrap();
    w("a_rather_long_file_name.text", b"long");
    setfattr(
        &m.join("a_rather_long_file_name.text"),
        "system.ntfs_dos_name",
        "ARATHE~1.TEX",
    );
    // So many names that the record needs an $ATTRIBUTE_LIST.
    std::fs::create_dir(m.join("links")).unwrap();
    w("links/target.bin", &vec![9u8; 5000]);
    for i in 0..24 {
        std::fs::hard_link(
            m.join("links/target.bin"),
            m.join(format!("links/another_rather_long_link_name_{i:02}.bin")),
        )
        .unwrap();
    }
    // Compressed: files made in a directory flagged compressed.
    std::fs::create_dir(m.join("comp")).unwrap();
    setfattr(&m.join("comp"), "system.ntfs_attrib_be", "0x00000810");
    w("comp/packed.txt", &b"compress me ".repeat(4000));
    // Many names, so that a directory needs index blocks.
    std::fs::create_dir(m.join("many")).unwrap();
    for i in 0..300 {
        w(&format!("many/file_{i:04}.txt"), format!("{i}").as_bytes());
    }
    // Names deleted from an index block whose times TSK finds plausible
    // (before 2020), so that it reads the block's slack for them.
    std::fs::create_dir(m.join("old")).unwrap();
    let t: u64 = 1_420_070_400 * 10_000_000 + 116_444_736_000_000_000;
    let times: String = (0..4).map(|_| hex(&t.to_le_bytes())).collect();
    for i in 0..40 {
        let p = m.join(format!("old/f{i}.txt"));
        std::fs::write(&p, format!("{i}")).unwrap();
        setfattr(&p, "system.ntfs_times", &format!("0x{times}"));
    }
    for i in (0..40).step_by(2) {
        std::fs::remove_file(m.join(format!("old/f{i}.txt"))).unwrap();
    }
    // Deleted: files, and a directory with its contents.
    w("dir2/deleted.txt", b"soon gone");
    w("gone/inner/x.txt", b"x");
    w("gone/y.bin", &vec![7u8; 20000]);
    for i in (0..300).step_by(3) {
        std::fs::remove_file(m.join(format!("many/file_{i:04}.txt"))).unwrap();
    }
    std::fs::remove_file(m.join("dir2/deleted.txt")).unwrap();
    std::fs::remove_dir_all(m.join("gone")).unwrap();
}

/// The test image, made once per run in the target's scratch directory
/// (not in /tmp, where a static's TempDir would never be removed).
fn image() -> &'static (PathBuf, PathBuf) {
    static IMG: std::sync::OnceLock<(PathBuf, PathBuf)> = std::sync::OnceLock::new();
    IMG.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("ntfs");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let img = make_image(&dir, "main.img", 64, populate);
        (dir, img)
    })
}

fn open_file(img: &Path) -> Box<dyn FileSystem> {
    let vol: Arc<dyn ReadAt> = Arc::new(FileImage::open(img).unwrap());
    ntfs::open(vol).unwrap()
}

/// Our bodyfile, normalised as the header says.
fn ours(fs: &dyn FileSystem) -> (BTreeSet<String>, Vec<fs::Problem>) {
    let excluded = [
        "/$Secure",
        "/$Extend/$ObjId",
        "/$Extend/$Quota",
        "/$Extend/$Reparse",
    ];
    let mut lines = BTreeSet::new();
    let problems = walk::walk(fs, &mut |r| {
        let path = String::from_utf8_lossy(&r.path).to_string();
        for l in bodyfile::lines(&r) {
            let f: Vec<&str> = l.split('|').collect();
            if !l.contains(" ($FILE_NAME)") && excluded.contains(&f[1]) {
                continue;
            }
            lines.insert(normalise(
                &l.replace(" (deleted) ($FILE_NAME)", " ($FILE_NAME) (deleted)"),
            ));
        }
        let _ = path;
    });
    (lines, problems)
}

/// Blanks the size of `($FILE_NAME)` lines.
fn normalise(l: &str) -> String {
    let mut f: Vec<String> = l.split('|').map(str::to_string).collect();
    if f[1].contains(" ($FILE_NAME)") {
        f[6] = "*".into();
    }
    if f[1].starts_with("/$OrphanFiles/") {
        f[3].replace_range(..1, "*");
    }
    f.join("|")
}

fn tsk(img: &Path) -> BTreeSet<String> {
    let out = run(Command::new("fls").args(["-r", "-m", "/"]).arg(img));
    let mut lines = BTreeSet::new();
    for l in String::from_utf8_lossy(&out).lines() {
        let mut f: Vec<String> = l.split('|').map(str::to_string).collect();
        let inode = f[2].split('-').next().unwrap().to_string();
        if f[1] == "/$OrphanFiles" {
            continue;
        }
        let bare = f[1]
            .trim_end_matches(" (deleted)")
            .trim_end_matches(" ($FILE_NAME)")
            .to_string();
        let last = bare.rsplit('/').next().unwrap();
        if last.contains(':') {
            continue; // a named stream
        }
        if let Some(rest) = f[1].strip_prefix("/$OrphanFiles/") {
            if rest.contains('/') {
                continue; // held by an orphaned directory: see the header
            }
            let suffix: String = [" ($FILE_NAME)", " (deleted)"]
                .iter()
                .filter(|s| rest.contains(*s))
                .copied()
                .collect();
            f[1] = format!("/$OrphanFiles/OrphanFile-{inode}{suffix}");
        }
        f[2] = inode;
        lines.insert(normalise(&f.join("|")));
    }
    lines
}

/// A deleted index entry whose record has since been reused: TSK prints
/// the name without metadata (`X/----------`, zeros), the seam has no way
/// to say so and our line carries the reused record's metadata. For those
/// only the name and record are compared.
fn stale_names(
    mut ours: BTreeSet<String>,
    mut tsk: BTreeSet<String>,
) -> (BTreeSet<String>, BTreeSet<String>) {
    let stale: Vec<String> = tsk
        .iter()
        .filter(|l| {
            l.split('|')
                .nth(3)
                .is_some_and(|m| m.ends_with("/----------"))
        })
        .cloned()
        .collect();
    for l in stale {
        let f: Vec<&str> = l.split('|').collect();
        let (name, id) = (f[1], f[2]);
        let bare = name.trim_end_matches(" (deleted)");
        let mine: Vec<String> = ours
            .iter()
            .filter(|o| {
                let g: Vec<&str> = o.split('|').collect();
                // Ours names the reused record's metadata, so it calls the
                // name reallocated, as TSK does for ext4.
                g[2] == id
                    && [
                        name.to_string(),
                        format!("{bare} ($FILE_NAME) (deleted)"),
                        format!("{bare} (deleted-realloc)"),
                        format!("{bare} ($FILE_NAME) (deleted-realloc)"),
                    ]
                    .contains(&g[1].to_string())
            })
            .cloned()
            .collect();
        assert!(!mine.is_empty(), "no line of ours for the stale name {l}");
        for m in mine {
            ours.remove(&m);
        }
        tsk.remove(&l);
    }
    (ours, tsk)
}

fn assert_same(ours: &BTreeSet<String>, tsk: &BTreeSet<String>) {
    let only_ours: Vec<_> = ours.difference(tsk).collect();
    let only_tsk: Vec<_> = tsk.difference(ours).collect();
    assert!(
        only_ours.is_empty() && only_tsk.is_empty(),
        "bodyfiles differ\nonly ours:\n{}\nonly fls:\n{}",
        only_ours
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join("\n"),
        only_tsk
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join("\n"),
    );
}

#[test]
fn the_bodyfile_matches_fls_deleted_entries_and_file_names_included() {
    let (_, img) = image();
    let fs = open_file(img);
    let (ours, problems) = ours(fs.as_ref());
    assert!(problems.is_empty(), "{problems:?}");
    let tsk = tsk(img);
    let (ours, tsk) = stale_names(ours, tsk);
    assert_same(&ours, &tsk);
    // The oracle saw what the image was made to hold.
    for want in [
        "/dir2/deleted.txt (deleted)|",
        "/gone (deleted)|",
        "/gone/inner/x.txt (deleted)|",
        "/dir1/sub/deeper/leaf.txt|",
        "/a_rather_long_file_name.text|",
        "/dir2/hardlink.txt|",
        "/many/file_0003.txt (deleted)|",
    ] {
        assert!(ours.iter().any(|l| l.contains(want)), "no line for {want}");
    }
    assert!(
        !ours.iter().any(|l| l.contains("ARATHE~1")),
        "a DOS name was listed"
    );
}

#[test]
fn every_file_reads_as_icat_reads_it() {
    let (_, img) = image();
    let fs = open_file(img);
    let mut files = Vec::new();
    walk::walk(fs.as_ref(), &mut |r| {
        if let Some(n) = &r.node
            && n.kind == Kind::File
        {
            files.push((String::from_utf8_lossy(&r.path).to_string(), n.id, n.size));
        }
    });
    let mut compared = 0;
    let mut compressed = 0;
    let mut resident_crossing = false;
    for (path, id, size) in files {
        let extents = match fs.extents(id) {
            Ok(x) => x,
            Err(FsError::Unsupported { what, .. }) if what.contains("compressed") => {
                assert!(
                    path.ends_with("/comp/packed.txt"),
                    "{path} is not compressed"
                );
                compressed += 1;
                continue;
            }
            Err(e) => panic!("{path}: {e}"),
        };
        if size == 0 && extents.is_empty() {
            continue; // no unnamed $DATA (a system file of named streams), or empty
        }
        let mut ours = vec![0u8; size as usize];
        let n = fs::read_data(fs.volume().as_ref(), &extents, size, 0, &mut ours).unwrap();
        assert_eq!(n as u64, size, "{path}");
        let icat = run(Command::new("icat").arg(img).arg(id.to_string()));
        assert!(
            ours == icat,
            "{path} (record {id}): our bytes differ from icat's"
        );
        if path.ends_with("resident600.bin") {
            // Resident data split around the fixed-up stride end.
            resident_crossing = extents.len() >= 3;
        }
        compared += 1;
    }
    assert!(compared > 200, "only {compared} files compared");
    assert_eq!(compressed, 1, "the compressed file is reported unsupported");
    assert!(
        resident_crossing,
        "resident600.bin did not cross a stride end"
    );
}

/// Where the MFT starts, read from the boot sector here (not by the reader).
fn mft_at(img: &[u8]) -> usize {
    let bps = u16::from_le_bytes([img[11], img[12]]) as usize;
    let cluster = bps * img[13] as usize;
    u64::from_le_bytes(img[0x30..0x38].try_into().unwrap()) as usize * cluster
}

fn record_of(fs: &dyn FileSystem, path: &str) -> u64 {
    let mut id = None;
    walk::walk(fs, &mut |r| {
        if r.path == path.as_bytes() && !r.deleted {
            id = Some(r.id);
        }
    });
    id.unwrap_or_else(|| panic!("{path} not found"))
}

#[test]
fn a_broken_fixup_is_a_problem_naming_the_record_and_the_rest_reads() {
    let (_, img) = image();
    let fs = open_file(img);
    let victim = record_of(fs.as_ref(), "/dir1/small.txt");
    let mut bytes = std::fs::read(img).unwrap();
    // The MFT of a fresh small image is one run, so record N is at N KiB.
    let at = mft_at(&bytes) + victim as usize * 1024 + 510;
    bytes[at] ^= 0xff;
    let vol: Arc<dyn ReadAt> = Arc::new(bytes);
    let fs = ntfs::open(vol).unwrap();
    let (lines, problems) = ours(fs.as_ref());
    let name = format!("MFT record {victim}");
    assert!(
        problems
            .iter()
            .any(|p| p.at == name && p.what.contains("update sequence")),
        "{problems:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("/dir1/sub/deeper/leaf.txt|"))
    );
}

/// A deleted directory whose record is taken again (here: its sequence
/// number bumped, as reuse does) no longer holds its children: they become
/// orphans. TSK lists what an orphaned directory still holds under it
/// (`/$OrphanFiles/inner/x.txt`); the walk lists orphans flat, so those
/// lines alone are left out here.
#[test]
fn a_reused_parent_makes_orphans_as_fls_does() {
    let (dir, img) = image();
    let fs = open_file(img);
    let mut gone = None;
    walk::walk(fs.as_ref(), &mut |r| {
        if r.path == b"/gone" {
            gone = Some(r.id);
        }
    });
    let gone = gone.expect("/gone");
    let mut bytes = std::fs::read(img).unwrap();
    let at = mft_at(&bytes) + gone as usize * 1024 + 16;
    let seq = u16::from_le_bytes([bytes[at], bytes[at + 1]]) + 1;
    bytes[at..at + 2].copy_from_slice(&seq.to_le_bytes());
    let edited = dir.join("orphans.img");
    std::fs::write(&edited, &bytes).unwrap();
    let fs = open_file(&edited);
    let (ours, problems) = ours(fs.as_ref());
    assert!(problems.is_empty(), "{problems:?}");
    let (ours, tsk) = stale_names(ours, tsk(&edited));
    assert_same(&ours, &tsk);
    let orphans = fs.orphans(&Default::default()).unwrap();
    assert!(orphans.len() >= 10, "{orphans:?}"); // 16..=23, inner, y.bin
}

#[test]
fn a_broken_index_block_is_reported_and_the_directory_still_lists() {
    let (_, img) = image();
    let mut bytes = std::fs::read(img).unwrap();
    let name: Vec<u8> = "file_0100"
        .encode_utf16()
        .flat_map(|u| u.to_le_bytes())
        .collect();
    let block = (0..bytes.len() / 4096)
        .map(|i| i * 4096)
        .find(|&o| {
            &bytes[o..o + 4] == b"INDX" && bytes[o..o + 4096].windows(name.len()).any(|w| w == name)
        })
        .expect("the index block naming file_0100");
    bytes[block + 510] ^= 0xff;
    let fs = ntfs::open(Arc::new(bytes)).unwrap();
    let (lines, _) = ours(fs.as_ref());
    let problems = fs.problems();
    assert!(
        problems
            .iter()
            .any(|p| p.at.contains("index block") && p.what.contains("update sequence")),
        "{problems:?}"
    );
    // Its names still come through their records' $FILE_NAME.
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("0|/many/file_0100.txt|")),
        "{:?}",
        lines
            .iter()
            .filter(|l| l.contains("/many"))
            .take(5)
            .collect::<Vec<_>>()
    );
}

#[test]
fn a_wrong_boot_sector_is_a_clear_error() {
    let (_, img) = image();
    let good = std::fs::read(img).unwrap();
    let mut bad = good.clone();
    bad[3..11].copy_from_slice(b"NOTNTFS ");
    let e = ntfs::open(Arc::new(bad)).err().unwrap();
    assert!(
        e.to_string().contains("byte 3") && e.to_string().contains("NTFS"),
        "{e}"
    );
    let mut bad = good.clone();
    bad[13] = 3; // sectors per cluster not a power of two
    let e = ntfs::open(Arc::new(bad)).err().unwrap();
    assert!(e.to_string().contains("byte 13"), "{e}");
    let mut bad = good;
    bad[0x30..0x38].copy_from_slice(&u64::MAX.to_le_bytes());
    let e = ntfs::open(Arc::new(bad)).err().unwrap();
    assert!(e.to_string().contains("byte 48"), "{e}");
}

#[test]
fn an_index_entry_pointing_at_an_ancestor_is_a_walk_problem_and_the_walk_ends() {
    let (_, img) = image();
    let fs = open_file(img);
    let sub = record_of(fs.as_ref(), "/dir1/sub");
    let dir1 = record_of(fs.as_ref(), "/dir1");
    let mut bytes = std::fs::read(img).unwrap();
    // sub's index root names "deeper": point that entry at dir1.
    let rec = mft_at(&bytes) + sub as usize * 1024;
    let name: Vec<u8> = "deeper"
        .encode_utf16()
        .flat_map(|u| u.to_le_bytes())
        .collect();
    let pos = (rec..rec + 1024)
        .find(|&p| bytes[p..p + name.len()] == name[..] && bytes[p - 2] == 6)
        .expect("index entry for deeper");
    let entry = pos - 66 - 16;
    bytes[entry..entry + 6].copy_from_slice(&dir1.to_le_bytes()[..6]);
    let fs = ntfs::open(Arc::new(bytes)).unwrap();
    let mut n = 0;
    let problems = walk::walk(fs.as_ref(), &mut |_| n += 1);
    assert!(
        problems.iter().any(|p| p.what.contains("loop")),
        "{problems:?}"
    );
    assert!(n < 10_000);
}

#[test]
fn a_cut_image_reports_problems_and_reads_what_is_before() {
    let (_, img) = image();
    let bytes = std::fs::read(img).unwrap();
    let cut = mft_at(&bytes) + 40 * 1024;
    let fs = ntfs::open(Arc::new(bytes[..cut].to_vec())).unwrap();
    let (lines, problems) = ours(fs.as_ref());
    assert!(
        problems
            .iter()
            .any(|p| p.what.contains("past the volume's end")),
        "{problems:?}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with("0|/$Volume|")),
        "{lines:?}"
    );
}

mod mutated {
    use super::*;
    use proptest::prelude::*;

    fn small() -> &'static Vec<u8> {
        static IMG: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
        IMG.get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let img = make_image(dir.path(), "small.img", 4, |m| {
                std::fs::create_dir_all(m.join("d/e")).unwrap();
                std::fs::write(m.join("d/a.txt"), b"a").unwrap();
                std::fs::write(m.join("d/e/b.bin"), vec![1u8; 9000]).unwrap();
                std::fs::write(m.join("gone.txt"), b"x").unwrap();
                std::fs::remove_file(m.join("gone.txt")).unwrap();
            });
            std::fs::read(img).unwrap()
        })
    }

    fn exercise(bytes: Vec<u8>) {
        let start = Instant::now();
        let Ok(fs) = ntfs::open(Arc::new(bytes)) else {
            return;
        };
        let mut ids = Vec::new();
        walk::walk(fs.as_ref(), &mut |r| {
            let _ = bodyfile::lines(&r);
            ids.push(r.id);
        });
        for id in ids {
            if let (Ok(x), Ok(n)) = (fs.extents(id), fs.node(id)) {
                let mut buf = vec![0u8; n.size.min(1 << 20) as usize];
                let _ = fs::read_data(fs.volume().as_ref(), &x, n.size, 0, &mut buf);
            }
        }
        assert!(start.elapsed() < Duration::from_secs(10));
    }

    fn names(bytes: Vec<u8>) -> BTreeSet<Vec<u8>> {
        let fs = ntfs::open(Arc::new(bytes)).unwrap();
        let mut names = BTreeSet::new();
        walk::walk(fs.as_ref(), &mut |r| {
            names.insert(r.path);
        });
        names
    }

    /// Found by the `ntfs` fuzz target: a directory's `$INDEX_ALLOCATION`
    /// whose allocated size claims 1 GiB (its runs unchanged) made the
    /// reader allocate and scan 256 MiB per listing of a 4 MiB image.
    #[test]
    fn index_allocation_size_past_its_runs() {
        let mut bytes = small().clone();
        let mft = mft_at(&bytes);
        let mut patched = 0;
        for rec in 0..64usize {
            let r = mft + rec * 1024;
            if &bytes[r..r + 4] != b"FILE" {
                continue;
            }
            let mut a = r + u16::from_le_bytes([bytes[r + 0x14], bytes[r + 0x15]]) as usize;
            while a + 8 < r + 1024 {
                let kind = u32::from_le_bytes(bytes[a..a + 4].try_into().unwrap());
                let len = u32::from_le_bytes(bytes[a + 4..a + 8].try_into().unwrap()) as usize;
                if kind == 0xFFFF_FFFF || len == 0 {
                    break;
                }
                // A non-resident $INDEX_ALLOCATION whose allocated size
                // field stays clear of a sector's fixup bytes.
                let field = a + 0x28 - r;
                if kind == 0xA0 && bytes[a + 8] == 1 && field % 512 < 504 {
                    bytes[a + 0x28..a + 0x30].copy_from_slice(&(1u64 << 30).to_le_bytes());
                    patched += 1;
                }
                a += len;
            }
        }
        assert!(patched > 0, "no $INDEX_ALLOCATION found to patch");
        let start = Instant::now();
        let got = names(bytes);
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "took {:?}",
            start.elapsed()
        );
        // The clusters the runs place are all there is to the index.
        assert_eq!(got, names(small().clone()));
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

        #[test]
        fn mutated_metadata_never_panics(
            hits in proptest::collection::vec((0usize..200 * 1024, any::<u8>()), 1..64),
            boot in proptest::collection::vec((0usize..512, any::<u8>()), 0..3),
        ) {
            let mut bytes = small().clone();
            let mft = mft_at(&bytes);
            for (off, v) in hits {
                if let Some(b) = bytes.get_mut(mft + off) { *b = v; }
            }
            for (off, v) in boot { bytes[off] = v; }
            exercise(bytes);
        }

        #[test]
        fn truncated_images_never_panic(len in 0usize..4 << 20) {
            let bytes = small()[..len.min(small().len())].to_vec();
            exercise(bytes);
        }
    }
}

/// Speed against fls on several thousand files; run by hand:
/// `cargo test --release -p custody-disk --test ntfs -- --ignored --nocapture`.
#[test]
#[ignore]
fn speed_against_fls() {
    let dir = tempfile::tempdir().unwrap();
    let img = make_image(dir.path(), "many.img", 256, |m| {
        for d in 0..40 {
            std::fs::create_dir(m.join(format!("d{d}"))).unwrap();
            for f in 0..150 {
                std::fs::write(m.join(format!("d{d}/f{f}.txt")), format!("{d}/{f}")).unwrap();
            }
        }
    });
    let t = Instant::now();
    let fs = open_file(&img);
    let mut out = Vec::new();
    walk::walk(fs.as_ref(), &mut |r| {
        bodyfile::write(&mut out, &r).unwrap();
    });
    let ours = t.elapsed();
    let t = Instant::now();
    let tsk = run(Command::new("fls").args(["-r", "-m", "/"]).arg(&img));
    let fls = t.elapsed();
    println!(
        "walk+bodyfile: {ours:?} ({} lines); fls -r -m /: {fls:?} ({} lines)",
        out.iter().filter(|&&b| b == b'\n').count(),
        tsk.iter().filter(|&&b| b == b'\n').count()
    );
}

/// The bodyfile comparison on any image: `NTFS_IMAGE=path cargo test -p
/// custody-disk --test ntfs -- --ignored any_image`.
#[test]
#[ignore]
fn any_image_against_fls() {
    let img = PathBuf::from(std::env::var_os("NTFS_IMAGE").expect("NTFS_IMAGE"));
    let fs = open_file(&img);
    let (ours, problems) = ours(fs.as_ref());
    println!("problems: {problems:?}");
    assert_same(&ours, &tsk(&img));
}
