//! How the server carries out a job: the alert and its playbook rule become
//! the engine's typed requests ([`response_request`], pure and unit-tested),
//! validated and run by the same engine functions the command line calls,
//! every step recorded with the alert as its reason.

use async_trait::async_trait;

use super::playbook::{Action, Rule};
use super::server::Recording;
use super::worker::{JobError, JobRunner};
use crate::alert::Alert;
use crate::engine::request::{
    MemoryChoice, PlanContext, ResponsePlan, ResponseRequest, Scope, StagingRequest,
};
use crate::engine::response::{self, shortfalls};
use crate::engine::{App, AppError, EngineError};
use crate::ids::CaseId;
use crate::ledger::entry::{Action as LedgerAction, Reason};
use crate::ledger::{LedgerError, Recorder};
use crate::queue::Job;
use crate::readiness::audit::{AuditOptions, Audited};

/// The ledger's readiness, as intake asks for it.
pub struct LedgerRecording(pub App);

impl Recording for LedgerRecording {
    fn ready(&self) -> Result<(), LedgerError> {
        self.0.ledger_ready()
    }
}

/// The engine's request for one action on one instance, as a rule asks it.
/// `None` for [`Action::Record`], which acts on nothing.
pub fn response_request(
    instance: &str,
    case: &CaseId,
    action: Action,
    rule: Option<&Rule>,
    staging: Option<&str>,
) -> Option<ResponseRequest> {
    let scope = match action {
        Action::Respond => Scope::Full,
        Action::Isolate => Scope::IsolateOnly,
        Action::AcquireDisk => Scope::DiskOnly,
        Action::Record => return None,
    };
    let mut r = ResponseRequest::new(instance, scope);
    r.case = Some(case.clone());
    r.revoke_role = rule.is_some_and(|r| r.revoke_role);
    // A job may have started before a crash: the prior state it recorded stands.
    r.resume = true;
    r.memory = match rule.filter(|r| !r.memory) {
        Some(rule) => MemoryChoice::LeaveOut(format!(
            "left out by playbook rule {} (memory = false)",
            rule.name
        )),
        None => MemoryChoice::Take {
            staging: StagingRequest {
                staging: staging.map(str::to_owned),
                avml: None,
            },
            timeout: crate::collect::memory::DEFAULT_TIMEOUT,
        },
    };
    Some(r)
}

/// The snapshots GuardDuty Malware Protection kept of an alert's instance,
/// for a response to read instead of snapshotting the disks again. An alert
/// naming several instances names none of them here: which instance each
/// snapshot is of is not said, so each instance is snapshotted itself.
pub fn kept_snapshots(alert: &Alert) -> Option<(Vec<String>, String)> {
    let e = &alert.entities;
    (e.instances.len() == 1 && !e.snapshots.is_empty())
        .then(|| (e.snapshots.clone(), kept_by(alert)))
}

/// Who made the snapshots an alert names, as the image's notes say it.
fn kept_by(alert: &Alert) -> String {
    format!(
        "made by GuardDuty Malware Protection for finding {}",
        alert.id
    )
}

/// Carries out jobs through the engine.
pub struct AppRunner {
    pub app: App,
    /// The server's `dry_run`: every alert is recorded, nothing changed.
    pub dry_run: bool,
    /// Where instances upload memory, when the store is not in S3.
    pub staging: Option<String>,
}

#[async_trait]
impl JobRunner for AppRunner {
    async fn run(
        &self,
        job: &Job,
        alert: &Alert,
        rule: Option<&Rule>,
    ) -> Result<serde_json::Value, JobError> {
        // A ledger a failed commit left unusable is reopened (its tail
        // recovered) before anything is looked up in it; while that fails,
        // for whatever reason, the job waits rather than fails.
        if let Err(e) = self.app.ledger_ready() {
            return Err(JobError::Unrecorded(crate::error_chain(&e)));
        }
        self.run_job(job, alert, rule).await.map_err(|e| match e {
            RunError::Engine(e) if e.unrecorded() => JobError::Unrecorded(crate::error_chain(&e)),
            e => JobError::Failed(crate::error_chain(&e)),
        })
    }
}

