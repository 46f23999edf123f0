//! Handshake auth cost: `node::http::target` (the pure decision over a
//! parsed upgrade request) with `--auth none` against `--auth jwt` with an
//! HS256, ES256 or RS256 token, with `--allowed-origins` on. The request is
//! what a browser sends (Host, Origin, User-Agent, the upgrade headers, a
//! token in the query); parsing the head is the same in every case and is
//! measured apart (`parse_head`).
//!
//! `cargo bench --bench auth`

use std::{
    hint::black_box,
    time::{SystemTime, UNIX_EPOCH},
};

use criterion::{criterion_group, criterion_main, Criterion};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use shardcast::{
    auth::{keys::load_public_keys, AllowedOrigins, JwtSettings, JwtVerifier},
    node::http::{parse_head, target, Gate, Head},
};
use tungstenite::handshake::server::Request;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/jwt");
const SECRET: &[u8] = b"bench-jwt-secret-0123456789abcdef";

fn request_text(query: &str) -> String {
    format!(
        "GET /ws?{query} HTTP/1.1\r\nHost: ws.example.com\r\n\
         User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0\r\n\
         Origin: https://app.example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Accept-Language: en-US,en;q=0.5\r\n\r\n"
    )
}

fn parse(text: &str) -> Request {
    match parse_head(text.as_bytes()) {
        Ok(Head::Complete { request, .. }) => request,
        _ => panic!("not a request"),
    }
}

fn token(header: Header, key: &EncodingKey, now: u64) -> String {
    let claims = serde_json::json!({
        "sub": "user-1234567", "exp": now + 3600, "iat": now, "aud": "shardcast",
        "iss": "https://auth.example.com",
        "rooms": {"join": ["order:1234567.*", "news"], "publish": []}, "send": true
    });
    jsonwebtoken::encode(&header, &claims, key).unwrap()
}

fn handshake(c: &mut Criterion) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let verifier = JwtVerifier::new(JwtSettings {
        hs256_secret: Some(SECRET.to_vec()),
        public_keys: load_public_keys(&[format!("{FIXTURES}/public").into()]).unwrap(),
        issuer: Some("https://auth.example.com".into()),
        audience: Some("shardcast".into()),
        leeway_secs: 30,
    });
    let origins = AllowedOrigins::parse(&["https://app.example.com", "*.example.org"]).unwrap();
    let pem = |name: &str| std::fs::read(format!("{FIXTURES}/private/{name}.pem")).unwrap();
    let with_kid = |alg, kid: &str| {
        let mut h = Header::new(alg);
        h.kid = Some(kid.into());
        h
    };
    let hs = token(
        Header::new(Algorithm::HS256),
        &EncodingKey::from_secret(SECRET),
        now,
    );
    let es = token(
        with_kid(Algorithm::ES256, "es-a"),
        &EncodingKey::from_ec_pem(&pem("es-a")).unwrap(),
        now,
    );
    let rs = token(
        with_kid(Algorithm::RS256, "rs-a"),
        &EncodingKey::from_rsa_pem(&pem("rs-a")).unwrap(),
        now,
    );
    let none_gate = Gate::default();
    let jwt_gate = Gate {
        echo: false,
        jwt: Some(&verifier),
        origins: Some(&origins),
    };

    let mut g = c.benchmark_group("handshake");
    let plain = request_text("userId=user-1234567");
    let req = parse(&plain);
    g.bench_function("parse_head", |b| {
        b.iter(|| parse_head(black_box(plain.as_bytes())).is_ok())
    });
    g.bench_function("target_auth_none", |b| {
        b.iter(|| target(black_box(&req), &none_gate, now).is_ok())
    });
    for (name, token) in [("hs256", &hs), ("es256", &es), ("rs256", &rs)] {
        let req = parse(&request_text(&format!("userId=user-1234567&token={token}")));
        assert!(target(&req, &jwt_gate, now).is_ok(), "{name}");
        g.bench_function(format!("target_jwt_{name}"), |b| {
            b.iter(|| target(black_box(&req), &jwt_gate, now).is_ok())
        });
    }
    g.finish();
}

criterion_group!(benches, handshake);
criterion_main!(benches);
