//! A user of this core: its open connections, oldest first.
//!
//! A user may hold up to `--max-connections-per-user` connections (a phone,
//! a laptop, a tab): every one of them receives the user's direct messages,
//! each with the same per-user offset, and keeps its own subscriptions,
//! outbound queue and delivered mark. Opening one more than the cap closes
//! the oldest with 4001 (with a cap of 1: the newest connection wins).
//!
//! The user's rate limits live here too: its connections share them (the
//! limits are per user, not per connection).
//!
//! Invariant: only the user's owning core touches its entry (the entry
//! lives in its shard's `users` map); an entry exists exactly while the user
//! has at least one open session on this core.

use std::rc::Rc;

use smallvec::SmallVec;

use super::super::{conn::Conn, rate::Buckets};

/// See the module docs.
#[derive(Default)]
pub struct User {
    /// Open connections, oldest first (the first one inline).
    conns: SmallVec<[Rc<Conn>; 1]>,
    /// The user's rate-limit buckets, shared by its connections.
    pub buckets: Buckets,
}

impl User {
    /// Adds `conn` as the newest connection; returns the connections beyond
    /// `cap` (the oldest), which the caller closes with 4001.
    pub fn add(&mut self, conn: Rc<Conn>, cap: usize) -> Vec<Rc<Conn>> {
        self.conns.push(conn);
        let over = self.conns.len().saturating_sub(cap.max(1));
        self.conns.drain(..over).collect()
    }

    /// Forgets connection `id`; true when it was one of this user's.
    pub fn remove(&mut self, id: u64) -> bool {
        let before = self.conns.len();
        self.conns.retain(|c| c.id != id);
        self.conns.len() != before
    }

    /// The open connections, oldest first.
    pub fn conns(&self) -> &[Rc<Conn>] {
        &self.conns
    }

    /// The furthest delivered mark among the open connections (0 if none).
    pub fn furthest_delivered(&self) -> u64 {
        self.conns.iter().map(|c| c.delivered()).max().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(id: u64) -> Rc<Conn> {
        Rc::new(Conn::for_test(id, 4))
    }

    #[test]
    fn a_user_entry_stays_small() {
        // Every connected user has one (docs/architecture.md, memory per
        // idle connection): its connections inline, its buckets boxed.
        assert!(
            std::mem::size_of::<User>() <= 40,
            "{}",
            std::mem::size_of::<User>()
        );
    }

    #[test]
    fn over_the_cap_the_oldest_connections_go() {
        let mut u = User::default();
        assert!(u.add(conn(1), 2).is_empty());
        assert!(u.add(conn(2), 2).is_empty());
        let gone = u.add(conn(3), 2);
        assert_eq!(gone.iter().map(|c| c.id).collect::<Vec<_>>(), [1]);
        assert_eq!(u.conns().iter().map(|c| c.id).collect::<Vec<_>>(), [2, 3]);
    }

    #[test]
    fn a_cap_of_one_keeps_the_newest() {
        let mut u = User::default();
        u.add(conn(1), 1);
        let gone = u.add(conn(2), 1);
        assert_eq!(gone[0].id, 1);
        assert_eq!(u.conns()[0].id, 2);
    }

    #[test]
    fn removing_the_last_connection_empties_the_user() {
        let mut u = User::default();
        u.add(conn(1), 8);
        u.add(conn(2), 8);
        assert!(!u.remove(7));
        assert!(u.remove(1));
        assert_eq!(u.conns().len(), 1);
        assert!(u.remove(2));
        assert!(u.conns().is_empty());
    }

    #[test]
    fn the_furthest_mark_is_the_max_over_connections() {
        let mut u = User::default();
        let (a, b) = (conn(1), conn(2));
        a.start_after(3);
        b.start_after(5);
        u.add(a, 8);
        u.add(b, 8);
        assert_eq!(u.furthest_delivered(), 5);
    }
}
