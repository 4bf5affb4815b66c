//! `tongban demo`: the example Yangtze River Delta region on this machine.
//!
//! One gateway per city (Shanghai, Nanjing, Hangzhou, Hefei) and the Anhui
//! hub, each gateway with its embedded ledger in a fresh data directory under
//! `--out`, connected over libp2p on loopback exactly as separate machines
//! would be (Hefei only through the hub). Departments publish a generated
//! population of licence records; service centres run every bundle of the
//! registry end to end while the utilities and departments answer their
//! inboxes through the signed HTTP API; the evidence packages are written to
//! disk, read back and verified by the inspector with the registry file alone.
//!
//! Everything here goes through the same code paths as a real deployment:
//! signed HTTP requests, libp2p between gateways, flushed sled writes. Only the
//! keys are TEST keys, derived from public labels.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use serde::Serialize;
use serde_json::{Value, json};

use crate::api::applications::ApplicationView;
use crate::client::{Client, sign_publication, sign_receipt};
use crate::clock::{Clock, SystemClock};
use crate::inbox::InboxItem;
use crate::records::RecordInput;
use crate::testkit::{Running, free_multiaddr, relay_section, resident, serve_config};
use regions::application::Phase;
use regions::test_keys::signing_key;

/// The cities of the example region, in the order their gateways start.
pub const CITIES: [&str; 4] = ["shanghai", "nanjing", "hangzhou", "hefei"];
const HUB: &str = "anhui-hub";
const MARKER: &str = ".tongban-demo";

/// What the demo runs.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Output folder (registry, gateways' data, packages, summary).
    pub out: PathBuf,
    /// Generated residents per city.
    pub subjects: usize,
    /// Approved applications per bundle (one rejected case of each of the
    /// house transfer and the business opening runs as well).
    pub applications: usize,
    /// First HTTP port (one per city, in the order of [`CITIES`]); 0 for any free ports.
    pub http_port: u16,
}

/// One application of the scenario and how it ended.
#[derive(Debug, Clone, Serialize)]
pub struct DemoApplication {
    /// The bundle.
    pub bundle: String,
    /// The centre's reference.
    pub reference: String,
    /// The centre that took it.
    pub centre: String,
    /// The application id.
    pub id: String,
    /// Expected final phase.
    pub expected: String,
    /// Final phase reached.
    pub phase: String,
    /// Why it was rejected, if it was.
    pub reason: Option<String>,
    /// Submission to decision (ms, gateway clock).
    pub decision_ms: u64,
    /// Decision to completion: services delivered and every receipt back (ms).
    pub dispatch_ms: Option<u64>,
    /// The package file.
    pub package: String,
    /// Facts the inspector checked.
    pub facts: usize,
    /// Whether every fact held.
    pub verified: bool,
}

/// The demo's outcome (also written as `summary.json`).
#[derive(Debug, Clone, Serialize)]
pub struct DemoSummary {
    /// Everything ran as expected and every package verified.
    pub ok: bool,
    /// Records published, per city.
    pub records: BTreeMap<String, usize>,
    /// Seconds spent publishing them.
    pub publish_s: f64,
    /// The applications.
    pub applications: Vec<DemoApplication>,
    /// Seconds the inspector took for all packages.
    pub inspect_s: f64,
    /// The gateways' HTTP addresses.
    pub gateways: BTreeMap<String, String>,
}

/// The running region.
pub struct Region {
    /// City → running gateway.
    pub gateways: BTreeMap<String, Running>,
    /// The hub.
    pub hub: relay::Relay,
    /// The output folder.
    pub out: PathBuf,
    /// The registry copy in the output folder.
    pub registry_path: PathBuf,
    registry: regions::Registry,
}

impl Region {
    fn city_dir(&self, city: &str) -> PathBuf {
        city_dir(&self.out, city)
    }
    fn chain(&self, city: &str) -> String {
        self.registry
            .city(city)
            .map(|c| c.chain.chain_id.clone())
            .unwrap_or_default()
    }
    /// A client acting as `member` towards `city`'s gateway (TEST key).
    pub fn client(&self, city: &str, member: &str) -> anyhow::Result<Client> {
        let gw = self
            .registry
            .city(city)
            .with_context(|| format!("no city {city}"))?
            .gateway
            .id
            .clone();
        let run = self
            .gateways
            .get(city)
            .with_context(|| format!("{city} not running"))?;
        Ok(Client::new(&run.url, member, signing_key(member), &gw))
    }
    /// Stops every gateway (flushing) and the hub.
    pub async fn stop(self) {
        for (_, g) in self.gateways {
            g.stop().await;
        }
        self.hub.shutdown().await;
    }
}

