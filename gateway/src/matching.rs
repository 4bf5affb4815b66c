//! Selective field matches: answering as a provider, verifying as a requester.
//!
//! Provider side ([`answer`]): the requester's signature, validity window and
//! request id are checked; the subject is opened with the provider
//! department's HPKE key (held by this gateway as the department's custodian);
//! the contract is evaluated with the requester's query count for this
//! subject in the budget window; the predicates are evaluated on the live
//! versions of the subject's records; the answer is sealed to the requester;
//! and the **access-log entry is committed to this city's chain (durably)
//! before the answer leaves**. Denials are logged and answered the same way.
//! A resent identical request gets the same answer (nothing is logged twice);
//! another request reusing the id is refused.
//!
//! Requester side ([`verify`]): the answer's bundles are checked with
//! `proofs` against the registry's trust roots, and their headers against the
//! light client of the provider's chain (a conflicting certified header is a
//! fork: the chain is frozen).

use std::collections::BTreeMap;

use proofs::matching::{
    AnswerPlain, MatchAnswer, MatchRequest, RecordRef, SealedRequest, Verdict, VerifiedAccess,
    verify_answer_with,
};
use proofs::report::Report;
use proofs::seal::Sealed;
use proofs::subject::{SubjectId, SubjectRef};
use proofs::tx::{Transaction, TxBody};
use proofs::{Date, Hash, Role, Value};
use rand_core::SeedableRng;
use regions::Predicate;
use regions::Request as ContractRequest;
use relay::Refusal;
use serde::{Deserialize, Serialize};

use crate::ledger::{AccessEntry, Intent, Outcome, PreparedTx, RecordKey};
use crate::state::AppState;

use crate::guard::TZ_OFFSET_MS;

/// The question inside a request, as JSON.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Question {
    /// Record type asked about.
    pub record_type: String,
    /// Predicates (bound).
    #[serde(default)]
    pub predicates: Vec<Predicate>,
    /// Fields whose values are asked for (empty: yes/no only).
    #[serde(default)]
    pub disclose: Vec<String>,
    /// Stated purpose (must equal the contract's).
    pub purpose: String,
}

/// What the gateway keeps with an access-log entry to answer a resend.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct KeptAnswer {
    digest: Hash,
    /// What the access ledger shows of the question: its shape, never its
    /// values (they name third parties: a father's number, a company name).
    question: String,
    sealed: Sealed,
    record: Option<Hash>,
    /// Whether the access counts against the subject's budget (answers do,
    /// denials do not). Entries written before this field count.
    #[serde(default = "counts_by_default")]
    counts: bool,
}

fn counts_by_default() -> bool {
    true
}

/// The shape of a question, for the access ledger: record type, purpose, the
/// fields and operators its predicates test, and the fields asked for.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct QuestionShape {
    record_type: String,
    purpose: String,
    tests: Vec<String>,
    disclose: Vec<String>,
}

fn shape_of(q: &Question) -> QuestionShape {
    let mut tests = Vec::new();
    for p in &q.predicates {
        match p {
            Predicate::Field(t) => tests.push(format!("{} {}", t.field, t.op)),
            Predicate::Count(c) => {
                let filter: Vec<String> = c
                    .filter
                    .iter()
                    .map(|t| format!("{} {}", t.field, t.op))
                    .collect();
                tests.push(format!("count[{}] {}", filter.join(", "), c.op));
            }
        }
    }
    QuestionShape {
        record_type: q.record_type.clone(),
        purpose: q.purpose.clone(),
        tests,
        disclose: q.disclose.clone(),
    }
}

/// The question's shape kept with an access-log entry (for the subject's
/// access ledger): record type, purpose, fields tested and asked for.
pub fn kept_question(state: &AppState, request_id: &Hash) -> Option<String> {
    let (_, kept) = state.ledger.access_state(request_id).ok()??;
    serde_json::from_slice::<KeptAnswer>(&kept)
        .ok()
        .map(|k| k.question)
}

/// Whether the access-log entry of `request_id` counts against its
/// subject's budget (denials do not; unreadable state counts: fail closed).
fn counts_against_budget(state: &AppState, request_id: &Hash) -> bool {
    match state.ledger.access_state(request_id) {
        Ok(Some((_, kept))) => serde_json::from_slice::<KeptAnswer>(&kept)
            .map(|k| k.counts)
            .unwrap_or(true),
        _ => true,
    }
}

