//! Envelope codec and wildcard matching: the per-message CPU work of
//! protocol v1 outside the sockets.
//!
//! `cargo bench --bench protocol`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use shardcast::protocol::{ClientEnvelope, DirectTemplate, RoomPattern};

fn send_envelope(data_bytes: usize) -> String {
    format!(
        r#"{{"type":"send","to":"user-12345","id":"msg-000042","data":{{"text":"{}","ts":1732400000123}}}}"#,
        "x".repeat(data_bytes)
    )
}

fn codec(c: &mut Criterion) {
    let mut g = c.benchmark_group("codec");
    for size in [16usize, 256, 4096] {
        let text = send_envelope(size);
        g.throughput(Throughput::Bytes(text.len() as u64));
        g.bench_with_input(BenchmarkId::new("parse_send", size), &text, |b, t| {
            b.iter(|| ClientEnvelope::parse(black_box(t)).unwrap())
        });
        let ClientEnvelope::Send { data, .. } = ClientEnvelope::parse(&text).unwrap() else {
            unreachable!()
        };
        let data = data.get().to_owned();
        // What the node does per direct message: build the template the
        // store appends, then the envelope with the offset it assigned.
        g.bench_with_input(BenchmarkId::new("encode_msg", size), &data, |b, d| {
            b.iter(|| {
                let t = DirectTemplate::new("user-777", "msg-000042", black_box(d));
                t.with_offset(123_456).len()
            })
        });
    }
    let bad = r#"{"type":"send","to":42,"id":"m1"}"#;
    g.throughput(Throughput::Elements(1));
    g.bench_function("parse_bad_envelope", |b| {
        b.iter(|| ClientEnvelope::parse(black_box(bad)).unwrap_err())
    });
    g.finish();
}

fn wildcard(c: &mut Criterion) {
    let mut g = c.benchmark_group("wildcard");
    g.throughput(Throughput::Elements(1));
    let cases = [
        ("exact_hit", "chat.lobby", "chat.lobby"),
        ("star_tail_hit", "chat.*", "chat.lobby"),
        ("star_head_hit", "*.alert", "ops.alert"),
        ("star_mid_miss", "a.*.c", "a.b.d"),
        ("depth_miss", "chat.*", "chat.lobby.west"),
    ];
    for (name, pattern, room) in cases {
        let p = RoomPattern::parse(pattern).unwrap();
        g.bench_function(name, |b| b.iter(|| p.matches(black_box(room))));
    }
    g.bench_function("parse_pattern", |b| {
        b.iter(|| RoomPattern::parse(black_box("game.*.alert")).unwrap())
    });
    g.finish();
}

criterion_group!(benches, codec, wildcard);
criterion_main!(benches);
