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
//! artefact is the exact raw image of the volume. The window counts requests
//! only: a run of zero blocks travels with the fetch after it, so the next
//! requests are already out while the pipeline hashes through the run. Of
//! the blocks requested, only the next few have their bodies read; buffers
//! are reused ([`crate::evidence::pool`]), so memory is bounded by those
//! few, whatever the window and the volume size.
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
//! Resume: nothing is written twice. When the acquisition is cut (a crash,
//! Ctrl-C, a lost connection), running the same command again takes back
//! what the store already holds: a local store keeps the partial image and
//! gives back its frames that still hash as journalled
//! ([`crate::store::local_resume`]); they are decoded and used as the
//! image's first blocks (a block the listing says was never written must
//! come back as zeros, or the stored prefix is dropped from there), and only
//! the rest is fetched. S3 and Azure cannot give back the parts of an
//! unfinished upload: there every block is read again, and only the parts
//! the store lacks are sent ([`crate::store::journal`]). A volume's
//! snapshot is reused the same way (a note under the resume directory).

use std::collections::VecDeque;
use std::io::{self, Read, Write};
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
/// Block requests ahead of the one the pipeline needs next (zero blocks
/// between them take no place in the window).
pub const DEFAULT_WINDOW: usize = 8;
/// Of those, the blocks whose bodies are read ahead: the others wait with
/// their answers' headers in, their bytes in the kernel's socket buffers
/// rather than in custody's memory, so a deep window hides the service's
/// latency without holding 32 MiB of blocks.
const BODY_WINDOW: u64 = 2;
/// Fetches of one block whose data does not match its checksum.
const CHECKSUM_TRIES: u32 = 3;

static ZEROS: [u8; BLOCK_SIZE as usize] = [0; BLOCK_SIZE as usize];

/// What to acquire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EbsTarget {
    Snapshot(String),
    /// Snapshots another service kept of one instance (GuardDuty Malware
    /// Protection's), read as they are, one image each.
    Snapshots(Vec<String>),
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
    /// Where the snapshot custody made of a volume is noted until it has
    /// been read, so an interrupted acquisition resumes on it; `None` notes
    /// nothing.
    pub resume_dir: Option<PathBuf>,
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
            EbsTarget::Snapshots(list) => {
                return Ok(list
                    .iter()
                    .map(|s| ToRead {
                        snapshot: s.clone(),
                        volume: None,
                        notes: self.made_by.iter().cloned().collect(),
                    })
                    .collect());
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
                    pool: crate::evidence::pool::BufPool::new(
                        BLOCK_SIZE as usize,
                        BODY_WINDOW as usize + 6,
                    ),
                },
                lister,
                layout: layout.clone(),
                prefix: None,
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
            Some(_) => DELTA_RECORD as u64,
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
        self.resume_dir
            .as_ref()
            .map(|d| d.join(format!("vol-{}.json", note_key(&[case.as_str(), volume]))))
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
            EbsTarget::Snapshots(s) => format!("ebs snapshots {}", s.join(", ")),
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
    /// Block buffers, handed round.
    pool: crate::evidence::pool::BufPool,
}

/// One block of the image, in order: its bytes and SHA-256.
type Block = (Bytes, [u8; 32]);

