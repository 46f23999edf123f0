//! `shardcast-node`: parses the configuration, starts logging, runs the node
//! until it has drained.

use clap::Parser;
use shardcast::config::{LogFormat, NodeArgs};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let config = match NodeArgs::parse().resolve() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("shardcast-node: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match config.log_format {
        LogFormat::Json => logs.json().init(),
        LogFormat::Text => logs.init(),
    }
    match shardcast::node::run(config) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("shardcast-node: {e}");
            std::process::ExitCode::from(e.exit_code())
        }
    }
}
