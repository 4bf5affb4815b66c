//! Department records: turning a record as a department sends it (plain JSON
//! fields) into the typed values its record type declares, the commitment, the
//! subject references and the transaction the department signs.
//!
//! Client (CLI) and gateway run the same [`prepare`]: the client to sign, the
//! gateway to check that what was signed is exactly what it is given.

use std::collections::BTreeMap;

use proofs::commitment::CommittedRecord;
use proofs::subject::{SubjectId, SubjectKey};
use proofs::tx::{RevokeReason, TxBody, signing_bytes};
use proofs::{Date, Kind, Value};
use regions::{RecordType, Registry};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use crate::ledger::{RecordKey, StoredRecord};

/// Longest record id (bytes).
pub const MAX_RECORD_ID: usize = 128;

/// A record version as a department publishes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordInput {
    /// Registry id of the record type.
    pub record_type: String,
    /// The department's id for the record.
    pub record_id: String,
    /// Version, from 1; version n + 1 supersedes version n.
    pub version: u32,
    /// Field values as plain JSON: strings for text and dates (`YYYY-MM-DD`),
    /// integers, booleans.
    pub fields: serde_json::Map<String, Json>,
    /// When the department issued this version (Unix ms).
    pub issued_ms: u64,
}

/// A publication: the record's fields (as in [`RecordInput`]), its secret and
/// the department's signature. The fields are spelt out rather than flattened
/// so that unknown keys are refused and errors name the exact field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishRequest {
    /// Registry id of the record type.
    pub record_type: String,
    /// The department's id for the record.
    pub record_id: String,
    /// Version, from 1.
    pub version: u32,
    /// Field values as plain JSON.
    pub fields: serde_json::Map<String, Json>,
    /// When issued (Unix ms).
    pub issued_ms: u64,
    /// The record secret its salts derive from (32 bytes, hex).
    pub secret: String,
    /// The department's signature over the commitment transaction (64 bytes, hex).
    pub signature: String,
}

impl PublishRequest {
    /// Builds a request from a record, its secret and the signature.
    pub fn new(r: RecordInput, secret: &[u8; 32], signature: &proofs::keys::Signature) -> Self {
        PublishRequest {
            record_type: r.record_type,
            record_id: r.record_id,
            version: r.version,
            fields: r.fields,
            issued_ms: r.issued_ms,
            secret: hex::encode(secret),
            signature: hex::encode(signature.0),
        }
    }
    /// The record part.
    pub fn record(&self) -> RecordInput {
        RecordInput {
            record_type: self.record_type.clone(),
            record_id: self.record_id.clone(),
            version: self.version,
            fields: self.fields.clone(),
            issued_ms: self.issued_ms,
        }
    }
}

/// A revocation request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevokeRequest {
    /// Record type.
    pub record_type: String,
    /// Record id.
    pub record_id: String,
    /// Version revoked.
    pub version: u32,
    /// Why.
    pub reason: RevokeReason,
    /// When (Unix ms).
    pub at_ms: u64,
    /// The department's signature over the revocation transaction.
    pub signature: String,
}

/// A bulk import: records authorised together by one batch-seal signature.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportRequest {
    /// The records, each with its secret.
    pub records: Vec<ImportRecord>,
    /// The department's signature over the batch seal.
    pub seal_signature: String,
}

/// One record of an import (the fields of [`RecordInput`] and its secret).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportRecord {
    /// Registry id of the record type.
    pub record_type: String,
    /// The department's id for the record.
    pub record_id: String,
    /// Version, from 1.
    pub version: u32,
    /// Field values as plain JSON.
    pub fields: serde_json::Map<String, Json>,
    /// When issued (Unix ms).
    pub issued_ms: u64,
    /// Its secret (hex).
    pub secret: String,
}

impl ImportRecord {
    /// The record part and the secret (hex), without copying the fields.
    pub fn into_parts(self) -> (RecordInput, String) {
        (
            RecordInput {
                record_type: self.record_type,
                record_id: self.record_id,
                version: self.version,
                fields: self.fields,
                issued_ms: self.issued_ms,
            },
            self.secret,
        )
    }
    /// The record part.
    pub fn record(&self) -> RecordInput {
        RecordInput {
            record_type: self.record_type.clone(),
            record_id: self.record_id.clone(),
            version: self.version,
            fields: self.fields.clone(),
            issued_ms: self.issued_ms,
        }
    }
}

