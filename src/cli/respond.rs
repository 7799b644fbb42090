//! `custody isolate` and `custody release`.

use anyhow::Context;

use super::{Env, Outcome};
use crate::evidence::Source;
use crate::ids::CaseId;
use crate::ledger::Recorder;
use crate::ledger::entry::Action;
use crate::respond::isolate::{self, Clients, InstanceState, Options, Step};

#[derive(Debug, clap::Args)]
pub struct IsolateArgs {
    /// The EC2 instance to isolate.
    #[arg(long, value_name = "i-…")]
    pub instance: String,
    /// Case the isolation belongs to; a new id is generated when omitted.
    #[arg(long, value_name = "ID")]
    pub case: Option<CaseId>,
    /// Also disassociate the instance profile, so the instance loses its role's credentials.
    #[arg(long)]
    pub revoke_role: bool,
    /// Print the plan and change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, clap::Args)]
pub struct ReleaseArgs {
    /// The EC2 instance to put back as it was before custody isolated it.
    #[arg(long, value_name = "i-…")]
    pub instance: String,
}

async fn clients(env: &Env) -> (Clients, Option<String>) {
    let conf = crate::aws::sdk_config(&crate::aws::AwsOptions {
        endpoint: env.endpoint_url.clone(),
        max_attempts: env.config.s3.max_attempts,
        ..Default::default()
    })
    .await;
    (
        Clients {
            ec2: aws_sdk_ec2::Client::new(&conf),
            autoscaling: aws_sdk_autoscaling::Client::new(&conf),
        },
        conf.region().map(|r| r.to_string()),
    )
}

fn place(instance: &str, region: &Option<String>) -> Source {
    Source {
        resource: instance.to_owned(),
        region: region.clone(),
        ..Source::default()
    }
}

#[derive(Debug, serde::Serialize)]
struct IsolateReport<'a> {
    case: &'a CaseId,
    instance: &'a str,
    dry_run: bool,
    prior: &'a InstanceState,
    plan: Vec<String>,
    taken: Vec<isolate::Taken>,
    failed: Vec<String>,
    /// Changes that do not hold when the instance is described again.
    not_holding: Vec<String>,
}

pub async fn run_isolate(env: &Env, args: IsolateArgs) -> anyhow::Result<Outcome> {
    let case = args
        .case
        .clone()
        .unwrap_or_else(|| CaseId::generate(env.clock.now()));
    let (c, region) = clients(env).await;
    let prior = isolate::describe(&c, &args.instance)
        .await
        .with_context(|| format!("cannot isolate {}", args.instance))?;
    let opts = Options {
        case: case.to_string(),
        revoke_role: args.revoke_role,
    };
    let steps = isolate::plan(&c, &prior, &opts).await?;
    let mut report = IsolateReport {
        case: &case,
        instance: &args.instance,
        dry_run: args.dry_run,
        prior: &prior,
        plan: steps.iter().map(Step::describe).collect(),
        taken: Vec::new(),
        failed: Vec::new(),
        not_holding: Vec::new(),
    };
    if args.dry_run {
        env.print(&report, || human_isolate(&report))?;
        return Ok(Outcome::Ok);
    }
    let rec = env.recorder()?;
    let at = place(&args.instance, &region);
    // The prior state goes in first: release depends on it.
    rec.record(
        Some(&case),
        Action::StateRecorded,
        None,
        Some(at.clone()),
        Some(serde_json::json!({ "prior": prior })),
    )
    .context("cannot record the instance's prior state; nothing was changed")?;
    let run = take_steps(&rec, &c, &prior, &steps, &case, &at, "isolate").await?;
    report.taken = run.taken;
    report.failed = run.failed;
    report.not_holding = check_isolation(
        &rec,
        &c,
        &args.instance,
        &case,
        &at,
        &run.done,
        &report.failed,
    )
    .await?;
    env.print(&report, || human_isolate(&report))?;
    if !report.failed.is_empty() {
        anyhow::bail!(
            "{} isolation step(s) failed: {}",
            report.failed.len(),
            report.failed.join("; ")
        );
    }
    if !report.not_holding.is_empty() {
        eprintln!(
            "error: isolation of {} does not hold: {}",
            args.instance,
            report.not_holding.join("; ")
        );
        return Ok(Outcome::VerificationFailed);
    }
    Ok(Outcome::Ok)
}