impl Fetcher {
    /// Block `index`, checked against the checksum the API returns; its
    /// body is read once `gate` lets it.
    async fn fetch(&self, index: u64, token: String, mut gate: Gate) -> Result<Block, EbsError> {
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
            gate.wait().await;
            let data = collect_body(out.block_data, &self.pool)
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

/// A block's body, copied chunk by chunk into one buffer of the block's
/// size: collecting it whole and then joining the chunks would hold it twice.
/// Lets a block's body be read once the pipeline is within
/// [`BODY_WINDOW`] blocks of it.
struct Gate {
    /// Blocks (of the windowed stream) handed to the pipeline so far.
    consumed: tokio::sync::watch::Receiver<u64>,
    /// This block's place in that stream.
    seq: u64,
}

impl Gate {
    async fn wait(&mut self) {
        let seq = self.seq;
        // The consumer gone (an error, Ctrl-C): nothing to wait for.
        let _ = self
            .consumed
            .wait_for(|c| seq < c.saturating_add(BODY_WINDOW))
            .await;
    }
}

async fn collect_body(
    mut body: ByteStream,
    pool: &crate::evidence::pool::BufPool,
) -> Result<Bytes, io::Error> {
    let mut buf = pool.take();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(io::Error::other)?;
        // A body longer than a block is refused by the caller; stop holding it.
        if (buf.len() + chunk.len()) as u64 > BLOCK_SIZE {
            return Err(io::Error::other(format!(
                "a block body longer than {BLOCK_SIZE} bytes"
            )));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(pool.freeze(buf))
}

/// What the block manifest came to.
#[derive(Debug, Clone)]
struct MapSummary {
    blocks: u64,
    merkle_root: String,
}

/// Bytes of one delta manifest record: the block index (big-endian) and its SHA-256.
const DELTA_RECORD: usize = 40;

/// The file name of a snapshot note for these parts.
fn note_key(parts: &[&str]) -> String {
    let digest = Sha256::digest(parts.join("\n").as_bytes());
    hex::encode(digest.get(..16).unwrap_or_default())
}

/// Counts kept while the image is read.
#[derive(Default)]
struct Counts {
    /// Blocks with data (read through EBS direct or taken back from the store).
    written: AtomicU64,
    /// Of those, blocks taken back from what an interrupted run stored.
    resumed: AtomicU64,
}

/// The image as a [`SourceReader`]: a task fetches blocks in a window and
/// hands them over in order through a bounded channel. The task starts at
/// the first read, once a resumed prefix has been offered.
struct ImageReader {
    rx: tokio::sync::mpsc::Receiver<io::Result<Bytes>>,
    /// The task not yet started: its plan, sender and runtime.
    pending: Option<(
        Plan,
        tokio::sync::mpsc::Sender<io::Result<Bytes>>,
        tokio::runtime::Handle,
    )>,
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
    /// The image's first bytes as an interrupted run stored them.
    prefix: Option<Box<dyn Read + Send>>,
    map_writer: std::fs::File,
}

impl ImageReader {
    fn start(plan: Plan, summary: Arc<Mutex<Option<MapSummary>>>) -> Self {
        let (tx, rx) = tokio::sync::mpsc::channel(2);
        let layout = plan.layout.clone();
        let delta = plan.lister.base.clone();
        Self {
            rx,
            pending: Some((plan, tx, tokio::runtime::Handle::current())),
            current: Bytes::new(),
            summary,
            layout,
            delta,
            counts: Arc::new(Counts::default()),
        }
    }

    fn launch(&mut self) {
        let Some((plan, tx, runtime)) = self.pending.take() else {
            return;
        };
        let summary = self.summary.clone();
        let counts = self.counts.clone();
        runtime.spawn(async move {
            if let Err(e) = produce(plan, &tx, summary, counts).await {
                let _ = tx.send(Err(io::Error::other(e.to_string()))).await;
            }
        });
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

/// One request of the window: a block to fetch and the zero blocks before
/// it, as runs of indices (a delta's zeros need not be adjacent); or zeros
/// alone, at the end of the image or when a run list grows long.
struct Item {
    zeros: Vec<std::ops::Range<u64>>,
    fetch: Option<(u64, String)>,
}

/// Zero runs one item holds at most: the walk of a delta with many
/// scattered zero blocks and no fetch among them is cut into several items
/// rather than held whole.
const MAX_ZERO_RUNS: usize = 4096;

/// The next item of the walk, starting with `carry` when set.
async fn next_item(walk: &mut Walk, carry: &mut Option<Slot>) -> Option<Result<Item, EbsError>> {
    let mut zeros: Vec<std::ops::Range<u64>> = Vec::new();
    loop {
        let slot = match carry.take() {
            Some(s) => s,
            None => match walk.step().await {
                Some(Ok(s)) => s,
                Some(Err(e)) => return Some(Err(e)),
                None => break,
            },
        };
        match slot {
            Slot::Fetch(i, t) => {
                return Some(Ok(Item {
                    zeros,
                    fetch: Some((i, t)),
                }));
            }
            Slot::Zero(i) => {
                let runs = zeros.len();
                match zeros.last_mut() {
                    Some(run) if run.end == i => run.end += 1,
                    _ if runs >= MAX_ZERO_RUNS => {
                        *carry = Some(Slot::Zero(i));
                        return Some(Ok(Item { zeros, fetch: None }));
                    }
                    _ => zeros.push(i..i + 1),
                }
            }
        }
    }
    (!zeros.is_empty()).then_some(Ok(Item { zeros, fetch: None }))
}

/// Where the image's blocks go, in order: the block manifest, its Merkle
/// range, and the pipeline.
struct Sink<'a> {
    map: io::BufWriter<std::fs::File>,
    range: CompactRange,
    n: u64,
    delta: bool,
    tx: &'a tokio::sync::mpsc::Sender<io::Result<Bytes>>,
    snapshot: &'a str,
}

impl Sink<'_> {
    /// Hands one block on; `Ok(false)` when the pipeline stopped (an error
    /// or Ctrl-C: it reports why).
    async fn put(&mut self, index: u64, data: Bytes, digest: &[u8; 32]) -> Result<bool, EbsError> {
        let manifest_err = |e: io::Error| {
            ApiError::other("write the block manifest of", self.snapshot, e.to_string())
        };
        if self.delta {
            let mut rec = [0u8; DELTA_RECORD];
            let (i, d) = rec.split_at_mut(8);
            i.copy_from_slice(&index.to_be_bytes());
            d.copy_from_slice(digest);
            self.map.write_all(&rec).map_err(manifest_err)?;
            self.range.push(leaf_hash(&rec));
        } else {
            self.map.write_all(digest).map_err(manifest_err)?;
            self.range.push(leaf_hash(digest));
        }
        self.n += 1;
        Ok(self.tx.send(Ok(data)).await.is_ok())
    }
}

/// Decodes a stored prefix into whole blocks with their SHA-256, off the
/// runtime; the channel ends where the prefix does.
fn prefix_blocks(
    mut prefix: Box<dyn Read + Send>,
    pool: crate::evidence::pool::BufPool,
) -> tokio::sync::mpsc::Receiver<Block> {
    let (tx, rx) = tokio::sync::mpsc::channel(2);
    std::thread::spawn(move || {
        loop {
            let mut buf = pool.take();
            buf.resize(BLOCK_SIZE as usize, 0);
            if let Err(e) = prefix.read_exact(&mut buf) {
                // The end of the prefix, or of what can be decoded of it.
                if e.kind() != io::ErrorKind::UnexpectedEof {
                    tracing::debug!(error = %e, "the stored prefix ends here");
                }
                return;
            }
            let digest: [u8; 32] = Sha256::digest(&buf).into();
            if tx.blocking_send((pool.freeze(buf), digest)).is_err() {
                return;
            }
        }
    });
    rx
}

/// Fetches the listed blocks in a window and hands them to the pipeline in
/// order, writing the block manifest; the blocks a resumed prefix holds
/// come from it instead.
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
        prefix,
        map_writer,
    } = plan;
    let delta = lister.base.is_some();
    let snapshot = lister.snapshot.clone();
    let mut walk = Walk {
        next: 0,
        end: layout.blocks,
        dense: !delta,
        last: None,
        page: layout.first_page.into(),
        token: layout.next_token,
        lister,
    };
    let mut sink = Sink {
        map: io::BufWriter::new(map_writer),
        range: CompactRange::default(),
        n: 0,
        delta,
        tx,
        snapshot: &snapshot,
    };
    let zero_digest: [u8; 32] = Sha256::digest(ZEROS).into();
    // The slot the prefix ran out at, fetched first.
    let mut first = None;
    if let Some(prefix) = prefix {
        let mut blocks = prefix_blocks(prefix, fetcher.pool.clone());
        while let Some(slot) = walk.step().await {
            let slot = slot?;
            let Some((data, digest)) = blocks.recv().await else {
                first = Some(slot);
                break;
            };
            let (index, fetch) = match &slot {
                Slot::Zero(i) => (*i, false),
                Slot::Fetch(i, _) => (*i, true),
            };
            if !fetch && digest != zero_digest {
                // Not this image: the store compares what follows and
                // rewrites it.
                tracing::warn!(%snapshot, index, "the stored prefix holds data where the snapshot has none; reading the snapshot from here");
                first = Some(slot);
                break;
            }
            if fetch {
                counts.written.fetch_add(1, Ordering::Relaxed);
                counts.resumed.fetch_add(1, Ordering::Relaxed);
            }
            if !sink.put(index, data, &digest).await? {
                return Ok(());
            }
        }
    }
    // Zero blocks ride with the fetch after them, so the window counts
    // requests only: a run of never-written blocks never leaves the service
    // idle while the pipeline hashes through it.
    let items = futures::stream::unfold(
        (walk, first, false),
        |(mut w, mut carry, ended)| async move {
            if ended {
                return None;
            }
            let item = next_item(&mut w, &mut carry).await?;
            let ended = item.is_err();
            Some((item, (w, carry, ended)))
        },
    );
    let window = fetcher.window;
    let (consumed_tx, consumed) = tokio::sync::watch::channel(0u64);
    let mut seq = 0u64;
    let blocks = items
        .map(|item| {
            let f = fetcher.clone();
            let counts = counts.clone();
            let gate = Gate {
                consumed: consumed.clone(),
                seq,
            };
            seq += 1;
            async move {
                let Item { zeros, fetch } = item?;
                let block = match fetch {
                    None => None,
                    Some((i, t)) => {
                        counts.written.fetch_add(1, Ordering::Relaxed);
                        let (data, digest) = f.fetch(i, t, gate).await?;
                        Some((i, data, digest))
                    }
                };
                Ok::<_, EbsError>((zeros, block))
            }
        })
        .buffered(window);
    let mut blocks = std::pin::pin!(blocks);
    let mut handed = 0u64;
    while let Some(item) = blocks.next().await {
        let (zeros, block) = item?;
        for i in zeros.into_iter().flatten() {
            if !sink
                .put(i, Bytes::from_static(&ZEROS), &zero_digest)
                .await?
            {
                return Ok(());
            }
        }
        if let Some((index, data, digest)) = block
            && !sink.put(index, data, &digest).await?
        {
            return Ok(());
        }
        handed += 1;
        consumed_tx.send_replace(handed);
    }
    sink.map
        .flush()
        .map_err(|e| ApiError::other("write the block manifest of", &snapshot, e.to_string()))?;
    if let Ok(mut s) = summary.lock() {
        *s = Some(MapSummary {
            blocks: sink.n,
            merkle_root: hex::encode(sink.range.root().0),
        });
    }
    Ok(())
}

impl Read for ImageReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.launch();
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
    fn resumes_from_store(&self) -> bool {
        true
    }

