//! # proofs — Tongban's pure verification core
//!
//! Everything Tongban hashes, signs, seals or verifies lives here, with no I/O,
//! no clock and no randomness of its own: time, randomness and trust roots come in
//! as arguments, so every party (gateway, utility, inspector) runs the same checks.
//!
//! ## Map
//!
//! * [`encoding`] — the canonical byte encoding (domain tags, lengths, limits).
//! * [`hash`] — SHA-256 digests ([`struct@Hash`]) and hex forms.
//! * [`merkle`] — RFC 6962 trees via `rs_merkle`; strict RFC 9162 inclusion and
//!   consistency verifiers of our own ([`merkle::verify_inclusion`],
//!   [`merkle::verify_consistency`]).
//! * [`value`] — typed field values ([`Value`]) and dates.
//! * [`commitment`] — record commitments over salted field leaves and
//!   single-field disclosures ([`commitment::verify_disclosure`]).
//! * [`subject`] — identifiers and keyed subject references.
//! * [`keys`] — Ed25519 keys (strict verification, weak keys refused) and X25519 keys.
//! * [`seal`] — HPKE (RFC 9180) one-shot seal/open, base and auth modes.
//! * [`header`] — block headers, quorum certificates
//!   ([`header::verify_certificate`]) and hash links.
//! * [`tx`] — author-signed transactions and batch seals.
//! * [`trust`] — [`TrustRoots`]: endorser sets and member keys from the registry.
//! * [`bundle`] — proof bundles and evidence packages; [`verify_bundle`],
//!   [`verify_package`].
//! * [`json`] — strict JSON (bounded nesting, no duplicate keys, no stray
//!   `null`) for the texts an inspector reads.
//! * [`report`] — the [`Report`] every verifier returns.
//! * [`testkit`] — seeded test chains for tests and benchmarks (never secure).
//!
//! The byte layouts are specified in `docs/encoding.md`.

pub mod bundle;
pub mod chain;
pub mod commitment;
pub mod encoding;
pub mod hash;
pub mod header;
pub mod json;
pub mod keys;
pub mod matching;
pub mod merkle;
pub mod report;
pub mod seal;
pub mod subject;
pub mod testkit;
pub mod trust;
pub mod tx;
pub mod value;

pub use bundle::{EvidencePackage, ProofBundle, verify_bundle, verify_package};
pub use hash::Hash;
pub use keys::{HpkePublicKey, PublicKey, Signature, SigningKey};
pub use report::Report;
pub use trust::{ChainTrust, Member, Role, TrustRoots};
pub use value::{Date, Kind, Value};
