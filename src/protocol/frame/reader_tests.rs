//! The frame reader against RFC 6455, one test per rule, and properties
//! over random streams: any split of the input reads the same, encoded
//! messages read back as sent, and no input panics.

use proptest::prelude::*;

use super::*;
use crate::protocol::frame::write_raw_frame;

/// What the reader reported, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Got {
    Text(String),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(Option<(u16, String)>),
}

impl From<Message<'_>> for Got {
    fn from(m: Message<'_>) -> Got {
        match m {
            Message::Text(s) => Got::Text(s.to_owned()),
            Message::Binary(b) => Got::Binary(b.to_vec()),
            Message::Ping(b) => Got::Ping(b.to_vec()),
            Message::Pong(b) => Got::Pong(b.to_vec()),
            Message::Close(c) => Got::Close(c.map(|(code, r)| (code, r.to_owned()))),
        }
    }
}

const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// A masked client frame.
fn frame(first: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    write_raw_frame(&mut out, first, payload, Some(MASK));
    out
}

/// Feeds `bytes` in pieces of `step` bytes; returns what was reported and
/// the error, if any.
fn read_in(bytes: &[u8], step: usize, max: usize) -> (Vec<Got>, Option<FrameError>) {
    let mut reader = FrameReader::new(max);
    let mut got = Vec::new();
    let mut input = bytes.to_vec();
    for piece in input.chunks_mut(step.max(1)) {
        if let Err(e) = reader.feed(piece, &mut |m| got.push(Got::from(m))) {
            return (got, Some(e));
        }
    }
    (got, None)
}

fn read(bytes: &[u8]) -> (Vec<Got>, Option<FrameError>) {
    read_in(bytes, bytes.len(), 1 << 20)
}

fn error_of(bytes: &[u8]) -> Option<FrameError> {
    read(bytes).1
}

#[test]
fn a_masked_text_frame_reads_as_its_text() {
    assert_eq!(
        read(&frame(0x81, b"Hello")),
        (vec![Got::Text("Hello".into())], None)
    );
}

#[test]
fn a_frame_complete_in_the_input_is_reported_from_the_input_itself() {
    let mut input = frame(0x82, &[9; 300]);
    let range = input.as_ptr_range();
    let mut reader = FrameReader::new(1 << 20);
    let mut inside = false;
    reader
        .feed(&mut input, &mut |m| {
            if let Message::Binary(b) = m {
                inside = range.contains(&b.as_ptr()) && b == [9; 300];
            }
        })
        .unwrap();
    assert!(inside, "no copy for a frame inside the input");
    assert_eq!(reader.buffered_capacity(), 0);
}

#[test]
fn every_length_encoding_reads_back() {
    for len in [0usize, 1, 125, 126, 127, 65_535, 65_536, 200_000] {
        let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
        let (got, err) = read(&frame(0x82, &payload));
        assert_eq!((got, err), (vec![Got::Binary(payload)], None), "len {len}");
    }
}

#[test]
fn fragments_with_control_frames_between_them_read_as_one_message() {
    let mut s = frame(0x01, "héllo ".as_bytes());
    s.extend(frame(0x89, b"p1"));
    s.extend(frame(0x00, "wörld".as_bytes()));
    s.extend(frame(0x8A, b"p2"));
    s.extend(frame(0x80, b"!"));
    let want = vec![
        Got::Ping(b"p1".to_vec()),
        Got::Pong(b"p2".to_vec()),
        Got::Text("héllo wörld!".into()),
    ];
    for step in 1..=s.len() {
        assert_eq!(
            read_in(&s, step, 1 << 20),
            (want.clone(), None),
            "step {step}"
        );
    }
}

#[test]
fn a_character_split_across_fragments_is_valid() {
    let euro = "€".as_bytes(); // 3 bytes
    let mut s = frame(0x01, &euro[..1]);
    s.extend(frame(0x00, &euro[1..2]));
    s.extend(frame(0x80, &euro[2..]));
    assert_eq!(read(&s), (vec![Got::Text("€".into())], None));
}

#[test]
fn invalid_utf8_closes_with_1007() {
    let e = error_of(&frame(0x81, &[0xff, 0xfe, b'{'])).unwrap();
    assert_eq!((e, e.close_code().code()), (FrameError::InvalidUtf8, 1007));
}

