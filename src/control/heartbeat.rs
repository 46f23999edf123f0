//! The heartbeat a node sends to the control plane, and its reply: the one
//! definition of `POST /api/v1/nodes/heartbeat`'s JSON, shared by
//! `shardcast-ctl` (which parses and checks it) and the node-side client
//! (which writes it).
//!
//! Invariant: a [`Heartbeat`] that passed [`Heartbeat::parse`] has a valid
//! node id, a `ws://`/`wss://` URL, a weight the ring accepts and finite,
//! non-negative load figures; nothing here panics on untrusted bytes.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::{
    protocol::valid_user_id,
    ring::{MAX_WEIGHT, MIN_WEIGHT},
};

/// Longest `wsUrl` accepted, in bytes.
pub const MAX_WS_URL_BYTES: usize = 512;
/// Longest `zone` accepted, in bytes.
pub const MAX_ZONE_BYTES: usize = 128;
/// Largest `ringVersion` accepted: 2^53, the largest integer every JSON
/// reader (JavaScript included) holds exactly. A version above it would be
/// a forged or broken report, and adopting it would exhaust the versions.
pub const MAX_RING_VERSION: u64 = 1 << 53;

/// One heartbeat: who the node is, where clients reach it, and its load.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Heartbeat {
    /// The node's id (`--node-id`): its identity in the ring. Required.
    pub node_id: String,
    /// Where clients reach the node's WebSocket endpoint, for example
    /// `ws://10.0.0.7:8080/ws`; published as the ring node's `addr`. Required.
    pub ws_url: String,
    /// Relative capacity in the ring. Required.
    pub weight: f64,
    /// Failure domain (rack, availability zone). Absent: `""`.
    #[serde(default)]
    pub zone: String,
    /// WebSocket connections open on the node now.
    #[serde(default)]
    pub connections: u64,
    /// Messages per second the node handled recently.
    #[serde(default)]
    pub mps: f64,
    /// The node's recent 95th-percentile delivery latency, in milliseconds.
    #[serde(default)]
    pub p95_ms: f64,
    /// True while the node drains: it leaves the ring on this heartbeat.
    #[serde(default)]
    pub draining: bool,
    /// The newest ring version the node has (0: none yet).
    #[serde(default)]
    pub ring_version: u64,
}

/// The reply to a heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HeartbeatReply {
    /// Whether the node is in the ring after this heartbeat.
    pub member: bool,
    /// The control plane's current ring version: a node that has an older
    /// one fetches `GET /api/v1/ring`.
    pub ring_version: u64,
}

/// Why a heartbeat body was refused (HTTP 400).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum HeartbeatError {
    /// Not JSON at all, or truncated.
    #[error("the body is not JSON: {0}")]
    BadJson(String),
    /// JSON, but not a heartbeat object (a required field missing, a wrong
    /// type).
    #[error("{0}")]
    Shape(String),
    /// A field with a value outside its rules.
    #[error("`{field}`: {why}")]
    Invalid {
        /// The field, as spelled on the wire.
        field: &'static str,
        /// What its value must be.
        why: &'static str,
    },
}

impl HeartbeatError {
    /// The stable `error` code of the JSON answer.
    pub fn code(&self) -> &'static str {
        match self {
            HeartbeatError::BadJson(_) => "bad_json",
            HeartbeatError::Shape(_) => "invalid_heartbeat",
            HeartbeatError::Invalid { .. } => "invalid_field",
        }
    }
}

impl Heartbeat {
    /// Parses and checks a heartbeat body.
    pub fn parse(body: &[u8]) -> Result<Heartbeat, HeartbeatError> {
        let hb: Heartbeat = serde_json::from_slice(body).map_err(|e| {
            use serde_json::error::Category;
            match e.classify() {
                Category::Data => HeartbeatError::Shape(e.to_string()),
                Category::Io | Category::Syntax | Category::Eof => {
                    HeartbeatError::BadJson(e.to_string())
                }
            }
        })?;
        hb.check()?;
        Ok(hb)
    }

    /// Checks each field's rules.
    pub fn check(&self) -> Result<(), HeartbeatError> {
        let invalid = |field, why| Err(HeartbeatError::Invalid { field, why });
        if !valid_user_id(&self.node_id) {
            return invalid("nodeId", "1-128 bytes of ASCII letters, digits and -_.@:+=");
        }
        if !valid_ws_url(&self.ws_url) {
            return invalid(
                "wsUrl",
                "a ws:// or wss:// URL with a host, at most 512 bytes, no spaces or controls",
            );
        }
        if !(MIN_WEIGHT..=MAX_WEIGHT).contains(&self.weight) {
            return invalid("weight", "a finite number in [1e-9, 1e9]");
        }
        if self.zone.len() > MAX_ZONE_BYTES || self.zone.chars().any(char::is_control) {
            return invalid("zone", "at most 128 bytes, no control characters");
        }
        if !(self.mps.is_finite() && self.mps >= 0.0) {
            return invalid("mps", "a finite number >= 0");
        }
        if !(self.p95_ms.is_finite() && self.p95_ms >= 0.0) {
            return invalid("p95Ms", "a finite number >= 0");
        }
        if self.ring_version > MAX_RING_VERSION {
            return invalid("ringVersion", "at most 2^53");
        }
        Ok(())
    }
}

