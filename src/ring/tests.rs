//! Exactness, determinism, pinned vectors, `lookup_n` and validation.
//!
//! The reference for exactness is a brute-force evaluation of the definition:
//! every node's `E` in every slot (`skeleton::group_values`, which generates
//! every cell without thresholds), scores `E · (1/w)`, rankings sorted.

use proptest::prelude::*;

use super::skeleton::{self, Geometry};
use super::*;

/// A ring config with nodes `n0..`, weights given.
pub(crate) fn config(slots: u64, weights: &[f64]) -> RingConfig {
    RingConfig {
        version: 1,
        slots,
        nodes: weights
            .iter()
            .enumerate()
            .map(|(i, &w)| Node {
                id: format!("n{i}"),
                weight: w,
                zone: format!("z{}", i % 3),
                addr: format!("10.0.0.{i}:8080"),
            })
            .collect(),
    }
}

/// Brute-force top two of every slot: (owner, runner, scores) per slot.
fn brute_force(ring: &Ring) -> Tables {
    let geo = Geometry::new(ring.geo.slots_log2);
    let (g, m) = (geo.group_size(), ring.slots());
    let n = ring.nodes.len();
    let mut tables = Tables {
        owners: vec![NO_NODE; m],
        runners: vec![NO_NODE; m],
        scores: vec![[f64::INFINITY; 2]; m],
    };
    for group in 0..geo.groups() {
        let values: Vec<Vec<f64>> = (0..n)
            .map(|i| skeleton::group_values(&geo, ring.keys[i], group as u32))
            .collect();
        for col in 0..g {
            let mut ranking: Vec<(f64, u32)> = values
                .iter()
                .zip(&ring.inv_weights)
                .enumerate()
                .map(|(i, (v, inv_w))| (v[col] * inv_w, i as u32))
                .collect();
            ranking.sort_by(|a, b| a.partial_cmp(b).unwrap());
            let slot = group * g + col;
            tables.owners[slot] = ranking[0].1 as Index;
            tables.scores[slot][0] = ranking[0].0;
            if n > 1 {
                tables.runners[slot] = ranking[1].1 as Index;
                tables.scores[slot][1] = ranking[1].0;
            }
        }
    }
    tables
}

#[test]
fn full_build_equals_brute_force() {
    let cases: &[(u64, &[f64])] = &[
        (1, &[1.0]),
        (1, &[1.0, 2.0, 3.0]),
        (2, &[1.0, 1.0]),
        (8, &[1.0, 1.0, 1.0, 1.0, 1.0]),
        (64, &[0.5, 3.0, 1.0, 7.0]),
        (1024, &[1.0; 8]),
        (1024, &[1000.0, 1.0, 1.0]),
        (4096, &[1e-9, 1e9, 1.0, 2.0]),
        (1 << 15, &[1.0, 2.0, 3.0, 4.0, 5.0]),
        (1 << 15, &[50.0, 1.0]),
    ];
    for &(slots, weights) in cases {
        let ring = Ring::new(config(slots, weights)).unwrap();
        assert!(
            ring.tables == brute_force(&ring),
            "M={slots} weights={weights:?}"
        );
    }
}

#[test]
fn group_values_agree_with_single_slot_values() {
    let geo = Geometry::new(10);
    let key = node_key("n1");
    let all = skeleton::group_values(&geo, key, 0);
    for slot in (0..1024).step_by(37) {
        assert_eq!(all[slot], skeleton::value(&geo, key, slot as u32));
    }
}

/// Pinned `E` values: a change to the skeleton's definition fails here.
#[test]
fn score_vectors_are_pinned() {
    let geo = Geometry::new(20);
    // E values at M = 2^20 (the last one lies in the per-slot tail, > 1).
    let cases: [(&str, u32, u64); 4] = [
        ("node-a", 0, 0x3fb7_9d20_e587_10ae), // 0.09224134067250375
        ("node-a", 123_456, 0x3fe9_d11c_c683_c099), // 0.8067764165152936
        ("node-b", 1_048_575, 0x3fa6_dcd7_839a_fa33), // 0.04465363961707105
        ("node-c", 777, 0x4002_a29e_f6d5_5396), // 2.3294047626354297
    ];
    for (id, slot, bits) in cases {
        let v = skeleton::value(&geo, node_key(id), slot);
        assert_eq!(
            v.to_bits(),
            bits,
            "E({id}, {slot}) = {v} ({:#x})",
            v.to_bits()
        );
    }
}

