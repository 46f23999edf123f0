//! Nodes following a real `shardcast-ctl` (`--control`): they join the ring
//! by heartbeat, route by the ring the control plane publishes, and keep
//! routing by the last one when it is gone.

mod common;

use std::time::{Duration, Instant};

use common::{
    cluster::free_port,
    control::{node_cmd, node_cmd_with, ring_of, start_ctl, upgrade_status, Backends},
    Node,
};
use shardcast::control::client::ControlClient;

#[test]
fn nodes_join_by_heartbeat_route_by_the_published_ring_and_keep_it_when_ctl_is_gone() {
    let mut ctl = start_ctl(&[]);
    let url = format!("http://{}", ctl.http);
    let backends = Backends::start();
    let ports = [free_port(), free_port()];
    let nodes: Vec<Node> = (0..2)
        .map(|i| Node::from_command(node_cmd(&backends, i, ports[i], &url)))
        .collect();

    // Both join; the ring the control plane publishes names both.
    let client = ControlClient::new(&url, Duration::from_secs(2)).unwrap();
    let ring = ring_of(&client, 2);
    let addr_of = |i: usize| format!("ws://127.0.0.1:{}/ws", ports[i]);
    assert!(ring
        .nodes()
        .iter()
        .any(|n| n.id == "n0" && n.addr == addr_of(0)));
    // A user of n1 at n0: once n0 routes by that ring, 307 to n1.
    let user = (0..)
        .map(|k| format!("user{k}"))
        .find(|u| ring.lookup(u).id == "n1")
        .unwrap();
    let t0 = Instant::now();
    while !upgrade_status(ports[0], &user).contains("307") {
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "n0 never followed the ring"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let (_, welcome) = nodes[1].connect(&user);
    assert_eq!(welcome["node"], "n1");

    // The control plane goes away: the nodes keep the ring they have.
    ctl.kill().expect("kill shardcast-ctl");
    std::thread::sleep(Duration::from_millis(500));
    assert!(upgrade_status(ports[0], &user).contains("307"));
    let (_, welcome) = nodes[1].connect(&user);
    assert_eq!(welcome["type"], "welcome");
}

#[test]
fn a_joining_node_takes_exactly_the_users_the_ring_gives_it() {
    let ctl = start_ctl(&[]);
    let url = format!("http://{}", ctl.http);
    let client = ControlClient::new(&url, Duration::from_secs(2)).unwrap();
    let backends = Backends::start();
    let ports = [free_port(), free_port()];
    let n0 = Node::from_command(node_cmd(&backends, 0, ports[0], &url));
    ring_of(&client, 1);
    // n0 routes by a ring of itself before anyone connects.
    std::thread::sleep(Duration::from_millis(300));
    let users: Vec<String> = (0..16).map(|k| format!("dev{k}")).collect();
    let mut clients: Vec<common::Client> = users.iter().map(|u| n0.connect(u).0).collect();

    let _n1 = Node::from_command(node_cmd(&backends, 1, ports[1], &url));
    let ring = ring_of(&client, 2);
    let n1_url = format!("ws://127.0.0.1:{}/ws", ports[1]);
    // Moves are spread over --rebalance-secs 1 (plus a tick or two).
    std::thread::sleep(Duration::from_millis(2500));
    let mut moved = Vec::new();
    let mut stayed = Vec::new();
    for (user, c) in users.iter().zip(clients.iter_mut()) {
        c.set_read_timeout(Duration::from_millis(100));
        let mut reconnect = None;
        while reconnect.is_none() {
            match c.try_recv() {
                Ok(Some(v)) if v["type"] == "reconnect" => reconnect = Some(v),
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
        match reconnect {
            Some(v) => {
                assert_eq!(v["wsUrl"], n1_url.as_str(), "{v}");
                assert!(v["resumeToken"].is_string());
                moved.push(user.clone());
            }
            None => stayed.push(user.clone()),
        }
    }
    let owned_by_n1: Vec<String> = users
        .iter()
        .filter(|u| ring.lookup(u).id == "n1")
        .cloned()
        .collect();
    assert!(!owned_by_n1.is_empty(), "the ring gave n1 none of 16 users");
    assert_eq!(
        moved, owned_by_n1,
        "moved exactly the users whose owner changed"
    );
    assert_eq!(stayed.len() + moved.len(), users.len());
    assert_eq!(n0.metric("rtc_socket_rebalanced_total"), moved.len() as f64);
}

#[test]
fn a_user_not_moved_yet_still_gets_messages_appended_for_its_new_owner() {
    let ctl = start_ctl(&[]);
    let url = format!("http://{}", ctl.http);
    let client = ControlClient::new(&url, Duration::from_secs(2)).unwrap();
    let backends = Backends::start();
    let ports = [free_port(), free_port()];
    // n0 moves its users only after a minute: they stay while the ring
    // already names n1 as their owner.
    let n0 = Node::from_command(node_cmd_with(&backends, 0, ports[0], &url, "60"));
    ring_of(&client, 1);
    std::thread::sleep(Duration::from_millis(300));
    // The ring the control plane will publish once n1 joins (placement
    // depends only on ids, weights and slots).
    use shardcast::ring::{Node as RingNode, Ring, RingConfig};
    let future = Ring::new(RingConfig {
        version: 1,
        slots: 4096,
        nodes: vec![RingNode::new("n0", 1.0), RingNode::new("n1", 1.0)],
    })
    .unwrap();
    let core = |u: &str| shardcast::node::shard_of(u, 2);
    let users: Vec<String> = (0..64).map(|k| format!("late{k}")).collect();
    let x = users.iter().find(|u| future.lookup(u).id == "n1").unwrap();
    let s = users
        .iter()
        .find(|u| future.lookup(u).id == "n0" && core(u) != core(x))
        .unwrap();
    // x connects while n0 owns everyone; then n1 joins.
    let (mut xc, _) = n0.connect(x);
    let _n1 = Node::from_command(node_cmd(&backends, 1, ports[1], &url));
    let ring = ring_of(&client, 2);
    assert_eq!(ring.lookup(x).id, "n1", "the local ring agrees with ctl's");
    let t0 = Instant::now();
    while !upgrade_status(ports[0], x).contains("307") {
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "n0 never followed the ring"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let (mut sc, _) = n0.connect(s);
    sc.send_direct(x, "m1", serde_json::json!(1));
    assert_eq!(sc.recv()["type"], "ack");
    let got = xc.recv();
    assert_eq!(
        (got["type"].as_str(), got["id"].as_str()),
        (Some("msg"), Some("m1")),
        "{got}"
    );
}
