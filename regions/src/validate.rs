//! Validation: everything a registry must satisfy beyond parsing.
//!
//! [`Registry::validate`] returns the first problem; [`Registry::problems`]
//! lists them all. Each message names the entry at fault, e.g.
//! ``city `nanjing`: chain threshold 5 exceeds its 4 endorsers`` or
//! ``department `nanjing.tax`: bad signing key: weak (small-order) key``.

use std::collections::{BTreeMap, BTreeSet};

use proofs::keys::KeyError;
use proofs::{Date, HpkePublicKey, PublicKey};
use thiserror::Error;

use crate::bundle::{Bundle, CityRef, Evidence, ParamKind, Rule, Service, ServiceTarget, Source};
use crate::contract::{DenyRule, check_question};
use crate::model::{City, Contract, Disclosure, MemberRef, Registry, local_id};
use crate::predicate::{Op, PredicateError};

/// The longest id accepted.
pub const MAX_ID_LEN: usize = 64;

/// A registry problem, naming the entry at fault.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ValidationError {
    /// An id that breaks the id syntax.
    #[error("{entry}: bad id `{id}`: {reason}")]
    BadId {
        /// The entry.
        entry: String,
        /// The id.
        id: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Two entries of one namespace with the same id.
    #[error("{what} `{id}` is defined more than once")]
    DuplicateId {
        /// The namespace, e.g. `member`, `city`, ``parameter of bundle `b` ``.
        what: String,
        /// The repeated id.
        id: String,
    },
    /// A chain threshold of 0.
    #[error("city `{city}`: chain threshold is 0; at least one endorsement must be required")]
    ThresholdZero {
        /// The city.
        city: String,
    },
    /// A chain threshold above the number of endorsers.
    #[error("city `{city}`: chain threshold {threshold} exceeds its {count} endorsers")]
    ThresholdAboveKeys {
        /// The city.
        city: String,
        /// The threshold.
        threshold: u16,
        /// Number of endorsers.
        count: usize,
    },
    /// The same endorser key listed twice in one chain.
    #[error("city `{city}`: endorser {second} repeats the key of endorser {first}")]
    DuplicateEndorser {
        /// The city.
        city: String,
        /// First position (from 1).
        first: usize,
        /// Repeating position (from 1).
        second: usize,
    },
    /// A key that is not valid hex, not a point, or weak.
    #[error("{entry}: bad {what}: {source}")]
    BadKey {
        /// The entry.
        entry: String,
        /// Which key (`signing key`, `HPKE key`, `endorser 2 key`).
        what: String,
        /// Why it was refused.
        source: KeyError,
    },
    /// One key used by two entries.
    #[error("{entry}: {what} is already used by {other}")]
    ReusedKey {
        /// The entry.
        entry: String,
        /// Which key.
        what: String,
        /// The entry that uses it first.
        other: String,
    },
    /// A reference to something the registry does not define.
    #[error("{entry}: unknown {what} `{id}`")]
    UnknownReference {
        /// The entry.
        entry: String,
        /// What kind of thing is referred to.
        what: String,
        /// The id referred to.
        id: String,
    },
    /// Two departments of one city owning one record type.
    #[error("city `{city}`: record type `{record_type}` is owned by both `{first}` and `{second}`")]
    SharedOwnership {
        /// The city.
        city: String,
        /// The record type.
        record_type: String,
        /// First owner.
        first: String,
        /// Second owner.
        second: String,
    },
    /// A provider that does not own the contract's record type.
    #[error(
        "contract `{contract}`: provider `{provider}` does not own record type `{record_type}`"
    )]
    NotOwner {
        /// The contract.
        contract: String,
        /// The provider.
        provider: String,
        /// The record type.
        record_type: String,
    },
    /// An allowed operator that applies to none of the contract's fields.
    #[error("contract `{contract}`: operator `{op}` applies to none of its fields")]
    UselessOperator {
        /// The contract.
        contract: String,
        /// The operator.
        op: Op,
    },
    /// `valid_until` before `valid_from`.
    #[error("contract `{contract}`: valid_until {until} is before valid_from {from}")]
    ValidityReversed {
        /// The contract.
        contract: String,
        /// `valid_from`.
        from: Date,
        /// `valid_until`.
        until: Date,
    },
    /// A budget of 0 queries or 0 days.
    #[error(
        "contract `{contract}`: budget must allow at least 1 query per at least 1 day, not {queries} per {per_days}"
    )]
    ZeroBudget {
        /// The contract.
        contract: String,
        /// Queries given.
        queries: u32,
        /// Days given.
        per_days: u32,
    },
    /// A volume limit of 0 a minute or 0 a day, or a minute's limit above the day's.
    #[error(
        "contract `{contract}`: volume must allow 1 to per_day requests a minute and at least 1 a day, not {per_minute} a minute and {per_day} a day"
    )]
    BadVolume {
        /// The contract.
        contract: String,
        /// Requests a minute given.
        per_minute: u32,
        /// Requests a day given.
        per_day: u32,
    },
    /// A value contract that names no field the requester must already know:
    /// it would disclose values to anyone who knows only the subject's number.
    #[error(
        "contract `{contract}`: discloses values but `disclose_requires` names no field the requester must test with eq first"
    )]
    UnguardedDisclosure {
        /// The contract.
        contract: String,
    },
    /// A predicate that does not fit its record type.
    #[error("{entry}: {source}")]
    Predicate {
        /// The entry.
        entry: String,
        /// Why.
        source: PredicateError,
    },
    /// An evidence request its own contract would deny.
    #[error("{entry}: contract `{contract}` would deny it ({}): {rule}", rule.code())]
    ContractDenies {
        /// The entry.
        entry: String,
        /// The contract.
        contract: String,
        /// The rule.
        rule: DenyRule,
    },
    /// Any other structural problem.
    #[error("{entry}: {problem}")]
    Invalid {
        /// The entry.
        entry: String,
        /// What is wrong.
        problem: String,
    },
}

