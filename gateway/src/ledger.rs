//! The embedded city ledger: certified blocks of author-signed transactions on
//! a [`Store`], with the department record store beside them.
//!
//! One writer ([`crate::writer`]) applies [`Intent`]s in blocks: it checks each
//! intent against the current state, cuts a block over the accepted
//! transactions, has it endorsed, and commits block, header, certificate,
//! record values and indexes in **one atomic, flushed batch** before anyone is
//! told. On open the whole chain is checked against its certificates, hash
//! links and tx roots; corruption is refused, never served.
//!
//! Key layout (one keyspace, one-byte prefixes):
//!
//! | key | value |
//! |---|---|
//! | `M` `chain` | chain id |
//! | `H` height | certified header |
//! | `T` height | the block's transactions, packed (`u32 n ‖ u32 offsets[n+1] ‖ bytes`) |
//! | `N` height | the block's tree levels ([`proofs::merkle::flat_levels`]) |
//! | `V` height | the block's stored records (values, record secret, subjects), packed like `T` |
//! | `K` height | (stores of earlier versions only) the block's secondary-index entries, until a run of [`crate::index`] covers them |
//! | `S` record key | the record's revocations (the latest version is its last `R` entry) |
//! | `M` `index-floor` | the height up to which `K` values were dropped (runs hold them) |
//! | `M` `layout` | the layout version of this table (`3`) |
//! | `Q` request id | an access-log entry's location and the state kept to answer a resend |
//! | `A` subject ref at_ms request id | an access-log entry's location |
//! | `W` requester-contract hash day | access-log entries written for them that day ([`Ledger::access_volume`]) |
//!
//! Every `V` item (a stored record) is sealed under the gateway's data key
//! ([`crate::datakey`]): encrypted at rest, bound to its chain, record key and
//! version, its tag the item's checksum. [`Ledger::record_version`] opens it
//! and checks it against the commitment on chain before anything uses it; a
//! value that fails is refused (`store.corrupt`), never served.
//!
//! `T` and `V` are written as packs ([`WriteBatch::put_pack`]): when a block's
//! packs come to 64 KiB or more, the sled store keeps them in its append-only
//! value log ([`crate::valuelog`]) and only a pointer in the tree; they are
//! read one item at a time ([`Store::pack_item`]).
//!
//! The secondary-index entries are not store keys of their own (one small
//! sled insert per entry was the writer's bottleneck) but entries of
//! [`crate::index::Index`], derived from the block's transactions (and
//! derived again from the stored `T` pack after a crash):
//!
//! | entry | value |
//! |---|---|
//! | `X` leaf hash | height, index |
//! | `R` record key `00` version | height, index of the record's slot |
//! | `J` subject ref record key | (empty) |
//! | `B` batch root | seal location, first member, count |
//! | `L` batch root | the batch's tree levels (member paths) |

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{BuildHasher, Hasher};
use std::sync::{Arc, RwLock};

use proofs::bundle::ProofBundle;
use proofs::hash::Hash;
use proofs::header::{Certificate, CertifiedHeader, Header, verify_certificate, verify_link};
use proofs::merkle::{self, flat_levels, proof_from_levels};
use proofs::subject::{SubjectId, SubjectRef};
use proofs::trust::ChainTrust;
use proofs::tx::{RevokeReason, Transaction};
use proofs::{SigningKey, Value};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::datakey::{DataKeys, record_aad};
use crate::index::{Index, IndexConfig};
use crate::store::{Store, StoreError, WriteBatch, packed_count, packed_item};

/// Why the ledger cannot be used or a write failed.
#[derive(Debug, Error)]
pub enum LedgerError {
    /// The storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The stored chain does not verify: refused, never served.
    #[error("ledger corrupt at height {height}: {problem}")]
    Corrupt {
        /// First height that failed.
        height: u64,
        /// What failed.
        problem: String,
    },
    /// The store belongs to another chain.
    #[error("store holds chain `{found}`, this gateway runs `{expected}`")]
    WrongChain {
        /// Configured chain.
        expected: String,
        /// Stored chain.
        found: String,
    },
    /// The endorsers could not certify a block.
    #[error("endorsement failed: {0}")]
    Endorse(String),
    /// The writer has stopped after a failure.
    #[error("the ledger writer has stopped")]
    Stopped,
    /// A stored value failed its check (tag, decoding or commitment on
    /// chain): the record is refused, never served.
    #[error("store.corrupt: stored value at height {height}: {problem}")]
    CorruptValue {
        /// The block the value belongs to.
        height: u64,
        /// What failed.
        problem: String,
    },
    /// The data directory's file system is full: nothing was written.
    #[error("store.full: {0}")]
    Full(String),
    /// The store's values are sealed under a data key that is not configured.
    #[error("data key: {0}")]
    DataKey(String),
}

impl LedgerError {
    /// Stable code: `store.corrupt`, `store.full`, or `internal`.
    pub fn code(&self) -> &'static str {
        match self {
            LedgerError::CorruptValue { .. } => "store.corrupt",
            LedgerError::Full(_) | LedgerError::Store(StoreError::Full(_)) => "store.full",
            _ => "internal",
        }
    }
    /// The same error for another waiter (the writer answers every sender of
    /// a failed block), keeping its code.
    pub fn for_waiter(&self) -> LedgerError {
        match self {
            LedgerError::CorruptValue { height, problem } => LedgerError::CorruptValue {
                height: *height,
                problem: problem.clone(),
            },
            LedgerError::Full(m) => LedgerError::Full(m.clone()),
            LedgerError::Store(StoreError::Full(m)) => LedgerError::Full(m.clone()),
            e => LedgerError::Endorse(e.to_string()),
        }
    }
}

/// Signs headers for the chain. The embedded default holds the endorser keys
/// locally; a remote implementation can collect signatures over the network.
pub trait Endorser: Send + Sync {
    /// A certificate for `header` with at least the chain's threshold of signatures.
    fn endorse(&self, header: &Header) -> Result<Certificate, LedgerError>;
}

/// Endorser keys held by this gateway, with their indices in the registry.
pub struct LocalEndorsers {
    keys: Vec<(u16, SigningKey)>,
}

impl LocalEndorsers {
    /// Endorsers from `(registry index, key)` pairs.
    pub fn new(keys: Vec<(u16, SigningKey)>) -> Self {
        LocalEndorsers { keys }
    }
}

impl Endorser for LocalEndorsers {
    fn endorse(&self, header: &Header) -> Result<Certificate, LedgerError> {
        let refs: Vec<(u16, &SigningKey)> = self.keys.iter().map(|(i, k)| (*i, k)).collect();
        Ok(Certificate::sign(header, &refs))
    }
}

/// Where a transaction is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxLocation {
    /// Block height.
    pub height: u64,
    /// Index in the block.
    pub index: u32,
    /// Leaf hash of the transaction.
    pub leaf: Hash,
}

/// A department's record: department, type and id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RecordKey {
    /// Owning department.
    pub department: String,
    /// Record type.
    pub record_type: String,
    /// The department's id for the record.
    pub record_id: String,
}

impl RecordKey {
    fn bytes(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(
            self.department.len() + self.record_type.len() + self.record_id.len() + 2,
        );
        b.extend_from_slice(self.department.as_bytes());
        b.push(0);
        b.extend_from_slice(self.record_type.as_bytes());
        b.push(0);
        b.extend_from_slice(self.record_id.as_bytes());
        b
    }
    fn from_bytes(b: &[u8]) -> Option<Self> {
        let mut parts = b.splitn(3, |c| *c == 0);
        let d = std::str::from_utf8(parts.next()?).ok()?;
        let t = std::str::from_utf8(parts.next()?).ok()?;
        let i = std::str::from_utf8(parts.next()?).ok()?;
        Some(RecordKey {
            department: d.into(),
            record_type: t.into(),
            record_id: i.into(),
        })
    }
}

/// One version of a record as the department store keeps it (never on chain).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredRecord {
    /// Version.
    pub version: u32,
    /// The subjects' identifiers (personal data: shown to the owner only).
    pub subjects: Vec<SubjectId>,
    /// Their keyed references, as on chain.
    pub subject_refs: Vec<SubjectRef>,
    /// Field values.
    pub fields: BTreeMap<String, Value>,
    /// The record secret the salts derive from.
    #[serde(with = "proofs::hash::hex_array")]
    pub secret: [u8; 32],
    /// The commitment on chain.
    pub commitment: Hash,
    /// When the department issued it.
    pub issued_ms: u64,
    /// Where its commitment transaction is.
    pub location: Option<TxLocation>,
}

impl StoredRecord {
    /// Compact binary form for the department store (`proofs` canonical encoding
    /// rules; not signed, not on chain).
    pub fn encode(&self) -> Vec<u8> {
        let mut e = proofs::encoding::Encoder::with_domain("tongban/stored-record/v1");
        e.u32(self.version).count(self.subjects.len());
        for s in &self.subjects {
            e.bytes(&s.encode());
        }
        e.count(self.subject_refs.len());
        for r in &self.subject_refs {
            e.raw(&r.0.0);
        }
        e.count(self.fields.len());
        for (name, v) in &self.fields {
            e.str(name);
            v.encode(&mut e);
        }
        e.raw(&self.secret)
            .raw(&self.commitment.0)
            .u64(self.issued_ms);
        match &self.location {
            None => e.u8(0),
            Some(l) => e.u8(1).u64(l.height).u32(l.index).raw(&l.leaf.0),
        };
        e.finish()
    }
    /// Decodes [`StoredRecord::encode`].
    pub fn decode(b: &[u8]) -> Result<Self, proofs::encoding::DecodeError> {
        use proofs::encoding::{DecodeError, Decoder};
        let mut d = Decoder::new(b);
        d.domain("tongban/stored-record/v1")?;
        let version = d.u32("version")?;
        let n = d.count("subjects", 64, 5)?;
        let mut subjects = Vec::with_capacity(n);
        for _ in 0..n {
            let raw = d.bytes("subject", 512)?;
            let mut sd = Decoder::new(raw);
            let kind = match sd.u8("subject.kind")? {
                1 => proofs::subject::IdKind::Resident,
                2 => proofs::subject::IdKind::Uscc,
                3 => proofs::subject::IdKind::Name,
                v => {
                    return Err(DecodeError::UnknownTag {
                        field: "subject.kind",
                        value: u64::from(v),
                    });
                }
            };
            let id = sd.str("subject.id", 512)?;
            subjects.push(SubjectId::new(kind, id).map_err(|e| DecodeError::Invalid {
                field: "subject",
                reason: e.to_string(),
            })?);
        }
        let n = d.count("subject_refs", 64, 32)?;
        let mut subject_refs = Vec::with_capacity(n);
        for _ in 0..n {
            subject_refs.push(SubjectRef(Hash(d.array("subject_ref")?)));
        }
        let n = d.count("fields", 64, 6)?;
        let mut fields = BTreeMap::new();
        for _ in 0..n {
            let name = d.str("field.name", 64)?.to_owned();
            fields.insert(name, Value::decode(&mut d)?);
        }
        let secret = d.array("secret")?;
        let commitment = Hash(d.array("commitment")?);
        let issued_ms = d.u64("issued_ms")?;
        let location = match d.u8("location")? {
            0 => None,
            1 => Some(TxLocation {
                height: d.u64("height")?,
                index: d.u32("index")?,
                leaf: Hash(d.array("leaf")?),
            }),
            v => {
                return Err(DecodeError::UnknownTag {
                    field: "location",
                    value: u64::from(v),
                });
            }
        };
        d.finish()?;
        Ok(StoredRecord {
            version,
            subjects,
            subject_refs,
            fields,
            secret,
            commitment,
            issued_ms,
            location,
        })
    }
}

