//! Benchmarks of the verification core, each beside its floor: the raw
//! cryptographic work the operation cannot avoid, measured in the same run.
//! `scripts/bench-report.py` turns the results into the table in
//! `docs/performance.md`.

use std::collections::BTreeMap;
use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use hpke::{Deserializable, OpModeR, OpModeS, Serializable};
use proofs::commitment::{CommittedRecord, field_leaf, verify_disclosure};
use proofs::hash::Hash;
use proofs::header::{Certificate, Header, verify_certificate};
use proofs::keys::{SigningKey, test_seed};
use proofs::merkle::{InclusionProof, leaf_hash, node_hash, verify_inclusion};
use proofs::report::Report;
use proofs::seal::{HpkeSecretKey, open_base, seal_base};
use proofs::testkit::{TEST_TIME_MS, TestChain};
use proofs::trust::ChainTrust;
use proofs::value::Value;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

/// Leaf `i` of the synthetic big tree.
fn leaf(i: u64) -> Hash {
    leaf_hash(&i.to_be_bytes())
}

/// Root of leaves `lo..hi` (hi - lo a power of two, or the tail), computed with
/// O(log n) memory so a 2^25-leaf tree needs no gigabyte of leaf hashes.
fn root(lo: u64, hi: u64) -> Hash {
    let n = hi - lo;
    if n == 1 {
        return leaf(lo);
    }
    let k = 1u64 << (63 - (n - 1).leading_zeros());
    node_hash(&root(lo, lo + k).0, &root(lo + k, hi).0)
}

/// The RFC 9162 inclusion path of leaf `m` in leaves `lo..hi`.
fn path(m: u64, lo: u64, hi: u64, out: &mut Vec<Hash>) {
    let n = hi - lo;
    if n <= 1 {
        return;
    }
    let k = 1u64 << (63 - (n - 1).leading_zeros());
    if m < k {
        path(m, lo, lo + k, out);
        out.push(root(lo + k, hi));
    } else {
        path(m - k, lo + k, hi, out);
        out.push(root(lo, lo + k));
    }
}

fn inclusion(c: &mut Criterion) {
    const N: u64 = 1 << 25;
    let index = 23_456_789u64;
    let mut p = Vec::new();
    path(index, 0, N, &mut p);
    let proof = InclusionProof {
        index,
        size: N,
        path: p,
    };
    let leaf_h = leaf(index);
    // The root follows from the path; a check against the independent computation
    // of a smaller tree is in the unit tests. Here: the proof must verify.
    let root_h = proofs::merkle::root_from_inclusion(&leaf_h.0, index, N, &proof.path).unwrap();
    verify_inclusion(&leaf_h.0, &proof, &root_h.0).unwrap();
    let mut g = c.benchmark_group("inclusion_2e25");
    g.bench_function("verify_strict_inclusion", |b| {
        b.iter(|| {
            verify_inclusion(
                black_box(&leaf_h.0),
                black_box(&proof),
                black_box(&root_h.0),
            )
            .unwrap()
        })
    });
    // Floor: the 25 node hashes the proof must compute, nothing else.
    g.bench_function("floor_25_node_hashes", |b| {
        b.iter(|| {
            let mut r = black_box(leaf_h).0;
            for h in &proof.path {
                r = node_hash(&r, &h.0).0;
            }
            black_box(r)
        })
    });
    g.finish();
}

fn certificate(c: &mut Criterion) {
    let keys: Vec<SigningKey> = (0..7)
        .map(|i| SigningKey::from_seed(&test_seed(&format!("bench/e{i}"))))
        .collect();
    let chain = ChainTrust::new("bench", keys.iter().map(SigningKey::public).collect(), 4).unwrap();
    let header = Header {
        chain_id: "bench".into(),
        height: 1,
        prev: Hash([1; 32]),
        timestamp_ms: 1,
        tx_count: 1,
        tx_root: Hash([2; 32]),
    };
    let signers: Vec<(u16, &SigningKey)> = keys
        .iter()
        .enumerate()
        .take(4)
        .map(|(i, k)| (i as u16, k))
        .collect();
    let cert = Certificate::sign(&header, &signers);
    verify_certificate(&header, &cert, &chain).unwrap();
    let msg = header.endorsement_message();
    let dalek: Vec<(ed25519_dalek::VerifyingKey, ed25519_dalek::Signature)> = cert
        .endorsements
        .iter()
        .map(|e| {
            (
                ed25519_dalek::VerifyingKey::from_bytes(
                    chain.endorsers()[e.signer as usize].as_bytes(),
                )
                .unwrap(),
                ed25519_dalek::Signature::from_bytes(&e.signature.0),
            )
        })
        .collect();
    let mut g = c.benchmark_group("certificate_4_of_7");
    g.bench_function("verify_certificate", |b| {
        b.iter(|| verify_certificate(black_box(&header), black_box(&cert), &chain).unwrap())
    });
    g.bench_function("floor_4_verify_strict", |b| {
        b.iter(|| {
            for (k, s) in &dalek {
                k.verify_strict(black_box(&msg), s).unwrap();
            }
        })
    });
    g.finish();
}

