//! Keyed subject references: how a person or company is named on chain and between
//! cities without its identifier ever appearing in plaintext.
//!
//! `SubjectRef = HMAC-SHA256(key, enc("tongban/subject/v1") ‖ str(normalised id))`.
//! The key is a secret of the city that keeps the records, so a reader of the chain
//! cannot confirm a guessed identifier (18-digit identity numbers are far too
//! guessable for a plain hash). Identifiers travel between cities only sealed (HPKE).

use core::fmt;

use hmac::{KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use thiserror::Error;

use crate::encoding::Encoder;
use crate::hash::Hash;

/// Domain tag of a subject reference.
pub const SUBJECT_DOMAIN: &str = "tongban/subject/v1";

/// The kind of identifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdKind {
    /// Resident identity number (居民身份证号码, GB 11643), 18 characters.
    Resident,
    /// Unified social credit code (统一社会信用代码, GB 32100), 18 characters.
    Uscc,
    /// A registered name (e.g. a proposed company name), 1–200 bytes of text.
    Name,
}

impl IdKind {
    /// The byte that stands for the kind in the encoding.
    pub fn tag(self) -> u8 {
        match self {
            IdKind::Resident => 1,
            IdKind::Uscc => 2,
            IdKind::Name => 3,
        }
    }
}

/// Why an identifier was refused. The identifier itself is never part of the message.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SubjectError {
    /// Wrong length.
    #[error("{kind:?} identifier must have 18 characters, found {found}")]
    Length {
        /// Kind.
        kind: IdKind,
        /// Characters found.
        found: usize,
    },
    /// A character outside the identifier's alphabet.
    #[error("{kind:?} identifier has a character outside its alphabet at position {position}")]
    Character {
        /// Kind.
        kind: IdKind,
        /// 1-based position.
        position: usize,
    },
    /// The check character does not match.
    #[error("{kind:?} identifier check character does not match")]
    Checksum {
        /// Kind.
        kind: IdKind,
    },
}

