//! What a server API request asks for, as pure functions over bytes: the
//! request head, the endpoint, the API key, the body, and the responses.
//!
//! Everything here takes untrusted input and never panics on any bytes (a
//! property test checks that). Every refusal is an [`ApiError`] with its
//! HTTP status and a stable `error` name, answered as JSON
//! `{"error":…,"message":…}`.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::protocol::{valid_user_id, RoomName, MAX_MESSAGE_ID_LEN};

use super::super::http::{bearer_value, http_response, query_value};

/// `from` of the messages the API sends when the request names no sender.
/// `#` is outside the user id alphabet: no client can pose as it.
pub const API_SENDER: &str = "#server";

/// Most headers read from an API request head.
const MAX_HEADERS: usize = 32;

/// The parts of an API request head the API needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiHead {
    pub method: String,
    /// The path, without the query.
    pub path: String,
    pub query: Option<String>,
    /// The `Authorization` header.
    pub authorization: Option<String>,
    /// `Content-Length`; `Err` when present but not a number.
    pub content_length: Option<Result<usize, ()>>,
    /// A `Transfer-Encoding` header was sent (chunked bodies are refused).
    pub transfer_encoding: bool,
    /// `Expect: 100-continue`: the client waits for a `100 Continue`
    /// before it sends the body (curl does, for bodies over 1 KiB).
    pub expect_continue: bool,
}

/// The head at the start of `buf` when it is complete and belongs to the
/// API: any method on a path under `/api/`. `None` for everything else
/// (partial heads, garbage, other paths): the upgrade parser decides those,
/// as it always did (a `POST /ws` stays a 400).
pub fn parse_head(buf: &[u8]) -> Option<(ApiHead, usize)> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        _ => return None,
    };
    let (method, target) = (req.method?, req.path?);
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q.to_owned())),
        None => (target, None),
    };
    if !path.starts_with("/api/") {
        return None;
    }
    let header = |name: &str| {
        req.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).trim().to_owned())
    };
    let head = ApiHead {
        method: method.to_owned(),
        path: path.to_owned(),
        query,
        authorization: header("authorization"),
        content_length: header("content-length").map(|v| v.parse().map_err(|_| ())),
        transfer_encoding: header("transfer-encoding").is_some(),
        expect_continue: header("expect").is_some_and(|v| v.eq_ignore_ascii_case("100-continue")),
    };
    Some((head, len))
}

/// The API's endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `POST /api/v1/publish`.
    Publish,
    /// `POST /api/v1/send`.
    Send,
    /// `GET /api/v1/online`.
    Online,
}

/// Why a request was refused; each has its status and `error` name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiErrorKind {
    /// 400: the body is not JSON.
    BadJson,
    /// 400: a field is missing or of the wrong type; a bad `id`.
    BadRequest,
    /// 400: `room` is not a valid room name.
    BadRoom,
    /// 400: `to`, `from` or `userId` is not a valid user id.
    BadUser,
    /// 401: no API key, or the wrong one.
    Unauthorized,
    /// 404: no such endpoint, or the API is off (no `--api-key-file`).
    NotFound,
    /// 405: the endpoint exists with another method.
    MethodNotAllowed,
    /// 408: the body did not arrive in time.
    Timeout,
    /// 411: no `Content-Length` (or a chunked body).
    LengthRequired,
    /// 413: a body over the limit.
    PayloadTooLarge,
    /// 503: the store could not make the message durable.
    Unavailable,
}

impl ApiErrorKind {
    /// The HTTP status line's code and text.
    pub fn status(self) -> &'static str {
        match self {
            Self::BadJson | Self::BadRequest | Self::BadRoom | Self::BadUser => "400 Bad Request",
            Self::Unauthorized => "401 Unauthorized",
            Self::NotFound => "404 Not Found",
            Self::MethodNotAllowed => "405 Method Not Allowed",
            Self::Timeout => "408 Request Timeout",
            Self::LengthRequired => "411 Length Required",
            Self::PayloadTooLarge => "413 Payload Too Large",
            Self::Unavailable => "503 Service Unavailable",
        }
    }

    /// The stable `error` name in the JSON body.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BadJson => "bad_json",
            Self::BadRequest => "bad_request",
            Self::BadRoom => "bad_room",
            Self::BadUser => "bad_user",
            Self::Unauthorized => "unauthorized",
            Self::NotFound => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::Timeout => "timeout",
            Self::LengthRequired => "length_required",
            Self::PayloadTooLarge => "payload_too_large",
            Self::Unavailable => "unavailable",
        }
    }
}

