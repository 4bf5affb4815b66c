//! Forged application evidence packages (issue 15, items 16-19 and 23): a
//! dishonest member holding the test keys of the example region (derived from
//! public labels, so anybody holds them) can sign and certify anything; the
//! verifier's rules must be semantic. Every package here starts from the
//! sample package `docs/vectors/application-package-v1.json` (a completed
//! house transfer) and is re-signed with the test keys.

use std::collections::BTreeMap;

use proofs::hash::sha256;
use proofs::header::{Certificate, CertifiedHeader, Header};
use proofs::matching::{AnswerPlain, Verdict};
use proofs::merkle::MerkleTree;
use proofs::report::Outcome;
use proofs::tx::{Transaction, TxBody};
use proofs::{Hash, ProofBundle, Report, TrustRoots};
use regions::Registry;
use regions::application::{Answer, Application, EvidenceState, Phase, ServiceState};
use regions::evidence::{ApplicationPackage, verify_package};
use regions::test_keys::signing_key;

const NOW: u64 = 1_900_000_000_000;

struct Sample {
    reg: Registry,
    roots: TrustRoots,
    pkg: ApplicationPackage,
}

fn sample() -> Sample {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let (reg, hash) = regions::load(root.join("examples/yangtze-delta.toml")).unwrap();
    let roots = reg.trust_roots(hash).unwrap();
    let text =
        std::fs::read_to_string(root.join("../docs/vectors/application-package-v1.json")).unwrap();
    let pkg: ApplicationPackage = serde_json::from_str(&text).unwrap();
    Sample { reg, roots, pkg }
}

impl Sample {
    fn verify(&self, pkg: &ApplicationPackage) -> Report {
        verify_package(pkg, &self.reg, &self.roots, NOW)
    }
    fn app(&self) -> Application {
        serde_json::from_str(&self.pkg.application).unwrap()
    }
    /// A one-transaction block at `height` on the transaction's chain,
    /// certified by the threshold of that city's (test) endorsers.
    fn block(&self, tx: &Transaction, height: u64, timestamp_ms: u64) -> ProofBundle {
        let city = self
            .reg
            .cities
            .iter()
            .find(|c| c.chain.chain_id == tx.chain_id)
            .unwrap();
        let tree = MerkleTree::from_data(&[tx.encode()]);
        let header = Header {
            chain_id: tx.chain_id.clone(),
            height,
            prev: Hash::default(),
            timestamp_ms,
            tx_count: 1,
            tx_root: tree.root(),
        };
        let keys: Vec<_> = (1..=city.chain.threshold)
            .map(|n| signing_key(&format!("{}/endorser/{n}", city.id)))
            .collect();
        let signers: Vec<_> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| (i as u16, k))
            .collect();
        let certificate = Certificate::sign(&header, &signers);
        ProofBundle::new(
            CertifiedHeader {
                header,
                certificate,
            },
            tx,
            tree.inclusion_proof(0).unwrap(),
        )
    }
    /// `pkg` with `app` committed by a new last step of the centre's gateway.
    fn recommitted(&self, pkg: &ApplicationPackage, app: &Application) -> ApplicationPackage {
        self.recommitted_by(pkg, app, "shanghai.gateway", "shanghai-egov")
    }
    /// `pkg` with `app` committed by a new last step of `author` on `chain`.
    fn recommitted_by(
        &self,
        pkg: &ApplicationPackage,
        app: &Application,
        author: &str,
        chain: &str,
    ) -> ApplicationPackage {
        let mut pkg = pkg.clone();
        let text = serde_json::to_string(app).unwrap();
        let last = pkg
            .steps
            .iter()
            .map(|b| b.header.header.clone())
            .max_by_key(|h| h.height)
            .unwrap();
        let tx = Transaction::sign(
            chain,
            author,
            TxBody::ApplicationStep {
                application: pkg.application_id,
                bundle: app.bundle.clone(),
                step: app
                    .timeline
                    .last()
                    .map_or("state".into(), |e| e.what.clone()),
                item: String::new(),
                detail: sha256(text.as_bytes()),
                at_ms: last.timestamp_ms,
            },
            &signing_key(author),
        );
        pkg.steps
            .push(self.block(&tx, last.height + 1, last.timestamp_ms + 1));
        pkg.application = text;
        pkg
    }
    fn item(&self, pkg: &ApplicationPackage, id: &str) -> usize {
        pkg.evidence.iter().position(|e| e.id == id).unwrap()
    }
    /// Evidence item `id`'s access log re-signed by `author` after `edit`,
    /// in a block at the same height and time.
    fn reforged_access(
        &self,
        pkg: &ApplicationPackage,
        id: &str,
        author: &str,
        edit: impl FnOnce(&mut TxBody),
    ) -> ApplicationPackage {
        let mut pkg = pkg.clone();
        let i = self.item(&pkg, id);
        let old = &pkg.evidence[i].access;
        let tx = Transaction::decode(&old.tx).unwrap();
        let mut body = tx.body.clone();
        edit(&mut body);
        let tx = Transaction::sign(&tx.chain_id, author, body, &signing_key(author));
        let h = &old.header.header;
        pkg.evidence[i].access = self.block(&tx, h.height, h.timestamp_ms);
        pkg
    }
    /// Evidence `id` answered with `verdict` instead (the provider city's
    /// gateway commits the new answer in a re-signed access log), and the
    /// application recording it.
    fn reanswered(
        &self,
        pkg: &ApplicationPackage,
        app: &mut Application,
        id: &str,
        verdict: Verdict,
        answer: Answer,
    ) -> ApplicationPackage {
        let i = self.item(pkg, id);
        let mut plain = AnswerPlain::decode(&pkg.evidence[i].answer).unwrap();
        plain.verdict = verdict;
        plain.values.clear();
        let bytes = plain.encode();
        let commitment = sha256(&bytes);
        let tx = Transaction::decode(&pkg.evidence[i].access.tx).unwrap();
        let mut pkg = self.reforged_access(pkg, id, &tx.author, |b| {
            if let TxBody::AccessLog { answer, .. } = b {
                *answer = commitment;
            }
        });
        pkg.evidence[i].answer = bytes;
        if let Some(EvidenceState::Answered { answer: a, .. }) = app.evidence.get_mut(id) {
            *a = answer;
        }
        pkg
    }
}

