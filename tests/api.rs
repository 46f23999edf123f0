//! The server API over HTTP on the node's main port, through real sockets
//! against the real binary: publish to rooms with subscribers on both cores,
//! send to a user who is offline (buffered, resumable) or connected, the
//! online query, bad keys, bad requests, the API switched off, and a dead
//! store answered with 503 (never 200 for what is not durable).

mod common;

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    path::PathBuf,
    time::Duration,
};

use common::{http_request, Node, Store};
use serde_json::{json, Value};

const KEY: &str = "api-test-key-0123456789";

/// A key file of its own for each node (the tests run in parallel: one
/// shared file rewritten by each could be read half written).
fn key_file() -> PathBuf {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = format!("shardcast-api-key-{}-{n}", std::process::id());
    let path = std::env::temp_dir().join(name);
    std::fs::write(&path, format!("{KEY}\n")).unwrap();
    path
}

fn api_node(store: &Store, extra: &[&str]) -> Node {
    let file = key_file();
    let mut args = vec!["--api-key-file", file.to_str().unwrap()];
    args.extend_from_slice(extra);
    store.node(&args)
}

/// One HTTP request, written raw: the status code and the JSON body.
fn request(addr: SocketAddr, head: &str, body: &[u8]) -> (u16, Value) {
    let (status, text, json) = http_request(addr, head, body);
    assert!(!json.is_null(), "not a JSON answer: {text}");
    (status, json)
}

fn post_with(node: &Node, path: &str, key: Option<&str>, body: &str) -> (u16, Value) {
    let auth = key.map_or(String::new(), |k| format!("Authorization: Bearer {k}\r\n"));
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: t\r\n{auth}Content-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    );
    request(node.ws, &head, body.as_bytes())
}

fn post(node: &Node, path: &str, body: &Value) -> (u16, Value) {
    post_with(node, path, Some(KEY), &body.to_string())
}

fn online(node: &Node, user: &str) -> Value {
    let head = format!(
        "GET /api/v1/online?userId={user} HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {KEY}\r\n\r\n"
    );
    let (status, body) = request(node.ws, &head, b"");
    assert_eq!(status, 200, "{body}");
    body
}