#[test]
fn invalid_utf8_in_a_first_fragment_fails_before_the_message_ends() {
    // Fail fast: the bad byte is refused when it arrives, not at FIN.
    assert_eq!(
        error_of(&frame(0x01, &[b'a', 0xc0, 0xaf])),
        Some(FrameError::InvalidUtf8)
    );
    // …also inside one frame that is still arriving.
    let whole = frame(0x81, &[b'o', b'k', 0xed, 0xa0, 0x80, b'x', b'x']);
    assert_eq!(
        read_in(&whole[..11], 11, 1 << 20).1,
        Some(FrameError::InvalidUtf8)
    );
}

#[test]
fn a_text_message_ending_inside_a_character_closes_with_1007() {
    assert_eq!(
        error_of(&frame(0x81, &"€".as_bytes()[..2])),
        Some(FrameError::InvalidUtf8)
    );
    let mut s = frame(0x01, b"ok");
    s.extend(frame(0x80, &"€".as_bytes()[..2]));
    assert_eq!(error_of(&s), Some(FrameError::InvalidUtf8));
}

#[test]
fn binary_messages_are_not_utf8_checked() {
    assert_eq!(
        read(&frame(0x82, &[0xff, 0xfe])),
        (vec![Got::Binary(vec![0xff, 0xfe])], None)
    );
}

#[test]
fn an_unmasked_frame_closes_with_1002() {
    let mut out = Vec::new();
    write_raw_frame(&mut out, 0x81, b"{}", None);
    let e = error_of(&out).unwrap();
    assert_eq!((e, e.close_code().code()), (FrameError::Unmasked, 1002));
}

#[test]
fn reserved_bits_close_with_1002() {
    for rsv in [0x40, 0x20, 0x10] {
        assert_eq!(
            error_of(&frame(0x81 | rsv, b"x")),
            Some(FrameError::ReservedBits)
        );
    }
}

#[test]
fn reserved_opcodes_close_with_1002() {
    for op in [3u8, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF] {
        assert_eq!(
            error_of(&frame(0x80 | op, b"")),
            Some(FrameError::ReservedOpcode(op))
        );
    }
}

#[test]
fn a_fragmented_control_frame_closes_with_1002() {
    for op in [0x8, 0x9, 0xA] {
        assert_eq!(
            error_of(&frame(op, b"hi")),
            Some(FrameError::FragmentedControl)
        );
    }
}

#[test]
fn a_control_frame_over_125_bytes_closes_with_1002() {
    assert_eq!(
        error_of(&frame(0x89, &[0; 126])),
        Some(FrameError::ControlTooLong)
    );
    assert_eq!(
        read(&frame(0x89, &[1; 125])),
        (vec![Got::Ping(vec![1; 125])], None)
    );
}

#[test]
fn a_length_with_the_top_bit_set_closes_with_1002() {
    let mut s = vec![0x82, 0x80 | 127];
    s.extend((1u64 << 63).to_be_bytes());
    s.extend(MASK);
    assert_eq!(error_of(&s), Some(FrameError::BadLength));
}

#[test]
fn continuation_without_a_message_closes_with_1002() {
    assert_eq!(
        error_of(&frame(0x80, b"x")),
        Some(FrameError::UnexpectedContinuation)
    );
}

#[test]
fn a_new_message_inside_a_fragmented_one_closes_with_1002() {
    let mut s = frame(0x01, b"a");
    s.extend(frame(0x81, b"b"));
    assert_eq!(error_of(&s), Some(FrameError::ExpectedContinuation));
}

#[test]
fn a_frame_over_the_limit_is_refused_from_its_header_with_1009() {
    let whole = frame(0x82, &[0; 5000]);
    // Only the 4-byte header and the mask: no payload is read or kept.
    let (got, err) = read_in(&whole[..8], 8, 4096);
    assert!(got.is_empty());
    let e = err.unwrap();
    assert_eq!(
        (e, e.close_code().code()),
        (FrameError::MessageTooBig(4096), 1009)
    );
}

#[test]
fn fragments_adding_up_over_the_limit_close_with_1009() {
    let mut s = frame(0x02, &[0; 3000]);
    s.extend(frame(0x80, &[0; 1097]));
    assert_eq!(
        read_in(&s, s.len(), 4096).1,
        Some(FrameError::MessageTooBig(4096))
    );
    let mut s = frame(0x02, &[0; 3000]);
    s.extend(frame(0x80, &[0; 1096]));
    assert_eq!(
        read_in(&s, 7, 4096),
        (vec![Got::Binary(vec![0; 4096])], None)
    );
}

