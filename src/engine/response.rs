//! Acting on an EC2 instance from a validated plan: the response in the
//! order of volatility (or its isolation or disk part alone), isolation,
//! and release. The command line and the webhook server both call these.

use crate::aws::Aws;
use crate::collect::ebs::EbsCollector;
use crate::collect::memory::MemoryCollector;
use crate::evidence::Source;
use crate::ids::CaseId;
use crate::ledger::Recorder;
use crate::ledger::entry::Action;
use crate::respond::isolate::{self, Clients, InstanceState, Options, Step};
use crate::respond::order::{self, Phase, Report, check_isolation, record_prior, take_steps};

use super::request::{IsolatePlan, ResponsePlan, Scope};
use super::{App, EngineError};

fn clients(aws: &Aws) -> Clients {
    Clients {
        ec2: aws.ec2(),
        autoscaling: aws.autoscaling(),
    }
}

/// The instance's state now; `doing` names the action it is described for.
async fn describe(
    c: &Clients,
    instance: &str,
    doing: &'static str,
) -> Result<InstanceState, EngineError> {
    isolate::describe(c, instance)
        .await
        .map_err(|source| EngineError::Instance {
            doing,
            instance: instance.to_owned(),
            source,
        })
}

fn place(instance: &str, region: Option<String>) -> Source {
    Source {
        resource: instance.to_owned(),
        region,
        ..Source::default()
    }
}

/// A response made ready: the instance described, the steps planned, the
/// collectors built. Nothing has changed yet.
pub struct Prepared {
    pub clients: Clients,
    pub region: Option<String>,
    pub prior: InstanceState,
    pub protect: Vec<Step>,
    pub network: Vec<Step>,
    pub memory: Result<MemoryCollector, String>,
    pub disk: EbsCollector,
}

impl Prepared {
    /// The phases the plan would run, in order; nothing is changed.
    pub fn phases(&self) -> Vec<Phase> {
        order::plan(
            &self.protect,
            &self.memory.as_ref().map_err(Clone::clone),
            &self.network,
            &self.disk,
        )
    }
}

/// Describes the plan's instance, plans the isolation steps and builds the collectors.
pub async fn prepare(app: &App, plan: &ResponsePlan) -> Result<Prepared, EngineError> {
    let aws = app.aws().await?;
    let c = clients(&aws);
    let prior = describe(&c, &plan.instance, "respond on").await?;
    let steps = isolate::plan(
        &c,
        &prior,
        &Options {
            case: plan.case.to_string(),
            revoke_role: plan.revoke_role,
        },
    )
    .await?;
    let (protect, network) = order::split(steps);
    Ok(Prepared {
        memory: plan
            .memory
            .as_ref()
            .map(|m| super::acquire::memory_collector(&aws, m))
            .map_err(Clone::clone),
        disk: super::acquire::ebs_collector(app, &aws, &plan.disk),
        region: aws.region(),
        clients: c,
        prior,
        protect,
        network,
    })
}

/// The prior state recorded first for `instance` in `case`, if any: a
/// response resumed after a crash finds the state before isolation there,
/// not in what the instance looks like now.
fn recorded_prior(
    rec: &Recorder,
    instance: &str,
    case: &CaseId,
) -> Result<Option<InstanceState>, EngineError> {
    Ok(rec
        .resource_entries(Action::StateRecorded, instance)?
        .into_iter()
        .filter(|(_, e)| e.case.as_ref() == Some(case))
        .find_map(|(_, e)| {
            e.detail
                .and_then(|d| d.get("prior").cloned())
                .and_then(|v| serde_json::from_value(v).ok())
        }))
}

/// Carries out `plan`, every step recorded by `rec`.
pub async fn respond(
    app: &App,
    rec: &Recorder,
    plan: &ResponsePlan,
    p: Prepared,
) -> Result<Report, EngineError> {
    let ctx = app.acquire_context(rec.clone()).await?;
    let recorded = if plan.resume {
        recorded_prior(rec, &plan.instance, &plan.case)?
    } else {
        None
    };
    let prior_recorded = recorded.is_some();
    let (prior, protect, network) = match recorded {
        // The steps are planned again from the state before the first run.
        Some(prior) => {
            let steps = isolate::plan(
                &p.clients,
                &prior,
                &Options {
                    case: plan.case.to_string(),
                    revoke_role: plan.revoke_role,
                },
            )
            .await?;
            let (protect, network) = order::split(steps);
            (prior, protect, network)
        }
        None => (p.prior, p.protect, p.network),
    };
    let responder = order::Responder {
        clients: &p.clients,
        recorder: rec,
        ctx: &ctx,
        memory: p.memory.as_ref().map_err(Clone::clone),
        disk: &p.disk,
        region: p.region.clone(),
        prior_recorded,
    };
    let (instance, case) = (&plan.instance, &plan.case);
    Ok(match plan.scope {
        Scope::Full => {
            responder
                .run(instance, case, &prior, &protect, &network, plan.then)
                .await?
        }
        Scope::IsolateOnly => {
            responder
                .isolate_only(instance, case, &prior, &protect, &network)
                .await?
        }
        Scope::DiskOnly => responder.disk_only(instance, case).await,
    })
}

