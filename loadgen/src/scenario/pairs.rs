//! `direct` and `storm`: users in pairs sending each other direct messages.
//!
//! User `2k` and `2k+1` form a pair; each sends to the other, so a pair is
//! two flows, each with its own sequence. Both users of a pair live on the
//! same core and connect to the same target (standalone nodes do not relay
//! to each other), so a flow's sender counter and receiver [`FlowRx`] are
//! plain data of one core and the accounting is exact.
//!
//! Sending is open loop at the core's share of `--rate` (round-robin over its
//! users, latency from the intended time), or closed loop with `--rate 0`
//! (each delivery triggers the flow's next message).
//!
//! A user whose connection drops without loadgen asking (a drain's 1012, a
//! reset) reconnects with the contract's backoff and its latest resume token,
//! as a real client would; with `--failover-target` its reconnects go to
//! the failover target from then on (nodes sharing one Redis). With
//! `--control` every connect goes through [`super::routed`] instead: a
//! user asks the control plane, goes straight to a `reconnect`'s `wsUrl`,
//! follows a 307 once, and after a failure asks again with
//! `unreachable=NODE`; each move is kept for the event log
//! ([`crate::events`]). `storm` adds waves that disconnect a fraction of
//! the users on purpose and reconnect them the same way (`--resume` decides
//! whether they present their token).

use super::connect::count_end;
use super::routed::Routing;
use super::{
    close_all, drain, open_session, pause_until, ramp, record_arrival, record_lag, record_send,
    server_envelope,
};
use crate::accounting::{FlowRx, SeqSet};
use crate::backoff::Backoff;
use crate::cli::{DirectArgs, StormArgs};
use crate::clock;
use crate::events::Move;
use crate::pacer::Pacer;
use crate::plan::units_of_core;
use crate::probe::{message_id, padding, parse_message_id, probe_in, write_send, Probe, UserNames};
use crate::runtime::CoreCtx;
use crate::ws::session::Welcome;
use crate::ws::{Conn, Next};
use rand::{rngs::SmallRng, SeedableRng};
use serde_json::value::RawValue;
use shardcast::protocol::{ErrorCode, ServerEnvelope};
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

#[derive(Default)]
struct User {
    conn: Option<Rc<Conn>>,
    /// Bumped on every new connection, so a stale read loop ending late does
    /// not clear its successor.
    epoch: u32,
    token: Option<String>,
    retry_after_ms: Option<u64>,
    reconnecting: bool,
    /// A connection of this user ended without loadgen asking: reconnect
    /// to the failover target (if any) from now on.
    failed_over: bool,
    /// As sender: messages sent to the partner (= next sequence number).
    sent: u64,
    /// As sender: sequence numbers the server acked.
    acked: SeqSet,
    /// As receiver: the flow from the partner.
    rx: FlowRx,
    /// `--control` only: where the user is and goes.
    route: Option<Box<moves::Route>>,
}

#[path = "pairs_moves.rs"]
mod moves;

struct PairCore {
    ctx: Rc<CoreCtx>,
    names: UserNames,
    /// Global index of local user 0 (always even).
    first: u64,
    users: RefCell<Vec<User>>,
    pad: String,
    refill: Cell<bool>,
    outstanding: Cell<u64>,
    open: Cell<usize>,
    /// Reconnects allowed (false once the run is over).
    accepting: Cell<bool>,
    backoff: Backoff,
    rng: RefCell<SmallRng>,
    /// `--control`: the control plane, and the moves of this core's users.
    routing: Option<Routing>,
    moves: RefCell<Vec<Move>>,
}

impl PairCore {
    fn target_and_source(&self, u: usize) -> (&crate::target::Target, Option<std::net::IpAddr>) {
        let global = self.first + u as u64;
        let plan = &self.ctx.plan;
        let failover = self.users.borrow()[u].failed_over;
        if plan.ring.is_some() {
            if let Some(target) = plan.owner_of(&self.names.name(global)) {
                return (target, plan.source_for(global));
            }
        }
        let target = failover
            .then(|| plan.failover_for(global / 2))
            .flatten()
            .unwrap_or_else(|| plan.target_for(global / 2));
        (target, plan.source_for(global))
    }

