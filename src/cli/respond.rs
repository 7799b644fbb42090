//! `custody isolate`, `custody release` and `custody respond`: flags into
//! the engine's requests, and its reports printed.

use std::time::Duration;

use anyhow::Context;

use super::{Env, Outcome};
use crate::engine::request::{
    IsolateRequest, MemoryChoice, PlanContext, ResponseRequest, Scope, limits,
};
use crate::engine::response::{self, Isolated, Released};
use crate::engine::workload;
use crate::ids::CaseId;
use crate::respond::order::{self, Then};

#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct IsolateArgs {
    /// Another kind of workload to isolate.
    #[command(subcommand)]
    pub workload: Option<IsolateWorkload>,
    /// The EC2 instance to isolate.
    #[arg(long, value_name = "i-…", required = true)]
    pub instance: Option<String>,
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
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct ReleaseArgs {
    /// Another kind of workload to release.
    #[command(subcommand)]
    pub workload: Option<ReleaseWorkload>,
    /// The EC2 instance to put back as it was before custody isolated it.
    #[arg(long, value_name = "i-…", required = true)]
    pub instance: Option<String>,
}

#[derive(Debug, clap::Subcommand)]
pub enum IsolateWorkload {
    /// A Lambda function: reserved concurrency 0 (no invocation runs), its
    /// prior value recorded first.
    Lambda(FunctionArgs),
    /// An ECS task: scale-in protection on, then its own security groups
    /// rewritten to allow everything (untracking flows), then nothing;
    /// refused when a group is shared with another interface.
    Ecs(TaskArgs),
}

#[derive(Debug, clap::Subcommand)]
pub enum ReleaseWorkload {
    /// A Lambda function: its recorded reserved concurrency restored.
    Lambda(FunctionArg),
    /// An ECS task: its groups' recorded rules and its protection restored.
    Ecs(TaskArg),
}

#[derive(Debug, clap::Args)]
pub struct TaskArg {
    /// The cluster's name or ARN.
    #[arg(long, value_name = "C")]
    pub cluster: String,
    /// The task's id or ARN.
    #[arg(long, value_name = "T")]
    pub task: String,
}

#[derive(Debug, clap::Args)]
pub struct TaskArgs {
    #[command(flatten)]
    pub task: TaskArg,
    /// Case the isolation belongs to; a new id is generated when omitted.
    #[arg(long, value_name = "ID")]
    pub case: Option<CaseId>,
    /// Print the plan and change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, clap::Args)]
pub struct FunctionArgs {
    #[command(flatten)]
    pub function: FunctionArg,
    /// Case the isolation belongs to; a new id is generated when omitted.
    #[arg(long, value_name = "ID")]
    pub case: Option<CaseId>,
    /// Print the plan and change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, clap::Args)]
pub struct FunctionArg {
    /// The function's name or ARN.
    #[arg(long, value_name = "NAME|ARN")]
    pub function: String,
}

fn plan_context(env: &Env) -> PlanContext<'_> {
    PlanContext {
        now: env.clock.now(),
        store_url: &env.config.store,
    }
}

pub async fn run_isolate(env: &Env, args: IsolateArgs) -> anyhow::Result<Outcome> {
    match args.workload {
        Some(IsolateWorkload::Lambda(a)) => return isolate_function(env, a).await,
        Some(IsolateWorkload::Ecs(a)) => return isolate_task(env, a).await,
        None => {}
    }
    let instance = args
        .instance
        .context("give --instance, or a workload: lambda, ecs")?;
    let plan = IsolateRequest {
        instance: instance.clone(),
        case: args.case.clone(),
        revoke_role: args.revoke_role,
        dry_run: args.dry_run,
    }
    .validate(&plan_context(env))?;
    let report = response::isolate_instance(env, &plan).await?;
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
            instance,
            report.not_holding.join("; ")
        );
        return Ok(Outcome::VerificationFailed);
    }
    Ok(Outcome::Ok)
}

fn human_isolate(r: &Isolated) -> String {
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

/// What isolating a workload did, printed, and its exit: the plan, each
/// step done with its request ids, a refusal, what does not hold.
struct IsolationView<'a> {
    resource: &'a str,
    case: &'a CaseId,
    dry_run: bool,
    plan: &'a [String],
    taken: &'a [(String, Vec<String>)],
    refused: Option<&'a str>,
    not_holding: &'a [String],
}

