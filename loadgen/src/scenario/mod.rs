//! Scenarios: what one core does during a run, and the steps they share.
//!
//! Every scenario runs the same phases on every core:
//!
//! 1. **setup**: open this core's connections, paced open-loop at its share
//!    of `--connect-rate`; then report `ready`;
//! 2. **measure**: from the coordinator's go time for `--duration` (or until
//!    a stop), generate the scenario's load;
//! 3. **drain**: stop sending, wait up to `--drain-timeout` for what is in
//!    flight;
//! 4. **account**: compute `lost`/`expected` exactly, close connections; the
//!    runtime then ships the final delta.
//!
//! Invariant: all state of a scenario lives on its core (`Rc`/`RefCell`),
//! and every unit that needs exact accounting (a pair, a room, an echo
//! connection) is entirely on one core.

pub mod connect;
pub mod echo;
pub mod pairs;
pub mod rooms;
pub mod routed;

use crate::accounting::Arrival;
use crate::cli::ScenarioCmd;
use crate::clock;
use crate::pacer::Pacer;
use crate::runtime::CoreCtx;
use crate::target::Target;
use crate::ws::session::{self, Welcome};
use crate::ws::{self, Conn, SendError};
use shardcast::protocol::ServerEnvelope;
use std::future::Future;
use std::net::IpAddr;
use std::rc::Rc;
use std::time::Duration;

/// Runs the plan's scenario on this core (all phases).
pub async fn run_core(ctx: &Rc<CoreCtx>) {
    match &ctx.plan.scenario {
        ScenarioCmd::Connect(a) => connect::run(ctx, a).await,
        ScenarioCmd::Echo(a) => echo::run(ctx, a).await,
        ScenarioCmd::Direct(a) => pairs::run_direct(ctx, a).await,
        ScenarioCmd::Storm(a) => pairs::run_storm(ctx, a).await,
        ScenarioCmd::Rooms(a) => rooms::run(ctx, a).await,
    }
}

/// Runs `open(i)` for `i in 0..n`, started open-loop at this core's share of
/// `--connect-rate`, and collects the results in order. Stops starting new
/// attempts on a stop request.
pub async fn ramp<T, F, Fut>(ctx: &CoreCtx, n: usize, open: F) -> Vec<Option<T>>
where
    T: 'static,
    F: Fn(usize) -> Fut,
    Fut: Future<Output = Option<T>> + 'static,
{
    let rate = ctx.plan.common().connect_rate / ctx.plan.total_cores() as f64;
    let mut pacer = Pacer::new(clock::now_ns(), u64::MAX, rate.max(1e-3));
    let mut tasks = Vec::with_capacity(n);
    'outer: while tasks.len() < n {
        while pacer.pop_due(clock::now_ns()).is_some() {
            tasks.push(glommio::spawn_local(open(tasks.len())));
            if tasks.len() == n {
                break 'outer;
            }
        }
        let next = pacer.next_due().unwrap_or(u64::MAX);
        if !pause_until(ctx, next).await {
            break;
        }
    }
    let mut out = Vec::with_capacity(n);
    for t in tasks {
        out.push(t.await);
    }
    out.resize_with(n, || None);
    out
}

/// Sleeps until `t_ns` but at least `--tick-us`, so that high rates are
/// served in small batches instead of one timer per message. The intended
/// times are kept, so batching never hides latency: a longer tick costs
/// measured latency (up to one tick) and saves CPU on both sides. False on
/// stop.
pub async fn pause_until(ctx: &CoreCtx, t_ns: u64) -> bool {
    let tick_ns = ctx.plan.common().tick_us.max(1) * 1_000;
    let target = t_ns.max(clock::now_ns() + tick_ns);
    ctx.sleep_until(target).await
}

/// Parses a server frame; one that is not a protocol v1 envelope is
/// counted as an error under its code (`bad_json`, `bad_envelope`, …).
pub fn server_envelope<'a>(ctx: &CoreCtx, payload: &'a [u8]) -> Option<ServerEnvelope<'a>> {
    ServerEnvelope::parse(payload)
        .map_err(|e| ctx.stats().error(e.code.as_str()))
        .ok()
}

/// Records how late an open-loop send left compared with its intended time
/// (`send_lag_us`): if this grows, loadgen itself is the bottleneck.
pub fn record_lag(ctx: &CoreCtx, intended_ns: u64) {
    ctx.stats()
        .send_lag
        .record(clock::elapsed_us(intended_ns, clock::now_ns()));
}

/// Counts one message arrival as the flow's accounting classified it:
/// duplicates are counted apart; anything else is received (and reordered
/// when out of sequence) with its latency from the intended send time
/// `sent_ns`. Returns false for a duplicate.
pub fn record_arrival(ctx: &CoreCtx, arrival: Arrival, sent_ns: u64, now_ns: u64) -> bool {
    let mut s = ctx.stats();
    if arrival == Arrival::Duplicate {
        s.counters.duplicated += 1;
        return false;
    }
    s.counters.received += 1;
    s.counters.reordered += u64::from(arrival == Arrival::Reordered);
    s.latency.record(clock::elapsed_us(sent_ns, now_ns));
    true
}

