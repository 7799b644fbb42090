//! `custody acquire file|host|ebs|memory`.

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;

use super::{Env, Outcome};
use crate::collect::file::FileCollector;
use crate::collect::host::HostCollector;
use crate::collect::{Collected, Collector};
use crate::evidence::case::{ArtefactCheck, check_artefact};
use crate::evidence::{Artefact, ArtefactKind};
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
    #[arg(long, default_value_t = crate::collect::memory::DEFAULT_TIMEOUT.as_secs(), value_name = "SECS", value_parser = clap::value_parser!(u64).range(30..=172_800))]
    pub timeout: u64,
    /// MiB per part, each held in the instance's RAM while it uploads.
    /// Default: 64, more on large instances so the command stays small.
    #[arg(long, value_name = "MIB", value_parser = clap::value_parser!(u64).range(5..=5120))]
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
    #[arg(long, default_value_t = crate::collect::ebs::DEFAULT_WINDOW as u16, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub window: u16,
    /// Longest wait for a new snapshot to complete, in seconds.
    #[arg(long, default_value_t = 3600, value_name = "SECS")]
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

#[derive(Debug, serde::Serialize)]
struct Report<'a> {
    case: &'a CaseId,
    store: String,
    artefacts: &'a [Artefact],
    failures: &'a [String],
    /// Read-back checks, with `--verify`.
    #[serde(skip_serializing_if = "Option::is_none")]
    verified: Option<Vec<ArtefactCheck>>,
}

pub async fn run(env: &Env, cmd: AcquireCommand) -> anyhow::Result<Outcome> {
    let (case_arg, collector): (&CaseArg, Box<dyn Collector>) = match &cmd {
        AcquireCommand::Ebs(a) => (&a.case, Box::new(ebs_collector(env, a).await)),
        AcquireCommand::Memory(a) => (&a.case, Box::new(memory_collector(env, a).await?)),
        AcquireCommand::File(a) => (
            &a.case,
            Box::new(FileCollector {
                path: a.path.clone(),
                kind: a.kind,
                log_format: None,
            }),
        ),
        AcquireCommand::Host(a) => (
            &a.case,
            Box::new(HostCollector {
                root: a.root.clone(),
                memory_pids: a.memory_pids.clone(),
                skip_logs: a.skip_logs,
            }),
        ),
    };
    let case = case_arg
        .case
        .clone()
        .unwrap_or_else(|| CaseId::generate(env.clock.now()));
    let ctx = env.acquire_context().await?;
    tracing::info!(%case, what = %collector.describe(), store = %ctx.store.location(), "acquiring");
    let Collected {
        artefacts,
        failures,
    } = collector
        .collect(&ctx, &case)
        .await
        .with_context(|| format!("{} into case {case} failed", collector.describe()))?;
    let verified = if case_arg.verify {
        let mut checks = Vec::with_capacity(artefacts.len());
        for a in &artefacts {
            checks.push(check_artefact(ctx.store.as_ref(), a).await);
        }
        Some(checks)
    } else {
        None
    };
    let report = Report {
        case: &case,
        store: ctx.store.location(),
        artefacts: &artefacts,
        failures: &failures,
        verified,
    };
    env.print(&report, || human(&report))?;
    if !failures.is_empty() {
        anyhow::bail!(
            "{} of the requested artefacts could not be acquired: {}",
            failures.len(),
            failures.join("; ")
        );
    }
    let all_ok = report.verified.iter().flatten().all(|c| c.ok);
    Ok(if all_ok {
        Outcome::Ok
    } else {
        Outcome::VerificationFailed
    })
}

pub(crate) async fn ebs_collector(env: &Env, a: &EbsArgs) -> crate::collect::ebs::EbsCollector {
    use crate::collect::ebs::{EbsCollector, EbsTarget};
    let conf = crate::aws::sdk_config(&crate::aws::AwsOptions {
        endpoint: env.endpoint_url.clone(),
        max_attempts: env.config.s3.max_attempts,
        ..Default::default()
    })
    .await;
    let target = match (&a.snapshot, &a.volume, &a.instance) {
        (Some(s), _, _) => EbsTarget::Snapshot(s.clone()),
        (_, Some(v), _) => EbsTarget::Volume(v.clone()),
        (_, _, Some(i)) => EbsTarget::Instance(i.clone()),
        // clap requires one of the three.
        _ => EbsTarget::Snapshot(String::new()),
    };
    EbsCollector {
        ebs: aws_sdk_ebs::Client::new(&conf),
        ec2: aws_sdk_ec2::Client::new(&conf),
        target,
        reason: env.reason.clone(),
        window: usize::from(a.window),
        snapshot_timeout: std::time::Duration::from_secs(a.snapshot_timeout),
        region: conf.region().map(|r| r.to_string()),
        changed_since: a.changed_since.clone(),
        spool_dir: Some(env.config.home.join("spool")),
    }
}

pub(crate) async fn memory_collector(
    env: &Env,
    a: &MemoryArgs,
) -> anyhow::Result<crate::collect::memory::MemoryCollector> {
    use crate::collect::memory::{AvmlTool, MemoryCollector, Staging};
    let staging = match (&a.memory.staging, env.config.store.starts_with("s3://")) {
        (Some(s), _) => Staging::parse(s)?,
        (None, true) => Staging::parse(&env.config.store)?,
        (None, false) => anyhow::bail!(
            "the store is not in S3: give --staging s3://BUCKET/PREFIX for the instance to upload to"
        ),
    };
    let avml = match (&a.memory.avml, &a.memory.avml_sha256) {
        (Some(url), Some(sha)) => {
            let loc = Staging::parse(url)?;
            anyhow::ensure!(
                !loc.prefix.is_empty(),
                "--avml names an object: s3://BUCKET/KEY"
            );
            anyhow::ensure!(
                sha.len() == 64 && sha.bytes().all(|b| b.is_ascii_hexdigit()),
                "--avml-sha256 is 64 hex digits"
            );
            Some(AvmlTool {
                bucket: loc.bucket,
                key: loc.prefix,
                sha256: sha.to_lowercase(),
            })
        }
        _ => None,
    };
    let conf = crate::aws::sdk_config(&crate::aws::AwsOptions {
        endpoint: env.endpoint_url.clone(),
        max_attempts: env.config.s3.max_attempts,
        ..Default::default()
    })
    .await;
    // No checksum in presigned URLs: the host's curl could not match one.
    let mut s3 = aws_sdk_s3::config::Builder::from(&conf)
        .request_checksum_calculation(aws_sdk_s3::config::RequestChecksumCalculation::WhenRequired);
    if env.endpoint_url.is_some() {
        // Emulators and most S3-compatible stores serve buckets by path.
        s3 = s3.force_path_style(true);
    }
    Ok(MemoryCollector {
        ssm: aws_sdk_ssm::Client::new(&conf),
        ec2: aws_sdk_ec2::Client::new(&conf),
        s3: aws_sdk_s3::Client::from_conf(s3.build()),
        instance: a.instance.clone(),
        staging,
        avml,
        timeout: std::time::Duration::from_secs(a.timeout),
        part_size: a.part_mib.map(|m| m << 20),
        poll: std::time::Duration::from_secs(1),
        region: conf.region().map(|r| r.to_string()),
    })
}

fn human(r: &Report<'_>) -> String {
    let mut s = format!("case {} in {}\n", r.case, r.store);
    for a in r.artefacts {
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
