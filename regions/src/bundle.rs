//! One-stop bundle definitions: the evidence an application needs, the rule
//! that decides it, and the services ordered on approval.
//!
//! A bundle is written once for the region; an application fills in its
//! parameters ([`Params`]). Providers and recipients may sit in a fixed city or
//! in a city given by a parameter ([`CityRef`]: `"nanjing"` or
//! `"param:property_city"`). Service fields say exactly what each recipient
//! receives, each taken from a parameter or from a value an evidence request
//! disclosed ([`Source`]: `"param:buyer_name"`, `"evidence:seller-title.address"`).
//!
//! Everything here is pure; [`Rule::decide`] works on partial results, so an
//! engine can decide as soon as enough evidence is in.

use std::collections::BTreeMap;
use std::fmt;

use proofs::{Kind, Value};
use serde::de::{self, MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use thiserror::Error;

use crate::model::{Department, MemberRef, Registry, UtilityKind};
use crate::predicate::{Predicate, PredicateError};

/// An application's parameter values, by parameter id.
pub type Params = BTreeMap<String, Value>;

/// A bundle: a one-stop service spanning departments, cities and utilities.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bundle {
    /// Id, e.g. `house-transfer`.
    pub id: String,
    /// Display name, with the Chinese term.
    pub name: String,
    /// The application's parameters.
    #[serde(default)]
    pub params: Vec<Param>,
    /// The evidence to match.
    #[serde(default)]
    pub evidence: Vec<Evidence>,
    /// How the evidence decides the application.
    pub rule: Rule,
    /// Services ordered on approval.
    #[serde(default)]
    pub services: Vec<Service>,
}

/// What kind of value a parameter takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ParamKind {
    /// Text.
    Text,
    /// Integer.
    Int,
    /// Boolean.
    Bool,
    /// Date.
    Date,
    /// A city id of the registry (a text value).
    City,
}

impl ParamKind {
    /// The kind of value the parameter holds (a city is text).
    pub fn value_kind(self) -> Kind {
        match self {
            ParamKind::Text | ParamKind::City => Kind::Text,
            ParamKind::Int => Kind::Int,
            ParamKind::Bool => Kind::Bool,
            ParamKind::Date => Kind::Date,
        }
    }
}

impl fmt::Display for ParamKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParamKind::City => f.write_str("city"),
            k => k.value_kind().fmt(f),
        }
    }
}

/// An application parameter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Param {
    /// Id, e.g. `buyer_id`.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Its kind.
    pub kind: ParamKind,
}

/// A city: fixed, or the value of a city parameter.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CityRef {
    /// This city id.
    Fixed(String),
    /// The city named by this parameter (of kind `city`).
    Param(String),
}

/// One piece of evidence: a contract request to a department about a subject.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Evidence {
    /// Id within the bundle, used by the rule and by service sources.
    pub id: String,
    /// Display name.
    pub name: String,
    /// The contract the request is made under.
    pub contract: String,
    /// The provider's local department id (`real-estate` for `<city>.real-estate`).
    pub department: String,
    /// The provider's city.
    pub city: CityRef,
    /// The parameter (of kind text) holding the subject's identifier.
    pub subject: String,
    /// The predicates asked.
    #[serde(default)]
    pub predicates: Vec<Predicate>,
    /// Fields whose values are to be disclosed (needs a value-disclosure contract).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub disclose: Vec<String>,
}

/// The decision rule: a boolean expression over evidence ids.
///
/// Written as an evidence id (`"deed-tax"`) or a one-key table:
/// `{ all = [...] }`, `{ any = [...] }`, `{ not = ... }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rule {
    /// The evidence with this id holds.
    Evidence(String),
    /// Every sub-rule holds.
    All(Vec<Rule>),
    /// At least one sub-rule holds.
    Any(Vec<Rule>),
    /// The sub-rule does not hold.
    Not(Box<Rule>),
}

/// Who receives a service request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceTarget {
    /// The city's utility of this kind.
    Utility(UtilityKind),
    /// The city's department with this local id.
    Department(String),
}

