//! Request authentication without shared secrets.
//!
//! Every call that writes, or reads non-public data, carries four headers:
//! `tongban-member` (a registry id), `tongban-timestamp` (Unix ms),
//! `tongban-nonce` (16–64 hex digits, fresh per request) and
//! `tongban-signature`: the member's Ed25519 signature over
//!
//! `enc("tongban/http/v1") ‖ str(audience) ‖ str(METHOD) ‖ str(path?query) ‖ u64(timestamp) ‖ str(nonce) ‖ SHA-256(body)`
//!
//! where `audience` is the id of the gateway addressed, so a request signed
//! for one gateway is refused by every other. The gateway refuses requests
//! outside the clock-skew window, signed before it started (so nothing signed
//! earlier can be replayed after a restart), or whose (member, nonce) it has
//! seen within the window.

use std::collections::HashMap;
use std::sync::Mutex;

use proofs::encoding::Encoder;
use proofs::hash::sha256;
use proofs::keys::{Signature, SigningKey};
use proofs::trust::{Member, TrustRoots};

/// Header names.
pub const MEMBER: &str = "tongban-member";
/// Header names.
pub const TIMESTAMP: &str = "tongban-timestamp";
/// Header names.
pub const NONCE: &str = "tongban-nonce";
/// Header names.
pub const SIGNATURE: &str = "tongban-signature";

/// The bytes a member signs for one request.
pub fn signing_bytes(
    audience: &str,
    method: &str,
    path_and_query: &str,
    timestamp_ms: u64,
    nonce: &str,
    body: &[u8],
) -> Vec<u8> {
    let mut e = Encoder::with_domain("tongban/http/v1");
    e.str(audience)
        .str(method)
        .str(path_and_query)
        .u64(timestamp_ms)
        .str(nonce)
        .raw(&sha256(body).0);
    e.finish()
}

/// The four header values for a request, signed with `key`.
#[allow(clippy::too_many_arguments)]
pub fn sign_request(
    key: &SigningKey,
    member: &str,
    audience: &str,
    method: &str,
    path_and_query: &str,
    timestamp_ms: u64,
    nonce: &str,
    body: &[u8],
) -> [(&'static str, String); 4] {
    let sig = key.sign(&signing_bytes(
        audience,
        method,
        path_and_query,
        timestamp_ms,
        nonce,
        body,
    ));
    [
        (MEMBER, member.to_owned()),
        (TIMESTAMP, timestamp_ms.to_string()),
        (NONCE, nonce.to_owned()),
        (SIGNATURE, hex::encode(sig.0)),
    ]
}

/// Why a request was not authenticated (401) or not allowed (403).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// A header is absent.
    #[error("missing header `{0}`")]
    Missing(&'static str),
    /// A header is malformed.
    #[error("malformed header `{0}`")]
    Malformed(&'static str),
    /// Outside the clock-skew window (or signed before the gateway started).
    #[error("request timestamp {found} is outside the accepted window [{from}, {to}]")]
    Expired {
        /// The timestamp.
        found: u64,
        /// Window start.
        from: u64,
        /// Window end.
        to: u64,
    },
    /// The (member, nonce) was seen before.
    #[error("nonce already used by this member")]
    Replayed,
    /// The member is not in the registry.
    #[error("member `{0}` is not in the registry")]
    UnknownMember(String),
    /// The signature does not verify.
    #[error("signature does not verify for this gateway, method, path, time, nonce and body")]
    BadSignature,
    /// Too many live nonces to remember another: retry shortly.
    #[error("too many requests in the replay window; retry shortly")]
    Overloaded,
}

impl AuthError {
    /// Stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::Missing(_) => "auth.missing",
            AuthError::Malformed(_) => "auth.malformed",
            AuthError::Expired { .. } => "auth.expired",
            AuthError::Replayed => "auth.replayed",
            AuthError::UnknownMember(_) => "auth.unknown_member",
            AuthError::BadSignature => "auth.bad_signature",
            AuthError::Overloaded => "auth.overloaded",
        }
    }
}

