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

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use aws_sdk_ebs::primitives::ByteStream;
use base64::Engine as _;
use bytes::Bytes;
use futures::StreamExt;
use sha2::{Digest as _, Sha256};

use super::{CollectError, Collected, Collector, SourceEnd, SourceReader};
use crate::evidence::case::{AcquireContext, AcquireRequest, acquire};
use crate::evidence::{ArtefactKind, BlockMap, Source};
use crate::ids::CaseId;
use crate::ledger::merkle::{CompactRange, leaf_hash};

/// AWS's EBS direct block size: 512 KiB.
pub const BLOCK_SIZE: u64 = 512 * 1024;
/// Blocks fetched ahead of the one the pipeline needs next.
pub const DEFAULT_WINDOW: usize = 32;
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
}

impl std::fmt::Debug for EbsCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EbsCollector")
            .field("target", &self.target)
            .field("window", &self.window)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EbsError {
    #[error("cannot {op} {resource}: {message}")]
    Api {
        op: &'static str,
        resource: String,
        message: String,
    },
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
}

fn api<E: std::error::Error + 'static>(op: &'static str, resource: &str, e: E) -> EbsError {
    EbsError::Api {
        op,
        resource: resource.to_owned(),
        message: crate::aws::brief(&e),
    }
}

/// The layout of a snapshot, from its first ListSnapshotBlocks page.
#[derive(Debug, Clone)]
struct Layout {
    volume_bytes: u64,
    blocks: u64,
    first_page: Vec<(u64, String)>,
    next_token: Option<String>,
}

