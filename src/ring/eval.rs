//! Exact evaluation of the top-k ranking of the slots of one group.
//!
//! Owns: [`GroupEval`], the one algorithm that turns the point processes of
//! `skeleton` into rankings. Full builds, the slots a change disturbs and the
//! deep rankings of `lookup_n` all go through it, so one proof covers them.
//!
//! A node's score in slot `s` is `E_i(s) · (1/w_i)` (binary64); rankings are
//! ascending by (score, node index), node indices following ascending id.
//!
//! Exactness. The evaluator enumerates points in rounds with a score target
//! `σ` that grows 1.5× each round. For each node it keeps `depth_i`, the start
//! of the first band not generated yet, so every point of node `i` still
//! unseen has a value `≥ depth_i`, hence (rounding is monotone) a score
//! `≥ depth_i · inv_w_i`. Let `c = min_i depth_i · inv_w_i` over the nodes
//! whose bands are not exhausted. A column whose k-th best seen entry is
//! `< c` can gain no better entry: it is settled and exact. When node `i`
//! exhausts its bands (depth 1), every still open column that does not list
//! it gets its tail value, which is the node's `E` in that column unless a
//! smaller band point of the node was seen and rejected; a rejected point was
//! not better than the k-th entry at the time, and the tail value is larger
//! still, so inserting it is harmless either way. Once every node is
//! exhausted, every node's `E` in every open column has been offered, so all
//! columns settle. `σ` only decides how much is generated per round, never
//! the result.

use super::skeleton::{band_after, band_lo, Geometry, BANDS};

/// Marker for "no node" in node-index arrays.
pub(crate) const NONE: u32 = u32::MAX;

/// First score target, in units of `1/Σw`: a slot's second-best score is
/// Gamma(2)-distributed in those units, so most columns settle in round one.
const FIRST_TARGET: f64 = 3.0;

/// One entry of a ranking.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Entry {
    pub score: f64,
    pub node: u32,
}

impl Entry {
    pub(crate) const EMPTY: Entry = Entry {
        score: f64::INFINITY,
        node: NONE,
    };

    /// Ranking order: smaller score first, ties to the smaller node index.
    #[inline(always)]
    pub(crate) fn before(self, other: Entry) -> bool {
        self.score < other.score || (self.score == other.score && self.node < other.node)
    }
}

/// The node set as the evaluator sees it, in canonical (id) order.
#[derive(Clone, Copy)]
pub(crate) struct Members<'a> {
    pub keys: &'a [u64],
    pub inv_weights: &'a [f64],
    pub total_weight: f64,
}

/// Reusable scratch space for evaluating groups of one geometry.
pub(crate) struct GroupEval<'g> {
    geo: &'g Geometry,
    /// Ranking depth.
    k: usize,
    /// Per node: next band to generate in the current group.
    next_band: Vec<u32>,
    /// Per open column (dense index `d`): `k` entries, best first.
    entries: Vec<Entry>,
    /// Per dense column: score of its k-th entry (∞ while it has fewer).
    kth: Vec<f64>,
    /// Per dense column: number of entries.
    count: Vec<u32>,
    /// Per dense column: its column in the group.
    column: Vec<u32>,
    /// Column → dense index (`NONE` if not evaluated); empty in full mode,
    /// where the dense index is the column itself.
    dense: Vec<u32>,
    /// Dense indices of the columns not settled yet.
    open: Vec<u32>,
    /// Bit per column of the group: evaluated and not settled yet. Checked
    /// before a point's value is computed, so settled columns cost little.
    open_bits: Vec<u64>,
}

impl<'g> GroupEval<'g> {
    pub(crate) fn new(geo: &'g Geometry, k: usize) -> Self {
        GroupEval {
            geo,
            k,
            next_band: Vec::new(),
            entries: Vec::new(),
            kth: Vec::new(),
            count: Vec::new(),
            column: Vec::new(),
            dense: Vec::new(),
            open: Vec::new(),
            open_bits: Vec::new(),
        }
    }

