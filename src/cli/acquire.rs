//! `custody acquire file|host|ebs|memory`.

use std::path::PathBuf;

use std::time::Duration;

use clap::Subcommand;

use super::{Env, Outcome};
use crate::collect::ebs::EbsTarget;
use crate::engine::acquire::Acquired;
use crate::engine::request::{
    AcquireRequest, AvmlRequest, EbsRequest, MemoryRequest, StagingRequest, limits,
};
use crate::evidence::ArtefactKind;
use crate::ids::CaseId;

#[derive(Debug, Subcommand)]
pub enum AcquireCommand {
    /// A file, a raw image or a block device.
    File(FileArgs),
    /// Volatile triage of this machine, in order of volatility.
    Host(HostArgs),
    /// EBS volumes through a snapshot and the EBS direct APIs (no helper instance).
    Ebs(EbsArgs),
    /// An EC2 instance's memory, through SSM Run Command (avml on the
    /// instance uploads to presigned URLs of one staging key).
    Memory(MemoryArgs),
}

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
    /// Blocks read ahead of the pipeline (512 KiB each).
    #[arg(long, default_value_t = crate::collect::ebs::DEFAULT_WINDOW as u16, value_parser = clap::value_parser!(u16).range(i64::from(*limits::EBS_WINDOW.start())..=i64::from(*limits::EBS_WINDOW.end())))]
    pub window: u16,
    /// Longest wait for a new snapshot to complete, in seconds.
    #[arg(long, default_value_t = limits::SNAPSHOT_TIMEOUT_SECS, value_name = "SECS")]
    pub snapshot_timeout: u64,
    /// Read only the blocks changed since this earlier snapshot (ListChangedBlocks),
    /// as an incremental `disk_delta` artefact.
    #[arg(long, value_name = "snap-…", conflicts_with = "instance")]
    pub changed_since: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct CaseArg {
    /// Case to add the evidence to; a new id is generated when omitted.
    #[arg(long, value_name = "ID")]
    pub case: Option<CaseId>,
    /// Read each artefact back from the store and check both digests before reporting.
    #[arg(long)]
    pub verify: bool,
}

#[derive(Debug, clap::Args)]
pub struct FileArgs {
    /// File, image or block device to read.
    pub path: PathBuf,
    #[command(flatten)]
    pub case: CaseArg,
    /// What the bytes are.
    #[arg(long, value_enum, default_value = "file")]
    pub kind: ArtefactKind,
}

#[derive(Debug, clap::Args)]
pub struct HostArgs {
    #[command(flatten)]
    pub case: CaseArg,
    /// Also dump this process's readable memory (repeatable).
    #[arg(long = "memory-pid", value_name = "PID")]
    pub memory_pids: Vec<u32>,
    /// Leave /var/log out of the bundle.
    #[arg(long)]
    pub skip_logs: bool,
    /// Root of the file system to triage (a mounted image, for example).
    #[arg(long, default_value = "/", value_name = "DIR")]
    pub root: PathBuf,
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
    fn request(&self) -> EbsRequest {
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
        }
    }
}

impl AcquireCommand {
    /// The engine's request and the case flags of this command.
    fn request(&self) -> (AcquireRequest, &CaseArg) {
        match self {
            Self::File(a) => (
                AcquireRequest::File {
                    path: a.path.clone(),
                    kind: a.kind,
                },
                &a.case,
            ),
            Self::Host(a) => (
                AcquireRequest::Host {
                    root: a.root.clone(),
                    memory_pids: a.memory_pids.clone(),
                    skip_logs: a.skip_logs,
                },
                &a.case,
            ),
            Self::Ebs(a) => (AcquireRequest::Ebs(a.request()), &a.case),
            Self::Memory(a) => (
                AcquireRequest::Memory(MemoryRequest {
                    instance: a.instance.clone(),
                    staging: a.memory.request(),
                    timeout: Duration::from_secs(a.timeout),
                    part_mib: a.part_mib,
                }),
                &a.case,
            ),
        }
    }
}

pub async fn run(env: &Env, cmd: AcquireCommand) -> anyhow::Result<Outcome> {
    let (req, case) = cmd.request();
    let report = crate::engine::acquire::acquire(env, &req, case.case.clone(), case.verify).await?;
    env.print(&report, || human(&report))?;
    if !report.failures.is_empty() {
        anyhow::bail!(
            "{} of the requested artefacts could not be acquired: {}",
            report.failures.len(),
            report.failures.join("; ")
        );
    }
    Ok(if report.verified_ok() {
        Outcome::Ok
    } else {
        Outcome::VerificationFailed
    })
}

fn human(r: &Acquired) -> String {
    let mut s = format!("case {} in {}\n", r.case, r.store);
    for a in &r.artefacts {
        s.push_str(&super::cases::artefact_line(a));
    }
    for c in r.verified.iter().flatten() {
        if c.ok {
            s.push_str(&format!(
                "verified {}: read back from the store, both digests match\n",
                c.artefact
            ));
        } else {
            s.push_str(&format!(
                "FAILED   {}: {}\n",
                c.artefact,
                c.problems.join("; ")
            ));
        }
    }
    s
}