fn codes(r: &Report) -> Vec<&'static str> {
    r.failures()
        .filter_map(|f| match f.outcome {
            Outcome::Fails { code, .. } => Some(code),
            _ => None,
        })
        .collect()
}

/// Fails unless the report fails with `code` and every other fact holds or
/// is skipped (the forgery is caught by exactly the rule under test).
fn fails_only_with(r: &Report, code: &str) {
    assert!(!r.ok(), "the forged package verified:\n{r}");
    let c = codes(r);
    assert!(
        c.iter().all(|x| *x == code),
        "expected only {code}, found {c:?}:\n{r}"
    );
}

#[test]
fn the_kit_recommits_the_sample_and_it_still_verifies() {
    let s = sample();
    assert!(s.verify(&s.pkg).ok());
    let again = s.recommitted(&s.pkg, &s.app());
    let r = s.verify(&again);
    assert!(r.ok(), "{r}");
}

// ---- item 16: the phase agrees with the bundle, the services and the receipts

#[test]
fn completed_with_no_services_does_not_verify() {
    let s = sample();
    let mut app = s.app();
    app.services.clear();
    let mut pkg = s.recommitted(&s.pkg, &app);
    pkg.receipts.clear();
    fails_only_with(&s.verify(&pkg), "application.phase_mismatch");
}

#[test]
fn completed_with_every_service_pending_or_failed_does_not_verify() {
    let s = sample();
    for state in [
        ServiceState::Pending {
            attempt: 1,
            deadline_ms: 1,
        },
        ServiceState::Failed {
            code: "service.no_receipt".into(),
        },
    ] {
        let mut app = s.app();
        for v in app.services.values_mut() {
            *v = state.clone();
        }
        let mut pkg = s.recommitted(&s.pkg, &app);
        pkg.receipts.clear();
        fails_only_with(&s.verify(&pkg), "application.phase_mismatch");
    }
}

