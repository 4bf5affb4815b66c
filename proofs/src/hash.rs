//! SHA-256 digests and their text form.

use core::fmt;
use core::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha256};

/// A SHA-256 digest. Shown and serialised as 64 lower-case hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Hash(pub [u8; 32]);

impl Hash {
    /// The digest's bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
    /// Lower-case hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
    /// Parses 64 hex digits.
    pub fn from_hex(s: &str) -> Result<Self, HexError> {
        parse_fixed_hex::<32>(s).map(Hash)
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash({})", self.to_hex())
    }
}
impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}
impl FromStr for Hash {
    type Err = HexError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Hash::from_hex(s)
    }
}
impl AsRef<[u8]> for Hash {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}
impl Serialize for Hash {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}
impl<'de> Deserialize<'de> for Hash {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Hash::from_hex(&s).map_err(serde::de::Error::custom)
    }
}

/// A hex string of the wrong length or with a non-hex digit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HexError {
    /// Wrong number of hex digits.
    #[error("expected {expected} hex digits, found {found}")]
    Length {
        /// Digits expected.
        expected: usize,
        /// Digits found.
        found: usize,
    },
    /// A character that is not a hex digit.
    #[error("not a hex string")]
    Digit,
    /// An upper-case hex digit: hex is written in lower case only (one
    /// written form per value).
    #[error("hex digits must be lower case")]
    UpperCase,
}

/// Checks that `s` holds only lower-case hex digits (`0-9`, `a-f`).
fn lower_hex_digits(s: &str) -> Result<(), HexError> {
    match s.bytes().find(|b| !matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        None => Ok(()),
        Some(b'A'..=b'F') => Err(HexError::UpperCase),
        Some(_) => Err(HexError::Digit),
    }
}

/// Parses lower-case hex of any even length (upper case is refused: every
/// value has one written form).
pub fn decode_hex(s: &str) -> Result<Vec<u8>, HexError> {
    lower_hex_digits(s)?;
    hex::decode(s).map_err(|_| HexError::Length {
        expected: s.len() + 1,
        found: s.len(),
    })
}

/// Parses exactly `N` bytes of lower-case hex.
pub fn parse_fixed_hex<const N: usize>(s: &str) -> Result<[u8; N], HexError> {
    if s.len() != 2 * N {
        return Err(HexError::Length {
            expected: 2 * N,
            found: s.len(),
        });
    }
    lower_hex_digits(s)?;
    let mut out = [0u8; N];
    hex::decode_to_slice(s, &mut out).map_err(|_| HexError::Digit)?;
    Ok(out)
}

/// Plain SHA-256.
pub fn sha256(data: &[u8]) -> Hash {
    Hash(Sha256::digest(data).into())
}

/// SHA-256 over several parts, without concatenating them first.
pub fn sha256_parts(parts: &[&[u8]]) -> Hash {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    Hash(h.finalize().into())
}

/// Serde helpers for fixed-size byte arrays as hex strings.
pub mod hex_array {
    use serde::{Deserialize, Deserializer, Serializer};

    /// Serialises as lower-case hex.
    pub fn serialize<S: Serializer, const N: usize>(v: &[u8; N], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }
    /// Parses exactly `N` bytes of hex.
    pub fn deserialize<'de, D: Deserializer<'de>, const N: usize>(
        d: D,
    ) -> Result<[u8; N], D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        super::parse_fixed_hex::<N>(&s).map_err(serde::de::Error::custom)
    }
}

/// Serde helpers for variable-length bytes as hex strings.
pub mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    /// Serialises as lower-case hex.
    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }
    /// Parses lower-case hex of any even length.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        super::decode_hex(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_string_digest() {
        assert_eq!(
            sha256(b"").to_hex(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(sha256_parts(&[b"ab", b"c"]), sha256(b"abc"));
    }

    #[test]
    fn hex_round_trip_and_errors() {
        let h = sha256(b"x");
        assert_eq!(h.to_string().parse::<Hash>().unwrap(), h);
        assert_eq!(
            Hash::from_hex("ab"),
            Err(HexError::Length {
                expected: 64,
                found: 2
            })
        );
        assert_eq!(Hash::from_hex(&"zz".repeat(32)), Err(HexError::Digit));
    }

    #[test]
    fn upper_case_hex_is_refused() {
        let h = sha256(b"x");
        let upper = h.to_hex().to_uppercase();
        assert_eq!(Hash::from_hex(&upper), Err(HexError::UpperCase));
        assert_eq!(decode_hex("0aFF"), Err(HexError::UpperCase));
        assert_eq!(decode_hex("0aff"), Ok(vec![0x0a, 0xff]));
        assert_eq!(decode_hex("0af").map_err(|_| ()), Err(()));
        assert!(serde_json::from_str::<Hash>(&format!("\"{upper}\"")).is_err());
        #[derive(serde::Deserialize)]
        struct B(#[serde(with = "super::hex_bytes")] Vec<u8>);
        assert!(serde_json::from_str::<B>("\"0A\"").is_err());
        assert_eq!(serde_json::from_str::<B>("\"0a\"").unwrap().0, vec![0x0a]);
    }
}
