//! Applications: the pure state machine of a one-stop bundle.
//!
//! [`step`] takes the application as persisted, one [`Event`] and the time, and
//! returns the next state and the [`Effect`]s to carry out. It never reads a
//! clock or does I/O, so an engine can **persist first, then act**, and after
//! a crash re-derive what is still owed from the persisted state alone
//! ([`pending_effects`]).
//!
//! Phases: `matching` (every evidence request in flight at once, across
//! cities; an approval waits until every request is settled, so all evidence
//! is reported with the decision, while a rejection is immediate) →
//! `dispatching` (approved: one service request per service) →
//! `completed`; or `rejected` (the rule failed: the evidence that decided it
//! is named); or `failed` (evidence could not be obtained, or a service could
//! not be delivered, after its deadline and retries; the reason says which and
//! whether resubmitting can help). Each evidence request and each service has a
//! deadline; an answer or receipt arriving for something no longer pending has
//! no effect.

use std::collections::BTreeMap;

use proofs::Value;
use serde::{Deserialize, Serialize};

use crate::bundle::{BindError, Bundle, Params};
use crate::model::Registry;
use crate::predicate::Predicate;

/// Timing and retry settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Timing {
    /// Time for one evidence request before it is retried (ms).
    pub evidence_deadline_ms: u64,
    /// Attempts per evidence request before the application fails.
    pub evidence_attempts: u32,
    /// Time for a service request's receipt before it is delivered again (ms).
    pub service_deadline_ms: u64,
    /// Deliveries per service before the application fails.
    pub service_attempts: u32,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            evidence_deadline_ms: 15_000,
            evidence_attempts: 3,
            service_deadline_ms: 60_000,
            service_attempts: 10,
        }
    }
}

/// Where an application stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Evidence requests are out.
    Matching,
    /// Approved; service requests are out.
    Dispatching,
    /// Approved and every service receipted.
    Completed,
    /// The rule did not hold.
    Rejected,
    /// Evidence could not be obtained, a service could not be delivered, or
    /// a recipient rejected its service request (the reason says which).
    Failed,
}

impl Phase {
    /// True for the phases nothing more happens in.
    pub fn is_final(self) -> bool {
        matches!(self, Phase::Completed | Phase::Rejected | Phase::Failed)
    }
}

/// What a provider answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Answer {
    /// The predicates hold.
    Holds {
        /// Disclosed values (name → value as text).
        #[serde(default)]
        values: BTreeMap<String, String>,
    },
    /// They do not.
    DoesNotHold,
    /// No live record of the subject.
    NoRecord,
    /// The contract refused the request.
    Denied {
        /// The rule's code.
        code: String,
    },
}

/// One evidence request's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum EvidenceState {
    /// In flight.
    Pending {
        /// Attempt number (from 1).
        attempt: u32,
        /// When this attempt times out (Unix ms).
        deadline_ms: u64,
    },
    /// Answered (and verified by the engine before the event was made).
    Answered {
        /// The answer.
        answer: Answer,
        /// Attempt that got it.
        attempt: u32,
        /// When (Unix ms).
        at_ms: u64,
    },
    /// Could not be obtained.
    Failed {
        /// Why (a stable code).
        code: String,
    },
    /// Not asked: the decision came before it was needed.
    Unneeded,
}

/// One service request's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum ServiceState {
    /// Delivered (or being delivered); waiting for the receipt.
    Pending {
        /// Delivery attempt (from 1).
        attempt: u32,
        /// When it is delivered again (Unix ms).
        deadline_ms: u64,
    },
    /// The recipient's signed receipt.
    Receipted {
        /// Whether the recipient accepted the request.
        accepted: bool,
        /// The recipient's reason (rejections).
        reason: String,
        /// When (Unix ms).
        at_ms: u64,
    },
    /// Could not be delivered.
    Failed {
        /// Why.
        code: String,
    },
}

