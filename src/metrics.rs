//! The node's metrics, rendered as Prometheus text under the contract's names.
//!
//! Each core has its own [`CoreMetrics`]: counters are atomics written only
//! by that core (relaxed, on their own cache lines), so the hot path never
//! contends. Latency is recorded into a core-local hdrhistogram (plain data,
//! no atomics) and published to the shared registry once a second by the
//! core's housekeeping task; a scrape merges the per-core snapshots.

use std::{
    fmt::Write as _,
    sync::{
        atomic::{AtomicU64, Ordering::Relaxed},
        Mutex,
    },
};

use hdrhistogram::Histogram;

use crate::auth::AuthReason;

/// Why a message was not delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// The recipient's outbound queue was full; the oldest message was dropped
    /// (the store still has it for a resume).
    BufferFull,
    /// The sender was over its rate limit.
    RateLimited,
    /// The envelope was refused (bad JSON, bad fields, …).
    Invalid,
    /// The store could not make the message durable.
    Unavailable,
}

const DROP_REASONS: [(DropReason, &str); 4] = [
    (DropReason::BufferFull, "buffer_full"),
    (DropReason::RateLimited, "rate_limited"),
    (DropReason::Invalid, "invalid"),
    (DropReason::Unavailable, "unavailable"),
];

/// How a message reached its recipient's core.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    /// Sender and recipient on the same core.
    Local,
    /// Across cores of this node.
    Core,
    /// To another node, through the relay.
    Relay,
}

/// Why a handshake was refused with HTTP 503.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// Over the handshakes-per-second cap.
    Rate,
    /// Over the connection or queue-depth cap.
    Capacity,
    /// The node is draining.
    Draining,
    /// The store is down: no session can be opened.
    StoreDown,
}

const REJECTIONS: [(Rejection, &str); 4] = [
    (Rejection::Rate, "rate"),
    (Rejection::Capacity, "capacity"),
    (Rejection::Draining, "draining"),
    (Rejection::StoreDown, "store_down"),
];

/// The counters of one core. Padded so two cores never share a cache line.
/// Why a store request failed (the `kind` label of `rtc_store_errors_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreFailure {
    Unreachable,
    CircuitOpen,
    Overloaded,
    Timeout,
    Reply,
}

const STORE_FAILURES: [(StoreFailure, &str); 5] = [
    (StoreFailure::Unreachable, "unreachable"),
    (StoreFailure::CircuitOpen, "circuit_open"),
    (StoreFailure::Overloaded, "overloaded"),
    (StoreFailure::Timeout, "timeout"),
    (StoreFailure::Reply, "reply"),
];

impl StoreFailure {
    /// The kind of `err`.
    pub fn of(err: &crate::store::StoreError) -> StoreFailure {
        use crate::store::StoreError as E;
        match err {
            E::Unreachable(_) => StoreFailure::Unreachable,
            E::CircuitOpen => StoreFailure::CircuitOpen,
            E::Overloaded { .. } => StoreFailure::Overloaded,
            E::Timeout(_) => StoreFailure::Timeout,
            E::Reply(_) => StoreFailure::Reply,
        }
    }
}

#[repr(align(128))]
#[derive(Default)]
pub struct CoreMetrics {
    active_connections: AtomicU64,
    messages: [AtomicU64; 3],
    drops: [AtomicU64; 4],
    rejected: [AtomicU64; 4],
    auth_failures: [AtomicU64; AuthReason::ALL.len()],
    reconnects: AtomicU64,
    handoffs: AtomicU64,
    queued: AtomicU64,
    /// Bytes of the connections' own buffers, as of their last rest
    /// (wrapping sum of signed changes).
    connection_buffers: AtomicU64,
    /// Connections parked in the core's epoll set (wrapping sum of changes).
    parked: AtomicU64,
    latency: Mutex<Option<Histogram<u64>>>,
    /// 1 while the core's store serves requests (always, in memory).
    store_down: AtomicU64,
    store_depth: AtomicU64,
    store_batches: AtomicU64,
    store_batched: AtomicU64,
    store_errors: [AtomicU64; 5],
    store_latency: Mutex<Option<Histogram<u64>>>,
    /// Reads of the store that filled a gap in a connection's offsets.
    gap_fills: AtomicU64,
    relay_up: AtomicU64,
    relay_pending: AtomicU64,
    /// Relay batches by size: bucket i counts batches of at most 2^i.
    relay_batches: [AtomicU64; RELAY_BATCH_BUCKETS],
    relay_batched: AtomicU64,
    relay_errors: AtomicU64,
    relay_received: AtomicU64,
    /// Connections moved to another node by a ring change.
    rebalanced: AtomicU64,
    /// Ingest records delivered (0) and refused as malformed (1).
    ingest: [AtomicU64; 2],
}

