//! Pages: runs of equal-sized blocks with sharded free lists.
//!
//! A page hands out blocks from `free`, and its owner's frees go back on `free` at once, last
//! in, first out, so the next malloc of the size gets the block just freed, still in cache.
//! (Sharding the owner's frees onto a list of their own until `free` runs dry, as mimalloc
//! does, hands out the cold blocks instead: docs/MEASUREMENTS.md, "Owner frees".) Other threads' frees go to the atomic `thread_free`, which the owner
//! folds into `free` (`collect`), so the owner's malloc and free make no atomic
//! read-modify-write.
//!
//! Invariants (the `// SAFETY:` comments below point here):
//! - **P1 ownership**: `owner` holds the owning heap's address, with the `FLAG_*` bits in its
//!   low bits, or 0 while the page is free or its segment abandoned. Every field outside the
//!   "atomic" group is read and written only by the owning heap's thread, or by a thread that
//!   holds the abandoned segment exclusively. `block_size`, `area` and `class` are written
//!   before any block of the page is handed out and are constant while the page is in use, so
//!   any thread freeing one of its blocks may read them.
//! - **P2 one list**: a block is on at most one of `free` and `thread_free`, and on neither
//!   while it is allocated.
//! - **P3 used**: `used` counts the carved blocks that are not on `free`: the allocated ones
//!   and those waiting on `thread_free`; plus [`SERVING`] while the page is its heap's serving
//!   page for its class (the first of its queue, and the current page but in debug mode and
//!   secure mode of a normal build). So the page that serves allocations never reports itself
//!   empty on a free (a loop of one malloc and free would otherwise give the page back every
//!   time), and every other page does on its last free. [`Page::live_blocks`] is `used`
//!   without the bit.
//! - **P5 carving**: blocks `[0, capacity)` of the area have been carved; `capacity <=
//!   reserved = area_size / block_size`. Blocks past `capacity` have never been written.
//! - **P6 block starts**: [`Page::is_block_start`] is true exactly for the starts of the
//!   carved blocks `[0, capacity)`, for any address whatever (see [`block_magic`] for why), so
//!   a free of an address inside a block, in the page's slack or in its segment's header is
//!   told apart from a block's free without a division, and never reaches a free list.
//! - **P4 delayed-free tag**: the low two bits of `thread_free` say how a remote free must
//!   tell the owner about it (see [`DelayedFree`]). While the tag is `DelayedFreeing` the owner
//!   neither abandons the page nor frees its heap.
//!
//! `block_start.rs` holds the block-start check (P6), `remote.rs` the frees from other threads
//! and the delayed-free tag (P4).

mod block_start;
mod remote;

pub use block_start::block_magic;
pub use remote::DelayedFree;
use remote::TAG_MASK;

use crate::alloc::free_list;
use crate::alloc::size_class::SizeClass;
use crate::platform::list::{Linked, Links};
use crate::policy::domain::Domain;
use crate::policy::secure;
use core::ptr;
use core::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

/// The heap that owns a page, as the page keeps it: an address it stores, compares and hands
/// back, never follows (the owner is a `DomainHeap`, which uses pages, not the other way).
pub enum Owner {}

pub use crate::alloc::free_list::Block;

/// The page is on its heap's full list: a free into it must move it back (slow path).
pub const FLAG_IN_FULL: usize = 1;
/// Some block of the page was handed out at an offset for alignment: a free must find the
/// block's start by division (slow path).
pub const FLAG_HAS_ALIGNED: usize = 2;
/// Every free must take the slow path: the page serves debug blocks (debug.rs), which the slow
/// path hands to debug mode's checks, or has encoded lists (secure.rs).
pub const FLAG_SLOW_ONLY: usize = 4;
/// Some live block of the page is a profile sample: every free must take the slow path, which
/// takes samples out of the profile (`profile/`, PF1).
pub const FLAG_SAMPLED: usize = 8;
const FLAG_MASK: usize = 15;

/// Added to `used` while the page is its heap's serving page for its class (P3).
pub const SERVING: u32 = 1 << 31;

/// The class number of a huge block's page.
pub const HUGE_CLASS: u8 = u8::MAX;

