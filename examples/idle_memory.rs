//! Measures what an idle connection costs a node: opens N WebSocket
//! connections to `/ws` (each a distinct user, upgrade + welcome read),
//! leaves them idle, and reports the growth of the node's RSS per
//! connection, read from /proc/PID/status.
//!
//! ```text
//! cargo run --release --example idle_memory -- 127.0.0.1:8080 NODE_PID 10000 [SETTLE_SECS]
//! ```
//!
//! RSS is read `SETTLE_SECS` (default 2) after the last connection: freed
//! handshake buffers stay resident until the allocator purges them, so a
//! longer settle gives a steadier figure.
//!
//! A stand-in until `loadgen connect` reports server RSS itself; it uses
//! blocking std sockets (one thread), so it stays far below the node's cost.

use std::{
    io::{Read, Write},
    net::TcpStream,
    time::{Duration, Instant},
};

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

fn open(addr: &str, user: usize) -> TcpStream {
    loop {
        let mut s = TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(
            s,
            "GET /ws?userId=idle-{user} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\n\r\n"
        )
        .unwrap();
        let mut buf = [0u8; 1024];
        let mut got = Vec::new();
        // Response head plus the welcome frame (which ends with '}').
        let done = |got: &[u8]| {
            got.starts_with(b"HTTP/1.1 503")
                || (got.starts_with(b"HTTP/1.1 101") && got.ends_with(b"}"))
        };
        while !done(&got) {
            let n = s.read(&mut buf).expect("read");
            assert!(n > 0, "closed during upgrade");
            got.extend_from_slice(&buf[..n]);
        }
        if got.starts_with(b"HTTP/1.1 101") {
            return s;
        }
        std::thread::sleep(Duration::from_millis(100)); // 503: handshake cap
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (addr, pid, n, settle) = match &args[..] {
        [_, addr, pid, n] => (addr, pid, n, 2),
        [_, addr, pid, n, settle] => (addr, pid, n, settle.parse().expect("SETTLE_SECS")),
        _ => {
            eprintln!("usage: idle_memory ADDR NODE_PID CONNECTIONS [SETTLE_SECS]");
            std::process::exit(2);
        }
    };
    let (pid, n): (u32, usize) = (pid.parse().unwrap(), n.parse().unwrap());
    // Warm-up: one connection so per-core one-off allocations are not counted.
    let warm = open(addr, usize::MAX);
    std::thread::sleep(Duration::from_millis(300));
    let before = rss_kib(pid);
    let t0 = Instant::now();
    let conns: Vec<TcpStream> = (0..n).map(|i| open(addr, i)).collect();
    let took = t0.elapsed();
    std::thread::sleep(Duration::from_secs(settle));
    let after = rss_kib(pid);
    let per = (after.saturating_sub(before)) as f64 * 1024.0 / n as f64;
    println!(
        "connections={n} rss_before_kib={before} rss_after_kib={after} \
         growth_per_connection_bytes={per:.0} connect_secs={:.2} settle_secs={settle}",
        took.as_secs_f64()
    );
    drop(conns);
    drop(warm);
}
