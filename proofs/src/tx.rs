//! Ledger transactions: typed bodies signed by their author.
//!
//! Bytes of a transaction (also its Merkle leaf data):
//! `signing bytes ‖ authorization`, where the signing bytes are
//! `enc("tongban/tx/v1") ‖ str(chain_id) ‖ str(author) ‖ u8(kind) ‖ body`.
//! The chain id inside the signed bytes means a transaction can never be
//! replayed onto another chain.
//!
//! The authorization is either the author's own signature over the signing
//! bytes (`01 ‖ signature[64]`), or — for bulk writes, X-Road's trick — a place
//! in a **batch** (`02 ‖ root[32] ‖ u32(index)`): the author signed once, in a
//! [`TxBody::BatchSeal`] transaction, the Merkle root over the leaf hashes of the
//! members' signing bytes, and each member proves its place with a path.

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
/// Most subjects one record may name.
pub const MAX_SUBJECTS: usize = 8;
/// Longest receipt reason, in bytes.
pub const MAX_REASON: usize = 1024;
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
        /// Keyed references to the record's subjects (1 to [`MAX_SUBJECTS`], sorted,
        /// distinct): a marriage has two parties, a title may have co-owners.
        subjects: Vec<SubjectRef>,
        /// Version, from 1; a higher version supersedes the lower ones.
        version: u32,
        /// Root over the salted field leaves (see [`crate::commitment`]).
        commitment: Hash,
        /// When the record was issued (Unix ms).
        issued_ms: u64,
    },
    /// The author's signature over a batch of transactions authorised by it.
    BatchSeal {
        /// RFC 6962 root over `leaf_hash(signing bytes)` of the members, in order.
        root: Hash,
        /// Number of members.
        count: u32,
    },
    /// A gateway records, before it answers, that a question was asked of one
    /// of its city's departments about some subjects (the subject's access
    /// ledger is built from these).
    AccessLog {
        /// Registry id of who asked (a department or service centre).
        requester: String,
        /// Registry id of the department asked.
        provider: String,
        /// The data-sharing contract invoked.
        contract: String,
        /// Its version.
        contract_version: u32,
        /// The subjects asked about (keyed references; 1 to [`MAX_SUBJECTS`]).
        subjects: Vec<SubjectRef>,
        /// SHA-256 of the canonical question (predicates and fields asked).
        question: Hash,
        /// Commitment to the answer or the denial.
        answer: Hash,
        /// The request's unique id.
        request_id: Hash,
        /// When (Unix ms).
        at_ms: u64,
    },
    /// A service centre's gateway records one step of an application (a
    /// one-stop bundle) on the centre's chain.
    ApplicationStep {
        /// The application's id.
        application: Hash,
        /// The bundle.
        bundle: String,
        /// What happened, e.g. `submitted`, `evidence.answered`, `decided`.
        step: String,
        /// Which evidence or service, or empty.
        item: String,
        /// A digest binding the step's details (e.g. the answer commitment).
        detail: Hash,
        /// When (Unix ms).
        at_ms: u64,
    },
    /// A utility (or department) closes a service request with its receipt.
    ServiceReceipt {
        /// The delivery's id.
        delivery: Hash,
        /// The application it belongs to.
        application: Hash,
        /// The service id in the bundle.
        service: String,
        /// SHA-256 of the sealed request as delivered.
        request: Hash,
        /// Whether the request was accepted.
        accepted: bool,
        /// The reason (rejections), at most 1,024 bytes.
        reason: String,
        /// When (Unix ms).
        at_ms: u64,
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

fn read_subjects(d: &mut Decoder<'_>) -> Result<Vec<SubjectRef>, DecodeError> {
    let n = d.count("tx.subjects", MAX_SUBJECTS, 32)?;
    let mut out: Vec<SubjectRef> = Vec::with_capacity(n);
    for _ in 0..n {
        let s = SubjectRef(Hash(d.array("tx.subjects")?));
        if out.last().is_some_and(|p| *p >= s) {
            return Err(DecodeError::Invalid {
                field: "tx.subjects",
                reason: "subjects must be sorted and distinct".into(),
            });
        }
        out.push(s);
    }
    if out.is_empty() {
        return Err(DecodeError::Invalid {
            field: "tx.subjects",
            reason: "a record names at least one subject".into(),
        });
    }
    Ok(out)
}

impl TxBody {
    fn kind(&self) -> u8 {
        match self {
            TxBody::RecordCommit { .. } => 1,
            TxBody::RecordRevoke { .. } => 2,
            TxBody::BatchSeal { .. } => 3,
            TxBody::AccessLog { .. } => 4,
            TxBody::ApplicationStep { .. } => 5,
            TxBody::ServiceReceipt { .. } => 6,
        }
    }
    /// The roles that may author this kind of transaction.
    pub fn author_roles(&self) -> &'static [Role] {
        match self {
            TxBody::RecordCommit { .. } | TxBody::RecordRevoke { .. } => &[Role::Department],
            TxBody::AccessLog { .. } | TxBody::ApplicationStep { .. } => &[Role::Gateway],
            TxBody::ServiceReceipt { .. } => &[Role::Utility, Role::Department],
            TxBody::BatchSeal { .. } => &[
                Role::Department,
                Role::Gateway,
                Role::ServiceCentre,
                Role::Utility,
            ],
        }
    }
    /// A short English name of the kind.
    pub fn kind_name(&self) -> &'static str {
        match self {
            TxBody::RecordCommit { .. } => "record commitment",
            TxBody::RecordRevoke { .. } => "record revocation",
            TxBody::BatchSeal { .. } => "batch seal",
            TxBody::AccessLog { .. } => "access-log entry",
            TxBody::ApplicationStep { .. } => "application step",
            TxBody::ServiceReceipt { .. } => "service receipt",
        }
    }
    fn write(&self, e: &mut Encoder) {
        e.u8(self.kind());
        match self {
            TxBody::RecordCommit {
                record_type,
                record_id,
                subjects,
                version,
                commitment,
                issued_ms,
            } => {
                e.str(record_type).str(record_id).count(subjects.len());
                for s in subjects {
                    e.raw(&s.0.0);
                }
                e.u32(*version).raw(&commitment.0).u64(*issued_ms);
            }
            TxBody::RecordRevoke {
                record_type,
                record_id,
                version,
                reason,
                at_ms,
            } => {
                let r = match reason {
                    RevokeReason::Revoked => 1,
                    RevokeReason::Superseded => 2,
                };
                e.str(record_type)
                    .str(record_id)
                    .u32(*version)
                    .u8(r)
                    .u64(*at_ms);
            }
            TxBody::BatchSeal { root, count } => {
                e.raw(&root.0).u32(*count);
            }
            TxBody::AccessLog {
                requester,
                provider,
                contract,
                contract_version,
                subjects,
                question,
                answer,
                request_id,
                at_ms,
            } => {
                e.str(requester)
                    .str(provider)
                    .str(contract)
                    .u32(*contract_version)
                    .count(subjects.len());
                for s in subjects {
                    e.raw(&s.0.0);
                }
                e.raw(&question.0)
                    .raw(&answer.0)
                    .raw(&request_id.0)
                    .u64(*at_ms);
            }
            TxBody::ApplicationStep {
                application,
                bundle,
                step,
                item,
                detail,
                at_ms,
            } => {
                e.raw(&application.0)
                    .str(bundle)
                    .str(step)
                    .str(item)
                    .raw(&detail.0)
                    .u64(*at_ms);
            }
            TxBody::ServiceReceipt {
                delivery,
                application,
                service,
                request,
                accepted,
                reason,
                at_ms,
            } => {
                e.raw(&delivery.0)
                    .raw(&application.0)
                    .str(service)
                    .raw(&request.0)
                    .u8(u8::from(*accepted))
                    .str(reason)
                    .u64(*at_ms);
            }
        }
    }
    fn read(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(match d.u8("tx.kind")? {
            1 => TxBody::RecordCommit {
                record_type: d.str("tx.record_type", MAX_ID)?.to_owned(),
                record_id: d.str("tx.record_id", MAX_ID)?.to_owned(),
                subjects: read_subjects(d)?,
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
                    v => {
                        return Err(DecodeError::UnknownTag {
                            field: "tx.reason",
                            value: u64::from(v),
                        });
                    }
                },
                at_ms: d.u64("tx.at_ms")?,
            },
            3 => TxBody::BatchSeal {
                root: Hash(d.array("tx.batch_root")?),
                count: d.u32("tx.batch_count")?,
            },
            4 => TxBody::AccessLog {
                requester: d.str("tx.requester", MAX_ID)?.to_owned(),
                provider: d.str("tx.provider", MAX_ID)?.to_owned(),
                contract: d.str("tx.contract", MAX_ID)?.to_owned(),
                contract_version: d.u32("tx.contract_version")?,
                subjects: read_subjects(d)?,
                question: Hash(d.array("tx.question")?),
                answer: Hash(d.array("tx.answer")?),
                request_id: Hash(d.array("tx.request_id")?),
                at_ms: d.u64("tx.at_ms")?,
            },
            5 => TxBody::ApplicationStep {
                application: Hash(d.array("tx.application")?),
                bundle: d.str("tx.bundle", MAX_ID)?.to_owned(),
                step: d.str("tx.step", MAX_ID)?.to_owned(),
                item: d.str("tx.item", MAX_ID)?.to_owned(),
                detail: Hash(d.array("tx.detail")?),
                at_ms: d.u64("tx.at_ms")?,
            },
            6 => TxBody::ServiceReceipt {
                delivery: Hash(d.array("tx.delivery")?),
                application: Hash(d.array("tx.application")?),
                service: d.str("tx.service", MAX_ID)?.to_owned(),
                request: Hash(d.array("tx.request")?),
                accepted: match d.u8("tx.accepted")? {
                    0 => false,
                    1 => true,
                    v => {
                        return Err(DecodeError::UnknownTag {
                            field: "tx.accepted",
                            value: u64::from(v),
                        });
                    }
                },
                reason: d.str("tx.reason", MAX_REASON)?.to_owned(),
                at_ms: d.u64("tx.at_ms")?,
            },
            v => {
                return Err(DecodeError::UnknownTag {
                    field: "tx.kind",
                    value: u64::from(v),
                });
            }
        })
    }
}

