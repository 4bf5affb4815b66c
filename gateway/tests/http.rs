//! The HTTP layer over real sockets against the real `tongban` binary (and,
//! for the error bodies, an in-process gateway): header, body, idle and
//! write-stall timeouts; the connection cap with its brief wait; the
//! per-address limit; accept errors when the process runs out of file
//! descriptors; SIGTERM with a slow client; the JSON error body on every
//! error (issue 15, items 13–15).

mod common;
#[path = "common/raw.rs"]
mod raw;

use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use gateway::api::records::{RecordView, WriteResult};
use gateway::client::{Client, sign_publication};
use gateway::ledger::TxLocation;
use raw::*;

const DEPT: &str = "nanjing.civil-affairs";

fn dept_client(files: &CityFiles, url: &str) -> Client {
    let gw = files.registry.city("nanjing").unwrap().gateway.id.clone();
    Client::new(url, DEPT, key(DEPT), &gw)
}

fn publication(files: &CityFiles, id: &str, n: u64) -> gateway::records::PublishRequest {
    let chain = files
        .registry
        .city("nanjing")
        .unwrap()
        .chain
        .chain_id
        .clone();
    sign_publication(
        &files.registry,
        &chain,
        DEPT,
        &key(DEPT),
        &subject_key("nanjing"),
        marriage(id, 1, n, n + 1, "married"),
        [(n % 251) as u8 + 1; 32],
    )
    .unwrap()
}

/// The head of a slow request: headers that never end.
const SLOW_HEAD: &[u8] = b"GET /healthz HTTP/1.1\r\nhost: gateway\r\nx-slow: ";

/// The head of a request whose body never ends (it declares 100,000 bytes).
const SLOW_BODY: &[u8] = b"POST /v1/records HTTP/1.1\r\nhost: gateway\r\ncontent-type: application/json\r\ncontent-length: 100000\r\n\r\n{";

