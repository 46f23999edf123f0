//! The Kafka relay across a static three-node cluster: real nodes, a real
//! Redis, a real Kafka-protocol broker (tansu), real WebSocket clients.

mod common;

use std::{
    collections::{BTreeMap, HashSet},
    io::{Read, Write},
    time::{Duration, Instant},
};

use common::{cluster::Cluster, Client};
use serde_json::{json, Value};

/// Reads `client` until it has an ack or error for `replies` ids and
/// `directs` direct messages (deduplicated by id, as clients do), failing
/// after `within`. Direct messages come back in arrival order.
fn recv_both(
    client: &mut Client,
    replies: usize,
    directs: usize,
    within: Duration,
) -> (BTreeMap<String, Value>, Vec<Value>) {
    client.set_read_timeout(Duration::from_millis(200));
    let (mut answers, mut seen, mut ids) = (BTreeMap::new(), Vec::new(), HashSet::new());
    let t0 = Instant::now();
    while answers.len() < replies || seen.len() < directs {
        assert!(
            t0.elapsed() < within,
            "{} of {replies} replies, {} of {directs} messages after {within:?}: {:?}",
            answers.len(),
            seen.len(),
            seen.iter()
                .map(|m: &Value| (m["id"].to_string(), m["offset"].as_u64()))
                .collect::<Vec<_>>()
        );
        let Some(v) = client.try_recv().expect("connection up") else {
            continue;
        };
        match v["type"].as_str() {
            Some("msg") if ids.insert(v["id"].as_str().unwrap().to_owned()) => seen.push(v),
            Some("ack" | "error") => {
                answers.insert(v["id"].as_str().unwrap().to_owned(), v);
            }
            _ => {}
        }
    }
    (answers, seen)
}

/// Reads `client` until `want` direct messages arrived.
fn recv_directs(client: &mut Client, want: usize, within: Duration) -> Vec<Value> {
    recv_both(client, 0, want, within).1
}

/// Reads `client` until it has an ack or error for each of `ids`.
fn recv_replies(client: &mut Client, ids: usize) -> BTreeMap<String, Value> {
    recv_both(client, ids, 0, Duration::from_secs(30)).0
}

#[test]
fn users_on_three_nodes_exchange_direct_messages_in_order_with_every_send_acked() {
    let cluster = Cluster::start(3, &[]);
    let users: Vec<String> = cluster.users_per_node(3).concat();
    let mut clients: Vec<Client> = users.iter().map(|u| cluster.connect(u).0).collect();
    const EACH: usize = 5;
    for (i, client) in clients.iter_mut().enumerate() {
        for (j, to) in users.iter().enumerate().filter(|&(j, _)| j != i) {
            for k in 0..EACH {
                client.send_direct(to, &format!("{i}-{j}-{k}"), json!({"k": k}));
            }
        }
    }
    let sent = (users.len() - 1) * EACH;
    for (j, client) in clients.iter_mut().enumerate() {
        let (replies, got) = recv_both(client, sent, sent, Duration::from_secs(20));
        assert!(
            replies.values().all(|v| v["type"] == "ack"),
            "every send acked: {:?}",
            replies.values().find(|v| v["type"] != "ack")
        );
        let offsets: Vec<u64> = got.iter().map(|m| m["offset"].as_u64().unwrap()).collect();
        assert_eq!(
            offsets,
            (1..=sent as u64).collect::<Vec<_>>(),
            "{}: consecutive offsets in order",
            users[j]
        );
        for i in (0..users.len()).filter(|&i| i != j) {
            let ks: Vec<u64> = got
                .iter()
                .filter(|m| m["from"] == users[i].as_str())
                .map(|m| m["data"]["k"].as_u64().unwrap())
                .collect();
            assert_eq!(
                ks,
                (0..EACH as u64).collect::<Vec<_>>(),
                "{} → {}",
                users[i],
                users[j]
            );
        }
    }
    let sum = |series: &str| -> f64 { (0..3).map(|i| cluster.node(i).metric(series)).sum() };
    assert!(sum("rtc_socket_messages_total{path=\"relay\"}") > 0.0);
    assert!(sum("rtc_socket_messages_total{path=\"local\"}") > 0.0);
    assert!(sum("rtc_relay_received_total") > 0.0);
    assert!(sum("rtc_relay_batch_size_count") > 0.0);
}

