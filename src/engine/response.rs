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
    /// The logs phase's sources, and what was found of them.
    pub logs: Vec<Box<dyn crate::collect::Collector>>,
    pub logs_notes: Vec<String>,
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
            &self
                .logs
                .iter()
                .map(|c| c.describe())
                .chain(self.logs_notes.iter().cloned())
                .collect::<Vec<_>>(),
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
    let (logs, logs_notes) = if plan.scope == Scope::Full {
        let until = app.clock.now();
        let since = until - time::Duration::hours(i64::from(plan.logs_hours));
        log_sources(&aws, &prior, since, until).await
    } else {
        (Vec::new(), Vec::new())
    };
    Ok(Prepared {
        logs,
        logs_notes,
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
        logs: &p.logs,
        logs_notes: &p.logs_notes,
        region: p.region.clone(),
        prior_recorded,
    };
    let (instance, case) = (&plan.instance, &plan.case);
    #[allow(unused_mut)]
    let mut report = match plan.scope {
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
    };
    // The logs taken go onto the case's timeline beside the disk's events.
    #[cfg(feature = "timeline")]
    {
        let logs: Vec<_> = report
            .artefacts
            .iter()
            .filter(|a| a.source.log_format.is_some())
            .cloned()
            .collect();
        if !logs.is_empty()
            && let Err(e) = crate::engine::process::load_artefacts(app, case, &logs).await
            && let Some(phase) = report.phases.iter_mut().find(|p| p.phase == "logs")
        {
            phase.detail.push(format!(
                "not loaded into the timeline: {}",
                crate::error_chain(&e)
            ));
        }
    }
    Ok(report)
}

