//! The application engine: the thin shell around `regions::application`.
//!
//! For each event the engine loads the application, runs the pure
//! [`step`](regions::application::step), and commits the new state together
//! with an application-step transaction on this city's chain (one atomic,
//! flushed block) — **then** carries out the effects: selective matches on the
//! centre's behalf, and service deliveries to the inboxes of the recipients'
//! gateways. After a restart it re-derives what is owed from the persisted
//! state ([`pending_effects`](regions::application::pending_effects)).
//! Requests made for an application are deterministic (ids, seals and times
//! are persisted before they are sent), so a resend after a crash is answered
//! as the original was, and an inbox recognises a redelivery.
//!
//! Storage (service state beside the ledger): `P ‖ app id` → application;
//! `E ‖ app id ‖ 0 ‖ evidence ‖ 0 ‖ attempt` → the signed match request;
//! `E ‖ app id ‖ 1 ‖ evidence` → the verified answer with its opening;
//! `E ‖ app id ‖ 2 ‖ service` → the recipient's receipt bundle.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use proofs::hash::sha256;
use proofs::matching::{AnswerPlain, MatchAnswer, MatchRequest, RequestDraft, Verdict};
use proofs::seal::Sealed;
use proofs::tx::{Transaction, TxBody};
use proofs::{Hash, ProofBundle, Role, Value};
use rand_core::SeedableRng;
use regions::application::{self as app, Answer, Application, Effect, Event};
use relay::Refusal;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::ledger::{Intent, Outcome, PreparedTx};
use crate::state::AppState;

use regions::application::ask_id;
pub use regions::application::{application_id, delivery_id};

/// HPKE `info` of a sealed service request.
pub const SERVICE_INFO: &[u8] = b"tongban/service-request/v1";

fn key(prefix: u8, parts: &[&[u8]]) -> Vec<u8> {
    let mut k = vec![prefix];
    for p in parts {
        k.extend_from_slice(p);
    }
    k
}

/// A service request as delivered to a recipient's inbox, signed by the centre.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Delivery {
    /// Deterministic id (application and service).
    pub id: Hash,
    /// The application.
    pub application: Hash,
    /// The bundle's service id.
    pub service: String,
    /// The centre that took the application.
    pub centre: String,
    /// The recipient (utility or department).
    pub recipient: String,
    /// The payload (JSON object of the service's fields), sealed to the recipient.
    pub sealed: Sealed,
    /// The centre's signature over [`Delivery::signing_bytes`].
    pub signature: proofs::Signature,
}

impl Delivery {
    /// What the centre signs.
    pub fn signing_bytes(&self) -> Vec<u8> {
        let mut e = proofs::encoding::Encoder::with_domain("tongban/delivery-sig/v1");
        e.raw(&self.id.0)
            .raw(&self.application.0)
            .str(&self.service)
            .str(&self.centre)
            .str(&self.recipient)
            .raw(&self.sealed.enc)
            .bytes(&self.sealed.ciphertext);
        e.finish()
    }
    /// The AAD of the sealed payload.
    pub fn aad(id: &Hash, recipient: &str) -> Vec<u8> {
        let mut e = proofs::encoding::Encoder::with_domain("tongban/service-aad/v1");
        e.raw(&id.0).str(recipient);
        e.finish()
    }
    /// SHA-256 of the sealed request (what a receipt names).
    pub fn request_hash(&self) -> Hash {
        let mut b = self.sealed.enc.to_vec();
        b.extend_from_slice(&self.sealed.ciphertext);
        sha256(&b)
    }
    /// What anyone holding the trust roots can check of a delivery: its
    /// centre is a service centre whose signature verifies, and its id is
    /// derived from its application and service.
    pub fn check(&self, roots: &proofs::TrustRoots) -> Result<(), DeliveryFault> {
        let centre = roots
            .members
            .get(&self.centre)
            .filter(|m| m.role == Role::ServiceCentre)
            .ok_or_else(|| DeliveryFault::UnknownCentre(self.centre.clone()))?;
        centre
            .signing
            .verify(&self.signing_bytes(), &self.signature)
            .map_err(|_| DeliveryFault::BadSignature)?;
        if self.id != delivery_id(&self.application, &self.service) {
            return Err(DeliveryFault::BadId);
        }
        Ok(())
    }
}

