//! Measurements: counters, error causes and latency histograms.
//!
//! Each core owns one [`Stats`] (plain single-threaded data, touched only by
//! that core). Once a second the core takes a [`Snapshot`] *delta* of it and
//! ships it to the coordinator, which sums deltas into the run's totals; a
//! worker process ships the same snapshots as JSON lines. Because snapshots
//! are deltas of monotonic counters and HDR histograms add exactly, the merged
//! totals are the same numbers a single process would have measured, and the
//! coordinator always holds a complete picture up to the last second (that is
//! what a Ctrl-C report prints).
//!
//! Histograms travel as HDR V2 + deflate, base64-encoded: the standard
//! HdrHistogram interchange format, so they can also be inspected with other
//! HdrHistogram tools.

use base64::{engine::general_purpose::STANDARD, Engine};
use hdrhistogram::serialization::{Deserializer, Serializer, V2DeflateSerializer};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Highest latency a histogram tracks: one hour, in microseconds.
const MAX_US: u64 = 3_600_000_000;

/// A latency histogram in microseconds (1 µs .. 1 h, 3 significant digits).
#[derive(Clone, Debug, PartialEq)]
pub struct Hist(pub Histogram<u64>);

impl Default for Hist {
    fn default() -> Self {
        Self(Histogram::new_with_bounds(1, MAX_US, 3).expect("static bounds are valid"))
    }
}

impl Hist {
    /// Records one value, clamped into the tracked range.
    pub fn record(&mut self, us: u64) {
        self.0.saturating_record(us.clamp(1, MAX_US));
    }

    /// Adds every value of `other`.
    pub fn merge(&mut self, other: &Hist) {
        // Same bounds everywhere, so `add` cannot fail; saturate just in case
        // a histogram from a future version had wider bounds.
        if self.0.add(&other.0).is_err() {
            for v in other.0.iter_recorded() {
                self.0.saturating_record_n(
                    v.value_iterated_to().clamp(1, MAX_US),
                    v.count_at_value(),
                );
            }
        }
    }

    /// Number of recorded values.
    pub fn len(&self) -> u64 {
        self.0.len()
    }

    /// True if nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The value at `q` (0..=1), or 0 for an empty histogram.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.0.is_empty() {
            0
        } else {
            self.0.value_at_quantile(q)
        }
    }

    /// Encodes as base64(HDR V2 deflate).
    pub fn encode(&self) -> String {
        let mut buf = Vec::new();
        V2DeflateSerializer::new()
            .serialize(&self.0, &mut buf)
            .expect("serializing into a Vec cannot fail");
        STANDARD.encode(buf)
    }

    /// Decodes what [`Hist::encode`] produced.
    pub fn decode(s: &str) -> Result<Self, String> {
        let bytes = STANDARD.decode(s).map_err(|e| e.to_string())?;
        let h: Histogram<u64> = Deserializer::new()
            .deserialize(&mut bytes.as_slice())
            .map_err(|e| format!("{e:?}"))?;
        let mut out = Hist::default();
        out.merge(&Hist(h));
        Ok(out)
    }
}

impl Serialize for Hist {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.encode())
    }
}

impl<'de> Deserialize<'de> for Hist {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Hist::decode(&s).map_err(serde::de::Error::custom)
    }
}

/// Monotonic event counters. In a [`Snapshot`] they are deltas.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Connection attempts started (initial connects and reconnects).
    pub attempted: u64,
    /// Connections that completed the upgrade (and welcome, for protocol v1).
    pub established: u64,
    /// Initial attempts that failed (see the error causes).
    pub failed: u64,
    /// Connections that ended without loadgen asking for it.
    pub dropped: u64,
    /// Connections loadgen closed itself.
    pub closed: u64,
    /// Users disconnected on purpose by a storm wave (also counted in
    /// `closed`).
    pub disconnects: u64,
    /// Reconnects that restored a user's session (storm waves, drops).
    pub reconnects: u64,
    /// Reconnect attempts that failed (retried with backoff).
    pub reconnect_failed: u64,
    /// Messages handed to the kernel.
    pub sent: u64,
    /// Distinct messages received (first arrival of each).
    pub received: u64,
    /// Arrivals of a message already received.
    pub duplicated: u64,
    /// First arrivals overtaken by a later message of the same flow.
    pub reordered: u64,
    /// `ack` envelopes received.
    pub acked: u64,
    /// Messages the server refused with an `error` naming their id.
    pub rejected: u64,
    /// Scheduled sends skipped: the sender was offline or its backlog full.
    pub skipped: u64,
    /// Sent, never received, never rejected (only in the final snapshot).
    pub lost: u64,
    /// Of `lost`, messages the server had acked (`direct`/`storm`; final
    /// snapshot only).
    #[serde(default)]
    pub lost_acked: u64,
    /// Of `lost`, messages never acked (`direct`/`storm`; final snapshot
    /// only).
    #[serde(default)]
    pub lost_unacked: u64,
    /// Deliveries the scenario expected (sent × recipients per message).
    pub expected: u64,
}

impl Counters {
    /// Adds `o` field by field.
    pub fn add(&mut self, o: &Counters) {
        self.attempted += o.attempted;
        self.established += o.established;
        self.failed += o.failed;
        self.dropped += o.dropped;
        self.closed += o.closed;
        self.disconnects += o.disconnects;
        self.reconnects += o.reconnects;
        self.reconnect_failed += o.reconnect_failed;
        self.sent += o.sent;
        self.received += o.received;
        self.duplicated += o.duplicated;
        self.reordered += o.reordered;
        self.acked += o.acked;
        self.rejected += o.rejected;
        self.skipped += o.skipped;
        self.lost += o.lost;
        self.lost_acked += o.lost_acked;
        self.lost_unacked += o.lost_unacked;
        self.expected += o.expected;
    }

