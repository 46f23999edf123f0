//! The JSON report (`--report FILE`) and the human summary.
//!
//! The schema is documented field by field in docs/loadgen.md; scripts read
//! it, so fields are only ever added, never renamed. Every number is derived
//! from the merged [`Snapshot`] of all cores of all workers, so a report is
//! exact regardless of how many processes produced it.

pub mod summary;

pub use summary::summary;

use crate::stats::{Hist, Snapshot};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Percentiles of a latency histogram, in microseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    /// Values recorded.
    pub count: u64,
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Largest value (HDR precision: 3 significant digits).
    pub max: u64,
    /// Arithmetic mean.
    pub mean: f64,
}

impl Percentiles {
    /// Percentiles of `h` (all zero when absent or empty).
    pub fn of(h: Option<&Hist>) -> Self {
        match h {
            Some(h) if !h.is_empty() => Self {
                count: h.len(),
                p50: h.quantile(0.5),
                p90: h.quantile(0.9),
                p99: h.quantile(0.99),
                p999: h.quantile(0.999),
                max: h.0.max(),
                mean: (h.0.mean() * 10.0).round() / 10.0,
            },
            _ => Self::default(),
        }
    }
}

/// `connections.*`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Connections {
    /// Connections the plan opens.
    pub target: u64,
    /// Initial connections that completed (upgrade + welcome).
    pub established: u64,
    /// Initial connections that failed (causes under `errors`).
    pub failed: u64,
    /// Most connections open at once (sampled each second).
    pub peak_open: u64,
    /// Connections that ended without loadgen asking.
    pub dropped: u64,
    /// Users disconnected on purpose by storm waves.
    pub disconnects: u64,
    /// Successful reconnects.
    pub reconnects: u64,
    /// Failed reconnect attempts (each retried with backoff).
    pub reconnect_failed: u64,
}

/// `messages.*` (for `rooms`: deliveries, except `sent` = publishes).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Messages {
    /// Messages handed to the kernel.
    pub sent: u64,
    /// Deliveries expected for what was sent.
    pub expected: u64,
    /// Distinct messages received.
    pub received: u64,
    /// Sent, never received, never refused by the server.
    pub lost: u64,
    /// `direct`/`storm`: of `lost`, messages the server had acked (it
    /// promised they were stored: must be 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lost_acked: Option<u64>,
    /// `direct`/`storm`: of `lost`, messages never acked (a client would
    /// resend them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lost_unacked: Option<u64>,
    /// Extra arrivals of an already received message.
    pub duplicated: u64,
    /// First arrivals overtaken by a later message of their flow.
    pub reordered: u64,
    /// Server `ack`s received.
    pub acked: u64,
    /// Messages the server refused explicitly (`error` with their id).
    pub rejected: u64,
    /// Scheduled sends not made (sender offline or backlog full).
    pub skipped: u64,
}

/// `throughput.*`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Throughput {
    /// Distinct messages received per second of the measured phase.
    pub msgs_per_sec: f64,
    /// Messages sent per second of the measured phase.
    pub sent_per_sec: f64,
}

/// Memory figures (RSS sampled once a second; `*_per_connection_bytes` is
/// `(peak - baseline) / peak_open`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Memory {
    /// Sum over `--server-pid`s of each one's peak RSS.
    pub server_peak_bytes: Option<u64>,
    /// Sum of their RSS before loadgen connected.
    pub server_baseline_bytes: Option<u64>,
    /// Server memory per open connection.
    pub server_per_connection_bytes: Option<u64>,
    /// Peak RSS of all loadgen processes together.
    pub loadgen_peak_bytes: Option<u64>,
    /// Their RSS before connecting.
    pub loadgen_baseline_bytes: Option<u64>,
    /// loadgen memory per open connection.
    pub loadgen_per_connection_bytes: Option<u64>,
}

/// CPU seconds (user + system) used during the run, so a reader can tell
/// whether loadgen or the server was the bottleneck.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Cpu {
    /// All `--server-pid` processes together.
    pub server_seconds: Option<f64>,
    /// All loadgen processes together (coordinator or workers).
    pub loadgen_seconds: Option<f64>,
}

