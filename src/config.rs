//! Every knob of a socket node: its name, default, unit and meaning, in one
//! place.
//!
//! A knob is resolved in this order: command-line flag, then its
//! `SHARDCAST_<FLAG>` environment variable, then the TOML file given by
//! `--config`, then the default written here. The cluster secret is never a
//! flag: it comes from `SHARDCAST_SECRET` or from the file named by
//! `--secret-file`.

use std::{net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use serde::Deserialize;
use thiserror::Error;

use crate::{
    auth::{
        keys::{load_public_keys, KeyError},
        AllowedOrigins, AuthMode, JwtSettings, JwtVerifier, OriginError, RoomsPolicy,
    },
    node::rate::{Limit, RateKinds, RateTable},
    ring::Ring,
};

/// A configuration that could not be loaded.
#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    ReadFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {source}")]
    ParseFile {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    #[error("cannot read secret file {path}: {source}")]
    ReadSecret {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the secret must be at least 16 bytes long")]
    ShortSecret,
    #[error("invalid value for {knob}: {why}")]
    Invalid { knob: &'static str, why: String },
    #[error("no random bytes for an ephemeral secret: {0}")]
    Random(String),
    #[error("jwt-public-key: {0}")]
    Keys(#[from] KeyError),
    #[error("allowed-origins: {0}")]
    Origins(#[from] OriginError),
}

/// Declares the knobs once and generates from that single list:
/// `Config` (resolved values), `Overrides` (the optional layer that clap
/// parses from flags/environment and serde parses from TOML), and
/// `Overrides::merge`. Knobs after `optional:` have no default: absent,
/// they are `None` in `Config` (a feature that stays off).
macro_rules! knobs {
    (
        $(
            $(#[doc = $doc:literal])+
            $(#[arg($($arg:tt)*)])?
            $name:ident ($env:literal): $ty:ty = $default:expr;
        )+
        optional:
        $(
            $(#[doc = $odoc:literal])+
            $(#[arg($($oarg:tt)*)])?
            $oname:ident ($oenv:literal): $oty:ty;
        )+
    ) => {
        /// The resolved configuration of a socket node.
        #[derive(Debug, Clone)]
        pub struct Config {
            $( $(#[doc = $doc])+ pub $name: $ty, )+
            $( $(#[doc = $odoc])+ pub $oname: Option<$oty>, )+
            /// The HMAC secret shared by the cluster (resume tokens).
            pub secret: Vec<u8>,
            /// True when no secret was configured and a random one was made:
            /// tokens then only verify on this process.
            pub secret_is_ephemeral: bool,
            /// The JWT verifier: `Some` exactly when `auth` is `jwt`. Built
            /// once, shared read-only by every core.
            pub jwt: Option<Arc<JwtVerifier>>,
            /// The parsed `allowed_origins`; `None`: every origin is allowed.
            pub origins: Option<AllowedOrigins>,
            /// The static ring loaded from `ring`, with this node in it.
            pub ring_snapshot: Option<Arc<Ring>>,
            /// SHA-256 of the server API key (`api_key_file`); `None`: the
            /// API is off. Only the digest is kept, compared in constant time.
            pub api_key: Option<[u8; 32]>,
            /// The TOML file's `[rate-limits]` table, as written.
            pub rate_limits: Option<RateTable>,
            /// The resolved rate limits per message kind (the built-in kinds
            /// from the `rate_*` knobs plus `rate_limits`).
            pub rates: RateKinds,
        }

        /// One layer of optional settings: flags + environment, or a TOML file.
        #[derive(Debug, Default, Clone, clap::Args, Deserialize)]
        #[serde(deny_unknown_fields, rename_all = "kebab-case")]
        pub struct Overrides {
            $(
                $(#[doc = $doc])+
                #[arg(long, env = $env)]
                $(#[arg($($arg)*)])?
                #[serde(default)]
                pub $name: Option<$ty>,
            )+
            $(
                $(#[doc = $odoc])+
                #[arg(long, env = $oenv)]
                $(#[arg($($oarg)*)])?
                #[serde(default)]
                pub $oname: Option<$oty>,
            )+
            /// Rate limits per message kind: a TOML table only (no flag).
            #[arg(skip)]
            #[serde(default)]
            pub rate_limits: Option<RateTable>,
        }

        impl Overrides {
            /// Takes each knob from `self`, else from `file`, else its default.
            fn merge(self, file: Overrides) -> Config {
                let mut config = Config {
                    $( $name: self.$name.or(file.$name).unwrap_or_else(|| $default), )+
                    $( $oname: self.$oname.or(file.$oname), )+
                    secret: Vec::new(),
                    secret_is_ephemeral: false,
                    jwt: None,
                    origins: None,
                    ring_snapshot: None,
                    api_key: None,
                    rate_limits: self.rate_limits.or(file.rate_limits),
                    // Set from the resolved `rate_*` knobs just below.
                    rates: RateKinds::builtin(Limit::per_sec(1, 1), Limit::per_sec(1, 1)),
                };
                let (messages, joins) = config.builtin_limits();
                config.rates = RateKinds::builtin(messages, joins);
                config
            }
        }
    };
}

knobs! {
    /// Address of the WebSocket endpoint (`/ws`, `/echo`) and `/health`. [default: 0.0.0.0:8080]
    listen ("SHARDCAST_LISTEN"): SocketAddr = "0.0.0.0:8080".parse().unwrap();
    /// Address of the Prometheus endpoint (`/metrics`). [default: 0.0.0.0:9404]
    metrics_listen ("SHARDCAST_METRICS_LISTEN"): SocketAddr = "0.0.0.0:9404".parse().unwrap();
    /// Number of cores (executors) to run; 0 means every online core. [default: 0]
    cores ("SHARDCAST_CORES"): usize = 0;
    /// CPU of core 0; core i is pinned to CPU (first-cpu + i) mod online CPUs, so
    /// several nodes on one host can take disjoint CPUs. [default: 0]
    first_cpu ("SHARDCAST_FIRST_CPU"): usize = 0;
    /// io_uring ring depth per core: deep rings keep cancel and poll lookups cheap
    /// with tens of thousands of connections per core. [default: 4096]
    ring_depth ("SHARDCAST_RING_DEPTH"): usize = 4096;
    /// This node's id, as reported in `welcome` and to the control plane. [default: the host name]
    node_id ("SHARDCAST_NODE_ID"): String = default_node_id();
    /// Serve `/echo`, a WebSocket echo endpoint (conformance, baselines). [default: false]
    #[arg(num_args = 0..=1, default_missing_value = "true")]
    echo ("SHARDCAST_ECHO"): bool = false;
    /// Largest message (and frame) accepted on `/ws`, in bytes; over it: close 1009. [default: 1048576 (1 MiB)]
    max_message_bytes ("SHARDCAST_MAX_MESSAGE_BYTES"): usize = 1 << 20;
    /// Largest message accepted on `/echo`, in bytes (conformance suites send 16 MiB). [default: 67108864 (64 MiB)]
    echo_max_message_bytes ("SHARDCAST_ECHO_MAX_MESSAGE_BYTES"): usize = 64 << 20;
    /// W: how many of a user's latest messages the store keeps for replay. [default: 256]
    buffer_messages ("SHARDCAST_BUFFER_MESSAGES"): usize = 256;
    /// How long a user's buffer lives after its last message, in seconds. [default: 3600]
    buffer_ttl_secs ("SHARDCAST_BUFFER_TTL_SECS"): u64 = 3600;
    /// How long a resume token stays valid, in seconds. [default: 3600]
    token_ttl_secs ("SHARDCAST_TOKEN_TTL_SECS"): u64 = 3600;
    /// Messages a connection's outbound queue holds before dropping the oldest. [default: 1024]
    outbound_queue ("SHARDCAST_OUTBOUND_QUEUE"): usize = 1024;
    /// Most WebSocket connections this node holds at once; over it: HTTP 503. [default: 1,000,000]
    max_connections ("SHARDCAST_MAX_CONNECTIONS"): usize = 1_000_000;
    /// Most handshakes per second this node accepts; over it: HTTP 503. [default: 20,000]
    handshakes_per_sec ("SHARDCAST_HANDSHAKES_PER_SEC"): u32 = 20_000;
    /// Most messages queued across all connections of a core before new
    /// connections are refused (the global queue-depth cap). [default: 4,000,000]
    max_queued_per_core ("SHARDCAST_MAX_QUEUED_PER_CORE"): usize = 4_000_000;
    /// Seconds of silence after which the node pings a client. [default: 30]
    ping_interval_secs ("SHARDCAST_PING_INTERVAL_SECS"): u64 = 30;
    /// Seconds of silence after which a connection is parked: it gives up its
    /// io_uring poll (~500 B) for an entry in the core's epoll set until it
    /// has something to do; 0: never. [default: 5]
    park_after_secs ("SHARDCAST_PARK_AFTER_SECS"): u64 = 5;
    /// Seconds of silence after which the node closes a connection (1001). [default: 90]
    idle_timeout_secs ("SHARDCAST_IDLE_TIMEOUT_SECS"): u64 = 90;
    /// Seconds a client has to finish its HTTP upgrade request. [default: 10]
    handshake_timeout_secs ("SHARDCAST_HANDSHAKE_TIMEOUT_SECS"): u64 = 10;
    /// Seconds the node waits on SIGTERM/SIGINT for clients to leave before exiting. [default: 10]
    drain_timeout_secs ("SHARDCAST_DRAIN_TIMEOUT_SECS"): u64 = 10;
    /// `retryAfterMs` sent in `reconnect` envelopes (T_0 of the client backoff). [default: 250]
    reconnect_after_ms ("SHARDCAST_RECONNECT_AFTER_MS"): u64 = 250;
    /// Sustained `send` + `publish` messages per second per user. [default: 1000]
    rate_messages_per_sec ("SHARDCAST_RATE_MESSAGES_PER_SEC"): u32 = 1000;
    /// Burst of `send` + `publish` messages per user. [default: 2000]
    rate_messages_burst ("SHARDCAST_RATE_MESSAGES_BURST"): u32 = 2000;
    /// Sustained `join` + `leave` per second per user. [default: 50]
    rate_joins_per_sec ("SHARDCAST_RATE_JOINS_PER_SEC"): u32 = 50;
    /// Burst of `join` + `leave` per user. [default: 100]
    rate_joins_burst ("SHARDCAST_RATE_JOINS_BURST"): u32 = 100;
    /// Most room subscriptions one connection may hold. [default: 64]
    max_subscriptions ("SHARDCAST_MAX_SUBSCRIPTIONS"): usize = 64;
    /// Most connections one user may hold at once (devices, tabs); one more closes
    /// the user's oldest with 4001. 1: the newest connection wins. [default: 8]
    max_connections_per_user ("SHARDCAST_MAX_CONNECTIONS_PER_USER"): usize = 8;
    /// Log format: `text` or `json`. [default: text]
    log_format ("SHARDCAST_LOG_FORMAT"): LogFormat = LogFormat::Text;
    /// Redis: how long a core's pipeline waits for more commands before a flush,
    /// in microseconds (0: flush at the end of the current reactor turn). [default: 200]
    redis_flush_us ("SHARDCAST_REDIS_FLUSH_US"): u64 = 200;
    /// Redis: commands that make a batch full and flush it at once. [default: 256]
    redis_batch ("SHARDCAST_REDIS_BATCH"): usize = 256;
    /// Redis: most requests waiting per core; beyond it sends get `unavailable`
    /// (backpressure from a slow Redis). [default: 20,000]
    redis_max_pending ("SHARDCAST_REDIS_MAX_PENDING"): usize = 20_000;
    /// Redis: a reply overdue by this many milliseconds breaks the connection
    /// (every waiting request fails). [default: 2000]
    redis_timeout_ms ("SHARDCAST_REDIS_TIMEOUT_MS"): u64 = 2000;
    /// Redis: seconds to wait for Redis at start-up before refusing to start. [default: 0]
    redis_wait_secs ("SHARDCAST_REDIS_WAIT_SECS"): u64 = 0;
    /// Redis: failures in a row that open the circuit breaker. [default: 3]
    redis_breaker_failures ("SHARDCAST_REDIS_BREAKER_FAILURES"): u32 = 3;
    /// Redis: milliseconds between probes while the breaker is open. [default: 1000]
    redis_breaker_open_ms ("SHARDCAST_REDIS_BREAKER_OPEN_MS"): u64 = 1000;
    /// How `/ws` upgrades are authenticated: `none` trusts `userId` (development),
    /// `jwt` requires a token whose `sub` is the user. [default: none]
    auth ("SHARDCAST_AUTH"): AuthMode = AuthMode::None;
    /// Clock skew allowed on a JWT's `exp` and `nbf`, in seconds. [default: 30]
    jwt_leeway_secs ("SHARDCAST_JWT_LEEWAY_SECS"): u64 = 30;
    /// Who decides rooms and sends: `open` (everyone may do everything) or
    /// `claims` (the JWT's `rooms`/`send` claims; needs `--auth jwt`). [default: open]
    rooms_policy ("SHARDCAST_ROOMS_POLICY"): RoomsPolicy = RoomsPolicy::Open;
    /// Relay: how long librdkafka lingers for more messages before it sends a
    /// batch to the broker, in microseconds. [default: 200]
    relay_linger_us ("SHARDCAST_RELAY_LINGER_US"): u64 = 200;
    /// Relay: messages a core may have on their way to Kafka; beyond it
    /// cross-node sends get `unavailable` (backpressure from a slow broker). [default: 100,000]
    relay_max_pending ("SHARDCAST_RELAY_MAX_PENDING"): usize = 100_000;
    /// Relay: longest time the broker may hold a node's fetch when there is
    /// nothing new, in milliseconds (a broker that answers only at this bound
    /// adds up to it to every relayed message; a shorter one costs idle fetches). [default: 10]
    relay_fetch_wait_ms ("SHARDCAST_RELAY_FETCH_WAIT_MS"): u64 = 10;
    /// Control plane: milliseconds between heartbeats (`--control`). [default: 500]
    heartbeat_ms ("SHARDCAST_HEARTBEAT_MS"): u64 = 500;
    /// Control plane: the Kafka topic `shardcast-ctl` publishes ring versions
    /// to; nodes with `--control` follow it (the heartbeat reply is the
    /// fallback). [default: shardcast.control]
    control_topic ("SHARDCAST_CONTROL_TOPIC"): String = "shardcast.control".to_owned();
    /// Seconds over which the users a new ring gives to other nodes are moved
    /// (each at its own moment in the period, so a change is not one burst). [default: 10]
    rebalance_secs ("SHARDCAST_REBALANCE_SECS"): f64 = 10.0;
    /// This node's weight in the ring, sent in heartbeats. [default: 1.0]
    weight ("SHARDCAST_WEIGHT"): f64 = 1.0;
    /// This node's failure domain (rack, zone), sent in heartbeats. [default: ""]
    zone ("SHARDCAST_ZONE"): String = String::new();
    /// Ingest: how many recent record ids a node remembers to deliver a
    /// repeated id once. [default: 100,000]
    ingest_dedup_window ("SHARDCAST_INGEST_DEDUP_WINDOW"): usize = 100_000;
    /// Kafka: a message the broker has not acknowledged after this many
    /// milliseconds fails (its sender gets `unavailable`). [default: 5000]
    kafka_timeout_ms ("SHARDCAST_KAFKA_TIMEOUT_MS"): u64 = 5000;
    /// Kafka: seconds to wait for the brokers at start-up before refusing to start. [default: 0]
    kafka_wait_secs ("SHARDCAST_KAFKA_WAIT_SECS"): u64 = 0;
optional:
    /// Kafka brokers (`HOST:PORT,…`) for cross-node delivery; needs `--redis`;
    /// absent: in-process relay (a single node).
    kafka ("SHARDCAST_KAFKA"): String;
    /// A static ring snapshot (the control plane's JSON) for a cluster without
    /// `shardcast-ctl`: users owned by another node are sent there; absent:
    /// this node owns every user.
    ring ("SHARDCAST_RING"): PathBuf;
    /// The URL clients reach this node's WebSocket endpoint at, as published
    /// in the ring (`--control`); absent: ws://LISTEN/ws.
    ws_url ("SHARDCAST_WS_URL"): String;
    /// A Kafka topic backends produce `{to|room, id, data}` records to; the
    /// cluster delivers them like the server API (needs `--kafka`).
    ingest_topic ("SHARDCAST_INGEST_TOPIC"): String;
    /// Redis URL (`redis://[:PASSWORD@]HOST:PORT/DB`) for offsets, buffers and
    /// sessions; absent: the in-memory store.
    redis ("SHARDCAST_REDIS"): String;
    /// Control-plane URL; absent: a standalone node owning every user.
    control ("SHARDCAST_CONTROL"): String;
    /// JWT public keys (RS256 RSA, ES256 P-256) in PEM: files or directories of
    /// `*.pem`, repeatable or comma-separated; a key's `kid` is its file name
    /// without `.pem`.
    #[arg(value_delimiter = ',')]
    jwt_public_key ("SHARDCAST_JWT_PUBLIC_KEY"): Vec<PathBuf>;
    /// Required `iss` of every JWT; absent: not checked.
    jwt_issuer ("SHARDCAST_JWT_ISSUER"): String;
    /// Required member of every JWT's `aud`; absent: not checked.
    jwt_audience ("SHARDCAST_JWT_AUDIENCE"): String;
    /// Origins a browser upgrade may come from: exact (`https://app.example.com`)
    /// or wildcards (`*.example.com`), comma-separated; absent: every origin.
    #[arg(value_delimiter = ',')]
    allowed_origins ("SHARDCAST_ALLOWED_ORIGINS"): Vec<String>;
    /// A file holding the server API key (16+ bytes; `/api/v1/*` on the main port,
    /// `Authorization: Bearer KEY`); absent: the server API is off (404).
    api_key_file ("SHARDCAST_API_KEY_FILE"): PathBuf;
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

fn default_node_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "node-1".to_owned())
}

/// The command line of `shardcast-node`.
#[derive(Debug, clap::Parser)]
#[command(name = "shardcast-node", version, about = "shardcast socket node")]
pub struct NodeArgs {
    /// A TOML file with any of the knobs below (kebab-case keys).
    #[arg(long, env = "SHARDCAST_CONFIG")]
    pub config: Option<PathBuf>,
    /// A file holding the cluster secret (else `SHARDCAST_SECRET`).
    #[arg(long, env = "SHARDCAST_SECRET_FILE")]
    pub secret_file: Option<PathBuf>,
    /// A file holding the HS256 JWT secret (else `SHARDCAST_JWT_SECRET`; else
    /// the cluster secret when no `--jwt-public-key` is given).
    #[arg(long, env = "SHARDCAST_JWT_SECRET_FILE")]
    pub jwt_secret_file: Option<PathBuf>,
    #[command(flatten)]
    pub overrides: Overrides,
}

impl NodeArgs {
    /// Resolves the layers into a checked [`Config`].
    pub fn resolve(self) -> Result<Config, ConfigError> {
        let file = match &self.config {
            None => Overrides::default(),
            Some(path) => {
                let text =
                    std::fs::read_to_string(path).map_err(|source| ConfigError::ReadFile {
                        path: path.clone(),
                        source,
                    })?;
                toml::from_str(&text).map_err(|source| ConfigError::ParseFile {
                    path: path.clone(),
                    source: Box::new(source),
                })?
            }
        };
        let mut config = self.overrides.merge(file);
        let secret = read_secret(self.secret_file.as_deref(), "SHARDCAST_SECRET")?;
        if secret.is_empty() {
            config.secret = random_bytes::<32>()?.to_vec();
            config.secret_is_ephemeral = true;
        } else {
            config.secret = secret;
        }
        let jwt_secret = read_secret(self.jwt_secret_file.as_deref(), "SHARDCAST_JWT_SECRET")?;
        config.check()?;
        if let Some(table) = &config.rate_limits {
            let (messages, joins) = config.builtin_limits();
            config.rates =
                RateKinds::new(messages, joins, table).map_err(|e| ConfigError::Invalid {
                    knob: "rate-limits",
                    why: e.to_string(),
                })?;
        }
        if let Some(path) = config.api_key_file.clone() {
            let key = std::fs::read(&path).map_err(|source| ConfigError::ReadSecret {
                path: path.clone(),
                source,
            })?;
            let key = key.trim_ascii();
            if key.len() < 16 {
                return Err(ConfigError::Invalid {
                    knob: "api-key-file",
                    why: format!("{}: the key must be at least 16 bytes", path.display()),
                });
            }
            config.api_key = Some(crate::node::api::key_digest(key));
        }
        config.origins = match &config.allowed_origins {
            Some(list) if !list.is_empty() => Some(AllowedOrigins::parse(list)?),
            _ => None,
        };
        if config.auth == AuthMode::Jwt {
            config.jwt = Some(Arc::new(config.jwt_verifier(jwt_secret)?));
        }
        if let Some(path) = &config.ring {
            config.ring_snapshot = Some(Arc::new(load_ring(path, &config.node_id)?));
        }
        Ok(config)
    }
}

/// The ring snapshot in `path`, which must name `node_id`.
fn load_ring(path: &std::path::Path, node_id: &str) -> Result<Ring, ConfigError> {
    let invalid = |why: String| ConfigError::Invalid { knob: "ring", why };
    let text = std::fs::read_to_string(path)
        .map_err(|e| invalid(format!("cannot read {}: {e}", path.display())))?;
    let ring: Ring =
        serde_json::from_str(&text).map_err(|e| invalid(format!("{}: {e}", path.display())))?;
    if ring.node(node_id).is_none() {
        return Err(invalid(format!(
            "{} has no node {node_id:?} (this node's --node-id)",
            path.display()
        )));
    }
    Ok(ring)
}

/// The secret in `file` (trailing white space dropped), else in the
/// environment variable `env`, else empty; one given must be 16+ bytes.
pub(crate) fn read_secret(
    file: Option<&std::path::Path>,
    env: &str,
) -> Result<Vec<u8>, ConfigError> {
    let secret = match (file, std::env::var_os(env)) {
        (Some(path), _) => std::fs::read(path)
            .map(|mut s| {
                while s.last().is_some_and(|b| b.is_ascii_whitespace()) {
                    s.pop();
                }
                s
            })
            .map_err(|source| ConfigError::ReadSecret {
                path: path.to_owned(),
                source,
            })?,
        (None, Some(s)) => s.into_encoded_bytes(),
        (None, None) => Vec::new(),
    };
    if !secret.is_empty() && secret.len() < 16 {
        return Err(ConfigError::ShortSecret);
    }
    Ok(secret)
}

impl Config {
    /// A configuration with every default and a fixed secret (tests, benches).
    pub fn defaults() -> Config {
        let mut c = Overrides::default().merge(Overrides::default());
        c.secret = b"shardcast-default-test-secret!!".to_vec();
        c
    }

    fn check(&self) -> Result<(), ConfigError> {
        let invalid = |knob, why: &str| {
            Err(ConfigError::Invalid {
                knob,
                why: why.to_owned(),
            })
        };
        if self.max_message_bytes < 128 {
            return invalid("max-message-bytes", "must be at least 128");
        }
        if self.buffer_messages == 0 {
            return invalid("buffer-messages", "must be at least 1");
        }
        if self.max_connections_per_user == 0 {
            return invalid("max-connections-per-user", "must be at least 1");
        }
        if self.outbound_queue == 0 {
            return invalid("outbound-queue", "must be at least 1");
        }
        if self.handshakes_per_sec == 0
            || self.rate_messages_per_sec == 0
            || self.rate_joins_per_sec == 0
        {
            return invalid("rates", "must be positive");
        }
        if !(8..=32768).contains(&self.ring_depth) || !self.ring_depth.is_power_of_two() {
            return invalid("ring-depth", "must be a power of two in 8..=32768");
        }
        if self.idle_timeout_secs <= self.ping_interval_secs {
            return invalid("idle-timeout-secs", "must exceed ping-interval-secs");
        }
        if self.rooms_policy == RoomsPolicy::Claims && self.auth != AuthMode::Jwt {
            return invalid("rooms-policy", "`claims` needs `--auth jwt`");
        }
        if self.control.is_some() && !(self.weight > 0.0 && self.weight.is_finite()) {
            return invalid("weight", "must be a positive number");
        }
        if self.kafka.is_some() && self.redis.is_none() {
            return invalid(
                "kafka",
                "the relay needs --redis: a user's buffer must outlive the node it was on",
            );
        }
        if (self.ring.is_some() || self.control.is_some()) && self.kafka.is_none() {
            return invalid(
                if self.ring.is_some() {
                    "ring"
                } else {
                    "control"
                },
                "a cluster needs --kafka (and --redis): without the relay a message to \
                 another node's user could not reach it",
            );
        }
        if self.ingest_topic.is_some() && self.kafka.is_none() {
            return invalid("ingest-topic", "needs --kafka");
        }
        if self.relay_max_pending == 0 || self.kafka_timeout_ms == 0 {
            return invalid(
                "relay",
                "relay-max-pending and kafka-timeout-ms must be positive",
            );
        }
        Ok(())
    }

    /// The JWT verifier of this configuration. HS256 uses `jwt_secret`, else
    /// the cluster secret when no public key is configured (an operator who
    /// configured public keys did not ask for HMAC tokens); RS256/ES256 use
    /// the public keys.
    fn jwt_verifier(&self, jwt_secret: Vec<u8>) -> Result<JwtVerifier, ConfigError> {
        let public_keys = load_public_keys(self.jwt_public_key.as_deref().unwrap_or_default())?;
        let hs256_secret = if !jwt_secret.is_empty() {
            Some(jwt_secret)
        } else if public_keys.is_empty() && !self.secret_is_ephemeral {
            Some(self.secret.clone())
        } else {
            None
        };
        if hs256_secret.is_none() && public_keys.is_empty() {
            return Err(ConfigError::Invalid {
                knob: "auth",
                why: "`jwt` needs a key: SHARDCAST_JWT_SECRET, --jwt-secret-file, the cluster \
                      secret (SHARDCAST_SECRET, --secret-file) or --jwt-public-key"
                    .to_owned(),
            });
        }
        Ok(JwtVerifier::new(JwtSettings {
            hs256_secret,
            public_keys,
            issuer: self.jwt_issuer.clone(),
            audience: self.jwt_audience.clone(),
            leeway_secs: self.jwt_leeway_secs,
        }))
    }

    /// The limits of the built-in kinds `messages` and `joins`.
    fn builtin_limits(&self) -> (Limit, Limit) {
        (
            Limit::per_sec(self.rate_messages_per_sec, self.rate_messages_burst),
            Limit::per_sec(self.rate_joins_per_sec, self.rate_joins_burst),
        )
    }

    /// The number of executors to start.
    pub fn core_count(&self) -> usize {
        if self.cores == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            self.cores
        }
    }

    /// Resume-token lifetime.
    pub fn token_ttl(&self) -> Duration {
        Duration::from_secs(self.token_ttl_secs)
    }
}

/// `N` bytes from the operating system's CSPRNG.
pub fn random_bytes<const N: usize>() -> Result<[u8; N], ConfigError> {
    let mut out = [0u8; N];
    getrandom::fill(&mut out).map_err(|e| ConfigError::Random(e.to_string()))?;
    Ok(out)
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
