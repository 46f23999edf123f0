//! Parking idle connections: a connection silent for `--park-after-secs`
//! gives up its glommio stream and waits in a per-core epoll set instead.
//!
//! Why: glommio arms one io_uring poll per waiting stream, and its source
//! (`Rc<RefCell<InnerSource>>`, ~500 B in mimalloc's 512 class) is the
//! largest thing an idle connection holds. Parked, the connection keeps only
//! its socket's fd (in the socket task's phase) and one epoll entry, which
//! lives in the kernel. The first byte, queued message, ping or deadline
//! unparks it: a new glommio stream on the same fd, and the task goes on as
//! before.
//!
//! One epoll set per core, registered `EPOLLONESHOT` (an fd reports once,
//! then stays silent until it is removed): a thread of the core's own,
//! blocked in `epoll_wait`, writes the ready connections' ids into a
//! socketpair; the core reads them with one glommio stream (the one poll
//! source it keeps for all its parked connections) and wakes their socket
//! tasks. The thread holds nothing of the core but the two fds; it ends when
//! the core's end of the socketpair closes (its own end reports the hang-up
//! through the same epoll set).
//!
//! Invariants: only the owning core registers, removes and wakes (the
//! thread only reads events); a parked fd is registered exactly once and
//! removed before its stream is rebuilt; an id read after its connection
//! unparked or closed is a spurious wake-up, nothing more (connection ids
//! are never reused on a core).
//!
//! epoll through `libc` directly: four calls, no crate needed for them.

use std::{
    cell::OnceCell,
    io::{self, Write},
    os::{
        fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd},
        unix::net::UnixStream as StdUnixStream,
    },
    rc::{Rc, Weak},
    sync::Arc,
};

use futures_lite::AsyncReadExt;

use super::shard::Shard;

/// The id the waiting thread's own end of the socketpair is registered
/// under: it reports that the core is gone.
const HANG_UP: u64 = u64::MAX;
/// Events taken per `epoll_wait`.
const EVENTS: usize = 256;

// The node's allocator; linked here for `mi_collect` even where another
// global allocator is set (tests, examples).
extern crate mimalloc as _;

extern "C" {
    /// mimalloc: frees this thread's cached and retired pages back to the
    /// OS (a no-op on a heap that was never used).
    fn mi_collect(force: bool);
}

/// Parks since the last [`collect`], and in the last second.
struct Collect {
    pending: u32,
    this_second: u32,
    last: Option<std::time::Instant>,
}

/// How often at most a core returns freed pages while connections keep
/// parking (a forced `mi_collect` walks the core's whole heap).
const COLLECT_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

thread_local! {
    static COLLECT: std::cell::RefCell<Collect> = const {
        std::cell::RefCell::new(Collect { pending: 0, this_second: 0, last: None })
    };
}

/// Once a second (the core's tick): gives the memory that parked
/// connections' poll sources held back to the OS, once a burst of parking
/// is over (a second without parks) or every [`COLLECT_EVERY`] while it
/// goes on. Without it mimalloc keeps the freed pages until later activity
/// on this core, and an idle core has none.
pub fn collect() {
    let due = COLLECT.with(|c| {
        let mut c = c.borrow_mut();
        let burst_over = std::mem::take(&mut c.this_second) == 0;
        let now = std::time::Instant::now();
        let due =
            c.pending > 0 && (burst_over || c.last.map_or(true, |t| now - t >= COLLECT_EVERY));
        if due {
            c.pending = 0;
            c.last = Some(now);
        }
        due
    });
    if due {
        // SAFETY: no arguments to uphold; the node links mimalloc.
        unsafe { mi_collect(true) };
    }
}

thread_local! {
    /// This core's epoll set, made by the first connection that parks.
    static PARKER: OnceCell<Option<Parker>> = const { OnceCell::new() };
}

/// A core's epoll set of parked connections.
struct Parker {
    epoll: Arc<OwnedFd>,
}

