//! The thread-per-core runtime of one loadgen process.
//!
//! One glommio executor per core, pinned (unless `--no-pin`). Each core owns
//! its slice of the plan (see [`crate::plan`]), its connections and its
//! [`Stats`]; nothing on the hot path is shared between cores. The only
//! cross-thread traffic is:
//!
//! - [`Control`]: two atomics the coordinator writes (go time, stop);
//! - [`CoreEvent`]s the cores send to the process's main thread over a
//!   `std::sync::mpsc` channel: `ready` after setup, a `progress` delta each
//!   second, and a final `done` delta. All are `Send` by construction (plain
//!   data and serialized-friendly histograms).

use crate::clock;
use crate::plan::Plan;
use crate::stats::{Snapshot, Stats};
use glommio::{ExecutorJoinHandle, LocalExecutorBuilder, Placement};
use serde::{Deserialize, Serialize};
use std::cell::{Cell, RefCell, RefMut};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

/// How often cores ship a progress delta.
pub const PROGRESS_INTERVAL: Duration = Duration::from_secs(1);
/// How often a waiting core re-checks [`Control`].
const CONTROL_POLL: Duration = Duration::from_millis(5);

/// Commands from the coordinator to every core of this process.
#[derive(Debug, Default)]
pub struct Control {
    /// Start of the measured phase (monotonic ns); 0 until the coordinator
    /// has seen every core ready.
    pub go_at_ns: AtomicU64,
    /// End the measured phase now (Ctrl-C): drain briefly and report.
    pub stop: AtomicBool,
}

impl Control {
    /// Sets the start of the measured phase.
    pub fn go(&self, at_ns: u64) {
        self.go_at_ns.store(at_ns.max(1), Ordering::SeqCst);
    }

    /// Requests an early, orderly end.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// What a core reports to the coordinator.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum CoreEvent {
    /// Setup (initial connections) finished.
    Ready,
    /// Measurements of the last interval.
    Progress {
        /// The delta.
        snapshot: Snapshot,
        /// Nanoseconds the delta covers (for exact per-second rates).
        interval_ns: u64,
    },
    /// The last delta, including the final accounting (`lost`, `expected`).
    Done {
        /// The delta.
        snapshot: Snapshot,
    },
    /// The core could not run.
    Failed {
        /// Why.
        message: String,
    },
}

/// A [`CoreEvent`] with the global index of the core that sent it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Tagged {
    /// Global core index (across workers).
    pub core: usize,
    /// The event.
    #[serde(flatten)]
    pub event: CoreEvent,
}

/// A core's view of the run: the plan, the control atomics, its stats.
pub struct CoreCtx {
    /// The run plan.
    pub plan: Arc<Plan>,
    /// Coordinator commands.
    pub control: Arc<Control>,
    /// Index of this core among this worker's cores.
    pub local_core: usize,
    /// Index of this core across all workers.
    pub global_core: usize,
    stats: RefCell<Stats>,
    tx: mpsc::Sender<Tagged>,
    done: Cell<bool>,
}

impl CoreCtx {
    /// This core's stats (never hold the borrow across an await).
    pub fn stats(&self) -> RefMut<'_, Stats> {
        self.stats.borrow_mut()
    }

    /// True once the coordinator asked for an early stop.
    pub fn stopping(&self) -> bool {
        self.control.stop.load(Ordering::Relaxed)
    }

    /// Tells the coordinator setup is done.
    pub fn ready(&self) {
        self.send(CoreEvent::Ready);
    }

    /// Waits for the coordinator's go; `None` if a stop came first.
    pub async fn wait_go(&self) -> Option<u64> {
        loop {
            if self.stopping() {
                return None;
            }
            let at = self.control.go_at_ns.load(Ordering::SeqCst);
            if at != 0 {
                self.sleep_until(at).await;
                return Some(at);
            }
            glommio::timer::sleep(CONTROL_POLL).await;
        }
    }

    /// Sleeps until monotonic time `t_ns`, waking early on a stop request.
    /// Returns false if it woke because of the stop.
    pub async fn sleep_until(&self, t_ns: u64) -> bool {
        loop {
            if self.stopping() {
                return false;
            }
            let now = clock::now_ns();
            if now >= t_ns {
                return true;
            }
            let left = Duration::from_nanos(t_ns - now);
            glommio::timer::sleep(left.min(Duration::from_millis(50))).await;
        }
    }

    /// Ships the final delta; no event follows it.
    pub fn finish(&self) {
        self.done.set(true);
        let snapshot = self.stats().take_delta();
        self.send(CoreEvent::Done { snapshot });
    }

    fn send(&self, event: CoreEvent) {
        // The receiver only goes away when the process is exiting anyway.
        let _ = self.tx.send(Tagged {
            core: self.global_core,
            event,
        });
    }

    /// Ships a progress delta every [`PROGRESS_INTERVAL`] until `finish`.
    fn spawn_reporter(self: &Rc<Self>) {
        let ctx = Rc::clone(self);
        glommio::spawn_local(async move {
            let mut last = clock::now_ns();
            loop {
                glommio::timer::sleep(PROGRESS_INTERVAL).await;
                if ctx.done.get() {
                    break;
                }
                let snapshot = ctx.stats().take_delta();
                let now = clock::now_ns();
                ctx.send(CoreEvent::Progress {
                    snapshot,
                    interval_ns: now - last,
                });
                last = now;
            }
        })
        .detach();
    }
}

/// Starts one executor per local core, each running the plan's scenario.
pub fn start(
    plan: Arc<Plan>,
    control: Arc<Control>,
    tx: mpsc::Sender<Tagged>,
) -> std::io::Result<Vec<ExecutorJoinHandle<()>>> {
    let mut handles = Vec::new();
    for local in 0..plan.cores_per_worker {
        let placement = if plan.pin {
            Placement::Fixed(plan.cpu_for(local))
        } else {
            Placement::Unbound
        };
        let (plan, control, tx) = (Arc::clone(&plan), Arc::clone(&control), tx.clone());
        let global = plan.global_core(local);
        let handle = LocalExecutorBuilder::new(placement)
            .name(&format!("loadgen-{global}"))
            // loadgen does no file I/O: do not pin 10 MiB of DMA memory per
            // core (and stay under small RLIMIT_MEMLOCK values).
            .io_memory(64 * 1024)
            // io_uring sizes its cancel hash table from the ring depth, and
            // glommio cancels poll requests all the time: with the default
            // depth (128) and ~15k connections per core, finding the poll to
            // cancel took 31% of loadgen's CPU; at 4096 it is ~3%.
            .ring_depth(plan.common().ring_depth)
            .spawn(move || async move {
                let ctx = Rc::new(CoreCtx {
                    plan,
                    control,
                    local_core: local,
                    global_core: global,
                    stats: RefCell::new(Stats::default()),
                    tx,
                    done: Cell::new(false),
                });
                ctx.spawn_reporter();
                crate::scenario::run_core(&ctx).await;
                ctx.finish();
            })
            .map_err(|e| std::io::Error::other(format!("starting executor {global}: {e}")))?;
        handles.push(handle);
    }
    Ok(handles)
}
