//! Requests that act on an EC2 instance or its volumes (feature `aws`):
//! EBS and memory acquisitions, isolation and whole responses, and their
//! validation into plans.

use std::time::Duration;

use crate::collect::ebs::EbsTarget;
use crate::collect::memory::{AvmlTool, Staging};
use crate::ids::CaseId;
use crate::respond::order::Then;

use super::{PlanContext, PlanError};

/// Bounds shared by the command line's flags and validation.
pub mod limits {
    use std::ops::RangeInclusive;
    /// Seconds the memory command may run: 30 s to 48 h.
    pub const MEMORY_TIMEOUT_SECS: RangeInclusive<u64> = 30..=172_800;
    /// MiB per memory part, each held in the instance's RAM while it uploads.
    pub const MEMORY_PART_MIB: RangeInclusive<u64> = 5..=5120;
    /// EBS blocks (512 KiB) read ahead of the pipeline.
    pub const EBS_WINDOW: RangeInclusive<u16> = 1..=1024;
    /// Default longest wait for a new snapshot, in seconds.
    pub const SNAPSHOT_TIMEOUT_SECS: u64 = 3600;
    /// How far back a response's logs phase reads, by default: a day.
    pub const LOGS_HOURS: u32 = 24;
}

impl PlanContext<'_> {
    fn case(&self, case: &Option<CaseId>) -> CaseId {
        case.clone().unwrap_or_else(|| CaseId::generate(self.now))
    }
}

const INSTANCE: &str = "an EC2 instance id (i- and 8 or 17 lowercase hex digits)";
const SNAPSHOT: &str = "an EBS snapshot id (snap-…)";
const VOLUME: &str = "an EBS volume id (vol-…)";

/// `i-` and 8 or 17 lowercase hex digits: the rule alerts are checked by.
pub use crate::alert::is_instance_id;

/// `prefix` and 1 to 64 lowercase letters and digits: shape only, AWS
/// decides whether it exists.
fn is_resource_id(s: &str, prefix: &str) -> bool {
    s.strip_prefix(prefix).is_some_and(|rest| {
        (1..=64).contains(&rest.len())
            && rest
                .bytes()
                .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase())
    })
}

fn instance(s: &str) -> Result<String, PlanError> {
    if is_instance_id(s) {
        Ok(s.to_owned())
    } else {
        Err(PlanError::InvalidId {
            what: INSTANCE,
            value: s.to_owned(),
        })
    }
}

fn in_range<T: Into<u64> + Copy>(
    what: &'static str,
    value: T,
    range: &std::ops::RangeInclusive<T>,
) -> Result<T, PlanError> {
    let (v, min, max) = (value.into(), (*range.start()).into(), (*range.end()).into());
    if (min..=max).contains(&v) {
        Ok(value)
    } else {
        Err(PlanError::OutOfRange {
            what,
            value: v,
            min,
            max,
        })
    }
}

/// EBS volumes through a snapshot and the EBS direct APIs.
#[derive(Debug, Clone)]
pub struct EbsRequest {
    pub target: EbsTarget,
    /// Blocks read ahead of the pipeline.
    pub window: u16,
    pub snapshot_timeout: Duration,
    /// Only the blocks changed since this earlier snapshot.
    pub changed_since: Option<String>,
    /// Who made the snapshot read, when not custody (`made by GuardDuty
    /// Malware Protection for finding …`): noted on the image.
    pub made_by: Option<String>,
}

impl EbsRequest {
    /// A snapshot another service kept, read as it is.
    pub fn kept_snapshot(snapshot: &str, made_by: &str) -> Self {
        Self {
            target: EbsTarget::Snapshot(snapshot.to_owned()),
            made_by: Some(made_by.to_owned()),
            ..Self::instance("")
        }
    }

    /// Every volume of `instance`, with the default window and wait.
    pub fn instance(instance: &str) -> Self {
        Self {
            target: EbsTarget::Instance(instance.to_owned()),
            window: crate::collect::ebs::DEFAULT_WINDOW as u16,
            snapshot_timeout: Duration::from_secs(limits::SNAPSHOT_TIMEOUT_SECS),
            changed_since: None,
            made_by: None,
        }
    }

