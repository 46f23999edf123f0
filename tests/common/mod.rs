//! Test harness: starts the real `shardcast-node` binary on ephemeral ports
//! and talks to it through tungstenite's client (a stock WebSocket client)
//! or through raw TCP for the bad-input cases.

#![allow(dead_code)] // each test file uses a different part

pub mod cluster;
pub mod control;

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    process::{Command, ExitStatus, Stdio},
    time::Duration,
};

use serde_json::Value;
use shardcast::{
    harness::{NodeProcess, RedisProcess},
    protocol::{client, ClientEnvelope, RoomPattern, ServerEnvelope},
};
use tungstenite::{
    protocol::{frame::coding::CloseCode, CloseFrame},
    stream::MaybeTlsStream,
    Message, WebSocket,
};

pub const SECRET: &str = "integration-test-secret-0123456789";

/// A running node; killed when dropped.
pub struct Node {
    pub process: NodeProcess,
    pub ws: SocketAddr,
    pub metrics: SocketAddr,
}

/// The node command line the tests use: ephemeral ports, `--cores 2`, the
/// test secret, then `extra`.
pub fn node_command(extra: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_shardcast-node"));
    command
        .args(["--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"])
        .args(["--cores", "2"])
        .args(extra)
        // An environment default, so that `extra` may name another node.
        .env("SHARDCAST_NODE_ID", "test-node")
        .env("SHARDCAST_SECRET", SECRET)
        .env("RUST_LOG", "warn")
        .stderr(Stdio::inherit());
    command
}

/// The store a test runs its nodes with. The suites that check offsets,
/// offline delivery, replay and dedup run once per store
/// ([`for_each_store!`]), so the Redis store must keep every promise the
/// in-memory store keeps.
pub enum Store {
    Memory,
    /// A `redis-server` of the test's own; killed with the test.
    Redis(RedisProcess),
}

impl Store {
    pub fn memory() -> Store {
        Store::Memory
    }

    pub fn redis() -> Store {
        Store::Redis(RedisProcess::start().expect("start redis-server"))
    }

    /// The node flags that select this store.
    pub fn args(&self) -> Vec<String> {
        match self {
            Store::Memory => Vec::new(),
            Store::Redis(r) => vec!["--redis".into(), r.url()],
        }
    }

    /// Starts a node on this store with `extra` flags.
    pub fn node(&self, extra: &[&str]) -> Node {
        let mut command = node_command(extra);
        command.args(self.args());
        Node::from_command(command)
    }

    /// The Redis server, for tests that stop and start it.
    pub fn redis_process(&mut self) -> &mut RedisProcess {
        match self {
            Store::Redis(r) => r,
            Store::Memory => panic!("not a Redis store"),
        }
    }
}

