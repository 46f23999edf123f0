//! The definition of the scores `E_i(s)`: one deterministic Poisson point
//! process per node over the plane (slot × value).
//!
//! Owns: the geometry of that process (slot groups, value bands, per-slot tail
//! bands), the Poisson count tables, and the generation of a band's points.
//!
//! The definition. Node `i` carries a Poisson process of intensity 1 per slot
//! per unit of value on `[0, M) × [0, ∞)`; `E_i(s)` is the smallest value of
//! its points in column `s`. A Poisson process restricted to disjoint cells
//! is a set of independent Poisson processes, so the process is generated
//! cell by cell, each cell from its own counter-based random stream keyed by
//! (node key, cell):
//!
//! * below value [`GROUP_DEPTH`] (= 1), cells are (group of `G = min(M, 2^14)`
//!   consecutive slots) × (value band). Band widths are 8, 8, 16, then 32
//!   units of `2^-14` (a full group expects that many points per band); a cell
//!   draws a Poisson count, then each point a uniform column and a uniform
//!   value in the band;
//! * above it, cells are (one slot) × (unit value band `[1+j, 2+j)`), at most
//!   [`TAIL_BANDS`] of them; a column with no point at all gets `E = 1 + 64`.
//!
//! Hence `E_i(s) ~ Exp(1)` (up to the 2^-53 resolution of the draws and the
//! 65 cap, which has probability e^-64), independent across nodes and slots,
//! and a function of (node id, slot, M) only. What makes it fast: a node's
//! small values in a whole group are listed by generating its first few
//! cells, instead of evaluating `M · N` scores.
//!
//! Invariants: every number is produced by integer operations and IEEE-754
//! binary64 `+ - * /` only (no `ln`/`exp` from a platform libm), so the values
//! are bit-identical on every platform; the constants below are part of the
//! ring's definition and are pinned by test vectors.

use super::hash::{draw, unit53};

/// log2 of the largest slot group: groups hold `min(M, 2^14)` slots.
pub(crate) const GROUP_LOG2_MAX: u32 = 14;
/// Values in `[0, GROUP_DEPTH)` are generated per group, larger ones per slot.
pub(crate) const GROUP_DEPTH: f64 = 1.0;
/// Number of value bands below [`GROUP_DEPTH`]. Band widths, in units of
/// `2^-14`, are 8, 8, 16, then 32: band `b ≥ 3` starts at `32·(b−2)`, so
/// band `BANDS` would start at exactly 1.0.
pub(crate) const BANDS: u32 = (1 << (GROUP_LOG2_MAX - 5)) + 2;
/// Number of unit-width tail bands per slot above [`GROUP_DEPTH`].
pub(crate) const TAIL_BANDS: u32 = 64;
/// Upper bound on the points of one cell (a Poisson count is capped here).
const MAX_COUNT: u32 = 96;
/// One band unit in value: `2^-14`.
const UNIT: f64 = 1.0 / (1u64 << GROUP_LOG2_MAX) as f64;
/// Domain tags that keep group cells and tail cells on unrelated streams.
const GROUP_CELL_TAG: u64 = 0x6772_6f75_7063_656c; // "groupcel"
const TAIL_CELL_TAG: u64 = 0x7461_696c_6365_6c6c; // "tailcell"
/// Index of the first value draw in a cell's stream (column draws come first).
const VALUE_DRAWS: u64 = 64;

/// `e^(−2^j)` for `j = −14 ..= 5`, correctly rounded (computed once with
/// 300-bit arithmetic); written out so that no platform `exp` is involved.
const EXP_NEG_POW2: [f64; 20] = [
    0.9999389667063573,
    0.9998779371377774,
    0.9997558891748972,
    0.9995118379398894,
    0.9990239141819757,
    0.9980487811074755,
    0.9961013694701175,
    0.9922179382602435,
    0.9844964370054085,
    0.9692332344763441,
    0.9394130628134758,
    0.8824969025845955,
    0.7788007830714049,
    0.6065306597126334,
    0.36787944117144233,
    0.1353352832366127,
    0.01831563888873418,
    0.00033546262790251185,
    1.1253517471925912e-07,
    1.2664165549094176e-14,
];

/// Start of band `b` in units of `2^-14`.
#[inline(always)]
fn band_lo_units(band: u32) -> u32 {
    match band {
        0 => 0,
        1 => 8,
        2 => 16,
        _ => 32 * (band - 2),
    }
}

