//! The command line: the single source of truth for every knob, its default
//! and its unit. Scripts depend on these names (issue 4, "command line"):
//!
//! `loadgen <scenario> --target URL [--target URL …] --duration SECS
//! [--workers K] [--source-ips 127.0.0.2-127.0.0.50] --report FILE`
//! plus the scenario's own flags.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// shardcast's load generator: drives WebSocket connections and messages at
/// a target and reports exact delivery counts and latency percentiles.
#[derive(Debug, Parser, Clone)]
#[command(name = "loadgen", version, about, long_about = None)]
pub struct Cli {
    /// The scenario to run.
    #[command(subcommand)]
    pub scenario: ScenarioCmd,
}

/// One subcommand per scenario.
#[derive(Debug, Subcommand, Clone)]
pub enum ScenarioCmd {
    /// Ramp to N connections at R per second, hold for --duration, close.
    Connect(ConnectArgs),
    /// Open-loop direct messages between user pairs; exact loss/dup/order.
    Direct(DirectArgs),
    /// Room fan-out: R rooms × S subscribers, P publishers per room.
    Rooms(RoomsArgs),
    /// Protocol-neutral echo against /echo or any echo WebSocket server.
    Echo(EchoArgs),
    /// Disconnect/reconnect waves with backoff (and resume tokens).
    Storm(StormArgs),
}

impl ScenarioCmd {
    /// The options every scenario shares.
    pub fn common(&self) -> &Common {
        match self {
            Self::Connect(a) => &a.common,
            Self::Direct(a) => &a.common,
            Self::Rooms(a) => &a.common,
            Self::Echo(a) => &a.common,
            Self::Storm(a) => &a.common,
        }
    }

    /// The scenario's name as it appears in the report.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Connect(_) => "connect",
            Self::Direct(_) => "direct",
            Self::Rooms(_) => "rooms",
            Self::Echo(_) => "echo",
            Self::Storm(_) => "storm",
        }
    }
}

/// Options shared by every scenario.
#[derive(Debug, Args, Clone)]
pub struct Common {
    /// WebSocket URL of a node, e.g. ws://127.0.0.1:8080/ws (repeatable;
    /// loadgen appends the user's query parameters). Host names must resolve
    /// to loopback; give an IP address to target anything else. Optional
    /// with --control.
    #[arg(
        long = "target",
        value_name = "URL",
        required_unless_present = "control"
    )]
    pub targets: Vec<String>,

    /// A static ring snapshot (the nodes' `--ring FILE`): each user connects to
    /// the node that owns it, at the node's `addr` (`--target` then only
    /// checks the loopback rule and names the run's nodes in reports).
    #[arg(long, value_name = "FILE")]
    pub ring: Option<std::path::PathBuf>,

    /// `shardcast-ctl`'s URL (http://HOST:PORT, loopback rule as for
    /// --target): `direct` and `connect` users ask `/api/v1/connect` where to
    /// go and connect with the token it signs; `direct` users follow
    /// `reconnect`s, 307s and lost nodes as docs/loadgen.md describes.
    #[arg(long, value_name = "URL", conflicts_with = "ring")]
    pub control: Option<String>,

    /// With --control: write every move of a user (disconnect, cause, each
    /// ask and connect, the node reached, resumed at; unix ms) to FILE as
    /// JSON lines; the report's `moves` sums it.
    #[arg(long, value_name = "FILE", requires = "control")]
    pub events: Option<PathBuf>,

    /// Length of the measured phase in seconds (the hold time for
    /// `connect`). Connecting before it and draining after it are extra.
    #[arg(long, value_name = "SECS")]
    pub duration: f64,

    /// Worker processes, each under the open-files limit; their histograms
    /// are merged into one exact report.
    #[arg(long, default_value_t = 1, value_name = "K")]
    pub workers: usize,

    /// glommio executors (cores) per worker. Default: online CPUs divided
    /// among the workers (at least 1).
    #[arg(long, value_name = "N")]
    pub cores: Option<usize>,

    /// Do not pin executors to CPUs.
    #[arg(long)]
    pub no_pin: bool,

    /// Source addresses to connect from, spread round-robin over
    /// connections: `127.0.0.2-127.0.0.50` and/or `a,b,c`.
    #[arg(long, value_name = "SPEC")]
    pub source_ips: Option<String>,

    /// Write the JSON report here (schema: docs/loadgen.md).
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,

    /// New connections per second during setup (for `connect`: the ramp),
    /// across all workers.
    #[arg(long, default_value_t = 5_000.0, value_name = "R")]
    pub connect_rate: f64,

    /// A file holding the HS256 secret of a node run with `--auth jwt`: every
    /// connect then carries `token=` a JWT for its user (`sub`), minted by
    /// loadgen, valid for `--jwt-ttl-secs`.
    #[arg(long, value_name = "FILE")]
    pub jwt_secret_file: Option<PathBuf>,

    /// Lifetime of the JWTs loadgen mints, in seconds.
    #[arg(long, default_value_t = 3600, value_name = "SECS")]
    pub jwt_ttl_secs: u64,

    /// Seconds allowed for TCP connect + upgrade (+ welcome).
    #[arg(long, default_value_t = 10.0, value_name = "SECS")]
    pub connect_timeout: f64,

    /// Seconds to wait after the measured phase for messages in flight.
    #[arg(long, default_value_t = 5.0, value_name = "SECS")]
    pub drain_timeout: f64,

    /// Refuse to run a plan needing more connections than this.
    #[arg(long, default_value_t = 1_000_000, value_name = "N")]
    pub max_connections: u64,

    /// PID of a server process whose RSS goes into the report (repeatable).
    #[arg(long = "server-pid", value_name = "PID")]
    pub server_pids: Vec<u32>,

    /// Shortest sleep of the open-loop senders, in microseconds: sends due
    /// within one tick go out together. Smaller = more precise send times,
    /// more wakeups (CPU) on both sides.
    #[arg(long, default_value_t = 100, value_name = "US")]
    pub tick_us: u64,

    /// io_uring ring depth per core. Deep rings make io_uring's cancel
    /// lookups cheap with many connections (see docs/loadgen.md).
    #[arg(long, default_value_t = 4096, value_name = "N")]
    pub ring_depth: usize,

    /// No progress line on stderr.
    #[arg(long)]
    pub quiet: bool,

    /// Internal: the run id shared by all workers (names users and rooms).
    #[arg(long, hide = true)]
    pub run_id: Option<String>,

    /// Internal: this process is worker I of --workers (speaks JSON lines).
    #[arg(long, hide = true)]
    pub worker_index: Option<usize>,
}

