//! `custody serve`: alerts in, isolation and collection out, nothing lost.
//!
//! - [`config`]: the server's configuration file: listener, limits, alert
//!   sources with their adapter and authentication, playbook rules.
//! - [`server`]: the HTTP side: alert intake, job and case views, health
//!   and metrics.
//! - [`auth`]: HMAC signatures with a replay window, or bearer tokens.
//! - [`conn`]: connection limits and deadlines, so unauthenticated
//!   connections cannot crowd out alerts.
//! - [`queue`]: the durable, de-duplicating job queue alerts are written to
//!   before they are acknowledged.
//! - [`playbook`]: which action an alert gets; the first matching rule decides.
//! - [`worker`]: a bounded number of jobs at once, each carried out by a
//!   [`worker::JobRunner`] with its state in the queue before and after.
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