/// Defines each test once per store: `fn name(store) { … }` becomes the
/// tests `memory::name` and `redis::name`, each with its own `store`.
#[macro_export]
macro_rules! for_each_store {
    ($( $(#[doc = $doc:literal])* fn $name:ident($store:ident) $body:block )*) => {
        mod memory {
            #[allow(unused_imports)]
            use super::*;
            $( $(#[doc = $doc])* #[test] fn $name() {
                #[allow(unused_mut)]
                let mut $store = $crate::common::Store::memory();
                $body
            } )*
        }
        mod redis {
            #[allow(unused_imports)]
            use super::*;
            $( $(#[doc = $doc])* #[test] fn $name() {
                #[allow(unused_mut)]
                let mut $store = $crate::common::Store::redis();
                $body
            } )*
        }
    };
}

impl Node {
    /// Starts a node with `--cores 2` and `extra` flags.
    pub fn start(extra: &[&str]) -> Node {
        Node::from_command(node_command(extra))
    }

    /// Starts the node `command` describes.
    pub fn from_command(command: Command) -> Node {
        let process = NodeProcess::start(command).expect("start shardcast-node");
        Node {
            ws: process.ws,
            metrics: process.metrics,
            process,
        }
    }

    /// Connects `user` and reads its `welcome`.
    pub fn connect(&self, user: &str) -> (Client, Value) {
        let mut c = self
            .connect_query(&format!("userId={user}"))
            .expect("upgrade");
        let welcome = c.recv();
        assert_eq!(welcome["type"], "welcome", "{welcome}");
        (c, welcome)
    }

    /// Connects to `/ws?{query}`.
    pub fn connect_query(&self, query: &str) -> Result<Client, tungstenite::Error> {
        self.connect_path(&format!("/ws?{query}"))
    }

    /// Connects to `path`.
    pub fn connect_path(&self, path: &str) -> Result<Client, tungstenite::Error> {
        connect_to(self.ws, path)
    }

    /// One plain HTTP GET on the main port: (status line, whole response).
    pub fn http_get(&self, path: &str) -> (String, String) {
        http_get(self.ws, path)
    }

    /// The Prometheus text.
    pub fn metrics(&self) -> String {
        http_get(self.metrics, "/metrics").1
    }

    /// The value of one metric line (exact series name with labels).
    pub fn metric(&self, series: &str) -> f64 {
        let text = self.metrics();
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no series {series} in\n{text}"))
    }

    /// Sends SIGTERM and waits for the exit (at most `within`).
    pub fn terminate(&mut self, within: Duration) -> ExitStatus {
        self.process.terminate(within).expect("node exits")
    }

    /// Raw TCP connection to the main port.
    pub fn raw(&self) -> TcpStream {
        let s = TcpStream::connect(self.ws).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s
    }

    /// Raw TCP connection that has sent a valid upgrade request for `user`
    /// (the 101 response is left unread).
    pub fn raw_upgrade(&self, user: &str) -> TcpStream {
        let mut s = self.raw();
        write!(
            s,
            "GET /ws?userId={user} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\n\r\n"
        )
        .unwrap();
        s
    }
}

/// A WebSocket client connected to `path` at `addr`.
pub fn connect_to(addr: SocketAddr, path: &str) -> Result<Client, tungstenite::Error> {
    let stream = TcpStream::connect(addr).map_err(tungstenite::Error::Io)?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.set_nodelay(true).unwrap();
    let url = format!("ws://{addr}{path}");
    let (ws, _) = tungstenite::client(url, MaybeTlsStream::Plain(stream)).map_err(|e| match e {
        tungstenite::HandshakeError::Failure(e) => e,
        tungstenite::HandshakeError::Interrupted(_) => panic!("blocking stream"),
    })?;
    Ok(Client { ws })
}

pub fn http_get(addr: SocketAddr, path: &str) -> (String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    (out.lines().next().unwrap_or_default().to_owned(), out)
}

/// One raw HTTP request (`head` ends with the blank line, `body` follows):
/// the status code, the whole response, and its body as JSON (`Null` when
/// it is not JSON).
pub fn http_request(addr: SocketAddr, head: &str, body: &[u8]) -> (u16, String, Value) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    let status = text.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let json = text
        .split_once("\r\n\r\n")
        .and_then(|(_, b)| serde_json::from_str(b).ok())
        .unwrap_or(Value::Null);
    (status, text, json)
}

/// A WebSocket client speaking protocol v1.
pub struct Client {
    pub ws: WebSocket<MaybeTlsStream<TcpStream>>,
}

/// How a connection ended, seen from the client.
#[derive(Debug)]
pub enum Ended {
    Close(Option<CloseFrame>),
    Reset,
}

impl Client {
    /// Sends raw text as it is (bad input, on purpose).
    pub fn send_text(&mut self, text: &str) {
        self.ws.send(Message::text(text)).unwrap();
    }

    fn send_encoded(&mut self, out: Vec<u8>) {
        let text = String::from_utf8(out).expect("envelopes are UTF-8");
        self.ws.send(Message::text(text)).unwrap();
    }

    /// The next envelope (skips pings/pongs). It must parse as a protocol v1
    /// server envelope; it is returned as JSON for the assertions.
    pub fn recv(&mut self) -> Value {
        loop {
            match self.ws.read().expect("read a message") {
                Message::Text(t) => return server_envelope(t.as_str()),
                Message::Ping(_) | Message::Pong(_) => continue,
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    /// Reads until the connection closes; returns the close frame and the
    /// envelopes seen before it.
    pub fn recv_until_closed(&mut self) -> (Ended, Vec<Value>) {
        let mut seen = Vec::new();
        loop {
            match self.ws.read() {
                Ok(Message::Text(t)) => seen.push(server_envelope(t.as_str())),
                Ok(Message::Close(f)) => {
                    // Complete the closing handshake.
                    while self.ws.read().is_ok() {}
                    return (Ended::Close(f), seen);
                }
                Ok(_) => {}
                Err(_) => return (Ended::Reset, seen),
            }
        }
    }

    /// Reads for `within` (the read timeout set by the caller paces it),
    /// answering the node's pings — tungstenite queues each pong, a flush
    /// sends it — and calling `each` after every read; returns the pings
    /// seen. Any other message, or the connection ending, fails the test.
    pub fn answer_pings_for(&mut self, within: Duration, mut each: impl FnMut()) -> u32 {
        let t0 = std::time::Instant::now();
        let mut pings = 0;
        while t0.elapsed() < within {
            match self.ws.read() {
                Ok(Message::Ping(_)) => pings += 1,
                Ok(other) => panic!("unexpected {other:?}"),
                Err(tungstenite::Error::Io(e))
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => panic!("the answering client was dropped: {e}"),
            }
            let _ = self.ws.flush();
            each();
        }
        pings
    }

    /// Sends a direct message.
    pub fn send_direct(&mut self, to: &str, id: &str, data: Value) {
        self.try_send_direct(to, id, data).unwrap();
    }

    /// Sends a direct message; `Err` when the connection is gone.
    pub fn try_send_direct(
        &mut self,
        to: &str,
        id: &str,
        data: Value,
    ) -> Result<(), tungstenite::Error> {
        let data = serde_json::value::to_raw_value(&data).unwrap();
        let mut out = Vec::new();
        client::encode_send(&mut out, to, id, &data);
        let text = String::from_utf8(out).expect("envelopes are UTF-8");
        self.ws.send(Message::text(text))
    }

    /// Sets how long a read waits before [`Client::try_recv`] gives up.
    pub fn set_read_timeout(&mut self, timeout: Duration) {
        if let MaybeTlsStream::Plain(s) = self.ws.get_ref() {
            s.set_read_timeout(Some(timeout)).unwrap();
        }
    }

    /// The next envelope; `Ok(None)` when the read timed out, `Err` when the
    /// connection is gone.
    pub fn try_recv(&mut self) -> Result<Option<Value>, tungstenite::Error> {
        loop {
            match self.ws.read() {
                Ok(Message::Text(t)) => return Ok(Some(server_envelope(t.as_str()))),
                Ok(_) => continue,
                Err(tungstenite::Error::Io(e))
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return Ok(None)
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Subscribes to `pattern`, asking for an ack with `id`.
    pub fn join(&mut self, pattern: &str, id: &str) {
        self.subscription(pattern, id, true);
    }

    /// Drops the subscription `pattern`, asking for an ack with `id`.
    pub fn leave(&mut self, pattern: &str, id: &str) {
        self.subscription(pattern, id, false);
    }

    fn subscription(&mut self, pattern: &str, id: &str, join: bool) {
        let pattern = RoomPattern::parse(pattern).expect("a valid pattern");
        let id = Some(id.into());
        let env = if join {
            ClientEnvelope::Join { pattern, id }
        } else {
            ClientEnvelope::Leave { pattern, id }
        };
        let mut out = Vec::new();
        env.encode(&mut out);
        self.send_encoded(out);
    }

    /// Publishes `data` to `room`.
    pub fn publish(&mut self, room: &str, id: &str, data: Value) {
        let data = serde_json::value::to_raw_value(&data).unwrap();
        let mut out = Vec::new();
        client::encode_publish(&mut out, room, id, &data);
        self.send_encoded(out);
    }
}

/// Parses `text` as a server envelope (panics if it is not one) and returns
/// it as JSON.
fn server_envelope(text: &str) -> Value {
    if let Err(e) = ServerEnvelope::parse(text.as_bytes()) {
        panic!("not a protocol v1 server envelope: {text}: {e:?}");
    }
    serde_json::from_str(text).unwrap()
}

/// The close code of `ended`, if a close frame came.
pub fn close_code(ended: &Ended) -> Option<u16> {
    match ended {
        Ended::Close(Some(f)) => Some(u16::from(f.code)),
        _ => None,
    }
}

pub fn code_of(code: CloseCode) -> u16 {
    code.into()
}
