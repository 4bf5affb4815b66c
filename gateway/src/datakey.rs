//! Encryption of record values at rest: XChaCha20-Poly1305 under a city's
//! **data key** (a key file of kind `data`, `keys.data` in the config).
//!
//! A sealed item is `01 ‖ key id[4] ‖ nonce[24] ‖ ciphertext ‖ tag[16]`:
//!
//! - the **key id** is the first four bytes of
//!   `SHA-256("tongban/data-key-id/v1" ‖ key)`, so an item names the key that
//!   opens it and a rotated store can hold items under several keys (the
//!   current key writes; retired keys, `keys.data_retired`, only read);
//! - the **nonce** is a random 16-byte prefix drawn once per process followed
//!   by a 64-bit counter (never repeats under one key);
//! - the **associated data** binds the item to its place (chain id, record
//!   key, version: see [`record_aad`]), so an item copied or moved to another
//!   record's slot does not open;
//! - the **tag** is also the item's checksum: a flipped bit anywhere in it is
//!   refused (`store.corrupt`), never decrypted into a wrong value.

use std::sync::atomic::{AtomicU64, Ordering};

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

/// The version byte of a sealed item.
pub const SEALED_V1: u8 = 1;
const HEADER: usize = 1 + 4 + 24;
const TAG: usize = 16;

/// Why a sealed item does not open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// Too short or an unknown version byte.
    #[error("malformed sealed value ({0})")]
    Malformed(&'static str),
    /// Sealed under a key this gateway does not hold.
    #[error("sealed under data key {0}, which is not configured (keys.data or keys.data_retired)")]
    UnknownKey(String),
    /// The tag does not verify: the bytes were changed (or moved to another place).
    #[error("authentication failed: the value was altered or belongs to another record")]
    Tag,
}

/// The data keys of one gateway: the current one (writes and reads) and
/// retired ones (read only, until every item is re-encrypted).
pub struct DataKeys {
    current: ([u8; 4], XChaCha20Poly1305),
    retired: Vec<([u8; 4], XChaCha20Poly1305)>,
    prefix: [u8; 16],
    counter: AtomicU64,
}

