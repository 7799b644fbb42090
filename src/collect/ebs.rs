//! Disk acquisition of EBS volumes through snapshots and the EBS direct APIs,
//! with no helper instance.
//!
//! A volume (or each volume of an instance) is snapshotted, tagged with the
//! case and the reason; the snapshot is then read block by block with
//! ListSnapshotBlocks and GetSnapshotBlock. Reads run concurrently within a
//! window, each waiting for the process-wide rate budgets of its snapshot
//! and its account ([`crate::aws::rate`]); the SDK retries throttling and
//! transient errors with backoff and never retries access errors. Each
//! block's SHA-256 is checked against the checksum the API returns (a
//! mismatch is fetched again, then refused). Blocks arrive out of order but
//! are handed to the pipeline in order, never-written blocks as zeros, so the
//! artefact is the exact raw image of the volume; memory is bounded by the
//! window, whatever the volume size.
//!
//! Alongside the image, a block manifest: the SHA-256 of every block, in
//! order, as a second artefact, and the RFC 6962 Merkle root over them,
//! recorded with the image, so a later copy can be checked block by block.
//!
//! With a base snapshot (`--changed-since`), only the blocks ListChangedBlocks
//! names are read: the artefact is those blocks packed in index order (a
//! `disk_delta`), and each manifest record is the block's index (8 bytes,
//! big-endian) followed by its SHA-256, so the delta can be laid onto an
//! image of the base at `index × 512 KiB`.
//!
//! Resume: every block read and checked is also written to a local spool
//! (a sparse file and a journal of index and SHA-256, fsynced in batches).
//! When the acquisition is cut (a crash, Ctrl-C, a lost connection), running
//! the same command again reads the journalled blocks from the spool,
//! checks each against its recorded SHA-256, and fetches only the rest; the
//! store's own resume (see [`crate::store::journal`]) skips the parts it
//! already holds. A volume's snapshot is reused the same way. The spool is
//! deleted once the image is stored; when it cannot be written (a full
//! disk), the acquisition goes on without it.

use std::collections::{HashMap, VecDeque};
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use aws_sdk_ebs::primitives::ByteStream;
use base64::Engine as _;
use bytes::Bytes;
use futures::StreamExt;
use sha2::{Digest as _, Sha256};

use super::{CollectError, Collected, Collector, SourceEnd, SourceReader};
use crate::aws::ApiError;
use crate::evidence::case::{AcquireContext, AcquireRequest, acquire};
use crate::evidence::{ArtefactKind, BlockMap, Source};
use crate::ids::CaseId;
use crate::ledger::merkle::{CompactRange, leaf_hash};

/// AWS's EBS direct block size: 512 KiB.
pub const BLOCK_SIZE: u64 = 512 * 1024;
/// Blocks fetched ahead of the one the pipeline needs next.
pub const DEFAULT_WINDOW: usize = 64;
/// Fetches of one block whose data does not match its checksum.
const CHECKSUM_TRIES: u32 = 3;

static ZEROS: [u8; BLOCK_SIZE as usize] = [0; BLOCK_SIZE as usize];

/// What to acquire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EbsTarget {
    Snapshot(String),
    Volume(String),
    Instance(String),
}

/// Disk acquisition of EBS volumes.
#[derive(Clone)]
pub struct EbsCollector {
    pub ebs: aws_sdk_ebs::Client,
    pub ec2: aws_sdk_ec2::Client,
    pub target: EbsTarget,
    /// Why, tagged on the snapshots custody creates.
    pub reason: Option<String>,
    /// Blocks in flight ahead of the pipeline.
    pub window: usize,
    /// Longest wait for a snapshot to complete.
    pub snapshot_timeout: std::time::Duration,
    pub region: Option<String>,
    /// Read only the blocks changed since this (earlier) snapshot.
    pub changed_since: Option<String>,
    /// Where blocks already read are kept until the image is stored, so an
    /// interrupted acquisition resumes; `None` keeps nothing.
    pub spool_dir: Option<PathBuf>,
    /// Who made the snapshot read, when not custody: noted on the image.
    pub made_by: Option<String>,
}

impl std::fmt::Debug for EbsCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EbsCollector")
            .field("target", &self.target)
            .field("window", &self.window)
            .field("changed_since", &self.changed_since)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EbsError {
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error(
        "block {index} of {snapshot} does not match its checksum after {CHECKSUM_TRIES} reads \
         (expected {expected}, got {actual}): refused"
    )]
    Checksum {
        snapshot: String,
        index: u64,
        expected: String,
        actual: String,
    },
    #[error("block {index} of {snapshot} has {len} bytes, expected {BLOCK_SIZE}")]
    BlockLength {
        snapshot: String,
        index: u64,
        len: usize,
    },
    #[error("{snapshot} uses {block_size}-byte blocks; custody reads EBS direct's {BLOCK_SIZE}")]
    BlockSize { snapshot: String, block_size: i32 },
    #[error("snapshot {snapshot} did not complete within {secs} s (state {state})")]
    SnapshotTimeout {
        snapshot: String,
        secs: u64,
        state: String,
    },
    #[error("{0} has no EBS volumes attached")]
    NoVolumes(String),
    #[error(
        "the block listing of {snapshot} went back from block {after} to block {index}: \
         refused, since a block listed out of order could be left out of the image"
    )]
    OutOfOrder {
        snapshot: String,
        index: u64,
        after: u64,
    },
    #[error(
        "the block listing of {snapshot} names block {index}, beyond the volume's {blocks} blocks"
    )]
    BeyondVolume {
        snapshot: String,
        index: u64,
        blocks: u64,
    },
    #[error(
        "--changed-since applies to one snapshot or one volume, not to every volume of an instance"
    )]
    ChangedSinceInstance,
}

/// A listed block: its index and, when the snapshot holds data there, its token.
type Listed = (u64, Option<String>);

/// A snapshot to read, of which volume, and what to note about it.
struct ToRead {
    snapshot: String,
    volume: Option<String>,
    notes: Vec<String>,
}

/// The layout of a snapshot, from its first listing page.
#[derive(Debug, Clone)]
struct Layout {
    volume_bytes: u64,
    blocks: u64,
    first_page: Vec<Listed>,
    next_token: Option<String>,
}

/// Lists the blocks to read, page by page: every written block of a
/// snapshot, or the blocks changed since a base snapshot.
#[derive(Clone)]
struct Lister {
    ebs: aws_sdk_ebs::Client,
    snapshot: String,
    base: Option<String>,
    /// Pages served instead of the API's, for tests of the walk.
    #[cfg(test)]
    canned: Option<Arc<Mutex<VecDeque<Page>>>>,
}

