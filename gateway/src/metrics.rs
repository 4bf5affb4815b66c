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
    refusals: Mutex<BTreeMap<&'static str, u64>>,
}

impl Metrics {
    /// Counts one refusal by its code.
    pub fn refusal(&self, code: &'static str) {
        *self
            .refusals
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(code)
            .or_default() += 1;
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
                    "tongban_relay_malformed_total",
                    "peers disconnected for malformed frames",
                    load(&st.malformed),
                ),
            ] {
                out.push_str(&format!(
                    "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}\n"
                ));
            }
        }
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

/// Middleware: times each request and counts it under its route template
/// (never the concrete path, which may hold record ids).
pub async fn track(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let method = req.method().to_string();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let start = Instant::now();
    let resp = next.run(req).await;
    let ms = start.elapsed().as_secs_f64() * 1000.0;
    state
        .metrics
        .observe(&method, &route, resp.status().as_u16(), ms);
    tracing::debug!(%method, %route, status = resp.status().as_u16(), ms, "request");
    resp
}
