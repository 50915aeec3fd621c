//! A small cache of freed huge mappings, so that a program that frees a multi-megabyte block
//! and allocates another soon after gets memory that is already mapped and faulted in, instead
//! of paying `munmap`, `mmap` and a page fault per 4 KiB again (as mimalloc's segment cache
//! spares it too). Entries go back to the OS after the purge delay in force (purge/pace.rs), on
//! the next slow path of any thread or by the purger, or at once with
//! `TALLYMALLOC_PURGE_DELAY=0`. A miss soon after an entry expired lengthens that delay.
//!
//! Invariants:
//! - **C1**: a cached mapping holds no live block, is not in the registry (so a double free of
//!   its old block is reported, not accepted), and keeps its segment header; nobody but the
//!   cache refers to it.
//! - **C2**: at most `MAX_ENTRIES` entries and `LIMIT_BYTES` bytes, changed under the lock;
//!   `CACHED` mirrors the entry count for lock-free "anything to do?" checks.
//! - **C3**: mappings leave the cache only under the lock, and are unmapped after it is
//!   released (a system call is never made while holding it).

use crate::platform::lock_registry::Rank;
use crate::platform::os;
use crate::platform::sync::SpinLock;
use crate::purge::pace;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Room for the tails that splitting leaves (huge.rs) besides whole freed mappings.
const MAX_ENTRIES: usize = 16;
/// A program cycling through blocks of tens of megabytes keeps a few of them here; the purge
/// delay, not this bound, is what returns idle memory.
const LIMIT_BYTES: usize = 256 << 20;

#[derive(Clone, Copy, Debug, PartialEq)]
struct Entry {
    start: usize,
    size: usize,
    expires: u64,
}

const NO_ENTRY: Entry = Entry {
    start: 0,
    size: 0,
    expires: 0,
};

/// The cache's bookkeeping, apart from the lock and the system calls (so it can be tested on
/// made-up addresses).
struct Cache {
    entries: [Entry; MAX_ENTRIES],
    count: usize,
    bytes: usize,
}

// SAFETY: the cache holds addresses only, touched under its lock.
unsafe impl Send for Cache {}

static CACHE: SpinLock<Cache> = SpinLock::new(Rank::HugeCache, Cache::new());
/// When entries last expired (`os::monotonic_millis`), until a miss reports it; 0 for none.
static EXPIRED_AT: AtomicU64 = AtomicU64::new(0);

static CACHED: AtomicUsize = AtomicUsize::new(0);

impl Cache {
    const fn new() -> Cache {
        Cache {
            entries: [NO_ENTRY; MAX_ENTRIES],
            count: 0,
            bytes: 0,
        }
    }

    fn remove(&mut self, index: usize) -> Entry {
        let entry = self.entries[index];
        self.count -= 1;
        self.entries[index] = self.entries[self.count];
        self.bytes -= entry.size;
        entry
    }

    /// Moves the entries that expired by `now` to `out`.
    fn expire(&mut self, now: u64, out: &mut ToRelease) {
        let mut index = 0;
        while index < self.count {
            if self.entries[index].expires <= now {
                let entry = self.remove(index);
                out.push(entry);
            } else {
                index += 1;
            }
        }
    }

    /// Adds `entry` (at most LIMIT_BYTES), moving expired and then the oldest entries to `out`
    /// until it fits.
    fn insert(&mut self, entry: Entry, now: u64, out: &mut ToRelease) {
        self.expire(now, out);
        while self.count > 0 && (self.count == MAX_ENTRIES || self.bytes + entry.size > LIMIT_BYTES)
        {
            let oldest = (0..self.count)
                .min_by_key(|&i| self.entries[i].expires)
                .unwrap_or(0);
            let evicted = self.remove(oldest);
            out.push(evicted);
        }
        self.entries[self.count] = entry;
        self.count += 1;
        self.bytes += entry.size;
    }

    /// Removes the smallest entry of at least `size` bytes that wastes less than half of itself.
    fn take(&mut self, size: usize) -> Option<Entry> {
        let best = (0..self.count)
            .filter(|&i| self.entries[i].size >= size && self.entries[i].size / 2 <= size)
            .min_by_key(|&i| self.entries[i].size)?;
        Some(self.remove(best))
    }

