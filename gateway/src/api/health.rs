//! Health, readiness, metrics and the OpenAPI document (all public).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde_json::json;

use crate::state::AppState;

/// The OpenAPI document served at `/v1/openapi.json`.
pub const OPENAPI: &str = include_str!("../openapi.json");

/// `GET /healthz`: the process is up.
pub async fn healthz() -> impl IntoResponse {
    Json(json!({"status": "ok"}))
}

/// `GET /readyz`: the ledger verified on open and its writer is running.
pub async fn readyz(State(s): State<Arc<AppState>>) -> impl IntoResponse {
    let head = s.ledger.head();
    if s.writer.failed() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(
                json!({"status": "not_ready", "reason": "ledger writer stopped after a storage failure"}),
            ),
        );
    }
    (
        StatusCode::OK,
        Json(json!({"status": "ready", "chain": s.ledger.chain_id(), "height": head.height})),
    )
}

/// `GET /metrics`: Prometheus text format.
pub async fn metrics(State(s): State<Arc<AppState>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.metrics.render(&s),
    )
}

/// `GET /v1/openapi.json`.
pub async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI)
}
