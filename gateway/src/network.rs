//! The gateway on libp2p: who it may talk to (from the registry), the services
//! it offers its peers, and header sync.
//!
//! Services: `match` (answer a selective match as the provider), `headers.pull`
//! (a range of this chain's certified headers), `headers.push` (a peer's new
//! header, verified by the light client before it is stored) and `proof` (the
//! bundle of a transaction on this chain by leaf hash).

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use libp2p::Multiaddr;
use proofs::Hash;
use proofs::header::CertifiedHeader;
use proofs::matching::MatchRequest;
use regions::Registry;
use relay::{Handler, HandlerFuture, PeerInfo, Refusal, Relay, RelayConfig};
use serde::{Deserialize, Serialize};

use crate::state::AppState;

/// Largest range of headers one pull returns.
pub const MAX_PULL: u64 = 512;

/// Where each registry gateway sits in the relay topology.
pub struct Topology {
    /// Every gateway's and hub's key.
    pub directory: BTreeMap<String, proofs::PublicKey>,
    /// Peers this node may connect with, and their registry addresses.
    pub peers: Vec<(String, proofs::PublicKey, Vec<String>)>,
    /// Destination → next hop.
    pub routes: BTreeMap<String, String>,
    /// Whether this node forwards for others.
    pub forward: bool,
}

/// The topology seen from `me` (a city gateway or a hub), from the registry:
/// a gateway with a `hub` talks only to its hub; everybody else reaches it
/// through that hub; the others talk directly.
pub fn topology(registry: &Registry, me: &str) -> Topology {
    let mut directory = BTreeMap::new();
    let mut nodes: Vec<(String, proofs::PublicKey, Vec<String>, Option<String>)> = Vec::new();
    for c in &registry.cities {
        if let Ok(k) = proofs::PublicKey::from_hex(&c.gateway.signing_key) {
            directory.insert(c.gateway.id.clone(), k);
            nodes.push((
                c.gateway.id.clone(),
                k,
                c.gateway.listen.clone(),
                c.gateway.hub.clone(),
            ));
        }
    }
    for h in &registry.hubs {
        if let Ok(k) = proofs::PublicKey::from_hex(&h.signing_key) {
            directory.insert(h.id.clone(), k);
            nodes.push((h.id.clone(), k, h.listen.clone(), None));
        }
    }
    let my_hub = nodes.iter().find(|n| n.0 == me).and_then(|n| n.3.clone());
    let mut peers = Vec::new();
    let mut routes = BTreeMap::new();
    for (id, key, listen, hub) in &nodes {
        if id == me {
            continue;
        }
        match (&my_hub, hub) {
            // Behind a hub: only the hub is a peer; everything goes through it.
            (Some(h), _) if h == id => peers.push((id.clone(), *key, listen.clone())),
            (Some(h), _) => {
                routes.insert(id.clone(), h.clone());
            }
            // The destination is behind a hub that is not me: go through it.
            (None, Some(h)) if h != me => {
                routes.insert(id.clone(), h.clone());
            }
            (None, _) => peers.push((id.clone(), *key, listen.clone())),
        }
    }
    let forward = nodes.iter().any(|n| n.3.as_deref() == Some(me));
    Topology {
        directory,
        peers,
        routes,
        forward,
    }
}

/// Builds the relay configuration of `me` with `overrides` (id → addresses)
/// replacing the registry's addresses.
pub fn relay_config(
    registry: &Registry,
    me: &str,
    key: proofs::SigningKey,
    listen: &[String],
    overrides: &BTreeMap<String, Vec<String>>,
) -> anyhow::Result<RelayConfig> {
    let t = topology(registry, me);
    let mut cfg = RelayConfig::new(me, key);
    cfg.listen = listen
        .iter()
        .map(|a| a.parse::<Multiaddr>())
        .collect::<Result<_, _>>()
        .map_err(|e| anyhow::anyhow!("relay.listen: {e}"))?;
    cfg.directory = t.directory;
    cfg.routes = t.routes;
    cfg.forward = t.forward;
    for (id, key, addrs) in t.peers {
        let addrs = overrides.get(&id).unwrap_or(&addrs);
        let addrs = addrs
            .iter()
            .filter_map(|a| a.parse::<Multiaddr>().ok())
            // Names are not resolved here: give IP addresses in `relay.peers`.
            .filter(|a| !a.to_string().starts_with("/dns"))
            .collect();
        cfg.peers.push(PeerInfo { id, key, addrs });
    }
    Ok(cfg)
}

/// A request for a range of headers.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pull {
    /// The chain (must be the answering gateway's).
    pub chain: String,
    /// First height.
    pub from: u64,
    /// Most headers wanted.
    pub max: u64,
}

