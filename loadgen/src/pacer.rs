//! Open-loop pacing: the intended send times of a fixed-rate schedule.
//!
//! Message `i` of a core is *intended* for `start + i / rate`, whatever
//! happened to message `i - 1`. Latency is measured from that intended time,
//! not from when the message finally left, so a stall (in the server, the
//! kernel, or loadgen itself) shows up in the percentiles instead of silently
//! thinning the load: the schedule is free of coordinated omission.
//!
//! Invariant: intended times are computed from `i` directly (not by adding a
//! rounded period), so the schedule does not drift over long runs.

/// A fixed-rate schedule of intended send times in `[start, end)`.
#[derive(Clone, Debug)]
pub struct Pacer {
    start_ns: u64,
    end_ns: u64,
    ns_per_msg: f64,
    issued: u64,
}

impl Pacer {
    /// A schedule of `rate` messages per second from `start_ns` until
    /// `end_ns` (monotonic nanoseconds). A rate of 0 or less yields nothing.
    pub fn new(start_ns: u64, end_ns: u64, rate: f64) -> Self {
        let ns_per_msg = if rate > 0.0 {
            1e9 / rate
        } else {
            f64::INFINITY
        };
        Self {
            start_ns,
            end_ns,
            ns_per_msg,
            issued: 0,
        }
    }

    /// Intended time of the next message, or `None` once the schedule is over.
    pub fn next_due(&self) -> Option<u64> {
        let offset = self.issued as f64 * self.ns_per_msg;
        if !offset.is_finite() {
            return None;
        }
        let t = self.start_ns.saturating_add(offset as u64);
        (t < self.end_ns).then_some(t)
    }

    /// Takes the next intended time if it is due at `now_ns`.
    pub fn pop_due(&mut self, now_ns: u64) -> Option<u64> {
        let t = self.next_due()?;
        if t <= now_ns {
            self.issued += 1;
            Some(t)
        } else {
            None
        }
    }

    /// Messages issued so far.
    pub fn issued(&self) -> u64 {
        self.issued
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issues_rate_times_duration_messages_at_exact_times() {
        // 1000 msg/s for 1 s.
        let mut p = Pacer::new(1_000, 1_000 + 1_000_000_000, 1000.0);
        let mut times = Vec::new();
        while let Some(t) = p.pop_due(u64::MAX) {
            times.push(t);
        }
        assert_eq!(times.len(), 1000);
        assert_eq!(times[0], 1_000);
        assert_eq!(times[1], 1_000 + 1_000_000);
        assert_eq!(times[999], 1_000 + 999_000_000);
    }

    #[test]
    fn nothing_is_due_before_its_time() {
        let mut p = Pacer::new(0, 10_000_000_000, 10.0);
        assert_eq!(p.pop_due(0), Some(0));
        assert_eq!(p.pop_due(99_999_999), None);
        assert_eq!(p.pop_due(100_000_000), Some(100_000_000));
        assert_eq!(p.issued(), 2);
    }

    #[test]
    fn a_late_caller_gets_the_backlog_with_original_times() {
        // The catch-up keeps the intended times: that is what makes the
        // latency coordinated-omission free.
        let mut p = Pacer::new(0, u64::MAX, 1000.0);
        let mut due = Vec::new();
        while let Some(t) = p.pop_due(5_000_000) {
            due.push(t);
        }
        assert_eq!(
            due,
            vec![0, 1_000_000, 2_000_000, 3_000_000, 4_000_000, 5_000_000]
        );
    }

    #[test]
    fn zero_rate_issues_nothing() {
        let mut p = Pacer::new(0, u64::MAX, 0.0);
        assert_eq!(p.pop_due(u64::MAX), None);
    }

    #[test]
    fn fractional_rates_do_not_drift() {
        let mut p = Pacer::new(0, 3_000_000_000, 333.333_333_333);
        let mut n = 0;
        while p.pop_due(u64::MAX).is_some() {
            n += 1;
        }
        assert_eq!(n, 1000);
    }
}
