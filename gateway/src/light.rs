//! Light clients: the certified headers of other cities' chains.
//!
//! Every header is accepted only with a valid quorum certificate from the
//! registry's endorser set of its chain; headers are linked by hash from the
//! first one followed (height 0, genesis, when synced from the start). Two
//! certified headers at one height, or a certified header that does not link
//! to its certified predecessor, are a **fork**: both headers are kept as
//! evidence, durably, and the chain is frozen — no answer bound to it is
//! accepted — until an operator clears it.
//!
//! Storage (in the gateway's store): `C ‖ chain ‖ 0 ‖ height` → certified
//! header; `F ‖ chain` → fork evidence (JSON). Every change is flushed before
//! it is relied on.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use proofs::header::{CertifiedHeader, verify_certificate, verify_link};
use proofs::trust::TrustRoots;
use proofs::{Hash, hash::hex_bytes};
use serde::{Deserialize, Serialize};

use crate::store::{Store, StoreError, WriteBatch};

/// Why a header was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum LightError {
    /// The chain is not in the registry (or is this gateway's own).
    #[error("chain `{0}` is not followed here")]
    UnknownChain(String),
    /// The quorum certificate does not verify.
    #[error("header {height} of `{chain}` has no valid quorum certificate: {reason}")]
    NoQuorum {
        /// Chain.
        chain: String,
        /// Height.
        height: u64,
        /// Why.
        reason: String,
    },
    /// The chain is frozen after a fork.
    #[error("chain `{chain}` is frozen: fork at height {height}; an operator must act")]
    Frozen {
        /// Chain.
        chain: String,
        /// Height of the fork.
        height: u64,
    },
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl LightError {
    /// Stable code.
    pub fn code(&self) -> &'static str {
        match self {
            LightError::UnknownChain(_) => "chain.unknown",
            LightError::NoQuorum { .. } => "chain.no_quorum",
            LightError::Frozen { .. } => "chain.frozen",
            LightError::Store(_) => "store.failed",
        }
    }
}

/// Evidence of a fork: two certified headers that cannot both be true.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForkEvidence {
    /// The chain.
    pub chain: String,
    /// Height of the conflict.
    pub height: u64,
    /// What kind: `two_headers_at_one_height` or `broken_link`.
    pub kind: String,
    /// The header held before (canonical bytes).
    #[serde(with = "hex_bytes")]
    pub held: Vec<u8>,
    /// The conflicting header (canonical bytes).
    #[serde(with = "hex_bytes")]
    pub conflicting: Vec<u8>,
    /// When it was detected (Unix ms).
    pub detected_ms: u64,
}

/// What a followed chain looks like here.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ChainStatus {
    /// Highest height up to which every header is held and linked (None: nothing yet).
    pub linked_to: Option<u64>,
    /// Highest certified header held.
    pub highest: Option<u64>,
    /// Fork evidence, if the chain is frozen.
    pub fork: Option<ForkEvidence>,
}

/// What became of an observed header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Observed {
    /// Already held (same hash).
    Known,
    /// New and stored.
    Stored,
}

/// The light clients of one gateway (one per followed chain).
pub struct LightClients {
    store: Arc<dyn Store>,
    roots: TrustRoots,
    own_chain: String,
    state: Mutex<HashMap<String, ChainStatus>>,
}

fn hkey(chain: &str, height: u64) -> Vec<u8> {
    let mut k = vec![b'C'];
    k.extend_from_slice(chain.as_bytes());
    k.push(0);
    k.extend_from_slice(&height.to_be_bytes());
    k
}

fn fkey(chain: &str) -> Vec<u8> {
    let mut k = vec![b'F'];
    k.extend_from_slice(chain.as_bytes());
    k
}