/// Carve at most this many bytes of fresh blocks at a time, so resident memory follows use...
const EXTEND_BYTES: usize = 4096;
/// ...but at least this many blocks when they fit in [`EXTEND_MOST_BYTES`], or small pages
/// send many mallocs through the slow path. Larger blocks still come one at a time, since
/// carving writes a link into each, making a page of it resident (docs/MEASUREMENTS.md, "How
/// many blocks a page carves").
const EXTEND_MIN_BLOCKS: usize = 4;
const EXTEND_MOST_BYTES: usize = 16 * 1024;

/// 128 bytes, so that a page's offset in the segment's table is a shift, not a multiply.
#[repr(C, align(128))]
pub struct Page {
    // Hot, owner only (P1), in the first cache line: the normal build's fast paths touch
    // nothing else.
    pub free: *mut Block,
    /// Atomic: any thread reads it, the owner writes it (P1). The free fast path compares it
    /// with the freeing thread's heap: equal means "ours, and no flag set".
    pub owner: AtomicUsize,
    /// See P3.
    pub used: u32,
    /// The class, as [`SizeClass::stored`] keeps it; read it with [`Page::size_class`].
    pub class: u8,
    /// Every block on `free` is zero but for its link word.
    pub free_is_zero: bool,
    pub in_use: bool,
    /// The domain every block of the page belongs to, as [`Domain::stored`] keeps it; constant
    /// while the page is in use (P1).
    pub domain: u8,
    /// Blocks carved so far (P5). Written by the owner only (P1), but atomic, since a thread
    /// freeing a block of the page reads it for the block-start check (P6); a word, so that
    /// the free fast path compares with it in one instruction.
    pub capacity: AtomicUsize,
    pub block_size: usize,
    pub area: *mut u8,
    /// Secure mode's list key (secure.rs, E2); 0 on normal pages, whose links are plain.
    pub key: usize,
    /// The block-start check's multiplier for `block_size` (P6, [`block_magic`]).
    pub block_magic: usize,
    /// Links in the heap's queue for this class, its full list or its purge list (owner only).
    pub links: Links<Page>,

    // Owned by the segment's owner; fixed when the segment is laid out.
    pub area_size: usize,
    pub reserved: u32,
    /// The area has not been written since it came zeroed from the OS.
    pub memory_is_zero: bool,
    /// The page is free and waits on its heap's purge list for `purge_at`.
    pub purge_pending: bool,
    pub index: u8,
    pub purge_at: u64,

    // Atomic: any thread.
    /// Blocks freed by other threads, with a [`DelayedFree`] tag in the low bits.
    pub thread_free: AtomicUsize,
    /// Live profile samples among the page's blocks (PF1): raised by the owner, lowered by
    /// whichever thread frees one.
    pub sampled: AtomicU32,
    /// The page's latest sample while it is live, or 0 (PF4): with one sample live, a free of
    /// any other block needs no look-up.
    pub sample_hint: AtomicUsize,
}

const _: () = assert!(core::mem::size_of::<Page>() == 128);

// SAFETY: `links` is the page's field for its queue, full list or purge list, one at a time.
unsafe impl Linked for Page {
    unsafe fn links(this: *mut Self) -> *mut Links<Self> {
        // SAFETY: the caller's contract: `this` is a valid page.
        unsafe { &raw mut (*this).links }
    }
}

impl Page {
    /// The class this page serves.
    ///
    /// # Safety
    /// The page must serve a size class: started by [`Page::start_serving`], not a huge
    /// block's page (whose class is [`HUGE_CLASS`]).
    #[inline(always)]
    pub unsafe fn size_class(&self) -> SizeClass {
        // SAFETY: the caller's contract: `start_serving` stored a class here.
        unsafe { SizeClass::from_stored(self.class) }
    }

    /// A page with nothing in it, as the fast paths' sentinel and as a laid-out free page.
    pub const fn empty() -> Page {
        Page {
            free: ptr::null_mut(),
            owner: AtomicUsize::new(0),
            used: 0,
            class: 0,
            free_is_zero: false,
            in_use: false,
            domain: 0,
            capacity: AtomicUsize::new(0),
            block_size: 0,
            area: ptr::null_mut(),
            key: 0,
            block_magic: 0,
            links: Links::UNLINKED,
            area_size: 0,
            reserved: 0,
            memory_is_zero: false,
            purge_pending: false,
            index: 0,
            purge_at: 0,
            thread_free: AtomicUsize::new(0),
            sampled: AtomicU32::new(0),
            sample_hint: AtomicUsize::new(0),
        }
    }

