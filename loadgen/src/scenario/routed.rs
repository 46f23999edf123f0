//! Connecting through the control plane (`--control`): one try of a user
//! is "ask `/api/v1/connect` (or go straight to the `wsUrl` a `reconnect`
//! named), connect with the token it gave and the answer's ring version as
//! the `ring=V` hint, follow a 307 `wrong_node` once", and says which node
//! it failed on so that the next ask can tell the control plane
//! (`unreachable=NODE`).
//!
//! Every step is recorded as an [`events::Step`] for the event log. A try
//! never sleeps: the caller owns the backoff between tries.
//!
//! Invariant: `unreachable` names only a node that refused or reset the
//! connection, let it time out, or closed it before the welcome; a node
//! that answered (503, 401, a refused resume token) is alive and never
//! reported.

use super::open_counted;
use crate::ctl::{self, CtlError};
use crate::events::{unix_ms, Step};
use crate::runtime::CoreCtx;
use crate::target::Target;
use crate::ws::handshake::HandshakeError;
use crate::ws::session::Welcome;
use crate::ws::{Conn, ConnectError};
use std::cell::RefCell;
use std::collections::HashMap;
use std::net::IpAddr;
use std::rc::Rc;

/// A control-plane JWT and its `exp` (unix seconds).
#[derive(Clone, Debug)]
pub struct Jwt {
    /// The token.
    pub token: String,
    /// Its `exp`.
    pub exp: u64,
}

/// A token this close to its `exp` is not used for a connect: ask again.
const JWT_MARGIN_SECS: u64 = 10;

/// Per core: the control plane and the node ids learned per URL (from
/// answers, redirects and welcomes), so that a failed connect to a URL a
/// `reconnect` named can still be reported by node id.
pub struct Routing {
    ctl: Target,
    node_ids: RefCell<HashMap<String, Rc<str>>>,
}

/// What a user carries from one try to the next.
#[derive(Default)]
pub struct Hop {
    /// Go here without asking (a `reconnect`'s `wsUrl`).
    pub next_url: Option<String>,
    /// The latest control-plane token.
    pub jwt: Option<Jwt>,
    /// The node the previous try failed on.
    pub unreachable: Option<Rc<str>>,
}

/// The result of one try.
pub struct Tried {
    /// The session, when the try reached a welcome.
    pub session: Option<(Rc<Conn>, Welcome)>,
    /// The newest token (the one passed in when no ask was made).
    pub jwt: Option<Jwt>,
    /// The node the try failed on (see the module invariant).
    pub failed_on: Option<Rc<str>>,
    /// The control plane refused the resume token (`resume_refused`).
    pub resume_refused: bool,
}

/// The URL a client connects to: `url` without any query (loadgen adds
/// the user's own).
fn base_url(url: &str) -> &str {
    url.split('?').next().unwrap_or(url)
}

/// `t` with the upgrade hint `ring=V` in its query, when there is one.
fn with_ring(mut t: Target, ring: Option<u64>) -> Target {
    if let Some(v) = ring {
        t.path.push(if t.path.contains('?') { '&' } else { '?' });
        t.path.push_str(&format!("ring={v}"));
    }
    t
}

fn unreachable_cause(e: &ConnectError) -> bool {
    match e {
        ConnectError::Refused | ConnectError::Reset | ConnectError::Timeout => true,
        ConnectError::NoWelcome(what) => what.starts_with("connection ended"),
        _ => false,
    }
}

impl Routing {
    /// Routing through `ctl`.
    pub fn new(ctl: Target) -> Self {
        Self {
            ctl,
            node_ids: RefCell::new(HashMap::new()),
        }
    }

    fn learn(&self, url: &str, node: &str) {
        let mut ids = self.node_ids.borrow_mut();
        if !matches!(ids.get(url), Some(n) if &**n == node) {
            ids.insert(url.to_string(), Rc::from(node));
        }
    }

    fn node_of(&self, url: &str) -> Option<Rc<str>> {
        self.node_ids.borrow().get(url).cloned()
    }

