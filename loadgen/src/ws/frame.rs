//! WebSocket frames (RFC 6455 §5) as pure functions over bytes.
//!
//! loadgen only ever *writes* client frames (always masked) and *reads*
//! server frames (never masked). Both directions are plain functions with no
//! I/O and no allocation of their own, so they are tested without sockets and
//! the connection layer can run them over a per-core scratch buffer.
//!
//! Invariant: [`decode`] never reads past the bytes it was given and reports
//! `Ok(None)` for an incomplete frame, so callers can keep the tail and retry
//! after the next read.

use thiserror::Error;

/// Frame opcodes loadgen understands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpCode {
    /// Continuation of a fragmented message.
    Continuation,
    /// UTF-8 text message (all protocol v1 envelopes).
    Text,
    /// Binary message.
    Binary,
    /// Close handshake.
    Close,
    /// Ping (answered with a pong carrying the same payload).
    Ping,
    /// Pong.
    Pong,
}

impl OpCode {
    fn from_bits(bits: u8) -> Result<Self, FrameError> {
        Ok(match bits {
            0x0 => Self::Continuation,
            0x1 => Self::Text,
            0x2 => Self::Binary,
            0x8 => Self::Close,
            0x9 => Self::Ping,
            0xA => Self::Pong,
            other => return Err(FrameError::UnknownOpcode(other)),
        })
    }

    fn bits(self) -> u8 {
        match self {
            Self::Continuation => 0x0,
            Self::Text => 0x1,
            Self::Binary => 0x2,
            Self::Close => 0x8,
            Self::Ping => 0x9,
            Self::Pong => 0xA,
        }
    }

    /// Control frames (close, ping, pong) may not be fragmented and carry at
    /// most 125 bytes.
    pub fn is_control(self) -> bool {
        matches!(self, Self::Close | Self::Ping | Self::Pong)
    }
}

/// A server frame that broke RFC 6455; the connection is failed with 1002.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum FrameError {
    /// RSV1-3 set without a negotiated extension.
    #[error("reserved bits set in frame header")]
    ReservedBits,
    /// An opcode RFC 6455 does not define.
    #[error("unknown opcode {0:#x}")]
    UnknownOpcode(u8),
    /// Servers must not mask their frames.
    #[error("server frame is masked")]
    MaskedServerFrame,
    /// A control frame longer than 125 bytes or fragmented.
    #[error("invalid control frame")]
    BadControlFrame,
    /// The declared payload is larger than loadgen accepts.
    #[error("frame payload of {len} bytes exceeds the limit of {max}")]
    TooLarge {
        /// Declared payload length.
        len: u64,
        /// The configured maximum.
        max: u64,
    },
}

/// One decoded frame, borrowing its payload from the input.
#[derive(Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    /// FIN bit: last fragment of a message.
    pub fin: bool,
    /// The frame's opcode.
    pub opcode: OpCode,
    /// The (unmasked) payload.
    pub payload: &'a [u8],
}

/// Decodes one server frame from the start of `buf`.
///
/// Returns the frame and the number of bytes it occupied, `Ok(None)` if
/// `buf` does not yet hold a whole frame, or an error if the frame is
/// invalid. `max_payload` bounds the memory a hostile or broken server can
/// make loadgen hold for one frame.
pub fn decode(buf: &[u8], max_payload: u64) -> Result<Option<(Frame<'_>, usize)>, FrameError> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let b0 = buf[0];
    let b1 = buf[1];
    if b0 & 0x70 != 0 {
        return Err(FrameError::ReservedBits);
    }
    let fin = b0 & 0x80 != 0;
    let opcode = OpCode::from_bits(b0 & 0x0F)?;
    if b1 & 0x80 != 0 {
        return Err(FrameError::MaskedServerFrame);
    }
    let (len, header) = match b1 & 0x7F {
        126 => {
            if buf.len() < 4 {
                return Ok(None);
            }
            (u16::from_be_bytes([buf[2], buf[3]]) as u64, 4)
        }
        127 => {
            if buf.len() < 10 {
                return Ok(None);
            }
            let mut b = [0u8; 8];
            b.copy_from_slice(&buf[2..10]);
            (u64::from_be_bytes(b), 10)
        }
        n => (n as u64, 2),
    };
    if opcode.is_control() && (len > 125 || !fin) {
        return Err(FrameError::BadControlFrame);
    }
    if len > max_payload {
        return Err(FrameError::TooLarge {
            len,
            max: max_payload,
        });
    }
    let total = header + len as usize;
    if buf.len() < total {
        return Ok(None);
    }
    Ok(Some((
        Frame {
            fin,
            opcode,
            payload: &buf[header..total],
        },
        total,
    )))
}

