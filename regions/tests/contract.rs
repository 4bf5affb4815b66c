//! Contract evaluation: one test per deny rule, and the allow case.

use proofs::{Date, Kind, Value};
use regions::contract::{check_question, evaluate};
use regions::{
    Budget, Contract, Decision, DenyRule, Disclosure, FieldDef, FieldTest, Op, Operand, Predicate,
    RecordType, Request, Volume,
};

fn date(s: &str) -> Date {
    Date::parse(s).unwrap()
}

fn record_type() -> RecordType {
    let f = |name: &str, kind| FieldDef {
        name: name.into(),
        kind,
    };
    RecordType {
        id: "real-estate-title".into(),
        name: "Real-estate title certificate (不动产权证书)".into(),
        fields: vec![
            f("certificate_number", Kind::Text),
            f("owner_id", Kind::Text),
            f("address", Kind::Text),
            f("use", Kind::Text),
            f("area_m2", Kind::Int),
            f("seized", Kind::Bool),
            f("registration_date", Kind::Date),
        ],
        subject: vec!["owner_id".into()],
    }
}

fn contract(disclosure: Disclosure, count: bool) -> Contract {
    Contract {
        id: "house-transfer.title".into(),
        version: 2,
        requesters: vec!["nanjing.centre".into()],
        providers: vec!["shanghai.real-estate".into()],
        record_type: "real-estate-title".into(),
        fields: vec![
            "certificate_number".into(),
            "use".into(),
            "seized".into(),
            "address".into(),
            "registration_date".into(),
        ],
        operators: vec![Op::Eq, Op::Lt, Op::Le],
        count,
        disclosure,
        purpose: "house-transfer".into(),
        valid_from: date("2025-01-01"),
        valid_until: date("2026-12-31"),
        budget: Budget {
            queries: 5,
            per_days: 30,
        },
        volume: Volume::DEFAULT,
        disclose_requires: match disclosure {
            Disclosure::Value => vec!["certificate_number".into()],
            Disclosure::Match => vec![],
        },
    }
}

fn eq(field: &str, v: Value) -> Predicate {
    Predicate::field(field, Op::Eq, Operand::Value(v)).unwrap()
}

fn text(s: &str) -> Value {
    Value::Text(s.into())
}

fn predicates() -> Vec<Predicate> {
    vec![
        eq("certificate_number", text("沪(2024)第001号")),
        eq("seized", Value::Bool(false)),
        Predicate::count(
            vec![FieldTest::new("use", Op::Eq, Operand::Value(text("residential"))).unwrap()],
            Op::Lt,
            2,
        )
        .unwrap(),
    ]
}

fn request<'a>(predicates: &'a [Predicate], disclose: &'a [String]) -> Request<'a> {
    Request {
        contract_version: 2,
        requester: "nanjing.centre",
        provider: "shanghai.real-estate",
        record_type: "real-estate-title",
        predicates,
        disclose,
        purpose: "house-transfer",
        today: date("2026-03-15"),
        prior_queries: 4,
    }
}

fn deny(c: &Contract, r: &Request<'_>) -> DenyRule {
    match evaluate(c, &record_type(), r) {
        Decision::Deny { rule } => rule,
        Decision::Allow => panic!("expected a denial"),
    }
}

#[test]
fn allow() {
    let ps = predicates();
    let disclose = ["address".to_owned()];
    let c = contract(Disclosure::Value, true);
    assert_eq!(
        evaluate(&c, &record_type(), &request(&ps, &disclose)),
        Decision::Allow
    );
    assert!(evaluate(&c, &record_type(), &request(&ps, &[])).is_allowed());
    // First and last valid days are inside.
    for today in ["2025-01-01", "2026-12-31"] {
        let r = Request {
            today: date(today),
            ..request(&ps, &[])
        };
        assert_eq!(evaluate(&c, &record_type(), &r), Decision::Allow);
    }
}

#[test]
fn version_mismatch() {
    let ps = predicates();
    let r = Request {
        contract_version: 1,
        ..request(&ps, &[])
    };
    let rule = deny(&contract(Disclosure::Match, true), &r);
    assert_eq!(
        rule,
        DenyRule::VersionMismatch {
            expected: 2,
            found: 1
        }
    );
    assert_eq!(rule.code(), "contract.version_mismatch");
}