for_each_store! {
    fn publish_reaches_the_rooms_subscribers_on_both_cores(store) {
        let node = api_node(&store, &[]);
        // alice and bob are owned by different cores of two.
        let (mut alice, _) = node.connect("alice");
        let (mut bob, _) = node.connect("bob");
        alice.join("order:7.*", "j");
        bob.join("order:7.*", "j");
        assert_eq!(alice.recv()["type"], "ack");
        assert_eq!(bob.recv()["type"], "ack");
        for i in 0..4 {
            // Several requests: they are accepted on either core.
            let id = format!("e{i}");
            let body = json!({"room":"order:7.status","id":id,"data":{"state":"shipped","n":i}});
            assert_eq!(post(&node, "/api/v1/publish", &body), (200, json!({"id": id})));
            for c in [&mut alice, &mut bob] {
                assert_eq!(
                    c.recv(),
                    json!({"type":"msg","room":"order:7.status","from":"#server","id":id,
                           "data":{"state":"shipped","n":i}})
                );
            }
        }
    }

    fn send_to_an_offline_user_is_buffered_and_resumable(store) {
        let node = api_node(&store, &[]);
        let body = json!({"to":"carol","id":"s1","data":{"text":"your order shipped"}});
        assert_eq!(post(&node, "/api/v1/send", &body), (200, json!({"id":"s1"})));
        let (mut carol, welcome) = node.connect("carol");
        let token = welcome["resumeToken"].as_str().unwrap().to_owned();
        assert_eq!(
            carol.recv(),
            json!({"type":"msg","from":"#server","id":"s1","offset":1,
                   "data":{"text":"your order shipped"}})
        );
        // Connected now, and a named sender.
        let body = json!({"to":"carol","id":"s2","data":2,"from":"billing"});
        assert_eq!(post(&node, "/api/v1/send", &body).0, 200);
        let m = carol.recv();
        assert_eq!((&m["from"], &m["id"], &m["offset"]), (&json!("billing"), &json!("s2"), &json!(2)));
        drop(carol);
        // Her token from the welcome (offset 0) replays both.
        let mut back = node.connect_query(&format!("userId=carol&resume={token}")).unwrap();
        assert_eq!(back.recv()["offset"], 0);
        assert_eq!(back.recv()["id"], "s1");
        assert_eq!(back.recv()["id"], "s2");
    }

    fn sends_reach_users_of_both_cores_and_every_connection(store) {
        let node = api_node(&store, &[]);
        let (mut alice, _) = node.connect("alice");
        let (mut bob1, _) = node.connect("bob");
        let (mut bob2, _) = node.connect("bob");
        // Requests land on either core: go on until some were delivered on
        // the core that took them and some crossed to the owning core.
        let paths = |node: &Node| {
            let path = |p: &str| node.metric(&format!("rtc_socket_messages_total{{path=\"{p}\"}}"));
            (path("local"), path("core"))
        };
        let mut sent = 0;
        while sent < 4 || paths(&node).0 == 0.0 || paths(&node).1 == 0.0 {
            sent += 1;
            assert!(sent < 100, "every request on one core: {:?}", paths(&node));
            for to in ["alice", "bob"] {
                let body = json!({"to":to,"id":format!("{to}{sent}"),"data":sent});
                assert_eq!(post(&node, "/api/v1/send", &body).0, 200);
            }
        }
        for i in 1..=sent {
            let m = alice.recv();
            assert_eq!((&m["id"], &m["offset"]), (&json!(format!("alice{i}")), &json!(i)));
            for bob in [&mut bob1, &mut bob2] {
                let m = bob.recv();
                assert_eq!((&m["id"], &m["offset"]), (&json!(format!("bob{i}")), &json!(i)));
            }
        }
    }

    fn online_says_whether_and_where_a_user_is_connected(store) {
        let node = api_node(&store, &[]);
        for _ in 0..3 {
            assert_eq!(
                online(&node, "dana"),
                json!({"userId":"dana","online":false,"node":null,"connections":0})
            );
        }
        let (_a, _) = node.connect("dana");
        let (_b, _) = node.connect("dana");
        for _ in 0..4 {
            assert_eq!(
                online(&node, "dana"),
                json!({"userId":"dana","online":true,"node":"test-node","connections":2})
            );
        }
    }

    fn bad_api_keys_get_401_and_send_nothing(store) {
        let node = api_node(&store, &[]);
        let body = json!({"to":"erin","id":"x","data":0}).to_string();
        for key in [None, Some("api-test-key-012345678"), Some("api-test-key-01234567890")] {
            let (status, reply) = post_with(&node, "/api/v1/send", key, &body);
            assert_eq!((status, &reply["error"]), (401, &json!("unauthorized")), "{key:?}");
            assert!(reply["message"].is_string());
        }
        let head = "GET /api/v1/online?userId=erin HTTP/1.1\r\nAuthorization: Bearer nope\r\n\r\n";
        assert_eq!(request(node.ws, head, b"").0, 401);
        assert_eq!(post(&node, "/api/v1/send", &json!({"to":"erin","id":"ok","data":1})).0, 200);
        let (mut erin, _) = node.connect("erin");
        assert_eq!(erin.recv()["id"], "ok", "nothing came from the refused requests");
    }
}

