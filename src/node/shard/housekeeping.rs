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
            conn.push(Outbound::Reconnect);
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
