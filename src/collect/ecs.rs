//! `custody acquire ecs`: an ECS task (Fargate or EC2) as AWS describes it,
//! before the scheduler replaces it and AWS purges a stopped task (about an
//! hour after it stops).
//!
//! - One `cloud_resource` artefact: every answer as AWS sent it
//!   (DescribeTasks, DescribeTaskDefinition, the task's network interfaces
//!   and their security groups, and for the EC2 launch type its container
//!   instance), with a summary: containers, images and digests, interfaces
//!   and groups, and the EC2 instance the task runs on (acquire that node
//!   through the EC2 path: `acquire ebs`, `acquire memory`).
//! - Each container's `awslogs` stream (`PREFIX/CONTAINER/TASK-ID`) for the
//!   task's lifetime, onto the case's timeline as `cloudwatch-logs`.

use std::collections::BTreeMap;

use async_trait::async_trait;

use super::{CollectError, Collected, Collector};
use crate::aws::ApiError;
use crate::aws::raw::{Answers, RawBody};
use crate::evidence::case::{AcquireContext, AcquireRequest, acquire};
use crate::evidence::{ArtefactKind, Source};
use crate::ids::CaseId;

#[derive(Debug, Clone)]
pub struct EcsCollector {
    pub ecs: aws_sdk_ecs::Client,
    pub ec2: aws_sdk_ec2::Client,
    pub logs: aws_sdk_cloudwatchlogs::Client,
    pub cluster: String,
    /// The task's ARN or id.
    pub task: String,
    pub region: Option<String>,
    pub until: time::OffsetDateTime,
}

/// The `awslogs` streams of a task: group → stream names.
pub fn awslogs_streams(
    def: &aws_sdk_ecs::types::TaskDefinition,
    task_id: &str,
) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for c in def.container_definitions() {
        let Some(l) = c.log_configuration() else {
            continue;
        };
        if l.log_driver().as_str() != "awslogs" {
            continue;
        }
        let opts = l.options();
        let (Some(group), Some(prefix), Some(name)) = (
            opts.and_then(|o| o.get("awslogs-group")),
            opts.and_then(|o| o.get("awslogs-stream-prefix")),
            c.name(),
        ) else {
            continue;
        };
        out.entry(group.clone())
            .or_default()
            .push(format!("{prefix}/{name}/{task_id}"));
    }
    out
}

fn cloud(e: ApiError) -> CollectError {
    CollectError::Cloud(Box::new(e))
}

impl EcsCollector {
    fn source(&self, arn: &str, path: String) -> Source {
        Source {
            resource: arn.to_owned(),
            region: self.region.clone(),
            path: Some(path),
            ..Source::default()
        }
    }
}

#[async_trait]
impl Collector for EcsCollector {
    fn describe(&self) -> String {
        format!("ECS task {} in cluster {}", self.task, self.cluster)
    }

