//! `direct` with `--control`: a user's routing state and its moves.
//!
//! [`Route`] is what a user carries between connections (its node, the
//! `wsUrl` a `reconnect` named, the control plane's token, the node it
//! failed on); the methods here run one routed try
//! ([`super::super::routed`]) and record each move (disconnect → welcome)
//! for `--events`.
//!
//! Invariant: a user has at most one move under way (`Route::moving`): it
//! starts when a connection ends without loadgen asking and ends at the
//! next welcome; moves still under way when the run ends are written too
//! (without `resumedMs`).

use super::super::routed::{Hop, Jwt};
use super::PairCore;
use crate::events::{self, Move};
use crate::ws::session::Welcome;
use crate::ws::{Conn, Ended};
use std::rc::Rc;

/// A `--control` user's routing state (boxed: runs without a control
/// plane pay one pointer per user for it).
#[derive(Default)]
pub(super) struct Route {
    /// The node of the current connection (its welcome's `node`).
    pub(super) node: Option<String>,
    /// The latest `reconnect` named this URL.
    pub(super) next_url: Option<String>,
    /// A `reconnect` came on the current connection.
    pub(super) saw_reconnect: bool,
    /// The latest control-plane token.
    pub(super) jwt: Option<Jwt>,
    /// The node the latest try failed on (or that dropped the user).
    pub(super) unreachable: Option<Rc<str>>,
    /// The move under way.
    pub(super) moving: Option<Move>,
}

impl PairCore {
    /// `--control`: one routed try for user `u` (the hop it carries, the
    /// steps into its move when one is under way).
    pub(super) async fn try_routed(
        &self,
        u: usize,
        name: &str,
        resume: Option<&str>,
        reconnect: bool,
    ) -> Option<(Rc<Conn>, Welcome)> {
        let routing = self.routing.as_ref()?;
        let hop = {
            let mut users = self.users.borrow_mut();
            let route = users[u].route.get_or_insert_with(Box::default);
            Hop {
                next_url: route.next_url.take(),
                jwt: route.jwt.clone(),
                unreachable: route.unreachable.take(),
            }
        };
        let source = self.ctx.plan.source_for(self.first + u as u64);
        let mut steps = Vec::new();
        let tried = routing
            .try_once(&self.ctx, name, resume, hop, source, reconnect, &mut steps)
            .await;
        let mut users = self.users.borrow_mut();
        let user = &mut users[u];
        if tried.resume_refused {
            // Honest accounting: without the token what was missed is lost.
            user.token = None;
        }
        let route = user.route.get_or_insert_with(Box::default);
        route.jwt = tried.jwt;
        route.unreachable = tried.failed_on;
        if let Some(m) = route.moving.as_mut() {
            m.steps.extend(steps);
            m.with_resume_token = resume.is_some();
        }
        tried.session
    }

    /// `--control`: user `u`'s connection ended without loadgen asking.
    pub(super) fn start_move(&self, u: usize, end: &Ended) {
        let name = self.names.name(self.first + u as u64);
        let mut users = self.users.borrow_mut();
        let Some(route) = users[u].route.as_deref_mut() else {
            return;
        };
        let cause = if route.saw_reconnect {
            "reconnect".to_string()
        } else {
            // Closed without a `reconnect`: the next ask names the node.
            route.unreachable = route.node.as_deref().map(Rc::from);
            match end {
                Ended::PeerClosed(Some(code)) => format!("close_{code}"),
                other => other.cause().to_string(),
            }
        };
        let url = route.next_url.clone();
        let from = route.node.take();
        if let Some(old) = route.moving.replace(Move::start(name, cause, from, url)) {
            self.moves.borrow_mut().push(old);
        }
    }

    /// `--control`: user `u`'s move reached a welcome.
    pub(super) fn end_move(&self, u: usize, w: &Welcome) {
        let mut users = self.users.borrow_mut();
        let Some(mut m) = users[u].route.as_mut().and_then(|r| r.moving.take()) else {
            return;
        };
        m.to = w.node.clone();
        m.resumed_ms = Some(events::unix_ms());
        self.moves.borrow_mut().push(m);
    }

    /// Appends this core's moves (finished or not) to `--events`.
    pub(super) fn write_moves(&self) {
        let mut moves = std::mem::take(&mut *self.moves.borrow_mut());
        for user in self.users.borrow_mut().iter_mut() {
            if let Some(m) = user.route.as_mut().and_then(|r| r.moving.take()) {
                moves.push(m);
            }
        }
        let Some(path) = &self.ctx.plan.events_file else {
            return;
        };
        if let Err(e) = events::append(path, &moves) {
            eprintln!("loadgen: writing {}: {e}", path.display());
            self.ctx.stats().error("events_unwritable");
        }
    }
}
