//! Serving HTTP/1.1 on a listener with the limits a public endpoint needs
//! (`axum::serve` has none): a connection cap with a brief wait, a limit per
//! client address, timeouts for the request head, the request body, idle
//! kept-alive connections and stalled response writes, accept errors that
//! back off instead of spinning or ending the process, and a shutdown with a
//! deadline. Used by the gateway ([`crate::server::Gateway::serve`]) and by
//! `tongban utility receive`.
//!
//! Each connection is one task that drives hyper's HTTP/1 connection and
//! watches which phase it is in:
//!
//! * **head**: from accept, or from the first byte of a request after an
//!   answer, until the whole request head has arrived: at most
//!   `header_read_timeout`. A connection that sent part of a head is then
//!   answered 408 with the API's JSON error (`request.timeout`) and closed;
//!   one that sent nothing is closed.
//! * **body**: the request body must arrive whole within
//!   `body_read_timeout` of the head; a handler reading it gets an error,
//!   which the API answers 408 `request.timeout`, and the connection closes.
//! * **handler**: the handlers bound their own waits (ledger queue, relay
//!   timeouts).
//! * **writing**: a write to the client that cannot make progress for
//!   `idle_timeout` (a client that does not read) closes the connection.
//! * **idle**: after an answer, a kept-alive connection may wait up to
//!   `idle_timeout` for its next request.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, Request, Response, header};
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::config::HttpSettings;

/// How long a new connection waits for a free slot when the cap is reached
/// before it is closed.
pub const CAPACITY_WAIT: Duration = Duration::from_millis(500);
/// Connections that may wait for a slot at once; beyond, they are closed at once.
const WAITING_ROOM: usize = 64;
/// File descriptors kept free for the store, the relay and outgoing calls
/// when the connection cap is fitted under the process's open-file limit.
pub const FD_RESERVE: u64 = 256;
/// Longest back-off after an accept error for lack of resources.
const MAX_ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

/// The limits of one HTTP listener.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections served at once.
    pub max_connections: usize,
    /// Connections (served or waiting) from one client address at once.
    pub max_connections_per_address: usize,
    /// Time for a whole request head.
    pub header_read_timeout: Duration,
    /// Time for a whole request body, from the end of its head.
    pub body_read_timeout: Duration,
    /// Time a kept-alive connection may wait for its next request, and a
    /// response write may make no progress.
    pub idle_timeout: Duration,
    /// Time connections get to finish after the shutdown signal.
    pub shutdown_grace: Duration,
}

