//! loadgen's client of `shardcast-ctl` (`--control URL`): `GET
//! /api/v1/connect`, asked by a user before it opens its WebSocket.
//!
//! One HTTP/1.1 exchange per ask (`Connection: close`) on the core's own
//! glommio `TcpStream`, so an ask never blocks the executor the user's
//! messages run on; the response is parsed with `httparse` (the handshake's
//! parser already) and its body with serde. The control plane is not on the
//! message path: a user asks once at start and once per move that did not
//! name its next node, so a connection per ask costs nothing that matters.
//!
//! Invariant: an answer is used only when it is a 200 whose body has the
//! contract's fields; anything else is a [`CtlError`] with a stable
//! [`CtlError::cause`] for the report's `errors` map.

use crate::target::{push_encoded, Target};
use futures_lite::{future, AsyncReadExt, AsyncWriteExt};
use serde::Deserialize;
use std::time::Duration;
use thiserror::Error;

/// Largest answer read: a connect answer is a few hundred bytes.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// `GET /api/v1/connect`'s answer.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ConnectAnswer {
    /// The owner's WebSocket URL.
    pub ws_url: String,
    /// An HS256 JWT for the user (`sub`), for nodes run with `--auth jwt`.
    pub token: String,
    /// The resume token passed in, checked (absent when none was passed).
    #[serde(default)]
    pub resume_token: Option<String>,
    /// The token's `exp` (unix seconds).
    pub expires_at: u64,
    /// The owner's node id.
    pub node_id: String,
    /// The ring version the answer comes from.
    pub ring_version: u64,
}

/// Why an ask did not give an answer.
#[derive(Debug, Error)]
pub enum CtlError {
    /// No connection, or it broke before a complete answer.
    #[error("control plane unreachable: {0}")]
    Unreachable(std::io::Error),
    /// No complete answer within the connect timeout.
    #[error("control plane timed out")]
    Timeout,
    /// A non-200 answer (`error` is its JSON `error` code, if any).
    #[error("control plane answered {status} {error}")]
    Status {
        /// HTTP status.
        status: u16,
        /// The body's `error` field.
        error: String,
    },
    /// A 200 whose body is not a connect answer, or a broken HTTP answer.
    #[error("unexpected control-plane answer: {0}")]
    Decode(String),
}

impl CtlError {
    /// Stable cause name for the report (`ctl_<cause>`).
    pub fn cause(&self) -> String {
        match self {
            Self::Unreachable(_) => "ctl_unreachable".into(),
            Self::Timeout => "ctl_timeout".into(),
            Self::Status { error, .. } if !error.is_empty() => format!("ctl_{error}"),
            Self::Status { status, .. } => format!("ctl_http_{status}"),
            Self::Decode(_) => "ctl_bad_answer".into(),
        }
    }
}

/// The request target of an ask: `{prefix}/api/v1/connect?userId=U`
/// plus `resume=T` and `unreachable=NODE` when given.
pub fn connect_path(
    ctl: &Target,
    user: &str,
    resume: Option<&str>,
    unreachable: Option<&str>,
) -> String {
    let mut p = ctl.path.trim_end_matches('/').to_string();
    p.push_str("/api/v1/connect?userId=");
    push_encoded(&mut p, user);
    for (key, value) in [("resume", resume), ("unreachable", unreachable)] {
        if let Some(v) = value {
            p.push('&');
            p.push_str(key);
            p.push('=');
            push_encoded(&mut p, v);
        }
    }
    p
}

