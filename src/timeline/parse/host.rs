//! Host text logs, alone or inside a host triage bundle.

use super::Sink;

pub fn syslog(_bytes: &[u8], _year_hint: i32, _sink: &mut dyn Sink) {}
pub fn bundle(_bytes: &[u8], _year_hint: i32, _sink: &mut dyn Sink) {}