    /// Removes the entries that best make up `size` bytes, for a caller that moves them
    /// together into one mapping: while bytes are missing, the smallest entry that covers what
    /// is missing, else the largest one.
    fn take_pieces(&mut self, size: usize, out: &mut Pieces) {
        let mut missing = size;
        while missing > 0 && self.count > 0 {
            let covering = (0..self.count)
                .filter(|&i| self.entries[i].size >= missing)
                .min_by_key(|&i| self.entries[i].size);
            let index = covering
                .or_else(|| (0..self.count).max_by_key(|&i| self.entries[i].size))
                .unwrap_or(0);
            let entry = self.remove(index);
            out.push(entry);
            missing = missing.saturating_sub(entry.size);
        }
    }
}

/// Mappings out of the cache, owned by whoever took them (C1): those a caller takes for one
/// huge block ([`Pieces`]), or those to unmap once the lock is released (C3).
pub struct Entries<const N: usize> {
    entries: [Entry; N],
    count: usize,
}

/// Cached mappings taken for one huge block (at most every entry).
pub type Pieces = Entries<MAX_ENTRIES>;

/// Mappings taken out to unmap: at most every entry and the one that did not fit.
type ToRelease = Entries<{ MAX_ENTRIES + 1 }>;

impl<const N: usize> Entries<N> {
    fn new() -> Entries<N> {
        Entries {
            entries: [NO_ENTRY; N],
            count: 0,
        }
    }

    fn push(&mut self, entry: Entry) {
        self.entries[self.count] = entry;
        self.count += 1;
    }

