//! Selective field matches: the request a department or service centre signs,
//! the answer a provider's gateway returns, and their verification.
//!
//! * A [`MatchRequest`] names the contract, the provider department and the
//!   question (record type, predicates, fields to disclose, purpose, as JSON
//!   text the `regions` crate parses). The subject's identifier is sealed with
//!   HPKE to the provider department's key, bound by AAD to the request id,
//!   requester and provider; everything else is in the clear so a relay can
//!   route it. The requester signs all of it (strict Ed25519).
//! * The provider's gateway writes an access-log transaction on its own chain
//!   (signed by the gateway) naming the request id, the question's hash, the
//!   keyed subject reference and a **commitment to the answer** — the SHA-256
//!   of the answer's plaintext, which carries a random nonce so the chain does
//!   not reveal a yes/no. Only then it answers with a [`MatchAnswer`]: the
//!   plaintext sealed to the requester's HPKE key (AAD: the request's digest),
//!   the access-log entry's proof bundle, and the record commitment's bundle.
//! * [`verify_answer`] checks the public part with the trust roots alone;
//!   [`open_answer`] opens the sealed part, checks it against the committed
//!   hash and the bundles, and returns the [`AnswerPlain`].
//!
//! Byte layouts are specified in `docs/encoding.md` (section "Matches").

use rand_core::CryptoRng;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::bundle::{ProofBundle, verify_bundle_with};
use crate::encoding::{DecodeError, Decoder, Encoder};
use crate::hash::{Hash, sha256};
use crate::keys::{HpkePublicKey, Signature, SigningKey};
use crate::report::Report;
use crate::seal::{HpkeSecretKey, SealError, Sealed, open_base, seal_base};
use crate::trust::{Role, TrustRoots};
use crate::tx::{Authorization, TxBody};

/// Domain of a request's signed bytes.
pub const REQUEST_DOMAIN: &str = "tongban/match-request/v1";
/// Domain of the AAD that binds the sealed subject to its request.
pub const SUBJECT_AAD_DOMAIN: &str = "tongban/match-subject-aad/v1";
/// HPKE `info` for the sealed subject.
pub const SUBJECT_INFO: &[u8] = b"tongban/match-subject/v1";
/// HPKE `info` for the sealed answer.
pub const ANSWER_INFO: &[u8] = b"tongban/match-answer/v1";
/// Domain of the question hash.
pub const QUESTION_DOMAIN: &str = "tongban/match-question/v1";
/// Domain of an answer's plaintext (its SHA-256 is the committed hash).
pub const ANSWER_DOMAIN: &str = "tongban/match-answer/v1";
/// Longest question text.
pub const MAX_QUESTION: usize = 16 * 1024;
/// Longest member or contract id.
pub const MAX_ID: usize = 128;
/// Longest subject identifier (plaintext).
pub const MAX_SUBJECT: usize = 256;
/// Longest time a request may be valid for (5 minutes).
pub const MAX_VALIDITY_MS: u64 = 5 * 60 * 1000;

/// Why a match message was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MatchError {
    /// The requester is not a registry member allowed to ask.
    #[error("`{0}` is not a department or service centre in the registry")]
    UnknownRequester(String),
    /// The requester's signature does not verify.
    #[error("the request's signature does not verify with `{0}`'s registry key")]
    BadSignature(String),
    /// A field is too long or malformed.
    #[error("field `{field}`: {problem}")]
    Malformed {
        /// The field.
        field: &'static str,
        /// What is wrong.
        problem: String,
    },
    /// The sealed part does not open.
    #[error("sealed part does not open: {0}")]
    Seal(#[from] SealError),
    /// Bytes do not decode.
    #[error("does not decode: {0}")]
    Decode(#[from] DecodeError),
    /// The opened answer contradicts its commitment or bundles.
    #[error("{0}")]
    Mismatch(String),
}

impl MatchError {
    /// Stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            MatchError::UnknownRequester(_) => "match.unknown_requester",
            MatchError::BadSignature(_) => "match.bad_signature",
            MatchError::Malformed { .. } => "match.malformed",
            MatchError::Seal(_) => "match.seal",
            MatchError::Decode(_) => "match.decode",
            MatchError::Mismatch(_) => "match.answer_mismatch",
        }
    }
}

