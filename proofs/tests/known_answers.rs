//! Known-answer vectors for Tongban's own encodings, shared with `docs/encoding.md`.
//!
//! The file `docs/vectors/encoding-v1.json` holds, for fixed inputs, the exact
//! bytes and digests of every structure that is hashed or signed, and a complete
//! evidence package with the keys to check it. This test rebuilds all of it and
//! compares byte for byte, so the code and the document can never drift apart.
//! After an intended format change, rewrite the file with
//! `TONGBAN_WRITE_KAT=1 cargo test -p proofs --test known_answers` and bump the
//! domain tags' version.

use std::collections::BTreeMap;
use std::path::Path;

use proofs::bundle::{
    BoundDisclosure, EvidencePackage, PACKAGE_FORMAT, ProofBundle, verify_package,
};
use proofs::commitment::{CommittedRecord, field_leaf, field_salt};
use proofs::hash::{Hash, sha256};
use proofs::header::{Certificate, CertifiedHeader, Header};
use proofs::keys::{SigningKey, test_seed};
use proofs::merkle::{MerkleTree, leaf_hash, node_hash};
use proofs::subject::{SubjectId, SubjectKey};
use proofs::trust::{ChainTrust, Member, Role, TrustRoots};
use proofs::tx::{Transaction, TxBody};
use proofs::value::{Date, Value};
use serde_json::{Value as Json, json};