    fn resume_from(&mut self, prefix: Box<dyn Read + Send>) {
        if let Some((plan, _, _)) = &mut self.pending {
            plan.prefix = Some(prefix);
        }
    }

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
                 interrupted run and taken back from what it stored, in frames that hash as \
                 its journal recorded"
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

    /// A walk over canned pages: the first is the layout's, the rest are fetched.
    fn walker(pages: Vec<Page>, end: u64, dense: bool) -> Walk {
        let mut pages: VecDeque<Page> = pages.into();
        // The layout's page comes through Lister::page, which sorts it.
        let mut first = pages.pop_front().expect("a first page");
        first.blocks.sort_by_key(|(i, _)| *i);
        let conf = aws_sdk_ebs::Config::builder()
            .behavior_version(aws_sdk_ebs::config::BehaviorVersion::latest())
            .build();
        Walk {
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
        }
    }

    /// Walks canned pages slot by slot.
    async fn walk(pages: Vec<Page>, end: u64, dense: bool) -> Vec<Result<String, String>> {
        let mut w = walker(pages, end, dense);
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

    /// Walks canned pages item by item: each item's zero runs, then its fetch.
    /// Runs as (start, end) pairs.
    async fn items(w: &mut Walk) -> Vec<(Vec<(u64, u64)>, Option<u64>)> {
        let mut carry = None;
        let mut out = Vec::new();
        while let Some(item) = next_item(w, &mut carry).await {
            let item = item.expect("item");
            let runs = item.zeros.iter().map(|r| (r.start, r.end)).collect();
            out.push((runs, item.fetch.map(|(i, _)| i)));
        }
        out
    }

    #[tokio::test]
    async fn zero_blocks_ride_with_the_fetch_after_them() {
        let mut w = walker(vec![page(&[5, 0], true), page(&[7], false)], 10, true);
        assert_eq!(
            items(&mut w).await,
            vec![
                (vec![], Some(0)),
                (vec![(1, 5)], Some(5)),
                (vec![(6, 7)], Some(7)),
                (vec![(8, 10)], None),
            ]
        );
        // A volume of a million blocks with one written is two items.
        let mut w = walker(vec![page(&[999_999], false)], 1_000_000, true);
        assert_eq!(
            items(&mut w).await,
            vec![(vec![(0, 999_999)], Some(999_999))]
        );
    }

    #[tokio::test]
    async fn scattered_zero_blocks_of_a_delta_are_cut_into_bounded_items() {
        // A delta listing every other block, none with data, then one block.
        let n = MAX_ZERO_RUNS as u64 + 10;
        let mut listed = Page {
            blocks: (0..n).map(|k| (2 * k, None)).collect(),
            ..page(&[], false)
        };
        listed.blocks.push((2 * n, Some("t".into())));
        let got = items(&mut walker(vec![listed], 4 * n, false)).await;
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].0.len(), MAX_ZERO_RUNS);
        assert_eq!(got[0].1, None);
        assert_eq!(
            got[1].0.first(),
            Some(&(2 * MAX_ZERO_RUNS as u64, 2 * MAX_ZERO_RUNS as u64 + 1))
        );
        assert_eq!(got[1].0.len(), 10);
        assert_eq!(got[1].1, Some(2 * n));
        let zeros: Vec<u64> = got
            .iter()
            .flat_map(|(z, _)| z.iter().flat_map(|&(a, b)| a..b))
            .collect();
        assert_eq!(zeros, (0..n).map(|k| 2 * k).collect::<Vec<_>>());
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
}