/// An application.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Application {
    /// Its id (hex of a digest chosen by the engine).
    pub id: String,
    /// The bundle.
    pub bundle: String,
    /// The service centre that took it.
    pub centre: String,
    /// Its parameters.
    pub params: Params,
    /// When it was submitted (Unix ms).
    pub submitted_ms: u64,
    /// Where it stands.
    pub phase: Phase,
    /// Evidence by id.
    pub evidence: BTreeMap<String, EvidenceState>,
    /// Services by id (filled on approval).
    pub services: BTreeMap<String, ServiceState>,
    /// Why it was rejected or failed.
    pub reason: Option<String>,
    /// Every transition, oldest first.
    pub timeline: Vec<TimelineEntry>,
}

/// One line of an application's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimelineEntry {
    /// When (Unix ms).
    pub at_ms: u64,
    /// What happened, e.g. `evidence.answered`.
    pub what: String,
    /// Which evidence or service, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item: Option<String>,
    /// Details.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

/// Something that happened to an application.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A verified answer to evidence `evidence`, attempt `attempt`.
    Answered {
        /// Evidence id.
        evidence: String,
        /// The attempt it answers.
        attempt: u32,
        /// The answer.
        answer: Answer,
    },
    /// An evidence request failed (transport, refusal, unverifiable answer).
    AskFailed {
        /// Evidence id.
        evidence: String,
        /// The attempt.
        attempt: u32,
        /// Why.
        code: String,
        /// Whether asking again can help.
        retryable: bool,
    },
    /// A recipient's verified receipt for service `service`.
    Receipted {
        /// Service id.
        service: String,
        /// Accepted or not.
        accepted: bool,
        /// The recipient's reason.
        reason: String,
    },
    /// Time passed: deadlines are checked.
    Tick,
}

/// What the engine must do after persisting the new state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "effect", rename_all = "snake_case")]
pub enum Effect {
    /// Ask a provider (a selective match).
    Ask {
        /// Evidence id.
        evidence: String,
        /// Attempt number (part of the request's identity).
        attempt: u32,
        /// The provider department's registry id.
        provider: String,
        /// The contract.
        contract: String,
        /// The record type asked about.
        record_type: String,
        /// The predicates, bound.
        predicates: Vec<Predicate>,
        /// Fields to disclose.
        disclose: Vec<String>,
        /// The subject's identifier.
        subject: String,
    },
    /// Deliver a service request (again, with the same id, after a deadline).
    Deliver {
        /// Service id.
        service: String,
        /// Attempt number (the delivery id does not change with it).
        attempt: u32,
        /// The recipient's registry id.
        recipient: String,
        /// Exactly the fields the recipient receives.
        payload: Vec<(String, Value)>,
    },
}

/// Why an application cannot be created.
pub type CreateError = BindError;

fn entry(at_ms: u64, what: &str, item: Option<&str>, detail: impl Into<String>) -> TimelineEntry {
    TimelineEntry {
        at_ms,
        what: what.to_owned(),
        item: item.map(str::to_owned),
        detail: detail.into(),
    }
}

/// Creates an application and the evidence requests to send (all at once).
pub fn create(
    registry: &Registry,
    bundle: &Bundle,
    id: String,
    centre: &str,
    params: Params,
    now_ms: u64,
    timing: &Timing,
) -> Result<(Application, Vec<Effect>), CreateError> {
    bundle.check_params(registry, &params)?;
    let mut effects = Vec::new();
    let mut evidence = BTreeMap::new();
    for e in &bundle.evidence {
        effects.push(ask(registry, bundle, &params, &e.id, 1)?);
        evidence.insert(
            e.id.clone(),
            EvidenceState::Pending {
                attempt: 1,
                deadline_ms: now_ms + timing.evidence_deadline_ms,
            },
        );
    }
    let mut app = Application {
        id,
        bundle: bundle.id.clone(),
        centre: centre.to_owned(),
        params,
        submitted_ms: now_ms,
        phase: Phase::Matching,
        evidence,
        services: BTreeMap::new(),
        reason: None,
        timeline: vec![entry(now_ms, "submitted", None, "")],
    };
    // A bundle with no evidence is decided at once.
    let more = decide(registry, bundle, &mut app, now_ms, timing);
    effects.extend(more);
    Ok((app, effects))
}

