//! The order in which one connection receives its user's direct messages:
//! each offset once, ascending, and no gap the store could still fill.
//!
//! On a single node a user's offsets are all given by its owning core, which
//! queues them in offset order. In a cluster they are not: the owning core
//! appends what this node's users send, while a sender's core on another
//! node appends to the user's Redis buffer itself and tells this node over
//! the relay (see `crate::relay`). The two streams meet here out of order,
//! and a relayed message may come twice. A client that saw offset 7 before 6
//! would resume after 7 and never get 6, so a message is queued only when
//! it is the next offset; one that leaves a gap is held, and the gap is read
//! from the store (every offset below one that exists is already in the
//! buffer: an append takes its offset and pushes in one atomic step).
//!
//! Holding is also how a session starts: live messages are held while the
//! backlog is read, then the two are merged by offset.
//!
//! Invariant: `pushed` only grows, and it grows by one at a time except
//! where the store no longer has the offsets in between (trimmed, expired or
//! unreachable): that jump is reported so the caller can stop the resume
//! mark before it.

use std::time::Instant;

use bytes::Bytes;

/// A direct message for the connection, with its per-user offset.
#[derive(Debug)]
pub struct Direct {
    pub offset: u64,
    pub envelope: Bytes,
    pub ingress: Option<Instant>,
}

/// What became of an offered message.
#[derive(Debug, PartialEq, Eq)]
pub enum Offered {
    /// Already queued (a relay redelivery, or part of a backlog).
    Duplicate,
    /// Held while the backlog is read.
    Held,
    /// Held: the offsets after `after` and before it are missing; read the
    /// store after `after` and [`DirectOrder::finish`] with what it has.
    Gap { after: u64 },
}

/// See the module docs.
#[derive(Debug, Default)]
pub struct DirectOrder {
    /// The last offset queued (or the one the session starts after).
    pushed: u64,
    /// Messages held while a backlog is read; `Some` while reading. Boxed:
    /// every idle connection carries a `DirectOrder`, and an empty box
    /// costs 8 bytes inline where a `Vec` costs 24 (see the memory table in
    /// docs/architecture.md).
    #[allow(clippy::box_collection)]
    held: Option<Box<Vec<Direct>>>,
}

/// What [`DirectOrder::finish`] did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Finished {
    /// The first offset skipped because the store no longer had it.
    pub skipped_from: Option<u64>,
    /// Still a gap: read the store after this offset and finish again.
    pub gap_after: Option<u64>,
}

impl DirectOrder {
    /// Holds live messages until [`DirectOrder::finish`] (a session starts:
    /// its backlog is read).
    pub fn hold(&mut self) {
        self.held.get_or_insert_with(Box::default);
    }

    /// Sets where the session starts: after `offset`.
    pub fn start_after(&mut self, offset: u64) {
        self.pushed = offset;
    }

    /// True while a backlog is being read.
    #[cfg(test)]
    pub fn is_holding(&self) -> bool {
        self.held.is_some()
    }

    /// Decides what to do with `d`: `Ok` hands it back to be queued now
    /// (it is the next offset); otherwise it is held or dropped here.
    ///
    /// `appended_here` says `d` is this core's own append, applied in the
    /// order of its store pipeline. Such a message is never a duplicate: an
    /// offset at or below `pushed` then means the store lost its data and
    /// counts again from 1 (Redis restarted empty), and the count restarts
    /// here too, as it would on a single node. (It cannot be an append that
    /// a gap read already brought: a read queued after an append on the same
    /// pipeline returns after it, and appends are applied while the read is
    /// still holding.)
    pub fn offer(&mut self, d: Direct, appended_here: bool) -> Result<Direct, Offered> {
        if let Some(held) = &mut self.held {
            held.push(d);
            return Err(Offered::Held);
        }
        if d.offset <= self.pushed {
            if appended_here {
                self.pushed = d.offset;
                return Ok(d);
            }
            return Err(Offered::Duplicate);
        }
        if d.offset == self.pushed + 1 {
            self.pushed = d.offset;
            return Ok(d);
        }
        self.held = Some(Box::new(vec![d]));
        Err(Offered::Gap { after: self.pushed })
    }

