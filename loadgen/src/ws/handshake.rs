//! The client side of the WebSocket opening handshake (RFC 6455 §4), pure.
//!
//! [`write_request`] renders the HTTP/1.1 upgrade request and
//! [`parse_response`] checks the server's answer: status 101, the upgrade
//! headers, and `Sec-WebSocket-Accept = base64(SHA-1(key ++ GUID))`. Anything
//! else is a named [`HandshakeError`], so failures are reported by cause
//! (`http_503` is what an over-capacity shardcast node answers).

use base64::{engine::general_purpose::STANDARD, Engine};
use rand::Rng;
use sha1::{Digest, Sha1};
use std::fmt::Write as _;
use thiserror::Error;

/// RFC 6455's magic GUID appended to the key before hashing.
const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// The longest response head loadgen waits for before giving up.
pub const MAX_RESPONSE_HEAD: usize = 8 * 1024;

/// Why an upgrade did not succeed.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum HandshakeError {
    /// The response head is not valid HTTP/1.1.
    #[error("malformed HTTP response: {0}")]
    Malformed(String),
    /// The server answered with a status other than 101.
    #[error("server answered HTTP {0}")]
    Status(u16),
    /// A redirect (a cluster node's `307 wrong_node`): the user lives at
    /// `location`; `node` is the body's node id when the body came with
    /// the head.
    #[error("server redirected ({status}) to {location}")]
    Redirect {
        /// 301, 302, 303, 307 or 308.
        status: u16,
        /// The `Location` header.
        location: String,
        /// The JSON body's `node`, if it was there.
        node: Option<String>,
    },
    /// 101 without `Upgrade: websocket` / `Connection: upgrade`.
    #[error("101 response lacks the upgrade headers")]
    MissingUpgrade,
    /// `Sec-WebSocket-Accept` is absent or does not match our key.
    #[error("Sec-WebSocket-Accept does not match the key")]
    BadAccept,
    /// No complete response head within [`MAX_RESPONSE_HEAD`] bytes.
    #[error("response head exceeds {MAX_RESPONSE_HEAD} bytes")]
    TooLong,
}

/// A fresh random `Sec-WebSocket-Key` (base64 of 16 random bytes).
pub fn generate_key(rng: &mut impl Rng) -> String {
    let bytes: [u8; 16] = rng.random();
    STANDARD.encode(bytes)
}

/// The `Sec-WebSocket-Accept` value a server must answer for `key`.
pub fn accept_for(key: &str) -> String {
    let mut h = Sha1::new();
    h.update(key.as_bytes());
    h.update(GUID.as_bytes());
    STANDARD.encode(h.finalize())
}