/// What in a report fell short of the plan: phases incomplete (memory left
/// out on purpose is not a shortfall) and changes that do not hold.
pub fn shortfalls(plan: &ResponsePlan, report: &Report) -> Vec<String> {
    report
        .phases
        .iter()
        .filter(|ph| ph.incomplete() && !(plan.memory_left_out && ph.phase == "memory"))
        .map(|ph| format!("{}: {}", ph.phase, ph.status))
        .chain(
            report
                .not_holding
                .iter()
                .map(|n| format!("does not hold: {n}")),
        )
        .collect()
}

/// What an isolation did, or would do.
#[derive(Debug, serde::Serialize)]
pub struct Isolated {
    pub case: CaseId,
    pub instance: String,
    pub dry_run: bool,
    pub prior: InstanceState,
    pub plan: Vec<String>,
    pub taken: Vec<isolate::Taken>,
    pub failed: Vec<String>,
    /// Changes that do not hold when the instance is described again.
    pub not_holding: Vec<String>,
}

/// Isolates the plan's instance (or, in a dry run, only says how).
pub async fn isolate_instance(app: &App, plan: &IsolatePlan) -> Result<Isolated, EngineError> {
    let aws = app.aws().await?;
    let c = clients(&aws);
    let prior = describe(&c, &plan.instance, "isolate").await?;
    let opts = Options {
        case: plan.case.to_string(),
        revoke_role: plan.revoke_role,
    };
    let steps = isolate::plan(&c, &prior, &opts).await?;
    let mut report = Isolated {
        case: plan.case.clone(),
        instance: plan.instance.clone(),
        dry_run: plan.dry_run,
        prior,
        plan: steps.iter().map(Step::describe).collect(),
        taken: Vec::new(),
        failed: Vec::new(),
        not_holding: Vec::new(),
    };
    if plan.dry_run {
        return Ok(report);
    }
    let rec = app.recorder()?;
    let at = place(&plan.instance, aws.region());
    let case = &plan.case;
    record_prior(&rec, case, &at, &report.prior)?;
    let run = take_steps(&rec, &c, &report.prior, &steps, case, &at, "isolate").await?;
    report.taken = run.taken;
    report.failed = run.failed;
    report.not_holding = check_isolation(
        &rec,
        &c,
        &plan.instance,
        case,
        &at,
        &run.done,
        &report.failed,
    )
    .await?;
    Ok(report)
}

/// What a release put back.
#[derive(Debug, serde::Serialize)]
pub struct Released {
    pub instance: String,
    pub case: Option<CaseId>,
    /// Ledger entry holding the prior state that was restored.
    pub prior_entry: u64,
    pub restored: Vec<(String, Vec<String>)>,
    /// What still differs from the prior state.
    pub differences: Vec<String>,
}

/// Puts `instance` back to the last state recorded before custody isolated it.
pub async fn release(app: &App, instance: &str) -> Result<Released, EngineError> {
    let rec = app.recorder()?;
    let (index, entry, prior): (u64, _, InstanceState) = super::last_prior(&rec, instance)?;
    let aws = app.aws().await?;
    let c = clients(&aws);
    let at = place(instance, aws.region());
    let restored = isolate::release(&c, &prior)
        .await
        .map_err(|source| EngineError::Instance {
            doing: "release",
            instance: instance.to_owned(),
            source,
        })?;
    let now = isolate::describe(&c, instance).await?;
    let differences = isolate::differences(&prior, &now);
    rec.record(
        entry.case.as_ref(),
        Action::Released,
        None,
        Some(at),
        Some(serde_json::json!({
            "prior_entry": index,
            "restored": restored,
            "differences": differences,
        })),
    )?;
    Ok(Released {
        instance: instance.to_owned(),
        case: entry.case.clone(),
        prior_entry: index,
        restored,
        differences,
    })
}