    fn install(self: &Rc<Self>, u: usize, conn: Rc<Conn>, welcome: Welcome) {
        let epoch = {
            let mut users = self.users.borrow_mut();
            let user = &mut users[u];
            user.conn = Some(Rc::clone(&conn));
            user.epoch += 1;
            if welcome.resume_token.is_some() {
                user.token = welcome.resume_token;
            }
            if let Some(route) = user.route.as_deref_mut() {
                route.node = welcome.node;
                route.saw_reconnect = false;
                route.next_url = None;
                route.unreachable = None;
            }
            user.epoch
        };
        self.open.set(self.open.get() + 1);
        let core = Rc::clone(self);
        glommio::spawn_local(async move {
            let end = conn.run(|payload, _| core.on_message(u, payload)).await;
            core.open.set(core.open.get() - 1);
            {
                let mut users = core.users.borrow_mut();
                if users[u].epoch == epoch {
                    users[u].conn = None;
                }
            }
            count_end(&core.ctx, &conn, &end);
            if !conn.closed_by_us() {
                core.users.borrow_mut()[u].failed_over = true;
                if core.accepting.get() {
                    core.start_move(u, &end);
                }
            }
            if !conn.closed_by_us() && core.accepting.get() {
                core.spawn_reconnect(u, true, clock::now_ns());
            }
        })
        .detach();
    }

    /// Sends user `u`'s next message to its partner, intended at `t`.
    fn send(&self, u: usize, t: u64) -> bool {
        let (conn, seq) = {
            let users = self.users.borrow();
            (users[u].conn.clone(), users[u].sent)
        };
        let r = conn.map(|c| {
            let to = self.names.name(self.first + (u ^ 1) as u64);
            let id = message_id(self.first + u as u64, seq);
            let probe = Probe {
                t,
                s: seq,
                p: self.pad.as_str().into(),
            };
            c.send_text_with(|buf| write_send(buf, &to, &id, &probe))
        });
        let sent = record_send(&self.ctx, r);
        if sent {
            self.users.borrow_mut()[u].sent += 1;
            self.outstanding.set(self.outstanding.get() + 1);
        }
        sent
    }

    fn on_message(&self, r: usize, payload: &[u8]) -> Next {
        let now = clock::now_ns();
        let Some(env) = server_envelope(&self.ctx, payload) else {
            return Next::Continue;
        };
        match env {
            ServerEnvelope::Direct { from, id, data, .. } => self.on_msg(r, &from, &id, data, now),
            ServerEnvelope::Room { .. } => self.ctx.stats().error("unexpected_envelope"),
            ServerEnvelope::Ack { id } => self.on_ack(r, &id),
            ServerEnvelope::Error { code, id, .. } => self.on_error(code, id.as_deref()),
            ServerEnvelope::Reconnect {
                resume_token,
                retry_after_ms,
                ws_url,
            } => {
                let mut users = self.users.borrow_mut();
                users[r].token = Some(resume_token.into_owned());
                users[r].retry_after_ms = Some(retry_after_ms);
                if let Some(route) = users[r].route.as_deref_mut() {
                    route.saw_reconnect = true;
                    route.next_url = ws_url.map(|u| u.into_owned());
                }
            }
            ServerEnvelope::Welcome { .. } => self.ctx.stats().error("unexpected_envelope"),
        }
        Next::Continue
    }

    fn on_msg(&self, r: usize, from: &str, id: &str, data: &RawValue, now: u64) {
        let sender = r ^ 1;
        let partner = self.first + sender as u64;
        let from = self.names.index(from);
        let id = parse_message_id(id);
        let (Some(probe), true) = (probe_in(data), from == Some(partner)) else {
            self.ctx.stats().error("unexpected_message");
            return;
        };
        if id != Some((partner, probe.s)) {
            self.ctx.stats().error("id_mismatch");
            return;
        }
        let arrival = {
            let mut users = self.users.borrow_mut();
            if probe.s >= users[sender].sent {
                drop(users);
                self.ctx.stats().error("unexpected_message");
                return;
            }
            users[r].rx.on_receive(probe.s)
        };
        if record_arrival(&self.ctx, arrival, probe.t, now) {
            self.outstanding.set(self.outstanding.get() - 1);
            if self.refill.get() {
                self.send(sender, now);
            }
        }
    }

    /// Records that the server acked user `u`'s message `id` (stored, in
    /// the Redis store's case: it must be delivered).
    fn on_ack(&self, u: usize, id: &str) {
        self.ctx.stats().counters.acked += 1;
        let mut users = self.users.borrow_mut();
        match parse_message_id(id) {
            Some((sender, seq)) if sender == self.first + u as u64 && seq < users[u].sent => {
                users[u].acked.insert(seq);
            }
            _ => {
                drop(users);
                self.ctx.stats().error("unexpected_ack");
            }
        }
    }

