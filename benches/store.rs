//! The store's `append` (offset + buffer, the durable step of every direct
//! message) from C concurrent tasks on one core: Redis with pipelining off
//! and on, and the in-memory store for scale.
//!
//! `cargo bench --bench store` (needs `redis-server` on the PATH; the bench
//! starts its own on a free loopback port, without persistence).
//!
//! Each row runs on one glommio `LocalExecutor` (one core, as in the node)
//! that this bench creates on its own thread; criterion's thread asks it to
//! run `iters` appends spread over C tasks and gets the elapsed time back,
//! so criterion's throughput is appends per second per core. Every append's
//! latency (call → result, queueing in the pipeline included) goes into an
//! HDR histogram; p50/p99, the link's own round trips and the mean batch
//! size, and redis-server's CPU time per append (utime+stime from
//! /proc/PID/stat) are printed after each row.

use std::{
    rc::Rc,
    sync::{mpsc, Arc},
    time::{Duration, Instant},
};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use glommio::{LocalExecutorBuilder, Placement};
use hdrhistogram::Histogram;
use shardcast::{
    config::Config,
    harness::RedisProcess,
    metrics::Metrics,
    protocol::DirectTemplate,
    store::{self, MemoryStore, RedisStore, Store},
};

/// Distinct users each task appends to, round-robin (per-user order is one
/// task's order, as on a node where one connection writes to a user).
const USERS_PER_TASK: usize = 16;

#[derive(Clone, Copy)]
enum Kind {
    Memory,
    /// Redis with this flush timer and batch bound.
    Redis {
        flush_us: u64,
        batch: usize,
    },
}

struct Row {
    name: &'static str,
    kind: Kind,
    tasks: usize,
}

const ROWS: [Row; 4] = [
    Row {
        name: "redis_unpipelined_c1",
        kind: Kind::Redis {
            flush_us: 0,
            batch: 1,
        },
        tasks: 1,
    },
    Row {
        name: "redis_pipelined_flush0_c64",
        kind: Kind::Redis {
            flush_us: 0,
            batch: 256,
        },
        tasks: 64,
    },
    Row {
        name: "redis_pipelined_flush200us_c64",
        kind: Kind::Redis {
            flush_us: 200,
            batch: 256,
        },
        tasks: 64,
    },
    Row {
        name: "memory_c64",
        kind: Kind::Memory,
        tasks: 64,
    },
];

/// A direct message like loadgen's (about 64 bytes of `data`).
fn template(task: usize) -> DirectTemplate {
    let data = format!(
        r#"{{"t":1732400000123456789,"s":{task},"p":"{}"}}"#,
        "x".repeat(24)
    );
    DirectTemplate::new(&format!("bench-sender-{task}"), "42.123456", &data)
}

/// Runs `n` appends spread over `tasks` tasks; records each one's latency
/// (ns) and returns the wall time of the whole batch.
async fn appends<S: Store + 'static>(
    store: &Rc<S>,
    n: u64,
    tasks: usize,
    latency: &Rc<std::cell::RefCell<Histogram<u64>>>,
) -> Duration {
    let t0 = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|t| {
            let share = n / tasks as u64 + u64::from((t as u64) < n % tasks as u64);
            let (store, latency) = (store.clone(), latency.clone());
            glommio::spawn_local(async move {
                let message = template(t);
                let users: Vec<String> = (0..USERS_PER_TASK)
                    .map(|u| format!("bench-{t}-{u}"))
                    .collect();
                for i in 0..share {
                    let start = Instant::now();
                    store
                        .append(&users[i as usize % USERS_PER_TASK], &message)
                        .await
                        .expect("append failed");
                    let ns = start.elapsed().as_nanos() as u64;
                    let _ = latency.borrow_mut().record(ns.clamp(1, 60_000_000_000));
                }
            })
        })
        .collect();
    for h in handles {
        h.await;
    }
    t0.elapsed()
}

/// Answers "run N appends" requests until a 0 (or a closed channel).
/// Blocking on the request channel stalls the executor, but only between
/// batches, when nothing is in flight.
async fn serve<S: Store + 'static>(
    store: Rc<S>,
    tasks: usize,
    latency: &Rc<std::cell::RefCell<Histogram<u64>>>,
    requests: &mpsc::Receiver<u64>,
    results: &mpsc::Sender<Duration>,
) -> Rc<S> {
    while let Ok(n) = requests.recv() {
        if n == 0 {
            break;
        }
        let d = appends(&store, n, tasks, latency).await;
        results.send(d).expect("criterion thread gone");
    }
    store
}

/// What the executor thread reports when a row is done.
struct RowStats {
    latency: Histogram<u64>,
    round_trips: Option<Histogram<u64>>,
    /// (batches, commands) flushed to Redis.
    batches: Option<(u64, u64)>,
}

fn metric(rendered: &str, name: &str) -> u64 {
    rendered
        .lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or(0)
}