fn ask(
    registry: &Registry,
    bundle: &Bundle,
    params: &Params,
    evidence: &str,
    attempt: u32,
) -> Result<Effect, BindError> {
    let e = bundle
        .evidence(evidence)
        .ok_or_else(|| BindError::MissingParam(evidence.to_owned()))?;
    let provider = registry.evidence_provider(e, params)?;
    let record_type = registry
        .contract(&e.contract)
        .map(|c| c.record_type.clone())
        .unwrap_or_default();
    Ok(Effect::Ask {
        evidence: e.id.clone(),
        attempt,
        provider: provider.id.clone(),
        contract: e.contract.clone(),
        record_type,
        predicates: e.bind(params)?,
        disclose: e.disclose.clone(),
        subject: e.subject(params)?.to_owned(),
    })
}

/// The evidence outcome the rule reads: holds, does not hold, or unknown.
fn outcome(s: &EvidenceState) -> Option<bool> {
    match s {
        EvidenceState::Answered {
            answer: Answer::Holds { .. },
            ..
        } => Some(true),
        EvidenceState::Answered {
            answer: Answer::DoesNotHold | Answer::NoRecord,
            ..
        } => Some(false),
        _ => None,
    }
}

/// Decides if the rule allows it; on approval, starts the services.
fn decide(
    registry: &Registry,
    bundle: &Bundle,
    app: &mut Application,
    now_ms: u64,
    timing: &Timing,
) -> Vec<Effect> {
    if app.phase != Phase::Matching {
        return Vec::new();
    }
    let pending = app
        .evidence
        .values()
        .any(|s| matches!(s, EvidenceState::Pending { .. }));
    // On the answers alone: a `false` is a rejection, whatever else comes.
    let on_answers = bundle
        .rule
        .decide(&|id: &str| app.evidence.get(id).and_then(outcome));
    // With evidence that could not be obtained counted as not holding: a
    // `false` here (and not above) means the application cannot be decided.
    let pessimistic = bundle.rule.decide(&|id: &str| match app.evidence.get(id) {
        Some(EvidenceState::Failed { .. }) => Some(false),
        Some(s) => outcome(s),
        None => None,
    });
    let approved = match (on_answers, pessimistic) {
        (Some(false), _) => false,
        (_, Some(false)) => {
            let failed: Vec<String> = app
                .evidence
                .iter()
                .filter_map(|(id, s)| match s {
                    EvidenceState::Failed { code } => Some(format!("{id} ({code})")),
                    _ => None,
                })
                .collect();
            fail(
                app,
                now_ms,
                "",
                format!(
                    "cannot be decided: evidence could not be obtained: {} (resubmit to try again)",
                    failed.join(", ")
                ),
            );
            return Vec::new();
        }
        // Approved, once the rest is in (it is reported with the decision).
        (Some(true), _) if !pending => true,
        _ => return Vec::new(),
    };
    // Evidence still out is no longer needed.
    for s in app.evidence.values_mut() {
        if matches!(s, EvidenceState::Pending { .. }) {
            *s = EvidenceState::Unneeded;
        }
    }
    if !approved {
        let failed: Vec<String> = bundle
            .rule
            .evidence_ids()
            .into_iter()
            .filter(|id| app.evidence.get(*id).and_then(outcome) == Some(false))
            .map(str::to_owned)
            .collect();
        app.phase = Phase::Rejected;
        app.reason = Some(format!(
            "rule not satisfied; evidence that did not hold: {}",
            failed.join(", ")
        ));
        app.timeline
            .push(entry(now_ms, "decided", None, "rejected"));
        return Vec::new();
    }
    app.timeline
        .push(entry(now_ms, "decided", None, "approved"));
    let mut effects = Vec::new();
    for s in &bundle.services {
        match deliver(registry, bundle, app, &s.id, 1) {
            Ok(e) => {
                effects.push(e);
                app.services.insert(
                    s.id.clone(),
                    ServiceState::Pending {
                        attempt: 1,
                        deadline_ms: now_ms + timing.service_deadline_ms,
                    },
                );
            }
            Err(err) => {
                app.services.insert(
                    s.id.clone(),
                    ServiceState::Failed {
                        code: format!("service.unbound: {err}"),
                    },
                );
            }
        }
    }
    app.phase = Phase::Dispatching;
    finish(app, now_ms);
    effects
}

