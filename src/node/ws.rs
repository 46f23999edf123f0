//! The socket task of one WebSocket connection, on the core that owns it.
//!
//! The task alternates between three things: reading client frames and
//! handling the messages they complete, writing what the connection's queue
//! holds, and waiting for either more bytes or more queued work. The socket
//! is read with glommio's readiness-based `poll_read` into the core's shared
//! scratch buffer, and the project's own sans-IO [`FrameReader`] reads the
//! frames right there, inside the same poll: a frame that arrived whole is
//! unmasked in place and handled as a slice of the scratch buffer (no copy),
//! and only a frame cut by the end of a read is kept, by the reader, at the
//! size of what arrived. Outbound frames are encoded by the node straight
//! into the send buffer.
//!
//! Invariant: a connection at rest (waiting for bytes or work) holds no
//! buffer: no read buffer (the reader keeps only a frame cut by the end of a
//! read), no send buffer (released once written: one allocation per write,
//! cheap next to the `send(2)` it feeds) and no outbound queue capacity.
//! Whatever a large message needed is released before the task waits again. What it holds is reported to the
//! `rtc_socket_connection_buffer_bytes` gauge each time it comes to rest.
//! Per-connection memory is sized on purpose: see docs/architecture.md.

use std::{
    collections::VecDeque,
    future::poll_fn,
    os::fd::{FromRawFd, IntoRawFd},
    pin::Pin,
    rc::Rc,
    task::Poll,
    time::{Duration, Instant},
};

use futures_lite::{AsyncRead, AsyncWriteExt};
use glommio::net::TcpStream;

use crate::protocol::{
    frame::{
        write_close, write_frame, FrameReader, Message, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG,
        OP_TEXT,
    },
    server, CloseCode, ErrorCode,
};

use super::{
    conn::{Conn, Outbound},
    mesh::{Handoff, Session},
    shard::{LocalDirect, Shard},
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
    glommio::spawn_local(connection(
        shard.clone(),
        conn,
        stream,
        response,
        leftover,
        endpoint,
        resume,
    ))
    .detach();
}

/// What reading a batch of bytes came to.
enum Flow {
    Continue,
    /// The client sent a close frame (answered, unless we closed first).
    PeerClosed,
    /// The socket reached its end or failed.
    Gone,
    /// The client broke the protocol: close with this code.
    Fail(CloseCode),
}

/// The socket task. Its future is what an idle connection costs, so what
/// runs once (opening and closing the session, delivering a batch of direct
/// messages) is boxed, and everything lives in this one future: a wrapper
/// future would store the stream and buffers a second time.
async fn connection(
    shard: Rc<Shard>,
    conn: Rc<Conn>,
    mut stream: TcpStream,
    tx: Vec<u8>,
    leftover: Vec<u8>,
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
    let config = shard.config();
    let max = match endpoint {
        Endpoint::Messaging(_) => config.max_message_bytes,
        Endpoint::Echo => config.echo_max_message_bytes,
    };
    let mut socket = Socket {
        reader: FrameReader::new(max),
        tx,
        closing: false,
        held: 0,
    };
    serve(&shard, &conn, &mut stream, &mut socket, leftover, &endpoint).await;
    socket.report_held(&shard, 0);
    let close = Box::pin(shard.close_conn(&conn));
    close.await;
}

/// The socket task's own state besides the stream.
struct Socket {
    reader: FrameReader,
    /// Frames encoded and not yet written.
    tx: Vec<u8>,
    /// We sent a close frame: what the client sends now is read only for
    /// its close reply (data frames are no longer handled).
    closing: bool,
    /// Buffer bytes last reported to the gauge.
    held: usize,
}

impl Socket {
    /// Forgets written bytes and frees their buffer.
    fn sent(&mut self) {
        self.tx = Vec::new();
    }

    /// Moves the core's buffer gauge by the change since the last report.
    fn report_held(&mut self, shard: &Shard, now: usize) {
        if now != self.held {
            shard
                .counters()
                .add_connection_buffers(now as i64 - self.held as i64);
            self.held = now;
        }
    }
}

