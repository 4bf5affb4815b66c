//! Evidence packages of applications, and their offline verification.
//!
//! A package holds everything needed to check a decided application with the
//! region's registry alone: the application exactly as its last step committed
//! it, a proof bundle for every application step, and for every piece of
//! evidence the signed request, the bundles of the access-log entry and of the
//! record evaluated, and the opened answer (whose SHA-256 the access log
//! commits to); and the bundle of every service receipt. Sealed ciphertexts
//! are not included: an inspector has no key to open them, and the opened
//! answers are bound by their commitments instead. Every value in a package is
//! checked; nothing is shown as verified that was not.
//!
//! [`verify_package`] is pure: trust roots, registry and time are arguments.

use std::collections::BTreeMap;

use proofs::bundle::verify_bundle_with;
use proofs::hash::sha256;
use proofs::matching::{MatchAnswer, MatchRequest, Verdict, check_opened, verify_answer_with};
use proofs::report::Report;
use proofs::seal::Sealed;
use proofs::tx::TxBody;
use proofs::{Hash, ProofBundle, Role, TrustRoots};
use serde::{Deserialize, Serialize};

use crate::application::{
    Answer, Application, EvidenceState, Phase, ServiceState, ask_id, check_fit, check_phase,
    delivery_id, question_text,
};
use crate::model::Registry;

/// The format tag of an application evidence package.
pub const PACKAGE_FORMAT: &str = "tongban-application-evidence/v1";

/// One piece of evidence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvidenceItem {
    /// The bundle's evidence id.
    pub id: String,
    /// The attempt that was answered.
    pub attempt: u32,
    /// The signed request.
    pub request: MatchRequest,
    /// The access-log entry's bundle.
    pub access: ProofBundle,
    /// The record commitment's bundle, if a record was evaluated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<ProofBundle>,
    /// The opened answer's canonical bytes (hex).
    #[serde(with = "proofs::hash::hex_bytes")]
    pub answer: Vec<u8>,
}

/// One service receipt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiptItem {
    /// The bundle's service id.
    pub service: String,
    /// The receipt transaction's bundle.
    pub bundle: ProofBundle,
}

/// An application's evidence package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApplicationPackage {
    /// [`PACKAGE_FORMAT`].
    pub format: String,
    /// SHA-256 of the registry the package is to be checked against.
    pub registry_hash: Hash,
    /// The application's id.
    pub application_id: Hash,
    /// The application as JSON, exactly the bytes its last step committed.
    pub application: String,
    /// Bundles of the application's steps, oldest first.
    pub steps: Vec<ProofBundle>,
    /// The evidence answered.
    pub evidence: Vec<EvidenceItem>,
    /// The service receipts.
    pub receipts: Vec<ReceiptItem>,
}

/// What a package cannot show, even when every fact holds (the inspector
/// prints it after its report; `docs/encoding.md` section 15).
pub const CANNOT_SHOW: &[&str] = &[
    "Each verdict, the disclosed values, and that the record evaluated was then its latest \
     version and not revoked, are the provider's signed word: its gateway's access log, \
     certified by its city's endorsers, proves who answered what, not that the answer is true.",
    "Whether the provider applied its contract (parties, fields, validity, budget) is \
     attested by its access log, not re-derived.",
    "A package shows a state of the application that its centre's gateway committed, not \
     that it is the latest state: a later step may exist and be left out. Its times and \
     timeline are that gateway's claims; only the certified headers' times are the chains'.",
    "Evidence that may be left out and still verify: answers the application does not \
     record as answered (pending, failed, denied or unneeded evidence, earlier attempts), \
     every step but the last, and receipts of services not recorded as receipted.",
    "Which person a request was about: the subject is sealed to the provider and named on \
     chain only by a keyed reference; what a service request carried is sealed to its \
     recipient (a receipt names only its hash).",
];

const SUBJECT: &str = "package";

/// Reads a package's JSON text strictly (docs/encoding.md section 15.1,
/// "Strict reading"): nesting at most [`proofs::json::MAX_DEPTH`] levels, no
/// key twice, no lone surrogate, no `null` (an absent field is left out),
/// hex in lower case, no unknown field. The error says which rule broke.
pub fn parse_package(text: &str) -> Result<ApplicationPackage, String> {
    proofs::json::check_strict(text, false)?;
    serde_json::from_str(text).map_err(|e| e.to_string())
}

