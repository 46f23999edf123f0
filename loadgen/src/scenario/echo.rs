//! `echo`: protocol-neutral round trips against `/echo` or any WebSocket echo
//! server (so the same numbers can be taken from other servers).
//!
//! Each connection is one flow to itself: it sends text probes
//! `{"t":..,"s":..,"p":".."}` and expects them back. Open loop (`--rate M`):
//! the core sends its share of M per second round-robin over its
//! connections, latency from the intended send time. Closed loop (`--rate 0`):
//! each connection keeps `--window` probes in flight, the way saturation
//! throughput is measured; latency is then from the actual send.

use super::connect::count_end;
use super::{
    close_all, drain, open_plain, pause_until, ramp, record_arrival, record_lag, record_send,
};
use crate::accounting::FlowRx;
use crate::cli::EchoArgs;
use crate::clock;
use crate::pacer::Pacer;
use crate::plan::units_of_core;
use crate::probe::{padding, Probe, ProbeIn};
use crate::runtime::CoreCtx;
use crate::ws::{Conn, Next};
use std::cell::{Cell, RefCell};
use std::rc::Rc;

#[derive(Default)]
struct Flow {
    sent: u64,
    rx: FlowRx,
}

struct EchoCore {
    ctx: Rc<CoreCtx>,
    conns: RefCell<Vec<Option<Rc<Conn>>>>,
    flows: RefCell<Vec<Flow>>,
    pad: String,
    /// Closed loop: answer each echo with the next probe while true.
    refill: Cell<bool>,
    /// Sent but not yet settled, for the drain.
    outstanding: Cell<u64>,
    open: Cell<usize>,
}

impl EchoCore {
    /// Sends connection `i`'s next probe, intended at `t`.
    fn send(&self, i: usize, t: u64) -> bool {
        let conn = self.conns.borrow()[i].clone();
        let seq = self.flows.borrow()[i].sent;
        let r = conn.as_ref().map(|c| {
            c.send_text_with(|buf| {
                let p = Probe {
                    t,
                    s: seq,
                    p: self.pad.as_str().into(),
                };
                serde_json::to_writer(buf, &p).expect("probe serializes");
            })
        });
        let sent = record_send(&self.ctx, r);
        if sent {
            self.flows.borrow_mut()[i].sent += 1;
            self.outstanding.set(self.outstanding.get() + 1);
        }
        sent
    }

    fn on_echo(&self, i: usize, payload: &[u8]) -> Next {
        let now = clock::now_ns();
        let Ok(p) = serde_json::from_slice::<ProbeIn>(payload) else {
            self.ctx.stats().error("unexpected_message");
            return Next::Continue;
        };
        let arrival = {
            let mut flows = self.flows.borrow_mut();
            let f = &mut flows[i];
            if p.s >= f.sent {
                drop(flows);
                self.ctx.stats().error("unexpected_message");
                return Next::Continue;
            }
            f.rx.on_receive(p.s)
        };
        if record_arrival(&self.ctx, arrival, p.t, now) {
            self.outstanding.set(self.outstanding.get() - 1);
            if self.refill.get() {
                self.send(i, now);
            }
        }
        Next::Continue
    }
}

/// Runs the `echo` scenario on this core.
pub async fn run(ctx: &Rc<CoreCtx>, args: &EchoArgs) {
    let plan = &ctx.plan;
    let units = units_of_core(
        &plan.scenario,
        ctx.global_core as u64,
        plan.total_cores() as u64,
    );
    let n = (units.end - units.start) as usize;
    let core = Rc::new(EchoCore {
        ctx: Rc::clone(ctx),
        conns: RefCell::new(vec![None; n]),
        flows: RefCell::new((0..n).map(|_| Flow::default()).collect()),
        pad: padding(args.payload_bytes),
        refill: Cell::new(false),
        outstanding: Cell::new(0),
        open: Cell::new(0),
    });
    let conns = ramp(ctx, n, |i| {
        let core = Rc::clone(&core);
        let idx = units.start + i as u64;
        async move {
            let ctx = &core.ctx;
            let conn = open_plain(ctx, ctx.plan.target_for(idx), ctx.plan.source_for(idx)).await?;
            core.conns.borrow_mut()[i] = Some(Rc::clone(&conn));
            core.open.set(core.open.get() + 1);
            let (c2, conn2) = (Rc::clone(&core), Rc::clone(&conn));
            glommio::spawn_local(async move {
                let end = conn2.run(|payload, _| c2.on_echo(i, payload)).await;
                c2.open.set(c2.open.get() - 1);
                c2.conns.borrow_mut()[i] = None;
                count_end(&c2.ctx, &conn2, &end);
            })
            .detach();
            Some(conn)
        }
    })
    .await;
    let conns: Vec<Rc<Conn>> = conns.into_iter().flatten().collect();
    ctx.ready();
    if let Some(go) = ctx.wait_go().await {
        let end = go + plan.duration().as_nanos() as u64;
        if args.rate > 0.0 && n > 0 {
            let share = n as f64 / args.connections as f64;
            let mut pacer = Pacer::new(go, end, args.rate * share);
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
        } else if n > 0 {
            core.refill.set(true);
            let now = clock::now_ns();
            for i in 0..n {
                for _ in 0..args.window.max(1) {
                    core.send(i, now);
                }
            }
            ctx.sleep_until(end).await;
            core.refill.set(false);
        }
    }
    core.refill.set(false);
    drain(ctx, plan.drain_timeout(), || core.outstanding.get() == 0).await;
    {
        let flows = core.flows.borrow();
        let mut s = ctx.stats();
        for f in flows.iter() {
            s.counters.lost += f.rx.lost(f.sent);
            s.counters.expected += f.sent;
        }
    }
    close_all(&conns, || core.open.get()).await;
}
