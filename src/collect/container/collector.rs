//! `custody acquire container` (one container, in order of volatility:
//! the memory of its processes, its writable layer, then its bundle of
//! processes, runtime files and logs) and the containers of `acquire host`
//! (the node's inventory, then each container's layer and bundle).

use std::io::Cursor;

use async_trait::async_trait;

use super::super::host::memory::ProcessMemory;
use super::super::{CollectError, Collected, Collector, hostname};
use super::{Inventory, Node, Record, bundle, find, inventory, layer};
use crate::evidence::case::{AcquireContext, AcquireRequest, acquire, record_failure};
use crate::evidence::{ArtefactKind, Source};
use crate::ids::CaseId;
use crate::ledger::entry::Place;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Select {
    /// Every container on the node, with the inventory.
    All,
    Id(String),
    Name(String),
}

#[derive(Debug, Clone)]
pub struct ContainerCollector {
    pub node: Node,
    pub select: Select,
    /// Dump the memory of each process inside the container (one container only).
    pub memory: bool,
}

fn place(r: &Record) -> Place {
    Place {
        resource: format!("container:{}", r.id),
        host: Some(hostname()),
        ..Place::default()
    }
}

fn source(r: &Record, path: String) -> Source {
    Source {
        resource: format!("container:{}", r.id),
        host: Some(hostname()),
        path: Some(path),
        ..Source::default()
    }
}

/// Runs one acquisition; a failure is recorded in the ledger and listed.
async fn take(
    ctx: &AcquireContext,
    case: &CaseId,
    r: &Record,
    what: &str,
    req: AcquireRequest,
    out: &mut Collected,
) {
    match acquire(ctx, req).await {
        Ok(a) => out.artefacts.push(a),
        Err(e) => {
            let msg = format!(
                "{what} of {} not acquired: {}",
                r.label(),
                crate::error_chain(&e)
            );
            tracing::warn!(container = %r.label(), what, "not acquired");
            record_failure(ctx, case, Some(place(r)), &msg);
            out.failures.push(msg);
        }
    }
}

/// The memory of each process of `r`, each as its own LiME artefact.
async fn memory(ctx: &AcquireContext, case: &CaseId, r: &Record, out: &mut Collected) {
    for p in &r.processes {
        let reader = match ProcessMemory::open(std::path::Path::new("/"), p.pid) {
            Ok(m) => m,
            Err(e) => {
                let msg = format!(
                    "memory of pid {} in {} not acquired: {e} (it may have exited)",
                    p.pid,
                    r.label()
                );
                record_failure(ctx, case, Some(place(r)), &msg);
                out.failures.push(msg);
                continue;
            }
        };
        let size = reader.readable_bytes();
        let req = AcquireRequest {
            case: case.clone(),
            kind: ArtefactKind::MemoryImage,
            source: source(r, format!("/proc/{}/mem ({}; LiME format)", p.pid, p.comm)),
            reader: Box::new(reader.into_reader()),
            size_hint: Some(size),
            notes: Vec::new(),
        };
        take(ctx, case, r, &format!("memory of pid {}", p.pid), req, out).await;
    }
}

/// The writable layer, then the bundle, of one container.
pub async fn layer_and_bundle(
    ctx: &AcquireContext,
    case: &CaseId,
    node: &Node,
    r: &Record,
    out: &mut Collected,
) {
    match &r.upper_dir {
        Some(upper) => {
            let plan = layer::LayerPlan {
                files: std::sync::Arc::new(super::files::Host),
                upper: upper.clone(),
                lowers: r.lower_dirs.clone(),
                container: r.label(),
                mount_points: r.mounts.iter().map(|m| m.destination.clone()).collect(),
            };
            let req = AcquireRequest {
                case: case.clone(),
                kind: ArtefactKind::ContainerLayer,
                source: source(r, format!("{} (writable layer)", upper.display())),
                reader: Box::new(layer::start(plan)),
                size_hint: None,
                notes: Vec::new(),
            };
            take(ctx, case, r, "writable layer", req, out).await;
        }
        None => {
            let msg = format!(
                "writable layer of {} not acquired: {}",
                r.label(),
                r.problems
                    .iter()
                    .find(|p| p.contains("layer") || p.contains("snapshot"))
                    .map_or("the runtime records none", String::as_str)
            );
            record_failure(ctx, case, Some(place(r)), &msg);
            out.failures.push(msg);
        }
    }
    let req = AcquireRequest {
        case: case.clone(),
        kind: ArtefactKind::Container,
        source: source(r, format!("{} (processes, runtime files, logs)", r.label())),
        reader: Box::new(bundle::start(r.clone(), node.clone())),
        size_hint: None,
        notes: r.problems.clone(),
    };
    take(ctx, case, r, "bundle", req, out).await;
}

impl ContainerCollector {
    async fn inventory(&self) -> Inventory {
        let node = self.node.clone();
        match tokio::task::spawn_blocking(move || inventory(&node)).await {
            Ok(inv) => inv,
            Err(e) => Inventory {
                problems: vec![format!("the inventory did not finish: {e}")],
                ..Inventory::default()
            },
        }
    }
}

#[async_trait]
impl Collector for ContainerCollector {
    fn describe(&self) -> String {
        match &self.select {
            Select::All => format!("containers on {}", hostname()),
            Select::Id(id) => format!("container id {id} on {}", hostname()),
            Select::Name(n) => format!("container {n} on {}", hostname()),
        }
    }

    async fn collect(
        &self,
        ctx: &AcquireContext,
        case: &CaseId,
    ) -> Result<Collected, CollectError> {
        let inv = self.inventory().await;
        let mut out = Collected::default();
        let (id, name) = match &self.select {
            Select::All => {
                if inv.runtimes.is_empty() && inv.problems.is_empty() {
                    tracing::info!(
                        containerd = %self.node.containerd_root.display(),
                        docker = %self.node.docker_root.display(),
                        "no container runtime state on this node"
                    );
                    return Ok(out);
                }
                let json = serde_json::to_vec_pretty(&inv)
                    .map_err(|e| CollectError::Container(format!("inventory: {e}")))?;
                let req = AcquireRequest {
                    case: case.clone(),
                    kind: ArtefactKind::ContainerInventory,
                    source: Source {
                        resource: "containers".into(),
                        host: Some(hostname()),
                        path: Some(format!(
                            "{} and {}",
                            self.node.containerd_root.display(),
                            self.node.docker_root.display()
                        )),
                        ..Source::default()
                    },
                    reader: Box::new(Cursor::new(json)),
                    size_hint: None,
                    notes: inv.problems.clone(),
                };
                out.artefacts.push(acquire(ctx, req).await?);
                for r in &inv.containers {
                    layer_and_bundle(ctx, case, &self.node, r, &mut out).await;
                }
                return Ok(out);
            }
            Select::Id(id) => (Some(id.as_str()), None),
            Select::Name(n) => (None, Some(n.as_str())),
        };
        let r = find(&inv, id, name).map_err(|e| {
            let problems = if inv.problems.is_empty() {
                String::new()
            } else {
                format!(" (the runtimes' state: {})", inv.problems.join("; "))
            };
            CollectError::Container(format!("{e}{problems}"))
        })?;
        if self.memory {
            memory(ctx, case, r, &mut out).await;
        }
        layer_and_bundle(ctx, case, &self.node, r, &mut out).await;
        Ok(out)
    }
}
