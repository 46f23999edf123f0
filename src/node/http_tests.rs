//! Tests of `node::http`.

use super::*;
use proptest::prelude::*;

const UPGRADE: &str = "Upgrade: websocket\r\nConnection: Upgrade\r\n\
    Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n";

fn request(path: &str, headers: &str) -> Request {
    let text = format!("GET {path} HTTP/1.1\r\nHost: x\r\n{headers}\r\n");
    match parse_head(text.as_bytes()) {
        Ok(Head::Complete { request, .. }) => request,
        _ => panic!("not a complete head: {text:?}"),
    }
}

const NOW: u64 = 1_800_000_000;

fn open(echo: bool) -> Gate<'static> {
    Gate {
        echo,
        ..Gate::default()
    }
}

fn status(response: &[u8]) -> String {
    String::from_utf8_lossy(response)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn targets_of_well_formed_requests() {
    assert_eq!(
        target(&request("/health", ""), &open(false), NOW),
        Ok(Target::Health)
    );
    let t = target(
        &request("/ws?userId=a%40b&resume=T", UPGRADE),
        &open(false),
        NOW,
    )
    .unwrap();
    assert!(
        matches!(&t, Target::Messaging { user, resume: Some(r), response, grant: None }
            if user == "a@b" && r == "T" && response.starts_with(b"HTTP/1.1 101")),
        "{t:?}"
    );
    assert!(matches!(
        target(&request("/echo", UPGRADE), &open(true), NOW),
        Ok(Target::Echo { .. })
    ));
}

#[test]
fn refusals_say_why() {
    let refused = |path: &str, headers: &str, echo: bool| {
        status(
            &target(&request(path, headers), &open(echo), NOW)
                .unwrap_err()
                .response,
        )
    };
    assert!(refused("/echo", UPGRADE, false).contains("404"));
    assert!(refused("/nope", UPGRADE, true).contains("404"));
    assert!(refused("/ws", UPGRADE, false).contains("400"));
    assert!(refused("/ws?userId=a%20b", UPGRADE, false).contains("400"));
    assert!(refused("/ws?userId=a", "", false).contains("400"));
    assert!(status(&parse_head(b"\x16\x03\x01garbage\r\n\r\n").err().unwrap()).contains("400"));
    let long = format!("GET /ws HTTP/1.1\r\nX: {}", "a".repeat(MAX_REQUEST_BYTES));
    assert!(status(&parse_head(long.as_bytes()).err().unwrap()).contains("431"));
}

const JWT_SECRET: &[u8] = b"http-unit-test-secret-0123456789";

fn verifier() -> &'static JwtVerifier {
    static V: std::sync::OnceLock<JwtVerifier> = std::sync::OnceLock::new();
    V.get_or_init(|| {
        JwtVerifier::new(crate::auth::JwtSettings {
            hs256_secret: Some(JWT_SECRET.to_vec()),
            leeway_secs: 30,
            ..Default::default()
        })
    })
}

fn origins() -> &'static AllowedOrigins {
    static O: std::sync::OnceLock<AllowedOrigins> = std::sync::OnceLock::new();
    O.get_or_init(|| AllowedOrigins::parse(&["https://app.example.com", "*.example.org"]).unwrap())
}

/// `--auth jwt` and `--allowed-origins`.
fn strict() -> Gate<'static> {
    Gate {
        echo: true,
        jwt: Some(verifier()),
        origins: Some(origins()),
    }
}

fn token(sub: &str, exp: u64) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &serde_json::json!({"sub": sub, "exp": exp}),
        &jsonwebtoken::EncodingKey::from_secret(JWT_SECRET),
    )
    .unwrap()
}

fn body(refusal: &Refusal) -> serde_json::Value {
    let text = String::from_utf8_lossy(&refusal.response);
    let (_, body) = text.split_once("\r\n\r\n").unwrap();
    serde_json::from_str(body).unwrap()
}

#[test]
fn a_valid_token_names_the_user() {
    let t = token("alice", NOW + 60);
    for (path, headers) in [
        (format!("/ws?token={t}"), UPGRADE.to_owned()),
        (format!("/ws?userId=alice&token={t}"), UPGRADE.to_owned()),
        (
            "/ws".to_owned(),
            format!("{UPGRADE}Authorization: Bearer {t}\r\n"),
        ),
        (
            "/ws".to_owned(),
            format!("{UPGRADE}authorization: bearer  {t}\r\n"),
        ),
    ] {
        let got = target(&request(&path, &headers), &strict(), NOW).unwrap();
        assert!(
            matches!(&got, Target::Messaging { user, grant: Some(g), .. }
                if user == "alice" && g.expires_at == NOW + 60),
            "{path} {headers}: {got:?}"
        );
    }
}

