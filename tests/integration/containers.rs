//! Containers on a node, against real runtimes: containerd (with runc) and
//! Docker from Debian, started by `scripts/test` on state directories of
//! their own (`scripts/runtimes.sh`), running a busybox root file system
//! built locally. Docker's own `docker diff` and `docker top`, and
//! containerd's `ctr task ps`, are the oracles.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use custody::ledger::entry::Entry;
use custody::ledger::{LedgerPaths, read_entries};

use crate::common::{Home, emulator, stderr};

struct Runtimes {
    containerd_root: String,
    containerd_state: String,
    containerd_sock: String,
    docker_root: String,
    docker_host: String,
    docker: String,
    image: String,
    ctr_image: String,
}

fn runtimes() -> Option<Runtimes> {
    Some(Runtimes {
        containerd_root: emulator("CUSTODY_TEST_CONTAINERD_ROOT")?,
        containerd_state: emulator("CUSTODY_TEST_CONTAINERD_STATE")?,
        containerd_sock: emulator("CUSTODY_TEST_CONTAINERD_SOCK")?,
        docker_root: emulator("CUSTODY_TEST_DOCKER_ROOT")?,
        docker_host: emulator("CUSTODY_TEST_DOCKER_HOST")?,
        docker: emulator("CUSTODY_TEST_DOCKER")?,
        image: emulator("CUSTODY_TEST_IMAGE")?,
        ctr_image: emulator("CUSTODY_TEST_CTR_IMAGE")?,
    })
}

/// A name no other test uses.
fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{prefix}-{}-{nanos}", std::process::id())
}

/// What a container's script changes in the image (see scripts/runtimes.sh
/// for what the image holds): an added tree, an appended file, a deleted
/// file, a directory replaced (opaque), a link and a fifo.
const CHANGES: &str = "mkdir /data; echo hello > /data/f; echo tampered >> /etc/motd; rm /bin/ls; \
    rm -rf /etc/keep; mkdir /etc/keep; echo new > /etc/keep/c; ln -s /data/f /data/link; \
    mkfifo /data/fifo; touch /ready";

impl Runtimes {
    fn docker(&self, args: &[&str]) -> String {
        let out = Command::new(&self.docker)
            .env("DOCKER_HOST", &self.docker_host)
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "docker {args:?}: {}", stderr(&out));
        String::from_utf8(out.stdout).unwrap()
    }

    fn ctr(&self, ns: &str, args: &[&str]) -> std::process::Output {
        Command::new("ctr")
            .args(["-a", &self.containerd_sock, "-n", ns])
            .args(args)
            .output()
            .unwrap()
    }

    fn flags(&self) -> Vec<String> {
        [
            ("--containerd-root", &self.containerd_root),
            ("--containerd-state", &self.containerd_state),
            ("--docker-root", &self.docker_root),
        ]
        .into_iter()
        .flat_map(|(f, v)| [f.to_owned(), v.clone()])
        .collect()
    }

    /// A running Docker container that made [`CHANGES`], with `env` set.
    fn docker_container(&self, name: &str, env: &str) -> String {
        let script = format!("echo out-line; echo err-line >&2; {CHANGES}; exec sleep 1000");
        let id = self.docker(&[
            "run",
            "-d",
            "--name",
            name,
            "--network",
            "none",
            "-e",
            env,
            &self.image,
            "sh",
            "-c",
            &script,
        ]);
        wait_for(|| self.docker(&["diff", name]).contains("A /ready"));
        id.trim().to_owned()
    }

    fn rm(&self, name: &str) {
        let _ = Command::new(&self.docker)
            .env("DOCKER_HOST", &self.docker_host)
            .args(["rm", "-f", name])
            .output();
    }
}