/// The calendar date (UTC+8) at `now_ms`.
pub fn today(now_ms: u64) -> Date {
    Date::from_unix_ms(now_ms.saturating_add(TZ_OFFSET_MS))
}

fn refuse(code: &str, message: impl Into<String>) -> Refusal {
    Refusal::new(code, message)
}

fn rng() -> rand_chacha::ChaCha20Rng {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).expect("the OS random source is available");
    rand_chacha::ChaCha20Rng::from_seed(seed)
}

fn internal(e: impl std::fmt::Display) -> Refusal {
    tracing::error!(error = %e, "match: internal failure");
    refuse("internal", "the provider could not complete the answer")
}

/// A failed read of a stored record: `store.corrupt` when a value failed its
/// check (never answered from), `internal` otherwise.
fn stored(e: crate::ledger::LedgerError) -> Refusal {
    match e.code() {
        "store.corrupt" => refuse(
            "store.corrupt",
            "a stored record failed its integrity check; no answer is given from it",
        ),
        _ => internal(e),
    }
}

/// Answers a match request as the provider's gateway.
pub async fn answer(state: &AppState, req: MatchRequest) -> Result<MatchAnswer, Refusal> {
    let now = state.clock.now_ms();
    req.verify_signature(&state.roots)
        .map_err(|e| refuse(e.code(), e.to_string()))?;
    if now > req.expires_ms {
        return Err(refuse(
            "match.expired",
            format!("the request expired at {} (now {now})", req.expires_ms),
        ));
    }
    // The protocol's skew (section 11), not the HTTP setting: an answer is
    // verified against `issued_ms − skew ≤ at_ms ≤ expires_ms` with it.
    if req.issued_ms > now.saturating_add(state.roots.max_clock_skew_ms) {
        return Err(refuse(
            "match.not_yet_valid",
            "the request is issued in the future beyond the clock skew",
        ));
    }
    let provider = state
        .roots
        .members
        .get(&req.provider)
        .filter(|m| m.role == Role::Department)
        .ok_or_else(|| {
            refuse(
                "match.unknown_provider",
                format!("`{}` is not a department", req.provider),
            )
        })?;
    if provider.city != state.city {
        return Err(refuse(
            "match.wrong_gateway",
            format!(
                "`{}` is served by the gateway of {}",
                req.provider, provider.city
            ),
        ));
    }
    let requester_hpke = state
        .roots
        .members
        .get(&req.requester)
        .and_then(|m| m.hpke)
        .ok_or_else(|| {
            refuse(
                "match.no_requester_key",
                "the requester has no HPKE key to answer to",
            )
        })?;
    // A resend of the same request gets the same answer; another request with its id is refused.
    let digest = req.digest();
    if let Some((loc, kept)) = state.ledger.access_state(&req.id).map_err(internal)? {
        let kept: KeptAnswer = serde_json::from_slice(&kept).map_err(internal)?;
        if kept.digest != digest {
            return Err(refuse(
                "match.replayed",
                "this request id was already used by another request",
            ));
        }
        return rebuild(state, &req, loc.leaf, kept);
    }
    let custody = state.custody.get(&req.provider).ok_or_else(|| {
        refuse(
            "match.no_custody",
            format!("this gateway holds no HPKE key of `{}`", req.provider),
        )
    })?;
    let subject_text = req
        .open_subject(custody)
        .map_err(|e| refuse(e.code(), e.to_string()))?;
    let subject = SubjectId::infer(&subject_text)
        .map_err(|e| refuse("match.subject", format!("subject: {e}")))?;
    let subject_ref = state.subject_key.reference(&subject);
    if req.question.len() > proofs::matching::MAX_QUESTION {
        return Err(refuse("match.malformed", "question too long"));
    }
    let question: Question = serde_json::from_str(&req.question)
        .map_err(|e| refuse("match.malformed", format!("question: {e}")))?;

    // One answer at a time per (requester, contract, subject): the budget is
    // counted and the access log written under this lock, so concurrent
    // requests cannot all see the same unspent budget.
    let _subject_lock = state
        .guards
        .subject_lock(&req.requester, &req.contract, &subject_ref)
        .await;
    // Every request that writes an access-log entry, denials included, counts
    // against the requester's volume under the contract: this bounds what
    // any requester, honest or not, can make the chain record.
    let limit = state
        .registry
        .contract(&req.contract)
        .map_or(regions::Volume::DEFAULT, |c| c.volume);
    let reservation = state
        .guards
        .reserve(&state.ledger, &req.requester, &req.contract, limit, now)
        .map_err(|v| {
            state.metrics.refusal(v.code());
            refuse(v.code(), v.message(&req.contract))
        })?;
    let day = today(now);
    let verdict_and_record = evaluate(state, &req, &question, &subject_ref, day, now)?;
    let (verdict, values, record) = verdict_and_record;
    let counts = !matches!(verdict, Verdict::Denied { .. });
    let evaluated_height = state.ledger.head().height;
    let mut nonce = [0u8; 32];
    getrandom::fill(&mut nonce).expect("the OS random source is available");
    let plain = AnswerPlain {
        request: digest,
        verdict,
        values,
        evaluated_height,
        record: record.map(|(leaf, version)| RecordRef { leaf, version }),
        nonce,
    };
    let sealed = plain
        .seal(&requester_hpke, &mut rng())
        .map_err(|e| refuse("match.seal", e.to_string()))?;
    let tx = Transaction::sign(
        state.ledger.chain_id(),
        &state.gateway_id,
        TxBody::AccessLog {
            requester: req.requester.clone(),
            provider: req.provider.clone(),
            contract: req.contract.clone(),
            contract_version: req.contract_version,
            subjects: vec![subject_ref],
            question: req.question_hash(),
            answer: plain.commitment(),
            request_id: req.id,
            at_ms: now,
        },
        &state.gateway_key,
    );
    let kept = KeptAnswer {
        digest,
        question: serde_json::to_string(&shape_of(&question)).map_err(internal)?,
        sealed,
        record: plain.record.map(|r| r.leaf),
        counts,
    };
    let entry = AccessEntry {
        tx: PreparedTx::new(&tx),
        request_id: req.id,
        subjects: vec![subject_ref],
        at_ms: now,
        state: serde_json::to_vec(&kept).map_err(internal)?,
        volume: Some((
            req.requester.clone(),
            req.contract.clone(),
            crate::guard::day_of(now),
        )),
    };
    let outcome = state
        .writer
        .submit(vec![Intent::Log(Box::new(entry))])
        .await
        .map_err(|e| refuse("ledger.unavailable", e.to_string()))?;
    match outcome.first().and_then(|o| o.first()) {
        Some(Outcome::Written { location }) => {
            reservation.keep();
            rebuild(state, &req, location.leaf, kept)
        }
        Some(Outcome::Duplicate { .. }) => {
            // A concurrent identical request won the race: answer as it was answered.
            let (loc, k) = state
                .ledger
                .access_state(&req.id)
                .map_err(internal)?
                .ok_or_else(|| internal("access state vanished"))?;
            let k: KeptAnswer = serde_json::from_slice(&k).map_err(internal)?;
            if k.digest != digest {
                return Err(refuse(
                    "match.replayed",
                    "this request id was already used by another request",
                ));
            }
            rebuild(state, &req, loc.leaf, k)
        }
        Some(Outcome::Rejected { code, message }) => Err(refuse(code, message.clone())),
        None => Err(internal("no outcome for the access log")),
    }
}

