//! `custody-verify`: checks custody's records offline, without custody.
//!
//! ```text
//! custody-verify ledger DIR [--key VKEY] [--checkpoint FILE] [--strict]
//! custody-verify bundle DIR [--key VKEY] [--store PATH]
//! ```
//!
//! `ledger` verifies a ledger directory (`<custody home>/ledger`): every
//! entry, checkpoint, signature and link, and with `--checkpoint` that the
//! log extends a checkpoint seen earlier. `bundle` verifies a case bundle
//! written by `custody ledger export`; with `--store` (the root of a local
//! custody store) it also checks each artefact the bundle's manifests name:
//! the stored object's size and SHA-256 against the signed entries, and,
//! when built with the `zstd` feature, the SHA-256 of its decompressed bytes.
//!
//! The output is `custody ledger verify`'s: a `FAILED` line per problem, a
//! `WARNING` line per caveat, and a summary line. Exit status: 0 verified,
//! 1 verification failed, 2 the check could not be made (unreadable input).

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use serde::Deserialize;
use sha2::Digest as _;

use custody_ledger::entry::{Entry, EvidenceRef};
use custody_ledger::ids::{ArtefactId, CaseId};
use custody_ledger::verify::{self, Report, bundle};
use custody_ledger::{LedgerPaths, error_chain};

#[derive(Debug, Parser)]
#[command(
    name = "custody-verify",
    version,
    about = "Verify a custody ledger or case bundle, offline"
)]
struct Cli {
    /// Print the report as JSON.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Verify a ledger directory: every entry, checkpoint, signature and link.
    Ledger {
        /// The ledger directory (`<custody home>/ledger`).
        dir: PathBuf,
        /// The verifier key you trust (default: the one in ledger.json).
        #[arg(long, value_name = "VKEY")]
        key: Option<String>,
        /// A checkpoint you saw earlier: the log must extend it, so a ledger
        /// rolled back to an older copy or rewritten after a truncation is refused.
        #[arg(long, value_name = "FILE")]
        checkpoint: Option<PathBuf>,
        /// Also check that every entry is canonical JSON of the entry schema (slower).
        #[arg(long)]
        strict: bool,
    },
    /// Verify a case bundle written by `custody ledger export`.
    Bundle {
        /// The bundle's directory.
        dir: PathBuf,
        /// The verifier key you trust (default: the bundle's verifier.key).
        #[arg(long, value_name = "VKEY")]
        key: Option<String>,
        /// The root of the local custody store holding the case's artefacts:
        /// each one the bundle's manifests name is checked too.
        #[arg(long, value_name = "PATH")]
        store: Option<PathBuf>,
    },
}

/// Why a check could not be made (as opposed to a check that failed).
#[derive(Debug)]
struct OpError(String);

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.cmd {
        Cmd::Ledger {
            dir,
            key,
            checkpoint,
            strict,
        } => verify_ledger(&dir, key.as_deref(), checkpoint.as_deref(), strict)
            .map(|r| (r, "ledger", None)),
        Cmd::Bundle { dir, key, store } => {
            verify_bundle(&dir, key.as_deref(), store.as_deref()).map(|(r, a)| (r, "bundle", a))
        }
    };
    match result {
        Ok((report, what, artefacts)) => {
            print_report(&report, what, artefacts.as_deref(), cli.json);
            if report.ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(OpError(e)) => {
            eprintln!("error: {}", clean(&e));
            ExitCode::from(2)
        }
    }
}

fn verify_ledger(
    dir: &Path,
    key: Option<&str>,
    checkpoint: Option<&Path>,
    strict: bool,
) -> Result<Report, OpError> {
    let trusted = checkpoint
        .map(|p| {
            std::fs::read(p).map_err(|e| {
                OpError(format!(
                    "cannot read the trusted checkpoint {}: {e}",
                    p.display()
                ))
            })
        })
        .transpose()?;
    let paths = LedgerPaths {
        dir: dir.to_path_buf(),
        // Only the writer reads the signing key.
        key: PathBuf::new(),
    };
    verify::verify_ledger_since(&paths, key, strict, trusted.as_deref()).map_err(|e| {
        OpError(format!(
            "cannot read the ledger at {}: {}",
            dir.display(),
            error_chain(&e)
        ))
    })
}

/// The bundle's report, and with `store` a line saying how many artefacts were checked.
fn verify_bundle(
    dir: &Path,
    key: Option<&str>,
    store: Option<&Path>,
) -> Result<(Report, Option<String>), OpError> {
    let mut report = verify::verify_bundle(dir, key).map_err(|e| {
        OpError(format!(
            "cannot read the bundle at {}: {}",
            dir.display(),
            error_chain(&e)
        ))
    })?;
    let artefacts = store
        .map(|store| check_artefacts(dir, store, &mut report))
        .transpose()?;
    Ok((report, artefacts))
}

