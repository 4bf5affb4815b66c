//! Issue 15, findings 1 to 6: the provider side of matches keeps its limits
//! under concurrency and volume, a denial spends no budget, a department sees
//! only the accesses to its own records, and what is kept of a question is
//! its shape, never the values it names. One gateway over real HTTP (the
//! provider is a department of the same city).

use std::sync::Arc;

use gateway::client::{Client, MatchAsk, MatchReply, open_match, sign_match, sign_publication};
use gateway::clock::FixedClock;
use gateway::records::RecordInput;
use gateway::testkit::{
    CityFiles, Running, city_files, key, marriage, resident, start, start_with_clock, subject_key,
};
use proofs::matching::{AnswerPlain, MatchAnswer, MatchRequest, Verdict};
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

/// Nanjing's files with `volume` set on the marriage contract (the registry
/// copy is edited and the config re-pinned to its new hash).
fn files_with_volume(per_minute: u32, per_day: u32, extra: &str) -> CityFiles {
    let mut files = city_files("nanjing", extra);
    gateway::testkit::edit_registry(&mut files, |text| {
        let at = text.find("id = \"house-transfer.marriage\"").unwrap();
        let budget = at + text[at..].find("budget = ").unwrap();
        let line_end = budget + text[budget..].find('\n').unwrap();
        format!(
            "{}\nvolume = {{ per_minute = {per_minute}, per_day = {per_day} }}{}",
            &text[..line_end],
            &text[line_end..]
        )
    });
    files
}

fn client(files: &CityFiles, run: &Running, member: &str) -> Client {
    gateway::testkit::client(run, files, member)
}

async fn publish(files: &CityFiles, run: &Running, department: &str, record: RecordInput) {
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
        department,
        &key(department),
        &subject_key("nanjing"),
        record,
        [5; 32],
    )
    .unwrap();
    let (status, _): (u16, serde_json::Value) = client(files, run, department)
        .post("/v1/records", &req)
        .await
        .unwrap();
    assert_eq!(status, 201);
}

async fn publish_marriages(files: &CityFiles, run: &Running, n: u64) {
    for i in 1..=n {
        let id = format!("NJ-{i}");
        publish(
            files,
            run,
            PROVIDER,
            marriage(&id, 1, i, 1000 + i, "married"),
        )
        .await;
    }
}

fn question(files: &CityFiles, predicates: serde_json::Value) -> String {
    serde_json::json!({
        "record_type": "marriage",
        "predicates": predicates,
        "disclose": [],
        "purpose": files.registry.contract(CONTRACT).unwrap().purpose,
    })
    .to_string()
}

fn married() -> serde_json::Value {
    serde_json::json!([{ "field": "status", "op": "eq", "value": "married" }])
}

/// The centre's request of `provider` under `contract`, signed at `at`.
fn signed_request(
    files: &CityFiles,
    provider: &str,
    contract: &str,
    q: &str,
    subject: &str,
    at: u64,
) -> MatchRequest {
    let roots = files.registry.trust_roots(files.registry_hash).unwrap();
    sign_match(
        &files.registry,
        &roots,
        CENTRE,
        &key(CENTRE),
        &MatchAsk {
            provider,
            contract,
            question: q,
            subject,
            ttl_ms: 60_000,
        },
        at,
    )
    .unwrap()
}

fn request_at(files: &CityFiles, q: &str, subject: &str, at: u64) -> MatchRequest {
    signed_request(files, PROVIDER, CONTRACT, q, subject, at)
}

fn verdict_of(files: &CityFiles, reply: &MatchReply, req: &MatchRequest, at: u64) -> Verdict {
    let roots = files.registry.trust_roots(files.registry_hash).unwrap();
    open_match(reply, req, &roots, &hpke_secret_key(CENTRE), at)
        .unwrap()
        .0
        .verdict
}

/// A provider's answer as the centre opens it (the reply's own report is not needed).
fn opened(files: &CityFiles, req: &MatchRequest, answer: MatchAnswer, at: u64) -> AnswerPlain {
    let reply = MatchReply {
        answer,
        report: serde_json::Value::Null,
        verified: false,
    };
    let roots = files.registry.trust_roots(files.registry_hash).unwrap();
    open_match(&reply, req, &roots, &hpke_secret_key(CENTRE), at)
        .unwrap()
        .0
}

