//! The control plane's shared state and what each API call does with it,
//! apart from HTTP: membership and ring, scaling, the signed connect
//! answer, the counters.
//!
//! Invariants:
//! * one lock ([`Control`]'s mutex) orders every ring change, so versions
//!   are published in the order they were made; a change is persisted
//!   (see `membership`) before anyone can read it, and handed to the
//!   publisher before the lock is released;
//! * readers (`ring`, `resolve`, `connect`) take the lock only to clone an
//!   `Arc<Ring>`: they never wait for a ring computation longer than one
//!   change.

use std::{
    collections::BTreeMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex, MutexGuard,
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;

use super::{
    heartbeat::{Heartbeat, HeartbeatReply},
    membership::{Membership, MembershipError, RingChange},
    probe::{probe, Probe},
    scaling::{Decision, Demand, Inputs, Scaler, ScalingParams},
};
use crate::{ring::Ring, token::ResumeToken};

/// Where each new ring version goes (the Kafka producer); it must not block.
pub trait Publish: Send + Sync {
    /// Hands over a snapshot's JSON, newest last.
    fn publish(&self, version: u64, json: &str);
    /// The newest version the destination acknowledged (0: none yet).
    fn published(&self) -> u64;
}

/// What signs the `connect` answers.
pub struct Signing {
    /// The HS256 key.
    pub jwt_key: Vec<u8>,
    /// The cluster secret (resume tokens).
    pub secret: Vec<u8>,
    /// JWT lifetime, seconds.
    pub token_ttl_secs: u64,
    /// Resume-token lifetime, seconds.
    pub resume_ttl_secs: u64,
    /// `iss`, if any.
    pub issuer: Option<String>,
    /// `aud`, if any.
    pub audience: Option<String>,
}

/// The claims of a `connect` token, as the node's verifier reads them.
#[derive(Serialize)]
struct Claims<'a> {
    sub: &'a str,
    iat: u64,
    exp: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    iss: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    aud: Option<&'a str>,
}

/// `GET /api/v1/resolve`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Resolved {
    /// The user asked about.
    pub user_id: String,
    /// Its owner.
    pub node_id: String,
    /// The owner's WebSocket URL.
    pub ws_url: String,
    /// The ring version that answered.
    pub ring_version: u64,
}

/// `GET /api/v1/connect`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Connect {
    /// The owner's WebSocket URL.
    pub ws_url: String,
    /// The resume token the request carried, when it verifies.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resume_token: Option<String>,
    /// HS256 JWT, `sub` = the user.
    pub token: String,
    /// The token's `exp`, unix seconds.
    pub expires_at: u64,
    /// The owner's id.
    pub node_id: String,
    /// The ring version that answered.
    pub ring_version: u64,
}

/// `GET /api/v1/scaling`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ScalingView {
    /// The current target; `null` before any node reported.
    pub target: Option<u32>,
    /// The latest inputs.
    pub inputs: Option<Inputs>,
    /// What the formula gives for them, before hysteresis.
    pub demand: Option<Demand>,
    /// The constants.
    pub params: ScalingParams,
    /// The decisions, oldest first.
    pub history: Vec<Decision>,
}

/// Why a `resolve` or `connect` could not be answered.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    /// No node is in the ring.
    #[error("no node is in the ring")]
    NoNodes,
    /// The `resume` token does not verify for this user.
    #[error("resume token refused: {0}")]
    Resume(crate::token::TokenError),
    /// The token could not be signed.
    #[error("cannot sign the token: {0}")]
    Sign(String),
}

struct State {
    membership: Membership,
    scaler: Scaler,
    /// When the housekeeping pass last ran, and when any heartbeat last
    /// arrived: the control plane's own hearing (see `tick`).
    last_tick: Option<Instant>,
    last_heartbeat: Option<Instant>,
}

/// The control plane.
pub struct Control {
    state: Mutex<State>,
    signing: Signing,
    publisher: Option<Box<dyn Publish>>,
    started: Instant,
    heartbeats: AtomicU64,
    ring_changes: AtomicU64,
    refused: Mutex<BTreeMap<&'static str, u64>>,
    probe_timeout: Duration,
    /// When each node was last probed and found not dead (reports about
    /// it within `PROBE_QUIET` are not probed again).
    probed: Mutex<BTreeMap<String, Instant>>,
    reports: Mutex<BTreeMap<&'static str, u64>>,
}

