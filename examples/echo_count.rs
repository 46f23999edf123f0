//! Sends exactly N messages through a node's `/echo` and reads every one
//! back: a fixed amount of work, so that a profiler's count on the node
//! (instructions under `valgrind --tool=callgrind`) divides into a cost per
//! message. Run it once with N = 0 (connect and close only) and once with
//! N; the difference over N is the node's cost of one echoed message.
//!
//! ```text
//! cargo run --release --example echo_count -- 127.0.0.1:8080 20000 [BYTES] [CONNECTIONS]
//! ```
//!
//! Each connection keeps 8 messages in flight (a blocking tungstenite
//! client, one thread per connection).

use std::{net::TcpStream, time::Instant};

use tungstenite::{stream::MaybeTlsStream, Message};

const WINDOW: usize = 8;

fn run(addr: &str, n: usize, bytes: usize) {
    let stream = TcpStream::connect(addr).expect("connect");
    stream.set_nodelay(true).unwrap();
    let url = format!("ws://{addr}/echo");
    let (mut ws, _) = tungstenite::client(url, MaybeTlsStream::Plain(stream)).expect("upgrade");
    let payload = "x".repeat(bytes);
    let (mut sent, mut got) = (0, 0);
    while got < n {
        while sent < n && sent - got < WINDOW {
            ws.send(Message::text(payload.clone())).expect("send");
            sent += 1;
        }
        match ws.read().expect("read") {
            Message::Text(t) => {
                assert_eq!(t.len(), bytes);
                got += 1;
            }
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    ws.close(None).expect("close");
    // Read until the server's close reply ends the stream.
    while ws.read().is_ok() {}
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(addr), Some(n)) = (
        args.get(1),
        args.get(2).and_then(|n| n.parse::<usize>().ok()),
    ) else {
        eprintln!("usage: echo_count ADDR MESSAGES [BYTES] [CONNECTIONS]");
        std::process::exit(2);
    };
    let bytes = args.get(3).and_then(|b| b.parse().ok()).unwrap_or(64);
    let conns: usize = args.get(4).and_then(|c| c.parse().ok()).unwrap_or(4);
    let t0 = Instant::now();
    std::thread::scope(|s| {
        for i in 0..conns {
            let share = n / conns + usize::from(i < n % conns);
            s.spawn(move || run(addr, share, bytes));
        }
    });
    println!(
        "messages={n} bytes={bytes} connections={conns} secs={:.2}",
        t0.elapsed().as_secs_f64()
    );
}
