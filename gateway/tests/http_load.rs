//! Issue 15 must-pass: at least 2,000 idle, slow-header and slow-body
//! connections held at once against the real `tongban` binary, from 16
//! loopback source addresses (each under the default per-address limit),
//! while signed requests keep being served with p99 ≤ 1 s and `/healthz`
//! answers; then the header and body timeouts close every held connection.
//! Its own test binary, so that no other test shares the machine's
//! descriptors or the timing.

mod common;
#[path = "common/raw.rs"]
mod raw;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::*;
use gateway::api::records::{RecordView, WriteResult};
use gateway::client::{Client, sign_publication};
use raw::*;

const DEPT: &str = "nanjing.civil-affairs";
/// Source addresses 127.0.0.2 ..= 127.0.0.17.
const ADDRESSES: u8 = 16;
/// Held connections per address (the default per-address limit is 256).
const PER_ADDRESS: usize = 132;
/// The held connections' header and body timeout in this test.
const HOLD: Duration = Duration::from_secs(15);

#[derive(Clone, Copy, PartialEq, Debug)]
enum Kind {
    Idle,
    SlowHeader,
    SlowBody,
}

struct Held {
    kind: Kind,
    opened: Instant,
    received: Received,
}

async fn hold(
    kind: Kind,
    from: std::net::IpAddr,
    to: std::net::SocketAddr,
    opened: Arc<AtomicUsize>,
) -> Held {
    let s = connect_from(from, to).await.expect("connect");
    let t0 = Instant::now();
    opened.fetch_add(1, Ordering::Relaxed);
    let first: &[u8] = match kind {
        Kind::Idle => b"",
        Kind::SlowHeader => b"GET /healthz HTTP/1.1\r\nhost: gateway\r\nx-slow: ",
        Kind::SlowBody => b"POST /v1/records HTTP/1.1\r\nhost: gateway\r\ncontent-type: application/json\r\ncontent-length: 100000\r\n\r\n{",
    };
    send(&s, first).await.expect("write");
    let write = async {
        if kind != Kind::Idle {
            loop {
                tokio::time::sleep(Duration::from_millis(1000)).await;
                if send(&s, b"a").await.is_err() {
                    break;
                }
            }
        }
        std::future::pending::<()>().await;
    };
    let read = async {
        let mut bytes = Vec::new();
        let mut buf = [0u8; 2048];
        let deadline = tokio::time::Instant::now() + HOLD + Duration::from_secs(20);
        loop {
            match tokio::time::timeout_at(deadline, recv(&s, &mut buf)).await {
                Err(_) => {
                    return Received {
                        bytes,
                        closed: false,
                        at: Instant::now(),
                    };
                }
                Ok(Ok(0)) | Ok(Err(_)) => {
                    return Received {
                        bytes,
                        closed: true,
                        at: Instant::now(),
                    };
                }
                Ok(Ok(n)) => bytes.extend_from_slice(&buf[..n]),
            }
        }
    };
    let received = tokio::select! {
        r = read => r,
        () = write => unreachable!(),
    };
    Held {
        kind,
        opened: t0,
        received,
    }
}