/// Why a record was refused. Every variant names the field at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// The record type is not in the registry.
    #[error("unknown record type `{0}`")]
    UnknownType(String),
    /// The department does not own the record type.
    #[error("department `{department}` does not own record type `{record_type}`")]
    NotOwner {
        /// Department.
        department: String,
        /// Record type.
        record_type: String,
    },
    /// A field problem.
    #[error("field `{field}`: {problem}")]
    Field {
        /// The field (dotted path).
        field: String,
        /// What is wrong.
        problem: String,
    },
}

impl RecordError {
    /// Stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            RecordError::UnknownType(_) => "record.unknown_type",
            RecordError::NotOwner { .. } => "record.not_owner",
            RecordError::Field { .. } => "record.invalid_field",
        }
    }
    /// The field at fault, for the JSON error.
    pub fn field(&self) -> Option<String> {
        match self {
            RecordError::UnknownType(_) | RecordError::NotOwner { .. } => {
                Some("record_type".into())
            }
            RecordError::Field { field, .. } => Some(field.clone()),
        }
    }
}

fn field_err(field: impl Into<String>, problem: impl Into<String>) -> RecordError {
    RecordError::Field {
        field: field.into(),
        problem: problem.into(),
    }
}

/// Checks an id: 1–128 bytes, no control characters.
pub fn validate_id(field: &str, id: &str) -> Result<(), RecordError> {
    if id.is_empty() || id.len() > MAX_RECORD_ID {
        return Err(field_err(field, format!("must be 1–{MAX_RECORD_ID} bytes")));
    }
    if id.chars().any(char::is_control) {
        return Err(field_err(field, "must not contain control characters"));
    }
    Ok(())
}

/// Types plain JSON fields by the record type's declarations.
pub fn typed_fields(
    rt: &RecordType,
    fields: &serde_json::Map<String, Json>,
) -> Result<BTreeMap<String, Value>, RecordError> {
    let mut out = BTreeMap::new();
    if fields.is_empty() {
        return Err(field_err("fields", "a record needs at least one field"));
    }
    for (name, v) in fields {
        let path = format!("fields.{name}");
        let kind = rt.kind_of(name).ok_or_else(|| {
            field_err(&path, format!("record type `{}` has no such field", rt.id))
        })?;
        let value = match (kind, v) {
            (Kind::Text, Json::String(s)) => {
                if s.len() > proofs::value::MAX_TEXT {
                    return Err(field_err(
                        &path,
                        format!("longer than {} bytes", proofs::value::MAX_TEXT),
                    ));
                }
                Value::Text(s.clone())
            }
            (Kind::Int, Json::Number(n)) => Value::Int(
                n.as_i64()
                    .ok_or_else(|| field_err(&path, "must be an integer within 64 bits"))?,
            ),
            (Kind::Bool, Json::Bool(b)) => Value::Bool(*b),
            (Kind::Date, Json::String(s)) => Value::Date(
                Date::parse(s)
                    .ok_or_else(|| field_err(&path, format!("`{s}` is not a date YYYY-MM-DD")))?,
            ),
            (k, other) => {
                let found = match other {
                    Json::Null => "null",
                    Json::Bool(_) => "a boolean",
                    Json::Number(_) => "a number",
                    Json::String(_) => "a string",
                    Json::Array(_) => "an array",
                    Json::Object(_) => "an object",
                };
                let want = match k {
                    Kind::Text => "a string",
                    Kind::Int => "an integer",
                    Kind::Bool => "a boolean",
                    Kind::Date => "a date string YYYY-MM-DD",
                };
                return Err(field_err(&path, format!("must be {want}, found {found}")));
            }
        };
        out.insert(name.clone(), value);
    }
    Ok(out)
}

/// The subjects named by the record's subject fields (at least one).
pub fn subjects_of(
    rt: &RecordType,
    fields: &BTreeMap<String, Value>,
) -> Result<Vec<SubjectId>, RecordError> {
    let mut out = Vec::new();
    for name in &rt.subject {
        match fields.get(name) {
            None => {}
            Some(Value::Text(s)) => {
                let id = SubjectId::infer(s)
                    .map_err(|e| field_err(format!("fields.{name}"), e.to_string()))?;
                if !out.contains(&id) {
                    out.push(id);
                }
            }
            Some(_) => {
                return Err(field_err(
                    format!("fields.{name}"),
                    "a subject field must be text",
                ));
            }
        }
    }
    if out.is_empty() {
        return Err(field_err(
            "fields",
            format!(
                "at least one subject field ({}) is required",
                rt.subject.join(", ")
            ),
        ));
    }
    if out.len() > proofs::tx::MAX_SUBJECTS {
        return Err(field_err(
            "fields",
            format!("at most {} subjects", proofs::tx::MAX_SUBJECTS),
        ));
    }
    Ok(out)
}

