//! The example region end to end without a network: records committed by the
//! registry's departments on their own chains, certified by their endorsers,
//! packaged, and verified by an inspector that trusts only the registry file.

use proofs::bundle::verify_package;
use proofs::hash::Hash;
use proofs::subject::SubjectKey;
use tongban_tests::{Block, Region, commit, marriage, package, parties};

const NOW: u64 = 1_732_500_060_000;

fn nanjing_marriage_package(region: &Region, signers: &[usize]) -> proofs::EvidencePackage {
    let key = SubjectKey::from_bytes([3; 32]);
    let rec = marriage(1, 2, "married", [7; 32]);
    let tx = commit(
        region,
        "nanjing",
        "nanjing.civil-affairs",
        "marriage",
        "J320102-2019-000001",
        parties(&key, 1, 2),
        &rec,
    );
    let other = marriage(3, 4, "divorced", [8; 32]);
    let tx2 = commit(
        region,
        "nanjing",
        "nanjing.civil-affairs",
        "marriage",
        "J320102-2019-000003",
        parties(&key, 3, 4),
        &other,
    );
    let block = Block::cut(region, "nanjing", 1, Hash([0; 32]), vec![tx2, tx], signers);
    package(
        region,
        block.bundle(1),
        rec.disclose("status").expect("field"),
    )
}

#[test]
fn a_registry_department_record_verifies_against_the_registry() {
    let region = Region::example();
    let pkg = nanjing_marriage_package(&region, &[0, 1, 3]);
    let report = verify_package(&pkg, &region.roots, NOW);
    assert!(report.ok(), "{report}");
    assert!(
        report.to_string().contains("field `status` = married"),
        "{report}"
    );
}

#[test]
fn below_threshold_of_the_registry_chain_is_refused() {
    let region = Region::example();
    let pkg = nanjing_marriage_package(&region, &[0, 2]);
    assert_eq!(
        verify_package(&pkg, &region.roots, NOW).first_failure_code(),
        Some("certificate.below_threshold")
    );
}

#[test]
fn another_citys_endorsers_cannot_certify_nanjing() {
    let region = Region::example();
    let mut pkg = nanjing_marriage_package(&region, &[0, 1, 2]);
    let h = pkg.bundles[0].header.header.clone();
    pkg.bundles[0].header = Region::certify("hangzhou", h, &[0, 1, 2]);
    assert_eq!(
        verify_package(&pkg, &region.roots, NOW).first_failure_code(),
        Some("certificate.bad_signature")
    );
}

#[test]
fn a_department_cannot_commit_a_record_type_it_does_not_own() {
    let region = Region::example();
    let key = SubjectKey::from_bytes([3; 32]);
    let rec = marriage(1, 2, "married", [7; 32]);
    let tx = commit(
        &region,
        "nanjing",
        "nanjing.tax",
        "marriage",
        "fake",
        parties(&key, 1, 2),
        &rec,
    );
    let block = Block::cut(&region, "nanjing", 1, Hash([0; 32]), vec![tx], &[0, 1, 2]);
    let pkg = package(
        &region,
        block.bundle(0),
        rec.disclose("status").expect("field"),
    );
    assert_eq!(
        verify_package(&pkg, &region.roots, NOW).first_failure_code(),
        Some("tx.not_owner")
    );
}

#[test]
fn a_department_cannot_write_on_another_citys_chain() {
    let region = Region::example();
    let key = SubjectKey::from_bytes([3; 32]);
    let rec = marriage(1, 2, "married", [7; 32]);
    // Nanjing's civil affairs signs a record onto Hangzhou's chain.
    let tx = commit(
        &region,
        "hangzhou",
        "nanjing.civil-affairs",
        "marriage",
        "x",
        parties(&key, 1, 2),
        &rec,
    );
    let block = Block::cut(&region, "hangzhou", 1, Hash([0; 32]), vec![tx], &[0, 1, 2]);
    let pkg = package(
        &region,
        block.bundle(0),
        rec.disclose("status").expect("field"),
    );
    assert_eq!(
        verify_package(&pkg, &region.roots, NOW).first_failure_code(),
        Some("tx.foreign_author")
    );
}

#[test]
fn a_package_for_another_registry_version_is_refused() {
    let region = Region::example();
    let mut pkg = nanjing_marriage_package(&region, &[0, 1, 2]);
    pkg.registry_hash = proofs::hash::sha256(b"another registry");
    assert_eq!(
        verify_package(&pkg, &region.roots, NOW).first_failure_code(),
        Some("package.registry_mismatch")
    );
}

#[test]
fn the_pinned_hash_guards_the_registry_file() {
    let region = Region::example();
    let err = regions::load_pinned(tongban_tests::example_path(), Hash([0; 32])).unwrap_err();
    assert!(err.to_string().contains(&region.hash.to_hex()), "{err}");
    assert!(regions::load_pinned(tongban_tests::example_path(), region.hash).is_ok());
}
