//! Room names and subscription patterns.
//!
//! A room name is 1..=128 bytes of dot-separated segments; each segment is
//! 1 or more ASCII letters, digits, `-`, `_` or `:` (`chat.lobby`,
//! `game:7.alert`). A pattern is a room name in which any segment may be the
//! single character `*`, which matches exactly one whole segment:
//! `chat.*` matches `chat.lobby` but neither `chat` nor `chat.lobby.west`;
//! `*.alert` matches `ops.alert`; `*` matches every one-segment room. There
//! is no multi-segment wildcard. Publishing names a room, never a pattern.

use thiserror::Error;

/// Longest room name or pattern, in bytes.
pub const MAX_ROOM_LEN: usize = 128;

/// Why a room name or pattern was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RoomError {
    #[error("room must be 1..=128 bytes")]
    Length,
    #[error("room segments must be non-empty and use only letters, digits, '-', '_' and ':'")]
    Segment,
    #[error("wildcards are only allowed in subscriptions, not in published rooms")]
    WildcardInName,
}

fn check(text: &str, allow_wildcard: bool) -> Result<bool, RoomError> {
    if text.is_empty() || text.len() > MAX_ROOM_LEN {
        return Err(RoomError::Length);
    }
    let mut wild = false;
    for seg in text.split('.') {
        if seg == "*" {
            if !allow_wildcard {
                return Err(RoomError::WildcardInName);
            }
            wild = true;
        } else if seg.is_empty()
            || !seg
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_:".contains(&b))
        {
            return Err(if !allow_wildcard && seg.contains('*') {
                RoomError::WildcardInName
            } else {
                RoomError::Segment
            });
        }
    }
    Ok(wild)
}

/// A validated room name (no wildcards).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RoomName(String);

impl RoomName {
    /// Validates `name`.
    pub fn parse(name: &str) -> Result<RoomName, RoomError> {
        check(name, false).map(|_| RoomName(name.to_owned()))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A validated subscription: an exact room or a pattern with `*` segments.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RoomPattern {
    text: String,
    wildcard: bool,
}

impl RoomPattern {
    /// Validates `pattern`.
    pub fn parse(pattern: &str) -> Result<RoomPattern, RoomError> {
        check(pattern, true).map(|wildcard| RoomPattern {
            text: pattern.to_owned(),
            wildcard,
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// True when the pattern has at least one `*` segment.
    pub fn is_wildcard(&self) -> bool {
        self.wildcard
    }

    /// True when `room` is matched by this pattern.
    pub fn matches(&self, room: &str) -> bool {
        if !self.wildcard {
            return self.text == room;
        }
        let mut segs = room.split('.');
        for want in self.text.split('.') {
            match segs.next() {
                Some(got) if want == "*" || want == got => {}
                _ => return false,
            }
        }
        segs.next().is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, r: &str) -> bool {
        RoomPattern::parse(p).unwrap().matches(r)
    }

    #[test]
    fn exact_pattern_matches_only_itself() {
        assert!(m("chat.lobby", "chat.lobby"));
        assert!(!m("chat.lobby", "chat.lobby2"));
        assert!(!m("chat.lobby", "chat"));
    }

    #[test]
    fn star_matches_exactly_one_segment() {
        assert!(m("chat.*", "chat.lobby"));
        assert!(!m("chat.*", "chat"));
        assert!(!m("chat.*", "chat.lobby.west"));
        assert!(m("*.alert", "ops.alert"));
        assert!(!m("*.alert", "ops.alerts"));
        assert!(!m("*.alert", "a.b.alert"));
        assert!(m("*", "lobby"));
        assert!(!m("*", "chat.lobby"));
        assert!(m("a.*.c", "a.b.c"));
        assert!(m("*.*", "x.y"));
    }

    #[test]
    fn star_is_a_whole_segment_or_invalid() {
        assert_eq!(RoomPattern::parse("chat.lob*"), Err(RoomError::Segment));
        assert_eq!(RoomPattern::parse("**"), Err(RoomError::Segment));
    }

    #[test]
    fn names_refuse_wildcards_and_bad_segments() {
        assert_eq!(RoomName::parse("chat.*"), Err(RoomError::WildcardInName));
        assert_eq!(RoomName::parse("chat.lob*"), Err(RoomError::WildcardInName));
        assert_eq!(RoomName::parse(""), Err(RoomError::Length));
        assert_eq!(RoomName::parse("a..b"), Err(RoomError::Segment));
        assert_eq!(RoomName::parse(".a"), Err(RoomError::Segment));
        assert_eq!(RoomName::parse("a b"), Err(RoomError::Segment));
        assert_eq!(RoomName::parse(&"a".repeat(129)), Err(RoomError::Length));
        assert!(RoomName::parse("game:7.alert").is_ok());
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn any_text_is_a_pattern_or_refused_without_panic(text in "\\PC{0,150}") {
                if let Ok(p) = RoomPattern::parse(&text) {
                    prop_assert_eq!(p.as_str(), text.as_str());
                    prop_assert!(p.as_str().len() <= MAX_ROOM_LEN);
                }
                let _ = RoomName::parse(&text);
            }

            #[test]
            fn a_room_matches_itself_and_star_matches_each_segment(
                segs in prop::collection::vec("[a-z0-9:_-]{1,6}", 1..6),
                star in any::<prop::sample::Index>(),
            ) {
                let room = segs.join(".");
                prop_assert!(RoomName::parse(&room).is_ok());
                prop_assert!(RoomPattern::parse(&room).unwrap().matches(&room));
                let mut wild = segs.clone();
                wild[star.index(segs.len())] = "*".into();
                let pattern = RoomPattern::parse(&wild.join(".")).unwrap();
                prop_assert!(pattern.is_wildcard());
                prop_assert!(pattern.matches(&room));
                let longer = format!("{room}.x");
                prop_assert!(!pattern.matches(&longer));
            }
        }
    }
}
