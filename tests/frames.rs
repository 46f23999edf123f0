//! The node's own frame reader and writer through real sockets against the
//! real binary: the close handshake, fragments with control frames between
//! them, UTF-8 across fragments, and the buffers of a connection going back
//! to nothing after a 512 KiB message.
//!
//! Buffer sizes are read from `rtc_socket_connection_buffer_bytes`, the
//! capacity of every connection's own read, send and queue buffers as of its
//! last rest: exact, unlike RSS, which the allocator keeps for reuse.

mod common;

use std::{
    io::{Read, Write},
    net::TcpStream,
    time::{Duration, Instant},
};

use common::Node;
use serde_json::json;
use shardcast::protocol::frame::write_raw_frame;

const BUFFERS: &str = "rtc_socket_connection_buffer_bytes";

/// A raw connection to `path` past its 101.
fn raw_ws(node: &Node, path: &str) -> TcpStream {
    let mut s = node.raw();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\n\r\n"
    )
    .unwrap();
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

/// A masked client frame.
fn frame(first: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    write_raw_frame(&mut out, first, payload, Some([0xa1, 0xb2, 0xc3, 0xd4]));
    out
}

/// Reads one server frame: (first byte, payload). Server frames are never
/// masked.
fn read_frame(s: &mut TcpStream) -> (u8, Vec<u8>) {
    let mut h = [0u8; 2];
    s.read_exact(&mut h).unwrap();
    assert_eq!(h[1] & 0x80, 0, "server frames are not masked");
    let len = match h[1] & 0x7f {
        126 => {
            let mut l = [0u8; 2];
            s.read_exact(&mut l).unwrap();
            u16::from_be_bytes(l) as usize
        }
        127 => {
            let mut l = [0u8; 8];
            s.read_exact(&mut l).unwrap();
            u64::from_be_bytes(l) as usize
        }
        n => n as usize,
    };
    let mut payload = vec![0u8; len];
    s.read_exact(&mut payload).unwrap();
    (h[0], payload)
}

/// Reads until the server closes the TCP connection; true if it did.
fn closed_by_server(s: &mut TcpStream) -> bool {
    let mut rest = Vec::new();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.read_to_end(&mut rest).is_ok() && rest.is_empty()
}