/// What a run of isolation steps came to.
#[derive(Debug, Default)]
struct StepsRun {
    done: Vec<Step>,
    taken: Vec<isolate::Taken>,
    failed: Vec<String>,
}

/// Takes `steps` in order, each recorded with the request ids AWS returned;
/// a step that fails is recorded and the others still go ahead, since a
/// partly isolated instance is better than one left as it was.
async fn take_steps(
    rec: &Recorder,
    c: &Clients,
    prior: &InstanceState,
    steps: &[Step],
    case: &CaseId,
    at: &Source,
    phase: &str,
) -> anyhow::Result<StepsRun> {
    let mut run = StepsRun::default();
    for step in steps {
        match isolate::take(c, prior, step).await {
            Ok((step, request_ids)) => {
                tracing::info!(instance = %at.resource, step = %step.describe(), phase, "isolation step taken");
                let taken = isolate::Taken {
                    step: step.clone(),
                    request_ids,
                };
                let mut detail = serde_json::json!(taken);
                if let Some(o) = detail.as_object_mut() {
                    o.insert("phase".into(), phase.into());
                }
                rec.record(
                    Some(case),
                    Action::Isolated,
                    None,
                    Some(at.clone()),
                    Some(detail),
                )?;
                run.done.push(step);
                run.taken.push(taken);
            }
            Err(e) => {
                let what = format!("{}: {e}", step.describe());
                tracing::error!(instance = %at.resource, error = %what, phase, "isolation step failed");
                rec.record(
                    Some(case),
                    Action::Failed,
                    None,
                    Some(at.clone()),
                    Some(
                        serde_json::json!({ "phase": phase, "step": step, "error": e.to_string() }),
                    ),
                )?;
                run.failed.push(what);
            }
        }
    }
    Ok(run)
}

/// Describes the instance again, checks that every change taken holds, and
/// records the result; returns what does not hold.
async fn check_isolation(
    rec: &Recorder,
    c: &Clients,
    instance: &str,
    case: &CaseId,
    at: &Source,
    done: &[Step],
    failed: &[String],
) -> anyhow::Result<Vec<String>> {
    let now = isolate::describe(c, instance).await?;
    let not_holding = isolate::check(&now, done);
    rec.record(
        Some(case),
        Action::IsolationChecked,
        None,
        Some(at.clone()),
        Some(serde_json::json!({
            "holding": not_holding.is_empty(),
            "not_holding": not_holding,
            "failed": failed,
        })),
    )?;
    Ok(not_holding)
}

fn human_isolate(r: &IsolateReport<'_>) -> String {
    let mut s = if r.dry_run {
        format!(
            "plan to isolate {} (case {}), nothing changed:\n",
            r.instance, r.case
        )
    } else {
        format!("isolated {} (case {}):\n", r.instance, r.case)
    };
    if r.dry_run {
        for p in &r.plan {
            s.push_str(&format!("  - {p}\n"));
        }
    }
    for t in &r.taken {
        s.push_str(&format!(
            "  done   {} (request {})\n",
            t.step.describe(),
            t.request_ids.join(", ")
        ));
    }
    for f in &r.failed {
        s.push_str(&format!("  FAILED {f}\n"));
    }
    for n in &r.not_holding {
        s.push_str(&format!("  DOES NOT HOLD {n}\n"));
    }
    s
}

#[derive(Debug, serde::Serialize)]
struct ReleaseReport {
    instance: String,
    case: Option<CaseId>,
    /// Ledger entry holding the prior state that was restored.
    prior_entry: u64,
    restored: Vec<(String, Vec<String>)>,
    /// What still differs from the prior state.
    differences: Vec<String>,
}