/// Sends `req` to the provider's gateway `gateway` over the relay, sealed
/// whole to the provider department ([`SealedRequest`]): neither a hub nor
/// anything else between the gateways reads the question.
pub async fn ask_remote(
    state: &AppState,
    gateway: &str,
    req: &MatchRequest,
) -> Result<MatchAnswer, relay::RelayError> {
    let relay = state.relay.get().ok_or_else(|| {
        relay::RelayError::Refused(refuse(
            "relay.disabled",
            "this gateway has no relay configured; other cities cannot be asked",
        ))
    })?;
    let hpke = state
        .roots
        .members
        .get(&req.provider)
        .and_then(|m| m.hpke)
        .ok_or_else(|| {
            relay::RelayError::Refused(refuse(
                "match.unknown_provider",
                format!("`{}` has no HPKE key in the registry", req.provider),
            ))
        })?;
    let envelope = SealedRequest::seal(req, &hpke, &mut rng())
        .map_err(|e| relay::RelayError::Refused(refuse(e.code(), e.to_string())))?;
    let body = serde_json::to_vec(&envelope)
        .map_err(|e| relay::RelayError::Refused(refuse("internal", e.to_string())))?;
    let bytes = relay.request(gateway, "match", body).await?;
    serde_json::from_slice(&bytes).map_err(|e| {
        relay::RelayError::Refused(refuse(
            "match.malformed_answer",
            format!("the provider's answer does not parse: {e}"),
        ))
    })
}

