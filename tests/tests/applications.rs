//! One-stop applications across three cities over real sockets: the
//! second-hand house transfer taken in Shanghai, for a flat in Nanjing, with
//! the buyer's marriage asked of Hefei through the Anhui hub; the utilities and
//! the real-estate bureau of Nanjing pull their requests, close them with
//! signed receipts, and the application completes. A buyer with two homes is
//! rejected and nothing is ordered.

use std::collections::BTreeMap;
use std::time::Duration;

use gateway::api::applications::{ApplicationView, ReceiptResult};
use gateway::client::{Client, open_delivery, sign_publication, sign_receipt};
use gateway::inbox::InboxItem;
use gateway::records::RecordInput;
use gateway::testkit::{
    CityFiles, Running, city_files, key, relay_section, resident, start, start_hub, subject_key,
};
use regions::application::{Phase, ServiceState};
use regions::evidence::{ApplicationPackage, verify_package};
use regions::test_keys::hpke_secret_key;

const CERT: &str = "苏(2021)南京市不动产权第0012345号";

struct City {
    files: CityFiles,
    run: Running,
}

impl City {
    fn client(&self, member: &str) -> Client {
        gateway::testkit::client(&self.run, &self.files, member)
    }
    fn chain(&self) -> String {
        self.files
            .registry
            .city(&self.files.city)
            .unwrap()
            .chain
            .chain_id
            .clone()
    }
}

async fn region() -> (BTreeMap<&'static str, City>, relay::Relay) {
    let addrs: BTreeMap<String, String> = [
        "nanjing.gateway",
        "shanghai.gateway",
        "hefei.gateway",
        "anhui-hub",
    ]
    .into_iter()
    .map(|g| (g.to_string(), gateway::testkit::free_multiaddr()))
    .collect();
    let mut cities = BTreeMap::new();
    for c in ["nanjing", "shanghai", "hefei"] {
        let extra = format!(
            "{}\n[applications]\nevidence_deadline_ms = 8000\nservice_deadline_ms = 2000\n",
            relay_section(&format!("{c}.gateway"), &addrs)
        );
        let files = city_files(c, &extra);
        let run = start(&files).await;
        cities.insert(c, City { files, run });
    }
    let hub = start_hub(&cities["nanjing"].files.registry, "anhui-hub", &addrs).await;
    (cities, hub)
}

async fn publish(city: &City, dept: &str, record_type: &str, id: &str, fields: serde_json::Value) {
    let input = RecordInput {
        record_type: record_type.into(),
        record_id: id.into(),
        version: 1,
        fields: fields.as_object().unwrap().clone(),
        issued_ms: 1_700_000_000_000,
    };
    let req = sign_publication(
        &city.files.registry,
        &city.chain(),
        dept,
        &key(dept),
        &subject_key(&city.files.city),
        input,
        [id.len() as u8; 32],
    )
    .unwrap();
    let (status, _): (u16, serde_json::Value) =
        city.client(dept).post("/v1/records", &req).await.unwrap();
    assert_eq!(status, 201, "{record_type} {id}");
}

fn title(cert: &str, owner: &str, address: &str) -> serde_json::Value {
    serde_json::json!({
        "certificate_number": cert, "owner_id": owner, "owner_share_percent": 100,
        "city": "nanjing", "district": "Xuanwu", "address": address, "area_m2": 90,
        "use": "residential", "registration_date": "2021-03-01",
        "mortgaged": false, "seized": false,
    })
}

async fn records(nj: &City, hf: &City, seller: &str, buyer: &str, buyer_homes: usize) {
    publish(
        nj,
        "nanjing.real-estate",
        "real-estate-title",
        &format!("T-{seller}"),
        title(CERT, seller, "1 Zhongshan Road"),
    )
    .await;
    for i in 0..buyer_homes {
        publish(
            nj,
            "nanjing.real-estate",
            "real-estate-title",
            &format!("T-{buyer}-{i}"),
            title(&format!("C-{buyer}-{i}"), buyer, "elsewhere"),
        )
        .await;
    }
    publish(nj, "nanjing.hr-social-security", "social-insurance", &format!("SI-{buyer}"), serde_json::json!({
        "insured_id": buyer, "city": "nanjing", "months_paid": 72, "status": "active", "last_paid_month": "2026-10-01",
    })).await;
    publish(nj, "nanjing.tax", "tax-clearance", &format!("TX-{buyer}"), serde_json::json!({
        "certificate_number": format!("TX-{buyer}"), "taxpayer_id": buyer, "tax_type": "deed", "period": "2026",
        "amount_fen": 1_500_000, "paid_date": "2026-11-01", "property_certificate": CERT,
    })).await;
    publish(hf, "hefei.civil-affairs", "marriage", &format!("M-{buyer}"), serde_json::json!({
        "certificate_number": format!("M-{buyer}"), "party_a_id": buyer, "party_b_id": resident(999),
        "status": "married", "registration_date": "2018-05-20", "registering_office": "Luyang District",
    })).await;
}

