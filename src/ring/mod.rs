//! The ring: which node owns each user.
//!
//! Owns: [`Ring`], an immutable, versioned snapshot of the cluster's
//! membership with its slot table, and everything needed to build, query,
//! change and publish it. Pure: no I/O, no clock, no global state, no
//! threads; every process that builds a ring from the same [`RingConfig`]
//! gets the same table.
//!
//! Design (docs/ring.md has the full page):
//! * a fixed skeleton of `M = 2^m` slots; a user maps to a slot by a fixed
//!   64-bit hash ([`key_hash`], XXH3) — the same answer forever;
//! * each slot is owned by the weighted-rendezvous winner
//!   `argmin_i E_i(s) / w_i`, where `E_i(s) ~ Exp(1)` is a fixed function of
//!   (node id, slot) (module `skeleton`); the runner-up is kept too;
//! * lookup is hash → slot → owner, O(1); changes of one node are applied
//!   incrementally and give exactly the full build's table.
//!
//! Invariants:
//! * the table depends only on the set of (id, weight) pairs and `M`: not on
//!   input order, history, zone or address;
//! * a slot's ranking is ascending by (score, node id); its second entry is
//!   where the slot goes if its owner leaves;
//! * a one-node change moves only slots to or from that node.

mod build;
mod config;
mod eval;
mod hash;
mod skeleton;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_quality;

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub use config::{
    Change, Node, RingConfig, RingError, DEFAULT_SLOTS, MAX_NODES, MAX_SLOTS, MAX_WEIGHT,
    MIN_SLOTS, MIN_WEIGHT,
};
pub use hash::{key_hash, node_key, slot_of_hash, NODE_SEED};

use build::{Index, Tables, NO_NODE};
use config::{validate_node, validate_weight};
use eval::{Entry, GroupEval, Members};
use skeleton::Geometry;

/// An immutable, versioned ring snapshot with its slot table.
///
/// Cheap to share (`Arc<Ring>`) and never mutated: [`Ring::apply`] returns a
/// new ring, so readers keep using the old one until they swap.
#[derive(Clone)]
pub struct Ring {
    version: u64,
    geo: Geometry,
    /// Members in canonical order: ascending id. Node indices refer to it.
    nodes: Vec<Node>,
    /// `node_key(id)` per node.
    keys: Vec<u64>,
    /// `1 / weight` per node: scores are `E · (1/w)`.
    inv_weights: Vec<f64>,
    tables: Tables,
}

impl Ring {
    /// Validates `config` and builds its ring (a full build).
    pub fn new(config: RingConfig) -> Result<Ring, RingError> {
        let slots_log2 = config.validate()?;
        let mut nodes = config.nodes;
        nodes.sort_unstable_by(|a, b| a.id.cmp(&b.id));
        let keys = nodes.iter().map(|n| node_key(&n.id)).collect();
        let inv_weights = nodes.iter().map(|n| 1.0 / n.weight).collect();
        let mut ring = Ring {
            version: config.version,
            geo: Geometry::new(slots_log2),
            nodes,
            keys,
            inv_weights,
            tables: Tables {
                owners: Vec::new(),
                runners: Vec::new(),
                scores: Vec::new(),
            },
        };
        ring.tables = build::full(&ring.geo, ring.members());
        Ok(ring)
    }

    /// The ring of `config`, made from `self` by one incremental change
    /// when `config` differs from it by exactly one node joining, leaving
    /// or changing weight (the same table a full build gives, faster: a
    /// node following a control plane gets one such change per version);
    /// otherwise a full build.
    pub fn successor(&self, config: RingConfig) -> Result<Ring, RingError> {
        match self.one_change_to(&config) {
            Some(change) => Ok(self.apply(&change)?.with_version(config.version)),
            None => Ring::new(config),
        }
    }

