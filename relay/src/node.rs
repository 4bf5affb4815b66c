//! The swarm task and its handle.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use libp2p::futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, StreamExt};
use libp2p::request_response::{self, OutboundRequestId, ProtocolSupport, ResponseChannel};
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{
    Multiaddr, PeerId, StreamProtocol, Swarm, allow_block_list, identity, noise, tcp, yamux,
};
use proofs::keys::{PublicKey, SigningKey};
use thiserror::Error;
use tokio::sync::{mpsc, oneshot};

use crate::frame::{Refusal, Request, Response};

const PROTOCOL: StreamProtocol = StreamProtocol::new("/tongban/relay/1");
/// Request/response streams per connection at once (each direction).
const MAX_STREAMS: usize = 2048;

/// A gateway or hub this node may connect with.
#[derive(Debug, Clone)]
pub struct PeerInfo {
    /// Registry id.
    pub id: String,
    /// Its registry Ed25519 key (its libp2p identity).
    pub key: PublicKey,
    /// Where to dial it (empty: it dials us).
    pub addrs: Vec<Multiaddr>,
}

/// How a relay node runs.
#[derive(Clone)]
pub struct RelayConfig {
    /// This gateway's registry id.
    pub id: String,
    /// This gateway's key (its libp2p identity and end-to-end signer).
    pub key: SigningKey,
    /// Addresses to listen on.
    pub listen: Vec<Multiaddr>,
    /// The allowlist: the only identities that may connect, with their addresses.
    pub peers: Vec<PeerInfo>,
    /// Every gateway's and hub's key by id, to check end-to-end signatures of
    /// relayed frames (a superset of `peers`).
    pub directory: BTreeMap<String, PublicKey>,
    /// Destination id → next hop id, for destinations reached through a hub.
    pub routes: BTreeMap<String, String>,
    /// Whether this node forwards frames for others (a hub).
    pub forward: bool,
    /// Largest frame accepted or sent, in bytes.
    pub max_frame: usize,
    /// Time for one attempt of a request.
    pub request_timeout: Duration,
    /// Attempts before a request fails (connection failures and unreachable hops are retried).
    pub attempts: u32,
    /// Inbound requests handled at once; more are refused with `relay.busy`.
    pub max_inflight: usize,
    /// Outbound requests queued for the swarm task.
    pub queue: usize,
    /// How often disconnected peers with addresses are redialled.
    pub redial: Duration,
}

impl RelayConfig {
    /// Defaults for `id` with `key`.
    pub fn new(id: impl Into<String>, key: SigningKey) -> Self {
        RelayConfig {
            id: id.into(),
            key,
            listen: Vec::new(),
            peers: Vec::new(),
            directory: BTreeMap::new(),
            routes: BTreeMap::new(),
            forward: false,
            max_frame: 8 << 20,
            request_timeout: Duration::from_secs(10),
            attempts: 5,
            max_inflight: 512,
            queue: 4096,
            redial: Duration::from_millis(500),
        }
    }
}

/// What a service returns: a body or a refusal.
pub type HandlerFuture = Pin<Box<dyn Future<Output = Result<Vec<u8>, Refusal>> + Send>>;

/// The services this node offers to its peers.
pub trait Handler: Send + Sync + 'static {
    /// Handles one request from gateway `from` (authenticated) to `service`.
    fn handle(&self, from: &str, service: &str, body: Vec<u8>) -> HandlerFuture;
}

/// Why a request failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RelayError {
    /// No peer or route for the destination.
    #[error("no route to `{0}`")]
    NoRoute(String),
    /// Every attempt failed.
    #[error("`{peer}` could not be reached after {attempts} attempts: {reason}")]
    Unreachable {
        /// The destination.
        peer: String,
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        reason: String,
    },
    /// The destination (or a hub on the way) refused.
    #[error("refused: {0}")]
    Refused(Refusal),
    /// The response is malformed or its signature does not verify.
    #[error("bad response from `{peer}`: {reason}")]
    BadResponse {
        /// The destination.
        peer: String,
        /// What is wrong.
        reason: String,
    },
    /// The node has stopped.
    #[error("the relay has stopped")]
    Closed,
}

