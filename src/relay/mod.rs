//! The relay: cross-node delivery through Kafka. Nodes never connect to
//! each other; each core has its own producer, each node one consumer.
//!
//! **A direct message to a user owned by another node** (by the ring) is
//! appended by the sender's core to the recipient's Redis buffer itself:
//! the append gives its offset and makes it durable, and reports where the
//! user's session is (the session record in Redis names the node). Only
//! then, if the user is connected to another node, the message goes to that
//! node's topic (`shardcast.relay.<node id>`, key = recipient), whose
//! consumer hands it to the recipient's core, which queues it in offset
//! order. The sender's `ack` waits for both: the append and the broker's
//! acknowledgement of the record (`acks=all`); either failing answers
//! `unavailable`. An offline recipient costs no Kafka record at all.
//!
//! Why this shape (and not "Kafka is the log, the owner appends"): the
//! buffer in Redis is the only place a message must be durable, so a node
//! that dies — sender's or recipient's — loses nothing acked, with no
//! consumer offsets to commit, no takeover of a dead node's partition and
//! no ordering to rebuild across a ring change. Every ack means "in the
//! recipient's buffer", wherever the recipient is:
//! - recipient connected elsewhere and that node alive: the record reaches
//!   it; if not (node died, record lost), the user reconnects, resumes from
//!   its token, and the buffer replays it;
//! - recipient connecting meanwhile: its node records the session before
//!   reading the backlog (see `node::shard::session`), so an append either
//!   precedes the record (it is in the backlog) or follows it (it names the
//!   new node, and the record goes there);
//! - a ring change: the session record follows the user, not the ring, so a
//!   record goes to the node the user is actually on.
//!
//! Ordering: one sender's messages to one recipient are appended in send
//! order on the sender's core pipeline (ascending offsets), and the
//! recipient's connection queues offsets strictly in order (a relayed
//! message past a gap is held and the gap read from Redis, duplicates are
//! dropped: `node::order`). Kafka's own order (one partition per topic,
//! one producer per core) keeps gaps rare; correctness does not depend on it,
//! across retries, restarts or reconnects, which is why the producer is not
//! idempotent (see `producer.rs`).
//!
//! **Rooms** cross nodes through `shardcast.rooms` (one partition): the
//! publisher's core fans out on its node and produces one record that every
//! other node reads and fans out to its matching subscribers (a node skips
//! records it produced). Room messages are live only (no offset, no
//! buffer); the publisher's `ack` waits for the broker.
//!
//! Consumers start at the end of their topics, read at start-up, before
//! the node accepts its first connection: what a node's previous process
//! was sent is already in its users' buffers. Nothing is committed.

mod consumer;
mod producer;
pub mod wire;

use std::time::{Duration, Instant};

use rdkafka::{
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    consumer::{BaseConsumer, Consumer},
    types::RDKafkaErrorCode,
    ClientConfig,
};

use crate::config::Config;

pub use consumer::{consume, Record};
pub use producer::{Producer, RelayError};

/// The topic of room messages, read by every node.
pub const ROOMS_TOPIC: &str = "shardcast.rooms";

/// The topic of direct messages for the users connected to `node`.
pub fn node_topic(node: &str) -> String {
    format!("shardcast.relay.{node}")
}

/// What every relay client of a node is configured with.
#[derive(Debug, Clone)]
pub struct RelaySettings {
    pub brokers: String,
    pub node_id: String,
    pub linger: Duration,
    pub timeout: Duration,
    pub max_pending: usize,
    pub fetch_wait: Duration,
    /// The ingest topic, created at start-up with the others.
    pub ingest_topic: Option<String>,
}

impl RelaySettings {
    /// The relay settings of `config`, when `--kafka` is given.
    pub fn of(config: &Config) -> Option<RelaySettings> {
        Some(RelaySettings {
            brokers: config.kafka.clone()?,
            node_id: config.node_id.clone(),
            linger: Duration::from_micros(config.relay_linger_us),
            timeout: Duration::from_millis(config.kafka_timeout_ms),
            max_pending: config.relay_max_pending,
            fetch_wait: Duration::from_millis(config.relay_fetch_wait_ms.max(1)),
            ingest_topic: config.ingest_topic.clone(),
        })
    }

