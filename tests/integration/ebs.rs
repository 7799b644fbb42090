//! EBS disk acquisition against moto: a snapshot seeded through the EBS
//! direct write APIs from a real ext4 image with files and never-written
//! gaps, read back through `custody acquire ebs`.
//!
//! moto cannot read EBS direct blocks of a snapshot made by EC2
//! CreateSnapshot; the test launcher (`scripts/moto_server.py`) serves such
//! a snapshot the blocks of the seed its volume was created from, as AWS
//! would, so the `--volume` path is read end to end.

use std::path::Path;
use std::process::Command;

use sha2::{Digest as _, Sha256};

use crate::common::{
    Home, aws_conf as conf, custody_aws as custody, emulator, seed_blocks, stderr,
};
use crate::fault_proxy::{Fault, FaultProxy, Rule};

const BLOCK: usize = 512 * 1024;

/// A 1 GiB ext4 image holding a few files: most of it never written.
fn ext4_image(dir: &Path) -> Vec<u8> {
    let root = dir.join("root");
    std::fs::create_dir_all(root.join("home/alice")).unwrap();
    std::fs::write(root.join("evidence.txt"), "the attacker was here\n").unwrap();
    std::fs::write(
        root.join("home/alice/notes.log"),
        crate::common::mixed_bytes(3 << 20, 21),
    )
    .unwrap();
    std::fs::write(root.join("payload.bin"), crate::common::noise(2 << 20, 8)).unwrap();
    let img = dir.join("disk.img");
    let out = Command::new("mkfs.ext4")
        .args([
            "-q",
            "-F",
            "-E",
            "lazy_itable_init=1,lazy_journal_init=1",
            "-d",
        ])
        .arg(&root)
        .arg(&img)
        .arg("1G")
        .output()
        .expect("mkfs.ext4");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read(&img).unwrap()
}

/// Seeds a snapshot with the non-zero 512 KiB blocks of `image`; returns
/// its id and the number of blocks written.
async fn seed(endpoint: &str, image: &[u8]) -> (String, usize) {
    let blocks: Vec<(usize, &[u8])> = image
        .chunks(BLOCK)
        .enumerate()
        .filter(|(_, b)| b.iter().any(|x| *x != 0))
        .collect();
    let written = blocks.len();
    let gib = i64::try_from(image.len() >> 30).unwrap();
    (seed_blocks(endpoint, gib, &blocks).await, written)
}

