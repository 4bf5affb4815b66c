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

/// `GET /readyz`: ready to serve its role. Not ready (503, with the reasons)
/// while the ledger writer is stopped after a storage failure, or while a
/// gateway that talks to other gateways has no peer connected. A chain frozen
/// on fork evidence does not make the gateway unready (it serves everything
/// else) but is listed under `degraded`.
pub async fn readyz(State(s): State<Arc<AppState>>) -> impl IntoResponse {
    let head = s.ledger.head();
    let mut reasons = Vec::new();
    if s.writer.failed() {
        reasons.push("ledger writer stopped after a storage failure".to_owned());
    }
    let peers = s.relay.get().map(|r| {
        r.stats()
            .connected_peers
            .load(std::sync::atomic::Ordering::Relaxed)
    });
    if peers == Some(0) {
        reasons.push("no other gateway or hub connected".to_owned());
    }
    let frozen: Vec<String> = s
        .light
        .chains()
        .into_iter()
        .filter(|c| s.light.status(c).is_some_and(|st| st.fork.is_some()))
        .collect();
    let body = json!({
        "status": if reasons.is_empty() { "ready" } else { "not_ready" },
        "reasons": reasons,
        "chain": s.ledger.chain_id(),
        "height": head.height,
        "peers_connected": peers,
        "degraded": frozen.iter().map(|c| format!("chain {c} frozen on fork evidence")).collect::<Vec<_>>(),
    });
    let status = if reasons.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body))
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