fn deliver(
    registry: &Registry,
    bundle: &Bundle,
    app: &Application,
    service: &str,
    attempt: u32,
) -> Result<Effect, BindError> {
    let s = bundle
        .service(service)
        .ok_or_else(|| BindError::MissingParam(service.to_owned()))?;
    let recipient = registry.service_recipient(s, &app.params)?;
    let disclosed = |evidence: &str, field: &str| -> Option<Value> {
        match app.evidence.get(evidence)? {
            EvidenceState::Answered {
                answer: Answer::Holds { values },
                ..
            } => values.get(field).map(|v| Value::Text(v.clone())),
            _ => None,
        }
    };
    Ok(Effect::Deliver {
        service: s.id.clone(),
        attempt,
        recipient: recipient.id().to_owned(),
        payload: s.payload(&app.params, &disclosed)?,
    })
}

/// Moves a dispatching application to its final phase once every service is settled.
fn finish(app: &mut Application, now_ms: u64) {
    if app.phase != Phase::Dispatching {
        return;
    }
    if app
        .services
        .values()
        .any(|s| matches!(s, ServiceState::Pending { .. }))
    {
        return;
    }
    if let Some((id, ServiceState::Failed { code })) = app
        .services
        .iter()
        .find(|(_, s)| matches!(s, ServiceState::Failed { .. }))
    {
        app.reason = Some(format!("service `{id}` failed: {code}"));
        app.phase = Phase::Failed;
        app.timeline
            .push(entry(now_ms, "failed", Some(id), code.clone()));
        return;
    }
    // A recipient that rejected its request (its signed receipt says so) did
    // not carry out the service: the application is not completed.
    if let Some((id, why)) = app.services.iter().find_map(|(id, s)| match s {
        ServiceState::Receipted {
            accepted: false,
            reason,
            ..
        } => Some((
            id.clone(),
            if reason.is_empty() {
                "no reason given".to_owned()
            } else {
                reason.clone()
            },
        )),
        _ => None,
    }) {
        app.reason = Some(format!(
            "service `{id}` was rejected by its recipient: {why}"
        ));
        app.phase = Phase::Failed;
        app.timeline.push(entry(
            now_ms,
            "failed",
            Some(&id),
            format!("service.rejected: {why}"),
        ));
        return;
    }
    app.phase = Phase::Completed;
    app.timeline.push(entry(now_ms, "completed", None, ""));
}

/// How an application contradicts its bundle or its own phase (see
/// [`check_fit`] and [`check_phase`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inconsistency {
    /// Stable code: `application.params_mismatch`,
    /// `application.evidence_mismatch`, `application.services_mismatch` or
    /// `application.phase_mismatch`.
    pub code: &'static str,
    /// What a consistent application would have.
    pub expected: String,
    /// What this one has.
    pub found: String,
}

fn inconsistent(
    code: &'static str,
    expected: impl Into<String>,
    found: impl Into<String>,
) -> Result<(), Inconsistency> {
    Err(Inconsistency {
        code,
        expected: expected.into(),
        found: found.into(),
    })
}