fn params(seller: &str, buyer: &str) -> serde_json::Value {
    serde_json::json!({
        "property_city": "nanjing", "certificate_number": CERT, "seller_id": seller,
        "buyer_id": buyer, "buyer_city": "hefei", "buyer_name": "Li Lei", "buyer_phone": "13800000000",
        "gas_account": "G-778", "water_account": "W-778", "electricity_account": "E-778",
    })
}

async fn submit(sh: &City, reference: &str, p: serde_json::Value) -> ApplicationView {
    let (status, v): (u16, ApplicationView) = sh
        .client("shanghai.centre")
        .post(
            "/v1/applications",
            &serde_json::json!({ "bundle": "house-transfer", "reference": reference, "params": p }),
        )
        .await
        .unwrap();
    assert!(status == 201 || status == 200);
    v
}

async fn wait_for(
    sh: &City,
    id: &proofs::Hash,
    done: impl Fn(&ApplicationView) -> bool,
) -> ApplicationView {
    let c = sh.client("shanghai.centre");
    for _ in 0..300 {
        let v: ApplicationView = c.get(&format!("/v1/applications/{id}")).await.unwrap();
        if done(&v) {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let v: ApplicationView = c.get(&format!("/v1/applications/{id}")).await.unwrap();
    panic!("application did not get there: {:#?}", v.application);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn house_transfer_across_three_cities_with_utilities() {
    let (cities, _hub) = region().await;
    let (nj, sh, hf) = (&cities["nanjing"], &cities["shanghai"], &cities["hefei"]);
    let (seller, buyer) = (resident(100), resident(101));
    records(nj, hf, &seller, &buyer, 1).await;

    let v = submit(sh, "SH-2026-0001", params(&seller, &buyer)).await;
    assert!(v.created);
    // The same reference again: the same application, not a second one.
    let again = submit(sh, "SH-2026-0001", params(&seller, &buyer)).await;
    assert_eq!((again.id(), again.created), (v.id(), false));

    let v = wait_for(sh, &v.id(), |v| v.application.phase != Phase::Matching).await;
    assert_eq!(
        v.application.phase,
        Phase::Dispatching,
        "{:#?}",
        v.application
    );

    // Nanjing's utilities and real-estate bureau each find one request.
    let mut receipts = 0;
    for (member, service) in [
        ("nanjing.gas", "gas-transfer"),
        ("nanjing.water", "water-transfer"),
        ("nanjing.electricity", "electricity-transfer"),
        ("nanjing.real-estate", "title-transfer"),
    ] {
        let c = nj.client(member);
        let mut items: Vec<InboxItem> = Vec::new();
        for _ in 0..100 {
            items = c.get("/v1/inbox").await.unwrap();
            if !items.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(items.len(), 1, "{member}");
        let d = &items[0].delivery;
        assert_eq!(d.service, service);
        let fields = open_delivery(d, &hpke_secret_key(member)).unwrap();
        if member != "nanjing.real-estate" {
            assert_eq!(
                fields["address"], "1 Zhongshan Road",
                "disclosed by the seller's title"
            );
            assert_eq!(fields["holder_name"], "Li Lei");
        }
        // Another member cannot open it.
        assert!(open_delivery(d, &hpke_secret_key("nanjing.tax")).is_err());
        let r = sign_receipt(
            &nj.chain(),
            member,
            &key(member),
            d,
            true,
            "",
            1_764_000_000_000,
        );
        let (status, res): (u16, ReceiptResult) = c.post("/v1/inbox/receipt", &r).await.unwrap();
        assert_eq!((status, res.outcome.as_str()), (201, "written"));
        // Closing it again returns the same receipt; nothing is processed twice.
        let (status, res2): (u16, ReceiptResult) = c.post("/v1/inbox/receipt", &r).await.unwrap();
        assert_eq!((status, res2.outcome.as_str()), (200, "duplicate"));
        assert_eq!(res2.bundle, res.bundle);
        let left: Vec<InboxItem> = c.get("/v1/inbox").await.unwrap();
        assert!(left.is_empty());
        receipts += 1;
    }
    assert_eq!(receipts, 4);
    let v = wait_for(sh, &v.id(), |v| v.application.phase.is_final()).await;
    assert_eq!(
        v.application.phase,
        Phase::Completed,
        "{:#?}",
        v.application
    );
    assert!(
        v.application
            .services
            .values()
            .all(|s| matches!(s, ServiceState::Receipted { accepted: true, .. }))
    );
    // The evidence came from two cities, one of them through the hub, and all
    // of it is reported with the decision.
    let kept = gateway::applications::kept_evidence(&sh.run.state, &v.id());
    assert_eq!(kept.len(), 6, "{:?}", kept.keys());
    assert_eq!(
        kept["buyer-marital"].answer.access.header.header.chain_id,
        "hefei-egov"
    );
    assert_eq!(
        kept["seller-title"].answer.access.header.header.chain_id,
        "nanjing-egov"
    );
    assert_eq!(
        gateway::applications::kept_receipts(&sh.run.state, &v.id()).len(),
        4
    );

    // The evidence package verifies offline with the registry alone…
    let pkg: ApplicationPackage = sh
        .client("shanghai.centre")
        .get(&format!("/v1/applications/{}/evidence", v.id()))
        .await
        .unwrap();
    let registry = &sh.files.registry;
    let roots = registry.trust_roots(sh.files.registry_hash).unwrap();
    let now = 1_800_000_000_000;
    let report = verify_package(&pkg, registry, &roots, now);
    assert!(report.ok(), "{report}");
    if let Some(out) = std::env::var_os("TONGBAN_WRITE_PACKAGE") {
        std::fs::write(out, serde_json::to_vec_pretty(&pkg).unwrap()).unwrap();
    }
    assert_eq!(pkg.evidence.len(), 6);
    assert_eq!(pkg.receipts.len(), 4);
    // …but not against another region's registry…
    let other = proofs::TrustRoots {
        registry_hash: proofs::Hash([7; 32]),
        ..roots.clone()
    };
    assert_eq!(
        verify_package(&pkg, registry, &other, now).first_failure_code(),
        Some("package.registry_mismatch")
    );
    // …nor with valid proofs taken from another application.
    let v2 = submit(sh, "SH-2026-0003", params(&seller, &buyer)).await;
    let v2 = wait_for(sh, &v2.id(), |v| v.application.phase != Phase::Matching).await;
    assert_eq!(v2.application.phase, Phase::Dispatching);
    let pkg2: ApplicationPackage = sh
        .client("shanghai.centre")
        .get(&format!("/v1/applications/{}/evidence", v2.id()))
        .await
        .unwrap();
    assert!(verify_package(&pkg2, registry, &roots, now).ok());
    let mut mixed = pkg.clone();
    let i = mixed
        .evidence
        .iter()
        .position(|e| e.id == "deed-tax")
        .unwrap();
    mixed.evidence[i] = pkg2
        .evidence
        .iter()
        .find(|e| e.id == "deed-tax")
        .unwrap()
        .clone();
    let rep = verify_package(&mixed, registry, &roots, now);
    assert_eq!(
        rep.first_failure_code(),
        Some("evidence.foreign_request"),
        "{rep}"
    );

    // Any single change to any value in the package is caught.
    let json = serde_json::to_value(&pkg).unwrap();
    let mut leaves = Vec::new();
    collect_leaves(&json, String::new(), &mut leaves);
    assert!(leaves.len() > 100, "{}", leaves.len());
    for path in &leaves {
        let mut changed = json.clone();
        mutate(changed.pointer_mut(path).unwrap());
        let caught = match serde_json::from_value::<ApplicationPackage>(changed) {
            Err(_) => true,
            Ok(p) => !verify_package(&p, registry, &roots, now).ok(),
        };
        assert!(caught, "a change at {path} went unnoticed");
    }
}

fn collect_leaves(v: &serde_json::Value, path: String, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, x) in m {
                let k = k.replace('~', "~0").replace('/', "~1");
                collect_leaves(x, format!("{path}/{k}"), out);
            }
        }
        serde_json::Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                collect_leaves(x, format!("{path}/{i}"), out);
            }
        }
        _ => out.push(path),
    }
}

