//! loadgen: shardcast's load generator.
//!
//! Thread-per-core on glommio like the server: each core owns a slice of the
//! plan's users, their connections and their measurements; cores report
//! deltas to a coordinator, which merges them (across `--workers` processes
//! too) into one exact report.
//!
//! The map of the crate:
//!
//! | module | owns |
//! |---|---|
//! | [`cli`] | every flag, its default and unit |
//! | [`plan`] | the split of users/rooms/connections over workers and cores |
//! | [`target`] | target URLs, the loopback rule, source addresses |
//! | [`ctl`] | `--control`: asking shardcast-ctl's `/api/v1/connect` |
//! | [`events`] | `--events`: the log of users' moves and its summary |
//! | [`cluster`] | the changing-cluster verdict (`loadgen-cluster-report`) |
//! | [`ws`] | WebSocket client: frames and handshake (pure), connection I/O |
//! | [`probe`] | user names, message ids, probe payloads (envelopes: `shardcast::protocol`) |
//! | [`accounting`] | exact lost / duplicated / reordered per flow (pure) |
//! | [`pacer`] | open-loop intended send times (pure) |
//! | [`backoff`] | the contract's reconnect backoff (pure) |
//! | [`stats`] | counters and HDR histograms, snapshot deltas and merging |
//! | [`runtime`] | executors per core, coordinator ↔ core events |
//! | [`scenario`] | connect, echo, direct, rooms, storm |
//! | [`coordinator`] / [`worker`] | one process or K workers, progress, signals |
//! | [`report`] | the JSON report and the human summary |
//! | [`clock`], [`sysinfo`], [`progress`] | time, /proc and rlimits, the progress line |

pub mod accounting;
pub mod backoff;
pub mod cli;
pub mod clock;
pub mod cluster;
pub mod coordinator;
pub mod ctl;
pub mod events;
pub mod pacer;
pub mod plan;
pub mod probe;
pub mod progress;
pub mod report;
pub mod runtime;
pub mod scenario;
pub mod stats;
pub mod sysinfo;
pub mod target;
pub mod worker;
pub mod ws;
