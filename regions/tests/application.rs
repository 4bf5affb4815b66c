//! The application state machine on the example region's house-transfer
//! bundle: approvals, rejections, the `any` rule, deadlines and retries,
//! denials, late answers, and a property test over random event sequences.

use std::collections::BTreeMap;

use proofs::Value;
use proptest::prelude::*;
use regions::application::{
    Answer, Application, Effect, Event, EvidenceState, Phase, ServiceState, Timing, check_fit,
    check_phase, create, pending_effects, step,
};
use regions::{Bundle, Registry};

fn region() -> Registry {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/yangtze-delta.toml");
    regions::load(&path).unwrap().0
}

fn params() -> BTreeMap<String, Value> {
    let t = |s: &str| Value::Text(s.into());
    [
        ("property_city", t("nanjing")),
        ("certificate_number", t("苏(2021)南京市不动产权第0012345号")),
        ("seller_id", t("320102198001011234")),
        ("buyer_id", t("340104199002021234")),
        ("buyer_city", t("hefei")),
        ("buyer_name", t("Li Lei")),
        ("buyer_phone", t("13800000000")),
        ("gas_account", t("G-1")),
        ("water_account", t("W-1")),
        ("electricity_account", t("E-1")),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

struct Kit {
    reg: Registry,
    bundle: Bundle,
    timing: Timing,
}

impl Kit {
    fn new() -> Self {
        let reg = region();
        let bundle = reg
            .bundles
            .iter()
            .find(|b| b.id == "house-transfer")
            .unwrap()
            .clone();
        Kit {
            reg,
            bundle,
            timing: Timing::default(),
        }
    }
    fn start(&self) -> (Application, Vec<Effect>) {
        create(
            &self.reg,
            &self.bundle,
            "app-1".into(),
            "nanjing.centre",
            params(),
            1_000,
            &self.timing,
        )
        .unwrap()
    }
    fn on(&self, app: &Application, ev: Event, now: u64) -> (Application, Vec<Effect>) {
        step(&self.reg, &self.bundle, app, &ev, now, &self.timing)
    }
}

fn answered(evidence: &str, answer: Answer) -> Event {
    Event::Answered {
        evidence: evidence.into(),
        attempt: 1,
        answer,
    }
}

fn holds() -> Answer {
    Answer::Holds {
        values: BTreeMap::new(),
    }
}

fn title_holds() -> Answer {
    Answer::Holds {
        values: [("address".to_string(), "1 Zhongshan Road".to_string())].into(),
    }
}

#[test]
fn every_evidence_is_asked_at_once_of_the_right_provider() {
    let k = Kit::new();
    let (app, effects) = k.start();
    assert_eq!(app.phase, Phase::Matching);
    let asks: BTreeMap<String, String> = effects
        .iter()
        .map(|e| match e {
            Effect::Ask {
                evidence, provider, ..
            } => (evidence.clone(), provider.clone()),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(asks.len(), k.bundle.evidence.len());
    assert_eq!(asks["seller-title"], "nanjing.real-estate");
    assert_eq!(asks["buyer-marital"], "hefei.civil-affairs");
    assert_eq!(asks["deed-tax"], "nanjing.tax");
    // Parameters are bound into the predicates.
    let seller = effects
        .iter()
        .find_map(|e| match e {
            Effect::Ask {
                evidence,
                predicates,
                subject,
                ..
            } if evidence == "seller-title" => Some((predicates.clone(), subject.clone())),
            _ => None,
        })
        .unwrap();
    assert!(seller.0.iter().all(|p| p.params().is_empty()));
    assert_eq!(seller.1, "320102198001011234");
}

#[test]
fn approved_then_dispatched_then_completed() {
    let k = Kit::new();
    let (mut app, _) = k.start();
    let mut delivered = Vec::new();
    for (id, a) in [
        ("seller-title", title_holds()),
        ("buyer-marital", holds()),
        ("buyer-homes", holds()),
        ("buyer-social-insurance", Answer::DoesNotHold),
        ("buyer-income-tax", holds()),
        ("deed-tax", holds()),
    ] {
        let (next, effects) = k.on(&app, answered(id, a), 2_000);
        app = next;
        delivered.extend(effects);
    }
    assert_eq!(app.phase, Phase::Dispatching);
    assert_eq!(delivered.len(), 4, "{delivered:?}");
    let gas = delivered
        .iter()
        .find_map(|e| match e {
            Effect::Deliver {
                service,
                recipient,
                payload,
                ..
            } if service == "gas-transfer" => Some((recipient.clone(), payload.clone())),
            _ => None,
        })
        .unwrap();
    assert_eq!(gas.0, "nanjing.gas");
    assert!(
        gas.1
            .contains(&("address".into(), Value::Text("1 Zhongshan Road".into())))
    );
    for s in ["title-transfer", "gas-transfer", "water-transfer"] {
        app = k
            .on(
                &app,
                Event::Receipted {
                    service: s.into(),
                    accepted: true,
                    reason: String::new(),
                },
                3_000,
            )
            .0;
        assert_eq!(app.phase, Phase::Dispatching);
    }
    let (done, effects) = k.on(
        &app,
        Event::Receipted {
            service: "electricity-transfer".into(),
            accepted: true,
            reason: String::new(),
        },
        3_000,
    );
    assert_eq!(done.phase, Phase::Completed);
    assert!(effects.is_empty());
    // A duplicate receipt changes nothing.
    let (again, effects) = k.on(
        &done,
        Event::Receipted {
            service: "gas-transfer".into(),
            accepted: false,
            reason: "late".into(),
        },
        4_000,
    );
    assert_eq!(again, done);
    assert!(effects.is_empty());
}

/// Issue 15 item 16: a utility that rejects its service request (a signed
/// receipt with `accepted = false`) leaves the application `failed`, with
/// the service and the recipient's reason in the reason and the timeline —
/// never `completed`.
#[test]
fn a_utility_rejection_fails_the_application_and_says_why() {
    let k = Kit::new();
    let (mut app, _) = k.start();
    for (id, a) in [
        ("seller-title", title_holds()),
        ("buyer-marital", holds()),
        ("buyer-homes", holds()),
        ("buyer-social-insurance", holds()),
        ("buyer-income-tax", holds()),
        ("deed-tax", holds()),
    ] {
        app = k.on(&app, answered(id, a), 2_000).0;
    }
    assert_eq!(app.phase, Phase::Dispatching);
    let receipt = |service: &str, accepted: bool, reason: &str| Event::Receipted {
        service: service.into(),
        accepted,
        reason: reason.into(),
    };
    app = k
        .on(
            &app,
            receipt("gas-transfer", false, "account G-1 unknown"),
            3_000,
        )
        .0;
    // Still waiting for the others.
    assert_eq!(app.phase, Phase::Dispatching);
    for s in ["title-transfer", "water-transfer", "electricity-transfer"] {
        app = k.on(&app, receipt(s, true, ""), 3_000).0;
    }
    assert_eq!(app.phase, Phase::Failed, "{app:#?}");
    let reason = app.reason.clone().unwrap();
    assert!(
        reason.contains("gas-transfer") && reason.contains("account G-1 unknown"),
        "{reason}"
    );
    let last = app.timeline.last().unwrap();
    assert_eq!(
        (last.what.as_str(), last.item.as_deref()),
        ("failed", Some("gas-transfer"))
    );
    assert!(last.detail.contains("account G-1 unknown"), "{last:?}");
    assert_eq!(check_phase(&k.bundle, &app), Ok(()));
    // A rejection without a reason still says that it was rejected.
    let mut app2 = app.clone();
    app2.phase = Phase::Dispatching;
    app2.reason = None;
    app2.services.insert(
        "gas-transfer".into(),
        ServiceState::Pending {
            attempt: 1,
            deadline_ms: 60_000,
        },
    );
    let done = k.on(&app2, receipt("gas-transfer", false, ""), 4_000).0;
    assert_eq!(done.phase, Phase::Failed);
    assert!(done.reason.unwrap().contains("no reason given"));
}

#[test]
fn a_failed_rule_rejects_at_once_and_late_answers_do_nothing() {
    let k = Kit::new();
    let (app, _) = k.start();
    let (app, effects) = k.on(&app, answered("buyer-homes", Answer::DoesNotHold), 2_000);
    assert_eq!(app.phase, Phase::Rejected);
    assert!(effects.is_empty(), "no utility is ordered");
    assert!(app.reason.as_deref().unwrap().contains("buyer-homes"));
    assert!(app.services.is_empty());
    assert!(
        app.evidence
            .values()
            .filter(|s| **s == EvidenceState::Unneeded)
            .count()
            == 5
    );
    let (late, effects) = k.on(&app, answered("seller-title", title_holds()), 2_500);
    assert_eq!(late, app);
    assert!(effects.is_empty());
}

#[test]
fn deadlines_retry_then_fail() {
    let k = Kit::new();
    let (app, _) = k.start();
    let t = k.timing.evidence_deadline_ms;
    let (app, effects) = k.on(&app, Event::Tick, 1_000 + t);
    assert_eq!(
        effects.len(),
        k.bundle.evidence.len(),
        "every request asked again"
    );
    assert!(
        effects
            .iter()
            .all(|e| matches!(e, Effect::Ask { attempt: 2, .. }))
    );
    // An answer to the first attempt after the deadline has no effect.
    let (same, effects) = k.on(
        &app,
        answered("buyer-homes", Answer::DoesNotHold),
        1_000 + t + 1,
    );
    assert_eq!(same, app);
    assert!(effects.is_empty());
    let (app, _) = k.on(&app, Event::Tick, 1_000 + 2 * t);
    let (app, effects) = k.on(&app, Event::Tick, 1_000 + 3 * t);
    assert_eq!(app.phase, Phase::Failed);
    assert!(effects.is_empty());
    assert!(app.reason.unwrap().contains("evidence.deadline"));
}

#[test]
fn a_denial_of_needed_evidence_fails_the_application_with_its_code() {
    let k = Kit::new();
    let (app, _) = k.start();
    let (app, _) = k.on(
        &app,
        answered(
            "buyer-homes",
            Answer::Denied {
                code: "contract.budget_exhausted".into(),
            },
        ),
        2_000,
    );
    assert_eq!(app.phase, Phase::Failed);
    assert!(app.reason.unwrap().contains("contract.budget_exhausted"));
}

#[test]
fn evidence_the_rule_does_not_need_is_reported_but_cannot_fail_it() {
    let k = Kit::new();
    let (mut app, _) = k.start();
    // The buyer's marital status is reported with the decision, not ruled on.
    app = k
        .on(
            &app,
            answered(
                "buyer-marital",
                Answer::Denied {
                    code: "contract.outside_validity".into(),
                },
            ),
            1_500,
        )
        .0;
    assert_eq!(app.phase, Phase::Matching);
    for (id, a) in [
        ("seller-title", title_holds()),
        ("buyer-homes", holds()),
        ("buyer-social-insurance", holds()),
        ("buyer-income-tax", Answer::NoRecord),
        ("deed-tax", holds()),
    ] {
        app = k.on(&app, answered(id, a), 2_000).0;
    }
    assert_eq!(app.phase, Phase::Dispatching);
}

#[test]
fn approval_waits_for_every_answer_but_rejection_does_not() {
    let k = Kit::new();
    let (mut app, _) = k.start();
    for (id, a) in [
        ("seller-title", title_holds()),
        ("buyer-homes", holds()),
        ("buyer-social-insurance", holds()),
        ("deed-tax", holds()),
    ] {
        app = k.on(&app, answered(id, a), 2_000).0;
    }
    assert_eq!(app.phase, Phase::Matching, "two answers still out");
    app = k
        .on(
            &app,
            answered("buyer-income-tax", Answer::DoesNotHold),
            2_100,
        )
        .0;
    assert_eq!(app.phase, Phase::Matching);
    let (app, effects) = k.on(&app, answered("buyer-marital", holds()), 2_200);
    assert_eq!(app.phase, Phase::Dispatching);
    assert_eq!(effects.len(), 4);
}

#[test]
fn after_a_restart_the_pending_work_is_owed_again() {
    let k = Kit::new();
    let (app, first) = k.start();
    let (app, _) = k.on(&app, answered("deed-tax", holds()), 1_500);
    let owed = pending_effects(&k.reg, &k.bundle, &app);
    assert_eq!(owed.len(), first.len() - 1);
    assert!(
        owed.iter().all(|e| first.contains(e)),
        "the same requests, same attempts"
    );
}

fn arb_event() -> impl Strategy<Value = Event> {
    let ids = vec![
        "seller-title",
        "buyer-marital",
        "buyer-homes",
        "buyer-social-insurance",
        "buyer-income-tax",
        "deed-tax",
    ];
    let services = vec![
        "title-transfer",
        "gas-transfer",
        "water-transfer",
        "electricity-transfer",
    ];
    prop_oneof![
        (prop::sample::select(ids.clone()), 1u32..3, 0u8..4).prop_map(|(e, attempt, a)| {
            Event::Answered {
                evidence: e.into(),
                attempt,
                answer: match a {
                    0 => title_holds(),
                    1 => Answer::DoesNotHold,
                    2 => Answer::NoRecord,
                    _ => holds(),
                },
            }
        }),
        (prop::sample::select(ids), 1u32..3, any::<bool>()).prop_map(|(e, attempt, r)| {
            Event::AskFailed {
                evidence: e.into(),
                attempt,
                code: "relay.unreachable".into(),
                retryable: r,
            }
        }),
        (prop::sample::select(services), any::<bool>()).prop_map(|(s, ok)| Event::Receipted {
            service: s.into(),
            accepted: ok,
            reason: String::new(),
        }),
        Just(Event::Tick),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    /// Whatever happens, in whatever order: final phases never change and emit
    /// nothing; `completed` means every service receipted; `rejected` means the
    /// rule is false on the answers; the same inputs give the same outputs.
    #[test]
    fn invariants_hold_for_any_sequence(events in prop::collection::vec((arb_event(), 0u64..40_000), 0..40)) {
        let k = Kit::new();
        let (mut app, _) = k.start();
        let mut now = 1_000;
        for (ev, dt) in events {
            now += dt;
            let (next, effects) = k.on(&app, ev.clone(), now);
            let (again, effects2) = k.on(&app, ev, now);
            prop_assert_eq!(&next, &again);
            prop_assert_eq!(&effects, &effects2);
            if app.phase.is_final() {
                prop_assert_eq!(&next, &app);
                prop_assert!(effects.is_empty());
            }
            if !effects.is_empty() {
                prop_assert!(!next.phase.is_final() || next.phase == Phase::Completed && effects.is_empty());
            }
            // The verifier's rules (check_fit, check_phase) hold for every
            // state the engine reaches: its packages verify.
            prop_assert_eq!(check_fit(&k.reg, &k.bundle, &next), Ok(()));
            prop_assert_eq!(check_phase(&k.bundle, &next), Ok(()));
            match next.phase {
                Phase::Completed => {
                    let all = next.services.values().all(|s| matches!(s, ServiceState::Receipted { accepted: true, .. }));
                    prop_assert!(all, "completed with a service not receipted and accepted");
                }
                Phase::Rejected => {
                    let known = |id: &str| match next.evidence.get(id) {
                        Some(EvidenceState::Answered { answer: Answer::Holds { .. }, .. }) => Some(true),
                        Some(EvidenceState::Answered { .. }) => Some(false),
                        _ => None,
                    };
                    prop_assert_eq!(k.bundle.rule.decide(&known), Some(false));
                    prop_assert!(next.services.is_empty());
                }
                _ => {}
            }
            app = next;
        }
    }
}

/// The sample package in `docs/vectors/application-package-v1.json` (a house
/// transfer made by `tests/tests/applications.rs`, written with
/// `TONGBAN_WRITE_PACKAGE`) still verifies with the example registry, and a
/// single changed digit in its application JSON does not.
#[test]
fn the_sample_package_verifies_with_the_example_registry() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let (reg, hash) = regions::load(root.join("examples/yangtze-delta.toml")).unwrap();
    let roots = reg.trust_roots(hash).unwrap();
    let text =
        std::fs::read_to_string(root.join("../docs/vectors/application-package-v1.json")).unwrap();
    let pkg: regions::evidence::ApplicationPackage = serde_json::from_str(&text).unwrap();
    let now = 1_900_000_000_000;
    let r = regions::evidence::verify_package(&pkg, &reg, &roots, now);
    assert!(r.ok(), "{r}");
    let mut bad = pkg.clone();
    bad.application = bad.application.replacen("13800000000", "13800000001", 1);
    assert_ne!(bad.application, pkg.application);
    assert!(!regions::evidence::verify_package(&bad, &reg, &roots, now).ok());
}

#[test]
fn an_approval_decided_by_a_deadline_still_delivers_in_that_tick() {
    let k = Kit::new();
    let (mut app, _) = k.start();
    for (id, a) in [
        ("seller-title", title_holds()),
        ("buyer-homes", holds()),
        ("buyer-social-insurance", holds()),
        ("buyer-income-tax", Answer::NoRecord),
        ("deed-tax", holds()),
    ] {
        app = k.on(&app, answered(id, a), 2_000).0;
    }
    // The marital status (not ruled on) never comes: after its last attempt
    // the application is approved, and the services go out at once.
    let t = k.timing.evidence_deadline_ms;
    let mut effects = Vec::new();
    for n in 1..=k.timing.evidence_attempts as u64 {
        (app, effects) = k.on(&app, Event::Tick, 1_000 + n * t + 1);
    }
    assert_eq!(app.phase, Phase::Dispatching);
    assert_eq!(
        effects
            .iter()
            .filter(|e| matches!(e, Effect::Deliver { .. }))
            .count(),
        4,
        "{effects:?}"
    );
    assert!(!effects.iter().any(|e| matches!(e, Effect::Ask { .. })));
}

/// An inspector verifying many packages checks each distinct certificate once,
/// by the hash of its exact bytes: a copy of a verified package verifies again,
/// but a copy whose certificate carries a changed signature is refused even
/// after the genuine one was accepted.
#[test]
fn an_inspector_shares_only_byte_identical_certificates_across_packages() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let (reg, hash) = regions::load(root.join("examples/yangtze-delta.toml")).unwrap();
    let roots = reg.trust_roots(hash).unwrap();
    let text =
        std::fs::read_to_string(root.join("../docs/vectors/application-package-v1.json")).unwrap();
    let pkg: regions::evidence::ApplicationPackage = serde_json::from_str(&text).unwrap();
    let inspector = regions::evidence::Inspector::new(&reg, &roots, 1_900_000_000_000);
    let first = inspector.verify(&pkg);
    assert!(first.ok(), "{first}");
    let shared = inspector.certified_headers();
    assert!(shared >= 2, "{shared}");
    let again = inspector.verify(&pkg);
    assert!(again.ok(), "{again}");
    assert_eq!(again.facts.len(), first.facts.len());
    assert_eq!(inspector.certified_headers(), shared);

    // Every certificate signature of the first step, changed in turn.
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let n = v["steps"][0]["header"]["certificate"]["endorsements"]
        .as_array()
        .unwrap()
        .len();
    for i in 0..n {
        let sig = &mut v["steps"][0]["header"]["certificate"]["endorsements"][i]["signature"];
        let orig = sig.as_str().unwrap().to_owned();
        let flipped = if orig.starts_with('0') { "1" } else { "0" };
        *sig = format!("{flipped}{}", &orig[1..]).into();
        let bad: regions::evidence::ApplicationPackage = serde_json::from_value(v.clone()).unwrap();
        let r = inspector.verify(&bad);
        assert!(!r.ok(), "endorsement {i} changed, yet the package verified");
        v["steps"][0]["header"]["certificate"]["endorsements"][i]["signature"] = orig.into();
    }
    assert!(inspector.verify(&pkg).ok());
}