/// How long a probe that found a node alive (or gave no verdict) answers
/// the reports that follow, so a wave of clients costs one probe.
const PROBE_QUIET: Duration = Duration::from_millis(200);

/// Unix seconds now.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Control {
    /// A control plane over `membership`; `publisher` gets every version.
    pub fn new(
        membership: Membership,
        scaling: ScalingParams,
        signing: Signing,
        publisher: Option<Box<dyn Publish>>,
    ) -> Control {
        let control = Control {
            state: Mutex::new(State {
                membership,
                scaler: Scaler::new(scaling),
                last_tick: None,
                last_heartbeat: None,
            }),
            signing,
            publisher,
            started: Instant::now(),
            heartbeats: AtomicU64::new(0),
            ring_changes: AtomicU64::new(0),
            refused: Mutex::new(BTreeMap::new()),
            probe_timeout: Duration::from_millis(300),
            probed: Mutex::new(BTreeMap::new()),
            reports: Mutex::new(BTreeMap::new()),
        };
        // A restored snapshot is published again: a node that missed it
        // (or a fresh topic) gets it; nodes that have it ignore it.
        let state = control.lock();
        if state.membership.version() > 0 {
            control.publish(&state.membership);
        }
        drop(state);
        control
    }

    /// How long a probe of a reported node waits for its TCP handshake.
    pub fn with_probe_timeout(mut self, timeout: Duration) -> Control {
        self.probe_timeout = timeout;
        self
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave a half-made change
        // (membership commits last), so a poisoned lock is still sound.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn publish(&self, membership: &Membership) {
        if let Some(p) = &self.publisher {
            let snapshot = membership.snapshot();
            match serde_json::to_string(&snapshot) {
                Ok(json) => p.publish(snapshot.version, &json),
                Err(e) => tracing::error!("cannot encode ring {}: {e}", snapshot.version),
            }
        }
    }

    fn changed(&self, membership: &Membership, changes: &[RingChange]) {
        for c in changes {
            self.ring_changes.fetch_add(1, Ordering::Relaxed);
            tracing::info!(
                version = c.version,
                node = %c.node_id,
                reason = c.reason.as_str(),
                nodes = membership.members().len(),
                "ring changed"
            );
        }
        if !changes.is_empty() {
            self.publish(membership);
        }
    }

    /// Counts a heartbeat request, before its body is checked.
    pub fn heartbeat_received(&self) {
        self.heartbeats.fetch_add(1, Ordering::Relaxed);
    }

    /// Applies a checked heartbeat.
    pub fn heartbeat(&self, hb: &Heartbeat) -> Result<HeartbeatReply, MembershipError> {
        self.heartbeat_at(hb, Instant::now())
    }

    /// [`Control::heartbeat`] received at `now`.
    pub fn heartbeat_at(
        &self,
        hb: &Heartbeat,
        now: Instant,
    ) -> Result<HeartbeatReply, MembershipError> {
        let mut state = self.lock();
        state.last_heartbeat = Some(now);
        let beat = state.membership.heartbeat(hb, now)?;
        self.changed(&state.membership, &beat.changes);
        Ok(HeartbeatReply {
            member: beat.member,
            ring_version: state.membership.version(),
        })
    }

    /// A client could not reach member `node_id` (`unreachable=` of
    /// `connect`): probe its port now and evict it if nothing listens
    /// there, so the answer that follows already names the new owner.
    /// Unknown ids and non-members are ignored; see `probe` for why only
    /// a refused connect evicts.
    pub fn report_unreachable(&self, node_id: &str) -> &'static str {
        let outcome = self.check_reported(node_id);
        let mut m = self.reports.lock().unwrap_or_else(|e| e.into_inner());
        *m.entry(outcome).or_insert(0) += 1;
        outcome
    }

    fn check_reported(&self, node_id: &str) -> &'static str {
        let Some(url) = self
            .lock()
            .membership
            .members()
            .get(node_id)
            .map(|m| m.node.addr.clone())
        else {
            return "not_member";
        };
        let now = Instant::now();
        {
            let mut probed = self.probed.lock().unwrap_or_else(|e| e.into_inner());
            if probed
                .get(node_id)
                .is_some_and(|at| now.duration_since(*at) < PROBE_QUIET)
            {
                return "recently_probed";
            }
            probed.insert(node_id.to_owned(), now);
        }
        // Outside the state lock: heartbeats and lookups go on meanwhile.
        let outcome = probe(&url, self.probe_timeout);
        if outcome == Probe::Dead {
            let mut state = self.lock();
            // Still the member that was probed (not a restarted node at a
            // new address, not already gone)?
            if state
                .membership
                .members()
                .get(node_id)
                .map(|m| &m.node.addr)
                == Some(&url)
            {
                match state.membership.evict(node_id) {
                    Ok(change) => self.changed(&state.membership, change.as_slice()),
                    Err(e) => tracing::error!("evicting {node_id}: {e}"),
                }
            }
            drop(state);
            self.probed
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(node_id);
        }
        outcome.as_str()
    }

    /// The housekeeping pass: expire late nodes, feed the scaler.
    ///
    /// Silence expires a node only while the control plane could hear it.
    /// Two signs that it could not, measured on a starved 2-vCPU host where
    /// every node "expired" at once and rejoined a moment later: this pass
    /// runs more than half a grace period after the previous one (the
    /// process was not scheduled), or no member at all was heard within a
    /// grace period (all nodes dying at the same moment is less likely than
    /// our own deafness, and a dead node is still evicted by a client's
    /// report, see `report_unreachable`). Either way every member gets a
    /// fresh grace period instead.
    pub fn tick(&self) {
        self.tick_at(Instant::now());
    }

    /// [`Control::tick`] at `now`.
    pub fn tick_at(&self, now: Instant) {
        let mut state = self.lock();
        let grace = state.membership.grace();
        let stalled = state
            .last_tick
            .is_some_and(|t| now.duration_since(t) > grace / 2);
        let deaf = state.membership.members().len() > 1
            && state
                .last_heartbeat
                .is_some_and(|t| now.duration_since(t) > grace);
        state.last_tick = Some(now);
        if stalled || deaf {
            if !state.membership.members().is_empty() {
                tracing::warn!(
                    stalled,
                    deaf,
                    "the control plane did not hear its nodes for a while: no node expires on this pass"
                );
            }
            state.membership.forgive(now);
            // Heard nothing, so do not say it again on every pass.
            state.last_heartbeat = Some(now);
        }
        match state.membership.expire(now) {
            Ok(changes) => self.changed(&state.membership, &changes),
            Err(e) => tracing::error!("expiry: {e}"),
        }
        let members = state.membership.members();
        let inputs = Inputs {
            nodes: members.len(),
            total_connections: members.values().map(|m| m.load.connections).sum(),
            total_mps: members.values().map(|m| m.load.mps).sum(),
            p95_ms: members.values().map(|m| m.load.p95_ms).fold(0.0, f64::max),
        };
        if let Some(d) = state.scaler.observe(inputs, now, unix_ms()) {
            tracing::info!(from = d.from, to = d.to, "scaling target changed");
        }
    }

    /// The published snapshot as JSON.
    pub fn ring_json(&self) -> String {
        let snapshot = self.lock().membership.snapshot();
        serde_json::to_string(&snapshot).expect("a snapshot encodes")
    }

    /// The current ring.
    pub fn ring(&self) -> Option<Arc<Ring>> {
        self.lock().membership.ring().cloned()
    }

    /// The owner of a (checked) user id.
    pub fn resolve(&self, user: &str) -> Result<Resolved, LookupError> {
        let ring = self.ring().ok_or(LookupError::NoNodes)?;
        let node = ring.lookup(user);
        Ok(Resolved {
            user_id: user.to_owned(),
            node_id: node.id.clone(),
            ws_url: node.addr.clone(),
            ring_version: ring.version(),
        })
    }

    /// Where a (checked) user connects, with a token its node accepts.
    pub fn connect(&self, user: &str, resume: Option<&str>) -> Result<Connect, LookupError> {
        let now = unix_now();
        let s = &self.signing;
        if let Some(token) = resume {
            ResumeToken::verify(token, &s.secret, user, now, s.resume_ttl_secs)
                .map_err(LookupError::Resume)?;
        }
        let ring = self.ring().ok_or(LookupError::NoNodes)?;
        let node = ring.lookup(user);
        let expires_at = now + s.token_ttl_secs;
        let claims = Claims {
            sub: user,
            iat: now,
            exp: expires_at,
            iss: s.issuer.as_deref(),
            aud: s.audience.as_deref(),
        };
        let token = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(&s.jwt_key),
        )
        .map_err(|e| LookupError::Sign(e.to_string()))?;
        Ok(Connect {
            ws_url: node.addr.clone(),
            resume_token: resume.map(str::to_owned),
            token,
            expires_at,
            node_id: node.id.clone(),
            ring_version: ring.version(),
        })
    }

    /// The scaling state.
    pub fn scaling(&self) -> ScalingView {
        let state = self.lock();
        let s = &state.scaler;
        ScalingView {
            target: s.target(),
            inputs: s.latest().map(|l| l.0),
            demand: s.latest().map(|l| l.1),
            params: *s.params(),
            history: s.history().cloned().collect(),
        }
    }

    /// `GET /health`.
    pub fn health_json(&self) -> String {
        let state = self.lock();
        serde_json::json!({
            "status": "ok",
            "ringVersion": state.membership.version(),
            "nodes": state.membership.members().len(),
            "uptimeSecs": self.started.elapsed().as_secs(),
        })
        .to_string()
    }

    /// Counts a refused request by its error code.
    pub fn refused(&self, code: &'static str) {
        let mut m = self.refused.lock().unwrap_or_else(|e| e.into_inner());
        *m.entry(code).or_insert(0) += 1;
    }

    /// The Prometheus text.
    pub fn metrics_text(&self) -> String {
        use std::fmt::Write;
        let (nodes, version, target) = {
            let state = self.lock();
            (
                state.membership.members().len(),
                state.membership.version(),
                state.scaler.target(),
            )
        };
        let mut out = String::with_capacity(1024);
        let mut gauge = |name: &str, help: &str, value: String| {
            let _ = write!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}\n"
            );
        };
        gauge("rtc_lb_ring_nodes", "Nodes in the ring.", nodes.to_string());
        gauge(
            "rtc_lb_ring_version",
            "Version of the published ring.",
            version.to_string(),
        );
        gauge(
            "rtc_lb_scaling_target",
            "Advised node count (0 before any node reported).",
            target.unwrap_or(0).to_string(),
        );
        for (name, help, value) in [
            (
                "rtc_lb_heartbeats_received_total",
                "Heartbeats received (valid or not).",
                &self.heartbeats,
            ),
            (
                "rtc_lb_ring_changes_total",
                "Ring versions published by this process.",
                &self.ring_changes,
            ),
        ] {
            let _ = write!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}\n",
                value.load(Ordering::Relaxed)
            );
        }
        if let Some(p) = &self.publisher {
            let name = "rtc_lb_ring_published_version";
            let _ = write!(
                out,
                "# HELP {name} Newest ring version the Kafka broker acknowledged.\n# TYPE {name} gauge\n{name} {}\n",
                p.published()
            );
        }
        let name = "rtc_lb_unreachable_reports_total";
        let _ = write!(
            out,
            "# HELP {name} Clients' reports of an unreachable node, by what the probe found.\n# TYPE {name} counter\n"
        );
        for (outcome, n) in self
            .reports
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            let _ = writeln!(out, "{name}{{outcome=\"{outcome}\"}} {n}");
        }
        let name = "rtc_lb_requests_refused_total";
        let _ = write!(
            out,
            "# HELP {name} API requests answered with an error, by error code.\n# TYPE {name} counter\n"
        );
        for (code, n) in self
            .refused
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            let _ = writeln!(out, "{name}{{error=\"{code}\"}} {n}");
        }
        out
    }
}
