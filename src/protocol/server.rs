//! Server → client envelopes: encoded by the node, parsed by clients
//! (loadgen, the tests, the SDK through the golden vectors).
//!
//! The node's hot path uses the `encode_*` functions, which write the text
//! straight into a buffer; [`ServerEnvelope`] is the typed form of the same
//! texts, and its `encode` calls those functions, so there is one definition
//! of every envelope's text. A direct `msg` is built in two halves around its
//! offset ([`DirectTemplate`]) because the offset is assigned by the store.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::{client::null, json_str, EnvelopeError, ErrorCode};

/// A typed server → client envelope, borrowed from the text it was parsed
/// from. Equality compares `data` as JSON text.
#[derive(Debug)]
pub enum ServerEnvelope<'a> {
    /// The first frame of every connection.
    Welcome {
        user_id: Cow<'a, str>,
        node: Cow<'a, str>,
        resume_token: Cow<'a, str>,
        /// The offset the session starts after.
        offset: u64,
    },
    /// A direct `msg`, with the recipient's `offset`.
    Direct {
        from: Cow<'a, str>,
        id: Cow<'a, str>,
        offset: u64,
        data: &'a RawValue,
    },
    /// A room `msg`: it carries its `room` and no offset.
    Room {
        room: Cow<'a, str>,
        from: Cow<'a, str>,
        id: Cow<'a, str>,
        data: &'a RawValue,
    },
    /// The message `id` is durable, or the `join`/`leave` `id` took effect.
    Ack { id: Cow<'a, str> },
    /// An envelope was refused; the connection stays up.
    Error {
        code: ErrorCode,
        id: Option<Cow<'a, str>>,
        message: Cow<'a, str>,
        /// `rate_limited`: milliseconds until the limit allows one more.
        retry_after_ms: Option<u64>,
    },
    /// Reconnect after `retry_after_ms` with `resume_token`, to `ws_url`
    /// when given; a close 1012 follows.
    Reconnect {
        resume_token: Cow<'a, str>,
        retry_after_ms: u64,
        ws_url: Option<Cow<'a, str>>,
    },
}

impl PartialEq for ServerEnvelope<'_> {
    fn eq(&self, other: &Self) -> bool {
        use ServerEnvelope::*;
        match (self, other) {
            (
                Welcome {
                    user_id,
                    node,
                    resume_token,
                    offset,
                },
                Welcome {
                    user_id: u,
                    node: n,
                    resume_token: t,
                    offset: o,
                },
            ) => (user_id, node, resume_token, offset) == (u, n, t, o),
            (
                Direct {
                    from,
                    id,
                    offset,
                    data,
                },
                Direct {
                    from: f,
                    id: i,
                    offset: o,
                    data: d,
                },
            ) => (from, id, offset, data.get()) == (f, i, o, d.get()),
            (
                Room {
                    room,
                    from,
                    id,
                    data,
                },
                Room {
                    room: r,
                    from: f,
                    id: i,
                    data: d,
                },
            ) => (room, from, id, data.get()) == (r, f, i, d.get()),
            (Ack { id }, Ack { id: i }) => id == i,
            (
                Error {
                    code,
                    id,
                    message,
                    retry_after_ms,
                },
                Error {
                    code: c,
                    id: i,
                    message: m,
                    retry_after_ms: r,
                },
            ) => (code, id, message, retry_after_ms) == (c, i, m, r),
            (
                Reconnect {
                    resume_token,
                    retry_after_ms,
                    ws_url,
                },
                Reconnect {
                    resume_token: t,
                    retry_after_ms: r,
                    ws_url: u,
                },
            ) => (resume_token, retry_after_ms, ws_url) == (t, r, u),
            _ => false,
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawServer<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow, default)]
    user_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    node: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    resume_token: Option<Cow<'a, str>>,
    #[serde(default)]
    offset: Option<u64>,
    #[serde(borrow, default)]
    from: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    room: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
    #[serde(borrow, default)]
    code: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    message: Option<Cow<'a, str>>,
    #[serde(default)]
    retry_after_ms: Option<u64>,
    #[serde(borrow, default)]
    ws_url: Option<Cow<'a, str>>,
}

