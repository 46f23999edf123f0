//! shardcast: a thread-per-core WebSocket real-time messaging server on
//! io_uring (glommio).
//!
//! The map of the crate:
//! - [`config`]: every knob of a node, with its default and meaning.
//! - [`protocol`]: protocol v1 — envelopes, names, wildcard patterns, frames (pure).
//! - [`ring`]: weighted rendezvous over a fixed skeleton of slots: user → node (pure).
//! - [`token`]: HMAC-signed resume tokens.
//! - [`store`]: per-user offsets and buffers (in-memory now; Redis next).
//! - [`node`]: the socket node — cores, accept and hand-off, connections, rooms, drain.
//! - [`metrics`]: Prometheus names and per-core counters.
//!
//! The contract (pieces, protocol, API, metrics) is `ARCHITECTURE.md` in the
//! design folder; docs/architecture.md explains how the node meets it.

pub mod config;
pub mod metrics;
pub mod node;
pub mod protocol;
pub mod ring;
pub mod store;
pub mod token;
