//! `loadgen-cluster-report`: the verdict on a changing-cluster run
//! (`scripts/cluster-scenario.sh`). Reads the changes the script recorded
//! (JSON lines, [`loadgen::cluster::Change`]), loadgen's `--events` log and
//! its `--report`; prints a table per change and the loss accounting,
//! writes the whole verdict as JSON with `--out`, and exits 1 if a message
//! acked to its sender was lost, a flow was reordered after dedup, or a
//! change moved other users than the ring's owner changes (logic:
//! `loadgen::cluster`).

use anyhow::{bail, Context, Result};
use clap::Parser;
use loadgen::cluster::{judge, run_users, table, Change};
use loadgen::report::Report;
use std::path::PathBuf;

/// The verdict on a changing-cluster run.
#[derive(Parser)]
#[command(name = "loadgen-cluster-report")]
struct Args {
    /// The changes, one JSON object a line (event, node, atMs, ringAtMs,
    /// ringBefore, ringAfter).
    #[arg(long, value_name = "FILE")]
    changes: PathBuf,
    /// loadgen's `--events` log.
    #[arg(long, value_name = "FILE")]
    events: PathBuf,
    /// loadgen's `--report` (run id, users, loss accounting).
    #[arg(long, value_name = "FILE")]
    report: PathBuf,
    /// The control plane's ring when the run started, to see unscripted
    /// ring changes before the first change.
    #[arg(long, value_name = "FILE")]
    initial_ring: Option<PathBuf>,
    /// The control plane's ring after the run (the end of the last
    /// change's window), to see unscripted ring changes in it.
    #[arg(long, value_name = "FILE")]
    final_ring: Option<PathBuf>,
    /// Write the verdict (with the loss accounting) here as JSON.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

/// The version of the ring in `path`, if given.
fn ring_version(path: Option<&std::path::Path>) -> Result<Option<u64>> {
    let Some(path) = path else { return Ok(None) };
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let ring: shardcast::ring::Ring =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    Ok(Some(ring.version()))
}

fn main() -> Result<()> {
    let args = Args::parse();
    let text = std::fs::read_to_string(&args.changes)
        .with_context(|| format!("reading {}", args.changes.display()))?;
    let changes = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_str::<Change>(l)
                .with_context(|| format!("{}:{}", args.changes.display(), i + 1))
        })
        .collect::<Result<Vec<_>>>()?;
    let moves = loadgen::events::read(&args.events)
        .with_context(|| format!("reading {}", args.events.display()))?;
    let report: Report = serde_json::from_str(
        &std::fs::read_to_string(&args.report)
            .with_context(|| format!("reading {}", args.report.display()))?,
    )
    .with_context(|| format!("parsing {}", args.report.display()))?;
    let Some(users) = report.parameters.get("users").and_then(|v| v.as_u64()) else {
        bail!("{} is not a `direct` report", args.report.display());
    };
    let verdict = judge(
        &changes,
        &moves,
        &run_users(&report.run_id, users),
        ring_version(args.initial_ring.as_deref())?,
        ring_version(args.final_ring.as_deref())?,
    );
    let m = &report.messages;
    let lost_acked = m.lost_acked.unwrap_or(m.lost);
    print!("{}", table(&verdict));
    println!(
        "messages: sent {}, acked {}, received {}; lost among acked {}, unacked at a crash {}, duplicates {} (deduplicated), reordered after dedup {}",
        m.sent,
        m.acked,
        m.received,
        lost_acked,
        m.lost_unacked.unwrap_or(0),
        m.duplicated,
        m.reordered
    );
    if let Some(path) = &args.out {
        let json = serde_json::json!({
            "verdict": verdict,
            "messages": m,
            "moves": report.moves,
        });
        std::fs::write(path, serde_json::to_string_pretty(&json)? + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
    }
    let mut bad = Vec::new();
    if lost_acked > 0 {
        bad.push(format!("{lost_acked} acked messages lost"));
    }
    if m.reordered > 0 {
        bad.push(format!("{} messages reordered", m.reordered));
    }
    if !verdict.all_exact {
        bad.push("a change moved other users than the ring's owner changes".into());
    }
    if !bad.is_empty() {
        eprintln!("loadgen-cluster-report: {}", bad.join("; "));
        std::process::exit(1);
    }
    Ok(())
}
