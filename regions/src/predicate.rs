//! The predicate language: the questions a requester may ask about a subject's
//! records, and their pure evaluation.
//!
//! A [`Predicate`] is either a test on one field of a record ([`FieldTest`]:
//! `eq ne lt le gt ge` with a constant, `in` a list, `exists`, or a date compared
//! with "N days/years before today") or a count over the subject's live records
//! of the type ([`CountTest`]: how many records pass a filter, compared with a
//! number). Evaluation takes the date as an argument and never reads a clock.
//!
//! # Written form (TOML or JSON)
//!
//! ```toml
//! predicates = [
//!   { field = "status", op = "eq", value = "married" },
//!   { field = "status", op = "in", value = ["married", "divorced"] },
//!   { field = "seized", op = "eq", value = false },
//!   { field = "birth_date", op = "le", years_ago = 18 },      # 18 or older today
//!   { field = "certificate_number", op = "eq", param = "certificate_number" },
//!   { field = "paid_date", op = "exists" },
//!   { count = [{ field = "use", op = "eq", value = "residential" }], op = "lt", value = 2 },
//! ]
//! ```
//!
//! Constants are plain: strings for text and for dates (`"2025-01-01"`, or a
//! bare TOML date), integers for ints, booleans for bools. A string compared
//! with a date field is read as a date. `param = "…"` names a bundle
//! parameter, replaced by its value with [`Predicate::bind`] before evaluation.
//!
//! # Semantics
//!
//! * On one record, every operator except `exists` is false when the field is
//!   absent; `exists` is true exactly when it is present.
//! * `lt le gt ge` apply to int and date fields only; `eq ne in exists` to all.
//! * Over a subject's records, a field test holds when **some** record passes it
//!   ([`evaluate`]); [`evaluate_all`] requires all field tests to hold on **one
//!   and the same** record (so "owns certificate X and it is not seized" cannot
//!   be answered by two different titles) and every count to hold.
//! * `years_ago = N` means the same month and day N years before `today`
//!   (29 February becomes 28 February in a common year). So
//!   `birth_date le years_ago 18` holds from the 18th birthday on; for a person
//!   born on 29 February, from 1 March in common years.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::hash::BuildHasher;

use proofs::{Date, Kind, Value};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::scalar::Plain;

/// A record as predicates see it: named, typed field values.
pub trait Record {
    /// The value of field `name`, or `None` if the record does not have it.
    fn field(&self, name: &str) -> Option<&Value>;
}

impl Record for BTreeMap<String, Value> {
    fn field(&self, name: &str) -> Option<&Value> {
        self.get(name)
    }
}

impl<S: BuildHasher> Record for HashMap<String, Value, S> {
    fn field(&self, name: &str) -> Option<&Value> {
        self.get(name)
    }
}

impl Record for [(String, Value)] {
    fn field(&self, name: &str) -> Option<&Value> {
        self.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }
}

impl Record for Vec<(String, Value)> {
    fn field(&self, name: &str) -> Option<&Value> {
        self.as_slice().field(name)
    }
}

impl<R: Record + ?Sized> Record for &R {
    fn field(&self, name: &str) -> Option<&Value> {
        (**self).field(name)
    }
}

/// An operator. Contracts list the operators a requester may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    /// Equal to a constant.
    Eq,
    /// Not equal to a constant.
    Ne,
    /// Less than (ints and dates).
    Lt,
    /// Less than or equal (ints and dates).
    Le,
    /// Greater than (ints and dates).
    Gt,
    /// Greater than or equal (ints and dates).
    Ge,
    /// Equal to one of a list of constants.
    In,
    /// The field is present.
    Exists,
}

impl Op {
    /// Every operator, in declaration order.
    pub const ALL: [Op; 8] = [
        Op::Eq,
        Op::Ne,
        Op::Lt,
        Op::Le,
        Op::Gt,
        Op::Ge,
        Op::In,
        Op::Exists,
    ];