/// How the author authorised a transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Authorization {
    /// The author's signature over [`Transaction::signing_bytes`].
    Signed(Signature),
    /// Member `index` of the batch with this root, sealed by a [`TxBody::BatchSeal`].
    Batched {
        /// The batch root the author signed.
        root: Hash,
        /// This transaction's place in the batch.
        index: u32,
    },
}

/// An authorised transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Transaction {
    /// The chain it is written to.
    pub chain_id: String,
    /// Registry id of the author.
    pub author: String,
    /// What it says.
    pub body: TxBody,
    /// The author's signature, or its place in a sealed batch.
    pub auth: Authorization,
}

/// Most members one batch may have.
pub const MAX_BATCH: u32 = 1 << 16;

/// Why a transaction is not accepted as authored.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TxError {
    /// The author is not in the registry.
    #[error("author `{0}` is not a registry member")]
    UnknownAuthor(String),
    /// The author may not write this kind of transaction.
    #[error("author `{author}` is a {found:?}; this transaction needs one of {expected:?}")]
    Role {
        /// Author id.
        author: String,
        /// Roles allowed.
        expected: &'static [Role],
        /// Author's role.
        found: Role,
    },
    /// The author belongs to another city's chain.
    #[error("author `{author}` writes to chain `{expected}`, not `{found}`")]
    ForeignChain {
        /// Author id.
        author: String,
        /// The author's chain.
        expected: String,
        /// The transaction's chain.
        found: String,
    },
    /// A department writing a record type it does not own.
    #[error("author `{author}` does not own record type `{record_type}`")]
    NotOwner {
        /// Author id.
        author: String,
        /// The record type.
        record_type: String,
    },
    /// A batched transaction checked as if it carried its own signature.
    #[error("transaction is authorised by a batch; its seal and path are needed")]
    NeedsBatch,
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
        let signature = key.sign(&signing_bytes(chain_id, author, &body));
        Transaction {
            chain_id: chain_id.to_owned(),
            author: author.to_owned(),
            body,
            auth: Authorization::Signed(signature),
        }
    }
    /// Authorises many bodies with one signature: returns the signed seal and the
    /// members, each pointing at the batch root. Use [`batch_member_proof`] to prove
    /// a member's place.
    ///
    /// # Panics
    /// If `bodies` is empty or longer than [`MAX_BATCH`] (a caller mistake).
    pub fn batch(
        chain_id: &str,
        author: &str,
        bodies: Vec<TxBody>,
        key: &SigningKey,
    ) -> (Transaction, Vec<Transaction>) {
        assert!(
            !bodies.is_empty() && bodies.len() <= MAX_BATCH as usize,
            "batch of {} members",
            bodies.len()
        );
        let leaves: Vec<Hash> = bodies
            .iter()
            .map(|b| crate::merkle::leaf_hash(&signing_bytes(chain_id, author, b)))
            .collect();
        let root = crate::merkle::MerkleTree::from_leaf_hashes(&leaves).root();
        let count = bodies.len() as u32;
        let members = bodies
            .into_iter()
            .enumerate()
            .map(|(i, body)| Transaction {
                chain_id: chain_id.to_owned(),
                author: author.to_owned(),
                body,
                auth: Authorization::Batched {
                    root,
                    index: i as u32,
                },
            })
            .collect();
        (
            Transaction::sign(chain_id, author, TxBody::BatchSeal { root, count }, key),
            members,
        )
    }
    /// The bytes the author signs (or whose leaf hash goes into a batch).
    pub fn signing_bytes(&self) -> Vec<u8> {
        signing_bytes(&self.chain_id, &self.author, &self.body)
    }
    /// The canonical bytes (signing bytes, then the authorization): the Merkle leaf data.
    pub fn encode(&self) -> Vec<u8> {
        let mut e = Encoder::new();
        e.raw(&self.signing_bytes());
        match &self.auth {
            Authorization::Signed(sig) => e.u8(1).raw(&sig.0),
            Authorization::Batched { root, index } => e.u8(2).raw(&root.0).u32(*index),
        };
        e.finish()
    }
    /// Decodes canonical bytes (at most [`MAX_TX_BYTES`], nothing trailing).
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.len() > MAX_TX_BYTES {
            return Err(DecodeError::TooLong {
                field: "tx",
                len: bytes.len() as u64,
                max: MAX_TX_BYTES as u64,
            });
        }
        let mut d = Decoder::new(bytes);
        d.domain(TX_DOMAIN)?;
        let chain_id = d.str("tx.chain_id", MAX_CHAIN_ID)?.to_owned();
        let author = d.str("tx.author", MAX_ID)?.to_owned();
        let body = TxBody::read(&mut d)?;
        let auth = match d.u8("tx.auth")? {
            1 => Authorization::Signed(Signature(d.array("tx.signature")?)),
            2 => Authorization::Batched {
                root: Hash(d.array("tx.batch_root")?),
                index: d.u32("tx.batch_index")?,
            },
            v => {
                return Err(DecodeError::UnknownTag {
                    field: "tx.auth",
                    value: u64::from(v),
                });
            }
        };
        d.finish()?;
        Ok(Transaction {
            chain_id,
            author,
            body,
            auth,
        })
    }
    /// The Merkle leaf hash of this transaction.
    pub fn leaf_hash(&self) -> Hash {
        crate::merkle::leaf_hash(&self.encode())
    }
    /// Checks the author's authority (not its signature): a registry member whose
    /// role may write this kind, on its own city's chain, and for records, the
    /// owner of the record type.
    pub fn verify_role<'r>(
        &self,
        roots: &'r TrustRoots,
    ) -> Result<&'r crate::trust::Member, TxError> {
        let m = roots
            .members
            .get(&self.author)
            .ok_or_else(|| TxError::UnknownAuthor(self.author.clone()))?;
        let expected = self.body.author_roles();
        if !expected.contains(&m.role) {
            return Err(TxError::Role {
                author: self.author.clone(),
                expected,
                found: m.role,
            });
        }
        if m.chain != self.chain_id {
            return Err(TxError::ForeignChain {
                author: self.author.clone(),
                expected: m.chain.clone(),
                found: self.chain_id.clone(),
            });
        }
        if let TxBody::RecordCommit { record_type, .. } | TxBody::RecordRevoke { record_type, .. } =
            &self.body
            && !m.owns.iter().any(|t| t == record_type)
        {
            return Err(TxError::NotOwner {
                author: self.author.clone(),
                record_type: record_type.clone(),
            });
        }
        Ok(m)
    }
    /// Checks a self-signed transaction: a registry member of the right role whose
    /// key signed it. A batched transaction needs [`verify_batch_member`] instead.
    pub fn verify_author(&self, roots: &TrustRoots) -> Result<(), TxError> {
        let m = self.verify_role(roots)?;
        let Authorization::Signed(sig) = &self.auth else {
            return Err(TxError::NeedsBatch);
        };
        m.signing
            .verify(&self.signing_bytes(), sig)
            .map_err(|_| TxError::Signature(self.author.clone()))
    }
}

