//! Where the heap of an idle connection goes: runs a node in this process
//! under a counting allocator, opens N idle `/ws` connections to it (the
//! upgrade and the welcome read), and prints the live heap growth per
//! connection, broken down by allocation size (the size tells which
//! structure it is; see the memory table in docs/architecture.md).
//!
//! ```text
//! cargo run --release --example heap_per_connection -- 10000 [SETTLE_SECS]
//! ```
//!
//! The heap is read `SETTLE_SECS` (default 8) after the last connection:
//! long enough for the node's default `--park-after-secs` (5) and one quiet
//! tick, so it counts parked connections (`node::park`).
//!
//! It counts the heap only (not the kernel's socket memory, not allocator
//! slack); `idle_memory` measures RSS from outside.

use std::{
    alloc::{GlobalAlloc, Layout, System},
    io::{Read, Write},
    net::TcpStream,
    sync::atomic::{AtomicI64, Ordering::Relaxed},
    time::Duration,
};

/// Size classes: 16-byte steps up to 1 KiB, then powers of two.
const CLASSES: usize = 64 + 24;

struct Counting;

static LIVE_BYTES: AtomicI64 = AtomicI64::new(0);
static BY_CLASS: [AtomicI64; CLASSES] = [const { AtomicI64::new(0) }; CLASSES];

fn class(size: usize) -> usize {
    if size <= 1024 {
        size.div_ceil(16).max(1) - 1
    } else {
        (64 + (usize::BITS - (size - 1).leading_zeros()) as usize - 11).min(CLASSES - 1)
    }
}

fn class_label(c: usize) -> String {
    if c < 64 {
        format!("{}..={} B", c * 16 + 1, (c + 1) * 16)
    } else {
        format!("<= {} B", 1usize << (c - 64 + 11))
    }
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE_BYTES.fetch_add(layout.size() as i64, Relaxed);
        BY_CLASS[class(layout.size())].fetch_add(1, Relaxed);
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE_BYTES.fetch_sub(layout.size() as i64, Relaxed);
        BY_CLASS[class(layout.size())].fetch_sub(1, Relaxed);
        // SAFETY: forwarded with the caller's pointer and layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn snapshot() -> (i64, Vec<i64>) {
    (
        LIVE_BYTES.load(Relaxed),
        BY_CLASS.iter().map(|c| c.load(Relaxed)).collect(),
    )
}

fn open(addr: &str, user: usize) -> TcpStream {
    let mut s = TcpStream::connect(addr).expect("connect");
    write!(
        s,
        "GET /ws?userId=heap-{user} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\n\r\n"
    )
    .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !(got.starts_with(b"HTTP/1.1 101") && got.ends_with(b"}")) {
        let n = s.read(&mut buf).expect("read");
        assert!(
            n > 0,
            "closed during upgrade: {}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
    }
    s
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10_000);
    let settle: u64 = std::env::args()
        .nth(2)
        .and_then(|a| a.parse().ok())
        .unwrap_or(8);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let mut config = shardcast::config::Config::defaults();
    config.listen = addr.parse().unwrap();
    config.metrics_listen = "127.0.0.1:0".parse().unwrap();
    config.cores = 2;
    config.handshakes_per_sec = 1_000_000;
    std::thread::spawn(move || shardcast::node::run(config).expect("node runs"));
    std::thread::sleep(Duration::from_millis(500));
    let warm: Vec<TcpStream> = (0..100).map(|i| open(&addr, n + i)).collect();
    std::thread::sleep(Duration::from_millis(300));
    let (bytes0, classes0) = snapshot();
    let conns: Vec<TcpStream> = (0..n).map(|i| open(&addr, i)).collect();
    std::thread::sleep(Duration::from_secs(settle));
    let (bytes1, classes1) = snapshot();
    println!(
        "connections={n} settle_secs={settle} live_heap_growth_per_connection_bytes={:.0}",
        (bytes1 - bytes0) as f64 / n as f64
    );
    println!("allocations per connection by size class (live, >= 0.05):");
    for (c, (a, b)) in classes0.iter().zip(&classes1).enumerate() {
        let per = (b - a) as f64 / n as f64;
        if per.abs() >= 0.05 {
            println!("  {:>14}  {per:6.2}", class_label(c));
        }
    }
    drop(conns);
    drop(warm);
    std::process::exit(0);
}
