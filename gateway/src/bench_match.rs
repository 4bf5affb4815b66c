//! `tongban bench match`: cross-city selective matches between two gateways in
//! this process (Nanjing asks, Shanghai answers) over loopback libp2p, with
//! durable access logging, each figure beside its floor.
//!
//! * **Throughput**: `concurrency` callers each sign a request, post it to the
//!   Nanjing gateway (which relays it, gets the answer and verifies it), then
//!   verify again and open the answer themselves.
//! * **Latency** at a fixed offered rate (default 500/s, open loop).
//! * **CPU per match** (user + system time of the whole process, both gateways
//!   and the callers) against the **floor**: the cryptography one match cannot
//!   avoid, timed on one core in the same run — sign the request, seal the
//!   subject, verify the request, open the subject, seal the answer, sign the
//!   access-log entry, verify the access-log and record bundles (quorum
//!   certificates and author signatures), open the answer.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use proofs::matching::{AnswerPlain, MatchRequest, RecordRef, Verdict};
use proofs::tx::{Transaction, TxBody};

use crate::api::records::BatchResult;
use crate::bench::{Figure, figure};
use crate::client::{Client, MatchAsk, MatchReply, open_match, sign_match, sign_publication};
use crate::testkit::{
    CityFiles, city_files_for_load, client, free_multiaddr, key, marriage, relay_section, resident,
    start, subject_key,
};

const PROVIDER: &str = "shanghai.civil-affairs";
const CENTRE: &str = "nanjing.centre";
const CONTRACT: &str = "house-transfer.marriage";
/// Queries per subject allowed by the contract's budget.
const PER_SUBJECT: usize = 3;

/// Sizes of the match benchmark.
#[derive(Debug, Clone, Copy)]
pub struct MatchOptions {
    /// Matches in the throughput run.
    pub matches: usize,
    /// Concurrent callers in the throughput run.
    pub concurrency: usize,
    /// Offered rate of the latency run (matches/s).
    pub rate: f64,
    /// Matches in the latency run.
    pub latency_matches: usize,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// CPU seconds (user + system) this process has used.
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return f64::NAN;
    };
    // Fields after the command name (which is in parentheses).
    let rest = stat.rsplit(')').next().unwrap_or_default();
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 here.
    (ticks(11) + ticks(12)) / 100.0
}

struct Setup {
    files_nj: CityFiles,
    nj: crate::testkit::Running,
    _sh: (CityFiles, crate::testkit::Running),
    question: String,
    roots: proofs::TrustRoots,
}

fn subject_of(k: usize) -> u64 {
    // Records name subjects 2i and 2i+1 from 3,000,000 on.
    3_000_000 + (k / PER_SUBJECT) as u64
}

async fn setup(subjects: usize) -> anyhow::Result<Setup> {
    let addrs: std::collections::BTreeMap<String, String> = ["nanjing.gateway", "shanghai.gateway"]
        .into_iter()
        .map(|g| (g.to_owned(), free_multiaddr()))
        .collect();
    // One local load generator stands for many clients: no per-address cap.
    let http = "[http]\nmax_connections_per_address = 100000\n";
    let files_sh = city_files_for_load(
        "shanghai",
        &format!("{}{http}", relay_section("shanghai.gateway", &addrs)),
    );
    let files_nj = city_files_for_load(
        "nanjing",
        &format!("{}{http}", relay_section("nanjing.gateway", &addrs)),
    );
    let sh = start(&files_sh).await;
    let nj = start(&files_nj).await;
    // The provider's records: each names two subjects.
    let chain = files_sh
        .registry
        .city("shanghai")
        .map(|c| c.chain.chain_id.clone())
        .unwrap_or_default();
    let sk = subject_key("shanghai");
    let k = key(PROVIDER);
    let records = subjects.div_ceil(2);
    let publisher = client(&sh, &files_sh, PROVIDER);
    let mut reqs = Vec::with_capacity(records);
    for i in 0..records as u64 {
        let a = 3_000_000 + 2 * i;
        let status = if i % 4 == 3 { "divorced" } else { "married" };
        let mut secret = [9u8; 32];
        secret[..8].copy_from_slice(&i.to_be_bytes());
        reqs.push(sign_publication(
            &files_sh.registry,
            &chain,
            PROVIDER,
            &k,
            &sk,
            marriage(&format!("SH-B-{i:08}"), 1, a, a + 1, status),
            secret,
        )?);
    }
    for chunk in reqs.chunks(2000) {
        let (_, r): (u16, BatchResult) = publisher
            .post(
                "/v1/records/batch",
                &serde_json::json!({ "records": chunk }),
            )
            .await?;
        anyhow::ensure!(
            r.results.iter().all(|w| w.outcome == "written"),
            "bench records are fresh"
        );
    }
    let purpose = files_nj
        .registry
        .contract(CONTRACT)
        .map(|c| c.purpose.clone())
        .unwrap_or_default();
    let question = serde_json::json!({
        "record_type": "marriage",
        "predicates": [{ "field": "status", "op": "eq", "value": "married" }],
        "disclose": [],
        "purpose": purpose,
    })
    .to_string();
    let roots = files_nj.registry.trust_roots(files_nj.registry_hash)?;
    Ok(Setup {
        files_nj,
        nj,
        _sh: (files_sh, sh),
        question,
        roots,
    })
}

