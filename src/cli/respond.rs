//! `custody isolate` and `custody release`.

use anyhow::Context;

use super::{Env, Outcome};
use crate::evidence::Source;
use crate::ids::CaseId;
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
    let mut done = Vec::new();
    for step in &steps {
        match isolate::take(&c, &prior, step).await {
            Ok((step, request_ids)) => {
                tracing::info!(instance = %args.instance, step = %step.describe(), "isolation step taken");
                let taken = isolate::Taken {
                    step: step.clone(),
                    request_ids,
                };
                rec.record(
                    Some(&case),
                    Action::Isolated,
                    None,
                    Some(at.clone()),
                    Some(serde_json::json!(taken)),
                )?;
                done.push(step);
                report.taken.push(taken);
            }
            Err(e) => {
                // The other steps still go ahead: a partly isolated instance
                // is better than one left as it was.
                let what = format!("{}: {e}", step.describe());
                tracing::error!(instance = %args.instance, error = %what, "isolation step failed");
                rec.record(
                    Some(&case),
                    Action::Failed,
                    None,
                    Some(at.clone()),
                    Some(serde_json::json!({ "step": step, "error": e.to_string() })),
                )?;
                report.failed.push(what);
            }
        }
    }
    let now = isolate::describe(&c, &args.instance).await?;
    report.not_holding = isolate::check(&now, &done);
    rec.record(
        Some(&case),
        Action::IsolationChecked,
        None,
        Some(at),
        Some(serde_json::json!({
            "holding": report.not_holding.is_empty(),
            "not_holding": report.not_holding,
            "failed": report.failed,
        })),
    )?;
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
