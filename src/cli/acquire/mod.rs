//! `custody acquire file|host|container|ebs|memory|lambda|ecs`: the flags of each into the
//! engine's [`AcquireRequest`]; [`ec2`] holds those of `ebs` and `memory`
//! (feature `aws`).

#[cfg(feature = "aws")]
pub mod ec2;

use std::path::PathBuf;

#[cfg(feature = "timeline")]
use anyhow::Context as _;
use clap::Subcommand;

use super::{Env, Outcome};
use crate::collect::container::Node;
use crate::collect::container::collector::Select;
use crate::engine::acquire::Acquired;
use crate::engine::request::AcquireRequest;
use crate::evidence::ArtefactKind;
use crate::ids::CaseId;

#[derive(Debug, Subcommand)]
pub enum AcquireCommand {
    /// A file, a raw image or a block device.
    File(FileArgs),
    /// Volatile triage of this machine, in order of volatility, then its
    /// containers (inventory, writable layers, processes, logs).
    Host(HostArgs),
    /// One container on this machine (containerd or Docker), in order of
    /// volatility: the memory of its processes, its writable layer, then its
    /// processes, runtime files and logs.
    Container(ContainerArgs),
    /// EBS volumes through a snapshot and the EBS direct APIs (no helper instance).
    #[cfg(feature = "aws")]
    Ebs(ec2::EbsArgs),
    /// An EC2 instance's memory, through SSM Run Command (avml on the
    /// instance uploads to presigned URLs of one staging key).
    #[cfg(feature = "aws")]
    Memory(ec2::MemoryArgs),
    /// A Lambda function: its configuration (environment included),
    /// policy, versions, aliases, URL configs, event source mappings,
    /// layers, and its code checked against Lambda's CodeSha256.
    #[cfg(feature = "aws")]
    Lambda(LambdaArgs),
    /// An ECS task (Fargate or EC2): the task, its definition, containers
    /// and image digests, network interfaces and security groups, the EC2
    /// instance it runs on, and its `awslogs` streams.
    #[cfg(feature = "aws")]
    Ecs(EcsArgs),
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
    #[cfg(feature = "timeline")]
    #[command(flatten)]
    pub process: ProcessFlag,
}

/// `--process [quick|full]`: process the images taken, as `custody process` does.
#[cfg(feature = "timeline")]
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct ProcessFlag {
    /// Then process the disk image taken (`custody process`): `quick` reads
    /// the files a responder reads first; `full` (the default) also lists
    /// every name of every file system.
    #[arg(long, value_enum, value_name = "DEPTH", num_args = 0..=1, default_missing_value = "full")]
    pub process: Option<crate::process::scan::Profile>,
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
    /// Containers are read only from the live host (root `/`).
    #[arg(long, default_value = "/", value_name = "DIR")]
    pub root: PathBuf,
    /// Leave the node's containers out.
    #[arg(long)]
    pub no_containers: bool,
    #[command(flatten)]
    pub runtimes: RuntimeArgs,
}

/// Where the container runtimes keep their state on this machine.
#[derive(Debug, Clone, clap::Args)]
pub struct RuntimeArgs {
    /// containerd's root (k3s: /var/lib/rancher/k3s/agent/containerd).
    #[arg(long, default_value = "/var/lib/containerd", value_name = "DIR")]
    pub containerd_root: PathBuf,
    /// containerd's state directory, where its running tasks are.
    #[arg(long, default_value = "/run/containerd", value_name = "DIR")]
    pub containerd_state: PathBuf,
    /// Docker's data root.
    #[arg(long, default_value = "/var/lib/docker", value_name = "DIR")]
    pub docker_root: PathBuf,
    /// Kubernetes' pod logs.
    #[arg(long, default_value = "/var/log/pods", value_name = "DIR")]
    pub pod_logs: PathBuf,
    /// The kubelet's links to container logs.
    #[arg(long, default_value = "/var/log/containers", value_name = "DIR")]
    pub container_logs: PathBuf,
}

impl RuntimeArgs {
    fn node(&self) -> Node {
        Node {
            containerd_root: self.containerd_root.clone(),
            containerd_state: self.containerd_state.clone(),
            docker_root: self.docker_root.clone(),
            pod_logs: self.pod_logs.clone(),
            container_logs: self.container_logs.clone(),
            ..Node::default()
        }
    }
}

#[cfg(feature = "aws")]
#[derive(Debug, clap::Args)]
pub struct EcsArgs {
    #[command(flatten)]
    pub case: CaseArg,
    /// The cluster's name or ARN.
    #[arg(long, value_name = "C")]
    pub cluster: String,
    /// The task's id or ARN.
    #[arg(long, value_name = "T")]
    pub task: String,
}

