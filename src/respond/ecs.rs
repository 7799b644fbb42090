//! Reversible protection and isolation of an ECS task.
//!
//! - Protection: task scale-in protection on (the longest AWS allows), so
//!   a service scaling in does not stop the task under investigation.
//! - Isolation: a task's network interface is managed by AWS and refuses a
//!   security group swap, so each of its groups is rewritten in place, in
//!   two steps as for an instance: first one rule allowing all traffic each
//!   way (tracked connections become untracked), then no rule at all (they
//!   are cut). A group attached to any other interface is never rewritten:
//!   isolation is refused, naming how many interfaces it would cut.
//!
//! The prior state (protection, each group's rules) is recorded before
//! anything changes; [`release`] restores it.

use aws_sdk_ec2::types::{IpPermission, IpRange, Ipv6Range, PrefixListId, UserIdGroupPair};
use serde::{Deserialize, Serialize};

use crate::aws::ApiError;

/// One rule of a security group, in a form the ledger can hold.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Rule {
    pub protocol: String,
    pub from_port: Option<i32>,
    pub to_port: Option<i32>,
    pub ipv4: Vec<String>,
    pub ipv6: Vec<String>,
    pub groups: Vec<String>,
    pub prefix_lists: Vec<String>,
}

impl Rule {
    fn of(p: &IpPermission) -> Self {
        let mut r = Self {
            protocol: p.ip_protocol().unwrap_or("-1").to_owned(),
            from_port: p.from_port(),
            to_port: p.to_port(),
            ipv4: p
                .ip_ranges()
                .iter()
                .filter_map(|x| x.cidr_ip().map(str::to_owned))
                .collect(),
            ipv6: p
                .ipv6_ranges()
                .iter()
                .filter_map(|x| x.cidr_ipv6().map(str::to_owned))
                .collect(),
            groups: p
                .user_id_group_pairs()
                .iter()
                .filter_map(|x| x.group_id().map(str::to_owned))
                .collect(),
            prefix_lists: p
                .prefix_list_ids()
                .iter()
                .filter_map(|x| x.prefix_list_id().map(str::to_owned))
                .collect(),
        };
        r.ipv4.sort();
        r.ipv6.sort();
        r.groups.sort();
        r.prefix_lists.sort();
        r
    }

    fn permission(&self) -> IpPermission {
        let mut b = IpPermission::builder().ip_protocol(&self.protocol);
        if self.protocol != "-1" {
            b = b.set_from_port(self.from_port).set_to_port(self.to_port);
        }
        for c in &self.ipv4 {
            b = b.ip_ranges(IpRange::builder().cidr_ip(c).build());
        }
        for c in &self.ipv6 {
            b = b.ipv6_ranges(Ipv6Range::builder().cidr_ipv6(c).build());
        }
        for g in &self.groups {
            b = b.user_id_group_pairs(UserIdGroupPair::builder().group_id(g).build());
        }
        for p in &self.prefix_lists {
            b = b.prefix_list_ids(PrefixListId::builder().prefix_list_id(p).build());
        }
        b.build()
    }

    /// One permission per source or destination: a revoke names each, so
    /// no service has to match a permission that lists several.
    fn split(&self) -> Vec<IpPermission> {
        let one = |f: &dyn Fn(&mut Rule)| {
            let mut r = Rule {
                ipv4: Vec::new(),
                ipv6: Vec::new(),
                groups: Vec::new(),
                prefix_lists: Vec::new(),
                ..self.clone()
            };
            f(&mut r);
            r.permission()
        };
        let mut out = Vec::new();
        for c in &self.ipv4 {
            out.push(one(&|r| r.ipv4 = vec![c.clone()]));
        }
        for c in &self.ipv6 {
            out.push(one(&|r| r.ipv6 = vec![c.clone()]));
        }
        for g in &self.groups {
            out.push(one(&|r| r.groups = vec![g.clone()]));
        }
        for p in &self.prefix_lists {
            out.push(one(&|r| r.prefix_lists = vec![p.clone()]));
        }
        out
    }

    /// All traffic, from or to anywhere, over the address families the
    /// group's rules allowed (an IPv6 flow exists only where one did).
    fn open(ipv6: bool) -> Self {
        Self {
            protocol: "-1".into(),
            from_port: None,
            to_port: None,
            ipv4: vec!["0.0.0.0/0".into()],
            ipv6: if ipv6 {
                vec!["::/0".into()]
            } else {
                Vec::new()
            },
            groups: Vec::new(),
            prefix_lists: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupRules {
    pub id: String,
    pub ingress: Vec<Rule>,
    pub egress: Vec<Rule>,
}

/// What protection and isolation change, as it was before.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskState {
    pub cluster: String,
    pub task: String,
    pub last_status: Option<String>,
    /// `None` when it could not be read.
    pub protected: Option<bool>,
    pub interfaces: Vec<String>,
    pub groups: Vec<GroupRules>,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EcsError {
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error("ECS task {task} is not in cluster {cluster}")]
    NotFound { cluster: String, task: String },
    #[error(
        "security group {group} of task {task} is also attached to {others} other network interface(s) ({examples}); rewriting it would cut them too, so the task's network is not isolated. Isolate through a group of its own: update the service to give the task one, or isolate the instances behind the others"
    )]
    Shared {
        task: String,
        group: String,
        others: usize,
        examples: String,
    },
    #[error("ECS task {0} has stopped: there is no network to isolate")]
    Stopped(String),
}

