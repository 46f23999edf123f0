//! Routing: where every envelope from a client and every message from
//! another core goes.
//!
//! [`Shard::owner`] is the one place that decides where a user lives, as
//! seen from this core: here, on another core of this node, or (by the
//! ring) on another node. A direct message is made durable (offset +
//! buffer) before it is acked: by the owning core for a user of this node,
//! by this core for a user of another node, which then hears of it through
//! the relay (see `crate::relay`). An ack that crosses cores travels back
//! over the mesh to the sender's core, which answers the sender's
//! connection if it is still the same one.

use std::{rc::Rc, time::Instant};

use bytes::Bytes;

use crate::{
    metrics::{DropReason, Path},
    protocol::{server, ClientEnvelope, DirectTemplate, ErrorCode, RoomPattern},
    relay::{self, wire},
    store::StoredMessage,
};

use super::{
    super::{
        conn::{Conn, Outbound},
        mesh::{Back, CoreMsg, Handoff, Waiter},
        shard_of,
    },
    deliver::{LocalDirect, Reply},
    Shard,
};
use crate::node::rate::KindId;

/// Where a user is owned, as seen from one core.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    /// This core.
    Here,
    /// Another core of this node.
    Core(usize),
    /// Another node: its index in the ring's node list.
    Node(usize),
}

impl Shard {
    /// Where `user` is owned.
    pub fn owner(&self, user: &str) -> Owner {
        if let Some((ring, me)) = &*self.ring.borrow() {
            let node = ring.slot_owner_index(ring.slot_of(user));
            if Some(node) != *me {
                return Owner::Node(node);
            }
        }
        match shard_of(user, self.mesh.cores()) {
            core if core == self.id => Owner::Here,
            core => Owner::Core(core),
        }
    }

    /// The id and WebSocket URL (its `addr`) of node `node` of the ring
    /// [`Shard::owner`] answered from.
    pub fn node_address(&self, node: usize) -> Option<(String, String)> {
        let ring = self.ring.borrow();
        let n = ring.as_ref()?.0.nodes().get(node)?;
        Some((n.id.clone(), n.addr.clone()))
    }

    /// Passes an upgraded socket to the core that owns its user.
    pub fn hand_off(&self, core: usize, handoff: Handoff) {
        self.counters().handoff();
        self.mesh.send(core, CoreMsg::Handoff(Box::new(handoff)));
    }

    /// Handles one text frame from `conn` (a `/ws` connection of `user`),
    /// received at `ingress`. A direct message to a user of this core is
    /// added to `local`, for [`Shard::deliver`] with the rest of its batch.
    pub fn on_text(
        &self,
        conn: &Rc<Conn>,
        user: &str,
        text: &str,
        ingress: Instant,
        local: &mut Vec<LocalDirect>,
    ) {
        let envelope = match ClientEnvelope::parse(text) {
            Ok(e) => e,
            Err(e) => {
                self.counters().drop(DropReason::Invalid);
                conn.push_error(e.code, e.id.as_deref(), &e.message);
                return;
            }
        };
        match envelope {
            ClientEnvelope::Send { to, id, data } => {
                if let Err(ms) = self.spend(user, self.config.rates.send(), ingress) {
                    return self.rate_limited(conn, Some(&id), ms);
                }
                if !self.permits(conn, |p| p.send) {
                    return self.forbidden(conn, Some(&id), "the token does not allow `send`");
                }
                let reply = Reply::Here {
                    conn: conn.clone(),
                    id: id.as_ref().into(),
                };
                self.route_direct(user, &to, &id, data.get(), ingress, reply, local);
            }
            ClientEnvelope::Join { pattern, id } => {
                if let Err(ms) = self.spend(user, self.config.rates.join(), ingress) {
                    return self.rate_limited(conn, id.as_deref(), ms);
                }
                if !self.permits(conn, |p| p.may_join(&pattern)) {
                    let message =
                        format!("the token does not allow joining `{}`", pattern.as_str());
                    return self.forbidden(conn, id.as_deref(), &message);
                }
                if let Err(max) = self.subscribe(conn, pattern) {
                    return conn.push_error(
                        ErrorCode::TooManySubscriptions,
                        id.as_deref(),
                        &format!("at most {max} subscriptions"),
                    );
                }
                if let Some(id) = id {
                    conn.push_ack(&id);
                }
            }
            ClientEnvelope::Leave { pattern, id } => {
                if let Err(ms) = self.spend(user, self.config.rates.join(), ingress) {
                    return self.rate_limited(conn, id.as_deref(), ms);
                }
                conn.subscriptions.borrow_mut().retain(|p| p != &pattern);
                self.rooms.borrow_mut().unsubscribe(&pattern, conn.id);
                if let Some(id) = id {
                    conn.push_ack(&id);
                }
            }
            ClientEnvelope::Publish { room, id, data } => {
                let kind = self.config.rates.publish(room.as_str());
                if let Err(ms) = self.spend(user, kind, ingress) {
                    return self.rate_limited(conn, Some(&id), ms);
                }
                if !self.permits(conn, |p| p.may_publish(&room)) {
                    let message =
                        format!("the token does not allow publishing to `{}`", room.as_str());
                    return self.forbidden(conn, Some(&id), &message);
                }
                let mut out = Vec::with_capacity(64 + data.get().len());
                server::encode_room(&mut out, room.as_str(), user, &id, data.get());
                let reply = Reply::Here {
                    conn: conn.clone(),
                    id: id.into(),
                };
                self.route_publish(room.as_str(), Bytes::from(out), ingress, reply);
            }
            ClientEnvelope::Refresh { token, id } => {
                // Verifying a signature costs tens of microseconds: refreshes
                // share the join/leave bucket.
                if let Err(ms) = self.spend(user, self.config.rates.join(), ingress) {
                    return self.rate_limited(conn, id.as_deref(), ms);
                }
                self.refresh(conn, user, &token, id.as_deref());
            }
        }
    }