/// log2 of the width of band `b` in units: 3, 3, 4, then 5.
#[inline(always)]
fn band_width_log2(band: u32) -> u32 {
    match band {
        0 | 1 => 3,
        2 => 4,
        _ => 5,
    }
}

/// The first band that starts above `value` (at most [`BANDS`]): generating
/// the bands before it covers every value up to `value`.
#[inline(always)]
pub(crate) fn band_after(value: f64) -> u32 {
    let units = value * (1u64 << GROUP_LOG2_MAX) as f64;
    if units < 8.0 {
        1
    } else if units < 16.0 {
        2
    } else if units < 32.0 {
        3
    } else {
        // Saturating float → int conversion; BANDS caps it.
        ((units / 32.0) as u32).saturating_add(3).min(BANDS)
    }
}

/// Start of band `b` in value (`b = BANDS` gives [`GROUP_DEPTH`]).
#[inline(always)]
pub(crate) fn band_lo(band: u32) -> f64 {
    band_lo_units(band) as f64 * UNIT
}

/// Cumulative distribution of a Poisson count with mean `2^j`, tabulated
/// with the same arithmetic everywhere, plus a guide table for fast
/// inversion.
#[derive(Clone, Debug)]
struct PoissonTable {
    cdf: Vec<f64>,
    /// `guide[i]` = the count for `u = i / GUIDE` (the first `k` with
    /// `cdf[k] > u`): inversion of any `u ≥ i / GUIDE` can start there.
    guide: Vec<u32>,
}

/// Entries of a [`PoissonTable`] guide.
const GUIDE: usize = 256;

impl PoissonTable {
    fn new(j: i32) -> Self {
        // 2^j built from its bits: exact, no library call.
        let lambda = f64::from_bits(((1023 + j) as u64) << 52);
        let mut p = EXP_NEG_POW2[(j + 14) as usize];
        let mut cdf = vec![p];
        let mut k = 0u32;
        while k + 1 < MAX_COUNT && p > 1e-30 {
            k += 1;
            p = p * lambda / k as f64;
            cdf.push(cdf[cdf.len() - 1] + p);
        }
        let mut table = PoissonTable {
            cdf,
            guide: Vec::new(),
        };
        table.guide = (0..GUIDE)
            .map(|i| table.scan(0, i as f64 / GUIDE as f64))
            .collect();
        table
    }

    /// Inversion from `k`: the first count `k' ≥ k` with `u < cdf[k']`
    /// (the table length if none).
    #[inline(always)]
    fn scan(&self, mut k: u32, u: f64) -> u32 {
        while (k as usize) < self.cdf.len() && u >= self.cdf[k as usize] {
            k += 1;
        }
        k
    }

    /// Inversion: the count `k` with `cdf[k-1] ≤ u < cdf[k]`, `u ∈ [0, 1)`.
    #[inline(always)]
    fn sample(&self, u: f64) -> u32 {
        // u < 1, so the index is below GUIDE; every count below the guide
        // entry has cdf ≤ i/GUIDE ≤ u, so the scan gives the same answer.
        self.scan(self.guide[(u * GUIDE as f64) as usize], u)
    }
}

/// The geometry of the skeleton for one slot count `M = 2^m`.
#[derive(Clone, Debug)]
pub(crate) struct Geometry {
    /// `m`: the ring has `2^m` slots.
    pub slots_log2: u32,
    /// log2 of the group size `G = 2^min(m, 14)`.
    pub group_log2: u32,
    /// Count tables of the band widths `2^3 ..= 2^5` units for this `G`.
    tables: [PoissonTable; 3],
    /// Count table of a tail cell (mean 1).
    tail: PoissonTable,
}

impl Geometry {
    pub(crate) fn new(slots_log2: u32) -> Self {
        let group_log2 = slots_log2.min(GROUP_LOG2_MAX);
        let j0 = group_log2 as i32 - GROUP_LOG2_MAX as i32;
        Geometry {
            slots_log2,
            group_log2,
            tables: [
                PoissonTable::new(j0 + 3),
                PoissonTable::new(j0 + 4),
                PoissonTable::new(j0 + 5),
            ],
            tail: PoissonTable::new(0),
        }
    }

    /// Slots per group.
    #[inline(always)]
    pub(crate) fn group_size(&self) -> usize {
        1 << self.group_log2
    }

