//! A connection as the rest of its core sees it: identity, outbound queue,
//! subscriptions, credentials and close requests.
//!
//! Invariant: a `Conn` is touched only by the core that owns its user (it
//! is `Rc`, never sent). Other tasks of the core push to its queue and wake
//! its socket task; only the socket task pops. The queue is bounded: when
//! full, the oldest message goes and is counted as `buffer_full` (for direct
//! messages the store still has it, and the resume offset stops before it).

use std::{
    cell::{Cell, RefCell},
    collections::VecDeque,
    rc::Rc,
    task::Waker,
    time::Instant,
};

use bytes::Bytes;

use crate::{
    auth::Permissions,
    protocol::{server, CloseCode, ErrorCode, RoomPattern},
    store::StoredMessage,
};

use super::order::{Direct, DirectOrder, Offered};

/// What [`Conn::push_direct`] did.
#[derive(Debug, Default)]
#[must_use]
pub struct Pushed {
    /// The queue was full: its oldest message went.
    pub dropped: bool,
    /// The message leaves a gap after this offset: read the store and
    /// [`Conn::end_replay`] with what it has.
    pub fill_after: Option<u64>,
}

impl From<Direct> for Outbound {
    fn from(d: Direct) -> Outbound {
        Outbound::Direct {
            offset: d.offset,
            envelope: d.envelope,
            ingress: d.ingress,
        }
    }
}

/// What the socket task writes next.
pub enum Outbound {
    /// A text frame built by the node (welcome, ack, error).
    Text(Bytes),
    /// A direct message with its per-user offset.
    Direct {
        offset: u64,
        envelope: Bytes,
        ingress: Option<Instant>,
    },
    /// A room message (shared by every subscriber).
    Room { envelope: Bytes, ingress: Instant },
    /// A keepalive ping.
    Ping,
    /// A `reconnect` envelope; its token is signed when it is written, so it
    /// carries the offset of the last message written before it. `Some`:
    /// the `wsUrl` of the node the user now belongs to (a ring change).
    Reconnect(Option<Rc<str>>),
}

/// A connection's parking state (see `node::park`): the housekeeping tick
/// marks a silent connection `Due`, its socket task parks it, the core's
/// epoll reader marks a parked one `Readable`, and the task unparks it on
/// that or on any other work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Park {
    /// On its glommio stream.
    Active,
    /// Silent long enough at one tick; `Due` at the next unless the task
    /// wrote meanwhile (a connection that only receives stays on its stream).
    Quiet,
    /// Silent long enough: park at the next rest.
    Due,
    /// In the core's epoll set, without a stream.
    Parked,
    /// Parked, and its socket became readable.
    Readable,
    /// Parking failed for this connection: it stays on its stream.
    Never,
}

/// The shared side of one WebSocket connection.
pub struct Conn {
    /// Unique on the node's core for its lifetime.
    pub id: u64,
    /// The user of a `/ws` connection; `None` on `/echo`.
    pub user: Option<Rc<str>>,
    queue: RefCell<VecDeque<Outbound>>,
    /// Messages taken from `queue` and not yet written to the socket.
    unsent: Cell<u32>,
    queue_cap: u32,
    waker: Cell<Option<Waker>>,
    close: Cell<Option<CloseCode>>,
    /// Unix milliseconds when the connection was opened (names its session).
    pub opened_ms: u64,
    /// Core-clock second of the last frame received.
    pub last_seen: Cell<u32>,
    /// Core-clock second by which the connection must be gone.
    pub deadline: Cell<Option<u32>>,
    pub ping_sent: Cell<bool>,
    /// Where the socket task is with parking (see `node::park`).
    pub park: Cell<Park>,
    delivered: Cell<u64>,
    gapped: Cell<bool>,
    /// Which direct message may be queued next.
    order: RefCell<DirectOrder>,
    /// Subscriptions made with `join`.
    pub subscriptions: RefCell<Vec<RoomPattern>>,
    /// Unix second of the JWT's `exp` (`--auth jwt`); 0: never expires.
    pub expires_at: Cell<u64>,
    /// What the JWT's claims allow (`--rooms-policy claims`); `None`: open.
    pub permissions: RefCell<Option<Box<Permissions>>>,
}

impl Conn {
    /// A connection with an empty queue of at most `queue_cap` messages.
    pub fn new(id: u64, user: Option<Rc<str>>, queue_cap: usize, now: u32) -> Conn {
        Conn {
            id,
            user,
            opened_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            queue: RefCell::default(),
            unsent: Cell::new(0),
            queue_cap: queue_cap.min(u32::MAX as usize) as u32,
            waker: Cell::new(None),
            close: Cell::new(None),
            last_seen: Cell::new(now),
            deadline: Cell::new(None),
            ping_sent: Cell::new(false),
            park: Cell::new(Park::Active),
            delivered: Cell::new(0),
            gapped: Cell::new(false),
            order: RefCell::default(),
            subscriptions: RefCell::default(),
            expires_at: Cell::new(0),
            permissions: RefCell::new(None),
        }
    }

