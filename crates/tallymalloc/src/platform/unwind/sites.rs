//! Allocation sites: the distinct call stacks seen, numbered from 1, so that a debug block's
//! header or a profile sample holds a 32-bit site instead of a stack, and leaks and profiles
//! group by site.
//!
//! In debug mode every allocation and every quarantined free looks its stack up here, from
//! every thread, so a lookup that finds its stack takes no lock: the table is open addressing over entries that
//! are written once and published by their hash. Only a new stack takes the lock.
//!
//! Invariants:
//! - **ST1**: an entry is written once, under the lock, and published by storing its nonzero
//!   hash last (release); a reader that sees the hash (acquire) sees the entry whole, and it
//!   never changes after, so a site's stack is read without the lock.
//! - **ST2**: an entry's frames lie in the frame store at `[start, start + depth)`, which is
//!   one mapping made on first use and never freed, filled from the front under the lock.
//! - **ST3**: nothing here allocates through the allocator.

use crate::platform::lock_registry::Rank;
use crate::platform::sync::SpinLock;
use crate::platform::unwind::Stack;
use core::ptr;
use core::sync::atomic::{AtomicPtr, AtomicU32, AtomicU64, Ordering};

/// Entries in the table (1 MiB of `.bss`, resident as it fills); sites beyond seven eighths
/// of it are "unknown" (0), which keeps every probe sequence short.
pub const CAPACITY: usize = 1 << 16;
const MOST_SITES: usize = CAPACITY / 8 * 7;
/// Frames the store holds, all sites together (32 MiB reserved, resident as it fills).
const FRAME_CAPACITY: usize = 1 << 22;

struct Entry {
    /// 0 while the entry is free; set last (ST1).
    hash: AtomicU64,
    start: AtomicU32,
    depth: AtomicU32,
}

static ENTRIES: [Entry; CAPACITY] = [const {
    Entry {
        hash: AtomicU64::new(0),
        start: AtomicU32::new(0),
        depth: AtomicU32::new(0),
    }
}; CAPACITY];

/// The frame store (ST2), null before first use.
static FRAMES: AtomicPtr<usize> = AtomicPtr::new(ptr::null_mut());

/// What only the inserting thread touches.
struct Inserting {
    sites: usize,
    frames_used: usize,
}

static INSERTING: SpinLock<Inserting> = SpinLock::new(
    Rank::Sites,
    Inserting {
        sites: 0,
        frames_used: 0,
    },
);

fn hash(frames: &[usize]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for &frame in frames {
        h = (h ^ frame as u64).wrapping_mul(0x1000_0000_01b3);
    }
    // Never 0, which marks a free entry.
    (h ^ (h >> 29)) | 1
}

fn first_slot(hash: u64) -> usize {
    (hash >> 16) as usize % CAPACITY
}

/// The frames of a published entry.
///
/// # Safety
/// `entry`'s hash was read nonzero with acquire ordering (ST1).
unsafe fn frames_of(entry: &Entry) -> &'static [usize] {
    let start = entry.start.load(Ordering::Relaxed) as usize;
    let depth = entry.depth.load(Ordering::Relaxed) as usize;
    // SAFETY: ST1 and ST2: a published entry's frames were written before its hash, into the
    // store, which is never freed.
    unsafe { core::slice::from_raw_parts(FRAMES.load(Ordering::Acquire).add(start), depth) }
}

/// The site number of the stack `frames` (1-based), added if new; 0 if the table or the store
/// is full, or the store cannot be mapped. (A profile's site may hold more than a [`Stack`]:
/// its Python frames follow its native ones.)
pub fn intern(frames: &[usize]) -> u32 {
    if frames.is_empty() {
        return 0;
    }
    let hash = hash(frames);
    let mut slot = first_slot(hash);
    loop {
        let entry = &ENTRIES[slot];
        match entry.hash.load(Ordering::Acquire) {
            0 => return insert(frames, hash),
            // SAFETY: the hash was read nonzero, with acquire.
            seen if seen == hash && unsafe { frames_of(entry) } == frames => {
                return slot as u32 + 1;
            }
            // Probing ends at a free entry: at most seven eighths are taken.
            _ => slot = (slot + 1) % CAPACITY,
        }
    }
}

