//! Microsoft logs: Azure Activity Log, Entra ID sign-in and audit logs, the
//! Microsoft 365 Unified Audit Log.

use super::Sink;

pub fn azure_activity(_bytes: &[u8], _sink: &mut dyn Sink) {}
pub fn entra_signin(_bytes: &[u8], _sink: &mut dyn Sink) {}
pub fn entra_audit(_bytes: &[u8], _sink: &mut dyn Sink) {}
pub fn ual_csv(_bytes: &[u8], _sink: &mut dyn Sink) {}
pub fn ual_jsonl(_bytes: &[u8], _sink: &mut dyn Sink) {}
