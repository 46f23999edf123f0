//! Building the slot tables and applying one-node changes to them.
//!
//! Owns: [`Tables`] (each slot's owner and runner-up with their scores) and
//! the three ways to produce them: a full build, [`admit`] (a node whose
//! scores can only have gone down: an added node, a weight increase) and
//! [`recompute`] (slots that lost an entry: a removed node, a weight
//! decrease).
//!
//! Invariant: whatever sequence of changes produced a `Tables`, it equals the
//! full build of the final node set, bit for bit. Why each change is exact:
//! * a node's scores never depend on the other nodes, so a change of node `j`
//!   can only change a slot's top two if `j` is in it before or after;
//! * add / weight up: `j`'s scores only decrease, the others' are fixed, so a
//!   slot's new top two is the old top two with `j` offered again;
//! * remove / weight down: `j`'s scores only increase (or vanish); slots not
//!   listing `j` keep their top two, the slots listing it are re-evaluated
//!   from scratch by the same evaluator a full build uses.

use super::eval::{Entry, GroupEval, Members, NONE};

/// A node index in the slot tables: 16 bits keep the owner table at 2 MiB
/// for M = 2^20, so more lookups hit the L2 cache.
pub(crate) type Index = u16;
/// "No node" in the slot tables (the runner-up of a one-node ring).
pub(crate) const NO_NODE: Index = Index::MAX;

/// Table index of an evaluator node index.
#[inline(always)]
pub(crate) fn to_index(node: u32) -> Index {
    if node == NONE {
        NO_NODE
    } else {
        node as Index
    }
}

/// Evaluator node index of a table index.
#[inline(always)]
pub(crate) fn from_index(i: Index) -> u32 {
    if i == NO_NODE {
        NONE
    } else {
        i as u32
    }
}
use super::skeleton::{band_lo, Geometry, BANDS, GROUP_DEPTH};

/// Per slot: the best node, the second best, and their scores.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Tables {
    /// Owner of each slot (node index).
    pub owners: Vec<Index>,
    /// Runner-up of each slot (node index; [`NO_NODE`] in a one-node ring).
    pub runners: Vec<Index>,
    /// `[owner score, runner-up score]` of each slot (∞ for no runner-up).
    pub scores: Vec<[f64; 2]>,
}

impl Tables {
    /// Stores the ranking of `slot` (best first, one or more entries).
    #[inline]
    fn store(&mut self, slot: usize, ranking: &[Entry]) {
        let second = ranking.get(1).copied().unwrap_or(Entry::EMPTY);
        self.owners[slot] = to_index(ranking[0].node);
        self.runners[slot] = to_index(second.node);
        self.scores[slot] = [ranking[0].score, second.score];
    }

    /// Offers node `e.node` at score `e.score` to `slot`, keeping the node's
    /// smaller score if it is already listed.
    #[inline]
    fn offer(&mut self, slot: usize, e: Entry) {
        let [s0, s1] = self.scores[slot];
        let first = Entry {
            score: s0,
            node: from_index(self.owners[slot]),
        };
        let second = Entry {
            score: s1,
            node: from_index(self.runners[slot]),
        };
        let (a, b) = if first.node == e.node {
            (if e.before(first) { e } else { first }, second)
        } else if second.node == e.node {
            let e = if e.before(second) { e } else { second };
            if e.before(first) {
                (e, first)
            } else {
                (first, e)
            }
        } else if e.before(first) {
            (e, first)
        } else if e.before(second) {
            (first, e)
        } else {
            return;
        };
        self.store(slot, &[a, b]);
    }
}

/// The tables of a full build: every group evaluated from scratch.
pub(crate) fn full(geo: &Geometry, members: Members<'_>) -> Tables {
    let m = 1usize << geo.slots_log2;
    let mut tables = Tables {
        owners: vec![NO_NODE; m],
        runners: vec![NO_NODE; m],
        scores: vec![[f64::INFINITY; 2]; m],
    };
    let mut eval = GroupEval::new(geo, 2);
    for group in 0..geo.groups() {
        eval.run(members, group as u32, None);
        let first = group << geo.group_log2;
        for d in 0..eval.columns() {
            let (col, ranking) = eval.ranking(d);
            tables.store(first + col as usize, ranking);
        }
    }
    tables
}

/// Re-evaluates the given slots (ascending) from scratch.
pub(crate) fn recompute(tables: &mut Tables, geo: &Geometry, members: Members<'_>, slots: &[u32]) {
    let mut eval = GroupEval::new(geo, 2);
    let mut columns = Vec::new();
    let mut rest = slots;
    while let Some(&head) = rest.first() {
        let group = head >> geo.group_log2;
        let len = rest.partition_point(|&s| s >> geo.group_log2 == group);
        let mask = (geo.group_size() - 1) as u32;
        columns.clear();
        columns.extend(rest[..len].iter().map(|&s| s & mask));
        eval.run(members, group, Some(&columns));
        let first = (group as usize) << geo.group_log2;
        for d in 0..eval.columns() {
            let (col, ranking) = eval.ranking(d);
            tables.store(first + col as usize, ranking);
        }
        rest = &rest[len..];
    }
}

/// Offers node `j` to every slot, given that its scores can only have
/// decreased since `tables` was exact (it was just added, or its weight went
/// up). Per group, only `j`'s points scoring at most the group's largest
/// runner-up score can matter; exactly those are generated.
pub(crate) fn admit(tables: &mut Tables, geo: &Geometry, members: Members<'_>, j: u32) {
    let g = geo.group_size();
    let key = members.keys[j as usize];
    let inv_w = members.inv_weights[j as usize];
    let mut values = vec![f64::INFINITY; g];
    let mut touched: Vec<u32> = Vec::new();
    for group in 0..geo.groups() {
        let first = group * g;
        let threshold = tables.scores[first..first + g]
            .iter()
            .fold(0.0f64, |acc, s| acc.max(s[1]));
        let mut band = 0;
        while band < BANDS && band_lo(band) * inv_w <= threshold {
            let cell = geo.cell(key, group as u32, band);
            for t in 0..cell.count {
                let col = cell.column(t);
                let v = cell.value(t);
                if v < values[col] {
                    if values[col] == f64::INFINITY {
                        touched.push(col as u32);
                    }
                    values[col] = v;
                }
            }
            band += 1;
        }
        if band == BANDS {
            // Every band generated: columns without a point take their tail
            // value, needed where it can enter or where j is listed already.
            let tail_floor = GROUP_DEPTH * inv_w;
            for (col, v) in values.iter_mut().enumerate() {
                let slot = first + col;
                let listed =
                    tables.owners[slot] == j as Index || tables.runners[slot] == j as Index;
                if v.is_infinite() && (listed || tail_floor <= tables.scores[slot][1]) {
                    *v = geo.tail_value(key, slot as u32);
                    touched.push(col as u32);
                }
            }
        }
        for &col in &touched {
            let col = col as usize;
            let score = values[col] * inv_w;
            tables.offer(first + col, Entry { score, node: j });
            values[col] = f64::INFINITY;
        }
        touched.clear();
    }
}