/// What the provider answers in process (the relay's path), opened.
async fn answer_at(
    files: &CityFiles,
    run: &Running,
    req: &MatchRequest,
    at: u64,
) -> Result<Verdict, String> {
    match gateway::matching::answer(&run.state, req.clone()).await {
        Ok(answer) => Ok(opened(files, req, answer, at).verdict),
        Err(r) => Err(r.code),
    }
}

/// Finding 1: 30 simultaneous asks about one subject were answered up to 22
/// times against a budget of 5. Here 200 go at once over HTTP; exactly the
/// budget is answered, every other one is denied for the budget.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_parallel_matches_never_exceed_the_subject_budget() {
    // Blocks cut every 20 ms: a wide window between a budget check and its
    // access log becoming durable, as on a loaded gateway.
    let files = files_with_volume(10_000, 100_000, "[ledger]\nblock_interval_ms = 20\n");
    let run = start(&files).await;
    publish_marriages(&files, &run, 1).await;
    let budget = files.registry.contract(CONTRACT).unwrap().budget.queries as usize;
    let q = question(&files, married());
    let mut tasks = Vec::new();
    for _ in 0..200 {
        let req = request_at(&files, &q, &resident(1), now());
        let c = client(&files, &run, CENTRE);
        tasks.push(tokio::spawn(async move {
            let r = c.post::<_, MatchReply>("/v1/matches", &req).await;
            (req, r)
        }));
    }
    let mut answered = 0;
    let mut budget_denied = 0;
    for t in tasks {
        let (req, r) = t.await.unwrap();
        let (_, reply) = r.unwrap_or_else(|e| panic!("every ask gets a verified answer: {e}"));
        assert!(reply.verified);
        match verdict_of(&files, &reply, &req, now()) {
            Verdict::Holds => answered += 1,
            Verdict::Denied { code, .. } if code == "contract.budget_exhausted" => {
                budget_denied += 1
            }
            other => panic!("unexpected verdict {other:?}"),
        }
    }
    assert_eq!(
        answered, budget,
        "answered {answered} times, budget {budget}"
    );
    assert_eq!(budget_denied, 200 - budget);

    // The relay's path, straight into the provider: 200 tasks at once about
    // another subject.
    publish_marriages_from(&files, &run, 2, 2).await;
    let state = run.state.clone();
    let mut tasks = Vec::new();
    for _ in 0..200 {
        let req = request_at(&files, &q, &resident(2), now());
        let state = state.clone();
        tasks.push(tokio::spawn(async move {
            let a = gateway::matching::answer(&state, req.clone()).await;
            (req, a)
        }));
    }
    let mut answered = 0;
    for t in tasks {
        let (req, a) = t.await.unwrap();
        if opened(&files, &req, a.unwrap(), now()).verdict == Verdict::Holds {
            answered += 1;
        }
    }
    assert_eq!(
        answered, budget,
        "answered {answered} times in process, budget {budget}"
    );
    run.stop().await;
}

async fn publish_marriages_from(files: &CityFiles, run: &Running, from: u64, to: u64) {
    for i in from..=to {
        let id = format!("NJ-{i}");
        publish(
            files,
            run,
            PROVIDER,
            marriage(&id, 1, i, 1000 + i, "married"),
        )
        .await;
    }
}

/// Finding 4: five malformed (contract-denied) requests locked a subject
/// for the centre for 30 days. Denials are logged but spend no budget.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denials_do_not_spend_the_subject_budget() {
    let files = city_files("nanjing", "");
    let run = start(&files).await;
    publish_marriages(&files, &run, 1).await;
    let at = now();
    // A field the contract does not allow: denied, and logged.
    let bad = question(
        &files,
        serde_json::json!([{ "field": "registration_date", "op": "eq", "value": "2019-05-20" }]),
    );
    for _ in 0..5 {
        let v = answer_at(
            &files,
            &run,
            &request_at(&files, &bad, &resident(1), at),
            at,
        )
        .await;
        assert!(
            matches!(&v, Ok(Verdict::Denied { code, .. }) if code == "contract.field_not_allowed"),
            "{v:?}"
        );
    }
    let good = question(&files, married());
    let budget = files.registry.contract(CONTRACT).unwrap().budget.queries;
    for i in 0..budget {
        let v = answer_at(
            &files,
            &run,
            &request_at(&files, &good, &resident(1), at),
            at,
        )
        .await;
        assert_eq!(v, Ok(Verdict::Holds), "valid ask {i} after five denials");
    }
    let v = answer_at(
        &files,
        &run,
        &request_at(&files, &good, &resident(1), at),
        at,
    )
    .await;
    assert!(
        matches!(&v, Ok(Verdict::Denied { code, .. }) if code == "contract.budget_exhausted"),
        "{v:?}"
    );
    run.stop().await;
}

