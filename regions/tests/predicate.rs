//! The predicate language: written forms, semantics, errors, and properties.

use std::collections::BTreeMap;

use proofs::{Date, Kind, Value};
use proptest::prelude::*;
use regions::predicate::{days_before, evaluate, evaluate_all, years_before};
use regions::{CountTest, EvalError, FieldTest, Op, Operand, Outcome, Predicate, PredicateError};
use serde::Deserialize;

type Rec = BTreeMap<String, Value>;

fn date(s: &str) -> Date {
    Date::parse(s).unwrap()
}

fn rec(fields: &[(&str, Value)]) -> Rec {
    fields
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect()
}

fn text(s: &str) -> Value {
    Value::Text(s.into())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Doc {
    predicates: Vec<Predicate>,
}

fn parse(toml_text: &str) -> Result<Vec<Predicate>, toml::de::Error> {
    toml::from_str::<Doc>(toml_text).map(|d| d.predicates)
}

fn one(toml_inline: &str) -> Predicate {
    let mut ps = parse(&format!("predicates = [{toml_inline}]")).unwrap();
    assert_eq!(ps.len(), 1);
    ps.remove(0)
}

fn parse_err(toml_inline: &str) -> String {
    parse(&format!("predicates = [{toml_inline}]"))
        .unwrap_err()
        .to_string()
}

const TODAY: &str = "2026-03-15";

fn holds(p: &Predicate, r: &Rec) -> bool {
    evaluate(p, std::slice::from_ref(r), date(TODAY)).unwrap()
}

#[test]
fn written_forms_parse_into_typed_predicates() {
    assert_eq!(
        one(r#"{ field = "status", op = "eq", value = "married" }"#),
        Predicate::field("status", Op::Eq, Operand::Value(text("married"))).unwrap()
    );
    assert_eq!(
        one(r#"{ field = "status", op = "in", value = ["married", "divorced"] }"#),
        Predicate::field(
            "status",
            Op::In,
            Operand::List(vec![text("married"), text("divorced")])
        )
        .unwrap()
    );
    assert_eq!(
        one(r#"{ field = "months_paid", op = "ge", value = 60 }"#),
        Predicate::field("months_paid", Op::Ge, Operand::Value(Value::Int(60))).unwrap()
    );
    assert_eq!(
        one(r#"{ field = "seized", op = "eq", value = false }"#),
        Predicate::field("seized", Op::Eq, Operand::Value(Value::Bool(false))).unwrap()
    );
    // A bare TOML date and a date string.
    assert_eq!(
        one(r#"{ field = "paid_date", op = "le", value = 2025-06-30 }"#),
        Predicate::field(
            "paid_date",
            Op::Le,
            Operand::Value(Value::Date(date("2025-06-30")))
        )
        .unwrap()
    );
    assert_eq!(
        one(r#"{ field = "paid_date", op = "le", value = "2025-06-30" }"#),
        Predicate::field("paid_date", Op::Le, Operand::Value(text("2025-06-30"))).unwrap()
    );
    assert_eq!(
        one(r#"{ field = "birth_date", op = "le", years_ago = 18 }"#),
        Predicate::field("birth_date", Op::Le, Operand::YearsAgo(18)).unwrap()
    );
    assert_eq!(
        one(r#"{ field = "valid_until", op = "ge", days_ago = 0 }"#),
        Predicate::field("valid_until", Op::Ge, Operand::DaysAgo(0)).unwrap()
    );
    assert_eq!(
        one(r#"{ field = "certificate_number", op = "eq", param = "certificate_number" }"#),
        Predicate::field(
            "certificate_number",
            Op::Eq,
            Operand::Param("certificate_number".into())
        )
        .unwrap()
    );
    assert_eq!(
        one(r#"{ field = "paid_date", op = "exists" }"#),
        Predicate::field("paid_date", Op::Exists, Operand::None).unwrap()
    );
    assert_eq!(
        one(
            r#"{ count = [{ field = "use", op = "eq", value = "residential" }], op = "lt", value = 2 }"#
        ),
        Predicate::count(
            vec![FieldTest::new("use", Op::Eq, Operand::Value(text("residential"))).unwrap()],
            Op::Lt,
            2
        )
        .unwrap()
    );
}

#[test]
fn malformed_written_forms_are_refused_with_a_reason() {
    let cases = [
        (
            r#"{ field = "paid_date", op = "exists", value = 1 }"#,
            "`paid_date exists` needs no operand",
        ),
        (
            r#"{ field = "status", op = "in", value = "married" }"#,
            "`status in` needs a non-empty list",
        ),
        (
            r#"{ field = "status", op = "in", value = [] }"#,
            "`status in` needs a non-empty list",
        ),
        (
            r#"{ field = "status", op = "eq" }"#,
            "`status eq` needs a single constant",
        ),
        (
            r#"{ field = "status", op = "eq", value = ["a"] }"#,
            "`status eq` needs a single constant",
        ),
        (
            r#"{ field = "x", op = "eq", value = 1, param = "p" }"#,
            "give at most one of",
        ),
        (
            r#"{ op = "eq", value = 1 }"#,
            "a predicate needs `field` (or `count`)",
        ),
        (
            r#"{ count = [], op = "in", value = 1 }"#,
            "a count compares with eq, ne, lt, le, gt or ge, not `in`",
        ),
        (
            r#"{ count = [], op = "lt", value = -1 }"#,
            "negative number -1",
        ),
        (
            r#"{ count = [], op = "lt", value = "2" }"#,
            "a count needs an integer `value`",
        ),
        (
            r#"{ count = [], field = "use", op = "lt", value = 2 }"#,
            "a count takes `count`, `op` and an integer `value` only",
        ),
        (
            r#"{ count = [{ count = [], op = "eq", value = 0 }], op = "lt", value = 2 }"#,
            "a predicate needs `field`",
        ),
        (
            r#"{ count = [{ field = "a", count = [], op = "eq", value = 0 }], op = "lt", value = 2 }"#,
            "may not itself count",
        ),
        (
            r#"{ field = "x", op = "eq", value = [[1]] }"#,
            "a list may not contain another list",
        ),
        (
            r#"{ field = "x", op = "eq", value = 1.5 }"#,
            "invalid type: floating point",
        ),
        (
            r#"{ field = "x", op = "eq", value = 2025-06-30T10:00:00 }"#,
            "only a date YYYY-MM-DD is allowed",
        ),
        (
            r#"{ field = "x", op = "like", value = 1 }"#,
            "unknown variant `like`",
        ),
        (
            r#"{ field = "x", op = "eq", value = 1, colour = "red" }"#,
            "unknown field `colour`",
        ),
    ];
    for (input, expected) in cases {
        let err = parse_err(input);
        assert!(
            err.contains(expected),
            "{input}: expected `{expected}` in:\n{err}"
        );
    }
}

#[test]
fn predicates_round_trip_through_toml_and_json() {
    let ps = parse(
        r#"predicates = [
        { field = "status", op = "in", value = ["married", "divorced"] },
        { field = "paid_date", op = "le", value = 2025-06-30 },
        { field = "birth_date", op = "le", years_ago = 18 },
        { field = "n", op = "exists" },
        { count = [{ field = "use", op = "eq", value = "residential" }], op = "lt", value = 2 },
    ]"#,
    )
    .unwrap();
    let json = serde_json::to_string(&ps).unwrap();
    let back: Vec<Predicate> = serde_json::from_str(&json).unwrap();
    // Dates are written as strings and come back as text constants, which
    // compare as dates against date fields.
    let r = rec(&[("paid_date", Value::Date(date("2025-06-01")))]);
    assert!(holds(&back[1], &r));
    assert_eq!(back[0], ps[0]);
    assert_eq!(back[2..], ps[2..]);
    let toml_text = toml::to_string(&Doc2 {
        predicates: ps.clone(),
    })
    .unwrap();
    assert_eq!(parse(&toml_text).unwrap()[2..], ps[2..]);
}

#[derive(serde::Serialize)]
struct Doc2 {
    predicates: Vec<Predicate>,
}

#[test]
fn operators_on_each_kind() {
    let r = rec(&[
        ("status", text("married")),
        ("months", Value::Int(60)),
        ("seized", Value::Bool(false)),
        ("paid", Value::Date(date("2025-06-30"))),
    ]);
    let t = |s: &str| holds(&one(s), &r);
    assert!(t(r#"{ field = "status", op = "eq", value = "married" }"#));
    assert!(!t(r#"{ field = "status", op = "ne", value = "married" }"#));
    assert!(t(
        r#"{ field = "status", op = "in", value = ["divorced", "married"] }"#
    ));
    assert!(t(r#"{ field = "months", op = "ge", value = 60 }"#));
    assert!(!t(r#"{ field = "months", op = "gt", value = 60 }"#));
    assert!(t(r#"{ field = "months", op = "le", value = 60 }"#));
    assert!(!t(r#"{ field = "months", op = "lt", value = 60 }"#));
    assert!(t(r#"{ field = "seized", op = "eq", value = false }"#));
    assert!(t(r#"{ field = "seized", op = "ne", value = true }"#));
    assert!(t(r#"{ field = "paid", op = "lt", value = "2025-07-01" }"#));
    assert!(t(r#"{ field = "paid", op = "ge", value = 2025-06-30 }"#));
    assert!(t(
        r#"{ field = "paid", op = "in", value = ["2025-06-30"] }"#
    ));
    assert!(t(r#"{ field = "paid", op = "exists" }"#));
    // An absent field: only `exists` can tell, and it says no.
    assert!(!t(r#"{ field = "absent", op = "exists" }"#));
    assert!(!t(r#"{ field = "absent", op = "eq", value = 1 }"#));
    assert!(!t(r#"{ field = "absent", op = "ne", value = 1 }"#));
}

#[test]
fn kind_mismatches_are_errors_not_false() {
    let r = rec(&[
        ("status", text("married")),
        ("months", Value::Int(60)),
        ("paid", Value::Date(date("2025-06-30"))),
    ]);
    let today = date(TODAY);
    let err = |s: &str| evaluate(&one(s), std::slice::from_ref(&r), today).unwrap_err();
    assert_eq!(
        err(r#"{ field = "months", op = "eq", value = "60" }"#),
        EvalError::KindMismatch {
            field: "months".into(),
            record: Kind::Int,
            constant: Kind::Text
        }
    );
    assert_eq!(
        err(r#"{ field = "status", op = "eq", value = true }"#),
        EvalError::KindMismatch {
            field: "status".into(),
            record: Kind::Text,
            constant: Kind::Bool
        }
    );
    assert_eq!(
        err(r#"{ field = "paid", op = "eq", value = "30/06/2025" }"#),
        EvalError::BadDate {
            field: "paid".into(),
            text: "30/06/2025".into()
        }
    );
    assert_eq!(
        err(r#"{ field = "status", op = "lt", value = "n" }"#),
        EvalError::Predicate(PredicateError::NotApplicable {
            field: "status".into(),
            op: Op::Lt,
            kind: Kind::Text
        })
    );
    assert_eq!(
        err(r#"{ field = "months", op = "ge", years_ago = 1 }"#),
        EvalError::Predicate(PredicateError::RelativeNotDate {
            field: "months".into(),
            kind: Kind::Int
        })
    );
    assert_eq!(
        err(r#"{ field = "status", op = "eq", param = "p" }"#),
        EvalError::UnboundParam {
            field: "status".into(),
            param: "p".into()
        }
    );
    assert_eq!(
        err(r#"{ field = "paid", op = "ge", years_ago = 3000 }"#),
        EvalError::DateOutOfRange {
            field: "paid".into()
        }
    );
    // A predicate built by hand with an operand that does not fit its operator.
    let bad = Predicate::Field(FieldTest {
        field: "status".into(),
        op: Op::Exists,
        operand: Operand::Value(text("x")),
    });
    assert!(matches!(
        evaluate(&bad, std::slice::from_ref(&r), today),
        Err(EvalError::Predicate(PredicateError::Shape { .. }))
    ));
}

#[test]
fn schema_check_catches_what_evaluation_would() {
    let kinds = |f: &str| match f {
        "status" => Some(Kind::Text),
        "months" => Some(Kind::Int),
        "paid" => Some(Kind::Date),
        "seized" => Some(Kind::Bool),
        _ => None,
    };
    let check = |s: &str| one(s).check(&kinds);
    assert_eq!(
        check(r#"{ field = "paid", op = "le", value = "2025-06-30" }"#),
        Ok(())
    );
    assert_eq!(
        check(r#"{ field = "status", op = "eq", param = "p" }"#),
        Ok(())
    );
    assert_eq!(
        check(r#"{ field = "spouse", op = "exists" }"#),
        Err(PredicateError::UnknownField("spouse".into()))
    );
    assert_eq!(
        check(r#"{ field = "seized", op = "gt", value = false }"#)
            .unwrap_err()
            .to_string(),
        "operator `gt` does not apply to bool field `seized`"
    );
    assert_eq!(
        check(r#"{ field = "paid", op = "eq", value = "soon" }"#)
            .unwrap_err()
            .to_string(),
        "field `paid` is date; the constant \"soon\" is not"
    );
    assert_eq!(
        check(r#"{ field = "months", op = "in", value = [1, "2"] }"#)
            .unwrap_err()
            .to_string(),
        "field `months` is int; the constant \"2\" is not"
    );
    assert_eq!(
        check(r#"{ field = "status", op = "eq", days_ago = 3 }"#)
            .unwrap_err()
            .to_string(),
        "`days_ago`/`years_ago` need a date field; `status` is text"
    );
}

#[test]
fn age_and_relative_dates() {
    let adult = one(r#"{ field = "birth_date", op = "le", years_ago = 18 }"#);
    let born = |d: &str| rec(&[("birth_date", Value::Date(date(d)))]);
    let on = |p: &Predicate, r: &Rec, today: &str| {
        evaluate(p, std::slice::from_ref(r), date(today)).unwrap()
    };
    assert!(on(&adult, &born("2008-03-15"), "2026-03-15"));
    assert!(!on(&adult, &born("2008-03-16"), "2026-03-15"));
    // Born on 29 February: 18 on 1 March of a common year.
    assert!(!on(&adult, &born("2008-02-29"), "2026-02-28"));
    assert!(on(&adult, &born("2008-02-29"), "2026-03-01"));
    // Today 29 February: "18 years ago" is 28 February of a common year.
    assert!(on(&adult, &born("2010-02-28"), "2028-02-29"));
    assert!(!on(&adult, &born("2010-03-01"), "2028-02-29"));
    assert_eq!(
        years_before(date("2024-02-29"), 1),
        Some(date("2023-02-28"))
    );
    assert_eq!(
        years_before(date("2024-02-29"), 4),
        Some(date("2020-02-29"))
    );
    assert_eq!(days_before(date("2026-03-01"), 1), Some(date("2026-02-28")));
    assert_eq!(days_before(date("1970-01-01"), 1), Some(date("1969-12-31")));
    assert_eq!(days_before(date("0001-01-01"), 1), None);
    let valid_today = one(r#"{ field = "valid_until", op = "ge", days_ago = 0 }"#);
    let card = |d: &str| rec(&[("valid_until", Value::Date(date(d)))]);
    assert!(on(&valid_today, &card("2026-03-15"), "2026-03-15"));
    assert!(!on(&valid_today, &card("2026-03-14"), "2026-03-15"));
}

#[test]
fn field_tests_must_hold_on_one_and_the_same_record() {
    let title = |cert: &str, seized: bool, use_: &str| {
        rec(&[
            ("certificate_number", text(cert)),
            ("seized", Value::Bool(seized)),
            ("use", text(use_)),
        ])
    };
    let titles = vec![
        title("A", true, "residential"),
        title("B", false, "residential"),
        title("C", false, "commercial"),
    ];
    let today = date(TODAY);
    let owns_a_unseized = parse(
        r#"predicates = [
        { field = "certificate_number", op = "eq", value = "A" },
        { field = "seized", op = "eq", value = false },
    ]"#,
    )
    .unwrap();
    // Each holds on some record, but not on the same one.
    assert!(evaluate(&owns_a_unseized[0], &titles, today).unwrap());
    assert!(evaluate(&owns_a_unseized[1], &titles, today).unwrap());
    assert_eq!(
        evaluate_all(&owns_a_unseized, &titles, today).unwrap(),
        Outcome {
            holds: false,
            record: None
        }
    );
    let owns_b_unseized = parse(
        r#"predicates = [
        { field = "certificate_number", op = "eq", value = "B" },
        { field = "seized", op = "eq", value = false },
        { count = [{ field = "use", op = "eq", value = "residential" }], op = "lt", value = 3 },
    ]"#,
    )
    .unwrap();
    assert_eq!(
        evaluate_all(&owns_b_unseized, &titles, today).unwrap(),
        Outcome {
            holds: true,
            record: Some(1)
        }
    );
    // Counts alone need no record; no predicate at all asks whether any record exists.
    let fewer_than_two = parse(r#"predicates = [{ count = [{ field = "use", op = "eq", value = "residential" }], op = "lt", value = 2 }]"#).unwrap();
    assert!(!evaluate_all(&fewer_than_two, &titles, today).unwrap().holds);
    assert_eq!(
        evaluate_all(&fewer_than_two, &Vec::<Rec>::new(), today).unwrap(),
        Outcome {
            holds: true,
            record: None
        }
    );
    assert!(evaluate_all(&[], &titles, today).unwrap().holds);
    assert!(!evaluate_all(&[], &Vec::<Rec>::new(), today).unwrap().holds);
    let c = CountTest::new(vec![], Op::Eq, 3).unwrap();
    assert_eq!(c.count(&titles, today).unwrap(), 3);
}

#[test]
fn binding_replaces_params() {
    let p = one(r#"{ field = "certificate_number", op = "eq", param = "cert" }"#);
    assert_eq!(p.params(), vec![("certificate_number", "cert")]);
    let bound = p
        .bind(&|name| (name == "cert").then(|| text("X1")))
        .unwrap();
    assert_eq!(
        bound,
        one(r#"{ field = "certificate_number", op = "eq", value = "X1" }"#)
    );
    assert_eq!(
        p.bind(&|_| None),
        Err(PredicateError::UnknownParam("cert".into()))
    );
    assert_eq!(
        one(r#"{ count = [], op = "lt", value = 2 }"#).to_string(),
        "count() lt 2"
    );
    assert_eq!(p.to_string(), "certificate_number eq param:cert");
}

fn int_rec(v: i64) -> Rec {
    rec(&[("n", Value::Int(v))])
}

fn int_test(op: Op, c: i64) -> FieldTest {
    FieldTest::new("n", op, Operand::Value(Value::Int(c))).unwrap()
}

fn arb_date() -> impl Strategy<Value = Date> {
    (1900u16..2100, 1u8..=12, 1u8..=28).prop_map(|(y, m, d)| Date::new(y, m, d).unwrap())
}

proptest! {
    #[test]
    fn lt_and_ge_are_complements_on_ints(v in any::<i64>(), c in any::<i64>()) {
        let today = date(TODAY);
        let r = int_rec(v);
        let lt = int_test(Op::Lt, c).evaluate(&r, today).unwrap();
        let ge = int_test(Op::Ge, c).evaluate(&r, today).unwrap();
        prop_assert_ne!(lt, ge);
        prop_assert_eq!(lt, v < c);
    }

    #[test]
    fn le_and_gt_eq_and_ne_are_complements_on_ints(v in -50i64..50, c in -50i64..50) {
        let today = date(TODAY);
        let r = int_rec(v);
        let ev = |op| int_test(op, c).evaluate(&r, today).unwrap();
        prop_assert_ne!(ev(Op::Le), ev(Op::Gt));
        prop_assert_ne!(ev(Op::Eq), ev(Op::Ne));
        prop_assert_eq!(ev(Op::Le), ev(Op::Lt) || ev(Op::Eq));
    }

    #[test]
    fn in_agrees_with_any_eq(v in -20i64..20, list in proptest::collection::vec(-20i64..20, 1..8)) {
        let today = date(TODAY);
        let r = int_rec(v);
        let in_list = FieldTest::new("n", Op::In, Operand::List(list.iter().map(|c| Value::Int(*c)).collect())).unwrap();
        let any_eq = list.iter().any(|c| int_test(Op::Eq, *c).evaluate(&r, today).unwrap());
        prop_assert_eq!(in_list.evaluate(&r, today).unwrap(), any_eq);
    }

    #[test]
    fn in_agrees_with_any_eq_on_text(v in "[ab]{0,2}", list in proptest::collection::vec("[ab]{0,2}", 1..5)) {
        let today = date(TODAY);
        let r = rec(&[("s", Value::Text(v.clone()))]);
        let in_list = FieldTest::new("s", Op::In, Operand::List(list.iter().map(|c| Value::Text(c.clone())).collect())).unwrap();
        let eq = |c: &String| FieldTest::new("s", Op::Eq, Operand::Value(Value::Text(c.clone()))).unwrap().evaluate(&r, today).unwrap();
        prop_assert_eq!(in_list.evaluate(&r, today).unwrap(), list.iter().any(eq));
    }

    #[test]
    fn date_comparisons_follow_the_calendar(a in arb_date(), b in arb_date()) {
        let today = date(TODAY);
        let r = rec(&[("d", Value::Date(a))]);
        // The constant written as text, as TOML and JSON carry it.
        let t = |op| FieldTest::new("d", op, Operand::Value(Value::Text(b.to_string()))).unwrap().evaluate(&r, today).unwrap();
        prop_assert_eq!(t(Op::Lt), a < b);
        prop_assert_eq!(t(Op::Ge), a >= b);
        prop_assert_eq!(t(Op::Eq), a == b);
    }

    #[test]
    fn days_ago_matches_day_arithmetic(today in arb_date(), n in 0u32..50_000) {
        let back = days_before(today, n).unwrap();
        prop_assert_eq!(today.days_since_epoch() - back.days_since_epoch(), i64::from(n));
    }

    #[test]
    fn counts_count(values in proptest::collection::vec(-5i64..5, 0..12), bound in 0i64..12) {
        let today = date(TODAY);
        let recs: Vec<Rec> = values.iter().map(|v| int_rec(*v)).collect();
        let positives = values.iter().filter(|v| **v > 0).count() as i64;
        let c = CountTest::new(vec![int_test(Op::Gt, 0)], Op::Lt, bound).unwrap();
        prop_assert_eq!(c.evaluate(&recs, today).unwrap(), positives < bound);
    }

    #[test]
    fn mismatched_kinds_never_evaluate(v in any::<i64>(), s in ".{0,8}") {
        let today = date(TODAY);
        let r = int_rec(v);
        for op in [Op::Eq, Op::Ne, Op::Lt, Op::Ge] {
            let t = FieldTest::new("n", op, Operand::Value(Value::Text(s.clone()))).unwrap();
            let is_kind_mismatch = matches!(t.evaluate(&r, today), Err(EvalError::KindMismatch { .. }));
            prop_assert!(is_kind_mismatch);
        }
    }
}
