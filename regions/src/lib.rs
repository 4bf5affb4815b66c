//! # regions — Tongban's region registry
//!
//! The region registry is a TOML file whose SHA-256 every party pins: it is the
//! region's only root of trust. This crate reads it, validates it, turns it
//! into `proofs`' trust roots, and evaluates the data-sharing contracts and
//! predicates it defines. It is pure: no clock, no randomness, and no I/O
//! except [`load()`] / [`load_pinned`], which read the registry file.
//!
//! ## Map
//!
//! * [`model`] — the registry: [`Registry`], [`City`], [`Chain`], [`Gateway`],
//!   [`Hub`], [`Department`], [`Utility`], [`Centre`], [`RecordType`],
//!   [`Contract`]; lookups such as [`Registry::member`].
//! * [`bundle`] — one-stop bundles: [`Bundle`], its parameters, [`Evidence`],
//!   decision [`Rule`] ([`Rule::decide`]) and [`Service`]s; binding an
//!   application's [`Params`].
//! * [`load`](mod@load) — [`Registry::from_toml_str`], [`load()`] (registry +
//!   SHA-256 of the file), [`load_pinned`] (refuses another hash); [`LoadError`].
//! * [`validate`](mod@validate) — [`Registry::validate`] and
//!   [`Registry::problems`]; [`ValidationError`] names the entry at fault.
//! * [`roots`] — [`Registry::trust_roots`] → [`proofs::TrustRoots`].
//! * [`predicate`] — the predicate language: [`Predicate`], [`Op`],
//!   [`predicate::evaluate`], [`predicate::evaluate_all`]; [`EvalError`].
//! * [`contract`] — [`contract::evaluate`] / [`Registry::evaluate_request`]:
//!   a [`Request`] → [`Decision`], denials naming their [`DenyRule`] with a
//!   stable [`DenyRule::code`].
//! * [`test_keys`] — the label-derived test keys the example registry uses.
//!
//! ## Typical use
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let pinned: proofs::Hash = "…".parse()?;
//! let registry = regions::load_pinned("region.toml", pinned)?;
//! registry.validate()?;
//! let roots = registry.trust_roots(pinned)?;
//! # let _ = roots; Ok(()) }
//! ```
//!
//! The example registry, `regions/examples/yangtze-delta.toml`, shows every
//! part of the format.

pub mod application;
pub mod bundle;
pub mod contract;
pub mod evidence;
pub mod load;
pub mod model;
pub mod predicate;
pub mod roots;
mod scalar;
pub mod test_keys;
pub mod validate;

pub use bundle::{
    BindError, Bundle, CityRef, Evidence, Param, ParamKind, Params, Rule, Service, ServiceTarget,
    Source,
};
pub use contract::{Decision, DenyRule, Request};
pub use load::{LoadError, MAX_REGISTRY_BYTES, load, load_pinned};
pub use model::{
    Budget, Centre, Chain, City, Contract, Department, Disclosure, FieldDef, Gateway, Hub,
    MemberRef, RecordType, Region, Registry, Utility, UtilityKind, Volume,
};
pub use predicate::{
    CountTest, EvalError, FieldTest, Op, Operand, Outcome, Predicate, PredicateError, Record,
};
pub use validate::ValidationError;
