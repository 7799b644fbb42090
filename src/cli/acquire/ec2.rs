//! The flags of `acquire ebs` and `acquire memory` (and the memory options
//! `respond` shares) into the engine's EC2 requests.

use std::time::Duration;

use super::CaseArg;
use crate::collect::ebs::EbsTarget;
use crate::engine::request::{AvmlRequest, EbsRequest, MemoryRequest, StagingRequest, limits};

/// Where an instance's memory goes and which avml takes it.
#[derive(Debug, Clone, clap::Args)]
pub struct MemoryOptions {
    /// Where the instance uploads the raw image (one new key under it).
    /// Default: the store, when it is in S3.
    #[arg(long, value_name = "s3://BUCKET/PREFIX")]
    pub staging: Option<String>,
    /// An avml build for the instance to fetch (through a presigned URL),
    /// instead of the avml on its PATH.
    #[arg(long, value_name = "s3://BUCKET/KEY", requires = "avml_sha256")]
    pub avml: Option<String>,
    /// SHA-256 of that build (hex), checked on the instance before it runs.
    #[arg(long, value_name = "HEX", requires = "avml")]
    pub avml_sha256: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct MemoryArgs {
    /// The instance; it must be managed by SSM and online.
    #[arg(long, value_name = "i-…")]
    pub instance: String,
    #[command(flatten)]
    pub case: CaseArg,
    #[command(flatten)]
    pub memory: MemoryOptions,
    /// Longest wait for the command to finish, in seconds.
    #[arg(long, default_value_t = crate::collect::memory::DEFAULT_TIMEOUT.as_secs(), value_name = "SECS", value_parser = clap::value_parser!(u64).range(limits::MEMORY_TIMEOUT_SECS))]
    pub timeout: u64,
    /// MiB per part, each held in the instance's RAM while it uploads.
    /// Default: 64, more on large instances so the command stays small.
    #[arg(long, value_name = "MIB", value_parser = clap::value_parser!(u64).range(limits::MEMORY_PART_MIB))]
    pub part_mib: Option<u64>,
}

#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["snapshot", "volume", "instance"])))]
pub struct EbsArgs {
    /// Read this existing snapshot.
    #[arg(long, value_name = "snap-…")]
    pub snapshot: Option<String>,
    /// Snapshot this volume (tagged with the case and the reason), then read it.
    #[arg(long, value_name = "vol-…")]
    pub volume: Option<String>,
    /// Snapshot every EBS volume of this instance, then read each.
    #[arg(long, value_name = "i-…")]
    pub instance: Option<String>,
    #[command(flatten)]
    pub case: CaseArg,
    /// Blocks requested ahead of the pipeline (512 KiB each); raise it where
    /// the service's latency needs it (each costs up to about 1 MiB).
    #[arg(long, default_value_t = crate::collect::ebs::DEFAULT_WINDOW as u16, value_parser = clap::value_parser!(u16).range(i64::from(*limits::EBS_WINDOW.start())..=i64::from(*limits::EBS_WINDOW.end())))]
    pub window: u16,
    /// Longest wait for a new snapshot to complete, in seconds.
    #[arg(long, default_value_t = limits::SNAPSHOT_TIMEOUT_SECS, value_name = "SECS")]
    pub snapshot_timeout: u64,
    /// Read only the blocks changed since this earlier snapshot (ListChangedBlocks),
    /// as an incremental `disk_delta` artefact.
    #[arg(long, value_name = "snap-…", conflicts_with = "instance")]
    pub changed_since: Option<String>,
    #[cfg(feature = "timeline")]
    #[command(flatten)]
    pub process: super::ProcessFlag,
}

impl MemoryOptions {
    pub fn request(&self) -> StagingRequest {
        StagingRequest {
            staging: self.staging.clone(),
            avml: self
                .avml
                .clone()
                .zip(self.avml_sha256.clone())
                .map(|(url, sha256)| AvmlRequest { url, sha256 }),
        }
    }
}

impl EbsArgs {
    /// The engine's request of these flags (validated by the engine).
    pub fn request(&self) -> EbsRequest {
        let target = match (&self.snapshot, &self.volume, &self.instance) {
            (Some(s), _, _) => EbsTarget::Snapshot(s.clone()),
            (_, Some(v), _) => EbsTarget::Volume(v.clone()),
            (_, _, Some(i)) => EbsTarget::Instance(i.clone()),
            // clap requires one of the three; an empty id is refused by validation.
            _ => EbsTarget::Snapshot(String::new()),
        };
        EbsRequest {
            target,
            window: self.window,
            snapshot_timeout: Duration::from_secs(self.snapshot_timeout),
            changed_since: self.changed_since.clone(),
            made_by: None,
        }
    }
}

impl MemoryArgs {
    /// The engine's request of these flags (validated by the engine).
    pub fn request(&self) -> MemoryRequest {
        MemoryRequest {
            instance: self.instance.clone(),
            staging: self.memory.request(),
            timeout: Duration::from_secs(self.timeout),
            part_mib: self.part_mib,
        }
    }
}