#[test]
fn completed_with_one_service_left_out_does_not_verify() {
    let s = sample();
    let mut app = s.app();
    app.services.remove("gas-transfer");
    let mut pkg = s.recommitted(&s.pkg, &app);
    pkg.receipts.retain(|r| r.service != "gas-transfer");
    fails_only_with(&s.verify(&pkg), "application.services_mismatch");
}

#[test]
fn completed_with_a_service_the_bundle_does_not_order_does_not_verify() {
    let s = sample();
    let mut app = s.app();
    app.services.insert(
        "broadband-transfer".into(),
        ServiceState::Failed { code: "x".into() },
    );
    let pkg = s.recommitted(&s.pkg, &app);
    fails_only_with(&s.verify(&pkg), "application.services_mismatch");
}

#[test]
fn completed_after_a_rejecting_receipt_does_not_verify() {
    // The recipient's signed receipt says "rejected"; the application still
    // claims completed.
    let s = sample();
    let mut app = s.app();
    let svc = "gas-transfer";
    let i = s
        .pkg
        .receipts
        .iter()
        .position(|r| r.service == svc)
        .unwrap();
    let tx = Transaction::decode(&s.pkg.receipts[i].bundle.tx).unwrap();
    let mut body = tx.body.clone();
    if let TxBody::ServiceReceipt {
        accepted, reason, ..
    } = &mut body
    {
        *accepted = false;
        *reason = "account unknown".into();
    }
    let tx = Transaction::sign(&tx.chain_id, &tx.author, body, &signing_key(&tx.author));
    let h = s.pkg.receipts[i].bundle.header.header.clone();
    let mut pkg = s.pkg.clone();
    pkg.receipts[i].bundle = s.block(&tx, h.height, h.timestamp_ms);
    app.services.insert(
        svc.into(),
        ServiceState::Receipted {
            accepted: false,
            reason: "account unknown".into(),
            at_ms: 1,
        },
    );
    let pkg = s.recommitted(&pkg, &app);
    fails_only_with(&s.verify(&pkg), "application.phase_mismatch");
}

/// The sample with deed tax proven not paid: a genuine rejection.
fn rejected(s: &Sample) -> (ApplicationPackage, Application) {
    let mut app = s.app();
    let pkg = s.reanswered(
        &s.pkg,
        &mut app,
        "deed-tax",
        Verdict::DoesNotHold,
        Answer::DoesNotHold,
    );
    app.phase = Phase::Rejected;
    app.reason = Some("rule not satisfied; evidence that did not hold: deed-tax".into());
    (pkg, app)
}

#[test]
fn a_rejection_with_nothing_dispatched_verifies() {
    let s = sample();
    let (pkg, mut app) = rejected(&s);
    app.services.clear();
    let mut pkg = s.recommitted(&pkg, &app);
    pkg.receipts.clear();
    let r = s.verify(&pkg);
    assert!(r.ok(), "{r}");
}

#[test]
fn rejected_while_services_were_receipted_does_not_verify() {
    let s = sample();
    let (pkg, app) = rejected(&s);
    // Every service receipted, every receipt proven: yet "rejected".
    let pkg = s.recommitted(&pkg, &app);
    fails_only_with(&s.verify(&pkg), "application.phase_mismatch");
}

#[test]
fn parameters_outside_the_bundles_declaration_do_not_verify() {
    let s = sample();
    // A parameter the bundle does not declare (the requests do not read it).
    let mut app = s.app();
    app.params
        .insert("discount".into(), proofs::Value::Text("100%".into()));
    let pkg = s.recommitted(&s.pkg, &app);
    fails_only_with(&s.verify(&pkg), "application.params_mismatch");
    // A declared parameter of another kind.
    let mut app = s.app();
    app.params
        .insert("buyer_phone".into(), proofs::Value::Int(13_800_000_000));
    let pkg = s.recommitted(&s.pkg, &app);
    fails_only_with(&s.verify(&pkg), "application.params_mismatch");
}

