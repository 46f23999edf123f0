//! The reconnect backoff the contract tells clients to use:
//! `t_k = min(T_max, T_0 * 2^k) + U(0, J)`, where `k` counts the failed
//! attempts so far (k = 0 for the first reconnect).
//!
//! The deterministic part and the jitter are kept apart so the schedule can be
//! tested exactly; the jitter spreads a wave of reconnects over `J` so a storm
//! does not hit the server as one synchronized spike.

use rand::Rng;
use std::time::Duration;

/// Backoff parameters (`T_0`, `T_max`, `J`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// `T_0`: the base delay.
    pub base: Duration,
    /// `T_max`: the cap on the exponential part.
    pub max: Duration,
    /// `J`: the width of the uniform jitter added on top.
    pub jitter: Duration,
}

impl Backoff {
    /// The deterministic part `min(T_max, T_0 * 2^k)`; saturates instead of
    /// overflowing for large `k`.
    pub fn exponential(&self, k: u32) -> Duration {
        let factor = 1u32.checked_shl(k.min(31)).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.max)
    }

    /// `t_k` with the jitter drawn from `rng`: uniform in `[0, J)` (or 0 when
    /// `J` is 0).
    pub fn delay(&self, k: u32, rng: &mut impl Rng) -> Duration {
        let jitter_ns = self.jitter.as_nanos() as u64;
        let j = if jitter_ns == 0 {
            0
        } else {
            rng.random_range(0..jitter_ns)
        };
        self.exponential(k) + Duration::from_nanos(j)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{rngs::SmallRng, SeedableRng};

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn schedule_doubles_from_t0_until_the_cap() {
        let b = Backoff {
            base: ms(100),
            max: ms(1_000),
            jitter: Duration::ZERO,
        };
        let got: Vec<u64> = (0..7)
            .map(|k| b.exponential(k).as_millis() as u64)
            .collect();
        assert_eq!(got, vec![100, 200, 400, 800, 1000, 1000, 1000]);
    }

    #[test]
    fn huge_attempt_counts_saturate_at_the_cap() {
        let b = Backoff {
            base: ms(100),
            max: ms(30_000),
            jitter: Duration::ZERO,
        };
        assert_eq!(b.exponential(64), ms(30_000));
        assert_eq!(b.exponential(u32::MAX), ms(30_000));
    }

    #[test]
    fn jitter_stays_within_zero_and_j() {
        let b = Backoff {
            base: ms(50),
            max: ms(400),
            jitter: ms(20),
        };
        let mut rng = SmallRng::seed_from_u64(1);
        let mut lo = Duration::MAX;
        let mut hi = Duration::ZERO;
        for k in 0..6 {
            for _ in 0..500 {
                let d = b.delay(k, &mut rng);
                let extra = d - b.exponential(k);
                assert!(extra < ms(20), "jitter {extra:?} at k={k}");
                lo = lo.min(extra);
                hi = hi.max(extra);
            }
        }
        // The jitter actually spreads (not stuck at one end).
        assert!(lo < ms(2) && hi > ms(18), "lo {lo:?} hi {hi:?}");
    }

    #[test]
    fn zero_jitter_is_exactly_the_exponential_part() {
        let b = Backoff {
            base: ms(10),
            max: ms(80),
            jitter: Duration::ZERO,
        };
        let mut rng = SmallRng::seed_from_u64(2);
        assert_eq!(b.delay(2, &mut rng), ms(40));
    }
}