/// `ws://host…` or `wss://host…`, printable ASCII, bounded.
fn valid_ws_url(url: &str) -> bool {
    let rest = url
        .strip_prefix("ws://")
        .or_else(|| url.strip_prefix("wss://"));
    url.len() <= MAX_WS_URL_BYTES
        && url.bytes().all(|b| b.is_ascii_graphic())
        && rest.is_some_and(|r| !r.is_empty() && !r.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(extra: &str) -> String {
        format!(r#"{{"nodeId":"n1","wsUrl":"ws://127.0.0.1:8080/ws","weight":1{extra}}}"#)
    }

    #[test]
    fn a_minimal_heartbeat_parses_with_defaults() {
        let hb = Heartbeat::parse(body("").as_bytes()).unwrap();
        assert_eq!(hb.node_id, "n1");
        assert_eq!(hb.zone, "");
        assert_eq!(
            (hb.connections, hb.ring_version, hb.draining),
            (0, 0, false)
        );
    }

    #[test]
    fn a_full_heartbeat_round_trips() {
        let hb = Heartbeat {
            node_id: "node-a".into(),
            ws_url: "wss://a.example.com/ws".into(),
            weight: 2.5,
            zone: "eu-1a".into(),
            connections: 12,
            mps: 3.5,
            p95_ms: 8.25,
            draining: true,
            ring_version: 9,
        };
        let json = serde_json::to_string(&hb).unwrap();
        assert!(json.contains(r#""p95Ms":8.25"#) && json.contains(r#""ringVersion":9"#));
        assert_eq!(Heartbeat::parse(json.as_bytes()).unwrap(), hb);
    }

    #[test]
    fn each_bad_body_has_its_code() {
        let cases: &[(&str, &str)] = &[
            ("{", "bad_json"),
            ("not json", "bad_json"),
            ("[]", "invalid_heartbeat"),
            (r#"{"wsUrl":"ws://a","weight":1}"#, "invalid_heartbeat"),
            (r#"{"nodeId":"n","weight":1}"#, "invalid_heartbeat"),
            (r#"{"nodeId":"n","wsUrl":"ws://a"}"#, "invalid_heartbeat"),
            (&body(r#","connections":-1"#), "invalid_heartbeat"),
            (&body(r#","draining":"yes""#), "invalid_heartbeat"),
            (
                r#"{"nodeId":"","wsUrl":"ws://a","weight":1}"#,
                "invalid_field",
            ),
            (
                r#"{"nodeId":"a b","wsUrl":"ws://a","weight":1}"#,
                "invalid_field",
            ),
            (
                r#"{"nodeId":"n","wsUrl":"http://a","weight":1}"#,
                "invalid_field",
            ),
            (
                r#"{"nodeId":"n","wsUrl":"ws://","weight":1}"#,
                "invalid_field",
            ),
            (
                r#"{"nodeId":"n","wsUrl":"ws://a b","weight":1}"#,
                "invalid_field",
            ),
            (
                r#"{"nodeId":"n","wsUrl":"ws://a","weight":0}"#,
                "invalid_field",
            ),
            (
                r#"{"nodeId":"n","wsUrl":"ws://a","weight":-2}"#,
                "invalid_field",
            ),
            (
                r#"{"nodeId":"n","wsUrl":"ws://a","weight":1e300}"#,
                "invalid_field",
            ),
            (&body(r#","mps":-1"#), "invalid_field"),
            (&body(r#","p95Ms":-0.5"#), "invalid_field"),
            (&body(r#","ringVersion":9007199254740993"#), "invalid_field"),
            (&body(r#","zone":"a\u0001""#), "invalid_field"),
        ];
        for (input, code) in cases {
            let err = Heartbeat::parse(input.as_bytes()).unwrap_err();
            assert_eq!(err.code(), *code, "{input}: {err}");
        }
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_are_refused_or_round_trip(data in proptest::collection::vec(proptest::num::u8::ANY, 0..256)) {
            if let Ok(hb) = Heartbeat::parse(&data) {
                let json = serde_json::to_vec(&hb).unwrap();
                proptest::prop_assert_eq!(Heartbeat::parse(&json).unwrap(), hb);
            }
        }

        #[test]
        fn valid_heartbeats_round_trip(
            id in "[A-Za-z0-9._:@+=-]{1,128}",
            host in "[a-z0-9.-]{1,40}",
            weight in 1e-9f64..1e9,
            connections: u64,
            mps in 0.0f64..1e12,
            p95 in 0.0f64..1e6,
            draining: bool,
            version in 0u64..=MAX_RING_VERSION,
        ) {
            let hb = Heartbeat {
                node_id: id,
                ws_url: format!("ws://{host}:8080/ws"),
                weight,
                zone: "z".into(),
                connections,
                mps,
                p95_ms: p95,
                draining,
                ring_version: version,
            };
            let json = serde_json::to_vec(&hb).unwrap();
            proptest::prop_assert_eq!(Heartbeat::parse(&json).unwrap(), hb);
        }
    }

    #[test]
    fn unknown_fields_are_ignored() {
        let hb = Heartbeat::parse(body(r#","future":{"x":1}"#).as_bytes()).unwrap();
        assert_eq!(hb.weight, 1.0);
    }
}