impl Registry {
    /// Checks everything beyond parsing and returns the first problem found.
    pub fn validate(&self) -> Result<(), ValidationError> {
        match self.problems().into_iter().next() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Every problem found, in a stable order.
    pub fn problems(&self) -> Vec<ValidationError> {
        let mut v = Validator {
            reg: self,
            errors: Vec::new(),
        };
        v.run();
        v.errors
    }
}

struct Validator<'a> {
    reg: &'a Registry,
    errors: Vec<ValidationError>,
}

fn entry(kind: &str, id: &str) -> String {
    format!("{kind} `{id}`")
}

/// Why `id` is not a valid id (lower-case ASCII letters, digits, `-`, `_`,
/// and `.` where allowed; 1 to 64 characters, starting with a letter or digit).
fn id_problem(id: &str, dots: bool) -> Option<&'static str> {
    let first_ok = id
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    let rest_ok = id.bytes().all(|b| {
        b.is_ascii_lowercase()
            || b.is_ascii_digit()
            || b == b'-'
            || b == b'_'
            || (dots && b == b'.')
    });
    if id.is_empty() {
        Some("it is empty")
    } else if id.len() > MAX_ID_LEN {
        Some("it is longer than 64 characters")
    } else if !first_ok {
        Some("it must start with a lower-case letter or a digit")
    } else if !rest_ok && dots {
        Some("only lower-case letters, digits, `-`, `_` and `.` are allowed")
    } else if !rest_ok {
        Some("only lower-case letters, digits, `-` and `_` are allowed")
    } else {
        None
    }
}

