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

mod conn;
mod handshake;
mod mesh;
mod notify;
pub mod rate;
mod rooms;
mod shard;
mod ws;

use std::{
    hash::Hasher,
    net::SocketAddr,
    os::fd::{FromRawFd, IntoRawFd},
    rc::Rc,
    sync::{atomic::AtomicBool, Arc, Mutex},
    time::Duration,
};

use glommio::{channels::channel_mesh::MeshBuilder, LocalExecutorBuilder, Placement};
use rustc_hash::FxHasher;
use thiserror::Error;

use crate::{config::Config, metrics::Metrics};

pub use shard::{unix_now, CLOSE_DRAIN, CLOSE_REPLACED};

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
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
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

/// The addresses a started node listens on.
#[derive(Debug, Clone, Copy)]
pub struct Bound {
    pub ws: SocketAddr,
    pub metrics: SocketAddr,
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
    run_until(config, drain, |bound| {
        println!("listening ws={} metrics={}", bound.ws, bound.metrics);
    })
}

/// Runs a node until `drain` is set and every core has drained. `ready` is
/// called once the listeners are bound.
pub fn run_until(
    config: Config,
    drain: Arc<AtomicBool>,
    ready: impl FnOnce(Bound),
) -> Result<(), NodeError> {
    let cores = config.core_count();
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
    if config.secret_is_ephemeral {
        tracing::warn!(
            "no SHARDCAST_SECRET or --secret-file: resume tokens only verify on this process"
        );
    }
    tracing::info!(cores, ws = %ws_addr, metrics = %metrics_addr, node = %config.node_id, "starting");
    let metrics = Arc::new(Metrics::new(cores));
    let mesh = MeshBuilder::full(cores, 1024);
    let first = Arc::new(Mutex::new(Some((ws_listener, metrics_listener))));
    let online = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut handles = Vec::with_capacity(cores);
    for i in 0..cores {
        let (config, metrics, mesh, drain, first) = (
            config.clone(),
            metrics.clone(),
            mesh.clone(),
            drain.clone(),
            first.clone(),
        );
        let handle = LocalExecutorBuilder::new(Placement::Fixed((config.first_cpu + i) % online))
            .name(&format!("core-{i}"))
            .ring_depth(config.ring_depth)
            .spawn(move || async move {
                let listeners = first.lock().expect("no panics hold it").take();
                core_main(config, metrics, mesh, drain, ws_addr, listeners).await
            })
            .map_err(|e| NodeError::Executor {
                core: i,
                why: e.to_string(),
            })?;
        handles.push(handle);
    }
    ready(Bound {
        ws: ws_addr,
        metrics: metrics_addr,
    });
    for (core, h) in handles.into_iter().enumerate() {
        h.join().map_err(|e| NodeError::Executor {
            core,
            why: e.to_string(),
        })?;
    }
    tracing::info!("drained, exiting");
    Ok(())
}

async fn core_main(
    config: Config,
    metrics: Arc<Metrics>,
    mesh: MeshBuilder<Vec<mesh::CoreMsg>, glommio::channels::channel_mesh::Full>,
    drain: Arc<AtomicBool>,
    ws_addr: SocketAddr,
    first: Option<(std::net::TcpListener, std::net::TcpListener)>,
) {
    let cores = mesh.nr_peers();
    let (senders, mut receivers) = mesh.join().await.expect("mesh join");
    let me = senders.peer_id();
    let outbox = Rc::new(mesh::Mesh::new(me, cores));
    let shard = Rc::new(shard::Shard::new(
        me,
        Rc::new(config),
        outbox.clone(),
        metrics,
        drain,
    ));
    let senders = Rc::new(senders);
    for peer in (0..cores).filter(|&p| p != me) {
        glommio::spawn_local(outbox.clone().forward(peer, senders.clone())).detach();
    }
    for (_, rx) in receivers.streams() {
        let shard = shard.clone();
        glommio::spawn_local(async move {
            while let Some(batch) = rx.recv().await {
                for msg in batch {
                    shard.on_core_msg(msg).await;
                }
            }
        })
        .detach();
    }
    let listener = match first {
        Some((ws_listener, metrics_listener)) => {
            // SAFETY: the fds come from listeners we own and give up here.
            let metrics_listener =
                unsafe { glommio::net::TcpListener::from_raw_fd(metrics_listener.into_raw_fd()) };
            glommio::spawn_local(handshake::metrics_loop(shard.clone(), metrics_listener)).detach();
            unsafe { glommio::net::TcpListener::from_raw_fd(ws_listener.into_raw_fd()) }
        }
        None => glommio::net::TcpListener::bind(ws_addr).expect("bind the shared port"),
    };
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_of_is_stable_and_in_range() {
        // Pinned: a change here moves users between cores across versions.
        assert_eq!(shard_of("alice", 2), shard_of("alice", 2));
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
