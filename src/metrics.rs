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
}

const REJECTIONS: [(Rejection, &str); 3] = [
    (Rejection::Rate, "rate"),
    (Rejection::Capacity, "capacity"),
    (Rejection::Draining, "draining"),
];

/// The counters of one core. Padded so two cores never share a cache line.
#[repr(align(128))]
#[derive(Default)]
pub struct CoreMetrics {
    active_connections: AtomicU64,
    messages: [AtomicU64; 2],
    drops: [AtomicU64; 4],
    rejected: [AtomicU64; 3],
    reconnects: AtomicU64,
    queued: AtomicU64,
    latency: Mutex<Option<Histogram<u64>>>,
}

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

    /// A client resumed with a valid token.
    pub fn reconnect(&self) {
        self.reconnects.fetch_add(1, Relaxed);
    }

    /// Sets the number of messages queued on this core's connections.
    pub fn set_queued(&self, n: u64) {
        self.queued.store(n, Relaxed);
    }

    /// Replaces this core's latency snapshot (called once a second).
    pub fn publish_latency(&self, snapshot: &Histogram<u64>) {
        let mut slot = self.latency.lock().expect("metrics lock poisoned");
        match slot.as_mut() {
            Some(h) => {
                h.reset();
                h.add(snapshot).expect("same bounds");
            }
            None => *slot = Some(snapshot.clone()),
        }
    }
}

/// A new latency histogram in microseconds, 1 µs to 60 s, 3 significant digits.
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

    /// Connections open on the node.
    pub fn active_connections(&self) -> u64 {
        self.sum(|c| &c.active_connections)
    }

    /// Messages queued on the node's connections.
    pub fn queued(&self) -> u64 {
        self.sum(|c| &c.queued)
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
            "# HELP rtc_socket_messages_total Messages routed, by path."
        );
        let _ = writeln!(w, "# TYPE rtc_socket_messages_total counter");
        for (i, path) in ["local", "core"].iter().enumerate() {
            let n = self.sum(|c| &c.messages[i]);
            let _ = writeln!(w, "rtc_socket_messages_total{{path=\"{path}\"}} {n}");
        }
        // No relay in a standalone node: the series exists and stays at 0.
        let _ = writeln!(w, "rtc_socket_messages_total{{path=\"relay\"}} 0");

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

        let mut merged = latency_histogram();
        for core in &self.cores {
            if let Some(h) = core.latency.lock().expect("metrics lock poisoned").as_ref() {
                merged.add(h).expect("same bounds");
            }
        }
        let _ = writeln!(
            w,
            "# HELP rtc_socket_latency_seconds In-node delivery latency: frame received to frame written to the recipient's socket."
        );
        let _ = writeln!(w, "# TYPE rtc_socket_latency_seconds histogram");
        for le in BUCKETS {
            let n = merged.count_between(0, (le * 1e6) as u64);
            let _ = writeln!(w, "rtc_socket_latency_seconds_bucket{{le=\"{le}\"}} {n}");
        }
        let _ = writeln!(
            w,
            "rtc_socket_latency_seconds_bucket{{le=\"+Inf\"}} {}",
            merged.len()
        );
        let _ = writeln!(
            w,
            "rtc_socket_latency_seconds_sum {}",
            merged.mean() * merged.len() as f64 / 1e6
        );
        let _ = writeln!(w, "rtc_socket_latency_seconds_count {}", merged.len());
        out
    }
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
    }
}
