//! The run plan: who does what, fixed before the first connection.
//!
//! Work is split in contiguous, balanced slices: the scenario's units (pairs,
//! rooms or connections) are divided among all cores of all workers
//! ("global cores"), and each global core derives its slice from its index
//! alone. Workers therefore need no coordination to agree on who owns which
//! user, and every unit that needs exact accounting (a pair, a room) lives
//! entirely on one core, so its accounting is plain single-threaded data.

use crate::cli::{Common, ScenarioCmd};
use crate::target::{parse_source_ips, SourceIpError, Target, TargetError};
use shardcast::ring::Ring;
use std::net::IpAddr;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;

/// A command line that cannot be turned into a safe, bounded run.
#[derive(Debug, Error)]
pub enum PlanError {
    /// `--control` with a scenario that does not route through it.
    #[error("--control works with `direct` and `connect` only")]
    ControlUnsupported,
    /// Neither `--target` nor `--control`.
    #[error("give the nodes with --target, or a control plane with --control")]
    NoTarget,
    /// Non-positive or non-finite `--duration`.
    #[error("--duration must be a positive number of seconds")]
    BadDuration,
    /// `--workers 0`.
    #[error("--workers must be at least 1")]
    NoWorkers,
    /// A bad `--target`.
    #[error(transparent)]
    Target(#[from] TargetError),
    /// A bad `--source-ips`.
    #[error(transparent)]
    SourceIps(#[from] SourceIpError),
    /// The plan exceeds `--max-connections`.
    #[error("this plan opens {need} connections, above --max-connections {max}")]
    TooManyConnections {
        /// Connections the plan needs.
        need: u64,
        /// The configured cap.
        max: u64,
    },
    /// Odd or too few `--users`.
    #[error("--users must be even and at least 2 (users are paired)")]
    BadUsers,
    /// `--wave-fraction` outside (0, 1].
    #[error("--wave-fraction must be in (0, 1]")]
    BadWaveFraction,
    /// `--ring` cannot be read, or a node's `addr` is not a usable target.
    #[error("--ring: {0}")]
    Ring(String),
    /// `--jwt-secret-file` cannot be read.
    #[error("cannot read --jwt-secret-file {0}")]
    JwtSecret(String),
    /// Zero subscribers or publishers, or an overflowing room plan.
    #[error(
        "--subscribers and --publishers must be at least 1 and rooms × members must fit in 64 bits"
    )]
    BadRooms,
}

/// Everything a core needs to know about the run. Shared read-only.
#[derive(Clone, Debug)]
pub struct Plan {
    /// The scenario and its flags.
    pub scenario: ScenarioCmd,
    /// Parsed targets, in command-line order.
    pub targets: Vec<Target>,
    /// Parsed `--failover-target`s (`direct` only; empty: reconnect to the
    /// same target).
    pub failover_targets: Vec<Target>,
    /// Source addresses (empty: let the kernel choose).
    pub source_ips: Vec<IpAddr>,
    /// Run id shared by all workers (names users and rooms).
    pub run_id: String,
    /// Number of worker processes.
    pub workers: usize,
    /// Executors per worker.
    pub cores_per_worker: usize,
    /// This process's worker index (0 when running alone).
    pub worker_index: usize,
    /// Pin executors to CPUs.
    pub pin: bool,
    /// Connections the whole run opens (initially).
    pub total_connections: u64,
    /// The HS256 secret JWTs are minted with (`--jwt-secret-file`).
    pub jwt_secret: Option<Vec<u8>>,
    /// The static ring (`--ring`) and each of its nodes' target.
    pub ring: Option<(Arc<Ring>, Vec<Target>)>,
    /// The control plane (`--control`).
    pub control: Option<Target>,
    /// The event log (`--events`).
    pub events_file: Option<std::path::PathBuf>,
}