/// The request parts that are authenticated.
pub struct Presented<'a> {
    /// `tongban-member`.
    pub member: Option<&'a str>,
    /// `tongban-timestamp`.
    pub timestamp: Option<&'a str>,
    /// `tongban-nonce`.
    pub nonce: Option<&'a str>,
    /// `tongban-signature`.
    pub signature: Option<&'a str>,
    /// HTTP method.
    pub method: &'a str,
    /// Path and query as sent.
    pub path_and_query: &'a str,
    /// The body.
    pub body: &'a [u8],
}

/// Verifies requests and remembers nonces for the skew window.
pub struct Verifier {
    audience: String,
    skew_ms: u64,
    started_ms: u64,
    seen: Mutex<HashMap<(String, String), u64>>,
}

/// Most nonces remembered; beyond it, new requests are refused until old ones age out.
const MAX_NONCES: usize = 1_000_000;

impl Verifier {
    /// A verifier for gateway `audience`, started at `started_ms`.
    /// The accepted clock skew (ms).
    pub fn skew_ms(&self) -> u64 {
        self.skew_ms
    }
    /// A verifier for requests addressed to `audience`.
    pub fn new(audience: &str, skew_ms: u64, started_ms: u64) -> Self {
        Verifier {
            audience: audience.to_owned(),
            skew_ms,
            started_ms,
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// Checks a request at time `now_ms`; returns the authenticated member.
    pub fn verify<'r>(
        &self,
        p: &Presented<'_>,
        roots: &'r TrustRoots,
        now_ms: u64,
    ) -> Result<&'r Member, AuthError> {
        let member = p.member.ok_or(AuthError::Missing(MEMBER))?;
        let ts = p.timestamp.ok_or(AuthError::Missing(TIMESTAMP))?;
        let nonce = p.nonce.ok_or(AuthError::Missing(NONCE))?;
        let sig = p.signature.ok_or(AuthError::Missing(SIGNATURE))?;
        let ts: u64 = ts.parse().map_err(|_| AuthError::Malformed(TIMESTAMP))?;
        if !(16..=64).contains(&nonce.len()) || !nonce.bytes().all(|c| c.is_ascii_hexdigit()) {
            return Err(AuthError::Malformed(NONCE));
        }
        let sig = proofs::hash::parse_fixed_hex::<64>(sig)
            .map_err(|_| AuthError::Malformed(SIGNATURE))?;
        let from = now_ms.saturating_sub(self.skew_ms).max(self.started_ms);
        let to = now_ms.saturating_add(self.skew_ms);
        if ts < from || ts > to {
            return Err(AuthError::Expired {
                found: ts,
                from,
                to,
            });
        }
        let m = roots
            .members
            .get(member)
            .ok_or_else(|| AuthError::UnknownMember(member.to_owned()))?;
        let msg = signing_bytes(
            &self.audience,
            p.method,
            p.path_and_query,
            ts,
            nonce,
            p.body,
        );
        m.signing
            .verify(&msg, &Signature(sig))
            .map_err(|_| AuthError::BadSignature)?;
        // Only a verified request may consume a nonce (no one can burn another's nonces).
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if seen.len() >= MAX_NONCES / 2 {
            seen.retain(|_, exp| *exp >= now_ms);
        }
        if seen.len() >= MAX_NONCES {
            return Err(AuthError::Overloaded);
        }
        let expires = ts.saturating_add(self.skew_ms);
        if seen
            .insert((member.to_owned(), nonce.to_ascii_lowercase()), expires)
            .is_some()
        {
            return Err(AuthError::Replayed);
        }
        Ok(m)
    }
}