impl RelayError {
    /// Stable code.
    pub fn code(&self) -> &str {
        match self {
            RelayError::NoRoute(_) => "relay.no_route",
            RelayError::Unreachable { .. } => "relay.unreachable",
            RelayError::Refused(r) => &r.code,
            RelayError::BadResponse { .. } => "relay.bad_response",
            RelayError::Closed => "relay.closed",
        }
    }
}

/// Counters, for metrics.
#[derive(Debug, Default)]
pub struct RelayStats {
    /// Requests this node originated.
    pub requests_out: AtomicU64,
    /// Requests served here.
    pub requests_in: AtomicU64,
    /// Frames forwarded for others.
    pub forwarded: AtomicU64,
    /// Attempts retried.
    pub retries: AtomicU64,
    /// Requests refused by the replay window (stale or repeated nonces).
    pub replays_refused: AtomicU64,
    /// Connections refused (identity not on the allowlist).
    pub refused_connections: AtomicU64,
    /// Peers disconnected for malformed frames.
    pub malformed: AtomicU64,
    /// Connections opened (in or out); more than the peers means reconnects.
    pub connections_opened: AtomicU64,
    /// Connections closed.
    pub connections_closed: AtomicU64,
    /// Peers with at least one open connection now.
    pub connected_peers: AtomicU64,
    /// Per direction and service: outcomes and latency.
    pub services: std::sync::Mutex<BTreeMap<(Direction, String), ServiceTiming>>,
}

/// Which side of a request this node was on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Direction {
    /// This node asked (including every retry until the final outcome).
    Out,
    /// This node answered.
    In,
}

impl Direction {
    /// `out` or `in`.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Out => "out",
            Direction::In => "in",
        }
    }
}

/// Latency histogram bounds (milliseconds) of [`ServiceTiming`].
pub const LATENCY_BUCKETS_MS: [f64; 10] = [
    1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 250.0, 1000.0, 5000.0,
];

/// Outcomes and latency of one service in one direction.
#[derive(Debug, Clone, Default)]
pub struct ServiceTiming {
    /// Completed with an answer (which may itself be a refusal by the handler).
    pub ok: u64,
    /// Failed: refused by the relay layer, timed out, unreachable.
    pub failed: u64,
    /// Cumulative counts per bound of [`LATENCY_BUCKETS_MS`].
    pub buckets: [u64; 10],
    /// Sum of latencies (ms).
    pub sum_ms: f64,
}

/// Services kept apart in the statistics; others are counted as `other`
/// (a peer cannot grow the table by inventing names).
const MAX_SERVICES: usize = 32;

impl RelayStats {
    /// Records one request's outcome and latency.
    pub fn observe(&self, dir: Direction, service: &str, ok: bool, elapsed: Duration) {
        let mut m = self
            .services
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let key = if m.contains_key(&(dir, service.to_owned())) || m.len() < MAX_SERVICES {
            (dir, service.to_owned())
        } else {
            (dir, "other".to_owned())
        };
        let t = m.entry(key).or_default();
        if ok {
            t.ok += 1;
        } else {
            t.failed += 1;
        }
        let ms = elapsed.as_secs_f64() * 1000.0;
        for (i, b) in LATENCY_BUCKETS_MS.iter().enumerate() {
            if ms <= *b {
                t.buckets[i] += 1;
            }
        }
        t.sum_ms += ms;
    }
    /// A copy of the per-service table.
    pub fn services(&self) -> BTreeMap<(Direction, String), ServiceTiming> {
        self.services
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// A handle to a running relay node. Cloning is cheap; the node stops when
/// the last handle is dropped.
#[derive(Clone)]
pub struct Relay {
    inner: Arc<Inner>,
}

struct Inner {
    id: String,
    key: SigningKey,
    cmd: mpsc::Sender<Cmd>,
    peers: HashMap<String, (PeerId, Vec<Multiaddr>)>,
    directory: BTreeMap<String, PublicKey>,
    routes: BTreeMap<String, String>,
    nonce: AtomicU64,
    request_timeout: Duration,
    attempts: u32,
    max_frame: usize,
    stats: Arc<RelayStats>,
    local: PeerId,
}

impl Inner {
    /// A fresh nonce: `ms << 16 | counter`, strictly increasing and never
    /// behind this node's clock (the destination's replay window reads the
    /// time in it).
    fn next_nonce(&self) -> u64 {
        let clock = now_ms() << 16;
        let prev = self
            .nonce
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                Some(n.saturating_add(1).max(clock))
            })
            .unwrap_or(clock);
        prev.saturating_add(1).max(clock)
    }
}