/// A revocation of one version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    /// The version revoked.
    pub version: u32,
    /// Why.
    pub reason: RevokeReason,
    /// When.
    pub at_ms: u64,
    /// Where the revocation transaction is.
    pub location: TxLocation,
}

/// The state of a record across versions.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordState {
    /// The highest version published.
    pub latest: u32,
    /// Revocations, in order.
    pub revocations: Vec<Revocation>,
}

impl RecordState {
    /// The version in force: the latest one, unless it was revoked.
    pub fn current(&self) -> Option<u32> {
        (self.latest > 0 && !self.is_revoked(self.latest)).then_some(self.latest)
    }
    /// True if `version` was revoked.
    pub fn is_revoked(&self, version: u32) -> bool {
        self.revocations.iter().any(|r| r.version == version)
    }
}

/// A transaction ready to be written: its bytes and leaf hash.
#[derive(Debug, Clone)]
pub struct PreparedTx {
    /// Canonical bytes.
    pub bytes: Vec<u8>,
    /// Leaf hash.
    pub leaf: Hash,
    /// The department-store value written beside it (a stored record; empty for
    /// other kinds). Set by the ledger.
    value: Vec<u8>,
}

impl PreparedTx {
    /// Prepares an (already verified) transaction.
    pub fn new(tx: &Transaction) -> Self {
        let bytes = tx.encode();
        PreparedTx {
            leaf: merkle::leaf_hash(&bytes),
            bytes,
            value: Vec::new(),
        }
    }
}

/// A publication of a record version.
#[derive(Debug, Clone)]
pub struct Publish {
    /// Which record.
    pub key: RecordKey,
    /// What the department store keeps.
    pub record: StoredRecord,
    /// Its commitment transaction.
    pub tx: PreparedTx,
}

/// A write the ledger is asked to make.
#[derive(Debug, Clone)]
pub enum Intent {
    /// Publish a record version.
    Publish(Box<Publish>),
    /// Revoke a record version.
    Revoke {
        /// Which record.
        key: RecordKey,
        /// Which version.
        version: u32,
        /// Why.
        reason: RevokeReason,
        /// When.
        at_ms: u64,
        /// The revocation transaction.
        tx: PreparedTx,
    },
    /// Publish many versions authorised by one batch seal (bulk import).
    Import {
        /// The seal transaction.
        seal: PreparedTx,
        /// Its root.
        root: Hash,
        /// The members, in batch order.
        members: Vec<Publish>,
        /// [`flat_levels`] of the members' leaves (the hashes of their signing
        /// bytes) as the caller computed them to check the seal: their top must
        /// be `root`.
        member_levels: Vec<u8>,
    },
    /// Record an access (a match answered or denied) before answering.
    Log(Box<AccessEntry>),
    /// Write a verified transaction together with the service state it
    /// changes (applications, inboxes), atomically in one block.
    Record {
        /// The transaction (already verified by the caller).
        tx: PreparedTx,
        /// State written in the same batch; keys must start with one of
        /// [`STATE_PREFIXES`].
        puts: Vec<(Vec<u8>, Vec<u8>)>,
    },
}

/// Key prefixes service state may use in [`Intent::Record`]: `P` applications,
/// `E` application evidence and receipts, `I` inboxes.
pub const STATE_PREFIXES: &[u8] = b"PEI";

/// An access-log entry with what the gateway keeps about the answer.
#[derive(Debug, Clone)]
pub struct AccessEntry {
    /// The access-log transaction (signed by this gateway).
    pub tx: PreparedTx,
    /// The request it answers (one entry per request id).
    pub request_id: Hash,
    /// The subjects asked about.
    pub subjects: Vec<SubjectRef>,
    /// When (Unix ms).
    pub at_ms: u64,
    /// What the gateway needs to answer a resend (opaque to the ledger).
    pub state: Vec<u8>,
    /// The (requester, contract, calendar day) whose volume count this entry
    /// adds one to ([`Ledger::access_volume`]), in the same batch.
    pub volume: Option<(String, String, u32)>,
}

/// The store key of a (requester, contract, day) volume count: `W`
/// ‖ SHA-256(str(requester) ‖ str(contract))\[..16\] ‖ be4(day).
fn volume_key(requester: &str, contract: &str, day: u32) -> Vec<u8> {
    let mut e = proofs::encoding::Encoder::with_domain("tongban/volume-key/v1");
    e.str(requester).str(contract);
    let h = proofs::hash::sha256(&e.finish());
    key(b'W', &[&h.0[..16], &day.to_be_bytes()])
}

impl Intent {
    fn tx_count(&self) -> usize {
        match self {
            Intent::Publish(_) | Intent::Revoke { .. } | Intent::Log(_) | Intent::Record { .. } => {
                1
            }
            Intent::Import { members, .. } => 1 + members.len(),
        }
    }
}

/// What became of one publication or revocation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum Outcome {
    /// Written in a certified, durable block.
    Written {
        /// Where.
        location: TxLocation,
    },
    /// Already there, identical: nothing new was written.
    Duplicate {
        /// Where the earlier write is.
        location: TxLocation,
    },
    /// Refused; nothing was written.
    Rejected {
        /// Stable code.
        code: &'static str,
        /// Explanation.
        message: String,
    },
}

/// The chain head.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Head {
    /// Height of the last block.
    pub height: u64,
    /// Its header hash.
    pub hash: Hash,
    /// Its timestamp.
    pub timestamp_ms: u64,
}

/// The ledger of one city's chain.
pub struct Ledger {
    store: Arc<dyn Store>,
    chain: ChainTrust,
    endorser: Arc<dyn Endorser>,
    head: RwLock<Head>,
    index: Index,
    data: Arc<DataKeys>,
    corrupt_values: std::sync::atomic::AtomicU64,
    min_free_bytes: std::sync::atomic::AtomicU64,
}

/// Hashing for the per-block maps of [`Ledger::apply`] (SipHash took a sixth
/// of the writer's time): eight bytes at a time, multiply and rotate, keyed
/// once per process so that no author can choose colliding keys in advance.
#[derive(Clone, Copy)]
struct BlockHash(u64);

struct BlockHasher(u64);

impl BuildHasher for BlockHash {
    type Hasher = BlockHasher;
    fn build_hasher(&self) -> BlockHasher {
        BlockHasher(self.0)
    }
}

impl Hasher for BlockHasher {
    fn write(&mut self, bytes: &[u8]) {
        for c in bytes.chunks(8) {
            let mut w = [0u8; 8];
            w[..c.len()].copy_from_slice(c);
            self.0 = (self.0 ^ u64::from_le_bytes(w))
                .wrapping_mul(0x9e37_79b9_7f4a_7c15)
                .rotate_left(29);
        }
    }
    fn finish(&self) -> u64 {
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

fn block_hash() -> BlockHash {
    static SEED: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    BlockHash(*SEED.get_or_init(|| std::collections::hash_map::RandomState::new().hash_one(0u64)))
}

type Map<K, V> = HashMap<K, V, BlockHash>;
type Versions = Map<(RecordKey, u32), (Hash, u64, Option<TxLocation>)>;

/// The layout version written under `Mlayout` (2: secondary indexes in
/// [`crate::index`]; 3: record values sealed under the data key).
const LAYOUT: &[u8] = b"3";

/// The part of an index entry's key a look-up names (see [`crate::index`]):
/// a leaf key whole, a record version key without its version, a subject
/// entry's subject.
fn index_group(k: &[u8]) -> &[u8] {
    match k.first() {
        Some(b'R') if k.len() >= 5 => &k[..k.len() - 4],
        Some(b'J') if k.len() >= 33 => &k[..33],
        _ => k,
    }
}

fn key(prefix: u8, parts: &[&[u8]]) -> Vec<u8> {
    let mut k = vec![prefix];
    for p in parts {
        k.extend_from_slice(p);
    }
    k
}

fn be8(v: u64) -> [u8; 8] {
    v.to_be_bytes()
}

fn corrupt(height: u64, problem: impl Into<String>) -> LedgerError {
    LedgerError::Corrupt {
        height,
        problem: problem.into(),
    }
}

fn loc_bytes(l: &TxLocation) -> Vec<u8> {
    let mut b = be8(l.height).to_vec();
    b.extend_from_slice(&l.index.to_be_bytes());
    b
}

/// The index entries of one stored transaction, derived from its bytes alone:
/// `X` leaf → location for every transaction; for a record commitment also
/// `R` record version → location and `J` subject ref ‖ record key. This is
/// what [`Ledger::apply`] indexes for the block, so after a crash the
/// memtable is rebuilt from the stored transactions instead of from a copy
/// of the entries written with every block.
fn tx_entries(
    height: u64,
    index: u32,
    bytes: &[u8],
    out: &mut Vec<(Vec<u8>, Vec<u8>)>,
) -> Result<(), LedgerError> {
    let leaf = merkle::leaf_hash(bytes);
    let loc = TxLocation {
        height,
        index,
        leaf,
    };
    let tx = Transaction::decode(bytes)
        .map_err(|e| corrupt(height, format!("stored transaction {index}: {e}")))?;
    if let proofs::tx::TxBody::RecordCommit {
        record_type,
        record_id,
        subjects,
        version,
        ..
    } = tx.body
    {
        let kb = RecordKey {
            department: tx.author,
            record_type,
            record_id,
        }
        .bytes();
        for s in &subjects {
            out.push((key(b'J', &[&s.0.0, &kb]), Vec::new()));
        }
        out.push((
            key(b'R', &[&kb, &[0], &version.to_be_bytes()]),
            loc_bytes(&loc),
        ));
    }
    out.push((key(b'X', &[&leaf.0]), loc_bytes(&loc)));
    Ok(())
}

/// The index entries of the stored block at `height` (none if it has no transactions).
fn block_entries(store: &dyn Store, height: u64) -> Result<Vec<crate::index::Entry>, StoreError> {
    let Some(packed) = store.get_pack(&key(b'T', &[&be8(height)]))? else {
        return Ok(Vec::new());
    };
    let n = packed_count(&packed).unwrap_or(0);
    let mut out = Vec::with_capacity(2 * n);
    for i in 0..n {
        let t = packed_item(&packed, i).ok_or_else(|| {
            StoreError::Backend(format!("block {height}: malformed transaction pack"))
        })?;
        tx_entries(height, i as u32, t, &mut out)
            .map_err(|e| StoreError::Backend(e.to_string()))?;
    }
    Ok(out)
}

/// Length of a full location: height, index and leaf.
const LOC_LEN: usize = 8 + 4 + 32;

fn loc_full(l: &TxLocation) -> Vec<u8> {
    let mut b = loc_bytes(l);
    b.extend_from_slice(&l.leaf.0);
    b
}

fn loc_from(v: &[u8]) -> Option<TxLocation> {
    Some(TxLocation {
        height: u64::from_be_bytes(v.get(0..8)?.try_into().ok()?),
        index: u32::from_be_bytes(v.get(8..12)?.try_into().ok()?),
        leaf: Hash(v.get(12..LOC_LEN)?.try_into().ok()?),
    })
}

/// What [`Ledger::open`] checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct OpenReport {
    /// Blocks verified (genesis included).
    pub blocks: u64,
    /// Transactions re-hashed.
    pub transactions: u64,
}

impl Ledger {
    /// Opens the ledger on `store`, verifying every stored block against its
    /// certificate, its hash link and its tx root, and writing the genesis block
    /// (height 0, no transactions) into an empty store.
    pub fn open(
        store: Arc<dyn Store>,
        chain: ChainTrust,
        endorser: Arc<dyn Endorser>,
        data: Arc<DataKeys>,
        now_ms: u64,
    ) -> Result<(Self, OpenReport), LedgerError> {
        let index_store = store.clone();
        Self::open_with(
            store,
            chain,
            endorser,
            data,
            now_ms,
            IndexConfig::default(),
            index_store,
        )
    }