    /// Evaluates `group` for the columns listed in `columns` (all columns
    /// when `None`). Read the result with [`GroupEval::ranking`].
    pub(crate) fn run(&mut self, members: Members<'_>, group: u32, columns: Option<&[u32]>) {
        let g = self.geo.group_size();
        let n = members.keys.len();
        let cols: usize;
        self.dense.clear();
        self.column.clear();
        match columns {
            None => {
                cols = g;
                self.column.extend(0..g as u32);
            }
            Some(list) => {
                cols = list.len();
                self.dense.resize(g, NONE);
                for (d, &c) in list.iter().enumerate() {
                    self.dense[c as usize] = d as u32;
                }
                self.column.extend_from_slice(list);
            }
        }
        self.entries.clear();
        self.entries.resize(cols * self.k, Entry::EMPTY);
        self.kth.clear();
        self.kth.resize(cols, f64::INFINITY);
        self.count.clear();
        self.count.resize(cols, 0);
        self.open.clear();
        self.open.extend(0..cols as u32);
        self.open_bits.clear();
        self.open_bits.resize(g.div_ceil(64), 0);
        for &c in &self.column {
            self.open_bits[c as usize / 64] |= 1 << (c % 64);
        }
        self.next_band.clear();
        self.next_band.resize(n, 0);

        let full = columns.is_none();
        let need = self.k.min(n);
        let first = (group as usize) << self.geo.group_log2;
        let mut sigma = FIRST_TARGET / members.total_weight;
        let mut exhausted_now: Vec<u32> = Vec::new();
        loop {
            let mut complete = f64::INFINITY;
            for i in 0..n {
                let mut band = self.next_band[i];
                if band == BANDS {
                    continue;
                }
                let inv_w = members.inv_weights[i];
                // Bands up to value σ·w: every score up to about σ is seen.
                let end = band_after(sigma / inv_w);
                while band < end {
                    self.generate(members.keys[i], group, band, i as u32, inv_w, full);
                    band += 1;
                }
                self.next_band[i] = band;
                if band == BANDS {
                    exhausted_now.push(i as u32);
                } else {
                    complete = complete.min(band_lo(band) * inv_w);
                }
            }
            for &i in &exhausted_now {
                let inv_w = members.inv_weights[i as usize];
                for oi in 0..self.open.len() {
                    let d = self.open[oi] as usize;
                    if !self.lists(d, i) {
                        let slot = (first + self.column[d] as usize) as u32;
                        let score = self.geo.tail_value(members.keys[i as usize], slot) * inv_w;
                        self.offer(d, Entry { score, node: i });
                    }
                }
            }
            exhausted_now.clear();
            let (k, entries, count) = (self.k, &self.entries, &self.count);
            let (column, open_bits) = (&self.column, &mut self.open_bits);
            self.open.retain(|&d| {
                let d = d as usize;
                let settled =
                    count[d] as usize == need && entries[d * k + need - 1].score < complete;
                if settled {
                    let c = column[d] as usize;
                    open_bits[c / 64] &= !(1 << (c % 64));
                }
                !settled
            });
            if self.open.is_empty() {
                return;
            }
            // Growth 1.5 rather than 2: the last round overshoots the score
            // the slowest column needs by at most half (measured: ~20% fewer
            // points than doubling, for one or two more cheap rounds).
            sigma *= 1.5;
        }
    }

    /// Offers every point of node `i` in cell (group, band).
    #[inline(always)]
    fn generate(&mut self, key: u64, group: u32, band: u32, i: u32, inv_w: f64, full: bool) {
        let cell = self.geo.cell(key, group, band);
        let mask = cell.column_mask();
        let mut t = 0;
        while t < cell.count {
            let mut lanes = cell.column_lanes(t / 4);
            let end = (t + 4).min(cell.count);
            while t < end {
                let col = (lanes & mask) as usize;
                lanes >>= 16;
                t += 1;
                if self.open_bits[col / 64] & (1 << (col % 64)) == 0 {
                    continue;
                }
                let d = if full { col } else { self.dense[col] as usize };
                let score = cell.value(t - 1) * inv_w;
                // Fast reject: cannot enter a column whose k-th entry is
                // better.
                if score > self.kth[d] {
                    continue;
                }
                self.offer(d, Entry { score, node: i });
            }
        }
    }

    /// Whether dense column `d` lists node `i`.
    #[inline(always)]
    fn lists(&self, d: usize, i: u32) -> bool {
        let base = d * self.k;
        self.entries[base..base + self.count[d] as usize]
            .iter()
            .any(|e| e.node == i)
    }

    /// Inserts `e` into the ranking of dense column `d`, keeping one entry
    /// per node (its smallest score) and at most `k` entries.
    #[inline(always)]
    fn offer(&mut self, d: usize, e: Entry) {
        let k = self.k;
        let base = d * k;
        let len = self.count[d] as usize;
        let list = &mut self.entries[base..base + k];
        let mut pos = match list[..len].iter().position(|x| x.node == e.node) {
            Some(p) => {
                if !e.before(list[p]) {
                    return;
                }
                list[p] = e;
                p
            }
            None if len < k => {
                list[len] = e;
                self.count[d] += 1;
                len
            }
            None => {
                if !e.before(list[k - 1]) {
                    return;
                }
                list[k - 1] = e;
                k - 1
            }
        };
        while pos > 0 && list[pos].before(list[pos - 1]) {
            list.swap(pos, pos - 1);
            pos -= 1;
        }
        if self.count[d] as usize == k {
            self.kth[d] = list[k - 1].score;
        }
    }

    /// The evaluated columns, in the order given to [`GroupEval::run`]: the
    /// column and its ranking (best first, `min(k, N)` entries).
    pub(crate) fn ranking(&self, d: usize) -> (u32, &[Entry]) {
        let base = d * self.k;
        (
            self.column[d],
            &self.entries[base..base + self.count[d] as usize],
        )
    }

    /// Number of columns evaluated by the last run.
    pub(crate) fn columns(&self) -> usize {
        self.column.len()
    }
}
