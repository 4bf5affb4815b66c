//! Department records: publish (and supersede with a higher version), revoke,
//! bulk import, read back, and single-field disclosure with its proof.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use proofs::Hash;
use proofs::bundle::ProofBundle;
use proofs::commitment::{CommittedRecord, FieldDisclosure};
use proofs::keys::Signature;
use proofs::trust::Role;
use proofs::tx::{Authorization, Transaction, TxBody};
use serde::{Deserialize, Serialize};

use super::Path;
use super::{ApiError, Signed};
use crate::ledger::{Intent, Outcome, PreparedTx, Publish, RecordKey};
use crate::records::{
    self, ImportRequest, PublishRequest, RecordError, RevokeRequest, VersionView,
};
use crate::state::AppState;
use crate::writer::SubmitError;

/// Most records in one batch or import request.
pub const MAX_BATCH_RECORDS: usize = 10_000;

fn record_error(e: RecordError) -> ApiError {
    let status = match e {
        RecordError::NotOwner { .. } => StatusCode::FORBIDDEN,
        RecordError::UnknownType(_) | RecordError::Field { .. } => StatusCode::UNPROCESSABLE_ENTITY,
    };
    let mut err = ApiError::new(status, e.code(), e.to_string());
    err.field = e.field();
    err
}

fn parse_hex<const N: usize>(field: &str, s: &str) -> Result<[u8; N], ApiError> {
    proofs::hash::parse_fixed_hex::<N>(s).map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "request.invalid",
            format!("{field}: {e}"),
        )
        .field(field)
    })
}

fn submit_error(e: SubmitError) -> ApiError {
    match e {
        SubmitError::Busy => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "ledger.busy",
            "the ledger queue is full; retry shortly",
        ),
        SubmitError::Stopped => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "ledger.stopped",
            "the ledger writer has stopped; nothing was written",
        ),
        SubmitError::Ledger(e) => e.into(),
    }
}

/// The answer to one publication or revocation.
#[derive(Debug, Serialize, Deserialize)]
pub struct WriteResult {
    /// `written`, `duplicate` or `rejected`.
    pub outcome: String,
    /// Where the transaction is (written or duplicate).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<crate::ledger::TxLocation>,
    /// Why it was rejected.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// Explanation of a rejection.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl From<Outcome> for WriteResult {
    fn from(o: Outcome) -> Self {
        match o {
            Outcome::Written { location } => WriteResult {
                outcome: "written".into(),
                location: Some(location),
                code: None,
                message: None,
            },
            Outcome::Duplicate { location } => WriteResult {
                outcome: "duplicate".into(),
                location: Some(location),
                code: None,
                message: None,
            },
            Outcome::Rejected { code, message } => WriteResult {
                outcome: "rejected".into(),
                location: None,
                code: Some(code.into()),
                message: Some(message),
            },
        }
    }
}

/// Several results.
#[derive(Debug, Serialize, Deserialize)]
pub struct BatchResult {
    /// One per record, in request order.
    pub results: Vec<WriteResult>,
}

fn single(outcome: Outcome) -> Result<(StatusCode, Json<WriteResult>), ApiError> {
    // A refusal is an error like any other: 409 with the error body and its code.
    let status = match outcome {
        Outcome::Written { .. } => StatusCode::CREATED,
        Outcome::Duplicate { .. } => StatusCode::OK,
        Outcome::Rejected { code, message } => {
            return Err(ApiError::new(StatusCode::CONFLICT, code, message));
        }
    };
    Ok((status, Json(outcome.into())))
}

