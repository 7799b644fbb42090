//! The offline reading against the live one, on the same real runtime
//! state: containerd and Docker started by `scripts/test`
//! (`scripts/runtimes.sh`) run containers that change files; both state
//! roots are copied with `cp -a` (device nodes and `trusted.` attributes
//! kept) into a directory laid out as a node (`var/lib/containerd`,
//! `var/lib/docker`), made an ext4 image by `mkfs.ext4 -d`, and read back
//! through the `FileSystem` seam. The inventory and the writable layers
//! must be what the live code reads from the runtimes' own directories,
//! and the change set what `docker diff` says.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use custody_disk::fs::FileSystem;
use custody_disk::{FileImage, ReadAt};

use super::super::files::{Files, Host};
use super::super::{Node, Record, inventory_in, layer};
use super::Offline;

fn env(var: &str) -> String {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => v,
        _ => panic!(
            "{var} is not set: these tests need the real runtimes that scripts/test starts \
             (scripts/runtimes.sh: install_runtimes; start_runtimes), as root"
        ),
    }
}

struct Rt {
    containerd_root: String,
    containerd_sock: String,
    docker_root: String,
    docker_host: String,
    docker: String,
    image: String,
    ctr_image: String,
}

fn rt() -> Rt {
    Rt {
        containerd_root: env("CUSTODY_TEST_CONTAINERD_ROOT"),
        containerd_sock: env("CUSTODY_TEST_CONTAINERD_SOCK"),
        docker_root: env("CUSTODY_TEST_DOCKER_ROOT"),
        docker_host: env("CUSTODY_TEST_DOCKER_HOST"),
        docker: env("CUSTODY_TEST_DOCKER"),
        image: env("CUSTODY_TEST_IMAGE"),
        ctr_image: env("CUSTODY_TEST_CTR_IMAGE"),
    }
}

fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e} (scripts/emulators.sh installs it)"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// What the live tests' containers change (tests/integration/containers.rs).
const CHANGES: &str = "mkdir /data; echo hello > /data/f; echo tampered >> /etc/motd; rm /bin/ls; \
    rm -rf /etc/keep; mkdir /etc/keep; echo new > /etc/keep/c; ln -s /data/f /data/link; \
    mkfifo /data/fifo; head -c 100000 /bin/busybox > /data/big; touch /ready";

impl Rt {
    fn docker(&self, args: &[&str]) -> String {
        run(Command::new(&self.docker)
            .env("DOCKER_HOST", &self.docker_host)
            .args(args))
    }

    fn ctr(&self, ns: &str, args: &[&str]) -> std::process::Output {
        Command::new("ctr")
            .args(["-a", &self.containerd_sock, "-n", ns])
            .args(args)
            .output()
            .unwrap()
    }

    fn live_node(&self) -> Node {
        Node {
            containerd_root: self.containerd_root.clone().into(),
            docker_root: self.docker_root.clone().into(),
            ..Node::default()
        }
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

fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{prefix}-{}-{nanos}", std::process::id())
}

/// The runtimes' containers: one Docker, one containerd in `k8s.io`
/// labelled as kubelet labels a pod's. Removed when dropped.
struct Containers<'a> {
    rt: &'a Rt,
    docker_name: String,
    docker_id: String,
    ctr_id: String,
}

impl Drop for Containers<'_> {
    fn drop(&mut self) {
        let _ = Command::new(&self.rt.docker)
            .env("DOCKER_HOST", &self.rt.docker_host)
            .args(["rm", "-f", &self.docker_name])
            .output();
        let _ = self
            .rt
            .ctr("k8s.io", &["task", "kill", "-s", "KILL", &self.ctr_id]);
        std::thread::sleep(Duration::from_millis(300));
        let _ = self.rt.ctr("k8s.io", &["task", "rm", "-f", &self.ctr_id]);
        let _ = self.rt.ctr("k8s.io", &["containers", "rm", &self.ctr_id]);
    }
}