    /// The mappings, in the order they were taken (for pieces, the order they are best laid
    /// out in): each the start and length of a whole mapping with its header, holding no
    /// block (C1).
    pub fn mappings(&self) -> impl Iterator<Item = (NonNull<u8>, usize)> + '_ {
        self.entries[..self.count]
            .iter()
            .filter_map(|entry| Some((NonNull::new(entry.start as *mut u8)?, entry.size)))
    }

    pub fn total_bytes(&self) -> usize {
        self.entries[..self.count]
            .iter()
            .map(|entry| entry.size)
            .sum()
    }

    pub fn count(&self) -> usize {
        self.count
    }

    /// Gives the mappings from the `first`-th on back to the OS.
    pub fn release_from(&self, first: usize) {
        for (start, size) in self.mappings().skip(first) {
            // SAFETY: C1: the mapping left the cache and is its taker's alone.
            unsafe { os::release(start, size) };
            os::note_committed(-(size as isize));
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
    let now = os::monotonic_millis();
    let delay = pace::millis(now);
    if delay == 0 || size > LIMIT_BYTES {
        return false;
    }
    let entry = Entry {
        start: start.as_ptr() as usize,
        size,
        expires: now + delay,
    };
    let mut evicted = ToRelease::new();
    {
        let mut cache = CACHE.lock();
        cache.insert(entry, now, &mut evicted);
        CACHED.store(cache.count, Ordering::Relaxed);
    }
    evicted.release_from(0);
    true
}

/// Takes the smallest cached mapping of at least `size` bytes that wastes less than half of
/// itself; the caller owns it afterwards (and must register it again).
pub fn take(size: usize) -> Option<(NonNull<u8>, usize)> {
    let taken = take_with(|cache, taken| {
        if let Some(entry) = cache.take(size) {
            taken.push(entry);
        }
    });
    let first = taken.mappings().next();
    first
}

/// The entries `choose` moves out of the cache, under the lock (none, and no lock taken, when
/// the cache is empty); the caller owns their mappings after.
fn take_with(choose: impl FnOnce(&mut Cache, &mut Pieces)) -> Pieces {
    let mut taken = Pieces::new();
    if CACHED.load(Ordering::Relaxed) != 0 {
        let mut cache = CACHE.lock();
        choose(&mut cache, &mut taken);
        CACHED.store(cache.count, Ordering::Relaxed);
    }
    if taken.count == 0 {
        note_miss();
    }
    taken
}

/// A huge allocation found nothing to reuse: if entries expired since the last miss, they
/// may have been just what it needed (purge/pace.rs).
fn note_miss() {
    if EXPIRED_AT.load(Ordering::Relaxed) != 0 {
        let expired_at = EXPIRED_AT.swap(0, Ordering::Relaxed);
        if expired_at != 0 {
            pace::note_wanted_again(expired_at, os::monotonic_millis());
        }
    }
}

/// Takes the cached mappings that best make up `size` bytes (see `Cache::take_pieces`), for a
/// caller that moves them together into one mapping with `mremap`, keeping their pages, which
/// are faulted in already; the caller owns them after.
pub fn take_pieces(size: usize) -> Pieces {
    take_with(|cache, pieces| cache.take_pieces(size, pieces))
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
        cache.expire(now, &mut expired);
        CACHED.store(cache.count, Ordering::Relaxed);
    }
    if expired.count > 0 && now != u64::MAX {
        EXPIRED_AT.store(now, Ordering::Relaxed);
    }
    expired.release_from(0);
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: usize = 1 << 20;

    fn entry(start: usize, size: usize, expires: u64) -> Entry {
        Entry {
            start,
            size,
            expires,
        }
    }

    fn released(out: &ToRelease) -> Vec<usize> {
        out.entries[..out.count].iter().map(|e| e.start).collect()
    }

    #[test]
    fn only_fitting_requests_take_an_entry() {
        let mut cache = Cache::new();
        let mut out = ToRelease::new();
        cache.insert(entry(0x1000_0000, 8 * MIB, 100), 0, &mut out);
        assert_eq!(
            cache.take(8 * MIB + 4096),
            None,
            "too small for the request"
        );
        assert_eq!(cache.take(3 * MIB), None, "would waste more than half");
        assert_eq!(cache.take(5 * MIB), Some(entry(0x1000_0000, 8 * MIB, 100)));
        assert_eq!(cache.count, 0);
        assert_eq!(cache.bytes, 0);
        assert_eq!(out.count, 0);
    }

    #[test]
    fn the_smallest_fitting_entry_is_taken() {
        let mut cache = Cache::new();
        let mut out = ToRelease::new();
        cache.insert(entry(0x1000_0000, 12 * MIB, 100), 0, &mut out);
        cache.insert(entry(0x2000_0000, 9 * MIB, 100), 0, &mut out);
        cache.insert(entry(0x3000_0000, 16 * MIB, 100), 0, &mut out);
        assert_eq!(cache.take(8 * MIB).map(|e| e.start), Some(0x2000_0000));
        assert_eq!(cache.take(8 * MIB).map(|e| e.start), Some(0x1000_0000));
    }

    #[test]
    fn expired_then_oldest_entries_make_room() {
        let mut cache = Cache::new();
        let mut out = ToRelease::new();
        let half = LIMIT_BYTES / 2 - MIB;
        cache.insert(entry(0x1000_0000, half, 50), 0, &mut out);
        cache.insert(entry(0x2000_0000, half, 20), 0, &mut out);
        // Two MiB short of the limit: a 10 MiB entry goes over it, the oldest makes room.
        cache.insert(entry(0x3000_0000, 10 * MIB, 90), 0, &mut out);
        assert_eq!(released(&out), vec![0x2000_0000]);
        assert_eq!(cache.bytes, half + 10 * MIB);
        // At time 60 the first entry has expired.
        let mut out = ToRelease::new();
        cache.expire(60, &mut out);
        assert_eq!(released(&out), vec![0x1000_0000]);
        assert_eq!((cache.count, cache.bytes), (1, 10 * MIB));
    }

    fn pieces_for(cache: &mut Cache, size: usize) -> Vec<usize> {
        let mut pieces = Pieces::new();
        cache.take_pieces(size, &mut pieces);
        pieces.entries[..pieces.count]
            .iter()
            .map(|e| e.start)
            .collect()
    }

    #[test]
    fn pieces_are_the_smallest_covering_entry_else_the_largest_until_covered() {
        let mut cache = Cache::new();
        let mut out = ToRelease::new();
        for (start, size) in [
            (0x1000_0000, 2 * MIB),
            (0x2000_0000, 5 * MIB),
            (0x3000_0000, 40 * MIB),
            (0x4000_0000, 3 * MIB),
            (0x5000_0000, 6 * MIB),
        ] {
            cache.insert(entry(start, size, 100), 0, &mut out);
        }
        assert_eq!(
            pieces_for(&mut cache, 4 * MIB),
            vec![0x2000_0000],
            "one covers it"
        );
        assert_eq!(
            pieces_for(&mut cache, MIB),
            vec![0x1000_0000],
            "however long"
        );
        // 50 MiB: the largest (40), then the largest again (6), then the 3 MiB covers the rest.
        assert_eq!(
            pieces_for(&mut cache, 50 * MIB),
            vec![0x3000_0000, 0x5000_0000, 0x4000_0000]
        );
        assert_eq!((cache.count, cache.bytes), (0, 0));
        assert!(pieces_for(&mut cache, MIB).is_empty());
    }

    #[test]
    fn the_entry_count_is_bounded() {
        let mut cache = Cache::new();
        let mut out = ToRelease::new();
        for index in 0..MAX_ENTRIES + 1 {
            cache.insert(entry(index << 30, MIB, index as u64 + 10), 0, &mut out);
        }
        assert_eq!(cache.count, MAX_ENTRIES);
        assert_eq!(released(&out), vec![0], "the oldest went");
    }
}
