//! The gateway's data directory at rest (issue 15, items 7, 10, 11, 12): record
//! values are not readable in its files; a changed byte anywhere is refused or
//! harmless, never served as a wrong value; `tongban store check` finds it; a
//! full disk answers `store.full` and writing resumes once space is freed.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::*;
use gateway::api::records::{BatchResult, WriteResult};
use gateway::client::{ClientError, sign_import, sign_publication};
use gateway::clock::SystemClock;
use gateway::config::Config;
use gateway::ledger::{Ledger, RecordKey, StoredRecord};
use gateway::records::{RecordInput, RevokeRequest};
use proofs::subject::{SubjectId, SubjectRef};

const POLICE: &str = "nanjing.public-security";
const CIVIL: &str = "nanjing.civil-affairs";
const IMPORTED: u64 = 300;

fn chain_id(files: &CityFiles) -> String {
    files
        .registry
        .city("nanjing")
        .unwrap()
        .chain
        .chain_id
        .clone()
}

/// A person's name as stored (unique per `n`, easy to search for).
fn name(n: u64) -> String {
    format!("Wang Xiaoming-{n:04} 王小明")
}

fn identity(n: u64) -> RecordInput {
    let fields = serde_json::json!({
        "id_number": resident(n),
        "name": name(n),
        "sex": if n.is_multiple_of(2) { "female" } else { "male" },
        "birth_date": "1985-03-07",
        "hukou_city": "nanjing",
        "valid_until": "2035-01-01",
    });
    RecordInput {
        record_type: "resident-identity".into(),
        record_id: format!("ID-{n:05}"),
        version: 1,
        fields: fields.as_object().unwrap().clone(),
        issued_ms: 1_700_000_000_000,
    }
}

/// What the running gateway holds: every record version, as it reads them
/// before it is stopped (the truth the reopened copies are compared with).
struct Truth {
    records: BTreeMap<RecordKey, (Option<u32>, u32, Vec<StoredRecord>)>,
    subjects: BTreeMap<SubjectRef, BTreeSet<RecordKey>>,
}

