//! Publication of ring versions to Kafka (`--kafka`): every version is
//! produced to the control topic (`--kafka-topic`, `shardcast.control`)
//! with key `ring` and the snapshot's JSON as the value.
//!
//! Owns: one producer thread. `publish` never blocks the caller: it puts
//! the snapshot in a one-slot mailbox that keeps only the newest (a node
//! needs the newest ring, not every one in between), and the thread
//! produces it, retrying with backoff until the broker acknowledged it or
//! a newer snapshot replaced it. The topic is created on first use if the
//! broker does not have it (1 partition, so versions keep their order;
//! `cleanup.policy=compact`, so a node that starts reads the latest).
//!
//! Invariant: versions reach the topic in increasing order; a version is
//! skipped only when a newer one was already waiting.

use std::{
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Condvar, Mutex,
    },
    thread,
    time::Duration,
};

use futures_lite::future::block_on;
use rdkafka::{
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
    config::ClientConfig,
    error::RDKafkaErrorCode,
    producer::{FutureProducer, FutureRecord},
};
use thiserror::Error;

use super::service::Publish;

/// The key every ring snapshot is produced under.
pub const RING_KEY: &str = "ring";

/// The producer could not be made (a bad broker list or setting).
#[derive(Debug, Error)]
#[error("kafka: {0}")]
pub struct KafkaError(String);

#[derive(Default)]
struct Mailbox {
    newest: Mutex<Option<(u64, String)>>,
    ready: Condvar,
    stop: AtomicBool,
}

/// Produces ring snapshots to the control topic from its own thread.
pub struct KafkaPublisher {
    mailbox: Arc<Mailbox>,
    published: Arc<AtomicU64>,
    thread: Option<thread::JoinHandle<()>>,
}

impl KafkaPublisher {
    /// A producer for `brokers` (comma-separated `host:port`) and `topic`.
    pub fn start(brokers: &str, topic: &str) -> Result<KafkaPublisher, KafkaError> {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", brokers)
            .set("client.id", "shardcast-ctl")
            .set("acks", "all")
            .set("message.timeout.ms", "10000")
            .set("linger.ms", "0");
        let producer: FutureProducer = config.create().map_err(|e| KafkaError(e.to_string()))?;
        let admin: AdminClient<DefaultClientContext> =
            config.create().map_err(|e| KafkaError(e.to_string()))?;
        let mailbox = Arc::new(Mailbox::default());
        let published = Arc::new(AtomicU64::new(0));
        let (m, p, topic) = (
            Arc::clone(&mailbox),
            Arc::clone(&published),
            topic.to_owned(),
        );
        let thread = thread::Builder::new()
            .name("ctl-kafka".into())
            .spawn(move || produce_loop(&m, &p, &producer, &admin, &topic))
            .map_err(|e| KafkaError(e.to_string()))?;
        Ok(KafkaPublisher {
            mailbox,
            published,
            thread: Some(thread),
        })
    }
}

impl Publish for KafkaPublisher {
    fn publish(&self, version: u64, json: &str) {
        let mut slot = self
            .mailbox
            .newest
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if !matches!(slot.as_ref(), Some((v, _)) if *v >= version) {
            *slot = Some((version, json.to_owned()));
        }
        self.mailbox.ready.notify_one();
    }

    fn published(&self) -> u64 {
        self.published.load(Ordering::Relaxed)
    }
}

impl Drop for KafkaPublisher {
    fn drop(&mut self) {
        self.mailbox.stop.store(true, Ordering::Relaxed);
        self.mailbox.ready.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn ensure_topic(admin: &AdminClient<DefaultClientContext>, topic: &str) -> Result<(), String> {
    let new = NewTopic::new(topic, 1, TopicReplication::Fixed(1)).set("cleanup.policy", "compact");
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(5)));
    let results = block_on(admin.create_topics([&new], &opts)).map_err(|e| e.to_string())?;
    for r in results {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((t, code)) => return Err(format!("cannot create topic {t}: {code}")),
        }
    }
    Ok(())
}

fn produce_loop(
    mailbox: &Mailbox,
    published: &AtomicU64,
    producer: &FutureProducer,
    admin: &AdminClient<DefaultClientContext>,
    topic: &str,
) {
    let mut topic_ready = false;
    let mut backoff = Duration::from_millis(100);
    loop {
        let (version, json) = {
            let mut slot = mailbox.newest.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                if mailbox.stop.load(Ordering::Relaxed) {
                    return;
                }
                if let Some(next) = slot.take() {
                    break next;
                }
                slot = mailbox.ready.wait(slot).unwrap_or_else(|e| e.into_inner());
            }
        };
        if !topic_ready {
            match ensure_topic(admin, topic) {
                Ok(()) => topic_ready = true,
                // Producing may still work (auto-created or pre-made topic).
                Err(e) => tracing::warn!("kafka: {e}"),
            }
        }
        let record = FutureRecord::to(topic).key(RING_KEY).payload(json.as_str());
        match block_on(producer.send(record, Duration::from_secs(5))) {
            Ok(_) => {
                published.store(version, Ordering::Relaxed);
                backoff = Duration::from_millis(100);
                tracing::debug!(version, topic, "ring produced");
            }
            Err((e, _)) => {
                tracing::warn!(version, "kafka: cannot produce the ring: {e}; retrying");
                // Put it back unless a newer one arrived meanwhile.
                let mut slot = mailbox.newest.lock().unwrap_or_else(|e| e.into_inner());
                if slot.is_none() {
                    *slot = Some((version, json));
                }
                drop(slot);
                thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}