    /// Routes a direct message from `from` to `to` (a client's `send`, or
    /// the server API's): to this core's delivery batch `local` (see
    /// [`Shard::deliver`]) or to the owning core; `reply` hears the outcome.
    #[allow(clippy::too_many_arguments)] // the message's parts, borrowed
    pub(super) fn route_direct(
        &self,
        from: &str,
        to: &str,
        id: &str,
        data: &str,
        ingress: Instant,
        reply: Reply,
        local: &mut Vec<LocalDirect>,
    ) {
        match self.owner(to) {
            owner @ (Owner::Here | Owner::Node(_)) => {
                let path = match owner {
                    Owner::Here => Path::Local,
                    _ => Path::Relay,
                };
                self.counters().message(path);
                // A user of another node is appended here too: the relay
                // only tells its node (see crate::relay).
                local.push(LocalDirect {
                    message: DirectTemplate::new(from, id, data),
                    to: to.into(),
                    ingress,
                    reply,
                });
            }
            Owner::Core(core) => {
                self.counters().message(Path::Core);
                let back = self.back(reply);
                self.mesh.send(
                    core,
                    CoreMsg::Direct {
                        from: from.into(),
                        to: to.into(),
                        id: id.into(),
                        data: data.into(),
                        ingress,
                        back,
                    },
                );
            }
        }
    }

    /// Routes a room message (its encoded `envelope`) to every core's
    /// subscribers of `room` and, in a cluster, to the other nodes; `reply`
    /// hears that it was handed over (to the broker too, when relayed).
    pub(super) fn route_publish(
        &self,
        room: &str,
        envelope: Bytes,
        ingress: Instant,
        reply: Reply,
    ) {
        self.publish_on_node(room, envelope.clone(), ingress);
        self.publish_relayed(room, envelope, reply);
    }

    /// Hands a room message to every core's matching subscribers (this
    /// core's at once, the others' over the mesh).
    fn publish_on_node(&self, room: &str, envelope: Bytes, ingress: Instant) {
        for core in (0..self.mesh.cores()).filter(|&c| c != self.id) {
            self.mesh.send(
                core,
                CoreMsg::Publish {
                    room: room.into(),
                    envelope: envelope.clone(),
                    ingress,
                },
            );
        }
        self.publish_local(room, envelope, ingress);
    }

    /// The waiter of `reply`, as another core names it.
    fn back(&self, reply: Reply) -> Back {
        let waiter = match reply {
            Reply::Here { conn, id } => Waiter::Conn {
                user: conn.user.as_deref().unwrap_or_default().into(),
                conn: conn.id,
                id,
            },
            Reply::Api(slot) => Waiter::Api(self.park(slot)),
            Reply::Core(back) => return back,
        };
        Back {
            core: self.id,
            waiter,
        }
    }

    /// Adds `pattern` to `conn`'s subscriptions (idempotent); `Err` carries
    /// the limit when the connection already holds the most allowed.
    fn subscribe(&self, conn: &Rc<Conn>, pattern: RoomPattern) -> Result<(), usize> {
        let mut subs = conn.subscriptions.borrow_mut();
        if subs.contains(&pattern) {
            return Ok(());
        }
        if subs.len() >= self.config.max_subscriptions {
            return Err(self.config.max_subscriptions);
        }
        self.rooms.borrow_mut().subscribe(&pattern, conn);
        subs.push(pattern);
        Ok(())
    }

