//! The broker's transparency log: every event's canonical bytes as a leaf of
//! an RFC 6962 Merkle tree, and signed checkpoints in the C2SP signed-note
//! format (`c2sp.org/tlog-checkpoint`), so standard transparency-log tools
//! can read them.
//!
//! Hashing follows RFC 6962: leaf = SHA-256(0x00 ‖ data), node =
//! SHA-256(0x01 ‖ left ‖ right). The tree is stored as the "stored hashes" of
//! Russ Cox's tlog layout (tlog_tiles): appending leaf n writes the leaf hash
//! and the roots of the complete subtrees it completes, so appends touch
//! O(log n) hashes and proofs need no rebuild.

use std::cell::RefCell;

use scrip_proto::crypto::SigningKey;
use scrip_proto::{PublicKey, Timestamp};
use tlog_tiles::{Checkpoint, Hash, HashReader};

use crate::store::{BrokerTx, StoreError};

/// The checkpoint origin of a broker's log: names the log and the key that signs it.
pub fn origin(broker: &PublicKey) -> String {
    format!("scrip-log/{broker}")
}

/// Reads stored hashes through a broker transaction.
struct TxHashes<'a, T: BrokerTx>(RefCell<&'a mut T>);

impl<T: BrokerTx> HashReader for TxHashes<'_, T> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog_tiles::Error> {
        let hashes = self
            .0
            .borrow_mut()
            .log_hashes(indexes)
            .map_err(|_| tlog_tiles::Error::IndexesNotInTree)?;
        if hashes.len() != indexes.len() {
            return Err(tlog_tiles::Error::IndexesNotInTree);
        }
        Ok(hashes.into_iter().map(Hash).collect())
    }
}

/// An RFC 6962 tree held in memory: the tree of one batch of merchant
/// receipts, which the merchant signs once (see [`ReceiptBatch`]).
///
/// It keeps the hash of every complete subtree level by level, so a proof
/// is mostly look-ups; only subtrees along the right edge of a tree whose
/// size is not a power of two are hashed when asked for. (Built on
/// `tlog_tiles`' stored hashes it cost a vector per look-up: a tenth of a
/// merchant's work per sale.)
///
/// [`ReceiptBatch`]: scrip_proto::msg::ReceiptBatch
#[derive(Debug, Default)]
pub struct MemoryTree {
    /// `levels[0]` holds the leaf hashes; `levels[k + 1][i]` is the hash of
    /// the complete subtree over `levels[k][2 * i]` and `levels[k][2 * i + 1]`.
    /// Invariant: `levels[k + 1].len() == levels[k].len() / 2`.
    levels: Vec<Vec<[u8; 32]>>,
}

impl MemoryTree {
    /// Appends `data` as the next leaf.
    pub fn push(&mut self, data: &[u8]) {
        self.push_hash(record_hash(data));
    }

    /// Appends the leaf whose hash ([`record_hash`]) is `leaf_hash`.
    pub fn push_hash(&mut self, leaf_hash: [u8; 32]) {
        let mut hash = leaf_hash;
        let mut level = 0;
        loop {
            if self.levels.len() == level {
                self.levels.push(Vec::new());
            }
            let hashes = &mut self.levels[level];
            hashes.push(hash);
            if hashes.len() % 2 == 1 {
                return;
            }
            hash = node_hash(&hashes[hashes.len() - 2], &hash);
            level += 1;
        }
    }

    pub fn size(&self) -> u64 {
        self.levels.first().map_or(0, |leaves| leaves.len() as u64)
    }

    pub fn root(&self) -> [u8; 32] {
        match self.size() {
            0 => {
                tlog_tiles::tree_hash(0, self)
                    .expect("the empty tree needs no hash")
                    .0
            }
            size => self.subtree(0, size),
        }
    }

    /// The inclusion proof of leaf `leaf`, if the tree has it: RFC 6962's
    /// `PATH(leaf, D[size])`.
    pub fn prove(&self, leaf: u64) -> Option<Vec<[u8; 32]>> {
        let size = self.size();
        if leaf >= size {
            return None;
        }
        let mut proof = Vec::with_capacity(64 - size.leading_zeros() as usize);
        self.path(leaf, 0, size, &mut proof);
        Some(proof)
    }

    /// Appends `PATH(leaf, D[lo..hi])` to `proof`: the path below first.
    fn path(&self, leaf: u64, lo: u64, hi: u64, proof: &mut Vec<[u8; 32]>) {
        if hi - lo == 1 {
            return;
        }
        let split = lo + split_point(hi - lo);
        if leaf < split {
            self.path(leaf, lo, split, proof);
            proof.push(self.subtree(split, hi));
        } else {
            self.path(leaf, split, hi, proof);
            proof.push(self.subtree(lo, split));
        }
    }

    /// `MTH(D[lo..hi])`, `hi > lo`: stored if the range is a complete subtree.
    fn subtree(&self, lo: u64, hi: u64) -> [u8; 32] {
        let width = hi - lo;
        if width.is_power_of_two() {
            let level = width.trailing_zeros() as usize;
            return self.levels[level][(lo >> level) as usize];
        }
        let split = lo + split_point(width);
        node_hash(&self.subtree(lo, split), &self.subtree(split, hi))
    }
}

