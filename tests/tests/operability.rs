//! What an operations team watches: readiness that follows the peers, the
//! per-protocol and backlog metrics, request ids on every response, and
//! refusals counted by their stable code. Two gateways over real libp2p.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use gateway::testkit::{city_files, free_multiaddr, relay_section, start};

async fn get(url: &str, request_id: Option<&str>) -> (u16, String, Option<String>) {
    let c = reqwest::Client::new();
    let mut r = c.get(url);
    if let Some(id) = request_id {
        r = r.header("x-request-id", id);
    }
    let resp = r.send().await.unwrap();
    let status = resp.status().as_u16();
    let id = resp
        .headers()
        .get("x-request-id")
        .map(|v| v.to_str().unwrap().to_owned());
    (status, resp.text().await.unwrap(), id)
}

/// The value of one metric line (exact name and labels), if present.
fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn readiness_follows_the_peers_and_metrics_count_each_protocol() {
    let addrs: BTreeMap<String, String> = ["nanjing.gateway", "shanghai.gateway"]
        .into_iter()
        .map(|g| (g.to_owned(), free_multiaddr()))
        .collect();
    let nj_files = city_files("nanjing", &relay_section("nanjing.gateway", &addrs));
    let nj = start(&nj_files).await;

    // Alone, Nanjing's gateway is up but not ready: it reaches no other gateway.
    let (status, body, _) = get(&format!("{}/healthz", nj.url), None).await;
    assert_eq!(status, 200, "{body}");
    let (status, body, _) = get(&format!("{}/readyz", nj.url), None).await;
    assert_eq!(status, 503, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["status"], "not_ready");
    assert!(
        v["reasons"][0]
            .as_str()
            .unwrap()
            .contains("no other gateway"),
        "{v:#}"
    );

    // Shanghai comes up: Nanjing connects and becomes ready.
    let sh_files = city_files("shanghai", &relay_section("shanghai.gateway", &addrs));
    let sh = start(&sh_files).await;
    let t = Instant::now();
    loop {
        let (status, body, _) = get(&format!("{}/readyz", nj.url), None).await;
        if status == 200 {
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            assert_eq!(v["status"], "ready");
            assert_eq!(v["peers_connected"], 1, "{v:#}");
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(30), "never ready: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The follow loops pull Shanghai's headers: counted per service and
    // direction on both sides, with a latency histogram.
    let pulled =
        "tongban_relay_requests_total{service=\"headers.pull\",direction=\"out\",outcome=\"ok\"}";
    let served =
        "tongban_relay_requests_total{service=\"headers.pull\",direction=\"in\",outcome=\"ok\"}";
    let t = Instant::now();
    let text = loop {
        let (_, text, _) = get(&format!("{}/metrics", nj.url), None).await;
        if metric(&text, pulled).is_some_and(|n| n >= 1.0) {
            break text;
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "no header pull counted:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        metric(&text, "tongban_relay_connected_peers"),
        Some(1.0),
        "{text}"
    );
    assert!(metric(&text, "tongban_relay_connections_opened_total").unwrap() >= 1.0);
    assert!(
        metric(
            &text,
            "tongban_relay_request_duration_ms_count{service=\"headers.pull\",direction=\"out\"}"
        )
        .unwrap()
            >= 1.0,
        "{text}"
    );
    assert_eq!(metric(&text, "tongban_match_backlog"), Some(0.0), "{text}");
    assert_eq!(
        metric(&text, "tongban_delivery_backlog"),
        Some(0.0),
        "{text}"
    );
    let (_, sh_text, _) = get(&format!("{}/metrics", sh.url), None).await;
    assert!(metric(&sh_text, served).unwrap() >= 1.0, "{sh_text}");

    // Request ids: the caller's is echoed; otherwise one is made.
    let (_, _, id) = get(&format!("{}/v1/chain", nj.url), Some("ops-check-1")).await;
    assert_eq!(id.as_deref(), Some("ops-check-1"));
    let (_, _, id) = get(&format!("{}/v1/chain", nj.url), Some("bad id with spaces")).await;
    let id = id.unwrap();
    assert_eq!(id.len(), 24, "{id}");
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));

    // A refusal is counted under its stable code.
    let before = metric(
        &get(&format!("{}/metrics", nj.url), None).await.1,
        "tongban_refusals_total{reason=\"auth.missing\"}",
    )
    .unwrap_or(0.0);
    let (status, body, _) = get(&format!("{}/v1/inbox", nj.url), None).await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("auth.missing"), "{body}");
    let after = metric(
        &get(&format!("{}/metrics", nj.url), None).await.1,
        "tongban_refusals_total{reason=\"auth.missing\"}",
    );
    assert_eq!(after, Some(before + 1.0));

    // Shanghai stops: Nanjing notices and is no longer ready.
    sh.stop().await;
    let t = Instant::now();
    loop {
        let (status, body, _) = get(&format!("{}/readyz", nj.url), None).await;
        if status == 503 {
            assert!(body.contains("no other gateway"), "{body}");
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(30), "still ready: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    nj.stop().await;
}
