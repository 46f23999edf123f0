//! JWT verification for the socket upgrade and `refresh`.
//!
//! Why the `jsonwebtoken` crate: it is the most used JWT crate in Rust, it
//! verifies HS256, RS256 and ES256 with `ring` (constant-time HMAC, audited
//! RSA/ECDSA), refuses `alg: none` by construction (no such variant), and
//! checks that a key's family matches the algorithm, so an RSA or EC public
//! key can never be used as an HMAC secret. We use it for the signature only:
//! the header is read here first (so the algorithm allow-list and the key
//! choice by `kid` are ours and every refusal gets its own reason), and the
//! time claims are checked here against a `now` the caller passes, which
//! keeps [`JwtVerifier::verify`] a pure function.
//!
//! Rules:
//! - `alg` must be on the allow-list: `HS256` (only with a secret), `RS256`
//!   (RSA public keys), `ES256` (P-256 public keys); anything else, `none`
//!   included, is `bad_algorithm`.
//! - Key choice: `HS256` uses the one secret. `RS256`/`ES256` use the key
//!   named by `kid`; without a `kid`, the one key of that family, if there
//!   is exactly one. Several keys by `kid` are how keys are rotated.
//! - Claims: `exp` is required and `now < exp + leeway`; `nbf`, if present,
//!   `nbf <= now + leeway`; `iss` must equal `--jwt-issuer` and `aud` (a
//!   string or an array) must contain `--jwt-audience` when those are set;
//!   `sub` must be a valid user id: it is the user.
//! - `rooms` and `send` are read into [`Permissions`] (enforced only under
//!   `--rooms-policy claims`).

use std::collections::HashSet;

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
use jsonwebtoken::{errors::ErrorKind, Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use thiserror::Error;

use super::{permissions::MAX_PATTERNS, AuthReason, Permissions};
use crate::protocol::{valid_user_id, RoomPattern};

/// Longest token accepted, in bytes (a token in a 8 KiB request head is
/// shorter anyway; this bounds a `refresh`).
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// A token that was refused, and why.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AuthError {
    #[error("no token: pass `token=` in the query or an `Authorization: Bearer` header")]
    Missing,
    #[error("not a JWT: {0}")]
    Malformed(String),
    #[error("algorithm `{0}` is not allowed")]
    Algorithm(String),
    #[error("no key for this token ({0})")]
    UnknownKey(String),
    #[error("the signature does not verify")]
    Signature,
    #[error("unreadable claims: {0}")]
    Claims(String),
    #[error("the token expired at {exp} (now {now})")]
    Expired { exp: u64, now: u64 },
    #[error("the token is not valid before {nbf} (now {now})")]
    NotYetValid { nbf: u64, now: u64 },
    #[error("wrong issuer")]
    Issuer,
    #[error("wrong audience")]
    Audience,
    #[error("`sub` is missing or not a valid user id")]
    Subject,
    #[error("`userId` is not the token's subject")]
    UserMismatch,
}

impl AuthError {
    /// The stable reason (HTTP body `error`, metric label).
    pub fn reason(&self) -> AuthReason {
        match self {
            AuthError::Missing => AuthReason::MissingToken,
            AuthError::Malformed(_) => AuthReason::MalformedToken,
            AuthError::Algorithm(_) => AuthReason::BadAlgorithm,
            AuthError::UnknownKey(_) => AuthReason::UnknownKey,
            AuthError::Signature => AuthReason::BadSignature,
            AuthError::Claims(_) => AuthReason::BadClaims,
            AuthError::Expired { .. } => AuthReason::Expired,
            AuthError::NotYetValid { .. } => AuthReason::NotYetValid,
            AuthError::Issuer => AuthReason::BadIssuer,
            AuthError::Audience => AuthReason::BadAudience,
            AuthError::Subject => AuthReason::BadSubject,
            AuthError::UserMismatch => AuthReason::UserMismatch,
        }
    }
}

/// What a verified token grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The user (`sub`).
    pub user: String,
    /// `exp`, unix seconds: the connection must be refreshed before it.
    pub expires_at: u64,
    /// The `rooms` and `send` claims.
    pub permissions: Permissions,
}

/// The family of a public key, which fixes its one algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyFamily {
    /// An RSA public key: RS256.
    Rsa,
    /// A P-256 public key: ES256.
    Ec,
}

