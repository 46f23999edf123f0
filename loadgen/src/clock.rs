//! The one clock every latency in loadgen is measured with.
//!
//! Invariant: all timestamps are `CLOCK_MONOTONIC` nanoseconds. That clock is
//! system-wide on Linux, so a timestamp written into a payload by one core (or
//! one worker process) can be subtracted from a reading taken by another core
//! or process on the same host; `std::time::Instant` cannot be serialized, so
//! it is not used for anything that travels.

/// Current `CLOCK_MONOTONIC` reading in nanoseconds.
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists
    // on Linux, so the call cannot fail.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Microseconds between two monotonic readings, at least 1 (an HDR histogram
/// with a lowest value of 1 cannot hold 0, and a sub-microsecond delivery is
/// recorded as 1 µs).
pub fn elapsed_us(from_ns: u64, to_ns: u64) -> u64 {
    (to_ns.saturating_sub(from_ns) / 1_000).max(1)
}

/// Wall-clock seconds since the Unix epoch, for the report's `started_at`.
pub fn unix_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monotonic_never_goes_back() {
        let a = now_ns();
        let b = now_ns();
        assert!(b >= a);
    }

    #[test]
    fn elapsed_is_at_least_one_microsecond() {
        assert_eq!(elapsed_us(10, 10), 1);
        assert_eq!(elapsed_us(20, 10), 1);
        assert_eq!(elapsed_us(0, 2_500_000), 2_500);
    }
}