impl From<&HttpSettings> for Limits {
    fn from(h: &HttpSettings) -> Self {
        Limits {
            max_connections: h.max_connections,
            max_connections_per_address: h.max_connections_per_address,
            header_read_timeout: Duration::from_millis(h.header_read_timeout_ms),
            body_read_timeout: Duration::from_millis(h.body_read_timeout_ms),
            idle_timeout: Duration::from_millis(h.idle_timeout_ms),
            shutdown_grace: Duration::from_millis(h.shutdown_grace_ms),
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits::from(&HttpSettings::default())
    }
}

/// Counters of one listener (rendered in `/metrics` for the gateway's).
#[derive(Debug, Default)]
pub struct ConnStats {
    /// Connections open now (served; not those waiting for a slot).
    pub open: AtomicU64,
    /// The cap in force (after fitting it under the open-file limit).
    pub max_connections: AtomicU64,
    /// Connections accepted and served.
    pub accepted: AtomicU64,
    /// Closed at once or after the brief wait: the cap was reached.
    pub refused_capacity: AtomicU64,
    /// Closed at once: their address had its limit of connections.
    pub refused_per_address: AtomicU64,
    /// Closed: the request head did not arrive in time.
    pub timed_out_header: AtomicU64,
    /// Answered 408: the request body did not arrive in time.
    pub timed_out_body: AtomicU64,
    /// Closed: kept alive without a request for the idle timeout.
    pub timed_out_idle: AtomicU64,
    /// Closed: a response write made no progress for the idle timeout.
    pub timed_out_write: AtomicU64,
    /// Accept errors (out of file descriptors or memory, mostly).
    pub accept_errors: AtomicU64,
    /// Connections still open at the end of the shutdown grace, dropped.
    pub dropped_at_shutdown: AtomicU64,
}

fn bump(a: &AtomicU64) {
    a.fetch_add(1, Ordering::Relaxed);
}

impl ConnStats {
    /// The Prometheus text of these counters.
    pub fn render(&self, out: &mut String) {
        let v = |a: &AtomicU64| a.load(Ordering::Relaxed);
        out.push_str(&format!(
            "# HELP tongban_http_connections_open HTTP connections open now\n# TYPE tongban_http_connections_open gauge\ntongban_http_connections_open {}\n\
             # HELP tongban_http_max_connections the HTTP connection cap in force\n# TYPE tongban_http_max_connections gauge\ntongban_http_max_connections {}\n\
             # HELP tongban_http_connections_accepted_total HTTP connections accepted and served\n# TYPE tongban_http_connections_accepted_total counter\ntongban_http_connections_accepted_total {}\n\
             # HELP tongban_http_connections_refused_total HTTP connections closed unserved: cap reached (capacity) or too many from one address (per_address)\n# TYPE tongban_http_connections_refused_total counter\ntongban_http_connections_refused_total{{reason=\"capacity\"}} {}\ntongban_http_connections_refused_total{{reason=\"per_address\"}} {}\n\
             # HELP tongban_http_connections_timed_out_total HTTP connections closed by a timeout: request head, request body (answered 408), idle keep-alive, stalled response write\n# TYPE tongban_http_connections_timed_out_total counter\ntongban_http_connections_timed_out_total{{phase=\"header\"}} {}\ntongban_http_connections_timed_out_total{{phase=\"body\"}} {}\ntongban_http_connections_timed_out_total{{phase=\"idle\"}} {}\ntongban_http_connections_timed_out_total{{phase=\"write\"}} {}\n\
             # HELP tongban_http_accept_errors_total accept errors (out of file descriptors or memory); accepting backs off\n# TYPE tongban_http_accept_errors_total counter\ntongban_http_accept_errors_total {}\n\
             # HELP tongban_http_connections_dropped_at_shutdown_total connections still open at the end of the shutdown grace\n# TYPE tongban_http_connections_dropped_at_shutdown_total counter\ntongban_http_connections_dropped_at_shutdown_total {}\n",
            v(&self.open),
            v(&self.max_connections),
            v(&self.accepted),
            v(&self.refused_capacity),
            v(&self.refused_per_address),
            v(&self.timed_out_header),
            v(&self.timed_out_body),
            v(&self.timed_out_idle),
            v(&self.timed_out_write),
            v(&self.accept_errors),
            v(&self.dropped_at_shutdown),
        ));
    }
}

/// The request body did not arrive within the body timeout.
#[derive(Debug, Clone, Copy)]
pub struct BodyTimeout;

impl std::fmt::Display for BodyTimeout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the request body did not arrive in time")
    }
}
impl std::error::Error for BodyTimeout {}

/// Whether `e`, or an error it was caused by, is a [`BodyTimeout`].
pub fn is_body_timeout(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(e) = cur {
        if e.is::<BodyTimeout>() {
            return true;
        }
        cur = e.source();
    }
    false
}

/// Raises this process's soft open-file limit to its hard limit (as a server
/// holding many connections should); returns the (soft, hard) limits then in
/// force. Never fails: on error the limits are left as they are.
pub fn raise_fd_limit() -> (u64, u64) {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let l = getrlimit(Resource::Nofile);
    if let (Some(cur), Some(max)) = (l.current, l.maximum)
        && cur < max
    {
        let _ = setrlimit(
            Resource::Nofile,
            Rlimit {
                current: Some(max),
                maximum: Some(max),
            },
        );
    }
    let l = getrlimit(Resource::Nofile);
    (l.current.unwrap_or(u64::MAX), l.maximum.unwrap_or(u64::MAX))
}

/// The connection cap to apply: `configured`, lowered to fit under the
/// process's open-file limit with [`FD_RESERVE`] to spare.
pub fn fitted_cap(configured: usize) -> usize {
    let soft = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .unwrap_or(u64::MAX);
    let room = soft.saturating_sub(FD_RESERVE).max(16);
    configured.min(usize::try_from(room).unwrap_or(usize::MAX))
}

