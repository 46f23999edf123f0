//! A node's Kafka consumer: reads the node's topic and the rooms topic and
//! hands each record to the node (which passes it to the owning core).
//!
//! It runs as a task on core 0. librdkafka fetches on its own thread and
//! wakes the task when records are waiting (its queue's non-empty
//! callback), so an idle relay costs no polling. Partitions are assigned,
//! not subscribed: no consumer group, no rebalances, nothing committed (see
//! the module docs of `relay` for why nothing needs to be).

use std::time::Duration;

use rdkafka::{
    consumer::{Consumer, StreamConsumer},
    Message, Offset, TopicPartitionList,
};

use super::{
    node_topic,
    wire::{self, DirectRecord, RoomRecord},
    RelayContext, RelaySettings, Start, ROOMS_TOPIC,
};

/// A record for this node.
pub enum Record<'a> {
    Direct(DirectRecord<'a>),
    Room(RoomRecord<'a>),
}

/// Reads this node's records from `start` on, forever, calling `on` for
/// each (in topic order); records that do not parse are logged and
/// skipped. `Err` only when the consumer cannot be set up.
pub async fn consume(
    settings: RelaySettings,
    start: Start,
    mut on: impl FnMut(Record<'_>),
) -> Result<(), String> {
    let consumer: StreamConsumer<RelayContext> = settings
        .client()
        .set("group.id", format!("shardcast-{}", settings.node_id))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        // Latency over throughput: ask the broker to answer a fetch at
        // once when it has something, and to hold an empty one briefly.
        .set(
            "fetch.wait.max.ms",
            settings.fetch_wait.as_millis().to_string(),
        )
        .set("fetch.error.backoff.ms", "50")
        // Should the position ever be out of range, read what is there.
        .set("auto.offset.reset", "earliest")
        .create_with_context(RelayContext)
        .map_err(|e| format!("kafka consumer: {e}"))?;
    let own = node_topic(&settings.node_id);
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(&own, 0, Offset::Offset(start.node_from))
        .and_then(|_| {
            assignment.add_partition_offset(ROOMS_TOPIC, 0, Offset::Offset(start.rooms_from))
        })
        .and_then(|_| consumer.assign(&assignment))
        .map_err(|e| format!("kafka consumer: {e}"))?;
    loop {
        let message = match consumer.recv().await {
            Ok(m) => m,
            Err(e) => {
                // librdkafka reconnects by itself; the error is only news.
                tracing::debug!(error = %e, "relay consumer");
                glommio::timer::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let key = message.key().unwrap_or_default();
        let value = message.payload().unwrap_or_default();
        let record = if message.topic() == own {
            wire::parse_direct(key, value).map(Record::Direct)
        } else {
            match wire::parse_room(key, value) {
                Some(r) if r.origin == settings.node_id => continue,
                other => other.map(Record::Room),
            }
        };
        match record {
            Some(r) => on(r),
            None => tracing::warn!(
                topic = message.topic(),
                offset = message.offset(),
                "relay record that does not parse, skipped"
            ),
        }
    }
}
