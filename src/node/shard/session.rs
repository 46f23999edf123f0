//! Opening a session: the resume token, the user's connections (the oldest
//! is closed with 4001 past `--max-connections-per-user`), `welcome`, and
//! the replay of the backlog.
//!
//! Invariant: between `begin_replay` and `end_replay` live direct messages
//! for the user are held back on the connection, so the backlog read from the
//! store and the live stream meet with no gap and no duplicate (see
//! `node::order`).

use std::{
    rc::Rc,
    time::{SystemTime, UNIX_EPOCH},
};

use crate::{
    metrics::DropReason,
    protocol::{server, CloseCode, ErrorCode},
    store::{Session, Store, StoreError},
    token::{ResumeToken, TokenError},
};

use super::{super::conn::Conn, Shard};

impl Shard {
    /// Opens `conn`'s session: checks the resume token, adds `conn` to the
    /// user's connections (closing the oldest over the cap), queues
    /// `welcome` and then the backlog.
    pub async fn open_session(&self, conn: &Rc<Conn>, user: Rc<str>, resume: Option<&str>) {
        let token = match resume.map(|t| self.verify_token(t, &user)) {
            Some(Err(e)) => {
                self.counters().drop(DropReason::Invalid);
                conn.push_error(e.code(), None, &e.to_string());
                conn.request_close(CloseCode::TokenRefused);
                return;
            }
            Some(Ok(t)) => {
                self.counters().reconnect();
                Some(t)
            }
            None => None,
        };
        // The user's other connections record their delivered marks only
        // when they close; a plain connect starts after the furthest any of
        // them has written so far (the one it may replace included).
        let (others_mark, replaced) = {
            let mut users = self.users.borrow_mut();
            let entry = users.entry(user.clone()).or_default();
            let mark = entry.furthest_delivered();
            (
                mark,
                entry.add(conn.clone(), self.config.max_connections_per_user),
            )
        };
        for old in replaced {
            old.request_close(CloseCode::Replaced);
        }
        conn.begin_replay();
        let result: Result<(), StoreError> = async {
            let after = match &token {
                // A token past the store's last offset names history the
                // store no longer has (it was reset, or the token is from a
                // node with another store): everything buffered is new.
                Some(t) if t.offset > self.store.last_offset(&user).await? => 0,
                Some(t) => t.offset,
                None => self.store.delivered(&user).await?.max(others_mark),
            };
            conn.start_after(after);
            let signed = self.sign_token(&user, after);
            conn.push_text(|o| {
                server::encode_welcome(o, &user, &self.config.node_id, &signed, after)
            });
            // The session is recorded before the backlog is read: a message
            // appended on another node before the record is in the read, one
            // appended after it finds this node in the record and is relayed
            // here (see crate::relay).
            self.store
                .open_session(&user, &self.session_of(conn))
                .await?;
            let backlog = self.store.read_after(&user, after).await?;
            self.end_replay(conn, backlog);
            Ok(())
        }
        .await;
        if let Err(e) = result {
            self.end_replay(conn, Vec::new());
            conn.push_error(ErrorCode::Unavailable, None, &e.to_string());
            conn.request_close(CloseCode::StoreFailed);
        }
    }

    /// The session record of `conn`: this node, this core, since it opened.
    pub(super) fn session_of(&self, conn: &Conn) -> Session {
        Session {
            node: self.node_id.clone(),
            core: self.id,
            since_ms: conn.opened_ms,
        }
    }

    fn verify_token(&self, token: &str, user: &str) -> Result<ResumeToken, TokenError> {
        ResumeToken::verify(
            token,
            &self.config.secret,
            user,
            unix_now(),
            self.config.token_ttl_secs,
        )
    }

    /// A resume token for `user` at `offset`, issued now.
    pub fn sign_token(&self, user: &str, offset: u64) -> String {
        ResumeToken {
            user_id: user.to_owned(),
            offset,
            issued_at: unix_now(),
        }
        .sign(&self.config.secret)
    }
}

/// Seconds since the unix epoch.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