    /// Takes a token of `kind` from `user`'s buckets; `Err` is the
    /// milliseconds until one is there. A user without an entry has no open
    /// session (its resume token was refused; the connection is closing):
    /// nothing it sends is taken.
    fn spend(&self, user: &str, kind: KindId, now: Instant) -> Result<(), u64> {
        match self.users.borrow_mut().get_mut(user) {
            Some(u) => u.buckets.take(&self.config.rates, kind, now),
            None => Err(1000),
        }
    }

    fn rate_limited(&self, conn: &Conn, id: Option<&str>, retry_after_ms: u64) {
        self.counters().drop(DropReason::RateLimited);
        conn.push_text(|o| {
            server::encode_rate_limited(o, id, "rate limit exceeded, slow down", retry_after_ms)
        });
    }

    /// Answers a publish: at once on a single node, once the broker has it
    /// when other nodes must hear of it.
    fn publish_relayed(&self, room: &str, envelope: Bytes, reply: Reply) {
        let Some(relay) = &self.relay else {
            return self.answer(reply, Ok(()));
        };
        let Some(value) = wire::room_value(&self.node_id, &envelope) else {
            return self.answer(reply, Err("node id too long".into()));
        };
        let me = self.me.clone();
        relay.send(
            relay::ROOMS_TOPIC.to_owned(),
            room,
            value,
            Box::new(move |outcome| {
                if let Some(shard) = me.upgrade() {
                    shard.answer(reply, outcome.map_err(|e| e.to_string()));
                }
            }),
        );
    }

    /// A record from the relay (core 0 reads them): a direct message goes
    /// to its user's core, a room message to every core's subscribers.
    pub fn on_relayed(&self, record: relay::Record<'_>) {
        match record {
            relay::Record::Direct(d) => {
                self.counters().relay_received();
                let message = StoredMessage {
                    offset: d.offset,
                    envelope: Bytes::copy_from_slice(d.envelope),
                };
                match shard_of(d.to, self.mesh.cores()) {
                    core if core == self.id => self.on_relayed_direct(d.to, message),
                    core => self.mesh.send(
                        core,
                        CoreMsg::Relayed {
                            to: d.to.into(),
                            message,
                        },
                    ),
                }
            }
            relay::Record::Room(r) => {
                self.counters().relay_received();
                let envelope = Bytes::copy_from_slice(r.envelope);
                self.publish_on_node(r.room, envelope, Instant::now());
            }
        }
    }

    fn publish_local(&self, room: &str, envelope: Bytes, ingress: Instant) {
        let mut dropped = 0;
        self.rooms.borrow().for_each_subscriber(room, |c| {
            let kept = c.push(Outbound::Room {
                envelope: envelope.clone(),
                ingress,
            });
            dropped += usize::from(!kept);
        });
        for _ in 0..dropped {
            self.counters().drop(DropReason::BufferFull);
        }
    }

    /// Handles a batch of messages from another core; its direct messages
    /// are delivered together (see [`Shard::deliver`]).
    pub async fn on_core_batch(self: &Rc<Self>, batch: Vec<CoreMsg>) {
        let mut local = Vec::new();
        for msg in batch {
            self.on_core_msg(msg, &mut local);
        }
        self.deliver(local).await;
    }

    fn on_core_msg(self: &Rc<Self>, msg: CoreMsg, local: &mut Vec<LocalDirect>) {
        match msg {
            CoreMsg::Handoff(h) => super::super::ws::adopt(self, *h),
            CoreMsg::Direct {
                from,
                to,
                id,
                data,
                ingress,
                back,
            } => local.push(LocalDirect {
                message: DirectTemplate::new(&from, &id, &data),
                to,
                ingress,
                reply: Reply::Core(back),
            }),
            CoreMsg::Ack { waiter, error } => self.on_ack(waiter, error),
            CoreMsg::OnlineQuery { user, core, slot } => {
                let connections = self.connections_of(&user);
                self.mesh.send(core, CoreMsg::Online { slot, connections });
            }
            CoreMsg::Online { slot, connections } => {
                self.unpark(slot, super::api::Answer::Online(connections))
            }
            CoreMsg::Publish {
                room,
                envelope,
                ingress,
            } => self.publish_local(&room, envelope, ingress),
            CoreMsg::Relayed { to, message } => self.on_relayed_direct(&to, message),
        }
    }
}
