//! Public test vectors from `../shared/vectors/` (see its SOURCES.md): the
//! transparency-dev Merkle probes, RFC 9180 HPKE, Wycheproof Ed25519 and the
//! ed25519-speccheck cases. The files are read in place, never copied here.
//!
//! The folder is found at `$TONGBAN_VECTORS`, else `../shared/vectors` beside the
//! checkout. If it is missing the tests fail with a message saying so, unless
//! `TONGBAN_VECTORS=skip` asks to skip them explicitly.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use hpke::{Deserializable, OpModeR, Serializable};
use proofs::hash::Hash;
use proofs::keys::{PublicKey, Signature};
use proofs::merkle::{
    InclusionProof, MerkleTree, leaf_hash, root_of, verify_consistency, verify_inclusion,
};
use proofs::seal::{self, HpkeSecretKey};
use serde_json::Value as Json;

fn vectors() -> Option<PathBuf> {
    let dir = match std::env::var("TONGBAN_VECTORS") {
        Ok(v) if v == "skip" => {
            eprintln!("TONGBAN_VECTORS=skip: public vector tests skipped on request");
            return None;
        }
        Ok(v) => PathBuf::from(v),
        Err(_) => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/vectors"),
    };
    assert!(
        dir.join("SOURCES.md").is_file(),
        "public test vectors not found at {}: put the shared folder beside the checkout, \
         point TONGBAN_VECTORS at it, or set TONGBAN_VECTORS=skip to skip these tests",
        dir.display()
    );
    Some(dir)
}

fn json_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            json_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "json") {
            out.push(p);
        }
    }
}

fn read(p: &Path) -> Json {
    serde_json::from_slice(&std::fs::read(p).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn b64(v: &Json) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(v.as_str().unwrap_or(""))
        .unwrap()
}

fn hx(v: &Json) -> Vec<u8> {
    hex::decode(v.as_str().unwrap()).unwrap()
}

/// A path element that is not 32 bytes cannot be a digest: the proof is refused.
fn path_of(v: &Json) -> Option<Vec<Hash>> {
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|h| b64(h).try_into().ok().map(Hash))
                .collect::<Option<Vec<_>>>()
        })
        .unwrap_or(Some(Vec::new()))
}

#[test]
fn transparency_dev_inclusion_probes() {
    let Some(dir) = vectors() else { return };
    let mut files = Vec::new();
    json_files(
        &dir.join("transparency-dev-merkle/testdata/inclusion"),
        &mut files,
    );
    assert!(
        files.len() > 50,
        "expected the inclusion probes, found {}",
        files.len()
    );
    let (mut good, mut bad) = (0, 0);
    for f in &files {
        let v = read(f);
        let want_err = v["wantErr"].as_bool().unwrap();
        let got = match path_of(&v["proof"]) {
            None => Err("path element is not 32 bytes".to_string()),
            Some(path) => {
                let proof = InclusionProof {
                    index: v["leafIdx"].as_u64().unwrap(),
                    size: v["treeSize"].as_u64().unwrap(),
                    path,
                };
                verify_inclusion(&b64(&v["leafHash"]), &proof, &b64(&v["root"]))
                    .map_err(|e| e.to_string())
            }
        };
        assert_eq!(got.is_err(), want_err, "{}: {:?}", f.display(), got);
        if want_err { bad += 1 } else { good += 1 }
    }
    assert!(good > 0 && bad > 0);
    eprintln!("inclusion probes: {good} accepted, {bad} refused, as expected");
}

#[test]
fn transparency_dev_consistency_probes() {
    let Some(dir) = vectors() else { return };
    let mut files = Vec::new();
    json_files(
        &dir.join("transparency-dev-merkle/testdata/consistency"),
        &mut files,
    );
    assert!(
        files.len() > 50,
        "expected the consistency probes, found {}",
        files.len()
    );
    let (mut good, mut bad) = (0, 0);
    for f in &files {
        let v = read(f);
        let want_err = v["wantErr"].as_bool().unwrap();
        let got = match path_of(&v["proof"]) {
            None => Err("path element is not 32 bytes".to_string()),
            Some(path) => verify_consistency(
                v["size1"].as_u64().unwrap(),
                v["size2"].as_u64().unwrap(),
                &b64(&v["root1"]),
                &b64(&v["root2"]),
                &path,
            )
            .map_err(|e| e.to_string()),
        };
        assert_eq!(got.is_err(), want_err, "{}: {:?}", f.display(), got);
        if want_err { bad += 1 } else { good += 1 }
    }
    assert!(good > 0 && bad > 0);
    eprintln!("consistency probes: {good} accepted, {bad} refused, as expected");
}