/// Why a job did not finish, before it is sorted into retried or failed.
#[derive(Debug, thiserror::Error)]
enum RunError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("{0}")]
    Incomplete(String),
}

impl From<LedgerError> for RunError {
    fn from(e: LedgerError) -> Self {
        Self::Engine(e.into())
    }
}

impl From<AppError> for RunError {
    fn from(e: AppError) -> Self {
        Self::Engine(e.into())
    }
}

impl AppRunner {
    fn recorder(&self, job: &Job, alert: &Alert) -> Result<Recorder, RunError> {
        Ok(self.app.recorder_for(
            "webhook",
            Reason::Alert {
                source: job.source.clone(),
                id: alert.id.clone(),
            },
        )?)
    }

    /// Records the alert once per job: a job resumed after a crash, or put
    /// back because the ledger could not record, may have recorded it.
    fn record_alert(
        &self,
        rec: &Recorder,
        job: &Job,
        alert: &Alert,
        rule: Option<&Rule>,
        dry_run: bool,
    ) -> Result<(), RunError> {
        let action = rule.map_or(Action::Record, |r| r.action);
        let resumed = job
            .steps
            .iter()
            .any(|s| s.get("state").and_then(|v| v.as_str()) == Some("running"));
        let seen = resumed
            && rec.case_entries(&job.case)?.into_iter().any(|(_, _, e)| {
                e.action == LedgerAction::AlertReceived
                    && e.detail
                        .as_ref()
                        .and_then(|d| d.get("job"))
                        .and_then(|j| j.as_str())
                        == Some(job.id.as_str())
            });
        if !seen {
            rec.record(
                Some(&job.case),
                LedgerAction::AlertReceived,
                None,
                None,
                Some(serde_json::json!({
                    "job": job.id,
                    "title": alert.title,
                    "finding_type": alert.finding_type,
                    "severity": alert.severity,
                    "entities": alert.entities,
                    "rule": rule.map(|r| r.name.clone()),
                    "action": action.as_str(),
                    "dry_run": dry_run,
                })),
            )?;
        }
        Ok(())
    }

    async fn run_job(
        &self,
        job: &Job,
        alert: &Alert,
        rule: Option<&Rule>,
    ) -> Result<serde_json::Value, RunError> {
        let rec = self.recorder(job, alert)?;
        let action = rule.map_or(Action::Record, |r| r.action);
        let dry_run = self.dry_run || rule.is_some_and(|r| r.dry_run);
        self.record_alert(&rec, job, alert, rule, dry_run)?;
        let e = &alert.entities;
        let instances = &e.instances;
        let mut detail = serde_json::Map::new();
        detail.insert("action".into(), action.as_str().into());
        detail.insert("dry_run".into(), dry_run.into());
        detail.insert("instances".into(), serde_json::json!(instances));
        for (k, v) in [
            ("functions", &e.functions),
            ("tasks", &e.tasks),
            ("clusters", &e.clusters),
            ("snapshots", &e.snapshots),
        ] {
            if !v.is_empty() {
                detail.insert(k.into(), serde_json::json!(v));
            }
        }
        if action == Action::Record || dry_run {
            return Ok(detail.into());
        }
        if !e.has_workloads() {
            detail.insert(
                "note".into(),
                "the alert names nothing to act on: recorded only".into(),
            );
            return Ok(detail.into());
        }
        let mut results = Vec::new();
        let mut failures = Vec::new();
        let mut bytes = 0u64;
        self.act_on_workloads(
            &rec,
            job,
            alert,
            action,
            &mut results,
            &mut failures,
            &mut bytes,
        )
        .await?;
        // A disk GuardDuty kept (Malware Protection) is the evidence: it is
        // acquired above, and the instance's disk is not snapshotted again.
        let instances: &[String] = if action == Action::AcquireDisk && !e.snapshots.is_empty() {
            &[]
        } else {
            instances
        };
        for instance in instances {
            match self
                .act(&rec, &job.case, instance, action, rule, alert)
                .await
            {
                Ok((summary, b)) => {
                    bytes += b;
                    results.push(summary);
                }
                // The ledger could not record: the whole job runs again.
                Err(RunError::Engine(e)) if e.unrecorded() => return Err(e.into()),
                Err(e) => {
                    let why = crate::error_chain(&e);
                    rec.record(
                        Some(&job.case),
                        LedgerAction::Failed,
                        None,
                        Some(crate::evidence::Source {
                            resource: instance.clone(),
                            ..Default::default()
                        }),
                        Some(serde_json::json!({ "job": job.id, "action": action.as_str(), "error": why })),
                    )?;
                    failures.push(format!("{instance}: {why}"));
                }
            }
        }
        if rule.is_some_and(|r| r.process.is_some()) {
            match self.keep_alert(&rec, &job.case, alert).await {
                Ok(()) => {}
                Err(RunError::Engine(e)) if e.unrecorded() => return Err(e.into()),
                Err(e) => failures.push(format!("keeping the alert: {}", crate::error_chain(&e))),
            }
        }
        detail.insert("results".into(), serde_json::Value::Array(results));
        detail.insert("bytes".into(), bytes.into());
        if failures.is_empty() {
            Ok(detail.into())
        } else {
            Err(RunError::Incomplete(failures.join("; ")))
        }
    }

