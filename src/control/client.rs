//! The node's side of the control plane: a blocking client for
//! `shardcast-ctl` (heartbeat, ring fetch) and [`RingFollower`], the loop a
//! node runs on a plain std thread (never on a glommio core): heartbeat
//! every interval, fetch the ring when the control plane has a newer
//! version, hand it to the node.
//!
//! HTTP: a plain HTTP/1.1 exchange per request over `std::net::TcpStream`
//! (`Connection: close`, the response parsed with `httparse`, the crate's
//! HTTP parser already). **Decision:** not `ureq`: ureq 3 needs Rust 1.85
//! and the workspace builds with 1.80; a heartbeat every few hundred
//! milliseconds needs neither TLS nor connection reuse (the control plane
//! is on the cluster network).
//!
//! Invariants: a ring is handed over only when its version is above every
//! version handed over before (a node that also reads the Kafka control
//! topic drops what it already has: `node::rings::RingSlot::offer`); when
//! the control plane is down the follower keeps retrying and the node keeps
//! the ring it has.

use std::{
    io::{Read, Write},
    net::{TcpStream, ToSocketAddrs},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    thread,
    time::{Duration, Instant},
};

use thiserror::Error;

use super::heartbeat::{Heartbeat, HeartbeatReply};
use crate::ring::{Ring, RingConfig};

/// Largest response body read, in bytes (a ring of 65,535 nodes is ~8 MB).
const MAX_RESPONSE_BYTES: u64 = 16 << 20;

/// A request to the control plane that failed.
#[derive(Debug, Error)]
pub enum ClientError {
    /// The base URL is not `http://HOST:PORT`.
    #[error("control-plane URL {0:?} is not http://HOST[:PORT]")]
    BadUrl(String),
    /// No answer: connection refused, timeout, broken response.
    #[error("control plane unreachable: {0}")]
    Transport(String),
    /// An error answer (`{"error","message"}`).
    #[error("control plane answered {status} {error}: {message}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// The `error` code.
        error: String,
        /// The `message`.
        message: String,
    },
    /// A 200 whose body is not what the API promises.
    #[error("unexpected answer: {0}")]
    Decode(String),
}

/// A blocking client for one control plane.
#[derive(Debug, Clone)]
pub struct ControlClient {
    /// `host:port`, as given (the `Host` header and what is resolved).
    authority: String,
    /// The path prefix of the base URL (`""` or `/prefix`).
    prefix: String,
    timeout: Duration,
}

impl ControlClient {
    /// A client for `base` (`http://ctl:8081`); each connect, read and
    /// write gives up after `timeout`.
    pub fn new(base: &str, timeout: Duration) -> Result<ControlClient, ClientError> {
        let bad = || ClientError::BadUrl(base.to_owned());
        let rest = base.strip_prefix("http://").ok_or_else(bad)?;
        let (authority, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if authority.is_empty() || !authority.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(bad());
        }
        let authority = if authority
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        {
            authority.to_owned()
        } else {
            format!("{authority}:80")
        };
        let prefix = prefix.trim_end_matches('/');
        Ok(ControlClient {
            authority,
            prefix: if prefix.is_empty() {
                String::new()
            } else {
                format!("/{prefix}")
            },
            timeout,
        })
    }

    /// Sends one heartbeat.
    pub fn heartbeat(&self, hb: &Heartbeat) -> Result<HeartbeatReply, ClientError> {
        let body = serde_json::to_vec(hb).map_err(|e| ClientError::Decode(e.to_string()))?;
        decode(self.exchange("POST", "/api/v1/nodes/heartbeat", &body)?)
    }

    /// The published snapshot (its `nodes` are empty while no node is in
    /// the ring).
    pub fn ring_config(&self) -> Result<RingConfig, ClientError> {
        decode(self.exchange("GET", "/api/v1/ring", b"")?)
    }

    /// The published ring, built; `None` while no node is in it.
    pub fn ring(&self) -> Result<Option<Ring>, ClientError> {
        let config = self.ring_config()?;
        if config.nodes.is_empty() {
            return Ok(None);
        }
        Ring::new(config)
            .map(Some)
            .map_err(|e| ClientError::Decode(e.to_string()))
    }

