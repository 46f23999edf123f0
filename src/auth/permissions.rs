//! Room and send permissions from a token's claims (`--rooms-policy claims`).
//!
//! Claim shape: `"rooms": {"join": [patterns], "publish": [patterns]}` and
//! `"send": true|false`; anything absent grants nothing. Patterns use the
//! wildcard rules of [`crate::protocol::room`] (`*` is exactly one segment).
//!
//! - A **publish** to room `R` is allowed when some `publish` pattern
//!   matches `R`.
//! - A **join** of pattern `P` is allowed when some `join` pattern `A`
//!   *covers* `P`: every room `P` can match, `A` matches too. With
//!   one-segment wildcards that is exact and cheap: `A` and `P` have the
//!   same number of segments and each segment of `A` is `*` or equal to
//!   `P`'s (so `chat.*` covers `chat.*` and `chat.lobby`; `chat.lobby`
//!   does not cover `chat.*`). Several patterns together cover `P` only
//!   when one of them does (a room with a fresh value in each of `P`'s
//!   wildcard segments is matched by none of the literal ones), so checking
//!   them one by one is complete.
//! - `leave` is always allowed; receiving direct messages is always allowed.

use crate::protocol::{RoomName, RoomPattern};

/// Most patterns per list a token may carry (bounds the cost of a join).
pub const MAX_PATTERNS: usize = 256;

/// What a user may do, from its token's claims.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Permissions {
    /// Patterns the user may join (and every pattern they cover).
    pub join: Vec<RoomPattern>,
    /// Patterns of the rooms the user may publish to.
    pub publish: Vec<RoomPattern>,
    /// Whether the user may send direct messages.
    pub send: bool,
}

impl Permissions {
    /// True when `pattern` may be joined.
    pub fn may_join(&self, pattern: &RoomPattern) -> bool {
        self.join.iter().any(|a| covers(a, pattern))
    }

    /// True when `room` may be published to.
    pub fn may_publish(&self, room: &RoomName) -> bool {
        self.publish.iter().any(|a| a.matches(room.as_str()))
    }
}

/// True when every room matched by `requested` is matched by `allowed`.
pub fn covers(allowed: &RoomPattern, requested: &RoomPattern) -> bool {
    let mut want = requested.as_str().split('.');
    for a in allowed.as_str().split('.') {
        match want.next() {
            Some(w) if a == "*" || a == w => {}
            _ => return false,
        }
    }
    want.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn p(s: &str) -> RoomPattern {
        RoomPattern::parse(s).unwrap()
    }

    #[test]
    fn coverage_is_segment_by_segment() {
        assert!(covers(&p("chat.*"), &p("chat.*")));
        assert!(covers(&p("chat.*"), &p("chat.lobby")));
        assert!(covers(&p("*.*"), &p("chat.*")));
        assert!(covers(&p("*"), &p("orders")));
        assert!(!covers(&p("chat.lobby"), &p("chat.*")));
        assert!(!covers(&p("chat.*"), &p("chat")));
        assert!(!covers(&p("chat.*"), &p("chat.lobby.west")));
        assert!(!covers(&p("chat.*"), &p("*.lobby")));
        assert!(!covers(&p("order:7"), &p("order:8")));
    }

    #[test]
    fn permissions_check_join_publish_and_send() {
        let perms = Permissions {
            join: vec![p("order:7.*"), p("news")],
            publish: vec![p("chat.*")],
            send: false,
        };
        assert!(perms.may_join(&p("order:7.status")));
        assert!(perms.may_join(&p("order:7.*")));
        assert!(!perms.may_join(&p("order:8.status")));
        assert!(!perms.may_join(&p("*.status")));
        assert!(perms.may_publish(&RoomName::parse("chat.lobby").unwrap()));
        assert!(!perms.may_publish(&RoomName::parse("news").unwrap()));
        assert!(!Permissions::default().may_join(&p("news")));
    }

    fn pattern() -> impl Strategy<Value = RoomPattern> {
        prop::collection::vec(prop_oneof![Just("*"), Just("a"), Just("b")], 1..4)
            .prop_map(|segs| RoomPattern::parse(&segs.join(".")).unwrap())
    }

    proptest! {
        /// `covers` agrees with its definition on every room over the
        /// alphabet, plus a fresh value for the wildcards.
        #[test]
        fn covers_means_every_matched_room_is_matched(a in pattern(), r in pattern()) {
            let rooms: Vec<String> = {
                let segs: Vec<&str> = r.as_str().split('.').collect();
                let mut out = vec![String::new()];
                for s in segs {
                    let options: &[&str] = if s == "*" { &["a", "b", "fresh"] } else { &[s] };
                    out = out.iter().flat_map(|prefix| options.iter().map(move |o| {
                        if prefix.is_empty() { (*o).to_owned() } else { format!("{prefix}.{o}") }
                    })).collect();
                }
                out
            };
            let all_matched = rooms.iter().all(|room| a.matches(room));
            prop_assert_eq!(covers(&a, &r), all_matched);
        }
    }
}