/// Checks one signed publication and turns it into an intent (no I/O).
fn publication(
    s: &AppState,
    department: &str,
    p: &PublishRequest,
    at: &str,
) -> Result<Intent, ApiError> {
    let secret = parse_hex::<32>(&format!("{at}secret"), &p.secret)?;
    let sig = parse_hex::<64>(&format!("{at}signature"), &p.signature)?;
    let prepared = records::prepare(
        &s.registry,
        s.ledger.chain_id(),
        department,
        &p.record(),
        secret,
        &s.subject_key,
    )
    .map_err(|e| {
        let mut err = record_error(e);
        err.field = err.field.map(|f| format!("{at}{f}"));
        err
    })?;
    let member = s
        .roots
        .members
        .get(department)
        .ok_or_else(|| ApiError::internal("authenticated member vanished"))?;
    member
        .signing
        .verify(&prepared.signing_bytes, &Signature(sig))
        .map_err(|_| {
            ApiError::bad(
                "record.bad_signature",
                format!("{at}signature"),
                "the signature does not verify over this record's commitment transaction",
            )
        })?;
    let tx = Transaction {
        chain_id: s.ledger.chain_id().to_owned(),
        author: department.to_owned(),
        body: prepared.body,
        auth: Authorization::Signed(Signature(sig)),
    };
    Ok(Intent::Publish(Box::new(Publish {
        key: prepared.key,
        record: prepared.record,
        tx: PreparedTx::new(&tx),
    })))
}

/// `POST /v1/records`: publish a record version (version n + 1 supersedes n).
/// 201 when written, 200 when the identical version was already written, 409 when refused.
pub async fn publish(
    State(s): State<Arc<AppState>>,
    signed: Signed,
) -> Result<(StatusCode, Json<WriteResult>), ApiError> {
    signed.require_local(Role::Department, s.ledger.chain_id())?;
    let req: PublishRequest = signed.json()?;
    let intent = publication(&s, &signed.member.id, &req, "")?;
    let mut out = s.writer.submit(vec![intent]).await.map_err(submit_error)?;
    let outcome = out
        .pop()
        .and_then(|mut v| v.pop())
        .ok_or_else(|| ApiError::internal("writer returned no outcome"))?;
    single(outcome)
}

/// A batch of individually signed publications.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    /// The publications.
    pub records: Vec<PublishRequest>,
}

/// `POST /v1/records/batch`: many individually signed publications in one
/// request; each gets its own result. Any malformed record refuses the whole
/// request (nothing is written).
pub async fn publish_batch(
    State(s): State<Arc<AppState>>,
    signed: Signed,
) -> Result<Json<BatchResult>, ApiError> {
    signed.require_local(Role::Department, s.ledger.chain_id())?;
    let req: BatchRequest = signed.json()?;
    if req.records.is_empty() || req.records.len() > MAX_BATCH_RECORDS {
        return Err(ApiError::unprocessable(
            "request.invalid",
            "records",
            format!("a batch holds 1–{MAX_BATCH_RECORDS} records"),
        ));
    }
    let dept = signed.member.id.clone();
    let s2 = s.clone();
    // Signature checks are the costly part: run them off the async workers.
    let intents = tokio::task::spawn_blocking(move || {
        req.records
            .iter()
            .enumerate()
            .map(|(i, r)| publication(&s2, &dept, r, &format!("records[{i}].")))
            .collect::<Result<Vec<_>, _>>()
    })
    .await
    .map_err(ApiError::internal)??;
    let out = s.writer.submit(intents).await.map_err(submit_error)?;
    Ok(Json(BatchResult {
        results: out.into_iter().flatten().map(WriteResult::from).collect(),
    }))
}

