//! Disk images made by the tools that make real disks (`sgdisk`, `mkfs.*`,
//! `mkntfs`, `cryptsetup`), read by custody in place, with The Sleuth Kit's
//! `mmls` as the independent oracle of where each partition is. The tools
//! come from `scripts/emulators.sh`; a missing one fails the test.

use std::os::unix::fs::FileExt as _;
use std::path::Path;
use std::sync::Arc;

use custody::process::image::{FileImage, ReadAt, StoredImage};
use custody::process::volume::{Content, Scheme, layout};

use crate::common::Home;
use crate::process_case::acquire_image;

const MIB: u64 = 1 << 20;

fn run(cmd: &str, args: &[&str]) -> String {
    String::from_utf8_lossy(&crate::process_case::run(cmd, args)).into_owned()
}

/// A file of `size` bytes holding the file system `make` writes into it.
fn file_system(dir: &Path, name: &str, size: u64, make: &[&str]) -> Vec<u8> {
    let path = dir.join(name);
    std::fs::File::create(&path).unwrap().set_len(size).unwrap();
    let (cmd, args) = make.split_first().unwrap();
    let mut args: Vec<&str> = args.to_vec();
    args.push(path.to_str().unwrap());
    run(cmd, &args);
    std::fs::read(&path).unwrap()
}

/// The partitions `mmls` lists: (start sector, length in sectors).
pub fn mmls(image: &Path) -> Vec<(u64, u64)> {
    run("mmls", &[image.to_str().unwrap()])
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            // `004:  000  0000002048  0000034815  0000032768  root`: a slot
            // with a table index (not Meta, not -------).
            let slot = f.get(1)?;
            if !slot
                .trim_end_matches(':')
                .chars()
                .all(|c| c.is_ascii_digit())
            {
                return None;
            }
            Some((f.get(2)?.parse().ok()?, f.get(4)?.parse().ok()?))
        })
        .collect()
}

/// A GPT disk of five partitions: ext4, FAT (EFI), XFS, NTFS, LUKS.
fn gpt_disk(dir: &Path) -> std::path::PathBuf {
    let disk = dir.join("disk.img");
    std::fs::File::create(&disk)
        .unwrap()
        .set_len(400 * MIB)
        .unwrap();
    run(
        "sgdisk",
        &[
            "-n1:2048:+16M",
            "-t1:8300",
            "-c1:root",
            "-n2:0:+8M",
            "-t2:ef00",
            "-c2:efi",
            "-n3:0:+320M",
            "-t3:8300",
            "-n4:0:+16M",
            "-t4:0700",
            "-n5:0:+8M",
            "-t5:8309",
            disk.to_str().unwrap(),
        ],
    );
    let key = dir.join("key");
    std::fs::write(&key, b"not a real key, only a test's").unwrap();
    let key = key.to_str().unwrap().to_owned();
    let systems = [
        file_system(dir, "p1", 16 * MIB, &["mkfs.ext4", "-q"]),
        file_system(dir, "p2", 8 * MIB, &["mkfs.vfat"]),
        file_system(dir, "p3", 320 * MIB, &["mkfs.xfs", "-q"]),
        file_system(dir, "p4", 16 * MIB, &["mkntfs", "-q", "-F", "-f"]),
        file_system(
            dir,
            "p5",
            8 * MIB,
            &[
                "cryptsetup",
                "luksFormat",
                "--batch-mode",
                "--type",
                "luks2",
                "--key-file",
                &key,
            ],
        ),
    ];
    let f = std::fs::OpenOptions::new().write(true).open(&disk).unwrap();
    for ((start, _), bytes) in mmls(&disk).iter().zip(&systems) {
        f.write_all_at(bytes, start * 512).unwrap();
    }
    disk
}

