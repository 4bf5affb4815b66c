//! Shared helpers for Tongban's cross-crate tests: the example region, its
//! label-derived test keys, and certified blocks on its chains.
//!
//! Everything here uses the example registry's **test keys** (derived from
//! public labels, see `regions/examples/yangtze-delta.toml`): nothing built
//! with it is secure.

use std::collections::BTreeMap;
use std::path::PathBuf;

use proofs::bundle::{BoundDisclosure, EvidencePackage, PACKAGE_FORMAT, ProofBundle};
use proofs::commitment::CommittedRecord;
use proofs::hash::Hash;
use proofs::header::{Certificate, CertifiedHeader, Header};
use proofs::merkle::MerkleTree;
use proofs::subject::{SubjectId, SubjectKey, SubjectRef};
use proofs::tx::{Transaction, TxBody};
use proofs::{SigningKey, TrustRoots, Value};
use regions::Registry;
use regions::test_keys::signing_key;

/// Path of the example registry.
pub fn example_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../regions/examples/yangtze-delta.toml")
}

/// The example region: registry, its hash and its trust roots.
pub struct Region {
    /// The parsed registry.
    pub registry: Registry,
    /// SHA-256 of the file.
    pub hash: Hash,
    /// Trust roots derived from it.
    pub roots: TrustRoots,
}

impl Region {
    /// Loads and validates the example registry.
    ///
    /// # Panics
    /// If the example does not load (a broken checkout).
    pub fn example() -> Self {
        let (registry, hash) = regions::load(example_path()).expect("example registry loads");
        let roots = registry
            .trust_roots(hash)
            .expect("example registry validates");
        Region {
            registry,
            hash,
            roots,
        }
    }

    /// The chain id of `city`.
    ///
    /// # Panics
    /// If the city is not in the registry.
    pub fn chain_id(&self, city: &str) -> String {
        self.registry
            .city(city)
            .expect("city")
            .chain
            .chain_id
            .clone()
    }

    /// Endorser `i` (0-based) of `city`'s chain.
    pub fn endorser(city: &str, i: usize) -> SigningKey {
        signing_key(&format!("{city}/endorser/{}", i + 1))
    }

    /// Certifies `header` with the given endorser indices of `city`.
    pub fn certify(city: &str, header: Header, signers: &[usize]) -> CertifiedHeader {
        let keys: Vec<(u16, SigningKey)> = signers
            .iter()
            .map(|&i| (i as u16, Self::endorser(city, i)))
            .collect();
        let refs: Vec<(u16, &SigningKey)> = keys.iter().map(|(i, k)| (*i, k)).collect();
        CertifiedHeader {
            certificate: Certificate::sign(&header, &refs),
            header,
        }
    }
}

/// A synthetic resident identity number `n` with a valid check digit.
pub fn resident(n: u64) -> SubjectId {
    let base = format!("3201021985{:07}", n % 10_000_000);
    let check = SubjectId::resident_check_char(&base).expect("17 digits");
    SubjectId::resident(&format!("{base}{check}")).expect("valid by construction")
}

/// A marriage record between residents `a` and `b` with the example's fields.
pub fn marriage(a: u64, b: u64, status: &str, secret: [u8; 32]) -> CommittedRecord {
    let mut f = BTreeMap::new();
    f.insert(
        "certificate_number".to_owned(),
        Value::Text(format!("J320102-2019-{a:06}")),
    );
    f.insert(
        "party_a_id".to_owned(),
        Value::Text(resident(a).expose().to_owned()),
    );
    f.insert(
        "party_b_id".to_owned(),
        Value::Text(resident(b).expose().to_owned()),
    );
    f.insert("status".to_owned(), Value::Text(status.to_owned()));
    f.insert(
        "registration_date".to_owned(),
        Value::Date(proofs::Date::parse("2019-05-20").expect("date")),
    );
    f.insert(
        "registering_office".to_owned(),
        Value::Text("Xuanwu District Marriage Registry".to_owned()),
    );
    CommittedRecord::new(f, secret).expect("valid record")
}

/// Sorted subject references of both parties.
pub fn parties(key: &SubjectKey, a: u64, b: u64) -> Vec<SubjectRef> {
    let mut v = vec![key.reference(&resident(a)), key.reference(&resident(b))];
    v.sort();
    v.dedup();
    v
}

/// One certified block with its transactions and tree.
pub struct Block {
    /// Certified header.
    pub header: CertifiedHeader,
    /// Transactions in order.
    pub txs: Vec<Transaction>,
    /// Their tree.
    pub tree: MerkleTree,
}

impl Block {
    /// Cuts a block on `city`'s chain at `height` holding `txs`, certified by `signers`.
    pub fn cut(
        region: &Region,
        city: &str,
        height: u64,
        prev: Hash,
        txs: Vec<Transaction>,
        signers: &[usize],
    ) -> Self {
        let tree = MerkleTree::from_data(&txs.iter().map(Transaction::encode).collect::<Vec<_>>());
        let header = Header {
            chain_id: region.chain_id(city),
            height,
            prev,
            timestamp_ms: 1_732_500_000_000 + height,
            tx_count: txs.len() as u64,
            tx_root: tree.root(),
        };
        Block {
            header: Region::certify(city, header, signers),
            txs,
            tree,
        }
    }
    /// The bundle for transaction `i`.
    pub fn bundle(&self, i: usize) -> ProofBundle {
        ProofBundle::new(
            self.header.clone(),
            &self.txs[i],
            self.tree.inclusion_proof(i).expect("in range"),
        )
    }
}

/// A package of one bundle and one disclosure.
pub fn package(
    region: &Region,
    bundle: ProofBundle,
    field: proofs::commitment::FieldDisclosure,
) -> EvidencePackage {
    EvidencePackage {
        format: PACKAGE_FORMAT,
        registry_hash: region.hash,
        bundles: vec![bundle],
        disclosures: vec![BoundDisclosure { bundle: 0, field }],
    }
}

/// A record commitment transaction signed by `department` (a registry id).
pub fn commit(
    region: &Region,
    city: &str,
    department: &str,
    record_type: &str,
    record_id: &str,
    subjects: Vec<SubjectRef>,
    record: &CommittedRecord,
) -> Transaction {
    Transaction::sign(
        &region.chain_id(city),
        department,
        TxBody::RecordCommit {
            record_type: record_type.to_owned(),
            record_id: record_id.to_owned(),
            subjects,
            version: 1,
            commitment: record.commitment(),
            issued_ms: 1_732_500_000_000,
        },
        &signing_key(department),
    )
}
