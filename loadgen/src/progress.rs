//! The progress line printed to stderr once a second.

use crate::report::summary::human_us;
use crate::stats::Snapshot;

/// Which phase the run is in, as the coordinator sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Opening connections.
    Setup,
    /// The measured phase.
    Measure,
    /// Waiting for messages in flight, closing.
    Drain,
}

impl Phase {
    fn name(self) -> &'static str {
        match self {
            Self::Setup => "setup",
            Self::Measure => "measure",
            Self::Drain => "drain",
        }
    }
}

/// One progress line: connections, the latest per-second send and receive
/// rates, p99 so far and the error count.
pub fn line(
    elapsed_s: f64,
    phase: Phase,
    target_conns: u64,
    totals: &Snapshot,
    sent_per_s: f64,
    recv_per_s: f64,
) -> String {
    let c = &totals.counters;
    let p99 = totals
        .latency
        .as_ref()
        .map(|h| human_us(h.quantile(0.99)))
        .unwrap_or_else(|| "-".into());
    format!(
        "[{elapsed_s:6.1}s] {:<7} conns {}/{} open {} failed {} | sent {:.0}/s recv {:.0}/s | p99 {p99} | errors {}",
        phase.name(),
        c.established,
        target_conns,
        c.open(),
        c.failed,
        sent_per_s,
        recv_per_s,
        totals.error_total(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_shows_connections_and_rates() {
        let mut totals = Snapshot::default();
        totals.counters.established = 10;
        let l = line(3.0, Phase::Measure, 10, &totals, 1000.0, 995.0);
        assert!(l.contains("sent 1000/s"), "{l}");
        assert!(l.contains("recv 995/s"), "{l}");
        assert!(l.contains("conns 10/10"), "{l}");
    }
}
