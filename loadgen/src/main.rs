//! `loadgen` binary: parse the command line, run (as coordinator or as a
//! worker), print the summary and write the report. All logic lives in the
//! library; this is glue.

use anyhow::{Context, Result};
use clap::Parser;
use loadgen::cli::Cli;
use loadgen::plan::Plan;
use loadgen::{coordinator, report, worker};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

fn main() -> Result<()> {
    let cli = Cli::parse();
    let plan = Arc::new(Plan::from_cli(&cli.scenario)?);

    // First Ctrl-C: stop early and report. Second: exit immediately.
    let sigint = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register_conditional_shutdown(
        signal_hook::consts::SIGINT,
        130,
        Arc::clone(&sigint),
    )
    .context("installing the SIGINT handler")?;
    signal_hook::flag::register(signal_hook::consts::SIGINT, Arc::clone(&sigint))
        .context("installing the SIGINT handler")?;

    if plan.common().worker_index.is_some() {
        worker::run(plan, sigint)?;
        return Ok(());
    }

    let report = coordinator::run(Arc::clone(&plan), sigint)?;
    if let Some(path) = &plan.common().report {
        let json = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, json + "\n").with_context(|| format!("writing {}", path.display()))?;
    }
    print!("{}", report::summary(&report));
    Ok(())
}