fn start(rt: &Rt) -> Containers<'_> {
    let docker_name = unique("custody-off-d");
    let script = format!("{CHANGES}; exec sleep 1000");
    let docker_id = rt
        .docker(&[
            "run",
            "-d",
            "--name",
            &docker_name,
            "--network",
            "none",
            "-e",
            "OFFLINE=1",
            "--label",
            "custody.test=offline",
            &rt.image,
            "sh",
            "-c",
            &script,
        ])
        .trim()
        .to_owned();
    let ctr_id = unique("custody-off-k");
    let c = Containers {
        rt,
        docker_name,
        docker_id,
        ctr_id,
    };
    wait_for(|| rt.docker(&["diff", &c.docker_name]).contains("A /ready"));
    let labels = [
        "io.kubernetes.pod.name=web-1",
        "io.kubernetes.pod.namespace=prod",
        "io.kubernetes.pod.uid=0b7e6c1d-uid",
        "io.kubernetes.container.name=app",
    ];
    let mut args: Vec<&str> = vec!["run", "-d"];
    for l in &labels {
        args.extend(["--label", l]);
    }
    args.extend([rt.ctr_image.as_str(), &c.ctr_id, "sh", "-c", &script]);
    let o = rt.ctr("k8s.io", &args);
    assert!(o.status.success(), "ctr run: {o:?}");
    wait_for(|| {
        rt.ctr(
            "k8s.io",
            &[
                "task",
                "exec",
                "--exec-id",
                &unique("chk"),
                &c.ctr_id,
                "test",
                "-e",
                "/ready",
            ],
        )
        .status
        .success()
    });
    c
}

/// The node directory (`var/lib/containerd`, `var/lib/docker`) copied from
/// the live roots, and its ext4 image.
struct NodeImage {
    dir: tempfile::TempDir,
    img: PathBuf,
}

impl NodeImage {
    fn stage(rt: &Rt) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let lib = dir.path().join("stage/var/lib");
        std::fs::create_dir_all(&lib).unwrap();
        // cp -a keeps device nodes (whiteouts) and trusted.* attributes
        // (opaque directories), as root.
        for (from, to) in [
            (&rt.containerd_root, "containerd"),
            (&rt.docker_root, "docker"),
        ] {
            // The containers' mounted root file systems (Docker's
            // `merged`, its shm) are mount points: not the runtimes' state.
            let out = Command::new("cp")
                .args(["-a", "--one-file-system"])
                .arg(from)
                .arg(lib.join(to))
                .output()
                .unwrap();
            // A file removed while copied (another test's container) is no matter.
            assert!(
                lib.join(to).is_dir(),
                "cp -a {from}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        dir
    }

    fn build(dir: tempfile::TempDir) -> Self {
        let stage = dir.path().join("stage");
        let du = run(Command::new("du").args(["-sb"]).arg(&stage));
        let bytes: u64 = du.split_whitespace().next().unwrap().parse().unwrap();
        let img = dir.path().join("node.img");
        let size_mb = bytes * 2 / (1 << 20) + 64;
        run(Command::new("mkfs.ext4")
            .args(["-q", "-F", "-I", "256", "-d"])
            .arg(&stage)
            .arg(&img)
            .arg(format!("{size_mb}M")));
        Self { dir, img }
    }

    fn fs(&self) -> Arc<dyn FileSystem> {
        let vol: Arc<dyn ReadAt> = Arc::new(FileImage::open(&self.img).unwrap());
        Arc::from(custody_disk::fs::ext4::open(vol).unwrap())
    }
}

/// The tar a layer reader gives, by member.
fn members(mut r: impl std::io::Read) -> BTreeMap<String, Vec<u8>> {
    let mut all = Vec::new();
    r.read_to_end(&mut all).unwrap();
    let mut a = tar::Archive::new(&all[..]);
    let mut m = BTreeMap::new();
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let name = e.path().unwrap().display().to_string();
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        m.insert(name, data);
    }
    m
}

fn json(m: &BTreeMap<String, Vec<u8>>, name: &str) -> serde_json::Value {
    serde_json::from_slice(&m[name]).unwrap()
}

/// A live path under `from` as the image names it under `to`.
fn moved(p: &Path, from: &str, to: &str) -> PathBuf {
    Path::new(to).join(p.strip_prefix(from).unwrap())
}

/// What the offline record must share with the live one.
fn comparable(r: &Record, rt: &Rt) -> serde_json::Value {
    let map = |p: &PathBuf| {
        if p.starts_with(&rt.docker_root) {
            moved(p, &rt.docker_root, "/var/lib/docker")
        } else if p.starts_with(&rt.containerd_root) {
            moved(p, &rt.containerd_root, "/var/lib/containerd")
        } else {
            p.clone()
        }
    };
    let mut v = serde_json::to_value(r).unwrap();
    v["upper_dir"] = serde_json::to_value(r.upper_dir.as_ref().map(map)).unwrap();
    v["lower_dirs"] =
        serde_json::to_value(r.lower_dirs.iter().map(map).collect::<Vec<_>>()).unwrap();
    v["logs"] = serde_json::to_value(r.logs.iter().map(map).collect::<Vec<_>>()).unwrap();
    // What only a running node has: its pid, whether it runs, its task
    // directory under /run, and the problems those give.
    for k in ["running", "pid", "processes", "runtime_files", "problems"] {
        v.as_object_mut().unwrap().remove(k);
    }
    v
}