    /// [`Ledger::open`] with the secondary index's sizes and the store its
    /// runs are kept in (in service a database of its own beside the ledger's).
    pub fn open_with(
        store: Arc<dyn Store>,
        chain: ChainTrust,
        endorser: Arc<dyn Endorser>,
        data: Arc<DataKeys>,
        now_ms: u64,
        index: IndexConfig,
        index_store: Arc<dyn Store>,
    ) -> Result<(Self, OpenReport), LedgerError> {
        match store.get(b"Mchain")? {
            Some(found) if found != chain.chain_id().as_bytes() => {
                return Err(LedgerError::WrongChain {
                    expected: chain.chain_id().to_owned(),
                    found: String::from_utf8_lossy(&found).into_owned(),
                });
            }
            Some(_) => {
                let layout = store.get(b"Mlayout")?;
                if layout.as_deref() != Some(LAYOUT) {
                    return Err(corrupt(
                        0,
                        format!(
                            "the store has layout {}, this gateway reads layout 3 (record values encrypted at rest under keys.data); export the chain and re-import the records into a new data directory",
                            layout
                                .map(|l| String::from_utf8_lossy(&l).into_owned())
                                .unwrap_or_else(|| "1 (indexes as store keys)".into())
                        ),
                    ));
                }
            }
            None => {
                let header = Header {
                    chain_id: chain.chain_id().to_owned(),
                    height: 0,
                    prev: Hash([0; 32]),
                    timestamp_ms: now_ms,
                    tx_count: 0,
                    tx_root: merkle::empty_root(),
                };
                let certificate = endorser.endorse(&header)?;
                verify_certificate(&header, &certificate, &chain)
                    .map_err(|e| LedgerError::Endorse(e.to_string()))?;
                let mut b = WriteBatch::new();
                b.put(b"Mchain".to_vec(), chain.chain_id().as_bytes().to_vec());
                b.put(b"Mlayout".to_vec(), LAYOUT.to_vec());
                b.put(
                    key(b'H', &[&be8(0)]),
                    CertifiedHeader {
                        header,
                        certificate,
                    }
                    .encode(),
                );
                b.put(key(b'N', &[&be8(0)]), Vec::new());
                store.commit(b)?;
            }
        }
        let (head, report) = Self::verify_all(store.as_ref(), &chain)?;
        let blocks = store.clone();
        let index = Index::open_deriving(
            store.clone(),
            index_store,
            index,
            index_group,
            head.height,
            &|h| block_entries(blocks.as_ref(), h),
        )
        .map_err(|e| corrupt(head.height, format!("secondary index: {e}")))?;
        let ledger = Ledger {
            store,
            chain,
            endorser,
            head: RwLock::new(head),
            index,
            data,
            corrupt_values: std::sync::atomic::AtomicU64::new(0),
            min_free_bytes: std::sync::atomic::AtomicU64::new(0),
        };
        ledger.check_data_key()?;
        Ok((ledger, report))
    }

    /// The latest stored record (within the last 64 blocks) must be sealed
    /// under a configured data key: a gateway started with the wrong key is
    /// refused, rather than refusing every record it serves.
    fn check_data_key(&self) -> Result<(), LedgerError> {
        let head = self.head().height;
        for h in (1..=head).rev().take(64) {
            let Some(txs) = self.block_txs(h)? else {
                continue;
            };
            for (i, t) in txs.iter().enumerate() {
                let is_record = Transaction::decode(t)
                    .is_ok_and(|tx| matches!(tx.body, proofs::tx::TxBody::RecordCommit { .. }));
                if !is_record {
                    continue;
                }
                let mut item = None;
                self.store
                    .pack_item(&key(b'V', &[&be8(h)]), i, &mut |v| item = Some(v.to_vec()))?;
                if let Some(id) = item.as_deref().and_then(DataKeys::item_key_id)
                    && !self.data.has_key(id)
                {
                    return Err(LedgerError::DataKey(format!(
                        "the stored record values are sealed under data key {}, which is not configured (this gateway holds {:?}); set keys.data to that key file, or list it under keys.data_retired after a rotation",
                        hex::encode(id),
                        self.data
                    )));
                }
                return Ok(());
            }
        }
        Ok(())
    }

    fn verify_all(
        store: &dyn Store,
        chain: &ChainTrust,
    ) -> Result<(Head, OpenReport), LedgerError> {
        let mut prev: Option<Header> = None;
        let mut report = OpenReport {
            blocks: 0,
            transactions: 0,
        };
        let mut problem: Option<LedgerError> = None;
        let mut expected_height = 0u64;
        store.range(b"H", b"I", &mut |k, v| {
            let result = (|| -> Result<Header, LedgerError> {
                let height = u64::from_be_bytes(
                    k.get(1..9)
                        .and_then(|b| b.try_into().ok())
                        .ok_or_else(|| corrupt(expected_height, "malformed header key"))?,
                );
                if height != expected_height {
                    return Err(corrupt(
                        expected_height,
                        format!("missing block; next stored header is at {height}"),
                    ));
                }
                let ch = CertifiedHeader::decode(v)
                    .map_err(|e| corrupt(height, format!("header does not decode: {e}")))?;
                if ch.header.height != height {
                    return Err(corrupt(
                        height,
                        format!("header says height {}", ch.header.height),
                    ));
                }
                verify_certificate(&ch.header, &ch.certificate, chain)
                    .map_err(|e| corrupt(height, format!("certificate: {e}")))?;
                match &prev {
                    None if ch.header.prev != Hash([0; 32]) => {
                        return Err(corrupt(height, "genesis does not start from zeros"));
                    }
                    None => {}
                    Some(p) => verify_link(p, &ch.header)
                        .map_err(|e| corrupt(height, format!("link: {e}")))?,
                }
                let packed = store
                    .get_pack(&key(b'T', &[&be8(height)]))?
                    .unwrap_or_default();
                let count = if packed.is_empty() {
                    0
                } else {
                    packed_count(&packed).unwrap_or(usize::MAX)
                };
                if count as u64 != ch.header.tx_count {
                    return Err(corrupt(
                        height,
                        format!(
                            "{count} transactions stored, header says {}",
                            ch.header.tx_count
                        ),
                    ));
                }
                let mut leaves: Vec<Hash> = Vec::with_capacity(count);
                for i in 0..count {
                    let t = packed_item(&packed, i)
                        .ok_or_else(|| corrupt(height, "malformed transaction pack"))?;
                    leaves.push(merkle::leaf_hash(t));
                }
                let txs = leaves.len();
                let levels = flat_levels(&leaves);
                if merkle::root_from_levels(&levels) != Some(ch.header.tx_root) {
                    return Err(corrupt(
                        height,
                        "transactions do not hash to the certified tx root",
                    ));
                }
                if store.get(&key(b'N', &[&be8(height)]))?.as_deref() != Some(levels.as_slice()) {
                    return Err(corrupt(
                        height,
                        "stored tree levels differ from the transactions",
                    ));
                }
                report.transactions += txs as u64;
                Ok(ch.header)
            })();
            match result {
                Ok(h) => {
                    prev = Some(h);
                    report.blocks += 1;
                    expected_height += 1;
                    true
                }
                Err(e) => {
                    problem = Some(e);
                    false
                }
            }
        })?;
        if let Some(e) = problem {
            return Err(e);
        }
        let last = prev.ok_or_else(|| corrupt(0, "no genesis block"))?;
        Ok((
            Head {
                height: last.height,
                hash: last.hash(),
                timestamp_ms: last.timestamp_ms,
            },
            report,
        ))
    }

