//! The room subscriptions of one core's connections.
//!
//! Each core indexes only its own connections; a publish is delivered to the
//! publisher's core directly and broadcast to every other core, which
//! matches it against its own index. Exact subscriptions are a hash lookup;
//! wildcard patterns are matched one by one (cost: the number of distinct
//! wildcard patterns on the core, each O(segments)). A connection matched by
//! several of its subscriptions gets the message once.

use std::rc::Rc;

use rustc_hash::{FxHashMap, FxHashSet};

use crate::protocol::RoomPattern;

use super::conn::Conn;

type Subscribers = FxHashMap<u64, Rc<Conn>>;

/// See the module docs.
#[derive(Default)]
pub struct RoomIndex {
    exact: FxHashMap<Box<str>, Subscribers>,
    wildcard: FxHashMap<RoomPattern, Subscribers>,
}

impl RoomIndex {
    /// Subscribes `conn` to `pattern` (idempotent).
    pub fn subscribe(&mut self, pattern: &RoomPattern, conn: &Rc<Conn>) {
        let bucket = if pattern.is_wildcard() {
            self.wildcard.entry(pattern.clone()).or_default()
        } else {
            self.exact.entry(pattern.as_str().into()).or_default()
        };
        bucket.insert(conn.id, conn.clone());
    }

    /// Removes `conn`'s subscription to `pattern`, if any; a pattern left
    /// without subscribers is forgotten.
    pub fn unsubscribe(&mut self, pattern: &RoomPattern, conn_id: u64) {
        fn remove<K: std::hash::Hash + Eq + ?Sized>(
            map: &mut FxHashMap<impl std::borrow::Borrow<K> + std::hash::Hash + Eq, Subscribers>,
            key: &K,
            conn_id: u64,
        ) {
            if let Some(b) = map.get_mut(key) {
                b.remove(&conn_id);
                if b.is_empty() {
                    map.remove(key);
                }
            }
        }
        if pattern.is_wildcard() {
            remove(&mut self.wildcard, pattern, conn_id);
        } else {
            remove(&mut self.exact, pattern.as_str(), conn_id);
        }
    }

    /// Calls `deliver` once for every connection subscribed to a pattern
    /// matching `room`.
    pub fn for_each_subscriber(&self, room: &str, mut deliver: impl FnMut(&Rc<Conn>)) {
        let mut buckets: Vec<&Subscribers> = Vec::new();
        if let Some(b) = self.exact.get(room) {
            buckets.push(b);
        }
        buckets.extend(
            self.wildcard
                .iter()
                .filter(|(p, _)| p.matches(room))
                .map(|(_, b)| b),
        );
        match buckets.as_slice() {
            [] => {}
            [only] => only.values().for_each(deliver),
            _ => {
                let mut seen = FxHashSet::default();
                for conn in buckets.iter().flat_map(|b| b.values()) {
                    if seen.insert(conn.id) {
                        deliver(conn);
                    }
                }
            }
        }
    }

    /// Number of distinct patterns with subscribers.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.exact.len() + self.wildcard.len()
    }

    /// True when nobody is subscribed to anything.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(id: u64) -> Rc<Conn> {
        Rc::new(Conn::for_test(id, 8))
    }

    fn p(s: &str) -> RoomPattern {
        RoomPattern::parse(s).unwrap()
    }

    fn hits(idx: &RoomIndex, room: &str) -> Vec<u64> {
        let mut v = Vec::new();
        idx.for_each_subscriber(room, |c| v.push(c.id));
        v.sort();
        v
    }

    #[test]
    fn exact_and_wildcard_subscribers_get_each_publish_once() {
        let mut idx = RoomIndex::default();
        let (a, b, c) = (conn(1), conn(2), conn(3));
        idx.subscribe(&p("chat.lobby"), &a);
        idx.subscribe(&p("chat.*"), &a);
        idx.subscribe(&p("chat.*"), &b);
        idx.subscribe(&p("*.alert"), &c);
        assert_eq!(hits(&idx, "chat.lobby"), [1, 2]);
        assert_eq!(hits(&idx, "chat.other"), [1, 2]);
        assert_eq!(hits(&idx, "ops.alert"), [3]);
        assert_eq!(hits(&idx, "chat.lobby.west"), Vec::<u64>::new());
    }

    #[test]
    fn unsubscribe_removes_only_that_pattern_and_empties_buckets() {
        let mut idx = RoomIndex::default();
        let a = conn(1);
        idx.subscribe(&p("chat.lobby"), &a);
        idx.subscribe(&p("chat.*"), &a);
        idx.unsubscribe(&p("chat.*"), 1);
        assert_eq!(hits(&idx, "chat.other"), Vec::<u64>::new());
        assert_eq!(hits(&idx, "chat.lobby"), [1]);
        idx.unsubscribe(&p("chat.lobby"), 1);
        assert!(idx.is_empty());
        idx.unsubscribe(&p("never.joined"), 1);
        assert!(idx.is_empty());
    }
}
