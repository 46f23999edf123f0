//! The ring a node routes by, and how a newer one reaches every core.
//!
//! One [`RingSlot`] per node holds the newest ring: the static `--ring` at
//! start-up, then every newer version the control plane publishes (the
//! follower thread of `--control`, see `crate::control::client`). Cores never
//! lock it on the message path: each keeps its own `Arc` of the ring and
//! compares versions on its housekeeping tick (100 ms), swapping when the
//! slot holds a newer one.
//!
//! Invariant: the slot's version only grows; a ring older than or equal to
//! the one held is ignored.

use std::sync::{
    atomic::{AtomicU64, Ordering},
    Arc, Mutex,
};

use crate::ring::{Ring, RingConfig, RingError};

/// See the module docs.
#[derive(Default)]
pub struct RingSlot {
    version: AtomicU64,
    ring: Mutex<Option<Arc<Ring>>>,
    /// The newest version a client said exists (the `ring=` of an
    /// upgrade): the control-plane follower fetches when it is above ours.
    wanted: AtomicU64,
}

impl RingSlot {
    /// A slot holding `initial` (the static ring), if any.
    pub fn new(initial: Option<Arc<Ring>>) -> RingSlot {
        let slot = RingSlot::default();
        if let Some(ring) = initial {
            slot.version.store(ring.version(), Ordering::Release);
            *slot.ring.lock().expect("ring slot") = Some(ring);
        }
        slot
    }

    /// Holds `ring` if it is newer than the one held; true when it was.
    pub fn publish(&self, ring: Ring) -> bool {
        let mut held = self.ring.lock().expect("ring slot");
        if held.as_ref().is_some_and(|r| r.version() >= ring.version()) {
            return false;
        }
        self.version.store(ring.version(), Ordering::Release);
        *held = Some(Arc::new(ring));
        true
    }

    /// The version held (0: none).
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    /// Holds the ring of `config` if it is newer than the one held; true
    /// when it was. Built from the held ring by one incremental change when
    /// it is one (`Ring::successor`: 2–5× cheaper than a full build at
    /// M = 2^20, and the time between a ring's publication and its use
    /// here is the node's share of a failover); nothing is built for a
    /// version already held (both followers see each version).
    pub fn offer(&self, config: RingConfig) -> Result<bool, RingError> {
        if config.version <= self.version() {
            return Ok(false);
        }
        let ring = match self.current() {
            Some(held) => held.successor(config)?,
            None => Ring::new(config)?,
        };
        Ok(self.publish(ring))
    }

    /// Records that version `version` exists somewhere (a client was sent
    /// here by it).
    pub fn want(&self, version: u64) {
        self.wanted.fetch_max(version, Ordering::Relaxed);
    }

    /// The newest version [`RingSlot::want`] was told of (0: none).
    pub fn wanted(&self) -> u64 {
        self.wanted.load(Ordering::Relaxed)
    }

    /// The ring held.
    pub fn current(&self) -> Option<Arc<Ring>> {
        self.ring.lock().expect("ring slot").clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ring::{Node, RingConfig};

    fn ring(version: u64) -> Ring {
        Ring::new(RingConfig {
            version,
            slots: 64,
            nodes: vec![Node::new("a", 1.0)],
        })
        .unwrap()
    }

    #[test]
    fn only_newer_rings_replace_the_one_held() {
        let slot = RingSlot::new(Some(Arc::new(ring(3))));
        assert_eq!(slot.version(), 3);
        assert!(!slot.publish(ring(3)));
        assert!(!slot.publish(ring(2)));
        assert!(slot.publish(ring(4)));
        assert_eq!(slot.current().unwrap().version(), 4);
    }
}
