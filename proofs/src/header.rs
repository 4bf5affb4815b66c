//! Block headers and quorum certificates.
//!
//! A header is valid only with a certificate: strict Ed25519 signatures by at
//! least `threshold` **distinct** endorsers of that chain, over
//! `enc("tongban/endorse/v1") ‖ str(chain_id) ‖ header_hash`, so a signature made
//! for one chain never counts for another.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::encoding::{DecodeError, Decoder, Encoder};
use crate::hash::{Hash, sha256};
use crate::keys::{Signature, SigningKey};
use crate::trust::{ChainTrust, MAX_ENDORSERS};

/// Domain tag of a header.
pub const HEADER_DOMAIN: &str = "tongban/header/v1";
/// Domain tag of an endorsement.
pub const ENDORSE_DOMAIN: &str = "tongban/endorse/v1";
/// Longest chain id (bytes).
pub const MAX_CHAIN_ID: usize = 64;

/// A block header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Header {
    /// The chain this block belongs to.
    pub chain_id: String,
    /// Height; the genesis block is 0.
    pub height: u64,
    /// Hash of the previous header; all zeros at genesis.
    pub prev: Hash,
    /// When the block was cut (Unix ms, the orderer's clock).
    pub timestamp_ms: u64,
    /// Number of transactions (leaves of the tx tree).
    pub tx_count: u64,
    /// RFC 6962 root over the transactions.
    pub tx_root: Hash,
}

impl Header {
    /// Canonical bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut e = Encoder::with_domain(HEADER_DOMAIN);
        self.encode_fields(&mut e);
        e.finish()
    }
    fn encode_fields(&self, e: &mut Encoder) {
        e.str(&self.chain_id)
            .u64(self.height)
            .raw(&self.prev.0)
            .u64(self.timestamp_ms)
            .u64(self.tx_count)
            .raw(&self.tx_root.0);
    }
    /// Decodes canonical bytes (nothing may follow).
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut d = Decoder::new(bytes);
        let h = Self::read(&mut d)?;
        d.finish()?;
        Ok(h)
    }
    pub(crate) fn read(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        d.domain(HEADER_DOMAIN)?;
        Ok(Header {
            chain_id: d.str("header.chain_id", MAX_CHAIN_ID)?.to_owned(),
            height: d.u64("header.height")?,
            prev: Hash(d.array("header.prev")?),
            timestamp_ms: d.u64("header.timestamp_ms")?,
            tx_count: d.u64("header.tx_count")?,
            tx_root: Hash(d.array("header.tx_root")?),
        })
    }
    pub(crate) fn write(&self, e: &mut Encoder) {
        e.str(HEADER_DOMAIN);
        self.encode_fields(e);
    }
    /// SHA-256 of the canonical bytes.
    pub fn hash(&self) -> Hash {
        sha256(&self.encode())
    }
    /// The bytes an endorser signs.
    pub fn endorsement_message(&self) -> Vec<u8> {
        let mut e = Encoder::with_domain(ENDORSE_DOMAIN);
        e.str(&self.chain_id).raw(&self.hash().0);
        e.finish()
    }
}

/// One endorser's signature: its index in the chain's endorser set and the signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Endorsement {
    /// Index into the chain's endorser list in the registry.
    pub signer: u16,
    /// Signature over [`Header::endorsement_message`].
    pub signature: Signature,
}

/// A quorum certificate: endorsements in strictly increasing signer order.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Certificate {
    /// The endorsements.
    pub endorsements: Vec<Endorsement>,
}

impl Certificate {
    /// Signs `header` with each `(index, key)` pair and sorts by index.
    pub fn sign(header: &Header, signers: &[(u16, &SigningKey)]) -> Self {
        let msg = header.endorsement_message();
        let mut endorsements: Vec<Endorsement> = signers
            .iter()
            .map(|(i, k)| Endorsement {
                signer: *i,
                signature: k.sign(&msg),
            })
            .collect();
        endorsements.sort_by_key(|e| e.signer);
        Certificate { endorsements }
    }
    pub(crate) fn write(&self, e: &mut Encoder) {
        e.count(self.endorsements.len());
        for en in &self.endorsements {
            e.u16(en.signer).raw(&en.signature.0);
        }
    }
    pub(crate) fn read(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        let n = d.count("certificate.endorsements", MAX_ENDORSERS, 66)?;
        let mut endorsements = Vec::with_capacity(n);
        for _ in 0..n {
            endorsements.push(Endorsement {
                signer: d.u16("endorsement.signer")?,
                signature: Signature(d.array("endorsement.signature")?),
            });
        }
        Ok(Certificate { endorsements })
    }
}

/// A header with its certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertifiedHeader {
    /// The header.
    pub header: Header,
    /// Its certificate.
    pub certificate: Certificate,
}

