//! Every refusal of a selective match, each on its own: on one gateway over
//! real HTTP (the provider is a department of the same city, so no relay is
//! involved), and on the caller's side for tampered answers.

use std::sync::Arc;

use gateway::client::{
    Client, ClientError, MatchAsk, MatchReply, open_match, sign_match, sign_publication,
};
use gateway::clock::FixedClock;
use gateway::testkit::{
    CityFiles, Running, city_files, key, marriage, resident, start, start_with_clock, subject_key,
};
use proofs::matching::{MatchRequest, RequestDraft, Verdict};
use regions::test_keys::hpke_secret_key;

const CONTRACT: &str = "house-transfer.marriage";
const CENTRE: &str = "nanjing.centre";
const PROVIDER: &str = "nanjing.civil-affairs";

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

struct One {
    files: CityFiles,
    run: Running,
}

impl One {
    fn client(&self, member: &str) -> Client {
        gateway::testkit::client(&self.run, &self.files, member)
    }
    fn roots(&self) -> proofs::TrustRoots {
        self.files
            .registry
            .trust_roots(self.files.registry_hash)
            .unwrap()
    }
}

async fn publish(files: &CityFiles, run: &Running) {
    let chain = files
        .registry
        .city("nanjing")
        .unwrap()
        .chain
        .chain_id
        .clone();
    let req = sign_publication(
        &files.registry,
        &chain,
        PROVIDER,
        &key(PROVIDER),
        &subject_key("nanjing"),
        marriage("NJ-1", 1, 1, 2, "married"),
        [5; 32],
    )
    .unwrap();
    let (status, _): (u16, serde_json::Value) = gateway::testkit::client(run, files, PROVIDER)
        .post("/v1/records", &req)
        .await
        .unwrap();
    assert_eq!(status, 201);
}

async fn one() -> One {
    let files = city_files("nanjing", "");
    let run = start(&files).await;
    publish(&files, &run).await;
    One { files, run }
}

fn question(o: &One, predicates: serde_json::Value, disclose: &[&str]) -> String {
    serde_json::json!({
        "record_type": "marriage",
        "predicates": predicates,
        "disclose": disclose,
        "purpose": o.files.registry.contract(CONTRACT).unwrap().purpose,
    })
    .to_string()
}

fn married() -> serde_json::Value {
    serde_json::json!([{ "field": "status", "op": "eq", "value": "married" }])
}

fn request_at(o: &One, requester: &str, q: &str, subject: &str, at: u64) -> MatchRequest {
    sign_match(
        &o.files.registry,
        &o.roots(),
        requester,
        &key(requester),
        &MatchAsk {
            provider: PROVIDER,
            contract: CONTRACT,
            question: q,
            subject,
            ttl_ms: 60_000,
        },
        at,
    )
    .unwrap()
}

fn request(o: &One, requester: &str, q: &str) -> MatchRequest {
    request_at(o, requester, q, &resident(1), now())
}

async fn ask(o: &One, req: &MatchRequest) -> Result<MatchReply, ClientError> {
    o.client(&req.requester)
        .post::<_, MatchReply>("/v1/matches", req)
        .await
        .map(|(_, r)| r)
}

fn code(e: ClientError) -> String {
    match e {
        ClientError::Api { code, .. } => code,
        other => panic!("expected an API error, got {other}"),
    }
}

async fn verdict(o: &One, req: &MatchRequest) -> Verdict {
    let reply = ask(o, req).await.unwrap();
    assert!(reply.verified, "{:#}", reply.report);
    let sk = hpke_secret_key(&req.requester);
    open_match(&reply, req, &o.roots(), &sk, now())
        .unwrap()
        .0
        .verdict
}