/// Finding 3: one centre swept 1,900 residents in 3.5 s. Each requester's
/// volume under a contract is limited per minute and per day (in the
/// registry), refused with stable codes, shown in the metrics; the day's
/// count survives a restart, and denials count too, which bounds what
/// denials write (finding 4).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sweep_is_stopped_by_the_rate_and_the_daily_cap_and_the_cap_survives_a_restart() {
    let files = files_with_volume(4, 7, "");
    let clock = Arc::new(FixedClock::new(now()));
    let run = start_with_clock(&files, clock.clone()).await;
    publish_marriages(&files, &run, 10).await;
    let q = question(&files, married());
    let mut t = clock.now_ms_for_test();
    // Four subjects in the minute, the fifth refused for the rate.
    for n in 1..=4 {
        assert_eq!(
            answer_at(&files, &run, &request_at(&files, &q, &resident(n), t), t).await,
            Ok(Verdict::Holds)
        );
    }
    assert_eq!(
        answer_at(&files, &run, &request_at(&files, &q, &resident(5), t), t).await,
        Err("match.rate_limited".into())
    );
    // A minute later: three more, two of them denied (a denial counts) …
    t += 61_000;
    clock.set(t);
    assert_eq!(
        answer_at(&files, &run, &request_at(&files, &q, &resident(5), t), t).await,
        Ok(Verdict::Holds)
    );
    let bad = question(
        &files,
        serde_json::json!([{ "field": "registration_date", "op": "eq", "value": "2019-05-20" }]),
    );
    for n in 6..=7 {
        let v = answer_at(&files, &run, &request_at(&files, &bad, &resident(n), t), t).await;
        assert!(matches!(v, Ok(Verdict::Denied { .. })), "{v:?}");
    }
    // … and the day's seven are spent, whatever the minute.
    t += 61_000;
    clock.set(t);
    assert_eq!(
        answer_at(&files, &run, &request_at(&files, &q, &resident(8), t), t).await,
        Err("match.daily_cap".into())
    );
    // The refusals are in the metrics; over HTTP the code comes with 429.
    let metrics = reqwest::get(format!("{}/metrics", run.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(&format!(
            "tongban_match_volume_refused_total{{requester=\"{CENTRE}\",contract=\"{CONTRACT}\"}} 2"
        )),
        "{metrics}"
    );
    assert!(metrics.contains(&format!(
        "tongban_match_volume_today{{requester=\"{CENTRE}\",contract=\"{CONTRACT}\"}} 7"
    )));
    // Restarted, the gateway still knows the day is spent.
    run.stop().await;
    let run = start_with_clock(&files, clock.clone()).await;
    assert_eq!(
        answer_at(&files, &run, &request_at(&files, &q, &resident(8), t), t).await,
        Err("match.daily_cap".into())
    );
    // The next day, the requester may ask again.
    t += 86_400_000;
    clock.set(t);
    assert_eq!(
        answer_at(&files, &run, &request_at(&files, &q, &resident(8), t), t).await,
        Ok(Verdict::Holds)
    );
    run.stop().await;
}

trait NowForTest {
    fn now_ms_for_test(&self) -> u64;
}
impl NowForTest for FixedClock {
    fn now_ms_for_test(&self) -> u64 {
        gateway::clock::Clock::now_ms(self)
    }
}

fn income_tax(taxpayer: u64) -> RecordInput {
    let fields = serde_json::json!({
        "taxpayer_id": resident(taxpayer),
        "city": "nanjing",
        "months_paid": 48,
        "last_paid_month": "2026-10-01",
    });
    RecordInput {
        record_type: "income-tax-history".into(),
        record_id: format!("TAX-{taxpayer}"),
        version: 1,
        fields: fields.as_object().unwrap().clone(),
        issued_ms: 1_760_000_000_000,
    }
}

