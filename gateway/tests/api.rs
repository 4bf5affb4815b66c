//! The gateway over a real socket: publish, supersede, revoke, read back, fetch
//! proofs and verify them with `proofs` alone; every authentication refusal;
//! every bad-input refusal, with nothing half-written.

mod common;

use common::*;
use gateway::api::records::{BatchResult, DisclosureView, RecordView, WriteResult};
use gateway::client::{ClientError, sign_publication};
use gateway::records::RevokeRequest;
use proofs::bundle::{BoundDisclosure, EvidencePackage, PACKAGE_FORMAT};
use reqwest::StatusCode;

const DEPT: &str = "nanjing.civil-affairs";

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn publication(
    files: &CityFiles,
    input: gateway::records::RecordInput,
    secret: u8,
) -> gateway::records::PublishRequest {
    let chain = files
        .registry
        .city("nanjing")
        .unwrap()
        .chain
        .chain_id
        .clone();
    sign_publication(
        &files.registry,
        &chain,
        DEPT,
        &key(DEPT),
        &subject_key("nanjing"),
        input,
        [secret; 32],
    )
    .unwrap()
}

fn verify_package(files: &CityFiles, v: DisclosureView) -> proofs::Report {
    let roots = files.registry.trust_roots(files.registry_hash).unwrap();
    let pkg = EvidencePackage {
        format: PACKAGE_FORMAT,
        registry_hash: files.registry_hash,
        bundles: vec![v.bundle],
        disclosures: vec![BoundDisclosure {
            bundle: 0,
            field: v.disclosure,
        }],
    };
    proofs::verify_package(&pkg, &roots, now())
}

