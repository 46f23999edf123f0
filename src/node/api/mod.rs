//! The server API over HTTP, on every node's main port next to `/ws` and
//! `/health`: backends publish to rooms, send direct messages to users and
//! ask whether a user is online.
//!
//! ```text
//! POST /api/v1/publish  {"room":R,"id":I,"data":…[,"from":U]}
//! POST /api/v1/send     {"to":U,"id":I,"data":…[,"from":U]}
//! GET  /api/v1/online?userId=U
//! ```
//!
//! In a cluster (`--ring`) a send or publish is routed like a client's, so
//! it reaches other nodes through the relay; `online` for a user another
//! node owns is a 307 to that node's API.
//!
//! Every request carries `Authorization: Bearer KEY`, the key of
//! `--api-key-file` (compared in constant time); without that file the API
//! is off and answers 404. The parsing and the answers are pure
//! ([`call`]); this module is the socket around them, one request per
//! connection. A send or publish goes through the same routing as a
//! client's (`Shard::api_send`, `Shard::api_publish`) and is answered once a
//! client's `ack` would be: a send once the store made it durable for its
//! recipient (503 when the store could not: never 200 for a message that is
//! not durable), a publish once it was handed to every core.
//!
//! Invariant: the request's delivery is awaited to its end, never raced
//! with a timeout or dropped (see `shard::deliver`): only reading the body
//! has a deadline.

pub mod call;

use std::{rc::Rc, time::Duration};

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use serde_json::json;

pub use call::{key_digest, parse_head, ApiHead, API_SENDER};

use call::{ApiError, ApiErrorKind, Endpoint};

use super::shard::{Owner, Shard};

/// Answers one API request whose head was read (`leftover`: the bytes read
/// after it, the start of the body) and closes the connection.
pub async fn serve(shard: Rc<Shard>, mut stream: TcpStream, head: ApiHead, leftover: Vec<u8>) {
    let response = match answer(&shard, &mut stream, &head, leftover).await {
        Ok(r) => r,
        Err(e) => e.response(),
    };
    let _ = stream.write_all(&response).await;
    let _ = stream.close().await;
}

async fn answer(
    shard: &Shard,
    stream: &mut TcpStream,
    head: &ApiHead,
    leftover: Vec<u8>,
) -> Result<Vec<u8>, ApiError> {
    let config = shard.config();
    let Some(digest) = &config.api_key else {
        return Err(ApiError::new(
            ApiErrorKind::NotFound,
            "the server API is off: start the node with --api-key-file",
        ));
    };
    call::authorize(head, digest)?;
    let endpoint = call::endpoint(head)?;
    if endpoint == Endpoint::Online {
        let user = call::parse_online(head)?;
        if let Owner::Node(node) = shard.owner(&user) {
            // Another node of the ring owns the user: it knows.
            let (id, addr) = shard.node_address(node).unwrap_or_default();
            return Ok(call::redirect(&id, &addr, &user));
        }
        let connections = shard.api_online(&user).await;
        let node = (connections > 0).then_some(config.node_id.as_str());
        return Ok(call::ok(&json!({
            "userId": user,
            "online": connections > 0,
            "node": node,
            "connections": connections,
        })));
    }
    let len = call::body_len(head, config.max_message_bytes)?;
    let timeout = Duration::from_secs(config.handshake_timeout_secs);
    let body = read_body(stream, head, leftover, len, timeout).await?;
    let m = call::parse_message(endpoint, &body)?;
    let outcome = match endpoint {
        Endpoint::Publish => shard.api_publish(&m.target, &m.from, &m.id, m.data).await,
        _ => shard.api_send(&m.from, &m.target, &m.id, m.data).await,
    };
    match outcome {
        Ok(()) => Ok(call::ok(&json!({"id": m.id}))),
        Err((_, message)) => Err(ApiError::new(ApiErrorKind::Unavailable, message)),
    }
}

/// Reads the `len` bytes of the body (the first of which may be in
/// `leftover`) within `timeout`.
async fn read_body(
    stream: &mut TcpStream,
    head: &ApiHead,
    mut body: Vec<u8>,
    len: usize,
    timeout: Duration,
) -> Result<Vec<u8>, ApiError> {
    if body.len() < len && head.expect_continue {
        stream
            .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
            .await
            .map_err(|e| ApiError::new(ApiErrorKind::BadRequest, e.to_string()))?;
    }
    let read = async {
        let mut chunk = vec![0u8; 16 * 1024];
        while body.len() < len {
            let n = stream.read(&mut chunk).await.unwrap_or(0);
            if n == 0 {
                return Err(ApiError::new(
                    ApiErrorKind::BadRequest,
                    "the body ended before Content-Length",
                ));
            }
            body.extend_from_slice(&chunk[..n]);
        }
        body.truncate(len);
        Ok(body)
    };
    futures_lite::future::or(read, async {
        glommio::timer::sleep(timeout).await;
        Err(ApiError::new(ApiErrorKind::Timeout, "body too slow"))
    })
    .await
}