fn city_dir(out: &Path, city: &str) -> PathBuf {
    out.join("cities").join(city)
}

/// Clears `out` (only if empty, missing, or made by an earlier demo) and lays
/// out every city's gateway with TEST keys.
fn prepare(out: &Path) -> anyhow::Result<()> {
    if out.exists() {
        let empty = std::fs::read_dir(out)?.next().is_none();
        ensure!(
            empty || out.join(MARKER).exists(),
            "{} exists and was not made by `tongban demo`; give another --out",
            out.display()
        );
        for sub in ["cities", "packages", "params"] {
            let p = out.join(sub);
            if p.exists() {
                std::fs::remove_dir_all(&p).with_context(|| format!("clearing {}", p.display()))?;
            }
        }
    }
    std::fs::create_dir_all(out.join("packages"))?;
    std::fs::create_dir_all(out.join("params"))?;
    std::fs::write(
        out.join(MARKER),
        "made by `tongban demo`; its subfolders are cleared by the next run\n",
    )?;
    Ok(())
}

/// Starts the region: every city's gateway and the hub, in this process.
pub async fn start_region(out: &Path, http_port: u16) -> anyhow::Result<Region> {
    prepare(out)?;
    let mut ids: Vec<String> = CITIES.iter().map(|c| format!("{c}.gateway")).collect();
    ids.push(HUB.into());
    let addrs: BTreeMap<String, String> = ids.into_iter().map(|g| (g, free_multiaddr())).collect();
    let mut gateways = BTreeMap::new();
    for (i, c) in CITIES.iter().enumerate() {
        let dir = city_dir(out, c);
        let relay = relay_section(&format!("{c}.gateway"), &addrs);
        let (config, _) = crate::testkit::write_city(&dir, c, "127.0.0.1:0", &relay)
            .with_context(|| format!("laying out {c} in {}", dir.display()))?;
        let wanted = if http_port == 0 {
            "127.0.0.1:0".to_owned()
        } else {
            format!("127.0.0.1:{}", http_port + i as u16)
        };
        let run = match serve_config(&config, &wanted, Arc::new(SystemClock)).await {
            Ok(r) => r,
            // The port is taken: any free one will do, the summary prints it.
            Err(_) if http_port != 0 => {
                serve_config(&config, "127.0.0.1:0", Arc::new(SystemClock)).await?
            }
            Err(e) => return Err(e),
        };
        gateways.insert((*c).to_owned(), run);
    }
    let registry_path = out.join("registry.toml");
    std::fs::copy(crate::testkit::example_registry(), &registry_path)?;
    let (registry, _) = regions::load(&registry_path)?;
    let hub = crate::testkit::try_start_hub(&registry, HUB, &addrs).await?;
    Ok(Region {
        gateways,
        hub,
        out: out.to_owned(),
        registry_path,
        registry,
    })
}

// ---------------------------------------------------------------------------
// The population: a few thousand residents per city with their licences.

const SURNAMES: [&str; 10] = [
    "Wang", "Li", "Zhang", "Liu", "Chen", "Yang", "Zhao", "Huang", "Zhou", "Wu",
];
const GIVEN: [&str; 10] = [
    "Wei", "Fang", "Min", "Jing", "Lei", "Jun", "Yan", "Hui", "Tao", "Ming",
];
const DISTRICTS: [&str; 4] = ["Xuanwu", "Gulou", "Jianye", "Qinhuai"];

fn city_base(city: &str) -> u64 {
    match city {
        "shanghai" => 1_000_000,
        "nanjing" => 2_000_000,
        "hangzhou" => 3_000_000,
        _ => 4_000_000,
    }
}

/// Resident `i` of `city` (a synthetic identity number with a valid check digit).
pub fn person(city: &str, i: usize) -> String {
    resident(city_base(city) + i as u64)
}

fn name(i: usize) -> String {
    format!("{} {}", SURNAMES[i % 10], GIVEN[(i / 10) % 10])
}

/// Months of social insurance and income tax resident `i` paid in their city.
fn months(i: usize) -> u64 {
    24 + (i as u64 * 7) % 120
}