/// Pinned owners of 32 named users on a fixed 5-node ring: no later change
/// may silently move a user.
#[test]
fn owner_vector_is_pinned() {
    let ring = pinned_ring();
    let users: Vec<String> = (0..32).map(|i| format!("user-{i:02}")).collect();
    let owners: Vec<&str> = users.iter().map(|u| ring.lookup(u).id.as_str()).collect();
    assert_eq!(owners.join(","), PINNED_OWNERS);
}

const PINNED_OWNERS: &str = "echo,alpha,charlie,echo,bravo,echo,bravo,echo,\
echo,delta,bravo,charlie,charlie,bravo,alpha,delta,\
bravo,charlie,echo,delta,bravo,echo,delta,echo,\
delta,bravo,charlie,delta,delta,charlie,charlie,delta";

/// The 5-node ring of the pinned vector: M = 2^20, mixed weights.
fn pinned_ring() -> Ring {
    let nodes = [
        ("alpha", 1.0, "eu-1"),
        ("bravo", 2.0, "eu-1"),
        ("charlie", 1.0, "eu-2"),
        ("delta", 3.0, "us-1"),
        ("echo", 1.5, "us-1"),
    ];
    Ring::new(RingConfig {
        version: 7,
        slots: 1 << 20,
        nodes: nodes
            .iter()
            .map(|&(id, weight, zone)| Node {
                id: id.into(),
                weight,
                zone: zone.into(),
                addr: format!("wss://{id}.example:443/ws"),
            })
            .collect(),
    })
    .unwrap()
}

#[test]
fn input_order_does_not_matter() {
    let mut cfg = config(1 << 12, &[1.0, 2.0, 0.5, 4.0, 1.0, 3.0]);
    let a = Ring::new(cfg.clone()).unwrap();
    cfg.nodes.reverse();
    cfg.nodes.swap(1, 4);
    let b = Ring::new(cfg).unwrap();
    assert_eq!(a, b);
}

