//! AWS logs: CloudTrail, VPC flow logs, S3 server access logs.

use super::Sink;

pub fn cloudtrail(_bytes: &[u8], _sink: &mut dyn Sink) {}
pub fn cloudtrail_lines(_bytes: &[u8], _sink: &mut dyn Sink) {}
pub fn vpc_flow(_bytes: &[u8], _sink: &mut dyn Sink) {}
pub fn vpc_flow_cloudwatch(_bytes: &[u8], _sink: &mut dyn Sink) {}
pub fn s3_access(_bytes: &[u8], _sink: &mut dyn Sink) {}
