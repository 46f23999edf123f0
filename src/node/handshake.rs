//! Accepting sockets and the HTTP side of the main port: `/health`, the
//! upgrade of `/ws` and `/echo`, admission control, the hand-off of an
//! upgraded socket to the core that owns its user, and the server API's
//! requests (passed to `node::api` on the accepting core).
//!
//! Every core accepts on its own `SO_REUSEPORT` listener (the kernel spreads
//! connections over the cores by 4-tuple hash, with no shared accept queue
//! or lock). The upgrade request is read on the accepting core, into a
//! buffer that lives only until the request is parsed. Once it names the
//! user, the socket is either served here or duplicated and passed, with
//! the 101 response and any bytes read past the request, to the owning core.

use std::{
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    rc::Rc,
    time::Duration,
};

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::{TcpListener, TcpStream};
use tungstenite::handshake::server::Request;

use crate::metrics::Rejection;

use super::{
    api::{self, ApiHead},
    http::{self, http_response, text_response, Gate, Head, Target},
    mesh::{Handoff, Session},
    shard::{unix_now, Owner, Shard},
    ws::{self, Upgrade},
};

/// Accepts connections until the core starts draining.
pub async fn accept_loop(shard: Rc<Shard>, listener: TcpListener) {
    loop {
        let accepted = futures_lite::future::or(async { Some(listener.accept().await) }, async {
            shard.drain_started().wait().await;
            None
        })
        .await;
        match accepted {
            None => return,
            Some(Ok(stream)) => {
                glommio::spawn_local(handle(shard.clone(), stream)).detach();
            }
            Some(Err(e)) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(core = shard.id(), error = %e, "accept failed");
                glommio::timer::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// A request head that was read.
#[allow(clippy::large_enum_variant)] // one per request, on the stack, never stored
pub enum Incoming {
    /// An upgrade (or `/health`, or an unknown path).
    Http(Request),
    /// A server API request.
    Api(ApiHead),
}

/// Reads one HTTP request head and the bytes read after it; `Err` carries
/// the response to send, if any.
pub async fn read_request(
    stream: &mut TcpStream,
    timeout: Duration,
) -> Result<(Incoming, Vec<u8>), Option<Vec<u8>>> {
    let mut buf = Vec::with_capacity(512);
    let read = async {
        let mut chunk = [0u8; 1024];
        loop {
            let n = stream.read(&mut chunk).await.map_err(|_| None)?;
            if n == 0 {
                return Err(None);
            }
            buf.extend_from_slice(&chunk[..n]);
            match http::parse_head(&buf).map_err(Some)? {
                Head::Complete { request, len } => {
                    return Ok((Incoming::Http(request), buf.split_off(len)))
                }
                Head::Api { head, len } => return Ok((Incoming::Api(head), buf.split_off(len))),
                Head::Partial => continue,
            }
        }
    };
    futures_lite::future::or(read, async {
        glommio::timer::sleep(timeout).await;
        Err(Some(text_response(
            "408 Request Timeout",
            "request head too slow\n",
        )))
    })
    .await
}

/// Longest an upgrade waits for the ring version its client names.
const RING_HINT_WAIT: Duration = Duration::from_secs(1);

async fn reply(mut stream: TcpStream, response: Vec<u8>) {
    let _ = stream.write_all(&response).await;
    let _ = stream.close().await;
}

fn health(shard: &Shard) -> Vec<u8> {
    let config = shard.config();
    let (code, status) = if shard.is_draining() {
        ("503 Service Unavailable", "draining")
    } else if !shard.metrics().store_available() {
        ("503 Service Unavailable", "degraded")
    } else {
        ("200 OK", "ok")
    };
    let body = format!(
        "{{\"status\":\"{status}\",\"node\":{},\"connections\":{}}}\n",
        serde_json::to_string(&config.node_id).unwrap_or_default(),
        shard.metrics().active_connections()
    );
    http_response(code, &[("Content-Type", "application/json")], &body)
}

async fn handle(shard: Rc<Shard>, mut stream: TcpStream) {
    let timeout = Duration::from_secs(shard.config().handshake_timeout_secs);
    let (req, leftover) = match read_request(&mut stream, timeout).await {
        Ok((Incoming::Http(req), leftover)) => (req, leftover),
        Ok((Incoming::Api(head), leftover)) => {
            return api::serve(shard, stream, head, leftover).await
        }
        Err(Some(response)) => return reply(stream, response).await,
        Err(None) => return,
    };
    let config = shard.config();
    let gate = Gate {
        echo: config.echo,
        jwt: config.jwt.as_deref(),
        origins: config.origins.as_ref(),
    };
    let target = match http::target(&req, &gate, unix_now()) {
        Ok(t) => t,
        Err(refusal) => {
            if let Some(reason) = refusal.reason {
                shard.counters().auth_failure(reason);
            }
            return reply(stream, refusal.response).await;
        }
    };
    if let Target::Messaging { user, .. } = &target {
        // A client sent here by a ring newer than this core's tick has
        // seen (a failover): route by the newest ring the node has.
        shard.follow_ring();
        if let Owner::Node(_) = shard.owner(user) {
            // The client's `connect` answer came from a newer ring than
            // ours (`ring=`): wait for it rather than send the client back
            // to the node it came from (maybe a dead one).
            let hint = http::query_param(&req, "ring").and_then(|v| v.parse::<u64>().ok());
            if let Some(version) = hint.filter(|&v| v > shard.ring_version()) {
                shard.await_ring(version, RING_HINT_WAIT).await;
            }
        }
        if let Owner::Node(node) = shard.owner(user) {
            return reply(stream, redirect(&shard, node, req.uri().query())).await;
        }
    }
    match target {
        Target::Health => reply(stream, health(&shard)).await,
        Target::Echo { response } => match admit(&shard) {
            Ok(()) => ws::start(&shard, stream, Upgrade::Echo, response, leftover),
            Err(refusal) => reply(stream, refusal).await,
        },
        Target::Messaging {
            user,
            resume,
            response,
            grant,
        } => match admit(&shard) {
            Ok(()) => {
                let session = Session {
                    user,
                    resume,
                    grant: grant.map(Box::new),
                };
                start_messaging(&shard, stream, session, response, leftover).await
            }
            Err(refusal) => reply(stream, refusal).await,
        },
    }
}

/// The answer to an upgrade for a user another node owns: 307 to that
/// node's WebSocket URL (its `addr` in the ring) with the same query, and
/// a JSON body naming it for clients that do not follow redirects.
fn redirect(shard: &Shard, node: usize, query: Option<&str>) -> Vec<u8> {
    let Some((id, addr)) = shard.node_address(node).filter(|(_, a)| !a.is_empty()) else {
        return http_response(
            "503 Service Unavailable",
            &[("Retry-After", "1"), ("Content-Type", "text/plain")],
            "the user's node has no address in the ring\n",
        );
    };
    let location = match query {
        Some(q) => format!("{addr}?{q}"),
        None => addr.clone(),
    };
    let body = serde_json::json!({"error": "wrong_node", "node": id, "wsUrl": location});
    http_response(
        "307 Temporary Redirect",
        &[
            ("Location", location.as_str()),
            ("Content-Type", "application/json"),
        ],
        &format!("{body}\n"),
    )
}

/// Admission control; `Err` is the 503 to answer with.
fn admit(shard: &Shard) -> Result<(), Vec<u8>> {
    shard.admit().map_err(|why| {
        shard.counters().rejected(why);
        let retry = match why {
            Rejection::Rate => "1",
            Rejection::Capacity | Rejection::Draining | Rejection::StoreDown => "5",
        };
        http_response(
            "503 Service Unavailable",
            &[("Retry-After", retry), ("Content-Type", "text/plain")],
            "over capacity, retry later\n",
        )
    })
}

/// Serves an admitted `/ws` upgrade here, or hands it to the owning core.
async fn start_messaging(
    shard: &Rc<Shard>,
    stream: TcpStream,
    session: Session,
    response: Vec<u8>,
    leftover: Vec<u8>,
) {
    let core = match shard.owner(&session.user) {
        Owner::Here => {
            let upgrade = Upgrade::Messaging(session);
            return ws::start(shard, stream, upgrade, response, leftover);
        }
        Owner::Core(core) => core,
        // `handle` redirected these before admission.
        Owner::Node(_) => unreachable!("a user of another node is redirected"),
    };
    // SAFETY: dup returns a new descriptor that nothing else owns.
    let fd = unsafe { libc::dup(stream.as_raw_fd()) };
    if fd < 0 {
        let response = http_response("503 Service Unavailable", &[("Retry-After", "1")], "");
        return reply(stream, response).await;
    }
    drop(stream);
    // SAFETY: `fd` is the valid descriptor dup returned above, owned by no
    // one else; the OwnedFd closes it exactly once.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    shard.hand_off(
        core,
        Handoff {
            fd,
            session,
            response,
            leftover,
        },
    );
}

/// Serves `GET /metrics` on the metrics port (core 0 only).
pub async fn metrics_loop(shard: Rc<Shard>, listener: TcpListener) {
    loop {
        let Ok(mut stream) = listener.accept().await else {
            glommio::timer::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let shard = shard.clone();
        glommio::spawn_local(async move {
            let response = match read_request(&mut stream, Duration::from_secs(5)).await {
                Ok((Incoming::Http(req), _)) if req.uri().path() == "/metrics" => http_response(
                    "200 OK",
                    &[("Content-Type", "text/plain; version=0.0.4")],
                    &shard.metrics().render(),
                ),
                Ok(_) => text_response("404 Not Found", "try /metrics\n"),
                Err(Some(r)) => r,
                Err(None) => return,
            };
            reply(stream, response).await;
        })
        .detach();
    }
}
