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

/// A client acting for one registry member towards one gateway (cloning
/// shares the connection pool).
#[derive(Clone)]
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

    /// A signed POST of a JSON body already serialised.
    pub async fn post_raw<T: DeserializeOwned>(
        &self,
        path: &str,
        body: Vec<u8>,
    ) -> Result<(u16, T), ClientError> {
        let (status, body) = self.send(reqwest::Method::POST, path, body, true).await?;
        Ok((status.as_u16(), Self::decode(status, &body.0)?))
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

/// What `POST /v1/matches` returns: the answer and the gateway's report.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct MatchReply {
    /// The provider's answer.
    pub answer: proofs::matching::MatchAnswer,
    /// The requesting gateway's verification report (as JSON).
    pub report: serde_json::Value,
    /// Whether every fact held for the gateway.
    pub verified: bool,
}

/// A match question, before it is sealed and signed.
#[derive(Debug, Clone)]
pub struct MatchAsk<'a> {
    /// The provider department.
    pub provider: &'a str,
    /// The contract.
    pub contract: &'a str,
    /// The question JSON text (record type, predicates, disclose, purpose).
    pub question: &'a str,
    /// The subject's identifier.
    pub subject: &'a str,
    /// Validity (ms, at most 5 minutes).
    pub ttl_ms: u64,
}

/// Builds a match request for `requester`: a fresh random id, the subject
/// sealed to the provider's registry HPKE key, signed with `key`.
pub fn sign_match(
    registry: &Registry,
    roots: &proofs::TrustRoots,
    requester: &str,
    key: &SigningKey,
    ask: &MatchAsk<'_>,
    now_ms: u64,
) -> Result<proofs::matching::MatchRequest, ClientError> {
    use rand_core::SeedableRng;
    let hpke = roots
        .members
        .get(ask.provider)
        .and_then(|m| m.hpke)
        .ok_or_else(|| {
            ClientError::Decode(format!(
                "`{}` has no HPKE key in the registry",
                ask.provider
            ))
        })?;
    let version = registry
        .contract(ask.contract)
        .map(|c| c.version)
        .ok_or_else(|| {
            ClientError::Decode(format!("no contract `{}` in the registry", ask.contract))
        })?;
    let mut id = [0u8; 32];
    getrandom::fill(&mut id).expect("the OS random source is available");
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).expect("the OS random source is available");
    let mut rng = rand_chacha::ChaCha20Rng::from_seed(seed);
    proofs::matching::MatchRequest::create(
        &proofs::matching::RequestDraft {
            id: proofs::Hash(id),
            requester,
            provider: ask.provider,
            contract: ask.contract,
            contract_version: version,
            question: ask.question,
            issued_ms: now_ms,
            expires_ms: now_ms + ask.ttl_ms,
            subject: ask.subject,
        },
        &hpke,
        key,
        &mut rng,
    )
    .map_err(|e| ClientError::Decode(e.to_string()))
}

/// Verifies an answer again on the caller's side (trusting only the registry)
/// and opens it with the requester's HPKE key.
pub fn open_match(
    reply: &MatchReply,
    req: &proofs::matching::MatchRequest,
    roots: &proofs::TrustRoots,
    hpke: &proofs::seal::HpkeSecretKey,
    now_ms: u64,
) -> Result<(proofs::matching::AnswerPlain, proofs::Report), ClientError> {
    let mut report = proofs::Report::new();
    let verified = proofs::matching::verify_answer(&reply.answer, req, roots, now_ms, &mut report)
        .ok_or_else(|| {
            ClientError::Decode(format!(
                "the answer does not verify: {}",
                report.first_failure_code().unwrap_or("unknown")
            ))
        })?;
    let plain = proofs::matching::open_answer(&reply.answer, req, &verified, hpke)
        .map_err(|e| ClientError::Decode(format!("{}: {e}", e.code())))?;
    Ok((plain, report))
}

/// A recipient's signed receipt for a request in its inbox.
pub fn sign_receipt(
    chain_id: &str,
    recipient: &str,
    key: &SigningKey,
    delivery: &crate::applications::Delivery,
    accepted: bool,
    reason: &str,
    at_ms: u64,
) -> crate::inbox::ReceiptRequest {
    let body = crate::inbox::receipt_body(delivery, accepted, reason, at_ms);
    let signature = key.sign(&proofs::tx::signing_bytes(chain_id, recipient, &body));
    crate::inbox::ReceiptRequest {
        delivery: delivery.id,
        accepted,
        reason: reason.to_owned(),
        at_ms,
        signature,
    }
}

/// Opens a service request from an inbox with the recipient's HPKE key.
pub fn open_delivery(
    delivery: &crate::applications::Delivery,
    hpke: &proofs::seal::HpkeSecretKey,
) -> Result<serde_json::Map<String, serde_json::Value>, ClientError> {
    let plain = proofs::seal::open_base(
        hpke,
        crate::applications::SERVICE_INFO,
        &crate::applications::Delivery::aad(&delivery.id, &delivery.recipient),
        &delivery.sealed,
    )
    .map_err(|e| ClientError::Decode(format!("the request does not open: {e}")))?;
    serde_json::from_slice(&plain).map_err(|e| ClientError::Decode(e.to_string()))
}