    /// One try for `user` (see the module docs); `steps` gets each step.
    #[allow(clippy::too_many_arguments)]
    pub async fn try_once(
        &self,
        ctx: &CoreCtx,
        user: &str,
        resume: Option<&str>,
        hop: Hop,
        source: Option<IpAddr>,
        reconnect: bool,
        steps: &mut Vec<Step>,
    ) -> Tried {
        let now_s = unix_ms() / 1000;
        let fresh = hop
            .jwt
            .filter(|j| j.exp > now_s + JWT_MARGIN_SECS || ctx.plan.jwt_secret.is_some());
        let mut tried = Tried {
            session: None,
            jwt: fresh.clone(),
            failed_on: None,
            resume_refused: false,
        };
        let direct = match (hop.next_url, &fresh) {
            (Some(url), Some(_)) => match Target::parse(base_url(&url)) {
                Ok(t) => Some(t),
                Err(_) => {
                    ctx.stats().error("bad_reconnect_ws_url");
                    None
                }
            },
            _ => None,
        };
        // The answer's ring version, passed on as the upgrade's `ring=V`
        // hint (docs/protocol.md): a node with an older ring fetches the
        // newer one before it would redirect the user.
        let mut ring = None;
        let target = match direct {
            Some(t) => t,
            None => {
                let at_ms = unix_ms();
                let unreachable = hop.unreachable.as_deref();
                let answer = ctl::ask(
                    &self.ctl,
                    user,
                    resume,
                    unreachable,
                    ctx.plan.connect_timeout(),
                )
                .await;
                let mut step = Step {
                    at_ms,
                    kind: "ask".into(),
                    node: None,
                    url: None,
                    unreachable: unreachable.map(str::to_string),
                    ring_version: None,
                    result: "ok".into(),
                };
                let answer = match answer {
                    Ok(a) => a,
                    Err(e) => {
                        let cause = e.cause();
                        ctx.stats().error(&cause);
                        tried.resume_refused = matches!(
                            &e,
                            CtlError::Status { error, .. } if error == "resume_refused"
                        );
                        step.result = cause;
                        steps.push(step);
                        // The control plane did not hear it: say it again.
                        tried.failed_on = hop.unreachable;
                        return tried;
                    }
                };
                step.node = Some(answer.node_id.clone());
                step.ring_version = Some(answer.ring_version);
                steps.push(step);
                let Ok(t) = Target::parse(base_url(&answer.ws_url)) else {
                    ctx.stats().error("ctl_bad_ws_url");
                    return tried;
                };
                self.learn(&t.url, &answer.node_id);
                ring = Some(answer.ring_version);
                tried.jwt = Some(Jwt {
                    token: answer.token,
                    exp: answer.expires_at,
                });
                t
            }
        };
        let jwt = match &tried.jwt {
            Some(j) if ctx.plan.jwt_secret.is_none() => Some(j.token.clone()),
            _ => ctx.plan.jwt_for(user),
        };
        let mut target = with_ring(target, ring);
        let mut kind = "connect";
        // At most two connects: the first one and one redirect.
        for _ in 0..2 {
            let node = self.node_of(&target.url);
            let mut step = Step {
                at_ms: unix_ms(),
                kind: kind.into(),
                node: node.as_deref().map(str::to_string),
                url: Some(target.url.clone()),
                unreachable: None,
                ring_version: ring,
                result: "ok".into(),
            };
            let r = open_counted(
                ctx,
                &target,
                user,
                resume,
                jwt.as_deref(),
                source,
                reconnect,
            )
            .await;
            match r {
                Ok((conn, welcome)) => {
                    if let Some(n) = &welcome.node {
                        self.learn(&target.url, n);
                        step.node = Some(n.clone());
                    }
                    steps.push(step);
                    tried.session = Some((conn, welcome));
                    return tried;
                }
                Err(ConnectError::Handshake(HandshakeError::Redirect {
                    location, node, ..
                })) if kind == "connect" => {
                    step.result = "http_307".into();
                    steps.push(step);
                    let Ok(t) = Target::parse(base_url(&location)) else {
                        ctx.stats().error("bad_redirect_location");
                        return tried;
                    };
                    if let Some(n) = &node {
                        self.learn(&t.url, n);
                    }
                    target = with_ring(t, ring);
                    kind = "redirect";
                }
                Err(e) => {
                    step.result = e.cause().to_string();
                    steps.push(step);
                    if matches!(e, ConnectError::Handshake(HandshakeError::Redirect { .. })) {
                        // Redirected again: the two nodes' rings disagree.
                        // open_counted left it uncounted, as a redirect to
                        // follow; it is this try's failure.
                        let mut s = ctx.stats();
                        if reconnect {
                            s.counters.reconnect_failed += 1;
                        } else {
                            s.counters.attempted += 1;
                            s.counters.failed += 1;
                        }
                        s.error("redirect_loop");
                    }
                    if unreachable_cause(&e) {
                        tried.failed_on = node;
                    }
                    return tried;
                }
            }
        }
        tried
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_dead_looking_node_is_reported_unreachable() {
        assert!(unreachable_cause(&ConnectError::Refused));
        assert!(unreachable_cause(&ConnectError::Reset));
        assert!(unreachable_cause(&ConnectError::Timeout));
        assert!(unreachable_cause(&ConnectError::NoWelcome(
            "connection ended: eof".into()
        )));
        assert!(!unreachable_cause(&ConnectError::NoWelcome(
            "{\"type\":\"error\",\"code\":\"token_forged\"}".into()
        )));
        assert!(!unreachable_cause(&ConnectError::Handshake(
            HandshakeError::Status(503)
        )));
    }

    #[test]
    fn the_ring_hint_goes_before_the_users_query() {
        let t = Target::parse("ws://127.0.0.1:1/ws").unwrap();
        let hinted = with_ring(t.clone(), Some(7));
        assert_eq!(
            hinted.path_for_user("u", Some("r"), None),
            "/ws?ring=7&userId=u&resume=r"
        );
        assert_eq!(with_ring(t.clone(), None), t);
    }

    #[test]
    fn urls_lose_their_query_and_node_ids_are_learned() {
        assert_eq!(base_url("ws://h:1/ws?userId=u&token=t"), "ws://h:1/ws");
        assert_eq!(base_url("ws://h:1/ws"), "ws://h:1/ws");
        let r = Routing::new(Target::parse_http("http://127.0.0.1:1").unwrap());
        assert!(r.node_of("ws://h:1/ws").is_none());
        r.learn("ws://h:1/ws", "n1");
        r.learn("ws://h:1/ws", "n1b");
        assert_eq!(r.node_of("ws://h:1/ws").as_deref(), Some("n1b"));
    }
}