/// Publishes an import of 300 identity records (one block, its values in the
/// value log) and a few marriages one by one (inline in sled), one
/// superseded and one revoked; returns the truth, the gateway stopped.
async fn publish_population(files: &CityFiles) -> Truth {
    let chain = chain_id(files);
    let gw = start(files).await;
    let police = client(&gw, files, POLICE);
    let civil = client(&gw, files, CIVIL);
    let records: Vec<(RecordInput, [u8; 32])> = (0..IMPORTED)
        .map(|n| (identity(n), [(n % 251) as u8; 32]))
        .collect();
    let imp = sign_import(
        &files.registry,
        &chain,
        POLICE,
        &key(POLICE),
        &subject_key("nanjing"),
        records,
    )
    .unwrap();
    let (_, res): (u16, BatchResult) = police.post("/v1/records/import", &imp).await.unwrap();
    assert!(
        res.results.iter().all(|w| w.outcome == "written"),
        "{res:?}"
    );
    let marriages = [
        marriage("J320102-2019-000001", 1, 1, 2, "married"),
        marriage("J320102-2019-000001", 2, 1, 2, "divorced"),
        marriage("J320102-2019-000002", 1, 3, 4, "married"),
        marriage("J320102-2019-000003", 1, 5, 6, "married"),
    ];
    for (i, m) in marriages.into_iter().enumerate() {
        let p = sign_publication(
            &files.registry,
            &chain,
            CIVIL,
            &key(CIVIL),
            &subject_key("nanjing"),
            m,
            [i as u8 + 1; 32],
        )
        .unwrap();
        let (status, w): (u16, WriteResult) = civil.post("/v1/records", &p).await.unwrap();
        assert_eq!((status, w.outcome.as_str()), (201, "written"), "{w:?}");
    }
    let body = proofs::tx::TxBody::RecordRevoke {
        record_type: "marriage".into(),
        record_id: "J320102-2019-000003".into(),
        version: 1,
        reason: proofs::tx::RevokeReason::Revoked,
        at_ms: 1_700_000_000_000,
    };
    let sig = key(CIVIL).sign(&proofs::tx::signing_bytes(&chain, CIVIL, &body));
    let rv = RevokeRequest {
        record_type: "marriage".into(),
        record_id: "J320102-2019-000003".into(),
        version: 1,
        reason: proofs::tx::RevokeReason::Revoked,
        at_ms: 1_700_000_000_000,
        signature: hex::encode(sig.0),
    };
    let (status, _): (u16, WriteResult) = civil.post("/v1/records/revoke", &rv).await.unwrap();
    assert_eq!(status, 201);

    let ledger = gw.state.ledger.clone();
    let sk = subject_key("nanjing");
    let mut keys: Vec<(RecordKey, Vec<SubjectId>)> = (0..IMPORTED)
        .map(|n| {
            (
                RecordKey {
                    department: POLICE.into(),
                    record_type: "resident-identity".into(),
                    record_id: format!("ID-{n:05}"),
                },
                vec![SubjectId::infer(&resident(n)).unwrap()],
            )
        })
        .collect();
    for (id, a, b) in [
        ("J320102-2019-000001", 1, 2),
        ("J320102-2019-000002", 3, 4),
        ("J320102-2019-000003", 5, 6),
    ] {
        keys.push((
            RecordKey {
                department: CIVIL.into(),
                record_type: "marriage".into(),
                record_id: id.into(),
            },
            vec![
                SubjectId::infer(&resident(a)).unwrap(),
                SubjectId::infer(&resident(b)).unwrap(),
            ],
        ));
    }
    let mut truth = Truth {
        records: BTreeMap::new(),
        subjects: BTreeMap::new(),
    };
    for (k, subjects) in keys {
        let st = ledger.record_state(&k).unwrap().unwrap();
        let versions: Vec<StoredRecord> = (1..=st.latest)
            .map(|v| ledger.record_version(&k, v).unwrap().unwrap())
            .collect();
        truth
            .records
            .insert(k.clone(), (st.current(), st.latest, versions));
        for s in subjects {
            truth
                .subjects
                .entry(sk.reference(&s))
                .or_default()
                .insert(k.clone());
        }
    }
    for (r, ks) in &truth.subjects {
        let found: BTreeSet<RecordKey> =
            ledger.records_of_subject(r).unwrap().into_iter().collect();
        assert_eq!(&found, ks);
    }
    assert_eq!(
        truth.records[&RecordKey {
            department: CIVIL.into(),
            record_type: "marriage".into(),
            record_id: "J320102-2019-000003".into(),
        }]
            .0,
        None,
        "revoked"
    );
    drop(ledger);
    drop((police, civil));
    gw.stop().await;
    truth
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out.sort();
    out
}

/// Issue 15 item 7: after publishing, no file of the data directory holds a
/// record's identity number, a name or a field value in the clear.
#[tokio::test(flavor = "multi_thread")]
async fn record_values_are_not_plaintext_at_rest() {
    let files = city_files("nanjing", "");
    publish_population(&files).await;
    let data = files.dir.path().join("data");
    let all = files_under(&data);
    assert!(
        all.iter()
            .any(|p| p.extension().is_some_and(|e| e == "vlog")),
        "the import's values went to the value log: {all:?}"
    );
    let mut needles: Vec<String> = (0..IMPORTED).step_by(7).map(resident).collect();
    needles.extend((0..IMPORTED).step_by(11).map(name));
    needles.push(resident(5));
    needles.push("王小明".into());
    needles.push("Xuanwu District Marriage Registry".into());
    let mut total = 0u64;
    for p in &all {
        let bytes = std::fs::read(p).unwrap();
        total += bytes.len() as u64;
        for n in &needles {
            assert!(
                !bytes.windows(n.len()).any(|w| w == n.as_bytes()),
                "`{n}` is readable in {}",
                p.display()
            );
        }
    }
    assert!(total > 100_000, "the data directory holds the records");
    // And the gateway reads them back (the key is in keys/data.key).
    let cfg = Config::load(&files.config_path, &|_| None).unwrap();
    let check = gateway::server::check_store(&cfg).unwrap();
    assert!(check.problems.is_empty(), "{:?}", check.problems);
    assert_eq!(check.records, IMPORTED + 4);
}

