#![no_main]
//! Any bytes as each ledger format a verifier reads from outside (an entry
//! line, a tlog-proof, a signed checkpoint): every parser of the
//! `custody-ledger` crate must answer with a value or an error, never panic;
//! the fast positional reader never disagrees with the full parser; a parsed
//! proof checked against a parsed checkpoint only ever errs.

use custody_ledger::entry::Entry;
use custody_ledger::merkle::{leaf_hash, verify_consistency, verify_inclusion};
use custody_ledger::note::open_checkpoint;
use custody_ledger::proof::TlogProof;
use custody_ledger::{claimed_size, scan};
use libfuzzer_sys::fuzz_target;

/// The tessera test vectors' key (tests/fixtures/tessera).
const VKEY: &str = "example.com/log/testdata+33d7b496+AeHTu4Q3hEIMHNqc6fASMsq3rKNx280NI+oO5xCFkkSx";
const ORIGIN: &str = "example.com/log/testdata";

fuzz_target!(|data: &[u8]| {
    if let Ok(e) = Entry::parse(data) {
        // A canonical entry: the positional reader, when it answers, agrees.
        if let Ok(f) = scan::scan(data) {
            assert_eq!(f.case, e.case.as_ref().map(|c| c.as_str()));
            assert_eq!(f.prev, e.prev);
            assert_eq!(Some(e.time.as_str()), f.time);
        }
    } else {
        let _ = scan::scan(data);
    }
    let _ = claimed_size(data);
    let _ = open_checkpoint(data, VKEY, ORIGIN);
    if let Ok(p) = TlogProof::parse(data) {
        let leaf = leaf_hash(&p.checkpoint);
        let root = leaf_hash(data);
        let size = p.index.saturating_add(p.hashes.len() as u64);
        let _ = verify_inclusion(p.index, size, &leaf, &p.hashes, &root);
        let _ = verify_consistency(p.index, size, &p.hashes, &leaf, &root);
        let _ = open_checkpoint(&p.checkpoint, VKEY, ORIGIN);
    }
});
