//! The core's periodic work and the drain.
//!
//! Every 100 ms the tick advances the core clock and notices the node-wide
//! drain flag; once a second it pings quiet connections, parks silent ones
//! (`node::park`), closes idle ones
//! and those whose JWT expired (4003), ends connections past their
//! deadline, expires store entries and publishes metric snapshots. A drain stops accepting, asks every
//! connection to reconnect elsewhere (a `reconnect` envelope, then 1012;
//! under a control plane, once the ring without this node names each
//! user's new owner), and gives clients `--drain-timeout-secs` to leave.

use std::{rc::Rc, sync::atomic::Ordering, time::Instant};

use crate::{protocol::CloseCode, store::Store};

use super::{
    super::conn::{Conn, Outbound, Park},
    unix_now, Shard,
};

/// How many 100 ms ticks make the once-a-second work.
const TICKS_PER_SECOND: u64 = 10;
/// Seconds an idle connection gets to finish its close handshake.
const CLOSE_GRACE_SECS: u32 = 2;

impl Shard {
    /// Housekeeping, every 100 ms: the clock, the drain flag, and once a
    /// second pings, idle timeouts, deadlines, TTLs and metric snapshots.
    pub fn tick(&self) {
        self.clock.set(self.started.elapsed().as_secs() as u32);
        self.follow_ring();
        self.check_drain_ring();
        self.move_due_users();
        if self.node_drain.load(Ordering::Relaxed) && !self.draining.get() {
            self.start_drain();
        }
        let ticks = self.ticks.get() + 1;
        self.ticks.set(ticks);
        if ticks % TICKS_PER_SECOND != 0 {
            return;
        }
        let now = self.clock();
        let (ping, idle, park) = (
            self.config.ping_interval_secs as u32,
            self.config.idle_timeout_secs as u32,
            self.config.park_after_secs as u32,
        );
        let mut queued = 0;
        let unix = unix_now();
        for conn in self.conns.borrow().values() {
            queued += conn.queued();
            let silent = now.saturating_sub(conn.last_seen.get());
            if conn.deadline.get().is_some_and(|d| now >= d) {
                conn.wake();
            } else if self.close_if_expired(conn, unix) {
                conn.deadline.set(Some(now + CLOSE_GRACE_SECS));
            } else if silent >= idle {
                conn.request_close(CloseCode::IdleTimeout);
                conn.deadline.set(Some(now + CLOSE_GRACE_SECS));
            } else if silent >= ping && !conn.ping_sent.get() {
                conn.ping_sent.set(true);
                conn.push(Outbound::Ping);
            } else if park > 0 && silent >= park {
                match conn.park.get() {
                    Park::Active => conn.park.set(Park::Quiet),
                    Park::Quiet => {
                        conn.park.set(Park::Due);
                        conn.wake();
                    }
                    Park::Due | Park::Parked | Park::Readable | Park::Never => {}
                }
            }
        }
        self.counters().set_queued(queued as u64);
        super::super::park::collect();
        self.store.expire(Instant::now());
        // Cumulative since start, like every Prometheus histogram.
        self.counters().publish_latency(&self.latency.borrow());
        if let Some(round_trips) = self.store.round_trips() {
            self.counters().publish_store_latency(&round_trips);
        }
    }

    pub(super) fn close_for_drain(&self, conn: &Conn) {
        if conn.user.is_some() {
            conn.push(Outbound::Reconnect(None));
        }
        conn.request_close(CloseCode::Draining);
        conn.deadline.set(self.drain_deadline.get());
    }

    /// Stops accepting and asks every connection to reconnect elsewhere.
    ///
    /// A member of a control plane's ring first waits (at most
    /// [`Shard::drain_ring_wait_ticks`]) for the ring without it: the
    /// heartbeat reports the drain at once, the control plane takes the node
    /// out, and each user is then moved like on any ring change, with its
    /// new owner's `wsUrl`, spread over the drain. Without that ring (the
    /// control plane is down) every user is sent away without an address.
    pub fn start_drain(&self) {
        self.draining.set(true);
        self.drain_deadline
            .set(Some(self.clock() + self.config.drain_timeout_secs as u32));
        self.drain_started.notify();
        let conns: Vec<Rc<Conn>> = self.conns.borrow().values().cloned().collect();
        let by_ring = self.config.control.is_some() && self.ring.borrow().is_some();
        if by_ring && self.is_member() {
            self.drain_ring_wait
                .set(Some(self.ticks.get() + self.drain_ring_wait_ticks()));
        } else if by_ring {
            // The ring without this node came before the drain flag was
            // seen: move everyone now, within the drain's spread.
            self.rebalance();
        }
        for conn in conns {
            if !by_ring || conn.user.is_none() {
                self.close_for_drain(&conn);
            }
        }
        tracing::info!(
            core = self.id,
            connections = self.conns.borrow().len(),
            by_ring,
            "draining"
        );
    }