#[cold]
fn insert(stack: &[usize], hash: u64) -> u32 {
    let mut inserting = INSERTING.lock();
    // Another thread may have added it, or taken its free entry, since the lookup.
    let mut slot = first_slot(hash);
    loop {
        let entry = &ENTRIES[slot];
        match entry.hash.load(Ordering::Acquire) {
            0 => break,
            // SAFETY: as in `intern`.
            seen if seen == hash && unsafe { frames_of(entry) } == stack => {
                return slot as u32 + 1;
            }
            _ => slot = (slot + 1) % CAPACITY,
        }
    }
    if inserting.sites >= MOST_SITES || inserting.frames_used + stack.len() > FRAME_CAPACITY {
        return 0;
    }
    let mut frames = FRAMES.load(Ordering::Acquire);
    if frames.is_null() {
        match crate::platform::os::reserve_metadata(FRAME_CAPACITY * size_of::<usize>()) {
            Some(memory) => frames = memory.as_ptr().cast(),
            None => return 0,
        }
        FRAMES.store(frames, Ordering::Release);
    }
    let start = inserting.frames_used;
    // SAFETY: ST2: `[start, start + depth)` lies in the store, unused until now, and is
    // written only here, under the lock.
    unsafe { ptr::copy_nonoverlapping(stack.as_ptr(), frames.add(start), stack.len()) };
    inserting.frames_used += stack.len();
    inserting.sites += 1;
    let entry = &ENTRIES[slot];
    entry.start.store(start as u32, Ordering::Relaxed);
    entry.depth.store(stack.len() as u32, Ordering::Relaxed);
    // ST1: published last.
    entry.hash.store(hash, Ordering::Release);
    slot as u32 + 1
}

/// The stack of `site`, if it names one (its first [`MAX_DEPTH`](super::MAX_DEPTH) frames).
pub fn stack(site: u32) -> Option<Stack> {
    frames(site).map(Stack::from_frames)
}

/// All the frames of `site`, if it names one.
pub fn frames(site: u32) -> Option<&'static [usize]> {
    if site == 0 || site as usize > CAPACITY {
        return None;
    }
    let entry = &ENTRIES[site as usize - 1];
    if entry.hash.load(Ordering::Acquire) == 0 {
        return None;
    }
    // SAFETY: the hash was read nonzero, with acquire.
    Some(unsafe { frames_of(entry) })
}

/// The distinct stacks held, and the bytes of table and frame store they use: debug mode's
/// cost for its stacks.
pub fn usage() -> (usize, usize) {
    let inserting = INSERTING.lock();
    let bytes = inserting.sites * size_of::<Entry>() + inserting.frames_used * size_of::<usize>();
    (inserting.sites, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stack_of(frames: &[usize]) -> Stack {
        Stack::from_frames(frames)
    }

    #[test]
    fn a_stack_keeps_its_site_and_reads_back() {
        let one = stack_of(&[0x1000_0001, 0x1000_0002, 0x1000_0003]);
        let other = stack_of(&[0x1000_0001, 0x1000_0002]);
        let site = intern(one.frames());
        assert_ne!(site, 0);
        assert_eq!(intern(one.frames()), site);
        let other_site = intern(other.frames());
        assert_ne!(other_site, site);
        assert!(stack(site) == Some(one));
        assert!(stack(other_site) == Some(other));
        assert!(stack(0).is_none());
        assert_eq!(intern(Stack::EMPTY.frames()), 0);
    }

    #[test]
    fn threads_interning_the_same_stacks_agree() {
        let stacks: Vec<Stack> = (0..200)
            .map(|i| stack_of(&[0x2000_0000 + i, 0x3000_0000, 0x4000_0000 + i % 7]))
            .collect();
        let sites: Vec<Vec<u32>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    scope.spawn(|| {
                        stacks
                            .iter()
                            .map(|s| intern(s.frames()))
                            .collect::<Vec<u32>>()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for other in &sites[1..] {
            assert_eq!(other, &sites[0]);
        }
        for (site, expected) in sites[0].iter().zip(&stacks) {
            assert!(stack(*site).as_ref() == Some(expected));
        }
    }
}
