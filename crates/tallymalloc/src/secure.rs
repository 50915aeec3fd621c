//! Secure mode (`TALLYMALLOC_SECURE=1`): the allocator defends its own metadata against the
//! usual heap exploits, at the cost of taking every call through the slow paths.
//!
//! - **Encoded free lists.** Every page gets a random key; a free block's link word holds the
//!   next block's address XORed with a mask made of the key and the block's own address. A
//!   link overwritten by a use-after-free or an overflow decodes to garbage, and every pop
//!   checks that the decoded address is a block of the same page (or null): a forged link is
//!   reported and the process aborts, instead of malloc returning an attacker-chosen pointer.
//! - **Double frees.** A block freed by its owner thread whose first word decodes to a valid
//!   link is looked for on the page's lists, and found means a double free: reported, abort.
//! - **Shuffled carving.** Each batch of fresh blocks goes on the free list in a random order,
//!   so the address of the next block cannot be predicted from the last one.
//! - **Guard pages.** The last 4 KiB of every segment is `PROT_NONE`, so a linear overflow
//!   from one segment's last blocks faults instead of writing into the next segment.
//!
//! How it stays off the normal path: a page's key is 0 unless secure mode is on, and a mask
//! of a zero key is zero, so the normal fast paths (which read and write links as they are)
//! and the slow paths (which go through [`encode`]/[`decode`]) agree on normal pages. In
//! secure mode every page carries the slow-path flag and no page is ever current, as in
//! debug mode, so the fast paths never touch a secure page.
//!
//! Invariants:
//! - **E1**: the mode is fixed before the first page is served and never changes.
//! - **E2**: a page's key is set before its first block is carved and is constant while the
//!   page serves blocks; every link on its `free`, `local_free` and `thread_free` lists is
//!   encoded with it. (The heap-level delayed-free list links blocks of many pages and is
//!   plain: its blocks are allocated, not free, and it is walked once by the owner.)

use crate::page::{Block, Page};
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

static ACTIVE: AtomicBool = AtomicBool::new(false);
static SEED: AtomicUsize = AtomicUsize::new(0);
static KEYS_MADE: AtomicU64 = AtomicU64::new(0);

/// Whether secure mode is on (E1).
#[inline]
pub fn active() -> bool {
    ACTIVE.load(Ordering::Relaxed)
}

/// Turns secure mode on; called by the options before the first allocation (E1).
pub fn enable() {
    let mut seed = 0usize;
    // SAFETY: getrandom writes at most `size_of::<usize>()` bytes into `seed`.
    let got = unsafe { libc::getrandom((&raw mut seed).cast(), core::mem::size_of::<usize>(), 0) };
    if got != core::mem::size_of::<usize>() as isize {
        crate::fatal(b"TALLYMALLOC_SECURE=1: no random numbers from the kernel");
    }
    SEED.store(seed, Ordering::Relaxed);
    ACTIVE.store(true, Ordering::Release);
}

/// splitmix64's finaliser: a good scramble of a counter.
fn scramble(mut value: u64) -> u64 {
    value = (value ^ (value >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    value = (value ^ (value >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    value ^ (value >> 31)
}

/// A fresh page key: never 0, unpredictable without the process's random seed.
pub fn next_key() -> usize {
    let count = KEYS_MADE.fetch_add(1, Ordering::Relaxed);
    let key = scramble(count ^ SEED.load(Ordering::Relaxed) as u64) as usize;
    key | 1
}

/// The mask a link stored in `block` is XORed with: 0 on normal pages (key 0).
#[inline(always)]
fn mask(key: usize, block: *const Block) -> usize {
    if key == 0 {
        0
    } else {
        key ^ (block as usize).rotate_left(29)
    }
}

/// The link word to store in `block` for `next`.
#[inline(always)]
pub fn encode(key: usize, block: *const Block, next: *mut Block) -> *mut Block {
    (next as usize ^ mask(key, block)) as *mut Block
}

/// The next block `block`'s link word names.
#[inline(always)]
pub fn decode(key: usize, block: *const Block) -> *mut Block {
    // SAFETY: the caller reads the link word of a free block of a page it may read (P1, P2).
    let stored = unsafe { (*block).next };
    (stored as usize ^ mask(key, block)) as *mut Block
}

/// Whether `next` is null or the start of a carved block of `page`.
pub fn is_link_of(page: &Page, next: *mut Block) -> bool {
    if next.is_null() {
        return true;
    }
    let start = page.area as usize;
    let end = start + page.capacity as usize * page.block_size;
    let address = next as usize;
    (start..end).contains(&address) && (address - start) % page.block_size == 0
}

/// A link that does not decode to a block of its page: the list was overwritten.
#[cold]
pub fn corrupt_link(block: *const Block) -> ! {
    let mut line = crate::diagnostics::Line::new();
    line.text(b"tallymalloc: secure mode: the free-list link in the free block at ")
        .hex(block as usize)
        .text(b" was overwritten (use after free or overflow); aborting\n");
    line.write_to_stderr();
    crate::diagnostics::abort_process()
}

/// A block freed while it is already free.
#[cold]
pub fn double_free(block: *const Block) -> ! {
    let mut line = crate::diagnostics::Line::new();
    line.text(b"tallymalloc: secure mode: double free of ")
        .hex(block as usize)
        .text(b"; aborting\n");
    line.write_to_stderr();
    crate::diagnostics::abort_process()
}

/// A small generator for shuffling, seeded per batch.
pub struct Shuffle(u64);

impl Shuffle {
    pub fn new(key: usize, batch: u32) -> Shuffle {
        Shuffle(scramble(key as u64 ^ u64::from(batch).rotate_left(32)) | 1)
    }

    /// A number below `bound` (not 0).
    pub fn below(&mut self, bound: usize) -> usize {
        // xorshift64
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % bound as u64) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_zero_key_leaves_links_as_they_are_and_a_key_hides_them() {
        let next = 0x7f00_dead_b000 as *mut Block;
        let key = 0x1234_5678_9abc_def1;
        let mut slot = Block {
            next: core::ptr::null_mut(),
        };
        assert_eq!(encode(0, &slot, next), next);
        let stored = encode(key, &slot, next);
        assert_ne!(stored, next);
        slot.next = stored;
        assert_eq!(decode(key, &slot), next);
        // Another block's mask differs: a link copied elsewhere decodes to something else.
        let other = Block { next: stored };
        assert_ne!(decode(key, &other), next);
    }

    #[test]
    fn keys_differ_and_are_never_zero() {
        let keys: Vec<usize> = (0..1000).map(|_| next_key()).collect();
        assert!(keys.iter().all(|&key| key != 0));
        let mut sorted = keys.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), keys.len());
    }
}
