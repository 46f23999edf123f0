//! Rate limits per message kind, from the TOML file's `[rate-limits]`
//! table, through real clients against the real binary: a publish spends
//! the kind its room's rule names, sends and joins their own kinds, the
//! user's connections share the buckets, and a refusal says when to retry.

mod common;

use common::{node_command, Node};
use serde_json::{json, Value};

const TABLE: &str = r#"
[rate-limits]
send = "direct"
join = "general"
publish-default = "general"
publish = [
  { rooms = "location.*", kind = "location" },
  { rooms = "chat.*", kind = "chat" },
]

[rate-limits.kinds]
general = { limit = 100, per-secs = 60 }
location = { limit = 1000, per-secs = 60 }
chat = { limit = 3, per-secs = 60 }
direct = { limit = 2, per-secs = 60 }
"#;

fn node_with_table() -> Node {
    // A file per node: the tests run in parallel, and a shared file being
    // rewritten could be read half written.
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = format!("shardcast-rates-{}-{n}.toml", std::process::id());
    let path = std::env::temp_dir().join(name);
    std::fs::write(&path, TABLE).unwrap();
    let mut command = node_command(&["--config", path.to_str().unwrap()]);
    command.env_remove("SHARDCAST_CONFIG");
    Node::from_command(command)
}

fn limited(reply: &Value, id: &str) -> u64 {
    assert_eq!(reply["type"], "error", "{reply}");
    assert_eq!(reply["code"], "rate_limited", "{reply}");
    assert_eq!(reply["id"], id, "{reply}");
    reply["retryAfterMs"].as_u64().expect("retryAfterMs")
}

#[test]
fn a_publish_spends_the_kind_of_its_room_and_is_told_when_to_retry() {
    let node = node_with_table();
    let (mut a, _) = node.connect("ann");
    for i in 0..3 {
        a.publish("chat.lobby", &format!("c{i}"), json!(i));
        assert_eq!(a.recv()["type"], "ack");
    }
    a.publish("chat.other", "c3", json!(3));
    let retry = limited(&a.recv(), "c3");
    // chat: 3 per 60 s, one token every 20 s.
    assert!((19_000..=20_000).contains(&retry), "{retry}");
    // Other rooms spend other kinds.
    a.publish("location.truck7", "l0", json!(0));
    assert_eq!(a.recv(), json!({"type":"ack","id":"l0"}));
    a.publish("news", "n0", json!(0));
    assert_eq!(a.recv(), json!({"type":"ack","id":"n0"}));
    a.join("chat.*", "j0");
    assert_eq!(a.recv(), json!({"type":"ack","id":"j0"}));
}

#[test]
fn sends_spend_their_own_kind_and_a_users_connections_share_it() {
    let node = node_with_table();
    let (mut phone, _) = node.connect("bea");
    let (mut laptop, _) = node.connect("bea");
    phone.send_direct("cid", "d0", json!(0));
    assert_eq!(phone.recv()["type"], "ack");
    laptop.send_direct("cid", "d1", json!(1));
    assert_eq!(laptop.recv()["type"], "ack");
    // direct: 2 per 60 s for the user, whichever connection sends.
    phone.send_direct("cid", "d2", json!(2));
    assert!(limited(&phone.recv(), "d2") > 0);
    laptop.send_direct("cid", "d3", json!(3));
    assert!(limited(&laptop.recv(), "d3") > 0);
    // Publishing is another kind: still allowed.
    phone.publish("chat.lobby", "c0", json!(0));
    assert_eq!(phone.recv(), json!({"type":"ack","id":"c0"}));
    // Another user has buckets of its own.
    let (mut other, _) = node.connect("dee");
    other.send_direct("cid", "o0", json!(0));
    assert_eq!(other.recv()["type"], "ack");
}

#[test]
fn a_bad_table_stops_the_start_up_with_exit_2() {
    let path = std::env::temp_dir().join(format!("shardcast-badrates-{}.toml", std::process::id()));
    std::fs::write(&path, "[rate-limits]\nsend = \"nope\"\n").unwrap();
    let out = node_command(&["--config", path.to_str().unwrap()])
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("unknown kind `nope`"), "{stderr}");
}
