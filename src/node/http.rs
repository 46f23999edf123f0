//! The HTTP side of the main port, as pure functions over bytes: reading a
//! request head (an upgrade, or a server API request for `node::api`),
//! deciding what an upgrade asks for, and building the responses that
//! refuse it. The sockets are in [`super::handshake`].
//!
//! Everything here takes untrusted input; it never panics on any bytes (a
//! property test in the normal suite and a fuzz target under fuzz/ check
//! that).

use tungstenite::handshake::{
    machine::TryParse,
    server::{create_response, write_response, Request},
};

use super::api::ApiHead;
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
    /// A complete server API request head (see `node::api`) and its length.
    Api { head: ApiHead, len: usize },
    /// More bytes are needed.
    Partial,
}

/// Parses the request head at the start of `buf`: a server API request
/// (any method under `/api/`) or an upgrade; `Err` is the response to send
/// before closing (400 for bytes that are not an HTTP GET, 431 for a head
/// over [`MAX_REQUEST_BYTES`]).
pub fn parse_head(buf: &[u8]) -> Result<Head, Vec<u8>> {
    if let Some((head, len)) = super::api::parse_head(buf) {
        return Ok(Head::Api { head, len });
    }
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
#[path = "http_tests.rs"]
mod tests;
