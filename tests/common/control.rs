//! Clusters under a real `shardcast-ctl` for the control tests: the Redis
//! and broker the nodes need, ctl itself, node command lines, and waits on
//! the published ring.

use std::{
    io::{Read, Write},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use shardcast::{
    control::client::ControlClient,
    harness::{CtlProcess, RedisProcess, TansuProcess},
};

use super::SECRET;

/// The Redis and broker a cluster's nodes need (`--control` needs
/// `--kafka` and `--redis`), killed when dropped.
pub struct Backends {
    pub redis: RedisProcess,
    pub tansu: TansuProcess,
}

impl Backends {
    pub fn start() -> Backends {
        Backends {
            redis: RedisProcess::start().expect("redis-server"),
            tansu: TansuProcess::start().expect("tansu"),
        }
    }

    pub fn args(&self) -> [String; 4] {
        [
            "--redis".into(),
            self.redis.url(),
            "--kafka".into(),
            self.tansu.brokers(),
        ]
    }
}

/// The status line of an upgrade request for `user` at `port`.
pub fn upgrade_status(port: u16, user: &str) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "GET /ws?userId={user} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\n\r\n"
    )
    .unwrap();
    let mut buf = [0u8; 256];
    let n = s.read(&mut buf).unwrap_or(0);
    String::from_utf8_lossy(&buf[..n])
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// `shardcast-ctl` on an ephemeral port, M = 4096, a grace long enough
/// that no node of a test expires, then `extra` flags.
pub fn start_ctl(extra: &[&str]) -> CtlProcess {
    let mut c = Command::new(env!("CARGO_BIN_EXE_shardcast-ctl"));
    c.args(["--listen", "127.0.0.1:0", "--slots", "4096"])
        .args(["--heartbeat-grace-secs", "30"])
        .args(extra)
        .env("SHARDCAST_SECRET", SECRET)
        .env("RUST_LOG", "warn")
        .stderr(Stdio::inherit());
    CtlProcess::start(c).expect("start shardcast-ctl")
}

/// The control plane's ring once it has `n` nodes (at most 10 s).
pub fn ring_of(client: &ControlClient, n: usize) -> shardcast::ring::Ring {
    let t0 = Instant::now();
    loop {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "no ring of {n} nodes"
        );
        if let Ok(Some(ring)) = client.ring() {
            if ring.nodes().len() == n {
                return ring;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Node `n{i}` at `port` following `url`, heartbeats every 100 ms, moves
/// spread over 1 s.
pub fn node_cmd(b: &Backends, i: usize, port: u16, url: &str) -> Command {
    node_cmd_with(b, i, port, url, "1")
}

/// [`node_cmd`] with moves spread over `rebalance_secs`.
pub fn node_cmd_with(
    b: &Backends,
    i: usize,
    port: u16,
    url: &str,
    rebalance_secs: &str,
) -> Command {
    node_cmd_full(b, i, port, url, "100", rebalance_secs)
}

/// [`node_cmd`] with heartbeats every `heartbeat_ms` and moves spread over
/// `rebalance_secs`.
pub fn node_cmd_full(
    b: &Backends,
    i: usize,
    port: u16,
    url: &str,
    heartbeat_ms: &str,
    rebalance_secs: &str,
) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_shardcast-node"));
    c.args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--metrics-listen", "127.0.0.1:0", "--cores", "2"])
        .args(["--node-id", &format!("n{i}"), "--control", url])
        .args([
            "--heartbeat-ms",
            heartbeat_ms,
            "--rebalance-secs",
            rebalance_secs,
        ])
        .args(b.args())
        .env("SHARDCAST_SECRET", SECRET)
        // NODE_LOG=info shows what the nodes did.
        .env(
            "RUST_LOG",
            std::env::var("NODE_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stderr(Stdio::inherit());
    c
}