fn kat() -> Json {
    let dept = SigningKey::from_seed(&test_seed("kat/nanjing.civil-affairs"));
    let endorsers: Vec<SigningKey> = (0..4)
        .map(|i| SigningKey::from_seed(&test_seed(&format!("kat/endorser/{i}"))))
        .collect();
    let subject_key = SubjectKey::from_bytes(test_seed("kat/subject-key"));
    let base = "32010219900307123";
    let subject = SubjectId::resident(&format!(
        "{base}{}",
        SubjectId::resident_check_char(base).unwrap()
    ))
    .unwrap();
    let subject_ref = subject_key.reference(&subject);

    let secret = test_seed("kat/record-secret");
    let mut fields = BTreeMap::new();
    fields.insert(
        "certificate_no".to_owned(),
        Value::Text("J320102-2019-001234".into()),
    );
    fields.insert(
        "registered_on".to_owned(),
        Value::Date(Date::parse("2019-05-20").unwrap()),
    );
    fields.insert("status".to_owned(), Value::Text("married".into()));
    fields.insert("children".to_owned(), Value::Int(1));
    fields.insert("joint_property".to_owned(), Value::Bool(true));
    let record = CommittedRecord::new(fields, secret).unwrap();

    let status_salt = field_salt(&secret, "status");
    let status_leaf = field_leaf("status", &status_salt, &Value::Text("married".into()));

    let tx1 = Transaction::sign(
        "nanjing",
        "nanjing.civil-affairs",
        TxBody::RecordCommit {
            record_type: "marriage".into(),
            record_id: "J320102-2019-001234".into(),
            subjects: vec![subject_ref],
            version: 1,
            commitment: record.commitment(),
            issued_ms: 1_558_310_400_000,
        },
        &dept,
    );
    let tx2 = Transaction::sign(
        "nanjing",
        "nanjing.civil-affairs",
        TxBody::RecordRevoke {
            record_type: "marriage".into(),
            record_id: "J320102-2015-000777".into(),
            version: 2,
            reason: proofs::tx::RevokeReason::Revoked,
            at_ms: 1_558_310_400_000,
        },
        &dept,
    );
    let tx3 = Transaction::sign(
        "nanjing",
        "nanjing.civil-affairs",
        TxBody::RecordCommit {
            record_type: "marriage".into(),
            record_id: "J320102-2019-001300".into(),
            subjects: {
                // Two parties: references are sorted and distinct.
                let b = "32010219881111002";
                let other = SubjectId::resident(&format!(
                    "{b}{}",
                    SubjectId::resident_check_char(b).unwrap()
                ))
                .unwrap();
                let mut both = vec![subject_ref, subject_key.reference(&other)];
                both.sort();
                both
            },
            version: 1,
            commitment: Hash([0x11; 32]),
            issued_ms: 1_558_310_400_000,
        },
        &dept,
    );
    let txs = [tx1.encode(), tx2.encode(), tx3.encode()];
    let tree = MerkleTree::from_data(&txs);
    let header = Header {
        chain_id: "nanjing".into(),
        height: 42,
        prev: sha256(b"kat/previous-header"),
        timestamp_ms: 1_558_310_401_000,
        tx_count: 3,
        tx_root: tree.root(),
    };
    let cert = Certificate::sign(
        &header,
        &[(0, &endorsers[0]), (2, &endorsers[2]), (3, &endorsers[3])],
    );
    let bundle = ProofBundle::new(
        CertifiedHeader {
            header: header.clone(),
            certificate: cert,
        },
        &tx1,
        tree.inclusion_proof(0).unwrap(),
    );
    let registry_hash = sha256(b"kat/registry");
    let package = EvidencePackage {
        format: PACKAGE_FORMAT,
        registry_hash,
        bundles: vec![bundle.clone()],
        disclosures: vec![BoundDisclosure {
            bundle: 0,
            field: record.disclose("status").unwrap(),
        }],
    };

    // The package verifies under exactly these roots.
    let roots = TrustRoots::new(registry_hash)
        .with_chain(
            ChainTrust::new(
                "nanjing",
                endorsers.iter().map(SigningKey::public).collect(),
                3,
            )
            .unwrap(),
        )
        .with_member(Member {
            id: "nanjing.civil-affairs".into(),
            role: Role::Department,
            city: "nanjing".into(),
            chain: "nanjing".into(),
            owns: vec!["marriage".into()],
            signing: dept.public(),
            hpke: None,
        });
    let report = verify_package(&package, &roots, 1_558_310_460_000);
    assert!(report.ok(), "{report}");

    // A batch: two record commitments authorised by one seal, all in one block.
    let bodies: Vec<TxBody> = (0..2u32)
        .map(|i| TxBody::RecordCommit {
            record_type: "marriage".into(),
            record_id: format!("J320102-2020-00000{i}"),
            subjects: vec![subject_ref],
            version: 1,
            commitment: Hash([0x20 + i as u8; 32]),
            issued_ms: 1_558_310_400_000,
        })
        .collect();
    let (seal, members) = Transaction::batch("nanjing", "nanjing.civil-affairs", bodies, &dept);
    let batch_txs = [seal.encode(), members[0].encode(), members[1].encode()];
    let batch_tree = MerkleTree::from_data(&batch_txs);
    let batch_header = Header {
        chain_id: "nanjing".into(),
        height: 43,
        prev: header.hash(),
        timestamp_ms: 1_558_310_402_000,
        tx_count: 3,
        tx_root: batch_tree.root(),
    };
    let batch_cert = Certificate::sign(
        &batch_header,
        &[(1, &endorsers[1]), (2, &endorsers[2]), (3, &endorsers[3])],
    );
    let batch_certified = CertifiedHeader {
        header: batch_header,
        certificate: batch_cert,
    };
    let seal_bundle = ProofBundle::new(
        batch_certified.clone(),
        &seal,
        batch_tree.inclusion_proof(0).unwrap(),
    );
    let member_path = proofs::tx::batch_member_proof(&members, 1);
    let member_bundle = ProofBundle::new(
        batch_certified,
        &members[1],
        batch_tree.inclusion_proof(2).unwrap(),
    )
    .with_batch(seal_bundle, member_path.clone());
    let batch_package = EvidencePackage {
        format: PACKAGE_FORMAT,
        registry_hash,
        bundles: vec![member_bundle.clone()],
        disclosures: vec![],
    };
    let report = verify_package(&batch_package, &roots, 1_558_310_460_000);
    assert!(report.ok(), "{report}");

    let h = |b: &[u8]| hex::encode(b);
    json!({
        "about": "Tongban known-answer vectors, encoding v1. See docs/encoding.md. Keys are test keys: seed = SHA-256(\"tongban/test-key/v1\" || label).",
        "primitives": {
            "leaf_hash_of_empty": leaf_hash(b"").to_hex(),
            "node_hash_of_leaf_hashes_of_00_and_01": node_hash(&leaf_hash(&[0]).0, &leaf_hash(&[1]).0).to_hex(),
            "empty_tree_root": proofs::merkle::empty_root().to_hex(),
        },
        "keys": {
            "department": { "label": "kat/nanjing.civil-affairs", "seed": h(&test_seed("kat/nanjing.civil-affairs")), "public": dept.public().to_hex() },
            "endorsers": endorsers.iter().enumerate().map(|(i, k)| json!({"index": i, "label": format!("kat/endorser/{i}"), "public": k.public().to_hex()})).collect::<Vec<_>>(),
            "threshold": 3,
            "subject_key": h(&subject_key.to_bytes()),
        },
        "trust_roots": {
            "registry_hash": registry_hash.to_hex(),
            "clock_skew_ms": 30_000,
            "chains": [{ "chain_id": "nanjing", "threshold": 3, "endorsers": endorsers.iter().map(|k| k.public().to_hex()).collect::<Vec<_>>() }],
            "members": [{ "id": "nanjing.civil-affairs", "role": "department", "chain": "nanjing", "owns": ["marriage"], "signing": dept.public().to_hex() }],
        },
        "subject": {
            "kind": "resident",
            "id": subject.expose(),
            "hmac_input": h(&{
                let mut e = proofs::encoding::Encoder::with_domain(proofs::subject::SUBJECT_DOMAIN);
                e.str(subject.expose());
                e.finish()
            }),
            "reference": subject_ref.0.to_hex(),
        },
        "record": {
            "secret": h(&secret),
            "fields": record.fields().iter().map(|(n, v)| json!({
                "name": n,
                "value": serde_json::to_value(v).unwrap(),
                "salt": h(&field_salt(&secret, n)),
                "leaf_data": h(&field_leaf(n, &field_salt(&secret, n), v)),
                "leaf_hash": leaf_hash(&field_leaf(n, &field_salt(&secret, n), v)).to_hex(),
            })).collect::<Vec<_>>(),
            "status_leaf_data": h(&status_leaf),
            "commitment": record.commitment().to_hex(),
        },
        "transactions": txs.iter().map(|t| json!({"bytes": h(t), "leaf_hash": leaf_hash(t).to_hex()})).collect::<Vec<_>>(),
        "tx_signing_bytes_0": h(&tx1.signing_bytes()),
        "header": {
            "fields": serde_json::to_value(&header).unwrap(),
            "bytes": h(&header.encode()),
            "hash": header.hash().to_hex(),
            "endorsement_message": h(&header.endorsement_message()),
        },
        "bundle": { "bytes": h(&bundle.encode()) },
        "batch": {
            "seal": { "bytes": h(&seal.encode()), "signing_bytes": h(&seal.signing_bytes()) },
            "members": members.iter().map(|m| json!({"bytes": h(&m.encode()), "signing_bytes": h(&m.signing_bytes())})).collect::<Vec<_>>(),
            "member_1_path": serde_json::to_value(&member_path).unwrap(),
            "member_1_bundle": h(&member_bundle.encode()),
            "package_bytes": h(&batch_package.encode()),
            "verdict": "valid",
        },
        "package": {
            "now_ms": 1_558_310_460_000u64,
            "registry_hash": registry_hash.to_hex(),
            "bytes": h(&package.encode()),
            "json": serde_json::to_value(&package).unwrap(),
            "verdict": "valid",
        },
    })
}

#[test]
fn encodings_match_the_published_vectors() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/vectors/encoding-v1.json");
    let got = kat();
    let text = serde_json::to_string_pretty(&got).unwrap() + "\n";
    if std::env::var_os("TONGBAN_WRITE_KAT").is_some() {
        std::fs::write(&path, &text).unwrap();
        return;
    }
    let want: Json = serde_json::from_slice(&std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; generate it with TONGBAN_WRITE_KAT=1",
            path.display()
        )
    }))
    .unwrap();
    assert_eq!(
        got, want,
        "encoding changed: update docs/encoding.md and the vectors deliberately"
    );
}

#[test]
fn the_published_package_decodes_and_verifies_from_its_bytes() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/vectors/encoding-v1.json");
    let Ok(text) = std::fs::read(&path) else {
        return;
    };
    let v: Json = serde_json::from_slice(&text).unwrap();
    let bytes = hex::decode(v["package"]["bytes"].as_str().unwrap()).unwrap();
    let pkg = EvidencePackage::decode(&bytes).unwrap();
    let from_json: EvidencePackage = serde_json::from_value(v["package"]["json"].clone()).unwrap();
    assert_eq!(pkg, from_json);
    assert_eq!(pkg.encode(), bytes);
}