/// A refused request: its kind and a human message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub kind: ApiErrorKind,
    pub message: String,
}

impl ApiError {
    pub fn new(kind: ApiErrorKind, message: impl Into<String>) -> ApiError {
        ApiError {
            kind,
            message: message.into(),
        }
    }

    /// The whole HTTP response.
    pub fn response(&self) -> Vec<u8> {
        let body = serde_json::json!({"error": self.kind.as_str(), "message": self.message});
        let mut headers = vec![("Content-Type", "application/json")];
        match self.kind {
            ApiErrorKind::Unauthorized => headers.push(("WWW-Authenticate", "Bearer")),
            ApiErrorKind::Unavailable => headers.push(("Retry-After", "1")),
            _ => {}
        }
        http_response(self.kind.status(), &headers, &format!("{body}\n"))
    }
}

/// A 200 response with the JSON `body`.
pub fn ok(body: &serde_json::Value) -> Vec<u8> {
    http_response(
        "200 OK",
        &[("Content-Type", "application/json")],
        &format!("{body}\n"),
    )
}

/// A 307 to the online endpoint of node `node`, whose WebSocket URL is
/// `ws_addr` (`ws://HOST:PORT/ws` in the ring): the same host and port over
/// HTTP, with a JSON body naming the node for clients that do not follow.
pub fn redirect(node: &str, ws_addr: &str, user: &str) -> Vec<u8> {
    let Some(url) = api_base(ws_addr) else {
        return ApiError::new(
            ApiErrorKind::Unavailable,
            "the user's node has no address in the ring",
        )
        .response();
    };
    let location = format!("{url}/api/v1/online?userId={user}");
    let body = serde_json::json!({"error": "wrong_node", "node": node, "url": location});
    http_response(
        "307 Temporary Redirect",
        &[
            ("Location", location.as_str()),
            ("Content-Type", "application/json"),
        ],
        &format!("{body}\n"),
    )
}

/// `http://HOST:PORT` of a node's WebSocket URL (`ws://` or `wss://`).
fn api_base(ws_addr: &str) -> Option<String> {
    let (scheme, rest) = ws_addr.split_once("://")?;
    let scheme = match scheme {
        "ws" | "http" => "http",
        "wss" | "https" => "https",
        _ => return None,
    };
    let host = rest.split('/').next().filter(|h| !h.is_empty())?;
    Some(format!("{scheme}://{host}"))
}

/// The endpoint `head` asks for: 404 for an unknown path, 405 for the
/// wrong method.
pub fn endpoint(head: &ApiHead) -> Result<Endpoint, ApiError> {
    let (endpoint, method) = match head.path.as_str() {
        "/api/v1/publish" => (Endpoint::Publish, "POST"),
        "/api/v1/send" => (Endpoint::Send, "POST"),
        "/api/v1/online" => (Endpoint::Online, "GET"),
        _ => {
            let message =
                "no such endpoint (POST /api/v1/publish, POST /api/v1/send, GET /api/v1/online)";
            return Err(ApiError::new(ApiErrorKind::NotFound, message));
        }
    };
    if head.method != method {
        let message = format!("{} takes {method}", head.path);
        return Err(ApiError::new(ApiErrorKind::MethodNotAllowed, message));
    }
    Ok(endpoint)
}

/// The digest the node keeps of its API key.
pub fn key_digest(key: &[u8]) -> [u8; 32] {
    Sha256::digest(key).into()
}