enum Cmd {
    Send {
        peer: PeerId,
        addrs: Vec<Multiaddr>,
        frame: Vec<u8>,
        reply: oneshot::Sender<Result<Vec<u8>, String>>,
    },
    Listeners(oneshot::Sender<Vec<Multiaddr>>),
    Connected(oneshot::Sender<Vec<PeerId>>),
    Disconnect(PeerId),
    Shutdown,
}

/// The libp2p identity of a registry Ed25519 key.
pub fn peer_id(key: &PublicKey) -> PeerId {
    match identity::ed25519::PublicKey::try_from_bytes(key.as_bytes()) {
        Ok(k) => identity::PublicKey::from(k).to_peer_id(),
        // Registry keys are checked when loaded; an unusable one gets an
        // identity that matches nobody.
        Err(_) => PeerId::random(),
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Relay {
    /// Starts a node: listens, dials the peers with addresses, serves `handler`.
    pub async fn start(cfg: RelayConfig, handler: Arc<dyn Handler>) -> io::Result<Relay> {
        let kp = identity::Keypair::ed25519_from_bytes(cfg.key.to_seed())
            .map_err(|e| io::Error::other(e.to_string()))?;
        let local = kp.public().to_peer_id();
        let mut allow = allow_block_list::Behaviour::<allow_block_list::AllowedPeers>::default();
        let mut by_peer = HashMap::new();
        let mut peers = HashMap::new();
        for p in &cfg.peers {
            let pid = peer_id(&p.key);
            allow.allow_peer(pid);
            by_peer.insert(pid, p.id.clone());
            peers.insert(p.id.clone(), (pid, p.addrs.clone()));
        }
        let codec = Codec {
            max: cfg.max_frame + 1024,
        };
        let rr = request_response::Behaviour::with_codec(
            codec,
            [(PROTOCOL, ProtocolSupport::Full)],
            request_response::Config::default()
                .with_request_timeout(cfg.request_timeout)
                .with_max_concurrent_streams(MAX_STREAMS),
        );
        let mut swarm = libp2p::SwarmBuilder::with_existing_identity(kp)
            .with_tokio()
            .with_tcp(
                tcp::Config::default().nodelay(true),
                noise::Config::new,
                || {
                    // Twice the request/response stream cap below (and the
                    // most yamux's default 1 GiB connection window allows):
                    // a burst must queue, never reset the whole connection.
                    let mut c = yamux::Config::default();
                    c.set_max_num_streams(MAX_STREAMS * 2);
                    c
                },
            )
            .map_err(|e| io::Error::other(e.to_string()))?
            .with_behaviour(|_| Behaviour { allow, rr })
            .map_err(|e| io::Error::other(e.to_string()))?
            .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(3600)))
            .build();
        for a in &cfg.listen {
            swarm
                .listen_on(a.clone())
                .map_err(|e| io::Error::other(format!("listen on {a}: {e}")))?;
        }
        let (tx, rx) = mpsc::channel(cfg.queue.max(1));
        let stats = Arc::new(RelayStats::default());
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        let mut task = Task {
            swarm,
            rx,
            by_peer,
            dial: cfg
                .peers
                .iter()
                .filter(|p| !p.addrs.is_empty())
                .map(|p| (peer_id(&p.key), p.addrs.clone()))
                .collect(),
            pending: HashMap::new(),
            inbound: HashMap::new(),
            next_token: 0,
            done_tx,
            done_rx,
            handler,
            inflight: 0,
            max_inflight: cfg.max_inflight,
            me: cfg.id.clone(),
            directory: Arc::new(cfg.directory.clone()),
            routes: cfg.routes.clone(),
            peers_by_id: peers.clone(),
            forward: cfg.forward,
            key: cfg.key.clone(),
            max_frame: cfg.max_frame,
            stats: stats.clone(),
            listen_waiters: Vec::new(),
            redial: cfg.redial,
            replay: crate::frame::ReplayWindow::default(),
        };
        tokio::spawn(async move { task.run().await });
        let seed = now_ms().wrapping_shl(16);
        Ok(Relay {
            inner: Arc::new(Inner {
                id: cfg.id,
                key: cfg.key,
                cmd: tx,
                peers,
                directory: cfg.directory,
                routes: cfg.routes,
                nonce: AtomicU64::new(seed),
                request_timeout: cfg.request_timeout,
                attempts: cfg.attempts.max(1),
                max_frame: cfg.max_frame,
                stats,
                local,
            }),
        })
    }

    /// This node's libp2p identity.
    pub fn local_peer_id(&self) -> PeerId {
        self.inner.local
    }

    /// This node's registry id.
    pub fn id(&self) -> &str {
        &self.inner.id
    }

    /// Counters.
    pub fn stats(&self) -> &RelayStats {
        &self.inner.stats
    }

    /// The addresses the node listens on (waits for the first one).
    pub async fn listen_addrs(&self) -> Vec<Multiaddr> {
        let (tx, rx) = oneshot::channel();
        if self.inner.cmd.send(Cmd::Listeners(tx)).await.is_err() {
            return Vec::new();
        }
        rx.await.unwrap_or_default()
    }

    /// Registry ids of the peers connected now.
    pub async fn connected(&self) -> Vec<String> {
        let (tx, rx) = oneshot::channel();
        if self.inner.cmd.send(Cmd::Connected(tx)).await.is_err() {
            return Vec::new();
        }
        let ids = rx.await.unwrap_or_default();
        let mut out: Vec<String> = self
            .inner
            .peers
            .iter()
            .filter(|(_, (p, _))| ids.contains(p))
            .map(|(id, _)| id.clone())
            .collect();
        out.sort();
        out
    }

    /// Stops the node: connections close and requests in flight fail at once.
    pub async fn shutdown(&self) {
        let _ = self.inner.cmd.send(Cmd::Shutdown).await;
    }

    /// Closes every connection to peer `id` (they are redialled later).
    pub async fn disconnect(&self, id: &str) {
        if let Some((p, _)) = self.inner.peers.get(id) {
            let _ = self.inner.cmd.send(Cmd::Disconnect(*p)).await;
        }
    }

    /// The next hop towards `to`.
    pub fn next_hop(&self, to: &str) -> Option<String> {
        let hop = self.inner.routes.get(to).map_or(to, String::as_str);
        self.inner.peers.contains_key(hop).then(|| hop.to_owned())
    }

    /// Sends `body` to `service` at gateway `to` (directly or through its hub)
    /// and returns the response body. Connection failures, timeouts and an
    /// unreachable destination behind a hub are retried with backoff.
    pub async fn request(
        &self,
        to: &str,
        service: &str,
        body: Vec<u8>,
    ) -> Result<Vec<u8>, RelayError> {
        let t = std::time::Instant::now();
        let r = self.request_once(to, service, body).await;
        self.inner
            .stats
            .observe(Direction::Out, service, r.is_ok(), t.elapsed());
        r
    }

    /// Sends an encoded request frame as it is to the direct peer `hop` and
    /// returns the raw response frame. Gateways never use it: it is what a
    /// dishonest peer (a hub replaying a frame it forwarded) can do, for
    /// tests of the receiving side.
    #[doc(hidden)]
    pub async fn send_frame(&self, hop: &str, frame: Vec<u8>) -> Result<Vec<u8>, RelayError> {
        let i = &self.inner;
        let (peer, addrs) = i
            .peers
            .get(hop)
            .cloned()
            .ok_or_else(|| RelayError::NoRoute(hop.to_owned()))?;
        let (tx, rx) = oneshot::channel();
        i.cmd
            .send(Cmd::Send {
                peer,
                addrs,
                frame,
                reply: tx,
            })
            .await
            .map_err(|_| RelayError::Closed)?;
        match tokio::time::timeout(i.request_timeout + Duration::from_secs(1), rx).await {
            Ok(Ok(Ok(b))) => Ok(b),
            Ok(Ok(Err(reason))) => Err(RelayError::Unreachable {
                peer: hop.to_owned(),
                attempts: 1,
                reason,
            }),
            Ok(Err(_)) => Err(RelayError::Closed),
            Err(_) => Err(RelayError::Unreachable {
                peer: hop.to_owned(),
                attempts: 1,
                reason: "timed out".into(),
            }),
        }
    }

    async fn request_once(
        &self,
        to: &str,
        service: &str,
        body: Vec<u8>,
    ) -> Result<Vec<u8>, RelayError> {
        let i = &self.inner;
        let hop = self
            .next_hop(to)
            .ok_or_else(|| RelayError::NoRoute(to.to_owned()))?;
        let (peer, addrs) = i.peers[&hop].clone();
        let relayed = hop != to;
        let mut req = Request {
            from: i.id.clone(),
            to: to.to_owned(),
            service: service.to_owned(),
            body,
            nonce: 0,
            signature: None,
        };
        i.stats.requests_out.fetch_add(1, Ordering::Relaxed);
        let mut last = String::new();
        for attempt in 0..i.attempts {
            if attempt > 0 {
                i.stats.retries.fetch_add(1, Ordering::Relaxed);
                let backoff = Duration::from_millis(100u64 << attempt.min(5));
                tokio::time::sleep(backoff.min(Duration::from_secs(3))).await;
            }
            // Each attempt is a new frame with a fresh nonce: the destination
            // takes a nonce once (its replay window), and the services are
            // idempotent, so a retry of a request that did arrive is answered
            // as the first was.
            req.nonce = i.next_nonce();
            if relayed {
                req.sign(&i.key);
            }
            let digest = req.digest();
            let frame = req.encode();
            if frame.len() > i.max_frame + 1024 {
                return Err(RelayError::BadResponse {
                    peer: to.to_owned(),
                    reason: format!("request of {} bytes exceeds the frame limit", frame.len()),
                });
            }
            let (tx, rx) = oneshot::channel();
            i.cmd
                .send(Cmd::Send {
                    peer,
                    addrs: addrs.clone(),
                    frame: frame.clone(),
                    reply: tx,
                })
                .await
                .map_err(|_| RelayError::Closed)?;
            let got =
                match tokio::time::timeout(i.request_timeout + Duration::from_secs(1), rx).await {
                    Ok(Ok(r)) => r,
                    Ok(Err(_)) => return Err(RelayError::Closed),
                    Err(_) => Err("timed out".to_owned()),
                };
            let bytes = match got {
                Ok(b) => b,
                Err(e) => {
                    last = e;
                    continue;
                }
            };
            let resp =
                Response::decode(&bytes, i.max_frame).map_err(|e| RelayError::BadResponse {
                    peer: to.to_owned(),
                    reason: e.to_string(),
                })?;
            if relayed {
                // A hub's own refusals (no route, unreachable) are unsigned; a
                // destination's answer must carry its signature.
                let signed_ok = resp.signature.as_ref().is_some_and(|s| {
                    i.directory
                        .get(to)
                        .is_some_and(|k| k.verify(&resp.signing_bytes(&digest), s).is_ok())
                });
                if !signed_ok {
                    match &resp.result {
                        Err(r) if r.code == "relay.unreachable" => {
                            last = r.to_string();
                            continue;
                        }
                        Err(r) if r.code.starts_with("relay.") => {
                            return Err(RelayError::Refused(r.clone()));
                        }
                        _ => {
                            return Err(RelayError::BadResponse {
                                peer: to.to_owned(),
                                reason:
                                    "relayed response without a valid signature of the destination"
                                        .into(),
                            });
                        }
                    }
                }
            }
            return resp.result.map_err(RelayError::Refused);
        }
        Err(RelayError::Unreachable {
            peer: to.to_owned(),
            attempts: i.attempts,
            reason: last,
        })
    }
}