/// Buckets of `rtc_relay_batch_size`: 1, 2, 4, …, 4096 and +Inf.
const RELAY_BATCH_BUCKETS: usize = 14;

impl CoreMetrics {
    /// A connection opened (+1) or closed (-1).
    pub fn connection_opened(&self) {
        self.active_connections.fetch_add(1, Relaxed);
    }

    /// See [`CoreMetrics::connection_opened`].
    pub fn connection_closed(&self) {
        self.active_connections.fetch_sub(1, Relaxed);
    }

    /// Connections open on this core now.
    pub fn active_connections(&self) -> u64 {
        self.active_connections.load(Relaxed)
    }

    /// A message was routed over `path`.
    pub fn message(&self, path: Path) {
        self.messages[path as usize].fetch_add(1, Relaxed);
    }

    /// A message was dropped for `reason`.
    pub fn drop(&self, reason: DropReason) {
        self.drops[reason as usize].fetch_add(1, Relaxed);
    }

    /// A handshake was refused with 503.
    pub fn rejected(&self, why: Rejection) {
        self.rejected[why as usize].fetch_add(1, Relaxed);
    }

    /// An upgrade (401/403) or a `refresh` was refused for `reason`.
    pub fn auth_failure(&self, reason: AuthReason) {
        self.auth_failures[reason as usize].fetch_add(1, Relaxed);
    }

    /// A client resumed with a valid token.
    pub fn reconnect(&self) {
        self.reconnects.fetch_add(1, Relaxed);
    }

    /// An upgraded socket was handed to the core that owns its user.
    pub fn handoff(&self) {
        self.handoffs.fetch_add(1, Relaxed);
    }

    /// Sets the number of messages queued on this core's connections.
    pub fn set_queued(&self, n: u64) {
        self.queued.store(n, Relaxed);
    }

    /// Moves the parked-connections gauge by `delta`.
    pub fn add_parked(&self, delta: i64) {
        self.parked.fetch_add(delta as u64, Relaxed);
    }

    /// A connection of this core now holds `delta` more (or fewer) bytes
    /// of buffers (read, send, queue capacity) than when it last reported.
    pub fn add_connection_buffers(&self, delta: i64) {
        self.connection_buffers.fetch_add(delta as u64, Relaxed);
    }

    /// Replaces this core's latency snapshot (called once a second).
    pub fn publish_latency(&self, snapshot: &Histogram<u64>) {
        publish(&self.latency, snapshot);
    }

    /// Publishes the store's round-trip histogram (µs, cumulative).
    pub fn publish_store_latency(&self, snapshot: &Histogram<u64>) {
        publish(&self.store_latency, snapshot);
    }

    /// Records whether the core's store is serving requests.
    pub fn set_store_up(&self, up: bool) {
        self.store_down.store(u64::from(!up), Relaxed);
    }

    /// True while the core's store is serving requests.
    pub fn store_up(&self) -> bool {
        self.store_down.load(Relaxed) == 0
    }

    /// Requests waiting in the core's store pipeline.
    pub fn set_store_depth(&self, n: u64) {
        self.store_depth.store(n, Relaxed);
    }

    /// One pipeline flush of `commands` commands.
    pub fn store_batch(&self, commands: u64) {
        self.store_batches.fetch_add(1, Relaxed);
        self.store_batched.fetch_add(commands, Relaxed);
    }

    /// A failed store request.
    pub fn store_failure(&self, kind: StoreFailure) {
        self.store_errors[kind as usize].fetch_add(1, Relaxed);
    }

