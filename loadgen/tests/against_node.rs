//! loadgen against a real `shardcast-node` on ephemeral loopback ports.
//!
//! The node binary is found by `shardcast::harness::node_binary`
//! (`SHARDCAST_NODE_BIN`, else the newest build in the workspace's target
//! directories). These tests do not build it (the workspace build does,
//! before any test runs) and fail loudly when it is missing.

use serde_json::Value;
use shardcast::harness::{node_binary, NodeProcess, RedisProcess};
use std::process::{Command, Stdio};

const SECRET: &str = "loadgen-integration-secret-0123456789";

/// Every field issue 4 requires in the JSON report.
const REQUIRED_FIELDS: &[&str] = &[
    "/scenario",
    "/duration_s",
    "/connections/target",
    "/connections/established",
    "/connections/failed",
    "/messages/sent",
    "/messages/received",
    "/messages/lost",
    "/messages/duplicated",
    "/messages/reordered",
    "/throughput/msgs_per_sec",
    "/latency_us/p50",
    "/latency_us/p90",
    "/latency_us/p99",
    "/latency_us/p999",
    "/latency_us/max",
    "/connect_latency_us/p50",
    "/connect_latency_us/p99",
    "/connect_latency_us/max",
    "/server_rss_bytes",
    "/errors",
];

/// A running node, killed on drop.
struct Node {
    process: NodeProcess,
    ws: String,
}

impl Node {
    fn start() -> Node {
        Node::start_with(&["--echo"])
    }

    /// A node with `extra` flags after the common ones.
    fn start_with(extra: &[&str]) -> Node {
        let bin = node_binary().unwrap_or_else(|e| panic!("{e}"));
        let mut command = Command::new(&bin);
        command
            .args(["--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"])
            .args(["--cores", "2"])
            .args(extra)
            .env("SHARDCAST_SECRET", SECRET)
            .env("RUST_LOG", "warn")
            .stderr(Stdio::inherit());
        let process = NodeProcess::start(command)
            .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
        Node {
            ws: process.ws.to_string(),
            process,
        }
    }

    fn pid(&self) -> String {
        self.process.pid().to_string()
    }
}

/// Runs loadgen with `args` (plus `--report`) and returns the parsed report.
fn loadgen(args: &[&str]) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.json");
    let out = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(args)
        .arg("--report")
        .arg(&report)
        .arg("--quiet")
        .output()
        .expect("run loadgen");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "loadgen failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    let text = std::fs::read_to_string(&report).expect("report written");
    println!("{stdout}");
    serde_json::from_str(&text).expect("report is JSON")
}

fn u(v: &Value, path: &str) -> u64 {
    v.pointer(path)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("{path} missing in {v:#}"))
}

fn assert_sane_latency(r: &Value) {
    let (p50, p90, p99, p999, max) = (
        u(r, "/latency_us/p50"),
        u(r, "/latency_us/p90"),
        u(r, "/latency_us/p99"),
        u(r, "/latency_us/p999"),
        u(r, "/latency_us/max"),
    );
    assert!(
        p50 >= 1 && p50 <= p90 && p90 <= p99 && p99 <= p999 && p999 <= max,
        "{r:#}"
    );
    // Loopback on a shared 2-core machine, possibly a debug node: generous.
    assert!(p50 < 100_000, "p50 {p50} µs");
    assert!(p99 < 1_000_000, "p99 {p99} µs");
}

#[test]
fn direct_against_one_node_loses_and_reorders_nothing() {
    let node = Node::start();
    let target = format!("ws://{}/ws", node.ws);
    let r = loadgen(&[
        "direct",
        "--target",
        &target,
        "--duration",
        "3",
        "--users",
        "300",
        "--rate",
        "1500",
        "--server-pid",
        &node.pid(),
    ]);
    for f in REQUIRED_FIELDS {
        assert!(r.pointer(f).is_some(), "report lacks {f}");
    }
    assert_eq!(r["scenario"], "direct");
    assert_eq!(r["interrupted"], false);
    assert_eq!(u(&r, "/connections/established"), 300);
    assert_eq!(u(&r, "/connections/failed"), 0);
    assert_eq!(u(&r, "/messages/lost"), 0, "{r:#}");
    assert_eq!(u(&r, "/messages/reordered"), 0, "{r:#}");
    assert_eq!(u(&r, "/messages/duplicated"), 0, "{r:#}");
    let sent = u(&r, "/messages/sent");
    assert!(
        sent >= 4_000,
        "open loop at 1500/s for 3 s sent only {sent}"
    );
    assert_eq!(u(&r, "/messages/received"), sent);
    assert_eq!(u(&r, "/messages/expected"), sent);
    assert_eq!(u(&r, "/latency_us/count"), sent);
    assert!(u(&r, "/server_rss_bytes") > 0);
    assert_sane_latency(&r);
}

