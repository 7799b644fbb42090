//! Integration tests, built as one binary. Tests that need an emulator read
//! its endpoint from the environment (`scripts/test` starts them); under
//! `CI=true` a missing emulator fails the test instead of skipping it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod azure;
mod azure_cli;
mod browser;
mod cli;
mod common;
mod containers;
mod detect;
mod ebs;
mod ecs;
mod eks;
mod fault_proxy;
mod faults;
mod isolate;
mod lambda;
mod ledger;
mod memory;
mod process;
mod process_case;
mod readiness;
mod respond;
mod s3;
mod s3_faults;
mod serve;
mod serve_contract;
mod serve_faults;
mod timeline;
mod trail_digest;
mod ui;
mod ui_browser;
mod ui_oidc;
mod vectors;

/// Microseconds-free RFC 3339 time of a Unix time in milliseconds.
pub fn timeline_time(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(ms / 1000)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}