/// A signed question about one subject, for one provider department.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatchRequest {
    /// Unique id (random 32 bytes).
    pub id: Hash,
    /// Registry id of the requesting department or service centre.
    pub requester: String,
    /// Registry id of the provider department.
    pub provider: String,
    /// The data-sharing contract invoked.
    pub contract: String,
    /// Its version.
    pub contract_version: u32,
    /// The question as JSON text: `{"record_type", "predicates", "disclose", "purpose"}`.
    pub question: String,
    /// When it was made (Unix ms).
    pub issued_ms: u64,
    /// When it stops being answerable (Unix ms).
    pub expires_ms: u64,
    /// The subject's identifier, sealed to the provider department's HPKE key.
    pub subject: Sealed,
    /// The requester's signature over [`MatchRequest::signing_bytes`].
    pub signature: Signature,
}

/// What a new request says, before sealing and signing.
#[derive(Debug, Clone)]
pub struct RequestDraft<'a> {
    /// Unique id.
    pub id: Hash,
    /// Requester id.
    pub requester: &'a str,
    /// Provider department id.
    pub provider: &'a str,
    /// Contract id.
    pub contract: &'a str,
    /// Contract version.
    pub contract_version: u32,
    /// Question JSON text.
    pub question: &'a str,
    /// Issue time (Unix ms).
    pub issued_ms: u64,
    /// Expiry (Unix ms).
    pub expires_ms: u64,
    /// The subject's identifier (plaintext; it is sealed).
    pub subject: &'a str,
}

fn subject_aad(id: &Hash, requester: &str, provider: &str) -> Vec<u8> {
    let mut e = Encoder::with_domain(SUBJECT_AAD_DOMAIN);
    e.raw(&id.0).str(requester).str(provider);
    e.finish()
}

impl MatchRequest {
    /// Seals the subject to `provider_hpke` and signs with `key`.
    pub fn create(
        d: &RequestDraft<'_>,
        provider_hpke: &HpkePublicKey,
        key: &SigningKey,
        rng: &mut impl CryptoRng,
    ) -> Result<Self, MatchError> {
        let aad = subject_aad(&d.id, d.requester, d.provider);
        let subject = seal_base(provider_hpke, SUBJECT_INFO, &aad, d.subject.as_bytes(), rng)?;
        let mut r = MatchRequest {
            id: d.id,
            requester: d.requester.to_owned(),
            provider: d.provider.to_owned(),
            contract: d.contract.to_owned(),
            contract_version: d.contract_version,
            question: d.question.to_owned(),
            issued_ms: d.issued_ms,
            expires_ms: d.expires_ms,
            subject,
            signature: Signature([0; 64]),
        };
        r.check_shape()?;
        r.signature = key.sign(&r.signing_bytes());
        Ok(r)
    }

    /// The bytes the requester signs.
    pub fn signing_bytes(&self) -> Vec<u8> {
        let mut e = Encoder::with_domain(REQUEST_DOMAIN);
        e.raw(&self.id.0)
            .str(&self.requester)
            .str(&self.provider)
            .str(&self.contract)
            .u32(self.contract_version)
            .str(&self.question)
            .u64(self.issued_ms)
            .u64(self.expires_ms)
            .raw(&self.subject.enc)
            .bytes(&self.subject.ciphertext);
        e.finish()
    }

    /// SHA-256 of the signed bytes and the signature: what an answer is bound to.
    pub fn digest(&self) -> Hash {
        let mut b = self.signing_bytes();
        b.extend_from_slice(&self.signature.0);
        sha256(&b)
    }

    /// The hash of the question, as the access log records it.
    pub fn question_hash(&self) -> Hash {
        question_hash(&self.question)
    }

