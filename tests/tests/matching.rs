//! Cross-city selective matches over real sockets: HTTP to the requesting
//! gateway, libp2p between gateways (one city reachable only through the
//! Anhui hub), answers verified by the requesting gateway and again by the
//! caller, who alone can open them.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use gateway::client::{
    Client, ClientError, MatchAsk, MatchReply, open_match, sign_match, sign_publication,
};
use gateway::testkit::{
    CityFiles, Running, city_files, key, marriage, relay_section, resident, start, start_hub,
    subject_key,
};
use proofs::matching::{MatchRequest, Verdict};
use proofs::seal::HpkeSecretKey;
use regions::test_keys::hpke_secret_key;

const CONTRACT: &str = "house-transfer.marriage";

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

struct City {
    files: CityFiles,
    run: Option<Running>,
}

impl City {
    fn run(&self) -> &Running {
        self.run.as_ref().unwrap()
    }
    fn client(&self, member: &str) -> Client {
        gateway::testkit::client(self.run(), &self.files, member)
    }
}

struct Region {
    cities: BTreeMap<&'static str, City>,
    _hub: relay::Relay,
}

fn gateways() -> BTreeMap<String, String> {
    [
        "nanjing.gateway",
        "shanghai.gateway",
        "hefei.gateway",
        "anhui-hub",
    ]
    .into_iter()
    .map(|g| (g.to_string(), gateway::testkit::free_multiaddr()))
    .collect()
}

async fn region() -> Region {
    region_with(&gateways()).await
}

async fn region_with(addrs: &BTreeMap<String, String>) -> Region {
    let addrs = addrs.clone();
    let mut cities = BTreeMap::new();
    for c in ["nanjing", "shanghai", "hefei"] {
        let files = city_files(c, &relay_section(&format!("{c}.gateway"), &addrs));
        let run = start(&files).await;
        cities.insert(
            c,
            City {
                files,
                run: Some(run),
            },
        );
    }
    let hub = start_hub(&cities["nanjing"].files.registry, "anhui-hub", &addrs).await;
    Region { cities, _hub: hub }
}

fn purpose(files: &CityFiles) -> String {
    files.registry.contract(CONTRACT).unwrap().purpose.clone()
}

fn question(files: &CityFiles, predicates: serde_json::Value, disclose: &[&str]) -> String {
    serde_json::json!({
        "record_type": "marriage",
        "predicates": predicates,
        "disclose": disclose,
        "purpose": purpose(files),
    })
    .to_string()
}

fn married() -> serde_json::Value {
    serde_json::json!([{ "field": "status", "op": "eq", "value": "married" }])
}

async fn publish(city: &City, dept: &str, id: &str, a: u64, b: u64, status: &str) {
    let chain = city
        .files
        .registry
        .city(&city.files.city)
        .unwrap()
        .chain
        .chain_id
        .clone();
    let req = sign_publication(
        &city.files.registry,
        &chain,
        dept,
        &key(dept),
        &subject_key(&city.files.city),
        marriage(id, 1, a, b, status),
        [a as u8; 32],
    )
    .unwrap();
    let (status, _): (u16, serde_json::Value) =
        city.client(dept).post("/v1/records", &req).await.unwrap();
    assert_eq!(status, 201);
}

fn request(
    files: &CityFiles,
    requester: &str,
    provider: &str,
    q: &str,
    subject: &str,
) -> MatchRequest {
    let roots = files.registry.trust_roots(files.registry_hash).unwrap();
    sign_match(
        &files.registry,
        &roots,
        requester,
        &key(requester),
        &MatchAsk {
            provider,
            contract: CONTRACT,
            question: q,
            subject,
            ttl_ms: 60_000,
        },
        now(),
    )
    .unwrap()
}

async fn ask(city: &City, req: &MatchRequest) -> Result<MatchReply, ClientError> {
    city.client(&req.requester)
        .post::<_, MatchReply>("/v1/matches", req)
        .await
        .map(|(_, r)| r)
}