/// Opens a request that came sealed over the relay, with the custody key of
/// the department it names.
pub fn open_remote(state: &AppState, body: &[u8]) -> Result<MatchRequest, Refusal> {
    let envelope: SealedRequest = serde_json::from_slice(body).map_err(|e| {
        refuse(
            "match.malformed",
            format!("a request between gateways must be sealed to its provider: {e}"),
        )
    })?;
    let key = state.custody.get(&envelope.provider).ok_or_else(|| {
        refuse(
            "match.no_custody",
            format!("this gateway holds no HPKE key of `{}`", envelope.provider),
        )
    })?;
    envelope
        .open(key)
        .map_err(|e| refuse(e.code(), e.to_string()))
}

type Evaluated = (Verdict, Vec<(String, String)>, Option<(Hash, u32)>);

fn evaluate(
    state: &AppState,
    req: &MatchRequest,
    q: &Question,
    subject: &SubjectRef,
    day: Date,
    now: u64,
) -> Result<Evaluated, Refusal> {
    // The requester's queries about this subject under this contract in the budget window.
    let window_days = state
        .registry
        .contract(&req.contract)
        .map_or(0, |c| u64::from(c.budget.per_days));
    let since = now.saturating_sub(window_days * 86_400_000);
    // Denials do not count: a malformed or refused request must not lock the
    // subject out for the requester.
    let mut prior = 0u32;
    for (_, loc) in state
        .ledger
        .accesses_of_subject(subject, since)
        .map_err(internal)?
    {
        let Some(bytes) = state
            .ledger
            .tx_bytes(loc.height, loc.index)
            .map_err(internal)?
        else {
            continue;
        };
        if let Ok(tx) = Transaction::decode(&bytes)
            && let TxBody::AccessLog {
                requester,
                contract,
                request_id,
                ..
            } = &tx.body
            && requester == &req.requester
            && contract == &req.contract
            && counts_against_budget(state, request_id)
        {
            prior += 1;
        }
    }
    let decision = state.registry.evaluate_request(
        &req.contract,
        &ContractRequest {
            contract_version: req.contract_version,
            requester: &req.requester,
            provider: &req.provider,
            record_type: &q.record_type,
            predicates: &q.predicates,
            disclose: &q.disclose,
            purpose: &q.purpose,
            today: day,
            prior_queries: prior,
        },
    );
    if let Some(rule) = decision.deny_rule() {
        return Ok((
            Verdict::Denied {
                code: rule.code().to_owned(),
                message: rule.to_string(),
            },
            Vec::new(),
            None,
        ));
    }
    // The subject's live records of this type kept by the provider.
    let mut records: Vec<(BTreeMap<String, Value>, Hash, u32)> = Vec::new();
    let keys: Vec<RecordKey> = state
        .ledger
        .records_of_subject(subject)
        .map_err(stored)?
        .into_iter()
        .filter(|k| k.department == req.provider && k.record_type == q.record_type)
        .collect();
    for k in keys {
        let Some(st) = state.ledger.record_state(&k).map_err(stored)? else {
            continue;
        };
        let Some(v) = st.current() else { continue };
        let Some(r) = state.ledger.record_version(&k, v).map_err(stored)? else {
            continue;
        };
        // Only a version that still names the subject counts.
        if !r.subject_refs.contains(subject) {
            continue;
        }
        let Some(loc) = r.location else { continue };
        records.push((r.fields, loc.leaf, r.version));
    }
    // Counts are answered on an empty set too ("owns fewer than 2 homes",
    // "no live licence bears this name"); field tests need a record.
    let needs_record = q.predicates.is_empty()
        || q.predicates
            .iter()
            .any(|p| matches!(p, Predicate::Field(_)));
    if records.is_empty() && needs_record {
        return Ok((Verdict::NoRecord, Vec::new(), None));
    }
    let maps: Vec<BTreeMap<String, Value>> = records.iter().map(|(f, _, _)| f.clone()).collect();
    let outcome = regions::predicate::evaluate_all(&q.predicates, &maps, day)
        .map_err(|e| refuse("match.malformed", format!("predicates: {e}")))?;
    let verdict = if outcome.holds {
        Verdict::Holds
    } else {
        Verdict::DoesNotHold
    };
    // The record proven: the one the field tests passed on, else the first
    // (a count over an empty set proves none).
    let Some((f, leaf, version)) = records.get(outcome.record.unwrap_or(0)) else {
        return Ok((verdict, Vec::new(), None));
    };
    let values = if outcome.holds {
        q.disclose
            .iter()
            .filter_map(|n| f.get(n).map(|v| (n.clone(), v.to_string())))
            .collect()
    } else {
        Vec::new()
    };
    Ok((verdict, values, Some((*leaf, *version))))
}

