//! The registry model: what the region registry TOML file says.
//!
//! Every struct refuses unknown fields, so a misspelt key is an error rather
//! than a silently ignored setting. Keys are kept as the hex text of the file
//! here; [`Registry::validate`](crate::Registry::validate) checks them (and names
//! the entry of a bad one), and
//! [`Registry::trust_roots`](crate::Registry::trust_roots) turns them into
//! `proofs` keys.
//!
//! # The file, table by table
//!
//! ```toml
//! [region]                      # id, name, version (from 1),
//! id = "yangtze-delta"          # previous = "<sha-256 hex>" from version 2 on
//! name = "…"
//! version = 1
//!
//! [[hubs]]                      # relay gateways with no chain of their own
//! id = "anhui-hub"              # member id; city = the host city
//! name = "…"
//! city = "hefei"
//! signing_key = "<ed25519 hex>"
//! listen = ["/dns4/hub.example/tcp/4100"]
//!
//! [[cities]]
//! id = "nanjing"                # every member id of the city is "nanjing.<name>"
//! name = "Nanjing"
//! name_zh = "南京"
//! chain = { chain_id = "nanjing-egov", threshold = 3, endorsers = ["<ed25519 hex>", …] }
//! gateway = { id = "nanjing.gateway", signing_key = "…", listen = ["/dns4/…/tcp/4102"] }
//!                               # optional: hub = "<hub or gateway id>"
//! [[cities.departments]]        # id, name, signing_key, hpke_key (X25519 hex),
//! id = "nanjing.civil-affairs"  # owns = [record type ids]
//! [[cities.utilities]]          # id, name, kind = gas|water|electricity|broadband,
//! id = "nanjing.gas"            # signing_key, hpke_key (one utility per kind per city)
//! [[cities.centres]]            # id, name, signing_key, hpke_key
//! id = "nanjing.centre"
//!
//! [[record_types]]              # id, name, fields = [{ name, kind = text|int|bool|date }],
//! id = "marriage"               # subject = [text fields naming whom a record is about]
//!
//! [[contracts]]                 # id, version, requesters (departments/centres),
//! id = "house-transfer.title"   # providers (departments owning record_type), record_type,
//!                               # fields, operators (eq ne lt le gt ge in exists),
//!                               # count = true|false, disclosure = "match"|"value",
//!                               # purpose, valid_from, valid_until ("YYYY-MM-DD"),
//!                               # budget = { queries = 5, per_days = 30 },
//!                               # volume = { per_minute = 120, per_day = 5000 } (optional),
//!                               # disclose_requires = ["certificate_number"] (value contracts)
//!
//! [[bundles]]                   # id, name, params = [{ id, name, kind = text|int|bool|date|city }],
//! id = "house-transfer"         # rule = "<evidence>" | { all = [...] } | { any = [...] } | { not = ... }
//! [[bundles.evidence]]          # id, name, contract, department (local id, e.g. "real-estate"),
//!                               # city = "nanjing" | "param:<city param>", subject = "<text param>",
//!                               # predicates = [...] (see crate::predicate), disclose = [fields]
//! [[bundles.services]]          # id, name, utility = "<kind>" or department = "<local id>",
//!                               # city, fields = [{ name, from = "param:<p>" | "evidence:<e>.<field>" }]
//! ```
//!
//! Ids are lower-case ASCII letters, digits, `-` and `_` (plus `.` in region,
//! chain, record type, contract and bundle ids), at most 64 characters. Cities,
//! chains, members (of every kind together), record types, contracts and
//! bundles are separate namespaces; within a bundle, parameters, evidence and
//! services are.

use proofs::{Date, Hash, Kind, Role};
use serde::{Deserialize, Serialize};

use crate::bundle::Bundle;
use crate::predicate::Op;

/// A region registry: the region's only root of trust.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Registry {
    /// Which region and which version of its registry.
    pub region: Region,
    /// Gateways that belong to no city and relay for others (provincial hubs).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hubs: Vec<Hub>,
    /// The cities, each with its chain, gateway and members.
    #[serde(default)]
    pub cities: Vec<City>,
    /// The record types departments hold, region-wide.
    #[serde(default)]
    pub record_types: Vec<RecordType>,
    /// Data-sharing contracts.
    #[serde(default)]
    pub contracts: Vec<Contract>,
    /// One-stop bundle definitions.
    #[serde(default)]
    pub bundles: Vec<Bundle>,
}

