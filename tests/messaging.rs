//! Protocol v1 through a real WebSocket client against the real binary:
//! direct messages across cores, acks, order, offline delivery, resume,
//! rooms with wildcards, duplicate logins (several devices: tests/devices.rs).

mod common;

use std::collections::HashMap;

use common::close_code;
use serde_json::{json, Value};

for_each_store! {
    fn welcome_names_user_node_token_and_offset(store) {
        let node = store.node(&[]);
        let (_c, welcome) = node.connect("alice");
        assert_eq!(welcome["userId"], "alice");
        assert_eq!(welcome["node"], "test-node");
        assert_eq!(welcome["offset"], 0);
        assert!(welcome["resumeToken"]
            .as_str()
            .is_some_and(|t| t.len() > 40));
    }

    fn direct_message_is_acked_and_delivered_with_offset(store) {
        let node = store.node(&[]);
        let (mut alice, _) = node.connect("alice");
        let (mut bob, _) = node.connect("bob");
        alice.send_direct("bob", "m1", json!({"text":"hi","n":[1,2]}));
        assert_eq!(alice.recv(), json!({"type":"ack","id":"m1"}));
        let msg = bob.recv();
        assert_eq!(
            msg,
            json!({"type":"msg","from":"alice","id":"m1","offset":1,"data":{"text":"hi","n":[1,2]}})
        );
    }

    /// Many users over 2 cores, each sending to many others: nothing lost,
    /// every send acked, order kept per sender→recipient pair, offsets
    /// consecutive per recipient.
    fn many_users_over_two_cores_lose_nothing_and_keep_pair_order(store) {
        let node = store.node(&[]);
        const USERS: usize = 24;
        const PER_USER: usize = 60;
        let names: Vec<String> = (0..USERS).map(|i| format!("user{i}")).collect();
        let mut clients: Vec<_> = names.iter().map(|n| node.connect(n).0).collect();
        // Every user sends PER_USER messages, round-robin over the others.
        for (i, c) in clients.iter_mut().enumerate() {
            for k in 0..PER_USER {
                let to = &names[(i + 1 + k % (USERS - 1)) % USERS];
                c.send_direct(to, &format!("{i}-{k}"), json!({"seq": k}));
            }
        }
        let mut acks = 0;
        let mut received = 0;
        let mut last_seq: HashMap<(String, String), i64> = HashMap::new();
        for (me, c) in names.iter().zip(clients.iter_mut()) {
            let mut last_offset = 0;
            // Each user gets PER_USER messages (the round-robin is symmetric) and PER_USER acks.
            let mut want = 2 * PER_USER;
            while want > 0 {
                let v = c.recv();
                want -= 1;
                match v["type"].as_str().unwrap() {
                    "ack" => acks += 1,
                    "msg" => {
                        received += 1;
                        let from = v["from"].as_str().unwrap().to_owned();
                        let seq = v["data"]["seq"].as_i64().unwrap();
                        let prev = last_seq.insert((from.clone(), me.clone()), seq);
                        assert!(
                            prev.is_none_or(|p| p < seq),
                            "{from}->{me}: {seq} after {prev:?}"
                        );
                        let offset = v["offset"].as_u64().unwrap();
                        assert_eq!(offset, last_offset + 1, "offsets of {me} are consecutive");
                        last_offset = offset;
                    }
                    other => panic!("unexpected {other}: {v}"),
                }
            }
        }
        assert_eq!(acks, USERS * PER_USER);
        assert_eq!(received, USERS * PER_USER);
        assert!(
            node.metric("rtc_socket_messages_total{path=\"core\"}") > 0.0,
            "some crossed cores"
        );
        assert!(
            node.metric("rtc_socket_messages_total{path=\"local\"}") > 0.0,
            "some stayed local"
        );
    }

    fn offline_recipient_gets_messages_right_after_welcome(store) {
        let node = store.node(&[]);
        let (mut alice, _) = node.connect("alice");
        for i in 1..=3 {
            alice.send_direct("carol", &format!("m{i}"), json!(i));
            assert_eq!(alice.recv()["type"], "ack");
        }
        let (mut carol, welcome) = node.connect("carol");
        assert_eq!(welcome["offset"], 0);
        for i in 1..=3 {
            let m = carol.recv();
            assert_eq!(
                (m["id"].clone(), m["offset"].clone()),
                (json!(format!("m{i}")), json!(i))
            );
        }
        // Delivered once: a later plain connect does not replay them.
        drop(carol);
        std::thread::sleep(std::time::Duration::from_millis(200));
        alice.send_direct("carol", "m4", json!(4));
        assert_eq!(alice.recv()["type"], "ack");
        let (mut carol, welcome) = node.connect("carol");
        assert_eq!(welcome["offset"], 3);
        assert_eq!(carol.recv()["id"], "m4");
    }

    fn resume_token_replays_everything_after_its_offset(store) {
        let node = store.node(&[]);
        let (mut alice, _) = node.connect("alice");
        let (mut dave, welcome) = node.connect("dave");
        let token = welcome["resumeToken"].as_str().unwrap().to_owned();
        for i in 1..=4 {
            alice.send_direct("dave", &format!("m{i}"), json!(i));
            assert_eq!(alice.recv()["type"], "ack");
            assert_eq!(dave.recv()["offset"], i);
        }
        drop(dave);
        // The welcome token points before m1: a resume replays all four.
        let mut dave = node
            .connect_query(&format!("userId=dave&resume={token}"))
            .unwrap();
        let w = dave.recv();
        assert_eq!(
            (w["type"].as_str(), w["offset"].as_u64()),
            (Some("welcome"), Some(0))
        );
        let ids: Vec<Value> = (0..4).map(|_| dave.recv()["id"].clone()).collect();
        assert_eq!(ids, [json!("m1"), json!("m2"), json!("m3"), json!("m4")]);
        assert_eq!(node.metric("rtc_socket_reconnects_total"), 1.0);
    }

    fn bad_resume_tokens_are_refused_with_a_clear_error(store) {
        let node = store.node(&[]);
        let (_alice, welcome) = node.connect("alice");
        let alice_token = welcome["resumeToken"].as_str().unwrap().to_owned();
        for (token, code) in [
            (alice_token.as_str(), "token_wrong_user"),
            ("bm90LWEtdG9rZW4", "token_malformed"),
            (
                &format!("{}AA", &alice_token[..alice_token.len() - 2]),
                "token_forged",
            ),
        ] {
            let mut bob = node
                .connect_query(&format!("userId=bob&resume={token}"))
                .unwrap();
            let (ended, seen) = bob.recv_until_closed();
            assert_eq!(seen.len(), 1, "{seen:?}");
            assert_eq!(
                (seen[0]["type"].as_str(), seen[0]["code"].as_str()),
                (Some("error"), Some(code))
            );
            assert_eq!(close_code(&ended), Some(1008));
        }
    }

    fn rooms_with_wildcards_reach_matching_subscribers_on_every_core(store) {
        let node = store.node(&[]);
        // Enough subscribers that both cores hold some.
        let mut subs: Vec<_> = (0..8).map(|i| node.connect(&format!("sub{i}")).0).collect();
        for (i, s) in subs.iter_mut().enumerate() {
            let pattern = match i % 3 {
                0 => "chat.*",
                1 => "chat.lobby",
                _ => "*.alert",
            };
            s.join(pattern, "j");
            assert_eq!(s.recv(), json!({"type":"ack","id":"j"}));
        }
        // sub0 also holds an overlapping subscription: still one copy.
        subs[0].join("chat.lobby", "j2");
        assert_eq!(subs[0].recv()["id"], "j2");
        let (mut publisher, _) = node.connect("publisher");
        publisher.publish("chat.lobby", "p1", json!("hello"));
        assert_eq!(publisher.recv(), json!({"type":"ack","id":"p1"}));
        publisher.publish("ops.alert", "p2", json!("fire"));
        assert_eq!(publisher.recv(), json!({"type":"ack","id":"p2"}));
        for (i, s) in subs.iter_mut().enumerate() {
            let want = if i % 3 == 2 { "p2" } else { "p1" };
            let m = s.recv();
            assert_eq!(m["id"], want, "sub{i}: {m}");
            assert_eq!(m["from"], "publisher");
            assert!(m["room"].is_string() && m.get("offset").is_none());
        }
        // Nothing else arrived: a direct message is the next thing each sees.
        for (i, s) in subs.iter_mut().enumerate() {
            publisher.send_direct(&format!("sub{i}"), &format!("d{i}"), json!(null));
            assert_eq!(s.recv()["id"], format!("d{i}"));
        }
    }

    fn leave_stops_delivery(store) {
        let node = store.node(&[]);
        let (mut s, _) = node.connect("s");
        let (mut p, _) = node.connect("p");
        s.join("news.*", "j");
        assert_eq!(s.recv()["id"], "j");
        s.leave("news.*", "l");
        assert_eq!(s.recv()["id"], "l");
        p.publish("news.today", "x", json!(1));
        assert_eq!(p.recv()["type"], "ack");
        p.send_direct("s", "after", json!(null));
        assert_eq!(
            s.recv()["id"],
            "after",
            "the publish after leave was not delivered"
        );
    }

    /// `--max-connections-per-user 1`: the newest connection wins.
    fn second_connection_of_a_user_replaces_the_first_with_4001(store) {
        let node = store.node(&["--max-connections-per-user", "1"]);
        let (mut alice, _) = node.connect("alice");
        let (mut first, _) = node.connect("erin");
        alice.send_direct("erin", "m0", json!(0));
        assert_eq!(alice.recv()["type"], "ack");
        assert_eq!(first.recv()["id"], "m0");
        let (mut second, welcome) = node.connect("erin");
        assert_eq!(
            welcome["offset"], 1,
            "starts after what the first connection was sent"
        );
        let (ended, _) = first.recv_until_closed();
        assert_eq!(close_code(&ended), Some(4001));
        alice.send_direct("erin", "m1", json!(1));
        assert_eq!(second.recv()["id"], "m1", "m0 is not replayed");
    }

    fn rate_limited_sends_get_an_error_and_the_connection_stays(store) {
        let node = store.node(&["--rate-messages-per-sec", "1", "--rate-messages-burst", "3"]);
        let (mut a, _) = node.connect("a");
        for i in 0..5 {
            a.send_direct("b", &format!("m{i}"), json!(i));
        }
        let replies: Vec<Value> = (0..5).map(|_| a.recv()).collect();
        let limited: Vec<_> = replies
            .iter()
            .filter(|r| r["code"] == "rate_limited")
            .collect();
        assert_eq!(limited.len(), 2, "{replies:?}");
        // 1 per second: the next token within a second.
        assert!(limited
            .iter()
            .all(|r| (1..=1000).contains(&r["retryAfterMs"].as_u64().unwrap())));
        assert_eq!(replies.iter().filter(|r| r["type"] == "ack").count(), 3);
        assert!(node.metric("rtc_socket_drops_total{reason=\"rate_limited\"}") >= 2.0);
    }

    fn slow_reader_loses_the_oldest_from_its_queue_but_not_from_its_buffer(store) {
        let node = store.node(&["--outbound-queue", "4", "--buffer-messages", "1000"]);
        let (mut fast, _) = node.connect("fast");
        let (slow, _) = node.connect("slow"); // never reads until the end
        let big = "x".repeat(60_000);
        for i in 0..300 {
            fast.send_direct("slow", &format!("m{i}"), json!(big));
            assert_eq!(fast.recv()["type"], "ack");
        }
        assert!(node.metric("rtc_socket_drops_total{reason=\"buffer_full\"}") > 0.0);
        drop(slow);
        std::thread::sleep(std::time::Duration::from_millis(300));
        // The delivered mark stopped before the first drop, so a new connection
        // is replayed the gap: the last message is always there.
        let (mut again, _) = node.connect("slow");
        // Reads until the newest message; a missing one would time out.
        while again.recv()["id"] != "m299" {}
    }

    fn health_and_metrics_endpoints_answer(store) {
        let node = store.node(&[]);
        let (_c, _) = node.connect("alice");
        let (status, body) = node.http_get("/health");
        assert_eq!(status, "HTTP/1.1 200 OK");
        assert!(body.contains("\"status\":\"ok\""), "{body}");
        assert_eq!(node.metric("rtc_socket_active_connections"), 1.0);
        let text = node.metrics();
        for name in [
            "rtc_socket_messages_total",
            "rtc_socket_drops_total",
            "rtc_socket_latency_seconds_bucket",
            "rtc_socket_reconnects_total",
            "rtc_socket_handshakes_rejected_total",
        ] {
            assert!(text.contains(name), "{name} missing");
        }
        assert_eq!(node.http_get("/nope").0, "HTTP/1.1 404 Not Found");
    }

    fn handshakes_over_the_rate_cap_get_503_with_retry_after(store) {
        let node = store.node(&["--handshakes-per-sec", "2"]);
        let mut refused = None;
        let mut kept = Vec::new();
        for i in 0..10 {
            match node.connect_query(&format!("userId=u{i}")) {
                Ok(c) => kept.push(c),
                Err(tungstenite::Error::Http(resp)) => {
                    refused = Some(resp);
                    break;
                }
                Err(e) => panic!("{e}"),
            }
        }
        let resp = refused.expect("some handshake was refused");
        assert_eq!(resp.status(), 503);
        assert!(resp.headers().contains_key("retry-after"));
        assert!(node.metric("rtc_socket_handshakes_rejected_total{reason=\"rate\"}") >= 1.0);
    }

    fn connections_over_the_cap_get_503(store) {
        let node = store.node(&["--max-connections", "2"]);
        let _a = node.connect("a");
        let _b = node.connect("b");
        match node.connect_query("userId=c") {
            Err(tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 503),
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("third connection admitted"),
        }
    }

    fn new_connections_are_refused_while_too_many_messages_are_queued(store) {
        let node = store.node(&["--max-queued-per-core", "5", "--outbound-queue", "10000"]);
        let (mut fast, _) = node.connect("fast");
        let (slow, _) = node.connect("slow"); // never reads: its queue grows
        let big = "x".repeat(60_000);
        for i in 0..200 {
            fast.send_direct("slow", &format!("m{i}"), json!(big));
            assert_eq!(fast.recv()["type"], "ack");
        }
        // The queue depth is sampled once a second.
        std::thread::sleep(std::time::Duration::from_millis(1500));
        match node.connect_query("userId=late") {
            Err(tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 503),
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("admitted while over the queue-depth cap"),
        }
        assert!(node.metric("rtc_socket_handshakes_rejected_total{reason=\"capacity\"}") >= 1.0);
        drop(slow);
    }

    fn join_and_leave_refusals_carry_their_id(store) {
        let node = store.node(&["--max-subscriptions", "1"]);
        let (mut c, _) = node.connect("alice");
        c.join("a", "j1");
        assert_eq!(c.recv(), json!({"type":"ack","id":"j1"}));
        c.join("b", "j2");
        let e = c.recv();
        assert_eq!(
            (e["code"].as_str(), e["id"].as_str()),
            (Some("too_many_subscriptions"), Some("j2"))
        );
    }

    fn the_buffer_keeps_the_last_w_messages_for_an_offline_user(store) {
        let node = store.node(&["--buffer-messages", "3"]);
        let (mut alice, _) = node.connect("alice");
        for i in 1..=5 {
            alice.send_direct("dave", &format!("m{i}"), json!(i));
            assert_eq!(alice.recv()["type"], "ack");
        }
        let (mut dave, welcome) = node.connect("dave");
        assert_eq!(welcome["offset"], 0);
        let got: Vec<(Value, Value)> = (0..3)
            .map(|_| {
                let m = dave.recv();
                (m["id"].clone(), m["offset"].clone())
            })
            .collect();
        assert_eq!(
            got,
            [(json!("m3"), json!(3)), (json!("m4"), json!(4)), (json!("m5"), json!(5))]
        );
        // The next message continues the same offsets.
        alice.send_direct("dave", "m6", json!(6));
        assert_eq!(alice.recv()["type"], "ack");
        assert_eq!(dave.recv()["offset"], 6);
    }
}

