//! A worker process (`--worker-index I`, started by the coordinator): runs
//! its slice of the plan on its own cores and speaks JSON lines.
//!
//! stdout carries one [`Tagged`] event per line, nothing else (human output
//! goes to stderr). stdin carries commands: `go <monotonic ns>` and `stop`;
//! stdin closing (the coordinator died) means stop. Ctrl-C in the terminal
//! reaches workers too (same process group) and also means stop.

use crate::coordinator::{check_fds, RunError};
use crate::plan::Plan;
use crate::runtime::{self, Control, CoreEvent, Tagged};
use std::io::{BufRead, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

/// Runs this worker's cores until each has sent its final event.
pub fn run(plan: Arc<Plan>, sigint: Arc<AtomicBool>) -> Result<(), RunError> {
    check_fds(&plan)?;
    let control = Arc::new(Control::default());
    let (tx, rx) = mpsc::channel::<Tagged>();
    let handles = runtime::start(Arc::clone(&plan), Arc::clone(&control), tx)?;

    let commands = Arc::clone(&control);
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            let mut words = line.split_whitespace();
            match (
                words.next(),
                words.next().and_then(|v| v.parse::<u64>().ok()),
            ) {
                (Some("go"), Some(at)) => commands.go(at),
                (Some("stop"), _) => commands.stop(),
                _ => eprintln!("loadgen worker: unknown command {line:?}"),
            }
        }
        commands.stop();
    });

    let mut out = std::io::stdout().lock();
    let mut finished = 0;
    while finished < plan.cores_per_worker {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(t) => {
                if matches!(t.event, CoreEvent::Done { .. } | CoreEvent::Failed { .. }) {
                    finished += 1;
                }
                let line = serde_json::to_string(&t).expect("events serialize");
                if writeln!(out, "{line}").and_then(|_| out.flush()).is_err() {
                    // The coordinator is gone: nobody to report to.
                    control.stop();
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
        if sigint.load(Ordering::SeqCst) {
            control.stop();
        }
    }
    for h in handles {
        let _ = h.join();
    }
    Ok(())
}