/// Residents with one home have `i % 3 == 0`; with two, `i % 30 == 0`.
fn homes(i: usize) -> usize {
    match (i % 30, i % 3) {
        (0, _) => 2,
        (_, 0) => 1,
        _ => 0,
    }
}

fn title_cert(city: &str, i: usize, n: usize) -> String {
    let prefix = match city {
        "shanghai" => "SH",
        "nanjing" => "NJ",
        "hangzhou" => "HZ",
        _ => "HF",
    };
    format!("{prefix}-T-{i}-{n}")
}

type Rows = Vec<(String, String, String, Value)>; // (department, record type, id, fields)

fn population(city: &str, subjects: usize) -> Rows {
    let d = |x: &str| format!("{city}.{x}");
    let mut rows = Rows::new();
    for i in 0..subjects {
        let id = person(city, i);
        let expired = i % 50 == 49;
        rows.push((d("public-security"), "resident-identity".into(), format!("ID-{i}"), json!({
            "id_number": id, "name": name(i), "sex": if i % 2 == 0 { "female" } else { "male" },
            "birth_date": format!("19{}-0{}-1{}", 60 + i % 40, 1 + i % 9, i % 10),
            "hukou_city": city, "valid_until": if expired { "2024-06-30" } else { "2036-06-30" },
        })));
        rows.push((d("public-security"), "household-registration".into(), format!("HH-{i}"), json!({
            "id_number": id, "household_number": format!("HH-{city}-{}", i / 2),
            "head_id": person(city, i - i % 2 + 1), "relation_to_head": if i % 2 == 0 { "spouse" } else { "head" },
            "hukou_city": city, "address": format!("{} {} Road, {}", 1 + i / 2, GIVEN[i % 10], DISTRICTS[i % 4]),
            "registered_date": "2015-03-01",
        })));
        if i % 4 == 0 && i + 1 < subjects {
            rows.push((d("civil-affairs"), "marriage".into(), format!("M-{i}"), json!({
                "certificate_number": format!("M-{city}-{i}"), "party_a_id": person(city, i + 1),
                "party_b_id": id, "status": "married", "registration_date": "2016-10-01",
                "registering_office": format!("{} District Marriage Registry", DISTRICTS[i % 4]),
            })));
        }
        rows.push((
            d("hr-social-security"),
            "social-insurance".into(),
            format!("SI-{i}"),
            json!({
                "insured_id": id, "city": city, "months_paid": months(i), "status": "paying",
                "last_paid_month": "2026-10-01",
            }),
        ));
        rows.push((d("tax"), "income-tax-history".into(), format!("IT-{i}"), json!({
            "taxpayer_id": id, "city": city, "months_paid": months(i), "last_paid_month": "2026-10-01",
        })));
        for n in 0..homes(i) {
            let cert = title_cert(city, i, n);
            rows.push((d("real-estate"), "real-estate-title".into(), cert.clone(), json!({
                "certificate_number": cert, "owner_id": id, "owner_share_percent": 100, "city": city,
                "district": DISTRICTS[(i + n) % 4], "address": format!("{} Zhongshan Road, flat {}", 10 + i, 101 + n),
                "area_m2": 60 + (i % 80), "use": "residential", "registration_date": "2019-04-01",
                "mortgaged": false, "seized": false,
            })));
        }
        if i % 20 == 10 {
            rows.push((d("market-regulation"), "business-licence".into(), format!("BL-{i}"), json!({
                "credit_code": credit_code(city, i), "name": company(city, i),
                "entity_type": "limited company", "legal_representative_id": id,
                "registered_capital_yuan": 100_000 * (1 + i as u64 % 10), "established_date": "2020-01-15",
                "valid_until": "2040-01-14", "address": format!("{} Hanzhong Road", i), "scope": "retail",
                "status": "active",
            })));
        }
        if i % 97 == 96 {
            rows.push((
                d("market-regulation"),
                "market-entry-ban".into(),
                format!("BAN-{i}"),
                json!({
                    "person_id": id, "reason": "court judgment debtor (失信被执行人)",
                    "imposed_date": "2025-01-01", "valid_until": "2029-12-31",
                }),
            ));
        }
    }
    rows
}

/// A synthetic unified social credit code with a valid check character.
fn credit_code(city: &str, i: usize) -> String {
    let first = format!("91320100{:09}", city_base(city) + i as u64);
    let check = proofs::subject::SubjectId::uscc_check_char(&first).unwrap_or('0');
    format!("{first}{check}")
}