/// The application's JSON, read strictly as a package is, except that it may
/// hold `null` (the engine writes an absent `reason` so); and it must be in
/// its written form (section 15.1): read and written again it is the same
/// JSON value — no unknown or missing field, no other form of a value.
fn parse_application(text: &str) -> Result<Application, String> {
    proofs::json::check_strict(text, true)?;
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let app: Application = serde_json::from_value(value.clone()).map_err(|e| e.to_string())?;
    let again = serde_json::to_value(&app).map_err(|e| e.to_string())?;
    match first_difference(&value, &again, "") {
        None => Ok(app),
        Some(at) => Err(format!(
            "not in the written form of an application (section 15) at `{at}`"
        )),
    }
}

/// The path of the first place where `a` and `b` differ.
fn first_difference(a: &serde_json::Value, b: &serde_json::Value, path: &str) -> Option<String> {
    use serde_json::Value as J;
    let at = |k: &str| {
        if path.is_empty() {
            k.to_owned()
        } else {
            format!("{path}.{k}")
        }
    };
    match (a, b) {
        (J::Object(x), J::Object(y)) => {
            x.keys()
                .chain(y.keys())
                .find_map(|k| match (x.get(k), y.get(k)) {
                    (Some(u), Some(v)) => first_difference(u, v, &at(k)),
                    _ => Some(at(k)),
                })
        }
        (J::Array(x), J::Array(y)) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .enumerate()
            .find_map(|(i, (u, v))| first_difference(u, v, &at(&i.to_string()))),
        _ if a == b => None,
        _ => Some(if path.is_empty() {
            "(top)".into()
        } else {
            path.into()
        }),
    }
}

fn verdict_answer(v: &Verdict) -> Answer {
    match v {
        Verdict::Holds => Answer::Holds {
            values: BTreeMap::new(),
        },
        Verdict::DoesNotHold => Answer::DoesNotHold,
        Verdict::NoRecord => Answer::NoRecord,
        Verdict::Denied { code, .. } => Answer::Denied { code: code.clone() },
    }
}

fn same_answer(a: &Answer, b: &Answer) -> bool {
    match (a, b) {
        (Answer::Holds { .. }, Answer::Holds { .. }) => true,
        _ => a == b,
    }
}

/// Verifies an application package with the registry and its trust roots at
/// time `now_ms`. Every fact is in the report; the package holds only if every
/// fact does.
pub fn verify_package(
    pkg: &ApplicationPackage,
    registry: &Registry,
    roots: &TrustRoots,
    now_ms: u64,
) -> Report {
    Inspector::new(registry, roots, now_ms).verify(pkg)
}

/// Verifies many packages against one registry (an inspector's day of
/// work): a certified header whose quorum certificate verified in one package
/// is recognised in the next by the SHA-256 of its exact bytes (header and
/// certificate) and its signatures are not verified again. Everything else —
/// proofs, author and request signatures, answers, the decision — is checked
/// for every package. The report of each package is the same as
/// [`verify_package`]'s, except that it cannot tell which package first
/// verified a shared certificate.
pub struct Inspector<'a> {
    registry: &'a Registry,
    roots: &'a TrustRoots,
    now_ms: u64,
    memo: std::cell::RefCell<std::collections::BTreeSet<Hash>>,
}

impl<'a> Inspector<'a> {
    /// An inspector trusting `roots` (of `registry`) at time `now_ms`.
    pub fn new(registry: &'a Registry, roots: &'a TrustRoots, now_ms: u64) -> Self {
        Inspector {
            registry,
            roots,
            now_ms,
            memo: Default::default(),
        }
    }

    /// Certified headers verified so far.
    pub fn certified_headers(&self) -> usize {
        self.memo.borrow().len()
    }

    /// Verifies one package.
    pub fn verify(&self, pkg: &ApplicationPackage) -> Report {
        verify_with_memo(pkg, self.registry, self.roots, self.now_ms, &self.memo)
    }
}

