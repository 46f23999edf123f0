//! One core's connection to Redis: the task that owns the socket, flushes
//! the pipeline in batches, reads replies, and keeps the connection healthy.
//!
//! Batching: a request is encoded into the core's [`Pipeline`] at once; the
//! first request of a batch wakes the link task, which waits up to
//! `--redis-flush-us` (or until `--redis-batch` commands are queued) and
//! writes everything queued in one `write`. Replies are read as they come
//! and complete their requests in order.
//!
//! Health is a circuit breaker. While the link is up, requests are sent. A
//! broken connection, a failed connect or a reply overdue by
//! `--redis-timeout-ms` fails every waiting request and takes the link down:
//! requests then fail at once (`Unreachable`), the task retries after a short
//! pause, and after `--redis-breaker-failures` failures in a row the breaker
//! opens (`CircuitOpen`) and the task waits `--redis-breaker-open-ms`
//! between probes (half-open: one connect + handshake). A successful probe
//! closes it. Nothing is retried on the node's behalf: a failed request was
//! not made durable and its caller says so (`unavailable`).
//!
//! Invariant: only this core's tasks touch a `Link` (`Rc`, `RefCell`, `Cell`).

use std::{
    cell::{Cell, RefCell},
    future::poll_fn,
    net::SocketAddr,
    rc::Rc,
    sync::Arc,
    task::{Poll, Waker},
    time::{Duration, Instant},
};

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use hdrhistogram::Histogram;
use redis::{Cmd, Value};

use crate::{
    metrics::{latency_histogram, Metrics, StoreFailure},
    node::notify::Notify,
    store::StoreError,
};

use super::pipeline::{Pipeline, Reply};

/// How a link reaches Redis and how it batches and gives up.
#[derive(Debug, Clone)]
pub struct LinkSettings {
    pub addr: SocketAddr,
    pub db: i64,
    pub username: Option<String>,
    pub password: Option<String>,
    /// Scripts to load on every (re)connect.
    pub scripts: Vec<String>,
    pub flush: Duration,
    pub batch: usize,
    pub max_pending: usize,
    pub timeout: Duration,
    pub breaker_failures: u32,
    pub breaker_open: Duration,
}

/// One request waiting for its reply.
struct Waiter {
    reply: RefCell<Option<Result<Value, StoreError>>>,
    waker: Cell<Option<Waker>>,
    queued_at: Instant,
}