    /// The chain id.
    pub fn chain_id(&self) -> &str {
        self.chain.chain_id()
    }
    /// The endorser set this ledger verifies against.
    pub fn chain_trust(&self) -> &ChainTrust {
        &self.chain
    }
    /// The current head.
    pub fn head(&self) -> Head {
        *self
            .head
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
    /// The secondary index's sizes.
    pub fn index_stats(&self) -> crate::index::IndexStats {
        self.index.stats()
    }
    /// Waits until the secondary index has written every frozen memtable.
    pub fn settle_index(&self) {
        self.index.settle()
    }
    /// Waits until the secondary index has no flush or merge left to do.
    pub fn quiesce_index(&self) {
        self.index.quiesce()
    }
    /// Stored values refused since start because they failed their check.
    pub fn corrupt_values(&self) -> u64 {
        self.corrupt_values
            .load(std::sync::atomic::Ordering::Relaxed)
    }
    /// Free bytes the store's file system must keep for a block to be
    /// written (0: no check).
    pub fn set_min_free_bytes(&self, bytes: u64) {
        self.min_free_bytes
            .store(bytes, std::sync::atomic::Ordering::Relaxed);
    }
    /// A stored value failed its check: counted, logged, and refused.
    fn corrupt_value(&self, height: u64, problem: impl Into<String>) -> LedgerError {
        let problem = problem.into();
        self.corrupt_values
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::error!(
            code = "store.corrupt",
            height,
            %problem,
            "a stored value failed its check; it is refused (run `tongban store check`)"
        );
        LedgerError::CorruptValue { height, problem }
    }
    /// Bytes on disk (estimate).
    pub fn size_on_disk(&self) -> u64 {
        self.store.size_on_disk() + self.index.size_on_disk()
    }
    /// The certified header at `height`.
    pub fn header(&self, height: u64) -> Result<Option<CertifiedHeader>, LedgerError> {
        match self.store.get(&key(b'H', &[&be8(height)]))? {
            None => Ok(None),
            Some(v) => CertifiedHeader::decode(&v)
                .map(Some)
                .map_err(|e| corrupt(height, e.to_string())),
        }
    }
    /// Where the transaction with this leaf hash is.
    pub fn locate(&self, leaf: &Hash) -> Result<Option<TxLocation>, LedgerError> {
        Ok(self.index.get(&key(b'X', &[&leaf.0]))?.and_then(|v| {
            let height = u64::from_be_bytes(v.get(0..8)?.try_into().ok()?);
            let index = u32::from_be_bytes(v.get(8..12)?.try_into().ok()?);
            Some(TxLocation {
                height,
                index,
                leaf: *leaf,
            })
        }))
    }
    /// Every transaction of the block at `height`, in order.
    pub fn block_txs(&self, height: u64) -> Result<Option<Vec<Vec<u8>>>, LedgerError> {
        let Some(buf) = self.store.get_pack(&key(b'T', &[&be8(height)]))? else {
            return Ok(None);
        };
        let n = packed_count(&buf).unwrap_or(0);
        Ok(Some(
            (0..n)
                .filter_map(|i| packed_item(&buf, i).map(<[u8]>::to_vec))
                .collect(),
        ))
    }
    /// The transaction bytes at a location.
    pub fn tx_bytes(&self, height: u64, index: u32) -> Result<Option<Vec<u8>>, LedgerError> {
        let mut out = None;
        self.store
            .pack_item(&key(b'T', &[&be8(height)]), index as usize, &mut |item| {
                out = Some(item.to_vec());
            })?;
        Ok(out)
    }
    fn plain_bundle(&self, loc: &TxLocation) -> Result<Option<ProofBundle>, LedgerError> {
        let (Some(header), Some(tx)) = (
            self.header(loc.height)?,
            self.tx_bytes(loc.height, loc.index)?,
        ) else {
            return Ok(None);
        };
        // Read the path straight out of the stored levels (no copy of the whole tree).
        let mut proof = None;
        self.store
            .peek(&key(b'N', &[&be8(loc.height)]), &mut |levels| {
                proof = proof_from_levels(levels, header.header.tx_count, u64::from(loc.index));
            })?;
        let proof = proof.ok_or_else(|| corrupt(loc.height, "tree levels missing or too short"))?;
        // The location came from the index: the transaction there must be the one asked for.
        if merkle::leaf_hash(&tx) != loc.leaf {
            return Err(self.corrupt_value(
                loc.height,
                format!(
                    "the index points leaf {} at index {}, which holds another transaction",
                    loc.leaf, loc.index
                ),
            ));
        }
        Ok(Some(ProofBundle {
            header,
            tx,
            proof,
            batch: None,
        }))
    }
    /// The proof bundle of the transaction with this leaf hash (with its batch
    /// seal and member path if it was written in a batch).
    pub fn bundle(&self, leaf: &Hash) -> Result<Option<ProofBundle>, LedgerError> {
        let Some(loc) = self.locate(leaf)? else {
            return Ok(None);
        };
        let Some(bundle) = self.plain_bundle(&loc)? else {
            return Ok(None);
        };
        let tx = Transaction::decode(&bundle.tx)
            .map_err(|e| corrupt(loc.height, format!("stored tx: {e}")))?;
        let proofs::tx::Authorization::Batched { root, index } = tx.auth else {
            return Ok(Some(bundle));
        };
        let info = self
            .store
            .get(&key(b'B', &[&root.0]))?
            .ok_or_else(|| corrupt(loc.height, "batch member without its seal"))?;
        let field = |r: core::ops::Range<usize>| {
            info.get(r)
                .map(|b| b.to_vec())
                .ok_or_else(|| corrupt(loc.height, "malformed batch index"))
        };
        let seal_height = u64::from_be_bytes(field(0..8)?.try_into().unwrap_or_default());
        let seal_index = u32::from_be_bytes(field(8..12)?.try_into().unwrap_or_default());
        let first = u32::from_be_bytes(field(12..16)?.try_into().unwrap_or_default());
        let count = u32::from_be_bytes(field(16..20)?.try_into().unwrap_or_default());
        let seal_leaf = merkle::leaf_hash(
            &self
                .tx_bytes(seal_height, seal_index)?
                .ok_or_else(|| corrupt(seal_height, "missing seal"))?,
        );
        let seal_bundle = self
            .plain_bundle(&TxLocation {
                height: seal_height,
                index: seal_index,
                leaf: seal_leaf,
            })?
            .ok_or_else(|| corrupt(seal_height, "missing seal block"))?;
        let _ = first;
        // The batch's tree levels are stored with it: a member path is a lookup.
        let mut member = None;
        let mut top = None;
        self.store.peek(&key(b'L', &[&root.0]), &mut |levels| {
            top = merkle::root_from_levels(levels);
            member = proof_from_levels(levels, u64::from(count), u64::from(index));
        })?;
        if top != Some(root) {
            return Err(corrupt(
                seal_height,
                "batch tree levels missing or not hashing to the sealed root",
            ));
        }
        let member =
            member.ok_or_else(|| corrupt(seal_height, "member index outside its batch"))?;
        Ok(Some(bundle.with_batch(seal_bundle, member)))
    }
    /// The state of a record.
    ///
    /// The latest version is the last stored version key; only revocations are
    /// kept apart (so a publication writes one key less).
    pub fn record_state(&self, k: &RecordKey) -> Result<Option<RecordState>, LedgerError> {
        let kb = k.bytes();
        let mut prefix = key(b'R', &[&kb]);
        prefix.push(0);
        let latest = match self.index.last_key_with_prefix(&prefix)? {
            None => return Ok(None),
            Some(last) => u32::from_be_bytes(
                last.get(prefix.len()..prefix.len() + 4)
                    .and_then(|b| b.try_into().ok())
                    .ok_or_else(|| corrupt(0, "malformed record version key"))?,
            ),
        };
        let revocations: Vec<Revocation> = match self.store.get(&key(b'S', &[&kb]))? {
            None => Vec::new(),
            Some(v) => serde_json::from_slice(&v)
                .map_err(|e| self.corrupt_value(0, format!("revocations: {e}")))?,
        };
        // Each revocation is checked against its transaction on chain.
        for r in &revocations {
            let l = r.location;
            let tx = self
                .tx_bytes(l.height, l.index)?
                .filter(|t| merkle::leaf_hash(t) == l.leaf)
                .and_then(|t| Transaction::decode(&t).ok());
            let ok = tx.is_some_and(|tx| {
                tx.author == k.department
                    && matches!(&tx.body, proofs::tx::TxBody::RecordRevoke {
                        record_type, record_id, version, reason, at_ms,
                    } if *record_type == k.record_type && *record_id == k.record_id
                        && *version == r.version && *reason == r.reason && *at_ms == r.at_ms)
            });
            if !ok || r.version > latest {
                return Err(self.corrupt_value(
                    l.height,
                    format!(
                        "revocation of version {} does not match its transaction on chain",
                        r.version
                    ),
                ));
            }
        }
        Ok(Some(RecordState {
            latest,
            revocations,
        }))
    }
    /// One stored version of a record.
    pub fn record_version(
        &self,
        k: &RecordKey,
        version: u32,
    ) -> Result<Option<StoredRecord>, LedgerError> {
        // The version key points at the record's slot in its block's value pack.
        let Some(ptr) = self
            .index
            .get(&key(b'R', &[&k.bytes(), &[0], &version.to_be_bytes()]))?
        else {
            return Ok(None);
        };
        let height = u64::from_be_bytes(
            ptr.get(0..8)
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| corrupt(0, "malformed record pointer"))?,
        );
        let index = u32::from_be_bytes(
            ptr.get(8..12)
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| corrupt(height, "malformed record pointer"))?,
        );
        // Copied out first: checking it reads the store again (never inside
        // the store's own read).
        let mut item = None;
        self.store
            .pack_item(&key(b'V', &[&be8(height)]), index as usize, &mut |v| {
                item = Some(v.to_vec());
            })?;
        let out = item.map(|v| self.open_slot(k, version, height, index, &v));
        let what = || format!("record {}/{} version {version}", k.record_type, k.record_id);
        match out {
            Some(Ok(r)) => Ok(Some(r)),
            Some(Err(e)) => Err(self.corrupt_value(height, format!("{}: {e}", what()))),
            None => Err(self.corrupt_value(
                height,
                format!("{}: record pointer to a missing value", what()),
            )),
        }
    }

    /// Opens the sealed item of a record slot and checks it against the chain.
    fn open_slot(
        &self,
        k: &RecordKey,
        version: u32,
        height: u64,
        index: u32,
        item: &[u8],
    ) -> Result<StoredRecord, String> {
        let plain = self
            .data
            .open(
                &record_aad(self.chain.chain_id(), &k.bytes(), version),
                item,
            )
            .map_err(|e| e.to_string())?;
        let r = StoredRecord::decode(&plain).map_err(|e| e.to_string())?;
        self.check_record(k, version, height, index, &r)?;
        Ok(r)
    }

    /// Re-encrypts every stored record value not sealed under the current
    /// data key (`tongban store reseal`, offline, after a rotation): block by
    /// block, each value opened under its retired key and sealed again under
    /// the current one, with the same place binding, each block's new value
    /// pack committed atomically. Afterwards the retired keys are no longer
    /// needed. Returns (blocks rewritten, values resealed).
    pub fn reseal_values(&self) -> Result<(u64, u64), LedgerError> {
        let current = self.data.current_id();
        let (mut blocks, mut values) = (0u64, 0u64);
        for h in 1..=self.head().height {
            let Some(pack) = self.store.get_pack(&key(b'V', &[&be8(h)]))? else {
                continue;
            };
            let txs = self.block_txs(h)?.unwrap_or_default();
            let n = packed_count(&pack).unwrap_or(0);
            if n != txs.len() {
                return Err(self.corrupt_value(h, "value slots and transactions differ in number"));
            }
            let mut items: Vec<Vec<u8>> = Vec::with_capacity(n);
            let mut changed = 0u64;
            for (i, t) in txs.iter().enumerate() {
                let item = packed_item(&pack, i)
                    .ok_or_else(|| self.corrupt_value(h, "malformed value pack"))?;
                let record = Transaction::decode(t).ok().and_then(|tx| match tx.body {
                    proofs::tx::TxBody::RecordCommit {
                        record_type,
                        record_id,
                        version,
                        ..
                    } => Some((
                        RecordKey {
                            department: tx.author,
                            record_type,
                            record_id,
                        },
                        version,
                    )),
                    _ => None,
                });
                match record {
                    Some((k, version)) if DataKeys::item_key_id(item) != Some(current) => {
                        let aad = record_aad(self.chain.chain_id(), &k.bytes(), version);
                        let plain = self.data.open(&aad, item).map_err(|e| {
                            self.corrupt_value(
                                h,
                                format!(
                                    "record {}/{} version {version}: {e}",
                                    k.record_type, k.record_id
                                ),
                            )
                        })?;
                        items.push(self.data.seal(&aad, &plain));
                        changed += 1;
                    }
                    _ => items.push(item.to_vec()),
                }
            }
            if changed > 0 {
                let mut b = WriteBatch::new();
                b.put_pack(key(b'V', &[&be8(h)]), items.iter().map(Vec::as_slice));
                self.store.commit(b)?;
                blocks += 1;
                values += changed;
            }
        }
        Ok((blocks, values))
    }

