//! A core's shard: the users it owns, their connections, their rooms and
//! their store, and the routing of every envelope.
//!
//! Invariant: everything here is touched by this core only (`Rc`,
//! `RefCell`, `Cell`); other cores reach it through [`CoreMsg`]s. A user is
//! owned by core `shard_of(user)`, so its connection, offsets and buffer all
//! live here, and its offsets have exactly one writer.

use std::{
    cell::{Cell, RefCell},
    rc::Rc,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Instant, SystemTime, UNIX_EPOCH},
};

use bytes::Bytes;
use hdrhistogram::Histogram;
use rustc_hash::FxHashMap;

use crate::{
    config::Config,
    metrics::{latency_histogram, CoreMetrics, DropReason, Metrics, Path},
    protocol::{envelope, ClientEnvelope, ErrorCode},
    store::{MemoryStore, Store, StoreError},
    token::{ResumeToken, TokenError},
};

use super::{
    conn::{CloseRequest, Conn, Outbound},
    mesh::{CoreMsg, Mesh},
    notify::Notify,
    rate::{Limit, TokenBucket},
    rooms::RoomIndex,
    shard_of,
};

/// Close code sent to the older connection when a user connects again.
pub const CLOSE_REPLACED: u16 = 4001;
/// Close code of a drain (RFC 6455 "service restart").
pub const CLOSE_DRAIN: u16 = 1012;

/// The store a core uses. One type for now; the Redis store will make this
/// a choice made at start-up.
pub type CoreStore = MemoryStore;

/// See the module docs.
pub struct Shard {
    /// This core's id, `0..cores`.
    pub id: usize,
    pub config: Rc<Config>,
    pub mesh: Rc<Mesh>,
    pub metrics: Arc<Metrics>,
    pub store: CoreStore,
    users: RefCell<FxHashMap<Rc<str>, Rc<Conn>>>,
    conns: RefCell<FxHashMap<u64, Rc<Conn>>>,
    rooms: RefCell<RoomIndex>,
    next_conn: Cell<u64>,
    started: Instant,
    clock: Cell<u32>,
    /// Set when the node starts draining; the accept loop stops on it.
    pub draining: Cell<bool>,
    /// Woken once when draining starts.
    pub drain_started: Notify,
    drain_deadline: Cell<u32>,
    node_drain: Arc<AtomicBool>,
    /// The core's read buffer: sockets are read into it inside one poll and
    /// copied out at once, so idle connections hold no read buffer.
    pub scratch: RefCell<Vec<u8>>,
    handshakes: TokenBucket,
    handshake_limit: Limit,
    limits: [Limit; 2],
    latency: RefCell<Histogram<u64>>,
    ticks: Cell<u64>,
}

/// Size of the per-core read buffer.
const SCRATCH_BYTES: usize = 64 * 1024;

impl Shard {
    /// The shard of core `id`.
    pub fn new(
        id: usize,
        config: Rc<Config>,
        mesh: Rc<Mesh>,
        metrics: Arc<Metrics>,
        node_drain: Arc<AtomicBool>,
    ) -> Shard {
        let cores = mesh.cores() as u32;
        let per_core = config.handshakes_per_sec.div_ceil(cores).max(1);
        let handshake_limit = Limit {
            rate: per_core,
            burst: per_core,
        };
        let limits = [
            Limit {
                rate: config.rate_messages_per_sec,
                burst: config.rate_messages_burst,
            },
            Limit {
                rate: config.rate_joins_per_sec,
                burst: config.rate_joins_burst,
            },
        ];
        let now = Instant::now();
        Shard {
            id,
            store: MemoryStore::new(
                config.buffer_messages,
                std::time::Duration::from_secs(config.buffer_ttl_secs),
            ),
            config,
            mesh,
            metrics,
            users: RefCell::default(),
            conns: RefCell::default(),
            rooms: RefCell::default(),
            next_conn: Cell::new(1),
            started: now,
            clock: Cell::new(0),
            draining: Cell::new(false),
            drain_started: Notify::default(),
            drain_deadline: Cell::new(0),
            node_drain,
            scratch: RefCell::new(vec![0; SCRATCH_BYTES]),
            handshakes: TokenBucket::full(handshake_limit, now),
            handshake_limit,
            limits,
            latency: RefCell::new(latency_histogram()),
            ticks: Cell::new(0),
        }
    }

    /// This core's counters.
    pub fn counters(&self) -> &CoreMetrics {
        &self.metrics.cores[self.id]
    }

    /// Seconds since the core started (updated by `tick`).
    pub fn clock(&self) -> u32 {
        self.clock.get()
    }

