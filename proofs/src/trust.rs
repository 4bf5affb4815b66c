//! Trust roots: what a verifier accepts, taken from the region registry.
//!
//! `proofs` never reads the registry itself; `regions` converts a validated
//! registry into [`TrustRoots`] and every verifier takes them as an argument.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::hash::Hash;
use crate::keys::{HpkePublicKey, PublicKey};

/// What a party of the region is, which decides what it may sign.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// A city's gateway (its libp2p identity and transport signer).
    Gateway,
    /// A data-owning or requesting government department.
    Department,
    /// A utility (gas, water, electricity, broadband …).
    Utility,
    /// A regional service centre taking applications.
    ServiceCentre,
    /// A hub: a relay between city gateways. It owns no chain, so it may
    /// author no transaction: a hub hosted in a city is not that city's
    /// gateway.
    Hub,
}

/// One chain's endorser set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainTrust {
    chain_id: String,
    endorsers: Vec<PublicKey>,
    threshold: u16,
}

/// Why an endorser set is unusable.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TrustError {
    /// Threshold 0, or above the number of endorsers.
    #[error("chain `{chain}`: threshold {threshold} must be between 1 and the {count} endorsers")]
    Threshold {
        /// Chain id.
        chain: String,
        /// Threshold given.
        threshold: u16,
        /// Number of endorsers.
        count: usize,
    },
    /// The same key listed twice.
    #[error("chain `{chain}`: endorser key {key} listed twice")]
    DuplicateEndorser {
        /// Chain id.
        chain: String,
        /// The repeated key.
        key: String,
    },
    /// More endorsers than an index can address.
    #[error("chain `{chain}`: {count} endorsers exceed the limit of {max}")]
    TooManyEndorsers {
        /// Chain id.
        chain: String,
        /// Number given.
        count: usize,
        /// The limit.
        max: usize,
    },
}

/// The most endorsers one chain may have (certificates address them by a `u16` index
/// and verifiers bound their work by it).
pub const MAX_ENDORSERS: usize = 256;

impl ChainTrust {
    /// A checked endorser set: 1 ≤ threshold ≤ endorsers, no key twice.
    pub fn new(
        chain_id: impl Into<String>,
        endorsers: Vec<PublicKey>,
        threshold: u16,
    ) -> Result<Self, TrustError> {
        let chain = chain_id.into();
        if endorsers.len() > MAX_ENDORSERS {
            return Err(TrustError::TooManyEndorsers {
                chain,
                count: endorsers.len(),
                max: MAX_ENDORSERS,
            });
        }
        if threshold == 0 || usize::from(threshold) > endorsers.len() {
            return Err(TrustError::Threshold {
                chain,
                threshold,
                count: endorsers.len(),
            });
        }
        for (i, k) in endorsers.iter().enumerate() {
            if endorsers[..i].contains(k) {
                return Err(TrustError::DuplicateEndorser {
                    chain,
                    key: k.to_hex(),
                });
            }
        }
        Ok(ChainTrust {
            chain_id: chain,
            endorsers,
            threshold,
        })
    }
    /// The chain id.
    pub fn chain_id(&self) -> &str {
        &self.chain_id
    }
    /// Endorser keys, by index.
    pub fn endorsers(&self) -> &[PublicKey] {
        &self.endorsers
    }
    /// Distinct endorsers needed for a certificate.
    pub fn threshold(&self) -> u16 {
        self.threshold
    }
}

/// The keys of one registry member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Registry id, e.g. `nanjing.civil-affairs`.
    pub id: String,
    /// What the member is.
    pub role: Role,
    /// The city the member belongs to.
    pub city: String,
    /// The chain of that city: the only chain the member's transactions may be on.
    pub chain: String,
    /// Record types the member owns (departments): the only ones it may commit or revoke.
    pub owns: Vec<String>,
    /// Its Ed25519 signing key.
    pub signing: PublicKey,
    /// Its X25519 key for sealed messages, if it receives any.
    pub hpke: Option<HpkePublicKey>,
}

/// Everything a verifier trusts: the pinned registry's hash, each chain's
/// endorser set, each member's keys, and the clock tolerance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustRoots {
    /// SHA-256 of the registry file these roots come from.
    pub registry_hash: Hash,
    /// Endorser sets by chain id.
    pub chains: BTreeMap<String, ChainTrust>,
    /// Members by id.
    pub members: BTreeMap<String, Member>,
    /// How far in the future (ms) a header's timestamp may be before it is refused.
    pub max_clock_skew_ms: u64,
}

impl TrustRoots {
    /// Empty roots for a registry hash (builders add chains and members).
    pub fn new(registry_hash: Hash) -> Self {
        TrustRoots {
            registry_hash,
            chains: BTreeMap::new(),
            members: BTreeMap::new(),
            max_clock_skew_ms: 30_000,
        }
    }
    /// Adds a chain's endorser set.
    pub fn with_chain(mut self, chain: ChainTrust) -> Self {
        self.chains.insert(chain.chain_id.clone(), chain);
        self
    }
    /// Adds a member.
    pub fn with_member(mut self, member: Member) -> Self {
        self.members.insert(member.id.clone(), member);
        self
    }
}
