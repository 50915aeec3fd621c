//! A minimal spin lock for the allocator's slow paths (heap pool, abandoned segments, one-time
//! set-up). `std::sync::Mutex` would do, but it must never allocate or call back into malloc,
//! and a spin lock makes that obvious.
//!
//! Every lock has a rank and joins the lock registry when first taken (`lock_registry.rs`),
//! which orders nesting and holds every lock across `fork`.
//!
//! Invariants:
//! - **SL1**: a lock that is ever taken lives for the rest of the process (a static, or metadata
//!   memory, which is never unmapped): the registry keeps its address.
//! - **SL2**: the lock is held only for a handful of pointer updates, never across a system call
//!   that can block for long (the pool's `mmap` aside, and a heap's purge lock across the
//!   `madvise` of the pages it returns) nor across a call into user code.

use crate::platform::lock_registry::{self, Rank};
use crate::platform::os;
use core::cell::UnsafeCell;
use core::ops::{Deref, DerefMut};
use core::ptr;
use core::sync::atomic::{AtomicBool, Ordering};

/// The lock itself, without its value: what the lock registry keeps and the fork handlers take.
pub struct RawLock {
    locked: AtomicBool,
    /// Set once the lock is on the registry's list for its rank (lock_registry.rs, R2).
    registered: AtomicBool,
    rank: Rank,
    /// The next lock of the same rank in the registry; written once, when registered (R1).
    next: UnsafeCell<*mut RawLock>,
}

// SAFETY: `next` is written once, under the registry's lock, before the lock is published on
// a list (R1); everything else is atomic or constant.
unsafe impl Sync for RawLock {}

impl RawLock {
    pub const fn new(rank: Rank) -> RawLock {
        RawLock {
            locked: AtomicBool::new(false),
            registered: AtomicBool::new(false),
            rank,
            next: UnsafeCell::new(ptr::null_mut()),
        }
    }

    pub fn rank(&self) -> Rank {
        self.rank
    }

    pub fn is_registered(&self) -> bool {
        self.registered.load(Ordering::Acquire)
    }

    pub fn mark_registered(&self) {
        self.registered.store(true, Ordering::Release);
    }

    /// # Safety
    /// Only the registry calls this, once, under its lock, before publishing the lock (R1).
    pub unsafe fn link(&self, next: *mut RawLock) {
        // SAFETY: the caller's contract: nobody reads `next` yet.
        unsafe { *self.next.get() = next };
    }

    /// The next lock of this rank in the registry.
    pub fn next(&self) -> *mut RawLock {
        // SAFETY: R1: `next` no longer changes once the lock is registered, and only the
        // registry's walks, which see registered locks only, call this.
        unsafe { *self.next.get() }
    }

    /// Takes the lock: registers it first if it is new (R2), checks the rank order in debug
    /// builds. The lock must live for the rest of the process (R1).
    fn acquire(&self) {
        if !self.is_registered() {
            // SAFETY: SpinLock's invariant SL1: every lock that is taken lives for good.
            unsafe { lock_registry::register(self) };
        }
        lock_registry::note_taken(self.rank);
        self.acquire_unchecked();
    }

    /// Takes the lock without registering it or checking the order: the fork handler's walk.
    pub fn acquire_unchecked(&self) {
        let mut spins = 0u32;
        while self
            .locked
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            spins += 1;
            if spins < 64 {
                core::hint::spin_loop();
            } else {
                os::yield_thread();
            }
        }
    }

    /// # Safety
    /// The caller holds the lock (through `acquire_unchecked` in the fork handlers).
    pub unsafe fn release(&self) {
        self.locked.store(false, Ordering::Release);
    }
}

/// A lock and the value it guards (SL1).
pub struct SpinLock<T> {
    raw: RawLock,
    value: UnsafeCell<T>,
}

// SAFETY: the value is reached only through a guard, and at most one guard exists at a time.
unsafe impl<T: Send> Sync for SpinLock<T> {}
// SAFETY: moving the lock moves the value; T is Send.
unsafe impl<T: Send> Send for SpinLock<T> {}

impl<T> SpinLock<T> {
    /// A lock of `rank` in the allocator's lock order (lock_registry.rs).
    pub const fn new(rank: Rank, value: T) -> Self {
        Self {
            raw: RawLock::new(rank),
            value: UnsafeCell::new(value),
        }
    }

    #[cfg(test)]
    pub fn raw(&self) -> &RawLock {
        &self.raw
    }

    pub fn lock(&self) -> SpinGuard<'_, T> {
        self.raw.acquire();
        SpinGuard { lock: self }
    }
}

pub struct SpinGuard<'a, T> {
    lock: &'a SpinLock<T>,
}

impl<T> Deref for SpinGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: holding the guard means holding the lock, so no one else touches the value.
        unsafe { &*self.lock.value.get() }
    }
}

impl<T> DerefMut for SpinGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`, and the guard is borrowed mutably.
        unsafe { &mut *self.lock.value.get() }
    }
}

impl<T> Drop for SpinGuard<'_, T> {
    fn drop(&mut self) {
        lock_registry::note_released(self.lock.raw.rank);
        // SAFETY: the guard stands for the lock, taken in `lock`.
        unsafe { self.lock.raw.release() };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_excludes_other_threads() {
        static COUNTER: SpinLock<u64> = SpinLock::new(Rank::StatsCounters, 0);
        let threads: Vec<_> = (0..4)
            .map(|_| {
                std::thread::spawn(|| {
                    for _ in 0..20_000 {
                        *COUNTER.lock() += 1;
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        assert_eq!(*COUNTER.lock(), 80_000);
    }
}
