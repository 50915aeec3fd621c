//! A small cache of freed huge mappings, so that a program that frees a multi-megabyte block
//! and allocates another soon after gets memory that is already mapped and faulted in, instead
//! of paying `munmap`, `mmap` and a page fault per 4 KiB again (as mimalloc's segment cache
//! spares it too). Entries go back to the OS after the purge delay, on the next slow path of
//! any thread, or at once with `TALLYMALLOC_PURGE_DELAY=0`.
//!
//! Invariants:
//! - **C1**: a cached mapping holds no live block, is not in the registry (so a double free of
//!   its old block is reported, not accepted), and keeps its segment header; nobody but the
//!   cache refers to it.
//! - **C2**: at most `MAX_ENTRIES` entries and `LIMIT_BYTES` bytes, changed under the lock;
//!   `CACHED` mirrors the entry count for lock-free "anything to do?" checks.
//! - **C3**: mappings leave the cache only under the lock, and are unmapped after it is
//!   released (a system call is never made while holding it).

use crate::options;
use crate::os;
use crate::sync::SpinLock;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicUsize, Ordering};

const MAX_ENTRIES: usize = 8;
const LIMIT_BYTES: usize = 64 << 20;

#[derive(Clone, Copy)]
struct Entry {
    start: usize,
    size: usize,
    expires: u64,
}

struct Cache {
    entries: [Entry; MAX_ENTRIES],
    count: usize,
    bytes: usize,
}

// SAFETY: the cache holds addresses only, touched under its lock.
unsafe impl Send for Cache {}

static CACHE: SpinLock<Cache> = SpinLock::new(Cache {
    entries: [Entry {
        start: 0,
        size: 0,
        expires: 0,
    }; MAX_ENTRIES],
    count: 0,
    bytes: 0,
});
static CACHED: AtomicUsize = AtomicUsize::new(0);

impl Cache {
    fn remove(&mut self, index: usize) -> Entry {
        let entry = self.entries[index];
        self.count -= 1;
        self.entries[index] = self.entries[self.count];
        self.bytes -= entry.size;
        CACHED.store(self.count, Ordering::Relaxed);
        entry
    }
}

/// Mappings taken out of the cache, to unmap once the lock is released (C3).
struct ToRelease {
    entries: [Entry; MAX_ENTRIES + 1],
    count: usize,
}

impl ToRelease {
    fn new() -> ToRelease {
        ToRelease {
            entries: [Entry {
                start: 0,
                size: 0,
                expires: 0,
            }; MAX_ENTRIES + 1],
            count: 0,
        }
    }

    fn push(&mut self, entry: Entry) {
        self.entries[self.count] = entry;
        self.count += 1;
    }

    fn release(self) {
        for entry in &self.entries[..self.count] {
            // SAFETY: C1: the mapping is the cache's alone, and it just left the cache.
            unsafe { os::release(NonNull::new_unchecked(entry.start as *mut u8), entry.size) };
        }
    }
}

/// Keeps a freed huge mapping for reuse. Returns false when it does not fit the cache (or the
/// purge delay is 0): the caller then releases it.
///
/// # Safety
/// `[start, start + size)` must be a whole huge mapping that holds no live block, already
/// out of the registry (C1).
pub unsafe fn put(start: NonNull<u8>, size: usize) -> bool {
    let delay = options::purge_delay_millis();
    if delay == 0 || size > LIMIT_BYTES {
        return false;
    }
    let now = os::monotonic_millis();
    let mut evicted = ToRelease::new();
    {
        let mut cache = CACHE.lock();
        // Expired entries first, then the oldest, until the new one fits.
        let mut index = 0;
        while index < cache.count {
            if cache.entries[index].expires <= now {
                let entry = cache.remove(index);
                evicted.push(entry);
            } else {
                index += 1;
            }
        }
        while cache.count > 0 && (cache.count == MAX_ENTRIES || cache.bytes + size > LIMIT_BYTES) {
            let oldest = (0..cache.count)
                .min_by_key(|&i| cache.entries[i].expires)
                .unwrap_or(0);
            let entry = cache.remove(oldest);
            evicted.push(entry);
        }
        let count = cache.count;
        cache.entries[count] = Entry {
            start: start.as_ptr() as usize,
            size,
            expires: now + delay,
        };
        cache.count += 1;
        cache.bytes += size;
        CACHED.store(cache.count, Ordering::Relaxed);
    }
    evicted.release();
    true
}

/// Takes the smallest cached mapping of at least `size` bytes that wastes less than half of
/// itself; the caller owns it afterwards (and must register it again).
pub fn take(size: usize) -> Option<(NonNull<u8>, usize)> {
    if CACHED.load(Ordering::Relaxed) == 0 {
        return None;
    }
    let mut cache = CACHE.lock();
    let best = (0..cache.count)
        .filter(|&i| cache.entries[i].size >= size && cache.entries[i].size / 2 <= size)
        .min_by_key(|&i| cache.entries[i].size)?;
    let entry = cache.remove(best);
    Some((NonNull::new(entry.start as *mut u8)?, entry.size))
}

/// Whether anything is cached (no lock).
pub fn is_empty() -> bool {
    CACHED.load(Ordering::Relaxed) == 0
}

/// Returns the mappings whose delay has passed by `now` (all of them for `u64::MAX`).
pub fn release_expired(now: u64) {
    if is_empty() {
        return;
    }
    let mut expired = ToRelease::new();
    {
        let mut cache = CACHE.lock();
        let mut index = 0;
        while index < cache.count {
            if cache.entries[index].expires <= now {
                let entry = cache.remove(index);
                expired.push(entry);
            } else {
                index += 1;
            }
        }
    }
    expired.release();
}

/// Takes the cache's lock for `fork` (see `thread.rs`).
pub fn hold_lock_for_fork() {
    CACHE.hold_for_fork();
}

/// Releases what [`hold_lock_for_fork`] took.
///
/// # Safety
/// The calling thread must have called [`hold_lock_for_fork`] (or be the forked child of the
/// thread that did).
pub unsafe fn release_lock_after_fork() {
    // SAFETY: the caller's contract.
    unsafe { CACHE.release_after_fork() };
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Takes entries for `size` until `mapping` comes out (other tests share the cache, and
    /// their entries are released on the way); returns whether it did.
    fn take_until(size: usize, mapping: NonNull<u8>) -> bool {
        while let Some((start, length)) = take(size) {
            // SAFETY: a mapping taken from the cache is ours.
            unsafe { os::release(start, length) };
            if start == mapping {
                return true;
            }
        }
        false
    }

    #[test]
    fn cached_mappings_are_reused_by_fitting_requests_only() {
        let size = (37 << 20) + (12 << 10);
        let mapping = os::reserve_aligned(size, 4 << 20).expect("mmap");
        // SAFETY: a fresh mapping of ours, not in the registry, holding nothing.
        assert!(unsafe { put(mapping, size) });
        assert!(
            !take_until(size + 4096, mapping),
            "too small for the request"
        );
        assert!(!take_until(size / 4, mapping), "would waste more than half");
        assert!(
            take_until(size - 4096, mapping),
            "a fitting request gets it"
        );
    }

    #[test]
    fn expired_mappings_go_back_to_the_os() {
        let size = (29 << 20) + (20 << 10);
        let mapping = os::reserve_aligned(size, 4 << 20).expect("mmap");
        // SAFETY: as above.
        assert!(unsafe { put(mapping, size) });
        release_expired(u64::MAX);
        assert!(!take_until(size, mapping));
    }
}
