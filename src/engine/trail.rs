//! CloudTrail's own integrity chain, checked on a collected trail bundle
//! (`custody logs verify-trail`, and after `custody logs cloudtrail`).
//!
//! # What CloudTrail writes
//!
//! With log file validation on, every hour CloudTrail delivers, beside the
//! log files, a *digest file* per account and region
//! (`…/AWSLogs/<account>/CloudTrail-Digest/<region>/YYYY/MM/DD/<account>_CloudTrail-Digest_<region>_<trail>_<home region>_<YYYYMMDDTHHMMSSZ>.json.gz`,
//! with an `o-…` level for organisation trails). It is gzipped JSON:
//! `digestStartTime`, `digestEndTime`, its own location (`digestS3Bucket`,
//! `digestS3Object`), `digestPublicKeyFingerprint`, the previous digest's
//! location, hash (`previousDigestHashValue`, SHA-256) and signature
//! (`previousDigestSignature`, `null` when the chain starts there), and
//! `logFiles`: each log file delivered in the hour with the hex SHA-256 of
//! its **uncompressed** content (`hashValue`). The digest's own signature
//! is not in the file: it is the S3 object's user metadata `signature`
//! (hex), with `signature-algorithm` (`SHA256withRSA`), which collection
//! keeps in the bundle's `index.json` for this reason.
//!
//! # What is checked
//!
//! - **Each digest's signature**: RSA PKCS#1 v1.5 over SHA-256 of the
//!   string [`signing_string`] builds (the digest's end time, its S3 path
//!   `bucket/key`, the hex SHA-256 of the digest file's uncompressed
//!   content, and the previous digest's signature or `null`, joined by
//!   newlines), with the region's public key that `ListPublicKeys` returns
//!   for the digest's fingerprint (a PKCS#1 `RSAPublicKey` in DER). A digest
//!   that names another location than the one it was collected from is
//!   invalid, as AWS's own validator says ("moved from its original
//!   location").
//! - **The chain**: a digest's `previousDigestSignature` must be the
//!   signature the previous digest carries, and its
//!   `previousDigestHashValue` the SHA-256 of the previous digest's content.
//!   A previous digest absent from the bundle although its day was collected
//!   is a *gap*: a digest was deleted. One whose day lies before the
//!   window is the chain's first link in the window. A digest that names
//!   no previous one starts (or restarts) the chain: CloudTrail does that
//!   when logging or validation was turned back on.
//! - **Each log file** against the hash its digest lists, over its
//!   uncompressed bytes, inflated within the `[decompress]` limits
//!   ([`InflateLimits`]) and hashed as it streams, never held whole.
//!
//! Backfill digests (`…_backfill.json.gz`) are checked the same way and
//! form a chain of their own.
//!
//! # What comes out
//!
//! A [`TrailReport`]: per log file `valid`, `altered`, `missing` (listed,
//! absent from the bucket), `unlisted` (named for a time well inside the
//! period of a digest of its account and region that does not list it: put
//! in the bucket besides what CloudTrail delivered), `uncovered` (collected,
//! listed by no digest of the window, e.g. newer than the last digest), `unchecked` or
//! `not_collected` (listed, but in a day or bucket outside the window);
//! per digest its [`SignatureCheck`] and [`ChainLink`]; the missing digests
//! ([`DigestGap`]). [`TrailReport::problems`] lists only what is wrong, as
//! [`TrailProblem`]s, for findings. [`verify_trail`] and
//! [`verify_bundles`] read bundles from a case (checked against both
//! digests), get the keys (ListPublicKeys, or a file in the shape `aws
//! cloudtrail list-public-keys` prints), and store the report with the keys
//! used as a derived artefact of the bundle, recorded in the ledger.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{self, Read, Write};
use std::path::PathBuf;

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use time::{Date, OffsetDateTime};

use super::{App, AppError};
use crate::evidence::case::{self, AcquireRequest, EvidenceError};
use crate::evidence::{Artefact, ArtefactKind, Derivation, Source};
use crate::ids::{ArtefactId, CaseId};
use crate::inflate::InflateLimits;

/// The only signature algorithm CloudTrail uses for digests.
pub const SIGNATURE_ALGORITHM: &str = "SHA256withRSA";

/// The path of the report inside its parent, as its derivation names it.
pub const REPORT_PATH: &str = "cloudtrail-integrity.json";

/// The `format` of a stored integrity report.
pub const REPORT_FORMAT: &str = "custody-cloudtrail-integrity-1";

/// Problems shown per kind on a terminal; `--json` has them all.
pub const SHOWN_PER_KIND: usize = 50;

/// Why a trail could not be verified (operational errors; what is wrong
/// with the trail itself is in the report).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrailError {
    #[error(transparent)]
    App(#[from] AppError),
    #[error("cannot read the artefacts of case {case}")]
    Case {
        case: CaseId,
        #[source]
        source: EvidenceError,
    },
    #[error(
        "case {case} has no CloudTrail log bundle: collect one with `custody logs cloudtrail --bucket B --case {case} --since …`"
    )]
    NoBundle { case: CaseId },
    #[error(
        "artefact {artefact} of case {case} is not a CloudTrail log bundle (it is a {kind} of format {format})"
    )]
    NotABundle {
        case: CaseId,
        artefact: ArtefactId,
        kind: String,
        format: String,
    },
    #[error("cannot read artefact {artefact}")]
    Read {
        artefact: ArtefactId,
        #[source]
        source: EvidenceError,
    },
    #[error("cannot record the trail's findings in the timeline of case {case}")]
    Timeline {
        case: CaseId,
        #[source]
        source: crate::timeline::store::TimelineError,
    },
    #[error(
        "artefact {artefact} holds no CloudTrail digest file ({log_files} log files): its integrity cannot be verified; is log file validation on for the trail (`aws cloudtrail get-trail --name T`: LogFileValidationEnabled), and did the window include the digests' days?"
    )]
    NoDigests {
        artefact: ArtefactId,
        log_files: usize,
    },
    #[error("cannot read the public keys in {}", .path.display())]
    KeysRead {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "{} does not hold CloudTrail public keys as `aws cloudtrail list-public-keys` prints them: {detail}",
        .path.display()
    )]
    KeysFile { path: PathBuf, detail: String },
    #[error(
        "cannot fetch CloudTrail's public keys with ListPublicKeys in {region}: {detail}; with keys fetched elsewhere, give them with --public-keys FILE (`aws cloudtrail list-public-keys --region {region} --start-time … --end-time … > FILE`)"
    )]
    ListPublicKeys { region: String, detail: String },
    #[error("no region for ListPublicKeys: give --region or --public-keys FILE")]
    NoRegion,
    #[error("cannot store the integrity report of {artefact}")]
    Store {
        artefact: ArtefactId,
        #[source]
        source: EvidenceError,
    },
}

// ---------------------------------------------------------------- keys

/// One of CloudTrail's public keys, as `ListPublicKeys` returns it and
/// `aws cloudtrail list-public-keys` prints it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PublicKey {
    /// Hex fingerprint, as digests name it in `digestPublicKeyFingerprint`.
    #[serde(rename = "Fingerprint")]
    pub fingerprint: String,
    /// Base64 of the DER-encoded PKCS#1 `RSAPublicKey`.
    #[serde(rename = "Value")]
    pub value: String,
    /// As given: an RFC 3339 time, or seconds since 1970 (the AWS CLI prints either).
    #[serde(
        rename = "ValidityStartTime",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub validity_start: Option<serde_json::Value>,
    #[serde(
        rename = "ValidityEndTime",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub validity_end: Option<serde_json::Value>,
    /// The region the key was fetched from (custody's addition; the CLI's
    /// output has none).
    #[serde(rename = "Region", default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
}

impl PublicKey {
    /// The key's DER bytes, or why they cannot be read.
    pub fn der(&self) -> Result<Vec<u8>, String> {
        let compact: String = self.value.chars().filter(|c| !c.is_whitespace()).collect();
        base64::engine::general_purpose::STANDARD
            .decode(compact.as_bytes())
            .map_err(|e| format!("the key {} is not base64: {e}", self.fingerprint))
    }
}

/// A set of public keys: the JSON shape `aws cloudtrail list-public-keys`
/// prints (`{"PublicKeyList": [...]}`), which is also how a stored report
/// keeps the keys it used.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PublicKeys {
    #[serde(rename = "PublicKeyList", default)]
    pub keys: Vec<PublicKey>,
}

impl PublicKeys {
    /// Reads the keys from `aws cloudtrail list-public-keys` output, or
    /// from a stored integrity report (its `public_keys`).
    pub fn from_json(bytes: &[u8]) -> Result<Self, String> {
        let v: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
        let list = if v.get("PublicKeyList").is_some() {
            v
        } else if let Some(inner) = v
            .get("public_keys")
            .filter(|p| p.get("PublicKeyList").is_some())
        {
            inner.clone()
        } else {
            return Err("no PublicKeyList".into());
        };
        let keys: Self = serde_json::from_value(list).map_err(|e| e.to_string())?;
        for k in &keys.keys {
            k.der()?;
        }
        Ok(keys)
    }

    /// The key with this fingerprint (hex, compared without regard to case).
    pub fn find(&self, fingerprint: &str) -> Option<&PublicKey> {
        self.keys
            .iter()
            .find(|k| k.fingerprint.eq_ignore_ascii_case(fingerprint))
    }

    /// Adds `more`, keeping one key per fingerprint.
    pub fn merge(&mut self, more: Self) {
        for k in more.keys {
            if self.find(&k.fingerprint).is_none() {
                self.keys.push(k);
            }
        }
    }

    pub fn fingerprints(&self) -> Vec<String> {
        self.keys.iter().map(|k| k.fingerprint.clone()).collect()
    }
}

// ---------------------------------------------------------------- signing

/// The string CloudTrail signs for a digest file: the digest's end time as
/// it is written in the file (`digestEndTime`, UTC, `2015-08-17T15:01:31Z`),
/// its S3 path (`digestS3Bucket/digestS3Object`), the hex SHA-256 of the
/// digest file's uncompressed content, and the previous digest's hex
/// signature (`previousDigestSignature`, or `null` for the first digest of a
/// chain), joined by `\n` with no newline at the end. The signature is
/// SHA256withRSA (PKCS#1 v1.5) over these bytes.
pub fn signing_string(
    end_time: &str,
    bucket: &str,
    object: &str,
    content_sha256_hex: &str,
    previous_signature: Option<&str>,
) -> String {
    format!(
        "{end_time}\n{bucket}/{object}\n{content_sha256_hex}\n{}",
        previous_signature.unwrap_or("null")
    )
}

/// Whether `signature` (bytes) is `key_der`'s SHA256withRSA signature of `message`.
pub fn rsa_sha256_verifies(key_der: &[u8], message: &[u8], signature: &[u8]) -> bool {
    ring::signature::UnparsedPublicKey::new(&ring::signature::RSA_PKCS1_2048_8192_SHA256, key_der)
        .verify(message, signature)
        .is_ok()
}

// ---------------------------------------------------------------- report

/// A digest's signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum SignatureCheck {
    /// Verified with the key of this fingerprint.
    Valid { fingerprint: String },
    /// Does not verify, is missing, or names another location than its own.
    Invalid {
        fingerprint: Option<String>,
        reason: String,
    },
    /// No key given has the fingerprint the digest names.
    UnknownKey { fingerprint: String },
    /// Could not be checked: the digest is not readable (not gzip, not
    /// JSON, past the inflate limits, lacking fields) or was not collected.
    NotChecked { reason: String },
}

/// A digest's link to the previous digest of its chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum ChainLink {
    /// The previous digest is in the bundle, with the signature and hash this one names.
    Ok { previous: String },
    /// Names no previous digest: the chain starts, or restarts, here.
    Start {
        #[serde(skip_serializing_if = "Option::is_none")]
        note: Option<String>,
    },
    /// The previous digest lies before the window (its day was not collected).
    FirstInWindow { previous: String },
    /// The previous digest's day was collected but it is not there: a gap.
    PreviousMissing { previous: String },
    /// The previous digest is there but is not what this one names.
    Broken {
        previous: Option<String>,
        reason: String,
    },
    /// Cannot be checked (this digest or the previous one is not readable).
    NotChecked { reason: String },
}

