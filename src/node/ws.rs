//! The socket task of one WebSocket connection, on the core that owns it.
//!
//! The task (`SocketTask`, a future written out by hand so that its fields
//! are all an idle connection keeps) alternates between three things:
//! reading client frames and handling the messages they complete, writing
//! what the connection's queue holds, and waiting for either more bytes or
//! more queued work. The socket
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
//! Whatever a large message needed is released before the task waits again.
//! What it holds is reported to the `rtc_socket_connection_buffer_bytes`
//! gauge each time it comes to rest.
//! Per-connection memory is sized on purpose: see docs/architecture.md.

use std::{
    collections::VecDeque,
    future::Future,
    os::fd::{AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd},
    pin::Pin,
    rc::Rc,
    task::{Context, Poll},
    time::{Duration, Instant},
};

use futures_lite::{AsyncRead, AsyncWrite};
use glommio::net::TcpStream;

use crate::protocol::{
    frame::{
        write_close, write_frame, FrameReader, Message, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG,
        OP_TEXT,
    },
    server, CloseCode, ErrorCode,
};

use super::{
    conn::{Conn, Outbound, Park},
    mesh::{Handoff, Session},
    park,
    shard::Shard,
};

/// What an upgrade request asked for.
pub enum Upgrade {
    /// `/ws?userId=…[&resume=…][&token=…]`: a protocol v1 session.
    Messaging(Session),
    /// `/echo`.
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
    let (conn, resume) = match upgrade {
        Upgrade::Echo => (shard.new_conn(None), None),
        Upgrade::Messaging(session) => {
            let conn = shard.new_conn(Some(session.user.into()));
            if let Some(grant) = session.grant {
                shard.authorize(&conn, *grant);
            }
            (conn, session.resume)
        }
    };
    let config = shard.config();
    // A `/ws` connection has a user, an `/echo` one has none.
    let max = match conn.user {
        Some(_) => config.max_message_bytes,
        None => config.echo_max_message_bytes,
    };
    // A client that stops reading must not pin the connection forever.
    let _ = stream.set_write_timeout(Some(Duration::from_secs(config.idle_timeout_secs)));
    let _ = stream.set_nodelay(true);
    let opening = {
        let (shard, conn) = (shard.clone(), conn.clone());
        Box::pin(async move {
            if let Some(user) = conn.user.clone() {
                shard.open_session(&conn, user, resume.as_deref()).await;
            }
            leftover
        })
    };
    glommio::spawn_local(SocketTask {
        shard: shard.clone(),
        conn,
        stream: Some(stream),
        reader: FrameReader::new(max),
        tx: response,
        written: 0,
        held: 0,
        closing: false,
        flow: Flow::Continue,
        phase: Phase::Opening(opening),
    })
    .detach();
}

/// What reading a batch of bytes came to.
#[derive(Debug, Clone, Copy)]
enum Flow {
    Continue,
    /// The client sent a close frame (answered, unless we closed first).
    PeerClosed,
    /// The client broke the protocol: close with this code.
    Fail(CloseCode),
}

/// Where the socket task is. The states that run rarely and hold a lot
/// (opening the session, delivering direct messages, closing) are boxed
/// futures, so the task itself stays the size of its idle state.
enum Phase {
    /// Opening the session; yields the bytes read behind the upgrade.
    Opening(Pin<Box<dyn Future<Output = Vec<u8>>>>),
    /// Delivering the direct messages of one read (then `Turn`).
    Delivering(Pin<Box<dyn Future<Output = ()>>>),
    /// Acting on `flow`, then encoding the queue into `tx`.
    Turn,
    /// Writing `tx[written..]` (then `Rest`).
    Writing,
    /// Written: report the buffers, check the deadline (then `Reading`).
    Rest,
    /// Waiting for bytes or queued work.
    Reading,
    /// Parked (`node::park`): waiting in the core's epoll set, on this
    /// dup of the socket, without a stream (then `Reading`).
    Parked(OwnedFd),
    /// Writing what is left in `tx` before closing (errors ignored).
    Finishing,
    /// Closing the session.
    Closing(Pin<Box<dyn Future<Output = ()>>>),
    Done,
}

/// The socket task, written out as a future: its fields are all an idle
/// connection keeps (see docs/architecture.md for the bytes). An `async fn`
/// would also keep its arguments, every local that lives across an await and
/// the futures it awaits, side by side.
struct SocketTask {
    shard: Rc<Shard>,
    conn: Rc<Conn>,
    /// `None` only while parked.
    stream: Option<TcpStream>,
    reader: FrameReader,
    /// Frames encoded and not yet written; released once written.
    tx: Vec<u8>,
    written: u32,
    /// Buffer bytes last reported to the gauge.
    held: u32,
    /// We sent a close frame: what the client sends now is read only for
    /// its close reply (data frames are no longer handled).
    closing: bool,
    flow: Flow,
    phase: Phase,
}

