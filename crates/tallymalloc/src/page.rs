//! Pages: runs of equal-sized blocks with sharded free lists.
//!
//! A page hands out blocks from `free`. Its owner's frees go to `local_free`, other threads'
//! frees to the atomic `thread_free`; the owner folds both back into `free` when `free` runs
//! dry (`collect`). This keeps the owner's malloc and free free of atomic read-modify-writes,
//! and lets a page's free list be rebuilt in batches instead of on every free.
//!
//! Invariants (the `// SAFETY:` comments below point here):
//! - **P1 ownership**: `owner` holds the owning heap's address, with the `FLAG_*` bits in its
//!   low bits, or 0 while the page is free or its segment abandoned. Every field outside the
//!   "atomic" group is read and written only by the owning heap's thread, or by a thread that
//!   holds the abandoned segment exclusively. `block_size`, `area` and `class` are written
//!   before any block of the page is handed out and are constant while the page is in use, so
//!   any thread freeing one of its blocks may read them.
//! - **P2 one list**: a block is on at most one of `free`, `local_free`, `thread_free`, and on
//!   none while it is allocated.
//! - **P3 used**: `used` counts the carved blocks that are not on `local_free` and not
//!   collected from `thread_free`: the allocated ones *and those on `free`*. Counting `free`
//!   in advance lets malloc pop without touching `used`; `used` reaches 0 on a free only when
//!   `free` is empty too, so the page that is serving allocations never reports itself empty.
//!   The exact number of live blocks is `used - len(free)` ([`Page::live_blocks`]).
//! - **P5 carving**: blocks `[0, capacity)` of the area have been carved; `capacity <=
//!   reserved = area_size / block_size`. Blocks past `capacity` have never been written.
//! - **P4 delayed-free tag**: the low two bits of `thread_free` say how a remote free must
//!   tell the owner about it (see [`DelayedFree`]). While the tag is `DelayedFreeing` the owner
//!   neither abandons the page nor frees its heap.
//! - **P6 handed out**: `free_added` is the length of `free` when the owner last counted the
//!   page's allocations, plus every block put on `free` since; so `free_added - len(free)`
//!   blocks were handed out and not yet counted ([`Page::take_uncounted`]). Malloc's fast path
//!   pops without counting; the slow paths count in batches. Secure pages (key not 0) of a
//!   normal build count every pop at once ([`Page::pop_secure`]), so on them `free_added ==
//!   len(free)`.

use crate::domain_heap::DomainHeap;
use crate::secure;
use core::ptr;
use core::sync::atomic::{AtomicUsize, Ordering};

/// A free block: its first word links to the next free block.
#[repr(C)]
pub struct Block {
    pub next: *mut Block,
}

/// The page is on its heap's full list: a free into it must move it back (slow path).
pub const FLAG_IN_FULL: usize = 1;
/// Some block of the page was handed out at an offset for alignment: a free must find the
/// block's start by division (slow path).
pub const FLAG_HAS_ALIGNED: usize = 2;
/// Every free must take the slow path: the page serves debug blocks (debug.rs), which the slow
/// path hands to debug mode's checks, or has encoded lists (secure.rs).
pub const FLAG_SLOW_ONLY: usize = 4;
const FLAG_MASK: usize = 7;

/// The class number of a huge block's page.
pub const HUGE_CLASS: u8 = u8::MAX;

/// Carve at most this many bytes of fresh blocks at a time, so resident memory follows use...
const EXTEND_BYTES: usize = 4096;
/// ...but at least this many blocks when they fit in [`EXTEND_MOST_BYTES`]: carving one 4 KiB
/// block at a time sent a quarter of glibc-simple's mallocs through the slow path. Larger
/// blocks still come one at a time, since carving writes a link into each, making a page of
/// it resident: four at a time made the compiler workload's peak RSS 25 MiB instead of 16.
const EXTEND_MIN_BLOCKS: usize = 4;
const EXTEND_MOST_BYTES: usize = 16 * 1024;