/// The region and the registry's version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Region {
    /// Region id, e.g. `yangtze-delta`.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Registry version, from 1.
    pub version: u32,
    /// SHA-256 of the previous registry version's file (versions after 1), so a
    /// key rotation can be checked against the keys the previous version names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<Hash>,
}

/// A gateway that is not a city's own: it relays between city gateways.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hub {
    /// Member id, e.g. `anhui-hub`.
    pub id: String,
    /// Display name.
    pub name: String,
    /// The city that hosts it (its [`proofs::Member::city`]).
    pub city: String,
    /// Ed25519 public key (hex): its libp2p identity.
    pub signing_key: String,
    /// Listen addresses (libp2p multiaddr text).
    pub listen: Vec<String>,
}

/// A city: its chain, its gateway and its members.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct City {
    /// City id, e.g. `nanjing`; every member id of the city starts with `<id>.`.
    pub id: String,
    /// English name.
    pub name: String,
    /// Chinese name.
    pub name_zh: String,
    /// The city's consortium chain.
    pub chain: Chain,
    /// The city's gateway.
    pub gateway: Gateway,
    /// Government departments.
    #[serde(default)]
    pub departments: Vec<Department>,
    /// Utilities.
    #[serde(default)]
    pub utilities: Vec<Utility>,
    /// Service centres.
    #[serde(default)]
    pub centres: Vec<Centre>,
}

/// A city chain's endorser set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Chain {
    /// Chain id (unique in the region), named in every header it certifies.
    pub chain_id: String,
    /// Distinct endorsements a header needs.
    pub threshold: u16,
    /// Endorser Ed25519 public keys (hex).
    pub endorsers: Vec<String>,
}

/// A city's gateway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Gateway {
    /// Member id, e.g. `nanjing.gateway`.
    pub id: String,
    /// Ed25519 public key (hex): its libp2p identity and transport signer.
    pub signing_key: String,
    /// Listen addresses (libp2p multiaddr text).
    pub listen: Vec<String>,
    /// The gateway (a hub or another city's gateway) through which this one is
    /// reached, if it is not reached directly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hub: Option<String>,
}

/// A government department: owns record types, answers and asks questions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Department {
    /// Member id, e.g. `nanjing.civil-affairs`.
    pub id: String,
    /// Display name, with the Chinese term.
    pub name: String,
    /// Ed25519 public key (hex).
    pub signing_key: String,
    /// X25519 public key (hex) for answers and requests sealed to it.
    pub hpke_key: String,
    /// Record type ids it owns in its city.
    #[serde(default)]
    pub owns: Vec<String>,
}

/// What a utility supplies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UtilityKind {
    /// Piped gas.
    Gas,
    /// Water.
    Water,
    /// Electricity.
    Electricity,
    /// Broadband.
    Broadband,
}

impl UtilityKind {
    /// The written name (`"gas"`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            UtilityKind::Gas => "gas",
            UtilityKind::Water => "water",
            UtilityKind::Electricity => "electricity",
            UtilityKind::Broadband => "broadband",
        }
    }
}

impl std::fmt::Display for UtilityKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A utility company: receives sealed service requests, signs receipts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Utility {
    /// Member id, e.g. `nanjing.gas`.
    pub id: String,
    /// Display name.
    pub name: String,
    /// What it supplies (one utility per kind per city).
    pub kind: UtilityKind,
    /// Ed25519 public key (hex).
    pub signing_key: String,
    /// X25519 public key (hex).
    pub hpke_key: String,
}

/// A service centre: takes applications, runs bundles, asks departments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Centre {
    /// Member id, e.g. `nanjing.centre`.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Ed25519 public key (hex).
    pub signing_key: String,
    /// X25519 public key (hex).
    pub hpke_key: String,
}

/// A record type (a kind of licence or register entry).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordType {
    /// Id, e.g. `marriage`.
    pub id: String,
    /// Display name, with the Chinese term.
    pub name: String,
    /// Its fields.
    pub fields: Vec<FieldDef>,
    /// The text fields that identify a record's subject(s) (a record is about
    /// the subject if any of them holds the subject's identifier).
    pub subject: Vec<String>,
}

