//! A core's Kafka producer: relayed messages leave a core in batches.
//!
//! The message path never waits on Kafka: a record is put in the core's
//! outbox, and one flush task hands the whole outbox to librdkafka once the
//! current reactor turn is over (so a burst becomes one hand-off and one
//! wake-up of librdkafka's broker thread, which lingers `--relay-linger-us`
//! for more before it sends). Each record's broker acknowledgement comes
//! back on librdkafka's thread and wakes a small task on this core that
//! answers the sender. The number of records waiting for the broker is
//! bounded (`--relay-max-pending`): beyond it a send fails at once with
//! `unavailable` instead of queueing without limit behind a slow broker.

use std::{
    cell::{Cell, RefCell},
    rc::Rc,
    sync::Arc,
    time::Duration,
};

use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};
use thiserror::Error;

use crate::{metrics::Metrics, node::notify::Notify};

use super::{RelayContext, RelaySettings};

/// Why a relayed message was not taken by the broker.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum RelayError {
    /// Too many records already wait for the broker on this core.
    #[error("relay overloaded: {0} messages wait for the broker")]
    Overloaded(usize),
    /// The broker did not take the record in time, or refused it.
    #[error("relay: {0}")]
    Kafka(String),
}

/// What runs once the broker acknowledged a record (or did not).
pub type Done = Box<dyn FnOnce(Result<(), RelayError>)>;

struct Outgoing {
    topic: String,
    key: Box<str>,
    value: Vec<u8>,
    done: Done,
}

/// See the module docs.
pub struct Producer {
    kafka: FutureProducer<RelayContext>,
    outbox: RefCell<Vec<Outgoing>>,
    ready: Notify,
    pending: Cell<usize>,
    max_pending: usize,
    metrics: Arc<Metrics>,
    core: usize,
}

impl Producer {
    /// The producer of core `core`; spawns its flush task on the current
    /// executor.
    pub fn start(
        settings: &RelaySettings,
        metrics: Arc<Metrics>,
        core: usize,
    ) -> Result<Rc<Producer>, String> {
        let linger_ms = settings.linger.as_secs_f64() * 1000.0;
        let kafka: FutureProducer<RelayContext> = settings
            .client()
            .set("acks", "all")
            // Not idempotent: the relay needs neither Kafka's order nor its
            // deduplication (a connection orders by offset and drops
            // duplicates), and an idempotent producer's error after a broker
            // lost its state (ProducerFenced) is fatal to the producer.
            .set("enable.idempotence", "false")
            .set("linger.ms", format!("{linger_ms}"))
            .set(
                "message.timeout.ms",
                settings.timeout.as_millis().to_string(),
            )
            .set(
                "queue.buffering.max.messages",
                settings.max_pending.to_string(),
            )
            .create_with_context(RelayContext)
            .map_err(|e| format!("kafka producer: {e}"))?;
        metrics.cores[core].set_relay_up(true);
        let producer = Rc::new(Producer {
            kafka,
            outbox: RefCell::default(),
            ready: Notify::default(),
            pending: Cell::new(0),
            max_pending: settings.max_pending,
            metrics,
            core,
        });
        glommio::spawn_local(producer.clone().flush()).detach();
        Ok(producer)
    }

    /// Relays `value` to `topic` under `key`; `done` hears the outcome.
    pub fn send(&self, topic: String, key: &str, value: Vec<u8>, done: Done) {
        let pending = self.pending.get();
        if pending >= self.max_pending {
            self.counters().relay_error();
            return done(Err(RelayError::Overloaded(pending)));
        }
        self.set_pending(pending + 1);
        self.outbox.borrow_mut().push(Outgoing {
            topic,
            key: key.into(),
            value,
            done,
        });
        self.ready.notify();
    }

    /// Waits up to `timeout` for every record to be acknowledged (drain).
    pub fn flush_blocking(&self, timeout: Duration) {
        let _ = self.kafka.flush(timeout);
    }

    fn counters(&self) -> &crate::metrics::CoreMetrics {
        &self.metrics.cores[self.core]
    }

    fn set_pending(&self, n: usize) {
        self.pending.set(n);
        self.counters().set_relay_pending(n as u64);
    }

    async fn flush(self: Rc<Self>) {
        loop {
            self.ready.wait().await;
            let batch = std::mem::take(&mut *self.outbox.borrow_mut());
            if batch.is_empty() {
                continue;
            }
            self.counters().relay_batch(batch.len() as u64);
            for o in batch {
                let record = FutureRecord::to(&o.topic).key(&*o.key).payload(&o.value);
                match self.kafka.send_result(record) {
                    Ok(delivery) => {
                        let me = self.clone();
                        glommio::spawn_local(async move {
                            let outcome = match delivery.await {
                                Ok(Ok(_)) => Ok(()),
                                Ok(Err((e, _))) => Err(RelayError::Kafka(e.to_string())),
                                Err(_) => Err(RelayError::Kafka("producer closed".into())),
                            };
                            me.finish(o.done, outcome);
                        })
                        .detach();
                    }
                    Err((e, _)) => self.finish(o.done, Err(RelayError::Kafka(e.to_string()))),
                }
            }
        }
    }

    fn finish(&self, done: Done, outcome: Result<(), RelayError>) {
        self.set_pending(self.pending.get() - 1);
        let was_up = self.counters().relay_up();
        match &outcome {
            Ok(()) if !was_up => {
                tracing::info!(core = self.core, "relay: the broker takes records again")
            }
            Err(e) if was_up => {
                tracing::warn!(core = self.core, error = %e, "relay: the broker does not take records")
            }
            _ => {}
        }
        self.counters().set_relay_up(outcome.is_ok());
        if outcome.is_err() {
            self.counters().relay_error();
        }
        done(outcome);
    }
}
