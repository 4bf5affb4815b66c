//! Crash tests on the real binary: `tongban serve` runs as a child process while
//! clients publish continuously; it is killed with SIGKILL at random moments
//! (20 times by default, `TONGBAN_CRASH_RUNS` to change) and restarted. Every
//! acknowledged record must be there exactly once with a valid proof, and the
//! chain must verify from genesis. A SIGTERM must stop it cleanly.

mod common;

use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use gateway::api::records::{BatchResult, RecordView, WriteResult};
use gateway::client::{Client, sign_import, sign_publication};
use gateway::ledger::TxLocation;
use proofs::header::{CertifiedHeader, verify_certificate, verify_link};

const DEPT: &str = "nanjing.civil-affairs";

fn spawn(files: &CityFiles) -> (Child, String) {
    spawn_serve(files, "warn")
}

fn dept_client(files: &CityFiles, url: &str) -> Client {
    let gw = files.registry.city("nanjing").unwrap().gateway.id.clone();
    Client::new(url, DEPT, key(DEPT), &gw)
}

/// Publishes records `prefix-0`, `prefix-1`, … until a call fails; records each acknowledgement.
async fn publisher(
    files: Arc<CityFiles>,
    url: String,
    prefix: String,
    acked: Arc<Mutex<Vec<(String, TxLocation)>>>,
) {
    let c = dept_client(&files, &url);
    let chain = files
        .registry
        .city("nanjing")
        .unwrap()
        .chain
        .chain_id
        .clone();
    for i in 0u64.. {
        let id = format!("{prefix}-{i}");
        let input = marriage(&id, 1, i, i + 1, "married");
        let req = sign_publication(
            &files.registry,
            &chain,
            DEPT,
            &key(DEPT),
            &subject_key("nanjing"),
            input,
            [(i % 251) as u8; 32],
        )
        .unwrap();
        match c.post::<_, WriteResult>("/v1/records", &req).await {
            Ok((201, w)) => acked.lock().unwrap().push((id, w.location.unwrap())),
            Ok((status, w)) => panic!("unexpected answer {status} {w:?}"),
            Err(_) => return, // the gateway died: this one was never acknowledged
        }
    }
}

