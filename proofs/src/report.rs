//! Verification reports: every fact checked, and for each failure the expected
//! and the found value. Verifiers never answer with a bare `bool`.

use core::fmt;

use serde::Serialize;

/// What became of one check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "status")]
pub enum Outcome {
    /// The fact holds; `detail` says what was established.
    Holds {
        /// What was established.
        detail: String,
    },
    /// The fact does not hold.
    Fails {
        /// Stable code, e.g. `certificate.below_threshold`.
        code: &'static str,
        /// Human explanation.
        message: String,
        /// What a valid input would have.
        expected: String,
        /// What this input has.
        found: String,
    },
    /// Not checked, because a fact it depends on failed. Never counts as verified.
    Skipped {
        /// Which earlier failure prevented it.
        because: String,
    },
}

/// One fact about one part of the input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Fact {
    /// Which part, e.g. `bundle[2]` or `disclosure[0]`.
    pub subject: String,
    /// Which check, e.g. `header.certificate`.
    pub check: &'static str,
    /// The outcome.
    #[serde(flatten)]
    pub outcome: Outcome,
}

/// The facts a verifier checked, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    /// The facts.
    pub facts: Vec<Fact>,
}

impl Report {
    /// An empty report.
    pub fn new() -> Self {
        Self::default()
    }
    /// Records a fact that holds.
    pub fn holds(&mut self, subject: &str, check: &'static str, detail: impl Into<String>) {
        self.facts.push(Fact {
            subject: subject.to_owned(),
            check,
            outcome: Outcome::Holds {
                detail: detail.into(),
            },
        });
    }
    /// Records a failure.
    pub fn fails(
        &mut self,
        subject: &str,
        check: &'static str,
        code: &'static str,
        message: impl Into<String>,
        expected: impl Into<String>,
        found: impl Into<String>,
    ) {
        self.facts.push(Fact {
            subject: subject.to_owned(),
            check,
            outcome: Outcome::Fails {
                code,
                message: message.into(),
                expected: expected.into(),
                found: found.into(),
            },
        });
    }
    /// Records a check not made because of an earlier failure.
    pub fn skipped(&mut self, subject: &str, check: &'static str, because: impl Into<String>) {
        self.facts.push(Fact {
            subject: subject.to_owned(),
            check,
            outcome: Outcome::Skipped {
                because: because.into(),
            },
        });
    }
    /// True only if there is at least one fact and every fact holds.
    pub fn ok(&self) -> bool {
        !self.facts.is_empty()
            && self
                .facts
                .iter()
                .all(|f| matches!(f.outcome, Outcome::Holds { .. }))
    }
    /// The failed facts.
    pub fn failures(&self) -> impl Iterator<Item = &Fact> {
        self.facts
            .iter()
            .filter(|f| matches!(f.outcome, Outcome::Fails { .. }))
    }
    /// The code of the first failure, if any (handy in tests and logs).
    pub fn first_failure_code(&self) -> Option<&'static str> {
        self.facts.iter().find_map(|f| match f.outcome {
            Outcome::Fails { code, .. } => Some(code),
            _ => None,
        })
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for fact in &self.facts {
            match &fact.outcome {
                Outcome::Holds { detail } => {
                    writeln!(f, "ok    {} {}: {detail}", fact.subject, fact.check)?
                }
                Outcome::Fails {
                    code,
                    message,
                    expected,
                    found,
                } => writeln!(
                    f,
                    "FAIL  {} {} [{code}]: {message}\n        expected: {expected}\n        found:    {found}",
                    fact.subject, fact.check
                )?,
                Outcome::Skipped { because } => {
                    writeln!(f, "skip  {} {}: {because}", fact.subject, fact.check)?
                }
            }
        }
        Ok(())
    }
}