/// Why a delivery does not check out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryFault {
    /// `centre` is not a service centre.
    #[error("delivery.centre: `{0}` is not a service centre")]
    UnknownCentre(String),
    /// The centre's signature does not verify.
    #[error("delivery.signature: the centre's signature does not verify")]
    BadSignature,
    /// The id is not derived from the application and service.
    #[error("delivery.id: not derived from its application and service")]
    BadId,
}

impl DeliveryFault {
    /// The stable code an inbox refuses it with.
    pub fn inbox_code(&self) -> &'static str {
        match self {
            DeliveryFault::UnknownCentre(_) => "inbox.unknown_centre",
            DeliveryFault::BadSignature => "inbox.bad_signature",
            DeliveryFault::BadId => "inbox.bad_id",
        }
    }
}

/// What an inbox answers a delivery with.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeliveryStatus {
    /// The receipt bundle, once the recipient has closed the request.
    pub receipt: Option<ProofBundle>,
}

/// The verified evidence kept for an application (for its evidence package).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeptEvidence {
    /// The request as sent.
    pub request: MatchRequest,
    /// The answer as received.
    pub answer: MatchAnswer,
    /// The opened answer (its SHA-256 is the committed answer in the access log).
    pub plain: AnswerPlain,
}

/// State written with an application step.
pub type Puts = Vec<(Vec<u8>, Vec<u8>)>;

enum Input {
    Event(Hash, Event, Puts),
}

/// A handle to the engine task.
#[derive(Clone)]
pub struct Engine {
    tx: mpsc::Sender<Input>,
    /// Applications not final → the earliest deadline they wait for (Unix
    /// ms; 0: tick at every round). Only those due are ticked.
    active: Arc<Mutex<HashMap<Hash, u64>>>,
}

/// The earliest deadline an application waits for: a tick before it changes
/// nothing (the state machine acts on a tick only for a pending request whose
/// deadline has passed). 0 when none is found, so that it is ticked anyway.
fn next_deadline(a: &Application) -> u64 {
    use regions::application::{EvidenceState, Phase, ServiceState};
    let evidence = a.evidence.values().filter_map(|e| match e {
        EvidenceState::Pending { deadline_ms, .. } if a.phase == Phase::Matching => {
            Some(*deadline_ms)
        }
        _ => None,
    });
    let services = a.services.values().filter_map(|e| match e {
        ServiceState::Pending { deadline_ms, .. } if a.phase == Phase::Dispatching => {
            Some(*deadline_ms)
        }
        _ => None,
    });
    evidence.chain(services).min().unwrap_or(0)
}

/// Why an application was refused.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// Unknown bundle.
    #[error("no bundle `{0}` in the registry")]
    UnknownBundle(String),
    /// Bad parameters.
    #[error("{0}")]
    Params(String),
    /// This gateway does not hold the centre's keys.
    #[error("this gateway does not act for `{0}`")]
    NoCustody(String),
    /// Storage.
    #[error("the ledger could not take the application: {0}")]
    Ledger(String),
}

impl SubmitError {
    /// Stable code.
    pub fn code(&self) -> &'static str {
        match self {
            SubmitError::UnknownBundle(_) => "application.unknown_bundle",
            SubmitError::Params(_) => "application.invalid_params",
            SubmitError::NoCustody(_) => "application.no_custody",
            SubmitError::Ledger(_) => "ledger.unavailable",
        }
    }
}

/// Converts JSON parameter values to typed values by the bundle's declarations.
pub fn typed_params(
    bundle: &regions::Bundle,
    json: &serde_json::Map<String, serde_json::Value>,
) -> Result<regions::Params, String> {
    let mut out = BTreeMap::new();
    for (k, v) in json {
        let p = bundle
            .param(k)
            .ok_or_else(|| format!("`{k}` is not a parameter of `{}`", bundle.id))?;
        let kind = p.kind.value_kind();
        let value = Value::from_plain(kind, v.as_str(), v.as_i64(), v.as_bool())
            .ok_or_else(|| format!("`{k}` must be a {}", p.kind))?;
        out.insert(k.clone(), value);
    }
    Ok(out)
}

