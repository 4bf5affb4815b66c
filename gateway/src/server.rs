//! Starting and stopping one gateway: load and check the registry and keys,
//! open (and verify) the ledger, start the writer, serve HTTP until the
//! shutdown signal, then drain the writer so nothing acknowledged is lost.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use proofs::subject::SubjectKey;
use tokio::net::TcpListener;

use crate::auth::Verifier;
use crate::clock::Clock;
use crate::config::Config;
use crate::keyfile;
use crate::ledger::{Ledger, LocalEndorsers, OpenReport};
use crate::light::LightClients;
use crate::metrics::Metrics;
use crate::state::AppState;
use crate::store::SledStore;
use crate::writer::{Writer, WriterConfig, WriterThread};

/// An opened gateway, ready to serve.
pub struct Gateway {
    /// Shared state (also used by in-process tests).
    pub state: Arc<AppState>,
    /// What the ledger check on open found.
    pub open_report: OpenReport,
    writer_thread: WriterThread,
    relay: Option<(relay::RelayConfig, Duration)>,
    webhooks: std::collections::BTreeMap<String, reqwest::Url>,
    http: crate::http_serve::Limits,
}

impl Gateway {
    /// Opens the gateway described by `cfg`: every check that can fail does so here.
    pub fn open(cfg: &Config, clock: Arc<dyn Clock>) -> anyhow::Result<Gateway> {
        let registry = regions::load_pinned(&cfg.registry, cfg.registry_sha256)
            .with_context(|| format!("registry {}", cfg.registry.display()))?;
        let roots = registry
            .trust_roots(cfg.registry_sha256)
            .context("registry validation")?;
        let city = registry
            .city(&cfg.city)
            .with_context(|| format!("city `{}` is not in the registry", cfg.city))?
            .clone();
        let chain = roots
            .chains
            .get(&city.chain.chain_id)
            .context("the city's chain is missing from the trust roots")?
            .clone();

        let (_, gw_key) = keyfile::read_signing(&cfg.keys.gateway)?;
        let gw_member = roots
            .members
            .get(&city.gateway.id)
            .context("the city's gateway is not a registry member")?;
        if gw_key.public() != gw_member.signing {
            bail!(
                "keys.gateway: {} is not the key the registry lists for `{}`",
                cfg.keys.gateway.display(),
                city.gateway.id
            );
        }
        let mut endorsers = Vec::new();
        for p in &cfg.keys.endorsers {
            let (_, k) = keyfile::read_signing(p)?;
            let idx = chain
                .endorsers()
                .iter()
                .position(|e| *e == k.public())
                .with_context(|| {
                    format!(
                        "keys.endorsers: {} is not an endorser of chain `{}`",
                        p.display(),
                        chain.chain_id()
                    )
                })?;
            if endorsers.iter().any(|(i, _)| *i == idx as u16) {
                bail!(
                    "keys.endorsers: {} repeats endorser {}",
                    p.display(),
                    idx + 1
                );
            }
            endorsers.push((idx as u16, k));
        }
        endorsers.sort_by_key(|(i, _)| *i);
        if endorsers.len() < usize::from(chain.threshold()) {
            bail!(
                "keys.endorsers: {} endorser keys held, chain `{}` needs {}",
                endorsers.len(),
                chain.chain_id(),
                chain.threshold()
            );
        }
        let (_, subject_key): (_, SubjectKey) = keyfile::read_subject(&cfg.keys.subject)?;
        let data_keys = Arc::new(read_data_keys(cfg)?);
        let mut custody = std::collections::HashMap::new();
        for p in &cfg.keys.custody {
            let (id, k) = keyfile::read_hpke(p)?;
            let member = roots
                .members
                .get(&id)
                .filter(|m| {
                    matches!(
                        m.role,
                        proofs::Role::Department | proofs::Role::ServiceCentre
                    ) && m.city == cfg.city
                })
                .with_context(|| {
                    format!(
                        "keys.custody: {} is for `{id}`, not a department or service centre of {}",
                        p.display(),
                        cfg.city
                    )
                })?;
            if member.hpke != Some(k.public()) {
                bail!(
                    "keys.custody: {} is not the HPKE key the registry lists for `{id}`",
                    p.display()
                );
            }
            custody.insert(id, k);
        }
        let mut centre_keys = std::collections::HashMap::new();
        for p in &cfg.keys.centres {
            let (id, k) = keyfile::read_signing(p)?;
            let ok = roots.members.get(&id).is_some_and(|m| {
                m.role == proofs::Role::ServiceCentre
                    && m.city == cfg.city
                    && m.signing == k.public()
            });
            if !ok {
                bail!(
                    "keys.centres: {} is not the registry key of a service centre of {}",
                    p.display(),
                    cfg.city
                );
            }
            centre_keys.insert(id, k);
        }

        let mut webhooks = std::collections::BTreeMap::new();
        for (member, url) in &cfg.webhooks {
            let ok = roots.members.get(member).is_some_and(|m| {
                matches!(m.role, proofs::Role::Utility | proofs::Role::Department)
                    && m.city == cfg.city
            });
            if !ok {
                bail!(
                    "webhooks: `{member}` is not a utility or department of {}",
                    cfg.city
                );
            }
            let u = crate::webhook::check_url(url)
                .map_err(|e| anyhow::anyhow!("webhooks.{member}: {e}"))?;
            webhooks.insert(member.clone(), u);
        }
        std::fs::create_dir_all(&cfg.data_dir)
            .with_context(|| format!("data_dir {}", cfg.data_dir.display()))?;
        let store: Arc<dyn crate::store::Store> = Arc::new(
            SledStore::open(&cfg.data_dir.join("ledger")).with_context(|| {
                format!(
                    "opening the ledger store {} (run `tongban store check`; restore from a backup if it is damaged)",
                    cfg.data_dir.join("ledger").display()
                )
            })?,
        );
        // The ledger's look-up index in a database of its own: its background
        // writes never hold the ledger's write lock or lengthen its flushes.
        let index_store: Arc<dyn crate::store::Store> = Arc::new(
            SledStore::open_derived(&cfg.data_dir.join("index"), 256 << 20).with_context(|| {
                format!(
                    "opening the index store {}",
                    cfg.data_dir.join("index").display()
                )
            })?,
        );
        let light = Arc::new(
            LightClients::open(store.clone(), roots.clone(), &city.chain.chain_id)
                .context("opening the light clients")?,
        );
        let relay = match &cfg.relay {
            None => None,
            Some(r) => {
                let mut rc = crate::network::relay_config(
                    &registry,
                    &city.gateway.id,
                    gw_key.clone(),
                    &r.listen,
                    &r.peers,
                )?;
                rc.request_timeout = Duration::from_millis(r.request_timeout_ms);
                Some((rc, Duration::from_millis(r.sync_interval_ms)))
            }
        };
        let (ledger, open_report) = Ledger::open_with(
            store,
            chain,
            Arc::new(LocalEndorsers::new(endorsers)),
            data_keys,
            clock.now_ms(),
            crate::index::IndexConfig {
                memtable_entries: cfg.ledger.index_memtable_entries,
                ..crate::index::IndexConfig::default()
            },
            index_store,
        )
        .context("opening the ledger")?;
        ledger.set_min_free_bytes(cfg.ledger.min_free_bytes);
        let ledger = Arc::new(ledger);
        let (writer, writer_thread) = Writer::spawn(
            ledger.clone(),
            clock.clone(),
            WriterConfig {
                block_interval: Duration::from_millis(cfg.ledger.block_interval_ms),
                max_block_txs: cfg.ledger.max_block_txs,
                queue: cfg.ledger.queue,
            },
        );
        let state = Arc::new(AppState {
            verifier: Verifier::new(&city.gateway.id, cfg.http.clock_skew_ms, clock.now_ms()),
            registry: Arc::new(registry),
            registry_hash: cfg.registry_sha256,
            roots,
            city: cfg.city.clone(),
            gateway_id: city.gateway.id.clone(),
            ledger,
            writer,
            subject_key,
            clock,
            max_body_bytes: cfg.http.max_body_bytes,
            metrics: Metrics::default(),
            gateway_key: gw_key,
            custody,
            light,
            relay: std::sync::OnceLock::new(),
            centre_keys,
            timing: cfg.applications,
            engine: std::sync::OnceLock::new(),
            webhooks: std::sync::OnceLock::new(),
            guards: crate::guard::MatchGuards::default(),
        });
        Ok(Gateway {
            state,
            open_report,
            writer_thread,
            relay,
            webhooks,
            http: crate::http_serve::Limits::from(&cfg.http),
        })
    }

