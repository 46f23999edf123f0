//! `ResumeToken::verify` with a fixed secret on any text and any `now`: no
//! panic, and a token it accepts names the user asked for, is within its
//! time window, and signs back to a token that verifies to the same claims.
//!
//! Input: 8 bytes of `now` (little-endian), then `user\ntoken` (lossy UTF-8;
//! without a newline the user is `alice`). The secret is the one in
//! src/protocol/vectors/token.json, so the seeds made from those vectors get
//! past the MAC.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shardcast::token::ResumeToken;

const SECRET: &[u8] = b"vector-secret-0123456789abcdef";
const TTL_SECS: u64 = 3600;

fuzz_target!(|data: &[u8]| {
    if data.len() < 8 {
        return;
    }
    let (now, rest) = data.split_at(8);
    let now = u64::from_le_bytes(now.try_into().expect("8 bytes"));
    let rest = String::from_utf8_lossy(rest);
    let (user, token) = rest.split_once('\n').unwrap_or(("alice", &rest));
    if let Ok(claims) = ResumeToken::verify(token, SECRET, user, now, TTL_SECS) {
        assert_eq!(claims.user_id, user);
        assert!(claims.issued_at <= now.saturating_add(60));
        assert!(now.saturating_sub(claims.issued_at) <= TTL_SECS);
        let again = claims.sign(SECRET);
        assert_eq!(
            ResumeToken::verify(&again, SECRET, user, now, TTL_SECS),
            Ok(claims)
        );
    }
});