fn mutate(v: &mut serde_json::Value) {
    *v = match v.take() {
        serde_json::Value::String(s) => {
            // Change one character (a hex digit stays a hex digit).
            let mut c: Vec<char> = s.chars().collect();
            if c.is_empty() {
                serde_json::Value::String("x".into())
            } else {
                let i = c.len() / 2;
                c[i] = match c[i] {
                    '0' => '1',
                    'a' => 'b',
                    x if x.is_ascii_digit() => '0',
                    x if x.is_ascii_hexdigit() => 'a',
                    _ => '0',
                };
                serde_json::Value::String(c.into_iter().collect())
            }
        }
        serde_json::Value::Number(n) => serde_json::json!(n.as_u64().map_or(1, |x| x ^ 1)),
        serde_json::Value::Bool(b) => serde_json::Value::Bool(!b),
        serde_json::Value::Null => serde_json::json!(1),
        other => other,
    };
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_buyer_with_two_homes_is_rejected_and_nothing_is_ordered() {
    let (cities, _hub) = region().await;
    let (nj, sh, hf) = (&cities["nanjing"], &cities["shanghai"], &cities["hefei"]);
    let (seller, buyer) = (resident(200), resident(201));
    records(nj, hf, &seller, &buyer, 2).await;
    let v = submit(sh, "SH-2026-0002", params(&seller, &buyer)).await;
    let v = wait_for(sh, &v.id(), |v| v.application.phase.is_final()).await;
    assert_eq!(v.application.phase, Phase::Rejected, "{:#?}", v.application);
    assert!(
        v.application
            .reason
            .as_deref()
            .unwrap()
            .contains("buyer-homes")
    );
    assert!(v.application.services.is_empty());
    tokio::time::sleep(Duration::from_millis(300)).await;
    for member in [
        "nanjing.gas",
        "nanjing.water",
        "nanjing.electricity",
        "nanjing.real-estate",
    ] {
        let items: Vec<InboxItem> = nj.client(member).get("/v1/inbox").await.unwrap();
        assert!(
            items.is_empty(),
            "{member} got a request for a rejected application"
        );
    }
}

/// Acknowledges every open request of these members until the application is final.
async fn serve_inboxes(city: &City, members: &[&str]) {
    for m in members {
        let c = city.client(m);
        let items: Vec<InboxItem> = c.get("/v1/inbox").await.unwrap();
        for i in items {
            let r = sign_receipt(
                &city.chain(),
                m,
                &key(m),
                &i.delivery,
                true,
                "",
                1_764_000_000_000,
            );
            let (_, _res): (u16, ReceiptResult) = c.post("/v1/inbox/receipt", &r).await.unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_newborn_born_in_shanghai_registered_in_nanjing() {
    let (cities, _hub) = region().await;
    let (nj, sh) = (&cities["nanjing"], &cities["shanghai"]);
    let (mother, father) = (resident(300), resident(301));
    publish(
        sh,
        "shanghai.health",
        "birth-certificate",
        "BC-2026-1",
        serde_json::json!({
            "certificate_number": "BC-2026-1", "newborn_name": "Wang Xiaoming", "sex": "M",
            "birth_date": "2026-11-20", "birth_place": "Shanghai First Maternity Hospital",
            "mother_id": mother, "father_id": father,
        }),
    )
    .await;
    publish(nj, "nanjing.civil-affairs", "marriage", "M-300", serde_json::json!({
        "certificate_number": "M-300", "party_a_id": father, "party_b_id": mother,
        "status": "married", "registration_date": "2020-10-01", "registering_office": "Gulou District",
    }))
    .await;
    publish(
        nj,
        "nanjing.public-security",
        "household-registration",
        "H-300",
        serde_json::json!({
            "id_number": mother, "household_number": "HH-320106-777", "head_id": father,
            "relation_to_head": "spouse", "hukou_city": "nanjing", "address": "9 Beijing West Road",
            "registered_date": "2020-11-01",
        }),
    )
    .await;
    let (status, v): (u16, ApplicationView) = nj
        .client("nanjing.centre")
        .post(
            "/v1/applications",
            &serde_json::json!({ "bundle": "newborn", "reference": "NB-1", "params": {
                "birth_city": "shanghai", "family_city": "nanjing", "birth_certificate_number": "BC-2026-1",
                "newborn_name": "Wang Xiaoming", "mother_id": mother, "father_id": father,
            }}),
        )
        .await
        .unwrap();
    assert_eq!(status, 201);
    let c = nj.client("nanjing.centre");
    let mut phase = Phase::Matching;
    for _ in 0..300 {
        let now: ApplicationView = c
            .get(&format!("/v1/applications/{}", v.id()))
            .await
            .unwrap();
        phase = now.application.phase;
        if phase.is_final() {
            break;
        }
        if phase == Phase::Dispatching {
            serve_inboxes(
                nj,
                &["nanjing.public-security", "nanjing.hr-social-security"],
            )
            .await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(phase, Phase::Completed);
    let pkg: ApplicationPackage = c
        .get(&format!("/v1/applications/{}/evidence", v.id()))
        .await
        .unwrap();
    let roots = nj
        .files
        .registry
        .trust_roots(nj.files.registry_hash)
        .unwrap();
    let report = verify_package(&pkg, &nj.files.registry, &roots, 1_800_000_000_000);
    assert!(report.ok(), "{report}");
    // The birth was proven on Shanghai's chain, the household in Nanjing's.
    let birth = pkg.evidence.iter().find(|e| e.id == "birth").unwrap();
    assert_eq!(birth.access.header.header.chain_id, "shanghai-egov");
}
