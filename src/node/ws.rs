//! The socket task of one WebSocket connection, on the core that owns it.
//!
//! The task alternates between three things: feeding bytes read from the
//! socket to tungstenite's frame parser and handling the messages it yields,
//! writing what the connection's queue holds, and waiting for either more
//! bytes or more queued work. tungstenite runs sans-IO over [`Io`], two
//! in-memory byte buffers; the socket is read with glommio's readiness-based
//! `poll_read` into the core's shared scratch buffer inside a single poll,
//! so a connection that is waiting holds no read buffer at all. Outbound
//! frames are encoded by the node straight into the send buffer, which is
//! released once it is written if it grew large. Per-connection memory is
//! sized on purpose: see docs/architecture.md.

use std::{
    collections::VecDeque,
    future::poll_fn,
    io::{self, Read, Write},
    os::fd::{FromRawFd, IntoRawFd},
    pin::Pin,
    rc::Rc,
    task::Poll,
    time::{Duration, Instant},
};

use futures_lite::{AsyncRead, AsyncWriteExt};
use glommio::net::TcpStream;
use tungstenite::{
    error::Error as WsError,
    protocol::{
        frame::coding::CloseCode as WsCloseCode, CloseFrame, Role, WebSocketConfig,
        WebSocketContext,
    },
    Message,
};

use crate::protocol::{
    frame::{write_close, write_frame, OP_BINARY, OP_PING, OP_TEXT},
    server, CloseCode, ErrorCode,
};

use super::{
    conn::{Conn, Outbound},
    mesh::{Handoff, Session},
    shard::Shard,
};

/// What an upgrade request asked for.
pub enum Upgrade {
    /// `/ws?userId=…[&resume=…][&token=…]`: a protocol v1 session.
    Messaging(Session),
    /// `/echo`.
    Echo,
}

/// Which endpoint a connection was upgraded on.
enum Endpoint {
    /// `/ws`: protocol v1, for this user.
    Messaging(Rc<str>),
    /// `/echo`: every message is sent back as it came.
    Echo,
}

/// tungstenite reads at most this many bytes per call from [`Io`]; it is
/// also the initial capacity of its read buffer, the one buffer an idle
/// connection keeps. Reads from `Io` are memory copies, so small is cheap.
const PARSER_CHUNK: usize = 256;
/// Receive buffers that grew past this are released once empty, not kept.
const KEEP_BYTES: usize = 4096;
/// Send buffers that grew past this are released once written: idle
/// connections keep at most this much (the handshake's 101 and `welcome`
/// alone are bigger, so they never stay).
const KEEP_TX_BYTES: usize = 256;

/// The bytes between the socket and tungstenite.
struct Io {
    rx: Vec<u8>,
    pos: usize,
    tx: Vec<u8>,
}

impl Read for Io {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let avail = &self.rx[self.pos..];
        if avail.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = avail.len().min(buf.len());
        buf[..n].copy_from_slice(&avail[..n]);
        self.pos += n;
        Ok(n)
    }
}

impl Write for Io {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.tx.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Io {
    /// Forgets consumed input; frees the buffer if it grew and is now empty.
    fn compact(&mut self) {
        if self.pos == self.rx.len() {
            if self.rx.capacity() > KEEP_BYTES {
                self.rx = Vec::new();
            } else {
                self.rx.clear();
            }
            self.pos = 0;
        } else if self.pos > 0 {
            self.rx.drain(..self.pos);
            self.pos = 0;
        }
    }