/// Without the data key the gateway does not start, nor with another key
/// than the one its values are sealed under (the message names that key's
/// id); after a rotation the retired key still reads, and after
/// `store reseal` it is no longer needed.
#[tokio::test(flavor = "multi_thread")]
async fn the_data_key_is_required_and_must_be_the_one_that_wrote() {
    let files = city_files("nanjing", "");
    publish_population(&files).await;
    let missing = files.dir.path().join("keys/none.key");
    let env_missing = |k: &str| (k == "TONGBAN_KEYS_DATA").then(|| missing.display().to_string());
    let cfg = Config::load(&files.config_path, &env_missing).unwrap();
    let e = match gateway::server::Gateway::open(&cfg, Arc::new(SystemClock)) {
        Ok(_) => panic!("opened without its data key"),
        Err(e) => format!("{e:#}"),
    };
    assert!(e.contains("keys.data") && e.contains("none.key"), "{e}");
    let other = files.dir.path().join("keys/other.data.key");
    gateway::keyfile::write(
        &other,
        gateway::keyfile::KeyKind::Data,
        "nanjing.gateway",
        &[7; 32],
    )
    .unwrap();
    let env_other = |k: &str| (k == "TONGBAN_KEYS_DATA").then(|| other.display().to_string());
    let cfg = Config::load(&files.config_path, &env_other).unwrap();
    let key_id = hex::encode(gateway::datakey::key_id(&proofs::keys::test_seed(
        "nanjing/data",
    )));
    for e in [
        format!("{:#}", gateway::server::check_store(&cfg).unwrap_err()),
        match gateway::server::Gateway::open(&cfg, Arc::new(SystemClock)) {
            Ok(_) => panic!("started with another data key"),
            Err(e) => format!("{e:#}"),
        },
    ] {
        assert!(e.contains("not configured") && e.contains(&key_id), "{e}");
    }
    // Rotation: the new key writes, the old one (retired) still reads.
    let old = files.dir.path().join("keys/data.key");
    let env_rotated = |k: &str| match k {
        "TONGBAN_KEYS_DATA" => Some(other.display().to_string()),
        "TONGBAN_KEYS_DATA_RETIRED" => Some(old.display().to_string()),
        _ => None,
    };
    let cfg = Config::load(&files.config_path, &env_rotated).unwrap();
    let check = gateway::server::check_store(&cfg).unwrap();
    assert!(check.problems.is_empty(), "{:?}", check.problems);
    // Re-encrypted under the new key (twice: the second finds nothing to do),
    // the old key is no longer needed.
    assert_eq!(gateway::server::reseal_store(&cfg).unwrap().1, IMPORTED + 4);
    assert_eq!(gateway::server::reseal_store(&cfg).unwrap(), (0, 0));
    let cfg = Config::load(&files.config_path, &env_other).unwrap();
    let check = gateway::server::check_store(&cfg).unwrap();
    assert!(check.problems.is_empty(), "{:?}", check.problems);
    assert_eq!(check.records, IMPORTED + 4);
    let old_key = std::fs::read(&old).unwrap();
    std::fs::remove_file(&old).unwrap();
    let gw = gateway::server::Gateway::open(&cfg, Arc::new(SystemClock)).unwrap();
    let ledger = gw.state.ledger.clone();
    let r = ledger
        .record_version(
            &RecordKey {
                department: POLICE.into(),
                record_type: "resident-identity".into(),
                record_id: "ID-00007".into(),
            },
            1,
        )
        .unwrap()
        .unwrap();
    assert_eq!(r.fields["name"], proofs::Value::Text(name(7)));
    drop((ledger, gw, old_key));
}

