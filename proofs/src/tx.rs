//! Ledger transactions: typed bodies signed by their author.
//!
//! Bytes of a transaction (also its Merkle leaf data):
//! `enc("tongban/tx/v1") ‖ str(chain_id) ‖ str(author) ‖ u8(kind) ‖ body ‖ signature[64]`;
//! the author signs everything before the signature. The chain id inside the
//! signed bytes means a transaction can never be replayed onto another chain.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::encoding::{DecodeError, Decoder, Encoder};
use crate::hash::Hash;
use crate::header::MAX_CHAIN_ID;
use crate::keys::{Signature, SigningKey};
use crate::subject::SubjectRef;
use crate::trust::{Role, TrustRoots};

/// Domain tag of a transaction.
pub const TX_DOMAIN: &str = "tongban/tx/v1";
/// Longest registry id (member, record type, record id), in bytes.
pub const MAX_ID: usize = 128;
/// Largest encoded transaction accepted (bytes).
pub const MAX_TX_BYTES: usize = 64 * 1024;

/// Why a record stopped being current.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RevokeReason {
    /// Withdrawn (e.g. a licence cancelled, a marriage dissolved by a new record).
    Revoked,
    /// Replaced by a newer version.
    Superseded,
}

/// What a transaction says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", deny_unknown_fields)]
#[non_exhaustive]
pub enum TxBody {
    /// A department commits to version `version` of one of its records.
    RecordCommit {
        /// Registry id of the record type.
        record_type: String,
        /// The department's id for the record.
        record_id: String,
        /// Keyed reference to the record's subject.
        subject: SubjectRef,
        /// Version, from 1; a higher version supersedes the lower ones.
        version: u32,
        /// Root over the salted field leaves (see [`crate::commitment`]).
        commitment: Hash,
        /// When the record was issued (Unix ms).
        issued_ms: u64,
    },
    /// A department withdraws one version of a record. History is never rewritten.
    RecordRevoke {
        /// Registry id of the record type.
        record_type: String,
        /// The department's id for the record.
        record_id: String,
        /// The version withdrawn.
        version: u32,
        /// Why.
        reason: RevokeReason,
        /// When (Unix ms).
        at_ms: u64,
    },
}

impl TxBody {
    fn kind(&self) -> u8 {
        match self {
            TxBody::RecordCommit { .. } => 1,
            TxBody::RecordRevoke { .. } => 2,
        }
    }
    /// The role that may author this kind of transaction.
    pub fn author_role(&self) -> Role {
        match self {
            TxBody::RecordCommit { .. } | TxBody::RecordRevoke { .. } => Role::Department,
        }
    }
    fn write(&self, e: &mut Encoder) {
        e.u8(self.kind());
        match self {
            TxBody::RecordCommit { record_type, record_id, subject, version, commitment, issued_ms } => {
                e.str(record_type).str(record_id).raw(&subject.0.0).u32(*version).raw(&commitment.0).u64(*issued_ms);
            }
            TxBody::RecordRevoke { record_type, record_id, version, reason, at_ms } => {
                let r = match reason {
                    RevokeReason::Revoked => 1,
                    RevokeReason::Superseded => 2,
                };
                e.str(record_type).str(record_id).u32(*version).u8(r).u64(*at_ms);
            }
        }
    }
    fn read(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(match d.u8("tx.kind")? {
            1 => TxBody::RecordCommit {
                record_type: d.str("tx.record_type", MAX_ID)?.to_owned(),
                record_id: d.str("tx.record_id", MAX_ID)?.to_owned(),
                subject: SubjectRef(Hash(d.array("tx.subject")?)),
                version: d.u32("tx.version")?,
                commitment: Hash(d.array("tx.commitment")?),
                issued_ms: d.u64("tx.issued_ms")?,
            },
            2 => TxBody::RecordRevoke {
                record_type: d.str("tx.record_type", MAX_ID)?.to_owned(),
                record_id: d.str("tx.record_id", MAX_ID)?.to_owned(),
                version: d.u32("tx.version")?,
                reason: match d.u8("tx.reason")? {
                    1 => RevokeReason::Revoked,
                    2 => RevokeReason::Superseded,
                    v => return Err(DecodeError::UnknownTag { field: "tx.reason", value: u64::from(v) }),
                },
                at_ms: d.u64("tx.at_ms")?,
            },
            v => return Err(DecodeError::UnknownTag { field: "tx.kind", value: u64::from(v) }),
        })
    }
}

/// A signed transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Transaction {
    /// The chain it is written to.
    pub chain_id: String,
    /// Registry id of the author.
    pub author: String,
    /// What it says.
    pub body: TxBody,
    /// The author's signature over [`Transaction::signing_bytes`].
    pub signature: Signature,
}

/// Why a transaction is not accepted as authored.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TxError {
    /// The author is not in the registry.
    #[error("author `{0}` is not a registry member")]
    UnknownAuthor(String),
    /// The author may not write this kind of transaction.
    #[error("author `{author}` is a {found:?}; this transaction needs a {expected:?}")]
    Role {
        /// Author id.
        author: String,
        /// Role required.
        expected: Role,
        /// Author's role.
        found: Role,
    },
    /// The signature does not verify under the author's registry key.
    #[error("author `{0}`'s signature does not verify")]
    Signature(String),
    /// The transaction is for another chain than the one it is in.
    #[error("transaction is for chain `{found}`, found in chain `{expected}`")]
    Chain {
        /// The chain it was found in.
        expected: String,
        /// The chain it names.
        found: String,
    },
}