    /// Ends a read: hands `queue` the backlog's new messages, then the held
    /// ones, in offset order. A held message past a gap stays held (and
    /// `gap_after` asks for another read) unless this read brought nothing:
    /// then the store does not have the missing offsets, and they are
    /// skipped.
    pub fn finish(&mut self, backlog: Vec<Direct>, mut queue: impl FnMut(Direct)) -> Finished {
        let mut done = Finished::default();
        let mut progressed = false;
        for d in backlog {
            if d.offset <= self.pushed {
                continue;
            }
            if d.offset > self.pushed + 1 {
                // The buffer starts later than asked: those are gone.
                done.skipped_from.get_or_insert(self.pushed + 1);
            }
            self.pushed = d.offset;
            progressed = true;
            queue(d);
        }
        let mut held = *self.held.take().unwrap_or_default();
        held.sort_by_key(|d| d.offset);
        let mut rest = held.into_iter().peekable();
        while let Some(d) = rest.next() {
            if d.offset <= self.pushed {
                continue;
            }
            if d.offset > self.pushed + 1 {
                if progressed {
                    let mut still = vec![d];
                    still.extend(rest);
                    self.held = Some(Box::new(still));
                    done.gap_after = Some(self.pushed);
                    return done;
                }
                done.skipped_from.get_or_insert(self.pushed + 1);
            }
            self.pushed = d.offset;
            queue(d);
        }
        done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(offset: u64) -> Direct {
        Direct {
            offset,
            envelope: Bytes::new(),
            ingress: None,
        }
    }

    fn run(order: &mut DirectOrder, backlog: &[u64]) -> (Vec<u64>, Finished) {
        let mut out = Vec::new();
        let done = order.finish(backlog.iter().map(|&o| d(o)).collect(), |m| {
            out.push(m.offset)
        });
        (out, done)
    }

    #[test]
    fn in_order_messages_pass_and_duplicates_are_dropped() {
        let mut o = DirectOrder::default();
        o.hold();
        o.start_after(4);
        assert_eq!(run(&mut o, &[]).0, Vec::<u64>::new());
        assert_eq!(o.offer(d(5), true).unwrap().offset, 5);
        assert_eq!(o.offer(d(5), false).unwrap_err(), Offered::Duplicate);
        assert_eq!(o.offer(d(3), false).unwrap_err(), Offered::Duplicate);
        assert_eq!(o.offer(d(6), false).unwrap().offset, 6);
    }

    #[test]
    fn an_own_append_below_the_mark_restarts_the_count() {
        let mut o = DirectOrder::default();
        o.hold();
        o.start_after(0);
        run(&mut o, &[1, 2, 3]);
        // The store came back empty: its offsets start at 1 again.
        assert_eq!(o.offer(d(1), true).unwrap().offset, 1);
        assert_eq!(o.offer(d(2), false).unwrap().offset, 2);
    }

    #[test]
    fn a_gap_holds_until_the_store_fills_it() {
        let mut o = DirectOrder::default();
        o.hold();
        o.start_after(0);
        run(&mut o, &[1]);
        assert_eq!(o.offer(d(4), false).unwrap_err(), Offered::Gap { after: 1 });
        // Arrives while the gap is read: held, not queued ahead of 2 and 3.
        assert_eq!(o.offer(d(2), true).unwrap_err(), Offered::Held);
        let (out, done) = run(&mut o, &[2, 3, 4]);
        assert_eq!(out, [2, 3, 4]);
        assert_eq!(done, Finished::default());
        assert_eq!(o.offer(d(5), false).unwrap().offset, 5);
    }

    #[test]
    fn messages_held_during_a_read_that_did_not_see_them_ask_for_another_read() {
        let mut o = DirectOrder::default();
        o.hold();
        o.start_after(0);
        o.offer(d(7), false).unwrap_err(); // held during the session's backlog read
        o.offer(d(5), true).unwrap_err();
        let (out, done) = run(&mut o, &[1, 2, 3]);
        assert_eq!(out, [1, 2, 3]);
        assert_eq!(done.gap_after, Some(3), "4 and 6 are not known yet");
        let (out, done) = run(&mut o, &[4, 5, 6, 7]);
        assert_eq!(out, [4, 5, 6, 7]);
        assert_eq!(done, Finished::default());
    }

    #[test]
    fn offsets_the_store_no_longer_has_are_skipped_and_reported() {
        let mut o = DirectOrder::default();
        o.hold();
        o.start_after(0);
        run(&mut o, &[]);
        o.offer(d(9), false).unwrap_err();
        // The buffer was trimmed: it starts at 8.
        let (out, done) = run(&mut o, &[8, 9]);
        assert_eq!(out, [8, 9]);
        assert_eq!(done.skipped_from, Some(1));
        // A read that brings nothing (store down, buffer expired) lets held
        // messages through rather than holding them forever.
        o.offer(d(12), false).unwrap_err();
        let (out, done) = run(&mut o, &[]);
        assert_eq!(out, [12]);
        assert_eq!(done.skipped_from, Some(10));
        assert!(!o.is_holding());
    }
}
