//! Envelope codec, WebSocket frames and wildcard matching: the per-message
//! CPU work of protocol v1 outside the sockets. The frame group reads the
//! same client frames with the node's `FrameReader` and, side by side, with
//! tungstenite's sans-IO `WebSocketContext` (what the node used before).
//!
//! `cargo bench --bench protocol`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use shardcast::protocol::{
    frame::{write_frame, write_raw_frame, FrameReader, Message, OP_TEXT},
    ClientEnvelope, DirectTemplate, RoomPattern,
};

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

/// A byte stream for tungstenite: reads from `rx`, discards writes.
struct Pipe {
    rx: std::io::Cursor<Vec<u8>>,
}

impl std::io::Read for Pipe {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self.rx.read(buf)? {
            0 => Err(std::io::ErrorKind::WouldBlock.into()),
            n => Ok(n),
        }
    }
}

impl std::io::Write for Pipe {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn frames(c: &mut Criterion) {
    use tungstenite::protocol::{Role, WebSocketConfig, WebSocketContext};
    let mut g = c.benchmark_group("frame");
    for size in [16usize, 256, 4096] {
        let text = send_envelope(size);
        let mut wire = Vec::new();
        write_raw_frame(&mut wire, 0x81, text.as_bytes(), Some([1, 2, 3, 4]));
        g.throughput(Throughput::Bytes(wire.len() as u64));
        // Both include copying the frame into a buffer first: the reader
        // unmasks in place, tungstenite copies into its own buffer.
        let mut scratch = vec![0u8; wire.len()];
        let mut reader = FrameReader::new(1 << 20);
        g.bench_with_input(BenchmarkId::new("read_text", size), &wire, |b, w| {
            b.iter(|| {
                scratch.copy_from_slice(w);
                let mut n = 0;
                reader
                    .feed(&mut scratch, &mut |m| {
                        if let Message::Text(t) = m {
                            n += t.len();
                        }
                    })
                    .unwrap();
                black_box(n)
            })
        });
        let config = WebSocketConfig::default().read_buffer_size(256);
        let mut ws = WebSocketContext::new(Role::Server, Some(config));
        g.bench_with_input(
            BenchmarkId::new("read_text_tungstenite", size),
            &wire,
            |b, w| {
                b.iter(|| {
                    let mut pipe = Pipe {
                        rx: std::io::Cursor::new(w.clone()),
                    };
                    match ws.read(&mut pipe).unwrap() {
                        tungstenite::Message::Text(t) => black_box(t.len()),
                        _ => unreachable!(),
                    }
                })
            },
        );
        let mut out = Vec::with_capacity(wire.len() + 16);
        g.bench_with_input(BenchmarkId::new("write_text", size), &text, |b, t| {
            b.iter(|| {
                out.clear();
                write_frame(&mut out, OP_TEXT, black_box(t.as_bytes()));
                out.len()
            })
        });
    }
    g.finish();
}

criterion_group!(benches, codec, frames, wildcard);
criterion_main!(benches);
