//! Protocol v1: the JSON envelopes on `/ws` in both directions, their
//! codec, the names they carry (user ids, rooms, subscription patterns) and
//! the stable error and close codes. Pure: no I/O, so every rule here is
//! tested without sockets.
//!
//! This is the one definition of the wire format: the node parses
//! [`ClientEnvelope`]s and encodes [`ServerEnvelope`]s; loadgen and the
//! tests do the opposite with the same types. The golden vectors in
//! `src/protocol/vectors/` pin the texts for every other implementation
//! (the client SDK's tests load them too).

pub mod client;
pub mod codes;
pub mod frame;
pub mod room;
pub mod server;
#[cfg(test)]
mod vectors;

pub use client::{ClientEnvelope, EnvelopeError};
pub use codes::{CloseCode, ErrorCode};
pub use room::{RoomError, RoomName, RoomPattern};
pub use server::{DirectTemplate, ServerEnvelope};

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

/// Appends `s` as a JSON string (escaped by serde_json).
fn json_str(out: &mut Vec<u8>, s: &str) {
    serde_json::to_writer(&mut *out, s).expect("writing to a Vec cannot fail");
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
