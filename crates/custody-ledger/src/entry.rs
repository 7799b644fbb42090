//! Ledger entries: who did what, to which evidence, when, where and why.
//!
//! An entry is stored as one line of RFC 8785 canonical JSON (sorted keys, no
//! insignificant whitespace); the newline is not part of the entry, and the
//! Merkle leaf is `SHA-256(0x00 || entry)`.

use serde::{Deserialize, Serialize};

use crate::ids::{ArtefactId, CaseId};

/// Entry schema version.
pub const ENTRY_SCHEMA: u32 = 1;
/// Largest entry accepted, in bytes of canonical JSON.
pub const MAX_ENTRY_LEN: usize = 64 << 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Acquired,
    Stored,
    Copied,
    Verified,
    Exported,
    Accessed,
    Isolated,
    Released,
    Failed,
    /// A snapshot of a volume was taken for a case.
    SnapshotCreated,
    /// A resource's state before custody changed it (isolation), so that
    /// it can be restored.
    StateRecorded,
    /// The changes isolation made, described again and checked.
    IsolationChecked,
    /// A command was run on a resource (SSM Run Command on an instance):
    /// its id, document and request id; never its parameters, which may
    /// hold presigned URLs.
    CommandSent,
    /// Evidence that was asked for could not be taken (memory of an
    /// instance that is not managed, a command that failed or timed out,
    /// nothing uploaded), with the reason; the response goes on without it.
    NotAcquired,
    /// A response (`custody respond`) ended: each phase in order with its
    /// outcome, and whether the instance was stopped or terminated.
    Responded,
    /// An instance was stopped or terminated at the end of a response,
    /// after every capture succeeded and the operator asked for it.
    PowerChanged,
    /// An alert was accepted by the server: what it named, the playbook
    /// rule that matched and the action decided (or, in a dry run, what
    /// would be done).
    AlertReceived,
    /// An artefact was derived from another (a file extracted from a disk
    /// image, its file-system timeline): the parent, the path, the inode
    /// and the byte extents it occupies in the parent.
    Derived,
    /// Names the new verifier key; committed under the old key.
    KeyRotated,
    LedgerInitialised,
    /// Lines found past the last checkpoint that no pending record of this
    /// ledger vouches for (not written by its key holder) were moved to
    /// `set-aside/`; the detail names the file, its size and SHA-256.
    TailSetAside,
    /// An analyst starred, tagged or commented an event of a case's
    /// timeline, or took a star or tag back: the event, its place in the
    /// evidence, the mark.
    Annotated,
    /// An analyst saved a search of a case's timeline: its name, query and facets.
    SearchSaved,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    /// Operator or service identity.
    pub name: String,
    /// `operator`, `webhook`, `scheduler`.
    pub role: String,
    pub host: String,
    pub tool: String,
    pub tool_version: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Reason {
    Alert {
        source: String,
        id: String,
    },
    Manual {
        operator: String,
        note: Option<String>,
    },
    Schedule {
        name: String,
    },
}

/// The evidence an entry is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvidenceRef {
    pub artefact: ArtefactId,
    pub kind: String,
    pub raw_size: u64,
    pub raw_sha256: String,
    pub stored_size: u64,
    pub stored_sha256: String,
    pub location: String,
    pub key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
}

/// Where the bytes came from: the record an artefact keeps of its source
/// (`custody::evidence::Source`), and an entry of where its evidence or its
/// action's target is ([`Place`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    /// Cloud resource id (`i-…`, `snap-…`) or a local description (`file`, `host`, `pid:123`).
    pub resource: String,
    /// Host the bytes were read on or from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Path on that host, where there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// For logs: the format the bytes are in (`cloudtrail`, `ual-csv`), which
    /// the timeline reads them as.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_format: Option<String>,
}

/// Where the evidence or the action's target is: the same record an artefact keeps of its source.
pub use self::Source as Place;

/// What a caller asks to append; the ledger adds time, `prev` and nonce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryDraft {
    pub case: Option<CaseId>,
    pub action: Action,
    pub actor: Actor,
    pub reason: Reason,
    pub evidence: Option<EvidenceRef>,
    pub place: Option<Place>,
    /// Action-specific facts: a prior state, a failure reason, a new verifier key.
    pub detail: Option<serde_json::Value>,
}

