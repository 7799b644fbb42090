//! `custody isolate` and `custody release`.

use anyhow::Context;

use super::{Env, Outcome};
use crate::evidence::Source;
use crate::ids::CaseId;
use crate::ledger::entry::Action;
use crate::respond::isolate::{self, Clients, InstanceState, Options, Step};
use crate::respond::order::{self, Then, check_isolation, record_prior, take_steps};

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
    record_prior(&rec, &case, &at, &prior)?;
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
    #[command(flatten)]
    pub memory: crate::cli::acquire::MemoryOptions,
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

/// A response made ready: the instance described, the steps planned, the
/// collectors built. Nothing has changed yet.
pub(crate) struct Prepared {
    pub clients: Clients,
    pub region: Option<String>,
    pub prior: InstanceState,
    pub protect: Vec<Step>,
    pub network: Vec<Step>,
    pub memory: Result<crate::collect::memory::MemoryCollector, String>,
    pub disk: crate::collect::ebs::EbsCollector,
}

/// Describes `instance`, plans the steps and builds the collectors. Bad
/// memory options are refused here, before anything changes; a store that
/// is not in S3 only means memory cannot be staged.
pub(crate) async fn prepare(
    env: &Env,
    args: &RespondArgs,
    case: &CaseId,
) -> anyhow::Result<Prepared> {
    use crate::cli::acquire::{CaseArg, EbsArgs, MemoryArgs};
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
    let (protect, network) = order::split(steps);
    let case_arg = || CaseArg {
        case: Some(case.clone()),
        verify: false,
    };
    let staging_known = args.memory.staging.is_some() || env.config.store.starts_with("s3://");
    let memory = if args.no_memory {
        Err("left out by the operator (--no-memory)".to_owned())
    } else if !staging_known {
        Err(
            "no S3 location to stage it: give --staging s3://BUCKET/PREFIX or use an S3 store"
                .to_owned(),
        )
    } else {
        Ok(crate::cli::acquire::memory_collector(
            env,
            &MemoryArgs {
                instance: args.instance.clone(),
                case: case_arg(),
                memory: args.memory.clone(),
                timeout: args.memory_timeout,
                part_mib: None,
            },
        )
        .await?)
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
    Ok(Prepared {
        clients: c,
        region,
        prior,
        protect,
        network,
        memory,
        disk,
    })
}

/// `custody respond`: protect → memory → network isolation → disk → logs.
pub async fn run_respond(env: &Env, args: RespondArgs) -> anyhow::Result<Outcome> {
    let case = args
        .case
        .clone()
        .unwrap_or_else(|| CaseId::generate(env.clock.now()));
    let Prepared {
        clients: c,
        region,
        prior,
        protect,
        network,
        memory,
        disk,
    } = prepare(env, &args, &case).await?;
    let memory = memory.as_ref().map_err(Clone::clone);
    if args.dry_run {
        let report = order::Report {
            case,
            instance: args.instance.clone(),
            dry_run: true,
            phases: order::plan(&protect, &memory, &network, &disk),
            artefacts: Vec::new(),
            not_holding: Vec::new(),
            then: args.then,
            then_done: false,
            then_reason: None,
        };
        env.print(&report, || human_respond(&report))?;
        return Ok(Outcome::Ok);
    }
    let rec = env.recorder()?;
    let ctx = env.acquire_context().await?;
    let responder = order::Responder {
        clients: &c,
        recorder: &rec,
        ctx: &ctx,
        memory,
        disk: &disk,
        region,
        prior_recorded: false,
    };
    let report = responder
        .run(&args.instance, &case, &prior, &protect, &network, args.then)
        .await
        .with_context(|| format!("the response on {} stopped", args.instance))?;
    env.print(&report, || human_respond(&report))?;
    if !report.not_holding.is_empty() {
        eprintln!(
            "error: isolation of {} does not hold: {}",
            args.instance,
            report.not_holding.join("; ")
        );
        return Ok(Outcome::VerificationFailed);
    }
    let incomplete: Vec<String> = report
        .phases
        .iter()
        .filter(|p| p.incomplete())
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

fn human_respond(r: &order::Report) -> String {
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
