//! Plain scalars as written in TOML or JSON, and how they become typed values.
//!
//! A registry author writes constants the natural way: `"married"`, `60`,
//! `true`, `"2025-01-01"` or a bare TOML date `2025-01-01`. This module reads
//! them into [`proofs::Value`]s (strings become text; a TOML date becomes a
//! date) and writes them back in the same plain form.

use std::fmt;

use proofs::{Date, Value};
use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Turns a TOML date-time into a [`Date`] if it is a bare local date.
fn toml_date<'de, A: MapAccess<'de>>(map: A) -> Result<Date, A::Error> {
    let dt = toml::value::Datetime::deserialize(de::value::MapAccessDeserializer::new(map))?;
    match (dt.date, dt.time, dt.offset) {
        (Some(d), None, None) => Date::new(d.year, d.month, d.day)
            .ok_or_else(|| de::Error::custom(format!("`{dt}` is not a calendar date"))),
        _ => Err(de::Error::custom(format!(
            "`{dt}` has a time of day; only a date YYYY-MM-DD is allowed"
        ))),
    }
}

struct DateVisitor;

impl<'de> Visitor<'de> for DateVisitor {
    type Value = Date;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a date YYYY-MM-DD")
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<Date, E> {
        Date::parse(s).ok_or_else(|| E::custom(format!("`{s}` is not a date YYYY-MM-DD")))
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Date, A::Error> {
        toml_date(map)
    }
}

/// Serde helpers for [`Date`] fields that accept `"YYYY-MM-DD"` or a bare TOML date.
pub(crate) mod date {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(d: &Date, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(d)
    }
    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Date, D::Error> {
        d.deserialize_any(DateVisitor)
    }
}

/// One plain constant, or a list of them (for `in`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Plain {
    /// A single constant.
    One(Value),
    /// A list of constants.
    Many(Vec<Value>),
}

/// Writes a value in its plain form: text and dates as strings.
pub(crate) struct PlainValue<'a>(pub(crate) &'a Value);

impl Serialize for PlainValue<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Value::Text(t) => s.serialize_str(t),
            Value::Int(i) => s.serialize_i64(*i),
            Value::Bool(b) => s.serialize_bool(*b),
            Value::Date(d) => s.collect_str(d),
        }
    }
}

impl Serialize for Plain {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Plain::One(v) => PlainValue(v).serialize(s),
            Plain::Many(vs) => s.collect_seq(vs.iter().map(PlainValue)),
        }
    }
}

struct PlainVisitor {
    allow_list: bool,
}

impl<'de> Visitor<'de> for PlainVisitor {
    type Value = Plain;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.allow_list {
            f.write_str("a string, integer, boolean, date, or a list of them")
        } else {
            f.write_str("a string, integer, boolean or date")
        }
    }
    fn visit_bool<E: de::Error>(self, b: bool) -> Result<Plain, E> {
        Ok(Plain::One(Value::Bool(b)))
    }
    fn visit_i64<E: de::Error>(self, i: i64) -> Result<Plain, E> {
        Ok(Plain::One(Value::Int(i)))
    }
    fn visit_u64<E: de::Error>(self, u: u64) -> Result<Plain, E> {
        i64::try_from(u)
            .map(|i| Plain::One(Value::Int(i)))
            .map_err(|_| E::custom(format!("integer {u} does not fit a signed 64-bit int")))
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<Plain, E> {
        Ok(Plain::One(Value::Text(s.to_owned())))
    }
    fn visit_string<E: de::Error>(self, s: String) -> Result<Plain, E> {
        Ok(Plain::One(Value::Text(s)))
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Plain, A::Error> {
        toml_date(map).map(|d| Plain::One(Value::Date(d)))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Plain, A::Error> {
        if !self.allow_list {
            return Err(de::Error::custom("a list may not contain another list"));
        }
        let mut out = Vec::new();
        while let Some(item) = seq.next_element::<Scalar>()? {
            out.push(item.0);
        }
        Ok(Plain::Many(out))
    }
}

/// A single plain constant (a list element).
struct Scalar(Value);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match d.deserialize_any(PlainVisitor { allow_list: false })? {
            Plain::One(v) => Ok(Scalar(v)),
            Plain::Many(_) => Err(de::Error::custom("a list may not contain another list")),
        }
    }
}

impl<'de> Deserialize<'de> for Plain {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(PlainVisitor { allow_list: true })
    }
}
