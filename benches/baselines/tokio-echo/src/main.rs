//! tokio + tokio-tungstenite echo server, written the ordinary way: one task
//! per connection, every text/binary message sent back unchanged.
//!
//! Usage: `tokio-echo-baseline [ADDR] [THREADS]` (default 127.0.0.1:9001, all
//! cores). Any path is accepted.

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:9001".into());
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = args.next().and_then(|t| t.parse().ok()) {
        rt.worker_threads(n);
    }
    rt.enable_all().build()?.block_on(async move {
        let listener = TcpListener::bind(&addr).await?;
        println!("listening ws={}", listener.local_addr()?);
        loop {
            let (stream, _) = listener.accept().await?;
            tokio::spawn(serve(stream));
        }
    })
}

async fn serve(stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
        return;
    };
    while let Some(Ok(msg)) = ws.next().await {
        if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
            break;
        }
    }
}
