//! RFC 6962 / RFC 9162 Merkle trees: hashing, trees (built with `rs_merkle`),
//! inclusion and consistency proofs, and **strict verifiers of our own**.
//!
//! `rs_merkle` builds the tree through [`Rfc6962Hasher`] (domain-separated node
//! hashes, a lone node promoted unchanged), which makes its roots and single-leaf
//! proofs equal to RFC 6962's. Its own `MerkleProof::verify` is never used: it
//! accepts appended junk, wrong tree sizes and duplicate indices. The verifiers
//! here follow RFC 9162 §2.1.3.2 and §2.1.4.2 and refuse any path that is not
//! consumed exactly.

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use thiserror::Error;

use crate::hash::Hash;

/// `SHA-256(0x00 ‖ data)`: the hash of a leaf.
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(data);
    Hash(h.finalize().into())
}

/// `SHA-256(0x01 ‖ left ‖ right)`: the hash of an interior node.
pub fn node_hash(left: &[u8; 32], right: &[u8; 32]) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    Hash(h.finalize().into())
}

/// The root of the empty tree, `SHA-256("")`.
pub fn empty_root() -> Hash {
    crate::hash::sha256(b"")
}

/// The `rs_merkle` hasher for RFC 6962 trees. Leaves are handed to `rs_merkle`
/// already hashed with [`leaf_hash`]; `hash` is that leaf hash for raw data.
#[derive(Clone, Copy, Debug)]
pub struct Rfc6962Hasher;

impl rs_merkle::Hasher for Rfc6962Hasher {
    type Hash = [u8; 32];
    fn hash(data: &[u8]) -> [u8; 32] {
        leaf_hash(data).0
    }
    fn concat_and_hash(left: &[u8; 32], right: Option<&[u8; 32]>) -> [u8; 32] {
        match right {
            Some(r) => node_hash(left, r).0,
            // A lone node is promoted unchanged (RFC 6962 splits at the largest power of two).
            None => *left,
        }
    }
}

/// Why a Merkle proof was refused. Every variant says what was expected and found.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MerkleError {
    /// A digest of the wrong length.
    #[error("{what} must be 32 bytes, found {found}")]
    HashLength {
        /// Which digest.
        what: &'static str,
        /// Its length.
        found: usize,
    },
    /// No leaf can be included in an empty tree.
    #[error("tree size is 0: nothing can be included")]
    EmptyTree,
    /// The leaf index is not below the tree size.
    #[error("leaf index {index} is not below tree size {size}")]
    IndexOutOfRange {
        /// Claimed index.
        index: u64,
        /// Claimed size.
        size: u64,
    },
    /// The path has the wrong number of hashes for this index and size.
    #[error("proof path has {found} hashes; index and size require exactly {expected}")]
    PathLength {
        /// Hashes required.
        expected: usize,
        /// Hashes given.
        found: usize,
    },
    /// The recomputed root differs from the trusted root.
    #[error("recomputed root {computed} differs from expected root {expected}")]
    RootMismatch {
        /// The trusted root.
        expected: String,
        /// What the proof gives.
        computed: String,
    },
    /// Consistency: the first size is larger than the second.
    #[error("first tree size {size1} exceeds second tree size {size2}")]
    SizeOrder {
        /// First size.
        size1: u64,
        /// Second size.
        size2: u64,
    },
    /// Consistency from the empty tree proves nothing and is refused.
    #[error("consistency from an empty tree proves nothing")]
    FromEmpty,
    /// Consistency between equal sizes: the roots must be equal and the path empty.
    #[error("equal tree sizes need equal roots and an empty proof")]
    EqualSizes,
}

/// A proof that one leaf is in a tree of a given size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InclusionProof {
    /// Index of the leaf (0-based).
    pub index: u64,
    /// Number of leaves in the tree.
    pub size: u64,
    /// Sibling hashes from the leaf upwards.
    pub path: Vec<Hash>,
}

/// A proof that a tree of `size1` leaves is a prefix of one of `size2` leaves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsistencyProof {
    /// Older size.
    pub size1: u64,
    /// Newer size.
    pub size2: u64,
    /// RFC 9162 consistency path.
    pub path: Vec<Hash>,
}

