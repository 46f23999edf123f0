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

pub use memory::MemoryStore;

use std::time::{Duration, Instant};

use bytes::Bytes;
use thiserror::Error;

use crate::{config::Config, protocol::DirectTemplate};

/// A buffered message: its offset and its encoded `msg` envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    /// The per-user offset.
    pub offset: u64,
    /// The envelope text exactly as it is sent to the client.
    pub envelope: Bytes,
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
    async fn append(
        &self,
        user: &str,
        message: &DirectTemplate,
    ) -> Result<StoredMessage, StoreError>;

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
}

impl CoreStore {
    /// The store `config` selects, for one core.
    pub fn for_core(config: &Config) -> CoreStore {
        CoreStore::Memory(MemoryStore::new(
            config.buffer_messages,
            Duration::from_secs(config.buffer_ttl_secs),
        ))
    }
}

impl Store for CoreStore {
    async fn append(
        &self,
        user: &str,
        message: &DirectTemplate,
    ) -> Result<StoredMessage, StoreError> {
        match self {
            CoreStore::Memory(s) => s.append(user, message).await,
        }
    }

    async fn read_after(&self, user: &str, after: u64) -> Result<Vec<StoredMessage>, StoreError> {
        match self {
            CoreStore::Memory(s) => s.read_after(user, after).await,
        }
    }

    async fn last_offset(&self, user: &str) -> Result<u64, StoreError> {
        match self {
            CoreStore::Memory(s) => s.last_offset(user).await,
        }
    }

    async fn delivered(&self, user: &str) -> Result<u64, StoreError> {
        match self {
            CoreStore::Memory(s) => s.delivered(user).await,
        }
    }

    async fn set_delivered(&self, user: &str, offset: u64) -> Result<(), StoreError> {
        match self {
            CoreStore::Memory(s) => s.set_delivered(user, offset).await,
        }
    }

    async fn touch(&self, user: &str) -> Result<(), StoreError> {
        match self {
            CoreStore::Memory(s) => s.touch(user).await,
        }
    }

    fn expire(&self, now: Instant) -> usize {
        match self {
            CoreStore::Memory(s) => s.expire(now),
        }
    }
}