/// Asks `ctl` where `user` should connect, within `timeout`.
pub async fn ask(
    ctl: &Target,
    user: &str,
    resume: Option<&str>,
    unreachable: Option<&str>,
    timeout: Duration,
) -> Result<ConnectAnswer, CtlError> {
    let path = connect_path(ctl, user, resume, unreachable);
    let exchange = async {
        let mut stream = glommio::net::TcpStream::connect(ctl.addr)
            .await
            .map_err(|e| CtlError::Unreachable(e.into()))?;
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            ctl.host_header
        );
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(CtlError::Unreachable)?;
        let mut answer = Vec::with_capacity(1024);
        (&mut stream)
            .take(MAX_ANSWER_BYTES as u64 + 1)
            .read_to_end(&mut answer)
            .await
            .map_err(CtlError::Unreachable)?;
        parse_answer(&answer)
    };
    future::or(exchange, async {
        glommio::timer::sleep(timeout).await;
        Err(CtlError::Timeout)
    })
    .await
}

/// Parses a complete HTTP answer (the connection was closed after it).
pub fn parse_answer(bytes: &[u8]) -> Result<ConnectAnswer, CtlError> {
    if bytes.len() > MAX_ANSWER_BYTES {
        return Err(CtlError::Decode(format!(
            "answer over {MAX_ANSWER_BYTES} bytes"
        )));
    }
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut headers);
    let head = match resp.parse(bytes) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            return Err(CtlError::Decode("incomplete HTTP answer".into()))
        }
        Err(e) => return Err(CtlError::Decode(e.to_string())),
    };
    let body = &bytes[head..];
    let status = resp.code.unwrap_or(0);
    if status != 200 {
        #[derive(Deserialize)]
        struct Refusal {
            error: String,
        }
        let error = serde_json::from_slice::<Refusal>(body)
            .map(|r| r.error)
            .unwrap_or_default();
        // Only the code set of the API (letters and `_`) goes into a
        // report key.
        let error = if error.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
            error
        } else {
            String::new()
        };
        return Err(CtlError::Status { status, error });
    }
    serde_json::from_slice(body).map_err(|e| CtlError::Decode(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_path_carries_user_resume_and_unreachable_encoded() {
        let ctl = Target::parse_http("http://127.0.0.1:8081").unwrap();
        assert_eq!(
            connect_path(&ctl, "lg1-2", None, None),
            "/api/v1/connect?userId=lg1-2"
        );
        assert_eq!(
            connect_path(&ctl, "a b", Some("t=k"), Some("n1")),
            "/api/v1/connect?userId=a%20b&resume=t%3Dk&unreachable=n1"
        );
        let ctl = Target::parse_http("http://127.0.0.1:8081/ctl/").unwrap();
        assert_eq!(
            connect_path(&ctl, "u", None, Some("n2")),
            "/ctl/api/v1/connect?userId=u&unreachable=n2"
        );
    }

    #[test]
    fn a_200_is_an_answer_and_refusals_keep_their_code() {
        let ok = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n\
            {\"wsUrl\":\"ws://127.0.0.1:9/ws\",\"token\":\"a.b.c\",\"expiresAt\":5,\
            \"nodeId\":\"n1\",\"ringVersion\":3}";
        let a = parse_answer(ok).unwrap();
        assert_eq!(a.ws_url, "ws://127.0.0.1:9/ws");
        assert_eq!((a.node_id.as_str(), a.ring_version), ("n1", 3));
        assert_eq!(a.resume_token, None);
        let no =
            b"HTTP/1.1 503 Service Unavailable\r\n\r\n{\"error\":\"no_nodes\",\"message\":\"x\"}";
        assert_eq!(parse_answer(no).unwrap_err().cause(), "ctl_no_nodes");
        let odd = b"HTTP/1.1 500 Oops\r\n\r\n{\"error\":\"Weird Key!\"}";
        assert_eq!(parse_answer(odd).unwrap_err().cause(), "ctl_http_500");
        let bad = b"HTTP/1.1 200 OK\r\n\r\n{\"wsUrl\":1}";
        assert_eq!(parse_answer(bad).unwrap_err().cause(), "ctl_bad_answer");
        assert_eq!(
            parse_answer(b"HTTP/1.1 200").unwrap_err().cause(),
            "ctl_bad_answer"
        );
    }
}
