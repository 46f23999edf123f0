//! The ring's fixed hashes and counter-based random draws.
//!
//! Owns: the user-id hash ([`key_hash`]), the user → slot mapping
//! ([`slot_of_hash`]), the node-id hash that seeds a node's point process
//! ([`node_key`]) and the 64-bit mixer behind every random draw of the
//! skeleton ([`draw`]).
//!
//! Invariant: each function is a pure function of its arguments and gives the
//! same bits on every platform, in every process, in every version of this
//! crate. Changing any constant here moves users; the test vectors at the end
//! of this file exist to make such a change fail loudly.
//!
//! Why XXH3 (through the `xxhash-rust` crate) for strings: its output is
//! frozen by the xxHash specification (stable since xxHash 0.8.0), it is one of
//! the fastest hashes for short keys, and the vectors below can be checked
//! against any other conforming implementation (the C library, Python's
//! `xxhash`). A randomly seeded hasher (std's `RandomState`) would give every
//! process a different ring.

use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};

/// Seed of the node-id hash: the ASCII bytes of `"shardcst"`, big endian.
///
/// Distinct from the user-key seed (0) so that a node id and a user id with
/// the same spelling are unrelated.
pub const NODE_SEED: u64 = u64::from_be_bytes(*b"shardcst");

/// SplitMix64's increment (2^64 / golden ratio), used to step counters.
pub(crate) const GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

/// The fixed 64-bit hash of a user id: XXH3-64 of its UTF-8 bytes, seed 0.
#[inline]
pub fn key_hash(user: &str) -> u64 {
    xxh3_64(user.as_bytes())
}

/// The slot of a key hash in a ring of `2^slots_log2` slots: the top
/// `slots_log2` bits of the hash (`slots_log2` ≤ 63).
///
/// Top bits rather than low bits so that the same user keeps the same slot
/// prefix when a cluster is ever rebuilt with a larger `M`.
#[inline]
pub fn slot_of_hash(hash: u64, slots_log2: u32) -> u32 {
    // Two shifts so that slots_log2 = 0 (one slot) needs no branch.
    ((hash >> 1) >> (63 - slots_log2)) as u32
}

/// The fixed 64-bit hash of a node id: XXH3-64 of its UTF-8 bytes with
/// [`NODE_SEED`]. It seeds every random draw that defines the node's scores,
/// so a node's scores depend on its id only (never on its weight, its
/// position in a list or the other nodes).
#[inline]
pub fn node_key(id: &str) -> u64 {
    xxh3_64_with_seed(id.as_bytes(), NODE_SEED)
}

/// SplitMix64's output function (Stafford's "Mix13"): a bijective 64-bit
/// mixer with full avalanche.
#[inline(always)]
pub(crate) fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Draw number `index` of the counter-based stream `seed`: the `index`-th
/// output of SplitMix64 started at `seed`. Random access, so a consumer can
/// skip draws it does not need (for example the value of a point whose slot
/// is not of interest).
#[inline(always)]
pub(crate) fn draw(seed: u64, index: u64) -> u64 {
    mix64(seed.wrapping_add(index.wrapping_add(1).wrapping_mul(GAMMA)))
}

/// A uniform number in `[0, 1)` from the top 53 bits of a draw (exact).
#[inline(always)]
pub(crate) fn unit53(x: u64) -> f64 {
    (x >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// XXH3-64 reference answers, computed independently with Python's
    /// `xxhash` package (a binding of the reference C library):
    /// `xxhash.xxh3_64_intdigest(b"alice")`, and `seed=` for the node key.
    #[test]
    fn xxh3_vectors() {
        assert_eq!(key_hash(""), 0x2d06_8005_38d3_94c2);
        assert_eq!(key_hash("a"), 0xe6c6_32b6_1e96_4e1f);
        assert_eq!(key_hash("alice"), 0x4da1_0dd6_1a01_16b0);
        assert_eq!(key_hash("user-0000000001"), 0xc04d_9224_b388_8952);
        let long = "0123456789abcdef0123456789abcdef0123456789";
        assert_eq!(key_hash(long), 0x0a3e_b458_da38_83ff);
        assert_eq!(key_hash(&"x".repeat(300)), 0xa5d1_b460_7dc8_3554);
        // Seeded with NODE_SEED = "shardcst" read big endian.
        assert_eq!(node_key("node-a"), 0x81ca_e5fe_5a08_52e6);
    }

    #[test]
    fn slot_mapping_takes_top_bits() {
        let h = 0xfedc_ba98_7654_3210u64;
        assert_eq!(slot_of_hash(h, 0), 0);
        assert_eq!(slot_of_hash(h, 1), 1);
        assert_eq!(slot_of_hash(h, 4), 0xf);
        assert_eq!(slot_of_hash(h, 20), 0xfedcb);
        assert_eq!(slot_of_hash(h, 26), (h >> 38) as u32);
    }

    #[test]
    fn draws_are_pinned() {
        // SplitMix64 seeded with 0: its published first outputs.
        assert_eq!(draw(0, 0), 0xe220_a839_7b1d_cdaf);
        assert_eq!(draw(0, 1), 0x6e78_9e6a_a1b9_65f4);
        assert_eq!(draw(0, 2), 0x06c4_5d18_8009_454f);
        assert_eq!(unit53(u64::MAX), 1.0 - f64::EPSILON / 2.0);
        assert_eq!(unit53(0), 0.0);
    }
}
