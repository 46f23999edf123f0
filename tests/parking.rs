//! Parked connections (`--park-after-secs`, `node::park`): a silent
//! connection leaves its glommio stream for the core's epoll set and comes
//! back on the first byte, message, ping or close, with nothing lost.

mod common;

use std::{
    io::Read,
    time::{Duration, Instant},
};

use common::Node;
use serde_json::json;

const PARKED: &str = "rtc_socket_parked_connections";

/// Polls the parked gauge until it reads `n` (at most `within`).
fn wait_parked(node: &Node, n: f64, within: Duration) {
    let t0 = Instant::now();
    loop {
        let now = node.metric(PARKED);
        if now == n {
            return;
        }
        assert!(
            t0.elapsed() < within,
            "{PARKED} stayed at {now}, expected {n}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn parked_connections_wake_for_bytes_messages_and_hang_ups() {
    let node = Node::start(&["--park-after-secs", "1"]);
    let (mut alice, _) = node.connect("alice");
    let (mut bob, _) = node.connect("bob");
    // Raw clients that read their 101 and welcome, then stay silent.
    let mut raw: Vec<_> = (0..20)
        .map(|i| {
            let mut s = node.raw_upgrade(&format!("raw-{i}"));
            let mut buf = [0u8; 512];
            let n = s.read(&mut buf).unwrap();
            assert!(buf[..n].starts_with(b"HTTP/1.1 101"));
            s
        })
        .collect();
    // Silent for the park-after second and one quiet tick: all parked.
    wait_parked(&node, 22.0, Duration::from_secs(6));
    assert_eq!(node.metric("rtc_socket_active_connections"), 22.0);

    // Bob's frame wakes bob; the message to alice wakes alice.
    alice.set_read_timeout(Duration::from_secs(5));
    bob.send_direct("alice", "m1", json!({"n": 1}));
    let got = alice.recv();
    assert_eq!(got["type"], "msg", "{got}");
    assert_eq!(got["from"], "bob", "{got}");
    assert_eq!(got["data"]["n"], 1, "{got}");
    let ack = bob.recv();
    assert_eq!(ack["type"], "ack", "{ack}");
    assert!(node.metric(PARKED) <= 20.0);

    // Both park again, and a second message still goes through.
    wait_parked(&node, 22.0, Duration::from_secs(6));
    bob.send_direct("alice", "m2", json!({"n": 2}));
    assert_eq!(alice.recv()["data"]["n"], 2);

    // A parked client that hangs up is noticed and forgotten.
    wait_parked(&node, 22.0, Duration::from_secs(6));
    drop(raw.pop());
    let t0 = Instant::now();
    while node.metric("rtc_socket_active_connections") != 21.0 {
        assert!(t0.elapsed() < Duration::from_secs(5), "hang-up not seen");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(node.metric(PARKED), 21.0);
}

#[test]
fn a_parked_connection_is_pinged_and_its_pong_keeps_it() {
    let node = Node::start(&[
        "--park-after-secs",
        "1",
        "--ping-interval-secs",
        "3",
        "--idle-timeout-secs",
        "6",
    ]);
    let (mut lively, _) = node.connect("lively");
    lively.set_read_timeout(Duration::from_millis(200));
    let mut seen_parked = false;
    // Longer than the idle timeout: only the pongs keep it open.
    let pings = lively.answer_pings_for(Duration::from_secs(10), || {
        seen_parked |= node.metric(PARKED) == 1.0;
    });
    assert!(pings >= 2, "pinged {pings} times");
    assert!(seen_parked, "the quiet connection was parked between pings");
    assert_eq!(node.metric("rtc_socket_active_connections"), 1.0);
}

#[test]
fn park_after_zero_never_parks() {
    let node = Node::start(&["--park-after-secs", "0"]);
    let (_alice, _) = node.connect("alice");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(node.metric(PARKED), 0.0);
    assert_eq!(node.metric("rtc_socket_active_connections"), 1.0);
}
