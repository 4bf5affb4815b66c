//! Signed webhook push of inbox items: a utility (or department) that names
//! a URL in the gateway's `webhooks` setting is sent each new service request
//! as it arrives, instead of (or as well as) pulling `/v1/inbox`.
//!
//! The push is a notification, never the record: the inbox stays the source
//! of truth, a request is closed only by the recipient's signed receipt
//! (`POST /v1/inbox/receipt`), and an item stays open until then.
//!
//! - **Signed** like every API call, in the other direction: the gateway signs
//!   `POST` + the URL's path and query + timestamp + nonce + body with its own
//!   registry key, the audience being the recipient's member id (so a push to
//!   one utility cannot be replayed to another). The body is the
//!   [`InboxItem`] as JSON, whose delivery carries the centre's own signature
//!   and is sealed (HPKE) to the recipient: a receiver checks both, so neither
//!   the transport nor the gateway alone can forge a request.
//! - **At least once**: one worker per recipient pushes items in arrival order,
//!   retrying each (250 ms, doubling, at most 5 s apart) until the receiver
//!   answers 2xx or the item is closed. After a restart the gateway pushes
//!   again every item still open. A receiver dedupes by delivery id.
//! - Nothing personal crosses in plaintext: the delivery's fields are sealed;
//!   what is visible is ids, the service name and the centre.
//!
//! [`verify_push`] is the receiver's side (used by `tongban utility receive`).

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::{Arc, Weak};
use std::time::Duration;

use proofs::Hash;
use proofs::trust::TrustRoots;
use tokio::sync::mpsc;

use crate::auth::{AuthError, Presented, Verifier};
use crate::inbox::InboxItem;
use crate::state::AppState;

/// Largest push body a receiver reads (an item holds at most a 64 KiB sealed request).
pub const MAX_PUSH_BODY: usize = 256 * 1024;
/// First retry delay.
pub const FIRST_RETRY: Duration = Duration::from_millis(250);
/// Longest retry delay.
pub const MAX_RETRY: Duration = Duration::from_secs(5);
/// Timeout of one push attempt.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// Checks a webhook URL as configured: `http://host[:port]/path`. TLS is not
/// needed for confidentiality (the payload is sealed to the recipient) nor
/// for integrity (it is signed twice); terminate TLS in a local proxy if
/// policy asks for it.
pub fn check_url(url: &str) -> Result<reqwest::Url, String> {
    let u = reqwest::Url::parse(url).map_err(|e| format!("`{url}` is not a URL: {e}"))?;
    if u.scheme() != "http" {
        return Err(format!(
            "`{url}`: only http:// is supported (the payload is sealed and signed)"
        ));
    }
    if u.host_str().is_none() {
        return Err(format!("`{url}` has no host"));
    }
    if !u.username().is_empty() || u.password().is_some() {
        return Err(format!("`{url}` must not carry credentials"));
    }
    if u.fragment().is_some() {
        return Err(format!("`{url}` must not have a fragment"));
    }
    Ok(u)
}

/// The path and query of `url` as signed.
pub fn path_and_query(url: &reqwest::Url) -> String {
    match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_owned(),
    }
}

/// Push counters (rendered with the gateway's metrics).
#[derive(Default)]
pub struct PushStats {
    /// Items a receiver acknowledged with 2xx.
    pub delivered: std::sync::atomic::AtomicU64,
    /// Attempts that failed (connection, timeout or non-2xx); each is retried.
    pub failed_attempts: std::sync::atomic::AtomicU64,
}

/// The running push workers, one per configured recipient.
pub struct Pusher {
    queues: BTreeMap<String, mpsc::UnboundedSender<Hash>>,
    /// Counters.
    pub stats: Arc<PushStats>,
}

impl Pusher {
    /// Starts one worker per `(recipient, url)`; each first pushes what is
    /// open in that inbox now. Workers hold the state weakly and end with it.
    pub fn start(state: &Arc<AppState>, hooks: &BTreeMap<String, reqwest::Url>) -> Pusher {
        let stats = Arc::new(PushStats::default());
        let http = reqwest::Client::builder()
            .timeout(ATTEMPT_TIMEOUT)
            .pool_max_idle_per_host(2)
            .build()
            .unwrap_or_default();
        let mut queues = BTreeMap::new();
        for (member, url) in hooks {
            let (tx, rx) = mpsc::unbounded_channel();
            let seed: Vec<Hash> = crate::inbox::pending(state, member)
                .map(|v| v.into_iter().map(|i| i.delivery.id).collect())
                .unwrap_or_default();
            tokio::spawn(worker(
                Arc::downgrade(state),
                member.clone(),
                url.clone(),
                seed,
                rx,
                http.clone(),
                stats.clone(),
            ));
            queues.insert(member.clone(), tx);
        }
        Pusher { queues, stats }
    }