    pub fn validate(self) -> Result<Self, PlanError> {
        match &self.target {
            EbsTarget::Snapshot(s) if !is_resource_id(s, "snap-") => {
                return Err(PlanError::InvalidId {
                    what: SNAPSHOT,
                    value: s.clone(),
                });
            }
            EbsTarget::Snapshots(list) => {
                if list.is_empty() {
                    return Err(PlanError::InvalidId {
                        what: SNAPSHOT,
                        value: String::new(),
                    });
                }
                if let Some(s) = list.iter().find(|s| !is_resource_id(s, "snap-")) {
                    return Err(PlanError::InvalidId {
                        what: SNAPSHOT,
                        value: s.clone(),
                    });
                }
            }
            EbsTarget::Volume(v) if !is_resource_id(v, "vol-") => {
                return Err(PlanError::InvalidId {
                    what: VOLUME,
                    value: v.clone(),
                });
            }
            EbsTarget::Instance(i) => {
                instance(i)?;
                if self.changed_since.is_some() {
                    return Err(PlanError::ChangedSinceWithInstance);
                }
            }
            _ => {}
        }
        if let Some(s) = &self.changed_since
            && !is_resource_id(s, "snap-")
        {
            return Err(PlanError::InvalidId {
                what: SNAPSHOT,
                value: s.clone(),
            });
        }
        in_range(
            "the EBS read-ahead window",
            self.window,
            &limits::EBS_WINDOW,
        )?;
        Ok(self)
    }
}

/// An avml build for the instance to fetch instead of the one on its PATH.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AvmlRequest {
    /// `s3://BUCKET/KEY`.
    pub url: String,
    /// SHA-256 of the build, hex.
    pub sha256: String,
}

/// Where an instance's memory goes and which avml takes it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StagingRequest {
    /// `s3://BUCKET/PREFIX`; `None` stages under an S3 store.
    pub staging: Option<String>,
    pub avml: Option<AvmlRequest>,
}

/// An EC2 instance's memory, through SSM Run Command.
#[derive(Debug, Clone)]
pub struct MemoryRequest {
    pub instance: String,
    pub staging: StagingRequest,
    pub timeout: Duration,
    /// MiB per part; `None` lets the instance's size decide.
    pub part_mib: Option<u64>,
}

/// A memory request made ready for its collector.
#[derive(Debug, Clone)]
pub struct MemoryPlan {
    pub instance: String,
    pub staging: Staging,
    pub avml: Option<AvmlTool>,
    pub timeout: Duration,
    pub part_size: Option<u64>,
}

impl MemoryRequest {
    pub fn validate(&self, ctx: &PlanContext<'_>) -> Result<MemoryPlan, PlanError> {
        let instance = instance(&self.instance)?;
        in_range(
            "the memory timeout (seconds)",
            self.timeout.as_secs(),
            &limits::MEMORY_TIMEOUT_SECS,
        )?;
        if let Some(m) = self.part_mib {
            in_range("the memory part size (MiB)", m, &limits::MEMORY_PART_MIB)?;
        }
        let staging = match staging_url(&self.staging, ctx) {
            Some(url) => Staging::parse(url).map_err(|e| PlanError::Staging(e.to_string()))?,
            None => {
                return Err(PlanError::Staging(
                    "the store is not in S3: give --staging s3://BUCKET/PREFIX for the instance to upload to"
                        .to_owned(),
                ));
            }
        };
        Ok(MemoryPlan {
            instance,
            staging,
            avml: avml(self.staging.avml.as_ref())?,
            timeout: self.timeout,
            part_size: self.part_mib.map(|m| m << 20),
        })
    }
}

/// The staging URL given, else the store's when it is in S3.
fn staging_url<'a>(s: &'a StagingRequest, ctx: &PlanContext<'a>) -> Option<&'a str> {
    s.staging
        .as_deref()
        .or_else(|| ctx.store_url.starts_with("s3://").then_some(ctx.store_url))
}