fn company(city: &str, i: usize) -> String {
    format!("{} {} Trading Co {i}", capital(city), GIVEN[(i / 20) % 10])
}

fn capital(city: &str) -> String {
    let mut c = city.chars();
    c.next()
        .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
        .unwrap_or_default()
}

/// Publishes `rows` to `city`'s gateway: each record signed by its department,
/// in batches of up to 2,000 per signed request.
async fn publish(region: &Region, city: &str, rows: Rows) -> anyhow::Result<usize> {
    let sk = crate::testkit::subject_key(city);
    let chain = region.chain(city);
    let mut by_dept: BTreeMap<String, Vec<crate::records::PublishRequest>> = BTreeMap::new();
    for (dept, rt, id, fields) in rows {
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).context("the OS random source")?;
        let fields = fields
            .as_object()
            .cloned()
            .context("record fields are an object")?;
        let req = sign_publication(
            &region.registry,
            &chain,
            &dept,
            &signing_key(&dept),
            &sk,
            RecordInput {
                record_type: rt,
                record_id: id,
                version: 1,
                fields,
                issued_ms: 1_700_000_000_000,
            },
            secret,
        )?;
        by_dept.entry(dept).or_default().push(req);
    }
    let mut n = 0;
    for (dept, reqs) in by_dept {
        let cl = region.client(city, &dept)?;
        for chunk in reqs.chunks(2000) {
            let _: (u16, Value) = cl
                .post("/v1/records/batch", &json!({ "records": chunk }))
                .await
                .with_context(|| format!("{dept} publishing to {city}"))?;
            n += chunk.len();
        }
    }
    Ok(n)
}

// ---------------------------------------------------------------------------
// The applications.

struct Planned {
    city: &'static str,
    centre: &'static str,
    bundle: &'static str,
    reference: String,
    params: Value,
    expected: Phase,
}

/// A house transfer: the flat in Nanjing, taken in Shanghai; the buyer's
/// household is in Hefei (asked through the hub). Seller `s` of Nanjing, buyer
/// `b` of Hefei. Returns the plan and the records the buyer's purchase
/// produced in Nanjing (work history there, deed tax paid for this flat).
fn house_transfer(k: usize, s: usize, b: usize, buyer_city: &'static str) -> (Planned, Rows) {
    let cert = title_cert("nanjing", s, 0);
    let buyer = person(buyer_city, b);
    let mut rows = Rows::new();
    if buyer_city != "nanjing" {
        rows.push(("nanjing.hr-social-security".into(), "social-insurance".into(), format!("SI-{buyer_city}-{b}"), json!({
            "insured_id": buyer, "city": "nanjing", "months_paid": 66, "status": "paying", "last_paid_month": "2026-10-01",
        })));
        rows.push(("nanjing.tax".into(), "income-tax-history".into(), format!("IT-{buyer_city}-{b}"), json!({
            "taxpayer_id": buyer, "city": "nanjing", "months_paid": 66, "last_paid_month": "2026-10-01",
        })));
    }
    rows.push(("nanjing.tax".into(), "tax-clearance".into(), format!("DT-{cert}"), json!({
        "certificate_number": format!("DT-{cert}"), "taxpayer_id": buyer, "tax_type": "deed", "period": "2026",
        "amount_fen": 4_500_000 + 1000 * s as u64, "paid_date": "2026-11-20", "property_certificate": cert,
    })));
    let plan = Planned {
        city: "shanghai",
        centre: "shanghai.centre",
        bundle: "house-transfer",
        reference: format!("SH-HT-{k}"),
        params: json!({
            "property_city": "nanjing", "certificate_number": cert, "seller_id": person("nanjing", s),
            "buyer_id": buyer, "buyer_city": buyer_city, "buyer_name": name(b), "buyer_phone": "13800000000",
            "gas_account": format!("G-{s}"), "water_account": format!("W-{s}"), "electricity_account": format!("E-{s}"),
        }),
        expected: Phase::Completed,
    };
    (plan, rows)
}

/// Nanjing residents with exactly one home (sellers).
fn one_home(subjects: usize) -> impl Iterator<Item = usize> {
    (0..subjects).filter(|i| homes(*i) == 1)
}