    fn on_error(&self, code: ErrorCode, id: Option<&str>) {
        self.ctx.stats().error(&format!("server_{code}"));
        let Some((sender, seq)) = id.and_then(parse_message_id) else {
            return;
        };
        let Some(su) = sender.checked_sub(self.first).map(|v| v as usize) else {
            return;
        };
        let mut users = self.users.borrow_mut();
        if su >= users.len() || seq >= users[su].sent {
            return;
        }
        if users[su ^ 1].rx.on_reject(seq) {
            drop(users);
            self.ctx.stats().counters.rejected += 1;
            self.outstanding.set(self.outstanding.get() - 1);
        }
    }

    /// Reconnects user `u` with backoff until it succeeds or the run ends.
    fn spawn_reconnect(self: &Rc<Self>, u: usize, resume: bool, since_ns: u64) {
        {
            let mut users = self.users.borrow_mut();
            if users[u].reconnecting {
                return;
            }
            users[u].reconnecting = true;
        }
        let core = Rc::clone(self);
        glommio::spawn_local(async move {
            let mut k = 0u32;
            while core.accepting.get() {
                // A draining node's `retryAfterMs` is its T_0 (docs/protocol.md).
                let hint = core.users.borrow()[u].retry_after_ms;
                let backoff = match hint {
                    Some(ms) => Backoff {
                        base: Duration::from_millis(ms),
                        ..core.backoff
                    },
                    None => core.backoff,
                };
                let delay = backoff.delay(k, &mut *core.rng.borrow_mut());
                glommio::timer::sleep(delay).await;
                if !core.accepting.get() {
                    break;
                }
                let token = if resume {
                    core.users.borrow()[u].token.clone()
                } else {
                    None
                };
                let name = core.names.name(core.first + u as u64);
                let session = if core.routing.is_some() {
                    core.try_routed(u, &name, token.as_deref(), true).await
                } else {
                    let (target, source) = core.target_and_source(u);
                    open_session(&core.ctx, target, &name, token.as_deref(), source, true).await
                };
                if let Some((conn, w)) = session {
                    if !core.accepting.get() {
                        conn.close(1000); // the run ended while we connected
                        break;
                    }
                    core.ctx
                        .stats()
                        .recovery_latency
                        .record(clock::elapsed_us(since_ns, clock::now_ns()));
                    core.users.borrow_mut()[u].retry_after_ms = None;
                    core.end_move(u, &w);
                    core.install(u, conn, w);
                    break;
                }
                k += 1;
            }
            core.users.borrow_mut()[u].reconnecting = false;
        })
        .detach();
    }

    /// One storm wave: disconnect `fraction` of this core's users.
    fn wave(self: &Rc<Self>, fraction: f64, resume: bool, abrupt: bool) {
        let n = self.users.borrow().len();
        let count = ((n as f64 * fraction).round() as usize).min(n);
        let picked = rand::seq::index::sample(&mut *self.rng.borrow_mut(), n, count);
        let now = clock::now_ns();
        for u in picked {
            let Some(conn) = self.users.borrow_mut()[u].conn.take() else {
                continue; // still reconnecting from an earlier wave
            };
            self.ctx.stats().counters.disconnects += 1;
            if abrupt {
                conn.abort();
            } else {
                conn.close(1000);
            }
            self.spawn_reconnect(u, resume, now);
        }
    }

    fn all_conns(&self) -> Vec<Rc<Conn>> {
        self.users
            .borrow()
            .iter()
            .filter_map(|u| u.conn.clone())
            .collect()
    }

    fn account(&self) {
        let users = self.users.borrow();
        let mut s = self.ctx.stats();
        for (u, user) in users.iter().enumerate() {
            let rx = &users[u ^ 1].rx;
            let lost = rx.lost(user.sent);
            let lost_acked = rx.lost_acked(&user.acked, user.sent);
            s.counters.lost += lost;
            s.counters.lost_acked += lost_acked;
            s.counters.lost_unacked += lost - lost_acked;
            s.counters.expected += user.sent;
        }
    }
}