    fn one_change_to(&self, config: &RingConfig) -> Option<Change> {
        if config.slots != self.slots() as u64 {
            return None;
        }
        let mut next: Vec<&Node> = config.nodes.iter().collect();
        next.sort_by(|a, b| a.id.cmp(&b.id));
        let (old, new) = (&self.nodes, &next);
        let differs = |a: &Node, b: &Node| a != b;
        if new.len() == old.len() + 1 {
            // One added: every old node is in `new` unchanged.
            let added: Vec<&Node> = new
                .iter()
                .copied()
                .filter(|n| self.node(&n.id).is_none())
                .collect();
            let kept = old.iter().all(|o| new.iter().any(|n| !differs(o, n)));
            return (added.len() == 1 && kept).then(|| Change::Add {
                node: added[0].clone(),
            });
        }
        if new.len() + 1 == old.len() {
            let gone: Vec<&Node> = old
                .iter()
                .filter(|o| !new.iter().any(|n| n.id == o.id))
                .collect();
            let kept = new.iter().all(|n| old.iter().any(|o| !differs(o, n)));
            return (gone.len() == 1 && kept).then(|| Change::Remove {
                id: gone[0].id.clone(),
            });
        }
        if new.len() == old.len() {
            let changed: Vec<(&Node, &Node)> = old
                .iter()
                .zip(new.iter().copied())
                .filter(|(o, n)| differs(o, n))
                .collect();
            if let [(o, n)] = changed[..] {
                let same_but_weight = o.id == n.id && o.zone == n.zone && o.addr == n.addr;
                return same_but_weight.then(|| Change::Reweight {
                    id: n.id.clone(),
                    weight: n.weight,
                });
            }
        }
        None
    }

    /// The snapshot this ring was built from (nodes in ascending id order).
    pub fn config(&self) -> RingConfig {
        RingConfig {
            version: self.version,
            slots: self.slots() as u64,
            nodes: self.nodes.clone(),
        }
    }

    /// The ring version.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The same ring (members and table) under another version: for a
    /// control plane that must publish above a version the nodes already
    /// have (see `control::membership`).
    pub fn with_version(mut self, version: u64) -> Ring {
        self.version = version;
        self
    }

    /// `M`, the number of slots.
    pub fn slots(&self) -> usize {
        1 << self.geo.slots_log2
    }

    /// The members, in ascending id order.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// The member with this id.
    pub fn node(&self, id: &str) -> Option<&Node> {
        self.index_of(id).ok().map(|i| &self.nodes[i])
    }

    /// The slot of a user id.
    #[inline]
    pub fn slot_of(&self, user: &str) -> u32 {
        slot_of_hash(key_hash(user), self.geo.slots_log2)
    }

    /// The node that owns `user`: hash, slot, table read. O(1).
    #[inline]
    pub fn lookup(&self, user: &str) -> &Node {
        self.slot_owner(self.slot_of(user))
    }

    /// The node that owns `slot` (`slot < M`; panics otherwise).
    #[inline]
    pub fn slot_owner(&self, slot: u32) -> &Node {
        &self.nodes[self.slot_owner_index(slot)]
    }

    /// The index in [`Ring::nodes`] of the owner of `slot`.
    #[inline]
    pub fn slot_owner_index(&self, slot: u32) -> usize {
        self.tables.owners[slot as usize] as usize
    }

    /// The owner of `user` and, unless the ring has one node, the node the
    /// user moves to if the owner leaves. O(1).
    #[inline]
    pub fn lookup_pair(&self, user: &str) -> (&Node, Option<&Node>) {
        let slot = self.slot_of(user) as usize;
        let owner = &self.nodes[self.tables.owners[slot] as usize];
        let runner = self.tables.runners[slot];
        (
            owner,
            (runner != NO_NODE).then(|| &self.nodes[runner as usize]),
        )
    }

    /// The first `min(k, N)` nodes of the user's slot ranking: `[0]` is
    /// [`Ring::lookup`], `[1]` is where the user lands if `[0]` leaves, and
    /// so on. O(1) for `k ≤ 2`; deeper rankings are evaluated on demand in
    /// O(N + k·G) (G = slots per group, ≤ 16384).
    pub fn lookup_n(&self, user: &str, k: usize) -> Vec<&Node> {
        let slot = self.slot_of(user);
        self.slot_ranking(slot, k)
            .into_iter()
            .map(|i| &self.nodes[i])
            .collect()
    }