    /// Checks every stored value offline (`tongban store check`): each
    /// record slot opens under the data keys and matches its commitment on
    /// chain, every other slot is empty, and the index finds each record
    /// version and transaction where it is. Calls `problem` for each fault;
    /// returns the number of record values checked.
    pub fn check_values(&self, problem: &mut dyn FnMut(String)) -> Result<u64, LedgerError> {
        let mut records = 0u64;
        for h in 1..=self.head().height {
            let txs = self.block_txs(h)?.unwrap_or_default();
            let values = match self.store.get_pack(&key(b'V', &[&be8(h)])) {
                Ok(v) => v,
                Err(e) => {
                    problem(format!("height {h}: stored values unreadable: {e}"));
                    continue;
                }
            };
            let values = values.unwrap_or_default();
            let count = if values.is_empty() {
                0
            } else {
                packed_count(&values).unwrap_or(usize::MAX)
            };
            if count != txs.len() {
                problem(format!(
                    "height {h}: {count} stored value slots for {} transactions",
                    txs.len()
                ));
                continue;
            }
            for (i, t) in txs.iter().enumerate() {
                let slot = packed_item(&values, i);
                let leaf = merkle::leaf_hash(t);
                let want = Some(TxLocation {
                    height: h,
                    index: i as u32,
                    leaf,
                });
                if self.locate(&leaf)? != want {
                    problem(format!(
                        "height {h} index {i}: the index does not locate transaction {leaf}"
                    ));
                }
                let Ok(tx) = Transaction::decode(t) else {
                    problem(format!("height {h} index {i}: transaction does not decode"));
                    continue;
                };
                let proofs::tx::TxBody::RecordCommit {
                    record_type,
                    record_id,
                    version,
                    ..
                } = &tx.body
                else {
                    if slot.is_none_or(|v| !v.is_empty()) {
                        problem(format!(
                            "height {h} index {i}: a value is stored beside a transaction that has none"
                        ));
                    }
                    continue;
                };
                let k = RecordKey {
                    department: tx.author.clone(),
                    record_type: record_type.clone(),
                    record_id: record_id.clone(),
                };
                records += 1;
                let at = format!(
                    "height {h} index {i} (record {}/{} version {version})",
                    k.record_type, k.record_id
                );
                match slot.map(|item| self.open_slot(&k, *version, h, i as u32, item)) {
                    None => problem(format!("{at}: stored value missing")),
                    Some(Err(e)) => problem(format!("{at}: {e}")),
                    Some(Ok(_)) => {}
                }
                let ptr = self
                    .index
                    .get(&key(b'R', &[&k.bytes(), &[0], &version.to_be_bytes()]))?;
                let points = ptr.as_deref().and_then(|p| {
                    Some((
                        u64::from_be_bytes(p.get(0..8)?.try_into().ok()?),
                        u32::from_be_bytes(p.get(8..12)?.try_into().ok()?),
                    ))
                });
                if points != Some((h, i as u32)) {
                    problem(format!("{at}: the index points this version elsewhere"));
                }
            }
        }
        Ok(records)
    }