/// Serialized histograms (base64 of HDR V2 + deflate), for exact re-merging
/// and plotting.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Histograms {
    /// Message latency.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_us: Option<Hist>,
    /// Connect latency.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connect_latency_us: Option<Hist>,
    /// Storm recovery latency.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recovery_latency_us: Option<Hist>,
    /// Open-loop send lag.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub send_lag_us: Option<Hist>,
}

/// One worker's share of the totals (`per_worker[]`), so the merge can be
/// checked: every count in the report is the sum of these.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct WorkerTotals {
    /// Worker index.
    pub worker: usize,
    /// Initial connections established.
    pub established: u64,
    /// Initial connections failed.
    pub failed: u64,
    /// Messages sent.
    pub sent: u64,
    /// Distinct messages received.
    pub received: u64,
    /// Messages lost.
    pub lost: u64,
    /// Duplicate arrivals.
    pub duplicated: u64,
    /// Reordered arrivals.
    pub reordered: u64,
    /// Latency values recorded.
    pub latency_count: u64,
}

impl WorkerTotals {
    /// The totals of worker `worker` from its merged snapshot.
    pub fn of(worker: usize, s: &Snapshot) -> Self {
        let c = &s.counters;
        Self {
            worker,
            established: c.established,
            failed: c.failed,
            sent: c.sent,
            received: c.received,
            lost: c.lost,
            duplicated: c.duplicated,
            reordered: c.reordered,
            latency_count: s.latency.as_ref().map_or(0, Hist::len),
        }
    }
}

/// The whole report. Field docs are the schema (docs/loadgen.md).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Report format version (bumped only on incompatible changes).
    pub schema_version: u32,
    /// loadgen's crate version.
    pub loadgen_version: String,
    /// `connect`, `direct`, `rooms`, `echo` or `storm`.
    pub scenario: String,
    /// Scenario parameters as given on the command line.
    pub parameters: serde_json::Value,
    /// Target URLs.
    pub targets: Vec<String>,
    /// Run id (users are `lg<run_id>-<n>`).
    pub run_id: String,
    /// Worker processes.
    pub workers: usize,
    /// Cores (executors) across all workers.
    pub cores: usize,
    /// Wall-clock start, seconds since the Unix epoch.
    pub started_at_unix: u64,
    /// Length of the measured phase actually run, in seconds.
    pub duration_s: f64,
    /// True if Ctrl-C (or the safety deadline) cut the run short.
    pub interrupted: bool,
    /// Connection counts.
    pub connections: Connections,
    /// Message counts.
    pub messages: Messages,
    /// Rates over the measured phase.
    pub throughput: Throughput,
    /// End-to-end latency from the intended send time.
    pub latency_us: Percentiles,
    /// Connect latency (TCP connect start → welcome, or → 101 for plain).
    pub connect_latency_us: Percentiles,
    /// Storm: disconnect → restored welcome.
    pub recovery_latency_us: Percentiles,
    /// Open loop: actual send time minus intended send time. Large values
    /// mean loadgen itself could not keep the schedule.
    pub send_lag_us: Percentiles,
    /// Sum of the `--server-pid` processes' peak RSS (absent without pids).
    pub server_rss_bytes: Option<u64>,
    /// Peak RSS per `--server-pid`.
    pub server_rss_by_pid: BTreeMap<String, u64>,
    /// Memory figures on both sides.
    pub memory: Memory,
    /// CPU time on both sides.
    pub cpu: Cpu,
    /// Errors by cause.
    pub errors: BTreeMap<String, u64>,
    /// Each worker's counts (their sums are the totals above).
    pub per_worker: Vec<WorkerTotals>,
    /// The merged histograms.
    pub histograms: Histograms,
    /// `--events`: the users' moves, summed from the event log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub moves: Option<crate::events::MovesSummary>,
}

/// Current schema version.
pub const SCHEMA_VERSION: u32 = 1;