/// The number of hashes an inclusion path for `index` in a tree of `size` has.
pub fn inclusion_path_len(index: u64, size: u64) -> usize {
    let (mut f, mut s, mut n) = (index, size.saturating_sub(1), 0usize);
    while s > 0 {
        if f & 1 == 1 || f < s {
            n += 1;
        }
        f >>= 1;
        s >>= 1;
    }
    n
}

fn as_hash(what: &'static str, b: &[u8]) -> Result<[u8; 32], MerkleError> {
    b.try_into().map_err(|_| MerkleError::HashLength {
        what,
        found: b.len(),
    })
}

/// Recomputes the root from a leaf hash and an inclusion proof (RFC 9162 §2.1.3.2),
/// refusing any index, size or path length that does not fit exactly.
pub fn root_from_inclusion(
    leaf: &[u8],
    index: u64,
    size: u64,
    path: &[Hash],
) -> Result<Hash, MerkleError> {
    let leaf = as_hash("leaf hash", leaf)?;
    if size == 0 {
        return Err(MerkleError::EmptyTree);
    }
    if index >= size {
        return Err(MerkleError::IndexOutOfRange { index, size });
    }
    let expected = inclusion_path_len(index, size);
    if path.len() != expected {
        return Err(MerkleError::PathLength {
            expected,
            found: path.len(),
        });
    }
    let (mut fnode, mut snode) = (index, size - 1);
    let mut r = leaf;
    for p in path {
        // Cannot trigger: the length check above guarantees sn > 0 here.
        debug_assert!(snode > 0);
        if fnode & 1 == 1 || fnode == snode {
            r = node_hash(&p.0, &r).0;
            if fnode & 1 == 0 {
                while fnode & 1 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            }
        } else {
            r = node_hash(&r, &p.0).0;
        }
        fnode >>= 1;
        snode >>= 1;
    }
    debug_assert_eq!(snode, 0);
    Ok(Hash(r))
}

/// Verifies that `leaf` (a leaf hash) is at `proof.index` in the tree with root `root`.
pub fn verify_inclusion(
    leaf: &[u8],
    proof: &InclusionProof,
    root: &[u8],
) -> Result<(), MerkleError> {
    let root = as_hash("root", root)?;
    let computed = root_from_inclusion(leaf, proof.index, proof.size, &proof.path)?;
    if computed.0 != root {
        return Err(MerkleError::RootMismatch {
            expected: hex::encode(root),
            computed: computed.to_hex(),
        });
    }
    Ok(())
}