    fn sent(&mut self) {
        if self.tx.capacity() > KEEP_TX_BYTES {
            self.tx = Vec::new();
        } else {
            self.tx.clear();
        }
    }
}

/// Takes over a socket handed over by another core.
pub fn adopt(shard: &Rc<Shard>, h: Handoff) {
    // SAFETY: the fd was dup'ed for this hand-off and is owned by `h.fd`;
    // `into_raw_fd` gives up that ownership to the stream.
    let stream = unsafe { TcpStream::from_raw_fd(h.fd.into_raw_fd()) };
    start(
        shard,
        stream,
        Upgrade::Messaging(h.session),
        h.response,
        h.leftover,
    );
}

/// Spawns the socket task of a freshly upgraded connection.
pub fn start(
    shard: &Rc<Shard>,
    stream: TcpStream,
    upgrade: Upgrade,
    response: Vec<u8>,
    leftover: Vec<u8>,
) {
    let (conn, endpoint, resume) = match upgrade {
        Upgrade::Echo => (shard.new_conn(None), Endpoint::Echo, None),
        Upgrade::Messaging(session) => {
            let user: Rc<str> = session.user.into();
            let conn = shard.new_conn(Some(user.clone()));
            if let Some(grant) = session.grant {
                shard.authorize(&conn, *grant);
            }
            (conn, Endpoint::Messaging(user), session.resume)
        }
    };
    let io = Io {
        rx: leftover,
        pos: 0,
        tx: response,
    };
    glommio::spawn_local(connection(
        shard.clone(),
        conn,
        stream,
        io,
        endpoint,
        resume,
    ))
    .detach();
}

enum Flow {
    Continue,
    PeerClosed,
    Fail(CloseCode),
}

fn ws_config(max_message: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(PARSER_CHUNK)
        // Frames tungstenite writes itself (pongs, close replies) go straight
        // to `Io`; our own frames never pass through it.
        .write_buffer_size(0)
        .max_message_size(Some(max_message))
        .max_frame_size(Some(max_message))
}

/// The socket task. Its future is what an idle connection costs, so what
/// runs once (opening and closing the session, handling a batch of frames)
/// is boxed, and everything lives in this one future: a wrapper future would
/// store the stream and buffers a second time.
async fn connection(
    shard: Rc<Shard>,
    conn: Rc<Conn>,
    mut stream: TcpStream,
    mut io: Io,
    endpoint: Endpoint,
    resume: Option<String>,
) {
    // Each boxed future is bound first: a temporary of the `.await`
    // statement itself would be kept in this future's state.
    if let Endpoint::Messaging(user) = &endpoint {
        let open = Box::pin(shard.open_session(&conn, user.clone(), resume.as_deref()));
        open.await;
    }
    drop(resume);
    serve(&shard, &conn, &mut stream, &mut io, &endpoint).await;
    let close = Box::pin(shard.close_conn(&conn));
    close.await;
}

async fn serve(
    shard: &Shard,
    conn: &Rc<Conn>,
    stream: &mut TcpStream,
    io: &mut Io,
    endpoint: &Endpoint,
) {
    let config = shard.config();
    let max = match endpoint {
        Endpoint::Messaging(_) => config.max_message_bytes,
        Endpoint::Echo => config.echo_max_message_bytes,
    };
    // A client that stops reading must not pin the connection forever.
    let _ = stream.set_write_timeout(Some(Duration::from_secs(config.idle_timeout_secs)));
    let _ = stream.set_nodelay(true);
    let mut ws = WebSocketContext::new(Role::Server, Some(ws_config(max)));
    let mut queue = VecDeque::new();
    let mut closing = false;
    let mut input = !io.rx.is_empty();
    loop {
        if input {
            input = false;
            // Boxed: the handler's state (envelope routing, store calls) is
            // large and only alive while a batch is handled; inline, every
            // idle connection's task would carry it.
            let frames = Box::pin(read_frames(shard, conn, &mut ws, io, endpoint));
            let flow = frames.await;
            io.compact();
            match flow {
                Flow::Continue => {
                    let _ = ws.flush(io);
                }
                Flow::PeerClosed => {
                    let _ = ws.flush(io);
                    let _ = stream.write_all(&io.tx).await;
                    return;
                }
                Flow::Fail(code) => {
                    write_close(&mut io.tx, code.code(), code.reason());
                    let _ = stream.write_all(&io.tx).await;
                    return;
                }
            }
        }
        conn.take_queue(&mut queue);
        if closing {
            queue.clear();
        }
        // Encoded but not yet written, they still count as queued (the
        // node-wide queue-depth cap is about the memory they hold).
        conn.set_unsent(queue.len());
        for item in queue.drain(..) {
            encode(shard, conn, item, &mut io.tx);
        }
        if queue.capacity() > 64 {
            queue = VecDeque::new();
        }
        if !closing {
            if let Some(code) = conn.take_close() {
                closing = true;
                let frame = CloseFrame {
                    code: WsCloseCode::from(code.code()),
                    reason: code.reason().into(),
                };
                if ws.close(io, Some(frame)).is_err() {
                    write_close(&mut io.tx, code.code(), code.reason());
                }
                let _ = ws.flush(io);
            }
        }
        if !io.tx.is_empty() {
            if stream.write_all(&io.tx).await.is_err() {
                return;
            }
            io.sent();
        }
        conn.set_unsent(0);
        let deadline = conn.deadline.get();
        let expired = || deadline.is_some_and(|d| shard.clock() >= d);
        if expired() {
            return;
        }
        let read = poll_fn(|cx| {
            if conn.has_work() || expired() {
                return Poll::Ready(None);
            }
            conn.set_waker(cx.waker());
            let mut scratch = shard.scratch().borrow_mut();
            match Pin::new(&mut *stream).poll_read(cx, &mut scratch) {
                Poll::Ready(Ok(n)) => {
                    io.rx.extend_from_slice(&scratch[..n]);
                    Poll::Ready(Some(n))
                }
                Poll::Ready(Err(_)) => Poll::Ready(Some(0)),
                Poll::Pending => Poll::Pending,
            }
        })
        .await;
        match read {
            Some(0) => return,
            Some(_) => {
                input = true;
                conn.last_seen.set(shard.clock());
                conn.ping_sent.set(false);
            }
            None => {}
        }
        glommio::yield_if_needed().await;
    }
}

/// Writes one queued item as a frame.
fn encode(shard: &Shard, conn: &Conn, item: Outbound, tx: &mut Vec<u8>) {
    match item {
        Outbound::Text(bytes) => write_frame(tx, OP_TEXT, &bytes),
        Outbound::Direct {
            offset,
            envelope,
            ingress,
        } => {
            write_frame(tx, OP_TEXT, &envelope);
            conn.note_written(offset);
            if let Some(t) = ingress {
                shard.record_latency(t);
            }
        }
        Outbound::Room { envelope, ingress } => {
            write_frame(tx, OP_TEXT, &envelope);
            shard.record_latency(ingress);
        }
        Outbound::Ping => write_frame(tx, OP_PING, b""),
        Outbound::Reconnect => {
            let Some(user) = &conn.user else { return };
            let token = shard.sign_token(user, conn.delivered());
            let mut out = Vec::with_capacity(160);
            let retry = shard.config().reconnect_after_ms;
            server::encode_reconnect(&mut out, &token, retry, None);
            write_frame(tx, OP_TEXT, &out);
        }
    }
}

/// Parses every complete message in `io.rx` and handles it.
async fn read_frames(
    shard: &Shard,
    conn: &Rc<Conn>,
    ws: &mut WebSocketContext,
    io: &mut Io,
    endpoint: &Endpoint,
) -> Flow {
    let ingress = Instant::now();
    let mut local = Vec::new();
    let flow = loop {
        match ws.read(io) {
            Ok(Message::Text(text)) => match endpoint {
                Endpoint::Messaging(user) => {
                    shard.on_text(conn, user, text.as_str(), ingress, &mut local)
                }
                Endpoint::Echo => write_frame(&mut io.tx, OP_TEXT, text.as_bytes()),
            },
            Ok(Message::Binary(data)) => match endpoint {
                Endpoint::Echo => write_frame(&mut io.tx, OP_BINARY, &data),
                Endpoint::Messaging(_) => conn.push_error(
                    ErrorCode::BinaryNotSupported,
                    None,
                    "send JSON envelopes in text frames",
                ),
            },
            Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)) => {}
            Ok(Message::Close(_)) => break Flow::PeerClosed,
            Err(WsError::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => break Flow::Continue,
            Err(WsError::ConnectionClosed | WsError::AlreadyClosed) => break Flow::PeerClosed,
            Err(WsError::Capacity(_)) => break Flow::Fail(CloseCode::TooBig),
            Err(WsError::Utf8(_)) => break Flow::Fail(CloseCode::InvalidUtf8),
            Err(_) => break Flow::Fail(CloseCode::ProtocolError),
        }
    };
    // What was read before the flow ended is delivered either way.
    shard.deliver(local).await;
    flow
}
