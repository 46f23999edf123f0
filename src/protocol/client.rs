//! Client → server envelopes: parsed by the node, encoded by clients
//! (loadgen, the tests, the SDK through the golden vectors).
//!
//! Parsing borrows from the frame (ids, rooms and `data` are not copied
//! unless they contain escapes); `data` is kept as raw JSON text and passed
//! through byte for byte. Unknown fields are ignored so clients can be newer
//! than the node. A refused envelope becomes an [`EnvelopeError`] carrying
//! the stable code and, when readable, the envelope's `id`.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::{json_str, valid_user_id, ErrorCode, RoomName, RoomPattern, MAX_MESSAGE_ID_LEN};

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
    /// `{"type":"join","room":…[,"id":…]}`: subscribe to a room or pattern;
    /// acked when it carries an `id`.
    Join {
        pattern: RoomPattern,
        id: Option<Cow<'a, str>>,
    },
    /// `{"type":"leave","room":…[,"id":…]}`: drop a subscription made by
    /// `join`; acked when it carries an `id`.
    Leave {
        pattern: RoomPattern,
        id: Option<Cow<'a, str>>,
    },
    /// `{"type":"publish","room":…,"id":…,"data":…}`: a message to a room.
    Publish {
        room: RoomName,
        id: Cow<'a, str>,
        data: &'a RawValue,
    },
    /// `{"type":"refresh","token":…[,"id":…]}`: a new JWT for this
    /// connection (`--auth jwt`), sent before the current one expires;
    /// acked when it carries an `id`.
    Refresh {
        token: Cow<'a, str>,
        id: Option<Cow<'a, str>>,
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
    #[serde(borrow, default)]
    token: Option<Cow<'a, str>>,
}

/// JSON `null`, for an absent `data` (forwarded as null).
pub(super) fn null() -> &'static RawValue {
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
                id: raw.id.clone(),
            }),
            "leave" => Ok(ClientEnvelope::Leave {
                pattern: pattern(raw.room.as_deref())?,
                id: raw.id.clone(),
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
            "refresh" => match raw.token.clone() {
                Some(token) if !token.is_empty() => Ok(ClientEnvelope::Refresh {
                    token,
                    id: raw.id.clone(),
                }),
                Some(_) => Err(err(
                    ErrorCode::BadEnvelope,
                    id,
                    "refresh: `token` is empty".into(),
                )),
                None => Err(missing("token")),
            },
            other => Err(err(
                ErrorCode::UnknownType,
                id,
                format!("unknown type `{}`", other.escape_default()),
            )),
        }
    }

    /// The envelope's `id`, when it has one.
    pub fn id(&self) -> Option<&str> {
        match self {
            ClientEnvelope::Send { id, .. } | ClientEnvelope::Publish { id, .. } => Some(id),
            ClientEnvelope::Join { id, .. }
            | ClientEnvelope::Leave { id, .. }
            | ClientEnvelope::Refresh { id, .. } => id.as_deref(),
        }
    }

    /// Appends the envelope's JSON text to `out`, fields in the order of
    /// docs/protocol.md; [`ClientEnvelope::parse`] reads it back as it was.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            ClientEnvelope::Send { to, id, data } => encode_send(out, to, id, data),
            ClientEnvelope::Join { pattern, id } => {
                encode_subscription(out, "join", pattern.as_str(), id.as_deref())
            }
            ClientEnvelope::Leave { pattern, id } => {
                encode_subscription(out, "leave", pattern.as_str(), id.as_deref())
            }
            ClientEnvelope::Publish { room, id, data } => {
                encode_publish(out, room.as_str(), id, data)
            }
            ClientEnvelope::Refresh { token, id } => encode_refresh(out, token, id.as_deref()),
        }
    }
}