impl std::fmt::Debug for DataKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataKeys")
            .field("current", &hex::encode(self.current.0))
            .field(
                "retired",
                &self
                    .retired
                    .iter()
                    .map(|(id, _)| hex::encode(id))
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// The id of a data key (hex in messages and in `tongban keys gen` output).
pub fn key_id(key: &[u8; 32]) -> [u8; 4] {
    let mut b = b"tongban/data-key-id/v1".to_vec();
    b.extend_from_slice(key);
    let h = proofs::hash::sha256(&b).0;
    [h[0], h[1], h[2], h[3]]
}

/// The associated data of a stored record version: its chain, record key and version.
pub fn record_aad(chain_id: &str, record_key: &[u8], version: u32) -> Vec<u8> {
    let mut a = Vec::with_capacity(40 + chain_id.len() + record_key.len());
    a.extend_from_slice(b"tongban/stored-record/aead/v1\0");
    a.extend_from_slice(&(chain_id.len() as u32).to_be_bytes());
    a.extend_from_slice(chain_id.as_bytes());
    a.extend_from_slice(&(record_key.len() as u32).to_be_bytes());
    a.extend_from_slice(record_key);
    a.extend_from_slice(&version.to_be_bytes());
    a
}

impl DataKeys {
    /// The current key and the retired ones (a retired key equal to the
    /// current one is ignored).
    pub fn new(current: &[u8; 32], retired: &[[u8; 32]]) -> Self {
        let mut prefix = [0u8; 16];
        getrandom::fill(&mut prefix).expect("the OS random source is available");
        let cid = key_id(current);
        DataKeys {
            current: (cid, XChaCha20Poly1305::new(current.into())),
            retired: retired
                .iter()
                .filter(|k| key_id(k) != cid)
                .map(|k| (key_id(k), XChaCha20Poly1305::new(k.into())))
                .collect(),
            prefix,
            counter: AtomicU64::new(0),
        }
    }
    /// Keys derived from a public label: **tests and examples only**.
    pub fn for_tests(label: &str) -> Self {
        Self::new(&proofs::keys::test_seed(&format!("{label}/data")), &[])
    }
    /// The id of the key that writes.
    pub fn current_id(&self) -> [u8; 4] {
        self.current.0
    }
    /// Encrypts `plain` bound to `aad`.
    pub fn seal(&self, aad: &[u8], plain: &[u8]) -> Vec<u8> {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let mut nonce = [0u8; 24];
        nonce[..16].copy_from_slice(&self.prefix);
        nonce[16..].copy_from_slice(&n.to_be_bytes());
        let ct = self
            .current
            .1
            .encrypt(XNonce::from_slice(&nonce), Payload { msg: plain, aad })
            .expect("XChaCha20-Poly1305 encrypts any length a record has");
        let mut out = Vec::with_capacity(HEADER + ct.len());
        out.push(SEALED_V1);
        out.extend_from_slice(&self.current.0);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        out
    }
    /// True if `id` names the current key or a retired one.
    pub fn has_key(&self, id: [u8; 4]) -> bool {
        self.current.0 == id || self.retired.iter().any(|(k, _)| *k == id)
    }
    /// The key id an item was sealed under.
    pub fn item_key_id(item: &[u8]) -> Option<[u8; 4]> {
        (item.first() == Some(&SEALED_V1) && item.len() >= HEADER + TAG)
            .then(|| [item[1], item[2], item[3], item[4]])
    }
    /// Decrypts an item sealed by [`DataKeys::seal`] with the same `aad`.
    pub fn open(&self, aad: &[u8], item: &[u8]) -> Result<Vec<u8>, OpenError> {
        if item.len() < HEADER + TAG {
            return Err(OpenError::Malformed("too short"));
        }
        if item[0] != SEALED_V1 {
            return Err(OpenError::Malformed("unknown version byte"));
        }
        let id = [item[1], item[2], item[3], item[4]];
        let cipher = if id == self.current.0 {
            &self.current.1
        } else {
            &self
                .retired
                .iter()
                .find(|(k, _)| *k == id)
                .ok_or_else(|| OpenError::UnknownKey(hex::encode(id)))?
                .1
        };
        cipher
            .decrypt(
                XNonce::from_slice(&item[5..HEADER]),
                Payload {
                    msg: &item[HEADER..],
                    aad,
                },
            )
            .map_err(|_| OpenError::Tag)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_rotation_and_every_flipped_bit() {
        let old = DataKeys::new(&[1; 32], &[]);
        let aad = record_aad("c", b"d\0t\0r1", 1);
        let item = old.seal(&aad, b"months_paid=30");
        assert_eq!(old.open(&aad, &item).unwrap(), b"months_paid=30");
        assert!(
            !item.windows(6).any(|w| w == b"months"),
            "the plaintext is not in the item"
        );
        // Another place: refused.
        assert_eq!(
            old.open(&record_aad("c", b"d\0t\0r2", 1), &item),
            Err(OpenError::Tag)
        );
        assert_eq!(
            old.open(&record_aad("c", b"d\0t\0r1", 2), &item),
            Err(OpenError::Tag)
        );
        // Every single-bit flip is refused.
        for i in 0..item.len() {
            for bit in 0..8 {
                let mut bad = item.clone();
                bad[i] ^= 1 << bit;
                assert!(old.open(&aad, &bad).is_err(), "byte {i} bit {bit}");
            }
        }
        // Rotation: the new key writes, the old one still reads.
        let new = DataKeys::new(&[2; 32], &[[1; 32]]);
        assert_eq!(new.open(&aad, &item).unwrap(), b"months_paid=30");
        let fresh = new.seal(&aad, b"x");
        assert_eq!(DataKeys::item_key_id(&fresh), Some(key_id(&[2; 32])));
        // Without the old key: a clear refusal naming the key id.
        let only_new = DataKeys::new(&[2; 32], &[]);
        assert_eq!(
            only_new.open(&aad, &item),
            Err(OpenError::UnknownKey(hex::encode(key_id(&[1; 32]))))
        );
        // Nonces never repeat within a process.
        assert_ne!(new.seal(&aad, b"x")[5..29], fresh[5..29]);
    }
}
