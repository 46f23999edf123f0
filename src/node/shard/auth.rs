//! A connection's credentials on its owning core: the grant of the JWT it
//! connected with, `refresh` envelopes that replace it, the permission
//! checks of `join`/`publish`/`send` under `--rooms-policy claims`, and the
//! close of a connection whose token expired.
//!
//! Invariant: `conn.expires_at` is the `exp` of the newest valid token of
//! the connection (0 without `--auth jwt`); housekeeping closes the
//! connection with 4003 once it is past (plus the leeway).

use crate::{
    auth::{Grant, Permissions, RoomsPolicy},
    metrics::DropReason,
    protocol::{CloseCode, ErrorCode},
};

use super::{super::conn::Conn, unix_now, Shard};

impl Shard {
    /// Records what `conn`'s token grants: its expiry, and its permissions
    /// when the rooms policy is `claims`.
    pub fn authorize(&self, conn: &Conn, grant: Grant) {
        conn.expires_at.set(grant.expires_at);
        if self.config.rooms_policy == RoomsPolicy::Claims {
            *conn.permissions.borrow_mut() = Some(Box::new(grant.permissions));
        }
    }

    /// Closes `conn` (4003) when its token is past `exp` plus the leeway at
    /// unix time `now`; true when it did.
    pub(super) fn close_if_expired(&self, conn: &Conn, now: u64) -> bool {
        let exp = conn.expires_at.get();
        if exp == 0 || now < exp.saturating_add(self.config.jwt_leeway_secs) {
            return false;
        }
        conn.expires_at.set(0);
        conn.request_close(CloseCode::TokenExpired);
        true
    }
}

impl Shard {
    /// Handles `{"type":"refresh"}`: a valid token for the same user
    /// replaces the connection's grant (expiry and permissions; held
    /// subscriptions the new claims no longer cover are dropped); a refused
    /// one leaves the current grant in force and answers `refresh_refused`.
    pub(super) fn refresh(&self, conn: &Conn, user: &str, token: &str, id: Option<&str>) {
        let Some(jwt) = self.config.jwt.as_deref() else {
            return conn.push_error(
                ErrorCode::RefreshRefused,
                id,
                "this node runs without --auth jwt: there is nothing to refresh",
            );
        };
        match jwt.verify_for(token, Some(user), unix_now()) {
            Ok(grant) => {
                self.authorize(conn, grant);
                self.drop_uncovered_subscriptions(conn);
                if let Some(id) = id {
                    conn.push_ack(id);
                }
            }
            Err(e) => {
                self.counters().auth_failure(e.reason());
                let message = format!("{}: {e}", e.reason().as_str());
                conn.push_error(ErrorCode::RefreshRefused, id, &message);
            }
        }
    }

    /// True when `conn` may do what `check` asks of its permissions (always,
    /// under `--rooms-policy open`).
    pub(super) fn permits(&self, conn: &Conn, check: impl FnOnce(&Permissions) -> bool) -> bool {
        conn.permissions.borrow().as_deref().map_or(true, check)
    }

    /// Answers a refused `join`/`publish`/`send` with `forbidden`.
    pub(super) fn forbidden(&self, conn: &Conn, id: Option<&str>, message: &str) {
        self.counters().drop(DropReason::Invalid);
        conn.push_error(ErrorCode::Forbidden, id, message);
    }

    fn drop_uncovered_subscriptions(&self, conn: &Conn) {
        let perms = conn.permissions.borrow();
        let Some(perms) = perms.as_deref() else {
            return;
        };
        let mut rooms = self.rooms.borrow_mut();
        conn.subscriptions.borrow_mut().retain(|pattern| {
            let keep = perms.may_join(pattern);
            if !keep {
                rooms.unsubscribe(pattern, conn.id);
            }
            keep
        });
    }
}