    /// Queues `delivery` for `recipient`'s webhook, if it has one.
    pub fn notify(&self, recipient: &str, delivery: Hash) {
        if let Some(q) = self.queues.get(recipient) {
            let _ = q.send(delivery);
        }
    }
}

async fn worker(
    weak: Weak<AppState>,
    member: String,
    url: reqwest::Url,
    seed: Vec<Hash>,
    mut rx: mpsc::UnboundedReceiver<Hash>,
    http: reqwest::Client,
    stats: Arc<PushStats>,
) {
    use std::sync::atomic::Ordering::Relaxed;
    let pq = path_and_query(&url);
    let mut queue: VecDeque<Hash> = VecDeque::new();
    let mut queued: HashSet<Hash> = HashSet::new();
    for id in seed {
        if queued.insert(id) {
            queue.push_back(id);
        }
    }
    loop {
        // Take in whatever has been notified meanwhile (without waiting).
        while let Ok(id) = rx.try_recv() {
            if queued.insert(id) {
                queue.push_back(id);
            }
        }
        let id = match queue.pop_front() {
            Some(id) => id,
            None => match rx.recv().await {
                Some(id) => {
                    queued.insert(id);
                    id
                }
                None => return,
            },
        };
        let mut delay = FIRST_RETRY;
        let mut attempt: u32 = 0;
        loop {
            let (body, headers) = {
                let Some(state) = weak.upgrade() else { return };
                let item = match crate::inbox::open_item(&state, &member, &id) {
                    Ok(Some(item)) => item,
                    // Closed (or gone): nothing to push.
                    Ok(None) => break,
                    Err(e) => {
                        tracing::warn!(recipient = %member, error = %e.message, "webhook: inbox read failed");
                        break;
                    }
                };
                let body = serde_json::to_vec(&item).unwrap_or_default();
                let headers = crate::auth::sign_request(
                    &state.gateway_key,
                    &state.gateway_id,
                    &member,
                    "POST",
                    &pq,
                    state.clock.now_ms(),
                    &crate::auth::fresh_nonce(),
                    &body,
                );
                (body, headers)
            };
            let mut req = http
                .post(url.clone())
                .header("content-type", "application/json")
                .body(body);
            for (k, v) in headers {
                req = req.header(k, v);
            }
            attempt += 1;
            match req.send().await {
                Ok(r) if r.status().is_success() => {
                    stats.delivered.fetch_add(1, Relaxed);
                    tracing::info!(recipient = %member, delivery = %id, attempt, "webhook: pushed");
                    break;
                }
                Ok(r) => {
                    stats.failed_attempts.fetch_add(1, Relaxed);
                    tracing::warn!(recipient = %member, delivery = %id, attempt, status = r.status().as_u16(), "webhook: receiver refused; retrying");
                }
                Err(e) => {
                    stats.failed_attempts.fetch_add(1, Relaxed);
                    tracing::warn!(recipient = %member, delivery = %id, attempt, error = %e, "webhook: push failed; retrying");
                }
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(MAX_RETRY);
        }
        queued.remove(&id);
    }
}

/// Why a receiver refused a push.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PushRefusal {
    /// Authentication failed (401).
    #[error("{0}")]
    Auth(AuthError),
    /// Signed by someone other than the recipient's city gateway (403).
    #[error("push signed by `{found}`, not by this city's gateway `{expected}`")]
    WrongSender {
        /// The gateway expected.
        expected: String,
        /// Who signed.
        found: String,
    },
    /// The body is not a valid item for this recipient (422).
    #[error("{0}")]
    BadItem(String),
}

