//! Every knob of `shardcast-ctl`: its name, default, unit and meaning, in
//! one place.
//!
//! Resolved like the node's (`crate::config`): command-line flag, then its
//! `SHARDCAST_<FLAG>` environment variable, then the TOML file given by
//! `--config` (kebab-case keys), then the default written here. The cluster
//! secret is never a flag: `SHARDCAST_SECRET` or `--secret-file`; the HS256
//! key of the `connect` tokens is `SHARDCAST_JWT_SECRET` or
//! `--jwt-secret-file`, else the cluster secret — the same rule as a node
//! started with `--auth jwt`, so the node accepts the tokens.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use serde::Deserialize;

use super::scaling::ScalingParams;
use crate::{
    config::{random_bytes, read_secret, ConfigError, LogFormat},
    ring::{DEFAULT_SLOTS, MAX_SLOTS},
};

/// Declares the knobs once: `CtlConfig` (resolved), `CtlOverrides` (one
/// optional layer, from flags + environment or from TOML) and the merge.
macro_rules! knobs {
    (
        $(
            $(#[doc = $doc:literal])+
            $name:ident ($env:literal): $ty:ty = $default:expr;
        )+
        optional:
        $(
            $(#[doc = $odoc:literal])+
            $oname:ident ($oenv:literal): $oty:ty;
        )+
    ) => {
        /// The resolved configuration of `shardcast-ctl`.
        #[derive(Debug, Clone)]
        pub struct CtlConfig {
            $( $(#[doc = $doc])+ pub $name: $ty, )+
            $( $(#[doc = $odoc])+ pub $oname: Option<$oty>, )+
            /// The cluster secret (resume tokens presented to `connect`).
            pub secret: Vec<u8>,
            /// True when no secret was configured and a random one was made:
            /// no node will accept what this control plane signs.
            pub secret_is_ephemeral: bool,
            /// The HS256 key of the `connect` tokens.
            pub jwt_secret: Vec<u8>,
        }

        /// One layer of optional settings: flags + environment, or a TOML file.
        #[derive(Debug, Default, Clone, clap::Args, Deserialize)]
        #[serde(deny_unknown_fields, rename_all = "kebab-case")]
        pub struct CtlOverrides {
            $(
                $(#[doc = $doc])+
                #[arg(long, env = $env)]
                #[serde(default)]
                pub $name: Option<$ty>,
            )+
            $(
                $(#[doc = $odoc])+
                #[arg(long, env = $oenv)]
                #[serde(default)]
                pub $oname: Option<$oty>,
            )+
        }

        impl CtlOverrides {
            /// Takes each knob from `self`, else from `file`, else its default.
            fn merge(self, file: CtlOverrides) -> CtlConfig {
                CtlConfig {
                    $( $name: self.$name.or(file.$name).unwrap_or_else(|| $default), )+
                    $( $oname: self.$oname.or(file.$oname), )+
                    secret: Vec::new(),
                    secret_is_ephemeral: false,
                    jwt_secret: Vec::new(),
                }
            }
        }
    };
}

knobs! {
    /// Address of the HTTP API, `/health` and `/metrics`. [default: 0.0.0.0:8081]
    listen ("SHARDCAST_LISTEN"): SocketAddr = "0.0.0.0:8081".parse().unwrap();
    /// Seconds without a heartbeat after which a node leaves the ring
    /// (fractions allowed; keep it at 3+ heartbeat intervals). [default: 1.5]
    heartbeat_grace_secs ("SHARDCAST_HEARTBEAT_GRACE_SECS"): f64 = 1.5;
    /// Milliseconds a probe of a node reported `unreachable` by a client
    /// waits for a TCP handshake (a refused connect evicts the node at
    /// once; no answer leaves it to the grace period). [default: 300]
    probe_timeout_ms ("SHARDCAST_PROBE_TIMEOUT_MS"): u64 = 300;
    /// M, the ring's slot count: a power of two, fixed for a cluster. [default: 1048576]
    slots ("SHARDCAST_SLOTS"): u64 = DEFAULT_SLOTS;
    /// Kafka topic the ring versions are produced to (with `--kafka`). [default: shardcast.control]
    kafka_topic ("SHARDCAST_KAFKA_TOPIC"): String = "shardcast.control".to_owned();
    /// Lifetime of the JWT that `/api/v1/connect` signs, in seconds. [default: 300]
    connect_token_ttl_secs ("SHARDCAST_CONNECT_TOKEN_TTL_SECS"): u64 = 300;
    /// Age after which a resume token given to `/api/v1/connect` is refused,
    /// in seconds (the nodes' `--token-ttl-secs`). [default: 3600]
    token_ttl_secs ("SHARDCAST_TOKEN_TTL_SECS"): u64 = 3600;
    /// Scaling α: headroom on connections. [default: 1.25]
    scale_alpha ("SHARDCAST_SCALE_ALPHA"): f64 = 1.25;
    /// Scaling β: headroom on messages per second. [default: 1.25]
    scale_beta ("SHARDCAST_SCALE_BETA"): f64 = 1.25;
    /// Scaling γ: nodes the latency term asks for at the objective. [default: 1]
    scale_gamma ("SHARDCAST_SCALE_GAMMA"): f64 = 1.0;
    /// Scaling δ: growth of the latency term past the objective. [default: 1]
    scale_delta ("SHARDCAST_SCALE_DELTA"): f64 = 1.0;
    /// Connections one node is sized for. [default: 500000]
    conn_per_node ("SHARDCAST_CONN_PER_NODE"): f64 = 500_000.0;
    /// Messages per second one node is sized for. [default: 200000]
    mps_per_node ("SHARDCAST_MPS_PER_NODE"): f64 = 200_000.0;
    /// L_slo: the p95 latency objective, in milliseconds. [default: 50]
    latency_slo_ms ("SHARDCAST_LATENCY_SLO_MS"): f64 = 50.0;
    /// Least seconds between two scaling decisions. [default: 60]
    scale_min_interval_secs ("SHARDCAST_SCALE_MIN_INTERVAL_SECS"): f64 = 60.0;
    /// Most nodes one scaling decision adds or removes. [default: 2]
    scale_max_step ("SHARDCAST_SCALE_MAX_STEP"): u32 = 2;
    /// Threads answering HTTP requests. [default: 4]
    http_threads ("SHARDCAST_HTTP_THREADS"): usize = 4;
    /// Log format: `text` or `json`. [default: text]
    log_format ("SHARDCAST_LOG_FORMAT"): LogFormat = LogFormat::Text;
optional:
    /// Kafka brokers: each ring version is produced to `--kafka-topic`;
    /// absent: nodes poll `GET /api/v1/ring`.
    kafka ("SHARDCAST_KAFKA"): String;
    /// Where the last published ring snapshot is kept, so a restart never
    /// publishes a lower version; absent: versions start above what the
    /// nodes report.
    state_file ("SHARDCAST_STATE_FILE"): PathBuf;
    /// `iss` of the `connect` tokens (the nodes' `--jwt-issuer`).
    jwt_issuer ("SHARDCAST_JWT_ISSUER"): String;
    /// `aud` of the `connect` tokens (the nodes' `--jwt-audience`).
    jwt_audience ("SHARDCAST_JWT_AUDIENCE"): String;
}

/// The command line of `shardcast-ctl`.
#[derive(Debug, clap::Parser)]
#[command(name = "shardcast-ctl", version, about = "shardcast control plane")]
pub struct CtlArgs {
    /// A TOML file with any of the knobs below (kebab-case keys).
    #[arg(long, env = "SHARDCAST_CONFIG")]
    pub config: Option<PathBuf>,
    /// A file holding the cluster secret (else `SHARDCAST_SECRET`).
    #[arg(long, env = "SHARDCAST_SECRET_FILE")]
    pub secret_file: Option<PathBuf>,
    /// A file holding the HS256 JWT secret (else `SHARDCAST_JWT_SECRET`; else
    /// the cluster secret).
    #[arg(long, env = "SHARDCAST_JWT_SECRET_FILE")]
    pub jwt_secret_file: Option<PathBuf>,
    #[command(flatten)]
    pub overrides: CtlOverrides,
}

impl CtlArgs {
    /// Resolves the layers into a checked [`CtlConfig`].
    pub fn resolve(self) -> Result<CtlConfig, ConfigError> {
        let file = match &self.config {
            None => CtlOverrides::default(),
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
        config.jwt_secret = if jwt_secret.is_empty() {
            config.secret.clone()
        } else {
            jwt_secret
        };
        config.check()?;
        Ok(config)
    }
}

impl CtlConfig {
    fn check(&self) -> Result<(), ConfigError> {
        let invalid = |knob, why: &str| {
            Err(ConfigError::Invalid {
                knob,
                why: why.to_owned(),
            })
        };
        let positive = |x: f64| x.is_finite() && x > 0.0;
        if !(positive(self.heartbeat_grace_secs) && self.heartbeat_grace_secs <= 86_400.0) {
            return invalid("heartbeat-grace-secs", "must be in (0, 86400]");
        }
        if !self.slots.is_power_of_two() || self.slots > MAX_SLOTS {
            return invalid("slots", "must be a power of two, at most 2^26");
        }
        if self.kafka_topic.is_empty() {
            return invalid("kafka-topic", "must not be empty");
        }
        if self.connect_token_ttl_secs == 0 {
            return invalid("connect-token-ttl-secs", "must be at least 1");
        }
        for (knob, x) in [
            ("scale-alpha", self.scale_alpha),
            ("scale-beta", self.scale_beta),
            ("scale-gamma", self.scale_gamma),
            ("conn-per-node", self.conn_per_node),
            ("mps-per-node", self.mps_per_node),
            ("latency-slo-ms", self.latency_slo_ms),
        ] {
            if !positive(x) {
                return invalid(knob, "must be a positive number");
            }
        }
        if !(self.scale_delta.is_finite() && self.scale_delta >= 0.0) {
            return invalid("scale-delta", "must be a number >= 0");
        }
        if !(self.scale_min_interval_secs.is_finite() && self.scale_min_interval_secs >= 0.0) {
            return invalid("scale-min-interval-secs", "must be a number >= 0");
        }
        if self.scale_max_step == 0 {
            return invalid("scale-max-step", "must be at least 1");
        }
        if self.probe_timeout_ms == 0 || self.probe_timeout_ms > 60_000 {
            return invalid("probe-timeout-ms", "must be in [1, 60000]");
        }
        if self.http_threads == 0 || self.http_threads > 256 {
            return invalid("http-threads", "must be in 1..=256");
        }
        Ok(())
    }

    /// The heartbeat grace period.
    pub fn grace(&self) -> Duration {
        Duration::from_secs_f64(self.heartbeat_grace_secs)
    }

    /// The scaling constants.
    pub fn scaling(&self) -> ScalingParams {
        ScalingParams {
            alpha: self.scale_alpha,
            beta: self.scale_beta,
            gamma: self.scale_gamma,
            delta: self.scale_delta,
            conn_per_node: self.conn_per_node,
            mps_per_node: self.mps_per_node,
            latency_slo_ms: self.latency_slo_ms,
            min_interval: Duration::from_secs_f64(self.scale_min_interval_secs),
            max_step: self.scale_max_step,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn parse(args: &[&str]) -> Result<CtlConfig, ConfigError> {
        let mut argv = vec!["shardcast-ctl"];
        argv.extend_from_slice(args);
        CtlArgs::try_parse_from(argv).unwrap().resolve()
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let c = parse(&[]).unwrap();
        assert_eq!(c.listen, "0.0.0.0:8081".parse().unwrap());
        assert_eq!(c.slots, 1 << 20);
        assert_eq!(c.kafka_topic, "shardcast.control");
        assert_eq!(c.grace(), Duration::from_millis(1500));
        assert!(c.kafka.is_none() && c.state_file.is_none());
        assert_eq!(c.scaling().max_step, 2);
    }

    #[test]
    fn a_toml_file_sets_knobs_and_flags_win() {
        let path = std::env::temp_dir().join(format!("shardcast-ctl-{}.toml", std::process::id()));
        std::fs::write(
            &path,
            "scale-alpha = 2.0\nheartbeat-grace-secs = 4\nslots = 1024\n",
        )
        .unwrap();
        let c = parse(&["--config", path.to_str().unwrap(), "--slots", "64"]).unwrap();
        assert_eq!(
            (c.scale_alpha, c.heartbeat_grace_secs, c.slots),
            (2.0, 4.0, 64)
        );
        std::fs::write(&path, "no-such-knob = 1\n").unwrap();
        assert!(matches!(
            parse(&["--config", path.to_str().unwrap()]),
            Err(ConfigError::ParseFile { .. })
        ));
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn bad_values_are_refused() {
        for args in [
            &["--slots", "1000"][..],
            &["--heartbeat-grace-secs", "0"],
            &["--heartbeat-grace-secs", "NaN"],
            &["--scale-max-step", "0"],
            &["--conn-per-node", "0"],
            &["--latency-slo-ms=-1"],
            &["--http-threads", "0"],
        ] {
            assert!(
                matches!(parse(args), Err(ConfigError::Invalid { .. })),
                "{args:?}"
            );
        }
    }

    #[test]
    fn the_secret_is_not_a_flag() {
        assert!(CtlArgs::try_parse_from(["shardcast-ctl", "--secret", "x"]).is_err());
    }
}