/// A service ordered when an application is approved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "ServiceRepr", into = "ServiceRepr")]
pub struct Service {
    /// Id within the bundle.
    pub id: String,
    /// Display name.
    pub name: String,
    /// The recipient.
    pub target: ServiceTarget,
    /// The recipient's city.
    pub city: CityRef,
    /// Exactly the fields the recipient receives.
    pub fields: Vec<ServiceField>,
}

/// One field of a service request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceField {
    /// The name the recipient sees.
    pub name: String,
    /// Where the value comes from.
    pub from: Source,
}

/// Where a service field's value comes from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Source {
    /// A parameter of the application (`"param:buyer_name"`).
    Param(String),
    /// A value disclosed by a piece of evidence (`"evidence:seller-title.address"`).
    Evidence {
        /// Evidence id.
        evidence: String,
        /// Disclosed field.
        field: String,
    },
}

/// Why an application's parameters cannot be applied to a bundle.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BindError {
    /// A declared parameter has no value.
    #[error("parameter `{0}` is missing")]
    MissingParam(String),
    /// A value for a parameter the bundle does not declare.
    #[error("unknown parameter `{0}`")]
    UnknownParam(String),
    /// A value of the wrong kind.
    #[error("parameter `{param}` must be {expected}, found {found}")]
    ParamKind {
        /// Parameter id.
        param: String,
        /// Declared kind.
        expected: ParamKind,
        /// Kind given.
        found: Kind,
    },
    /// A city parameter naming no city of the registry.
    #[error("parameter `{param}`: unknown city `{city}`")]
    UnknownCity {
        /// Parameter id.
        param: String,
        /// Value given.
        city: String,
    },
    /// The city has no such department.
    #[error("city `{city}` has no department `{department}`")]
    NoDepartment {
        /// City id.
        city: String,
        /// Local department id.
        department: String,
    },
    /// The city has no utility of that kind.
    #[error("city `{city}` has no {kind} utility")]
    NoUtility {
        /// City id.
        city: String,
        /// Utility kind.
        kind: UtilityKind,
    },
    /// A service field names a value that was not disclosed.
    #[error("evidence `{evidence}` disclosed no value for `{field}`")]
    NotDisclosed {
        /// Evidence id.
        evidence: String,
        /// Field.
        field: String,
    },
    /// A predicate could not be bound.
    #[error(transparent)]
    Predicate(#[from] PredicateError),
}

impl Bundle {
    /// The parameter with this id.
    pub fn param(&self, id: &str) -> Option<&Param> {
        self.params.iter().find(|p| p.id == id)
    }
    /// The evidence with this id.
    pub fn evidence(&self, id: &str) -> Option<&Evidence> {
        self.evidence.iter().find(|e| e.id == id)
    }
    /// The service with this id.
    pub fn service(&self, id: &str) -> Option<&Service> {
        self.services.iter().find(|s| s.id == id)
    }

    /// Checks an application's parameters: every declared one present with the
    /// right kind, no others, and city parameters naming cities of `registry`.
    pub fn check_params(&self, registry: &Registry, params: &Params) -> Result<(), BindError> {
        for p in &self.params {
            let v = params
                .get(&p.id)
                .ok_or_else(|| BindError::MissingParam(p.id.clone()))?;
            if v.kind() != p.kind.value_kind() {
                return Err(BindError::ParamKind {
                    param: p.id.clone(),
                    expected: p.kind,
                    found: v.kind(),
                });
            }
            if let (ParamKind::City, Value::Text(city)) = (p.kind, v)
                && registry.city(city).is_none()
            {
                return Err(BindError::UnknownCity {
                    param: p.id.clone(),
                    city: city.clone(),
                });
            }
        }
        match params.keys().find(|k| self.param(k).is_none()) {
            Some(extra) => Err(BindError::UnknownParam(extra.clone())),
            None => Ok(()),
        }
    }
}

impl CityRef {
    /// The city id, reading a parameter if needed.
    pub fn resolve<'a>(&'a self, params: &'a Params) -> Result<&'a str, BindError> {
        match self {
            CityRef::Fixed(c) => Ok(c),
            CityRef::Param(p) => match params.get(p) {
                Some(Value::Text(c)) => Ok(c),
                Some(v) => Err(BindError::ParamKind {
                    param: p.clone(),
                    expected: ParamKind::City,
                    found: v.kind(),
                }),
                None => Err(BindError::MissingParam(p.clone())),
            },
        }
    }
}

