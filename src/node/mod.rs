//! The socket node: one glommio executor per core, each owning a shard of
//! the users.
//!
//! Start-up binds the listeners (so a port of 0 is resolved once and shared
//! by every core through `SO_REUSEPORT`), prints one line with the bound
//! addresses, joins every core to a full channel mesh, and runs each core's
//! [`Shard`] with its accept loop, its forwarders and receivers for the
//! mesh, and a housekeeping tick. SIGTERM/SIGINT sets a node-wide drain
//! flag that each core notices on its next tick; the process exits when
//! every core has drained.

pub mod api;
mod conn;
mod control;
mod handshake;
pub mod http;
mod ingest;
mod mesh;
pub(crate) mod notify;
mod order;
mod park;
pub mod rate;
pub mod rings;
mod rooms;
mod shard;
mod ws;

use std::{
    hash::Hasher,
    net::SocketAddr,
    os::fd::{FromRawFd, IntoRawFd},
    rc::Rc,
    sync::{atomic::AtomicBool, Arc},
    time::Duration,
};

use glommio::{channels::channel_mesh::MeshBuilder, LocalExecutorBuilder, Placement};
use rustc_hash::FxHasher;
use thiserror::Error;

use crate::{
    config::Config,
    metrics::Metrics,
    relay,
    store::{self, CoreStore},
};

pub use shard::unix_now;

/// The core that owns `user` among `cores`: a fixed hash, the same in every
/// process, so a hand-off always lands on the same core.
pub fn shard_of(user: &str, cores: usize) -> usize {
    let mut h = FxHasher::default();
    h.write(user.as_bytes());
    (h.finish() % cores as u64) as usize
}

/// A node that could not start.
#[derive(Debug, Error)]
pub enum NodeError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot start executor {core}: {why}")]
    Executor { core: usize, why: String },
    #[error("core {core} cannot join the channel mesh: {why}")]
    Mesh { core: usize, why: String },
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
    #[error("store: {0}")]
    Store(String),
    #[error("relay: {0}")]
    Relay(String),
    #[error("control plane: {0}")]
    Control(String),
}

impl NodeError {
    /// The process exit code: 2 for a configuration the node cannot run
    /// with (an unreachable store or port included), 1 for anything else.
    pub fn exit_code(&self) -> u8 {
        match self {
            NodeError::Store(_)
            | NodeError::Relay(_)
            | NodeError::Control(_)
            | NodeError::Bind { .. } => 2,
            _ => 1,
        }
    }
}

fn bind(addr: SocketAddr) -> Result<std::net::TcpListener, NodeError> {
    use socket2::{Domain, Socket, Type};
    let err = |source| NodeError::Bind { addr, source };
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None).map_err(err)?;
    socket.set_reuse_address(true).map_err(err)?;
    socket.set_reuse_port(true).map_err(err)?;
    socket.set_nonblocking(true).map_err(err)?;
    socket.bind(&addr.into()).map_err(err)?;
    socket.listen(4096).map_err(err)?;
    Ok(socket.into())
}

/// What a core needs to build its store and relay, and how it says it is
/// ready.
struct CoreStores {
    redis: Option<store::redis::LinkSettings>,
    rings: Arc<rings::RingSlot>,
    relay: Option<(relay::RelaySettings, relay::Start)>,
    ready: std::sync::mpsc::Sender<()>,
}

/// The listeners one core accepts on: its own `SO_REUSEPORT` socket on the
/// shared port, and on core 0 the metrics port.
struct CoreListeners {
    ws: std::net::TcpListener,
    metrics: Option<std::net::TcpListener>,
}