    /// The operator's written name (`"eq"`, `"exists"`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Eq => "eq",
            Op::Ne => "ne",
            Op::Lt => "lt",
            Op::Le => "le",
            Op::Gt => "gt",
            Op::Ge => "ge",
            Op::In => "in",
            Op::Exists => "exists",
        }
    }

    /// `eq ne lt le gt ge`: compares with a single operand.
    pub fn is_comparison(self) -> bool {
        !matches!(self, Op::In | Op::Exists)
    }

    /// `lt le gt ge`: needs an order, so applies to ints and dates only.
    pub fn is_ordering(self) -> bool {
        matches!(self, Op::Lt | Op::Le | Op::Gt | Op::Ge)
    }

    /// Whether the operator may be used on a field of `kind`.
    pub fn applies_to(self, kind: Kind) -> bool {
        !self.is_ordering() || matches!(kind, Kind::Int | Kind::Date)
    }

    /// Whether `actual <op> operand` holds, given their order (comparisons only).
    fn holds(self, ord: Ordering) -> bool {
        match self {
            Op::Eq => ord == Ordering::Equal,
            Op::Ne => ord != Ordering::Equal,
            Op::Lt => ord == Ordering::Less,
            Op::Le => ord != Ordering::Greater,
            Op::Gt => ord == Ordering::Greater,
            Op::Ge => ord != Ordering::Less,
            Op::In | Op::Exists => false,
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a field is compared with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operand {
    /// Nothing (`exists`).
    None,
    /// A constant (comparisons).
    Value(Value),
    /// A list of constants (`in`).
    List(Vec<Value>),
    /// A bundle parameter, replaced by its value with [`Predicate::bind`].
    Param(String),
    /// The date this many days before `today` (date fields, comparisons).
    DaysAgo(u32),
    /// The same day this many years before `today` (date fields, comparisons).
    YearsAgo(u32),
}

/// A test on one field of one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldTest {
    /// The field's name in the record type.
    pub field: String,
    /// The operator.
    pub op: Op,
    /// What the field is compared with; must fit the operator (see [`FieldTest::new`]).
    pub operand: Operand,
}

/// A count over a subject's live records of one type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CountTest {
    /// The tests a record must all pass to be counted (empty: count every record).
    pub filter: Vec<FieldTest>,
    /// How the count compares with [`CountTest::value`] (a comparison operator).
    pub op: Op,
    /// The number compared with (not negative).
    pub value: i64,
}

/// A predicate: a field test or a count.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Repr", into = "Repr")]
pub enum Predicate {
    /// A test on one field.
    Field(FieldTest),
    /// A count over the subject's records.
    Count(CountTest),
}

/// A predicate that does not make sense on its own or for a record type.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PredicateError {
    /// The operand does not fit the operator.
    #[error("`{field} {op}` needs {needs}")]
    Shape {
        /// Field tested.
        field: String,
        /// Operator used.
        op: Op,
        /// What the operator needs.
        needs: &'static str,
    },
    /// The written form is inconsistent (e.g. both `field` and `count`).
    #[error("{0}")]
    Form(String),
    /// A count compared with `in` or `exists`.
    #[error("a count compares with eq, ne, lt, le, gt or ge, not `{0}`")]
    CountOperator(Op),
    /// A count compared with a negative number.
    #[error("a count cannot be compared with the negative number {0}")]
    NegativeCount(i64),
    /// The record type has no such field.
    #[error("unknown field `{0}`")]
    UnknownField(String),
    /// The operator does not apply to the field's kind.
    #[error("operator `{op}` does not apply to {kind} field `{field}`")]
    NotApplicable {
        /// Field tested.
        field: String,
        /// Operator used.
        op: Op,
        /// The field's kind.
        kind: Kind,
    },
    /// `days_ago`/`years_ago` on a field that is not a date.
    #[error("`days_ago`/`years_ago` need a date field; `{field}` is {kind}")]
    RelativeNotDate {
        /// Field tested.
        field: String,
        /// The field's kind.
        kind: Kind,
    },
    /// A constant that cannot be read as the field's kind.
    #[error("field `{field}` is {kind}; the constant {found:?} is not")]
    Constant {
        /// Field tested.
        field: String,
        /// The field's kind.
        kind: Kind,
        /// The constant given.
        found: Value,
    },
    /// A parameter that has no value.
    #[error("unknown parameter `{0}`")]
    UnknownParam(String),
}