/// Whole-runtime tests share the runtimes: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

#[test]
fn an_image_of_the_node_gives_the_live_inventory_and_layers() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let rt = rt();
    let c = start(&rt);
    let diff: BTreeSet<String> = rt
        .docker(&["diff", &c.docker_name])
        .lines()
        .map(str::to_owned)
        .collect();
    let stage = NodeImage::stage(&rt);
    // The live reading of the same state, right after the copy.
    let live_node = rt.live_node();
    let live = inventory_in(&Host, &live_node);
    let node = NodeImage::build(stage);
    let off = Offline::detect(node.fs()).expect("the runtimes' state is found in the image");
    assert_eq!(off.prefix, "/var/lib");
    let inv = off.inventory();
    assert_eq!(
        inv.runtimes,
        ["containerd /var/lib/containerd", "docker /var/lib/docker"]
    );
    assert!(inv.problems.is_empty(), "{:?}", inv.problems);
    let ids = |i: &super::super::Inventory| -> BTreeSet<String> {
        i.containers.iter().map(|c| c.id.clone()).collect()
    };
    assert_eq!(ids(&inv), ids(&live), "the same containers");
    for want in [&c.docker_id, &c.ctr_id] {
        assert!(ids(&inv).contains(want.as_str()), "{want}");
    }
    for l in &live.containers {
        let o = inv.containers.iter().find(|o| o.id == l.id).unwrap();
        assert_eq!(comparable(o, &rt), comparable(l, &rt), "{}", l.label());
        assert!(!o.running && o.pid.is_none() && o.processes.is_empty());
    }
    let d = inv.containers.iter().find(|o| o.id == c.docker_id).unwrap();
    assert_eq!(d.image, rt.image);
    assert!(d.env.iter().any(|e| e == "OFFLINE=1"));
    assert!(
        d.problems.iter().any(|p| p.contains("recorded as running")),
        "{:?}",
        d.problems
    );
    let k = inv.containers.iter().find(|o| o.id == c.ctr_id).unwrap();
    assert_eq!(k.namespace.as_deref(), Some("k8s.io"));
    assert_eq!(k.pod.as_ref().unwrap().name.as_deref(), Some("web-1"));
    assert!(k.image_digest.as_deref().unwrap().starts_with("sha256:"));

    // The layers: the same members, byte for byte, and the same changes.
    for (id, name) in [(&c.docker_id, "docker"), (&c.ctr_id, "containerd")] {
        let l = live.containers.iter().find(|r| &r.id == id).unwrap();
        let o = inv.containers.iter().find(|r| &r.id == id).unwrap();
        let files: Arc<dyn Files> = Arc::new(Host);
        let live_plan = layer::LayerPlan {
            files,
            upper: l.upper_dir.clone().unwrap(),
            lowers: l.lower_dirs.clone(),
            container: l.label(),
            mount_points: l.mounts.iter().map(|m| m.destination.clone()).collect(),
        };
        let lm = members(layer::start(live_plan));
        let om = members(off.layer(o).unwrap());
        let lc = json(&lm, "changes.json");
        let oc = json(&om, "changes.json");
        assert_eq!(oc["changes"], lc["changes"], "{name}: changes");
        assert!(oc["added"].as_u64().unwrap() > 0, "{name}");
        let files = |m: &BTreeMap<String, Vec<u8>>| -> BTreeMap<String, Vec<u8>> {
            m.iter()
                .filter(|(k, _)| k.starts_with("upper/"))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        };
        assert_eq!(files(&om), files(&lm), "{name}: members");
        assert_eq!(om["upper/data/f"], b"hello\n");
        assert_eq!(om["upper/etc/motd"], b"welcome\ntampered\n");
        assert_eq!(om["upper/data/big"].len(), 100_000);
        let set: BTreeSet<String> = oc["changes"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["mount_point"] != true)
            .map(|c| {
                format!(
                    "{} {}",
                    c["change"].as_str().unwrap(),
                    c["path"].as_str().unwrap()
                )
            })
            .collect();
        if name == "docker" {
            assert_eq!(set, diff, "offline changes against docker diff");
        }
        let opaque = oc["changes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["path"] == "/etc/keep")
            .unwrap();
        assert_eq!(opaque["opaque"], true, "{name}: the opaque attribute read");
        assert!(set.contains("D /bin/ls"), "{name}: the whiteout read");
    }
    // `custody process`'s scan finds the same state in the image's volume.
    #[cfg(feature = "timeline")]
    {
        let img: Arc<dyn ReadAt> = Arc::new(FileImage::open(&node.img).unwrap());
        let cancel = std::sync::atomic::AtomicBool::new(false);
        let scan =
            crate::process::scan::scan(img, crate::process::scan::Profile::Quick, None, &cancel)
                .unwrap();
        let found = scan.volumes[0]
            .containers
            .as_ref()
            .expect("the scan finds the runtimes' state");
        assert_eq!(ids(&found.inventory()), ids(&live));
    }
    drop(c);
    drop(node.dir);
}