/// Appends one complete (FIN) masked client frame to `out`.
pub fn encode(out: &mut Vec<u8>, opcode: OpCode, payload: &[u8], mask: [u8; 4]) {
    out.push(0x80 | opcode.bits());
    let len = payload.len();
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if len <= u16::MAX as usize {
        out.push(0x80 | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(&mask);
    let start = out.len();
    out.extend_from_slice(payload);
    apply_mask(&mut out[start..], mask);
}

/// XORs `data` with the 4-byte `mask` (masking and unmasking are the same).
pub fn apply_mask(data: &mut [u8], mask: [u8; 4]) {
    let wide = u64::from_ne_bytes([
        mask[0], mask[1], mask[2], mask[3], mask[0], mask[1], mask[2], mask[3],
    ]);
    let mut chunks = data.chunks_exact_mut(8);
    for c in &mut chunks {
        let v = u64::from_ne_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) ^ wide;
        c.copy_from_slice(&v.to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= mask[i % 4];
    }
}

/// Payload of a close frame: the status code (big-endian), no reason.
pub fn close_payload(code: u16) -> [u8; 2] {
    code.to_be_bytes()
}

/// The status code of a received close frame payload, if it has one.
pub fn close_code(payload: &[u8]) -> Option<u16> {
    (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds an unmasked (server-style) frame.
    fn server_frame(fin: bool, op: u8, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![if fin { 0x80 } else { 0 } | op];
        let len = payload.len();
        if len < 126 {
            v.push(len as u8);
        } else if len <= 65535 {
            v.push(126);
            v.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            v.push(127);
            v.extend_from_slice(&(len as u64).to_be_bytes());
        }
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn decodes_small_medium_and_large_frames() {
        for len in [0usize, 5, 125, 126, 300, 65535, 65536, 70000] {
            let payload = vec![b'x'; len];
            let bytes = server_frame(true, 1, &payload);
            let (f, used) = decode(&bytes, 1 << 20).unwrap().unwrap();
            assert_eq!(used, bytes.len());
            assert_eq!(f.payload.len(), len);
            assert_eq!(f.opcode, OpCode::Text);
            assert!(f.fin);
        }
    }

    #[test]
    fn incomplete_frames_ask_for_more_at_every_cut() {
        let bytes = server_frame(true, 2, &[7u8; 300]);
        for cut in 0..bytes.len() {
            assert_eq!(decode(&bytes[..cut], 1 << 20).unwrap(), None, "cut {cut}");
        }
    }

    #[test]
    fn masked_server_frame_is_rejected() {
        let mut bytes = server_frame(true, 1, b"hi");
        bytes[1] |= 0x80;
        assert_eq!(decode(&bytes, 100), Err(FrameError::MaskedServerFrame));
    }

    #[test]
    fn reserved_bits_and_unknown_opcodes_are_rejected() {
        let mut bytes = server_frame(true, 1, b"hi");
        bytes[0] |= 0x40;
        assert_eq!(decode(&bytes, 100), Err(FrameError::ReservedBits));
        let bytes = server_frame(true, 0x3, b"hi");
        assert_eq!(decode(&bytes, 100), Err(FrameError::UnknownOpcode(3)));
    }

    #[test]
    fn oversized_and_fragmented_control_frames_are_rejected() {
        let bytes = server_frame(true, 0x9, &[0u8; 126]);
        assert_eq!(decode(&bytes, 1000), Err(FrameError::BadControlFrame));
        let bytes = server_frame(false, 0x9, b"x");
        assert_eq!(decode(&bytes, 1000), Err(FrameError::BadControlFrame));
    }

    #[test]
    fn payload_limit_is_enforced_before_buffering() {
        // Only the header is present: the limit must trip without the body.
        let bytes = [0x81, 127, 0, 0, 0, 1, 0, 0, 0, 0];
        assert!(matches!(
            decode(&bytes, 1 << 20),
            Err(FrameError::TooLarge { .. })
        ));
    }

    #[test]
    fn encoded_client_frames_unmask_to_the_payload() {
        for len in [0usize, 3, 125, 126, 1000, 70000] {
            let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let mask = [0x12, 0x34, 0x56, 0x78];
            let mut out = Vec::new();
            encode(&mut out, OpCode::Binary, &payload, mask);
            assert_eq!(out[0], 0x82);
            assert_ne!(out[1] & 0x80, 0, "client frames are masked");
            let header = out.len() - len - 4;
            assert_eq!(&out[header..header + 4], &mask);
            let mut body = out[header + 4..].to_vec();
            apply_mask(&mut body, mask);
            assert_eq!(body, payload);
        }
    }

    #[test]
    fn close_codes_round_trip() {
        assert_eq!(close_code(&close_payload(1012)), Some(1012));
        assert_eq!(close_code(&[]), None);
    }
}
