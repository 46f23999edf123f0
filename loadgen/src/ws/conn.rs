//! One client WebSocket connection on a glommio core: the thin I/O shell
//! around the pure [`frame`](super::frame) and [`handshake`](super::handshake)
//! code.
//!
//! Memory is the point of this module. A million idle connections must fit,
//! so an idle [`Conn`] owns no buffer at all:
//!
//! - reads go through glommio's readiness-based (non-buffered) `TcpStream`
//!   into a **per-core scratch buffer** that is borrowed only inside one
//!   `poll` and never across an `.await`;
//! - a partial frame left at the end of a read is copied into `carry`, which
//!   is freed as soon as the frame completes;
//! - writes are attempted immediately (`send(2)` with `MSG_DONTWAIT`); only
//!   bytes the kernel did not take are kept in `out`, which is freed once it
//!   drains.
//!
//! Invariants: only the owning core touches a `Conn` (it is `!Send`); the
//! `RefCell` is never borrowed across an await point, and message handlers
//! run while it is *not* borrowed, so a handler may send on any connection,
//! including the one it was called for.

use super::error::{ConnectError, Ended, SendError};
use super::frame::{self, FrameError, OpCode};
use super::handshake;
use super::socket::{open_socket, raw_send, reset_on_close_and_shutdown};
use crate::target::Target;
use futures_lite::future;
use futures_lite::io::{AsyncRead, AsyncWrite};
use glommio::net::TcpStream;
use rand::{rngs::SmallRng, Rng, SeedableRng};
use std::cell::RefCell;
use std::future::poll_fn;
use std::io;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

/// Size of the per-core read scratch buffer.
const SCRATCH_BYTES: usize = 64 * 1024;
/// Largest server frame loadgen accepts.
const MAX_FRAME: u64 = 16 * 1024 * 1024;
/// Bytes a connection may queue while the kernel refuses them; beyond this
/// the connection is not keeping up and further sends are refused.
const MAX_BACKLOG: usize = 4 * 1024 * 1024;
/// Reads per poll before yielding to the other connections of the core.
const READS_PER_POLL: usize = 8;

thread_local! {
    static READ_SCRATCH: RefCell<Vec<u8>> = RefCell::new(vec![0; SCRATCH_BYTES]);
    static WRITE_SCRATCH: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(SCRATCH_BYTES));
    static MASK_RNG: RefCell<SmallRng> = RefCell::new(SmallRng::from_rng(&mut rand::rng()));
}

/// What a message handler wants next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Keep reading.
    Continue,
    /// Return from [`Conn::run`] (remaining bytes are kept for the next run).
    Stop,
}

struct Io {
    stream: TcpStream,
    /// Bytes the kernel has not accepted yet (empty and unallocated when idle).
    out: Vec<u8>,
    /// Unparsed bytes: a partial frame (or response head) between reads.
    carry: Vec<u8>,
    /// A fragmented message being assembled, with its opcode.
    frag: Option<(OpCode, Vec<u8>)>,
    /// The read loop's waker, woken when `out` needs flushing.
    waker: Option<Waker>,
    close_sent: bool,
    /// loadgen started the close (as opposed to echoing the server's).
    closed_by_us: bool,
    broken: bool,
}

/// One client WebSocket connection. See the module docs for the invariants.
pub struct Conn {
    io: RefCell<Io>,
    fd: RawFd,
}

/// Opens a TCP connection from `source` (if given) to `addr`, performs the
/// WebSocket upgrade for `path`, all within `timeout`.
pub async fn connect(
    target: &Target,
    path: &str,
    source: Option<IpAddr>,
    timeout: Duration,
) -> Result<Rc<Conn>, ConnectError> {
    future::or(connect_inner(target, path, source), async {
        glommio::timer::sleep(timeout).await;
        Err(ConnectError::Timeout)
    })
    .await
}

async fn connect_inner(
    target: &Target,
    path: &str,
    source: Option<IpAddr>,
) -> Result<Rc<Conn>, ConnectError> {
    let stream = open_socket(target.addr, source).map_err(ConnectError::from_io)?;
    let conn = Rc::new(Conn::new(stream));
    let key = MASK_RNG.with(|r| handshake::generate_key(&mut *r.borrow_mut()));
    let mut req = Vec::with_capacity(256);
    handshake::write_request(&mut req, &target.host_header, path, &key);
    // On a socket still connecting, send(2) answers EAGAIN and glommio waits
    // for writability, i.e. for the connect to complete; a failed connect
    // (refused, reset) surfaces as the flush's error.
    conn.io.borrow_mut().out = req;
    poll_fn(|cx| conn.poll_flush(cx))
        .await
        .map_err(ConnectError::from_io)?;
    poll_fn(|cx| conn.poll_handshake(cx, &key)).await?;
    Ok(conn)
}

