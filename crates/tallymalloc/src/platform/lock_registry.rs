//! Every lock of the allocator, by rank: the one order in which locks nest (checked in debug
//! builds), the order in which the fork handlers hold them all, and which ranks each thread
//! holds (so that a signal handler can tell whether the reports may take locks on its thread).
//!
//! A [`SpinLock`](crate::platform::sync::SpinLock) joins the registry the first time it is taken, so no
//! lock can be left out of the fork handlers: a lock never taken is never held. Each lock names
//! its [`Rank`] where it is made; a thread may take a lock only while every lock it holds has a
//! lower rank, and the fork handler takes them lowest rank first, so it never waits for a lock
//! whose holder waits for one the handler already has.
//!
//! Invariants:
//! - **R1**: a registered lock lives for the rest of the process (a static, or metadata memory,
//!   which is never unmapped), is on exactly one rank's list, and its link never changes.
//! - **R2**: a lock is registered, under `REGISTRATION`, before any thread takes it; each
//!   registration bumps `GENERATION` under `REGISTRATION`.
//! - **R3**: [`hold_all`] returns holding every registered lock and `REGISTRATION`, with no
//!   registration between its walk and its return (the generation it read first is still
//!   current). So in the child of `fork`, no lock is held by a thread that does not exist.
//! - **R4**: locks of one rank never nest (the purge locks of many heaps share a rank).

use crate::platform::sync::RawLock;
use core::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

/// The ranks, outermost first: a thread holding a lock may take only locks of a later rank.
/// The nestings that fix this order: the process set-up runs everything below it; the purger
/// holds the live-heap list while it takes each heap's purge lock; the stats sampler holds the
/// timeline while it reads the stats; debug mode holds its live-block list or quarantine while
/// a report looks up allocation sites; a pool refills from the OS under its lock, which
/// takes none. Leaves (no lock taken under them) come last.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Rank {
    /// `thread.rs`: the one-time process set-up.
    ProcessInit,
    /// `domain.rs`: registering a named domain.
    DomainRegistry,
    /// `timeline.rs`: the stats timeline's samples.
    Timeline,
    /// `debug/`: the live debug blocks.
    DebugLiveBlocks,
    /// `debug/`: the quarantine of freed debug blocks.
    DebugQuarantine,
    /// `sites.rs`: the allocation-site table.
    Sites,
    /// `heap.rs`: the list of live heaps, which the purger walks.
    LiveHeaps,
    /// `heap.rs`: each heap's queue of pages waiting to be purged.
    HeapPurge,
    /// `thread.rs`: the pool of unused heaps.
    HeapPool,
    /// `thread.rs`: the pool of unused domain heaps.
    DomainHeapPool,
    /// `segment.rs`: abandoned segments waiting for adoption.
    AbandonedSegments,
    /// `huge_cache.rs`: huge mappings kept for reuse.
    HugeCache,
    /// `stats/`: the list of live heaps' counters.
    StatsCounters,
    /// `profile/samples.rs`: a shard of the live samples.
    ProfileSamples,
    /// `profile/totals.rs`: the estimates by site.
    ProfileTotals,
    /// `profile/python.rs`: the names of Python code objects.
    ProfilePythonNames,
}

const RANKS: usize = Rank::ProfilePythonNames as usize + 1;

impl Rank {
    #[cfg(debug_assertions)]
    const ALL: [Rank; RANKS] = [
        Rank::ProcessInit,
        Rank::DomainRegistry,
        Rank::Timeline,
        Rank::DebugLiveBlocks,
        Rank::DebugQuarantine,
        Rank::Sites,
        Rank::LiveHeaps,
        Rank::HeapPurge,
        Rank::HeapPool,
        Rank::DomainHeapPool,
        Rank::AbandonedSegments,
        Rank::HugeCache,
        Rank::StatsCounters,
        Rank::ProfileSamples,
        Rank::ProfileTotals,
        Rank::ProfilePythonNames,
    ];
}

/// Each rank's registered locks, linked through `RawLock::next` (R1).
static REGISTERED: [AtomicPtr<RawLock>; RANKS] =
    [const { AtomicPtr::new(core::ptr::null_mut()) }; RANKS];