impl Engine {
    /// Starts the engine for `state`, resuming every application not final.
    pub fn start(state: &Arc<AppState>) -> Engine {
        let (tx, rx) = mpsc::channel(4096);
        let engine = Engine {
            tx,
            active: Arc::default(),
        };
        let weak = Arc::downgrade(state);
        tokio::spawn(run(weak.clone(), engine.clone(), rx));
        tokio::spawn(ticker(weak.clone(), engine.clone()));
        // Resume.
        if let Ok(entries) = state.ledger.state_scan(b"P") {
            for (k, v) in entries {
                let Ok(a) = serde_json::from_slice::<Application>(&v) else {
                    continue;
                };
                if a.phase.is_final() {
                    continue;
                }
                let Some(id) = k.get(1..33).and_then(|b| b.try_into().ok()).map(Hash) else {
                    continue;
                };
                engine.lock().insert(id, next_deadline(&a));
                if let Some(bundle) = state.registry.bundles.iter().find(|b| b.id == a.bundle) {
                    let owed = app::pending_effects(&state.registry, bundle, &a);
                    tracing::info!(application = %id, effects = owed.len(), "resuming application");
                    act(weak.clone(), engine.clone(), id, &a, owed);
                }
            }
        }
        engine
    }

    /// The applications not yet final (for the backlog metrics).
    pub fn active(&self) -> Vec<Hash> {
        self.lock().keys().copied().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Hash, u64>> {
        self.active
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    async fn send(&self, app: Hash, ev: Event, puts: Vec<(Vec<u8>, Vec<u8>)>) {
        let _ = self.tx.send(Input::Event(app, ev, puts)).await;
    }

    /// Submits an application (idempotent on the centre's `reference`):
    /// persists it with its `submitted` step, then sends its evidence requests.
    pub async fn submit(
        &self,
        state: &Arc<AppState>,
        centre: &str,
        bundle_id: &str,
        reference: &str,
        params: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<(Application, bool), SubmitError> {
        let bundle = state
            .registry
            .bundles
            .iter()
            .find(|b| b.id == bundle_id)
            .ok_or_else(|| SubmitError::UnknownBundle(bundle_id.to_owned()))?;
        if !state.centre_keys.contains_key(centre) || !state.custody.contains_key(centre) {
            return Err(SubmitError::NoCustody(centre.to_owned()));
        }
        let id = application_id(centre, bundle_id, reference);
        if let Some(a) = load(state, &id) {
            return Ok((a, false));
        }
        let params = typed_params(bundle, params).map_err(SubmitError::Params)?;
        let now = state.clock.now_ms();
        let (a, effects) = app::create(
            &state.registry,
            bundle,
            id.to_string(),
            centre,
            params,
            now,
            &state.timing,
        )
        .map_err(|e| SubmitError::Params(e.to_string()))?;
        commit(state, &id, &a, Vec::new())
            .await
            .map_err(SubmitError::Ledger)?;
        if !a.phase.is_final() {
            self.lock().insert(id, next_deadline(&a));
        }
        act(Arc::downgrade(state), self.clone(), id, &a, effects);
        Ok((a, true))
    }
}

/// The persisted application.
pub fn load(state: &AppState, id: &Hash) -> Option<Application> {
    state
        .ledger
        .state(&key(b'P', &[&id.0]))
        .ok()
        .flatten()
        .and_then(|v| serde_json::from_slice(&v).ok())
}

/// The evidence kept for an application.
pub fn kept_evidence(state: &AppState, id: &Hash) -> BTreeMap<String, KeptEvidence> {
    let mut out = BTreeMap::new();
    if let Ok(entries) = state.ledger.state_scan(&key(b'E', &[&id.0, &[1]])) {
        for (k, v) in entries {
            let name = String::from_utf8_lossy(&k[34..]).into_owned();
            if let Ok(e) = serde_json::from_slice(&v) {
                out.insert(name, e);
            }
        }
    }
    out
}

/// The receipts kept for an application, by service.
pub fn kept_receipts(state: &AppState, id: &Hash) -> BTreeMap<String, ProofBundle> {
    let mut out = BTreeMap::new();
    if let Ok(entries) = state.ledger.state_scan(&key(b'E', &[&id.0, &[2]])) {
        for (k, v) in entries {
            let name = String::from_utf8_lossy(&k[34..]).into_owned();
            if let Ok(b) = ProofBundle::decode(&v) {
                out.insert(name, b);
            }
        }
    }
    out
}

/// The application-step transaction committing `a`, with its state puts.
fn step_intent(
    state: &AppState,
    id: &Hash,
    a: &Application,
    mut puts: Puts,
) -> Result<Intent, String> {
    let last = a.timeline.last();
    let step = last.map_or("state", |e| e.what.as_str());
    let item = last.and_then(|e| e.item.clone()).unwrap_or_default();
    let bytes = serde_json::to_vec(a).map_err(|e| e.to_string())?;
    let tx = Transaction::sign(
        state.ledger.chain_id(),
        &state.gateway_id,
        TxBody::ApplicationStep {
            application: *id,
            bundle: a.bundle.clone(),
            step: step.to_owned(),
            item,
            detail: sha256(&bytes),
            at_ms: last.map_or(a.submitted_ms, |e| e.at_ms),
        },
        &state.gateway_key,
    );
    puts.push((key(b'P', &[&id.0]), bytes));
    let prepared = PreparedTx::new(&tx);
    // The step's leaf, so the evidence package can prove every step.
    puts.push((key(b'E', &[&id.0, &[3], &prepared.leaf.0]), Vec::new()));
    Ok(Intent::Record { tx: prepared, puts })
}

fn written(o: Option<&Outcome>) -> Result<(), String> {
    match o {
        Some(Outcome::Written { .. } | Outcome::Duplicate { .. }) => Ok(()),
        Some(Outcome::Rejected { code, message }) => Err(format!("{code}: {message}")),
        None => Err("no outcome".into()),
    }
}

/// Commits the application's new state with one application-step transaction.
async fn commit(state: &AppState, id: &Hash, a: &Application, puts: Puts) -> Result<(), String> {
    let intent = step_intent(state, id, a, puts)?;
    let out = state
        .writer
        .submit(vec![intent])
        .await
        .map_err(|e| e.to_string())?;
    written(out.first().and_then(|o| o.first()))
}

/// Takes events in batches: each application's events are applied in order on
/// its latest state, every resulting step is committed in one block (one
/// flush), and only then are the effects carried out.
async fn run(state: Weak<AppState>, engine: Engine, mut rx: mpsc::Receiver<Input>) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < 512 {
            match rx.try_recv() {
                Ok(x) => batch.push(x),
                Err(_) => break,
            }
        }
        let Some(s) = state.upgrade() else { return };
        let now = s.clock.now_ms();
        let mut current: std::collections::HashMap<Hash, Application> =
            std::collections::HashMap::new();
        let mut intents = Vec::new();
        let mut acts = Vec::new();
        for Input::Event(id, ev, puts) in batch {
            let Some(a) = current.get(&id).cloned().or_else(|| load(&s, &id)) else {
                continue;
            };
            let Some(bundle) = s.registry.bundles.iter().find(|b| b.id == a.bundle) else {
                continue;
            };
            let (next, effects) = app::step(&s.registry, bundle, &a, &ev, now, &s.timing);
            if next == a {
                continue;
            }
            match step_intent(&s, &id, &next, puts) {
                Ok(i) => intents.push(i),
                Err(e) => {
                    tracing::error!(application = %id, error = %e, "application step not prepared");
                    continue;
                }
            }
            current.insert(id, next.clone());
            acts.push((id, next, effects));
        }
        if intents.is_empty() {
            continue;
        }
        let outs = match s.writer.submit(intents).await {
            Ok(o) => o,
            Err(e) => {
                // Not persisted, so not acted on; the deadlines bring it back.
                tracing::error!(error = %e, "application steps not committed");
                continue;
            }
        };
        for ((id, next, effects), o) in acts.into_iter().zip(outs.iter()) {
            if let Err(e) = written(o.first()) {
                tracing::error!(application = %id, error = %e, "application step refused");
                continue;
            }
            if next.phase.is_final() {
                engine.lock().remove(&id);
                tracing::info!(application = %id, phase = ?next.phase, "application final");
            } else if let Some(d) = engine.lock().get_mut(&id) {
                *d = next_deadline(&next);
            }
            act(state.clone(), engine.clone(), id, &next, effects);
        }
    }
}

async fn ticker(state: Weak<AppState>, engine: Engine) {
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tick.tick().await;
        let Some(now) = state.upgrade().map(|s| s.clock.now_ms()) else {
            return;
        };
        // Only the applications with a deadline passed: under load, ticking
        // every application every round would crowd out the answers.
        let ids: Vec<Hash> = engine
            .lock()
            .iter()
            .filter(|(_, d)| **d <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            engine.send(id, Event::Tick, Vec::new()).await;
        }
    }
}

