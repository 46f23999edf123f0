//! The coordinator: runs the plan on this process's cores or on `--workers K`
//! child processes, merges everything they report, prints progress, and
//! builds the report.
//!
//! Both modes look the same from here: a stream of [`Tagged`] core events on
//! one channel. Locally the cores send them directly; a worker process prints
//! them as JSON lines on its stdout and a reader thread per worker forwards
//! them. Commands go the other way (`go <monotonic ns>`, `stop`) through the
//! [`Control`] atomics or the workers' stdin. Because `CLOCK_MONOTONIC` is
//! system-wide, one go time starts every worker's measured phase together.
//!
//! Invariants: the run always ends by itself: the measured phase is bounded
//! by `--duration`, setup and drain by deadlines computed from the plan; a
//! first Ctrl-C stops early and still reports (marked `interrupted`), a second
//! one exits at once.

use crate::clock;
use crate::plan::Plan;
use crate::progress::{self, Phase};
use crate::report::{per_connection, Report, WorkerTotals, SCHEMA_VERSION};
use crate::runtime::{self, Control, CoreEvent, Tagged};
use crate::stats::Snapshot;
use crate::sysinfo;
use glommio::ExecutorJoinHandle;
use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};
use thiserror::Error;

/// Why a run could not be carried out at all.
#[derive(Debug, Error)]
pub enum RunError {
    /// Executors or worker processes could not be started.
    #[error("starting the run: {0}")]
    Start(#[from] std::io::Error),
    /// A process would need more descriptors than it may open.
    #[error("worker needs {needed} file descriptors but may open {limit}; use more --workers")]
    FdLimit {
        /// Descriptors needed.
        needed: u64,
        /// The soft limit in force.
        limit: u64,
    },
}

/// The processes doing the work.
enum Fleet {
    Local {
        control: Arc<Control>,
        handles: Vec<ExecutorJoinHandle<()>>,
    },
    Workers {
        children: Vec<Child>,
        stdins: Vec<ChildStdin>,
    },
}

impl Fleet {
    fn go(&mut self, at_ns: u64) {
        match self {
            Self::Local { control, .. } => control.go(at_ns),
            Self::Workers { stdins, .. } => {
                for s in stdins {
                    let _ = writeln!(s, "go {at_ns}");
                }
            }
        }
    }

    fn stop(&mut self) {
        match self {
            Self::Local { control, .. } => control.stop(),
            Self::Workers { stdins, .. } => {
                for s in stdins {
                    let _ = writeln!(s, "stop");
                }
            }
        }
    }

    fn pids(&self) -> Vec<u32> {
        match self {
            Self::Local { .. } => vec![std::process::id()],
            Self::Workers { children, .. } => children.iter().map(Child::id).collect(),
        }
    }