    async fn collect(
        &self,
        ctx: &AcquireContext,
        case: &CaseId,
    ) -> Result<Collected, CollectError> {
        let mut answers = Answers::default();
        let raw = RawBody::default();
        let described = self
            .ecs
            .describe_tasks()
            .cluster(&self.cluster)
            .tasks(&self.task)
            .include(aws_sdk_ecs::types::TaskField::Tags)
            .customize()
            .interceptor(raw.clone())
            .send()
            .await
            .map_err(|e| cloud(ApiError::sdk("describe the ECS task", &self.task, e)))?;
        answers.doc.insert("DescribeTasks".into(), raw.json());
        let Some(task) = described.tasks().first() else {
            let why = described
                .failures()
                .first()
                .and_then(|f| f.reason())
                .unwrap_or("not listed");
            return Err(CollectError::Container(format!(
                "ECS task {} is not in cluster {} ({why}): a stopped task is kept about an hour after it stops",
                self.task, self.cluster
            )));
        };
        let arn = task.task_arn().unwrap_or(&self.task).to_owned();
        let task_id = arn.rsplit('/').next().unwrap_or(&arn).to_owned();
        let mut notes = Vec::new();
        if task.last_status() == Some("STOPPED") {
            notes.push(format!(
                "the task had stopped ({}); AWS purges a stopped task about an hour after it stops",
                task.stopped_reason().unwrap_or("no reason given")
            ));
        }
        let mut streams = BTreeMap::new();
        if let Some(def_arn) = task.task_definition_arn() {
            let raw = RawBody::default();
            let r = self
                .ecs
                .describe_task_definition()
                .task_definition(def_arn)
                .include(aws_sdk_ecs::types::TaskDefinitionField::Tags)
                .customize()
                .interceptor(raw.clone())
                .send()
                .await;
            if let Some(d) = answers.keep("DescribeTaskDefinition", &raw, r)
                && let Some(def) = d.task_definition()
            {
                streams = awslogs_streams(def, &task_id);
            }
        }
        let enis: Vec<String> = task
            .attachments()
            .iter()
            .filter(|a| a.r#type() == Some("ElasticNetworkInterface"))
            .flat_map(|a| a.details())
            .filter(|d| d.name() == Some("networkInterfaceId"))
            .filter_map(|d| d.value().map(str::to_owned))
            .collect();
        let mut interfaces = Vec::new();
        let mut groups: Vec<String> = Vec::new();
        if !enis.is_empty() {
            let raw = RawBody::default();
            let r = self
                .ec2
                .describe_network_interfaces()
                .set_network_interface_ids(Some(enis.clone()))
                .customize()
                .interceptor(raw.clone())
                .send()
                .await;
            if let Some(o) = answers.keep("DescribeNetworkInterfaces", &raw, r) {
                for n in o.network_interfaces() {
                    let g: Vec<String> = n
                        .groups()
                        .iter()
                        .filter_map(|g| g.group_id().map(str::to_owned))
                        .collect();
                    groups.extend(g.iter().cloned());
                    interfaces.push(serde_json::json!({
                        "id": n.network_interface_id(),
                        "private_ip": n.private_ip_address(),
                        "groups": g,
                    }));
                }
            }
        }
        groups.sort();
        groups.dedup();
        if !groups.is_empty() {
            let raw = RawBody::default();
            let r = self
                .ec2
                .describe_security_groups()
                .set_group_ids(Some(groups.clone()))
                .customize()
                .interceptor(raw.clone())
                .send()
                .await;
            answers.keep("DescribeSecurityGroups", &raw, r);
        }
        let mut instance = None;
        if let Some(ci) = task.container_instance_arn() {
            let raw = RawBody::default();
            let r = self
                .ecs
                .describe_container_instances()
                .cluster(&self.cluster)
                .container_instances(ci)
                .customize()
                .interceptor(raw.clone())
                .send()
                .await;
            if let Some(o) = answers.keep("DescribeContainerInstances", &raw, r) {
                instance = o
                    .container_instances()
                    .first()
                    .and_then(|c| c.ec2_instance_id())
                    .map(str::to_owned);
            }
        }
        if let Some(i) = &instance {
            notes.push(format!(
                "runs on EC2 instance {i}: acquire its disk and memory with `custody acquire ebs --instance {i}` and `custody acquire memory --instance {i}`"
            ));
        }
        let containers: Vec<serde_json::Value> = task
            .containers()
            .iter()
            .map(|c| {
                serde_json::json!({
                    "name": c.name(),
                    "image": c.image(),
                    "image_digest": c.image_digest(),
                    "runtime_id": c.runtime_id(),
                    "last_status": c.last_status(),
                })
            })
            .collect();
        notes.extend(answers.notes.iter().cloned());
        let json = serde_json::to_vec_pretty(&serde_json::json!({
            "format": "custody-ecs-task/1",
            "cluster": self.cluster,
            "task": arn,
            "launch_type": task.launch_type().map(|l| l.as_str().to_owned()),
            "last_status": task.last_status(),
            "containers": containers,
            "network_interfaces": interfaces,
            "ec2_instance": instance,
            "awslogs_streams": streams,
            "answers": answers.doc,
        }))
        .map_err(|e| CollectError::Container(e.to_string()))?;
        let mut out = Collected::default();
        out.artefacts.push(
            acquire(
                ctx,
                AcquireRequest {
                    case: case.clone(),
                    kind: ArtefactKind::CloudResource,
                    source: self.source(&arn, "ECS task, definition, interfaces and groups".into()),
                    reader: Box::new(std::io::Cursor::new(json)),
                    size_hint: None,
                    notes,
                },
            )
            .await?,
        );
        let since = task
            .created_at()
            .and_then(|t| time::OffsetDateTime::from_unix_timestamp(t.secs()).ok())
            .map_or(self.until - time::Duration::days(1), |t| {
                t - time::Duration::minutes(5)
            });
        #[cfg(feature = "timeline")]
        for (group, names) in streams {
            let logs = super::logs::CloudWatchLogs {
                logs: self.logs.clone(),
                group: group.clone(),
                region: self.region.clone(),
                format: crate::timeline::parse::Format::CloudwatchLogs,
                since,
                until: self.until,
                streams: names,
                stream_prefix: None,
            };
            match logs.collect(ctx, case).await {
                Ok(c) => {
                    out.artefacts.extend(c.artefacts);
                    out.failures.extend(c.failures);
                }
                Err(e) => out.failures.push(format!(
                    "awslogs group {group} of {arn}: {}",
                    crate::error_chain(&e)
                )),
            }
        }
        #[cfg(not(feature = "timeline"))]
        if !streams.is_empty() {
            let _ = since;
            out.failures.push(format!(
                "awslogs streams of {arn}: this build has no timeline feature to read them"
            ));
        }
        Ok(out)
    }
}