impl LightClients {
    /// Opens the light clients of every chain in `roots` but `own_chain`.
    pub fn open(
        store: Arc<dyn Store>,
        roots: TrustRoots,
        own_chain: &str,
    ) -> Result<Self, StoreError> {
        let mut state = HashMap::new();
        for chain in roots.chains.keys().filter(|c| *c != own_chain) {
            let mut st = ChainStatus::default();
            if let Some(v) = store.get(&fkey(chain))? {
                st.fork = serde_json::from_slice(&v).ok();
            }
            let mut prefix = vec![b'C'];
            prefix.extend_from_slice(chain.as_bytes());
            prefix.push(0);
            let mut expected = 0u64;
            let mut linked: Option<u64> = None;
            let mut highest = None;
            for (k, _) in store.scan_prefix(&prefix)? {
                let Some(h) = k
                    .get(prefix.len()..)
                    .and_then(|b| b.try_into().ok())
                    .map(u64::from_be_bytes)
                else {
                    continue;
                };
                if h == expected && (linked.is_some() || h == 0) {
                    linked = Some(h);
                    expected = h + 1;
                }
                highest = Some(h);
            }
            st.linked_to = linked;
            st.highest = highest;
            state.insert(chain.clone(), st);
        }
        Ok(LightClients {
            store,
            roots,
            own_chain: own_chain.to_owned(),
            state: Mutex::new(state),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, ChainStatus>> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The chains followed.
    pub fn chains(&self) -> Vec<String> {
        let mut v: Vec<String> = self.lock().keys().cloned().collect();
        v.sort();
        v
    }

    /// The status of a followed chain.
    pub fn status(&self, chain: &str) -> Option<ChainStatus> {
        self.lock().get(chain).cloned()
    }

    /// The held header of `chain` at `height`.
    pub fn header(&self, chain: &str, height: u64) -> Result<Option<CertifiedHeader>, StoreError> {
        Ok(self
            .store
            .get(&hkey(chain, height))?
            .and_then(|b| CertifiedHeader::decode(&b).ok()))
    }

    /// Refuses if `chain` is frozen.
    pub fn check_usable(&self, chain: &str) -> Result<(), LightError> {
        if chain == self.own_chain {
            return Ok(());
        }
        match self.lock().get(chain) {
            None => Err(LightError::UnknownChain(chain.to_owned())),
            Some(ChainStatus { fork: Some(f), .. }) => Err(LightError::Frozen {
                chain: chain.to_owned(),
                height: f.height,
            }),
            Some(_) => Ok(()),
        }
    }

    /// Observes a certified header: verifies its quorum, compares it with the
    /// held header at its height and the links to its neighbours, and stores it.
    /// A conflict records evidence, freezes the chain and returns
    /// [`LightError::Frozen`].
    pub fn observe(&self, ch: &CertifiedHeader, now_ms: u64) -> Result<Observed, LightError> {
        let chain = ch.header.chain_id.clone();
        let height = ch.header.height;
        if chain == self.own_chain {
            return Err(LightError::UnknownChain(chain));
        }
        let trust = self
            .roots
            .chains
            .get(&chain)
            .ok_or_else(|| LightError::UnknownChain(chain.clone()))?;
        // A header already held was verified when it was stored.
        if self.is_held(&ch.header)? {
            return Ok(Observed::Known);
        }
        verify_certificate(&ch.header, &ch.certificate, trust).map_err(|e| {
            LightError::NoQuorum {
                chain: chain.clone(),
                height,
                reason: e.to_string(),
            }
        })?;
        // One writer at a time for the whole check-and-store.
        let mut state = self.lock();
        let st = state
            .get_mut(&chain)
            .ok_or_else(|| LightError::UnknownChain(chain.clone()))?;
        if let Some(f) = &st.fork {
            return Err(LightError::Frozen {
                chain,
                height: f.height,
            });
        }
        let fork = |kind: &str, held: &CertifiedHeader| ForkEvidence {
            chain: chain.clone(),
            height,
            kind: kind.to_owned(),
            held: held.encode(),
            conflicting: ch.encode(),
            detected_ms: now_ms,
        };
        let mut evidence = None;
        if let Some(held) = self.header(&chain, height)? {
            if held.header.hash() == ch.header.hash() {
                return Ok(Observed::Known);
            }
            evidence = Some(fork("two_headers_at_one_height", &held));
        }
        if evidence.is_none()
            && height > 0
            && let Some(prev) = self.header(&chain, height - 1)?
            && verify_link(&prev.header, &ch.header).is_err()
        {
            evidence = Some(fork("broken_link", &prev));
        }
        if evidence.is_none()
            && let Some(next) = self.header(&chain, height + 1)?
            && verify_link(&ch.header, &next.header).is_err()
        {
            evidence = Some(fork("broken_link", &next));
        }
        let mut batch = WriteBatch::new();
        if let Some(e) = evidence {
            tracing::error!(chain = %chain, height, kind = %e.kind, "fork detected: chain frozen until an operator acts");
            batch.put(
                fkey(&chain),
                serde_json::to_vec(&e).map_err(|e| StoreError::Backend(e.to_string()))?,
            );
            self.store.commit(batch)?;
            st.fork = Some(e);
            return Err(LightError::Frozen { chain, height });
        }
        batch.put(hkey(&chain, height), ch.encode());
        self.store.commit(batch)?;
        st.highest = Some(st.highest.map_or(height, |h| h.max(height)));
        // Extend the linked prefix as far as the held headers go.
        let mut next = st.linked_to.map_or(0, |h| h + 1);
        while self.store.get(&hkey(&chain, next))?.is_some() {
            st.linked_to = Some(next);
            next += 1;
        }
        Ok(Observed::Stored)
    }

    /// Clears a chain's fork evidence (an operator's decision, logged). The
    /// evidence is kept under `F ‖ chain ‖ cleared-at` for the audit trail;
    /// headers above the fork are dropped so they are fetched again.
    pub fn unfreeze(&self, chain: &str, now_ms: u64) -> Result<Option<ForkEvidence>, StoreError> {
        let mut state = self.lock();
        let Some(st) = state.get_mut(chain) else {
            return Ok(None);
        };
        let Some(f) = st.fork.take() else {
            return Ok(None);
        };
        let mut batch = WriteBatch::new();
        let mut k = fkey(chain);
        k.push(0);
        k.extend_from_slice(&now_ms.to_be_bytes());
        batch.put(k, serde_json::to_vec(&f).unwrap_or_default());
        // A tombstone value: absent evidence reads as "not frozen".
        batch.put(fkey(chain), b"null".to_vec());
        self.store.commit(batch)?;
        tracing::warn!(chain = %chain, height = f.height, "fork evidence cleared by an operator");
        Ok(Some(f))
    }

    /// True if exactly this header is held (so its certificate was verified).
    pub fn is_held(&self, h: &proofs::header::Header) -> Result<bool, StoreError> {
        let mut same = false;
        self.store.peek(&hkey(&h.chain_id, h.height), &mut |b| {
            same = CertifiedHeader::decode(b).is_ok_and(|held| held.header.hash() == h.hash());
        })?;
        Ok(same)
    }

    /// Hash of the held header at `height`, if any.
    pub fn hash_at(&self, chain: &str, height: u64) -> Result<Option<Hash>, StoreError> {
        Ok(self.header(chain, height)?.map(|h| h.header.hash()))
    }
}