    /// Serves HTTP on `listener` (within the `[http]` limits) until `shutdown`
    /// completes, then gives the requests in flight up to
    /// `http.shutdown_grace_ms` to finish, drops the connections still open,
    /// and drains the ledger writer: every write it took, acknowledged or
    /// not yet, is applied before this returns.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let Gateway {
            state,
            writer_thread,
            relay,
            webhooks,
            http,
            ..
        } = self;
        if let Some((rc, sync)) = relay {
            let handler = Arc::new(crate::network::GatewayHandler::new(&state));
            let node = relay::Relay::start(rc, handler)
                .await
                .context("starting the relay")?;
            tracing::info!(peer_id = %node.local_peer_id(), "relay started");
            let _ = state.relay.set(node);
            tokio::spawn(crate::network::follow(Arc::downgrade(&state), sync));
            tokio::spawn(crate::network::push_headers(
                Arc::downgrade(&state),
                Duration::from_millis(100),
            ));
        }
        let engine = crate::applications::Engine::start(&state);
        let _ = state.engine.set(engine);
        if !webhooks.is_empty() {
            let _ = state
                .webhooks
                .set(crate::webhook::Pusher::start(&state, &webhooks));
        }
        let app = crate::api::router(state.clone());
        let writer = state.writer.clone();
        let weak = Arc::downgrade(&state);
        let relay = state.relay.get().cloned();
        let connections = state.metrics.connections.clone();
        drop(state);
        crate::http_serve::serve(listener, app, http, connections, shutdown).await;
        // Stop the relay (requests in flight fail at once), then the writer:
        // what it already took is applied before it exits.
        if let Some(r) = relay {
            r.shutdown().await;
        }
        writer.close();
        drop(writer);
        // Every handler (and so every writer handle) is gone: the writer applies
        // what is queued, then exits.
        tokio::task::spawn_blocking(move || writer_thread.join())
            .await
            .context("joining the ledger writer")?;
        // Background tasks let go of the state (and so of the store) shortly.
        for _ in 0..500 {
            if weak.strong_count() == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if weak.strong_count() > 0 {
            tracing::warn!("background tasks still hold the gateway state after 10 s");
        }
        Ok(())
    }
}

