//! custody: capture disk, memory and logs from ephemeral cloud resources and
//! prove afterwards that every byte is exactly what was collected.
//!
//! # Layout
//!
//! | module | role |
//! |---|---|
//! | [`clock`] | the `Clock` seam: every timestamp custody records comes from it |
//! | [`ids`] | validated case and artefact identifiers (safe as path and key parts) |
//! | [`evidence`] | the artefact model, the streaming hash + seekable-zstd pipeline, and case operations (record, list, verify, export) |
//! | [`ledger`] | the custody ledger: entries, Merkle tree, signed checkpoints, proofs, verification |
//! | [`store`] | the `EvidenceStore` seam and its backends; `local` is the embedded default |
//! | [`collect`] | the `Collector` seam: a file or block device, volatile host triage, process memory, EBS volumes (snapshots read through EBS direct), instance memory over SSM, cloud logs (S3 log buckets, CloudTrail LookupEvents, CloudWatch Logs) |
//! | [`aws`] | shared AWS SDK settings (retries, timeouts, endpoint) and the process-wide API rate budgets; the clients with feature `aws` |
//! | [`alert`] | alert adapters (GuardDuty, Security Hub, generic JSON) turning what a sender posts into one validated `Alert` with its entities |
//! | [`engine`] | the one engine behind every entry point: the `App` context, typed requests validated into plans, and the acquisitions and responses they run |
//! | [`process`] | disk images read in place from the evidence (`custody process`): a stored image through its seek table, the catalogue of files a responder reads first, the scan of one image over the `custody-disk` readers, derived files re-read from their parent |
//! | [`respond`] | reversible isolation of an EC2 instance, and the whole response in the order of volatility (feature `aws`) |
//! | [`queue`] | the webhook server's durable job queue: accepted alerts and their steps, fsynced before they are acknowledged, replayed on start; read without opening it by the workspace (feature `serve`) |
//! | [`serve`] | the alert webhook server: authenticated HTTP API, durable job queue, playbooks, workers, scheduled audits and notifications (feature `serve`) |
//! | [`ui`] | the analysts' workspace in the browser: cases, overview, the timeline explorer, events with their provenance; stars, tags and comments as signed ledger entries; analysts with argon2 passwords or bearer tokens, CSRF-protected sessions (feature `serve`) |
//! | [`timeline`] | logs into one timeline per case: parsers of every supported log format, the embedded timeline database (SQLite with FTS5), the query language, GeoIP enrichment, pivots and findings (feature `timeline`) |
//! | [`detect`] | Sigma rules (rsigma-parser, rsigma-eval) and indicator lists evaluated over the original records of a case's log artefacts; custody's own rules from `detection_rules/` (feature `timeline`) |
//! | [`inflate`] | how far compressed log input may expand: the `[decompress]` setting, read in every build, enforced by the timeline's parsers |
//! | [`readiness`] | readiness audits: the check catalogue of `readiness_checks/`, scores, verdicts and trends between runs (feature `readiness`) |
//! | [`mirror`] | the ledger's copy in a cloud evidence store, and its check (the ledger itself knows no store) |
//! | [`machine`] | the machine custody runs on: its host name |
//! | [`private_fs`] | how custody creates files and directories: owner-only, new directories fsynced in their parents |
//! | [`sanitize`] | escaping of outside text (logs, alerts, evidence) for terminals and spreadsheets |
//! | [`progress`] | how long work reports progress without deciding what a terminal shows |
//! | [`config`] | defaults < `custody.toml` < `CUSTODY_*` environment < flags |
//! | [`cli`] | one module per subcommand of the `custody` binary: `Args` + `run()` |
//!
//! The binary (`src/main.rs`) only parses arguments, sets up tracing, calls
//! [`cli::run`] and maps the outcome to an exit code: 0 ok, 1 verification
//! failed, 2 operational error. `cli` only parses flags into the engine's
//! requests and prints what comes back; the server ([`serve::run`]) builds
//! the same requests from alerts and never imports `cli`.
//!
//! Cargo features add backends and commands to what every build has (the
//! engine, the local store, the ledger): `aws`, `azure`, `timeline`,
//! `readiness` and `serve`, all on by default (`docs/design.md`,
//! "Features"). A gated module is declared only with its feature, and each
//! map names the feature beside the module.

pub mod alert;
pub mod aws;
pub mod cli;
pub mod clock;
pub mod collect;
pub mod config;
#[cfg(feature = "timeline")]
pub mod detect;
pub mod engine;
pub mod evidence;
pub mod inflate;
/// Case and artefact ids live with the ledger, in the `custody-ledger` crate.
pub use custody_ledger::ids;
pub mod ledger;
pub mod machine;
pub mod mirror;
pub mod private_fs;
pub mod process;
pub mod progress;
#[cfg(feature = "serve")]
pub mod queue;
#[cfg(feature = "readiness")]
pub mod readiness;
#[cfg(feature = "aws")]
pub mod respond;
pub mod sanitize;
#[cfg(feature = "serve")]
pub mod serve;
pub mod store;
#[cfg(feature = "timeline")]
pub mod timeline;
#[cfg(feature = "serve")]
pub mod ui;

pub use engine::App;

/// Name and version recorded in every artefact this build produces.
pub const TOOL_NAME: &str = env!("CARGO_PKG_NAME");
/// See [`TOOL_NAME`].
pub const TOOL_VERSION: &str = env!("CARGO_PKG_VERSION");

/// An error and its causes on one line: `outer: cause: root cause`.
pub use custody_ledger::error_chain;

#[cfg(test)]
mod deps_tests;
#[cfg(test)]
mod layout_tests;
