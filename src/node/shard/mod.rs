//! A core's shard: the users it owns, their connections, their rooms and
//! their store.
//!
//! Invariant: everything here is touched by this core only (`Rc`,
//! `RefCell`, `Cell`); other cores reach it through [`CoreMsg`]s. A user is
//! owned by core `shard_of(user)`, so its connection, offsets and buffer all
//! live here, and its offsets have exactly one writer.
//!
//! The shard is split by concept: this file holds its state, admission and
//! the connection registry; [`session`] opens sessions (tokens, replay);
//! [`route`] decides where every envelope goes; [`deliver`] makes direct
//! messages to this core's users durable, in pipelined batches; [`api`]
//! serves the server API's sends, publishes and online queries; [`auth`]
//! keeps each connection's token grant (refresh, permissions, expiry);
//! [`housekeeping`] runs the periodic tick and the drain.
//!
//! [`CoreMsg`]: super::mesh::CoreMsg

mod api;
mod auth;
mod deliver;
mod housekeeping;
mod route;
mod session;
mod user;

use std::{
    cell::{Cell, RefCell},
    rc::{Rc, Weak},
    sync::{atomic::AtomicBool, Arc},
    time::Instant,
};

use hdrhistogram::Histogram;
use rustc_hash::FxHashMap;

use crate::{
    config::Config,
    metrics::{latency_histogram, CoreMetrics, Metrics, Rejection},
    relay::Producer,
    ring::Ring,
    store::{Appended, CoreStore, Store, StoreError},
};

use super::{
    conn::Conn,
    mesh::Mesh,
    notify::Notify,
    rate::{Limit, TokenBucket},
    rings::RingSlot,
    rooms::RoomIndex,
};

pub use route::Owner;

pub use session::unix_now;

/// See the module docs.
pub struct Shard {
    id: usize,
    /// This shard, for the tasks it spawns.
    me: Weak<Shard>,
    /// `config.node_id`, shared by every session record of this core.
    node_id: Rc<str>,
    config: Rc<Config>,
    mesh: Rc<Mesh>,
    metrics: Arc<Metrics>,
    store: CoreStore,
    /// This core's Kafka producer (`--kafka`).
    relay: Option<Rc<Producer>>,
    /// The node's newest ring (see `node::rings`).
    rings: Arc<RingSlot>,
    /// The ring this core routes by, and this node's index in it (`None`:
    /// not a member, e.g. before its first heartbeat counted).
    ring: RefCell<Option<(Arc<Ring>, Option<usize>)>>,
    /// Users a new ring gave to another node, with the tick each is moved
    /// at (see `rebalance`).
    moves: RefCell<Vec<(u64, Rc<str>)>>,
    /// The users with an open session here, with their connections.
    users: RefCell<FxHashMap<Rc<str>, user::User>>,
    conns: RefCell<FxHashMap<u64, Rc<Conn>>>,
    rooms: RefCell<RoomIndex>,
    next_conn: Cell<u64>,
    started: Instant,
    clock: Cell<u32>,
    draining: Cell<bool>,
    drain_started: Notify,
    /// Core-clock second by which a drain gives up waiting for clients.
    drain_deadline: Cell<Option<u32>>,
    /// A drain through the control plane: the tick until which it waits
    /// for a ring without this node before sending users away without an
    /// address (see `start_drain`).
    drain_ring_wait: Cell<Option<u64>>,
    node_drain: Arc<AtomicBool>,
    scratch: RefCell<Vec<u8>>,
    handshakes: TokenBucket,
    handshake_limit: Limit,
    latency: RefCell<Histogram<u64>>,
    ticks: Cell<u64>,
    /// Direct deliveries: sequence numbers taken (in store command order),
    /// the next one to apply, and the finished ones waiting for their turn.
    issued: Cell<u64>,
    applied: Cell<u64>,
    finished: RefCell<FxHashMap<u64, Finished>>,
    /// Server API requests waiting for an answer from another core.
    parked: RefCell<FxHashMap<u64, Rc<api::Slot>>>,
    next_slot: Cell<u64>,
}