/// One page of a listing, sorted by index.
struct Page {
    block_size: i32,
    volume_gib: i64,
    blocks: Vec<Listed>,
    next: Option<String>,
}

impl Lister {
    async fn page(&self, token: Option<String>) -> Result<Page, EbsError> {
        #[cfg(test)]
        if let Some(c) = &self.canned {
            let mut p = c
                .lock()
                .ok()
                .and_then(|mut c| c.pop_front())
                .ok_or_else(|| {
                    ApiError::other(
                        "list the blocks of",
                        &self.snapshot,
                        format!("no canned page for token {token:?}"),
                    )
                })?;
            p.blocks.sort_by_key(|(i, _)| *i);
            return Ok(p);
        }
        let mut page = match &self.base {
            None => {
                let out = self
                    .ebs
                    .list_snapshot_blocks()
                    .snapshot_id(&self.snapshot)
                    .max_results(10_000)
                    .set_next_token(token)
                    .send()
                    .await
                    .map_err(|e| ApiError::sdk("list the blocks of", &self.snapshot, e))?;
                Page {
                    block_size: out.block_size().unwrap_or(0),
                    volume_gib: out.volume_size().unwrap_or(0),
                    blocks: out
                        .blocks()
                        .iter()
                        .filter_map(|b| {
                            let i = u64::try_from(b.block_index()?).ok()?;
                            Some((i, b.block_token().map(str::to_owned)))
                        })
                        .collect(),
                    next: out.next_token().map(str::to_owned),
                }
            }
            Some(base) => {
                let out = self
                    .ebs
                    .list_changed_blocks()
                    .first_snapshot_id(base)
                    .second_snapshot_id(&self.snapshot)
                    .max_results(10_000)
                    .set_next_token(token)
                    .send()
                    .await
                    .map_err(|e| ApiError::sdk("list the changed blocks of", &self.snapshot, e))?;
                Page {
                    block_size: out.block_size().unwrap_or(0),
                    volume_gib: out.volume_size().unwrap_or(0),
                    // No second token: the block holds no data in the newer snapshot.
                    blocks: out
                        .changed_blocks()
                        .iter()
                        .filter_map(|b| {
                            let i = u64::try_from(b.block_index()?).ok()?;
                            Some((i, b.second_block_token().map(str::to_owned)))
                        })
                        .collect(),
                    next: out.next_token().map(str::to_owned),
                }
            }
        };
        // AWS lists in index order; an emulator may not. Within a page the
        // order is restored here; across pages the walk refuses a regression.
        page.blocks.sort_by_key(|(i, _)| *i);
        Ok(page)
    }
}

impl EbsCollector {
    /// The snapshots to read: the given one, or new ones of the volumes.
    async fn snapshots(
        &self,
        ctx: &AcquireContext,
        case: &CaseId,
    ) -> Result<Vec<ToRead>, EbsError> {
        let volumes = match &self.target {
            EbsTarget::Snapshot(s) => {
                return Ok(vec![ToRead {
                    snapshot: s.clone(),
                    volume: None,
                    notes: self.made_by.iter().cloned().collect(),
                }]);
            }
            EbsTarget::Volume(v) => vec![v.clone()],
            EbsTarget::Instance(_) if self.changed_since.is_some() => {
                return Err(EbsError::ChangedSinceInstance);
            }
            EbsTarget::Instance(i) => {
                let volumes = self.instance_volumes(i).await?;
                let mut earlier = false;
                for v in &volumes {
                    earlier |= self.earlier_snapshot(case, v).await.is_some();
                }
                if !earlier {
                    return self.snapshot_instance(ctx, case, i).await;
                }
                // An interrupted run made some: each volume is read as the
                // per-volume path says (the set is no longer one moment).
                volumes
            }
        };
        let mut out = Vec::with_capacity(volumes.len());
        for v in volumes {
            let mut notes = Vec::new();
            let snapshot = match self.earlier_snapshot(case, &v).await {
                Some(s) => {
                    tracing::info!(volume = %v, snapshot = %s, "reading the snapshot an interrupted run made");
                    notes.push(format!(
                        "{s} was made of {v} for this case by an earlier, interrupted run, and is read again"
                    ));
                    s
                }
                None => self.snapshot_volume(ctx, case, &v).await?,
            };
            out.push(ToRead {
                snapshot,
                volume: Some(v),
                notes,
            });
        }
        Ok(out)
    }

    async fn instance_volumes(&self, instance: &str) -> Result<Vec<String>, EbsError> {
        let out = self
            .ec2
            .describe_instances()
            .instance_ids(instance)
            .send()
            .await
            .map_err(|e| ApiError::sdk("describe", instance, e))?;
        let vols: Vec<String> = out
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .flat_map(|i| i.block_device_mappings())
            .filter_map(|m| m.ebs().and_then(|e| e.volume_id()).map(str::to_owned))
            .collect();
        if vols.is_empty() {
            return Err(EbsError::NoVolumes(instance.to_owned()));
        }
        Ok(vols)
    }

    fn snapshot_tags(&self, case: &CaseId) -> Vec<aws_sdk_ec2::types::Tag> {
        use aws_sdk_ec2::types::Tag;
        let mut tags = vec![
            Tag::builder()
                .key("custody:case")
                .value(case.to_string())
                .build(),
            Tag::builder()
                .key("custody:tool")
                .value(crate::TOOL_NAME)
                .build(),
        ];
        if let Some(r) = &self.reason {
            // Tag values hold at most 256 characters.
            let r: String = r.chars().take(256).collect();
            tags.push(Tag::builder().key("custody:reason").value(r).build());
        }
        tags
    }

