//! Membership: which nodes are in the ring, and the ring they make.
//!
//! Owns: the live members (from heartbeats), the current [`Ring`] and its
//! version. Pure apart from the clock values its callers pass and the
//! persistence hook it is built with; no threads, no sockets.
//!
//! Rules:
//! * a node joins on its first heartbeat (its weight and zone from it) and
//!   leaves when it reports `draining` or its last heartbeat is older than
//!   the grace period, or is evicted because its port refused a probe
//!   (see `probe`); a heartbeat with another weight, zone or URL updates
//!   the member;
//! * every change is one new ring version: one node per version, computed
//!   with [`Ring::apply`] (incremental) when the slot table changes;
//! * versions only grow: the next one is above the last published one and
//!   above every `ringVersion` a node reported (a node that reports a newer
//!   version than ours makes us republish the same membership above it);
//! * a version is handed to the persistence hook before it becomes
//!   current; if the hook fails, nothing changes and the caller gets the
//!   error (the change is retried by the next heartbeat or expiry pass).

use std::{
    collections::{BTreeMap, VecDeque},
    io,
    sync::Arc,
    time::{Duration, Instant},
};

use thiserror::Error;

use super::heartbeat::Heartbeat;
use crate::ring::{Change, Node, Ring, RingConfig, RingError};

/// Most departed node ids remembered (for the `unknown_node` rule).
const MAX_DEPARTED: usize = 4096;

/// Writes a snapshot durably before it becomes current.
pub type PersistHook = Box<dyn FnMut(&RingConfig) -> io::Result<()> + Send>;

/// A member's last reported load.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Load {
    /// Open WebSocket connections.
    pub connections: u64,
    /// Messages per second.
    pub mps: f64,
    /// 95th-percentile latency, milliseconds.
    pub p95_ms: f64,
}

/// A node in the ring.
#[derive(Debug, Clone)]
pub struct Member {
    /// As published in the ring (`addr` is the node's `wsUrl`).
    pub node: Node,
    /// When its last heartbeat arrived.
    pub last_seen: Instant,
    /// What that heartbeat said about its load.
    pub load: Load,
}

/// Why the ring changed (the decision log and the ring-changes counter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeReason {
    /// A node's first heartbeat.
    Joined,
    /// A heartbeat said `draining`.
    Drained,
    /// No heartbeat within the grace period.
    Expired,
    /// A client reported it unreachable and its port refused a probe.
    Unreachable,
    /// A member's weight, zone or URL changed.
    Updated,
    /// A node reported a version at or above ours: same members, higher
    /// version.
    VersionBump,
}

impl ChangeReason {
    /// The reason as logged.
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeReason::Joined => "joined",
            ChangeReason::Drained => "drained",
            ChangeReason::Expired => "expired",
            ChangeReason::Unreachable => "unreachable",
            ChangeReason::Updated => "updated",
            ChangeReason::VersionBump => "version_bump",
        }
    }
}

/// One published ring version.
#[derive(Debug, Clone)]
pub struct RingChange {
    /// The new version.
    pub version: u64,
    /// The node the change is about.
    pub node_id: String,
    /// Why.
    pub reason: ChangeReason,
}

/// What a heartbeat did.
#[derive(Debug, Clone, Default)]
pub struct Beat {
    /// Whether the node is in the ring afterwards.
    pub member: bool,
    /// The ring versions it caused (zero, one, or two: a bump then a join).
    pub changes: Vec<RingChange>,
}

/// A heartbeat or expiry that could not be applied.
#[derive(Debug, Error)]
pub enum MembershipError {
    /// A draining heartbeat from a node this control plane never had.
    #[error("node {0:?} is not in the ring and never was")]
    UnknownNode(String),
    /// The ring refused the change (too many nodes, version overflow).
    #[error("ring: {0}")]
    Ring(#[from] RingError),
    /// The new version could not be persisted; nothing changed.
    #[error("cannot persist ring version {version}: {source}")]
    Persist {
        /// The version that was not published.
        version: u64,
        /// Why.
        source: io::Error,
    },
}

/// The members and the ring they make.
pub struct Membership {
    slots: u64,
    grace: Duration,
    /// The last published version (0: none yet).
    version: u64,
    /// The highest `ringVersion` any node reported.
    floor: u64,
    /// `None` while no node is a member.
    ring: Option<Arc<Ring>>,
    members: BTreeMap<String, Member>,
    /// Nodes that left, oldest first, so a draining node's later
    /// heartbeats are answered, not refused.
    departed: VecDeque<String>,
    persist: PersistHook,
}

impl Membership {
    /// An empty membership whose first version will be above `last_version`
    /// (the persisted one), rings of `slots` slots.
    pub fn new(slots: u64, grace: Duration, last_version: u64, persist: PersistHook) -> Self {
        Membership {
            slots,
            grace,
            version: last_version,
            floor: 0,
            ring: None,
            members: BTreeMap::new(),
            departed: VecDeque::new(),
            persist,
        }
    }

