//! `connect`: ramp to N connections at R per second, hold them for
//! `--duration`, close them. Measures connect latency (TCP connect start to
//! welcome; to the 101 with `--raw`), failures by cause, and connections the
//! server dropped during the hold.
//!
//! With `--control` each connection asks the control plane first and
//! follows one 307; the hold does not follow moves (a moved connection
//! counts as `dropped`).
//!
//! Idle connections are the point here: each holds a read loop parked on
//! readiness and no buffers (see [`crate::ws::conn`]).

use super::routed::{Hop, Routing};
use super::{close_all, open_plain, open_session, ramp};
use crate::cli::ConnectArgs;
use crate::plan::units_of_core;
use crate::probe::UserNames;
use crate::runtime::CoreCtx;
use crate::ws::{Conn, Ended, Next};
use std::cell::Cell;
use std::rc::Rc;

/// Runs the `connect` scenario on this core.
pub async fn run(ctx: &Rc<CoreCtx>, args: &ConnectArgs) {
    let plan = &ctx.plan;
    let units = units_of_core(
        &plan.scenario,
        ctx.global_core as u64,
        plan.total_cores() as u64,
    );
    let names = Rc::new(UserNames::new(&plan.run_id));
    let open = Rc::new(Cell::new(0usize));
    let raw = args.raw;
    let routing = Rc::new(plan.control.clone().map(Routing::new));
    let conns = ramp(ctx, (units.end - units.start) as usize, |i| {
        let (ctx, names, open) = (Rc::clone(ctx), Rc::clone(&names), Rc::clone(&open));
        let routing = Rc::clone(&routing);
        let idx = units.start + i as u64;
        async move {
            let source = ctx.plan.source_for(idx);
            let conn = if let Some(routing) = routing.as_ref() {
                // Ask the control plane, connect, follow one 307.
                let (name, hop) = (names.name(idx), Hop::default());
                let mut steps = Vec::new();
                routing
                    .try_once(&ctx, &name, None, hop, source, false, &mut steps)
                    .await
                    .session?
                    .0
            } else if raw {
                let target = ctx.plan.target_for(idx);
                open_plain(&ctx, target, source).await?
            } else {
                let target = ctx.plan.target_for(idx);
                open_session(&ctx, target, &names.name(idx), None, source, false)
                    .await?
                    .0
            };
            open.set(open.get() + 1);
            spawn_idle_reader(&ctx, &conn, &open);
            Some(conn)
        }
    })
    .await;
    let conns: Vec<Rc<Conn>> = conns.into_iter().flatten().collect();
    ctx.ready();
    if let Some(go) = ctx.wait_go().await {
        let end = go + plan.duration().as_nanos() as u64;
        ctx.sleep_until(end).await;
    }
    close_all(&conns, || open.get()).await;
}

/// Reads (and ignores) whatever the server sends until the connection ends;
/// counts the end as `closed` if loadgen closed it, else as `dropped`.
fn spawn_idle_reader(ctx: &Rc<CoreCtx>, conn: &Rc<Conn>, open: &Rc<Cell<usize>>) {
    let (ctx, conn, open) = (Rc::clone(ctx), Rc::clone(conn), Rc::clone(open));
    glommio::spawn_local(async move {
        let end = conn.run(|_, _| Next::Continue).await;
        open.set(open.get() - 1);
        count_end(&ctx, &conn, &end);
    })
    .detach();
}

/// Counts how a connection ended: `closed` if loadgen asked for it,
/// otherwise `dropped` plus an error `dropped_<cause>`.
pub fn count_end(ctx: &CoreCtx, conn: &Conn, end: &Ended) {
    let mut s = ctx.stats();
    if conn.closed_by_us() {
        s.counters.closed += 1;
    } else {
        s.counters.dropped += 1;
        s.error(&format!("dropped_{}", end.cause()));
    }
}
