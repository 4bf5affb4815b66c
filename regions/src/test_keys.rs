//! Test keys: derived from public labels, so **anyone can recompute them**.
//!
//! The example registry uses only such keys. The label of an endorser is
//! `<city>/endorser/<n>` (n from 1); the label of a member is its id. The
//! Ed25519 key of a label is the public key of the seed
//! [`proofs::keys::test_seed`]`(label)`; the X25519 (HPKE) key of a member is
//! derived from `test_seed(label + "/hpke")`. The matching secret keys, for
//! demos and tests, are [`signing_key`] and [`hpke_secret_key`].

use proofs::keys::test_seed;
use proofs::seal::HpkeSecretKey;
use proofs::{HpkePublicKey, PublicKey, SigningKey};

use crate::model::Registry;

/// The test signing key of `label`. Never use outside tests and demos.
pub fn signing_key(label: &str) -> SigningKey {
    SigningKey::from_seed(&test_seed(label))
}

/// The test HPKE secret key of `label`. Never use outside tests and demos.
pub fn hpke_secret_key(label: &str) -> HpkeSecretKey {
    HpkeSecretKey::derive(&test_seed(&format!("{label}/hpke")))
}

/// The Ed25519 public key of `label`.
pub fn ed25519(label: &str) -> PublicKey {
    signing_key(label).public()
}

/// The X25519 public key of `label`.
pub fn x25519(label: &str) -> HpkePublicKey {
    hpke_secret_key(label).public()
}

/// Which kind of key a registry slot holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// An Ed25519 key (endorser or member signing key).
    Signing,
    /// An X25519 key (member HPKE key).
    Hpke,
}

/// A key of the registry with the label a test key would be derived from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestKey<'a> {
    /// The label (`nanjing/endorser/1`, `nanjing.civil-affairs`).
    pub label: String,
    /// Which kind of key.
    pub slot: Slot,
    /// The hex text the registry lists.
    pub listed: &'a str,
}

impl TestKey<'_> {
    /// The hex of the test key derived from the label.
    pub fn expected_hex(&self) -> String {
        match self.slot {
            Slot::Signing => ed25519(&self.label).to_hex(),
            Slot::Hpke => x25519(&self.label).to_hex(),
        }
    }
    /// Whether the registry lists exactly the derived test key.
    pub fn matches(&self) -> bool {
        self.listed == self.expected_hex()
    }
}

impl Registry {
    /// Every key of the registry with its test-key label: endorsers first,
    /// then each member's signing key and HPKE key.
    pub fn test_keys(&self) -> Vec<TestKey<'_>> {
        let mut out = Vec::new();
        for city in &self.cities {
            for (i, hex) in city.chain.endorsers.iter().enumerate() {
                out.push(TestKey {
                    label: format!("{}/endorser/{}", city.id, i + 1),
                    slot: Slot::Signing,
                    listed: hex,
                });
            }
        }
        for m in self.members() {
            out.push(TestKey {
                label: m.id().to_owned(),
                slot: Slot::Signing,
                listed: m.signing_key(),
            });
            if let Some(hex) = m.hpke_key() {
                out.push(TestKey {
                    label: m.id().to_owned(),
                    slot: Slot::Hpke,
                    listed: hex,
                });
            }
        }
        out
    }
}