    /// Prepares a free page to serve `block_size`-byte blocks of `class` for `heap`, a domain
    /// heap of `domain`.
    pub fn start_serving(
        &mut self,
        class: SizeClass,
        block_size: usize,
        heap: *mut Owner,
        domain: Domain,
    ) {
        debug_assert!(!self.in_use && block_size > 0 && block_size <= self.area_size);
        self.free = ptr::null_mut();
        self.used = 0;
        self.class = class.stored();
        self.free_is_zero = false;
        self.in_use = true;
        self.domain = domain.stored();
        self.block_size = block_size;
        self.block_magic = block_magic(block_size);
        self.set_capacity(0);
        self.reserved = (self.area_size / block_size) as u32;
        self.links = Links::UNLINKED;
        self.thread_free
            .store(DelayedFree::None as usize, Ordering::Relaxed);
        // No block is live, so none is a sample; the owner word below drops FLAG_SAMPLED.
        self.sampled.store(0, Ordering::Relaxed);
        self.sample_hint.store(0, Ordering::Relaxed);
        self.owner.store(heap as usize, Ordering::Release);
    }

    /// Blocks carved so far (P5), read from any thread.
    #[inline(always)]
    pub fn capacity(&self) -> usize {
        self.capacity.load(Ordering::Relaxed)
    }

    /// Sets the count of carved blocks (owner only, P1). Relaxed: a thread freeing a block got
    /// it through whatever ordered its carving before.
    pub fn set_capacity(&self, blocks: usize) {
        self.capacity.store(blocks, Ordering::Relaxed);
    }

    /// The `FLAG_*` bits.
    #[inline]
    pub fn flags(&self) -> usize {
        self.owner.load(Ordering::Relaxed) & FLAG_MASK
    }

    /// Sets or clears a flag (owner only, P1).
    pub fn set_flag(&self, flag: usize, on: bool) {
        let word = self.owner.load(Ordering::Relaxed);
        let word = if on { word | flag } else { word & !flag };
        self.owner.store(word, Ordering::Relaxed);
    }

    /// The owning heap, or null (P1).
    #[inline]
    pub fn owner_heap(&self) -> *mut Owner {
        self.owner_and_flags().0
    }

    /// The owning heap and the `FLAG_*` bits, from one load of the owner word (P1).
    #[inline]
    pub fn owner_and_flags(&self) -> (*mut Owner, usize) {
        let word = self.owner.load(Ordering::Acquire);
        ((word & !FLAG_MASK) as *mut Owner, word & FLAG_MASK)
    }

    /// Hands the page to `heap` (or to nobody, with null), keeping its flags.
    pub fn set_owner_heap(&self, heap: *mut Owner) {
        let flags = self.flags();
        self.owner.store(heap as usize | flags, Ordering::Release);
    }

    /// Whether `next` is null or a word-aligned address in the area of this page. (A forged link
    /// decodes to a random word, which this rejects but for odds of 2^-40 or so; checking that
    /// it starts a carved block too would cost a multiplication and a division on every pop.)
    #[inline(always)]
    pub fn is_link(&self, next: *mut Block) -> bool {
        let offset = (next as usize).wrapping_sub(self.area as usize);
        next.is_null()
            || (offset < self.area_size && offset.is_multiple_of(core::mem::align_of::<Block>()))
    }

    /// Pops a block from `free`, or returns null when `free` is empty. The hardened build
    /// checks the link (secure.rs).
    #[inline(always)]
    pub fn pop(&mut self) -> *mut Block {
        let block = self.free;
        if !block.is_null() {
            self.free = if secure::BUILT_IN {
                self.take_checked_link(block)
            } else {
                // A free block's first word is the link written when it was carved or freed.
                // SAFETY: P2: blocks on `free` are free blocks of this page.
                unsafe { (*block).next }
            };
            self.used += 1;
        }
        block
    }

