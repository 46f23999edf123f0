//! Ring benchmarks and the reference implementations it is compared with.
//!
//! `cargo bench --bench ring` runs two criterion groups:
//! * `lookup`: one lookup of a random user id, string hashing included, for
//!   `shardcast/N` (the slot ring, M = 2^20), `hrw/N` (flat weighted
//!   rendezvous), `tree/N` and `tree8/N` (weighted virtual tree, fanout 16
//!   and 8, straw2-like), `vnode/N` (consistent-hash ring, 100 virtual nodes
//!   per unit of weight, binary search; the `hashring` crate) and `jump/N`
//!   (jump consistent hash; the `jumphash` crate), N = 10 … 10,000;
//! * `build`: `full/N` (a full build), `add/N`, `remove/N`, `reweight/N`
//!   (weight ×0.5, the direction that re-evaluates slots) and `reweight_up/N`
//!   (weight ×2) of a shardcast ring with M = 2^20; each a complete, exact
//!   change that returns a new snapshot, runner-ups included.
//!
//! `RING_QUALITY=1 cargo bench --bench ring` prints, instead, balance, weight
//! error, disruption and memory of every implementation as markdown
//! (`RING_QUALITY_USERS`, default 1,000,000, sets the number of users), and
//! shardcast's slot balance by M.
//!
//! Every implementation hashes the user id with the ring's own XXH3
//! (`key_hash`), so the comparison is between placement structures. The
//! references live here, not in `src/`: nothing in the server may use them.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher};
use std::time::Duration;

use criterion::{black_box, criterion_group, BenchmarkId, Criterion};
use hashring::HashRing;
use jumphash::CustomJumpHasher;
use shardcast::ring::{key_hash, node_key, Change, Node, Ring, RingConfig};

const SLOTS: u64 = 1 << 20;
const SIZES: [usize; 4] = [10, 100, 1000, 10_000];
/// Virtual nodes per unit of weight in the vnode ring.
const VNODES_PER_WEIGHT: f64 = 100.0;
/// Distinct user ids cycled through by the lookup benchmarks: enough that
/// table reads miss the L2 cache as a server's would.
const LOOKUP_KEYS: usize = 1 << 16;

fn node_id(i: usize) -> String {
    format!("node-{i:05}")
}

fn equal_nodes(n: usize) -> Vec<Node> {
    (0..n).map(|i| Node::new(node_id(i), 1.0)).collect()
}

fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A weighted-rendezvous score: `-ln(u) / w` with `u ∈ (0, 1]` from `x`.
#[inline(always)]
fn hrw_score(x: u64, inv_w: f64) -> f64 {
    let u = ((x >> 11) + 1) as f64 * (1.0 / (1u64 << 53) as f64);
    -u.ln() * inv_w
}

/// A user → node placement.
trait Placement {
    /// The node that owns `user`, as an opaque handle (an index or an
    /// address) that costs no extra memory read: what the benchmarks time.
    fn locate(&self, user: &str) -> usize;
    /// The node ids, indexed by the handle (for the references).
    fn ids(&self) -> &[String];
    /// Id of the node that owns `user`.
    fn lookup(&self, user: &str) -> &str {
        &self.ids()[self.locate(user)]
    }
    /// Bytes held by the placement structure.
    fn memory(&self) -> usize;
}

/// The slot ring under test: `Ring::lookup` returns `&Node`; the handle is
/// that reference's address.
impl Placement for Ring {
    #[inline]
    fn locate(&self, user: &str) -> usize {
        Ring::lookup(self, user) as *const Node as usize
    }
    fn ids(&self) -> &[String] {
        &[]
    }
    fn lookup(&self, user: &str) -> &str {
        &Ring::lookup(self, user).id
    }
    fn memory(&self) -> usize {
        self.memory_bytes()
    }
}

fn shardcast(nodes: &[Node]) -> Ring {
    let config = RingConfig {
        version: 1,
        slots: SLOTS,
        nodes: nodes.to_vec(),
    };
    Ring::new(config).unwrap()
}