/// Parks `fd` (a dup of the connection's socket, owned by the caller until
/// it unparks) under the connection's `id`: reports `id` once the socket is
/// readable or hung up. `Err`: parking is not available on this core (the
/// epoll set or its thread could not be made), or the fd could not be
/// registered; the caller keeps its stream.
pub fn park(shard: &Rc<Shard>, fd: &OwnedFd, id: u64) -> io::Result<()> {
    let epoll = PARKER.with(|p| {
        p.get_or_init(|| match Parker::start(Rc::downgrade(shard)) {
            Ok(parker) => Some(parker),
            Err(e) => {
                tracing::warn!(error = %e, "connection parking unavailable on this core");
                None
            }
        })
        .as_ref()
        .map(|p| p.epoll.as_raw_fd())
    });
    let Some(epoll) = epoll else {
        return Err(io::Error::other("parking unavailable"));
    };
    let flags = libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLONESHOT;
    ctl(epoll, libc::EPOLL_CTL_ADD, fd.as_raw_fd(), flags as u32, id)?;
    COLLECT.with(|c| {
        let mut c = c.borrow_mut();
        c.pending += 1;
        c.this_second += 1;
    });
    Ok(())
}

/// Removes a parked fd from the core's epoll set (before its stream is
/// rebuilt, so the set never reports an fd that glommio watches).
pub fn unpark(fd: &OwnedFd) {
    PARKER.with(|p| {
        if let Some(Some(parker)) = p.get() {
            // ENOENT cannot happen (registered once, removed once); any
            // other error leaves nothing to undo.
            let _ = ctl(
                parker.epoll.as_raw_fd(),
                libc::EPOLL_CTL_DEL,
                fd.as_raw_fd(),
                0,
                0,
            );
        }
    });
}

fn ctl(epoll: RawFd, op: libc::c_int, fd: RawFd, events: u32, id: u64) -> io::Result<()> {
    let mut event = libc::epoll_event { events, u64: id };
    // SAFETY: both fds are open (borrowed for the call); `event` outlives it.
    if unsafe { libc::epoll_ctl(epoll, op, fd, &mut event) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

impl Parker {
    /// Makes the epoll set, its thread and the core's reader of ready ids.
    fn start(shard: Weak<Shard>) -> io::Result<Parker> {
        // SAFETY: plain syscall; the result is checked before use.
        let raw = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh fd owned by nobody else.
        let epoll = Arc::new(unsafe { OwnedFd::from_raw_fd(raw) });
        let (core_end, thread_end) = StdUnixStream::pair()?;
        ctl(
            epoll.as_raw_fd(),
            libc::EPOLL_CTL_ADD,
            thread_end.as_raw_fd(),
            (libc::EPOLLRDHUP | libc::EPOLLHUP) as u32,
            HANG_UP,
        )?;
        let thread_epoll = epoll.clone();
        std::thread::Builder::new()
            .name("shardcast-park".into())
            .spawn(move || wait_loop(&thread_epoll, thread_end))?;
        core_end.set_nonblocking(true)?;
        // SAFETY: the fd is taken out of the std stream, owned by glommio's.
        let reader = unsafe { glommio::net::UnixStream::from_raw_fd(core_end.into_raw_fd()) };
        glommio::spawn_local(wake_loop(shard, reader)).detach();
        Ok(Parker { epoll })
    }
}

/// The waiting thread: ready ids into the socketpair until the core is gone.
fn wait_loop(epoll: &OwnedFd, mut out: StdUnixStream) {
    let mut events = [libc::epoll_event { events: 0, u64: 0 }; EVENTS];
    let mut ids = Vec::with_capacity(EVENTS * 8);
    loop {
        // SAFETY: `events` is writable for EVENTS entries.
        let n = unsafe {
            libc::epoll_wait(
                epoll.as_raw_fd(),
                events.as_mut_ptr(),
                EVENTS as libc::c_int,
                -1,
            )
        };
        if n < 0 {
            if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            tracing::error!(error = %io::Error::last_os_error(), "epoll_wait failed: parked connections are no longer woken");
            return;
        }
        ids.clear();
        for event in &events[..n as usize] {
            let id = event.u64;
            if id == HANG_UP {
                return;
            }
            ids.extend_from_slice(&id.to_le_bytes());
        }
        // Blocks while the core is behind: the ids wait in the kernel.
        if out.write_all(&ids).is_err() {
            return;
        }
    }
}

/// The core's side: reads ready ids and wakes their socket tasks.
async fn wake_loop(shard: Weak<Shard>, mut reader: glommio::net::UnixStream) {
    let mut buf = vec![0u8; 8 * EVENTS];
    let mut have = 0;
    loop {
        let n = match reader.read(&mut buf[have..]).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        have += n;
        let Some(shard) = shard.upgrade() else { return };
        let whole = have - have % 8;
        for id in buf[..whole].chunks_exact(8) {
            let id = u64::from_le_bytes(id.try_into().expect("8 bytes"));
            shard.wake_parked(id);
        }
        buf.copy_within(whole..have, 0);
        have -= whole;
    }
}
