//! A kit for tests and benchmarks: a city of the example region with its
//! **test keys** (derived from public labels, never secure) written as key
//! files in a temp dir, a config, and an in-process gateway on 127.0.0.1:0.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::client::Client;
use crate::clock::SystemClock;
use crate::config::Config;
use crate::keyfile::{self, KeyKind};
use crate::server::Gateway;
use proofs::SigningKey;
use proofs::keys::test_seed;
use proofs::subject::SubjectKey;
use regions::Registry;
use regions::test_keys::signing_key;

/// The example registry file in the source tree.
pub fn example_registry() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../regions/examples/yangtze-delta.toml")
}

/// A city's files: registry copy, key files, config.
pub struct CityFiles {
    /// The folder (removed on drop).
    pub dir: tempfile::TempDir,
    #[allow(missing_docs)]
    pub city: String,
    #[allow(missing_docs)]
    pub config_path: PathBuf,
    #[allow(missing_docs)]
    pub registry: Registry,
    #[allow(missing_docs)]
    pub registry_hash: proofs::Hash,
    #[allow(missing_docs)]
    pub registry_path: PathBuf,
}

/// The test subject key of a city.
pub fn subject_key(city: &str) -> SubjectKey {
    SubjectKey::from_bytes(test_seed(&format!("{city}/subject")))
}

/// Writes a key file.
pub fn write_key(dir: &Path, name: &str, kind: KeyKind, id: &str, secret: &[u8; 32]) -> PathBuf {
    let p = dir.join(name);
    keyfile::write(&p, kind, id, secret).expect("test kit");
    p
}

/// Lays out `city`'s gateway files; `extra` is appended to the config.
pub fn city_files(city: &str, extra: &str) -> CityFiles {
    let dir = tempfile::tempdir().expect("test kit");
    let (config_path, registry_path) =
        write_city(dir.path(), city, "127.0.0.1:0", extra).expect("test kit");
    let (registry, registry_hash) = regions::load(&registry_path).expect("test kit");
    CityFiles {
        dir,
        city: city.into(),
        config_path,
        registry,
        registry_hash,
        registry_path,
    }
}

/// Lays out a runnable example gateway for `city` in `dir`: a copy of the example
/// registry, **test** key files (the gateway's, three endorsers', the subject
/// key, the data key, and every department's of the city, under `keys/`), and `gateway.toml`
/// listening on `listen`. Returns the config and registry paths.
pub fn write_city(
    dir: &Path,
    city: &str,
    listen: &str,
    extra: &str,
) -> std::io::Result<(PathBuf, PathBuf)> {
    let keys = dir.join("keys");
    std::fs::create_dir_all(&keys)?;
    let registry_path = dir.join("registry.toml");
    std::fs::copy(example_registry(), &registry_path)?;
    let (registry, registry_hash) = regions::load(&registry_path).map_err(std::io::Error::other)?;
    let c = registry.city(city).ok_or_else(|| {
        std::io::Error::other(format!("no city `{city}` in the example registry"))
    })?;
    let gw_id = c.gateway.id.clone();
    write_key(
        &keys,
        "gateway.key",
        KeyKind::Ed25519,
        &gw_id,
        &signing_key(&gw_id).to_seed(),
    );
    let mut endorsers = Vec::new();
    for i in 1..=3 {
        let label = format!("{city}/endorser/{i}");
        let name = format!("endorser-{i}.key");
        write_key(
            &keys,
            &name,
            KeyKind::Ed25519,
            &label,
            &signing_key(&label).to_seed(),
        );
        endorsers.push(format!("\"keys/{name}\""));
    }
    write_key(
        &keys,
        "subject.key",
        KeyKind::Subject,
        city,
        &subject_key(city).to_bytes(),
    );
    // The data key record values are encrypted under at rest.
    write_key(
        &keys,
        "data.key",
        KeyKind::Data,
        &gw_id,
        &test_seed(&format!("{city}/data")),
    );
    let mut custody = Vec::new();
    for d in &c.departments {
        write_key(
            &keys,
            &format!("{}.ed25519.key", d.id),
            KeyKind::Ed25519,
            &d.id,
            &signing_key(&d.id).to_seed(),
        );
        // The gateway answers matches for its departments: it holds their HPKE keys.
        let name = format!("{}.hpke.key", d.id);
        write_key(
            &keys,
            &name,
            KeyKind::X25519,
            &d.id,
            &test_seed(&format!("{}/hpke", d.id)),
        );
        custody.push(format!("\"keys/{name}\""));
    }
    // The gateway takes applications for its centres: it holds their keys.
    let mut centres = Vec::new();
    for m in &c.centres {
        write_key(
            &keys,
            &format!("{}.ed25519.key", m.id),
            KeyKind::Ed25519,
            &m.id,
            &signing_key(&m.id).to_seed(),
        );
        write_key(
            &keys,
            &format!("{}.hpke.key", m.id),
            KeyKind::X25519,
            &m.id,
            &test_seed(&format!("{}/hpke", m.id)),
        );
        centres.push(format!("\"keys/{}.ed25519.key\"", m.id));
        custody.push(format!("\"keys/{}.hpke.key\"", m.id));
    }
    // Utilities' keys, for their integrations (they are not the gateway's).
    for u in &c.utilities {
        write_key(
            &keys,
            &format!("{}.ed25519.key", u.id),
            KeyKind::Ed25519,
            &u.id,
            &signing_key(&u.id).to_seed(),
        );
        write_key(
            &keys,
            &format!("{}.hpke.key", u.id),
            KeyKind::X25519,
            &u.id,
            &test_seed(&format!("{}/hpke", u.id)),
        );
    }
    let config = format!(
        r#"# Example gateway for {city} — TEST KEYS ONLY (derived from public labels).
city = "{city}"
registry = "registry.toml"
registry_sha256 = "{registry_hash}"
data_dir = "data"
http_listen = "{listen}"

[keys]
gateway = "keys/gateway.key"
endorsers = [{}]
subject = "keys/subject.key"
data = "keys/data.key"
custody = [{}]
centres = [{}]
{extra}
"#,
        endorsers.join(", "),
        custody.join(", "),
        centres.join(", ")
    );
    let config_path = dir.join("gateway.toml");
    std::fs::write(&config_path, config)?;
    Ok((config_path, registry_path))
}