async fn serve(
    shard: &Shard,
    conn: &Rc<Conn>,
    stream: &mut TcpStream,
    socket: &mut Socket,
    mut leftover: Vec<u8>,
    endpoint: &Endpoint,
) {
    let config = shard.config();
    // A client that stops reading must not pin the connection forever.
    let _ = stream.set_write_timeout(Some(Duration::from_secs(config.idle_timeout_secs)));
    let _ = stream.set_nodelay(true);
    let mut queue = VecDeque::new();
    let mut local = Vec::new();
    // Bytes the client sent right behind its upgrade request.
    let mut flow = read_input(
        shard,
        conn,
        socket,
        endpoint,
        &mut leftover,
        &mut local,
        Instant::now(),
    );
    drop(leftover);
    loop {
        if !local.is_empty() {
            // Boxed: the delivery's state (store calls, routing) is large and
            // alive only while a batch is delivered; inline, every idle
            // connection's task would carry it. What was read before the flow
            // ended is delivered either way.
            let deliver = Box::pin(shard.deliver(std::mem::take(&mut local)));
            deliver.await;
        }
        match flow {
            Flow::Continue => {}
            Flow::Gone => return,
            Flow::PeerClosed => {
                let _ = stream.write_all(&socket.tx).await;
                return;
            }
            Flow::Fail(code) => {
                if !socket.closing {
                    write_close(&mut socket.tx, code.code(), code.reason());
                }
                let _ = stream.write_all(&socket.tx).await;
                return;
            }
        }
        conn.take_queue(&mut queue);
        if socket.closing {
            queue.clear();
        }
        // Encoded but not yet written, they still count as queued (the
        // node-wide queue-depth cap is about the memory they hold).
        conn.set_unsent(queue.len());
        for item in queue.drain(..) {
            encode(shard, conn, item, &mut socket.tx);
        }
        // The queue is swapped with the connection's on every take, so
        // releasing this one leaves neither side with capacity at rest.
        if queue.capacity() > 0 {
            queue = VecDeque::new();
        }
        if !socket.closing {
            if let Some(code) = conn.take_close() {
                socket.closing = true;
                write_close(&mut socket.tx, code.code(), code.reason());
            }
        }
        if !socket.tx.is_empty() {
            if stream.write_all(&socket.tx).await.is_err() {
                return;
            }
            socket.sent();
        }
        conn.set_unsent(0);
        let held = socket.reader.buffered_capacity()
            + socket.tx.capacity()
            + conn.queue_capacity() * std::mem::size_of::<Outbound>();
        socket.report_held(shard, held);
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
                Poll::Ready(Ok(0) | Err(_)) => Poll::Ready(Some(Flow::Gone)),
                // Read right here, while the bytes are in the scratch buffer.
                Poll::Ready(Ok(n)) => Poll::Ready(Some(read_input(
                    shard,
                    conn,
                    socket,
                    endpoint,
                    &mut scratch[..n],
                    &mut local,
                    Instant::now(),
                ))),
                Poll::Pending => Poll::Pending,
            }
        })
        .await;
        match read {
            Some(Flow::Gone) => return,
            Some(f) => {
                flow = f;
                conn.last_seen.set(shard.clock());
                conn.ping_sent.set(false);
            }
            None => flow = Flow::Continue,
        }
        glommio::yield_if_needed().await;
    }
}

/// Reads the frames in `input` and handles every message they complete:
/// envelopes are routed (direct messages for this core are collected into
/// `local`, delivered by the caller), echoes, pongs and the close reply are
/// encoded into the send buffer.
fn read_input(
    shard: &Shard,
    conn: &Rc<Conn>,
    socket: &mut Socket,
    endpoint: &Endpoint,
    input: &mut [u8],
    local: &mut Vec<LocalDirect>,
    ingress: Instant,
) -> Flow {
    if input.is_empty() {
        return Flow::Continue;
    }
    let closing = socket.closing;
    let tx = &mut socket.tx;
    let mut peer_closed = false;
    let read = socket.reader.feed(input, &mut |message| match message {
        Message::Close(close) => {
            peer_closed = true;
            if !closing {
                // The reply echoes the client's code (RFC 6455 §5.5.1).
                match close {
                    Some((code, _)) => write_close(tx, code, ""),
                    None => write_frame(tx, OP_CLOSE, b""),
                }
            }
        }
        // After our close frame only the client's close reply matters.
        _ if closing => {}
        Message::Text(text) => match endpoint {
            Endpoint::Messaging(user) => shard.on_text(conn, user, text, ingress, local),
            Endpoint::Echo => write_frame(tx, OP_TEXT, text.as_bytes()),
        },
        Message::Binary(data) => match endpoint {
            Endpoint::Echo => write_frame(tx, OP_BINARY, data),
            Endpoint::Messaging(_) => conn.push_error(
                ErrorCode::BinaryNotSupported,
                None,
                "send JSON envelopes in text frames",
            ),
        },
        Message::Ping(payload) => write_frame(tx, OP_PONG, payload),
        Message::Pong(_) => {}
    });
    match read {
        Err(e) => Flow::Fail(e.close_code()),
        Ok(()) if peer_closed => Flow::PeerClosed,
        Ok(()) => Flow::Continue,
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