#[test]
fn a_gpt_disk_made_by_sgdisk_reads_as_mmls_lists_it_with_each_file_system_named() {
    let dir = tempfile::tempdir().unwrap();
    let disk = gpt_disk(dir.path());
    let oracle = mmls(&disk);
    assert_eq!(oracle.len(), 5, "{oracle:?}");
    let l = layout(&FileImage::open(&disk).unwrap()).unwrap();
    assert_eq!(l.scheme, Scheme::Gpt);
    assert!(l.problems.is_empty(), "{:?}", l.problems);
    let got: Vec<(u64, u64)> = l
        .volumes
        .iter()
        .map(|v| (v.start / 512, v.length / 512))
        .collect();
    assert_eq!(got, oracle, "custody's partitions against mmls's");
    let contents: Vec<Content> = l.volumes.iter().map(|v| v.content).collect();
    assert_eq!(
        contents,
        [
            Content::Ext,
            Content::Fat,
            Content::Xfs,
            Content::Ntfs,
            Content::Luks
        ]
    );
    assert!(l.volumes[4].content.encrypted());
    assert_eq!(l.volumes[0].name.as_deref(), Some("root"));
    assert_eq!(
        l.volumes[1].type_id, "c12a7328-f81f-11d2-ba4b-00a0c93ec93b",
        "the EFI type"
    );

    // A damaged primary header: the backup at the disk's end is read, and said.
    let f = std::fs::OpenOptions::new().write(true).open(&disk).unwrap();
    f.write_all_at(b"XX", 512 + 40).unwrap();
    let l = layout(&FileImage::open(&disk).unwrap()).unwrap();
    let got: Vec<(u64, u64)> = l
        .volumes
        .iter()
        .map(|v| (v.start / 512, v.length / 512))
        .collect();
    assert_eq!(got, oracle, "read from the backup header");
    assert!(
        l.problems
            .iter()
            .any(|p| p.what.contains("fails its checksum"))
            && l.problems
                .iter()
                .any(|p| p.what.contains("backup GPT header")),
        "{:?}",
        l.problems
    );
}

#[test]
fn an_acquired_disk_reads_in_place_from_the_store_as_the_raw_disk_does() {
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("small.img");
    std::fs::File::create(&disk)
        .unwrap()
        .set_len(48 * MIB)
        .unwrap();
    run(
        "sgdisk",
        &[
            "-n1:2048:+16M",
            "-t1:8300",
            "-n2:0:+16M",
            "-t2:ef00",
            disk.to_str().unwrap(),
        ],
    );
    let systems = [
        file_system(dir.path(), "a", 16 * MIB, &["mkfs.ext4", "-q"]),
        file_system(dir.path(), "b", 16 * MIB, &["mkfs.vfat"]),
    ];
    let f = std::fs::OpenOptions::new().write(true).open(&disk).unwrap();
    for ((start, _), bytes) in mmls(&disk).iter().zip(&systems) {
        f.write_all_at(bytes, start * 512).unwrap();
    }
    let raw = layout(&FileImage::open(&disk).unwrap()).unwrap();

    let home = Home::new();
    let report = acquire_image(&home, &disk, "IN-PLACE", &[]);
    let key = report["artefacts"][0]["stored"]["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let stored = rt.block_on(async {
        let store: Arc<dyn custody::store::EvidenceStore> =
            Arc::new(custody::store::local::LocalStore::new(home.store_dir()));
        let key = custody::store::ObjectKey::new(key).unwrap();
        Arc::new(StoredImage::open(store, key).await.unwrap())
    });
    assert_eq!(stored.size(), 48 * MIB);
    let read = {
        let stored = stored.clone();
        rt.block_on(async move {
            tokio::task::spawn_blocking(move || layout(stored.as_ref()).unwrap())
                .await
                .unwrap()
        })
    };
    assert_eq!(
        read.volumes, raw.volumes,
        "the stored image reads as the raw one"
    );
    assert_eq!(
        read.volumes.iter().map(|v| v.content).collect::<Vec<_>>(),
        [Content::Ext, Content::Fat]
    );
}
