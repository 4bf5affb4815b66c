//! Selective matches over HTTP: a centre or department asks its own gateway;
//! the subject's access ledger; the light clients' state and the operator's
//! unfreeze after a fork.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use proofs::Role;
use proofs::matching::MatchRequest;
use proofs::subject::SubjectId;
use proofs::tx::{Transaction, TxBody};
use relay::RelayError;
use serde::{Deserialize, Serialize};

use super::Path;
use super::{ApiError, Signed};
use crate::matching::{Checked, verify};
use crate::state::AppState;

fn refusal_status(code: &str) -> StatusCode {
    match code {
        "match.bad_signature" | "match.unknown_requester" => StatusCode::UNAUTHORIZED,
        "match.replayed" => StatusCode::CONFLICT,
        "match.expired" | "match.not_yet_valid" => StatusCode::UNPROCESSABLE_ENTITY,
        c if c.starts_with("relay.") => StatusCode::BAD_GATEWAY,
        "match.malformed_answer" => StatusCode::BAD_GATEWAY,
        "match.rate_limited" | "match.daily_cap" => StatusCode::TOO_MANY_REQUESTS,
        "ledger.unavailable" | "internal" => StatusCode::SERVICE_UNAVAILABLE,
        "store.corrupt" => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::UNPROCESSABLE_ENTITY,
    }
}

#[derive(Serialize)]
struct Unverified<'a> {
    error: UnverifiedInner<'a>,
    #[serde(flatten)]
    checked: &'a Checked,
}

#[derive(Serialize)]
struct UnverifiedInner<'a> {
    code: &'a str,
    message: &'a str,
}

/// `POST /v1/matches`: the body is a [`MatchRequest`] signed by the caller.
/// Answers 200 with the answer and its verification report once every fact
/// holds; 502 `match.unverified` with the report otherwise.
pub async fn ask(State(state): State<Arc<AppState>>, signed: Signed) -> Result<Response, ApiError> {
    let m = &signed.member;
    if !matches!(m.role, Role::ServiceCentre | Role::Department) || m.city != state.city {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "auth.forbidden",
            "matches are asked by this city's service centres and departments",
        ));
    }
    let req: MatchRequest = signed.json()?;
    if req.requester != m.id {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "match.requester_mismatch",
            format!(
                "the request is by `{}`, the call by `{}`",
                req.requester, m.id
            ),
        )
        .field("requester"));
    }
    req.verify_signature(&state.roots).map_err(|e| {
        ApiError::new(refusal_status(e.code()), e.code(), e.to_string()).field("signature")
    })?;
    let provider = state
        .roots
        .members
        .get(&req.provider)
        .filter(|p| p.role == Role::Department)
        .ok_or_else(|| {
            ApiError::unprocessable(
                "match.unknown_provider",
                "provider",
                format!("`{}` is not a department in the registry", req.provider),
            )
        })?;
    state
        .light
        .check_usable(&provider.chain)
        .map_err(|e| ApiError::new(StatusCode::CONFLICT, e.code(), e.to_string()))?;
    let gateway = state
        .registry
        .city(&provider.city)
        .map(|c| c.gateway.id.clone())
        .ok_or_else(|| ApiError::internal("provider city without a gateway"))?;
    let answer = if gateway == state.gateway_id {
        crate::matching::answer(&state, req.clone())
            .await
            .map_err(|r| ApiError::new(refusal_status(&r.code), r.code, r.message))?
    } else {
        crate::matching::ask_remote(&state, &gateway, &req)
            .await
            .map_err(|e| match e {
                RelayError::Refused(r) if r.code == "relay.disabled" => {
                    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, r.code, r.message)
                }
                RelayError::Refused(r) => ApiError::new(refusal_status(&r.code), r.code, r.message),
                RelayError::Unreachable { .. } => ApiError::new(
                    StatusCode::GATEWAY_TIMEOUT,
                    "relay.unreachable",
                    e.to_string(),
                ),
                other => ApiError::new(
                    StatusCode::BAD_GATEWAY,
                    other.code().to_owned(),
                    other.to_string(),
                ),
            })?
    };
    let checked = verify(&state, &req, answer)
        .map_err(|r| ApiError::new(refusal_status(&r.code), r.code, r.message))?;
    if checked.verified {
        Ok((StatusCode::OK, Json(checked)).into_response())
    } else {
        let code = checked
            .report
            .first_failure_code()
            .unwrap_or("match.unverified");
        let body = Unverified {
            error: UnverifiedInner {
                code: "match.unverified",
                message: code,
            },
            checked: &checked,
        };
        Ok((StatusCode::BAD_GATEWAY, Json(body)).into_response())
    }
}