fn plan(
    subjects: usize,
    per_bundle: usize,
) -> anyhow::Result<(Vec<Planned>, BTreeMap<&'static str, Rows>)> {
    let mut plans = Vec::new();
    let mut extra: BTreeMap<&'static str, Rows> = BTreeMap::new();
    let mut sellers = one_home(subjects);
    // House transfers: married Hefei buyers (i % 4 == 0 are married), through the hub.
    for k in 0..per_bundle {
        let s = sellers
            .next()
            .context("too few subjects for the house transfers")?;
        let b = 4 * k;
        ensure!(b + 1 < subjects, "too few subjects for the house transfers");
        let (p, rows) = house_transfer(k, s, b, "hefei");
        plans.push(p);
        extra.entry("nanjing").or_default().extend(rows);
    }
    // Rejected: a Nanjing buyer who already owns two homes there.
    let s = sellers.next().context("too few subjects")?;
    let b = (0..subjects)
        .find(|i| homes(*i) == 2 && months(*i) >= 60)
        .context("too few subjects for the two-home buyer")?;
    let (mut p, rows) = house_transfer(per_bundle, s, b, "nanjing");
    p.expected = Phase::Rejected;
    plans.push(p);
    extra.entry("nanjing").or_default().extend(rows);
    // Newborns: born in Shanghai to a Nanjing couple, registered at Nanjing's centre.
    for k in 0..per_bundle {
        let mother = 4 * k + 40; // married couples: (i, i + 1) with i % 4 == 0
        ensure!(mother + 1 < subjects, "too few subjects for the newborns");
        let (m, f) = (person("nanjing", mother), person("nanjing", mother + 1));
        let cert = format!("BC-SH-2026-{k:05}");
        let child = format!("{} Xiaobao", SURNAMES[(mother + 1) % 10]);
        extra.entry("shanghai").or_default().push(("shanghai.health".into(), "birth-certificate".into(), cert.clone(), json!({
            "certificate_number": cert, "newborn_name": child, "sex": if k % 2 == 0 { "female" } else { "male" },
            "birth_date": "2026-11-18", "birth_place": "Shanghai First Maternity and Infant Hospital",
            "mother_id": m, "father_id": f,
        })));
        plans.push(Planned {
            city: "nanjing",
            centre: "nanjing.centre",
            bundle: "newborn",
            reference: format!("NJ-NB-{k}"),
            params: json!({
                "birth_city": "shanghai", "family_city": "nanjing", "birth_certificate_number": cert,
                "newborn_name": child, "mother_id": m, "father_id": f,
            }),
            expected: Phase::Completed,
        });
    }
    // Business openings in Hangzhou by Hefei founders (identity asked through the hub).
    let founders: Vec<usize> = (0..subjects)
        .filter(|i| i % 50 != 49 && i % 97 != 96)
        .collect();
    for k in 0..=per_bundle {
        let f = *founders
            .get(200 + k)
            .or(founders.get(k))
            .context("too few subjects for the business openings")?;
        // The last one asks for a name already taken in Hangzhou: rejected.
        let (name, expected) = if k == per_bundle {
            (company("hangzhou", 10), Phase::Rejected)
        } else {
            (
                format!("Hangzhou West Lake Tea House No {k} Ltd"),
                Phase::Completed,
            )
        };
        plans.push(Planned {
            city: "hangzhou",
            centre: "hangzhou.centre",
            bundle: "business-opening",
            reference: format!("HZ-BO-{k}"),
            params: json!({
                "business_city": "hangzhou", "founder_id": person("hefei", f), "founder_city": "hefei",
                "proposed_name": name, "premises_address": format!("{} Wensan Road", 100 + k),
                "registered_capital_yuan": 500_000, "contact_phone": "13900000000",
            }),
            expected,
        });
    }
    Ok((plans, extra))
}