fn rebuild(
    state: &AppState,
    req: &MatchRequest,
    access_leaf: Hash,
    kept: KeptAnswer,
) -> Result<MatchAnswer, Refusal> {
    let access = state
        .ledger
        .bundle(&access_leaf)
        .map_err(internal)?
        .ok_or_else(|| internal("access-log bundle missing"))?;
    let record = match kept.record {
        None => None,
        Some(leaf) => Some(
            state
                .ledger
                .bundle(&leaf)
                .map_err(internal)?
                .ok_or_else(|| internal("record bundle missing"))?,
        ),
    };
    Ok(MatchAnswer {
        request_id: req.id,
        sealed: kept.sealed,
        access,
        record,
    })
}

/// What a requesting gateway returns to its caller.
#[derive(Debug, Clone, Serialize)]
pub struct Checked {
    /// The answer, as received.
    pub answer: MatchAnswer,
    /// Every fact checked.
    pub report: Report,
    /// True only if every fact holds.
    pub verified: bool,
    /// What the verification established (for opening the answer), when
    /// every fact holds.
    #[serde(skip)]
    pub access: Option<VerifiedAccess>,
}

/// Verifies an answer as the requesting gateway: `proofs` with the registry's
/// roots, then the headers against the provider chain's light client.
pub fn verify(
    state: &AppState,
    req: &MatchRequest,
    answer: MatchAnswer,
) -> Result<Checked, Refusal> {
    let now = state.clock.now_ms();
    let mut report = Report::new();
    let mut ok = true;
    // First the headers against what this gateway follows (a conflict is a
    // fork); a header stored by the light client has had its quorum verified.
    let mut headers = vec![&answer.access.header];
    if let Some(r) = &answer.record {
        headers.push(&r.header);
    }
    for h in headers {
        let chain = &h.header.chain_id;
        if chain == state.ledger.chain_id() {
            // Our own chain: the header must be the one we hold.
            let held = state.ledger.header(h.header.height).ok().flatten();
            if held.as_ref().map(|x| x.header.hash()) == Some(h.header.hash()) {
                report.holds(
                    "headers",
                    "header.local",
                    format!("height {} is this chain's header", h.header.height),
                );
            } else {
                ok = false;
                report.fails(
                    "headers",
                    "header.local",
                    "chain.fork",
                    "the header is not this chain's",
                    "the held header",
                    format!("height {}", h.header.height),
                );
            }
            continue;
        }
        match state.light.observe(h, now) {
            Ok(_) => report.holds(
                "headers",
                "header.light_client",
                format!(
                    "height {} of `{chain}` agrees with the followed chain",
                    h.header.height
                ),
            ),
            Err(e) => {
                ok = false;
                report.fails(
                    "headers",
                    "header.light_client",
                    e.code(),
                    e.to_string(),
                    "a header consistent with the followed chain",
                    format!("height {}", h.header.height),
                );
            }
        }
    }
    let own = state.ledger.chain_id().to_owned();
    // Exactly a held certified header (header and certificate): its
    // certificate was verified when it was stored.
    let held = |ch: &proofs::header::CertifiedHeader| {
        let h = &ch.header;
        let stored = if h.chain_id == own {
            state.ledger.header(h.height).ok().flatten()
        } else {
            state.light.header(&h.chain_id, h.height).ok().flatten()
        };
        stored.is_some_and(|x| x == *ch)
    };
    let verified: Option<VerifiedAccess> =
        verify_answer_with(&answer, req, &state.roots, now, &mut report, &held);
    ok &= verified.is_some() && report.ok();
    Ok(Checked {
        answer,
        report,
        verified: ok,
        access: verified.filter(|_| ok),
    })
}
