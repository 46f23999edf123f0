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
//! The sender side can also keep the set of sequence numbers the server
//! `ack`ed (a [`SeqSet`]): an ack promises the message is stored, so a lost
//! message is either **lost acked** (the server broke its promise; must be
//! 0) or **lost unacked** (sent, never acked, never delivered: a real client
//! would resend it). [`FlowRx::lost_acked`] splits `lost` that way.
//!
//! Sets of sequence numbers ([`SeqSet`]: the settled numbers of a flow, its
//! acked numbers) are kept as "every number `< next`" plus `ahead`, the
//! members `> next` as sorted, disjoint, non-adjacent half-open ranges, all
//! starting above `next`. Memory is O(number of gaps), so a flow that is in
//! order costs a few words no matter how many messages it carried.

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
    /// Received or rejected sequence numbers.
    settled: SeqSet,
    /// One more than the highest sequence number *received* (0 = none yet).
    max_seen_plus_one: u64,
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
        if !self.settled.insert(seq) {
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
        let fresh = self.settled.insert(seq);
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
        sent - self.settled.count_below(sent)
    }

    /// Of the messages [`FlowRx::lost`] counts, those whose sequence number
    /// is in `acked` (the server acked them and never delivered them). The
    /// rest of `lost` were never acked.
    pub fn lost_acked(&self, acked: &SeqSet, sent: u64) -> u64 {
        acked.count_below_not_in(&self.settled, sent)
    }

    /// True if every sequence number below `sent` is settled.
    pub fn complete(&self, sent: u64) -> bool {
        self.settled.next >= sent
    }
}

/// A set of sequence numbers, compact while they are mostly contiguous.
/// See the module docs for the invariants.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SeqSet {
    next: u64,
    ahead: Vec<Range<u64>>,
}

impl SeqSet {
    /// The empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `seq`; false if it was already in the set.
    pub fn insert(&mut self, seq: u64) -> bool {
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

    /// True if `seq` is in the set.
    pub fn contains(&self, seq: u64) -> bool {
        seq < self.next || {
            let i = self.ahead.partition_point(|r| r.end <= seq);
            self.ahead.get(i).is_some_and(|r| r.contains(&seq))
        }
    }

    /// Members below `n`.
    pub fn count_below(&self, n: u64) -> u64 {
        self.ranges()
            .take_while(|r| r.start < n)
            .map(|r| r.end.min(n) - r.start)
            .sum()
    }

    /// Members below `n` that are not in `other`.
    pub fn count_below_not_in(&self, other: &SeqSet, n: u64) -> u64 {
        // |self ∩ [0, n)| − |self ∩ other ∩ [0, n)|, the intersection by a
        // merge walk over both sorted range lists.
        let mut both = 0;
        let mut theirs = other.ranges().peekable();
        for mine in self.ranges().take_while(|r| r.start < n) {
            let mine = mine.start..mine.end.min(n);
            while let Some(t) = theirs.peek() {
                let (lo, hi) = (t.start.max(mine.start), t.end.min(mine.end));
                if lo < hi {
                    both += hi - lo;
                }
                if t.end <= mine.end {
                    theirs.next();
                } else {
                    break;
                }
            }
        }
        self.count_below(n) - both
    }

    /// The members as sorted, disjoint half-open ranges.
    fn ranges(&self) -> impl Iterator<Item = Range<u64>> + '_ {
        (self.next > 0)
            .then_some(0..self.next)
            .into_iter()
            .chain(self.ahead.iter().cloned())
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
    /// Lost although the server acked them (flows added with their acks).
    pub lost_acked: u64,
    /// Lost and never acked (flows added with their acks).
    pub lost_unacked: u64,
}

impl FlowTotals {
    /// Adds one flow's final state given how many messages its sender sent.
    pub fn add(&mut self, rx: &FlowRx, sent: u64) {
        self.sent += sent;
        self.received += rx.received();
        self.rejected += rx.rejected();
        self.lost += rx.lost(sent);
    }