fn isolation_outcome(
    env: &Env,
    report: &impl serde::Serialize,
    v: &IsolationView<'_>,
) -> anyhow::Result<Outcome> {
    env.print(report, || {
        let mut s = if v.dry_run {
            format!(
                "plan for {} (case {}), nothing changed:\n",
                v.resource, v.case
            )
        } else {
            format!("{} (case {}):\n", v.resource, v.case)
        };
        for p in v.plan {
            s.push_str(&format!("  {p}\n"));
        }
        for (what, ids) in v.taken {
            s.push_str(&format!("  done {what} (request {})\n", ids.join(", ")));
        }
        if let Some(why) = v.refused {
            s.push_str(&format!("  NETWORK NOT ISOLATED {why}\n"));
        }
        for n in v.not_holding {
            s.push_str(&format!("  DOES NOT HOLD {n}\n"));
        }
        s
    })?;
    if let Some(why) = v.refused {
        anyhow::bail!("{why}");
    }
    if v.not_holding.is_empty() {
        Ok(Outcome::Ok)
    } else {
        eprintln!(
            "error: isolation of {} does not hold: {}",
            v.resource,
            v.not_holding.join("; ")
        );
        Ok(Outcome::VerificationFailed)
    }
}

/// What a release put back, printed, and its exit: 1 when something still differs.
fn release_outcome(
    env: &Env,
    report: &impl serde::Serialize,
    resource: &str,
    prior_entry: u64,
    restored: &[(String, Vec<String>)],
    differences: &[String],
) -> anyhow::Result<Outcome> {
    env.print(report, || {
        let mut s =
            format!("released {resource} to the state recorded in ledger entry {prior_entry}:\n");
        for (what, ids) in restored {
            s.push_str(&format!("  restored {what} (request {})\n", ids.join(", ")));
        }
        for d in differences {
            s.push_str(&format!("  STILL DIFFERS {d}\n"));
        }
        s
    })?;
    if differences.is_empty() {
        Ok(Outcome::Ok)
    } else {
        eprintln!(
            "error: {resource} is not back to its recorded state: {}",
            differences.join("; ")
        );
        Ok(Outcome::VerificationFailed)
    }
}

async fn isolate_function(env: &Env, a: FunctionArgs) -> anyhow::Result<Outcome> {
    let case = a.case.unwrap_or_else(|| CaseId::generate(env.clock.now()));
    let r =
        workload::isolate_function(env, &env.recorder()?, &a.function.function, case, a.dry_run)
            .await?;
    let view = IsolationView {
        resource: &r.function,
        case: &r.case,
        dry_run: r.dry_run,
        plan: &r.plan,
        taken: &r.taken,
        refused: None,
        not_holding: &r.not_holding,
    };
    isolation_outcome(env, &r, &view)
}

async fn isolate_task(env: &Env, a: TaskArgs) -> anyhow::Result<Outcome> {
    let case = a.case.unwrap_or_else(|| CaseId::generate(env.clock.now()));
    let rec = env.recorder()?;
    let (cluster, task) = (&a.task.cluster, &a.task.task);
    let r = workload::isolate_task(env, &rec, cluster, task, case, a.dry_run).await?;
    let view = IsolationView {
        resource: &r.task,
        case: &r.case,
        dry_run: r.dry_run,
        plan: &r.plan,
        taken: &r.taken,
        refused: r.refused.as_deref(),
        not_holding: &r.not_holding,
    };
    isolation_outcome(env, &r, &view)
}

async fn release_task(env: &Env, a: &TaskArg) -> anyhow::Result<Outcome> {
    let r = workload::release_task(env, &a.cluster, &a.task).await?;
    release_outcome(env, &r, &r.task, r.prior_entry, &r.restored, &r.differences)
}

async fn release_function(env: &Env, function: &str) -> anyhow::Result<Outcome> {
    let r = workload::release_function(env, function).await?;
    release_outcome(
        env,
        &r,
        &r.function,
        r.prior_entry,
        &r.restored,
        &r.differences,
    )
}

