//! The Kafka ingest topic: records produced by a backend (here, rdkafka in
//! the test) to a real broker (tansu) reach users and rooms like server API
//! calls; a repeated id is delivered once, a malformed record is skipped.

mod common;

use std::time::{Duration, Instant};

use common::{Client, Node};
use rdkafka::{
    producer::{BaseProducer, BaseRecord, Producer},
    ClientConfig,
};
use serde_json::Value;
use shardcast::harness::{RedisProcess, TansuProcess};

fn next_msg(c: &mut Client, within: Duration) -> Option<Value> {
    c.set_read_timeout(Duration::from_millis(200));
    let t0 = Instant::now();
    while t0.elapsed() < within {
        if let Some(v) = c.try_recv().unwrap() {
            if v["type"] == "msg" {
                return Some(v);
            }
        }
    }
    None
}

#[test]
fn ingest_records_reach_users_and_rooms_once_and_bad_ones_are_skipped() {
    let redis = RedisProcess::start().unwrap();
    let tansu = TansuProcess::start().unwrap();
    let node = Node::start(&[
        "--redis",
        &redis.url(),
        "--kafka",
        &tansu.brokers(),
        "--ingest-topic",
        "shardcast.ingest",
    ]);
    let (mut alice, _) = node.connect("alice");
    let (mut bob, _) = node.connect("bob");
    bob.join("orders.*", "j");
    assert_eq!(bob.recv()["type"], "ack");

    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", tansu.brokers())
        .create()
        .unwrap();
    for value in [
        r#"{"to":"alice","id":"e1","data":{"n":1}}"#,
        r#"{"to":"alice","id":"e1","data":{"n":1}}"#,
        r#"{"to":"alice","id":"e2""#,
        r#"{"to":"not a user","id":"e3","data":1}"#,
        r#"{"room":"orders.7","id":"e4","data":{"status":"paid"},"from":"billing"}"#,
        r#"{"to":"alice","id":"e5","data":{"n":5}}"#,
    ] {
        producer
            .send(BaseRecord::<(), str>::to("shardcast.ingest").payload(value))
            .map_err(|(e, _)| e)
            .unwrap();
    }
    producer.flush(Duration::from_secs(10)).unwrap();

    let first = next_msg(&mut alice, Duration::from_secs(20)).expect("e1 arrives");
    assert_eq!(
        (first["id"].as_str(), first["from"].as_str()),
        (Some("e1"), Some("#server"))
    );
    assert_eq!(first["data"]["n"], 1);
    let second = next_msg(&mut alice, Duration::from_secs(20)).expect("e5 arrives");
    assert_eq!(
        second["id"], "e5",
        "e1 once, the bad records skipped: {second}"
    );
    assert_eq!(second["offset"], 2);
    let room = next_msg(&mut bob, Duration::from_secs(20)).expect("e4 arrives");
    assert_eq!(
        (room["room"].as_str(), room["from"].as_str()),
        (Some("orders.7"), Some("billing"))
    );
    assert_eq!(
        node.metric("rtc_ingest_records_total{outcome=\"refused\"}"),
        2.0
    );
    assert_eq!(
        node.metric("rtc_ingest_records_total{outcome=\"delivered\"}"),
        4.0
    );

    // Redis stops answering: the record is retried, not skipped, and
    // arrives once Redis is back.
    redis.signal(libc::SIGSTOP);
    producer
        .send(BaseRecord::<(), str>::to("shardcast.ingest").payload(r#"{"to":"alice","id":"e6"}"#))
        .map_err(|(e, _)| e)
        .unwrap();
    producer.flush(Duration::from_secs(10)).unwrap();
    std::thread::sleep(Duration::from_secs(3));
    redis.signal(libc::SIGCONT);
    let late = next_msg(&mut alice, Duration::from_secs(30)).expect("e6 arrives after the thaw");
    assert_eq!(late["id"], "e6");
}