#[cfg(test)]
mod resume_tests {
    use super::*;

    /// A reader of an image of `blocks` blocks whose listing names only
    /// block 0, with no service behind it: a block that is fetched fails.
    fn reader(blocks: u64, map: &tempfile::NamedTempFile) -> ImageReader {
        let conf = aws_sdk_ebs::Config::builder()
            .behavior_version(aws_sdk_ebs::config::BehaviorVersion::latest())
            .build();
        let ebs = aws_sdk_ebs::Client::from_conf(conf);
        ImageReader::start(
            Plan {
                fetcher: Fetcher {
                    ebs: ebs.clone(),
                    snapshot: "snap-test".into(),
                    budgets: Vec::new(),
                    window: 4,
                    pool: crate::evidence::pool::BufPool::new(BLOCK_SIZE as usize, 4),
                },
                lister: Lister {
                    ebs,
                    snapshot: "snap-test".into(),
                    base: None,
                    canned: Some(Arc::new(Mutex::new(VecDeque::new()))),
                },
                layout: Layout {
                    volume_bytes: blocks * BLOCK_SIZE,
                    blocks,
                    first_page: vec![(0, Some("t0".into()))],
                    next_token: None,
                },
                prefix: None,
                map_writer: map.reopen().expect("reopen"),
            },
            Arc::new(Mutex::new(None)),
        )
    }

