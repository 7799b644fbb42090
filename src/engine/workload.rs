//! Isolation and release of workloads that are not instances: a Lambda
//! function (reserved concurrency 0), an ECS task (scale-in protection,
//! and its own security groups rewritten to no rules). As for an instance, the prior state
//! is recorded in the ledger before anything changes, each change is
//! recorded with AWS's request id, the result is read back, and release
//! restores what the last recorded prior state says.

use serde::Serialize;

use crate::evidence::Source;
use crate::ids::CaseId;
use crate::ledger::Recorder;
use crate::ledger::entry::Action;
use crate::respond::ecs::{self, EcsError, TaskState};
use crate::respond::lambda::{self, FunctionState};

use super::{App, EngineError};

fn place(resource: &str, region: Option<String>) -> Source {
    Source {
        resource: resource.to_owned(),
        region,
        ..Source::default()
    }
}

/// What isolating a function did.
#[derive(Debug, Serialize)]
pub struct IsolatedFunction {
    pub case: CaseId,
    pub function: String,
    pub dry_run: bool,
    pub prior: FunctionState,
    pub plan: Vec<String>,
    pub taken: Vec<(String, Vec<String>)>,
    /// What does not hold when the function is read again.
    pub not_holding: Vec<String>,
}

pub async fn isolate_function(
    app: &App,
    rec: &Recorder,
    function: &str,
    case: CaseId,
    dry_run: bool,
) -> Result<IsolatedFunction, EngineError> {
    let aws = app.aws().await?;
    let l = aws.lambda();
    let prior = lambda::describe(&l, function).await?;
    let mut report = IsolatedFunction {
        case,
        function: prior.function.clone(),
        dry_run,
        plan: vec![format!(
            "reserved concurrency 0 (now {})",
            prior
                .reserved_concurrency
                .map_or("none".to_owned(), |n| n.to_string())
        )],
        prior,
        taken: Vec::new(),
        not_holding: Vec::new(),
    };
    if dry_run {
        return Ok(report);
    }
    let at = place(&report.function, aws.region());
    rec.record(
        Some(&report.case),
        Action::StateRecorded,
        None,
        Some(at.clone()),
        Some(serde_json::json!({ "prior": report.prior, "kind": "lambda" })),
    )?;
    let done = lambda::isolate(&l, &report.prior).await;
    let done = match done {
        Ok(d) => d,
        Err(e) => {
            rec.record(
                Some(&report.case),
                Action::Failed,
                None,
                Some(at),
                Some(serde_json::json!({ "error": e.to_string() })),
            )?;
            return Err(e.into());
        }
    };
    rec.record(
        Some(&report.case),
        Action::Isolated,
        None,
        Some(at.clone()),
        Some(serde_json::json!({ "steps": [&done] })),
    )?;
    report.taken.push(done);
    let now = lambda::describe(&l, &report.function).await?;
    if now.reserved_concurrency != Some(0) {
        report.not_holding.push(format!(
            "reserved concurrency reads {:?}, not 0",
            now.reserved_concurrency
        ));
    }
    rec.record(
        Some(&report.case),
        Action::Verified,
        None,
        Some(at),
        Some(serde_json::json!({ "isolation": "lambda", "not_holding": report.not_holding })),
    )?;
    Ok(report)
}

/// What a release put back.
#[derive(Debug, Serialize)]
pub struct ReleasedFunction {
    pub function: String,
    pub case: Option<CaseId>,
    pub prior_entry: u64,
    pub restored: Vec<(String, Vec<String>)>,
    pub differences: Vec<String>,
}

pub async fn release_function(app: &App, function: &str) -> Result<ReleasedFunction, EngineError> {
    let aws = app.aws().await?;
    let l = aws.lambda();
    let now = lambda::describe(&l, function).await?;
    let rec = app.recorder()?;
    let (index, entry, prior): (u64, _, FunctionState) = super::last_prior(&rec, &now.function)?;
    let done = lambda::release(&l, &prior).await?;
    let after = lambda::describe(&l, &prior.function).await?;
    let differences = if after.reserved_concurrency == prior.reserved_concurrency {
        Vec::new()
    } else {
        vec![format!(
            "reserved concurrency reads {:?}, was {:?}",
            after.reserved_concurrency, prior.reserved_concurrency
        )]
    };
    rec.record(
        entry.case.as_ref(),
        Action::Released,
        None,
        Some(place(&prior.function, aws.region())),
        Some(serde_json::json!({
            "prior_entry": index,
            "restored": [&done],
            "differences": differences,
        })),
    )?;
    Ok(ReleasedFunction {
        function: prior.function,
        case: entry.case.clone(),
        prior_entry: index,
        restored: vec![done],
        differences,
    })
}

/// What isolating an ECS task did.
#[derive(Debug, Serialize)]
pub struct IsolatedTask {
    pub case: CaseId,
    pub task: String,
    pub dry_run: bool,
    pub prior: TaskState,
    pub plan: Vec<String>,
    pub taken: Vec<(String, Vec<String>)>,
    /// Why the network was not isolated, when it was not.
    pub refused: Option<String>,
    pub not_holding: Vec<String>,
}