/// Polls the buffer gauge until `ok` holds (5 s at most); returns the last
/// value read.
fn buffers_until(node: &Node, ok: impl Fn(f64) -> bool) -> f64 {
    let t0 = Instant::now();
    loop {
        let v = node.metric(BUFFERS);
        if ok(v) || t0.elapsed() > Duration::from_secs(5) {
            return v;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_client_close_is_answered_with_its_code_and_the_server_closes_tcp() {
    let node = Node::start(&["--echo"]);
    let mut s = raw_ws(&node, "/echo");
    let mut payload = 1000u16.to_be_bytes().to_vec();
    payload.extend_from_slice(b"bye");
    s.write_all(&frame(0x88, &payload)).unwrap();
    let (first, reply) = read_frame(&mut s);
    assert_eq!((first, &reply[..]), (0x88, &1000u16.to_be_bytes()[..]));
    assert!(closed_by_server(&mut s));
}

#[test]
fn an_empty_close_is_answered_with_an_empty_close() {
    let node = Node::start(&["--echo"]);
    let mut s = raw_ws(&node, "/echo");
    s.write_all(&frame(0x88, b"")).unwrap();
    assert_eq!(read_frame(&mut s), (0x88, vec![]));
    assert!(closed_by_server(&mut s));
}

#[test]
fn a_close_with_a_reserved_code_closes_with_1002() {
    let node = Node::start(&["--echo"]);
    let mut s = raw_ws(&node, "/echo");
    s.write_all(&frame(0x88, &1005u16.to_be_bytes())).unwrap();
    let (first, reply) = read_frame(&mut s);
    assert_eq!(
        (first, u16::from_be_bytes([reply[0], reply[1]])),
        (0x88, 1002)
    );
    assert!(closed_by_server(&mut s));
}

#[test]
fn fragments_with_a_ping_between_them_echo_as_one_message_after_the_pong() {
    let node = Node::start(&["--echo"]);
    let mut s = raw_ws(&node, "/echo");
    let mut bytes = frame(0x01, "frag".as_bytes());
    bytes.extend(frame(0x89, b"are you there"));
    bytes.extend(frame(0x00, "mént".as_bytes()));
    bytes.extend(frame(0x80, "ed €".as_bytes()));
    // One byte at a time: every frame and header is cut somewhere.
    for b in bytes {
        s.write_all(&[b]).unwrap();
    }
    assert_eq!(read_frame(&mut s), (0x8A, b"are you there".to_vec()));
    assert_eq!(
        read_frame(&mut s),
        (0x81, "fragménted €".as_bytes().to_vec())
    );
}

#[test]
fn invalid_utf8_across_fragments_closes_with_1007() {
    let node = Node::start(&["--echo"]);
    let mut s = raw_ws(&node, "/echo");
    // "€" is E2 82 AC; E2 82 followed by '(' is not UTF-8.
    let mut bytes = frame(0x01, &[b'a', 0xe2, 0x82]);
    bytes.extend(frame(0x80, b"("));
    s.write_all(&bytes).unwrap();
    let (first, reply) = read_frame(&mut s);
    assert_eq!(
        (first, u16::from_be_bytes([reply[0], reply[1]])),
        (0x88, 1007)
    );
}

#[test]
fn idle_connections_hold_no_buffer_bytes() {
    let node = Node::start(&[]);
    let clients: Vec<_> = (0..20)
        .map(|i| node.connect(&format!("idle-{i}")).0)
        .collect();
    let held = buffers_until(&node, |v| v == 0.0);
    assert_eq!(held, 0.0, "20 idle connections past their welcome");
    drop(clients);
}

#[test]
fn a_connections_buffers_go_back_to_nothing_after_a_512_kib_message() {
    let node = Node::start(&["--echo"]);
    let mut s = raw_ws(&node, "/echo");
    // At rest after the 101 (a round trip proves the task came to rest).
    s.write_all(&frame(0x81, b"hi")).unwrap();
    assert_eq!(read_frame(&mut s), (0x81, b"hi".to_vec()));
    assert_eq!(buffers_until(&node, |v| v == 0.0), 0.0);
    let payload: Vec<u8> = (0..512 * 1024).map(|i| (i % 251) as u8).collect();
    let bytes = frame(0x82, &payload);
    // Half the frame: the reader holds what arrived, about 256 KiB, and no
    // more than the frame's 512 KiB.
    let half = bytes.len() / 2;
    s.write_all(&bytes[..half]).unwrap();
    let pending = buffers_until(&node, |v| v >= 200.0 * 1024.0);
    assert!(
        (200.0 * 1024.0..=512.0 * 1024.0 + 1024.0).contains(&pending),
        "pending partial frame held as {pending} B"
    );
    s.write_all(&bytes[half..]).unwrap();
    let (first, echoed) = read_frame(&mut s);
    assert_eq!(first, 0x82);
    assert!(echoed == payload, "the 512 KiB message comes back whole");
    let after = buffers_until(&node, |v| v == 0.0);
    assert_eq!(after, 0.0, "read and send buffers released");
    // And the connection still works with small messages.
    s.write_all(&frame(0x81, b"small")).unwrap();
    assert_eq!(read_frame(&mut s), (0x81, b"small".to_vec()));
}

#[test]
fn a_512_kib_direct_message_leaves_neither_connection_holding_buffers() {
    let node = Node::start(&[]);
    let (mut alice, _) = node.connect("alice");
    let (mut bob, _) = node.connect("bob");
    assert_eq!(buffers_until(&node, |v| v == 0.0), 0.0);
    let big = "x".repeat(512 * 1024);
    alice.send_direct("bob", "big", json!(big));
    assert_eq!(alice.recv(), json!({"type":"ack","id":"big"}));
    let got = bob.recv();
    assert_eq!(got["id"], "big");
    assert!(got["data"].as_str() == Some(big.as_str()));
    // Alice's read side and Bob's send side and queue are back to nothing.
    assert_eq!(buffers_until(&node, |v| v == 0.0), 0.0);
}
