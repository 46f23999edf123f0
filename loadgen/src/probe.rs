//! loadgen's own naming of users, message ids and probe payloads. The
//! envelopes around them are `shardcast::protocol`'s (loadgen keeps its own
//! WebSocket framing and handshake, as an independent check of the node's,
//! but not its own envelope format).
//!
//! - User ids are `lg<run>-<index>`: the run id keeps runs apart on a server
//!   that still buffers messages of an earlier run, and the index locates the
//!   user in loadgen's plan without any lookup table.
//! - Message ids are `<sender index>.<seq>`: unique in the run, and they carry
//!   the per-flow sequence, so an `ack` or `error` can be tied to its message.
//! - The `data` of every message is a [`Probe`]: `{"t":..,"s":..,"p":".."}`
//!   with the intended send time (monotonic ns), the per-flow sequence and
//!   padding up to `--payload-bytes`. The echo scenario sends the bare probe.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use shardcast::protocol::client;
use std::borrow::Cow;

/// Probe payload carried in `data` (or as the whole echo message).
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Probe<'a> {
    /// Intended send time, monotonic nanoseconds.
    pub t: u64,
    /// Per-flow sequence number.
    pub s: u64,
    /// Padding (ASCII), so payload size can be chosen.
    #[serde(borrow, default)]
    pub p: Cow<'a, str>,
}

/// The part of a probe the receiver needs (the padding is skipped).
#[derive(Debug, Deserialize, PartialEq, Eq, Clone, Copy)]
pub struct ProbeIn {
    /// Intended send time, monotonic nanoseconds.
    pub t: u64,
    /// Per-flow sequence number.
    pub s: u64,
}

/// Padding that brings a probe's JSON close to `payload_bytes` bytes.
pub fn padding(payload_bytes: usize) -> String {
    // `{"t":<=20 digits,"s":<=20 digits,"p":""}` is about 30-60 bytes; the
    // padding makes up the rest, so small sizes are approximate.
    const OVERHEAD: usize = 40;
    "x".repeat(payload_bytes.saturating_sub(OVERHEAD))
}

/// Appends a `send` of `probe` to `to` (the envelope text comes from
/// `shardcast::protocol`, the one definition of the wire format).
pub fn write_send(out: &mut Vec<u8>, to: &str, id: &str, probe: &Probe<'_>) {
    client::encode_send(out, to, id, &raw(probe));
}

/// Appends a `publish` of `probe` to `room`.
pub fn write_publish(out: &mut Vec<u8>, room: &str, id: &str, probe: &Probe<'_>) {
    client::encode_publish(out, room, id, &raw(probe));
}

fn raw(probe: &Probe<'_>) -> Box<RawValue> {
    serde_json::value::to_raw_value(probe).expect("probes always serialize")
}

/// The probe in a message's `data`, if it is one of loadgen's.
pub fn probe_in(data: &RawValue) -> Option<ProbeIn> {
    serde_json::from_str(data.get()).ok()
}

/// Maps user indexes to user ids and back for one run.
#[derive(Clone, Debug)]
pub struct UserNames {
    prefix: String,
}

impl UserNames {
    /// Names for run `run_id`.
    pub fn new(run_id: &str) -> Self {
        Self {
            prefix: format!("lg{run_id}-"),
        }
    }

    /// The user id of user `index`.
    pub fn name(&self, index: u64) -> String {
        format!("{}{index}", self.prefix)
    }

    /// The index of a user id of this run.
    pub fn index(&self, user: &str) -> Option<u64> {
        user.strip_prefix(&self.prefix)?.parse().ok()
    }

    /// The room name of room `index` for this run.
    pub fn room(&self, index: u64) -> String {
        format!("{}room.{index}", self.prefix)
    }
}

/// The message id of `seq` from sender `sender`.
pub fn message_id(sender: u64, seq: u64) -> String {
    format!("{sender}.{seq}")
}

/// Splits a message id into `(sender, seq)`.
pub fn parse_message_id(id: &str) -> Option<(u64, u64)> {
    let (a, b) = id.split_once('.')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn send_envelope_matches_protocol_v1() {
        let mut out = Vec::new();
        let probe = Probe {
            t: 5,
            s: 7,
            p: "xx".into(),
        };
        write_send(&mut out, "bob", "3.7", &probe);
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            r#"{"type":"send","to":"bob","id":"3.7","data":{"t":5,"s":7,"p":"xx"}}"#
        );
        out.clear();
        write_publish(&mut out, "r.1", "3.8", &probe);
        let parsed = shardcast::protocol::ClientEnvelope::parse(std::str::from_utf8(&out).unwrap());
        assert!(matches!(
            parsed,
            Ok(shardcast::protocol::ClientEnvelope::Publish { .. })
        ));
    }

    #[test]
    fn probes_are_read_back_from_data_and_foreign_data_is_not_a_probe() {
        let data = RawValue::from_string(r#"{"t":100,"s":9,"p":"xyz"}"#.into()).unwrap();
        assert_eq!(probe_in(&data), Some(ProbeIn { t: 100, s: 9 }));
        let foreign = RawValue::from_string("[1,2,3]".into()).unwrap();
        assert_eq!(probe_in(&foreign), None);
    }

    #[test]
    fn user_names_and_message_ids_round_trip() {
        let n = UserNames::new("9f");
        assert_eq!(n.name(42), "lg9f-42");
        assert_eq!(n.index("lg9f-42"), Some(42));
        assert_eq!(n.index("lgxx-42"), None);
        assert_eq!(parse_message_id(&message_id(17, 3)), Some((17, 3)));
        assert_eq!(parse_message_id("nope"), None);
    }

    #[test]
    fn padding_brings_probe_near_the_requested_size() {
        let p = Probe {
            t: 1_700_000_000_000_000_000,
            s: 123_456,
            p: padding(256).into(),
        };
        let len = serde_json::to_string(&p).unwrap().len();
        assert!((230..=280).contains(&len), "{len}");
    }
}