#[derive(NetworkBehaviour)]
struct Behaviour {
    // First: a refused identity never reaches the protocol behaviour.
    allow: allow_block_list::Behaviour<allow_block_list::AllowedPeers>,
    rr: request_response::Behaviour<Codec>,
}

/// Length-prefixed frames, capped before allocation.
#[derive(Clone)]
struct Codec {
    max: usize,
}

async fn read_frame<T: AsyncRead + Unpin + Send>(io: &mut T, max: usize) -> io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    io.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {len} bytes exceeds the limit of {max}"),
        ));
    }
    let mut buf = vec![0u8; len];
    io.read_exact(&mut buf).await?;
    Ok(buf)
}

async fn write_frame<T: AsyncWrite + Unpin + Send>(io: &mut T, data: &[u8]) -> io::Result<()> {
    let len = u32::try_from(data.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "frame too large"))?;
    io.write_all(&len.to_be_bytes()).await?;
    io.write_all(data).await
}

impl request_response::Codec for Codec {
    type Protocol = StreamProtocol;
    type Request = Vec<u8>;
    type Response = Vec<u8>;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Vec<u8>>
    where
        T: AsyncRead + Unpin + Send,
    {
        // request_response swallows read errors of inbound requests without
        // naming the peer, so an oversized frame comes up as an empty request
        // (never a valid frame) and the node disconnects its sender.
        match read_frame(io, self.max).await {
            Err(e) if e.kind() == io::ErrorKind::InvalidData => Ok(Vec::new()),
            other => other,
        }
    }
    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Vec<u8>>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_frame(io, self.max).await
    }
    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: Vec<u8>,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_frame(io, &req).await
    }
    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        res: Vec<u8>,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_frame(io, &res).await
    }
}

