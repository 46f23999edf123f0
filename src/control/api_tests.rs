//! Every route and every refusal of the API, without sockets (the same
//! cases run against the real binary in tests/control.rs).

use std::time::Duration;

use serde_json::Value;

use super::*;
use crate::{
    auth::{JwtSettings, JwtVerifier},
    control::{
        membership::Membership,
        scaling::ScalingParams,
        service::{unix_now, Signing},
    },
    ring::{Ring, RingConfig},
    token::ResumeToken,
};

const SECRET: &[u8] = b"api-test-secret-0123456789";

fn control() -> Control {
    let membership = Membership::new(256, Duration::from_secs(30), 0, Box::new(|_| Ok(())));
    let scaling = ScalingParams {
        alpha: 1.25,
        beta: 1.25,
        gamma: 1.0,
        delta: 1.0,
        conn_per_node: 500_000.0,
        mps_per_node: 200_000.0,
        latency_slo_ms: 50.0,
        min_interval: Duration::from_secs(60),
        max_step: 2,
    };
    let signing = Signing {
        jwt_key: SECRET.to_vec(),
        secret: SECRET.to_vec(),
        token_ttl_secs: 300,
        resume_ttl_secs: 3600,
        issuer: None,
        audience: None,
    };
    Control::new(membership, scaling, signing, None)
}

fn call(c: &Control, method: &str, target: &str, body: &str) -> (u16, Value) {
    let r = handle(
        c,
        &ApiRequest {
            method,
            target,
            body: body.as_bytes(),
        },
    );
    let v = if r.content_type == "application/json" {
        serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("{e}: {}", r.body))
    } else {
        Value::String(r.body.clone())
    };
    (r.status, v)
}

