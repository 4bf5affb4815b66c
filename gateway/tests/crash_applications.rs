//! Crash test of applications on the real binary: `tongban serve` (Nanjing:
//! its service centre takes business-opening applications whose evidence and
//! recipients are all in Nanjing) is killed with SIGKILL at random moments
//! during fan-out and dispatch (20 times by default, `TONGBAN_CRASH_RUNS`),
//! while a centre submits applications and four recipients pull and close
//! their requests. After the last restart every acknowledged application
//! reaches `completed`, every service request was closed exactly once in
//! effect (no recipient ever had a receipt written twice), no receipt is lost,
//! and every evidence package verifies.

mod common;

use std::collections::HashMap;
use std::process::Child;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use gateway::api::applications::{ApplicationView, ReceiptResult};
use gateway::client::{Client, sign_publication, sign_receipt};
use gateway::inbox::InboxItem;
use gateway::records::RecordInput;
use proofs::Hash;
use regions::application::Phase;

const CENTRE: &str = "nanjing.centre";
const RECIPIENTS: [&str; 4] = [
    "nanjing.market-regulation",
    "nanjing.tax",
    "nanjing.hr-social-security",
    "nanjing.electricity",
];

fn spawn(files: &CityFiles) -> (Child, String) {
    spawn_serve(files, "error")
}

fn member(files: &CityFiles, url: &str, m: &str) -> Client {
    let gw = files.registry.city("nanjing").unwrap().gateway.id.clone();
    Client::new(url, m, key(m), &gw)
}

fn founder(k: u64) -> String {
    resident(70_000 + k)
}

/// Identity cards for founders 0..n, in batches.
async fn identities(files: &CityFiles, url: &str, n: u64) {
    let dept = "nanjing.public-security";
    let chain = files
        .registry
        .city("nanjing")
        .unwrap()
        .chain
        .chain_id
        .clone();
    let c = member(files, url, dept);
    let mut reqs = Vec::new();
    for k in 0..n {
        let input = RecordInput {
            record_type: "resident-identity".into(),
            record_id: format!("ID-{k}"),
            version: 1,
            fields: serde_json::json!({
                "id_number": founder(k), "name": format!("Founder {k}"), "sex": "F",
                "birth_date": "1990-01-01", "hukou_city": "nanjing", "valid_until": "2045-01-01",
            })
            .as_object()
            .unwrap()
            .clone(),
            issued_ms: 1_600_000_000_000,
        };
        let mut secret = [3u8; 32];
        secret[..8].copy_from_slice(&k.to_be_bytes());
        reqs.push(
            sign_publication(
                &files.registry,
                &chain,
                dept,
                &key(dept),
                &subject_key("nanjing"),
                input,
                secret,
            )
            .unwrap(),
        );
    }
    for chunk in reqs.chunks(500) {
        let (_, _): (u16, serde_json::Value) = c
            .post(
                "/v1/records/batch",
                &serde_json::json!({ "records": chunk }),
            )
            .await
            .unwrap();
    }
}