/// Flat weighted rendezvous hashing: argmin over all nodes, O(N).
struct Hrw {
    ids: Vec<String>,
    keys: Vec<u64>,
    inv_w: Vec<f64>,
}

impl Hrw {
    fn new(nodes: &[Node]) -> Self {
        Hrw {
            ids: nodes.iter().map(|n| n.id.clone()).collect(),
            keys: nodes.iter().map(|n| node_key(&n.id)).collect(),
            inv_w: nodes.iter().map(|n| 1.0 / n.weight).collect(),
        }
    }
}

impl Placement for Hrw {
    #[inline]
    fn locate(&self, user: &str) -> usize {
        let h = key_hash(user);
        let mut best = (f64::INFINITY, 0);
        for (i, (&k, &inv_w)) in self.keys.iter().zip(&self.inv_w).enumerate() {
            let s = hrw_score(mix64(h ^ k), inv_w);
            if s < best.0 {
                best = (s, i);
            }
        }
        best.1
    }
    fn ids(&self) -> &[String] {
        &self.ids
    }
    fn memory(&self) -> usize {
        self.ids.len() * 16
    }
}

/// A weighted virtual tree (CRUSH straw2 style): each node sits at a fixed
/// leaf given by the digits of its id hash; a bucket weighs the sum of its
/// children; a lookup runs weighted rendezvous among a bucket's children,
/// level by level.
struct Tree {
    ids: Vec<String>,
    /// Per bucket: (child key, 1/child weight, child bucket or node index).
    buckets: Vec<Vec<(u64, f64, u32)>>,
    depth: u32,
}

impl Tree {
    fn new(nodes: &[Node], fanout: u32, depth: u32) -> Self {
        let bits = fanout.trailing_zeros();
        let mut index: HashMap<(u32, u64), u32> = HashMap::new();
        let mut weight: Vec<f64> = vec![0.0];
        let mut children: Vec<Vec<(u64, u32)>> = vec![Vec::new()];
        for (i, node) in nodes.iter().enumerate() {
            let key = node_key(&node.id);
            let mut bucket = 0u32;
            weight[0] += node.weight;
            for level in 1..=depth {
                let prefix = key & ((1u64 << (bits * level)) - 1);
                let next = *index.entry((level, prefix)).or_insert_with(|| {
                    weight.push(0.0);
                    children.push(Vec::new());
                    let b = (weight.len() - 1) as u32;
                    children[bucket as usize].push((mix64(prefix ^ (level as u64) << 58), b));
                    b
                });
                weight[next as usize] += node.weight;
                bucket = next;
            }
            children[bucket as usize].push((key, u32::MAX - i as u32));
        }
        let buckets = children
            .iter()
            .map(|list| {
                list.iter()
                    .map(|&(key, target)| {
                        let w = if target > u32::MAX - nodes.len() as u32 {
                            nodes[(u32::MAX - target) as usize].weight
                        } else {
                            weight[target as usize]
                        };
                        (key, 1.0 / w, target)
                    })
                    .collect()
            })
            .collect();
        let ids = nodes.iter().map(|n| n.id.clone()).collect();
        Tree {
            ids,
            buckets,
            depth,
        }
    }

    /// Depth of the virtual tree for `n` nodes: ⌈log_fanout n⌉, at least 1.
    fn depth_for(n: usize, fanout: u32) -> u32 {
        let mut depth = 1;
        while (fanout as usize).pow(depth) < n {
            depth += 1;
        }
        depth
    }
}

impl Placement for Tree {
    #[inline]
    fn locate(&self, user: &str) -> usize {
        let h = key_hash(user);
        let mut bucket = 0usize;
        for level in 0..=self.depth {
            let mut best = (f64::INFINITY, 0u32);
            for &(key, inv_w, target) in &self.buckets[bucket] {
                let s = hrw_score(mix64(h ^ key), inv_w);
                if s < best.0 {
                    best = (s, target);
                }
            }
            if level == self.depth {
                return (u32::MAX - best.1) as usize;
            }
            bucket = best.1 as usize;
        }
        unreachable!()
    }
    fn ids(&self) -> &[String] {
        &self.ids
    }
    fn memory(&self) -> usize {
        self.buckets.iter().map(|b| 24 + b.len() * 24).sum()
    }
}