#[test]
fn close_frames_carry_their_code_and_reason() {
    assert_eq!(read(&frame(0x88, b"")), (vec![Got::Close(None)], None));
    let mut p = 1000u16.to_be_bytes().to_vec();
    p.extend_from_slice("bye ☺".as_bytes());
    assert_eq!(
        read(&frame(0x88, &p)),
        (vec![Got::Close(Some((1000, "bye ☺".into())))], None)
    );
}

#[test]
fn a_one_byte_close_payload_closes_with_1002() {
    assert_eq!(
        error_of(&frame(0x88, &[3])),
        Some(FrameError::ClosePayloadTooShort)
    );
}

#[test]
fn close_codes_follow_rfc_6455_section_7_4() {
    for code in [
        1000u16, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 3000, 3999, 4000, 4999,
    ] {
        let (got, err) = read(&frame(0x88, &code.to_be_bytes()));
        assert_eq!(
            (got, err),
            (vec![Got::Close(Some((code, String::new())))], None)
        );
    }
    for code in [
        0u16, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
    ] {
        let e = error_of(&frame(0x88, &code.to_be_bytes())).unwrap();
        assert_eq!(
            (e, e.close_code().code()),
            (FrameError::BadCloseCode(code), 1002)
        );
    }
}

#[test]
fn a_close_reason_that_is_not_utf8_closes_with_1007() {
    assert_eq!(
        error_of(&frame(0x88, &[0x03, 0xe8, 0xff])),
        Some(FrameError::InvalidUtf8)
    );
}

#[test]
fn nothing_is_read_after_a_close_frame() {
    let mut s = frame(0x88, &1000u16.to_be_bytes());
    s.extend(frame(0x81, b"late"));
    s.extend([0xff; 4]); // not even a valid frame
    let (got, err) = read(&s);
    assert_eq!(got, vec![Got::Close(Some((1000, String::new())))]);
    assert_eq!(err, None);
}

#[test]
fn a_slow_large_message_is_held_at_about_its_arrived_size_and_released() {
    let payload = vec![b'x'; 512 * 1024];
    let mut bytes = frame(0x81, &payload);
    let mut reader = FrameReader::new(1 << 20);
    let mut got = Vec::new();
    let mut arrived = 0;
    for piece in bytes.chunks_mut(4096) {
        reader.feed(piece, &mut |m| got.push(Got::from(m))).unwrap();
        arrived += piece.len();
        if got.is_empty() {
            let held = reader.buffered_capacity();
            assert!(
                held <= 2 * arrived.max(256),
                "{held} held for {arrived} arrived"
            );
            assert!(held <= payload.len(), "never past the declared length");
        }
    }
    assert!(got == [Got::Text(String::from_utf8(payload).unwrap())]);
    assert_eq!(reader.buffered_capacity(), 0, "released after the message");
}

#[test]
fn an_error_releases_the_buffers_and_ends_the_stream() {
    let mut reader = FrameReader::new(1 << 20);
    let whole = frame(0x82, &[1; 10_000]);
    let mut part = whole[..5000].to_vec();
    reader.feed(&mut part, &mut |_| {}).unwrap();
    assert!(
        reader.buffered_capacity() >= 4992,
        "the partial frame is kept"
    );
    let mut rest = whole[5000..].to_vec();
    rest.extend(frame(0xC1, b"")); // RSV1 and RSV2
    let mut got = Vec::new();
    assert_eq!(
        reader.feed(&mut rest, &mut |m| got.push(Got::from(m))),
        Err(FrameError::ReservedBits)
    );
    assert!(
        got == [Got::Binary(vec![1; 10_000])],
        "the message before the error"
    );
    assert_eq!(reader.buffered_capacity(), 0);
    assert!(reader.is_finished());
    let mut more = frame(0x81, b"ignored");
    let mut n = 0;
    reader.feed(&mut more, &mut |_| n += 1).unwrap();
    assert_eq!(n, 0);
}

/// A message to encode: kind, payload, how it is cut into fragments, and
/// the pings put between them.
#[derive(Debug, Clone)]
struct Sent {
    text: bool,
    payload: Vec<u8>,
    cuts: Vec<usize>,
    mask: [u8; 4],
}

fn sent() -> impl Strategy<Value = Sent> {
    (
        any::<bool>(),
        prop::collection::vec(any::<char>(), 0..300),
        prop::collection::vec(any::<u8>(), 0..300),
        prop::collection::vec(0usize..1200, 0..4),
        any::<[u8; 4]>(),
    )
        .prop_map(|(text, chars, bin, mut cuts, mask)| {
            let payload = if text {
                chars.into_iter().collect::<String>().into_bytes()
            } else {
                bin
            };
            cuts.iter_mut().for_each(|c| *c %= payload.len() + 1);
            cuts.sort_unstable();
            Sent {
                text,
                payload,
                cuts,
                mask,
            }
        })
}