/// What a remote free does beyond pushing on `thread_free`, kept in `thread_free`'s low bits.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(usize)]
pub enum DelayedFree {
    /// Push on `thread_free`; the owner finds the block when it collects the page.
    None = 0,
    /// The page is full and out of its owner's sight: hand the block to the owner heap's
    /// delayed-free list instead, so the owner learns the page has room again.
    Use = 1,
    /// A remote thread is handing a block to the owner heap right now.
    Freeing = 2,
    /// The page has no owner heap (abandoned): never try to reach one.
    Never = 3,
}

const TAG_MASK: usize = 3;

impl DelayedFree {
    fn from_tag(word: usize) -> Self {
        match word & TAG_MASK {
            0 => DelayedFree::None,
            1 => DelayedFree::Use,
            2 => DelayedFree::Freeing,
            _ => DelayedFree::Never,
        }
    }
}

/// 128 bytes, so that a page's offset in the segment's table is a shift, not a multiply.
#[repr(C, align(128))]
pub struct Page {
    // Hot, owner only (P1). `free` first: the malloc fast path reads it.
    pub free: *mut Block,
    /// Atomic: any thread reads it, the owner writes it (P1). The free fast path compares it
    /// with the freeing thread's heap: equal means "ours, and no flag set".
    pub owner: AtomicUsize,
    pub used: u32,
    pub class: u8,
    /// Every block on `free` is zero but for its link word.
    pub free_is_zero: bool,
    pub in_use: bool,
    /// The domain every block of the page belongs to; constant while the page is in use (P1).
    pub domain: u8,
    pub local_free: *mut Block,
    pub block_size: usize,
    pub area: *mut u8,
    pub capacity: u32,
    pub reserved: u32,
    /// Links in the heap's queue for this class, its full list or its purge list (owner only).
    pub next: *mut Page,
    pub prev: *mut Page,

    // Owned by the segment's owner; fixed when the segment is laid out.
    pub area_size: usize,
    /// The area has not been written since it came zeroed from the OS.
    pub memory_is_zero: bool,
    /// The page is free and waits on its heap's purge list for `purge_at`.
    pub purge_pending: bool,
    pub index: u8,
    /// Owner only: see P6.
    pub free_added: u32,
    pub purge_at: u64,
    /// Secure mode's list key (secure.rs, E2); 0 on normal pages, whose links are plain.
    pub key: usize,

    // Atomic: any thread.
    /// Blocks freed by other threads, with a [`DelayedFree`] tag in the low bits.
    pub thread_free: AtomicUsize,
}

const _: () = assert!(core::mem::size_of::<Page>() == 128);

