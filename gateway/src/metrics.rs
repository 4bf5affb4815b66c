//! Prometheus metrics: request counts and latency per route, refusals by
//! reason, ledger height, blocks and transactions written.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;

use crate::state::AppState;

const BUCKETS_MS: [f64; 10] = [
    1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 250.0, 1000.0, 5000.0,
];

#[derive(Default)]
struct Route {
    count: BTreeMap<u16, u64>,
    buckets: [u64; 10],
    sum_ms: f64,
    total: u64,
}

/// Process-wide counters.
#[derive(Default)]
pub struct Metrics {
    routes: Mutex<BTreeMap<(String, String), Route>>,
    refusals: Mutex<BTreeMap<String, u64>>,
    /// The HTTP listener's connection counters (shared with its accept loop).
    pub connections: Arc<crate::http_serve::ConnStats>,
}

impl Metrics {
    /// Counts one refusal by its stable code (at most 256 codes are kept
    /// apart; a remote party cannot grow the table by inventing codes).
    pub fn refusal(&self, code: &str) {
        let mut m = self
            .refusals
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let key = if m.contains_key(code) || m.len() < 256 {
            code.to_owned()
        } else {
            "other".to_owned()
        };
        *m.entry(key).or_default() += 1;
    }
    fn observe(&self, method: &str, route: &str, status: u16, ms: f64) {
        let mut routes = self
            .routes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let r = routes
            .entry((method.to_owned(), route.to_owned()))
            .or_default();
        *r.count.entry(status).or_default() += 1;
        for (i, b) in BUCKETS_MS.iter().enumerate() {
            if ms <= *b {
                r.buckets[i] += 1;
            }
        }
        r.sum_ms += ms;
        r.total += 1;
    }
    /// The Prometheus text exposition.
    pub fn render(&self, state: &AppState) -> String {
        let mut out = String::new();
        out.push_str("# TYPE tongban_http_requests_total counter\n");
        let routes = self
            .routes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for ((m, r), v) in routes.iter() {
            for (status, n) in &v.count {
                out.push_str(&format!("tongban_http_requests_total{{method=\"{m}\",route=\"{r}\",status=\"{status}\"}} {n}\n"));
            }
        }
        out.push_str("# TYPE tongban_http_request_duration_ms histogram\n");
        for ((m, r), v) in routes.iter() {
            for (i, b) in BUCKETS_MS.iter().enumerate() {
                out.push_str(&format!("tongban_http_request_duration_ms_bucket{{method=\"{m}\",route=\"{r}\",le=\"{b}\"}} {}\n", v.buckets[i]));
            }
            out.push_str(&format!("tongban_http_request_duration_ms_bucket{{method=\"{m}\",route=\"{r}\",le=\"+Inf\"}} {}\n", v.total));
            out.push_str(&format!(
                "tongban_http_request_duration_ms_sum{{method=\"{m}\",route=\"{r}\"}} {}\n",
                v.sum_ms
            ));
            out.push_str(&format!(
                "tongban_http_request_duration_ms_count{{method=\"{m}\",route=\"{r}\"}} {}\n",
                v.total
            ));
        }
        drop(routes);
        self.connections.render(&mut out);
        out.push_str("# TYPE tongban_refusals_total counter\n");
        for (code, n) in self
            .refusals
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
        {
            out.push_str(&format!(
                "tongban_refusals_total{{reason=\"{code}\"}} {n}\n"
            ));
        }
        let head = state.ledger.head();
        let stats = &state.writer.stats;
        out.push_str(&format!(
            "# TYPE tongban_ledger_height gauge\ntongban_ledger_height{{chain=\"{}\"}} {}\n",
            state.ledger.chain_id(),
            head.height
        ));
        out.push_str(&format!(
            "# TYPE tongban_blocks_cut_total counter\ntongban_blocks_cut_total {}\n# TYPE tongban_transactions_written_total counter\ntongban_transactions_written_total {}\n",
            stats.blocks.load(std::sync::atomic::Ordering::Relaxed),
            stats.txs.load(std::sync::atomic::Ordering::Relaxed)
        ));
        out.push_str(&format!(
            "# TYPE tongban_writer_failed gauge\ntongban_writer_failed {}\n",
            u8::from(state.writer.failed())
        ));
        out.push_str(&format!(
            "# TYPE tongban_store_corrupt_values_total counter\ntongban_store_corrupt_values_total {}\n# TYPE tongban_store_full_blocks_total counter\ntongban_store_full_blocks_total {}\n",
            state.ledger.corrupt_values(),
            stats.full.load(std::sync::atomic::Ordering::Relaxed)
        ));
        let ix = state.ledger.index_stats();
        out.push_str(&format!(
            "# TYPE tongban_index_memtable_entries gauge\ntongban_index_memtable_entries {}\n# TYPE tongban_index_frozen_memtables gauge\ntongban_index_frozen_memtables {}\n# TYPE tongban_index_runs gauge\ntongban_index_runs {}\n# TYPE tongban_index_run_entries gauge\ntongban_index_run_entries {}\n# TYPE tongban_index_runs_written_total counter\ntongban_index_runs_written_total {}\n",
            ix.memtable, ix.frozen, ix.runs, ix.run_entries, ix.runs_written
        ));
        if let Some(r) = state.relay.get() {
            let st = r.stats();
            let load =
                |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
            for (name, help, v) in [
                (
                    "tongban_relay_requests_out_total",
                    "requests this gateway sent to others",
                    load(&st.requests_out),
                ),
                (
                    "tongban_relay_requests_in_total",
                    "requests other gateways sent here",
                    load(&st.requests_in),
                ),
                (
                    "tongban_relay_forwarded_total",
                    "frames forwarded for others (hubs)",
                    load(&st.forwarded),
                ),
                (
                    "tongban_relay_retries_total",
                    "request attempts retried",
                    load(&st.retries),
                ),
                (
                    "tongban_relay_refused_connections_total",
                    "connections refused: identity not in the registry",
                    load(&st.refused_connections),
                ),
                (
                    "tongban_relay_replays_refused_total",
                    "requests refused by the replay window: stale or repeated nonces",
                    load(&st.replays_refused),
                ),
                (
                    "tongban_relay_malformed_total",
                    "peers disconnected for malformed frames",
                    load(&st.malformed),
                ),
                (
                    "tongban_relay_connections_opened_total",
                    "libp2p connections opened; beyond the peers, each is a reconnect",
                    load(&st.connections_opened),
                ),
                (
                    "tongban_relay_connections_closed_total",
                    "libp2p connections closed",
                    load(&st.connections_closed),
                ),
            ] {
                out.push_str(&format!(
                    "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}\n"
                ));
            }
            out.push_str(&format!(
                "# HELP tongban_relay_connected_peers gateways and hubs connected now\n# TYPE tongban_relay_connected_peers gauge\ntongban_relay_connected_peers {}\n",
                load(&st.connected_peers)
            ));
            render_protocols(&mut out, &st.services());
        }
        if let Some(p) = state.webhooks.get() {
            let load =
                |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
            out.push_str(&format!(
                "# HELP tongban_webhook_delivered_total inbox items a receiver acknowledged\n# TYPE tongban_webhook_delivered_total counter\ntongban_webhook_delivered_total {}\n# HELP tongban_webhook_failed_attempts_total push attempts that failed and were retried\n# TYPE tongban_webhook_failed_attempts_total counter\ntongban_webhook_failed_attempts_total {}\n",
                load(&p.stats.delivered),
                load(&p.stats.failed_attempts)
            ));
        }
        render_backlog(&mut out, state);
        state.guards.render(&mut out);
        out.push_str(
            "# TYPE tongban_light_linked_height gauge\n# TYPE tongban_light_frozen gauge\n",
        );
        for c in state.light.chains() {
            if let Some(st) = state.light.status(&c) {
                if let Some(h) = st.linked_to {
                    out.push_str(&format!(
                        "tongban_light_linked_height{{chain=\"{c}\"}} {h}\n"
                    ));
                }
                out.push_str(&format!(
                    "tongban_light_frozen{{chain=\"{c}\"}} {}\n",
                    u8::from(st.fork.is_some())
                ));
            }
        }
        out
    }
}