fn ecs_clients(aws: &crate::aws::Aws) -> ecs::Clients {
    ecs::Clients {
        ecs: aws.ecs(),
        ec2: aws.ec2(),
    }
}

fn ecs_err(e: EcsError) -> EngineError {
    match e {
        EcsError::Api(a) => a.into(),
        other => EngineError::Workload(other.to_string()),
    }
}

/// Protects the task from scale-in, then isolates its network by
/// rewriting its own security groups; a group shared with any other
/// interface is refused (the protection stays, recorded).
pub async fn isolate_task(
    app: &App,
    rec: &Recorder,
    cluster: &str,
    task: &str,
    case: CaseId,
    dry_run: bool,
) -> Result<IsolatedTask, EngineError> {
    let aws = app.aws().await?;
    let c = ecs_clients(&aws);
    let prior = ecs::describe(&c, cluster, task).await.map_err(ecs_err)?;
    let shared = ecs::shared(&c, &prior).await?;
    let refused = match shared.first() {
        Some((group, others)) => Some(
            EcsError::Shared {
                task: prior.task.clone(),
                group: group.clone(),
                others: others.len(),
                examples: others
                    .iter()
                    .take(3)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", "),
            }
            .to_string(),
        ),
        None if prior.last_status.as_deref() == Some("STOPPED") => {
            Some(EcsError::Stopped(prior.task.clone()).to_string())
        }
        None => None,
    };
    let mut plan = vec!["scale-in protection on (48 hours)".to_owned()];
    if refused.is_none() {
        for g in &prior.groups {
            plan.push(format!(
                "{}: {} inbound and {} outbound rules replaced by one allowing all traffic, then by none",
                g.id,
                g.ingress.len(),
                g.egress.len()
            ));
        }
    }
    let mut report = IsolatedTask {
        case,
        task: prior.task.clone(),
        dry_run,
        prior,
        plan,
        taken: Vec::new(),
        refused,
        not_holding: Vec::new(),
    };
    if dry_run {
        return Ok(report);
    }
    let at = place(&report.task, aws.region());
    rec.record(
        Some(&report.case),
        Action::StateRecorded,
        None,
        Some(at.clone()),
        Some(serde_json::json!({ "prior": report.prior, "kind": "ecs" })),
    )?;
    let fail = |e: &crate::aws::ApiError| {
        rec.record(
            Some(&report.case),
            Action::Failed,
            None,
            Some(at.clone()),
            Some(serde_json::json!({ "error": e.to_string() })),
        )
    };
    match ecs::protect(&c, &report.prior, true).await {
        Ok(d) => report.taken.push(d),
        Err(e) => {
            fail(&e)?;
            return Err(e.into());
        }
    }
    if report.refused.is_none() {
        match ecs::isolate(&c, &report.prior).await {
            Ok(d) => report.taken.extend(d),
            Err(e) => {
                fail(&e)?;
                return Err(e.into());
            }
        }
    }
    rec.record(
        Some(&report.case),
        Action::Isolated,
        None,
        Some(at.clone()),
        Some(serde_json::json!({ "steps": report.taken, "refused": report.refused })),
    )?;
    let now = ecs::describe(&c, cluster, &report.task)
        .await
        .map_err(ecs_err)?;
    if now.protected == Some(false) {
        report
            .not_holding
            .push("scale-in protection reads off".into());
    }
    if report.refused.is_none() {
        for g in &now.groups {
            if !g.ingress.is_empty() || !g.egress.is_empty() {
                report.not_holding.push(format!(
                    "{} still has {} inbound and {} outbound rules",
                    g.id,
                    g.ingress.len(),
                    g.egress.len()
                ));
            }
        }
    }
    rec.record(
        Some(&report.case),
        Action::IsolationChecked,
        None,
        Some(at),
        Some(serde_json::json!({ "not_holding": report.not_holding })),
    )?;
    Ok(report)
}

/// What a release of a task put back.
#[derive(Debug, Serialize)]
pub struct ReleasedTask {
    pub task: String,
    pub case: Option<CaseId>,
    pub prior_entry: u64,
    pub restored: Vec<(String, Vec<String>)>,
    pub differences: Vec<String>,
}

pub async fn release_task(
    app: &App,
    cluster: &str,
    task: &str,
) -> Result<ReleasedTask, EngineError> {
    let aws = app.aws().await?;
    let c = ecs_clients(&aws);
    let now = ecs::describe(&c, cluster, task).await.map_err(ecs_err)?;
    let rec = app.recorder()?;
    let (index, entry, prior): (u64, _, TaskState) = super::last_prior(&rec, &now.task)?;
    let restored = ecs::release(&c, &prior).await?;
    let after = ecs::describe(&c, cluster, &prior.task)
        .await
        .map_err(ecs_err)?;
    let differences = ecs::differences(&prior, &after);
    rec.record(
        entry.case.as_ref(),
        Action::Released,
        None,
        Some(place(&prior.task, aws.region())),
        Some(serde_json::json!({
            "prior_entry": index,
            "restored": restored,
            "differences": differences,
        })),
    )?;
    Ok(ReleasedTask {
        task: prior.task,
        case: entry.case.clone(),
        prior_entry: index,
        restored,
        differences,
    })
}