fn verify_with_memo(
    pkg: &ApplicationPackage,
    registry: &Registry,
    roots: &TrustRoots,
    now_ms: u64,
    memo: &std::cell::RefCell<std::collections::BTreeSet<Hash>>,
) -> Report {
    let mut r = Report::new();
    // Headers whose quorum certificate already verified: many bundles share a
    // block, and its certificate need not be verified twice.
    let certified =
        |h: &proofs::header::CertifiedHeader| memo.borrow().contains(&sha256(&h.encode()));
    let remember = |b: &ProofBundle| {
        memo.borrow_mut().insert(sha256(&b.header.encode()));
    };
    if pkg.format != PACKAGE_FORMAT {
        r.fails(
            SUBJECT,
            "package.format",
            "package.format",
            "unknown package format",
            PACKAGE_FORMAT,
            &pkg.format,
        );
        return r;
    }
    if pkg.registry_hash != roots.registry_hash {
        r.fails(
            SUBJECT,
            "package.registry",
            "package.registry_mismatch",
            "the package was made under another registry",
            roots.registry_hash.to_string(),
            pkg.registry_hash.to_string(),
        );
        return r;
    }
    r.holds(SUBJECT, "package.registry", "made under this registry");

    // The application, exactly as committed by its last step.
    let app: Application = match parse_application(&pkg.application) {
        Ok(a) => a,
        Err(e) => {
            r.fails(
                SUBJECT,
                "application.decode",
                "application.malformed",
                e,
                "the application's JSON",
                "undecodable",
            );
            return r;
        }
    };
    if app.id != pkg.application_id.to_string() {
        r.fails(
            SUBJECT,
            "application.id",
            "application.id_mismatch",
            "the application is another one",
            pkg.application_id.to_string(),
            &app.id,
        );
        return r;
    }
    let Some(bundle) = registry.bundles.iter().find(|b| b.id == app.bundle) else {
        r.fails(
            SUBJECT,
            "application.bundle",
            "application.unknown_bundle",
            "no such bundle in the registry",
            "a bundle of the registry",
            &app.bundle,
        );
        return r;
    };
    let Some(centre) = roots
        .members
        .get(&app.centre)
        .filter(|m| m.role == Role::ServiceCentre)
    else {
        r.fails(
            SUBJECT,
            "application.centre",
            "application.unknown_centre",
            "the centre is not in the registry",
            "a service centre",
            &app.centre,
        );
        return r;
    };
    let centre_city = centre.city.clone();

    // Steps: on the centre's chain, by its gateway, for this application; the
    // last one commits to the application's JSON.
    let mut last: Option<(u64, u32, Hash)> = None;
    let mut failed_step = None;
    for (i, b) in pkg.steps.iter().enumerate() {
        let name = format!("step[{i}]");
        let Some(tx) = verify_bundle_with(b, roots, now_ms, &name, &mut r, &certified) else {
            r.skipped(&name, "step.application", format!("{name}'s bundle"));
            failed_step.get_or_insert(name);
            continue;
        };
        remember(b);
        let by_gateway = roots
            .members
            .get(&tx.author)
            .is_some_and(|m| m.role == Role::Gateway && m.city == centre_city);
        match &tx.body {
            TxBody::ApplicationStep {
                application,
                bundle: b_id,
                detail,
                ..
            } if *application == pkg.application_id && *b_id == app.bundle && by_gateway => {
                r.holds(
                    &name,
                    "step.application",
                    "a step of this application by the centre's gateway",
                );
                let pos = (b.header.header.height, b.proof.index as u32);
                if last.is_none_or(|(h, x, _)| (pos.0, pos.1) > (h, x)) {
                    last = Some((pos.0, pos.1, *detail));
                }
            }
            _ => {
                failed_step.get_or_insert(name.clone());
                r.fails(
                    &name,
                    "step.application",
                    "step.mismatch",
                    "not a step of this application by the centre's gateway",
                    pkg.application_id.to_string(),
                    format!("{} by {}", tx.body.kind_name(), tx.author),
                );
            }
        }
    }
    let committed = match (&failed_step, last) {
        (Some(step), _) => {
            r.skipped(SUBJECT, "application.committed", step.clone());
            false
        }
        (None, Some((_, _, detail))) if detail == sha256(pkg.application.as_bytes()) => {
            r.holds(
                SUBJECT,
                "application.committed",
                "the application is exactly what its last step committed",
            );
            true
        }
        _ => {
            r.fails(
                SUBJECT,
                "application.committed",
                "application.not_committed",
                "the application's JSON is not what the last step committed",
                "SHA-256 of the JSON = the last step's detail",
                "different or no step",
            );
            false
        }
    };
    // Everything below reads the application: without its commitment, none
    // of it is checked (every part is named, as skipped).
    if !committed {
        let because = "application.committed";
        for (i, item) in pkg.evidence.iter().enumerate() {
            r.skipped(
                &format!("evidence[{i}] {}", item.id),
                "evidence.request",
                because,
            );
        }
        r.skipped(SUBJECT, "evidence.complete", because);
        r.skipped(SUBJECT, "application.decision", because);
        for (i, item) in pkg.receipts.iter().enumerate() {
            r.skipped(
                &format!("receipt[{i}] {}", item.service),
                "receipt.service",
                because,
            );
        }
        r.skipped(SUBJECT, "receipt.complete", because);
        r.skipped(SUBJECT, "application.fit", because);
        r.skipped(SUBJECT, "application.phase", because);
        return r;
    }

    // Evidence.
    let mut seen = BTreeMap::new();
    let mut items_ok = true;
    for (i, item) in pkg.evidence.iter().enumerate() {
        let name = format!("evidence[{i}] {}", item.id);
        let before = r.facts.len();
        let ok = verify_item(
            item, &name, &app, pkg, bundle, registry, roots, now_ms, &mut r, &certified,
        );
        // Facts of the nested bundles and answer checks are named after
        // their item: `evidence[2] seller-title / access log`.
        for f in &mut r.facts[before..] {
            if !f.subject.starts_with(&name) {
                f.subject = format!("{name} / {}", f.subject);
            }
        }
        if ok {
            remember(&item.access);
            if let Some(b) = &item.record {
                remember(b);
            }
            seen.insert(item.id.clone(), ());
        } else {
            items_ok = false;
        }
    }
    let missing: Vec<&String> = app
        .evidence
        .iter()
        .filter(|(id, s)| matches!(s, EvidenceState::Answered { .. }) && !seen.contains_key(*id))
        .map(|(id, _)| id)
        .collect();
    if !items_ok && !missing.is_empty() {
        r.skipped(
            SUBJECT,
            "evidence.complete",
            "an evidence item did not verify",
        );
    } else if let Some(id) = missing.first() {
        r.fails(
            SUBJECT,
            "evidence.complete",
            "evidence.missing",
            "an answer the application relies on is not proven in the package",
            (*id).clone(),
            "absent",
        );
    } else {
        r.holds(
            SUBJECT,
            "evidence.complete",
            "every answer the application records is proven",
        );
    }

    // The decision follows from the proven answers.
    if !items_ok || !missing.is_empty() {
        r.skipped(
            SUBJECT,
            "application.decision",
            "the evidence did not all verify",
        );
    } else {
        let known = |id: &str| match app.evidence.get(id) {
            Some(EvidenceState::Answered {
                answer: Answer::Holds { .. },
                ..
            }) if seen.contains_key(id) => Some(true),
            Some(EvidenceState::Answered {
                answer: Answer::DoesNotHold | Answer::NoRecord,
                ..
            }) if seen.contains_key(id) => Some(false),
            _ => None,
        };
        let decided = bundle.rule.decide(&known);
        // Services are ordered only on approval: an application that failed
        // with services failed after it was approved.
        let claimed = match app.phase {
            Phase::Dispatching | Phase::Completed => Some(true),
            Phase::Failed if !app.services.is_empty() => Some(true),
            Phase::Rejected => Some(false),
            Phase::Matching | Phase::Failed => None,
        };
        if claimed.is_some() && decided == claimed {
            r.holds(
                SUBJECT,
                "application.decision",
                format!(
                    "{} follows from the proven answers and the bundle's rule",
                    if claimed == Some(true) {
                        "approval"
                    } else {
                        "rejection"
                    }
                ),
            );
        } else if claimed.is_none() {
            r.holds(
                SUBJECT,
                "application.decision",
                format!("not decided ({:?})", app.phase),
            );
        } else {
            r.fails(
                SUBJECT,
                "application.decision",
                "application.decision_mismatch",
                "the decision does not follow from the proven answers",
                format!("{claimed:?}"),
                format!("{decided:?}"),
            );
        }
    }

    // Receipts.
    let mut receipted = BTreeMap::new();
    let mut receipts_ok = true;
    for (i, item) in pkg.receipts.iter().enumerate() {
        let name = format!("receipt[{i}] {}", item.service);
        let Some(tx) = verify_bundle_with(&item.bundle, roots, now_ms, &name, &mut r, &certified)
        else {
            receipts_ok = false;
            r.skipped(&name, "receipt.service", format!("{name}'s bundle"));
            continue;
        };
        remember(&item.bundle);
        let recipient = bundle
            .service(&item.service)
            .and_then(|s| registry.service_recipient(s, &app.params).ok())
            .map(|m| m.id().to_owned());
        match &tx.body {
            TxBody::ServiceReceipt {
                delivery,
                application,
                service,
                accepted,
                reason,
                ..
            } if *application == pkg.application_id
                && *service == item.service
                && *delivery == delivery_id(&pkg.application_id, service)
                && recipient.as_deref() == Some(tx.author.as_str()) =>
            {
                // The same outcome: accepted or not, with the same reason.
                let recorded = matches!(
                    app.services.get(service),
                    Some(ServiceState::Receipted { accepted: a, reason: why, .. })
                        if a == accepted && why == reason
                );
                if recorded {
                    r.holds(
                        &name,
                        "receipt.service",
                        format!(
                            "{} receipt by {} for this application",
                            if *accepted { "accepting" } else { "rejecting" },
                            tx.author
                        ),
                    );
                    receipted.insert(service.clone(), ());
                } else {
                    receipts_ok = false;
                    r.fails(
                        &name,
                        "receipt.service",
                        "receipt.not_recorded",
                        "the application records another outcome for this service",
                        format!("accepted {accepted}, reason {reason:?}"),
                        format!("{:?}", app.services.get(service)),
                    );
                }
            }
            _ => {
                receipts_ok = false;
                r.fails(
                    &name,
                    "receipt.service",
                    "receipt.foreign",
                    "not the recipient's receipt for this application's service",
                    format!("{} for {}", recipient.unwrap_or_default(), item.service),
                    format!("{} by {}", tx.body.kind_name(), tx.author),
                )
            }
        }
    }
    let missing: Vec<&String> = app
        .services
        .iter()
        .filter(|(id, s)| {
            matches!(s, ServiceState::Receipted { .. }) && !receipted.contains_key(*id)
        })
        .map(|(id, _)| id)
        .collect();
    if !receipts_ok && !missing.is_empty() {
        r.skipped(SUBJECT, "receipt.complete", "a receipt did not verify");
    } else if let Some(id) = missing.first() {
        r.fails(
            SUBJECT,
            "receipt.complete",
            "receipt.missing",
            "a receipt the application records is not proven in the package",
            (*id).clone(),
            "absent",
        );
    } else {
        r.holds(
            SUBJECT,
            "receipt.complete",
            "every receipt the application records is proven",
        );
    }

    // The application agrees with its bundle, and its phase with its
    // evidence, services and receipts.
    match check_fit(registry, bundle, &app) {
        Ok(()) => {
            r.holds(
                SUBJECT,
                "application.fit",
                "parameters, evidence and services are the bundle's",
            );
            match check_phase(bundle, &app) {
                Ok(()) => r.holds(
                    SUBJECT,
                    "application.phase",
                    format!(
                        "{:?} agrees with the evidence, services and reason",
                        app.phase
                    ),
                ),
                Err(e) => r.fails(
                    SUBJECT,
                    "application.phase",
                    e.code,
                    "the phase does not agree with the application's evidence, services or reason",
                    e.expected,
                    e.found,
                ),
            }
        }
        Err(e) => {
            r.fails(
                SUBJECT,
                "application.fit",
                e.code,
                "the application does not fit its bundle's declaration",
                e.expected,
                e.found,
            );
            r.skipped(SUBJECT, "application.phase", "application.fit");
        }
    }
    r
}

