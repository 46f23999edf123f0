//! The Redis store as a cluster store: a session resumes on another node, a
//! killed node loses nothing that was acked, and a dead Redis turns sends
//! into `unavailable` (never an `ack`) until it comes back. Real
//! `redis-server` processes and real nodes, over real sockets.

mod common;

use std::{
    collections::{HashMap, HashSet},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use common::{node_command, Client, Node, Store};
use serde_json::{json, Value};
use shardcast::harness::RedisProcess;

/// What one user saw before its node died.
#[derive(Default)]
struct Seen {
    /// Ids of its sends that were acked.
    acked: HashSet<String>,
    /// Ids of its sends, in order.
    sent: Vec<String>,
    /// Ids of the messages it received, in order (duplicates kept).
    received: Vec<String>,
    /// Its resume token (from `welcome`).
    token: String,
}

/// Sends to `to` and reads what comes back, one message per 5 ms read
/// window, until the node dies (the connection breaks) or `limit` messages
/// were sent.
fn chat_until_the_node_dies(
    mut c: Client,
    me: usize,
    to: &str,
    token: String,
    limit: usize,
) -> Seen {
    let mut seen = Seen {
        token,
        ..Seen::default()
    };
    c.set_read_timeout(Duration::from_millis(5));
    for k in 0.. {
        if k < limit {
            let id = format!("u{me}-{k}");
            if c.try_send_direct(to, &id, json!(k)).is_err() {
                break;
            }
            seen.sent.push(id);
        }
        match c.try_recv() {
            Ok(Some(v)) => {
                let id = v["id"].as_str().unwrap().to_owned();
                match v["type"].as_str() {
                    Some("ack") => {
                        seen.acked.insert(id);
                    }
                    Some("msg") => seen.received.push(id),
                    _ => panic!("unexpected {v}"),
                }
            }
            Ok(None) => {}
            Err(_) => break,
        }
    }
    seen
}

/// Reads every message replayed to `c` until 500 ms pass without one.
fn drain_messages(c: &mut Client, into: &mut Vec<String>) {
    c.set_read_timeout(Duration::from_millis(500));
    while let Ok(Some(v)) = c.try_recv() {
        assert_eq!(v["type"], "msg", "{v}");
        into.push(v["id"].as_str().unwrap().to_owned());
    }
}

/// The per-flow sequence of a message id `u{sender}-{k}`.
fn seq(id: &str) -> usize {
    id.rsplit('-').next().unwrap().parse().unwrap()
}

#[test]
fn sigkill_of_a_node_loses_nothing_acked_and_users_resume_on_another_node() {
    let store = Store::redis();
    let mut a = store.node(&["--node-id", "node-a"]);
    let b = store.node(&["--node-id", "node-b"]);
    const PAIRS: usize = 6;
    let users: Vec<String> = (0..2 * PAIRS).map(|i| format!("user{i}")).collect();
    let clients: Vec<(Client, String)> = users
        .iter()
        .map(|u| {
            let (c, welcome) = a.connect(u);
            (c, welcome["resumeToken"].as_str().unwrap().to_owned())
        })
        .collect();
    // Users 2p and 2p+1 chat; A is killed mid-stream.
    let seen: Vec<Seen> = std::thread::scope(|s| {
        let handles: Vec<_> = clients
            .into_iter()
            .enumerate()
            .map(|(i, (c, token))| {
                let to = users[i ^ 1].clone();
                s.spawn(move || chat_until_the_node_dies(c, i, &to, token, 400))
            })
            .collect();
        std::thread::sleep(Duration::from_millis(600));
        a.process.kill().unwrap();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut seen = seen;
    // Everyone resumes on B with the token it had.
    for (i, u) in users.iter().enumerate() {
        let mut c = b
            .connect_query(&format!("userId={u}&resume={}", seen[i].token))
            .unwrap();
        let welcome = c.recv();
        assert_eq!(
            (welcome["type"].as_str(), welcome["node"].as_str()),
            (Some("welcome"), Some("node-b"))
        );
        let mut replayed = Vec::new();
        drain_messages(&mut c, &mut replayed);
        seen[i].received.extend(replayed);
    }
    let (mut acked, mut unacked) = (0, 0);
    for (i, s) in seen.iter().enumerate() {
        let sender = &seen[i ^ 1];
        // Dedup by id, keeping first arrivals in order.
        let mut once = HashSet::new();
        let firsts: Vec<&String> = s.received.iter().filter(|id| once.insert(*id)).collect();
        let got: HashSet<&String> = firsts.iter().copied().collect();
        for id in &sender.acked {
            assert!(got.contains(id), "user{i} lost acked message {id}");
        }
        let seqs: Vec<usize> = firsts.iter().map(|id| seq(id)).collect();
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "user{i}: out of order {seqs:?}"
        );
        acked += sender.acked.len();
        unacked += sender.sent.len() - sender.acked.len();
    }
    println!("acked before the kill: {acked}, sent but not acked: {unacked}");
    assert!(acked > 100, "the chat ran before the kill ({acked} acked)");
}

#[test]
fn a_restarted_node_resumes_its_users_from_redis_with_nothing_lost() {
    let store = Store::redis();
    let mut a = store.node(&[]);
    let (mut alice, _) = a.connect("alice");
    let (mut bob, welcome) = a.connect("bob");
    let token = welcome["resumeToken"].as_str().unwrap().to_owned();
    for i in 1..=3 {
        alice.send_direct("bob", &format!("m{i}"), json!(i));
        assert_eq!(alice.recv()["type"], "ack");
        assert_eq!(bob.recv()["offset"], i);
    }
    drop(bob);
    // Offline now: buffered in Redis.
    for i in 4..=5 {
        alice.send_direct("bob", &format!("m{i}"), json!(i));
        assert_eq!(alice.recv()["type"], "ack");
    }
    drop(alice);
    assert!(a.terminate(Duration::from_secs(10)).success());
    let a = store.node(&[]);
    let mut bob = a
        .connect_query(&format!("userId=bob&resume={token}"))
        .unwrap();
    assert_eq!(bob.recv()["offset"], 0);
    let ids: Vec<Value> = (0..5).map(|_| bob.recv()["id"].clone()).collect();
    assert_eq!(ids, ["m1", "m2", "m3", "m4", "m5"].map(|s| json!(s)));
    // And a plain reconnect starts after what was delivered: the next
    // message gets the next offset of the same sequence.
    let (mut carol, _) = a.connect("carol");
    carol.send_direct("bob", "m6", json!(6));
    assert_eq!(carol.recv()["type"], "ack");
    assert_eq!(bob.recv()["offset"], 6);
}

#[test]
fn redis_down_at_start_up_refuses_to_start_with_exit_2() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = node_command(&["--redis", &format!("redis://127.0.0.1:{port}/0")])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("redis") && stderr.contains("not reachable"),
        "{stderr}"
    );
}