    /// Snapshots every EBS volume of `instance` at one moment
    /// (CreateSnapshots: a crash-consistent set), tagged with the case and
    /// the reason, records the set, and waits for each to complete.
    async fn snapshot_instance(
        &self,
        ctx: &AcquireContext,
        case: &CaseId,
        instance: &str,
    ) -> Result<Vec<ToRead>, EbsError> {
        use aws_sdk_ec2::types::{
            CopyTagsFromSource, InstanceSpecification, ResourceType, TagSpecification,
        };
        let out = self
            .ec2
            .create_snapshots()
            .instance_specification(
                InstanceSpecification::builder()
                    .instance_id(instance)
                    .exclude_boot_volume(false)
                    .build(),
            )
            .description(format!("custody case {case}: evidence of {instance}"))
            .copy_tags_from_source(CopyTagsFromSource::Volume)
            .tag_specifications(
                TagSpecification::builder()
                    .resource_type(ResourceType::Snapshot)
                    .set_tags(Some(self.snapshot_tags(case)))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| ApiError::sdk("snapshot the volumes of", instance, e))?;
        let set: Vec<(String, String)> = out
            .snapshots()
            .iter()
            .filter_map(|s| Some((s.volume_id()?.to_owned(), s.snapshot_id()?.to_owned())))
            .collect();
        if set.is_empty() {
            return Err(EbsError::NoVolumes(instance.to_owned()));
        }
        tracing::info!(%instance, snapshots = set.len(), "crash-consistent snapshot set started");
        for (v, s) in &set {
            self.note_snapshot(case, v, s);
        }
        if let Some(rec) = &ctx.recorder {
            let detail = serde_json::json!({
                "action": "create_snapshots",
                "instance": instance,
                "crash_consistent": true,
                "snapshots": set.iter().map(|(v, s)| serde_json::json!({"volume": v, "snapshot": s})).collect::<Vec<_>>(),
                "request_id": aws_sdk_ec2::operation::RequestId::request_id(&out),
            });
            if let Err(e) = rec.record(
                Some(case),
                crate::ledger::entry::Action::SnapshotCreated,
                None,
                Some(Source {
                    resource: instance.to_owned(),
                    region: self.region.clone(),
                    ..Source::default()
                }),
                Some(detail),
            ) {
                tracing::error!(error = %crate::error_chain(&e), "cannot record the snapshot set in the ledger");
            }
        }
        let n = set.len();
        let mut reads = Vec::with_capacity(n);
        for (volume, snapshot) in set {
            self.wait_completed(&snapshot).await?;
            reads.push(ToRead {
                snapshot,
                volume: Some(volume),
                notes: vec![format!(
                    "one of a crash-consistent set of {n} snapshots of {instance}, taken at one moment (CreateSnapshots)"
                )],
            });
        }
        Ok(reads)
    }

    /// Creates a snapshot of `volume`, tagged with the case and the reason,
    /// records it, and waits for it to complete.
    async fn snapshot_volume(
        &self,
        ctx: &AcquireContext,
        case: &CaseId,
        volume: &str,
    ) -> Result<String, EbsError> {
        use aws_sdk_ec2::types::{ResourceType, TagSpecification};
        let tags = self.snapshot_tags(case);
        let out = self
            .ec2
            .create_snapshot()
            .volume_id(volume)
            .description(format!("custody case {case}: evidence of {volume}"))
            .tag_specifications(
                TagSpecification::builder()
                    .resource_type(ResourceType::Snapshot)
                    .set_tags(Some(tags))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| ApiError::sdk("snapshot", volume, e))?;
        let snapshot = out
            .snapshot_id()
            .map(str::to_owned)
            .ok_or_else(|| ApiError::other("snapshot", volume, "no snapshot id in the answer"))?;
        tracing::info!(%volume, %snapshot, "snapshot started");
        self.note_snapshot(case, volume, &snapshot);
        if let Some(rec) = &ctx.recorder {
            let detail = serde_json::json!({
                "action": "create_snapshot",
                "volume": volume,
                "snapshot": snapshot,
                "request_id": aws_sdk_ec2::operation::RequestId::request_id(&out),
            });
            if let Err(e) = rec.record(
                Some(case),
                crate::ledger::entry::Action::SnapshotCreated,
                None,
                Some(Source {
                    resource: volume.to_owned(),
                    region: self.region.clone(),
                    ..Source::default()
                }),
                Some(detail),
            ) {
                tracing::error!(error = %crate::error_chain(&e), "cannot record the snapshot in the ledger");
            }
        }
        self.wait_completed(&snapshot).await?;
        Ok(snapshot)
    }

    async fn wait_completed(&self, snapshot: &str) -> Result<(), EbsError> {
        let start = std::time::Instant::now();
        let mut delay = std::time::Duration::from_secs(1);
        loop {
            let out = self
                .ec2
                .describe_snapshots()
                .snapshot_ids(snapshot)
                .send()
                .await
                .map_err(|e| ApiError::sdk("describe", snapshot, e))?;
            let s = out.snapshots().first();
            let state = s
                .and_then(|s| s.state())
                .map_or("unknown", |s| s.as_str())
                .to_owned();
            let progress = s.and_then(|s| s.progress()).unwrap_or("?");
            match state.as_str() {
                "completed" => return Ok(()),
                "error" | "recoverable" | "recovering" => {
                    return Err(ApiError::other(
                        "snapshot",
                        snapshot,
                        format!("the snapshot is in state {state}"),
                    )
                    .into());
                }
                _ => {}
            }
            if start.elapsed() >= self.snapshot_timeout {
                return Err(EbsError::SnapshotTimeout {
                    snapshot: snapshot.to_owned(),
                    secs: self.snapshot_timeout.as_secs(),
                    state,
                });
            }
            tracing::info!(%snapshot, %progress, "waiting for the snapshot");
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(std::time::Duration::from_secs(15));
        }
    }

    /// The snapshot's owner account, for the per-account budget.
    async fn owner(&self, snapshot: &str) -> String {
        match self
            .ec2
            .describe_snapshots()
            .snapshot_ids(snapshot)
            .send()
            .await
        {
            Ok(out) => out
                .snapshots()
                .first()
                .and_then(|s| s.owner_id())
                .unwrap_or("unknown")
                .to_owned(),
            Err(e) => {
                tracing::debug!(%snapshot, error = %crate::aws::brief(&e), "snapshot owner unknown");
                "unknown".to_owned()
            }
        }
    }

    async fn layout(&self, lister: &Lister) -> Result<Layout, EbsError> {
        let page = lister.page(None).await?;
        if i64::from(page.block_size) != BLOCK_SIZE as i64 {
            return Err(EbsError::BlockSize {
                snapshot: lister.snapshot.clone(),
                block_size: page.block_size,
            });
        }
        let gib = u64::try_from(page.volume_gib).unwrap_or(0);
        let volume_bytes = gib << 30;
        Ok(Layout {
            volume_bytes,
            blocks: volume_bytes / BLOCK_SIZE,
            first_page: page.blocks,
            next_token: page.next,
        })
    }