#[test]
fn p2_damaged_node_images_name_their_problems() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let rt = rt();
    let c = start(&rt);
    let stage = NodeImage::stage(&rt);
    let lib = stage.path().join("stage/var/lib");
    // Docker's mount-id leading out of overlay2.
    let mount_id = lib
        .join("docker/image/overlay2/layerdb/mounts")
        .join(&c.docker_id)
        .join("mount-id");
    std::fs::write(&mount_id, "../../../../etc").unwrap();
    // containerd's meta.db with its pages past the meta pages overwritten.
    let meta = lib.join("containerd/io.containerd.metadata.v1.bolt/meta.db");
    let mut db = std::fs::read(&meta).unwrap();
    for b in db.iter_mut().skip(8192) {
        *b = 0x5a;
    }
    std::fs::write(&meta, &db).unwrap();
    let node = NodeImage::build(stage);
    let off = Offline::detect(node.fs()).unwrap();
    let inv = off.inventory();
    assert!(
        inv.problems.iter().any(|p| p.contains("meta.db")),
        "{:?}",
        inv.problems
    );
    let d = inv.containers.iter().find(|r| r.id == c.docker_id).unwrap();
    assert!(d.upper_dir.is_none());
    assert!(
        d.problems
            .iter()
            .any(|p| p.contains("mount-id") && p.contains("not a layer name")),
        "{:?}",
        d.problems
    );

    // The image cut short at several places: whatever is read, problems
    // are named and nothing panics.
    let whole = std::fs::read(&node.img).unwrap();
    for cut in [whole.len() / 2, whole.len() / 4, whole.len() / 10, 1 << 20] {
        let vol: Arc<dyn ReadAt> = Arc::new(whole[..cut].to_vec());
        let Ok(f) = custody_disk::fs::ext4::open(vol) else {
            continue;
        };
        let Some(off) = Offline::detect(Arc::from(f)) else {
            continue;
        };
        let inv = off.inventory();
        for r in &inv.containers {
            if let Some(l) = off.layer(r) {
                // A layer that cannot be read ends the reader with an error.
                let mut out = Vec::new();
                let _ = { l }.read_to_end(&mut out);
            }
        }
    }
    drop(c);
}

/// A crafted image: a directory of the upper linked into itself
/// (`debugfs link`), and links that lead to each other. The layer ends,
/// the loop named; the path resolution stops at its link budget.
#[test]
fn p2_loops_in_a_crafted_image_end_and_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir_all(src.join("upper/d")).unwrap();
    std::fs::write(src.join("upper/d/f"), b"x").unwrap();
    std::os::unix::fs::symlink("b", src.join("a")).unwrap();
    std::os::unix::fs::symlink("a", src.join("b")).unwrap();
    let img = dir.path().join("loop.img");
    run(Command::new("mkfs.ext4")
        .args(["-q", "-F", "-d"])
        .arg(&src)
        .arg(&img)
        .arg("4M"));
    run(Command::new("debugfs")
        .args(["-w", "-R", "link /upper/d /upper/d/again"])
        .arg(&img));
    let vol: Arc<dyn ReadAt> = Arc::new(FileImage::open(&img).unwrap());
    let image = Arc::new(super::super::files::Image::new(Arc::from(
        custody_disk::fs::ext4::open(vol).unwrap(),
    )));
    let err = image.stat(Path::new("/a")).unwrap_err();
    assert!(err.to_string().contains("links"), "{err}");
    assert_eq!(
        image
            .stat(Path::new("/upper/d/again/again/f"))
            .unwrap()
            .size,
        1
    );
    let files: Arc<dyn Files> = image;
    let plan = layer::LayerPlan {
        files,
        upper: "/upper".into(),
        lowers: Vec::new(),
        container: "crafted".into(),
        mount_points: Vec::new(),
    };
    let m = members(layer::start(plan));
    let changes = json(&m, "changes.json");
    let again = changes["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["path"] == "/d/again")
        .unwrap();
    assert!(
        again["reason"].as_str().unwrap().contains("already read"),
        "{again}"
    );
    assert_eq!(m["upper/d/f"], b"x");
}
