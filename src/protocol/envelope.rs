//! The JSON envelopes of protocol v1: parsing what clients send, encoding
//! what the node sends.
//!
//! Parsing borrows from the frame (ids, rooms and `data` are not copied
//! unless they contain escapes); `data` is kept as raw JSON text and passed
//! through byte for byte. Unknown fields are ignored so clients can be newer
//! than the node. Encoding writes the envelope text directly into a buffer;
//! strings are escaped by serde_json.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::{valid_user_id, RoomName, RoomPattern, MAX_MESSAGE_ID_LEN};

/// The stable error codes of the `error` envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// The frame is not a JSON object.
    BadJson,
    /// A field is missing, has the wrong JSON type, or an invalid value.
    BadEnvelope,
    /// `type` names no known envelope.
    UnknownType,
    /// `to` is not a valid user id.
    BadUser,
    /// `room` is not a valid room name or pattern.
    BadRoom,
    /// The user is over its rate limit for this kind of message.
    RateLimited,
    /// The connection already holds the most subscriptions allowed.
    TooManySubscriptions,
    /// A binary frame arrived on `/ws`, which speaks JSON text only.
    BinaryNotSupported,
    /// The resume token is not valid (the `message` says why).
    BadToken,
    /// The node could not make the message durable; it was not delivered.
    Unavailable,
}

impl ErrorCode {
    /// The code as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadJson => "bad_json",
            ErrorCode::BadEnvelope => "bad_envelope",
            ErrorCode::UnknownType => "unknown_type",
            ErrorCode::BadUser => "bad_user",
            ErrorCode::BadRoom => "bad_room",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::TooManySubscriptions => "too_many_subscriptions",
            ErrorCode::BinaryNotSupported => "binary_not_supported",
            ErrorCode::BadToken => "bad_token",
            ErrorCode::Unavailable => "unavailable",
        }
    }
}

/// A refused envelope: what to tell the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvelopeError {
    /// The stable code.
    pub code: ErrorCode,
    /// The message id, when the envelope carried a readable one.
    pub id: Option<String>,
    /// A human-readable explanation.
    pub message: String,
}

/// A valid envelope from a client. Borrowed from the frame it was parsed from.
#[derive(Debug)]
pub enum ClientEnvelope<'a> {
    /// `{"type":"send","to":…,"id":…,"data":…}`: a direct message.
    Send {
        to: Cow<'a, str>,
        id: Cow<'a, str>,
        data: &'a RawValue,
    },
    /// `{"type":"join","room":…}`: subscribe to a room or pattern.
    Join { pattern: RoomPattern },
    /// `{"type":"leave","room":…}`: drop a subscription made by `join`.
    Leave { pattern: RoomPattern },
    /// `{"type":"publish","room":…,"id":…,"data":…}`: a message to a room.
    Publish {
        room: RoomName,
        id: Cow<'a, str>,
        data: &'a RawValue,
    },
}

#[derive(Deserialize)]
struct RawEnvelope<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    to: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    room: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
}

fn null() -> &'static RawValue {
    // A static "null" so an absent `data` is forwarded as JSON null.
    static NULL: std::sync::OnceLock<Box<RawValue>> = std::sync::OnceLock::new();
    NULL.get_or_init(|| RawValue::from_string("null".to_owned()).expect("null is JSON"))
}

impl<'a> ClientEnvelope<'a> {
    /// Parses one text frame.
    pub fn parse(text: &'a str) -> Result<ClientEnvelope<'a>, EnvelopeError> {
        let err = |code, id: Option<&str>, message: String| EnvelopeError {
            code,
            id: id.map(str::to_owned),
            message,
        };
        // serde would also build the struct from a JSON array; the protocol
        // only has objects.
        if !text.trim_start().starts_with('{') {
            return Err(err(
                ErrorCode::BadJson,
                None,
                "expected a JSON object".into(),
            ));
        }
        let raw: RawEnvelope<'a> = serde_json::from_str(text).map_err(|e| {
            let code = if e.is_data() {
                ErrorCode::BadEnvelope
            } else {
                ErrorCode::BadJson
            };
            err(code, None, e.to_string())
        })?;
        let id = raw.id.as_deref();
        let Some(kind) = raw.kind.as_deref() else {
            return Err(err(
                ErrorCode::BadEnvelope,
                id,
                "missing field `type`".into(),
            ));
        };
        let missing = |field: &str| {
            err(
                ErrorCode::BadEnvelope,
                id,
                format!("{kind}: missing field `{field}`"),
            )
        };
        let need_id = |raw_id: Option<Cow<'a, str>>| -> Result<Cow<'a, str>, EnvelopeError> {
            let id = raw_id.ok_or_else(|| missing("id"))?;
            if id.is_empty() || id.len() > MAX_MESSAGE_ID_LEN {
                return Err(err(
                    ErrorCode::BadEnvelope,
                    None,
                    format!("`id` must be 1..={MAX_MESSAGE_ID_LEN} bytes"),
                ));
            }
            Ok(id)
        };
        let pattern = |room: Option<&str>| {
            let room = room.ok_or_else(|| missing("room"))?;
            RoomPattern::parse(room).map_err(|e| err(ErrorCode::BadRoom, id, e.to_string()))
        };
        match kind {
            "send" => {
                let to = raw.to.clone().ok_or_else(|| missing("to"))?;
                if !valid_user_id(&to) {
                    return Err(err(
                        ErrorCode::BadUser,
                        id,
                        "`to` is not a valid user id".into(),
                    ));
                }
                Ok(ClientEnvelope::Send {
                    to,
                    id: need_id(raw.id.clone())?,
                    data: raw.data.unwrap_or_else(|| null()),
                })
            }
            "join" => Ok(ClientEnvelope::Join {
                pattern: pattern(raw.room.as_deref())?,
            }),
            "leave" => Ok(ClientEnvelope::Leave {
                pattern: pattern(raw.room.as_deref())?,
            }),
            "publish" => {
                let room = raw.room.as_deref().ok_or_else(|| missing("room"))?;
                let room = RoomName::parse(room)
                    .map_err(|e| err(ErrorCode::BadRoom, id, e.to_string()))?;
                Ok(ClientEnvelope::Publish {
                    room,
                    id: need_id(raw.id.clone())?,
                    data: raw.data.unwrap_or_else(|| null()),
                })
            }
            other => Err(err(
                ErrorCode::UnknownType,
                id,
                format!("unknown type `{}`", other.escape_default()),
            )),
        }
    }
}