/// Checks one evidence item; true if every fact about it holds. After the
/// first failure the item's remaining checks are reported as skipped.
#[allow(clippy::too_many_arguments)]
fn verify_item(
    item: &EvidenceItem,
    name: &str,
    app: &Application,
    pkg: &ApplicationPackage,
    bundle: &crate::bundle::Bundle,
    registry: &Registry,
    roots: &TrustRoots,
    now_ms: u64,
    r: &mut Report,
    certified: &dyn Fn(&proofs::header::CertifiedHeader) -> bool,
) -> bool {
    let skip_rest = |r: &mut Report, from: usize, because: &str| {
        const LATER: [&str; 4] = [
            "evidence.signature",
            "evidence.access",
            "evidence.answer",
            "evidence.recorded",
        ];
        for check in &LATER[from..] {
            r.skipped(name, check, because.to_owned());
        }
    };
    let Some(def) = bundle.evidence(&item.id) else {
        r.fails(
            name,
            "evidence.defined",
            "evidence.unknown",
            "the bundle has no such evidence",
            "an evidence id of the bundle",
            &item.id,
        );
        skip_rest(r, 0, "evidence.defined");
        return false;
    };
    let req = &item.request;
    // The request is the one this application makes for this evidence.
    let provider = registry
        .evidence_provider(def, &app.params)
        .map(|d| d.id.clone());
    let contract = registry.contract(&def.contract);
    let expected_q = match (def.bind(&app.params), contract) {
        (Ok(p), Some(c)) => Some(question_text(&c.record_type, &p, &def.disclose, &c.purpose)),
        _ => None,
    };
    let fits = req.id == ask_id(&pkg.application_id, &item.id, item.attempt)
        && req.requester == app.centre
        && provider.as_ref().is_ok_and(|p| *p == req.provider)
        && req.contract == def.contract
        && contract.is_some_and(|c| c.version == req.contract_version)
        && expected_q.as_deref() == Some(req.question.as_str());
    if !fits {
        r.fails(
            name,
            "evidence.request",
            "evidence.foreign_request",
            "the request is not this application's request for this evidence",
            format!(
                "request {}",
                ask_id(&pkg.application_id, &item.id, item.attempt)
            ),
            format!("request {} by {}", req.id, req.requester),
        );
        skip_rest(r, 0, "evidence.request");
        return false;
    }
    r.holds(
        name,
        "evidence.request",
        "the request this application makes for this evidence",
    );
    if let Err(e) = req.verify_signature(roots) {
        r.fails(
            name,
            "evidence.signature",
            e.code(),
            e.to_string(),
            "the centre's signature",
            "invalid",
        );
        skip_rest(r, 1, "evidence.signature");
        return false;
    }
    r.holds(name, "evidence.signature", "signed by the centre");
    let answer = MatchAnswer {
        request_id: req.id,
        sealed: Sealed {
            enc: [0; 32],
            ciphertext: Vec::new(),
        },
        access: item.access.clone(),
        record: item.record.clone(),
    };
    let Some(verified) = verify_answer_with(&answer, req, roots, now_ms, r, certified) else {
        // The failure is the nested fact's (access log or record).
        skip_rest(r, 2, "the access log or the record did not verify");
        return false;
    };
    r.holds(
        name,
        "evidence.access",
        "the provider city's gateway logged this request's answer",
    );
    // The record the answer names is the proven one, version included.
    let opened = check_opened(&item.answer, req, &verified).and_then(|plain| {
        let proven = item
            .record
            .as_ref()
            .and_then(|b| proofs::tx::Transaction::decode(&b.tx).ok())
            .and_then(|tx| match tx.body {
                TxBody::RecordCommit { version, .. } => Some(version),
                _ => None,
            });
        match (&plain.record, proven) {
            (Some(named), Some(v)) if named.version != v => {
                Err(proofs::matching::MatchError::Mismatch(format!(
                    "the answer names version {} of the record, the proven record is version {v}",
                    named.version
                )))
            }
            _ => Ok(plain),
        }
    });
    let plain = match opened {
        Err(e) => {
            r.fails(
                name,
                "evidence.answer",
                e.code(),
                e.to_string(),
                "the answer committed in the access log",
                "another",
            );
            skip_rest(r, 3, "evidence.answer");
            return false;
        }
        Ok(plain) => plain,
    };
    r.holds(
        name,
        "evidence.answer",
        "the opened answer is the one committed in the access log",
    );
    let recorded = match app.evidence.get(&item.id) {
        Some(EvidenceState::Answered {
            answer, attempt, ..
        }) if *attempt == item.attempt => Some(answer),
        _ => None,
    };
    let proven = verdict_answer(&plain.verdict);
    let values: BTreeMap<String, String> = plain.values.iter().cloned().collect();
    let ok = recorded.is_some_and(|a| {
        same_answer(a, &proven)
            && match a {
                Answer::Holds { values: v } => *v == values,
                _ => true,
            }
    });
    if ok {
        r.holds(
            name,
            "evidence.recorded",
            "the application records exactly this answer",
        );
    } else {
        r.fails(
            name,
            "evidence.recorded",
            "evidence.answer_mismatch",
            "the application records another answer",
            format!("{proven:?}"),
            format!("{recorded:?}"),
        );
    }
    ok
}