impl RecordType {
    /// The declared kind of field `name`.
    pub fn kind_of(&self, name: &str) -> Option<Kind> {
        self.fields.iter().find(|f| f.name == name).map(|f| f.kind)
    }
}

/// One field of a record type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldDef {
    /// Field name, e.g. `status`.
    pub name: String,
    /// Its kind.
    pub kind: Kind,
}

/// What a contract lets the provider reveal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Disclosure {
    /// Only whether the predicates hold (yes/no).
    Match,
    /// Also the values of requested fields (among the allowed ones).
    Value,
}

/// A per-requester, per-subject query budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Budget {
    /// Queries allowed…
    pub queries: u32,
    /// …per this many days (a window ending today).
    pub per_days: u32,
}

/// A per-requester volume limit under one contract, over all subjects
/// together, counted by each provider gateway: what stops one requester from
/// sweeping a city's population even when each subject's budget holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Volume {
    /// Requests in any 60-second window.
    pub per_minute: u32,
    /// Requests per calendar day (UTC+8).
    pub per_day: u32,
}

impl Volume {
    /// The limit of a contract that names none: 120 a minute, 5,000 a day.
    pub const DEFAULT: Volume = Volume {
        per_minute: 120,
        per_day: 5_000,
    };
}

impl Default for Volume {
    fn default() -> Volume {
        Volume::DEFAULT
    }
}

/// A data-sharing contract: who may ask whom what about which record type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Contract {
    /// Id, e.g. `house-transfer.title`.
    pub id: String,
    /// Version, from 1; answers are bound to it.
    pub version: u32,
    /// Member ids (departments or centres) that may ask.
    pub requesters: Vec<String>,
    /// Department ids that answer; each must own the record type.
    pub providers: Vec<String>,
    /// The record type asked about.
    pub record_type: String,
    /// Fields that predicates and disclosures may name.
    pub fields: Vec<String>,
    /// Operators that predicates may use.
    pub operators: Vec<Op>,
    /// Whether count predicates over the subject's records are allowed.
    #[serde(default)]
    pub count: bool,
    /// Yes/no only, or values too.
    pub disclosure: Disclosure,
    /// The purpose a request must state, word for word.
    pub purpose: String,
    /// First day the contract applies.
    #[serde(with = "crate::scalar::date")]
    pub valid_from: Date,
    /// Last day the contract applies.
    #[serde(with = "crate::scalar::date")]
    pub valid_until: Date,
    /// Per-requester, per-subject query budget.
    pub budget: Budget,
    /// Per-requester volume over all subjects ([`Volume::DEFAULT`] if not named).
    #[serde(default)]
    pub volume: Volume,
    /// Fields a request must test with `eq` (a top-level field test against a
    /// constant) before any value is disclosed: what the requester must already
    /// know, such as the title's certificate number. Values come only from a
    /// record on which those tests hold. A value contract must name at least one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub disclose_requires: Vec<String>,
}

/// A borrowed view of any registry member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberRef<'a> {
    /// A city's gateway.
    Gateway(&'a City, &'a Gateway),
    /// A hub gateway.
    Hub(&'a Hub),
    /// A department.
    Department(&'a City, &'a Department),
    /// A utility.
    Utility(&'a City, &'a Utility),
    /// A service centre.
    Centre(&'a City, &'a Centre),
}