/// Starts the executor of one row; returns the channel that takes "run N
/// appends" (0 = finish) and the one that answers.
fn spawn_row(
    kind: Kind,
    tasks: usize,
    redis_url: String,
) -> (
    mpsc::Sender<u64>,
    mpsc::Receiver<Duration>,
    std::thread::JoinHandle<RowStats>,
) {
    let (req_tx, req_rx) = mpsc::channel::<u64>();
    let (res_tx, res_rx) = mpsc::channel::<Duration>();
    let join = std::thread::spawn(move || {
        LocalExecutorBuilder::new(Placement::Unbound)
            .name("store-bench")
            .make()
            .expect("executor")
            .run(async move {
                let config = Config::defaults();
                let metrics = Arc::new(Metrics::new(1));
                let latency = Rc::new(std::cell::RefCell::new(
                    Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).unwrap(),
                ));
                match kind {
                    Kind::Memory => {
                        let store = Rc::new(MemoryStore::new(
                            config.buffer_messages,
                            Duration::from_secs(config.buffer_ttl_secs),
                        ));
                        serve(store, tasks, &latency, &req_rx, &res_tx).await;
                        RowStats {
                            latency: latency.borrow().clone(),
                            round_trips: None,
                            batches: None,
                        }
                    }
                    Kind::Redis { flush_us, batch } => {
                        let mut settings =
                            store::redis::link_settings(&config, &redis_url).expect("settings");
                        settings.flush = Duration::from_micros(flush_us);
                        settings.batch = batch;
                        let store =
                            Rc::new(RedisStore::start(settings, &config, metrics.clone(), 0));
                        store.ready().await;
                        assert!(store.is_up(), "redis link did not come up");
                        let store = serve(store, tasks, &latency, &req_rx, &res_tx).await;
                        let rendered = metrics.render();
                        let stats = RowStats {
                            latency: latency.borrow().clone(),
                            round_trips: Some(store.round_trips().clone()),
                            batches: Some((
                                metric(&rendered, "rtc_store_batches_total"),
                                metric(&rendered, "rtc_store_batched_commands_total"),
                            )),
                        };
                        stats
                    }
                }
            })
    });
    (req_tx, res_rx, join)
}

/// The pid of the `redis-server` listening on `port` (our child), to read
/// its CPU time. Redis rewrites its command line to `redis-server ADDR:PORT`.
fn redis_pid(port: u16) -> Option<u32> {
    let suffix = format!(":{port}");
    std::fs::read_dir("/proc").ok()?.find_map(|e| {
        let pid: u32 = e.ok()?.file_name().to_str()?.parse().ok()?;
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let title = String::from_utf8_lossy(cmdline.split(|b| *b == 0).next()?).into_owned();
        (comm.trim() == "redis-server" && title.trim_end().ends_with(&suffix)).then_some(pid)
    })
}

/// utime + stime of `pid`, seconds (0 if unreadable).
fn cpu_seconds(pid: Option<u32>) -> f64 {
    let Some(stat) = pid.and_then(|p| std::fs::read_to_string(format!("/proc/{p}/stat")).ok())
    else {
        return 0.0;
    };
    let after = &stat[stat.rfind(')').map_or(0, |i| i + 1)..];
    let ticks: u64 = after
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|f| f.parse::<u64>().ok())
        .sum();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1);
    ticks as f64 / hz as f64
}

fn us(ns: u64) -> f64 {
    ns as f64 / 1000.0
}

fn bench(c: &mut Criterion) {
    let redis = RedisProcess::start().expect("redis-server (apt-get install -y redis-server)");
    let url = redis.url();
    let server = redis_pid(redis.port);
    let mut g = c.benchmark_group("store_append");
    g.throughput(Throughput::Elements(1));
    g.sample_size(20);
    let mut summary = Vec::new();
    for row in ROWS {
        let (tx, rx, join) = spawn_row(row.kind, row.tasks, url.clone());
        let server_cpu0 = cpu_seconds(server);
        let mut elapsed = Duration::ZERO;
        g.bench_function(row.name, |b| {
            b.iter_custom(|iters| {
                tx.send(iters.max(1)).unwrap();
                let d = rx.recv().expect("row executor died");
                elapsed += d;
                d
            })
        });
        let server_cpu = cpu_seconds(server) - server_cpu0;
        tx.send(0).unwrap();
        let stats = join.join().expect("row executor panicked");
        let l = &stats.latency;
        if l.is_empty() {
            continue; // filtered out on the command line
        }
        let mut line = format!(
            "{:<32} {:>10.0} appends/s  latency p50 {:>8.1} µs  p99 {:>8.1} µs  max {:>9.1} µs",
            row.name,
            l.len() as f64 / elapsed.as_secs_f64(),
            us(l.value_at_quantile(0.5)),
            us(l.value_at_quantile(0.99)),
            us(l.max()),
        );
        if let Some(rt) = &stats.round_trips {
            line += &format!(
                "  | link round trip p50 {} µs p99 {} µs",
                rt.value_at_quantile(0.5),
                rt.value_at_quantile(0.99)
            );
        }
        if let Some((batches, commands)) = stats.batches {
            line += &format!(
                "  | mean batch {:.1}  | redis-server CPU {:.2} µs/append",
                commands as f64 / batches.max(1) as f64,
                server_cpu * 1e6 / l.len().max(1) as f64
            );
        }
        println!("{line}");
        summary.push(line);
    }
    g.finish();
    println!("\nstore_append summary (all samples, warm-up included):");
    for line in summary {
        println!("  {line}");
    }
    drop(redis);
}

criterion_group!(benches, bench);
criterion_main!(benches);
