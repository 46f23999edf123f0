//! Resume tokens: `base64url(userId:offset:issuedAt:hmac)`.
//!
//! The HMAC-SHA256 is taken with the cluster secret over the bytes
//! `userId:offset:issuedAt` and appended raw (32 bytes) after a final `:`;
//! the whole is base64url-encoded without padding. `issuedAt` is in unix
//! seconds. Fields are parsed from the right, so a user id may itself contain
//! `:`. Verification is constant-time in the MAC.

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use thiserror::Error;

use crate::protocol::ErrorCode;

type HmacSha256 = Hmac<Sha256>;

const MAC_LEN: usize = 32;
/// Tokens are small; anything longer is refused before any work is done.
const MAX_TOKEN_LEN: usize = 512;
/// Clock skew tolerated between the node that issued a token and the one
/// that checks it.
const MAX_SKEW_SECS: u64 = 60;

/// The claims a resume token carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResumeToken {
    /// The user the token was issued to.
    pub user_id: String,
    /// The last offset the client is known to have been sent.
    pub offset: u64,
    /// When the token was issued, unix seconds.
    pub issued_at: u64,
}

/// Why a token was refused. Each variant maps to a stable protocol code.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TokenError {
    #[error("resume token is malformed")]
    Malformed,
    #[error("resume token signature does not verify")]
    BadSignature,
    #[error("resume token has expired")]
    Expired,
    #[error("resume token was issued to another user")]
    WrongUser,
}

impl TokenError {
    /// The stable code sent in the `error` envelope.
    pub fn code(&self) -> ErrorCode {
        match self {
            TokenError::Malformed => ErrorCode::TokenMalformed,
            TokenError::BadSignature => ErrorCode::TokenForged,
            TokenError::Expired => ErrorCode::TokenExpired,
            TokenError::WrongUser => ErrorCode::TokenWrongUser,
        }
    }
}

fn mac(secret: &[u8], claims: &[u8]) -> HmacSha256 {
    let mut m = HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any length");
    m.update(claims);
    m
}

impl ResumeToken {
    /// Signs the claims with `secret` and encodes them.
    pub fn sign(&self, secret: &[u8]) -> String {
        let mut raw = format!("{}:{}:{}", self.user_id, self.offset, self.issued_at).into_bytes();
        let tag = mac(secret, &raw).finalize().into_bytes();
        raw.push(b':');
        raw.extend_from_slice(&tag);
        URL_SAFE_NO_PAD.encode(raw)
    }