/// Encodes `m` as fragments cut at `m.cuts` (cuts may fall inside a
/// character: UTF-8 is checked across fragments), a ping after each
/// non-final fragment.
fn encode(m: &Sent, out: &mut Vec<u8>, pings: &mut Vec<Got>) {
    let mut bounds = vec![0];
    bounds.extend(&m.cuts);
    bounds.push(m.payload.len());
    let n = bounds.len() - 1;
    for i in 0..n {
        let op = if i == 0 {
            if m.text {
                1
            } else {
                2
            }
        } else {
            0
        };
        let fin = if i == n - 1 { 0x80 } else { 0 };
        let part = &m.payload[bounds[i]..bounds[i + 1]];
        write_raw_frame(out, fin | op, part, Some(m.mask));
        if i < n - 1 {
            let ping = vec![i as u8; i % 3];
            write_raw_frame(out, 0x89, &ping, Some(m.mask));
            pings.push(Got::Ping(ping));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Messages encoded by the client side read back exactly, in order,
    /// with the pings between their fragments, whatever the read sizes.
    #[test]
    fn encoded_messages_read_back_in_any_pieces(
        msgs in prop::collection::vec(sent(), 1..6),
        step in 1usize..700,
    ) {
        let mut bytes = Vec::new();
        let mut want = Vec::new();
        for m in &msgs {
            encode(m, &mut bytes, &mut want);
            want.push(if m.text {
                Got::Text(String::from_utf8(m.payload.clone()).unwrap())
            } else {
                Got::Binary(m.payload.clone())
            });
        }
        prop_assert_eq!(read_in(&bytes, step, 1 << 20), (want, None));
    }

    /// Any bytes: no panic, and the same reports and error whether they
    /// come at once or in pieces (the reader's state carries everything).
    #[test]
    fn any_bytes_read_the_same_in_any_pieces(
        bytes in prop::collection::vec(any::<u8>(), 0..600),
        step in 1usize..40,
        max in 0usize..300,
    ) {
        prop_assert_eq!(read_in(&bytes, bytes.len(), max), read_in(&bytes, step, max));
    }

    /// Headers of valid frames with random fields and broken bits: any
    /// error is the one the first broken rule names.
    #[test]
    fn mostly_valid_streams_read_the_same_in_any_pieces(
        frames in prop::collection::vec((any::<u8>(), prop::collection::vec(any::<u8>(), 0..140)), 1..8),
        step in 1usize..50,
    ) {
        let mut bytes = Vec::new();
        for (first, payload) in &frames {
            // Mostly the defined opcodes, FIN mostly set, RSV rarely.
            let op = [0u8, 1, 2, 8, 9, 10, 3, 1][(*first & 7) as usize];
            let fin = if first & 0x30 != 0 { 0x80 } else { 0 };
            let rsv = if *first == 0xff { 0x40 } else { 0 };
            write_raw_frame(&mut bytes, fin | rsv | op, payload, Some(MASK));
        }
        prop_assert_eq!(read_in(&bytes, bytes.len(), 1000), read_in(&bytes, step, 1000));
    }
}

#[test]
fn a_cut_header_or_control_frame_is_held_only_until_it_completes() {
    let mut reader = FrameReader::new(1 << 20);
    let mut got = Vec::new();
    let mut bytes = frame(0x81, &[b'a'; 300]); // 2 + 2 + 4 header bytes
    bytes.extend(frame(0x89, b"ping!"));
    let (head, rest) = bytes.split_at_mut(3);
    reader.feed(head, &mut |m| got.push(Got::from(m))).unwrap();
    assert!(reader.buffered_capacity() > 0, "3 header bytes are kept");
    // The header completes, the payload and the ping's header and first
    // payload byte arrive: only the cut ping is kept.
    let (mid, last) = rest.split_at_mut(rest.len() - 4);
    reader.feed(mid, &mut |m| got.push(Got::from(m))).unwrap();
    assert_eq!(got, vec![Got::Text("a".repeat(300))]);
    assert!(reader.buffered_capacity() > 0 && reader.buffered_capacity() < 300);
    reader.feed(last, &mut |m| got.push(Got::from(m))).unwrap();
    assert_eq!(got[1], Got::Ping(b"ping!".to_vec()));
    assert_eq!(reader.buffered_capacity(), 0);
    assert_eq!(
        size_of::<FrameReader>(),
        64,
        "kept by every idle connection"
    );
}