    /// Sizes and validity window, before any cryptography.
    pub fn check_shape(&self) -> Result<(), MatchError> {
        let long = |field: &'static str, v: &str, max: usize| {
            if v.is_empty() || v.len() > max {
                Err(MatchError::Malformed {
                    field,
                    problem: format!("must be 1 to {max} bytes, found {}", v.len()),
                })
            } else {
                Ok(())
            }
        };
        long("requester", &self.requester, MAX_ID)?;
        long("provider", &self.provider, MAX_ID)?;
        long("contract", &self.contract, MAX_ID)?;
        long("question", &self.question, MAX_QUESTION)?;
        if self.subject.ciphertext.len() > MAX_SUBJECT + 16 {
            return Err(MatchError::Malformed {
                field: "subject",
                problem: format!("sealed subject longer than {} bytes", MAX_SUBJECT + 16),
            });
        }
        if self.expires_ms <= self.issued_ms || self.expires_ms - self.issued_ms > MAX_VALIDITY_MS {
            return Err(MatchError::Malformed {
                field: "expires_ms",
                problem: format!(
                    "must be after issued_ms and at most {} s later",
                    MAX_VALIDITY_MS / 1000
                ),
            });
        }
        Ok(())
    }

    /// Checks shape and the requester's strict signature with the registry key.
    pub fn verify_signature(&self, roots: &TrustRoots) -> Result<(), MatchError> {
        self.check_shape()?;
        let member = roots
            .members
            .get(&self.requester)
            .filter(|m| matches!(m.role, Role::Department | Role::ServiceCentre))
            .ok_or_else(|| MatchError::UnknownRequester(self.requester.clone()))?;
        member
            .signing
            .verify(&self.signing_bytes(), &self.signature)
            .map_err(|_| MatchError::BadSignature(self.requester.clone()))
    }

    /// Opens the sealed subject with the provider department's HPKE key.
    pub fn open_subject(&self, key: &HpkeSecretKey) -> Result<String, MatchError> {
        let aad = subject_aad(&self.id, &self.requester, &self.provider);
        let plain = open_base(key, SUBJECT_INFO, &aad, &self.subject)?;
        if plain.is_empty() || plain.len() > MAX_SUBJECT {
            return Err(MatchError::Malformed {
                field: "subject",
                problem: format!("must be 1 to {MAX_SUBJECT} bytes"),
            });
        }
        String::from_utf8(plain).map_err(|_| MatchError::Malformed {
            field: "subject",
            problem: "not UTF-8".into(),
        })
    }
}

/// HPKE `info` of a request sealed for transit between gateways.
pub const ENVELOPE_INFO: &[u8] = b"tongban/match-envelope/v1";
/// Domain of the AAD that binds a sealed request to its provider.
pub const ENVELOPE_AAD_DOMAIN: &str = "tongban/match-envelope-aad/v1";
/// Longest plaintext of a sealed request (a request's JSON is far smaller).
pub const MAX_ENVELOPE: usize = 64 * 1024;

/// A [`MatchRequest`] sealed whole (question, ids, signature) to the provider
/// department's HPKE key for its way between gateways: a hub that forwards it
/// sees the provider's id and the ciphertext's length, nothing else.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SealedRequest {
    /// The provider department (whose key opens it).
    pub provider: String,
    /// The request's JSON, sealed (AAD: [`ENVELOPE_AAD_DOMAIN`] ‖ str(provider)).
    pub sealed: Sealed,
}

fn envelope_aad(provider: &str) -> Vec<u8> {
    let mut e = Encoder::with_domain(ENVELOPE_AAD_DOMAIN);
    e.str(provider);
    e.finish()
}

