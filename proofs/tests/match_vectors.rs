//! Known answers for selective matches (`docs/vectors/match-v1.json`): a
//! request, its digest, the sealed subject and a sealed answer, from fixed keys
//! and a fixed random source. The file lets any RFC 9180 implementation open
//! the ciphertexts with the stated suite, `info` and AAD (the Python verifier
//! in `scripts/inspect_py` does, in CI). Rewrite after an intended change with
//! `TONGBAN_WRITE_KAT=1 cargo test -p proofs --test match_vectors`.

use std::path::Path;

use proofs::Hash;
use proofs::keys::{SigningKey, test_seed};
use proofs::matching::{
    ANSWER_INFO, AnswerPlain, MatchRequest, RecordRef, RequestDraft, SUBJECT_INFO, Verdict,
    question_hash,
};
use proofs::seal::HpkeSecretKey;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use serde_json::{Value as Json, json};

fn vectors() -> Json {
    let requester_key = SigningKey::from_seed(&test_seed("kat/nanjing.centre"));
    let provider_ikm = test_seed("kat/hefei.civil-affairs/hpke");
    let requester_ikm = test_seed("kat/nanjing.centre/hpke");
    let provider = HpkeSecretKey::derive(&provider_ikm);
    let requester = HpkeSecretKey::derive(&requester_ikm);
    let mut rng = ChaCha20Rng::from_seed([7; 32]);
    let question = r#"{"record_type":"marriage","predicates":[{"field":"status","op":"eq","value":"married"}],"disclose":[],"purpose":"house-transfer"}"#;
    let req = MatchRequest::create(
        &RequestDraft {
            id: Hash([0x11; 32]),
            requester: "nanjing.centre",
            provider: "hefei.civil-affairs",
            contract: "house-transfer.marriage",
            contract_version: 1,
            question,
            issued_ms: 1_764_000_000_000,
            expires_ms: 1_764_000_060_000,
            subject: "320102199003071234",
        },
        &provider.public(),
        &requester_key,
        &mut rng,
    )
    .unwrap();
    let plain = AnswerPlain {
        request: req.digest(),
        verdict: Verdict::Holds,
        values: vec![],
        evaluated_height: 41,
        record: Some(RecordRef {
            leaf: Hash([0x22; 32]),
            version: 1,
        }),
        nonce: [0x33; 32],
    };
    let sealed = plain.seal(&requester.public(), &mut rng).unwrap();
    fn hex(b: impl AsRef<[u8]>) -> String {
        hex::encode(b)
    }
    json!({
        "suite": { "kem": "0x0020 DHKEM(X25519, HKDF-SHA256)", "kdf": "0x0001 HKDF-SHA256", "aead": "0x0003 ChaCha20-Poly1305", "mode": "base (0x00)" },
        "request": {
            "signing_bytes": hex(req.signing_bytes()),
            "signature": hex(req.signature.0),
            "requester_public_key": requester_key.public().to_hex(),
            "digest": req.digest().to_string(),
            "question_hash": question_hash(question).to_string(),
        },
        "subject": {
            "recipient_ikm": hex(provider_ikm),
            "recipient_public_key": hex(provider.public().as_bytes()),
            "info": hex(SUBJECT_INFO),
            "aad": hex(aad_of_subject(&req)),
            "enc": hex(req.subject.enc),
            "ciphertext": hex(&req.subject.ciphertext),
            "plaintext": hex("320102199003071234".as_bytes()),
        },
        "answer": {
            "recipient_ikm": hex(requester_ikm),
            "recipient_public_key": hex(requester.public().as_bytes()),
            "info": hex(ANSWER_INFO),
            "aad": req.digest().to_string(),
            "enc": hex(sealed.enc),
            "ciphertext": hex(&sealed.ciphertext),
            "plaintext": hex(plain.encode()),
            "commitment": plain.commitment().to_string(),
        },
    })
}

fn aad_of_subject(req: &MatchRequest) -> Vec<u8> {
    let mut e = proofs::encoding::Encoder::with_domain(proofs::matching::SUBJECT_AAD_DOMAIN);
    e.raw(&req.id.0).str(&req.requester).str(&req.provider);
    e.finish()
}

#[test]
fn match_vectors_are_current() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/vectors/match-v1.json");
    let text = serde_json::to_string_pretty(&vectors()).unwrap() + "\n";
    if std::env::var_os("TONGBAN_WRITE_KAT").is_some() {
        std::fs::write(&path, &text).unwrap();
    }
    let held = std::fs::read_to_string(&path).expect("docs/vectors/match-v1.json exists");
    assert_eq!(
        held, text,
        "rewrite with TONGBAN_WRITE_KAT=1 after an intended change"
    );
}

#[test]
fn the_vectors_open_with_this_crate() {
    let v = vectors();
    let req_key = HpkeSecretKey::derive(&test_seed("kat/nanjing.centre/hpke"));
    let plain = hex::decode(v["answer"]["plaintext"].as_str().unwrap()).unwrap();
    let sealed = proofs::seal::Sealed {
        enc: hex::decode(v["answer"]["enc"].as_str().unwrap())
            .unwrap()
            .try_into()
            .unwrap(),
        ciphertext: hex::decode(v["answer"]["ciphertext"].as_str().unwrap()).unwrap(),
    };
    let aad = hex::decode(v["answer"]["aad"].as_str().unwrap()).unwrap();
    let opened = proofs::seal::open_base(&req_key, ANSWER_INFO, &aad, &sealed).unwrap();
    assert_eq!(opened, plain);
    assert!(AnswerPlain::decode(&opened).is_ok());
    // Another request's digest as AAD does not open it.
    assert!(proofs::seal::open_base(&req_key, ANSWER_INFO, &[0; 32], &sealed).is_err());
}