enum Pending {
    Local(oneshot::Sender<Result<Vec<u8>, String>>),
    Forward(u64),
}

struct Task {
    swarm: Swarm<Behaviour>,
    rx: mpsc::Receiver<Cmd>,
    by_peer: HashMap<PeerId, String>,
    dial: Vec<(PeerId, Vec<Multiaddr>)>,
    pending: HashMap<OutboundRequestId, Pending>,
    inbound: HashMap<u64, ResponseChannel<Vec<u8>>>,
    next_token: u64,
    done_tx: mpsc::UnboundedSender<(u64, Vec<u8>)>,
    done_rx: mpsc::UnboundedReceiver<(u64, Vec<u8>)>,
    handler: Arc<dyn Handler>,
    inflight: usize,
    max_inflight: usize,
    me: String,
    directory: Arc<BTreeMap<String, PublicKey>>,
    routes: BTreeMap<String, String>,
    peers_by_id: HashMap<String, (PeerId, Vec<Multiaddr>)>,
    forward: bool,
    key: SigningKey,
    max_frame: usize,
    stats: Arc<RelayStats>,
    listen_waiters: Vec<oneshot::Sender<Vec<Multiaddr>>>,
    redial: Duration,
    replay: crate::frame::ReplayWindow,
}

fn refusal(code: &str, message: impl Into<String>) -> Vec<u8> {
    Response {
        result: Err(Refusal::new(code, message)),
        signature: None,
    }
    .encode()
}