impl Plan {
    /// Builds and validates the plan from the command line.
    pub fn from_cli(scenario: &ScenarioCmd) -> Result<Self, PlanError> {
        let c = scenario.common();
        let control = match &c.control {
            None => None,
            Some(_) if !matches!(scenario, ScenarioCmd::Direct(_) | ScenarioCmd::Connect(_)) => {
                return Err(PlanError::ControlUnsupported)
            }
            Some(url) => Some(Target::parse_http(url)?),
        };
        if c.targets.is_empty() && control.is_none() {
            return Err(PlanError::NoTarget);
        }
        if !(c.duration > 0.0 && c.duration.is_finite()) {
            return Err(PlanError::BadDuration);
        }
        if c.workers == 0 {
            return Err(PlanError::NoWorkers);
        }
        let targets = c
            .targets
            .iter()
            .map(|t| Target::parse(t))
            .collect::<Result<Vec<_>, _>>()?;
        let failover_targets = match scenario {
            ScenarioCmd::Direct(a) => a
                .failover_targets
                .iter()
                .map(|t| Target::parse(t))
                .collect::<Result<Vec<_>, _>>()?,
            _ => Vec::new(),
        };
        let source_ips = match &c.source_ips {
            Some(spec) => parse_source_ips(spec)?,
            None => Vec::new(),
        };
        let total_connections = total_connections(scenario)?;
        if total_connections > c.max_connections {
            return Err(PlanError::TooManyConnections {
                need: total_connections,
                max: c.max_connections,
            });
        }
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let cores_per_worker = c.cores.unwrap_or((cpus / c.workers).max(1)).max(1);
        let run_id = match &c.run_id {
            Some(id) => id.clone(),
            None => format!("{:06x}", rand::random::<u32>() & 0xFF_FFFF),
        };
        let ring = match &c.ring {
            None => None,
            Some(path) => Some(load_ring(path)?),
        };
        Ok(Self {
            ring,
            control,
            events_file: c.events.clone(),
            scenario: scenario.clone(),
            targets,
            failover_targets,
            source_ips,
            run_id,
            workers: c.workers,
            cores_per_worker,
            worker_index: c.worker_index.unwrap_or(0),
            pin: !c.no_pin,
            total_connections,
            jwt_secret: match &c.jwt_secret_file {
                None => None,
                Some(path) => {
                    let mut s = std::fs::read(path)
                        .map_err(|e| PlanError::JwtSecret(format!("{}: {e}", path.display())))?;
                    while s.last().is_some_and(|b| b.is_ascii_whitespace()) {
                        s.pop();
                    }
                    Some(s)
                }
            },
        })
    }

    /// A JWT for `user` (`sub`, `exp` = now + `--jwt-ttl-secs`), when the
    /// run was given `--jwt-secret-file`.
    pub fn jwt_for(&self, user: &str) -> Option<String> {
        let secret = self.jwt_secret.as_ref()?;
        #[derive(serde::Serialize)]
        struct Claims<'a> {
            sub: &'a str,
            exp: u64,
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let claims = Claims {
            sub: user,
            exp: now + self.common().jwt_ttl_secs,
        };
        jsonwebtoken::encode(
            &jsonwebtoken::Header::default(),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(secret),
        )
        .ok()
    }

    /// The shared options.
    pub fn common(&self) -> &Common {
        self.scenario.common()
    }

    /// Cores across all workers.
    pub fn total_cores(&self) -> usize {
        self.workers * self.cores_per_worker
    }

    /// Global index of this worker's local core `local`.
    pub fn global_core(&self, local: usize) -> usize {
        self.worker_index * self.cores_per_worker + local
    }

    /// The CPU a local core is pinned to: workers take consecutive CPUs so
    /// that K workers × C cores spread over the machine.
    pub fn cpu_for(&self, local: usize) -> usize {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        self.global_core(local) % cpus
    }

    /// Connections this worker opens initially.
    pub fn worker_connections(&self) -> u64 {
        self.connections_of_worker(self.worker_index)
    }

    /// Connections worker `w` opens initially.
    pub fn connections_of_worker(&self, w: usize) -> u64 {
        (0..self.cores_per_worker)
            .map(|c| {
                let g = (w * self.cores_per_worker + c) as u64;
                connections_of_core(&self.scenario, g, self.total_cores() as u64)
            })
            .sum()
    }