/// Appends a `send` envelope; `data` is raw JSON.
pub fn encode_send(out: &mut Vec<u8>, to: &str, id: &str, data: &RawValue) {
    encode_with_data(out, br#"{"type":"send","to":"#, to, id, data);
}

/// Appends a `publish` envelope; `data` is raw JSON.
pub fn encode_publish(out: &mut Vec<u8>, room: &str, id: &str, data: &RawValue) {
    encode_with_data(out, br#"{"type":"publish","room":"#, room, id, data);
}

/// `head` (up to the first field's value), then that value, `id` and `data`.
fn encode_with_data(out: &mut Vec<u8>, head: &[u8], first: &str, id: &str, data: &RawValue) {
    out.extend_from_slice(head);
    json_str(out, first);
    out.extend_from_slice(br#","id":"#);
    json_str(out, id);
    out.extend_from_slice(br#","data":"#);
    out.extend_from_slice(data.get().as_bytes());
    out.push(b'}');
}

/// Appends a `refresh` envelope.
pub fn encode_refresh(out: &mut Vec<u8>, token: &str, id: Option<&str>) {
    out.extend_from_slice(br#"{"type":"refresh","token":"#);
    json_str(out, token);
    if let Some(id) = id {
        out.extend_from_slice(br#","id":"#);
        json_str(out, id);
    }
    out.push(b'}');
}

/// Appends a `join` or `leave` envelope.
fn encode_subscription(out: &mut Vec<u8>, kind: &str, room: &str, id: Option<&str>) {
    out.extend_from_slice(br#"{"type":"#);
    json_str(out, kind);
    out.extend_from_slice(br#","room":"#);
    json_str(out, room);
    if let Some(id) = id {
        out.extend_from_slice(br#","id":"#);
        json_str(out, id);
    }
    out.push(b'}');
}

#[cfg(test)]
mod tests {
    use super::*;

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
            Ok(ClientEnvelope::Join { id: None, .. })
        ));
        assert!(matches!(
            parse(r#"{"type":"leave","room":"chat.*","id":"l1"}"#),
            Ok(ClientEnvelope::Leave { id: Some(id), .. }) if id == "l1"
        ));
        assert!(matches!(
            parse(r#"{"type":"publish","room":"chat.lobby","id":"m2","data":1}"#),
            Ok(ClientEnvelope::Publish { .. })
        ));
    }

    #[test]
    fn refresh_parses_and_needs_a_token() {
        assert!(matches!(
            parse(r#"{"type":"refresh","token":"a.b.c","id":"r1"}"#),
            Ok(ClientEnvelope::Refresh { token, id: Some(id) }) if token == "a.b.c" && id == "r1"
        ));
        assert_eq!(code(r#"{"type":"refresh"}"#), ErrorCode::BadEnvelope);
        assert_eq!(
            code(r#"{"type":"refresh","token":""}"#),
            ErrorCode::BadEnvelope
        );
        assert_eq!(
            code(r#"{"type":"refresh","token":7}"#),
            ErrorCode::BadEnvelope
        );
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
    fn encode_then_parse_gives_the_same_envelope() {
        for text in [
            r#"{"type":"send","to":"bob","id":"m\"1","data":{"k":[1,2]}}"#,
            r#"{"type":"join","room":"chat.*","id":"j1"}"#,
            r#"{"type":"leave","room":"chat.*"}"#,
            r#"{"type":"publish","room":"chat.lobby","id":"p","data":null}"#,
        ] {
            let mut out = Vec::new();
            parse(text).unwrap().encode(&mut out);
            assert_eq!(std::str::from_utf8(&out).unwrap(), text);
        }
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn any_text_parses_or_is_refused_without_panic(text in "\\PC{0,200}") {
                if let Err(e) = ClientEnvelope::parse(&text) {
                    prop_assert!(!e.message.is_empty());
                }
            }

            #[test]
            fn envelope_shaped_json_parses_or_is_refused_without_panic(
                kind in prop::sample::select(vec!["send", "join", "leave", "publish", "x", ""]),
                fields in prop::collection::vec(
                    (prop::sample::select(vec!["to", "id", "room", "data", "type"]),
                     prop_oneof![
                        "\\PC{0,20}".prop_map(serde_json::Value::String),
                        any::<i64>().prop_map(serde_json::Value::from),
                        Just(serde_json::Value::Null),
                        Just(serde_json::json!([1, {"a": null}])),
                    ]),
                    0..5,
                ),
            ) {
                let mut obj = serde_json::Map::new();
                obj.insert("type".into(), kind.into());
                for (k, v) in fields {
                    obj.insert(k.into(), v);
                }
                let text = serde_json::Value::Object(obj).to_string();
                if let Ok(env) = ClientEnvelope::parse(&text) {
                    let mut out = Vec::new();
                    env.encode(&mut out);
                    let again = std::str::from_utf8(&out).unwrap();
                    prop_assert!(ClientEnvelope::parse(again).is_ok(), "{}", again);
                }
            }

            #[test]
            fn sends_round_trip_through_encode_and_parse(
                to in "[A-Za-z0-9._@:+=-]{1,40}",
                id in "\\PC{1,30}",
                n in any::<i64>(),
            ) {
                let data = serde_json::value::to_raw_value(&serde_json::json!({"n": n})).unwrap();
                let mut out = Vec::new();
                encode_send(&mut out, &to, &id, &data);
                let text = std::str::from_utf8(&out).unwrap();
                let ClientEnvelope::Send { to: t, id: i, data: d } = ClientEnvelope::parse(text).unwrap() else {
                    panic!("not a send: {text}");
                };
                prop_assert_eq!((&*t, &*i, d.get()), (to.as_str(), id.as_str(), data.get()));
            }
        }
    }
}
