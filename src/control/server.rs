//! The socket side of `shardcast-ctl`: the HTTP listener (tiny_http), its
//! worker threads, the housekeeping thread, and the run loop of the binary.
//!
//! Why tiny_http: the control plane answers a heartbeat per node every few
//! hundred milliseconds and a `connect` per client (re)connection: tens of
//! thousands of requests per second at most, far from the nodes' hot path.
//! A synchronous server on a few threads does that, adds four small crates
//! (no async runtime: nothing else in the crate uses tokio) and compiles in
//! seconds (docs/architecture.md, "Control plane").
//!
//! Invariants: the process prints `listening http=ADDR` on stdout once the
//! listener is bound (the test harness reads it); a body is never read past
//! [`MAX_BODY_BYTES`]; SIGTERM and SIGINT stop it after the requests in
//! flight.

use std::{
    io::Read,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread,
    time::{Duration, Instant},
};

use thiserror::Error;
use tiny_http::{Header, Response, Server};

use super::{
    api::{self, ApiRequest, ApiResponse, MAX_BODY_BYTES},
    config::CtlConfig,
    membership::{Membership, PersistHook},
    publish::{KafkaError, KafkaPublisher},
    service::{Control, Publish, Signing},
    state::{StateError, StateFile},
};
use crate::ring::RingError;

/// Why `shardcast-ctl` could not run.
#[derive(Debug, Error)]
pub enum RunError {
    /// The listener could not be bound.
    #[error("cannot listen on {addr}: {why}")]
    Listen {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        why: String,
    },
    /// The state file is unusable.
    #[error(transparent)]
    State(#[from] StateError),
    /// The state file's snapshot cannot be built.
    #[error("state file: {0}")]
    Ring(#[from] RingError),
    /// The Kafka producer could not be made.
    #[error(transparent)]
    Kafka(#[from] KafkaError),
    /// A signal handler could not be installed.
    #[error("signals: {0}")]
    Signals(std::io::Error),
}

/// Runs the control plane until SIGTERM or SIGINT.
pub fn run(config: CtlConfig) -> Result<(), RunError> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, Arc::clone(&stop)).map_err(RunError::Signals)?;
    }
    if config.secret_is_ephemeral {
        tracing::warn!(
            "no cluster secret (SHARDCAST_SECRET or --secret-file): connect tokens are signed \
             with a random key that no node accepts"
        );
    }
    let control = Arc::new(build(&config)?);
    let server = Server::http(config.listen).map_err(|e| RunError::Listen {
        addr: config.listen,
        why: e.to_string(),
    })?;
    let server = Arc::new(server);
    let addr = server
        .server_addr()
        .to_ip()
        .map_or_else(|| config.listen.to_string(), |a| a.to_string());
    tracing::info!(listen = %addr, kafka = ?config.kafka, "shardcast-ctl started");
    println!("listening http={addr}");
    let mut threads = Vec::new();
    for i in 0..config.http_threads {
        let (server, control) = (Arc::clone(&server), Arc::clone(&control));
        threads.push(
            thread::Builder::new()
                .name(format!("ctl-http-{i}"))
                .spawn(move || serve(&server, &control))
                .expect("spawn an HTTP thread"),
        );
    }
    // Expiry is checked often enough that a node leaves within a tenth of
    // the grace period after it ran out.
    let tick = (config.grace() / 10).clamp(Duration::from_millis(20), Duration::from_secs(1));
    let mut next = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        control.tick();
        next += tick;
        thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    tracing::info!("shardcast-ctl stopping");
    for _ in &threads {
        server.unblock();
    }
    for t in threads {
        let _ = t.join();
    }
    Ok(())
}

/// The control plane of `config`: restored from the state file, with its
/// publisher.
pub fn build(config: &CtlConfig) -> Result<Control, RunError> {
    let state = config.state_file.clone().map(StateFile::new);
    let persist: PersistHook = match state.clone() {
        Some(file) => Box::new(move |snapshot| file.save(snapshot)),
        None => Box::new(|_| Ok(())),
    };
    let membership = match state.as_ref().map(|f| f.load(config.slots)).transpose()? {
        Some(Some(snapshot)) => {
            tracing::info!(
                version = snapshot.version,
                nodes = snapshot.nodes.len(),
                "restored the ring from the state file"
            );
            Membership::restore(snapshot, config.grace(), Instant::now(), persist)?
        }
        _ => Membership::new(config.slots, config.grace(), 0, persist),
    };
    let publisher = match &config.kafka {
        Some(brokers) => {
            Some(Box::new(KafkaPublisher::start(brokers, &config.kafka_topic)?) as Box<dyn Publish>)
        }
        None => None,
    };
    let signing = Signing {
        jwt_key: config.jwt_secret.clone(),
        secret: config.secret.clone(),
        token_ttl_secs: config.connect_token_ttl_secs,
        resume_ttl_secs: config.token_ttl_secs,
        issuer: config.jwt_issuer.clone(),
        audience: config.jwt_audience.clone(),
    };
    Ok(
        Control::new(membership, config.scaling(), signing, publisher)
            .with_probe_timeout(Duration::from_millis(config.probe_timeout_ms)),
    )
}

/// One worker: answers requests until the server is unblocked.
fn serve(server: &Server, control: &Control) {
    while let Ok(mut request) = server.recv() {
        let response = if request.body_length().is_some_and(|n| n > MAX_BODY_BYTES) {
            control.refused("body_too_large");
            ApiResponse::too_large()
        } else {
            let mut body = Vec::new();
            let read = request
                .as_reader()
                .take(MAX_BODY_BYTES as u64 + 1)
                .read_to_end(&mut body);
            match read {
                Err(e) => {
                    control.refused("bad_body");
                    ApiResponse::error(400, "bad_body", &format!("cannot read the body: {e}"))
                }
                Ok(_) if body.len() > MAX_BODY_BYTES => {
                    control.refused("body_too_large");
                    ApiResponse::too_large()
                }
                Ok(_) => {
                    let method = request.method().as_str().to_owned();
                    api::handle(
                        control,
                        &ApiRequest {
                            method: &method,
                            target: request.url(),
                            body: &body,
                        },
                    )
                }
            }
        };
        let mut out = Response::from_string(response.body)
            .with_status_code(response.status)
            .with_header(header("Content-Type", response.content_type));
        if let Some(allow) = response.allow {
            out.add_header(header("Allow", allow));
        }
        if response.status == 413 {
            // The rest of the body was not read: the connection cannot be
            // reused.
            out.add_header(header("Connection", "close"));
        }
        let _ = request.respond(out);
    }
}

fn header(name: &str, value: &str) -> Header {
    Header::from_bytes(name.as_bytes(), value.as_bytes()).expect("a valid header")
}