    /// Seconds of the measured phase.
    pub fn duration(&self) -> Duration {
        Duration::from_secs_f64(self.common().duration)
    }

    /// Connect + upgrade timeout.
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.common().connect_timeout.max(0.001))
    }

    /// Drain timeout after the measured phase.
    pub fn drain_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.common().drain_timeout.max(0.0))
    }

    /// Source address for global connection index `i`, if any were given.
    pub fn source_for(&self, i: u64) -> Option<IpAddr> {
        (!self.source_ips.is_empty())
            .then(|| self.source_ips[(i % self.source_ips.len() as u64) as usize])
    }

    /// Target for unit `u` (a pair, a room, or a connection).
    pub fn target_for(&self, u: u64) -> &Target {
        &self.targets[(u % self.targets.len() as u64) as usize]
    }

    /// The node that owns user `name`, by `--ring`.
    pub fn owner_of(&self, name: &str) -> Option<&Target> {
        let (ring, targets) = self.ring.as_ref()?;
        Some(&targets[ring.slot_owner_index(ring.slot_of(name))])
    }

    /// Failover target for pair `u`, if any were given.
    pub fn failover_for(&self, u: u64) -> Option<&Target> {
        (!self.failover_targets.is_empty())
            .then(|| &self.failover_targets[(u % self.failover_targets.len() as u64) as usize])
    }
}

fn load_ring(path: &std::path::Path) -> Result<(Arc<Ring>, Vec<Target>), PlanError> {
    let err = |e: String| PlanError::Ring(format!("{}: {e}", path.display()));
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    let ring: Ring = serde_json::from_str(&text).map_err(|e| err(e.to_string()))?;
    let targets = ring
        .nodes()
        .iter()
        .map(|n| Target::parse(&n.addr).map_err(|e| err(format!("node {}: {e}", n.id))))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((Arc::new(ring), targets))
}

/// The balanced contiguous slice of `0..total` owned by part `i` of `parts`.
pub fn share(total: u64, parts: u64, i: u64) -> Range<u64> {
    let base = total / parts;
    let extra = total % parts;
    let start = i * base + i.min(extra);
    let len = base + u64::from(i < extra);
    start..start + len
}

fn total_connections(s: &ScenarioCmd) -> Result<u64, PlanError> {
    Ok(match s {
        ScenarioCmd::Connect(a) => a.connections,
        ScenarioCmd::Echo(a) => a.connections,
        ScenarioCmd::Direct(a) => even_users(a.users)?,
        ScenarioCmd::Storm(a) => {
            if !(a.wave_fraction > 0.0 && a.wave_fraction <= 1.0) {
                return Err(PlanError::BadWaveFraction);
            }
            even_users(a.users)?
        }
        ScenarioCmd::Rooms(a) => {
            if a.subscribers == 0 || a.publishers == 0 {
                return Err(PlanError::BadRooms);
            }
            a.rooms
                .checked_mul(a.subscribers + a.publishers)
                .ok_or(PlanError::BadRooms)?
        }
    })
}

fn even_users(n: u64) -> Result<u64, PlanError> {
    if n < 2 || n % 2 != 0 {
        return Err(PlanError::BadUsers);
    }
    Ok(n)
}

/// Units (pairs, rooms or connections) of global core `g`.
pub fn units_of_core(s: &ScenarioCmd, g: u64, cores: u64) -> Range<u64> {
    let units = match s {
        ScenarioCmd::Connect(a) => a.connections,
        ScenarioCmd::Echo(a) => a.connections,
        ScenarioCmd::Direct(a) => a.users / 2,
        ScenarioCmd::Storm(a) => a.users / 2,
        ScenarioCmd::Rooms(a) => a.rooms,
    };
    share(units, cores, g)
}