/// For `MemoryTree::root` of the empty tree, which `tlog_tiles` defines.
impl HashReader for MemoryTree {
    fn read_hashes(&self, _indexes: &[u64]) -> Result<Vec<Hash>, tlog_tiles::Error> {
        Err(tlog_tiles::Error::IndexesNotInTree)
    }
}

/// RFC 6962's split of `n > 1` leaves: the largest power of two below `n`.
fn split_point(n: u64) -> u64 {
    1 << (63 - (n - 1).leading_zeros())
}

fn node_hash(left: &[u8; 32], right: &[u8; 32]) -> [u8; 32] {
    tlog_tiles::node_hash(Hash(*left), Hash(*right)).0
}

/// The RFC 6962 hash of a leaf holding `data`.
pub fn record_hash(data: &[u8]) -> [u8; 32] {
    tlog_tiles::record_hash(data).0
}

/// Appends `data` as the next leaf; returns its index.
pub fn append(tx: &mut impl BrokerTx, data: &[u8]) -> Result<u64, StoreError> {
    let index = tx.log_size()?;
    let hashes = tlog_tiles::stored_hashes(index, data, &TxHashes(RefCell::new(tx)))
        .map_err(|e| StoreError(format!("audit log: {e}")))?;
    let first = tlog_tiles::stored_hash_index(0, index);
    let hashes: Vec<(u64, [u8; 32])> = hashes
        .into_iter()
        .enumerate()
        .map(|(i, h)| (first + i as u64, h.0))
        .collect();
    tx.append_log(index, data, &hashes)?;
    Ok(index)
}

/// The root hash of the first `size` leaves.
pub fn root(tx: &mut impl BrokerTx, size: u64) -> Result<[u8; 32], StoreError> {
    tlog_tiles::tree_hash(size, &TxHashes(RefCell::new(tx)))
        .map(|h| h.0)
        .map_err(|e| StoreError(format!("audit log: {e}")))
}

/// An inclusion proof of leaf `leaf` in the tree of `size` leaves.
pub fn prove_inclusion(
    tx: &mut impl BrokerTx,
    size: u64,
    leaf: u64,
) -> Result<Vec<[u8; 32]>, StoreError> {
    tlog_tiles::prove_record(size, leaf, &TxHashes(RefCell::new(tx)))
        .map(|p| p.into_iter().map(|h| h.0).collect())
        .map_err(|e| StoreError(format!("audit log: {e}")))
}

/// A consistency proof from the tree of `old` leaves to the tree of `new` leaves.
pub fn prove_consistency(
    tx: &mut impl BrokerTx,
    new: u64,
    old: u64,
) -> Result<Vec<[u8; 32]>, StoreError> {
    tlog_tiles::prove_tree(new, old, &TxHashes(RefCell::new(tx)))
        .map(|p| p.into_iter().map(|h| h.0).collect())
        .map_err(|e| StoreError(format!("audit log: {e}")))
}

/// True if `proof` shows leaf `leaf` with hash `leaf_hash` in the tree of `size` leaves with root `root`.
pub fn check_inclusion(
    proof: &[[u8; 32]],
    size: u64,
    root: [u8; 32],
    leaf: u64,
    leaf_hash: [u8; 32],
) -> bool {
    let proof: Vec<Hash> = proof.iter().copied().map(Hash).collect();
    tlog_tiles::check_record(&proof, size, Hash(root), leaf, Hash(leaf_hash)).is_ok()
}

/// True if `proof` shows the tree of `old` leaves (root `old_root`) is a prefix of the tree of `new` leaves (root `new_root`).
pub fn check_consistency(
    proof: &[[u8; 32]],
    new: u64,
    new_root: [u8; 32],
    old: u64,
    old_root: [u8; 32],
) -> bool {
    let proof: Vec<Hash> = proof.iter().copied().map(Hash).collect();
    tlog_tiles::check_tree(&proof, new, Hash(new_root), old, Hash(old_root)).is_ok()
}

/// The RFC 6962 hash of leaf `leaf`, as stored.
pub fn leaf_hash(tx: &mut impl BrokerTx, leaf: u64) -> Result<[u8; 32], StoreError> {
    tx.log_hashes(&[tlog_tiles::stored_hash_index(0, leaf)])?
        .pop()
        .ok_or_else(|| StoreError(format!("no hash for log leaf {leaf}")))
}

/// A signer for C2SP notes with the broker's identity key.
struct NoteSigner<'a> {
    name: String,
    key: &'a SigningKey,
}

impl signed_note::Signer for NoteSigner<'_> {
    fn name(&self) -> &str {
        &self.name
    }
    fn key_id(&self) -> u32 {
        signed_note::key_id(&self.name, &note_public_key(&self.key.public_key()))
    }
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, ed25519_dalek::SignatureError> {
        Ok(self.key.sign_note(msg).0.to_vec())
    }
}