#[test]
fn two_workers_merge_into_exact_totals() {
    let node = Node::start();
    let target = format!("ws://{}/ws", node.ws);
    let r = loadgen(&[
        "direct",
        "--target",
        &target,
        "--duration",
        "3",
        "--users",
        "200",
        "--rate",
        "1000",
        "--workers",
        "2",
        "--cores",
        "1",
    ]);
    assert_eq!(u(&r, "/workers"), 2);
    let workers = r["per_worker"].as_array().expect("per_worker");
    assert_eq!(workers.len(), 2);
    for (field, total) in [
        ("established", "/connections/established"),
        ("failed", "/connections/failed"),
        ("sent", "/messages/sent"),
        ("received", "/messages/received"),
        ("lost", "/messages/lost"),
        ("duplicated", "/messages/duplicated"),
        ("reordered", "/messages/reordered"),
        ("latency_count", "/latency_us/count"),
    ] {
        let sum: u64 = workers.iter().map(|w| w[field].as_u64().unwrap()).sum();
        assert_eq!(sum, u(&r, total), "{field}: per-worker sum vs merged total");
    }
    // Both workers did real work, and together everything arrived.
    for w in workers {
        assert_eq!(w["established"].as_u64(), Some(100), "{w}");
        assert!(w["sent"].as_u64().unwrap() > 1_000, "{w}");
    }
    assert_eq!(u(&r, "/messages/lost"), 0, "{r:#}");
    assert_eq!(u(&r, "/messages/received"), u(&r, "/messages/sent"));
    assert_sane_latency(&r);
}

#[test]
fn closed_loop_echo_round_trips_every_message() {
    let node = Node::start();
    let target = format!("ws://{}/echo", node.ws);
    let r = loadgen(&[
        "echo",
        "--target",
        &target,
        "--duration",
        "2",
        "--connections",
        "20",
        "--rate",
        "0",
    ]);
    assert_eq!(u(&r, "/connections/established"), 20);
    assert!(u(&r, "/messages/sent") > 1_000, "{r:#}");
    assert_eq!(u(&r, "/messages/lost"), 0);
    assert_eq!(u(&r, "/messages/received"), u(&r, "/messages/sent"));
    assert_sane_latency(&r);
}

#[test]
fn storm_with_resume_recovers_every_user_and_loses_nothing() {
    let node = Node::start();
    let target = format!("ws://{}/ws", node.ws);
    let r = loadgen(&[
        "storm",
        "--target",
        &target,
        "--duration",
        "4",
        "--users",
        "100",
        "--rate",
        "500",
        "--wave-fraction",
        "0.3",
        "--waves",
        "2",
        "--resume",
        "--backoff-base-ms",
        "50",
        "--backoff-max-ms",
        "400",
        "--backoff-jitter-ms",
        "50",
        // Fixed cores: each core rounds its share of a wave (50 users × 0.3 =
        // 15), so the total is exactly 2 cores × 15 × 2 waves = 60.
        "--cores",
        "2",
    ]);
    assert_eq!(u(&r, "/connections/disconnects"), 60);
    assert_eq!(u(&r, "/connections/reconnects"), 60);
    assert_eq!(u(&r, "/messages/lost"), 0, "{r:#}");
    assert_eq!(u(&r, "/recovery_latency_us/count"), 60);
    // Backoff: the first attempt waits T_0 = 50 ms plus up to 50 ms jitter.
    assert!(u(&r, "/recovery_latency_us/p50") >= 50_000, "{r:#}");
}

#[test]
fn direct_failover_after_sigkill_loses_nothing_acked() {
    // Two nodes on one Redis; node A is killed mid-run and its users move
    // to B (--failover-target), which replays from Redis.
    let redis = RedisProcess::start().expect("redis-server (apt-get install -y redis-server)");
    let url = redis.url();
    let a = Node::start_with(&["--node-id", "a", "--redis", &url]);
    let b = Node::start_with(&["--node-id", "b", "--redis", &url]);
    let (target, failover) = (format!("ws://{}/ws", a.ws), format!("ws://{}/ws", b.ws));
    let killer = std::thread::spawn(move || {
        let mut a = a;
        std::thread::sleep(std::time::Duration::from_millis(2500));
        a.process.kill().expect("kill node a");
    });
    let r = loadgen(&[
        "direct",
        "--target",
        &target,
        "--failover-target",
        &failover,
        "--duration",
        "5",
        "--users",
        "100",
        "--rate",
        "500",
    ]);
    killer.join().unwrap();
    assert_eq!(u(&r, "/connections/dropped"), 100, "{r:#}");
    assert_eq!(u(&r, "/connections/reconnects"), 100, "{r:#}");
    assert_eq!(u(&r, "/messages/lost_acked"), 0, "{r:#}");
    assert_eq!(
        u(&r, "/messages/lost_acked") + u(&r, "/messages/lost_unacked"),
        u(&r, "/messages/lost")
    );
    // B delivered after the failover: more arrived than A could have routed
    // in its 2.5 s (at most ~1,250 at 500/s).
    assert!(u(&r, "/messages/received") > 1_500, "{r:#}");
    assert_eq!(r["parameters"]["failover_targets"][0], failover.as_str());
}