#[test]
fn a_user_connecting_to_the_wrong_node_is_sent_to_its_owner() {
    let cluster = Cluster::start(2, &[]);
    let users = cluster.users_per_node(1);
    let user = &users[1][0];
    // Upgrade at node 0 for a user of node 1: 307 to node 1, query kept.
    let mut s = cluster.node(0).raw();
    write!(
        s,
        "GET /ws?userId={user}&resume=x HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 307"), "{response}");
    let location = format!("ws://{}/ws?userId={user}&resume=x", cluster.node(1).ws);
    assert!(
        response.contains(&format!("Location: {location}\r\n")),
        "{response}"
    );
    assert!(response.contains("\"wrong_node\""), "{response}");
    // The owner serves it.
    let (_, welcome) = cluster.node(1).connect(user);
    assert_eq!(welcome["node"], "n1");
}

#[test]
fn room_publishes_reach_matching_subscribers_on_every_node_once() {
    let cluster = Cluster::start(3, &[]);
    let users = cluster.users_per_node(1);
    let mut subs: Vec<Client> = users
        .iter()
        .map(|u| {
            let (mut c, _) = cluster.connect(&u[0]);
            c.join("chat.*", "j");
            assert_eq!(c.recv()["type"], "ack");
            c
        })
        .collect();
    let (mut publisher, _) = cluster.connect(&cluster.users_per_node(2)[0][1]);
    for k in 0..3 {
        publisher.publish("chat.lobby", &format!("p{k}"), json!(k));
    }
    let replies = recv_replies(&mut publisher, 3);
    assert!(replies.values().all(|v| v["type"] == "ack"), "{replies:?}");
    for sub in &mut subs {
        sub.set_read_timeout(Duration::from_millis(200));
        let mut got = Vec::new();
        let t0 = Instant::now();
        while got.len() < 3 && t0.elapsed() < Duration::from_secs(10) {
            if let Some(v) = sub.try_recv().unwrap() {
                assert_eq!(v["room"], "chat.lobby");
                got.push(v["id"].as_str().unwrap().to_owned());
            }
        }
        assert_eq!(got, ["p0", "p1", "p2"]);
        // Once each: nothing more comes.
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(sub.try_recv().unwrap(), None);
    }
}

/// The ids acked in `replies`.
fn acked(replies: &BTreeMap<String, Value>) -> Vec<String> {
    replies
        .iter()
        .filter(|(_, v)| v["type"] == "ack")
        .map(|(id, _)| id.clone())
        .collect()
}

/// Reads `client` until as many messages as `acked` arrived, and checks
/// that every acked id is among them.
fn assert_all_arrive(client: &mut Client, acked: &[String]) {
    let got: HashSet<String> = recv_directs(client, acked.len(), Duration::from_secs(20))
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect();
    for id in acked {
        assert!(got.contains(id), "acked {id} lost");
    }
}

#[test]
fn a_recipient_node_killed_mid_stream_and_restarted_loses_nothing_acked() {
    let mut cluster = Cluster::start(3, &[]);
    let users = cluster.users_per_node(1);
    let (alice, bob) = (&users[0][0], &users[1][0]);
    let (mut a, _) = cluster.connect(alice);
    let (_b, welcome) = cluster.connect(bob);
    let token = welcome["resumeToken"].as_str().unwrap().to_owned();
    for k in 0..200 {
        a.send_direct(bob, &format!("m{k}"), json!(k));
        if k == 100 {
            cluster.kill(1);
        }
    }
    let acked = acked(&recv_replies(&mut a, 200));
    assert!(acked.len() >= 100, "acked {} of 200", acked.len());
    cluster.start_node(1);
    let mut b = cluster
        .node(1)
        .connect_query(&format!("userId={bob}&resume={token}"))
        .expect("bob resumes on the new process");
    assert_all_arrive(&mut b, &acked);
}

#[test]
fn a_sender_node_killed_mid_stream_loses_nothing_it_acked() {
    let mut cluster = Cluster::start(3, &[]);
    let users = cluster.users_per_node(1);
    let (alice, bob) = (&users[0][0], &users[1][0]);
    let (mut a, _) = cluster.connect(alice);
    let (mut b, _) = cluster.connect(bob);
    a.set_read_timeout(Duration::from_millis(100));
    let mut acked = Vec::new();
    for k in 0..300 {
        if a.try_send_direct(bob, &format!("m{k}"), json!(k)).is_err() {
            break;
        }
        if k == 150 {
            cluster.kill(0);
        }
        while let Ok(Some(v)) = a.try_recv() {
            if v["type"] == "ack" {
                acked.push(v["id"].as_str().unwrap().to_owned());
            }
        }
    }
    assert!(!acked.is_empty());
    assert_all_arrive(&mut b, &acked);
}

