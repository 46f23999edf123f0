//! Graceful drain: on SIGTERM every client gets a `reconnect` envelope with
//! a fresh resume token, then close 1012, and the node exits 0 in time.

mod common;

use std::time::{Duration, Instant};

use common::{close_code, Node};
use serde_json::json;

for_each_store! {
    fn sigterm_sends_reconnect_then_1012_and_exits_zero(store) {
        let mut node = store.node(&["--drain-timeout-secs", "5"]);
        let mut clients: Vec<_> = (0..10).map(|i| node.connect(&format!("u{i}")).0).collect();
        // u0 has received 2 messages: its reconnect token must resume after offset 2.
        let (mut sender, _) = node.connect("sender");
        for i in 1..=2 {
            sender.send_direct("u0", &format!("m{i}"), json!(i));
            assert_eq!(sender.recv()["type"], "ack");
            assert_eq!(clients[0].recv()["offset"], i);
        }
        let t0 = Instant::now();
        let status = std::thread::scope(|s| {
            let waiter = s.spawn(|| node.terminate(Duration::from_secs(10)));
            for (i, c) in clients.iter_mut().enumerate() {
                let (ended, seen) = c.recv_until_closed();
                assert_eq!(seen.len(), 1, "u{i}: {seen:?}");
                let reconnect = &seen[0];
                assert_eq!(reconnect["type"], "reconnect");
                assert!(reconnect["retryAfterMs"].as_u64().is_some());
                let token = reconnect["resumeToken"].as_str().unwrap();
                assert_eq!(
                    token_offset(token, &format!("u{i}")),
                    if i == 0 { 2 } else { 0 }
                );
                assert_eq!(close_code(&ended), Some(1012), "u{i}");
            }
            let (ended, _) = sender.recv_until_closed();
            assert_eq!(close_code(&ended), Some(1012));
            waiter.join().unwrap()
        });
        assert!(status.success(), "{status:?}");
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "drained in {:?}",
            t0.elapsed()
        );
    }
}

#[test]
fn drain_gives_up_on_clients_that_never_close_within_the_timeout() {
    let mut node = Node::start(&["--drain-timeout-secs", "1"]);
    // A raw socket that completes the upgrade and then never reads again.
    let _stuck = node.raw_upgrade("stuck");
    std::thread::sleep(Duration::from_millis(200));
    let t0 = Instant::now();
    let status = node.terminate(Duration::from_secs(6));
    assert!(status.success());
    assert!(t0.elapsed() < Duration::from_secs(4), "{:?}", t0.elapsed());
}

/// The offset a resume token for `user` carries (checks its MAC too).
fn token_offset(token: &str, user: &str) -> u64 {
    let now = shardcast::node::unix_now();
    shardcast::token::ResumeToken::verify(token, common::SECRET.as_bytes(), user, now, 3600)
        .expect("a valid token for this user")
        .offset
}
