//! A node with `--control URL`: heartbeats to `shardcast-ctl` and the rings
//! it publishes, followed into the node's [`RingSlot`].
//!
//! The loop is `control::client::RingFollower`, on a plain thread (never on
//! a core). Each heartbeat carries the node's id, WebSocket URL
//! (`--ws-url`, else `ws://LISTEN/ws`), weight, zone, open connections,
//! messages per second since the last beat, whether it drains, and the
//! newest ring version it has; when the control plane has a newer version
//! the ring is fetched and published to the cores, which route by it from
//! their next tick. With the control plane down the node keeps the ring it
//! has (and, before its first ring, owns every user like a standalone node).
//!
//! The cores then move the users a new ring gives to other nodes (see
//! `Shard::rebalance`).

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use crate::{
    config::Config,
    control::{
        client::{ControlClient, RingFollower},
        heartbeat::Heartbeat,
    },
    metrics::Metrics,
};

use super::rings::RingSlot;

/// Starts following the control plane at `url`; stops when dropped.
pub fn follow(
    config: &Config,
    url: &str,
    ws_addr: SocketAddr,
    rings: Arc<RingSlot>,
    metrics: Arc<Metrics>,
    drain: Arc<AtomicBool>,
) -> Result<RingFollower, String> {
    let interval = Duration::from_millis(config.heartbeat_ms.max(10));
    let client = ControlClient::new(url, interval.max(Duration::from_millis(500)))
        .map_err(|e| format!("{url}: {e}"))?;
    let ws_url = config
        .ws_url
        .clone()
        .unwrap_or_else(|| format!("ws://{ws_addr}/ws"));
    tracing::info!(control = url, ws_url = %ws_url, "following the control plane");
    let (node_id, weight, zone) = (config.node_id.clone(), config.weight, config.zone.clone());
    let mut last = (Instant::now(), metrics.messages());
    let beat = move || {
        let (now, messages) = (Instant::now(), metrics.messages());
        let secs = now.duration_since(last.0).as_secs_f64().max(1e-3);
        let mps = messages.saturating_sub(last.1) as f64 / secs;
        last = (now, messages);
        Heartbeat {
            node_id: node_id.clone(),
            ws_url: ws_url.clone(),
            weight,
            zone: zone.clone(),
            connections: metrics.active_connections(),
            mps,
            p95_ms: 0.0,
            draining: drain.load(Ordering::Relaxed),
            ring_version: 0,
        }
    };
    let known = rings.version();
    Ok(RingFollower::spawn(
        client,
        interval,
        known,
        beat,
        move |ring| {
            rings.publish(ring);
        },
    ))
}
