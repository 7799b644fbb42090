//! The whole response on an EC2 instance, in the order of volatility:
//! protect → memory → network isolation → disk → logs.
//!
//! Memory comes before the network is cut, since SSM needs the instance to
//! reach its endpoints; the disk comes after, since a snapshot does not
//! need the network and the instance can no longer change it by talking to
//! anyone. Each step is a ledger entry with the request ids AWS returned; a
//! capture that fails is recorded and the response goes on. The instance
//! is stopped or terminated only when every capture succeeded, isolation
//! holds and the operator asked for it.

use serde::Serialize;

use super::isolate::{self, Clients, InstanceState, Step};
use crate::collect::Collector as _;
use crate::collect::ebs::EbsCollector;
use crate::collect::memory::{MemoryCollector, MemoryOutcome};
use crate::evidence::case::AcquireContext;
use crate::evidence::{Artefact, Source};
use crate::ids::CaseId;
use crate::ledger::entry::Action;
use crate::ledger::{LedgerError, Recorder};

/// What to do with the instance once every capture succeeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Then {
    Stop,
    Terminate,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RespondError {
    #[error(transparent)]
    Isolate(#[from] isolate::IsolateError),
    #[error("cannot record the response in the ledger")]
    Ledger(#[from] LedgerError),
    #[error("cannot {action} {instance}: {message}")]
    Power {
        action: &'static str,
        instance: String,
        message: String,
    },
}

/// One phase of a response, as it ended.
#[derive(Debug, Clone, Serialize)]
pub struct Phase {
    pub phase: &'static str,
    /// `done`, `failed`, `partial`, `not_acquired`, `skipped` or `planned`.
    pub status: &'static str,
    pub detail: Vec<String>,
}

impl Phase {
    /// Whether the phase fell short of what was asked.
    pub fn incomplete(&self) -> bool {
        matches!(self.status, "failed" | "partial" | "not_acquired")
    }
}

/// How a response went.
#[derive(Debug, Serialize)]
pub struct Report {
    pub case: CaseId,
    pub instance: String,
    pub dry_run: bool,
    pub phases: Vec<Phase>,
    pub artefacts: Vec<Artefact>,
    /// Changes that do not hold when the instance is described again.
    pub not_holding: Vec<String>,
    /// What was asked for at the end, and what was done.
    pub then: Option<Then>,
    pub then_done: bool,
    pub then_reason: Option<String>,
}

/// Everything a response uses.
pub struct Responder<'a> {
    pub clients: &'a Clients,
    pub recorder: &'a Recorder,
    pub ctx: &'a AcquireContext,
    /// The memory collector, or why memory is left out.
    pub memory: Result<&'a MemoryCollector, String>,
    pub disk: &'a EbsCollector,
    /// The logs phase's sources (the account's CloudTrail, the instance's
    /// flow logs), and what was found or not found of them.
    pub logs: &'a [Box<dyn crate::collect::Collector>],
    pub logs_notes: &'a [String],
    pub region: Option<String>,
    /// The prior state is already in the ledger (a response resumed after a
    /// crash): the state described now is the partly isolated one, and
    /// must not replace it.
    pub prior_recorded: bool,
}

/// The isolation steps, split into the protecting ones (taken first) and
/// the network ones (taken after memory).
pub fn split(steps: Vec<Step>) -> (Vec<Step>, Vec<Step>) {
    steps.into_iter().partition(|step| {
        matches!(
            step,
            Step::TerminationProtection
                | Step::ShutdownBehaviorStop
                | Step::KeepVolumes { .. }
                | Step::DetachFromAutoScaling { .. }
        )
    })
}

const LOGS_NOTE: &str = "no log source in this build (feature timeline): collect the logs into the case with `custody logs cloudtrail` or `custody logs lookup`";

/// The phases a response would run, with their steps; nothing is changed.
pub fn plan(
    protect: &[Step],
    memory: &Result<&MemoryCollector, String>,
    network: &[Step],
    disk: &EbsCollector,
    logs: &[String],
) -> Vec<Phase> {
    let planned = |phase, detail| Phase {
        phase,
        status: "planned",
        detail,
    };
    vec![
        planned("protect", protect.iter().map(Step::describe).collect()),
        planned(
            "memory",
            vec![match memory {
                Ok(m) => m.describe(),
                Err(why) => format!("left out: {why}"),
            }],
        ),
        planned("isolate", network.iter().map(Step::describe).collect()),
        planned("disk", vec![disk.describe()]),
        planned("logs", logs.to_vec()),
    ]
}

fn place(instance: &str, region: &Option<String>) -> Source {
    Source {
        resource: instance.to_owned(),
        region: region.clone(),
        ..Source::default()
    }
}

/// Records the instance's state before anything changes: release depends on it.
pub fn record_prior(
    rec: &Recorder,
    case: &CaseId,
    at: &Source,
    prior: &InstanceState,
) -> Result<(), RespondError> {
    rec.record(
        Some(case),
        Action::StateRecorded,
        None,
        Some(at.clone()),
        Some(serde_json::json!({ "prior": prior })),
    )?;
    Ok(())
}

/// What a run of isolation steps came to.
#[derive(Debug, Default)]
pub struct StepsRun {
    pub done: Vec<Step>,
    pub taken: Vec<isolate::Taken>,
    pub failed: Vec<String>,
}

/// Takes `steps` in order, each recorded with the request ids AWS returned;
/// a step that fails is recorded and the others still go ahead, since a
/// partly isolated instance is better than one left as it was.
pub async fn take_steps(
    rec: &Recorder,
    c: &Clients,
    prior: &InstanceState,
    steps: &[Step],
    case: &CaseId,
    at: &Source,
    phase: &str,
) -> Result<StepsRun, RespondError> {
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
pub async fn check_isolation(
    rec: &Recorder,
    c: &Clients,
    instance: &str,
    case: &CaseId,
    at: &Source,
    done: &[Step],
    failed: &[String],
) -> Result<Vec<String>, RespondError> {
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

impl Responder<'_> {
    /// Runs the response on `instance`, whose state `prior` was described
    /// just before; `protect` and `network` come from [`split`].
    pub async fn run(
        &self,
        instance: &str,
        case: &CaseId,
        prior: &InstanceState,
        protect: &[Step],
        network: &[Step],
        then: Option<Then>,
    ) -> Result<Report, RespondError> {
        let (rec, c) = (self.recorder, self.clients);
        let at = place(instance, &self.region);
        let mut report = Report {
            case: case.clone(),
            instance: instance.to_owned(),
            dry_run: false,
            phases: Vec::new(),
            artefacts: Vec::new(),
            not_holding: Vec::new(),
            then,
            then_done: false,
            then_reason: None,
        };
        if !self.prior_recorded {
            record_prior(rec, case, &at, prior)?;
        }

        // 1. Protect: nothing the instance or its group does may destroy it now.
        let run = take_steps(rec, c, prior, protect, case, &at, "protect").await?;
        let mut failed = run.failed.clone();
        let mut done = run.done;
        report
            .phases
            .push(steps_phase("protect", &run.taken, &run.failed, &[]));

        // 2. Memory, the most volatile, while the instance can reach SSM.
        let (phase, memory) = self.memory_phase(case, &at).await?;
        report.phases.push(phase);
        let memory_ok = memory.is_some();
        report.artefacts.extend(memory);

        // 3. Network isolation, then every change checked on a fresh description.
        let run = take_steps(rec, c, prior, network, case, &at, "isolate").await?;
        failed.extend(run.failed.iter().cloned());
        done.extend(run.done);
        report.not_holding = check_isolation(rec, c, instance, case, &at, &done, &failed).await?;
        report.phases.push(steps_phase(
            "isolate",
            &run.taken,
            &run.failed,
            &report.not_holding,
        ));

        // 4. Disk: a snapshot of every volume, read through EBS direct.
        let (phase, artefacts) = self.disk_phase(case).await;
        let disk_ok = phase.status == "done";
        report.phases.push(phase);
        report.artefacts.extend(artefacts);

        // 5. Logs: the account's CloudTrail and the instance's own flow
        // logs for the window; AWS keeps them, so a failure here is said
        // and does not make the response incomplete.
        let (phase, artefacts) = self.logs_phase(case).await;
        report.phases.push(phase);
        report.artefacts.extend(artefacts);

        if let Some(then) = then {
            if memory_ok && disk_ok && failed.is_empty() && report.not_holding.is_empty() {
                let request_ids = power(c, instance, then).await?;
                rec.record(
                    Some(case),
                    Action::PowerChanged,
                    None,
                    Some(at.clone()),
                    Some(serde_json::json!({ "action": then, "request_ids": request_ids })),
                )?;
                report.then_done = true;
            } else {
                report.then_reason = Some(
                    "not every capture succeeded, or isolation does not hold: the instance is left running"
                        .into(),
                );
            }
        }
        rec.record(
            Some(case),
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
        Ok(report)
    }
}

impl Responder<'_> {
    /// The memory phase: the capture, or why it was not taken (recorded).
    async fn memory_phase(
        &self,
        case: &CaseId,
        at: &Source,
    ) -> Result<(Phase, Option<Artefact>), RespondError> {
        let phase = |status, detail| Phase {
            phase: "memory",
            status,
            detail: vec![detail],
        };
        Ok(match &self.memory {
            Ok(m) => match m.acquire_memory(self.ctx, case).await {
                MemoryOutcome::Acquired {
                    artefact,
                    command_id,
                } => (
                    phase(
                        "done",
                        format!("artefact {} (SSM command {command_id})", artefact.id),
                    ),
                    Some(*artefact),
                ),
                MemoryOutcome::NotAcquired { reason, .. } => (phase("not_acquired", reason), None),
            },
            Err(reason) => {
                self.recorder.record(
                    Some(case),
                    Action::NotAcquired,
                    None,
                    Some(at.clone()),
                    Some(serde_json::json!({ "what": "memory", "reason": reason })),
                )?;
                (phase("not_acquired", reason.clone()), None)
            }
        })
    }

    /// The disk phase: every volume, each failure said in the phase (the
    /// collector records it).
    async fn disk_phase(&self, case: &CaseId) -> (Phase, Vec<Artefact>) {
        match self.disk.collect(self.ctx, case).await {
            Ok(collected) => {
                let ok = collected.failures.is_empty() && !collected.artefacts.is_empty();
                let phase = Phase {
                    phase: "disk",
                    status: if ok { "done" } else { "failed" },
                    detail: collected
                        .artefacts
                        .iter()
                        .map(|a| format!("artefact {} ({})", a.id, a.kind.as_str()))
                        .chain(collected.failures.iter().map(|f| format!("FAILED {f}")))
                        .collect(),
                };
                (phase, collected.artefacts)
            }
            Err(e) => (
                Phase {
                    phase: "disk",
                    status: "failed",
                    detail: vec![crate::error_chain(&e)],
                },
                Vec::new(),
            ),
        }
    }

    async fn logs_phase(&self, case: &CaseId) -> (Phase, Vec<Artefact>) {
        let mut detail: Vec<String> = self.logs_notes.to_vec();
        let mut artefacts = Vec::new();
        let mut failed = 0usize;
        for c in self.logs {
            match c.collect(self.ctx, case).await {
                Ok(got) => {
                    for a in &got.artefacts {
                        detail.push(format!("artefact {} ({})", a.id, c.describe()));
                    }
                    failed += got.failures.len();
                    detail.extend(got.failures.iter().map(|f| format!("FAILED {f}")));
                    artefacts.extend(got.artefacts);
                }
                Err(e) => {
                    failed += 1;
                    detail.push(format!(
                        "FAILED {}: {}",
                        c.describe(),
                        crate::error_chain(&e)
                    ));
                }
            }
        }
        let status = match (artefacts.is_empty(), failed) {
            (_, 0) if self.logs.is_empty() => "skipped",
            (_, 0) => "done",
            (false, _) => "partial",
            (true, _) => "failed",
        };
        if self.logs.is_empty() && detail.is_empty() {
            detail.push(LOGS_NOTE.into());
        }
        (
            Phase {
                phase: "logs",
                status,
                detail,
            },
            artefacts,
        )
    }

    /// The disk alone: nothing on the instance changes.
    pub async fn disk_only(&self, instance: &str, case: &CaseId) -> Report {
        let (phase, artefacts) = self.disk_phase(case).await;
        Report {
            case: case.clone(),
            instance: instance.to_owned(),
            dry_run: false,
            phases: vec![phase],
            artefacts,
            not_holding: Vec::new(),
            then: None,
            then_done: false,
            then_reason: None,
        }
    }
}

impl Responder<'_> {
    /// Isolation alone (protect, then the network), checked; no capture.
    pub async fn isolate_only(
        &self,
        instance: &str,
        case: &CaseId,
        prior: &InstanceState,
        protect: &[Step],
        network: &[Step],
    ) -> Result<Report, RespondError> {
        let (rec, c) = (self.recorder, self.clients);
        let at = place(instance, &self.region);
        if !self.prior_recorded {
            record_prior(rec, case, &at, prior)?;
        }
        let mut steps: Vec<Step> = protect.to_vec();
        steps.extend_from_slice(network);
        let run = take_steps(rec, c, prior, &steps, case, &at, "isolate").await?;
        let not_holding =
            check_isolation(rec, c, instance, case, &at, &run.done, &run.failed).await?;
        Ok(Report {
            case: case.clone(),
            instance: instance.to_owned(),
            dry_run: false,
            phases: vec![steps_phase(
                "isolate",
                &run.taken,
                &run.failed,
                &not_holding,
            )],
            artefacts: Vec::new(),
            not_holding,
            then: None,
            then_done: false,
            then_reason: None,
        })
    }
}

fn steps_phase(
    phase: &'static str,
    taken: &[isolate::Taken],
    failed: &[String],
    not_holding: &[String],
) -> Phase {
    Phase {
        phase,
        status: if failed.is_empty() && not_holding.is_empty() {
            "done"
        } else {
            "partial"
        },
        detail: taken
            .iter()
            .map(|t| t.step.describe())
            .chain(failed.iter().map(|f| format!("FAILED {f}")))
            .chain(not_holding.iter().map(|n| format!("DOES NOT HOLD {n}")))
            .collect(),
    }
}

/// Stops or terminates the instance; returns the request ids.
async fn power(c: &Clients, instance: &str, then: Then) -> Result<Vec<String>, RespondError> {
    use aws_sdk_ec2::operation::RequestId as _;
    let fail = |action, e: &(dyn std::error::Error + 'static)| RespondError::Power {
        action,
        instance: instance.to_owned(),
        message: crate::aws::brief(e),
    };
    let mut ids = Vec::new();
    match then {
        Then::Stop => {
            let out = c
                .ec2
                .stop_instances()
                .instance_ids(instance)
                .send()
                .await
                .map_err(|e| fail("stop", &e))?;
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
                .map_err(|e| fail("lift the termination protection of", &e))?;
            ids.extend(out.request_id().map(str::to_owned));
            let out = c
                .ec2
                .terminate_instances()
                .instance_ids(instance)
                .send()
                .await
                .map_err(|e| fail("terminate", &e))?;
            ids.extend(out.request_id().map(str::to_owned));
        }
    }
    Ok(ids)
}