fn ids<'a>(it: impl Iterator<Item = &'a String>) -> String {
    let v: Vec<&str> = it.map(String::as_str).collect();
    format!("[{}]", v.join(", "))
}

/// Checks an application against its bundle's declaration: its parameters
/// are exactly the declared ones, each of its kind (cities of the registry);
/// its evidence is exactly the bundle's; its services are none (not
/// approved) or exactly the bundle's.
pub fn check_fit(
    registry: &Registry,
    bundle: &Bundle,
    app: &Application,
) -> Result<(), Inconsistency> {
    if let Err(e) = bundle.check_params(registry, &app.params) {
        return inconsistent(
            "application.params_mismatch",
            format!("the parameters bundle `{}` declares", bundle.id),
            e.to_string(),
        );
    }
    let declared = |a: &mut dyn Iterator<Item = &String>, b: &mut dyn Iterator<Item = &String>| {
        let a: std::collections::BTreeSet<&String> = a.collect();
        let b: std::collections::BTreeSet<&String> = b.collect();
        a == b
    };
    if !declared(
        &mut app.evidence.keys(),
        &mut bundle.evidence.iter().map(|e| &e.id),
    ) {
        return inconsistent(
            "application.evidence_mismatch",
            format!("evidence {}", ids(bundle.evidence.iter().map(|e| &e.id))),
            format!("evidence {}", ids(app.evidence.keys())),
        );
    }
    if !app.services.is_empty()
        && !declared(
            &mut app.services.keys(),
            &mut bundle.services.iter().map(|s| &s.id),
        )
    {
        return inconsistent(
            "application.services_mismatch",
            format!(
                "no services, or services {}",
                ids(bundle.services.iter().map(|s| &s.id))
            ),
            format!("services {}", ids(app.services.keys())),
        );
    }
    Ok(())
}

/// Checks that an application's phase agrees with its evidence, its
/// services and its reason, as [`step`] leaves them:
///
/// * `matching`: no services; some evidence pending, none unneeded; no reason;
/// * `dispatching`: every service of the bundle, some pending; no evidence pending; no reason;
/// * `completed`: every service of the bundle receipted and accepted; no evidence pending; no reason;
/// * `rejected`: no services; no evidence pending; a reason;
/// * `failed`: no evidence pending; a reason; and either no services and some
///   evidence failed (it could not be obtained), or every service of the
///   bundle, none pending, and some failed or rejected by its recipient.
///
/// [`check_fit`] is assumed (services are none or exactly the bundle's).
pub fn check_phase(bundle: &Bundle, app: &Application) -> Result<(), Inconsistency> {
    let ev_pending = app
        .evidence
        .values()
        .any(|s| matches!(s, EvidenceState::Pending { .. }));
    let ev_unneeded = app
        .evidence
        .values()
        .any(|s| matches!(s, EvidenceState::Unneeded));
    let ev_failed = app
        .evidence
        .values()
        .any(|s| matches!(s, EvidenceState::Failed { .. }));
    let all_services = app.services.len() == bundle.services.len();
    let sv_pending = app
        .services
        .values()
        .any(|s| matches!(s, ServiceState::Pending { .. }));
    let sv_done = app
        .services
        .values()
        .all(|s| matches!(s, ServiceState::Receipted { accepted: true, .. }));
    let sv_not_done = app.services.values().any(|s| {
        matches!(
            s,
            ServiceState::Failed { .. }
                | ServiceState::Receipted {
                    accepted: false,
                    ..
                }
        )
    });
    let reason = app.reason.is_some();
    let (ok, expected): (bool, &str) = match app.phase {
        Phase::Matching => (
            app.services.is_empty() && ev_pending && !ev_unneeded && !reason,
            "matching: no services, some evidence pending and none unneeded, no reason",
        ),
        Phase::Dispatching => (
            !app.services.is_empty() && all_services && sv_pending && !ev_pending && !reason,
            "dispatching: every service of the bundle, some pending; no evidence pending; no reason",
        ),
        Phase::Completed => (
            all_services && sv_done && !ev_pending && !reason,
            "completed: every service of the bundle receipted and accepted; no evidence pending; no reason",
        ),
        Phase::Rejected => (
            app.services.is_empty() && !ev_pending && reason,
            "rejected: no services; no evidence pending; a reason",
        ),
        Phase::Failed => (
            !ev_pending
                && reason
                && if app.services.is_empty() {
                    ev_failed
                } else {
                    all_services && !sv_pending && sv_not_done
                },
            "failed: no evidence pending, a reason, and either no services and some evidence \
             failed, or every service of the bundle settled and some failed or rejected",
        ),
    };
    if ok {
        return Ok(());
    }
    let state = |name: &str, n: usize| format!("{n} {name}");
    let count_ev = |f: fn(&EvidenceState) -> bool| app.evidence.values().filter(|s| f(s)).count();
    let found = format!(
        "{:?}: evidence {} pending, {} failed, {} unneeded; services {}: {} pending, {} receipted and accepted, {} failed or rejected; reason {}",
        app.phase,
        count_ev(|s| matches!(s, EvidenceState::Pending { .. })),
        count_ev(|s| matches!(s, EvidenceState::Failed { .. })),
        count_ev(|s| matches!(s, EvidenceState::Unneeded)),
        state("of", app.services.len()),
        app.services
            .values()
            .filter(|s| matches!(s, ServiceState::Pending { .. }))
            .count(),
        app.services
            .values()
            .filter(|s| matches!(s, ServiceState::Receipted { accepted: true, .. }))
            .count(),
        app.services
            .values()
            .filter(|s| matches!(
                s,
                ServiceState::Failed { .. }
                    | ServiceState::Receipted {
                        accepted: false,
                        ..
                    }
            ))
            .count(),
        if reason { "given" } else { "none" },
    );
    inconsistent("application.phase_mismatch", expected, found)
}

