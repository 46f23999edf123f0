//! The scaling decision: how many nodes the cluster should have, from the
//! load the nodes report. Advisory: it is published on
//! `GET /api/v1/scaling` and `rtc_lb_scaling_target` for an external
//! autoscaler; nothing here starts or stops a node.
//!
//! Owns: the contract's formula ([`demand`]) and the hysteresis around it
//! ([`Scaler`]). Pure: the caller passes the clock.
//!
//! ```text
//! r_conn = ceil(α · total_conn / conn_per_node)
//! r_mps  = ceil(β · total_mps  / mps_per_node)
//! r_lat  = ceil(γ · exp(δ · max(0, p95 / L_slo − 1)))
//! target = max(r_conn, r_mps, r_lat)          (at least 1)
//! ```
//!
//! Hysteresis (the invariants the tests check on recorded series):
//! * decisions are at least `min_interval` apart; until the first window
//!   (`min_interval` from the first node's report) closed, the target is
//!   the ring's node count, the starting point of the first decision;
//! * one decision moves the target by at most `max_step`;
//! * scale-out follows the newest demand; scale-in happens only when the
//!   largest demand of the last `min_interval` is below `current − 1`, and
//!   goes down to that largest demand, so a demand that flaps between two
//!   levels raises the target once and keeps it there.
//!
//! Inputs: the sum of the members' connections and messages per second,
//! and the largest member p95 (**decision:** the worst node is the one
//! that breaks the latency objective, so it decides `r_lat`).

use std::{
    collections::VecDeque,
    time::{Duration, Instant},
};

use serde::Serialize;

/// Most decisions kept in the history.
pub const HISTORY: usize = 100;

/// The constants of the formula and of the hysteresis.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ScalingParams {
    /// α: headroom on connections.
    pub alpha: f64,
    /// β: headroom on messages per second.
    pub beta: f64,
    /// γ: the latency term's base node count.
    pub gamma: f64,
    /// δ: how steeply the latency term grows past the objective.
    pub delta: f64,
    /// Connections one node is sized for.
    pub conn_per_node: f64,
    /// Messages per second one node is sized for.
    pub mps_per_node: f64,
    /// L_slo: the p95 latency objective, milliseconds.
    pub latency_slo_ms: f64,
    /// Least time between two decisions.
    #[serde(rename = "minIntervalSecs", serialize_with = "secs")]
    pub min_interval: Duration,
    /// Most nodes one decision adds or removes.
    pub max_step: u32,
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// What the decision is computed from.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Inputs {
    /// Nodes in the ring.
    pub nodes: usize,
    /// Σ connections.
    pub total_connections: u64,
    /// Σ messages per second.
    pub total_mps: f64,
    /// The largest p95, milliseconds.
    pub p95_ms: f64,
}

/// The formula's terms and their maximum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Demand {
    /// From connections.
    pub r_conn: u32,
    /// From messages per second.
    pub r_mps: u32,
    /// From latency.
    pub r_lat: u32,
    /// `max(r_conn, r_mps, r_lat, 1)`.
    pub target: u32,
}

/// The contract's formula (no hysteresis).
pub fn demand(p: &ScalingParams, inputs: &Inputs) -> Demand {
    let r_conn = ceil(p.alpha * inputs.total_connections as f64 / p.conn_per_node);
    let r_mps = ceil(p.beta * inputs.total_mps / p.mps_per_node);
    let over = (inputs.p95_ms / p.latency_slo_ms - 1.0).max(0.0);
    let r_lat = ceil(p.gamma * (p.delta * over).exp());
    Demand {
        r_conn,
        r_mps,
        r_lat,
        target: r_conn.max(r_mps).max(r_lat).max(1),
    }
}

/// `ceil`, saturated into `u32` (NaN counts as 0).
fn ceil(x: f64) -> u32 {
    if x.is_nan() || x <= 0.0 {
        0
    } else {
        x.ceil().min(u32::MAX as f64) as u32
    }
}

