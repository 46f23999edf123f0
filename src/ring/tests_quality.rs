//! Balance, weights and disruption over 10M users at M = 2^20.
//!
//! Users are `user-0 .. user-9999999`; their slots are hashed once and kept
//! as a per-slot user count, so each property is a pass over the table.
//! The sample is the full 10M in both debug and release builds (about 20 s
//! in debug on 2 cores); `cargo test --release -- --ignored` adds the
//! N = 10,000 soak.

use std::sync::OnceLock;

use super::tests::config;
use super::*;

const USERS: u64 = 10_000_000;
const SLOTS: u64 = 1 << 20;

/// Users per slot for the 10M sample users at M = 2^20.
fn users_per_slot() -> &'static [u32] {
    static COUNTS: OnceLock<Vec<u32>> = OnceLock::new();
    COUNTS.get_or_init(|| {
        let mut counts = vec![0u32; SLOTS as usize];
        let mut id = String::with_capacity(16);
        for u in 0..USERS {
            id.clear();
            id.push_str("user-");
            push_decimal(&mut id, u);
            counts[slot_of_hash(key_hash(&id), 20) as usize] += 1;
        }
        counts
    })
}

/// Appends `n` in decimal (cheaper than `format!` in debug builds).
fn push_decimal(out: &mut String, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend(digits[i..].iter().map(|&d| d as char));
}

/// Users per node (indexed like `ring.nodes()`).
fn users_per_node(ring: &Ring) -> Vec<u64> {
    let mut per_node = vec![0u64; ring.nodes().len()];
    for (slot, &users) in users_per_slot().iter().enumerate() {
        per_node[ring.tables.owners[slot] as usize] += users as u64;
    }
    per_node
}

fn equal_ring(n: usize) -> Ring {
    Ring::new(config(SLOTS, &vec![1.0; n])).unwrap()
}

fn ring_100() -> &'static Ring {
    static RING: OnceLock<Ring> = OnceLock::new();
    RING.get_or_init(|| equal_ring(100))
}

fn ring_1000() -> &'static Ring {
    static RING: OnceLock<Ring> = OnceLock::new();
    RING.get_or_init(|| equal_ring(1000))
}

/// max / mean of users per node.
fn max_over_mean(ring: &Ring) -> f64 {
    let per_node = users_per_node(ring);
    let max = *per_node.iter().max().unwrap() as f64;
    max / (USERS as f64 / per_node.len() as f64)
}

#[test]
fn balance_100_nodes() {
    let r = max_over_mean(ring_100());
    println!("N=100, 10M users: max/mean = {r:.4}");
    assert!(r <= 1.05, "max/mean = {r}");
}

#[test]
fn balance_1000_nodes() {
    let r = max_over_mean(ring_1000());
    println!("N=1000, 10M users: max/mean = {r:.4}");
    assert!(r <= 1.15, "max/mean = {r}");
}

#[test]
fn shares_follow_weights() {
    let weights: Vec<f64> = (0..100).map(|i| (i % 10 + 1) as f64).collect();
    let ring = Ring::new(config(SLOTS, &weights)).unwrap();
    let total: f64 = weights.iter().sum();
    let per_node = users_per_node(&ring);
    let mut worst = 0.0f64;
    for node in ring.nodes() {
        let i = ring.index_of(&node.id).unwrap();
        let expected = USERS as f64 * node.weight / total;
        let error = per_node[i] as f64 / expected - 1.0;
        assert!(error.abs() <= 0.10, "{}: {error:+.4}", node.id);
        worst = worst.max(error.abs());
    }
    println!("N=100, weights 1..=10, 10M users: max |share/expected - 1| = {worst:.4}");
}

/// What one change did to the users: (moved, optimum, moved between two
/// nodes that did not change).
fn disruption(before: &Ring, after: &Ring, changed: &str) -> (u64, u64, u64) {
    let counts = users_per_slot();
    let (mut moved, mut between_others) = (0u64, 0u64);
    let (mut had, mut has) = (0u64, 0u64);
    for (slot, &users) in counts.iter().enumerate() {
        let old = &before.slot_owner(slot as u32).id;
        let new = &after.slot_owner(slot as u32).id;
        let users = users as u64;
        if old == changed {
            had += users;
        }
        if new == changed {
            has += users;
        }
        if old != new {
            moved += users;
            if old != changed && new != changed {
                between_others += users;
            }
        }
    }
    (moved, had.abs_diff(has), between_others)
}

fn check_disruption(ring: &Ring) {
    let n = ring.nodes().len();
    let victim = ring.nodes()[n / 2].id.clone();
    let changes = [
        (
            Change::Add {
                node: Node::new("joining", 1.0),
            },
            "joining".to_string(),
        ),
        (Change::Remove { id: victim.clone() }, victim.clone()),
        (
            Change::Reweight {
                id: victim.clone(),
                weight: 2.0,
            },
            victim.clone(),
        ),
        (
            Change::Reweight {
                id: victim.clone(),
                weight: 0.5,
            },
            victim.clone(),
        ),
    ];
    for (change, changed) in &changes {
        let after = ring.apply(change).unwrap();
        let (moved, optimum, between_others) = disruption(ring, &after, changed);
        assert!(optimum > 0, "{change:?}");
        let ratio = moved as f64 / optimum as f64;
        assert!(ratio <= 1.01, "N={n} {change:?}: moved/optimum = {ratio}");
        assert_eq!(between_others, 0, "N={n} {change:?}");
        // The optimum is about w / Σw of all users (sampling noise aside).
        let expected = USERS as f64 / n as f64;
        assert!(
            (optimum as f64) < 3.0 * expected,
            "N={n} {change:?}: {optimum}"
        );
        if let Change::Remove { .. } = change {
            // Every slot of the removed node went to its runner-up.
            for slot in 0..SLOTS as u32 {
                let (owner, runner) = (ring.slot_owner(slot), ring.tables.runners[slot as usize]);
                if owner.id == *changed {
                    let runner = &ring.nodes()[runner as usize];
                    assert_eq!(after.slot_owner(slot).id, runner.id);
                }
            }
        }
    }
}

#[test]
fn disruption_100_nodes() {
    check_disruption(ring_100());
}

#[test]
fn disruption_1000_nodes() {
    check_disruption(ring_1000());
}

/// N = 10,000 soak: balance, and the disruption checks on a big ring.
#[test]
#[ignore = "soak: run with cargo test --release -- --ignored"]
fn soak_10000_nodes() {
    let ring = equal_ring(10_000);
    let r = max_over_mean(&ring);
    println!("N=10000 M=2^20: max/mean = {r:.4}");
    check_disruption(&ring);
    let fresh = Ring::new(ring.config()).unwrap();
    assert!(fresh == ring);
}
