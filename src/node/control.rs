//! A node with `--control URL`: heartbeats to `shardcast-ctl` and the rings
//! it publishes, followed into the node's [`RingSlot`].
//!
//! Two ways a ring arrives, both on plain threads (never on a core):
//! * the Kafka control topic (`--control-topic`, which `shardcast-ctl`
//!   produces every version to): a consumer reads it from its last record
//!   on, so a new ring reaches every node within one fetch
//!   (`fetch.wait.max.ms` [`TOPIC_FETCH_WAIT`]) of its publication;
//! * the heartbeat loop, `control::client::RingFollower`: each heartbeat
//!   carries the node's id, WebSocket URL (`--ws-url`, else
//!   `ws://LISTEN/ws`), weight, zone, open connections, messages per second
//!   since the last beat, whether it drains, and the newest ring version it
//!   has; when the control plane has a newer version the ring is fetched.
//!   This is the fallback when Kafka is silent.
//!
//! The slot keeps only newer versions, so the two never disagree. With the
//! control plane down the node keeps the ring it has (and, before its first
//! ring, owns every user like a standalone node). A drain is reported at
//! once, not at the next interval, so the control plane takes the node out
//! of the ring before its users are sent elsewhere (see
//! `Shard::start_drain`); so is a ring version a client says exists (the
//! `ring=` of its upgrade, from its `connect` answer), so the node fetches
//! it at once instead of sending the client back by an older ring.
//!
//! The cores then move the users a new ring gives to other nodes (see
//! `Shard::rebalance`).

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread,
    time::{Duration, Instant},
};

use rdkafka::{
    consumer::{BaseConsumer, Consumer},
    Message, Offset, TopicPartitionList,
};

use crate::{
    config::Config,
    control::{
        client::{ControlClient, RingFollower},
        heartbeat::Heartbeat,
    },
    metrics::Metrics,
    relay::{RelayContext, RelaySettings},
    ring::RingConfig,
};

use super::rings::RingSlot;

/// How long the broker may hold the control consumer's empty fetch: the
/// worst delay between a ring's publication and this node having it.
const TOPIC_FETCH_WAIT: Duration = Duration::from_millis(50);

/// The node's two ring followers; both stop when this is dropped.
pub struct Following {
    _heartbeats: RingFollower,
    topic: Option<TopicFollower>,
}

impl Drop for Following {
    fn drop(&mut self) {
        if let Some(t) = self.topic.take() {
            t.stop.store(true, Ordering::Relaxed);
            let _ = t.thread.join();
        }
    }
}

struct TopicFollower {
    stop: Arc<AtomicBool>,
    thread: thread::JoinHandle<()>,
}

/// Starts following the control plane at `url` (and its Kafka topic, with
/// `--kafka`); stops when dropped.
pub fn follow(
    config: &Config,
    url: &str,
    ws_addr: SocketAddr,
    rings: Arc<RingSlot>,
    metrics: Arc<Metrics>,
    drain: Arc<AtomicBool>,
) -> Result<Following, String> {
    let interval = Duration::from_millis(config.heartbeat_ms.max(10));
    let client = ControlClient::new(url, interval.max(Duration::from_millis(500)))
        .map_err(|e| format!("{url}: {e}"))?;
    let ws_url = config
        .ws_url
        .clone()
        .unwrap_or_else(|| format!("ws://{ws_addr}/ws"));
    tracing::info!(control = url, ws_url = %ws_url, "following the control plane");
    let topic = RelaySettings::of(config)
        .map(|settings| follow_topic(settings, config.control_topic.clone(), rings.clone()))
        .transpose()?;
    let (node_id, weight, zone) = (config.node_id.clone(), config.weight, config.zone.clone());
    let mut last = (Instant::now(), metrics.messages());
    let reported = Arc::new(AtomicBool::new(false));
    let (draining, reported_drain) = (drain.clone(), reported.clone());
    let beat = move || {
        let (now, messages) = (Instant::now(), metrics.messages());
        let secs = now.duration_since(last.0).as_secs_f64().max(1e-3);
        let mps = messages.saturating_sub(last.1) as f64 / secs;
        last = (now, messages);
        let draining = drain.load(Ordering::Relaxed);
        reported.store(draining, Ordering::Relaxed);
        Heartbeat {
            node_id: node_id.clone(),
            ws_url: ws_url.clone(),
            weight,
            zone: zone.clone(),
            connections: metrics.active_connections(),
            mps,
            p95_ms: 0.0,
            draining,
            ring_version: 0,
        }
    };
    // A drain that no heartbeat has reported yet, or a client sent here by
    // a ring we do not have (once per such version: a client cannot make
    // the node heartbeat in a loop).
    let slot = rings.clone();
    let mut asked = 0;
    let urgent = move || {
        let wanted = slot.wanted();
        let behind = wanted > slot.version() && wanted > asked;
        if behind {
            asked = wanted;
        }
        behind || (draining.load(Ordering::Relaxed) && !reported_drain.load(Ordering::Relaxed))
    };
    let known = rings.version();
    let heartbeats = RingFollower::spawn(client, interval, known, beat, urgent, move |config| {
        if let Err(e) = rings.offer(config) {
            tracing::warn!("ring from the control plane refused: {e}");
        }
    });
    Ok(Following {
        _heartbeats: heartbeats,
        topic,
    })
}