    /// Whether a new connection may be admitted now; `Err` says why not.
    pub fn admit(&self) -> Result<(), crate::metrics::Rejection> {
        use crate::metrics::Rejection;
        if self.draining.get() {
            return Err(Rejection::Draining);
        }
        // The connection may land on another core, so the queue-depth cap is
        // checked node-wide: the per-core cap times the number of cores.
        let queue_cap = self.config.max_queued_per_core * self.mesh.cores();
        if self.metrics.active_connections() >= self.config.max_connections as u64
            || self.metrics.queued() >= queue_cap as u64
        {
            return Err(Rejection::Capacity);
        }
        if !self.handshakes.take(self.handshake_limit, Instant::now()) {
            return Err(Rejection::Rate);
        }
        Ok(())
    }

    /// A new connection for `user` (empty for `/echo`), registered for
    /// housekeeping and drain.
    pub fn new_conn(&self, user: Rc<str>) -> Rc<Conn> {
        let seq = self.next_conn.get();
        self.next_conn.set(seq + 1);
        let conn = Rc::new(Conn::new(
            (self.id as u64) << 48 | seq,
            user,
            self.config.outbound_queue,
            self.clock(),
            self.limits,
        ));
        self.conns.borrow_mut().insert(conn.id, conn.clone());
        self.counters().connection_opened();
        if self.draining.get() {
            self.close_for_drain(&conn);
        }
        conn
    }

    /// Opens `conn`'s session: replaces an older connection of the user,
    /// checks the resume token, queues `welcome` and then the backlog.
    pub async fn open_session(&self, conn: &Rc<Conn>, resume: Option<&str>) {
        let user = conn.user.clone();
        let token = match resume.map(|t| self.verify_token(t, &user)) {
            Some(Err(e)) => {
                self.counters().drop(DropReason::Invalid);
                conn.push_error(e.code(), None, &e.to_string());
                conn.request_close(CloseRequest {
                    code: 1008,
                    reason: "invalid resume token",
                });
                return;
            }
            Some(Ok(t)) => {
                self.counters().reconnect();
                Some(t)
            }
            None => None,
        };
        let replaced = self.users.borrow_mut().insert(user.clone(), conn.clone());
        // The older connection records its delivered mark only when it
        // closes; a plain reconnect starts after what it has written so far.
        let replaced_mark = replaced.map_or(0, |old| {
            old.request_close(CloseRequest {
                code: CLOSE_REPLACED,
                reason: "replaced by a newer connection",
            });
            old.delivered()
        });
        conn.begin_replay();
        let result: Result<(), StoreError> = async {
            let after = match &token {
                Some(t) => t.offset,
                None => self.store.delivered(&user).await?.max(replaced_mark),
            };
            conn.set_delivered(after);
            let signed = self.sign_token(&user, after);
            conn.push_text(|o| {
                envelope::encode_welcome(o, &user, &self.config.node_id, &signed, after)
            });
            let backlog = self.store.read_after(&user, after).await?;
            let dropped = conn.end_replay(backlog);
            for _ in 0..dropped {
                self.counters().drop(DropReason::BufferFull);
            }
            Ok(())
        }
        .await;
        if let Err(e) = result {
            conn.end_replay(Vec::new());
            conn.push_error(ErrorCode::Unavailable.as_str(), None, &e.to_string());
            conn.request_close(CloseRequest {
                code: 1011,
                reason: "store unavailable",
            });
        }
        self.store.touch(&user);
    }

    fn verify_token(&self, token: &str, user: &str) -> Result<ResumeToken, TokenError> {
        ResumeToken::verify(
            token,
            &self.config.secret,
            user,
            unix_now(),
            self.config.token_ttl_secs,
        )
    }

    /// A resume token for `user` at `offset`, issued now.
    pub fn sign_token(&self, user: &str, offset: u64) -> String {
        ResumeToken {
            user_id: user.to_owned(),
            offset,
            issued_at: unix_now(),
        }
        .sign(&self.config.secret)
    }

    /// Forgets a closed connection: its user entry (if still this one), its
    /// subscriptions, and records how far it was delivered.
    pub async fn close_conn(&self, conn: &Rc<Conn>) {
        self.conns.borrow_mut().remove(&conn.id);
        self.counters().connection_closed();
        if conn.user.is_empty() {
            return;
        }
        {
            let mut users = self.users.borrow_mut();
            if users.get(&conn.user).is_some_and(|c| c.id == conn.id) {
                users.remove(&conn.user);
            }
        }
        let subs = std::mem::take(&mut *conn.subscriptions.borrow_mut());
        {
            let mut rooms = self.rooms.borrow_mut();
            for pattern in &subs {
                rooms.unsubscribe(pattern, conn.id);
            }
        }
        // Best effort: without the mark, the next plain connect replays more.
        let _ = self.store.set_delivered(&conn.user, conn.delivered()).await;
    }

