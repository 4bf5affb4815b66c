//! `tongban bench bundle`: house-transfer applications across three cities
//! (taken in Shanghai, the flat in Nanjing, the buyer's marriage in Hefei
//! through the Anhui hub), all gateways and the hub in this process over
//! loopback libp2p, with the three utilities' inboxes receiving the orders.
//!
//! * **Submission to decision**: the application's own timeline (gateway
//!   clock): `decided.at_ms - submitted_ms`, p50 and p99 at a fixed offered
//!   rate, and the sustained rate of decided applications.
//! * **Inspector**: evidence packages of decided applications verified per
//!   second on one core, against the floor of the signature verifications a
//!   package needs.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::api::applications::ApplicationView;
use crate::bench::{Figure, figure};
use crate::client::sign_publication;
use crate::records::RecordInput;
use crate::testkit::{
    CityFiles, Running, city_files_for_load, client, free_multiaddr, key, relay_section, resident,
    start, start_hub, subject_key,
};

/// Sizes of the bundle benchmark.
#[derive(Debug, Clone, Copy)]
pub struct BundleOptions {
    /// Applications in the run.
    pub applications: usize,
    /// Offered rate (applications/s).
    pub rate: f64,
    /// Packages verified by the inspector run.
    pub packages: usize,
}

struct City {
    files: CityFiles,
    run: Running,
}

fn chain(c: &City) -> String {
    c.files
        .registry
        .city(&c.files.city)
        .map(|x| x.chain.chain_id.clone())
        .unwrap_or_default()
}

async fn publish_all(
    c: &City,
    dept: &str,
    rt: &str,
    rows: Vec<(String, serde_json::Value)>,
) -> anyhow::Result<()> {
    let k = key(dept);
    let sk = subject_key(&c.files.city);
    let ch = chain(c);
    let mut reqs = Vec::new();
    for (i, (id, fields)) in rows.into_iter().enumerate() {
        let mut secret = [5u8; 32];
        secret[..8].copy_from_slice(&(i as u64).to_be_bytes());
        secret[8] = dept.len() as u8;
        reqs.push(sign_publication(
            &c.files.registry,
            &ch,
            dept,
            &k,
            &sk,
            RecordInput {
                record_type: rt.into(),
                record_id: id,
                version: 1,
                fields: fields.as_object().cloned().unwrap_or_default(),
                issued_ms: 1_700_000_000_000,
            },
            secret,
        )?);
    }
    let cl = client(&c.run, &c.files, dept);
    for chunk in reqs.chunks(2000) {
        let (_, _): (u16, serde_json::Value) = cl
            .post(
                "/v1/records/batch",
                &serde_json::json!({ "records": chunk }),
            )
            .await?;
    }
    Ok(())
}

const CERT: &str = "NJ-CERT";

fn seller(i: usize) -> String {
    resident(500_000 + 2 * i as u64)
}
fn buyer(i: usize) -> String {
    resident(500_001 + 2 * i as u64)
}