/// Why a predicate could not be evaluated (as opposed to evaluating to false).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EvalError {
    /// The predicate is malformed.
    #[error(transparent)]
    Predicate(#[from] PredicateError),
    /// The record's value and the constant are of different kinds.
    #[error("field `{field}` holds a {record} value; the predicate compares it with a {constant}")]
    KindMismatch {
        /// Field tested.
        field: String,
        /// The kind of the record's value.
        record: Kind,
        /// The kind of the predicate's constant.
        constant: Kind,
    },
    /// A text constant compared with a date field is not a date.
    #[error("field `{field}` is a date; the constant `{text}` is not a date YYYY-MM-DD")]
    BadDate {
        /// Field tested.
        field: String,
        /// The constant given.
        text: String,
    },
    /// A `param` operand that was never bound.
    #[error("field `{field}`: parameter `{param}` must be bound before evaluation")]
    UnboundParam {
        /// Field tested.
        field: String,
        /// The parameter named.
        param: String,
    },
    /// `today` minus the interval is before year 1.
    #[error("field `{field}`: the relative date falls before year 1")]
    DateOutOfRange {
        /// Field tested.
        field: String,
    },
}

/// The result of [`evaluate_all`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// Whether every predicate holds.
    pub holds: bool,
    /// The index of the first record that passes every field test (the record a
    /// value disclosure reads from), when the predicates hold and one is needed.
    pub record: Option<usize>,
}

impl FieldTest {
    /// A field test whose operand fits its operator: `exists` takes
    /// [`Operand::None`], `in` a non-empty [`Operand::List`], and the comparisons
    /// a value, a parameter or a relative date.
    pub fn new(field: impl Into<String>, op: Op, operand: Operand) -> Result<Self, PredicateError> {
        let test = FieldTest {
            field: field.into(),
            op,
            operand,
        };
        test.check_shape()?;
        Ok(test)
    }

    /// Checks that the operand fits the operator.
    pub fn check_shape(&self) -> Result<(), PredicateError> {
        let needs = match (&self.op, &self.operand) {
            (Op::Exists, Operand::None) => return Ok(()),
            (Op::Exists, _) => "no operand",
            (Op::In, Operand::List(l)) if !l.is_empty() => return Ok(()),
            (Op::In, _) => "a non-empty list of constants",
            (
                _,
                Operand::Value(_) | Operand::Param(_) | Operand::DaysAgo(_) | Operand::YearsAgo(_),
            ) => {
                return Ok(());
            }
            _ => "a single constant, `param`, `days_ago` or `years_ago`",
        };
        Err(PredicateError::Shape {
            field: self.field.clone(),
            op: self.op,
            needs,
        })
    }

    /// Checks the test against a record type's declared field kinds: the field
    /// exists, the operator applies to its kind, and constants can be read as it.
    /// Parameters are not checked here (they have no value yet).
    pub fn check(&self, kind_of: &dyn Fn(&str) -> Option<Kind>) -> Result<(), PredicateError> {
        self.check_shape()?;
        let kind =
            kind_of(&self.field).ok_or_else(|| PredicateError::UnknownField(self.field.clone()))?;
        if !self.op.applies_to(kind) {
            return Err(PredicateError::NotApplicable {
                field: self.field.clone(),
                op: self.op,
                kind,
            });
        }
        let constant = |v: &Value| {
            coerce(&self.field, v, kind)
                .map(|_| ())
                .map_err(|_| PredicateError::Constant {
                    field: self.field.clone(),
                    kind,
                    found: v.clone(),
                })
        };
        match &self.operand {
            Operand::None | Operand::Param(_) => Ok(()),
            Operand::Value(v) => constant(v),
            Operand::List(vs) => vs.iter().try_for_each(constant),
            Operand::DaysAgo(_) | Operand::YearsAgo(_) if kind == Kind::Date => Ok(()),
            Operand::DaysAgo(_) | Operand::YearsAgo(_) => Err(PredicateError::RelativeNotDate {
                field: self.field.clone(),
                kind,
            }),
        }
    }