/// One change of the target.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Decision {
    /// Unix milliseconds.
    pub at_ms: u64,
    /// The target before.
    pub from: u32,
    /// The target after.
    pub to: u32,
    /// The demand that decided it (for a scale-in: the window's largest).
    pub demand: Demand,
    /// The inputs at that moment.
    pub inputs: Inputs,
}

/// The decision state: the current target, the window since the last
/// decision, and the history.
#[derive(Debug, Clone)]
pub struct Scaler {
    params: ScalingParams,
    /// `None` until the first observation with a node.
    target: Option<u32>,
    /// True once the first window closed (the target is then ours, not
    /// the node count).
    settled: bool,
    /// The last decision, or the first observation: the window's start.
    last_decision: Option<Instant>,
    /// The demands of the last `min_interval`, as a monotonic deque
    /// (targets strictly decreasing from front to back): the front is the
    /// window's largest demand.
    window: VecDeque<(Instant, u32)>,
    latest: Option<(Inputs, Demand)>,
    history: VecDeque<Decision>,
}

impl Scaler {
    /// A scaler with no target yet.
    pub fn new(params: ScalingParams) -> Scaler {
        Scaler {
            params,
            target: None,
            settled: false,
            last_decision: None,
            window: VecDeque::new(),
            latest: None,
            history: VecDeque::new(),
        }
    }

    /// The constants.
    pub fn params(&self) -> &ScalingParams {
        &self.params
    }

    /// The current target; `None` before the first node reported.
    pub fn target(&self) -> Option<u32> {
        self.target
    }

    /// The latest inputs and the demand they gave.
    pub fn latest(&self) -> Option<&(Inputs, Demand)> {
        self.latest.as_ref()
    }

    /// The decisions, oldest first (at most [`HISTORY`]).
    pub fn history(&self) -> impl Iterator<Item = &Decision> {
        self.history.iter()
    }

    /// Takes the inputs of `now` (`at_ms`: the same moment in unix ms) and
    /// returns the decision they cause, if any.
    pub fn observe(&mut self, inputs: Inputs, now: Instant, at_ms: u64) -> Option<&Decision> {
        let d = demand(&self.params, &inputs);
        self.latest = Some((inputs, d));
        if self.last_decision.is_none() {
            if inputs.nodes == 0 {
                return None;
            }
            // The first window starts with the first node's report.
            self.last_decision = Some(now);
        }
        if !self.settled {
            // Until the first window closes, the target is the cluster as
            // it is (nodes join one heartbeat at a time after a cold start).
            self.target = Some(inputs.nodes.clamp(1, u32::MAX as usize) as u32);
        }
        let current = self.target.expect("set above or by a decision");
        while self.window.back().is_some_and(|&(_, v)| v <= d.target) {
            self.window.pop_back();
        }
        self.window.push_back((now, d.target));
        while self
            .window
            .front()
            .is_some_and(|&(t, _)| now.saturating_duration_since(t) > self.params.min_interval)
        {
            self.window.pop_front();
        }
        let window_max = self.window.front().map_or(d.target, |&(_, v)| v);
        if let Some(t) = self.last_decision {
            if now.saturating_duration_since(t) < self.params.min_interval {
                return None;
            }
        }
        self.settled = true;
        let step = self.params.max_step.max(1);
        let (to, decided_by) = if d.target > current {
            (d.target.min(current.saturating_add(step)), d)
        } else if window_max.saturating_add(1) < current {
            let by = Demand {
                target: window_max,
                ..d
            };
            (window_max.max(current - step.min(current - 1)), by)
        } else {
            return None;
        };
        self.target = Some(to);
        self.last_decision = Some(now);
        if self.history.len() == HISTORY {
            self.history.pop_front();
        }
        self.history.push_back(Decision {
            at_ms,
            from: current,
            to,
            demand: decided_by,
            inputs,
        });
        self.history.back()
    }
}

#[cfg(test)]
#[path = "scaling_tests.rs"]
mod tests;
