//! The RFC 6962 / RFC 9162 Merkle tree over ledger entries.
//!
//! Building the tree and generating proofs use `tlog_tiles` (a port of Go's
//! sumdb `tlog`) over hashes held in memory in its stored-hash layout.
//! Verification is written out here from RFC 9162 §2.1.3.2 and §2.1.4.2 (and
//! the subtree procedures of the Merkle Tree Certificates draft) so that a
//! hostile proof can only ever produce an error, never a panic.

use sha2::{Digest as _, Sha256};
use tlog_tiles::tlog::{self, HashReader};

pub use tlog_tiles::tlog::Hash;

/// `SHA-256(0x00 || entry)`.
pub fn leaf_hash(entry: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(entry);
    Hash(h.finalize().into())
}

/// `SHA-256(0x01 || left || right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left.0);
    h.update(right.0);
    Hash(h.finalize().into())
}

/// SHA-256 of the empty string: the root of the empty tree.
pub fn empty_root() -> Hash {
    Hash(Sha256::digest(b"").into())
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProofError {
    #[error("leaf index {index} is not below tree size {size}")]
    IndexOutOfRange { index: u64, size: u64 },
    #[error("proof has {got} hashes where {want} are needed")]
    WrongLength { got: usize, want: usize },
    #[error("tree sizes {size1} and {size2} cannot be proven consistent")]
    BadSizes { size1: u64, size2: u64 },
    #[error("[{start}, {end}) is not a valid subtree of a tree of size {size}")]
    BadSubtree { start: u64, end: u64, size: u64 },
    #[error("the proof does not lead to the expected root")]
    RootMismatch,
    #[error("cannot build the proof: {0}")]
    Build(String),
}

/// A Merkle tree of the ledger's entries, hashes in memory.
#[derive(Debug, Default, Clone)]
pub struct Tree {
    /// Stored hashes in tlog's layout: every complete subtree's hash, in order of completion.
    hashes: Vec<Hash>,
    size: u64,
}

struct Reader<'a>(&'a [Hash]);

impl HashReader for Reader<'_> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog::Error> {
        indexes
            .iter()
            .map(|&i| {
                usize::try_from(i)
                    .ok()
                    .and_then(|i| self.0.get(i))
                    .copied()
                    .ok_or(tlog::Error::IndexesNotInTree)
            })
            .collect()
    }
}

impl Tree {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Adds a leaf by its leaf hash.
    pub fn push_leaf_hash(&mut self, leaf: Hash) -> Result<(), ProofError> {
        let new = tlog::stored_hashes_for_record_hash(self.size, leaf, &Reader(&self.hashes))
            .map_err(|e| ProofError::Build(e.to_string()))?;
        self.hashes.extend(new);
        self.size += 1;
        Ok(())
    }

    /// Hash of leaf `index`.
    pub fn leaf(&self, index: u64) -> Result<Hash, ProofError> {
        if index >= self.size {
            return Err(ProofError::IndexOutOfRange {
                index,
                size: self.size,
            });
        }
        Reader(&self.hashes)
            .read_hashes(&[tlog::stored_hash_index(0, index)])
            .ok()
            .and_then(|v| v.first().copied())
            .ok_or(ProofError::Build("leaf not stored".into()))
    }

    /// Root of the first `size` leaves.
    pub fn root(&self, size: u64) -> Result<Hash, ProofError> {
        if size > self.size {
            return Err(ProofError::BadSizes {
                size1: size,
                size2: self.size,
            });
        }
        if size == 0 {
            return Ok(empty_root());
        }
        tlog::tree_hash(size, &Reader(&self.hashes)).map_err(|e| ProofError::Build(e.to_string()))
    }

    /// Inclusion proof of leaf `index` in the tree of the first `size` leaves.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, ProofError> {
        if index >= size || size > self.size {
            return Err(ProofError::IndexOutOfRange {
                index,
                size: size.min(self.size),
            });
        }
        tlog::prove_record(size, index, &Reader(&self.hashes))
            .map_err(|e| ProofError::Build(e.to_string()))
    }

    /// Consistency proof from the tree of size `size1` to the tree of size `size2`.
    pub fn consistency_proof(&self, size1: u64, size2: u64) -> Result<Vec<Hash>, ProofError> {
        if size1 == 0 || size1 > size2 || size2 > self.size {
            return Err(ProofError::BadSizes { size1, size2 });
        }
        if size1 == size2 {
            return Ok(Vec::new());
        }
        tlog::prove_tree(size2, size1, &Reader(&self.hashes))
            .map_err(|e| ProofError::Build(e.to_string()))
    }
}

/// The roots of the perfect subtrees that make up a tree, left to right:
/// enough to append a leaf and to compute the root, in constant memory per level.
#[derive(Debug, Default, Clone)]
pub struct CompactRange {
    size: u64,
    stack: Vec<Hash>,
}