/// Hasher that passes a prehashed `u64` through (user ids are hashed with
/// `key_hash` before they reach the crates' structures).
#[derive(Clone, Copy, Default)]
struct Prehashed(u64);

impl Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = mix64(self.0 ^ b as u64);
        }
    }
    fn write_u64(&mut self, x: u64) {
        self.0 = x;
    }
}

impl BuildHasher for Prehashed {
    type Hasher = Prehashed;
    fn build_hasher(&self) -> Prehashed {
        Prehashed(0)
    }
}

/// One virtual node: its position is a hash of (node, replica).
#[derive(Clone, Copy)]
struct VNode {
    node: u32,
    position: u64,
}

impl Hash for VNode {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.position);
    }
}

/// Consistent-hash ring with `weight × 100` virtual nodes per node.
struct Vnodes {
    ids: Vec<String>,
    ring: HashRing<VNode, Prehashed>,
    points: usize,
}

impl Vnodes {
    fn new(nodes: &[Node]) -> Self {
        let mut ring = HashRing::with_hasher(Prehashed(0));
        let mut vnodes = Vec::new();
        for (i, node) in nodes.iter().enumerate() {
            let key = node_key(&node.id);
            let count = (node.weight * VNODES_PER_WEIGHT).round().max(1.0) as u64;
            vnodes.extend((0..count).map(|r| VNode {
                node: i as u32,
                position: mix64(key.wrapping_add(r.wrapping_mul(0x9e37_79b9_7f4a_7c15))),
            }));
        }
        let points = vnodes.len();
        ring.batch_add(vnodes);
        let ids = nodes.iter().map(|n| n.id.clone()).collect();
        Vnodes { ids, ring, points }
    }
}

impl Placement for Vnodes {
    #[inline]
    fn locate(&self, user: &str) -> usize {
        self.ring.get(&key_hash(user)).unwrap().node as usize
    }
    fn ids(&self) -> &[String] {
        &self.ids
    }
    fn memory(&self) -> usize {
        self.points * 16
    }
}

/// Jump consistent hash over the node list (unweighted; buckets can only
/// be added or removed at the end).
struct Jump {
    ids: Vec<String>,
    hasher: CustomJumpHasher<Prehashed>,
}

impl Jump {
    fn new(nodes: &[Node]) -> Self {
        Jump {
            ids: nodes.iter().map(|n| n.id.clone()).collect(),
            hasher: CustomJumpHasher::new(Prehashed(0)),
        }
    }
}

impl Placement for Jump {
    #[inline]
    fn locate(&self, user: &str) -> usize {
        self.hasher.slot(&key_hash(user), self.ids.len() as u32) as usize
    }
    fn ids(&self) -> &[String] {
        &self.ids
    }
    fn memory(&self) -> usize {
        self.ids.len() * 24
    }
}

/// `n` pseudo-random user ids.
fn user_ids(n: usize) -> Vec<String> {
    (0..n as u64)
        .map(|i| format!("user-{:016x}", mix64(i)))
        .collect()
}

fn bench_one<P: Placement>(
    c: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    n: usize,
    p: &P,
    keys: &[String],
) {
    let mut i = 0usize;
    c.bench_with_input(BenchmarkId::new(name, n), &n, |b, _| {
        b.iter(|| {
            i = (i + 1) & (LOOKUP_KEYS - 1);
            black_box(p.locate(black_box(&keys[i])))
        })
    });
}