    /// Acquires one snapshot: the image (or the delta), then its block manifest.
    async fn acquire_snapshot(
        &self,
        ctx: &AcquireContext,
        case: &CaseId,
        snapshot: &str,
        volume: Option<&str>,
        mut notes: Vec<String>,
    ) -> Result<Vec<crate::evidence::Artefact>, CollectError> {
        let lister = Lister {
            ebs: self.ebs.clone(),
            snapshot: snapshot.to_owned(),
            base: self.changed_since.clone(),
            #[cfg(test)]
            canned: None,
        };
        let layout = match self.layout(&lister).await {
            Ok(l) => l,
            Err(e) => {
                // acquire() records its own failures; this one comes before it.
                crate::evidence::case::record_failure(
                    ctx,
                    case,
                    Some(Source {
                        resource: snapshot.to_owned(),
                        region: self.region.clone(),
                        path: volume.map(str::to_owned),
                        ..Source::default()
                    }),
                    &e.to_string(),
                );
                return Err(e.into());
            }
        };
        let owner = self.owner(snapshot).await;
        let budgets = block_budgets(&owner, snapshot);
        let spool = self.spool(case, snapshot);
        let map_file = tempfile::NamedTempFile::new().map_err(|source| CollectError::Open {
            path: "a temporary block manifest".into(),
            source,
        })?;
        let map_writer = map_file.reopen().map_err(|source| CollectError::Open {
            path: map_file.path().display().to_string(),
            source,
        })?;
        let summary = Arc::new(Mutex::new(None));
        let reader = ImageReader::start(
            Plan {
                fetcher: Fetcher {
                    ebs: self.ebs.clone(),
                    snapshot: snapshot.to_owned(),
                    budgets,
                    window: self.window.max(1),
                },
                lister,
                layout: layout.clone(),
                spool: spool.clone(),
                map_writer,
            },
            summary.clone(),
        );
        let source = Source {
            resource: snapshot.to_owned(),
            region: self.region.clone(),
            account: (owner != "unknown").then_some(owner),
            path: volume.map(str::to_owned),
            host: None,
            log_format: None,
        };
        let (kind, size_hint) = match &self.changed_since {
            None => (ArtefactKind::DiskImage, Some(layout.volume_bytes)),
            Some(base) => {
                notes.push(format!(
                    "the {BLOCK_SIZE}-byte blocks of {snapshot} that changed since {base} \
                     (ListChangedBlocks), packed in index order; the block manifest gives \
                     each one's index"
                ));
                (ArtefactKind::DiskDelta, None)
            }
        };
        let image = acquire(
            ctx,
            AcquireRequest {
                case: case.clone(),
                kind,
                source: source.clone(),
                reader: Box::new(reader),
                size_hint,
                notes,
            },
        )
        .await?;
        // The image is stored and recorded: nothing is left to resume.
        if let Some(s) = &spool {
            s.remove();
        }
        let map = summary
            .lock()
            .ok()
            .and_then(|mut s| s.take())
            .ok_or_else(|| CollectError::Open {
                path: format!("the block manifest of {snapshot}"),
                source: io::Error::other("the image reader did not finish"),
            })?;
        let manifest = self
            .acquire_block_map(ctx, case, &image, source, map, map_file.path())
            .await?;
        Ok(vec![image, manifest])
    }

    /// The resume spool of `snapshot` for `case`, with what an interrupted
    /// run journalled; `None` without a spool directory, or when the spool
    /// cannot be opened.
    fn spool(&self, case: &CaseId, snapshot: &str) -> Option<Arc<Spool>> {
        let spool = self.spool_dir.as_deref().and_then(|d| {
            let base = self.changed_since.as_deref().unwrap_or("");
            let dir = d.join(format!(
                "snap-{}",
                spool_key(&[case.as_str(), snapshot, base])
            ));
            match Spool::open(&dir) {
                Ok(s) => Some(Arc::new(s)),
                Err(e) => {
                    tracing::warn!(dir = %dir.display(), error = %e, "no resume spool: this acquisition cannot be resumed if it is cut");
                    None
                }
            }
        });
        if let Some(s) = &spool
            && !s.confirmed.is_empty()
        {
            tracing::info!(%snapshot, blocks = s.confirmed.len(), "resuming: blocks read by an interrupted run come from its spool");
        }
        spool
    }

    /// Acquires the block manifest the image reader wrote to `map_file`, as
    /// the second artefact of `image`.
    async fn acquire_block_map(
        &self,
        ctx: &AcquireContext,
        case: &CaseId,
        image: &crate::evidence::Artefact,
        source: Source,
        map: MapSummary,
        map_file: &Path,
    ) -> Result<crate::evidence::Artefact, CollectError> {
        // A digest per block; a delta's record also holds the block's index.
        let record = match self.changed_since {
            None => 32,
            Some(_) => SPOOL_RECORD as u64,
        };
        let file = std::fs::File::open(map_file).map_err(|source| CollectError::Open {
            path: map_file.display().to_string(),
            source,
        })?;
        let layout_note = if self.changed_since.is_some() {
            format!(
                "for each block of artefact {}, in order, its index (8 bytes, big-endian) and \
                 SHA-256 (32 bytes); RFC 6962 Merkle root {} over these 40-byte records",
                image.id, map.merkle_root
            )
        } else {
            format!(
                "SHA-256 of each {BLOCK_SIZE}-byte block of artefact {}, in order, 32 bytes each; \
                 RFC 6962 Merkle root {} over them",
                image.id, map.merkle_root
            )
        };
        Ok(acquire(
            ctx,
            AcquireRequest {
                case: case.clone(),
                kind: ArtefactKind::BlockMap,
                source,
                reader: Box::new(file),
                size_hint: Some(map.blocks * record),
                notes: vec![layout_note],
            },
        )
        .await?)
    }

    /// Where the snapshot custody made of `volume` for `case` is noted until
    /// it has been read, so a rerun reads it instead of making another.
    fn snapshot_note(&self, case: &CaseId, volume: &str) -> Option<PathBuf> {
        self.spool_dir
            .as_ref()
            .map(|d| d.join(format!("vol-{}.json", spool_key(&[case.as_str(), volume]))))
    }