    /// Decodes `token`, checks its MAC with `secret`, that it is not older
    /// than `ttl_secs` at `now` (unix seconds) and that it names `user_id`.
    pub fn verify(
        token: &str,
        secret: &[u8],
        user_id: &str,
        now: u64,
        ttl_secs: u64,
    ) -> Result<ResumeToken, TokenError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::Malformed);
        }
        let raw = URL_SAFE_NO_PAD
            .decode(token)
            .map_err(|_| TokenError::Malformed)?;
        if raw.len() < MAC_LEN + 1 || raw[raw.len() - MAC_LEN - 1] != b':' {
            return Err(TokenError::Malformed);
        }
        let (claims, tag) = raw.split_at(raw.len() - MAC_LEN - 1);
        mac(secret, claims)
            .verify_slice(&tag[1..])
            .map_err(|_| TokenError::BadSignature)?;
        // The MAC holds: the claims are ours, so a parse failure below means a
        // node wrote a bad token, which we still report as malformed.
        let claims = std::str::from_utf8(claims).map_err(|_| TokenError::Malformed)?;
        let mut fields = claims.rsplitn(3, ':');
        let issued_at = fields.next().and_then(|f| f.parse::<u64>().ok());
        let offset = fields.next().and_then(|f| f.parse::<u64>().ok());
        let user = fields.next();
        let (Some(issued_at), Some(offset), Some(user)) = (issued_at, offset, user) else {
            return Err(TokenError::Malformed);
        };
        if user != user_id {
            return Err(TokenError::WrongUser);
        }
        let too_new = issued_at > now.saturating_add(MAX_SKEW_SECS);
        let too_old = now.saturating_sub(issued_at) > ttl_secs;
        if too_new || too_old {
            return Err(TokenError::Expired);
        }
        Ok(ResumeToken {
            user_id: user.to_owned(),
            offset,
            issued_at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn token() -> ResumeToken {
        ResumeToken {
            user_id: "alice".into(),
            offset: 42,
            issued_at: 1_700_000_000,
        }
    }

    #[test]
    fn signed_token_verifies_and_round_trips() {
        let t = token().sign(SECRET);
        let back = ResumeToken::verify(&t, SECRET, "alice", 1_700_000_100, 3600).unwrap();
        assert_eq!(back, token());
    }

    #[test]
    fn user_ids_with_colons_round_trip() {
        let mut c = token();
        c.user_id = "urn:user:7".into();
        let t = c.sign(SECRET);
        assert_eq!(
            ResumeToken::verify(&t, SECRET, "urn:user:7", 1_700_000_000, 3600).unwrap(),
            c
        );
    }

    #[test]
    fn token_signed_with_another_secret_is_forged() {
        let t = token().sign(b"another-secret-of-enough-length");
        assert_eq!(
            ResumeToken::verify(&t, SECRET, "alice", 1_700_000_000, 3600),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn altered_claims_are_forged() {
        let t = token().sign(SECRET);
        let mut raw = URL_SAFE_NO_PAD.decode(&t).unwrap();
        raw[6] = b'9'; // "alice:42" -> "alice:92"
        let altered = URL_SAFE_NO_PAD.encode(raw);
        assert_eq!(
            ResumeToken::verify(&altered, SECRET, "alice", 1_700_000_000, 3600),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn truncated_token_is_malformed_or_forged() {
        let t = token().sign(SECRET);
        for cut in [0, 1, 10, t.len() / 2, t.len() - 1] {
            let err =
                ResumeToken::verify(&t[..cut], SECRET, "alice", 1_700_000_000, 3600).unwrap_err();
            assert!(
                matches!(err, TokenError::Malformed | TokenError::BadSignature),
                "cut {cut}: {err:?}"
            );
        }
    }

    #[test]
    fn garbage_is_malformed() {
        for bad in ["", "!!!", "not-a-token", &"A".repeat(600)] {
            assert_eq!(
                ResumeToken::verify(bad, SECRET, "alice", 0, 3600),
                Err(TokenError::Malformed)
            );
        }
    }

    #[test]
    fn expired_token_is_refused() {
        let t = token().sign(SECRET);
        assert_eq!(
            ResumeToken::verify(&t, SECRET, "alice", 1_700_000_000 + 3601, 3600),
            Err(TokenError::Expired)
        );
    }

    #[test]
    fn token_from_the_future_is_refused() {
        let t = token().sign(SECRET);
        assert_eq!(
            ResumeToken::verify(&t, SECRET, "alice", 1_700_000_000 - 3600, 3600),
            Err(TokenError::Expired)
        );
    }

    #[test]
    fn a_clock_near_the_end_of_u64_does_not_overflow() {
        // Found by fuzz/fuzz_targets/resume_token.rs: `now + MAX_SKEW_SECS`
        // overflowed (a panic with overflow checks, a wrong Expired without).
        let t = token().sign(SECRET);
        assert_eq!(
            ResumeToken::verify(&t, SECRET, "alice", u64::MAX - 1, 3600),
            Err(TokenError::Expired)
        );
        let late = ResumeToken {
            issued_at: u64::MAX - 10,
            ..token()
        };
        assert_eq!(
            ResumeToken::verify(&late.sign(SECRET), SECRET, "alice", u64::MAX - 5, 3600),
            Ok(late)
        );
    }

    #[test]
    fn token_for_another_user_is_refused() {
        let t = token().sign(SECRET);
        assert_eq!(
            ResumeToken::verify(&t, SECRET, "bob", 1_700_000_000, 3600),
            Err(TokenError::WrongUser)
        );
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn any_text_verifies_or_is_refused_without_panic(token in "\\PC{0,200}", now in any::<u64>()) {
                let _ = ResumeToken::verify(&token, SECRET, "alice", now, 3600);
            }

            #[test]
            fn any_base64_claims_are_refused_without_panic(raw in prop::collection::vec(any::<u8>(), 0..120)) {
                let token = URL_SAFE_NO_PAD.encode(&raw);
                prop_assert!(ResumeToken::verify(&token, SECRET, "alice", 1_700_000_000, 3600).is_err());
            }

            #[test]
            fn signed_tokens_round_trip(
                user in "[A-Za-z0-9._@:+=-]{1,128}",
                offset in any::<u64>(),
                issued_at in 0u64..(1 << 40),
            ) {
                let claims = ResumeToken { user_id: user.clone(), offset, issued_at };
                let token = claims.sign(SECRET);
                prop_assert_eq!(ResumeToken::verify(&token, SECRET, &user, issued_at, 3600), Ok(claims));
            }
        }
    }
}
