//! Inboxes of the utilities and departments of this city: service requests
//! delivered by service centres' gateways, **at least once delivered, at most
//! once processed**.
//!
//! A delivery is accepted only if the centre's signature verifies and it is
//! addressed to a member of this city; it is stored durably (with a
//! `delivery.received` step on chain) before the sender is told. A
//! redelivery of the same request is recognised by its id and answered with
//! the current status — including the receipt once there is one — so it is
//! never processed twice; a different request under the same id is refused.
//! The recipient pulls its pending requests, opens them with its own HPKE key,
//! and closes each with a receipt transaction it signs itself; the receipt
//! goes on this city's chain and is pushed back to the centre's gateway.
//!
//! Storage: `I ‖ recipient ‖ 0 ‖ delivery id` → [`InboxItem`].

use std::sync::Arc;

use proofs::tx::{Authorization, Transaction, TxBody};
use proofs::{Hash, Role};
use relay::Refusal;
use serde::{Deserialize, Serialize};

use crate::applications::{Delivery, DeliveryStatus};
use crate::ledger::{Intent, Outcome, PreparedTx};
use crate::state::AppState;

/// Largest sealed service request accepted.
pub const MAX_SEALED: usize = 64 * 1024;

/// One request in an inbox.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InboxItem {
    /// The delivery as received.
    pub delivery: Delivery,
    /// When it was first received (Unix ms).
    pub received_ms: u64,
    /// The leaf hash of its receipt transaction on this chain, once closed.
    pub receipt: Option<Hash>,
}

fn item_key(recipient: &str, id: &Hash) -> Vec<u8> {
    let mut k = vec![b'I'];
    k.extend_from_slice(recipient.as_bytes());
    k.push(0);
    k.extend_from_slice(&id.0);
    k
}

fn load(state: &AppState, recipient: &str, id: &Hash) -> Result<Option<InboxItem>, Refusal> {
    match state.ledger.state(&item_key(recipient, id)) {
        Ok(Some(v)) => serde_json::from_slice(&v)
            .map(Some)
            .map_err(|e| Refusal::new("internal", e.to_string())),
        Ok(None) => Ok(None),
        Err(e) => Err(Refusal::new("internal", e.to_string())),
    }
}

/// The item `id` in `recipient`'s inbox if it is still open (no receipt yet).
pub fn open_item(
    state: &AppState,
    recipient: &str,
    id: &Hash,
) -> Result<Option<InboxItem>, Refusal> {
    Ok(load(state, recipient, id)?.filter(|i| i.receipt.is_none()))
}

fn notify(state: &AppState, recipient: &str, id: Hash) {
    if let Some(p) = state.webhooks.get() {
        p.notify(recipient, id);
    }
}

fn status(state: &AppState, item: &InboxItem) -> Result<DeliveryStatus, Refusal> {
    let receipt = match &item.receipt {
        None => None,
        Some(leaf) => state
            .ledger
            .bundle(leaf)
            .map_err(|e| Refusal::new("internal", e.to_string()))?,
    };
    Ok(DeliveryStatus { receipt })
}

/// Accepts a delivery (or recognises a redelivery).
pub async fn accept(state: &Arc<AppState>, d: Delivery) -> Result<DeliveryStatus, Refusal> {
    let recipient = state
        .roots
        .members
        .get(&d.recipient)
        .filter(|m| matches!(m.role, Role::Utility | Role::Department) && m.city == state.city)
        .ok_or_else(|| {
            Refusal::new(
                "inbox.unknown_recipient",
                format!("`{}` has no inbox at this gateway", d.recipient),
            )
        })?;
    let _ = recipient;
    if d.sealed.ciphertext.len() > MAX_SEALED {
        return Err(Refusal::new("inbox.too_large", "sealed request too large"));
    }
    d.check(&state.roots)
        .map_err(|f| Refusal::new(f.inbox_code(), f.to_string()))?;
    if let Some(item) = load(state, &d.recipient, &d.id)? {
        if item.delivery != d {
            return Err(Refusal::new(
                "inbox.conflict",
                "another request was already delivered under this id",
            ));
        }
        // A redelivery of a request still open: the recipient may have missed
        // it, so its webhook (if any) is pushed again.
        if item.receipt.is_none() {
            notify(state, &d.recipient, d.id);
        }
        return status(state, &item);
    }
    let now = state.clock.now_ms();
    let item = InboxItem {
        delivery: d.clone(),
        received_ms: now,
        receipt: None,
    };
    let tx = Transaction::sign(
        state.ledger.chain_id(),
        &state.gateway_id,
        TxBody::ApplicationStep {
            application: d.application,
            bundle: String::new(),
            step: "delivery.received".into(),
            item: d.service.clone(),
            detail: d.id,
            at_ms: now,
        },
        &state.gateway_key,
    );
    let out = state
        .writer
        .submit(vec![Intent::Record {
            tx: PreparedTx::new(&tx),
            puts: vec![(
                item_key(&d.recipient, &d.id),
                serde_json::to_vec(&item).unwrap_or_default(),
            )],
        }])
        .await
        .map_err(|e| Refusal::new("ledger.unavailable", e.to_string()))?;
    match out.first().and_then(|o| o.first()) {
        Some(Outcome::Written { .. } | Outcome::Duplicate { .. }) => {
            tracing::info!(recipient = %d.recipient, service = %d.service, "service request received");
            notify(state, &d.recipient, d.id);
            Ok(DeliveryStatus { receipt: None })
        }
        Some(Outcome::Rejected { code, message }) => Err(Refusal::new(*code, message.clone())),
        None => Err(Refusal::new("internal", "no outcome")),
    }
}