#[test]
fn outside_validity() {
    let ps = predicates();
    for today in ["2024-12-31", "2027-01-01"] {
        let r = Request {
            today: date(today),
            ..request(&ps, &[])
        };
        let rule = deny(&contract(Disclosure::Match, true), &r);
        assert_eq!(rule.code(), "contract.outside_validity");
        assert_eq!(
            rule.to_string(),
            format!("contract applies from 2025-01-01 to 2026-12-31; today is {today}")
        );
    }
}

#[test]
fn wrong_requester() {
    let ps = predicates();
    let r = Request {
        requester: "nanjing.gas",
        ..request(&ps, &[])
    };
    let rule = deny(&contract(Disclosure::Match, true), &r);
    assert_eq!(
        rule,
        DenyRule::WrongRequester {
            requester: "nanjing.gas".into()
        }
    );
    assert_eq!(rule.code(), "contract.wrong_requester");
}

#[test]
fn wrong_provider() {
    let ps = predicates();
    let r = Request {
        provider: "nanjing.real-estate",
        ..request(&ps, &[])
    };
    let rule = deny(&contract(Disclosure::Match, true), &r);
    assert_eq!(rule.code(), "contract.wrong_provider");
    assert_eq!(
        rule.to_string(),
        "`nanjing.real-estate` is not a provider of this contract"
    );
}

#[test]
fn wrong_record_type() {
    let ps = predicates();
    let r = Request {
        record_type: "marriage",
        ..request(&ps, &[])
    };
    let rule = deny(&contract(Disclosure::Match, true), &r);
    assert_eq!(
        rule,
        DenyRule::WrongRecordType {
            expected: "real-estate-title".into(),
            found: "marriage".into()
        }
    );
    assert_eq!(rule.code(), "contract.wrong_record_type");
}

#[test]
fn purpose_mismatch() {
    let ps = predicates();
    let r = Request {
        purpose: "curiosity",
        ..request(&ps, &[])
    };
    let rule = deny(&contract(Disclosure::Match, true), &r);
    assert_eq!(rule.code(), "contract.purpose_mismatch");
    assert_eq!(
        rule.to_string(),
        "purpose `curiosity` is not the contract's purpose `house-transfer`"
    );
}

#[test]
fn disclosure_not_allowed() {
    let ps = predicates();
    let disclose = ["address".to_owned()];
    let rule = deny(&contract(Disclosure::Match, true), &request(&ps, &disclose));
    assert_eq!(
        rule,
        DenyRule::DisclosureNotAllowed {
            field: "address".into()
        }
    );
    assert_eq!(rule.code(), "contract.disclosure_not_allowed");
}

#[test]
fn field_not_allowed_in_predicate_and_in_disclosure() {
    let ps = vec![eq("owner_id", text("310101199002020022"))];
    let rule = deny(&contract(Disclosure::Value, true), &request(&ps, &[]));
    assert_eq!(
        rule,
        DenyRule::FieldNotAllowed {
            field: "owner_id".into()
        }
    );
    assert_eq!(rule.code(), "contract.field_not_allowed");
    // In a count's filter too.
    let ps = vec![
        Predicate::count(
            vec![FieldTest::new("area_m2", Op::Lt, Operand::Value(Value::Int(90))).unwrap()],
            Op::Eq,
            0,
        )
        .unwrap(),
    ];
    assert_eq!(
        deny(&contract(Disclosure::Value, true), &request(&ps, &[])).code(),
        "contract.field_not_allowed"
    );
    // And in what is to be disclosed.
    let ok = predicates();
    let disclose = ["area_m2".to_owned()];
    let rule = deny(&contract(Disclosure::Value, true), &request(&ok, &disclose));
    assert_eq!(
        rule,
        DenyRule::FieldNotAllowed {
            field: "area_m2".into()
        }
    );
}