impl Waiter {
    fn complete(&self, reply: Result<Value, StoreError>) {
        *self.reply.borrow_mut() = Some(reply);
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Health {
    Up,
    /// Down after `failures` failures in a row; the breaker is open from
    /// `settings.breaker_failures` on.
    Down {
        failures: u32,
    },
}

/// See the module docs.
pub struct Link {
    settings: LinkSettings,
    pipeline: RefCell<Pipeline<Rc<Waiter>>>,
    health: Cell<Health>,
    /// Woken when a batch starts (its first request is queued) and when it
    /// is full (`settings.batch` requests).
    work: Notify,
    /// When the first request of the queued batch was queued.
    batch_started: Cell<Instant>,
    /// Set once the first connection attempt has finished, either way.
    attempted: Cell<bool>,
    /// Woken when `attempted` is set.
    first_attempt: Notify,
    metrics: Arc<Metrics>,
    core: usize,
    /// Request round trips (queued → reply), µs; published by housekeeping.
    round_trips: RefCell<Histogram<u64>>,
}

impl Link {
    /// A link for core `core`; nothing runs until [`Link::run`] is spawned.
    pub fn new(settings: LinkSettings, metrics: Arc<Metrics>, core: usize) -> Link {
        metrics.cores[core].set_store_up(false);
        Link {
            pipeline: RefCell::new(Pipeline::new(settings.max_pending)),
            health: Cell::new(Health::Down { failures: 0 }),
            work: Notify::default(),
            batch_started: Cell::new(Instant::now()),
            attempted: Cell::new(false),
            first_attempt: Notify::default(),
            metrics,
            core,
            round_trips: RefCell::new(latency_histogram()),
            settings,
        }
    }

    /// Waits until the first connection attempt has finished (the node
    /// reports itself ready only then).
    pub async fn first_attempt(&self) {
        if !self.attempted.get() {
            self.first_attempt.wait().await;
        }
    }

    /// True while requests are being sent to Redis.
    pub fn is_up(&self) -> bool {
        self.health.get() == Health::Up
    }

    /// The round-trip histogram of this link (µs), cumulative.
    pub fn round_trips(&self) -> std::cell::Ref<'_, Histogram<u64>> {
        self.round_trips.borrow()
    }

    /// Sends `cmd` with the next batch and waits for its reply.
    pub async fn call(&self, cmd: &Cmd) -> Result<Value, StoreError> {
        self.call_encoded(|out| cmd.write_packed_command(out)).await
    }

    /// Sends the one command `encode` writes (RESP) with the next batch and
    /// waits for its reply.
    pub async fn call_encoded(
        &self,
        encode: impl FnOnce(&mut Vec<u8>),
    ) -> Result<Value, StoreError> {
        if let Health::Down { failures } = self.health.get() {
            let err = if failures >= self.settings.breaker_failures {
                StoreError::CircuitOpen
            } else {
                StoreError::Unreachable("not connected".into())
            };
            return Err(self.failed(err));
        }
        let waiter = Rc::new(Waiter {
            reply: RefCell::new(None),
            waker: Cell::new(None),
            queued_at: Instant::now(),
        });
        let queued = {
            let mut p = self.pipeline.borrow_mut();
            if let Err((full, _)) = p.push_encoded(encode, waiter.clone()) {
                drop(p);
                return Err(self.failed(StoreError::Overloaded {
                    pending: full.pending,
                }));
            }
            self.counters().set_store_depth(p.pending() as u64);
            p.queued()
        };
        if queued == 1 {
            self.batch_started.set(waiter.queued_at);
        }
        if queued == 1 || queued >= self.settings.batch {
            self.work.notify();
        }
        poll_fn(|cx| match waiter.reply.borrow_mut().take() {
            Some(reply) => Poll::Ready(reply),
            None => {
                waiter.waker.set(Some(cx.waker().clone()));
                Poll::Pending
            }
        })
        .await
    }

    fn counters(&self) -> &crate::metrics::CoreMetrics {
        &self.metrics.cores[self.core]
    }

    fn failed(&self, err: StoreError) -> StoreError {
        self.counters().store_failure(StoreFailure::of(&err));
        err
    }

    /// The link task: connects, serves until the connection breaks, and
    /// starts over, for the life of the core.
    pub async fn run(self: Rc<Self>) {
        loop {
            let connected = self.connect().await;
            if !self.attempted.replace(true) {
                self.first_attempt.notify();
            }
            match connected {
                Ok(mut stream) => {
                    if let Health::Down { failures } = self.health.get() {
                        if failures > 0 {
                            tracing::info!(core = self.core, "redis reachable again");
                        }
                    }
                    self.set_health(Health::Up);
                    let err = self.serve(&mut stream).await;
                    tracing::warn!(core = self.core, error = %err, "redis connection lost");
                    self.fail_all(err);
                    self.set_health(Health::Down { failures: 1 });
                }
                Err(err) => {
                    let failures = match self.health.get() {
                        Health::Down { failures } => failures + 1,
                        Health::Up => 1,
                    };
                    if failures == self.settings.breaker_failures {
                        tracing::warn!(core = self.core, error = %err, "redis down: circuit open");
                    }
                    self.set_health(Health::Down { failures });
                }
            }
            let Health::Down { failures } = self.health.get() else {
                continue;
            };
            let pause = if failures >= self.settings.breaker_failures {
                self.settings.breaker_open
            } else {
                Duration::from_millis(50 * u64::from(failures))
            };
            glommio::timer::sleep(pause).await;
        }
    }

    fn set_health(&self, health: Health) {
        self.health.set(health);
        self.counters().set_store_up(health == Health::Up);
    }

    fn fail_all(&self, err: StoreError) {
        let waiting = self.pipeline.borrow_mut().reset();
        self.counters().set_store_depth(0);
        for w in waiting {
            w.complete(Err(self.failed(err.clone())));
        }
    }

    /// Connects and runs the handshake: AUTH, SELECT, SCRIPT LOAD, PING.
    async fn connect(&self) -> Result<TcpStream, StoreError> {
        let s = &self.settings;
        let unreachable = |e: &dyn std::fmt::Display| StoreError::Unreachable(e.to_string());
        let mut stream = TcpStream::connect_timeout(s.addr, s.timeout)
            .await
            .map_err(|e| unreachable(&e))?;
        let _ = stream.set_nodelay(true);
        let mut hello: Vec<Cmd> = Vec::new();
        if let Some(password) = &s.password {
            let mut auth = redis::cmd("AUTH");
            if let Some(user) = &s.username {
                auth.arg(user);
            }
            hello.push(auth.arg(password).clone());
        }
        if s.db != 0 {
            hello.push(redis::cmd("SELECT").arg(s.db).clone());
        }
        for script in &s.scripts {
            hello.push(redis::cmd("SCRIPT").arg("LOAD").arg(script).clone());
        }
        hello.push(redis::cmd("PING").clone());
        let mut p: Pipeline<usize> = Pipeline::new(hello.len());
        for (i, c) in hello.iter().enumerate() {
            p.push(c, i).expect("sized for the handshake");
        }
        let mut out = Vec::new();
        p.take_output(&mut out);
        let handshake = async {
            stream.write_all(&out).await.map_err(|e| unreachable(&e))?;
            let mut buf = vec![0u8; 4096];
            let mut answered = 0;
            while answered < hello.len() {
                let n = stream.read(&mut buf).await.map_err(|e| unreachable(&e))?;
                if n == 0 {
                    return Err(StoreError::Unreachable("closed during handshake".into()));
                }
                for (_, reply) in p.feed(&buf[..n]).map_err(StoreError::Reply)? {
                    reply.map_err(StoreError::Reply)?;
                    answered += 1;
                }
            }
            Ok(())
        };
        futures_lite::future::or(handshake, async {
            glommio::timer::sleep(s.timeout).await;
            Err(StoreError::Timeout(s.timeout))
        })
        .await?;
        Ok(stream)
    }

    /// Serves one connection until it breaks; returns why.
    ///
    /// One loop does everything, so that replies keep being read while
    /// requests keep coming: it writes the queued batch once it is full or
    /// its first request has waited `flush`, and otherwise waits for
    /// whichever comes first of bytes to read, a batch to start or fill, the
    /// flush time, or the oldest request falling overdue.
    async fn serve(&self, stream: &mut TcpStream) -> StoreError {
        enum Event {
            Read(std::io::Result<usize>),
            Work,
            Timer,
        }
        let mut buf = vec![0u8; 16 * 1024];
        let mut out = Vec::new();
        loop {
            let queued = self.pipeline.borrow().queued();
            let waited = self.batch_started.get().elapsed();
            if queued > 0 && (queued >= self.settings.batch || waited >= self.settings.flush) {
                out.clear();
                let n = self.pipeline.borrow_mut().take_output(&mut out);
                self.counters().store_batch(n as u64);
                if let Err(e) = stream.write_all(&out).await {
                    return StoreError::Unreachable(e.to_string());
                }
                if out.capacity() > 64 * 1024 {
                    out = Vec::new();
                }
                continue;
            }
            let flush_in = (queued > 0).then(|| self.settings.flush.saturating_sub(waited));
            let wake_in = match (flush_in, self.overdue_in()) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let event = futures_lite::future::or(
                async { Event::Read(stream.read(&mut buf).await) },
                futures_lite::future::or(
                    async {
                        self.work.wait().await;
                        Event::Work
                    },
                    async {
                        match wake_in {
                            Some(d) => glommio::timer::sleep(d).await,
                            None => std::future::pending::<()>().await,
                        }
                        Event::Timer
                    },
                ),
            )
            .await;
            match event {
                Event::Read(Ok(0)) => return StoreError::Unreachable("closed by redis".into()),
                Event::Read(Err(e)) => return StoreError::Unreachable(e.to_string()),
                Event::Read(Ok(n)) => {
                    let done = match self.pipeline.borrow_mut().feed(&buf[..n]) {
                        Ok(done) => done,
                        Err(e) => return StoreError::Reply(e),
                    };
                    self.deliver(done);
                }
                Event::Work | Event::Timer => {}
            }
            if self.overdue_in() == Some(Duration::ZERO) {
                return StoreError::Timeout(self.settings.timeout);
            }
        }
    }

    /// Time until the oldest waiting request is overdue (zero if it is).
    fn overdue_in(&self) -> Option<Duration> {
        let p = self.pipeline.borrow();
        let oldest = p.oldest()?;
        Some((oldest.queued_at + self.settings.timeout).saturating_duration_since(Instant::now()))
    }

    fn deliver(&self, done: Vec<(Rc<Waiter>, Reply)>) {
        let now = Instant::now();
        {
            let mut h = self.round_trips.borrow_mut();
            for (w, _) in &done {
                let us = now.duration_since(w.queued_at).as_micros().max(1) as u64;
                let _ = h.record(us.min(60_000_000));
            }
        }
        self.counters()
            .set_store_depth(self.pipeline.borrow().pending() as u64);
        for (w, reply) in done {
            let reply = reply.map_err(|e| self.failed(StoreError::Reply(e)));
            w.complete(reply);
        }
    }
}
