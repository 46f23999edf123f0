//! The server API on a core: direct messages and publishes from backends
//! (HTTP, `node::api`), routed exactly like a client's `send` and
//! `publish`, and the online query.
//!
//! An API request waits in a [`Slot`] on the core that accepted it. A
//! delivery on this core answers the slot directly ([`Reply::Api`]); one
//! that crosses cores parks the slot under a number, and the `Ack` (or
//! `Online`) that comes back over the mesh finds it again.
//!
//! Invariant: every parked slot is answered exactly once, because every
//! delivery completes (see `deliver`) and every `OnlineQuery` is answered;
//! so the parked map holds only requests still in flight.

use std::{cell::RefCell, rc::Rc, time::Instant};

use bytes::Bytes;

use crate::protocol::{server, ErrorCode};

use super::{
    super::{
        mesh::{CoreMsg, Waiter},
        notify::Notify,
    },
    deliver::Reply,
    Owner, Shard,
};

/// What a server API request learns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// A delivery's outcome: `None` when durable (like a client's `ack`),
    /// else the error (like a client's `error`).
    Done(Option<(ErrorCode, String)>),
    /// How many connections the user has open on its owning core.
    Online(usize),
}

/// One waiting API request (see the module docs).
#[derive(Default)]
pub struct Slot {
    answer: RefCell<Option<Answer>>,
    ready: Notify,
}

impl Slot {
    /// Gives the request its answer (the first one wins).
    pub fn fill(&self, answer: Answer) {
        let mut slot = self.answer.borrow_mut();
        if slot.is_none() {
            *slot = Some(answer);
            self.ready.notify();
        }
    }

    /// Waits for the answer.
    async fn wait(&self) -> Answer {
        loop {
            if let Some(a) = self.answer.borrow_mut().take() {
                return a;
            }
            self.ready.wait().await;
        }
    }
}

impl Shard {
    /// A direct message from `from` to `to`, routed like a client's `send`;
    /// returns once it is durable for `to` (`Ok`) or was refused.
    pub async fn api_send(
        &self,
        from: &str,
        to: &str,
        id: &str,
        data: &str,
    ) -> Result<(), (ErrorCode, String)> {
        let slot = Rc::new(Slot::default());
        let mut local = Vec::new();
        let reply = Reply::Api(slot.clone());
        self.route_direct(from, to, id, data, Instant::now(), reply, &mut local);
        // Awaited to the end, never raced: see `deliver`'s invariant.
        self.deliver(local).await;
        done(slot.wait().await)
    }

    /// A room message, routed like a client's `publish`; returns when a
    /// client's `ack` would come.
    pub async fn api_publish(
        &self,
        room: &str,
        from: &str,
        id: &str,
        data: &str,
    ) -> Result<(), (ErrorCode, String)> {
        let mut out = Vec::with_capacity(64 + data.len());
        server::encode_room(&mut out, room, from, id, data);
        let slot = Rc::new(Slot::default());
        let reply = Reply::Api(slot.clone());
        self.route_publish(room, Bytes::from(out), Instant::now(), reply);
        done(slot.wait().await)
    }

    /// How many connections `user` has open on this node.
    pub async fn api_online(&self, user: &str) -> usize {
        let core = match self.owner(user) {
            Owner::Here => return self.connections_of(user),
            Owner::Core(core) => core,
            // Its node answers (the HTTP layer redirects there first).
            Owner::Node(_) => return 0,
        };
        let slot = Rc::new(Slot::default());
        let parked = self.park(slot.clone());
        let query = CoreMsg::OnlineQuery {
            user: user.into(),
            core: self.id,
            slot: parked,
        };
        self.mesh.send(core, query);
        match slot.wait().await {
            Answer::Online(n) => n,
            Answer::Done(_) => 0,
        }
    }

    /// The open connections of `user`, a user of this core.
    pub(super) fn connections_of(&self, user: &str) -> usize {
        self.users.borrow().get(user).map_or(0, |u| u.conns().len())
    }

    /// Parks `slot` until an answer for its number comes over the mesh.
    pub(super) fn park(&self, slot: Rc<Slot>) -> u64 {
        let n = self.next_slot.get();
        self.next_slot.set(n + 1);
        self.parked.borrow_mut().insert(n, slot);
        n
    }

    /// Answers parked slot `n`.
    pub(super) fn unpark(&self, n: u64, answer: Answer) {
        if let Some(slot) = self.parked.borrow_mut().remove(&n) {
            slot.fill(answer);
        }
    }

    /// Answers a waiter of this core with a delivery's outcome.
    pub(super) fn on_ack(&self, waiter: Waiter, error: Option<(ErrorCode, String)>) {
        match waiter {
            Waiter::Conn { user, conn, id } => {
                // Connection ids are unique on the core: the sender's
                // connection, if it is still open, whichever of its user's.
                let target = self.conns.borrow().get(&conn).cloned();
                if let Some(c) = target.filter(|c| c.user.as_deref() == Some(&*user)) {
                    match error {
                        None => c.push_ack(&id),
                        Some((code, message)) => c.push_error(code, Some(&id), &message),
                    }
                }
            }
            Waiter::Api(n) => self.unpark(n, Answer::Done(error)),
        }
    }
}

fn done(answer: Answer) -> Result<(), (ErrorCode, String)> {
    match answer {
        Answer::Done(None) => Ok(()),
        Answer::Done(Some(e)) => Err(e),
        Answer::Online(_) => Err((ErrorCode::Unavailable, "unexpected answer".into())),
    }
}