/// What one call did, and the request id AWS gave it.
pub type Done = (String, Vec<String>);

pub struct Clients {
    pub ecs: aws_sdk_ecs::Client,
    pub ec2: aws_sdk_ec2::Client,
}

async fn rules(c: &Clients, groups: &[String]) -> Result<Vec<GroupRules>, ApiError> {
    if groups.is_empty() {
        return Ok(Vec::new());
    }
    let o = c
        .ec2
        .describe_security_groups()
        .set_group_ids(Some(groups.to_vec()))
        .send()
        .await
        .map_err(|e| ApiError::sdk("describe the security groups", &groups.join(","), e))?;
    let mut out: Vec<GroupRules> = o
        .security_groups()
        .iter()
        .map(|g| {
            let mut ingress: Vec<Rule> = g.ip_permissions().iter().map(Rule::of).collect();
            let mut egress: Vec<Rule> = g.ip_permissions_egress().iter().map(Rule::of).collect();
            ingress.sort();
            egress.sort();
            GroupRules {
                id: g.group_id().unwrap_or_default().to_owned(),
                ingress,
                egress,
            }
        })
        .collect();
    out.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(out)
}

/// The task's status, protection, interfaces and each group's rules now.
pub async fn describe(c: &Clients, cluster: &str, task: &str) -> Result<TaskState, EcsError> {
    let o = c
        .ecs
        .describe_tasks()
        .cluster(cluster)
        .tasks(task)
        .send()
        .await
        .map_err(|e| ApiError::sdk("describe the ECS task", task, e))?;
    let Some(t) = o.tasks().first() else {
        return Err(EcsError::NotFound {
            cluster: cluster.to_owned(),
            task: task.to_owned(),
        });
    };
    let arn = t.task_arn().unwrap_or(task).to_owned();
    let interfaces: Vec<String> = t
        .attachments()
        .iter()
        .filter(|a| a.r#type() == Some("ElasticNetworkInterface"))
        .flat_map(|a| a.details())
        .filter(|d| d.name() == Some("networkInterfaceId"))
        .filter_map(|d| d.value().map(str::to_owned))
        .collect();
    let mut groups = Vec::new();
    if !interfaces.is_empty() {
        let n = c
            .ec2
            .describe_network_interfaces()
            .set_network_interface_ids(Some(interfaces.clone()))
            .send()
            .await
            .map_err(|e| ApiError::sdk("describe the network interfaces of", &arn, e))?;
        for i in n.network_interfaces() {
            groups.extend(
                i.groups()
                    .iter()
                    .filter_map(|g| g.group_id().map(str::to_owned)),
            );
        }
    }
    groups.sort();
    groups.dedup();
    let protected = c
        .ecs
        .get_task_protection()
        .cluster(cluster)
        .tasks(&arn)
        .send()
        .await
        .ok()
        .and_then(|p| p.protected_tasks().first().map(|t| t.protection_enabled()));
    Ok(TaskState {
        cluster: cluster.to_owned(),
        last_status: t.last_status().map(str::to_owned),
        task: arn,
        protected,
        interfaces,
        groups: rules(c, &groups).await?,
    })
}

/// Groups of the task attached to other interfaces: (group, how many, some ids).
pub async fn shared(
    c: &Clients,
    state: &TaskState,
) -> Result<Vec<(String, Vec<String>)>, ApiError> {
    let mut out = Vec::new();
    for g in &state.groups {
        let o = c
            .ec2
            .describe_network_interfaces()
            .filters(
                aws_sdk_ec2::types::Filter::builder()
                    .name("group-id")
                    .values(&g.id)
                    .build(),
            )
            .send()
            .await
            .map_err(|e| ApiError::sdk("list the interfaces of", &g.id, e))?;
        let others: Vec<String> = o
            .network_interfaces()
            .iter()
            .filter_map(|n| n.network_interface_id())
            .filter(|id| !state.interfaces.iter().any(|i| i == id))
            .map(str::to_owned)
            .collect();
        if !others.is_empty() {
            out.push((g.id.clone(), others));
        }
    }
    Ok(out)
}

fn rid(o: Option<&str>) -> Vec<String> {
    o.map(str::to_owned).into_iter().collect()
}

pub async fn protect(c: &Clients, s: &TaskState, on: bool) -> Result<Done, ApiError> {
    let mut b = c
        .ecs
        .update_task_protection()
        .cluster(&s.cluster)
        .tasks(&s.task)
        .protection_enabled(on);
    if on {
        // The longest protection AWS allows: 48 hours.
        b = b.expires_in_minutes(2880);
    }
    let o = b
        .send()
        .await
        .map_err(|e| ApiError::sdk("set the scale-in protection of", &s.task, e))?;
    use aws_sdk_ecs::operation::RequestId as _;
    Ok((
        format!("scale-in protection {}", if on { "on" } else { "off" }),
        rid(o.request_id()),
    ))
}

/// Replaces a group's rules with `ingress` and `egress`.
async fn set_rules(
    c: &Clients,
    now: &GroupRules,
    ingress: &[Rule],
    egress: &[Rule],
) -> Result<Vec<String>, ApiError> {
    use aws_sdk_ec2::operation::RequestId as _;
    let g = &now.id;
    let mut ids = Vec::new();
    let perms = |r: &[Rule]| r.iter().flat_map(Rule::split).collect::<Vec<_>>();
    if !now.ingress.is_empty() {
        let o = c
            .ec2
            .revoke_security_group_ingress()
            .group_id(g)
            .set_ip_permissions(Some(perms(&now.ingress)))
            .send()
            .await
            .map_err(|e| ApiError::sdk("revoke the inbound rules of", g, e))?;
        ids.extend(rid(o.request_id()));
    }
    if !now.egress.is_empty() {
        let o = c
            .ec2
            .revoke_security_group_egress()
            .group_id(g)
            .set_ip_permissions(Some(perms(&now.egress)))
            .send()
            .await
            .map_err(|e| ApiError::sdk("revoke the outbound rules of", g, e))?;
        ids.extend(rid(o.request_id()));
    }
    if !ingress.is_empty() {
        let o = c
            .ec2
            .authorize_security_group_ingress()
            .group_id(g)
            .set_ip_permissions(Some(perms(ingress)))
            .send()
            .await
            .map_err(|e| ApiError::sdk("authorize the inbound rules of", g, e))?;
        ids.extend(rid(o.request_id()));
    }
    if !egress.is_empty() {
        let o = c
            .ec2
            .authorize_security_group_egress()
            .group_id(g)
            .set_ip_permissions(Some(perms(egress)))
            .send()
            .await
            .map_err(|e| ApiError::sdk("authorize the outbound rules of", g, e))?;
        ids.extend(rid(o.request_id()));
    }
    Ok(ids)
}

/// The two-step rewrite of each group: all traffic, then none.
pub async fn isolate(c: &Clients, s: &TaskState) -> Result<Vec<Done>, ApiError> {
    let mut done = Vec::new();
    for g in &s.groups {
        let v6 = g
            .ingress
            .iter()
            .chain(&g.egress)
            .any(|r| !r.ipv6.is_empty());
        let open = [Rule::open(v6)];
        let ids = set_rules(c, g, &open, &open).await?;
        done.push((
            format!("{}: one rule allowing all traffic (untracks flows)", g.id),
            ids,
        ));
        // What the group holds now, read back: the service may have split
        // or merged the rules it was given.
        let opened = rules(c, std::slice::from_ref(&g.id)).await?;
        let mut ids = Vec::new();
        for o in &opened {
            ids.extend(set_rules(c, o, &[], &[]).await?);
        }
        done.push((format!("{}: no rules", g.id), ids));
    }
    Ok(done)
}

/// Puts each group's recorded rules back, and the protection as it was.
pub async fn release(c: &Clients, prior: &TaskState) -> Result<Vec<Done>, ApiError> {
    let ids: Vec<String> = prior.groups.iter().map(|g| g.id.clone()).collect();
    let now = rules(c, &ids).await?;
    let mut done = Vec::new();
    for p in &prior.groups {
        let Some(n) = now.iter().find(|n| n.id == p.id) else {
            continue;
        };
        if n == p {
            continue;
        }
        let ids = set_rules(c, n, &p.ingress, &p.egress).await?;
        done.push((
            format!(
                "{}: its {} + {} recorded rules",
                p.id,
                p.ingress.len(),
                p.egress.len()
            ),
            ids,
        ));
    }
    if let Some(on) = prior.protected {
        done.push(protect(c, prior, on).await?);
    }
    Ok(done)
}

/// What differs between the recorded state and now (rules and protection).
pub fn differences(prior: &TaskState, now: &TaskState) -> Vec<String> {
    let mut out = Vec::new();
    for p in &prior.groups {
        match now.groups.iter().find(|n| n.id == p.id) {
            Some(n) if n == p => {}
            Some(n) => out.push(format!(
                "{}: {} inbound and {} outbound rules, recorded {} and {}",
                p.id,
                n.ingress.len(),
                n.egress.len(),
                p.ingress.len(),
                p.egress.len()
            )),
            None => out.push(format!("{}: no longer on the task", p.id)),
        }
    }
    if prior.protected.is_some() && now.protected.is_some() && prior.protected != now.protected {
        out.push(format!(
            "scale-in protection {:?}, recorded {:?}",
            now.protected, prior.protected
        ));
    }
    out
}