fn fail(app: &mut Application, now_ms: u64, item: &str, reason: String) {
    for s in app.evidence.values_mut() {
        if matches!(s, EvidenceState::Pending { .. }) {
            *s = EvidenceState::Unneeded;
        }
    }
    app.phase = Phase::Failed;
    let item = (!item.is_empty()).then_some(item);
    app.timeline
        .push(entry(now_ms, "failed", item, reason.clone()));
    app.reason = Some(reason);
}

/// Applies one event. Returns the new state and the effects to carry out
/// after it is persisted. Events for anything no longer pending (a late
/// answer, a duplicate receipt) change nothing and produce nothing.
pub fn step(
    registry: &Registry,
    bundle: &Bundle,
    app: &Application,
    event: &Event,
    now_ms: u64,
    timing: &Timing,
) -> (Application, Vec<Effect>) {
    let mut app = app.clone();
    let mut effects = Vec::new();
    match event {
        Event::Answered {
            evidence,
            attempt,
            answer,
        } => {
            let current = matches!(
                app.evidence.get(evidence),
                Some(EvidenceState::Pending { attempt: a, .. }) if a == attempt
            );
            if !current || app.phase != Phase::Matching {
                return (app, effects);
            }
            if let Answer::Denied { code } = answer {
                app.evidence.insert(
                    evidence.clone(),
                    EvidenceState::Failed { code: code.clone() },
                );
                app.timeline.push(entry(
                    now_ms,
                    "evidence.denied",
                    Some(evidence),
                    code.clone(),
                ));
                effects.extend(decide(registry, bundle, &mut app, now_ms, timing));
                return (app, effects);
            }
            app.evidence.insert(
                evidence.clone(),
                EvidenceState::Answered {
                    answer: answer.clone(),
                    attempt: *attempt,
                    at_ms: now_ms,
                },
            );
            let detail = match answer {
                Answer::Holds { .. } => "holds",
                Answer::DoesNotHold => "does not hold",
                Answer::NoRecord => "no record",
                Answer::Denied { .. } => "denied",
            };
            app.timeline
                .push(entry(now_ms, "evidence.answered", Some(evidence), detail));
            effects.extend(decide(registry, bundle, &mut app, now_ms, timing));
        }
        Event::AskFailed {
            evidence,
            attempt,
            code,
            retryable,
        } => {
            let current = matches!(
                app.evidence.get(evidence),
                Some(EvidenceState::Pending { attempt: a, .. }) if a == attempt
            );
            if !current || app.phase != Phase::Matching {
                return (app, effects);
            }
            app.timeline.push(entry(
                now_ms,
                "evidence.failed",
                Some(evidence),
                code.clone(),
            ));
            effects.extend(retry_or_fail(
                registry, bundle, &mut app, evidence, *attempt, code, *retryable, now_ms, timing,
            ));
        }
        Event::Receipted {
            service,
            accepted,
            reason,
        } => {
            if !matches!(
                app.services.get(service),
                Some(ServiceState::Pending { .. })
            ) || app.phase != Phase::Dispatching
            {
                return (app, effects);
            }
            app.services.insert(
                service.clone(),
                ServiceState::Receipted {
                    accepted: *accepted,
                    reason: reason.clone(),
                    at_ms: now_ms,
                },
            );
            app.timeline.push(entry(
                now_ms,
                "service.receipted",
                Some(service),
                if *accepted {
                    "accepted".to_owned()
                } else {
                    format!("rejected: {reason}")
                },
            ));
            finish(&mut app, now_ms);
        }
        Event::Tick => {
            if app.phase == Phase::Matching {
                let due: Vec<(String, u32)> = app
                    .evidence
                    .iter()
                    .filter_map(|(id, s)| match s {
                        EvidenceState::Pending {
                            attempt,
                            deadline_ms,
                        } if *deadline_ms <= now_ms => Some((id.clone(), *attempt)),
                        _ => None,
                    })
                    .collect();
                for (id, attempt) in due {
                    if app.phase != Phase::Matching {
                        break;
                    }
                    app.timeline
                        .push(entry(now_ms, "evidence.deadline", Some(&id), ""));
                    effects.extend(retry_or_fail(
                        registry,
                        bundle,
                        &mut app,
                        &id,
                        attempt,
                        "evidence.deadline",
                        true,
                        now_ms,
                        timing,
                    ));
                }
                if app.phase != Phase::Matching {
                    // Decided in this tick (an evidence failed for good): the
                    // others asked again in it are no longer needed; the
                    // deliveries of an approval stand.
                    effects.retain(|e| !matches!(e, Effect::Ask { .. }));
                }
            }
            if app.phase == Phase::Dispatching {
                let due: Vec<(String, u32)> = app
                    .services
                    .iter()
                    .filter_map(|(id, s)| match s {
                        ServiceState::Pending {
                            attempt,
                            deadline_ms,
                        } if *deadline_ms <= now_ms => Some((id.clone(), *attempt)),
                        _ => None,
                    })
                    .collect();
                for (id, attempt) in due {
                    if attempt >= timing.service_attempts {
                        app.services.insert(
                            id.clone(),
                            ServiceState::Failed {
                                code: "service.no_receipt".into(),
                            },
                        );
                        continue;
                    }
                    match deliver(registry, bundle, &app, &id, attempt + 1) {
                        Ok(e) => {
                            effects.push(e);
                            app.services.insert(
                                id.clone(),
                                ServiceState::Pending {
                                    attempt: attempt + 1,
                                    deadline_ms: now_ms + timing.service_deadline_ms,
                                },
                            );
                            app.timeline
                                .push(entry(now_ms, "service.redelivered", Some(&id), ""));
                        }
                        Err(e) => {
                            app.services.insert(
                                id.clone(),
                                ServiceState::Failed {
                                    code: format!("service.unbound: {e}"),
                                },
                            );
                        }
                    }
                }
                finish(&mut app, now_ms);
            }
        }
    }
    (app, effects)
}