#[test]
fn redis_wait_secs_lets_the_node_wait_for_redis_to_come_up() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let late = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(700));
        RedisProcess::start_on(port).unwrap()
    });
    let t0 = Instant::now();
    let mut command: Command = node_command(&["--redis-wait-secs", "20"]);
    command.args(["--redis", &format!("redis://127.0.0.1:{port}/0")]);
    let node = Node::from_command(command);
    assert!(t0.elapsed() >= Duration::from_millis(600), "it waited");
    let _redis = late.join().unwrap();
    let (mut a, _) = node.connect("a");
    let (mut b, _) = node.connect("b");
    a.send_direct("b", "m1", json!(1));
    assert_eq!(a.recv()["type"], "ack");
    assert_eq!(b.recv()["id"], "m1");
}

/// Waits until `/health` says `status` (at most 10 s).
fn wait_for_health(node: &Node, status: &str) {
    let t0 = Instant::now();
    loop {
        let (_, body) = node.http_get("/health");
        if body.contains(&format!("\"status\":\"{status}\"")) {
            return;
        }
        assert!(t0.elapsed() < Duration::from_secs(10), "health: {body}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn redis_killed_while_serving_gives_unavailable_and_recovers_when_it_returns() {
    let mut store = Store::redis();
    let node = store.node(&[
        "--redis-breaker-open-ms",
        "300",
        "--redis-timeout-ms",
        "500",
    ]);
    let (mut alice, _) = node.connect("alice");
    let (mut bob, _) = node.connect("bob");
    alice.join("news", "j");
    assert_eq!(alice.recv()["type"], "ack");
    bob.send_direct("alice", "before", json!(0));
    assert_eq!(bob.recv()["type"], "ack");
    assert_eq!(alice.recv()["id"], "before");

    let port = store.redis_process().port;
    store.redis_process().kill();
    // Every send while Redis is down is refused, never acked.
    let mut refused = HashMap::new();
    for i in 0..20 {
        let id = format!("down{i}");
        bob.send_direct("alice", &id, json!(i));
        let reply = bob.recv();
        assert_eq!(reply["type"], "error", "{reply}");
        assert_eq!(reply["id"].as_str(), Some(id.as_str()));
        *refused
            .entry(reply["code"].as_str().unwrap().to_owned())
            .or_insert(0) += 1;
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        refused.keys().collect::<Vec<_>>(),
        ["unavailable"],
        "{refused:?}"
    );
    wait_for_health(&node, "degraded");
    // Connections stay up, and what needs no store still works: rooms.
    bob.publish("news", "p1", json!("still here"));
    assert_eq!(bob.recv(), json!({"type":"ack","id":"p1"}));
    assert_eq!(alice.recv()["id"], "p1");
    // New sessions are refused while the store is down.
    match node.connect_query("userId=carol") {
        Err(tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status(), 503);
            assert!(resp.headers().contains_key("retry-after"));
        }
        other => panic!("carol got in: {:?}", other.map(|_| ())),
    }
    assert!(node.metric("rtc_store_errors_total{kind=\"unreachable\"}") > 0.0);
    // After --redis-breaker-failures failed reconnects the breaker opens:
    // sends are refused at once, without a connect attempt each.
    let t0 = Instant::now();
    let mut i = 0;
    while node.metric("rtc_store_errors_total{kind=\"circuit_open\"}") == 0.0 {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "the breaker never opened"
        );
        bob.send_direct("alice", &format!("open{i}"), json!(i));
        let reply = bob.recv();
        assert_eq!(
            (reply["type"].as_str(), reply["code"].as_str()),
            (Some("error"), Some("unavailable"))
        );
        i += 1;
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(node.metric("rtc_store_up{core=\"0\"}") == 0.0);

    // Redis comes back (empty: no persistence); the node recovers alone.
    *store.redis_process() = RedisProcess::start_on(port).unwrap();
    wait_for_health(&node, "ok");
    bob.send_direct("alice", "after", json!(1));
    assert_eq!(bob.recv(), json!({"type":"ack","id":"after"}));
    assert_eq!(alice.recv()["id"], "after");
    let (mut carol, _) = node.connect("carol");
    carol.send_direct("alice", "carol", json!(2));
    assert_eq!(carol.recv()["type"], "ack");
    assert_eq!(alice.recv()["id"], "carol");
    assert!(node.metric("rtc_store_up{core=\"0\"}") == 1.0);
}

#[test]
fn a_frozen_redis_times_out_into_unavailable_without_acks() {
    let store = Store::redis();
    let node = store.node(&[
        "--redis-timeout-ms",
        "300",
        "--redis-breaker-open-ms",
        "200",
    ]);
    let (mut alice, _) = node.connect("alice");
    let (mut bob, _) = node.connect("bob");
    let redis = match &store {
        Store::Redis(r) => r,
        Store::Memory => unreachable!(),
    };
    redis.signal(libc::SIGSTOP);
    bob.send_direct("alice", "frozen", json!(1));
    let reply = bob.recv();
    assert_eq!(
        (reply["type"].as_str(), reply["code"].as_str()),
        (Some("error"), Some("unavailable")),
        "{reply}"
    );
    assert!(node.metric("rtc_store_errors_total{kind=\"timeout\"}") >= 1.0);
    redis.signal(libc::SIGCONT);
    wait_for_health(&node, "ok");
    bob.send_direct("alice", "thawed", json!(2));
    assert_eq!(bob.recv()["type"], "ack");
    // The timed-out append sat in Redis's socket buffer and ran after the
    // thaw: at-least-once, it may arrive (before "thawed", in offset order)
    // even though its sender was told `unavailable` and would retry it.
    let first = alice.recv();
    if first["id"] == "frozen" {
        assert_eq!(alice.recv()["id"], "thawed");
    } else {
        assert_eq!(first["id"], "thawed", "{first}");
    }
}

#[test]
fn a_full_pipeline_pushes_back_with_unavailable() {
    let store = Store::redis();
    // One request waiting per core at most, and a long flush so that the
    // requests of a burst pile up: beyond the first, sends to alice (one
    // core: hers) are refused with `unavailable`, not queued.
    let node = store.node(&["--redis-max-pending", "1", "--redis-flush-us", "50000"]);
    let (mut alice, _) = node.connect("alice");
    let mut senders: Vec<Client> = (0..6).map(|i| node.connect(&format!("s{i}")).0).collect();
    for (i, s) in senders.iter_mut().enumerate() {
        s.send_direct("alice", &format!("b{i}"), json!(i));
    }
    let replies: Vec<Value> = senders.iter_mut().map(|s| s.recv()).collect();
    let acks = replies.iter().filter(|r| r["type"] == "ack").count();
    let refused: Vec<&Value> = replies.iter().filter(|r| r["type"] == "error").collect();
    assert!(acks >= 1 && !refused.is_empty(), "{replies:?}");
    assert!(refused.iter().all(|r| r["code"] == "unavailable"));
    assert!(node.metric("rtc_store_errors_total{kind=\"overloaded\"}") >= 1.0);
    for _ in 0..acks {
        assert_eq!(alice.recv()["type"], "msg");
    }
}
