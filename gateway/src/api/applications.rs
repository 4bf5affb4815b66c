//! Applications (service centres) and inboxes (utilities and departments).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use proofs::{Hash, Role};
use regions::application::Application;
use serde::{Deserialize, Serialize};

use super::Path;
use super::{ApiError, Signed};
use crate::inbox::{InboxItem, ReceiptRequest};
use crate::ledger::Outcome;
use crate::state::AppState;

/// Body of `POST /v1/applications`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubmitRequest {
    /// The bundle id.
    pub bundle: String,
    /// The centre's own reference (idempotency: one application per reference).
    pub reference: String,
    /// Parameter values by id (strings, integers, booleans; dates as `YYYY-MM-DD`).
    pub params: serde_json::Map<String, serde_json::Value>,
}

/// An application as the API shows it.
#[derive(Debug, Serialize, Deserialize)]
pub struct ApplicationView {
    /// True if this call created it.
    #[serde(default)]
    pub created: bool,
    /// The application.
    #[serde(flatten)]
    pub application: Application,
}

impl ApplicationView {
    /// The application's id.
    pub fn id(&self) -> Hash {
        Hash::from_hex(&self.application.id).unwrap_or(Hash([0; 32]))
    }
}

fn engine(state: &AppState) -> Result<&crate::applications::Engine, ApiError> {
    state.engine.get().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "application.engine_stopped",
            "the application engine is not running",
        )
    })
}

/// `POST /v1/applications`: a service centre submits an application.
pub async fn submit(
    State(state): State<Arc<AppState>>,
    signed: Signed,
) -> Result<(StatusCode, Json<ApplicationView>), ApiError> {
    signed.require_local(Role::ServiceCentre, state.ledger.chain_id())?;
    let req: SubmitRequest = signed.json()?;
    if req.reference.is_empty() || req.reference.len() > 128 {
        return Err(ApiError::unprocessable(
            "request.invalid",
            "reference",
            "must be 1 to 128 bytes",
        ));
    }
    let (a, created) = engine(&state)?
        .submit(
            &state,
            &signed.member.id,
            &req.bundle,
            &req.reference,
            &req.params,
        )
        .await
        .map_err(|e| {
            let status = match e {
                crate::applications::SubmitError::Ledger(_) => StatusCode::SERVICE_UNAVAILABLE,
                crate::applications::SubmitError::NoCustody(_) => StatusCode::FORBIDDEN,
                _ => StatusCode::UNPROCESSABLE_ENTITY,
            };
            ApiError::new(status, e.code(), e.to_string())
        })?;
    Ok((
        if created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        },
        Json(ApplicationView {
            created,
            application: a,
        }),
    ))
}

/// `GET /v1/applications/{id}`: status and timeline, for the centre that took it.
pub async fn status(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    signed: Signed,
) -> Result<Json<ApplicationView>, ApiError> {
    signed.require_local(Role::ServiceCentre, state.ledger.chain_id())?;
    let id = Hash::from_hex(&id)
        .map_err(|_| ApiError::bad("request.invalid", "id", "not a 64-hex-digit id"))?;
    match crate::applications::load(&state, &id) {
        Some(a) if a.centre == signed.member.id => Ok(Json(ApplicationView {
            created: false,
            application: a,
        })),
        _ => Err(ApiError::not_found(
            "application.not_found",
            "no such application of this centre",
        )),
    }
}

fn recipient(signed: &Signed, state: &AppState) -> Result<(), ApiError> {
    let m = &signed.member;
    if !matches!(m.role, Role::Utility | Role::Department) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "auth.forbidden",
            "inboxes belong to utilities and departments",
        ));
    }
    if m.chain != state.ledger.chain_id() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "auth.other_city",
            "this gateway keeps the inboxes of its own city",
        ));
    }
    Ok(())
}

/// `GET /v1/inbox`: the caller's open service requests, oldest first.
pub async fn inbox(
    State(state): State<Arc<AppState>>,
    signed: Signed,
) -> Result<Json<Vec<InboxItem>>, ApiError> {
    recipient(&signed, &state)?;
    crate::inbox::pending(&state, &signed.member.id)
        .map(Json)
        .map_err(|r| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, r.code, r.message))
}

/// What closing a request returns.
#[derive(Debug, Serialize, Deserialize)]
pub struct ReceiptResult {
    /// `written` or `duplicate`.
    pub outcome: String,
    /// The receipt's bundle (binary, hex), verifiable with `proofs`.
    pub bundle: Option<String>,
}

/// `POST /v1/inbox/receipt`: the recipient closes a request with its signed receipt.
pub async fn receipt(
    State(state): State<Arc<AppState>>,
    signed: Signed,
) -> Result<(StatusCode, Json<ReceiptResult>), ApiError> {
    recipient(&signed, &state)?;
    let r: ReceiptRequest = signed.json()?;
    let (outcome, bundle) = crate::inbox::close(&state, &signed.member.id, r)
        .await
        .map_err(|r| {
            let status = match r.code.as_str() {
                "inbox.unknown_delivery" => StatusCode::NOT_FOUND,
                "receipt.bad_signature" => StatusCode::BAD_REQUEST,
                "ledger.unavailable" | "internal" => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::UNPROCESSABLE_ENTITY,
            };
            ApiError::new(status, r.code, r.message)
        })?;
    let (status, word) = match outcome {
        Outcome::Written { .. } => (StatusCode::CREATED, "written"),
        _ => (StatusCode::OK, "duplicate"),
    };
    Ok((
        status,
        Json(ReceiptResult {
            outcome: word.into(),
            bundle: bundle.map(|b| hex::encode(b.encode())),
        }),
    ))
}

/// `GET /v1/applications/{id}/evidence`: the application's evidence package,
/// for the centre that took it; checkable offline with the registry alone
/// (`tongban inspect verify`).
pub async fn evidence(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    signed: Signed,
) -> Result<Json<regions::evidence::ApplicationPackage>, ApiError> {
    signed.require_local(Role::ServiceCentre, state.ledger.chain_id())?;
    let id = Hash::from_hex(&id)
        .map_err(|_| ApiError::bad("request.invalid", "id", "not a 64-hex-digit id"))?;
    match crate::applications::load(&state, &id) {
        Some(a) if a.centre == signed.member.id => crate::applications::package(&state, &id)
            .map(Json)
            .ok_or_else(|| ApiError::internal("the package could not be assembled")),
        _ => Err(ApiError::not_found(
            "application.not_found",
            "no such application of this centre",
        )),
    }
}