/// A public key and the `kid` it answers to.
#[derive(Clone)]
pub struct PublicKey {
    /// The key id tokens name in their header.
    pub kid: String,
    /// RSA or EC.
    pub family: KeyFamily,
    /// The key.
    pub key: DecodingKey,
}

/// Everything the verifier is built from (see `config.rs` for the knobs).
#[derive(Clone, Default)]
pub struct JwtSettings {
    /// The HS256 secret; `None` turns HS256 off.
    pub hs256_secret: Option<Vec<u8>>,
    /// The RS256/ES256 public keys.
    pub public_keys: Vec<PublicKey>,
    /// Required `iss`, if any.
    pub issuer: Option<String>,
    /// Required `aud` member, if any.
    pub audience: Option<String>,
    /// Clock skew allowed on `exp` and `nbf`, in seconds.
    pub leeway_secs: u64,
}

/// Verifies tokens; built once at start-up, shared read-only by every core.
pub struct JwtVerifier {
    hs256: Option<DecodingKey>,
    public_keys: Vec<PublicKey>,
    issuer: Option<String>,
    audience: Option<String>,
    leeway: u64,
    validation: [Validation; 3],
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key material.
        f.debug_struct("JwtVerifier")
            .field("hs256", &self.hs256.is_some())
            .field(
                "public_keys",
                &self
                    .public_keys
                    .iter()
                    .map(|k| (&k.kid, k.family))
                    .collect::<Vec<_>>(),
            )
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("leeway", &self.leeway)
            .finish()
    }
}

#[derive(Deserialize)]
struct RawHeader {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize, Default)]
struct RoomsClaim {
    #[serde(default)]
    join: Vec<String>,
    #[serde(default)]
    publish: Vec<String>,
}

#[derive(Deserialize)]
struct RawClaims {
    #[serde(default)]
    sub: Option<String>,
    #[serde(default)]
    exp: Option<f64>,
    #[serde(default)]
    nbf: Option<f64>,
    #[serde(default)]
    iss: Option<String>,
    #[serde(default)]
    aud: Option<OneOrMany>,
    #[serde(default)]
    rooms: Option<RoomsClaim>,
    #[serde(default)]
    send: Option<bool>,
}

/// A NumericDate as whole seconds (fractions dropped, negatives are 0).
fn seconds(t: f64) -> u64 {
    if t.is_finite() && t > 0.0 {
        t.min(u64::MAX as f64) as u64
    } else {
        0
    }
}

fn signature_only(alg: Algorithm) -> Validation {
    let mut v = Validation::new(alg);
    // Time, issuer and audience are checked by `verify` against its `now`.
    v.required_spec_claims = HashSet::new();
    v.validate_exp = false;
    v.validate_nbf = false;
    v.validate_aud = false;
    v
}

fn patterns(list: &[String], what: &str) -> Result<Vec<RoomPattern>, AuthError> {
    if list.len() > MAX_PATTERNS {
        return Err(AuthError::Claims(format!(
            "more than {MAX_PATTERNS} {what} patterns"
        )));
    }
    list.iter()
        .map(|p| {
            RoomPattern::parse(p).map_err(|e| {
                AuthError::Claims(format!("rooms.{what}: `{}`: {e}", p.escape_default()))
            })
        })
        .collect()
}

impl JwtVerifier {
    /// A verifier for `settings`.
    pub fn new(settings: JwtSettings) -> JwtVerifier {
        JwtVerifier {
            hs256: settings
                .hs256_secret
                .as_deref()
                .map(DecodingKey::from_secret),
            public_keys: settings.public_keys,
            issuer: settings.issuer,
            audience: settings.audience,
            leeway: settings.leeway_secs,
            validation: [
                signature_only(Algorithm::HS256),
                signature_only(Algorithm::RS256),
                signature_only(Algorithm::ES256),
            ],
        }
    }

    /// The algorithms this verifier accepts, for the start-up log.
    pub fn algorithms(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        if self.hs256.is_some() {
            out.push("HS256");
        }
        for (family, name) in [(KeyFamily::Rsa, "RS256"), (KeyFamily::Ec, "ES256")] {
            if self.public_keys.iter().any(|k| k.family == family) {
                out.push(name);
            }
        }
        out
    }

    /// The `kid`s of the public keys, for the start-up log.
    pub fn key_ids(&self) -> Vec<&str> {
        self.public_keys.iter().map(|k| k.kid.as_str()).collect()
    }

