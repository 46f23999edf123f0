//! Several connections of one user (`--max-connections-per-user`): every
//! connection receives the user's direct messages with the same offset,
//! keeps its own subscriptions and acks, resumes from its own token; one
//! over the cap closes the oldest with 4001. Real nodes with `--cores 2`,
//! connections accepted on both cores (a user's connections all end up on
//! its owning core: those accepted on the other core are handed over).

mod common;

use common::{close_code, Client, Node};
use serde_json::{json, Value};

/// Opens `n` connections of `user`, at least one accepted on the user's own
/// core and one handed over from the other (`rtc_socket_handoffs_total`
/// tells them apart); connections that add nothing are closed again.
fn connect_on_both_cores(node: &Node, user: &str, n: usize) -> Vec<(Client, Value)> {
    let mut kept = Vec::new();
    let (mut here, mut handed, mut attempts) = (0, 0, 0);
    while kept.len() < n {
        let before = node.metric("rtc_socket_handoffs_total");
        let c = node.connect(user);
        let was_handed = node.metric("rtc_socket_handoffs_total") > before;
        let (h, x) = if was_handed {
            (here, handed + 1)
        } else {
            (here + 1, handed)
        };
        // Keep it when the slots left can still cover a core not seen yet.
        let missing = usize::from(h == 0) + usize::from(x == 0);
        if kept.len() + 1 + missing <= n {
            (here, handed) = (h, x);
            kept.push(c);
        } else {
            drop(c);
            // Let the close finish before the next connect (the cap).
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        attempts += 1;
        if attempts == 200 {
            panic!("no {n} connections over both cores: {here} here, {handed} handed over");
        }
    }
    kept
}

fn recv_direct(c: &mut Client) -> (String, u64) {
    let m = c.recv();
    assert_eq!(m["type"], "msg", "{m}");
    (
        m["id"].as_str().unwrap().to_owned(),
        m["offset"].as_u64().unwrap(),
    )
}

for_each_store! {
    fn three_connections_of_one_user_each_receive_resume_and_keep_their_rooms(store) {
        let node = store.node(&[]);
        let (mut alice, _) = node.connect("alice");
        let mut phil = connect_on_both_cores(&node, "phil", 3);
        for (_, welcome) in &phil {
            assert_eq!(welcome["offset"], 0);
        }
        for i in 1..=2 {
            alice.send_direct("phil", &format!("m{i}"), json!(i));
            assert_eq!(alice.recv()["type"], "ack");
        }
        for (c, _) in phil.iter_mut() {
            assert_eq!(recv_direct(c), ("m1".into(), 1), "the same offset on every device");
            assert_eq!(recv_direct(c), ("m2".into(), 2));
        }

        // Subscriptions are the connection's own.
        phil[0].0.join("news", "j");
        assert_eq!(phil[0].0.recv(), json!({"type":"ack","id":"j"}));
        alice.publish("news", "p1", json!("extra"));
        assert_eq!(alice.recv()["type"], "ack");
        assert_eq!(phil[0].0.recv()["room"], "news");

        // An ack goes to the connection that sent, not to its siblings.
        phil[2].0.send_direct("alice", "from-2", json!(null));
        assert_eq!(phil[2].0.recv(), json!({"type":"ack","id":"from-2"}));
        assert_eq!(alice.recv()["id"], "from-2");

        // One device goes away; the others keep receiving live.
        let (gone, welcome) = phil.remove(1);
        let token = welcome["resumeToken"].as_str().unwrap().to_owned();
        drop(gone);
        for i in 3..=4 {
            alice.send_direct("phil", &format!("m{i}"), json!(i));
            assert_eq!(alice.recv()["type"], "ack");
        }
        // The devices without the room see m3 next: no room message leaked.
        for (c, _) in phil.iter_mut() {
            assert_eq!(recv_direct(c), ("m3".into(), 3));
            assert_eq!(recv_direct(c), ("m4".into(), 4));
        }
        // It resumes from its own token (offset 0): everything, in order.
        let mut back = node.connect_query(&format!("userId=phil&resume={token}")).unwrap();
        assert_eq!(back.recv()["offset"], 0);
        let replayed: Vec<_> = (1..=4).map(|_| recv_direct(&mut back)).collect();
        assert_eq!(
            replayed,
            [("m1".into(), 1), ("m2".into(), 2), ("m3".into(), 3), ("m4".into(), 4)]
        );
        // A plain connect starts after the furthest any device got.
        let (_plain, welcome) = node.connect("phil");
        assert_eq!(welcome["offset"], 4);
    }

    fn over_the_cap_the_oldest_connection_is_closed_with_4001(store) {
        let node = store.node(&["--max-connections-per-user", "2"]);
        let (mut alice, _) = node.connect("alice");
        let (mut first, _) = node.connect("rita");
        let (mut second, _) = node.connect("rita");
        let (mut third, _) = node.connect("rita");
        let (ended, _) = first.recv_until_closed();
        assert_eq!(close_code(&ended), Some(4001));
        alice.send_direct("rita", "m1", json!(1));
        assert_eq!(alice.recv()["type"], "ack");
        assert_eq!(recv_direct(&mut second), ("m1".into(), 1));
        assert_eq!(recv_direct(&mut third), ("m1".into(), 1));
    }
}