fn wait_for(mut ready: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ready() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the container did not get ready in 20 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The members of an exported artefact, by name.
fn members(home: &Home, case: &str, id: &str) -> BTreeMap<String, Vec<u8>> {
    let dest = home.path().join(format!("{id}.tar"));
    let out = home.run(&["export", case, id, "-o", dest.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let mut a = tar::Archive::new(std::fs::File::open(&dest).unwrap());
    let mut m = BTreeMap::new();
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let name = e.path().unwrap().display().to_string();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut data).unwrap();
        m.insert(name, data);
    }
    m
}

fn json(m: &BTreeMap<String, Vec<u8>>, name: &str) -> serde_json::Value {
    serde_json::from_slice(
        m.get(name)
            .unwrap_or_else(|| panic!("no {name} in {:?}", m.keys())),
    )
    .unwrap()
}

fn artefacts<'a>(report: &'a serde_json::Value, kind: &str) -> Vec<&'a serde_json::Value> {
    report["artefacts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["kind"] == kind)
        .collect()
}

/// `(change, path)` of a layer's `changes.json`.
fn change_set(changes: &serde_json::Value) -> BTreeSet<String> {
    changes["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            format!(
                "{} {}",
                c["change"].as_str().unwrap(),
                c["path"].as_str().unwrap()
            )
        })
        .collect()
}