    /// The membership of a persisted snapshot, every node counted as seen
    /// at `now` (so each has a full grace period to heartbeat the restarted
    /// control plane before it leaves). Its version stays the snapshot's:
    /// the same ring is republished, not a new one.
    pub fn restore(
        snapshot: RingConfig,
        grace: Duration,
        now: Instant,
        persist: PersistHook,
    ) -> Result<Self, RingError> {
        let mut m = Membership::new(snapshot.slots, grace, snapshot.version, persist);
        if !snapshot.nodes.is_empty() {
            let ring = Ring::new(snapshot)?;
            for node in ring.nodes() {
                m.members.insert(
                    node.id.clone(),
                    Member {
                        node: node.clone(),
                        last_seen: now,
                        load: Load::default(),
                    },
                );
            }
            m.ring = Some(Arc::new(ring));
        }
        Ok(m)
    }

    /// The last published version (0: none yet).
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The current ring; `None` while there are no members.
    pub fn ring(&self) -> Option<&Arc<Ring>> {
        self.ring.as_ref()
    }

    /// The members, by id.
    pub fn members(&self) -> &BTreeMap<String, Member> {
        &self.members
    }

    /// The published snapshot: `{version, slots, nodes}` (nodes empty while
    /// there are none).
    pub fn snapshot(&self) -> RingConfig {
        match &self.ring {
            Some(ring) => ring.config(),
            None => RingConfig {
                version: self.version,
                slots: self.slots,
                nodes: Vec::new(),
            },
        }
    }

    /// Applies one (checked) heartbeat received at `now`.
    pub fn heartbeat(&mut self, hb: &Heartbeat, now: Instant) -> Result<Beat, MembershipError> {
        self.floor = self.floor.max(hb.ring_version);
        let node = Node {
            id: hb.node_id.clone(),
            weight: hb.weight,
            zone: hb.zone.clone(),
            addr: hb.ws_url.clone(),
        };
        let load = Load {
            connections: hb.connections,
            mps: hb.mps,
            p95_ms: hb.p95_ms,
        };
        let mut beat = Beat::default();
        match self.members.get(&hb.node_id).map(|m| m.node.clone()) {
            None if hb.draining => {
                if !self.departed.contains(&hb.node_id) {
                    return Err(MembershipError::UnknownNode(hb.node_id.clone()));
                }
            }
            None => {
                let version = self.next_version()?;
                let ring = match &self.ring {
                    None => Ring::new(RingConfig {
                        version,
                        slots: self.slots,
                        nodes: vec![node.clone()],
                    })?,
                    Some(ring) => ring
                        .apply(&Change::Add { node: node.clone() })?
                        .with_version(version),
                };
                self.commit(ring)?;
                self.departed.retain(|id| id != &hb.node_id);
                self.members.insert(
                    hb.node_id.clone(),
                    Member {
                        node,
                        last_seen: now,
                        load,
                    },
                );
                beat.member = true;
                beat.changes
                    .push(self.change(&hb.node_id, ChangeReason::Joined));
            }
            Some(_) if hb.draining => {
                self.remove(&hb.node_id)?;
                beat.changes
                    .push(self.change(&hb.node_id, ChangeReason::Drained));
            }
            Some(old) => {
                if old != node {
                    let version = self.next_version()?;
                    let ring = self.current();
                    let ring = if old.zone == node.zone && old.addr == node.addr {
                        ring.apply(&Change::Reweight {
                            id: node.id.clone(),
                            weight: node.weight,
                        })?
                    } else {
                        // Zone and address do not enter the table, but they
                        // are part of the published snapshot.
                        let mut config = ring.config();
                        for n in &mut config.nodes {
                            if n.id == node.id {
                                *n = node.clone();
                            }
                        }
                        Ring::new(config)?
                    };
                    self.commit(ring.with_version(version))?;
                    beat.changes
                        .push(self.change(&hb.node_id, ChangeReason::Updated));
                }
                let member = self.members.get_mut(&hb.node_id).expect("a member");
                member.node = node;
                member.last_seen = now;
                member.load = load;
                beat.member = true;
            }
        }
        if beat.changes.is_empty() && self.floor > self.version && self.ring.is_some() {
            // A node has a version we did not publish (ours was lost, or
            // another control plane ran): publish the same members above
            // it, or the nodes would ignore our rings.
            let version = self.next_version()?;
            let ring = self.current().as_ref().clone().with_version(version);
            self.commit(ring)?;
            beat.changes
                .push(self.change(&hb.node_id, ChangeReason::VersionBump));
        }
        Ok(beat)
    }