fn avml(a: Option<&AvmlRequest>) -> Result<Option<AvmlTool>, PlanError> {
    let Some(a) = a else { return Ok(None) };
    let loc = Staging::parse(&a.url).map_err(|e| PlanError::Avml(e.to_string()))?;
    if loc.prefix.is_empty() {
        return Err(PlanError::Avml(
            "--avml names an object: s3://BUCKET/KEY".to_owned(),
        ));
    }
    if !(a.sha256.len() == 64 && a.sha256.bytes().all(|b| b.is_ascii_hexdigit())) {
        return Err(PlanError::Avml("--avml-sha256 is 64 hex digits".to_owned()));
    }
    Ok(Some(AvmlTool {
        bucket: loc.bucket,
        key: loc.prefix,
        sha256: a.sha256.to_lowercase(),
    }))
}

/// Network isolation of an EC2 instance, reversibly.
#[derive(Debug, Clone)]
pub struct IsolateRequest {
    pub instance: String,
    pub case: Option<CaseId>,
    pub revoke_role: bool,
    pub dry_run: bool,
}

/// An isolation made ready: its case decided.
#[derive(Debug, Clone)]
pub struct IsolatePlan {
    pub instance: String,
    pub case: CaseId,
    pub revoke_role: bool,
    pub dry_run: bool,
}

impl IsolateRequest {
    pub fn validate(&self, ctx: &PlanContext<'_>) -> Result<IsolatePlan, PlanError> {
        Ok(IsolatePlan {
            instance: instance(&self.instance)?,
            case: ctx.case(&self.case),
            revoke_role: self.revoke_role,
            dry_run: self.dry_run,
        })
    }
}

/// How much of a response to carry out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Protect, memory, network isolation, disk, logs.
    Full,
    /// Protect and network isolation only.
    IsolateOnly,
    /// The disk only: every EBS volume, nothing changed on the instance.
    DiskOnly,
}

impl Scope {
    fn name(self) -> &'static str {
        match self {
            Self::Full => "a full response",
            Self::IsolateOnly => "an isolation",
            Self::DiskOnly => "a disk acquisition",
        }
    }
}

/// Whether the instance's memory is taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemoryChoice {
    Take {
        staging: StagingRequest,
        timeout: Duration,
    },
    /// Left out, with the reason recorded (`--no-memory`, a playbook rule).
    LeaveOut(String),
}

/// A response on one EC2 instance, in the order of volatility.
#[derive(Debug, Clone)]
pub struct ResponseRequest {
    pub instance: String,
    pub case: Option<CaseId>,
    pub scope: Scope,
    /// Also disassociate the instance profile during network isolation.
    pub revoke_role: bool,
    pub memory: MemoryChoice,
    /// EBS blocks read ahead of the pipeline.
    pub window: u16,
    pub snapshot_timeout: Duration,
    /// Stop or terminate the instance at the end, when everything held.
    pub then: Option<Then>,
    /// A job that may have started before: the prior state recorded first
    /// in this case's ledger is the instance's state before the response.
    pub resume: bool,
    /// The logs phase reads this many hours back from now.
    pub logs_hours: u32,
    /// Snapshots of the instance's disks another service already kept, and
    /// who: the disk phase reads them instead of taking new ones.
    pub kept_snapshots: Option<(Vec<String>, String)>,
}

impl ResponseRequest {
    /// The whole response on `instance`, with the defaults of `custody respond`.
    pub fn new(instance: &str, scope: Scope) -> Self {
        Self {
            instance: instance.to_owned(),
            case: None,
            scope,
            revoke_role: false,
            memory: MemoryChoice::Take {
                staging: StagingRequest::default(),
                timeout: crate::collect::memory::DEFAULT_TIMEOUT,
            },
            window: crate::collect::ebs::DEFAULT_WINDOW as u16,
            snapshot_timeout: Duration::from_secs(limits::SNAPSHOT_TIMEOUT_SECS),
            then: None,
            resume: false,
            logs_hours: limits::LOGS_HOURS,
            kept_snapshots: None,
        }
    }
}

/// A response made ready: every choice decided, nothing looked up yet.
#[derive(Debug, Clone)]
pub struct ResponsePlan {
    pub instance: String,
    pub case: CaseId,
    pub scope: Scope,
    pub revoke_role: bool,
    /// The memory capture, or why it is not taken (recorded as `not_acquired`).
    pub memory: Result<MemoryPlan, String>,
    /// Whether memory was left out on purpose: then its absence is not a shortfall.
    pub memory_left_out: bool,
    pub disk: EbsRequest,
    pub then: Option<Then>,
    pub resume: bool,
    pub logs_hours: u32,
}