/// The record type, after checking that `department` owns it and that the id
/// and version are well formed.
fn checked_target<'r>(
    registry: &'r Registry,
    department: &str,
    record_type: &str,
    record_id: &str,
    version: u32,
) -> Result<&'r RecordType, RecordError> {
    let rt = registry
        .record_type(record_type)
        .ok_or_else(|| RecordError::UnknownType(record_type.to_owned()))?;
    let owns = registry
        .department(department)
        .is_some_and(|d| d.owns.iter().any(|t| t == record_type));
    if !owns {
        return Err(RecordError::NotOwner {
            department: department.to_owned(),
            record_type: record_type.to_owned(),
        });
    }
    validate_id("record_id", record_id)?;
    if version == 0 {
        return Err(field_err("version", "versions start at 1"));
    }
    Ok(rt)
}

/// A record checked and committed, with the transaction body to sign.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// Which record.
    pub key: RecordKey,
    /// What the department store keeps.
    pub record: StoredRecord,
    /// The commitment transaction's body.
    pub body: TxBody,
    /// The bytes the department signs.
    pub signing_bytes: Vec<u8>,
}

/// Checks `input` against the registry and commits it with `secret`.
pub fn prepare(
    registry: &Registry,
    chain_id: &str,
    department: &str,
    input: &RecordInput,
    secret: [u8; 32],
    subject_key: &SubjectKey,
) -> Result<Prepared, RecordError> {
    let rt = checked_target(
        registry,
        department,
        &input.record_type,
        &input.record_id,
        input.version,
    )?;
    let fields = typed_fields(rt, &input.fields)?;
    let subjects = subjects_of(rt, &fields)?;
    let committed = CommittedRecord::new(fields.clone(), secret)
        .map_err(|e| field_err("fields", e.to_string()))?;
    let mut subject_refs: Vec<_> = subjects.iter().map(|s| subject_key.reference(s)).collect();
    subject_refs.sort();
    subject_refs.dedup();
    let body = TxBody::RecordCommit {
        record_type: input.record_type.clone(),
        record_id: input.record_id.clone(),
        subjects: subject_refs.clone(),
        version: input.version,
        commitment: committed.commitment(),
        issued_ms: input.issued_ms,
    };
    let signing_bytes = signing_bytes(chain_id, department, &body);
    Ok(Prepared {
        key: RecordKey {
            department: department.to_owned(),
            record_type: input.record_type.clone(),
            record_id: input.record_id.clone(),
        },
        record: StoredRecord {
            version: input.version,
            subjects,
            subject_refs,
            fields,
            secret,
            commitment: committed.commitment(),
            issued_ms: input.issued_ms,
            location: None,
        },
        body,
        signing_bytes,
    })
}

/// The revocation body and its signing bytes.
pub fn revocation(
    registry: &Registry,
    chain_id: &str,
    department: &str,
    r: &RevokeRequest,
) -> Result<(RecordKey, TxBody, Vec<u8>), RecordError> {
    checked_target(
        registry,
        department,
        &r.record_type,
        &r.record_id,
        r.version,
    )?;
    let body = TxBody::RecordRevoke {
        record_type: r.record_type.clone(),
        record_id: r.record_id.clone(),
        version: r.version,
        reason: r.reason,
        at_ms: r.at_ms,
    };
    let sb = signing_bytes(chain_id, department, &body);
    Ok((
        RecordKey {
            department: department.to_owned(),
            record_type: r.record_type.clone(),
            record_id: r.record_id.clone(),
        },
        body,
        sb,
    ))
}

/// What the owner reads back: one version with its values and status.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VersionView {
    /// Version.
    pub version: u32,
    /// `current`, `superseded` or `revoked`.
    pub status: String,
    /// Field values.
    pub fields: BTreeMap<String, Value>,
    /// The subjects (owner only).
    pub subjects: Vec<SubjectId>,
    /// The commitment on chain.
    pub commitment: proofs::Hash,
    /// When issued.
    pub issued_ms: u64,
    /// Where the commitment transaction is.
    pub location: Option<crate::ledger::TxLocation>,
    /// The revocation, if any.
    pub revocation: Option<crate::ledger::Revocation>,
}