/// Runs a node until it has drained after SIGTERM/SIGINT.
pub fn run(config: Config) -> Result<(), NodeError> {
    let drain = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        // A second signal while draining exits at once.
        signal_hook::flag::register_conditional_shutdown(sig, 1, drain.clone())
            .map_err(NodeError::Signals)?;
        signal_hook::flag::register(sig, drain.clone()).map_err(NodeError::Signals)?;
    }
    let cores = config.core_count();
    let redis = match &config.redis {
        None => None,
        Some(url) => {
            let settings = store::redis::link_settings(&config, url).map_err(NodeError::Store)?;
            let wait = Duration::from_secs(config.redis_wait_secs);
            store::redis::wait_until_reachable(&settings, wait).map_err(NodeError::Store)?;
            tracing::info!(redis = %settings.addr, db = settings.db, "store: redis");
            Some(settings)
        }
    };
    let relay = match relay::RelaySettings::of(&config) {
        None => None,
        Some(settings) => {
            let wait = Duration::from_secs(config.kafka_wait_secs);
            let start = relay::prepare(&settings, wait).map_err(NodeError::Relay)?;
            tracing::info!(brokers = %settings.brokers, topic = %relay::node_topic(&config.node_id), "relay: kafka");
            Some((settings, start))
        }
    };
    if let Some(ring) = &config.ring_snapshot {
        tracing::info!(
            version = ring.version(),
            nodes = ring.nodes().len(),
            "static ring"
        );
    }
    let ws_listener = bind(config.listen)?;
    let ws_addr = ws_listener.local_addr().map_err(|source| NodeError::Bind {
        addr: config.listen,
        source,
    })?;
    let metrics_listener = bind(config.metrics_listen)?;
    let metrics_addr = metrics_listener
        .local_addr()
        .map_err(|source| NodeError::Bind {
            addr: config.metrics_listen,
            source,
        })?;
    // Each connection is a descriptor; a few hundred more for listeners,
    // io_uring, Redis and whatever the process opens.
    let wanted = config.max_connections as u64 + 512;
    match crate::sys::ensure_nofile(wanted) {
        // Info, not a warning: the 1,000,000 default is above most
        // development machines' limits, and the limit is what is true.
        Ok(limit) if limit < wanted => tracing::info!(
            limit,
            wanted,
            "open-file limit caps connections below --max-connections (LimitNOFILE, ulimit -n; see tuning/)"
        ),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "cannot read the open-file limit"),
    }
    if config.secret_is_ephemeral {
        tracing::warn!(
            "no SHARDCAST_SECRET or --secret-file: resume tokens only verify on this process"
        );
    }
    log_auth(&config);
    tracing::info!(cores, ws = %ws_addr, metrics = %metrics_addr, node = %config.node_id, "starting");
    // Every core gets its own SO_REUSEPORT listener on the port core 0
    // resolved, bound here so that a failure stops the start-up cleanly.
    let mut listeners = vec![CoreListeners {
        ws: ws_listener,
        metrics: Some(metrics_listener),
    }];
    for _ in 1..cores {
        listeners.push(CoreListeners {
            ws: bind(ws_addr)?,
            metrics: None,
        });
    }
    let metrics = Arc::new(Metrics::new(cores));
    let rings = Arc::new(rings::RingSlot::new(config.ring_snapshot.clone()));
    let _follower = match &config.control {
        None => None,
        Some(url) => Some(
            control::follow(
                &config,
                url,
                ws_addr,
                rings.clone(),
                metrics.clone(),
                drain.clone(),
            )
            .map_err(NodeError::Control)?,
        ),
    };
    let mesh = MeshBuilder::full(cores, 1024);
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<()>();
    let online = crate::sys::online_cpus();
    let mut handles = Vec::with_capacity(cores);
    for (i, listeners) in listeners.into_iter().enumerate() {
        let core_rings = rings.clone();
        let (config, metrics, mesh, drain, redis, relay, ready) = (
            config.clone(),
            metrics.clone(),
            mesh.clone(),
            drain.clone(),
            redis.clone(),
            relay.clone(),
            ready_tx.clone(),
        );
        let handle = LocalExecutorBuilder::new(Placement::Fixed((config.first_cpu + i) % online))
            .name(&format!("core-{i}"))
            .ring_depth(config.ring_depth)
            .spawn(move || {
                let stores = CoreStores {
                    redis,
                    rings: core_rings,
                    relay,
                    ready,
                };
                core_main(i, config, stores, metrics, mesh, drain, listeners)
            })
            .map_err(|e| NodeError::Executor {
                core: i,
                why: e.to_string(),
            })?;
        handles.push(handle);
    }
    // Scripts and the test harness read this line to find the ports: it
    // comes once every core's store has tried to connect.
    drop(ready_tx);
    for _ in 0..cores {
        if ready_rx.recv().is_err() {
            break; // a core failed; its error is reported by join below
        }
    }
    println!("listening ws={ws_addr} metrics={metrics_addr}");
    // Every core is joined, so the first error reported is the first core's.
    let mut result = Ok(());
    for (core, h) in handles.into_iter().enumerate() {
        let outcome = h
            .join()
            .map_err(|e| NodeError::Executor {
                core,
                why: e.to_string(),
            })
            .and_then(|r| r);
        if result.is_ok() {
            result = outcome;
        }
    }
    result?;
    tracing::info!("drained, exiting");
    Ok(())
}

