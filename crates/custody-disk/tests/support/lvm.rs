//! LVM2 physical volumes made by LVM's own tools for tests, as root: a
//! file on a loop device made a PV by `pvcreate`, never activated (this
//! machine and CI's have no device-mapper: `--driverloaded=n`, `-an`), and
//! the segment map as `lvs --segments` and `pvs` report it, to write an
//! LV's bytes where LVM places them. Used by `custody-disk`'s LVM tests and
//! by custody's end-to-end processing test. Needs lvm2 and util-linux
//! (scripts/emulators.sh).

use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::process::Command;

#[path = "tools.rs"]
mod tools;

pub const NO_DM: &str = "--driverloaded=n";

pub fn tool(name: &str) {
    tools::require(name, "lvm2, util-linux, e2fsprogs");
}

pub fn run(cmd: &mut Command) -> String {
    let out = cmd.env("LVM_SUPPRESS_FD_WARNINGS", "1").output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

pub fn lvm(args: &[&str]) -> String {
    run(Command::new(args[0]).arg(NO_DM).args(&args[1..]))
}

/// A PV on a loop device; removed (VG, PV label, loop device) when dropped,
/// whether the test passed or not.
pub struct Pv {
    pub dir: tempfile::TempDir,
    pub file: PathBuf,
    pub dev: String,
    pub vg: String,
}

impl Drop for Pv {
    fn drop(&mut self) {
        let quiet = |args: &[&str]| {
            let _ = Command::new(args[0])
                .args(&args[1..])
                .env("LVM_SUPPRESS_FD_WARNINGS", "1")
                .output();
        };
        quiet(&["vgremove", NO_DM, "-f", &self.vg]);
        quiet(&["pvremove", NO_DM, "-ff", "-y", &self.dev]);
        quiet(&["losetup", "-d", &self.dev]);
    }
}

impl Pv {
    /// A PV of `mib` MiB with VG `vg` (extents of 1 MiB) and no LV yet.
    pub fn new(vg: &str, mib: u64) -> Self {
        for t in [
            "losetup", "pvcreate", "vgcreate", "lvcreate", "lvextend", "lvs", "pvs", "vgs",
            "vgremove", "pvremove",
        ] {
            tool(t);
        }
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pv.img");
        std::fs::File::create(&file)
            .unwrap()
            .set_len(mib << 20)
            .unwrap();
        let dev = run(Command::new("losetup").args(["-f", "--show"]).arg(&file))
            .trim()
            .to_string();
        let pv = Pv {
            dir,
            file,
            dev,
            vg: vg.to_string(),
        };
        lvm(&["pvcreate", &pv.dev]);
        lvm(&["vgcreate", "-s", "1M", vg, &pv.dev]);
        pv
    }

    /// `lvcreate` of `size` (`2M`), not activated.
    pub fn lvcreate(&self, name: &str, size: &str) {
        lvm(&["lvcreate", "-an", "-Zn", "-L", size, "-n", name, &self.vg]);
    }
}

/// One LV segment as LVM reports it, in sectors: where it starts in the
/// LV, its length, and where it starts on the PV.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Mapped {
    pub lv: String,
    pub start: u64,
    pub len: u64,
    pub pv_offset: u64,
}

pub fn sectors(s: &str) -> u64 {
    s.trim().trim_end_matches('S').parse().unwrap()
}

/// The segments as LVM's tools report them.
pub fn mapping(pv: &Pv) -> Vec<Mapped> {
    let extent = sectors(&lvm(&[
        "vgs",
        "--units",
        "s",
        "--noheadings",
        "-o",
        "vg_extent_size",
        &pv.vg,
    ]));
    let pe_start = sectors(&lvm(&[
        "pvs",
        "--units",
        "s",
        "--noheadings",
        "-o",
        "pe_start",
        &pv.dev,
    ]));
    let out = lvm(&[
        "lvs",
        "--segments",
        "--units",
        "s",
        "--noheadings",
        "--separator",
        ",",
        "-o",
        "lv_name,seg_start,seg_size,seg_pe_ranges,segtype",
        &pv.vg,
    ]);
    let mut got: Vec<Mapped> = out
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.trim().split(',').collect();
            assert_eq!(f[4], "linear", "{l}");
            // `/dev/loop0:5-6`: the PV's extents.
            let first: u64 = f[3]
                .rsplit(':')
                .next()
                .unwrap()
                .split('-')
                .next()
                .unwrap()
                .parse()
                .unwrap();
            Mapped {
                lv: f[0].to_string(),
                start: sectors(f[1]),
                len: sectors(f[2]),
                pv_offset: pe_start + first * extent,
            }
        })
        .collect();
    got.sort();
    got
}

/// Writes `data` as LV `lv`'s bytes, at the places LVM reports.
pub fn write_lv(pv: &Pv, map: &[Mapped], lv: &str, data: &[u8]) {
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&pv.file)
        .unwrap();
    for m in map.iter().filter(|m| m.lv == lv) {
        let from = (m.start * 512) as usize;
        let to = from + (m.len * 512) as usize;
        f.write_all_at(&data[from..to], m.pv_offset * 512).unwrap();
    }
    f.sync_all().unwrap();
}