    /// Number of groups.
    #[inline(always)]
    pub(crate) fn groups(&self) -> usize {
        1 << (self.slots_log2 - self.group_log2)
    }

    /// The points of node `key` in cell (group, band).
    #[inline(always)]
    pub(crate) fn cell(&self, key: u64, group: u32, band: u32) -> Cell {
        let seed = draw(key ^ GROUP_CELL_TAG, ((group as u64) << 20) | band as u64);
        let width_log2 = band_width_log2(band);
        let count = self.tables[(width_log2 - 3) as usize].sample(unit53(seed));
        Cell {
            seed,
            count,
            lo: band_lo(band),
            width: (1u32 << width_log2) as f64 * UNIT,
            col_mask: (1u64 << self.group_log2) - 1,
        }
    }

    /// The smallest value of node `key` in the per-slot tail of `slot`
    /// (values ≥ [`GROUP_DEPTH`]): the value `E` takes when the column has no
    /// point below [`GROUP_DEPTH`].
    pub(crate) fn tail_value(&self, key: u64, slot: u32) -> f64 {
        let seed = draw(key ^ TAIL_CELL_TAG, slot as u64);
        for band in 0..TAIL_BANDS {
            let count = self.tail.sample(unit53(draw(seed, band as u64)));
            if count > 0 {
                let base = VALUE_DRAWS + (band as u64) * (MAX_COUNT as u64);
                let mut min = 1.0f64;
                for t in 0..count as u64 {
                    min = min.min(unit53(draw(seed, base + t)));
                }
                return GROUP_DEPTH + band as f64 + min;
            }
        }
        GROUP_DEPTH + TAIL_BANDS as f64
    }
}

/// The points of one node in one (group, band) cell. Columns and values are
/// separate random-access draws, so a consumer that only cares about a few
/// columns never computes the other points' values.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Cell {
    seed: u64,
    /// Number of points in the cell.
    pub count: u32,
    lo: f64,
    width: f64,
    col_mask: u64,
}

impl Cell {
    /// Columns (slots within the group) of points `4q .. 4q+4`: four 16-bit
    /// lanes of one draw, lowest lane first.
    #[inline(always)]
    pub(crate) fn column_lanes(&self, q: u32) -> u64 {
        draw(self.seed, 1 + q as u64)
    }

    /// Mask that turns a lane into a column.
    #[inline(always)]
    pub(crate) fn column_mask(&self) -> u64 {
        self.col_mask
    }

    /// Column of point `t < count` (see [`Cell::column_lanes`]).
    #[inline(always)]
    pub(crate) fn column(&self, t: u32) -> usize {
        ((self.column_lanes(t / 4) >> (16 * (t % 4))) & self.col_mask) as usize
    }

    /// Value of point `t < count`, in `[lo, lo + width]`.
    #[inline(always)]
    pub(crate) fn value(&self, t: u32) -> f64 {
        self.lo + self.width * unit53(draw(self.seed, VALUE_DRAWS + t as u64))
    }
}

/// `E(s)` for every column of one group, straight from the definition: all
/// cells below [`GROUP_DEPTH`], then the tail of each empty column. `O(G)`
/// per call; the reference the fast paths are tested against.
#[cfg(test)]
pub(crate) fn group_values(geo: &Geometry, key: u64, group: u32) -> Vec<f64> {
    let mut values = vec![f64::INFINITY; geo.group_size()];
    for band in 0..BANDS {
        let cell = geo.cell(key, group, band);
        for t in 0..cell.count {
            let col = cell.column(t);
            values[col] = values[col].min(cell.value(t));
        }
    }
    let first = (group as usize) << geo.group_log2;
    for (col, v) in values.iter_mut().enumerate() {
        if v.is_infinite() {
            *v = geo.tail_value(key, (first + col) as u32);
        }
    }
    values
}

/// `E(s)` for one node and one slot, straight from the definition (cells in
/// band order until one has a point in the column). Test vectors use it.
#[cfg(test)]
pub(crate) fn value(geo: &Geometry, key: u64, slot: u32) -> f64 {
    let group = slot >> geo.group_log2;
    let col = (slot as usize) & (geo.group_size() - 1);
    for band in 0..BANDS {
        let cell = geo.cell(key, group, band);
        let mut min = f64::INFINITY;
        for t in 0..cell.count {
            if cell.column(t) == col {
                min = min.min(cell.value(t));
            }
        }
        if min.is_finite() {
            return min;
        }
    }
    geo.tail_value(key, slot)
}