#[test]
fn transparency_dev_reference_roots() {
    let Some(dir) = vectors() else { return };
    let v = read(&dir.join("transparency-dev-merkle/reference_leaves_roots.json"));
    let leaves: Vec<Vec<u8>> = v["leaf_inputs_hex"]
        .as_array()
        .unwrap()
        .iter()
        .map(hx)
        .collect();
    let roots = v["root_by_size_hex"].as_object().unwrap();
    assert!(roots.len() >= leaves.len());
    for (size, root) in roots {
        let n: usize = size.parse().unwrap();
        let tree = MerkleTree::from_data(&leaves[..n]);
        assert_eq!(
            tree.root().0.to_vec(),
            hx(root),
            "rs_merkle root for size {n}"
        );
        let hashes: Vec<Hash> = leaves[..n].iter().map(|l| leaf_hash(l)).collect();
        assert_eq!(
            root_of(&hashes).0.to_vec(),
            hx(root),
            "RFC recursion root for size {n}"
        );
    }
}

/// Yields preset bytes: makes HPKE's ephemeral key the vector's `ikmE`.
struct Preset(Vec<u8>, usize);

impl hpke::rand_core::TryRng for Preset {
    type Error = core::convert::Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        unreachable!("HPKE draws key material with fill_bytes")
    }
    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        unreachable!("HPKE draws key material with fill_bytes")
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        dst.copy_from_slice(&self.0[self.1..self.1 + dst.len()]);
        self.1 += dst.len();
        Ok(())
    }
}
impl hpke::rand_core::TryCryptoRng for Preset {}

type Kem = hpke::kem::X25519HkdfSha256;