/// Opens a protocol v1 session for `user`, counting the attempt, its
/// latency and its failure cause. A reconnect (`reconnect = true`) is
/// counted under `reconnects`/`reconnect_failed` and kept out of the connect
/// latency histogram, which describes initial connects only.
pub async fn open_session(
    ctx: &CoreCtx,
    target: &Target,
    user: &str,
    resume: Option<&str>,
    source: Option<IpAddr>,
    reconnect: bool,
) -> Option<(Rc<Conn>, Welcome)> {
    let jwt = ctx.plan.jwt_for(user);
    open_counted(ctx, target, user, resume, jwt.as_deref(), source, reconnect)
        .await
        .ok()
}

/// [`open_session`] with the JWT given, returning the error. A redirect
/// (307 `wrong_node`) is not a failure: the caller follows it; it is
/// counted under `errors` as `redirected`.
pub async fn open_counted(
    ctx: &CoreCtx,
    target: &Target,
    user: &str,
    resume: Option<&str>,
    jwt: Option<&str>,
    source: Option<IpAddr>,
    reconnect: bool,
) -> Result<(Rc<Conn>, Welcome), ws::ConnectError> {
    let t0 = clock::now_ns();
    let timeout = ctx.plan.connect_timeout();
    let r = session::open(target, user, resume, jwt, source, timeout).await;
    if let Err(ws::ConnectError::Handshake(ws::handshake::HandshakeError::Redirect { .. })) = &r {
        ctx.stats().error("redirected");
        return r;
    }
    if !reconnect {
        ctx.stats().counters.attempted += 1;
        return record_connect(ctx, t0, r);
    }
    let mut s = ctx.stats();
    match &r {
        Ok(_) => s.counters.reconnects += 1,
        Err(e) => {
            s.counters.reconnect_failed += 1;
            s.error(&format!("reconnect_{}", e.cause()));
        }
    }
    r
}

/// Counts one scheduled send: `sent` if the connection took it, otherwise
/// `skipped` (sender offline, or `client_backlog_full`). True if sent.
pub fn record_send(ctx: &CoreCtx, r: Option<Result<(), SendError>>) -> bool {
    let mut s = ctx.stats();
    match r {
        Some(Ok(())) => {
            s.counters.sent += 1;
            true
        }
        Some(Err(SendError::BacklogFull)) => {
            s.counters.skipped += 1;
            s.error("client_backlog_full");
            false
        }
        Some(Err(SendError::Closed)) | None => {
            s.counters.skipped += 1;
            false
        }
    }
}

/// Opens a plain WebSocket connection (no user, no welcome), counting as
/// [`open_session`] does.
pub async fn open_plain(
    ctx: &CoreCtx,
    target: &Target,
    source: Option<IpAddr>,
) -> Option<Rc<Conn>> {
    ctx.stats().counters.attempted += 1;
    let t0 = clock::now_ns();
    let r = ws::connect(target, &target.path, source, ctx.plan.connect_timeout()).await;
    record_connect(ctx, t0, r).ok()
}

fn record_connect<T>(
    ctx: &CoreCtx,
    t0: u64,
    r: Result<T, ws::ConnectError>,
) -> Result<T, ws::ConnectError> {
    let mut s = ctx.stats();
    match &r {
        Ok(_) => {
            s.counters.established += 1;
            s.connect_latency
                .record(clock::elapsed_us(t0, clock::now_ns()));
        }
        Err(e) => {
            s.counters.failed += 1;
            s.error(e.cause());
        }
    }
    r
}

/// Waits until `done()` or `timeout` (or a second stop request window of
/// one second when stopping early). Polls every 10 ms.
pub async fn drain(ctx: &CoreCtx, timeout: Duration, done: impl Fn() -> bool) {
    let timeout = if ctx.stopping() {
        timeout.min(Duration::from_secs(1))
    } else {
        timeout
    };
    let deadline = clock::now_ns() + timeout.as_nanos() as u64;
    while !done() && clock::now_ns() < deadline {
        glommio::timer::sleep(Duration::from_millis(10)).await;
    }
}

/// Closes `conns` with 1000 and waits (up to 2 s) for their read loops to see
/// the server's close, so the server is not left with half-closed sockets.
pub async fn close_all(conns: &[Rc<Conn>], still_open: impl Fn() -> usize) {
    for c in conns {
        c.close(1000);
    }
    let deadline = clock::now_ns() + 2_000_000_000;
    while still_open() > 0 && clock::now_ns() < deadline {
        glommio::timer::sleep(Duration::from_millis(10)).await;
    }
}