    /// A client configuration with the brokers and the relay's socket
    /// settings.
    pub fn client(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers)
            .set("client.id", format!("shardcast-{}", self.node_id))
            .set(
                "socket.timeout.ms",
                self.timeout.as_millis().max(10).to_string(),
            )
            .set("log_level", "4")
            // Latency: small produce and fetch requests leave at once
            // (Nagle would hold them for the previous one's ACK).
            .set("socket.nagle.disable", "true");
        c
    }
}

/// The context of every relay client: librdkafka's own logs and errors go
/// to `debug` (it reports every failed reconnect of every client, many per
/// second while a broker is down); the relay's state is in the metrics
/// (`rtc_relay_up`, `rtc_relay_errors_total`) and in one warning per change
/// (see the producer).
#[derive(Clone, Default)]
pub struct RelayContext;

impl rdkafka::ClientContext for RelayContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, log_message: &str) {
        tracing::debug!(?level, fac, "librdkafka: {log_message}");
    }

    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        tracing::debug!(%error, "librdkafka: {reason}");
    }
}

impl rdkafka::consumer::ConsumerContext for RelayContext {}

/// Where this node's consumer starts reading: the ends of its topics at
/// start-up.
#[derive(Debug, Clone, Copy)]
pub struct Start {
    pub node_from: i64,
    pub rooms_from: i64,
}

/// Start-up (blocking): waits up to `wait` for the brokers, creates this
/// node's topic and the rooms topic if missing, and reads where they end.
pub fn prepare(settings: &RelaySettings, wait: Duration) -> Result<Start, String> {
    let deadline = Instant::now() + wait;
    let consumer: BaseConsumer<RelayContext> = settings
        .client()
        .set("group.id", format!("shardcast-{}", settings.node_id))
        .set("enable.auto.commit", "false")
        .create_with_context(RelayContext)
        .map_err(|e| format!("kafka client: {e}"))?;
    let probe = settings.timeout.min(Duration::from_secs(2));
    loop {
        match consumer.fetch_metadata(None, probe) {
            Ok(_) => break,
            Err(e) if Instant::now() >= deadline => {
                return Err(format!(
                    "kafka at {} is not reachable: {e}",
                    settings.brokers
                ))
            }
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
    let node_topic = node_topic(&settings.node_id);
    let mut topics = vec![node_topic.as_str(), ROOMS_TOPIC];
    topics.extend(settings.ingest_topic.as_deref());
    create_topics(settings, &topics)?;
    let end = |topic: &str| {
        // A topic just created may need a moment before its leader answers.
        let deadline = Instant::now() + settings.timeout;
        loop {
            match consumer.fetch_watermarks(topic, 0, probe) {
                Ok((_, high)) => return Ok(high),
                Err(e) if Instant::now() >= deadline => {
                    return Err(format!("kafka topic {topic}: {e}"))
                }
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    };
    Ok(Start {
        node_from: end(&node_topic)?,
        rooms_from: end(ROOMS_TOPIC)?,
    })
}

fn create_topics(settings: &RelaySettings, names: &[&str]) -> Result<(), String> {
    let admin: AdminClient<RelayContext> = settings
        .client()
        .create_with_context(RelayContext)
        .map_err(|e| format!("kafka admin client: {e}"))?;
    // One partition: a topic's records keep their order, and one consumer
    // (the node's) reads it. The broker's default replication.
    let topics: Vec<NewTopic> = names
        .iter()
        .map(|n| NewTopic::new(n, 1, TopicReplication::Fixed(-1)))
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(settings.timeout));
    let results = futures_lite::future::block_on(admin.create_topics(&topics, &options))
        .map_err(|e| format!("kafka: cannot create topics: {e}"))?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                return Err(format!("kafka: cannot create topic {topic}: {code}"))
            }
        }
    }
    Ok(())
}
