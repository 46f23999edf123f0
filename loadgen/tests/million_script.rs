//! `scripts/million.sh` at a small size (3,000 connections, one node, one
//! worker): the same script as the million run, end to end, with the real
//! node and loadgen binaries. The node binary is found like the other
//! loadgen tests find it (`shardcast::harness::node_binary`).

use serde_json::Value;
use shardcast::harness::node_binary;
use std::{net::TcpListener, path::Path, process::Command};

/// A port free on 127.0.1.1 (where the script's first node listens) with
/// the next one free too (its metrics).
fn free_port_pair() -> u16 {
    for _ in 0..50 {
        let port = TcpListener::bind("127.0.1.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if port < 65534 && TcpListener::bind(("127.0.1.1", port + 1)).is_ok() {
            return port;
        }
    }
    panic!("no two free ports in a row on 127.0.1.1");
}

fn report(dir: &Path, name: &str) -> Value {
    let text = std::fs::read_to_string(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn the_million_script_holds_and_delivers_a_small_run_and_stops_its_nodes() {
    let node = node_binary().unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::tempdir().unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/million.sh");
    let port = free_port_pair().to_string();
    let out = Command::new("bash")
        .arg(&script)
        .args([
            "--connections",
            "3000",
            "--connect-rate",
            "3000",
            "--hold",
            "2",
        ])
        .args([
            "--direct-rate",
            "1000",
            "--direct-secs",
            "3",
            "--port",
            &port,
        ])
        .arg("--node-bin")
        .arg(&node)
        .args(["--loadgen-bin", env!("CARGO_BIN_EXE_loadgen")])
        .arg("--out")
        .arg(dir.path())
        .output()
        .expect("run scripts/million.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "million.sh failed: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );

    // tuning/check ran first and its summary was kept.
    let check = std::fs::read_to_string(dir.path().join("check.txt")).unwrap();
    assert!(check.lines().any(|l| l.starts_with("summary\t")), "{check}");

    let connect = report(dir.path(), "connect.json");
    assert_eq!(connect["connections"]["established"], 3000, "{stdout}");
    assert_eq!(connect["connections"]["failed"], 0, "{stdout}");
    assert_eq!(connect["connections"]["dropped"], 0, "{stdout}");
    assert!(
        connect["memory"]["server_per_connection_bytes"]
            .as_u64()
            .unwrap()
            > 0
    );

    let direct = report(dir.path(), "direct.json");
    let sent = direct["messages"]["sent"].as_u64().unwrap();
    assert!(sent >= 2000, "{stdout}");
    assert_eq!(direct["messages"]["received"], sent, "{stdout}");
    assert_eq!(direct["messages"]["lost"], 0, "{stdout}");
    assert!(direct["latency_us"]["p99"].as_u64().unwrap() > 0);

    // The kernel's share was sampled and summed up.
    assert!(stdout.contains("B per connection pair"), "{stdout}");
    let kernel = std::fs::read_to_string(dir.path().join("kernel.log")).unwrap();
    assert!(kernel.contains("slab_kib="), "{kernel}");

    // Every node the script started is gone.
    let pids = stdout
        .lines()
        .find_map(|l| l.strip_prefix("nodes up: pids "))
        .expect("the script names its nodes");
    for pid in pids.split_whitespace() {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists()
                || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .is_ok_and(|s| s.contains(") Z ")),
            "node {pid} still runs"
        );
    }
}