impl Transaction {
    /// Creates and signs a transaction.
    pub fn sign(chain_id: &str, author: &str, body: TxBody, key: &SigningKey) -> Self {
        let mut tx = Transaction {
            chain_id: chain_id.to_owned(),
            author: author.to_owned(),
            body,
            signature: Signature([0; 64]),
        };
        tx.signature = key.sign(&tx.signing_bytes());
        tx
    }
    /// The bytes the author signs.
    pub fn signing_bytes(&self) -> Vec<u8> {
        let mut e = Encoder::with_domain(TX_DOMAIN);
        e.str(&self.chain_id).str(&self.author);
        self.body.write(&mut e);
        e.finish()
    }
    /// The canonical bytes (signing bytes followed by the signature): the Merkle leaf data.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = self.signing_bytes();
        b.extend_from_slice(&self.signature.0);
        b
    }
    /// Decodes canonical bytes (at most [`MAX_TX_BYTES`], nothing trailing).
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.len() > MAX_TX_BYTES {
            return Err(DecodeError::TooLong { field: "tx", len: bytes.len() as u64, max: MAX_TX_BYTES as u64 });
        }
        let mut d = Decoder::new(bytes);
        d.domain(TX_DOMAIN)?;
        let chain_id = d.str("tx.chain_id", MAX_CHAIN_ID)?.to_owned();
        let author = d.str("tx.author", MAX_ID)?.to_owned();
        let body = TxBody::read(&mut d)?;
        let signature = Signature(d.array("tx.signature")?);
        d.finish()?;
        Ok(Transaction { chain_id, author, body, signature })
    }
    /// The Merkle leaf hash of this transaction.
    pub fn leaf_hash(&self) -> Hash {
        crate::merkle::leaf_hash(&self.encode())
    }
    /// Checks the author: a registry member of the right role whose key signed it.
    pub fn verify_author(&self, roots: &TrustRoots) -> Result<(), TxError> {
        let m = roots.members.get(&self.author).ok_or_else(|| TxError::UnknownAuthor(self.author.clone()))?;
        let expected = self.body.author_role();
        if m.role != expected {
            return Err(TxError::Role { author: self.author.clone(), expected, found: m.role });
        }
        m.signing.verify(&self.signing_bytes(), &self.signature).map_err(|_| TxError::Signature(self.author.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::test_seed;
    use crate::trust::Member;

    fn body() -> TxBody {
        TxBody::RecordCommit {
            record_type: "marriage".into(),
            record_id: "J320102-2019-001234".into(),
            subject: SubjectRef(Hash([4; 32])),
            version: 1,
            commitment: Hash([5; 32]),
            issued_ms: 1_558_310_400_000,
        }
    }

    #[test]
    fn codec_round_trip_and_author_checks() {
        let key = SigningKey::from_seed(&test_seed("nanjing.civil-affairs"));
        let tx = Transaction::sign("nanjing", "nanjing.civil-affairs", body(), &key);
        assert_eq!(Transaction::decode(&tx.encode()).unwrap(), tx);
        let revoke = Transaction::sign(
            "nanjing",
            "nanjing.civil-affairs",
            TxBody::RecordRevoke {
                record_type: "marriage".into(),
                record_id: "x".into(),
                version: 1,
                reason: RevokeReason::Superseded,
                at_ms: 9,
            },
            &key,
        );
        assert_eq!(Transaction::decode(&revoke.encode()).unwrap(), revoke);

        let member = Member {
            id: "nanjing.civil-affairs".into(),
            role: Role::Department,
            city: "nanjing".into(),
            signing: key.public(),
            hpke: None,
        };
        let roots = TrustRoots::new(Hash([0; 32])).with_member(member.clone());
        tx.verify_author(&roots).unwrap();
        let mut forged = tx.clone();
        forged.body = TxBody::RecordCommit {
            record_type: "marriage".into(),
            record_id: "other".into(),
            subject: SubjectRef(Hash([4; 32])),
            version: 1,
            commitment: Hash([5; 32]),
            issued_ms: 0,
        };
        assert_eq!(forged.verify_author(&roots), Err(TxError::Signature("nanjing.civil-affairs".into())));
        let roots2 = TrustRoots::new(Hash([0; 32])).with_member(Member { role: Role::Utility, ..member });
        assert!(matches!(tx.verify_author(&roots2), Err(TxError::Role { .. })));
        assert!(matches!(tx.verify_author(&TrustRoots::new(Hash([0; 32]))), Err(TxError::UnknownAuthor(_))));
    }

    #[test]
    fn decode_refusals() {
        let key = SigningKey::from_seed(&test_seed("d"));
        let bytes = Transaction::sign("c", "d", body(), &key).encode();
        for cut in 0..bytes.len() {
            assert!(Transaction::decode(&bytes[..cut]).is_err());
        }
        let mut extra = bytes.clone();
        extra.push(0);
        assert_eq!(Transaction::decode(&extra), Err(DecodeError::Trailing(1)));
        assert!(Transaction::decode(&vec![0; MAX_TX_BYTES + 1]).is_err());
    }
}