/// What a core talks to outside the process: its store and, in a cluster,
/// its relay producer.
pub struct Backends {
    pub store: CoreStore,
    pub relay: Option<Rc<Producer>>,
    pub rings: Arc<RingSlot>,
}

/// `ring` with the index of node `id` in it.
fn member(ring: Arc<Ring>, id: &str) -> (Arc<Ring>, Option<usize>) {
    let me = ring.nodes().iter().position(|n| n.id == id);
    (ring, me)
}

/// A direct delivery whose append returned, waiting for its turn.
type Finished = (deliver::LocalDirect, Result<Appended, StoreError>);

/// Size of the per-core read buffer.
const SCRATCH_BYTES: usize = 64 * 1024;

impl Shard {
    /// The shard of core `id`; `me` is the `Rc` it will live in (see
    /// `Rc::new_cyclic`).
    pub fn new(
        me: Weak<Shard>,
        id: usize,
        config: Rc<Config>,
        mesh: Rc<Mesh>,
        metrics: Arc<Metrics>,
        Backends {
            store,
            relay,
            rings,
        }: Backends,
        node_drain: Arc<AtomicBool>,
    ) -> Shard {
        let ring = RefCell::new(rings.current().map(|r| member(r, &config.node_id)));
        let cores = mesh.cores() as u32;
        let per_core = config.handshakes_per_sec.div_ceil(cores).max(1);
        let handshake_limit = Limit::per_sec(per_core, per_core);
        let now = Instant::now();
        Shard {
            id,
            me,
            store,
            relay,
            rings,
            ring,
            moves: RefCell::default(),
            node_id: config.node_id.as_str().into(),
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
            drain_deadline: Cell::new(None),
            drain_ring_wait: Cell::new(None),
            node_drain,
            scratch: RefCell::new(vec![0; SCRATCH_BYTES]),
            handshakes: TokenBucket::full(now),
            handshake_limit,
            latency: RefCell::new(latency_histogram()),
            ticks: Cell::new(0),
            issued: Cell::new(0),
            applied: Cell::new(0),
            finished: RefCell::default(),
            parked: RefCell::default(),
            next_slot: Cell::new(0),
        }
    }

    /// This core's id, `0..cores`.
    pub fn id(&self) -> usize {
        self.id
    }

    /// The node's configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The node's metrics (every core's counters).
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// This core's counters.
    pub fn counters(&self) -> &CoreMetrics {
        &self.metrics.cores[self.id]
    }

    /// Seconds since the core started (updated by `tick`).
    pub fn clock(&self) -> u32 {
        self.clock.get()
    }

    /// True once the node started draining.
    pub fn is_draining(&self) -> bool {
        self.draining.get()
    }

    /// Wakes its one waiter (the accept loop) when draining starts.
    pub fn drain_started(&self) -> &Notify {
        &self.drain_started
    }

    /// The core's read buffer: sockets are read into it inside one poll and
    /// copied out at once, so idle connections hold no read buffer.
    pub fn scratch(&self) -> &RefCell<Vec<u8>> {
        &self.scratch
    }

    /// Marks the parked connection `id` readable and wakes its socket task
    /// (`node::park`); an id that unparked or closed meanwhile is ignored.
    pub fn wake_parked(&self, id: u64) {
        if let Some(conn) = self.conns.borrow().get(&id) {
            if conn.park.get() == super::conn::Park::Parked {
                conn.park.set(super::conn::Park::Readable);
            }
            conn.wake();
        }
    }

    /// Whether a new connection may be admitted now; `Err` says why not.
    pub fn admit(&self) -> Result<(), Rejection> {
        if self.draining.get() {
            return Err(Rejection::Draining);
        }
        // No session can open (welcome needs the store): refuse early.
        if !self.metrics.store_available() {
            return Err(Rejection::StoreDown);
        }
        // The connection may land on another core, so the queue-depth cap is
        // checked node-wide: the per-core cap times the number of cores.
        let queue_cap = self.config.max_queued_per_core * self.mesh.cores();
        if self.metrics.active_connections() >= self.config.max_connections as u64
            || self.metrics.queued() >= queue_cap as u64
        {
            return Err(Rejection::Capacity);
        }
        if self
            .handshakes
            .take(self.handshake_limit, Instant::now())
            .is_err()
        {
            return Err(Rejection::Rate);
        }
        Ok(())
    }