impl ResponseRequest {
    pub fn validate(&self, ctx: &PlanContext<'_>) -> Result<ResponsePlan, PlanError> {
        let instance = instance(&self.instance)?;
        if self.then.is_some() && self.scope != Scope::Full {
            return Err(PlanError::ThenNeedsFullResponse(self.scope.name()));
        }
        let mut disk = EbsRequest {
            window: self.window,
            snapshot_timeout: self.snapshot_timeout,
            ..EbsRequest::instance(&instance)
        };
        if let Some((snapshots, by)) = &self.kept_snapshots {
            disk.target = EbsTarget::Snapshots(snapshots.clone());
            disk.made_by = Some(by.clone());
        }
        let disk = disk.validate()?;
        let (memory, memory_left_out) = match (&self.memory, self.scope) {
            (_, Scope::IsolateOnly | Scope::DiskOnly) => {
                (Err(format!("not part of {}", self.scope.name())), true)
            }
            (MemoryChoice::LeaveOut(why), Scope::Full) => (Err(why.clone()), true),
            (MemoryChoice::Take { staging, .. }, Scope::Full)
                if staging_url(staging, ctx).is_none() =>
            {
                // Bad avml options are refused even when memory cannot be staged.
                avml(staging.avml.as_ref())?;
                (
                    Err("no S3 location to stage it: give --staging s3://BUCKET/PREFIX or use an S3 store"
                        .to_owned()),
                    false,
                )
            }
            (MemoryChoice::Take { staging, timeout }, Scope::Full) => {
                let req = MemoryRequest {
                    instance: instance.clone(),
                    staging: staging.clone(),
                    timeout: *timeout,
                    part_mib: None,
                };
                (Ok(req.validate(ctx)?), false)
            }
        };
        Ok(ResponsePlan {
            case: ctx.case(&self.case),
            instance,
            scope: self.scope,
            revoke_role: self.revoke_role,
            memory,
            memory_left_out,
            disk,
            then: self.then,
            resume: self.resume,
            logs_hours: self.logs_hours,
        })
    }
}

#[cfg(test)]
mod tests {
    use time::OffsetDateTime;

    use super::*;

    const I: &str = "i-0123456789abcdef0";