#[test]
fn connect_with_minted_jwts_against_a_node_with_auth_jwt() {
    // HS256 with the cluster secret (the node has no separate JWT secret).
    let node = Node::start_with(&["--auth", "jwt"]);
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("jwt.secret");
    std::fs::write(&secret, SECRET).unwrap();
    let target = format!("ws://{}/ws", node.ws);
    let r = loadgen(&[
        "connect",
        "--target",
        &target,
        "--connections",
        "200",
        "--duration",
        "1",
        "--jwt-secret-file",
        secret.to_str().unwrap(),
        "--server-pid",
        &node.pid(),
    ]);
    assert_eq!(u(&r, "/connections/established"), 200, "{r:#}");
    assert_eq!(u(&r, "/connections/failed"), 0, "{r:#}");
    // Without tokens the same node refuses every upgrade (401).
    let r = loadgen(&[
        "connect",
        "--target",
        &target,
        "--connections",
        "20",
        "--duration",
        "1",
    ]);
    assert_eq!(u(&r, "/connections/established"), 0, "{r:#}");
    assert_eq!(u(&r, "/connections/failed"), 20, "{r:#}");
}

#[test]
fn direct_across_a_three_node_cluster_with_a_killed_node_loses_nothing_acked() {
    use shardcast::harness::{free_port, loopback_ring, TansuProcess};
    // Redis, tansu, three nodes on one static ring; loadgen connects each
    // user to its owner (--ring). Node n1 is SIGKILLed mid-run and restarted
    // with the same id and port; its users reconnect and resume.
    let redis = RedisProcess::start().expect("redis-server (apt-get install -y redis-server)");
    let tansu = TansuProcess::start().expect("tansu (cargo install tansu --features dynostore)");
    let dir = tempfile::tempdir().unwrap();
    let ports: Vec<u16> = (0..3).map(|_| free_port().unwrap()).collect();
    let ring = loopback_ring(&ports, 4096);
    let ring_file = dir.path().join("ring.json");
    std::fs::write(&ring_file, serde_json::to_string(&ring).unwrap()).unwrap();
    let ring_arg = ring_file.to_str().unwrap().to_owned();
    let start = move |i: usize| -> NodeProcess {
        let mut command = Command::new(node_binary().unwrap());
        command
            .args(["--listen", &format!("127.0.0.1:{}", ports[i])])
            .args(["--metrics-listen", "127.0.0.1:0", "--cores", "1"])
            .args(["--node-id", &format!("n{i}"), "--ring", &ring_arg])
            .args(["--redis", &redis.url(), "--kafka", &tansu.brokers()])
            .env("SHARDCAST_SECRET", SECRET)
            .env("RUST_LOG", "warn")
            .stderr(Stdio::inherit());
        NodeProcess::start(command).expect("start a cluster node")
    };
    let nodes: Vec<NodeProcess> = (0..3).map(&start).collect();
    let target = format!("ws://{}/ws", nodes[0].ws);
    let killer = std::thread::spawn(move || {
        let mut nodes = nodes;
        std::thread::sleep(std::time::Duration::from_millis(2500));
        nodes[1].kill().expect("kill n1");
        std::thread::sleep(std::time::Duration::from_millis(1000));
        nodes[1] = start(1);
        // Redis and tansu live in `start`: they must outlive the run.
        (nodes, start)
    });
    let r = loadgen(&[
        "direct",
        "--target",
        &target,
        "--ring",
        ring_file.to_str().unwrap(),
        "--duration",
        "7",
        "--users",
        "90",
        "--rate",
        "500",
    ]);
    let _cluster = killer.join().unwrap();
    assert!(u(&r, "/connections/reconnects") > 0, "{r:#}");
    assert_eq!(u(&r, "/messages/lost_acked"), 0, "{r:#}");
    assert_eq!(u(&r, "/messages/reordered"), 0, "{r:#}");
    assert!(u(&r, "/messages/received") > 2_000, "{r:#}");
}
