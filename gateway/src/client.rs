//! The signing HTTP client used by the `tongban` CLI and by tests: every call
//! that needs it carries the member's signed request headers.

use proofs::SigningKey;
use proofs::subject::SubjectKey;
use regions::Registry;
use reqwest::StatusCode;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::clock::{Clock, SystemClock};
use crate::records::{self, ImportRecord, ImportRequest, PublishRequest, RecordError, RecordInput};

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The gateway could not be reached or the connection failed.
    #[error("gateway unreachable: {0}")]
    Transport(#[from] reqwest::Error),
    /// The gateway answered with an error.
    #[error("{status} {code}: {message}{}", field.as_ref().map(|f| format!(" (field `{f}`)")).unwrap_or_default())]
    Api {
        /// HTTP status.
        status: u16,
        /// Stable code.
        code: String,
        /// Explanation.
        message: String,
        /// Field at fault.
        field: Option<String>,
    },
    /// The answer was not what the API documents.
    #[error("unexpected answer: {0}")]
    Decode(String),
    /// The record was refused before sending.
    #[error(transparent)]
    Record(#[from] RecordError),
}

/// A client acting for one registry member towards one gateway.
pub struct Client {
    http: reqwest::Client,
    base: String,
    member: String,
    key: SigningKey,
    audience: String,
}

impl Client {
    /// A client for `base` (e.g. `http://127.0.0.1:8080`), acting as `member`,
    /// talking to the gateway whose registry id is `audience`.
    pub fn new(base: &str, member: &str, key: SigningKey, audience: &str) -> Self {
        Client {
            http: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(120))
                .build()
                .unwrap_or_default(),
            base: base.trim_end_matches('/').to_owned(),
            member: member.to_owned(),
            key,
            audience: audience.to_owned(),
        }
    }

    /// The member this client acts for.
    pub fn member(&self) -> &str {
        &self.member
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Vec<u8>,
        signed: bool,
    ) -> Result<(StatusCode, bytes_body::Body), ClientError> {
        let mut req = self
            .http
            .request(method.clone(), format!("{}{}", self.base, path));
        if signed {
            let headers = crate::auth::sign_request(
                &self.key,
                &self.member,
                &self.audience,
                method.as_str(),
                path,
                SystemClock.now_ms(),
                &crate::auth::fresh_nonce(),
                &body,
            );
            for (k, v) in headers {
                req = req.header(k, v);
            }
        }
        if !body.is_empty() {
            req = req.header("content-type", "application/json").body(body);
        }
        let resp = req.send().await?;
        let status = resp.status();
        let bytes = resp.bytes().await?;
        Ok((status, bytes_body::Body(bytes.to_vec())))
    }

    fn decode<T: DeserializeOwned>(status: StatusCode, body: &[u8]) -> Result<T, ClientError> {
        if status.is_client_error() || status.is_server_error() {
            let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
            let e = &v["error"];
            return Err(ClientError::Api {
                status: status.as_u16(),
                code: e["code"].as_str().unwrap_or("unknown").to_owned(),
                message: e["message"].as_str().unwrap_or("").to_owned(),
                field: e["field"].as_str().map(str::to_owned),
            });
        }
        serde_json::from_slice(body).map_err(|e| ClientError::Decode(e.to_string()))
    }

    /// A signed GET.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let (status, body) = self
            .send(reqwest::Method::GET, path, Vec::new(), true)
            .await?;
        Self::decode(status, &body.0)
    }

    /// An unsigned GET (public routes).
    pub async fn get_public<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let (status, body) = self
            .send(reqwest::Method::GET, path, Vec::new(), false)
            .await?;
        Self::decode(status, &body.0)
    }

    /// A signed POST of JSON; returns the status with the decoded answer.
    pub async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<(u16, T), ClientError> {
        let bytes = serde_json::to_vec(body).map_err(|e| ClientError::Decode(e.to_string()))?;
        let (status, body) = self.send(reqwest::Method::POST, path, bytes, true).await?;
        Ok((status.as_u16(), Self::decode(status, &body.0)?))
    }
}

/// A publication signed for `department` (the client computes commitment,
/// subject references and the transaction exactly as the gateway will).
pub fn sign_publication(
    registry: &Registry,
    chain_id: &str,
    department: &str,
    key: &SigningKey,
    subject_key: &SubjectKey,
    record: RecordInput,
    secret: [u8; 32],
) -> Result<PublishRequest, RecordError> {
    let p = records::prepare(registry, chain_id, department, &record, secret, subject_key)?;
    Ok(PublishRequest::new(
        record,
        &secret,
        &key.sign(&p.signing_bytes),
    ))
}

/// An import batch signed once over the Merkle root of its records.
pub fn sign_import(
    registry: &Registry,
    chain_id: &str,
    department: &str,
    key: &SigningKey,
    subject_key: &SubjectKey,
    records: Vec<(RecordInput, [u8; 32])>,
) -> Result<ImportRequest, RecordError> {
    let mut items = Vec::with_capacity(records.len());
    for (r, secret) in records {
        let p = records::prepare(registry, chain_id, department, &r, secret, subject_key)?;
        items.push((r, secret, proofs::merkle::leaf_hash(&p.signing_bytes)));
    }
    Ok(seal_import(chain_id, department, key, items))
}

/// Seals records already prepared (each with its secret and the leaf hash of
/// its transaction's signing bytes) into one import request.
pub fn seal_import(
    chain_id: &str,
    department: &str,
    key: &SigningKey,
    items: Vec<(RecordInput, [u8; 32], proofs::Hash)>,
) -> ImportRequest {
    let mut leaves = Vec::with_capacity(items.len());
    let mut out = Vec::with_capacity(items.len());
    for (r, secret, leaf) in items {
        leaves.push(leaf);
        out.push(ImportRecord {
            record_type: r.record_type,
            record_id: r.record_id,
            version: r.version,
            fields: r.fields,
            issued_ms: r.issued_ms,
            secret: hex::encode(secret),
        });
    }
    let root = proofs::merkle::MerkleTree::from_leaf_hashes(&leaves).root();
    let seal = proofs::tx::signing_bytes(
        chain_id,
        department,
        &proofs::tx::TxBody::BatchSeal {
            root,
            count: out.len() as u32,
        },
    );
    ImportRequest {
        records: out,
        seal_signature: hex::encode(key.sign(&seal).0),
    }
}

mod bytes_body {
    /// A response body.
    pub struct Body(pub Vec<u8>);
}