    fn ctx(store: &str) -> PlanContext<'_> {
        PlanContext {
            now: OffsetDateTime::from_unix_timestamp(1_764_000_000).unwrap(),
            store_url: store,
        }
    }

    #[test]
    fn instance_ids_are_checked_for_shape() {
        for ok in [I, "i-1234abcd"] {
            assert!(is_instance_id(ok), "{ok}");
        }
        for bad in [
            "i-",
            "i-123",
            "i-0A1B2C3D",
            "i-0a1b2c3g",
            "vol-1234abcd",
            "",
        ] {
            let r = ResponseRequest::new(bad, Scope::Full).validate(&ctx("/tmp/e"));
            assert!(
                matches!(r, Err(PlanError::InvalidId { what: INSTANCE, .. })),
                "{bad}: {r:?}"
            );
        }
    }

    #[test]
    fn a_full_response_on_a_local_store_plans_memory_as_not_stageable() {
        let p = ResponseRequest::new(I, Scope::Full)
            .validate(&ctx("/tmp/e"))
            .unwrap();
        assert!(p.memory.unwrap_err().starts_with("no S3 location"));
        assert!(
            !p.memory_left_out,
            "memory was asked for: its absence is a shortfall"
        );
        assert!(matches!(p.disk.target, EbsTarget::Instance(ref i) if i == I));
        // 1_764_000_000 is 2025-11-24: the new case is named by the given time.
        assert!(p.case.as_str().starts_with("case-20251124-"), "{}", p.case);
    }

    #[test]
    fn an_s3_store_stages_memory_under_itself() {
        let p = ResponseRequest::new(I, Scope::Full)
            .validate(&ctx("s3://evidence/cases"))
            .unwrap();
        let m = p.memory.unwrap();
        assert_eq!(
            (m.staging.bucket.as_str(), m.staging.prefix.as_str()),
            ("evidence", "cases")
        );
        assert_eq!(m.instance, I);
    }

    #[test]
    fn memory_left_out_keeps_its_reason_and_is_no_shortfall() {
        let mut r = ResponseRequest::new(I, Scope::Full);
        r.memory = MemoryChoice::LeaveOut("left out by playbook rule r1 (memory = false)".into());
        let p = r.validate(&ctx("s3://b")).unwrap();
        assert_eq!(
            p.memory.unwrap_err(),
            "left out by playbook rule r1 (memory = false)"
        );
        assert!(p.memory_left_out);
        for scope in [Scope::IsolateOnly, Scope::DiskOnly] {
            let p = ResponseRequest::new(I, scope)
                .validate(&ctx("s3://b"))
                .unwrap();
            assert!(p.memory.is_err() && p.memory_left_out, "{scope:?}");
        }
    }

    #[test]
    fn bad_avml_options_are_refused_before_anything_changes() {
        for (url, sha, want) in [
            ("s3://b/avml", "abc", "64 hex digits"),
            ("s3://b", &"a".repeat(64)[..], "names an object"),
            ("https://x/avml", &"a".repeat(64)[..], "s3://"),
        ] {
            for store in ["s3://b", "/tmp/e"] {
                let mut r = ResponseRequest::new(I, Scope::Full);
                r.memory = MemoryChoice::Take {
                    staging: StagingRequest {
                        staging: None,
                        avml: Some(AvmlRequest {
                            url: url.into(),
                            sha256: sha.into(),
                        }),
                    },
                    timeout: Duration::from_secs(600),
                };
                let e = r.validate(&ctx(store)).unwrap_err().to_string();
                assert!(e.contains(want), "{url} {sha} on {store}: {e}");
            }
        }
    }

    #[test]
    fn ranges_and_combinations_are_refused_naming_what() {
        let mut r = ResponseRequest::new(I, Scope::Full);
        r.window = 0;
        let e = r.validate(&ctx("/tmp/e")).unwrap_err();
        assert!(
            matches!(
                e,
                PlanError::OutOfRange {
                    value: 0,
                    min: 1,
                    max: 1024,
                    ..
                }
            ),
            "{e}"
        );
        let mut r = ResponseRequest::new(I, Scope::IsolateOnly);
        r.then = Some(Then::Terminate);
        assert_eq!(
            r.validate(&ctx("/tmp/e")).unwrap_err(),
            PlanError::ThenNeedsFullResponse("an isolation")
        );
        let m = MemoryRequest {
            instance: I.into(),
            staging: StagingRequest::default(),
            timeout: Duration::from_secs(5),
            part_mib: None,
        };
        assert!(matches!(
            m.validate(&ctx("s3://b")),
            Err(PlanError::OutOfRange { value: 5, .. })
        ));
        let m = MemoryRequest {
            timeout: Duration::from_secs(60),
            ..m
        };
        assert!(matches!(
            m.validate(&ctx("/tmp/e")),
            Err(PlanError::Staging(_))
        ));
        let e = EbsRequest {
            changed_since: Some("snap-1".into()),
            ..EbsRequest::instance(I)
        };
        assert_eq!(
            e.validate().unwrap_err(),
            PlanError::ChangedSinceWithInstance
        );
        let e = EbsRequest {
            target: EbsTarget::Snapshot("snap-../x".into()),
            ..EbsRequest::instance(I)
        };
        assert!(matches!(
            e.validate(),
            Err(PlanError::InvalidId { what: SNAPSHOT, .. })
        ));
    }

    #[test]
    fn an_isolation_keeps_its_case_or_gets_a_new_one() {
        let case: CaseId = "case-7".parse().unwrap();
        let p = IsolateRequest {
            instance: I.into(),
            case: Some(case.clone()),
            revoke_role: true,
            dry_run: false,
        }
        .validate(&ctx("/tmp/e"))
        .unwrap();
        assert_eq!((p.case, p.revoke_role), (case, true));
    }
}
