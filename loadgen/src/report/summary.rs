//! The human summary printed at the end of a run.

use super::{Percentiles, Report};
use std::fmt::Write as _;

/// Microseconds as a short human string (`850 µs`, `12.3 ms`, `1.20 s`).
pub fn human_us(us: u64) -> String {
    match us {
        0..=999 => format!("{us} µs"),
        1_000..=999_999 => format!("{:.2} ms", us as f64 / 1e3),
        _ => format!("{:.2} s", us as f64 / 1e6),
    }
}

/// Bytes as MiB/KiB.
pub fn human_bytes(b: u64) -> String {
    if b >= 1 << 20 {
        format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64)
    } else {
        format!("{:.1} KiB", b as f64 / 1024.0)
    }
}

fn percentile_line(p: &Percentiles) -> String {
    format!(
        "p50 {}  p90 {}  p99 {}  p99.9 {}  max {}  (n={})",
        human_us(p.p50),
        human_us(p.p90),
        human_us(p.p99),
        human_us(p.p999),
        human_us(p.max),
        p.count
    )
}

/// Renders the report for a terminal.
pub fn summary(r: &Report) -> String {
    let mut s = String::new();
    let c = &r.connections;
    let m = &r.messages;
    // Writing to a String cannot fail.
    let _ = writeln!(
        s,
        "loadgen {} · {} · {} worker(s) × {} core(s) · measured {:.1}s{}",
        r.loadgen_version,
        r.scenario,
        r.workers,
        r.cores / r.workers.max(1),
        r.duration_s,
        if r.interrupted {
            " · INTERRUPTED (partial)"
        } else {
            ""
        }
    );
    match r.parameters.get("control").and_then(|v| v.as_str()) {
        Some(ctl) => {
            let _ = writeln!(s, "control      {ctl}");
        }
        None => {
            let _ = writeln!(s, "targets      {}", r.targets.join(" "));
        }
    }
    let _ = writeln!(
        s,
        "connections  {}/{} established, {} failed, peak open {}, dropped {}",
        c.established, c.target, c.failed, c.peak_open, c.dropped
    );
    if c.disconnects + c.reconnects + c.reconnect_failed > 0 {
        let _ = writeln!(
            s,
            "reconnects   {} disconnected on purpose, {} reconnected, {} reconnect attempts failed",
            c.disconnects, c.reconnects, c.reconnect_failed
        );
    }
    if let Some(m) = &r.moves {
        let _ = writeln!(
            s,
            "moves        {} ({} users), {} resumed; {} control-plane asks, {} redirects followed; causes {:?}",
            m.total, m.users, m.resumed, m.ctl_asks, m.redirects, m.by_cause
        );
        if m.time_to_resume_ms.count > 0 {
            let t = &m.time_to_resume_ms;
            let _ = writeln!(
                s,
                "move time    p50 {} ms  p99 {} ms  max {} ms  (disconnect → welcome, n={})",
                t.p50, t.p99, t.max, t.count
            );
        }
    }
    if r.connect_latency_us.count > 0 {
        let _ = writeln!(s, "connect      {}", percentile_line(&r.connect_latency_us));
    }
    if m.sent + m.received > 0 {
        let split = match (m.lost_acked, m.lost_unacked) {
            (Some(a), Some(u)) => format!(" (lost_acked {a}, lost_unacked {u})"),
            _ => String::new(),
        };
        let _ = writeln!(
            s,
            "messages     sent {}  received {}/{}  lost {}{}  duplicated {}  reordered {}  rejected {}  skipped {}",
            m.sent, m.received, m.expected, m.lost, split, m.duplicated, m.reordered, m.rejected, m.skipped
        );
        let _ = writeln!(
            s,
            "throughput   {:.1} msg/s received, {:.1} msg/s sent",
            r.throughput.msgs_per_sec, r.throughput.sent_per_sec
        );
        let _ = writeln!(s, "latency      {}", percentile_line(&r.latency_us));
        if r.send_lag_us.count > 0 {
            let _ = writeln!(s, "send lag     {}", percentile_line(&r.send_lag_us));
        }
    }
    if r.recovery_latency_us.count > 0 {
        let _ = writeln!(
            s,
            "recovery     {}",
            percentile_line(&r.recovery_latency_us)
        );
    }
    let mem = &r.memory;
    if let Some(peak) = mem.server_peak_bytes {
        let _ = writeln!(
            s,
            "server RSS   peak {}{}",
            human_bytes(peak),
            mem.server_per_connection_bytes
                .map(|b| format!(", {b} B per connection"))
                .unwrap_or_default()
        );
    }
    if let Some(peak) = mem.loadgen_peak_bytes {
        let _ = writeln!(
            s,
            "loadgen RSS  peak {}{}",
            human_bytes(peak),
            mem.loadgen_per_connection_bytes
                .map(|b| format!(", {b} B per connection"))
                .unwrap_or_default()
        );
    }
    if let (Some(srv), Some(lg)) = (r.cpu.server_seconds, r.cpu.loadgen_seconds) {
        let _ = writeln!(s, "cpu          server {srv:.1} s, loadgen {lg:.1} s");
    } else if let Some(lg) = r.cpu.loadgen_seconds {
        let _ = writeln!(s, "cpu          loadgen {lg:.1} s");
    }
    if r.errors.is_empty() {
        let _ = writeln!(s, "errors       none");
    } else {
        let list: Vec<String> = r.errors.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let _ = writeln!(s, "errors       {}", list.join("  "));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_are_readable() {
        assert_eq!(human_us(850), "850 µs");
        assert_eq!(human_us(12_345), "12.35 ms");
        assert_eq!(human_us(1_200_000), "1.20 s");
        assert_eq!(human_bytes(2048), "2.0 KiB");
    }

    #[test]
    fn summary_mentions_loss_and_errors() {
        let mut r = Report {
            scenario: "direct".into(),
            workers: 1,
            cores: 2,
            ..Report::default()
        };
        r.messages.sent = 10;
        r.messages.lost = 1;
        r.errors.insert("timeout".into(), 3);
        let text = summary(&r);
        assert!(text.contains("lost 1"));
        assert!(text.contains("timeout=3"));
        assert!(!text.contains("lost_acked"));
        r.messages.lost_acked = Some(0);
        r.messages.lost_unacked = Some(1);
        assert!(summary(&r).contains("lost 1 (lost_acked 0, lost_unacked 1)"));
    }
}
