//! `custody serve`: alerts in, isolation and collection out, nothing lost.
//!
//! - [`auth`]: HMAC signatures with a replay window, or bearer tokens.
//! - [`conn`]: connection limits and deadlines, so unauthenticated
//!   connections cannot crowd out alerts.
//! - [`queue`]: the durable, de-duplicating job queue alerts are written to
//!   before they are acknowledged.
//! - [`notify`]: signed webhook POSTs when a job finishes or fails.
//! - [`schedule`]: readiness audits on cron schedules, notified on regression.

pub mod auth;
pub mod config;
pub mod conn;
pub mod notify;
pub mod playbook;
pub mod queue;
pub mod schedule;
pub mod server;
pub mod worker;