#[tokio::test]
async fn publish_supersede_revoke_read_back_and_prove() {
    let files = city_files("nanjing", "");
    let gw = start(&files).await;
    let c = client(&gw, &files, DEPT);

    // Publish v1; the identical resend is a duplicate, not a second record.
    let p1 = publication(
        &files,
        marriage("J320102-2019-000001", 1, 1, 2, "married"),
        1,
    );
    let (status, w): (u16, WriteResult) = c.post("/v1/records", &p1).await.unwrap();
    assert_eq!((status, w.outcome.as_str()), (201, "written"));
    let loc1 = w.location.unwrap();
    let (status, w): (u16, WriteResult) = c.post("/v1/records", &p1).await.unwrap();
    assert_eq!(
        (status, w.outcome.as_str(), w.location.unwrap()),
        (200, "duplicate", loc1)
    );

    // Supersede with v2 (divorced).
    let p2 = publication(
        &files,
        marriage("J320102-2019-000001", 2, 1, 2, "divorced"),
        2,
    );
    let (status, _): (u16, WriteResult) = c.post("/v1/records", &p2).await.unwrap();
    assert_eq!(status, 201);
    // A gap in versions is refused with nothing written.
    let p4 = publication(
        &files,
        marriage("J320102-2019-000001", 4, 1, 2, "married"),
        4,
    );
    match c.post::<_, WriteResult>("/v1/records", &p4).await {
        Err(ClientError::Api {
            status: 409, code, ..
        }) => assert_eq!(code, "record.version_not_next"),
        other => panic!("{other:?}"),
    }
    // Same version, another transaction (here: another issue time): a conflict, not a duplicate.
    let mut other = marriage("J320102-2019-000001", 1, 1, 2, "married");
    other.issued_ms += 1;
    match c
        .post::<_, WriteResult>("/v1/records", &publication(&files, other, 1))
        .await
    {
        Err(ClientError::Api {
            status: 409, code, ..
        }) => assert_eq!(code, "record.version_exists"),
        other => panic!("{other:?}"),
    }

    // Read back: the owner sees values and subjects; v1 superseded, v2 current.
    let v: RecordView = c
        .get("/v1/records/marriage/J320102-2019-000001")
        .await
        .unwrap();
    assert_eq!(v.current, Some(2));
    assert_eq!(
        v.versions
            .iter()
            .map(|x| x.status.as_str())
            .collect::<Vec<_>>(),
        ["superseded", "current"]
    );
    assert_eq!(
        v.versions[1].fields["status"],
        proofs::Value::Text("divorced".into())
    );
    assert_eq!(v.versions[1].subjects[0].expose(), resident(1));

    // Disclose one field of each version and verify it with proofs only.
    for (ver, want) in [(1, "married"), (2, "divorced")] {
        let d: DisclosureView = c
            .get(&format!(
                "/v1/records/marriage/J320102-2019-000001/versions/{ver}/fields/status"
            ))
            .await
            .unwrap();
        assert_eq!(d.disclosure.value, proofs::Value::Text(want.into()));
        let report = verify_package(&files, d);
        assert!(report.ok(), "{report}");
    }

    // The proof of v1's transaction, fetched by leaf hash, verifies; and holds no identifier.
    let b: proofs::ProofBundle = c.get(&format!("/v1/proofs/{}", loc1.leaf)).await.unwrap();
    let text = serde_json::to_string(&b).unwrap();
    assert!(!text.contains(&resident(1)) && !text.contains(&hex::encode(resident(1))));
    let roots = files.registry.trust_roots(files.registry_hash).unwrap();
    let mut r = proofs::Report::new();
    proofs::verify_bundle(&b, &roots, now(), "b", &mut r);
    assert!(r.ok(), "{r}");

    // Revoke v2: a new transaction; the record has no current version; history stays.
    let chain = files
        .registry
        .city("nanjing")
        .unwrap()
        .chain
        .chain_id
        .clone();
    let mut rv = RevokeRequest {
        record_type: "marriage".into(),
        record_id: "J320102-2019-000001".into(),
        version: 2,
        reason: proofs::tx::RevokeReason::Revoked,
        at_ms: now(),
        signature: String::new(),
    };
    let (_, _, sb) = gateway::records::revocation(&files.registry, &chain, DEPT, &rv).unwrap();
    rv.signature = hex::encode(key(DEPT).sign(&sb).0);
    let (status, w): (u16, WriteResult) = c.post("/v1/records/revoke", &rv).await.unwrap();
    assert_eq!(status, 201);
    let v: RecordView = c
        .get("/v1/records/marriage/J320102-2019-000001")
        .await
        .unwrap();
    assert_eq!(v.current, None);
    assert_eq!(v.versions.len(), 2);
    assert!(v.versions[1].revocation.is_some());
    let b: proofs::ProofBundle = c
        .get(&format!("/v1/proofs/{}", w.location.unwrap().leaf))
        .await
        .unwrap();
    let mut r = proofs::Report::new();
    assert!(
        proofs::verify_bundle(&b, &roots, now(), "b", &mut r).is_some(),
        "{r}"
    );

    // Batch of individually signed records.
    let batch = serde_json::json!({"records": (10..15).map(|i| publication(&files, marriage(&format!("J320102-2020-{i:06}"), 1, i, i + 100, "married"), i as u8)).collect::<Vec<_>>()});
    let (_, res): (u16, BatchResult) = c.post("/v1/records/batch", &batch).await.unwrap();
    assert!(
        res.results.iter().all(|w| w.outcome == "written"),
        "{res:?}"
    );

    // Import: one seal signature for all; the bundle of a member carries its seal and verifies.
    let recs: Vec<_> = (20..30)
        .map(|i| {
            (
                marriage(&format!("J320102-2021-{i:06}"), 1, i, i + 100, "married"),
                [i as u8; 32],
            )
        })
        .collect();
    let imp = gateway::client::sign_import(
        &files.registry,
        &chain,
        DEPT,
        &key(DEPT),
        &subject_key("nanjing"),
        recs,
    )
    .unwrap();
    let (_, res): (u16, BatchResult) = c.post("/v1/records/import", &imp).await.unwrap();
    assert!(
        res.results.iter().all(|w| w.outcome == "written"),
        "{res:?}"
    );
    let (_, again): (u16, BatchResult) = c.post("/v1/records/import", &imp).await.unwrap();
    assert!(
        again.results.iter().all(|w| w.outcome == "duplicate"),
        "{again:?}"
    );
    let d: DisclosureView = c
        .get("/v1/records/marriage/J320102-2021-000025/versions/1/fields/status")
        .await
        .unwrap();
    assert!(d.bundle.batch.is_some());
    let report = verify_package(&files, d);
    assert!(report.ok(), "{report}");

    gw.stop().await;
}

async fn raw(
    url: &str,
    method: reqwest::Method,
    path: &str,
    headers: &[(&str, String)],
    body: Vec<u8>,
) -> (StatusCode, serde_json::Value) {
    let mut req = reqwest::Client::new()
        .request(method, format!("{url}{path}"))
        .body(body);
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    (status, resp.json().await.unwrap_or_default())
}

#[allow(clippy::too_many_arguments)]
fn signed(
    member: &str,
    signer: &str,
    audience: &str,
    method: &str,
    path: &str,
    ts: u64,
    nonce: &str,
    body: &[u8],
) -> Vec<(&'static str, String)> {
    gateway::auth::sign_request(
        &key(signer),
        member,
        audience,
        method,
        path,
        ts,
        nonce,
        body,
    )
    .to_vec()
}