/// `POST /v1/records/import`: bulk import authorised by one batch-seal
/// signature over the Merkle root of the records' transactions. Written whole
/// or not at all; a batch already written answers `duplicate` for each record.
pub async fn import(
    State(s): State<Arc<AppState>>,
    signed: Signed,
) -> Result<Json<BatchResult>, ApiError> {
    signed.require_local(Role::Department, s.ledger.chain_id())?;
    let req: ImportRequest = signed.json()?;
    if req.records.is_empty() || req.records.len() > MAX_BATCH_RECORDS {
        return Err(ApiError::unprocessable(
            "request.invalid",
            "records",
            format!("an import batch holds 1–{MAX_BATCH_RECORDS} records"),
        ));
    }
    let dept = signed.member.id.clone();
    let s2 = s.clone();
    let intent = tokio::task::spawn_blocking(move || -> Result<Intent, ApiError> {
        let seal_sig = parse_hex::<64>("seal_signature", &req.seal_signature)?;
        let mut prepared = Vec::with_capacity(req.records.len());
        for (i, r) in req.records.into_iter().enumerate() {
            let (record, secret) = r.into_parts();
            // The field's full name is only built when it is needed.
            let secret = parse_hex::<32>("secret", &secret)
                .or_else(|_| parse_hex::<32>(&format!("records[{i}].secret"), &secret))?;
            let p = records::prepare(
                &s2.registry,
                s2.ledger.chain_id(),
                &dept,
                &record,
                secret,
                &s2.subject_key,
            )
            .map_err(|e| {
                let mut err = record_error(e);
                err.field = err.field.map(|f| format!("records[{i}].{f}"));
                err
            })?;
            prepared.push(p);
        }
        let bodies: Vec<TxBody> = prepared.iter().map(|p| p.body.clone()).collect();
        let leaves: Vec<Hash> = prepared
            .iter()
            .map(|p| proofs::merkle::leaf_hash(&p.signing_bytes))
            .collect();
        // The levels go to the ledger with the batch (it stores them for member
        // paths), so the writer does not hash the batch a second time.
        let member_levels = proofs::merkle::flat_levels(&leaves);
        let root = proofs::merkle::root_from_levels(&member_levels)
            .ok_or_else(|| ApiError::internal("an empty batch has no root"))?;
        let seal_body = TxBody::BatchSeal {
            root,
            count: bodies.len() as u32,
        };
        let seal = Transaction {
            chain_id: s2.ledger.chain_id().to_owned(),
            author: dept.clone(),
            body: seal_body,
            auth: Authorization::Signed(Signature(seal_sig)),
        };
        let member = s2
            .roots
            .members
            .get(&dept)
            .ok_or_else(|| ApiError::internal("authenticated member vanished"))?;
        seal.verify_author(&s2.roots).map_err(|_| {
            let _ = member;
            ApiError::bad(
                "record.bad_signature",
                "seal_signature",
                "the seal signature does not verify over the Merkle root of these records",
            )
        })?;
        let members = prepared
            .into_iter()
            .enumerate()
            .map(|(i, p)| {
                let tx = Transaction {
                    chain_id: s2.ledger.chain_id().to_owned(),
                    author: dept.clone(),
                    body: p.body,
                    auth: Authorization::Batched {
                        root,
                        index: i as u32,
                    },
                };
                Publish {
                    key: p.key,
                    record: p.record,
                    tx: PreparedTx::new(&tx),
                }
            })
            .collect();
        Ok(Intent::Import {
            seal: PreparedTx::new(&seal),
            root,
            members,
            member_levels,
        })
    })
    .await
    .map_err(ApiError::internal)??;
    let out = s.writer.submit(vec![intent]).await.map_err(submit_error)?;
    Ok(Json(BatchResult {
        results: out.into_iter().flatten().map(WriteResult::from).collect(),
    }))
}

/// `POST /v1/records/revoke`: revoke one version (a new transaction; history stays).
pub async fn revoke(
    State(s): State<Arc<AppState>>,
    signed: Signed,
) -> Result<(StatusCode, Json<WriteResult>), ApiError> {
    signed.require_local(Role::Department, s.ledger.chain_id())?;
    let req: RevokeRequest = signed.json()?;
    let sig = parse_hex::<64>("signature", &req.signature)?;
    let (key, body, sb) =
        records::revocation(&s.registry, s.ledger.chain_id(), &signed.member.id, &req)
            .map_err(record_error)?;
    signed
        .member
        .signing
        .verify(&sb, &Signature(sig))
        .map_err(|_| {
            ApiError::bad(
                "record.bad_signature",
                "signature",
                "the signature does not verify over this revocation transaction",
            )
        })?;
    let tx = Transaction {
        chain_id: s.ledger.chain_id().to_owned(),
        author: signed.member.id.clone(),
        body,
        auth: Authorization::Signed(Signature(sig)),
    };
    let intent = Intent::Revoke {
        key,
        version: req.version,
        reason: req.reason,
        at_ms: req.at_ms,
        tx: PreparedTx::new(&tx),
    };
    let mut out = s.writer.submit(vec![intent]).await.map_err(submit_error)?;
    single(
        out.pop()
            .and_then(|mut v| v.pop())
            .ok_or_else(|| ApiError::internal("writer returned no outcome"))?,
    )
}

/// A record as its owner reads it back.
#[derive(Debug, Serialize, Deserialize)]
pub struct RecordView {
    /// Record type.
    pub record_type: String,
    /// Record id.
    pub record_id: String,
    /// The version in force, if any.
    pub current: Option<u32>,
    /// Every version, oldest first.
    pub versions: Vec<VersionView>,
}