/// Opens the data directory `data` as the gateway of `files` would and
/// compares what it serves with `truth`. Returns `Err(message)` if it refused
/// to open; panics on any wrong answer; counts refused reads.
fn open_and_compare(files: &CityFiles, data: &Path, truth: &Truth) -> Result<u64, String> {
    let dir = data.display().to_string();
    let cfg = Config::load(&files.config_path, &|k| {
        (k == "TONGBAN_DATA_DIR").then(|| dir.clone())
    })
    .unwrap();
    let gw = gateway::server::Gateway::open(&cfg, Arc::new(SystemClock))
        .map_err(|e| format!("{e:#}"))?;
    let ledger: Arc<Ledger> = gw.state.ledger.clone();
    let mut refused = 0u64;
    for (k, (current, latest, versions)) in &truth.records {
        match ledger.record_state(k) {
            Ok(Some(st)) => {
                assert_eq!(
                    (st.current(), st.latest),
                    (*current, *latest),
                    "{k:?}: another state served"
                );
            }
            Ok(None) => panic!("{k:?}: served as absent"),
            Err(_) => refused += 1,
        }
        for (i, want) in versions.iter().enumerate() {
            match ledger.record_version(k, i as u32 + 1) {
                Ok(Some(r)) => assert_eq!(&r, want, "{k:?} v{}: another value served", i + 1),
                Ok(None) => panic!("{k:?} v{}: served as absent", i + 1),
                Err(e) => {
                    let code = e.code();
                    assert!(code == "store.corrupt" || code == "internal", "{code}: {e}");
                    refused += 1;
                }
            }
        }
        if let Some(Some(r)) = versions.last().map(|r| r.location) {
            match ledger.bundle(&r.leaf) {
                Ok(Some(b)) => assert_eq!(
                    proofs::merkle::leaf_hash(&b.tx),
                    r.leaf,
                    "{k:?}: another transaction's bundle served"
                ),
                Ok(None) => panic!("{k:?}: bundle served as absent"),
                Err(_) => refused += 1,
            }
        }
    }
    for (s, want) in &truth.subjects {
        match ledger.records_of_subject(s) {
            Ok(found) => {
                let found: BTreeSet<RecordKey> = found.into_iter().collect();
                assert_eq!(&found, want, "another record set served for a subject");
            }
            Err(_) => refused += 1,
        }
    }
    drop(ledger);
    drop(gw);
    Ok(refused)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let p = e.path();
        let q = to.join(e.file_name());
        if p.is_dir() {
            copy_dir(&p, &q);
        } else {
            std::fs::copy(&p, &q).unwrap();
        }
    }
}

