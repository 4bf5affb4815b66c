//! The example registry: loads, validates, pins, converts to trust roots, keeps
//! its test keys, drives its bundles; and mutations of it fail precisely.

use std::collections::BTreeMap;
use std::path::PathBuf;

use proofs::hash::sha256;
use proofs::{Date, Hash, Role, Value};
use regions::bundle::Params;
use regions::test_keys::Slot;
use regions::{Decision, DenyRule, LoadError, MemberRef, Registry, Request, ValidationError};

fn example_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/yangtze-delta.toml")
}

fn example_text() -> String {
    std::fs::read_to_string(example_path()).unwrap()
}

fn example() -> Registry {
    Registry::from_toml_str(&example_text()).unwrap()
}

fn date(s: &str) -> Date {
    Date::parse(s).unwrap()
}

fn text(s: &str) -> Value {
    Value::Text(s.into())
}

/// The first validation error of the example with `from` replaced by `to`
/// (the replacement must happen exactly `times` times).
fn mutated_error(from: &str, to: &str, times: usize) -> ValidationError {
    let original = example_text();
    assert_eq!(
        original.matches(from).count(),
        times,
        "`{from}` occurs a different number of times"
    );
    let registry = Registry::from_toml_str(&original.replace(from, to)).unwrap();
    registry.validate().unwrap_err()
}

#[test]
fn example_validates() {
    let (registry, _hash) = regions::load(example_path()).unwrap();
    let problems = registry.problems();
    assert!(
        problems.is_empty(),
        "{:#?}",
        problems.iter().map(|p| p.to_string()).collect::<Vec<_>>()
    );
    assert_eq!(registry.cities.len(), 4);
    assert_eq!(registry.bundles.len(), 3);
}

#[test]
fn load_returns_the_hash_of_the_exact_bytes_and_pinning_checks_it() {
    let bytes = std::fs::read(example_path()).unwrap();
    let (registry, hash) = regions::load(example_path()).unwrap();
    assert_eq!(hash, sha256(&bytes));
    assert_eq!(
        regions::load_pinned(example_path(), hash).unwrap(),
        registry
    );

    let mut other = hash;
    other.0[31] ^= 1;
    match regions::load_pinned(example_path(), other) {
        Err(LoadError::HashMismatch { expected, found }) => {
            assert_eq!(expected, other);
            assert_eq!(found, hash);
        }
        r => panic!("expected a hash mismatch, got {r:?}"),
    }
    let message = regions::load_pinned(example_path(), other)
        .unwrap_err()
        .to_string();
    assert!(
        message.contains(&other.to_hex()) && message.contains(&hash.to_hex()),
        "{message}"
    );
}