/// Submits applications `next..` until a call fails; records acknowledged ids.
async fn submitter(
    files: Arc<CityFiles>,
    url: String,
    next: Arc<Mutex<u64>>,
    acked: Arc<Mutex<Vec<Hash>>>,
) {
    let c = member(&files, &url, CENTRE);
    loop {
        let k = {
            let mut n = next.lock().unwrap();
            *n += 1;
            *n - 1
        };
        let body = serde_json::json!({
            "bundle": "business-opening",
            "reference": format!("CRASH-{k}"),
            "params": {
                "business_city": "nanjing", "founder_id": founder(k), "founder_city": "nanjing",
                "proposed_name": format!("Crash Test Trading {k} Ltd"), "premises_address": format!("{k} Hunan Road"),
                "registered_capital_yuan": 100000, "contact_phone": "13900000000",
            },
        });
        match c
            .post::<_, ApplicationView>("/v1/applications", &body)
            .await
        {
            Ok((_, v)) => acked.lock().unwrap().push(v.id()),
            Err(_) => {
                // Not acknowledged: resubmitted after the restart (same reference).
                *next.lock().unwrap() = k;
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A recipient's integration: pulls its inbox and closes each request; the
/// receipt's time is derived from the delivery id, so a resend after a lost
/// answer is the very same receipt.
async fn recipient(
    files: Arc<CityFiles>,
    url: String,
    m: &'static str,
    written: Arc<Mutex<HashMap<Hash, u32>>>,
    until_idle: bool,
) {
    let c = member(&files, &url, m);
    let chain = files
        .registry
        .city("nanjing")
        .unwrap()
        .chain
        .chain_id
        .clone();
    let mut idle = 0;
    loop {
        let Ok(items) = c.get::<Vec<InboxItem>>("/v1/inbox").await else {
            return;
        };
        if items.is_empty() {
            idle += 1;
            if until_idle && idle > 40 {
                return;
            }
        } else {
            idle = 0;
        }
        for i in items {
            let at = 1_764_000_000_000 + u64::from(i.delivery.id.0[0]);
            let r = sign_receipt(&chain, m, &key(m), &i.delivery, true, "", at);
            match c.post::<_, ReceiptResult>("/v1/inbox/receipt", &r).await {
                Ok((_, res)) if res.outcome == "written" => {
                    *written.lock().unwrap().entry(i.delivery.id).or_default() += 1;
                }
                Ok(_) => {}
                Err(_) => return,
            }
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// After the last restart: every acknowledged application reaches
/// `completed`; once the recipients are idle, no delivery ever had a second
/// receipt written; and every package (so every receipt) verifies offline.
/// Returns the receipts written, by delivery.
async fn all_completed_once(
    centre: &Client,
    acked: &[Hash],
    files: &CityFiles,
    workers: Vec<tokio::task::JoinHandle<()>>,
    written: &Arc<Mutex<HashMap<Hash, u32>>>,
) -> HashMap<Hash, u32> {
    for id in acked {
        let mut last = None;
        for _ in 0..600 {
            let v: ApplicationView = centre.get(&format!("/v1/applications/{id}")).await.unwrap();
            if v.application.phase.is_final() {
                last = Some(v);
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let v = last.unwrap_or_else(|| panic!("application {id} never reached a final state"));
        assert_eq!(
            v.application.phase,
            Phase::Completed,
            "{:#?}",
            v.application
        );
    }
    for w in workers {
        w.await.unwrap();
    }
    // At most once processed: no delivery ever had a second receipt written.
    let written = written.lock().unwrap().clone();
    assert!(written.values().all(|n| *n == 1), "{written:?}");
    // No receipt lost, every decision proven: the packages verify offline.
    let roots = files.registry.trust_roots(files.registry_hash).unwrap();
    for id in acked {
        let pkg: regions::evidence::ApplicationPackage = centre
            .get(&format!("/v1/applications/{id}/evidence"))
            .await
            .unwrap();
        assert_eq!(pkg.receipts.len(), RECIPIENTS.len());
        let r = regions::evidence::verify_package(&pkg, &files.registry, &roots, 1_800_000_000_000);
        assert!(r.ok(), "{id}: {r}");
    }
    written
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_during_fan_out_and_dispatch_loses_nothing() {
    let runs: u64 = std::env::var("TONGBAN_CRASH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    eprintln!("application crash test: {runs} runs, seed {seed}");
    let mut rng = Rng(seed);
    let files = Arc::new(city_files(
        "nanjing",
        "[applications]\nservice_deadline_ms = 400\nevidence_deadline_ms = 2000\n",
    ));
    {
        let (mut child, url) = spawn(&files);
        identities(&files, &url, 40 * runs + 100).await;
        child.kill().unwrap();
        child.wait().unwrap();
    }
    let next = Arc::new(Mutex::new(0u64));
    let acked = Arc::new(Mutex::new(Vec::new()));
    let written = Arc::new(Mutex::new(HashMap::new()));
    for _ in 0..runs {
        let (mut child, url) = spawn(&files);
        let mut tasks = vec![tokio::spawn(submitter(
            files.clone(),
            url.clone(),
            next.clone(),
            acked.clone(),
        ))];
        for m in RECIPIENTS {
            tasks.push(tokio::spawn(recipient(
                files.clone(),
                url.clone(),
                m,
                written.clone(),
                false,
            )));
        }
        tokio::time::sleep(Duration::from_millis(60 + rng.next() % 400)).await;
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        for t in tasks {
            t.await.unwrap();
        }
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() as u64 >= runs,
        "applications were acknowledged: {}",
        acked.len()
    );

    // Restart: the engine resumes; the recipients keep working until idle.
    let (mut child, url) = spawn(&files);
    let workers: Vec<_> = RECIPIENTS
        .into_iter()
        .map(|m| {
            tokio::spawn(recipient(
                files.clone(),
                url.clone(),
                m,
                written.clone(),
                true,
            ))
        })
        .collect();
    let centre = member(&files, &url, CENTRE);
    let written = all_completed_once(&centre, &acked, &files, workers, &written).await;
    eprintln!(
        "application crash test: {} applications across {runs} kills, {} receipts, all completed and verified",
        acked.len(),
        written.len()
    );
    child.kill().unwrap();
    child.wait().unwrap();
}

/// The utilities' city gateway (Nanjing) is the one killed, 20 times, while
/// the centre's gateway (Shanghai, in this process) keeps fanning out to it
/// and dispatching to its inboxes over libp2p.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_of_the_utilities_gateway_loses_nothing() {
    let runs: u64 = std::env::var("TONGBAN_CRASH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    eprintln!("utility-gateway crash test: {runs} runs, seed {seed}");
    let mut rng = Rng(seed);
    let addrs: std::collections::BTreeMap<String, String> = ["nanjing.gateway", "shanghai.gateway"]
        .into_iter()
        .map(|g| (g.to_string(), free_multiaddr()))
        .collect();
    let timing = "[applications]\nservice_deadline_ms = 400\nevidence_deadline_ms = 1500\nevidence_attempts = 20\n";
    let nj = Arc::new(city_files(
        "nanjing",
        &format!("{}\n{timing}", relay_section("nanjing.gateway", &addrs)),
    ));
    let sh_files = city_files(
        "shanghai",
        &format!("{}\n{timing}", relay_section("shanghai.gateway", &addrs)),
    );
    let sh = start(&sh_files).await;
    {
        let (mut child, url) = spawn(&nj);
        identities(&nj, &url, 10 * runs + 20).await;
        child.kill().unwrap();
        child.wait().unwrap();
    }
    let centre = {
        let gw = sh_files
            .registry
            .city("shanghai")
            .unwrap()
            .gateway
            .id
            .clone();
        Client::new(&sh.url, "shanghai.centre", key("shanghai.centre"), &gw)
    };
    let written = Arc::new(Mutex::new(HashMap::new()));
    let mut acked = Vec::new();
    let mut k = 0u64;
    for _ in 0..runs {
        let (mut child, url) = spawn(&nj);
        let mut tasks = Vec::new();
        for m in RECIPIENTS {
            tasks.push(tokio::spawn(recipient(
                nj.clone(),
                url.clone(),
                m,
                written.clone(),
                false,
            )));
        }
        // The centre keeps taking applications whatever the utilities' city does.
        for _ in 0..2 {
            let body = serde_json::json!({
                "bundle": "business-opening",
                "reference": format!("XCRASH-{k}"),
                "params": {
                    "business_city": "nanjing", "founder_id": founder(k), "founder_city": "nanjing",
                    "proposed_name": format!("Cross City Crash {k} Ltd"), "premises_address": format!("{k} Hunan Road"),
                    "registered_capital_yuan": 100000, "contact_phone": "13900000000",
                },
            });
            let (_, v): (u16, ApplicationView) =
                centre.post("/v1/applications", &body).await.unwrap();
            acked.push(v.id());
            k += 1;
        }
        tokio::time::sleep(Duration::from_millis(100 + rng.next() % 500)).await;
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        for t in tasks {
            t.await.unwrap();
        }
    }
    let (mut child, url) = spawn(&nj);
    let workers: Vec<_> = RECIPIENTS
        .into_iter()
        .map(|m| tokio::spawn(recipient(nj.clone(), url.clone(), m, written.clone(), true)))
        .collect();
    let written = all_completed_once(&centre, &acked, &sh_files, workers, &written).await;
    eprintln!(
        "utility-gateway crash test: {} applications across {runs} kills of Nanjing, {} receipts, all completed and verified",
        acked.len(),
        written.len()
    );
    child.kill().unwrap();
    child.wait().unwrap();
    sh.stop().await;
}