/// The signing bytes of a body by `author` on `chain_id`.
pub fn signing_bytes(chain_id: &str, author: &str, body: &TxBody) -> Vec<u8> {
    let mut e = Encoder::with_domain(TX_DOMAIN);
    e.str(chain_id).str(author);
    body.write(&mut e);
    e.finish()
}

/// The proof of member `index`'s place in a batch (over the members' signing bytes).
///
/// # Panics
/// If `index` is out of range.
pub fn batch_member_proof(members: &[Transaction], index: usize) -> crate::merkle::InclusionProof {
    let leaves: Vec<Hash> = members
        .iter()
        .map(|m| crate::merkle::leaf_hash(&m.signing_bytes()))
        .collect();
    crate::merkle::MerkleTree::from_leaf_hashes(&leaves)
        .inclusion_proof(index)
        .unwrap_or_else(|| panic!("batch member {index} out of range"))
}

/// Why a batched transaction is not authorised by its seal.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BatchError {
    /// The transaction is not a batch member.
    #[error("transaction carries its own signature, not a batch place")]
    NotBatched,
    /// The seal transaction is not a batch seal.
    #[error("the seal is a {0}, not a batch seal")]
    NotASeal(&'static str),
    /// A batch seal must carry its own signature, never a place in a batch.
    #[error("a batch seal cannot itself be a batch member")]
    SealInBatch,
    /// Seal and member differ in author or chain.
    #[error(
        "seal by `{seal}` on `{seal_chain}` does not cover a member by `{member}` on `{member_chain}`"
    )]
    Mismatch {
        /// Seal author.
        seal: String,
        /// Seal chain.
        seal_chain: String,
        /// Member author.
        member: String,
        /// Member chain.
        member_chain: String,
    },
    /// The seal's root is not the member's root.
    #[error("seal root {sealed} differs from the member's batch root {claimed}")]
    Root {
        /// Root in the seal.
        sealed: Hash,
        /// Root in the member.
        claimed: Hash,
    },
    /// The path's index or size do not match the member's index and the seal's count.
    #[error(
        "member path is for place {index} of {size}; the member claims place {claimed} of a batch of {count}"
    )]
    Place {
        /// Path index.
        index: u64,
        /// Path size.
        size: u64,
        /// Index the member claims.
        claimed: u32,
        /// Count the seal states.
        count: u32,
    },
    /// The member's signing bytes are not at that place under the root.
    #[error("member is not in the sealed batch: {0}")]
    Path(crate::merkle::MerkleError),
}