/// Pending connections the kernel may queue for accept (capped by
/// `net.core.somaxconn`): a burst of new connections waits there instead of
/// having its handshakes dropped and retried seconds later.
pub const LISTEN_BACKLOG: u32 = 4096;

/// Binds a listener on `addr` (`host:port`) with [`LISTEN_BACKLOG`].
pub async fn bind(addr: &str) -> std::io::Result<TcpListener> {
    let mut last = None;
    for a in tokio::net::lookup_host(addr).await? {
        let s = if a.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        s.set_reuseaddr(true)?;
        match s.bind(a).and_then(|()| s.listen(LISTEN_BACKLOG)) {
            Ok(l) => return Ok(l),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("`{addr}` resolves to no address"),
        )
    }))
}

/// Connections per client address.
struct Addresses {
    limit: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One connection's place in [`Addresses`], given back on drop.
struct AddressSlot {
    addresses: Arc<Addresses>,
    ip: IpAddr,
}

impl Addresses {
    fn take(self: &Arc<Self>, ip: IpAddr) -> Option<AddressSlot> {
        let ip = ip.to_canonical();
        let mut m = self
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = m.entry(ip).or_default();
        if *n >= self.limit {
            return None;
        }
        *n += 1;
        Some(AddressSlot {
            addresses: self.clone(),
            ip,
        })
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut m = self
            .addresses
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = m.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.ip);
            }
        }
    }
}

/// Serves `router` on `listener` within `limits` until `shutdown` resolves;
/// then stops accepting, lets the connections finish their request in
/// flight for up to `limits.shutdown_grace`, and drops those still open.
/// Returns once every connection is closed.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    stats: Arc<ConnStats>,
    shutdown: impl Future<Output = ()>,
) {
    let cap = fitted_cap(limits.max_connections);
    if cap < limits.max_connections {
        tracing::warn!(
            configured = limits.max_connections,
            applied = cap,
            "http.max_connections lowered to fit under the open-file limit (raise `ulimit -n` / LimitNOFILE)"
        );
    }
    stats.max_connections.store(cap as u64, Ordering::Relaxed);
    let slots = Arc::new(Semaphore::new(cap));
    let waiting = Arc::new(Semaphore::new(WAITING_ROOM));
    let addresses = Arc::new(Addresses {
        limit: limits.max_connections_per_address,
        open: Mutex::new(HashMap::new()),
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = JoinSet::new();
    let mut backoff = Duration::ZERO;
    let mut last_warning: Option<Instant> = None;
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
            r = listener.accept() => r,
        };
        let (stream, peer) = match accepted {
            Ok(a) => {
                backoff = Duration::ZERO;
                a
            }
            Err(e) => {
                if !out_of_resources(&e) {
                    // The peer went away between SYN and accept, and the like.
                    tracing::debug!(error = %e, "accept");
                    continue;
                }
                bump(&stats.accept_errors);
                backoff = (backoff * 2).clamp(Duration::from_millis(10), MAX_ACCEPT_BACKOFF);
                if last_warning.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
                    last_warning = Some(Instant::now());
                    tracing::warn!(error = %e, backoff_ms = backoff.as_millis() as u64, "cannot accept HTTP connections (out of file descriptors?); backing off");
                }
                tokio::select! {
                    () = &mut shutdown => break,
                    () = tokio::time::sleep(backoff) => continue,
                }
            }
        };
        let Some(address) = addresses.take(peer.ip()) else {
            bump(&stats.refused_per_address);
            drop(stream);
            continue;
        };
        let conn = Conn {
            stream,
            router: router.clone(),
            limits,
            stats: stats.clone(),
            stop: stop_rx.clone(),
            address,
        };
        match slots.clone().try_acquire_owned() {
            Ok(slot) => {
                tasks.spawn(conn.run(slot));
            }
            Err(_) => match waiting.clone().try_acquire_owned() {
                Ok(wait) => {
                    let slots = slots.clone();
                    tasks.spawn(async move {
                        let slot = tokio::time::timeout(CAPACITY_WAIT, slots.acquire_owned()).await;
                        drop(wait);
                        match slot {
                            Ok(Ok(slot)) => conn.run(slot).await,
                            _ => bump(&conn.stats.refused_capacity),
                        }
                    });
                }
                Err(_) => bump(&stats.refused_capacity),
            },
        }
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let deadline = Instant::now() + limits.shutdown_grace;
    while !tasks.is_empty() {
        tokio::select! {
            _ = tasks.join_next() => {}
            () = tokio::time::sleep_until(deadline) => break,
        }
    }
    if !tasks.is_empty() {
        let n = tasks.len();
        stats
            .dropped_at_shutdown
            .fetch_add(n as u64, Ordering::Relaxed);
        tracing::warn!(
            connections = n,
            grace_ms = limits.shutdown_grace.as_millis() as u64,
            "connections still open at the end of the shutdown grace: dropped"
        );
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
    }
}