    /// Evaluates the test on one record.
    pub fn evaluate<R: Record + ?Sized>(&self, record: &R, today: Date) -> Result<bool, EvalError> {
        self.check_shape()?;
        let Some(actual) = record.field(&self.field) else {
            return Ok(false);
        };
        let kind = actual.kind();
        if !self.op.applies_to(kind) {
            return Err(PredicateError::NotApplicable {
                field: self.field.clone(),
                op: self.op,
                kind,
            }
            .into());
        }
        let relative = |date: Option<Date>| -> Result<Value, EvalError> {
            if kind != Kind::Date {
                return Err(PredicateError::RelativeNotDate {
                    field: self.field.clone(),
                    kind,
                }
                .into());
            }
            date.map(Value::Date)
                .ok_or_else(|| EvalError::DateOutOfRange {
                    field: self.field.clone(),
                })
        };
        let operand = match &self.operand {
            Operand::None => return Ok(true),
            Operand::List(vs) => {
                let vs = vs
                    .iter()
                    .map(|v| coerce(&self.field, v, kind))
                    .collect::<Result<Vec<_>, _>>()?;
                return Ok(vs.iter().any(|v| **v == *actual));
            }
            Operand::Param(p) => {
                return Err(EvalError::UnboundParam {
                    field: self.field.clone(),
                    param: p.clone(),
                });
            }
            Operand::Value(v) => coerce(&self.field, v, kind)?,
            Operand::DaysAgo(n) => Cow::Owned(relative(days_before(today, *n))?),
            Operand::YearsAgo(n) => Cow::Owned(relative(years_before(today, *n))?),
        };
        let ord = actual
            .compare(&operand)
            .ok_or_else(|| EvalError::KindMismatch {
                field: self.field.clone(),
                record: kind,
                constant: operand.kind(),
            })?;
        Ok(self.op.holds(ord))
    }
}

impl CountTest {
    /// A count whose operator is a comparison and whose number is not negative.
    pub fn new(filter: Vec<FieldTest>, op: Op, value: i64) -> Result<Self, PredicateError> {
        let test = CountTest { filter, op, value };
        test.check_shape()?;
        Ok(test)
    }

    /// Checks the operator, the number and every filter test's shape.
    pub fn check_shape(&self) -> Result<(), PredicateError> {
        if !self.op.is_comparison() {
            return Err(PredicateError::CountOperator(self.op));
        }
        if self.value < 0 {
            return Err(PredicateError::NegativeCount(self.value));
        }
        self.filter.iter().try_for_each(FieldTest::check_shape)
    }

    /// How many of `records` pass every filter test.
    pub fn count<R: Record>(&self, records: &[R], today: Date) -> Result<usize, EvalError> {
        let mut n = 0;
        for r in records {
            if passes_all(&self.filter, r, today)? {
                n += 1;
            }
        }
        Ok(n)
    }

    /// Evaluates the count over a subject's records.
    pub fn evaluate<R: Record>(&self, records: &[R], today: Date) -> Result<bool, EvalError> {
        self.check_shape()?;
        let n = i64::try_from(self.count(records, today)?).unwrap_or(i64::MAX);
        Ok(self.op.holds(n.cmp(&self.value)))
    }
}

fn passes_all<R: Record + ?Sized>(
    tests: &[FieldTest],
    record: &R,
    today: Date,
) -> Result<bool, EvalError> {
    for t in tests {
        if !t.evaluate(record, today)? {
            return Ok(false);
        }
    }
    Ok(true)
}

impl Predicate {
    /// A field test (see [`FieldTest::new`]).
    pub fn field(
        field: impl Into<String>,
        op: Op,
        operand: Operand,
    ) -> Result<Self, PredicateError> {
        FieldTest::new(field, op, operand).map(Predicate::Field)
    }

    /// A count (see [`CountTest::new`]).
    pub fn count(filter: Vec<FieldTest>, op: Op, value: i64) -> Result<Self, PredicateError> {
        CountTest::new(filter, op, value).map(Predicate::Count)
    }

    /// Every field test in the predicate (a count's filter tests).
    pub fn field_tests(&self) -> &[FieldTest] {
        match self {
            Predicate::Field(t) => std::slice::from_ref(t),
            Predicate::Count(c) => &c.filter,
        }
    }

    /// Every operator the predicate uses, a count's own comparison included.
    pub fn ops(&self) -> Vec<Op> {
        let mut ops: Vec<Op> = self.field_tests().iter().map(|t| t.op).collect();
        if let Predicate::Count(c) = self {
            ops.push(c.op);
        }
        ops
    }

    /// Checks the predicate's shape.
    pub fn check_shape(&self) -> Result<(), PredicateError> {
        match self {
            Predicate::Field(t) => t.check_shape(),
            Predicate::Count(c) => c.check_shape(),
        }
    }

    /// Checks the predicate against a record type's declared field kinds (see
    /// [`FieldTest::check`]).
    pub fn check(&self, kind_of: &dyn Fn(&str) -> Option<Kind>) -> Result<(), PredicateError> {
        self.check_shape()?;
        self.field_tests().iter().try_for_each(|t| t.check(kind_of))
    }

