//! `shardcast-ctl` as a process: the API on an ephemeral port, membership
//! by heartbeats, grace and draining, versions across restarts, the
//! connect token against a real node with `--auth jwt`, and the node-side
//! client (`control::client`).

mod common;

use std::{
    io::{Read, Write},
    net::TcpStream,
    path::PathBuf,
    process::{Command, Stdio},
    sync::{Arc, Mutex},
    thread,
    time::{Duration, Instant},
};

use serde_json::{json, Value};
use shardcast::{
    auth::{JwtSettings, JwtVerifier},
    control::{
        client::{ClientError, ControlClient, RingFollower},
        heartbeat::Heartbeat,
    },
    harness::CtlProcess,
    ring::{Ring, RingConfig},
};

use common::{Node, SECRET};

/// `shardcast-ctl` on an ephemeral port with the test secret, M = 4096,
/// then `extra`.
fn ctl_command(extra: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_shardcast-ctl"));
    c.args(["--listen", "127.0.0.1:0", "--slots", "4096"])
        .args(extra)
        .env("SHARDCAST_SECRET", SECRET)
        .env("RUST_LOG", "warn")
        .stderr(Stdio::inherit());
    c
}

fn ctl(extra: &[&str]) -> CtlProcess {
    CtlProcess::start(ctl_command(extra)).expect("start shardcast-ctl")
}

fn client(ctl: &CtlProcess) -> ControlClient {
    ControlClient::new(&ctl.url(), Duration::from_secs(5)).unwrap()
}

fn hb(id: &str) -> Heartbeat {
    Heartbeat {
        node_id: id.into(),
        ws_url: format!("ws://127.0.0.1:1/{id}"),
        weight: 1.0,
        zone: String::new(),
        connections: 0,
        mps: 0.0,
        p95_ms: 0.0,
        draining: false,
        ring_version: 0,
    }
}

/// One raw HTTP/1.1 request (`Connection: close`): (status, body).
fn request(ctl: &CtlProcess, head: &str, body: &[u8]) -> (u16, String) {
    let mut s = TcpStream::connect(ctl.http).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(head.as_bytes()).unwrap();
    // The server may answer (413) and close before the whole body is sent.
    let _ = s.write_all(body);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let out = String::from_utf8_lossy(&out).into_owned();
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_owned();
    (status, body)
}

fn get(ctl: &CtlProcess, target: &str) -> (u16, String) {
    request(
        ctl,
        &format!("GET {target} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"),
        b"",
    )
}