impl<'a> MemberRef<'a> {
    /// Member id.
    pub fn id(&self) -> &'a str {
        match self {
            MemberRef::Gateway(_, g) => &g.id,
            MemberRef::Hub(h) => &h.id,
            MemberRef::Department(_, d) => &d.id,
            MemberRef::Utility(_, u) => &u.id,
            MemberRef::Centre(_, c) => &c.id,
        }
    }
    /// Its role in [`proofs::TrustRoots`].
    pub fn role(&self) -> Role {
        match self {
            MemberRef::Gateway(..) => Role::Gateway,
            MemberRef::Hub(_) => Role::Hub,
            MemberRef::Department(..) => Role::Department,
            MemberRef::Utility(..) => Role::Utility,
            MemberRef::Centre(..) => Role::ServiceCentre,
        }
    }
    /// The city it belongs to (a hub: the city that hosts it).
    pub fn city(&self) -> &'a str {
        match self {
            MemberRef::Gateway(c, _)
            | MemberRef::Department(c, _)
            | MemberRef::Utility(c, _)
            | MemberRef::Centre(c, _) => &c.id,
            MemberRef::Hub(h) => &h.city,
        }
    }
    /// Its Ed25519 key, as hex text.
    pub fn signing_key(&self) -> &'a str {
        match self {
            MemberRef::Gateway(_, g) => &g.signing_key,
            MemberRef::Hub(h) => &h.signing_key,
            MemberRef::Department(_, d) => &d.signing_key,
            MemberRef::Utility(_, u) => &u.signing_key,
            MemberRef::Centre(_, c) => &c.signing_key,
        }
    }
    /// Its X25519 key, as hex text (gateways and hubs have none).
    pub fn hpke_key(&self) -> Option<&'a str> {
        match self {
            MemberRef::Gateway(..) | MemberRef::Hub(_) => None,
            MemberRef::Department(_, d) => Some(&d.hpke_key),
            MemberRef::Utility(_, u) => Some(&u.hpke_key),
            MemberRef::Centre(_, c) => Some(&c.hpke_key),
        }
    }
    /// What kind of member it is, as a word for messages (`"department"`, …).
    pub fn kind_name(&self) -> &'static str {
        match self {
            MemberRef::Gateway(..) => "gateway",
            MemberRef::Hub(_) => "hub",
            MemberRef::Department(..) => "department",
            MemberRef::Utility(..) => "utility",
            MemberRef::Centre(..) => "centre",
        }
    }
}

impl Registry {
    /// Every member: per city its gateway, departments, utilities and centres,
    /// then the hubs.
    pub fn members(&self) -> impl Iterator<Item = MemberRef<'_>> {
        self.cities
            .iter()
            .flat_map(|c| {
                std::iter::once(MemberRef::Gateway(c, &c.gateway))
                    .chain(
                        c.departments
                            .iter()
                            .map(move |d| MemberRef::Department(c, d)),
                    )
                    .chain(c.utilities.iter().map(move |u| MemberRef::Utility(c, u)))
                    .chain(c.centres.iter().map(move |s| MemberRef::Centre(c, s)))
            })
            .chain(self.hubs.iter().map(MemberRef::Hub))
    }
    /// The member with this id.
    pub fn member(&self, id: &str) -> Option<MemberRef<'_>> {
        self.members().find(|m| m.id() == id)
    }
    /// The city with this id.
    pub fn city(&self, id: &str) -> Option<&City> {
        self.cities.iter().find(|c| c.id == id)
    }
    /// The department with this id.
    pub fn department(&self, id: &str) -> Option<&Department> {
        self.cities
            .iter()
            .flat_map(|c| &c.departments)
            .find(|d| d.id == id)
    }
    /// The record type with this id.
    pub fn record_type(&self, id: &str) -> Option<&RecordType> {
        self.record_types.iter().find(|r| r.id == id)
    }
    /// The contract with this id.
    pub fn contract(&self, id: &str) -> Option<&Contract> {
        self.contracts.iter().find(|c| c.id == id)
    }
    /// The bundle with this id.
    pub fn bundle(&self, id: &str) -> Option<&Bundle> {
        self.bundles.iter().find(|b| b.id == id)
    }
}

impl City {
    /// The department with local id `local` (`civil-affairs` for `<city>.civil-affairs`).
    pub fn department(&self, local: &str) -> Option<&Department> {
        self.departments
            .iter()
            .find(|d| local_id(&d.id, &self.id) == Some(local))
    }
    /// The department that owns `record_type` here.
    pub fn owner_of(&self, record_type: &str) -> Option<&Department> {
        self.departments
            .iter()
            .find(|d| d.owns.iter().any(|r| r == record_type))
    }
    /// The utility of `kind` here.
    pub fn utility(&self, kind: UtilityKind) -> Option<&Utility> {
        self.utilities.iter().find(|u| u.kind == kind)
    }
}

/// The part of a member id after `<city>.`, if the id has that prefix.
pub(crate) fn local_id<'a>(id: &'a str, city: &str) -> Option<&'a str> {
    id.strip_prefix(city)?.strip_prefix('.')
}
