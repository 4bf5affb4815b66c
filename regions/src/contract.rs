//! Contract evaluation: may this requester ask this question now?
//!
//! [`evaluate`] checks a [`Request`] against a [`Contract`] and returns
//! [`Decision::Allow`] or [`Decision::Deny`] with the [`DenyRule`] that denied
//! it. Rules are checked in a fixed order (version, validity period,
//! requester, provider, record type, purpose, disclosure, the fields a disclosure requires, fields, operators,
//! counts, predicate form, budget) and the first that fails is reported, so the
//! same request always gets the same answer. Each rule has a stable
//! [`DenyRule::code`] for logs, APIs and signed denials.
//!
//! Evaluation is pure: the date and the requester's prior query count come in
//! with the request.

use proofs::Date;
use thiserror::Error;

use crate::model::{Contract, Disclosure, RecordType, Registry};
use crate::predicate::{Op, Operand, Predicate};

/// A request as the contract sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request<'a> {
    /// The contract version the requester signed against.
    pub contract_version: u32,
    /// Requesting member id.
    pub requester: &'a str,
    /// Provider department id.
    pub provider: &'a str,
    /// Record type asked about.
    pub record_type: &'a str,
    /// Predicates (parameters already bound).
    pub predicates: &'a [Predicate],
    /// Fields whose values are asked for (empty: yes/no only).
    pub disclose: &'a [String],
    /// Stated purpose.
    pub purpose: &'a str,
    /// The provider's date at evaluation.
    pub today: Date,
    /// Queries this requester already made about this subject under this
    /// contract in the budget window (the last `per_days` days up to today).
    pub prior_queries: u32,
}

/// The outcome of contract evaluation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The request may be answered.
    Allow,
    /// The request is refused.
    Deny {
        /// The rule that refused it.
        rule: DenyRule,
    },
}

impl Decision {
    /// Whether the request may be answered.
    pub fn is_allowed(&self) -> bool {
        matches!(self, Decision::Allow)
    }
    /// The rule that denied, if any.
    pub fn deny_rule(&self) -> Option<&DenyRule> {
        match self {
            Decision::Allow => None,
            Decision::Deny { rule } => Some(rule),
        }
    }
}

impl From<Result<(), DenyRule>> for Decision {
    fn from(r: Result<(), DenyRule>) -> Decision {
        match r {
            Ok(()) => Decision::Allow,
            Err(rule) => Decision::Deny { rule },
        }
    }
}

/// Which contract rule denied a request, with what it expected and found.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DenyRule {
    /// No contract with that id.
    #[error("no contract `{contract}`")]
    UnknownContract {
        /// The id asked for.
        contract: String,
    },
    /// The request names another version of the contract.
    #[error("contract is at version {expected}, request names version {found}")]
    VersionMismatch {
        /// The registry's version.
        expected: u32,
        /// The request's.
        found: u32,
    },
    /// Today is outside the validity period.
    #[error("contract applies from {valid_from} to {valid_until}; today is {today}")]
    OutsideValidity {
        /// First valid day.
        valid_from: Date,
        /// Last valid day.
        valid_until: Date,
        /// The evaluation date.
        today: Date,
    },
    /// The requester is not a party to the contract.
    #[error("`{requester}` is not a requester of this contract")]
    WrongRequester {
        /// The requester.
        requester: String,
    },
    /// The provider is not a party to the contract.
    #[error("`{provider}` is not a provider of this contract")]
    WrongProvider {
        /// The provider.
        provider: String,
    },
    /// The contract covers another record type.
    #[error("contract covers record type `{expected}`, not `{found}`")]
    WrongRecordType {
        /// The contract's record type.
        expected: String,
        /// The request's.
        found: String,
    },
    /// The stated purpose is not the contract's.
    #[error("purpose `{found}` is not the contract's purpose `{expected}`")]
    PurposeMismatch {
        /// The contract's purpose.
        expected: String,
        /// The request's.
        found: String,
    },
    /// A value was asked for under a yes/no contract.
    #[error("contract allows yes/no answers only; the value of `{field}` was asked for")]
    DisclosureNotAllowed {
        /// The first field asked for.
        field: String,
    },
    /// A predicate or disclosure names a field the contract does not allow.
    #[error("field `{field}` is not allowed by the contract")]
    FieldNotAllowed {
        /// The field.
        field: String,
    },
    /// A predicate uses an operator the contract does not allow.
    #[error("operator `{op}` (on `{field}`) is not allowed by the contract")]
    OperatorNotAllowed {
        /// The field (or `count`).
        field: String,
        /// The operator.
        op: Op,
    },
    /// A count predicate under a contract that allows none.
    #[error("count predicates are not allowed by the contract")]
    CountNotAllowed,
    /// A predicate that does not fit the record type (kinds, operators, form).
    #[error("malformed predicate `{predicate}`: {reason}")]
    MalformedPredicate {
        /// The predicate, as text.
        predicate: String,
        /// Why.
        reason: String,
    },
    /// Values were asked for without the `eq` test on a field the contract
    /// requires the requester to know first (`disclose_requires`).
    #[error(
        "values are disclosed only to a request that tests `{field}` with eq against a constant"
    )]
    DisclosureUnguarded {
        /// The first required field not tested.
        field: String,
    },
    /// The requester's budget for this subject is spent.
    #[error("query budget of {queries} per {per_days} days for this subject is spent")]
    BudgetExhausted {
        /// Queries allowed.
        queries: u32,
        /// Window in days.
        per_days: u32,
    },
}