/// Serialises registrations; the fork handler holds it from its final check until after the
/// fork (R3), so no lock joins while it holds the rest. It is never registered itself, so its
/// rank is not used.
static REGISTRATION: RawLock = RawLock::new(Rank::ProcessInit);
/// How many registrations there have been (R2).
static GENERATION: AtomicUsize = AtomicUsize::new(0);

fn take_registration() {
    REGISTRATION.acquire_unchecked();
}

fn release_registration() {
    // SAFETY: every caller took it with `take_registration` on this thread.
    unsafe { REGISTRATION.release() };
}

/// Puts `lock` on its rank's list, once (R2). Called before the lock is first taken.
///
/// # Safety
/// `lock` lives for the rest of the process (R1).
#[cold]
#[inline(never)]
pub unsafe fn register(lock: &RawLock) {
    take_registration();
    if !lock.is_registered() {
        let head = &REGISTERED[lock.rank() as usize];
        // SAFETY: R1: the caller promises the lock outlives every walk of the list; under
        // REGISTRATION nobody else links a lock, and a registered lock's link is never touched.
        unsafe { lock.link(head.load(Ordering::Relaxed)) };
        head.store(lock as *const RawLock as *mut RawLock, Ordering::Release);
        lock.mark_registered();
        GENERATION.fetch_add(1, Ordering::Release);
    }
    release_registration();
}

/// The first lock of each rank's list. Locks join at the front, so the lists from these heads
/// on are what was registered when they were read, whatever joins later (R1).
fn heads() -> [*mut RawLock; RANKS] {
    core::array::from_fn(|rank| REGISTERED[rank].load(Ordering::Acquire))
}

/// Calls `visit` on the locks of the lists from `heads`, lowest rank first (`reverse`: highest
/// first).
fn for_each_lock(heads: &[*mut RawLock; RANKS], reverse: bool, mut visit: impl FnMut(&RawLock)) {
    for index in 0..RANKS {
        let rank = if reverse { RANKS - 1 - index } else { index };
        let mut lock = heads[rank];
        while !lock.is_null() {
            // SAFETY: R1: a registered lock lives on and its link is fixed.
            unsafe {
                visit(&*lock);
                lock = (*lock).next();
            }
        }
    }
}

/// Takes every lock of the allocator, lowest rank first, for `fork` (R3): the prepare handler
/// calls it, and the parent's and child's handlers call [`release_all`].
///
/// It cannot deadlock: while it waits for a lock of some rank it holds only locks of that rank
/// or lower, and the lock's holder waits, if at all, for one of a higher rank (R4) or for
/// `REGISTRATION`, which it does not hold during the walk.
pub fn hold_all() {
    loop {
        let generation = GENERATION.load(Ordering::Acquire);
        let heads = heads();
        for_each_lock(&heads, false, RawLock::acquire_unchecked);
        take_registration();
        if GENERATION.load(Ordering::Relaxed) == generation {
            return;
        }
        // A lock joined during the walk, and its thread may hold it now: let go, walk again.
        // There are only so many locks to join.
        release_registration();
        // SAFETY: the walk above took exactly these locks.
        for_each_lock(&heads, true, |lock| unsafe { lock.release() });
    }
}

/// Releases every lock [`hold_all`] took.
///
/// # Safety
/// The calling thread returned from `hold_all` and has not released since (in the child of
/// `fork`, the thread that forked; it is the only thread).
pub unsafe fn release_all() {
    // R3: the lists are as `hold_all` walked them.
    // SAFETY: the caller's contract: we hold them all.
    for_each_lock(&heads(), true, |lock| unsafe { lock.release() });
    release_registration();
}

std::thread_local! {
    /// The ranks of the locks this thread holds, one bit each (R4: never two of one rank).
    static HELD: core::cell::Cell<u32> = const { core::cell::Cell::new(0) };
}

/// Notes that the thread takes a lock of `rank`; in debug builds, checks first that this keeps
/// the order: every lock the thread holds is of a lower rank. A violation is a deadlock waiting
/// to happen.
#[inline]
pub fn note_taken(rank: Rank) {
    HELD.with(|held| {
        let bits = held.get();
        #[cfg(debug_assertions)]
        if bits >> rank as u32 != 0 {
            lock_order_violated(rank, bits);
        }
        held.set(bits | 1 << rank as u32);
    });
}