    /// Waits for the executors or workers to exit, up to `timeout`; workers
    /// still running after it are killed (they are our own children).
    fn finish(self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        match self {
            Self::Local { handles, .. } => {
                for h in handles {
                    if Instant::now() >= deadline {
                        break;
                    }
                    let _ = h.join();
                }
            }
            Self::Workers {
                mut children,
                stdins,
            } => {
                drop(stdins);
                for c in &mut children {
                    loop {
                        match c.try_wait() {
                            Ok(Some(_)) | Err(_) => break,
                            Ok(None) if Instant::now() >= deadline => {
                                let _ = c.kill();
                                let _ = c.wait();
                                break;
                            }
                            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                        }
                    }
                }
            }
        }
    }
}

/// Runs the plan (locally or on workers) and returns the merged report.
pub fn run(plan: Arc<Plan>, sigint: Arc<AtomicBool>) -> Result<Report, RunError> {
    let (tx, rx) = mpsc::channel::<Tagged>();
    let server_pids = plan.common().server_pids.clone();
    let server_base = sum_rss(&server_pids);
    let started_at = clock::unix_secs();
    if let Some(path) = &plan.events_file {
        crate::events::create(path)
            .map_err(|e| std::io::Error::other(format!("creating {}: {e}", path.display())))?;
    }
    let mut fleet = if plan.workers == 1 {
        check_fds(&plan)?;
        let control = Arc::new(Control::default());
        let handles = runtime::start(Arc::clone(&plan), Arc::clone(&control), tx)?;
        Fleet::Local { control, handles }
    } else {
        check_worker_fds(&plan)?;
        spawn_workers(&plan, tx)?
    };
    let loadgen_base = sum_rss(&fleet.pids());
    let server_cpu0 = sum_cpu(&server_pids);
    let mut server_cpu = server_cpu0;
    let mut loadgen_cpu = sum_cpu(&fleet.pids());

    let total_cores = plan.total_cores();
    let c = plan.common();
    let duration_ns = plan.duration().as_nanos() as u64;
    let settle = match &plan.scenario {
        crate::cli::ScenarioCmd::Rooms(a) => a.settle_ms as f64 / 1e3,
        _ => 0.0,
    };
    let setup_budget = plan.total_connections as f64 / c.connect_rate.max(1e-3)
        + c.connect_timeout
        + settle
        + 30.0;
    let t0 = Instant::now();
    let setup_deadline = t0 + Duration::from_secs_f64(setup_budget);

    let mut ready = HashSet::new();
    let mut done = HashSet::new();
    let mut totals = Snapshot::default();
    let mut per_worker = vec![Snapshot::default(); plan.workers];
    // Each core's latest (sent/s, received/s), from its own delta interval.
    let mut rates: BTreeMap<usize, (f64, f64)> = BTreeMap::new();
    let mut last_tick = Instant::now();
    let mut go_at: Option<u64> = None;
    let mut stopped_at: Option<u64> = None;
    let mut give_up: Option<Instant> = None;
    let mut peak_open = 0u64;
    let mut server_peak: BTreeMap<u32, u64> = BTreeMap::new();
    let mut loadgen_peak = loadgen_base;

    while done.len() < total_cores {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(Tagged { core, event }) => match event {
                CoreEvent::Ready => {
                    ready.insert(core);
                }
                CoreEvent::Progress {
                    snapshot,
                    interval_ns,
                } => {
                    let secs = (interval_ns as f64 / 1e9).max(1e-3);
                    rates.insert(
                        core,
                        (
                            snapshot.counters.sent as f64 / secs,
                            snapshot.counters.received as f64 / secs,
                        ),
                    );
                    totals.merge(&snapshot);
                    per_worker[core / plan.cores_per_worker].merge(&snapshot);
                }
                CoreEvent::Done { snapshot } => {
                    rates.remove(&core);
                    totals.merge(&snapshot);
                    per_worker[core / plan.cores_per_worker].merge(&snapshot);
                    ready.insert(core);
                    done.insert(core);
                }
                CoreEvent::Failed { message } => {
                    eprintln!("loadgen: core {core} failed: {message}");
                    *totals.errors.entry("core_failed".into()).or_default() += 1;
                    ready.insert(core);
                    done.insert(core);
                }
            },
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
        let now = clock::now_ns();
        if go_at.is_none() && ready.len() == total_cores && stopped_at.is_none() {
            // A little slack so every worker sees the go before it is due.
            let at = now + 50_000_000;
            fleet.go(at);
            go_at = Some(at);
        }
        let overtime = match go_at {
            None => Instant::now() > setup_deadline,
            Some(g) => {
                now > g + duration_ns + plan.drain_timeout().as_nanos() as u64 + 30_000_000_000
            }
        };
        if stopped_at.is_none() && (sigint.load(Ordering::SeqCst) || overtime) {
            if overtime {
                eprintln!("loadgen: safety deadline reached, stopping");
            }
            fleet.stop();
            stopped_at = Some(now);
            give_up = Some(
                Instant::now()
                    + plan.drain_timeout().min(Duration::from_secs(1))
                    + Duration::from_secs(8),
            );
        }
        if give_up.is_some_and(|g| Instant::now() > g) {
            eprintln!("loadgen: cores did not finish in time; reporting what arrived");
            break;
        }
        if last_tick.elapsed() >= Duration::from_secs(1) {
            peak_open = peak_open.max(totals.counters.open());
            for &pid in &server_pids {
                if let Some(rss) = sysinfo::rss_bytes(pid) {
                    let e = server_peak.entry(pid).or_default();
                    *e = (*e).max(rss);
                }
            }
            loadgen_peak = loadgen_peak.max(sum_rss(&fleet.pids()));
            server_cpu = sum_cpu(&server_pids).or(server_cpu);
            loadgen_cpu = sum_cpu(&fleet.pids()).or(loadgen_cpu);
            if !c.quiet {
                let phase = match go_at {
                    None => Phase::Setup,
                    Some(g) if now < g + duration_ns && stopped_at.is_none() => Phase::Measure,
                    Some(_) => Phase::Drain,
                };
                let (sent, recv) = rates
                    .values()
                    .fold((0.0, 0.0), |a, r| (a.0 + r.0, a.1 + r.1));
                eprintln!(
                    "{}",
                    progress::line(
                        t0.elapsed().as_secs_f64(),
                        phase,
                        plan.total_connections,
                        &totals,
                        sent,
                        recv
                    )
                );
            }
            last_tick = Instant::now();
        }
    }
    peak_open = peak_open.max(totals.counters.open());
    server_cpu = sum_cpu(&server_pids).or(server_cpu);
    loadgen_cpu = sum_cpu(&fleet.pids()).or(loadgen_cpu);
    let interrupted = stopped_at.is_some() || done.len() < total_cores;
    let measured_ns = match go_at {
        None => 0,
        Some(g) => {
            let end = stopped_at.unwrap_or(u64::MAX).min(g + duration_ns);
            end.saturating_sub(g)
        }
    };
    fleet.finish(Duration::from_secs(if interrupted { 3 } else { 15 }));

    let mut report = Report {
        schema_version: SCHEMA_VERSION,
        loadgen_version: env!("CARGO_PKG_VERSION").to_string(),
        scenario: plan.scenario.name().to_string(),
        parameters: parameters(&plan),
        targets: plan.targets.iter().map(|t| t.url.clone()).collect(),
        run_id: plan.run_id.clone(),
        workers: plan.workers,
        cores: total_cores,
        started_at_unix: started_at,
        interrupted,
        ..Report::default()
    };
    report.connections.target = plan.total_connections;
    report.per_worker = per_worker
        .iter()
        .enumerate()
        .map(|(w, s)| WorkerTotals::of(w, s))
        .collect();
    report.set_measurements(&totals, measured_ns as f64 / 1e9, peak_open);
    if !server_pids.is_empty() {
        let sum: u64 = server_peak.values().sum();
        report.server_rss_bytes = Some(sum);
        report.server_rss_by_pid = server_peak
            .iter()
            .map(|(p, v)| (p.to_string(), *v))
            .collect();
        report.memory.server_peak_bytes = Some(sum);
        report.memory.server_baseline_bytes = server_base;
        report.memory.server_per_connection_bytes =
            per_connection(Some(sum), server_base, peak_open);
    }
    report.cpu.server_seconds = match (server_cpu, server_cpu0) {
        (Some(end), Some(start)) => Some(((end - start) * 100.0).round() / 100.0),
        _ => None,
    };
    report.cpu.loadgen_seconds = loadgen_cpu.map(|v| (v * 100.0).round() / 100.0);
    report.memory.loadgen_peak_bytes = loadgen_peak;
    report.memory.loadgen_baseline_bytes = loadgen_base;
    report.memory.loadgen_per_connection_bytes =
        per_connection(loadgen_peak, loadgen_base, peak_open);
    if let Some(path) = &plan.events_file {
        match crate::events::read(path) {
            Ok(moves) => report.moves = Some(crate::events::MovesSummary::of(&moves)),
            Err(e) => {
                eprintln!("loadgen: reading {}: {e}", path.display());
                *report.errors.entry("events_unreadable".into()).or_default() += 1;
            }
        }
    }
    Ok(report)
}

/// Sum of `read(pid)` over `pids`; `None` if none of them could be read
/// (all gone), so a late sample never overwrites a good one with zero.
fn sum_of<T: std::iter::Sum<T>>(pids: &[u32], read: impl Fn(u32) -> Option<T>) -> Option<T> {
    let values: Vec<T> = pids.iter().filter_map(|&p| read(p)).collect();
    (!values.is_empty()).then(|| values.into_iter().sum())
}

fn sum_cpu(pids: &[u32]) -> Option<f64> {
    sum_of(pids, sysinfo::cpu_seconds)
}

fn sum_rss(pids: &[u32]) -> Option<u64> {
    sum_of(pids, sysinfo::rss_bytes)
}

/// Descriptors a process needs beyond its connections (io_uring rings,
/// eventfds, pipes, stdio).
const FD_HEADROOM: u64 = 256;

/// Checks that this process may open its share of connections (raising the
/// soft limit to the hard one if that is enough).
pub fn check_fds(plan: &Plan) -> Result<(), RunError> {
    let needed = plan.worker_connections() + FD_HEADROOM;
    let limit = sysinfo::ensure_nofile(needed)?;
    if limit < needed {
        return Err(RunError::FdLimit { needed, limit });
    }
    Ok(())
}

/// Checks before spawning that every worker's share fits the limit the
/// workers will inherit, so a bad plan fails at once instead of per worker.
fn check_worker_fds(plan: &Plan) -> Result<(), RunError> {
    let needed = (0..plan.workers)
        .map(|w| plan.connections_of_worker(w))
        .max()
        .unwrap_or(0)
        + FD_HEADROOM;
    let limit = sysinfo::ensure_nofile(needed)?;
    if limit < needed {
        return Err(RunError::FdLimit { needed, limit });
    }
    Ok(())
}

/// The scenario's own parameters as JSON, for the report.
fn parameters(plan: &Plan) -> serde_json::Value {
    use crate::cli::ScenarioCmd as S;
    use serde_json::json;
    match &plan.scenario {
        S::Connect(a) => {
            json!({"connections": a.connections, "connect_rate": a.common.connect_rate, "raw": a.raw})
        }
        S::Direct(a) => {
            json!({"users": a.users, "rate": a.rate, "payload_bytes": a.payload_bytes, "window": a.window,
                   "failover_targets": a.failover_targets, "control": a.common.control,
                   "events": a.common.events, "backoff_base_ms": a.backoff.backoff_base_ms,
                   "backoff_max_ms": a.backoff.backoff_max_ms, "backoff_jitter_ms": a.backoff.backoff_jitter_ms})
        }
        S::Rooms(a) => {
            json!({"rooms": a.rooms, "subscribers": a.subscribers, "publishers": a.publishers,
                              "rate": a.rate, "payload_bytes": a.payload_bytes, "settle_ms": a.settle_ms})
        }
        S::Echo(a) => {
            json!({"connections": a.connections, "rate": a.rate, "payload_bytes": a.payload_bytes, "window": a.window})
        }
        S::Storm(a) => {
            json!({"users": a.users, "wave_fraction": a.wave_fraction, "waves": a.waves, "rate": a.rate,
                              "payload_bytes": a.payload_bytes, "resume": a.resume, "abrupt": a.abrupt,
                              "backoff_base_ms": a.backoff.backoff_base_ms, "backoff_max_ms": a.backoff.backoff_max_ms,
                              "backoff_jitter_ms": a.backoff.backoff_jitter_ms})
        }
    }
}

/// Starts `--workers` copies of this binary with `--worker-index I`, and a
/// reader thread per worker forwarding its events.
fn spawn_workers(plan: &Plan, tx: mpsc::Sender<Tagged>) -> Result<Fleet, RunError> {
    let exe = std::env::current_exe()?;
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    let mut children = Vec::new();
    let mut stdins = Vec::new();
    for w in 0..plan.workers {
        let mut cmd = Command::new(&exe);
        cmd.args(&args).arg("--worker-index").arg(w.to_string());
        if plan.common().run_id.is_none() {
            cmd.arg("--run-id").arg(&plan.run_id);
        }
        if plan.common().cores.is_none() {
            cmd.arg("--cores").arg(plan.cores_per_worker.to_string());
        }
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = cmd.spawn()?;
        let stdout = child.stdout.take().expect("piped stdout");
        stdins.push(child.stdin.take().expect("piped stdin"));
        let cores = w * plan.cores_per_worker..(w + 1) * plan.cores_per_worker;
        let tx = tx.clone();
        std::thread::spawn(move || forward_worker(w, stdout, tx, cores));
        children.push(child);
    }
    Ok(Fleet::Workers { children, stdins })
}

/// Forwards a worker's JSON lines; if it exits early, reports its unfinished
/// cores as failed so the coordinator does not wait for them.
fn forward_worker(
    w: usize,
    stdout: std::process::ChildStdout,
    tx: mpsc::Sender<Tagged>,
    cores: std::ops::Range<usize>,
) {
    let mut finished = HashSet::new();
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        match serde_json::from_str::<Tagged>(&line) {
            Ok(t) => {
                if matches!(t.event, CoreEvent::Done { .. } | CoreEvent::Failed { .. }) {
                    finished.insert(t.core);
                }
                if tx.send(t).is_err() {
                    return;
                }
            }
            Err(e) => eprintln!("loadgen: worker {w} sent an unreadable line: {e}"),
        }
    }
    for core in cores.filter(|c| !finished.contains(c)) {
        let _ = tx.send(Tagged {
            core,
            event: CoreEvent::Failed {
                message: format!("worker {w} exited before finishing"),
            },
        });
    }
}