/// Findings 5 and 6: `nanjing.tax` (which keeps a tax record of everyone)
/// read civil affairs' marriage question naming the other party's identity
/// number. A department now sees only accesses to its own records, and what
/// is kept of a question is its shape: the values it compared with are
/// nowhere in the gateway's files.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_department_sees_only_its_own_accesses_and_question_values_are_not_kept() {
    let files = city_files("nanjing", "");
    let run = start(&files).await;
    publish(&files, &run, PROVIDER, marriage("NJ-1", 1, 1, 2, "married")).await;
    publish(&files, &run, "nanjing.tax", income_tax(1)).await;
    // A marriage question that names a third party's number (not in any record).
    let third_party = resident(777_777);
    let newborn = "newborn.marriage";
    let q = serde_json::json!({
        "record_type": "marriage",
        "predicates": [{ "field": "party_b_id", "op": "eq", "value": third_party }],
        "disclose": [],
        "purpose": files.registry.contract(newborn).unwrap().purpose,
    })
    .to_string();
    let req = signed_request(&files, PROVIDER, newborn, &q, &resident(1), now());
    let (_, reply): (u16, MatchReply) = client(&files, &run, CENTRE)
        .post("/v1/matches", &req)
        .await
        .unwrap();
    assert!(reply.verified);
    assert_eq!(
        verdict_of(&files, &reply, &req, now()),
        Verdict::DoesNotHold
    );

    let ledger = |member: &'static str| {
        let c = client(&files, &run, member);
        async move {
            let (_, log): (u16, Vec<serde_json::Value>) = c
                .post(
                    "/v1/access-ledger",
                    &serde_json::json!({ "subject": resident(1) }),
                )
                .await
                .unwrap();
            log
        }
    };
    let civil = ledger(PROVIDER).await;
    assert_eq!(civil.len(), 1, "{civil:#?}");
    assert_eq!(civil[0]["provider"], PROVIDER);
    // The shape of the question, not its values.
    assert_eq!(civil[0]["question"]["tests"][0], "party_b_id eq");
    let text = serde_json::to_string(&civil).unwrap();
    assert!(!text.contains(&third_party), "{text}");
    // The tax department keeps a record of the subject, but the access was
    // to civil affairs' records: it sees nothing.
    let tax = ledger("nanjing.tax").await;
    assert!(tax.is_empty(), "{tax:#?}");

    // Nowhere at rest: no file under the data directory holds the number.
    run.stop().await;
    let mut stack = vec![files.dir.path().join("data")];
    let mut scanned = 0;
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let bytes = std::fs::read(&p).unwrap();
                scanned += bytes.len();
                assert!(
                    !bytes
                        .windows(third_party.len())
                        .any(|w| w == third_party.as_bytes()),
                    "{} holds the question's value",
                    p.display()
                );
            }
        }
    }
    assert!(scanned > 0);
}

/// Finding 6: between gateways the whole request travels sealed to the
/// provider department; a plaintext request over the relay is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_between_gateways_must_be_sealed_to_its_provider() {
    let files = city_files("nanjing", "");
    let run = start(&files).await;
    publish_marriages(&files, &run, 1).await;
    let q = question(&files, married());
    let req = request_at(&files, &q, &resident(1), now());
    let plain = serde_json::to_vec(&req).unwrap();
    let err = gateway::matching::open_remote(&run.state, &plain).unwrap_err();
    assert_eq!(err.code, "match.malformed");
    // Sealed to the provider's key it opens to the same request; the
    // envelope's bytes hold neither the question nor the requester.
    let roots = files.registry.trust_roots(files.registry_hash).unwrap();
    let hpke = roots.members[PROVIDER].hpke.unwrap();
    let sealed = proofs::matching::SealedRequest::seal(&req, &hpke, &mut rng()).unwrap();
    let bytes = serde_json::to_vec(&sealed).unwrap();
    let text = String::from_utf8_lossy(&bytes);
    assert!(
        !text.contains("status") && !text.contains(CENTRE) && !text.contains(CONTRACT),
        "{text}"
    );
    assert_eq!(
        gateway::matching::open_remote(&run.state, &bytes).unwrap(),
        req
    );
    // Sealed to another department's key, it does not open here.
    let other = roots.members["nanjing.tax"].hpke.unwrap();
    let mut wrong = proofs::matching::SealedRequest::seal(&req, &other, &mut rng()).unwrap();
    let bytes = serde_json::to_vec(&wrong).unwrap();
    assert_eq!(
        gateway::matching::open_remote(&run.state, &bytes)
            .unwrap_err()
            .code,
        "match.seal"
    );
    // Relabelled as for civil affairs, it still does not open (the AAD names the provider).
    wrong.provider = PROVIDER.into();
    let bytes = serde_json::to_vec(&wrong).unwrap();
    assert_eq!(
        gateway::matching::open_remote(&run.state, &bytes)
            .unwrap_err()
            .code,
        "match.seal"
    );
    run.stop().await;
}

