//! `shardcast-ctl`: parses the configuration, starts logging, runs the
//! control plane until SIGTERM or SIGINT.

use clap::Parser;
use shardcast::{config::LogFormat, control::CtlArgs};

fn main() -> std::process::ExitCode {
    let config = match CtlArgs::parse().resolve() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("shardcast-ctl: {e}");
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
    match shardcast::control::run(config) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("shardcast-ctl: {e}");
            std::process::ExitCode::from(1)
        }
    }
}