pub async fn run_release(env: &Env, args: ReleaseArgs) -> anyhow::Result<Outcome> {
    match &args.workload {
        Some(ReleaseWorkload::Lambda(a)) => return release_function(env, &a.function).await,
        Some(ReleaseWorkload::Ecs(a)) => return release_task(env, a).await,
        None => {}
    }
    let instance = args
        .instance
        .context("give --instance, or a workload: lambda, ecs")?;
    let report: Released = response::release(env, &instance).await?;
    release_outcome(
        env,
        &report,
        &report.instance,
        report.prior_entry,
        &report.restored,
        &report.differences,
    )
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
    pub memory: crate::cli::acquire::ec2::MemoryOptions,
    /// Longest wait for the memory command, in seconds.
    #[arg(long, default_value_t = crate::collect::memory::DEFAULT_TIMEOUT.as_secs(), value_name = "SECS", value_parser = clap::value_parser!(u64).range(limits::MEMORY_TIMEOUT_SECS))]
    pub memory_timeout: u64,
    /// EBS blocks requested ahead of the pipeline (512 KiB each); raise it
    /// where the service's latency needs it (each costs up to about 1 MiB).
    #[arg(long, default_value_t = crate::collect::ebs::DEFAULT_WINDOW as u16, value_parser = clap::value_parser!(u16).range(i64::from(*limits::EBS_WINDOW.start())..=i64::from(*limits::EBS_WINDOW.end())))]
    pub window: u16,
    /// Longest wait for each volume's snapshot, in seconds.
    #[arg(long, default_value_t = limits::SNAPSHOT_TIMEOUT_SECS, value_name = "SECS")]
    pub snapshot_timeout: u64,
    /// Stop or terminate the instance at the end, only if every capture
    /// (memory and every volume) succeeded and isolation holds.
    #[arg(long, value_enum, value_name = "ACTION")]
    pub then: Option<Then>,
    /// The logs phase reads the account's CloudTrail and the instance's
    /// flow logs this many hours back from now.
    #[arg(long, default_value_t = limits::LOGS_HOURS, value_name = "HOURS")]
    pub logs_hours: u32,
    #[cfg(feature = "timeline")]
    #[command(flatten)]
    pub process: crate::cli::acquire::ProcessFlag,
}

impl RespondArgs {
    fn request(&self) -> ResponseRequest {
        ResponseRequest {
            instance: self.instance.clone(),
            case: self.case.clone(),
            scope: Scope::Full,
            revoke_role: self.revoke_role,
            memory: if self.no_memory {
                MemoryChoice::LeaveOut("left out by the operator (--no-memory)".to_owned())
            } else {
                MemoryChoice::Take {
                    staging: self.memory.request(),
                    timeout: Duration::from_secs(self.memory_timeout),
                }
            },
            window: self.window,
            snapshot_timeout: Duration::from_secs(self.snapshot_timeout),
            then: self.then,
            resume: false,
            logs_hours: self.logs_hours,
            kept_snapshots: None,
        }
    }
}

/// `custody respond`: protect → memory → network isolation → disk → logs.
pub async fn run_respond(env: &Env, args: RespondArgs) -> anyhow::Result<Outcome> {
    let plan = args.request().validate(&plan_context(env))?;
    let prepared = response::prepare(env, &plan).await?;
    if args.dry_run {
        let report = order::Report {
            case: plan.case.clone(),
            instance: plan.instance.clone(),
            dry_run: true,
            phases: prepared.phases(),
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
    let report = response::respond(env, &rec, &plan, prepared)
        .await
        .with_context(|| format!("the response on {} stopped", args.instance))?;
    // The images are processed once taken, whatever else fell short: what
    // was captured is worth reading. One document on stdout.
    #[cfg(feature = "timeline")]
    if let Some(depth) = args.process.process {
        let processed =
            crate::engine::process::process_acquired(env, &plan.case, &report.artefacts, depth)
                .await;
        let both = serde_json::json!({
            "response": &report,
            "processed": processed.as_ref().ok(),
        });
        env.print(&both, || {
            let mut s = human_respond(&report);
            if let Ok(p) = &processed {
                s.push_str(&super::process::human(p));
            }
            s
        })?;
        processed.with_context(|| format!("cannot process the images of case {}", plan.case))?;
    } else {
        env.print(&report, || human_respond(&report))?;
    }
    #[cfg(not(feature = "timeline"))]
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
            plan.case
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