impl Task {
    async fn run(&mut self) {
        let mut redial = tokio::time::interval(self.redial);
        redial.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                cmd = self.rx.recv() => match cmd {
                    None | Some(Cmd::Shutdown) => break,
                    Some(c) => self.on_cmd(c),
                },
                Some((token, resp)) = self.done_rx.recv() => {
                    self.inflight = self.inflight.saturating_sub(1);
                    self.respond(token, resp);
                }
                ev = self.swarm.select_next_some() => self.on_event(ev),
                _ = redial.tick() => self.redial_peers(),
            }
        }
        tracing::debug!(node = %self.me, "relay stopped");
    }

    fn redial_peers(&mut self) {
        for (p, addrs) in &self.dial {
            if !self.swarm.is_connected(p) {
                let opts = DialOpts::peer_id(*p)
                    .addresses(addrs.clone())
                    .condition(PeerCondition::DisconnectedAndNotDialing)
                    .build();
                let _ = self.swarm.dial(opts);
            }
        }
    }

    fn on_cmd(&mut self, c: Cmd) {
        match c {
            Cmd::Send {
                peer,
                addrs,
                frame,
                reply,
            } => {
                let id = self
                    .swarm
                    .behaviour_mut()
                    .rr
                    .send_request_with_addresses(&peer, frame, addrs);
                self.pending.insert(id, Pending::Local(reply));
            }
            Cmd::Listeners(tx) => {
                let addrs: Vec<Multiaddr> = self.swarm.listeners().cloned().collect();
                if addrs.is_empty() {
                    self.listen_waiters.push(tx);
                } else {
                    let _ = tx.send(addrs);
                }
            }
            Cmd::Connected(tx) => {
                let _ = tx.send(self.swarm.connected_peers().copied().collect());
            }
            Cmd::Disconnect(p) => {
                let _ = self.swarm.disconnect_peer_id(p);
            }
            Cmd::Shutdown => {}
        }
    }

    fn respond(&mut self, token: u64, resp: Vec<u8>) {
        if let Some(ch) = self.inbound.remove(&token) {
            let _ = self.swarm.behaviour_mut().rr.send_response(ch, resp);
        }
    }

    fn garbage(&mut self, peer: PeerId, why: &str) {
        self.stats.malformed.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(peer = %peer, member = ?self.by_peer.get(&peer), reason = why, "malformed frame: disconnecting the peer");
        let _ = self.swarm.disconnect_peer_id(peer);
    }

    fn on_event(&mut self, ev: SwarmEvent<BehaviourEvent>) {
        match ev {
            SwarmEvent::NewListenAddr { address, .. } => {
                tracing::info!(node = %self.me, %address, "relay listening");
                let addrs: Vec<Multiaddr> = self.swarm.listeners().cloned().collect();
                for w in self.listen_waiters.drain(..) {
                    let _ = w.send(addrs.clone());
                }
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                num_established,
                ..
            } => {
                self.stats
                    .connections_opened
                    .fetch_add(1, Ordering::Relaxed);
                if num_established.get() == 1 {
                    self.stats.connected_peers.fetch_add(1, Ordering::Relaxed);
                }
                tracing::debug!(node = %self.me, peer = ?self.by_peer.get(&peer_id), "connected");
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established,
                ..
            } => {
                self.stats
                    .connections_closed
                    .fetch_add(1, Ordering::Relaxed);
                if num_established == 0 {
                    self.stats.connected_peers.fetch_sub(1, Ordering::Relaxed);
                }
                tracing::debug!(node = %self.me, peer = ?self.by_peer.get(&peer_id), "disconnected");
            }
            SwarmEvent::IncomingConnectionError { error, .. } => {
                if matches!(error, libp2p::swarm::ListenError::Denied { .. }) {
                    self.stats
                        .refused_connections
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(node = %self.me, "refused a connection from an identity not in the registry");
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Rr(ev)) => self.on_rr(ev),
            _ => {}
        }
    }

    fn on_rr(&mut self, ev: request_response::Event<Vec<u8>, Vec<u8>>) {
        use request_response::{Event, Message};
        match ev {
            Event::Message {
                peer,
                message:
                    Message::Request {
                        request, channel, ..
                    },
                ..
            } => self.on_request(peer, request, channel),
            Event::Message {
                message:
                    Message::Response {
                        request_id,
                        response,
                    },
                ..
            } => match self.pending.remove(&request_id) {
                Some(Pending::Local(tx)) => {
                    let _ = tx.send(Ok(response));
                }
                Some(Pending::Forward(token)) => self.respond(token, response),
                None => {}
            },
            Event::OutboundFailure {
                request_id, error, ..
            } => match self.pending.remove(&request_id) {
                Some(Pending::Local(tx)) => {
                    let _ = tx.send(Err(error.to_string()));
                }
                Some(Pending::Forward(token)) => self.respond(
                    token,
                    refusal(
                        "relay.unreachable",
                        format!("the hub could not reach the destination: {error}"),
                    ),
                ),
                None => {}
            },
            Event::InboundFailure { peer, error, .. } => {
                if let request_response::InboundFailure::Io(e) = &error
                    && e.kind() == io::ErrorKind::InvalidData
                {
                    self.garbage(peer, &e.to_string());
                }
            }
            Event::ResponseSent { .. } => {}
        }
    }

    fn on_request(&mut self, peer: PeerId, bytes: Vec<u8>, channel: ResponseChannel<Vec<u8>>) {
        let Some(member) = self.by_peer.get(&peer).cloned() else {
            // The allowlist makes this unreachable; refuse anyway.
            let _ = self.swarm.disconnect_peer_id(peer);
            return;
        };
        let req = match Request::decode(&bytes, self.max_frame) {
            Ok(r) => r,
            Err(_) if bytes.is_empty() => {
                let _ = self.swarm.behaviour_mut().rr.send_response(
                    channel,
                    refusal(
                        "relay.too_large",
                        format!("frames are limited to {} bytes", self.max_frame),
                    ),
                );
                self.garbage(peer, "oversized or empty frame");
                return;
            }
            Err(e) => {
                let _ = self.swarm.behaviour_mut().rr.send_response(
                    channel,
                    refusal("relay.malformed", format!("request frame: {e}")),
                );
                self.garbage(peer, &e.to_string());
                return;
            }
        };
        let token = self.next_token;
        self.next_token += 1;
        self.inbound.insert(token, channel);
        if req.to != self.me {
            self.forward_request(token, &member, req, bytes);
            return;
        }
        // Who sent it: the Noise identity, or — relayed — the origin's signature.
        let direct = req.from == member;
        if !direct {
            let ok = self.directory.get(&req.from).is_some_and(|k| req.verify(k));
            if !ok {
                self.respond(
                    token,
                    refusal(
                        "relay.bad_signature",
                        format!(
                            "relayed request claims origin `{}` without its valid signature",
                            req.from
                        ),
                    ),
                );
                return;
            }
        }
        // Each (origin, nonce) once, and only while fresh: a hub cannot
        // replay a frame it forwarded.
        if let Err(r) = self.replay.check(&req.from, req.nonce, now_ms()) {
            self.stats.replays_refused.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(origin = %req.from, code = %r.code, "relay: request refused by the replay window");
            self.respond(token, refusal(&r.code, r.message));
            return;
        }
        if self.inflight >= self.max_inflight {
            self.respond(
                token,
                refusal("relay.busy", "too many requests in progress; retry later"),
            );
            return;
        }
        self.inflight += 1;
        self.stats.requests_in.fetch_add(1, Ordering::Relaxed);
        let handler = self.handler.clone();
        let done = self.done_tx.clone();
        let key = self.key.clone();
        let stats = self.stats.clone();
        tokio::spawn(async move {
            let t = std::time::Instant::now();
            let result = handler
                .handle(&req.from, &req.service, req.body.clone())
                .await;
            stats.observe(Direction::In, &req.service, result.is_ok(), t.elapsed());
            let mut resp = Response {
                result,
                signature: None,
            };
            if !direct {
                resp.signature = Some(key.sign(&resp.signing_bytes(&req.digest())));
            }
            let _ = done.send((token, resp.encode()));
        });
    }

    fn forward_request(&mut self, token: u64, member: &str, req: Request, bytes: Vec<u8>) {
        if !self.forward {
            self.respond(
                token,
                refusal(
                    "relay.no_route",
                    format!("`{}` does not forward; `{}` is not here", self.me, req.to),
                ),
            );
            return;
        }
        // Forwarded frames must be signed by their origin, who must be the sender.
        let origin_ok =
            req.from == member && self.directory.get(&req.from).is_some_and(|k| req.verify(k));
        if !origin_ok {
            self.respond(
                token,
                refusal(
                    "relay.bad_signature",
                    "a frame to forward must be signed by the peer that sent it",
                ),
            );
            return;
        }
        let hop = self.routes.get(&req.to).unwrap_or(&req.to).clone();
        let Some((p, addrs)) = self.peers_by_id.get(&hop).cloned() else {
            self.respond(
                token,
                refusal("relay.no_route", format!("no route to `{}`", req.to)),
            );
            return;
        };
        if hop != req.to {
            // One hop through a hub only: hubs do not chain.
            self.respond(
                token,
                refusal(
                    "relay.no_route",
                    format!("`{}` is not a direct peer", req.to),
                ),
            );
            return;
        }
        self.stats.forwarded.fetch_add(1, Ordering::Relaxed);
        let id = self
            .swarm
            .behaviour_mut()
            .rr
            .send_request_with_addresses(&p, bytes, addrs);
        self.pending.insert(id, Pending::Forward(token));
    }
}