/// Says at start-up how upgrades are checked and whether the server API is
/// on, so that an open door is seen.
fn log_auth(config: &Config) {
    match &config.jwt {
        Some(jwt) => tracing::info!(
            algorithms = ?jwt.algorithms(),
            kids = ?jwt.key_ids(),
            rooms_policy = ?config.rooms_policy,
            "auth: jwt"
        ),
        None => tracing::info!("auth: none (--auth none): any client may claim any userId"),
    }
    match &config.api_key_file {
        Some(path) => tracing::info!(
            key_file = %path.display(),
            "server API on /api/v1 (publish, send, online), API key required"
        ),
        None => tracing::info!("server API off (no --api-key-file): /api/v1 answers 404"),
    }
    match &config.allowed_origins {
        Some(list) if !list.is_empty() => {
            tracing::info!(origins = ?list, "allowed origins")
        }
        _ => tracing::info!(
            "no --allowed-origins: every origin is allowed (browser pages of any site may connect)"
        ),
    }
}

/// Runs `f`, polling it again every 20 ms whether or not it was woken.
///
/// Start-up only. Twice, under heavy load, a node bound its ports and one
/// core never finished starting: its thread sat in `io_uring_enter` waiting
/// for a completion, and went on as soon as a debugger interrupted the
/// syscall — a cross-thread wake-up (the channel mesh's join, or the store's
/// first connect) that never arrived. A timer in the same task makes the
/// executor wake up and poll `f` again, so a lost wake-up costs 20 ms
/// instead of the start-up.
async fn repolled<F: std::future::Future>(f: F) -> F::Output {
    let ticks = async {
        loop {
            glommio::timer::sleep(Duration::from_millis(20)).await;
        }
    };
    futures_lite::future::or(f, ticks).await
}