    /// The best-ranked node of `user`'s slot outside the owner's zone (a
    /// zone-aware fallback), or `None` if every node shares the owner's
    /// zone. O(1) when the runner-up qualifies.
    pub fn lookup_outside_zone(&self, user: &str) -> Option<&Node> {
        let slot = self.slot_of(user);
        let owner_zone = &self.slot_owner(slot).zone;
        let mut k = 2;
        loop {
            let ranking = self.slot_ranking(slot, k);
            if let Some(&i) = ranking.iter().find(|&&i| self.nodes[i].zone != *owner_zone) {
                return Some(&self.nodes[i]);
            }
            if ranking.len() < k {
                return None;
            }
            k *= 4;
        }
    }

    /// Node indices (into [`Ring::nodes`]) of the first `min(k, N)` entries
    /// of `slot`'s ranking.
    fn slot_ranking(&self, slot: u32, k: usize) -> Vec<usize> {
        let k = k.min(self.nodes.len());
        let s = slot as usize;
        if k <= 2 {
            let both = [self.tables.owners[s], self.tables.runners[s]];
            return both[..k]
                .iter()
                .filter(|&&i| i != NO_NODE)
                .map(|&i| i as usize)
                .collect();
        }
        self.deep_ranking(slot, k)
            .iter()
            .map(|e| e.node as usize)
            .collect()
    }

    /// The top `k` of one slot, evaluated from the definition.
    fn deep_ranking(&self, slot: u32, k: usize) -> Vec<Entry> {
        let mut eval = GroupEval::new(&self.geo, k);
        let col = slot & (self.geo.group_size() as u32 - 1);
        eval.run(self.members(), slot >> self.geo.group_log2, Some(&[col]));
        eval.ranking(0).1.to_vec()
    }

    /// Applies a one-node change and returns the next version (`version + 1`).
    ///
    /// The result is exactly the ring [`Ring::new`] builds from the changed
    /// snapshot; only slots to or from the changed node move. `self` is not
    /// touched, so readers keep using it meanwhile.
    pub fn apply(&self, change: &Change) -> Result<Ring, RingError> {
        let version = self
            .version
            .checked_add(1)
            .ok_or(RingError::VersionOverflow(self.version))?;
        let mut next = match change {
            Change::Add { node } => self.with_added(node)?,
            Change::Remove { id } => self.with_removed(id)?,
            Change::Reweight { id, weight } => self.with_weight(id, *weight)?,
        };
        next.version = version;
        Ok(next)
    }

    fn with_added(&self, node: &Node) -> Result<Ring, RingError> {
        validate_node(node)?;
        let pos = match self.index_of(&node.id) {
            Ok(_) => return Err(RingError::NodeExists(node.id.clone())),
            Err(pos) => pos,
        };
        if self.nodes.len() >= MAX_NODES {
            return Err(RingError::TooManyNodes(self.nodes.len() + 1));
        }
        let mut next = self.remapped(|i| if i >= pos as u32 { i + 1 } else { i });
        next.nodes.insert(pos, node.clone());
        next.keys.insert(pos, node_key(&node.id));
        next.inv_weights.insert(pos, 1.0 / node.weight);
        next.admit(pos as u32);
        Ok(next)
    }

    fn with_removed(&self, id: &str) -> Result<Ring, RingError> {
        let pos = self
            .index_of(id)
            .map_err(|_| RingError::UnknownNode(id.to_string()))?;
        if self.nodes.len() == 1 {
            return Err(RingError::LastNode(id.to_string()));
        }
        let affected = self.slots_listing(pos as u32);
        let gone = pos as u32;
        let mut next = self.remapped(|i| if i > gone { i - 1 } else { i });
        next.nodes.remove(pos);
        next.keys.remove(pos);
        next.inv_weights.remove(pos);
        next.recompute(&affected);
        Ok(next)
    }

    fn with_weight(&self, id: &str, weight: f64) -> Result<Ring, RingError> {
        validate_weight(id, weight)?;
        let pos = self
            .index_of(id)
            .map_err(|_| RingError::UnknownNode(id.to_string()))?;
        let mut next = self.clone();
        next.nodes[pos].weight = weight;
        let (old, new) = (self.inv_weights[pos], 1.0 / weight);
        next.inv_weights[pos] = new;
        if new < old {
            next.admit(pos as u32);
        } else if new > old {
            let affected = self.slots_listing(pos as u32);
            next.recompute(&affected);
        }
        Ok(next)
    }