    /// Connections currently open according to these (total) counters.
    pub fn open(&self) -> u64 {
        (self.established + self.reconnects).saturating_sub(self.dropped + self.closed)
    }
}

/// A delta of one core's (or a merge of many cores') measurements.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Counter deltas.
    pub counters: Counters,
    /// Error counts by cause (`refused`, `timeout`, `http_503`, ...).
    #[serde(default)]
    pub errors: BTreeMap<String, u64>,
    /// End-to-end message latency from the intended send time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency: Option<Hist>,
    /// Connect latency: TCP connect start to upgrade (and welcome) done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_latency: Option<Hist>,
    /// Storm: from a user's disconnect to its restored welcome.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery_latency: Option<Hist>,
    /// Open loop: how late sends left versus their intended time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send_lag: Option<Hist>,
}

fn merge_opt(into: &mut Option<Hist>, from: &Option<Hist>) {
    if let Some(f) = from {
        into.get_or_insert_with(Hist::default).merge(f);
    }
}

impl Snapshot {
    /// Adds `o` into `self`: counters and errors sum, histograms add.
    pub fn merge(&mut self, o: &Snapshot) {
        self.counters.add(&o.counters);
        for (k, v) in &o.errors {
            *self.errors.entry(k.clone()).or_default() += v;
        }
        merge_opt(&mut self.latency, &o.latency);
        merge_opt(&mut self.connect_latency, &o.connect_latency);
        merge_opt(&mut self.recovery_latency, &o.recovery_latency);
        merge_opt(&mut self.send_lag, &o.send_lag);
    }

    /// Sum of all error counts.
    pub fn error_total(&self) -> u64 {
        self.errors.values().sum()
    }
}

/// One core's live measurements (owned by that core only).
#[derive(Debug, Default)]
pub struct Stats {
    /// Counters since the last [`Stats::take_delta`].
    pub counters: Counters,
    errors: BTreeMap<String, u64>,
    /// Message latency since the last delta.
    pub latency: Hist,
    /// Connect latency since the last delta.
    pub connect_latency: Hist,
    /// Storm recovery latency since the last delta.
    pub recovery_latency: Hist,
    /// Open-loop send lag since the last delta.
    pub send_lag: Hist,
}

impl Stats {
    /// Counts one error of `cause`.
    pub fn error(&mut self, cause: &str) {
        match self.errors.get_mut(cause) {
            Some(n) => *n += 1,
            None => {
                self.errors.insert(cause.to_string(), 1);
            }
        }
    }

    /// Everything measured since the previous call, resetting the deltas.
    pub fn take_delta(&mut self) -> Snapshot {
        let take = |h: &mut Hist| {
            if h.is_empty() {
                None
            } else {
                let out = h.clone();
                h.0.reset();
                Some(out)
            }
        };
        Snapshot {
            counters: std::mem::take(&mut self.counters),
            errors: std::mem::take(&mut self.errors),
            latency: take(&mut self.latency),
            connect_latency: take(&mut self.connect_latency),
            recovery_latency: take(&mut self.recovery_latency),
            send_lag: take(&mut self.send_lag),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_survives_the_wire_format() {
        let mut h = Hist::default();
        for v in [1, 5, 100, 1_000, 12_345, 3_600_000_000, u64::MAX] {
            h.record(v);
        }
        let back = Hist::decode(&h.encode()).unwrap();
        assert_eq!(back, h);
        assert_eq!(back.len(), 7);
    }

    #[test]
    fn merged_deltas_equal_one_process_measuring_everything() {
        // Three "cores" each record part of the values, in two deltas each.
        let mut single = Stats::default();
        let mut cores: Vec<Stats> = (0..3).map(|_| Stats::default()).collect();
        let mut deltas = Vec::new();
        for round in 0..2u64 {
            for (i, core) in cores.iter_mut().enumerate() {
                for k in 0..100u64 {
                    let v = 1 + (k * 37 + i as u64 * 1000 + round * 7) % 50_000;
                    core.latency.record(v);
                    single.latency.record(v);
                }
                core.counters.sent += 100;
                core.counters.received += 99;
                core.error("timeout");
                single.counters.sent += 100;
                single.counters.received += 99;
                single.error("timeout");
                deltas.push(core.take_delta());
            }
        }
        // Ship every delta through JSON, as workers do.
        let mut total = Snapshot::default();
        for d in &deltas {
            let line = serde_json::to_string(d).unwrap();
            total.merge(&serde_json::from_str(&line).unwrap());
        }
        let want = single.take_delta();
        assert_eq!(total.counters, want.counters);
        assert_eq!(total.errors, want.errors);
        assert_eq!(total.latency, want.latency);
        assert_eq!(total.errors["timeout"], 6);
        for q in [0.5, 0.9, 0.99, 0.999, 1.0] {
            assert_eq!(
                total.latency.as_ref().unwrap().quantile(q),
                want.latency.as_ref().unwrap().quantile(q)
            );
        }
    }

    #[test]
    fn take_delta_resets_everything() {
        let mut s = Stats::default();
        s.counters.sent = 5;
        s.latency.record(10);
        s.error("refused");
        let d = s.take_delta();
        assert_eq!(d.counters.sent, 5);
        let again = s.take_delta();
        assert_eq!(again, Snapshot::default());
    }

    #[test]
    fn open_connections_follow_the_counters() {
        let c = Counters {
            established: 10,
            reconnects: 3,
            dropped: 1,
            closed: 2,
            disconnects: 2,
            ..Counters::default()
        };
        assert_eq!(c.open(), 10);
    }
}
