//! HPKE (RFC 9180) one-shot sealing: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256,
//! ChaCha20-Poly1305, in base and auth modes.
//!
//! Every message is sealed on its own (one-shot, sequence number 0). Callers bind
//! the context of a message with `info` (what kind of message, for whom) and `aad`
//! (e.g. the hash of the request an answer belongs to), so a ciphertext cannot be
//! replayed in another context. Randomness is an argument: this crate never
//! draws it itself.

use core::fmt;

use hpke::{Deserializable, Kem as _, OpModeR, OpModeS, Serializable};
use rand_core::CryptoRng;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::keys::HpkePublicKey;

type Kem = hpke::kem::X25519HkdfSha256;
type Kdf = hpke::kdf::HkdfSha256;
type Aead = hpke::aead::ChaCha20Poly1305;

/// The RFC 9180 suite identifiers used: (KEM, KDF, AEAD).
pub const SUITE: (u16, u16, u16) = (0x0020, 0x0001, 0x0003);

/// Why sealing or opening failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SealError {
    /// The recipient's or sender's key cannot be used (small order).
    #[error("key exchange failed (small-order key)")]
    KeyExchange,
    /// The ciphertext, its `info`/`aad` binding or the sender do not match.
    #[error("ciphertext does not open with this key, info, aad and sender")]
    Open,
    /// The encapsulated key has the wrong length.
    #[error("encapsulated key must be 32 bytes")]
    EncappedKey,
}

/// A sealed message: the encapsulated ephemeral key and the ciphertext (with tag).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sealed {
    /// The sender's ephemeral X25519 public key.
    #[serde(with = "crate::hash::hex_array")]
    pub enc: [u8; 32],
    /// Ciphertext followed by the 16-byte Poly1305 tag.
    #[serde(with = "crate::hash::hex_bytes")]
    pub ciphertext: Vec<u8>,
}

impl fmt::Debug for Sealed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sealed({} bytes)", self.ciphertext.len())
    }
}

/// An X25519 secret key for opening sealed messages. Never shown in `Debug`.
#[derive(Clone)]
pub struct HpkeSecretKey {
    sk: <Kem as hpke::Kem>::PrivateKey,
    pk: HpkePublicKey,
}

impl HpkeSecretKey {
    /// Derives a key pair from 32 bytes of key material (RFC 9180 `DeriveKeyPair`).
    pub fn derive(ikm: &[u8; 32]) -> Self {
        let (sk, pk) = Kem::derive_keypair(ikm);
        let mut b = [0u8; 32];
        b.copy_from_slice(&pk.to_bytes());
        HpkeSecretKey {
            sk,
            pk: HpkePublicKey(b),
        }
    }
    /// The matching public key.
    pub fn public(&self) -> HpkePublicKey {
        self.pk
    }
}

impl fmt::Debug for HpkeSecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HpkeSecretKey(public {})", self.pk.to_hex())
    }
}

fn recipient(pk: &HpkePublicKey) -> Result<<Kem as hpke::Kem>::PublicKey, SealError> {
    <Kem as hpke::Kem>::PublicKey::from_bytes(&pk.0).map_err(|_| SealError::KeyExchange)
}

fn seal_with(
    mode: &OpModeS<'_, Kem>,
    to: &HpkePublicKey,
    info: &[u8],
    aad: &[u8],
    plaintext: &[u8],
    rng: &mut impl CryptoRng,
) -> Result<Sealed, SealError> {
    let pk = recipient(to)?;
    let (enc, ciphertext) =
        hpke::single_shot_seal_with_rng::<Aead, Kdf, Kem>(mode, &pk, info, plaintext, aad, rng)
            .map_err(|_| SealError::KeyExchange)?;
    let mut e = [0u8; 32];
    e.copy_from_slice(&enc.to_bytes());
    Ok(Sealed { enc: e, ciphertext })
}

fn open_with(
    mode: &OpModeR<'_, Kem>,
    key: &HpkeSecretKey,
    info: &[u8],
    aad: &[u8],
    sealed: &Sealed,
) -> Result<Vec<u8>, SealError> {
    let enc = <Kem as hpke::Kem>::EncappedKey::from_bytes(&sealed.enc)
        .map_err(|_| SealError::EncappedKey)?;
    hpke::single_shot_open::<Aead, Kdf, Kem>(mode, &key.sk, &enc, info, &sealed.ciphertext, aad)
        .map_err(|e| match e {
            hpke::HpkeError::DecapError => SealError::KeyExchange,
            _ => SealError::Open,
        })
}