impl DenyRule {
    /// A stable code for the rule, e.g. `"contract.field_not_allowed"`.
    pub fn code(&self) -> &'static str {
        match self {
            DenyRule::UnknownContract { .. } => "contract.unknown",
            DenyRule::VersionMismatch { .. } => "contract.version_mismatch",
            DenyRule::OutsideValidity { .. } => "contract.outside_validity",
            DenyRule::WrongRequester { .. } => "contract.wrong_requester",
            DenyRule::WrongProvider { .. } => "contract.wrong_provider",
            DenyRule::WrongRecordType { .. } => "contract.wrong_record_type",
            DenyRule::PurposeMismatch { .. } => "contract.purpose_mismatch",
            DenyRule::DisclosureNotAllowed { .. } => "contract.disclosure_not_allowed",
            DenyRule::FieldNotAllowed { .. } => "contract.field_not_allowed",
            DenyRule::OperatorNotAllowed { .. } => "contract.operator_not_allowed",
            DenyRule::CountNotAllowed => "contract.count_not_allowed",
            DenyRule::MalformedPredicate { .. } => "contract.malformed_predicate",
            DenyRule::DisclosureUnguarded { .. } => "contract.disclosure_unguarded",
            DenyRule::BudgetExhausted { .. } => "contract.budget_exhausted",
        }
    }
}

/// Evaluates `request` against `contract`, whose record type is `record_type`.
pub fn evaluate(contract: &Contract, record_type: &RecordType, request: &Request<'_>) -> Decision {
    check(contract, record_type, request).into()
}

