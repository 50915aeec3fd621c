//! Secure mode (`TALLYMALLOC_SECURE=1`, or the hardened build): the allocator defends its own
//! metadata against the usual heap exploits.
//!
//! - **Encoded free lists.** Every page gets a random key; a free block's link word holds the
//!   next block's address XORed with a mask made of the key and the block's own address. A
//!   link overwritten by a use-after-free or an overflow decodes to garbage, and every pop
//!   checks that the decoded address is a block of the same page (or null): a forged link is
//!   reported and the process aborts, instead of malloc returning an attacker-chosen pointer.
//! - **Double frees.** A block freed by its owner thread whose first word decodes to a valid
//!   link is looked for on the page's lists, and found means a double free: reported, abort.
//!   Another thread cannot walk lists the owner is changing, so it catches a block still at
//!   the head of the page's remote-free list: the `free(p); free(p)` of one non-owner thread.
//! - **Shuffled carving.** Each batch of fresh blocks goes on the free list in a random order
//!   (four runs interleaved at random, see [`Interleaving`]), so the address of the next block
//!   cannot be told from the last one.
//! - **Guard pages.** The last 4 KiB of every segment is `PROT_NONE`, and so is the page after
//!   every huge block (`huge.rs`, U5), so a linear overflow off the last blocks faults instead
//!   of writing into the next mapping.
//!
//! Two ways to have it:
//! - **The hardened build** (the `secure` feature, `libtallymalloc.so` in `target/secure`):
//!   always on, and the fast paths themselves decode, check and encode the links
//!   ([`BUILT_IN`]). This is the one to deploy: it costs a few instructions a call.
//! - **`TALLYMALLOC_SECURE=1` with the normal build**: the normal fast paths stay as they are,
//!   with not one instruction added for everyone else, so secure pages must stay off them:
//!   each carries the slow-path flag and none is ever current, as in debug mode. Every call
//!   then takes a lean slow path (`malloc_secure`, `free_secure_local`), which costs more.
//!
//! How the normal build keeps the two apart: a page's key is 0 unless secure mode is on, and
//! a mask of a zero key is zero, so the normal fast paths (which read and write links as they
//! are) and the slow paths (which go through [`encode`]/[`decode`]) agree on normal pages.
//!
//! Invariants:
//! - **E1**: the mode is fixed before the first page is served and never changes.
//! - **E2**: a page's key is set before its first block is carved and is constant while the
//!   page serves blocks; every link on its `free` and `thread_free` lists is
//!   encoded with it. (The heap-level delayed-free list links blocks of many pages and is
//!   plain: its blocks are allocated, not free, and it is walked once by the owner.)

use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

/// Whether this is the hardened build: secure mode always on, checked by the fast paths.
pub const BUILT_IN: bool = cfg!(feature = "secure");

static ACTIVE: AtomicBool = AtomicBool::new(false);
static SEEDED: AtomicBool = AtomicBool::new(false);
static SEED: AtomicUsize = AtomicUsize::new(0);
static KEYS_MADE: AtomicU64 = AtomicU64::new(0);

/// Whether secure mode is on (E1).
#[inline(always)]
pub fn active() -> bool {
    BUILT_IN || ACTIVE.load(Ordering::Relaxed)
}

/// Whether secure pages must keep off the fast paths, which in a normal build do not know
/// keys: `TALLYMALLOC_SECURE=1` without the hardened build.
#[inline(always)]
pub fn slow_paths_only() -> bool {
    !BUILT_IN && ACTIVE.load(Ordering::Relaxed)
}

/// Turns secure mode on; called by the options before the first allocation (E1).
pub fn enable() {
    seed();
    ACTIVE.store(true, Ordering::Release);
}

/// Draws the process's key seed from the kernel, once.
fn seed() {
    if SEEDED.load(Ordering::Acquire) {
        return;
    }
    let mut seed = 0usize;
    // SAFETY: getrandom writes at most `size_of::<usize>()` bytes into `seed`.
    let got = unsafe { libc::getrandom((&raw mut seed).cast(), core::mem::size_of::<usize>(), 0) };
    if got != core::mem::size_of::<usize>() as isize {
        crate::fatal(b"secure mode: no random numbers from the kernel");
    }
    // Two threads racing here both store a random seed; either will do.
    SEED.store(seed, Ordering::Relaxed);
    SEEDED.store(true, Ordering::Release);
}