#[test]
fn bad_requests_get_4xx_with_a_json_error() {
    let node = api_node(&Store::memory(), &["--max-message-bytes", "1024"]);
    let cases: &[(&str, &str, u16, &str)] = &[
        ("/api/v1/send", "{\"to\":", 400, "bad_json"),
        ("/api/v1/send", "[]", 400, "bad_request"),
        ("/api/v1/send", r#"{"id":"m","data":1}"#, 400, "bad_request"),
        (
            "/api/v1/send",
            r#"{"to":"bob","data":1}"#,
            400,
            "bad_request",
        ),
        (
            "/api/v1/send",
            r#"{"to":"b o b","id":"m"}"#,
            400,
            "bad_user",
        ),
        (
            "/api/v1/send",
            r##"{"to":"bob","id":"m","from":"#server"}"##,
            400,
            "bad_user",
        ),
        (
            "/api/v1/publish",
            r#"{"room":"chat.*","id":"m"}"#,
            400,
            "bad_room",
        ),
        (
            "/api/v1/publish",
            r#"{"room":"","id":"m"}"#,
            400,
            "bad_room",
        ),
        (
            "/api/v1/publish",
            r#"{"to":"bob","id":"m"}"#,
            400,
            "bad_request",
        ),
        ("/api/v1/nope", "{}", 404, "not_found"),
        ("/api/v1/online", "{}", 405, "method_not_allowed"),
    ];
    for &(path, body, status, error) in cases {
        let (got, reply) = post_with(&node, path, Some(KEY), body);
        assert_eq!(
            (got, reply["error"].as_str()),
            (status, Some(error)),
            "{path} {body}: {reply}"
        );
    }
    let big = json!({"to":"bob","id":"m","data":"x".repeat(2000)}).to_string();
    let (status, reply) = post_with(&node, "/api/v1/send", Some(KEY), &big);
    assert_eq!(
        (status, &reply["error"]),
        (413, &json!("payload_too_large"))
    );
    let head = format!("POST /api/v1/send HTTP/1.1\r\nAuthorization: Bearer {KEY}\r\n\r\n");
    let (status, reply) = request(node.ws, &head, b"");
    assert_eq!((status, &reply["error"]), (411, &json!("length_required")));
    let head = format!("GET /api/v1/online HTTP/1.1\r\nAuthorization: Bearer {KEY}\r\n\r\n");
    assert_eq!(request(node.ws, &head, b"").0, 400, "no userId");
    // The node is unharmed: a good request still works.
    assert_eq!(
        post(
            &node,
            "/api/v1/send",
            &json!({"to":"bob","id":"m","data":1})
        )
        .0,
        200
    );
}

#[test]
fn a_body_sent_after_100_continue_is_read() {
    let node = api_node(&Store::memory(), &[]);
    let body = json!({"to":"fay","id":"big","data":"y".repeat(4000)}).to_string();
    let mut s = TcpStream::connect(node.ws).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "POST /api/v1/send HTTP/1.1\r\nAuthorization: Bearer {KEY}\r\nExpect: 100-continue\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    let mut first = [0u8; 25];
    s.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"HTTP/1.1 100 Continue\r\n\r\n");
    s.write_all(body.as_bytes()).unwrap();
    let mut rest = String::new();
    s.read_to_string(&mut rest).unwrap();
    assert!(rest.starts_with("HTTP/1.1 200 OK"), "{rest}");
}

#[test]
fn without_a_key_file_the_api_is_off_with_404() {
    let node = Store::memory().node(&[]);
    let (status, reply) = post(
        &node,
        "/api/v1/send",
        &json!({"to":"bob","id":"m","data":1}),
    );
    assert_eq!((status, &reply["error"]), (404, &json!("not_found")));
    assert!(reply["message"]
        .as_str()
        .unwrap()
        .contains("--api-key-file"));
}

#[test]
fn a_dead_store_answers_503_never_200() {
    let mut store = Store::redis();
    let node = api_node(&store, &["--redis-timeout-ms", "500"]);
    assert_eq!(
        post(
            &node,
            "/api/v1/send",
            &json!({"to":"gus","id":"up","data":1})
        )
        .0,
        200
    );
    store.redis_process().kill();
    for i in 0..6 {
        let body = json!({"to":"gus","id":format!("down{i}"),"data":i});
        let (status, reply) = post(&node, "/api/v1/send", &body);
        assert_eq!(
            (status, &reply["error"]),
            (503, &json!("unavailable")),
            "{reply}"
        );
    }
}