/// The requests waiting in `recipient`'s inbox (not yet closed), oldest first.
pub fn pending(state: &AppState, recipient: &str) -> Result<Vec<InboxItem>, Refusal> {
    let mut prefix = vec![b'I'];
    prefix.extend_from_slice(recipient.as_bytes());
    prefix.push(0);
    let mut out: Vec<InboxItem> = state
        .ledger
        .state_scan(&prefix)
        .map_err(|e| Refusal::new("internal", e.to_string()))?
        .into_iter()
        .filter_map(|(_, v)| serde_json::from_slice::<InboxItem>(&v).ok())
        .filter(|i| i.receipt.is_none())
        .collect();
    out.sort_by_key(|i| i.received_ms);
    Ok(out)
}

/// A recipient's receipt, as it sends it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiptRequest {
    /// The delivery closed.
    pub delivery: Hash,
    /// Accepted or not.
    pub accepted: bool,
    /// Why not (empty when accepted).
    #[serde(default)]
    pub reason: String,
    /// When (Unix ms).
    pub at_ms: u64,
    /// The recipient's signature over the receipt transaction's signing bytes.
    pub signature: proofs::Signature,
}

/// The receipt transaction body for a delivery.
pub fn receipt_body(d: &Delivery, accepted: bool, reason: &str, at_ms: u64) -> TxBody {
    TxBody::ServiceReceipt {
        delivery: d.id,
        application: d.application,
        service: d.service.clone(),
        request: d.request_hash(),
        accepted,
        reason: reason.to_owned(),
        at_ms,
    }
}

/// Closes a request with the recipient's signed receipt: written on chain
/// (with the inbox state, atomically), then pushed to the centre's gateway.
/// A second receipt for a closed request returns the first (`Duplicate`).
pub async fn close(
    state: &Arc<AppState>,
    recipient: &str,
    r: ReceiptRequest,
) -> Result<(Outcome, ProofBundleOrNone), Refusal> {
    let item = load(state, recipient, &r.delivery)?
        .ok_or_else(|| Refusal::new("inbox.unknown_delivery", "no such request in this inbox"))?;
    if item.receipt.is_some() {
        let st = status(state, &item)?;
        let loc = st
            .receipt
            .as_ref()
            .and_then(|b| {
                state
                    .ledger
                    .locate(&proofs::merkle::leaf_hash(&b.tx))
                    .ok()
                    .flatten()
            })
            .ok_or_else(|| Refusal::new("internal", "receipt recorded but not found"))?;
        return Ok((Outcome::Duplicate { location: loc }, st.receipt));
    }
    if r.reason.len() > proofs::tx::MAX_REASON {
        return Err(Refusal::new(
            "receipt.reason_too_long",
            "reason longer than 1024 bytes",
        ));
    }
    let tx = Transaction {
        chain_id: state.ledger.chain_id().to_owned(),
        author: recipient.to_owned(),
        body: receipt_body(&item.delivery, r.accepted, &r.reason, r.at_ms),
        auth: Authorization::Signed(r.signature),
    };
    tx.verify_author(&state.roots)
        .map_err(|e| Refusal::new("receipt.bad_signature", e.to_string()))?;
    let prepared = PreparedTx::new(&tx);
    let leaf = prepared.leaf;
    // The receipt and the closed inbox item in one atomic, flushed block: a
    // request is closed exactly once.
    let mut closed = item.clone();
    closed.receipt = Some(leaf);
    let out = state
        .writer
        .submit(vec![Intent::Record {
            tx: prepared,
            puts: vec![(
                item_key(recipient, &r.delivery),
                serde_json::to_vec(&closed).unwrap_or_default(),
            )],
        }])
        .await
        .map_err(|e| Refusal::new("ledger.unavailable", e.to_string()))?;
    let location = match out.first().and_then(|o| o.first()) {
        Some(Outcome::Written { location } | Outcome::Duplicate { location }) => *location,
        Some(Outcome::Rejected { code, message }) => {
            return Err(Refusal::new(*code, message.clone()));
        }
        None => return Err(Refusal::new("internal", "no outcome")),
    };
    let bundle = state
        .ledger
        .bundle(&leaf)
        .map_err(|e| Refusal::new("internal", e.to_string()))?;
    if let Some(b) = &bundle {
        push_receipt(state.clone(), item.delivery.clone(), b.clone());
    }
    Ok((Outcome::Written { location }, bundle))
}

/// A receipt bundle, if the ledger has it.
pub type ProofBundleOrNone = Option<proofs::ProofBundle>;

/// What a recipient's gateway pushes to the centre's gateway.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReceiptPush {
    /// The delivery.
    pub delivery: Delivery,
    /// The receipt's bundle (binary, hex).
    pub bundle: String,
}

fn push_receipt(state: Arc<AppState>, d: Delivery, bundle: proofs::ProofBundle) {
    tokio::spawn(async move {
        let centre_city = state.roots.members.get(&d.centre).map(|m| m.city.clone());
        let Some(gateway) = centre_city
            .as_deref()
            .and_then(|c| state.registry.city(c))
            .map(|c| c.gateway.id.clone())
        else {
            return;
        };
        if gateway == state.gateway_id {
            if let Some(engine) = state.engine.get() {
                let _ = crate::applications::on_receipt(&state, engine, &d, &bundle).await;
            }
            return;
        }
        let Some(relay) = state.relay.get().cloned() else {
            return;
        };
        let body = serde_json::to_vec(&ReceiptPush {
            delivery: d.clone(),
            bundle: hex::encode(bundle.encode()),
        })
        .unwrap_or_default();
        drop(state);
        // If this fails, the centre's redelivery after its deadline gets the
        // receipt from the inbox instead.
        if let Err(e) = relay.request(&gateway, "receipt", body).await {
            tracing::warn!(error = %e, "receipt push failed; the centre will collect it on redelivery");
        }
    });
}