impl Report {
    /// Fills the measurement fields from the merged totals.
    pub fn set_measurements(&mut self, totals: &Snapshot, duration_s: f64, peak_open: u64) {
        let c = &totals.counters;
        self.duration_s = (duration_s * 1000.0).round() / 1000.0;
        self.connections.established = c.established;
        self.connections.failed = c.failed;
        self.connections.peak_open = peak_open;
        self.connections.dropped = c.dropped;
        self.connections.disconnects = c.disconnects;
        self.connections.reconnects = c.reconnects;
        self.connections.reconnect_failed = c.reconnect_failed;
        let acks_tracked = matches!(self.scenario.as_str(), "direct" | "storm");
        self.messages = Messages {
            sent: c.sent,
            expected: c.expected,
            received: c.received,
            lost: c.lost,
            lost_acked: acks_tracked.then_some(c.lost_acked),
            lost_unacked: acks_tracked.then_some(c.lost_unacked),
            duplicated: c.duplicated,
            reordered: c.reordered,
            acked: c.acked,
            rejected: c.rejected,
            skipped: c.skipped,
        };
        let per_sec = |v: u64| {
            if duration_s > 0.0 {
                (v as f64 / duration_s * 10.0).round() / 10.0
            } else {
                0.0
            }
        };
        self.throughput = Throughput {
            msgs_per_sec: per_sec(c.received),
            sent_per_sec: per_sec(c.sent),
        };
        self.latency_us = Percentiles::of(totals.latency.as_ref());
        self.connect_latency_us = Percentiles::of(totals.connect_latency.as_ref());
        self.recovery_latency_us = Percentiles::of(totals.recovery_latency.as_ref());
        self.send_lag_us = Percentiles::of(totals.send_lag.as_ref());
        self.errors = totals.errors.clone();
        self.histograms = Histograms {
            latency_us: totals.latency.clone(),
            connect_latency_us: totals.connect_latency.clone(),
            recovery_latency_us: totals.recovery_latency.clone(),
            send_lag_us: totals.send_lag.clone(),
        };
    }
}

/// `(peak - baseline) / connections`, when all are known and positive.
pub fn per_connection(peak: Option<u64>, baseline: Option<u64>, conns: u64) -> Option<u64> {
    let (p, b) = (peak?, baseline?);
    (conns > 0).then(|| p.saturating_sub(b) / conns)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Stats;

    #[test]
    fn report_has_the_issue_fields_and_round_trips() {
        let mut stats = Stats::default();
        stats.counters.sent = 100;
        stats.counters.received = 98;
        stats.counters.lost = 2;
        stats.counters.lost_acked = 0;
        stats.counters.lost_unacked = 2;
        stats.counters.established = 10;
        for v in 1..=100 {
            stats.latency.record(v * 10);
        }
        stats.connect_latency.record(500);
        stats.error("timeout");
        let totals = stats.take_delta();
        let mut r = Report {
            scenario: "direct".into(),
            ..Report::default()
        };
        r.connections.target = 10;
        r.set_measurements(&totals, 2.0, 10);
        let v: serde_json::Value = serde_json::to_value(&r).unwrap();
        for path in [
            "/scenario",
            "/duration_s",
            "/connections/target",
            "/connections/established",
            "/connections/failed",
            "/messages/sent",
            "/messages/received",
            "/messages/lost",
            "/messages/lost_acked",
            "/messages/lost_unacked",
            "/messages/duplicated",
            "/messages/reordered",
            "/throughput/msgs_per_sec",
            "/latency_us/p50",
            "/latency_us/p90",
            "/latency_us/p99",
            "/latency_us/p999",
            "/latency_us/max",
            "/connect_latency_us/p50",
            "/connect_latency_us/p99",
            "/connect_latency_us/max",
            "/server_rss_bytes",
            "/errors/timeout",
        ] {
            assert!(v.pointer(path).is_some(), "missing {path}");
        }
        assert_eq!(r.messages.lost_acked, Some(0));
        assert_eq!(r.messages.lost_unacked, Some(2));
        assert_eq!(r.throughput.msgs_per_sec, 49.0);
        assert_eq!(r.latency_us.p50, 500);
        assert_eq!(r.latency_us.max, 1000);
        let back: Report = serde_json::from_value(v).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn per_connection_memory_subtracts_the_baseline() {
        assert_eq!(per_connection(Some(1_100), Some(100), 10), Some(100));
        assert_eq!(per_connection(Some(1_100), None, 10), None);
        assert_eq!(per_connection(Some(1_100), Some(100), 0), None);
    }
}