/// Verifies a consistency proof (RFC 9162 §2.1.4.2) between `root1` of `size1`
/// leaves and `root2` of `size2` leaves.
///
/// Equal sizes need equal roots and an empty path. A proof from the empty tree is
/// refused: it proves nothing, and accepting it would let any root pass.
pub fn verify_consistency(
    size1: u64,
    size2: u64,
    root1: &[u8],
    root2: &[u8],
    path: &[Hash],
) -> Result<(), MerkleError> {
    if size1 > size2 {
        return Err(MerkleError::SizeOrder { size1, size2 });
    }
    if size1 == 0 {
        return Err(MerkleError::FromEmpty);
    }
    if size1 == size2 {
        if root1 != root2 || !path.is_empty() {
            return Err(MerkleError::EqualSizes);
        }
        return Ok(());
    }
    let root1 = as_hash("first root", root1)?;
    let root2 = as_hash("second root", root2)?;
    let expected = consistency_path_len(size1, size2);
    if path.len() != expected {
        return Err(MerkleError::PathLength {
            expected,
            found: path.len(),
        });
    }
    // If size1 is a power of two, its root is the first element of the walk.
    let mut hashes: Vec<[u8; 32]> = Vec::with_capacity(path.len() + 1);
    if size1.is_power_of_two() {
        hashes.push(root1);
    }
    hashes.extend(path.iter().map(|h| h.0));
    let (mut fnode, mut snode) = (size1 - 1, size2 - 1);
    while fnode & 1 == 1 {
        fnode >>= 1;
        snode >>= 1;
    }
    let mut fr = hashes[0];
    let mut sr = hashes[0];
    for c in &hashes[1..] {
        if snode == 0 {
            return Err(MerkleError::PathLength {
                expected,
                found: path.len(),
            });
        }
        if fnode & 1 == 1 || fnode == snode {
            fr = node_hash(c, &fr).0;
            sr = node_hash(c, &sr).0;
            if fnode & 1 == 0 {
                while fnode & 1 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c).0;
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 {
        return Err(MerkleError::PathLength {
            expected,
            found: path.len(),
        });
    }
    if fr != root1 {
        return Err(MerkleError::RootMismatch {
            expected: hex::encode(root1),
            computed: hex::encode(fr),
        });
    }
    if sr != root2 {
        return Err(MerkleError::RootMismatch {
            expected: hex::encode(root2),
            computed: hex::encode(sr),
        });
    }
    Ok(())
}

/// The number of hashes in a consistency proof from `size1` to `size2` (0 < size1 < size2).
pub fn consistency_path_len(size1: u64, size2: u64) -> usize {
    // Count the SUBPROOF recursion of RFC 9162 §2.1.4.1 without hashing.
    fn sub(m: u64, n: u64, whole: bool) -> usize {
        if m == n {
            return usize::from(!whole);
        }
        let k = largest_pow2_below(n);
        if m <= k {
            sub(m, k, whole) + 1
        } else {
            sub(m - k, n - k, false) + 1
        }
    }
    if size1 == 0 || size1 >= size2 {
        0
    } else {
        sub(size1, size2, true)
    }
}

fn largest_pow2_below(n: u64) -> u64 {
    debug_assert!(n > 1);
    1u64 << (63 - (n - 1).leading_zeros())
}

/// The RFC 6962 root of a list of leaf hashes, by the RFC's own recursion
/// (used to cross-check `rs_merkle` and to build proofs for huge trees).
pub fn root_of(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => empty_root(),
        1 => leaves[0],
        n => {
            let k = largest_pow2_below(n as u64) as usize;
            node_hash(&root_of(&leaves[..k]).0, &root_of(&leaves[k..]).0)
        }
    }
}

/// The inclusion path for `index` by the RFC's recursion; `None` if out of range.
pub fn inclusion_path(leaves: &[Hash], index: usize) -> Option<Vec<Hash>> {
    fn path(leaves: &[Hash], m: usize, out: &mut Vec<Hash>) {
        let n = leaves.len();
        if n <= 1 {
            return;
        }
        let k = largest_pow2_below(n as u64) as usize;
        if m < k {
            path(&leaves[..k], m, out);
            out.push(root_of(&leaves[k..]));
        } else {
            path(&leaves[k..], m - k, out);
            out.push(root_of(&leaves[..k]));
        }
    }
    if index >= leaves.len() {
        return None;
    }
    let mut out = Vec::new();
    path(leaves, index, &mut out);
    Some(out)
}

/// The consistency proof from the first `size1` leaves to all of `leaves`
/// (RFC 9162 §2.1.4.1); `None` unless `0 < size1 <= leaves.len()`.
pub fn consistency_proof(leaves: &[Hash], size1: usize) -> Option<ConsistencyProof> {
    fn sub(m: usize, leaves: &[Hash], whole: bool, out: &mut Vec<Hash>) {
        let n = leaves.len();
        if m == n {
            if !whole {
                out.push(root_of(leaves));
            }
            return;
        }
        let k = largest_pow2_below(n as u64) as usize;
        if m <= k {
            sub(m, &leaves[..k], whole, out);
            out.push(root_of(&leaves[k..]));
        } else {
            sub(m - k, &leaves[k..], false, out);
            out.push(root_of(&leaves[..k]));
        }
    }
    if size1 == 0 || size1 > leaves.len() {
        return None;
    }
    let mut path = Vec::new();
    if size1 < leaves.len() {
        sub(size1, leaves, true, &mut path);
    }
    Some(ConsistencyProof {
        size1: size1 as u64,
        size2: leaves.len() as u64,
        path,
    })
}

/// Every level of the tree, leaves first, as one flat byte string of 32-byte
/// hashes: level 0 is the leaves; each next level pairs neighbours with
/// [`node_hash`] and promotes a lone last node unchanged (as `rs_merkle` and
/// RFC 6962 do). Storing it lets a server answer any inclusion proof without
/// rehashing; [`proof_from_levels`] reads a proof back.
pub fn flat_levels(leaves: &[Hash]) -> Vec<u8> {
    let mut out = Vec::with_capacity(leaves.len() * 64 + 32);
    let mut level: Vec<[u8; 32]> = leaves.iter().map(|h| h.0).collect();
    loop {
        for h in &level {
            out.extend_from_slice(h);
        }
        if level.len() <= 1 {
            return out;
        }
        level = level
            .chunks(2)
            .map(|c| {
                if c.len() == 2 {
                    node_hash(&c[0], &c[1]).0
                } else {
                    c[0]
                }
            })
            .collect();
    }
}

/// Reads the inclusion proof of leaf `index` from [`flat_levels`] of a tree of
/// `size` leaves; `None` if out of range or if `flat` is too short.
pub fn proof_from_levels(flat: &[u8], size: u64, index: u64) -> Option<InclusionProof> {
    if index >= size {
        return None;
    }
    let mut path = Vec::new();
    let (mut offset, mut len, mut i) = (
        0usize,
        usize::try_from(size).ok()?,
        usize::try_from(index).ok()?,
    );
    while len > 1 {
        let sibling = if i % 2 == 1 {
            Some(i - 1)
        } else if i + 1 < len {
            Some(i + 1)
        } else {
            None
        };
        if let Some(j) = sibling {
            let at = (offset + j) * 32;
            let mut h = [0u8; 32];
            h.copy_from_slice(flat.get(at..at + 32)?);
            path.push(Hash(h));
        }
        offset += len;
        len = len.div_ceil(2);
        i /= 2;
    }
    Some(InclusionProof { index, size, path })
}

/// The root stored at the top of [`flat_levels`] (the empty root for no leaves).
pub fn root_from_levels(flat: &[u8]) -> Option<Hash> {
    if flat.is_empty() {
        return Some(empty_root());
    }
    let at = flat.len().checked_sub(32)?;
    let mut h = [0u8; 32];
    h.copy_from_slice(&flat[at..]);
    Some(Hash(h))
}

/// A Merkle tree over leaf hashes, built by `rs_merkle` with [`Rfc6962Hasher`].
#[derive(Clone)]
pub struct MerkleTree {
    tree: rs_merkle::MerkleTree<Rfc6962Hasher>,
    len: usize,
}

impl core::fmt::Debug for MerkleTree {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "MerkleTree({} leaves, root {})", self.len, self.root())
    }
}