#[tokio::test]
async fn every_authentication_refusal() {
    let files = city_files("nanjing", "");
    let gw = start(&files).await;
    let path = "/v1/records/marriage/x";
    let get = reqwest::Method::GET;
    let code = |v: &serde_json::Value| v["error"]["code"].as_str().unwrap_or("").to_owned();

    // Unsigned.
    let (s, v) = raw(&gw.url, get.clone(), path, &[], vec![]).await;
    assert_eq!(
        (s, code(&v).as_str()),
        (StatusCode::UNAUTHORIZED, "auth.missing")
    );
    // Expired, and from the future.
    for ts in [now() - 60_000, now() + 60_000] {
        let h = signed(
            DEPT,
            DEPT,
            "nanjing.gateway",
            "GET",
            path,
            ts,
            &gateway::auth::fresh_nonce(),
            b"",
        );
        let (s, v) = raw(&gw.url, get.clone(), path, &h, vec![]).await;
        assert_eq!(
            (s, code(&v).as_str()),
            (StatusCode::UNAUTHORIZED, "auth.expired")
        );
    }
    // Replayed: the same signed request twice.
    let h = signed(
        DEPT,
        DEPT,
        "nanjing.gateway",
        "GET",
        path,
        now(),
        &gateway::auth::fresh_nonce(),
        b"",
    );
    let (s, _) = raw(&gw.url, get.clone(), path, &h, vec![]).await;
    assert_eq!(
        s,
        StatusCode::NOT_FOUND,
        "the first one passes authentication"
    );
    let (s, v) = raw(&gw.url, get.clone(), path, &h, vec![]).await;
    assert_eq!(
        (s, code(&v).as_str()),
        (StatusCode::UNAUTHORIZED, "auth.replayed")
    );
    // Unknown member.
    let h = signed(
        "nanjing.nobody",
        DEPT,
        "nanjing.gateway",
        "GET",
        path,
        now(),
        &gateway::auth::fresh_nonce(),
        b"",
    );
    let (s, v) = raw(&gw.url, get.clone(), path, &h, vec![]).await;
    assert_eq!(
        (s, code(&v).as_str()),
        (StatusCode::UNAUTHORIZED, "auth.unknown_member")
    );
    // A known member's id with another key.
    let h = signed(
        DEPT,
        "nanjing.tax",
        "nanjing.gateway",
        "GET",
        path,
        now(),
        &gateway::auth::fresh_nonce(),
        b"",
    );
    let (s, v) = raw(&gw.url, get.clone(), path, &h, vec![]).await;
    assert_eq!(
        (s, code(&v).as_str()),
        (StatusCode::UNAUTHORIZED, "auth.bad_signature")
    );
    // Signed for another gateway.
    let h = signed(
        DEPT,
        DEPT,
        "hangzhou.gateway",
        "GET",
        path,
        now(),
        &gateway::auth::fresh_nonce(),
        b"",
    );
    let (s, v) = raw(&gw.url, get.clone(), path, &h, vec![]).await;
    assert_eq!(
        (s, code(&v).as_str()),
        (StatusCode::UNAUTHORIZED, "auth.bad_signature")
    );
    // Malformed headers.
    let mut h = signed(
        DEPT,
        DEPT,
        "nanjing.gateway",
        "GET",
        path,
        now(),
        &gateway::auth::fresh_nonce(),
        b"",
    );
    h[1].1 = "yesterday".into();
    let (s, v) = raw(&gw.url, get.clone(), path, &h, vec![]).await;
    assert_eq!(
        (s, code(&v).as_str()),
        (StatusCode::UNAUTHORIZED, "auth.malformed")
    );

    // Out of role: a utility may not publish records; a department may not read another's record type.
    let u = client(&gw, &files, "nanjing.gas");
    let p = publication(&files, marriage("J1", 1, 1, 2, "married"), 1);
    match u.post::<_, WriteResult>("/v1/records", &p).await {
        Err(ClientError::Api {
            status: 403, code, ..
        }) => assert_eq!(code, "auth.forbidden"),
        other => panic!("{other:?}"),
    }
    let tax = client(&gw, &files, "nanjing.tax");
    match tax.get::<RecordView>("/v1/records/marriage/J1").await {
        Err(ClientError::Api {
            status: 403, code, ..
        }) => assert_eq!(code, "record.not_owner"),
        other => panic!("{other:?}"),
    }
    // A department publishing a record type it does not own.
    let chain = files
        .registry
        .city("nanjing")
        .unwrap()
        .chain
        .chain_id
        .clone();
    let input = marriage("J2", 1, 1, 2, "married");
    let prepared = gateway::records::prepare(
        &files.registry,
        &chain,
        DEPT,
        &input,
        [1; 32],
        &subject_key("nanjing"),
    )
    .unwrap();
    let forged = gateway::records::PublishRequest::new(
        input,
        &[1u8; 32],
        &key("nanjing.tax").sign(&prepared.signing_bytes),
    );
    match tax.post::<_, WriteResult>("/v1/records", &forged).await {
        Err(ClientError::Api {
            status: 403,
            code,
            field,
            ..
        }) => assert_eq!(
            (code.as_str(), field.as_deref()),
            ("record.not_owner", Some("record_type"))
        ),
        other => panic!("{other:?}"),
    }
    // Another city's department (it owns `marriage` too) may not write on Nanjing's chain.
    let sh = client(&gw, &files, "shanghai.civil-affairs");
    let p = publication(&files, marriage("J3", 1, 1, 2, "married"), 1);
    match sh.post::<_, WriteResult>("/v1/records", &p).await {
        Err(ClientError::Api {
            status: 403, code, ..
        }) => assert_eq!(code, "auth.other_city"),
        other => panic!("{other:?}"),
    }
    // Nothing was written by any of it.
    assert_eq!(gw.state.ledger.head().height, 0);
    gw.stop().await;
}