    /// The snapshot an interrupted run made of `volume` for `case`, when it
    /// still exists and completes.
    async fn earlier_snapshot(&self, case: &CaseId, volume: &str) -> Option<String> {
        let path = self.snapshot_note(case, volume)?;
        let text = std::fs::read_to_string(&path).ok()?;
        let note: serde_json::Value = serde_json::from_str(&text).ok()?;
        let snapshot = note.get("snapshot")?.as_str()?.to_owned();
        match self.wait_completed(&snapshot).await {
            Ok(()) => Some(snapshot),
            Err(e) => {
                tracing::warn!(%snapshot, error = %e, "the snapshot of an interrupted run cannot be used; taking a new one");
                let _ = std::fs::remove_file(&path);
                None
            }
        }
    }

    fn note_snapshot(&self, case: &CaseId, volume: &str, snapshot: &str) {
        let Some(path) = self.snapshot_note(case, volume) else {
            return;
        };
        let body =
            serde_json::json!({ "case": case.as_str(), "volume": volume, "snapshot": snapshot });
        let r = path
            .parent()
            .map_or(Ok(()), crate::private_fs::create_dir_all)
            .and_then(|()| std::fs::write(&path, body.to_string()));
        if let Err(e) = r {
            tracing::warn!(path = %path.display(), error = %e, "cannot note the snapshot for a resume");
        }
    }

