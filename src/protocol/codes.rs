//! The stable codes of protocol v1: the `code` of an `error` envelope and
//! the WebSocket close codes the node sends.
//!
//! Both sets are part of the wire contract (clients branch on them), so each
//! value has a name here and nowhere else; `src/protocol/vectors/codes.json`
//! pins the table for every implementation (node, loadgen, the client SDK).

/// The stable error codes of the `error` envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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
    /// The node could not make the message durable; it was not delivered.
    Unavailable,
    /// The `resume` token does not decode into a token.
    TokenMalformed,
    /// The `resume` token's MAC does not verify under the cluster secret.
    TokenForged,
    /// The `resume` token is older than its TTL (or from the future).
    TokenExpired,
    /// The `resume` token was issued to another user.
    TokenWrongUser,
    /// The token's claims do not allow this `join`, `publish` or `send`
    /// (`--rooms-policy claims`).
    Forbidden,
    /// A `refresh` token was refused (the message says why); the connection
    /// keeps its current token until that one expires.
    RefreshRefused,
}

impl ErrorCode {
    /// Every code, in the order of docs/protocol.md.
    pub const ALL: [ErrorCode; 15] = [
        ErrorCode::BadJson,
        ErrorCode::BadEnvelope,
        ErrorCode::UnknownType,
        ErrorCode::BadUser,
        ErrorCode::BadRoom,
        ErrorCode::RateLimited,
        ErrorCode::TooManySubscriptions,
        ErrorCode::BinaryNotSupported,
        ErrorCode::Unavailable,
        ErrorCode::TokenMalformed,
        ErrorCode::TokenForged,
        ErrorCode::TokenExpired,
        ErrorCode::TokenWrongUser,
        ErrorCode::Forbidden,
        ErrorCode::RefreshRefused,
    ];

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
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::TokenMalformed => "token_malformed",
            ErrorCode::TokenForged => "token_forged",
            ErrorCode::TokenExpired => "token_expired",
            ErrorCode::TokenWrongUser => "token_wrong_user",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::RefreshRefused => "refresh_refused",
        }
    }

    /// The code named `s` on the wire, if there is one.
    pub fn from_wire(s: &str) -> Option<ErrorCode> {
        ErrorCode::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The WebSocket close codes the node sends, each with the reason text it
/// sends with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CloseCode {
    /// 1001: nothing was received for `--idle-timeout-secs`.
    IdleTimeout,
    /// 1002: broken framing (unmasked frame, reserved bits, bad opcode, …).
    ProtocolError,
    /// 1007: invalid UTF-8 in a text frame or a close reason.
    InvalidUtf8,
    /// 1008: the `resume` token was refused (an `error` envelope says why).
    TokenRefused,
    /// 1009: a message or frame over the size limit.
    TooBig,
    /// 1011: the store failed while the session was being opened.
    StoreFailed,
    /// 1012: the node is draining (after a `reconnect` envelope).
    Draining,
    /// 4001: the user opened more connections than `--max-connections-per-user`;
    /// this, its oldest, was closed.
    Replaced,
    /// 4003: the connection's JWT expired and no valid `refresh` came.
    TokenExpired,
}

impl CloseCode {
    /// Every close code, in numeric order.
    pub const ALL: [CloseCode; 9] = [
        CloseCode::IdleTimeout,
        CloseCode::ProtocolError,
        CloseCode::InvalidUtf8,
        CloseCode::TokenRefused,
        CloseCode::TooBig,
        CloseCode::StoreFailed,
        CloseCode::Draining,
        CloseCode::Replaced,
        CloseCode::TokenExpired,
    ];

    /// The number in the close frame.
    pub fn code(self) -> u16 {
        match self {
            CloseCode::IdleTimeout => 1001,
            CloseCode::ProtocolError => 1002,
            CloseCode::InvalidUtf8 => 1007,
            CloseCode::TokenRefused => 1008,
            CloseCode::TooBig => 1009,
            CloseCode::StoreFailed => 1011,
            CloseCode::Draining => 1012,
            CloseCode::Replaced => 4001,
            CloseCode::TokenExpired => 4003,
        }
    }

    /// The reason text sent with the code.
    pub fn reason(self) -> &'static str {
        match self {
            CloseCode::IdleTimeout => "idle timeout",
            CloseCode::ProtocolError => "protocol error",
            CloseCode::InvalidUtf8 => "invalid UTF-8",
            CloseCode::TokenRefused => "invalid resume token",
            CloseCode::TooBig => "message too big",
            CloseCode::StoreFailed => "store unavailable",
            CloseCode::Draining => "node draining",
            CloseCode::Replaced => "replaced by a newer connection",
            CloseCode::TokenExpired => "token expired",
        }
    }

    /// The close code numbered `code`, if the node sends it.
    pub fn from_code(code: u16) -> Option<CloseCode> {
        CloseCode::ALL.into_iter().find(|c| c.code() == code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names_and_numbers_round_trip() {
        for c in ErrorCode::ALL {
            assert_eq!(ErrorCode::from_wire(c.as_str()), Some(c));
        }
        assert_eq!(ErrorCode::from_wire("nope"), None);
        for c in CloseCode::ALL {
            assert_eq!(CloseCode::from_code(c.code()), Some(c));
            assert!(c.reason().len() <= 123, "fits a control frame");
        }
        assert_eq!(CloseCode::from_code(1000), None);
    }
}