    /// Removes every member whose last heartbeat is older than the grace
    /// period at `now`, one version each. Stops at the first error (the
    /// rest are retried on the next pass).
    pub fn expire(&mut self, now: Instant) -> Result<Vec<RingChange>, MembershipError> {
        let late: Vec<String> = self
            .members
            .values()
            .filter(|m| now.saturating_duration_since(m.last_seen) > self.grace)
            .map(|m| m.node.id.clone())
            .collect();
        let mut changes = Vec::with_capacity(late.len());
        for id in late {
            self.remove(&id)?;
            changes.push(self.change(&id, ChangeReason::Expired));
        }
        Ok(changes)
    }

    /// Gives every member a full grace period from `now`: the control
    /// plane itself was not listening (see `Control::tick`), so their
    /// silence proves nothing.
    pub fn forgive(&mut self, now: Instant) {
        for m in self.members.values_mut() {
            m.last_seen = m.last_seen.max(now);
        }
    }

    /// The grace period.
    pub fn grace(&self) -> Duration {
        self.grace
    }

    /// Removes member `id` now (its port refused a probe); `None` when it
    /// is not a member.
    pub fn evict(&mut self, id: &str) -> Result<Option<RingChange>, MembershipError> {
        if !self.members.contains_key(id) {
            return Ok(None);
        }
        self.remove(id)?;
        Ok(Some(self.change(id, ChangeReason::Unreachable)))
    }

    fn remove(&mut self, id: &str) -> Result<(), MembershipError> {
        let version = self.next_version()?;
        if self.members.len() == 1 {
            // The last node left: an empty snapshot still takes a version.
            self.persist_snapshot(&RingConfig {
                version,
                slots: self.slots,
                nodes: Vec::new(),
            })?;
            self.version = version;
            self.ring = None;
        } else {
            let ring = self
                .current()
                .apply(&Change::Remove { id: id.to_owned() })?;
            self.commit(ring.with_version(version))?;
        }
        self.members.remove(id);
        if self.departed.len() == MAX_DEPARTED {
            self.departed.pop_front();
        }
        self.departed.push_back(id.to_owned());
        Ok(())
    }

    /// Persists `ring`'s snapshot, then makes it current.
    fn commit(&mut self, ring: Ring) -> Result<(), MembershipError> {
        self.persist_snapshot(&ring.config())?;
        self.version = ring.version();
        self.ring = Some(Arc::new(ring));
        Ok(())
    }

    fn persist_snapshot(&mut self, snapshot: &RingConfig) -> Result<(), MembershipError> {
        (self.persist)(snapshot).map_err(|source| MembershipError::Persist {
            version: snapshot.version,
            source,
        })
    }

    /// Above the last published version and every reported one.
    fn next_version(&self) -> Result<u64, RingError> {
        let v = self.version.max(self.floor);
        v.checked_add(1).ok_or(RingError::VersionOverflow(v))
    }

    fn current(&self) -> Arc<Ring> {
        Arc::clone(self.ring.as_ref().expect("a member exists, so a ring does"))
    }

    fn change(&self, node_id: &str, reason: ChangeReason) -> RingChange {
        RingChange {
            version: self.version,
            node_id: node_id.to_owned(),
            reason,
        }
    }
}

#[cfg(test)]
#[path = "membership_tests.rs"]
mod tests;
