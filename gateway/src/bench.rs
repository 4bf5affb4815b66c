//! `tongban bench ingest`: the ledger's benchmarks, each beside its floor
//! measured in the same run.
//!
//! * **API ingest**: pre-signed record commitments posted over real HTTP
//!   (batches of individually signed records, several connections), durable
//!   before each answer. Floor: strict signature verification + commitment and
//!   leaf hashing of the same records on all cores, plus a sled write of the
//!   same bytes with one flush per block.
//! * **Latency** at half the measured rate: p50/p99 of acknowledgements.
//! * **Bulk import**: batches sealed by one signature each; at least 1 million
//!   records by default, throughput per 100k-record window to show the curve.
//! * **Sizes**: on-chain bytes per record (signed and batched), disk per record.
//! * **Proof generation**: bundles served from the stored tree levels.
//!
//! Runs on the example region's **test keys** in a temp dir.

// A benchmark report goes to standard output.
#![allow(clippy::print_stdout)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use proofs::Hash;
use serde::Serialize;

use crate::api::records::{BatchResult, WriteResult};
use crate::client::{Client, sign_import, sign_publication};
use crate::records::{PublishRequest, RecordInput};
use crate::testkit::{CityFiles, city_files, key, marriage, start, subject_key};

const DEPT: &str = "nanjing.civil-affairs";

/// Benchmark sizes.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Records for the API ingest run.
    pub ingest_records: usize,
    /// Records per HTTP request.
    pub per_request: usize,
    /// Concurrent connections.
    pub connections: usize,
    /// Records for the bulk import run.
    pub import_records: usize,
    /// Records per import batch.
    pub import_batch: usize,
    /// Records for the gateway-capacity import (batches prepared before timing).
    pub import_presigned: usize,
    /// Proofs to generate.
    pub proofs: usize,
    /// The gateway's `[ledger] index_memtable_entries` (None: its default).
    pub index_memtable_entries: Option<usize>,
}

/// One figure with its target and floor.
#[derive(Debug, Serialize, Clone)]
pub struct Figure {
    /// What.
    pub name: String,
    /// Measured value.
    pub value: f64,
    /// Unit.
    pub unit: String,
    /// The target, in words.
    pub target: String,
    /// Measured / floor (time ratio; 1.0 = no overhead of our own), where a floor applies.
    pub floor_ratio: Option<f64>,
}

/// A figure.
pub fn figure(
    name: &str,
    value: f64,
    unit: &str,
    target: &str,
    floor_ratio: Option<f64>,
) -> Figure {
    Figure {
        name: name.into(),
        value,
        unit: unit.into(),
        target: target.into(),
        floor_ratio,
    }
}

fn chain_id(files: &CityFiles) -> String {
    files
        .registry
        .city("nanjing")
        .map(|c| c.chain.chain_id.clone())
        .unwrap_or_default()
}

fn input(prefix: &str, i: u64) -> RecordInput {
    marriage(
        &format!("{prefix}-{i:08}"),
        1,
        i,
        i + 7_000_000,
        if i.is_multiple_of(3) {
            "divorced"
        } else {
            "married"
        },
    )
}

fn presign(files: &CityFiles, prefix: &str, n: usize) -> Vec<PublishRequest> {
    let chain = chain_id(files);
    let k = key(DEPT);
    let sk = subject_key("nanjing");
    (0..n as u64)
        .map(|i| {
            let mut secret = [0u8; 32];
            secret[..8].copy_from_slice(&i.to_be_bytes());
            sign_publication(
                &files.registry,
                &chain,
                DEPT,
                &k,
                &sk,
                input(prefix, i),
                secret,
            )
            .expect("valid bench record")
        })
        .collect()
}

