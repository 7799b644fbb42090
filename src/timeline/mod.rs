//! One timeline per case: log artefacts parsed into one event schema, kept
//! in an embedded database, searched, faceted, pivoted and exported.
//!
//! - [`parse`]: every supported log format, read from an artefact's raw bytes
//!   (never altered), each event pointing back at the artefact and the
//!   record's place in it.
//! - [`store`]: the case's timeline database (SQLite with FTS5): load,
//!   search, facets, histograms, saved searches, pivots.
//! - `fts_build`: a bulk load's full-text index, built on a thread and in
//!   a file of its own, then copied into the timeline.
//! - [`query`]: the query language.
//! - [`sample`]: a broad query's counts estimated from a sample of the case.
//! - [`ingest`]: loading a case's log artefacts, verified, into its timeline.
//! - [`detections`]: what `custody detect` found, stored beside the events.
//! - [`annotations`]: analysts' stars, tags and comments on events (each a
//!   ledger entry first).
//! - [`findings`]: shared sources, new-ASN sign-ins followed by inbox rules
//!   or mail bursts, legacy sign-ins after a lockout.
//! - [`geoip`]: ASN and country of source addresses from MaxMind databases.

pub mod annotations;
pub mod detections;
pub mod findings;
mod fts_build;
pub mod geoip;
pub mod ingest;
pub mod parse;
pub mod query;
pub mod sample;
pub mod store;

use std::net::IpAddr;

use serde::Serialize;

/// One event in the normalised schema. Every field a source does not have
/// stays empty rather than guessed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Event {
    /// When it happened, in microseconds since the Unix epoch (UTC).
    pub time_us: i64,
    /// The log it came from: one of [`parse::Format::source`].
    pub source: &'static str,
    /// The cloud account, subscription or tenant.
    pub account: Option<String>,
    /// Who acted: a user principal name, an IAM ARN, a host user.
    pub actor: Option<String>,
    /// What was done: `ConsoleLogin`, `New-InboxRule`, `REST.GET.OBJECT`, `sshd.accepted`.
    pub action: String,
    /// `success` or `failure` where the source says; otherwise the source's own word.
    pub outcome: Option<String>,
    pub ip: Option<IpAddr>,
    pub user_agent: Option<String>,
    /// What was acted on: a resource ARN, a mailbox, a bucket/key.
    pub target: Option<String>,
    /// The source's own record id (CloudTrail eventID, UAL Id). With
    /// [`Event::content`] it finds the duplicates the same export or
    /// overlapping exports carry.
    pub record_id: Option<String>,
    /// A digest of the record's bytes as the source wrote them (the first 8
    /// bytes of their SHA-256; see [`parse::Record::digest`]), set for
    /// events with a record id. A record is a duplicate only when its
    /// source, record id and content are all equal to one loaded before;
    /// the same id with other content is kept, and reported.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<i64>,
    /// A one-line human summary, for lists and for Timesketch's `message`.
    pub message: String,
    /// Further fields worth searching and exporting (client app, error code,
    /// inbox rule parameters), flat and small: never the whole record.
    pub attributes: Vec<(String, String)>,
    /// Where in the artefact: the member file of a bundle ("" for a single
    /// file) and the record within it (`line 12`, `Records[3]`, `row 5`).
    pub member: String,
    pub locator: String,
}

/// A record that could not be read, with where it is; parsing goes on past it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub member: String,
    pub locator: String,
    pub message: String,
}

impl Event {
    /// An event with only the required fields; parsers fill in the rest.
    pub fn new(time_us: i64, source: &'static str, action: impl Into<String>) -> Self {
        Self {
            time_us,
            source,
            account: None,
            actor: None,
            action: action.into(),
            outcome: None,
            ip: None,
            user_agent: None,
            target: None,
            record_id: None,
            content: None,
            message: String::new(),
            attributes: Vec::new(),
            member: String::new(),
            locator: String::new(),
        }
    }

    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}
