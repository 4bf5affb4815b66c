//! Relay nodes over real loopback sockets: direct requests, routing through a
//! hub, the allowlist, garbage, oversized frames and a restarted peer.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use libp2p::Multiaddr;
use proofs::keys::{SigningKey, test_seed};
use relay::{Handler, HandlerFuture, PeerInfo, Refusal, Relay, RelayConfig, RelayError};

struct Echo(&'static str);

impl Handler for Echo {
    fn handle(&self, from: &str, service: &str, body: Vec<u8>) -> HandlerFuture {
        let me = self.0;
        let reply = format!(
            "{me} heard {from} on {service}: {}",
            String::from_utf8_lossy(&body)
        );
        let service = service.to_owned();
        Box::pin(async move {
            if service == "refuse" {
                Err(Refusal::new("test.refused", "as asked"))
            } else {
                Ok(reply.into_bytes())
            }
        })
    }
}

fn key(id: &str) -> SigningKey {
    SigningKey::from_seed(&test_seed(&format!("relay-test/{id}")))
}

fn free_addr() -> Multiaddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    format!("/ip4/127.0.0.1/tcp/{port}").parse().unwrap()
}

/// Four nodes: a and b talk directly; h is a hub; c is reached only through h.
struct Net {
    addrs: BTreeMap<&'static str, Multiaddr>,
}