#[test]
fn an_ebs_snapshot_is_acquired_bit_exact_with_its_block_manifest() {
    let Some(endpoint) = emulator("CUSTODY_TEST_S3_ENDPOINT") else {
        return;
    };
    let home = Home::new();
    let image = ext4_image(home.path());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (snapshot, written) = rt.block_on(seed(&endpoint, &image));
    assert!(written > 10 && written < 200, "{written} blocks seeded");

    let out = custody(
        &home,
        &endpoint,
        &[
            "--json",
            "acquire",
            "ebs",
            "--snapshot",
            &snapshot,
            "--case",
            "ebs1",
            "--verify",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let arts = r["artefacts"].as_array().unwrap();
    assert_eq!(arts.len(), 2, "image and block manifest: {r}");
    let img = &arts[0];
    assert_eq!(img["kind"], "disk_image");
    assert_eq!(img["source"]["resource"], snapshot.as_str());
    assert_eq!(img["raw"]["size"], image.len() as u64);
    let expected_sha = custody::evidence::sha256_hex(&image);
    assert_eq!(img["raw"]["sha256"], expected_sha.as_str());
    assert_eq!(img["block_map"]["blocks"], (image.len() / BLOCK) as u64);
    assert_eq!(img["block_map"]["written"], written as u64);
    assert!(
        r["verified"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["ok"] == true),
        "{r}"
    );

    // The exported image is bit-exact, and ordinary tools open it.
    let dest = home.path().join("exported.img");
    let out = home.run(&[
        "export",
        "ebs1",
        img["id"].as_str().unwrap(),
        "-o",
        dest.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let exported = std::fs::read(&dest).unwrap();
    assert!(
        exported == image,
        "the exported image differs from the volume"
    );
    let cat = Command::new("debugfs")
        .args(["-R", "cat /evidence.txt"])
        .arg(&dest)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&cat.stdout),
        "the attacker was here\n"
    );

    // The block manifest: every block's SHA-256 in order, and its Merkle root.
    let map = &arts[1];
    assert_eq!(map["kind"], "block_map");
    let dest = home.path().join("blocks.sha256");
    let out = home.run(&[
        "export",
        "ebs1",
        map["id"].as_str().unwrap(),
        "-o",
        dest.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let digests = std::fs::read(&dest).unwrap();
    let expected: Vec<u8> = image
        .chunks(BLOCK)
        .flat_map(|b| Sha256::digest(b).to_vec())
        .collect();
    assert!(
        digests == expected,
        "the block manifest lists each block's SHA-256"
    );
    let mut tree = custody::ledger::merkle::Tree::new();
    for d in digests.chunks(32) {
        tree.push_leaf_hash(custody::ledger::merkle::leaf_hash(d))
            .unwrap();
    }
    let root = hex::encode(tree.root(tree.size()).unwrap().0);
    assert_eq!(img["block_map"]["merkle_root"], root.as_str());
    // The root is in the ledger entry of the image.
    let entries = std::fs::read_to_string(home.path().join("ledger/entries.jsonl")).unwrap();
    assert!(
        entries.contains(&root),
        "the Merkle root is recorded in the ledger"
    );
    let out = home.run(&["verify", "ebs1"]);
    assert!(out.status.success(), "{}", stderr(&out));

    // A window deeper than the blocks whose bodies are read ahead: the
    // requests beyond wait for the pipeline, and the image is the same.
    let out = custody(
        &home,
        &endpoint,
        &[
            "--json",
            "acquire",
            "ebs",
            "--snapshot",
            &snapshot,
            "--case",
            "ebs1w",
            "--window",
            "64",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["artefacts"][0]["raw"]["sha256"], expected_sha.as_str());
    assert_eq!(r["artefacts"][0]["block_map"]["merkle_root"], root.as_str());
}

#[test]
fn a_block_whose_checksum_does_not_match_is_refused() {
    let Some(endpoint) = emulator("CUSTODY_TEST_S3_ENDPOINT") else {
        return;
    };
    let home = Home::new();
    let image = ext4_image(home.path());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (snapshot, _) = rt.block_on(seed(&endpoint, &image));
    // moto never sends a wrong checksum. STUB: the proxy replaces the
    // checksum header of block 0's answers; the bytes come from moto.
    let (proxy, via) = rt.block_on(FaultProxy::start(&endpoint));
    proxy.rule(Rule {
        op: "GetSnapshotBlock",
        path: "/blocks/0",
        pass: 0,
        times: 100,
        fault: Fault::Header(
            "x-amz-checksum",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        ),
    });
    let out = custody(
        &home,
        &via,
        &["acquire", "ebs", "--snapshot", &snapshot, "--case", "bad"],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("block 0") && err.contains("does not match its checksum"),
        "{err}"
    );
    assert_eq!(
        proxy.count_on("GetSnapshotBlock", "/blocks/0"),
        3,
        "read three times, then refused"
    );
    assert!(
        !home.store_files().iter().any(|f| f.contains("manifests")),
        "{:?}",
        home.store_files()
    );
    let entries = std::fs::read_to_string(home.path().join("ledger/entries.jsonl")).unwrap();
    assert!(entries.contains("\"failed\""), "{entries}");
}

#[test]
fn a_volume_is_snapshotted_tagged_and_read_and_a_rerun_reuses_its_snapshot() {
    let Some(endpoint) = emulator("CUSTODY_TEST_S3_ENDPOINT") else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let ec2 = aws_sdk_ec2::Client::new(&conf(&endpoint));
    // A 1 GiB volume created from a seed: six blocks written, the rest never.
    let blocks: Vec<Vec<u8>> = (0..6)
        .map(|i| crate::common::noise(BLOCK, 90 + i))
        .collect();
    let seeded: Vec<(usize, &[u8])> = blocks
        .iter()
        .enumerate()
        .map(|(i, b)| (i * 300 + 1, b.as_slice()))
        .collect();
    let seed = rt.block_on(seed_blocks(&endpoint, 1, &seeded));
    let mut image = vec![0u8; 1 << 30];
    for (i, b) in &seeded {
        image[i * BLOCK..(i + 1) * BLOCK].copy_from_slice(b);
    }
    let vol = rt
        .block_on(
            ec2.create_volume()
                .availability_zone("us-east-1a")
                .snapshot_id(&seed)
                .send(),
        )
        .unwrap();
    let vol = vol.volume_id().unwrap().to_owned();
    let home = Home::new();
    // The first run is cut off by an access error on one block read.
    let (proxy, via) = rt.block_on(FaultProxy::start(&endpoint));
    proxy.rule(Rule {
        op: "GetSnapshotBlock",
        path: "/blocks/301",
        pass: 0,
        times: 100,
        fault: Fault::Status(403, "AccessDeniedException"),
    });
    let out = custody(
        &home,
        &via,
        &[
            "--reason",
            "GuardDuty finding 42",
            "acquire",
            "ebs",
            "--volume",
            &vol,
            "--case",
            "vol1",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let snapshots_of_volume = || {
        rt.block_on(
            ec2.describe_snapshots()
                .filters(
                    aws_sdk_ec2::types::Filter::builder()
                        .name("volume-id")
                        .values(&vol)
                        .build(),
                )
                .send(),
        )
        .unwrap()
        .snapshots()
        .to_vec()
    };
    let snaps = snapshots_of_volume();
    let snap = snaps.first().expect("a snapshot of the volume");
    let tag = |k: &str| {
        snap.tags()
            .iter()
            .find(|t| t.key() == Some(k))
            .and_then(|t| t.value())
            .map(str::to_owned)
    };
    assert_eq!(tag("custody:case").as_deref(), Some("vol1"));
    assert_eq!(
        tag("custody:reason").as_deref(),
        Some("GuardDuty finding 42")
    );
    let entries = std::fs::read_to_string(home.path().join("ledger/entries.jsonl")).unwrap();
    assert!(
        entries.contains("\"snapshot_created\"") && entries.contains(snap.snapshot_id().unwrap()),
        "{entries}"
    );
    assert!(entries.contains("\"failed\""), "{entries}");
    assert!(
        !home.store_files().iter().any(|f| f.contains("manifests")),
        "{:?}",
        home.store_files()
    );

    // Run again: the snapshot the interrupted run made is read, not taken a
    // second time, and the image is the volume's, bit for bit.
    let out = custody(
        &home,
        &endpoint,
        &[
            "--json", "acquire", "ebs", "--volume", &vol, "--case", "vol1",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(snapshots_of_volume().len(), 1, "one snapshot of the volume");
    let entries = std::fs::read_to_string(home.path().join("ledger/entries.jsonl")).unwrap();
    assert_eq!(entries.matches("\"snapshot_created\"").count(), 1);
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let img = &r["artefacts"][0];
    assert_eq!(img["kind"], "disk_image", "{r}");
    assert_eq!(img["source"]["path"], vol.as_str(), "{r}");
    assert_eq!(
        img["source"]["resource"],
        snap.snapshot_id().unwrap(),
        "{r}"
    );
    assert!(
        img["notes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n.as_str().unwrap().contains("interrupted run")),
        "{r}"
    );
    assert_eq!(
        img["raw"]["sha256"],
        custody::evidence::sha256_hex(&image).as_str()
    );
    assert_eq!(img["block_map"]["written"], 6);
}

/// A 1 GiB volume image: 240 blocks of noise spread over it, zeros elsewhere.
fn scattered_image() -> (Vec<u8>, Vec<usize>) {
    let mut image = vec![0u8; 1 << 30];
    let indices: Vec<usize> = (0..240).map(|k| k * 8 + (k % 5)).collect();
    for &i in &indices {
        let start = i * BLOCK;
        image[start..start + BLOCK].copy_from_slice(&crate::common::noise(BLOCK, i as u64));
    }
    (image, indices)
}

/// Lines of the resume journals in `HOME/uploads` (a header, then a line
/// per checkpoint of the partial image).
fn journal_lines(home: &Home) -> usize {
    let Ok(dirs) = std::fs::read_dir(home.path().join("uploads")) else {
        return 0;
    };
    dirs.filter_map(|d| std::fs::read_to_string(d.ok()?.path()).ok())
        .map(|t| t.lines().count())
        .sum()
}

#[test]
fn an_acquisition_killed_half_way_resumes_from_what_the_store_holds() {
    let Some(endpoint) = emulator("CUSTODY_TEST_S3_ENDPOINT") else {
        return;
    };
    let home = Home::new();
    let (image, indices) = scattered_image();
    let rt = tokio::runtime::Runtime::new().unwrap();
    // Put out of index order: moto lists blocks in the order they were put,
    // which the acquisition must not mistake for gaps.
    let mut order: Vec<(usize, &[u8])> = indices
        .iter()
        .map(|&i| (i, &image[i * BLOCK..(i + 1) * BLOCK]))
        .collect();
    order.reverse();
    order.swap(3, 100);
    let snapshot = rt.block_on(seed_blocks(&endpoint, 1, &order));

    // The service answers 120 block reads, then hangs; the acquisition is
    // killed (SIGKILL) while it waits.
    let (proxy, via) = rt.block_on(FaultProxy::start(&endpoint));
    proxy.rule(Rule {
        op: "GetSnapshotBlock",
        path: "",
        pass: 120,
        times: 100_000,
        fault: Fault::Stall,
    });
    let args = [
        "acquire",
        "ebs",
        "--snapshot",
        &snapshot,
        "--case",
        "resume1",
    ];
    let mut child = home
        .cmd()
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .args(["--endpoint-url", &via])
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Once the reads hang, the store checkpoints what it holds: wait for a
    // checkpoint, then for the journal to stay still.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let mut last = (0, std::time::Instant::now());
    loop {
        assert!(
            std::time::Instant::now() < deadline,
            "no checkpoint was journalled"
        );
        assert!(child.try_wait().unwrap().is_none(), "custody ended early");
        let n = journal_lines(&home);
        if n != last.0 {
            last = (n, std::time::Instant::now());
        } else if n >= 2 && last.1.elapsed() > std::time::Duration::from_millis(1500) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        !home.store_files().iter().any(|f| f.contains("manifests")),
        "nothing is recorded complete: {:?}",
        home.store_files()
    );
    assert!(
        home.store_files().iter().any(|f| f.contains(".partial-")),
        "the partial image is kept: {:?}",
        home.store_files()
    );

    // The same command again: the blocks the store holds are not read again.
    proxy.heal();
    proxy.reset_counts();
    let mut json_args = vec!["--json"];
    json_args.extend_from_slice(&args);
    let out = custody(&home, &via, &json_args);
    assert!(out.status.success(), "{}", stderr(&out));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let img = &r["artefacts"][0];
    assert_eq!(
        img["raw"]["sha256"],
        custody::evidence::sha256_hex(&image).as_str(),
        "the resumed image is bit-exact"
    );
    assert_eq!(img["block_map"]["written"], indices.len() as u64);
    let resumed: u32 = img["notes"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|n| {
            let rest = n.as_str()?.strip_prefix("resumed: ")?;
            let (count, tail) = rest.split_once(' ')?;
            tail.starts_with("of the 240 blocks")
                .then(|| count.parse().ok())?
        })
        .unwrap_or_else(|| panic!("no resume note: {img}"));
    // 120 blocks were answered; those in the last, unfinished frame are not
    // in the store.
    assert!((100..=120).contains(&resumed), "{resumed} blocks resumed");
    assert_eq!(
        proxy.count("GetSnapshotBlock"),
        indices.len() as u32 - resumed,
        "blocks the store held are not read again"
    );
    assert_eq!(journal_lines(&home), 0, "the journal is removed");
    assert!(
        !home.store_files().iter().any(|f| f.contains(".partial-")),
        "the partial image became the artefact: {:?}",
        home.store_files()
    );
    let out = home.run(&["verify", "resume1"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn changed_since_acquires_only_the_changed_blocks_as_a_delta() {
    let Some(endpoint) = emulator("CUSTODY_TEST_S3_ENDPOINT") else {
        return;
    };
    let home = Home::new();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let old: Vec<Vec<u8>> = (0..24)
        .map(|i| crate::common::noise(BLOCK, 500 + i))
        .collect();
    let mut new = old.clone();
    let changed = [2usize, 9, 17];
    for &i in &changed {
        new[i] = crate::common::noise(BLOCK, 900 + i as u64);
    }
    // moto keeps no lineage (ParentSnapshotId is ignored): the newer
    // snapshot is seeded whole, as AWS would present it.
    let as_blocks = |v: &[Vec<u8>]| -> Vec<(usize, Vec<u8>)> {
        v.iter()
            .cloned()
            .enumerate()
            .map(|(i, b)| (i * 3, b))
            .collect()
    };
    let (old_b, new_b) = (as_blocks(&old), as_blocks(&new));
    let old_refs: Vec<(usize, &[u8])> = old_b.iter().map(|(i, b)| (*i, b.as_slice())).collect();
    let new_refs: Vec<(usize, &[u8])> = new_b.iter().map(|(i, b)| (*i, b.as_slice())).collect();
    let base = rt.block_on(seed_blocks(&endpoint, 1, &old_refs));
    let snapshot = rt.block_on(seed_blocks(&endpoint, 1, &new_refs));

    let r = serde_json::from_slice::<serde_json::Value>(
        &custody(
            &home,
            &endpoint,
            &[
                "--json",
                "acquire",
                "ebs",
                "--snapshot",
                &snapshot,
                "--changed-since",
                &base,
                "--case",
                "delta1",
            ],
        )
        .stdout,
    )
    .unwrap();
    let arts = r["artefacts"].as_array().expect("artefacts");
    let (delta, map) = (&arts[0], &arts[1]);
    assert_eq!(delta["kind"], "disk_delta");
    assert_eq!(delta["block_map"]["changed_since"], base.as_str());
    assert_eq!(delta["block_map"]["blocks"], changed.len() as u64);
    let packed: Vec<u8> = changed.iter().flat_map(|&i| new[i].clone()).collect();
    assert_eq!(
        delta["raw"]["sha256"],
        custody::evidence::sha256_hex(&packed).as_str(),
        "the delta is the changed blocks of the newer snapshot, in order"
    );
    // The manifest names each block's index, so the delta lays onto the base.
    let dest = home.path().join("delta.map");
    let out = home.run(&[
        "export",
        "delta1",
        map["id"].as_str().unwrap(),
        "-o",
        dest.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let records = std::fs::read(&dest).unwrap();
    let expected: Vec<u8> = changed
        .iter()
        .flat_map(|&i| {
            let mut rec = ((i * 3) as u64).to_be_bytes().to_vec();
            rec.extend_from_slice(&Sha256::digest(&new[i]));
            rec
        })
        .collect();
    assert_eq!(records, expected);
    let out = home.run(&["verify", "delta1"]);
    assert!(out.status.success(), "{}", stderr(&out));

    // --changed-since needs one volume or snapshot.
    let out = custody(
        &home,
        &endpoint,
        &[
            "acquire",
            "ebs",
            "--instance",
            "i-0123456789abcdef0",
            "--changed-since",
            &base,
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--changed-since"), "{}", stderr(&out));
}

#[test]
fn throttled_block_reads_are_retried_and_access_errors_are_not() {
    let Some(endpoint) = emulator("CUSTODY_TEST_S3_ENDPOINT") else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let blocks: Vec<Vec<u8>> = (0..4)
        .map(|i| crate::common::noise(BLOCK, 70 + i))
        .collect();
    let seeded: Vec<(usize, &[u8])> = blocks
        .iter()
        .enumerate()
        .map(|(i, b)| (i * 2, b.as_slice()))
        .collect();
    let snapshot = rt.block_on(seed_blocks(&endpoint, 1, &seeded));
    let (proxy, via) = rt.block_on(FaultProxy::start(&endpoint));

    // Throttling and a 503 on block 2: retried with backoff, then read.
    proxy.rule(Rule {
        op: "GetSnapshotBlock",
        path: "/blocks/2",
        pass: 0,
        times: 1,
        fault: Fault::Status(429, "ThrottlingException"),
    });
    proxy.rule(Rule {
        op: "GetSnapshotBlock",
        path: "/blocks/2",
        pass: 0,
        times: 1,
        fault: Fault::Status(503, "ServiceUnavailableException"),
    });
    let home = Home::new();
    let out = custody(
        &home,
        &via,
        &[
            "acquire",
            "ebs",
            "--snapshot",
            &snapshot,
            "--case",
            "retry1",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(proxy.count_on("GetSnapshotBlock", "/blocks/2"), 3);
    assert_eq!(proxy.count_on("GetSnapshotBlock", "/blocks/4"), 1);

    // An access error is not retried: one request, a clear error, nothing recorded complete.
    proxy.heal();
    proxy.reset_counts();
    proxy.rule(Rule {
        op: "GetSnapshotBlock",
        path: "/blocks/4",
        pass: 0,
        times: 100,
        fault: Fault::Status(403, "AccessDeniedException"),
    });
    let home = Home::new();
    let out = custody(
        &home,
        &via,
        &[
            "acquire",
            "ebs",
            "--snapshot",
            &snapshot,
            "--case",
            "denied1",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("AccessDenied"), "{}", stderr(&out));
    assert_eq!(
        proxy.count_on("GetSnapshotBlock", "/blocks/4"),
        1,
        "not retried"
    );
    assert!(
        !home.store_files().iter().any(|f| f.contains("manifests")),
        "{:?}",
        home.store_files()
    );
}

#[test]
fn an_instance_is_snapshotted_as_one_crash_consistent_set() {
    let Some(endpoint) = emulator("CUSTODY_TEST_S3_ENDPOINT") else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let ec2 = aws_sdk_ec2::Client::new(&conf(&endpoint));
    let ami = rt.block_on(crate::common::any_image(&ec2));
    let blocks: Vec<Vec<u8>> = (0..4)
        .map(|i| crate::common::noise(BLOCK, 90 + i))
        .collect();
    let root: Vec<(usize, &[u8])> = vec![(0, &blocks[0]), (9, &blocks[1])];
    let data: Vec<(usize, &[u8])> = vec![(3, &blocks[2]), (700, &blocks[3])];
    let root_seed = rt.block_on(seed_blocks(&endpoint, 1, &root));
    let data_seed = rt.block_on(seed_blocks(&endpoint, 1, &data));
    let (_vpc, _group, id) = rt.block_on(crate::common::instance_in_own_vpc(
        &ec2,
        &ami,
        91,
        Some(&root_seed),
    ));
    // A second volume, attached: both must come from the same moment.
    rt.block_on(async {
        let az = ec2
            .describe_instances()
            .instance_ids(&id)
            .send()
            .await
            .unwrap()
            .reservations()[0]
            .instances()[0]
            .placement()
            .unwrap()
            .availability_zone()
            .unwrap()
            .to_owned();
        let vol = ec2
            .create_volume()
            .snapshot_id(&data_seed)
            .availability_zone(az)
            .send()
            .await
            .unwrap()
            .volume_id()
            .unwrap()
            .to_owned();
        ec2.attach_volume()
            .volume_id(vol)
            .instance_id(&id)
            .device("/dev/sdf")
            .send()
            .await
            .unwrap();
    });
    let home = Home::new();
    let out = custody(
        &home,
        &endpoint,
        &[
            "--json",
            "acquire",
            "ebs",
            "--instance",
            &id,
            "--case",
            "set1",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let arts = r["artefacts"].as_array().unwrap();
    let disks: Vec<&serde_json::Value> =
        arts.iter().filter(|a| a["kind"] == "disk_image").collect();
    assert_eq!(disks.len(), 2, "{r:#}");
    for d in &disks {
        assert!(
            d["notes"].to_string().contains("crash-consistent set of 2"),
            "{}",
            d["notes"]
        );
    }
    // One CreateSnapshots call for both, on the record.
    let entries =
        std::fs::read_to_string(custody::ledger::LedgerPaths::in_home(home.path()).entries())
            .unwrap();
    let sets: Vec<&str> = entries
        .lines()
        .filter(|l| l.contains("create_snapshots"))
        .collect();
    assert_eq!(sets.len(), 1, "{entries}");
    assert!(
        !entries.contains("\"create_snapshot\""),
        "no volume snapshotted alone"
    );
    // Each image is bit-exact: the same raw digest as its volume's source snapshot.
    for seed in [&root_seed, &data_seed] {
        let direct = custody(
            &home,
            &endpoint,
            &[
                "--json",
                "acquire",
                "ebs",
                "--snapshot",
                seed,
                "--case",
                "direct",
            ],
        );
        assert!(direct.status.success(), "{}", stderr(&direct));
        let d: serde_json::Value = serde_json::from_slice(&direct.stdout).unwrap();
        let want = &d["artefacts"][0]["raw"]["sha256"];
        assert!(
            disks.iter().any(|a| &a["raw"]["sha256"] == want),
            "no image of the set matches {seed}"
        );
    }
}