impl<'a> ServerEnvelope<'a> {
    /// Parses one text frame from a node. Unknown fields are ignored; a
    /// missing required field, an unknown `type` or an unknown error `code`
    /// is an error.
    pub fn parse(text: &'a [u8]) -> Result<ServerEnvelope<'a>, EnvelopeError> {
        let bad = |code, message: String| EnvelopeError {
            code,
            id: None,
            message,
        };
        let raw: RawServer<'a> = serde_json::from_slice(text).map_err(|e| {
            let code = if e.is_data() {
                ErrorCode::BadEnvelope
            } else {
                ErrorCode::BadJson
            };
            bad(code, e.to_string())
        })?;
        let kind = raw.kind;
        let need = |v: Option<Cow<'a, str>>, field: &str| {
            v.ok_or_else(|| {
                bad(
                    ErrorCode::BadEnvelope,
                    format!("{kind}: missing field `{field}`"),
                )
            })
        };
        let need_n = |v: Option<u64>, field: &str| {
            v.ok_or_else(|| {
                bad(
                    ErrorCode::BadEnvelope,
                    format!("{kind}: missing field `{field}`"),
                )
            })
        };
        Ok(match &*kind {
            "welcome" => ServerEnvelope::Welcome {
                user_id: need(raw.user_id, "userId")?,
                node: need(raw.node, "node")?,
                resume_token: need(raw.resume_token, "resumeToken")?,
                offset: need_n(raw.offset, "offset")?,
            },
            "msg" => match (raw.room, raw.offset) {
                (Some(_), Some(_)) => {
                    return Err(bad(
                        ErrorCode::BadEnvelope,
                        "msg: a room message carries no offset".into(),
                    ))
                }
                (Some(room), None) => ServerEnvelope::Room {
                    room,
                    from: need(raw.from, "from")?,
                    id: need(raw.id, "id")?,
                    data: raw.data.unwrap_or_else(|| null()),
                },
                (None, offset) => ServerEnvelope::Direct {
                    from: need(raw.from, "from")?,
                    id: need(raw.id, "id")?,
                    offset: need_n(offset, "offset")?,
                    data: raw.data.unwrap_or_else(|| null()),
                },
            },
            "ack" => ServerEnvelope::Ack {
                id: need(raw.id, "id")?,
            },
            "error" => {
                let code = need(raw.code, "code")?;
                ServerEnvelope::Error {
                    code: ErrorCode::from_wire(&code).ok_or_else(|| {
                        bad(
                            ErrorCode::BadEnvelope,
                            format!("unknown error code `{code}`"),
                        )
                    })?,
                    id: raw.id,
                    message: need(raw.message, "message")?,
                    retry_after_ms: raw.retry_after_ms,
                }
            }
            "reconnect" => ServerEnvelope::Reconnect {
                resume_token: need(raw.resume_token, "resumeToken")?,
                retry_after_ms: need_n(raw.retry_after_ms, "retryAfterMs")?,
                ws_url: raw.ws_url,
            },
            other => {
                return Err(bad(
                    ErrorCode::UnknownType,
                    format!("unknown type `{}`", other.escape_default()),
                ))
            }
        })
    }

    /// Appends the envelope's text, exactly as the node sends it.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            ServerEnvelope::Welcome {
                user_id,
                node,
                resume_token,
                offset,
            } => encode_welcome(out, user_id, node, resume_token, *offset),
            ServerEnvelope::Room {
                room,
                from,
                id,
                data,
            } => encode_room(out, room, from, id, data.get()),
            ServerEnvelope::Direct {
                from,
                id,
                offset,
                data,
            } => DirectTemplate::new(from, id, data.get()).write(out, *offset),
            ServerEnvelope::Ack { id } => encode_ack(out, id),
            ServerEnvelope::Error {
                code,
                id,
                message,
                retry_after_ms,
            } => encode_error_after(out, *code, id.as_deref(), message, *retry_after_ms),
            ServerEnvelope::Reconnect {
                resume_token,
                retry_after_ms,
                ws_url,
            } => encode_reconnect(out, resume_token, *retry_after_ms, ws_url.as_deref()),
        }
    }
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
    write_u64(out, offset);
    out.push(b'}');
}

