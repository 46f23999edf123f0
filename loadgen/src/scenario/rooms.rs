//! `rooms`: R rooms, each with S subscribers and P publishers (separate
//! connections). Publishers publish at the core's share of `--rate`, open
//! loop; every subscriber of the room must get every publish.
//!
//! Accounting is per *delivery* (publish × subscriber): each subscriber keeps
//! one [`FlowRx`] per publisher of its room, so `expected = publishes × S`,
//! and `received`, `lost`, `duplicated`, `reordered` and `rejected` count
//! deliveries. `sent` counts publishes. A whole room (its publishers and
//! subscribers) lives on one core and connects to one target.

use super::connect::count_end;
use super::{
    close_all, drain, open_session, pause_until, ramp, record_arrival, record_lag, record_send,
    server_envelope,
};
use crate::accounting::FlowRx;
use crate::cli::RoomsArgs;
use crate::clock;
use crate::pacer::Pacer;
use crate::plan::units_of_core;
use crate::probe::{
    message_id, padding, parse_message_id, probe_in, write_publish, Probe, UserNames,
};
use crate::runtime::CoreCtx;
use crate::ws::{Conn, Next};
use serde_json::value::RawValue;
use shardcast::protocol::{ClientEnvelope, ErrorCode, RoomPattern, ServerEnvelope};
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

#[derive(Default)]
struct Member {
    conn: Option<Rc<Conn>>,
    /// Publisher: publishes sent (= next sequence number).
    sent: u64,
    /// Subscriber: one flow per publisher of the room.
    rx: Vec<FlowRx>,
}

struct RoomsCore {
    ctx: Rc<CoreCtx>,
    names: UserNames,
    subscribers: usize,
    publishers: usize,
    first_room: u64,
    members: RefCell<Vec<Member>>,
    pad: String,
    outstanding: Cell<u64>,
    open: Cell<usize>,
}

impl RoomsCore {
    fn per_room(&self) -> usize {
        self.subscribers + self.publishers
    }

    fn global_user(&self, m: usize) -> u64 {
        self.first_room * self.per_room() as u64 + m as u64
    }

    fn room_of(&self, m: usize) -> u64 {
        self.first_room + (m / self.per_room()) as u64
    }

    fn is_publisher(&self, m: usize) -> bool {
        m % self.per_room() < self.publishers
    }

    fn publish(&self, m: usize, t: u64) -> bool {
        let (conn, seq) = {
            let members = self.members.borrow();
            (members[m].conn.clone(), members[m].sent)
        };
        let r = conn.map(|c| {
            let room = self.names.room(self.room_of(m));
            let id = message_id(self.global_user(m), seq);
            let probe = Probe {
                t,
                s: seq,
                p: self.pad.as_str().into(),
            };
            c.send_text_with(|buf| write_publish(buf, &room, &id, &probe))
        });
        let sent = record_send(&self.ctx, r);
        if sent {
            self.members.borrow_mut()[m].sent += 1;
            self.outstanding
                .set(self.outstanding.get() + self.subscribers as u64);
        }
        sent
    }

    fn on_message(&self, m: usize, payload: &[u8]) -> Next {
        let now = clock::now_ns();
        let Some(env) = server_envelope(&self.ctx, payload) else {
            return Next::Continue;
        };
        match env {
            ServerEnvelope::Room { from, id, data, .. } => self.on_msg(m, &from, &id, data, now),
            ServerEnvelope::Direct { .. } => self.ctx.stats().error("unexpected_envelope"),
            ServerEnvelope::Ack { .. } => self.ctx.stats().counters.acked += 1,
            ServerEnvelope::Error { code, id, .. } => self.on_error(code, id.as_deref()),
            ServerEnvelope::Reconnect { .. } => {}
            ServerEnvelope::Welcome { .. } => self.ctx.stats().error("unexpected_envelope"),
        }
        Next::Continue
    }

    /// The local member index of publisher `global`, if it publishes to the
    /// room of local member `m`.
    fn publisher_in_room_of(&self, m: usize, global: u64) -> Option<usize> {
        let room_start = m - m % self.per_room();
        let p = global.checked_sub(self.global_user(room_start))? as usize;
        (p < self.publishers).then_some(room_start + p)
    }

    fn on_msg(&self, m: usize, from: &str, id: &str, data: &RawValue, now: u64) {
        let from = self.names.index(from);
        let publisher = from.and_then(|g| self.publisher_in_room_of(m, g));
        let (Some(pm), Some(probe), false) = (publisher, probe_in(data), self.is_publisher(m))
        else {
            self.ctx.stats().error("unexpected_message");
            return;
        };
        if parse_message_id(id) != Some((self.global_user(pm), probe.s)) {
            self.ctx.stats().error("id_mismatch");
            return;
        }
        let arrival = {
            let mut members = self.members.borrow_mut();
            if probe.s >= members[pm].sent {
                drop(members);
                self.ctx.stats().error("unexpected_message");
                return;
            }
            let j = pm % self.per_room();
            members[m].rx[j].on_receive(probe.s)
        };
        if record_arrival(&self.ctx, arrival, probe.t, now) {
            self.outstanding.set(self.outstanding.get() - 1);
        }
    }