    /// Secure mode's pop from the slow paths of a normal build (key not 0), which checks the
    /// link as the hardened build's `pop` does. `free` must not be empty.
    pub fn pop_secure(&mut self) -> *mut Block {
        debug_assert!(self.key != 0 && !self.free.is_null());
        let block = self.free;
        self.free = self.take_checked_link(block);
        self.used += 1;
        block
    }

    /// The block after `block`, the first on `free`, by its decoded link (E2), aborting when
    /// that does not name a block of this page: the link was overwritten.
    #[inline(always)]
    fn take_checked_link(&mut self, block: *mut Block) -> *mut Block {
        // SAFETY: P2: `block` heads our `free` list, so it is a free block of this page.
        let next = unsafe { free_list::decode(self.key, block) };
        if !self.is_link(next) {
            secure::corrupt_link(block as usize);
        }
        // A live block must not keep a valid link, or freeing it would look like a double
        // free to `push_local_checked` and send it walking the lists.
        // SAFETY: the block is ours now; its first word is the link just read.
        unsafe { (*block).next = ptr::null_mut() };
        next
    }

    /// Carves the next batch of never-used blocks onto `free` (P5). Returns whether any were.
    pub fn extend(&mut self) -> bool {
        let remaining = self.reserved as usize - self.capacity();
        if remaining == 0 {
            return false;
        }
        let size = self.block_size;
        let count = (EXTEND_BYTES / size)
            .max(EXTEND_MIN_BLOCKS.min(EXTEND_MOST_BYTES / size))
            .clamp(1, remaining);
        if self.key != 0 {
            self.extend_shuffled(count);
            return true;
        }
        // Writing the link words of blocks [capacity, capacity + count) is the carving.
        // SAFETY: P5: those blocks lie inside the area and nobody holds them.
        unsafe {
            let first = self.area.add(self.capacity() * size);
            for index in 0..count - 1 {
                let block = first.add(index * size).cast::<Block>();
                (*block).next = first.add((index + 1) * size).cast();
            }
            let last = first.add((count - 1) * size).cast::<Block>();
            (*last).next = self.free;
            self.free_is_zero = self.memory_is_zero && (self.free.is_null() || self.free_is_zero);
            self.free = first.cast();
        }
        self.set_capacity(self.capacity() + count);
        true
    }

    /// Secure mode's carving: the batch goes on `free` in a random order (secure.rs), links
    /// encoded (E2).
    fn extend_shuffled(&mut self, count: usize) {
        debug_assert!(count > 0);
        let mut order = secure::Interleaving::new(
            count,
            secure::Shuffle::new(self.key, self.capacity() as u32),
        );
        let size = self.block_size;
        // Writing the links of blocks [capacity, capacity + count) is the carving.
        // `order` hands out each index below `count` once.
        // SAFETY: P5: those blocks lie inside the area and nobody holds them.
        unsafe {
            let first = self.area.add(self.capacity() * size);
            let block_at = |index: usize| first.add(index * size).cast::<Block>();
            let head = block_at(order.next().unwrap_or(0));
            let mut last = head;
            for index in order {
                let block = block_at(index);
                (*last).next = free_list::encode(self.key, last, block);
                last = block;
            }
            (*last).next = free_list::encode(self.key, last, self.free);
            self.free = head;
        }
        self.free_is_zero = false;
        self.set_capacity(self.capacity() + count);
    }

    /// Whether the page has blocks [`Self::extend`] has not carved yet (P5).
    pub fn has_uncarved(&self) -> bool {
        self.capacity() < self.reserved as usize
    }

    /// Whether other threads freed blocks that [`Self::collect`] would take.
    pub fn has_thread_free(&self) -> bool {
        self.thread_free.load(Ordering::Relaxed) & !TAG_MASK != 0
    }

