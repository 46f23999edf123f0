//! Direct-message relay: the `send`/`msg` subset of shardcast's protocol v1
//! on tokio + tokio-tungstenite, written the ordinary way.
//!
//! - `GET /ws?userId=U` upgrades and registers U in a shared
//!   `Mutex<HashMap<user, channel>>`; the server greets with a `welcome`.
//! - `{"type":"send","to":T,"id":I,"data":D}` is delivered to T's channel as
//!   `{"type":"msg","from":U,"id":I,"offset":N,"data":D}` (N counts per
//!   recipient connection) and acknowledged with `{"type":"ack","id":I}`.
//! - Not implemented (not needed by `loadgen direct`, and not what this
//!   baseline compares): offline buffering, resume, rooms, rate limits.
//!   A message for an offline user gets an `error` with code `offline`.
//!
//! Usage: `tokio-direct-baseline [ADDR] [THREADS]` (default 127.0.0.1:9002).

use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::Message;

/// A connected user's outbound channel and its delivery counter.
struct Peer {
    tx: mpsc::UnboundedSender<Message>,
    offset: Arc<AtomicU64>,
}

type Users = Arc<Mutex<HashMap<String, Peer>>>;

#[derive(Deserialize)]
struct Envelope {
    #[serde(rename = "type")]
    kind: String,
    to: Option<String>,
    id: Option<String>,
    #[serde(default)]
    data: Value,
}

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:9002".into());
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = args.next().and_then(|t| t.parse().ok()) {
        rt.worker_threads(n);
    }
    rt.enable_all().build()?.block_on(async move {
        let listener = TcpListener::bind(&addr).await?;
        println!("listening ws={}", listener.local_addr()?);
        let users: Users = Arc::default();
        loop {
            let (stream, _) = listener.accept().await?;
            tokio::spawn(serve(stream, users.clone()));
        }
    })
}

fn user_of(req: &Request) -> Option<String> {
    req.uri()
        .query()?
        .split('&')
        .find_map(|kv| kv.strip_prefix("userId="))
        .map(str::to_owned)
}

// The handshake callback's `Result<Response, ErrorResponse>` is
// tokio-tungstenite's signature, large `Err` and all.
#[allow(clippy::result_large_err)]
async fn serve(stream: TcpStream, users: Users) {
    let _ = stream.set_nodelay(true);
    let mut user = None;
    let ws = tokio_tungstenite::accept_hdr_async(stream, |req: &Request, resp: Response| {
        user = user_of(req);
        Ok(resp)
    })
    .await;
    let (Ok(ws), Some(user)) = (ws, user) else {
        return;
    };
    let (mut sink, mut stream) = ws.split();
    let (tx, mut rx) = mpsc::unbounded_channel::<Message>();
    users.lock().unwrap().insert(
        user.clone(),
        Peer {
            tx: tx.clone(),
            offset: Arc::default(),
        },
    );
    let welcome = json!({"type": "welcome", "userId": user, "node": "tokio-baseline",
                         "resumeToken": "", "offset": 0});
    let _ = tx.send(Message::text(welcome.to_string()));
    let writer = tokio::spawn(async move {
        while let Some(msg) = rx.recv().await {
            if sink.send(msg).await.is_err() {
                break;
            }
        }
    });
    while let Some(Ok(msg)) = stream.next().await {
        let Message::Text(text) = msg else { continue };
        let Ok(env) = serde_json::from_str::<Envelope>(&text) else {
            let _ = tx.send(error("bad_envelope", None));
            continue;
        };
        match (env.kind.as_str(), env.to) {
            ("send", Some(to)) => {
                let delivered = {
                    let users = users.lock().unwrap();
                    users.get(&to).map(|peer| {
                        let offset = peer.offset.fetch_add(1, Ordering::Relaxed) + 1;
                        let msg = json!({"type": "msg", "from": user, "id": env.id,
                                         "offset": offset, "data": env.data});
                        peer.tx.send(Message::text(msg.to_string())).is_ok()
                    })
                };
                let reply = match delivered {
                    Some(true) => Message::text(json!({"type": "ack", "id": env.id}).to_string()),
                    _ => error("offline", env.id),
                };
                let _ = tx.send(reply);
            }
            _ => {
                let _ = tx.send(error("unknown_type", env.id));
            }
        }
    }
    {
        // Only forget the entry if a newer connection of the user has not
        // replaced it meanwhile.
        let mut users = users.lock().unwrap();
        if users.get(&user).is_some_and(|p| p.tx.same_channel(&tx)) {
            users.remove(&user);
        }
    }
    writer.abort();
}

fn error(code: &str, id: Option<String>) -> Message {
    Message::text(json!({"type": "error", "code": code, "id": id, "message": code}).to_string())
}
