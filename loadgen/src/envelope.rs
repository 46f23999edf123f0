//! Protocol v1 envelopes as loadgen speaks them, and loadgen's own naming of
//! users, message ids and probe payloads.
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

/// Client → server envelopes loadgen sends.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ClientEnvelope<'a> {
    /// Direct message.
    Send {
        /// Recipient user id.
        to: &'a str,
        /// Message id.
        id: &'a str,
        /// The probe.
        data: Probe<'a>,
    },
    /// Subscribe to a room (pattern).
    Join {
        /// Room or pattern.
        room: &'a str,
    },
    /// Publish to a room.
    Publish {
        /// Room.
        room: &'a str,
        /// Message id.
        id: &'a str,
        /// The probe.
        data: Probe<'a>,
    },
}

impl ClientEnvelope<'_> {
    /// Appends the JSON text of this envelope to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        serde_json::to_writer(out, self).expect("envelopes always serialize");
    }
}

/// Any server → client envelope; fields a type does not use are `None`.
#[derive(Debug, Deserialize)]
pub struct ServerEnvelope<'a> {
    /// `welcome`, `msg`, `ack`, `error`, `reconnect`, ...
    #[serde(rename = "type", borrow)]
    pub kind: Cow<'a, str>,
    /// Sender of a `msg`.
    #[serde(borrow, default)]
    pub from: Option<Cow<'a, str>>,
    /// Message id (`msg`, `ack`, `error`).
    #[serde(borrow, default)]
    pub id: Option<Cow<'a, str>>,
    /// Room of a room `msg`.
    #[serde(borrow, default)]
    pub room: Option<Cow<'a, str>>,
    /// Per-user offset (`welcome`, `msg`).
    #[serde(default)]
    pub offset: Option<u64>,
    /// Payload of a `msg`, kept raw so foreign payloads do not fail parsing.
    #[serde(borrow, default)]
    pub data: Option<&'a RawValue>,
    /// Resume token (`welcome`, `reconnect`).
    #[serde(rename = "resumeToken", default)]
    pub resume_token: Option<String>,
    /// Suggested delay before reconnecting (`reconnect`).
    #[serde(rename = "retryAfterMs", default)]
    pub retry_after_ms: Option<u64>,
    /// Error code (`error`).
    #[serde(borrow, default)]
    pub code: Option<Cow<'a, str>>,
}

impl<'a> ServerEnvelope<'a> {
    /// Parses one text frame.
    pub fn parse(text: &'a [u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(text)
    }

    /// The probe in `data`, if it is one of loadgen's.
    pub fn probe(&self) -> Option<ProbeIn> {
        self.data
            .and_then(|raw| serde_json::from_str::<ProbeIn>(raw.get()).ok())
    }
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
        ClientEnvelope::Send {
            to: "bob",
            id: "3.7",
            data: Probe {
                t: 5,
                s: 7,
                p: "xx".into(),
            },
        }
        .write_to(&mut out);
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            r#"{"type":"send","to":"bob","id":"3.7","data":{"t":5,"s":7,"p":"xx"}}"#
        );
        out.clear();
        ClientEnvelope::Join { room: "r.*" }.write_to(&mut out);
        assert_eq!(out, br#"{"type":"join","room":"r.*"}"#);
    }

    #[test]
    fn parses_every_server_envelope_kind() {
        let w = br#"{"type":"welcome","userId":"u","node":"n1","resumeToken":"T","offset":4}"#;
        let e = ServerEnvelope::parse(w).unwrap();
        assert_eq!(e.kind, "welcome");
        assert_eq!(e.resume_token.as_deref(), Some("T"));
        assert_eq!(e.offset, Some(4));

        let m = br#"{"type":"msg","from":"lgab-1","id":"1.9","offset":12,"data":{"t":100,"s":9,"p":"xyz"}}"#;
        let e = ServerEnvelope::parse(m).unwrap();
        assert_eq!(e.from.as_deref(), Some("lgab-1"));
        assert_eq!(e.probe(), Some(ProbeIn { t: 100, s: 9 }));

        let f = br#"{"type":"msg","from":"x","id":"z","data":[1,2,3]}"#;
        assert_eq!(ServerEnvelope::parse(f).unwrap().probe(), None);

        let err = br#"{"type":"error","code":"rate_limited","id":"1.2","message":"slow down"}"#;
        let e = ServerEnvelope::parse(err).unwrap();
        assert_eq!(e.code.as_deref(), Some("rate_limited"));

        let r = br#"{"type":"reconnect","resumeToken":"R","retryAfterMs":250}"#;
        let e = ServerEnvelope::parse(r).unwrap();
        assert_eq!(e.retry_after_ms, Some(250));
    }

    #[test]
    fn escaped_strings_still_parse() {
        let m = br#"{"type":"msg","from":"a\u0041","id":"1.2"}"#;
        assert_eq!(
            ServerEnvelope::parse(m).unwrap().from.as_deref(),
            Some("aA")
        );
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
