//! Starting a `shardcast-node` or `shardcast-ctl` process and finding its
//! ports: the one harness shared by the integration tests, loadgen's tests,
//! examples and benchmarks.
//!
//! The node prints one line on stdout once every listener is bound,
//! `listening ws=ADDR metrics=ADDR` (the control plane:
//! `listening http=ADDR`); the harness reads it, so callers can pass port 0
//! and learn the real ports. A [`NodeProcess`] or [`CtlProcess`] is killed
//! (SIGKILL) when dropped, so a failing test leaves no process behind; so
//! are the [`RedisProcess`] and [`TansuProcess`] a test starts for its
//! cluster.

use std::{
    io::{self, BufRead, BufReader},
    net::SocketAddr,
    path::PathBuf,
    process::{Child, ChildStdout, Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};

/// A loopback TCP port nothing listens on right now (for a process that
/// must be started, and restarted, on a port known in advance).
pub fn free_port() -> io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// A static ring of nodes `n0..` (weight 1, `slots` slots), node `i`
/// reachable at `ws://127.0.0.1:{ports[i]}/ws`: a test cluster on loopback.
pub fn loopback_ring(ports: &[u16], slots: u64) -> crate::ring::Ring {
    let nodes = ports
        .iter()
        .enumerate()
        .map(|(i, port)| {
            let mut node = crate::ring::Node::new(format!("n{i}"), 1.0);
            node.addr = format!("ws://127.0.0.1:{port}/ws");
            node
        })
        .collect();
    crate::ring::Ring::new(crate::ring::RingConfig {
        version: 1,
        slots,
        nodes,
    })
    .expect("a valid loopback ring")
}

/// How long [`NodeProcess::start`] waits for the listening line. Generous:
/// a debug node on a loaded 2-vCPU machine, a Redis or Kafka wait included.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);

/// The first line `child` prints on its piped stdout, and the reader to
/// keep; `Err` (and `child` killed) when none comes within `within`.
fn first_line(child: &mut Child, within: Duration) -> io::Result<(String, BufReader<ChildStdout>)> {
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout is piped"));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let read = stdout.read_line(&mut line);
        let _ = tx.send((read, line, stdout));
    });
    match rx.recv_timeout(within) {
        Ok((read, line, stdout)) => read.map(|_| (line, stdout)),
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no listening line within {within:?}; the process was killed"),
            ))
        }
    }
}

/// A running node process.
pub struct NodeProcess {
    child: Child,
    /// Kept open so that the node never writes to a closed pipe.
    _stdout: BufReader<ChildStdout>,
    /// The WebSocket port (`/ws`, `/echo`, `/health`).
    pub ws: SocketAddr,
    /// The metrics port (`/metrics`).
    pub metrics: SocketAddr,
}

impl NodeProcess {
    /// Spawns `command` (a `shardcast-node` command line) with stdout piped
    /// and waits for its listening line. A node that exits first, or prints
    /// something else, is an error that carries what it printed.
    pub fn start(mut command: Command) -> io::Result<NodeProcess> {
        NodeProcess::start_within(command.stdout(Stdio::piped()), START_TIMEOUT)
    }