fn p99(mut v: Vec<Duration>) -> Duration {
    v.sort_unstable();
    v[(v.len() * 99).div_ceil(100) - 1]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_held_connections_while_signed_requests_are_served() {
    let (soft, hard) = gateway::http_serve::raise_fd_limit();
    assert!(
        soft >= 5_000,
        "this test holds about 2,100 sockets on each side: it needs an open-file limit of 5,000 (soft {soft}, hard {hard}; raise `ulimit -Hn`)"
    );
    let files = Arc::new(city_files(
        "nanjing",
        &format!(
            "[http]\nheader_read_timeout_ms = {ms}\nbody_read_timeout_ms = {ms}\nidle_timeout_ms = {ms}\n",
            ms = HOLD.as_millis()
        ),
    ));
    let (child, url) = spawn_serve(&files, "warn");
    let mut child = Proc::from(child);
    let addr = sock_addr(&url);

    // Open them all: a third each of idle, slow header, slow body.
    let opened = Arc::new(AtomicUsize::new(0));
    let total = usize::from(ADDRESSES) * PER_ADDRESS;
    let mut held = Vec::with_capacity(total);
    let kinds = [Kind::Idle, Kind::SlowHeader, Kind::SlowBody];
    for a in 0..ADDRESSES {
        for i in 0..PER_ADDRESS {
            held.push(tokio::spawn(hold(
                kinds[i % 3],
                loopback(2 + a),
                addr,
                opened.clone(),
            )));
        }
    }
    let t_open = Instant::now();
    while opened.load(Ordering::Relaxed) < total {
        assert!(
            t_open.elapsed() < Duration::from_secs(10),
            "only {} of {total} connections opened in 10 s",
            opened.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The gateway holds them (accepted, not waiting in the backlog).
    let mut open = 0.0;
    let mut m = String::new();
    for _ in 0..40 {
        m = metrics(addr).await;
        open = metric(&m, "tongban_http_connections_open").unwrap_or(0.0);
        if open >= total as f64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        open >= total as f64,
        "the gateway holds {open} of {total} connections: {}",
        m.lines()
            .filter(|l| l.starts_with("tongban_http_conn") || l.starts_with("tongban_http_accept"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    eprintln!("{total} connections held after {:?}", t_open.elapsed());

    // Meanwhile: four signed clients publish and read back; /healthz on a
    // fresh connection each time.
    let measure = Duration::from_secs(5);
    let mut workers = Vec::new();
    for w in 0..4u64 {
        let (files, url) = (files.clone(), url.clone());
        workers.push(tokio::spawn(async move {
            let gw = files.registry.city("nanjing").unwrap().gateway.id.clone();
            let c = Client::new(&url, DEPT, key(DEPT), &gw);
            let chain = files
                .registry
                .city("nanjing")
                .unwrap()
                .chain
                .chain_id
                .clone();
            let (mut signed, mut health) = (Vec::new(), Vec::new());
            let start = Instant::now();
            let mut n = 0u64;
            while start.elapsed() < measure {
                let id = format!("LOAD-{w}-{n}");
                let req = sign_publication(
                    &files.registry,
                    &chain,
                    DEPT,
                    &key(DEPT),
                    &subject_key("nanjing"),
                    marriage(&id, 1, n, n + 1, "married"),
                    [(n % 251) as u8 + 1; 32],
                )
                .unwrap();
                let t = Instant::now();
                let (status, _): (u16, WriteResult) = c.post("/v1/records", &req).await.unwrap();
                signed.push(t.elapsed());
                assert_eq!(status, 201);
                let t = Instant::now();
                let v: RecordView = c.get(&format!("/v1/records/marriage/{id}")).await.unwrap();
                signed.push(t.elapsed());
                assert_eq!(v.versions.len(), 1);
                let t = Instant::now();
                let mut s = connect_from(loopback(1), addr).await.unwrap();
                let r = exchange(&mut s, &get("/healthz")).await;
                health.push(t.elapsed());
                assert_eq!(r.status, 200);
                n += 1;
            }
            (signed, health)
        }));
    }
    let (mut signed, mut health) = (Vec::new(), Vec::new());
    for w in workers {
        let (s, h) = w.await.unwrap();
        signed.extend(s);
        health.extend(h);
    }
    let (ps, ph) = (p99(signed.clone()), p99(health.clone()));
    eprintln!(
        "under {total} held connections: {} signed requests p99 {ps:?}, {} /healthz p99 {ph:?}",
        signed.len(),
        health.len()
    );
    assert!(
        signed.len() >= 40,
        "only {} signed requests in {measure:?}",
        signed.len()
    );
    assert!(ps <= Duration::from_secs(1), "signed requests p99 {ps:?}");
    assert!(ph <= Duration::from_secs(1), "/healthz p99 {ph:?}");
    let still = metric(&metrics(addr).await, "tongban_http_connections_open").unwrap_or(0.0);
    assert!(
        still >= total as f64,
        "held throughout the measurement ({still})"
    );

    // Then the timeouts close every held connection, the slow ones with 408.
    let mut by_kind = [0usize; 3];
    for h in held {
        let h = h.await.unwrap();
        let r = &h.received;
        let after = r.at.duration_since(h.opened);
        assert!(r.closed, "{:?} still open after {after:?}", h.kind);
        assert!(
            after >= HOLD - Duration::from_secs(1) && after <= HOLD + Duration::from_secs(10),
            "{:?} closed after {after:?}, timeout {HOLD:?}",
            h.kind
        );
        match h.kind {
            Kind::Idle => assert!(r.bytes.is_empty(), "{r:?}"),
            Kind::SlowHeader | Kind::SlowBody => parse_response(&r.bytes)
                .unwrap_or_else(|| panic!("{:?}: {r:?}", h.kind))
                .assert_error(408, "request.timeout"),
        }
        by_kind[h.kind as usize] += 1;
    }
    let m = metrics(addr).await;
    let header = metric(
        &m,
        "tongban_http_connections_timed_out_total{phase=\"header\"}",
    )
    .unwrap();
    let body = metric(
        &m,
        "tongban_http_connections_timed_out_total{phase=\"body\"}",
    )
    .unwrap();
    assert!(header >= (by_kind[0] + by_kind[1]) as f64, "{m}");
    assert!(body >= by_kind[2] as f64, "{m}");
    assert!(
        metric(&m, "tongban_http_connections_open").unwrap() < 10.0,
        "{m}"
    );
    assert!(child.try_wait().unwrap().is_none());
    child.kill().unwrap();
    child.wait().unwrap();
}