impl Future for SocketTask {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let task = self.get_mut();
        loop {
            match &mut task.phase {
                Phase::Opening(open) => {
                    let Poll::Ready(mut leftover) = open.as_mut().poll(cx) else {
                        return Poll::Pending;
                    };
                    // Bytes the client sent right behind its upgrade request.
                    task.phase = Phase::Turn;
                    task.read(&mut leftover);
                }
                Phase::Delivering(deliver) => {
                    if deliver.as_mut().poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    task.phase = Phase::Turn;
                }
                Phase::Turn => task.turn(),
                Phase::Writing | Phase::Finishing => {
                    let Some(stream) = task.stream.as_mut() else {
                        unreachable!("a parked task unparks before it writes")
                    };
                    while (task.written as usize) < task.tx.len() {
                        let rest = &task.tx[task.written as usize..];
                        match Pin::new(&mut *stream).poll_write(cx, rest) {
                            Poll::Ready(Ok(n)) if n > 0 => task.written += n as u32,
                            Poll::Ready(_) => {
                                task.tx = Vec::new();
                                task.written = 0;
                                task.close();
                                break;
                            }
                            Poll::Pending => return Poll::Pending,
                        }
                    }
                    task.tx = Vec::new();
                    task.written = 0;
                    // It talks: not parked before it is silent for a tick.
                    if matches!(task.conn.park.get(), Park::Quiet | Park::Due) {
                        task.conn.park.set(Park::Active);
                    }
                    match task.phase {
                        Phase::Writing => task.phase = Phase::Rest,
                        Phase::Finishing => task.close(),
                        _ => {}
                    }
                }
                Phase::Rest => {
                    task.conn.set_unsent(0);
                    let held = task.reader.buffered_capacity()
                        + task.conn.queue_capacity() * size_of::<Outbound>();
                    task.report_held(held);
                    if task.expired() {
                        task.close();
                    } else {
                        task.phase = Phase::Reading;
                    }
                }
                Phase::Reading => {
                    if task.conn.has_work() || task.expired() {
                        task.flow = Flow::Continue;
                        task.phase = Phase::Turn;
                        continue;
                    }
                    task.conn.set_waker(cx.waker());
                    if task.conn.park.get() == Park::Due && task.park() {
                        return Poll::Pending;
                    }
                    let Some(stream) = task.stream.as_mut() else {
                        unreachable!("parked only in Phase::Parked")
                    };
                    let shard = task.shard.clone();
                    let mut scratch = shard.scratch().borrow_mut();
                    match Pin::new(stream).poll_read(cx, &mut scratch) {
                        Poll::Ready(Ok(0) | Err(_)) => task.close(),
                        Poll::Ready(Ok(n)) => {
                            task.phase = Phase::Turn;
                            // Read right here, while the bytes are in the
                            // scratch buffer.
                            task.read(&mut scratch[..n]);
                            task.conn.last_seen.set(shard.clock());
                            task.conn.ping_sent.set(false);
                            if glommio::executor().need_preempt() {
                                cx.waker().wake_by_ref();
                                return Poll::Pending;
                            }
                        }
                        Poll::Pending => return Poll::Pending,
                    }
                }
                Phase::Parked(_) => {
                    task.conn.set_waker(cx.waker());
                    let readable = task.conn.park.get() == Park::Readable;
                    if !(readable || task.conn.has_work() || task.expired()) {
                        return Poll::Pending;
                    }
                    task.unpark();
                }
                Phase::Closing(close) => {
                    if close.as_mut().poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    task.phase = Phase::Done;
                }
                Phase::Done => return Poll::Ready(()),
            }
        }
    }
}

impl SocketTask {
    /// Reads the frames in `input` and handles every message they complete:
    /// envelopes are routed, echoes, pongs and the close reply are encoded
    /// into `tx`. Direct messages for this core's users are delivered next
    /// (`Delivering`), before the flow is acted on.
    fn read(&mut self, input: &mut [u8]) {
        if input.is_empty() {
            self.flow = Flow::Continue;
            return;
        }
        let ingress = Instant::now();
        let (shard, conn) = (&*self.shard, &self.conn);
        let closing = self.closing;
        let tx = &mut self.tx;
        let mut local = Vec::new();
        let mut peer_closed = false;
        let read = self.reader.feed(input, &mut |message| match message {
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
            Message::Text(text) => match &conn.user {
                Some(user) => shard.on_text(conn, user, text, ingress, &mut local),
                None => write_frame(tx, OP_TEXT, text.as_bytes()),
            },
            Message::Binary(data) => match conn.user {
                None => write_frame(tx, OP_BINARY, data),
                Some(_) => conn.push_error(
                    ErrorCode::BinaryNotSupported,
                    None,
                    "send JSON envelopes in text frames",
                ),
            },
            Message::Ping(payload) => write_frame(tx, OP_PONG, payload),
            Message::Pong(_) => {}
        });
        self.flow = match read {
            Err(e) => Flow::Fail(e.close_code()),
            Ok(()) if peer_closed => Flow::PeerClosed,
            Ok(()) => Flow::Continue,
        };
        if !local.is_empty() {
            // What was read before the flow ended is delivered either way.
            let shard = self.shard.clone();
            self.phase = Phase::Delivering(Box::pin(async move { shard.deliver(local).await }));
        }
    }