/// Body of `POST /v1/access-ledger` (the identifier stays out of URLs and logs).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessQuery {
    /// The subject's identifier.
    pub subject: String,
}

/// One access to a subject's data.
#[derive(Debug, Serialize)]
pub struct AccessRecord {
    /// Who asked.
    pub requester: String,
    /// The department asked.
    pub provider: String,
    /// Under which contract and version.
    pub contract: String,
    #[allow(missing_docs)]
    pub contract_version: u32,
    /// The question's shape: record type, purpose, the fields and operators
    /// tested and the fields asked for (never the values compared with).
    pub question: Option<serde_json::Value>,
    /// Its hash, as logged.
    pub question_hash: proofs::Hash,
    /// The committed answer.
    pub answer_commitment: proofs::Hash,
    /// The request id.
    pub request_id: proofs::Hash,
    /// When (Unix ms).
    pub at_ms: u64,
    /// Where the access-log entry is on this chain.
    pub location: crate::ledger::TxLocation,
}

/// `POST /v1/access-ledger`: every access to the subject's records kept by
/// the calling department (a department of this city that keeps records of
/// the subject; other departments' accesses are not shown).
pub async fn access_ledger(
    State(state): State<Arc<AppState>>,
    signed: Signed,
) -> Result<Json<Vec<AccessRecord>>, ApiError> {
    signed.require_local(Role::Department, state.ledger.chain_id())?;
    let q: AccessQuery = signed.json()?;
    let id = SubjectId::infer(&q.subject)
        .map_err(|e| ApiError::unprocessable("subject.invalid", "subject", e.to_string()))?;
    let subject = state.subject_key.reference(&id);
    let owns = state
        .ledger
        .records_of_subject(&subject)?
        .iter()
        .any(|k| k.department == signed.member.id);
    if !owns {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "access.not_owner",
            "only a department that keeps records of this subject may read its access ledger",
        ));
    }
    let mut out = Vec::new();
    for (_, loc) in state.ledger.accesses_of_subject(&subject, 0)? {
        let Some(bytes) = state.ledger.tx_bytes(loc.height, loc.index)? else {
            continue;
        };
        let tx = Transaction::decode(&bytes).map_err(ApiError::internal)?;
        if let TxBody::AccessLog {
            requester,
            provider,
            contract,
            contract_version,
            question,
            answer,
            request_id,
            at_ms,
            ..
        } = tx.body
        {
            // A department sees only the accesses to its own records.
            if provider != signed.member.id {
                continue;
            }
            let text = crate::matching::kept_question(&state, &request_id);
            out.push(AccessRecord {
                requester,
                provider,
                contract,
                contract_version,
                question: text.and_then(|t| serde_json::from_str(&t).ok()),
                question_hash: question,
                answer_commitment: answer,
                request_id,
                at_ms,
                location: loc,
            });
        }
    }
    Ok(Json(out))
}

/// `GET /v1/light`: each followed chain's linked height, highest header and fork evidence.
pub async fn light_status(State(state): State<Arc<AppState>>) -> Json<serde_json::Value> {
    let mut m = serde_json::Map::new();
    for c in state.light.chains() {
        if let Some(s) = state.light.status(&c) {
            m.insert(c, serde_json::to_value(s).unwrap_or_default());
        }
    }
    Json(serde_json::Value::Object(m))
}

/// `POST /v1/light/{chain}/unfreeze`: the operator (signing with this
/// gateway's own key) clears a chain's fork evidence after investigating.
pub async fn unfreeze(
    State(state): State<Arc<AppState>>,
    Path(chain): Path<String>,
    signed: Signed,
) -> Result<Json<serde_json::Value>, ApiError> {
    if signed.member.id != state.gateway_id {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "auth.forbidden",
            "only this gateway's operator key may clear fork evidence",
        ));
    }
    match state
        .light
        .unfreeze(&chain, state.clock.now_ms())
        .map_err(ApiError::internal)?
    {
        Some(e) => Ok(Json(serde_json::json!({ "cleared": e }))),
        None => Err(ApiError::not_found(
            "chain.not_frozen",
            format!("chain `{chain}` is not frozen"),
        )),
    }
}