/// Appends `s` as a JSON string.
fn json_str(out: &mut Vec<u8>, s: &str) {
    serde_json::to_writer(&mut *out, s).expect("writing to a Vec cannot fail");
}

/// Appends a `welcome` envelope.
pub fn encode_welcome(out: &mut Vec<u8>, user: &str, node: &str, token: &str, offset: u64) {
    out.extend_from_slice(br#"{"type":"welcome","userId":"#);
    json_str(out, user);
    out.extend_from_slice(br#","node":"#);
    json_str(out, node);
    out.extend_from_slice(br#","resumeToken":"#);
    json_str(out, token);
    out.extend_from_slice(br#","offset":"#);
    out.extend_from_slice(itoa_u64(offset).as_bytes());
    out.push(b'}');
}

/// Appends a direct `msg` envelope.
pub fn encode_direct(out: &mut Vec<u8>, from: &str, id: &str, offset: u64, data: &str) {
    out.extend_from_slice(br#"{"type":"msg","from":"#);
    json_str(out, from);
    out.extend_from_slice(br#","id":"#);
    json_str(out, id);
    out.extend_from_slice(br#","offset":"#);
    out.extend_from_slice(itoa_u64(offset).as_bytes());
    out.extend_from_slice(br#","data":"#);
    out.extend_from_slice(data.as_bytes());
    out.push(b'}');
}

/// Appends a room `msg` envelope (room messages carry `room` and no offset).
pub fn encode_room(out: &mut Vec<u8>, room: &str, from: &str, id: &str, data: &str) {
    out.extend_from_slice(br#"{"type":"msg","room":"#);
    json_str(out, room);
    out.extend_from_slice(br#","from":"#);
    json_str(out, from);
    out.extend_from_slice(br#","id":"#);
    json_str(out, id);
    out.extend_from_slice(br#","data":"#);
    out.extend_from_slice(data.as_bytes());
    out.push(b'}');
}

/// Appends an `ack` envelope.
pub fn encode_ack(out: &mut Vec<u8>, id: &str) {
    out.extend_from_slice(br#"{"type":"ack","id":"#);
    json_str(out, id);
    out.push(b'}');
}

/// Appends an `error` envelope.
pub fn encode_error(out: &mut Vec<u8>, code: &str, id: Option<&str>, message: &str) {
    out.extend_from_slice(br#"{"type":"error","code":"#);
    json_str(out, code);
    if let Some(id) = id {
        out.extend_from_slice(br#","id":"#);
        json_str(out, id);
    }
    out.extend_from_slice(br#","message":"#);
    json_str(out, message);
    out.push(b'}');
}

/// Appends a `reconnect` envelope.
pub fn encode_reconnect(out: &mut Vec<u8>, token: &str, retry_after_ms: u64) {
    out.extend_from_slice(br#"{"type":"reconnect","resumeToken":"#);
    json_str(out, token);
    out.extend_from_slice(br#","retryAfterMs":"#);
    out.extend_from_slice(itoa_u64(retry_after_ms).as_bytes());
    out.push(b'}');
}

fn itoa_u64(n: u64) -> String {
    // Envelopes are built once per message; a String here is cheaper to read
    // than a hand-rolled digit loop and not measurable next to the JSON work.
    n.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn parse(s: &str) -> Result<ClientEnvelope<'_>, EnvelopeError> {
        ClientEnvelope::parse(s)
    }

    fn code(s: &str) -> ErrorCode {
        parse(s).unwrap_err().code
    }

    #[test]
    fn send_parses_and_keeps_data_verbatim() {
        let e = parse(r#"{"type":"send","to":"bob","id":"m1","data":{"a": [1, 2.50]}}"#).unwrap();
        let ClientEnvelope::Send { to, id, data } = e else {
            panic!()
        };
        assert_eq!(
            (&*to, &*id, data.get()),
            ("bob", "m1", r#"{"a": [1, 2.50]}"#)
        );
    }

    #[test]
    fn absent_data_is_null() {
        let ClientEnvelope::Send { data, .. } =
            parse(r#"{"type":"send","to":"bob","id":"m1"}"#).unwrap()
        else {
            panic!()
        };
        assert_eq!(data.get(), "null");
    }

    #[test]
    fn join_leave_publish_parse() {
        assert!(matches!(
            parse(r#"{"type":"join","room":"chat.*"}"#),
            Ok(ClientEnvelope::Join { .. })
        ));
        assert!(matches!(
            parse(r#"{"type":"leave","room":"chat.*"}"#),
            Ok(ClientEnvelope::Leave { .. })
        ));
        assert!(matches!(
            parse(r#"{"type":"publish","room":"chat.lobby","id":"m2","data":1}"#),
            Ok(ClientEnvelope::Publish { .. })
        ));
    }

    #[test]
    fn unknown_fields_are_ignored() {
        assert!(parse(r#"{"type":"join","room":"a","extra":{"x":1}}"#).is_ok());
    }

    #[test]
    fn malformed_json_is_bad_json() {
        assert_eq!(code("{"), ErrorCode::BadJson);
        assert_eq!(code("not json"), ErrorCode::BadJson);
        assert_eq!(code(r#"["send","bob"]"#), ErrorCode::BadJson);
        assert_eq!(code(""), ErrorCode::BadJson);
    }

    #[test]
    fn wrong_types_and_missing_fields_are_bad_envelope() {
        assert_eq!(
            code(r#"{"type":"send","to":7,"id":"m"}"#),
            ErrorCode::BadEnvelope
        );
        assert_eq!(code(r#"{"type":1}"#), ErrorCode::BadEnvelope);
        assert_eq!(code(r#"{"to":"bob"}"#), ErrorCode::BadEnvelope);
        assert_eq!(code(r#"{"type":"send","id":"m"}"#), ErrorCode::BadEnvelope);
        assert_eq!(
            code(r#"{"type":"send","to":"bob"}"#),
            ErrorCode::BadEnvelope
        );
        assert_eq!(
            code(r#"{"type":"send","to":"bob","id":""}"#),
            ErrorCode::BadEnvelope
        );
        assert_eq!(
            code(r#"{"type":"publish","room":"a","data":1}"#),
            ErrorCode::BadEnvelope
        );
        assert_eq!(code(r#"{"type":"join"}"#), ErrorCode::BadEnvelope);
    }

    #[test]
    fn missing_field_error_keeps_the_id() {
        let e = parse(r#"{"type":"send","id":"m9"}"#).unwrap_err();
        assert_eq!(e.id.as_deref(), Some("m9"));
        assert!(e.message.contains("`to`"), "{}", e.message);
    }

    #[test]
    fn unknown_type_and_bad_names() {
        assert_eq!(code(r#"{"type":"dance"}"#), ErrorCode::UnknownType);
        assert_eq!(
            code(r#"{"type":"send","to":"b o b","id":"m"}"#),
            ErrorCode::BadUser
        );
        assert_eq!(code(r#"{"type":"join","room":"a..b"}"#), ErrorCode::BadRoom);
        assert_eq!(
            code(r#"{"type":"publish","room":"chat.*","id":"m"}"#),
            ErrorCode::BadRoom
        );
    }

    #[test]
    fn escaped_strings_parse() {
        let ClientEnvelope::Send { id, .. } =
            parse(r#"{"type":"send","to":"bob","id":"m\"1\u00e9"}"#).unwrap()
        else {
            panic!()
        };
        assert_eq!(&*id, "m\"1é");
    }

    #[test]
    fn encoded_envelopes_are_valid_json() {
        let mut out = Vec::new();
        encode_direct(&mut out, "alice", "id\"x", 7, r#"{"k":[1]}"#);
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["type"], "msg");
        assert_eq!(v["from"], "alice");
        assert_eq!(v["id"], "id\"x");
        assert_eq!(v["offset"], 7);
        assert_eq!(v["data"]["k"][0], 1);

        for build in [
            (|o: &mut Vec<u8>| encode_welcome(o, "u", "n", "t", 3)) as fn(&mut Vec<u8>),
            |o| encode_room(o, "chat.a", "u", "i", "null"),
            |o| encode_ack(o, "m1"),
            |o| encode_error(o, "bad_json", Some("m"), "line 1\ncol 2"),
            |o| encode_error(o, "bad_json", None, "x"),
            |o| encode_reconnect(o, "tok", 250),
        ] {
            let mut out = Vec::new();
            build(&mut out);
            let v: Value = serde_json::from_slice(&out).unwrap();
            assert!(v["type"].is_string());
        }
    }
}
