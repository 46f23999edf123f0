//! Exact delivery accounting for one flow (one sender → one receiver).
//!
//! Every message loadgen sends carries a per-flow sequence number starting at
//! 0 (and a message id derived from it). The receiving side keeps a
//! [`FlowRx`] per flow and classifies each arrival:
//!
//! - **duplicate**: this sequence number was already settled (received, or
//!   explicitly rejected by the server);
//! - **reordered**: a new sequence number lower than the highest one already
//!   received on the flow (it was overtaken);
//! - otherwise **in order**.
//!
//! At the end of a run, `lost = sent - settled`, where `settled` counts the
//! distinct sequence numbers received or rejected. The server's explicit
//! refusals (`error` envelopes naming the message id, e.g. `rate_limited`)
//! are settled without being received, so they are reported as `rejected`
//! and never as lost: "0 lost" means every message the server accepted was
//! delivered.
//!
//! Invariants: every sequence number `< next` is settled; `ahead` holds the
//! settled numbers `> next` as sorted, disjoint, non-adjacent half-open
//! ranges, all starting above `next`. Memory is O(number of gaps), so a flow
//! that is in order costs a few words no matter how many messages it carried.

use std::ops::Range;

/// How one arrival was classified.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arrival {
    /// First arrival of this sequence number, not overtaken by a later one.
    InOrder,
    /// First arrival, but a higher sequence number arrived before it.
    Reordered,
    /// Already received or rejected: counted once more as a duplicate.
    Duplicate,
}

/// Receive-side state of one flow. See the module docs for the invariants.
#[derive(Clone, Debug, Default)]
pub struct FlowRx {
    next: u64,
    /// One more than the highest sequence number *received* (0 = none yet).
    max_seen_plus_one: u64,
    ahead: Vec<Range<u64>>,
    received: u64,
    rejected: u64,
}

impl FlowRx {
    /// A flow that has seen nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records the arrival of `seq` and says how it arrived.
    pub fn on_receive(&mut self, seq: u64) -> Arrival {
        if !self.settle(seq) {
            return Arrival::Duplicate;
        }
        self.received += 1;
        let overtaken = seq + 1 < self.max_seen_plus_one;
        self.max_seen_plus_one = self.max_seen_plus_one.max(seq + 1);
        if overtaken {
            Arrival::Reordered
        } else {
            Arrival::InOrder
        }
    }

    /// Records that the server refused `seq` (it will never be delivered and
    /// must not be counted as lost). Returns false if `seq` was already
    /// settled.
    pub fn on_reject(&mut self, seq: u64) -> bool {
        let fresh = self.settle(seq);
        if fresh {
            self.rejected += 1;
        }
        fresh
    }

    /// Distinct sequence numbers received.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Distinct sequence numbers rejected by the server.
    pub fn rejected(&self) -> u64 {
        self.rejected
    }

    /// Messages of the first `sent` sequence numbers that were neither
    /// received nor rejected.
    pub fn lost(&self, sent: u64) -> u64 {
        let mut settled_below = self.next.min(sent);
        for r in &self.ahead {
            if r.start >= sent {
                break;
            }
            settled_below += r.end.min(sent) - r.start;
        }
        sent - settled_below
    }

    /// True if every sequence number below `sent` is settled.
    pub fn complete(&self, sent: u64) -> bool {
        self.next >= sent
    }

    /// Marks `seq` settled; false if it already was.
    fn settle(&mut self, seq: u64) -> bool {
        if seq < self.next {
            return false;
        }
        if seq == self.next {
            self.next += 1;
            // Absorb a range that now touches `next`.
            if let Some(first) = self.ahead.first() {
                if first.start == self.next {
                    self.next = first.end;
                    self.ahead.remove(0);
                }
            }
            return true;
        }
        // seq > next: insert into the sorted range list. `i` is the first
        // range ending at or after `seq`; the one before it ends before `seq`
        // and so can neither contain nor touch it.
        let i = self.ahead.partition_point(|r| r.end < seq);
        match self.ahead.get(i).cloned() {
            Some(r) if r.contains(&seq) => return false,
            Some(r) if r.end == seq => {
                self.ahead[i].end = seq + 1;
                if self.ahead.get(i + 1).is_some_and(|n| n.start == seq + 1) {
                    self.ahead[i].end = self.ahead[i + 1].end;
                    self.ahead.remove(i + 1);
                }
            }
            Some(r) if r.start == seq + 1 => self.ahead[i].start = seq,
            _ => self.ahead.insert(i, seq..seq + 1),
        }
        true
    }
}

/// Totals over many flows, reported as `messages.*`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowTotals {
    /// Messages the flows' senders handed to the kernel.
    pub sent: u64,
    /// Distinct messages received.
    pub received: u64,
    /// Messages the server refused explicitly.
    pub rejected: u64,
    /// Sent, never received, never rejected.
    pub lost: u64,
}