/// One digest file.
#[derive(Debug, Clone, Serialize)]
pub struct DigestCheck {
    /// Its S3 key.
    pub key: String,
    /// The chain it belongs to: its directory and name without the time.
    pub chain: String,
    pub backfill: bool,
    pub start: Option<String>,
    pub end: Option<String>,
    /// SHA-256 of its uncompressed content.
    pub sha256: Option<String>,
    pub signature: SignatureCheck,
    pub link: ChainLink,
    /// Log files it lists.
    pub log_files: usize,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// A digest that a digest of the window names as its previous one and
/// that is not in the bundle, although its day was collected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DigestGap {
    /// The missing digest's S3 key.
    pub missing: String,
    /// The digest that names it.
    pub named_by: String,
    /// The hour it covered: up to the naming digest's start.
    pub until: Option<String>,
}

/// What a log file came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LogStatus {
    /// Listed by a digest whose signature verifies, with the hash found.
    Valid,
    /// Its uncompressed content does not hash to what its digest lists.
    Altered,
    /// Listed by a digest, absent from the bucket.
    Missing,
    /// In the bundle, listed by no digest of the window.
    Uncovered,
    /// In the bundle, named for a time inside the period of a digest of its
    /// account and region that does not list it: a file put in the bucket
    /// besides what CloudTrail delivered.
    Unlisted,
    /// Could not be checked: its digest does not verify, it expands past
    /// the inflate limits, it was not collected, or the hash is not SHA-256.
    Unchecked,
    /// Listed by a digest, in a day or bucket the bundle does not cover.
    NotCollected,
}

/// One log file.
#[derive(Debug, Clone, Serialize)]
pub struct LogFileCheck {
    pub key: String,
    pub status: LogStatus,
    /// The digest that lists it.
    pub digest: Option<String>,
    /// Whether that digest's signature verifies.
    pub digest_verified: bool,
    /// What its digest lists (SHA-256 of the uncompressed content).
    pub expected_sha256: Option<String>,
    /// What its uncompressed content hashes to.
    pub actual_sha256: Option<String>,
    /// One sentence naming the file, its digest and both hashes.
    pub reason: String,
}

/// The days the check treats as collected: a previous digest or a listed
/// log file of these days must be in the bundle.
#[derive(Debug, Clone, Serialize)]
pub struct TrailWindow {
    pub first_day: Option<String>,
    pub last_day: Option<String>,
    /// `collection` (the window the bundle was collected for) or
    /// `objects` (inferred from the days of the bundle's objects).
    pub from: &'static str,
}

/// Counts.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TrailSummary {
    pub digests: usize,
    pub signatures_valid: usize,
    pub signatures_invalid: usize,
    pub signatures_unknown_key: usize,
    pub signatures_not_checked: usize,
    pub links_ok: usize,
    pub links_broken: usize,
    pub gaps: usize,
    pub log_files: usize,
    pub valid: usize,
    pub altered: usize,
    pub missing: usize,
    pub uncovered: usize,
    pub unlisted: usize,
    pub unchecked: usize,
    pub not_collected: usize,
    pub problems: usize,
}

/// The integrity of one CloudTrail bundle.
#[derive(Debug, Clone, Serialize)]
pub struct TrailReport {
    pub bucket: Option<String>,
    pub window: TrailWindow,
    pub summary: TrailSummary,
    pub digests: Vec<DigestCheck>,
    pub gaps: Vec<DigestGap>,
    pub log_files: Vec<LogFileCheck>,
    /// What could not be read in the bundle itself (a damaged tar, a
    /// member whose name does not read, an unreadable `index.json`).
    pub bundle_problems: Vec<String>,
}

/// What kind of thing is wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TrailProblemKind {
    /// A log file whose content differs from its digest's hash.
    Altered,
    /// A log file a digest lists that the bucket no longer holds.
    Missing,
    /// A log file inside a digest's period that the digest does not list.
    Unlisted,
    /// A digest whose signature does not verify (or is absent, or names
    /// another location).
    BadSignature,
    /// A digest signed with a key none of the given keys matches.
    UnknownKey,
    /// A digest whose previous-digest signature or hash is not the previous digest's.
    BrokenChain,
    /// A digest deleted from the middle of the chain.
    Gap,
    /// Something that could not be checked (unreadable digest, a log file
    /// past the inflate limits or not collected, a damaged bundle, no digest at all).
    Unchecked,
}

/// One thing wrong with a trail's integrity, simple enough to become a
/// timeline finding: what kind, which object, the digest that vouches for
/// it (or names it), when, and a sentence that names key, digest and both
/// hashes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TrailProblem {
    pub kind: TrailProblemKind,
    /// The S3 key concerned: the log file, the digest, or the missing digest.
    pub key: String,
    /// The digest that lists the log file, names the missing digest, or
    /// (for a digest's own problem) the digest itself.
    pub digest: Option<String>,
    /// When (RFC 3339): a log file's delivery time from its name, else the
    /// digest's end time; for a gap, the start of the digest that names it.
    pub time: Option<String>,
    pub message: String,
}

impl TrailReport {
    /// Only what is wrong: altered and missing log files, bad signatures,
    /// unknown keys, broken links, gaps, and what could not be checked.
    /// Uncovered log files and those outside the window are not problems
    /// (the report lists them); a bundle without a digest is one.
    pub fn problems(&self) -> Vec<TrailProblem> {
        let mut out = Vec::new();
        let end_of: HashMap<&str, Option<&String>> = self
            .digests
            .iter()
            .map(|d| (d.key.as_str(), d.end.as_ref()))
            .collect();
        if self.digests.is_empty() {
            out.push(TrailProblem {
                kind: TrailProblemKind::Unchecked,
                key: self.bucket.clone().unwrap_or_default(),
                digest: None,
                time: None,
                message:
                    "the bundle holds no CloudTrail digest file: nothing vouches for its log files"
                        .into(),
            });
        }
        for p in &self.bundle_problems {
            out.push(TrailProblem {
                kind: TrailProblemKind::Unchecked,
                key: String::new(),
                digest: None,
                time: None,
                message: p.clone(),
            });
        }
        for d in &self.digests {
            let (kind, message) = match &d.signature {
                SignatureCheck::Valid { .. } => (None, String::new()),
                SignatureCheck::Invalid {
                    fingerprint,
                    reason,
                } => (
                    Some(TrailProblemKind::BadSignature),
                    format!(
                        "digest {}: signature invalid{}: {reason}",
                        d.key,
                        fingerprint
                            .as_deref()
                            .map(|f| format!(" (key {f})"))
                            .unwrap_or_default()
                    ),
                ),
                SignatureCheck::UnknownKey { fingerprint } => (
                    Some(TrailProblemKind::UnknownKey),
                    format!(
                        "digest {}: signed with key {fingerprint}, which none of the public keys given has",
                        d.key
                    ),
                ),
                SignatureCheck::NotChecked { reason } => (
                    Some(TrailProblemKind::Unchecked),
                    format!("digest {}: not checked: {reason}", d.key),
                ),
            };
            if let Some(kind) = kind {
                out.push(TrailProblem {
                    kind,
                    key: d.key.clone(),
                    digest: Some(d.key.clone()),
                    time: d.end.clone(),
                    message,
                });
            }
            let link = match &d.link {
                ChainLink::Broken { reason, .. } => Some((
                    TrailProblemKind::BrokenChain,
                    format!("digest {}: chain broken: {reason}", d.key),
                )),
                // A digest that cannot be read already is a problem of its own.
                ChainLink::NotChecked { reason }
                    if matches!(d.signature, SignatureCheck::Valid { .. }) =>
                {
                    Some((
                        TrailProblemKind::Unchecked,
                        format!("digest {}: its link is not checked: {reason}", d.key),
                    ))
                }
                _ => None,
            };
            if let Some((kind, message)) = link {
                out.push(TrailProblem {
                    kind,
                    key: d.key.clone(),
                    digest: Some(d.key.clone()),
                    time: d.end.clone(),
                    message,
                });
            }
        }
        for g in &self.gaps {
            out.push(TrailProblem {
                kind: TrailProblemKind::Gap,
                key: g.missing.clone(),
                digest: Some(g.named_by.clone()),
                time: g.until.clone(),
                message: format!(
                    "digest {} is missing: {} names it as its previous digest, and its day was collected",
                    g.missing, g.named_by
                ),
            });
        }
        for l in &self.log_files {
            let kind = match l.status {
                LogStatus::Altered => TrailProblemKind::Altered,
                LogStatus::Missing => TrailProblemKind::Missing,
                LogStatus::Unlisted => TrailProblemKind::Unlisted,
                // A file whose digest does not verify is that digest's problem.
                LogStatus::Unchecked if l.digest_verified => TrailProblemKind::Unchecked,
                _ => continue,
            };
            let time = log_time(&l.key).or_else(|| {
                l.digest
                    .as_deref()
                    .and_then(|d| end_of.get(d).copied().flatten().cloned())
            });
            out.push(TrailProblem {
                kind,
                key: l.key.clone(),
                digest: l.digest.clone(),
                time,
                message: l.reason.clone(),
            });
        }
        out
    }

    /// Whether nothing is wrong (see [`TrailReport::problems`]).
    pub fn is_intact(&self) -> bool {
        self.problems().is_empty()
    }
}

// ---------------------------------------------------------------- bundle

/// One object of the bundle.
struct Object<'a> {
    data: &'a [u8],
    /// S3 user metadata as collected; `None` when the index has none for it.
    metadata: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize)]
struct IndexDoc {
    #[serde(default)]
    bucket: Option<String>,
    #[serde(default)]
    objects: Vec<IndexObject>,
}

#[derive(Deserialize)]
struct IndexObject {
    key: String,
    #[serde(default)]
    member: Option<String>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    metadata: Option<BTreeMap<String, String>>,
}

/// A digest file's fields (unknown ones are ignored).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DigestFile {
    #[serde(default)]
    digest_start_time: Option<String>,
    #[serde(default)]
    digest_end_time: Option<String>,
    #[serde(default, rename = "digestS3Bucket")]
    digest_s3_bucket: Option<String>,
    #[serde(default, rename = "digestS3Object")]
    digest_s3_object: Option<String>,
    #[serde(default)]
    digest_public_key_fingerprint: Option<String>,
    #[serde(default)]
    digest_signature_algorithm: Option<String>,
    #[serde(default, rename = "previousDigestS3Bucket")]
    previous_digest_s3_bucket: Option<String>,
    #[serde(default, rename = "previousDigestS3Object")]
    previous_digest_s3_object: Option<String>,
    #[serde(default)]
    previous_digest_hash_value: Option<String>,
    #[serde(default)]
    previous_digest_hash_algorithm: Option<String>,
    #[serde(default)]
    previous_digest_signature: Option<String>,
    #[serde(default)]
    log_files: Vec<ListedLog>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListedLog {
    #[serde(default, rename = "s3Bucket")]
    s3_bucket: Option<String>,
    #[serde(default, rename = "s3Object")]
    s3_object: Option<String>,
    #[serde(default)]
    hash_value: Option<String>,
    #[serde(default)]
    hash_algorithm: Option<String>,
}

/// A digest file's content SHA-256 and fields, or why it cannot be read.
type ReadDigest = Result<(String, DigestFile), String>;

/// Log files all the digests of one bundle may list together. A 90-day
/// window of a busy organisation trail lists a few hundred thousand; past
/// this, a digest is not read, so that hostile digests (each within the
/// inflate limits) cannot add up to exhaust memory.
pub const MAX_LISTED_LOG_FILES: usize = 2_000_000;

/// A digest as read from the bundle, before its links are checked.
struct Digest<'b> {
    key: String,
    chain: String,
    backfill: bool,
    notes: Vec<String>,
    /// SHA-256 of the content (uncompressed) and of the bytes as stored.
    sha256: Option<String>,
    sha256_stored: Option<String>,
    file: Option<&'b DigestFile>,
    /// The `signature` metadata (hex), when there is one.
    signature_hex: Option<String>,
    check: SignatureCheck,
}

/// A CloudTrail bundle read for checking: its digests parsed (not yet
/// checked against keys) and its log files found. Holds slices of the
/// bundle's bytes.
pub struct TrailBundle<'a> {
    bucket: Option<String>,
    objects: BTreeMap<String, Object<'a>>,
    /// Keys the index lists as not collected, with why.
    errors: BTreeMap<String, String>,
    problems: Vec<String>,
    limits: InflateLimits,
    /// Each digest's key and what reading it gave.
    digests: Vec<(String, ReadDigest)>,
}

impl std::fmt::Debug for TrailBundle<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrailBundle")
            .field("bucket", &self.bucket)
            .field("objects", &self.objects.len())
            .field("digests", &self.digests.len())
            .finish_non_exhaustive()
    }
}

