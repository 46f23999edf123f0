//! `shardcast-ctl --kafka`: every ring version reaches the control topic
//! (key `ring`, value the snapshot JSON), against a real Kafka-protocol
//! broker (`tansu`, harness::TansuProcess, installed by scripts/test.sh as
//! the relay's tests need it).

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use rdkafka::{
    config::ClientConfig,
    consumer::{BaseConsumer, Consumer},
    Message, Offset, TopicPartitionList,
};
use shardcast::{
    control::{client::ControlClient, heartbeat::Heartbeat},
    harness::{CtlProcess, TansuProcess},
    ring::RingConfig,
};

fn hb(id: &str, draining: bool) -> Heartbeat {
    Heartbeat {
        node_id: id.into(),
        ws_url: format!("ws://127.0.0.1:1/{id}"),
        weight: 1.0,
        zone: String::new(),
        connections: 0,
        mps: 0.0,
        p95_ms: 0.0,
        draining,
        ring_version: 0,
    }
}

fn published(ctl: &CtlProcess) -> f64 {
    let (_, body) = ControlClient::new(&ctl.url(), Duration::from_secs(5))
        .unwrap()
        .get("/metrics")
        .unwrap();
    body.lines()
        .find_map(|l| {
            l.strip_prefix("rtc_lb_ring_published_version ")?
                .parse()
                .ok()
        })
        .unwrap_or(-1.0)
}

fn ctl(brokers: &str) -> CtlProcess {
    let mut command = Command::new(env!("CARGO_BIN_EXE_shardcast-ctl"));
    command
        .args(["--listen", "127.0.0.1:0", "--slots", "1024"])
        .args(["--kafka", brokers])
        .env("SHARDCAST_SECRET", "kafka-test-secret-0123456789")
        .env("RUST_LOG", "error")
        .stderr(Stdio::inherit());
    CtlProcess::start(command).expect("start shardcast-ctl")
}

/// The ring snapshots on the control topic, from the beginning, until
/// `last` is seen (at most 30 s).
fn consume(brokers: &str, last: u64) -> Vec<RingConfig> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "control-test")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("shardcast.control", 0, Offset::Beginning)
        .unwrap();
    consumer.assign(&tpl).unwrap();
    let mut rings: Vec<RingConfig> = Vec::new();
    let t0 = Instant::now();
    while rings.last().map_or(true, |r| r.version < last) && t0.elapsed() < Duration::from_secs(30)
    {
        if let Some(m) = consumer.poll(Duration::from_millis(200)) {
            let m = m.unwrap();
            assert_eq!(m.key(), Some(&b"ring"[..]));
            rings.push(serde_json::from_slice(m.payload().unwrap()).unwrap());
        }
    }
    rings
}

#[test]
fn every_ring_version_is_produced_to_the_control_topic() {
    let tansu = TansuProcess::start().expect("start tansu");
    let ctl = ctl(&tansu.brokers());
    let client = ControlClient::new(&ctl.url(), Duration::from_secs(5)).unwrap();
    for (i, beat) in [hb("a", false), hb("b", false), hb("a", true)]
        .iter()
        .enumerate()
    {
        client.heartbeat(beat).unwrap();
        let t0 = Instant::now();
        while published(&ctl) < (i + 1) as f64 {
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "version {} not produced",
                i + 1
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    let rings = consume(&tansu.brokers(), 3);
    let versions: Vec<u64> = rings.iter().map(|r| r.version).collect();
    assert_eq!(versions, [1, 2, 3]);
    let ids: Vec<&str> = rings[2].nodes.iter().map(|n| n.id.as_str()).collect();
    assert_eq!(ids, ["b"]);
    // The topic's value is the same JSON the API serves.
    let served: RingConfig = client.ring_config().unwrap();
    assert_eq!(served, rings[2]);
}

#[test]
fn a_broker_that_comes_late_gets_the_newest_version() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let brokers = format!("127.0.0.1:{port}");
    let ctl = ctl(&brokers);
    let client = ControlClient::new(&ctl.url(), Duration::from_secs(5)).unwrap();
    // No broker: heartbeats are answered at once, the ring is served.
    let t0 = Instant::now();
    for id in ["a", "b", "c"] {
        client.heartbeat(&hb(id, false)).unwrap();
    }
    assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
    assert_eq!(client.ring_config().unwrap().version, 3);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(published(&ctl), 0.0);
    // The broker comes: the newest version reaches the topic.
    let _tansu = TansuProcess::start_on(port).expect("start tansu");
    let t0 = Instant::now();
    while published(&ctl) < 3.0 {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "version 3 never produced"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let rings = consume(&brokers, 3);
    let versions: Vec<u64> = rings.iter().map(|r| r.version).collect();
    assert_eq!(versions.last(), Some(&3), "{versions:?}");
    assert!(versions.windows(2).all(|w| w[0] < w[1]), "{versions:?}");
}
