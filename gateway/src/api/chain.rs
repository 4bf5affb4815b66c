//! The chain: head and certified headers (public), proof bundles (members).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use proofs::Hash;
use proofs::bundle::ProofBundle;
use proofs::header::CertifiedHeader;
use serde::Serialize;

use super::Path;
use super::{ApiError, Signed};
use crate::state::AppState;

/// The head of the chain.
#[derive(Serialize)]
pub struct HeadView {
    /// Chain id.
    pub chain_id: String,
    /// Height of the last block.
    pub height: u64,
    /// Its header hash.
    pub hash: Hash,
    /// Its timestamp.
    pub timestamp_ms: u64,
    /// The registry this gateway runs under.
    pub registry_sha256: Hash,
}

/// `GET /v1/chain`.
pub async fn head(State(s): State<Arc<AppState>>) -> Json<HeadView> {
    let h = s.ledger.head();
    Json(HeadView {
        chain_id: s.ledger.chain_id().to_owned(),
        height: h.height,
        hash: h.hash,
        timestamp_ms: h.timestamp_ms,
        registry_sha256: s.registry_hash,
    })
}

/// `GET /v1/chain/headers/{height}`: a certified header (public: headers hold
/// no personal data and are what every party verifies against).
pub async fn header(
    State(s): State<Arc<AppState>>,
    Path(height): Path<String>,
) -> Result<Json<CertifiedHeader>, ApiError> {
    let height: u64 = height.parse().map_err(|_| {
        ApiError::bad(
            "request.invalid",
            "height",
            "height must be a non-negative integer",
        )
    })?;
    s.ledger.header(height)?.map(Json).ok_or_else(|| {
        ApiError::not_found(
            "chain.no_such_block",
            format!("no block at height {height}"),
        )
    })
}

/// `GET /v1/proofs/{leaf}`: the proof bundle of a transaction, for any registry
/// member (transactions hold keyed references and commitments, never values).
pub async fn proof(
    State(s): State<Arc<AppState>>,
    Path(leaf): Path<String>,
    signed: Signed,
) -> Result<Json<ProofBundle>, ApiError> {
    let _ = signed.member;
    let leaf = Hash::from_hex(&leaf)
        .map_err(|e| ApiError::bad("request.invalid", "leaf", format!("leaf hash: {e}")))?;
    s.ledger.bundle(&leaf)?.map(Json).ok_or_else(|| {
        ApiError::not_found(
            "chain.no_such_transaction",
            format!("no transaction with leaf hash {leaf}"),
        )
    })
}

/// Blocks per export page.
pub const EXPORT_PAGE: u64 = 256;

/// `GET /v1/chain/export/{from}`: up to 256 blocks from height `from`, each
/// with its certified header and every transaction, for any registry member;
/// `tongban chain export` pages through them and `tongban inspect chain`
/// verifies the whole chain from genesis offline.
pub async fn export(
    State(s): State<Arc<AppState>>,
    Path(from): Path<String>,
    signed: Signed,
) -> Result<Json<proofs::chain::ChainExport>, ApiError> {
    let _ = signed.member;
    let from: u64 = from.parse().map_err(|_| {
        ApiError::bad(
            "request.invalid",
            "from",
            "from must be a non-negative integer",
        )
    })?;
    let head = s.ledger.head().height;
    let mut blocks = Vec::new();
    let mut h = from;
    while h <= head && h < from.saturating_add(EXPORT_PAGE) {
        let Some(ch) = s.ledger.header(h)? else {
            break;
        };
        // Genesis (and any empty block) has no transaction value.
        let txs = s.ledger.block_txs(h)?.unwrap_or_default();
        blocks.push(proofs::chain::ExportBlock {
            header: ch.encode(),
            txs: txs.iter().map(hex::encode).collect(),
        });
        h += 1;
    }
    Ok(Json(proofs::chain::ChainExport {
        format: proofs::chain::EXPORT_FORMAT.into(),
        registry_hash: s.registry_hash,
        chain_id: s.ledger.chain_id().to_owned(),
        blocks,
    }))
}