/// Issue 15, must pass: a byte flipped anywhere in a stopped gateway's files
/// (value log, ledger sled, index sled; 40 deterministic positions per file,
/// half of them on non-zero bytes)
/// either makes the gateway refuse to open with a message, or it serves only
/// the true values, refusing (with a stable code) what it cannot verify.
#[tokio::test(flavor = "multi_thread")]
async fn byte_flip_sweep_never_serves_a_wrong_value() {
    // A small memtable: the index's entries are in sorted runs on disk too.
    let files = city_files("nanjing", "[ledger]\nindex_memtable_entries = 64\n");
    let truth = publish_population(&files).await;
    let data = files.dir.path().join("data");
    assert_eq!(
        open_and_compare(&files, &data, &truth),
        Ok(0),
        "the intact copy serves everything"
    );
    let scratch = tempfile::tempdir().unwrap();
    let mut seed = 0x5eed_u64;
    let mut next = move || {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        seed >> 33
    };
    let mut summary = Vec::new();
    for file in files_under(&data) {
        let rel = file.strip_prefix(&data).unwrap().to_owned();
        let len = std::fs::metadata(&file).unwrap().len();
        if len == 0 {
            continue;
        }
        // Half the positions anywhere, half on bytes that hold something
        // (sled preallocates: most of its files are zeros).
        let original = std::fs::read(&file).unwrap();
        let used: Vec<u64> = (0..len).filter(|&i| original[i as usize] != 0).collect();
        let (mut opened, mut refused_open, mut refused_reads) = (0, 0, 0);
        let mut first_message = String::new();
        for round in 0..40 {
            let pos = if round % 2 == 1 && !used.is_empty() {
                used[(next() % used.len() as u64) as usize]
            } else {
                next() % len
            };
            let flip = (next() % 255 + 1) as u8;
            let copy = scratch.path().join(format!("c{round}"));
            copy_dir(&data, &copy);
            let target = copy.join(&rel);
            let mut bytes = std::fs::read(&target).unwrap();
            bytes[pos as usize] ^= flip;
            std::fs::write(&target, &bytes).unwrap();
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                open_and_compare(&files, &copy, &truth)
            }));
            match outcome {
                Ok(Ok(n)) => {
                    opened += 1;
                    refused_reads += n;
                }
                Ok(Err(message)) => {
                    assert!(!message.trim().is_empty());
                    if refused_open == 0 {
                        first_message = message;
                    }
                    refused_open += 1;
                }
                Err(p) => {
                    let msg = p
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_default();
                    // A wrong answer fails the test; a panic elsewhere (in
                    // the store's own recovery) stops the start-up, which
                    // is a refusal, but only if it is not ours.
                    assert!(
                        !msg.contains("served"),
                        "{}: byte {pos} ^ {flip:#04x}: {msg}",
                        rel.display()
                    );
                    refused_open += 1;
                }
            }
            std::fs::remove_dir_all(&copy).unwrap();
        }
        summary.push(format!(
            "{}: {len} bytes, 40 flips: {opened} opened ({refused_reads} reads refused), {refused_open} refused to open (e.g. {first_message:?})",
            rel.display()
        ));
    }
    eprintln!("{}", summary.join("\n"));
}

/// Issue 15 item 10: `tongban store check` passes a sound store and finds a
/// flipped byte in a stored value (non-zero exit, the record named).
#[tokio::test(flavor = "multi_thread")]
async fn store_check_command_finds_a_flipped_value() {
    let files = city_files("nanjing", "");
    publish_population(&files).await;
    let run = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_tongban"))
            .args(["store", "check", "--config"])
            .arg(&files.config_path)
            .env("TONGBAN_LOG", "error")
            .output()
            .unwrap()
    };
    let ok = run();
    let out = String::from_utf8_lossy(&ok.stdout).into_owned();
    assert!(
        ok.status.success(),
        "{out} {}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(
        out.contains(&format!(
            "{} record values checked, 0 problem(s)",
            IMPORTED + 4
        )),
        "{out}"
    );
    // The segment ends with the import's stored values (its last item's tag).
    let seg = files.dir.path().join("data/ledger/values/00000000.vlog");
    let mut bytes = std::fs::read(&seg).unwrap();
    let n = bytes.len();
    bytes[n - 3] ^= 0x40;
    std::fs::write(&seg, &bytes).unwrap();
    let bad = run();
    let err = String::from_utf8_lossy(&bad.stderr).into_owned();
    assert!(!bad.status.success(), "{err}");
    assert!(
        err.contains("store.corrupt") && err.contains(&format!("ID-{:05}", IMPORTED - 1)),
        "{err}"
    );
    // And the gateway refuses that record (store.corrupt), serves the others.
    let gw = start(&files).await;
    let police = client(&gw, &files, POLICE);
    match police
        .get::<serde_json::Value>(&format!(
            "/v1/records/resident-identity/ID-{:05}",
            IMPORTED - 1
        ))
        .await
    {
        Err(ClientError::Api { status, code, .. }) => {
            assert_eq!((status, code.as_str()), (500, "store.corrupt"))
        }
        other => panic!("served: {other:?}"),
    }
    let v: serde_json::Value = police
        .get("/v1/records/resident-identity/ID-00000")
        .await
        .unwrap();
    assert!(v.to_string().contains(&resident(0)), "{v}");
    let metrics = reqwest::get(format!("{}/metrics", gw.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("tongban_store_corrupt_values_total 1"),
        "{metrics}"
    );
    drop(police);
    gw.stop().await;
}

