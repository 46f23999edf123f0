//! A cluster under `shardcast-ctl` losing a node: drained by SIGTERM
//! (through the control plane, users sent to their new owners) or
//! SIGKILLed (evicted as soon as a client reports it unreachable, long
//! before the heartbeat grace), and new rings reaching the nodes through
//! the Kafka control topic without waiting for a heartbeat.

mod common;

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use common::{
    cluster::free_port,
    connect_to,
    control::{node_cmd, node_cmd_full, ring_of, start_ctl, upgrade_status, Backends},
    Ended, Node,
};
use serde_json::Value;
use shardcast::{control::client::ControlClient, harness::CtlProcess, ring::Ring};

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn ws_url(port: u16) -> String {
    format!("ws://127.0.0.1:{port}/ws")
}

/// Redis, tansu and `shardcast-ctl --kafka` (grace 30 s), and two free
/// ports for nodes n0 and n1; everything is killed when dropped.
struct Setup {
    backends: Backends,
    _ctl: CtlProcess,
    url: String,
    client: ControlClient,
    ports: [u16; 2],
}

impl Setup {
    fn start() -> Setup {
        let backends = Backends::start();
        let ctl = start_ctl(&["--kafka", &backends.tansu.brokers()]);
        let url = format!("http://{}", ctl.http);
        let client = ControlClient::new(&url, Duration::from_secs(2)).unwrap();
        Setup {
            backends,
            _ctl: ctl,
            url,
            client,
            ports: [free_port(), free_port()],
        }
    }
}

