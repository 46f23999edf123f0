//! `FrameReader::feed` on any bytes from a client: it never panics; the
//! same bytes read in one piece and in pieces (sizes taken from the input)
//! report the same messages and the same error; no message is over the
//! size limit; and the reader never holds more than the message it is
//! assembling plus its small spill box.
//!
//! Input: byte 0 picks the size limit (`16 * (b + 1)`), bytes 1..=3 the
//! piece sizes (cycled, each 1..=256), the rest is the stream.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shardcast::protocol::frame::{FrameError, FrameReader, Message};

/// An owned report: kind and bytes.
type Report = (u8, Vec<u8>);

fn owned(m: Message<'_>) -> Report {
    match m {
        Message::Text(s) => (1, s.as_bytes().to_vec()),
        Message::Binary(b) => (2, b.to_vec()),
        Message::Ping(b) => (9, b.to_vec()),
        Message::Pong(b) => (10, b.to_vec()),
        Message::Close(None) => (8, Vec::new()),
        Message::Close(Some((code, reason))) => {
            let mut v = code.to_be_bytes().to_vec();
            v.extend_from_slice(reason.as_bytes());
            (8, v)
        }
    }
}

fn read(stream: &[u8], max: usize, steps: &[usize]) -> (Vec<Report>, Option<FrameError>) {
    let mut reader = FrameReader::new(max);
    let mut got = Vec::new();
    let mut input = stream.to_vec();
    let mut at = 0;
    let mut i = 0;
    while at < input.len() {
        let n = steps[i % steps.len()].min(input.len() - at);
        i += 1;
        let piece = &mut input[at..at + n];
        at += n;
        if let Err(e) = reader.feed(piece, &mut |m| got.push(owned(m))) {
            assert_eq!(reader.buffered_capacity(), 0, "an error releases everything");
            return (got, Some(e));
        }
        // The message being assembled (≤ max) and the 140-byte spill box.
        assert!(reader.buffered_capacity() <= max + 256, "holds {}", reader.buffered_capacity());
    }
    (got, None)
}

fuzz_target!(|data: &[u8]| {
    let [limit, a, b, c, stream @ ..] = data else {
        return;
    };
    let max = 16 * (*limit as usize + 1);
    let steps: Vec<usize> = [a, b, c].iter().map(|s| **s as usize + 1).collect();
    let whole = read(stream, max, &[stream.len().max(1)]);
    let pieces = read(stream, max, &steps);
    assert_eq!(whole, pieces, "pieces read differently");
    for (kind, bytes) in &whole.0 {
        assert!(bytes.len() <= max.max(125), "kind {kind}: {} bytes", bytes.len());
        if *kind == 1 {
            assert!(std::str::from_utf8(bytes).is_ok());
        }
    }
});
