//! Server-side WebSocket frame encoding (RFC 6455 §5.2).
//!
//! Frames from a server are never masked, so a frame is a 2-, 4- or 10-byte
//! header followed by the payload as is. The node writes outbound messages
//! with these functions straight into a connection's send buffer; inbound
//! frames are parsed by tungstenite.

/// Opcode of a text frame.
pub const OP_TEXT: u8 = 0x1;
/// Opcode of a binary frame.
pub const OP_BINARY: u8 = 0x2;
/// Opcode of a close frame.
pub const OP_CLOSE: u8 = 0x8;
/// Opcode of a ping frame.
pub const OP_PING: u8 = 0x9;

/// Appends one final (FIN) frame with `opcode` and `payload` to `out`.
pub fn write_frame(out: &mut Vec<u8>, opcode: u8, payload: &[u8]) {
    let len = payload.len();
    out.reserve(len + 10);
    out.push(0x80 | opcode);
    if len < 126 {
        out.push(len as u8);
    } else if len <= u16::MAX as usize {
        out.push(126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(payload);
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
    fn close_reason_is_cut_on_a_char_boundary() {
        let mut out = Vec::new();
        write_close(&mut out, 1012, &"é".repeat(100));
        assert!(out.len() <= 2 + 125);
        assert!(std::str::from_utf8(&out[4..]).is_ok());
        assert_eq!(u16::from_be_bytes([out[2], out[3]]), 1012);
    }
}