/// The services a city gateway offers its peers.
pub struct GatewayHandler {
    state: Weak<AppState>,
}

impl GatewayHandler {
    /// A handler over the gateway's state (held weakly, so shutdown is not held up).
    pub fn new(state: &Arc<AppState>) -> Self {
        GatewayHandler {
            state: Arc::downgrade(state),
        }
    }
}

fn member_city(state: &AppState, id: &str) -> Option<String> {
    state.roots.members.get(id).map(|m| m.city.clone())
}

async fn serve(
    state: Arc<AppState>,
    from: String,
    service: String,
    body: Vec<u8>,
) -> Result<Vec<u8>, Refusal> {
    match service.as_str() {
        "match" => {
            let req: MatchRequest = crate::matching::open_remote(&state, &body)?;
            // A gateway carries only its own city's requests.
            if member_city(&state, &req.requester) != member_city(&state, &from) {
                return Err(Refusal::new(
                    "match.wrong_origin",
                    format!("`{from}` may not carry requests of `{}`", req.requester),
                ));
            }
            let a = crate::matching::answer(&state, req).await?;
            serde_json::to_vec(&a).map_err(|e| Refusal::new("internal", e.to_string()))
        }
        "headers.pull" => {
            let p: Pull = serde_json::from_slice(&body)
                .map_err(|e| Refusal::new("headers.malformed", e.to_string()))?;
            if p.chain != state.ledger.chain_id() {
                return Err(Refusal::new(
                    "headers.wrong_chain",
                    "this gateway serves its own chain only",
                ));
            }
            let head = state.ledger.head().height;
            let to = head.min(p.from.saturating_add(p.max.clamp(1, MAX_PULL)) - 1);
            let mut out: Vec<String> = Vec::new();
            for h in p.from..=to {
                match state.ledger.header(h) {
                    Ok(Some(ch)) => out.push(hex::encode(ch.encode())),
                    _ => break,
                }
            }
            serde_json::to_vec(&out).map_err(|e| Refusal::new("internal", e.to_string()))
        }
        "headers.push" => {
            let ch = CertifiedHeader::decode(&body)
                .map_err(|e| Refusal::new("headers.malformed", e.to_string()))?;
            state
                .light
                .observe(&ch, state.clock.now_ms())
                .map_err(|e| Refusal::new(e.code(), e.to_string()))?;
            Ok(Vec::new())
        }
        "proof" => {
            let leaf: Hash = serde_json::from_slice(&body)
                .map_err(|e| Refusal::new("proof.malformed", e.to_string()))?;
            match state.ledger.bundle(&leaf) {
                Ok(Some(b)) => Ok(b.encode()),
                Ok(None) => Err(Refusal::new(
                    "proof.not_found",
                    "no such transaction on this chain",
                )),
                Err(e) => Err(Refusal::new("internal", e.to_string())),
            }
        }
        "deliver" => {
            let d: crate::applications::Delivery = serde_json::from_slice(&body)
                .map_err(|e| Refusal::new("inbox.malformed", e.to_string()))?;
            if member_city(&state, &d.centre) != member_city(&state, &from) {
                return Err(Refusal::new(
                    "inbox.wrong_origin",
                    format!("`{from}` may not carry deliveries of `{}`", d.centre),
                ));
            }
            let st = crate::inbox::accept(&state, d).await?;
            serde_json::to_vec(&st).map_err(|e| Refusal::new("internal", e.to_string()))
        }
        "receipt" => {
            let p: crate::inbox::ReceiptPush = serde_json::from_slice(&body)
                .map_err(|e| Refusal::new("receipt.malformed", e.to_string()))?;
            let bundle = hex::decode(&p.bundle)
                .ok()
                .and_then(|b| proofs::ProofBundle::decode(&b).ok())
                .ok_or_else(|| Refusal::new("receipt.malformed", "bundle does not decode"))?;
            let engine = state
                .engine
                .get()
                .ok_or_else(|| Refusal::new("relay.stopping", "the engine is not running"))?;
            crate::applications::on_receipt(&state, engine, &p.delivery, &bundle).await?;
            Ok(Vec::new())
        }
        other => Err(Refusal::new(
            "relay.unknown_service",
            format!("no service `{other}`"),
        )),
    }
}

impl Handler for GatewayHandler {
    fn handle(&self, from: &str, service: &str, body: Vec<u8>) -> HandlerFuture {
        let state = self.state.upgrade();
        let (from, service) = (from.to_owned(), service.to_owned());
        Box::pin(async move {
            let Some(state) = state else {
                return Err(Refusal::new(
                    "relay.stopping",
                    "the gateway is shutting down",
                ));
            };
            serve(state, from, service, body).await
        })
    }
}