/// Per libp2p service (`match`, `headers.pull`, `deliver`, …) and direction:
/// outcomes and latency.
fn render_protocols(
    out: &mut String,
    services: &BTreeMap<(relay::Direction, String), relay::ServiceTiming>,
) {
    out.push_str("# HELP tongban_relay_requests_total requests per libp2p service, direction (out: asked here, in: answered here) and outcome\n# TYPE tongban_relay_requests_total counter\n");
    for ((dir, svc), t) in services {
        let d = dir.as_str();
        out.push_str(&format!(
            "tongban_relay_requests_total{{service=\"{svc}\",direction=\"{d}\",outcome=\"ok\"}} {}\ntongban_relay_requests_total{{service=\"{svc}\",direction=\"{d}\",outcome=\"failed\"}} {}\n",
            t.ok, t.failed
        ));
    }
    out.push_str("# TYPE tongban_relay_request_duration_ms histogram\n");
    for ((dir, svc), t) in services {
        let d = dir.as_str();
        for (i, b) in relay::LATENCY_BUCKETS_MS.iter().enumerate() {
            out.push_str(&format!(
                "tongban_relay_request_duration_ms_bucket{{service=\"{svc}\",direction=\"{d}\",le=\"{b}\"}} {}\n",
                t.buckets[i]
            ));
        }
        out.push_str(&format!(
            "tongban_relay_request_duration_ms_bucket{{service=\"{svc}\",direction=\"{d}\",le=\"+Inf\"}} {n}\ntongban_relay_request_duration_ms_sum{{service=\"{svc}\",direction=\"{d}\"}} {}\ntongban_relay_request_duration_ms_count{{service=\"{svc}\",direction=\"{d}\"}} {n}\n",
            t.sum_ms,
            n = t.ok + t.failed
        ));
    }
}