pub async fn run_release(env: &Env, args: ReleaseArgs) -> anyhow::Result<Outcome> {
    let rec = env.recorder()?;
    let recorded = rec.resource_entries(Action::StateRecorded, &args.instance)?;
    let (index, entry) = recorded
        .last()
        .ok_or_else(|| isolate::IsolateError::NoPriorState(args.instance.clone()))?;
    let prior: InstanceState = entry
        .detail
        .as_ref()
        .and_then(|d| d.get("prior"))
        .cloned()
        .map(serde_json::from_value)
        .transpose()
        .with_context(|| format!("ledger entry {index} does not hold a readable prior state"))?
        .ok_or_else(|| isolate::IsolateError::NoPriorState(args.instance.clone()))?;
    let (c, region) = clients(env).await;
    let at = place(&args.instance, &region);
    let restored = isolate::release(&c, &prior)
        .await
        .with_context(|| format!("cannot release {}", args.instance))?;
    let now = isolate::describe(&c, &args.instance).await?;
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
    let report = ReleaseReport {
        instance: args.instance.clone(),
        case: entry.case.clone(),
        prior_entry: *index,
        restored,
        differences,
    };
    env.print(&report, || {
        let mut s = format!(
            "released {} to the state recorded in ledger entry {}:\n",
            report.instance, report.prior_entry
        );
        for (what, ids) in &report.restored {
            s.push_str(&format!("  restored {what} (request {})\n", ids.join(", ")));
        }
        for d in &report.differences {
            s.push_str(&format!("  STILL DIFFERS {d}\n"));
        }
        s
    })?;
    if report.differences.is_empty() {
        Ok(Outcome::Ok)
    } else {
        eprintln!(
            "error: {} is not back to its recorded state: {}",
            args.instance,
            report.differences.join("; ")
        );
        Ok(Outcome::VerificationFailed)
    }
}

/// What to do with the instance once every capture succeeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Then {
    Stop,
    Terminate,
}

#[derive(Debug, clap::Args)]
pub struct RespondArgs {
    /// The EC2 instance under suspicion.
    #[arg(long, value_name = "i-…")]
    pub instance: String,
    /// Case the response belongs to; a new id is generated when omitted.
    #[arg(long, value_name = "ID")]
    pub case: Option<CaseId>,
    /// Also disassociate the instance profile during network isolation.
    #[arg(long)]
    pub revoke_role: bool,
    /// Print the plan, in order, and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Leave memory out (it is recorded as not acquired, with this reason).
    #[arg(long)]
    pub no_memory: bool,
    /// Where the instance uploads its memory image; default: the store, when it is in S3.
    #[arg(long, value_name = "s3://BUCKET/PREFIX")]
    pub staging: Option<String>,
    /// An avml build for the instance to fetch, instead of the avml on its PATH.
    #[arg(long, value_name = "s3://BUCKET/KEY", requires = "avml_sha256")]
    pub avml: Option<String>,
    /// SHA-256 of that build (hex), checked on the instance before it runs.
    #[arg(long, value_name = "HEX", requires = "avml")]
    pub avml_sha256: Option<String>,
    /// Longest wait for the memory command, in seconds.
    #[arg(long, default_value_t = crate::collect::memory::DEFAULT_TIMEOUT.as_secs(), value_name = "SECS", value_parser = clap::value_parser!(u64).range(30..=172_800))]
    pub memory_timeout: u64,
    /// EBS blocks read ahead of the pipeline (512 KiB each).
    #[arg(long, default_value_t = crate::collect::ebs::DEFAULT_WINDOW as u16, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub window: u16,
    /// Longest wait for each volume's snapshot, in seconds.
    #[arg(long, default_value_t = 3600, value_name = "SECS")]
    pub snapshot_timeout: u64,
    /// Stop or terminate the instance at the end, only if every capture
    /// (memory and every volume) succeeded and isolation holds.
    #[arg(long, value_enum, value_name = "ACTION")]
    pub then: Option<Then>,
}