/// Imports batches of `IMPORT_BATCH` records `prefix-b-i` until a call fails.
/// A batch's transactions and values are large enough to go to the store's
/// value log, so kills also land between its sync and the batch's commit.
async fn importer(
    files: Arc<CityFiles>,
    url: String,
    prefix: String,
    acked: Arc<Mutex<Vec<(String, TxLocation)>>>,
) {
    const IMPORT_BATCH: u64 = 200;
    let c = dept_client(&files, &url);
    let chain = files
        .registry
        .city("nanjing")
        .unwrap()
        .chain
        .chain_id
        .clone();
    for b in 0u64.. {
        let ids: Vec<String> = (0..IMPORT_BATCH)
            .map(|i| format!("{prefix}-{b}-{i}"))
            .collect();
        let recs = ids
            .iter()
            .enumerate()
            .map(|(i, id)| {
                let n = b * IMPORT_BATCH + i as u64;
                (
                    marriage(id, 1, n, n + 1, "married"),
                    [(n % 241) as u8 + 1; 32],
                )
            })
            .collect();
        let req = sign_import(
            &files.registry,
            &chain,
            DEPT,
            &key(DEPT),
            &subject_key("nanjing"),
            recs,
        )
        .unwrap();
        match c.post::<_, BatchResult>("/v1/records/import", &req).await {
            Ok((200, r)) => {
                assert_eq!(r.results.len(), ids.len());
                let mut a = acked.lock().unwrap();
                for (id, w) in ids.into_iter().zip(r.results) {
                    assert_eq!(w.outcome, "written", "{id}: {w:?}");
                    a.push((id, w.location.unwrap()));
                }
            }
            Ok((status, r)) => panic!("unexpected answer {status} {:?}", r.results.first()),
            Err(_) => return,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_never_loses_an_acknowledged_record() {
    let runs: usize = std::env::var("TONGBAN_CRASH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    eprintln!("crash test: {runs} runs, seed {seed}");
    let mut rng = Rng(seed);
    // A small index memtable: runs are written and merged while the gateway is killed.
    let files = Arc::new(city_files(
        "nanjing",
        "[ledger]\nblock_interval_ms = 3\nindex_memtable_entries = 64\n",
    ));
    let acked = Arc::new(Mutex::new(Vec::new()));

    for run in 0..runs {
        let (mut child, url) = spawn(&files);
        let mut tasks: Vec<_> = (0..3)
            .map(|t| {
                tokio::spawn(publisher(
                    files.clone(),
                    url.clone(),
                    format!("run{run}-t{t}"),
                    acked.clone(),
                ))
            })
            .collect();
        tasks.push(tokio::spawn(importer(
            files.clone(),
            url.clone(),
            format!("run{run}-imp"),
            acked.clone(),
        )));
        let delay = 30 + rng.next() % 300;
        tokio::time::sleep(Duration::from_millis(delay)).await;
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        for t in tasks {
            t.await.unwrap();
        }
    }

    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() > runs,
        "the publishers got acknowledgements ({} in {runs} runs)",
        acked.len()
    );
    let (mut child, url) = spawn(&files);
    let c = dept_client(&files, &url);
    let roots = files.registry.trust_roots(files.registry_hash).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;

    // Every acknowledged record: present, exactly one version, at the acknowledged place, provable.
    for (id, loc) in &acked {
        let v: RecordView = c
            .get(&format!("/v1/records/marriage/{id}"))
            .await
            .unwrap_or_else(|e| panic!("acknowledged record {id} lost: {e}"));
        assert_eq!(v.versions.len(), 1, "{id} present exactly once");
        assert_eq!(
            v.versions[0].location.as_ref(),
            Some(loc),
            "{id} where it was acknowledged"
        );
        let b: proofs::ProofBundle = c.get(&format!("/v1/proofs/{}", loc.leaf)).await.unwrap();
        let mut r = proofs::Report::new();
        assert!(
            proofs::verify_bundle(&b, &roots, now, "b", &mut r).is_some(),
            "{id}: {r}"
        );
    }

    // The whole chain verifies from genesis, with the proofs crate only.
    let head: serde_json::Value = c.get_public("/v1/chain").await.unwrap();
    let height = head["height"].as_u64().unwrap();
    let chain = &roots.chains[&files.registry.city("nanjing").unwrap().chain.chain_id];
    let mut prev: Option<CertifiedHeader> = None;
    let mut txs = 0;
    for h in 0..=height {
        let ch: CertifiedHeader = c
            .get_public(&format!("/v1/chain/headers/{h}"))
            .await
            .unwrap();
        verify_certificate(&ch.header, &ch.certificate, chain)
            .unwrap_or_else(|e| panic!("height {h}: {e}"));
        if let Some(p) = &prev {
            verify_link(&p.header, &ch.header).unwrap_or_else(|e| panic!("height {h}: {e}"));
        }
        txs += ch.header.tx_count;
        prev = Some(ch);
    }
    assert!(
        txs >= acked.len() as u64,
        "at least every acknowledged transaction is on the chain"
    );
    // The records above were found through index runs written (and merged)
    // by processes that were killed, not only through the memtable.
    let metrics = reqwest::get(format!("{url}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let index_runs: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("tongban_index_runs "))
        .and_then(|v| v.trim().parse().ok())
        .expect("the index runs gauge");
    assert!(index_runs > 0, "no index run was written: {metrics}");
    let vlog = files.dir.path().join("data/ledger/values/00000000.vlog");
    let vlog_bytes = std::fs::metadata(&vlog).map(|m| m.len()).unwrap_or(0);
    assert!(
        vlog_bytes > 0,
        "no block went to the value log ({})",
        vlog.display()
    );
    eprintln!(
        "crash test: {} acknowledged records across {runs} kills, {txs} transactions in {} blocks, {index_runs} index runs, {vlog_bytes} value-log bytes, all verified",
        acked.len(),
        height + 1
    );
    child.kill().unwrap();
    child.wait().unwrap();
}

#[tokio::test]
async fn sigterm_stops_cleanly_and_keeps_everything() {
    let files = city_files("nanjing", "");
    let (child, url) = spawn(&files);
    let c = dept_client(&files, &url);
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
        DEPT,
        &key(DEPT),
        &subject_key("nanjing"),
        marriage("T1", 1, 1, 2, "married"),
        [1; 32],
    )
    .unwrap();
    let (status, w): (u16, WriteResult) = c.post("/v1/records", &req).await.unwrap();
    assert_eq!(status, 201);
    let rc = send_signal(child.id(), "TERM");
    assert_eq!(rc, 0);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "exit status {:?}", out.status);
    let (mut child, url) = spawn(&files);
    let v: RecordView = dept_client(&files, &url)
        .get("/v1/records/marriage/T1")
        .await
        .unwrap();
    assert_eq!(v.versions[0].location, w.location);
    child.kill().unwrap();
    child.wait().unwrap();
}

/// Sends a signal with the `kill` command (the workspace forbids unsafe code).
fn send_signal(pid: u32, sig: &str) -> i32 {
    let status = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .unwrap();
    if status.success() { 0 } else { 1 }
}