#[test]
fn operator_not_allowed() {
    let ps = vec![Predicate::field("use", Op::Ne, Operand::Value(text("commercial"))).unwrap()];
    let rule = deny(&contract(Disclosure::Match, true), &request(&ps, &[]));
    assert_eq!(
        rule,
        DenyRule::OperatorNotAllowed {
            field: "use".into(),
            op: Op::Ne
        }
    );
    assert_eq!(rule.code(), "contract.operator_not_allowed");
    // A count's own comparison is an operator too.
    let ps = vec![Predicate::count(vec![], Op::Ge, 1).unwrap()];
    assert_eq!(
        deny(&contract(Disclosure::Match, true), &request(&ps, &[])),
        DenyRule::OperatorNotAllowed {
            field: "count".into(),
            op: Op::Ge
        }
    );
}

#[test]
fn count_not_allowed() {
    let ps = predicates();
    let rule = deny(&contract(Disclosure::Match, false), &request(&ps, &[]));
    assert_eq!(rule, DenyRule::CountNotAllowed);
    assert_eq!(rule.code(), "contract.count_not_allowed");
}

#[test]
fn malformed_predicate() {
    // `lt` is allowed (for counts), but does not apply to a text field.
    let ps = vec![Predicate::field("use", Op::Lt, Operand::Value(text("x"))).unwrap()];
    let rule = deny(&contract(Disclosure::Match, true), &request(&ps, &[]));
    assert_eq!(rule.code(), "contract.malformed_predicate");
    assert_eq!(
        rule.to_string(),
        "malformed predicate `use lt \"x\"`: operator `lt` does not apply to text field `use`"
    );
    // A constant of the wrong kind.
    let ps = vec![eq("seized", text("no"))];
    assert_eq!(
        deny(&contract(Disclosure::Match, true), &request(&ps, &[])).code(),
        "contract.malformed_predicate"
    );
    // A parameter left unbound.
    let ps = vec![
        Predicate::field("certificate_number", Op::Eq, Operand::Param("cert".into())).unwrap(),
    ];
    let rule = deny(&contract(Disclosure::Match, true), &request(&ps, &[]));
    assert_eq!(rule.code(), "contract.malformed_predicate");
    assert!(
        rule.to_string().contains("parameters must be bound"),
        "{rule}"
    );
    // The question alone (as bundle validation checks it) accepts the parameter.
    assert_eq!(
        check_question(&contract(Disclosure::Match, true), &record_type(), &ps, &[]),
        Ok(())
    );
}

#[test]
fn budget_exhausted() {
    let ps = predicates();
    let r = Request {
        prior_queries: 5,
        ..request(&ps, &[])
    };
    let rule = deny(&contract(Disclosure::Match, true), &r);
    assert_eq!(
        rule,
        DenyRule::BudgetExhausted {
            queries: 5,
            per_days: 30
        }
    );
    assert_eq!(rule.code(), "contract.budget_exhausted");
    assert_eq!(
        rule.to_string(),
        "query budget of 5 per 30 days for this subject is spent"
    );
}

