//! The core's periodic work and the drain.
//!
//! Every 100 ms the tick advances the core clock and notices the node-wide
//! drain flag; once a second it pings quiet connections, closes idle ones
//! and those whose JWT expired (4003), ends connections past their
//! deadline, expires store entries and publishes metric snapshots. A drain stops accepting, asks every
//! connection to reconnect elsewhere (a `reconnect` envelope, then 1012),
//! and gives clients `--drain-timeout-secs` to leave.

use std::{rc::Rc, sync::atomic::Ordering, time::Instant};

use crate::{protocol::CloseCode, store::Store};

use super::{
    super::conn::{Conn, Outbound},
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
        let (ping, idle) = (
            self.config.ping_interval_secs as u32,
            self.config.idle_timeout_secs as u32,
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
            }
        }
        self.counters().set_queued(queued as u64);
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
    pub fn start_drain(&self) {
        self.draining.set(true);
        self.drain_deadline
            .set(Some(self.clock() + self.config.drain_timeout_secs as u32));
        self.drain_started.notify();
        let conns: Vec<Rc<Conn>> = self.conns.borrow().values().cloned().collect();
        for conn in conns {
            self.close_for_drain(&conn);
        }
        tracing::info!(
            core = self.id,
            connections = self.conns.borrow().len(),
            "draining"
        );
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
    pub(super) fn rebalance(&self) {
        let span = ((self.config.rebalance_secs * 1000.0) as u64 / TICK_MS).max(1);
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
                secs = self.config.rebalance_secs,
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