/// A gateway running in this process.
pub struct Running {
    #[allow(missing_docs)]
    pub url: String,
    /// Its shared state.
    pub state: Arc<crate::state::AppState>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl Running {
    /// Graceful shutdown; waits until the writer drained.
    pub async fn stop(self) {
        let Running {
            stop, task, state, ..
        } = self;
        // The writer drains and exits only once every handle to the state is gone.
        drop(state);
        if let Some(s) = stop {
            let _ = s.send(());
        }
        if let Some(t) = task {
            tokio::time::timeout(std::time::Duration::from_secs(30), t)
                .await
                .expect("gateway stops within 30 s")
                .expect("test kit")
                .expect("test kit");
        }
    }
}

/// Opens and serves the gateway of `files` in this process.
pub async fn start(files: &CityFiles) -> Running {
    start_with_clock(files, Arc::new(SystemClock)).await
}

/// Opens and serves the gateway of `files` in this process, reading `clock`.
pub async fn start_with_clock(files: &CityFiles, clock: Arc<dyn crate::clock::Clock>) -> Running {
    serve_config(&files.config_path, "127.0.0.1:0", clock)
        .await
        .expect("test kit")
}

/// Opens the gateway configured in `config_path` and serves its HTTP API on
/// `listen` (`127.0.0.1:0`: any free port) in this process.
pub async fn serve_config(
    config_path: &Path,
    listen: &str,
    clock: Arc<dyn crate::clock::Clock>,
) -> anyhow::Result<Running> {
    use anyhow::Context as _;
    let cfg = Config::load(config_path, &|_| None)?;
    let gw = Gateway::open(&cfg, clock)?;
    let state = gw.state.clone();
    let listener = crate::http_serve::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    let url = format!("http://{}", listener.local_addr()?);
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(gw.serve(listener, async move {
        let _ = rx.await;
    }));
    Ok(Running {
        url,
        state,
        stop: Some(tx),
        task: Some(task),
    })
}

/// A client acting as `member` towards `city`'s gateway.
pub fn client(r: &Running, files: &CityFiles, member: &str) -> Client {
    let gw = files
        .registry
        .city(&files.city)
        .expect("test kit")
        .gateway
        .id
        .clone();
    Client::new(&r.url, member, signing_key(member), &gw)
}

/// A member's test signing key.
pub fn key(member: &str) -> SigningKey {
    signing_key(member)
}

/// A synthetic resident identity number with a valid check digit.
pub fn resident(n: u64) -> String {
    let base = format!("3201021985{:07}", n % 10_000_000);
    format!(
        "{base}{}",
        proofs::subject::SubjectId::resident_check_char(&base).expect("test kit")
    )
}

/// A marriage record input.
pub fn marriage(
    id: &str,
    version: u32,
    a: u64,
    b: u64,
    status: &str,
) -> crate::records::RecordInput {
    let fields = serde_json::json!({
        "certificate_number": id,
        "party_a_id": resident(a),
        "party_b_id": resident(b),
        "status": status,
        "registration_date": "2019-05-20",
        "registering_office": "Xuanwu District Marriage Registry",
    });
    crate::records::RecordInput {
        record_type: "marriage".into(),
        record_id: id.into(),
        version,
        fields: fields.as_object().expect("test kit").clone(),
        issued_ms: 1_558_310_400_000,
    }
}

/// A free loopback TCP address as a libp2p multiaddr (bound, then released).
///
/// Ports come from below Linux's ephemeral range (32768–60999), spread by
/// process id, so that outgoing connections and `:0` listeners of other tests
/// running at the same time cannot take them between here and the bind.
pub fn free_multiaddr() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let base = 12_000 + (std::process::id() % 200) * 100;
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = base + n % 20_000;
        let port = if port >= 32_000 { port - 20_000 } else { port };
        if std::net::TcpListener::bind(("127.0.0.1", port as u16)).is_ok() {
            return format!("/ip4/127.0.0.1/tcp/{port}");
        }
    }
}

