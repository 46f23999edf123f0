//! Cross-core traffic: the messages cores send each other and the outboxes
//! that batch them.
//!
//! Cores talk only through glommio's channel mesh (lock-free SPSC rings, one
//! per ordered pair of cores, with cross-executor wake-ups). A core never
//! awaits a send on its message path: it appends to a local outbox for the
//! peer, and one forwarder task per peer sends the whole outbox as one batch.
//! That keeps the path synchronous, amortizes the cross-core wake-up over a
//! batch, and rules out the deadlock of two cores each blocked sending to
//! the other while neither drains. Order between two cores is FIFO, which
//! gives per-sender→recipient ordering across cores.

use std::{cell::RefCell, os::fd::OwnedFd, rc::Rc, time::Instant};

use bytes::Bytes;
use glommio::channels::channel_mesh::Senders;

use crate::{auth::Grant, protocol::ErrorCode};

use super::notify::Notify;

/// What an accepted `/ws` upgrade asks for: the session to open.
pub struct Session {
    /// The user (`userId`, or the JWT's `sub`).
    pub user: String,
    /// The `resume` token, when given.
    pub resume: Option<String>,
    /// What the JWT grants (`--auth jwt`); boxed, as the session rides in
    /// every connection task's future.
    pub grant: Option<Box<Grant>>,
}

/// A socket handed to the core that owns its user, after the upgrade request
/// named the user and before the 101 response was written.
pub struct Handoff {
    /// The accepted socket.
    pub fd: OwnedFd,
    /// The session it asks for.
    pub session: Session,
    /// The 101 response to write first.
    pub response: Vec<u8>,
    /// Bytes read after the upgrade request (the client's first frames).
    pub leftover: Vec<u8>,
}

/// Who hears the outcome of a message that crossed cores: a waiter on
/// core `core` (the core the message came from).
#[derive(Debug)]
pub struct Back {
    pub core: usize,
    pub waiter: Waiter,
}

/// A waiter for the outcome of a delivery, on its own core.
#[derive(Debug)]
pub enum Waiter {
    /// Connection `conn` of user `user`, answered `ack`/`error` for `id`
    /// if it is still open.
    Conn {
        user: Box<str>,
        conn: u64,
        id: Box<str>,
    },
    /// A server API request, waiting in its core's slot `slot`.
    Api(u64),
}

/// A message from one core to another.
pub enum CoreMsg {
    /// Take over this socket.
    Handoff(Box<Handoff>),
    /// A direct message for a user the receiving core owns.
    Direct {
        from: Box<str>,
        to: Box<str>,
        id: Box<str>,
        data: Box<str>,
        ingress: Instant,
        /// Who hears the outcome.
        back: Back,
    },
    /// The outcome of a `Direct`, for its waiter on the receiving core.
    Ack {
        waiter: Waiter,
        /// `None` when durable; else the error code and message.
        error: Option<(ErrorCode, String)>,
    },
    /// A direct message appended elsewhere for a user the receiving core
    /// owns: by another node (read from the relay by core 0), or by a
    /// sender's core here for a user the ring gives to another node but who
    /// is still connected to this one.
    Relayed {
        to: Box<str>,
        message: crate::store::StoredMessage,
    },
    /// A room message for the receiving core's matching subscribers.
    Publish {
        room: Box<str>,
        envelope: Bytes,
        ingress: Instant,
    },
    /// How many connections `user` (owned by the receiving core) has open;
    /// answered with `Online` to slot `slot` of core `core` (server API).
    OnlineQuery {
        user: Box<str>,
        core: usize,
        slot: u64,
    },
    /// The answer to an `OnlineQuery`.
    Online { slot: u64, connections: usize },
}

/// The sending side of one core: an outbox per peer, drained by forwarders.
pub struct Mesh {
    /// This core's id (its peer id in the channel mesh).
    pub me: usize,
    outboxes: Vec<RefCell<Vec<CoreMsg>>>,
    ready: Vec<Notify>,
}

impl Mesh {
    /// A mesh for core `me` of `cores`.
    pub fn new(me: usize, cores: usize) -> Mesh {
        Mesh {
            me,
            outboxes: (0..cores).map(|_| RefCell::default()).collect(),
            ready: (0..cores).map(|_| Notify::default()).collect(),
        }
    }

    /// Number of cores.
    pub fn cores(&self) -> usize {
        self.outboxes.len()
    }

    /// Queues `msg` for core `to` (never `me`).
    pub fn send(&self, to: usize, msg: CoreMsg) {
        debug_assert_ne!(to, self.me);
        self.outboxes[to].borrow_mut().push(msg);
        self.ready[to].notify();
    }

    /// Runs the forwarder for core `to` until the channel closes.
    pub async fn forward(self: Rc<Self>, to: usize, senders: Rc<Senders<Vec<CoreMsg>>>) {
        loop {
            self.ready[to].wait().await;
            let batch = std::mem::take(&mut *self.outboxes[to].borrow_mut());
            if batch.is_empty() {
                continue;
            }
            if senders.send_to(to, batch).await.is_err() {
                return;
            }
        }
    }
}