/// `connect` options.
#[derive(Debug, Args, Clone)]
pub struct ConnectArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub common: Common,
    /// Connections to open (across all workers).
    #[arg(long, value_name = "N")]
    pub connections: u64,
    /// Plain WebSocket upgrade on the URL as given: no `userId`, no wait for
    /// a welcome (for servers that do not speak protocol v1).
    #[arg(long)]
    pub raw: bool,
}

/// `direct` options.
#[derive(Debug, Args, Clone)]
pub struct DirectArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub common: Common,
    /// Users (connections); user 2k and 2k+1 form a pair and message each
    /// other (two flows per pair). Must be even.
    #[arg(long, value_name = "N")]
    pub users: u64,
    /// Total messages per second across all flows (open loop). 0 = closed
    /// loop: each flow keeps --window messages in flight.
    #[arg(long, value_name = "MSGS_PER_SEC")]
    pub rate: f64,
    /// Approximate size of each message's `data` JSON.
    #[arg(long, default_value_t = 64, value_name = "B")]
    pub payload_bytes: usize,
    /// Messages in flight per flow in closed-loop mode (--rate 0).
    #[arg(long, default_value_t = 1, value_name = "W")]
    pub window: u32,
    /// Where users reconnect once their connection ended without loadgen
    /// asking (the node died, reset the connection or drained): pair p goes
    /// to failover target p mod F instead of its --target, from then on.
    /// For nodes sharing one store (`--redis`), where a user's buffer and
    /// resume token are good on any node. Repeatable.
    #[arg(long = "failover-target", value_name = "URL")]
    pub failover_targets: Vec<String>,
    #[command(flatten)]
    pub backoff: BackoffArgs,
}

/// The reconnect backoff of `direct` and `storm` (the contract's
/// `t_k = min(T_max, T_0 · 2^k) + U(0, J)`).
#[derive(Args, Debug, Clone)]
pub struct BackoffArgs {
    /// Reconnect backoff T_0 in milliseconds (a `reconnect`'s
    /// `retryAfterMs` replaces it for that move).
    #[arg(long, default_value_t = 100, value_name = "MS")]
    pub backoff_base_ms: u64,
    /// Reconnect backoff T_max in milliseconds.
    #[arg(long, default_value_t = 10_000, value_name = "MS")]
    pub backoff_max_ms: u64,
    /// Reconnect backoff jitter J in milliseconds.
    #[arg(long, default_value_t = 100, value_name = "MS")]
    pub backoff_jitter_ms: u64,
}

impl BackoffArgs {
    /// The backoff these flags give.
    pub fn backoff(&self) -> crate::backoff::Backoff {
        use std::time::Duration;
        crate::backoff::Backoff {
            base: Duration::from_millis(self.backoff_base_ms),
            max: Duration::from_millis(self.backoff_max_ms),
            jitter: Duration::from_millis(self.backoff_jitter_ms),
        }
    }
}

