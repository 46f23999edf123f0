//! The ring's input and published shape: nodes, snapshots, changes, and the
//! validation errors.
//!
//! Owns: [`Node`], [`RingConfig`] (what the control plane publishes and every
//! process builds from), [`Change`] (one-node changes) and [`RingError`].
//! Invariant: a [`RingConfig`] that passes [`RingConfig::validate`] can be
//! built into a ring; nothing here panics on bad input.

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Smallest accepted weight.
pub const MIN_WEIGHT: f64 = 1e-9;
/// Largest accepted weight. Weights are relative: only ratios matter.
pub const MAX_WEIGHT: f64 = 1e9;
/// Smallest accepted slot count.
pub const MIN_SLOTS: u64 = 1;
/// Largest accepted slot count (2^26; a ring of that size holds 1.5 GiB).
pub const MAX_SLOTS: u64 = 1 << 26;
/// Default slot count for a cluster: 2^20 (see docs/ring.md, "M policy").
pub const DEFAULT_SLOTS: u64 = 1 << 20;
/// Most nodes a ring accepts (node indices are 16 bits in the slot table).
pub const MAX_NODES: usize = u16::MAX as usize;

/// A member of the ring.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Node {
    /// Unique, non-empty id; it alone decides the node's scores.
    pub id: String,
    /// Relative capacity: the node receives `weight / Σ weight` of the slots.
    pub weight: f64,
    /// Failure domain (rack, availability zone); used for zone-aware
    /// fallbacks, never for placement.
    #[serde(default)]
    pub zone: String,
    /// Where clients reach the node (for example its WebSocket URL).
    #[serde(default)]
    pub addr: String,
}

impl Node {
    /// A node with the given id and weight, empty zone and address.
    pub fn new(id: impl Into<String>, weight: f64) -> Self {
        Node {
            id: id.into(),
            weight,
            zone: String::new(),
            addr: String::new(),
        }
    }
}

/// A versioned ring snapshot: the JSON shape the control plane publishes,
/// `{"version":…, "slots":…, "nodes":[{"id","weight","zone","addr"},…]}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RingConfig {
    /// Monotonic ring version; same version, same table.
    pub version: u64,
    /// `M`, the number of slots: a power of two, fixed for a cluster.
    pub slots: u64,
    /// The members, in any order.
    pub nodes: Vec<Node>,
}

/// A one-node change, applied with [`super::Ring::apply`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum Change {
    /// A new node joins.
    Add {
        /// The joining node.
        node: Node,
    },
    /// A node leaves.
    Remove {
        /// Id of the leaving node.
        id: String,
    },
    /// A node's weight changes (zone and address stay).
    Reweight {
        /// Id of the node.
        id: String,
        /// Its new weight.
        weight: f64,
    },
}

/// Why a ring could not be built or changed.
#[derive(Clone, Debug, PartialEq, Error)]
pub enum RingError {
    /// The node list is empty.
    #[error("a ring needs at least one node")]
    NoNodes,
    /// More than [`MAX_NODES`] nodes.
    #[error("too many nodes: {0} (at most {MAX_NODES})")]
    TooManyNodes(usize),
    /// A node id is the empty string.
    #[error("node id must not be empty")]
    EmptyNodeId,
    /// Two nodes share an id.
    #[error("duplicate node id {0:?}")]
    DuplicateNode(String),
    /// A weight is zero, negative, NaN, infinite or out of range.
    #[error(
        "node {id:?} has invalid weight {weight}: must be finite, in [{MIN_WEIGHT}, {MAX_WEIGHT}]"
    )]
    InvalidWeight {
        /// The node.
        id: String,
        /// The rejected weight.
        weight: f64,
    },
    /// `slots` is not a power of two.
    #[error("slot count {0} is not a power of two")]
    SlotsNotPowerOfTwo(u64),
    /// `slots` is outside [`MIN_SLOTS`, `MAX_SLOTS`].
    #[error("slot count {0} is out of range [{MIN_SLOTS}, {MAX_SLOTS}]")]
    SlotsOutOfRange(u64),
    /// An added node's id is already in the ring.
    #[error("node {0:?} is already in the ring")]
    NodeExists(String),
    /// A removed or reweighted node is not in the ring.
    #[error("node {0:?} is not in the ring")]
    UnknownNode(String),
    /// Removing the only node would leave an empty ring.
    #[error("cannot remove {0:?}: it is the last node")]
    LastNode(String),
    /// The version cannot be incremented.
    #[error("ring version {0} cannot be incremented")]
    VersionOverflow(u64),
}

/// Checks one node on its own.
pub(crate) fn validate_node(node: &Node) -> Result<(), RingError> {
    if node.id.is_empty() {
        return Err(RingError::EmptyNodeId);
    }
    validate_weight(&node.id, node.weight)
}

/// Checks a weight.
pub(crate) fn validate_weight(id: &str, weight: f64) -> Result<(), RingError> {
    // `contains` is false for NaN, so NaN is rejected too.
    if !(MIN_WEIGHT..=MAX_WEIGHT).contains(&weight) {
        return Err(RingError::InvalidWeight {
            id: id.to_string(),
            weight,
        });
    }
    Ok(())
}

impl RingConfig {
    /// Checks the snapshot; returns `log2(slots)` when it is valid.
    pub fn validate(&self) -> Result<u32, RingError> {
        if !self.slots.is_power_of_two() && self.slots != 0 {
            return Err(RingError::SlotsNotPowerOfTwo(self.slots));
        }
        if !(MIN_SLOTS..=MAX_SLOTS).contains(&self.slots) {
            return Err(RingError::SlotsOutOfRange(self.slots));
        }
        if self.nodes.is_empty() {
            return Err(RingError::NoNodes);
        }
        if self.nodes.len() > MAX_NODES {
            return Err(RingError::TooManyNodes(self.nodes.len()));
        }
        for node in &self.nodes {
            validate_node(node)?;
        }
        let mut ids: Vec<&str> = self.nodes.iter().map(|n| n.id.as_str()).collect();
        ids.sort_unstable();
        if let Some(pair) = ids.windows(2).find(|p| p[0] == p[1]) {
            return Err(RingError::DuplicateNode(pair[0].to_string()));
        }
        Ok(self.slots.trailing_zeros())
    }
}
