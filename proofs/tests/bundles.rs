//! Bundle and package verification: valid evidence verifies; any change to any
//! byte fails with a specific reason; certificates count distinct endorsers only.

use proofs::bundle::{EvidencePackage, ProofBundle, verify_bundle, verify_package};
use proofs::hash::Hash;
use proofs::header::Endorsement;
use proofs::report::{Outcome, Report};
use proofs::testkit::{TEST_TIME_MS, TestBlock, TestChain};
use proptest::prelude::*;

const NOW: u64 = TEST_TIME_MS + 60_000;

fn chain() -> TestChain {
    static CHAIN: std::sync::OnceLock<TestChain> = std::sync::OnceLock::new();
    CHAIN
        .get_or_init(|| TestChain::new("nanjing", 7, 4))
        .clone()
}

fn block(c: &TestChain) -> TestBlock {
    c.block(3, Hash([9; 32]), 11)
}

fn check(b: &ProofBundle, c: &TestChain) -> Report {
    let mut r = Report::new();
    verify_bundle(b, &c.roots, NOW, "bundle", &mut r);
    r
}

#[test]
fn every_bundle_and_package_of_a_block_verifies() {
    let c = chain();
    let blk = block(&c);
    for i in 0..blk.txs.len() {
        let r = check(&blk.bundle(i), &c);
        assert!(r.ok(), "{r}");
        let p = blk.package(i, "status");
        let r = verify_package(&p, &c.roots, NOW);
        assert!(r.ok(), "{r}");
        assert_eq!(EvidencePackage::decode(&p.encode()).unwrap(), p);
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(serde_json::from_str::<EvidencePackage>(&json).unwrap(), p);
    }
}

#[test]
fn specific_reasons_for_each_field() {
    let c = chain();
    let blk = block(&c);
    let good = blk.bundle(4);
    let reason = |b: &ProofBundle| check(b, &c).first_failure_code();

    let mut b = good.clone();
    b.proof.index = 5;
    assert_eq!(reason(&b), Some("merkle.root_mismatch"));
    b.proof.index = 11;
    assert_eq!(reason(&b), Some("merkle.index_out_of_range"));

    let mut b = good.clone();
    b.proof.size = 12;
    assert_eq!(reason(&b), Some("proof.size_mismatch"));

    let mut b = good.clone();
    b.proof.path.push(Hash([0; 32]));
    assert_eq!(reason(&b), Some("merkle.path_length"));

    let mut b = good.clone();
    b.header.header.height += 1;
    assert_eq!(reason(&b), Some("certificate.bad_signature"));

    let mut b = good.clone();
    b.header.header.timestamp_ms = NOW + c.roots.max_clock_skew_ms + 1;
    // Re-certify, so only the time is wrong.
    b.header = c.certify(b.header.header.clone(), 4);
    assert_eq!(reason(&b), Some("header.from_future"));

    let mut b = good.clone();
    b.header.certificate.endorsements[1].signature.0[0] ^= 1;
    assert_eq!(reason(&b), Some("certificate.bad_signature"));

    let mut b = good.clone();
    b.header.certificate.endorsements[3].signer = 30;
    assert_eq!(reason(&b), Some("certificate.unknown_signer"));

    let mut b = good.clone();
    b.header.certificate.endorsements.pop();
    assert_eq!(reason(&b), Some("certificate.below_threshold"));

    let mut b = good.clone();
    b.header.header.chain_id = "hangzhou".into();
    assert_eq!(reason(&b), Some("chain.unknown"));

    let mut b = good.clone();
    let last = b.tx.len() - 1;
    b.tx[last] ^= 1;
    assert_eq!(reason(&b), Some("merkle.root_mismatch"));

    // A failed fact never leaves a later fact shown as verified.
    let mut b = good;
    b.header.certificate.endorsements.pop();
    let r = check(&b, &c);
    let after: Vec<_> = r
        .facts
        .iter()
        .skip_while(|f| f.check != "header.certificate")
        .skip(1)
        .collect();
    assert!(
        !after.is_empty()
            && after
                .iter()
                .all(|f| matches!(f.outcome, Outcome::Skipped { .. })),
        "{r}"
    );
}

#[test]
fn duplicate_endorser_never_counts_twice() {
    let c = chain();
    let blk = block(&c);
    let mut b = blk.bundle(0);
    let e: Endorsement = b.header.certificate.endorsements[0];
    b.header.certificate.endorsements = vec![e, e, e, e];
    assert_eq!(
        check(&b, &c).first_failure_code(),
        Some("certificate.duplicate_signer")
    );
    // Even padded with distinct valid signers, a duplicate is refused outright.
    let mut b = blk.bundle(0);
    let first = b.header.certificate.endorsements[0];
    b.header.certificate.endorsements.insert(1, first);
    assert_eq!(
        check(&b, &c).first_failure_code(),
        Some("certificate.duplicate_signer")
    );
}