impl SealedRequest {
    /// Seals `req` to its provider's key.
    pub fn seal(
        req: &MatchRequest,
        provider_hpke: &HpkePublicKey,
        rng: &mut impl CryptoRng,
    ) -> Result<Self, MatchError> {
        let plain = serde_json::to_vec(req).map_err(|e| MatchError::Malformed {
            field: "request",
            problem: e.to_string(),
        })?;
        let sealed = seal_base(
            provider_hpke,
            ENVELOPE_INFO,
            &envelope_aad(&req.provider),
            &plain,
            rng,
        )?;
        Ok(SealedRequest {
            provider: req.provider.clone(),
            sealed,
        })
    }

    /// Opens with the provider department's key; the request inside must
    /// name the same provider.
    pub fn open(&self, key: &HpkeSecretKey) -> Result<MatchRequest, MatchError> {
        if self.sealed.ciphertext.len() > MAX_ENVELOPE + 16 {
            return Err(MatchError::Malformed {
                field: "sealed",
                problem: format!("longer than {} bytes", MAX_ENVELOPE + 16),
            });
        }
        let plain = open_base(
            key,
            ENVELOPE_INFO,
            &envelope_aad(&self.provider),
            &self.sealed,
        )?;
        let req: MatchRequest =
            serde_json::from_slice(&plain).map_err(|e| MatchError::Malformed {
                field: "sealed",
                problem: format!("the request inside does not parse: {e}"),
            })?;
        if req.provider != self.provider {
            return Err(MatchError::Malformed {
                field: "provider",
                problem: format!(
                    "the envelope names `{}`, the request inside `{}`",
                    self.provider, req.provider
                ),
            });
        }
        Ok(req)
    }
}

/// The record type a question asks about (its `record_type` member).
pub fn question_record_type(question: &str) -> Option<String> {
    serde_json::from_str::<serde_json::Value>(question)
        .ok()?
        .get("record_type")?
        .as_str()
        .map(str::to_owned)
}

/// The hash of a question's JSON text.
pub fn question_hash(question: &str) -> Hash {
    let mut e = Encoder::with_domain(QUESTION_DOMAIN);
    e.str(question);
    sha256(&e.finish())
}

/// What the provider found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Verdict {
    /// The predicates hold on the subject's live record(s).
    Holds,
    /// They do not.
    DoesNotHold,
    /// The subject has no live record of that type with this provider.
    NoRecord,
    /// The contract refused the question.
    Denied {
        /// The stable code of the rule that denied it.
        code: String,
        /// Why, in words.
        message: String,
    },
}

/// The record an answer was evaluated on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordRef {
    /// Leaf hash of its commitment transaction.
    pub leaf: Hash,
    /// Its version (the latest, not revoked, at the evaluated height).
    pub version: u32,
}

/// The sealed content of an answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnswerPlain {
    /// The digest of the request answered.
    pub request: Hash,
    /// The verdict.
    #[serde(flatten)]
    pub verdict: Verdict,
    /// Disclosed field values (name, value as text), if the contract allows.
    pub values: Vec<(String, String)>,
    /// The provider's chain height the answer was evaluated at: the record was
    /// the latest version and not revoked up to it.
    pub evaluated_height: u64,
    /// The record evaluated on, if any.
    pub record: Option<RecordRef>,
    /// Random: makes the committed hash reveal nothing.
    #[serde(with = "crate::hash::hex_array")]
    pub nonce: [u8; 32],
}

impl AnswerPlain {
    /// Canonical bytes (their SHA-256 is the committed answer).
    pub fn encode(&self) -> Vec<u8> {
        let mut e = Encoder::with_domain(ANSWER_DOMAIN);
        e.raw(&self.request.0);
        match &self.verdict {
            Verdict::Holds => {
                e.u8(0);
            }
            Verdict::DoesNotHold => {
                e.u8(1);
            }
            Verdict::NoRecord => {
                e.u8(2);
            }
            Verdict::Denied { code, message } => {
                e.u8(3).str(code).str(message);
            }
        }
        e.count(self.values.len());
        for (k, v) in &self.values {
            e.str(k).str(v);
        }
        e.u64(self.evaluated_height);
        match &self.record {
            None => {
                e.u8(0);
            }
            Some(r) => {
                e.u8(1).raw(&r.leaf.0).u32(r.version);
            }
        }
        e.raw(&self.nonce);
        e.finish()
    }

