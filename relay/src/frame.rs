//! The bytes on the wire: request and response frames, and what their
//! end-to-end signatures cover.
//!
//! A request names its origin gateway (`from`), its destination gateway
//! (`to`), a service and an opaque body. When it travels through a hub, the
//! origin signs it (the hub's Noise identity is not the origin's) and the
//! destination signs its response; a hub can drop a message but not forge or
//! alter one. Directly between two gateways, the Noise session already
//! authenticates both ends and nothing more is signed.

use proofs::encoding::{DecodeError, Decoder, Encoder};
use proofs::hash::{Hash, sha256};
use proofs::keys::{PublicKey, Signature, SigningKey};

/// Domain of a request frame.
pub const REQUEST_DOMAIN: &str = "tongban/relay-request/v1";
/// Domain of a response frame.
pub const RESPONSE_DOMAIN: &str = "tongban/relay-response/v1";
/// Domain of what an origin signs.
pub const REQUEST_SIG_DOMAIN: &str = "tongban/relay-request-sig/v1";
/// Domain of what a destination signs.
pub const RESPONSE_SIG_DOMAIN: &str = "tongban/relay-response-sig/v1";
/// Longest id or service name.
pub const MAX_NAME: usize = 128;

/// A request between gateways.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Origin gateway id.
    pub from: String,
    /// Destination gateway id.
    pub to: String,
    /// Service, e.g. `match` or `headers.pull`.
    pub service: String,
    /// What the service reads.
    pub body: Vec<u8>,
    /// Unique per origin: `ms << 16 | counter` (the destination keeps a
    /// replay window, [`ReplayWindow`]).
    pub nonce: u64,
    /// The origin's signature, when the frame is relayed.
    pub signature: Option<Signature>,
}

/// A response: the service's answer or a refusal with a stable code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The body, or the refusal.
    pub result: Result<Vec<u8>, Refusal>,
    /// The destination's signature, when the request was relayed.
    pub signature: Option<Signature>,
}

/// A refusal: a stable code and words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Stable code, e.g. `relay.no_route` or `match.expired`.
    pub code: String,
    /// Why.
    pub message: String,
}

