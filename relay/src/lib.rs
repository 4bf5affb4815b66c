//! Tongban's libp2p layer between gateways.
//!
//! * The gateway's Ed25519 key is its libp2p identity; connections use TCP,
//!   Noise and yamux.
//! * Only the peers given in [`RelayConfig::peers`] (the registry's gateways
//!   and hubs this gateway may talk to) may connect: any other identity is
//!   refused right after the Noise handshake, before any protocol stream.
//! * One request/response protocol, `/tongban/relay/1`, carries
//!   [`frame::Request`]s to named services. Frames are length-prefixed and
//!   the length is checked against the cap before anything is allocated; a
//!   peer that sends a malformed or oversized frame is disconnected.
//! * A destination reached through a hub ([`RelayConfig::routes`]) gets the
//!   request via the hub, signed end to end by the origin; its response comes
//!   back signed by the destination.
//! * Requests have a timeout and are retried with backoff when the
//!   connection fails; unreachable peers are redialled in the background.

pub mod frame;
mod node;

pub use frame::Refusal;
pub use node::{
    Direction, Handler, HandlerFuture, LATENCY_BUCKETS_MS, PeerInfo, Relay, RelayConfig,
    RelayError, RelayStats, ServiceTiming,
};
