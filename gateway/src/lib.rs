//! # gateway — one city's Tongban gateway
//!
//! The service in front of a city's consortium chain: the embedded ledger on
//! sled, the department record store, the HTTP API, and the `tongban` CLI.
//!
//! ## Map
//!
//! * [`config`] — `gateway.toml` with environment overrides.
//! * [`keyfile`] — owner-only key files.
//! * [`datakey`] — record values encrypted at rest under the city's data key.
//! * [`store`] — [`store::Store`] with [`store::SledStore`] (flush before
//!   acknowledge) and [`store::MemStore`].
//! * [`ledger`] — the chain: blocks, endorsement ([`ledger::Endorser`]),
//!   verification on open, record state, proof bundles.
//! * [`writer`] — the single writer thread: group commit, back-pressure.
//! * [`records`] — typing, committing and signing department records
//!   (shared by the CLI and the gateway).
//! * [`auth`] — signed requests: no shared secrets, replay window.
//! * [`api`] — the HTTP routes ([`api::router`]) and [`api::ApiError`].
//! * [`server`] — [`server::Gateway::open`] and [`server::Gateway::serve`].
//! * [`http_serve`] — the HTTP connection loop: caps, per-address limits,
//!   timeouts, accept back-off, shutdown deadline.
//! * [`client`] — the signing HTTP client the CLI and tests use.
//! * [`metrics`], [`state`], [`clock`].
pub mod api;
pub mod applications;
pub mod auth;
pub mod bench;
pub mod bench_bundle;
pub mod bench_match;
pub mod cli;
pub mod client;
pub mod clock;
pub mod config;
pub mod datakey;
pub mod demo;
pub mod guard;
pub mod http_serve;
pub mod inbox;
pub mod index;
pub mod keyfile;
pub mod ledger;
pub mod light;
pub mod matching;
pub mod metrics;
pub mod network;
pub mod records;
pub mod server;
pub mod state;
pub mod store;
pub mod testkit;
pub mod valuelog;
pub mod webhook;
pub mod writer;