#[tokio::test]
async fn every_bad_input_refusal_writes_nothing() {
    let files = city_files("nanjing", "[http]\nmax_body_bytes = 65536\n");
    let gw = start(&files).await;
    let c = client(&gw, &files, DEPT);
    let expect = |r: Result<(u16, WriteResult), ClientError>,
                  status: u16,
                  code: &str,
                  field: Option<&str>| match r {
        Err(ClientError::Api {
            status: s,
            code: c,
            field: f,
            ..
        }) => {
            assert_eq!((s, c.as_str(), f.as_deref()), (status, code, field));
        }
        other => panic!("expected {status} {code}, got {other:?}"),
    };

    // Oversized: refused before it is read in full (Content-Length says so).
    let big = vec![b'x'; 1 << 20];
    let h = signed(
        DEPT,
        DEPT,
        "nanjing.gateway",
        "POST",
        "/v1/records",
        now(),
        &gateway::auth::fresh_nonce(),
        &big,
    );
    let (s, v) = raw(&gw.url, reqwest::Method::POST, "/v1/records", &h, big).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, Some("request.too_large"))
    );

    // Malformed JSON, unknown field, wrong type.
    let (s, v) = {
        let body = b"{\"record_type\": ".to_vec();
        let h = signed(
            DEPT,
            DEPT,
            "nanjing.gateway",
            "POST",
            "/v1/records",
            now(),
            &gateway::auth::fresh_nonce(),
            &body,
        );
        raw(&gw.url, reqwest::Method::POST, "/v1/records", &h, body).await
    };
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("request.malformed_json"))
    );
    let mut good =
        serde_json::to_value(publication(&files, marriage("J9", 1, 1, 2, "married"), 9)).unwrap();
    let mut extra = good.clone();
    extra["surprise"] = serde_json::json!(1);
    expect(
        c.post("/v1/records", &extra).await,
        422,
        "request.invalid",
        Some("surprise"),
    );
    let mut wrong = good.clone();
    wrong["version"] = serde_json::json!("one");
    expect(
        c.post("/v1/records", &wrong).await,
        422,
        "request.invalid",
        Some("version"),
    );

    // Record-level: unknown record type, unknown field, wrong field type, bad date, bad signature.
    let mut t = good.clone();
    t["record_type"] = serde_json::json!("spaceship-licence");
    expect(
        c.post("/v1/records", &t).await,
        422,
        "record.unknown_type",
        Some("record_type"),
    );
    let mut f = good.clone();
    f["fields"]["favourite_colour"] = serde_json::json!("red");
    expect(
        c.post("/v1/records", &f).await,
        422,
        "record.invalid_field",
        Some("fields.favourite_colour"),
    );
    let mut f = good.clone();
    f["fields"]["status"] = serde_json::json!(true);
    expect(
        c.post("/v1/records", &f).await,
        422,
        "record.invalid_field",
        Some("fields.status"),
    );
    let mut f = good.clone();
    f["fields"]["registration_date"] = serde_json::json!("2019-02-30");
    expect(
        c.post("/v1/records", &f).await,
        422,
        "record.invalid_field",
        Some("fields.registration_date"),
    );
    let mut f = good.clone();
    f["fields"]["party_a_id"] = serde_json::json!("");
    expect(
        c.post("/v1/records", &f).await,
        422,
        "record.invalid_field",
        Some("fields.party_a_id"),
    );
    // A mistyped identity number (wrong check digit) is refused, not taken for a name.
    let mut f = good.clone();
    let mut id = resident(1).into_bytes();
    id[17] = if id[17] == b'0' { b'1' } else { b'0' };
    f["fields"]["party_a_id"] = serde_json::json!(String::from_utf8(id).unwrap());
    expect(
        c.post("/v1/records", &f).await,
        422,
        "record.invalid_field",
        Some("fields.party_a_id"),
    );
    // Values differ from what was signed.
    good["fields"]["status"] = serde_json::json!("divorced");
    expect(
        c.post("/v1/records", &good).await,
        400,
        "record.bad_signature",
        Some("signature"),
    );
    good["secret"] = serde_json::json!("00");
    expect(
        c.post("/v1/records", &good).await,
        422,
        "request.invalid",
        Some("secret"),
    );

    // A batch with one bad record writes none of them.
    let mut recs: Vec<serde_json::Value> = (0..3)
        .map(|i| {
            serde_json::to_value(publication(
                &files,
                marriage(&format!("B{i}"), 1, i, i + 9, "married"),
                3,
            ))
            .unwrap()
        })
        .collect();
    recs[2]["fields"]["status"] = serde_json::json!(7);
    match c
        .post::<_, BatchResult>("/v1/records/batch", &serde_json::json!({"records": recs}))
        .await
    {
        Err(ClientError::Api {
            status: 422, field, ..
        }) => assert_eq!(field.as_deref(), Some("records[2].fields.status")),
        other => panic!("{other:?}"),
    }

    // Unknown route and bad path parameters.
    let (s, v) = raw(&gw.url, reqwest::Method::GET, "/v2/nothing", &[], vec![]).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("route.not_found"))
    );
    let (s, v) = raw(
        &gw.url,
        reqwest::Method::GET,
        "/v1/chain/headers/minus-one",
        &[],
        vec![],
    )
    .await;
    assert_eq!(
        (s, v["error"]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("height"))
    );

    assert_eq!(gw.state.ledger.head().height, 0, "nothing half-written");
    gw.stop().await;
}