    /// Handles one text frame from `conn`, received at `ingress`.
    pub async fn on_text(&self, conn: &Rc<Conn>, text: &str, ingress: Instant) {
        let envelope = match ClientEnvelope::parse(text) {
            Ok(e) => e,
            Err(e) => {
                self.counters().drop(DropReason::Invalid);
                conn.push_error(e.code.as_str(), e.id.as_deref(), &e.message);
                return;
            }
        };
        match envelope {
            ClientEnvelope::Send { to, id, data } => {
                if !conn.messages_bucket.take(self.limits[0], ingress) {
                    return self.rate_limited(conn, Some(&id));
                }
                let owner = shard_of(&to, self.mesh.cores());
                if owner == self.id {
                    self.counters().message(Path::Local);
                    match self
                        .deliver_direct(&conn.user, &to, &id, data.get(), ingress)
                        .await
                    {
                        Ok(()) => conn.push_ack(&id),
                        Err(e) => self.unavailable(conn, &id, e),
                    }
                } else {
                    self.counters().message(Path::Core);
                    self.mesh.send(
                        owner,
                        CoreMsg::Direct {
                            from: (*conn.user).into(),
                            from_conn: conn.id,
                            to: to.into(),
                            id: id.into(),
                            data: data.get().into(),
                            ingress,
                        },
                    );
                }
            }
            ClientEnvelope::Join { pattern } => {
                if !conn.joins_bucket.take(self.limits[1], ingress) {
                    return self.rate_limited(conn, None);
                }
                let mut subs = conn.subscriptions.borrow_mut();
                if !subs.contains(&pattern) {
                    if subs.len() >= self.config.max_subscriptions {
                        drop(subs);
                        return conn.push_error(
                            ErrorCode::TooManySubscriptions.as_str(),
                            None,
                            &format!("at most {} subscriptions", self.config.max_subscriptions),
                        );
                    }
                    self.rooms.borrow_mut().subscribe(&pattern, conn);
                    subs.push(pattern);
                }
                drop(subs);
                self.ack_optional(conn, text);
            }
            ClientEnvelope::Leave { pattern } => {
                if !conn.joins_bucket.take(self.limits[1], ingress) {
                    return self.rate_limited(conn, None);
                }
                conn.subscriptions.borrow_mut().retain(|p| p != &pattern);
                self.rooms.borrow_mut().unsubscribe(&pattern, conn.id);
                self.ack_optional(conn, text);
            }
            ClientEnvelope::Publish { room, id, data } => {
                if !conn.messages_bucket.take(self.limits[0], ingress) {
                    return self.rate_limited(conn, Some(&id));
                }
                let mut out = Vec::with_capacity(64 + data.get().len());
                envelope::encode_room(&mut out, room.as_str(), &conn.user, &id, data.get());
                let envelope = Bytes::from(out);
                for core in (0..self.mesh.cores()).filter(|&c| c != self.id) {
                    self.mesh.send(
                        core,
                        CoreMsg::Publish {
                            room: room.as_str().into(),
                            envelope: envelope.clone(),
                            ingress,
                        },
                    );
                }
                self.publish_local(room.as_str(), envelope, ingress);
                conn.push_ack(&id);
            }
        }
    }

