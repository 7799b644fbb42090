//! Containers on the node custody runs on (an EKS or ECS node, or any
//! Docker or containerd host), read from the runtimes' own state on disk
//! rather than asked of their sockets: a runtime that hangs or lies on its
//! API cannot stall or shape the inventory, and the same records can be read
//! from a node's disk image.
//!
//! - [`containerd`]: every namespace of containerd's `meta.db` (`k8s.io`,
//!   `moby`, `default`...), its overlay snapshots and its running tasks.
//! - [`docker`]: Docker's `containers/` and `overlay2` layer database.
//! - [`procs`]: the processes inside each container, by control group.
//! - [`layer`]: a container's writable layer as a tar with its changes.
//! - [`files`]: the file tree all of it reads: the live host, or a disk image.
//! - [`offline`]: the same inventory and layers from a node's disk image.
//! - [`bundle`]: a container's processes, runtime files and logs as a tar.
//! - [`collector`]: `acquire container` and the containers of `acquire host`.

pub mod bundle;
pub mod collector;
pub mod containerd;
pub mod docker;
pub mod files;
pub mod layer;
pub mod offline;
pub mod procs;

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Serialize;

pub use collector::ContainerCollector;
use procs::Process;

/// Where a node's runtimes keep their state (absolute paths on this machine).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// containerd's `root` (`/var/lib/containerd`).
    pub containerd_root: PathBuf,
    /// containerd's `state` (`/run/containerd`): its running tasks.
    pub containerd_state: PathBuf,
    /// Docker's `data-root` (`/var/lib/docker`).
    pub docker_root: PathBuf,
    /// Kubernetes' per-pod logs (`/var/log/pods`).
    pub pod_logs: PathBuf,
    /// The kubelet's links to them (`/var/log/containers`).
    pub container_logs: PathBuf,
    /// procfs, for the processes inside each container.
    pub proc: PathBuf,
}