    /// A new connection for `user` (`None` on `/echo`), registered for
    /// housekeeping and drain.
    pub fn new_conn(&self, user: Option<Rc<str>>) -> Rc<Conn> {
        let seq = self.next_conn.get();
        self.next_conn.set(seq + 1);
        let conn = Rc::new(Conn::new(
            (self.id as u64) << 48 | seq,
            user,
            self.config.outbound_queue,
            self.clock(),
        ));
        self.conns.borrow_mut().insert(conn.id, conn.clone());
        self.counters().connection_opened();
        if self.draining.get() {
            self.close_for_drain(&conn);
        }
        conn
    }

    /// Forgets a closed connection: its place among its user's connections,
    /// its subscriptions, and records how far it was delivered.
    pub async fn close_conn(&self, conn: &Rc<Conn>) {
        self.conns.borrow_mut().remove(&conn.id);
        self.counters().connection_closed();
        let Some(user) = &conn.user else {
            return;
        };
        // The newest connection left, if any: the session record names it.
        let remaining = {
            let mut users = self.users.borrow_mut();
            let entry = users.get_mut(user);
            let newest = entry.and_then(|u| {
                u.remove(conn.id);
                u.conns().last().cloned()
            });
            if newest.is_none() {
                users.remove(user);
            }
            newest
        };
        let subs = std::mem::take(&mut *conn.subscriptions.borrow_mut());
        {
            let mut rooms = self.rooms.borrow_mut();
            for pattern in &subs {
                rooms.unsubscribe(pattern, conn.id);
            }
        }
        // Best effort: without the mark, the next plain connect replays more;
        // a stale session record only names a node that no longer has it.
        // The mark never moves back, so the user's mark is the furthest any
        // of its connections got (see docs/protocol.md, "Several connections").
        let _ = self.store.set_delivered(user, conn.delivered()).await;
        let _ = match remaining {
            Some(newest) => {
                let session = self.session_of(&newest);
                self.store.open_session(user, &session).await
            }
            None => self.store.close_session(user, &self.session_of(conn)).await,
        };
    }

    /// The version of the ring this core routes by (0: none).
    pub fn ring_version(&self) -> u64 {
        self.ring.borrow().as_ref().map_or(0, |(r, _)| r.version())
    }

    /// Waits (at most `within`) until the node has ring `version`, asking
    /// the control-plane follower for it, then routes by it.
    pub async fn await_ring(&self, version: u64, within: std::time::Duration) {
        self.rings.want(version);
        let deadline = Instant::now() + within;
        while self.rings.version() < version && Instant::now() < deadline {
            glommio::timer::sleep(std::time::Duration::from_millis(5)).await;
        }
        self.follow_ring();
    }

    /// Routes by the node's newest ring from now on, if it changed.
    pub fn follow_ring(&self) {
        let seen = self.ring_version();
        if self.rings.version() <= seen {
            return;
        }
        if let Some(ring) = self.rings.current() {
            if self.id == 0 {
                tracing::info!(
                    version = ring.version(),
                    nodes = ring.nodes().len(),
                    "routing by a new ring"
                );
            }
            *self.ring.borrow_mut() = Some(member(ring, &self.config.node_id));
            // Users connected under the old ring (or, before the first one,
            // while this node owned everyone) that belong elsewhere now.
            self.rebalance();
        }
    }

    /// Records an in-node delivery latency.
    pub fn record_latency(&self, ingress: Instant) {
        let us = ingress.elapsed().as_micros().max(1) as u64;
        let _ = self.latency.borrow_mut().record(us.min(60_000_000));
    }
}
