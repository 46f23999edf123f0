//! Per-user offsets and message buffers: the durable side of delivery.
//!
//! Every message to a user gets the next offset of that user (1, 2, 3, …)
//! and goes into the user's buffer, which keeps the last W messages. Only the
//! user's owning core writes a user's entries, so a store instance belongs
//! to one core and needs no locks; offsets are monotonic because there is
//! one writer per user. A client that reconnects is replayed every buffered
//! message after the offset it names (its resume token), or, without a
//! token, after the last offset the node wrote to one of its sockets.
//!
//! [`Store`] is the seam and [`CoreStore`] the choice made at start-up:
//! [`MemoryStore`] is the embedded default; a Redis store (pipelined per
//! core) implements the same trait. The choice is an enum, not a `dyn`: the
//! match is static and the futures stay unboxed.

mod memory;
pub mod redis;

pub use memory::MemoryStore;
pub use redis::RedisStore;

use std::{
    rc::Rc,
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::Bytes;
use thiserror::Error;

use crate::{config::Config, metrics::Metrics, protocol::DirectTemplate};

/// Which node and core hold a user's connection, since when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub node: Rc<str>,
    pub core: usize,
    /// Unix milliseconds when the connection was opened.
    pub since_ms: u64,
}

/// A buffered message: its offset and its encoded `msg` envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    /// The per-user offset.
    pub offset: u64,
    /// The envelope text exactly as it is sent to the client.
    pub envelope: Bytes,
}

/// An appended message, and where its user's session is (the relay tells
/// another node; see `crate::relay`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    pub message: StoredMessage,
    pub session: SessionAt,
}

/// Where a user's session is, as an append saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionAt {
    /// Not known: the in-memory store (one node) does not track it.
    Unknown,
    /// No session: the user is offline.
    None,
    /// On the appending node.
    Here,
    /// On another node.
    Node(Box<str>),
}

/// A store that could not do what was asked: nothing was made durable.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum StoreError {
    /// The store cannot be reached (refused, reset, not connected yet).
    #[error("store unreachable: {0}")]
    Unreachable(String),
    /// The store failed recently and is not being asked until it recovers.
    #[error("store down: circuit open")]
    CircuitOpen,
    /// Too many requests are waiting for the store; this one was refused.
    #[error("store overloaded: {pending} requests pending")]
    Overloaded { pending: usize },
    /// The store did not answer in time.
    #[error("store timed out after {0:?}")]
    Timeout(Duration),
    /// The store answered with an error or an unexpected reply.
    #[error("store replied: {0}")]
    Reply(String),
}

/// Offsets and buffers of the users one core owns.
#[allow(async_fn_in_trait)] // executor-local: the futures never cross threads
pub trait Store {
    /// Gives `user`'s next message the next offset and appends
    /// `message.with_offset(offset)` to the user's buffer, dropping the
    /// oldest beyond W and refreshing the TTL — as one atomic step, so a
    /// crash cannot leave a gap or a reused offset.
    async fn append(&self, user: &str, message: &DirectTemplate) -> Result<Appended, StoreError>;

    /// The buffered messages of `user` with an offset above `after`, oldest
    /// first.
    async fn read_after(&self, user: &str, after: u64) -> Result<Vec<StoredMessage>, StoreError>;

    /// The last offset given to `user` (0 when none).
    async fn last_offset(&self, user: &str) -> Result<u64, StoreError>;

    /// The last offset written to one of `user`'s sockets (0 when none).
    async fn delivered(&self, user: &str) -> Result<u64, StoreError>;

    /// Records that every message of `user` up to `offset` was written to a
    /// socket. Never moves the mark backwards.
    async fn set_delivered(&self, user: &str, offset: u64) -> Result<(), StoreError>;

    /// Records that `session` now holds `user` (and refreshes the TTL).
    async fn open_session(&self, user: &str, session: &Session) -> Result<(), StoreError>;

    /// Forgets `session` of `user`, unless a newer session replaced it.
    async fn close_session(&self, user: &str, session: &Session) -> Result<(), StoreError>;

    /// Keeps `user`'s entries alive for another TTL (a connection is open).
    async fn touch(&self, user: &str) -> Result<(), StoreError>;

    /// Housekeeping: forgets users whose TTL passed by `now`; returns how
    /// many. A store whose entries expire by themselves returns 0.
    fn expire(&self, now: Instant) -> usize;
}

/// The store a core uses, chosen once at start-up.
pub enum CoreStore {
    /// The embedded in-memory store (no `--redis`).
    Memory(MemoryStore),
    /// Redis, pipelined per core (`--redis URL`).
    Redis(RedisStore),
}

/// Dispatches one `Store` call to the chosen store.
macro_rules! dispatch {
    ($self:ident, $s:ident => $call:expr) => {
        match $self {
            CoreStore::Memory($s) => $call,
            CoreStore::Redis($s) => $call,
        }
    };
}

impl CoreStore {
    /// The store `config` selects, for core `core`: Redis when `redis` has
    /// its link settings, else memory. Must run on the core's executor (the
    /// Redis link task is spawned there).
    pub fn for_core(
        config: &Config,
        redis: Option<&redis::LinkSettings>,
        metrics: Arc<Metrics>,
        core: usize,
    ) -> CoreStore {
        match redis {
            Some(settings) => {
                CoreStore::Redis(RedisStore::start(settings.clone(), config, metrics, core))
            }
            None => CoreStore::Memory(MemoryStore::new(
                config.buffer_messages,
                Duration::from_secs(config.buffer_ttl_secs),
            )),
        }
    }

    /// Waits until the store has tried to reach its server once (at once for
    /// the in-memory store).
    pub async fn ready(&self) {
        if let CoreStore::Redis(s) = self {
            s.ready().await
        }
    }

    /// The store's request round trips (µs), when it has a network hop.
    pub fn round_trips(&self) -> Option<std::cell::Ref<'_, hdrhistogram::Histogram<u64>>> {
        match self {
            CoreStore::Memory(_) => None,
            CoreStore::Redis(s) => Some(s.round_trips()),
        }
    }
}

impl Store for CoreStore {
    async fn append(&self, user: &str, message: &DirectTemplate) -> Result<Appended, StoreError> {
        dispatch!(self, s => s.append(user, message).await)
    }

    async fn read_after(&self, user: &str, after: u64) -> Result<Vec<StoredMessage>, StoreError> {
        dispatch!(self, s => s.read_after(user, after).await)
    }

    async fn last_offset(&self, user: &str) -> Result<u64, StoreError> {
        dispatch!(self, s => s.last_offset(user).await)
    }

    async fn delivered(&self, user: &str) -> Result<u64, StoreError> {
        dispatch!(self, s => s.delivered(user).await)
    }

    async fn set_delivered(&self, user: &str, offset: u64) -> Result<(), StoreError> {
        dispatch!(self, s => s.set_delivered(user, offset).await)
    }

    async fn open_session(&self, user: &str, session: &Session) -> Result<(), StoreError> {
        dispatch!(self, s => s.open_session(user, session).await)
    }

    async fn close_session(&self, user: &str, session: &Session) -> Result<(), StoreError> {
        dispatch!(self, s => s.close_session(user, session).await)
    }

    async fn touch(&self, user: &str) -> Result<(), StoreError> {
        dispatch!(self, s => s.touch(user).await)
    }

    fn expire(&self, now: Instant) -> usize {
        dispatch!(self, s => s.expire(now))
    }
}
