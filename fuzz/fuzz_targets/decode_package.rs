//! Any bytes: decoding an evidence package or a bundle never panics; whatever
//! decodes re-encodes to the same bytes (one encoding per value) and verifies
//! without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proofs::bundle::{EvidencePackage, ProofBundle, verify_package};
use proofs::testkit::{TEST_TIME_MS, TestChain};

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = EvidencePackage::decode(data) {
        assert_eq!(p.encode(), data, "package encoding is not canonical");
        thread_local!(static CHAIN: TestChain = TestChain::new("nanjing", 4, 3));
        CHAIN.with(|c| {
            let _ = verify_package(&p, &c.roots, TEST_TIME_MS);
        });
    }
    if let Ok(b) = ProofBundle::decode(data) {
        assert_eq!(b.encode(), data, "bundle encoding is not canonical");
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = serde_json::from_str::<EvidencePackage>(text);
    }
});