#[test]
fn token_refusals_are_401_with_a_json_reason() {
    let refused = |path: &str, headers: &str| {
        target(
            &request(path, &format!("{UPGRADE}{headers}")),
            &strict(),
            NOW,
        )
        .unwrap_err()
    };
    let r = refused("/ws?userId=alice", "");
    assert!(status(&r.response).contains("401"));
    assert_eq!(r.reason, Some(AuthReason::MissingToken));
    assert_eq!(body(&r)["error"], "missing_token");
    assert!(String::from_utf8_lossy(&r.response).contains("WWW-Authenticate: Bearer"));
    let t = token("alice", NOW + 60);
    let r = refused(&format!("/ws?userId=bob&token={t}"), "");
    assert_eq!(body(&r)["error"], "user_mismatch");
    let r = refused(&format!("/ws?token={}", token("alice", NOW - 60)), "");
    assert_eq!(body(&r)["error"], "expired");
    let r = refused("/ws", "Authorization: Basic YTpi\r\n");
    assert_eq!(r.reason, Some(AuthReason::MissingToken));
    // A bad userId is still a 400, before the token.
    let r = refused(&format!("/ws?userId=a%20b&token={t}"), "");
    assert!(status(&r.response).contains("400"));
    assert_eq!(r.reason, None);
}

#[test]
fn origins_outside_the_list_get_403() {
    let t = token("alice", NOW + 60);
    let path = format!("/ws?token={t}");
    let with = |origin: &str| {
        target(
            &request(&path, &format!("{UPGRADE}Origin: {origin}\r\n")),
            &strict(),
            NOW,
        )
    };
    assert!(with("https://app.example.com").is_ok());
    assert!(with("https://x.example.org").is_ok());
    let r = with("https://evil.example.com").unwrap_err();
    assert!(status(&r.response).contains("403"));
    assert_eq!(body(&r)["error"], "origin_not_allowed");
    assert_eq!(r.reason, Some(AuthReason::OriginNotAllowed));
    // No Origin: not a browser, allowed.
    assert!(target(&request(&path, UPGRADE), &strict(), NOW).is_ok());
    // /echo is checked too.
    let echo = target(
        &request("/echo", &format!("{UPGRADE}Origin: https://evil.com\r\n")),
        &strict(),
        NOW,
    );
    assert!(echo.is_err());
}

#[test]
fn bearer_values() {
    assert_eq!(bearer_value("Bearer abc"), Some("abc".into()));
    assert_eq!(bearer_value("BEARER   abc "), Some("abc".into()));
    assert_eq!(bearer_value("Bearer "), None);
    assert_eq!(bearer_value("Basic abc"), None);
    assert_eq!(bearer_value("Bearerabc"), None);
    assert_eq!(bearer_value(""), None);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_bytes_are_parsed_or_refused_without_panic(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        if let Ok(Head::Complete { request, len }) = parse_head(&bytes) {
            prop_assert!(len <= bytes.len());
            let _ = target(&request, &open(true), NOW);
            let _ = target(&request, &strict(), NOW);
        }
    }

    #[test]
    fn request_like_heads_never_panic(
        path in "/[a-z]{0,5}(\\?[a-zA-Z%=&0-9+]{0,40})?",
        headers in prop::collection::vec(("[A-Za-z-]{1,20}", "[ -~]{0,40}"), 0..6),
    ) {
        let mut text = format!("GET {path} HTTP/1.1\r\n");
        for (k, v) in &headers {
            text.push_str(&format!("{k}: {v}\r\n"));
        }
        text.push_str("\r\n");
        if let Ok(Head::Complete { request, .. }) = parse_head(text.as_bytes()) {
            let _ = target(&request, &open(true), NOW);
            let _ = target(&request, &strict(), NOW);
        }
    }

    #[test]
    fn query_values_round_trip_through_percent_encoding(value in "\\PC{0,40}") {
        let query: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("other", "x")
            .append_pair("userId", &value)
            .finish();
        prop_assert_eq!(query_value(&query, "userId"), Some(value));
    }

    #[test]
    fn any_query_string_is_read_without_panic(query in "\\PC{0,80}") {
        let _ = query_value(&query, "userId");
        let _ = query_value(&query, "token");
    }

    #[test]
    fn any_authorization_value_is_read_without_panic(value in "\\PC{0,80}") {
        if let Some(t) = bearer_value(&value) {
            prop_assert!(!t.is_empty());
        }
    }

    /// Upgrades with any token, user and origin are answered (accepted
    /// or refused with a 4xx), never a panic.
    #[test]
    fn upgrades_with_any_credentials_never_panic(
        token in "[A-Za-z0-9._~+/=%-]{0,120}",
        user in proptest::option::of("[A-Za-z0-9%@.]{0,12}"),
        origin in proptest::option::of("[ -~]{0,40}"),
        bearer in any::<bool>(),
    ) {
        let mut path = String::from("/ws?");
        if let Some(u) = &user {
            path.push_str(&format!("userId={u}&"));
        }
        let mut headers = UPGRADE.to_owned();
        if bearer {
            headers.push_str(&format!("Authorization: Bearer {token}\r\n"));
        } else {
            path.push_str(&format!("token={token}"));
        }
        if let Some(o) = &origin {
            headers.push_str(&format!("Origin: {o}\r\n"));
        }
        let text = format!("GET {path} HTTP/1.1\r\nHost: x\r\n{headers}\r\n");
        if let Ok(Head::Complete { request, .. }) = parse_head(text.as_bytes()) {
            if let Err(refusal) = target(&request, &strict(), NOW) {
                let line = status(&refusal.response);
                prop_assert!(line.contains(" 4"), "{}", line);
            }
        }
    }
}