struct Unmount(PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// Issue 15 item 12: on a full file system a write answers 507 `store.full`
/// (nothing written, the writer keeps running) and writing resumes once space
/// is freed, with everything acknowledged before still there. Runs on a small
/// tmpfs; skipped (with a message) where mounting one is not permitted.
#[tokio::test(flavor = "multi_thread")]
async fn disk_full_answers_store_full_and_writes_resume_once_space_is_freed() {
    let mnt = tempfile::tempdir().unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=48m", "tmpfs"])
        .arg(mnt.path())
        .status();
    if !matches!(mounted, Ok(s) if s.success()) {
        eprintln!(
            "SKIPPED disk_full test: cannot mount a tmpfs here (needs root with CAP_SYS_ADMIN)"
        );
        return;
    }
    let _unmount = Unmount(mnt.path().to_owned());
    let dir = mnt.path().join("nanjing");
    let (config, registry_path) = write_city(
        &dir,
        "nanjing",
        "127.0.0.1:0",
        "[ledger]\nmin_free_bytes = 4194304\n",
    )
    .unwrap();
    let (registry, _) = regions::load(&registry_path).unwrap();
    let chain = registry.city("nanjing").unwrap().chain.chain_id.clone();
    let publish = |gw: &Running, id: &str| {
        let p = sign_publication(
            &registry,
            &chain,
            CIVIL,
            &key(CIVIL),
            &subject_key("nanjing"),
            marriage(id, 1, 1, 2, "married"),
            [9; 32],
        )
        .unwrap();
        let c = gateway::client::Client::new(&gw.url, CIVIL, key(CIVIL), "nanjing.gateway");
        async move { c.post::<_, WriteResult>("/v1/records", &p).await }
    };
    let gw = serve_config(&config, "127.0.0.1:0", Arc::new(SystemClock))
        .await
        .unwrap();
    let (status, _) = publish(&gw, "J-FULL-1").await.unwrap();
    assert_eq!(status, 201);

    // Fill the file system until a write fails.
    let filler = mnt.path().join("filler");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&filler).unwrap();
        let chunk = vec![0x5a_u8; 64 << 10];
        while f.write_all(&chunk).and_then(|()| f.sync_data()).is_ok() {}
    }
    match publish(&gw, "J-FULL-2").await {
        Err(ClientError::Api { status, code, .. }) => {
            assert_eq!((status, code.as_str()), (507, "store.full"))
        }
        other => panic!("a write on a full disk answered {other:?}"),
    }
    // Still full: refused again, and the writer has not stopped.
    match publish(&gw, "J-FULL-2").await {
        Err(ClientError::Api { status, .. }) => assert_eq!(status, 507),
        other => panic!("{other:?}"),
    }
    let metrics = reqwest::get(format!("{}/metrics", gw.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("tongban_writer_failed 0"), "{metrics}");
    assert!(
        metrics.contains("tongban_store_full_blocks_total 2"),
        "{metrics}"
    );

    // Space freed: the same write goes through, no restart.
    std::fs::remove_file(&filler).unwrap();
    let (status, w) = publish(&gw, "J-FULL-2").await.unwrap();
    assert_eq!((status, w.outcome.as_str()), (201, "written"));
    gw.stop().await;

    // Everything acknowledged is there after a restart.
    let gw = serve_config(&config, "127.0.0.1:0", Arc::new(SystemClock))
        .await
        .unwrap();
    for id in ["J-FULL-1", "J-FULL-2"] {
        let (status, w) = publish(&gw, id).await.unwrap();
        assert_eq!((status, w.outcome.as_str()), (200, "duplicate"), "{id}");
    }
    gw.stop().await;
}