#[tokio::test]
async fn graceful_shutdown_keeps_what_was_acknowledged() {
    let files = city_files("nanjing", "");
    let gw = start(&files).await;
    let c = client(&gw, &files, DEPT);
    let p = publication(&files, marriage("S1", 1, 5, 6, "married"), 5);
    let (status, w): (u16, WriteResult) = c.post("/v1/records", &p).await.unwrap();
    assert_eq!(status, 201);
    gw.stop().await;
    let gw = start(&files).await;
    let c = client(&gw, &files, DEPT);
    let v: RecordView = c.get("/v1/records/marriage/S1").await.unwrap();
    assert_eq!(v.versions[0].location, w.location);
    // The public header route serves the certified header of that block.
    let h: proofs::header::CertifiedHeader = c
        .get_public(&format!("/v1/chain/headers/{}", w.location.unwrap().height))
        .await
        .unwrap();
    assert_eq!(h.header.height, w.location.unwrap().height);
    gw.stop().await;
}

#[tokio::test]
async fn a_path_parameter_that_does_not_decode_gets_the_json_error_naming_it() {
    let files = city_files("nanjing", "");
    let gw = start(&files).await;
    for (path, field) in [
        ("/v1/chain/headers/%FF", "height"),
        ("/v1/proofs/%C3%28", "leaf"),
    ] {
        let (s, v) = raw(&gw.url, reqwest::Method::GET, path, &[], Vec::new()).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{path}: {v}");
        assert_eq!(v["error"]["code"], "request.invalid", "{path}: {v}");
        assert_eq!(v["error"]["field"], field, "{path}: {v}");
    }
    gw.stop().await;
}

#[tokio::test]
async fn a_webhook_for_a_member_without_an_inbox_here_is_refused_at_start() {
    for (member, why) in [
        ("shanghai.gas", "not a utility or department of nanjing"),
        ("nanjing.centre", "not a utility or department of nanjing"),
        ("nobody", "not a utility or department of nanjing"),
    ] {
        let files = city_files(
            "nanjing",
            &format!("\n[webhooks]\n\"{member}\" = \"http://127.0.0.1:9/hook\"\n"),
        );
        let e = match serve_config(
            &files.config_path,
            "127.0.0.1:0",
            std::sync::Arc::new(gateway::clock::SystemClock),
        )
        .await
        {
            Ok(_) => panic!("{member}: started"),
            Err(e) => format!("{e:#}"),
        };
        assert!(e.contains(member) && e.contains(why), "{member}: {e}");
    }
}
