//! The Kafka ingest topic (`--ingest-topic`): backends produce
//! `{"to":U|"room":R,"id":I,"data":…[,"from":F]}` records, and the cluster
//! delivers each exactly as the server API's `POST /api/v1/send` or
//! `/publish` would (same checks, same routing, relayed across nodes).
//!
//! Every node runs one ingest consumer on core 0, all in one consumer group
//! (`shardcast-ingest`): each partition is read by one node at a time. A
//! record's offset is committed only once its message is durable (or the
//! record is refused as malformed), so a node that dies re-reads rather than
//! loses; a record whose delivery fails (store or broker unavailable) is
//! retried with backoff, never skipped. Records are handled one at a time
//! per node (order within a partition is kept).
//!
//! Duplicates by `id` within a window (`--ingest-dedup-window` ids per node,
//! default 100,000) are delivered once: a backend may produce a record
//! twice, and a re-read after a crash repeats the records after the last
//! commit. The window is per node and in memory: after a partition moves to
//! another node (or a restart) a repeat can get through once more, which
//! clients deduplicate by id like any at-least-once delivery.

use std::{collections::VecDeque, rc::Rc, time::Duration};

use rdkafka::{
    consumer::{CommitMode, Consumer, StreamConsumer},
    Message,
};
use rustc_hash::FxHashSet;

use crate::relay::{RelayContext, RelaySettings};

use super::{
    api::call::{parse_message, Endpoint},
    shard::Shard,
};

/// The group every node's ingest consumer joins.
pub const INGEST_GROUP: &str = "shardcast-ingest";

/// The ids seen lately, oldest first.
struct Window {
    ids: FxHashSet<Box<str>>,
    order: VecDeque<Box<str>>,
    cap: usize,
}

impl Window {
    fn new(cap: usize) -> Window {
        Window {
            ids: FxHashSet::default(),
            order: VecDeque::new(),
            cap: cap.max(1),
        }
    }

    fn seen(&self, id: &str) -> bool {
        self.ids.contains(id)
    }

    fn insert(&mut self, id: &str) {
        if self.ids.insert(id.into()) {
            self.order.push_back(id.into());
            if self.order.len() > self.cap {
                if let Some(old) = self.order.pop_front() {
                    self.ids.remove(&old);
                }
            }
        }
    }
}

/// What became of one record.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Delivered,
    Duplicate,
    Refused(String),
}

/// Reads `topic` forever and delivers its records through `shard` (core
/// 0's). `Err` only when the consumer cannot be set up.
pub async fn consume(
    shard: Rc<Shard>,
    settings: RelaySettings,
    topic: String,
    window: usize,
) -> Result<(), String> {
    let consumer: StreamConsumer<RelayContext> = settings
        .client()
        .set("group.id", INGEST_GROUP)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create_with_context(RelayContext)
        .map_err(|e| format!("kafka ingest consumer: {e}"))?;
    consumer
        .subscribe(&[&topic])
        .map_err(|e| format!("kafka ingest consumer: {e}"))?;
    let mut window = Window::new(window);
    loop {
        let message = match consumer.recv().await {
            Ok(m) => m,
            Err(e) => {
                tracing::debug!(error = %e, "ingest consumer");
                glommio::timer::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let value = message.payload().unwrap_or_default();
        let mut backoff = Duration::from_millis(50);
        let outcome = loop {
            match deliver(&shard, &mut window, value).await {
                Ok(outcome) => break outcome,
                Err(why) => {
                    // Not durable: the record stays uncommitted and is tried
                    // again, so nothing a backend produced is lost.
                    tracing::warn!(topic = %topic, offset = message.offset(), %why, "ingest: retrying");
                    glommio::timer::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
            }
        };
        shard
            .counters()
            .ingest(matches!(outcome, Outcome::Refused(_)));
        if let Outcome::Refused(why) = &outcome {
            tracing::warn!(topic = %topic, offset = message.offset(), %why, "ingest: record refused, skipped");
        }
        if let Err(e) = consumer.commit_message(&message, CommitMode::Async) {
            tracing::debug!(error = %e, "ingest commit");
        }
    }
}

/// Delivers one record's message; `Err` when it could not be made durable
/// (try again).
async fn deliver(shard: &Shard, window: &mut Window, value: &[u8]) -> Result<Outcome, String> {
    let endpoint = match serde_json::from_slice::<serde_json::Value>(value) {
        Ok(v) if v.get("room").is_some() => Endpoint::Publish,
        Ok(_) => Endpoint::Send,
        Err(e) => return Ok(Outcome::Refused(format!("not JSON: {e}"))),
    };
    let m = match parse_message(endpoint, value) {
        Ok(m) => m,
        Err(e) => {
            return Ok(Outcome::Refused(format!(
                "{}: {}",
                e.kind.as_str(),
                e.message
            )))
        }
    };
    if window.seen(&m.id) {
        return Ok(Outcome::Duplicate);
    }
    let result = match endpoint {
        Endpoint::Publish => shard.api_publish(&m.target, &m.from, &m.id, m.data).await,
        _ => shard.api_send(&m.from, &m.target, &m.id, m.data).await,
    };
    result.map_err(|(_, why)| why)?;
    window.insert(&m.id);
    Ok(Outcome::Delivered)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_forgets_the_oldest_ids() {
        let mut w = Window::new(2);
        w.insert("a");
        w.insert("b");
        w.insert("a");
        assert!(w.seen("a") && w.seen("b"));
        w.insert("c");
        assert!(!w.seen("a") && w.seen("b") && w.seen("c"));
    }
}