impl Page {
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
            local_free: ptr::null_mut(),
            block_size: 0,
            area: ptr::null_mut(),
            capacity: 0,
            reserved: 0,
            next: ptr::null_mut(),
            prev: ptr::null_mut(),
            area_size: 0,
            memory_is_zero: false,
            purge_pending: false,
            index: 0,
            free_added: 0,
            purge_at: 0,
            key: 0,
            thread_free: AtomicUsize::new(0),
        }
    }

    /// Prepares a free page to serve `block_size`-byte blocks of `class` for `heap`, a domain
    /// heap of `domain`.
    pub fn start_serving(
        &mut self,
        class: u8,
        block_size: usize,
        heap: *mut DomainHeap,
        domain: u8,
    ) {
        debug_assert!(!self.in_use && block_size > 0 && block_size <= self.area_size);
        self.free = ptr::null_mut();
        self.local_free = ptr::null_mut();
        self.used = 0;
        self.class = class;
        self.free_is_zero = false;
        self.in_use = true;
        self.domain = domain;
        self.block_size = block_size;
        self.capacity = 0;
        self.free_added = 0;
        self.reserved = (self.area_size / block_size) as u32;
        self.next = ptr::null_mut();
        self.prev = ptr::null_mut();
        self.thread_free
            .store(DelayedFree::None as usize, Ordering::Relaxed);
        self.owner.store(heap as usize, Ordering::Release);
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
    pub fn owner_heap(&self) -> *mut DomainHeap {
        (self.owner.load(Ordering::Acquire) & !FLAG_MASK) as *mut DomainHeap
    }

    /// Hands the page to `heap` (or to nobody, with null), keeping its flags.
    pub fn set_owner_heap(&self, heap: *mut DomainHeap) {
        let flags = self.flags();
        self.owner.store(heap as usize | flags, Ordering::Release);
    }

    /// Pops a block from `free`, or returns null when `free` is empty. `used` already counts
    /// the block (P3). The hardened build checks the link (secure.rs).
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
        }
        block
    }

    /// Secure mode's pop from the slow paths of a normal build (key not 0): the block is taken
    /// off `free_added` because the caller counts it at once (P6). `free` must not be empty.
    pub fn pop_secure(&mut self) -> *mut Block {
        debug_assert!(self.key != 0 && !self.free.is_null());
        let block = self.free;
        self.free = self.take_checked_link(block);
        self.free_added -= 1;
        block
    }

    /// The block after `block`, the first on `free`, by its decoded link (E2), aborting when
    /// that does not name a block of this page: the link was overwritten.
    #[inline(always)]
    fn take_checked_link(&mut self, block: *mut Block) -> *mut Block {
        let next = secure::decode(self.key, block);
        if !secure::is_link_of(self, next) {
            secure::corrupt_link(block);
        }
        // A live block must not keep a valid link, or freeing it would look like a double
        // free to `push_local_checked` and send it walking the lists.
        // SAFETY: the block is ours now; its first word is the link just read.
        unsafe { (*block).next = ptr::null_mut() };
        next
    }

    /// Carves the next batch of never-used blocks onto `free` (P5). Returns whether any were.
    pub fn extend(&mut self) -> bool {
        let remaining = (self.reserved - self.capacity) as usize;
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
            let first = self.area.add(self.capacity as usize * size);
            for index in 0..count - 1 {
                let block = first.add(index * size).cast::<Block>();
                (*block).next = first.add((index + 1) * size).cast();
            }
            let last = first.add((count - 1) * size).cast::<Block>();
            (*last).next = self.free;
            self.free_is_zero = self.memory_is_zero && (self.free.is_null() || self.free_is_zero);
            self.free = first.cast();
        }
        self.capacity += count as u32;
        self.used += count as u32;
        self.free_added += count as u32;
        true
    }

    /// Secure mode's carving: the batch goes on `free` in a random order (secure.rs), links
    /// encoded (E2).
    fn extend_shuffled(&mut self, count: usize) {
        debug_assert!(count > 0);
        let mut order =
            secure::Interleaving::new(count, secure::Shuffle::new(self.key, self.capacity));
        let size = self.block_size;
        // Writing the links of blocks [capacity, capacity + count) is the carving.
        // `order` hands out each index below `count` once.
        // SAFETY: P5: those blocks lie inside the area and nobody holds them.
        unsafe {
            let first = self.area.add(self.capacity as usize * size);
            let block_at = |index: usize| first.add(index * size).cast::<Block>();
            let head = block_at(order.next().unwrap_or(0));
            let mut last = head;
            for index in order {
                let block = block_at(index);
                (*last).next = secure::encode(self.key, last, block);
                last = block;
            }
            (*last).next = secure::encode(self.key, last, self.free);
            self.free = head;
        }
        self.free_is_zero = false;
        self.capacity += count as u32;
        self.used += count as u32;
        self.free_added += count as u32;
    }

    /// Folds the blocks other threads freed into `local_free`, and `local_free` into `free`
    /// when `free` is empty. Owner only (P1).
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
                    let next = secure::decode(self.key, tail);
                    if next.is_null() {
                        break;
                    }
                    if self.key != 0 && !secure::is_link_of(self, next) {
                        secure::corrupt_link(tail);
                    }
                    tail = next;
                    count += 1;
                    if count > self.reserved {
                        crate::fatal(b"thread-free list of a page is corrupt (cycle or overrun)");
                    }
                }
                (*tail).next = secure::encode(self.key, tail, self.local_free);
            }
            self.local_free = head;
            if count > self.used {
                crate::fatal(b"more blocks freed into a page than were allocated from it");
            }
            self.used -= count;
        }
        if self.free.is_null() && !self.local_free.is_null() {
            self.free = self.local_free;
            self.local_free = ptr::null_mut();
            self.free_is_zero = false;
            // With `free` empty, `local_free` holds every carved block not counted in `used`
            // (P3); all of them are on `free` now (P6).
            self.free_added += self.capacity - self.used;
            self.used = self.capacity;
        }
    }

    /// The exact number of allocated blocks: `used` less the blocks on `free` (P3). Walks
    /// `free`; for slow paths only.
    pub fn live_blocks(&self) -> u32 {
        self.used - self.free_length()
    }

    /// The number of blocks on `free`, by walking it (slow paths only).
    fn free_length(&self) -> u32 {
        let mut on_free = 0u32;
        let mut block = self.free;
        while !block.is_null() {
            on_free += 1;
            if on_free > self.used {
                crate::fatal(b"free list of a page is corrupt (cycle or overrun)");
            }
            // P2: blocks on `free` link through their first word.
            block = secure::decode(self.key, block);
        }
        on_free
    }

    /// How many blocks were handed out since the last count, which starts the count anew (P6).
    /// Constant time when `free` is empty, as it is whenever malloc's slow path comes for a
    /// page; otherwise walks `free`. Writes nothing when there is nothing to count, so the
    /// shared empty page stays unwritten.
    pub fn take_uncounted(&mut self) -> u32 {
        let on_free = if self.free.is_null() {
            0
        } else if self.key != 0 && !secure::BUILT_IN {
            // P6: a secure page's pops are all counted (but the hardened build's fast path).
            self.free_added
        } else {
            self.free_length()
        };
        self.take_uncounted_given(on_free)
    }

    /// [`Self::take_uncounted`] and [`Self::live_blocks`] with one walk of `free`.
    pub fn take_uncounted_and_live(&mut self) -> (u32, u32) {
        let on_free = self.free_length();
        (self.take_uncounted_given(on_free), self.used - on_free)
    }

    /// [`Self::take_uncounted`] in constant time, for a page with no live block: every block
    /// `used` counts is then on `free` (P3).
    pub fn take_uncounted_when_empty(&mut self) -> u32 {
        debug_assert_eq!(self.live_blocks(), 0);
        self.take_uncounted_given(self.used)
    }

    fn take_uncounted_given(&mut self, on_free: u32) -> u32 {
        let handed_out = self.free_added - on_free;
        if handed_out != 0 {
            self.free_added = on_free;
        }
        handed_out
    }

    /// Pushes a block freed by the owner. Returns whether the page is now empty (which, by P3,
    /// also means `free` is empty).
    #[inline(always)]
    pub fn push_local(&mut self, block: *mut Block) -> bool {
        if secure::BUILT_IN {
            return self.push_local_checked(block);
        }
        // The caller owns the page and hands back a block of it that was in use.
        // SAFETY: P1 and P2: the block's first word is ours to overwrite.
        unsafe { (*block).next = self.local_free };
        self.local_free = block;
        self.used -= 1;
        self.used == 0
    }

    /// [`Self::push_local`] for the slow paths: encodes the link (E2), and in secure mode
    /// aborts on a double free (a block whose first word decodes to a link and that is found
    /// on the page's lists).
    #[inline(always)]
    pub fn push_local_checked(&mut self, block: *mut Block) -> bool {
        if (secure::BUILT_IN || self.key != 0)
            && secure::is_link_of(self, secure::decode(self.key, block))
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
            secure::double_free(block);
        }
        self.push_local_encoded(block)
    }

    #[inline(always)]
    fn push_local_encoded(&mut self, block: *mut Block) -> bool {
        // SAFETY: P1 and P2: the block is an allocated block of our page.
        unsafe { (*block).next = secure::encode(self.key, block, self.local_free) };
        self.local_free = block;
        self.used -= 1;
        self.used == 0
    }

    /// Whether `block` is on `free`, `local_free` or (collected first) `thread_free`.
    fn holds_free(&mut self, block: *mut Block) -> bool {
        self.collect();
        for first in [self.free, self.local_free] {
            let mut candidate = first;
            let mut steps = 0;
            while !candidate.is_null() && steps <= self.reserved {
                if candidate == block {
                    return true;
                }
                candidate = secure::decode(self.key, candidate);
                steps += 1;
            }
        }
        false
    }

    /// The start of the block that holds `address` (for pages that hand out aligned offsets).
    #[inline]
    pub fn block_start(&self, address: *mut u8) -> *mut u8 {
        let offset = address as usize - self.area as usize;
        // SAFETY: `address` lies in this page's area, so the rounded-down offset does too.
        unsafe { self.area.add(offset - offset % self.block_size) }
    }

    /// Whether blocks can be had from this page right now without carving.
    pub fn has_free(&self) -> bool {
        !self.free.is_null()
    }

    /// Whether every block is carved and allocated, and no free is waiting anywhere.
    pub fn is_exhausted(&self) -> bool {
        self.free.is_null() && self.local_free.is_null() && self.capacity == self.reserved
    }

    /// Frees `block` from a thread that does not own the page (any thread, lock-free).
    ///
    /// # Safety
    /// `block` must be an allocated block of this in-use page.
    #[cold]
    pub unsafe fn free_remote(&self, block: *mut Block) {
        let mut word = self.thread_free.load(Ordering::Relaxed);
        let notify_owner = loop {
            let tag = DelayedFree::from_tag(word);
            let (next_word, notify) = if tag == DelayedFree::Use {
                ((word & !TAG_MASK) | DelayedFree::Freeing as usize, true)
            } else {
                // The key is constant while the page serves blocks (E2).
                // SAFETY: the block is ours until published by the exchange below.
                unsafe {
                    (*block).next =
                        secure::encode(self.key, block, (word & !TAG_MASK) as *mut Block)
                };
                (block as usize | (word & TAG_MASK), false)
            };
            match self.thread_free.compare_exchange_weak(
                word,
                next_word,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => break notify,
                Err(current) => word = current,
            }
        };
        if notify_owner {
            // P4: while we hold the `Freeing` tag the owner can neither abandon this page nor
            // free its heap, so the heap pointer is valid.
            let heap = self.owner_heap();
            // SAFETY: P4 as above; a page with the `Use` tag is always owned by a heap.
            unsafe { DomainHeap::push_delayed_free(heap, block) };
            self.finish_delayed_free();
        }
    }

    /// Secure mode's check before [`Self::free_remote`]: a block at the head of
    /// `thread_free` is free, so freeing it again is the double free that a non-owner can see
    /// without walking lists the owner may be changing.
    pub fn check_remote_free(&self, block: *mut Block) {
        if self.thread_free.load(Ordering::Relaxed) & !TAG_MASK == block as usize {
            secure::double_free(block);
        }
    }

    /// Ends a remote thread's `Freeing` state. Only that thread changes the tag meanwhile
    /// (owners wait, other remote frees keep the tag), so this is a plain tag swap.
    fn finish_delayed_free(&self) {
        let mut word = self.thread_free.load(Ordering::Relaxed);
        loop {
            debug_assert_eq!(DelayedFree::from_tag(word), DelayedFree::Freeing);
            let next_word = (word & !TAG_MASK) | DelayedFree::None as usize;
            match self.thread_free.compare_exchange_weak(
                word,
                next_word,
                Ordering::Release,
                Ordering::Relaxed,
            ) {
                Ok(_) => return,
                Err(actual) => word = actual,
            }
        }
    }

    /// Sets the delayed-free tag (owner only), waiting out a remote thread in the `Freeing`
    /// state (P4).
    pub fn set_delayed_free(&self, state: DelayedFree) {
        let mut word = self.thread_free.load(Ordering::Acquire);
        loop {
            let current = DelayedFree::from_tag(word);
            if current == DelayedFree::Freeing {
                crate::os::yield_thread();
                word = self.thread_free.load(Ordering::Acquire);
                continue;
            }
            if current == state {
                return;
            }
            let next_word = (word & !TAG_MASK) | state as usize;
            match self.thread_free.compare_exchange_weak(
                word,
                next_word,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return,
                Err(actual) => word = actual,
            }
        }
    }

    /// Asks remote frees to notify the owner (the page is about to leave the owner's sight),
    /// unless frees are already waiting on `thread_free`: then returns false and the owner
    /// should collect instead.
    pub fn try_request_delayed_free(&self) -> bool {
        let mut word = self.thread_free.load(Ordering::Acquire);
        loop {
            if word & !TAG_MASK != 0 {
                return false;
            }
            if DelayedFree::from_tag(word) == DelayedFree::Freeing {
                crate::os::yield_thread();
                word = self.thread_free.load(Ordering::Acquire);
                continue;
            }
            let next_word = DelayedFree::Use as usize;
            match self.thread_free.compare_exchange_weak(
                word,
                next_word,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return true,
                Err(actual) => word = actual,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A page over a plain buffer, for testing the list logic without segments.
    fn page_over(buffer: &mut [u64], block_size: usize) -> Page {
        let mut page = Page::empty();
        page.area = buffer.as_mut_ptr().cast();
        page.area_size = buffer.len() * 8;
        page.start_serving(1, block_size, ptr::null_mut(), 0);
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
                page.free_remote(block);
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
    fn handed_out_blocks_are_counted_once_whenever_asked() {
        let mut buffer = vec![0u64; 64];
        let mut page = page_over(&mut buffer, 64);
        page.extend();
        let first: Vec<_> = (0..3).map(|_| page.pop()).collect();
        assert_eq!(
            page.take_uncounted(),
            3,
            "counted with blocks left on `free`"
        );
        assert_eq!(page.take_uncounted(), 0);
        let rest: Vec<_> = (0..5).map(|_| page.pop()).collect();
        assert!(page.pop().is_null());
        assert_eq!(page.take_uncounted(), 5, "counted with `free` empty");
        // Freed blocks come back through `collect`; handing them out again counts again.
        assert!(!page.push_local(first[0]));
        // SAFETY: `rest[0]` is an allocated block of the page.
        unsafe { page.free_remote(rest[0]) };
        page.collect();
        assert_eq!(page.take_uncounted(), 0, "nothing handed out since");
        assert!(!page.pop().is_null());
        assert!(!page.pop().is_null());
        assert!(page.pop().is_null());
        assert_eq!(page.take_uncounted(), 2);
    }

    #[test]
    fn requesting_delayed_free_fails_while_frees_wait() {
        let mut buffer = vec![0u64; 64];
        let mut page = page_over(&mut buffer, 64);
        page.extend();
        let block = page.pop();
        assert!(page.try_request_delayed_free());
        page.set_delayed_free(DelayedFree::None);
        // SAFETY: `block` is an allocated block of the page.
        unsafe { page.free_remote(block) };
        assert!(!page.try_request_delayed_free());
    }

    #[test]
    fn block_start_rounds_down_to_the_block() {
        let mut buffer = vec![0u64; 64];
        let page = page_over(&mut buffer, 48);
        // SAFETY: offsets stay inside the buffer.
        let inside = unsafe { page.area.add(48 * 3 + 17) };
        assert_eq!(
            page.block_start(inside) as usize,
            page.area as usize + 48 * 3
        );
    }
}