/// Writes `first`, then one byte every `every` until the write fails; reads
/// meanwhile until the gateway closes (or `within` runs out).
async fn trickle(
    s: tokio::net::TcpStream,
    first: &[u8],
    every: Duration,
    within: Duration,
) -> Received {
    send(&s, first).await.unwrap();
    let write = async {
        loop {
            tokio::time::sleep(every).await;
            if send(&s, b"a").await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    };
    let read = async {
        let mut bytes = Vec::new();
        let mut buf = [0u8; 4096];
        let deadline = tokio::time::Instant::now() + within;
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
    tokio::select! {
        r = read => r,
        () = write => unreachable!(),
    }
}

/// Item 13: a connection that sends nothing, one whose request head never
/// ends, one whose body never ends, one kept alive after an answer and one
/// that does not read its answers are each closed after their timeout; the
/// slow head and the slow body are answered 408 with the JSON error first;
/// the metrics count each kind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_body_idle_and_write_timeouts_close_held_connections() {
    let files = city_files(
        "nanjing",
        "[http]\nheader_read_timeout_ms = 1000\nbody_read_timeout_ms = 1000\nidle_timeout_ms = 1000\n",
    );
    let (child, url) = spawn_serve(&files, "warn");
    let mut child = Proc::from(child);
    let addr = sock_addr(&url);
    let within = Duration::from_secs(8);
    let window = |t0: Instant, r: &Received, what: &str| {
        let s = r.at.duration_since(t0).as_secs_f64();
        assert!(r.closed, "{what}: still open after {within:?}");
        assert!(
            (0.8..=4.0).contains(&s),
            "{what}: closed after {s:.2} s, not after its 1 s timeout"
        );
    };

    // Sends nothing at all.
    let t0 = Instant::now();
    let idle = tokio::spawn(async move {
        let mut s = connect_from(loopback(2), addr).await.unwrap();
        read_until_closed(&mut s, within).await
    });
    // A request head that never ends: a byte every 200 ms.
    let slow_head = tokio::spawn(async move {
        let s = connect_from(loopback(2), addr).await.unwrap();
        trickle(s, SLOW_HEAD, Duration::from_millis(200), within).await
    });
    // A body that never ends.
    let slow_body = tokio::spawn(async move {
        let s = connect_from(loopback(2), addr).await.unwrap();
        trickle(s, SLOW_BODY, Duration::from_millis(200), within).await
    });
    // Kept alive: a second request 500 ms after the first is served on the
    // same connection, then the connection idles and is closed.
    let kept = tokio::spawn(async move {
        let mut s = connect_from(loopback(2), addr).await.unwrap();
        assert_eq!(exchange(&mut s, &get("/healthz")).await.status, 200);
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(exchange(&mut s, &get("/healthz")).await.status, 200);
        let t1 = Instant::now();
        (t1, read_until_closed(&mut s, within).await)
    });
    // Does not read: 100 pipelined requests for the 290 kB OpenAPI document
    // into a 4 kB receive buffer; the gateway's writes stall.
    let stalled = tokio::spawn(async move {
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        sock.set_recv_buffer_size(4096).unwrap();
        sock.bind(std::net::SocketAddr::new(loopback(2), 0))
            .unwrap();
        let mut s = sock.connect(addr).await.unwrap();
        let one = get("/v1/openapi.json");
        let many: Vec<u8> = one.iter().copied().cycle().take(one.len() * 100).collect();
        send(&s, &many).await.unwrap();
        tokio::time::sleep(Duration::from_secs(4)).await;
        read_until_closed(&mut s, Duration::from_secs(20)).await
    });

    let r = idle.await.unwrap();
    window(t0, &r, "a connection that sends nothing");
    assert!(r.bytes.is_empty(), "nothing is answered to nothing: {r:?}");

    let r = slow_head.await.unwrap();
    window(t0, &r, "a slow request head");
    parse_response(&r.bytes)
        .unwrap_or_else(|| panic!("no 408 before the close: {r:?}"))
        .assert_error(408, "request.timeout");

    let r = slow_body.await.unwrap();
    window(t0, &r, "a slow body");
    let resp = parse_response(&r.bytes).unwrap_or_else(|| panic!("no 408: {r:?}"));
    resp.assert_error(408, "request.timeout");
    assert_eq!(resp.header("connection"), Some("close"));

    let (t1, r) = kept.await.unwrap();
    window(t1, &r, "an idle kept-alive connection");
    assert!(r.bytes.is_empty(), "{r:?}");

    let r = stalled.await.unwrap();
    assert!(r.closed, "a connection whose reader stalls is closed");
    let size = gateway::api::health::OPENAPI.len();
    assert!(
        r.bytes.len() < 50 * size,
        "the gateway stopped writing to a stalled reader ({} bytes read)",
        r.bytes.len()
    );

    let m = metrics(addr).await;
    for (series, at_least) in [
        (
            "tongban_http_connections_timed_out_total{phase=\"header\"}",
            2.0,
        ),
        (
            "tongban_http_connections_timed_out_total{phase=\"body\"}",
            1.0,
        ),
        (
            "tongban_http_connections_timed_out_total{phase=\"idle\"}",
            1.0,
        ),
        (
            "tongban_http_connections_timed_out_total{phase=\"write\"}",
            1.0,
        ),
    ] {
        let v = metric(&m, series).unwrap_or_else(|| panic!("no {series} in {m}"));
        assert!(v >= at_least, "{series} = {v}, expected ≥ {at_least}");
    }
    child.kill().unwrap();
    child.wait().unwrap();
}

/// Item 13: one address gets `max_connections_per_address` connections; its
/// next one is closed at once, while another address is served, and a slot
/// freed is usable again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_address_limit_refuses_the_excess_from_one_address_while_others_are_served() {
    let files = city_files("nanjing", "[http]\nmax_connections_per_address = 20\n");
    let (child, url) = spawn_serve(&files, "warn");
    let mut child = Proc::from(child);
    let addr = sock_addr(&url);
    let a = loopback(2);
    let mut held = Vec::new();
    for _ in 0..20 {
        // Each is served: a request on it is answered.
        let mut s = connect_from(a, addr).await.unwrap();
        assert_eq!(exchange(&mut s, &get("/healthz")).await.status, 200);
        held.push(s);
    }
    // The 21st from the same address is closed without an answer.
    let mut extra = connect_from(a, addr).await.unwrap();
    let _ = send(&extra, &get("/healthz")).await;
    let r = read_until_closed(&mut extra, Duration::from_secs(3)).await;
    assert!(r.closed && r.bytes.is_empty(), "{r:?}");
    // Another address is served meanwhile.
    let mut other = connect_from(loopback(3), addr).await.unwrap();
    assert_eq!(exchange(&mut other, &get("/healthz")).await.status, 200);
    // The held ones still work.
    assert_eq!(exchange(&mut held[7], &get("/healthz")).await.status, 200);
    let m = metrics(addr).await;
    assert_eq!(
        metric(
            &m,
            "tongban_http_connections_refused_total{reason=\"per_address\"}"
        ),
        Some(1.0),
        "{m}"
    );
    assert!(metric(&m, "tongban_http_connections_open").unwrap() >= 22.0);
    // One closed: the address gets a connection again.
    drop(held.pop());
    let mut again = None;
    for _ in 0..50 {
        let mut s = connect_from(a, addr).await.unwrap();
        let _ = send(&s, &get("/healthz")).await;
        let r = read_until_closed(&mut s, Duration::from_millis(500)).await;
        if let Some(resp) = parse_response(&r.bytes) {
            again = Some(resp.status);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(again, Some(200), "a freed slot serves its address again");
    child.kill().unwrap();
    child.wait().unwrap();
}

/// Item 13: at `max_connections`, a new connection waits briefly for a slot
/// (served if one frees meanwhile), else it is closed; the cap is reported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_cap_waits_briefly_then_refuses_and_serves_again() {
    let files = city_files("nanjing", "[http]\nmax_connections = 30\n");
    let (child, url) = spawn_serve(&files, "warn");
    let mut child = Proc::from(child);
    let addr = sock_addr(&url);
    let before = metrics(addr).await;
    assert_eq!(
        metric(&before, "tongban_http_max_connections"),
        Some(30.0),
        "{before}"
    );
    let mut held = Vec::new();
    for i in 0..30u8 {
        let mut s = connect_from(loopback(2 + i % 3), addr).await.unwrap();
        assert_eq!(exchange(&mut s, &get("/healthz")).await.status, 200);
        held.push(s);
    }
    // Full: closed without an answer after the brief wait.
    let t0 = Instant::now();
    let mut extra = connect_from(loopback(9), addr).await.unwrap();
    let _ = send(&extra, &get("/healthz")).await;
    let r = read_until_closed(&mut extra, Duration::from_secs(5)).await;
    assert!(r.closed && r.bytes.is_empty(), "{r:?}");
    assert!(
        r.at.duration_since(t0) < Duration::from_secs(2),
        "refused within the brief wait, not left hanging: {:?}",
        r.at.duration_since(t0)
    );
    // Full, but a slot frees during the wait: served.
    let mut waiting = connect_from(loopback(9), addr).await.unwrap();
    send(&waiting, &get("/healthz")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(held.pop());
    assert_eq!(exchange(&mut waiting, b"").await.status, 200);
    drop(waiting);
    drop(held);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let m = metrics(addr).await;
    let refused = metric(
        &m,
        "tongban_http_connections_refused_total{reason=\"capacity\"}",
    )
    .unwrap_or(0.0);
    assert!(refused >= 1.0, "{m}");
    child.kill().unwrap();
    child.wait().unwrap();
}

/// Item 13: a gateway out of file descriptors backs off on accept errors,
/// counts them, never dies, and serves again once descriptors are free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accept_errors_when_out_of_file_descriptors_back_off_and_recover() {
    let files = city_files("nanjing", "");
    let (child, url) = spawn_serve(&files, "warn");
    let mut child = Proc::from(child);
    let addr = sock_addr(&url);
    let pid = child.id();
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count();
    let set = |n: &str| {
        let st = Command::new("prlimit")
            .args(["--pid", &pid.to_string(), &format!("--nofile={n}")])
            .status()
            .expect("prlimit (util-linux)");
        assert!(st.success());
    };
    let original = String::from_utf8(
        Command::new("prlimit")
            .args([
                "--pid",
                &pid.to_string(),
                "--nofile",
                "-o",
                "SOFT",
                "--noheadings",
            ])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
    .trim()
    .to_owned();
    // Room for 6 more descriptors only.
    set(&format!("{}:", fds + 6));
    let mut clients = Vec::new();
    for _ in 0..40 {
        let s = connect_from(loopback(2), addr).await.unwrap();
        let _ = send(&s, &get("/healthz")).await;
        clients.push(s);
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        child.try_wait().unwrap().is_none(),
        "the gateway died out of file descriptors"
    );
    drop(clients);
    // Descriptors free again (the limit is still low): served again.
    let mut served = false;
    for _ in 0..100 {
        if let Ok(mut s) = connect_from(loopback(3), addr).await {
            let _ = send(&s, &get("/healthz")).await;
            let r = read_until_closed(&mut s, Duration::from_millis(300)).await;
            if parse_response(&r.bytes).is_some_and(|r| r.status == 200) {
                served = true;
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(served, "served again once descriptors were free");
    set(&format!("{original}:"));
    let m = metrics(addr).await;
    let errors = metric(&m, "tongban_http_accept_errors_total").unwrap_or(0.0);
    assert!(errors >= 1.0, "accept errors counted: {m}");
    assert!(child.try_wait().unwrap().is_none());
    child.kill().unwrap();
    child.wait().unwrap();
}

/// Item 14: SIGTERM while a slow body and a slow request head hold their
/// connections and a publisher keeps writing: the process exits within the
/// shutdown grace (plus a margin), successfully, and every acknowledged
/// record is there after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_a_slow_client_exits_within_the_grace_and_keeps_acknowledged_records() {
    let files = Arc::new(city_files(
        "nanjing",
        "[http]\nshutdown_grace_ms = 2000\nheader_read_timeout_ms = 120000\nbody_read_timeout_ms = 120000\n",
    ));
    let (child, url) = spawn_serve(&files, "warn");
    let child = Proc::from(child);
    let addr = sock_addr(&url);
    // The slow clients: 60 s of trickling unless the gateway closes first.
    let slow_body = tokio::spawn(async move {
        let s = connect_from(loopback(2), addr).await.unwrap();
        trickle(
            s,
            SLOW_BODY,
            Duration::from_millis(300),
            Duration::from_secs(60),
        )
        .await
    });
    let slow_head = tokio::spawn(async move {
        let s = connect_from(loopback(2), addr).await.unwrap();
        trickle(
            s,
            SLOW_HEAD,
            Duration::from_millis(300),
            Duration::from_secs(60),
        )
        .await
    });
    // A publisher writing until the gateway stops answering.
    let acked: Arc<Mutex<Vec<(String, TxLocation)>>> = Arc::default();
    let publisher = {
        let (files, url, acked) = (files.clone(), url.clone(), acked.clone());
        tokio::spawn(async move {
            let c = dept_client(&files, &url);
            for i in 0u64.. {
                let id = format!("TERM-{i}");
                match c
                    .post::<_, WriteResult>("/v1/records", &publication(&files, &id, i))
                    .await
                {
                    Ok((201, w)) => acked.lock().unwrap().push((id, w.location.unwrap())),
                    Ok((s, w)) => panic!("unexpected answer {s} {w:?}"),
                    Err(_) => return,
                }
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!acked.lock().unwrap().is_empty(), "records acknowledged");
    let t0 = Instant::now();
    let st = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let child = child.take();
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    let took = t0.elapsed();
    assert!(out.status.success(), "exit status {:?}", out.status);
    assert!(
        took < Duration::from_secs(5),
        "SIGTERM took {took:?} with a slow client (grace 2 s)"
    );
    let body = slow_body.await.unwrap();
    let head = slow_head.await.unwrap();
    assert!(body.closed && head.closed, "{body:?} {head:?}");
    publisher.await.unwrap();

    let acked = acked.lock().unwrap().clone();
    let (child, url) = spawn_serve(&files, "warn");
    let mut child = Proc::from(child);
    let c = dept_client(&files, &url);
    for (id, loc) in &acked {
        let v: RecordView = c
            .get(&format!("/v1/records/marriage/{id}"))
            .await
            .unwrap_or_else(|e| panic!("acknowledged record {id} lost: {e}"));
        assert_eq!(v.versions[0].location.as_ref(), Some(loc), "{id}");
    }
    eprintln!(
        "SIGTERM with slow clients: exited in {took:?}, {} acknowledged records kept",
        acked.len()
    );
    child.kill().unwrap();
    child.wait().unwrap();
}

/// Item 15: every error the HTTP layer answers has the API's JSON error body
/// with a stable code: unknown route (404), known route with another method
/// (405, with `Allow`), a body over the limit (413), malformed JSON (400), a
/// body too slow (408).
#[tokio::test]
async fn every_error_answer_has_the_json_error_body() {
    let files = city_files("nanjing", "[http]\nbody_read_timeout_ms = 500\n");
    let gw = start(&files).await;
    let addr = sock_addr(&gw.url);
    let mut s = connect_from(loopback(1), addr).await.unwrap();

    exchange(&mut s, &get("/no/such/route"))
        .await
        .assert_error(404, "route.not_found");
    for req in [
        "DELETE /v1/records HTTP/1.1\r\nhost: g\r\n\r\n",
        "GET /v1/records HTTP/1.1\r\nhost: g\r\n\r\n",
        "PUT /healthz HTTP/1.1\r\nhost: g\r\ncontent-length: 0\r\n\r\n",
        "POST /v1/chain HTTP/1.1\r\nhost: g\r\ncontent-length: 2\r\n\r\n{}",
    ] {
        let r = exchange(&mut s, req.as_bytes()).await;
        r.assert_error(405, "route.method_not_allowed");
        assert!(r.header("allow").is_some(), "405 names the methods: {r:?}");
    }
    let r = exchange(
        &mut s,
        b"POST /v1/records HTTP/1.1\r\nhost: g\r\ncontent-length: 99999999999\r\n\r\n",
    )
    .await;
    r.assert_error(413, "request.too_large");

    // Malformed JSON, correctly signed.
    let c = client(&gw, &files, DEPT);
    match c
        .post_raw::<serde_json::Value>("/v1/records", b"{not json".to_vec())
        .await
    {
        Err(gateway::client::ClientError::Api {
            status: 400, code, ..
        }) => assert_eq!(code, "request.malformed_json"),
        other => panic!("{other:?}"),
    }

    // A body that does not arrive in time: 408, and the connection is closed.
    let s = connect_from(loopback(1), addr).await.unwrap();
    let r = trickle(
        s,
        SLOW_BODY,
        Duration::from_millis(100),
        Duration::from_secs(5),
    )
    .await;
    assert!(r.closed, "{r:?}");
    let resp = parse_response(&r.bytes).unwrap_or_else(|| panic!("{r:?}"));
    resp.assert_error(408, "request.timeout");
    gw.stop().await;
}