/// One phase of a response, as it ended.
#[derive(Debug, Clone, serde::Serialize)]
struct Phase {
    phase: &'static str,
    /// `done`, `failed`, `partial`, `not_acquired`, `skipped` or `planned`.
    status: &'static str,
    detail: Vec<String>,
}

#[derive(Debug, serde::Serialize)]
struct RespondReport {
    case: CaseId,
    instance: String,
    dry_run: bool,
    phases: Vec<Phase>,
    artefacts: Vec<crate::evidence::Artefact>,
    /// What was asked for at the end, and what was done.
    then: Option<Then>,
    then_done: bool,
    then_reason: Option<String>,
}

fn is_protect(step: &Step) -> bool {
    matches!(
        step,
        Step::TerminationProtection
            | Step::ShutdownBehaviorStop
            | Step::KeepVolumes { .. }
            | Step::DetachFromAutoScaling { .. }
    )
}

/// `custody respond`: protect → memory → network isolation → disk → logs,
/// in the order of volatility, each step in the ledger.
pub async fn run_respond(env: &Env, args: RespondArgs) -> anyhow::Result<Outcome> {
    use crate::cli::acquire::{CaseArg, EbsArgs, MemoryArgs};
    use crate::collect::Collector as _;
    let case = args
        .case
        .clone()
        .unwrap_or_else(|| CaseId::generate(env.clock.now()));
    let (c, region) = clients(env).await;
    let prior = isolate::describe(&c, &args.instance)
        .await
        .with_context(|| format!("cannot respond on {}", args.instance))?;
    let steps = isolate::plan(
        &c,
        &prior,
        &Options {
            case: case.to_string(),
            revoke_role: args.revoke_role,
        },
    )
    .await?;
    let (protect, network): (Vec<Step>, Vec<Step>) = steps.into_iter().partition(is_protect);
    let case_arg = || CaseArg {
        case: Some(case.clone()),
        verify: false,
    };
    // Bad memory options are refused before anything changes; a store that
    // is not in S3 only means memory cannot be staged.
    let staging_known = args.staging.is_some() || env.config.store.starts_with("s3://");
    let memory = if args.no_memory || !staging_known {
        None
    } else {
        Some(
            crate::cli::acquire::memory_collector(
                env,
                &MemoryArgs {
                    instance: args.instance.clone(),
                    case: case_arg(),
                    staging: args.staging.clone(),
                    avml: args.avml.clone(),
                    avml_sha256: args.avml_sha256.clone(),
                    timeout: args.memory_timeout,
                    part_mib: None,
                },
            )
            .await?,
        )
    };
    let disk = crate::cli::acquire::ebs_collector(
        env,
        &EbsArgs {
            snapshot: None,
            volume: None,
            instance: Some(args.instance.clone()),
            case: case_arg(),
            window: args.window,
            snapshot_timeout: args.snapshot_timeout,
            changed_since: None,
        },
    )
    .await;
    let mut report = RespondReport {
        case: case.clone(),
        instance: args.instance.clone(),
        dry_run: args.dry_run,
        phases: Vec::new(),
        artefacts: Vec::new(),
        then: args.then,
        then_done: false,
        then_reason: None,
    };
    if args.dry_run {
        let plan = |phase, detail| Phase {
            phase,
            status: "planned",
            detail,
        };
        report.phases = vec![
            plan("protect", protect.iter().map(Step::describe).collect()),
            plan(
                "memory",
                vec![match &memory {
                    Some(m) => m.describe(),
                    None => "memory left out (--no-memory, or no S3 staging location)".into(),
                }],
            ),
            plan("isolate", network.iter().map(Step::describe).collect()),
            plan("disk", vec![disk.describe()]),
            plan(
                "logs",
                vec!["the instance's logs: no log collector in this version".into()],
            ),
        ];
        env.print(&report, || human_respond(&report))?;
        return Ok(Outcome::Ok);
    }
    let rec = env.recorder()?;
    let at = place(&args.instance, &region);
    rec.record(
        Some(&case),
        Action::StateRecorded,
        None,
        Some(at.clone()),
        Some(serde_json::json!({ "prior": prior })),
    )
    .context("cannot record the instance's prior state; nothing was changed")?;
    let ctx = env.acquire_context().await?;

    // 1. Protect: nothing the instance or its group does may destroy it now.
    let run = take_steps(&rec, &c, &prior, &protect, &case, &at, "protect").await?;
    let mut isolation_failed = run.failed.clone();
    let mut done = run.done;
    report.phases.push(Phase {
        phase: "protect",
        status: if run.failed.is_empty() {
            "done"
        } else {
            "partial"
        },
        detail: run
            .taken
            .iter()
            .map(|t| t.step.describe())
            .chain(run.failed.iter().map(|f| format!("FAILED {f}")))
            .collect(),
    });

    // 2. Memory, the most volatile: before the network is cut, since SSM
    // needs the instance to reach its endpoints.
    let memory_ok = match &memory {
        Some(m) => match m.acquire_memory(&ctx, &case).await {
            crate::collect::memory::MemoryOutcome::Acquired {
                artefact,
                command_id,
            } => {
                report.phases.push(Phase {
                    phase: "memory",
                    status: "done",
                    detail: vec![format!(
                        "artefact {} (SSM command {command_id})",
                        artefact.id
                    )],
                });
                report.artefacts.push(*artefact);
                true
            }
            crate::collect::memory::MemoryOutcome::NotAcquired { reason, .. } => {
                report.phases.push(Phase {
                    phase: "memory",
                    status: "not_acquired",
                    detail: vec![reason],
                });
                false
            }
        },
        None => {
            let reason = if args.no_memory {
                "left out by the operator (--no-memory)"
            } else {
                "no S3 location to stage it: give --staging s3://BUCKET/PREFIX or use an S3 store"
            };
            rec.record(
                Some(&case),
                Action::NotAcquired,
                None,
                Some(at.clone()),
                Some(serde_json::json!({ "what": "memory", "reason": reason })),
            )?;
            report.phases.push(Phase {
                phase: "memory",
                status: "not_acquired",
                detail: vec![reason.to_owned()],
            });
            false
        }
    };

    // 3. Network isolation, then every change checked on a fresh description.
    let run = take_steps(&rec, &c, &prior, &network, &case, &at, "isolate").await?;
    isolation_failed.extend(run.failed.iter().cloned());
    done.extend(run.done);
    let not_holding = check_isolation(
        &rec,
        &c,
        &args.instance,
        &case,
        &at,
        &done,
        &isolation_failed,
    )
    .await?;
    report.phases.push(Phase {
        phase: "isolate",
        status: if run.failed.is_empty() && not_holding.is_empty() {
            "done"
        } else {
            "partial"
        },
        detail: run
            .taken
            .iter()
            .map(|t| t.step.describe())
            .chain(run.failed.iter().map(|f| format!("FAILED {f}")))
            .chain(not_holding.iter().map(|n| format!("DOES NOT HOLD {n}")))
            .collect(),
    });

    // 4. Disk: a snapshot of every volume, read through EBS direct.
    let disk_ok = match disk.collect(&ctx, &case).await {
        Ok(collected) => {
            let ok = collected.failures.is_empty() && !collected.artefacts.is_empty();
            report.phases.push(Phase {
                phase: "disk",
                status: if ok { "done" } else { "failed" },
                detail: collected
                    .artefacts
                    .iter()
                    .map(|a| format!("artefact {} ({})", a.id, a.kind.as_str()))
                    .chain(collected.failures.iter().map(|f| format!("FAILED {f}")))
                    .collect(),
            });
            report.artefacts.extend(collected.artefacts);
            ok
        }
        Err(e) => {
            report.phases.push(Phase {
                phase: "disk",
                status: "failed",
                detail: vec![crate::error_chain(&e)],
            });
            false
        }
    };

    // 5. Logs: no collector yet; said, not hidden.
    report.phases.push(Phase {
        phase: "logs",
        status: "skipped",
        detail: vec!["the instance's logs: no log collector in this version".into()],
    });

    let captured = memory_ok && disk_ok && isolation_failed.is_empty() && not_holding.is_empty();
    if let Some(then) = args.then {
        if captured {
            let request_ids = power(&c, &args.instance, then).await?;
            rec.record(
                Some(&case),
                Action::PowerChanged,
                None,
                Some(at.clone()),
                Some(serde_json::json!({ "action": then, "request_ids": request_ids })),
            )?;
            report.then_done = true;
        } else {
            report.then_reason = Some(
                "not every capture succeeded (or isolation does not hold): the instance is left running"
                    .into(),
            );
        }
    }
    rec.record(
        Some(&case),
        Action::Responded,
        None,
        Some(at),
        Some(serde_json::json!({
            "phases": report.phases,
            "then": report.then,
            "then_done": report.then_done,
            "then_reason": report.then_reason,
        })),
    )?;
    env.print(&report, || human_respond(&report))?;
    if !not_holding.is_empty() {
        eprintln!(
            "error: isolation of {} does not hold: {}",
            args.instance,
            not_holding.join("; ")
        );
        return Ok(Outcome::VerificationFailed);
    }
    let incomplete: Vec<String> = report
        .phases
        .iter()
        .filter(|p| matches!(p.status, "failed" | "partial" | "not_acquired"))
        .map(|p| format!("{}: {}", p.phase, p.status))
        .collect();
    if !incomplete.is_empty() {
        anyhow::bail!(
            "the response on {} is incomplete ({}); every step is in the ledger of case {}",
            args.instance,
            incomplete.join(", "),
            case
        );
    }
    Ok(Outcome::Ok)
}