impl Refusal {
    /// A refusal.
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Refusal {
            code: code.into(),
            message: message.into(),
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

fn put_sig(e: &mut Encoder, s: &Option<Signature>) {
    match s {
        None => {
            e.u8(0);
        }
        Some(s) => {
            e.u8(1).raw(&s.0);
        }
    }
}

fn get_sig(d: &mut Decoder<'_>) -> Result<Option<Signature>, DecodeError> {
    match d.u8("signature.present")? {
        0 => Ok(None),
        1 => Ok(Some(Signature(d.array("signature")?))),
        v => Err(DecodeError::UnknownTag {
            field: "signature.present",
            value: v.into(),
        }),
    }
}

impl Request {
    /// What the origin signs.
    pub fn signing_bytes(&self) -> Vec<u8> {
        let mut e = Encoder::with_domain(REQUEST_SIG_DOMAIN);
        e.str(&self.from)
            .str(&self.to)
            .str(&self.service)
            .u64(self.nonce)
            .raw(&sha256(&self.body).0);
        e.finish()
    }
    /// Signs as the origin.
    pub fn sign(&mut self, key: &SigningKey) {
        self.signature = Some(key.sign(&self.signing_bytes()));
    }
    /// Strictly verifies the origin's signature.
    pub fn verify(&self, key: &PublicKey) -> bool {
        self.signature
            .as_ref()
            .is_some_and(|s| key.verify(&self.signing_bytes(), s).is_ok())
    }
    /// A digest naming this request (responses are bound to it).
    pub fn digest(&self) -> Hash {
        sha256(&self.signing_bytes())
    }
    /// Canonical bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut e = Encoder::with_domain(REQUEST_DOMAIN);
        e.str(&self.from)
            .str(&self.to)
            .str(&self.service)
            .u64(self.nonce)
            .bytes(&self.body);
        put_sig(&mut e, &self.signature);
        e.finish()
    }
    /// Decodes, with `max_body` as the body's limit.
    pub fn decode(b: &[u8], max_body: usize) -> Result<Self, DecodeError> {
        let mut d = Decoder::new(b);
        d.domain(REQUEST_DOMAIN)?;
        let from = d.str("from", MAX_NAME)?.to_owned();
        let to = d.str("to", MAX_NAME)?.to_owned();
        let service = d.str("service", MAX_NAME)?.to_owned();
        let nonce = d.u64("nonce")?;
        let body = d.bytes("body", max_body)?.to_vec();
        let signature = get_sig(&mut d)?;
        d.finish()?;
        Ok(Request {
            from,
            to,
            service,
            body,
            nonce,
            signature,
        })
    }
}

/// How far a request's nonce time may be from the destination's clock (5 minutes).
pub const REPLAY_WINDOW_MS: u64 = 5 * 60 * 1000;

/// The time (Unix ms) a nonce was made at: origins make nonces as
/// `ms << 16 | counter`, so the top 48 bits are a clock reading.
pub fn nonce_time_ms(nonce: u64) -> u64 {
    nonce >> 16
}

/// The destination's replay window: a request is taken only if its nonce's
/// time is within [`REPLAY_WINDOW_MS`] of now and its (origin, nonce) was not
/// seen before. Seen nonces are forgotten once they fall out of the window,
/// so memory is bounded by the origins' request rate times the window.
#[derive(Debug, Default)]
pub struct ReplayWindow {
    seen: std::collections::HashMap<String, std::collections::BTreeSet<u64>>,
    checks: u64,
}

impl ReplayWindow {
    /// Takes (origin, nonce) at `now_ms`, or refuses it.
    pub fn check(&mut self, origin: &str, nonce: u64, now_ms: u64) -> Result<(), Refusal> {
        let t = nonce_time_ms(nonce);
        if t.saturating_add(REPLAY_WINDOW_MS) < now_ms
            || t > now_ms.saturating_add(REPLAY_WINDOW_MS)
        {
            return Err(Refusal::new(
                "relay.stale",
                format!(
                    "the request's nonce is dated {t} ms, outside {} s of this node's clock ({now_ms} ms)",
                    REPLAY_WINDOW_MS / 1000
                ),
            ));
        }
        self.checks += 1;
        if self.checks.is_multiple_of(1024) {
            self.forget_before(now_ms.saturating_sub(REPLAY_WINDOW_MS));
        }
        let set = self.seen.entry(origin.to_owned()).or_default();
        if !set.insert(nonce) {
            return Err(Refusal::new(
                "relay.replayed",
                format!("a request from `{origin}` with this nonce was already taken"),
            ));
        }
        Ok(())
    }
    fn forget_before(&mut self, cutoff_ms: u64) {
        let floor = cutoff_ms << 16;
        self.seen.retain(|_, set| {
            *set = set.split_off(&floor);
            !set.is_empty()
        });
    }
    /// Nonces remembered (for tests and metrics).
    pub fn len(&self) -> usize {
        self.seen
            .values()
            .map(std::collections::BTreeSet::len)
            .sum()
    }
    /// Whether none is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Response {
    /// What the destination signs: the request's digest and the result.
    pub fn signing_bytes(&self, request: &Hash) -> Vec<u8> {
        let mut e = Encoder::with_domain(RESPONSE_SIG_DOMAIN);
        e.raw(&request.0);
        match &self.result {
            Ok(b) => {
                e.u8(0).raw(&sha256(b).0);
            }
            Err(r) => {
                e.u8(1).str(&r.code).str(&r.message);
            }
        }
        e.finish()
    }
    /// Canonical bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut e = Encoder::with_domain(RESPONSE_DOMAIN);
        match &self.result {
            Ok(b) => {
                e.u8(0).bytes(b);
            }
            Err(r) => {
                e.u8(1).str(&r.code).str(&r.message);
            }
        }
        put_sig(&mut e, &self.signature);
        e.finish()
    }
    /// Decodes, with `max_body` as the body's limit.
    pub fn decode(b: &[u8], max_body: usize) -> Result<Self, DecodeError> {
        let mut d = Decoder::new(b);
        d.domain(RESPONSE_DOMAIN)?;
        let result = match d.u8("status")? {
            0 => Ok(d.bytes("body", max_body)?.to_vec()),
            1 => Err(Refusal {
                code: d.str("code", MAX_NAME)?.to_owned(),
                message: d.str("message", 4096)?.to_owned(),
            }),
            v => {
                return Err(DecodeError::UnknownTag {
                    field: "status",
                    value: v.into(),
                });
            }
        };
        let signature = get_sig(&mut d)?;
        d.finish()?;
        Ok(Response { result, signature })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proofs::keys::test_seed;

    #[test]
    fn frames_round_trip_and_signatures_bind_every_field() {
        let k = SigningKey::from_seed(&test_seed("relay-test"));
        let mut r = Request {
            from: "a".into(),
            to: "b".into(),
            service: "match".into(),
            body: b"hello".to_vec(),
            nonce: 7,
            signature: None,
        };
        r.sign(&k);
        let back = Request::decode(&r.encode(), 1024).unwrap();
        assert_eq!(back, r);
        assert!(back.verify(&k.public()));
        for change in 0..5 {
            let mut t = r.clone();
            match change {
                0 => t.from = "x".into(),
                1 => t.to = "x".into(),
                2 => t.service = "x".into(),
                3 => t.body.push(0),
                _ => t.nonce += 1,
            }
            assert!(
                !t.verify(&k.public()),
                "change {change} must break the signature"
            );
        }
        assert!(Request::decode(&r.encode(), 4).is_err(), "body limit");
        let resp = Response {
            result: Err(Refusal::new("relay.no_route", "nowhere")),
            signature: Some(k.sign(b"x")),
        };
        assert_eq!(Response::decode(&resp.encode(), 16).unwrap(), resp);
    }

    /// Issue 15, finding 9: a hub could replay a signed frame; the
    /// destination now takes each (origin, nonce) once, and only while its
    /// time is within the window.
    #[test]
    fn the_replay_window_takes_each_nonce_once_and_only_while_fresh() {
        let now = 1_780_000_000_000u64;
        let mut w = ReplayWindow::default();
        let n = now << 16 | 7;
        assert!(w.check("a", n, now).is_ok());
        assert_eq!(w.check("a", n, now + 1).unwrap_err().code, "relay.replayed");
        // Another origin may use the same number.
        assert!(w.check("b", n, now).is_ok());
        // Stale and future nonces.
        let old = (now - REPLAY_WINDOW_MS - 1) << 16;
        assert_eq!(w.check("a", old, now).unwrap_err().code, "relay.stale");
        let future = (now + REPLAY_WINDOW_MS + 1) << 16;
        assert_eq!(w.check("a", future, now).unwrap_err().code, "relay.stale");
        // Edges of the window are inside.
        assert!(w.check("a", (now - REPLAY_WINDOW_MS) << 16, now).is_ok());
        assert!(w.check("a", (now + REPLAY_WINDOW_MS) << 16, now).is_ok());
        // Memory is bounded: what fell out of the window is forgotten, and a
        // replay of it is still refused, as stale.
        let mut w = ReplayWindow::default();
        for i in 0..5_000u64 {
            w.check("a", (now + i) << 16, now + i).unwrap();
        }
        let later = now + REPLAY_WINDOW_MS + 10_000;
        for i in 0..2_048u64 {
            w.check("a", (later + i) << 16, later + i).unwrap();
        }
        assert!(w.len() <= 2_048, "{} nonces kept", w.len());
        assert_eq!(
            w.check("a", now << 16, later).unwrap_err().code,
            "relay.stale"
        );
    }
}