/// Waits (at most `secs`) until the node at `port` redirects `user`: it
/// routes by a ring that gives `user` to another node.
fn until_redirected(port: u16, user: &str, secs: u64, why: &str) {
    let t0 = Instant::now();
    while !upgrade_status(port, user).contains("307") {
        assert!(t0.elapsed() < Duration::from_secs(secs), "{why}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The first `n` of the users fo0, fo1, … that the ring gives to `node`.
fn users_of(ring: &Ring, node: &str, n: usize) -> Vec<String> {
    (0..)
        .map(|k| format!("fo{k}"))
        .filter(|u| ring.lookup(u).id == node)
        .take(n)
        .collect()
}

/// Until a connect to `port` is refused (at most 5 s). A SIGKILLed node's
/// listening socket can outlive the process for a moment: io_uring tears
/// its ring down asynchronously, and a pending accept holds the socket.
fn wait_until_refused(port: u16) {
    let t0 = Instant::now();
    while std::net::TcpStream::connect(loopback(port)).is_ok() {
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "port {port} still open"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn get_json(ctl: &ControlClient, path: &str) -> Value {
    let (status, body) = ctl.get(path).unwrap();
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

#[test]
fn a_drained_node_leaves_the_ring_first_and_sends_each_user_to_its_new_owner() {
    let Setup {
        backends,
        _ctl,
        url,
        client,
        ports,
    } = Setup::start();
    let n0 = Node::from_command(node_cmd(&backends, 0, ports[0], &url));
    let mut n1 = Node::from_command(node_cmd(&backends, 1, ports[1], &url));
    let ring = ring_of(&client, 2);
    let on_n1 = users_of(&ring, "n1", 4);
    let on_n0 = users_of(&ring, "n0", 2);
    // Each node routes by the two-node ring before anyone connects.
    for (port, user) in [(ports[0], &on_n1[0]), (ports[1], &on_n0[0])] {
        until_redirected(port, user, 5, "a node never followed the ring");
    }
    let mut leaving: Vec<_> = on_n1.iter().map(|u| n1.connect(u).0).collect();
    let mut staying: Vec<_> = on_n0.iter().map(|u| n0.connect(u).0).collect();

    n1.process.signal(libc::SIGTERM);
    for (user, c) in on_n1.iter().zip(leaving.iter_mut()) {
        let (ended, seen) = c.recv_until_closed();
        let reconnect = seen
            .iter()
            .find(|v| v["type"] == "reconnect")
            .unwrap_or_else(|| panic!("{user} got no reconnect: {seen:?}"));
        assert_eq!(reconnect["wsUrl"], ws_url(ports[0]), "{reconnect}");
        assert_eq!(common::close_code(&ended), Some(1012), "{ended:?}");
        // By then the control plane already answers with n0 …
        assert_eq!(client.ring().unwrap().unwrap().nodes().len(), 1);
        // … and n0 takes the user with the token it was given.
        let token = reconnect["resumeToken"].as_str().unwrap();
        let mut back = n0
            .connect_query(&format!("userId={user}&resume={token}"))
            .expect("n0 takes a user of the drained node");
        assert_eq!(back.recv()["type"], "welcome");
    }
    assert!(n1.process.wait_for_exit(Duration::from_secs(15)).is_ok());
    // The users of n0 were never touched.
    for c in &mut staying {
        c.set_read_timeout(Duration::from_millis(200));
        assert!(
            matches!(c.try_recv(), Ok(None)),
            "a user of n0 was disturbed"
        );
    }
    assert_eq!(n0.metric("rtc_socket_rebalanced_total"), 0.0);
}

#[test]
fn a_killed_node_is_evicted_when_a_client_reports_it_and_its_users_resume_elsewhere() {
    // A grace of 30 s: only the client's report can take n1 out in time.
    let Setup {
        backends,
        _ctl,
        url,
        client,
        ports,
    } = Setup::start();
    let n0 = Node::from_command(node_cmd(&backends, 0, ports[0], &url));
    let mut n1 = Node::from_command(node_cmd(&backends, 1, ports[1], &url));
    let ring = ring_of(&client, 2);
    let victim = users_of(&ring, "n1", 1).remove(0);
    let sender = users_of(&ring, "n0", 1).remove(0);
    until_redirected(ports[1], &sender, 5, "n1 never followed the ring");
    let (mut v, welcome) = n1.connect(&victim);
    let token = welcome["resumeToken"].as_str().unwrap().to_owned();
    let (mut s, _) = n0.connect(&sender);

    n1.process.kill().unwrap();
    wait_until_refused(ports[1]);
    assert!(matches!(
        v.recv_until_closed().0,
        Ended::Reset | Ended::Close(_)
    ));
    // Sent while the victim has no node: acked once durable in Redis.
    s.send_direct(&victim, "while-dead", serde_json::json!(1));
    let ack = s.recv();
    assert_eq!(ack["type"], "ack", "{ack}");

    let answer = get_json(
        &client,
        &format!("/api/v1/connect?userId={victim}&resume={token}&unreachable=n1"),
    );
    assert_eq!(answer["nodeId"], "n0", "{answer}");
    assert_eq!(answer["wsUrl"], ws_url(ports[0]));
    assert_eq!(client.ring().unwrap().unwrap().nodes().len(), 1);
    // n0 has the new ring (Kafka, or its next heartbeat) within moments.
    let started = Instant::now();
    let mut resumed = loop {
        match connect_to(
            loopback(ports[0]),
            &format!("/ws?userId={victim}&resume={token}"),
        ) {
            Ok(c) => break c,
            Err(e) => {
                assert!(
                    started.elapsed() < Duration::from_secs(3),
                    "n0 still refuses: {e}"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    };
    assert_eq!(resumed.recv()["type"], "welcome");
    let got = resumed.recv();
    assert_eq!(
        (got["type"].as_str(), got["id"].as_str()),
        (Some("msg"), Some("while-dead")),
        "{got}"
    );
    let (_, metrics) = client.get("/metrics").unwrap();
    assert!(
        metrics.contains("rtc_lb_unreachable_reports_total{outcome=\"dead\"} 1"),
        "{metrics}"
    );
}

#[test]
fn a_new_ring_reaches_a_node_through_the_control_topic_between_heartbeats() {
    let Setup {
        backends,
        _ctl,
        url,
        client,
        ports,
    } = Setup::start();
    // n0 heartbeats once a minute: after its first beat, only Kafka can
    // tell it about n1.
    let _n0 = Node::from_command(node_cmd_full(&backends, 0, ports[0], &url, "60000", "1"));
    ring_of(&client, 1);
    let _n1 = Node::from_command(node_cmd(&backends, 1, ports[1], &url));
    let ring = ring_of(&client, 2);
    let user = users_of(&ring, "n1", 1).remove(0);
    until_redirected(
        ports[0],
        &user,
        10,
        "n0 never got the two-node ring from the control topic",
    );
}

#[test]
fn a_client_sent_by_a_newer_ring_is_not_sent_back_by_an_older_one() {
    let Setup {
        backends,
        _ctl,
        url,
        client,
        ports,
    } = Setup::start();
    let mut n1 = Node::from_command(node_cmd(&backends, 1, ports[1], &url));
    ring_of(&client, 1);
    // n0 learns rings only from its heartbeats, once a minute (no control
    // topic): after its first beat it holds the two-node ring.
    let mut slow = node_cmd_full(&backends, 0, ports[0], &url, "60000", "1");
    slow.env("SHARDCAST_CONTROL_TOPIC", "no.such.topic");
    let n0 = Node::from_command(slow);
    let ring = ring_of(&client, 2);
    let users = users_of(&ring, "n1", 2);
    until_redirected(ports[0], &users[0], 5, "n0 never had the two-node ring");
    n1.process.kill().unwrap();
    wait_until_refused(ports[1]);
    let answer = get_json(
        &client,
        &format!("/api/v1/connect?userId={}&unreachable=n1", users[0]),
    );
    assert_eq!(answer["nodeId"], "n0", "{answer}");
    let version = answer["ringVersion"].as_u64().unwrap();
    // Without the hint n0 still routes by its old ring …
    assert!(upgrade_status(ports[0], &users[1]).contains("307"));
    // … with it, n0 fetches the newer ring before it answers.
    let mut c = n0
        .connect_query(&format!("userId={}&ring={version}", users[0]))
        .expect("n0 waits for the ring the client names");
    assert_eq!(c.recv()["type"], "welcome");
    let (_, welcome) = n0.connect(&users[1]);
    assert_eq!(welcome["node"], "n0");
}