/// Runs the bundle benchmark.
pub async fn run(o: BundleOptions) -> anyhow::Result<Vec<Figure>> {
    let addrs: BTreeMap<String, String> = [
        "nanjing.gateway",
        "shanghai.gateway",
        "hefei.gateway",
        "anhui-hub",
    ]
    .into_iter()
    .map(|g| (g.to_owned(), free_multiaddr()))
    .collect();
    let mut cities = BTreeMap::new();
    for c in ["nanjing", "shanghai", "hefei"] {
        // One local load generator stands for many clients: no per-address cap.
        let files = city_files_for_load(
            c,
            &format!(
                "{}[http]\nmax_connections_per_address = 100000\n",
                relay_section(&format!("{c}.gateway"), &addrs)
            ),
        );
        let run = start(&files).await;
        cities.insert(c, City { files, run });
    }
    let _hub = start_hub(&cities["nanjing"].files.registry, "anhui-hub", &addrs).await;
    let (nj, sh, hf) = (&cities["nanjing"], &cities["shanghai"], &cities["hefei"]);
    let n = o.applications;
    eprintln!("bench: {} provider records for {n} applications…", 4 * n);
    let cert = |i: usize| format!("{CERT}-{i}");
    publish_all(nj, "nanjing.real-estate", "real-estate-title", (0..n).map(|i| (format!("T-{i}"), serde_json::json!({
        "certificate_number": cert(i), "owner_id": seller(i), "owner_share_percent": 100, "city": "nanjing",
        "district": "Xuanwu", "address": format!("{i} Zhongshan Road"), "area_m2": 90, "use": "residential",
        "registration_date": "2021-03-01", "mortgaged": false, "seized": false,
    }))).collect()).await?;
    publish_all(nj, "nanjing.hr-social-security", "social-insurance", (0..n).map(|i| (format!("SI-{i}"), serde_json::json!({
        "insured_id": buyer(i), "city": "nanjing", "months_paid": 72, "status": "active", "last_paid_month": "2026-10-01",
    }))).collect()).await?;
    publish_all(nj, "nanjing.tax", "tax-clearance", (0..n).map(|i| (format!("TX-{i}"), serde_json::json!({
        "certificate_number": format!("TX-{i}"), "taxpayer_id": buyer(i), "tax_type": "deed", "period": "2026",
        "amount_fen": 1_000_000, "paid_date": "2026-11-01", "property_certificate": cert(i),
    }))).collect()).await?;
    publish_all(hf, "hefei.civil-affairs", "marriage", (0..n).map(|i| (format!("M-{i}"), serde_json::json!({
        "certificate_number": format!("M-{i}"), "party_a_id": buyer(i), "party_b_id": resident(900_000 + i as u64),
        "status": "married", "registration_date": "2018-05-20", "registering_office": "Luyang District",
    }))).collect()).await?;

    let centre = client(&sh.run, &sh.files, "shanghai.centre");
    let submit = |i: usize| {
        let c = centre.clone();
        async move {
            let body = serde_json::json!({ "bundle": "house-transfer", "reference": format!("B-{i}"), "params": {
                "property_city": "nanjing", "certificate_number": cert(i), "seller_id": seller(i),
                "buyer_id": buyer(i), "buyer_city": "hefei", "buyer_name": "Li Lei", "buyer_phone": "13800000000",
                "gas_account": format!("G-{i}"), "water_account": format!("W-{i}"), "electricity_account": format!("E-{i}"),
            }});
            c.post::<_, ApplicationView>("/v1/applications", &body)
                .await
                .map(|(_, v)| v.id())
        }
    };
    // Warm-up: connections and header sync.
    submit(n + 1).await?;
    tokio::time::sleep(Duration::from_millis(1500)).await;

    eprintln!("bench: {n} applications offered at {}/s…", o.rate);
    let start_t = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / o.rate));
    let mut handles = Vec::new();
    for i in 0..n {
        tick.tick().await;
        handles.push(tokio::spawn(submit(i)));
    }
    let mut ids = Vec::new();
    for h in handles {
        ids.push(h.await??);
    }
    // Wait until every application is decided.
    let state = sh.run.state.clone();
    let mut latencies = Vec::new();
    let mut events: BTreeMap<String, usize> = BTreeMap::new();
    let mut phases: Vec<(u64, u64, u64)> = Vec::new();
    let mut last_decided = 0u64;
    let mut first_submitted = u64::MAX;
    for id in &ids {
        let mut waited = 0;
        loop {
            let a = crate::applications::load(&state, id);
            if let Some(a) = a.filter(|a| a.phase != regions::application::Phase::Matching) {
                let decided = a
                    .timeline
                    .iter()
                    .find(|e| e.what == "decided")
                    .map_or(a.timeline.last().map_or(0, |e| e.at_ms), |e| e.at_ms);
                anyhow::ensure!(
                    a.phase != regions::application::Phase::Failed,
                    "application failed: {:?}",
                    a.reason
                );
                latencies.push((decided - a.submitted_ms) as f64);
                for e in &a.timeline {
                    *events.entry(e.what.clone()).or_insert(0usize) += 1;
                }
                let answers: Vec<u64> = a
                    .timeline
                    .iter()
                    .filter(|e| e.what == "evidence.answered")
                    .map(|e| e.at_ms)
                    .collect();
                if let (Some(f), Some(l)) = (answers.iter().min(), answers.iter().max()) {
                    phases.push((f - a.submitted_ms, l - a.submitted_ms, decided - l));
                }
                last_decided = last_decided.max(decided);
                first_submitted = first_submitted.min(a.submitted_ms);
                break;
            }
            waited += 1;
            anyhow::ensure!(waited < 6000, "an application was not decided in 60 s");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    let wall = start_t.elapsed().as_secs_f64();
    eprintln!("bench: timeline events over the run: {events:?}");
    eprintln!(
        "bench: chain heights after the run: nanjing {}, shanghai {}, hefei {}",
        nj.run.state.ledger.head().height,
        sh.run.state.ledger.head().height,
        hf.run.state.ledger.head().height
    );
    {
        let med = |mut v: Vec<u64>| {
            v.sort_unstable();
            (v[v.len() / 2], v[v.len() * 99 / 100])
        };
        eprintln!(
            "bench: first answer {:?}, last answer {:?}, last answer to decided {:?} (p50, p99 ms)",
            med(phases.iter().map(|p| p.0).collect()),
            med(phases.iter().map(|p| p.1).collect()),
            med(phases.iter().map(|p| p.2).collect())
        );
    }
    latencies.sort_by(f64::total_cmp);
    let pct = |p: f64| latencies[((latencies.len() as f64 - 1.0) * p).round() as usize];
    let rate = n as f64 / ((last_decided - first_submitted).max(1) as f64 / 1000.0);

    // The inspector: packages verified on one core.
    let registry = sh.files.registry.clone();
    let roots = registry.trust_roots(sh.files.registry_hash)?;
    let pkgs: Vec<_> = ids
        .iter()
        .take(o.packages.min(ids.len()))
        .filter_map(|id| crate::applications::package(&state, id))
        .collect();
    anyhow::ensure!(!pkgs.is_empty(), "no packages");
    let now = 1_800_000_000_000;
    let rounds = o.packages.div_ceil(pkgs.len());
    let t = Instant::now();
    let mut checked = 0usize;
    for _ in 0..rounds {
        for p in &pkgs {
            let r = regions::evidence::verify_package(p, &registry, &roots, now);
            anyhow::ensure!(r.ok(), "a package did not verify: {r}");
            checked += 1;
        }
    }
    let per_pkg = t.elapsed().as_secs_f64() / checked as f64;
    // Floor: the strict signature verifications in one package (4 per bundle:
    // three endorsements and the author, plus each request's signature).
    let p0 = &pkgs[0];
    let bundles = p0.steps.len()
        + p0.receipts.len()
        + p0.evidence
            .iter()
            .map(|e| 1 + usize::from(e.record.is_some()))
            .sum::<usize>();
    let sigs = 4 * bundles + p0.evidence.len();
    let k = proofs::SigningKey::from_seed(&[1; 32]);
    let msg = b"floor";
    let sig = k.sign(msg);
    let pk = k.public();
    let t = Instant::now();
    let reps = 2000;
    for _ in 0..reps {
        let _ = std::hint::black_box(pk.verify(std::hint::black_box(msg), &sig));
    }
    let per_sig = t.elapsed().as_secs_f64() / reps as f64;
    let floor = per_sig * sigs as f64;
    // The inspector's day: the run's distinct packages in one pass, a
    // certificate shared by several packages (same block) verified once.
    let t = Instant::now();
    let inspector = regions::evidence::Inspector::new(&registry, &roots, now);
    for p in &pkgs {
        let r = inspector.verify(p);
        anyhow::ensure!(r.ok(), "a package did not verify: {r}");
    }
    let per_pkg_batch = t.elapsed().as_secs_f64() / pkgs.len() as f64;
    let own_sigs: usize = pkgs
        .iter()
        .map(|p| {
            p.steps.len()
                + p.receipts.len()
                + p.evidence
                    .iter()
                    .map(|e| 2 + usize::from(e.record.is_some()))
                    .sum::<usize>()
        })
        .sum();
    let batch_sigs = 3 * inspector.certified_headers() + own_sigs;
    let floor_batch = per_sig * batch_sigs as f64 / pkgs.len() as f64;
    eprintln!("bench: run of {n} applications took {wall:.1} s");
    Ok(vec![
        figure(
            &format!(
                "submission to decision p50 at {}/s offered ({n} house transfers, 6 evidence requests each over 3 cities and the hub)",
                o.rate
            ),
            pct(0.5),
            "ms",
            "≤ 100 ms",
            None,
        ),
        figure(
            &format!("submission to decision p99 at {}/s offered", o.rate),
            pct(0.99),
            "ms",
            "≤ 300 ms",
            None,
        ),
        figure(
            "applications decided per second (first submission to last decision)",
            rate,
            "applications/s",
            "≥ 100 applications/s",
            None,
        ),
        figure(
            &format!(
                "inspector: evidence packages verified on one core ({} bundles, {sigs} signatures each)",
                bundles
            ),
            1.0 / per_pkg,
            "packages/s",
            "≥ 1,000 packages/s",
            Some(per_pkg / floor),
        ),
        figure(
            "inspector floor: the strict signature verifications of one package",
            1.0 / floor,
            "packages/s",
            "floor",
            None,
        ),
        figure(
            &format!(
                "inspector: the run's {} distinct packages in one pass on one core ({} distinct certified headers, {:.1} signatures per package)",
                pkgs.len(),
                inspector.certified_headers(),
                batch_sigs as f64 / pkgs.len() as f64
            ),
            1.0 / per_pkg_batch,
            "packages/s",
            "≥ 1,000 packages/s",
            Some(per_pkg_batch / floor_batch),
        ),
        figure(
            "inspector floor for that pass: each distinct signature verified once",
            1.0 / floor_batch,
            "packages/s",
            "floor",
            None,
        ),
    ])
}