/// The floor of API ingest: what the gateway cannot avoid for these records —
/// verify each signature strictly and hash the commitment and leaf (in
/// parallel on all cores), and write the same bytes to sled with one flush per
/// block of `block` records. Returns seconds.
fn ingest_floor(files: &CityFiles, reqs: &[PublishRequest], block: usize) -> f64 {
    let chain = chain_id(files);
    let sk = subject_key("nanjing");
    let pk = key(DEPT).public();
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    let start = Instant::now();
    let chunks: Vec<&[PublishRequest]> = reqs.chunks(reqs.len().div_ceil(threads)).collect();
    let prepared: Vec<Vec<(Vec<u8>, Vec<u8>)>> = std::thread::scope(|s| {
        let handles: Vec<_> = chunks
            .iter()
            .map(|chunk| {
                let (chain, sk) = (&chain, &sk);
                s.spawn(move || {
                    chunk
                        .iter()
                        .map(|r| {
                            let secret =
                                proofs::hash::parse_fixed_hex::<32>(&r.secret).unwrap_or_default();
                            let p = crate::records::prepare(
                                &files.registry,
                                chain,
                                DEPT,
                                &r.record(),
                                secret,
                                sk,
                            )
                            .expect("valid");
                            let sig = proofs::keys::Signature(
                                proofs::hash::parse_fixed_hex::<64>(&r.signature)
                                    .unwrap_or([0; 64]),
                            );
                            pk.verify(&p.signing_bytes, &sig).expect("valid signature");
                            let value = serde_json::to_vec(&p.record).unwrap_or_default();
                            let mut tx = p.signing_bytes;
                            tx.extend_from_slice(&sig.0);
                            let leaf = proofs::merkle::leaf_hash(&tx);
                            (leaf.0.to_vec(), [tx, value].concat())
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_default())
            .collect()
    });
    let dir = tempfile::tempdir().expect("temp dir");
    let store = crate::store::SledStore::open(dir.path()).expect("sled");
    let all: Vec<(Vec<u8>, Vec<u8>)> = prepared.into_iter().flatten().collect();
    for chunk in all.chunks(block) {
        let mut b = crate::store::WriteBatch::new();
        for (k, v) in chunk {
            b.put(k.clone(), v.clone());
        }
        crate::store::Store::commit(&store, b).expect("commit");
    }
    start.elapsed().as_secs_f64()
}

async fn post_all(
    url: &str,
    files: &CityFiles,
    reqs: Vec<PublishRequest>,
    per_request: usize,
    connections: usize,
) -> (f64, Vec<f64>) {
    let gw = files
        .registry
        .city("nanjing")
        .map(|c| c.gateway.id.clone())
        .unwrap_or_default();
    let batches: Vec<serde_json::Value> = reqs
        .chunks(per_request)
        .map(|c| serde_json::json!({ "records": c }))
        .collect();
    let queue = Arc::new(std::sync::Mutex::new(
        batches
            .into_iter()
            .collect::<std::collections::VecDeque<_>>(),
    ));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let (queue, url, gw) = (queue.clone(), url.to_owned(), gw.clone());
        tasks.push(tokio::spawn(async move {
            let c = Client::new(&url, DEPT, key(DEPT), &gw);
            let mut lat = Vec::new();
            loop {
                let next = queue.lock().map(|mut q| q.pop_front()).unwrap_or(None);
                let Some(b) = next else { break };
                let t = Instant::now();
                loop {
                    match c.post::<_, BatchResult>("/v1/records/batch", &b).await {
                        Ok((_, r)) => {
                            assert!(
                                r.results.iter().all(|w| w.outcome == "written"),
                                "bench records are fresh"
                            );
                            break;
                        }
                        Err(crate::client::ClientError::Api { status: 503, .. }) => {
                            tokio::time::sleep(Duration::from_millis(2)).await
                        }
                        Err(e) => panic!("ingest failed: {e}"),
                    }
                }
                lat.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            lat
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.unwrap_or_default());
    }
    (start.elapsed().as_secs_f64(), lat)
}

/// Import batches posted two at a time, with the rate per window of records.
struct ImportPipe {
    inflight: std::collections::VecDeque<tokio::task::JoinHandle<anyhow::Result<usize>>>,
    label: &'static str,
    every: usize,
    total: usize,
    done: usize,
    last: (Instant, usize),
    /// Records/s in each window.
    windows: Vec<f64>,
}

impl ImportPipe {
    fn new(label: &'static str, every: usize, total: usize) -> Self {
        ImportPipe {
            inflight: std::collections::VecDeque::new(),
            label,
            every,
            total,
            done: 0,
            last: (Instant::now(), 0),
            windows: Vec::new(),
        }
    }
    /// Sends a batch of `n` records; waits for the oldest once two are in flight.
    async fn push(&mut self, client: &Arc<Client>, n: usize, body: Vec<u8>) -> anyhow::Result<()> {
        let c = client.clone();
        self.inflight.push_back(tokio::spawn(async move {
            post_import(&c, body).await.map(|_| n)
        }));
        if self.inflight.len() >= 2 {
            self.complete_one().await?;
        }
        Ok(())
    }
    async fn finish(&mut self) -> anyhow::Result<()> {
        while !self.inflight.is_empty() {
            self.complete_one().await?;
        }
        Ok(())
    }
    async fn complete_one(&mut self) -> anyhow::Result<()> {
        let Some(h) = self.inflight.pop_front() else {
            return Ok(());
        };
        self.done += h.await??;
        if self.done - self.last.1 >= self.every || self.done == self.total {
            let rate = (self.done - self.last.1) as f64 / self.last.0.elapsed().as_secs_f64();
            self.windows.push(rate);
            eprintln!(
                "bench: {} {} ({rate:.0} records/s in the last window)",
                self.label, self.done
            );
            self.last = (Instant::now(), self.done);
        }
        Ok(())
    }
}

/// Posts one import body, retrying while the gateway is busy; every record must be written.
async fn post_import(client: &Client, body: Vec<u8>) -> anyhow::Result<()> {
    loop {
        match client
            .post_raw::<BatchResult>("/v1/records/import", body.clone())
            .await
        {
            Ok((_, r)) => {
                anyhow::ensure!(
                    r.results.iter().all(|w| w.outcome == "written"),
                    "import batch refused"
                );
                return Ok(());
            }
            Err(crate::client::ClientError::Api { status: 503, .. }) => {
                tokio::time::sleep(Duration::from_millis(5)).await
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Lets the ledger's index write what it holds in memory (so that sizes count it).
fn ledger_settle(gw: &crate::testkit::Running) {
    gw.state.ledger.settle_index();
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    v[((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1]
}

/// Runs every ledger benchmark and returns the figures.
pub async fn run(o: Options) -> anyhow::Result<Vec<Figure>> {
    let mut out = Vec::new();
    let mut ledger =
        "[ledger]\nblock_interval_ms = 2\nmax_block_txs = 8192\nqueue = 4096\n".to_owned();
    if let Some(n) = o.index_memtable_entries {
        ledger.push_str(&format!("index_memtable_entries = {n}\n"));
    }
    let files = city_files("nanjing", &ledger);
    let gw = start(&files).await;

    // 1. API ingest, throughput.
    eprintln!(
        "bench: signing {} records for API ingest…",
        o.ingest_records
    );
    let reqs = presign(&files, "api", o.ingest_records);
    let floor_s = tokio::task::block_in_place(|| ingest_floor(&files, &reqs, 2_000));
    eprintln!("bench: posting…");
    let (secs, _) = post_all(&gw.url, &files, reqs, o.per_request, o.connections).await;
    let rate = o.ingest_records as f64 / secs;
    out.push(figure(
        "API ingest, durable (signed record commitments over HTTP)",
        rate,
        "records/s",
        "≥ 20,000 records/s",
        Some(secs / floor_s),
    ));
    out.push(figure(
        "API ingest floor (verify + hash + sled write, same records)",
        o.ingest_records as f64 / floor_s,
        "records/s",
        "floor",
        None,
    ));

    // 2. Latency at half that rate (open loop: one request of `per_request` records every period).
    let half = (rate / 2.0).max(100.0);
    let n = (half as usize * 5).min(o.ingest_records);
    let reqs = presign(&files, "lat", n);
    let per = 20usize;
    let period = Duration::from_secs_f64(per as f64 / half);
    let gwid = files
        .registry
        .city("nanjing")
        .map(|c| c.gateway.id.clone())
        .unwrap_or_default();
    let client = Arc::new(Client::new(&gw.url, DEPT, key(DEPT), &gwid));
    let mut tick = tokio::time::interval(period);
    let mut handles = Vec::new();
    for chunk in reqs.chunks(per) {
        tick.tick().await;
        let body = serde_json::json!({ "records": chunk });
        let c = client.clone();
        handles.push(tokio::spawn(async move {
            let t = Instant::now();
            let r = c.post::<_, BatchResult>("/v1/records/batch", &body).await;
            (r.is_ok(), t.elapsed().as_secs_f64() * 1000.0)
        }));
    }
    let mut lat = Vec::new();
    for h in handles {
        let (ok, ms) = h.await?;
        anyhow::ensure!(ok, "a latency-run request failed");
        lat.push(ms);
    }
    out.push(figure(
        &format!("ack latency p50 at {half:.0} records/s (requests of {per})"),
        pct(&mut lat, 0.50),
        "ms",
        "—",
        None,
    ));
    out.push(figure(
        &format!("ack latency p99 at {half:.0} records/s (requests of {per})"),
        pct(&mut lat, 0.99),
        "ms",
        "≤ 20 ms",
        None,
    ));

    // 3. A single publication's latency, unloaded (one record, one block, one flush).
    let one = presign(&files, "one", 200);
    let mut lat1 = Vec::new();
    for r in &one {
        let t = Instant::now();
        let _: (u16, WriteResult) = client.post("/v1/records", r).await?;
        lat1.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    out.push(figure(
        "single publish, unloaded, p50",
        pct(&mut lat1, 0.5),
        "ms",
        "—",
        None,
    ));

    // 4. Bulk import.
    eprintln!("bench: bulk import of {} records…", o.import_records);
    let chain = chain_id(&files);
    let k = key(DEPT);
    let sk = subject_key("nanjing");
    let t0 = Instant::now();
    let mut next_id = 0u64;
    let (txq, mut rxq) = tokio::sync::mpsc::channel::<crate::records::ImportRequest>(2);
    let batch = o.import_batch;
    let total = o.import_records;
    let registry = files.registry.clone();
    let producer = tokio::task::spawn_blocking(move || {
        while (next_id as usize) < total {
            let n = batch.min(total - next_id as usize);
            let recs: Vec<_> = (next_id..next_id + n as u64)
                .map(|i| {
                    let mut s = [0u8; 32];
                    s[..8].copy_from_slice(&i.to_be_bytes());
                    s[8] = 0x11;
                    (input("imp", i), s)
                })
                .collect();
            next_id += n as u64;
            let req = sign_import(&registry, &chain, DEPT, &k, &sk, recs).expect("valid import");
            if txq.blocking_send(req).is_err() {
                return;
            }
        }
    });
    // Two batches in flight: the gateway checks one while it writes the other.
    let mut pipe = ImportPipe::new("imported", 100_000, total);
    while let Some(req) = rxq.recv().await {
        let body = serde_json::to_vec(&req)?;
        pipe.push(&client, req.records.len(), body).await?;
    }
    pipe.finish().await?;
    let windows = pipe.windows;
    producer.await?;
    let secs = t0.elapsed().as_secs_f64();
    let rate = total as f64 / secs;
    out.push(figure(&format!("bulk import, {total} records end to end on this machine (client prepares and signs, gateway checks and writes)"), rate, "records/s", "—", None));
    let tail = windows.iter().rev().take(3).sum::<f64>() / windows.len().clamp(1, 3) as f64;
    out.push(figure(
        "bulk import end to end, last windows",
        tail,
        "records/s",
        "—",
        None,
    ));

    // 4b. The gateway's import capacity: the department's side (preparing,
    // sealing and serialising each batch) done before the timed phase, as a
    // department's own machine would; the gateway still parses every batch,
    // re-derives and checks every commitment and the seal signature, and
    // writes durably.
    let pre_total = o.import_presigned;
    eprintln!(
        "bench: preparing {pre_total} records in sealed batches for the gateway-capacity import…"
    );
    let (chain, k, sk) = (chain_id(&files), key(DEPT), subject_key("nanjing"));
    let bodies = tokio::task::block_in_place(|| -> anyhow::Result<Vec<(usize, Vec<u8>)>> {
        let ids: Vec<u64> = (0..pre_total as u64).step_by(batch.max(1)).collect();
        let work = |part: &[u64]| -> anyhow::Result<Vec<(usize, Vec<u8>)>> {
            part.iter()
                .map(|&from| {
                    let n = batch.min(pre_total - from as usize);
                    let recs: Vec<_> = (from..from + n as u64)
                        .map(|i| {
                            let mut s = [0u8; 32];
                            s[..8].copy_from_slice(&i.to_be_bytes());
                            s[8] = 0x22;
                            (input("pre", i), s)
                        })
                        .collect();
                    let req = sign_import(&files.registry, &chain, DEPT, &k, &sk, recs)
                        .map_err(|e| anyhow::anyhow!("{e}"))?;
                    Ok((n, serde_json::to_vec(&req)?))
                })
                .collect()
        };
        let (a, b) = ids.split_at(ids.len() / 2);
        std::thread::scope(|sc| {
            let ha = sc.spawn(|| work(a));
            let hb = sc.spawn(|| work(b));
            let mut out = ha
                .join()
                .map_err(|_| anyhow::anyhow!("preparing thread panicked"))??;
            out.extend(
                hb.join()
                    .map_err(|_| anyhow::anyhow!("preparing thread panicked"))??,
            );
            Ok(out)
        })
    })?;
    let t1 = Instant::now();
    let mut pipe = ImportPipe::new("gateway-capacity import", 200_000, pre_total);
    for (n, body) in bodies {
        pipe.push(&client, n, body).await?;
    }
    pipe.finish().await?;
    let pre_windows = pipe.windows;
    let pre_secs = t1.elapsed().as_secs_f64();
    let pre_rate = pre_total as f64 / pre_secs;
    let pre_tail =
        pre_windows.iter().rev().take(3).sum::<f64>() / pre_windows.len().clamp(1, 3) as f64;
    out.push(figure(
        &format!("bulk import, {pre_total} records, the gateway's capacity (batches prepared and sealed beforehand, as on a department's machine; gateway parses, re-derives and checks every commitment and the seal, writes durably)"),
        pre_rate,
        "records/s",
        "≥ 50,000 records/s",
        None,
    ));
    out.push(figure(
        "gateway-capacity import, last windows",
        pre_tail,
        "records/s",
        "—",
        None,
    ));
    out.push(figure(
        "Nanjing's 37.43 M licences at the gateway-capacity import's last windows' rate",
        37_430_000.0 / pre_tail / 60.0,
        "minutes",
        "< 15 minutes",
        None,
    ));
    out.push(figure(
        "Nanjing's 37.43 M licences end to end on one machine at the last windows' rate",
        37_430_000.0 / tail / 60.0,
        "minutes",
        "—",
        None,
    ));
    ledger_settle(&gw);

    // 5. Sizes.
    let ledger = gw.state.ledger.clone();
    let head = ledger.head();
    let (mut signed_bytes, mut signed_n, mut batched_bytes, mut batched_n, mut headers) =
        (0usize, 0usize, 0usize, 0usize, 0usize);
    for h in 1..=head.height {
        let Some(ch) = ledger.header(h)? else {
            continue;
        };
        headers += ch.encode().len();
        for i in 0..ch.header.tx_count as u32 {
            let Some(b) = ledger.tx_bytes(h, i)? else {
                continue;
            };
            match proofs::tx::Transaction::decode(&b).map(|t| (t.auth, t.body)) {
                Ok((
                    proofs::tx::Authorization::Signed(_),
                    proofs::tx::TxBody::RecordCommit { .. },
                )) => {
                    signed_bytes += b.len();
                    signed_n += 1;
                }
                Ok((proofs::tx::Authorization::Batched { .. }, _)) => {
                    batched_bytes += b.len();
                    batched_n += 1;
                }
                _ => {}
            }
        }
    }
    let records = (signed_n + batched_n).max(1);
    out.push(figure(
        "on-chain bytes per signed record commitment",
        signed_bytes as f64 / signed_n.max(1) as f64,
        "bytes",
        "≤ 300 bytes",
        None,
    ));
    out.push(figure(
        "on-chain bytes per batched record commitment",
        batched_bytes as f64 / batched_n.max(1) as f64,
        "bytes",
        "≤ 300 bytes",
        None,
    ));
    out.push(figure(
        "header + certificate bytes per record (amortised)",
        headers as f64 / records as f64,
        "bytes",
        "—",
        None,
    ));
    out.push(figure(
        "disk per record, all included (sled, values, indexes, tree levels)",
        ledger.size_on_disk() as f64 / records as f64,
        "bytes",
        "measured",
        None,
    ));

    // 6. Proof generation from stored tree levels.
    let mut leaves: Vec<Hash> = Vec::new();
    'outer: for h in (1..=head.height).rev() {
        let Some(ch) = ledger.header(h)? else {
            continue;
        };
        for i in 0..ch.header.tx_count as u32 {
            if let Some(b) = ledger.tx_bytes(h, i)? {
                leaves.push(proofs::merkle::leaf_hash(&b));
                if leaves.len() >= 100_000 {
                    break 'outer;
                }
            }
        }
    }
    let pick = |i: usize| leaves[(i * 7919) % leaves.len()];
    let t = Instant::now();
    let mut n = 0;
    while n < o.proofs {
        let l = pick(n);
        // Plain bundles: the location lookup, header, transaction and tree levels.
        if let Some(loc) = ledger.locate(&l)? {
            let _ = ledger.header(loc.height)?;
            let _ = ledger.tx_bytes(loc.height, loc.index)?;
        }
        n += 1;
    }
    let lookup_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    for i in 0..o.proofs {
        let b = ledger.bundle(&pick(i))?;
        anyhow::ensure!(b.is_some(), "bundle missing");
    }
    let secs = t.elapsed().as_secs_f64();
    out.push(figure(
        "proof generation right after the imports, the index still merging in the background (bundle incl. batch seal and member path)",
        o.proofs as f64 / secs,
        "proofs/s",
        "—",
        Some(secs / lookup_s),
    ));
    // The same once the index has finished its merges (steady state).
    let t = Instant::now();
    tokio::task::block_in_place(|| ledger.quiesce_index());
    let waited = t.elapsed().as_secs_f64();
    // The same floor as above: location, header and transaction reads.
    let t = Instant::now();
    for i in 0..o.proofs {
        if let Some(loc) = ledger.locate(&pick(i))? {
            let _ = ledger.header(loc.height)?;
            let _ = ledger.tx_bytes(loc.height, loc.index)?;
        }
    }
    let lookup_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    for i in 0..o.proofs {
        let b = ledger.bundle(&pick(i))?;
        anyhow::ensure!(b.is_some(), "bundle missing");
    }
    let secs = t.elapsed().as_secs_f64();
    out.push(figure(
        &format!("proof generation, index settled (its merges took {waited:.1} s more)"),
        o.proofs as f64 / secs,
        "proofs/s",
        "≥ 50,000 proofs/s",
        Some(secs / lookup_s),
    ));

    gw.stop().await;
    Ok(out)
}

/// Prints figures as a markdown table.
pub fn print_table(figs: &[Figure]) {
    println!("| figure | value | unit | target | ratio to floor |");
    println!("|---|---|---|---|---|");
    for f in figs {
        let r = f
            .floor_ratio
            .map(|r| format!("{r:.2}×"))
            .unwrap_or_else(|| "–".into());
        println!(
            "| {} | {:.1} | {} | {} | {} |",
            f.name, f.value, f.unit, f.target, r
        );
    }
}

/// The machine a benchmark ran on.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Machine {
    /// CPU model (from /proc/cpuinfo).
    pub cpu: String,
    /// Logical CPUs available to this process.
    pub cpus: usize,
    /// Memory (from /proc/meminfo).
    pub memory: String,
    /// Kernel release.
    pub kernel: String,
    /// When (UTC, RFC 3339).
    pub when: String,
}

fn read_field(path: &str, key: &str) -> String {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split(':').nth(1))
                .map(|v| v.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".into())
}

/// Reads the machine description.
pub fn machine() -> Machine {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let date = i64::try_from(days)
        .ok()
        .and_then(regions::predicate::date_from_days)
        .map_or_else(|| "unknown".to_owned(), |d| d.to_string());
    Machine {
        cpu: read_field("/proc/cpuinfo", "model name"),
        cpus: std::thread::available_parallelism().map_or(1, usize::from),
        memory: read_field("/proc/meminfo", "MemTotal"),
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_owned())
            .unwrap_or_else(|_| "unknown".into()),
        when: format!(
            "{date}T{:02}:{:02}:{:02}Z",
            rem / 3600,
            rem % 3600 / 60,
            rem % 60
        ),
    }
}

/// Every benchmark's figures, grouped, with the machine.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AllReport {
    /// Where and when.
    pub machine: Machine,
    /// Smaller runs than the defaults.
    pub quick: bool,
    /// (benchmark, its figures), in the order run.
    pub benchmarks: Vec<(String, Vec<Figure>)>,
}

/// Runs every gateway benchmark with its default sizes (`quick`: a tenth).
pub async fn all(quick: bool) -> anyhow::Result<AllReport> {
    let k = if quick { 10 } else { 1 };
    let machine = machine();
    let mut benchmarks = Vec::new();
    eprintln!("bench all: cross-city matches (issue 4)…");
    let matches = crate::bench_match::run(crate::bench_match::MatchOptions {
        matches: 5000 / k,
        concurrency: 64,
        rate: 500.0,
        latency_matches: 3000 / k,
    })
    .await?;
    benchmarks.push(("cross-city selective matches (issue 4)".to_owned(), matches));
    eprintln!("bench all: bundles and the inspector (issue 5)…");
    let bundles = crate::bench_bundle::run(crate::bench_bundle::BundleOptions {
        applications: 1000 / k,
        rate: 100.0,
        packages: 2000 / k,
    })
    .await?;
    benchmarks.push((
        "one-stop bundles and the inspector (issue 5)".to_owned(),
        bundles,
    ));
    // The ledger benchmark last: it leaves a million-record store whose
    // clean-up would otherwise run under the latency benchmarks.
    eprintln!("bench all: ledger (issue 3)…");
    let ledger = run(Options {
        ingest_records: 200_000 / k,
        per_request: 200,
        connections: 8,
        import_records: 1_000_000 / k,
        import_batch: 4096,
        import_presigned: 1_000_000 / k,
        proofs: 200_000 / k,
        index_memtable_entries: None,
    })
    .await?;
    benchmarks.push((
        "ledger: ingest, import, sizes, proofs (issue 3)".to_owned(),
        ledger,
    ));
    Ok(AllReport {
        machine,
        quick,
        benchmarks,
    })
}

/// The report as Markdown.
pub fn render_all(r: &AllReport) -> String {
    let m = &r.machine;
    let mut t = format!(
        "Machine: {} ({} CPUs), {} memory, Linux {}; run {}{}\n",
        m.cpu,
        m.cpus,
        m.memory,
        m.kernel,
        m.when,
        if r.quick {
            " (QUICK: smaller runs)"
        } else {
            ""
        }
    );
    for (name, figs) in &r.benchmarks {
        t.push_str(&format!(
            "\n### {name}\n\n| figure | measured | target | ratio to floor |\n|---|---|---|---|\n"
        ));
        for f in figs {
            let ratio = f
                .floor_ratio
                .map(|x| format!("{x:.2}×"))
                .unwrap_or_else(|| "–".into());
            let value = if f.value >= 100.0 {
                format!("{:.0}", f.value)
            } else {
                format!("{:.2}", f.value)
            };
            t.push_str(&format!(
                "| {} | {value} {} | {} | {ratio} |\n",
                f.name, f.unit, f.target
            ));
        }
    }
    t
}