    /// A connection's gap was read from the store.
    pub fn gap_fill(&self) {
        self.gap_fills.fetch_add(1, Relaxed);
    }

    /// Records whether the core's relay producer reaches the brokers.
    pub fn set_relay_up(&self, up: bool) {
        self.relay_up.store(u64::from(up), Relaxed);
    }

    /// True while the core's relay producer reaches the brokers.
    pub fn relay_up(&self) -> bool {
        self.relay_up.load(Relaxed) == 1
    }

    /// Messages of this core on their way to Kafka.
    pub fn set_relay_pending(&self, n: u64) {
        self.relay_pending.store(n, Relaxed);
    }

    /// One batch of `n` messages handed to the Kafka producer.
    pub fn relay_batch(&self, n: u64) {
        let bucket = (64 - n.saturating_sub(1).leading_zeros()) as usize;
        self.relay_batches[bucket.min(RELAY_BATCH_BUCKETS - 1)].fetch_add(1, Relaxed);
        self.relay_batched.fetch_add(n, Relaxed);
    }

    /// A relayed message failed (the broker did not take it in time).
    pub fn relay_error(&self) {
        self.relay_errors.fetch_add(1, Relaxed);
    }

    /// A connection was moved to another node by a ring change.
    pub fn rebalanced(&self) {
        self.rebalanced.fetch_add(1, Relaxed);
    }

    /// An ingest record was delivered (or skipped as a duplicate), or
    /// refused as malformed.
    pub fn ingest(&self, refused: bool) {
        self.ingest[usize::from(refused)].fetch_add(1, Relaxed);
    }

    /// A message arrived from the relay.
    pub fn relay_received(&self) {
        self.relay_received.fetch_add(1, Relaxed);
    }
}

/// A new latency histogram in microseconds, 1 µs to 60 s, 3 significant digits.
fn publish(slot: &Mutex<Option<Histogram<u64>>>, snapshot: &Histogram<u64>) {
    let mut slot = slot.lock().expect("metrics lock poisoned");
    match slot.as_mut() {
        Some(h) => {
            h.reset();
            h.add(snapshot).expect("same bounds");
        }
        None => *slot = Some(snapshot.clone()),
    }
}

pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds")
}

/// Upper bounds (seconds) of the exported latency buckets.
const BUCKETS: [f64; 14] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
    5.0,
];

/// The registry of a node: one [`CoreMetrics`] per core.
pub struct Metrics {
    /// Per-core counters, indexed by core id.
    pub cores: Vec<CoreMetrics>,
}

impl Metrics {
    /// A registry for `cores` cores.
    pub fn new(cores: usize) -> Metrics {
        Metrics {
            cores: (0..cores).map(|_| CoreMetrics::default()).collect(),
        }
    }

    fn sum(&self, f: impl Fn(&CoreMetrics) -> &AtomicU64) -> u64 {
        self.cores.iter().map(|c| f(c).load(Relaxed)).sum()
    }

    /// Messages routed by the node so far, every path.
    pub fn messages(&self) -> u64 {
        (0..3).map(|i| self.sum(|c| &c.messages[i])).sum()
    }

    /// Connections open on the node.
    pub fn active_connections(&self) -> u64 {
        self.sum(|c| &c.active_connections)
    }

    /// Messages queued on the node's connections.
    pub fn queued(&self) -> u64 {
        self.sum(|c| &c.queued)
    }