fn disclosure(c: &mut Criterion) {
    let fields: BTreeMap<String, Value> = (0..12)
        .map(|i| {
            (
                format!("field_{i:02}"),
                Value::Text(format!("value number {i}")),
            )
        })
        .collect();
    let rec = CommittedRecord::new(fields, [5; 32]).unwrap();
    let d = rec.disclose("field_07").unwrap();
    let commitment = rec.commitment();
    let mut g = c.benchmark_group("field_disclosure_12_fields");
    g.bench_function("verify_disclosure", |b| {
        b.iter(|| verify_disclosure(black_box(&commitment), black_box(&d)).unwrap())
    });
    // Floor: encode the leaf, hash it, hash up the path.
    g.bench_function("floor_leaf_and_path_hashes", |b| {
        b.iter(|| {
            let mut r = leaf_hash(&field_leaf(&d.name, &d.salt, black_box(&d.value))).0;
            for h in &d.proof.path {
                r = node_hash(&r, &h.0).0;
            }
            black_box(r)
        })
    });
    g.finish();
}

type Kem = hpke::kem::X25519HkdfSha256;
type Aead = hpke::aead::ChaCha20Poly1305;
type Kdf = hpke::kdf::HkdfSha256;

fn sealing(c: &mut Criterion) {
    let bob = HpkeSecretKey::derive(&[2; 32]);
    let answer = [0x5au8; 256];
    let mut rng = ChaCha20Rng::from_seed([1; 32]);
    let mut g = c.benchmark_group("hpke_256_byte_answer");
    g.bench_function("seal_and_open", |b| {
        b.iter(|| {
            let s = seal_base(
                &bob.public(),
                b"tongban/answer/v1",
                b"request-hash",
                black_box(&answer),
                &mut rng,
            )
            .unwrap();
            black_box(open_base(&bob, b"tongban/answer/v1", b"request-hash", &s).unwrap())
        })
    });
    // Floor: the hpke crate's own one-shot calls, no wrapper.
    let (sk, pk) = <Kem as hpke::Kem>::derive_keypair(&[2; 32]);
    let pk = <Kem as hpke::Kem>::PublicKey::from_bytes(&pk.to_bytes()).unwrap();
    g.bench_function("floor_hpke_crate_seal_and_open", |b| {
        b.iter(|| {
            let (enc, ct) = hpke::single_shot_seal_with_rng::<Aead, Kdf, Kem>(
                &OpModeS::Base,
                &pk,
                b"tongban/answer/v1",
                black_box(&answer),
                b"request-hash",
                &mut rng,
            )
            .unwrap();
            black_box(
                hpke::single_shot_open::<Aead, Kdf, Kem>(
                    &OpModeR::Base,
                    &sk,
                    &enc,
                    b"tongban/answer/v1",
                    &ct,
                    b"request-hash",
                )
                .unwrap(),
            )
        })
    });
    g.finish();
}

fn bundle(c: &mut Criterion) {
    // A block of 4096 record commitments, 4-of-7 certificate.
    let chain = TestChain::new("bench-city", 7, 4);
    let blk = chain.block(9, Hash([0; 32]), 4096);
    let b = blk.bundle(1234);
    let now = TEST_TIME_MS + 1000;
    let tx = &blk.txs[1234];
    let dept = chain.roots.members[&chain.department.0].signing;
    let trust = &chain.roots.chains["bench-city"];
    let mut g = c.benchmark_group("bundle_4096_tx_block");
    g.bench_function("verify_bundle", |bch| {
        bch.iter(|| {
            let mut r = Report::new();
            black_box(proofs::verify_bundle(
                black_box(&b),
                &chain.roots,
                now,
                "b",
                &mut r,
            ))
            .unwrap()
        })
    });
    // Floor: the certificate's signatures, the author's signature and the Merkle path.
    g.bench_function("floor_sigs_and_path", |bch| {
        bch.iter(|| {
            verify_certificate(&b.header.header, &b.header.certificate, trust).unwrap();
            dept.verify(&tx.signing_bytes(), tx.signature().unwrap())
                .unwrap();
            verify_inclusion(&leaf_hash(&b.tx).0, &b.proof, &b.header.header.tx_root.0).unwrap();
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(60).measurement_time(std::time::Duration::from_secs(4)).warm_up_time(std::time::Duration::from_secs(1));
    targets = inclusion, certificate, disclosure, sealing, bundle
}
criterion_main!(benches);