/// Answers every open request in the inboxes of `city`'s departments and
/// utilities (each with its own signed receipt), until `stop`.
async fn answer_inboxes(
    region: Arc<Region>,
    city: String,
    stop: Arc<AtomicBool>,
    answered: Arc<AtomicU64>,
) {
    let Some(c) = region.registry.city(&city) else {
        return;
    };
    let members: Vec<String> = c
        .departments
        .iter()
        .map(|d| d.id.clone())
        .chain(c.utilities.iter().map(|u| u.id.clone()))
        .collect();
    let chain = region.chain(&city);
    while !stop.load(Ordering::Relaxed) {
        for m in &members {
            let Ok(cl) = region.client(&city, m) else {
                return;
            };
            let Ok(items) = cl.get::<Vec<InboxItem>>("/v1/inbox").await else {
                continue;
            };
            for i in items.into_iter().filter(|i| i.receipt.is_none()) {
                let r = sign_receipt(
                    &chain,
                    m,
                    &signing_key(m),
                    &i.delivery,
                    true,
                    "",
                    SystemClock.now_ms(),
                );
                if cl.post::<_, Value>("/v1/inbox/receipt", &r).await.is_ok() {
                    answered.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn phase_name(p: Phase) -> String {
    serde_json::to_value(p)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("{p:?}"))
}

/// Runs the scenario on a started region: publishes, applies, answers,
/// writes and verifies the packages.
pub async fn scenario(region: Arc<Region>, o: &DemoOptions) -> anyhow::Result<DemoSummary> {
    let t = Instant::now();
    let (plans, extra) = plan(o.subjects, o.applications)?;
    let mut records = BTreeMap::new();
    let mut tasks = Vec::new();
    for c in CITIES {
        let mut rows = population(c, o.subjects);
        rows.extend(extra.get(c).cloned().unwrap_or_default());
        let r = region.clone();
        tasks.push((c, tokio::spawn(async move { publish(&r, c, rows).await })));
    }
    for (c, task) in tasks {
        records.insert(c.to_owned(), task.await??);
    }
    let publish_s = t.elapsed().as_secs_f64();
    eprintln!(
        "demo: published {} records in {publish_s:.1} s",
        records.values().sum::<usize>()
    );

    // The utilities and departments answer their inboxes.
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicU64::new(0));
    let responders: Vec<_> = CITIES
        .iter()
        .map(|c| {
            tokio::spawn(answer_inboxes(
                region.clone(),
                (*c).to_owned(),
                stop.clone(),
                answered.clone(),
            ))
        })
        .collect();

    // Submit every application at once: each centre's gateway fans out.
    let mut submitted = Vec::new();
    for p in &plans {
        let cl = region.client(p.city, p.centre)?;
        let (_, v): (u16, ApplicationView) = cl
            .post(
                "/v1/applications",
                &json!({ "bundle": p.bundle, "reference": p.reference, "params": p.params }),
            )
            .await
            .with_context(|| format!("submitting {}", p.reference))?;
        submitted.push((p, v.application.id));
    }
    eprintln!("demo: {} applications submitted", submitted.len());
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut finals = Vec::new();
    for (p, id) in &submitted {
        let state = &region.gateways[p.city].state;
        let hash = proofs::Hash::from_hex(id).context("application id")?;
        let app = loop {
            if let Some(a) = crate::applications::load(state, &hash).filter(|a| a.phase.is_final())
            {
                break a;
            }
            if Instant::now() > deadline {
                bail!("application {} did not finish within 120 s", p.reference);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        finals.push((*p, app));
    }
    stop.store(true, Ordering::Relaxed);
    for r in responders {
        let _ = r.await;
    }

    // Write each package, read it back from disk and verify it offline.
    let (registry, hash) = regions::load(&region.registry_path)?;
    let roots = registry.trust_roots(hash)?;
    let mut apps = Vec::new();
    let mut inspect = Duration::ZERO;
    for (p, app) in finals {
        let cl = region.client(p.city, p.centre)?;
        let pkg: Value = cl
            .get(&format!("/v1/applications/{}/evidence", app.id))
            .await
            .with_context(|| format!("evidence of {}", p.reference))?;
        let file = region
            .out
            .join("packages")
            .join(format!("{}.json", p.reference));
        std::fs::write(&file, serde_json::to_vec_pretty(&pkg)?)?;
        let t = Instant::now();
        let text = std::fs::read_to_string(&file)?;
        let parsed = regions::evidence::parse_package(&text).map_err(|e| anyhow::anyhow!("{e}"))?;
        let report =
            regions::evidence::verify_package(&parsed, &registry, &roots, SystemClock.now_ms());
        inspect += t.elapsed();
        let at = |what: &str| {
            app.timeline
                .iter()
                .find(|e| e.what == what)
                .map(|e| e.at_ms)
        };
        let decided = at("decided").unwrap_or(app.submitted_ms);
        apps.push(DemoApplication {
            bundle: p.bundle.into(),
            reference: p.reference.clone(),
            centre: p.centre.into(),
            id: app.id.clone(),
            expected: phase_name(p.expected),
            phase: phase_name(app.phase),
            reason: app.reason.clone(),
            decision_ms: decided.saturating_sub(app.submitted_ms),
            dispatch_ms: at("completed").map(|c| c.saturating_sub(decided)),
            package: file.display().to_string(),
            facts: report.facts.len(),
            verified: report.ok(),
        });
    }
    let ok = apps.iter().all(|a| a.verified && a.phase == a.expected);
    Ok(DemoSummary {
        ok,
        records,
        publish_s,
        applications: apps,
        inspect_s: inspect.as_secs_f64(),
        gateways: region
            .gateways
            .iter()
            .map(|(c, g)| (c.clone(), g.url.clone()))
            .collect(),
    })
}

fn median(mut v: Vec<u64>) -> u64 {
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or(0)
}

/// The readable summary.
pub fn render(s: &DemoSummary, out: &Path, registry: &Path) -> String {
    let mut t = String::new();
    let total: usize = s.records.values().sum();
    t.push_str(&format!(
        "\nTongban demo: the Yangtze River Delta region on this machine\n\
         ==========================================================\n\
         Gateways: Shanghai, Nanjing, Hangzhou and Hefei (Hefei reached only through the\n\
         Anhui hub), each with its own ledger under {}/cities/<city>/data,\n\
         connected over libp2p (TCP, Noise, yamux) on loopback.\n\n\
         Records published by the cities' departments: {total} in {:.1} s ({})\n\n",
        out.display(),
        s.publish_s,
        s.records
            .iter()
            .map(|(c, n)| format!("{c} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    let mut bundles: BTreeMap<&str, Vec<&DemoApplication>> = BTreeMap::new();
    for a in &s.applications {
        bundles.entry(&a.bundle).or_default().push(a);
    }
    t.push_str(
        "bundle            centre            runs  outcome                    decision (median)  services done (median)\n",
    );
    for (b, apps) in &bundles {
        let mut outcomes: BTreeMap<&str, usize> = BTreeMap::new();
        for a in apps {
            *outcomes.entry(&a.phase).or_default() += 1;
        }
        let outcome = outcomes
            .iter()
            .map(|(k, v)| format!("{v} {k}"))
            .collect::<Vec<_>>()
            .join(", ");
        let dispatch: Vec<u64> = apps.iter().filter_map(|a| a.dispatch_ms).collect();
        t.push_str(&format!(
            "{:<17} {:<17} {:>4}  {:<26} {:>10} ms  {:>14}\n",
            b,
            apps[0].centre,
            apps.len(),
            outcome,
            median(apps.iter().map(|a| a.decision_ms).collect()),
            if dispatch.is_empty() {
                "-".to_owned()
            } else {
                format!("{} ms", median(dispatch))
            }
        ));
    }
    for a in s.applications.iter().filter(|a| a.phase == "rejected") {
        t.push_str(&format!(
            "  {} rejected as expected: {}\n",
            a.reference,
            a.reason.as_deref().unwrap_or("-")
        ));
    }
    let verified = s.applications.iter().filter(|a| a.verified).count();
    let facts: usize = s.applications.iter().map(|a| a.facts).sum();
    t.push_str(&format!(
        "\nEvidence packages: {} written to {}/packages/, {verified} verified offline with the\n\
         registry alone ({facts} facts, {:.0} ms in all).\n",
        s.applications.len(),
        out.display(),
        s.inspect_s * 1000.0
    ));
    if let Some(a) = s.applications.first() {
        t.push_str(&format!(
            "Check one by hand:\n  cargo run --release -p gateway -- inspect verify {} --registry {}\n",
            a.package,
            registry.display()
        ));
    }
    for a in s
        .applications
        .iter()
        .filter(|a| !a.verified || a.phase != a.expected)
    {
        t.push_str(&format!(
            "PROBLEM: {} ended {} (expected {}), package verified: {}\n",
            a.reference, a.phase, a.expected, a.verified
        ));
    }
    t.push_str(if s.ok {
        "\nRESULT: every application ended as expected and every package verified.\n"
    } else {
        "\nRESULT: FAILED (see the problems above).\n"
    });
    t
}

/// What to paste to use the running region by hand.
pub fn commands(region: &Region, subjects: usize) -> anyhow::Result<String> {
    // A fresh house transfer: a seller and a buyer not used by the scenario.
    let s = one_home(subjects)
        .nth(subjects / 6)
        .context("too few subjects")?;
    let b = 4 * (subjects / 8);
    let (p, rows) = house_transfer(9999, s, b, "hefei");
    let params = region.out.join("params").join("house-transfer.json");
    std::fs::write(&params, serde_json::to_vec_pretty(&p.params)?)?;
    let reg = region.registry_path.display();
    let keys = |c: &str| region.city_dir(c).join("keys");
    let args = |c: &str, member: &str| {
        format!(
            "--gateway {} --registry {reg} --key {}/{member}.ed25519.key",
            region.gateways[c].url,
            keys(c).display()
        )
    };
    // The buyer's records in Nanjing, one publishable file each.
    let mut publish_lines = String::new();
    for (dept, rt, id, fields) in rows {
        let file = region.out.join("params").join(format!("{id}.json"));
        std::fs::write(
            &file,
            serde_json::to_vec_pretty(&json!({
                "record_type": rt, "record_id": id, "version": 1, "issued_ms": 1_700_000_000_000u64,
                "fields": fields,
            }))?,
        )?;
        publish_lines.push_str(&format!(
            "$T records {} --subject-key {}/subject.key publish {}\n",
            args("nanjing", &dept),
            keys("nanjing").display(),
            file.display()
        ));
    }
    let buyer = person("hefei", b);
    let subject_file = region.out.join("params").join("buyer.txt");
    std::fs::write(&subject_file, format!("{buyer}\n"))?;
    let mut t = String::from("\nThe gateways keep serving (Ctrl-C stops them cleanly):\n");
    for c in CITIES {
        t.push_str(&format!(
            "  {c:<9} {}   (OpenAPI: {}/v1/openapi.json, metrics: {}/metrics)\n",
            region.gateways[c].url, region.gateways[c].url, region.gateways[c].url
        ));
    }
    t.push_str(&format!(
        "\nReady to paste in another terminal (from this folder):\n\n\
         T=\"cargo run --release -q -p gateway --\"\n\n\
         # Nanjing's departments record the buyer's work history and deed tax,\n\
         # then Shanghai's centre submits another house transfer:\n\
         {publish_lines}\
         $T applications {sh_centre} submit --bundle house-transfer --reference SH-HT-BYHAND {params}\n\
         $T applications {sh_centre} status APPLICATION_ID\n\n\
         # Nanjing's gas utility reads its inbox and acknowledges a request:\n\
         $T utility {nj_gas} inbox --hpke-key {nj_keys}/nanjing.gas.hpke.key\n\
         $T utility {nj_gas} ack DELIVERY_ID\n\n\
         # Hefei's civil affairs bureau lists who asked about a resident (subject read from a file):\n\
         $T records {hf_ca} --subject-key {hf_keys}/subject.key access-ledger --subject-from {hf_subject}\n",
        nj_keys = keys("nanjing").display(),
        sh_centre = args("shanghai", "shanghai.centre"),
        params = params.display(),
        nj_gas = args("nanjing", "nanjing.gas"),
        hf_ca = args("hefei", "hefei.civil-affairs"),
        hf_keys = keys("hefei").display(),
        hf_subject = subject_file.display(),
    ));
    Ok(t)
}

/// `tongban demo`: starts the region, runs the scenario, prints the summary.
/// With `exit`, stops and returns whether everything verified; otherwise keeps
/// serving until `shutdown` resolves.
pub async fn run(
    o: DemoOptions,
    exit: bool,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<bool> {
    let t = Instant::now();
    let region = Arc::new(start_region(&o.out, o.http_port).await?);
    eprintln!(
        "demo: 4 gateways and the hub started in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let summary = scenario(region.clone(), &o).await?;
    std::fs::write(
        o.out.join("summary.json"),
        serde_json::to_vec_pretty(&summary)?,
    )?;
    let mut text = render(&summary, &o.out, &region.registry_path);
    text.push_str(&format!(
        "Whole run: {:.1} s. Summary as JSON: {}/summary.json\n",
        t.elapsed().as_secs_f64(),
        o.out.display()
    ));
    if !exit {
        text.push_str(&commands(&region, o.subjects)?);
    }
    print_out(&text);
    if !exit {
        shutdown.await;
        eprintln!("demo: stopping the gateways…");
    }
    let region =
        Arc::try_unwrap(region).map_err(|_| anyhow::anyhow!("the region is still in use"))?;
    region.stop().await;
    Ok(summary.ok)
}

#[allow(clippy::print_stdout)]
fn print_out(s: &str) {
    print!("{s}");
}