/// What in a report fell short of the plan: phases incomplete (memory left
/// out on purpose, and the logs, are not shortfalls) and changes that do
/// not hold.
pub fn shortfalls(plan: &ResponsePlan, report: &Report) -> Vec<String> {
    report
        .phases
        .iter()
        // Logs stay with AWS (CloudTrail keeps 90 days): a logs phase that
        // fell short is said in its detail, not a response left incomplete.
        .filter(|ph| {
            ph.incomplete() && !(plan.memory_left_out && ph.phase == "memory") && ph.phase != "logs"
        })
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

/// The logs phase's sources for `prior`'s instance over `since..until`: the
/// account's CloudTrail from a trail's bucket (else the events naming the
/// instance through LookupEvents), and the flow logs of its interfaces and
/// VPC. What was found, or why not, is said in the notes.
#[cfg(feature = "timeline")]
async fn log_sources(
    aws: &Aws,
    prior: &InstanceState,
    since: time::OffsetDateTime,
    until: time::OffsetDateTime,
) -> (Vec<Box<dyn crate::collect::Collector>>, Vec<String>) {
    use crate::collect::Collector;
    use crate::collect::logs::{
        AwsLogsLayout, CloudWatchLogs, LookupEvents, S3Logs, aws_logs_objects,
    };
    use crate::timeline::parse::Format;
    let region = aws.region().unwrap_or_default();
    let mut out: Vec<Box<dyn Collector>> = Vec::new();
    let mut notes = Vec::new();
    let trails = aws.cloudtrail().describe_trails().send().await;
    let mut trails: Vec<(String, String, String, bool)> = match &trails {
        Ok(t) => t
            .trail_list()
            .iter()
            .filter_map(|t| {
                Some((
                    t.name().unwrap_or_default().to_owned(),
                    t.s3_bucket_name()?.to_owned(),
                    t.s3_key_prefix().unwrap_or_default().to_owned(),
                    t.is_multi_region_trail().unwrap_or(false),
                ))
            })
            .collect(),
        Err(e) => {
            notes.push(format!("trails not listed: {}", crate::aws::brief(e)));
            Vec::new()
        }
    };
    // Trails of every region first: they hold this region's events. The
    // first whose bucket holds files for the window is read.
    trails.sort_by_key(|t| !t.3);
    let mut from_bucket = false;
    for (name, bucket, prefix, _) in trails {
        let layout = AwsLogsLayout {
            bucket: bucket.clone(),
            prefix,
            service: "CloudTrail",
            accounts: Vec::new(),
            regions: vec![region.clone()],
            since,
            until,
        };
        match aws_logs_objects(&aws.s3(), &layout).await {
            Ok(objects) if !objects.is_empty() => {
                notes.push(format!(
                    "trail {name}: {} log files in s3://{bucket}",
                    objects.len()
                ));
                out.push(Box::new(S3Logs {
                    s3: aws.s3(),
                    bucket,
                    objects,
                    format: Format::Cloudtrail,
                    region: aws.region(),
                    account: None,
                }));
                from_bucket = true;
                break;
            }
            Ok(_) => notes.push(format!(
                "trail {name}: no log file in s3://{bucket} for the window"
            )),
            Err(e) => notes.push(format!(
                "trail {name}: s3://{bucket} not listed: {}",
                crate::error_chain(&e)
            )),
        }
    }
    if !from_bucket {
        notes.push(format!(
            "CloudTrail through LookupEvents: the events naming {}",
            prior.instance
        ));
        out.push(Box::new(LookupEvents {
            cloudtrail: aws.cloudtrail(),
            region: region.clone(),
            scope: "respond".into(),
            since,
            until,
            resource: Some(prior.instance.clone()),
        }));
    }
    let enis: Vec<String> = prior.interfaces.iter().map(|i| i.id.clone()).collect();
    let mut resources = enis.clone();
    resources.extend(prior.vpc.iter().cloned());
    if resources.is_empty() {
        return (out, notes);
    }
    let flows = aws
        .ec2()
        .describe_flow_logs()
        .filter(
            aws_sdk_ec2::types::Filter::builder()
                .name("resource-id")
                .set_values(Some(resources))
                .build(),
        )
        .send()
        .await;
    let flows = match flows {
        Ok(f) => f,
        Err(e) => {
            notes.push(format!("flow logs not listed: {}", crate::aws::brief(&e)));
            return (out, notes);
        }
    };
    if flows.flow_logs().is_empty() {
        notes.push("no flow log covers the instance's interfaces or VPC".into());
    }
    for f in flows.flow_logs() {
        let id = f.flow_log_id().unwrap_or_default();
        match (f.log_group_name(), f.log_destination()) {
            (Some(group), _) => {
                // One stream per interface: `eni-…-all`.
                for eni in &enis {
                    out.push(Box::new(CloudWatchLogs {
                        logs: aws.cloudwatch_logs(),
                        group: group.to_owned(),
                        region: aws.region(),
                        format: Format::VpcFlowCloudwatch,
                        since,
                        until,
                        streams: Vec::new(),
                        stream_prefix: Some(eni.clone()),
                    }));
                }
                notes.push(format!("flow log {id}: group {group}"));
            }
            (None, Some(dest)) => {
                let Some(rest) = dest.strip_prefix("arn:aws:s3:::") else {
                    notes.push(format!("flow log {id}: destination {dest} not read"));
                    continue;
                };
                let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
                let layout = AwsLogsLayout {
                    bucket: bucket.to_owned(),
                    prefix: prefix.to_owned(),
                    service: "vpcflowlogs",
                    accounts: Vec::new(),
                    regions: vec![region.clone()],
                    since,
                    until,
                };
                match aws_logs_objects(&aws.s3(), &layout).await {
                    Ok(objects) if !objects.is_empty() => {
                        notes.push(format!(
                            "flow log {id}: {} files in s3://{bucket}",
                            objects.len()
                        ));
                        out.push(Box::new(S3Logs {
                            s3: aws.s3(),
                            bucket: bucket.to_owned(),
                            objects,
                            format: Format::VpcFlow,
                            region: aws.region(),
                            account: None,
                        }));
                    }
                    Ok(_) => notes.push(format!(
                        "flow log {id}: no file in s3://{bucket} for the window"
                    )),
                    Err(e) => notes.push(format!(
                        "flow log {id}: s3://{bucket} not listed: {}",
                        crate::error_chain(&e)
                    )),
                }
            }
            (None, None) => notes.push(format!("flow log {id}: no destination given")),
        }
    }
    (out, notes)
}

#[cfg(not(feature = "timeline"))]
async fn log_sources(
    _aws: &Aws,
    _prior: &InstanceState,
    _since: time::OffsetDateTime,
    _until: time::OffsetDateTime,
) -> (Vec<Box<dyn crate::collect::Collector>>, Vec<String>) {
    (Vec::new(), Vec::new())
}
