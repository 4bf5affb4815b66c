//! Record commitments ("light volume"): a record's fields become salted leaves and
//! the chain holds only their Merkle root. One field can later be disclosed with
//! its salt and path; the other leaves stay hidden behind their random salts.
//!
//! * Leaf data of a field: `enc("tongban/field/v1") ‖ str(name) ‖ salt[32] ‖ value`.
//! * Leaves are ordered by field name (byte order); the commitment is the RFC 6962
//!   root over them.
//! * Salts are derived from one 32-byte record secret kept by the owning
//!   department: `salt = HMAC-SHA256(secret, enc("tongban/salt/v1") ‖ str(name))`,
//!   so a disclosure reveals one salt and nothing about the others.

use std::collections::BTreeMap;

use hmac::{KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use thiserror::Error;

use crate::encoding::Encoder;
use crate::hash::Hash;
use crate::merkle::{self, InclusionProof, MerkleError, MerkleTree};
use crate::value::Value;

/// Domain tag of a field leaf.
pub const FIELD_DOMAIN: &str = "tongban/field/v1";
/// Domain tag of a salt derivation.
pub const SALT_DOMAIN: &str = "tongban/salt/v1";
/// Most fields one record may have.
pub const MAX_FIELDS: usize = 64;
/// Longest field name (bytes).
pub const MAX_FIELD_NAME: usize = 64;

/// Why a record cannot be committed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CommitError {
    /// No fields at all.
    #[error("a record needs at least one field")]
    Empty,
    /// Too many fields.
    #[error("{0} fields exceed the limit of {MAX_FIELDS}")]
    TooManyFields(usize),
    /// A field name that is empty, too long, or not `[a-z0-9_]`.
    #[error("field name `{0}` must be 1–64 characters of a-z, 0-9 and _")]
    FieldName(String),
    /// A text value that is too long.
    #[error("field `{0}`: text value longer than {max} bytes", max = crate::value::MAX_TEXT)]
    ValueTooLong(String),
}

/// Why a field disclosure was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DisclosureError {
    /// The disclosed field is not well formed.
    #[error(transparent)]
    Commit(#[from] CommitError),
    /// The path does not lead to the commitment.
    #[error("field `{field}` does not open the commitment: {source}")]
    Path {
        /// Field name.
        field: String,
        /// The Merkle failure.
        source: MerkleError,
    },
}

/// Checks a field name: 1–64 of `[a-z0-9_]`.
pub fn validate_field_name(name: &str) -> Result<(), CommitError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_FIELD_NAME
        && name
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_');
    if ok {
        Ok(())
    } else {
        Err(CommitError::FieldName(name.to_owned()))
    }
}

fn validate_value(name: &str, v: &Value) -> Result<(), CommitError> {
    match v {
        Value::Text(s) if s.len() > crate::value::MAX_TEXT => {
            Err(CommitError::ValueTooLong(name.to_owned()))
        }
        _ => Ok(()),
    }
}

/// The leaf data of one field.
pub fn field_leaf(name: &str, salt: &[u8; 32], value: &Value) -> Vec<u8> {
    let mut e = Encoder::with_domain(FIELD_DOMAIN);
    e.str(name).raw(salt);
    value.encode(&mut e);
    e.finish()
}

/// The salt of field `name` under a record secret.
pub fn field_salt(secret: &[u8; 32], name: &str) -> [u8; 32] {
    let mut e = Encoder::with_domain(SALT_DOMAIN);
    e.str(name);
    // HMAC accepts keys of any length; a 32-byte key cannot fail.
    let mut mac =
        <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(secret).unwrap_or_else(|_| unreachable!());
    mac.update(e.as_bytes());
    mac.finalize().into_bytes().into()
}

/// A record with its fields, its secret and its tree: what the owning department keeps.
#[derive(Clone)]
pub struct CommittedRecord {
    fields: Vec<(String, Value)>,
    secret: [u8; 32],
    tree: MerkleTree,
}

impl core::fmt::Debug for CommittedRecord {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // Values may be personal data: only names and the commitment are shown.
        let names: Vec<&str> = self.fields.iter().map(|(n, _)| n.as_str()).collect();
        write!(
            f,
            "CommittedRecord {{ fields: {names:?}, commitment: {} }}",
            self.commitment()
        )
    }
}

impl CommittedRecord {
    /// Commits to `fields` with the record secret `secret` (32 random bytes chosen by
    /// the caller and kept with the values).
    pub fn new(fields: BTreeMap<String, Value>, secret: [u8; 32]) -> Result<Self, CommitError> {
        if fields.is_empty() {
            return Err(CommitError::Empty);
        }
        if fields.len() > MAX_FIELDS {
            return Err(CommitError::TooManyFields(fields.len()));
        }
        let mut leaves = Vec::with_capacity(fields.len());
        for (name, value) in &fields {
            validate_field_name(name)?;
            validate_value(name, value)?;
            leaves.push(merkle::leaf_hash(&field_leaf(
                name,
                &field_salt(&secret, name),
                value,
            )));
        }
        let tree = MerkleTree::from_leaf_hashes(&leaves);
        Ok(CommittedRecord {
            fields: fields.into_iter().collect(),
            secret,
            tree,
        })
    }
    /// The commitment (Merkle root over the salted field leaves).
    pub fn commitment(&self) -> Hash {
        self.tree.root()
    }
    /// The record secret (store it with the values; never publish it).
    pub fn secret(&self) -> &[u8; 32] {
        &self.secret
    }
    /// The fields in canonical order.
    pub fn fields(&self) -> &[(String, Value)] {
        &self.fields
    }
    /// One field's value.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.fields
            .binary_search_by(|(n, _)| n.as_str().cmp(name))
            .ok()
            .map(|i| &self.fields[i].1)
    }
    /// A disclosure of one field, or `None` if the record has no such field.
    pub fn disclose(&self, name: &str) -> Option<FieldDisclosure> {
        let i = self
            .fields
            .binary_search_by(|(n, _)| n.as_str().cmp(name))
            .ok()?;
        let proof = self.tree.inclusion_proof(i)?;
        Some(FieldDisclosure {
            name: name.to_owned(),
            value: self.fields[i].1.clone(),
            salt: field_salt(&self.secret, name),
            proof,
        })
    }
}

