//! `custody acquire host`: volatile triage of the machine custody runs on,
//! in order of volatility, plus the memory of chosen processes.
//!
//! - [`bundle`]: the tar of copied files with its `index.json`, which
//!   the triage bundle and the container bundles share.
//! - [`triage`]: one tar bundle of raw copies and parsed summaries, with an
//!   index of every item: where it came from, its digest, or why it could not
//!   be read.
//! - [`memory`]: a process's readable memory regions as a LiME-format image.
//! - [`rootfs`]: the file system both read: the live host's, or an image's
//!   with every path resolved beneath its root.

pub mod bundle;
pub mod memory;
pub mod rootfs;
pub mod triage;

use std::path::PathBuf;

use async_trait::async_trait;

use super::{CollectError, Collected, Collector};
use crate::evidence::case::{AcquireContext, AcquireRequest, acquire, record_failure};
use crate::evidence::{ArtefactKind, Source};
use crate::ids::CaseId;
use crate::ledger::entry::Place;

#[derive(Debug, Clone)]
pub struct HostCollector {
    /// Root of the file system to triage: `/` on a live host; a mounted image
    /// or a test fixture otherwise.
    pub root: PathBuf,
    /// Processes whose memory to dump, each as its own artefact.
    pub memory_pids: Vec<u32>,
    /// Skip `/var/log` (large on long-lived hosts).
    pub skip_logs: bool,
    /// The node's container runtimes: each container's layer and bundle
    /// after the triage bundle. `None` leaves containers out.
    pub containers: Option<crate::collect::container::Node>,
}

impl Default for HostCollector {
    fn default() -> Self {
        Self {
            root: PathBuf::from("/"),
            memory_pids: Vec::new(),
            skip_logs: false,
            containers: None,
        }
    }
}

#[async_trait]
impl Collector for HostCollector {
    fn describe(&self) -> String {
        let mut d = format!("host triage of {}", super::hostname());
        if !self.memory_pids.is_empty() {
            let pids: Vec<String> = self.memory_pids.iter().map(u32::to_string).collect();
            d.push_str(&format!(" and memory of pid {}", pids.join(", ")));
        }
        d
    }

    async fn collect(
        &self,
        ctx: &AcquireContext,
        case: &CaseId,
    ) -> Result<Collected, CollectError> {
        let host = super::hostname();
        let mut out = Collected::default();
        // Process memory is the most volatile: take it first.
        for &pid in &self.memory_pids {
            let reader = match memory::ProcessMemory::open(&self.root, pid) {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(pid, error = %e, "process memory not acquired");
                    let place = Place {
                        resource: format!("pid:{pid}"),
                        host: Some(host.clone()),
                        ..Place::default()
                    };
                    record_failure(ctx, case, Some(place), &format!("memory not acquired: {e}"));
                    out.failures
                        .push(format!("memory of pid {pid} not acquired: {e}"));
                    continue;
                }
            };
            let comm = reader.command().to_owned();
            let size = reader.readable_bytes();
            let artefact = acquire(
                ctx,
                AcquireRequest {
                    case: case.clone(),
                    kind: ArtefactKind::MemoryImage,
                    source: Source {
                        resource: format!("pid:{pid}"),
                        host: Some(host.clone()),
                        path: Some(format!("/proc/{pid}/mem ({comm}; LiME format)")),
                        ..Source::default()
                    },
                    reader: Box::new(reader.into_reader()),
                    size_hint: Some(size),
                    notes: Vec::new(),
                },
            )
            .await;
            match artefact {
                Ok(a) => out.artefacts.push(a),
                Err(e) => out.failures.push(format!(
                    "memory of pid {pid} not acquired: {}",
                    crate::error_chain(&e)
                )),
            }
        }
        let plan = triage::TriagePlan {
            root: self.root.clone(),
            skip_logs: self.skip_logs,
        };
        let artefact = acquire(
            ctx,
            AcquireRequest {
                case: case.clone(),
                kind: ArtefactKind::HostTriage,
                source: Source {
                    resource: "host".to_owned(),
                    host: Some(host),
                    path: Some(self.root.display().to_string()),
                    ..Source::default()
                },
                reader: Box::new(triage::start(plan)),
                size_hint: None,
                notes: Vec::new(),
            },
        )
        .await?;
        out.artefacts.push(artefact);
        if let Some(node) = &self.containers {
            let containers = crate::collect::container::ContainerCollector {
                node: node.clone(),
                select: crate::collect::container::collector::Select::All,
                memory: false,
            };
            let more = containers.collect(ctx, case).await?;
            out.artefacts.extend(more.artefacts);
            out.failures.extend(more.failures);
        }
        Ok(out)
    }
}
