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
//! [`Store`] is the seam: [`MemoryStore`] is the embedded default; a Redis
//! store (pipelined per core) implements the same trait.

mod memory;

pub use memory::MemoryStore;

use bytes::Bytes;
use thiserror::Error;

/// A buffered message: its offset and its encoded `msg` envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    /// The per-user offset.
    pub offset: u64,
    /// The envelope text exactly as it is sent to the client.
    pub envelope: Bytes,
}

/// A store that could not do what was asked; the message is not durable.
#[derive(Debug, Clone, Error)]
pub enum StoreError {
    #[error("store unavailable: {0}")]
    Unavailable(String),
}

/// Offsets and buffers of the users one core owns.
#[allow(async_fn_in_trait)] // executor-local: the futures never cross threads
pub trait Store {
    /// Gives `user`'s next message the next offset, encodes it with
    /// `encode(offset)` and appends it to the user's buffer (dropping the
    /// oldest beyond W and refreshing the TTL).
    async fn append(
        &self,
        user: &str,
        encode: impl FnOnce(u64) -> Bytes,
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
}