#[test]
fn evidence_outside_the_bundles_declaration_does_not_verify() {
    let s = sample();
    let mut app = s.app();
    app.evidence
        .insert("buyer-criminal-record".into(), EvidenceState::Unneeded);
    let pkg = s.recommitted(&s.pkg, &app);
    fails_only_with(&s.verify(&pkg), "application.evidence_mismatch");
    let mut app = s.app();
    app.evidence.remove("buyer-marital");
    let mut pkg = s.recommitted(&s.pkg, &app);
    pkg.evidence.retain(|e| e.id != "buyer-marital");
    fails_only_with(&s.verify(&pkg), "application.evidence_mismatch");
}

#[test]
fn a_matching_application_with_services_does_not_verify() {
    let s = sample();
    let mut app = s.app();
    app.phase = Phase::Matching;
    let pkg = s.recommitted(&s.pkg, &app);
    let r = s.verify(&pkg);
    assert!(!r.ok(), "{r}");
}

// ---- item 17: a hub owns no chain

#[test]
fn an_access_log_written_by_the_hub_on_hefeis_chain_does_not_verify() {
    let s = sample();
    // buyer-marital is asked of Hefei's civil affairs through the Anhui hub.
    let i = s.item(&s.pkg, "buyer-marital");
    let tx = Transaction::decode(&s.pkg.evidence[i].access.tx).unwrap();
    assert_eq!(
        (tx.chain_id.as_str(), tx.author.as_str()),
        ("hefei-egov", "hefei.gateway")
    );
    let pkg = s.reforged_access(&s.pkg, "buyer-marital", "anhui-hub", |_| {});
    let r = s.verify(&pkg);
    assert!(!r.ok(), "an access log by the hub verified:\n{r}");
    assert_eq!(r.first_failure_code(), Some("tx.author_role"), "{r}");
    // The same re-signing by Hefei's own gateway verifies (the kit is sound).
    let pkg = s.reforged_access(&s.pkg, "buyer-marital", "hefei.gateway", |_| {});
    assert!(s.verify(&pkg).ok());
}

#[test]
fn a_hub_authors_nothing_on_any_chain() {
    let s = sample();
    let hub = &s.roots.members["anhui-hub"];
    assert_eq!(hub.role, proofs::Role::Hub);
    assert_eq!(hub.chain, "", "a hub owns no chain");
    let bodies = [
        TxBody::ApplicationStep {
            application: Hash([1; 32]),
            bundle: "newborn".into(),
            step: "submitted".into(),
            item: String::new(),
            detail: Hash([2; 32]),
            at_ms: 1,
        },
        TxBody::AccessLog {
            requester: "hefei.centre".into(),
            provider: "hefei.civil-affairs".into(),
            contract: "house-transfer.marriage".into(),
            contract_version: 1,
            subjects: vec![proofs::subject::SubjectRef(Hash([3; 32]))],
            question: Hash([4; 32]),
            answer: Hash([5; 32]),
            request_id: Hash([6; 32]),
            at_ms: 1,
        },
        TxBody::BatchSeal {
            root: Hash([7; 32]),
            count: 1,
        },
    ];
    for body in bodies {
        for chain in ["hefei-egov", ""] {
            let kind = body.kind_name();
            let tx = Transaction::sign(chain, "anhui-hub", body.clone(), &signing_key("anhui-hub"));
            let e = tx.verify_author(&s.roots).expect_err(kind);
            assert!(
                matches!(e, proofs::tx::TxError::Role { .. }),
                "{kind} on `{chain}`: {e}"
            );
        }
    }
}

// ---- item 18: the answer time is bound to the request's window