/// The fields of an artefact manifest (`custody::evidence::Artefact`) that
/// the check needs; unknown fields are ignored.
#[derive(Debug, Deserialize)]
struct Manifest {
    id: ArtefactId,
    case: CaseId,
    raw: Digest,
    stored: Stored,
}

#[derive(Debug, Deserialize)]
struct Digest {
    size: u64,
    sha256: String,
}

#[derive(Debug, Deserialize)]
struct Stored {
    size: u64,
    sha256: String,
    key: String,
}

/// Checks each artefact the bundle's manifests name against the signed
/// entries that refer to it, and its stored object under `store`.
fn check_artefacts(dir: &Path, store: &Path, report: &mut Report) -> Result<String, OpError> {
    if !store.is_dir() {
        return Err(OpError(format!(
            "the store {} is not a directory",
            store.display()
        )));
    }
    let case: Option<CaseId> = std::fs::read_to_string(dir.join(bundle::CASE))
        .ok()
        .and_then(|c| c.trim().parse().ok());
    // What the signed entries say of each artefact (verify_bundle has
    // checked that each entry is in the signed log).
    let mut signed: HashMap<ArtefactId, Vec<EvidenceRef>> = HashMap::new();
    for path in files(&dir.join(bundle::ENTRIES), "json")? {
        let Ok(bytes) = std::fs::read(&path) else {
            continue;
        };
        if let Ok(Entry {
            evidence: Some(ev), ..
        }) = Entry::parse(&bytes)
        {
            signed.entry(ev.artefact.clone()).or_default().push(ev);
        }
    }
    let (mut checked, mut failed) = (0usize, 0usize);
    for path in files(&dir.join(bundle::MANIFESTS), "json")? {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let m: Manifest = match std::fs::read(&path)
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
        {
            Ok(m) => m,
            Err(e) => {
                report
                    .problems
                    .push(format!("manifest {name}: not an artefact manifest: {e}"));
                failed += 1;
                continue;
            }
        };
        if let Some(problem) = check_artefact(store, case.as_ref(), &m, signed.get(&m.id)) {
            report
                .problems
                .push(format!("artefact {} ({}): {problem}", m.id, m.stored.key));
            failed += 1;
        } else {
            checked += 1;
        }
    }
    if !cfg!(feature = "zstd") {
        report.warnings.push(
            "raw digests were not checked: this custody-verify was built without the `zstd` feature; only the stored objects' SHA-256 were (each decompresses with zstd -d to bytes whose SHA-256 is the manifest's raw.sha256)"
                .into(),
        );
    }
    let raw = if cfg!(feature = "zstd") {
        "stored and raw digests"
    } else {
        "stored digests only"
    };
    Ok(format!(
        "artefacts: {checked} match, {failed} do not ({raw}) in {}",
        store.display()
    ))
}

/// One artefact: its manifest agrees with the signed entries, and its stored
/// object under `store` has the signed size and SHA-256 (and, with the
/// `zstd` feature, decompresses to the signed raw digest).
fn check_artefact(
    store: &Path,
    case: Option<&CaseId>,
    m: &Manifest,
    signed: Option<&Vec<EvidenceRef>>,
) -> Option<String> {
    if case.is_some_and(|c| *c != m.case) {
        return Some(format!(
            "its manifest is of case {}, not the bundle's",
            m.case
        ));
    }
    let Some(refs) = signed.filter(|r| !r.is_empty()) else {
        return Some("no signed entry of the bundle refers to it".into());
    };
    for r in refs {
        if (
            r.stored_size,
            r.stored_sha256.as_str(),
            r.raw_size,
            r.raw_sha256.as_str(),
        ) != (
            m.stored.size,
            m.stored.sha256.as_str(),
            m.raw.size,
            m.raw.sha256.as_str(),
        ) {
            return Some(
                "its manifest's digests differ from those its signed entries record".into(),
            );
        }
    }
    let Some(path) = object_path(store, &m.stored.key) else {
        return Some("its key is not a plain relative path".into());
    };
    let file = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) => return Some(format!("cannot read {}: {e}", path.display())),
    };
    // One read: the stored bytes are hashed as the decoder takes them.
    let mut hashing = HashingReader::new(file);
    let raw = raw_digest(&mut hashing);
    // Whatever the decoder left unread still counts towards the stored digest.
    if let Err(e) = std::io::copy(&mut hashing, &mut std::io::sink()) {
        return Some(format!("cannot read {}: {e}", path.display()));
    }
    let (size, sha256) = hashing.finish();
    if (size, sha256.as_str()) != (m.stored.size, m.stored.sha256.as_str()) {
        return Some(format!(
            "the stored object is {size} bytes with SHA-256 {sha256}, but the signed entries record {} bytes with SHA-256 {}",
            m.stored.size, m.stored.sha256
        ));
    }
    match raw {
        Err(e) => Some(format!(
            "the stored object {} does not decompress: {e}",
            path.display()
        )),
        Ok(Some((size, sha256)))
            if (size, sha256.as_str()) != (m.raw.size, m.raw.sha256.as_str()) =>
        {
            Some(format!(
                "the object decompresses to {size} bytes with SHA-256 {sha256}, but the signed entries record {} bytes with SHA-256 {}",
                m.raw.size, m.raw.sha256
            ))
        }
        Ok(_) => None,
    }
}