/// An entry as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    pub v: u32,
    /// RFC 3339 UTC, from the injected clock.
    pub time: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub case: Option<CaseId>,
    /// Index of this case's previous entry, so a verifier given one case's
    /// entries notices one left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prev: Option<u64>,
    pub action: Action,
    pub actor: Actor,
    pub reason: Reason,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<EvidenceRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub place: Option<Place>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<serde_json::Value>,
    /// 128 random bits, hex: two identical actions never make identical entries.
    pub nonce: String,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EntryError {
    #[error("entry is {len} bytes; the limit is {MAX_ENTRY_LEN}")]
    TooLarge { len: usize },
    #[error("entry cannot be encoded as canonical JSON")]
    Encode(#[source] serde_json::Error),
    #[error("entry is not valid JSON of a ledger entry")]
    Parse(#[source] serde_json::Error),
    #[error("entry is not in canonical form (RFC 8785)")]
    NotCanonical,
    #[error("entry schema {0} is not one this build reads")]
    Schema(u32),
}

impl Entry {
    /// The entry's canonical bytes (what is hashed and stored).
    pub fn to_canonical(&self) -> Result<Vec<u8>, EntryError> {
        let bytes = serde_json_canonicalizer::to_vec(self).map_err(EntryError::Encode)?;
        if bytes.len() > MAX_ENTRY_LEN {
            return Err(EntryError::TooLarge { len: bytes.len() });
        }
        Ok(bytes)
    }

    /// Parses stored bytes, refusing anything not byte-for-byte canonical.
    pub fn parse(bytes: &[u8]) -> Result<Self, EntryError> {
        if bytes.len() > MAX_ENTRY_LEN {
            return Err(EntryError::TooLarge { len: bytes.len() });
        }
        let e: Entry = serde_json::from_slice(bytes).map_err(EntryError::Parse)?;
        if e.v != ENTRY_SCHEMA {
            return Err(EntryError::Schema(e.v));
        }
        if e.to_canonical()? != bytes {
            return Err(EntryError::NotCanonical);
        }
        Ok(e)
    }
}

pub fn random_nonce() -> String {
    let mut b = [0u8; 16];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut b);
    hex::encode(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub fn sample() -> Entry {
        Entry {
            v: ENTRY_SCHEMA,
            time: "2026-11-28T04:00:00Z".into(),
            case: Some("case-1".parse().expect("id")),
            prev: None,
            action: Action::Acquired,
            actor: Actor {
                name: "alice".into(),
                role: "operator".into(),
                host: "ws1".into(),
                tool: "custody".into(),
                tool_version: "0.1.0".into(),
            },
            reason: Reason::Manual {
                operator: "alice".into(),
                note: None,
            },
            evidence: None,
            place: Some(Place {
                resource: "i-0abc".into(),
                region: Some("eu-west-1".into()),
                ..Place::default()
            }),
            detail: Some(serde_json::json!({"z": 1, "a": [true, null]})),
            nonce: "00112233445566778899aabbccddeeff".into(),
        }
    }

    #[test]
    fn canonical_form_sorts_keys_and_has_no_whitespace() {
        let bytes = sample().to_canonical().expect("encode");
        let text = String::from_utf8(bytes.clone()).expect("utf8");
        assert!(
            text.starts_with("{\"action\":\"acquired\",\"actor\":{\"host\":\"ws1\""),
            "{text}"
        );
        assert!(
            text.contains("\"detail\":{\"a\":[true,null],\"z\":1}"),
            "{text}"
        );
        assert!(!text.contains(' ') || text.contains("\"note\""), "{text}");
        assert!(!text.contains('\n'));
        assert_eq!(Entry::parse(&bytes).expect("parse"), sample());
    }

    #[test]
    fn non_canonical_or_oversized_entries_are_refused() {
        let bytes = sample().to_canonical().expect("encode");
        let pretty = serde_json::to_vec_pretty(&sample()).expect("pretty");
        assert!(matches!(
            Entry::parse(&pretty),
            Err(EntryError::NotCanonical)
        ));
        let mut spaced = bytes.clone();
        spaced.insert(1, b' ');
        assert!(Entry::parse(&spaced).is_err());
        let mut big = sample();
        big.detail = Some(serde_json::json!({"blob": "x".repeat(MAX_ENTRY_LEN)}));
        assert!(matches!(
            big.to_canonical(),
            Err(EntryError::TooLarge { .. })
        ));
    }
}