fn denied(v: Verdict) -> String {
    match v {
        Verdict::Denied { code, .. } => code,
        other => panic!("expected a denial, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_request_is_answered() {
    let o = one().await;
    assert_eq!(
        verdict(&o, &request(&o, CENTRE, &question(&o, married(), &[]))).await,
        Verdict::Holds
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_request() {
    let o = one().await;
    let req = request_at(
        &o,
        CENTRE,
        &question(&o, married(), &[]),
        &resident(1),
        now() - 120_000,
    );
    assert_eq!(code(ask(&o, &req).await.unwrap_err()), "match.expired");
}

/// Issue 15 item 18: a verifier binds the access log's time to
/// `issued_ms − 30 s ≤ at_ms ≤ expires_ms` (the protocol's skew), so a
/// provider refuses a request issued further ahead of its clock even when its
/// HTTP clock-skew setting is wider: it never writes an answer that fails
/// verification.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_issued_beyond_the_protocol_skew_is_refused() {
    let files = city_files("nanjing", "[http]\nclock_skew_ms = 120000\n");
    let run = start(&files).await;
    publish(&files, &run).await;
    let o = One { files, run };
    let q = question(&o, married(), &[]);
    let ahead = request_at(&o, CENTRE, &q, &resident(1), now() + 60_000);
    assert_eq!(
        code(ask(&o, &ahead).await.unwrap_err()),
        "match.not_yet_valid"
    );
    // Within the protocol's skew: answered and verified.
    let near = request_at(&o, CENTRE, &q, &resident(1), now() + 20_000);
    let reply = ask(&o, &near).await.unwrap();
    assert!(reply.verified, "{:#}", reply.report);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_request_id() {
    let o = one().await;
    let q = question(&o, married(), &[]);
    let req = request(&o, CENTRE, &q);
    let first = ask(&o, &req).await.unwrap();
    // The identical request again: the same answer, nothing logged twice.
    let again = ask(&o, &req).await.unwrap();
    assert_eq!(again.answer, first.answer);
    // Another request under the same id: refused.
    let other = MatchRequest::create(
        &RequestDraft {
            id: req.id,
            requester: CENTRE,
            provider: PROVIDER,
            contract: CONTRACT,
            contract_version: 1,
            question: &q,
            issued_ms: now(),
            expires_ms: now() + 30_000,
            subject: &resident(2),
        },
        &o.roots().members[PROVIDER].hpke.unwrap(),
        &key(CENTRE),
        &mut rand_like(),
    )
    .unwrap();
    assert_eq!(code(ask(&o, &other).await.unwrap_err()), "match.replayed");
    let (_, log): (u16, Vec<serde_json::Value>) = o
        .client(PROVIDER)
        .post(
            "/v1/access-ledger",
            &serde_json::json!({ "subject": resident(1) }),
        )
        .await
        .unwrap();
    assert_eq!(log.len(), 1, "one access, however often it was resent");
}

fn rand_like() -> impl rand_core::CryptoRng {
    use rand_core::SeedableRng;
    rand_chacha::ChaCha20Rng::from_seed([42; 32])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_signed_by_a_key_not_in_the_registry() {
    let o = one().await;
    let q = question(&o, married(), &[]);
    let mut req = request(&o, CENTRE, &q);
    req.signature = proofs::SigningKey::from_seed(&[7; 32]).sign(&req.signing_bytes());
    assert_eq!(
        code(ask(&o, &req).await.unwrap_err()),
        "match.bad_signature"
    );
    // At the provider itself (what a relay delivers), an unknown requester is refused too.
    let mut ghost = request(&o, CENTRE, &q);
    ghost.requester = "nanjing.ghost".into();
    ghost.signature = key("nanjing.ghost").sign(&ghost.signing_bytes());
    let err = gateway::matching::answer(&o.run.state, ghost)
        .await
        .unwrap_err();
    assert_eq!(err.code, "match.unknown_requester");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requester_not_in_the_contract() {
    let o = one().await;
    // A department may ask, but this contract names the service centres only.
    let req = request(&o, "nanjing.real-estate", &question(&o, married(), &[]));
    assert_eq!(denied(verdict(&o, &req).await), "contract.wrong_requester");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn field_not_allowed() {
    let o = one().await;
    let p = serde_json::json!([{ "field": "registering_office", "op": "eq", "value": "x" }]);
    let req = request(&o, CENTRE, &question(&o, p, &[]));
    assert_eq!(
        denied(verdict(&o, &req).await),
        "contract.field_not_allowed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_not_allowed() {
    let o = one().await;
    let p = serde_json::json!([{ "field": "status", "op": "ne", "value": "married" }]);
    let req = request(&o, CENTRE, &question(&o, p, &[]));
    assert_eq!(
        denied(verdict(&o, &req).await),
        "contract.operator_not_allowed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn value_disclosure_where_only_yes_no_is_allowed() {
    let o = one().await;
    let req = request(&o, CENTRE, &question(&o, married(), &["status"]));
    assert_eq!(
        denied(verdict(&o, &req).await),
        "contract.disclosure_not_allowed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contract_expired() {
    // The contract runs to 2027-12-31; this gateway's clock reads mid-2028.
    let files = city_files("nanjing", "");
    let at = 1_843_000_000_000; // 2028-05-27
    let run = start_with_clock(&files, Arc::new(FixedClock::new(at))).await;
    let o = One { files, run };
    let req = request_at(&o, CENTRE, &question(&o, married(), &[]), &resident(1), at);
    let answer = gateway::matching::answer(&o.run.state, req.clone())
        .await
        .unwrap();
    let reply = MatchReply {
        answer,
        report: serde_json::Value::Null,
        verified: false,
    };
    let plain = open_match(&reply, &req, &o.roots(), &hpke_secret_key(CENTRE), at)
        .unwrap()
        .0;
    assert_eq!(denied(plain.verdict), "contract.outside_validity");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_budget_exceeded() {
    let o = one().await;
    let q = question(&o, married(), &[]);
    // Three queries per 30 days about one subject, by one requester.
    for _ in 0..3 {
        assert_eq!(verdict(&o, &request(&o, CENTRE, &q)).await, Verdict::Holds);
    }
    assert_eq!(
        denied(verdict(&o, &request(&o, CENTRE, &q)).await),
        "contract.budget_exhausted"
    );
    // Another subject still has its own budget.
    let other = request_at(&o, CENTRE, &q, &resident(2), now());
    assert_eq!(verdict(&o, &other).await, Verdict::Holds);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answer_ciphertext_moved_to_another_request() {
    let o = one().await;
    let q = question(&o, married(), &[]);
    let (a, b) = (
        request(&o, CENTRE, &q),
        request_at(&o, CENTRE, &q, &resident(2), now()),
    );
    let (ra, mut rb) = (ask(&o, &a).await.unwrap(), ask(&o, &b).await.unwrap());
    rb.answer.sealed = ra.answer.sealed.clone();
    let err = open_match(&rb, &b, &o.roots(), &hpke_secret_key(CENTRE), now()).unwrap_err();
    assert!(err.to_string().contains("match.seal"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_proof() {
    let o = one().await;
    let req = request(&o, CENTRE, &question(&o, married(), &[]));
    let mut reply = ask(&o, &req).await.unwrap();
    let h = &mut reply.answer.access.proof.path;
    assert!(!h.is_empty() || reply.answer.access.proof.size == 1);
    if let Some(first) = h.first_mut() {
        first.0[0] ^= 1;
    } else {
        reply.answer.access.proof.index = 1;
    }
    let err = open_match(&reply, &req, &o.roots(), &hpke_secret_key(CENTRE), now()).unwrap_err();
    assert!(err.to_string().contains("does not verify"), "{err}");
    // The requesting gateway's own check fails the same way.
    let checked = gateway::matching::verify(&o.run.state, &req, reply.answer).unwrap();
    assert!(!checked.verified);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_without_quorum() {
    let o = one().await;
    let req = request(&o, CENTRE, &question(&o, married(), &[]));
    let mut reply = ask(&o, &req).await.unwrap();
    reply
        .answer
        .access
        .header
        .certificate
        .endorsements
        .truncate(2);
    let mut report = proofs::Report::new();
    assert!(
        proofs::matching::verify_answer(&reply.answer, &req, &o.roots(), now(), &mut report)
            .is_none()
    );
    assert_eq!(
        report.first_failure_code(),
        Some("certificate.below_threshold"),
        "{report:#?}"
    );
    // A light client refuses such a header of another chain before storing it.
    let mut foreign = reply.answer.access.header.clone();
    foreign.header.chain_id = "shanghai-egov".into();
    let err = o.run.state.light.observe(&foreign, now()).unwrap_err();
    assert_eq!(err.code(), "chain.no_quorum");
}