fn lookup(c: &mut Criterion) {
    let keys = user_ids(LOOKUP_KEYS);
    let mut group = c.benchmark_group("lookup");
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(3));
    for n in SIZES {
        let nodes = equal_nodes(n);
        bench_one(&mut group, "shardcast", n, &shardcast(&nodes), &keys);
        bench_one(&mut group, "hrw", n, &Hrw::new(&nodes), &keys);
        let tree = |fanout| Tree::new(&nodes, fanout, Tree::depth_for(n, fanout));
        bench_one(&mut group, "tree", n, &tree(16), &keys);
        bench_one(&mut group, "tree8", n, &tree(8), &keys);
        bench_one(&mut group, "vnode", n, &Vnodes::new(&nodes), &keys);
        bench_one(&mut group, "jump", n, &Jump::new(&nodes), &keys);
    }
    group.finish();
}

fn build(c: &mut Criterion) {
    let mut group = c.benchmark_group("build");
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(4));
    for n in SIZES {
        let config = RingConfig {
            version: 1,
            slots: SLOTS,
            nodes: equal_nodes(n),
        };
        group.bench_with_input(BenchmarkId::new("full", n), &n, |b, _| {
            b.iter(|| Ring::new(config.clone()).unwrap())
        });
        let ring = Ring::new(config.clone()).unwrap();
        let victim = node_id(n / 2);
        let reweight = |weight| Change::Reweight {
            id: victim.clone(),
            weight,
        };
        let changes = [
            (
                "add",
                Change::Add {
                    node: Node::new("node-new", 1.0),
                },
            ),
            ("remove", Change::Remove { id: victim.clone() }),
            ("reweight", reweight(0.5)),
            ("reweight_up", reweight(2.0)),
        ];
        for (name, change) in &changes {
            group.bench_with_input(BenchmarkId::new(*name, n), &n, |b, _| {
                b.iter(|| ring.apply(change).unwrap())
            });
        }
    }
    group.finish();
}

criterion_group!(benches, lookup, build);