/// A validated, normalised identifier. Personal data: `Debug` and `Display` mask it.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "SubjectIdRepr", into = "SubjectIdRepr")]
pub struct SubjectId {
    kind: IdKind,
    value: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SubjectIdRepr {
    kind: IdKind,
    id: String,
}

impl TryFrom<SubjectIdRepr> for SubjectId {
    type Error = SubjectError;
    fn try_from(r: SubjectIdRepr) -> Result<Self, Self::Error> {
        SubjectId::new(r.kind, &r.id)
    }
}
impl From<SubjectId> for SubjectIdRepr {
    fn from(s: SubjectId) -> Self {
        SubjectIdRepr {
            kind: s.kind,
            id: s.value,
        }
    }
}

/// Longest name identifier (bytes).
pub const MAX_NAME: usize = 200;

const RESIDENT_WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
const RESIDENT_CHECK: &[u8; 11] = b"10X98765432";
const USCC_ALPHABET: &[u8; 31] = b"0123456789ABCDEFGHJKLMNPQRTUWXY";
const USCC_WEIGHTS: [u32; 17] = [
    1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28,
];

/// Format characters (Unicode general category Cf, as of Unicode 16.0)
/// that name normalisation removes: soft hyphen, zero-width space and
/// joiners, direction marks and isolates, word joiner, BOM and the rest.
pub const FORMAT_CHARS: &[(u32, u32)] = &[
    (0x00AD, 0x00AD),
    (0x0600, 0x0605),
    (0x061C, 0x061C),
    (0x06DD, 0x06DD),
    (0x070F, 0x070F),
    (0x0890, 0x0891),
    (0x08E2, 0x08E2),
    (0x180E, 0x180E),
    (0x200B, 0x200F),
    (0x202A, 0x202E),
    (0x2060, 0x2064),
    (0x2066, 0x206F),
    (0xFEFF, 0xFEFF),
    (0xFFF9, 0xFFFB),
    (0x110BD, 0x110BD),
    (0x110CD, 0x110CD),
    (0x13430, 0x1343F),
    (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A),
    (0xE0001, 0xE0001),
    (0xE0020, 0xE007F),
];

fn is_format(c: char) -> bool {
    let c = u32::from(c);
    FORMAT_CHARS.iter().any(|(lo, hi)| (*lo..=*hi).contains(&c))
}

/// Normalises a name so that variants a person would read as the same name
/// compare equal (`docs/encoding.md` §6): Unicode NFKC (full-width letters,
/// digits and spaces become their plain forms), format characters
/// ([`FORMAT_CHARS`]) removed, lower-cased (Unicode default lower-casing),
/// every run of white space made one U+0020 and the ends trimmed, then NFKC
/// again. Idempotent.
pub fn normalise_name(raw: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    // ASCII is its own NFKC and holds no format character.
    let ascii = raw.is_ascii();
    let folded: String = if ascii {
        raw.to_ascii_lowercase()
    } else {
        raw.nfkc()
            .filter(|c| !is_format(*c))
            .collect::<String>()
            .to_lowercase()
    };
    let mut out = String::with_capacity(folded.len());
    for word in folded.split(char::is_whitespace).filter(|w| !w.is_empty()) {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    if ascii { out } else { out.nfkc().collect() }
}

impl SubjectId {
    /// Validates and normalises an identifier of `kind`: numbers and codes
    /// are trimmed and upper-cased, names go through [`normalise_name`].
    pub fn new(kind: IdKind, raw: &str) -> Result<Self, SubjectError> {
        if kind == IdKind::Name {
            let normalised = normalise_name(raw);
            let value = normalised.as_str();
            if value.is_empty() || value.len() > MAX_NAME {
                return Err(SubjectError::Length {
                    kind,
                    found: value.chars().count(),
                });
            }
            if let Some(p) = value.chars().position(char::is_control) {
                return Err(SubjectError::Character {
                    kind,
                    position: p + 1,
                });
            }
            return Ok(SubjectId {
                kind,
                value: value.to_owned(),
            });
        }
        let value = raw.trim().to_ascii_uppercase();
        let b = value.as_bytes();
        if b.len() != 18 {
            return Err(SubjectError::Length {
                kind,
                found: value.chars().count(),
            });
        }
        match kind {
            // Handled above; listed so the match stays exhaustive.
            IdKind::Name => {}
            IdKind::Resident => {
                let mut sum = 0u32;
                for (i, c) in b[..17].iter().enumerate() {
                    if !c.is_ascii_digit() {
                        return Err(SubjectError::Character {
                            kind,
                            position: i + 1,
                        });
                    }
                    sum += u32::from(c - b'0') * RESIDENT_WEIGHTS[i];
                }
                if !(b[17].is_ascii_digit() || b[17] == b'X') {
                    return Err(SubjectError::Character { kind, position: 18 });
                }
                if RESIDENT_CHECK[(sum % 11) as usize] != b[17] {
                    return Err(SubjectError::Checksum { kind });
                }
            }
            IdKind::Uscc => {
                let mut sum = 0u32;
                let pos = |c: u8| USCC_ALPHABET.iter().position(|&a| a == c);
                for (i, &c) in b[..17].iter().enumerate() {
                    let v = pos(c).ok_or(SubjectError::Character {
                        kind,
                        position: i + 1,
                    })?;
                    sum += v as u32 * USCC_WEIGHTS[i];
                }
                pos(b[17]).ok_or(SubjectError::Character { kind, position: 18 })?;
                let check = (31 - sum % 31) % 31;
                if USCC_ALPHABET[check as usize] != b[17] {
                    return Err(SubjectError::Checksum { kind });
                }
            }
        }
        Ok(SubjectId { kind, value })
    }
    /// Reads an identifier of unstated kind: a valid resident number, else a
    /// valid credit code, else a name. References do not depend on the kind, so
    /// the only effect is normalisation (identifiers are upper-cased).
    ///
    /// Eighteen letters and digits are always read as an identifier: a mistyped
    /// identity number or credit code is refused, never taken for a name.
    pub fn infer(raw: &str) -> Result<Self, SubjectError> {
        // Full-width digits and letters of a number are read as plain ones.
        let plain;
        let raw = if raw.is_ascii() {
            // ASCII is its own NFKC: no copy on the common path.
            raw
        } else {
            use unicode_normalization::UnicodeNormalization;
            plain = raw.nfkc().collect::<String>();
            plain.as_str()
        };
        let t = raw.trim();
        if t.len() == 18 && t.bytes().all(|c| c.is_ascii_alphanumeric()) {
            let resident = Self::new(IdKind::Resident, raw);
            if resident.is_ok() || t.bytes().take(17).all(|c| c.is_ascii_digit()) {
                return resident.or_else(|e| Self::new(IdKind::Uscc, raw).map_err(|_| e));
            }
            return Self::new(IdKind::Uscc, raw);
        }
        Self::new(IdKind::Name, raw)
    }
    /// A resident identity number.
    pub fn resident(raw: &str) -> Result<Self, SubjectError> {
        Self::new(IdKind::Resident, raw)
    }
    /// A unified social credit code.
    pub fn uscc(raw: &str) -> Result<Self, SubjectError> {
        Self::new(IdKind::Uscc, raw)
    }
    /// The kind.
    pub fn kind(&self) -> IdKind {
        self.kind
    }
    /// The normalised identifier. Handle as personal data.
    pub fn expose(&self) -> &str {
        &self.value
    }
    /// Canonical bytes of the identifier (what gets sealed between cities).
    pub fn encode(&self) -> Vec<u8> {
        let mut e = Encoder::new();
        e.u8(self.kind.tag()).str(&self.value);
        e.finish()
    }
    /// Computes the check character a resident number with these 17 digits needs
    /// (for generating test data).
    pub fn resident_check_char(first17: &str) -> Option<char> {
        let b = first17.as_bytes();
        if b.len() != 17 || !b.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let sum: u32 = b
            .iter()
            .zip(RESIDENT_WEIGHTS)
            .map(|(c, w)| u32::from(c - b'0') * w)
            .sum();
        Some(RESIDENT_CHECK[(sum % 11) as usize] as char)
    }
    /// Computes the check character a USCC with these 17 characters needs.
    pub fn uscc_check_char(first17: &str) -> Option<char> {
        let b = first17.as_bytes();
        if b.len() != 17 {
            return None;
        }
        let mut sum = 0u32;
        for (c, w) in b.iter().zip(USCC_WEIGHTS) {
            sum += USCC_ALPHABET.iter().position(|a| a == c)? as u32 * w;
        }
        Some(USCC_ALPHABET[((31 - sum % 31) % 31) as usize] as char)
    }
}

impl fmt::Debug for SubjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "SubjectId({:?}, {}…{})",
            self.kind,
            &self.value[..2],
            "*".repeat(4)
        )
    }
}