/// Connects this core's pairs and returns the core state.
async fn setup(ctx: &Rc<CoreCtx>, payload_bytes: usize, backoff: Backoff) -> Rc<PairCore> {
    let plan = &ctx.plan;
    let pairs = units_of_core(
        &plan.scenario,
        ctx.global_core as u64,
        plan.total_cores() as u64,
    );
    let n = 2 * (pairs.end - pairs.start) as usize;
    let routing = plan.control.clone().map(Routing::new);
    let core = Rc::new(PairCore {
        ctx: Rc::clone(ctx),
        names: UserNames::new(&plan.run_id),
        first: 2 * pairs.start,
        users: RefCell::new(
            (0..n)
                .map(|_| User {
                    route: routing.is_some().then(Box::default),
                    ..User::default()
                })
                .collect(),
        ),
        pad: padding(payload_bytes),
        refill: Cell::new(false),
        outstanding: Cell::new(0),
        open: Cell::new(0),
        accepting: Cell::new(true),
        backoff,
        rng: RefCell::new(SmallRng::seed_from_u64(
            ctx.global_core as u64 ^ clock::now_ns(),
        )),
        routing,
        moves: RefCell::new(Vec::new()),
    });
    ramp(ctx, n, |u| {
        let core = Rc::clone(&core);
        async move {
            let name = core.names.name(core.first + u as u64);
            let (conn, w) = if core.routing.is_some() {
                let Some(session) = core.try_routed(u, &name, None, false).await else {
                    // A client keeps trying (the cluster may be changing
                    // under it): with backoff, through the control plane,
                    // counted as reconnects from here on.
                    core.spawn_reconnect(u, false, clock::now_ns());
                    return None;
                };
                session
            } else {
                let (target, source) = core.target_and_source(u);
                open_session(&core.ctx, target, &name, None, source, false).await?
            };
            core.install(u, conn, w);
            Some(())
        }
    })
    .await;
    core
}

/// Sends for the measured phase: open loop at `rate × share`, or closed loop.
async fn generate(
    core: &Rc<PairCore>,
    go: u64,
    end: u64,
    rate: f64,
    total_users: u64,
    window: u32,
) {
    let ctx = &core.ctx;
    let n = core.users.borrow().len();
    if n == 0 {
        ctx.sleep_until(end).await;
        return;
    }
    if rate > 0.0 {
        let mut pacer = Pacer::new(go, end, rate * n as f64 / total_users as f64);
        let mut next = 0usize;
        loop {
            while let Some(t) = pacer.pop_due(clock::now_ns()) {
                if core.send(next, t) {
                    record_lag(ctx, t);
                }
                next = (next + 1) % n;
            }
            match pacer.next_due() {
                Some(t) if pause_until(ctx, t).await => {}
                _ => break,
            }
        }
    } else {
        core.refill.set(true);
        let now = clock::now_ns();
        for u in 0..n {
            for _ in 0..window.max(1) {
                core.send(u, now);
            }
        }
        ctx.sleep_until(end).await;
        core.refill.set(false);
    }
}

async fn finish(core: &Rc<PairCore>) {
    let ctx = &core.ctx;
    core.refill.set(false);
    drain(ctx, ctx.plan.drain_timeout(), || {
        core.outstanding.get() == 0
    })
    .await;
    core.accepting.set(false);
    core.account();
    core.write_moves();
    close_all(&core.all_conns(), || core.open.get()).await;
}

/// Runs the `direct` scenario on this core.
pub async fn run_direct(ctx: &Rc<CoreCtx>, args: &DirectArgs) {
    let core = setup(ctx, args.payload_bytes, args.backoff.backoff()).await;
    ctx.ready();
    if let Some(go) = ctx.wait_go().await {
        let end = go + ctx.plan.duration().as_nanos() as u64;
        generate(&core, go, end, args.rate, args.users, args.window).await;
    }
    finish(&core).await;
}

/// Runs the `storm` scenario on this core.
pub async fn run_storm(ctx: &Rc<CoreCtx>, args: &StormArgs) {
    let core = setup(ctx, args.payload_bytes, args.backoff.backoff()).await;
    ctx.ready();
    if let Some(go) = ctx.wait_go().await {
        let dur = ctx.plan.duration().as_nanos() as u64;
        let end = go + dur;
        let waves = {
            let (core, args) = (Rc::clone(&core), args.clone());
            glommio::spawn_local(async move {
                for w in 0..args.waves as u64 {
                    let at = go + dur * (w + 1) / (args.waves as u64 + 1);
                    if !core.ctx.sleep_until(at).await {
                        break;
                    }
                    core.wave(args.wave_fraction, args.resume, args.abrupt);
                }
            })
        };
        generate(&core, go, end, args.rate, args.users, 1).await;
        waves.await;
    }
    finish(&core).await;
}
