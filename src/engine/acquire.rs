//! Acquisitions: the collector an [`AcquireRequest`] names, run into a case,
//! and the artefacts read back when asked.

#[cfg(feature = "aws")]
use crate::aws::Aws;
use crate::collect::container::ContainerCollector;
use crate::collect::file::FileCollector;
use crate::collect::host::HostCollector;
use crate::collect::{Collected, Collector};
#[cfg(feature = "aws")]
use crate::collect::{ebs::EbsCollector, memory::MemoryCollector};
use crate::evidence::Artefact;
use crate::evidence::case::{ArtefactCheck, check_artefact};
use crate::ids::CaseId;

use super::request::AcquireRequest;
#[cfg(feature = "aws")]
use super::request::{EbsRequest, MemoryPlan, PlanContext};
use super::{App, EngineError};

/// The EBS collector of a validated request.
#[cfg(feature = "aws")]
pub fn ebs_collector(app: &App, aws: &Aws, r: &EbsRequest) -> EbsCollector {
    EbsCollector {
        ebs: aws.ebs(),
        ec2: aws.ec2(),
        target: r.target.clone(),
        reason: app.reason.clone(),
        window: usize::from(r.window),
        snapshot_timeout: r.snapshot_timeout,
        region: aws.region(),
        changed_since: r.changed_since.clone(),
        resume_dir: Some(app.config.home.join("resume")),
        made_by: r.made_by.clone(),
    }
}

/// The memory collector of a validated request.
#[cfg(feature = "aws")]
pub fn memory_collector(aws: &Aws, m: &MemoryPlan) -> MemoryCollector {
    MemoryCollector {
        ssm: aws.ssm(),
        ec2: aws.ec2(),
        s3: aws.s3(),
        instance: m.instance.clone(),
        staging: m.staging.clone(),
        avml: m.avml.clone(),
        timeout: m.timeout,
        part_size: m.part_size,
        poll: std::time::Duration::from_secs(1),
        region: aws.region(),
    }
}

/// Validates `req` and builds its collector; nothing is read yet.
#[cfg_attr(not(feature = "aws"), allow(unused_variables))]
pub async fn collector(app: &App, req: &AcquireRequest) -> Result<Box<dyn Collector>, EngineError> {
    Ok(match req {
        AcquireRequest::File { path, kind } => Box::new(FileCollector {
            path: path.clone(),
            kind: *kind,
            log_format: None,
        }),
        AcquireRequest::Host {
            root,
            memory_pids,
            skip_logs,
            containers,
        } => Box::new(HostCollector {
            root: root.clone(),
            memory_pids: memory_pids.clone(),
            skip_logs: *skip_logs,
            containers: containers.clone(),
        }),
        AcquireRequest::Container {
            node,
            select,
            memory,
        } => Box::new(ContainerCollector {
            node: node.clone(),
            select: select.clone(),
            memory: *memory,
        }),
        #[cfg(feature = "aws")]
        AcquireRequest::Ebs(r) => {
            let r = r.clone().validate()?;
            Box::new(ebs_collector(app, &app.aws().await?, &r))
        }
        #[cfg(feature = "aws")]
        AcquireRequest::Lambda {
            function,
            qualifier,
            logs_window,
        } => {
            let aws = app.aws().await?;
            Box::new(crate::collect::lambda::LambdaCollector {
                lambda: aws.lambda(),
                ecr: aws.ecr(),
                http: reqwest::Client::new(),
                function: function.clone(),
                qualifier: qualifier.clone(),
                region: aws.region(),
                spool: app.config.home.join("spool"),
                logs: aws.cloudwatch_logs(),
                since: app.clock.now() - *logs_window,
                until: app.clock.now(),
            })
        }
        #[cfg(feature = "aws")]
        AcquireRequest::Ecs { cluster, task } => {
            let aws = app.aws().await?;
            Box::new(crate::collect::ecs::EcsCollector {
                ecs: aws.ecs(),
                ec2: aws.ec2(),
                logs: aws.cloudwatch_logs(),
                cluster: cluster.clone(),
                task: task.clone(),
                region: aws.region(),
                until: app.clock.now(),
            })
        }
        #[cfg(feature = "aws")]
        AcquireRequest::Memory(r) => {
            let plan = r.validate(&PlanContext {
                now: app.clock.now(),
                store_url: &app.config.store,
            })?;
            Box::new(memory_collector(&app.aws().await?, &plan))
        }
    })
}

/// What an acquisition came to.
#[derive(Debug, serde::Serialize)]
pub struct Acquired {
    pub case: CaseId,
    /// Where the evidence went (no secrets).
    pub store: String,
    pub artefacts: Vec<Artefact>,
    /// What could not be acquired, each recorded in the ledger.
    pub failures: Vec<String>,
    /// Read-back checks, when asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verified: Option<Vec<ArtefactCheck>>,
}

impl Acquired {
    /// Whether every read-back check passed (true when none was asked for).
    pub fn verified_ok(&self) -> bool {
        self.verified.iter().flatten().all(|c| c.ok)
    }
}

/// Runs `req` into `case` (a new one when `None`), recording as the
/// operator; with `verify`, reads each artefact back and checks both digests.
pub async fn acquire(
    app: &App,
    req: &AcquireRequest,
    case: Option<CaseId>,
    verify: bool,
) -> Result<Acquired, EngineError> {
    acquire_recorded(app, app.recorder()?, req, case, verify).await
}

/// [`acquire`], recording with `rec` (the server records with the alert
/// as the reason).
pub async fn acquire_recorded(
    app: &App,
    rec: crate::ledger::Recorder,
    req: &AcquireRequest,
    case: Option<CaseId>,
    verify: bool,
) -> Result<Acquired, EngineError> {
    let collector = collector(app, req).await?;
    let case = case.unwrap_or_else(|| CaseId::generate(app.clock.now()));
    let ctx = app.acquire_context(rec).await?;
    tracing::info!(%case, what = %collector.describe(), store = %ctx.store.location(), "acquiring");
    let Collected {
        artefacts,
        failures,
    } = collector
        .collect(&ctx, &case)
        .await
        .map_err(|source| EngineError::Collect {
            what: collector.describe(),
            case: case.clone(),
            source: Box::new(source),
        })?;
    let verified = if verify {
        let mut checks = Vec::with_capacity(artefacts.len());
        for a in &artefacts {
            checks.push(check_artefact(ctx.store.as_ref(), a).await);
        }
        Some(checks)
    } else {
        None
    };
    Ok(Acquired {
        case,
        store: ctx.store.location(),
        artefacts,
        failures,
        verified,
    })
}
