//! Every bad input the contract lists, each through a real client or a raw
//! socket, with a bystander pair checking that nobody else is disturbed and
//! the node keeps serving.

mod common;

use std::{
    io::{Read, Write},
    net::TcpStream,
};

use common::{close_code, Node};
use serde_json::json;
use shardcast::protocol::frame::write_raw_frame;

/// A pair of users exchanging a message: proves the node still serves others.
fn bystanders_still_talk(node: &Node) {
    let (mut a, _) = node.connect("bystander-a");
    let (mut b, _) = node.connect("bystander-b");
    a.send_direct("bystander-b", "still-alive", json!(1));
    assert_eq!(a.recv()["type"], "ack");
    assert_eq!(b.recv()["id"], "still-alive");
}

#[test]
fn bad_envelopes_get_an_error_and_the_connection_stays_usable() {
    let node = Node::start(&[]);
    let (mut c, _) = node.connect("alice");
    let cases = [
        ("{not json", "bad_json"),
        ("[1,2,3]", "bad_json"),
        (r#"{"type":"dance"}"#, "unknown_type"),
        (r#"{"type":"send","id":"m1"}"#, "bad_envelope"),
        (r#"{"type":"send","to":"bob"}"#, "bad_envelope"),
        (r#"{"type":"send","to":42,"id":"m1"}"#, "bad_envelope"),
        (r#"{"type":["send"]}"#, "bad_envelope"),
        (r#"{"type":"send","to":"not a user","id":"m1"}"#, "bad_user"),
        (r#"{"type":"join","room":"a..b"}"#, "bad_room"),
        (r#"{"type":"publish","room":"chat.*","id":"p"}"#, "bad_room"),
    ];
    for (text, code) in cases {
        c.send_text(text);
        let e = c.recv();
        assert_eq!(
            (e["type"].as_str(), e["code"].as_str()),
            (Some("error"), Some(code)),
            "{text}"
        );
        assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    // Still usable afterwards.
    let (mut bob, _) = node.connect("bob");
    c.send_direct("bob", "ok", json!(true));
    assert_eq!(c.recv(), json!({"type":"ack","id":"ok"}));
    assert_eq!(bob.recv()["id"], "ok");
    assert!(node.metric("rtc_socket_drops_total{reason=\"invalid\"}") >= cases.len() as f64);
}

#[test]
fn binary_frames_on_ws_get_an_error_and_the_connection_stays() {
    let node = Node::start(&[]);
    let (mut c, _) = node.connect("alice");
    c.ws.send(tungstenite::Message::binary(vec![1, 2, 3]))
        .unwrap();
    assert_eq!(c.recv()["code"], "binary_not_supported");
    c.join("a", "j");
    assert_eq!(c.recv()["id"], "j");
}

#[test]
fn oversized_message_closes_with_1009() {
    let node = Node::start(&["--max-message-bytes", "4096"]);
    let (mut c, _) = node.connect("alice");
    c.send_direct("bob", "big", json!("x".repeat(5000)));
    let (ended, seen) = c.recv_until_closed();
    assert!(seen.is_empty(), "no ack for the oversized message");
    assert_eq!(close_code(&ended), Some(1009));
    bystanders_still_talk(&node);
}

// ---- raw frames -------------------------------------------------------------

/// A raw connection past a valid upgrade.
fn raw_upgraded(node: &Node, user: &str) -> TcpStream {
    let mut s = node.raw_upgrade(user);
    let mut head = Vec::new();
    let mut byte = [0u8];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    s
}

/// A client frame: `first` is the FIN/RSV/opcode byte; masked unless told.
fn frame(first: u8, payload: &[u8], masked: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let mask = masked.then_some([0x11, 0x22, 0x33, 0x44]);
    write_raw_frame(&mut out, first, payload, mask);
    out
}

/// Reads server frames until a close frame; returns its code.
fn read_close_code(s: &mut TcpStream) -> Option<u16> {
    loop {
        let mut h = [0u8; 2];
        if s.read_exact(&mut h).is_err() {
            return None;
        }
        let mut len = (h[1] & 0x7f) as usize;
        if len == 126 {
            let mut l = [0u8; 2];
            s.read_exact(&mut l).unwrap();
            len = u16::from_be_bytes(l) as usize;
        } else if len == 127 {
            let mut l = [0u8; 8];
            s.read_exact(&mut l).unwrap();
            len = u64::from_be_bytes(l) as usize;
        }
        let mut payload = vec![0u8; len];
        s.read_exact(&mut payload).unwrap();
        if h[0] & 0x0f == 0x8 {
            return Some(u16::from_be_bytes([payload[0], payload[1]]));
        }
    }
}

fn raw_case(bytes: &[u8]) -> Option<u16> {
    let node = Node::start(&[]);
    let mut s = raw_upgraded(&node, "mallory");
    s.write_all(bytes).unwrap();
    let code = read_close_code(&mut s);
    bystanders_still_talk(&node);
    code
}

#[test]
fn invalid_utf8_in_a_text_frame_closes_with_1007() {
    assert_eq!(
        raw_case(&frame(0x81, &[0xff, 0xfe, b'{'], true)),
        Some(1007)
    );
}

#[test]
fn unmasked_client_frame_closes_with_1002() {
    assert_eq!(raw_case(&frame(0x81, b"{}", false)), Some(1002));
}

#[test]
fn reserved_bits_close_with_1002() {
    assert_eq!(raw_case(&frame(0x81 | 0x40, b"{}", true)), Some(1002));
}

#[test]
fn unknown_opcode_closes_with_1002() {
    assert_eq!(raw_case(&frame(0x83, b"{}", true)), Some(1002));
}

#[test]
fn fragmented_control_frame_closes_with_1002() {
    // A ping without FIN.
    assert_eq!(raw_case(&frame(0x09, b"hi", true)), Some(1002));
}

// ---- handshake garbage -------------------------------------------------------

fn status_of(node: &Node, request: &[u8]) -> String {
    let mut s = node.raw();
    s.write_all(request).unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.lines().next().unwrap_or_default().to_owned()
}

#[test]
fn bytes_that_are_not_http_get_400_and_a_close() {
    let node = Node::start(&[]);
    assert!(status_of(&node, b"\x16\x03\x01\x02\x00hello\r\n\r\n").starts_with("HTTP/1.1 400"));
    assert!(status_of(&node, b"POST /ws HTTP/1.1\r\nHost: x\r\n\r\n").starts_with("HTTP/1.1 400"));
    bystanders_still_talk(&node);
}

#[test]
fn upgrade_without_user_id_gets_400() {
    let node = Node::start(&[]);
    for query in ["", "other=1", "userId=", "userId=a%20b"] {
        match node.connect_query(query) {
            Err(tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 400, "{query}"),
            other => panic!("{query}: {other:?}", other = other.map(|_| ())),
        }
    }
    bystanders_still_talk(&node);
}

#[test]
fn plain_get_on_ws_without_upgrade_gets_400() {
    let node = Node::start(&[]);
    assert!(node.http_get("/ws?userId=a").0.starts_with("HTTP/1.1 400"));
}

#[test]
fn oversized_request_head_is_refused() {
    let node = Node::start(&[]);
    let mut req = b"GET /ws?userId=a HTTP/1.1\r\n".to_vec();
    for i in 0..400 {
        req.extend_from_slice(format!("X-Pad-{i}: {}\r\n", "y".repeat(20)).as_bytes());
    }
    req.extend_from_slice(b"\r\n");
    assert!(status_of(&node, &req).starts_with("HTTP/1.1 4"));
    bystanders_still_talk(&node);
}