/// The applications in progress at this gateway: by phase, the evidence
/// requests still unanswered (match backlog) and the service requests still
/// without a receipt (delivery backlog).
fn render_backlog(out: &mut String, state: &AppState) {
    use regions::application::{EvidenceState, Phase, ServiceState};
    let Some(engine) = state.engine.get() else {
        return;
    };
    let (mut matching, mut dispatching, mut asks, mut deliveries) = (0u64, 0u64, 0u64, 0u64);
    for id in engine.active().iter().take(100_000) {
        let Some(a) = crate::applications::load(state, id) else {
            continue;
        };
        match a.phase {
            Phase::Matching => matching += 1,
            Phase::Dispatching => dispatching += 1,
            _ => {}
        }
        asks += a
            .evidence
            .values()
            .filter(|e| matches!(e, EvidenceState::Pending { .. }))
            .count() as u64;
        deliveries += a
            .services
            .values()
            .filter(|e| matches!(e, ServiceState::Pending { .. }))
            .count() as u64;
    }
    out.push_str(&format!(
        "# HELP tongban_applications_in_progress applications taken here and not final, by phase\n# TYPE tongban_applications_in_progress gauge\ntongban_applications_in_progress{{phase=\"matching\"}} {matching}\ntongban_applications_in_progress{{phase=\"dispatching\"}} {dispatching}\n# HELP tongban_match_backlog evidence requests sent and not yet answered\n# TYPE tongban_match_backlog gauge\ntongban_match_backlog {asks}\n# HELP tongban_delivery_backlog service requests delivered or due and not yet receipted\n# TYPE tongban_delivery_backlog gauge\ntongban_delivery_backlog {deliveries}\n"
    ));
}

/// A request id: the caller's `x-request-id` if it is a short token
/// (letters, digits, `-`, `_`, `.`; at most 64), else a fresh random one.
fn request_id(req: &Request) -> String {
    if let Some(v) = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 64
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        })
    {
        return v.to_owned();
    }
    let mut b = [0u8; 12];
    getrandom::fill(&mut b).expect("the OS random source is available");
    hex::encode(b)
}

/// Middleware: gives each request an id (echoed in `x-request-id`, and on
/// every log line written while it runs), times it and counts it under its
/// route template (never the concrete path, which may hold record ids).
pub async fn track(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    use tracing::Instrument as _;
    let method = req.method().to_string();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let id = request_id(&req);
    let span = tracing::info_span!("http", request_id = %id, %method, %route);
    let start = Instant::now();
    let mut resp = next.run(req).instrument(span.clone()).await;
    let ms = start.elapsed().as_secs_f64() * 1000.0;
    state
        .metrics
        .observe(&method, &route, resp.status().as_u16(), ms);
    if let Ok(v) = axum::http::HeaderValue::from_str(&id) {
        resp.headers_mut().insert("x-request-id", v);
    }
    let status = resp.status().as_u16();
    if let Some(code) = resp.extensions().get::<crate::api::RefusalCode>() {
        state.metrics.refusal(&code.0);
    }
    span.in_scope(|| {
        if status >= 500 {
            tracing::warn!(status, ms, "request failed");
        } else {
            tracing::debug!(status, ms, "request");
        }
    });
    resp
}