/// The public key as signed notes encode it: algorithm byte 0x01 (Ed25519), then the key.
fn note_public_key(key: &PublicKey) -> Vec<u8> {
    let mut encoded = vec![0x01];
    encoded.extend_from_slice(key.as_bytes());
    encoded
}

/// Signs a checkpoint of the log at `size` with root `root`, at `now`.
/// The time travels as the checkpoint's one extension line.
pub fn sign_checkpoint(
    key: &SigningKey,
    size: u64,
    root: [u8; 32],
    now: Timestamp,
) -> Result<Vec<u8>, StoreError> {
    let origin = origin(&key.public_key());
    let checkpoint = Checkpoint::new(&origin, size, Hash(root), &format!("time {}\n", now.0))
        .map_err(|_| StoreError("cannot form a checkpoint".into()))?;
    let mut note = signed_note::Note::new(&checkpoint.to_bytes(), &[])
        .map_err(|e| StoreError(format!("cannot form a checkpoint note: {e:?}")))?;
    note.add_sigs(&[&NoteSigner { name: origin, key }])
        .map_err(|e| StoreError(format!("cannot sign a checkpoint: {e:?}")))?;
    Ok(note.to_bytes())
}

/// A checkpoint whose signature verified under the broker's key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedCheckpoint {
    pub size: u64,
    pub root: [u8; 32],
    pub time: Option<u64>,
}

/// Why a checkpoint is not the broker's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    #[error("not a signed note: {0}")]
    Malformed(String),
    #[error("not signed by the broker's key")]
    BadSignature,
    #[error("the checkpoint is for another log ({0})")]
    WrongOrigin(String),
}

/// Verifies a signed checkpoint against the broker's public key.
pub fn verify_checkpoint(
    broker: &PublicKey,
    note: &[u8],
) -> Result<VerifiedCheckpoint, CheckpointError> {
    let name = origin(broker);
    let key = ed25519_dalek::VerifyingKey::from_bytes(broker.as_bytes())
        .map_err(|_| CheckpointError::BadSignature)?;
    let verifier =
        signed_note::StandardVerifier::new(&signed_note::new_ed25519_verifier_key(&name, &key))
            .map_err(|e| CheckpointError::Malformed(format!("{e:?}")))?;
    let note = signed_note::Note::from_bytes(note)
        .map_err(|e| CheckpointError::Malformed(format!("{e:?}")))?;
    let verifiers = signed_note::VerifierList::new(vec![Box::new(verifier)]);
    let (verified, _) = note
        .verify(&verifiers)
        .map_err(|_| CheckpointError::BadSignature)?;
    if verified.is_empty() {
        return Err(CheckpointError::BadSignature);
    }
    let checkpoint = Checkpoint::from_bytes(note.text())
        .map_err(|_| CheckpointError::Malformed("not a checkpoint".into()))?;
    if checkpoint.origin() != name {
        return Err(CheckpointError::WrongOrigin(checkpoint.origin().to_owned()));
    }
    let time = checkpoint
        .extension()
        .strip_prefix("time ")
        .and_then(|t| t.trim_end().parse().ok());
    Ok(VerifiedCheckpoint {
        size: checkpoint.size(),
        root: checkpoint.hash().0,
        time,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The root of leaves `0..size` (each its index's bytes) as `tlog_tiles` computes it.
    fn tlog_root(size: u64) -> [u8; 32] {
        struct Stored(Vec<Hash>);
        impl HashReader for Stored {
            fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog_tiles::Error> {
                Ok(indexes.iter().map(|&i| self.0[i as usize]).collect())
            }
        }
        let mut stored = Stored(Vec::new());
        for leaf in 0..size {
            let hashes = tlog_tiles::stored_hashes(leaf, &leaf.to_le_bytes(), &stored).unwrap();
            stored.0.extend(hashes);
        }
        tlog_tiles::tree_hash(size, &stored).unwrap().0
    }

    #[test]
    fn an_empty_memory_tree_has_the_empty_root_and_no_proofs() {
        let tree = MemoryTree::default();
        assert_eq!(tree.size(), 0);
        assert_eq!(tree.root(), tlog_root(0));
        assert_eq!(tree.prove(0), None);
    }

    #[test]
    fn every_leaf_of_a_memory_tree_proves_into_its_root_and_no_other_leaf_does() {
        for size in 1..=33u64 {
            let mut tree = MemoryTree::default();
            for leaf in 0..size {
                tree.push(&leaf.to_le_bytes());
            }
            assert_eq!(tree.size(), size);
            let root = tree.root();
            assert_eq!(root, tlog_root(size), "the root of {size} leaves");
            for leaf in 0..size {
                let proof = tree.prove(leaf).unwrap();
                let hash = record_hash(&leaf.to_le_bytes());
                assert!(check_inclusion(&proof, size, root, leaf, hash));
                let other = record_hash(&(leaf + 1).to_le_bytes());
                assert!(!check_inclusion(&proof, size, root, leaf, other));
                if size > 1 {
                    assert!(!check_inclusion(
                        &proof,
                        size,
                        root,
                        (leaf + 1) % size,
                        hash
                    ));
                }
            }
            assert_eq!(tree.prove(size), None);
        }
    }
}