impl Conn {
    fn new(stream: TcpStream) -> Self {
        let fd = stream.as_raw_fd();
        Self {
            io: RefCell::new(Io {
                stream,
                out: Vec::new(),
                carry: Vec::new(),
                frag: None,
                waker: None,
                close_sent: false,
                closed_by_us: false,
                broken: false,
            }),
            fd,
        }
    }

    /// Sends one complete message (a single masked frame).
    pub fn send(&self, opcode: OpCode, payload: &[u8]) -> Result<(), SendError> {
        let mask: [u8; 4] = MASK_RNG.with(|r| r.borrow_mut().random());
        WRITE_SCRATCH.with(|w| {
            let mut w = w.borrow_mut();
            w.clear();
            frame::encode(&mut w, opcode, payload, mask);
            self.write_bytes(&w)
        })
    }

    /// Sends a text message whose payload `build` writes into a per-core
    /// scratch buffer (no allocation per message).
    pub fn send_text_with(&self, build: impl FnOnce(&mut Vec<u8>)) -> Result<(), SendError> {
        thread_local! {
            static PAYLOAD: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
        }
        PAYLOAD.with(|p| {
            let mut p = p.borrow_mut();
            p.clear();
            build(&mut p);
            self.send(OpCode::Text, &p)
        })
    }

    /// Starts the close handshake with `code` (idempotent).
    pub fn close(&self, code: u16) {
        self.io.borrow_mut().closed_by_us = true;
        self.send_close(code);
    }

    /// Ends the connection abruptly, as a network failure would: no close
    /// frame, and an RST once the socket is released.
    pub fn abort(&self) {
        let mut io = self.io.borrow_mut();
        io.closed_by_us = true;
        io.broken = true;
        reset_on_close_and_shutdown(self.fd);
    }

    /// True if loadgen itself closed or aborted this connection.
    pub fn closed_by_us(&self) -> bool {
        self.io.borrow().closed_by_us
    }

    fn send_close(&self, code: u16) {
        if self.io.borrow().close_sent {
            return;
        }
        let _ = self.send(OpCode::Close, &frame::close_payload(code));
        self.io.borrow_mut().close_sent = true;
    }

    /// Bytes still waiting for the kernel.
    pub fn backlog(&self) -> usize {
        self.io.borrow().out.len()
    }

    /// True once a read or write failed or the close handshake started.
    pub fn is_closed(&self) -> bool {
        let io = self.io.borrow();
        io.broken || io.close_sent
    }

    /// Reads and dispatches messages until the handler says [`Next::Stop`] or
    /// the connection ends. Pings are answered and close frames echoed here;
    /// `on_message(payload, is_text)` sees only complete data messages.
    pub async fn run(&self, mut on_message: impl FnMut(&[u8], bool) -> Next) -> Ended {
        // Frames left over from a previous run (e.g. after the welcome) first.
        if let Some(end) = self.dispatch(&[], &mut on_message) {
            return end;
        }
        poll_fn(|cx| self.poll_run(cx, &mut on_message)).await
    }

