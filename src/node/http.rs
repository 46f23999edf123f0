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

use crate::protocol::valid_user_id;

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
    },
    /// A WebSocket upgrade of `/echo`; `response` is the 101.
    Echo { response: Vec<u8> },
}

/// Decides what `request` asks for; `Err` is the response that refuses it
/// (404 unknown path, 400 bad `userId` or not an upgrade). `/echo` exists
/// only when `echo` is on.
pub fn target(request: &Request, echo: bool) -> Result<Target, Vec<u8>> {
    let messaging = match request.uri().path() {
        "/health" => return Ok(Target::Health),
        "/ws" => true,
        "/echo" if echo => false,
        _ => return Err(text_response("404 Not Found", "no such endpoint\n")),
    };
    let user = if messaging {
        match query_param(request, "userId") {
            Some(u) if valid_user_id(&u) => Some(u),
            Some(_) => {
                let body = "userId must be 1..=128 bytes of letters, digits and -_.@:+=\n";
                return Err(text_response("400 Bad Request", body));
            }
            None => {
                return Err(text_response(
                    "400 Bad Request",
                    "missing userId query parameter\n",
                ))
            }
        }
    } else {
        None
    };
    let mut response = Vec::with_capacity(160);
    match create_response(request) {
        Ok(r) => write_response(&mut response, &r).expect("writing to a Vec cannot fail"),
        Err(e) => {
            let body = format!("not a WebSocket upgrade: {e}\n");
            return Err(text_response("400 Bad Request", &body));
        }
    }
    Ok(match user {
        Some(user) => Target::Messaging {
            user,
            resume: query_param(request, "resume"),
            response,
        },
        None => Target::Echo { response },
    })
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

    fn status(response: &[u8]) -> String {
        String::from_utf8_lossy(response)
            .lines()
            .next()
            .unwrap_or_default()
            .to_owned()
    }

    #[test]
    fn targets_of_well_formed_requests() {
        assert_eq!(target(&request("/health", ""), false), Ok(Target::Health));
        let t = target(&request("/ws?userId=a%40b&resume=T", UPGRADE), false).unwrap();
        assert!(
            matches!(&t, Target::Messaging { user, resume: Some(r), response }
                if user == "a@b" && r == "T" && response.starts_with(b"HTTP/1.1 101")),
            "{t:?}"
        );
        assert!(matches!(
            target(&request("/echo", UPGRADE), true),
            Ok(Target::Echo { .. })
        ));
    }

    #[test]
    fn refusals_say_why() {
        let refused = |path: &str, headers: &str, echo: bool| {
            status(&target(&request(path, headers), echo).unwrap_err())
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

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn any_bytes_are_parsed_or_refused_without_panic(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
            if let Ok(Head::Complete { request, len }) = parse_head(&bytes) {
                prop_assert!(len <= bytes.len());
                let _ = target(&request, true);
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
                let _ = target(&request, true);
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
        }
    }
}