    /// Queues `item`; returns false when the oldest message had to go.
    pub fn push(&self, item: Outbound) -> bool {
        let kept = {
            let mut q = self.queue.borrow_mut();
            let kept = if q.len() >= self.queue_cap as usize {
                // Drop the oldest message; envelopes the node wrote itself
                // (welcome, acks, errors) go only when nothing else is left.
                let oldest = q
                    .iter()
                    .position(|o| matches!(o, Outbound::Direct { .. } | Outbound::Room { .. }))
                    .unwrap_or(0);
                if let Some(Outbound::Direct { offset, .. }) = q.remove(oldest) {
                    self.mark_gap(offset);
                }
                false
            } else {
                true
            };
            q.push_back(item);
            kept
        };
        self.wake();
        kept
    }

    /// Queues a direct message if it is the next offset; holds it while a
    /// backlog is read, or when it leaves a gap (see [`super::order`];
    /// `appended_here`: the message is this core's own append).
    pub fn push_direct(
        &self,
        msg: StoredMessage,
        ingress: Option<Instant>,
        appended_here: bool,
    ) -> Pushed {
        let direct = Direct {
            offset: msg.offset,
            envelope: msg.envelope,
            ingress,
        };
        let offered = self.order.borrow_mut().offer(direct, appended_here);
        match offered {
            Ok(d) => Pushed {
                dropped: !self.push(d.into()),
                fill_after: None,
            },
            Err(Offered::Gap { after }) => Pushed {
                dropped: false,
                fill_after: Some(after),
            },
            Err(Offered::Held | Offered::Duplicate) => Pushed::default(),
        }
    }

    /// Starts holding live direct messages until [`Conn::end_replay`] (the
    /// session's backlog is being read).
    pub fn begin_replay(&self) {
        self.order.borrow_mut().hold();
    }

    /// Sets where the session starts: after `offset` (the resume mark too).
    pub fn start_after(&self, offset: u64) {
        self.delivered.set(offset);
        self.order.borrow_mut().start_after(offset);
    }

    /// Queues the backlog, then the live messages held meanwhile, in offset
    /// order and without duplicates. Returns how many queued messages were
    /// dropped, and `Some(after)` when held messages still wait for a gap
    /// after `after` to be read.
    pub fn end_replay(&self, backlog: Vec<StoredMessage>) -> (usize, Option<u64>) {
        let backlog = backlog
            .into_iter()
            .map(|m| Direct {
                offset: m.offset,
                envelope: m.envelope,
                ingress: None,
            })
            .collect();
        let mut dropped = 0;
        let done = self
            .order
            .borrow_mut()
            .finish(backlog, |d| dropped += usize::from(!self.push(d.into())));
        if let Some(first) = done.skipped_from {
            // The store no longer has them: a resume must not pretend they
            // were written.
            self.mark_gap(first);
        }
        (dropped, done.gap_after)
    }

    /// A text envelope built by `build`.
    pub fn push_text(&self, build: impl FnOnce(&mut Vec<u8>)) {
        let mut out = Vec::with_capacity(64);
        build(&mut out);
        self.push(Outbound::Text(out.into()));
    }

    /// An `ack` for message `id`.
    pub fn push_ack(&self, id: &str) {
        self.push_text(|o| server::encode_ack(o, id));
    }

    /// An `error` envelope.
    pub fn push_error(&self, code: ErrorCode, id: Option<&str>, message: &str) {
        self.push_text(|o| server::encode_error(o, code, id, message));
    }

    /// Takes everything queued (the socket task's side).
    pub fn take_queue(&self, into: &mut VecDeque<Outbound>) {
        std::mem::swap(&mut *self.queue.borrow_mut(), into);
    }

    /// Entries the queue has room for without growing (what it holds in
    /// memory while empty).
    pub fn queue_capacity(&self) -> usize {
        self.queue.borrow().capacity()
    }

    /// Messages waiting: in the queue, or taken by the socket task and not
    /// yet written.
    pub fn queued(&self) -> usize {
        self.queue.borrow().len() + self.unsent.get() as usize
    }

    /// Records how many messages the socket task took from the queue and
    /// has not finished writing.
    pub fn set_unsent(&self, n: usize) {
        self.unsent.set(n.min(u32::MAX as usize) as u32);
    }

    /// True when the socket task has something to do besides reading.
    pub fn has_work(&self) -> bool {
        !self.queue.borrow().is_empty() || self.close.get().is_some()
    }