/// A `[relay]` section listening on `addrs[me]` with every other entry of
/// `addrs` as a peer address override.
pub fn relay_section(me: &str, addrs: &std::collections::BTreeMap<String, String>) -> String {
    let peers: Vec<String> = addrs
        .iter()
        .filter(|(id, _)| id.as_str() != me)
        .map(|(id, a)| format!("\"{id}\" = [\"{a}\"]"))
        .collect();
    format!(
        "[relay]\nlisten = [\"{}\"]\nsync_interval_ms = 100\nrequest_timeout_ms = 3000\npeers = {{ {} }}\n",
        addrs[me],
        peers.join(", ")
    )
}

/// Starts a hub (a relay node with no chain) for `hub` of the example registry.
pub async fn start_hub(
    registry: &Registry,
    hub: &str,
    addrs: &std::collections::BTreeMap<String, String>,
) -> relay::Relay {
    try_start_hub(registry, hub, addrs).await.expect("test kit")
}

/// [`start_hub`], returning its error.
pub async fn try_start_hub(
    registry: &Registry,
    hub: &str,
    addrs: &std::collections::BTreeMap<String, String>,
) -> anyhow::Result<relay::Relay> {
    let mut cfg = crate::network::relay_config(
        registry,
        hub,
        signing_key(hub),
        &[addrs[hub].clone()],
        &addrs
            .iter()
            .map(|(k, v)| (k.clone(), vec![v.clone()]))
            .collect(),
    )?;
    cfg.request_timeout = std::time::Duration::from_secs(3);
    Ok(relay::Relay::start(cfg, std::sync::Arc::new(crate::network::HubHandler)).await?)
}

/// Rewrites `files`' registry copy with `edit` and re-pins the config to the
/// new file's hash. Each city of a multi-gateway run must get the same edit
/// (they share one registry hash).
pub fn edit_registry(files: &mut CityFiles, edit: impl FnOnce(&str) -> String) {
    let text = std::fs::read_to_string(&files.registry_path).expect("test kit");
    std::fs::write(&files.registry_path, edit(&text)).expect("test kit");
    let (registry, hash) = regions::load(&files.registry_path).expect("test kit");
    let config = std::fs::read_to_string(&files.config_path).expect("test kit");
    let config = config.replace(&files.registry_hash.to_string(), &hash.to_string());
    std::fs::write(&files.config_path, config).expect("test kit");
    files.registry = registry;
    files.registry_hash = hash;
}

/// The registry text with every contract's per-requester volume raised to
/// 10 million a minute and a day: benchmarks measure throughput, not the
/// limit (tests of the limit are in `tests/tests/match_limits.rs`).
pub fn unlimited_volume(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 4096);
    for line in text.lines() {
        if line.starts_with("volume = ") {
            continue;
        }
        out.push_str(line);
        out.push('\n');
        if line.starts_with("budget = ") {
            out.push_str("volume = { per_minute = 10000000, per_day = 10000000 }\n");
        }
    }
    out
}

/// [`city_files`] with [`unlimited_volume`]: for benchmarks.
pub fn city_files_for_load(city: &str, extra: &str) -> CityFiles {
    let mut files = city_files(city, extra);
    edit_registry(&mut files, unlimited_volume);
    files
}