fn act(state: Weak<AppState>, engine: Engine, id: Hash, a: &Application, effects: Vec<Effect>) {
    for e in effects {
        let (state, engine, centre) = (state.clone(), engine.clone(), a.centre.clone());
        tokio::spawn(async move {
            let Some(s) = state.upgrade() else { return };
            match e {
                Effect::Ask {
                    evidence,
                    attempt,
                    provider,
                    contract,
                    record_type,
                    predicates,
                    disclose,
                    subject,
                } => {
                    let q = AskSpec {
                        centre: &centre,
                        evidence: &evidence,
                        attempt,
                        provider: &provider,
                        contract: &contract,
                        record_type: &record_type,
                        predicates: &predicates,
                        disclose: &disclose,
                        subject: &subject,
                    };
                    let (ev, puts) = ask(&s, &id, &q).await;
                    drop(s);
                    engine.send(id, ev, puts).await;
                }
                Effect::Deliver {
                    service,
                    recipient,
                    payload,
                    ..
                } => {
                    if let Some((ev, puts)) =
                        deliver(&s, &id, &centre, &service, &recipient, &payload).await
                    {
                        drop(s);
                        engine.send(id, ev, puts).await;
                    }
                }
            }
        });
    }
}

struct AskSpec<'a> {
    centre: &'a str,
    evidence: &'a str,
    attempt: u32,
    provider: &'a str,
    contract: &'a str,
    record_type: &'a str,
    predicates: &'a [regions::Predicate],
    disclose: &'a [String],
    subject: &'a str,
}