/// Notes that the thread let go of its lock of `rank`.
#[inline]
pub fn note_released(rank: Rank) {
    HELD.with(|held| held.set(held.get() & !(1 << rank as u32)));
}

/// Whether the calling thread holds any of the allocator's locks: a signal handler that would
/// take them must not run on it (`stats/exit_report.rs`).
pub fn holds_any() -> bool {
    HELD.with(|held| held.get() != 0)
}

#[cfg(debug_assertions)]
#[cold]
fn lock_order_violated(rank: Rank, held: u32) -> ! {
    use core::fmt::Write;
    let mut line = crate::platform::text::Line::new();
    let _ = write!(
        line,
        "tallymalloc: lock order violated: taking {rank:?} while holding"
    );
    for other in Rank::ALL {
        if held & (1 << other as u32) != 0 {
            let _ = write!(line, " {other:?}");
        }
    }
    line.text(b"\n").write_to_stderr();
    crate::platform::text::abort_process();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::sync::SpinLock;
    use core::sync::atomic::{AtomicBool, AtomicU32};

    fn registered_count(target: *const RawLock) -> usize {
        let mut count = 0;
        for_each_lock(&heads(), false, |lock| {
            if core::ptr::eq(lock, target) {
                count += 1;
            }
        });
        count
    }

    #[test]
    fn a_lock_joins_the_registry_once_when_first_taken() {
        static LOCK: SpinLock<u32> = SpinLock::new(Rank::StatsCounters, 0);
        let raw = LOCK.raw() as *const RawLock;
        assert_eq!(registered_count(raw), 0);
        for _ in 0..3 {
            *LOCK.lock() += 1;
        }
        assert_eq!(registered_count(raw), 1);
    }

    /// Threads make new locks and take them at once (registering them on the way) while this
    /// thread holds every lock again and again: whenever `hold_all` returns, no other thread
    /// may be inside any lock (R3). A lock registered after the walk and taken before
    /// `hold_all` returned would show here (it does, most runs, without the final check of the
    /// generation).
    #[test]
    fn while_every_lock_is_held_no_thread_is_inside_one() {
        const LOCKS: u32 = 1000;
        static INSIDE: AtomicU32 = AtomicU32::new(0);
        static ROUND: AtomicU32 = AtomicU32::new(0);
        static MADE: AtomicU32 = AtomicU32::new(0);
        static STOP: AtomicBool = AtomicBool::new(false);
        let workers: Vec<_> = [Rank::Timeline, Rank::HeapPurge, Rank::StatsCounters]
            .into_iter()
            .map(|rank| {
                std::thread::spawn(move || {
                    // A new lock each round this thread sees, so that walks stay short; the
                    // last one again in between.
                    let mut lock: &'static SpinLock<u64> =
                        Box::leak(Box::new(SpinLock::new(rank, 0)));
                    let mut seen = 0;
                    while !STOP.load(Ordering::SeqCst) {
                        let round = ROUND.load(Ordering::SeqCst);
                        if round != seen {
                            // SL1: leaked, so it lives on.
                            lock = Box::leak(Box::new(SpinLock::new(rank, 0)));
                            seen = round;
                            MADE.fetch_add(1, Ordering::SeqCst);
                        }
                        let mut value = lock.lock();
                        INSIDE.fetch_add(1, Ordering::SeqCst);
                        *value += 1;
                        INSIDE.fetch_sub(1, Ordering::SeqCst);
                    }
                })
            })
            .collect();
        let mut violations = 0;
        // Until the workers have raced a thousand new locks against the walks.
        while MADE.load(Ordering::SeqCst) < LOCKS {
            hold_all();
            // Nothing here may allocate or panic: every lock, the allocator's too, is held.
            violations += INSIDE.load(Ordering::SeqCst);
            // SAFETY: `hold_all` just returned on this thread.
            unsafe { release_all() };
            ROUND.fetch_add(1, Ordering::SeqCst);
        }
        STOP.store(true, Ordering::SeqCst);
        for worker in workers {
            worker.join().unwrap();
        }
        let made = MADE.load(Ordering::SeqCst);
        assert_eq!(violations, 0, "with {made} locks made");
    }
}
