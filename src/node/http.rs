//! The HTTP side of the main port, as pure functions over bytes: reading an
//! upgrade request head, deciding what it asks for, and building the
//! responses that refuse it. The sockets are in [`super::handshake`].
//!
//! Everything here takes untrusted input; it never panics on any bytes (a
//! property test in the normal suite and a fuzz target under fuzz/ check
//! that).

use tungstenite::handshake::{
    machine::TryParse,
    server::{create_response, write_response, Request},
};

use crate::{
    auth::{refusal_body, AllowedOrigins, AuthError, AuthReason, Grant, JwtVerifier},
    protocol::valid_user_id,
};

/// Largest upgrade request head accepted.
pub const MAX_REQUEST_BYTES: usize = 8 * 1024;

/// A request head read so far.
#[allow(clippy::large_enum_variant)] // one per handshake, on the stack, never stored
pub enum Head {
    /// The head is complete: the request and its length in the buffer (the
    /// bytes after it are the client's first frames).
    Complete { request: Request, len: usize },
    /// More bytes are needed.
    Partial,
}

/// Parses the request head at the start of `buf`; `Err` is the response
/// to send before closing (400 for bytes that are not an HTTP GET, 431 for
/// a head over [`MAX_REQUEST_BYTES`]).
pub fn parse_head(buf: &[u8]) -> Result<Head, Vec<u8>> {
    match Request::try_parse(buf) {
        Ok(Some((len, request))) => Ok(Head::Complete { request, len }),
        Ok(None) if buf.len() < MAX_REQUEST_BYTES => Ok(Head::Partial),
        Ok(None) => Err(text_response(
            "431 Request Header Fields Too Large",
            "request head over 8 KiB\n",
        )),
        Err(e) => Err(text_response(
            "400 Bad Request",
            &format!("not a valid HTTP GET request: {e}\n"),
        )),
    }
}

/// What a complete request asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Target {
    /// `GET /health`.
    Health,
    /// A WebSocket upgrade of `/ws` for `user`; `response` is the 101.
    Messaging {
        user: String,
        resume: Option<String>,
        response: Vec<u8>,
        /// What the token grants (`--auth jwt`); `None` without auth.
        grant: Option<Grant>,
    },
    /// A WebSocket upgrade of `/echo`; `response` is the 101.
    Echo { response: Vec<u8> },
}

/// What the node checks at an upgrade, borrowed from its configuration.
#[derive(Debug, Clone, Copy, Default)]
pub struct Gate<'a> {
    /// `/echo` exists.
    pub echo: bool,
    /// `--auth jwt`: the verifier.
    pub jwt: Option<&'a JwtVerifier>,
    /// `--allowed-origins`; `None`: every origin.
    pub origins: Option<&'a AllowedOrigins>,
}

/// A refused request: the response to send, and the auth reason when it was
/// refused for its token or its origin (counted by reason).
#[derive(Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The whole HTTP response.
    pub response: Vec<u8>,
    /// Why, for `rtc_socket_auth_failures_total`; `None` for other refusals.
    pub reason: Option<AuthReason>,
}

impl From<Vec<u8>> for Refusal {
    fn from(response: Vec<u8>) -> Refusal {
        Refusal {
            response,
            reason: None,
        }
    }
}

fn auth_refusal(reason: AuthReason, message: &str) -> Refusal {
    let mut headers = vec![("Content-Type", "application/json")];
    if reason != AuthReason::OriginNotAllowed {
        headers.push(("WWW-Authenticate", "Bearer"));
    }
    Refusal {
        response: http_response(reason.status(), &headers, &refusal_body(reason, message)),
        reason: Some(reason),
    }
}

impl From<AuthError> for Refusal {
    fn from(e: AuthError) -> Refusal {
        auth_refusal(e.reason(), &e.to_string())
    }
}