impl MerkleTree {
    /// Builds the tree from leaf hashes (see [`leaf_hash`]).
    pub fn from_leaf_hashes(leaves: &[Hash]) -> Self {
        // `Hash` is a transparent wrapper in spirit; copy into plain arrays for rs_merkle.
        let raw: Vec<[u8; 32]> = leaves.iter().map(|h| h.0).collect();
        MerkleTree {
            tree: rs_merkle::MerkleTree::from_leaves(&raw),
            len: leaves.len(),
        }
    }
    /// Builds the tree from leaf data, hashing each with [`leaf_hash`].
    pub fn from_data<D: AsRef<[u8]>>(data: &[D]) -> Self {
        let leaves: Vec<Hash> = data.iter().map(|d| leaf_hash(d.as_ref())).collect();
        Self::from_leaf_hashes(&leaves)
    }
    /// Number of leaves.
    pub fn len(&self) -> usize {
        self.len
    }
    /// True for the empty tree.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// The root; the RFC's `SHA-256("")` for the empty tree.
    pub fn root(&self) -> Hash {
        self.tree.root().map(Hash).unwrap_or_else(empty_root)
    }
    /// The inclusion proof for one leaf, or `None` if `index` is out of range.
    pub fn inclusion_proof(&self, index: usize) -> Option<InclusionProof> {
        if index >= self.len {
            return None;
        }
        let path = self
            .tree
            .proof(&[index])
            .proof_hashes()
            .iter()
            .map(|h| Hash(*h))
            .collect();
        Some(InclusionProof {
            index: index as u64,
            size: self.len as u64,
            path,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn leaves(n: usize) -> Vec<Hash> {
        (0..n)
            .map(|i| leaf_hash(&(i as u64).to_be_bytes()))
            .collect()
    }

    #[test]
    fn rs_merkle_agrees_with_the_rfc_recursion() {
        for n in 0..70 {
            let l = leaves(n);
            let t = MerkleTree::from_leaf_hashes(&l);
            assert_eq!(t.root(), root_of(&l), "root, n={n}");
            for i in 0..n {
                let p = t.inclusion_proof(i).unwrap();
                assert_eq!(p.path, inclusion_path(&l, i).unwrap(), "path n={n} i={i}");
                assert_eq!(p.path.len(), inclusion_path_len(i as u64, n as u64));
                verify_inclusion(&l[i].0, &p, &t.root().0).unwrap();
            }
            assert!(t.inclusion_proof(n).is_none());
        }
    }

    #[test]
    fn flat_levels_give_rs_merkle_proofs_and_roots() {
        for n in 0..80 {
            let l = leaves(n);
            let t = MerkleTree::from_leaf_hashes(&l);
            let flat = flat_levels(&l);
            assert_eq!(root_from_levels(&flat), Some(t.root()), "n={n}");
            for i in 0..n {
                assert_eq!(
                    proof_from_levels(&flat, n as u64, i as u64),
                    t.inclusion_proof(i),
                    "n={n} i={i}"
                );
            }
            assert!(proof_from_levels(&flat, n as u64, n as u64).is_none());
        }
    }

    #[test]
    fn consistency_round_trip_small() {
        for n in 1..40 {
            let l = leaves(n);
            let r2 = root_of(&l);
            for m in 1..=n {
                let p = consistency_proof(&l, m).unwrap();
                assert_eq!(
                    p.path.len(),
                    consistency_path_len(m as u64, n as u64),
                    "m={m} n={n}"
                );
                verify_consistency(m as u64, n as u64, &root_of(&l[..m]).0, &r2.0, &p.path)
                    .unwrap();
            }
        }
    }

    #[test]
    fn specific_refusals() {
        let l = leaves(5);
        let t = MerkleTree::from_leaf_hashes(&l);
        let mut p = t.inclusion_proof(2).unwrap();
        let root = t.root();
        p.path.push(Hash([0; 32]));
        assert!(matches!(
            verify_inclusion(&l[2].0, &p, &root.0),
            Err(MerkleError::PathLength { .. })
        ));
        p.path.pop();
        p.index = 5;
        assert_eq!(
            verify_inclusion(&l[2].0, &p, &root.0),
            Err(MerkleError::IndexOutOfRange { index: 5, size: 5 })
        );
        p.size = 0;
        assert_eq!(
            verify_inclusion(&l[2].0, &p, &root.0),
            Err(MerkleError::EmptyTree)
        );
        assert!(matches!(
            verify_inclusion(&l[2].0[..31], &p, &root.0),
            Err(MerkleError::HashLength { .. })
        ));
    }

    proptest! {
        #[test]
        // The tree size is not mutated here: a proof's size is only meaningful against a
        // root certified for that size, which the bundle verifier checks (header tx count).
        fn any_mutation_of_an_inclusion_proof_fails(n in 1usize..200, i in 0usize..200, which in 0usize..64, bit in 0u8..8, field in 0u8..3) {
            let i = i % n;
            let l = leaves(n);
            let t = MerkleTree::from_leaf_hashes(&l);
            let root = t.root();
            let mut p = t.inclusion_proof(i).unwrap();
            let mut leaf = l[i];
            match field {
                0 => { if p.path.is_empty() { leaf.0[which % 32] ^= 1 << bit } else { let k = which % p.path.len(); p.path[k].0[which % 32] ^= 1 << bit } }
                1 => p.index ^= 1 << (bit % 8),
                _ => leaf.0[which % 32] ^= 1 << bit,
            }
            prop_assert!(verify_inclusion(&leaf.0, &p, &root.0).is_err());
        }

        #[test]
        fn any_mutation_of_a_consistency_proof_fails(n in 2usize..120, m in 1usize..120, which in 0usize..64, bit in 0u8..8) {
            let m = 1 + (m - 1) % (n - 1);
            let l = leaves(n);
            let r1 = root_of(&l[..m]);
            let r2 = root_of(&l);
            let mut p = consistency_proof(&l, m).unwrap();
            prop_assert!(verify_consistency(m as u64, n as u64, &r1.0, &r2.0, &p.path).is_ok());
            let k = which % p.path.len();
            p.path[k].0[which % 32] ^= 1 << bit;
            prop_assert!(verify_consistency(m as u64, n as u64, &r1.0, &r2.0, &p.path).is_err());
        }
    }
}