#[cfg(feature = "aws")]
#[derive(Debug, clap::Args)]
pub struct LambdaArgs {
    #[command(flatten)]
    pub case: CaseArg,
    /// The function's name or ARN.
    #[arg(long, value_name = "NAME|ARN")]
    pub function: String,
    /// A version or alias (default: $LATEST).
    #[arg(long, value_name = "Q")]
    pub qualifier: Option<String>,
    /// How far back to read the function's log group, in hours.
    #[arg(long, default_value_t = 24, value_name = "HOURS")]
    pub logs_hours: u32,
}

#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("which").required(true).args(["id", "name", "all"])))]
pub struct ContainerArgs {
    #[command(flatten)]
    pub case: CaseArg,
    /// The container's id, or a unique prefix of at least 4 characters.
    #[arg(long, value_name = "ID")]
    pub id: Option<String>,
    /// Docker's container name, or the Kubernetes container or pod name.
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Every container on this machine, with the inventory (no memory).
    #[arg(long)]
    pub all: bool,
    /// Do not dump the memory of its processes.
    #[arg(long)]
    pub no_memory: bool,
    #[command(flatten)]
    pub runtimes: RuntimeArgs,
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
                    containers: (!a.no_containers && is_live_root(&a.root))
                        .then(|| a.runtimes.node()),
                },
                &a.case,
            ),
            Self::Container(a) => (
                AcquireRequest::Container {
                    node: a.runtimes.node(),
                    select: match (&a.id, &a.name) {
                        (Some(id), _) => Select::Id(id.clone()),
                        (None, Some(n)) => Select::Name(n.clone()),
                        // clap requires one of --id, --name, --all.
                        (None, None) => Select::All,
                    },
                    memory: !a.no_memory,
                },
                &a.case,
            ),
            #[cfg(feature = "aws")]
            Self::Ebs(a) => (AcquireRequest::Ebs(a.request()), &a.case),
            #[cfg(feature = "aws")]
            Self::Memory(a) => (AcquireRequest::Memory(a.request()), &a.case),
            #[cfg(feature = "aws")]
            Self::Ecs(a) => (
                AcquireRequest::Ecs {
                    cluster: a.cluster.clone(),
                    task: a.task.clone(),
                },
                &a.case,
            ),
            #[cfg(feature = "aws")]
            Self::Lambda(a) => (
                AcquireRequest::Lambda {
                    function: a.function.clone(),
                    qualifier: a.qualifier.clone(),
                    logs_window: time::Duration::hours(i64::from(a.logs_hours)),
                },
                &a.case,
            ),
        }
    }

    /// `--process`, where the command takes one.
    #[cfg(feature = "timeline")]
    fn process_flag(&self) -> Option<crate::process::scan::Profile> {
        match self {
            Self::File(a) => a.process.process,
            #[cfg(feature = "aws")]
            Self::Ebs(a) => a.process.process,
            _ => None,
        }
    }
}

/// Whether `root` is this machine's own root: only there are its runtimes' state and processes.
fn is_live_root(root: &std::path::Path) -> bool {
    std::fs::canonicalize(root).is_ok_and(|r| r == std::path::Path::new("/"))
}

pub async fn run(env: &Env, cmd: AcquireCommand) -> anyhow::Result<Outcome> {
    #[cfg(feature = "timeline")]
    let process = cmd.process_flag();
    let (req, case) = cmd.request();
    let report = crate::engine::acquire::acquire(env, &req, case.case.clone(), case.verify).await?;
    // Logs taken with the workload (a function's log group) go on the case's timeline.
    #[cfg(feature = "timeline")]
    if report
        .artefacts
        .iter()
        .any(|a| a.source.log_format.is_some())
    {
        crate::engine::logs::index_case(env, &report.case, &[], false)
            .await
            .with_context(|| {
                format!(
                    "cannot load the logs taken into the timeline of case {}",
                    report.case
                )
            })?;
    }
    #[cfg(feature = "timeline")]
    if let Some(depth) = process {
        let processed =
            crate::engine::process::process_acquired(env, &report.case, &report.artefacts, depth)
                .await;
        // One document on stdout: what was acquired, then what it held.
        let both = serde_json::json!({
            "acquired": &report,
            "processed": processed.as_ref().ok(),
        });
        env.print(&both, || {
            let mut s = human(&report);
            if let Ok(p) = &processed {
                s.push_str(&super::process::human(p));
            }
            s
        })?;
        processed.with_context(|| {
            format!("cannot process what was acquired into case {}", report.case)
        })?;
    } else {
        env.print(&report, || human(&report))?;
    }
    #[cfg(not(feature = "timeline"))]
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