fn owner_key(
    signed: &Signed,
    s: &AppState,
    record_type: &str,
    record_id: &str,
) -> Result<RecordKey, ApiError> {
    signed.require_local(Role::Department, s.ledger.chain_id())?;
    let owns = s
        .registry
        .department(&signed.member.id)
        .is_some_and(|d| d.owns.iter().any(|t| t == record_type));
    if s.registry.record_type(record_type).is_none() {
        return Err(ApiError::not_found(
            "record.unknown_type",
            format!("unknown record type `{record_type}`"),
        ));
    }
    if !owns {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "record.not_owner",
            format!(
                "`{}` does not own record type `{record_type}`; only the owner reads values",
                signed.member.id
            ),
        ));
    }
    Ok(RecordKey {
        department: signed.member.id.clone(),
        record_type: record_type.to_owned(),
        record_id: record_id.to_owned(),
    })
}

/// `GET /v1/records/{record_type}/{record_id}`: every version with values and
/// status, for the owning department only.
pub async fn read(
    State(s): State<Arc<AppState>>,
    Path((record_type, record_id)): Path<(String, String)>,
    signed: Signed,
) -> Result<Json<RecordView>, ApiError> {
    let key = owner_key(&signed, &s, &record_type, &record_id)?;
    let state = s
        .ledger
        .record_state(&key)?
        .ok_or_else(|| ApiError::not_found("record.not_found", "no such record"))?;
    let mut versions = Vec::with_capacity(state.latest as usize);
    for v in 1..=state.latest {
        let Some(r) = s.ledger.record_version(&key, v)? else {
            continue;
        };
        let revocation = state.revocations.iter().find(|x| x.version == v).cloned();
        let status = if revocation.is_some() {
            "revoked"
        } else if v < state.latest {
            "superseded"
        } else {
            "current"
        };
        versions.push(VersionView {
            version: v,
            status: status.into(),
            fields: r.fields,
            subjects: r.subjects,
            commitment: r.commitment,
            issued_ms: r.issued_ms,
            location: r.location,
            revocation,
        });
    }
    Ok(Json(RecordView {
        record_type,
        record_id,
        current: state.current(),
        versions,
    }))
}

/// A field disclosure with the proof of the commitment it opens.
#[derive(Debug, Serialize, Deserialize)]
pub struct DisclosureView {
    /// The field opened against the record commitment.
    pub disclosure: FieldDisclosure,
    /// The commitment transaction's proof bundle.
    pub bundle: ProofBundle,
}

/// `GET /v1/records/{type}/{id}/versions/{version}/fields/{field}`: one field
/// with salt and path, and the bundle of its commitment (owner only).
pub async fn disclose(
    State(s): State<Arc<AppState>>,
    Path((record_type, record_id, version, field)): Path<(String, String, String, String)>,
    signed: Signed,
) -> Result<Json<DisclosureView>, ApiError> {
    let key = owner_key(&signed, &s, &record_type, &record_id)?;
    let version: u32 = version.parse().map_err(|_| {
        ApiError::bad(
            "request.invalid",
            "version",
            "version must be a positive integer",
        )
    })?;
    let r = s.ledger.record_version(&key, version)?.ok_or_else(|| {
        ApiError::not_found(
            "record.not_found",
            format!("no version {version} of this record"),
        )
    })?;
    let committed = CommittedRecord::new(r.fields, r.secret).map_err(ApiError::internal)?;
    if committed.commitment() != r.commitment {
        return Err(ApiError::internal(
            "stored values do not match their commitment",
        ));
    }
    let disclosure = committed.disclose(&field).ok_or_else(|| {
        ApiError::not_found(
            "record.no_such_field",
            format!("this version has no field `{field}`"),
        )
        .field("field")
    })?;
    let loc = r
        .location
        .ok_or_else(|| ApiError::internal("stored record without location"))?;
    let bundle = s
        .ledger
        .bundle(&loc.leaf)?
        .ok_or_else(|| ApiError::internal("committed transaction missing"))?;
    Ok(Json(DisclosureView { disclosure, bundle }))
}
