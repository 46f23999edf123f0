//! Auth at the upgrade (`--auth jwt`, `--allowed-origins`), refresh and
//! expiry, and room permissions from claims (`--rooms-policy claims`),
//! through a stock WebSocket client against the real binary.

mod common;

use std::{
    net::TcpStream,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use common::{close_code, node_command, Client, Ended, Node};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use tungstenite::{
    client::IntoClientRequest,
    http::{HeaderName, HeaderValue},
    stream::MaybeTlsStream,
};

const JWT_SECRET: &str = "integration-jwt-secret-0123456789";
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/jwt");

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn hs256(claims: &Value) -> String {
    sign(
        Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
}

fn es256(kid: &str, private: &str, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(kid.into());
    let pem = std::fs::read(format!("{FIXTURES}/private/{private}.pem")).unwrap();
    sign(header, claims, &EncodingKey::from_ec_pem(&pem).unwrap())
}

fn sign(header: Header, claims: &Value, key: &EncodingKey) -> String {
    jsonwebtoken::encode(&header, claims, key).unwrap()
}

/// Claims for `sub`, valid for 10 minutes, for audience `shardcast`.
fn claims(sub: &str) -> Value {
    json!({"sub": sub, "exp": now() + 600, "aud": "shardcast"})
}

fn with(mut base: Value, extra: Value) -> Value {
    for (k, v) in extra.as_object().unwrap() {
        base[k] = v.clone();
    }
    base
}

/// A node with `--auth jwt`: HS256 under `SHARDCAST_JWT_SECRET`, the fixture
/// public keys (kids `es-a`, `es-b`, `rs-a`), audience `shardcast`, and
/// two allowed origins.
fn jwt_node(extra: &[&str]) -> Node {
    let keys = format!("{FIXTURES}/public");
    let mut command = node_command(&[
        "--auth",
        "jwt",
        "--jwt-public-key",
        &keys,
        "--jwt-audience",
        "shardcast",
        "--allowed-origins",
        "https://app.example.com,*.example.org",
    ]);
    command.args(extra).env("SHARDCAST_JWT_SECRET", JWT_SECRET);
    Node::from_command(command)
}

/// What an upgrade attempt got: a client, or the HTTP refusal.
enum Upgrade {
    Open(Box<Client>),
    Refused { status: u16, body: Value },
}

/// Upgrades `/ws?{query}` with extra request `headers`.
fn upgrade(node: &Node, query: &str, headers: &[(&str, &str)]) -> Upgrade {
    let stream = TcpStream::connect(node.ws).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut request = format!("ws://{}/ws?{query}", node.ws)
        .into_client_request()
        .unwrap();
    for (k, v) in headers {
        request.headers_mut().insert(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    match tungstenite::client(request, MaybeTlsStream::Plain(stream)) {
        Ok((ws, _)) => Upgrade::Open(Box::new(Client { ws })),
        Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Http(response))) => {
            let status = response.status().as_u16();
            let body = response.body().as_deref().unwrap_or_default();
            let body = serde_json::from_slice(body).unwrap_or(Value::Null);
            Upgrade::Refused { status, body }
        }
        Err(e) => panic!("upgrade failed unexpectedly: {e}"),
    }
}

/// Upgrades and reads the `welcome`; panics if refused.
fn open(node: &Node, query: &str, headers: &[(&str, &str)]) -> (Client, Value) {
    match upgrade(node, query, headers) {
        Upgrade::Open(mut c) => {
            let welcome = c.recv();
            assert_eq!(welcome["type"], "welcome", "{welcome}");
            (*c, welcome)
        }
        Upgrade::Refused { status, body } => panic!("refused {status}: {body}"),
    }
}

/// Asserts the upgrade is refused with `status` and JSON `error` code.
fn assert_refused(node: &Node, query: &str, headers: &[(&str, &str)], status: u16, error: &str) {
    match upgrade(node, query, headers) {
        Upgrade::Open(_) => panic!("{query}: accepted, expected {status} {error}"),
        Upgrade::Refused { status: got, body } => {
            assert_eq!(got, status, "{query}: {body}");
            assert_eq!(body["error"], error, "{query}: {body}");
            assert!(body["message"].is_string(), "{body}");
        }
    }
}

fn failures(node: &Node, reason: &str) -> f64 {
    node.metric(&format!(
        "rtc_socket_auth_failures_total{{reason=\"{reason}\"}}"
    ))
}

#[test]
fn a_valid_token_in_the_query_names_the_user() {
    let node = jwt_node(&[]);
    let (_, welcome) = open(&node, &format!("token={}", hs256(&claims("alice"))), &[]);
    assert_eq!(welcome["userId"], "alice");
    let (_, welcome) = open(
        &node,
        &format!("userId=bob&token={}", hs256(&claims("bob"))),
        &[],
    );
    assert_eq!(welcome["userId"], "bob");
}

#[test]
fn the_authorization_header_is_accepted() {
    let node = jwt_node(&[]);
    let bearer = format!("Bearer {}", hs256(&claims("carol")));
    let (_, welcome) = open(&node, "userId=carol", &[("Authorization", &bearer)]);
    assert_eq!(welcome["userId"], "carol");
}

#[test]
fn a_missing_token_is_401() {
    let node = jwt_node(&[]);
    assert_refused(&node, "userId=alice", &[], 401, "missing_token");
    assert_eq!(failures(&node, "missing_token"), 1.0);
}

#[test]
fn a_forged_signature_is_401() {
    let node = jwt_node(&[]);
    let forged = sign(
        Header::new(Algorithm::HS256),
        &claims("alice"),
        &EncodingKey::from_secret(b"not-the-secret-at-all-0123456789"),
    );
    assert_refused(&node, &format!("token={forged}"), &[], 401, "bad_signature");
    // A key whose public half the node does not have, under a kid it has.
    let other = es256("es-a", "es-unknown", &claims("alice"));
    assert_refused(&node, &format!("token={other}"), &[], 401, "bad_signature");
    assert_eq!(failures(&node, "bad_signature"), 2.0);
}

#[test]
fn a_wrong_algorithm_is_401() {
    let node = jwt_node(&[]);
    let hs384 = sign(
        Header::new(Algorithm::HS384),
        &claims("alice"),
        &EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    );
    assert_refused(&node, &format!("token={hs384}"), &[], 401, "bad_algorithm");
    // HS256 "signed" with the RSA public key as the secret: on a node with
    // public keys only, HS256 is off.
    let pem = std::fs::read(format!("{FIXTURES}/public/rs-a.pem")).unwrap();
    let confused = sign(
        Header::new(Algorithm::HS256),
        &claims("alice"),
        &EncodingKey::from_secret(&pem),
    );
    let keys = format!("{FIXTURES}/public");
    let public_only = Node::start(&["--auth", "jwt", "--jwt-public-key", &keys]);
    assert_refused(
        &public_only,
        &format!("token={confused}"),
        &[],
        401,
        "bad_algorithm",
    );
    assert_refused(
        &node,
        &format!("token={confused}"),
        &[],
        401,
        "bad_signature",
    );
}

#[test]
fn alg_none_is_401() {
    use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
    let node = jwt_node(&[]);
    let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(claims("alice").to_string());
    assert_refused(
        &node,
        &format!("token={header}.{payload}."),
        &[],
        401,
        "bad_algorithm",
    );
}

#[test]
fn expired_and_not_yet_valid_tokens_are_401() {
    let node = jwt_node(&[]);
    let expired = hs256(&with(claims("alice"), json!({"exp": now() - 120})));
    assert_refused(&node, &format!("token={expired}"), &[], 401, "expired");
    let early = hs256(&with(claims("alice"), json!({"nbf": now() + 600})));
    assert_refused(&node, &format!("token={early}"), &[], 401, "not_yet_valid");
    assert_eq!(failures(&node, "expired"), 1.0);
    assert_eq!(failures(&node, "not_yet_valid"), 1.0);
}

#[test]
fn a_wrong_audience_is_401() {
    let node = jwt_node(&[]);
    let other = hs256(&with(claims("alice"), json!({"aud": "another-service"})));
    assert_refused(&node, &format!("token={other}"), &[], 401, "bad_audience");
    let none = hs256(&json!({"sub": "alice", "exp": now() + 600}));
    assert_refused(&node, &format!("token={none}"), &[], 401, "bad_audience");
}

#[test]
fn a_sub_other_than_user_id_is_401() {
    let node = jwt_node(&[]);
    let token = hs256(&claims("alice"));
    assert_refused(
        &node,
        &format!("userId=bob&token={token}"),
        &[],
        401,
        "user_mismatch",
    );
}

#[test]
fn keys_rotate_by_kid() {
    let node = jwt_node(&[]);
    for (kid, user) in [("es-a", "u-a"), ("es-b", "u-b")] {
        let token = es256(kid, kid, &claims(user));
        let (_, welcome) = open(&node, &format!("token={token}"), &[]);
        assert_eq!(welcome["userId"], user, "{kid}");
    }
    let unknown = es256("es-retired", "es-a", &claims("alice"));
    assert_refused(&node, &format!("token={unknown}"), &[], 401, "unknown_key");
}

#[test]
fn a_disallowed_origin_is_403_and_allowed_ones_connect() {
    let node = jwt_node(&[]);
    let query = format!("token={}", hs256(&claims("alice")));
    assert_refused(
        &node,
        &query,
        &[("Origin", "https://evil.example.com")],
        403,
        "origin_not_allowed",
    );
    assert_refused(
        &node,
        &query,
        &[("Origin", "null")],
        403,
        "origin_not_allowed",
    );
    open(&node, &query, &[("Origin", "https://app.example.com")]);
    open(&node, &query, &[("Origin", "https://shop.example.org")]);
    // No Origin: not a browser.
    open(&node, &query, &[]);
    assert_eq!(failures(&node, "origin_not_allowed"), 2.0);
}

#[test]
fn without_allowed_origins_every_origin_connects() {
    let node = Node::start(&[]);
    match upgrade(
        &node,
        "userId=alice",
        &[("Origin", "https://anywhere.test")],
    ) {
        Upgrade::Open(mut c) => assert_eq!(c.recv()["type"], "welcome"),
        Upgrade::Refused { status, body } => panic!("{status} {body}"),
    }
}

/// Sends `{"type":"refresh","token":…,"id":…}`.
fn refresh(c: &mut Client, token: &str, id: &str) {
    let mut out = Vec::new();
    shardcast::protocol::client::encode_refresh(&mut out, token, Some(id));
    c.send_text(std::str::from_utf8(&out).unwrap());
}

#[test]
fn a_refresh_before_exp_keeps_the_connection() {
    let node = jwt_node(&["--jwt-leeway-secs", "0"]);
    let short = hs256(&with(claims("alice"), json!({"exp": now() + 2})));
    let (mut c, _) = open(&node, &format!("token={short}"), &[]);
    refresh(&mut c, &hs256(&claims("alice")), "r1");
    let ack = c.recv();
    assert_eq!(
        (ack["type"].as_str(), ack["id"].as_str()),
        (Some("ack"), Some("r1")),
        "{ack}"
    );
    // A refresh for another user is refused and changes nothing.
    refresh(&mut c, &hs256(&claims("mallory")), "r2");
    let err = c.recv();
    assert_eq!(err["code"], "refresh_refused", "{err}");
    assert_eq!(err["id"], "r2");
    std::thread::sleep(Duration::from_secs(4));
    c.join("chat.lobby", "j1");
    let ack = c.recv();
    assert_eq!(ack["id"], "j1", "still open after the first exp: {ack}");
    assert_eq!(failures(&node, "user_mismatch"), 1.0);
}

#[test]
fn without_a_refresh_the_connection_closes_with_4003() {
    let node = jwt_node(&["--jwt-leeway-secs", "0"]);
    let short = hs256(&with(claims("alice"), json!({"exp": now() + 2})));
    let (mut c, _) = open(&node, &format!("token={short}"), &[]);
    c.set_read_timeout(Duration::from_secs(6));
    let t0 = std::time::Instant::now();
    let (ended, _) = c.recv_until_closed();
    assert_eq!(close_code(&ended), Some(4003), "{ended:?}");
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    if let Ended::Close(Some(f)) = ended {
        assert_eq!(f.reason.as_str(), "token expired");
    }
}

/// A node with `--rooms-policy claims`.
fn claims_node() -> Node {
    jwt_node(&["--rooms-policy", "claims"])
}

fn permitted(sub: &str, rooms: Value, send: bool) -> String {
    hs256(&with(claims(sub), json!({"rooms": rooms, "send": send})))
}

#[test]
fn joins_outside_the_claims_are_forbidden_and_the_connection_stays() {
    let node = claims_node();
    let token = permitted("cust", json!({"join": ["order:7.*", "news"]}), false);
    let (mut c, _) = open(&node, &format!("token={token}"), &[]);
    for (pattern, id, allowed) in [
        ("order:7.status", "j1", true),
        ("order:7.*", "j2", true),
        ("order:8.status", "j3", false),
        ("*.status", "j4", false),
        ("news", "j5", true),
        ("order:7", "j6", false),
    ] {
        c.join(pattern, id);
        let reply = c.recv();
        assert_eq!(reply["id"], id, "{reply}");
        let want = if allowed { "ack" } else { "error" };
        assert_eq!(reply["type"], want, "{pattern}: {reply}");
        if !allowed {
            assert_eq!(reply["code"], "forbidden", "{reply}");
        }
    }
}

#[test]
fn publishes_and_sends_outside_the_claims_are_forbidden() {
    let node = claims_node();
    let admin = permitted(
        "admin",
        json!({"join": ["*.*"], "publish": ["*.status"]}),
        true,
    );
    let cust = permitted("cust", json!({"join": ["order:7.*"]}), false);
    let (mut a, _) = open(&node, &format!("token={admin}"), &[]);
    let (mut c, _) = open(&node, &format!("token={cust}"), &[]);
    c.join("order:7.status", "j1");
    assert_eq!(c.recv()["type"], "ack");
    // The customer may neither publish nor send; it stays connected.
    c.publish("order:7.status", "p1", json!("x"));
    let err = c.recv();
    assert_eq!(
        (err["code"].as_str(), err["id"].as_str()),
        (Some("forbidden"), Some("p1")),
        "{err}"
    );
    c.send_direct("admin", "s1", json!("hi"));
    let err = c.recv();
    assert_eq!(
        (err["code"].as_str(), err["id"].as_str()),
        (Some("forbidden"), Some("s1")),
        "{err}"
    );
    // The admin may publish to a status room (not elsewhere) and send.
    a.publish("order:7.chat", "p2", json!("x"));
    assert_eq!(a.recv()["code"], "forbidden");
    a.publish("order:7.status", "p3", json!({"state": "shipped"}));
    assert_eq!(a.recv()["type"], "ack");
    let msg = c.recv();
    assert_eq!(
        (msg["room"].as_str(), msg["id"].as_str()),
        (Some("order:7.status"), Some("p3")),
        "{msg}"
    );
    // Receiving direct messages is always allowed.
    a.send_direct("cust", "s2", json!("your order shipped"));
    assert_eq!(a.recv()["type"], "ack");
    let msg = c.recv();
    assert_eq!(
        (msg["from"].as_str(), msg["id"].as_str()),
        (Some("admin"), Some("s2")),
        "{msg}"
    );
}

#[test]
fn a_refresh_with_narrower_claims_drops_uncovered_subscriptions() {
    let node = claims_node();
    let wide = permitted("cust", json!({"join": ["order:7.*", "news"]}), false);
    let narrow = permitted("cust", json!({"join": ["news"]}), false);
    let admin = permitted("admin", json!({"publish": ["*", "*.*"]}), false);
    let (mut c, _) = open(&node, &format!("token={wide}"), &[]);
    let (mut a, _) = open(&node, &format!("token={admin}"), &[]);
    c.join("order:7.status", "j1");
    c.join("news", "j2");
    assert_eq!(c.recv()["id"], "j1");
    assert_eq!(c.recv()["id"], "j2");
    refresh(&mut c, &narrow, "r1");
    assert_eq!(c.recv()["id"], "r1");
    a.publish("order:7.status", "p1", json!(1));
    a.publish("news", "p2", json!(2));
    assert_eq!(a.recv()["id"], "p1");
    assert_eq!(a.recv()["id"], "p2");
    let msg = c.recv();
    assert_eq!(msg["id"], "p2", "the order room was dropped: {msg}");
}

#[test]
fn auth_and_claims_need_their_knobs() {
    // --rooms-policy claims without --auth jwt; --auth jwt with no key at all.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_shardcast-node"))
        .args(["--rooms-policy", "claims"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("rooms-policy"));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_shardcast-node"))
        .args(["--auth", "jwt"])
        .env_remove("SHARDCAST_SECRET")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("needs a key"));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_shardcast-node"))
        .args(["--auth", "jwt", "--allowed-origins", "example.com"])
        .env("SHARDCAST_SECRET", common::SECRET)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("allowed-origins"));
}

#[test]
fn the_cluster_secret_signs_hs256_when_no_public_key_is_given() {
    let node = Node::start(&["--auth", "jwt"]);
    let token = sign(
        Header::new(Algorithm::HS256),
        &json!({"sub": "alice", "exp": now() + 60}),
        &EncodingKey::from_secret(common::SECRET.as_bytes()),
    );
    let (_, welcome) = open(&node, &format!("token={token}"), &[]);
    assert_eq!(welcome["userId"], "alice");
}