async fn core_main(
    core: usize,
    config: Config,
    stores: CoreStores,
    metrics: Arc<Metrics>,
    mesh: MeshBuilder<Vec<mesh::CoreMsg>, glommio::channels::channel_mesh::Full>,
    drain: Arc<AtomicBool>,
    listeners: CoreListeners,
) -> Result<(), NodeError> {
    let cores = mesh.nr_peers();
    let (senders, mut receivers) = repolled(mesh.join()).await.map_err(|e| NodeError::Mesh {
        core,
        why: e.to_string(),
    })?;
    let me = senders.peer_id();
    let outbox = Rc::new(mesh::Mesh::new(me, cores));
    let store = CoreStore::for_core(&config, stores.redis.as_ref(), metrics.clone(), me);
    repolled(store.ready()).await;
    let producer = match &stores.relay {
        None => None,
        Some((settings, _)) => {
            Some(relay::Producer::start(settings, metrics.clone(), me).map_err(NodeError::Relay)?)
        }
    };
    let config = Rc::new(config);
    let shard = Rc::new_cyclic(|weak| {
        shard::Shard::new(
            weak.clone(),
            me,
            config,
            outbox.clone(),
            metrics,
            shard::Backends {
                store,
                relay: producer,
                rings: stores.rings.clone(),
            },
            drain,
        )
    });
    if let (0, Some((settings, _))) = (me, &stores.relay) {
        if let Some(topic) = settings.ingest_topic.clone() {
            let (shard, settings) = (shard.clone(), settings.clone());
            let window = shard.config().ingest_dedup_window;
            glommio::spawn_local(async move {
                if let Err(e) = ingest::consume(shard, settings, topic, window).await {
                    tracing::error!(error = %e, "ingest consumer stopped");
                }
            })
            .detach();
        }
    }
    if let (0, Some((settings, start))) = (me, stores.relay) {
        let shard = shard.clone();
        glommio::spawn_local(async move {
            let node = shard.clone();
            if let Err(e) = relay::consume(settings, start, move |r| node.on_relayed(r)).await {
                tracing::error!(error = %e, "relay consumer stopped");
            }
        })
        .detach();
    }
    let _ = stores.ready.send(());
    let senders = Rc::new(senders);
    for peer in (0..cores).filter(|&p| p != me) {
        glommio::spawn_local(outbox.clone().forward(peer, senders.clone())).detach();
    }
    for (_, rx) in receivers.streams() {
        let shard = shard.clone();
        glommio::spawn_local(async move {
            while let Some(mut batch) = rx.recv().await {
                // Whatever else is ready joins this batch: one delivery
                // (one store flush) for all of it.
                while let Some(Some(more)) = futures_lite::future::poll_once(rx.recv()).await {
                    batch.extend(more);
                }
                shard.on_core_batch(batch).await;
            }
        })
        .detach();
    }
    if let Some(metrics_listener) = listeners.metrics {
        // SAFETY: the fd comes from a listener we own; `into_raw_fd` gives
        // up that ownership to the glommio listener.
        let metrics_listener =
            unsafe { glommio::net::TcpListener::from_raw_fd(metrics_listener.into_raw_fd()) };
        glommio::spawn_local(handshake::metrics_loop(shard.clone(), metrics_listener)).detach();
    }
    // SAFETY: as above, for this core's WebSocket listener.
    let listener = unsafe { glommio::net::TcpListener::from_raw_fd(listeners.ws.into_raw_fd()) };
    glommio::spawn_local(handshake::accept_loop(shard.clone(), listener)).detach();
    loop {
        glommio::timer::sleep(Duration::from_millis(100)).await;
        shard.tick();
        if shard.drained() {
            break;
        }
    }
    // Let the last close frames leave before the executor stops.
    glommio::timer::sleep(Duration::from_millis(50)).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_of_is_pinned_and_in_range() {
        // Pinned: placement is in-process only, but a change of the hash
        // (or of rustc-hash's FxHasher) changes which users share a core in
        // every benchmark and per-core metric, so it must be deliberate.
        for (user, cores, core) in [
            ("alice", 2, 1),
            ("alice", 3, 1),
            ("alice", 8, 1),
            ("bob", 2, 0),
            ("bob", 3, 1),
            ("bob", 8, 6),
            ("urn:x:1", 3, 2),
            ("user-42", 8, 6),
        ] {
            assert_eq!(shard_of(user, cores), core, "{user} over {cores}");
        }
        for n in 1..8 {
            for u in ["a", "bob", "urn:x:1"] {
                assert!(shard_of(u, n) < n);
            }
        }
        let spread = (0..1000)
            .filter(|i| shard_of(&format!("user-{i}"), 2) == 0)
            .count();
        assert!((400..600).contains(&spread), "{spread}");
    }
}
