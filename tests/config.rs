//! Configuration layers on the real binary: environment variables and a
//! TOML file, with flags on top.

use std::process::{Command, Stdio};

use shardcast::{harness::NodeProcess, protocol::ServerEnvelope};

/// Starts the node with `args`/`env`, reads the listening line, connects one
/// user and returns its `welcome.node`.
fn node_id_seen(args: &[&str], env: &[(&str, &str)]) -> String {
    let mut command = Command::new(env!("CARGO_BIN_EXE_shardcast-node"));
    command
        .args(["--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"])
        .args(["--cores", "1"])
        .args(args)
        .envs(env.iter().copied())
        .stderr(Stdio::null());
    let node = NodeProcess::start(command).unwrap();
    let (mut ws, _) = tungstenite::connect(format!("ws://{}/ws?userId=a", node.ws)).unwrap();
    let frame = ws.read().unwrap();
    match ServerEnvelope::parse(frame.to_text().unwrap().as_bytes()).unwrap() {
        ServerEnvelope::Welcome { node, .. } => node.into_owned(),
        other => panic!("expected a welcome, got {other:?}"),
    }
}

#[test]
fn environment_sets_a_knob() {
    assert_eq!(
        node_id_seen(&[], &[("SHARDCAST_NODE_ID", "from-env")]),
        "from-env"
    );
}

#[test]
fn config_file_sets_a_knob_and_flags_win() {
    let path = std::env::temp_dir().join(format!("shardcast-it-{}.toml", std::process::id()));
    std::fs::write(&path, "node-id = \"from-file\"\n").unwrap();
    let file = path.to_str().unwrap();
    assert_eq!(node_id_seen(&["--config", file], &[]), "from-file");
    assert_eq!(
        node_id_seen(&["--config", file, "--node-id", "from-flag"], &[]),
        "from-flag"
    );
    assert_eq!(
        node_id_seen(&["--config", file], &[("SHARDCAST_NODE_ID", "from-env")]),
        "from-env",
        "environment beats the file"
    );
}

#[test]
fn bad_configuration_exits_2_with_a_clear_message() {
    let out = Command::new(env!("CARGO_BIN_EXE_shardcast-node"))
        .args(["--max-message-bytes", "10"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("max-message-bytes"));
}