/// Seals `plaintext` to `to` in base mode (anonymous sender).
pub fn seal_base(
    to: &HpkePublicKey,
    info: &[u8],
    aad: &[u8],
    plaintext: &[u8],
    rng: &mut impl CryptoRng,
) -> Result<Sealed, SealError> {
    seal_with(&OpModeS::Base, to, info, aad, plaintext, rng)
}

/// Opens a base-mode message.
pub fn open_base(
    key: &HpkeSecretKey,
    info: &[u8],
    aad: &[u8],
    sealed: &Sealed,
) -> Result<Vec<u8>, SealError> {
    open_with(&OpModeR::Base, key, info, aad, sealed)
}

/// Seals in auth mode: the recipient learns that the holder of `from` sealed it.
pub fn seal_auth(
    from: &HpkeSecretKey,
    to: &HpkePublicKey,
    info: &[u8],
    aad: &[u8],
    plaintext: &[u8],
    rng: &mut impl CryptoRng,
) -> Result<Sealed, SealError> {
    let sender_pk = recipient(&from.pk)?;
    seal_with(
        &OpModeS::Auth((from.sk.clone(), sender_pk)),
        to,
        info,
        aad,
        plaintext,
        rng,
    )
}

/// Opens an auth-mode message, checking that `from` sealed it.
pub fn open_auth(
    key: &HpkeSecretKey,
    from: &HpkePublicKey,
    info: &[u8],
    aad: &[u8],
    sealed: &Sealed,
) -> Result<Vec<u8>, SealError> {
    open_with(&OpModeR::Auth(recipient(from)?), key, info, aad, sealed)
}

/// True if Diffie-Hellman with this X25519 public key gives the all-zero secret
/// for any (clamped) secret key, i.e. the point has small order.
pub(crate) fn is_small_order(pk: &[u8; 32]) -> bool {
    let Ok(pk) = <Kem as hpke::Kem>::PublicKey::from_bytes(pk) else {
        return true;
    };
    // A clamped scalar is a multiple of the cofactor, so DH with a small-order point
    // is all zeros whatever the scalar; hpke reports that as an encapsulation error.
    let mut rng = FixedRng([7u8; 32], 0);
    hpke::single_shot_seal_with_rng::<Aead, Kdf, Kem>(&OpModeS::Base, &pk, b"", b"", b"", &mut rng)
        .is_err()
}

/// A deterministic byte source that repeats a 32-byte block; used only for the
/// key-validity probe above, whose output is discarded.
struct FixedRng([u8; 32], usize);

impl rand_core::TryRng for FixedRng {
    type Error = core::convert::Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        let mut b = [0u8; 4];
        self.try_fill_bytes(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }
    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        let mut b = [0u8; 8];
        self.try_fill_bytes(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        for d in dst {
            *d = self.0[self.1 % 32];
            self.1 += 1;
        }
        Ok(())
    }
}
impl rand_core::TryCryptoRng for FixedRng {}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    #[test]
    fn base_and_auth_round_trip_with_binding() {
        let mut rng = ChaCha20Rng::from_seed([1; 32]);
        let bob = HpkeSecretKey::derive(&[2; 32]);
        let alice = HpkeSecretKey::derive(&[3; 32]);
        let s = seal_base(&bob.public(), b"info", b"aad", b"hello", &mut rng).unwrap();
        assert_eq!(open_base(&bob, b"info", b"aad", &s).unwrap(), b"hello");
        assert_eq!(open_base(&bob, b"info", b"other", &s), Err(SealError::Open));
        assert_eq!(open_base(&bob, b"other", b"aad", &s), Err(SealError::Open));
        assert_eq!(open_base(&alice, b"info", b"aad", &s), Err(SealError::Open));

        let s = seal_auth(&alice, &bob.public(), b"i", b"a", b"m", &mut rng).unwrap();
        assert_eq!(
            open_auth(&bob, &alice.public(), b"i", b"a", &s).unwrap(),
            b"m"
        );
        let mallory = HpkeSecretKey::derive(&[4; 32]);
        assert_eq!(
            open_auth(&bob, &mallory.public(), b"i", b"a", &s),
            Err(SealError::Open)
        );
        assert_eq!(open_base(&bob, b"i", b"a", &s), Err(SealError::Open));
        assert!(!format!("{bob:?}").contains("0202"));
    }
}