fn main() {
    if std::env::var_os("RING_QUALITY").is_some() {
        quality::report();
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}

/// `RING_QUALITY=1`: balance, weight error, disruption and memory of every
/// implementation, printed as markdown tables.
mod quality {
    use super::*;

    const NAMES: [&str; 6] = ["shardcast", "hrw", "tree", "tree8", "vnode", "jump"];

    /// Implementation `name` over `nodes`; trees keep the depth for `n0`
    /// nodes (the virtual tree is fixed, as in CRUSH).
    fn build(name: &str, nodes: &[Node], n0: usize) -> Box<dyn Placement> {
        match name {
            "shardcast" => Box::new(shardcast(nodes)),
            "hrw" => Box::new(Hrw::new(nodes)),
            "tree" => Box::new(Tree::new(nodes, 16, Tree::depth_for(n0, 16))),
            "tree8" => Box::new(Tree::new(nodes, 8, Tree::depth_for(n0, 8))),
            "vnode" => Box::new(Vnodes::new(nodes)),
            _ => Box::new(Jump::new(nodes)),
        }
    }

    /// Node id → index.
    fn index(nodes: &[Node]) -> HashMap<String, u32> {
        let ids = nodes.iter().enumerate();
        ids.map(|(i, node)| (node.id.clone(), i as u32)).collect()
    }

    /// The owner (index into `ids`) of each of the `users` users.
    fn assign(p: &dyn Placement, users: usize, ids: &HashMap<String, u32>) -> Vec<u32> {
        let mut id = String::new();
        (0..users)
            .map(|u| {
                id.clear();
                id.push_str("user-");
                id.push_str(&u.to_string());
                ids[p.lookup(&id)]
            })
            .collect()
    }

    fn counts(owners: &[u32], nodes: usize) -> Vec<u64> {
        let mut c = vec![0u64; nodes];
        owners.iter().for_each(|&o| c[o as usize] += 1);
        c
    }

    /// "moved/optimum (users moved between unchanged nodes, % of all)".
    fn disruption(before: &[u32], after: &[u32], changed: u32) -> String {
        let (mut moved, mut others, mut had, mut has) = (0u64, 0u64, 0u64, 0u64);
        for (&a, &b) in before.iter().zip(after) {
            had += (a == changed) as u64;
            has += (b == changed) as u64;
            if a != b {
                moved += 1;
                others += (a != changed && b != changed) as u64;
            }
        }
        let optimum = had.abs_diff(has).max(1);
        let pct = 100.0 * others as f64 / before.len() as f64;
        format!("{:.2}× ({pct:.2}%)", moved as f64 / optimum as f64)
    }

    pub fn report() {
        let users: usize = std::env::var("RING_QUALITY_USERS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1_000_000);
        println!("{users} users `user-0 …`, equal weights unless noted, M = 2^20 for shardcast.\n");
        println!("| impl | N | max/mean | memory | add | remove | weight ×2 | weight ×0.5 |");
        println!("|---|---|---|---|---|---|---|---|");
        for n in [100, 1000] {
            let nodes = equal_nodes(n);
            let mut ids = index(&nodes);
            ids.insert("node-new".into(), n as u32);
            for name in NAMES {
                let base = build(name, &nodes, n);
                let before = assign(base.as_ref(), users, &ids);
                let c = counts(&before, n + 1);
                let balance = *c.iter().max().unwrap() as f64 * n as f64 / users as f64;
                // Jump can only drop its last bucket and has no weights.
                let victim = if name == "jump" { n - 1 } else { n / 2 };
                let mut cells = Vec::new();
                let mut added = nodes.clone();
                added.push(Node::new("node-new", 1.0));
                let mut removed = nodes.clone();
                removed.remove(victim);
                let changes = [(added, n as u32), (removed, victim as u32)];
                for (set, changed) in changes {
                    let after = assign(build(name, &set, n).as_ref(), users, &ids);
                    cells.push(disruption(&before, &after, changed));
                }
                for factor in [2.0, 0.5] {
                    if name == "jump" {
                        cells.push("n/a".into());
                        continue;
                    }
                    let mut set = nodes.clone();
                    set[victim].weight *= factor;
                    let after = assign(build(name, &set, n).as_ref(), users, &ids);
                    cells.push(disruption(&before, &after, victim as u32));
                }
                let mib = base.memory() as f64 / (1 << 20) as f64;
                println!(
                    "| {name} | {n} | {balance:.3} | {mib:.2} MiB | {} |",
                    cells.join(" | ")
                );
            }
        }
        println!("\nWeight error, N = 100, weights 1..=10 (node i has weight i % 10 + 1):\n");
        println!("| impl | max \\|share / (w/Σw) − 1\\| |");
        println!("|---|---|");
        let nodes: Vec<Node> = (0..100)
            .map(|i| Node::new(node_id(i), (i % 10 + 1) as f64))
            .collect();
        let total: f64 = nodes.iter().map(|n| n.weight).sum();
        let ids = index(&nodes);
        for name in NAMES {
            let owners = assign(build(name, &nodes, 100).as_ref(), users, &ids);
            let c = counts(&owners, 100);
            let error = nodes
                .iter()
                .zip(&c)
                .map(|(node, &got)| (got as f64 / (users as f64 * node.weight / total) - 1.0).abs())
                .fold(0.0, f64::max);
            println!("| {name} | {:.1}% |", 100.0 * error);
        }
        m_policy();
    }

    /// Slot-level balance (infinitely many users) of shardcast by M.
    fn m_policy() {
        println!("\nShardcast max/mean of slots per node (equal weights) by M:\n");
        println!("| N | M = 2^18 | 2^20 | 2^22 | 2^24 |\n|---|---|---|---|---|");
        for n in [100, 1000, 10_000] {
            let cells: Vec<String> = [18, 20, 22, 24]
                .iter()
                .map(|&m| {
                    let config = RingConfig {
                        version: 1,
                        slots: 1 << m,
                        nodes: equal_nodes(n),
                    };
                    let ring = Ring::new(config).unwrap();
                    let ids = index(ring.nodes());
                    let mut c = vec![0u64; n];
                    (0..1u32 << m).for_each(|s| c[ids[&ring.slot_owner(s).id] as usize] += 1);
                    let max = *c.iter().max().unwrap() as f64;
                    format!("{:.3}", max * n as f64 / (1u64 << m) as f64)
                })
                .collect();
            println!("| {n} | {} |", cells.join(" | "));
        }
    }
}