    /// The parameters the predicate names, with the field each is compared with.
    pub fn params(&self) -> Vec<(&str, &str)> {
        self.field_tests()
            .iter()
            .filter_map(|t| match &t.operand {
                Operand::Param(p) => Some((t.field.as_str(), p.as_str())),
                _ => None,
            })
            .collect()
    }

    /// A copy with every `param` operand replaced by the parameter's value.
    pub fn bind(&self, param: &dyn Fn(&str) -> Option<Value>) -> Result<Predicate, PredicateError> {
        let bind_test = |t: &FieldTest| -> Result<FieldTest, PredicateError> {
            let mut t = t.clone();
            if let Operand::Param(p) = &t.operand {
                t.operand = Operand::Value(
                    param(p).ok_or_else(|| PredicateError::UnknownParam(p.clone()))?,
                );
            }
            Ok(t)
        };
        Ok(match self {
            Predicate::Field(t) => Predicate::Field(bind_test(t)?),
            Predicate::Count(c) => Predicate::Count(CountTest {
                filter: c.filter.iter().map(bind_test).collect::<Result<_, _>>()?,
                op: c.op,
                value: c.value,
            }),
        })
    }
}

/// Evaluates one predicate over a subject's live records of one type: a field
/// test holds if some record passes it; a count compares how many records pass
/// its filter.
pub fn evaluate<R: Record>(
    predicate: &Predicate,
    records: &[R],
    today: Date,
) -> Result<bool, EvalError> {
    match predicate {
        Predicate::Field(t) => {
            t.check_shape()?;
            for r in records {
                if t.evaluate(r, today)? {
                    return Ok(true);
                }
            }
            Ok(false)
        }
        Predicate::Count(c) => c.evaluate(records, today),
    }
}

/// Evaluates a request's predicates together: every count must hold, and all
/// field tests must hold on one same record. With no field tests and no counts,
/// the question is whether the subject has any record at all.
pub fn evaluate_all<R: Record>(
    predicates: &[Predicate],
    records: &[R],
    today: Date,
) -> Result<Outcome, EvalError> {
    let mut tests = Vec::new();
    let mut counts_hold = true;
    for p in predicates {
        match p {
            Predicate::Field(t) => {
                t.check_shape()?;
                tests.push(t.clone());
            }
            Predicate::Count(c) => counts_hold &= c.evaluate(records, today)?,
        }
    }
    let needs_record = !tests.is_empty() || predicates.is_empty();
    if !counts_hold {
        return Ok(Outcome {
            holds: false,
            record: None,
        });
    }
    if !needs_record {
        return Ok(Outcome {
            holds: true,
            record: None,
        });
    }
    for (i, r) in records.iter().enumerate() {
        if passes_all(&tests, r, today)? {
            return Ok(Outcome {
                holds: true,
                record: Some(i),
            });
        }
    }
    Ok(Outcome {
        holds: false,
        record: None,
    })
}

/// Reads constant `v` as a value of `kind`: same kind as is, text as a date.
fn coerce<'v>(field: &str, v: &'v Value, kind: Kind) -> Result<Cow<'v, Value>, EvalError> {
    match (v, kind) {
        _ if v.kind() == kind => Ok(Cow::Borrowed(v)),
        (Value::Text(t), Kind::Date) => Date::parse(t)
            .map(|d| Cow::Owned(Value::Date(d)))
            .ok_or_else(|| EvalError::BadDate {
                field: field.to_owned(),
                text: t.clone(),
            }),
        _ => Err(EvalError::KindMismatch {
            field: field.to_owned(),
            record: kind,
            constant: v.kind(),
        }),
    }
}

/// The date `n` days before `today`.
pub fn days_before(today: Date, n: u32) -> Option<Date> {
    date_from_days(today.days_since_epoch() - i64::from(n))
}

/// The same month and day `n` years before `today` (29 February becomes
/// 28 February in a common year).
pub fn years_before(today: Date, n: u32) -> Option<Date> {
    let year = u16::try_from(i64::from(today.year()) - i64::from(n)).ok()?;
    Date::new(year, today.month(), today.day())
        .or_else(|| Date::new(year, today.month(), today.day() - 1))
}

/// The date of a day number (days since 1970-01-01, negative before).
pub fn date_from_days(days: i64) -> Option<Date> {
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    Date::new(
        u16::try_from(year).ok()?,
        u8::try_from(month).ok()?,
        u8::try_from(day).ok()?,
    )
}