/// Checks that `member` is authorised by `seal` (an already verified, self-signed
/// batch seal): same author and chain, same root, and `path` proves the member's
/// signing bytes at its index.
pub fn verify_batch_member(
    member: &Transaction,
    seal: &Transaction,
    path: &crate::merkle::InclusionProof,
) -> Result<(), BatchError> {
    let Authorization::Batched { root, index } = member.auth else {
        return Err(BatchError::NotBatched);
    };
    if let TxBody::BatchSeal { .. } = member.body {
        return Err(BatchError::SealInBatch);
    }
    let TxBody::BatchSeal {
        root: sealed,
        count,
    } = seal.body
    else {
        return Err(BatchError::NotASeal(seal.body.kind_name()));
    };
    if seal.author != member.author || seal.chain_id != member.chain_id {
        return Err(BatchError::Mismatch {
            seal: seal.author.clone(),
            seal_chain: seal.chain_id.clone(),
            member: member.author.clone(),
            member_chain: member.chain_id.clone(),
        });
    }
    if sealed != root {
        return Err(BatchError::Root {
            sealed,
            claimed: root,
        });
    }
    if path.index != u64::from(index) || path.size != u64::from(count) {
        return Err(BatchError::Place {
            index: path.index,
            size: path.size,
            claimed: index,
            count,
        });
    }
    let leaf = crate::merkle::leaf_hash(&member.signing_bytes());
    crate::merkle::verify_inclusion(&leaf.0, path, &root.0).map_err(BatchError::Path)
}