/// Reads `topic` from its last record on, on a thread of its own, and
/// puts every newer ring in `rings`. The control plane creates the topic
/// with its first version: until then the thread only looks for it.
fn follow_topic(
    settings: RelaySettings,
    topic: String,
    rings: Arc<RingSlot>,
) -> Result<TopicFollower, String> {
    let consumer: BaseConsumer<RelayContext> = settings
        .client()
        .set(
            "group.id",
            format!("shardcast-{}-control", settings.node_id),
        )
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set(
            "fetch.wait.max.ms",
            TOPIC_FETCH_WAIT.as_millis().to_string(),
        )
        .set("fetch.error.backoff.ms", "100")
        .set("auto.offset.reset", "earliest")
        .create_with_context(RelayContext)
        .map_err(|e| format!("kafka control consumer: {e}"))?;
    let stop = Arc::new(AtomicBool::new(false));
    let halt = stop.clone();
    let thread = thread::Builder::new()
        .name("control-topic".into())
        .spawn(move || {
            // Assigning a topic that does not exist yet makes librdkafka
            // retry in a tight loop of errors: wait until it is there.
            let mut assigned = false;
            while !halt.load(Ordering::Relaxed) {
                if !assigned {
                    assigned = topic_exists(&consumer, &topic) && assign_last(&consumer, &topic);
                    if !assigned {
                        thread::sleep(Duration::from_millis(500));
                    }
                    continue;
                }
                match consumer.poll(Duration::from_millis(100)) {
                    None => {}
                    Some(Err(e)) => tracing::debug!(error = %e, "control topic"),
                    Some(Ok(message)) => {
                        let offered = serde_json::from_slice::<RingConfig>(
                            message.payload().unwrap_or_default(),
                        )
                        .map_err(|e| e.to_string())
                        .and_then(|c| {
                            let version = c.version;
                            rings
                                .offer(c)
                                .map(|new| (version, new))
                                .map_err(|e| e.to_string())
                        });
                        match offered {
                            Ok((version, true)) => {
                                tracing::debug!(version, "ring from the control topic");
                            }
                            Ok((_, false)) => {}
                            // An empty ring (every node left) or a record of
                            // another kind: nothing to route by.
                            Err(e) => tracing::debug!("control topic record skipped: {e}"),
                        }
                    }
                }
            }
        })
        .map_err(|e| format!("control topic thread: {e}"))?;
    Ok(TopicFollower { stop, thread })
}

fn topic_exists(consumer: &BaseConsumer<RelayContext>, topic: &str) -> bool {
    consumer
        .fetch_metadata(Some(topic), Duration::from_secs(2))
        .is_ok_and(|m| {
            m.topics()
                .iter()
                .any(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty())
        })
}

fn assign_last(consumer: &BaseConsumer<RelayContext>, topic: &str) -> bool {
    let mut assignment = TopicPartitionList::new();
    let ok = assignment
        .add_partition_offset(topic, 0, Offset::OffsetTail(1))
        .and_then(|_| consumer.assign(&assignment));
    match ok {
        Ok(()) => true,
        Err(e) => {
            tracing::debug!(error = %e, "control topic assignment");
            false
        }
    }
}