#[test]
fn rfc9180_hpke_base_and_auth() {
    let Some(dir) = vectors() else { return };
    let v =
        read(&dir.join("hpke-rfc9180/x25519_hkdfsha256_aes128gcm_chacha20poly1305_all_modes.json"));
    let mut checked = 0;
    for entry in v.as_array().unwrap() {
        let (mode, aead) = (
            entry["mode"].as_u64().unwrap(),
            entry["aead_id"].as_u64().unwrap(),
        );
        // Our suite is ChaCha20-Poly1305 (aead 3), in base (0) and auth (2) modes.
        if aead != u64::from(seal::SUITE.2) || !(mode == 0 || mode == 2) {
            continue;
        }
        assert_eq!(entry["kem_id"].as_u64().unwrap(), u64::from(seal::SUITE.0));
        assert_eq!(entry["kdf_id"].as_u64().unwrap(), u64::from(seal::SUITE.1));
        let ikm = |k: &str| -> [u8; 32] { hx(&entry[k]).try_into().unwrap() };
        let recipient = HpkeSecretKey::derive(&ikm("ikmR"));
        assert_eq!(
            recipient.public().as_bytes().to_vec(),
            hx(&entry["pkRm"]),
            "DeriveKeyPair(ikmR)"
        );
        let sender = (mode == 2).then(|| HpkeSecretKey::derive(&ikm("ikmS")));
        if let Some(s) = &sender {
            assert_eq!(
                s.public().as_bytes().to_vec(),
                hx(&entry["pkSm"]),
                "DeriveKeyPair(ikmS)"
            );
        }
        let info = hx(&entry["info"]);
        let encs = entry["encryptions"].as_array().unwrap();

        // Our one-shot seal reproduces the first encryption (sequence 0) exactly.
        let first = &encs[0];
        let mut rng = Preset(ikm("ikmE").to_vec(), 0);
        let sealed = match &sender {
            None => seal::seal_base(
                &recipient.public(),
                &info,
                &hx(&first["aad"]),
                &hx(&first["pt"]),
                &mut rng,
            ),
            Some(s) => seal::seal_auth(
                s,
                &recipient.public(),
                &info,
                &hx(&first["aad"]),
                &hx(&first["pt"]),
                &mut rng,
            ),
        }
        .unwrap();
        assert_eq!(sealed.enc.to_vec(), hx(&entry["enc"]), "enc, mode {mode}");
        assert_eq!(sealed.ciphertext, hx(&first["ct"]), "ct[0], mode {mode}");
        let opened = match &sender {
            None => seal::open_base(&recipient, &info, &hx(&first["aad"]), &sealed),
            Some(s) => seal::open_auth(&recipient, &s.public(), &info, &hx(&first["aad"]), &sealed),
        };
        assert_eq!(opened.unwrap(), hx(&first["pt"]));

        // The dependency, configured as we use it, opens every encryption and export.
        let sk = <Kem as hpke::Kem>::PrivateKey::from_bytes(&hx(&entry["skRm"])).unwrap();
        let enc = <Kem as hpke::Kem>::EncappedKey::from_bytes(&hx(&entry["enc"])).unwrap();
        let mode_r = match mode {
            0 => OpModeR::Base,
            _ => OpModeR::Auth(
                <Kem as hpke::Kem>::PublicKey::from_bytes(&hx(&entry["pkSm"])).unwrap(),
            ),
        };
        let mut ctx =
            hpke::setup_receiver::<hpke::aead::ChaCha20Poly1305, hpke::kdf::HkdfSha256, Kem>(
                &mode_r, &sk, &enc, &info,
            )
            .unwrap();
        for (i, e) in encs.iter().enumerate() {
            assert_eq!(
                ctx.open(&hx(&e["ct"]), &hx(&e["aad"])).unwrap(),
                hx(&e["pt"]),
                "encryption {i}, mode {mode}"
            );
        }
        for x in entry["exports"].as_array().unwrap() {
            let mut out = vec![0u8; x["L"].as_u64().unwrap() as usize];
            ctx.export(&hx(&x["exporter_context"]), &mut out).unwrap();
            assert_eq!(out, hx(&x["exported_value"]));
        }
        // hpke 0.15 serialises the clamped scalar (style.md's trap): compare clamped.
        let mut clamped = hx(&entry["skRm"]);
        clamped[0] &= 248;
        clamped[31] = (clamped[31] & 127) | 64;
        assert_eq!(sk.to_bytes().to_vec(), clamped);
        checked += 1;
    }
    assert_eq!(
        checked, 2,
        "one base and one auth entry for the chosen suite"
    );
}

fn verdict(pk: &[u8], msg: &[u8], sig: &[u8]) -> Result<(), String> {
    let pk: [u8; 32] = pk.try_into().map_err(|_| "public key length".to_string())?;
    let sig: [u8; 64] = sig.try_into().map_err(|_| "signature length".to_string())?;
    let pk = PublicKey::from_bytes(&pk).map_err(|e| e.to_string())?;
    pk.verify(msg, &Signature(sig)).map_err(|e| e.to_string())
}

#[test]
fn wycheproof_ed25519_strict() {
    let Some(dir) = vectors() else { return };
    let v = read(&dir.join("wycheproof/ed25519_test.json"));
    let mut n = 0;
    for g in v["testGroups"].as_array().unwrap() {
        let pk = hx(&g["publicKey"]["pk"]);
        for t in g["tests"].as_array().unwrap() {
            let got = verdict(&pk, &hx(&t["msg"]), &hx(&t["sig"]));
            let want_valid = t["result"] == "valid";
            assert_eq!(
                got.is_ok(),
                want_valid,
                "tcId {}: {} → {:?}",
                t["tcId"],
                t["comment"],
                got
            );
            n += 1;
        }
    }
    assert_eq!(n, v["numberOfTests"].as_u64().unwrap() as usize);
}

#[test]
fn ed25519_speccheck_strict() {
    let Some(dir) = vectors() else { return };
    let v = read(&dir.join("ed25519-speccheck/cases.json"));
    // Strict semantics (cofactorless equation, canonical S, R and A, no small-order
    // A or R): of the ten cases only case 3 (mixed-order A and R, valid under both
    // equations) is a signature we accept.
    let accepted: Vec<usize> = v
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .filter(|(_, c)| {
            verdict(&hx(&c["pub_key"]), &hx(&c["message"]), &hx(&c["signature"])).is_ok()
        })
        .map(|(i, _)| i)
        .collect();
    assert_eq!(accepted, vec![3]);
}
