//! Delivery of direct messages to users of this core: the append that makes
//! a message durable (its offset), then the recipient's connection, then the
//! ack to the sender.
//!
//! Messages are delivered in batches: every direct message in one read of a
//! client socket, or in one batch from another core, is appended together.
//! Each append's store command is queued when its future is first polled,
//! and the batch's futures are first polled in batch order, so the commands
//! reach the store in order (one sender's messages to one recipient keep
//! their order and get ascending offsets) and travel in one pipeline flush,
//! instead of one round trip each. Outcomes are applied (recipient's queue,
//! sender's ack) in that same order, whichever batch is woken first (see
//! `deliver_one`).
//!
//! Invariant: a delivery future is never dropped before it completes (it is
//! awaited by a socket task's frame handler or by a core's mesh receiver,
//! neither of which is raced or cancelled); a dropped one would leave its
//! sequence number unapplied and stall every delivery after it. Every append
//! completes: the store answers, fails, or times out.

use std::{future::Future, pin::Pin, rc::Rc, task::Poll, time::Instant};

use crate::{
    metrics::DropReason,
    protocol::{DirectTemplate, ErrorCode},
    relay::{self, wire},
    store::{Appended, SessionAt, Store, StoreError, StoredMessage},
};

use super::{
    super::{
        conn::Conn,
        mesh::{Back, CoreMsg},
        shard_of,
    },
    api::{Answer, Slot},
    Shard,
};

/// A direct message for a user this core owns, before its append.
pub struct LocalDirect {
    pub to: Box<str>,
    pub message: DirectTemplate,
    pub ingress: Instant,
    /// Who hears the outcome.
    pub reply: Reply,
}

/// Where the outcome of a delivery goes.
pub enum Reply {
    /// The sender's connection on this core, acked with `id`.
    Here { conn: Rc<Conn>, id: Box<str> },
    /// A server API request on this core.
    Api(Rc<Slot>),
    /// A waiter on another core: an `Ack` travels back over the mesh.
    Core(Back),
}

impl Shard {
    /// Appends every message of `batch` (in order, in one pipeline flush),
    /// queues each on its recipient's connection, and answers each sender.
    pub async fn deliver(&self, batch: Vec<LocalDirect>) {
        if batch.is_empty() {
            return;
        }
        let deliveries = batch.into_iter().map(|d| self.deliver_one(d)).collect();
        join_in_order(deliveries).await;
    }

    /// One message. Its sequence number is taken in the same poll that
    /// queues its append, so sequence order is the store's command order
    /// (per recipient: offset order). Outcomes are then applied strictly in
    /// sequence order: two batches that interleave on the pipeline (a
    /// socket's and another core's) may be woken in any order, but a
    /// recipient's queue still gets its offsets in order.
    async fn deliver_one(&self, d: LocalDirect) {
        let seq = self.issued.get();
        self.issued.set(seq + 1);
        let outcome = self.store.append(&d.to, &d.message).await;
        self.finished.borrow_mut().insert(seq, (d, outcome));
        loop {
            let next = self.applied.get();
            let Some((d, outcome)) = self.finished.borrow_mut().remove(&next) else {
                break;
            };
            self.applied.set(next + 1);
            self.apply(d, outcome);
        }
    }

    fn apply(&self, d: LocalDirect, outcome: Result<Appended, StoreError>) {
        let appended = match outcome {
            Ok(a) => a,
            Err(e) => return self.answer(d.reply, Err(e.to_string())),
        };
        let relay = match (&self.relay, &appended.session) {
            (Some(relay), SessionAt::Node(node)) => Some((relay.clone(), relay::node_topic(node))),
            _ => None,
        };
        let Some((relay, topic)) = relay else {
            match shard_of(&d.to, self.mesh.cores()) {
                // The user's session is on this node but on another core: a
                // user of another node by the ring, appended here by its
                // sender's core, who has not moved yet (see `rebalance`).
                core if core != self.id && appended.session == SessionAt::Here => {
                    let to = d.to.clone();
                    self.mesh.send(
                        core,
                        CoreMsg::Relayed {
                            to,
                            message: appended.message,
                        },
                    );
                }
                _ => self.offer_to_user(&d.to, appended.message, Some(d.ingress), true),
            }
            return self.answer(d.reply, Ok(()));
        };
        // The user's session is on another node: durable here, live there
        // once the broker has the record; the ack waits for both.
        let value = wire::direct_value(appended.message.offset, &appended.message.envelope);
        self.offer_to_user(&d.to, appended.message, Some(d.ingress), true);
        let me = self.me.clone();
        let LocalDirect { to, reply, .. } = d;
        relay.send(
            topic,
            &to,
            value,
            Box::new(move |outcome| {
                if let Some(shard) = me.upgrade() {
                    shard.answer(reply, outcome.map_err(|e| e.to_string()));
                }
            }),
        );
    }