impl Transaction {
    /// The signature, if the transaction carries its own.
    pub fn signature(&self) -> Option<&Signature> {
        match &self.auth {
            Authorization::Signed(s) => Some(s),
            Authorization::Batched { .. } => None,
        }
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
            subjects: vec![SubjectRef(Hash([4; 32]))],
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
        let log = Transaction::sign(
            "nanjing",
            "nanjing.gateway",
            TxBody::AccessLog {
                requester: "shanghai.centre".into(),
                provider: "nanjing.civil-affairs".into(),
                contract: "marriage-status".into(),
                contract_version: 1,
                subjects: vec![SubjectRef(Hash([4; 32]))],
                question: Hash([6; 32]),
                answer: Hash([7; 32]),
                request_id: Hash([8; 32]),
                at_ms: 10,
            },
            &key,
        );
        assert_eq!(Transaction::decode(&log.encode()).unwrap(), log);
        let step = Transaction::sign(
            "shanghai",
            "shanghai.gateway",
            TxBody::ApplicationStep {
                application: Hash([1; 32]),
                bundle: "house-transfer".into(),
                step: "evidence.answered".into(),
                item: "seller-title".into(),
                detail: Hash([2; 32]),
                at_ms: 11,
            },
            &key,
        );
        assert_eq!(Transaction::decode(&step.encode()).unwrap(), step);
        let receipt = Transaction::sign(
            "nanjing",
            "nanjing.gas",
            TxBody::ServiceReceipt {
                delivery: Hash([3; 32]),
                application: Hash([1; 32]),
                service: "gas-transfer".into(),
                request: Hash([9; 32]),
                accepted: false,
                reason: "no such account".into(),
                at_ms: 12,
            },
            &key,
        );
        assert_eq!(Transaction::decode(&receipt.encode()).unwrap(), receipt);
        // The accepted flag is 0 or 1 and nothing else.
        let mut bytes = receipt.encode();
        let at = bytes.len() - 64 - 1 - 8 - 4 - "no such account".len() - 1;
        assert_eq!(bytes[at], 0);
        bytes[at] = 2;
        assert!(Transaction::decode(&bytes).is_err());

        let member = Member {
            id: "nanjing.civil-affairs".into(),
            role: Role::Department,
            city: "nanjing".into(),
            chain: "nanjing".into(),
            owns: vec!["marriage".into()],
            signing: key.public(),
            hpke: None,
        };
        let roots = TrustRoots::new(Hash([0; 32])).with_member(member.clone());
        tx.verify_author(&roots).unwrap();
        let mut forged = tx.clone();
        forged.body = TxBody::RecordCommit {
            record_type: "marriage".into(),
            record_id: "other".into(),
            subjects: vec![SubjectRef(Hash([4; 32]))],
            version: 1,
            commitment: Hash([5; 32]),
            issued_ms: 0,
        };
        assert_eq!(
            forged.verify_author(&roots),
            Err(TxError::Signature("nanjing.civil-affairs".into()))
        );
        let roots2 = TrustRoots::new(Hash([0; 32])).with_member(Member {
            role: Role::Utility,
            ..member
        });
        assert!(matches!(
            tx.verify_author(&roots2),
            Err(TxError::Role { .. })
        ));
        assert!(matches!(
            tx.verify_author(&TrustRoots::new(Hash([0; 32]))),
            Err(TxError::UnknownAuthor(_))
        ));
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