impl Net {
    fn new() -> Self {
        let addrs = ["a", "b", "h", "c"]
            .into_iter()
            .map(|n| (n, free_addr()))
            .collect();
        Net { addrs }
    }
    fn config(&self, me: &'static str) -> RelayConfig {
        let all = ["a", "b", "h", "c"];
        let mut cfg = RelayConfig::new(me, key(me));
        cfg.listen = vec![self.addrs[me].clone()];
        cfg.directory = all
            .iter()
            .map(|n| (n.to_string(), key(n).public()))
            .collect();
        cfg.request_timeout = Duration::from_secs(3);
        let peers: Vec<&str> = match me {
            "c" => vec!["h"],
            "h" => vec!["a", "b", "c"],
            _ => vec!["a", "b", "h"],
        };
        cfg.peers = peers
            .into_iter()
            .filter(|p| *p != me)
            .map(|p| PeerInfo {
                id: p.into(),
                key: key(p).public(),
                addrs: vec![self.addrs[p].clone()],
            })
            .collect();
        match me {
            "c" => {
                for d in ["a", "b"] {
                    cfg.routes.insert(d.into(), "h".into());
                }
            }
            "h" => cfg.forward = true,
            _ => {
                cfg.routes.insert("c".into(), "h".into());
            }
        }
        cfg
    }
    async fn start(&self, me: &'static str) -> Relay {
        Relay::start(self.config(me), Arc::new(Echo(me)))
            .await
            .unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_and_through_the_hub() {
    let net = Net::new();
    let a = net.start("a").await;
    let _b = net.start("b").await;
    let h = net.start("h").await;
    let c = net.start("c").await;

    let r = a.request("b", "echo", b"hi".to_vec()).await.unwrap();
    assert_eq!(r, b"b heard a on echo: hi");
    let r = a.request("c", "echo", b"far".to_vec()).await.unwrap();
    assert_eq!(r, b"c heard a on echo: far", "through the hub");
    let r = c.request("b", "echo", b"back".to_vec()).await.unwrap();
    assert_eq!(r, b"b heard c on echo: back", "from behind the hub");
    assert!(h.stats().forwarded.load(Ordering::Relaxed) >= 2);

    // A refusal travels back with its code, signed by the destination.
    match a.request("c", "refuse", Vec::new()).await {
        Err(RelayError::Refused(r)) => assert_eq!(r.code, "test.refused"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    // c only knows its hub: it is never connected to a or b.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(c.connected().await, vec!["h".to_string()]);
    // No route to an unknown gateway.
    assert_eq!(
        a.request("nowhere", "echo", Vec::new())
            .await
            .unwrap_err()
            .code(),
        "relay.no_route"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unlisted_peers_are_refused_and_garbage_is_survived() {
    let net = Net::new();
    let a = net.start("a").await;
    let b = net.start("b").await;

    // An identity that is not in b's allowlist: refused after Noise, before any protocol.
    let mut cfg = RelayConfig::new("x", key("x"));
    cfg.peers = vec![PeerInfo {
        id: "b".into(),
        key: key("b").public(),
        addrs: vec![net.addrs["b"].clone()],
    }];
    cfg.directory = cfg.peers.iter().map(|p| (p.id.clone(), p.key)).collect();
    cfg.request_timeout = Duration::from_secs(2);
    cfg.attempts = 2;
    let x = Relay::start(cfg, Arc::new(Echo("x"))).await.unwrap();
    let err = x
        .request("b", "echo", b"let me in".to_vec())
        .await
        .unwrap_err();
    assert_eq!(err.code(), "relay.unreachable", "{err}");
    assert!(b.stats().refused_connections.load(Ordering::Relaxed) >= 1);
    assert_eq!(b.stats().requests_in.load(Ordering::Relaxed), 0);

    // Raw garbage on b's port: the handshake fails, b keeps serving.
    let port = net.addrs["b"]
        .to_string()
        .rsplit('/')
        .next()
        .unwrap()
        .parse::<u16>()
        .unwrap();
    for _ in 0..3 {
        use std::io::Write;
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let _ = s.write_all(&[0xff; 4096]);
        let _ = s.write_all(b"\x00\x00\x00\x05hello garbage");
    }
    let r = a
        .request("b", "echo", b"still there?".to_vec())
        .await
        .unwrap();
    assert_eq!(r, b"b heard a on echo: still there?");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_frame_disconnects_its_sender_and_nothing_else() {
    let net = Net::new();
    // b accepts frames of at most 1 KiB; a sends more.
    let mut cfg_b = net.config("b");
    cfg_b.max_frame = 1024;
    let b = Relay::start(cfg_b, Arc::new(Echo("b"))).await.unwrap();
    let mut cfg_a = net.config("a");
    cfg_a.attempts = 1;
    let a = Relay::start(cfg_a, Arc::new(Echo("a"))).await.unwrap();
    let h = net.start("h").await;

    let err = a
        .request("b", "echo", vec![7u8; 64 * 1024])
        .await
        .unwrap_err();
    // b answers `relay.too_large` and closes the connection: a sees the
    // refusal, or the closed connection first, depending on timing.
    assert!(
        matches!(err.code(), "relay.unreachable" | "relay.too_large"),
        "{err}"
    );
    assert!(b.stats().malformed.load(Ordering::Relaxed) >= 1);
    // b still serves others, and a again once it sends sane frames (on a new
    // connection: a first sees b close the one it misused).
    let r = h.request("b", "echo", b"ok".to_vec()).await.unwrap();
    assert_eq!(r, b"b heard h on echo: ok");
    let t = std::time::Instant::now();
    while a.stats().connections_closed.load(Ordering::Relaxed) == 0 {
        assert!(t.elapsed() < Duration::from_secs(10), "a never saw b close");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let r = a.request("b", "echo", b"sorry".to_vec()).await.unwrap();
    assert_eq!(r, b"b heard a on echo: sorry");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_complete_after_a_peer_restarts() {
    let net = Net::new();
    let a = net.start("a").await;
    let b = net.start("b").await;
    assert!(a.request("b", "echo", b"1".to_vec()).await.is_ok());
    drop(b);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let pending = {
        let a = a.clone();
        tokio::spawn(async move { a.request("b", "echo", b"2".to_vec()).await })
    };
    tokio::time::sleep(Duration::from_millis(400)).await;
    let _b = net.start("b").await;
    let r = pending.await.unwrap().unwrap();
    assert_eq!(r, b"b heard a on echo: 2");
    assert!(a.stats().retries.load(Ordering::Relaxed) >= 1);
}

/// Issue 15, finding 9: relayed frames' nonces were not checked at the
/// destination, so a hub could replay a signed frame. Here the hub sends the
/// same frame signed by `a` twice, and an old one: the destination takes the
/// first only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_cannot_replay_a_signed_frame_or_send_a_stale_one() {
    use relay::frame::{REPLAY_WINDOW_MS, Request, Response};
    let net = Net::new();
    let a = net.start("a").await;
    let h = net.start("h").await;
    let c = net.start("c").await;
    // Connections are up: a reaches c through the hub.
    let r = a.request("c", "echo", b"first".to_vec()).await.unwrap();
    assert_eq!(r, b"c heard a on echo: first");

    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let signed = |nonce: u64, body: &[u8]| {
        let mut req = Request {
            from: "a".into(),
            to: "c".into(),
            service: "echo".into(),
            body: body.to_vec(),
            nonce,
            signature: None,
        };
        req.sign(&key("a"));
        req.encode()
    };
    let result = |bytes: Vec<u8>| Response::decode(&bytes, 1 << 20).unwrap().result;
    let frame = signed(now << 16 | 0xbeef, b"pay once");
    let first = result(h.send_frame("c", frame.clone()).await.unwrap());
    assert_eq!(first.unwrap(), b"c heard a on echo: pay once");
    let again = result(h.send_frame("c", frame).await.unwrap());
    assert_eq!(again.unwrap_err().code, "relay.replayed");
    let stale = signed((now - REPLAY_WINDOW_MS - 60_000) << 16, b"old");
    assert_eq!(
        result(h.send_frame("c", stale).await.unwrap())
            .unwrap_err()
            .code,
        "relay.stale"
    );
    assert_eq!(c.stats().replays_refused.load(Ordering::Relaxed), 2);
    // a's own requests, retries included, keep working.
    for i in 0..20 {
        let r = a.request("c", "echo", vec![b'x'; i]).await.unwrap();
        assert!(r.starts_with(b"c heard a on echo"));
    }
}
