//! The server's WebSocket frame reader (RFC 6455 §5), sans-IO: bytes in,
//! messages out, no socket and no clock.
//!
//! [`FrameReader::feed`] takes whatever the socket gave (the per-core
//! scratch buffer, unmasked in place) and reports every complete message
//! and control frame to a callback, in order. A frame that is complete
//! inside the input is reported as a slice of the input itself: no copy. Only
//! what cannot be reported yet is kept, and only as much of it as arrived:
//!
//! - the payload so far of an incomplete or fragmented data message
//!   (`message`, unmasked, UTF-8 checked as it arrives for text);
//! - the bytes of an incomplete frame header (at most 14) or the payload so
//!   far of an incomplete control frame (at most 125), in one small box
//!   (`spill`) that exists only while one of them is pending.
//!
//! Invariants:
//! - Between two frames the reader holds no heap memory: `message` is
//!   released (not cleared) once its message is reported, so one large
//!   message never leaves a large buffer behind, and `spill` is dropped as
//!   soon as its header or control frame is complete.
//! - `message` never grows past `max_message`: a frame whose declared length
//!   would take the message over it is refused from its header alone
//!   ([`FrameError::MessageTooBig`], close 1009) before any payload is kept.
//! - Every byte of a text message is UTF-8 checked before the next read
//!   (fail fast, also inside a fragment and across fragment boundaries); a
//!   message is reported only when it is valid as a whole.
//! - After an error or a close frame the reader is finished: every later
//!   byte is ignored.

use thiserror::Error;

use crate::protocol::CloseCode;

/// Longest frame header: 2 bytes, 8 of extended length, 4 of mask.
const MAX_HEADER: usize = 14;
/// Longest payload of a control frame (RFC 6455 §5.5).
const MAX_CONTROL: usize = 125;

/// A protocol violation by the client; each maps to the close code the
/// server answers with ([`FrameError::close_code`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum FrameError {
    /// A client frame without the mask bit (§5.1). Close 1002.
    #[error("client frame is not masked")]
    Unmasked,
    /// RSV1-3 set without a negotiated extension (§5.2). Close 1002.
    #[error("reserved bits set")]
    ReservedBits,
    /// An opcode RFC 6455 does not define (3-7, 0xB-0xF). Close 1002.
    #[error("reserved opcode {0:#x}")]
    ReservedOpcode(u8),
    /// A control frame without FIN (§5.5). Close 1002.
    #[error("fragmented control frame")]
    FragmentedControl,
    /// A control frame with more than 125 bytes of payload (§5.5). Close 1002.
    #[error("control frame payload over 125 bytes")]
    ControlTooLong,
    /// A 64-bit length with its most significant bit set (§5.2). Close 1002.
    #[error("payload length over 2^63")]
    BadLength,
    /// A continuation frame with no fragmented message open (§5.4). Close 1002.
    #[error("continuation frame without a message to continue")]
    UnexpectedContinuation,
    /// A new text or binary frame while a fragmented message is open (§5.4).
    /// Close 1002.
    #[error("new data frame inside a fragmented message")]
    ExpectedContinuation,
    /// A close frame with a 1-byte payload (§5.5.1). Close 1002.
    #[error("close frame with a 1-byte payload")]
    ClosePayloadTooShort,
    /// A close code that must not be sent (§7.4: 1004-1006, 1015, <1000,
    /// unassigned 1016-2999, ≥5000). Close 1002.
    #[error("invalid close code {0}")]
    BadCloseCode(u16),
    /// A text message or close reason that is not UTF-8 (§8.1). Close 1007.
    #[error("invalid UTF-8")]
    InvalidUtf8,
    /// A message over the node's size limit. Close 1009.
    #[error("message over {0} bytes")]
    MessageTooBig(usize),
}

impl FrameError {
    /// The close code the server sends for this violation.
    pub fn close_code(self) -> CloseCode {
        match self {
            FrameError::InvalidUtf8 => CloseCode::InvalidUtf8,
            FrameError::MessageTooBig(_) => CloseCode::TooBig,
            _ => CloseCode::ProtocolError,
        }
    }
}