impl Validator<'_> {
    fn push(&mut self, e: ValidationError) {
        self.errors.push(e);
    }

    fn invalid(&mut self, entry: &str, problem: impl Into<String>) {
        self.push(ValidationError::Invalid {
            entry: entry.to_owned(),
            problem: problem.into(),
        });
    }

    fn unknown(&mut self, entry: &str, what: &str, id: &str) {
        self.push(ValidationError::UnknownReference {
            entry: entry.to_owned(),
            what: what.to_owned(),
            id: id.to_owned(),
        });
    }

    fn check_id(&mut self, entry: &str, id: &str, dots: bool) {
        if let Some(reason) = id_problem(id, dots) {
            self.push(ValidationError::BadId {
                entry: entry.to_owned(),
                id: id.to_owned(),
                reason,
            });
        }
    }

    /// Reports each id that occurs more than once (once per id).
    fn unique<'s>(&mut self, what: &str, ids: impl IntoIterator<Item = &'s str>) {
        let mut seen = BTreeSet::new();
        let mut reported = BTreeSet::new();
        for id in ids {
            if !seen.insert(id) && reported.insert(id) {
                self.push(ValidationError::DuplicateId {
                    what: what.to_owned(),
                    id: id.to_owned(),
                });
            }
        }
    }

    /// Reports a list that names one item twice.
    fn no_repeats<'s>(
        &mut self,
        entry: &str,
        list: &str,
        items: impl IntoIterator<Item = &'s str>,
    ) {
        let mut seen = BTreeSet::new();
        for i in items {
            if !seen.insert(i) {
                self.invalid(entry, format!("`{list}` lists `{i}` twice"));
            }
        }
    }

    fn signing_key(&mut self, entry: &str, what: &str, hex: &str) -> Option<PublicKey> {
        PublicKey::from_hex(hex)
            .map_err(|source| {
                self.push(ValidationError::BadKey {
                    entry: entry.to_owned(),
                    what: what.to_owned(),
                    source,
                })
            })
            .ok()
    }

    fn hpke_key(&mut self, entry: &str, hex: &str) -> Option<HpkePublicKey> {
        HpkePublicKey::from_hex(hex)
            .map_err(|source| {
                self.push(ValidationError::BadKey {
                    entry: entry.to_owned(),
                    what: "HPKE key".to_owned(),
                    source,
                })
            })
            .ok()
    }

    fn listen(&mut self, entry: &str, addrs: &[String]) {
        if addrs.is_empty() {
            self.invalid(entry, "lists no listen address");
        }
        for a in addrs {
            if !a.starts_with('/') || a.chars().any(char::is_whitespace) || a.len() < 2 {
                self.invalid(
                    entry,
                    format!("listen address `{a}` is not a multiaddr (`/ip4/…/tcp/…`, `/dns4/…`)"),
                );
            }
        }
    }

    fn run(&mut self) {
        self.region();
        self.unique("city", self.reg.cities.iter().map(|c| c.id.as_str()));
        self.unique(
            "chain",
            self.reg.cities.iter().map(|c| c.chain.chain_id.as_str()),
        );
        self.unique("member", self.reg.members().map(|m| m.id()));
        self.unique(
            "record type",
            self.reg.record_types.iter().map(|r| r.id.as_str()),
        );
        self.unique("contract", self.reg.contracts.iter().map(|c| c.id.as_str()));
        self.unique("bundle", self.reg.bundles.iter().map(|b| b.id.as_str()));
        for city in &self.reg.cities {
            self.city(city);
        }
        for hub in &self.reg.hubs {
            let e = entry("hub", &hub.id);
            self.check_id(&e, &hub.id, false);
            if self.reg.city(&hub.city).is_none() {
                self.unknown(&e, "city", &hub.city);
            }
            self.listen(&e, &hub.listen);
        }
        self.keys();
        for rt in &self.reg.record_types {
            let e = entry("record type", &rt.id);
            self.check_id(&e, &rt.id, true);
            if rt.fields.is_empty() {
                self.invalid(&e, "declares no field");
            }
            for f in &rt.fields {
                self.check_id(&e, &f.name, false);
            }
            self.unique(
                &format!("field of record type `{}`", rt.id),
                rt.fields.iter().map(|f| f.name.as_str()),
            );
            if rt.subject.is_empty() {
                self.invalid(&e, "names no subject field");
            }
            for s in &rt.subject {
                match rt.kind_of(s) {
                    None => self.unknown(&e, "subject field", s),
                    Some(proofs::Kind::Text) => {}
                    Some(k) => self.invalid(
                        &e,
                        format!("subject field `{s}` is {k}; subjects are text identifiers"),
                    ),
                }
            }
        }
        for c in &self.reg.contracts {
            self.contract(c);
        }
        for b in &self.reg.bundles {
            self.bundle(b);
        }
    }

    fn region(&mut self) {
        let r = &self.reg.region;
        let e = entry("region", &r.id);
        self.check_id(&e, &r.id, true);
        match (r.version, r.previous) {
            (0, _) => self.invalid(&e, "version must be at least 1"),
            (1, Some(_)) => self.invalid(
                &e,
                "version 1 has no previous registry, yet `previous` is set",
            ),
            (v, None) if v > 1 => self.invalid(
                &e,
                format!("version {v} must name the previous registry's hash in `previous`"),
            ),
            _ => {}
        }
    }

    fn city(&mut self, city: &City) {
        let e = entry("city", &city.id);
        self.check_id(&e, &city.id, false);
        // Chain.
        let chain = &city.chain;
        self.check_id(&e, &chain.chain_id, true);
        if chain.threshold == 0 {
            self.push(ValidationError::ThresholdZero {
                city: city.id.clone(),
            });
        } else if usize::from(chain.threshold) > chain.endorsers.len() {
            self.push(ValidationError::ThresholdAboveKeys {
                city: city.id.clone(),
                threshold: chain.threshold,
                count: chain.endorsers.len(),
            });
        }
        if chain.endorsers.len() > proofs::trust::MAX_ENDORSERS {
            self.invalid(
                &e,
                format!(
                    "{} endorsers exceed the limit of {}",
                    chain.endorsers.len(),
                    proofs::trust::MAX_ENDORSERS
                ),
            );
        }
        let mut seen: Vec<(usize, [u8; 32])> = Vec::new();
        for (i, hex) in chain.endorsers.iter().enumerate() {
            if let Some(k) = self.signing_key(&e, &format!("endorser {} key", i + 1), hex) {
                if let Some((first, _)) = seen.iter().find(|(_, b)| b == k.as_bytes()) {
                    self.push(ValidationError::DuplicateEndorser {
                        city: city.id.clone(),
                        first: first + 1,
                        second: i + 1,
                    });
                }
                seen.push((i, *k.as_bytes()));
            }
        }
        // Members: ids of the form `<city>.<local>`.
        for m in self
            .reg
            .members()
            .filter(|m| !matches!(m, MemberRef::Hub(_)) && m.city() == city.id)
        {
            let me = entry(m.kind_name(), m.id());
            match local_id(m.id(), &city.id) {
                Some(local) => self.check_id(&me, local, false),
                None => self.push(ValidationError::BadId {
                    entry: me,
                    id: m.id().to_owned(),
                    reason: "a city member's id must be `<city>.<name>`",
                }),
            }
        }
        // Gateway.
        let g = &city.gateway;
        let ge = entry("gateway", &g.id);
        self.listen(&ge, &g.listen);
        if let Some(hub) = &g.hub {
            match self.reg.member(hub) {
                _ if *hub == g.id => self.invalid(&ge, "is its own hub"),
                Some(MemberRef::Hub(_)) => {}
                Some(MemberRef::Gateway(_, via)) => {
                    if let Some(next) = &via.hub {
                        self.invalid(
                            &ge,
                            format!("hub `{hub}` is itself reached through `{next}`; name a directly reachable gateway"),
                        );
                    }
                }
                _ => self.unknown(&ge, "hub", hub),
            }
        }
        // Ownership: a record type has at most one owner per city.
        let mut owners: BTreeMap<&str, &str> = BTreeMap::new();
        for d in &city.departments {
            let de = entry("department", &d.id);
            self.no_repeats(&de, "owns", d.owns.iter().map(String::as_str));
            for rt in &d.owns {
                if self.reg.record_type(rt).is_none() {
                    self.unknown(&de, "record type", rt);
                }
                match owners.get(rt.as_str()) {
                    Some(first) if *first != d.id => self.push(ValidationError::SharedOwnership {
                        city: city.id.clone(),
                        record_type: rt.clone(),
                        first: (*first).to_owned(),
                        second: d.id.clone(),
                    }),
                    _ => {
                        owners.insert(rt, &d.id);
                    }
                }
            }
        }
        let mut kinds = BTreeMap::new();
        for u in &city.utilities {
            if let Some(first) = kinds.insert(u.kind, &u.id) {
                self.invalid(
                    &e,
                    format!(
                        "has two {} utilities, `{first}` and `{}`; a city has one per kind",
                        u.kind, u.id
                    ),
                );
            }
        }
    }

    /// Every member key parses, is not weak, and no key serves two entries.
    fn keys(&mut self) {
        let mut signing: BTreeMap<[u8; 32], String> = BTreeMap::new();
        let mut hpke: BTreeMap<[u8; 32], String> = BTreeMap::new();
        for city in &self.reg.cities {
            for (i, hex) in city.chain.endorsers.iter().enumerate() {
                if let Ok(k) = PublicKey::from_hex(hex) {
                    let name = format!("city `{}` endorser {}", city.id, i + 1);
                    signing.entry(*k.as_bytes()).or_insert(name);
                }
            }
        }
        for m in self.reg.members() {
            let me = entry(m.kind_name(), m.id());
            if let Some(k) = self.signing_key(&me, "signing key", m.signing_key()) {
                match signing.get(k.as_bytes()) {
                    Some(other) => self.push(ValidationError::ReusedKey {
                        entry: me.clone(),
                        what: "signing key".into(),
                        other: other.clone(),
                    }),
                    None => {
                        signing.insert(*k.as_bytes(), me.clone());
                    }
                }
            }
            if let Some(hex) = m.hpke_key()
                && let Some(k) = self.hpke_key(&me, hex)
            {
                match hpke.get(k.as_bytes()) {
                    Some(other) => self.push(ValidationError::ReusedKey {
                        entry: me.clone(),
                        what: "HPKE key".into(),
                        other: other.clone(),
                    }),
                    None => {
                        hpke.insert(*k.as_bytes(), me);
                    }
                }
            }
        }
    }

    fn contract(&mut self, c: &Contract) {
        let e = entry("contract", &c.id);
        self.check_id(&e, &c.id, true);
        if c.version == 0 {
            self.invalid(&e, "version must be at least 1");
        }
        if c.purpose.trim().is_empty() {
            self.invalid(&e, "states no purpose");
        }
        if c.requesters.is_empty() {
            self.invalid(&e, "names no requester");
        }
        self.no_repeats(&e, "requesters", c.requesters.iter().map(String::as_str));
        for r in &c.requesters {
            match self.reg.member(r) {
                None => self.unknown(&e, "requester", r),
                Some(MemberRef::Department(..) | MemberRef::Centre(..)) => {}
                Some(m) => self.invalid(
                    &e,
                    format!(
                        "requester `{r}` is a {}; only departments and centres may ask",
                        m.kind_name()
                    ),
                ),
            }
        }
        if c.providers.is_empty() {
            self.invalid(&e, "names no provider");
        }
        self.no_repeats(&e, "providers", c.providers.iter().map(String::as_str));
        let rt = self.reg.record_type(&c.record_type);
        if rt.is_none() {
            self.unknown(&e, "record type", &c.record_type);
        }
        for p in &c.providers {
            match self.reg.department(p) {
                None => self.unknown(&e, "provider department", p),
                Some(d) if rt.is_some() && !d.owns.contains(&c.record_type) => {
                    self.push(ValidationError::NotOwner {
                        contract: c.id.clone(),
                        provider: p.clone(),
                        record_type: c.record_type.clone(),
                    });
                }
                Some(_) => {}
            }
        }
        if c.fields.is_empty() {
            self.invalid(&e, "allows no field");
        }
        self.no_repeats(&e, "fields", c.fields.iter().map(String::as_str));
        if c.operators.is_empty() {
            self.invalid(&e, "allows no operator");
        }
        self.no_repeats(&e, "operators", c.operators.iter().map(|o| o.as_str()));
        if let Some(rt) = rt {
            let kinds: Vec<_> = c
                .fields
                .iter()
                .filter_map(|f| {
                    let k = rt.kind_of(f);
                    if k.is_none() {
                        self.unknown(&e, &format!("field of record type `{}`", rt.id), f);
                    }
                    k
                })
                .collect();
            for op in &c.operators {
                let useful =
                    kinds.iter().any(|k| op.applies_to(*k)) || (c.count && op.is_comparison());
                if !useful && !kinds.is_empty() {
                    self.push(ValidationError::UselessOperator {
                        contract: c.id.clone(),
                        op: *op,
                    });
                }
            }
        }
        if c.valid_until < c.valid_from {
            self.push(ValidationError::ValidityReversed {
                contract: c.id.clone(),
                from: c.valid_from,
                until: c.valid_until,
            });
        }
        if c.budget.queries == 0 || c.budget.per_days == 0 {
            self.push(ValidationError::ZeroBudget {
                contract: c.id.clone(),
                queries: c.budget.queries,
                per_days: c.budget.per_days,
            });
        }
        let v = c.volume;
        if v.per_minute == 0 || v.per_day == 0 || v.per_minute > v.per_day {
            self.push(ValidationError::BadVolume {
                contract: c.id.clone(),
                per_minute: v.per_minute,
                per_day: v.per_day,
            });
        }
        if c.disclosure == Disclosure::Value && c.disclose_requires.is_empty() {
            self.push(ValidationError::UnguardedDisclosure {
                contract: c.id.clone(),
            });
        }
        self.no_repeats(
            &e,
            "disclose_requires",
            c.disclose_requires.iter().map(String::as_str),
        );
        for f in &c.disclose_requires {
            if c.disclosure == Disclosure::Match {
                self.invalid(
                    &e,
                    format!("disclose_requires names `{f}` but the contract discloses no values"),
                );
            } else if !c.fields.contains(f) {
                self.invalid(
                    &e,
                    format!("disclose_requires names `{f}`, which is not among its fields"),
                );
            } else if !c.operators.contains(&Op::Eq) {
                self.invalid(
                    &e,
                    format!("disclose_requires names `{f}` but the contract does not allow eq"),
                );
            }
        }
    }

    fn bundle(&mut self, b: &Bundle) {
        let e = entry("bundle", &b.id);
        self.check_id(&e, &b.id, true);
        for p in &b.params {
            self.check_id(&e, &p.id, false);
        }
        self.unique(
            &format!("parameter of bundle `{}`", b.id),
            b.params.iter().map(|p| p.id.as_str()),
        );
        self.unique(
            &format!("evidence of bundle `{}`", b.id),
            b.evidence.iter().map(|x| x.id.as_str()),
        );
        self.unique(
            &format!("service of bundle `{}`", b.id),
            b.services.iter().map(|s| s.id.as_str()),
        );
        for ev in &b.evidence {
            self.evidence(b, ev);
        }
        self.rule(&e, b, &b.rule);
        for s in &b.services {
            self.service(b, s);
        }
    }

    /// Checks a city reference; returns the fixed city, or `None` for a
    /// parameter (or a bad reference).
    fn city_ref<'r>(&mut self, entry: &str, b: &Bundle, city: &'r CityRef) -> Option<&'r str> {
        match city {
            CityRef::Fixed(c) => {
                if self.reg.city(c).is_none() {
                    self.unknown(entry, "city", c);
                    return None;
                }
                Some(c)
            }
            CityRef::Param(p) => {
                match b.param(p) {
                    None => self.unknown(entry, "parameter", p),
                    Some(param) if param.kind != ParamKind::City => self.invalid(
                        entry,
                        format!(
                            "parameter `{p}` is {}; a city must come from a `city` parameter",
                            param.kind
                        ),
                    ),
                    Some(_) => {}
                }
                None
            }
        }
    }

    fn evidence(&mut self, b: &Bundle, ev: &Evidence) {
        let e = format!("bundle `{}` evidence `{}`", b.id, ev.id);
        self.check_id(&e, &ev.id, false);
        if b.param(&ev.subject).is_none() {
            self.unknown(&e, "subject parameter", &ev.subject);
        } else if let Some(p) = b.param(&ev.subject).filter(|p| p.kind != ParamKind::Text) {
            self.invalid(
                &e,
                format!(
                    "subject parameter `{}` is {}; a subject is text",
                    p.id, p.kind
                ),
            );
        }
        let fixed = self.city_ref(&e, b, &ev.city);
        let Some(contract) = self.reg.contract(&ev.contract) else {
            self.unknown(&e, "contract", &ev.contract);
            return;
        };
        // The provider: a department of that name that is party to the contract.
        match fixed {
            Some(city) => {
                let id = format!("{city}.{}", ev.department);
                if self.reg.department(&id).is_none() {
                    self.unknown(&e, "department", &id);
                } else if !contract.providers.contains(&id) {
                    self.invalid(
                        &e,
                        format!(
                            "department `{id}` is not a provider of contract `{}`",
                            contract.id
                        ),
                    );
                }
            }
            None => {
                let any = self.reg.cities.iter().any(|c| {
                    c.department(&ev.department)
                        .is_some_and(|d| contract.providers.contains(&d.id))
                });
                if !any {
                    self.invalid(
                        &e,
                        format!(
                            "no `{}` department in any city is a provider of contract `{}`",
                            ev.department, contract.id
                        ),
                    );
                }
            }
        }
        let Some(rt) = self.reg.record_type(&contract.record_type) else {
            return;
        };
        if let Err(rule) = check_question(contract, rt, &ev.predicates, &ev.disclose) {
            self.push(ValidationError::ContractDenies {
                entry: e.clone(),
                contract: contract.id.clone(),
                rule,
            });
        }
        for p in &ev.predicates {
            for (field, param) in p.params() {
                match (b.param(param), rt.kind_of(field)) {
                    (None, _) => self.unknown(&e, "parameter", param),
                    (Some(pd), Some(kind)) if pd.kind.value_kind() != kind => self.invalid(
                        &e,
                        format!(
                            "parameter `{param}` is {} but field `{field}` is {kind}",
                            pd.kind
                        ),
                    ),
                    _ => {}
                }
            }
        }
    }

    fn rule(&mut self, e: &str, b: &Bundle, rule: &Rule) {
        match rule {
            Rule::Evidence(id) => {
                if b.evidence(id).is_none() {
                    self.unknown(&format!("{e} rule"), "evidence", id);
                }
            }
            Rule::All(rs) | Rule::Any(rs) => {
                if rs.is_empty() {
                    self.invalid(
                        &format!("{e} rule"),
                        "`all` and `any` need at least one member",
                    );
                }
                for r in rs {
                    self.rule(e, b, r);
                }
            }
            Rule::Not(r) => self.rule(e, b, r),
        }
    }

    fn service(&mut self, b: &Bundle, s: &Service) {
        let e = format!("bundle `{}` service `{}`", b.id, s.id);
        self.check_id(&e, &s.id, false);
        let fixed = self.city_ref(&e, b, &s.city);
        let cities: Vec<&City> = match fixed {
            Some(c) => self.reg.city(c).into_iter().collect(),
            None => self.reg.cities.iter().collect(),
        };
        let exists = match &s.target {
            ServiceTarget::Utility(kind) => cities.iter().any(|c| c.utility(*kind).is_some()),
            ServiceTarget::Department(local) => {
                cities.iter().any(|c| c.department(local).is_some())
            }
        };
        let target = match &s.target {
            ServiceTarget::Utility(kind) => format!("{kind} utility"),
            ServiceTarget::Department(local) => format!("department `{local}`"),
        };
        // A fixed city that does not exist was reported by `city_ref` already.
        let unknown_city = fixed.is_none() && matches!(s.city, CityRef::Fixed(_));
        if !exists && !unknown_city {
            match fixed {
                Some(c) => self.invalid(&e, format!("city `{c}` has no {target}")),
                None => self.invalid(&e, format!("no city has a {target}")),
            }
        }
        if s.fields.is_empty() {
            self.invalid(&e, "sends no field");
        }
        for f in &s.fields {
            self.check_id(&e, &f.name, false);
        }
        self.no_repeats(&e, "fields", s.fields.iter().map(|f| f.name.as_str()));
        for f in &s.fields {
            match &f.from {
                Source::Param(p) => {
                    if b.param(p).is_none() {
                        self.unknown(&e, "parameter", p);
                    }
                }
                Source::Evidence { evidence, field } => match b.evidence(evidence) {
                    None => self.unknown(&e, "evidence", evidence),
                    Some(ev) if !ev.disclose.contains(field) => self.invalid(
                        &e,
                        format!("field `{}` comes from `{field}` of evidence `{evidence}`, which does not disclose it", f.name),
                    ),
                    Some(_) => {}
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::id_problem;

    #[test]
    fn id_syntax() {
        assert_eq!(id_problem("nanjing", false), None);
        assert_eq!(id_problem("house-transfer.title", true), None);
        assert_eq!(id_problem("buyer_id", false), None);
        assert_eq!(id_problem("", false), Some("it is empty"));
        assert_eq!(
            id_problem("a.b", false),
            Some("only lower-case letters, digits, `-` and `_` are allowed")
        );
        assert_eq!(
            id_problem("Nanjing", true),
            Some("it must start with a lower-case letter or a digit")
        );
        assert_eq!(
            id_problem("-x", true),
            Some("it must start with a lower-case letter or a digit")
        );
        assert_eq!(
            id_problem("南京", true),
            Some("it must start with a lower-case letter or a digit")
        );
        assert_eq!(
            id_problem("a b", true),
            Some("only lower-case letters, digits, `-`, `_` and `.` are allowed")
        );
        assert_eq!(
            id_problem(&"a".repeat(65), true),
            Some("it is longer than 64 characters")
        );
    }
}