    /// [`FlowTotals::add`], and splits the flow's loss by `acked`, the
    /// sequence numbers the server acked to the sender.
    pub fn add_with_acks(&mut self, rx: &FlowRx, acked: &SeqSet, sent: u64) {
        let lost = rx.lost(sent);
        let lost_acked = rx.lost_acked(acked, sent);
        self.add(rx, sent);
        self.lost_acked += lost_acked;
        self.lost_unacked += lost - lost_acked;
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
        assert!(rx.settled.ahead.is_empty());
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
                lost: 1,
                lost_acked: 0,
                lost_unacked: 0,
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
        assert!(rx.settled.ahead.is_empty());
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
        assert_eq!(rx.settled.ahead, vec![2..3, 4..5]);
        rx.on_receive(3);
        assert_eq!(rx.settled.ahead, vec![2..5]);
        rx.on_receive(1);
        assert!(rx.settled.ahead.is_empty());
        assert_eq!(rx.settled.next, 5);
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
    fn lost_splits_into_acked_and_unacked() {
        // Sender sends 0..10; the server acks 0..=6 and 8 (9 and 7 were
        // sent but never acked); 3 and 8 were acked but never delivered
        // (the server broke its promise), 7 and 9 were never acked nor
        // delivered, 5 was rejected.
        let mut acked = SeqSet::new();
        for s in [0, 1, 2, 3, 4, 5, 6, 8] {
            assert!(acked.insert(s));
        }
        assert!(!acked.insert(4));
        let mut rx = FlowRx::new();
        feed(&mut rx, &[0, 1, 2, 4, 6]);
        assert!(rx.on_reject(5));
        assert_eq!(rx.lost(10), 4);
        assert_eq!(rx.lost_acked(&acked, 10), 2);
        let mut totals = FlowTotals::default();
        totals.add_with_acks(&rx, &acked, 10);
        assert_eq!(
            (totals.lost, totals.lost_acked, totals.lost_unacked),
            (4, 2, 2)
        );
        // Only the first `sent` count: 8 is beyond a sender that sent 8.
        assert_eq!(rx.lost_acked(&acked, 8), 1);
    }

    #[test]
    fn an_acked_message_delivered_late_or_twice_is_not_lost() {
        let mut acked = SeqSet::new();
        let mut rx = FlowRx::new();
        for s in 0..5 {
            acked.insert(s);
        }
        feed(&mut rx, &[0, 1, 2, 4]);
        assert_eq!(rx.lost_acked(&acked, 5), 1);
        // Replayed after a resume: the gap fills, the rest is duplicated.
        feed(&mut rx, &[2, 3, 4]);
        assert_eq!(rx.lost_acked(&acked, 5), 0);
        assert_eq!(rx.lost(5), 0);
    }

    #[test]
    fn seq_set_contains_and_counts() {
        let mut set = SeqSet::new();
        for s in [0, 1, 5, 6, 9] {
            set.insert(s);
        }
        assert!(set.contains(1) && set.contains(6) && set.contains(9));
        assert!(!set.contains(2) && !set.contains(7) && !set.contains(10));
        assert_eq!(set.count_below(6), 3);
        assert_eq!(set.count_below(100), 5);
        assert_eq!(SeqSet::new().count_below(10), 0);
    }

    #[test]
    fn lost_acked_matches_a_naive_model() {
        use rand::{rngs::SmallRng, Rng, SeedableRng};
        let mut rng = SmallRng::seed_from_u64(11);
        for _ in 0..300 {
            let sent = rng.random_range(1..80u64);
            let (mut acked, mut rx) = (SeqSet::new(), FlowRx::new());
            let (mut a, mut r) = (
                std::collections::BTreeSet::new(),
                std::collections::BTreeSet::new(),
            );
            for _ in 0..rng.random_range(0..160) {
                let s = rng.random_range(0..sent + 5);
                match rng.random_range(0..3) {
                    0 => {
                        acked.insert(s);
                        a.insert(s);
                    }
                    1 if s < sent => {
                        rx.on_receive(s);
                        r.insert(s);
                    }
                    _ => {}
                }
            }
            let expect = a.iter().filter(|s| **s < sent && !r.contains(s)).count() as u64;
            assert_eq!(rx.lost_acked(&acked, sent), expect);
            for s in 0..sent + 5 {
                assert_eq!(acked.contains(s), a.contains(&s));
            }
        }
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