    fn forget_snapshot(&self, case: &CaseId, volume: &str) {
        if let Some(path) = self.snapshot_note(case, volume) {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// The rate budgets a block read of `snapshot` waits for: its owner
/// account's and its own, each EBS direct's GetSnapshotBlock limit.
fn block_budgets(owner: &str, snapshot: &str) -> Vec<Arc<governor::DefaultDirectRateLimiter>> {
    vec![
        crate::aws::rate::budget(
            &format!("ebs-get:account:{owner}"),
            crate::aws::rate::EBS_GET_BLOCK_PER_SECOND,
        ),
        crate::aws::rate::budget(
            &format!("ebs-get:snapshot:{snapshot}"),
            crate::aws::rate::EBS_GET_BLOCK_PER_SECOND,
        ),
    ]
}

impl From<EbsError> for CollectError {
    fn from(e: EbsError) -> Self {
        CollectError::Cloud(Box::new(e))
    }
}

#[async_trait]
impl Collector for EbsCollector {
    fn describe(&self) -> String {
        match &self.target {
            EbsTarget::Snapshot(s) => format!("ebs snapshot {s}"),
            EbsTarget::Volume(v) => format!("ebs volume {v}"),
            EbsTarget::Instance(i) => format!("ebs volumes of {i}"),
        }
    }

    async fn collect(
        &self,
        ctx: &AcquireContext,
        case: &CaseId,
    ) -> Result<Collected, CollectError> {
        let snapshots = match self.snapshots(ctx, case).await {
            Ok(s) => s,
            Err(e) => {
                crate::evidence::case::record_failure(
                    ctx,
                    case,
                    Some(Source {
                        resource: self.describe(),
                        region: self.region.clone(),
                        ..Source::default()
                    }),
                    &e.to_string(),
                );
                return Err(e.into());
            }
        };
        let mut collected = Collected::default();
        for ToRead {
            snapshot,
            volume,
            notes,
        } in snapshots
        {
            match self
                .acquire_snapshot(ctx, case, &snapshot, volume.as_deref(), notes)
                .await
            {
                Ok(a) => {
                    if let Some(v) = &volume {
                        self.forget_snapshot(case, v);
                    }
                    collected.artefacts.extend(a);
                }
                Err(e) => collected
                    .failures
                    .push(format!("{snapshot}: {}", crate::error_chain(&e))),
            }
        }
        Ok(collected)
    }
}

/// Fetches blocks of one snapshot.
#[derive(Clone)]
struct Fetcher {
    ebs: aws_sdk_ebs::Client,
    snapshot: String,
    budgets: Vec<Arc<governor::DefaultDirectRateLimiter>>,
    window: usize,
}

/// One block of the image, in order: its bytes and SHA-256.
type Block = (Bytes, [u8; 32]);

impl Fetcher {
    /// Block `index`, checked against the checksum the API returns.
    async fn fetch(&self, index: u64, token: String) -> Result<Block, EbsError> {
        let block_index = i32::try_from(index).map_err(|_| EbsError::BlockLength {
            snapshot: self.snapshot.clone(),
            index,
            len: 0,
        })?;
        let mut last = (String::new(), String::new());
        for attempt in 1..=CHECKSUM_TRIES {
            crate::aws::rate::acquire(&self.budgets).await;
            let out = self
                .ebs
                .get_snapshot_block()
                .snapshot_id(&self.snapshot)
                .block_index(block_index)
                .block_token(&token)
                .send()
                .await
                .map_err(|e| ApiError::sdk("read a block of", &self.snapshot, e))?;
            let expected = out.checksum().unwrap_or_default().to_owned();
            let data = collect_body(out.block_data)
                .await
                .map_err(|e| ApiError::other("read a block of", &self.snapshot, e.to_string()))?;
            if data.len() as u64 != BLOCK_SIZE {
                return Err(EbsError::BlockLength {
                    snapshot: self.snapshot.clone(),
                    index,
                    len: data.len(),
                });
            }
            let digest: [u8; 32] = Sha256::digest(&data).into();
            let actual = base64::engine::general_purpose::STANDARD.encode(digest);
            if actual == expected {
                return Ok((data, digest));
            }
            tracing::warn!(snapshot = %self.snapshot, index, attempt, "a block does not match its checksum; reading it again");
            last = (expected, actual);
        }
        Err(EbsError::Checksum {
            snapshot: self.snapshot.clone(),
            index,
            expected: last.0,
            actual: last.1,
        })
    }
}

async fn collect_body(body: ByteStream) -> Result<Bytes, io::Error> {
    body.collect()
        .await
        .map(|b| b.into_bytes())
        .map_err(io::Error::other)
}

/// What the block manifest came to.
#[derive(Debug, Clone)]
struct MapSummary {
    blocks: u64,
    merkle_root: String,
}

/// Bytes of one spool journal record: the block index (big-endian) and its SHA-256.
const SPOOL_RECORD: usize = 40;
/// Spooled blocks between two fsyncs of the spool.
const SPOOL_BATCH: usize = 256;

/// The directory name of the spool (or snapshot record) for these parts.
fn spool_key(parts: &[&str]) -> String {
    let digest = Sha256::digest(parts.join("\n").as_bytes());
    hex::encode(digest.get(..16).unwrap_or_default())
}

/// Blocks of a snapshot already read and checked, kept until its image is
/// stored: a sparse file (each block at `index × BLOCK_SIZE`) and a journal
/// naming the blocks whose bytes were fsynced before their record was.
struct Spool {
    dir: PathBuf,
    data: Arc<std::fs::File>,
    journal: Mutex<Option<std::fs::File>>,
    confirmed: HashMap<u64, [u8; 32]>,
}

impl Spool {
    fn open(dir: &Path) -> io::Result<Self> {
        use std::io::{Seek as _, SeekFrom};
        crate::private_fs::create_dir_all(dir)?;
        let data = crate::private_fs::options()
            .create(true)
            .truncate(false)
            .open(dir.join("blocks"))?;
        let mut journal = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(dir.join("journal"))?;
        let mut bytes = Vec::new();
        journal.read_to_end(&mut bytes)?;
        let mut confirmed = HashMap::new();
        for rec in bytes.chunks_exact(SPOOL_RECORD) {
            let (index, digest) = rec.split_at(8);
            if let (Ok(i), Ok(d)) = (<[u8; 8]>::try_from(index), <[u8; 32]>::try_from(digest)) {
                confirmed.insert(u64::from_be_bytes(i), d);
            }
        }
        // A torn last record (a crash while appending it) is cut, so the
        // records appended from here on stay aligned.
        let valid = (bytes.len() - bytes.len() % SPOOL_RECORD) as u64;
        journal.set_len(valid)?;
        journal.seek(SeekFrom::Start(valid))?;
        Ok(Self {
            dir: dir.to_owned(),
            data: Arc::new(data),
            journal: Mutex::new(Some(journal)),
            confirmed,
        })
    }

    fn has(&self, index: u64) -> bool {
        self.confirmed.contains_key(&index)
    }

    /// Block `index` from the spool, if it was journalled and its bytes
    /// still have the SHA-256 checked when it was first read.
    fn read(&self, index: u64) -> Option<Block> {
        let expected = self.confirmed.get(&index)?;
        let mut buf = vec![0u8; BLOCK_SIZE as usize];
        self.data
            .read_exact_at(&mut buf, index.checked_mul(BLOCK_SIZE)?)
            .ok()?;
        let digest: [u8; 32] = Sha256::digest(&buf).into();
        if digest != *expected {
            tracing::warn!(index, dir = %self.dir.display(), "a spooled block does not match its journal; reading it again");
            return None;
        }
        Some((Bytes::from(buf), digest))
    }

    /// Starts the thread that spools newly read blocks.
    fn writer(&self) -> Option<std::sync::mpsc::SyncSender<(u64, Bytes, [u8; 32])>> {
        let journal = self.journal.lock().ok()?.take()?;
        let (tx, rx) = std::sync::mpsc::sync_channel(32);
        let data = self.data.clone();
        let dir = self.dir.clone();
        std::thread::spawn(move || spool_writer(&data, journal, &rx, &dir));
        Some(tx)
    }

    fn remove(&self) {
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            tracing::warn!(dir = %self.dir.display(), error = %e, "cannot remove the resume spool");
        }
    }
}

/// Writes spooled blocks, then their journal records, each batch after an
/// fsync of the blocks, so a record never names bytes that are not on disk.
/// Also flushes after half a second without blocks, so a stalled read loses
/// little. On an error it warns once and only drains from then on.
fn spool_writer(
    data: &std::fs::File,
    mut journal: std::fs::File,
    rx: &std::sync::mpsc::Receiver<(u64, Bytes, [u8; 32])>,
    dir: &Path,
) {
    use std::sync::mpsc::RecvTimeoutError;
    fn flush(
        data: &std::fs::File,
        journal: &mut std::fs::File,
        pending: &mut Vec<u8>,
    ) -> io::Result<()> {
        if pending.is_empty() {
            return Ok(());
        }
        data.sync_data()?;
        journal.write_all(pending)?;
        journal.sync_data()?;
        pending.clear();
        Ok(())
    }
    let mut pending = Vec::with_capacity(SPOOL_BATCH * SPOOL_RECORD);
    let mut failed = false;
    loop {
        let item = match rx.recv_timeout(std::time::Duration::from_millis(500)) {
            Ok(item) => Some(item),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => break,
        };
        if failed {
            continue;
        }
        let r = match item {
            Some((index, bytes, digest)) => index
                .checked_mul(BLOCK_SIZE)
                .ok_or_else(|| io::Error::other("block index overflows"))
                .and_then(|at| data.write_all_at(&bytes, at))
                .and_then(|()| {
                    pending.extend_from_slice(&index.to_be_bytes());
                    pending.extend_from_slice(&digest);
                    if pending.len() >= SPOOL_BATCH * SPOOL_RECORD {
                        flush(data, &mut journal, &mut pending)
                    } else {
                        Ok(())
                    }
                }),
            None => flush(data, &mut journal, &mut pending),
        };
        if let Err(e) = r {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot write the resume spool: this acquisition goes on, but cannot be resumed from here");
            failed = true;
        }
    }
    if !failed && let Err(e) = flush(data, &mut journal, &mut pending) {
        tracing::warn!(dir = %dir.display(), error = %e, "cannot write the resume spool");
    }
}

/// Counts kept while the image is read.
#[derive(Default)]
struct Counts {
    /// Blocks with data (read through EBS direct or from the spool).
    written: AtomicU64,
    /// Of those, blocks taken from the spool of an interrupted run.
    resumed: AtomicU64,
}

/// The image as a [`SourceReader`]: a task fetches blocks in a window and
/// hands them over in order through a bounded channel.
struct ImageReader {
    rx: tokio::sync::mpsc::Receiver<io::Result<Bytes>>,
    current: Bytes,
    summary: Arc<Mutex<Option<MapSummary>>>,
    layout: Layout,
    delta: Option<String>,
    counts: Arc<Counts>,
}

/// The order in which the image is assembled: a block to fetch, or zeros.
enum Slot {
    Zero(u64),
    Fetch(u64, String),
}

/// How the image is read.
struct Plan {
    fetcher: Fetcher,
    lister: Lister,
    layout: Layout,
    spool: Option<Arc<Spool>>,
    map_writer: std::fs::File,
}

impl ImageReader {
    fn start(plan: Plan, summary: Arc<Mutex<Option<MapSummary>>>) -> Self {
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let counts = Arc::new(Counts::default());
        let layout = plan.layout.clone();
        let delta = plan.lister.base.clone();
        let task_summary = summary.clone();
        let task_counts = counts.clone();
        tokio::spawn(async move {
            if let Err(e) = produce(plan, &tx, task_summary, task_counts).await {
                let _ = tx.send(Err(io::Error::other(e.to_string()))).await;
            }
        });
        Self {
            rx,
            current: Bytes::new(),
            summary,
            layout,
            delta,
            counts,
        }
    }
}

/// The walk over the listing: every index of the volume in order (a full
/// image, unlisted blocks as zeros), or only the listed blocks (a delta).
struct Walk {
    next: u64,
    end: u64,
    dense: bool,
    /// The last index taken from the listing.
    last: Option<u64>,
    page: VecDeque<Listed>,
    token: Option<String>,
    lister: Lister,
}

impl Walk {
    async fn step(&mut self) -> Option<Result<Slot, EbsError>> {
        if self.dense && self.next >= self.end {
            return None;
        }
        // Refill the listing when it ran out and more pages exist.
        while self.page.is_empty()
            && let Some(t) = self.token.take()
        {
            match self.lister.page(Some(t)).await {
                Ok(p) => {
                    self.page = p.blocks.into();
                    self.token = p.next;
                }
                Err(e) => return Some(Err(e)),
            }
        }
        // A block listed twice is read once; a listing that goes back is refused.
        while let Some((i, _)) = self.page.front() {
            let i = *i;
            match self.last {
                Some(l) if i == l => {
                    self.page.pop_front();
                }
                Some(l) if i < l => {
                    return Some(Err(EbsError::OutOfOrder {
                        snapshot: self.lister.snapshot.clone(),
                        index: i,
                        after: l,
                    }));
                }
                _ if i >= self.end => {
                    return Some(Err(EbsError::BeyondVolume {
                        snapshot: self.lister.snapshot.clone(),
                        index: i,
                        blocks: self.end,
                    }));
                }
                _ => break,
            }
        }
        let take = match self.page.front() {
            Some((i, _)) => !self.dense || *i == self.next,
            None => false,
        };
        if !take {
            if !self.dense {
                return None;
            }
            let slot = Slot::Zero(self.next);
            self.next += 1;
            return Some(Ok(slot));
        }
        let (i, token) = self.page.pop_front()?;
        self.last = Some(i);
        self.next = i + 1;
        Some(Ok(match token {
            Some(t) => Slot::Fetch(i, t),
            None => Slot::Zero(i),
        }))
    }
}

/// Fetches the listed blocks in a window and hands them to the pipeline in
/// order, writing the block manifest and spooling what it read.
async fn produce(
    plan: Plan,
    tx: &tokio::sync::mpsc::Sender<io::Result<Bytes>>,
    summary: Arc<Mutex<Option<MapSummary>>>,
    counts: Arc<Counts>,
) -> Result<(), EbsError> {
    let Plan {
        fetcher,
        lister,
        layout,
        spool,
        map_writer,
    } = plan;
    let delta = lister.base.is_some();
    let snapshot = lister.snapshot.clone();
    let walk = Walk {
        next: 0,
        end: layout.blocks,
        dense: !delta,
        last: None,
        page: layout.first_page.into(),
        token: layout.next_token,
        lister,
    };
    let slots = futures::stream::unfold(walk, |mut w| async move {
        let slot = w.step().await?;
        // After an error the walk ends.
        if slot.is_err() {
            w.page.clear();
            w.token = None;
            w.next = w.end;
            w.dense = false;
        }
        Some((slot, w))
    });
    let zero_digest: [u8; 32] = Sha256::digest(ZEROS).into();
    let window = fetcher.window;
    let blocks = slots
        .map(|slot| {
            let f = fetcher.clone();
            let counts = counts.clone();
            let spool = spool.clone();
            async move {
                let (i, t) = match slot? {
                    Slot::Zero(i) => {
                        return Ok((i, Bytes::from_static(&ZEROS), zero_digest, false));
                    }
                    Slot::Fetch(i, t) => (i, t),
                };
                counts.written.fetch_add(1, Ordering::Relaxed);
                if let Some(sp) = spool.filter(|s| s.has(i))
                    && let Ok(Some((data, digest))) =
                        tokio::task::spawn_blocking(move || sp.read(i)).await
                {
                    counts.resumed.fetch_add(1, Ordering::Relaxed);
                    return Ok((i, data, digest, false));
                }
                let (data, digest) = f.fetch(i, t).await?;
                Ok::<_, EbsError>((i, data, digest, true))
            }
        })
        .buffered(window);
    let mut blocks = std::pin::pin!(blocks);
    let spool_tx = spool.as_ref().and_then(|s| s.writer());
    let mut map = io::BufWriter::new(map_writer);
    let mut range = CompactRange::default();
    let mut n = 0u64;
    let manifest_err =
        |e: io::Error| ApiError::other("write the block manifest of", &snapshot, e.to_string());
    while let Some(block) = blocks.next().await {
        let (index, data, digest, fresh) = block?;
        if delta {
            let mut rec = [0u8; SPOOL_RECORD];
            let (i, d) = rec.split_at_mut(8);
            i.copy_from_slice(&index.to_be_bytes());
            d.copy_from_slice(&digest);
            map.write_all(&rec).map_err(manifest_err)?;
            range.push(leaf_hash(&rec));
        } else {
            map.write_all(&digest).map_err(manifest_err)?;
            range.push(leaf_hash(&digest));
        }
        n += 1;
        if fresh && let Some(stx) = &spool_tx {
            use std::sync::mpsc::TrySendError;
            match stx.try_send((index, data.clone(), digest)) {
                Ok(()) | Err(TrySendError::Disconnected(_)) => {}
                Err(TrySendError::Full(item)) => {
                    // The spool is behind (an fsync): wait for it off the runtime.
                    let stx = stx.clone();
                    let _ = tokio::task::spawn_blocking(move || stx.send(item)).await;
                }
            }
        }
        if tx.send(Ok(data)).await.is_err() {
            // The pipeline stopped (an error or Ctrl-C): it reports why.
            return Ok(());
        }
    }
    map.flush().map_err(manifest_err)?;
    if let Ok(mut s) = summary.lock() {
        *s = Some(MapSummary {
            blocks: n,
            merkle_root: hex::encode(range.root().0),
        });
    }
    Ok(())
}

impl Read for ImageReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(b)) => self.current = b,
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        let chunk = self.current.split_to(n);
        buf.get_mut(..n)
            .ok_or_else(|| io::Error::other("read buffer"))?
            .copy_from_slice(&chunk);
        Ok(n)
    }
}