impl PushRefusal {
    /// Stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            PushRefusal::Auth(e) => e.code(),
            PushRefusal::WrongSender { .. } => "webhook.wrong_sender",
            PushRefusal::BadItem(_) => "webhook.bad_item",
        }
    }
    /// The HTTP status a receiver answers with.
    pub fn status(&self) -> u16 {
        match self {
            PushRefusal::Auth(_) => 401,
            PushRefusal::WrongSender { .. } => 403,
            PushRefusal::BadItem(_) => 422,
        }
    }
}

/// The receiver's check of one push to `recipient`: signed (fresh, not
/// replayed) by the gateway of the recipient's city, addressed to
/// `recipient`, and carrying a delivery whose id is derived from its
/// application and service and whose centre signature verifies.
/// `verifier` must have been made with `recipient` as its audience.
pub fn verify_push(
    roots: &TrustRoots,
    registry: &regions::Registry,
    verifier: &Verifier,
    recipient: &str,
    p: &Presented<'_>,
    now_ms: u64,
) -> Result<InboxItem, PushRefusal> {
    let expected = roots
        .members
        .get(recipient)
        .and_then(|m| registry.city(&m.city))
        .map(|c| c.gateway.id.clone())
        .ok_or_else(|| PushRefusal::BadItem(format!("`{recipient}` is not a registry member")))?;
    // The sender is checked before the signature is, so that a push signed by
    // any other member is refused without consuming anything.
    if let Some(m) = p.member
        && m != expected
    {
        return Err(PushRefusal::WrongSender {
            expected,
            found: m.to_owned(),
        });
    }
    verifier
        .verify(p, roots, now_ms)
        .map_err(PushRefusal::Auth)?;
    let item: InboxItem =
        serde_json::from_slice(p.body).map_err(|e| PushRefusal::BadItem(format!("body: {e}")))?;
    let d = &item.delivery;
    if d.recipient != recipient {
        return Err(PushRefusal::BadItem(format!(
            "delivery.recipient: `{}` is not `{recipient}`",
            d.recipient
        )));
    }
    d.check(roots)
        .map_err(|f| PushRefusal::BadItem(f.to_string()))?;
    Ok(item)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::applications::{Delivery, delivery_id};
    use crate::auth::sign_request;
    use crate::testkit::{example_registry, key};
    use proofs::seal::Sealed;

    const NOW: u64 = 1_800_000_000_000;
    const TO: &str = "nanjing.electricity";
    const GW: &str = "nanjing.gateway";

    fn setup() -> (regions::Registry, TrustRoots) {
        let (registry, hash) = regions::load(example_registry()).unwrap();
        let roots = registry.trust_roots(hash).unwrap();
        (registry, roots)
    }

    fn item(recipient: &str) -> InboxItem {
        let application = proofs::hash::sha256(b"application 1");
        let mut d = Delivery {
            id: delivery_id(&application, "electricity-account"),
            application,
            service: "electricity-account".into(),
            centre: "nanjing.centre".into(),
            recipient: recipient.into(),
            sealed: Sealed {
                enc: [7; 32],
                ciphertext: vec![1, 2, 3, 4],
            },
            signature: proofs::Signature([0; 64]),
        };
        d.signature = key("nanjing.centre").sign(&d.signing_bytes());
        InboxItem {
            delivery: d,
            received_ms: NOW - 5,
            receipt: None,
        }
    }

    struct Push {
        headers: [(&'static str, String); 4],
        body: Vec<u8>,
    }

    fn push(signer: &str, audience: &str, at: u64, body: Vec<u8>) -> Push {
        let headers = sign_request(
            &key(signer),
            signer,
            audience,
            "POST",
            "/hook",
            at,
            &crate::auth::fresh_nonce(),
            &body,
        );
        Push { headers, body }
    }

    fn check(v: &Verifier, p: &Push) -> Result<InboxItem, PushRefusal> {
        let (registry, roots) = setup();
        let presented = Presented {
            member: Some(&p.headers[0].1),
            timestamp: Some(&p.headers[1].1),
            nonce: Some(&p.headers[2].1),
            signature: Some(&p.headers[3].1),
            method: "POST",
            path_and_query: "/hook",
            body: &p.body,
        };
        verify_push(&roots, &registry, v, TO, &presented, NOW)
    }

    /// The code for `item` pushed with a good signature from the gateway.
    fn signed_item(v: &Verifier, item: &InboxItem) -> &'static str {
        code(check(
            v,
            &push(GW, TO, NOW, serde_json::to_vec(item).unwrap()),
        ))
    }

    fn code(r: Result<InboxItem, PushRefusal>) -> &'static str {
        r.map(|_| "ok").unwrap_or_else(|e| e.code())
    }

    #[test]
    fn a_push_from_the_city_gateway_is_accepted_once() {
        let v = Verifier::new(TO, 30_000, NOW - 60_000);
        let body = serde_json::to_vec(&item(TO)).unwrap();
        let p = push(GW, TO, NOW, body);
        let got = check(&v, &p).unwrap();
        assert_eq!(got.delivery, item(TO).delivery);
        assert_eq!(code(check(&v, &p)), "auth.replayed");
    }

    #[test]
    fn every_refusal_has_its_code() {
        let v = Verifier::new(TO, 30_000, NOW - 60_000);
        let good = serde_json::to_vec(&item(TO)).unwrap();
        // Signed by a member other than this city's gateway: a centre, or another city's gateway.
        assert_eq!(
            code(check(&v, &push("nanjing.centre", TO, NOW, good.clone()))),
            "webhook.wrong_sender"
        );
        assert_eq!(
            code(check(&v, &push("shanghai.gateway", TO, NOW, good.clone()))),
            "webhook.wrong_sender"
        );
        // Meant for another recipient (audience), replayed here.
        assert_eq!(
            code(check(&v, &push(GW, "nanjing.tax", NOW, good.clone()))),
            "auth.bad_signature"
        );
        // Outside the skew window.
        assert_eq!(
            code(check(&v, &push(GW, TO, NOW - 31_000, good.clone()))),
            "auth.expired"
        );
        // No signature at all.
        let mut p = push(GW, TO, NOW, good.clone());
        let (registry, roots) = setup();
        let unsigned = Presented {
            member: Some(GW),
            timestamp: Some(&p.headers[1].1),
            nonce: Some(&p.headers[2].1),
            signature: None,
            method: "POST",
            path_and_query: "/hook",
            body: &p.body,
        };
        assert_eq!(
            code(verify_push(&roots, &registry, &v, TO, &unsigned, NOW)),
            "auth.missing"
        );
        // The body changed after signing.
        p.body[10] ^= 1;
        assert_eq!(code(check(&v, &p)), "auth.bad_signature");
        // Properly signed, but the item itself is wrong.
        let mut other = item("nanjing.tax");
        assert_eq!(signed_item(&v, &other), "webhook.bad_item");
        other = item(TO);
        other.delivery.service = "gas-account".into();
        other.delivery.signature = key("nanjing.centre").sign(&other.delivery.signing_bytes());
        assert_eq!(signed_item(&v, &other), "webhook.bad_item");
        other = item(TO);
        other.delivery.sealed.ciphertext.push(0);
        assert_eq!(signed_item(&v, &other), "webhook.bad_item");
        other = item(TO);
        other.delivery.centre = "nanjing.tax".into();
        assert_eq!(signed_item(&v, &other), "webhook.bad_item");
        assert_eq!(
            code(check(&v, &push(GW, TO, NOW, b"{\"delivery\":1}".to_vec()))),
            "webhook.bad_item"
        );
        // None of the refused pushes consumed anything: a good one still passes.
        assert_eq!(code(check(&v, &push(GW, TO, NOW, good))), "ok");
    }

    #[test]
    fn urls_are_checked() {
        assert!(check_url("http://127.0.0.1:9000/hook?x=1").is_ok());
        for bad in [
            "https://example.org/hook",
            "ftp://example.org/",
            "http://user:pw@example.org/",
            "http://example.org/#frag",
            "not a url",
        ] {
            assert!(check_url(bad).is_err(), "{bad}");
        }
        let u = check_url("http://127.0.0.1:9000/hook?x=1").unwrap();
        assert_eq!(path_and_query(&u), "/hook?x=1");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        /// Any single changed byte of a signed push is refused.
        #[test]
        fn any_changed_byte_is_refused(pos in 0usize..4096, bit in 0u8..8) {
            let v = Verifier::new(TO, 30_000, NOW - 60_000);
            let mut p = push(GW, TO, NOW, serde_json::to_vec(&item(TO)).unwrap());
            let n = p.body.len();
            p.body[pos % n] ^= 1 << bit;
            proptest::prop_assert!(check(&v, &p).is_err());
        }
    }
}
