//! Keys and signatures: Ed25519 (strict) for signing, X25519 for HPKE.

use core::fmt;

use ed25519_dalek::{Signer as _, VerifyingKey};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use thiserror::Error;

use crate::hash::{HexError, parse_fixed_hex};

/// Why a key was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum KeyError {
    /// Not hex, or the wrong length.
    #[error("bad key encoding: {0}")]
    Encoding(#[from] HexError),
    /// The bytes are not a point on the curve.
    #[error("not a valid Ed25519 point")]
    NotAPoint,
    /// The point's encoding is not canonical.
    #[error("non-canonical Ed25519 point encoding")]
    NonCanonical,
    /// A small-order ("weak") key: signatures under it prove nothing.
    #[error("weak (small-order) key")]
    Weak,
    /// An X25519 key that yields an all-zero shared secret.
    #[error("X25519 key of small order (all-zero shared secret)")]
    WeakX25519,
}

/// Why a signature did not verify.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("signature does not verify under strict Ed25519 rules")]
pub struct BadSignature;

/// An Ed25519 public key that has passed the checks every Tongban party applies:
/// a valid, canonically encoded point that is not of small order.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PublicKey {
    bytes: [u8; 32],
    key: VerifyingKey,
}

impl PublicKey {
    /// Checks and wraps 32 bytes.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self, KeyError> {
        let key = VerifyingKey::from_bytes(bytes).map_err(|_| KeyError::NotAPoint)?;
        if key.to_edwards().compress().to_bytes() != *bytes {
            return Err(KeyError::NonCanonical);
        }
        if key.is_weak() {
            return Err(KeyError::Weak);
        }
        Ok(PublicKey { bytes: *bytes, key })
    }
    /// Parses 64 hex digits and checks the key.
    pub fn from_hex(s: &str) -> Result<Self, KeyError> {
        Self::from_bytes(&parse_fixed_hex::<32>(s)?)
    }
    /// The key's 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.bytes
    }
    /// Lower-case hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.bytes)
    }
    /// Verifies with `verify_strict`: no malleable or small-order signatures.
    pub fn verify(&self, message: &[u8], signature: &Signature) -> Result<(), BadSignature> {
        let sig = ed25519_dalek::Signature::from_bytes(&signature.0);
        self.key
            .verify_strict(message, &sig)
            .map_err(|_| BadSignature)
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.to_hex())
    }
}
impl Serialize for PublicKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}
impl<'de> Deserialize<'de> for PublicKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        PublicKey::from_hex(&s).map_err(serde::de::Error::custom)
    }
}

/// An Ed25519 signature (64 bytes), shown as hex.
#[derive(Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signature(#[serde(with = "crate::hash::hex_array")] pub [u8; 64]);

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({}…)", hex::encode(&self.0[..8]))
    }
}

/// An Ed25519 signing key. Its secret never appears in `Debug` output.
#[derive(Clone)]
pub struct SigningKey(ed25519_dalek::SigningKey);

impl SigningKey {
    /// From a 32-byte seed (the RFC 8032 private key).
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        SigningKey(ed25519_dalek::SigningKey::from_bytes(seed))
    }
    /// The 32-byte seed, for writing a key file.
    pub fn to_seed(&self) -> [u8; 32] {
        self.0.to_bytes()
    }
    /// The matching public key.
    ///
    /// A key derived from a seed is never weak, so the check cannot fail.
    pub fn public(&self) -> PublicKey {
        let vk = self.0.verifying_key();
        PublicKey {
            bytes: vk.to_bytes(),
            key: vk,
        }
    }
    /// Signs `message` (deterministic, RFC 8032).
    pub fn sign(&self, message: &[u8]) -> Signature {
        Signature(self.0.sign(message).to_bytes())
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKey(public {})", self.public().to_hex())
    }
}

/// An X25519 public key for HPKE, checked to be usable (not of small order).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct HpkePublicKey(pub(crate) [u8; 32]);

impl HpkePublicKey {
    /// Checks and wraps 32 bytes: a key for which Diffie-Hellman yields an all-zero
    /// secret (RFC 9180 §7.1.4) is refused.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self, KeyError> {
        if crate::seal::is_small_order(bytes) {
            return Err(KeyError::WeakX25519);
        }
        Ok(HpkePublicKey(*bytes))
    }
    /// Parses 64 hex digits and checks the key.
    pub fn from_hex(s: &str) -> Result<Self, KeyError> {
        Self::from_bytes(&parse_fixed_hex::<32>(s)?)
    }
    /// The key's bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
    /// Lower-case hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Debug for HpkePublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HpkePublicKey({})", self.to_hex())
    }
}
impl Serialize for HpkePublicKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}
impl<'de> Deserialize<'de> for HpkePublicKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        HpkePublicKey::from_hex(&s).map_err(serde::de::Error::custom)
    }
}

/// Derives a test key from a label. **For tests and examples only**: anyone can
/// recompute these keys. Seed = SHA-256("tongban/test-key/v1" ‖ label).
pub fn test_seed(label: &str) -> [u8; 32] {
    crate::hash::sha256_parts(&[b"tongban/test-key/v1", label.as_bytes()]).0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_verify_and_refuse_other_message() {
        let sk = SigningKey::from_seed(&test_seed("a"));
        let pk = sk.public();
        let sig = sk.sign(b"m");
        assert!(pk.verify(b"m", &sig).is_ok());
        assert_eq!(pk.verify(b"n", &sig), Err(BadSignature));
        assert_eq!(PublicKey::from_bytes(pk.as_bytes()).unwrap(), pk);
        assert!(!format!("{sk:?}").contains(&hex::encode(test_seed("a"))));
    }

    #[test]
    fn weak_and_invalid_keys_refused() {
        // The identity point (small order).
        let mut id = [0u8; 32];
        id[0] = 1;
        assert_eq!(PublicKey::from_bytes(&id), Err(KeyError::Weak));
        // y = p (non-canonical encoding of y = 0 ... which is on the curve).
        let mut noncanon = [0xffu8; 32];
        noncanon[0] = 0xed;
        noncanon[31] = 0x7f;
        assert!(PublicKey::from_bytes(&noncanon).is_err());
        assert!(matches!(
            PublicKey::from_hex("00"),
            Err(KeyError::Encoding(_))
        ));
        assert_eq!(
            HpkePublicKey::from_bytes(&[0; 32]),
            Err(KeyError::WeakX25519)
        );
    }
}