/// A token from before the store lost its history (here: a restarted node
/// with the in-memory store, same secret) must not hide what the new store
/// buffered since: everything buffered is replayed.
#[test]
fn a_token_past_the_stores_last_offset_replays_everything_buffered() {
    let node = common::Node::start(&[]);
    let (mut alice, _) = node.connect("alice");
    let (mut dave, _) = node.connect("dave");
    for i in 1..=3 {
        alice.send_direct("dave", &format!("old{i}"), json!(i));
        assert_eq!(alice.recv()["type"], "ack");
        assert_eq!(dave.recv()["offset"], i);
    }
    drop((alice, dave));
    // The token of a fresh connection names offset 3.
    let (_dave, welcome) = node.connect("dave");
    let token = welcome["resumeToken"].as_str().unwrap().to_owned();
    assert_eq!(welcome["offset"], 3);
    drop(node);

    let node = common::Node::start(&[]);
    let (mut bob, _) = node.connect("bob");
    for i in 1..=2 {
        bob.send_direct("dave", &format!("new{i}"), json!(i));
        assert_eq!(bob.recv()["type"], "ack");
    }
    let mut dave = node
        .connect_query(&format!("userId=dave&resume={token}"))
        .unwrap();
    assert_eq!(dave.recv()["offset"], 0, "welcome starts before everything");
    assert_eq!(dave.recv()["id"], "new1");
    assert_eq!(dave.recv()["id"], "new2");
}
