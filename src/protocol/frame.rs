//! WebSocket frames (RFC 6455 §5): the encoder of server frames here, the
//! reader of client frames in [`reader`].
//!
//! Frames from a server are never masked, so a frame is a 2-, 4- or 10-byte
//! header followed by the payload as is. The node writes outbound messages
//! with these functions straight into a connection's send buffer; inbound
//! frames are read by [`FrameReader`], sans-IO, over the bytes the socket
//! gave. [`write_raw_frame`] writes any first byte and an optional mask: the
//! tests use it for client frames, broken ones included. (loadgen frames
//! with its own, independent code on purpose.)

pub mod reader;

pub use reader::{valid_close_code, FrameError, FrameReader, Message};

/// Opcode of a text frame.
pub const OP_TEXT: u8 = 0x1;
/// Opcode of a binary frame.
pub const OP_BINARY: u8 = 0x2;
/// Opcode of a close frame.
pub const OP_CLOSE: u8 = 0x8;
/// Opcode of a ping frame.
pub const OP_PING: u8 = 0x9;
/// Opcode of a pong frame.
pub const OP_PONG: u8 = 0xA;

/// Appends one final (FIN) frame with `opcode` and `payload` to `out`.
pub fn write_frame(out: &mut Vec<u8>, opcode: u8, payload: &[u8]) {
    write_raw_frame(out, 0x80 | opcode, payload, None);
}

/// Appends a frame whose first byte (FIN, RSV1-3, opcode) is `first`,
/// masked with `mask` when given (client frames are; server frames are not).
pub fn write_raw_frame(out: &mut Vec<u8>, first: u8, payload: &[u8], mask: Option<[u8; 4]>) {
    let len = payload.len();
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    out.reserve(len + 14);
    out.push(first);
    if len < 126 {
        out.push(len as u8 | mask_bit);
    } else if len <= u16::MAX as usize {
        out.push(126 | mask_bit);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(127 | mask_bit);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    match mask {
        None => out.extend_from_slice(payload),
        Some(m) => {
            out.extend_from_slice(&m);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ m[i % 4]));
        }
    }
}

/// Appends a close frame with `code` and a UTF-8 `reason` (cut to fit the
/// 125-byte control-frame limit on a character boundary).
pub fn write_close(out: &mut Vec<u8>, code: u16, reason: &str) {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut payload = Vec::with_capacity(2 + end);
    payload.extend_from_slice(&code.to_be_bytes());
    payload.extend_from_slice(&reason.as_bytes()[..end]);
    write_frame(out, OP_CLOSE, &payload);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_lengths_follow_rfc_6455() {
        for (len, header) in [(0, 2), (125, 2), (126, 4), (65535, 4), (65536, 10)] {
            let mut out = Vec::new();
            write_frame(&mut out, OP_TEXT, &vec![b'x'; len]);
            assert_eq!(out.len(), header + len, "len {len}");
            assert_eq!(out[0], 0x81);
        }
    }

    #[test]
    fn frames_parse_back_with_tungstenite() {
        use std::io::Cursor;
        use tungstenite::protocol::frame::FrameHeader;
        for len in [0usize, 5, 126, 70_000] {
            let mut out = Vec::new();
            write_frame(&mut out, OP_BINARY, &vec![7u8; len]);
            let mut cur = Cursor::new(&out[..]);
            let (header, plen) = FrameHeader::parse(&mut cur).unwrap().unwrap();
            assert!(header.is_final && header.mask.is_none());
            assert_eq!(plen as usize, len);
        }
    }

    #[test]
    fn masked_frames_unmask_to_the_payload() {
        use std::io::Cursor;
        use tungstenite::protocol::frame::FrameHeader;
        let mut out = Vec::new();
        write_raw_frame(&mut out, 0x81, b"hello", Some([1, 2, 3, 4]));
        let mut cur = Cursor::new(&out[..]);
        let (header, len) = FrameHeader::parse(&mut cur).unwrap().unwrap();
        let mask = header.mask.expect("masked");
        let start = cur.position() as usize;
        let payload: Vec<u8> = out[start..start + len as usize]
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ mask[i % 4])
            .collect();
        assert_eq!(payload, b"hello");
    }

    #[test]
    fn close_reason_is_cut_on_a_char_boundary() {
        let mut out = Vec::new();
        write_close(&mut out, 1012, &"é".repeat(100));
        assert!(out.len() <= 2 + 125);
        assert!(std::str::from_utf8(&out[4..]).is_ok());
        assert_eq!(u16::from_be_bytes([out[2], out[3]]), 1012);
    }
}
