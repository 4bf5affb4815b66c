//! Typed field values, their canonical encoding and their order.

use core::cmp::Ordering;
use core::fmt;

use serde::{Deserialize, Serialize};

use crate::encoding::{DecodeError, Decoder, Encoder};

/// A calendar date (proleptic Gregorian), shown as `YYYY-MM-DD`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Date {
    year: u16,
    month: u8,
    day: u8,
}

impl Date {
    /// A checked date; `None` if the day does not exist.
    pub fn new(year: u16, month: u8, day: u8) -> Option<Self> {
        let leap =
            (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400);
        let days = match month {
            1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
            4 | 6 | 9 | 11 => 30,
            2 if leap => 29,
            2 => 28,
            _ => return None,
        };
        // Years 1–9999: every date has the four-digit text form.
        (day >= 1 && day <= days && (1..=9999).contains(&year)).then_some(Date { year, month, day })
    }
    /// Parses `YYYY-MM-DD` exactly.
    pub fn parse(s: &str) -> Option<Self> {
        let b = s.as_bytes();
        if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
            return None;
        }
        let num = |r: core::ops::Range<usize>| -> Option<u16> {
            let part = &s[r];
            if !part.bytes().all(|c| c.is_ascii_digit()) {
                return None;
            }
            part.parse().ok()
        };
        Date::new(
            num(0..4)?,
            u8::try_from(num(5..7)?).ok()?,
            u8::try_from(num(8..10)?).ok()?,
        )
    }
    /// Year.
    pub fn year(&self) -> u16 {
        self.year
    }
    /// Month (1–12).
    pub fn month(&self) -> u8 {
        self.month
    }
    /// Day of month.
    pub fn day(&self) -> u8 {
        self.day
    }
    /// Days since 1970-01-01 (negative before), for age and interval arithmetic.
    pub fn days_since_epoch(&self) -> i64 {
        // Howard Hinnant's days_from_civil.
        let y = i64::from(self.year) - i64::from(self.month <= 2);
        let m = i64::from(self.month);
        let d = i64::from(self.day);
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        era * 146_097 + doe - 719_468
    }
    /// The date of a Unix time in milliseconds (UTC).
    pub fn from_unix_ms(ms: u64) -> Self {
        let z = (ms / 86_400_000) as i64 + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let d = (doy - (153 * mp + 2) / 5 + 1) as u8;
        let m = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
        let y = (yoe + era * 400 + i64::from(m <= 2)) as u16;
        Date {
            year: y,
            month: m,
            day: d,
        }
    }
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}
impl fmt::Debug for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Date({self})")
    }
}
impl Serialize for Date {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}
impl<'de> Deserialize<'de> for Date {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Date::parse(&s)
            .ok_or_else(|| serde::de::Error::custom(format!("`{s}` is not a date YYYY-MM-DD")))
    }
}

/// The kind of a value, as declared for a field in the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// UTF-8 text.
    Text,
    /// Signed 64-bit integer.
    Int,
    /// true / false.
    Bool,
    /// A calendar date.
    Date,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Text => "text",
            Kind::Int => "int",
            Kind::Bool => "bool",
            Kind::Date => "date",
        })
    }
}

/// A field value.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Value {
    /// UTF-8 text.
    Text(String),
    /// Signed 64-bit integer.
    Int(i64),
    /// true / false.
    Bool(bool),
    /// A calendar date.
    Date(Date),
}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Text(s) => write!(f, "{s:?}"),
            Value::Int(i) => write!(f, "{i}"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Date(d) => write!(f, "{d}"),
        }
    }
}

/// Longest text value accepted (bytes).
pub const MAX_TEXT: usize = 4096;