    /// The alert's workloads that are not instances, each as `action` says:
    /// a function or a task acquired (respond, acquire) and isolated
    /// (respond, isolate); a cluster's audit log for the day before the
    /// alert (respond, acquire); a snapshot GuardDuty kept, acquired
    /// (respond, acquire) with GuardDuty named as its maker. A failure is
    /// recorded and named; the others go on.
    #[allow(clippy::too_many_arguments)]
    async fn act_on_workloads(
        &self,
        rec: &Recorder,
        job: &Job,
        alert: &Alert,
        action: Action,
        results: &mut Vec<serde_json::Value>,
        failures: &mut Vec<String>,
        bytes: &mut u64,
    ) -> Result<(), RunError> {
        use crate::engine::acquire::acquire_recorded;
        use crate::engine::request::AcquireRequest;
        use crate::engine::workload;
        let case = &job.case;
        let e = &alert.entities;
        let acquire = matches!(action, Action::Respond | Action::AcquireDisk);
        let isolate = matches!(action, Action::Respond | Action::Isolate);
        let mut steps: Vec<(String, Result<serde_json::Value, EngineError>)> = Vec::new();
        for f in &e.functions {
            if acquire {
                let req = AcquireRequest::Lambda {
                    function: f.clone(),
                    qualifier: None,
                    logs_window: time::Duration::hours(24),
                };
                let r =
                    acquire_recorded(&self.app, rec.clone(), &req, Some(case.clone()), false).await;
                steps.push((format!("acquire {f}"), r.map(|a| acquired(&a, bytes))));
            }
            if isolate {
                let r = workload::isolate_function(&self.app, rec, f, case.clone(), false).await;
                steps.push((format!("isolate {f}"), r.map(|i| serde_json::json!({ "isolated": i.function, "not_holding": i.not_holding }))));
            }
        }
        for t in &e.tasks {
            let Some(cluster) = crate::alert::task_cluster(t) else {
                continue;
            };
            if acquire {
                let req = AcquireRequest::Ecs {
                    cluster: cluster.to_owned(),
                    task: t.clone(),
                };
                let r =
                    acquire_recorded(&self.app, rec.clone(), &req, Some(case.clone()), false).await;
                steps.push((format!("acquire {t}"), r.map(|a| acquired(&a, bytes))));
            }
            if isolate {
                let r =
                    workload::isolate_task(&self.app, rec, cluster, t, case.clone(), false).await;
                steps.push((
                    format!("isolate {t}"),
                    r.and_then(|i| match i.refused {
                        Some(why) => Err(EngineError::Workload(why)),
                        None => Ok(
                            serde_json::json!({ "isolated": i.task, "not_holding": i.not_holding }),
                        ),
                    }),
                ));
            }
        }
        for c in &e.clusters {
            if !acquire {
                continue;
            }
            let r = self.eks_audit(rec, case, c, alert.time).await;
            steps.push((format!("audit log of EKS cluster {c}"), r));
        }
        // A response on the alert's instances reads the kept snapshots in
        // its disk phase instead (see `act`).
        let kept_in_response = action == Action::Respond && kept_snapshots(alert).is_some();
        for s in &e.snapshots {
            if !acquire || kept_in_response {
                continue;
            }
            let req = AcquireRequest::Ebs(crate::engine::request::EbsRequest::kept_snapshot(
                s,
                &kept_by(alert),
            ));
            let r = acquire_recorded(&self.app, rec.clone(), &req, Some(case.clone()), false).await;
            steps.push((format!("acquire {s}"), r.map(|a| acquired(&a, bytes))));
        }
        for (what, r) in steps {
            match r {
                Ok(v) => results.push(serde_json::json!({ "step": what, "result": v })),
                Err(e) if e.unrecorded() => return Err(e.into()),
                Err(e) => {
                    let why = crate::error_chain(&e);
                    rec.record(
                        Some(case),
                        LedgerAction::Failed,
                        None,
                        None,
                        Some(serde_json::json!({ "job": job.id, "step": what, "error": why })),
                    )?;
                    failures.push(format!("{what}: {why}"));
                }
            }
        }
        Ok(())
    }

