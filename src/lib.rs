//! shardcast: a thread-per-core WebSocket real-time messaging server on
//! io_uring (glommio).
//!
//! The map of the crate:
//! - [`config`]: every knob of a node, with its default and meaning.
//! - [`protocol`]: protocol v1 — envelopes, names, wildcard patterns, frames (pure).
//! - [`ring`]: weighted rendezvous over a fixed skeleton of slots: user → node (pure).
//! - [`token`]: HMAC-signed resume tokens.
//! - [`auth`]: JWTs at the upgrade and in `refresh`, allowed origins, room
//!   permissions from claims (pure).
//! - [`store`]: per-user offsets, buffers and sessions (in memory, or Redis).
//! - [`relay`]: cross-node delivery through Kafka (a producer per core, a
//!   consumer per node).
//! - [`control`]: the control plane (`shardcast-ctl`): heartbeats →
//!   membership → versioned rings, resolve/connect, the scaling decision,
//!   publication to Kafka; and the client a node uses to reach it.
//! - [`node`]: the socket node — cores, accept and hand-off, sessions,
//!   routing, rooms, housekeeping and drain.
//! - [`metrics`]: Prometheus names and per-core counters.
//! - [`sys`]: descriptor limits and CPU numbering at start-up.
//! - [`harness`]: starts a node process and finds its ports (tests, loadgen's
//!   tests, examples).
//!
//! docs/architecture.md explains how the node works and maps these modules;
//! the design contract it implements (pieces, protocol, API, metrics,
//! cluster invariants) is kept outside the repository, in the team's shared
//! design folder (`shared/design/ARCHITECTURE.md`).

pub mod auth;
pub mod config;
pub mod control;
pub mod harness;
pub mod metrics;
pub mod node;
pub mod protocol;
pub mod relay;
pub mod ring;
pub mod store;
pub mod sys;
pub mod token;
