//! Authentication and authorization of socket users, as pure functions:
//! the JWT a client presents at the upgrade (or in a `refresh`), the
//! `Origin` a browser sends, and the room permissions a token's claims
//! grant. No I/O here except reading key files at start-up ([`keys`]); the
//! node calls these from `node::http` (the upgrade) and its shard (refresh,
//! join, publish, send).
//!
//! Invariant: every function here takes untrusted input and never panics;
//! each refusal has a named [`AuthReason`], which is both the `error` of the
//! HTTP 401/403 body and the `reason` label of
//! `rtc_socket_auth_failures_total`.

pub mod jwt;
pub mod keys;
pub mod origin;
pub mod permissions;

pub use jwt::{AuthError, Grant, JwtSettings, JwtVerifier};
pub use origin::{AllowedOrigins, OriginError};
pub use permissions::Permissions;

use serde::Deserialize;

/// How `/ws` upgrades are authenticated (`--auth`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// No authentication: `userId` is trusted as given (development).
    None,
    /// A JWT is required; its `sub` is the user id.
    Jwt,
}

/// Who decides which rooms a user may join and publish to, and whether it
/// may send direct messages (`--rooms-policy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum RoomsPolicy {
    /// Every user may join, publish and send everywhere.
    Open,
    /// The token's `rooms` and `send` claims decide (needs `--auth jwt`).
    Claims,
}

/// Why an upgrade (or a refresh) was refused: the stable `error` code of
/// the HTTP answer and the `reason` label of the failure counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuthReason {
    /// No token in the query (`token=`) nor in `Authorization: Bearer`.
    MissingToken,
    /// Not three base64url parts, or a header that is not JSON.
    MalformedToken,
    /// `alg` is not on the allow-list (`none`, `HS256` without a secret, …).
    BadAlgorithm,
    /// No configured key has the token's `kid` (or no `kid` and several keys).
    UnknownKey,
    /// The signature does not verify under the chosen key.
    BadSignature,
    /// The claims are not readable: no `exp`, wrong types, a bad room pattern.
    BadClaims,
    /// `exp` is past (beyond the leeway).
    Expired,
    /// `nbf` is in the future (beyond the leeway).
    NotYetValid,
    /// `iss` is not `--jwt-issuer`.
    BadIssuer,
    /// `aud` does not name `--jwt-audience`.
    BadAudience,
    /// `sub` is missing or not a valid user id.
    BadSubject,
    /// `userId` was given and is not the token's `sub` (also: a refresh for
    /// another user).
    UserMismatch,
    /// The browser's `Origin` is not in `--allowed-origins` (HTTP 403).
    OriginNotAllowed,
}

impl AuthReason {
    /// Every reason, in the order of docs/protocol.md.
    pub const ALL: [AuthReason; 13] = [
        AuthReason::MissingToken,
        AuthReason::MalformedToken,
        AuthReason::BadAlgorithm,
        AuthReason::UnknownKey,
        AuthReason::BadSignature,
        AuthReason::BadClaims,
        AuthReason::Expired,
        AuthReason::NotYetValid,
        AuthReason::BadIssuer,
        AuthReason::BadAudience,
        AuthReason::BadSubject,
        AuthReason::UserMismatch,
        AuthReason::OriginNotAllowed,
    ];

    /// The reason as it appears on the wire and in metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthReason::MissingToken => "missing_token",
            AuthReason::MalformedToken => "malformed_token",
            AuthReason::BadAlgorithm => "bad_algorithm",
            AuthReason::UnknownKey => "unknown_key",
            AuthReason::BadSignature => "bad_signature",
            AuthReason::BadClaims => "bad_claims",
            AuthReason::Expired => "expired",
            AuthReason::NotYetValid => "not_yet_valid",
            AuthReason::BadIssuer => "bad_issuer",
            AuthReason::BadAudience => "bad_audience",
            AuthReason::BadSubject => "bad_subject",
            AuthReason::UserMismatch => "user_mismatch",
            AuthReason::OriginNotAllowed => "origin_not_allowed",
        }
    }

    /// The HTTP status line of the refusal.
    pub fn status(self) -> &'static str {
        match self {
            AuthReason::OriginNotAllowed => "403 Forbidden",
            _ => "401 Unauthorized",
        }
    }
}

/// The JSON body of a refused upgrade: `{"error":CODE,"message":…}`.
pub fn refusal_body(reason: AuthReason, message: &str) -> String {
    let mut out = String::with_capacity(64 + message.len());
    out.push_str("{\"error\":\"");
    out.push_str(reason.as_str());
    out.push_str("\",\"message\":");
    out.push_str(&serde_json::to_string(message).unwrap_or_else(|_| "\"\"".into()));
    out.push_str("}\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusal_bodies_are_json_with_the_reason() {
        for r in AuthReason::ALL {
            let body = refusal_body(r, "why \"quoted\"\n");
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            assert_eq!(v["error"], r.as_str());
            assert_eq!(v["message"], "why \"quoted\"\n");
        }
        assert!(AuthReason::OriginNotAllowed.status().starts_with("403"));
        assert!(AuthReason::Expired.status().starts_with("401"));
    }
}