/// What `tongban store check` found.
#[derive(Debug)]
pub struct StoreCheck {
    /// What opening the ledger verified (chain, value-log extents).
    pub open: OpenReport,
    /// Record values opened and checked against their commitments.
    pub records: u64,
    /// Every fault found (empty: the store is sound).
    pub problems: Vec<String>,
}

/// Checks the stopped gateway's store offline: opens it as the gateway would
/// (every block against its certificate and tx root, every value-log pointer
/// against its segment), then opens every stored record value under the data
/// keys and checks it against its commitment on chain, and the index against
/// the blocks. Writes nothing, except what opening the store always does
/// (sled's recovery, the index's replay of recent blocks). An error: the
/// store cannot even be opened (a message naming what failed).
pub fn check_store(cfg: &Config) -> anyhow::Result<StoreCheck> {
    let (ledger, open) = open_stopped(cfg)?;
    let mut problems = Vec::new();
    let records = ledger.check_values(&mut |p| problems.push(p))?;
    Ok(StoreCheck {
        open,
        records,
        problems,
    })
}

/// Opens the store of a stopped gateway (no writer, no server).
fn open_stopped(cfg: &Config) -> anyhow::Result<(Ledger, OpenReport)> {
    let registry = regions::load_pinned(&cfg.registry, cfg.registry_sha256)
        .with_context(|| format!("registry {}", cfg.registry.display()))?;
    let roots = registry
        .trust_roots(cfg.registry_sha256)
        .context("registry validation")?;
    let city = registry
        .city(&cfg.city)
        .with_context(|| format!("city `{}` is not in the registry", cfg.city))?;
    let chain = roots
        .chains
        .get(&city.chain.chain_id)
        .context("the city's chain is missing from the trust roots")?
        .clone();
    let data = Arc::new(read_data_keys(cfg)?);
    let dir = cfg.data_dir.join("ledger");
    if !dir.join("db").exists() {
        bail!("no ledger store in {}", dir.display());
    }
    let store: Arc<dyn crate::store::Store> =
        Arc::new(SledStore::open(&dir).context("opening the ledger store")?);
    let index_store: Arc<dyn crate::store::Store> = Arc::new(
        SledStore::open_derived(&cfg.data_dir.join("index"), 256 << 20)
            .context("opening the index store")?,
    );
    let (ledger, open) = Ledger::open_with(
        store,
        chain,
        // Opening an existing store endorses nothing.
        Arc::new(LocalEndorsers::new(Vec::new())),
        data,
        0,
        crate::index::IndexConfig {
            memtable_entries: cfg.ledger.index_memtable_entries,
            ..crate::index::IndexConfig::default()
        },
        index_store,
    )
    .context("opening the ledger")?;
    Ok((ledger, open))
}

/// Re-encrypts a stopped gateway's stored values under `keys.data` (after a
/// rotation, with the old key under `keys.data_retired`); returns (blocks,
/// values) rewritten. Then the retired keys may be removed from the config.
pub fn reseal_store(cfg: &Config) -> anyhow::Result<(u64, u64)> {
    let (ledger, _) = open_stopped(cfg)?;
    Ok(ledger.reseal_values()?)
}

/// The data keys of `keys.data` (writes) and `keys.data_retired` (read only).
pub fn read_data_keys(cfg: &Config) -> anyhow::Result<crate::datakey::DataKeys> {
    let (_, current) = keyfile::read_data(&cfg.keys.data).context("keys.data")?;
    let mut retired = Vec::new();
    for p in &cfg.keys.data_retired {
        retired.push(keyfile::read_data(p).context("keys.data_retired")?.1);
    }
    Ok(crate::datakey::DataKeys::new(&current, &retired))
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!(
        "shutdown signal received; finishing requests in flight (up to http.shutdown_grace_ms)"
    );
}