/// Whether `key` is a digest file's.
fn is_digest_key(key: &str) -> bool {
    key.contains("CloudTrail-Digest/")
}

/// Whether `key` is a CloudTrail log file's.
fn is_log_key(key: &str) -> bool {
    key.contains("/CloudTrail/") && !key.ends_with('/')
}

/// The segments of `key` after its service directory (`CloudTrail` or
/// `CloudTrail-Digest`): region, year, month, day, name.
fn after_service(key: &str) -> Option<Vec<&str>> {
    let segs: Vec<&str> = key.split('/').collect();
    let at = segs
        .iter()
        .rposition(|s| *s == "CloudTrail" || *s == "CloudTrail-Digest")?;
    Some(segs.get(at + 1..)?.to_vec())
}

/// How far from a digest period's edges a log file's name time must be to
/// count as inside it: the name's minute and the delivery that a digest
/// counts need not fall in the same hour at the edge.
const PERIOD_MARGIN_S: i64 = 5 * 60;

/// Whether `time` (RFC 3339) lies inside `(start, end)` by the margin.
fn well_inside(time: &str, (start, end): (&str, &str)) -> bool {
    use time::format_description::well_known::Rfc3339;
    let parse = |s: &str| {
        OffsetDateTime::parse(s, &Rfc3339)
            .ok()
            .map(|t| t.unix_timestamp())
    };
    match (parse(time), parse(start), parse(end)) {
        (Some(t), Some(s), Some(e)) => {
            t >= s.saturating_add(PERIOD_MARGIN_S) && t < e.saturating_sub(PERIOD_MARGIN_S)
        }
        _ => false,
    }
}

/// Whether a digest and a log file are of the same account and region
/// (the directories around `CloudTrail-Digest` and `CloudTrail`).
fn same_place(digest_key: &str, log_key: &str) -> bool {
    fn place(k: &str) -> Option<(String, Option<&str>)> {
        let segs: Vec<&str> = k.split('/').collect();
        let at = segs
            .iter()
            .rposition(|s| *s == "CloudTrail" || *s == "CloudTrail-Digest")?;
        Some((segs.get(..at)?.join("/"), segs.get(at + 1).copied()))
    }
    matches!((place(digest_key), place(log_key)), (Some(a), Some(b)) if a == b)
}

/// The day directory of a CloudTrail key (`…/<region>/YYYY/MM/DD/name`).
fn key_day(key: &str) -> Option<Date> {
    let rest = after_service(key)?;
    let (y, m, d) = (rest.get(1)?, rest.get(2)?, rest.get(3)?);
    let month = time::Month::try_from(m.parse::<u8>().ok()?).ok()?;
    Date::from_calendar_date(y.parse().ok()?, month, d.parse().ok()?).ok()
}

/// The region directory of a CloudTrail key.
fn key_region(key: &str) -> Option<String> {
    after_service(key)?
        .first()
        .filter(|r| !r.is_empty())
        .map(|r| (*r).to_owned())
}

/// `YYYYMMDDTHHMMSSZ` or `YYYYMMDDTHHMMZ` as RFC 3339.
fn compact_time(s: &str) -> Option<String> {
    let s = s.strip_suffix('Z')?;
    let (date, clock) = s.split_once('T')?;
    if date.len() != 8 || !(clock.len() == 4 || clock.len() == 6) {
        return None;
    }
    if !date
        .bytes()
        .chain(clock.bytes())
        .all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let sec = clock.get(4..6).unwrap_or("00");
    Some(format!(
        "{}-{}-{}T{}:{}:{sec}Z",
        date.get(0..4)?,
        date.get(4..6)?,
        date.get(6..8)?,
        clock.get(0..2)?,
        clock.get(2..4)?,
    ))
}

/// A log file's delivery time from its name
/// (`<account>_CloudTrail_<region>_<YYYYMMDDTHHMMZ>_<unique>.json.gz`).
fn log_time(key: &str) -> Option<String> {
    let name = key.rsplit('/').next()?;
    name.split('_').find_map(compact_time)
}