fn failed(q: &AskSpec<'_>, code: &str, retryable: bool) -> Event {
    Event::AskFailed {
        evidence: q.evidence.to_owned(),
        attempt: q.attempt,
        code: code.to_owned(),
        retryable,
    }
}

/// The signed request of one evidence attempt: made once, persisted, then reused.
async fn request_for(s: &AppState, id: &Hash, q: &AskSpec<'_>) -> Result<MatchRequest, String> {
    let k = key(
        b'E',
        &[
            &id.0,
            &[0],
            q.evidence.as_bytes(),
            &[0],
            &q.attempt.to_be_bytes(),
        ],
    );
    if let Some(v) = s.ledger.state(&k).map_err(|e| e.to_string())? {
        return serde_json::from_slice(&v).map_err(|e| e.to_string());
    }
    let key_c = s.centre_keys.get(q.centre).ok_or("no centre key")?;
    let hpke = s
        .roots
        .members
        .get(q.provider)
        .and_then(|m| m.hpke)
        .ok_or("provider without an HPKE key")?;
    let version = s.registry.contract(q.contract).map_or(0, |c| c.version);
    let purpose = s
        .registry
        .contract(q.contract)
        .map(|c| c.purpose.clone())
        .unwrap_or_default();
    let question =
        regions::application::question_text(q.record_type, q.predicates, q.disclose, &purpose);
    let rid = ask_id(id, q.evidence, q.attempt);
    let mut seed_in = key_c.to_seed().to_vec();
    seed_in.extend_from_slice(&rid.0);
    let mut rng = rand_chacha::ChaCha20Rng::from_seed(sha256(&seed_in).0);
    let now = s.clock.now_ms();
    let req = MatchRequest::create(
        &RequestDraft {
            id: rid,
            requester: q.centre,
            provider: q.provider,
            contract: q.contract,
            contract_version: version,
            question: &question,
            issued_ms: now,
            expires_ms: now + 120_000,
            subject: q.subject,
        },
        &hpke,
        key_c,
        &mut rng,
    )
    .map_err(|e| e.to_string())?;
    // Persisted before it is sent: a resend after a crash is byte-identical.
    let tx = Transaction::sign(
        s.ledger.chain_id(),
        &s.gateway_id,
        TxBody::ApplicationStep {
            application: *id,
            bundle: String::new(),
            step: "evidence.asked".into(),
            item: q.evidence.to_owned(),
            detail: req.digest(),
            at_ms: now,
        },
        &s.gateway_key,
    );
    let bytes = serde_json::to_vec(&req).map_err(|e| e.to_string())?;
    s.writer
        .submit(vec![Intent::Record {
            tx: PreparedTx::new(&tx),
            puts: vec![(k, bytes)],
        }])
        .await
        .map_err(|e| e.to_string())?;
    Ok(req)
}