#[allow(clippy::too_many_arguments)]
fn retry_or_fail(
    registry: &Registry,
    bundle: &Bundle,
    app: &mut Application,
    evidence: &str,
    attempt: u32,
    code: &str,
    retryable: bool,
    now_ms: u64,
    timing: &Timing,
) -> Vec<Effect> {
    if retryable
        && attempt < timing.evidence_attempts
        && let Ok(e) = ask(registry, bundle, &app.params, evidence, attempt + 1)
    {
        app.evidence.insert(
            evidence.to_owned(),
            EvidenceState::Pending {
                attempt: attempt + 1,
                deadline_ms: now_ms + timing.evidence_deadline_ms,
            },
        );
        return vec![e];
    }
    app.evidence.insert(
        evidence.to_owned(),
        EvidenceState::Failed {
            code: code.to_owned(),
        },
    );
    decide(registry, bundle, app, now_ms, timing)
}

/// What an engine still owes after a restart: the current attempt of every
/// pending evidence request and service delivery (asking again with the same
/// attempt is safe: providers answer a resent request with the same answer,
/// and inboxes dedupe deliveries).
pub fn pending_effects(registry: &Registry, bundle: &Bundle, app: &Application) -> Vec<Effect> {
    let mut out = Vec::new();
    if app.phase == Phase::Matching {
        for (id, s) in &app.evidence {
            if let EvidenceState::Pending { attempt, .. } = s
                && let Ok(e) = ask(registry, bundle, &app.params, id, *attempt)
            {
                out.push(e);
            }
        }
    }
    if app.phase == Phase::Dispatching {
        for (id, s) in &app.services {
            if let ServiceState::Pending { attempt, .. } = s
                && let Ok(e) = deliver(registry, bundle, app, id, *attempt)
            {
                out.push(e);
            }
        }
    }
    out
}