    fn poll_run(
        &self,
        cx: &mut Context<'_>,
        f: &mut impl FnMut(&[u8], bool) -> Next,
    ) -> Poll<Ended> {
        {
            let mut io = self.io.borrow_mut();
            if !io.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                io.waker = Some(cx.waker().clone());
            }
        }
        if let Poll::Ready(Err(e)) = self.poll_flush(cx) {
            return Poll::Ready(Ended::Io(e));
        }
        for _ in 0..READS_PER_POLL {
            let step = READ_SCRATCH.with(|s| {
                let mut scratch = s.borrow_mut();
                let read = {
                    let mut io = self.io.borrow_mut();
                    Pin::new(&mut io.stream).poll_read(cx, &mut scratch[..])
                };
                match read {
                    Poll::Pending => Poll::Pending,
                    Poll::Ready(Ok(0)) => Poll::Ready(Some(Ended::Eof)),
                    Poll::Ready(Ok(n)) => Poll::Ready(self.dispatch(&scratch[..n], f)),
                    Poll::Ready(Err(e)) => Poll::Ready(Some(Ended::Io(e))),
                }
            });
            match step {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(end)) => {
                    if !matches!(end, Ended::Stopped) {
                        self.io.borrow_mut().broken = true;
                    }
                    return Poll::Ready(end);
                }
                Poll::Ready(None) => {}
            }
        }
        // Read budget used up: let the core's other connections run.
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    /// Parses `carry ++ data` frame by frame; keeps any partial tail.
    fn dispatch(&self, data: &[u8], f: &mut impl FnMut(&[u8], bool) -> Next) -> Option<Ended> {
        let mut carry = std::mem::take(&mut self.io.borrow_mut().carry);
        let use_carry = !carry.is_empty();
        if use_carry {
            carry.extend_from_slice(data);
        }
        let buf: &[u8] = if use_carry { &carry } else { data };
        let mut pos = 0;
        let mut result = None;
        while result.is_none() {
            match frame::decode(&buf[pos..], MAX_FRAME) {
                Ok(Some((fr, used))) => {
                    pos += used;
                    result = self.on_frame(fr, f);
                }
                Ok(None) => break,
                Err(e) => return Some(Ended::Protocol(e)),
            }
        }
        if pos < buf.len() {
            let tail = if use_carry {
                carry.drain(..pos);
                carry
            } else {
                data[pos..].to_vec()
            };
            self.io.borrow_mut().carry = tail;
        }
        result
    }

    fn on_frame(
        &self,
        fr: frame::Frame<'_>,
        f: &mut impl FnMut(&[u8], bool) -> Next,
    ) -> Option<Ended> {
        match fr.opcode {
            OpCode::Text | OpCode::Binary if fr.fin => {
                (f(fr.payload, fr.opcode == OpCode::Text) == Next::Stop).then_some(Ended::Stopped)
            }
            OpCode::Text | OpCode::Binary => {
                self.io.borrow_mut().frag = Some((fr.opcode, fr.payload.to_vec()));
                None
            }
            OpCode::Continuation => {
                let mut io = self.io.borrow_mut();
                let Some((_, buf)) = io.frag.as_mut() else {
                    return Some(Ended::Protocol(FrameError::UnknownOpcode(0)));
                };
                buf.extend_from_slice(fr.payload);
                if !fr.fin {
                    return None;
                }
                let (op, msg) = io.frag.take().expect("checked above");
                drop(io);
                (f(&msg, op == OpCode::Text) == Next::Stop).then_some(Ended::Stopped)
            }
            OpCode::Ping => {
                let _ = self.send(OpCode::Pong, fr.payload);
                None
            }
            OpCode::Pong => None,
            OpCode::Close => {
                let code = frame::close_code(fr.payload);
                // Echo the close (RFC 6455 §5.5.1) unless we started it.
                self.send_close(code.unwrap_or(1000));
                Some(Ended::PeerClosed(code))
            }
        }
    }

    /// Queues `bytes`, writing immediately whatever the kernel accepts.
    fn write_bytes(&self, bytes: &[u8]) -> Result<(), SendError> {
        let mut io = self.io.borrow_mut();
        if io.broken || io.close_sent {
            return Err(SendError::Closed);
        }
        if !io.out.is_empty() {
            if io.out.len() + bytes.len() > MAX_BACKLOG {
                return Err(SendError::BacklogFull);
            }
            io.out.extend_from_slice(bytes);
            return Ok(());
        }
        let sent = match raw_send(self.fd, bytes) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
            Err(_) => {
                io.broken = true;
                return Err(SendError::Closed);
            }
        };
        if sent < bytes.len() {
            io.out.extend_from_slice(&bytes[sent..]);
            if let Some(w) = &io.waker {
                w.wake_by_ref();
            }
        }
        Ok(())
    }

    /// Writes `out` until it is empty (Ready(Ok)), the kernel pushes back
    /// (Pending, with write readiness registered) or the socket fails.
    fn poll_flush(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut io = self.io.borrow_mut();
        while !io.out.is_empty() {
            let io = &mut *io;
            match Pin::new(&mut io.stream).poll_write(cx, &io.out) {
                Poll::Ready(Ok(0)) => {
                    io.broken = true;
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                Poll::Ready(Ok(n)) => {
                    io.out.drain(..n);
                }
                Poll::Ready(Err(e)) => {
                    io.broken = true;
                    return Poll::Ready(Err(e));
                }
                Poll::Pending => return Poll::Pending,
            }
        }
        // Give the memory back: an idle connection holds no buffer.
        io.out = Vec::new();
        Poll::Ready(Ok(()))
    }

    /// Reads until the upgrade response is complete and checked.
    fn poll_handshake(&self, cx: &mut Context<'_>, key: &str) -> Poll<Result<(), ConnectError>> {
        loop {
            let read = READ_SCRATCH.with(|s| {
                let mut scratch = s.borrow_mut();
                let mut io = self.io.borrow_mut();
                match Pin::new(&mut io.stream).poll_read(cx, &mut scratch[..]) {
                    Poll::Ready(Ok(0)) => Poll::Ready(Err(ConnectError::Reset)),
                    Poll::Ready(Ok(n)) => {
                        io.carry.extend_from_slice(&scratch[..n]);
                        Poll::Ready(Ok(()))
                    }
                    Poll::Ready(Err(e)) => Poll::Ready(Err(ConnectError::from_io(e))),
                    Poll::Pending => Poll::Pending,
                }
            });
            match read {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(())) => {}
            }
            let mut io = self.io.borrow_mut();
            match handshake::parse_response(&io.carry, key)? {
                None => continue,
                Some(head) => {
                    io.carry = io.carry[head..].to_vec();
                    return Poll::Ready(Ok(()));
                }
            }
        }
    }
}