impl Evidence {
    /// The subject's identifier, from its parameter.
    pub fn subject<'p>(&self, params: &'p Params) -> Result<&'p str, BindError> {
        match params.get(&self.subject) {
            Some(Value::Text(s)) => Ok(s),
            Some(v) => Err(BindError::ParamKind {
                param: self.subject.clone(),
                expected: ParamKind::Text,
                found: v.kind(),
            }),
            None => Err(BindError::MissingParam(self.subject.clone())),
        }
    }
    /// The predicates with their parameters replaced by the application's values.
    pub fn bind(&self, params: &Params) -> Result<Vec<Predicate>, BindError> {
        let lookup = |p: &str| params.get(p).cloned();
        self.predicates
            .iter()
            .map(|p| p.bind(&lookup).map_err(BindError::from))
            .collect()
    }
}

impl Service {
    /// The fields the recipient receives, in order: parameters from `params`,
    /// evidence values from `disclosed(evidence id, field)`.
    pub fn payload(
        &self,
        params: &Params,
        disclosed: &dyn Fn(&str, &str) -> Option<Value>,
    ) -> Result<Vec<(String, Value)>, BindError> {
        self.fields
            .iter()
            .map(|f| {
                let v = match &f.from {
                    Source::Param(p) => params
                        .get(p)
                        .cloned()
                        .ok_or_else(|| BindError::MissingParam(p.clone()))?,
                    Source::Evidence { evidence, field } => {
                        disclosed(evidence, field).ok_or_else(|| BindError::NotDisclosed {
                            evidence: evidence.clone(),
                            field: field.clone(),
                        })?
                    }
                };
                Ok((f.name.clone(), v))
            })
            .collect()
    }
}

impl Registry {
    /// The department an evidence request goes to, for an application's parameters.
    pub fn evidence_provider(
        &self,
        evidence: &Evidence,
        params: &Params,
    ) -> Result<&Department, BindError> {
        let city_id = evidence.city.resolve(params)?;
        let no_department = || BindError::NoDepartment {
            city: city_id.to_owned(),
            department: evidence.department.clone(),
        };
        self.city(city_id)
            .ok_or_else(no_department)?
            .department(&evidence.department)
            .ok_or_else(no_department)
    }

    /// The member a service request goes to, for an application's parameters.
    pub fn service_recipient(
        &self,
        service: &Service,
        params: &Params,
    ) -> Result<MemberRef<'_>, BindError> {
        let city_id = service.city.resolve(params)?;
        let city = self.city(city_id);
        match &service.target {
            ServiceTarget::Utility(kind) => city
                .and_then(|c| c.utility(*kind).map(|u| MemberRef::Utility(c, u)))
                .ok_or_else(|| BindError::NoUtility {
                    city: city_id.to_owned(),
                    kind: *kind,
                }),
            ServiceTarget::Department(local) => city
                .and_then(|c| c.department(local).map(|d| MemberRef::Department(c, d)))
                .ok_or_else(|| BindError::NoDepartment {
                    city: city_id.to_owned(),
                    department: local.clone(),
                }),
        }
    }
}

impl Rule {
    /// Decides on what is known so far (three-valued): `known(id)` is the
    /// outcome of an evidence, or `None` while it is pending. Returns `None`
    /// while the outcome still depends on pending evidence.
    pub fn decide(&self, known: &dyn Fn(&str) -> Option<bool>) -> Option<bool> {
        match self {
            Rule::Evidence(id) => known(id),
            Rule::All(rules) => {
                let mut pending = false;
                for r in rules {
                    match r.decide(known) {
                        Some(false) => return Some(false),
                        Some(true) => {}
                        None => pending = true,
                    }
                }
                (!pending).then_some(true)
            }
            Rule::Any(rules) => {
                let mut pending = false;
                for r in rules {
                    match r.decide(known) {
                        Some(true) => return Some(true),
                        Some(false) => {}
                        None => pending = true,
                    }
                }
                (!pending).then_some(false)
            }
            Rule::Not(r) => r.decide(known).map(|b| !b),
        }
    }