/// What the reader reports, borrowed from the input or from the reader.
#[derive(Debug, PartialEq, Eq)]
pub enum Message<'a> {
    /// A complete text message, UTF-8 checked.
    Text(&'a str),
    /// A complete binary message.
    Binary(&'a [u8]),
    /// A ping; the server answers with a pong carrying `payload`.
    Ping(&'a [u8]),
    /// A pong (unsolicited or not).
    Pong(&'a [u8]),
    /// A close frame: its code and reason, `None` when it had no payload.
    /// The reader reads nothing after it.
    Close(Option<(u16, &'a str)>),
}

/// The frame whose header has been read and whose payload is arriving.
/// Lengths fit in 32 bits: a data frame is at most `max_message` (itself
/// at most `u32::MAX`), a control frame at most 125 bytes.
#[derive(Debug, Clone, Copy)]
struct Partial {
    opcode: u8,
    fin: bool,
    mask: [u8; 4],
    /// Payload bytes read so far (the mask's phase).
    done: u32,
    /// Payload bytes still to come.
    left: u32,
}

/// What a read cut short besides data payload: a frame header, or a
/// control frame's payload (never both: a header is pending only between
/// frames).
#[derive(Debug)]
struct Spill {
    head: [u8; MAX_HEADER],
    control_len: u8,
    control: [u8; MAX_CONTROL],
}

/// The kind of the data message being assembled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Open {
    None,
    Text,
    Binary,
}

/// The reader of one connection's client frames; see the module docs.
/// Every idle connection keeps one, so it is kept small (64 bytes): 32-bit
/// lengths, and the rare cut header or control frame boxed.
#[derive(Debug)]
pub struct FrameReader {
    /// Bytes of a cut header in `spill.head`.
    head_len: u8,
    open: Open,
    finished: bool,
    frame: Option<Partial>,
    /// Bytes of `message` already known to be valid UTF-8 (text only).
    checked: u32,
    max_message: u32,
    message: Vec<u8>,
    spill: Option<Box<Spill>>,
}

/// A parsed frame header.
struct Header {
    opcode: u8,
    fin: bool,
    mask: [u8; 4],
    len: u64,
}

const OP_CONTINUATION: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;

impl FrameReader {
    /// A reader that refuses messages over `max_message` bytes (at most
    /// `u32::MAX`: larger limits are cut to it).
    pub fn new(max_message: usize) -> FrameReader {
        let max_message = max_message.min(u32::MAX as usize) as u32;
        FrameReader {
            head_len: 0,
            open: Open::None,
            finished: false,
            frame: None,
            checked: 0,
            max_message,
            message: Vec::new(),
            spill: None,
        }
    }

    /// Heap bytes the reader holds now (capacity, not length): what a
    /// pending partial message costs. 0 between messages.
    pub fn buffered_capacity(&self) -> usize {
        self.message.capacity() + self.spill.as_ref().map_or(0, |_| size_of::<Spill>())
    }

    /// True once a close frame or an error ended the stream.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// Reads `input` (unmasking it in place) and calls `on` with every
    /// message and control frame completed by it, in order. An error ends
    /// the stream: the caller closes with [`FrameError::close_code`].
    pub fn feed(
        &mut self,
        input: &mut [u8],
        on: &mut dyn FnMut(Message<'_>),
    ) -> Result<(), FrameError> {
        if self.finished {
            return Ok(());
        }
        let result = self.feed_inner(input, on);
        if result.is_err() {
            self.finished = true;
            self.release();
        }
        result
    }

    fn feed_inner(
        &mut self,
        mut input: &mut [u8],
        on: &mut dyn FnMut(Message<'_>),
    ) -> Result<(), FrameError> {
        while !self.finished {
            let frame = match self.frame {
                Some(frame) => frame,
                None if input.is_empty() => return Ok(()),
                None => {
                    let used = self.read_header(input)?;
                    input = &mut input[used..];
                    match self.frame {
                        Some(frame) => frame,
                        None => return Ok(()), // the header is incomplete
                    }
                }
            };
            if frame.left > 0 && input.is_empty() {
                return Ok(());
            }
            let take = (frame.left as usize).min(input.len());
            let (chunk, rest) = std::mem::take(&mut input).split_at_mut(take);
            input = rest;
            unmask(chunk, frame.mask, frame.done);
            let left = frame.left - take as u32;
            let first = frame.done == 0;
            self.frame = (left > 0).then_some(Partial {
                done: frame.done + take as u32,
                left,
                ..frame
            });
            if frame.opcode & 0x8 != 0 {
                self.control_bytes(frame.opcode, chunk, first, left == 0, on)?;
            } else {
                self.data_bytes(frame.fin, chunk, first, left, on)?;
            }
        }
        Ok(())
    }

    /// Reads a frame header from the start of `input` (completing one kept
    /// in `head`) and starts its frame; returns the bytes of `input` used.
    /// With too few bytes they are all kept in `head` and no frame starts.
    fn read_header(&mut self, input: &[u8]) -> Result<usize, FrameError> {
        let have = self.head_len as usize;
        if have == 0 {
            // The common case: the header is read in place.
            if let Some((header, len)) = parse_header(input)? {
                self.begin(header)?;
                return Ok(len);
            }
            // Shorter than MAX_HEADER, or it would have parsed.
            self.spill().head[..input.len()].copy_from_slice(input);
            self.head_len = input.len() as u8;
            return Ok(input.len());
        }
        let take = (MAX_HEADER - have).min(input.len());
        let head = &mut self.spill().head;
        head[have..have + take].copy_from_slice(&input[..take]);
        match parse_header(&head[..have + take])? {
            Some((header, len)) => {
                self.head_len = 0;
                self.spill = None;
                self.begin(header)?;
                Ok(len - have)
            }
            None => {
                self.head_len = (have + take) as u8;
                Ok(take)
            }
        }
    }

    /// Checks a header against the reader's state and starts its frame.
    fn begin(&mut self, h: Header) -> Result<(), FrameError> {
        match h.opcode {
            OP_CONTINUATION if self.open == Open::None => {
                return Err(FrameError::UnexpectedContinuation)
            }
            OP_TEXT | OP_BINARY if self.open != Open::None => {
                return Err(FrameError::ExpectedContinuation)
            }
            OP_TEXT => self.open = Open::Text,
            OP_BINARY => self.open = Open::Binary,
            _ => {}
        }
        if h.opcode & 0x8 == 0 {
            let total = (self.message.len() as u64).saturating_add(h.len);
            if total > u64::from(self.max_message) {
                return Err(FrameError::MessageTooBig(self.max_message as usize));
            }
        }
        self.frame = Some(Partial {
            opcode: h.opcode,
            fin: h.fin,
            mask: h.mask,
            done: 0,
            // At most `max_message` (checked above) or 125 (a control frame).
            left: h.len as u32,
        });
        Ok(())
    }

    /// Payload bytes of a data frame; `left` is what the frame still has to
    /// come after `chunk`.
    fn data_bytes(
        &mut self,
        fin: bool,
        chunk: &[u8],
        first: bool,
        left: u32,
        on: &mut dyn FnMut(Message<'_>),
    ) -> Result<(), FrameError> {
        let text = self.open == Open::Text;
        if first && left == 0 && fin && self.message.is_empty() {
            // The whole message is in the input: reported from there.
            self.open = Open::None;
            if text {
                let s = std::str::from_utf8(chunk).map_err(|_| FrameError::InvalidUtf8)?;
                on(Message::Text(s));
            } else {
                on(Message::Binary(chunk));
            }
            return Ok(());
        }
        self.append(chunk, if fin { Some(left) } else { None });
        if text {
            match std::str::from_utf8(&self.message[self.checked as usize..]) {
                Ok(_) => self.checked = self.message.len() as u32,
                // A character cut by the end of the bytes so far: its start
                // is valid, the rest is checked when it arrives.
                Err(e) if e.error_len().is_none() => self.checked += e.valid_up_to() as u32,
                Err(_) => return Err(FrameError::InvalidUtf8),
            }
        }
        if !(fin && left == 0) {
            return Ok(());
        }
        let message = std::mem::take(&mut self.message);
        self.release();
        self.open = Open::None;
        if text {
            // Checked as it arrived; this pass only proves it to the type.
            let s = std::str::from_utf8(&message).map_err(|_| FrameError::InvalidUtf8)?;
            on(Message::Text(s));
        } else {
            on(Message::Binary(&message));
        }
        Ok(())
    }

    /// Appends payload to `message`. It grows geometrically, but never past
    /// the end of the message when the frame is the last one (`last` = the
    /// bytes still to come) nor past the size limit: a large message that
    /// arrives slowly is held at about the size of what arrived.
    fn append(&mut self, chunk: &[u8], last: Option<u32>) {
        let need = self.message.len() + chunk.len();
        if need > self.message.capacity() {
            let mut target = need.max(self.message.capacity() * 2).max(256);
            if let Some(left) = last {
                target = target.min(need.saturating_add(left as usize));
            }
            target = target.min(self.max_message as usize).max(need);
            self.message.reserve_exact(target - self.message.len());
        }
        self.message.extend_from_slice(chunk);
    }

    /// Payload bytes of a control frame (at most 125 in all).
    fn control_bytes(
        &mut self,
        opcode: u8,
        chunk: &[u8],
        first: bool,
        complete: bool,
        on: &mut dyn FnMut(Message<'_>),
    ) -> Result<(), FrameError> {
        if first && complete {
            return self.report_control(opcode, chunk, on);
        }
        let buf = self.spill();
        // The header check keeps a control frame within 125 bytes.
        let at = buf.control_len as usize;
        buf.control[at..at + chunk.len()].copy_from_slice(chunk);
        buf.control_len += chunk.len() as u8;
        if !complete {
            return Ok(());
        }
        let buf = self.spill.take().expect("just filled");
        self.report_control(opcode, &buf.control[..buf.control_len as usize], on)
    }

    fn report_control(
        &mut self,
        opcode: u8,
        payload: &[u8],
        on: &mut dyn FnMut(Message<'_>),
    ) -> Result<(), FrameError> {
        match opcode {
            OP_PING => on(Message::Ping(payload)),
            OP_PONG => on(Message::Pong(payload)),
            _ => {
                let close = match payload {
                    [] => None,
                    [_] => return Err(FrameError::ClosePayloadTooShort),
                    [hi, lo, reason @ ..] => {
                        let code = u16::from_be_bytes([*hi, *lo]);
                        if !valid_close_code(code) {
                            return Err(FrameError::BadCloseCode(code));
                        }
                        let reason =
                            std::str::from_utf8(reason).map_err(|_| FrameError::InvalidUtf8)?;
                        Some((code, reason))
                    }
                };
                self.finished = true;
                self.release();
                on(Message::Close(close));
            }
        }
        Ok(())
    }

    /// Releases every buffer (after a message, an error or a close).
    fn release(&mut self) {
        self.message = Vec::new();
        self.spill = None;
        self.checked = 0;
    }

    /// The spill box, made when first needed.
    fn spill(&mut self) -> &mut Spill {
        self.spill.get_or_insert_with(|| {
            Box::new(Spill {
                head: [0; MAX_HEADER],
                control_len: 0,
                control: [0; MAX_CONTROL],
            })
        })
    }
}

/// True for a close code a peer may send (RFC 6455 §7.4, the IANA
/// registry): 1000-1003, 1007-1014, and 3000-4999 (libraries, applications).
pub fn valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// Parses a client frame header at the start of `buf`: `None` when more
/// bytes are needed. The first two bytes are checked as soon as they are
/// there, so a broken frame is refused without waiting for the rest.
fn parse_header(buf: &[u8]) -> Result<Option<(Header, usize)>, FrameError> {
    let [b0, b1, ..] = *buf else {
        return Ok(None);
    };
    if b0 & 0x70 != 0 {
        return Err(FrameError::ReservedBits);
    }
    let fin = b0 & 0x80 != 0;
    let opcode = b0 & 0x0f;
    match opcode {
        OP_CONTINUATION | OP_TEXT | OP_BINARY => {}
        OP_CLOSE | OP_PING | OP_PONG => {
            if !fin {
                return Err(FrameError::FragmentedControl);
            }
            if b1 & 0x7f > MAX_CONTROL as u8 {
                return Err(FrameError::ControlTooLong);
            }
        }
        other => return Err(FrameError::ReservedOpcode(other)),
    }
    if b1 & 0x80 == 0 {
        return Err(FrameError::Unmasked);
    }
    let (len, at) = match b1 & 0x7f {
        126 => {
            let Some(l) = buf.get(2..4) else {
                return Ok(None);
            };
            (u16::from_be_bytes([l[0], l[1]]) as u64, 4)
        }
        127 => {
            let Some(l) = buf.get(2..10) else {
                return Ok(None);
            };
            let len = u64::from_be_bytes(l.try_into().expect("8 bytes"));
            if len >> 63 != 0 {
                return Err(FrameError::BadLength);
            }
            (len, 10)
        }
        n => (n as u64, 2),
    };
    let Some(m) = buf.get(at..at + 4) else {
        return Ok(None);
    };
    let mask = [m[0], m[1], m[2], m[3]];
    Ok(Some((
        Header {
            opcode,
            fin,
            mask,
            len,
        },
        at + 4,
    )))
}

/// XORs `data` with `mask`, starting at payload offset `done`, eight bytes
/// at a time (the compiler vectorizes the word loop).
fn unmask(data: &mut [u8], mask: [u8; 4], done: u32) {
    let phase = (done % 4) as usize;
    let m: [u8; 8] = std::array::from_fn(|i| mask[(phase + i) % 4]);
    let word = u64::from_ne_bytes(m);
    let mut chunks = data.chunks_exact_mut(8);
    for c in &mut chunks {
        let v = u64::from_ne_bytes((&*c).try_into().expect("8 bytes")) ^ word;
        c.copy_from_slice(&v.to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= m[i];
    }
}

#[cfg(test)]
#[path = "reader_tests.rs"]
mod tests;