impl CertifiedHeader {
    /// Canonical bytes: the header's encoding followed by the certificate's
    /// (`list<u16 signer ‖ raw[64] signature>`), as inside a bundle.
    pub fn encode(&self) -> Vec<u8> {
        let mut e = Encoder::new();
        self.header.write(&mut e);
        self.certificate.write(&mut e);
        e.finish()
    }
    /// Decodes [`CertifiedHeader::encode`]'s output (nothing may follow).
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut d = Decoder::new(bytes);
        let header = Header::read(&mut d)?;
        let certificate = Certificate::read(&mut d)?;
        d.finish()?;
        Ok(CertifiedHeader {
            header,
            certificate,
        })
    }
}

/// Why a certificate does not certify a header.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CertError {
    /// The header names another chain than the endorser set's.
    #[error("header is for chain `{found}`, endorser set is for `{expected}`")]
    WrongChain {
        /// The trusted chain.
        expected: String,
        /// The header's chain.
        found: String,
    },
    /// A signer index outside the endorser set.
    #[error("signer {signer} is not an endorser (the set has {count})")]
    UnknownSigner {
        /// The index.
        signer: u16,
        /// Endorsers in the set.
        count: usize,
    },
    /// The same endorser twice: it never counts twice.
    #[error("endorser {signer} signed more than once")]
    DuplicateSigner {
        /// The index.
        signer: u16,
    },
    /// Endorsements not in increasing signer order (not canonical).
    #[error("endorsements are not in increasing signer order at signer {signer}")]
    Unordered {
        /// The first out-of-order index.
        signer: u16,
    },
    /// A signature that does not verify strictly.
    #[error(
        "endorser {signer}'s signature does not verify (strict Ed25519) for this header and chain"
    )]
    BadSignature {
        /// The index.
        signer: u16,
    },
    /// Fewer distinct endorsers than the threshold.
    #[error("{found} distinct endorsers signed; the chain requires {expected}")]
    BelowThreshold {
        /// Threshold.
        expected: u16,
        /// Distinct valid signers.
        found: usize,
    },
}

/// Verifies `cert` for `header` under `chain`. Every endorsement must be valid;
/// signers must be distinct and in increasing order; at least `threshold` of them.
pub fn verify_certificate(
    header: &Header,
    cert: &Certificate,
    chain: &ChainTrust,
) -> Result<(), CertError> {
    if header.chain_id != chain.chain_id() {
        return Err(CertError::WrongChain {
            expected: chain.chain_id().to_owned(),
            found: header.chain_id.clone(),
        });
    }
    let keys = chain.endorsers();
    let mut last: Option<u16> = None;
    for en in &cert.endorsements {
        if usize::from(en.signer) >= keys.len() {
            return Err(CertError::UnknownSigner {
                signer: en.signer,
                count: keys.len(),
            });
        }
        if let Some(prev) = last {
            if en.signer == prev {
                return Err(CertError::DuplicateSigner { signer: en.signer });
            }
            if en.signer < prev {
                return Err(
                    if cert
                        .endorsements
                        .iter()
                        .filter(|e| e.signer == en.signer)
                        .count()
                        > 1
                    {
                        CertError::DuplicateSigner { signer: en.signer }
                    } else {
                        CertError::Unordered { signer: en.signer }
                    },
                );
            }
        }
        last = Some(en.signer);
    }
    if cert.endorsements.len() < usize::from(chain.threshold()) {
        return Err(CertError::BelowThreshold {
            expected: chain.threshold(),
            found: cert.endorsements.len(),
        });
    }
    let msg = header.endorsement_message();
    for en in &cert.endorsements {
        keys[usize::from(en.signer)]
            .verify(&msg, &en.signature)
            .map_err(|_| CertError::BadSignature { signer: en.signer })?;
    }
    Ok(())
}

/// Why a header does not follow its predecessor.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum LinkError {
    /// Another chain.
    #[error("chain id `{found}` differs from the previous header's `{expected}`")]
    Chain {
        /// Previous header's chain.
        expected: String,
        /// This header's chain.
        found: String,
    },
    /// Height is not previous + 1.
    #[error("height {found} does not follow {previous}")]
    Height {
        /// Previous height.
        previous: u64,
        /// This height.
        found: u64,
    },
    /// `prev` is not the previous header's hash.
    #[error("prev hash {found} is not the previous header's hash {expected}")]
    PrevHash {
        /// The previous header's hash.
        expected: Hash,
        /// The `prev` field.
        found: Hash,
    },
    /// Time went backwards.
    #[error("timestamp {found} is before the previous header's {previous}")]
    Time {
        /// Previous timestamp.
        previous: u64,
        /// This timestamp.
        found: u64,
    },
}