/// `rooms` options.
#[derive(Debug, Args, Clone)]
pub struct RoomsArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub common: Common,
    /// Number of rooms.
    #[arg(long, value_name = "R")]
    pub rooms: u64,
    /// Subscribers per room.
    #[arg(long, value_name = "S")]
    pub subscribers: u64,
    /// Publishers per room (separate connections, not subscribed).
    #[arg(long, value_name = "P")]
    pub publishers: u64,
    /// Total publishes per second across all rooms (open loop).
    #[arg(long, value_name = "M")]
    pub rate: f64,
    /// Approximate size of each message's `data` JSON.
    #[arg(long, default_value_t = 64, value_name = "B")]
    pub payload_bytes: usize,
    /// Milliseconds between the last join and the first publish (protocol
    /// v1 has no join acknowledgement).
    #[arg(long, default_value_t = 1_000, value_name = "MS")]
    pub settle_ms: u64,
}

/// `echo` options.
#[derive(Debug, Args, Clone)]
pub struct EchoArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub common: Common,
    /// Connections (across all workers).
    #[arg(long, value_name = "N")]
    pub connections: u64,
    /// Total messages per second (open loop). 0 = closed loop with --window
    /// messages in flight per connection (saturation).
    #[arg(long, value_name = "M")]
    pub rate: f64,
    /// Approximate message size in bytes.
    #[arg(long, default_value_t = 64, value_name = "B")]
    pub payload_bytes: usize,
    /// Messages in flight per connection in closed-loop mode (--rate 0).
    #[arg(long, default_value_t = 1, value_name = "W")]
    pub window: u32,
}

/// `storm` options.
#[derive(Debug, Args, Clone)]
pub struct StormArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub common: Common,
    /// Users, paired as in `direct`. Must be even.
    #[arg(long, value_name = "N")]
    pub users: u64,
    /// Fraction of users disconnected in each wave (0..1].
    #[arg(long, value_name = "F")]
    pub wave_fraction: f64,
    /// Number of waves, evenly spaced over --duration.
    #[arg(long, value_name = "W")]
    pub waves: u32,
    /// Direct messages per second across all flows during the storm.
    #[arg(long, default_value_t = 1_000.0, value_name = "M")]
    pub rate: f64,
    /// Approximate size of each message's `data` JSON.
    #[arg(long, default_value_t = 64, value_name = "B")]
    pub payload_bytes: usize,
    /// Reconnect with `resume=TOKEN` (the latest token from welcome or
    /// reconnect) so the node replays what the user missed.
    #[arg(long)]
    pub resume: bool,
    /// Drop the TCP connection without a close frame (a network failure)
    /// instead of closing cleanly.
    #[arg(long)]
    pub abrupt: bool,
    #[command(flatten)]
    pub backoff: BackoffArgs,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issue_command_lines_parse() {
        let lines = [
            "loadgen connect --target ws://127.0.0.1:8080/ws --duration 10 --workers 4 \
             --source-ips 127.0.0.2-127.0.0.50 --report r.json --connections 1000 --connect-rate 500",
            "loadgen direct --target ws://127.0.0.1:8080/ws --target ws://127.0.0.2:8080/ws \
             --duration 5 --report r.json --users 200 --rate 1000 --payload-bytes 128",
            "loadgen direct --target ws://127.0.0.1:8080/ws --failover-target ws://127.0.0.1:8081/ws \
             --duration 15 --users 400 --rate 2000",
            "loadgen rooms --target ws://127.0.0.1:8080/ws --duration 5 --report r.json \
             --rooms 10 --subscribers 20 --publishers 2 --rate 100",
            "loadgen echo --target ws://127.0.0.1:8080/echo --duration 5 --report r.json \
             --connections 100 --rate 1000",
            "loadgen storm --target ws://127.0.0.1:8080/ws --duration 5 --report r.json \
             --users 100 --wave-fraction 0.2 --waves 3 --resume",
            "loadgen direct --control http://127.0.0.1:8081 --events ev.jsonl --duration 5 \
             --users 300 --rate 400 --backoff-base-ms 50",
        ];
        for line in lines {
            let cli = Cli::try_parse_from(line.split_whitespace())
                .unwrap_or_else(|e| panic!("{line}: {e}"));
            assert!(cli.scenario.common().duration > 0.0);
        }
    }

    #[test]
    fn target_and_duration_are_required() {
        assert!(
            Cli::try_parse_from(["loadgen", "echo", "--connections", "1", "--rate", "1"]).is_err()
        );
    }

    #[test]
    fn events_need_control_and_control_excludes_ring() {
        let base = "loadgen direct --duration 1 --users 2 --rate 1";
        let parse = |extra: &str| {
            let line = format!("{base} {extra}");
            Cli::try_parse_from(line.split_whitespace()).map(drop)
        };
        assert!(parse("--control http://127.0.0.1:1").is_ok());
        assert!(parse("--target ws://127.0.0.1:1/ws --events e.jsonl").is_err());
        assert!(parse("--control http://127.0.0.1:1 --ring r.json").is_err());
    }
}
