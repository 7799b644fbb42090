//! The `Collector` seam: something that captures one or more artefacts into a case.
//!
//! - [`file`](mod@file): a file, a raw image or a block device.
//! - [`host`]: volatile triage of the machine custody runs on, and process memory.
//! - [`container`]: the containers on this node (containerd, Docker), their
//!   writable layers, processes and logs.
//! - [`memory`]: an EC2 instance's memory, through SSM Run Command and
//!   presigned uploads (feature `aws`).
//! - [`ebs`]: EBS volumes through a snapshot and the EBS direct APIs, with no
//!   helper instance (feature `aws`).
//! - [`logs`]: cloud logs with their original bytes: S3 log buckets,
//!   CloudTrail LookupEvents, CloudWatch Logs (features `aws` and
//!   `timeline`, whose parsers name each log's format).
//! - [`ecs`]: an ECS task, its definition, interfaces and groups, and its
//!   `awslogs` streams (feature `aws`).
//! - [`lambda`]: a Lambda function, its configuration and its code checked
//!   against `CodeSha256` (feature `aws`).
//! - [`member`]: safe tar member names for host paths and S3 keys.
//! - [`channel`]: turns a producer that writes (a tar builder, a memory
//!   walker) into a [`SourceReader`] for the pipeline, with bounded memory.

pub mod channel;
pub mod container;
#[cfg(feature = "aws")]
pub mod ebs;
#[cfg(feature = "aws")]
pub mod ecs;
pub mod file;
pub mod host;
#[cfg(feature = "aws")]
pub mod lambda;
#[cfg(all(feature = "aws", feature = "timeline"))]
pub mod logs;
pub mod member;
#[cfg(feature = "aws")]
pub mod memory;

use std::fmt;

use async_trait::async_trait;

use crate::evidence::Artefact;
use crate::evidence::case::{AcquireContext, EvidenceError};
use crate::ids::CaseId;

pub use crate::evidence::pipeline::{SourceEnd, SourceReader};

/// What a collector captured, and what it could not.
#[derive(Debug, Default)]
pub struct Collected {
    pub artefacts: Vec<Artefact>,
    /// Whole artefacts that could not be captured, each with its reason.
    pub failures: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CollectError {
    #[error("cannot open {path}")]
    Open {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is a directory; give a file, an image or a block device")]
    IsDirectory { path: String },
    #[error(transparent)]
    Evidence(#[from] EvidenceError),
    /// The container asked for is not on this node, or not only one is.
    #[error("{0}")]
    Container(String),
    /// A cloud API refused or failed (the message names the call and resource).
    #[error(transparent)]
    Cloud(Box<dyn std::error::Error + Send + Sync>),
}

#[async_trait]
pub trait Collector: Send + Sync + fmt::Debug {
    /// What will be collected, for logs and plans: `file /dev/sda`.
    fn describe(&self) -> String;

    async fn collect(&self, ctx: &AcquireContext, case: &CaseId)
    -> Result<Collected, CollectError>;
}

/// This machine's host name (it lives in a leaf module so the ledger can
/// name its host without depending on the collectors).
pub use crate::machine::hostname;