    /// Decodes canonical bytes.
    pub fn decode(b: &[u8]) -> Result<Self, DecodeError> {
        let mut d = Decoder::new(b);
        d.domain(ANSWER_DOMAIN)?;
        let request = Hash(d.array("answer.request")?);
        let tag = d.u8("answer.verdict")?;
        let verdict = match tag {
            0 => Verdict::Holds,
            1 => Verdict::DoesNotHold,
            2 => Verdict::NoRecord,
            3 => Verdict::Denied {
                code: d.str("answer.code", MAX_ID)?.to_owned(),
                message: d.str("answer.message", 4096)?.to_owned(),
            },
            _ => {
                return Err(DecodeError::UnknownTag {
                    field: "answer.verdict",
                    value: tag.into(),
                });
            }
        };
        let n = d.count("answer.values", 64, 2)?;
        let mut values = Vec::with_capacity(n);
        for _ in 0..n {
            let k = d.str("answer.values.name", MAX_ID)?.to_owned();
            if values.iter().any(|(n, _): &(String, String)| *n == k) {
                // One value per field: a field disclosed twice has no one reading.
                return Err(DecodeError::Invalid {
                    field: "answer.values.name",
                    reason: format!("`{k}` disclosed twice"),
                });
            }
            let v = d.str("answer.values.value", 4096)?.to_owned();
            values.push((k, v));
        }
        let evaluated_height = d.u64("answer.evaluated_height")?;
        let has = d.u8("answer.record")?;
        let record = match has {
            0 => None,
            1 => Some(RecordRef {
                leaf: Hash(d.array("answer.record.leaf")?),
                version: d.u32("answer.record.version")?,
            }),
            _ => {
                return Err(DecodeError::UnknownTag {
                    field: "answer.record",
                    value: has.into(),
                });
            }
        };
        let nonce = d.array("answer.nonce")?;
        d.finish()?;
        Ok(AnswerPlain {
            request,
            verdict,
            values,
            evaluated_height,
            record,
            nonce,
        })
    }

    /// The committed hash (what the access log records).
    pub fn commitment(&self) -> Hash {
        sha256(&self.encode())
    }

    /// Seals to the requester's key, bound to the request's digest.
    pub fn seal(&self, to: &HpkePublicKey, rng: &mut impl CryptoRng) -> Result<Sealed, SealError> {
        seal_base(to, ANSWER_INFO, &self.request.0, &self.encode(), rng)
    }
}

/// A provider's answer as it travels back to the requester.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatchAnswer {
    /// The request's id.
    pub request_id: Hash,
    /// [`AnswerPlain`] sealed to the requester (AAD: the request's digest).
    pub sealed: Sealed,
    /// The access-log entry's bundle (it carries the committed answer).
    pub access: ProofBundle,
    /// The evaluated record commitment's bundle, if a record was found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<ProofBundle>,
}

/// What [`verify_answer`] establishes from the public part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedAccess {
    /// The committed answer hash from the access log.
    pub answer: Hash,
    /// Height of the access-log entry.
    pub access_height: u64,
    /// Height and leaf of the record commitment, if any.
    pub record: Option<(u64, Hash)>,
}

/// Verifies an answer's public part against its request: both bundles under
/// quorum-certified headers, the access log written by the provider city's
/// gateway for exactly this request, the record committed by the provider for
/// the same subject. Facts go to `report`; returns what later checks need only
/// if everything held.
pub fn verify_answer(
    answer: &MatchAnswer,
    request: &MatchRequest,
    roots: &TrustRoots,
    now_ms: u64,
    report: &mut Report,
) -> Option<VerifiedAccess> {
    verify_answer_with(answer, request, roots, now_ms, report, &|_| false)
}