    /// An EKS cluster's audit log, from a day before the alert to now.
    async fn eks_audit(
        &self,
        rec: &Recorder,
        case: &CaseId,
        cluster: &str,
        at: time::OffsetDateTime,
    ) -> Result<serde_json::Value, EngineError> {
        use crate::engine::logs::{self, AwsLogs, AwsLogsKind, LoadRequest, LogsSource};
        let source = LogsSource::Aws(AwsLogs {
            kind: AwsLogsKind::Group {
                group: format!("/aws/eks/{cluster}/cluster"),
                stream_prefix: Some("kube-apiserver-audit".into()),
                format: crate::timeline::parse::Format::EksAuditCloudwatch,
            },
            since: at - time::Duration::hours(24),
            until: None,
        });
        let wrap = |e: logs::LogsError| EngineError::Workload(crate::error_chain(&e));
        let collectors = logs::collectors(&self.app, &source, &[])
            .await
            .map_err(wrap)?;
        let load = LoadRequest {
            case: case.clone(),
            geoip: Vec::new(),
            no_index: false,
        };
        let r = logs::collect_and_load_recorded(&self.app, rec.clone(), &load, &collectors)
            .await
            .map_err(wrap)?;
        if !r.failures.is_empty() {
            return Err(EngineError::Workload(r.failures.join("; ")));
        }
        Ok(serde_json::json!({
            "artefacts": r.artefacts.iter().map(|a| a.id.to_string()).collect::<Vec<_>>(),
            "events": r.timeline.iter().map(|t| t.events).sum::<u64>(),
        }))
    }

    /// Keeps the alert in its case, as custody read it, and puts it on the
    /// case's timeline beside what the processed images hold. Once per
    /// case and alert: a resumed job finds it kept.
    async fn keep_alert(
        &self,
        rec: &Recorder,
        case: &CaseId,
        alert: &Alert,
    ) -> Result<(), RunError> {
        use crate::evidence::case;
        let resource = format!("alert:{}/{}", alert.source.as_str(), alert.id);
        let ctx = self.app.acquire_context(rec.clone()).await?;
        let kept = case::artefacts(ctx.store.as_ref(), case)
            .await
            .unwrap_or_default()
            .into_iter()
            .any(|a| a.source.resource == resource);
        if kept {
            return Ok(());
        }
        let bytes = serde_json::to_vec_pretty(alert).unwrap_or_default();
        let a = case::acquire(
            &ctx,
            case::AcquireRequest {
                case: case.clone(),
                kind: crate::evidence::ArtefactKind::File,
                source: crate::evidence::Source {
                    resource,
                    log_format: Some(crate::timeline::parse::Format::Alert.name().to_owned()),
                    account: alert.account.clone(),
                    region: alert.region.clone(),
                    ..Default::default()
                },
                size_hint: Some(bytes.len() as u64),
                reader: Box::new(std::io::Cursor::new(bytes)),
                notes: Vec::new(),
            },
        )
        .await
        .map_err(|e| EngineError::from(crate::engine::process::ProcessError::from(e)))?;
        crate::engine::process::load_artefacts(&self.app, case, std::slice::from_ref(&a))
            .await
            .map_err(EngineError::from)?;
        Ok(())
    }