/// The chain a digest belongs to, whether it is a backfill one, and a note
/// when its name does not have CloudTrail's form.
fn digest_chain(key: &str) -> (String, bool, Option<String>) {
    let (dir, name) = key.rsplit_once('/').unwrap_or(("", key));
    let stem = name.strip_suffix(".json.gz").unwrap_or(name);
    let (stem, backfill) = match stem.strip_suffix("_backfill") {
        Some(s) => (s, true),
        None => (stem, false),
    };
    // The day directories change every day: the chain is the directory up
    // to the region, and the name without its time.
    let region_dir = match after_service(key) {
        Some(rest) if rest.len() >= 5 => {
            let keep = dir.len().saturating_sub(
                rest.get(1..4)
                    .map(|s| s.iter().map(|p| p.len() + 1).sum::<usize>())
                    .unwrap_or(0),
            );
            dir.get(..keep).unwrap_or(dir)
        }
        _ => dir,
    };
    match stem.rsplit_once('_') {
        Some((base, t)) if compact_time(t).is_some() && key_day(key).is_some() => (
            format!(
                "{region_dir}/{base}{}",
                if backfill { " (backfill)" } else { "" }
            ),
            backfill,
            None,
        ),
        _ => (
            key.to_owned(),
            backfill,
            Some(
                "its key does not have CloudTrail's form (…/CloudTrail-Digest/<region>/YYYY/MM/DD/<account>_CloudTrail-Digest_<region>_<trail>_<region>_<YYYYMMDDTHHMMSSZ>.json.gz): it is checked on its own".into(),
            ),
        ),
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn is_gzip(bytes: &[u8]) -> bool {
    bytes.starts_with(&[0x1f, 0x8b])
}

/// A digest's content: gunzipped within the limits, or as stored when it
/// is not gzip.
fn digest_content(bytes: &[u8], limits: InflateLimits) -> Result<Vec<u8>, String> {
    if !is_gzip(bytes) {
        return Ok(bytes.to_vec());
    }
    let budget = limits.budget(bytes.len() as u64);
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(bytes)
        .take(budget.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(|e| format!("its gzip stream is damaged or truncated: {e}"))?;
    if out.len() as u64 > budget {
        return Err(past_budget(bytes.len(), budget, limits));
    }
    Ok(out)
}

fn past_budget(compressed: usize, budget: u64, limits: InflateLimits) -> String {
    format!(
        "it expands past {budget} bytes, the limit for its {compressed} compressed bytes (decompress.max_ratio {}:1 past {} MiB, at most decompress.max_mib {} MiB in custody.toml)",
        limits.max_ratio,
        InflateLimits::FLOOR >> 20,
        limits.max_bytes >> 20
    )
}

/// Why a log file's content could not be hashed.
enum HashFailure {
    /// The gzip stream is damaged: the bytes are not what CloudTrail wrote.
    Damaged(String),
    /// It expands past the limits: not checked.
    TooLarge(String),
}

/// The SHA-256 of a log file's uncompressed content, inflated as it
/// streams within the limits (never held whole).
fn content_sha256(bytes: &[u8], limits: InflateLimits) -> Result<String, HashFailure> {
    if !is_gzip(bytes) {
        return Ok(sha256_hex(bytes));
    }
    struct HashWriter(Sha256, u64);
    impl Write for HashWriter {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.update(buf);
            self.1 += buf.len() as u64;
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let budget = limits.budget(bytes.len() as u64);
    let mut w = HashWriter(Sha256::new(), 0);
    io::copy(
        &mut flate2::read::MultiGzDecoder::new(bytes).take(budget.saturating_add(1)),
        &mut w,
    )
    .map_err(|e| HashFailure::Damaged(format!("its gzip stream is damaged or truncated: {e}")))?;
    if w.1 > budget {
        return Err(HashFailure::TooLarge(past_budget(
            bytes.len(),
            budget,
            limits,
        )));
    }
    Ok(hex::encode(w.0.finalize()))
}

impl<'a> TrailBundle<'a> {
    /// Reads a CloudTrail bundle (a tar of the objects and `index.json`, as
    /// `custody logs cloudtrail` collects it). Never fails: what cannot be
    /// read is a problem of the report.
    pub fn read(bytes: &'a [u8], limits: InflateLimits) -> Self {
        let mut problems = Vec::new();
        let mut members: Vec<(String, &'a [u8])> = Vec::new();
        let mut archive = tar::Archive::new(bytes);
        match archive.entries() {
            Err(e) => problems.push(format!("the bundle is not a readable tar: {e}")),
            Ok(entries) => {
                for (n, entry) in entries.enumerate() {
                    let entry = match entry {
                        Ok(e) => e,
                        Err(e) => {
                            problems.push(format!(
                                "the bundle is damaged or truncated after member {n}: {e}"
                            ));
                            break;
                        }
                    };
                    if entry.header().entry_type().is_dir() {
                        continue;
                    }
                    let name = match std::str::from_utf8(&entry.path_bytes()) {
                        Ok(s) => s.to_owned(),
                        Err(_) => {
                            problems.push(format!(
                                "member {n} of the bundle has a name that is not UTF-8 ({}): left out",
                                String::from_utf8_lossy(&entry.path_bytes()).escape_debug()
                            ));
                            continue;
                        }
                    };
                    let start = entry.raw_file_position();
                    let data = usize::try_from(start)
                        .ok()
                        .zip(usize::try_from(entry.size()).ok())
                        .and_then(|(s, len)| bytes.get(s..s.checked_add(len)?));
                    match data {
                        Some(d) => members.push((name, d)),
                        None => problems.push(format!(
                            "member {name} is cut short: the bundle is truncated"
                        )),
                    }
                }
            }
        }
        let mut index: Option<IndexDoc> = None;
        if let Some((_, data)) = members.iter().rev().find(|(n, _)| n == "index.json") {
            match serde_json::from_slice::<IndexDoc>(data) {
                Ok(i) => index = Some(i),
                Err(e) => problems.push(format!(
                    "index.json cannot be read ({e}): keys are taken from member names, and digest signatures are unknown"
                )),
            }
        } else {
            problems.push(
                "the bundle has no index.json: keys are taken from member names, and digest signatures are unknown"
                    .into(),
            );
        }
        let mut by_member: HashMap<&str, &IndexObject> = HashMap::new();
        let mut errors = BTreeMap::new();
        if let Some(i) = &index {
            for o in &i.objects {
                if let Some(m) = &o.member {
                    by_member.insert(m.as_str(), o);
                }
                if let Some(e) = &o.error {
                    errors.insert(o.key.clone(), e.clone());
                }
            }
        }
        let mut objects = BTreeMap::new();
        for (name, data) in members {
            if name == "index.json" {
                continue;
            }
            let (key, metadata) = match by_member.get(name.as_str()) {
                Some(o) => (o.key.clone(), o.metadata.clone()),
                None => {
                    let raw = crate::collect::member::raw_name(&name);
                    (String::from_utf8(raw).unwrap_or(name), None)
                }
            };
            if !is_digest_key(&key) && !is_log_key(&key) {
                continue;
            }
            objects.insert(key, Object { data, metadata });
        }
        // One digest's content at a time: hashed, parsed, then dropped.
        let mut listed = 0usize;
        let digests = objects
            .iter()
            .filter(|(k, _)| is_digest_key(k))
            .map(|(k, o)| {
                let parsed = digest_content(o.data, limits).and_then(|content| {
                    let file: DigestFile = serde_json::from_slice(&content)
                        .map_err(|e| format!("it is not a CloudTrail digest (JSON): {e}"))?;
                    listed = listed.saturating_add(file.log_files.len());
                    if listed > MAX_LISTED_LOG_FILES {
                        return Err(format!(
                            "with it the bundle's digests list more than {MAX_LISTED_LOG_FILES} log files, more than custody checks in one bundle"
                        ));
                    }
                    Ok((sha256_hex(&content), file))
                });
                (k.clone(), parsed)
            })
            .collect();
        Self {
            bucket: index.and_then(|i| i.bucket),
            objects,
            errors,
            problems,
            limits,
            digests,
        }
    }

    /// How many digest files the bundle holds (read or not).
    pub fn digest_count(&self) -> usize {
        self.digests.len()
            + self
                .errors
                .keys()
                .filter(|k| is_digest_key(k) && !self.objects.contains_key(*k))
                .count()
    }

    /// How many log files the bundle holds.
    pub fn log_count(&self) -> usize {
        self.objects.keys().filter(|k| is_log_key(k)).count()
    }

    /// The regions the digests were delivered for (from their keys), whose
    /// public keys verify them.
    pub fn digest_regions(&self) -> Vec<String> {
        let set: BTreeSet<String> = self
            .digests
            .iter()
            .filter_map(|(k, _)| key_region(k))
            .collect();
        set.into_iter().collect()
    }

    /// The earliest start and latest end of the digests: the time range
    /// whose public keys are needed.
    pub fn digest_period(&self) -> Option<(OffsetDateTime, OffsetDateTime)> {
        let parse = |s: &Option<String>| {
            s.as_deref().and_then(|t| {
                OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()
            })
        };
        let mut times = Vec::new();
        for (_, d) in &self.digests {
            if let Ok((_, f)) = d {
                times.extend(parse(&f.digest_start_time));
                times.extend(parse(&f.digest_end_time));
            }
        }
        Some((times.iter().min().copied()?, times.iter().max().copied()?))
    }

    /// The days treated as collected: the window's, or those the objects span.
    fn window(
        &self,
        window: Option<(OffsetDateTime, OffsetDateTime)>,
    ) -> (Option<(Date, Date)>, TrailWindow) {
        let range = match window {
            Some((since, until)) => Some((since.date(), until.date())).filter(|(a, b)| a <= b),
            None => {
                let days: Vec<Date> = self
                    .objects
                    .keys()
                    .chain(self.errors.keys())
                    .filter_map(|k| key_day(k))
                    .collect();
                days.iter().min().copied().zip(days.iter().max().copied())
            }
        };
        let show = |d: Date| format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day());
        (
            range,
            TrailWindow {
                first_day: range.map(|r| show(r.0)),
                last_day: range.map(|r| show(r.1)),
                from: if window.is_some() {
                    "collection"
                } else {
                    "objects"
                },
            },
        )
    }

    /// Whether an object of `key` (in `bucket`) belongs to what was collected.
    fn collected(&self, days: Option<(Date, Date)>, bucket: Option<&str>, key: &str) -> bool {
        if let (Some(b), Some(mine)) = (bucket, self.bucket.as_deref())
            && b != mine
        {
            return false;
        }
        match (key_day(key), days) {
            (Some(d), Some((first, last))) => first <= d && d <= last,
            _ => false,
        }
    }

    /// Checks the digests' signatures with `keys`, the chain, and every log
    /// file against its digest. `window` is the collection window when
    /// known (else the days the objects span are taken as collected).
    pub fn verify(
        &self,
        keys: &PublicKeys,
        window: Option<(OffsetDateTime, OffsetDateTime)>,
    ) -> TrailReport {
        let (days, shown_window) = self.window(window);
        let mut digests: Vec<Digest> = Vec::new();
        for (key, parsed) in &self.digests {
            let (chain, backfill, note) = digest_chain(key);
            let obj = self.objects.get(key);
            let mut d = Digest {
                key: key.clone(),
                chain,
                backfill,
                notes: note.into_iter().collect(),
                sha256: None,
                sha256_stored: obj.map(|o| sha256_hex(o.data)),
                file: None,
                signature_hex: obj
                    .and_then(|o| o.metadata.as_ref())
                    .and_then(|m| m.get("signature").cloned()),
                check: SignatureCheck::NotChecked {
                    reason: String::new(),
                },
            };
            match parsed {
                Err(e) => {
                    d.check = SignatureCheck::NotChecked { reason: e.clone() };
                }
                Ok((sha, file)) => {
                    d.check = self.check_signature(key, file, sha, obj, keys);
                    d.sha256 = Some(sha.clone());
                    d.file = Some(file);
                }
            }
            digests.push(d);
        }
        // Digests the index lists but that were not collected.
        for (key, e) in &self.errors {
            if is_digest_key(key) && !self.objects.contains_key(key) {
                let (chain, backfill, _) = digest_chain(key);
                digests.push(Digest {
                    key: key.clone(),
                    chain,
                    backfill,
                    notes: Vec::new(),
                    sha256: None,
                    sha256_stored: None,
                    file: None,
                    signature_hex: None,
                    check: SignatureCheck::NotChecked {
                        reason: format!("it was not collected: {e}"),
                    },
                });
            }
        }
        let end_of = |d: &Digest| d.file.as_ref().and_then(|f| f.digest_end_time.clone());
        digests.sort_by(|a, b| {
            (a.chain.as_str(), end_of(a), a.key.as_str()).cmp(&(
                b.chain.as_str(),
                end_of(b),
                b.key.as_str(),
            ))
        });
        let (links, gaps) = chain_links(&digests, |key, bucket| self.collected(days, bucket, key));
        let log_files = self.check_logs(&digests, days);
        let checks: Vec<DigestCheck> = digests
            .iter()
            .zip(links)
            .map(|(d, link)| DigestCheck {
                key: d.key.clone(),
                chain: d.chain.clone(),
                backfill: d.backfill,
                start: d.file.as_ref().and_then(|f| f.digest_start_time.clone()),
                end: end_of(d),
                sha256: d.sha256.clone(),
                signature: d.check.clone(),
                link,
                log_files: d.file.as_ref().map_or(0, |f| f.log_files.len()),
                notes: d.notes.clone(),
            })
            .collect();
        let mut report = TrailReport {
            bucket: self.bucket.clone(),
            window: shown_window,
            summary: TrailSummary::default(),
            digests: checks,
            gaps,
            log_files,
            bundle_problems: self.problems.clone(),
        };
        report.summary = summarise(&report);
        report
    }

    fn check_signature(
        &self,
        key: &str,
        f: &DigestFile,
        content_sha256: &str,
        obj: Option<&Object<'_>>,
        keys: &PublicKeys,
    ) -> SignatureCheck {
        let Some(fingerprint) = f.digest_public_key_fingerprint.clone() else {
            return SignatureCheck::NotChecked {
                reason: "it names no digestPublicKeyFingerprint".into(),
            };
        };
        let (Some(end), Some(bucket), Some(object)) = (
            f.digest_end_time.as_deref(),
            f.digest_s3_bucket.as_deref(),
            f.digest_s3_object.as_deref(),
        ) else {
            return SignatureCheck::NotChecked {
                reason: "it lacks digestEndTime, digestS3Bucket or digestS3Object, which its signature covers".into(),
            };
        };
        let Some(metadata) = obj.and_then(|o| o.metadata.as_ref()) else {
            return SignatureCheck::NotChecked {
                reason: "the bundle does not hold its S3 metadata, where CloudTrail keeps the signature (collected by an older custody?): collect the trail again".into(),
            };
        };
        let invalid = |reason: String| SignatureCheck::Invalid {
            fingerprint: Some(fingerprint.clone()),
            reason,
        };
        let Some(signature) = metadata.get("signature") else {
            return invalid("the object carries no `signature` metadata".into());
        };
        let algorithm = metadata
            .get("signature-algorithm")
            .map(String::as_str)
            .unwrap_or_default();
        if !algorithm.eq_ignore_ascii_case(SIGNATURE_ALGORITHM) {
            return invalid(format!(
                "its `signature-algorithm` metadata is {algorithm:?}, not {SIGNATURE_ALGORITHM}"
            ));
        }
        if let Some(a) = &f.digest_signature_algorithm
            && !a.eq_ignore_ascii_case(SIGNATURE_ALGORITHM)
        {
            return invalid(format!(
                "its digestSignatureAlgorithm is {a:?}, not {SIGNATURE_ALGORITHM}"
            ));
        }
        let Some(public) = keys.find(&fingerprint) else {
            return SignatureCheck::UnknownKey { fingerprint };
        };
        let der = match public.der() {
            Ok(d) => d,
            Err(e) => return invalid(e),
        };
        let Ok(sig) = hex::decode(signature.trim()) else {
            return invalid("its `signature` metadata is not hex".into());
        };
        let message = signing_string(
            end,
            bucket,
            object,
            content_sha256,
            f.previous_digest_signature.as_deref(),
        );
        if !rsa_sha256_verifies(&der, message.as_bytes(), &sig) {
            return invalid(format!(
                "the signature does not verify with key {} over its end time {end}, path {bucket}/{object}, content SHA-256 {content_sha256} and previous signature {}",
                public.fingerprint,
                short(f.previous_digest_signature.as_deref().unwrap_or("null"))
            ));
        }
        let here_bucket = self.bucket.as_deref().unwrap_or(bucket);
        if object != key || bucket != here_bucket {
            return invalid(format!(
                "it is signed as s3://{bucket}/{object} but was collected from s3://{here_bucket}/{key}: moved from its original location"
            ));
        }
        SignatureCheck::Valid { fingerprint }
    }

    fn check_logs(&self, digests: &[Digest], days: Option<(Date, Date)>) -> Vec<LogFileCheck> {
        struct Listing<'d> {
            digest: &'d str,
            verified: bool,
            bucket: Option<&'d str>,
            hash: Option<&'d str>,
            algorithm: Option<&'d str>,
        }
        let mut listed: BTreeMap<&str, Listing<'_>> = BTreeMap::new();
        for d in digests {
            let Some(f) = &d.file else { continue };
            let verified = matches!(d.check, SignatureCheck::Valid { .. });
            for l in &f.log_files {
                let Some(key) = l.s3_object.as_deref() else {
                    continue;
                };
                let better = listed.get(key).is_none_or(|old| verified && !old.verified);
                if better {
                    listed.insert(
                        key,
                        Listing {
                            digest: &d.key,
                            verified,
                            bucket: l.s3_bucket.as_deref(),
                            hash: l.hash_value.as_deref(),
                            algorithm: l.hash_algorithm.as_deref(),
                        },
                    );
                }
            }
        }
        let mut out = Vec::new();
        for (key, l) in &listed {
            let expected = l.hash.map(str::to_ascii_lowercase);
            let mut c = LogFileCheck {
                key: (*key).to_owned(),
                status: LogStatus::Unchecked,
                digest: Some(l.digest.to_owned()),
                digest_verified: l.verified,
                expected_sha256: expected.clone(),
                actual_sha256: None,
                reason: String::new(),
            };
            let trust = if l.verified {
                ""
            } else {
                " (whose signature does not verify)"
            };
            match self.objects.get(*key) {
                None => {
                    if let Some(e) = self.errors.get(*key) {
                        c.reason = format!(
                            "log file {key}, listed by digest {}, was not collected: {e}",
                            l.digest
                        );
                    } else if self.collected(days, l.bucket, key) {
                        c.status = LogStatus::Missing;
                        c.reason = format!(
                            "log file {key} is listed by digest {}{trust} with SHA-256 {} but is not in the bucket",
                            l.digest,
                            expected.as_deref().unwrap_or("(none)")
                        );
                    } else {
                        c.status = LogStatus::NotCollected;
                        c.reason = format!(
                            "log file {key}, listed by digest {}, lies outside the collected days or bucket",
                            l.digest
                        );
                    }
                }
                Some(_)
                    if l.algorithm
                        .is_some_and(|a| !a.eq_ignore_ascii_case("SHA-256")) =>
                {
                    c.reason = format!(
                        "digest {} lists log file {key} with hash algorithm {:?}, not SHA-256",
                        l.digest,
                        l.algorithm.unwrap_or_default()
                    );
                }
                Some(o) => match content_sha256(o.data, self.limits) {
                    Ok(actual) => {
                        let same = expected.as_deref() == Some(actual.as_str());
                        c.status = match (same, l.verified) {
                            (false, _) => LogStatus::Altered,
                            (true, true) => LogStatus::Valid,
                            (true, false) => LogStatus::Unchecked,
                        };
                        c.reason = if same {
                            format!(
                                "log file {key} has the SHA-256 {actual} digest {}{trust} lists",
                                l.digest
                            )
                        } else {
                            format!(
                                "log file {key} is altered: digest {}{trust} lists SHA-256 {} for its uncompressed content, found {actual}",
                                l.digest,
                                expected.as_deref().unwrap_or("(none)")
                            )
                        };
                        c.actual_sha256 = Some(actual);
                    }
                    Err(HashFailure::Damaged(e)) => {
                        c.status = LogStatus::Altered;
                        c.reason = format!(
                            "log file {key} is altered: digest {}{trust} lists SHA-256 {}, but {e}",
                            l.digest,
                            expected.as_deref().unwrap_or("(none)")
                        );
                    }
                    Err(HashFailure::TooLarge(e)) => {
                        c.reason = format!(
                            "log file {key} (listed by digest {} with SHA-256 {}) is not checked: {e}",
                            l.digest,
                            expected.as_deref().unwrap_or("(none)")
                        );
                    }
                },
            }
            out.push(c);
        }
        let newest = digests
            .iter()
            .filter_map(|d| d.file.as_ref()?.digest_end_time.clone())
            .max();
        for key in self.objects.keys().filter(|k| is_log_key(k)) {
            if listed.contains_key(key.as_str()) {
                continue;
            }
            let when = log_time(key);
            let planted = when.as_deref().and_then(|w| {
                digests.iter().find_map(|d| {
                    let f = d.file.as_ref()?;
                    let period = (
                        f.digest_start_time.as_deref()?,
                        f.digest_end_time.as_deref()?,
                    );
                    (same_place(&d.key, key) && well_inside(w, period))
                        .then(|| (d.key.clone(), period.0.to_owned(), period.1.to_owned()))
                })
            });
            if let Some((digest, start, end)) = planted {
                out.push(LogFileCheck {
                    key: key.clone(),
                    status: LogStatus::Unlisted,
                    digest: Some(digest.clone()),
                    digest_verified: false,
                    expected_sha256: None,
                    actual_sha256: None,
                    reason: format!(
                        "log file {key} is named for {}, inside the period {start} to {end} of digest {digest}, which does not list it: CloudTrail did not deliver it",
                        when.as_deref().unwrap_or("?")
                    ),
                });
                continue;
            }
            let after = match (&when, &newest) {
                (Some(w), Some(n)) if w >= n => {
                    format!(" (delivered at {w}, after the newest digest, which ends at {n})")
                }
                _ => String::new(),
            };
            out.push(LogFileCheck {
                key: key.clone(),
                status: LogStatus::Uncovered,
                digest: None,
                digest_verified: false,
                expected_sha256: None,
                actual_sha256: None,
                reason: format!("log file {key} is listed by no digest in the bundle{after}"),
            });
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        out
    }
}

fn short(s: &str) -> String {
    if s.len() > 16 {
        format!("{}…", s.get(..16).unwrap_or(s))
    } else {
        s.to_owned()
    }
}

/// Each digest's link to its previous digest, and the missing digests.
/// `digests` are sorted by chain and end time; `collected(key, bucket)`
/// says whether an object of that key would be in the bundle.
fn chain_links(
    digests: &[Digest],
    collected: impl Fn(&str, Option<&str>) -> bool,
) -> (Vec<ChainLink>, Vec<DigestGap>) {
    let by_key: HashMap<&str, &Digest> = digests.iter().map(|d| (d.key.as_str(), d)).collect();
    let mut claimed: HashMap<&str, &str> = HashMap::new();
    let mut links = Vec::with_capacity(digests.len());
    let mut gaps = Vec::new();
    for (i, d) in digests.iter().enumerate() {
        let Some(f) = &d.file else {
            links.push(ChainLink::NotChecked {
                reason: "the digest cannot be read".into(),
            });
            continue;
        };
        let previous = f
            .previous_digest_s3_object
            .as_deref()
            .filter(|p| !p.is_empty());
        let Some(prev) = previous else {
            // An earlier digest of the same chain in the window: a restart.
            let earlier = i
                .checked_sub(1)
                .and_then(|j| digests.get(j))
                .filter(|e| e.chain == d.chain)
                .and_then(|e| e.file.as_ref()?.digest_end_time.clone());
            links.push(ChainLink::Start {
                note: earlier.map(|e| {
                    format!(
                        "the chain restarts: no digest between {e} and {} (logging or log file validation was off, or the trail was recreated)",
                        f.digest_start_time.as_deref().unwrap_or("this digest")
                    )
                }),
            });
            continue;
        };
        let prev_bucket = f.previous_digest_s3_bucket.as_deref();
        let Some(p) = by_key.get(prev) else {
            if collected(prev, prev_bucket) {
                gaps.push(DigestGap {
                    missing: prev.to_owned(),
                    named_by: d.key.clone(),
                    until: f.digest_start_time.clone(),
                });
                links.push(ChainLink::PreviousMissing {
                    previous: prev.to_owned(),
                });
            } else {
                links.push(ChainLink::FirstInWindow {
                    previous: prev.to_owned(),
                });
            }
            continue;
        };
        let Some(pf) = &p.file else {
            links.push(ChainLink::NotChecked {
                reason: format!("its previous digest {prev} cannot be read"),
            });
            continue;
        };
        let mut wrong = Vec::new();
        if let Some(other) = claimed.insert(&p.key, &d.key) {
            wrong.push(format!(
                "digest {other} already names {prev} as its previous digest"
            ));
        }
        match (&f.previous_digest_signature, &p.signature_hex) {
            (Some(named), Some(actual)) if named.eq_ignore_ascii_case(actual.trim()) => {}
            (named, actual) => wrong.push(format!(
                "it names previous signature {} but {prev} carries {}",
                short(named.as_deref().unwrap_or("null")),
                short(actual.as_deref().unwrap_or("none"))
            )),
        }
        let named_hash = f
            .previous_digest_hash_value
            .as_deref()
            .map(str::to_ascii_lowercase);
        // Documented as the hash of the previous digest's uncompressed
        // content; the hash of its bytes as stored binds it as well.
        let hash_ok =
            named_hash.is_some() && (named_hash == p.sha256 || named_hash == p.sha256_stored);
        if !hash_ok {
            wrong.push(format!(
                "it names previous hash {} but {prev} hashes to {}",
                named_hash.as_deref().unwrap_or("(none)"),
                p.sha256.as_deref().unwrap_or("(unknown)")
            ));
        }
        if let Some(a) = &f.previous_digest_hash_algorithm
            && !a.eq_ignore_ascii_case("SHA-256")
        {
            wrong.push(format!(
                "its previousDigestHashAlgorithm is {a:?}, not SHA-256"
            ));
        }
        if let (Some(named), Some(actual)) = (prev_bucket, pf.digest_s3_bucket.as_deref())
            && named != actual
        {
            wrong.push(format!(
                "it names the previous digest in bucket {named}, which says it is in {actual}"
            ));
        }
        links.push(if wrong.is_empty() {
            ChainLink::Ok {
                previous: prev.to_owned(),
            }
        } else {
            ChainLink::Broken {
                previous: Some(prev.to_owned()),
                reason: wrong.join("; "),
            }
        });
    }
    (links, gaps)
}

fn summarise(r: &TrailReport) -> TrailSummary {
    let mut s = TrailSummary {
        digests: r.digests.len(),
        gaps: r.gaps.len(),
        log_files: r.log_files.len(),
        ..TrailSummary::default()
    };
    for d in &r.digests {
        match d.signature {
            SignatureCheck::Valid { .. } => s.signatures_valid += 1,
            SignatureCheck::Invalid { .. } => s.signatures_invalid += 1,
            SignatureCheck::UnknownKey { .. } => s.signatures_unknown_key += 1,
            SignatureCheck::NotChecked { .. } => s.signatures_not_checked += 1,
        }
        match d.link {
            ChainLink::Ok { .. } => s.links_ok += 1,
            ChainLink::Broken { .. } => s.links_broken += 1,
            _ => {}
        }
    }
    for l in &r.log_files {
        match l.status {
            LogStatus::Valid => s.valid += 1,
            LogStatus::Altered => s.altered += 1,
            LogStatus::Missing => s.missing += 1,
            LogStatus::Uncovered => s.uncovered += 1,
            LogStatus::Unlisted => s.unlisted += 1,
            LogStatus::Unchecked => s.unchecked += 1,
            LogStatus::NotCollected => s.not_collected += 1,
        }
    }
    s.problems = r.problems().len();
    s
}

/// Checks a collected CloudTrail bundle's integrity chain with `keys`:
/// [`TrailBundle::read`] then [`TrailBundle::verify`].
pub fn verify_bundle(
    bytes: &[u8],
    keys: &PublicKeys,
    limits: InflateLimits,
    window: Option<(OffsetDateTime, OffsetDateTime)>,
) -> TrailReport {
    TrailBundle::read(bytes, limits).verify(keys, window)
}

// ---------------------------------------------------------------- case

/// Where CloudTrail's public keys come from.
#[derive(Debug, Clone)]
pub enum KeySource {
    /// `ListPublicKeys` in these regions (empty: the regions the digests
    /// were delivered for), for the digests' time range.
    #[cfg(feature = "aws")]
    ListPublicKeys { regions: Vec<String> },
    /// A file as `aws cloudtrail list-public-keys` prints it, or a stored
    /// integrity report (its `public_keys`), for offline checks.
    File(PathBuf),
}

/// Verify a case's CloudTrail bundle(s).
#[derive(Debug, Clone)]
pub struct VerifyTrailRequest {
    pub case: CaseId,
    /// One bundle; `None`: every CloudTrail bundle of the case.
    pub artefact: Option<ArtefactId>,
    pub keys: KeySource,
    /// The window the bundle was collected for, when known.
    pub window: Option<(OffsetDateTime, OffsetDateTime)>,
}

/// The keys a verification used, and where they came from.
#[derive(Debug, Clone, Serialize)]
pub struct KeysUsed {
    /// `ListPublicKeys in us-east-1 for … to …`, or `file keys.json (SHA-256 …)`.
    pub origin: String,
    pub fingerprints: Vec<String>,
}

/// One bundle's verification, and the artefact it was stored as.
#[derive(Debug, Clone, Serialize)]
pub struct TrailVerification {
    pub case: CaseId,
    /// The bundle checked.
    pub artefact: ArtefactId,
    pub keys: KeysUsed,
    pub report: TrailReport,
    /// The stored report (with the keys), derived from the bundle.
    pub stored: Artefact,
}

/// The stored document: the report and the keys, so that anyone can check
/// again offline (`--public-keys` reads this document too).
#[derive(Serialize)]
struct StoredReport<'a> {
    format: &'static str,
    bundle: &'a ArtefactId,
    bundle_sha256: &'a str,
    verified_at: String,
    keys_origin: &'a str,
    public_keys: &'a PublicKeys,
    report: &'a TrailReport,
    problems: Vec<TrailProblem>,
}

/// Whether `a` is a CloudTrail log bundle.
pub fn is_trail_bundle(a: &Artefact) -> bool {
    a.kind == ArtefactKind::LogBundle && a.source.log_format.as_deref() == Some("cloudtrail")
}

/// Verifies the case's CloudTrail bundle(s) as `req` says, storing each report.
pub async fn verify_trail(
    app: &App,
    req: &VerifyTrailRequest,
) -> Result<Vec<TrailVerification>, TrailError> {
    let store = app.store().await?;
    let all = case::artefacts(store.as_ref(), &req.case)
        .await
        .map_err(|source| TrailError::Case {
            case: req.case.clone(),
            source,
        })?;
    let bundles: Vec<Artefact> = match &req.artefact {
        Some(id) => {
            let a = all
                .iter()
                .find(|a| &a.id == id)
                .ok_or_else(|| TrailError::Case {
                    case: req.case.clone(),
                    source: EvidenceError::NoSuchArtefact {
                        case: req.case.clone(),
                        artefact: id.clone(),
                    },
                })?;
            if !is_trail_bundle(a) {
                return Err(TrailError::NotABundle {
                    case: req.case.clone(),
                    artefact: id.clone(),
                    kind: a.kind.as_str().to_owned(),
                    format: a.source.log_format.clone().unwrap_or_else(|| "-".into()),
                });
            }
            vec![a.clone()]
        }
        None => all.into_iter().filter(is_trail_bundle).collect(),
    };
    if bundles.is_empty() {
        return Err(TrailError::NoBundle {
            case: req.case.clone(),
        });
    }
    verify_bundles(app, &req.case, &bundles, &req.keys, req.window).await
}

/// Verifies `bundles` of `case` and stores each report as a derived
/// artefact (recorded in the ledger). The first bundle without a digest,
/// or keys that cannot be had, end it with an error.
pub async fn verify_bundles(
    app: &App,
    case: &CaseId,
    bundles: &[Artefact],
    keys: &KeySource,
    window: Option<(OffsetDateTime, OffsetDateTime)>,
) -> Result<Vec<TrailVerification>, TrailError> {
    let store = app.store().await?;
    let limits = app.config.inflate;
    let mut out = Vec::new();
    for a in bundles {
        let bytes = case::read_verified(store.as_ref(), a)
            .await
            .map_err(|source| TrailError::Read {
                artefact: a.id.clone(),
                source,
            })?;
        let bundle = TrailBundle::read(&bytes, limits);
        if bundle.digest_count() == 0 {
            return Err(TrailError::NoDigests {
                artefact: a.id.clone(),
                log_files: bundle.log_count(),
            });
        }
        let (public, origin) = public_keys(app, keys, &bundle).await?;
        let report = tokio::task::block_in_place(|| bundle.verify(&public, window));
        let stored = store_report(app, a, &public, &origin, &report).await?;
        trail_findings(app, case, a, &report)?;
        out.push(TrailVerification {
            case: case.clone(),
            artefact: a.id.clone(),
            keys: KeysUsed {
                origin,
                fingerprints: public.fingerprints(),
            },
            report,
            stored,
        });
    }
    Ok(out)
}

/// The report's problems as findings in the case's timeline, where it has
/// one, replacing those an earlier check of the same bundle stored: an
/// altered log file's finding rests on the events loaded from it.
fn trail_findings(
    app: &App,
    case: &CaseId,
    a: &Artefact,
    report: &TrailReport,
) -> Result<(), TrailError> {
    use crate::timeline::detections::NewDetection;
    use crate::timeline::store::{Timeline, path_for};
    let path = path_for(&app.config.home, case);
    if !path.exists() {
        return Ok(());
    }
    let tl_err = |source| TrailError::Timeline {
        case: case.clone(),
        source,
    };
    let mut tl = Timeline::open(&path).map_err(tl_err)?;
    let artefact = a.id.to_string();
    let prefix = format!("{artefact}:");
    let replaced: Vec<(&str, String)> = tl
        .detection_rules_under("trail", &prefix)
        .map_err(tl_err)?
        .into_iter()
        .map(|r| ("trail", r))
        .collect();
    let mut found = Vec::new();
    for p in report.problems() {
        let (what, level) = match p.kind {
            TrailProblemKind::Altered => ("CloudTrail log file altered", "high"),
            TrailProblemKind::Missing => ("CloudTrail log file deleted", "high"),
            TrailProblemKind::Unlisted => ("CloudTrail log file its digest does not list", "high"),
            TrailProblemKind::BadSignature => ("CloudTrail digest signature invalid", "high"),
            TrailProblemKind::BrokenChain => ("CloudTrail digest chain broken", "high"),
            TrailProblemKind::Gap => ("CloudTrail digest deleted", "high"),
            TrailProblemKind::UnknownKey => {
                ("CloudTrail digest signed with an unknown key", "medium")
            }
            TrailProblemKind::Unchecked => ("CloudTrail integrity not checked", "low"),
        };
        let rows = if p.kind == TrailProblemKind::Altered {
            tl.rows_of_member(&artefact, &p.key).map_err(tl_err)?
        } else {
            Vec::new()
        };
        found.push(NewDetection {
            kind: "trail",
            rule: format!("{artefact}:{:?}:{}", p.kind, p.key),
            title: format!("{what}: {}", p.key),
            level: level.into(),
            // Impair Defenses: Disable or Modify Cloud Logs.
            tags: vec!["attack.defense-evasion".into(), "attack.t1562.008".into()],
            actors: Vec::new(),
            detail: serde_json::json!({
                "artefact": artefact,
                "problem": p,
            }),
            rows,
        });
    }
    let at = crate::clock::rfc3339(app.clock.now());
    tl.store_detections(&found, &replaced, &at, None)
        .map_err(tl_err)
}

/// The keys for `bundle`, and a line saying where they came from.
#[cfg_attr(not(feature = "aws"), allow(unused_variables))]
async fn public_keys(
    app: &App,
    source: &KeySource,
    bundle: &TrailBundle<'_>,
) -> Result<(PublicKeys, String), TrailError> {
    match source {
        KeySource::File(path) => {
            let bytes = std::fs::read(path).map_err(|source| TrailError::KeysRead {
                path: path.clone(),
                source,
            })?;
            let keys = PublicKeys::from_json(&bytes).map_err(|detail| TrailError::KeysFile {
                path: path.clone(),
                detail,
            })?;
            Ok((
                keys,
                format!("file {} (SHA-256 {})", path.display(), sha256_hex(&bytes)),
            ))
        }
        #[cfg(feature = "aws")]
        KeySource::ListPublicKeys { regions } => {
            let aws = app.aws().await?;
            let regions = if regions.is_empty() {
                let found = bundle.digest_regions();
                if found.is_empty() {
                    vec![aws.region().ok_or(TrailError::NoRegion)?]
                } else {
                    found
                }
            } else {
                regions.clone()
            };
            let period = bundle.digest_period();
            let mut keys = PublicKeys::default();
            for region in &regions {
                keys.merge(list_public_keys(&aws.in_region(region), region, period).await?);
            }
            let span = period.map_or_else(
                || "now".to_owned(),
                |(a, b)| {
                    format!(
                        "{} to {}",
                        crate::clock::rfc3339(a),
                        crate::clock::rfc3339(b)
                    )
                },
            );
            Ok((
                keys,
                format!(
                    "ListPublicKeys in {} for {span}, at {}",
                    regions.join(", "),
                    crate::clock::rfc3339(app.clock.now())
                ),
            ))
        }
    }
}

/// CloudTrail's public keys of one region valid in `period` (the current
/// key without one), as ListPublicKeys returns them.
#[cfg(feature = "aws")]
pub async fn list_public_keys(
    aws: &crate::aws::Aws,
    region: &str,
    period: Option<(OffsetDateTime, OffsetDateTime)>,
) -> Result<PublicKeys, TrailError> {
    use aws_sdk_cloudtrail::primitives::DateTime;
    let at = |t: OffsetDateTime| DateTime::from_secs(t.unix_timestamp());
    let show = |t: Option<&DateTime>| {
        t.and_then(|t| OffsetDateTime::from_unix_timestamp(t.secs()).ok())
            .map(|t| serde_json::Value::String(crate::clock::rfc3339(t)))
    };
    let mut pages = aws
        .cloudtrail()
        .list_public_keys()
        .set_start_time(period.map(|p| at(p.0)))
        .set_end_time(period.map(|p| at(p.1)))
        .into_paginator()
        .send();
    let mut keys = PublicKeys::default();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| TrailError::ListPublicKeys {
            region: region.to_owned(),
            detail: crate::aws::brief(&e),
        })?;
        for k in page.public_key_list() {
            let (Some(fingerprint), Some(value)) = (k.fingerprint(), k.value()) else {
                continue;
            };
            keys.keys.push(PublicKey {
                fingerprint: fingerprint.to_owned(),
                value: base64::engine::general_purpose::STANDARD.encode(value.as_ref()),
                validity_start: show(k.validity_start_time()),
                validity_end: show(k.validity_end_time()),
                region: Some(region.to_owned()),
            });
        }
    }
    Ok(keys)
}

/// Stores the report and the keys as an artefact derived from the bundle.
async fn store_report(
    app: &App,
    bundle: &Artefact,
    keys: &PublicKeys,
    origin: &str,
    report: &TrailReport,
) -> Result<Artefact, TrailError> {
    let doc = StoredReport {
        format: REPORT_FORMAT,
        bundle: &bundle.id,
        bundle_sha256: &bundle.raw.sha256,
        verified_at: crate::clock::rfc3339(app.clock.now()),
        keys_origin: origin,
        public_keys: keys,
        report,
        problems: report.problems(),
    };
    let bytes = serde_json::to_vec_pretty(&doc).unwrap_or_default();
    let size = bytes.len() as u64;
    let ctx = app.acquire_context(app.recorder()?).await?;
    let reader = crate::collect::channel::spawn(move |w| {
        w.write_all(&bytes)?;
        Ok(crate::collect::SourceEnd::default())
    });
    let s = &report.summary;
    let note = format!(
        "CloudTrail integrity of {}: {} digests ({} signatures valid), {} log files ({} valid, {} altered, {} missing, {} uncovered), {} gaps, {} problems",
        bundle.id,
        s.digests,
        s.signatures_valid,
        s.log_files,
        s.valid,
        s.altered,
        s.missing,
        s.uncovered,
        s.gaps,
        s.problems
    );
    case::acquire_derived(
        &ctx,
        AcquireRequest {
            case: bundle.case.clone(),
            kind: ArtefactKind::File,
            source: Source {
                resource: bundle.source.resource.clone(),
                host: None,
                path: Some(REPORT_PATH.to_owned()),
                region: bundle.source.region.clone(),
                account: bundle.source.account.clone(),
                log_format: None,
            },
            reader: Box::new(reader),
            size_hint: Some(size),
            notes: vec![note],
        },
        Derivation {
            parent: bundle.id.clone(),
            parent_sha256: bundle.raw.sha256.clone(),
            volume: "whole".into(),
            fs: "custody".into(),
            path: Some(REPORT_PATH.to_owned()),
            inode: None,
            modified_us: None,
            extents: Vec::new(),
        },
    )
    .await
    .map_err(|source| TrailError::Store {
        artefact: bundle.id.clone(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ACCT: &str = "111122223333";
    const BUCKET: &str = "trail-bucket";

    fn gz(bytes: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    }

    /// An RSA key made by `openssl genpkey` (ring cannot make RSA keys),
    /// in DER: one per test process.
    fn test_key() -> &'static ring::signature::RsaKeyPair {
        static KEY: std::sync::OnceLock<ring::signature::RsaKeyPair> = std::sync::OnceLock::new();
        KEY.get_or_init(|| {
            let out = std::process::Command::new("openssl")
                .args([
                    "genpkey",
                    "-algorithm",
                    "RSA",
                    "-pkeyopt",
                    "rsa_keygen_bits:2048",
                    "-outform",
                    "DER",
                ])
                .output()
                .expect("openssl makes the test's RSA key");
            assert!(
                out.status.success(),
                "openssl: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            // OpenSSL 3.0 writes PKCS#1 in DER, others PKCS#8.
            ring::signature::RsaKeyPair::from_pkcs8(&out.stdout)
                .or_else(|_| ring::signature::RsaKeyPair::from_der(&out.stdout))
                .expect("an RSA key in PKCS#8 or PKCS#1 DER")
        })
    }

    fn keys(fingerprint: &str) -> PublicKeys {
        PublicKeys {
            keys: vec![PublicKey {
                fingerprint: fingerprint.into(),
                value: base64::engine::general_purpose::STANDARD
                    .encode(test_key().public().as_ref()),
                validity_start: None,
                validity_end: None,
                region: None,
            }],
        }
    }

    fn sign(message: &[u8]) -> String {
        let key = test_key();
        let mut sig = vec![0; key.public().modulus_len()];
        key.sign(
            &ring::signature::RSA_PKCS1_SHA256,
            &ring::rand::SystemRandom::new(),
            message,
            &mut sig,
        )
        .unwrap();
        hex::encode(sig)
    }

    fn digest_key(day: &str, hhmmss: &str) -> String {
        let compact = day.replace('/', "");
        format!(
            "AWSLogs/{ACCT}/CloudTrail-Digest/us-east-1/{day}/{ACCT}_CloudTrail-Digest_us-east-1_main_us-east-1_{compact}T{hhmmss}Z.json.gz"
        )
    }

    fn log_key(day: &str, hhmm: &str, n: u32) -> String {
        let compact = day.replace('/', "");
        format!(
            "AWSLogs/{ACCT}/CloudTrail/us-east-1/{day}/{ACCT}_CloudTrail_us-east-1_{compact}T{hhmm}Z_f{n}.json.gz"
        )
    }

    /// A member's key, body and S3 metadata.
    type Member = (String, Vec<u8>, Option<BTreeMap<String, String>>);

    /// A bundle being made: members with their S3 metadata.
    #[derive(Default, Clone)]
    struct Fixture {
        members: Vec<Member>,
        /// Each digest's (key, signature, content SHA-256).
        signed: Vec<(String, String, String)>,
    }

    impl Fixture {
        fn log(&mut self, key: &str, content: &[u8]) -> String {
            self.members.push((key.to_owned(), gz(content), None));
            sha256_hex(content)
        }

        /// Adds a digest of the hour ending `end` listing `logs`, chained to
        /// the last digest added (or naming `first_previous`).
        fn digest(
            &mut self,
            key: &str,
            start: &str,
            end: &str,
            logs: &[(&str, &str)],
            first_previous: Option<&str>,
        ) {
            let prev = self.signed.last().cloned();
            let listed: Vec<serde_json::Value> = logs
                .iter()
                .map(|(k, h)| serde_json::json!({"s3Bucket": BUCKET, "s3Object": k, "hashValue": h, "hashAlgorithm": "SHA-256"}))
                .collect();
            let (pk, ps, ph) = match (&prev, first_previous) {
                (Some((k, s, h)), _) => (Some(k.clone()), Some(s.clone()), Some(h.clone())),
                (None, Some(k)) => (
                    Some(k.to_owned()),
                    Some("ab".repeat(256)),
                    Some("cd".repeat(32)),
                ),
                (None, None) => (None, None, None),
            };
            let doc = serde_json::json!({
                "awsAccountId": ACCT, "digestStartTime": start, "digestEndTime": end,
                "digestS3Bucket": BUCKET, "digestS3Object": key,
                "digestPublicKeyFingerprint": "0123456789abcdef0123456789abcdef",
                "digestSignatureAlgorithm": SIGNATURE_ALGORITHM,
                "newestEventTime": end, "oldestEventTime": start,
                "previousDigestS3Bucket": pk.as_ref().map(|_| BUCKET),
                "previousDigestS3Object": pk, "previousDigestHashValue": ph,
                "previousDigestHashAlgorithm": "SHA-256", "previousDigestSignature": ps,
                "logFiles": listed,
            });
            let content = serde_json::to_vec(&doc).unwrap();
            let sha = sha256_hex(&content);
            let sig = sign(signing_string(end, BUCKET, key, &sha, ps.as_deref()).as_bytes());
            let meta = BTreeMap::from([
                ("signature".to_owned(), sig.clone()),
                (
                    "signature-algorithm".to_owned(),
                    SIGNATURE_ALGORITHM.to_owned(),
                ),
            ]);
            self.members
                .push((key.to_owned(), gz(&content), Some(meta)));
            self.signed.push((key.to_owned(), sig, sha));
        }

        fn remove(&mut self, key: &str) {
            self.members.retain(|(k, _, _)| k != key);
        }

        fn replace(&mut self, key: &str, body: Vec<u8>) {
            for m in &mut self.members {
                if m.0 == key {
                    m.1 = body.clone();
                }
            }
        }

        fn meta(&mut self, key: &str, name: &str, value: &str) {
            for m in &mut self.members {
                if m.0 == key {
                    m.2.get_or_insert_default()
                        .insert(name.into(), value.into());
                }
            }
        }

        fn tar(&self) -> Vec<u8> {
            let mut t = tar::Builder::new(Vec::new());
            let mut index = Vec::new();
            for (k, body, meta) in &self.members {
                let mut h = tar::Header::new_gnu();
                h.set_size(body.len() as u64);
                h.set_mode(0o644);
                t.append_data(&mut h, k, body.as_slice()).unwrap();
                index.push(serde_json::json!({"key": k, "member": k, "size": body.len(), "metadata": meta}));
            }
            let json = serde_json::to_vec(&serde_json::json!({"format": "custody-log-bundle-1", "bucket": BUCKET, "log_format": "cloudtrail", "objects": index})).unwrap();
            let mut h = tar::Header::new_gnu();
            h.set_size(json.len() as u64);
            h.set_mode(0o644);
            t.append_data(&mut h, "index.json", json.as_slice())
                .unwrap();
            t.into_inner().unwrap()
        }
    }

    const DAY: &str = "2021/06/01";
    const FP: &str = "0123456789abcdef0123456789abcdef";

    /// Three hourly digests of one day, two log files each, then a log
    /// file after the last digest.
    fn three_hours() -> (Fixture, Vec<String>, Vec<String>) {
        let mut f = Fixture::default();
        let mut logs = Vec::new();
        let mut digests = Vec::new();
        for h in 0..3u32 {
            let a = log_key(DAY, &format!("{h:02}10"), h * 2);
            let b = log_key(DAY, &format!("{h:02}40"), h * 2 + 1);
            let ha = f.log(&a, format!("{{\"Records\":[{h}]}}").as_bytes());
            let hb = f.log(&b, format!("{{\"Records\":[{h},{h}]}}").as_bytes());
            let key = digest_key(DAY, &format!("{:02}0000", h + 1));
            f.digest(
                &key,
                &format!("2021-06-01T{h:02}:00:00Z"),
                &format!("2021-06-01T{:02}:00:00Z", h + 1),
                &[(a.as_str(), ha.as_str()), (b.as_str(), hb.as_str())],
                Some(&digest_key("2021/05/31", "230000")),
            );
            logs.extend([a, b]);
            digests.push(key);
        }
        let late = log_key(DAY, "0330", 99);
        f.log(&late, b"{\"Records\":[]}");
        logs.push(late);
        (f, digests, logs)
    }

    fn status_of<'r>(r: &'r TrailReport, key: &str) -> &'r LogFileCheck {
        r.log_files
            .iter()
            .find(|l| l.key == key)
            .unwrap_or_else(|| panic!("{key} not in {r:#?}"))
    }

    fn digest_of<'r>(r: &'r TrailReport, key: &str) -> &'r DigestCheck {
        r.digests
            .iter()
            .find(|d| d.key == key)
            .unwrap_or_else(|| panic!("{key} not in {r:#?}"))
    }

    #[test]
    fn the_signing_string_is_end_time_path_content_hash_and_previous_signature() {
        let s = signing_string(
            "2015-08-17T15:01:31Z",
            "amzn-s3-demo-bucket",
            "AWSLogs/111122223333/CloudTrail-Digest/us-east-2/2015/08/17/x_20150817T150131Z.json.gz",
            "4ff08d7c6ecd6eb313257e839645d20363ee3784a2328a7d76b99b53cdf9c7ef",
            Some("3d5a"),
        );
        assert_eq!(
            s,
            "2015-08-17T15:01:31Z\namzn-s3-demo-bucket/AWSLogs/111122223333/CloudTrail-Digest/us-east-2/2015/08/17/x_20150817T150131Z.json.gz\n4ff08d7c6ecd6eb313257e839645d20363ee3784a2328a7d76b99b53cdf9c7ef\n3d5a"
        );
        // The first digest of a chain signs the word null; nothing trails.
        assert!(signing_string("t", "b", "o", "h", None).ends_with("\nh\nnull"));
    }

    #[test]
    fn a_signature_verifies_over_the_hash_of_the_uncompressed_digest_only() {
        let (f, digests, _) = three_hours();
        let r = verify_bundle(&f.tar(), &keys(FP), InflateLimits::DEFAULT, None);
        assert!(r.is_intact(), "{:#?}", r.problems());
        let first = digest_of(&r, &digests[0]);
        assert_eq!(
            first.signature,
            SignatureCheck::Valid {
                fingerprint: FP.into()
            }
        );
        // Its hash is over the JSON, not the gzip bytes.
        let (_, _, sha) = &f.signed[0];
        assert_eq!(first.sha256.as_deref(), Some(sha.as_str()));
        // A signature over the compressed bytes' hash would not verify.
        let gz_sha = sha256_hex(&f.members.iter().find(|m| m.0 == digests[0]).unwrap().1);
        let der = test_key().public().as_ref().to_vec();
        let wrong = signing_string(
            "2021-06-01T01:00:00Z",
            BUCKET,
            &digests[0],
            &gz_sha,
            Some(&"ab".repeat(256)),
        );
        assert!(!rsa_sha256_verifies(
            &der,
            wrong.as_bytes(),
            &hex::decode(&f.signed[0].1).unwrap()
        ));
    }

    #[test]
    fn an_intact_day_is_valid_and_the_file_after_the_last_digest_uncovered() {
        let (f, digests, logs) = three_hours();
        let r = verify_bundle(&f.tar(), &keys(FP), InflateLimits::DEFAULT, None);
        assert_eq!(r.summary.digests, 3);
        assert_eq!(r.summary.signatures_valid, 3);
        assert_eq!(r.summary.valid, 6, "{:#?}", r.log_files);
        assert_eq!(r.summary.uncovered, 1);
        assert!(
            status_of(&r, &logs[6])
                .reason
                .contains("after the newest digest"),
            "{:#?}",
            status_of(&r, &logs[6])
        );
        assert_eq!(
            digest_of(&r, &digests[0]).link,
            ChainLink::FirstInWindow {
                previous: digest_key("2021/05/31", "230000")
            }
        );
        assert_eq!(
            digest_of(&r, &digests[2]).link,
            ChainLink::Ok {
                previous: digests[1].clone()
            }
        );
        assert!(r.problems().is_empty());
        // Told that the window began the day before, the first link is a gap.
        let t = |s: &str| {
            OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).unwrap()
        };
        let wide = verify_bundle(
            &f.tar(),
            &keys(FP),
            InflateLimits::DEFAULT,
            Some((t("2021-05-31T00:00:00Z"), t("2021-06-01T23:00:00Z"))),
        );
        assert_eq!(wide.gaps.len(), 1, "{:#?}", wide.gaps);
        assert_eq!(wide.window.from, "collection");
    }

    #[test]
    fn an_altered_a_deleted_and_a_damaged_log_file_are_named_with_both_hashes() {
        let (mut f, digests, logs) = three_hours();
        f.replace(&logs[0], gz(b"{\"Records\":[\"forged\"]}"));
        f.remove(&logs[1]);
        f.replace(&logs[2], gz(b"{\"Records\":[1]}")[..10].to_vec());
        let r = verify_bundle(&f.tar(), &keys(FP), InflateLimits::DEFAULT, None);
        let altered = status_of(&r, &logs[0]);
        assert_eq!(altered.status, LogStatus::Altered);
        let expected = sha256_hex(b"{\"Records\":[0]}");
        let actual = sha256_hex(b"{\"Records\":[\"forged\"]}");
        assert!(
            altered.reason.contains(&expected)
                && altered.reason.contains(&actual)
                && altered.reason.contains(&digests[0]),
            "{}",
            altered.reason
        );
        assert_eq!(status_of(&r, &logs[1]).status, LogStatus::Missing);
        assert_eq!(
            status_of(&r, &logs[2]).status,
            LogStatus::Altered,
            "a cut gzip is not what CloudTrail wrote"
        );
        let kinds: Vec<TrailProblemKind> = r.problems().iter().map(|p| p.kind).collect();
        assert_eq!(
            kinds,
            [
                TrailProblemKind::Altered,
                TrailProblemKind::Missing,
                TrailProblemKind::Altered
            ]
        );
        assert_eq!(
            r.problems()[0].time.as_deref(),
            Some("2021-06-01T00:10:00Z")
        );
    }

    #[test]
    fn a_flipped_signature_is_invalid_and_breaks_the_next_link() {
        let (mut f, digests, _) = three_hours();
        let mut sig = hex::decode(&f.signed[1].1).unwrap();
        sig[10] ^= 1;
        f.meta(&digests[1], "signature", &hex::encode(sig));
        let r = verify_bundle(&f.tar(), &keys(FP), InflateLimits::DEFAULT, None);
        assert!(matches!(
            digest_of(&r, &digests[1]).signature,
            SignatureCheck::Invalid { .. }
        ));
        assert!(
            matches!(digest_of(&r, &digests[2]).link, ChainLink::Broken { .. }),
            "{:#?}",
            digest_of(&r, &digests[2])
        );
        let kinds: BTreeSet<TrailProblemKind> = r.problems().iter().map(|p| p.kind).collect();
        assert_eq!(
            kinds,
            BTreeSet::from([
                TrailProblemKind::BadSignature,
                TrailProblemKind::BrokenChain
            ])
        );
        // Its files match their hashes, but nothing vouches for them.
        assert_eq!(r.summary.unchecked, 2);
        assert_eq!(r.summary.valid, 4);
    }

    #[test]
    fn a_digest_removed_from_the_middle_is_a_gap_and_its_files_uncovered() {
        let (mut f, digests, _) = three_hours();
        f.remove(&digests[1]);
        let r = verify_bundle(&f.tar(), &keys(FP), InflateLimits::DEFAULT, None);
        assert_eq!(
            r.gaps,
            vec![DigestGap {
                missing: digests[1].clone(),
                named_by: digests[2].clone(),
                until: Some("2021-06-01T02:00:00Z".into())
            }]
        );
        assert_eq!(
            digest_of(&r, &digests[2]).link,
            ChainLink::PreviousMissing {
                previous: digests[1].clone()
            }
        );
        assert_eq!(r.summary.uncovered, 3);
        let p = r.problems();
        assert_eq!(p.len(), 1, "{p:#?}");
        assert_eq!(p[0].kind, TrailProblemKind::Gap);
        assert_eq!(p[0].key, digests[1]);
    }

    #[test]
    fn a_key_of_another_fingerprint_leaves_every_digest_unknown() {
        let (f, _, _) = three_hours();
        let r = verify_bundle(
            &f.tar(),
            &keys("ffffffffffffffffffffffffffffffff"),
            InflateLimits::DEFAULT,
            None,
        );
        assert_eq!(r.summary.signatures_unknown_key, 3);
        assert_eq!(r.summary.valid, 0);
        assert!(
            r.problems()
                .iter()
                .all(|p| p.kind == TrailProblemKind::UnknownKey && p.message.contains(FP))
        );
        // And a key of the right fingerprint but another modulus does not verify.
        let mut other = keys(FP);
        other.keys[0].value = base64::engine::general_purpose::STANDARD.encode(b"not a key");
        let r = verify_bundle(&f.tar(), &other, InflateLimits::DEFAULT, None);
        assert_eq!(r.summary.signatures_invalid, 3);
    }

    #[test]
    fn a_digest_moved_from_its_place_is_invalid() {
        let (mut f, digests, _) = three_hours();
        let moved = digests[0].replace("T010000Z", "T010001Z");
        for m in &mut f.members {
            if m.0 == digests[0] {
                m.0.clone_from(&moved);
            }
        }
        let r = verify_bundle(&f.tar(), &keys(FP), InflateLimits::DEFAULT, None);
        match &digest_of(&r, &moved).signature {
            SignatureCheck::Invalid { reason, .. } => assert!(
                reason.contains("moved from its original location"),
                "{reason}"
            ),
            other => panic!("{other:?}"),
        }
    }

    fn digest(
        key: &str,
        chain: &str,
        start: &str,
        end: &str,
        previous: Option<(&str, &str, &str)>,
        sig: &str,
        sha: &str,
    ) -> Digest<'static> {
        Digest {
            key: key.into(),
            chain: chain.into(),
            backfill: false,
            notes: Vec::new(),
            sha256: Some(sha.into()),
            sha256_stored: Some("00".into()),
            // Leaked: a test's digests live as long as the test.
            file: Some(Box::leak(Box::new(DigestFile {
                digest_start_time: Some(start.into()),
                digest_end_time: Some(end.into()),
                digest_s3_bucket: Some(BUCKET.into()),
                previous_digest_s3_bucket: previous.map(|_| BUCKET.into()),
                previous_digest_s3_object: previous.map(|p| p.0.into()),
                previous_digest_signature: previous.map(|p| p.1.into()),
                previous_digest_hash_value: previous.map(|p| p.2.into()),
                ..DigestFile::default()
            }))),
            signature_hex: Some(sig.into()),
            check: SignatureCheck::Valid {
                fingerprint: FP.into(),
            },
        }
    }

    #[test]
    fn chain_links_follow_signatures_and_hashes_and_find_gaps_forks_and_restarts() {
        let in_window = |k: &str, _: Option<&str>| k.contains("2021/06/01");
        let a = digest(
            "2021/06/01/a",
            "c",
            "00",
            "01",
            Some(("2021/05/31/z", "zz", "00")),
            "aa",
            "a1",
        );
        let b = digest(
            "2021/06/01/b",
            "c",
            "01",
            "02",
            Some(("2021/06/01/a", "AA", "A1")),
            "bb",
            "b1",
        );
        let c = digest(
            "2021/06/01/c",
            "c",
            "02",
            "03",
            Some(("2021/06/01/b", "bb", "wrong")),
            "cc",
            "c1",
        );
        let d = digest(
            "2021/06/01/d",
            "c",
            "03",
            "04",
            Some(("2021/06/01/x", "xx", "x1")),
            "dd",
            "d1",
        );
        let e = digest("2021/06/01/e", "c", "06", "07", None, "ee", "e1");
        let g = digest(
            "2021/06/01/g",
            "c",
            "07",
            "08",
            Some(("2021/06/01/e", "ee", "e1")),
            "gg",
            "g1",
        );
        let h = digest(
            "2021/06/01/h",
            "c",
            "07",
            "08",
            Some(("2021/06/01/e", "ee", "e1")),
            "hh",
            "h1",
        );
        let (links, gaps) = chain_links(&[a, b, c, d, e, g, h], in_window);
        assert_eq!(
            links[0],
            ChainLink::FirstInWindow {
                previous: "2021/05/31/z".into()
            }
        );
        assert_eq!(
            links[1],
            ChainLink::Ok {
                previous: "2021/06/01/a".into()
            },
            "hex compares without case"
        );
        assert!(
            matches!(&links[2], ChainLink::Broken { reason, .. } if reason.contains("previous hash wrong")),
            "{:?}",
            links[2]
        );
        assert_eq!(
            links[3],
            ChainLink::PreviousMissing {
                previous: "2021/06/01/x".into()
            }
        );
        assert!(
            matches!(&links[4], ChainLink::Start { note: Some(n) } if n.contains("restarts")),
            "{:?}",
            links[4]
        );
        assert_eq!(
            links[5],
            ChainLink::Ok {
                previous: "2021/06/01/e".into()
            }
        );
        assert!(
            matches!(&links[6], ChainLink::Broken { reason, .. } if reason.contains("already names")),
            "{:?}",
            links[6]
        );
        assert_eq!(gaps.len(), 1);
        assert_eq!(gaps[0].named_by, "2021/06/01/d");
    }

    #[test]
    fn hostile_digests_are_problems_not_panics() {
        let (mut f, digests, _) = three_hours();
        // Not JSON.
        f.replace(&digests[0], gz(b"<html>not json</html>"));
        // A bomb: 4 MiB of zeros against a 1 MiB limit.
        f.replace(&digests[1], gz(&vec![0u8; 4 << 20]));
        let limits = InflateLimits {
            max_bytes: 1 << 20,
            max_ratio: 100,
        };
        let r = verify_bundle(&f.tar(), &keys(FP), limits, None);
        match &digest_of(&r, &digests[0]).signature {
            SignatureCheck::NotChecked { reason } => {
                assert!(reason.contains("not a CloudTrail digest"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
        match &digest_of(&r, &digests[1]).signature {
            SignatureCheck::NotChecked { reason } => {
                assert!(reason.contains("expands past 1048576 bytes"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
        assert!(
            r.problems()
                .iter()
                .filter(|p| p.kind == TrailProblemKind::Unchecked)
                .count()
                >= 2
        );
        // The third digest's link cannot be checked against an unreadable previous one.
        assert!(matches!(
            digest_of(&r, &digests[2]).link,
            ChainLink::NotChecked { .. }
        ));
    }

    #[test]
    fn a_digest_listing_thousands_of_files_is_read() {
        let mut f = Fixture::default();
        let listed: Vec<(String, String)> = (0..5000)
            .map(|i| (log_key(DAY, "0010", i), "00".repeat(32)))
            .collect();
        let refs: Vec<(&str, &str)> = listed
            .iter()
            .map(|(k, h)| (k.as_str(), h.as_str()))
            .collect();
        f.digest(
            &digest_key(DAY, "010000"),
            "2021-06-01T00:00:00Z",
            "2021-06-01T01:00:00Z",
            &refs,
            None,
        );
        let started = std::time::Instant::now();
        let r = verify_bundle(&f.tar(), &keys(FP), InflateLimits::DEFAULT, None);
        assert_eq!(r.summary.missing, 5000);
        assert_eq!(r.summary.signatures_valid, 1);
        assert!(started.elapsed() < std::time::Duration::from_secs(20));
    }

    #[test]
    fn a_damaged_bundle_and_odd_member_names_are_problems() {
        use std::os::unix::ffi::OsStrExt as _;
        // Not a tar at all.
        let r = verify_bundle(
            b"this is not a tar archive, not even close",
            &keys(FP),
            InflateLimits::DEFAULT,
            None,
        );
        assert!(!r.is_intact());
        assert!(
            r.problems()
                .iter()
                .any(|p| p.message.contains("no CloudTrail digest")),
            "{:#?}",
            r.problems()
        );
        // A member whose name is not UTF-8, a digest key without CloudTrail's form, and a cut tar.
        let (mut f, _, _) = three_hours();
        let odd = format!("AWSLogs/{ACCT}/CloudTrail-Digest/us-east-1/2021/06/01/odd.json.gz");
        f.digest(
            &odd,
            "2021-06-01T03:00:00Z",
            "2021-06-01T04:00:00Z",
            &[],
            None,
        );
        let mut tar = f.tar();
        let mut t = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(3);
        h.set_mode(0o644);
        t.append_data(
            &mut h,
            std::path::Path::new(std::ffi::OsStr::from_bytes(b"AWSLogs/\xff/CloudTrail/x")),
            &b"abc"[..],
        )
        .unwrap();
        let extra = t.into_inner().unwrap();
        // Before the end-of-archive blocks of the first tar.
        let body = tar.len() - 1024;
        tar.truncate(body);
        tar.extend_from_slice(&extra);
        let r = verify_bundle(&tar, &keys(FP), InflateLimits::DEFAULT, None);
        assert!(
            r.bundle_problems.iter().any(|p| p.contains("not UTF-8")),
            "{:#?}",
            r.bundle_problems
        );
        let d = digest_of(&r, &odd);
        assert!(
            d.notes
                .iter()
                .any(|n| n.contains("does not have CloudTrail's form")),
            "{d:#?}"
        );
        assert_eq!(d.chain, odd);
        let cut = &tar[..tar.len() / 2];
        let r = verify_bundle(cut, &keys(FP), InflateLimits::DEFAULT, None);
        assert!(!r.is_intact());
        assert!(
            r.bundle_problems
                .iter()
                .any(|p| p.contains("truncated") || p.contains("index.json")),
            "{:#?}",
            r.bundle_problems
        );
    }

    #[test]
    fn a_bundle_without_metadata_cannot_vouch_for_its_digests() {
        let (mut f, digests, _) = three_hours();
        for m in &mut f.members {
            m.2 = None;
        }
        let r = verify_bundle(&f.tar(), &keys(FP), InflateLimits::DEFAULT, None);
        match &digest_of(&r, &digests[0]).signature {
            SignatureCheck::NotChecked { reason } => {
                assert!(reason.contains("S3 metadata"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn public_keys_read_as_the_cli_prints_them_or_from_a_stored_report() {
        let cli = br#"{"PublicKeyList": [{"Value": "AAEC\nAw==", "ValidityStartTime": 1622505600.0,
            "ValidityEndTime": "2021-07-01T00:00:00+00:00", "Fingerprint": "8EBA"}]}"#;
        let k = PublicKeys::from_json(cli).unwrap();
        assert_eq!(k.keys[0].der().unwrap(), [0, 1, 2, 3]);
        assert!(k.find("8eba").is_some());
        let stored = serde_json::json!({"format": REPORT_FORMAT, "public_keys": serde_json::from_slice::<serde_json::Value>(cli).unwrap()});
        assert_eq!(
            PublicKeys::from_json(stored.to_string().as_bytes()).unwrap(),
            k
        );
        assert!(
            PublicKeys::from_json(b"{\"keys\": []}")
                .unwrap_err()
                .contains("PublicKeyList")
        );
        assert!(
            PublicKeys::from_json(br#"{"PublicKeyList": [{"Value": "%%", "Fingerprint": "a"}]}"#)
                .is_err()
        );
        // What custody stores reads back the same.
        let back = PublicKeys::from_json(&serde_json::to_vec(&k).unwrap()).unwrap();
        assert_eq!(back, k);
    }

    #[test]
    fn names_give_days_regions_times_and_chains() {
        let k = digest_key(DAY, "010000");
        assert_eq!(
            key_day(&k),
            Date::from_calendar_date(2021, time::Month::June, 1).ok()
        );
        assert_eq!(key_region(&k).as_deref(), Some("us-east-1"));
        assert_eq!(
            log_time(&log_key(DAY, "0310", 1)).as_deref(),
            Some("2021-06-01T03:10:00Z")
        );
        let org = format!(
            "p/AWSLogs/o-abc/{ACCT}/CloudTrail-Digest/eu-west-1/2021/06/02/{ACCT}_CloudTrail-Digest_eu-west-1_t_us-east-1_20210602T010000Z.json.gz"
        );
        let (chain, backfill, note) = digest_chain(&org);
        assert_eq!(
            chain,
            format!(
                "p/AWSLogs/o-abc/{ACCT}/CloudTrail-Digest/eu-west-1/{ACCT}_CloudTrail-Digest_eu-west-1_t_us-east-1"
            )
        );
        assert!(!backfill && note.is_none());
        let (_, backfill, _) = digest_chain(&org.replace(".json.gz", "_backfill.json.gz"));
        assert!(backfill);
        assert_eq!(key_day("AWSLogs/1/CloudTrail/r/2021/13/01/x"), None);
        assert_eq!(compact_time("20210601T0310"), None);
    }
}