    /// A refused publish will reach no subscriber: settle it for all.
    fn on_error(&self, code: ErrorCode, id: Option<&str>) {
        self.ctx.stats().error(&format!("server_{code}"));
        let Some((sender, seq)) = id.and_then(parse_message_id) else {
            return;
        };
        let Some(pm) = sender
            .checked_sub(self.global_user(0))
            .map(|v| v as usize)
            .filter(|&pm| pm < self.members.borrow().len() && self.is_publisher(pm))
        else {
            return;
        };
        let room_start = pm - pm % self.per_room();
        let j = pm % self.per_room();
        let mut settled = 0;
        {
            let mut members = self.members.borrow_mut();
            if seq >= members[pm].sent {
                return;
            }
            for sub in room_start + self.publishers..room_start + self.per_room() {
                settled += u64::from(members[sub].rx[j].on_reject(seq));
            }
        }
        self.ctx.stats().counters.rejected += settled;
        self.outstanding.set(self.outstanding.get() - settled);
    }
}

/// Runs the `rooms` scenario on this core.
pub async fn run(ctx: &Rc<CoreCtx>, args: &RoomsArgs) {
    let plan = &ctx.plan;
    let rooms = units_of_core(
        &plan.scenario,
        ctx.global_core as u64,
        plan.total_cores() as u64,
    );
    let (subs, pubs) = (args.subscribers as usize, args.publishers as usize);
    let n = (rooms.end - rooms.start) as usize * (subs + pubs);
    let core = Rc::new(RoomsCore {
        ctx: Rc::clone(ctx),
        names: UserNames::new(&plan.run_id),
        subscribers: subs,
        publishers: pubs,
        first_room: rooms.start,
        members: RefCell::new(
            (0..n)
                .map(|m| Member {
                    rx: if m % (subs + pubs) < pubs {
                        Vec::new()
                    } else {
                        vec![FlowRx::new(); pubs]
                    },
                    ..Member::default()
                })
                .collect(),
        ),
        pad: padding(args.payload_bytes),
        outstanding: Cell::new(0),
        open: Cell::new(0),
    });
    ramp(ctx, n, |m| {
        let core = Rc::clone(&core);
        async move {
            let ctx = &core.ctx;
            let room = core.room_of(m);
            let name = core.names.name(core.global_user(m));
            let source = ctx.plan.source_for(core.global_user(m));
            let (conn, _) =
                open_session(ctx, ctx.plan.target_for(room), &name, None, source, false).await?;
            if !core.is_publisher(m) {
                let join = ClientEnvelope::Join {
                    pattern: RoomPattern::parse(&core.names.room(room))
                        .expect("loadgen's room names are valid"),
                    id: None,
                };
                let joined = conn.send_text_with(|b| join.encode(b));
                if joined.is_err() {
                    ctx.stats().error("join_failed");
                }
            }
            core.members.borrow_mut()[m].conn = Some(Rc::clone(&conn));
            core.open.set(core.open.get() + 1);
            let c2 = Rc::clone(&core);
            glommio::spawn_local(async move {
                let end = conn.run(|payload, _| c2.on_message(m, payload)).await;
                c2.open.set(c2.open.get() - 1);
                c2.members.borrow_mut()[m].conn = None;
                count_end(&c2.ctx, &conn, &end);
            })
            .detach();
            Some(())
        }
    })
    .await;
    // Protocol v1 has no join acknowledgement: give the joins time to land.
    glommio::timer::sleep(Duration::from_millis(args.settle_ms)).await;
    ctx.ready();
    if let Some(go) = ctx.wait_go().await {
        let end = go + plan.duration().as_nanos() as u64;
        let publishers: Vec<usize> = (0..n).filter(|&m| core.is_publisher(m)).collect();
        if !publishers.is_empty() {
            let share = (rooms.end - rooms.start) as f64 / args.rooms as f64;
            let mut pacer = Pacer::new(go, end, args.rate * share);
            let mut next = 0usize;
            loop {
                while let Some(t) = pacer.pop_due(clock::now_ns()) {
                    if core.publish(publishers[next], t) {
                        record_lag(ctx, t);
                    }
                    next = (next + 1) % publishers.len();
                }
                match pacer.next_due() {
                    Some(t) if pause_until(ctx, t).await => {}
                    _ => break,
                }
            }
        } else {
            ctx.sleep_until(end).await;
        }
    }
    drain(ctx, plan.drain_timeout(), || core.outstanding.get() == 0).await;
    {
        let members = core.members.borrow();
        let mut s = ctx.stats();
        for (m, member) in members.iter().enumerate() {
            if core.is_publisher(m) {
                continue;
            }
            let room_start = m - m % core.per_room();
            for (j, rx) in member.rx.iter().enumerate() {
                let sent = members[room_start + j].sent;
                s.counters.lost += rx.lost(sent);
                s.counters.expected += sent;
            }
        }
    }
    let conns: Vec<Rc<Conn>> = core
        .members
        .borrow()
        .iter()
        .filter_map(|m| m.conn.clone())
        .collect();
    close_all(&conns, || core.open.get()).await;
}