#[test]
fn missing_and_oversized_files_are_refused_before_parsing() {
    assert!(matches!(
        regions::load("/nonexistent/registry.toml"),
        Err(LoadError::Read { .. })
    ));
    let big = "# padding\n".repeat((regions::MAX_REGISTRY_BYTES as usize / 10) + 1);
    assert!(matches!(
        Registry::from_toml_str(&big),
        Err(LoadError::TooLarge { .. })
    ));
    let dir = std::env::temp_dir().join(format!("regions-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("big.toml");
    std::fs::write(&path, &big).unwrap();
    assert!(matches!(
        regions::load(&path),
        Err(LoadError::TooLarge { .. })
    ));
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(matches!(
        Registry::from_toml_bytes(b"\xff\xfe"),
        Err(LoadError::NotUtf8(_))
    ));
}

#[test]
fn trust_roots_have_four_chains_of_three_of_four() {
    let registry = example();
    let hash = Hash([7; 32]);
    let roots = registry.trust_roots(hash).unwrap();
    assert_eq!(roots.registry_hash, hash);
    assert_eq!(roots.chains.len(), 4);
    for (id, chain) in &roots.chains {
        assert_eq!(chain.threshold(), 3, "{id}");
        assert_eq!(chain.endorsers().len(), 4, "{id}");
    }
    assert_eq!(
        roots.chains.keys().map(String::as_str).collect::<Vec<_>>(),
        [
            "hangzhou-egov",
            "hefei-egov",
            "nanjing-egov",
            "shanghai-egov"
        ]
    );
    // 4 cities × (gateway + 7 departments + 3 utilities + 1 centre) + the hub.
    assert_eq!(roots.members.len(), 4 * 12 + 1);
    let ca = &roots.members["nanjing.civil-affairs"];
    assert_eq!((ca.role, ca.city.as_str()), (Role::Department, "nanjing"));
    assert!(ca.hpke.is_some());
    assert_eq!(roots.members["hefei.gas"].role, Role::Utility);
    assert_eq!(roots.members["shanghai.centre"].role, Role::ServiceCentre);
    let gw = &roots.members["hangzhou.gateway"];
    assert_eq!((gw.role, gw.hpke), (Role::Gateway, None));
    let hub = &roots.members["anhui-hub"];
    // Hosted in Hefei, but not Hefei's gateway: a hub owns no chain.
    assert_eq!(
        (hub.role, hub.city.as_str(), hub.chain.as_str()),
        (Role::Hub, "hefei", "")
    );
}

#[test]
fn trust_roots_fail_closed_on_an_invalid_registry() {
    let text = example_text().replace("threshold = 3", "threshold = 9");
    let registry = Registry::from_toml_str(&text).unwrap();
    assert!(matches!(
        registry.trust_roots(Hash::default()),
        Err(ValidationError::ThresholdAboveKeys {
            threshold: 9,
            count: 4,
            ..
        })
    ));
}

#[test]
fn example_keys_are_the_labelled_test_keys() {
    let registry = example();
    let keys = registry.test_keys();
    // 16 endorsers, 49 member signing keys, 44 member HPKE keys.
    assert_eq!(
        keys.iter().filter(|k| k.slot == Slot::Signing).count(),
        16 + 49
    );
    assert_eq!(keys.iter().filter(|k| k.slot == Slot::Hpke).count(), 44);
    let drifted: Vec<_> = keys
        .iter()
        .filter(|k| !k.matches())
        .map(|k| &k.label)
        .collect();
    assert!(
        drifted.is_empty(),
        "keys that are not their label's test key: {drifted:?}"
    );
    // Spot-check the derivation itself, independently of `test_keys`.
    let seed = proofs::keys::test_seed("nanjing/endorser/1");
    assert_eq!(
        registry.city("nanjing").unwrap().chain.endorsers[0],
        proofs::SigningKey::from_seed(&seed).public().to_hex()
    );
    let hpke =
        proofs::seal::HpkeSecretKey::derive(&proofs::keys::test_seed("nanjing.civil-affairs/hpke"));
    assert_eq!(
        registry
            .department("nanjing.civil-affairs")
            .unwrap()
            .hpke_key,
        hpke.public().to_hex()
    );
}

#[test]
fn hefei_is_reached_through_the_anhui_hub() {
    let registry = example();
    assert_eq!(
        registry.city("hefei").unwrap().gateway.hub.as_deref(),
        Some("anhui-hub")
    );
    assert!(matches!(
        registry.member("anhui-hub"),
        Some(MemberRef::Hub(_))
    ));
    for c in ["shanghai", "nanjing", "hangzhou"] {
        assert_eq!(registry.city(c).unwrap().gateway.hub, None);
    }
}

#[test]
fn the_registry_survives_a_toml_round_trip() {
    let registry = example();
    let written = toml::to_string(&registry).unwrap();
    assert_eq!(Registry::from_toml_str(&written).unwrap(), registry);
}

fn house_params() -> Params {
    let mut p = BTreeMap::new();
    for (k, v) in [
        ("property_city", "nanjing"),
        ("certificate_number", "苏(2024)南京市不动产权第0012345号"),
        ("seller_id", "320102198001010011"),
        ("buyer_id", "310101199002020022"),
        ("buyer_city", "shanghai"),
        ("buyer_name", "Li Hua"),
        ("buyer_phone", "13800000000"),
        ("gas_account", "G-1001"),
        ("water_account", "W-2002"),
        ("electricity_account", "E-3003"),
    ] {
        p.insert(k.to_owned(), text(v));
    }
    p
}

#[test]
fn house_transfer_binds_evaluates_and_builds_utility_payloads() {
    let registry = example();
    let bundle = registry.bundle("house-transfer").unwrap();
    let params = house_params();
    bundle.check_params(&registry, &params).unwrap();

    // Every evidence request is allowed by its contract, for the Shanghai centre.
    let today = date("2026-03-15");
    for ev in &bundle.evidence {
        let provider = registry.evidence_provider(ev, &params).unwrap();
        let predicates = ev.bind(&params).unwrap();
        let contract = registry.contract(&ev.contract).unwrap();
        let request = Request {
            contract_version: contract.version,
            requester: "shanghai.centre",
            provider: &provider.id,
            record_type: &contract.record_type,
            predicates: &predicates,
            disclose: &ev.disclose,
            purpose: &contract.purpose,
            today,
            prior_queries: 0,
        };
        assert_eq!(
            registry.evaluate_request(&ev.contract, &request),
            Decision::Allow,
            "{}",
            ev.id
        );
    }
    // Providers follow the parameters.
    let seller_title = bundle.evidence("seller-title").unwrap();
    assert_eq!(
        registry
            .evidence_provider(seller_title, &params)
            .unwrap()
            .id,
        "nanjing.real-estate"
    );
    let marital = bundle.evidence("buyer-marital").unwrap();
    assert_eq!(
        registry.evidence_provider(marital, &params).unwrap().id,
        "shanghai.civil-affairs"
    );

    // The rule: undecided while evidence is pending, then decided.
    let mut known: BTreeMap<&str, bool> = BTreeMap::new();
    assert_eq!(bundle.rule.decide(&|id| known.get(id).copied()), None);
    known.insert("seller-title", false);
    assert_eq!(
        bundle.rule.decide(&|id| known.get(id).copied()),
        Some(false)
    );
    for id in [
        "seller-title",
        "buyer-homes",
        "buyer-income-tax",
        "deed-tax",
    ] {
        known.insert(id, true);
    }
    known.insert("buyer-social-insurance", false);
    assert_eq!(bundle.rule.decide(&|id| known.get(id).copied()), Some(true));

    // Each utility receives exactly address, account number, new holder and contact.
    let disclosed =
        |e: &str, f: &str| (e == "seller-title" && f == "address").then(|| text("鼓楼区中山路1号"));
    for (service, kind, account) in [
        ("gas-transfer", "gas", "G-1001"),
        ("water-transfer", "water", "W-2002"),
        ("electricity-transfer", "electricity", "E-3003"),
    ] {
        let s = bundle.service(service).unwrap();
        let to = registry.service_recipient(s, &params).unwrap();
        assert_eq!(to.id(), format!("nanjing.{kind}"));
        let payload = s.payload(&params, &disclosed).unwrap();
        assert_eq!(
            payload,
            vec![
                ("address".to_owned(), text("鼓楼区中山路1号")),
                ("account_number".to_owned(), text(account)),
                ("holder_name".to_owned(), text("Li Hua")),
                ("contact".to_owned(), text("13800000000")),
            ]
        );
    }
}

#[test]
fn application_parameters_are_checked() {
    let registry = example();
    let bundle = registry.bundle("house-transfer").unwrap();
    let mut params = house_params();
    params.insert("property_city".into(), text("suzhou"));
    assert_eq!(
        bundle
            .check_params(&registry, &params)
            .unwrap_err()
            .to_string(),
        "parameter `property_city`: unknown city `suzhou`"
    );
    let mut params = house_params();
    params.remove("buyer_id");
    assert_eq!(
        bundle
            .check_params(&registry, &params)
            .unwrap_err()
            .to_string(),
        "parameter `buyer_id` is missing"
    );
    let mut params = house_params();
    params.insert("buyer_id".into(), Value::Int(1));
    assert_eq!(
        bundle
            .check_params(&registry, &params)
            .unwrap_err()
            .to_string(),
        "parameter `buyer_id` must be text, found int"
    );
    let mut params = house_params();
    params.insert("colour".into(), text("red"));
    assert_eq!(
        bundle
            .check_params(&registry, &params)
            .unwrap_err()
            .to_string(),
        "unknown parameter `colour`"
    );
}

#[test]
fn every_bundle_of_the_example_resolves_for_every_city() {
    let registry = example();
    for bundle in &registry.bundles {
        for city in ["shanghai", "nanjing", "hangzhou", "hefei"] {
            let params: Params = bundle
                .params
                .iter()
                .map(|p| {
                    let v = match p.kind {
                        regions::ParamKind::City => text(city),
                        regions::ParamKind::Int => Value::Int(1),
                        regions::ParamKind::Bool => Value::Bool(true),
                        regions::ParamKind::Date => Value::Date(date("2026-01-01")),
                        regions::ParamKind::Text => text("x"),
                    };
                    (p.id.clone(), v)
                })
                .collect();
            bundle.check_params(&registry, &params).unwrap();
            for ev in &bundle.evidence {
                let d = registry.evidence_provider(ev, &params).unwrap();
                assert!(d.id.starts_with(city), "{} {}", bundle.id, ev.id);
                ev.bind(&params).unwrap();
            }
            for s in &bundle.services {
                assert_eq!(registry.service_recipient(s, &params).unwrap().city(), city);
            }
        }
    }
}

#[test]
fn mutations_of_the_example_fail_precisely() {
    let cases: &[(&str, &str, usize, &str)] = &[
        (
            "owns = [\"tax-clearance\", \"income-tax-history\"]",
            "owns = [\"tax-clearance\", \"income-tax-history\", \"marriage\"]",
            4,
            "city `shanghai`: record type `marriage` is owned by both `shanghai.civil-affairs` and `shanghai.tax`",
        ),
        (
            "providers = [\"shanghai.tax\", \"nanjing.tax\", \"hangzhou.tax\", \"hefei.tax\"]\nrecord_type = \"income-tax-history\"",
            "providers = [\"shanghai.tax\", \"nanjing.health\", \"hangzhou.tax\", \"hefei.tax\"]\nrecord_type = \"income-tax-history\"",
            1,
            "contract `house-transfer.income-tax`: provider `nanjing.health` does not own record type `income-tax-history`",
        ),
        (
            "contract = \"house-transfer.deed-tax\"",
            "contract = \"house-transfer.stamp-duty\"",
            1,
            "bundle `house-transfer` evidence `deed-tax`: unknown contract `house-transfer.stamp-duty`",
        ),
        (
            "subject = \"founder_id\"\npredicates = [{ field = \"valid_until\"",
            "subject = \"founder\"\npredicates = [{ field = \"valid_until\"",
            1,
            "bundle `business-opening` evidence `founder-identity`: unknown subject parameter `founder`",
        ),
        (
            "city = \"param:founder_city\"",
            "city = \"param:founder_town\"",
            1,
            "bundle `business-opening` evidence `founder-identity`: unknown parameter `founder_town`",
        ),
        (
            "rule = { all = [\"founder-identity\", \"name-free\", \"founder-not-barred\"] }",
            "rule = { all = [\"founder-identity\", \"name-free\", \"founder-unbarred\"] }",
            1,
            "bundle `business-opening` rule: unknown evidence `founder-unbarred`",
        ),
        (
            "{ name = \"sex\", from = \"evidence:birth.sex\" },\n  { name = \"mother_id\"",
            "{ name = \"sex\", from = \"evidence:birth.birth_place\" },\n  { name = \"mother_id\"",
            1,
            "bundle `newborn` service `child-household-registration`: field `sex` comes from `birth_place` of evidence `birth`, which does not disclose it",
        ),
        (
            "predicates = [{ field = \"months_paid\", op = \"ge\", value = 60 }]\n\n[[bundles.evidence]]\nid = \"buyer-income-tax\"",
            "predicates = [{ field = \"months_paid\", op = \"gt\", value = 59 }]\n\n[[bundles.evidence]]\nid = \"buyer-income-tax\"",
            1,
            "bundle `house-transfer` evidence `buyer-social-insurance`: contract `house-transfer.social-insurance` would deny it (contract.operator_not_allowed): operator `gt` (on `months_paid`) is not allowed by the contract",
        ),
        (
            "disclose = [\"household_number\"]",
            "disclose = [\"household_number\", \"address\"]",
            1,
            "bundle `newborn` evidence `mother-household`: contract `newborn.household` would deny it (contract.field_not_allowed): field `address` is not allowed by the contract",
        ),
        (
            "{ field = \"seized\", op = \"eq\", value = false }",
            "{ field = \"seized\", op = \"eq\", value = \"no\" }",
            1,
            "bundle `house-transfer` evidence `seller-title`: contract `house-transfer.title` would deny it (contract.malformed_predicate): malformed predicate `seized eq \"no\"`: field `seized` is bool; the constant \"no\" is not",
        ),
        (
            "utility = \"water\"",
            "utility = \"broadband\"",
            1,
            "bundle `house-transfer` service `water-transfer`: no city has a broadband utility",
        ),
        (
            "hub = \"anhui-hub\"",
            "hub = \"jiangsu-hub\"",
            1,
            "gateway `hefei.gateway`: unknown hub `jiangsu-hub`",
        ),
        (
            "hub = \"anhui-hub\"",
            "hub = \"hefei.gateway\"",
            1,
            "gateway `hefei.gateway`: is its own hub",
        ),
        (
            "[cities.gateway]\nid = \"nanjing.gateway\"",
            "[cities.gateway]\nid = \"nanjing.gateway\"\nhub = \"hefei.gateway\"",
            1,
            "gateway `nanjing.gateway`: hub `hefei.gateway` is itself reached through `anhui-hub`; name a directly reachable gateway",
        ),
        (
            "requesters = [\"nanjing.public-security\"]",
            "requesters = [\"nanjing.gas\"]",
            1,
            "contract `hukou-transfer.identity`: requester `nanjing.gas` is a utility; only departments and centres may ask",
        ),
        (
            "[region]\nid = \"yangtze-delta\"\nname = \"Yangtze River Delta (长三角) interoperability region\"\nversion = 1",
            "[region]\nid = \"yangtze-delta\"\nname = \"Yangtze River Delta (长三角) interoperability region\"\nversion = 2",
            1,
            "region `yangtze-delta`: version 2 must name the previous registry's hash in `previous`",
        ),
    ];
    let mut failures = Vec::new();
    for (from, to, times, expected) in cases {
        let got = mutated_error(from, to, *times).to_string();
        if got != *expected {
            failures.push(format!("expected `{expected}`\n     got `{got}`"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_weak_endorser_key_in_the_example_is_named() {
    let registry = example();
    let weak = "0100000000000000000000000000000000000000000000000000000000000000";
    let original = &registry.city("hangzhou").unwrap().chain.endorsers[2];
    let text = example_text().replace(original.as_str(), weak);
    let err = Registry::from_toml_str(&text)
        .unwrap()
        .validate()
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "city `hangzhou`: bad endorser 3 key: weak (small-order) key"
    );
}

#[test]
fn contract_denials_on_the_example() {
    let registry = example();
    let predicates = [];
    let request = Request {
        contract_version: 1,
        requester: "hefei.centre",
        provider: "shanghai.civil-affairs",
        record_type: "marriage",
        predicates: &predicates,
        disclose: &[],
        purpose: "house-transfer: buyer's marital status for purchase restriction (限购)",
        today: date("2026-01-01"),
        prior_queries: 2,
    };
    assert_eq!(
        registry.evaluate_request("house-transfer.marriage", &request),
        Decision::Allow
    );
    let denied = |contract: &str, r: &Request<'_>| {
        registry
            .evaluate_request(contract, r)
            .deny_rule()
            .map(DenyRule::code)
    };
    assert_eq!(
        denied("house-transfer.wedding", &request),
        Some("contract.unknown")
    );
    let spent = Request {
        prior_queries: 3,
        ..request
    };
    assert_eq!(
        denied("house-transfer.marriage", &spent),
        Some("contract.budget_exhausted")
    );
    let late = Request {
        today: date("2028-01-01"),
        ..request
    };
    assert_eq!(
        denied("house-transfer.marriage", &late),
        Some("contract.outside_validity")
    );
}