    /// An image of 4 blocks, read with `prefix` offered as what an
    /// interrupted run stored.
    async fn read_with_prefix(prefix: Vec<u8>) -> (Vec<u8>, SourceEnd, Vec<u8>) {
        let map = tempfile::NamedTempFile::new().expect("map");
        let mut reader = reader(4, &map);
        reader.resume_from(Box::new(io::Cursor::new(prefix)));
        let (image, end) = tokio::task::spawn_blocking(move || {
            let mut image = Vec::new();
            reader.read_to_end(&mut image).expect("read");
            (image, reader.finish().expect("finish"))
        })
        .await
        .expect("join");
        (image, end, std::fs::read(map.path()).expect("map"))
    }

    #[tokio::test]
    async fn a_stored_prefix_gives_the_first_blocks_without_reading_them() {
        let block: Vec<u8> = (0..BLOCK_SIZE).map(|i| (i % 251) as u8).collect();
        // Block 0 and the zeros of block 1: all an interrupted run stored.
        let mut prefix = block.clone();
        prefix.extend_from_slice(&ZEROS);
        let (image, end, map) = read_with_prefix(prefix).await;
        let mut expected = block.clone();
        expected.extend(std::iter::repeat_n(0u8, 3 * BLOCK_SIZE as usize));
        assert!(
            image == expected,
            "the image is the stored block, then zeros"
        );
        assert!(
            end.notes
                .iter()
                .any(|n| n.starts_with("resumed: 1 of the 1 blocks")),
            "{:?}",
            end.notes
        );
        let first: [u8; 32] = Sha256::digest(&block).into();
        assert_eq!(
            map.get(..32),
            Some(&first[..]),
            "the manifest has its digest"
        );
        assert_eq!(end.block_map.map(|m| m.blocks), Some(4));
    }

