//! `loadgen direct --control` against a real changing cluster: Redis,
//! tansu, `shardcast-ctl` and nodes following it. A node joins mid-run and
//! another is SIGKILLed; nothing acked is lost, and each change moved
//! exactly the users whose owner changed between the control plane's rings
//! (judged by `loadgen::cluster` from loadgen's `--events` log).
//!
//! The binaries are found by `shardcast::harness` (the workspace build
//! makes them before the tests run).

use loadgen::cluster::{judge, run_users, table, Change};
use serde_json::Value;
use shardcast::control::client::ControlClient;
use shardcast::harness::{
    ctl_binary, free_port, node_binary, CtlProcess, NodeProcess, RedisProcess, TansuProcess,
};
use shardcast::ring::Ring;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SECRET: &str = "loadgen-cluster-secret-0123456789";

fn unix_ms() -> u64 {
    loadgen::events::unix_ms()
}

/// The control plane's ring once `pred` holds for it (at most 15 s), and
/// when it was first seen.
fn ring_when(client: &ControlClient, pred: impl Fn(&Ring) -> bool) -> (Ring, u64) {
    let t0 = Instant::now();
    loop {
        assert!(t0.elapsed() < Duration::from_secs(15), "no such ring");
        if let Ok(Some(ring)) = client.ring() {
            if pred(&ring) {
                return (ring, unix_ms());
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn has(ring: &Ring, id: &str) -> bool {
    ring.nodes().iter().any(|n| n.id == id)
}

#[test]
fn direct_through_ctl_while_a_node_joins_and_one_is_killed_moves_exactly_the_ring_changes() {
    let redis = RedisProcess::start().expect("redis-server");
    let tansu = TansuProcess::start().expect("tansu (cargo install tansu --features dynostore)");
    let mut ctl = Command::new(ctl_binary().unwrap());
    ctl.args(["--listen", "127.0.0.1:0", "--slots", "4096"])
        // A grace long enough that a busy machine does not expire anyone:
        // the killed node leaves by its users' `unreachable=` reports.
        .args(["--heartbeat-grace-secs", "3", "--kafka", &tansu.brokers()])
        .env("SHARDCAST_SECRET", SECRET)
        .env("RUST_LOG", "warn")
        .stderr(Stdio::inherit());
    let ctl = CtlProcess::start(ctl).expect("start shardcast-ctl");
    let url = ctl.url();
    let client = ControlClient::new(&url, Duration::from_secs(2)).unwrap();
    let ports: Vec<u16> = (0..4).map(|_| free_port().unwrap()).collect();
    let (redis_url, brokers) = (redis.url(), tansu.brokers());
    let start = move |i: usize| -> NodeProcess {
        let mut c = Command::new(node_binary().unwrap());
        c.args(["--listen", &format!("127.0.0.1:{}", ports[i])])
            .args(["--metrics-listen", "127.0.0.1:0", "--cores", "1"])
            .args(["--node-id", &format!("n{i}"), "--control", &url])
            .args(["--heartbeat-ms", "100", "--rebalance-secs", "1"])
            .args(["--redis", &redis_url, "--kafka", &brokers])
            .env("SHARDCAST_SECRET", SECRET)
            .env("RUST_LOG", "warn")
            .stderr(Stdio::inherit());
        NodeProcess::start(c).expect("start a node")
    };
    let mut nodes: Vec<NodeProcess> = (0..3).map(&start).collect();
    let (initial, _) = ring_when(&client, |r| r.nodes().len() == 3);
    // Every node routes by the three-node ring before anyone connects.
    std::thread::sleep(Duration::from_millis(500));

    let dir = tempfile::tempdir().unwrap();
    let (report, events) = (dir.path().join("r.json"), dir.path().join("ev.jsonl"));
    let loadgen = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(["direct", "--control", &ctl.url(), "--events"])
        .arg(&events)
        .args(["--duration", "11", "--users", "120", "--rate", "300"])
        .args(["--cores", "1", "--quiet", "--report"])
        .arg(&report)
        .stdout(Stdio::piped())
        .spawn()
        .expect("run loadgen");

    // Connects take well under a second; then the changes.
    std::thread::sleep(Duration::from_millis(2500));
    let mut changes = Vec::new();
    let before = client.ring().unwrap().unwrap();
    let at_ms = unix_ms();
    nodes.push(start(3));
    let (after, ring_at) = ring_when(&client, |r| has(r, "n3"));
    changes.push(Change {
        event: "join".into(),
        node: "n3".into(),
        at_ms,
        ring_at_ms: Some(ring_at),
        ring_before: before,
        ring_after: after,
    });

    // Moves are spread over --rebalance-secs 1; then kill n1.
    std::thread::sleep(Duration::from_millis(3000));
    let before = client.ring().unwrap().unwrap();
    let at_ms = unix_ms();
    nodes[1].kill().expect("kill n1");
    let (after, ring_at) = ring_when(&client, |r| !has(r, "n1"));
    changes.push(Change {
        event: "kill".into(),
        node: "n1".into(),
        at_ms,
        ring_at_ms: Some(ring_at),
        ring_before: before,
        ring_after: after,
    });

    let out = loadgen.wait_with_output().expect("loadgen ran");
    println!("{}", String::from_utf8_lossy(&out.stdout));
    assert!(out.status.success(), "loadgen failed");
    let r: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let n = |p: &str| {
        r.pointer(p)
            .and_then(Value::as_u64)
            .unwrap_or_else(|| panic!("{p}"))
    };
    let moves = loadgen::events::read(&events).unwrap();
    let users = run_users(r["run_id"].as_str().unwrap(), 120);
    let last = client.ring().unwrap().map(|r| r.version());
    let verdict = judge(&changes, &moves, &users, Some(initial.version()), last);
    println!("{}", table(&verdict));

    assert_eq!(n("/connections/established"), 120, "{r:#}");
    assert_eq!(n("/messages/lost_acked"), 0, "{r:#}");
    assert_eq!(n("/messages/reordered"), 0, "{r:#}");
    assert!(n("/messages/received") > 2_000, "{r:#}");
    for c in &verdict.changes {
        assert!(c.optimum > 0, "{} moved nobody in the ring", c.change);
        assert_eq!(c.unscripted_versions, Some(0), "{}", table(&verdict));
    }
    assert!(verdict.all_exact, "{}", table(&verdict));
    let f = verdict.changes[1].failover.as_ref().unwrap();
    assert_eq!(f.resumed, f.users, "{}", table(&verdict));
    // The contract's bound on failover (the goal is under 2 s).
    assert!(f.all_ms.is_some_and(|ms| ms < 5_000), "{}", table(&verdict));
    // The report sums the same log.
    assert_eq!(n("/moves/total"), moves.len() as u64);
    assert_eq!(
        n("/moves/resumed"),
        moves.iter().filter(|m| m.resumed_ms.is_some()).count() as u64
    );

    // `connect --control`: each connection asks, then holds on its owner.
    let connect = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(["connect", "--control", &ctl.url(), "--connections", "20"])
        .args(["--duration", "1", "--cores", "1", "--quiet", "--report"])
        .arg(&report)
        .output()
        .expect("run loadgen connect");
    assert!(connect.status.success(), "{connect:?}");
    let r: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(r["connections"]["established"], 20, "{r:#}");
    assert_eq!(r["connections"]["dropped"], 0, "{r:#}");
    drop(nodes);
}