    /// Folds the blocks other threads freed into `free`. Owner only (P1).
    pub fn collect(&mut self) {
        let mut word = self.thread_free.load(Ordering::Relaxed);
        let mut taken = 0usize;
        while word & !TAG_MASK != 0 {
            match self.thread_free.compare_exchange_weak(
                word,
                word & TAG_MASK,
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    taken = word & !TAG_MASK;
                    break;
                }
                Err(current) => word = current,
            }
        }
        if taken != 0 {
            let head = taken as *mut Block;
            let mut tail = head;
            let mut count = 1u32;
            // The list swapped out holds blocks of this page linked through their first word.
            // SAFETY: P2: the list is ours alone now.
            unsafe {
                loop {
                    let next = free_list::decode(self.key, tail);
                    if next.is_null() {
                        break;
                    }
                    if self.key != 0 && !self.is_link(next) {
                        secure::corrupt_link(tail as usize);
                    }
                    tail = next;
                    count += 1;
                    if count > self.reserved {
                        crate::fatal(b"thread-free list of a page is corrupt (cycle or overrun)");
                    }
                }
                (*tail).next = free_list::encode(self.key, tail, self.free);
            }
            self.free = head;
            self.free_is_zero = false;
            if count > self.live_blocks() {
                crate::fatal(b"more blocks freed into a page than were allocated from it");
            }
            self.used -= count;
        }
        // Samples freed by other threads leave the flag to the owner (PF1 in profile/): with
        // none live, later frees of the page need not look (a producer that never frees its
        // own blocks would otherwise keep every page it ever sampled on the slow path).
        if self.flags() & FLAG_SAMPLED != 0 && self.sampled.load(Ordering::Acquire) == 0 {
            self.set_flag(FLAG_SAMPLED, false);
        }
    }

    /// The number of allocated blocks, counting those other threads freed and the owner has
    /// not collected (P3).
    #[inline]
    pub fn live_blocks(&self) -> u32 {
        self.used & !SERVING
    }

    /// Marks the page as its heap's serving page for its class, or no longer (P3).
    pub fn set_serving(&mut self, on: bool) {
        if on {
            self.used |= SERVING;
        } else {
            self.used &= !SERVING;
        }
    }

    /// Pushes a block freed by the owner on `free`. Returns whether the page is now empty
    /// (never while it is the serving page, P3).
    #[inline(always)]
    pub fn push_local(&mut self, block: *mut Block) -> bool {
        if secure::BUILT_IN {
            return self.push_local_checked(block);
        }
        // The caller owns the page and hands back a block of it that was in use.
        // SAFETY: P1 and P2: the block's first word is ours to overwrite.
        unsafe { (*block).next = self.free };
        self.pushed(block)
    }

    /// The bookkeeping of a push whose link is written.
    #[inline(always)]
    fn pushed(&mut self, block: *mut Block) -> bool {
        self.free = block;
        self.free_is_zero = false;
        self.used -= 1;
        self.used == 0
    }

    /// [`Self::push_local`] for the slow paths: encodes the link (E2), and in secure mode
    /// aborts on a double free (a block whose first word decodes to a link and that is found
    /// on the page's lists).
    #[inline(always)]
    pub fn push_local_checked(&mut self, block: *mut Block) -> bool {
        if (secure::BUILT_IN || self.key != 0)
            // SAFETY: P1, P2: the caller hands back an allocated block of our page, whose first
            // word is ours to read.
            && self.is_link(unsafe { free_list::decode(self.key, block) })
        {
            // Out of line, so that the common case needs no register saved across a call.
            return self.push_local_suspect(block);
        }
        self.push_local_encoded(block)
    }

    /// A block whose first word looks like a link: maybe a double free, surely a rare case.
    #[cold]
    #[inline(never)]
    fn push_local_suspect(&mut self, block: *mut Block) -> bool {
        if self.holds_free(block) {
            secure::double_free(block as usize);
        }
        self.push_local_encoded(block)
    }

    #[inline(always)]
    fn push_local_encoded(&mut self, block: *mut Block) -> bool {
        // SAFETY: P1 and P2: the block is an allocated block of our page.
        unsafe { (*block).next = free_list::encode(self.key, block, self.free) };
        self.pushed(block)
    }

    /// Whether `block` is on `free` or (collected first) `thread_free`.
    fn holds_free(&mut self, block: *mut Block) -> bool {
        self.collect();
        let mut candidate = self.free;
        let mut steps = 0;
        while !candidate.is_null() && steps <= self.capacity() {
            if candidate == block {
                return true;
            }
            // SAFETY: P2: `candidate` is on `free`, a free block of this page (the step bound
            // ends a walk around a corrupted cycle).
            candidate = unsafe { free_list::decode(self.key, candidate) };
            steps += 1;
        }
        false
    }

    /// Whether blocks can be had from this page right now without carving.
    pub fn has_free(&self) -> bool {
        !self.free.is_null()
    }

    /// Whether every block is carved and allocated (but maybe freed by other threads and not
    /// yet collected).
    pub fn is_exhausted(&self) -> bool {
        self.free.is_null() && self.capacity() == self.reserved as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A page over a plain buffer, for testing the list logic without segments.
    pub(super) fn page_over(buffer: &mut [u64], block_size: usize) -> Page {
        let mut page = Page::empty();
        page.area = buffer.as_mut_ptr().cast();
        page.area_size = buffer.len() * 8;
        let class = SizeClass::of(block_size.min(crate::alloc::size_class::LARGE_MAX));
        page.start_serving(class, block_size, ptr::null_mut(), Domain::RAW);
        page
    }

    #[test]
    fn carving_hands_out_every_block_once() {
        let mut buffer = vec![0u64; 1024];
        let mut page = page_over(&mut buffer, 16);
        let mut seen = std::collections::HashSet::new();
        loop {
            let block = page.pop();
            if block.is_null() && !page.extend() {
                break;
            }
            if !block.is_null() {
                assert!(seen.insert(block as usize));
            }
        }
        assert_eq!(seen.len(), 1024 * 8 / 16);
        assert_eq!(page.used as usize, seen.len());
        assert!(page.is_exhausted());
    }

    #[test]
    fn local_and_remote_frees_come_back_through_collect() {
        let mut buffer = vec![0u64; 64];
        let mut page = page_over(&mut buffer, 64);
        page.extend();
        let blocks: Vec<_> = (0..8).map(|_| page.pop()).collect();
        assert!(blocks.iter().all(|b| !b.is_null()));
        assert!(page.pop().is_null());
        assert!(!page.push_local(blocks[0]));
        // SAFETY: blocks[1..] are allocated blocks of this page.
        unsafe {
            for &block in &blocks[1..4] {
                page.free_remote(block, |_, _| unreachable!("no delayed free requested"));
            }
        }
        assert_eq!(page.live_blocks(), 7);
        page.collect();
        assert_eq!(page.live_blocks(), 4);
        let mut again = 0;
        while !page.pop().is_null() {
            again += 1;
        }
        assert_eq!(again, 4);
    }

    #[test]
    fn the_block_freed_last_is_handed_out_first() {
        let mut buffer = vec![0u64; 64];
        let mut page = page_over(&mut buffer, 64);
        page.extend();
        let (first, second) = (page.pop(), page.pop());
        assert!(!page.push_local(first));
        assert!(page.push_local(second), "the page's last block");
        assert_eq!(page.pop(), second, "last in, first out");
        assert_eq!(page.pop(), first);
        assert_eq!(page.live_blocks(), 2);
    }

    #[test]
    fn only_a_page_that_is_not_serving_reports_itself_empty() {
        let mut buffer = vec![0u64; 64];
        let mut page = page_over(&mut buffer, 64);
        page.extend();
        page.set_serving(true);
        let blocks = [page.pop(), page.pop()];
        assert!(!page.push_local(blocks[0]));
        assert!(!page.push_local(blocks[1]), "the serving page stays");
        assert_eq!(page.live_blocks(), 0);
        page.set_serving(false);
        assert_eq!(page.live_blocks(), 0);
        let block = page.pop();
        assert_eq!(page.live_blocks(), 1);
        assert!(page.push_local(block), "its last block is back");
    }

    #[test]
    fn a_freed_block_makes_the_free_list_not_zero() {
        let mut buffer = vec![0u64; 64];
        let mut page = page_over(&mut buffer, 64);
        page.memory_is_zero = true;
        page.extend();
        assert!(page.free_is_zero, "fresh from zeroed memory");
        let block = page.pop();
        page.push_local(block);
        assert!(!page.free_is_zero, "a freed block may hold anything");
    }
}
