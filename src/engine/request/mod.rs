//! Typed requests, as the command line builds them from flags and the
//! server from alerts and playbook rules, and their validation into plans.
//! Validation is pure (no I/O, the time and the store's URL are given), so
//! what makes sense and what is refused is decided, and tested, here once;
//! a new flag cannot change what the server does without a change here.
//!
//! [`AcquireRequest`] names every acquisition; the requests that act on an
//! EC2 instance or its volumes (EBS and memory acquisitions, isolation,
//! whole responses) and their validation are in [`ec2`] (feature `aws`),
//! re-exported here.

#[cfg(feature = "aws")]
pub mod ec2;

#[cfg(feature = "aws")]
pub use ec2::{
    AvmlRequest, EbsRequest, IsolatePlan, IsolateRequest, MemoryChoice, MemoryPlan, MemoryRequest,
    ResponsePlan, ResponseRequest, Scope, StagingRequest, is_instance_id, limits,
};

use std::path::PathBuf;

use time::OffsetDateTime;

use crate::evidence::ArtefactKind;

/// A request that makes no sense, refused before anything changes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PlanError {
    #[error("{value:?} is not {what}")]
    InvalidId { what: &'static str, value: String },
    #[error("{what} must be between {min} and {max}, not {value}")]
    OutOfRange {
        what: &'static str,
        value: u64,
        min: u64,
        max: u64,
    },
    #[error("memory staging: {0}")]
    Staging(String),
    #[error("the avml build: {0}")]
    Avml(String),
    #[error(
        "--changed-since reads one snapshot's changes: give --snapshot or --volume, not --instance"
    )]
    ChangedSinceWithInstance,
    #[error("stopping or terminating the instance ends a whole response, not {0}")]
    ThenNeedsFullResponse(&'static str),
}

/// What validation may read: the time (for new case ids) and the store's URL
/// (an S3 store can stage memory).
#[derive(Debug, Clone)]
pub struct PlanContext<'a> {
    pub now: OffsetDateTime,
    pub store_url: &'a str,
}

/// An acquisition into a case.
#[derive(Debug, Clone)]
pub enum AcquireRequest {
    /// A file, a raw image or a block device.
    File { path: PathBuf, kind: ArtefactKind },
    /// Volatile triage of the machine custody runs on.
    Host {
        root: PathBuf,
        memory_pids: Vec<u32>,
        skip_logs: bool,
        /// Where the node's container runtimes keep their state; `None`
        /// leaves containers out.
        containers: Option<crate::collect::container::Node>,
    },
    /// A Lambda function: configuration, policy, versions, code.
    #[cfg(feature = "aws")]
    Lambda {
        function: String,
        qualifier: Option<String>,
        /// How far back its log group is read.
        logs_window: time::Duration,
    },
    /// An ECS task: its description, definition, network and logs.
    #[cfg(feature = "aws")]
    Ecs { cluster: String, task: String },
    /// One container on this node.
    Container {
        node: crate::collect::container::Node,
        select: crate::collect::container::collector::Select,
        /// Dump the memory of its processes first.
        memory: bool,
    },
    #[cfg(feature = "aws")]
    Ebs(EbsRequest),
    #[cfg(feature = "aws")]
    Memory(MemoryRequest),
}