#[test]
fn rules_are_checked_in_a_fixed_order() {
    // Everything wrong at once: the first rule in the documented order wins.
    let ps = vec![eq("owner_id", text("x"))];
    let disclose = ["area_m2".to_owned()];
    let mut r = Request {
        contract_version: 9,
        requester: "x",
        provider: "y",
        record_type: "z",
        predicates: &ps,
        disclose: &disclose,
        purpose: "p",
        today: date("2030-01-01"),
        prior_queries: 99,
    };
    let c = contract(Disclosure::Match, false);
    let mut codes = Vec::new();
    loop {
        let rule = match evaluate(&c, &record_type(), &r) {
            Decision::Allow => break,
            Decision::Deny { rule } => rule,
        };
        codes.push(rule.code());
        match rule {
            DenyRule::VersionMismatch { .. } => r.contract_version = 2,
            DenyRule::OutsideValidity { .. } => r.today = date("2026-01-01"),
            DenyRule::WrongRequester { .. } => r.requester = "nanjing.centre",
            DenyRule::WrongProvider { .. } => r.provider = "shanghai.real-estate",
            DenyRule::WrongRecordType { .. } => r.record_type = "real-estate-title",
            DenyRule::PurposeMismatch { .. } => r.purpose = "house-transfer",
            DenyRule::DisclosureNotAllowed { .. } => r.disclose = &[],
            DenyRule::FieldNotAllowed { .. } => r.predicates = &[],
            DenyRule::BudgetExhausted { .. } => r.prior_queries = 0,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(
        codes,
        [
            "contract.version_mismatch",
            "contract.outside_validity",
            "contract.wrong_requester",
            "contract.wrong_provider",
            "contract.wrong_record_type",
            "contract.purpose_mismatch",
            "contract.disclosure_not_allowed",
            "contract.field_not_allowed",
            "contract.budget_exhausted",
        ]
    );
}

#[test]
fn codes_are_distinct_and_namespaced() {
    let d = date("2025-01-01");
    let rules = [
        DenyRule::UnknownContract {
            contract: String::new(),
        },
        DenyRule::VersionMismatch {
            expected: 1,
            found: 2,
        },
        DenyRule::OutsideValidity {
            valid_from: d,
            valid_until: d,
            today: d,
        },
        DenyRule::WrongRequester {
            requester: String::new(),
        },
        DenyRule::WrongProvider {
            provider: String::new(),
        },
        DenyRule::WrongRecordType {
            expected: String::new(),
            found: String::new(),
        },
        DenyRule::PurposeMismatch {
            expected: String::new(),
            found: String::new(),
        },
        DenyRule::DisclosureNotAllowed {
            field: String::new(),
        },
        DenyRule::FieldNotAllowed {
            field: String::new(),
        },
        DenyRule::OperatorNotAllowed {
            field: String::new(),
            op: Op::Eq,
        },
        DenyRule::CountNotAllowed,
        DenyRule::DisclosureUnguarded {
            field: String::new(),
        },
        DenyRule::MalformedPredicate {
            predicate: String::new(),
            reason: String::new(),
        },
        DenyRule::BudgetExhausted {
            queries: 1,
            per_days: 1,
        },
    ];
    let mut codes: Vec<&str> = rules.iter().map(DenyRule::code).collect();
    assert!(codes.iter().all(|c| c.starts_with("contract.")));
    codes.sort();
    codes.dedup();
    assert_eq!(codes.len(), rules.len());
}

/// Issue 15, finding 2: a value contract was a free look-up (no predicate at
/// all disclosed any owner's address). Values need the guard fields tested
/// with `eq` against a constant first.
#[test]
fn values_are_not_disclosed_without_the_required_eq_tests() {
    let c = contract(Disclosure::Value, true);
    let disclose = ["address".to_owned()];
    // No predicate at all.
    let rule = deny(&c, &request(&[], &disclose));
    assert_eq!(
        rule,
        DenyRule::DisclosureUnguarded {
            field: "certificate_number".into()
        }
    );
    assert_eq!(rule.code(), "contract.disclosure_unguarded");
    // Other fields tested, the guard not.
    let ps = vec![eq("seized", Value::Bool(false))];
    assert_eq!(
        deny(&c, &request(&ps, &disclose)).code(),
        "contract.disclosure_unguarded"
    );
    // The guard field compared with another operator.
    let ps =
        vec![Predicate::field("certificate_number", Op::Lt, Operand::Value(text("z"))).unwrap()];
    assert_eq!(
        deny(&c, &request(&ps, &disclose)).code(),
        "contract.disclosure_unguarded"
    );
    // The guard inside a count's filter does not name one record.
    let ps = vec![
        Predicate::count(
            vec![FieldTest::new("certificate_number", Op::Eq, Operand::Value(text("x"))).unwrap()],
            Op::Lt,
            2,
        )
        .unwrap(),
    ];
    assert_eq!(
        deny(&c, &request(&ps, &disclose)).code(),
        "contract.disclosure_unguarded"
    );
    // A yes/no question under the same contract needs no guard.
    let ps = vec![eq("seized", Value::Bool(false))];
    assert!(evaluate(&c, &record_type(), &request(&ps, &[])).is_allowed());
    // With the guard, values may be asked for.
    let ps = vec![eq("certificate_number", text("沪(2024)第001号"))];
    assert!(evaluate(&c, &record_type(), &request(&ps, &disclose)).is_allowed());
    // A value contract that (wrongly) names no guard fails closed.
    let mut open = c.clone();
    open.disclose_requires.clear();
    assert_eq!(
        deny(&open, &request(&ps, &disclose)).code(),
        "contract.disclosure_unguarded"
    );
}