    /// As [`NodeProcess::start`], failing (and killing the node) when the
    /// listening line has not come within `within`: a test fails instead of
    /// waiting forever for a node that never finished starting.
    pub fn start_within(command: &mut Command, within: Duration) -> io::Result<NodeProcess> {
        let mut child = command.stdout(Stdio::piped()).spawn()?;
        let (line, stdout) = first_line(&mut child, within)?;
        let addr = |key: &str| -> Option<SocketAddr> {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(key))?
                .parse()
                .ok()
        };
        match (addr("ws="), addr("metrics=")) {
            (Some(ws), Some(metrics)) => Ok(NodeProcess {
                child,
                _stdout: stdout,
                ws,
                metrics,
            }),
            _ => {
                let status = child.wait()?;
                Err(io::Error::other(format!(
                    "node did not start ({status}); first line: {line:?}"
                )))
            }
        }
    }

    /// The node's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` to the node.
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) with a pid we spawned and have not reaped; it
        // touches no memory of ours.
        unsafe { libc::kill(self.child.id() as i32, signal) };
    }

    /// Sends SIGTERM (drain) and waits for the exit, at most `within`.
    pub fn terminate(&mut self, within: Duration) -> io::Result<ExitStatus> {
        self.signal(libc::SIGTERM);
        self.wait_for_exit(within)
    }

    /// Kills the node with SIGKILL (no drain, nothing flushed) and reaps it.
    pub fn kill(&mut self) -> io::Result<ExitStatus> {
        let _ = self.child.kill();
        self.child.wait()
    }

    /// Waits for the node to exit, at most `within`.
    pub fn wait_for_exit(&mut self, within: Duration) -> io::Result<ExitStatus> {
        let t0 = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if t0.elapsed() > within {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("node still running after {within:?}"),
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running `shardcast-ctl` process.
pub struct CtlProcess {
    child: Child,
    _stdout: BufReader<ChildStdout>,
    /// The HTTP API's address.
    pub http: SocketAddr,
}

impl CtlProcess {
    /// Spawns `command` (a `shardcast-ctl` command line) with stdout piped
    /// and waits for its listening line; a process that exits first is an
    /// error that carries what it printed.
    pub fn start(mut command: Command) -> io::Result<CtlProcess> {
        let mut child = command.stdout(Stdio::piped()).spawn()?;
        let (line, stdout) = first_line(&mut child, START_TIMEOUT)?;
        let http = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("http="))
            .and_then(|a| a.parse().ok());
        match http {
            Some(http) => Ok(CtlProcess {
                child,
                _stdout: stdout,
                http,
            }),
            None => {
                let status = child.wait()?;
                Err(io::Error::other(format!(
                    "shardcast-ctl did not start ({status}); first line: {line:?}"
                )))
            }
        }
    }

    /// `http://ADDR`, the base URL of its API.
    pub fn url(&self) -> String {
        format!("http://{}", self.http)
    }

    /// Sends `signal`.
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) with a pid we spawned and have not reaped.
        unsafe { libc::kill(self.child.id() as i32, signal) };
    }

    /// Sends SIGTERM and waits for the exit, at most `within`.
    pub fn terminate(&mut self, within: Duration) -> io::Result<ExitStatus> {
        self.signal(libc::SIGTERM);
        let t0 = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if t0.elapsed() > within {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("shardcast-ctl still running after {within:?}"),
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills it with SIGKILL and reaps it.
    pub fn kill(&mut self) -> io::Result<ExitStatus> {
        let _ = self.child.kill();
        self.child.wait()
    }
}

impl Drop for CtlProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `shardcast-node` binary for crates that cannot name it with
/// `CARGO_BIN_EXE_…` (loadgen's tests, examples): `SHARDCAST_NODE_BIN`, else
/// the newest of `{$CARGO_TARGET_DIR,<workspace>/target}/{release,debug}/`.
pub fn node_binary() -> io::Result<PathBuf> {
    binary("shardcast-node", "SHARDCAST_NODE_BIN")
}

/// The `shardcast-ctl` binary, found like [`node_binary`]
/// (`SHARDCAST_CTL_BIN`, else the newest build in the target directory).
pub fn ctl_binary() -> io::Result<PathBuf> {
    binary("shardcast-ctl", "SHARDCAST_CTL_BIN")
}

fn binary(name: &str, env: &str) -> io::Result<PathBuf> {
    if let Some(p) = std::env::var_os(env) {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{env}={} does not exist", p.display()),
            ))
        };
    }
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut dirs = vec![workspace.join("target")];
    if let Some(t) = std::env::var_os("CARGO_TARGET_DIR") {
        dirs.insert(0, PathBuf::from(t));
    }
    dirs.iter()
        .flat_map(|d| ["release", "debug"].map(|p| d.join(p).join(name)))
        .filter(|p| p.is_file())
        .max_by_key(|p| p.metadata().and_then(|m| m.modified()).ok())
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "{name} binary not found: build the workspace first \
                     (cargo build --release --bin {name}) or set {env}"
                ),
            )
        })
}

