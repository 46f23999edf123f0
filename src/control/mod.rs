//! The control plane, `shardcast-ctl`: membership from heartbeats, the
//! versioned ring, where users connect, the scaling decision; and the
//! client nodes use to talk to it.
//!
//! The map of the module:
//! - [`config`]: every knob of `shardcast-ctl`, with its default.
//! - [`heartbeat`]: the heartbeat's JSON and its rules (shared with the client).
//! - [`membership`]: members → ring versions (pure; the one place versions are made).
//! - [`probe`]: is a node a client reports unreachable really gone?
//! - [`scaling`]: the contract's formula and its hysteresis (pure).
//! - [`state`]: the state file that keeps versions monotonic across restarts.
//! - [`service`]: the shared state behind the API, signing of `connect` tokens, metrics.
//! - [`api`]: routing and every refusal, as a pure function of the request.
//! - [`server`]: the HTTP listener, its threads, housekeeping, the run loop.
//! - [`publish`]: ring versions to the Kafka control topic (`--kafka`).
//! - [`client`]: the node side: heartbeats and ring following on a std thread.
//!
//! Invariants of the whole (docs/architecture.md, "Control plane"):
//! versions only grow, across restarts (state file) and above anything a
//! node reports; a version is durable before it is served or published;
//! every ring is computed by `crate::ring`, so the control plane and the
//! nodes agree on every owner.

pub mod api;
pub mod client;
pub mod config;
pub mod heartbeat;
pub mod membership;
pub mod probe;
pub mod publish;
pub mod scaling;
pub mod server;
pub mod service;
pub mod state;

pub use config::{CtlArgs, CtlConfig};
pub use server::{run, RunError};