/// EMFILE, ENFILE, ENOBUFS, ENOMEM: the process or the system is out of
/// something; accepting again at once would only spin.
fn out_of_resources(e: &std::io::Error) -> bool {
    use rustix::io::Errno;
    let Some(code) = e.raw_os_error() else {
        return false;
    };
    [Errno::MFILE, Errno::NFILE, Errno::NOBUFS, Errno::NOMEM]
        .iter()
        .any(|x| x.raw_os_error() == code)
}

// Phases of a connection (see the module documentation).
const HEAD: u8 = 0;
const BUSY: u8 = 1;
const IDLE: u8 = 2;
const NOT_BLOCKED: u64 = u64::MAX;

/// What a connection is doing, written by its IO, its service and its
/// bodies, read by its watchdog (all in the connection's task).
struct Watch {
    base: Instant,
    phase: AtomicU8,
    /// When the phase began, in ms since `base`.
    since_ms: AtomicU64,
    /// Bytes of the current request head have arrived.
    head_bytes: AtomicBool,
    /// Since when a write has been waiting (ms since `base`), or [`NOT_BLOCKED`].
    write_blocked_ms: AtomicU64,
    changed: Notify,
}

impl Watch {
    fn new() -> Self {
        Watch {
            base: Instant::now(),
            phase: AtomicU8::new(HEAD),
            since_ms: AtomicU64::new(0),
            head_bytes: AtomicBool::new(false),
            write_blocked_ms: AtomicU64::new(NOT_BLOCKED),
            changed: Notify::new(),
        }
    }
    fn now_ms(&self) -> u64 {
        self.base.elapsed().as_millis() as u64
    }
    fn set(&self, phase: u8) {
        self.phase.store(phase, Ordering::Relaxed);
        self.since_ms.store(self.now_ms(), Ordering::Relaxed);
        self.head_bytes.store(false, Ordering::Relaxed);
        self.changed.notify_one();
    }
    fn on_read(&self) {
        match self.phase.load(Ordering::Relaxed) {
            IDLE => {
                self.set(HEAD);
                self.head_bytes.store(true, Ordering::Relaxed);
            }
            HEAD => self.head_bytes.store(true, Ordering::Relaxed),
            _ => {}
        }
    }
    fn on_write(&self, blocked: bool) {
        let was = self.write_blocked_ms.load(Ordering::Relaxed);
        if blocked && was == NOT_BLOCKED {
            self.write_blocked_ms
                .store(self.now_ms(), Ordering::Relaxed);
            self.changed.notify_one();
        } else if !blocked && was != NOT_BLOCKED {
            self.write_blocked_ms.store(NOT_BLOCKED, Ordering::Relaxed);
        }
    }
    /// When the current phase times out (ms since `base`).
    fn deadline_ms(&self, l: &Limits) -> u64 {
        let ms = |d: Duration| d.as_millis() as u64;
        let since = self.since_ms.load(Ordering::Relaxed);
        let phase = match self.phase.load(Ordering::Relaxed) {
            HEAD => since.saturating_add(ms(l.header_read_timeout)),
            IDLE => since.saturating_add(ms(l.idle_timeout)),
            _ => u64::MAX,
        };
        let blocked = self.write_blocked_ms.load(Ordering::Relaxed);
        let write = if blocked == NOT_BLOCKED {
            u64::MAX
        } else {
            blocked.saturating_add(ms(l.idle_timeout))
        };
        phase.min(write)
    }
    fn deadline(&self, l: &Limits) -> Instant {
        match self.deadline_ms(l) {
            u64::MAX => self.base + Duration::from_secs(86_400 * 365),
            ms => self.base + Duration::from_millis(ms),
        }
    }
    /// Which timeout has passed, if any.
    fn expired(&self, l: &Limits) -> Option<Expired> {
        let now = self.now_ms();
        if self.deadline_ms(l) > now {
            return None;
        }
        let blocked = self.write_blocked_ms.load(Ordering::Relaxed);
        if blocked != NOT_BLOCKED
            && now >= blocked.saturating_add(l.idle_timeout.as_millis() as u64)
        {
            return Some(Expired::Write);
        }
        Some(match self.phase.load(Ordering::Relaxed) {
            HEAD => Expired::Header {
                answer: self.head_bytes.load(Ordering::Relaxed),
            },
            _ => Expired::Idle,
        })
    }
    /// Nothing of a request is under way: closing loses nothing.
    fn at_rest(&self) -> bool {
        match self.phase.load(Ordering::Relaxed) {
            IDLE => true,
            HEAD => !self.head_bytes.load(Ordering::Relaxed),
            _ => false,
        }
    }
}

