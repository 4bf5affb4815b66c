//! A test kit: seeded keys, a one-chain region and certified blocks of record
//! commitments, for tests and benchmarks. **Every key here is derived from a
//! public label; nothing built with this module is secure.**

use std::collections::BTreeMap;

use crate::bundle::{BoundDisclosure, EvidencePackage, PACKAGE_FORMAT, ProofBundle};
use crate::commitment::CommittedRecord;
use crate::hash::Hash;
use crate::header::{Certificate, CertifiedHeader, Header};
use crate::keys::{SigningKey, test_seed};
use crate::merkle::MerkleTree;
use crate::subject::{SubjectId, SubjectKey, SubjectRef};
use crate::trust::{ChainTrust, Member, Role, TrustRoots};
use crate::tx::{Transaction, TxBody};
use crate::value::{Date, Value};

/// A region with one chain, its endorsers and one department.
#[derive(Debug, Clone)]
pub struct TestChain {
    /// The chain id.
    pub chain_id: String,
    /// Endorser keys, by index.
    pub endorsers: Vec<SigningKey>,
    /// The department that writes records.
    pub department: (String, SigningKey),
    /// The trust roots for all of it.
    pub roots: TrustRoots,
    /// Subject key of the city.
    pub subject_key: SubjectKey,
}

/// A block built by [`TestChain::block`].
#[derive(Debug, Clone)]
pub struct TestBlock {
    /// Certified header.
    pub header: CertifiedHeader,
    /// The transactions.
    pub txs: Vec<Transaction>,
    /// The records committed (same order as `txs`).
    pub records: Vec<CommittedRecord>,
    /// The tx tree.
    pub tree: MerkleTree,
}

/// Registry hash the test kit's roots claim.
pub const TEST_REGISTRY_HASH: Hash = Hash([0x7b; 32]);
/// The time the test kit's headers carry (2024-01-01T00:00:00Z).
pub const TEST_TIME_MS: u64 = 1_704_067_200_000;

impl TestChain {
    /// A chain `chain_id` with `n` endorsers and threshold `t`.
    ///
    /// # Panics
    /// If `t` is 0 or above `n` (a test-setup mistake).
    pub fn new(chain_id: &str, n: usize, t: u16) -> Self {
        let endorsers: Vec<SigningKey> = (0..n)
            .map(|i| SigningKey::from_seed(&test_seed(&format!("{chain_id}/endorser/{i}"))))
            .collect();
        let chain = ChainTrust::new(
            chain_id,
            endorsers.iter().map(SigningKey::public).collect(),
            t,
        )
        .unwrap_or_else(|e| panic!("test chain: {e}"));
        let dept_id = format!("{chain_id}.civil-affairs");
        let dept = SigningKey::from_seed(&test_seed(&dept_id));
        let roots = TrustRoots::new(TEST_REGISTRY_HASH)
            .with_chain(chain)
            .with_member(Member {
                id: dept_id.clone(),
                role: Role::Department,
                city: chain_id.to_owned(),
                chain: chain_id.to_owned(),
                owns: vec!["marriage".to_owned()],
                signing: dept.public(),
                hpke: None,
            });
        TestChain {
            chain_id: chain_id.to_owned(),
            endorsers,
            department: (dept_id, dept),
            roots,
            subject_key: SubjectKey::from_bytes(test_seed(&format!("{chain_id}/subject-key"))),
        }
    }

    /// A synthetic subject reference for subject number `i`.
    pub fn subject(&self, i: u64) -> SubjectRef {
        let base = format!("3201021990{:07}", i % 10_000_000);
        let check = SubjectId::resident_check_char(&base).unwrap_or('0');
        let id = SubjectId::resident(&format!("{base}{check}"))
            .unwrap_or_else(|e| panic!("synthetic id: {e}"));
        self.subject_key.reference(&id)
    }

    /// A marriage record for subject `i`, committed and signed.
    pub fn record_tx(&self, i: u64) -> (Transaction, CommittedRecord) {
        let mut f = BTreeMap::new();
        f.insert(
            "status".to_owned(),
            Value::Text(
                if i.is_multiple_of(3) {
                    "divorced"
                } else {
                    "married"
                }
                .into(),
            ),
        );
        f.insert(
            "certificate_no".to_owned(),
            Value::Text(format!("J320102-2019-{i:06}")),
        );
        f.insert(
            "registered_on".to_owned(),
            Value::Date(Date::from_unix_ms(1_500_000_000_000 + i * 86_400_000)),
        );
        f.insert(
            "office".to_owned(),
            Value::Text("Nanjing Xuanwu civil affairs bureau".into()),
        );
        let rec = CommittedRecord::new(f, test_seed(&format!("record/{i}")))
            .unwrap_or_else(|e| panic!("{e}"));
        let body = TxBody::RecordCommit {
            record_type: "marriage".into(),
            record_id: format!("J320102-2019-{i:06}"),
            subjects: vec![self.subject(i)],
            version: 1,
            commitment: rec.commitment(),
            issued_ms: TEST_TIME_MS,
        };
        (
            Transaction::sign(&self.chain_id, &self.department.0, body, &self.department.1),
            rec,
        )
    }

    /// Certifies a header with the first `signers` endorsers.
    pub fn certify(&self, header: Header, signers: usize) -> CertifiedHeader {
        let s: Vec<(u16, &SigningKey)> = self
            .endorsers
            .iter()
            .enumerate()
            .take(signers)
            .map(|(i, k)| (i as u16, k))
            .collect();
        let certificate = Certificate::sign(&header, &s);
        CertifiedHeader {
            header,
            certificate,
        }
    }

    /// A block at `height` (after `prev`) holding `n` record commitments, certified
    /// by exactly the threshold of endorsers.
    pub fn block(&self, height: u64, prev: Hash, n: u64) -> TestBlock {
        let (txs, records): (Vec<_>, Vec<_>) = (0..n)
            .map(|i| self.record_tx(height * 1_000_000 + i))
            .unzip();
        let tree = MerkleTree::from_data(&txs.iter().map(Transaction::encode).collect::<Vec<_>>());
        let header = Header {
            chain_id: self.chain_id.clone(),
            height,
            prev,
            timestamp_ms: TEST_TIME_MS + height,
            tx_count: n,
            tx_root: tree.root(),
        };
        let t = usize::from(self.roots.chains[&self.chain_id].threshold());
        TestBlock {
            header: self.certify(header, t),
            txs,
            records,
            tree,
        }
    }
}

impl TestBlock {
    /// The bundle proving transaction `i`.
    ///
    /// # Panics
    /// If `i` is out of range.
    pub fn bundle(&self, i: usize) -> ProofBundle {
        let proof = self
            .tree
            .inclusion_proof(i)
            .unwrap_or_else(|| panic!("tx {i} out of range"));
        ProofBundle::new(self.header.clone(), &self.txs[i], proof)
    }
    /// A package with the bundle of transaction `i` and a disclosure of `field`.
    pub fn package(&self, i: usize, field: &str) -> EvidencePackage {
        let field = self.records[i]
            .disclose(field)
            .unwrap_or_else(|| panic!("no field {field}"));
        EvidencePackage {
            format: PACKAGE_FORMAT,
            registry_hash: TEST_REGISTRY_HASH,
            bundles: vec![self.bundle(i)],
            disclosures: vec![BoundDisclosure { bundle: 0, field }],
        }
    }
}