/// Domain of an application id.
pub const APP_DOMAIN: &str = "tongban/application/v1";
/// Domain of a delivery id.
pub const DELIVERY_DOMAIN: &str = "tongban/delivery/v1";
/// Domain of the id of a match request made for an application.
pub const ASK_DOMAIN: &str = "tongban/application-ask/v1";

/// The id of a centre's application for a bundle under the centre's own reference.
pub fn application_id(centre: &str, bundle: &str, reference: &str) -> proofs::Hash {
    let mut e = proofs::encoding::Encoder::with_domain(APP_DOMAIN);
    e.str(centre).str(bundle).str(reference);
    proofs::hash::sha256(&e.finish())
}

/// The id of the delivery of `service` for application `app`.
pub fn delivery_id(app: &proofs::Hash, service: &str) -> proofs::Hash {
    let mut e = proofs::encoding::Encoder::with_domain(DELIVERY_DOMAIN);
    e.raw(&app.0).str(service);
    proofs::hash::sha256(&e.finish())
}

/// The id of the match request for `evidence`, attempt `attempt`, of application `app`.
pub fn ask_id(app: &proofs::Hash, evidence: &str, attempt: u32) -> proofs::Hash {
    let mut e = proofs::encoding::Encoder::with_domain(ASK_DOMAIN);
    e.raw(&app.0).str(evidence).u32(attempt);
    proofs::hash::sha256(&e.finish())
}

/// The question text of an evidence request (what the request carries and
/// the access log hashes): record type, bound predicates, fields, purpose.
pub fn question_text(
    record_type: &str,
    predicates: &[Predicate],
    disclose: &[String],
    purpose: &str,
) -> String {
    serde_json::json!({
        "record_type": record_type,
        "predicates": predicates,
        "disclose": disclose,
        "purpose": purpose,
    })
    .to_string()
}