impl Value {
    /// This value's kind.
    pub fn kind(&self) -> Kind {
        match self {
            Value::Text(_) => Kind::Text,
            Value::Int(_) => Kind::Int,
            Value::Bool(_) => Kind::Bool,
            Value::Date(_) => Kind::Date,
        }
    }
    /// Reads a plain JSON-like scalar as a value of `kind`: text and dates from
    /// strings, ints from integers, bools from booleans.
    pub fn from_plain(
        kind: Kind,
        text: Option<&str>,
        int: Option<i64>,
        boolean: Option<bool>,
    ) -> Option<Value> {
        match kind {
            Kind::Text => text.map(|s| Value::Text(s.to_owned())),
            Kind::Date => text.and_then(Date::parse).map(Value::Date),
            Kind::Int => int.map(Value::Int),
            Kind::Bool => boolean.map(Value::Bool),
        }
    }
    /// Order between two values of the same kind; `None` across kinds.
    pub fn compare(&self, other: &Value) -> Option<Ordering> {
        match (self, other) {
            (Value::Text(a), Value::Text(b)) => Some(a.cmp(b)),
            (Value::Int(a), Value::Int(b)) => Some(a.cmp(b)),
            (Value::Bool(a), Value::Bool(b)) => Some(a.cmp(b)),
            (Value::Date(a), Value::Date(b)) => Some(a.cmp(b)),
            _ => None,
        }
    }
    /// Canonical encoding: a kind byte (1 text, 2 int, 3 bool, 4 date) then the payload.
    pub fn encode(&self, e: &mut Encoder) {
        match self {
            Value::Text(s) => e.u8(1).str(s),
            Value::Int(i) => e.u8(2).i64(*i),
            Value::Bool(b) => e.u8(3).u8(u8::from(*b)),
            Value::Date(d) => e.u8(4).u16(d.year).u8(d.month).u8(d.day),
        };
    }
    /// Decodes what [`Value::encode`] wrote.
    pub fn decode(d: &mut Decoder<'_>) -> Result<Value, DecodeError> {
        Ok(match d.u8("value.kind")? {
            1 => Value::Text(d.str("value.text", MAX_TEXT)?.to_owned()),
            2 => Value::Int(d.i64("value.int")?),
            3 => match d.u8("value.bool")? {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                v => {
                    return Err(DecodeError::UnknownTag {
                        field: "value.bool",
                        value: u64::from(v),
                    });
                }
            },
            4 => {
                let (y, m, day) = (
                    d.u16("value.year")?,
                    d.u8("value.month")?,
                    d.u8("value.day")?,
                );
                Value::Date(Date::new(y, m, day).ok_or(DecodeError::Invalid {
                    field: "value.date",
                    reason: format!("{y:04}-{m:02}-{day:02} is not a calendar date"),
                })?)
            }
            v => {
                return Err(DecodeError::UnknownTag {
                    field: "value.kind",
                    value: u64::from(v),
                });
            }
        })
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Text(s) => f.write_str(s),
            Value::Int(i) => write!(f, "{i}"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Date(d) => write!(f, "{d}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn dates() {
        assert_eq!(Date::parse("2024-02-29").unwrap().to_string(), "2024-02-29");
        assert!(Date::parse("2023-02-29").is_none());
        assert!(Date::parse("2023-2-28").is_none());
        assert!(Date::parse("2023-13-01").is_none());
        assert!(Date::parse("+023-01-01").is_none());
        assert_eq!(Date::parse("1970-01-01").unwrap().days_since_epoch(), 0);
        assert_eq!(
            Date::parse("2000-03-01").unwrap().days_since_epoch(),
            11_017
        );
        assert_eq!(
            Date::from_unix_ms(951_868_800_000).to_string(),
            "2000-03-01"
        );
    }

    proptest! {
        #[test]
        fn date_day_numbers_round_trip(days in 0u64..100_000) {
            let d = Date::from_unix_ms(days * 86_400_000);
            prop_assert_eq!(d.days_since_epoch(), days as i64);
            prop_assert_eq!(Date::parse(&d.to_string()), Some(d));
        }

        #[test]
        fn value_encoding_round_trips(s in ".{0,40}", i in any::<i64>(), b in any::<bool>(), days in 0u64..80_000) {
            for v in [Value::Text(s.clone()), Value::Int(i), Value::Bool(b), Value::Date(Date::from_unix_ms(days * 86_400_000))] {
                let mut e = Encoder::new();
                v.encode(&mut e);
                let bytes = e.finish();
                let mut d = Decoder::new(&bytes);
                prop_assert_eq!(Value::decode(&mut d).unwrap(), v);
                d.finish().unwrap();
            }
        }
    }
}