    /// `GET path` (for example `/metrics`): the status and the body.
    pub fn get(&self, path: &str) -> Result<(u16, String), ClientError> {
        let (status, body) = self.exchange("GET", path, b"")?;
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    }

    /// One request on a connection of its own: (status, body).
    fn exchange(
        &self,
        method: &str,
        path: &str,
        body: &[u8],
    ) -> Result<(u16, Vec<u8>), ClientError> {
        let io = |e: std::io::Error| ClientError::Transport(e.to_string());
        let mut last = None;
        let mut stream = None;
        for addr in self.authority.to_socket_addrs().map_err(io)? {
            match TcpStream::connect_timeout(&addr, self.timeout) {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        let mut stream = stream.ok_or_else(|| {
            ClientError::Transport(last.map_or("no address".into(), |e| e.to_string()))
        })?;
        stream.set_read_timeout(Some(self.timeout)).map_err(io)?;
        stream.set_write_timeout(Some(self.timeout)).map_err(io)?;
        let _ = stream.set_nodelay(true);
        let mut request = format!(
            "{method} {}{path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nUser-Agent: shardcast-node\r\n",
            self.prefix, self.authority
        );
        if method == "POST" {
            request.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                body.len()
            ));
        }
        request.push_str("\r\n");
        let mut out = request.into_bytes();
        out.extend_from_slice(body);
        stream.write_all(&out).map_err(io)?;
        let mut raw = Vec::new();
        stream
            .take(MAX_RESPONSE_BYTES + 1)
            .read_to_end(&mut raw)
            .map_err(io)?;
        if raw.len() as u64 > MAX_RESPONSE_BYTES {
            return Err(ClientError::Transport("response too large".into()));
        }
        parse_response(&raw)
    }
}

/// A complete HTTP/1.1 response (read to EOF): status and body, the body
/// cut at `Content-Length` or de-chunked.
fn parse_response(raw: &[u8]) -> Result<(u16, Vec<u8>), ClientError> {
    let broken = |why: &str| ClientError::Transport(format!("bad HTTP response: {why}"));
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut response = httparse::Response::new(&mut headers);
    let head = match response.parse(raw) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Err(broken("truncated head")),
        Err(e) => return Err(broken(&e.to_string())),
    };
    let status = response.code.ok_or_else(|| broken("no status"))?;
    let header = |name: &str| {
        response
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).trim().to_ascii_lowercase())
    };
    let mut body = &raw[head..];
    if header("transfer-encoding").is_some_and(|t| t.contains("chunked")) {
        let mut out = Vec::new();
        loop {
            let line_end = body
                .windows(2)
                .position(|w| w == b"\r\n")
                .ok_or_else(|| broken("truncated chunk"))?;
            let size = std::str::from_utf8(&body[..line_end])
                .ok()
                .and_then(|l| usize::from_str_radix(l.split(';').next()?.trim(), 16).ok())
                .ok_or_else(|| broken("bad chunk size"))?;
            body = &body[line_end + 2..];
            if size == 0 {
                return Ok((status, out));
            }
            if body.len() < size + 2 {
                return Err(broken("truncated chunk"));
            }
            out.extend_from_slice(&body[..size]);
            body = &body[size + 2..];
        }
    }
    if let Some(n) = header("content-length").and_then(|n| n.parse::<usize>().ok()) {
        if body.len() < n {
            return Err(broken("truncated body"));
        }
        body = &body[..n];
    }
    Ok((status, body.to_vec()))
}

fn decode<T: serde::de::DeserializeOwned>(
    (status, body): (u16, Vec<u8>),
) -> Result<T, ClientError> {
    if status != 200 {
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        let field = |k: &str| v.get(k).and_then(|s| s.as_str()).unwrap_or("").to_owned();
        return Err(ClientError::Refused {
            status,
            error: field("error"),
            message: field("message"),
        });
    }
    serde_json::from_slice(&body).map_err(|e| ClientError::Decode(e.to_string()))
}

/// Heartbeats and ring following on a thread of its own; stops when
/// dropped.
pub struct RingFollower {
    stop: Arc<AtomicBool>,
    known: Arc<AtomicU64>,
    thread: Option<thread::JoinHandle<()>>,
}