fn check(
    contract: &Contract,
    record_type: &RecordType,
    request: &Request<'_>,
) -> Result<(), DenyRule> {
    if request.contract_version != contract.version {
        return Err(DenyRule::VersionMismatch {
            expected: contract.version,
            found: request.contract_version,
        });
    }
    if request.today < contract.valid_from || request.today > contract.valid_until {
        return Err(DenyRule::OutsideValidity {
            valid_from: contract.valid_from,
            valid_until: contract.valid_until,
            today: request.today,
        });
    }
    if !contract.requesters.iter().any(|r| r == request.requester) {
        return Err(DenyRule::WrongRequester {
            requester: request.requester.to_owned(),
        });
    }
    if !contract.providers.iter().any(|p| p == request.provider) {
        return Err(DenyRule::WrongProvider {
            provider: request.provider.to_owned(),
        });
    }
    if request.record_type != contract.record_type || record_type.id != contract.record_type {
        return Err(DenyRule::WrongRecordType {
            expected: contract.record_type.clone(),
            found: request.record_type.to_owned(),
        });
    }
    if request.purpose != contract.purpose {
        return Err(DenyRule::PurposeMismatch {
            expected: contract.purpose.clone(),
            found: request.purpose.to_owned(),
        });
    }
    check_question(contract, record_type, request.predicates, request.disclose)?;
    if let Some(p) = request.predicates.iter().find(|p| !p.params().is_empty()) {
        return Err(DenyRule::MalformedPredicate {
            predicate: p.to_string(),
            reason: "parameters must be bound before a request is made".into(),
        });
    }
    if request.prior_queries >= contract.budget.queries {
        return Err(DenyRule::BudgetExhausted {
            queries: contract.budget.queries,
            per_days: contract.budget.per_days,
        });
    }
    Ok(())
}

/// Checks only what is asked: disclosure, fields, operators, counts and the
/// predicates' fit to the record type. Unbound parameters pass (bundle
/// definitions are checked with this before any application binds them).
pub fn check_question(
    contract: &Contract,
    record_type: &RecordType,
    predicates: &[Predicate],
    disclose: &[String],
) -> Result<(), DenyRule> {
    let allowed = |field: &str| contract.fields.iter().any(|f| f == field);
    if let (Disclosure::Match, Some(field)) = (contract.disclosure, disclose.first()) {
        return Err(DenyRule::DisclosureNotAllowed {
            field: field.clone(),
        });
    }
    if let Some(field) = disclose.iter().find(|f| !allowed(f)) {
        return Err(DenyRule::FieldNotAllowed {
            field: field.clone(),
        });
    }
    if !disclose.is_empty() {
        let tested = |field: &str| {
            predicates.iter().any(|p| {
                matches!(p, Predicate::Field(t) if t.field == field && t.op == Op::Eq
                    && matches!(t.operand, Operand::Value(_) | Operand::Param(_)))
            })
        };
        let missing = if contract.disclose_requires.is_empty() {
            // A value contract naming no guard is refused by validation; fail closed anyway.
            Some(String::from("(disclose_requires is empty)"))
        } else {
            contract
                .disclose_requires
                .iter()
                .find(|f| !tested(f))
                .cloned()
        };
        if let Some(field) = missing {
            return Err(DenyRule::DisclosureUnguarded { field });
        }
    }
    for p in predicates {
        for t in p.field_tests() {
            if !allowed(&t.field) {
                return Err(DenyRule::FieldNotAllowed {
                    field: t.field.clone(),
                });
            }
            if !contract.operators.contains(&t.op) {
                return Err(DenyRule::OperatorNotAllowed {
                    field: t.field.clone(),
                    op: t.op,
                });
            }
        }
        if let Predicate::Count(c) = p {
            if !contract.count {
                return Err(DenyRule::CountNotAllowed);
            }
            if !contract.operators.contains(&c.op) {
                return Err(DenyRule::OperatorNotAllowed {
                    field: "count".into(),
                    op: c.op,
                });
            }
        }
        p.check(&|f| record_type.kind_of(f))
            .map_err(|e| DenyRule::MalformedPredicate {
                predicate: p.to_string(),
                reason: e.to_string(),
            })?;
    }
    Ok(())
}

impl Registry {
    /// Evaluates `request` against the contract with id `contract_id`.
    pub fn evaluate_request(&self, contract_id: &str, request: &Request<'_>) -> Decision {
        let Some(contract) = self.contract(contract_id) else {
            return Decision::Deny {
                rule: DenyRule::UnknownContract {
                    contract: contract_id.to_owned(),
                },
            };
        };
        match self.record_type(&contract.record_type) {
            Some(rt) => evaluate(contract, rt, request),
            None => Decision::Deny {
                rule: DenyRule::WrongRecordType {
                    expected: contract.record_type.clone(),
                    found: request.record_type.to_owned(),
                },
            },
        }
    }
}