/// Connections opened by global core `g`.
pub fn connections_of_core(s: &ScenarioCmd, g: u64, cores: u64) -> u64 {
    let u = units_of_core(s, g, cores);
    let n = u.end - u.start;
    match s {
        ScenarioCmd::Connect(_) | ScenarioCmd::Echo(_) => n,
        ScenarioCmd::Direct(_) | ScenarioCmd::Storm(_) => 2 * n,
        ScenarioCmd::Rooms(a) => n * (a.subscribers + a.publishers),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_cover_everything_once_and_are_balanced() {
        for total in [0u64, 1, 7, 100, 1001] {
            for parts in 1..9u64 {
                let mut next = 0;
                for i in 0..parts {
                    let r = share(total, parts, i);
                    assert_eq!(r.start, next);
                    let len = r.end - r.start;
                    assert!(len == total / parts || len == total / parts + 1);
                    next = r.end;
                }
                assert_eq!(next, total);
            }
        }
    }

    fn direct(extra: &str) -> Result<Plan, PlanError> {
        use clap::Parser;
        let line = format!(
            "loadgen direct --target ws://127.0.0.1:8080/ws --duration 1 --users 8 --rate 10 {extra}"
        );
        let cli = crate::cli::Cli::try_parse_from(line.split_whitespace()).unwrap();
        Plan::from_cli(&cli.scenario)
    }

    #[test]
    fn jwts_are_minted_per_user_with_the_secret_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("jwt.secret");
        std::fs::write(&file, "loadgen-jwt-secret-0123456789\n").unwrap();
        assert!(direct("").unwrap().jwt_for("u").is_none());
        let plan = direct(&format!(
            "--jwt-secret-file {} --jwt-ttl-secs 60",
            file.display()
        ))
        .unwrap();
        let token = plan.jwt_for("lg-7").unwrap();
        #[derive(serde::Deserialize)]
        struct Claims {
            sub: String,
            exp: u64,
        }
        let key = jsonwebtoken::DecodingKey::from_secret(b"loadgen-jwt-secret-0123456789");
        let v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
        let claims = jsonwebtoken::decode::<Claims>(&token, &key, &v)
            .unwrap()
            .claims;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        assert_eq!(claims.sub, "lg-7");
        assert!(
            (now + 55..=now + 61).contains(&claims.exp),
            "{}",
            claims.exp
        );
        assert!(matches!(
            direct("--jwt-secret-file /nonexistent/secret"),
            Err(PlanError::JwtSecret(_))
        ));
    }

    #[test]
    fn control_is_parsed_and_limited_to_direct_and_connect() {
        use clap::Parser;
        let plan = |line: &str| {
            let cli = crate::cli::Cli::try_parse_from(line.split_whitespace()).unwrap();
            Plan::from_cli(&cli.scenario)
        };
        let p =
            plan("loadgen direct --control http://127.0.0.1:8081 --duration 1 --users 2 --rate 1")
                .unwrap();
        assert_eq!(p.control.unwrap().addr, "127.0.0.1:8081".parse().unwrap());
        assert!(p.targets.is_empty());
        assert!(
            plan("loadgen connect --control http://127.0.0.1:1 --duration 1 --connections 1")
                .is_ok()
        );
        assert!(matches!(
            plan("loadgen echo --control http://127.0.0.1:1 --duration 1 --connections 1 --rate 1"),
            Err(PlanError::ControlUnsupported)
        ));
        assert!(matches!(
            plan("loadgen direct --control ws://127.0.0.1:1 --duration 1 --users 2 --rate 1"),
            Err(PlanError::Target(_))
        ));
    }

    #[test]
    fn failover_targets_are_parsed_and_spread_over_pairs() {
        let plan = direct("").unwrap();
        assert!(plan.failover_for(0).is_none());
        let plan = direct(
            "--failover-target ws://127.0.0.1:8081/ws --failover-target ws://127.0.0.1:8082/ws",
        )
        .unwrap();
        let port = |p: u64| plan.failover_for(p).map(|t| t.url.clone());
        assert_eq!(port(0).as_deref(), Some("ws://127.0.0.1:8081/ws"));
        assert_eq!(port(1).as_deref(), Some("ws://127.0.0.1:8082/ws"));
        assert_eq!(port(2), port(0));
        assert_eq!(plan.target_for(1).url, "ws://127.0.0.1:8080/ws");
        assert!(direct("--failover-target wss://127.0.0.1:8081/ws").is_err());
    }
}