#[test]
fn an_access_log_dated_outside_the_requests_window_does_not_verify() {
    let s = sample();
    let id = "seller-title";
    let req = s.pkg.evidence[s.item(&s.pkg, id)].request.clone();
    let skew = s.roots.max_clock_skew_ms;
    let dated = |at: u64| {
        let pkg = s.reforged_access(&s.pkg, id, "nanjing.gateway", |b| {
            if let TxBody::AccessLog { at_ms, .. } = b {
                *at_ms = at;
            }
        });
        s.verify(&pkg)
    };
    for at in [
        req.issued_ms - skew - 1,
        req.issued_ms - 3_600_000,
        req.expires_ms + 1,
        req.expires_ms + 86_400_000,
    ] {
        let r = dated(at);
        fails_only_with(&r, "match.access_time");
    }
    for at in [req.issued_ms - skew, req.issued_ms, req.expires_ms] {
        let r = dated(at);
        assert!(r.ok(), "at {at}:\n{r}");
    }
}

// ---- item 19: dependent facts are skipped; nested subjects are numbered

#[test]
fn facts_after_a_failed_application_commitment_are_skipped() {
    let s = sample();
    let mut pkg = s.pkg.clone();
    pkg.application = pkg.application.replacen("13800000000", "13800000001", 1);
    let r = s.verify(&pkg);
    let at = r
        .facts
        .iter()
        .position(|f| f.check == "application.committed")
        .unwrap();
    assert!(matches!(r.facts[at].outcome, Outcome::Fails { .. }), "{r}");
    let later = &r.facts[at + 1..];
    assert!(!later.is_empty());
    for f in later {
        assert!(
            matches!(f.outcome, Outcome::Skipped { .. }),
            "{} {} is not skipped after application.committed failed:\n{r}",
            f.subject,
            f.check
        );
    }
    // Every evidence item and receipt is named as skipped.
    for e in &pkg.evidence {
        assert!(later.iter().any(|f| f.subject.contains(&e.id)), "{}", e.id);
    }
    for rc in &pkg.receipts {
        assert!(
            later.iter().any(|f| f.subject.contains(&rc.service)),
            "{}",
            rc.service
        );
    }
}

#[test]
fn facts_after_a_failed_evidence_item_are_skipped() {
    let s = sample();
    let mut pkg = s.pkg.clone();
    // One access log's certificate broken: that item's later checks, the
    // completeness of the evidence and the decision depend on it.
    let i = s.item(&pkg, "deed-tax");
    pkg.evidence[i].access.header.certificate.endorsements[0]
        .signature
        .0[5] ^= 1;
    let r = s.verify(&pkg);
    assert!(!r.ok());
    for check in ["evidence.complete", "application.decision"] {
        let f = r.facts.iter().find(|f| f.check == check).unwrap();
        assert!(
            matches!(f.outcome, Outcome::Skipped { .. }),
            "{check} not skipped:\n{r}"
        );
    }
    let name = format!("evidence[{i}] deed-tax");
    for check in ["evidence.answer", "evidence.recorded"] {
        let f = r
            .facts
            .iter()
            .find(|f| f.check == check && f.subject == name)
            .unwrap_or_else(|| panic!("no {check} fact for {name}:\n{r}"));
        assert!(matches!(f.outcome, Outcome::Skipped { .. }), "{r}");
    }
}

#[test]
fn nested_facts_are_numbered_per_evidence_item() {
    let s = sample();
    let r = s.verify(&s.pkg);
    assert!(r.ok());
    let mut seen = BTreeMap::new();
    for f in &r.facts {
        *seen.entry((f.subject.clone(), f.check)).or_insert(0) += 1;
    }
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.is_empty(),
        "facts not told apart in the report: {twice:?}"
    );
    let json = serde_json::to_value(&r).unwrap();
    for f in json["facts"].as_array().unwrap() {
        let subject = f["subject"].as_str().unwrap();
        if f["check"].as_str().unwrap().starts_with("access.")
            || f["check"].as_str().unwrap().starts_with("record.")
        {
            assert!(subject.starts_with("evidence["), "{subject}");
        }
    }
}

// ---- item 23: what a package cannot show

#[test]
fn the_limits_of_a_package_are_stated() {
    let text = regions::evidence::CANNOT_SHOW.join("\n");
    for needle in [
        "signed word",
        "disclosed values",
        "revoked",
        "latest state",
        "left out",
    ] {
        assert!(text.contains(needle), "{needle}: {text}");
    }
}