    /// Every evidence id the rule names, in order of appearance.
    pub fn evidence_ids(&self) -> Vec<&str> {
        let mut out = Vec::new();
        self.collect_ids(&mut out);
        out
    }

    fn collect_ids<'a>(&'a self, out: &mut Vec<&'a str>) {
        match self {
            Rule::Evidence(id) => out.push(id),
            Rule::All(rs) | Rule::Any(rs) => rs.iter().for_each(|r| r.collect_ids(out)),
            Rule::Not(r) => r.collect_ids(out),
        }
    }
}

impl Serialize for Rule {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = match self {
            Rule::Evidence(id) => return s.serialize_str(id),
            _ => s.serialize_map(Some(1))?,
        };
        match self {
            Rule::All(rs) => map.serialize_entry("all", rs)?,
            Rule::Any(rs) => map.serialize_entry("any", rs)?,
            Rule::Not(r) => map.serialize_entry("not", r)?,
            Rule::Evidence(_) => {}
        }
        map.end()
    }
}

struct RuleVisitor;

impl<'de> Visitor<'de> for RuleVisitor {
    type Value = Rule;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an evidence id, or a table with one key `all`, `any` or `not`")
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<Rule, E> {
        Ok(Rule::Evidence(s.to_owned()))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Rule, A::Error> {
        let key: String = map.next_key()?.ok_or_else(|| {
            de::Error::custom("an empty table is not a rule; use `all`, `any` or `not`")
        })?;
        let rule = match key.as_str() {
            "all" => Rule::All(map.next_value()?),
            "any" => Rule::Any(map.next_value()?),
            "not" => Rule::Not(Box::new(map.next_value()?)),
            other => return Err(de::Error::unknown_field(other, &["all", "any", "not"])),
        };
        if let Some(extra) = map.next_key::<String>()? {
            return Err(de::Error::custom(format!(
                "a rule table has exactly one key; `{extra}` follows `{key}`"
            )));
        }
        Ok(rule)
    }
}

impl<'de> Deserialize<'de> for Rule {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(RuleVisitor)
    }
}

const PARAM_PREFIX: &str = "param:";
const EVIDENCE_PREFIX: &str = "evidence:";

impl fmt::Display for CityRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CityRef::Fixed(c) => f.write_str(c),
            CityRef::Param(p) => write!(f, "{PARAM_PREFIX}{p}"),
        }
    }
}

impl From<&str> for CityRef {
    fn from(s: &str) -> CityRef {
        match s.strip_prefix(PARAM_PREFIX) {
            Some(p) => CityRef::Param(p.to_owned()),
            None => CityRef::Fixed(s.to_owned()),
        }
    }
}

impl Serialize for CityRef {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for CityRef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Ok(CityRef::from(&*s))
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Param(p) => write!(f, "{PARAM_PREFIX}{p}"),
            Source::Evidence { evidence, field } => {
                write!(f, "{EVIDENCE_PREFIX}{evidence}.{field}")
            }
        }
    }
}

impl std::str::FromStr for Source {
    type Err = String;
    fn from_str(s: &str) -> Result<Source, String> {
        if let Some(p) = s.strip_prefix(PARAM_PREFIX) {
            return Ok(Source::Param(p.to_owned()));
        }
        if let Some((evidence, field)) = s
            .strip_prefix(EVIDENCE_PREFIX)
            .and_then(|r| r.split_once('.'))
        {
            return Ok(Source::Evidence {
                evidence: evidence.to_owned(),
                field: field.to_owned(),
            });
        }
        Err(format!(
            "`{s}` is not a source; write `param:<parameter>` or `evidence:<evidence>.<field>`"
        ))
    }
}

impl Serialize for Source {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Source {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(de::Error::custom)
    }
}

/// The written form of a service: `utility = "gas"` or `department = "tax"`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServiceRepr {
    id: String,
    name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    utility: Option<UtilityKind>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    department: Option<String>,
    city: CityRef,
    fields: Vec<ServiceField>,
}