/// One match end to end as a caller: sign, ask, verify, open.
async fn one(
    s: &Setup,
    c: &Client,
    k: usize,
) -> anyhow::Result<(MatchRequest, MatchReply, AnswerPlain)> {
    let req = sign_match(
        &s.files_nj.registry,
        &s.roots,
        CENTRE,
        &key(CENTRE),
        &MatchAsk {
            provider: PROVIDER,
            contract: CONTRACT,
            question: &s.question,
            subject: &resident(subject_of(k)),
            ttl_ms: 60_000,
        },
        now_ms(),
    )?;
    let (_, reply): (u16, MatchReply) = c.post("/v1/matches", &req).await?;
    anyhow::ensure!(reply.verified, "the gateway did not verify the answer");
    let hpke = regions::test_keys::hpke_secret_key(CENTRE);
    let (plain, _) = open_match(&reply, &req, &s.roots, &hpke, now_ms())?;
    anyhow::ensure!(
        matches!(plain.verdict, Verdict::Holds | Verdict::DoesNotHold),
        "unexpected verdict {:?}",
        plain.verdict
    );
    Ok((req, reply, plain))
}

/// The cryptographic floor of one match, in seconds (median of batches).
fn floor_seconds(s: &Setup, sample: &(MatchRequest, MatchReply, AnswerPlain)) -> f64 {
    let (req, reply, plain) = sample;
    let roots = &s.roots;
    let provider_hpke = regions::test_keys::hpke_secret_key(PROVIDER);
    let centre_hpke = regions::test_keys::hpke_secret_key(CENTRE);
    let gw = regions::test_keys::signing_key("shanghai.gateway");
    let centre = key(CENTRE);
    let mut rng = <rand_chacha::ChaCha20Rng as rand_core::SeedableRng>::from_seed([3; 32]);
    let subject = resident(subject_of(0));
    let provider_pk = roots.members[PROVIDER]
        .hpke
        .expect("the registry gives the provider an HPKE key");
    let mut times = Vec::new();
    for _ in 0..7 {
        let n = 40;
        let t = Instant::now();
        for _ in 0..n {
            // Requester: seal the subject and sign.
            let r = MatchRequest::create(
                &proofs::matching::RequestDraft {
                    id: req.id,
                    requester: CENTRE,
                    provider: PROVIDER,
                    contract: CONTRACT,
                    contract_version: 1,
                    question: &s.question,
                    issued_ms: req.issued_ms,
                    expires_ms: req.expires_ms,
                    subject: &subject,
                },
                &provider_pk,
                &centre,
                &mut rng,
            )
            .ok();
            // Between the gateways: the whole request sealed to the provider
            // department and opened by its gateway (docs/encoding.md §13).
            if let Some(r) = &r
                && let Ok(env) = proofs::matching::SealedRequest::seal(r, &provider_pk, &mut rng)
            {
                let _ = env.open(&provider_hpke);
            }
            // Provider: verify, open the subject, seal the answer, sign the log entry.
            if let Some(r) = &r {
                let _ = r.verify_signature(roots);
                let _ = r.open_subject(&provider_hpke);
            }
            let p = AnswerPlain {
                record: plain.record.map(|x| RecordRef { ..x }),
                ..plain.clone()
            };
            let _ = p.seal(&centre_hpke.public(), &mut rng);
            let _ = Transaction::sign(
                "shanghai-egov",
                "shanghai.gateway",
                TxBody::AccessLog {
                    requester: CENTRE.into(),
                    provider: PROVIDER.into(),
                    contract: CONTRACT.into(),
                    contract_version: 1,
                    subjects: vec![proofs::subject::SubjectRef(proofs::Hash([1; 32]))],
                    question: req.question_hash(),
                    answer: p.commitment(),
                    request_id: req.id,
                    at_ms: 1,
                },
                &gw,
            );
            // Requester: verify both bundles once and open the answer.
            let mut report = proofs::Report::new();
            if let Some(v) =
                proofs::matching::verify_answer(&reply.answer, req, roots, now_ms(), &mut report)
            {
                let _ = proofs::matching::open_answer(&reply.answer, req, &v, &centre_hpke);
            }
        }
        times.push(t.elapsed().as_secs_f64() / n as f64);
    }
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

/// Runs the match benchmark.
pub async fn run(o: MatchOptions) -> anyhow::Result<Vec<Figure>> {
    let total = o.matches + o.latency_matches + 10;
    eprintln!(
        "bench: two gateways, {} provider records…",
        total.div_ceil(2 * PER_SUBJECT)
    );
    let s = Arc::new(setup(total.div_ceil(PER_SUBJECT) + 2).await?);
    let caller = client(&s.nj, &s.files_nj, CENTRE);
    // Warm up: connections, header sync.
    let mut sample = None;
    for k in 0..10 {
        sample = Some(one(&s, &caller, o.matches + o.latency_matches + k).await?);
    }
    let sample = sample.ok_or_else(|| anyhow::anyhow!("no warm-up match"))?;

    // Throughput.
    eprintln!(
        "bench: {} matches with {} callers…",
        o.matches, o.concurrency
    );
    let next = Arc::new(AtomicUsize::new(0));
    let (cpu0, t0) = (cpu_seconds(), Instant::now());
    let mut tasks = Vec::new();
    for _ in 0..o.concurrency {
        let (s, next, c) = (s.clone(), next.clone(), caller.clone());
        let n = o.matches;
        tasks.push(tokio::spawn(async move {
            loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                if k >= n {
                    return Ok::<_, anyhow::Error>(());
                }
                one(&s, &c, k).await?;
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    let wall = t0.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    let rate = o.matches as f64 / wall;
    let cpu_per = cpu / o.matches as f64;
    let floor = floor_seconds(&s, &sample);

    // Latency at a fixed offered rate (open loop).
    eprintln!("bench: latency at {} matches/s…", o.rate);
    let mut handles = Vec::new();
    let gap = Duration::from_secs_f64(1.0 / o.rate);
    let mut tick = tokio::time::interval(gap);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    for i in 0..o.latency_matches {
        tick.tick().await;
        let (s, c) = (s.clone(), caller.clone());
        let k = o.matches + i;
        handles.push(tokio::spawn(async move {
            let t = Instant::now();
            one(&s, &c, k)
                .await
                .map(|_| t.elapsed().as_secs_f64() * 1000.0)
        }));
    }
    let mut lat = Vec::new();
    for h in handles {
        lat.push(h.await??);
    }
    lat.sort_by(f64::total_cmp);
    let pct = |p: f64| lat[((lat.len() as f64 - 1.0) * p).round() as usize];

    Ok(vec![
        figure(
            &format!(
                "verified matches/s, sustained ({} matches, {} callers; sign, relay over libp2p, evaluate, log durably, answer, verify twice, open)",
                o.matches, o.concurrency
            ),
            rate,
            "matches/s",
            "≥ 1,000 matches/s",
            None,
        ),
        figure(
            &format!("latency p50 at {} matches/s offered", o.rate),
            pct(0.5),
            "ms",
            "≤ 10 ms",
            None,
        ),
        figure(
            &format!("latency p99 at {} matches/s offered", o.rate),
            pct(0.99),
            "ms",
            "≤ 50 ms",
            None,
        ),
        figure(
            "CPU per match, whole process (both gateways and the callers)",
            cpu_per * 1e6,
            "µs",
            "≤ 3× floor",
            Some(cpu_per / floor),
        ),
        figure(
            "floor: the seals, opens, signatures and verifications of one match, one core",
            floor * 1e6,
            "µs",
            "floor",
            None,
        ),
    ])
}