    /// One action on one instance; returns its summary and the raw bytes acquired.
    async fn act(
        &self,
        rec: &Recorder,
        case: &CaseId,
        instance: &str,
        action: Action,
        rule: Option<&Rule>,
        alert: &Alert,
    ) -> Result<(serde_json::Value, u64), RunError> {
        let Some(mut req) = response_request(instance, case, action, rule, self.staging.as_deref())
        else {
            return Ok((serde_json::json!({ "instance": instance }), 0));
        };
        req.kept_snapshots = kept_snapshots(alert);
        let plan: ResponsePlan = req
            .validate(&PlanContext {
                now: self.app.clock.now(),
                store_url: &self.app.config.store,
            })
            .map_err(EngineError::from)?;
        let prepared = response::prepare(&self.app, &plan).await?;
        let report = response::respond(&self.app, rec, &plan, prepared).await?;
        let bytes = report.artefacts.iter().map(|a| a.raw.size).sum();
        let mut summary = serde_json::json!({
            "instance": instance,
            "phases": report.phases,
            "artefacts": report.artefacts.iter().map(|a| a.id.to_string()).collect::<Vec<_>>(),
            "not_holding": report.not_holding,
        });
        if let Some(depth) = rule.and_then(|r| r.process) {
            let processed =
                crate::engine::process::process_acquired(&self.app, case, &report.artefacts, depth)
                    .await;
            let processed = match processed {
                Ok(p) => serde_json::json!({
                    "depth": depth,
                    "images": p.images.len(),
                    "derived": p.images.iter().map(|i| i.derived.len()).sum::<usize>(),
                    "failures": p.images.iter().flat_map(|i| i.failures.clone()).collect::<Vec<_>>(),
                    "events": p.timeline.iter().map(|t| t.events).sum::<u64>(),
                }),
                Err(e) if crate::engine::unrecorded(&e) => return Err(EngineError::from(e).into()),
                Err(e) => serde_json::json!({ "error": crate::error_chain(&e) }),
            };
            if let Some(m) = summary.as_object_mut() {
                m.insert("processed".into(), processed);
            }
        }
        let short = shortfalls(&plan, &report);
        if short.is_empty() {
            Ok((summary, bytes))
        } else {
            Err(RunError::Incomplete(format!(
                "the response on {instance} is incomplete ({})",
                short.join(", ")
            )))
        }
    }
}

/// A summary of what an acquisition took, its raw bytes added to `bytes`.
fn acquired(a: &crate::engine::acquire::Acquired, bytes: &mut u64) -> serde_json::Value {
    *bytes += a.artefacts.iter().map(|x| x.raw.size).sum::<u64>();
    serde_json::json!({
        "artefacts": a.artefacts.iter().map(|x| x.id.to_string()).collect::<Vec<_>>(),
        "failures": a.failures,
    })
}

/// Runs scheduled readiness audits as `custody readiness run` does.
pub struct AppAudits(pub App);