impl Default for Node {
    fn default() -> Self {
        Self {
            containerd_root: "/var/lib/containerd".into(),
            containerd_state: "/run/containerd".into(),
            docker_root: "/var/lib/docker".into(),
            pod_logs: "/var/log/pods".into(),
            container_logs: "/var/log/containers".into(),
            proc: "/proc".into(),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Pod {
    pub name: Option<String>,
    pub namespace: Option<String>,
    pub uid: Option<String>,
    /// The container's name in the pod.
    pub container: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Mount {
    pub destination: String,
    pub source: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub options: Vec<String>,
}

/// One container, as its runtime keeps it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Record {
    /// `containerd` or `docker`.
    pub runtime: &'static str,
    /// containerd's namespace (`k8s.io` for Kubernetes).
    pub namespace: Option<String>,
    pub id: String,
    /// Docker's name, or Kubernetes' container name.
    pub name: Option<String>,
    pub image: String,
    /// The image's manifest digest, where the runtime recorded one.
    pub image_digest: Option<String>,
    /// The image's configuration digest (Docker's image id).
    pub image_id: Option<String>,
    pub pod: Option<Pod>,
    pub labels: BTreeMap<String, String>,
    pub privileged: bool,
    /// Why `privileged` is what it is.
    pub privileged_because: Option<String>,
    /// The bounding set, as the runtime spec grants it.
    pub capabilities: Vec<String>,
    pub mounts: Vec<Mount>,
    /// The container's environment (kept in the evidence, never logged).
    pub env: Vec<String>,
    pub command: Vec<String>,
    pub created: Option<String>,
    pub running: bool,
    pub pid: Option<u32>,
    pub cgroups_path: Option<String>,
    pub processes: Vec<Process>,
    /// The overlay upper directory: what the container wrote.
    pub upper_dir: Option<PathBuf>,
    pub lower_dirs: Vec<PathBuf>,
    pub logs: Vec<PathBuf>,
    /// The runtime's own files for this container, copied as they are.
    pub runtime_files: Vec<PathBuf>,
    /// What could not be read about it.
    pub problems: Vec<String>,
}

impl Record {
    /// `docker:NAME (ID12)` or `containerd:NS/ID`.
    pub fn label(&self) -> String {
        let short: String = self.id.chars().take(12).collect();
        match (&self.namespace, &self.name) {
            (Some(ns), _) => format!("{}:{ns}/{}", self.runtime, short),
            (None, Some(n)) => format!("{}:{n} ({short})", self.runtime),
            (None, None) => format!("{}:{short}", self.runtime),
        }
    }

    fn pod_from_labels(&mut self) {
        let get = |k: &str| self.labels.get(k).cloned();
        let pod = Pod {
            name: get("io.kubernetes.pod.name"),
            namespace: get("io.kubernetes.pod.namespace"),
            uid: get("io.kubernetes.pod.uid"),
            container: get("io.kubernetes.container.name"),
        };
        if pod != Pod::default() {
            if self.name.is_none() {
                self.name.clone_from(&pod.container);
            }
            self.pod = Some(pod);
        }
    }

    /// Capabilities, mounts, environment, command and cgroup from an OCI
    /// runtime spec. A container whose bounding set holds `CAP_SYS_ADMIN`
    /// with no masked or read-only paths is what `--privileged` makes.
    fn apply_spec(&mut self, spec: &serde_json::Value) {
        let strings = |v: Option<&serde_json::Value>| -> Vec<String> {
            v.and_then(|v| v.as_array())
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default()
        };
        let process = spec.get("process");
        self.env = strings(process.and_then(|p| p.get("env")));
        self.command = strings(process.and_then(|p| p.get("args")));
        self.capabilities = strings(
            process
                .and_then(|p| p.get("capabilities"))
                .and_then(|c| c.get("bounding")),
        );
        let linux = spec.get("linux");
        self.cgroups_path = linux
            .and_then(|l| l.get("cgroupsPath"))
            .and_then(|c| c.as_str())
            .map(str::to_owned);
        let masked = strings(linux.and_then(|l| l.get("maskedPaths")));
        let readonly = strings(linux.and_then(|l| l.get("readonlyPaths")));
        if !self.privileged
            && self.capabilities.iter().any(|c| c == "CAP_SYS_ADMIN")
            && masked.is_empty()
            && readonly.is_empty()
        {
            self.privileged = true;
            self.privileged_because = Some(
                "the runtime spec grants CAP_SYS_ADMIN and masks no paths, as --privileged does"
                    .into(),
            );
        }
        if let Some(mounts) = spec.get("mounts").and_then(|m| m.as_array()) {
            let field = |m: &serde_json::Value, k: &str| {
                m.get(k)
                    .and_then(|v| v.as_str())
                    .unwrap_or_default()
                    .to_owned()
            };
            self.mounts = mounts
                .iter()
                .map(|m| Mount {
                    destination: field(m, "destination"),
                    source: field(m, "source"),
                    kind: field(m, "type"),
                    options: strings(m.get("options")),
                })
                .collect();
        }
    }
}

/// Every container found, and what could not be read.
#[derive(Debug, Default, Serialize)]
pub struct Inventory {
    /// The runtimes whose state was found, with where.
    pub runtimes: Vec<String>,
    pub containers: Vec<Record>,
    pub problems: Vec<String>,
}

/// Reads both runtimes' state on this machine (a runtime that is not
/// installed is no problem; one whose state cannot be read is), and the
/// processes of each running container.
pub fn inventory(node: &Node) -> Inventory {
    let mut inv = inventory_in(&files::Host, node);
    for c in &mut inv.containers {
        c.find_processes(&node.proc);
    }
    inv
}

/// Reads both runtimes' state from `files` at the paths `node` gives.
pub fn inventory_in(files: &dyn files::Files, node: &Node) -> Inventory {
    let mut inv = Inventory::default();
    let meta = node
        .containerd_root
        .join("io.containerd.metadata.v1.bolt/meta.db");
    if files.stat(&meta).is_ok() {
        inv.runtimes
            .push(format!("containerd {}", node.containerd_root.display()));
    }
    if files
        .stat(&node.docker_root.join("containers"))
        .is_ok_and(|s| s.is_dir())
    {
        inv.runtimes
            .push(format!("docker {}", node.docker_root.display()));
    }
    let mut docker = docker::records(files, node, &mut inv.problems);
    let containerd = containerd::records(files, node, &mut inv.problems);
    // Docker runs its containers through containerd (namespace `moby`):
    // one container, recorded once, with what each runtime knows.
    for c in containerd {
        if c.namespace.as_deref() == Some("moby")
            && let Some(d) = docker.iter_mut().find(|d| d.id == c.id)
        {
            d.merge_task(c);
            continue;
        }
        inv.containers.push(c);
    }
    inv.containers.extend(docker);
    inv
}

impl Record {
    /// What containerd's task of a Docker container adds: the exact spec
    /// (capabilities, cgroup) and its pid.
    fn merge_task(&mut self, task: Record) {
        if !task.capabilities.is_empty() {
            self.capabilities = task.capabilities;
        }
        if self.cgroups_path.is_none() {
            self.cgroups_path = task.cgroups_path;
        }
        if self.mounts.is_empty() {
            self.mounts = task.mounts;
        }
        if self.pid.is_none() {
            self.pid = task.pid;
        }
        self.runtime_files.extend(task.runtime_files);
        self.problems.extend(task.problems);
    }

    fn find_processes(&mut self, proc: &std::path::Path) {
        if !self.running {
            return;
        }
        let want = self
            .cgroups_path
            .as_deref()
            .and_then(procs::CgroupMatch::from_spec)
            .or_else(|| {
                // Docker's cgroupfs driver, when no spec was found.
                (self.runtime == "docker")
                    .then(|| procs::CgroupMatch::Path(format!("/docker/{}", self.id)))
            });
        match want {
            Some(want) => {
                self.processes = procs::in_cgroup(proc, &want);
                if self.processes.is_empty() {
                    self.problems.push(format!(
                        "running, but no process is in its cgroup {want:?}: it may have just exited"
                    ));
                }
            }
            None => self
                .problems
                .push("running, but its cgroup is not recorded: processes not listed".into()),
        }
    }
}

/// Finds one container by id (whole, or a unique prefix of at least 4
/// characters) or by name (Docker's, or Kubernetes' container or pod name).
pub fn find<'a>(
    inv: &'a Inventory,
    id: Option<&str>,
    name: Option<&str>,
) -> Result<&'a Record, String> {
    let hits: Vec<&Record> = inv
        .containers
        .iter()
        .filter(|c| match (id, name) {
            (Some(id), _) => c.id == id || (id.len() >= 4 && c.id.starts_with(id)),
            (None, Some(n)) => {
                c.name.as_deref() == Some(n)
                    || c.pod.as_ref().and_then(|p| p.name.as_deref()) == Some(n)
            }
            (None, None) => false,
        })
        .collect();
    let what = match (id, name) {
        (Some(id), _) => format!("id {id:?}"),
        (None, Some(n)) => format!("name {n:?}"),
        (None, None) => return Err("give --id or --name".into()),
    };
    match hits.as_slice() {
        [one] => Ok(one),
        [] => Err(format!(
            "no container with {what} among the {} found on this node",
            inv.containers.len()
        )),
        many => Err(format!(
            "{} containers match {what}: {}; give a longer id",
            many.len(),
            many.iter()
                .map(|c| c.label())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}