fn open(
    files: &CityFiles,
    reply: &MatchReply,
    req: &MatchRequest,
    sk: &HpkeSecretKey,
) -> proofs::matching::AnswerPlain {
    let roots = files.registry.trust_roots(files.registry_hash).unwrap();
    open_match(reply, req, &roots, sk, now()).unwrap().0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_cities_one_behind_the_hub() {
    let r = region().await;
    let (nj, sh, hf) = (
        &r.cities["nanjing"],
        &r.cities["shanghai"],
        &r.cities["hefei"],
    );
    publish(hf, "hefei.civil-affairs", "HF-2020-001", 11, 12, "married").await;
    publish(
        sh,
        "shanghai.civil-affairs",
        "SH-2018-007",
        21,
        22,
        "divorced",
    )
    .await;
    let centre = hpke_secret_key("nanjing.centre");

    // Hefei, reachable only through the hub: the buyer is married.
    let q = question(&nj.files, married(), &[]);
    let req = request(
        &nj.files,
        "nanjing.centre",
        "hefei.civil-affairs",
        &q,
        &resident(11),
    );
    let reply = ask(nj, &req).await.unwrap();
    assert!(reply.verified, "{:#}", reply.report);
    let plain = open(&nj.files, &reply, &req, &centre);
    assert_eq!(plain.verdict, Verdict::Holds);
    assert!(plain.record.is_some());
    assert!(plain.values.is_empty(), "yes/no only");
    assert!(plain.evaluated_height < reply.answer.access.header.header.height);

    // Shanghai, directly: divorced, so "married" does not hold.
    let req2 = request(
        &nj.files,
        "nanjing.centre",
        "shanghai.civil-affairs",
        &q,
        &resident(21),
    );
    let reply2 = ask(nj, &req2).await.unwrap();
    assert!(reply2.verified);
    assert_eq!(
        open(&nj.files, &reply2, &req2, &centre).verdict,
        Verdict::DoesNotHold
    );

    // No record: a signed "no record" answer, not an error.
    let req3 = request(
        &nj.files,
        "nanjing.centre",
        "hefei.civil-affairs",
        &q,
        &resident(77),
    );
    let reply3 = ask(nj, &req3).await.unwrap();
    assert!(reply3.verified);
    let p3 = open(&nj.files, &reply3, &req3, &centre);
    assert_eq!(p3.verdict, Verdict::NoRecord);
    assert!(reply3.answer.record.is_none() && p3.record.is_none());

    // A denial is signed, logged and names its rule.
    let qd = question(&nj.files, married(), &["status"]);
    let req4 = request(
        &nj.files,
        "nanjing.centre",
        "hefei.civil-affairs",
        &qd,
        &resident(11),
    );
    let reply4 = ask(nj, &req4).await.unwrap();
    assert!(reply4.verified);
    match open(&nj.files, &reply4, &req4, &centre).verdict {
        Verdict::Denied { code, .. } => assert_eq!(code, "contract.disclosure_not_allowed"),
        v => panic!("expected a denial, got {v:?}"),
    }

    // The subject's access ledger at the provider lists both accesses about resident 11.
    let (_, ledger): (u16, Vec<serde_json::Value>) = hf
        .client("hefei.civil-affairs")
        .post(
            "/v1/access-ledger",
            &serde_json::json!({ "subject": resident(11) }),
        )
        .await
        .unwrap();
    assert_eq!(ledger.len(), 2, "{ledger:#?}");
    assert!(
        ledger
            .iter()
            .all(|e| e["requester"] == "nanjing.centre" && e["contract"] == CONTRACT)
    );
    assert_eq!(ledger[1]["question"]["disclose"][0], "status");
    // Another department of Hefei keeps no record of the subject: refused.
    let err = hf
        .client("hefei.tax")
        .post::<_, serde_json::Value>(
            "/v1/access-ledger",
            &serde_json::json!({ "subject": resident(11) }),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("access.not_owner"), "{err}");

    // Hefei's gateway talks to its hub only; Nanjing follows Hefei's chain.
    let hf_relay = hf.run().state.relay.get().unwrap().clone();
    assert_eq!(hf_relay.connected().await, vec!["anhui-hub".to_string()]);
    let access_height = reply4.answer.access.header.header.height;
    let mut linked = None;
    for _ in 0..100 {
        linked = nj.run().state.light.status("hefei-egov").unwrap().linked_to;
        if linked >= Some(access_height) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        linked >= Some(access_height),
        "Nanjing follows Hefei's chain: {linked:?}"
    );
    // Operators see the relay and the light clients in the metrics.
    let metrics = nj.run().state.metrics.render(&nj.run().state);
    assert!(
        metrics.contains("tongban_relay_requests_out_total "),
        "{metrics}"
    );
    assert!(
        metrics.contains("tongban_light_frozen{chain=\"hefei-egov\"} 0"),
        "{metrics}"
    );
    assert!(metrics.contains("tongban_light_linked_height{chain=\"hefei-egov\"}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn requests_complete_after_the_provider_restarts() {
    let mut r = region().await;
    publish(
        &r.cities["shanghai"],
        "shanghai.civil-affairs",
        "SH-1",
        31,
        32,
        "married",
    )
    .await;
    let nj_files_q = question(&r.cities["nanjing"].files, married(), &[]);
    // The provider goes down; requests made meanwhile complete once it is back.
    let sh = r.cities.get_mut("shanghai").unwrap();
    sh.run.take().unwrap().stop().await;
    let nj = &r.cities["nanjing"];
    let mut pending = Vec::new();
    for i in 0..3u64 {
        let req = request(
            &nj.files,
            "nanjing.centre",
            "shanghai.civil-affairs",
            &nj_files_q,
            &resident(31 + (i % 2)),
        );
        let client = nj.client("nanjing.centre");
        pending.push(tokio::spawn(async move {
            let reply = client
                .post::<_, MatchReply>("/v1/matches", &req)
                .await
                .map(|(_, r)| r);
            (req, reply)
        }));
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    let sh = r.cities.get_mut("shanghai").unwrap();
    sh.run = Some(start(&sh.files).await);
    let centre = hpke_secret_key("nanjing.centre");
    let nj = &r.cities["nanjing"];
    for p in pending {
        let (req, reply) = p.await.unwrap();
        let reply = reply.expect("completes after the provider is back");
        assert!(reply.verified);
        assert_eq!(
            open(&nj.files, &reply, &req, &centre).verdict,
            Verdict::Holds
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_forked_header_freezes_the_chain() {
    let r = region().await;
    let (nj, sh) = (&r.cities["nanjing"], &r.cities["shanghai"]);
    publish(sh, "shanghai.civil-affairs", "SH-2", 41, 42, "married").await;
    let q = question(&nj.files, married(), &[]);
    let req = request(
        &nj.files,
        "nanjing.centre",
        "shanghai.civil-affairs",
        &q,
        &resident(41),
    );
    let reply = ask(nj, &req).await.unwrap();
    assert!(reply.verified);
    // Shanghai's endorsers certify a second header at the height Nanjing holds:
    // two certified headers at one height.
    let held = reply.answer.access.header.clone();
    let mut other = held.header.clone();
    other.tx_root = proofs::Hash([9; 32]);
    let signers: Vec<proofs::SigningKey> = (1..=3)
        .map(|i| regions::test_keys::signing_key(&format!("shanghai/endorser/{i}")))
        .collect();
    let cert = proofs::header::Certificate::sign(
        &other,
        &signers
            .iter()
            .enumerate()
            .map(|(i, k)| (i as u16, k))
            .collect::<Vec<_>>(),
    );
    let forged = proofs::header::CertifiedHeader {
        header: other,
        certificate: cert,
    };
    // Pushed over libp2p from Shanghai's side of the network, as a compromised
    // endorser set would.
    let sh_relay = sh.run().state.relay.get().unwrap().clone();
    let err = sh_relay
        .request("nanjing.gateway", "headers.push", forged.encode())
        .await
        .unwrap_err();
    assert_eq!(err.code(), "chain.frozen");
    let st = nj.run().state.light.status("shanghai-egov").unwrap();
    let fork = st.fork.expect("evidence recorded");
    assert_eq!(fork.height, held.header.height);
    assert_eq!(fork.kind, "two_headers_at_one_height");
    // New answers bound to the frozen chain are refused.
    let req2 = request(
        &nj.files,
        "nanjing.centre",
        "shanghai.civil-affairs",
        &q,
        &resident(41),
    );
    let err = ask(nj, &req2).await.unwrap_err();
    assert!(err.to_string().contains("chain.frozen"), "{err}");
    // Other chains still answer.
    let req3 = request(
        &nj.files,
        "nanjing.centre",
        "hefei.civil-affairs",
        &q,
        &resident(41),
    );
    assert!(ask(nj, &req3).await.unwrap().verified);
    // The operator clears it with the gateway key.
    let (_, body): (u16, serde_json::Value) = nj
        .client("nanjing.gateway")
        .post("/v1/light/shanghai-egov/unfreeze", &serde_json::json!({}))
        .await
        .unwrap();
    assert_eq!(body["cleared"]["height"], held.header.height);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unlisted_and_garbage_peers_do_not_disturb_the_region() {
    let addrs = gateways();
    let r = region_with(&addrs).await;
    let (nj, hf) = (&r.cities["nanjing"], &r.cities["hefei"]);
    publish(hf, "hefei.civil-affairs", "HF-9", 61, 62, "married").await;
    // An identity the registry does not list, posing as a gateway: refused
    // after the Noise handshake, before any protocol.
    let mut cfg = relay::RelayConfig::new("intruder", proofs::SigningKey::from_seed(&[0x42; 32]));
    let nanjing = regions::test_keys::ed25519("nanjing.gateway");
    cfg.peers = vec![relay::PeerInfo {
        id: "nanjing.gateway".into(),
        key: nanjing,
        addrs: vec![addrs["nanjing.gateway"].parse().unwrap()],
    }];
    cfg.directory = [("nanjing.gateway".to_string(), nanjing)]
        .into_iter()
        .collect();
    cfg.request_timeout = Duration::from_secs(2);
    cfg.attempts = 2;
    let intruder = relay::Relay::start(cfg, Arc::new(gateway::network::HubHandler))
        .await
        .unwrap();
    let q = question(&nj.files, married(), &[]);
    let req = request(
        &nj.files,
        "nanjing.centre",
        "nanjing.civil-affairs",
        &q,
        &resident(61),
    );
    let err = intruder
        .request(
            "nanjing.gateway",
            "match",
            serde_json::to_vec(&req).unwrap(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), "relay.unreachable", "{err}");
    let nj_relay = nj.run().state.relay.get().unwrap().clone();
    assert!(
        nj_relay
            .stats()
            .refused_connections
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1
    );
    // Garbage on the gateway's libp2p port.
    let port: u16 = addrs["nanjing.gateway"]
        .rsplit('/')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    for _ in 0..5 {
        use std::io::Write;
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let _ = s.write_all(b"\x13/multistream/1.0.0\n\xff\xff\xff\xff garbage garbage");
    }
    // The others keep working: a match through the hub still answers and verifies.
    let req = request(
        &nj.files,
        "nanjing.centre",
        "hefei.civil-affairs",
        &q,
        &resident(61),
    );
    let reply = ask(nj, &req).await.unwrap();
    assert!(reply.verified);
    assert_eq!(
        open(&nj.files, &reply, &req, &hpke_secret_key("nanjing.centre")).verdict,
        Verdict::Holds
    );
}