enum Expired {
    Header { answer: bool },
    Idle,
    Write,
}

/// The client's socket, reporting reads and blocked writes to the watch.
struct WatchedIo {
    inner: TcpStream,
    watch: Arc<Watch>,
}

impl AsyncRead for WatchedIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.watch.on_read();
        }
        r
    }
}

impl WatchedIo {
    fn note<T>(&self, r: &Poll<std::io::Result<T>>) {
        match r {
            Poll::Pending => self.watch.on_write(true),
            Poll::Ready(_) => self.watch.on_write(false),
        }
    }
}

impl AsyncWrite for WatchedIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.note(&r);
        r
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.note(&r);
        r
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.note(&r);
        r
    }
}

/// A request body that must arrive whole before its deadline.
struct DeadlineBody {
    inner: Incoming,
    sleep: Pin<Box<tokio::time::Sleep>>,
    fired: Arc<AtomicBool>,
    stats: Arc<ConnStats>,
}

impl HttpBody for DeadlineBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if this.fired.load(Ordering::Relaxed) {
            return Poll::Ready(Some(Err(Box::new(BodyTimeout))));
        }
        if let Poll::Ready(f) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(f.map(|r| r.map_err(Into::into)));
        }
        if this.sleep.as_mut().poll(cx).is_ready() {
            this.fired.store(true, Ordering::Relaxed);
            bump(&this.stats.timed_out_body);
            return Poll::Ready(Some(Err(Box::new(BodyTimeout))));
        }
        Poll::Pending
    }
    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A response body that marks the connection idle once written (or dropped).
struct DoneBody {
    inner: Body,
    watch: Arc<Watch>,
    done: bool,
}

impl DoneBody {
    fn finish(&mut self) {
        if !self.done {
            self.done = true;
            self.watch.set(IDLE);
        }
    }
}

impl HttpBody for DoneBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_frame(cx);
        if matches!(r, Poll::Ready(None) | Poll::Ready(Some(Err(_)))) {
            this.finish();
        }
        r
    }
    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for DoneBody {
    fn drop(&mut self) {
        self.finish();
    }
}

