//! The canonical byte encoding of everything Tongban hashes or signs.
//!
//! The rules (spelled out with examples in `docs/encoding.md`):
//!
//! * integers are fixed-width big-endian (`u8`, `u16`, `u32`, `u64`);
//! * a byte string or UTF-8 string is a `u32` big-endian length followed by the bytes;
//! * a 32-byte digest or key, and a 64-byte signature, are written raw (fixed length);
//! * a list is a `u32` count followed by its items;
//! * every signed or hashed structure starts with its **domain tag**, an ASCII
//!   string written like any other string, e.g. `tongban/header/v1`.
//!
//! There is exactly one encoding for each value: decoders refuse trailing bytes,
//! lengths beyond the stated limit, and invalid UTF-8, so `decode(encode(x)) == x`
//! and `encode(decode(b)) == b` for every `b` that decodes.

use thiserror::Error;

/// Why a byte string could not be decoded. Each variant names the field it was reading.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    /// The input ended before the field was complete.
    #[error(
        "truncated input while reading `{field}`: needed {needed} more bytes, {available} left"
    )]
    Truncated {
        /// Field being read.
        field: &'static str,
        /// Bytes the field needs.
        needed: usize,
        /// Bytes that were left.
        available: usize,
    },
    /// A length or count prefix exceeds the limit for that field.
    #[error("`{field}` is too long: {len} exceeds the limit of {max}")]
    TooLong {
        /// Field being read.
        field: &'static str,
        /// The announced length.
        len: u64,
        /// The limit for that field.
        max: u64,
    },
    /// Bytes remained after the last field.
    #[error("{0} trailing bytes after the last field")]
    Trailing(usize),
    /// A string field is not valid UTF-8.
    #[error("`{0}` is not valid UTF-8")]
    Utf8(&'static str),
    /// A tag or enumeration byte has no meaning here.
    #[error("`{field}` has unknown value {value}")]
    UnknownTag {
        /// Field being read.
        field: &'static str,
        /// The value found.
        value: u64,
    },
    /// The domain tag is not the one expected.
    #[error("domain tag mismatch: expected `{expected}`, found `{found}`")]
    Domain {
        /// The tag this decoder reads.
        expected: &'static str,
        /// The tag found in the input (lossy UTF-8).
        found: String,
    },
    /// The value is structurally well formed but violates a rule of its type.
    #[error("`{field}` is invalid: {reason}")]
    Invalid {
        /// Field being read.
        field: &'static str,
        /// What rule it broke.
        reason: String,
    },
}

/// Builds canonical bytes. Infallible: every write appends.
#[derive(Debug, Default, Clone)]
pub struct Encoder {
    buf: Vec<u8>,
}

impl Encoder {
    /// A new encoder that starts with a domain tag.
    pub fn with_domain(tag: &str) -> Self {
        let mut e = Encoder {
            buf: Vec::with_capacity(128),
        };
        e.str(tag);
        e
    }
    /// A new encoder without a domain tag (for nested values).
    pub fn new() -> Self {
        Self::default()
    }
    /// Appends one byte.
    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.buf.push(v);
        self
    }
    /// Appends a big-endian `u16`.
    pub fn u16(&mut self, v: u16) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }
    /// Appends a big-endian `u32`.
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }
    /// Appends a big-endian `u64`.
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }
    /// Appends a big-endian two's-complement `i64`.
    pub fn i64(&mut self, v: i64) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }
    /// Appends fixed-length bytes with no prefix (digests, keys, signatures).
    pub fn raw(&mut self, v: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(v);
        self
    }
    /// Appends a length-prefixed byte string.
    ///
    /// # Panics
    /// Never for inputs below 4 GiB; longer inputs cannot be produced by any decoder here.
    pub fn bytes(&mut self, v: &[u8]) -> &mut Self {
        let len = u32::try_from(v.len()).unwrap_or(u32::MAX);
        self.u32(len);
        self.buf.extend_from_slice(v);
        self
    }
    /// Appends a length-prefixed UTF-8 string.
    pub fn str(&mut self, v: &str) -> &mut Self {
        self.bytes(v.as_bytes())
    }
    /// Appends a list count.
    pub fn count(&mut self, n: usize) -> &mut Self {
        self.u32(u32::try_from(n).unwrap_or(u32::MAX))
    }
    /// The bytes written so far.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }
    /// Finishes and returns the bytes.
    pub fn finish(self) -> Vec<u8> {
        self.buf
    }
}

/// Reads canonical bytes, checking every length before it allocates.
#[derive(Debug, Clone)]
pub struct Decoder<'a> {
    input: &'a [u8],
}

