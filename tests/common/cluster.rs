//! A static cluster for the relay tests: one Redis, one tansu broker, and
//! nodes `n0..nN` on fixed loopback ports sharing one ring file.

use std::{
    path::PathBuf,
    process::{Command, Stdio},
};

use serde_json::Value;
use shardcast::{
    harness::{self, RedisProcess, TansuProcess},
    ring::Ring,
};

use super::{Client, Node, SECRET};

/// See the module docs. Every process is killed when it is dropped.
pub struct Cluster {
    pub redis: RedisProcess,
    pub tansu: TansuProcess,
    pub nodes: Vec<Option<Node>>,
    pub ring: Ring,
    ports: Vec<u16>,
    ring_file: PathBuf,
    extra: Vec<String>,
}

/// A free loopback port.
pub fn free_port() -> u16 {
    harness::free_port().expect("a free port")
}

impl Cluster {
    /// Starts Redis, tansu and `n` nodes (`--cores 2`, plus `extra`).
    pub fn start(n: usize, extra: &[&str]) -> Cluster {
        let redis = RedisProcess::start().expect("start redis-server");
        let tansu = TansuProcess::start().expect("start tansu");
        let ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let ring = harness::loopback_ring(&ports, 4096);
        let ring_file = std::env::temp_dir().join(format!(
            "shardcast-ring-{}-{}.json",
            std::process::id(),
            ports[0]
        ));
        std::fs::write(&ring_file, serde_json::to_string(&ring).unwrap()).unwrap();
        let mut cluster = Cluster {
            redis,
            tansu,
            nodes: (0..n).map(|_| None).collect(),
            ring,
            ports,
            ring_file,
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        for i in 0..n {
            cluster.start_node(i);
        }
        cluster
    }

    /// The command line of node `i`.
    pub fn command(&self, i: usize) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_shardcast-node"));
        command
            .args(["--listen", &format!("127.0.0.1:{}", self.ports[i])])
            .args(["--metrics-listen", "127.0.0.1:0", "--cores", "2"])
            .args(["--node-id", &format!("n{i}")])
            .args([
                "--redis",
                &self.redis.url(),
                "--kafka",
                &self.tansu.brokers(),
            ])
            .arg("--ring")
            .arg(&self.ring_file)
            .args(&self.extra)
            .env("SHARDCAST_SECRET", SECRET)
            // NODE_LOG=debug shows the nodes' own logs while debugging.
            .env(
                "RUST_LOG",
                std::env::var("NODE_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stderr(Stdio::inherit());
        command
    }

    /// Starts node `i` (again, after a kill: same id, same port).
    pub fn start_node(&mut self, i: usize) {
        self.nodes[i] = Some(Node::from_command(self.command(i)));
    }

    /// Node `i`, which must be running.
    pub fn node(&self, i: usize) -> &Node {
        self.nodes[i].as_ref().expect("node is running")
    }

    /// SIGKILLs node `i`.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut node) = self.nodes[i].take() {
            node.process.kill().expect("kill the node");
        }
    }

    /// Sends `signal` to the broker (SIGSTOP: a broker that stops answering).
    pub fn tansu_signal(&self, signal: i32) {
        // SAFETY: kill(2) on the pid of a child we spawned and hold.
        unsafe { libc::kill(self.tansu.pid() as i32, signal) };
    }

    /// The index of the node that owns `user`.
    pub fn owner(&self, user: &str) -> usize {
        let id = &self.ring.lookup(user).id;
        id[1..].parse().expect("node ids are n<i>")
    }

    /// `n` user names per node, in node order: users[i] are owned by node i.
    pub fn users_per_node(&self, n: usize) -> Vec<Vec<String>> {
        let mut out = vec![Vec::new(); self.nodes.len()];
        for k in 0.. {
            if out.iter().all(|u: &Vec<String>| u.len() >= n) {
                break;
            }
            let user = format!("user{k}");
            let owner = self.owner(&user);
            if out[owner].len() < n {
                out[owner].push(user);
            }
        }
        out
    }

    /// Connects `user` to its owner; returns the client and its welcome.
    pub fn connect(&self, user: &str) -> (Client, Value) {
        self.node(self.owner(user)).connect(user)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.ring_file);
    }
}
