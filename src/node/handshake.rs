//! Accepting sockets and the HTTP side of the main port: `/health`, the
//! upgrade of `/ws` and `/echo`, admission control, and the hand-off of an
//! upgraded socket to the core that owns its user.
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
use tungstenite::handshake::{
    machine::TryParse,
    server::{create_response, write_response, Request},
};

use crate::{metrics::Rejection, protocol::valid_user_id};

use super::{
    mesh::{CoreMsg, Handoff},
    shard::Shard,
    shard_of,
    ws::{self, Endpoint},
};

/// Largest upgrade request accepted.
const MAX_REQUEST_BYTES: usize = 8 * 1024;

/// Accepts connections until the core starts draining.
pub async fn accept_loop(shard: Rc<Shard>, listener: TcpListener) {
    loop {
        let accepted = futures_lite::future::or(async { Some(listener.accept().await) }, async {
            shard.drain_started.wait().await;
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
                tracing::warn!(core = shard.id, error = %e, "accept failed");
                glommio::timer::sleep(Duration::from_millis(50)).await;
            }
        }
    }
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

fn text_response(status: &str, body: &str) -> Vec<u8> {
    http_response(
        status,
        &[("Content-Type", "text/plain; charset=utf-8")],
        body,
    )
}

/// Reads one HTTP request head; `Err` carries the response to send.
pub async fn read_request(
    stream: &mut TcpStream,
    timeout: Duration,
) -> Result<(Request, Vec<u8>), Option<Vec<u8>>> {
    let mut buf = Vec::with_capacity(512);
    let read = async {
        let mut chunk = [0u8; 1024];
        loop {
            let n = stream.read(&mut chunk).await.map_err(|_| None)?;
            if n == 0 {
                return Err(None);
            }
            buf.extend_from_slice(&chunk[..n]);
            match Request::try_parse(&buf) {
                Ok(Some((len, req))) => return Ok((req, buf.split_off(len))),
                Ok(None) if buf.len() < MAX_REQUEST_BYTES => continue,
                Ok(None) => {
                    return Err(Some(text_response(
                        "431 Request Header Fields Too Large",
                        "request head over 8 KiB\n",
                    )))
                }
                Err(e) => {
                    return Err(Some(text_response(
                        "400 Bad Request",
                        &format!("not a valid HTTP GET request: {e}\n"),
                    )))
                }
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

fn query_param(req: &Request, name: &str) -> Option<String> {
    form_urlencoded::parse(req.uri().query()?.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

async fn reply(mut stream: TcpStream, response: Vec<u8>) {
    let _ = stream.write_all(&response).await;
    let _ = stream.close().await;
}

async fn handle(shard: Rc<Shard>, mut stream: TcpStream) {
    let timeout = Duration::from_secs(shard.config.handshake_timeout_secs);
    let (req, leftover) = match read_request(&mut stream, timeout).await {
        Ok(r) => r,
        Err(Some(response)) => return reply(stream, response).await,
        Err(None) => return,
    };
    let path = req.uri().path();
    let endpoint = match path {
        "/health" => {
            let status = if shard.draining.get() {
                "draining"
            } else {
                "ok"
            };
            let body = format!(
                "{{\"status\":\"{status}\",\"node\":{},\"connections\":{}}}\n",
                serde_json::to_string(&shard.config.node_id).unwrap_or_default(),
                shard.metrics.active_connections()
            );
            let code = if shard.draining.get() {
                "503 Service Unavailable"
            } else {
                "200 OK"
            };
            let response = http_response(code, &[("Content-Type", "application/json")], &body);
            return reply(stream, response).await;
        }
        "/ws" => Endpoint::Messaging,
        "/echo" if shard.config.echo => Endpoint::Echo,
        _ => return reply(stream, text_response("404 Not Found", "no such endpoint\n")).await,
    };
    let user = match endpoint {
        Endpoint::Echo => String::new(),
        Endpoint::Messaging => match query_param(&req, "userId") {
            Some(u) if valid_user_id(&u) => u,
            Some(_) => {
                let body = "userId must be 1..=128 bytes of letters, digits and -_.@:+=\n";
                return reply(stream, text_response("400 Bad Request", body)).await;
            }
            None => {
                let body = "missing userId query parameter\n";
                return reply(stream, text_response("400 Bad Request", body)).await;
            }
        },
    };
    let mut response = Vec::with_capacity(160);
    match create_response(&req) {
        Ok(r) => write_response(&mut response, &r).expect("writing to a Vec cannot fail"),
        Err(e) => {
            let body = format!("not a WebSocket upgrade: {e}\n");
            return reply(stream, text_response("400 Bad Request", &body)).await;
        }
    }
    if let Err(why) = shard.admit() {
        shard.counters().rejected(why);
        let retry = match why {
            Rejection::Rate => "1",
            Rejection::Capacity | Rejection::Draining => "5",
        };
        let response = http_response(
            "503 Service Unavailable",
            &[("Retry-After", retry), ("Content-Type", "text/plain")],
            "over capacity, retry later\n",
        );
        return reply(stream, response).await;
    }
    let resume = query_param(&req, "resume");
    let owner = match endpoint {
        Endpoint::Echo => shard.id,
        Endpoint::Messaging => shard_of(&user, shard.mesh.cores()),
    };
    if owner == shard.id {
        return ws::start(
            &shard,
            stream,
            endpoint,
            user.into(),
            resume,
            response,
            leftover,
        );
    }
    // SAFETY: dup returns a new descriptor that nothing else owns.
    let fd = unsafe { libc::dup(stream.as_raw_fd()) };
    if fd < 0 {
        let response = http_response("503 Service Unavailable", &[("Retry-After", "1")], "");
        return reply(stream, response).await;
    }
    drop(stream);
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    shard.mesh.send(
        owner,
        CoreMsg::Handoff(Box::new(Handoff {
            fd,
            user,
            resume,
            response,
            leftover,
        })),
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
                Ok((req, _)) if req.uri().path() == "/metrics" => http_response(
                    "200 OK",
                    &[("Content-Type", "text/plain; version=0.0.4")],
                    &shard.metrics.render(),
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