#[test]
fn certificate_for_another_chain_never_counts() {
    // The same endorser keys serve two chains: a certificate made for one chain's
    // header must not certify the other chain's identical header.
    let a = TestChain::new("shanghai", 4, 3);
    let mut b = TestChain::new("shanghai", 4, 3);
    b.chain_id = "suzhou".into();
    let blk = a.block(1, Hash([0; 32]), 2);
    let mut bundle = blk.bundle(0);
    bundle.header.header.chain_id = "suzhou".into();
    let roots = b.roots.clone().with_chain(
        proofs::ChainTrust::new(
            "suzhou",
            a.endorsers.iter().map(proofs::SigningKey::public).collect(),
            3,
        )
        .unwrap(),
    );
    let mut r = Report::new();
    verify_bundle(&bundle, &roots, NOW, "b", &mut r);
    assert_eq!(
        r.first_failure_code(),
        Some("certificate.bad_signature"),
        "{r}"
    );
}

#[test]
fn package_level_refusals() {
    let c = chain();
    let blk = block(&c);
    let mut p = blk.package(2, "status");
    p.registry_hash = Hash([1; 32]);
    assert_eq!(
        verify_package(&p, &c.roots, NOW).first_failure_code(),
        Some("package.registry_mismatch")
    );

    let mut p = blk.package(2, "status");
    p.disclosures[0].bundle = 3;
    assert_eq!(
        verify_package(&p, &c.roots, NOW).first_failure_code(),
        Some("disclosure.no_bundle")
    );

    let mut p = blk.package(2, "status");
    p.disclosures[0].field.value = proofs::Value::Text("single".into());
    assert_eq!(
        verify_package(&p, &c.roots, NOW).first_failure_code(),
        Some("disclosure.mismatch")
    );

    let mut p = blk.package(2, "status");
    p.bundles.clear();
    p.disclosures.clear();
    assert_eq!(
        verify_package(&p, &c.roots, NOW).first_failure_code(),
        Some("package.empty")
    );

    // A disclosure whose bundle fails is skipped, never shown as verified.
    let mut p = blk.package(2, "status");
    p.bundles[0].header.certificate.endorsements.pop();
    let r = verify_package(&p, &c.roots, NOW);
    assert!(
        r.facts
            .iter()
            .any(|f| f.subject == "disclosure[0]" && matches!(f.outcome, Outcome::Skipped { .. }))
    );
    assert!(!r.ok());
}

#[test]
fn truncations_and_extensions_never_decode() {
    let c = chain();
    let blk = block(&c);
    let bytes = blk.package(1, "status").encode();
    for cut in 0..bytes.len() {
        assert!(
            EvidencePackage::decode(&bytes[..cut]).is_err(),
            "cut at {cut}"
        );
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(EvidencePackage::decode(&longer).is_err());
    let b = blk.bundle(1).encode();
    for cut in 0..b.len() {
        assert!(ProofBundle::decode(&b[..cut]).is_err());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Flipping any bit of any byte of a valid package's encoding either stops it
    /// decoding or makes verification fail with a named reason.
    #[test]
    fn any_bit_flip_of_a_package_is_caught(pos in any::<prop::sample::Index>(), bit in 0u8..8) {
        let c = chain();
        let blk = c.block(2, Hash([3; 32]), 5);
        let bytes = blk.package(3, "status").encode();
        let mut m = bytes.clone();
        let i = pos.index(m.len());
        m[i] ^= 1 << bit;
        match EvidencePackage::decode(&m) {
            Err(_) => {}
            Ok(p) => {
                let r = verify_package(&p, &c.roots, NOW);
                prop_assert!(!r.ok(), "byte {} bit {} still verified:\n{}", i, bit, r);
                let named = r.first_failure_code().is_some();
                prop_assert!(named, "no named failure:\n{}", r);
            }
        }
    }

    /// The same for a lone bundle.
    #[test]
    fn any_bit_flip_of_a_bundle_is_caught(pos in any::<prop::sample::Index>(), bit in 0u8..8) {
        let c = chain();
        let blk = c.block(2, Hash([3; 32]), 6);
        let bytes = blk.bundle(5).encode();
        let mut m = bytes.clone();
        let i = pos.index(m.len());
        m[i] ^= 1 << bit;
        if let Ok(b) = ProofBundle::decode(&m) {
            let r = check(&b, &c);
            prop_assert!(!r.ok(), "byte {} bit {} still verified:\n{}", i, bit, r);
            prop_assert!(r.first_failure_code().is_some());
        }
    }

    /// Arbitrary bytes never panic the decoders.
    #[test]
    fn arbitrary_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..2048)) {
        let _ = EvidencePackage::decode(&data);
        let _ = ProofBundle::decode(&data);
        let _ = proofs::tx::Transaction::decode(&data);
        let _ = proofs::header::Header::decode(&data);
    }
}