/// A fresh nonce (32 hex digits from the OS).
pub fn fresh_nonce() -> String {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).expect("the OS random source is available");
    hex::encode(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proofs::keys::test_seed;
    use proofs::trust::Role;

    fn roots() -> (TrustRoots, SigningKey) {
        let k = SigningKey::from_seed(&test_seed("m"));
        let r = TrustRoots::new(proofs::Hash([0; 32])).with_member(Member {
            id: "c.dept".into(),
            role: Role::Department,
            city: "c".into(),
            chain: "c-chain".into(),
            owns: vec![],
            signing: k.public(),
            hpke: None,
        });
        (r, k)
    }

    fn check(
        v: &Verifier,
        roots: &TrustRoots,
        h: &[(&'static str, String); 4],
        body: &[u8],
        now: u64,
    ) -> Result<String, AuthError> {
        let get = |n: &str| h.iter().find(|(k, _)| *k == n).map(|(_, v)| v.as_str());
        let p = Presented {
            member: get(MEMBER),
            timestamp: get(TIMESTAMP),
            nonce: get(NONCE),
            signature: get(SIGNATURE),
            method: "POST",
            path_and_query: "/v1/records",
            body,
        };
        v.verify(&p, roots, now).map(|m| m.id.clone())
    }

    #[test]
    fn each_refusal() {
        let (roots, k) = roots();
        let v = Verifier::new("c.gateway", 30_000, 1_000_000);
        let now = 2_000_000;
        let h = sign_request(
            &k,
            "c.dept",
            "c.gateway",
            "POST",
            "/v1/records",
            now,
            "00112233445566778899aabbccddeeff",
            b"{}",
        );
        assert_eq!(check(&v, &roots, &h, b"{}", now).unwrap(), "c.dept");
        // Replay.
        assert_eq!(check(&v, &roots, &h, b"{}", now), Err(AuthError::Replayed));
        // Another body.
        let h2 = sign_request(
            &k,
            "c.dept",
            "c.gateway",
            "POST",
            "/v1/records",
            now,
            "0123456789abcdef0123456789abcdef",
            b"{}",
        );
        assert_eq!(
            check(&v, &roots, &h2, b"{\"x\":1}", now),
            Err(AuthError::BadSignature)
        );
        // Another gateway.
        let h3 = sign_request(
            &k,
            "c.dept",
            "d.gateway",
            "POST",
            "/v1/records",
            now,
            "1123456789abcdef0123456789abcdef",
            b"{}",
        );
        assert_eq!(
            check(&v, &roots, &h3, b"{}", now),
            Err(AuthError::BadSignature)
        );
        // Expired, future, before start.
        let old = sign_request(
            &k,
            "c.dept",
            "c.gateway",
            "POST",
            "/v1/records",
            now - 30_001,
            "2123456789abcdef0123456789abcdef",
            b"{}",
        );
        assert!(matches!(
            check(&v, &roots, &old, b"{}", now),
            Err(AuthError::Expired { .. })
        ));
        let fut = sign_request(
            &k,
            "c.dept",
            "c.gateway",
            "POST",
            "/v1/records",
            now + 30_001,
            "3123456789abcdef0123456789abcdef",
            b"{}",
        );
        assert!(matches!(
            check(&v, &roots, &fut, b"{}", now),
            Err(AuthError::Expired { .. })
        ));
        let v2 = Verifier::new("c.gateway", 30_000, now);
        let before = sign_request(
            &k,
            "c.dept",
            "c.gateway",
            "POST",
            "/v1/records",
            now - 1,
            "4123456789abcdef0123456789abcdef",
            b"{}",
        );
        assert!(matches!(
            check(&v2, &roots, &before, b"{}", now),
            Err(AuthError::Expired { .. })
        ));
        // Unknown member, missing and malformed headers.
        let other = SigningKey::from_seed(&test_seed("x"));
        let u = sign_request(
            &other,
            "x.dept",
            "c.gateway",
            "POST",
            "/v1/records",
            now,
            "5123456789abcdef0123456789abcdef",
            b"{}",
        );
        assert_eq!(
            check(&v, &roots, &u, b"{}", now),
            Err(AuthError::UnknownMember("x.dept".into()))
        );
        let mut m = h2.clone();
        m[2].1 = "zz".into();
        assert_eq!(
            check(&v, &roots, &m, b"{}", now),
            Err(AuthError::Malformed(NONCE))
        );
        let mut m = h2.clone();
        m[3].1 = "00".into();
        assert_eq!(
            check(&v, &roots, &m, b"{}", now),
            Err(AuthError::Malformed(SIGNATURE))
        );
        let mut m = h2;
        m[0].0 = "x-other";
        assert_eq!(
            check(&v, &roots, &m, b"{}", now),
            Err(AuthError::Missing(MEMBER))
        );
    }
}
