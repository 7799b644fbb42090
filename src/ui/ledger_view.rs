//! What the ledger says of a case, as the workspace shows it: the latest
//! signed checkpoint, the case's entries, its last verification and each
//! artefact's state since. Read from the ledger's files without opening
//! it, so a page never waits for, or holds, the ledger's lock.

use std::collections::BTreeMap;

use crate::ids::{ArtefactId, CaseId};
use crate::ledger::LedgerPaths;
use crate::ledger::entry::{Action, Entry};

/// The body of the latest signed checkpoint (C2SP tlog-checkpoint).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub root: String,
    /// The whole signed note, as `custody ledger checkpoint` prints it.
    pub note: String,
}

/// A case's view of the ledger.
#[derive(Debug, Default)]
pub struct CaseLedger {
    pub checkpoint: Option<Checkpoint>,
    /// The case's entries, oldest first, with their index.
    pub entries: Vec<(u64, Entry)>,
    /// Why the ledger could not be read, when it could not.
    pub problem: Option<String>,
}

/// An artefact's state according to the case's last verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArtefactState {
    /// Read again and both digests matched, in the verification of entry `index`.
    Verified { at: String, index: u64 },
    /// Read again and found wrong (or missing).
    Failed { at: String, index: u64 },
    /// The last verification failed without naming its artefacts (an entry
    /// older than `failed_artefacts`): see `custody verify`.
    Unknown { at: String, index: u64 },
    /// Acquired after the last verification, or never verified.
    NotVerified,
}

impl CaseLedger {
    /// Reads `case`'s entries and the latest checkpoint; a ledger not yet
    /// made is empty, one that cannot be read says why.
    pub fn read(paths: &LedgerPaths, case: &CaseId) -> Self {
        let mut out = Self::default();
        if !paths.entries().exists() {
            return out;
        }
        match crate::ledger::case_entries_in(&paths.entries(), case) {
            Ok(list) => out.entries = list.into_iter().map(|(i, _, e)| (i, e)).collect(),
            Err(e) => out.problem = Some(crate::ui::error_chain(&e)),
        }
        out.checkpoint = std::fs::read(paths.checkpoint())
            .ok()
            .and_then(|b| parse_checkpoint(&b));
        out
    }

    /// The case's last `verified` entry.
    pub fn last_verification(&self) -> Option<&(u64, Entry)> {
        self.entries
            .iter()
            .rev()
            .find(|(_, e)| e.action == Action::Verified)
    }

    /// Whether the last verification found everything in order.
    pub fn last_verification_ok(&self) -> Option<bool> {
        self.last_verification().map(|(_, e)| detail_ok(e))
    }

    pub fn artefact_state(&self, id: &ArtefactId) -> ArtefactState {
        let Some((index, v)) = self.last_verification() else {
            return ArtefactState::NotVerified;
        };
        let acquired_after = self
            .entries
            .iter()
            .any(|(i, e)| i > index && e.evidence.as_ref().is_some_and(|r| &r.artefact == id));
        if acquired_after {
            return ArtefactState::NotVerified;
        }
        let (at, index) = (v.time.clone(), *index);
        let detail = v.detail.as_ref();
        let failed = detail
            .and_then(|d| d.get("failed_artefacts"))
            .and_then(|f| f.as_array());
        match failed {
            Some(list) if list.iter().any(|f| f.as_str() == Some(id.as_str())) => {
                ArtefactState::Failed { at, index }
            }
            Some(_) => ArtefactState::Verified { at, index },
            None if detail_ok(v) => ArtefactState::Verified { at, index },
            None => ArtefactState::Unknown { at, index },
        }
    }

    /// The entries an analyst made, newest first.
    pub fn analysts(&self) -> impl Iterator<Item = &(u64, Entry)> {
        self.entries
            .iter()
            .rev()
            .filter(|(_, e)| e.actor.role == "analyst")
    }
}

fn detail_ok(e: &Entry) -> bool {
    e.detail
        .as_ref()
        .and_then(|d| d.get("ok"))
        .and_then(serde_json::Value::as_bool)
        .unwrap_or(false)
}

/// The first three lines of a signed note's body: origin, tree size, root.
fn parse_checkpoint(note: &[u8]) -> Option<Checkpoint> {
    let text = std::str::from_utf8(note).ok()?;
    let mut lines = text.lines();
    let origin = lines.next()?.to_owned();
    let size = lines.next()?.parse().ok()?;
    let root = lines.next()?.to_owned();
    Some(Checkpoint {
        origin,
        size,
        root,
        note: text.to_owned(),
    })
}

