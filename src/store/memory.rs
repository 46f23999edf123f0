//! The embedded store: buffers in the owning core's memory.
//!
//! Used when the node runs without Redis. A user's entry lives until its TTL
//! passes with no new message and no connection touching it; `expire` is
//! called by the core's housekeeping timer. Nothing survives a restart of
//! the process: that is what the Redis store is for.

use std::{
    cell::RefCell,
    collections::VecDeque,
    time::{Duration, Instant},
};

use bytes::Bytes;
use rustc_hash::FxHashMap;

use crate::protocol::DirectTemplate;

use super::{Appended, Session, SessionAt, Store, StoreError, StoredMessage};

struct UserBuffer {
    last_offset: u64,
    delivered: u64,
    messages: VecDeque<StoredMessage>,
    touched: Instant,
}

/// In-memory offsets and buffers for the users of one core.
pub struct MemoryStore {
    users: RefCell<FxHashMap<Box<str>, UserBuffer>>,
    capacity: usize,
    ttl: Duration,
}

impl MemoryStore {
    /// A store keeping the last `capacity` (W) messages per user for `ttl`.
    pub fn new(capacity: usize, ttl: Duration) -> MemoryStore {
        MemoryStore {
            users: RefCell::default(),
            capacity: capacity.max(1),
            ttl,
        }
    }

    fn with_user<T>(&self, user: &str, f: impl FnOnce(&mut UserBuffer) -> T) -> T {
        let mut users = self.users.borrow_mut();
        let entry = match users.get_mut(user) {
            Some(e) => e,
            None => users.entry(user.into()).or_insert_with(|| UserBuffer {
                last_offset: 0,
                delivered: 0,
                messages: VecDeque::new(),
                touched: Instant::now(),
            }),
        };
        f(entry)
    }

    fn peek<T>(&self, user: &str, f: impl FnOnce(&UserBuffer) -> T, absent: T) -> T {
        self.users.borrow().get(user).map_or(absent, f)
    }

    /// Number of users with an entry.
    pub fn len(&self) -> usize {
        self.users.borrow().len()
    }

    /// True when no user has an entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Store for MemoryStore {
    async fn append(&self, user: &str, message: &DirectTemplate) -> Result<Appended, StoreError> {
        let message = self.with_user(user, |u| {
            u.last_offset += 1;
            let msg = StoredMessage {
                offset: u.last_offset,
                envelope: Bytes::from(message.with_offset(u.last_offset)),
            };
            if u.messages.len() == self.capacity {
                u.messages.pop_front();
            }
            u.messages.push_back(msg.clone());
            u.touched = Instant::now();
            msg
        });
        Ok(Appended {
            message,
            session: SessionAt::Unknown,
        })
    }

    async fn read_after(&self, user: &str, after: u64) -> Result<Vec<StoredMessage>, StoreError> {
        Ok(self.peek(
            user,
            |u| {
                // Offsets in the buffer are consecutive, so the start is an index.
                let first = u.messages.front().map_or(0, |m| m.offset);
                let skip = (after + 1).saturating_sub(first) as usize;
                u.messages.iter().skip(skip).cloned().collect()
            },
            Vec::new(),
        ))
    }

    async fn last_offset(&self, user: &str) -> Result<u64, StoreError> {
        Ok(self.peek(user, |u| u.last_offset, 0))
    }

    async fn delivered(&self, user: &str) -> Result<u64, StoreError> {
        Ok(self.peek(user, |u| u.delivered, 0))
    }

    async fn set_delivered(&self, user: &str, offset: u64) -> Result<(), StoreError> {
        self.with_user(user, |u| {
            u.delivered = u.delivered.max(offset.min(u.last_offset));
            u.touched = Instant::now();
        });
        Ok(())
    }

    /// In one process the session is the shard's own map of connections:
    /// nothing to record, and no entry is made for a user without messages
    /// (an idle connection costs the store nothing). Keeps the entry fresh.
    async fn open_session(&self, user: &str, _session: &Session) -> Result<(), StoreError> {
        self.touch(user).await
    }

    /// Nothing recorded, nothing to forget (see `open_session`).
    async fn close_session(&self, _user: &str, _session: &Session) -> Result<(), StoreError> {
        Ok(())
    }

    /// Users with a live connection are kept fresh by this.
    async fn touch(&self, user: &str) -> Result<(), StoreError> {
        if let Some(u) = self.users.borrow_mut().get_mut(user) {
            u.touched = Instant::now();
        }
        Ok(())
    }

    /// Drops users whose buffer was not touched for the TTL.
    fn expire(&self, now: Instant) -> usize {
        let mut users = self.users.borrow_mut();
        let before = users.len();
        users.retain(|_, u| now.duration_since(u.touched) < self.ttl);
        before - users.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite::future::block_on;

    fn env() -> DirectTemplate {
        DirectTemplate {
            head: b"m".to_vec(),
            tail: Vec::new(),
        }
    }

    #[test]
    fn offsets_are_consecutive_per_user() {
        let s = MemoryStore::new(10, Duration::from_secs(60));
        block_on(async {
            for want in 1..=3 {
                assert_eq!(s.append("a", &env()).await.unwrap().message.offset, want);
            }
            assert_eq!(s.append("b", &env()).await.unwrap().message.offset, 1);
            assert_eq!(s.last_offset("a").await.unwrap(), 3);
        });
    }

    #[test]
    fn buffer_keeps_the_last_w_and_replays_after_an_offset() {
        let s = MemoryStore::new(3, Duration::from_secs(60));
        block_on(async {
            for _ in 0..5 {
                s.append("a", &env()).await.unwrap();
            }
            let all: Vec<u64> = s
                .read_after("a", 0)
                .await
                .unwrap()
                .iter()
                .map(|m| m.offset)
                .collect();
            assert_eq!(all, [3, 4, 5]);
            let tail: Vec<u64> = s
                .read_after("a", 4)
                .await
                .unwrap()
                .iter()
                .map(|m| m.offset)
                .collect();
            assert_eq!(tail, [5]);
            assert!(s.read_after("a", 5).await.unwrap().is_empty());
            assert!(s.read_after("nobody", 0).await.unwrap().is_empty());
            assert_eq!(
                s.read_after("a", 3).await.unwrap()[0].envelope,
                Bytes::from("m4")
            );
        });
    }

    #[test]
    fn delivered_mark_only_moves_forward_and_not_past_the_last_offset() {
        let s = MemoryStore::new(3, Duration::from_secs(60));
        block_on(async {
            s.append("a", &env()).await.unwrap();
            s.append("a", &env()).await.unwrap();
            s.set_delivered("a", 2).await.unwrap();
            s.set_delivered("a", 1).await.unwrap();
            assert_eq!(s.delivered("a").await.unwrap(), 2);
            s.set_delivered("a", 99).await.unwrap();
            assert_eq!(s.delivered("a").await.unwrap(), 2);
        });
    }

    #[test]
    fn untouched_users_expire_after_the_ttl() {
        let s = MemoryStore::new(3, Duration::from_millis(1));
        block_on(async {
            s.append("a", &env()).await.unwrap();
        });
        assert_eq!(s.expire(Instant::now() + Duration::from_millis(5)), 1);
        assert!(s.is_empty());
    }
}
