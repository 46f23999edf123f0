//! The node's side of the control plane: a blocking client for
//! `shardcast-ctl` (heartbeat, ring fetch) and [`RingFollower`], the loop a
//! node runs on a plain std thread (never on a glommio core): heartbeat
//! every interval, fetch the ring when the control plane has a newer
//! version, hand it to the node.
//!
//! Why `ureq`: a blocking HTTP/1.1 client, well kept, no async runtime,
//! built here without TLS or compression (the control plane speaks plain
//! HTTP on the cluster network).
//!
//! Invariants: a ring is handed over only when its version is above every
//! version handed over before (or recorded with [`RingFollower::saw`],
//! for rings that came from Kafka); when the control plane is down the
//! follower keeps retrying and the node keeps the ring it has.

use std::{
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
#[derive(Clone)]
pub struct ControlClient {
    base: String,
    agent: ureq::Agent,
}

impl std::fmt::Debug for ControlClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlClient")
            .field("base", &self.base)
            .finish()
    }
}

impl ControlClient {
    /// A client for `base` (`http://ctl:8081`); each request gives up after
    /// `timeout`.
    pub fn new(base: &str, timeout: Duration) -> ControlClient {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .build()
            .into();
        ControlClient {
            base: base.trim_end_matches('/').to_owned(),
            agent,
        }
    }

    /// Sends one heartbeat.
    pub fn heartbeat(&self, hb: &Heartbeat) -> Result<HeartbeatReply, ClientError> {
        let body = serde_json::to_string(hb).map_err(|e| ClientError::Decode(e.to_string()))?;
        let response = self
            .agent
            .post(format!("{}/api/v1/nodes/heartbeat", self.base))
            .header("Content-Type", "application/json")
            .send(body.as_str());
        decode(response)
    }

    /// The published snapshot (its `nodes` are empty while no node is in
    /// the ring).
    pub fn ring_config(&self) -> Result<RingConfig, ClientError> {
        decode(self.agent.get(format!("{}/api/v1/ring", self.base)).call())
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
}

fn decode<T: serde::de::DeserializeOwned>(
    response: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
) -> Result<T, ClientError> {
    let mut response = response.map_err(|e| ClientError::Transport(e.to_string()))?;
    let status = response.status().as_u16();
    let text = response
        .body_mut()
        .with_config()
        .limit(MAX_RESPONSE_BYTES)
        .read_to_string()
        .map_err(|e| ClientError::Transport(e.to_string()))?;
    if status != 200 {
        let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        let field = |k: &str| v.get(k).and_then(|s| s.as_str()).unwrap_or("").to_owned();
        return Err(ClientError::Refused {
            status,
            error: field("error"),
            message: field("message"),
        });
    }
    serde_json::from_str(&text).map_err(|e| ClientError::Decode(e.to_string()))
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
    /// is sent; when the reply names a newer version, the ring is fetched
    /// and given to `on_ring`. `known` is the version the node starts with
    /// (0: none).
    pub fn spawn(
        client: ControlClient,
        interval: Duration,
        known: u64,
        mut beat: impl FnMut() -> Heartbeat + Send + 'static,
        mut on_ring: impl FnMut(Ring) + Send + 'static,
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
                    while !s.load(Ordering::Relaxed) && Instant::now() < next {
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

    /// The newest ring version handed over or recorded.
    pub fn version(&self) -> u64 {
        self.known.load(Ordering::Relaxed)
    }

    /// Records a version the node got elsewhere (the Kafka control topic),
    /// so the follower neither fetches nor hands over anything older.
    pub fn saw(&self, version: u64) {
        self.known.fetch_max(version, Ordering::Relaxed);
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

fn follow(client: &ControlClient, known: &AtomicU64, on_ring: &mut impl FnMut(Ring)) {
    match client.ring() {
        Ok(Some(ring)) => {
            if known.fetch_max(ring.version(), Ordering::Relaxed) < ring.version() {
                on_ring(ring);
            }
        }
        Ok(None) => {}
        Err(e) => tracing::warn!("ring fetch: {e}"),
    }
}