impl<'a> Decoder<'a> {
    /// Starts reading `input`.
    pub fn new(input: &'a [u8]) -> Self {
        Decoder { input }
    }
    /// Reads and checks the domain tag.
    pub fn domain(&mut self, expected: &'static str) -> Result<(), DecodeError> {
        let found = self.bytes("domain", 64)?;
        if found != expected.as_bytes() {
            return Err(DecodeError::Domain {
                expected,
                found: String::from_utf8_lossy(found).into_owned(),
            });
        }
        Ok(())
    }
    /// Bytes not yet read.
    pub fn remaining(&self) -> usize {
        self.input.len()
    }
    fn take(&mut self, field: &'static str, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.input.len() < n {
            return Err(DecodeError::Truncated {
                field,
                needed: n,
                available: self.input.len(),
            });
        }
        let (head, tail) = self.input.split_at(n);
        self.input = tail;
        Ok(head)
    }
    /// Reads `N` raw bytes.
    pub fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], DecodeError> {
        let b = self.take(field, N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(b);
        Ok(out)
    }
    /// Reads one byte.
    pub fn u8(&mut self, field: &'static str) -> Result<u8, DecodeError> {
        Ok(self.array::<1>(field)?[0])
    }
    /// Reads a big-endian `u16`.
    pub fn u16(&mut self, field: &'static str) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.array(field)?))
    }
    /// Reads a big-endian `u32`.
    pub fn u32(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array(field)?))
    }
    /// Reads a big-endian `u64`.
    pub fn u64(&mut self, field: &'static str) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array(field)?))
    }
    /// Reads a big-endian `i64`.
    pub fn i64(&mut self, field: &'static str) -> Result<i64, DecodeError> {
        Ok(i64::from_be_bytes(self.array(field)?))
    }
    /// Reads a length-prefixed byte string of at most `max` bytes.
    pub fn bytes(&mut self, field: &'static str, max: usize) -> Result<&'a [u8], DecodeError> {
        let len = self.u32(field)? as usize;
        if len > max {
            return Err(DecodeError::TooLong {
                field,
                len: len as u64,
                max: max as u64,
            });
        }
        self.take(field, len)
    }
    /// Reads a length-prefixed UTF-8 string of at most `max` bytes.
    pub fn str(&mut self, field: &'static str, max: usize) -> Result<&'a str, DecodeError> {
        let b = self.bytes(field, max)?;
        core::str::from_utf8(b).map_err(|_| DecodeError::Utf8(field))
    }
    /// Reads a list count of at most `max` items, also checking that the input could hold
    /// `count * min_item` bytes, so that no caller allocates for items that are not there.
    pub fn count(
        &mut self,
        field: &'static str,
        max: usize,
        min_item: usize,
    ) -> Result<usize, DecodeError> {
        let n = self.u32(field)? as usize;
        if n > max {
            return Err(DecodeError::TooLong {
                field,
                len: n as u64,
                max: max as u64,
            });
        }
        let need = n.saturating_mul(min_item);
        if need > self.input.len() {
            return Err(DecodeError::Truncated {
                field,
                needed: need,
                available: self.input.len(),
            });
        }
        Ok(n)
    }
    /// Ends decoding: no byte may remain.
    pub fn finish(self) -> Result<(), DecodeError> {
        if self.input.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::Trailing(self.input.len()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_strictness() {
        let mut e = Encoder::with_domain("t/v1");
        e.u8(7)
            .u16(0x0102)
            .u32(3)
            .u64(9)
            .i64(-2)
            .str("héllo")
            .raw(&[1; 4]);
        let b = e.finish();
        let mut d = Decoder::new(&b);
        d.domain("t/v1").unwrap();
        assert_eq!(d.u8("a").unwrap(), 7);
        assert_eq!(d.u16("b").unwrap(), 0x0102);
        assert_eq!(d.u32("c").unwrap(), 3);
        assert_eq!(d.u64("d").unwrap(), 9);
        assert_eq!(d.i64("e").unwrap(), -2);
        assert_eq!(d.str("f", 16).unwrap(), "héllo");
        assert_eq!(d.array::<4>("g").unwrap(), [1; 4]);
        d.finish().unwrap();

        let mut d = Decoder::new(&b);
        assert!(matches!(d.domain("t/v2"), Err(DecodeError::Domain { .. })));
        let mut d = Decoder::new(&b[..b.len() - 1]);
        d.domain("t/v1").unwrap();
        d.u8("a").unwrap();
        d.u16("b").unwrap();
        d.u32("c").unwrap();
        d.u64("d").unwrap();
        d.i64("e").unwrap();
        assert!(matches!(
            d.str("f", 3),
            Err(DecodeError::TooLong { field: "f", .. })
        ));
    }

    #[test]
    fn count_checks_room_before_allocation() {
        let mut e = Encoder::new();
        e.u32(1_000_000);
        let b = e.finish();
        let mut d = Decoder::new(&b);
        assert!(matches!(
            d.count("items", 10_000_000, 32),
            Err(DecodeError::Truncated { .. })
        ));
        let mut d = Decoder::new(&b);
        assert!(matches!(
            d.count("items", 10, 32),
            Err(DecodeError::TooLong { .. })
        ));
    }

    #[test]
    fn trailing_bytes_are_refused() {
        let d = Decoder::new(&[0]);
        assert_eq!(d.finish(), Err(DecodeError::Trailing(1)));
    }

    #[test]
    fn invalid_utf8_is_refused() {
        let mut e = Encoder::new();
        e.bytes(&[0xff, 0xfe]);
        let b = e.finish();
        assert_eq!(
            Decoder::new(&b).str("name", 10),
            Err(DecodeError::Utf8("name"))
        );
    }
}