/// The raw content's size and SHA-256, decompressing as it goes.
#[cfg(feature = "zstd")]
fn raw_digest(r: &mut HashingReader<std::fs::File>) -> std::io::Result<Option<(u64, String)>> {
    // Seekable zstd is independent frames and a skippable seek-table frame:
    // the streaming decoder reads them all in turn.
    let mut decoder = zstd::stream::read::Decoder::new(r)?;
    let mut raw = HashingReader::new(&mut decoder);
    std::io::copy(&mut raw, &mut std::io::sink())?;
    Ok(Some(raw.finish()))
}

/// Without the `zstd` feature raw digests are not checked (and the report says so).
#[cfg(not(feature = "zstd"))]
fn raw_digest(_: &mut HashingReader<std::fs::File>) -> std::io::Result<Option<(u64, String)>> {
    Ok(None)
}

/// A reader that hashes and counts what passes through it.
struct HashingReader<R> {
    inner: R,
    hash: sha2::Sha256,
    size: u64,
}

impl<R: std::io::Read> HashingReader<R> {
    fn new(inner: R) -> Self {
        Self {
            inner,
            hash: sha2::Sha256::new(),
            size: 0,
        }
    }

    fn finish(self) -> (u64, String) {
        (self.size, hex::encode(self.hash.finalize()))
    }
}

impl<R: std::io::Read> std::io::Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        let read = buf.get(..n).unwrap_or_default();
        self.hash.update(read);
        self.size += n as u64;
        Ok(n)
    }
}

/// `store/<key>`, for a key made only of normal path components.
fn object_path(store: &Path, key: &str) -> Option<PathBuf> {
    let rel = Path::new(key);
    let plain = !key.is_empty()
        && !key.contains('\\')
        && rel.components().all(|c| matches!(c, Component::Normal(_)));
    plain.then(|| store.join(rel))
}

/// The files in `dir` ending `.ext`, sorted; none when `dir` does not exist.
fn files(dir: &Path, ext: &str) -> Result<Vec<PathBuf>, OpError> {
    let mut out: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(d) => d
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == ext))
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(OpError(format!("cannot list {}: {e}", dir.display()))),
    };
    out.sort();
    Ok(out)
}

/// Prints the report; a closed pipe (`custody-verify … | head`) is not an error.
fn print_report(r: &Report, what: &str, artefacts: Option<&str>, json: bool) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    if json {
        let text = serde_json::to_string_pretty(r).unwrap_or_default();
        let _ = writeln!(out, "{text}");
        return;
    }
    let mut s = String::new();
    for p in &r.problems {
        s.push_str(&format!("FAILED  {}\n", clean(p)));
    }
    for w in &r.warnings {
        s.push_str(&format!("WARNING {}\n", clean(w)));
    }
    if let Some(a) = artefacts {
        s.push_str(&clean(a));
        s.push('\n');
    }
    s.push_str(&format!(
        "{what}: {} entries, {} checkpoints, latest size {} root {}: {}\n",
        r.entries,
        r.checkpoints,
        r.latest_size,
        r.latest_root,
        if r.ok() { "verified" } else { "NOT verified" }
    ));
    let _ = out.write_all(s.as_bytes()).and_then(|()| out.flush());
}

/// One line of text safe for a terminal: control characters (from file
/// names or a hostile bundle) are shown escaped.
fn clean(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_keys_cannot_climb_out_of_the_store() {
        let store = Path::new("/store");
        assert_eq!(
            object_path(store, "cases/c1/artefacts/a.zst"),
            Some(PathBuf::from("/store/cases/c1/artefacts/a.zst"))
        );
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "cases/../../x",
            "./x",
            "a\\..\\b",
        ] {
            assert_eq!(object_path(store, bad), None, "{bad:?}");
        }
    }

    #[test]
    fn control_characters_are_shown_escaped() {
        assert_eq!(clean("a\u{1b}[2Jb\nc"), "a\\u{1b}[2Jb\\nc");
    }
}