fn get_json(ctl: &CtlProcess, target: &str) -> (u16, Value) {
    let (status, body) = get(ctl, target);
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

fn post(ctl: &CtlProcess, target: &str, body: &str) -> (u16, Value) {
    let head = format!(
        "POST {target} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let (status, body) = request(ctl, &head, body.as_bytes());
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

fn ring_of(ctl: &CtlProcess) -> RingConfig {
    client(ctl).ring_config().expect("GET /api/v1/ring")
}

fn ids(ring: &RingConfig) -> Vec<&str> {
    ring.nodes.iter().map(|n| n.id.as_str()).collect()
}

fn metric(ctl: &CtlProcess, series: &str) -> f64 {
    let text = get(ctl, "/metrics").1;
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {series} in\n{text}"))
}

/// Polls `f` until it is true, at most `within`.
fn eventually(within: Duration, mut f: impl FnMut() -> bool) -> bool {
    let t0 = Instant::now();
    while t0.elapsed() < within {
        if f() {
            return true;
        }
        thread::sleep(Duration::from_millis(20));
    }
    f()
}

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("shardcast-ctl-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn every_endpoint_answers_as_the_contract_says() {
    let ctl = ctl(&[]);
    let c = client(&ctl);
    let mut a = hb("node-a");
    a.zone = "z1".into();
    a.connections = 700_000;
    a.mps = 1_000.0;
    a.p95_ms = 4.0;
    assert_eq!(c.heartbeat(&a).unwrap().ring_version, 1);
    let mut b = hb("node-b");
    b.weight = 2.0;
    let reply = c.heartbeat(&b).unwrap();
    assert!(reply.member);
    assert_eq!(reply.ring_version, 2);

    // The ring: exactly src/ring's serde shape.
    let (status, raw) = get_json(&ctl, "/api/v1/ring");
    assert_eq!(status, 200);
    assert_eq!(
        raw,
        json!({"version": 2, "slots": 4096, "nodes": [
            {"id": "node-a", "weight": 1.0, "zone": "z1", "addr": "ws://127.0.0.1:1/node-a"},
            {"id": "node-b", "weight": 2.0, "zone": "", "addr": "ws://127.0.0.1:1/node-b"},
        ]})
    );
    let ring: Ring = serde_json::from_value(raw).unwrap();

    // Resolve agrees with src/ring on the published snapshot, user by user.
    for i in 0..200 {
        let user = format!("user-{i}");
        let (status, r) = get_json(&ctl, &format!("/api/v1/resolve?userId={user}"));
        assert_eq!(status, 200);
        let owner = ring.lookup(&user);
        assert_eq!(
            r,
            json!({"userId": user, "nodeId": owner.id, "wsUrl": owner.addr, "ringVersion": 2})
        );
    }

    // Connect: the token is one a node's verifier accepts for that user.
    let (status, k) = get_json(&ctl, "/api/v1/connect?userId=alice");
    assert_eq!(status, 200);
    assert_eq!(k["wsUrl"], ring.lookup("alice").addr.as_str());
    let verifier = JwtVerifier::new(JwtSettings {
        hs256_secret: Some(SECRET.as_bytes().to_vec()),
        ..JwtSettings::default()
    });
    let now = shardcast::control::service::unix_now();
    let grant = verifier
        .verify_for(k["token"].as_str().unwrap(), Some("alice"), now)
        .unwrap();
    assert_eq!(grant.expires_at, k["expiresAt"].as_u64().unwrap());
    assert!(grant.expires_at > now && grant.expires_at <= now + 301);

    // Scaling: the inputs are the heartbeats'.
    let (status, s) = get_json(&ctl, "/api/v1/scaling");
    assert_eq!(status, 200);
    assert!(eventually(Duration::from_secs(5), || {
        get_json(&ctl, "/api/v1/scaling").1["inputs"]["nodes"] == 2
    }));
    let s2 = get_json(&ctl, "/api/v1/scaling").1;
    assert_eq!(s2["inputs"]["totalConnections"], 700_000);
    assert_eq!(s2["demand"]["rConn"], 2, "ceil(1.25 * 700000 / 500000)");
    assert_eq!(s2["target"], 2);
    assert!(s["history"].is_array());

    let (status, h) = get_json(&ctl, "/health");
    assert_eq!((status, h["status"].as_str()), (200, Some("ok")));
    assert_eq!(metric(&ctl, "rtc_lb_ring_nodes"), 2.0);
    assert_eq!(metric(&ctl, "rtc_lb_ring_version"), 2.0);
    assert_eq!(metric(&ctl, "rtc_lb_scaling_target"), 2.0);
    assert_eq!(metric(&ctl, "rtc_lb_heartbeats_received_total"), 2.0);
    assert_eq!(metric(&ctl, "rtc_lb_ring_changes_total"), 2.0);
}

#[test]
fn bad_requests_get_json_errors_and_the_server_keeps_answering() {
    let ctl = ctl(&[]);
    let hb_path = "/api/v1/nodes/heartbeat";
    let cases: Vec<(u16, Value, &str)> = vec![
        (
            get_json(&ctl, "/nope").0,
            get_json(&ctl, "/nope").1,
            "not_found",
        ),
        {
            let (s, v) = get_json(&ctl, hb_path);
            (s, v, "method_not_allowed")
        },
        {
            let (s, v) = post(&ctl, hb_path, "{\"nodeId\": ");
            (s, v, "bad_json")
        },
        {
            let (s, v) = post(&ctl, hb_path, r#"{"wsUrl":"ws://a","weight":1}"#);
            (s, v, "invalid_heartbeat")
        },
        {
            let (s, v) = post(
                &ctl,
                hb_path,
                r#"{"nodeId":"a","wsUrl":"ws://a","weight":0}"#,
            );
            (s, v, "invalid_field")
        },
        {
            let (s, v) = post(
                &ctl,
                hb_path,
                r#"{"nodeId":"ghost","wsUrl":"ws://a","weight":1,"draining":true}"#,
            );
            (s, v, "unknown_node")
        },
        {
            let (s, v) = get_json(&ctl, "/api/v1/resolve");
            (s, v, "missing_user_id")
        },
        {
            let (s, v) = get_json(&ctl, "/api/v1/resolve?userId=%3Cscript%3E");
            (s, v, "invalid_user_id")
        },
        {
            let (s, v) = get_json(&ctl, "/api/v1/connect?userId=alice");
            (s, v, "no_nodes")
        },
        {
            let (s, v) = get_json(&ctl, "/api/v1/connect?userId=alice&resume=garbage");
            (s, v, "resume_refused")
        },
    ];
    for (status, v, code) in &cases {
        assert!((400..600).contains(status), "{code}: {status}");
        assert_eq!(v["error"], *code, "{v}");
        assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    }
    // Oversized bodies: by Content-Length, and chunked with no length.
    let big = vec![b' '; 200 * 1024];
    let (status, body) = request(
        &ctl,
        &format!(
            "POST {hb_path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
            big.len()
        ),
        &big,
    );
    assert_eq!(status, 413);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["error"],
        "body_too_large"
    );
    let mut chunked = Vec::new();
    for _ in 0..20 {
        chunked.extend_from_slice(format!("{:x}\r\n", 8192).as_bytes());
        chunked.extend_from_slice(&[b' '; 8192]);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let (status, _) = request(
        &ctl,
        &format!(
            "POST {hb_path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n"
        ),
        &chunked,
    );
    assert_eq!(status, 413);
    // Garbage that is not HTTP, and a connection that closes mid-request.
    let (status, _) = request(&ctl, "\x16\x03\x01garbage\r\n\r\n", b"");
    assert!(status == 0 || (400..500).contains(&status), "{status}");
    drop(
        TcpStream::connect(ctl.http)
            .unwrap()
            .write_all(b"POST /api/v1/nodes/heartbeat HTTP/1.1\r\nContent-Length: 50\r\n\r\n{"),
    );
    // Still serving, with every refusal counted.
    assert_eq!(get_json(&ctl, "/health").0, 200);
    assert!(
        metric(
            &ctl,
            "rtc_lb_requests_refused_total{error=\"body_too_large\"}"
        ) >= 2.0
    );
    assert_eq!(metric(&ctl, "rtc_lb_ring_version"), 0.0);
}

#[test]
fn nodes_join_by_heartbeat_and_leave_by_draining_and_by_grace() {
    let ctl = ctl(&["--heartbeat-grace-secs", "0.6"]);
    let c = client(&ctl);
    for id in ["a", "b", "c"] {
        c.heartbeat(&hb(id)).unwrap();
    }
    let r = ring_of(&ctl);
    assert_eq!((r.version, ids(&r)), (3, vec!["a", "b", "c"]));

    // b drains: it leaves at once, and its later draining heartbeats are fine.
    let mut drain = hb("b");
    drain.draining = true;
    let reply = c.heartbeat(&drain).unwrap();
    assert!(!reply.member);
    assert_eq!(reply.ring_version, 4);
    assert!(!c.heartbeat(&drain).unwrap().member);
    let r = ring_of(&ctl);
    assert_eq!((r.version, ids(&r)), (4, vec!["a", "c"]));

    // a keeps heartbeating, c goes silent: c leaves after the grace period.
    let t0 = Instant::now();
    let left = eventually(Duration::from_secs(5), || {
        c.heartbeat(&hb("a")).unwrap();
        ring_of(&ctl).nodes.len() == 1
    });
    assert!(left, "c never expired");
    let waited = t0.elapsed();
    assert!(
        waited >= Duration::from_millis(500),
        "expired early: {waited:?}"
    );
    let r = ring_of(&ctl);
    assert_eq!((r.version, ids(&r)), (5, vec!["a"]));
    assert_eq!(metric(&ctl, "rtc_lb_ring_changes_total"), 5.0);

    // A new weight is a new version.
    let mut heavy = hb("a");
    heavy.weight = 3.0;
    assert_eq!(c.heartbeat(&heavy).unwrap().ring_version, 6);
    assert_eq!(ring_of(&ctl).nodes[0].weight, 3.0);
}

#[test]
fn ring_versions_never_go_down_across_a_restart() {
    let dir = temp_dir("restart");
    let state = dir.join("ctl-state.json");
    let state_arg = state.to_str().unwrap();
    let mut first = ctl(&["--state-file", state_arg, "--heartbeat-grace-secs", "30"]);
    let c = client(&first);
    c.heartbeat(&hb("a")).unwrap();
    c.heartbeat(&hb("b")).unwrap();
    assert_eq!(ring_of(&first).version, 2);
    first.kill().unwrap();

    // Same state file: the same ring at once, and the next change above it.
    let second = ctl(&["--state-file", state_arg, "--heartbeat-grace-secs", "30"]);
    let r = ring_of(&second);
    assert_eq!((r.version, ids(&r)), (2, vec!["a", "b"]));
    let c = client(&second);
    assert_eq!(
        c.heartbeat(&hb("a")).unwrap().ring_version,
        2,
        "a known member: no change"
    );
    assert_eq!(c.heartbeat(&hb("c")).unwrap().ring_version, 3);
    drop(second);

    // The state file lost (a new path): a node that has version 3 makes the
    // new control plane publish above it.
    let third = ctl(&["--state-file", dir.join("other.json").to_str().unwrap()]);
    let c = client(&third);
    let mut a = hb("a");
    a.ring_version = 3;
    assert_eq!(c.heartbeat(&a).unwrap().ring_version, 4);
    let mut b = hb("b");
    b.ring_version = 9;
    assert_eq!(c.heartbeat(&b).unwrap().ring_version, 10);
    let r = ring_of(&third);
    assert_eq!((r.version, ids(&r)), (10, vec!["a", "b"]));
    drop(third);
    let persisted: RingConfig =
        serde_json::from_slice(&std::fs::read(dir.join("other.json")).unwrap()).unwrap();
    assert_eq!(persisted.version, 10);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_connect_token_opens_a_session_on_a_node_with_jwt_auth() {
    let node = Node::start(&["--auth", "jwt", "--node-id", "jwt-node"]);
    let ctl = ctl(&[]);
    let mut me = hb("jwt-node");
    me.ws_url = format!("ws://{}/ws", node.ws);
    client(&ctl).heartbeat(&me).unwrap();
    let (status, k) = get_json(&ctl, "/api/v1/connect?userId=alice");
    assert_eq!(status, 200, "{k}");
    assert_eq!(k["wsUrl"], me.ws_url.as_str());
    let token = k["token"].as_str().unwrap();
    let (mut alice, welcome) = {
        let mut c = node
            .connect_query(&format!("userId=alice&token={token}"))
            .expect("upgrade");
        let w = c.recv();
        (c, w)
    };
    assert_eq!(welcome["type"], "welcome");
    assert_eq!(welcome["userId"], "alice");
    // A token for alice is not bob's.
    assert!(node
        .connect_query(&format!("userId=bob&token={token}"))
        .is_err());
    // Resume through connect: the node's own token passes.
    let resume = welcome["resumeToken"].as_str().unwrap();
    let (status, k) = get_json(
        &ctl,
        &format!("/api/v1/connect?userId=alice&resume={resume}"),
    );
    assert_eq!(status, 200, "{k}");
    assert_eq!(k["resumeToken"], resume);
    drop(alice.ws.close(None));
}

#[test]
fn the_client_follows_ring_versions_and_keeps_the_last_when_ctl_is_down() {
    let mut ctl = ctl(&["--heartbeat-grace-secs", "5"]);
    let rings: Arc<Mutex<Vec<RingConfig>>> = Arc::default();
    let seen = Arc::clone(&rings);
    let follower = RingFollower::spawn(
        client(&ctl),
        Duration::from_millis(50),
        0,
        || hb("follower"),
        || false,
        move |ring| seen.lock().unwrap().push(ring),
    );
    assert!(eventually(Duration::from_secs(5), || follower.version() == 1));
    client(&ctl).heartbeat(&hb("other")).unwrap();
    assert!(eventually(Duration::from_secs(5), || follower.version() == 2));
    {
        let rings = rings.lock().unwrap();
        let versions: Vec<u64> = rings.iter().map(|r| r.version).collect();
        assert_eq!(versions, [1, 2]);
        assert_eq!(rings[1].nodes.len(), 2);
    }
    // The heartbeat carries the version the follower has.
    let (_, r) = get_json(&ctl, "/api/v1/ring");
    assert_eq!(r["version"], 2);
    ctl.kill().unwrap();
    thread::sleep(Duration::from_millis(300));
    assert_eq!(follower.version(), 2, "the last ring is kept");
    assert!(matches!(
        client(&ctl).ring_config(),
        Err(ClientError::Transport(_))
    ));
    follower.stop();
    assert_eq!(rings.lock().unwrap().len(), 2);
}

#[test]
fn ctl_refuses_bad_configuration_and_stops_on_sigterm() {
    let out = ctl_command(&["--heartbeat-grace-secs", "0"])
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("heartbeat-grace-secs"));
    let dir = temp_dir("badstate");
    std::fs::write(dir.join("s.json"), "{not json").unwrap();
    let out = ctl_command(&["--state-file", dir.join("s.json").to_str().unwrap()])
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a ring snapshot"));
    let _ = std::fs::remove_dir_all(&dir);
    let mut ctl = ctl(&[]);
    let status = ctl.terminate(Duration::from_secs(5)).unwrap();
    assert!(status.success(), "{status}");
}

#[test]
fn resolve_agrees_with_the_ring_at_the_default_slot_count() {
    let mut command = Command::new(env!("CARGO_BIN_EXE_shardcast-ctl"));
    // A debug build takes a second per change at this M: a long grace.
    command
        .args(["--listen", "127.0.0.1:0", "--heartbeat-grace-secs", "60"])
        .env("SHARDCAST_SECRET", SECRET)
        .env("RUST_LOG", "warn")
        .stderr(Stdio::inherit());
    let ctl = CtlProcess::start(command).expect("start shardcast-ctl");
    let c = client(&ctl);
    for (id, weight) in [("n1", 1.0), ("n2", 2.0), ("n3", 0.5)] {
        let mut beat = hb(id);
        beat.weight = weight;
        c.heartbeat(&beat).unwrap();
    }
    let ring = c.ring().unwrap().expect("three nodes");
    assert_eq!((ring.version(), ring.slots()), (3, 1 << 20));
    for i in 0..300 {
        let user = format!("u{i}@example.com");
        let (status, r) = get_json(&ctl, &format!("/api/v1/resolve?userId={user}"));
        assert_eq!(status, 200);
        assert_eq!(r["nodeId"], ring.lookup(&user).id.as_str(), "{user}");
    }
}