impl EbsCollector {
    /// The snapshots to read: the given one, or new ones of the volumes.
    async fn snapshots(
        &self,
        ctx: &AcquireContext,
        case: &CaseId,
    ) -> Result<Vec<(String, Option<String>)>, EbsError> {
        let volumes = match &self.target {
            EbsTarget::Snapshot(s) => return Ok(vec![(s.clone(), None)]),
            EbsTarget::Volume(v) => vec![v.clone()],
            EbsTarget::Instance(i) => self.instance_volumes(i).await?,
        };
        let mut out = Vec::with_capacity(volumes.len());
        for v in volumes {
            let snap = self.snapshot_volume(ctx, case, &v).await?;
            out.push((snap, Some(v)));
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
            .map_err(|e| api("describe", instance, e))?;
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

    /// Creates a snapshot of `volume`, tagged with the case and the reason,
    /// records it, and waits for it to complete.
    async fn snapshot_volume(
        &self,
        ctx: &AcquireContext,
        case: &CaseId,
        volume: &str,
    ) -> Result<String, EbsError> {
        use aws_sdk_ec2::types::{ResourceType, Tag, TagSpecification};
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
            .map_err(|e| api("snapshot", volume, e))?;
        let snapshot = out
            .snapshot_id()
            .map(str::to_owned)
            .ok_or_else(|| EbsError::Api {
                op: "snapshot",
                resource: volume.to_owned(),
                message: "no snapshot id in the answer".into(),
            })?;
        tracing::info!(%volume, %snapshot, "snapshot started");
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
                .map_err(|e| api("describe", snapshot, e))?;
            let s = out.snapshots().first();
            let state = s
                .and_then(|s| s.state())
                .map_or("unknown", |s| s.as_str())
                .to_owned();
            let progress = s.and_then(|s| s.progress()).unwrap_or("?");
            match state.as_str() {
                "completed" => return Ok(()),
                "error" | "recoverable" | "recovering" => {
                    return Err(EbsError::Api {
                        op: "snapshot",
                        resource: snapshot.to_owned(),
                        message: format!("the snapshot is in state {state}"),
                    });
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

    async fn layout(&self, snapshot: &str) -> Result<Layout, EbsError> {
        let out = self
            .ebs
            .list_snapshot_blocks()
            .snapshot_id(snapshot)
            .max_results(10_000)
            .send()
            .await
            .map_err(|e| api("list the blocks of", snapshot, e))?;
        let block_size = out.block_size().unwrap_or(0);
        if i64::from(block_size) != BLOCK_SIZE as i64 {
            return Err(EbsError::BlockSize {
                snapshot: snapshot.to_owned(),
                block_size,
            });
        }
        let gib = u64::try_from(out.volume_size().unwrap_or(0)).unwrap_or(0);
        let volume_bytes = gib << 30;
        Ok(Layout {
            volume_bytes,
            blocks: volume_bytes / BLOCK_SIZE,
            first_page: page_blocks(out.blocks()),
            next_token: out.next_token().map(str::to_owned),
        })
    }

    /// Acquires one snapshot: the image, then its block manifest.
    async fn acquire_snapshot(
        &self,
        ctx: &AcquireContext,
        case: &CaseId,
        snapshot: &str,
        volume: Option<&str>,
    ) -> Result<Vec<crate::evidence::Artefact>, CollectError> {
        let layout = match self.layout(snapshot).await {
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
        let budgets = vec![
            crate::aws::rate::budget(
                &format!("ebs-get:account:{owner}"),
                crate::aws::rate::EBS_GET_BLOCK_PER_SECOND,
            ),
            crate::aws::rate::budget(
                &format!("ebs-get:snapshot:{snapshot}"),
                crate::aws::rate::EBS_GET_BLOCK_PER_SECOND,
            ),
        ];
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
            Fetcher {
                ebs: self.ebs.clone(),
                snapshot: snapshot.to_owned(),
                budgets,
                window: self.window.max(1),
            },
            layout.clone(),
            map_writer,
            summary.clone(),
        );
        let source = Source {
            resource: snapshot.to_owned(),
            region: self.region.clone(),
            account: (owner != "unknown").then_some(owner),
            path: volume.map(str::to_owned),
            host: None,
        };
        let image = acquire(
            ctx,
            AcquireRequest {
                case: case.clone(),
                kind: ArtefactKind::DiskImage,
                source: source.clone(),
                reader: Box::new(reader),
                size_hint: Some(layout.volume_bytes),
                notes: Vec::new(),
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
        let file = std::fs::File::open(map_file.path()).map_err(|source| CollectError::Open {
            path: map_file.path().display().to_string(),
            source,
        })?;
        let manifest = acquire(
            ctx,
            AcquireRequest {
                case: case.clone(),
                kind: ArtefactKind::BlockMap,
                source,
                reader: Box::new(file),
                size_hint: Some(map.blocks * 32),
                notes: vec![format!(
                    "SHA-256 of each {BLOCK_SIZE}-byte block of artefact {}, in order, 32 bytes each; \
                     RFC 6962 Merkle root {} over them",
                    image.id, map.merkle_root
                )],
            },
        )
        .await?;
        Ok(vec![image, manifest])
    }
}

fn page_blocks(blocks: &[aws_sdk_ebs::types::Block]) -> Vec<(u64, String)> {
    blocks
        .iter()
        .filter_map(|b| {
            let i = u64::try_from(b.block_index()?).ok()?;
            Some((i, b.block_token()?.to_owned()))
        })
        .collect()
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
        for (snapshot, volume) in snapshots {
            match self
                .acquire_snapshot(ctx, case, &snapshot, volume.as_deref())
                .await
            {
                Ok(a) => collected.artefacts.extend(a),
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
                .map_err(|e| api("read a block of", &self.snapshot, e))?;
            let expected = out.checksum().unwrap_or_default().to_owned();
            let data = collect_body(out.block_data)
                .await
                .map_err(|e| EbsError::Api {
                    op: "read a block of",
                    resource: self.snapshot.clone(),
                    message: e.to_string(),
                })?;
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

/// The image as a [`SourceReader`]: a task fetches blocks in a window and
/// hands them over in order through a bounded channel.
struct ImageReader {
    rx: tokio::sync::mpsc::Receiver<io::Result<Bytes>>,
    current: Bytes,
    summary: Arc<Mutex<Option<MapSummary>>>,
    layout: Layout,
    written: Arc<std::sync::atomic::AtomicU64>,
}

/// The order in which the image is assembled: a block to fetch, or zeros.
enum Slot {
    Zero,
    Fetch(u64, String),
}

impl ImageReader {
    fn start(
        fetcher: Fetcher,
        layout: Layout,
        map_writer: std::fs::File,
        summary: Arc<Mutex<Option<MapSummary>>>,
    ) -> Self {
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let written = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let task_layout = layout.clone();
        let task_summary = summary.clone();
        let task_written = written.clone();
        tokio::spawn(async move {
            let r = produce(
                fetcher,
                task_layout,
                map_writer,
                &tx,
                task_summary,
                task_written,
            )
            .await;
            if let Err(e) = r {
                let _ = tx.send(Err(io::Error::other(e.to_string()))).await;
            }
        });
        Self {
            rx,
            current: Bytes::new(),
            summary,
            layout,
            written,
        }
    }
}

/// Walks the block indices in order, fetching written blocks (as listed,
/// page by page) and filling the others with zeros.
async fn produce(
    fetcher: Fetcher,
    layout: Layout,
    map_writer: std::fs::File,
    tx: &tokio::sync::mpsc::Sender<io::Result<Bytes>>,
    summary: Arc<Mutex<Option<MapSummary>>>,
    written: Arc<std::sync::atomic::AtomicU64>,
) -> Result<(), EbsError> {
    struct Walk {
        next: u64,
        end: u64,
        page: VecDeque<(u64, String)>,
        token: Option<String>,
        ebs: aws_sdk_ebs::Client,
        snapshot: String,
    }
    let walk = Walk {
        next: 0,
        end: layout.blocks,
        page: layout.first_page.into(),
        token: layout.next_token,
        ebs: fetcher.ebs.clone(),
        snapshot: fetcher.snapshot.clone(),
    };
    let slots = futures::stream::unfold(walk, |mut w| async move {
        if w.next >= w.end {
            return None;
        }
        // Refill the listing when it ran out and more pages exist.
        while w.page.is_empty()
            && let Some(t) = w.token.take()
        {
            match w
                .ebs
                .list_snapshot_blocks()
                .snapshot_id(&w.snapshot)
                .max_results(10_000)
                .next_token(t)
                .send()
                .await
            {
                Ok(out) => {
                    w.page = page_blocks(out.blocks()).into();
                    w.token = out.next_token().map(str::to_owned);
                }
                Err(e) => {
                    let err = api("list the blocks of", &w.snapshot, e);
                    w.next = w.end;
                    return Some((Err(err), w));
                }
            }
        }
        // Listed blocks below the cursor (duplicates) are skipped.
        while w.page.front().is_some_and(|(i, _)| *i < w.next) {
            w.page.pop_front();
        }
        let slot = match w.page.front() {
            Some((i, _)) if *i == w.next => {
                let (i, t) = w.page.pop_front().unwrap_or_default();
                Slot::Fetch(i, t)
            }
            _ => Slot::Zero,
        };
        w.next += 1;
        Some((Ok(slot), w))
    });
    let zero_digest: [u8; 32] = Sha256::digest(ZEROS).into();
    let window = fetcher.window;
    let blocks = slots
        .map(|slot| {
            let f = fetcher.clone();
            let written = written.clone();
            async move {
                match slot? {
                    Slot::Zero => Ok((Bytes::from_static(&ZEROS), zero_digest)),
                    Slot::Fetch(i, t) => {
                        let b = f.fetch(i, t).await?;
                        written.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        Ok(b)
                    }
                }
            }
        })
        .buffered(window);
    let mut blocks = std::pin::pin!(blocks);
    let mut map = io::BufWriter::new(map_writer);
    let mut range = CompactRange::default();
    let mut n = 0u64;
    while let Some(block) = blocks.next().await {
        let (data, digest) = block?;
        map.write_all(&digest).map_err(|e| EbsError::Api {
            op: "write the block manifest of",
            resource: fetcher.snapshot.clone(),
            message: e.to_string(),
        })?;
        range.push(leaf_hash(&digest));
        n += 1;
        if tx.send(Ok(data)).await.is_err() {
            // The pipeline stopped (an error or Ctrl-C): it reports why.
            return Ok(());
        }
    }
    map.flush().map_err(|e| EbsError::Api {
        op: "write the block manifest of",
        resource: fetcher.snapshot.clone(),
        message: e.to_string(),
    })?;
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
        if s.blocks != self.layout.blocks {
            return Err(io::Error::other(format!(
                "{} blocks read of {}",
                s.blocks, self.layout.blocks
            )));
        }
        let written = self.written.load(std::sync::atomic::Ordering::Relaxed);
        Ok(SourceEnd {
            changed: None,
            notes: vec![
                format!(
                    "{} blocks of {BLOCK_SIZE} bytes ({} bytes); {written} written blocks read \
                     through EBS direct, each checked against its SHA-256 checksum; the others \
                     were never written and are zeros",
                    s.blocks, self.layout.volume_bytes
                ),
                format!(
                    "block manifest Merkle root (RFC 6962, SHA-256 leaves): {}",
                    s.merkle_root
                ),
            ],
            block_map: Some(BlockMap {
                block_size: BLOCK_SIZE,
                blocks: s.blocks,
                written,
                merkle_root: s.merkle_root,
            }),
        })
    }
}