impl FlowTotals {
    /// Adds one flow's final state given how many messages its sender sent.
    pub fn add(&mut self, rx: &FlowRx, sent: u64) {
        self.sent += sent;
        self.received += rx.received();
        self.rejected += rx.rejected();
        self.lost += rx.lost(sent);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(rx: &mut FlowRx, seqs: &[u64]) -> Vec<Arrival> {
        seqs.iter().map(|&s| rx.on_receive(s)).collect()
    }

    #[test]
    fn in_order_flow_has_nothing_lost_and_no_ranges() {
        let mut rx = FlowRx::new();
        for s in 0..1000 {
            assert_eq!(rx.on_receive(s), Arrival::InOrder);
        }
        assert_eq!(rx.lost(1000), 0);
        assert!(rx.complete(1000));
        assert!(rx.ahead.is_empty());
    }

    #[test]
    fn injected_lost_duplicated_and_reordered_are_each_counted_once() {
        // Sender sends 0..10. Network: 3 is lost, 5 is duplicated, 8 and 7
        // swap places.
        let mut rx = FlowRx::new();
        let got = feed(&mut rx, &[0, 1, 2, 4, 5, 5, 6, 8, 7, 9]);
        let dup = got.iter().filter(|a| **a == Arrival::Duplicate).count();
        let reo = got.iter().filter(|a| **a == Arrival::Reordered).count();
        assert_eq!(dup, 1, "{got:?}");
        assert_eq!(reo, 1, "{got:?}");
        assert_eq!(got[8], Arrival::Reordered); // 7 arrived after 8
        assert_eq!(got[5], Arrival::Duplicate); // second 5
        assert_eq!(rx.received(), 9);
        assert_eq!(rx.lost(10), 1);
        let mut totals = FlowTotals::default();
        totals.add(&rx, 10);
        assert_eq!(
            totals,
            FlowTotals {
                sent: 10,
                received: 9,
                rejected: 0,
                lost: 1
            }
        );
    }

    #[test]
    fn late_arrival_fills_the_gap_and_counts_as_reordered() {
        let mut rx = FlowRx::new();
        feed(&mut rx, &[0, 2, 3, 4]);
        assert_eq!(rx.lost(5), 1);
        assert_eq!(rx.on_receive(1), Arrival::Reordered);
        assert_eq!(rx.lost(5), 0);
        assert!(rx.complete(5));
        assert!(rx.ahead.is_empty());
    }

    #[test]
    fn duplicate_above_a_gap_is_detected() {
        let mut rx = FlowRx::new();
        feed(&mut rx, &[0, 5, 6]);
        assert_eq!(rx.on_receive(6), Arrival::Duplicate);
        assert_eq!(rx.on_receive(5), Arrival::Duplicate);
        assert_eq!(rx.lost(7), 4);
    }

    #[test]
    fn ranges_merge_from_both_sides() {
        let mut rx = FlowRx::new();
        feed(&mut rx, &[0, 2, 4]);
        assert_eq!(rx.ahead, vec![2..3, 4..5]);
        rx.on_receive(3);
        assert_eq!(rx.ahead, vec![2..5]);
        rx.on_receive(1);
        assert!(rx.ahead.is_empty());
        assert_eq!(rx.next, 5);
    }

    #[test]
    fn rejected_messages_are_not_lost() {
        let mut rx = FlowRx::new();
        feed(&mut rx, &[0, 1, 3]);
        assert!(rx.on_reject(2));
        assert!(!rx.on_reject(2));
        assert_eq!(rx.rejected(), 1);
        assert_eq!(rx.lost(4), 0);
        // A message that arrives after being rejected is a duplicate.
        assert_eq!(rx.on_receive(2), Arrival::Duplicate);
    }

    #[test]
    fn lost_only_counts_below_sent() {
        let mut rx = FlowRx::new();
        feed(&mut rx, &[0, 1, 7]);
        assert_eq!(rx.lost(3), 1);
        assert_eq!(rx.lost(8), 5);
    }

    #[test]
    fn matches_a_naive_model_on_random_arrivals() {
        use rand::{rngs::SmallRng, Rng, SeedableRng};
        let mut rng = SmallRng::seed_from_u64(7);
        for _ in 0..200 {
            let sent = rng.random_range(1..60u64);
            let mut rx = FlowRx::new();
            let mut seen = std::collections::BTreeSet::new();
            let mut max_seen: Option<u64> = None;
            for _ in 0..rng.random_range(0..120) {
                let s = rng.random_range(0..sent);
                let expect = if seen.contains(&s) {
                    Arrival::Duplicate
                } else if max_seen.is_some_and(|m| s < m) {
                    Arrival::Reordered
                } else {
                    Arrival::InOrder
                };
                assert_eq!(rx.on_receive(s), expect);
                if seen.insert(s) {
                    max_seen = Some(max_seen.map_or(s, |m| m.max(s)));
                }
            }
            assert_eq!(rx.lost(sent), sent - seen.len() as u64);
            assert_eq!(rx.received(), seen.len() as u64);
        }
    }
}