    /// Asks the socket task to close with `code` after what is queued. The
    /// first request wins.
    pub fn request_close(&self, code: CloseCode) {
        if self.close.get().is_none() {
            self.close.set(Some(code));
        }
        self.wake();
    }

    /// Takes the pending close request.
    pub fn take_close(&self) -> Option<CloseCode> {
        self.close.take()
    }

    /// Registers the socket task's waker.
    pub fn set_waker(&self, waker: &Waker) {
        match self.waker.take() {
            Some(w) if w.will_wake(waker) => self.waker.set(Some(w)),
            _ => self.waker.set(Some(waker.clone())),
        }
    }

    /// Wakes the socket task.
    pub fn wake(&self) {
        if let Some(w) = self.waker.take() {
            w.wake_by_ref();
            self.waker.set(Some(w));
        }
    }

    /// Records that the direct message `offset` was written to the socket.
    pub fn note_written(&self, offset: u64) {
        if !self.gapped.get() {
            self.delivered.set(offset);
        }
    }

    fn mark_gap(&self, dropped_offset: u64) {
        self.gapped.set(true);
        self.delivered
            .set(self.delivered.get().min(dropped_offset.saturating_sub(1)));
    }

    /// The last offset written with nothing lost before it: where a resume
    /// must start after.
    pub fn delivered(&self) -> u64 {
        self.delivered.get()
    }
}

#[cfg(test)]
impl Conn {
    /// A connection of user `u` with a queue of `cap` (unit tests).
    pub(crate) fn for_test(id: u64, cap: usize) -> Conn {
        Conn::new(id, Some("u".into()), cap, 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(cap: usize) -> Conn {
        Conn::for_test(1, cap)
    }

    fn direct(offset: u64) -> StoredMessage {
        StoredMessage {
            offset,
            envelope: Bytes::from(format!("m{offset}")),
        }
    }

    fn offsets(c: &Conn) -> Vec<u64> {
        let mut q = VecDeque::new();
        c.take_queue(&mut q);
        q.iter()
            .filter_map(|o| match o {
                Outbound::Direct { offset, .. } => Some(*offset),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn full_queue_drops_the_oldest_and_caps_the_resume_offset() {
        let c = conn(2);
        c.begin_replay();
        c.start_after(0);
        let _ = c.end_replay(Vec::new());
        assert!(!c.push_direct(direct(1), None, true).dropped);
        assert!(!c.push_direct(direct(2), None, true).dropped);
        assert!(c.push_direct(direct(3), None, true).dropped);
        assert_eq!(offsets(&c), [2, 3]);
        c.note_written(2);
        c.note_written(3);
        assert_eq!(
            c.delivered(),
            0,
            "message 1 was lost: a resume must replay from 1"
        );
    }

    #[test]
    fn a_full_queue_drops_messages_before_the_welcome() {
        let c = conn(2);
        c.begin_replay();
        c.start_after(0);
        c.push_text(|o| o.extend_from_slice(b"welcome"));
        let _ = c.end_replay(vec![direct(1), direct(2), direct(3)]);
        let mut q = VecDeque::new();
        c.take_queue(&mut q);
        assert!(matches!(&q[0], Outbound::Text(t) if &t[..] == b"welcome"));
        assert_eq!(q.len(), 2);
    }

    #[test]
    fn live_messages_during_replay_follow_the_backlog_without_duplicates() {
        let c = conn(100);
        c.begin_replay();
        c.start_after(0);
        let _ = c.push_direct(direct(3), None, true);
        let _ = c.push_direct(direct(4), None, true);
        assert_eq!(c.queued(), 0);
        assert_eq!(
            c.end_replay(vec![direct(1), direct(2), direct(3)]),
            (0, None)
        );
        assert_eq!(offsets(&c), [1, 2, 3, 4]);
    }

    #[test]
    fn a_message_past_a_gap_waits_for_the_gap_and_a_skipped_offset_caps_the_resume_mark() {
        let c = conn(100);
        c.begin_replay();
        c.start_after(0);
        let _ = c.end_replay(vec![direct(1)]);
        assert_eq!(c.push_direct(direct(3), None, true).fill_after, Some(1));
        assert_eq!(c.queued(), 1, "3 is held, not queued before 2");
        assert_eq!(c.end_replay(vec![direct(2), direct(3)]), (0, None));
        assert_eq!(offsets(&c), [1, 2, 3]);
        for o in 1..=3 {
            c.note_written(o);
        }
        assert_eq!(c.delivered(), 3);
        // 4 is gone from the store: 5 is let through, the mark stays at 3.
        assert_eq!(c.push_direct(direct(5), None, false).fill_after, Some(3));
        assert_eq!(c.end_replay(Vec::new()), (0, None));
        assert_eq!(offsets(&c), [5]);
        c.note_written(5);
        assert_eq!(c.delivered(), 3);
    }
}