/// Checks that `next` directly follows `prev` (chain, height, hash link, time).
pub fn verify_link(prev: &Header, next: &Header) -> Result<(), LinkError> {
    if prev.chain_id != next.chain_id {
        return Err(LinkError::Chain {
            expected: prev.chain_id.clone(),
            found: next.chain_id.clone(),
        });
    }
    if prev.height.checked_add(1) != Some(next.height) {
        return Err(LinkError::Height {
            previous: prev.height,
            found: next.height,
        });
    }
    let h = prev.hash();
    if next.prev != h {
        return Err(LinkError::PrevHash {
            expected: h,
            found: next.prev,
        });
    }
    if next.timestamp_ms < prev.timestamp_ms {
        return Err(LinkError::Time {
            previous: prev.timestamp_ms,
            found: next.timestamp_ms,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::test_seed;

    fn setup(n: usize, t: u16) -> (Vec<SigningKey>, ChainTrust, Header) {
        let keys: Vec<SigningKey> = (0..n)
            .map(|i| SigningKey::from_seed(&test_seed(&format!("e{i}"))))
            .collect();
        let chain = ChainTrust::new(
            "test-chain",
            keys.iter().map(SigningKey::public).collect(),
            t,
        )
        .unwrap();
        let header = Header {
            chain_id: "test-chain".into(),
            height: 5,
            prev: Hash([1; 32]),
            timestamp_ms: 1_700_000_000_000,
            tx_count: 3,
            tx_root: Hash([2; 32]),
        };
        (keys, chain, header)
    }

    #[test]
    fn threshold_distinct_and_chain_bound() {
        let (keys, chain, header) = setup(7, 4);
        let signers: Vec<(u16, &SigningKey)> = keys
            .iter()
            .enumerate()
            .take(4)
            .map(|(i, k)| (i as u16, k))
            .collect();
        let cert = Certificate::sign(&header, &signers);
        verify_certificate(&header, &cert, &chain).unwrap();

        // Three signers are not enough.
        let few = Certificate {
            endorsements: cert.endorsements[..3].to_vec(),
        };
        assert_eq!(
            verify_certificate(&header, &few, &chain),
            Err(CertError::BelowThreshold {
                expected: 4,
                found: 3
            })
        );

        // One endorser four times never counts four times.
        let dup = Certificate {
            endorsements: vec![cert.endorsements[0]; 4],
        };
        assert_eq!(
            verify_certificate(&header, &dup, &chain),
            Err(CertError::DuplicateSigner { signer: 0 })
        );

        // Signatures for another chain id never count.
        let mut other = header.clone();
        other.chain_id = "other-chain".into();
        let other_chain = ChainTrust::new("other-chain", chain.endorsers().to_vec(), 4).unwrap();
        assert!(matches!(
            verify_certificate(&other, &cert, &other_chain),
            Err(CertError::BadSignature { .. })
        ));
        assert!(matches!(
            verify_certificate(&other, &cert, &chain),
            Err(CertError::WrongChain { .. })
        ));

        // A signer index out of range.
        let mut bad = cert.clone();
        bad.endorsements[3].signer = 9;
        assert_eq!(
            verify_certificate(&header, &bad, &chain),
            Err(CertError::UnknownSigner {
                signer: 9,
                count: 7
            })
        );
        // Out of order.
        let mut un = cert.clone();
        un.endorsements.swap(0, 1);
        assert_eq!(
            verify_certificate(&header, &un, &chain),
            Err(CertError::Unordered { signer: 0 })
        );
        // Wrong key for an index.
        let mut wrong = cert;
        wrong.endorsements[0].signer = 4;
        wrong.endorsements.sort_by_key(|e| e.signer);
        assert!(matches!(
            verify_certificate(&header, &wrong, &chain),
            Err(CertError::BadSignature { signer: 4 })
        ));
    }

    #[test]
    fn header_codec_and_links() {
        let (_, _, h) = setup(1, 1);
        assert_eq!(Header::decode(&h.encode()).unwrap(), h);
        let mut next = h.clone();
        next.height = 6;
        next.prev = h.hash();
        verify_link(&h, &next).unwrap();
        let mut bad = next.clone();
        bad.height = 7;
        assert!(matches!(
            verify_link(&h, &bad),
            Err(LinkError::Height { .. })
        ));
        let mut bad = next.clone();
        bad.prev = Hash([0; 32]);
        assert!(matches!(
            verify_link(&h, &bad),
            Err(LinkError::PrevHash { .. })
        ));
        let mut bad = next;
        bad.timestamp_ms = 1;
        assert!(matches!(verify_link(&h, &bad), Err(LinkError::Time { .. })));
    }
}