/// Counts the connection open while it lives.
struct OpenGuard(Arc<ConnStats>);
impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A 408 for a request head that did not arrive in time (the API's JSON error).
fn head_timeout_answer() -> Vec<u8> {
    let body = serde_json::json!({"error": {
        "code": "request.timeout",
        "message": "the request head did not arrive within the header timeout",
    }})
    .to_string();
    format!(
        "HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

struct Conn {
    stream: TcpStream,
    router: Router,
    limits: Limits,
    stats: Arc<ConnStats>,
    stop: watch::Receiver<bool>,
    address: AddressSlot,
}

impl Conn {
    async fn run(self, slot: OwnedSemaphorePermit) {
        let Conn {
            stream,
            router,
            limits,
            stats,
            mut stop,
            address,
        } = self;
        let _held = (slot, address);
        bump(&stats.accepted);
        stats.open.fetch_add(1, Ordering::Relaxed);
        let _open = OpenGuard(stats.clone());
        let _ = stream.set_nodelay(true);
        let watch = Arc::new(Watch::new());
        let io = TokioIo::new(WatchedIo {
            inner: stream,
            watch: watch.clone(),
        });
        let svc = {
            let watch = watch.clone();
            let stats = stats.clone();
            hyper::service::service_fn(move |req: Request<Incoming>| {
                watch.set(BUSY);
                let fired = Arc::new(AtomicBool::new(false));
                let req = req.map(|b| {
                    if b.is_end_stream() {
                        Body::new(b)
                    } else {
                        Body::new(DeadlineBody {
                            inner: b,
                            sleep: Box::pin(tokio::time::sleep(limits.body_read_timeout)),
                            fired: fired.clone(),
                            stats: stats.clone(),
                        })
                    }
                });
                let call = tower_service::Service::call(&mut router.clone(), req);
                let watch = watch.clone();
                async move {
                    let mut resp: Response<Body> = match call.await {
                        Ok(r) => r,
                        Err(e) => match e {},
                    };
                    if fired.load(Ordering::Relaxed) {
                        // The rest of the body is not read: the connection ends.
                        resp.headers_mut()
                            .insert(header::CONNECTION, HeaderValue::from_static("close"));
                    }
                    Ok::<_, Infallible>(resp.map(|inner| DoneBody {
                        inner,
                        watch,
                        done: false,
                    }))
                }
            })
        };
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            // The watch below times the head (hyper's timer would also cut
            // idle kept-alive connections at the head timeout).
            .header_read_timeout(None)
            .keep_alive(true);
        let mut conn = builder.serve_connection(io, svc);
        let mut stopping = false;
        let sleep = tokio::time::sleep_until(watch.deadline(&limits));
        tokio::pin!(sleep);
        let expired = loop {
            if !stopping && *stop.borrow() {
                stopping = true;
                if watch.at_rest() {
                    break None;
                }
                Pin::new(&mut conn).graceful_shutdown();
            }
            tokio::select! {
                biased;
                r = &mut conn => {
                    if let Err(e) = r {
                        tracing::debug!(error = %e, "HTTP connection");
                    }
                    break None;
                }
                () = watch.changed.notified() => {
                    sleep.as_mut().reset(watch.deadline(&limits));
                }
                () = &mut sleep => {
                    if let Some(e) = watch.expired(&limits) {
                        break Some(e);
                    }
                    sleep.as_mut().reset(watch.deadline(&limits));
                }
                r = stop.changed(), if !stopping => {
                    if r.is_err() {
                        stopping = true;
                        Pin::new(&mut conn).graceful_shutdown();
                    }
                }
            }
        };
        match expired {
            None => {}
            Some(Expired::Idle) => bump(&stats.timed_out_idle),
            Some(Expired::Write) => bump(&stats.timed_out_write),
            Some(Expired::Header { answer }) => {
                bump(&stats.timed_out_header);
                if answer {
                    let io = conn.into_parts().io.into_inner();
                    answer_and_close(io.inner).await;
                }
            }
        }
    }
}

/// Writes the 408 for a late head, ends the write side, and reads what the
/// client still sends for a moment, so that closing does not reset the
/// connection before the client has read the answer.
async fn answer_and_close(s: TcpStream) {
    use tokio::io::ReadBuf;
    let _ = tokio::time::timeout(Duration::from_millis(500), async {
        let mut s = s;
        let answer = head_timeout_answer();
        let mut sent = 0;
        while sent < answer.len() {
            s.writable().await?;
            match s.try_write(&answer[sent..]) {
                Ok(n) => sent += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        std::future::poll_fn(|cx| Pin::new(&mut s).poll_shutdown(cx)).await?;
        let mut buf = [0u8; 4096];
        loop {
            let mut rb = ReadBuf::new(&mut buf);
            std::future::poll_fn(|cx| Pin::new(&mut s).poll_read(cx, &mut rb)).await?;
            if rb.filled().is_empty() {
                return Ok::<(), std::io::Error>(());
            }
        }
    })
    .await;
}