impl fmt::Display for FieldTest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.field, self.op)?;
        match &self.operand {
            Operand::None => Ok(()),
            Operand::Value(v) => write!(f, " {v:?}"),
            Operand::List(vs) => write!(f, " {vs:?}"),
            Operand::Param(p) => write!(f, " param:{p}"),
            Operand::DaysAgo(n) => write!(f, " {n} days ago"),
            Operand::YearsAgo(n) => write!(f, " {n} years ago"),
        }
    }
}

impl fmt::Display for Predicate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Predicate::Field(t) => t.fmt(f),
            Predicate::Count(c) => {
                f.write_str("count(")?;
                for (i, t) in c.filter.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" and ")?;
                    }
                    t.fmt(f)?;
                }
                write!(f, ") {} {}", c.op, c.value)
            }
        }
    }
}

/// The written form of a predicate (flat, as in TOML).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Repr {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    field: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    count: Option<Vec<Repr>>,
    op: Op,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    value: Option<Plain>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    param: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    days_ago: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    years_ago: Option<u32>,
}

impl Repr {
    fn into_field_test(self) -> Result<FieldTest, PredicateError> {
        let field = self
            .field
            .ok_or_else(|| PredicateError::Form("a predicate needs `field` (or `count`)".into()))?;
        if self.count.is_some() {
            return Err(PredicateError::Form(format!(
                "predicate on `{field}`: a test in a count may not itself count"
            )));
        }
        let mut operands = Vec::new();
        if let Some(v) = self.value {
            operands.push(match v {
                Plain::One(v) => Operand::Value(v),
                Plain::Many(vs) => Operand::List(vs),
            });
        }
        if let Some(p) = self.param {
            operands.push(Operand::Param(p));
        }
        if let Some(n) = self.days_ago {
            operands.push(Operand::DaysAgo(n));
        }
        if let Some(n) = self.years_ago {
            operands.push(Operand::YearsAgo(n));
        }
        if operands.len() > 1 {
            return Err(PredicateError::Form(format!(
                "predicate on `{field}`: give at most one of `value`, `param`, `days_ago`, `years_ago`"
            )));
        }
        FieldTest::new(field, self.op, operands.pop().unwrap_or(Operand::None))
    }
}

impl TryFrom<Repr> for Predicate {
    type Error = PredicateError;
    fn try_from(r: Repr) -> Result<Self, PredicateError> {
        let Some(filter) = r.count else {
            return r.into_field_test().map(Predicate::Field);
        };
        if r.field.is_some() || r.param.is_some() || r.days_ago.is_some() || r.years_ago.is_some() {
            return Err(PredicateError::Form(
                "a count takes `count`, `op` and an integer `value` only".into(),
            ));
        }
        let value = match r.value {
            Some(Plain::One(Value::Int(n))) => n,
            _ => {
                return Err(PredicateError::Form(
                    "a count needs an integer `value` to compare with".into(),
                ));
            }
        };
        let filter = filter
            .into_iter()
            .map(Repr::into_field_test)
            .collect::<Result<Vec<_>, _>>()?;
        Predicate::count(filter, r.op, value)
    }
}

impl From<FieldTest> for Repr {
    fn from(t: FieldTest) -> Repr {
        let mut r = Repr {
            field: Some(t.field),
            count: None,
            op: t.op,
            value: None,
            param: None,
            days_ago: None,
            years_ago: None,
        };
        match t.operand {
            Operand::None => {}
            Operand::Value(v) => r.value = Some(Plain::One(v)),
            Operand::List(vs) => r.value = Some(Plain::Many(vs)),
            Operand::Param(p) => r.param = Some(p),
            Operand::DaysAgo(n) => r.days_ago = Some(n),
            Operand::YearsAgo(n) => r.years_ago = Some(n),
        }
        r
    }
}

impl From<Predicate> for Repr {
    fn from(p: Predicate) -> Repr {
        match p {
            Predicate::Field(t) => t.into(),
            Predicate::Count(c) => Repr {
                field: None,
                count: Some(c.filter.into_iter().map(Repr::from).collect()),
                op: c.op,
                value: Some(Plain::One(Value::Int(c.value))),
                param: None,
                days_ago: None,
                years_ago: None,
            },
        }
    }
}