impl RingFollower {
    /// Starts the loop: every `interval`, `beat()` gives the heartbeat
    /// (its `ringVersion` is set to the newest version known here) and it
    /// is sent; when the reply names a newer version, the ring snapshot is fetched
    /// and given to `on_ring`. `known` is the version the node starts with
    /// (0: none).
    ///
    /// `urgent()` is asked between beats (every 50 ms at most): when it
    /// says true the next heartbeat goes at once (a node that starts
    /// draining tells the control plane without waiting for its interval).
    pub fn spawn(
        client: ControlClient,
        interval: Duration,
        known: u64,
        mut beat: impl FnMut() -> Heartbeat + Send + 'static,
        mut urgent: impl FnMut() -> bool + Send + 'static,
        mut on_ring: impl FnMut(RingConfig) + Send + 'static,
    ) -> RingFollower {
        let stop = Arc::new(AtomicBool::new(false));
        let known = Arc::new(AtomicU64::new(known));
        let (s, k) = (Arc::clone(&stop), Arc::clone(&known));
        let thread = thread::Builder::new()
            .name("control-follower".into())
            .spawn(move || {
                let mut next = Instant::now();
                let mut failing = false;
                while !s.load(Ordering::Relaxed) {
                    let mut hb = beat();
                    hb.ring_version = k.load(Ordering::Relaxed);
                    match client.heartbeat(&hb) {
                        Ok(reply) => {
                            if failing {
                                tracing::info!("control plane reachable again");
                                failing = false;
                            }
                            if reply.ring_version > k.load(Ordering::Relaxed) {
                                follow(&client, &k, &mut on_ring);
                            }
                        }
                        Err(e) => {
                            if !failing {
                                tracing::warn!("heartbeat: {e}; keeping the current ring");
                                failing = true;
                            }
                        }
                    }
                    next += interval;
                    let now = Instant::now();
                    if next < now {
                        next = now;
                    }
                    // Sleep in short steps so that a stop is noticed soon.
                    while !s.load(Ordering::Relaxed) && Instant::now() < next && !urgent() {
                        thread::sleep(
                            next.saturating_duration_since(Instant::now())
                                .min(Duration::from_millis(50)),
                        );
                    }
                }
            })
            .expect("spawn the control follower");
        RingFollower {
            stop,
            known,
            thread: Some(thread),
        }
    }

    /// The newest ring version handed over.
    pub fn version(&self) -> u64 {
        self.known.load(Ordering::Relaxed)
    }

    /// Stops the loop and waits for it (at most one request's timeout).
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for RingFollower {
    fn drop(&mut self) {
        self.halt();
    }
}

fn follow(client: &ControlClient, known: &AtomicU64, on_ring: &mut impl FnMut(RingConfig)) {
    match client.ring_config() {
        // An empty snapshot (every node left) is nothing to route by.
        Ok(config) if config.nodes.is_empty() => {}
        Ok(config) => {
            if known.fetch_max(config.version, Ordering::Relaxed) < config.version {
                on_ring(config);
            }
        }
        Err(e) => tracing::warn!("ring fetch: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_are_checked() {
        let c = ControlClient::new("http://ctl:8081/", Duration::from_secs(1)).unwrap();
        assert_eq!((c.authority.as_str(), c.prefix.as_str()), ("ctl:8081", ""));
        let c = ControlClient::new("http://10.0.0.1/ctl/", Duration::from_secs(1)).unwrap();
        assert_eq!(
            (c.authority.as_str(), c.prefix.as_str()),
            ("10.0.0.1:80", "/ctl")
        );
        for bad in ["https://ctl", "ctl:8081", "http://", "http://a b:1"] {
            assert!(matches!(
                ControlClient::new(bad, Duration::from_secs(1)),
                Err(ClientError::BadUrl(_))
            ));
        }
    }

    #[test]
    fn responses_are_cut_at_their_length_or_dechunked() {
        let plain = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}junk";
        assert_eq!(parse_response(plain).unwrap(), (200, b"{}".to_vec()));
        let chunked =
            b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n";
        assert_eq!(parse_response(chunked).unwrap(), (404, b"abcde".to_vec()));
        for broken in [
            &b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n{}"[..],
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            b"HTTP/1.1 200",
            b"garbage\r\n\r\n",
        ] {
            assert!(matches!(
                parse_response(broken),
                Err(ClientError::Transport(_))
            ));
        }
    }
}