/// A `redis-server` of its own (Debian's package) on a free loopback port,
/// with no persistence and its own directory; killed when dropped. Tests
/// use one per test, so users of different tests never share keys.
pub struct RedisProcess {
    child: Child,
    dir: PathBuf,
    /// The port it listens on.
    pub port: u16,
}

impl RedisProcess {
    /// Starts `redis-server` on a free port and waits until it answers.
    pub fn start() -> io::Result<RedisProcess> {
        RedisProcess::start_on(free_port()?)
    }

    /// Starts `redis-server` on `port` (to restart one where it was).
    pub fn start_on(port: u16) -> io::Result<RedisProcess> {
        let dir =
            std::env::temp_dir().join(format!("shardcast-redis-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("cannot start redis-server (apt-get install -y redis-server): {e}"),
                )
            })?;
        let mut redis = RedisProcess { child, dir, port };
        let t0 = Instant::now();
        while !redis.answers() {
            if let Some(status) = redis.child.try_wait()? {
                return Err(io::Error::other(format!("redis-server exited: {status}")));
            }
            if t0.elapsed() > Duration::from_secs(10) {
                return Err(io::Error::other("redis-server did not answer within 10 s"));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(redis)
    }

    /// `redis://127.0.0.1:PORT/0`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// True when it answers PING.
    pub fn answers(&self) -> bool {
        use std::io::{Read, Write};
        let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
        let mut buf = [0u8; 16];
        s.write_all(b"PING\r\n").is_ok()
            && s.read(&mut buf)
                .is_ok_and(|n| buf[..n].starts_with(b"+PONG"))
    }

    /// Sends `signal` (SIGSTOP freezes it, SIGCONT thaws it).
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) with a pid we spawned and have not reaped.
        unsafe { libc::kill(self.child.id() as i32, signal) };
    }

    /// Kills it with SIGKILL (its data is gone: no persistence).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for RedisProcess {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A `tansu` Kafka-protocol broker of its own (`cargo install tansu
/// --features dynostore`) on a free loopback port, with memory storage;
/// killed when dropped. `TANSU_BIN` names the binary, else `tansu` on the
/// `PATH` or in `~/.cargo/bin`.
pub struct TansuProcess {
    child: Child,
    /// The port it listens on.
    pub port: u16,
}

impl TansuProcess {
    /// Starts a broker on a free port and waits until it accepts
    /// connections.
    pub fn start() -> io::Result<TansuProcess> {
        TansuProcess::start_on(free_port()?)
    }

    /// Starts a broker on `port` (to restart one where it was; memory
    /// storage: it comes back empty).
    pub fn start_on(port: u16) -> io::Result<TansuProcess> {
        let url = format!("tcp://127.0.0.1:{port}");
        let child = Command::new(tansu_binary())
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", "memory://tansu/"])
            .env("RUST_LOG", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("cannot start tansu (cargo install tansu --features dynostore): {e}"),
                )
            })?;
        let mut tansu = TansuProcess { child, port };
        let t0 = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(status) = tansu.child.try_wait()? {
                return Err(io::Error::other(format!("tansu exited: {status}")));
            }
            if t0.elapsed() > Duration::from_secs(20) {
                return Err(io::Error::other("tansu did not listen within 20 s"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(tansu)
    }

    /// `127.0.0.1:PORT`, for `--kafka`.
    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The broker's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills it with SIGKILL (memory storage: its records are gone).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for TansuProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

fn tansu_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("TANSU_BIN") {
        return PathBuf::from(p);
    }
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let installed = home.map(|h| h.join(".cargo/bin/tansu"));
    match installed {
        Some(p) if p.is_file() => p,
        _ => PathBuf::from("tansu"),
    }
}