/// The secret key a city uses to form subject references. Never shown.
#[derive(Clone)]
pub struct SubjectKey([u8; 32]);

impl SubjectKey {
    /// Wraps 32 secret bytes.
    pub fn from_bytes(b: [u8; 32]) -> Self {
        SubjectKey(b)
    }
    /// The secret bytes (for storing in a key file).
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0
    }
    /// The reference for `id` under this key.
    pub fn reference(&self, id: &SubjectId) -> SubjectRef {
        // The kind is not part of the input: one normalised string, one reference,
        // whichever kind a party believes it is.
        let mut e = Encoder::with_domain(SUBJECT_DOMAIN);
        e.str(&id.value);
        // HMAC accepts keys of any length; a 32-byte key cannot fail.
        let mut mac = <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!());
        mac.update(e.as_bytes());
        SubjectRef(Hash(mac.finalize().into_bytes().into()))
    }
}

impl fmt::Debug for SubjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SubjectKey(<secret>)")
    }
}

/// A keyed reference to a subject, safe to put on chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SubjectRef(pub Hash);

#[cfg(test)]
mod tests {
    use super::*;

    // A synthetic number (region 110101, born 1990-03-07, sequence 123) with its check digit.
    fn resident() -> String {
        let base = "11010119900307123";
        format!("{base}{}", SubjectId::resident_check_char(base).unwrap())
    }