impl TryFrom<ServiceRepr> for Service {
    type Error = String;
    fn try_from(r: ServiceRepr) -> Result<Service, String> {
        let target = match (r.utility, r.department) {
            (Some(kind), None) => ServiceTarget::Utility(kind),
            (None, Some(d)) => ServiceTarget::Department(d),
            _ => {
                return Err(format!(
                    "service `{}`: give exactly one of `utility` and `department`",
                    r.id
                ));
            }
        };
        Ok(Service {
            id: r.id,
            name: r.name,
            target,
            city: r.city,
            fields: r.fields,
        })
    }
}

impl From<Service> for ServiceRepr {
    fn from(s: Service) -> ServiceRepr {
        let (utility, department) = match s.target {
            ServiceTarget::Utility(k) => (Some(k), None),
            ServiceTarget::Department(d) => (None, Some(d)),
        };
        ServiceRepr {
            id: s.id,
            name: s.name,
            utility,
            department,
            city: s.city,
            fields: s.fields,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(text: &str) -> Result<Rule, toml::de::Error> {
        #[derive(Deserialize)]
        struct Doc {
            rule: Rule,
        }
        toml::from_str::<Doc>(&format!("rule = {text}")).map(|d| d.rule)
    }

    #[test]
    fn rules_parse_from_their_written_form() {
        let r = rule(r#"{ all = ["a", { any = ["b", { not = "c" }] }] }"#).unwrap();
        let expected = Rule::All(vec![
            Rule::Evidence("a".into()),
            Rule::Any(vec![
                Rule::Evidence("b".into()),
                Rule::Not(Box::new(Rule::Evidence("c".into()))),
            ]),
        ]);
        assert_eq!(r, expected);
        assert_eq!(r.evidence_ids(), ["a", "b", "c"]);
        let err = |t: &str| rule(t).unwrap_err().to_string();
        assert!(err("{}").contains("an empty table is not a rule"));
        assert!(err(r#"{ all = ["a"], any = ["b"] }"#).contains("exactly one key"));
        assert!(err(r#"{ some = ["a"] }"#).contains("unknown field `some`"));
        assert!(err("5").contains("an evidence id, or a table"));
    }

    #[test]
    fn rules_decide_three_valued() {
        let r = rule(r#"{ all = ["a", { any = ["b", { not = "c" }] }] }"#).unwrap();
        let with = |pairs: &[(&str, bool)]| {
            let m: BTreeMap<String, bool> =
                pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect();
            r.decide(&|id| m.get(id).copied())
        };
        assert_eq!(with(&[]), None);
        assert_eq!(with(&[("a", false)]), Some(false));
        assert_eq!(with(&[("a", true)]), None);
        assert_eq!(with(&[("a", true), ("b", true)]), Some(true));
        assert_eq!(with(&[("a", true), ("c", false)]), Some(true));
        assert_eq!(with(&[("a", true), ("b", false), ("c", true)]), Some(false));
        assert_eq!(with(&[("a", true), ("b", false)]), None);
        assert_eq!(Rule::All(vec![]).decide(&|_| None), Some(true));
        assert_eq!(Rule::Any(vec![]).decide(&|_| None), Some(false));
    }

    #[test]
    fn references_parse_and_print() {
        assert_eq!(
            CityRef::from("param:property_city"),
            CityRef::Param("property_city".into())
        );
        assert_eq!(CityRef::from("nanjing"), CityRef::Fixed("nanjing".into()));
        assert_eq!(CityRef::Param("x".into()).to_string(), "param:x");
        let s: Source = "evidence:seller-title.address".parse().unwrap();
        assert_eq!(
            s,
            Source::Evidence {
                evidence: "seller-title".into(),
                field: "address".into()
            }
        );
        assert_eq!(s.to_string(), "evidence:seller-title.address");
        assert_eq!(
            "param:buyer_name".parse::<Source>(),
            Ok(Source::Param("buyer_name".into()))
        );
        assert!("evidence:no-field".parse::<Source>().is_err());
        assert!("buyer_name".parse::<Source>().is_err());
    }
}