#[test]
fn json_round_trip_gives_the_identical_ring() {
    let ring = pinned_ring();
    let json = serde_json::to_string(&ring).unwrap();
    assert!(json.starts_with(r#"{"version":7,"slots":1048576,"nodes":[{"id":"alpha""#));
    let back: Ring = serde_json::from_str(&json).unwrap();
    assert_eq!(back, ring);
    let config: RingConfig = serde_json::from_str(&json).unwrap();
    assert_eq!(config, ring.config());
}

#[test]
fn lookup_n_is_the_slot_ranking() {
    let ring = Ring::new(config(1 << 12, &[1.0, 2.0, 0.5, 4.0, 1.0, 3.0])).unwrap();
    for u in 0..300 {
        let user = format!("u{u}");
        let top = ring.lookup_n(&user, 6);
        assert_eq!(top.len(), 6);
        assert_eq!(top[0], ring.lookup(&user));
        let pair = ring.lookup_pair(&user);
        assert_eq!((pair.0, pair.1.unwrap()), (top[0], top[1]));
        assert_eq!(ring.lookup_n(&user, 2), top[..2].to_vec());
        assert_eq!(ring.lookup_n(&user, 3), top[..3].to_vec());
        let mut ids: Vec<&str> = top.iter().map(|n| n.id.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), 6, "distinct nodes");
        // Removing the owner moves the user to the second, and so on.
        let without = ring
            .apply(&Change::Remove {
                id: top[0].id.clone(),
            })
            .unwrap();
        assert_eq!(without.lookup(&user), top[1]);
        assert_eq!(without.lookup_n(&user, 5), top[1..].to_vec());
        let zone = ring.lookup_outside_zone(&user).unwrap();
        let first_other = top.iter().find(|n| n.zone != top[0].zone).unwrap();
        assert_eq!(zone, *first_other);
    }
    let single = Ring::new(config(16, &[1.0])).unwrap();
    assert_eq!(single.lookup_n("x", 3).len(), 1);
    assert_eq!(single.lookup_pair("x").1, None);
    assert_eq!(single.lookup_outside_zone("x"), None);
    assert!(single.lookup_n("x", 0).is_empty());
    assert_eq!(ring.lookup_n("x", usize::MAX).len(), 6);
}

#[test]
fn invalid_snapshots_are_named_errors() {
    let ok = config(16, &[1.0, 2.0]);
    let mut c = ok.clone();
    c.nodes.clear();
    assert_eq!(Ring::new(c).unwrap_err(), RingError::NoNodes);
    let mut c = ok.clone();
    c.nodes[1].id = "n0".into();
    assert_eq!(
        Ring::new(c).unwrap_err(),
        RingError::DuplicateNode("n0".into())
    );
    let mut c = ok.clone();
    c.nodes[0].id.clear();
    assert_eq!(Ring::new(c).unwrap_err(), RingError::EmptyNodeId);
    for w in [
        0.0,
        -1.0,
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
        1e-10,
        2e9,
    ] {
        let mut c = ok.clone();
        c.nodes[1].weight = w;
        assert!(matches!(
            Ring::new(c).unwrap_err(),
            RingError::InvalidWeight { ref id, .. } if id == "n1"
        ));
    }
    for (slots, err) in [
        (0, RingError::SlotsOutOfRange(0)),
        (3, RingError::SlotsNotPowerOfTwo(3)),
        (1000, RingError::SlotsNotPowerOfTwo(1000)),
        (1 << 27, RingError::SlotsOutOfRange(1 << 27)),
    ] {
        let mut c = ok.clone();
        c.slots = slots;
        assert_eq!(Ring::new(c).unwrap_err(), err);
    }
    let many = vec![1.0; MAX_NODES + 1];
    assert_eq!(
        Ring::new(config(1, &many)).unwrap_err(),
        RingError::TooManyNodes(MAX_NODES + 1)
    );
    let full = Ring::new(config(1, &many[1..])).unwrap();
    let extra = Change::Add {
        node: Node::new("extra", 1.0),
    };
    assert_eq!(
        full.apply(&extra).unwrap_err(),
        RingError::TooManyNodes(MAX_NODES + 1)
    );
    let bad_json = r#"{"version":1,"slots":12,"nodes":[{"id":"a","weight":1}]}"#;
    let err = serde_json::from_str::<Ring>(bad_json).unwrap_err();
    assert!(err.to_string().contains("not a power of two"), "{err}");
}

#[test]
fn invalid_changes_are_named_errors() {
    let ring = Ring::new(config(16, &[1.0, 2.0])).unwrap();
    let add = |id: &str, w: f64| Change::Add {
        node: Node::new(id, w),
    };
    assert_eq!(
        ring.apply(&add("n0", 1.0)).unwrap_err(),
        RingError::NodeExists("n0".into())
    );
    assert!(matches!(
        ring.apply(&add("x", 0.0)).unwrap_err(),
        RingError::InvalidWeight { .. }
    ));
    assert_eq!(
        ring.apply(&add("", 1.0)).unwrap_err(),
        RingError::EmptyNodeId
    );
    let remove = |id: &str| Change::Remove { id: id.into() };
    assert_eq!(
        ring.apply(&remove("zz")).unwrap_err(),
        RingError::UnknownNode("zz".into())
    );
    let one = ring.apply(&remove("n0")).unwrap();
    assert_eq!(one.version(), 2);
    assert_eq!(
        one.apply(&remove("n1")).unwrap_err(),
        RingError::LastNode("n1".into())
    );
    let reweight = |id: &str, weight: f64| Change::Reweight {
        id: id.into(),
        weight,
    };
    assert!(matches!(
        ring.apply(&reweight("n1", f64::NAN)).unwrap_err(),
        RingError::InvalidWeight { .. }
    ));
    assert_eq!(
        ring.apply(&reweight("zz", 1.0)).unwrap_err(),
        RingError::UnknownNode("zz".into())
    );
    let mut c = config(16, &[1.0]);
    c.version = u64::MAX;
    let last = Ring::new(c).unwrap();
    assert_eq!(
        last.apply(&add("b", 1.0)).unwrap_err(),
        RingError::VersionOverflow(u64::MAX)
    );
}

#[test]
fn changes_serialize_in_the_published_shape() {
    let change = Change::Reweight {
        id: "n1".into(),
        weight: 2.5,
    };
    let json = serde_json::to_string(&change).unwrap();
    assert_eq!(json, r#"{"op":"reweight","id":"n1","weight":2.5}"#);
    assert_eq!(serde_json::from_str::<Change>(&json).unwrap(), change);
}

/// One step of a random change sequence.
#[derive(Clone, Debug)]
enum Step {
    Add(u8, f64),
    Remove(u8),
    Reweight(u8, f64),
}

fn weight() -> impl Strategy<Value = f64> {
    prop_oneof![
        4 => 0.25f64..8.0,
        1 => prop::sample::select(vec![1e-9, 1e-3, 1.0, 1e3, 1e9]),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (0u8..12, weight()).prop_map(|(i, w)| Step::Add(i, w)),
        (0u8..12).prop_map(Step::Remove),
        (0u8..12, weight()).prop_map(|(i, w)| Step::Reweight(i, w)),
    ]
}

/// Applies `step` to `ring` if it is valid there; skips it otherwise.
fn apply_step(ring: &Ring, step: &Step) -> Option<Ring> {
    let id = |i: u8| format!("n{i}");
    let change = match *step {
        Step::Add(i, w) => Change::Add {
            node: Node::new(id(i), w),
        },
        Step::Remove(i) => Change::Remove { id: id(i) },
        Step::Reweight(i, w) => Change::Reweight {
            id: id(i),
            weight: w,
        },
    };
    ring.apply(&change).ok()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// After any sequence of changes the table equals a fresh full build of
    /// the final set, which equals the brute-force definition.
    #[test]
    fn changes_equal_full_build(
        slots_log2 in prop_oneof![0u32..=6, 7u32..=12, Just(15u32)],
        initial in prop::collection::vec(weight(), 1..6),
        steps in prop::collection::vec(step(), 1..8),
    ) {
        let mut ring = Ring::new(config(1 << slots_log2, &initial)).unwrap();
        for s in &steps {
            if let Some(next) = apply_step(&ring, s) {
                ring = next;
            }
        }
        let fresh = Ring::new(ring.config()).unwrap();
        prop_assert!(fresh == ring);
        if slots_log2 <= 12 {
            prop_assert!(fresh.tables == brute_force(&fresh));
        }
    }

    /// Any input order, and a JSON round trip, give the identical ring.
    #[test]
    fn order_and_serialization_do_not_matter(
        weights in prop::collection::vec(weight(), 1..8),
        seed in any::<u64>(),
    ) {
        let cfg = config(1 << 10, &weights);
        let ring = Ring::new(cfg.clone()).unwrap();
        let mut shuffled = cfg;
        let n = shuffled.nodes.len();
        for i in (1..n).rev() {
            let j = (hash::draw(seed, i as u64) % (i as u64 + 1)) as usize;
            shuffled.nodes.swap(i, j);
        }
        prop_assert!(Ring::new(shuffled).unwrap() == ring);
        let back: Ring = serde_json::from_str(&serde_json::to_string(&ring).unwrap()).unwrap();
        prop_assert!(back == ring);
    }
}

#[test]
fn a_successor_is_the_full_build_of_its_snapshot() {
    let base = Ring::new(RingConfig {
        version: 1,
        slots: 4096,
        nodes: vec![
            Node::new("a", 1.0),
            Node::new("b", 2.0),
            Node::new("c", 1.0),
        ],
    })
    .unwrap();
    let with = |nodes: Vec<Node>| RingConfig {
        version: 9,
        slots: 4096,
        nodes,
    };
    let mut zoned = Node::new("b", 2.0);
    zoned.zone = "z9".into();
    for next in [
        // one joins (given in another order), one leaves, one reweighted
        with(vec![
            Node::new("d", 1.5),
            Node::new("c", 1.0),
            Node::new("a", 1.0),
            Node::new("b", 2.0),
        ]),
        with(vec![Node::new("a", 1.0), Node::new("c", 1.0)]),
        with(vec![
            Node::new("a", 1.0),
            Node::new("b", 0.5),
            Node::new("c", 1.0),
        ]),
        // no one-node change: a zone, two changes, another M
        with(vec![Node::new("a", 1.0), zoned, Node::new("c", 1.0)]),
        with(vec![Node::new("a", 1.0), Node::new("d", 1.0)]),
        RingConfig {
            version: 9,
            slots: 8192,
            nodes: vec![Node::new("a", 1.0)],
        },
    ] {
        let expected = Ring::new(next.clone()).unwrap();
        let got = base.successor(next).unwrap();
        assert_eq!(got, expected);
        assert_eq!(got.version(), 9);
    }
}