fn rng() -> impl rand_core::CryptoRng {
    use rand_core::SeedableRng;
    rand_chacha::ChaCha20Rng::from_seed([9; 32])
}

fn title(owner: u64, certificate: &str) -> RecordInput {
    let fields = serde_json::json!({
        "certificate_number": certificate,
        "owner_id": resident(owner),
        "city": "nanjing",
        "district": "Gulou",
        "address": "12 Zhongshan Road, Room 501",
        "area_m2": 89,
        "use": "residential",
        "registration_date": "2018-03-01",
        "mortgaged": false,
        "seized": false,
    });
    RecordInput {
        record_type: "real-estate-title".into(),
        record_id: certificate.into(),
        version: 1,
        fields: fields.as_object().unwrap().clone(),
        issued_ms: 1_520_000_000_000,
    }
}

/// Finding 2: with no predicate at all, `house-transfer.title` disclosed
/// any owner's address and title number. Values now need the contract's
/// `disclose_requires` fields tested with `eq` first, and come only from a
/// record those tests hold on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_contract_is_not_a_free_look_up() {
    let files = city_files("nanjing", "");
    let run = start(&files).await;
    let real_estate = "nanjing.real-estate";
    publish(
        &files,
        &run,
        real_estate,
        title(1, "苏(2018)南京市不动产权第0000001号"),
    )
    .await;
    let contract = "house-transfer.title";
    let purpose = files.registry.contract(contract).unwrap().purpose.clone();
    let at = now();
    let ask = |predicates: serde_json::Value| {
        let q = serde_json::json!({
            "record_type": "real-estate-title",
            "predicates": predicates,
            "disclose": ["address", "certificate_number"],
            "purpose": purpose,
        })
        .to_string();
        signed_request(&files, real_estate, contract, &q, &resident(1), at)
    };
    let open = |req: &MatchRequest, answer| opened(&files, req, answer, at);
    // No predicate: denied, nothing disclosed.
    let req = ask(serde_json::json!([]));
    let plain = open(
        &req,
        gateway::matching::answer(&run.state, req.clone())
            .await
            .unwrap(),
    );
    assert!(
        matches!(&plain.verdict, Verdict::Denied { code, .. } if code == "contract.disclosure_unguarded"),
        "{:?}",
        plain.verdict
    );
    assert!(plain.values.is_empty());
    // A wrong certificate number: does not hold, nothing disclosed.
    let req = ask(
        serde_json::json!([{ "field": "certificate_number", "op": "eq", "value": "苏(2018)南京市不动产权第9999999号" }]),
    );
    let plain = open(
        &req,
        gateway::matching::answer(&run.state, req.clone())
            .await
            .unwrap(),
    );
    assert_eq!(plain.verdict, Verdict::DoesNotHold);
    assert!(plain.values.is_empty());
    // The seller's own number: the address is disclosed.
    let req = ask(
        serde_json::json!([{ "field": "certificate_number", "op": "eq", "value": "苏(2018)南京市不动产权第0000001号" }]),
    );
    let plain = open(
        &req,
        gateway::matching::answer(&run.state, req.clone())
            .await
            .unwrap(),
    );
    assert_eq!(plain.verdict, Verdict::Holds);
    assert!(
        plain
            .values
            .iter()
            .any(|(n, v)| n == "address" && v == "12 Zhongshan Road, Room 501"),
        "{:?}",
        plain.values
    );
    run.stop().await;
}
