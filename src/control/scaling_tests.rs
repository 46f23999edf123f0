//! The scaling decision on recorded heartbeat series
//! (`tests/fixtures/scaling/*.csv`): each series goes through
//! [`Membership`] (which aggregates the members' loads) and the
//! [`Scaler`], as in `shardcast-ctl`.

use super::*;
use crate::control::{heartbeat::Heartbeat, membership::Membership};

fn params() -> ScalingParams {
    ScalingParams {
        alpha: 1.25,
        beta: 1.25,
        gamma: 1.0,
        delta: 1.0,
        conn_per_node: 500_000.0,
        mps_per_node: 200_000.0,
        latency_slo_ms: 50.0,
        min_interval: Duration::from_secs(60),
        max_step: 2,
    }
}

/// Replays a series as `shardcast-ctl` sees it: heartbeats into the
/// membership, and an observation every 250 ms (the server ticks every
/// grace/10). Returns the decisions and the demand at each observation
/// (time in ms, demand).
fn replay(csv: &str, params: ScalingParams) -> (Vec<Decision>, Vec<(u64, u32)>, Scaler) {
    let t0 = Instant::now();
    let mut members = Membership::new(64, Duration::from_secs(3600), 0, Box::new(|_| Ok(())));
    let mut scaler = Scaler::new(params);
    let mut demands = Vec::new();
    let mut decisions = Vec::new();
    let mut next_tick = 100;
    let mut tick = |members: &Membership, scaler: &mut Scaler, t_ms: u64| {
        let m = members.members();
        let inputs = Inputs {
            nodes: m.len(),
            total_connections: m.values().map(|m| m.load.connections).sum(),
            total_mps: m.values().map(|m| m.load.mps).sum(),
            p95_ms: m.values().map(|m| m.load.p95_ms).fold(0.0, f64::max),
        };
        let now = t0 + Duration::from_millis(t_ms);
        if let Some(d) = scaler.observe(inputs, now, t_ms) {
            decisions.push(d.clone());
        }
        demands.push((t_ms, demand(&scaler.params, &inputs).target));
    };
    for line in csv.lines().filter(|l| !l.starts_with('#')).skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        let t_ms: u64 = f[0].parse().unwrap();
        let hb = Heartbeat {
            node_id: f[1].into(),
            ws_url: format!("ws://{}:8080/ws", f[1]),
            weight: 1.0,
            zone: String::new(),
            connections: f[2].parse().unwrap(),
            mps: f[3].parse().unwrap(),
            p95_ms: f[4].parse().unwrap(),
            draining: false,
            ring_version: 0,
        };
        while next_tick < t_ms {
            tick(&members, &mut scaler, next_tick);
            next_tick += 250;
        }
        members
            .heartbeat(&hb, t0 + Duration::from_millis(t_ms))
            .unwrap();
    }
    tick(&members, &mut scaler, next_tick);
    (decisions, demands, scaler)
}

/// The hysteresis rules, checked on every decision of a series.
fn check_rules(decisions: &[Decision], demands: &[(u64, u32)], p: &ScalingParams) {
    let window = p.min_interval.as_millis() as u64;
    for (i, d) in decisions.iter().enumerate() {
        assert!(d.to >= 1);
        assert!(d.from.abs_diff(d.to) <= p.max_step, "{d:?}");
        if i > 0 {
            assert!(d.at_ms - decisions[i - 1].at_ms >= window, "{d:?}");
        }
        if d.to < d.from {
            // Scale-in: every demand of the last window was below from - 1.
            for &(t, demand) in demands.iter().filter(|(t, _)| *t + window >= d.at_ms) {
                assert!(
                    t > d.at_ms || demand + 1 < d.from,
                    "{d:?} with {demand} at {t}"
                );
            }
        }
    }
}

#[test]
fn the_formula_is_the_contracts() {
    let p = params();
    let d = demand(
        &p,
        &Inputs {
            nodes: 3,
            total_connections: 1_000_000,
            total_mps: 500_000.0,
            p95_ms: 100.0,
        },
    );
    // ceil(1.25·1e6/5e5) = 3, ceil(1.25·5e5/2e5) = 4, ceil(e^(1·(100/50 − 1))) = 3.
    assert_eq!((d.r_conn, d.r_mps, d.r_lat, d.target), (3, 4, 3, 4));
    let idle = demand(&p, &Inputs::default());
    assert_eq!(
        (idle.r_conn, idle.r_mps, idle.r_lat, idle.target),
        (0, 0, 1, 1)
    );
    let mut no_lat = p;
    no_lat.gamma = 0.0;
    assert_eq!(
        demand(&no_lat, &Inputs::default()).target,
        1,
        "at least one node"
    );
}

#[test]
fn a_ramp_is_followed_step_by_step() {
    let p = params();
    let (decisions, demands, scaler) =
        replay(include_str!("../../tests/fixtures/scaling/ramp.csv"), p);
    check_rules(&decisions, &demands, &p);
    // 3M connections at the end: ceil(1.25 · 3e6 / 5e5) = 8.
    assert_eq!(scaler.target(), Some(8));
    assert!(
        decisions.iter().all(|d| d.to > d.from),
        "a ramp only scales out: {decisions:?}"
    );
    assert_eq!(decisions.first().map(|d| d.from), Some(3));
}

#[test]
fn flapping_load_does_not_flap_the_target() {
    let p = params();
    let (decisions, demands, scaler) =
        replay(include_str!("../../tests/fixtures/scaling/flapping.csv"), p);
    check_rules(&decisions, &demands, &p);
    // The demand flips between 2 and 6 every 10 s, 120 times.
    let flips = demands.windows(2).filter(|w| w[0].1 != w[1].1).count();
    assert!(flips > 100, "{flips}");
    // One decision, 4 → 6, and it holds.
    assert_eq!(decisions.len(), 1, "{decisions:?}");
    assert_eq!((decisions[0].from, decisions[0].to), (4, 6));
    assert_eq!(scaler.target(), Some(6));
}

#[test]
fn a_surge_scales_out_then_in_and_stops_one_above_the_demand() {
    let p = params();
    let (decisions, demands, scaler) = replay(
        include_str!("../../tests/fixtures/scaling/surge_then_calm.csv"),
        p,
    );
    check_rules(&decisions, &demands, &p);
    let moves: Vec<(u32, u32)> = decisions.iter().map(|d| (d.from, d.to)).collect();
    // 2.2M connections: 6 nodes, two steps of 2; then 150k: demand 1, down
    // two steps to 2, and not to 1 (1 is not below 2 − 1).
    assert_eq!(moves, [(2, 4), (4, 6), (6, 4), (4, 2)]);
    assert_eq!(scaler.target(), Some(2));
    assert_eq!(demands.last().unwrap().1, 1);
}

#[test]
fn no_decision_before_the_first_window_and_none_without_nodes() {
    let mut s = Scaler::new(params());
    let t0 = Instant::now();
    assert!(s.observe(Inputs::default(), t0, 0).is_none());
    assert_eq!(s.target(), None);
    let busy = Inputs {
        nodes: 1,
        total_connections: 10_000_000,
        ..Inputs::default()
    };
    assert!(s.observe(busy, t0, 0).is_none());
    assert!(s
        .observe(busy, t0 + Duration::from_secs(59), 59_000)
        .is_none());
    let d = s
        .observe(busy, t0 + Duration::from_secs(60), 60_000)
        .unwrap();
    assert_eq!((d.from, d.to), (1, 3));
    assert_eq!(s.history().count(), 1);
}