/// Decides what `request` asks for at unix time `now`; `Err` is the
/// response that refuses it: 404 unknown path, 400 not an upgrade or a bad
/// `userId`, 403 an `Origin` outside `--allowed-origins`, 401 a missing or
/// refused JWT (`--auth jwt`). `/echo` exists only when `gate.echo` is on.
pub fn target(request: &Request, gate: &Gate, now: u64) -> Result<Target, Refusal> {
    let messaging = match request.uri().path() {
        "/health" => return Ok(Target::Health),
        "/ws" => true,
        "/echo" if gate.echo => false,
        _ => return Err(text_response("404 Not Found", "no such endpoint\n").into()),
    };
    let mut response = Vec::with_capacity(160);
    match create_response(request) {
        Ok(r) => write_response(&mut response, &r).expect("writing to a Vec cannot fail"),
        Err(e) => {
            let body = format!("not a WebSocket upgrade: {e}\n");
            return Err(text_response("400 Bad Request", &body).into());
        }
    }
    if let Some(origins) = gate.origins {
        check_origin(request, origins)?;
    }
    if !messaging {
        return Ok(Target::Echo { response });
    }
    let user = match query_param(request, "userId") {
        Some(u) if valid_user_id(&u) => Some(u),
        Some(_) => {
            let body = "userId must be 1..=128 bytes of letters, digits and -_.@:+=\n";
            return Err(text_response("400 Bad Request", body).into());
        }
        None => None,
    };
    let (user, grant) = match (gate.jwt, user) {
        (None, Some(user)) => (user, None),
        (None, None) => {
            let body = "missing userId query parameter\n";
            return Err(text_response("400 Bad Request", body).into());
        }
        (Some(jwt), user) => {
            let token = bearer_token(request)
                .or_else(|| query_param(request, "token"))
                .ok_or(AuthError::Missing)?;
            let grant = jwt.verify_for(&token, user.as_deref(), now)?;
            (grant.user.clone(), Some(grant))
        }
    };
    Ok(Target::Messaging {
        user,
        resume: query_param(request, "resume"),
        response,
        grant,
    })
}

/// Refuses a browser upgrade whose `Origin` is not allowed. A request
/// without `Origin` is not from a browser page: allowed.
fn check_origin(request: &Request, origins: &AllowedOrigins) -> Result<(), Refusal> {
    let Some(origin) = request.headers().get("origin") else {
        return Ok(());
    };
    match origin.to_str() {
        Ok(o) if origins.allows(o) => Ok(()),
        Ok(o) => Err(auth_refusal(
            AuthReason::OriginNotAllowed,
            &format!("origin `{}` is not allowed", o.escape_default()),
        )),
        Err(_) => Err(auth_refusal(
            AuthReason::OriginNotAllowed,
            "origin is not ASCII",
        )),
    }
}

/// The token of an `Authorization: Bearer TOKEN` header, if there is one.
pub fn bearer_token(request: &Request) -> Option<String> {
    bearer_value(request.headers().get("authorization")?.to_str().ok()?)
}

/// The token in an `Authorization` header value (`Bearer` is
/// case-insensitive, RFC 6750); `None` for another scheme or no token.
pub fn bearer_value(value: &str) -> Option<String> {
    let value = value.trim();
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then(|| token.to_owned())
}

/// The first value of query parameter `name`, percent-decoded.
pub fn query_param(request: &Request, name: &str) -> Option<String> {
    query_value(request.uri().query()?, name)
}

/// The first value of `name` in the query string `query`, percent-decoded.
pub fn query_value(query: &str, name: &str) -> Option<String> {
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// An HTTP/1.1 response that closes the connection.
pub fn http_response(status: &str, headers: &[(&str, &str)], body: &str) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status}\r\n");
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    ));
    out.into_bytes()
}

/// A plain-text response that closes the connection.
pub fn text_response(status: &str, body: &str) -> Vec<u8> {
    http_response(
        status,
        &[("Content-Type", "text/plain; charset=utf-8")],
        body,
    )
}

#[cfg(test)]
mod tests {
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
        O.get_or_init(|| {
            AllowedOrigins::parse(&["https://app.example.com", "*.example.org"]).unwrap()
        })
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
}
