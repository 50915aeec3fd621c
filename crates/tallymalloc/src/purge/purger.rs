//! The background purger: a thread that gives free pages and cached huge mappings back to the
//! OS once their purge delay has passed, so that a program that frees a lot and then goes
//! quiet sees its resident memory fall without making another allocator call.
//!
//! Why a thread, not a timer signal: a signal handler would run on top of whatever the
//! interrupted thread was doing, possibly inside the allocator holding the very queue it wants
//! to purge, and would take a signal number from the program. A thread takes the same locks
//! as everyone (a heap's purge queue, heap.rs H4), sleeps between rounds, and never allocates.
//!
//! It starts only once the process has had `START_AT_COMMITTED` bytes committed: a small or
//! short program never gets an extra thread (some programs count their threads: CPython 3.12
//! warns about `fork` in a process with more than one). Owners still purge on their own slow
//! paths; the purger covers the time they make none.
//!
//! Invariants:
//! - **G1**: the thread is created at most once per process (and again in a forked child,
//!   where it does not exist), from `ensure_running`, which `Heap::tick` calls before it
//!   touches any heap state, so the allocations `pthread_create` makes find a working heap.
//! - **G2**: the thread has no heap: it never allocates, and touches heaps only through
//!   `heap::purge_all_due` and the huge cache through `huge_cache::release_expired`.

use crate::alloc::heap;
use crate::alloc::huge_cache;
use crate::platform::os;
use crate::policy::options;
use core::sync::atomic::{AtomicU8, Ordering};

const STOPPED: u8 = 0;
const STARTING: u8 = 1;
const RUNNING: u8 = 2;
/// pthread_create failed: do not try on every slow path.
const GAVE_UP: u8 = 3;

static STATE: AtomicU8 = AtomicU8::new(STOPPED);

/// The purger starts once this much memory has been committed at one time.
const START_AT_COMMITTED: usize = 64 << 20;

/// How long the purger sleeps when nothing waits to be purged.
const IDLE_PAUSE_MILLIS: u64 = 250;

/// Starts the purger if the process has grown enough to want one (G1).
#[inline]
pub fn ensure_running() {
    if STATE.load(Ordering::Relaxed) != STOPPED || os::committed_bytes() < START_AT_COMMITTED {
        return;
    }
    if options::purge_delay_millis() == 0 {
        return; // everything is purged at once: nothing to wait for
    }
    if STATE
        .compare_exchange(STOPPED, STARTING, Ordering::AcqRel, Ordering::Relaxed)
        .is_err()
    {
        return;
    }
    if crate::platform::os::spawn_thread(purge_forever, core::ptr::null_mut()) {
        STATE.store(RUNNING, Ordering::Release);
    } else {
        STATE.store(GAVE_UP, Ordering::Release);
    }
}

/// In a child after `fork` the thread does not exist: let `ensure_running` start another.
pub fn forget_after_fork() {
    STATE.store(STOPPED, Ordering::Relaxed);
}

extern "C" fn purge_forever(_: *mut libc::c_void) -> *mut libc::c_void {
    loop {
        let now = os::monotonic_millis();
        let waiting = heap::purge_all_due(now);
        huge_cache::release_expired(now);
        // While pages wait, come back about when the next ones fall due; otherwise now and
        // then, since a heap that queues pages does not wake us.
        let delay = options::purge_delay_millis();
        let pause = if waiting || !huge_cache::is_empty() {
            delay.clamp(20, 200)
        } else {
            IDLE_PAUSE_MILLIS
        };
        os::sleep_millis(pause);
    }
}