#[async_trait]
impl super::schedule::AuditRunner for AppAudits {
    async fn run(
        &self,
        opts: &AuditOptions,
    ) -> Result<Audited, crate::readiness::audit::AuditError> {
        let app = &self.0;
        crate::readiness::audit::run(
            opts,
            &app.aws_options,
            app.clock.as_ref(),
            &crate::readiness::history::History::path_in(&app.config.home),
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const I: &str = "i-0123456789abcdef0";

    fn rule(action: Action, memory: bool, revoke_role: bool) -> Rule {
        let mut r: Rule = toml::from_str(&format!(
            "name = \"r1\"\naction = \"{}\"\nmemory = {memory}\nrevoke_role = {revoke_role}\n",
            action.as_str()
        ))
        .unwrap();
        r.action = action;
        r
    }

    fn plan(
        action: Action,
        rule: Option<&Rule>,
        staging: Option<&str>,
        store: &str,
    ) -> ResponsePlan {
        let case: CaseId = "case-1".parse().unwrap();
        response_request(I, &case, action, rule, staging)
            .unwrap()
            .validate(&PlanContext {
                now: time::OffsetDateTime::UNIX_EPOCH,
                store_url: store,
            })
            .unwrap()
    }

    #[test]
    fn each_action_is_its_scope_on_the_alerts_case() {
        for (action, scope) in [
            (Action::Respond, Scope::Full),
            (Action::Isolate, Scope::IsolateOnly),
            (Action::AcquireDisk, Scope::DiskOnly),
        ] {
            let r = rule(action, true, false);
            let p = plan(action, Some(&r), None, "s3://b/p");
            assert_eq!(p.scope, scope);
            assert_eq!(p.case.as_str(), "case-1");
            assert!(p.resume, "a job may resume after a crash");
        }
        let case: CaseId = "case-1".parse().unwrap();
        assert!(response_request(I, &case, Action::Record, None, None).is_none());
    }

    #[test]
    fn a_rule_without_memory_leaves_it_out_by_name_and_revokes_as_told() {
        let r = rule(Action::Respond, false, true);
        let p = plan(Action::Respond, Some(&r), None, "s3://b/p");
        assert_eq!(
            p.memory.unwrap_err(),
            "left out by playbook rule r1 (memory = false)"
        );
        assert!(p.memory_left_out && p.revoke_role);
    }

    #[test]
    fn memory_is_staged_where_the_server_says_or_under_an_s3_store() {
        let r = rule(Action::Respond, true, false);
        let p = plan(Action::Respond, Some(&r), Some("s3://stage/mem"), "/var/e");
        assert_eq!(p.memory.unwrap().staging.bucket, "stage");
        let p = plan(Action::Respond, Some(&r), None, "/var/e");
        assert!(p.memory.unwrap_err().starts_with("no S3 location"));
        assert!(!p.memory_left_out, "asked for and not taken: a shortfall");
    }

    fn alert_naming(instances: &[&str], snapshots: &[&str]) -> Alert {
        let body = serde_json::json!({
            "detail-type": "GuardDuty Finding",
            "detail": {
                "id": "f-1", "updatedAt": "2026-12-01T10:00:00Z", "severity": 8,
                "title": "malware", "accountId": "123456789012", "region": "eu-west-1",
                "resource": {
                    "resourceType": "Instance",
                    "instanceDetails": { "instanceId": instances.first().copied().unwrap_or("") },
                    "ebsVolumeDetails": { "scannedVolumeDetails": snapshots.iter()
                        .map(|s| serde_json::json!({ "snapshotArn": format!("arn:aws:ec2:eu-west-1::snapshot/{s}") }))
                        .collect::<Vec<_>>() }
                }
            }
        });
        let mut a = crate::alert::parse(
            "guardduty",
            body.to_string().as_bytes(),
            &crate::alert::Limits::default(),
        )
        .unwrap()
        .remove(0);
        a.entities.instances = instances.iter().map(|s| (*s).to_owned()).collect();
        a
    }

    #[test]
    fn a_response_reads_the_snapshots_guardduty_kept_instead_of_taking_new_ones() {
        let snaps = ["snap-0aaaaaaaaaaaaaaa1", "snap-0aaaaaaaaaaaaaaa2"];
        let alert = alert_naming(&[I], &snaps);
        let kept = kept_snapshots(&alert).expect("kept");
        assert_eq!(kept.0, snaps);
        assert_eq!(
            kept.1,
            "made by GuardDuty Malware Protection for finding f-1"
        );
        let case: CaseId = "case-1".parse().unwrap();
        let mut req = response_request(I, &case, Action::Respond, None, None).unwrap();
        req.kept_snapshots = Some(kept);
        let p = req
            .validate(&PlanContext {
                now: time::OffsetDateTime::UNIX_EPOCH,
                store_url: "s3://b/p",
            })
            .unwrap();
        assert_eq!(
            p.disk.target,
            crate::collect::ebs::EbsTarget::Snapshots(snaps.map(str::to_owned).to_vec())
        );
        assert_eq!(
            p.disk.made_by.as_deref(),
            Some("made by GuardDuty Malware Protection for finding f-1")
        );
        // Which of two instances a snapshot is of is not said: each is
        // snapshotted itself.
        let two = alert_naming(&[I, "i-0fedcba9876543210"], &snaps);
        assert_eq!(kept_snapshots(&two), None);
        assert_eq!(kept_snapshots(&alert_naming(&[I], &[])), None);
    }
}
