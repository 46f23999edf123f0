//! What the node asks of the operating system at start-up: enough file
//! descriptors for its connections, and the CPU numbering it pins cores by.

use std::io;

/// Makes sure this process may hold `needed` descriptors: raises the soft
/// `RLIMIT_NOFILE` up to the hard limit if needed (a shell's soft limit is
/// often 1024 while the hard one is far higher). Returns the soft limit in
/// force afterwards; the caller decides whether it is enough.
pub fn ensure_nofile(needed: u64) -> io::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid, writable rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if lim.rlim_cur < needed && lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max.min(needed.max(lim.rlim_cur)),
            rlim_max: lim.rlim_max,
        };
        // SAFETY: a valid rlimit within the hard limit.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            lim.rlim_cur = raised.rlim_cur;
        }
    }
    Ok(lim.rlim_cur)
}

/// The number of CPUs online on the host: pinning numbers CPUs this way
/// (CPU 0 .. n-1), whatever subset this process is allowed to run on, so
/// `--first-cpu 4` under `CPUAffinity=4-7` pins to CPUs 4.., not 0.. (the
/// affinity-aware count, 4 there, would wrap them onto CPUs 0-3).
pub fn online_cpus() -> usize {
    // SAFETY: sysconf has no memory effects.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    if n > 0 {
        n as usize
    } else {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_in_force_is_reported_and_never_lowered() {
        let before = ensure_nofile(0).unwrap();
        assert!(ensure_nofile(before).unwrap() >= before);
    }

    #[test]
    fn online_cpus_count_at_least_the_allowed_ones() {
        let allowed = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert!(online_cpus() >= allowed);
    }
}
