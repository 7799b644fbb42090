//! Keys and signed checkpoints: C2SP `signed-note` with Ed25519 over C2SP
//! `tlog-checkpoint` bodies (`<origin>\n<size>\n<base64 root>\n`).

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use signed_note::{Note, StandardSigner, StandardVerifier, VerifierList};
use tlog_tiles::checkpoint::Checkpoint;

use crate::merkle::Hash;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NoteError {
    #[error(
        "key file {path} is readable or writable by others (mode {mode:o}); run chmod 600 on it"
    )]
    KeyPermissions { path: PathBuf, mode: u32 },
    #[error("key file {path} already exists; refusing to replace a signing key")]
    KeyExists { path: PathBuf },
    #[error("cannot read or write key file {path}")]
    KeyIo {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("key file {path} does not hold a valid Ed25519 note signing key")]
    BadKey { path: PathBuf },
    #[error("invalid verifier key {key:?}")]
    BadVerifierKey { key: String },
    #[error("invalid key name {name:?}: it must be non-empty, without spaces or '+'")]
    BadName { name: String },
    #[error("checkpoint is not a validly signed note: {reason}")]
    BadSignature { reason: String },
    #[error("checkpoint body is malformed")]
    Malformed,
    #[error("checkpoint is for origin {found:?}, expected {expected:?}")]
    WrongOrigin { found: String, expected: String },
}

/// A signed checkpoint as read back: its body's fields and the note's exact bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct SignedCheckpoint {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
    pub note: Vec<u8>,
}

/// Creates a new Ed25519 note key named `name`, the private half in `path`
/// (mode 0600, never overwritten). Returns the verifier key string.
pub fn create_key(path: &Path, name: &str) -> Result<String, NoteError> {
    if !signed_note::is_key_name_valid(name) {
        return Err(NoteError::BadName {
            name: name.to_owned(),
        });
    }
    let (skey, vkey) = signed_note::generate_key(&mut rand_core::OsRng, name);
    if let Some(dir) = path.parent() {
        crate::private_fs::create_dir_all(dir).map_err(|source| NoteError::KeyIo {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|source| match source.kind() {
            std::io::ErrorKind::AlreadyExists => NoteError::KeyExists {
                path: path.to_path_buf(),
            },
            _ => NoteError::KeyIo {
                path: path.to_path_buf(),
                source,
            },
        })?;
    f.write_all(skey.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|source| NoteError::KeyIo {
            path: path.to_path_buf(),
            source,
        })?;
    Ok(vkey)
}

/// Loads a signing key, refusing a file that anyone but its owner can read.
pub fn load_signer(path: &Path) -> Result<StandardSigner, NoteError> {
    let io = |source| NoteError::KeyIo {
        path: path.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(io)?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(NoteError::KeyPermissions {
            path: path.to_path_buf(),
            mode,
        });
    }
    let text = std::fs::read_to_string(path).map_err(io)?;
    StandardSigner::new(text.trim()).map_err(|_| NoteError::BadKey {
        path: path.to_path_buf(),
    })
}

/// A signing key as loaded from its file: the signer, the verifier key it
/// answers to, and a MAC key derived from it (for what the ledger writes
/// before it can sign, so that only the key holder's own lines are trusted).
#[derive(Clone)]
pub struct LoadedKey {
    pub signer: StandardSigner,
    pub vkey: String,
    pub mac_key: [u8; 32],
}

impl std::fmt::Debug for LoadedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedKey")
            .field("vkey", &self.vkey)
            .finish_non_exhaustive()
    }
}

/// Domain separation for the MAC key derived from a signing key.
const MAC_KEY_LABEL: &[u8] = b"custody ledger tail MAC key v1\0";

/// Loads a signing key (see [`load_signer`]) with its verifier key and derived MAC key.
pub fn load_key(path: &Path) -> Result<LoadedKey, NoteError> {
    use base64::Engine as _;
    use sha2::Digest as _;
    let signer = load_signer(path)?;
    let bad = || NoteError::BadKey {
        path: path.to_path_buf(),
    };
    let text = std::fs::read_to_string(path).map_err(|source| NoteError::KeyIo {
        path: path.to_path_buf(),
        source,
    })?;
    // PRIVATE+KEY+<name>+<id>+<base64(0x01 || seed)>; load_signer has checked the form.
    let mut parts = text.trim().splitn(5, '+');
    let name = parts.nth(2).ok_or_else(bad)?;
    let raw = parts
        .nth(1)
        .and_then(|k| base64::engine::general_purpose::STANDARD.decode(k).ok())
        .ok_or_else(bad)?;
    let seed: [u8; 32] = raw
        .get(1..)
        .and_then(|s| s.try_into().ok())
        .ok_or_else(bad)?;
    let sk = ed25519_dalek::SigningKey::from_bytes(&seed);
    let vkey = signed_note::new_ed25519_verifier_key(name, &sk.verifying_key());
    let mut h = sha2::Sha256::new();
    h.update(MAC_KEY_LABEL);
    h.update(seed);
    Ok(LoadedKey {
        signer,
        vkey,
        mac_key: h.finalize().into(),
    })
}

pub fn verifier(vkey: &str) -> Result<StandardVerifier, NoteError> {
    StandardVerifier::new(vkey).map_err(|_| NoteError::BadVerifierKey {
        key: vkey.to_owned(),
    })
}