/// Checks `Authorization: Bearer KEY` against the key's digest. Digests of
/// equal length are compared in constant time, so neither the key's bytes
/// nor its length leak through timing.
pub fn authorize(head: &ApiHead, digest: &[u8; 32]) -> Result<(), ApiError> {
    let given = head.authorization.as_deref().and_then(bearer_value);
    let Some(given) = given else {
        return Err(ApiError::new(
            ApiErrorKind::Unauthorized,
            "missing API key: send `Authorization: Bearer KEY`",
        ));
    };
    if bool::from(key_digest(given.as_bytes()).ct_eq(digest)) {
        Ok(())
    } else {
        Err(ApiError::new(ApiErrorKind::Unauthorized, "wrong API key"))
    }
}

/// The body length a POST announces, at most `max`.
pub fn body_len(head: &ApiHead, max: usize) -> Result<usize, ApiError> {
    let required = || ApiError::new(ApiErrorKind::LengthRequired, "send a Content-Length body");
    if head.transfer_encoding {
        return Err(required());
    }
    match head.content_length {
        None | Some(Err(())) => Err(required()),
        Some(Ok(n)) if n > max => Err(ApiError::new(
            ApiErrorKind::PayloadTooLarge,
            format!("body of {n} bytes over the limit of {max} (--max-message-bytes)"),
        )),
        Some(Ok(n)) => Ok(n),
    }
}

#[derive(Deserialize)]
struct RawBody<'a> {
    #[serde(borrow, default)]
    room: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    to: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    from: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
}

/// A checked publish or send.
#[derive(Debug, PartialEq, Eq)]
pub struct Message<'a> {
    /// The room (publish) or the recipient (send).
    pub target: Cow<'a, str>,
    /// The sender the message names ([`API_SENDER`] when none is given).
    pub from: Cow<'a, str>,
    pub id: Cow<'a, str>,
    /// The JSON `data`, verbatim (`null` when absent).
    pub data: &'a str,
}

/// Parses the body of `POST /api/v1/publish` or `/send`: `{room|to, id,
/// data[, from]}`.
pub fn parse_message(endpoint: Endpoint, body: &[u8]) -> Result<Message<'_>, ApiError> {
    let raw: RawBody = serde_json::from_slice(body).map_err(|e| {
        let kind = match e.classify() {
            serde_json::error::Category::Data => ApiErrorKind::BadRequest,
            _ => ApiErrorKind::BadJson,
        };
        ApiError::new(kind, e.to_string())
    })?;
    let missing =
        |field: &str| ApiError::new(ApiErrorKind::BadRequest, format!("`{field}` is missing"));
    let target = match endpoint {
        Endpoint::Publish => {
            let room = raw.room.ok_or_else(|| missing("room"))?;
            RoomName::parse(&room)
                .map_err(|e| ApiError::new(ApiErrorKind::BadRoom, e.to_string()))?;
            room
        }
        _ => {
            let to = raw.to.ok_or_else(|| missing("to"))?;
            if !valid_user_id(&to) {
                return Err(bad_user("to"));
            }
            to
        }
    };
    let id = raw.id.ok_or_else(|| missing("id"))?;
    if id.is_empty() || id.len() > MAX_MESSAGE_ID_LEN {
        return Err(ApiError::new(
            ApiErrorKind::BadRequest,
            "`id` must be 1..=128 bytes",
        ));
    }
    let from = match raw.from {
        Some(from) if valid_user_id(&from) => from,
        Some(_) => return Err(bad_user("from")),
        None => Cow::Borrowed(API_SENDER),
    };
    Ok(Message {
        target,
        from,
        id,
        data: raw.data.map_or("null", |d| d.get()),
    })
}

fn bad_user(field: &str) -> ApiError {
    ApiError::new(
        ApiErrorKind::BadUser,
        format!("`{field}` must be a user id: 1..=128 bytes of letters, digits and -_.@:+="),
    )
}

/// The `userId` of `GET /api/v1/online?userId=U`.
pub fn parse_online(head: &ApiHead) -> Result<String, ApiError> {
    let user = head.query.as_deref().and_then(|q| query_value(q, "userId"));
    match user {
        Some(u) if valid_user_id(&u) => Ok(u),
        Some(_) => Err(bad_user("userId")),
        None => Err(ApiError::new(
            ApiErrorKind::BadRequest,
            "missing userId query parameter",
        )),
    }
}

#[cfg(test)]
#[path = "call_tests.rs"]
mod tests;
