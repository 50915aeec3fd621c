//! A minimal spin lock for the allocator's slow paths (heap pool, abandoned segments, one-time
//! set-up). `std::sync::Mutex` would do, but it must never allocate or call back into malloc,
//! and a spin lock makes that obvious.
//!
//! Invariants: the lock is held only for a handful of pointer updates, never across a system
//! call that can block for long (the pool's `mmap` aside, and a heap's purge lock across the
//! `madvise` of the pages it returns) nor across a call into user code.

use crate::os;
use core::cell::UnsafeCell;
use core::ops::{Deref, DerefMut};
use core::sync::atomic::{AtomicBool, Ordering};

pub struct SpinLock<T> {
    locked: AtomicBool,
    value: UnsafeCell<T>,
}

// SAFETY: the value is reached only through a guard, and at most one guard exists at a time.
unsafe impl<T: Send> Sync for SpinLock<T> {}
// SAFETY: moving the lock moves the value; T is Send.
unsafe impl<T: Send> Send for SpinLock<T> {}

impl<T> SpinLock<T> {
    pub const fn new(value: T) -> Self {
        Self {
            locked: AtomicBool::new(false),
            value: UnsafeCell::new(value),
        }
    }

    pub fn lock(&self) -> SpinGuard<'_, T> {
        self.acquire();
        SpinGuard { lock: self }
    }

    fn acquire(&self) {
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

    /// Takes the lock without a guard, for `fork`: held from the prepare handler to the
    /// parent's and child's handlers, which call [`SpinLock::release_after_fork`].
    pub fn hold_for_fork(&self) {
        self.acquire();
    }

    /// Releases a lock taken by [`SpinLock::hold_for_fork`].
    ///
    /// # Safety
    /// The calling thread must hold the lock through `hold_for_fork` (in the child of `fork`,
    /// the thread that forked holds it, and it is the only thread).
    pub unsafe fn release_after_fork(&self) {
        self.locked.store(false, Ordering::Release);
    }
}

/// A global lock that `thread.rs`'s fork handlers hold across `fork`, so the child never
/// inherits one held by a thread that does not exist there.
pub trait ForkLock: Sync {
    fn hold_for_fork(&self);
    /// # Safety
    /// As [`SpinLock::release_after_fork`].
    unsafe fn release_after_fork(&self);
}

impl<T: Send> ForkLock for SpinLock<T> {
    fn hold_for_fork(&self) {
        SpinLock::hold_for_fork(self);
    }

    unsafe fn release_after_fork(&self) {
        // SAFETY: the caller's contract.
        unsafe { SpinLock::release_after_fork(self) }
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
        self.lock.locked.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_excludes_other_threads() {
        static COUNTER: SpinLock<u64> = SpinLock::new(0);
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