/// The gateway of the city whose chain is `chain`.
pub fn gateway_of_chain(registry: &Registry, chain: &str) -> Option<String> {
    registry
        .cities
        .iter()
        .find(|c| c.chain.chain_id == chain)
        .map(|c| c.gateway.id.clone())
}

/// Pulls each followed chain's new headers from its gateway, for as long as
/// the gateway runs.
pub async fn follow(state: Weak<AppState>, every: Duration) {
    let Some(chains) = state.upgrade().map(|s| s.light.chains()) else {
        return;
    };
    // One loop per chain: an unreachable city does not hold up the others.
    for chain in chains {
        let state = state.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(s) = state.upgrade() else { return };
                let Some(relay) = s.relay.get().cloned() else {
                    continue;
                };
                let view = SyncView {
                    registry: s.registry.clone(),
                    light: s.light.clone(),
                    clock: s.clock.clone(),
                };
                // The state is not held across the network wait.
                drop(s);
                if let Err(e) = sync_chain(&view, &relay, &chain).await {
                    tracing::debug!(chain = %chain, error = %e, "header sync");
                }
            }
        });
    }
}

/// What header sync needs of the gateway.
pub struct SyncView {
    /// The registry.
    pub registry: Arc<Registry>,
    /// The light clients.
    pub light: Arc<crate::light::LightClients>,
    /// Time.
    pub clock: Arc<dyn crate::clock::Clock>,
}

/// Pulls `chain`'s headers after the linked prefix, up to its head.
pub async fn sync_chain(state: &SyncView, relay: &Relay, chain: &str) -> anyhow::Result<u64> {
    let Some(gw) = gateway_of_chain(&state.registry, chain) else {
        anyhow::bail!("no gateway serves `{chain}`");
    };
    let mut stored = 0;
    loop {
        let st = state.light.status(chain).unwrap_or_default();
        if st.fork.is_some() {
            anyhow::bail!("chain frozen");
        }
        let from = st.linked_to.map_or(0, |h| h + 1);
        let body = serde_json::to_vec(&Pull {
            chain: chain.to_owned(),
            from,
            max: MAX_PULL,
        })?;
        let got = relay.request(&gw, "headers.pull", body).await?;
        let list: Vec<String> = serde_json::from_slice(&got)?;
        if list.is_empty() {
            return Ok(stored);
        }
        let n = list.len() as u64;
        for h in list {
            let ch = CertifiedHeader::decode(&hex::decode(h)?)?;
            if ch.header.chain_id != chain {
                anyhow::bail!("`{gw}` sent a header of another chain");
            }
            state.light.observe(&ch, state.clock.now_ms())?;
            stored += 1;
        }
        if n < MAX_PULL {
            return Ok(stored);
        }
    }
}

/// Pushes this chain's newest header to the other city gateways whenever the
/// head moves (at most every `every`); a peer still busy with the previous
/// push is skipped.
pub async fn push_headers(state: Weak<AppState>, every: Duration) {
    let busy: Arc<Mutex<HashSet<String>>> = Arc::default();
    let mut last = u64::MAX;
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(s) = state.upgrade() else { return };
        let Some(relay) = s.relay.get().cloned() else {
            continue;
        };
        let head = s.ledger.head().height;
        if head == last {
            continue;
        }
        last = head;
        let Ok(Some(h)) = s.ledger.header(head) else {
            continue;
        };
        let bytes = h.encode();
        let targets: Vec<String> = s
            .registry
            .cities
            .iter()
            .map(|c| c.gateway.id.clone())
            .filter(|g| *g != s.gateway_id)
            .collect();
        drop(s);
        for t in targets {
            if !busy
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(t.clone())
            {
                continue;
            }
            let (relay, busy, bytes) = (relay.clone(), busy.clone(), bytes.clone());
            tokio::spawn(async move {
                let r = tokio::time::timeout(
                    Duration::from_secs(5),
                    relay.request(&t, "headers.push", bytes),
                )
                .await;
                if let Ok(Err(e)) = r {
                    tracing::debug!(to = %t, error = %e, "header push");
                }
                busy.lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .remove(&t);
            });
        }
    }
}

/// Registry addresses overridden by configuration, by member id.
pub type AddressBook = BTreeMap<String, Vec<String>>;

/// A hub's handler: it forwards, and offers no service of its own.
pub struct HubHandler;

impl Handler for HubHandler {
    fn handle(&self, _from: &str, service: &str, _body: Vec<u8>) -> HandlerFuture {
        let service = service.to_owned();
        Box::pin(async move {
            Err(Refusal::new(
                "relay.unknown_service",
                format!("a hub offers no service `{service}`"),
            ))
        })
    }
}
