//! Strict JSON for what an inspector reads (docs/encoding.md section 10,
//! "Strict JSON"): one reading per text, the same in every inspector.
//!
//! Beyond RFC 8259 (which serde_json already enforces, lone surrogate
//! escapes included), a text is refused if
//!
//! * it nests arrays and objects deeper than [`MAX_DEPTH`] levels (the
//!   outermost value is level 1), so no reader runs out of stack;
//! * an object names a key twice (RFC 8259 leaves the meaning open);
//! * it has `null` anywhere, unless the caller allows it (an evidence
//!   package writes an absent field by leaving it out, never as `null`).
//!
//! Hex (lower case only) is checked where the bytes are read
//! ([`crate::hash::decode_hex`]).

use std::collections::BTreeSet;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, Error as _, MapAccess, SeqAccess, Visitor};

/// The deepest nesting of arrays and objects a strict text may have.
pub const MAX_DEPTH: usize = 64;

/// Checks `text` against the strict rules; `allow_null` admits `null`
/// values. The error says what broke which rule, with serde_json's position.
pub fn check_strict(text: &str, allow_null: bool) -> Result<(), String> {
    let mut de = serde_json::Deserializer::from_str(text);
    Strict {
        depth: 0,
        allow_null,
    }
    .deserialize(&mut de)
    .and_then(|()| de.end())
    .map_err(|e| e.to_string())
}

#[derive(Clone, Copy)]
struct Strict {
    depth: usize,
    allow_null: bool,
}

impl Strict {
    fn deeper<E: serde::de::Error>(self) -> Result<Self, E> {
        if self.depth >= MAX_DEPTH {
            return Err(E::custom(format_args!(
                "JSON nested deeper than {MAX_DEPTH} levels"
            )));
        }
        Ok(Strict {
            depth: self.depth + 1,
            ..self
        })
    }
}

impl<'de> DeserializeSeed<'de> for Strict {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Strict {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_i128<E>(self, _: i128) -> Result<(), E> {
        Ok(())
    }
    fn visit_u128<E>(self, _: u128) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
        if self.allow_null {
            Ok(())
        } else {
            Err(E::custom(
                "null is not allowed here: an absent field is left out",
            ))
        }
    }
    fn visit_none<E: serde::de::Error>(self) -> Result<(), E> {
        self.visit_unit()
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let inner = self.deeper()?;
        while seq.next_element_seed(inner)?.is_some() {}
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let inner = self.deeper()?;
        let mut keys = BTreeSet::new();
        while let Some(k) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if !keys.insert(k.clone().into_owned()) {
                return Err(A::Error::custom(format_args!("duplicate key `{k}`")));
            }
            map.next_value_seed(inner)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(n: usize) -> String {
        format!("{}{}", "[".repeat(n), "]".repeat(n))
    }

    #[test]
    fn plain_json_passes() {
        check_strict(r#"{"a": [1, -2, 3.5, "x\u00e9", true, {"b": {}}]}"#, false).unwrap();
        check_strict(r#"{"a": null}"#, true).unwrap();
    }

    #[test]
    fn nesting_is_bounded() {
        check_strict(&nested(MAX_DEPTH), false).unwrap();
        let e = check_strict(&nested(MAX_DEPTH + 1), false).unwrap_err();
        assert!(e.contains("nested deeper than 64 levels"), "{e}");
        // Far beyond serde_json's own limit and any stack: the same refusal.
        let e = check_strict(&nested(1_000_000), false).unwrap_err();
        assert!(e.contains("nested deeper than 64 levels"), "{e}");
        let deep_obj = format!("{}1{}", r#"{"a":"#.repeat(65), "}".repeat(65));
        assert!(check_strict(&deep_obj, false).is_err());
    }

    #[test]
    fn duplicate_keys_are_refused() {
        let e = check_strict(r#"{"a": 1, "b": {"c": 1, "c": 2}}"#, false).unwrap_err();
        assert!(e.contains("duplicate key `c`"), "{e}");
        // The same key written two ways is the same key.
        assert!(check_strict(r#"{"a": 1, "\u0061": 1}"#, false).is_err());
    }

    #[test]
    fn lone_surrogates_are_refused() {
        for s in [
            r#"["\ud800"]"#,
            r#"["\udc00"]"#,
            r#"{"\ud83d": 1}"#,
            r#"["\ud800\u0041"]"#,
        ] {
            assert!(check_strict(s, true).is_err(), "{s}");
        }
        check_strict(r#"["\ud83d\ude00"]"#, true).unwrap();
    }

    #[test]
    fn null_only_where_allowed() {
        let e = check_strict(r#"{"record": null}"#, false).unwrap_err();
        assert!(e.contains("null is not allowed"), "{e}");
    }

    #[test]
    fn trailing_text_is_refused() {
        assert!(check_strict("{} {}", true).is_err());
    }
}