/// [`verify_answer`] with headers the caller already verified taken as
/// certified (see [`crate::bundle::verify_bundle_with`]).
pub fn verify_answer_with(
    answer: &MatchAnswer,
    request: &MatchRequest,
    roots: &TrustRoots,
    now_ms: u64,
    report: &mut Report,
    certified: &dyn Fn(&crate::header::CertifiedHeader) -> bool,
) -> Option<VerifiedAccess> {
    let before = report.facts.len();
    if answer.request_id == request.id {
        report.holds("answer", "answer.request", "answers this request id");
    } else {
        report.fails(
            "answer",
            "answer.request",
            "match.wrong_request",
            "the answer is for another request",
            request.id.to_string(),
            answer.request_id.to_string(),
        );
    }
    let provider = roots.members.get(&request.provider);
    let access_tx = verify_bundle_with(
        &answer.access,
        roots,
        now_ms,
        "access log",
        report,
        certified,
    );
    let mut subjects = Vec::new();
    let mut committed = None;
    if let (Some(tx), Some(provider)) = (&access_tx, provider) {
        let gateway_ok = roots.members.get(&tx.author).is_some_and(|m| {
            m.role == Role::Gateway && m.city == provider.city && m.chain == provider.chain
        }) && matches!(tx.auth, Authorization::Signed(_));
        if gateway_ok {
            report.holds(
                "access log",
                "access.author",
                format!("signed by `{}`, the provider city's gateway", tx.author),
            );
        } else {
            report.fails(
                "access log",
                "access.author",
                "match.access_author",
                "the access log is not signed by the provider city's gateway",
                format!("the gateway of {}", provider.city),
                tx.author.clone(),
            );
        }
        match &tx.body {
            TxBody::AccessLog {
                requester,
                provider: p,
                contract,
                contract_version,
                subjects: s,
                question,
                answer: a,
                request_id,
                at_ms,
            } => {
                let same = requester == &request.requester
                    && p == &request.provider
                    && contract == &request.contract
                    && *contract_version == request.contract_version
                    && request_id == &request.id
                    && question == &request.question_hash();
                if same {
                    report.holds(
                        "access log",
                        "access.request",
                        "records this request's requester, provider, contract, id and question",
                    );
                    subjects = s.clone();
                    committed = Some(*a);
                    check_answer_time(*at_ms, request, roots.max_clock_skew_ms, report);
                } else {
                    report.fails(
                        "access log",
                        "access.request",
                        "match.access_mismatch",
                        "the access log records another request",
                        format!("request {}", request.id),
                        format!("request {request_id} by {requester} under {contract}"),
                    );
                }
            }
            other => report.fails(
                "access log",
                "access.request",
                "match.access_kind",
                "the bundle is not an access-log entry",
                "access-log entry",
                other.kind_name(),
            ),
        }
    } else if provider.is_none() {
        report.fails(
            "access log",
            "access.author",
            "match.unknown_provider",
            "the provider is not in the registry",
            "a registry department",
            request.provider.clone(),
        );
    } else {
        for check in ["access.author", "access.request"] {
            report.skipped(
                "access log",
                check,
                "the access log's bundle did not verify",
            );
        }
    }
    let mut record = None;
    if let Some(b) = &answer.record
        && let Some(tx) = verify_bundle_with(b, roots, now_ms, "record", report, certified)
    {
        match &tx.body {
            // The subject is the access log's: nothing to compare with.
            _ if committed.is_none() => report.skipped(
                "record",
                "record.subject",
                "the access log did not verify for this request",
            ),
            TxBody::RecordCommit {
                subjects: rs,
                record_type,
                ..
            } if tx.author == request.provider
                && subjects.iter().any(|s| rs.contains(s))
                && question_record_type(&request.question).as_deref()
                    == Some(record_type.as_str()) =>
            {
                report.holds(
                    "record",
                    "record.subject",
                    "committed by the provider for the subject asked about",
                );
                record = Some((b.header.header.height, tx.leaf_hash()));
            }
            _ => report.fails(
                "record",
                "record.subject",
                "match.record_mismatch",
                "the record is not the provider's commitment of the asked record type for this subject",
                format!("a record commitment by {}", request.provider),
                format!("{} by {}", tx.body.kind_name(), tx.author),
            ),
        }
    }
    if report.facts[before..]
        .iter()
        .any(|f| !matches!(f.outcome, crate::report::Outcome::Holds { .. }))
    {
        return None;
    }
    Some(VerifiedAccess {
        answer: committed?,
        access_height: answer.access.header.header.height,
        record,
    })
}