/// A direct `msg` envelope before its offset is known: its text is `head`,
/// the offset in decimal, then `tail`. The store assigns the offset and
/// joins the halves in the same step (one round trip to Redis).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectTemplate {
    /// `{"type":"msg","from":…,"id":…,"offset":`
    pub head: Vec<u8>,
    /// `,"data":…}`
    pub tail: Vec<u8>,
}

impl DirectTemplate {
    /// The template of a direct message from `from` with `id` and raw JSON
    /// `data`.
    pub fn new(from: &str, id: &str, data: &str) -> DirectTemplate {
        let mut head = Vec::with_capacity(48 + from.len() + id.len());
        head.extend_from_slice(br#"{"type":"msg","from":"#);
        json_str(&mut head, from);
        head.extend_from_slice(br#","id":"#);
        json_str(&mut head, id);
        head.extend_from_slice(br#","offset":"#);
        let mut tail = Vec::with_capacity(10 + data.len());
        tail.extend_from_slice(br#","data":"#);
        tail.extend_from_slice(data.as_bytes());
        tail.push(b'}');
        DirectTemplate { head, tail }
    }

    /// Appends the envelope with `offset`.
    pub fn write(&self, out: &mut Vec<u8>, offset: u64) {
        out.extend_from_slice(&self.head);
        write_u64(out, offset);
        out.extend_from_slice(&self.tail);
    }

    /// The envelope with `offset`, in a buffer of its own.
    pub fn with_offset(&self, offset: u64) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.head.len() + 20 + self.tail.len());
        self.write(&mut out, offset);
        out
    }
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
pub fn encode_error(out: &mut Vec<u8>, code: ErrorCode, id: Option<&str>, message: &str) {
    encode_error_after(out, code, id, message, None)
}

/// Appends an `error` envelope `rate_limited` with `retryAfterMs`: when the
/// user's limit of that kind allows one more.
pub fn encode_rate_limited(out: &mut Vec<u8>, id: Option<&str>, message: &str, retry_ms: u64) {
    encode_error_after(out, ErrorCode::RateLimited, id, message, Some(retry_ms))
}

/// Appends an `error` envelope (`id` and `retryAfterMs` only when given).
pub fn encode_error_after(
    out: &mut Vec<u8>,
    code: ErrorCode,
    id: Option<&str>,
    message: &str,
    retry_after_ms: Option<u64>,
) {
    out.extend_from_slice(br#"{"type":"error","code":"#);
    json_str(out, code.as_str());
    if let Some(id) = id {
        out.extend_from_slice(br#","id":"#);
        json_str(out, id);
    }
    out.extend_from_slice(br#","message":"#);
    json_str(out, message);
    if let Some(ms) = retry_after_ms {
        out.extend_from_slice(br#","retryAfterMs":"#);
        write_u64(out, ms);
    }
    out.push(b'}');
}

/// Appends a `reconnect` envelope (`wsUrl` only when given).
pub fn encode_reconnect(out: &mut Vec<u8>, token: &str, retry_after_ms: u64, ws_url: Option<&str>) {
    out.extend_from_slice(br#"{"type":"reconnect","resumeToken":"#);
    json_str(out, token);
    out.extend_from_slice(br#","retryAfterMs":"#);
    write_u64(out, retry_after_ms);
    if let Some(url) = ws_url {
        out.extend_from_slice(br#","wsUrl":"#);
        json_str(out, url);
    }
    out.push(b'}');
}

fn write_u64(out: &mut Vec<u8>, n: u64) {
    use std::io::Write;
    // Envelopes are built once per message; formatting is not measurable
    // next to the JSON work.
    write!(out, "{n}").expect("writing to a Vec cannot fail");
}

#[cfg(test)]
#[path = "server_tests.rs"]
mod tests;
