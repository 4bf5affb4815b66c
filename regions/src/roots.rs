//! Conversion of a registry into `proofs`' [`TrustRoots`].

use proofs::{ChainTrust, Hash, HpkePublicKey, Member, PublicKey, TrustRoots};

use crate::model::Registry;
use crate::validate::ValidationError;

impl Registry {
    /// The trust roots every verifier takes: each city's endorser set (as a
    /// [`ChainTrust`]) and every gateway, hub, department, utility and centre as
    /// a [`Member`] with its [`proofs::Role`] (a hub with no chain). `registry_hash` is the SHA-256 of
    /// the registry file (from [`load`](crate::load())).
    ///
    /// Fails closed: the registry is validated first, and any problem is
    /// returned instead of roots.
    pub fn trust_roots(&self, registry_hash: Hash) -> Result<TrustRoots, ValidationError> {
        self.validate()?;
        let bad_key = |entry: String, what: String| {
            move |source| ValidationError::BadKey {
                entry,
                what,
                source,
            }
        };
        let mut roots = TrustRoots::new(registry_hash);
        for city in &self.cities {
            let endorsers = city
                .chain
                .endorsers
                .iter()
                .enumerate()
                .map(|(i, hex)| {
                    PublicKey::from_hex(hex).map_err(bad_key(
                        format!("city `{}`", city.id),
                        format!("endorser {} key", i + 1),
                    ))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let chain = ChainTrust::new(&city.chain.chain_id, endorsers, city.chain.threshold)
                .map_err(|e| ValidationError::Invalid {
                    entry: format!("city `{}`", city.id),
                    problem: e.to_string(),
                })?;
            roots = roots.with_chain(chain);
        }
        for m in self.members() {
            let entry = format!("{} `{}`", m.kind_name(), m.id());
            let signing = PublicKey::from_hex(m.signing_key())
                .map_err(bad_key(entry.clone(), "signing key".into()))?;
            let hpke = m
                .hpke_key()
                .map(|hex| {
                    HpkePublicKey::from_hex(hex).map_err(bad_key(entry.clone(), "HPKE key".into()))
                })
                .transpose()?;
            // Validation guarantees the member's city exists. A hub owns no
            // chain (it is hosted in a city, not part of it), so it can
            // author nothing that verifies.
            let chain = match m {
                crate::model::MemberRef::Hub(_) => String::new(),
                _ => self
                    .city(m.city())
                    .map(|c| c.chain.chain_id.clone())
                    .unwrap_or_default(),
            };
            let owns = match m {
                crate::model::MemberRef::Department(_, d) => d.owns.clone(),
                _ => Vec::new(),
            };
            roots = roots.with_member(Member {
                id: m.id().to_owned(),
                role: m.role(),
                city: m.city().to_owned(),
                chain,
                owns,
                signing,
                hpke,
            });
        }
        Ok(roots)
    }
}
