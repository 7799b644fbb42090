//! A node's containers read from its disk image, running nothing: the
//! inventory and each container's writable layer, by the same code that
//! reads the live host ([`super::inventory_in`], [`super::layer`]), here
//! through the image's file system ([`Image`]).
//!
//! The runtimes' state is looked for where a node keeps it, whichever
//! volume the image is: the root (`/var/lib/containerd`), a `/var` volume
//! (`/lib/containerd`) or a `/var/lib` volume (`/containerd`). What only a
//! running node has (its processes, `/run`'s tasks and pids) is not there:
//! every container is `running: false` with no pid, and what the runtime
//! recorded as running is said in its problems.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use custody_disk::fs::FileSystem;

use super::super::channel::ChannelReader;
use super::files::{Files, Image};
use super::{Inventory, Node, Record, inventory_in, layer};

/// Where the runtimes' directories are, by what the volume is: the node's
/// root, its `/var`, or its `/var/lib`; with where its logs are.
const LAYOUTS: [(&str, &str); 3] = [("/var/lib", "/var/log"), ("/lib", "/log"), ("/", "/log")];

/// A node's runtime state found in one file system.
#[derive(Clone)]
pub struct Offline {
    pub files: Arc<Image>,
    /// The runtimes' paths in the file system.
    pub node: Node,
    /// Where the state was found (`/var/lib`: the volume is the node's root).
    pub prefix: &'static str,
}

impl std::fmt::Debug for Offline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Offline")
            .field("fs", &self.files.file_system().kind())
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

fn node_at(dir: &str, logs: &str) -> Node {
    let p = |rest: &str| PathBuf::from(dir).join(rest);
    Node {
        containerd_root: p("containerd"),
        // Tasks live in /run, which no disk keeps: looked for, not expected.
        containerd_state: "/run/containerd".into(),
        docker_root: p("docker"),
        pod_logs: Path::new(logs).join("pods"),
        container_logs: Path::new(logs).join("containers"),
        // Never read offline: no container is running.
        proc: "/proc".into(),
    }
}

impl Offline {
    /// The runtime state in `fs`, if it holds any: containerd's `meta.db`
    /// or Docker's `containers/`.
    pub fn detect(fs: Arc<dyn FileSystem>) -> Option<Self> {
        let files = Arc::new(Image::new(fs));
        LAYOUTS.iter().find_map(|&(dir, logs)| {
            let node = node_at(dir, logs);
            let containerd = files
                .stat(
                    &node
                        .containerd_root
                        .join("io.containerd.metadata.v1.bolt/meta.db"),
                )
                .is_ok_and(|s| s.kind == custody_disk::fs::Kind::File);
            let docker = files
                .stat(&node.docker_root.join("containers"))
                .is_ok_and(|s| s.is_dir());
            (containerd || docker).then(|| Self {
                files: files.clone(),
                node,
                prefix: dir,
            })
        })
    }

    /// Every container the runtimes recorded, none running.
    pub fn inventory(&self) -> Inventory {
        inventory_in(self.files.as_ref(), &self.node)
    }

    /// The plan of a container's writable layer, when its runtime records one.
    pub fn layer_plan(&self, r: &Record) -> Option<layer::LayerPlan> {
        let upper = r.upper_dir.clone()?;
        let files: Arc<dyn Files> = self.files.clone();
        Some(layer::LayerPlan {
            files,
            upper,
            lowers: r.lower_dirs.clone(),
            container: r.label(),
            mount_points: r.mounts.iter().map(|m| m.destination.clone()).collect(),
        })
    }

    /// The writable layer as the live acquisition writes it: `upper/<path>`
    /// members, `changes.json`, `index.json`.
    pub fn layer(&self, r: &Record) -> Option<ChannelReader> {
        self.layer_plan(r).map(layer::start)
    }
}

#[cfg(test)]
#[path = "offline_tests.rs"]
mod tests;