    #[tokio::test]
    async fn a_stored_prefix_with_data_where_the_snapshot_has_none_is_dropped_there() {
        let block = vec![5u8; BLOCK_SIZE as usize];
        // Block 1 is never written in the snapshot, but the prefix holds data.
        let mut prefix = block.clone();
        prefix.extend_from_slice(&block);
        let (image, end, _) = read_with_prefix(prefix).await;
        let mut expected = block.clone();
        expected.extend(std::iter::repeat_n(0u8, 3 * BLOCK_SIZE as usize));
        assert!(image == expected, "block 1 comes from the snapshot (zeros)");
        assert!(end.notes.iter().any(|n| n.starts_with("resumed: 1 of")));
    }

    #[tokio::test]
    async fn a_short_prefix_ends_at_its_last_whole_block() {
        // Half a block: nothing can be taken, so block 0 is fetched, and
        // with no endpoint that read fails: the prefix is not used as data.
        let map = tempfile::NamedTempFile::new().expect("map");
        let mut reader = reader(1, &map);
        reader.resume_from(Box::new(io::Cursor::new(vec![1u8; 1000])));
        let r = tokio::task::spawn_blocking(move || {
            let mut image = Vec::new();
            reader.read_to_end(&mut image)
        })
        .await
        .expect("join");
        assert!(r.is_err(), "block 0 had to be fetched");
    }
}