    /// True when every core's store serves requests.
    pub fn store_available(&self) -> bool {
        self.cores.iter().all(CoreMetrics::store_up)
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        let w = &mut out;
        let _ = writeln!(
            w,
            "# HELP rtc_socket_active_connections Open WebSocket connections."
        );
        let _ = writeln!(w, "# TYPE rtc_socket_active_connections gauge");
        let _ = writeln!(
            w,
            "rtc_socket_active_connections {}",
            self.active_connections()
        );

        let _ = writeln!(
            w,
            "# HELP rtc_socket_parked_connections Idle connections waiting in their \
             core's epoll set instead of on an io_uring poll (--park-after-secs)."
        );
        let _ = writeln!(w, "# TYPE rtc_socket_parked_connections gauge");
        let _ = writeln!(
            w,
            "rtc_socket_parked_connections {}",
            self.sum(|c| &c.parked)
        );

        let _ = writeln!(
            w,
            "# HELP rtc_socket_connection_buffer_bytes Bytes held by the connections' own \
             read, send and queue buffers (capacity), as of each one's last rest."
        );
        let _ = writeln!(w, "# TYPE rtc_socket_connection_buffer_bytes gauge");
        let _ = writeln!(
            w,
            "rtc_socket_connection_buffer_bytes {}",
            self.sum(|c| &c.connection_buffers)
        );

        let _ = writeln!(
            w,
            "# HELP rtc_socket_messages_total Messages routed, by path."
        );
        let _ = writeln!(w, "# TYPE rtc_socket_messages_total counter");
        for (i, path) in ["local", "core", "relay"].iter().enumerate() {
            let n = self.sum(|c| &c.messages[i]);
            let _ = writeln!(w, "rtc_socket_messages_total{{path=\"{path}\"}} {n}");
        }

        let _ = writeln!(
            w,
            "# HELP rtc_socket_drops_total Messages not delivered, by reason."
        );
        let _ = writeln!(w, "# TYPE rtc_socket_drops_total counter");
        for (reason, name) in DROP_REASONS {
            let n = self.sum(|c| &c.drops[reason as usize]);
            let _ = writeln!(w, "rtc_socket_drops_total{{reason=\"{name}\"}} {n}");
        }

        let _ = writeln!(
            w,
            "# HELP rtc_socket_reconnects_total Connections resumed with a valid token."
        );
        let _ = writeln!(w, "# TYPE rtc_socket_reconnects_total counter");
        let _ = writeln!(
            w,
            "rtc_socket_reconnects_total {}",
            self.sum(|c| &c.reconnects)
        );

        let _ = writeln!(
            w,
            "# HELP rtc_socket_handoffs_total Upgrades accepted on one core and handed to the core that owns the user."
        );
        let _ = writeln!(w, "# TYPE rtc_socket_handoffs_total counter");
        let _ = writeln!(w, "rtc_socket_handoffs_total {}", self.sum(|c| &c.handoffs));

        let _ = writeln!(
            w,
            "# HELP rtc_socket_handshakes_rejected_total Upgrades refused with HTTP 503."
        );
        let _ = writeln!(w, "# TYPE rtc_socket_handshakes_rejected_total counter");
        for (why, name) in REJECTIONS {
            let n = self.sum(|c| &c.rejected[why as usize]);
            let _ = writeln!(
                w,
                "rtc_socket_handshakes_rejected_total{{reason=\"{name}\"}} {n}"
            );
        }

        let _ = writeln!(
            w,
            "# HELP rtc_socket_auth_failures_total Upgrades refused with 401/403 and refreshes refused, by reason."
        );
        let _ = writeln!(w, "# TYPE rtc_socket_auth_failures_total counter");
        for reason in AuthReason::ALL {
            let n = self.sum(|c| &c.auth_failures[reason as usize]);
            let _ = writeln!(
                w,
                "rtc_socket_auth_failures_total{{reason=\"{}\"}} {n}",
                reason.as_str()
            );
        }

        render_histogram(
            w,
            "rtc_socket_latency_seconds",
            "In-node delivery latency: frame received to frame written to the recipient's socket.",
            self.cores.iter().map(|c| &c.latency),
        );

        let _ = writeln!(
            w,
            "# HELP rtc_store_up 1 while the core's store (Redis or memory) serves requests."
        );
        let _ = writeln!(w, "# TYPE rtc_store_up gauge");
        for (i, c) in self.cores.iter().enumerate() {
            let _ = writeln!(w, "rtc_store_up{{core=\"{i}\"}} {}", u8::from(c.store_up()));
        }
        let _ = writeln!(
            w,
            "# HELP rtc_store_pipeline_depth Store requests waiting for a reply, per core."
        );
        let _ = writeln!(w, "# TYPE rtc_store_pipeline_depth gauge");
        for (i, c) in self.cores.iter().enumerate() {
            let n = c.store_depth.load(Relaxed);
            let _ = writeln!(w, "rtc_store_pipeline_depth{{core=\"{i}\"}} {n}");
        }
        let _ = writeln!(
            w,
            "# HELP rtc_store_batches_total Pipeline flushes to the store, and the commands they carried."
        );
        let _ = writeln!(w, "# TYPE rtc_store_batches_total counter");
        let _ = writeln!(
            w,
            "rtc_store_batches_total {}",
            self.sum(|c| &c.store_batches)
        );
        let _ = writeln!(w, "# TYPE rtc_store_batched_commands_total counter");
        let _ = writeln!(
            w,
            "rtc_store_batched_commands_total {}",
            self.sum(|c| &c.store_batched)
        );
        let _ = writeln!(
            w,
            "# HELP rtc_store_errors_total Store requests that failed, by kind (the message was not made durable)."
        );
        let _ = writeln!(w, "# TYPE rtc_store_errors_total counter");
        for (kind, name) in STORE_FAILURES {
            let n = self.sum(|c| &c.store_errors[kind as usize]);
            let _ = writeln!(w, "rtc_store_errors_total{{kind=\"{name}\"}} {n}");
        }
        render_histogram(
            w,
            "rtc_store_roundtrip_seconds",
            "Store request round trip: queued in the pipeline to reply (Redis only).",
            self.cores.iter().map(|c| &c.store_latency),
        );
        self.render_relay(w);
        out
    }