    /// `join`/`leave` may carry an `id`; when they do, they are acked.
    fn ack_optional(&self, conn: &Conn, text: &str) {
        #[derive(serde::Deserialize)]
        struct Id<'a> {
            #[serde(borrow)]
            id: Option<std::borrow::Cow<'a, str>>,
        }
        if let Ok(Id { id: Some(id) }) = serde_json::from_str::<Id>(text) {
            conn.push_ack(&id);
        }
    }

    fn rate_limited(&self, conn: &Conn, id: Option<&str>) {
        self.counters().drop(DropReason::RateLimited);
        conn.push_error(
            ErrorCode::RateLimited.as_str(),
            id,
            "rate limit exceeded, slow down",
        );
    }

    fn unavailable(&self, conn: &Conn, id: &str, e: StoreError) {
        self.counters().drop(DropReason::Unavailable);
        conn.push_error(ErrorCode::Unavailable.as_str(), Some(id), &e.to_string());
    }

    /// Gives the message the recipient's next offset, buffers it, and queues
    /// it on the recipient's connection if it has one. `to` is owned here.
    async fn deliver_direct(
        &self,
        from: &str,
        to: &str,
        id: &str,
        data: &str,
        ingress: Instant,
    ) -> Result<(), StoreError> {
        let stored = self
            .store
            .append(to, |offset| {
                let mut out = Vec::with_capacity(72 + from.len() + id.len() + data.len());
                envelope::encode_direct(&mut out, from, id, offset, data);
                Bytes::from(out)
            })
            .await?;
        let conn = self.users.borrow().get(to).cloned();
        if let Some(conn) = conn {
            if !conn.push_direct(stored, Some(ingress)) {
                self.counters().drop(DropReason::BufferFull);
            }
        }
        Ok(())
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

    /// Handles a message from another core.
    pub async fn on_core_msg(self: &Rc<Self>, msg: CoreMsg) {
        match msg {
            CoreMsg::Handoff(h) => super::ws::adopt(self, *h),
            CoreMsg::Direct {
                from,
                from_conn,
                to,
                id,
                data,
                ingress,
            } => {
                let error = self
                    .deliver_direct(&from, &to, &id, &data, ingress)
                    .await
                    .err()
                    .map(|e| {
                        self.counters().drop(DropReason::Unavailable);
                        (ErrorCode::Unavailable.as_str(), e.to_string())
                    });
                let back = shard_of(&from, self.mesh.cores());
                self.mesh.send(
                    back,
                    CoreMsg::Ack {
                        user: from,
                        conn: from_conn,
                        id,
                        error,
                    },
                );
            }
            CoreMsg::Ack {
                user,
                conn,
                id,
                error,
            } => {
                let target = self.users.borrow().get(&*user).cloned();
                if let Some(c) = target.filter(|c| c.id == conn) {
                    match error {
                        None => c.push_ack(&id),
                        Some((code, message)) => c.push_error(code, Some(&id), &message),
                    }
                }
            }
            CoreMsg::Publish {
                room,
                envelope,
                ingress,
            } => self.publish_local(&room, envelope, ingress),
        }
    }

    /// Records an in-node delivery latency.
    pub fn record_latency(&self, ingress: Instant) {
        let us = ingress.elapsed().as_micros().max(1) as u64;
        let _ = self.latency.borrow_mut().record(us.min(60_000_000));
    }

    /// Housekeeping, every 100 ms: the clock, the drain flag, and once a
    /// second pings, idle timeouts, deadlines, TTLs and metric snapshots.
    pub fn tick(&self) {
        self.clock.set(self.started.elapsed().as_secs() as u32);
        if self.node_drain.load(Ordering::Relaxed) && !self.draining.get() {
            self.start_drain();
        }
        let ticks = self.ticks.get() + 1;
        self.ticks.set(ticks);
        if ticks % 10 != 0 {
            return;
        }
        let now = self.clock();
        let (ping, idle) = (
            self.config.ping_interval_secs as u32,
            self.config.idle_timeout_secs as u32,
        );
        let mut queued = 0;
        for conn in self.conns.borrow().values() {
            queued += conn.queued();
            let silent = now.saturating_sub(conn.last_seen.get());
            if conn.deadline.get() != 0 && now >= conn.deadline.get() {
                conn.wake();
            } else if silent >= idle {
                conn.request_close(CloseRequest {
                    code: 1001,
                    reason: "idle timeout",
                });
                conn.deadline.set(now + 2);
            } else if silent >= ping && !conn.ping_sent.get() {
                conn.ping_sent.set(true);
                conn.push(Outbound::Ping);
            }
        }
        self.counters().set_queued(queued as u64);
        self.store.expire(Instant::now());
        // Cumulative since start, like every Prometheus histogram.
        self.counters().publish_latency(&self.latency.borrow());
    }

    fn close_for_drain(&self, conn: &Conn) {
        if !conn.user.is_empty() {
            conn.push(Outbound::Reconnect);
        }
        conn.request_close(CloseRequest {
            code: CLOSE_DRAIN,
            reason: "node draining",
        });
        conn.deadline.set(self.drain_deadline.get());
    }

    /// Stops accepting and asks every connection to reconnect elsewhere.
    pub fn start_drain(&self) {
        self.draining.set(true);
        self.drain_deadline
            .set(self.clock() + self.config.drain_timeout_secs as u32);
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
            && (self.conns.borrow().is_empty() || self.clock() > self.drain_deadline.get())
    }
}

/// Seconds since the unix epoch.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