    #[test]
    fn resident_numbers() {
        let id = SubjectId::resident(&resident()).unwrap();
        assert_eq!(id.expose().len(), 18);
        assert!(!format!("{id:?}").contains(&resident()[2..]));
        let mut bad = resident().into_bytes();
        bad[17] = if bad[17] == b'0' { b'1' } else { b'0' };
        assert_eq!(
            SubjectId::resident(core::str::from_utf8(&bad).unwrap()),
            Err(SubjectError::Checksum {
                kind: IdKind::Resident
            })
        );
        assert!(matches!(
            SubjectId::resident("123"),
            Err(SubjectError::Length { .. })
        ));
        assert!(matches!(
            SubjectId::resident("11010119900307A234"),
            Err(SubjectError::Character { position: 15, .. })
        ));
        // Lower-case x is normalised.
        let base = "11010519491231002";
        let c = SubjectId::resident_check_char(base).unwrap();
        let raw = format!("{base}{}", c.to_ascii_lowercase());
        assert!(SubjectId::resident(&raw).is_ok());
    }

    #[test]
    fn uscc_codes() {
        // A published example code (Shanghai company) with a valid check character.
        let base = "91310000MA1FL4CT3";
        let code = format!("{base}{}", SubjectId::uscc_check_char(base).unwrap());
        assert!(SubjectId::uscc(&code).is_ok());
        assert!(matches!(
            SubjectId::uscc("91310000MA1FL4CTIX"),
            Err(SubjectError::Character { position: 17, .. })
        ));
    }

    #[test]
    fn references_depend_on_key_and_id() {
        let id = SubjectId::resident(&resident()).unwrap();
        let k1 = SubjectKey::from_bytes([1; 32]);
        let k2 = SubjectKey::from_bytes([2; 32]);
        assert_eq!(k1.reference(&id), k1.reference(&id));
        assert_ne!(k1.reference(&id), k2.reference(&id));
        assert_eq!(format!("{k1:?}"), "SubjectKey(<secret>)");
        // The kind does not change the reference; normalisation does the work.
        let lower = resident().to_ascii_lowercase();
        assert_eq!(
            k1.reference(&SubjectId::infer(&lower).unwrap()),
            k1.reference(&id)
        );
    }

    #[test]
    fn inference_and_names() {
        assert_eq!(
            SubjectId::infer(&resident()).unwrap().kind(),
            IdKind::Resident
        );
        let base = "91310000MA1FL4CT3";
        let code = format!("{base}{}", SubjectId::uscc_check_char(base).unwrap());
        assert_eq!(SubjectId::infer(&code).unwrap().kind(), IdKind::Uscc);
        let name = SubjectId::infer("  南京长江数据科技有限公司 ").unwrap();
        assert_eq!(
            (name.kind(), name.expose()),
            (IdKind::Name, "南京长江数据科技有限公司")
        );
        assert!(SubjectId::infer("   ").is_err());
        // A mistyped number is refused, never read as a name.
        let mut bad = resident().into_bytes();
        bad[17] = if bad[17] == b'0' { b'1' } else { b'0' };
        let bad = String::from_utf8(bad).unwrap();
        assert_eq!(
            SubjectId::infer(&bad),
            Err(SubjectError::Checksum {
                kind: IdKind::Resident
            })
        );
        assert!(
            SubjectId::infer("91310000MA1FL4CT3Q").is_err()
                || SubjectId::uscc("91310000MA1FL4CT3Q").is_ok()
        );
        assert!(SubjectId::infer("a\u{7}b").is_err());
        assert!(SubjectId::new(IdKind::Name, &"x".repeat(201)).is_err());
    }
}