    fn key_for(&self, header: &RawHeader) -> Result<(&DecodingKey, &Validation), AuthError> {
        let family = match header.alg.as_str() {
            "HS256" => {
                return match &self.hs256 {
                    Some(key) => Ok((key, &self.validation[0])),
                    None => Err(AuthError::Algorithm(header.alg.clone())),
                }
            }
            "RS256" => KeyFamily::Rsa,
            "ES256" => KeyFamily::Ec,
            other => return Err(AuthError::Algorithm(other.escape_default().to_string())),
        };
        let validation = &self.validation[if family == KeyFamily::Rsa { 1 } else { 2 }];
        let mut of_family = self.public_keys.iter().filter(|k| k.family == family);
        let key = match &header.kid {
            Some(kid) => of_family
                .find(|k| &k.kid == kid)
                .ok_or_else(|| AuthError::UnknownKey(format!("kid `{}`", kid.escape_default())))?,
            None => match (of_family.next(), of_family.next()) {
                (Some(k), None) => k,
                (None, _) => return Err(AuthError::Algorithm(header.alg.clone())),
                (Some(_), Some(_)) => {
                    return Err(AuthError::UnknownKey(
                        "no kid, and several keys could be meant".into(),
                    ))
                }
            },
        };
        Ok((&key.key, validation))
    }

    /// Verifies `token` at unix time `now` and returns what it grants.
    pub fn verify(&self, token: &str, now: u64) -> Result<Grant, AuthError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(AuthError::Malformed(format!(
                "over {MAX_TOKEN_BYTES} bytes"
            )));
        }
        let mut parts = token.split('.');
        let (Some(head), Some(_), Some(_), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(AuthError::Malformed("not three dot-separated parts".into()));
        };
        let head = URL_SAFE_NO_PAD
            .decode(head)
            .map_err(|_| AuthError::Malformed("header is not base64url".into()))?;
        let header: RawHeader = serde_json::from_slice(&head)
            .map_err(|e| AuthError::Malformed(format!("header: {e}")))?;
        let (key, validation) = self.key_for(&header)?;
        let claims = jsonwebtoken::decode::<RawClaims>(token, key, validation)
            .map_err(|e| match e.kind() {
                ErrorKind::InvalidSignature
                | ErrorKind::InvalidEcdsaKey
                | ErrorKind::InvalidRsaKey(_)
                | ErrorKind::Crypto(_) => AuthError::Signature,
                ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
                    AuthError::Algorithm(header.alg.clone())
                }
                ErrorKind::Json(e) => AuthError::Claims(e.to_string()),
                _ => AuthError::Malformed(e.to_string()),
            })?
            .claims;
        let exp = claims
            .exp
            .map(seconds)
            .ok_or_else(|| AuthError::Claims("`exp` is required".into()))?;
        if now >= exp.saturating_add(self.leeway) {
            return Err(AuthError::Expired { exp, now });
        }
        if let Some(nbf) = claims.nbf.map(seconds) {
            if nbf > now.saturating_add(self.leeway) {
                return Err(AuthError::NotYetValid { nbf, now });
            }
        }
        if let Some(want) = &self.issuer {
            if claims.iss.as_ref() != Some(want) {
                return Err(AuthError::Issuer);
            }
        }
        if let Some(want) = &self.audience {
            let ok = match &claims.aud {
                Some(OneOrMany::One(a)) => a == want,
                Some(OneOrMany::Many(list)) => list.contains(want),
                None => false,
            };
            if !ok {
                return Err(AuthError::Audience);
            }
        }
        let user = claims
            .sub
            .filter(|s| valid_user_id(s))
            .ok_or(AuthError::Subject)?;
        let rooms = claims.rooms.unwrap_or_default();
        Ok(Grant {
            user,
            expires_at: exp,
            permissions: Permissions {
                join: patterns(&rooms.join, "join")?,
                publish: patterns(&rooms.publish, "publish")?,
                send: claims.send.unwrap_or(false),
            },
        })
    }

    /// Verifies `token` for a connection that named `user_id` (if it did):
    /// the token's `sub` must be that user.
    pub fn verify_for(
        &self,
        token: &str,
        user_id: Option<&str>,
        now: u64,
    ) -> Result<Grant, AuthError> {
        let grant = self.verify(token, now)?;
        match user_id {
            Some(u) if u != grant.user => Err(AuthError::UserMismatch),
            _ => Ok(grant),
        }
    }
}

#[cfg(test)]
mod tests;