impl SourceReader for ImageReader {
    fn finish(&mut self) -> io::Result<SourceEnd> {
        let s = self
            .summary
            .lock()
            .ok()
            .and_then(|s| s.clone())
            .ok_or_else(|| io::Error::other("the block manifest is incomplete"))?;
        if self.delta.is_none() && s.blocks != self.layout.blocks {
            return Err(io::Error::other(format!(
                "{} blocks read of {}",
                s.blocks, self.layout.blocks
            )));
        }
        let written = self.counts.written.load(Ordering::Relaxed);
        let resumed = self.counts.resumed.load(Ordering::Relaxed);
        let mut notes = match &self.delta {
            None => vec![format!(
                "{} blocks of {BLOCK_SIZE} bytes ({} bytes); {written} written blocks read \
                 through EBS direct, each checked against its SHA-256 checksum; the others \
                 were never written and are zeros",
                s.blocks, self.layout.volume_bytes
            )],
            Some(base) => vec![format!(
                "{} blocks of {BLOCK_SIZE} bytes changed since {base}; {written} read through \
                 EBS direct, each checked against its SHA-256 checksum; the others hold no \
                 data in this snapshot and are zeros",
                s.blocks
            )],
        };
        if resumed > 0 {
            notes.push(format!(
                "resumed: {resumed} of the {written} blocks were read and checked by an \
                 interrupted run and taken from its spool, each checked again against the \
                 SHA-256 recorded then"
            ));
        }
        notes.push(format!(
            "block manifest Merkle root (RFC 6962, SHA-256 leaves): {}",
            s.merkle_root
        ));
        Ok(SourceEnd {
            changed: None,
            notes,
            block_map: Some(BlockMap {
                block_size: BLOCK_SIZE,
                blocks: s.blocks,
                written,
                merkle_root: s.merkle_root,
                changed_since: self.delta.clone(),
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(blocks: &[u64], next: bool) -> Page {
        Page {
            block_size: BLOCK_SIZE as i32,
            volume_gib: 1,
            blocks: blocks.iter().map(|i| (*i, Some(format!("t{i}")))).collect(),
            next: next.then(|| "more".to_owned()),
        }
    }

    /// Walks canned pages: the first is the layout's, the rest are fetched.
    async fn walk(pages: Vec<Page>, end: u64, dense: bool) -> Vec<Result<String, String>> {
        let mut pages: VecDeque<Page> = pages.into();
        // The layout's page comes through Lister::page, which sorts it.
        let mut first = pages.pop_front().expect("a first page");
        first.blocks.sort_by_key(|(i, _)| *i);
        let conf = aws_sdk_ebs::Config::builder()
            .behavior_version(aws_sdk_ebs::config::BehaviorVersion::latest())
            .build();
        let mut w = Walk {
            next: 0,
            end,
            dense,
            last: None,
            page: first.blocks.into(),
            token: first.next,
            lister: Lister {
                ebs: aws_sdk_ebs::Client::from_conf(conf),
                snapshot: "snap-test".into(),
                base: None,
                canned: Some(Arc::new(Mutex::new(pages))),
            },
        };
        let mut out = Vec::new();
        while let Some(slot) = w.step().await {
            let failed = slot.is_err();
            out.push(match slot {
                Ok(Slot::Zero(i)) => Ok(format!("z{i}")),
                Ok(Slot::Fetch(i, _)) => Ok(format!("f{i}")),
                Err(e) => Err(e.to_string()),
            });
            if failed {
                break;
            }
        }
        out
    }

    fn ok(names: &[&str]) -> Vec<Result<String, String>> {
        names.iter().map(|n| Ok((*n).to_owned())).collect()
    }

    #[tokio::test]
    async fn pages_are_walked_in_order_with_zeros_for_the_gaps() {
        let got = walk(vec![page(&[5, 0], true), page(&[7], false)], 10, true).await;
        assert_eq!(
            got,
            ok(&["f0", "z1", "z2", "z3", "z4", "f5", "z6", "f7", "z8", "z9"])
        );
    }

    #[tokio::test]
    async fn a_block_listed_on_two_pages_is_read_once() {
        let got = walk(vec![page(&[2, 3], true), page(&[3, 4], false)], 5, true).await;
        assert_eq!(got, ok(&["z0", "z1", "f2", "f3", "f4"]));
    }

    #[tokio::test]
    async fn a_listing_that_goes_back_across_pages_is_refused() {
        let got = walk(vec![page(&[5], true), page(&[3], false)], 10, true).await;
        let last = got.last().expect("something").clone();
        let err = last.expect_err("refused");
        assert!(err.contains("went back from block 5 to block 3"), "{err}");
    }

    #[tokio::test]
    async fn a_block_beyond_the_volume_is_refused() {
        let got = walk(vec![page(&[1, 12], false)], 10, true).await;
        let err = got.last().expect("something").clone().expect_err("refused");
        assert!(
            err.contains("block 12, beyond the volume's 10 blocks"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_delta_walks_only_the_listed_blocks() {
        let got = walk(vec![page(&[9, 2], true), page(&[11], false)], 20, false).await;
        assert_eq!(got, ok(&["f2", "f9", "f11"]));
    }

    #[test]
    fn a_torn_spool_record_is_cut_and_a_bad_block_is_read_again() {
        let dir = tempfile::tempdir().expect("tempdir");
        let block = vec![7u8; BLOCK_SIZE as usize];
        let digest: [u8; 32] = Sha256::digest(&block).into();
        {
            let s = Spool::open(dir.path()).expect("open");
            let tx = s.writer().expect("writer");
            tx.send((3, Bytes::from(block.clone()), digest))
                .expect("send");
            tx.send((5, Bytes::from(block.clone()), [0; 32]))
                .expect("send");
            drop(tx);
        }
        // The writer flushes when its channel closes; wait for it.
        let journal = dir.path().join("journal");
        for _ in 0..100 {
            if std::fs::metadata(&journal).map_or(0, |m| m.len()) == 80 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        // A crash while appending leaves half a record.
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&journal)
            .expect("journal");
        f.write_all(&[1, 2, 3]).expect("torn");
        drop(f);
        let s = Spool::open(dir.path()).expect("reopen");
        assert_eq!(std::fs::metadata(&journal).expect("journal").len(), 80);
        assert_eq!(s.read(3).map(|b| b.1), Some(digest));
        // Block 5's bytes do not match its record: it is not trusted.
        assert!(s.has(5) && s.read(5).is_none());
        assert!(s.read(4).is_none());
    }
}