/// Appends the upgrade request for `path_and_query` on `host` to `out`.
pub fn write_request(out: &mut Vec<u8>, host: &str, path_and_query: &str, key: &str) {
    let mut s = String::with_capacity(160 + path_and_query.len());
    // Writing to a String cannot fail.
    let _ = write!(
        s,
        "GET {path_and_query} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    out.extend_from_slice(s.as_bytes());
}

/// Checks a (possibly partial) response in `buf` against `key`.
///
/// `Ok(Some(n))`: the upgrade succeeded and the head is `n` bytes long; any
/// bytes after it are already WebSocket frames. `Ok(None)`: need more bytes.
pub fn parse_response(buf: &[u8], key: &str) -> Result<Option<usize>, HandshakeError> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut headers);
    let n = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            return if buf.len() >= MAX_RESPONSE_HEAD {
                Err(HandshakeError::TooLong)
            } else {
                Ok(None)
            };
        }
        Err(e) => return Err(HandshakeError::Malformed(e.to_string())),
    };
    let code = resp.code.unwrap_or(0);
    let header = |name: &str| {
        resp.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    };
    if matches!(code, 301 | 302 | 303 | 307 | 308) {
        if let Some(location) = header("location").and_then(|v| std::str::from_utf8(v).ok()) {
            #[derive(serde::Deserialize)]
            struct WrongNode {
                node: String,
            }
            return Err(HandshakeError::Redirect {
                status: code,
                location: location.to_string(),
                node: serde_json::from_slice::<WrongNode>(&buf[n..])
                    .ok()
                    .map(|w| w.node),
            });
        }
    }
    if code != 101 {
        return Err(HandshakeError::Status(code));
    }
    let has_token = |name: &str, token: &str| {
        header(name).is_some_and(|v| {
            String::from_utf8_lossy(v)
                .split(',')
                .any(|t| t.trim().eq_ignore_ascii_case(token))
        })
    };
    if !has_token("upgrade", "websocket") || !has_token("connection", "upgrade") {
        return Err(HandshakeError::MissingUpgrade);
    }
    match header("sec-websocket-accept") {
        Some(v) if v == accept_for(key).as_bytes() => Ok(Some(n)),
        _ => Err(HandshakeError::BadAccept),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

    fn ok_response(accept: &str) -> String {
        format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
        )
    }

    #[test]
    fn accept_matches_the_rfc_example() {
        assert_eq!(accept_for(KEY), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn request_names_path_host_and_key() {
        let mut out = Vec::new();
        write_request(&mut out, "127.0.0.1:8080", "/ws?userId=a", KEY);
        let s = String::from_utf8(out).unwrap();
        assert!(s.starts_with("GET /ws?userId=a HTTP/1.1\r\n"));
        assert!(s.contains("Host: 127.0.0.1:8080\r\n"));
        assert!(s.contains(&format!("Sec-WebSocket-Key: {KEY}\r\n")));
        assert!(s.ends_with("\r\n\r\n"));
    }

    #[test]
    fn good_response_reports_its_length_and_leaves_frames_after_it() {
        let mut bytes = ok_response(&accept_for(KEY)).into_bytes();
        let head = bytes.len();
        bytes.extend_from_slice(&[0x81, 0x00]);
        assert_eq!(parse_response(&bytes, KEY), Ok(Some(head)));
    }

    #[test]
    fn partial_response_asks_for_more() {
        let bytes = ok_response(&accept_for(KEY));
        assert_eq!(parse_response(&bytes.as_bytes()[..20], KEY), Ok(None));
    }

    #[test]
    fn over_capacity_is_reported_as_status_503() {
        let r = b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\n\r\n";
        assert_eq!(parse_response(r, KEY), Err(HandshakeError::Status(503)));
    }

    #[test]
    fn a_redirect_names_its_location_and_node() {
        let r = b"HTTP/1.1 307 Temporary Redirect\r\nLocation: ws://127.0.0.1:9/ws?userId=u\r\n\
            Content-Type: application/json\r\n\r\n\
            {\"error\":\"wrong_node\",\"node\":\"n2\",\"wsUrl\":\"ws://127.0.0.1:9/ws?userId=u\"}\n";
        assert_eq!(
            parse_response(r, KEY),
            Err(HandshakeError::Redirect {
                status: 307,
                location: "ws://127.0.0.1:9/ws?userId=u".into(),
                node: Some("n2".into()),
            })
        );
        // The head alone: the node is not known yet.
        let head = b"HTTP/1.1 307 Temporary Redirect\r\nLocation: ws://h:1/ws\r\n\r\n";
        assert!(matches!(
            parse_response(head, KEY),
            Err(HandshakeError::Redirect { node: None, .. })
        ));
        // Without a Location it is just a status.
        let bare = b"HTTP/1.1 307 Temporary Redirect\r\n\r\n";
        assert_eq!(parse_response(bare, KEY), Err(HandshakeError::Status(307)));
    }

    #[test]
    fn wrong_accept_is_rejected() {
        let r = ok_response("AAAAAAAAAAAAAAAAAAAAAAAAAAA=");
        assert_eq!(
            parse_response(r.as_bytes(), KEY),
            Err(HandshakeError::BadAccept)
        );
    }

    #[test]
    fn missing_upgrade_header_is_rejected() {
        let r = format!(
            "HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Accept: {}\r\n\r\n",
            accept_for(KEY)
        );
        assert_eq!(
            parse_response(r.as_bytes(), KEY),
            Err(HandshakeError::MissingUpgrade)
        );
    }

    #[test]
    fn garbage_is_malformed_and_endless_heads_are_too_long() {
        assert!(matches!(
            parse_response(b"\x00\x01garbage\r\n\r\n", KEY),
            Err(HandshakeError::Malformed(_))
        ));
        let mut long = b"HTTP/1.1 101 OK\r\nX-Pad: ".to_vec();
        long.resize(MAX_RESPONSE_HEAD, b'a');
        assert_eq!(parse_response(&long, KEY), Err(HandshakeError::TooLong));
    }
}