/// One field opened against a record commitment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldDisclosure {
    /// Field name.
    pub name: String,
    /// Its value.
    pub value: Value,
    /// Its salt.
    #[serde(with = "crate::hash::hex_array")]
    pub salt: [u8; 32],
    /// Its place among the record's leaves.
    pub proof: InclusionProof,
}

/// Checks that `d` opens `commitment`.
pub fn verify_disclosure(commitment: &Hash, d: &FieldDisclosure) -> Result<(), DisclosureError> {
    validate_field_name(&d.name)?;
    validate_value(&d.name, &d.value)?;
    if d.proof.size > MAX_FIELDS as u64 {
        return Err(DisclosureError::Commit(CommitError::TooManyFields(
            usize::try_from(d.proof.size).unwrap_or(usize::MAX),
        )));
    }
    let leaf = merkle::leaf_hash(&field_leaf(&d.name, &d.salt, &d.value));
    merkle::verify_inclusion(&leaf.0, &d.proof, &commitment.0).map_err(|source| {
        DisclosureError::Path {
            field: d.name.clone(),
            source,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::Date;
    use proptest::prelude::*;

    fn record() -> CommittedRecord {
        let mut f = BTreeMap::new();
        f.insert("status".to_owned(), Value::Text("married".into()));
        f.insert(
            "registered_on".to_owned(),
            Value::Date(Date::parse("2019-05-20").unwrap()),
        );
        f.insert(
            "certificate_no".to_owned(),
            Value::Text("J320102-2019-001234".into()),
        );
        CommittedRecord::new(f, [9; 32]).unwrap()
    }

    #[test]
    fn disclose_and_verify_each_field() {
        let r = record();
        for (name, _) in r.fields() {
            let d = r.disclose(name).unwrap();
            verify_disclosure(&r.commitment(), &d).unwrap();
        }
        assert!(r.disclose("missing").is_none());
        assert!(!format!("{r:?}").contains("married"));
    }

    #[test]
    fn a_changed_value_salt_or_name_fails() {
        let r = record();
        let d = r.disclose("status").unwrap();
        let mut v = d.clone();
        v.value = Value::Text("divorced".into());
        assert!(matches!(
            verify_disclosure(&r.commitment(), &v),
            Err(DisclosureError::Path { .. })
        ));
        let mut v = d.clone();
        v.salt[0] ^= 1;
        assert!(verify_disclosure(&r.commitment(), &v).is_err());
        let mut v = d.clone();
        v.name = "registered_on".into();
        assert!(verify_disclosure(&r.commitment(), &v).is_err());
        let mut v = d;
        v.name = "Bad Name".into();
        assert!(matches!(
            verify_disclosure(&r.commitment(), &v),
            Err(DisclosureError::Commit(CommitError::FieldName(_)))
        ));
    }

    #[test]
    fn different_secrets_hide_equal_values() {
        let mut f = BTreeMap::new();
        f.insert("status".to_owned(), Value::Text("married".into()));
        let a = CommittedRecord::new(f.clone(), [1; 32]).unwrap();
        let b = CommittedRecord::new(f, [2; 32]).unwrap();
        assert_ne!(a.commitment(), b.commitment());
    }

    #[test]
    fn refusals() {
        assert_eq!(
            CommittedRecord::new(BTreeMap::new(), [0; 32]).unwrap_err(),
            CommitError::Empty
        );
        let mut f = BTreeMap::new();
        f.insert("Upper".to_owned(), Value::Int(1));
        assert!(matches!(
            CommittedRecord::new(f, [0; 32]),
            Err(CommitError::FieldName(_))
        ));
        let f: BTreeMap<_, _> = (0..65).map(|i| (format!("f{i}"), Value::Int(i))).collect();
        assert_eq!(
            CommittedRecord::new(f, [0; 32]).unwrap_err(),
            CommitError::TooManyFields(65)
        );
    }

    proptest! {
        #[test]
        fn disclosure_never_verifies_against_another_record(a in 0i64..1000, b in 0i64..1000, n in 1usize..10) {
            let f: BTreeMap<_, _> = (0..n).map(|i| (format!("f{i}"), Value::Int(a + i as i64))).collect();
            let g: BTreeMap<_, _> = (0..n).map(|i| (format!("f{i}"), Value::Int(b + i as i64))).collect();
            let r1 = CommittedRecord::new(f, [3; 32]).unwrap();
            let r2 = CommittedRecord::new(g, [3; 32]).unwrap();
            let d = r1.disclose("f0").unwrap();
            prop_assert!(verify_disclosure(&r1.commitment(), &d).is_ok());
            prop_assert_eq!(verify_disclosure(&r2.commitment(), &d).is_ok(), a == b);
        }
    }
}