    /// A direct message another core or node appended for a user of this
    /// core.
    pub(super) fn on_relayed_direct(&self, to: &str, message: StoredMessage) {
        self.offer_to_user(to, message, None, false);
    }

    /// Offers `msg` to every connection of `user` (if it has any here), each
    /// with the same offset; the envelope's bytes are shared, not copied.
    fn offer_to_user(
        &self,
        user: &str,
        msg: StoredMessage,
        ingress: Option<Instant>,
        appended_here: bool,
    ) {
        // `offer` never reaches back into `users`: the borrow may stay.
        if let Some(u) = self.users.borrow().get(user) {
            for conn in u.conns() {
                self.offer(conn, msg.clone(), ingress, appended_here);
            }
        }
    }

    /// Queues `msg` on `conn` if it is the next offset; a message past a
    /// gap is held and the gap read from the store (see `node::order`;
    /// `appended_here`: this core's own append, not a relayed one).
    pub(super) fn offer(
        &self,
        conn: &Rc<Conn>,
        msg: StoredMessage,
        ingress: Option<Instant>,
        appended_here: bool,
    ) {
        let pushed = conn.push_direct(msg, ingress, appended_here);
        if pushed.dropped {
            self.counters().drop(DropReason::BufferFull);
        }
        if let Some(after) = pushed.fill_after {
            self.fill(conn.clone(), after);
        }
    }

    /// Ends `conn`'s replay with `backlog`; reads on while held messages
    /// still wait for a gap.
    pub(super) fn end_replay(&self, conn: &Rc<Conn>, backlog: Vec<StoredMessage>) {
        let (dropped, gap) = conn.end_replay(backlog);
        for _ in 0..dropped {
            self.counters().drop(DropReason::BufferFull);
        }
        if let Some(after) = gap {
            self.fill(conn.clone(), after);
        }
    }

    /// Reads what `conn` misses after `after` from the store, in a task of
    /// its own (the caller may be a delivery that must not wait on it). A
    /// failed read ends the fill with nothing: the held messages then go
    /// out, and the resume mark stays before the gap.
    fn fill(&self, conn: Rc<Conn>, after: u64) {
        let (Some(shard), Some(user)) = (self.me.upgrade(), conn.user.clone()) else {
            return;
        };
        self.counters().gap_fill();
        glommio::spawn_local(async move {
            let backlog = shard
                .store
                .read_after(&user, after)
                .await
                .unwrap_or_default();
            shard.end_replay(&conn, backlog);
        })
        .detach();
    }

    /// Tells whoever waits for a delivery (or a publish) its outcome: `Err`
    /// carries why the message is not durable (or not relayed).
    pub(super) fn answer(&self, reply: Reply, outcome: Result<(), String>) {
        let error = outcome.err().map(|e| {
            self.counters().drop(DropReason::Unavailable);
            (ErrorCode::Unavailable, e)
        });
        match reply {
            Reply::Here { conn, id } => match error {
                None => conn.push_ack(&id),
                Some((code, message)) => conn.push_error(code, Some(&id), &message),
            },
            Reply::Api(slot) => slot.fill(Answer::Done(error)),
            Reply::Core(Back { core, waiter }) if core == self.id => self.on_ack(waiter, error),
            Reply::Core(Back { core, waiter }) => {
                self.mesh.send(core, CoreMsg::Ack { waiter, error });
            }
        }
    }
}

/// Runs `futures` together and returns their outputs in order. Every
/// future is first polled in order, before any is polled a second time.
async fn join_in_order<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures: Vec<Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, out) in futures.iter_mut().zip(outputs.iter_mut()) {
            if out.is_none() {
                match f.as_mut().poll(cx) {
                    Poll::Ready(v) => *out = Some(v),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    outputs
        .into_iter()
        .map(|o| o.expect("every future completed"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    #[test]
    fn futures_are_first_polled_in_order_and_outputs_come_in_order() {
        let log = RefCell::new(Vec::new());
        let make = |i: usize, yields: usize| {
            let log = &log;
            async move {
                log.borrow_mut().push(i);
                for _ in 0..yields {
                    futures_lite::future::yield_now().await;
                }
                i * 10
            }
        };
        let out =
            futures_lite::future::block_on(join_in_order(vec![make(0, 3), make(1, 0), make(2, 1)]));
        assert_eq!(out, [0, 10, 20]);
        assert_eq!(log.borrow()[..3], [0, 1, 2], "first polls in order");
    }
}