fn beat(c: &Control, id: &str, extra: &str) -> (u16, Value) {
    let body = format!(r#"{{"nodeId":"{id}","wsUrl":"ws://{id}.test:8080/ws","weight":1{extra}}}"#);
    call(c, "POST", "/api/v1/nodes/heartbeat", &body)
}

#[test]
fn heartbeat_ring_resolve_and_connect_agree_with_the_ring() {
    let c = control();
    assert_eq!(beat(&c, "a", "").0, 200);
    let (status, reply) = beat(&c, "b", r#","zone":"z2""#);
    assert_eq!(status, 200);
    assert_eq!(reply, serde_json::json!({"member": true, "ringVersion": 2}));
    let (_, ring) = call(&c, "GET", "/api/v1/ring", "");
    let snapshot: RingConfig = serde_json::from_value(ring).unwrap();
    assert_eq!(snapshot.version, 2);
    assert_eq!(snapshot.slots, 256);
    let ring = Ring::new(snapshot).unwrap();
    assert_eq!(ring.node("b").unwrap().zone, "z2");
    for user in ["alice", "bob", "carol@example.com", "urn:x:1", "d-e_f.g+h="] {
        let q: String = form_urlencoded::byte_serialize(user.as_bytes()).collect();
        let (status, r) = call(&c, "GET", &format!("/api/v1/resolve?userId={q}"), "");
        assert_eq!(status, 200, "{r}");
        let owner = ring.lookup(user);
        assert_eq!(r["userId"], user);
        assert_eq!(r["nodeId"], owner.id.as_str());
        assert_eq!(r["wsUrl"], owner.addr.as_str());
        assert_eq!(r["ringVersion"], 2);
        let (status, k) = call(&c, "GET", &format!("/api/v1/connect?userId={q}"), "");
        assert_eq!(status, 200, "{k}");
        assert_eq!(k["wsUrl"], owner.addr.as_str());
        assert!(k.get("resumeToken").is_none());
        let verifier = JwtVerifier::new(JwtSettings {
            hs256_secret: Some(SECRET.to_vec()),
            ..JwtSettings::default()
        });
        let grant = verifier
            .verify_for(k["token"].as_str().unwrap(), Some(user), unix_now())
            .unwrap();
        assert_eq!(grant.expires_at, k["expiresAt"].as_u64().unwrap());
    }
}

#[test]
fn connect_passes_a_valid_resume_token_and_refuses_a_bad_one() {
    let c = control();
    beat(&c, "a", "");
    let token = ResumeToken {
        user_id: "alice".into(),
        offset: 12,
        issued_at: unix_now(),
    }
    .sign(SECRET);
    let (status, k) = call(
        &c,
        "GET",
        &format!("/api/v1/connect?userId=alice&resume={token}"),
        "",
    );
    assert_eq!(status, 200);
    assert_eq!(k["resumeToken"], token.as_str());
    let (status, e) = call(
        &c,
        "GET",
        &format!("/api/v1/connect?userId=bob&resume={token}"),
        "",
    );
    assert_eq!((status, e["error"].as_str()), (400, Some("resume_refused")));
    let forged = ResumeToken {
        user_id: "alice".into(),
        offset: 12,
        issued_at: unix_now(),
    }
    .sign(b"another-secret-0123456789");
    let (status, e) = call(
        &c,
        "GET",
        &format!("/api/v1/connect?userId=alice&resume={forged}"),
        "",
    );
    assert_eq!((status, e["error"].as_str()), (400, Some("resume_refused")));
}

#[test]
fn every_bad_request_is_a_json_refusal() {
    let c = control();
    let cases: &[(&str, &str, &str, u16, &str)] = &[
        ("GET", "/nope", "", 404, "not_found"),
        (
            "GET",
            "/api/v1/nodes/heartbeat",
            "",
            405,
            "method_not_allowed",
        ),
        ("POST", "/api/v1/ring", "", 405, "method_not_allowed"),
        ("DELETE", "/health", "", 405, "method_not_allowed"),
        ("POST", "/api/v1/nodes/heartbeat", "", 400, "bad_json"),
        (
            "POST",
            "/api/v1/nodes/heartbeat",
            "{\"nodeId\":",
            400,
            "bad_json",
        ),
        (
            "POST",
            "/api/v1/nodes/heartbeat",
            "{}",
            400,
            "invalid_heartbeat",
        ),
        (
            "POST",
            "/api/v1/nodes/heartbeat",
            r#"{"nodeId":"a","wsUrl":"ws://a","weight":"heavy"}"#,
            400,
            "invalid_heartbeat",
        ),
        (
            "POST",
            "/api/v1/nodes/heartbeat",
            r#"{"nodeId":"a","wsUrl":"http://a","weight":1}"#,
            400,
            "invalid_field",
        ),
        (
            "POST",
            "/api/v1/nodes/heartbeat",
            r#"{"nodeId":"ghost","wsUrl":"ws://a","weight":1,"draining":true}"#,
            404,
            "unknown_node",
        ),
        ("GET", "/api/v1/resolve", "", 400, "missing_user_id"),
        (
            "GET",
            "/api/v1/resolve?user=alice",
            "",
            400,
            "missing_user_id",
        ),
        ("GET", "/api/v1/resolve?userId=", "", 400, "invalid_user_id"),
        (
            "GET",
            "/api/v1/resolve?userId=a%20b",
            "",
            400,
            "invalid_user_id",
        ),
        (
            "GET",
            "/api/v1/resolve?userId=%C3%A9",
            "",
            400,
            "invalid_user_id",
        ),
        (
            "GET",
            "/api/v1/connect?userId=a/b",
            "",
            400,
            "invalid_user_id",
        ),
        ("GET", "/api/v1/resolve?userId=alice", "", 503, "no_nodes"),
        ("GET", "/api/v1/connect?userId=alice", "", 503, "no_nodes"),
    ];
    for &(method, target, body, status, code) in cases {
        let (got, v) = call(&c, method, target, body);
        assert_eq!(
            (got, v["error"].as_str()),
            (status, Some(code)),
            "{method} {target} {body}: {v}"
        );
        assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    let long = "u".repeat(129);
    let (status, _) = call(&c, "GET", &format!("/api/v1/resolve?userId={long}"), "");
    assert_eq!(status, 400);
    let metrics = call(&c, "GET", "/metrics", "").1;
    assert!(metrics
        .as_str()
        .unwrap()
        .contains("rtc_lb_requests_refused_total{error=\"invalid_user_id\"} 5"));
}

#[test]
fn scaling_health_and_metrics_report_the_state() {
    let c = control();
    let (_, s) = call(&c, "GET", "/api/v1/scaling", "");
    assert_eq!(s["target"], Value::Null);
    assert_eq!(s["params"]["maxStep"], 2);
    assert_eq!(s["params"]["minIntervalSecs"], 60.0);
    beat(&c, "a", r#","connections":1000000,"mps":10,"p95Ms":3"#);
    c.tick();
    let (_, s) = call(&c, "GET", "/api/v1/scaling", "");
    assert_eq!(s["target"], 1, "the node count during the first window");
    assert_eq!(s["inputs"]["totalConnections"], 1_000_000);
    assert_eq!(s["demand"]["rConn"], 3);
    assert_eq!(s["history"], serde_json::json!([]));
    let (status, h) = call(&c, "GET", "/health", "");
    assert_eq!(
        (status, h["status"].as_str(), h["nodes"].as_u64()),
        (200, Some("ok"), Some(1))
    );
    let m = call(&c, "GET", "/metrics", "").1;
    let m = m.as_str().unwrap();
    for line in [
        "rtc_lb_ring_nodes 1",
        "rtc_lb_ring_version 1",
        "rtc_lb_scaling_target 1",
        "rtc_lb_heartbeats_received_total 1",
        "rtc_lb_ring_changes_total 1",
    ] {
        assert!(m.lines().any(|l| l == line), "{line} in\n{m}");
    }
}

#[test]
fn a_reported_node_leaves_the_ring_only_when_its_port_refuses() {
    let c = control();
    let live = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_addr = dead.local_addr().unwrap();
    drop(dead);
    for (id, addr) in [("live", live.local_addr().unwrap()), ("dead", dead_addr)] {
        let body = format!(r#"{{"nodeId":"{id}","wsUrl":"ws://{addr}/ws","weight":1}}"#);
        assert_eq!(call(&c, "POST", "/api/v1/nodes/heartbeat", &body).0, 200);
    }
    let version = |c: &Control| c.ring().unwrap().version();
    assert_eq!(version(&c), 2);

    // A live node reported by a client stays; so do unknown ids.
    let (status, _) = call(&c, "GET", "/api/v1/connect?userId=u1&unreachable=live", "");
    assert_eq!(status, 200);
    let (status, _) = call(&c, "GET", "/api/v1/connect?userId=u1&unreachable=nope", "");
    assert_eq!(status, 200);
    assert_eq!(version(&c), 2);

    // A user of the dead node is answered with its new owner at once.
    let user = (0..)
        .map(|i| format!("user{i}"))
        .find(|u| c.resolve(u).unwrap().node_id == "dead")
        .unwrap();
    let (status, reply) = call(
        &c,
        "GET",
        &format!("/api/v1/connect?userId={user}&unreachable=dead"),
        "",
    );
    assert_eq!(status, 200);
    assert_eq!(reply["nodeId"], "live");
    assert_eq!(reply["ringVersion"], 3);
    assert_eq!(version(&c), 3);
    assert!(c.ring().unwrap().node("dead").is_none());

    let (_, metrics) = call(&c, "GET", "/metrics", "");
    let metrics = metrics.as_str().unwrap();
    for line in [
        "rtc_lb_unreachable_reports_total{outcome=\"alive\"} 1",
        "rtc_lb_unreachable_reports_total{outcome=\"not_member\"} 1",
        "rtc_lb_unreachable_reports_total{outcome=\"dead\"} 1",
    ] {
        assert!(metrics.contains(line), "{line} in {metrics}");
    }
    // The dead node comes back: its heartbeat makes it a member again.
    let body = format!(r#"{{"nodeId":"dead","wsUrl":"ws://{dead_addr}/ws","weight":1}}"#);
    assert_eq!(call(&c, "POST", "/api/v1/nodes/heartbeat", &body).0, 200);
    assert_eq!(version(&c), 4);
}

fn heartbeat_of(id: &str) -> crate::control::heartbeat::Heartbeat {
    let body = format!(r#"{{"nodeId":"{id}","wsUrl":"ws://{id}.test:8080/ws","weight":1}}"#);
    crate::control::heartbeat::Heartbeat::parse(body.as_bytes()).unwrap()
}

#[test]
fn silence_expires_a_node_only_while_the_control_plane_could_hear() {
    // Grace 30 s; housekeeping every 3 s in this replay.
    let c = control();
    let t0 = std::time::Instant::now();
    let at = |s: u64| t0 + Duration::from_secs(s);
    let members = |c: &Control| c.ring().map_or(0, |r| r.nodes().len());
    for id in ["a", "b", "c"] {
        c.heartbeat_at(&heartbeat_of(id), t0).unwrap();
    }
    // "c" falls silent while the others beat: it leaves after the grace.
    let mut t = 0;
    while t < 33 {
        t += 3;
        c.heartbeat_at(&heartbeat_of("a"), at(t)).unwrap();
        c.heartbeat_at(&heartbeat_of("b"), at(t)).unwrap();
        c.tick_at(at(t));
    }
    assert_eq!(members(&c), 2);
    assert!(c.ring().unwrap().node("c").is_none());

    // Nothing heard from anyone for a grace period, with passes running:
    // our deafness, not two deaths at once. Nobody leaves.
    while t < 75 {
        t += 3;
        c.tick_at(at(t));
    }
    assert_eq!(members(&c), 2, "all members silent at once expire nobody");

    // The process was not scheduled for longer than half a grace: the
    // members get a fresh grace period instead of expiring.
    c.heartbeat_at(&heartbeat_of("a"), at(t)).unwrap();
    c.heartbeat_at(&heartbeat_of("b"), at(t)).unwrap();
    c.tick_at(at(t + 3));
    t += 3 + 40;
    c.heartbeat_at(&heartbeat_of("a"), at(t)).unwrap();
    c.tick_at(at(t));
    assert_eq!(
        members(&c),
        2,
        "a stall of the control plane expires nobody"
    );
    // From then on "b" is silent while "a" beats: it leaves.
    while members(&c) == 2 {
        assert!(t < 200, "b never expired");
        t += 3;
        c.heartbeat_at(&heartbeat_of("a"), at(t)).unwrap();
        c.tick_at(at(t));
    }
    assert!(c.ring().unwrap().node("a").is_some());
}