/// Issue 15 item 10, the reported case: a changed byte in a stored
/// social-insurance value (the value log) must not be answered as a verified
/// match ("months_paid ≥ 60" on a record of 30 months): the match is refused
/// with `store.corrupt`; matches about intact records are answered truly.
#[tokio::test(flavor = "multi_thread")]
async fn a_flipped_stored_value_is_never_answered_in_a_match() {
    const HR: &str = "nanjing.hr-social-security";
    const CENTRE: &str = "nanjing.centre";
    let files = city_files("nanjing", "");
    let chain = chain_id(&files);
    let gw = start(&files).await;
    let hr = client(&gw, &files, HR);
    let records: Vec<(RecordInput, [u8; 32])> = (0..IMPORTED)
        .map(|n| {
            let fields = serde_json::json!({
                "insured_id": resident(n),
                "city": "nanjing",
                "months_paid": 30,
                "status": "paying",
                "last_paid_month": "2026-11-01",
            });
            (
                RecordInput {
                    record_type: "social-insurance".into(),
                    record_id: format!("SI-{n:05}"),
                    version: 1,
                    fields: fields.as_object().unwrap().clone(),
                    issued_ms: 1_700_000_000_000,
                },
                [7; 32],
            )
        })
        .collect();
    let imp = sign_import(
        &files.registry,
        &chain,
        HR,
        &key(HR),
        &subject_key("nanjing"),
        records,
    )
    .unwrap();
    let (_, res): (u16, BatchResult) = hr.post("/v1/records/import", &imp).await.unwrap();
    assert!(res.results.iter().all(|w| w.outcome == "written"));
    drop(hr);
    gw.stop().await;

    // The last stored value is the last record's: flip one of its bytes.
    let seg = files.dir.path().join("data/ledger/values/00000000.vlog");
    let mut bytes = std::fs::read(&seg).unwrap();
    let n = bytes.len();
    bytes[n - 40] ^= 0x40;
    std::fs::write(&seg, &bytes).unwrap();

    let gw = start(&files).await;
    let centre = client(&gw, &files, CENTRE);
    let roots = files.registry.trust_roots(files.registry_hash).unwrap();
    let purpose = files
        .registry
        .contract("house-transfer.social-insurance")
        .unwrap()
        .purpose
        .clone();
    let question = serde_json::json!({
        "record_type": "social-insurance",
        "predicates": [{ "field": "months_paid", "op": "ge", "value": 60 }],
        "disclose": [],
        "purpose": purpose,
    })
    .to_string();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let ask = |subject: String| {
        let req = gateway::client::sign_match(
            &files.registry,
            &roots,
            CENTRE,
            &key(CENTRE),
            &gateway::client::MatchAsk {
                provider: HR,
                contract: "house-transfer.social-insurance",
                question: &question,
                subject: &subject,
                ttl_ms: 60_000,
            },
            now,
        )
        .unwrap();
        let c = &centre;
        async move {
            c.post::<_, gateway::client::MatchReply>("/v1/matches", &req)
                .await
                .map(|(_, r)| (req, r))
        }
    };
    match ask(resident(IMPORTED - 1)).await {
        Err(ClientError::Api { code, status, .. }) => {
            assert_eq!((status, code.as_str()), (500, "store.corrupt"))
        }
        Ok((_, r)) => panic!("a corrupt value was answered: {:?}", r.report),
        Err(e) => panic!("{e}"),
    }
    let (req, reply) = ask(resident(0)).await.unwrap();
    assert!(reply.verified);
    let hpke = regions::test_keys::hpke_secret_key(CENTRE);
    let (plain, _) = gateway::client::open_match(&reply, &req, &roots, &hpke, now).unwrap();
    assert!(
        matches!(plain.verdict, proofs::matching::Verdict::DoesNotHold),
        "{:?}",
        plain.verdict
    );
    drop(centre);
    gw.stop().await;
}