impl CompactRange {
    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn push(&mut self, leaf: Hash) {
        let mut h = leaf;
        let mut s = self.size;
        // Each trailing one bit of the old size is a subtree the new leaf completes.
        while s & 1 == 1 {
            match self.stack.pop() {
                Some(left) => h = node_hash(&left, &h),
                None => break,
            }
            s >>= 1;
        }
        self.stack.push(h);
        self.size += 1;
    }

    /// RFC 6962 root of the leaves pushed so far.
    pub fn root(&self) -> Hash {
        let mut it = self.stack.iter().rev();
        let Some(first) = it.next() else {
            return empty_root();
        };
        it.fold(*first, |right, left| node_hash(left, &right))
    }
}

/// The walk RFC 9162 shares between inclusion (§2.1.3.2) and consistency
/// (§2.1.4.2) verification: from node `f` of a tree whose last node is `s`,
/// fold `hashes` into `seed` up to the root. Returns the root of the tree that
/// ends at `f` (only left-hand siblings folded in) and the root of the whole
/// tree. `proof_len` is the whole proof's length, for the error.
fn fold_path(
    mut f: u64,
    mut s: u64,
    seed: Hash,
    hashes: &[Hash],
    proof_len: usize,
) -> Result<(Hash, Hash), ProofError> {
    let (mut fr, mut sr) = (seed, seed);
    for c in hashes {
        if s == 0 {
            return Err(ProofError::WrongLength {
                got: proof_len,
                want: proof_len - 1,
            });
        }
        if f & 1 == 1 || f == s {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            // Climb past the levels where this node is a lone right-border child.
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        f >>= 1;
        s >>= 1;
    }
    if s != 0 {
        return Err(ProofError::WrongLength {
            got: proof_len,
            want: proof_len + 1,
        });
    }
    Ok((fr, sr))
}

/// Verifies that `leaf` is leaf `index` of the tree of `size` leaves with root `root` (RFC 9162 §2.1.3.2).
pub fn verify_inclusion(
    index: u64,
    size: u64,
    leaf: &Hash,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let (_, r) = fold_path(index, size - 1, *leaf, proof, proof.len())?;
    if r != *root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// Verifies that the tree of `size2` leaves with `root2` extends the tree of
/// `size1` leaves with `root1` (RFC 9162 §2.1.4.2).
pub fn verify_consistency(
    size1: u64,
    size2: u64,
    proof: &[Hash],
    root1: &Hash,
    root2: &Hash,
) -> Result<(), ProofError> {
    if size1 > size2 || size1 == 0 {
        return Err(ProofError::BadSizes { size1, size2 });
    }
    if size1 == size2 {
        if !proof.is_empty() {
            return Err(ProofError::WrongLength {
                got: proof.len(),
                want: 0,
            });
        }
        return if root1 == root2 {
            Ok(())
        } else {
            Err(ProofError::RootMismatch)
        };
    }
    let Some((first, rest)) = proof.split_first() else {
        return Err(ProofError::WrongLength { got: 0, want: 1 });
    };
    // When size1 is a power of two, the old root is itself the starting node.
    let (seed, rest) = if size1.is_power_of_two() {
        (root1, proof)
    } else {
        (first, rest)
    };
    let (mut f, mut s) = (size1 - 1, size2 - 1);
    while f & 1 == 1 {
        f >>= 1;
        s >>= 1;
    }
    let (fr, sr) = fold_path(f, s, *seed, rest, proof.len())?;
    if fr != *root1 || sr != *root2 {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// `[start, end)` is a subtree: non-empty, and `start` is a multiple of the
/// smallest power of two at least `end - start`.
pub fn is_valid_subtree(start: u64, end: u64) -> bool {
    if start >= end {
        return false;
    }
    let width = (end - start).checked_next_power_of_two().unwrap_or(0);
    width != 0 && start.is_multiple_of(width)
}

/// Verifies that `leaf` is entry `index` of the subtree `[start, end)` whose hash is `subtree_root`.
pub fn verify_subtree_inclusion(
    index: u64,
    start: u64,
    end: u64,
    leaf: &Hash,
    proof: &[Hash],
    subtree_root: &Hash,
) -> Result<(), ProofError> {
    if !is_valid_subtree(start, end) {
        return Err(ProofError::BadSubtree {
            start,
            end,
            size: end,
        });
    }
    if index < start || index >= end {
        return Err(ProofError::IndexOutOfRange { index, size: end });
    }
    // A valid subtree is the Merkle tree of its own entries.
    verify_inclusion(index - start, end - start, leaf, proof, subtree_root)
}

/// Verifies that the subtree `[start, end)` with hash `subtree_root` sits at
/// those positions in the tree of `size` leaves with `root`.
pub fn verify_subtree_consistency(
    start: u64,
    end: u64,
    size: u64,
    proof: &[Hash],
    subtree_root: &Hash,
    root: &Hash,
) -> Result<(), ProofError> {
    if start == end && end <= size {
        // An empty subtree is consistent with any tree: it hashes to the empty root and needs no proof.
        if !proof.is_empty() {
            return Err(ProofError::WrongLength {
                got: proof.len(),
                want: 0,
            });
        }
        return if *subtree_root == empty_root() {
            Ok(())
        } else {
            Err(ProofError::RootMismatch)
        };
    }
    if !is_valid_subtree(start, end) || end > size {
        return Err(ProofError::BadSubtree { start, end, size });
    }
    let (mut f, mut s, mut t) = (start, end - 1, size - 1);
    let up = |f: &mut u64, s: &mut u64, t: &mut u64| {
        *f >>= 1;
        *s >>= 1;
        *t >>= 1;
    };
    if s == t {
        // The subtree ends on the tree's right edge: no sibling to fold before its own node.
        while f != s {
            up(&mut f, &mut s, &mut t);
        }
    } else {
        while f != s && s & 1 == 1 {
            up(&mut f, &mut s, &mut t);
        }
    }
    let (seed, rest) = if f == s {
        (subtree_root, proof)
    } else {
        match proof.split_first() {
            Some((first, rest)) => (first, rest),
            None => return Err(ProofError::WrongLength { got: 0, want: 1 }),
        }
    };
    let (mut fr, mut sr) = (*seed, *seed);
    for c in rest {
        if t == 0 {
            return Err(ProofError::WrongLength {
                got: proof.len(),
                want: proof.len() - 1,
            });
        }
        if s & 1 == 1 || s == t {
            if f < s {
                fr = node_hash(c, &fr);
            }
            sr = node_hash(c, &sr);
            while s & 1 == 0 && s != 0 {
                up(&mut f, &mut s, &mut t);
            }
        } else {
            sr = node_hash(&sr, c);
        }
        up(&mut f, &mut s, &mut t);
    }
    if t != 0 {
        return Err(ProofError::WrongLength {
            got: proof.len(),
            want: proof.len() + 1,
        });
    }
    if fr != *subtree_root || sr != *root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree_of(n: u64) -> (Tree, Vec<Hash>) {
        let mut t = Tree::new();
        let mut leaves = Vec::new();
        for i in 0..n {
            let l = leaf_hash(format!("entry {i}").as_bytes());
            t.push_leaf_hash(l).expect("push");
            leaves.push(l);
        }
        (t, leaves)
    }

    /// The RFC's recursive definition, as an independent reference.
    fn mth(leaves: &[Hash]) -> Hash {
        match leaves.len() {
            0 => empty_root(),
            1 => leaves[0],
            n => {
                let k = (n as u64).next_power_of_two() as usize / 2;
                let k = if k == n { n / 2 } else { k };
                node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
            }
        }
    }

    #[test]
    fn generated_proofs_verify_and_roots_match_the_definition() {
        let (t, leaves) = tree_of(37);
        for size in 1..=37u64 {
            let root = t.root(size).expect("root");
            assert_eq!(root, mth(&leaves[..size as usize]), "size {size}");
            for index in 0..size {
                let p = t.inclusion_proof(index, size).expect("proof");
                verify_inclusion(index, size, &leaves[index as usize], &p, &root)
                    .expect("verifies");
            }
            for old in 1..=size {
                let p = t.consistency_proof(old, size).expect("proof");
                verify_consistency(old, size, &p, &t.root(old).expect("root"), &root)
                    .expect("consistent");
            }
        }
    }

    #[test]
    fn compact_range_roots_match_the_tree() {
        let (t, leaves) = tree_of(70);
        let mut r = CompactRange::default();
        assert_eq!(r.root(), empty_root());
        for (i, l) in leaves.iter().enumerate() {
            r.push(*l);
            assert_eq!(
                r.root(),
                t.root(i as u64 + 1).expect("root"),
                "size {}",
                i + 1
            );
        }
    }

    #[test]
    fn tampered_proofs_fail() {
        let (t, leaves) = tree_of(11);
        let root = t.root(11).expect("root");
        let mut p = t.inclusion_proof(3, 11).expect("proof");
        p[1].0[0] ^= 1;
        assert!(verify_inclusion(3, 11, &leaves[3], &p, &root).is_err());
        let p = t.inclusion_proof(3, 11).expect("proof");
        assert!(verify_inclusion(4, 11, &leaves[3], &p, &root).is_err());
        assert!(verify_inclusion(3, 11, &leaves[3], &p[..p.len() - 1], &root).is_err());
        let mut longer = p.clone();
        longer.push(root);
        assert!(verify_inclusion(3, 11, &leaves[3], &longer, &root).is_err());
    }
}