#[test]
fn docker_container_layer_processes_and_logs_match_docker_s_own_view() {
    let Some(rt) = runtimes() else { return };
    let name = unique("custody-d");
    let secret = "CUSTODY_SECRET=s3cr3t-never-logged";
    let id = rt.docker_container(&name, secret);
    // A process started after the container: an intruder's shell would be one.
    rt.docker(&["exec", "-d", &name, "sleep", "777"]);
    wait_for(|| rt.docker(&["top", &name, "-o", "pid"]).lines().count() == 3);
    let top: BTreeSet<u64> = rt
        .docker(&["top", &name, "-o", "pid"])
        .lines()
        .skip(1)
        .map(|l| l.trim().parse().unwrap())
        .collect();
    let diff: BTreeSet<String> = rt
        .docker(&["diff", &name])
        .lines()
        .map(str::to_owned)
        .collect();
    let image_id = rt.docker(&["inspect", "-f", "{{.Image}}", &name]);

    let home = Home::new();
    let mut args = vec![
        "--json",
        "acquire",
        "container",
        "--name",
        &name,
        "--case",
        "c",
        "--verify",
    ];
    let flags = rt.flags();
    args.extend(flags.iter().map(String::as_str));
    let out = home
        .cmd()
        .env("RUST_LOG", "debug")
        .args(&args)
        .output()
        .unwrap();
    rt.rm(&name);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        !stderr(&out).contains("s3cr3t"),
        "the environment reached the log"
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let kinds: Vec<&str> = report["artefacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["kind"].as_str().unwrap())
        .collect();
    // In order of volatility: each process's memory, the layer, the bundle.
    let mut want = vec!["memory_image"; top.len()];
    want.extend(["container_layer", "container"]);
    assert_eq!(kinds, want);
    assert!(
        report["verified"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["ok"] == true)
    );

    let layer = members(
        &home,
        "c",
        artefacts(&report, "container_layer")[0]["id"]
            .as_str()
            .unwrap(),
    );
    let changes = json(&layer, "changes.json");
    assert_eq!(
        change_set(&changes),
        diff,
        "custody's changes against docker diff"
    );
    assert_eq!(layer["upper/data/f"], b"hello\n");
    assert_eq!(layer["upper/etc/motd"], b"welcome\ntampered\n");
    assert_eq!(layer["upper/etc/keep/c"], b"new\n");
    let by_path = |p: &str| {
        changes["changes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["path"] == p)
            .unwrap()
            .clone()
    };
    assert_eq!(by_path("/data/link")["target"], "/data/f");
    assert_eq!(by_path("/data/fifo")["type"], "fifo");
    assert_eq!(by_path("/etc/keep")["opaque"], true);
    assert!(
        !layer.contains_key("upper/data/link"),
        "links are recorded, not stored"
    );

    let bundle = members(
        &home,
        "c",
        artefacts(&report, "container")[0]["id"].as_str().unwrap(),
    );
    let rec = json(&bundle, "container.json");
    assert_eq!(rec["runtime"], "docker");
    assert_eq!(rec["id"], id);
    assert_eq!(rec["name"], name);
    assert_eq!(rec["image"], rt.image);
    assert_eq!(rec["image_id"], image_id.trim());
    assert!(rec["env"].as_array().unwrap().iter().any(|e| e == secret));
    assert_eq!(rec["running"], true);
    assert_eq!(rec["privileged"], false);
    let caps: Vec<&str> = rec["capabilities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert!(
        caps.contains(&"CAP_CHOWN") && !caps.contains(&"CAP_SYS_ADMIN"),
        "{caps:?}"
    );
    let pids: BTreeSet<u64> = rec["processes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["pid"].as_u64().unwrap())
        .collect();
    assert_eq!(pids, top, "custody's processes against docker top");
    assert!(
        rec["processes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["cmdline"][1] == "777")
    );
    let log_member = format!(
        "files/{}/containers/{id}/{id}-json.log",
        rt.docker_root.trim_start_matches('/')
    );
    let log = String::from_utf8_lossy(&bundle[&log_member]).into_owned();
    assert!(
        log.contains("out-line") && log.contains("err-line"),
        "{log}"
    );
    assert!(bundle.keys().any(|k| k.ends_with("/hostconfig.json")));
    let v = home.run(&["verify", "c"]);
    assert!(v.status.success(), "{}", stderr(&v));
}

#[test]
fn containerd_kubernetes_container_with_its_pod_logs() {
    let Some(rt) = runtimes() else { return };
    let id = unique("custody-k");
    let (pod, uid, cname) = ("web-1", "0b7e6c1d-uid", "app");
    let logs = tempfile::tempdir().unwrap();
    let pod_dir = logs.path().join(format!("prod_{pod}_{uid}")).join(cname);
    std::fs::create_dir_all(&pod_dir).unwrap();
    let log_line = "2026-12-03T10:00:00.000000000Z stdout F served /admin to 203.0.113.9\n";
    std::fs::write(pod_dir.join("0.log"), log_line).unwrap();
    let links = logs.path().join("containers");
    std::fs::create_dir_all(&links).unwrap();
    std::os::unix::fs::symlink(
        pod_dir.join("0.log"),
        links.join(format!("{pod}_prod_{cname}-{id}.log")),
    )
    .unwrap();
    let script = format!("{CHANGES}; exec sleep 1000");
    let labels = [
        format!("io.kubernetes.pod.name={pod}"),
        "io.kubernetes.pod.namespace=prod".into(),
        format!("io.kubernetes.pod.uid={uid}"),
        format!("io.kubernetes.container.name={cname}"),
    ];
    let mut run: Vec<&str> = vec!["run", "-d"];
    for l in &labels {
        run.extend(["--label", l]);
    }
    run.extend([rt.ctr_image.as_str(), &id, "sh", "-c", &script]);
    let o = rt.ctr("k8s.io", &run);
    assert!(o.status.success(), "ctr run: {}", stderr(&o));
    wait_for(|| {
        rt.ctr(
            "k8s.io",
            &[
                "task",
                "exec",
                "--exec-id",
                &unique("chk"),
                &id,
                "test",
                "-e",
                "/ready",
            ],
        )
        .status
        .success()
    });
    let ps = rt.ctr("k8s.io", &["task", "ps", &id]);
    let ctr_pids: BTreeSet<u64> = String::from_utf8_lossy(&ps.stdout)
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect();
    let digest = String::from_utf8_lossy(&rt.ctr("k8s.io", &["images", "ls"]).stdout)
        .lines()
        .find(|l| l.starts_with(&rt.ctr_image))
        .and_then(|l| l.split_whitespace().nth(2).map(str::to_owned))
        .unwrap();

    let home = Home::new();
    let prefix = &id[..id.len() - 3];
    let mut args = vec![
        "--json",
        "acquire",
        "container",
        "--id",
        prefix,
        "--case",
        "k",
        "--no-memory",
    ];
    let flags = rt.flags();
    args.extend(flags.iter().map(String::as_str));
    let (pl, cl) = (
        logs.path().to_str().unwrap().to_owned(),
        links.to_str().unwrap().to_owned(),
    );
    args.extend(["--pod-logs", &pl, "--container-logs", &cl]);
    let out = home.run(&args);
    let _ = rt.ctr("k8s.io", &["task", "kill", "-s", "KILL", &id]);
    std::thread::sleep(Duration::from_millis(300));
    let _ = rt.ctr("k8s.io", &["task", "rm", "-f", &id]);
    let _ = rt.ctr("k8s.io", &["containers", "rm", &id]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let layer = members(
        &home,
        "k",
        artefacts(&report, "container_layer")[0]["id"]
            .as_str()
            .unwrap(),
    );
    let want: BTreeSet<String> = [
        "C /bin",
        "D /bin/ls",
        "A /data",
        "A /data/f",
        "A /data/fifo",
        "A /data/link",
        "C /etc",
        "C /etc/keep",
        "A /etc/keep/c",
        "D /etc/keep/a",
        "D /etc/keep/b",
        "C /etc/motd",
        "A /ready",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    let changes = json(&layer, "changes.json");
    // runc makes the mount points the image lacks in the upper directory
    // (Docker's init layer holds them, so `docker diff` never shows them).
    let made: BTreeSet<String> = changes["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["mount_point"] == true)
        .map(|c| {
            format!(
                "{} {}",
                c["change"].as_str().unwrap(),
                c["path"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        made,
        BTreeSet::from(["A /dev", "A /proc", "A /run", "A /sys"].map(str::to_owned))
    );
    assert_eq!(
        change_set(&changes)
            .difference(&made)
            .cloned()
            .collect::<BTreeSet<_>>(),
        want
    );
    assert_eq!(layer["upper/etc/motd"], b"welcome\ntampered\n");

    let bundle = members(
        &home,
        "k",
        artefacts(&report, "container")[0]["id"].as_str().unwrap(),
    );
    let rec = json(&bundle, "container.json");
    assert_eq!(rec["runtime"], "containerd");
    assert_eq!(rec["namespace"], "k8s.io");
    assert_eq!(rec["id"], id);
    assert_eq!(rec["image"], rt.ctr_image);
    assert_eq!(rec["image_digest"], digest);
    assert_eq!(rec["pod"]["name"], pod);
    assert_eq!(rec["pod"]["namespace"], "prod");
    assert_eq!(rec["name"], cname);
    assert_eq!(rec["cgroups_path"], format!("/k8s.io/{id}"));
    let pids: BTreeSet<u64> = rec["processes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["pid"].as_u64().unwrap())
        .collect();
    assert_eq!(pids, ctr_pids, "custody's processes against ctr task ps");
    let log_member = format!(
        "files/{}",
        pod_dir
            .join("0.log")
            .to_str()
            .unwrap()
            .trim_start_matches('/')
    );
    assert_eq!(String::from_utf8_lossy(&bundle[&log_member]), log_line);
    let index = json(&bundle, "index.json");
    assert!(
        index["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["status"] == "link"
                && i["source"]
                    .as_str()
                    .unwrap()
                    .ends_with(&format!("-{id}.log"))),
        "the kubelet's link is recorded: {index}"
    );
    assert!(
        bundle
            .keys()
            .any(|k| k.ends_with(&format!("k8s.io/{id}/config.json")))
    );
}

#[test]
fn acquire_host_takes_every_container_with_the_inventory() {
    let Some(rt) = runtimes() else { return };
    let name = unique("custody-h");
    let id = rt.docker_container(&name, "A=1");
    // A namespace of its own: every namespace is read, not only k8s.io.
    let cid = unique("custody-hc");
    let img = rt.ctr("k8s.io", &["images", "export", "-", &rt.ctr_image]);
    assert!(img.status.success(), "{}", stderr(&img));
    let tar = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(tar.path(), &img.stdout).unwrap();
    let imp = rt.ctr(
        "custody-ns",
        &["images", "import", tar.path().to_str().unwrap()],
    );
    assert!(imp.status.success(), "{}", stderr(&imp));
    let o = rt.ctr(
        "custody-ns",
        &[
            "run",
            "-d",
            rt.ctr_image.as_str(),
            &cid,
            "sh",
            "-c",
            "echo x > /mark; exec sleep 1000",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let home = Home::new();
    let mut args = vec!["--json", "acquire", "host", "--case", "h", "--skip-logs"];
    let flags = rt.flags();
    args.extend(flags.iter().map(String::as_str));
    let out = home.run(&args);
    rt.rm(&name);
    let _ = rt.ctr("custody-ns", &["task", "kill", "-s", "KILL", &cid]);
    std::thread::sleep(Duration::from_millis(300));
    let _ = rt.ctr("custody-ns", &["task", "rm", "-f", &cid]);
    let _ = rt.ctr("custody-ns", &["containers", "rm", &cid]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // Other tests' containers come and go meanwhile: only ours must be whole.
    let inv = &artefacts(&report, "container_inventory");
    assert_eq!(inv.len(), 1, "{}", stderr(&out));
    let inventory = {
        let dest = home.path().join("inv.json");
        let o = home.run(&[
            "export",
            "h",
            inv[0]["id"].as_str().unwrap(),
            "-o",
            dest.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        serde_json::from_slice::<serde_json::Value>(&std::fs::read(dest).unwrap()).unwrap()
    };
    let ids: Vec<&str> = inventory["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert!(
        ids.contains(&id.as_str()) && ids.contains(&cid.as_str()),
        "{ids:?}"
    );
    assert_eq!(
        ids.iter().filter(|i| **i == id).count(),
        1,
        "Docker's container is also containerd's (namespace moby): listed once"
    );
    for want in [format!("container:{id}"), format!("container:{cid}")] {
        let kinds: BTreeSet<&str> = report["artefacts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["source"]["resource"] == want.as_str())
            .map(|a| a["kind"].as_str().unwrap())
            .collect();
        assert_eq!(
            kinds,
            BTreeSet::from(["container", "container_layer"]),
            "{want}"
        );
    }
    assert_eq!(artefacts(&report, "host_triage").len(), 1);
}

#[test]
fn p2_a_layer_gone_and_a_damaged_runtime_state_are_named_and_the_rest_is_taken() {
    let Some(rt) = runtimes() else { return };
    // A container that exited, whose writable layer then vanished (a
    // runtime cleaning up, or an attacker covering tracks).
    let name = unique("custody-x");
    rt.docker(&[
        "run",
        "-d",
        "--name",
        &name,
        "--network",
        "none",
        &rt.image,
        "sh",
        "-c",
        "echo x > /gone",
    ]);
    wait_for(|| {
        rt.docker(&["inspect", "-f", "{{.State.Running}}", &name])
            .trim()
            == "false"
    });
    let upper = rt.docker(&["inspect", "-f", "{{.GraphDriver.Data.UpperDir}}", &name]);
    std::fs::remove_dir_all(upper.trim()).unwrap();
    let home = Home::new();
    let mut args = vec![
        "--json",
        "acquire",
        "container",
        "--name",
        &name,
        "--case",
        "x",
    ];
    let flags = rt.flags();
    args.extend(flags.iter().map(String::as_str));
    let out = home.run(&args);
    rt.rm(&name);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("writable layer"), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let kinds: Vec<&str> = report["artefacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["container"],
        "no layer recorded as complete; the bundle still taken"
    );
    let bundle = members(&home, "x", report["artefacts"][0]["id"].as_str().unwrap());
    assert_eq!(json(&bundle, "container.json")["running"], false);
    let v = home.run(&["verify", "x"]);
    assert!(v.status.success(), "{}", stderr(&v));
    let failed: Vec<String> = read_entries(&LedgerPaths::in_home(home.path()).entries())
        .unwrap()
        .iter()
        .map(|l| Entry::parse(l).unwrap())
        .filter(|e| serde_json::to_value(e.action).unwrap() == "failed")
        .map(|e| e.detail.unwrap()["error"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        failed
            .iter()
            .any(|f| f.contains("writable layer of docker:")),
        "the failure is on the record: {failed:?}"
    );

    // containerd's meta.db cut after its two meta pages (the tree they
    // name is gone), then garbage: the inventory says so by name.
    let broken = tempfile::tempdir().unwrap();
    let db_dir = broken.path().join("io.containerd.metadata.v1.bolt");
    std::fs::create_dir_all(&db_dir).unwrap();
    let real = std::fs::read(
        Path::new(&rt.containerd_root).join("io.containerd.metadata.v1.bolt/meta.db"),
    )
    .unwrap();
    for damaged in [real[..8192].to_vec(), vec![0x5a; 8192]] {
        std::fs::write(db_dir.join("meta.db"), &damaged).unwrap();
        let out = home.run(&[
            "acquire",
            "container",
            "--id",
            "feedface",
            "--case",
            "y",
            "--containerd-root",
            broken.path().to_str().unwrap(),
            "--docker-root",
            &rt.docker_root,
        ]);
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        let err = stderr(&out);
        assert!(err.contains("no container with id \"feedface\""), "{err}");
        assert!(err.contains("meta.db"), "the damaged state is named: {err}");
    }
    // No runtime at all.
    let out = home.run(&[
        "acquire",
        "container",
        "--name",
        "nothing",
        "--containerd-root",
        "/nonexistent/c",
        "--docker-root",
        "/nonexistent/d",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("among the 0 found"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_node_disk_image_gives_the_same_layers_through_custody_process() {
    let Some(rt) = runtimes() else { return };
    let name = unique("custody-img");
    let id = rt.docker_container(&name, "A=1");
    let diff: BTreeSet<String> = rt
        .docker(&["diff", &name])
        .lines()
        .map(str::to_owned)
        .collect();
    // The node as an image: both runtimes' state copied with cp -a (device
    // nodes and trusted.* attributes kept), made ext4 by mkfs.ext4 -d.
    let dir = tempfile::tempdir().unwrap();
    let lib = dir.path().join("stage/var/lib");
    std::fs::create_dir_all(&lib).unwrap();
    for (from, to) in [
        (&rt.containerd_root, "containerd"),
        (&rt.docker_root, "docker"),
    ] {
        // Mounted root file systems are not the runtimes' state; a file
        // another test's container removes meanwhile is no matter.
        let _ = Command::new("cp")
            .args(["-a", "--one-file-system"])
            .arg(from)
            .arg(lib.join(to))
            .output()
            .unwrap();
        assert!(lib.join(to).is_dir(), "cp -a {from}");
    }
    rt.rm(&name);
    let du = Command::new("du")
        .arg("-sb")
        .arg(dir.path().join("stage"))
        .output()
        .unwrap();
    let bytes: u64 = String::from_utf8_lossy(&du.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let img = dir.path().join("node.img");
    let mk = Command::new("mkfs.ext4")
        .args(["-q", "-F", "-I", "256", "-d"])
        .arg(dir.path().join("stage"))
        .arg(&img)
        .arg(format!("{}M", bytes * 2 / (1 << 20) + 64))
        .output()
        .unwrap();
    assert!(mk.status.success(), "{}", stderr(&mk));

    let home = Home::new();
    let r = home.json(&[
        "acquire",
        "file",
        img.to_str().unwrap(),
        "--kind",
        "disk-image",
        "--case",
        "node",
        "--process",
    ]);
    let found = r["processed"].to_string();
    assert!(
        found.contains("container"),
        "the report names the containers: {found}"
    );
    let shown = home.json(&["show", "node"]);
    let layers: Vec<&serde_json::Value> = shown
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["kind"] == "container_layer")
        .collect();
    let inventories = shown
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["kind"] == "container_inventory")
        .count();
    assert_eq!(inventories, 1, "{shown:#}");
    let mine = layers
        .iter()
        .find(|a| a.to_string().contains(&id[..12]))
        .unwrap_or_else(|| panic!("no layer of {id} among {}", layers.len()));
    let layer = members(&home, "node", mine["id"].as_str().unwrap());
    assert_eq!(
        change_set(&json(&layer, "changes.json")),
        diff,
        "the image's layer against docker diff of the live container"
    );
    assert_eq!(layer["upper/etc/motd"], b"welcome\ntampered\n");
    let v = home.run(&["verify", "node"]);
    assert!(v.status.success(), "{}", stderr(&v));
}