/// Stops or terminates the instance; returns the request ids.
async fn power(c: &Clients, instance: &str, then: Then) -> anyhow::Result<Vec<String>> {
    use aws_sdk_ec2::operation::RequestId as _;
    let mut ids = Vec::new();
    match then {
        Then::Stop => {
            let out = c
                .ec2
                .stop_instances()
                .instance_ids(instance)
                .send()
                .await
                .map_err(|e| {
                    anyhow::anyhow!("cannot stop {instance}: {}", crate::aws::brief(&e))
                })?;
            ids.extend(out.request_id().map(str::to_owned));
        }
        Then::Terminate => {
            // Protection was enabled in the protect phase; lifted only now,
            // with every capture done.
            let out = c
                .ec2
                .modify_instance_attribute()
                .instance_id(instance)
                .disable_api_termination(
                    aws_sdk_ec2::types::AttributeBooleanValue::builder()
                        .value(false)
                        .build(),
                )
                .send()
                .await
                .map_err(|e| {
                    anyhow::anyhow!(
                        "cannot lift termination protection of {instance}: {}",
                        crate::aws::brief(&e)
                    )
                })?;
            ids.extend(out.request_id().map(str::to_owned));
            let out = c
                .ec2
                .terminate_instances()
                .instance_ids(instance)
                .send()
                .await
                .map_err(|e| {
                    anyhow::anyhow!("cannot terminate {instance}: {}", crate::aws::brief(&e))
                })?;
            ids.extend(out.request_id().map(str::to_owned));
        }
    }
    Ok(ids)
}

fn human_respond(r: &RespondReport) -> String {
    let mut s = if r.dry_run {
        format!(
            "plan to respond on {} (case {}), nothing changed:\n",
            r.instance, r.case
        )
    } else {
        format!("response on {} (case {}):\n", r.instance, r.case)
    };
    for (n, p) in r.phases.iter().enumerate() {
        s.push_str(&format!("{}. {} — {}\n", n + 1, p.phase, p.status));
        for d in &p.detail {
            s.push_str(&format!("     {d}\n"));
        }
    }
    match (r.then, r.then_done, &r.then_reason) {
        (Some(t), true, _) => s.push_str(&format!("then: {t:?} done\n")),
        (Some(t), false, Some(why)) => s.push_str(&format!("then: {t:?} NOT done: {why}\n")),
        _ => {}
    }
    s
}