/// splitmix64's finaliser: a good scramble of a counter.
fn scramble(mut value: u64) -> u64 {
    value = (value ^ (value >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    value = (value ^ (value >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    value ^ (value >> 31)
}

/// A fresh page key: never 0, unpredictable without the process's random seed.
pub fn next_key() -> usize {
    // The hardened build has no option to seed it first.
    seed();
    let count = KEYS_MADE.fetch_add(1, Ordering::Relaxed);
    let key = scramble(count ^ SEED.load(Ordering::Relaxed) as u64) as usize;
    key | 1
}

/// A link that does not decode to a block of its page: the list was overwritten.
#[cold]
pub fn corrupt_link(block: usize) -> ! {
    abort_at(
        b"the free-list link in the free block at ",
        block,
        b" was overwritten (use after free or overflow)",
    )
}

/// A block freed while it is already free.
#[cold]
pub fn double_free(block: usize) -> ! {
    abort_at(b"double free of ", block, b"")
}

/// Reports what happened at `block` on one stderr line and aborts.
fn abort_at(before: &[u8], block: usize, after: &[u8]) -> ! {
    let mut line = crate::platform::text::Line::new();
    line.text(b"tallymalloc: secure mode: ")
        .text(before)
        .hex(block)
        .text(after)
        .text(b"; aborting\n");
    line.write_to_stderr();
    crate::platform::text::abort_process()
}

/// A small generator for the carving order, seeded per batch.
pub struct Shuffle(u64);

impl Shuffle {
    pub fn new(key: usize, batch: u32) -> Shuffle {
        Shuffle(scramble(key as u64 ^ u64::from(batch).rotate_left(32)) | 1)
    }

    /// 64 random bits (xorshift64).
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// The streams [`Interleaving`] draws from: a power of two, so two random bits pick one.
const STREAMS: usize = 4;

/// `0..count` in a random order that keeps much of the locality of the sequential one: the
/// indices are cut into [`STREAMS`] runs, and each next index is the next of a run chosen at
/// random, so the next block's address is one of four. More streams defeat the CPU's
/// prefetching for a program that walks its objects in the order it made them
/// (docs/MEASUREMENTS.md, "Secure mode's carving order").
pub struct Interleaving {
    /// Stream `s` hands out `next[s]..end[s]`; the last ones may be empty from the start.
    next: [usize; STREAMS],
    end: [usize; STREAMS],
    left: usize,
    bits: u64,
    bits_left: u32,
    shuffle: Shuffle,
}

impl Interleaving {
    pub fn new(count: usize, shuffle: Shuffle) -> Interleaving {
        let run = count.div_ceil(STREAMS);
        let mut next = [0; STREAMS];
        let mut end = [0; STREAMS];
        for stream in 0..STREAMS {
            next[stream] = (stream * run).min(count);
            end[stream] = ((stream + 1) * run).min(count);
        }
        Interleaving {
            next,
            end,
            left: count,
            bits: 0,
            bits_left: 0,
            shuffle,
        }
    }
}

impl Iterator for Interleaving {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        if self.bits_left == 0 {
            self.bits = self.shuffle.next();
            self.bits_left = u64::BITS / STREAMS.ilog2();
        }
        // A random stream, or the next one with indices left.
        let mut stream = (self.bits % STREAMS as u64) as usize;
        self.bits /= STREAMS as u64;
        self.bits_left -= 1;
        while self.next[stream] == self.end[stream] {
            stream = (stream + 1) % STREAMS;
        }
        self.next[stream] += 1;
        Some(self.next[stream] - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interleaving_is_a_permutation_that_differs_by_seed_and_keeps_runs_in_order() {
        let orders: Vec<Vec<usize>> = (0..4)
            .map(|seed| Interleaving::new(128, Shuffle::new(0x9e37 + seed, 0)).collect())
            .collect();
        for order in &orders {
            let mut sorted = order.clone();
            sorted.sort_unstable();
            assert_eq!(sorted, (0..128).collect::<Vec<usize>>());
            assert_ne!(order, &sorted, "not sequential");
            // Within each run of 32 the indices come in increasing order.
            for run in 0..4 {
                let of_run: Vec<usize> = order.iter().copied().filter(|i| i / 32 == run).collect();
                assert!(of_run.windows(2).all(|w| w[0] < w[1]));
            }
        }
        assert_ne!(orders[0], orders[1]);
        // Short and uneven batches too: every index handed out exactly once.
        for count in [0, 1, 2, 3, 5, 7, 33, 511] {
            let mut order: Vec<usize> = Interleaving::new(count, Shuffle::new(7, 1)).collect();
            order.sort_unstable();
            assert_eq!(order, (0..count).collect::<Vec<usize>>());
        }
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
