//! The AWS checks, one file per service, named as the second part of the
//! check id (`aws.<service>.<name>` is `<service>::<name>`). Each is an
//! `async fn(At) -> Findings` that asks its service and judges the answers;
//! where it runs and how a failed call becomes ERROR are
//! [`super::runner`]'s, and the table that maps each id to its function is
//! [`crate::readiness::engine`]'s.
//!
//! - `autoscaling`: instances in groups cannot vanish before capture.
//! - `cloudtrail`: the multi-region trail, its delivery, validation, bucket
//!   and retention.
//! - `config`: the Config recorder.
//! - `ebs`: default encryption, EBS direct, the snapshot quota.
//! - `ec2`: IMDSv2, staged isolation groups.
//! - `guardduty`: a detector in every region.
//! - `iam`: the forensic role, its trust and its permissions.
//! - `kms`: the volume keys are enabled and usable by the forensic role.
//! - `s3`: the evidence bucket, access logging.
//! - `securityhub`: Security Hub enabled.
//! - `ssm`: instances managed by SSM.
//! - `vpc`: flow logs.
//! - `shared`: reads checks of several services share (trails, a bucket's
//!   locks, running instances).

pub(crate) mod autoscaling;
pub(crate) mod cloudtrail;
pub(crate) mod config;
pub(crate) mod ebs;
pub(crate) mod ec2;
pub(crate) mod guardduty;
pub(crate) mod iam;
pub(crate) mod kms;
pub(crate) mod s3;
pub(crate) mod securityhub;
mod shared;
pub(crate) mod ssm;
pub(crate) mod vpc;