/// Each case's latest entry time and last verification outcome, from one
/// read of the ledger's entries (for the list of cases).
pub fn case_activity(paths: &LedgerPaths) -> BTreeMap<String, (String, Option<bool>)> {
    let mut out: BTreeMap<String, (String, Option<bool>)> = BTreeMap::new();
    let Ok(lines) = crate::ledger::read_entries(&paths.entries()) else {
        return out;
    };
    for line in lines {
        let Ok(e) = Entry::parse(&line) else { continue };
        let Some(case) = &e.case else { continue };
        let slot = out.entry(case.to_string()).or_default();
        slot.0.clone_from(&e.time);
        if e.action == Action::Verified {
            slot.1 = Some(detail_ok(&e));
        }
    }
    out
}

/// An action's name as the ledger writes it (`acquired`, `annotated`).
pub fn action_name(a: Action) -> String {
    serde_json::to_value(a)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("{a:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::entry::{Actor, EvidenceRef, Reason};

    fn entry(action: Action, artefact: Option<&str>, detail: Option<serde_json::Value>) -> Entry {
        Entry {
            v: 1,
            time: "2026-12-04T12:00:00Z".into(),
            case: Some("case-1".parse().expect("case")),
            prev: None,
            action,
            actor: Actor {
                name: "op".into(),
                role: "operator".into(),
                host: "ws1".into(),
                tool: "custody".into(),
                tool_version: "0".into(),
            },
            reason: Reason::Manual {
                operator: "op".into(),
                note: None,
            },
            evidence: artefact.map(|a| EvidenceRef {
                artefact: a.parse().expect("artefact id"),
                kind: "file".into(),
                raw_size: 1,
                raw_sha256: "0".repeat(64),
                stored_size: 1,
                stored_sha256: "0".repeat(64),
                location: "file:///store".into(),
                key: format!("cases/case-1/artefacts/{a}"),
                version_id: None,
                etag: None,
            }),
            place: None,
            detail,
            nonce: "00112233445566778899aabbccddeeff".into(),
        }
    }

    #[test]
    fn an_artefact_is_verified_failed_or_not_verified_since_by_the_last_verification() {
        let a = "01JDKX5E1W9M3Q8Z7Y6V5T4S3R";
        let b = "01JDKX5E1W9M3Q8Z7Y6V5T4S3S";
        let c = "01JDKX5E1W9M3Q8Z7Y6V5T4S3T";
        let mut l = CaseLedger {
            entries: vec![
                (0, entry(Action::Acquired, Some(a), None)),
                (1, entry(Action::Acquired, Some(b), None)),
            ],
            ..CaseLedger::default()
        };
        let id = |s: &str| s.parse::<ArtefactId>().expect("id");
        assert_eq!(l.artefact_state(&id(a)), ArtefactState::NotVerified);
        l.entries.push((
            2,
            entry(
                Action::Verified,
                None,
                Some(serde_json::json!({ "ok": false, "failed_artefacts": [b] })),
            ),
        ));
        l.entries.push((3, entry(Action::Acquired, Some(c), None)));
        assert!(matches!(
            l.artefact_state(&id(a)),
            ArtefactState::Verified { index: 2, .. }
        ));
        assert!(matches!(
            l.artefact_state(&id(b)),
            ArtefactState::Failed { index: 2, .. }
        ));
        assert_eq!(l.artefact_state(&id(c)), ArtefactState::NotVerified);
        assert_eq!(l.last_verification_ok(), Some(false));
        // An older entry without the list: ok says all, a failure says nothing of which.
        l.entries.push((
            4,
            entry(
                Action::Verified,
                None,
                Some(serde_json::json!({ "ok": false })),
            ),
        ));
        assert!(matches!(
            l.artefact_state(&id(a)),
            ArtefactState::Unknown { index: 4, .. }
        ));
        l.entries.push((
            5,
            entry(
                Action::Verified,
                None,
                Some(serde_json::json!({ "ok": true })),
            ),
        ));
        assert!(matches!(
            l.artefact_state(&id(c)),
            ArtefactState::Verified { index: 5, .. }
        ));
    }

    #[test]
    fn a_checkpoint_note_gives_its_origin_size_and_root() {
        let cp =
            parse_checkpoint(b"custody/host/x\n42\nq6t+root=\n\n\xe2\x80\x94 custody/host/x sig\n")
                .expect("checkpoint");
        assert_eq!(
            (cp.origin.as_str(), cp.size, cp.root.as_str()),
            ("custody/host/x", 42, "q6t+root=")
        );
        assert!(parse_checkpoint(b"origin\nnot a number\nroot\n").is_none());
        assert!(parse_checkpoint(b"\xff\xfe").is_none());
    }
}