    /// A copy whose table node indices are mapped through `f`.
    fn remapped(&self, f: impl Fn(u32) -> u32) -> Ring {
        let map = |i: Index| {
            if i == NO_NODE {
                NO_NODE
            } else {
                f(i as u32) as Index
            }
        };
        Ring {
            version: self.version,
            geo: self.geo.clone(),
            nodes: self.nodes.clone(),
            keys: self.keys.clone(),
            inv_weights: self.inv_weights.clone(),
            tables: Tables {
                owners: self.tables.owners.iter().map(|&i| map(i)).collect(),
                runners: self.tables.runners.iter().map(|&i| map(i)).collect(),
                scores: self.tables.scores.clone(),
            },
        }
    }

    /// Slots (ascending) whose owner or runner-up is node `i`.
    fn slots_listing(&self, i: u32) -> Vec<u32> {
        let t = &self.tables;
        let i = i as Index;
        (0..t.owners.len() as u32)
            .filter(|&s| t.owners[s as usize] == i || t.runners[s as usize] == i)
            .collect()
    }

    fn index_of(&self, id: &str) -> Result<usize, usize> {
        self.nodes.binary_search_by(|n| n.id.as_str().cmp(id))
    }

    fn members(&self) -> Members<'_> {
        members(&self.nodes, &self.keys, &self.inv_weights)
    }

    /// See [`build::admit`].
    fn admit(&mut self, j: u32) {
        let members = members(&self.nodes, &self.keys, &self.inv_weights);
        build::admit(&mut self.tables, &self.geo, members, j);
    }

    /// See [`build::recompute`].
    fn recompute(&mut self, slots: &[u32]) {
        let members = members(&self.nodes, &self.keys, &self.inv_weights);
        build::recompute(&mut self.tables, &self.geo, members, slots);
    }

    /// Bytes held by the ring: the slot table (20 bytes per slot) plus the
    /// members.
    pub fn memory_bytes(&self) -> usize {
        let per_slot = 2 * std::mem::size_of::<Index>() + std::mem::size_of::<[f64; 2]>();
        let per_node = std::mem::size_of::<Node>() + 2 * std::mem::size_of::<u64>();
        let strings: usize = self
            .nodes
            .iter()
            .map(|n| n.id.capacity() + n.zone.capacity() + n.addr.capacity())
            .sum();
        self.slots() * per_slot + self.nodes.len() * per_node + strings
    }
}

/// The evaluator's view of a node list.
fn members<'a>(nodes: &[Node], keys: &'a [u64], inv_weights: &'a [f64]) -> Members<'a> {
    Members {
        keys,
        inv_weights,
        total_weight: nodes.iter().map(|n| n.weight).sum(),
    }
}

impl PartialEq for Ring {
    /// Same version, same members, same table (owners, runners-up and their
    /// scores, bit for bit).
    fn eq(&self, other: &Ring) -> bool {
        self.version == other.version
            && self.geo.slots_log2 == other.geo.slots_log2
            && self.nodes == other.nodes
            && self.tables == other.tables
    }
}

impl fmt::Debug for Ring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ring")
            .field("version", &self.version)
            .field("slots", &self.slots())
            .field("nodes", &self.nodes.len())
            .finish_non_exhaustive()
    }
}

impl TryFrom<RingConfig> for Ring {
    type Error = RingError;
    fn try_from(config: RingConfig) -> Result<Ring, RingError> {
        Ring::new(config)
    }
}

impl Serialize for Ring {
    /// A ring serializes as its [`RingConfig`]; the table is recomputed on
    /// load (it is a pure function of the snapshot).
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct View<'a> {
            version: u64,
            slots: u64,
            nodes: &'a [Node],
        }
        View {
            version: self.version,
            slots: self.slots() as u64,
            nodes: &self.nodes,
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Ring {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Ring, D::Error> {
        let config = RingConfig::deserialize(deserializer)?;
        Ring::new(config).map_err(serde::de::Error::custom)
    }
}
