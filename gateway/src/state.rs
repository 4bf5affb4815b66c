//! The state every request handler shares.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use proofs::SigningKey;
use proofs::seal::HpkeSecretKey;

use proofs::Hash;
use proofs::subject::SubjectKey;
use proofs::trust::TrustRoots;
use regions::Registry;

use crate::auth::Verifier;
use crate::clock::Clock;
use crate::ledger::Ledger;
use crate::light::LightClients;
use crate::metrics::Metrics;
use crate::writer::Writer;

/// Shared state of one gateway.
pub struct AppState {
    /// The registry.
    pub registry: Arc<Registry>,
    /// Its pinned hash.
    pub registry_hash: Hash,
    /// Trust roots derived from it.
    pub roots: TrustRoots,
    /// This gateway's city.
    pub city: String,
    /// This gateway's registry id (the audience of signed requests).
    pub gateway_id: String,
    /// The ledger.
    pub ledger: Arc<Ledger>,
    /// The writer queue.
    pub writer: Writer,
    /// The city's subject-reference key.
    pub subject_key: SubjectKey,
    /// Time.
    pub clock: Arc<dyn Clock>,
    /// Request authentication.
    pub verifier: Verifier,
    /// Largest request body.
    pub max_body_bytes: usize,
    /// Counters.
    pub metrics: Metrics,
    /// This gateway's key (it signs access-log entries).
    pub gateway_key: SigningKey,
    /// HPKE keys of the departments this gateway answers for (their custodian).
    pub custody: HashMap<String, HpkeSecretKey>,
    /// Light clients of the other cities' chains.
    pub light: Arc<LightClients>,
    /// The libp2p node, once started.
    pub relay: OnceLock<relay::Relay>,
    /// Signing keys of the service centres this gateway takes applications for.
    pub centre_keys: HashMap<String, SigningKey>,
    /// Deadlines and retries of applications.
    pub timing: regions::application::Timing,
    /// The application engine, once started.
    pub engine: OnceLock<crate::applications::Engine>,
    /// Per-subject locks and per-requester volume of the provider side of matches.
    pub guards: crate::guard::MatchGuards,
    /// Webhook push of inbox items, once started.
    pub webhooks: OnceLock<crate::webhook::Pusher>,
}