/// The access log's time is the answer's: a provider answers only from
/// `issued_ms` (less the clock skew, as its clock may lag the requester's)
/// until `expires_ms`, so an entry dated outside that window is not an
/// answer to this request.
fn check_answer_time(at_ms: u64, request: &MatchRequest, skew_ms: u64, report: &mut Report) {
    let from = request.issued_ms.saturating_sub(skew_ms);
    if (from..=request.expires_ms).contains(&at_ms) {
        report.holds(
            "access log",
            "access.time",
            "dated within the request's validity (less the clock skew)",
        );
    } else {
        report.fails(
            "access log",
            "access.time",
            "match.access_time",
            "the access log is dated outside the request's validity",
            format!(
                "{from} ≤ at_ms ≤ {} (issued_ms − {skew_ms} ms skew to expires_ms)",
                request.expires_ms
            ),
            at_ms.to_string(),
        );
    }
}

/// Opens the sealed answer and checks it against what [`verify_answer`]
/// established: the committed hash, the request, the record and the heights.
pub fn open_answer(
    answer: &MatchAnswer,
    request: &MatchRequest,
    verified: &VerifiedAccess,
    key: &HpkeSecretKey,
) -> Result<AnswerPlain, MatchError> {
    let digest = request.digest();
    let bytes = open_base(key, ANSWER_INFO, &digest.0, &answer.sealed)?;
    check_opened(&bytes, request, verified)
}

/// Checks an opened answer's plaintext against its request and what
/// [`verify_answer`] established (the committed hash, the record, the
/// heights). An inspector, who holds the plaintext but not the key, uses this.
pub fn check_opened(
    bytes: &[u8],
    request: &MatchRequest,
    verified: &VerifiedAccess,
) -> Result<AnswerPlain, MatchError> {
    let digest = request.digest();
    let plain = AnswerPlain::decode(bytes)?;
    if plain.request != digest {
        return Err(MatchError::Mismatch(
            "the answer names another request".into(),
        ));
    }
    if sha256(bytes) != verified.answer {
        return Err(MatchError::Mismatch(
            "the answer is not the one committed in the access log".into(),
        ));
    }
    if plain.evaluated_height >= verified.access_height {
        return Err(MatchError::Mismatch(format!(
            "evaluated at height {} but logged at {}: the log must follow the evaluation",
            plain.evaluated_height, verified.access_height
        )));
    }
    match (&plain.record, &verified.record) {
        (None, None) => {}
        (Some(r), Some((h, leaf))) if r.leaf == *leaf && *h <= plain.evaluated_height => {}
        _ => {
            return Err(MatchError::Mismatch(
                "the record evaluated is not the one proven".into(),
            ));
        }
    }
    Ok(plain)
}

#[cfg(test)]
mod strict_tests {
    use super::*;

    #[test]
    fn an_answer_disclosing_a_field_twice_does_not_decode() {
        let mut a = AnswerPlain {
            request: Hash([1; 32]),
            verdict: Verdict::Holds,
            values: vec![("address".into(), "1 Zhongshan Road".into())],
            evaluated_height: 7,
            record: None,
            nonce: [2; 32],
        };
        assert_eq!(AnswerPlain::decode(&a.encode()).unwrap(), a);
        a.values.push(a.values[0].clone());
        let e = AnswerPlain::decode(&a.encode()).unwrap_err();
        assert!(e.to_string().contains("`address` disclosed twice"), "{e}");
    }
}