/// Signs the checkpoint body for `origin`, `size`, `root`.
pub fn sign_checkpoint(
    signer: &StandardSigner,
    origin: &str,
    size: u64,
    root: &Hash,
) -> Result<Vec<u8>, NoteError> {
    let body = Checkpoint::new(origin, size, *root, "")
        .map_err(|_| NoteError::Malformed)?
        .to_bytes();
    let mut note = Note::new(&body, &[]).map_err(|e| NoteError::BadSignature {
        reason: e.to_string(),
    })?;
    note.add_sigs(&[signer])
        .map_err(|e| NoteError::BadSignature {
            reason: e.to_string(),
        })?;
    Ok(note.to_bytes())
}

/// Verifies a checkpoint note's signature under `vkey` and parses its body.
pub fn open_checkpoint(
    note_bytes: &[u8],
    vkey: &str,
    origin: &str,
) -> Result<SignedCheckpoint, NoteError> {
    let note = Note::from_bytes(note_bytes).map_err(|e| NoteError::BadSignature {
        reason: e.to_string(),
    })?;
    let list = VerifierList::new(vec![Box::new(verifier(vkey)?)]);
    note.verify(&list).map_err(|e| NoteError::BadSignature {
        reason: e.to_string(),
    })?;
    let cp = Checkpoint::from_bytes(note.text()).map_err(|_| NoteError::Malformed)?;
    if cp.origin() != origin {
        return Err(NoteError::WrongOrigin {
            found: cp.origin().to_owned(),
            expected: origin.to_owned(),
        });
    }
    Ok(SignedCheckpoint {
        origin: cp.origin().to_owned(),
        size: cp.size(),
        root: *cp.hash(),
        note: note_bytes.to_vec(),
    })
}

/// The name part of a verifier key (`<name>+<id>+<key>`).
pub fn key_name(vkey: &str) -> &str {
    vkey.split('+').next().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::{Tree, leaf_hash};

    /// The shared copy, beside the repository, when `tests/fixtures` is absent.
    const TESSERA: &str = "../../../shared/vectors/tessera";
    const TESSERA_VKEY: &str =
        "example.com/log/testdata+33d7b496+AeHTu4Q3hEIMHNqc6fASMsq3rKNx280NI+oO5xCFkkSx";
    const WORDS: [&str; 15] = [
        "one", "two", "three", "four", "five", "six", "seven", "eit", "nain", "ten", "ileven",
        "twelf", "threeten", "fourten", "fivten",
    ];

    fn vectors() -> PathBuf {
        // The directory cargo runs the test from, not the one the binary
        // was built in: a shared target directory may hold a build from
        // another checkout of the same sources.
        let dir = std::env::var_os("CARGO_MANIFEST_DIR")
            .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
        let p = dir.join("../../tests/fixtures/tessera");
        if p.is_dir() { p } else { dir.join(TESSERA) }
    }

    #[test]
    fn tessera_checkpoints_verify_and_match_recomputed_roots() {
        let mut tree = Tree::new();
        for w in WORDS {
            tree.push_leaf_hash(leaf_hash(w.as_bytes())).expect("push");
        }
        for name in [
            "checkpoint.0",
            "checkpoint.1",
            "checkpoint.2",
            "checkpoint.15",
            "checkpoint",
        ] {
            let bytes = std::fs::read(vectors().join(name)).expect("vector");
            let cp = open_checkpoint(&bytes, TESSERA_VKEY, "example.com/log/testdata").expect(name);
            assert_eq!(cp.root, tree.root(cp.size).expect("root"), "{name}");
            // One flipped byte anywhere breaks it.
            for i in [0, bytes.len() / 2, bytes.len() - 3] {
                let mut bad = bytes.clone();
                bad[i] ^= 0x01;
                assert!(
                    open_checkpoint(&bad, TESSERA_VKEY, "example.com/log/testdata").is_err(),
                    "{name} byte {i}"
                );
            }
        }
    }

    #[test]
    fn sign_then_open_round_trips_and_refuses_other_keys() {
        let dir = tempfile::tempdir().expect("tmp");
        let vkey = create_key(&dir.path().join("k"), "custody.test/ledger").expect("key");
        let signer = load_signer(&dir.path().join("k")).expect("load");
        let root = leaf_hash(b"x");
        let note = sign_checkpoint(&signer, "custody.test/ledger", 1, &root).expect("sign");
        let text = String::from_utf8(note.clone()).expect("utf8");
        assert!(text.starts_with("custody.test/ledger\n1\n"), "{text}");
        let cp = open_checkpoint(&note, &vkey, "custody.test/ledger").expect("open");
        assert_eq!((cp.size, cp.root), (1, root));
        let other = create_key(&dir.path().join("k2"), "custody.test/ledger").expect("key");
        assert!(open_checkpoint(&note, &other, "custody.test/ledger").is_err());
        assert!(matches!(
            open_checkpoint(&note, &vkey, "elsewhere"),
            Err(NoteError::WrongOrigin { .. })
        ));
        assert!(matches!(
            create_key(&dir.path().join("k"), "custody.test/ledger"),
            Err(NoteError::KeyExists { .. })
        ));
    }

    #[test]
    fn a_key_readable_by_others_is_refused() {
        let dir = tempfile::tempdir().expect("tmp");
        let p = dir.path().join("k");
        create_key(&p, "custody.test/ledger").expect("key");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let Err(err) = load_signer(&p) else {
            panic!("a world-readable key must be refused")
        };
        assert!(
            matches!(err, NoteError::KeyPermissions { mode: 0o644, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("chmod 600"));
    }
}