    /// A stored record against its place and its commitment transaction on
    /// chain: the values and secret must commit to the commitment the
    /// department signed, with the same subjects, version and issue time.
    fn check_record(
        &self,
        k: &RecordKey,
        version: u32,
        height: u64,
        index: u32,
        r: &StoredRecord,
    ) -> Result<(), String> {
        if r.version != version {
            return Err(format!("holds version {}", r.version));
        }
        let Some(loc) = r
            .location
            .filter(|l| l.height == height && l.index == index)
        else {
            return Err("stored location differs from the index".into());
        };
        let tx = self
            .tx_bytes(height, index)
            .map_err(|e| e.to_string())?
            .ok_or("no transaction at its location")?;
        if merkle::leaf_hash(&tx) != loc.leaf {
            return Err("the transaction at its location has another leaf hash".into());
        }
        let tx = Transaction::decode(&tx).map_err(|e| format!("its transaction: {e}"))?;
        let on_chain = match &tx.body {
            proofs::tx::TxBody::RecordCommit {
                record_type,
                record_id,
                subjects,
                version: v,
                commitment,
                issued_ms,
            } if tx.author == k.department
                && *record_type == k.record_type
                && *record_id == k.record_id
                && *v == version
                && *subjects == r.subject_refs
                && *issued_ms == r.issued_ms =>
            {
                *commitment
            }
            _ => return Err("the transaction at its location commits another record".into()),
        };
        if on_chain != r.commitment {
            return Err("stored commitment differs from the one on chain".into());
        }
        let values = proofs::commitment::CommittedRecord::new(r.fields.clone(), r.secret)
            .map_err(|e| format!("values: {e}"))?;
        if values.commitment() != on_chain {
            return Err("the values do not open the commitment on chain".into());
        }
        Ok(())
    }
    /// The access-log entry written for a request id, and the state kept with it.
    pub fn access_state(
        &self,
        request_id: &Hash,
    ) -> Result<Option<(TxLocation, Vec<u8>)>, LedgerError> {
        match self.store.get(&key(b'Q', &[&request_id.0]))? {
            None => Ok(None),
            Some(v) => {
                let loc = loc_from(&v).ok_or_else(|| corrupt(0, "malformed access state"))?;
                Ok(Some((loc, v[LOC_LEN..].to_vec())))
            }
        }
    }
    /// Access-log entries written for `requester` under `contract` on
    /// calendar day `day` (days since 1970-01-01, UTC+8).
    pub fn access_volume(
        &self,
        requester: &str,
        contract: &str,
        day: u32,
    ) -> Result<u64, LedgerError> {
        match self.store.get(&volume_key(requester, contract, day))? {
            None => Ok(0),
            Some(v) => v
                .as_slice()
                .try_into()
                .map(u64::from_be_bytes)
                .map_err(|_| corrupt(0, "malformed volume count")),
        }
    }
    /// Access-log entries about `subject` from `since_ms` on, oldest first.
    pub fn accesses_of_subject(
        &self,
        subject: &SubjectRef,
        since_ms: u64,
    ) -> Result<Vec<(u64, TxLocation)>, LedgerError> {
        let from = key(b'A', &[&subject.0.0, &be8(since_ms)]);
        let to = key(b'A', &[&subject.0.0, &be8(u64::MAX), &[0xff; 33]]);
        let mut out = Vec::new();
        let mut bad = false;
        self.store.range(&from, &to, &mut |k, v| {
            let at = k
                .get(33..41)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_be_bytes);
            match (at, loc_from(v)) {
                (Some(at), Some(l)) => out.push((at, l)),
                _ => bad = true,
            }
            true
        })?;
        if bad {
            return Err(corrupt(0, "malformed access index entry"));
        }
        Ok(out)
    }
    /// Service state under one of [`STATE_PREFIXES`].
    pub fn state(&self, key: &[u8]) -> Result<Option<Vec<u8>>, LedgerError> {
        Ok(self.store.get(key)?)
    }
    /// Service state entries under a prefix (which starts with one of [`STATE_PREFIXES`]).
    pub fn state_scan(&self, prefix: &[u8]) -> Result<crate::store::Pairs, LedgerError> {
        Ok(self.store.scan_prefix(prefix)?)
    }
    /// Records that name `subject`.
    pub fn records_of_subject(&self, subject: &SubjectRef) -> Result<Vec<RecordKey>, LedgerError> {
        Ok(self
            .index
            .scan_prefix(&key(b'J', &[&subject.0.0]))?
            .into_iter()
            .filter_map(|(k, _)| RecordKey::from_bytes(&k[33..]))
            .collect())
    }

    /// Applies intents: checks each against the state (and against the ones
    /// before it), cuts one block over the accepted transactions, endorses it and
    /// commits everything atomically and durably. Returns one outcome per intent
    /// (an import gives one per member).
    pub fn apply(
        &self,
        intents: Vec<Intent>,
        now_ms: u64,
    ) -> Result<Vec<Vec<Outcome>>, LedgerError> {
        let min_free = self
            .min_free_bytes
            .load(std::sync::atomic::Ordering::Relaxed);
        if min_free > 0
            && let Some(free) = self.store.available_space()
            && free < min_free
        {
            return Err(LedgerError::Full(format!(
                "{free} bytes free in the data directory, {min_free} are kept in reserve (ledger.min_free_bytes); free space and retry"
            )));
        }
        let head = self.head();
        let height = head.height + 1;
        let mut txs: Vec<PreparedTx> =
            Vec::with_capacity(intents.iter().map(Intent::tx_count).sum());
        let mut states: Map<RecordKey, RecordState> = Map::with_hasher(block_hash());
        let mut versions: Versions = Map::with_hasher(block_hash());
        let mut seen_leaves: Map<Hash, TxLocation> = Map::with_hasher(block_hash());
        let mut seen_requests: Map<Hash, TxLocation> = Map::with_hasher(block_hash());
        let mut volumes: HashMap<Vec<u8>, u64> = HashMap::new();
        let mut batch = WriteBatch::new();
        let mut entries: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        let mut revoked: HashSet<RecordKey, BlockHash> = HashSet::with_hasher(block_hash());
        let mut outcomes = Vec::with_capacity(intents.len());

        for intent in intents {
            match intent {
                Intent::Publish(p) => {
                    let o = self.check_publish(&p, &mut states, &mut versions)?;
                    let o = match o {
                        Some(o) => o,
                        None => {
                            let loc = self.stage_publish(
                                *p,
                                height,
                                &mut txs,
                                &mut states,
                                &mut versions,
                                &mut seen_leaves,
                                &mut entries,
                            )?;
                            Outcome::Written { location: loc }
                        }
                    };
                    outcomes.push(vec![o]);
                }
                Intent::Revoke {
                    key: k,
                    version,
                    reason,
                    at_ms,
                    tx,
                } => {
                    let mut st = match states.get(&k) {
                        Some(s) => s.clone(),
                        None => match self.record_state(&k) {
                            Ok(s) => s.unwrap_or_default(),
                            Err(e @ LedgerError::CorruptValue { .. }) => {
                                outcomes.push(vec![Outcome::Rejected {
                                    code: "store.corrupt",
                                    message: e.to_string(),
                                }]);
                                continue;
                            }
                            Err(e) => return Err(e),
                        },
                    };
                    let o = if version == 0 || version > st.latest {
                        Outcome::Rejected {
                            code: "record.unknown_version",
                            message: format!(
                                "record has no version {version} (latest is {})",
                                st.latest
                            ),
                        }
                    } else if let Some(r) = st.revocations.iter().find(|r| r.version == version) {
                        if r.location.leaf == tx.leaf {
                            Outcome::Duplicate {
                                location: r.location,
                            }
                        } else {
                            Outcome::Rejected {
                                code: "record.already_revoked",
                                message: format!("version {version} was already revoked"),
                            }
                        }
                    } else {
                        let location = TxLocation {
                            height,
                            index: txs.len() as u32,
                            leaf: tx.leaf,
                        };
                        if let Some(l) = seen_leaves
                            .get(&tx.leaf)
                            .copied()
                            .or(self.locate(&tx.leaf)?)
                        {
                            Outcome::Duplicate { location: l }
                        } else {
                            seen_leaves.insert(tx.leaf, location);
                            txs.push(tx);
                            revoked.insert(k.clone());
                            st.revocations.push(Revocation {
                                version,
                                reason,
                                at_ms,
                                location,
                            });
                            states.insert(k, st);
                            Outcome::Written { location }
                        }
                    };
                    outcomes.push(vec![o]);
                }
                Intent::Log(entry) => {
                    let existing = match seen_requests.get(&entry.request_id) {
                        Some(l) => Some(*l),
                        None => self.access_state(&entry.request_id)?.map(|(l, _)| l),
                    };
                    let o = if let Some(location) = existing {
                        Outcome::Duplicate { location }
                    } else {
                        let location = TxLocation {
                            height,
                            index: txs.len() as u32,
                            leaf: entry.tx.leaf,
                        };
                        seen_leaves.insert(entry.tx.leaf, location);
                        seen_requests.insert(entry.request_id, location);
                        if let Some((r, c, day)) = &entry.volume {
                            let k = volume_key(r, c, *day);
                            let n = match volumes.get(&k) {
                                Some(n) => *n,
                                None => self.access_volume(r, c, *day)?,
                            };
                            volumes.insert(k.clone(), n + 1);
                            batch.put(k, (n + 1).to_be_bytes().to_vec());
                        }
                        let mut q = loc_full(&location);
                        q.extend_from_slice(&entry.state);
                        batch.put(key(b'Q', &[&entry.request_id.0]), q);
                        for s in &entry.subjects {
                            batch.put(
                                key(b'A', &[&s.0.0, &be8(entry.at_ms), &entry.request_id.0]),
                                loc_full(&location),
                            );
                        }
                        txs.push(entry.tx);
                        Outcome::Written { location }
                    };
                    outcomes.push(vec![o]);
                }
                Intent::Record { tx, puts } => {
                    let o = if let Some(k) = puts
                        .iter()
                        .map(|(k, _)| k)
                        .find(|k| k.first().is_none_or(|p| !STATE_PREFIXES.contains(p)))
                    {
                        Outcome::Rejected {
                            code: "ledger.bad_state_key",
                            message: format!(
                                "state key {} is outside the service prefixes",
                                hex::encode(k)
                            ),
                        }
                    } else if let Some(l) = seen_leaves
                        .get(&tx.leaf)
                        .copied()
                        .or(self.locate(&tx.leaf)?)
                    {
                        Outcome::Duplicate { location: l }
                    } else {
                        let location = TxLocation {
                            height,
                            index: txs.len() as u32,
                            leaf: tx.leaf,
                        };
                        seen_leaves.insert(tx.leaf, location);
                        for (k, v) in puts {
                            batch.put(k, v);
                        }
                        txs.push(tx);
                        Outcome::Written { location }
                    };
                    outcomes.push(vec![o]);
                }
                Intent::Import {
                    seal,
                    root,
                    members,
                    member_levels,
                } => {
                    if let Some(info) = self.store.get(&key(b'B', &[&root.0]))? {
                        // The whole batch is already written (a resend after a lost answer).
                        let first = u32::from_be_bytes(info[12..16].try_into().unwrap_or_default());
                        let h = u64::from_be_bytes(info[0..8].try_into().unwrap_or_default());
                        let os = members
                            .iter()
                            .enumerate()
                            .map(|(i, m)| Outcome::Duplicate {
                                location: TxLocation {
                                    height: h,
                                    index: first + i as u32,
                                    leaf: m.tx.leaf,
                                },
                            })
                            .collect();
                        outcomes.push(os);
                        continue;
                    }
                    let levels_fit = member_levels.len() >= 32 * members.len()
                        && merkle::root_from_levels(&member_levels) == Some(root);
                    if !levels_fit {
                        let os = members
                            .iter()
                            .map(|_| Outcome::Rejected {
                                code: "batch.inconsistent",
                                message: "the batch's tree levels do not hash to its sealed root"
                                    .into(),
                            })
                            .collect();
                        outcomes.push(os);
                        continue;
                    }
                    // Check every member first: a batch is written whole or not at all.
                    let mut trial_states = states.clone();
                    let mut trial_versions = versions.clone();
                    let mut problems: Vec<Option<Outcome>> = Vec::with_capacity(members.len());
                    for m in &members {
                        let o = self.check_publish(m, &mut trial_states, &mut trial_versions)?;
                        if o.is_none() {
                            let st = trial_states.entry(m.key.clone()).or_default();
                            st.latest = m.record.version;
                            trial_versions.insert(
                                (m.key.clone(), m.record.version),
                                (m.record.commitment, m.record.issued_ms, None),
                            );
                        }
                        problems.push(o);
                    }
                    if problems.iter().any(Option::is_some) {
                        let os = problems
                            .into_iter()
                            .map(|p| match p {
                                Some(Outcome::Duplicate { location }) => Outcome::Rejected {
                                    code: "batch.contains_duplicate",
                                    message: format!("already written at height {} index {}; resend the batch without it", location.height, location.index),
                                },
                                Some(o) => o,
                                None => Outcome::Rejected { code: "batch.aborted", message: "another member of the batch was refused".into() },
                            })
                            .collect();
                        outcomes.push(os);
                        continue;
                    }
                    let seal_index = txs.len() as u32;
                    let seal_leaf = seal.leaf;
                    seen_leaves.insert(
                        seal_leaf,
                        TxLocation {
                            height,
                            index: seal_index,
                            leaf: seal_leaf,
                        },
                    );
                    txs.push(seal);
                    let first = txs.len() as u32;
                    let count = members.len() as u32;
                    let mut info = be8(height).to_vec();
                    info.extend_from_slice(&seal_index.to_be_bytes());
                    info.extend_from_slice(&first.to_be_bytes());
                    info.extend_from_slice(&count.to_be_bytes());
                    batch.put(key(b'B', &[&root.0]), info);
                    // Member leaves are the hashes of their signing bytes: the
                    // encoding minus the 37-byte batch authorization (02 ‖ root ‖ index).
                    debug_assert_eq!(
                        member_levels,
                        flat_levels(
                            &members
                                .iter()
                                .map(|m| merkle::leaf_hash(
                                    &m.tx.bytes[..m.tx.bytes.len().saturating_sub(37)]
                                ))
                                .collect::<Vec<_>>()
                        ),
                        "member levels computed from other leaves"
                    );
                    batch.put(key(b'L', &[&root.0]), member_levels);
                    let mut os = Vec::with_capacity(members.len());
                    for m in members {
                        let loc = self.stage_publish(
                            m,
                            height,
                            &mut txs,
                            &mut states,
                            &mut versions,
                            &mut seen_leaves,
                            &mut entries,
                        )?;
                        os.push(Outcome::Written { location: loc });
                    }
                    outcomes.push(os);
                }
            }
        }
        if txs.is_empty() {
            return Ok(outcomes);
        }

        // Cut, endorse and commit the block.
        let leaves: Vec<Hash> = txs.iter().map(|t| t.leaf).collect();
        let levels = flat_levels(&leaves);
        let tx_root = merkle::root_from_levels(&levels).unwrap_or_else(merkle::empty_root);
        let header = Header {
            chain_id: self.chain.chain_id().to_owned(),
            height,
            prev: head.hash,
            timestamp_ms: now_ms.max(head.timestamp_ms),
            tx_count: txs.len() as u64,
            tx_root,
        };
        let certificate = self.endorser.endorse(&header)?;
        let hash = header.hash();
        let timestamp_ms = header.timestamp_ms;
        batch.put(
            key(b'H', &[&be8(height)]),
            CertifiedHeader {
                header,
                certificate,
            }
            .encode(),
        );
        batch.put(key(b'N', &[&be8(height)]), levels);
        for (i, t) in txs.iter().enumerate() {
            let loc = TxLocation {
                height,
                index: i as u32,
                leaf: t.leaf,
            };
            entries.push((key(b'X', &[&t.leaf.0]), loc_bytes(&loc)));
        }
        // The entries are not stored: they are derived again from the
        // block's transactions after a crash. Check here that the two agree.
        #[cfg(debug_assertions)]
        {
            let mut derived = Vec::new();
            for (i, t) in txs.iter().enumerate() {
                tx_entries(height, i as u32, &t.bytes, &mut derived)?;
            }
            let mut mine = entries.clone();
            mine.sort();
            derived.sort();
            debug_assert!(
                mine == derived,
                "block {height}: the index entries of apply differ from those derived from its transactions"
            );
        }
        // One value per block for the transactions and one for the stored records:
        // large values go in once, the per-record keys stay small.
        batch.put_pack(
            key(b'T', &[&be8(height)]),
            txs.iter().map(|t| t.bytes.as_slice()),
        );
        batch.put_pack(
            key(b'V', &[&be8(height)]),
            txs.iter().map(|t| t.value.as_slice()),
        );
        for k in revoked {
            if let Some(st) = states.get(&k) {
                batch.put(
                    key(b'S', &[&k.bytes()]),
                    serde_json::to_vec(&st.revocations)
                        .map_err(|e| LedgerError::Endorse(e.to_string()))?,
                );
            }
        }
        if let Some(e) = self.index.failure() {
            return Err(LedgerError::Store(StoreError::Backend(format!(
                "the secondary index stopped: {e}"
            ))));
        }
        self.store.commit(batch)?;
        self.index.insert_block(height, entries);
        *self
            .head
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Head {
            height,
            hash,
            timestamp_ms,
        };
        Ok(outcomes)
    }

    /// `None` if the publication may be written; otherwise its outcome.
    fn check_publish(
        &self,
        p: &Publish,
        states: &mut Map<RecordKey, RecordState>,
        versions: &mut Versions,
    ) -> Result<Option<Outcome>, LedgerError> {
        let v = p.record.version;
        // The record's latest version first: for a new record that is one look-up.
        let latest = match states.get(&p.key) {
            Some(s) => s.latest,
            None => {
                let s = match self.record_state(&p.key) {
                    Ok(s) => s.unwrap_or_default(),
                    Err(e @ LedgerError::CorruptValue { .. }) => {
                        return Ok(Some(Outcome::Rejected {
                            code: "store.corrupt",
                            message: e.to_string(),
                        }));
                    }
                    Err(e) => return Err(e),
                };
                let l = s.latest;
                states.insert(p.key.clone(), s);
                l
            }
        };
        if v <= latest {
            let existing = match versions.get(&(p.key.clone(), v)) {
                Some(e) => Some(*e),
                None => match self.record_version(&p.key, v) {
                    Ok(r) => r.map(|r| (r.commitment, r.issued_ms, r.location)),
                    Err(e @ LedgerError::CorruptValue { .. }) => {
                        return Ok(Some(Outcome::Rejected {
                            code: "store.corrupt",
                            message: e.to_string(),
                        }));
                    }
                    Err(e) => return Err(e),
                },
            };
            // A duplicate says exactly what was written (same commitment — so the
            // same values, secret and subjects — and the same issue time), however
            // it was authorised then and now (alone or in another batch).
            let same = existing
                .is_some_and(|(c, t, _)| c == p.record.commitment && t == p.record.issued_ms);
            return Ok(Some(match existing.and_then(|e| e.2) {
                Some(location) if same => Outcome::Duplicate { location },
                _ => Outcome::Rejected {
                    code: "record.version_exists",
                    message: format!(
                        "version {v} of this record exists as another transaction; publish version {} to supersede it",
                        latest + 1
                    ),
                },
            }));
        }
        if v != latest + 1 {
            return Ok(Some(Outcome::Rejected {
                code: "record.version_not_next",
                message: format!(
                    "version must be {} (latest is {latest}), found {v}",
                    latest + 1
                ),
            }));
        }
        Ok(None)
    }

    #[allow(clippy::too_many_arguments)]
    fn stage_publish(
        &self,
        p: Publish,
        height: u64,
        txs: &mut Vec<PreparedTx>,
        states: &mut Map<RecordKey, RecordState>,
        versions: &mut Versions,
        seen: &mut Map<Hash, TxLocation>,
        entries: &mut Vec<(Vec<u8>, Vec<u8>)>,
    ) -> Result<TxLocation, LedgerError> {
        let location = TxLocation {
            height,
            index: txs.len() as u32,
            leaf: p.tx.leaf,
        };
        seen.insert(p.tx.leaf, location);
        let mut record = p.record;
        record.location = Some(location);
        let kb = p.key.bytes();
        let mut tx = p.tx;
        tx.value = self.data.seal(
            &record_aad(self.chain.chain_id(), &kb, record.version),
            &record.encode(),
        );
        txs.push(tx);
        for s in &record.subject_refs {
            entries.push((key(b'J', &[&s.0.0, &kb]), Vec::new()));
        }
        versions.insert(
            (p.key.clone(), record.version),
            (record.commitment, record.issued_ms, Some(location)),
        );
        states.entry(p.key.clone()).or_default().latest = record.version;
        entries.push((
            key(b'R', &[&kb, &[0], &record.version.to_be_bytes()]),
            loc_bytes(&location),
        ));
        Ok(location)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemStore;
    use proofs::keys::test_seed;
    use proofs::tx::TxBody;

    struct Kit {
        ledger: Ledger,
        store: Arc<MemStore>,
        dept: SigningKey,
        chain: ChainTrust,
    }

    fn dk() -> Arc<DataKeys> {
        Arc::new(DataKeys::for_tests("t"))
    }

    /// Fields and secret committing to a commitment that depends on `n`.
    fn committed(n: u8) -> (BTreeMap<String, Value>, [u8; 32], Hash) {
        let mut fields = BTreeMap::new();
        fields.insert("n".to_owned(), Value::Int(i64::from(n)));
        let c = proofs::commitment::CommittedRecord::new(fields.clone(), [1; 32])
            .unwrap()
            .commitment();
        (fields, [1; 32], c)
    }

    fn endorsers() -> Vec<SigningKey> {
        (0..4)
            .map(|i| SigningKey::from_seed(&test_seed(&format!("t/e{i}"))))
            .collect()
    }

    fn kit() -> Kit {
        let keys = endorsers();
        let chain =
            ChainTrust::new("t-chain", keys.iter().map(SigningKey::public).collect(), 3).unwrap();
        let store = Arc::new(MemStore::new());
        let end = Arc::new(LocalEndorsers::new(
            keys.into_iter()
                .enumerate()
                .take(3)
                .map(|(i, k)| (i as u16, k))
                .collect(),
        ));
        let (ledger, report) =
            Ledger::open(store.clone(), chain.clone(), end, dk(), 1_000).unwrap();
        assert_eq!(report.blocks, 1);
        Kit {
            ledger,
            store,
            dept: SigningKey::from_seed(&test_seed("t.dept")),
            chain,
        }
    }

    fn publish(k: &Kit, id: &str, version: u32, commitment: u8) -> Intent {
        let (fields, secret, commitment) = committed(commitment);
        let body = TxBody::RecordCommit {
            record_type: "marriage".into(),
            record_id: id.into(),
            subjects: vec![SubjectRef(Hash([9; 32]))],
            version,
            commitment,
            issued_ms: 5,
        };
        let tx = Transaction::sign("t-chain", "t.dept", body, &k.dept);
        Intent::Publish(Box::new(Publish {
            key: RecordKey {
                department: "t.dept".into(),
                record_type: "marriage".into(),
                record_id: id.into(),
            },
            record: StoredRecord {
                version,
                subjects: vec![],
                subject_refs: vec![SubjectRef(Hash([9; 32]))],
                fields,
                secret,
                commitment,
                issued_ms: 5,
                location: None,
            },
            tx: PreparedTx::new(&tx),
        }))
    }

    fn code(o: &Outcome) -> &'static str {
        match o {
            Outcome::Written { .. } => "written",
            Outcome::Duplicate { .. } => "duplicate",
            Outcome::Rejected { code, .. } => code,
        }
    }

    #[test]
    fn publish_supersede_duplicate_and_refusals() {
        let k = kit();
        let out = k
            .ledger
            .apply(
                vec![
                    publish(&k, "a", 1, 1),
                    publish(&k, "a", 2, 2),
                    publish(&k, "a", 2, 2),
                    publish(&k, "b", 2, 3),
                ],
                2_000,
            )
            .unwrap();
        let codes: Vec<_> = out.iter().map(|o| code(&o[0])).collect();
        assert_eq!(
            codes,
            ["written", "written", "duplicate", "record.version_not_next"]
        );
        assert_eq!(k.ledger.head().height, 1);
        // Same version, other commitment: refused; identical resend: duplicate.
        let out = k
            .ledger
            .apply(vec![publish(&k, "a", 2, 9), publish(&k, "a", 1, 1)], 3_000)
            .unwrap();
        assert_eq!(code(&out[0][0]), "record.version_exists");
        assert_eq!(code(&out[1][0]), "duplicate");
        // Nothing written: no block cut.
        assert_eq!(k.ledger.head().height, 1);
        let key = RecordKey {
            department: "t.dept".into(),
            record_type: "marriage".into(),
            record_id: "a".into(),
        };
        assert_eq!(
            k.ledger.record_state(&key).unwrap().unwrap().current(),
            Some(2)
        );
        assert_eq!(
            k.ledger
                .records_of_subject(&SubjectRef(Hash([9; 32])))
                .unwrap(),
            vec![key]
        );
    }

    #[test]
    fn bundles_verify_and_open_checks_everything() {
        let k = kit();
        let out = k
            .ledger
            .apply(
                (0..5)
                    .map(|i| publish(&k, &format!("r{i}"), 1, i))
                    .collect(),
                2_000,
            )
            .unwrap();
        let Outcome::Written { location } = out[3][0] else {
            panic!()
        };
        let b = k.ledger.bundle(&location.leaf).unwrap().unwrap();
        let mut report = proofs::Report::new();
        let roots = proofs::TrustRoots::new(Hash([0; 32]))
            .with_chain(k.chain.clone())
            .with_member(proofs::Member {
                id: "t.dept".into(),
                role: proofs::Role::Department,
                city: "t".into(),
                chain: "t-chain".into(),
                owns: vec!["marriage".into()],
                signing: k.dept.public(),
                hpke: None,
            });
        proofs::verify_bundle(&b, &roots, 3_000, "b", &mut report);
        assert!(report.ok(), "{report}");

        // Reopen: verifies. Then corrupt a transaction: refused with the height.
        let end = Arc::new(LocalEndorsers::new(vec![]));
        let (_, r) =
            Ledger::open(k.store.clone(), k.chain.clone(), end.clone(), dk(), 4_000).unwrap();
        assert_eq!((r.blocks, r.transactions), (2, 5));
        let mut batch = WriteBatch::new();
        let packed = k.store.get_pack(&key(b'T', &[&be8(1)])).unwrap().unwrap();
        let mut items: Vec<Vec<u8>> = (0..5)
            .map(|i| packed_item(&packed, i).unwrap().to_vec())
            .collect();
        items[2] = b"tampered".to_vec();
        batch.put_pack(key(b'T', &[&be8(1)]), items.iter().map(Vec::as_slice));
        k.store.commit(batch).unwrap();
        match Ledger::open(k.store.clone(), k.chain.clone(), end, dk(), 4_000) {
            Err(LedgerError::Corrupt { height: 1, problem }) => {
                assert!(problem.contains("tx root"), "{problem}")
            }
            Err(e) => panic!("unexpected error {e}"),
            Ok(_) => panic!("a tampered store was served"),
        }
    }

    /// Issue 15 item 10: a changed stored value is refused (`store.corrupt`,
    /// counted), never returned; also when it is re-sealed under the right
    /// key (the values no longer open the commitment on chain) or moved to
    /// another record's slot.
    #[test]
    fn a_flipped_bit_in_a_stored_value_is_refused_not_answered() {
        let k = kit();
        k.ledger
            .apply(
                vec![publish(&k, "a", 1, 30), publish(&k, "b", 1, 31)],
                2_000,
            )
            .unwrap();
        let rk = |id: &str| RecordKey {
            department: "t.dept".into(),
            record_type: "marriage".into(),
            record_id: id.into(),
        };
        let good = k.ledger.record_version(&rk("a"), 1).unwrap().unwrap();
        assert_eq!(good.fields["n"], Value::Int(30));
        let vkey = key(b'V', &[&be8(1)]);
        let packed = k.store.get_pack(&vkey).unwrap().unwrap();
        let items: Vec<Vec<u8>> = (0..2)
            .map(|i| packed_item(&packed, i).unwrap().to_vec())
            .collect();
        let put = |items: &[Vec<u8>]| {
            let mut b = WriteBatch::new();
            b.put_pack(vkey.clone(), items.iter().map(Vec::as_slice));
            k.store.commit(b).unwrap();
        };
        let refused = |what: &str| match k.ledger.record_version(&rk("a"), 1) {
            Err(e @ LedgerError::CorruptValue { .. }) => assert_eq!(e.code(), "store.corrupt"),
            Err(e) => panic!("{what}: unexpected error {e}"),
            Ok(r) => panic!("{what}: served {r:?}"),
        };
        // Every byte of the item, one bit at a time (a sample of bits).
        for i in 0..items[0].len() {
            let mut bad = items.clone();
            bad[0][i] ^= 1 << (i % 8);
            put(&bad);
            refused(&format!("byte {i}"));
        }
        // The other record's item in this slot.
        put(&[items[1].clone(), items[1].clone()]);
        refused("moved");
        // Sealed correctly, but with a value that is not what was committed.
        let mut forged = good.clone();
        forged.fields.insert("n".into(), Value::Int(94));
        let sealed = dk().seal(
            &record_aad("t-chain", &rk("a").bytes(), 1),
            &forged.encode(),
        );
        put(&[sealed, items[1].clone()]);
        refused("re-sealed with another value");
        assert!(k.ledger.corrupt_values() >= items[0].len() as u64 + 2);
        // A publication over a corrupt version is refused with the code, and the writer goes on.
        let out = k
            .ledger
            .apply(vec![publish(&k, "a", 1, 30)], 3_000)
            .unwrap();
        assert_eq!(code(&out[0][0]), "store.corrupt");
        put(&items);
        assert_eq!(
            k.ledger.record_version(&rk("a"), 1).unwrap().unwrap(),
            good,
            "the intact value reads again"
        );
    }

    #[test]
    fn stored_records_round_trip_in_binary() {
        let mut fields = BTreeMap::new();
        fields.insert("status".to_owned(), Value::Text("married".into()));
        fields.insert("children".to_owned(), Value::Int(2));
        let base = "32010219850307123";
        let id = SubjectId::resident(&format!(
            "{base}{}",
            SubjectId::resident_check_char(base).unwrap()
        ))
        .unwrap();
        let r = StoredRecord {
            version: 3,
            subjects: vec![id, SubjectId::infer("南京长江数据科技有限公司").unwrap()],
            subject_refs: vec![SubjectRef(Hash([1; 32]))],
            fields,
            secret: [9; 32],
            commitment: Hash([2; 32]),
            issued_ms: 77,
            location: Some(TxLocation {
                height: 5,
                index: 6,
                leaf: Hash([3; 32]),
            }),
        };
        let b = r.encode();
        assert_eq!(StoredRecord::decode(&b).unwrap(), r);
        for cut in 0..b.len() {
            assert!(StoredRecord::decode(&b[..cut]).is_err());
        }
    }

    #[test]
    fn a_store_of_another_chain_is_refused() {
        let k = kit();
        let keys = endorsers();
        let other = ChainTrust::new(
            "other-chain",
            keys.iter().map(SigningKey::public).collect(),
            3,
        )
        .unwrap();
        let end = Arc::new(LocalEndorsers::new(vec![]));
        assert!(matches!(
            Ledger::open(k.store.clone(), other, end, dk(), 1),
            Err(LedgerError::WrongChain { .. })
        ));
    }

    #[test]
    fn a_store_of_the_old_layout_is_refused_with_what_to_do() {
        let k = kit();
        let mut b = WriteBatch::new();
        b.delete(b"Mlayout".to_vec());
        k.store.commit(b).unwrap();
        let keys = endorsers();
        let end = Arc::new(LocalEndorsers::new(vec![(0, keys[0].clone())]));
        match Ledger::open(k.store.clone(), k.chain.clone(), end, dk(), 1) {
            Err(LedgerError::Corrupt { problem, .. }) => {
                assert!(problem.contains("layout 1"), "{problem}");
                assert!(problem.contains("re-import"), "{problem}");
            }
            other => panic!("opened an old-layout store: {:?}", other.err()),
        }
    }

    #[test]
    fn every_record_is_found_through_index_runs_after_reopen() {
        let keys = endorsers();
        let chain =
            ChainTrust::new("t-chain", keys.iter().map(SigningKey::public).collect(), 3).unwrap();
        let store = Arc::new(MemStore::new());
        let end = || {
            Arc::new(LocalEndorsers::new(
                keys.iter()
                    .cloned()
                    .enumerate()
                    .take(3)
                    .map(|(i, k)| (i as u16, k))
                    .collect(),
            ))
        };
        let small = IndexConfig {
            memtable_entries: 32,
            chunk_bytes: 256,
            batch_bytes: 1024,
            fanout: 3,
            max_run_entries: 2_000,
        };
        let (ledger, _) = Ledger::open_with(
            store.clone(),
            chain.clone(),
            end(),
            dk(),
            1_000,
            small,
            store.clone(),
        )
        .unwrap();
        let k = Kit {
            ledger,
            store: store.clone(),
            dept: SigningKey::from_seed(&test_seed("t.dept")),
            chain: chain.clone(),
        };
        let mut written = Vec::new();
        for block in 0..30 {
            let intents: Vec<Intent> = (0..10)
                .map(|i| publish(&k, &format!("r{block}-{i}"), 1, (block * 10 + i) as u8))
                .collect();
            for o in k.ledger.apply(intents, 2_000).unwrap() {
                let Outcome::Written { location } = o[0] else {
                    panic!("{o:?}")
                };
                written.push(location);
            }
        }
        k.ledger.settle_index();
        assert!(
            k.ledger.index_stats().runs > 0,
            "{:?}",
            k.ledger.index_stats()
        );
        // Close the ledger (and its index thread) before opening the store again.
        let dept = k.dept.clone();
        drop(k);
        let (ledger, _) = Ledger::open_with(
            store.clone(),
            chain.clone(),
            end(),
            dk(),
            3_000,
            small,
            store.clone(),
        )
        .unwrap();
        let k = Kit {
            ledger,
            store,
            dept,
            chain,
        };
        for (n, loc) in written.iter().enumerate() {
            let id = format!("r{}-{}", n / 10, n % 10);
            let rk = RecordKey {
                department: "t.dept".into(),
                record_type: "marriage".into(),
                record_id: id.clone(),
            };
            assert_eq!(
                k.ledger.record_state(&rk).unwrap().unwrap().latest,
                1,
                "{id}"
            );
            assert_eq!(
                k.ledger.record_version(&rk, 1).unwrap().unwrap().location,
                Some(*loc),
                "{id}"
            );
            assert_eq!(k.ledger.locate(&loc.leaf).unwrap(), Some(*loc), "{id}");
            // A second publication of the same version is a duplicate, not a new write.
            let again = k
                .ledger
                .apply(vec![publish(&k, &id, 1, n as u8)], 4_000)
                .unwrap();
            assert_eq!(again[0][0], Outcome::Duplicate { location: *loc }, "{id}");
        }
        assert_eq!(
            k.ledger
                .records_of_subject(&SubjectRef(Hash([9; 32])))
                .unwrap()
                .len(),
            300
        );
    }

    /// A crash with every entry still in the memtable (no run written, nothing
    /// flushed on close): the entries come back from the stored transactions.
    #[test]
    fn index_entries_are_derived_again_from_the_blocks_after_a_crash() {
        let k = kit();
        let mut written = Vec::new();
        for block in 0..12 {
            let intents: Vec<Intent> = (0..7)
                .map(|i| publish(&k, &format!("c{block}-{i}"), 1, (block * 7 + i) as u8))
                .collect();
            for o in k.ledger.apply(intents, 2_000).unwrap() {
                let Outcome::Written { location } = o[0] else {
                    panic!("{o:?}")
                };
                written.push(location);
            }
        }
        assert_eq!(
            k.ledger.index_stats().runs,
            0,
            "everything is in the memtable"
        );
        // The disk as a SIGKILL leaves it: a copy of the store, no close.
        let crashed = Arc::new(MemStore::new());
        let mut copy = WriteBatch::new();
        for (key, v) in k.store.scan_prefix(b"").unwrap() {
            assert!(!key.starts_with(b"K"), "no per-block entries are stored");
            copy.put(key, v);
        }
        crashed.commit(copy).unwrap();
        let end = Arc::new(LocalEndorsers::new(vec![]));
        let (ledger, _) = Ledger::open(crashed, k.chain.clone(), end, dk(), 3_000).unwrap();
        for (n, loc) in written.iter().enumerate() {
            let id = format!("c{}-{}", n / 7, n % 7);
            let rk = RecordKey {
                department: "t.dept".into(),
                record_type: "marriage".into(),
                record_id: id.clone(),
            };
            assert_eq!(
                ledger.record_version(&rk, 1).unwrap().unwrap().location,
                Some(*loc),
                "{id}"
            );
            assert_eq!(ledger.locate(&loc.leaf).unwrap(), Some(*loc), "{id}");
        }
        assert_eq!(
            ledger
                .records_of_subject(&SubjectRef(Hash([9; 32])))
                .unwrap()
                .len(),
            84
        );
    }

    #[test]
    fn revocation_and_import() {
        let k = kit();
        k.ledger.apply(vec![publish(&k, "a", 1, 1)], 2_000).unwrap();
        let key = RecordKey {
            department: "t.dept".into(),
            record_type: "marriage".into(),
            record_id: "a".into(),
        };
        let revoke = |v: u32| {
            let body = TxBody::RecordRevoke {
                record_type: "marriage".into(),
                record_id: "a".into(),
                version: v,
                reason: RevokeReason::Revoked,
                at_ms: 7,
            };
            Intent::Revoke {
                key: key.clone(),
                version: v,
                reason: RevokeReason::Revoked,
                at_ms: 7,
                tx: PreparedTx::new(&Transaction::sign("t-chain", "t.dept", body, &k.dept)),
            }
        };
        let out = k
            .ledger
            .apply(vec![revoke(1), revoke(1), revoke(3)], 3_000)
            .unwrap();
        assert_eq!(
            [code(&out[0][0]), code(&out[1][0]), code(&out[2][0])],
            ["written", "duplicate", "record.unknown_version"]
        );
        assert_eq!(
            k.ledger.record_state(&key).unwrap().unwrap().current(),
            None
        );

        // Import: written whole; a resend is all duplicates; a conflicting member aborts the batch.
        let bodies: Vec<TxBody> = (0..3)
            .map(|i| TxBody::RecordCommit {
                record_type: "marriage".into(),
                record_id: format!("imp{i}"),
                subjects: vec![SubjectRef(Hash([8; 32]))],
                version: 1,
                commitment: committed(i).2,
                issued_ms: 1,
            })
            .collect();
        let (seal, members) = Transaction::batch("t-chain", "t.dept", bodies, &k.dept);
        let root = match seal.body {
            TxBody::BatchSeal { root, .. } => root,
            _ => unreachable!(),
        };
        let intent = |members: &[Transaction]| Intent::Import {
            seal: PreparedTx::new(&seal),
            root,
            member_levels: flat_levels(
                &members
                    .iter()
                    .map(|m| merkle::leaf_hash(&m.signing_bytes()))
                    .collect::<Vec<_>>(),
            ),
            members: members
                .iter()
                .enumerate()
                .map(|(i, m)| Publish {
                    key: RecordKey {
                        department: "t.dept".into(),
                        record_type: "marriage".into(),
                        record_id: format!("imp{i}"),
                    },
                    record: StoredRecord {
                        version: 1,
                        subjects: vec![],
                        // As in the members' bodies (the index derives from those).
                        subject_refs: vec![SubjectRef(Hash([8; 32]))],
                        fields: committed(i as u8).0,
                        secret: committed(i as u8).1,
                        commitment: committed(i as u8).2,
                        issued_ms: 1,
                        location: None,
                    },
                    tx: PreparedTx::new(m),
                })
                .collect(),
        };
        let out = k.ledger.apply(vec![intent(&members)], 4_000).unwrap();
        assert!(out[0].iter().all(|o| code(o) == "written"));
        let Outcome::Written { location } = out[0][1] else {
            panic!()
        };
        let b = k.ledger.bundle(&location.leaf).unwrap().unwrap();
        assert!(
            b.batch.is_some(),
            "a batch member's bundle carries its seal"
        );
        let out = k.ledger.apply(vec![intent(&members)], 5_000).unwrap();
        assert!(out[0].iter().all(|o| code(o) == "duplicate"));

        // Levels that do not hash to the sealed root: nothing is written.
        let (seal2, members2) = Transaction::batch(
            "t-chain",
            "t.dept",
            (0..3)
                .map(|i| TxBody::RecordCommit {
                    record_type: "marriage".into(),
                    record_id: format!("lvl{i}"),
                    subjects: vec![SubjectRef(Hash([8; 32]))],
                    version: 1,
                    commitment: Hash([9 + i; 32]),
                    issued_ms: 1,
                })
                .collect(),
            &k.dept,
        );
        let root2 = match seal2.body {
            TxBody::BatchSeal { root, .. } => root,
            _ => unreachable!(),
        };
        let mut bad = intent(&members2);
        if let Intent::Import {
            seal,
            root,
            member_levels,
            members,
        } = &mut bad
        {
            *seal = PreparedTx::new(&seal2);
            *root = root2;
            // The members' leaves in another order: another root.
            let mut leaves: Vec<Hash> = members2
                .iter()
                .map(|m| merkle::leaf_hash(&m.signing_bytes()))
                .collect();
            leaves.reverse();
            *member_levels = flat_levels(&leaves);
            for (i, m) in members.iter_mut().enumerate() {
                m.key.record_id = format!("lvl{i}");
            }
        }
        let before = k.ledger.head().height;
        let out = k.ledger.apply(vec![bad], 6_000).unwrap();
        assert!(
            out[0].iter().all(|o| code(o) == "batch.inconsistent"),
            "{:?}",
            out[0]
        );
        assert_eq!(k.ledger.head().height, before, "no block was cut");
    }
}