    /// Acts on the last read's flow, then encodes what is queued and a
    /// requested close into `tx`.
    fn turn(&mut self) {
        match self.flow {
            Flow::Continue => {}
            Flow::PeerClosed => {
                self.phase = Phase::Finishing;
                return;
            }
            Flow::Fail(code) => {
                if !self.closing {
                    write_close(&mut self.tx, code.code(), code.reason());
                }
                self.phase = Phase::Finishing;
                return;
            }
        }
        // Swapped with the connection's queue: this one is dropped once
        // drained, so neither side keeps capacity at rest.
        let mut queue = VecDeque::new();
        self.conn.take_queue(&mut queue);
        if self.closing {
            queue.clear();
        }
        // Encoded but not yet written, they still count as queued (the
        // node-wide queue-depth cap is about the memory they hold).
        self.conn.set_unsent(queue.len());
        for item in queue {
            encode(&self.shard, &self.conn, item, &mut self.tx);
        }
        if !self.closing {
            if let Some(code) = self.conn.take_close() {
                self.closing = true;
                write_close(&mut self.tx, code.code(), code.reason());
            }
        }
        self.phase = if self.tx.is_empty() {
            Phase::Rest
        } else {
            Phase::Writing
        };
    }

    /// Parks the connection (see `node::park`): a dup of its socket goes
    /// into the core's epoll set and the stream, with glommio's poll source,
    /// is dropped. False (and never tried again for this connection) when
    /// that fails: it stays on its stream.
    fn park(&mut self) -> bool {
        let Some(stream) = &self.stream else {
            return false;
        };
        // SAFETY: the stream owns this fd and outlives the borrow.
        let dup = unsafe { BorrowedFd::borrow_raw(stream.as_raw_fd()) }.try_clone_to_owned();
        let parked = dup.and_then(|fd| park::park(&self.shard, &fd, self.conn.id).map(|()| fd));
        match parked {
            Ok(fd) => {
                self.stream = None;
                self.conn.park.set(Park::Parked);
                self.phase = Phase::Parked(fd);
                self.shard.counters().add_parked(1);
                true
            }
            Err(e) => {
                tracing::debug!(error = %e, "not parked");
                self.conn.park.set(Park::Never);
                false
            }
        }
    }

    /// Back on a glommio stream, on the parked fd (then `Reading`).
    fn unpark(&mut self) {
        let Phase::Parked(fd) = std::mem::replace(&mut self.phase, Phase::Reading) else {
            return;
        };
        park::unpark(&fd);
        // SAFETY: the fd is open and owned by nobody else from here on.
        let stream = unsafe { TcpStream::from_raw_fd(fd.into_raw_fd()) };
        let idle = self.shard.config().idle_timeout_secs;
        let _ = stream.set_write_timeout(Some(Duration::from_secs(idle)));
        self.stream = Some(stream);
        self.conn.park.set(Park::Active);
        self.shard.counters().add_parked(-1);
    }

    /// True once the connection's deadline (idle timeout, close grace) passed.
    fn expired(&self) -> bool {
        self.conn
            .deadline
            .get()
            .is_some_and(|d| self.shard.clock() >= d)
    }

    /// Ends the task: closes the session.
    fn close(&mut self) {
        self.report_held(0);
        let (shard, conn) = (self.shard.clone(), self.conn.clone());
        self.phase = Phase::Closing(Box::pin(async move { shard.close_conn(&conn).await }));
    }

    /// Moves the core's buffer gauge by the change since the last report.
    fn report_held(&mut self, now: usize) {
        let now = now.min(u32::MAX as usize) as u32;
        if now != self.held {
            self.shard
                .counters()
                .add_connection_buffers(i64::from(now) - i64::from(self.held));
            self.held = now;
        }
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
        Outbound::Reconnect(ws_url) => {
            let Some(user) = &conn.user else { return };
            let token = shard.sign_token(user, conn.delivered());
            let mut out = Vec::with_capacity(160);
            let retry = shard.config().reconnect_after_ms;
            server::encode_reconnect(&mut out, &token, retry, ws_url.as_deref());
            write_frame(tx, OP_TEXT, &out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What every idle connection carries, in its two allocations besides
    /// glommio's: the task (future plus glommio's header, about 50 bytes)
    /// and the `Rc<Conn>` (plus 16). mimalloc rounds an allocation up to its
    /// size class (…, 192, 224, 256, 320, 384, …): these budgets keep them in
    /// 320 and 224. Growing a field past them costs every idle connection
    /// 32 to 64 bytes.
    #[test]
    fn the_idle_connection_state_stays_within_its_budget() {
        assert!(
            size_of::<SocketTask>() <= 264,
            "{}",
            size_of::<SocketTask>()
        );
        assert!(size_of::<Conn>() <= 208, "{}", size_of::<Conn>());
    }
}