async fn ask(s: &Arc<AppState>, id: &Hash, q: &AskSpec<'_>) -> (Event, Puts) {
    let req = match request_for(s, id, q).await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(application = %id, evidence = q.evidence, error = %e, "cannot make the request");
            return (failed(q, "application.request", true), Vec::new());
        }
    };
    let provider_city = s.roots.members.get(q.provider).map(|m| m.city.clone());
    let gateway = provider_city
        .as_deref()
        .and_then(|c| s.registry.city(c))
        .map(|c| c.gateway.id.clone());
    let Some(gateway) = gateway else {
        return (failed(q, "match.unknown_provider", false), Vec::new());
    };
    let answer: Result<MatchAnswer, Refusal> = if gateway == s.gateway_id {
        crate::matching::answer(s, req.clone()).await
    } else {
        crate::matching::ask_remote(s, &gateway, &req)
            .await
            .map_err(|e| match e {
                relay::RelayError::Refused(r) => r,
                e => Refusal::new(e.code(), e.to_string()),
            })
    };
    let answer = match answer {
        Ok(a) => a,
        Err(r) => {
            let retryable = r.code.starts_with("relay.")
                || r.code == "internal"
                || r.code == "ledger.unavailable"
                || r.code == "match.expired";
            return (failed(q, &r.code, retryable), Vec::new());
        }
    };
    // The requesting gateway's verification (proofs with the registry's
    // roots, headers against its light clients) establishes what opening the
    // answer needs; it is not repeated.
    let (checked, v) = match crate::matching::verify(s, &req, answer) {
        Ok(c) if c.verified => match c.access.clone() {
            Some(v) => (c, v),
            None => return (failed(q, "match.unverified", true), Vec::new()),
        },
        Ok(c) => {
            let code = c.report.first_failure_code().unwrap_or("match.unverified");
            return (failed(q, code, true), Vec::new());
        }
        Err(r) => return (failed(q, &r.code, true), Vec::new()),
    };
    let Some(hpke) = s.custody.get(q.centre) else {
        return (failed(q, "application.no_custody", false), Vec::new());
    };
    let plain = match proofs::matching::open_answer(&checked.answer, &req, &v, hpke) {
        Ok(p) => p,
        Err(e) => return (failed(q, e.code(), true), Vec::new()),
    };
    let answer = match &plain.verdict {
        Verdict::Holds => Answer::Holds {
            values: plain.values.iter().cloned().collect(),
        },
        Verdict::DoesNotHold => Answer::DoesNotHold,
        Verdict::NoRecord => Answer::NoRecord,
        Verdict::Denied { code, .. } => Answer::Denied { code: code.clone() },
    };
    let kept = KeptEvidence {
        request: req,
        answer: checked.answer,
        plain,
    };
    let puts = vec![(
        key(b'E', &[&id.0, &[1], q.evidence.as_bytes()]),
        serde_json::to_vec(&kept).unwrap_or_default(),
    )];
    (
        Event::Answered {
            evidence: q.evidence.to_owned(),
            attempt: q.attempt,
            answer,
        },
        puts,
    )
}

/// Builds (deterministically) and delivers a service request; returns the
/// receipt event if the recipient had already closed it.
async fn deliver(
    s: &Arc<AppState>,
    id: &Hash,
    centre: &str,
    service: &str,
    recipient: &str,
    payload: &[(String, Value)],
) -> Option<(Event, Puts)> {
    let key_c = s.centre_keys.get(centre)?;
    let hpke = s.roots.members.get(recipient).and_then(|m| m.hpke)?;
    let did = delivery_id(id, service);
    let body: serde_json::Map<String, serde_json::Value> = payload
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::Value::String(v.to_string())))
        .collect();
    let plain = serde_json::to_vec(&body).ok()?;
    let mut seed_in = key_c.to_seed().to_vec();
    seed_in.extend_from_slice(&did.0);
    let mut rng = rand_chacha::ChaCha20Rng::from_seed(sha256(&seed_in).0);
    let sealed = proofs::seal::seal_base(
        &hpke,
        SERVICE_INFO,
        &Delivery::aad(&did, recipient),
        &plain,
        &mut rng,
    )
    .ok()?;
    let mut d = Delivery {
        id: did,
        application: *id,
        service: service.to_owned(),
        centre: centre.to_owned(),
        recipient: recipient.to_owned(),
        sealed,
        signature: proofs::Signature([0; 64]),
    };
    d.signature = key_c.sign(&d.signing_bytes());
    let city = s.roots.members.get(recipient).map(|m| m.city.clone())?;
    let gateway = s.registry.city(&city).map(|c| c.gateway.id.clone())?;
    let status: Result<DeliveryStatus, String> = if gateway == s.gateway_id {
        crate::inbox::accept(s, d.clone())
            .await
            .map_err(|r| r.to_string())
    } else {
        match s.relay.get() {
            None => Err("relay disabled".into()),
            Some(r) => match r
                .request(
                    &gateway,
                    "deliver",
                    serde_json::to_vec(&d).unwrap_or_default(),
                )
                .await
            {
                Ok(b) => serde_json::from_slice(&b).map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            },
        }
    };
    match status {
        Err(e) => {
            // The deadline brings a redelivery.
            tracing::warn!(application = %id, service, error = %e, "delivery failed; will be retried");
            None
        }
        Ok(DeliveryStatus { receipt: None }) => None,
        Ok(DeliveryStatus {
            receipt: Some(bundle),
        }) => receipt_event(s, &d, &bundle),
    }
}

