//! The relay's record formats (pure): what a Kafka record's key and value
//! hold, for the two topics.
//!
//! - A direct message, on the recipient node's topic: key = the recipient's
//!   user id, value = its offset (8 bytes, big-endian) then its `msg`
//!   envelope exactly as the client receives it (it already carries the
//!   offset, in text).
//! - A room message, on the rooms topic: key = the room, value = the origin
//!   node's id (1 byte length, then the id: a node skips its own) then the
//!   room envelope.
//!
//! Records are produced and read only by shardcast nodes of one cluster; a
//! record that does not parse is counted and skipped, never delivered.

use bytes::Bytes;

/// A direct message read from the relay.
#[derive(Debug, PartialEq, Eq)]
pub struct DirectRecord<'a> {
    pub to: &'a str,
    pub offset: u64,
    pub envelope: &'a [u8],
}

/// A room message read from the relay.
#[derive(Debug, PartialEq, Eq)]
pub struct RoomRecord<'a> {
    pub room: &'a str,
    pub origin: &'a str,
    pub envelope: &'a [u8],
}

/// The value of a direct message's record.
pub fn direct_value(offset: u64, envelope: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(8 + envelope.len());
    v.extend_from_slice(&offset.to_be_bytes());
    v.extend_from_slice(envelope);
    v
}

/// Parses a direct message's record; `None` if it is not one.
pub fn parse_direct<'a>(key: &'a [u8], value: &'a [u8]) -> Option<DirectRecord<'a>> {
    let to = std::str::from_utf8(key).ok().filter(|k| !k.is_empty())?;
    let (offset, envelope) = value.split_first_chunk::<8>()?;
    Some(DirectRecord {
        to,
        offset: u64::from_be_bytes(*offset),
        envelope,
    })
}

/// The value of a room message's record; `None` when the origin id does
/// not fit its length byte.
pub fn room_value(origin: &str, envelope: &Bytes) -> Option<Vec<u8>> {
    let len = u8::try_from(origin.len()).ok()?;
    let mut v = Vec::with_capacity(1 + origin.len() + envelope.len());
    v.push(len);
    v.extend_from_slice(origin.as_bytes());
    v.extend_from_slice(envelope);
    Some(v)
}

/// Parses a room message's record; `None` if it is not one.
pub fn parse_room<'a>(key: &'a [u8], value: &'a [u8]) -> Option<RoomRecord<'a>> {
    let room = std::str::from_utf8(key).ok().filter(|k| !k.is_empty())?;
    let (&len, rest) = value.split_first()?;
    let (origin, envelope) = rest.split_at_checked(len as usize)?;
    Some(RoomRecord {
        room,
        origin: std::str::from_utf8(origin).ok()?,
        envelope,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn records_round_trip() {
        let v = direct_value(42, b"{\"type\":\"msg\"}");
        assert_eq!(
            parse_direct(b"bob", &v),
            Some(DirectRecord {
                to: "bob",
                offset: 42,
                envelope: b"{\"type\":\"msg\"}"
            })
        );
        let v = room_value("node-a", &Bytes::from_static(b"{}")).unwrap();
        assert_eq!(
            parse_room(b"chat.lobby", &v),
            Some(RoomRecord {
                room: "chat.lobby",
                origin: "node-a",
                envelope: b"{}"
            })
        );
        assert_eq!(room_value(&"x".repeat(256), &Bytes::new()), None);
    }

    #[test]
    fn foreign_records_are_refused() {
        assert_eq!(parse_direct(b"", &direct_value(1, b"x")), None);
        assert_eq!(parse_direct(b"bob", b"short"), None);
        assert_eq!(parse_direct(&[0xff], &direct_value(1, b"x")), None);
        assert_eq!(parse_room(b"r", &[9, b'a']), None);
        assert_eq!(parse_room(b"r", &[]), None);
    }

    proptest! {
        #[test]
        fn parsing_never_panics(key in proptest::collection::vec(any::<u8>(), 0..16),
                                value in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = parse_direct(&key, &value);
            let _ = parse_room(&key, &value);
        }
    }
}
