//! Token buckets for per-user rate limits and the per-core handshake cap.
//!
//! A bucket holds at most `burst` tokens and refills at `rate` tokens per
//! second. Time is passed in, so the bucket is pure and testable; tokens are
//! kept in milli-tokens to stay in integers.

use std::{cell::Cell, time::Instant};

/// See the module docs.
pub struct TokenBucket {
    milli_tokens: Cell<u64>,
    last: Cell<Instant>,
}

/// The shape of a bucket: shared by every bucket of one kind.
#[derive(Debug, Clone, Copy)]
pub struct Limit {
    /// Tokens per second.
    pub rate: u32,
    /// Most tokens held.
    pub burst: u32,
}

/// The per-user limits of each message kind.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// `send` and `publish`.
    pub messages: Limit,
    /// `join` and `leave`.
    pub joins: Limit,
}

impl TokenBucket {
    /// A full bucket for `limit`, as of `now`.
    pub fn full(limit: Limit, now: Instant) -> TokenBucket {
        TokenBucket {
            milli_tokens: Cell::new(u64::from(limit.burst.max(1)) * 1000),
            last: Cell::new(now),
        }
    }

    /// Takes one token if there is one.
    pub fn take(&self, limit: Limit, now: Instant) -> bool {
        let elapsed_us = now.saturating_duration_since(self.last.get()).as_micros() as u64;
        let cap = u64::from(limit.burst.max(1)) * 1000;
        // rate tokens/s = rate milli-tokens/ms = rate/1000 milli-tokens/µs
        let refill = elapsed_us.saturating_mul(u64::from(limit.rate)) / 1000;
        let mut have = self.milli_tokens.get();
        if refill > 0 {
            have = (have + refill).min(cap);
            self.last.set(now);
        }
        if have >= 1000 {
            self.milli_tokens.set(have - 1000);
            true
        } else {
            self.milli_tokens.set(have);
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn burst_then_refill_at_rate() {
        let limit = Limit { rate: 10, burst: 3 };
        let t0 = Instant::now();
        let b = TokenBucket::full(limit, t0);
        assert!((0..3).all(|_| b.take(limit, t0)));
        assert!(!b.take(limit, t0));
        // 10/s: one token every 100 ms
        assert!(!b.take(limit, t0 + Duration::from_millis(50)));
        assert!(b.take(limit, t0 + Duration::from_millis(101)));
        assert!(!b.take(limit, t0 + Duration::from_millis(102)));
        // never more than the burst
        let later = t0 + Duration::from_secs(60);
        assert_eq!((0..10).filter(|_| b.take(limit, later)).count(), 3);
    }
}