    /// Two heartbeats and half a second: the control plane's answer has had
    /// time to arrive by any of its two ways.
    fn drain_ring_wait_ticks(&self) -> u64 {
        ((2 * self.config.heartbeat_ms + 500) / TICK_MS).max(1)
    }

    /// A drain waiting for the ring without this node: done when the ring
    /// came (`follow_ring` scheduled the moves), else at the end of the wait
    /// every user is sent away without an address.
    fn check_drain_ring(&self) {
        let Some(until) = self.drain_ring_wait.get() else {
            return;
        };
        if !self.is_member() {
            self.drain_ring_wait.set(None);
        } else if self.ticks.get() >= until {
            self.drain_ring_wait.set(None);
            tracing::warn!(
                core = self.id,
                "no ring without this node from the control plane; draining without new addresses"
            );
            let conns: Vec<Rc<Conn>> = self.conns.borrow().values().cloned().collect();
            for conn in conns {
                self.close_for_drain(&conn);
            }
        }
    }

    /// Whether this node is in the ring this core routes by.
    fn is_member(&self) -> bool {
        self.ring
            .borrow()
            .as_ref()
            .is_some_and(|(_, me)| me.is_some())
    }

    /// True once draining and every connection is gone (or the drain timed out).
    pub fn drained(&self) -> bool {
        self.draining.get()
            && (self.conns.borrow().is_empty()
                || self.drain_deadline.get().is_some_and(|d| self.clock() > d))
    }
}

/// Milliseconds per housekeeping tick.
const TICK_MS: u64 = 1000 / TICKS_PER_SECOND;

impl Shard {
    /// After a ring change: schedules every connected user that another node
    /// owns now to be moved there, each at a moment of its own within
    /// `--rebalance-secs` (a fixed hash of the user, so the moves of one
    /// change spread evenly). Users whose owner did not change are never
    /// touched.
    /// A drain moves its users within the first half of its timeout, so
    /// that they have left before it ends.
    pub(super) fn rebalance(&self) {
        let mut secs = self.config.rebalance_secs;
        if self.draining.get() {
            secs = secs.min(self.config.drain_timeout_secs as f64 / 2.0);
        }
        let span = ((secs * 1000.0) as u64 / TICK_MS).max(1);
        let now = self.ticks.get();
        let mut moves = self.moves.borrow_mut();
        moves.clear();
        for user in self.users.borrow().keys() {
            if let super::Owner::Node(_) = self.owner(user) {
                let at = now + 1 + super::super::shard_of(user, span as usize) as u64;
                moves.push((at, user.clone()));
            }
        }
        if !moves.is_empty() {
            tracing::info!(
                core = self.id,
                users = moves.len(),
                secs,
                "moving users to their new nodes"
            );
        }
    }

    /// Moves the users whose moment came: each of their connections gets a
    /// `reconnect` naming the new owner's `wsUrl`, then close 1012. A user
    /// the newest ring gives back to this node stays.
    fn move_due_users(&self) {
        let now = self.ticks.get();
        let due: Vec<Rc<str>> = {
            let mut moves = self.moves.borrow_mut();
            if moves.is_empty() {
                return;
            }
            let (due, later) = moves.drain(..).partition(|(at, _)| *at <= now);
            *moves = later;
            due.into_iter().map(|(_, u)| u).collect()
        };
        for user in due {
            let super::Owner::Node(node) = self.owner(&user) else {
                continue;
            };
            let url: Option<Rc<str>> = self.node_address(node).map(|(_, addr)| addr.into());
            let conns: Vec<Rc<Conn>> = self
                .users
                .borrow()
                .get(&user)
                .map(|u| u.conns().to_vec())
                .unwrap_or_default();
            for conn in conns {
                conn.push(Outbound::Reconnect(url.clone()));
                conn.request_close(CloseCode::Draining);
                self.counters().rebalanced();
            }
        }
    }
}
