//! Protocol v1: the JSON envelopes on `/ws`, their codec, the names they
//! carry (user ids, rooms, subscription patterns) and the error codes. Pure:
//! no I/O, so every rule here is tested without sockets.

pub mod envelope;
pub mod frame;
pub mod room;

pub use envelope::{ClientEnvelope, EnvelopeError, ErrorCode};
pub use room::{RoomError, RoomName, RoomPattern};

/// Longest user id accepted, in bytes.
pub const MAX_USER_ID_LEN: usize = 128;
/// Longest message id accepted, in bytes.
pub const MAX_MESSAGE_ID_LEN: usize = 128;

/// True when `id` is a valid user id: 1..=128 bytes of ASCII letters, digits
/// and `-_.@:+=`.
///
/// The set excludes every character that JSON, URLs or logs would need to
/// escape, so ids appear verbatim everywhere; e-mail addresses, UUIDs and
/// `urn:`-style ids fit.
pub fn valid_user_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_USER_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.@:+=".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_ids() {
        for ok in [
            "bob",
            "u-1",
            "a.b@c.d",
            "urn:user:7",
            "x+y=z",
            &"a".repeat(128),
        ] {
            assert!(valid_user_id(ok), "{ok}");
        }
        for bad in ["", "a b", "a/b", "é", "a\"b", "a\nb", &"a".repeat(129)] {
            assert!(!valid_user_id(bad), "{bad}");
        }
    }
}