/// Verifies a receipt bundle for a delivery and turns it into an event.
pub fn receipt_event(s: &AppState, d: &Delivery, bundle: &ProofBundle) -> Option<(Event, Puts)> {
    let mut report = proofs::Report::new();
    let tx = proofs::verify_bundle(bundle, &s.roots, s.clock.now_ms(), "receipt", &mut report)?;
    match &tx.body {
        TxBody::ServiceReceipt {
            delivery,
            application,
            service,
            request,
            accepted,
            reason,
            ..
        } if *delivery == d.id
            && *application == d.application
            && *service == d.service
            && *request == d.request_hash()
            && tx.author == d.recipient =>
        {
            Some((
                Event::Receipted {
                    service: service.clone(),
                    accepted: *accepted,
                    reason: reason.clone(),
                },
                vec![(
                    key(b'E', &[&d.application.0, &[2], d.service.as_bytes()]),
                    bundle.encode(),
                )],
            ))
        }
        _ => None,
    }
}

/// Feeds a receipt pushed by a recipient's gateway to the engine.
pub async fn on_receipt(
    s: &Arc<AppState>,
    engine: &Engine,
    d: &Delivery,
    bundle: &ProofBundle,
) -> Result<(), Refusal> {
    let (ev, puts) = receipt_event(s, d, bundle).ok_or_else(|| {
        Refusal::new(
            "receipt.invalid",
            "the receipt does not verify for this delivery",
        )
    })?;
    engine.send(d.application, ev, puts).await;
    Ok(())
}

/// Members whose keys this gateway needs to act for a centre.
pub fn is_centre(roots: &proofs::TrustRoots, id: &str) -> bool {
    roots
        .members
        .get(id)
        .is_some_and(|m| m.role == Role::ServiceCentre)
}

/// The evidence package of an application (see `regions::evidence`).
pub fn package(state: &AppState, id: &Hash) -> Option<regions::evidence::ApplicationPackage> {
    let bytes = state.ledger.state(&key(b'P', &[&id.0])).ok()??;
    let application = String::from_utf8(bytes).ok()?;
    let a: Application = serde_json::from_str(&application).ok()?;
    let mut steps: Vec<ProofBundle> = state
        .ledger
        .state_scan(&key(b'E', &[&id.0, &[3]]))
        .ok()?
        .into_iter()
        .filter_map(|(k, _)| k.get(34..66).and_then(|b| b.try_into().ok()).map(Hash))
        .filter_map(|leaf| state.ledger.bundle(&leaf).ok().flatten())
        .collect();
    steps.sort_by_key(|b| (b.header.header.height, b.proof.index));
    let evidence = kept_evidence(state, id)
        .into_iter()
        .filter_map(|(name, k)| {
            let attempt = match a.evidence.get(&name)? {
                regions::application::EvidenceState::Answered { attempt, .. } => *attempt,
                _ => return None,
            };
            Some(regions::evidence::EvidenceItem {
                id: name,
                attempt,
                request: k.request,
                access: k.answer.access,
                record: k.answer.record,
                answer: k.plain.encode(),
            })
        })
        .collect();
    let receipts = kept_receipts(state, id)
        .into_iter()
        .map(|(service, bundle)| regions::evidence::ReceiptItem { service, bundle })
        .collect();
    Some(regions::evidence::ApplicationPackage {
        format: regions::evidence::PACKAGE_FORMAT.into(),
        registry_hash: state.registry_hash,
        application_id: *id,
        application,
        steps,
        evidence,
        receipts,
    })
}
