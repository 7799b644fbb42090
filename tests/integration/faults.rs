//! Bad input and faults: each gets a clear error, and nothing half-written
//! is ever recorded complete.

use std::io::Write;
use std::time::{Duration, Instant};

use crate::common::{Home, mixed_bytes, stderr};

#[test]
fn a_missing_path_is_named() {
    let home = Home::new();
    let out = home.run(&[
        "acquire",
        "file",
        "/nonexistent/evidence.img",
        "--case",
        "c",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("/nonexistent/evidence.img"),
        "{}",
        stderr(&out)
    );
    assert!(home.store_files().is_empty());
}

#[test]
fn a_directory_is_refused() {
    let home = Home::new();
    let out = home.run(&[
        "acquire",
        "file",
        home.path().to_str().unwrap(),
        "--case",
        "c",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("is a directory"), "{}", stderr(&out));
}

#[test]
fn an_unreadable_device_records_nothing() {
    // /proc/self/mem of the reading process fails at offset 0 with EIO, as a dying disk would.
    let home = Home::new();
    let out = home.run(&["acquire", "file", "/proc/self/mem", "--case", "c"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("failed to read the source at byte 0"), "{err}");
    assert!(
        !home.store_files().iter().any(|f| f.contains("manifests")),
        "{:?}",
        home.store_files()
    );
    assert!(
        !home.store_files().iter().any(|f| f.ends_with(".zst")),
        "{:?}",
        home.store_files()
    );
}

#[test]
fn ids_with_path_tricks_are_refused() {
    let home = Home::new();
    let src = home.path().join("f.bin");
    std::fs::write(&src, b"x").unwrap();
    for bad in ["../escape", "a/b", "..", ".hidden"] {
        let out = home.run(&["acquire", "file", src.to_str().unwrap(), "--case", bad]);
        assert_eq!(out.status.code(), Some(2), "{bad}");
        assert!(
            stderr(&out).contains("invalid case id"),
            "{bad}: {}",
            stderr(&out)
        );
        let out = home.run(&["export", "ok-case", bad, "-o", "/tmp/never"]);
        assert_eq!(out.status.code(), Some(2), "{bad}");
        assert!(
            stderr(&out).contains("invalid artefact id"),
            "{bad}: {}",
            stderr(&out)
        );
    }
    assert!(home.store_files().is_empty());
    assert!(!home.path().join("escape").exists());
}

#[test]
fn a_file_that_grows_during_acquisition_is_flagged() {
    // A FIFO writer appends while custody reads: the size seen at open and at
    // the end differ only for regular files, so grow a regular file from a thread.
    let home = Home::new();
    let src = home.path().join("growing.log");
    std::fs::write(&src, mixed_bytes(64 << 20, 1)).unwrap();
    let path = src.clone();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    let writer = std::thread::spawn(move || {
        let mut f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
        while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
            f.write_all(b"appended while acquiring\n").unwrap();
            std::thread::sleep(Duration::from_millis(1));
        }
    });
    let report = home.json(&["acquire", "file", src.to_str().unwrap(), "--case", "g"]);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.join().unwrap();
    let changed = report["artefacts"][0]["source_changed"]
        .as_str()
        .expect("source_changed must be set");
    assert!(changed.contains("changed during acquisition"), "{changed}");
    // What was read is still verifiable as what was read.
    assert!(home.run(&["verify", "g"]).status.success());
}

#[test]
fn a_full_disk_at_the_store_records_nothing_and_leaves_no_temporary_file() {
    let home = Home::new();
    let mnt = home.path().join("small-store");
    std::fs::create_dir_all(&mnt).unwrap();
    let mounted = std::process::Command::new("mount")
        .args([
            "-t",
            "tmpfs",
            "-o",
            "size=1m",
            "tmpfs",
            mnt.to_str().unwrap(),
        ])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !mounted {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "this test needs root to mount a 1 MiB tmpfs"
        );
        eprintln!("NOT RUN: cannot mount a tmpfs (needs root)");
        return;
    }
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let _guard = Unmount(mnt.clone());
    // Noise does not compress: 4 MiB of it cannot fit in 1 MiB.
    let mut noise = vec![0u8; 4 << 20];
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    for b in noise.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    let src = home.path().join("noise.bin");
    std::fs::write(&src, &noise).unwrap();
    let out = home.run(&[
        "acquire",
        "file",
        src.to_str().unwrap(),
        "--case",
        "full",
        "--store",
        mnt.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("No space left on device"),
        "{}",
        stderr(&out)
    );
    let mut left = Vec::new();
    let mut stack = vec![mnt.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                left.push(e.path());
            }
        }
    }
    assert!(left.is_empty(), "files left in the full store: {left:?}");
}

#[test]
fn ctrl_c_leaves_nothing_that_looks_complete() {
    let home = Home::new();
    let fifo = home.path().join("slow-source");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
    let child = home
        .cmd()
        .args(["acquire", "file", fifo.to_str().unwrap(), "--case", "int"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Feed more than a frame so the store has started writing, then keep the source open.
    let mut w = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
    w.write_all(&mixed_bytes(12 << 20, 5)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !home.store_files().iter().any(|f| f.contains(".partial-")) {
        assert!(
            Instant::now() < deadline,
            "no partial object appeared: {:?}",
            home.store_files()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    drop(w);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("interrupted"), "{}", stderr(&out));
    let files = home.store_files();
    assert!(
        files
            .iter()
            .all(|f| !f.contains(".partial-") && !f.contains("manifests")),
        "{files:?}"
    );
    let listed = home.json(&["cases"]);
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["artefacts"] == 0),
        "{listed}"
    );
}