    /// The relay's series (all zero on a node without `--kafka`).
    fn render_relay(&self, w: &mut String) {
        let _ = writeln!(
            w,
            "# HELP rtc_socket_gap_fills_total Store reads that filled a gap in a connection's offsets (messages that met out of order)."
        );
        let _ = writeln!(w, "# TYPE rtc_socket_gap_fills_total counter");
        let _ = writeln!(
            w,
            "rtc_socket_gap_fills_total {}",
            self.sum(|c| &c.gap_fills)
        );
        let _ = writeln!(
            w,
            "# HELP rtc_relay_up 1 per core whose Kafka producer reaches the brokers."
        );
        let _ = writeln!(w, "# TYPE rtc_relay_up gauge");
        for (i, c) in self.cores.iter().enumerate() {
            let up = c.relay_up.load(Relaxed);
            let _ = writeln!(w, "rtc_relay_up{{core=\"{i}\"}} {up}");
        }
        let _ = writeln!(
            w,
            "# HELP rtc_relay_pending Relayed messages waiting for the broker's acknowledgement."
        );
        let _ = writeln!(w, "# TYPE rtc_relay_pending gauge");
        let _ = writeln!(w, "rtc_relay_pending {}", self.sum(|c| &c.relay_pending));
        let _ = writeln!(
            w,
            "# HELP rtc_relay_batch_size Messages per batch a core hands to its Kafka producer."
        );
        let _ = writeln!(w, "# TYPE rtc_relay_batch_size histogram");
        let mut cumulative = 0;
        for i in 0..RELAY_BATCH_BUCKETS {
            cumulative += self.sum(|c| &c.relay_batches[i]);
            let le = if i + 1 == RELAY_BATCH_BUCKETS {
                "+Inf".to_owned()
            } else {
                (1u64 << i).to_string()
            };
            let _ = writeln!(w, "rtc_relay_batch_size_bucket{{le=\"{le}\"}} {cumulative}");
        }
        let _ = writeln!(
            w,
            "rtc_relay_batch_size_sum {}",
            self.sum(|c| &c.relay_batched)
        );
        let _ = writeln!(w, "rtc_relay_batch_size_count {cumulative}");
        let _ = writeln!(
            w,
            "# HELP rtc_relay_errors_total Relayed messages the broker did not take in time (their senders got `unavailable`)."
        );
        let _ = writeln!(w, "# TYPE rtc_relay_errors_total counter");
        let _ = writeln!(
            w,
            "rtc_relay_errors_total {}",
            self.sum(|c| &c.relay_errors)
        );
        let _ = writeln!(
            w,
            "# HELP rtc_relay_received_total Messages this node read from the relay."
        );
        let _ = writeln!(w, "# TYPE rtc_relay_received_total counter");
        let _ = writeln!(
            w,
            "rtc_relay_received_total {}",
            self.sum(|c| &c.relay_received)
        );
        let _ = writeln!(
            w,
            "# HELP rtc_socket_rebalanced_total Connections sent to another node (reconnect with wsUrl, 1012) after a ring change."
        );
        let _ = writeln!(w, "# TYPE rtc_socket_rebalanced_total counter");
        let _ = writeln!(
            w,
            "rtc_socket_rebalanced_total {}",
            self.sum(|c| &c.rebalanced)
        );
        let _ = writeln!(
            w,
            "# HELP rtc_ingest_records_total Records read from the ingest topic, by outcome (delivered includes duplicates delivered once)."
        );
        let _ = writeln!(w, "# TYPE rtc_ingest_records_total counter");
        for (i, outcome) in ["delivered", "refused"].iter().enumerate() {
            let n = self.sum(|c| &c.ingest[i]);
            let _ = writeln!(w, "rtc_ingest_records_total{{outcome=\"{outcome}\"}} {n}");
        }
    }
}