#[test]
fn a_broker_that_stops_answering_fails_cross_node_sends_keeps_local_ones_and_recovers() {
    let mut cluster = Cluster::start(2, &["--kafka-timeout-ms", "1500"]);
    let users = cluster.users_per_node(2);
    let (alice, carol, bob) = (&users[0][0], &users[0][1], &users[1][0]);
    let (mut a, _) = cluster.connect(alice);
    let (mut c, _) = cluster.connect(carol);
    let (mut b, _) = cluster.connect(bob);
    a.send_direct(bob, "before", json!(0));
    assert_eq!(recv_replies(&mut a, 1)["before"]["type"], "ack");
    assert_eq!(
        recv_directs(&mut b, 1, Duration::from_secs(10))[0]["id"],
        "before"
    );

    // Frozen: connections stay open, nothing is answered.
    cluster.tansu_signal(libc::SIGSTOP);
    let t0 = Instant::now();
    a.send_direct(bob, "down", json!(1));
    let reply = &recv_replies(&mut a, 1)["down"];
    assert_eq!(
        (reply["type"].as_str(), reply["code"].as_str()),
        (Some("error"), Some("unavailable")),
        "never a false ack: {reply}"
    );
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    a.send_direct(carol, "local", json!(2));
    assert_eq!(recv_replies(&mut a, 1)["local"]["type"], "ack");
    assert_eq!(
        recv_directs(&mut c, 1, Duration::from_secs(5))[0]["id"],
        "local"
    );
    assert!(cluster.node(0).metric("rtc_relay_errors_total") >= 1.0);
    assert_eq!(
        cluster.node(0).metric("rtc_relay_up{core=\"0\"}")
            + cluster.node(0).metric("rtc_relay_up{core=\"1\"}"),
        1.0
    );

    // It answers again: the same nodes recover without a restart.
    cluster.tansu_signal(libc::SIGCONT);
    let t0 = Instant::now();
    let mut k = 0;
    let last = loop {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "the relay never recovered"
        );
        let id = format!("after{k}");
        a.send_direct(bob, &id, json!(k));
        if recv_replies(&mut a, 1)[&id]["type"] == "ack" {
            break id;
        }
        k += 1;
        std::thread::sleep(Duration::from_millis(200));
    };
    // Everything made durable reaches bob, in offset order: "down" too (it
    // was appended before the relay failed; its sender would retry it by id).
    let mut ids = Vec::new();
    while !ids.contains(&last) {
        let got = recv_directs(&mut b, 1, Duration::from_secs(10));
        ids.push(got[0]["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(ids[0], "down", "{ids:?}");

    // Dead (connections refused): unavailable as well, still no false ack.
    cluster.tansu.kill();
    a.send_direct(bob, "dead", json!(3));
    let reply = &recv_replies(&mut a, 1)["dead"];
    assert_eq!(reply["code"], "unavailable", "{reply}");
    a.send_direct(carol, "local2", json!(4));
    assert_eq!(recv_replies(&mut a, 1)["local2"]["type"], "ack");
}

#[test]
fn a_slow_broker_pushes_back_through_the_bounded_queue() {
    let cluster = Cluster::start(
        2,
        &["--relay-max-pending", "2", "--kafka-timeout-ms", "2000"],
    );
    let users = cluster.users_per_node(1);
    let (alice, bob) = (&users[0][0], &users[1][0]);
    let (mut a, _) = cluster.connect(alice);
    let (_b, _) = cluster.connect(bob);
    cluster.tansu_signal(libc::SIGSTOP);
    for k in 0..4 {
        a.send_direct(bob, &format!("m{k}"), json!(k));
    }
    let replies = recv_replies(&mut a, 4);
    cluster.tansu_signal(libc::SIGCONT);
    let overloaded = replies
        .values()
        .filter(|v| {
            v["code"] == "unavailable" && v["message"].as_str().unwrap().contains("overloaded")
        })
        .count();
    assert_eq!(overloaded, 2, "{replies:?}");
    assert!(replies
        .values()
        .all(|v| v["type"] != "ack" || v["id"] == "m0" || v["id"] == "m1"));
}

#[test]
fn an_unreachable_broker_at_start_up_is_a_clear_error_or_a_wait() {
    let redis = shardcast::harness::RedisProcess::start().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let brokers = format!("127.0.0.1:{port}");
    let mut command = common::node_command(&["--redis", &redis.url(), "--kafka", &brokers]);
    let out = command
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("kafka") && stderr.contains("not reachable"),
        "{stderr}"
    );

    // With --kafka-wait-secs the node waits for a broker that comes later.
    let command = common::node_command(&[
        "--redis",
        &redis.url(),
        "--kafka",
        &brokers,
        "--kafka-wait-secs",
        "30",
    ]);
    let starter = std::thread::spawn(move || common::Node::from_command(command));
    std::thread::sleep(Duration::from_secs(1));
    let _tansu = shardcast::harness::TansuProcess::start_on(port).unwrap();
    let node = starter.join().unwrap();
    let (_, welcome) = node.connect("alice");
    assert_eq!(welcome["type"], "welcome");
}