/// Renders the merged per-core histograms (µs) as a Prometheus histogram.
fn render_histogram<'a>(
    w: &mut String,
    name: &str,
    help: &str,
    slots: impl Iterator<Item = &'a Mutex<Option<Histogram<u64>>>>,
) {
    let mut merged = latency_histogram();
    for slot in slots {
        if let Some(h) = slot.lock().expect("metrics lock poisoned").as_ref() {
            merged.add(h).expect("same bounds");
        }
    }
    let _ = writeln!(w, "# HELP {name} {help}");
    let _ = writeln!(w, "# TYPE {name} histogram");
    for le in BUCKETS {
        let n = merged.count_between(0, (le * 1e6) as u64);
        let _ = writeln!(w, "{name}_bucket{{le=\"{le}\"}} {n}");
    }
    let _ = writeln!(w, "{name}_bucket{{le=\"+Inf\"}} {}", merged.len());
    let _ = writeln!(
        w,
        "{name}_sum {}",
        merged.mean() * merged.len() as f64 / 1e6
    );
    let _ = writeln!(w, "{name}_count {}", merged.len());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_sums_cores_and_uses_contract_names() {
        let m = Metrics::new(2);
        m.cores[0].connection_opened();
        m.cores[1].connection_opened();
        m.cores[1].message(Path::Core);
        m.cores[0].drop(DropReason::BufferFull);
        m.cores[1].auth_failure(AuthReason::Expired);
        m.cores[0].auth_failure(AuthReason::Expired);
        let mut h = latency_histogram();
        h.record(300).unwrap();
        m.cores[1].publish_latency(&h);
        let text = m.render();
        assert!(text.contains("rtc_socket_active_connections 2\n"), "{text}");
        assert!(text.contains("rtc_socket_messages_total{path=\"core\"} 1\n"));
        assert!(text.contains("rtc_socket_drops_total{reason=\"buffer_full\"} 1\n"));
        assert!(text.contains("rtc_socket_latency_seconds_bucket{le=\"0.00025\"} 0\n"));
        assert!(text.contains("rtc_socket_latency_seconds_bucket{le=\"0.0005\"} 1\n"));
        assert!(text.contains("rtc_socket_latency_seconds_count 1\n"));
        assert!(text.contains("rtc_socket_auth_failures_total{reason=\"expired\"} 2\n"));
        assert!(text.contains("rtc_socket_auth_failures_total{reason=\"bad_signature\"} 0\n"));
    }

    #[test]
    fn connection_buffers_sum_signed_changes_per_core() {
        let m = Metrics::new(2);
        m.cores[0].add_connection_buffers(1000);
        m.cores[1].add_connection_buffers(300);
        m.cores[0].add_connection_buffers(-400);
        assert!(m
            .render()
            .contains("rtc_socket_connection_buffer_bytes 900\n"));
        m.cores[0].add_connection_buffers(-600);
        m.cores[1].add_connection_buffers(-300);
        assert!(m
            .render()
            .contains("rtc_socket_connection_buffer_bytes 0\n"));
    }
}
